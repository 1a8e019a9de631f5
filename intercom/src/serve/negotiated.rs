//! [`Negotiated`]: what the host's environment (cookie aside) and the [`ServeConfig`]
//! settle before the plugin serves: the app version and its plugins, AutoMTLS, the broker
//! mode, where to listen and what to announce.

use super::startup::ignore_sigint;
use super::{ServeConfig, ServeError};
use crate::broker::{Mode, MuxSlot};
use crate::handshake::{negotiate_version, parse_go_bool};
use crate::plugin::PluginSet;
use crate::protocol::env;
use crate::transport::{ListenConfig, Listener, TlsPair};

/// What the host's environment and the config settle before serving.
pub(super) struct Negotiated {
    pub(super) version: u32,
    pub(super) plugins: PluginSet,
    /// AutoMTLS (only when the host sent its certificate): our identity and the pinned pair.
    pub(super) identity: Option<crate::tls::Identity>,
    pub(super) tls: Option<TlsPair>,
    /// The host asked for the multiplexed broker (`PLUGIN_MULTIPLEX_GRPC` true).
    pub(super) multiplex: bool,
    /// `PLUGIN_MULTIPLEX_GRPC` was set at all (then the handshake carries the MUX field).
    pub(super) mux_requested: bool,
    pub(super) listen: ListenConfig,
    /// Announced instead of a TCP listener's own address.
    pub(super) advertise: Option<std::net::SocketAddr>,
}

impl Negotiated {
    pub(super) fn from_env(config: &ServeConfig) -> Result<Self, ServeError> {
        let all = config.versions();
        let plugin_versions: Vec<u32> = all.keys().copied().collect();
        if plugin_versions.is_empty() {
            return Err(ServeError::NoPlugins);
        }
        let (version, invalid) = negotiate_version(
            std::env::var(env::PROTOCOL_VERSIONS).ok().as_deref(),
            &plugin_versions,
        );
        for bad in invalid {
            eprint!("server sent invalid plugin version {bad:?}");
        }
        let plugins = all.get(&version).cloned().unwrap_or_default();

        ignore_sigint();

        let client_cert = std::env::var(env::CLIENT_CERT).unwrap_or_default();
        let (identity, tls) = if client_cert.is_empty() {
            (None, None)
        } else {
            let peer =
                crate::tls::parse_pem_certificate(&client_cert).map_err(ServeError::ClientCert)?;
            let identity = crate::tls::Identity::generate().map_err(ServeError::Tls)?;
            let pair = TlsPair::new(&identity, &peer).map_err(ServeError::Tls)?;
            (Some(identity), Some(pair))
        };

        let mux_env = std::env::var(env::MULTIPLEX_GRPC).unwrap_or_default();
        let listen = match config.listen.clone() {
            Some(l) => l,
            None => ListenConfig::from_env()?,
        };
        let advertise = match config.advertise {
            Some(addr) => Some(crate::transport::check_advertise(addr)?),
            None => crate::transport::advertise_from_env()?,
        };
        Ok(Self {
            version,
            plugins,
            identity,
            tls,
            multiplex: parse_go_bool(&mux_env) == Some(true),
            mux_requested: !mux_env.is_empty(),
            listen,
            advertise,
        })
    }

    /// The address for the handshake line: the advertised one for a TCP listener, else
    /// the listener's own (`bound`).
    pub(super) fn announced(&self, listener: &Listener, bound: String) -> String {
        match (listener.network(), self.advertise) {
            (crate::handshake::Network::Tcp, Some(addr)) => addr.to_string(),
            _ => bound,
        }
    }

    pub(super) fn broker_mode(&self, mux_slot: &MuxSlot) -> Mode {
        if self.multiplex {
            Mode::Mux(mux_slot.clone())
        } else {
            // Classic broker listeners: our own kind of listener, in the same place.
            Mode::Classic(match &self.listen {
                // A broker listener's address is sent to the host as bound: on `0.0.0.0`
                // bind the advertised IP instead, an address the host can dial.
                ListenConfig::Tcp(addr) => {
                    let ip = match self.advertise {
                        Some(adv) if addr.ip().is_unspecified() => adv.ip(),
                        _ => addr.ip(),
                    };
                    ListenConfig::Tcp(std::net::SocketAddr::new(ip, 0))
                }
                other => other.clone(),
            })
        }
    }
}
