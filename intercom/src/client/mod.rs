//! Host side: [`Client`] starts a plugin (its [`Target`]: launched, reattached or on
//! Kubernetes), connects, and hands out typed clients through
//! [`Connection::dispense`].

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Mutex as AsyncMutex;
use tracing::Instrument as _;

use crate::runtime::PluginHandle;
use crate::sync::lock;

mod config;
mod connection;
mod error;
mod start;

pub use config::{
    ClientConfig, DEFAULT_KILL_TIMEOUT, DEFAULT_START_TIMEOUT, Multiplex, ReattachConfig,
};
#[allow(deprecated)]
pub use connection::ClientProtocol;
pub use connection::Connection;
pub use error::ClientError;
pub use start::Target;
use start::{StartContext, Started, Stop};

/// How long `kill` lets the stdio and stderr pumps flush what the plugin said last.
const PUMP_FLUSH_GRACE: Duration = Duration::from_millis(200);

/// A plugin the host controls (go-plugin's `Client`). Cheap to share by reference; all
/// methods take `&self`.
///
/// # Usage
/// ```no_run
/// # use intercom::{Client, ClientConfig, HandshakeConfig, PluginSet, runtime::ProcessLauncher};
/// # async fn f(plugins: PluginSet) -> Result<(), intercom::ClientError> {
/// const HANDSHAKE: HandshakeConfig = HandshakeConfig::new(1, "BASIC_PLUGIN", "hello");
/// let client = Client::new(
///     ClientConfig::new(HANDSHAKE, plugins, ProcessLauncher::new("./kv-plugin")),
/// );
/// let protocol = client.connect().await?;
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
    exited: Arc<AtomicBool>,
}

enum State {
    New,
    Running(Running),
    Killed,
}

struct Running {
    protocol: Connection,
    tasks: tokio::task::JoinSet<()>,
    version: u32,
    stop: Box<dyn Stop>,
}

impl Client {
    /// A client for `config`; nothing starts until [`start`](Self::start) or
    /// [`connect`](Self::connect).
    pub fn new(config: ClientConfig) -> Self {
        let name = config
            .name
            .clone()
            .or_else(|| config.target.name())
            .unwrap_or_else(|| "plugin".into());
        let managed = config.managed;
        let inner = Arc::new(ClientInner {
            name,
            config: AsyncMutex::new(config),
            state: AsyncMutex::new(State::New),
            handle: Mutex::new(None),
            exited: Arc::new(AtomicBool::new(false)),
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
        self.connect().await.map(drop)
    }

    /// The connection to the plugin, starting it first if needed (go-plugin's
    /// `Client.Client()`).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    #[deprecated(since = "0.1.0", note = "renamed to `connect`")]
    pub async fn client(&self) -> Result<Connection, ClientError> {
        self.connect().await
    }

    /// The connection to the plugin, starting it first if needed (go-plugin's
    /// `Client.Client()`). Every call after the first returns the same connection.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn connect(&self) -> Result<Connection, ClientError> {
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

    /// Starts the configured [`Target`] and does what is the same for every target: the
    /// dispense set of the negotiated version, the broker session, the stdio pump.
    async fn start_target(&self, config: &mut ClientConfig) -> Result<Running, ClientError> {
        let target = config.target.clone();
        let ctx = StartContext {
            name: &self.inner.name,
            config,
            handle: &self.inner.handle,
            exited: &self.inner.exited,
        };
        let Started {
            conn,
            version,
            mut tasks,
            stop,
        } = target.start(ctx).await?;
        let plugins = config.versions().get(&version).cloned().unwrap_or_default();
        let protocol = Connection::new(
            self.inner.name.clone(),
            conn,
            plugins,
            &mut tasks,
            config.sync_stdout.take(),
            config.sync_stderr.take(),
        );
        Ok(Running {
            protocol,
            tasks,
            version,
            stop,
        })
    }

    /// Stops the plugin: closes the broker, asks it to shut down (`GRPCController`),
    /// waits up to `kill_timeout`, then kills it (and its process group). Safe to call
    /// twice. A reattached plugin in test mode is only disconnected.
    pub async fn kill(&self) {
        let span = tracing::info_span!("plugin_kill", plugin = %self.inner.name);
        self.stop().instrument(span).await;
    }

    /// [`kill`](Self::kill)'s work, in its span: the target's own [`Stop`], then what
    /// is the same for every target.
    async fn stop(&self) {
        let mut state = self.inner.state.lock().await;
        let previous = std::mem::replace(&mut *state, State::Killed);
        let kill_timeout = self.inner.config.lock().await.kill_timeout;
        let handle = lock(&self.inner.handle).take();
        let State::Running(mut running) = previous else {
            // Never started, or a start that failed: stop whatever it left running.
            if let Some(handle) = handle {
                let _ = handle.kill().await;
            }
            return;
        };
        let stopped = running
            .stop
            .stop(&running.protocol, &self.inner.name, kill_timeout)
            .await;
        running.protocol.close();
        if stopped.gone {
            self.inner
                .exited
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if stopped.flush_pumps {
            // Give the pumps a moment to flush what the plugin said last.
            let _ = tokio::time::timeout(PUMP_FLUSH_GRACE, async {
                while running.tasks.join_next().await.is_some() {}
            })
            .await;
        }
        running.tasks.abort_all();
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
