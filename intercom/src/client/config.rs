//! What a [`Client`](crate::Client) starts and how: [`ClientConfig`], its [`Target`], and
//! the settings a target shares.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tokio::io::AsyncWrite;

use crate::connection::Writer;
use crate::handshake::{HandshakeConfig, Network, format_versions};
use crate::plugin::PluginSet;
use crate::serve::env as serve_env;

use super::Target;

/// Default for [`ClientConfig::start_timeout`] (go-plugin's).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`ClientConfig::kill_timeout`]: how long a graceful shutdown may take.
pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether brokered connections ride the one host→plugin connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Multiplex {
    /// Ask for it; fall back to go-plugin's classic broker (a listener per id) when the
    /// plugin does not support it (older go-plugin plugins, Python). The default.
    #[default]
    Auto,
    /// Ask for it and fail the handshake when the plugin cannot (go-plugin's
    /// `GRPCBrokerMultiplex: true`; required where only one port is reachable).
    Required,
    /// Do not ask: classic broker.
    Off,
}

/// Connect to a plugin that is already running instead of launching one
/// (go-plugin's `ReattachConfig`). No handshake is performed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReattachConfig {
    /// The app protocol version it serves.
    pub protocol_version: u32,
    /// `unix` or `tcp`.
    pub network: Network,
    /// Socket path or `ip:port`.
    pub address: String,
    /// Its pid, when local: checked at attach, polled for exit, killed by `kill`.
    pub pid: Option<u32>,
    /// Test mode (go-plugin's `Test`): `kill` only disconnects. The plugin is neither
    /// asked to shut down nor killed; it is responsible for exiting on its own.
    pub test: bool,
}

impl ReattachConfig {
    /// Reattach to `address` serving `protocol_version`.
    pub fn new(protocol_version: u32, network: Network, address: impl Into<String>) -> Self {
        Self {
            protocol_version,
            network,
            address: address.into(),
            pid: None,
            test: false,
        }
    }

    /// Sets the pid.
    #[must_use]
    pub fn pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }
}

/// How to start a plugin ([`Target`]) and talk to it.
#[non_exhaustive]
pub struct ClientConfig {
    /// Must match the plugin's.
    pub handshake: HandshakeConfig,
    /// Plugins this host can dispense, at `handshake.protocol_version`.
    pub plugins: PluginSet,
    /// Plugins per app version, for versioned plugins.
    pub versioned_plugins: BTreeMap<u32, PluginSet>,
    /// What the client starts: a launched plugin, a reattached one, or a Deployment.
    pub target: Target,
    /// Bounds launch + handshake line + connect (default 1 min).
    pub start_timeout: Duration,
    /// How long `kill` waits for a graceful exit before killing (default 2 s).
    pub kill_timeout: Duration,
    /// AutoMTLS (default on): a fresh certificate per launch, each side pins the other's.
    pub auto_mtls: bool,
    /// Broker transport (default [`Multiplex::Auto`]).
    pub multiplex: Multiplex,
    /// Register for [`cleanup_clients`](crate::cleanup_clients).
    pub managed: bool,
    /// TCP port range for a plugin that listens on TCP (default 10000–25000).
    pub port_range: (u16, u16),
    /// Receives what the plugin writes to its stdout after the handshake (via GRPCStdio).
    pub sync_stdout: Option<Writer>,
    /// Receives what the plugin writes to its stderr after the handshake (via GRPCStdio).
    pub sync_stderr: Option<Writer>,
    /// Receives a verbatim copy of the plugin's real stderr (its log lines).
    pub stderr: Option<Writer>,
    /// The name log lines carry (default: the target's, see [`Target::name`]).
    pub name: Option<String>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("handshake", &self.handshake)
            .field("plugins", &self.plugins)
            .field("target", &self.target)
            .field("start_timeout", &self.start_timeout)
            .field("auto_mtls", &self.auto_mtls)
            .field("multiplex", &self.multiplex)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A config that starts `target` (a [`Launcher`](crate::runtime::Launcher) such as
    /// [`ProcessLauncher`](crate::runtime::ProcessLauncher), a [`ReattachConfig`], or a
    /// `KubernetesConfig`), with go-plugin's defaults: AutoMTLS on and multiplexing
    /// negotiated.
    pub fn new(handshake: HandshakeConfig, plugins: PluginSet, target: impl Into<Target>) -> Self {
        Self {
            handshake,
            plugins,
            versioned_plugins: BTreeMap::new(),
            target: target.into(),
            start_timeout: DEFAULT_START_TIMEOUT,
            kill_timeout: DEFAULT_KILL_TIMEOUT,
            auto_mtls: true,
            multiplex: Multiplex::Auto,
            managed: false,
            port_range: (10000, 25000),
            sync_stdout: None,
            sync_stderr: None,
            stderr: None,
            name: None,
        }
    }

    /// Sets the start timeout.
    #[must_use]
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Sets the graceful-kill timeout.
    #[must_use]
    pub fn kill_timeout(mut self, timeout: Duration) -> Self {
        self.kill_timeout = timeout;
        self
    }

    /// Turns AutoMTLS on or off.
    #[must_use]
    pub fn auto_mtls(mut self, on: bool) -> Self {
        self.auto_mtls = on;
        self
    }

    /// Chooses the broker transport.
    #[must_use]
    pub fn multiplex(mut self, multiplex: Multiplex) -> Self {
        self.multiplex = multiplex;
        self
    }

    /// Registers the client for [`cleanup_clients`](crate::cleanup_clients).
    #[must_use]
    pub fn managed(mut self, managed: bool) -> Self {
        self.managed = managed;
        self
    }

    /// Adds plugins for a specific app version.
    #[must_use]
    pub fn versioned(mut self, version: u32, set: PluginSet) -> Self {
        self.versioned_plugins.insert(version, set);
        self
    }

    /// Where the plugin's synced stdout goes.
    #[must_use]
    pub fn sync_stdout(mut self, w: impl AsyncWrite + Send + Sync + Unpin + 'static) -> Self {
        self.sync_stdout = Some(Box::new(w));
        self
    }

    /// Where the plugin's synced stderr goes.
    #[must_use]
    pub fn sync_stderr(mut self, w: impl AsyncWrite + Send + Sync + Unpin + 'static) -> Self {
        self.sync_stderr = Some(Box::new(w));
        self
    }

    /// Where a raw copy of the plugin's stderr goes.
    #[must_use]
    pub fn stderr(mut self, w: impl AsyncWrite + Send + Sync + Unpin + 'static) -> Self {
        self.stderr = Some(Box::new(w));
        self
    }

    /// The plugin name in log lines.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// What a launch offers the plugin: `ports` is the TCP port range (process runtime
    /// only), `multiplex` whether to ask for the broker on the one connection.
    pub(crate) fn offer(
        &self,
        ports: Option<(u16, u16)>,
        multiplex: bool,
    ) -> Result<Offer, crate::tls::TlsError> {
        let host_versions: Vec<u32> = self.versions().keys().copied().collect();
        let identity = if self.auto_mtls {
            Some(crate::tls::Identity::generate()?)
        } else {
            None
        };
        let env = self.plugin_env(&host_versions, ports, multiplex, identity.as_ref());
        Ok(Offer {
            host_versions,
            identity,
            env,
        })
    }

    /// The environment the host gives the plugin (go-plugin's order): cookie, port range
    /// (process runtime), offered versions, multiplexing request, AutoMTLS certificate.
    fn plugin_env(
        &self,
        host_versions: &[u32],
        ports: Option<(u16, u16)>,
        multiplex: bool,
        identity: Option<&crate::tls::Identity>,
    ) -> Vec<(String, String)> {
        let mut env = vec![(
            self.handshake.magic_cookie_key.to_string(),
            self.handshake.magic_cookie_value.to_string(),
        )];
        if let Some((min, max)) = ports {
            env.push((crate::protocol::env::MIN_PORT.into(), min.to_string()));
            env.push((crate::protocol::env::MAX_PORT.into(), max.to_string()));
        }
        env.push((
            serve_env::PROTOCOL_VERSIONS.into(),
            format_versions(host_versions),
        ));
        if multiplex {
            env.push((serve_env::MULTIPLEX_GRPC.into(), "true".into()));
        }
        if let Some(id) = identity {
            env.push((serve_env::CLIENT_CERT.into(), id.cert_pem()));
        }
        env
    }

    pub(crate) fn versions(&self) -> BTreeMap<u32, PluginSet> {
        let mut all = self.versioned_plugins.clone();
        if !self.plugins.is_empty() || all.is_empty() {
            all.entry(self.handshake.protocol_version)
                .or_insert_with(|| self.plugins.clone());
        }
        all
    }
}

/// What a launching host offers a plugin: its app protocol versions, a fresh AutoMTLS
/// identity (when on), and the environment that carries both.
pub(crate) struct Offer {
    /// The app protocol versions the host can dispense, ascending.
    pub(crate) host_versions: Vec<u32>,
    /// The host's certificate and key for this launch.
    pub(crate) identity: Option<crate::tls::Identity>,
    /// The plugin's environment additions.
    pub(crate) env: Vec<(String, String)>,
}
