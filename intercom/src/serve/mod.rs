//! Plugin side: [`serve`] is what a plugin's `main` calls.
//!
//! It checks the magic cookie, negotiates the app protocol version, binds a listener,
//! registers health, broker, controller, stdio and the plugin's own services, prints the
//! handshake line on stdout, and serves until the host asks it to shut down.

use std::collections::BTreeMap;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, Routes};
use crate::broker::{self, GrpcBroker, MuxSlot, Session, Side};
use crate::handshake::HandshakeConfig;
use crate::plugin::{GrpcPlugin, PluginSet};
use crate::transport::{ListenConfig, Listener};

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

mod error;
mod negotiated;
mod startup;

pub use error::ServeError;
use negotiated::Negotiated;
use startup::{build_routes, install_panic_logger, print_handshake, probe_server};

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
