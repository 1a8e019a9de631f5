//! Host side: [`Client`] launches a plugin, performs the handshake, connects, and hands
//! out typed clients through [`ClientProtocol::dispense`].

use crate::sync::lock;
use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, BufReader};
use tokio::sync::Mutex as AsyncMutex;
use tonic::transport::Channel;
use tracing::Instrument as _;

use crate::broker::GrpcBroker;
use crate::connection::{Conn, Writer, address_dialer, connect, pump_stderr, pump_stdio};
use crate::handshake::{Handshake, HandshakeConfig, HandshakeError, Network, format_versions};
use crate::plugin::{BoxError, PluginSet};
use crate::plugin_exit::PluginExit;
use crate::reattach_pid::{self, ProcessIdentity};
use crate::runtime::{ExitInfo, LaunchError, Launcher, PluginHandle};
use crate::serve::env as serve_env;
use crate::stderr_tail::StderrTail;
use crate::transport::TlsPair;

/// Default for [`ClientConfig::start_timeout`] (go-plugin's).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`ClientConfig::kill_timeout`]: how long a graceful shutdown may take.
pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long, after the plugin process ended, the host waits for the rest of its stderr
/// before recording the exit for the calls' errors.
const EXIT_STDERR_GRACE: Duration = Duration::from_millis(200);

/// At most how long a bad handshake waits for the stderr pump to catch up with what a
/// still-running plugin printed before it.
const STDERR_DRAIN: Duration = Duration::from_millis(50);

/// How long a failed launch waits for its process to be killed.
const FAILED_LAUNCH_KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a plugin that closed stdout before its handshake may take to report its exit
/// status.
const EXIT_STATUS_WAIT: Duration = Duration::from_secs(2);

/// How often a reattached plugin (not our child: no exit notice) is checked for being alive.
const REATTACHED_EXIT_POLL: Duration = Duration::from_secs(1);

/// How often `kill` checks whether a reattached plugin has exited, up to `kill_timeout`.
const REATTACHED_KILL_POLL: Duration = Duration::from_millis(20);

/// How long `kill` lets the stdio and stderr pumps flush what the plugin said last.
const PUMP_FLUSH_GRACE: Duration = Duration::from_millis(200);

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
    /// Test mode: `kill` never kills the process.
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

/// How to launch (or reattach to) a plugin and talk to it.
#[non_exhaustive]
pub struct ClientConfig {
    /// Must match the plugin's.
    pub handshake: HandshakeConfig,
    /// Plugins this host can dispense, at `handshake.protocol_version`.
    pub plugins: PluginSet,
    /// Plugins per app version, for versioned plugins.
    pub versioned_plugins: BTreeMap<u32, PluginSet>,
    /// What starts the plugin (exactly one of `launcher` and `reattach`).
    pub launcher: Option<Arc<dyn Launcher>>,
    /// A running plugin to connect to.
    pub reattach: Option<ReattachConfig>,
    /// Bounds launch + handshake line + connect (default 1 min).
    pub start_timeout: Duration,
    /// How long `kill` waits for a graceful exit before killing (default 2 s).
    pub kill_timeout: Duration,
    /// AutoMTLS (default on): a fresh certificate per launch, each side pins the other's.
    pub auto_mtls: bool,
    /// Broker transport (default [`Multiplex::Auto`]).
    pub multiplex: Multiplex,
    /// Register for [`cleanup_clients`].
    pub managed: bool,
    /// TCP port range for a plugin that listens on TCP (default 10000–25000).
    pub port_range: (u16, u16),
    /// Receives what the plugin writes to its stdout after the handshake (via GRPCStdio).
    pub sync_stdout: Option<Writer>,
    /// Receives what the plugin writes to its stderr after the handshake (via GRPCStdio).
    pub sync_stderr: Option<Writer>,
    /// Receives a verbatim copy of the plugin's real stderr (its log lines).
    pub stderr: Option<Writer>,
    /// The name log lines carry (default: the launcher's name).
    pub name: Option<String>,
    /// Run the plugin on Kubernetes instead (exactly one of `launcher`, `reattach`,
    /// `kubernetes`).
    #[cfg(feature = "kubernetes")]
    pub kubernetes: Option<crate::runtime::kubernetes::KubernetesConfig>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("handshake", &self.handshake)
            .field("plugins", &self.plugins)
            .field("launcher", &self.launcher)
            .field("reattach", &self.reattach)
            .field("start_timeout", &self.start_timeout)
            .field("auto_mtls", &self.auto_mtls)
            .field("multiplex", &self.multiplex)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A config with go-plugin's defaults, AutoMTLS on and multiplexing negotiated.
    pub fn new(handshake: HandshakeConfig, plugins: PluginSet) -> Self {
        Self {
            handshake,
            plugins,
            versioned_plugins: BTreeMap::new(),
            launcher: None,
            reattach: None,
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
            #[cfg(feature = "kubernetes")]
            kubernetes: None,
        }
    }

    /// Runs the plugin on Kubernetes (a Deployment + Service).
    #[cfg(feature = "kubernetes")]
    #[must_use]
    pub fn kubernetes(mut self, config: crate::runtime::kubernetes::KubernetesConfig) -> Self {
        if self.name.is_none() {
            self.name = config.reattach.clone().or_else(|| {
                config
                    .deployment
                    .as_ref()
                    .and_then(|d| d.metadata.name.clone())
            });
        }
        self.kubernetes = Some(config);
        self
    }

    /// Launches with `launcher` (e.g. a [`ProcessLauncher`](crate::runtime::ProcessLauncher)).
    #[must_use]
    pub fn launcher(mut self, launcher: impl Launcher) -> Self {
        self.launcher = Some(Arc::new(launcher));
        self
    }

    /// Connects to a running plugin instead of launching.
    #[must_use]
    pub fn reattach(mut self, reattach: ReattachConfig) -> Self {
        self.reattach = Some(reattach);
        self
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

    /// Registers the client for [`cleanup_clients`].
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

    fn versions(&self) -> BTreeMap<u32, PluginSet> {
        let mut all = self.versioned_plugins.clone();
        if !self.plugins.is_empty() || all.is_empty() {
            all.entry(self.handshake.protocol_version)
                .or_insert_with(|| self.plugins.clone());
        }
        all
    }
}

/// Failures on the host side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Neither or both of launcher and reattach were set.
    #[error("exactly one of ClientConfig::launcher or ClientConfig::reattach must be set")]
    Config,
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

fn tail(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("\nlast lines of the plugin's stderr:\n{stderr}")
    }
}

/// A plugin the host controls (go-plugin's `Client`). Cheap to share by reference; all
/// methods take `&self`.
///
/// # Usage
/// ```no_run
/// # use intercom::{Client, ClientConfig, HandshakeConfig, PluginSet, runtime::ProcessLauncher};
/// # async fn f(plugins: PluginSet) -> Result<(), intercom::ClientError> {
/// const HANDSHAKE: HandshakeConfig = HandshakeConfig::new(1, "BASIC_PLUGIN", "hello");
/// let client = Client::new(
///     ClientConfig::new(HANDSHAKE, plugins).launcher(ProcessLauncher::new("./kv-plugin")),
/// );
/// let protocol = client.client().await?;
/// protocol.ping().await?;
/// // let kv: KvClient<Channel> = protocol.dispense("kv_grpc")?;
/// client.kill().await;
/// # Ok(()) }
/// ```
pub struct Client {
    inner: Arc<ClientInner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.inner.name)
            .field("id", &self.id())
            .field("exited", &self.exited())
            .finish()
    }
}

struct ClientInner {
    name: String,
    config: AsyncMutex<ClientConfig>,
    state: AsyncMutex<State>,
    handle: Mutex<Option<Arc<dyn PluginHandle>>>,
    exited: Arc<std::sync::atomic::AtomicBool>,
    /// The process a reattached client manages (`None`: not reattached, or in test mode).
    reattached: Mutex<Option<ProcessIdentity>>,
}

enum State {
    New,
    Running(Running),
    Killed,
}

struct Running {
    protocol: ClientProtocol,
    tasks: tokio::task::JoinSet<()>,
    version: u32,
}

impl Client {
    /// A client for `config`; nothing starts until [`start`](Self::start) or
    /// [`client`](Self::client).
    pub fn new(config: ClientConfig) -> Self {
        let name = config
            .name
            .clone()
            .or_else(|| config.launcher.as_ref().map(|l| l.name()))
            .unwrap_or_else(|| "plugin".into());
        let managed = config.managed;
        let inner = Arc::new(ClientInner {
            name,
            config: AsyncMutex::new(config),
            state: AsyncMutex::new(State::New),
            handle: Mutex::new(None),
            exited: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            reattached: Mutex::new(None),
        });
        if managed {
            lock(&MANAGED).push(Arc::downgrade(&inner));
        }
        Client { inner }
    }

    /// The name used in logs and errors.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Starts the plugin (once) and connects.
    ///
    /// # Cancel safety
    /// Dropping the future mid-start kills what was launched.
    ///
    /// # Errors
    /// Every [`ClientError`] start can produce; on error the plugin has been killed.
    pub async fn start(&self) -> Result<(), ClientError> {
        self.client().await.map(drop)
    }

    /// The connection to the plugin, starting it first if needed.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn client(&self) -> Result<ClientProtocol, ClientError> {
        let mut state = self.inner.state.lock().await;
        match &*state {
            State::Running(r) => return Ok(r.protocol.clone()),
            State::Killed => {
                return Err(ClientError::Killed {
                    name: self.inner.name.clone(),
                });
            }
            State::New => {}
        }
        let mut config = self.inner.config.lock().await;
        let span = tracing::info_span!("plugin_start", plugin = %self.inner.name);
        let running = self.start_target(&mut config).instrument(span).await?;
        let protocol = running.protocol.clone();
        *state = State::Running(running);
        Ok(protocol)
    }

    /// Starts the one target the configuration names: a Kubernetes Deployment, a launched
    /// process or a reattached one.
    async fn start_target(&self, config: &mut ClientConfig) -> Result<Running, ClientError> {
        #[cfg(feature = "kubernetes")]
        if config.kubernetes.is_some() {
            if config.launcher.is_some() || config.reattach.is_some() {
                return Err(ClientError::Config);
            }
            return self.launch_kubernetes(config).await;
        }
        match (&config.launcher, &config.reattach) {
            (Some(_), None) => match self.launch(config).await {
                Ok(running) => Ok(running),
                Err(err) => {
                    self.stop_failed_launch().await;
                    Err(err)
                }
            },
            (None, Some(_)) => self.attach(config).await,
            _ => Err(ClientError::Config),
        }
    }

    /// After a failed launch: the process is stopped before the error is returned, so
    /// [`exited`](Self::exited) is true ([`id`](Self::id) still names what ran).
    async fn stop_failed_launch(&self) {
        let handle = lock(&self.inner.handle).clone();
        if let Some(handle) = handle {
            // Bounded: a process that survives SIGKILL this long is beyond our reach.
            let _ = tokio::time::timeout(FAILED_LAUNCH_KILL_TIMEOUT, handle.kill()).await;
        }
        self.inner
            .exited
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    async fn launch(&self, config: &mut ClientConfig) -> Result<Running, ClientError> {
        let name = self.inner.name.clone();
        let versions = config.versions();
        let host_versions: Vec<u32> = versions.keys().copied().collect();
        let identity = if config.auto_mtls {
            Some(crate::tls::Identity::generate()?)
        } else {
            None
        };
        let env = config.plugin_env(
            &host_versions,
            Some(config.port_range),
            config.multiplex != Multiplex::Off,
            identity.as_ref(),
        );
        let Some(launcher) = config.launcher.clone() else {
            return Err(ClientError::Config);
        };
        let started = Instant::now();
        let deadline = started + config.start_timeout;
        let remaining = || deadline.saturating_duration_since(Instant::now());
        let timeout_err = {
            let name = name.clone();
            move |step, stderr: String| ClientError::StartTimeout {
                name: name.clone(),
                waited: started.elapsed(),
                step,
                stderr,
            }
        };

        let launched = match tokio::time::timeout(remaining(), launcher.launch(env)).await {
            Ok(l) => l?,
            Err(_) => return Err(timeout_err("launch", String::new())),
        };
        let handle: Arc<dyn PluginHandle> = Arc::from(launched.handle);
        *lock(&self.inner.handle) = Some(handle.clone());
        // From here on, any early return must kill what runs: this guard does it.
        let guard = KillGuard(Some(handle.clone()));

        let mut tasks = tokio::task::JoinSet::new();
        let tail = Arc::new(Mutex::new(StderrTail::default()));
        let stderr_done = tokio_util::sync::CancellationToken::new();
        tasks.spawn(pump_stderr(
            launched.stderr,
            name.clone(),
            tail.clone(),
            config.stderr.take(),
            stderr_done.clone(),
        ));
        {
            let exited = self.inner.exited.clone();
            let wait = handle.wait();
            let name = name.clone();
            tasks.spawn(async move {
                let status = wait.await;
                exited.store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::debug!(plugin = %name, %status, "plugin exited");
            });
        }
        let stderr_tail = |tail: &Arc<Mutex<StderrTail>>| -> String { lock(tail).render() };

        let mut stdout = BufReader::new(launched.stdout);
        // Bytes, not a String: a non-UTF-8 line is a bad handshake, not a closed stdout.
        let mut line = Vec::new();
        let read = async {
            // go-plugin reads at most 64 KiB for the line.
            let mut limited = (&mut stdout).take(64 * 1024);
            limited.read_until(b'\n', &mut line).await
        };
        let outcome = tokio::select! {
            // A line written just before exit still counts: read first.
            biased;
            res = tokio::time::timeout(remaining(), read) => match res {
                Ok(Ok(0)) | Ok(Err(_)) => LineOutcome::Eof,
                Ok(Ok(_)) => LineOutcome::Line,
                Err(_) => LineOutcome::Timeout,
            },
            _ = handle.wait() => LineOutcome::Eof,
        };
        match outcome {
            LineOutcome::Line => {}
            LineOutcome::Timeout => {
                return Err(timeout_err(
                    "waiting for the handshake line on stdout",
                    stderr_tail(&tail),
                ));
            }
            LineOutcome::Eof => {
                let status = tokio::time::timeout(EXIT_STATUS_WAIT, handle.wait()).await;
                // Let the stderr pump drain what the plugin said last (it ends at EOF).
                let _ = tokio::time::timeout(EXIT_STDERR_GRACE, stderr_done.cancelled()).await;
                return Err(match status {
                    Ok(status) => ClientError::ExitedBeforeHandshake {
                        name,
                        status,
                        stderr: stderr_tail(&tail),
                    },
                    Err(_) => ClientError::NoHandshake {
                        name,
                        stderr: stderr_tail(&tail),
                    },
                });
            }
        }
        // Later stdout lines are drained and discarded, as go-plugin does.
        tasks.spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut stdout, &mut sink).await;
        });

        let handshake: Handshake = match Handshake::parse_bytes(&line).and_then(|h| {
            h.validate(&host_versions, config.multiplex == Multiplex::Required)
                .map(|()| h)
        }) {
            Ok(h) => h,
            Err(source) => {
                // The plugin still runs (its stderr stays open): give the pump a moment
                // for what it printed before the bad line.
                let _ = tokio::time::timeout(STDERR_DRAIN, stderr_done.cancelled()).await;
                return Err(ClientError::Handshake {
                    name,
                    stderr: stderr_tail(&tail),
                    source,
                });
            }
        };
        let plugins = versions
            .get(&handshake.app_version)
            .cloned()
            .unwrap_or_default();
        let (network, address) =
            handle.plugin_to_host(&handshake.network.to_string(), &handshake.address);
        let network = network.parse().unwrap_or(handshake.network);
        let multiplex = config.multiplex != Multiplex::Off && handshake.multiplex == Some(true);
        if config.multiplex == Multiplex::Auto && !multiplex {
            tracing::debug!(plugin = %name, "plugin does not multiplex; using the classic broker");
        }
        let tls = match (&identity, &handshake.server_cert) {
            (Some(id), Some(cert)) => Some(TlsPair::new(id, cert)?),
            // Fail closed, as go-plugin does: the host asked for mTLS.
            (Some(_), None) => return Err(ClientError::AutoMtlsUnsupported { name }),
            _ => None,
        };
        let connect = connect(
            address_dialer(network, address.clone()),
            network,
            address.clone(),
            multiplex,
            tls,
        )
        .instrument(tracing::info_span!("plugin_connect", plugin = %name, %address));
        let conn = match tokio::time::timeout(remaining(), connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(source)) => {
                return Err(ClientError::Connect {
                    name,
                    network,
                    address,
                    source,
                });
            }
            Err(_) => return Err(timeout_err("connecting", stderr_tail(&tail))),
        };
        let protocol = ClientProtocol::new(name.clone(), conn, plugins, &mut tasks, config);
        {
            // When the process is gone, fail what is in flight at once instead of waiting
            // for the transport to notice, and tell the calls how it ended.
            let wait = handle.wait();
            let protocol = protocol.clone();
            let name = name.clone();
            protocol.conn.broker.exit_watch().arm();
            tasks.spawn(async move {
                let status = wait.await;
                // Its last words: stderr reaches EOF as the process ends (unless something
                // it started keeps the pipe open).
                let _ = tokio::time::timeout(EXIT_STDERR_GRACE, stderr_done.cancelled()).await;
                let stderr = lock(&tail).render();
                protocol.conn.broker.exit_watch().record(PluginExit {
                    name,
                    status,
                    stderr,
                });
                protocol.close();
            });
        }
        guard.disarm();
        tracing::debug!(plugin = %name, version = handshake.app_version, multiplex, tls = identity.is_some(), elapsed = ?started.elapsed(), "plugin connected");
        Ok(Running {
            protocol,
            tasks,
            version: handshake.app_version,
        })
    }

    #[cfg(feature = "kubernetes")]
    async fn launch_kubernetes(&self, config: &mut ClientConfig) -> Result<Running, ClientError> {
        use crate::runtime::kubernetes::{self as k8s, KubeError};
        let Some(kube) = config.kubernetes.clone() else {
            return Err(ClientError::Config);
        };
        let name = self.inner.name.clone();
        let versions = config.versions();
        let host_versions: Vec<u32> = versions.keys().copied().collect();
        let identity = if config.auto_mtls {
            Some(crate::tls::Identity::generate()?)
        } else {
            None
        };
        // Only one port of the pod is reachable: the broker must ride it.
        let env = config.plugin_env(&host_versions, None, true, identity.as_ref());
        let started = Instant::now();
        let ctx = k8s::pods_context(
            name.clone(),
            env,
            identity,
            host_versions,
            config.start_timeout,
            config.sync_stdout.take(),
            config.sync_stderr.take(),
        );
        let result = match &kube.reattach {
            Some(deployment) => k8s::reattach(&kube, deployment, ctx).await,
            None => k8s::launch(&kube, ctx).await,
        };
        let (conn, plugin, version) = result.map_err(|e| match e {
            KubeError::Timeout {
                deployment, step, ..
            } => KubeError::Timeout {
                deployment,
                step,
                waited: started.elapsed(),
            },
            other => other,
        })?;
        let handle: Arc<dyn PluginHandle> = Arc::new(plugin);
        *lock(&self.inner.handle) = Some(handle.clone());
        let mut tasks = tokio::task::JoinSet::new();
        {
            let exited = self.inner.exited.clone();
            let wait = handle.wait();
            tasks.spawn(async move {
                wait.await;
                exited.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        }
        let plugins = versions.get(&version).cloned().unwrap_or_default();
        let protocol = ClientProtocol::new(name.clone(), conn, plugins, &mut tasks, config);
        tracing::debug!(plugin = %name, version, elapsed = ?started.elapsed(), "plugin connected on Kubernetes");
        Ok(Running {
            protocol,
            tasks,
            version,
        })
    }

    async fn attach(&self, config: &ClientConfig) -> Result<Running, ClientError> {
        let Some(re) = config.reattach.clone() else {
            return Err(ClientError::Config);
        };
        if config.multiplex == Multiplex::Required {
            return Err(ClientError::ReattachMultiplex);
        }
        let name = self.inner.name.clone();
        let process = match re.pid {
            Some(pid) => Some(reattach_process(&re, pid).await?),
            None => None,
        };
        let plugins = config
            .versions()
            .get(&re.protocol_version)
            .cloned()
            .unwrap_or_default();
        let conn = tokio::time::timeout(
            config.start_timeout,
            connect(
                address_dialer(re.network, re.address.clone()),
                re.network,
                re.address.clone(),
                false,
                None,
            )
            .instrument(tracing::info_span!(
                "plugin_connect",
                plugin = %name,
                address = %re.address
            )),
        )
        .await
        .map_err(|_| ClientError::StartTimeout {
            name: name.clone(),
            waited: config.start_timeout,
            step: "connecting to the reattached plugin",
            stderr: String::new(),
        })?
        .map_err(|source| ClientError::Connect {
            name: name.clone(),
            network: re.network,
            address: re.address.clone(),
            source,
        })?;
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(process) = process {
            let exited = self.inner.exited.clone();
            tasks.spawn(async move {
                while process.is_running() {
                    tokio::time::sleep(REATTACHED_EXIT_POLL).await;
                }
                exited.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        }
        let mut no_writers = ClientConfig::new(config.handshake.clone(), PluginSet::new());
        let protocol = ClientProtocol::new(name, conn, plugins, &mut tasks, &mut no_writers);
        *lock(&self.inner.reattached) = process.filter(|_| !re.test);
        Ok(Running {
            protocol,
            tasks,
            version: re.protocol_version,
        })
    }

    /// Stops the plugin: closes the broker, asks it to shut down (`GRPCController`),
    /// waits up to `kill_timeout`, then kills it (and its process group). Safe to call
    /// twice. A reattached plugin in test mode is only disconnected.
    pub async fn kill(&self) {
        let span = tracing::info_span!("plugin_kill", plugin = %self.inner.name);
        self.stop().instrument(span).await;
    }

    /// [`kill`](Self::kill)'s work, in its span.
    async fn stop(&self) {
        let mut state = self.inner.state.lock().await;
        let previous = std::mem::replace(&mut *state, State::Killed);
        let kill_timeout = self.inner.config.lock().await.kill_timeout;
        let handle = lock(&self.inner.handle).take();
        if let State::Running(mut running) = previous {
            if let Some(handle) = handle.as_ref().filter(|h| !h.graceful_by_client()) {
                // The runtime shuts down its own way (e.g. every replica, then delete).
                if let Err(err) = handle.kill().await {
                    tracing::warn!(plugin = %self.inner.name, error = &err as &dyn std::error::Error, "failed to stop plugin");
                }
                running.protocol.close();
                self.inner
                    .exited
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                running.tasks.abort_all();
                return;
            }
            running.protocol.conn.broker.close();
            let graceful = running.protocol.shutdown(kill_timeout).await;
            running.protocol.close();
            if let Some(handle) = &handle {
                let exited = graceful
                    && tokio::time::timeout(kill_timeout, handle.wait())
                        .await
                        .is_ok();
                if !exited {
                    tracing::warn!(plugin = %self.inner.name, "plugin failed to exit gracefully; killing it");
                }
                if let Err(err) = handle.kill().await {
                    tracing::warn!(plugin = %self.inner.name, error = &err as &dyn std::error::Error, "failed to kill plugin");
                }
                self.inner
                    .exited
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            } else {
                let reattached = *lock(&self.inner.reattached);
                if let Some(process) = reattached {
                    let deadline = Instant::now() + kill_timeout;
                    while process.is_running() && Instant::now() < deadline {
                        tokio::time::sleep(REATTACHED_KILL_POLL).await;
                    }
                    // Only the very process attached to: never a pid reused since.
                    if let Err(err) = process.kill_if_running() {
                        tracing::warn!(plugin = %self.inner.name, pid = process.pid(), error = &err as &dyn std::error::Error, "failed to kill the reattached plugin");
                    }
                }
            }
            // Give the pumps a moment to flush what the plugin said last.
            let _ = tokio::time::timeout(PUMP_FLUSH_GRACE, async {
                while running.tasks.join_next().await.is_some() {}
            })
            .await;
            running.tasks.abort_all();
        } else if let Some(handle) = handle {
            let _ = handle.kill().await;
        }
    }

    /// Whether the plugin has exited (or was killed).
    pub fn exited(&self) -> bool {
        self.inner.exited.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The plugin's id (the pid for a process), once started.
    pub fn id(&self) -> Option<String> {
        lock(&self.inner.handle).as_ref().map(|h| h.id())
    }

    /// The negotiated app protocol version, once connected.
    pub async fn negotiated_version(&self) -> Option<u32> {
        match &*self.inner.state.lock().await {
            State::Running(r) => Some(r.version),
            _ => None,
        }
    }

    /// What another host needs to reattach to this plugin (classic broker and no AutoMTLS
    /// only, as in go-plugin), once connected.
    pub async fn reattach_config(&self) -> Option<ReattachConfig> {
        let state = self.inner.state.lock().await;
        let State::Running(r) = &*state else {
            return None;
        };
        if r.protocol.conn.tls || r.protocol.conn.broker.is_multiplexed() {
            return None;
        }
        let mut re = ReattachConfig::new(
            r.version,
            r.protocol.conn.network,
            r.protocol.conn.address.clone(),
        );
        re.pid = self.id().and_then(|id| id.parse().ok());
        Some(re)
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        // Backstop: dropping the handle kills the process group (see ProcessHandle).
        if let Some(h) = lock(&self.handle).take() {
            drop(h);
        }
    }
}

struct KillGuard(Option<Arc<dyn PluginHandle>>);

impl KillGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = handle.kill().await;
            });
        }
    }
}

/// The live connection to a plugin (go-plugin's `ClientProtocol`): dispense typed
/// clients, ping, reach the broker. Cheap to clone.
#[derive(Clone)]
pub struct ClientProtocol {
    name: Arc<str>,
    conn: Arc<Conn>,
    plugins: PluginSet,
}

impl fmt::Debug for ClientProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientProtocol")
            .field("name", &self.name)
            .field("plugins", &self.plugins)
            .field("broker", &self.conn.broker)
            .finish()
    }
}

impl ClientProtocol {
    fn new(
        name: String,
        conn: Conn,
        plugins: PluginSet,
        tasks: &mut tokio::task::JoinSet<()>,
        config: &mut ClientConfig,
    ) -> Self {
        if let Some(session) = &conn.session {
            tasks.spawn(session.clone().run_host(
                crate::proto::grpc_broker_client::GrpcBrokerClient::new(conn.channel.clone()),
            ));
        }
        if conn.pump_stdio {
            let stdout: Writer = config
                .sync_stdout
                .take()
                .unwrap_or_else(|| Box::new(tokio::io::sink()));
            let stderr: Writer = config
                .sync_stderr
                .take()
                .unwrap_or_else(|| Box::new(tokio::io::sink()));
            tasks.spawn(pump_stdio(
                conn.channel.clone(),
                stdout,
                stderr,
                name.clone(),
                conn.broker.closed_token(),
            ));
        }
        Self {
            name: name.into(),
            conn: Arc::new(conn),
            plugins,
        }
    }

    /// A typed client for the plugin registered as `name` in the host's plugin map.
    ///
    /// Purely local, as in go-plugin: nothing is sent to the plugin.
    ///
    /// # Errors
    /// [`ClientError::UnknownPlugin`], [`ClientError::DispenseType`] when `T` is not
    /// what the plugin map entry builds, [`ClientError::Dispense`].
    pub fn dispense<T: Any + Send + Sync>(&self, name: &str) -> Result<T, ClientError> {
        self.dispense_any(name)?
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| ClientError::DispenseType {
                name: name.to_string(),
                requested: std::any::type_name::<T>(),
            })
    }

    /// As [`dispense`](Self::dispense), untyped.
    ///
    /// # Errors
    /// As [`dispense`](Self::dispense).
    pub fn dispense_any(&self, name: &str) -> Result<Box<dyn Any + Send + Sync>, ClientError> {
        let plugin = self
            .plugins
            .get(name)
            .ok_or_else(|| ClientError::UnknownPlugin {
                name: name.to_string(),
                available: self.plugins.iter().map(|(n, _)| n.to_string()).collect(),
            })?;
        plugin
            .client(&self.conn.broker, self.conn.channel.clone())
            .map_err(|source| ClientError::Dispense {
                name: name.to_string(),
                source,
            })
    }

    /// Checks the plugin is alive (gRPC health `Check` for service `plugin`).
    ///
    /// # Errors
    /// [`ClientError::Ping`] with the gRPC status.
    pub async fn ping(&self) -> Result<(), ClientError> {
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(self.conn.channel.clone());
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: crate::GRPC_SERVICE_NAME.into(),
            })
            .await
            .map(drop)
            .map_err(|source| ClientError::Ping {
                name: self.name.to_string(),
                source,
            })
    }

    /// The host's broker for this connection.
    pub fn broker(&self) -> &GrpcBroker {
        &self.conn.broker
    }

    /// Where the plugin listens, as dialed by the host.
    pub fn address(&self) -> (Network, &str) {
        (self.conn.network, &self.conn.address)
    }

    /// The plugin's AutoMTLS certificate (DER), the only one this connection trusts.
    pub fn plugin_certificate(&self) -> Option<&[u8]> {
        self.conn.plugin_cert.as_deref()
    }

    /// The gRPC channel to the plugin.
    pub fn channel(&self) -> Channel {
        self.conn.channel.clone()
    }

    /// Closes the connection (not the plugin process): broker and, when multiplexed,
    /// the session. Calls in flight fail.
    pub fn close(&self) {
        self.conn.broker.close();
        if let Some(mux) = &self.conn.mux {
            mux.close();
        }
    }

    /// Sends `GRPCController/Shutdown`; true when the plugin acknowledged (or hung up,
    /// as go-plugin plugins may while stopping).
    async fn shutdown(&self, timeout: Duration) -> bool {
        let mut ctl = crate::proto::grpc_controller_client::GrpcControllerClient::new(
            self.conn.channel.clone(),
        );
        match tokio::time::timeout(timeout, ctl.shutdown(crate::proto::Empty {})).await {
            Ok(Ok(_)) => true,
            Ok(Err(status)) => {
                // Unimplemented: no controller (e.g. Python); Unavailable/Cancelled:
                // it stopped before replying, which is success.
                tracing::debug!(plugin = %self.name, code = ?status.code(), "shutdown RPC");
                !matches!(status.code(), tonic::Code::Unimplemented)
            }
            Err(_) => false,
        }
    }
}

enum LineOutcome {
    Line,
    Eof,
    Timeout,
}

/// The process a reattach config names, checked to be the plugin where that can be
/// known: on a unix socket its listener must be the pid or a descendant of it (go-plugin
/// records the pid of `sh -c` wrappers). Over TCP the pid is taken as given.
async fn reattach_process(re: &ReattachConfig, pid: u32) -> Result<ProcessIdentity, ClientError> {
    let process = ProcessIdentity::of(pid).ok_or(ClientError::ReattachNotFound { pid })?;
    if re.network == Network::Unix
        && let Ok(Some(listener)) = reattach_pid::unix_listener_pid(&re.address).await
        && !reattach_pid::is_same_or_descendant(listener, pid)
    {
        return Err(ClientError::ReattachPidMismatch {
            pid,
            address: re.address.clone(),
            listener,
        });
    }
    Ok(process)
}

static MANAGED: Mutex<Vec<Weak<ClientInner>>> = Mutex::new(Vec::new());

/// Kills every client created with [`ClientConfig::managed`], concurrently
/// (go-plugin's `CleanupClients`). Call it before the host exits.
pub async fn cleanup_clients() {
    let clients: Vec<Arc<ClientInner>> = {
        let mut managed = lock(&MANAGED);
        let alive = managed.iter().filter_map(Weak::upgrade).collect();
        managed.clear();
        alive
    };
    let kills = clients.into_iter().map(|inner| async move {
        Client { inner }.kill().await;
    });
    futures::future::join_all(kills).await;
}
