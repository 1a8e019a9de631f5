//! [`ListenError`]: the failures to open a listener.

use std::io;

use crate::unix_socket::{SocketDirError, SocketGroupError};

/// Failures to open a listener.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// `INTERCOM_LISTEN_ADDR` is not `ip:port`.
    #[error(
        "failed to parse INTERCOM_LISTEN_ADDR {value:?}: expected `ip:port`, e.g. `127.0.0.5:50077`"
    )]
    BadListenAddr {
        /// The value found.
        value: String,
    },
    /// The advertised address (`INTERCOM_ADVERTISE_ADDR` or
    /// [`ServeConfig::advertise`](crate::ServeConfig::advertise)) is not a dialable
    /// `ip:port`.
    #[error(
        "failed to use {value:?} as the plugin's advertised address (INTERCOM_ADVERTISE_ADDR): expected `ip:port` with a specific IP and a non-zero port, e.g. `10.1.2.3:50077`"
    )]
    BadAdvertiseAddr {
        /// The value found.
        value: String,
    },
    /// A port variable is not a number.
    #[error("failed to parse {key}={value:?} as a port number")]
    BadPort {
        /// The variable.
        key: &'static str,
        /// The value found.
        value: String,
    },
    /// `PLUGIN_MIN_PORT` > `PLUGIN_MAX_PORT`.
    #[error("PLUGIN_MIN_PORT value of {min} is greater than PLUGIN_MAX_PORT value of {max}")]
    PortRange {
        /// The minimum.
        min: u16,
        /// The maximum.
        max: u16,
    },
    /// No port in the range could be bound.
    #[error("failed to bind a TCP listener on 127.0.0.1 in ports {min}..={max}: all taken")]
    NoFreePort {
        /// The minimum.
        min: u16,
        /// The maximum.
        max: u16,
    },
    /// The unix socket's directory could not be made.
    #[error(transparent)]
    SocketDir(#[from] SocketDirError),
    /// The unix socket group could not be applied.
    #[error(transparent)]
    SocketGroup(#[from] SocketGroupError),
    /// The OS refused to bind.
    #[error("failed to bind {what}")]
    Bind {
        /// What was being bound.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}
