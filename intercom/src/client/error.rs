//! [`ClientError`]: every way starting, dispensing or pinging a plugin can fail.

use std::time::Duration;

use crate::handshake::{HandshakeError, Network};
use crate::plugin::BoxError;
use crate::runtime::{ExitInfo, LaunchError};

/// Failures on the host side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The client was killed; make a new one.
    #[error("plugin `{name}` was killed; create a new Client to start it again")]
    Killed {
        /// Plugin name.
        name: String,
    },
    /// Starting failed.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// Nothing came within the start timeout.
    #[error(
        "timeout while waiting for plugin `{name}` to start (waited {waited:?} in step `{step}`); raise ClientConfig::start_timeout if the plugin is slow to start{}",
        tail(stderr)
    )]
    StartTimeout {
        /// Plugin name.
        name: String,
        /// How long.
        waited: Duration,
        /// The step that timed out.
        step: &'static str,
        /// Its last stderr lines.
        stderr: String,
    },
    /// The plugin exited before printing its handshake.
    #[error(
        "plugin `{name}` exited before we could connect ({status}); it usually printed why on stderr{}",
        tail(stderr)
    )]
    ExitedBeforeHandshake {
        /// Plugin name.
        name: String,
        /// How it ended.
        status: ExitInfo,
        /// Its last stderr lines.
        stderr: String,
    },
    /// Stdout closed without a handshake line while the plugin kept running.
    #[error(
        "plugin `{name}` closed its stdout without printing a handshake line; plugins must print the handshake as their first line of stdout{}",
        tail(stderr)
    )]
    NoHandshake {
        /// Plugin name.
        name: String,
        /// Its last stderr lines.
        stderr: String,
    },
    /// The first line of stdout is not a valid handshake.
    #[error("plugin `{name}` sent an invalid handshake line{}", tail(stderr))]
    Handshake {
        /// Plugin name.
        name: String,
        /// Its last stderr lines.
        stderr: String,
        /// What is wrong.
        #[source]
        source: HandshakeError,
    },
    /// The handshake was fine but the connection failed.
    #[error("failed to connect to plugin `{name}` at {network}:{address}")]
    Connect {
        /// Plugin name.
        name: String,
        /// Network.
        network: Network,
        /// Address.
        address: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// AutoMTLS set-up failed.
    #[error("failed to set up AutoMTLS")]
    Tls(#[from] crate::tls::TlsError),
    /// The host asked for AutoMTLS and the plugin announced no certificate.
    #[error(
        "plugin `{name}` does not support AutoMTLS: its handshake carries no certificate, and this host requires one; update the plugin to a go-plugin (v1.2+) or intercom version that supports AutoMTLS, or call ClientConfig::auto_mtls(false) to connect in plaintext (any local process can then call the plugin)"
    )]
    AutoMtlsUnsupported {
        /// Plugin name.
        name: String,
    },
    /// Reattach target is gone.
    #[error("reattachment process not found: pid {pid} is not running")]
    ReattachNotFound {
        /// The pid.
        pid: u32,
    },
    /// The reattach pid is not the process serving the socket: the plugin is gone and its
    /// pid belongs to another process now, or the config is wrong. Nothing was signalled.
    #[error(
        "reattach refused: pid {pid} is not the plugin listening on {address} (that is pid {listener}); the plugin may have exited and its pid been reused, so check the ReattachConfig"
    )]
    ReattachPidMismatch {
        /// The pid in the config.
        pid: u32,
        /// The socket.
        address: String,
        /// The pid that listens on it.
        listener: u32,
    },
    /// Multiplexing cannot be combined with reattach.
    #[error("reattach cannot be combined with Multiplex::Required")]
    ReattachMultiplex,
    /// No plugin of that name in the host's plugin map.
    #[error("unknown plugin type: {name:?}; the host's plugin map has {available:?}")]
    UnknownPlugin {
        /// The name asked for.
        name: String,
        /// The names known.
        available: Vec<String>,
    },
    /// `dispense_plugin::<P>()`: no plugin of type `P` in the host's plugin map.
    #[error(
        "no plugin of type {plugin} in the host's plugin map (it has {available:?}); register one with PluginSet::with(name, …::client())"
    )]
    NoPluginOfType {
        /// The plugin type asked for.
        plugin: &'static str,
        /// The names known.
        available: Vec<String>,
    },
    /// `dispense_plugin::<P>()`: several plugins of type `P` in the host's plugin map.
    #[error(
        "the host's plugin map has several plugins of type {plugin}: {names:?}; dispense one of them by name with dispense(name)"
    )]
    AmbiguousPlugin {
        /// The plugin type asked for.
        plugin: &'static str,
        /// The names it is registered under.
        names: Vec<String>,
    },
    /// The plugin's client is not of the requested type.
    #[error(
        "plugin {name:?} does not dispense a {requested}; check the type asked of dispense() against the plugin map entry's client()"
    )]
    DispenseType {
        /// Plugin name.
        name: String,
        /// Requested type.
        requested: &'static str,
    },
    /// The plugin's client could not be built.
    #[error("failed to dispense plugin {name:?}")]
    Dispense {
        /// Plugin name.
        name: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The Kubernetes runtime failed.
    #[cfg(feature = "kubernetes")]
    #[error(transparent)]
    Kubernetes(#[from] crate::runtime::kubernetes::KubeError),
    /// Health check failed.
    #[error("failed to ping plugin `{name}`")]
    Ping {
        /// Plugin name.
        name: String,
        /// The gRPC status.
        #[source]
        source: tonic::Status,
    },
}

/// The stderr lines an error message ends with, when there are any.
fn tail(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("\nlast lines of the plugin's stderr:\n{stderr}")
    }
}
