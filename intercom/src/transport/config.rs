//! [`ListenConfig`] and the advertised address: what a plugin reads from its environment
//! to decide where it listens and what it announces.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{ListenError, env};
use crate::unix_socket::SocketGroup;

/// Where and how a plugin listens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenConfig {
    /// A unix socket in a private directory (`0700`, socket `0600`) made inside `dir`
    /// (`None`: the temp dir), or shared with `group` (directory `0710`, socket `0660`).
    Unix {
        /// Where the socket's own directory is made.
        dir: Option<PathBuf>,
        /// The group given access to the socket (`None`: only the owner).
        group: Option<SocketGroup>,
    },
    /// TCP on 127.0.0.1, first free port in the inclusive range (both 0: OS picks).
    TcpRange {
        /// Lowest port.
        min: u16,
        /// Highest port.
        max: u16,
    },
    /// TCP on exactly this address.
    Tcp(SocketAddr),
}

impl ListenConfig {
    /// Reads the listener choice from the environment, as a plugin does at start.
    ///
    /// `INTERCOM_LISTEN_ADDR` wins, then `INTERCOM_TRANSPORT=tcp` (port range from
    /// `PLUGIN_MIN_PORT`/`PLUGIN_MAX_PORT`), else a unix socket in `PLUGIN_UNIX_SOCKET_DIR`
    /// shared with `PLUGIN_UNIX_SOCKET_GROUP` when set.
    ///
    /// # Errors
    /// A malformed address or port, or a min port above the max port.
    pub fn from_env() -> Result<Self, ListenError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub(crate) fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ListenError> {
        if let Some(addr) = get(env::LISTEN_ADDR).filter(|s| !s.is_empty()) {
            let parsed = addr.parse().map_err(|_| ListenError::BadListenAddr {
                value: addr.clone(),
            })?;
            return Ok(Self::Tcp(parsed));
        }
        let tcp = get(env::TRANSPORT).is_some_and(|t| t.eq_ignore_ascii_case("tcp"));
        if tcp {
            let port = |key: &'static str| -> Result<u16, ListenError> {
                match get(key).filter(|s| !s.is_empty()) {
                    None => Ok(0),
                    Some(v) => v
                        .parse()
                        .map_err(|_| ListenError::BadPort { key, value: v }),
                }
            };
            let (min, max) = (port(env::MIN_PORT)?, port(env::MAX_PORT)?);
            if min > max {
                return Err(ListenError::PortRange { min, max });
            }
            return Ok(Self::TcpRange { min, max });
        }
        Ok(Self::Unix {
            dir: get(env::UNIX_SOCKET_DIR)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            group: get(env::UNIX_SOCKET_GROUP)
                .filter(|s| !s.is_empty())
                .map(SocketGroup::new),
        })
    }
}

/// Reads `INTERCOM_ADVERTISE_ADDR`: the address a plugin announces in its handshake
/// instead of its listener's (unset or empty: none).
///
/// # Errors
/// [`ListenError::BadAdvertiseAddr`] when the value is not a dialable `ip:port`.
pub(crate) fn advertise_from_env() -> Result<Option<SocketAddr>, ListenError> {
    advertise_from_lookup(|k| std::env::var(k).ok())
}

pub(crate) fn advertise_from_lookup(
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<SocketAddr>, ListenError> {
    let Some(value) = get(env::ADVERTISE_ADDR).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match value.parse::<SocketAddr>() {
        Ok(addr) => check_advertise(addr).map(Some),
        Err(_) => Err(ListenError::BadAdvertiseAddr { value }),
    }
}

/// An advertised address must be one a host can dial: a specific IP and a port.
pub(crate) fn check_advertise(addr: SocketAddr) -> Result<SocketAddr, ListenError> {
    if addr.ip().is_unspecified() || addr.port() == 0 {
        return Err(ListenError::BadAdvertiseAddr {
            value: addr.to_string(),
        });
    }
    Ok(addr)
}
