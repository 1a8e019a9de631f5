//! Plugin side: [`serve`] is what a plugin's `main` calls.
//!
//! It checks the magic cookie, negotiates the app protocol version, binds a listener,
//! registers health, broker, controller, stdio and the plugin's own services, prints the
//! handshake line on stdout, and serves until the host asks it to shut down.

use std::collections::BTreeMap;
use std::io::Write;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

use crate::admission::{Admission, Routes};
use crate::broker::{self, GrpcBroker, Mode, MuxSlot, Session, Side};
use crate::handshake::{Handshake, HandshakeConfig, Protocol, negotiate_version};
use crate::plugin::{BoxError, GrpcPlugin, PluginSet};
use crate::transport::{Io, ListenConfig, Listener, TlsPair};

/// Environment variables the host sets for the plugin (the [`protocol`](crate::protocol) ones).
pub use crate::protocol::env;

/// The text go-plugin prints (to stderr) when a plugin is run by hand.
pub const NOT_A_PLUGIN_HOST_MESSAGE: &str = "This binary is a plugin. These are not meant to be executed directly.\nPlease execute the program that consumes these plugins, which will\nload any plugins automatically\n";

/// What a plugin serves and how.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// Must match the host's.
    pub handshake: HandshakeConfig,
    /// Plugins served at `handshake.protocol_version`.
    pub plugins: PluginSet,
    /// Plugins per app protocol version; the highest version the host also offers wins.
    pub versioned_plugins: BTreeMap<u32, PluginSet>,
    /// Where to listen; `None` reads the environment ([`ListenConfig::from_env`]).
    pub listen: Option<ListenConfig>,
    /// The address announced in the handshake line instead of a TCP listener's own (for a
    /// listener on `0.0.0.0`); `None` reads
    /// [`INTERCOM_ADVERTISE_ADDR`](crate::protocol::env::ADVERTISE_ADDR). Ignored for a
    /// unix socket.
    pub advertise: Option<std::net::SocketAddr>,
    /// Stream what the plugin writes to fd 1 and 2 to the host through `GRPCStdio`
    /// (default `true`). Logs go to the original stderr either way.
    pub capture_stdio: bool,
    /// Install a global hclog-JSON `tracing` subscriber on the original stderr, unless
    /// one is already set (default `true`).
    pub init_logging: bool,
}

impl ServeConfig {
    /// A config serving no plugins yet.
    pub fn new(handshake: HandshakeConfig) -> Self {
        Self {
            handshake,
            plugins: PluginSet::new(),
            versioned_plugins: BTreeMap::new(),
            listen: None,
            advertise: None,
            capture_stdio: true,
            init_logging: true,
        }
    }

    /// Adds a plugin at the handshake's protocol version.
    #[must_use]
    pub fn plugin(mut self, name: impl Into<String>, plugin: impl GrpcPlugin) -> Self {
        self.plugins.insert(name, plugin);
        self
    }

    /// Serves `set` when the host negotiates `version`.
    #[must_use]
    pub fn versioned(mut self, version: u32, set: PluginSet) -> Self {
        self.versioned_plugins.insert(version, set);
        self
    }

    /// Listens as `listen` says instead of reading the environment.
    #[must_use]
    pub fn listen(mut self, listen: ListenConfig) -> Self {
        self.listen = Some(listen);
        self
    }

    /// Announces `addr` in the handshake line instead of the TCP listener's own address,
    /// e.g. the pod IP of a plugin listening on `0.0.0.0`. It must be a specific IP and a
    /// non-zero port ([`ServeError::Listen`] otherwise).
    #[must_use]
    pub fn advertise(mut self, addr: std::net::SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// Turns stdio capture on or off.
    #[must_use]
    pub fn capture_stdio(mut self, on: bool) -> Self {
        self.capture_stdio = on;
        self
    }

    /// Turns logger installation on or off.
    #[must_use]
    pub fn init_logging(mut self, on: bool) -> Self {
        self.init_logging = on;
        self
    }

    fn versions(&self) -> BTreeMap<u32, PluginSet> {
        let mut all = self.versioned_plugins.clone();
        if !self.plugins.is_empty() {
            all.entry(self.handshake.protocol_version)
                .or_insert_with(|| self.plugins.clone());
        }
        all
    }
}

/// Why a plugin could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The plugin's own handshake config is incomplete.
    #[error(
        "misconfigured ServeConfig: no magic cookie key or value was set; set `handshake` to the host's HandshakeConfig"
    )]
    Misconfigured,
    /// No plugins were given.
    #[error("misconfigured ServeConfig: no plugins to serve; add one with `ServeConfig::plugin`")]
    NoPlugins,
    /// The listener could not be opened.
    #[error("failed to open the plugin listener")]
    Listen(#[from] crate::transport::ListenError),
    /// `PLUGIN_CLIENT_CERT` is not a PEM certificate.
    #[error("failed to read the host's certificate from PLUGIN_CLIENT_CERT")]
    ClientCert(#[source] crate::tls::TlsError),
    /// AutoMTLS material could not be made.
    #[error("failed to set up AutoMTLS")]
    Tls(#[source] crate::tls::TlsError),
    /// A plugin refused to register.
    #[error("failed to register plugin `{name}` on the gRPC server")]
    Register {
        /// The plugin's name.
        name: String,
        /// Its error.
        #[source]
        source: BoxError,
    },
    /// Writing the handshake line failed.
    #[error("failed to write the handshake line to stdout")]
    Stdout(#[source] std::io::Error),
    /// Capturing stdio failed.
    #[error("failed to capture the plugin's stdout/stderr")]
    Stdio(#[source] std::io::Error),
    /// The gRPC server failed.
    #[error("the plugin's gRPC server failed")]
    Server(#[source] tonic::transport::Error),
}

/// Serves the plugins in `config` until the host shuts the plugin down.
///
/// Call it from the plugin's `main`:
///
/// ```no_run
/// # use intercom::{HandshakeConfig, ServeConfig};
/// # struct Kv; impl intercom::GrpcPlugin for Kv {
/// #   fn server(&self, _: &intercom::GrpcBroker, _: &mut intercom::tonic::service::RoutesBuilder) -> Result<(), intercom::BoxError> { Ok(()) }
/// #   fn client(&self, _: &intercom::GrpcBroker, _: intercom::tonic::transport::Channel) -> Result<Box<dyn std::any::Any + Send + Sync>, intercom::BoxError> { unreachable!() } }
/// const HANDSHAKE: HandshakeConfig = HandshakeConfig::new(1, "BASIC_PLUGIN", "hello");
///
/// #[tokio::main]
/// async fn main() -> Result<(), intercom::ServeError> {
///     intercom::serve(ServeConfig::new(HANDSHAKE).plugin("kv_grpc", Kv)).await
/// }
/// ```
///
/// # Caveats
/// Run by hand (the magic cookie is missing or wrong) it prints go-plugin's "This binary
/// is a plugin" text on stderr and **exits the process with status 1**, as go-plugin does.
/// It ignores SIGINT (Ctrl-C in the host's terminal must not kill plugins, as in
/// go-plugin: the host decides), and treats SIGTERM like the host's Shutdown request:
/// it stops serving, removes its unix socket and returns `Ok(())`, also as a container's
/// PID 1 (which gets no default action for SIGTERM). With `capture_stdio` it redirects
/// fds 1 and 2 after printing the handshake.
///
/// # Errors
/// Misconfiguration, listener and TLS set-up failures, and server failures.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    // Before anything slow (AutoMTLS key generation, binding): as PID 1 a SIGTERM that
    // comes before the handler is lost.
    let sigterm = crate::host_watch::listen_sigterm();
    check_host(&config.handshake)?;
    let negotiated = Negotiated::from_env(&config)?;
    let listener = Listener::bind(&negotiated.listen)?;
    let address = listener
        .address()
        .map_err(|source| crate::transport::ListenError::Bind {
            what: "the plugin listener's address".into(),
            source,
        })?;

    let mux_slot = MuxSlot::default();
    // A plugin on a fixed TCP address (Kubernetes) outlives host connections: the host may
    // reconnect (a dropped port-forward, a reattach). Elsewhere the host is our parent and
    // a closed session means it is gone.
    let persistent = matches!(negotiated.listen, ListenConfig::Tcp(_));
    let session = Session::new(
        Side::Plugin,
        negotiated.broker_mode(&mux_slot),
        negotiated.tls.clone(),
    );
    let broker = GrpcBroker::from(session.clone());
    let shutdown = CancellationToken::new();
    // A plugin on a fixed address is not its host's child (Kubernetes, reattach).
    let outlive = std::env::var_os(env::OUTLIVE_HOST).is_some_and(|v| !v.is_empty());
    crate::host_watch::spawn(&shutdown, sigterm, !persistent && !outlive);

    let mut routes = build_routes(&negotiated.plugins, &session, &broker, &shutdown).await?;
    print_handshake(&negotiated, &listener, address)?;

    let capture = if config.capture_stdio {
        Some(crate::stdio::StdioCapture::install().map_err(ServeError::Stdio)?)
    } else {
        None
    };
    if config.init_logging {
        match &capture {
            Some(c) => crate::logs::init_plugin_logging(c.original_stderr()),
            None => crate::logs::init_plugin_logging(std::io::stderr),
        };
    }
    match &capture {
        Some(c) => routes.add_service(c.service()),
        None => routes.add_service(crate::proto::grpc_stdio_server::GrpcStdioServer::new(
            crate::stdio::StdioService::empty(),
        )),
    };
    install_panic_logger();
    if let Some(id) = &negotiated.identity {
        tracing::debug!(fingerprint = %id.fingerprint(), "AutoMTLS on");
    }
    tracing::debug!(
        version = negotiated.version,
        multiplex = negotiated.multiplex,
        "plugin serving"
    );

    let tls = negotiated.tls;
    let (raw_tx, raw_rx) = mpsc::channel(16);
    let (secured_tx, secured_rx) = mpsc::channel(16);
    let (probe_tx, probe_task) = probe_server(tls.is_some(), &shutdown).await;
    let admission = Admission::new(
        session.clone(),
        mux_slot,
        tls.clone(),
        negotiated.multiplex,
        persistent,
        Routes {
            raw: raw_tx,
            secured: secured_tx,
            probe: probe_tx,
        },
        shutdown.clone(),
    );
    let accept_task = tokio::spawn(admission.accept_loop(listener));

    let incoming = futures::stream::select(
        broker::tls_incoming(raw_rx, tls),
        ReceiverStream::new(secured_rx).map(Ok),
    );
    let server = tonic::transport::Server::builder()
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    // Shutdown is hard, like go-plugin's `Stop`: long-lived streams (broker, stdio) would
    // keep a graceful shutdown waiting forever.
    let result = tokio::select! {
        res = server => res.map_err(ServeError::Server),
        () = shutdown.cancelled() => Ok(()),
    };
    broker.close();
    accept_task.abort();
    if let Some(t) = probe_task {
        t.abort();
    }
    drop(capture);
    result
}

/// The magic cookie: a plugin run by hand (not by a host) says so and exits 1, as
/// go-plugin's plugins do.
fn check_host(hs: &HandshakeConfig) -> Result<(), ServeError> {
    if hs.magic_cookie_key.is_empty() || hs.magic_cookie_value.is_empty() {
        eprintln!(
            "Misconfigured ServeConfig given to serve this plugin: no magic cookie\nkey or value was set. Please notify the plugin author and report\nthis as a bug."
        );
        return Err(ServeError::Misconfigured);
    }
    if std::env::var(hs.magic_cookie_key.as_ref()).ok().as_deref()
        != Some(hs.magic_cookie_value.as_ref())
    {
        eprint!("{NOT_A_PLUGIN_HOST_MESSAGE}");
        std::process::exit(1);
    }
    Ok(())
}

/// What the host's environment and the config settle before serving.
struct Negotiated {
    version: u32,
    plugins: PluginSet,
    /// AutoMTLS (only when the host sent its certificate): our identity and the pinned pair.
    identity: Option<crate::tls::Identity>,
    tls: Option<TlsPair>,
    /// The host asked for the multiplexed broker (`PLUGIN_MULTIPLEX_GRPC` true).
    multiplex: bool,
    /// `PLUGIN_MULTIPLEX_GRPC` was set at all (then the handshake carries the MUX field).
    mux_requested: bool,
    listen: ListenConfig,
    /// Announced instead of a TCP listener's own address.
    advertise: Option<std::net::SocketAddr>,
}

impl Negotiated {
    fn from_env(config: &ServeConfig) -> Result<Self, ServeError> {
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
    fn announced(&self, listener: &Listener, bound: String) -> String {
        match (listener.network(), self.advertise) {
            (crate::handshake::Network::Tcp, Some(addr)) => addr.to_string(),
            _ => bound,
        }
    }

    fn broker_mode(&self, mux_slot: &MuxSlot) -> Mode {
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

/// Health, broker, controller and the negotiated plugins' services.
async fn build_routes(
    plugins: &PluginSet,
    session: &Session,
    broker: &GrpcBroker,
    shutdown: &CancellationToken,
) -> Result<RoutesBuilder, ServeError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status(
            crate::GRPC_SERVICE_NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let mut routes = RoutesBuilder::default();
    routes
        .add_service(health)
        .add_service(session.service())
        .add_service(crate::controller::service(shutdown.clone()));
    for (name, plugin) in plugins.iter() {
        plugin
            .server(broker, &mut routes)
            .map_err(|source| ServeError::Register {
                name: name.to_string(),
                source,
            })?;
    }
    Ok(routes)
}

/// Prints the handshake line on stdout.
fn print_handshake(
    negotiated: &Negotiated,
    listener: &Listener,
    address: String,
) -> Result<(), ServeError> {
    let line = Handshake {
        core_version: crate::CORE_PROTOCOL_VERSION,
        app_version: negotiated.version,
        network: listener.network(),
        address: negotiated.announced(listener, address),
        protocol: Protocol::Grpc,
        server_cert: negotiated.identity.as_ref().map(|i| i.cert_der().to_vec()),
        multiplex: negotiated.mux_requested.then_some(true),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(ServeError::Stdout)
}

/// With AutoMTLS, plaintext connections get only the health service: that is what a
/// kubelet's gRPC readiness probe needs, and all it can reach. Returns where to send them.
async fn probe_server(
    tls: bool,
    shutdown: &CancellationToken,
) -> (
    Option<mpsc::Sender<Io>>,
    Option<tokio::task::JoinHandle<()>>,
) {
    if !tls {
        return (None, None);
    }
    let (probe_tx, probe_rx) = mpsc::channel::<Io>(16);
    let (probe_reporter, probe_health) = tonic_health::server::health_reporter();
    probe_reporter
        .set_service_status(
            crate::GRPC_SERVICE_NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let incoming = ReceiverStream::new(probe_rx).map(Ok::<_, std::io::Error>);
    let shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let _keep = probe_reporter;
        let _ = tonic::transport::Server::builder()
            .add_service(probe_health)
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await;
    });
    (Some(probe_tx), Some(task))
}

/// Panics are logged as errors through `tracing` (so the host sees them at error level
/// with the plugin's name) before the previous hook runs.
fn install_panic_logger() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(target: "intercom::panic", panic = %info, "plugin panicked");
        previous(info);
    }));
}

fn ignore_sigint() {
    if let Ok(mut sig) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        tokio::spawn(async move {
            let mut count = 0u64;
            while sig.recv().await.is_some() {
                count += 1;
                tracing::trace!(count, "plugin received interrupt signal, ignoring");
            }
        });
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}
