//! `greeter`: the `basic` example again, with `#[intercom::plugin]` writing the glue.
//!
//! ```text
//! $ cargo run -p greeter
//! Hello, world! (from plugin pid 1234)
//! $ cargo run -p greeter -- Ferris
//! Hello, Ferris! (from plugin pid 1235)
//! $ cargo run -p greeter -- --proto      # the .proto text of the generated service
//! $ cargo run -p greeter --features kubernetes -- --kubernetes Ferris   # as a Deployment (envtest)
//! ```
//!
//! `--kubernetes` (in a build with the `kubernetes` feature, which alone compiles kube and
//! intercom-envtest) starts a local test cluster (intercom-envtest: real etcd, kube-apiserver
//! and kube-controller-manager, and a kubelet that runs pods as local processes; build its
//! binaries once with `intercom-envtest/build-control-plane.sh`), runs the plugin as a
//! Deployment + Service whose image maps to this executable, and greets through a
//! port-forward, exactly as a host outside a real cluster would.
//!
//! - `greeter [NAME]` is the **host**: it starts this executable again as
//!   `greeter plugin`, dispenses a [`GreeterClient`], calls `greet` like a local method,
//!   prints the reply and stops the plugin.
//! - `greeter plugin` is the **plugin**: it serves [`English`] with [`intercom::serve()`].
//!
//! Everything `examples/basic/src/greeter.rs` writes by hand (the `.proto`, the messages,
//! the tonic client and server, the `GrpcPlugin` impl, the handshake) comes from the
//! attribute on [`Greeter`].
#![warn(missing_docs)]

use std::error::Error;
use std::ffi::OsStr;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, PluginSet, ServeConfig, Status};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Greets people; implemented by the plugin, called by the host.
///
/// The attribute generates [`GreeterClient`] (which implements this trait over gRPC),
/// `GreeterServer`, [`GreeterPlugin`] with `GreeterPlugin::HANDSHAKE`, and the service
/// `intercom.greeter.Greeter` (see `greeter --proto`).
#[intercom::plugin(handshake(version = 1, cookie_key = "GREETER_PLUGIN", cookie_value = "hello"))]
pub trait Greeter: Send + Sync + 'static {
    /// Returns a greeting for `name`; `invalid_argument` if it is empty.
    async fn greet(&self, name: String) -> Result<String, Status>;
}

/// The key of the greeter in both sides' plugin maps (never sent over the wire).
const PLUGIN_NAME: &str = "greeter";

/// If the first argument is this, the binary runs as the plugin.
const PLUGIN_ARG: &str = "plugin";

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let first = args.next();
    let result = match first.as_deref().and_then(OsStr::to_str) {
        Some(PLUGIN_ARG) => plugin().await,
        Some("--proto") => {
            print!("{}", GreeterPlugin::proto());
            Ok(())
        }
        Some("--kubernetes") => {
            kubernetes_host(args.next().map(|n| n.to_string_lossy().into_owned())).await
        }
        _ => host(first.map(|n| n.to_string_lossy().into_owned())).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// Plugin side
// ---------------------------------------------------------------------------------------

/// The plugin's implementation. Plugin traits are implemented through
/// `#[intercom::async_trait]`, which keeps them usable as `Arc<dyn Greeter>`.
#[derive(Debug, Clone, Copy)]
struct English;

#[intercom::async_trait]
impl Greeter for English {
    async fn greet(&self, name: String) -> Result<String, Status> {
        if name.is_empty() {
            return Err(Status::invalid_argument("the name to greet is empty"));
        }
        tracing::info!(%name, "greeting");
        Ok(format!(
            "Hello, {name}! (from plugin pid {})",
            std::process::id()
        ))
    }
}

/// `greeter plugin`: serves [`English`] until the host shuts it down.
async fn plugin() -> Result<(), Box<dyn Error>> {
    intercom::serve(
        ServeConfig::new(GreeterPlugin::HANDSHAKE)
            .plugin(PLUGIN_NAME, GreeterPlugin::server(English)),
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------

/// `greeter [NAME]`: greets `NAME` (default `world`) through the plugin.
async fn host(name: Option<String>) -> Result<(), Box<dyn Error>> {
    init_host_logging();
    let exe = std::env::current_exe()?;
    let client = Client::new(
        ClientConfig::new(
            GreeterPlugin::HANDSHAKE,
            PluginSet::new().with(PLUGIN_NAME, GreeterPlugin::client()),
            ProcessLauncher::new(exe).arg(PLUGIN_ARG),
        )
        .name("greeter"),
    );
    let result = greet(&client, name.unwrap_or_else(|| "world".to_owned())).await;
    // Always stop the plugin, also after an error.
    client.kill().await;
    let message = result?;
    writeln!(std::io::stdout().lock(), "{message}")?;
    Ok(())
}

/// The image the test cluster maps to this executable.
#[cfg(feature = "kubernetes")]
const IMAGE: &str = "intercom.examples/greeter:1";

/// `greeter --kubernetes [NAME]`: the same, with the plugin running as a Deployment.
#[cfg(feature = "kubernetes")]
async fn kubernetes_host(name: Option<String>) -> Result<(), Box<dyn Error>> {
    use intercom::runtime::kubernetes::{
        ConnectMode, KubernetesConfig, PluginWorkload, low_latency_client,
    };
    init_host_logging();
    let env = intercom_envtest::Env::builder()
        .image(IMAGE, std::env::current_exe()?)
        .start()
        .await?;
    let workload = PluginWorkload::new(IMAGE).arg(PLUGIN_ARG);
    let client = Client::new(ClientConfig::new(
        GreeterPlugin::HANDSHAKE,
        PluginSet::new().with(PLUGIN_NAME, GreeterPlugin::client()),
        KubernetesConfig::new(
            low_latency_client(env.control_plane().kube_config())?,
            "default",
        )
        .workload("greeter", &workload)
        .connect(ConnectMode::PortForward),
    ));
    let result = greet(&client, name.unwrap_or_else(|| "world".to_owned())).await;
    // Graceful shutdown of the pod, then the Deployment and Service are deleted.
    client.kill().await;
    let message = result?;
    writeln!(std::io::stdout().lock(), "{message}")?;
    Ok(())
}

/// Without the `kubernetes` feature, `--kubernetes` says how to get it.
#[cfg(not(feature = "kubernetes"))]
async fn kubernetes_host(_name: Option<String>) -> Result<(), Box<dyn Error>> {
    Err(
        "this build has no Kubernetes runtime; run `cargo run -p greeter --features \
         kubernetes -- --kubernetes`"
            .into(),
    )
}

/// Launches the plugin and calls it through the generated client.
async fn greet(client: &Client, name: String) -> Result<String, Box<dyn Error>> {
    let greeter: GreeterClient = client.connect().await?.dispense(PLUGIN_NAME)?;
    // A plain method call on something that implements `Greeter`.
    let message = greeter
        .greet(name)
        .await
        .map_err(|status| format!("the plugin's greet failed: {}", status.message()))?;
    Ok(message)
}

/// The host's logs (including the plugin's forwarded ones) go to stderr, filtered by
/// `RUST_LOG` (default `info`).
fn init_host_logging() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
