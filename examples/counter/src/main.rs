//! `counter`: go-plugin's `examples/bidirectional` expressed as two Rust traits.
//!
//! ```text
//! $ cargo run -p counter
//! host: plugin asked for 0 + 1
//! hits = 1
//! host: plugin asked for 1 + 2
//! hits = 3
//! host: plugin asked for 3 + 3
//! hits = 6
//! $ cargo run -p counter -- apples 5 2   # key, first increment, number of puts
//! $ cargo run -p counter --features kubernetes -- --kubernetes
//!                      # the plugin as a Deployment (envtest); the callbacks cross the
//!                      # pod boundary (only this feature compiles kube and envtest)
//! ```
//!
//! The host passes an `Arc<dyn AddHelper>` to [`Counter::put`]; the plugin cannot add by
//! itself and calls `sum` on it, which runs **in the host**. The generated client serves
//! the helper on a fresh broker id for the duration of the `put` call and sends the id
//! (the `add_server` field); the generated server dials it and hands the plugin an
//! `Arc<dyn AddHelper>`. The broker rides the plugin connection, so nothing else is
//! opened.
//!
//! `package = "proto"` gives the services go-plugin's wire names (`proto.Counter`,
//! `proto.AddHelper`), and the argument order matches its `PutRequest`, so this host also
//! drives go-plugin's Go counter plugin (the workspace tests check it).
#![warn(missing_docs)]

use std::collections::HashMap;
use std::error::Error;
use std::ffi::OsStr;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, PluginSet, ServeConfig, Status, Target};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Adds two numbers. The host implements it and lends it to the plugin for one call.
#[intercom::plugin(package = "proto")]
pub trait AddHelper: Send + Sync + 'static {
    /// `a + b`.
    async fn sum(&self, a: i64, b: i64) -> Result<i64, Status>;
}

/// A map of counters, implemented by the plugin.
#[intercom::plugin(
    package = "proto",
    handshake(version = 1, cookie_key = "BASIC_PLUGIN", cookie_value = "hello")
)]
pub trait Counter: Send + Sync + 'static {
    /// Adds `value` to the counter `key`, using `add_server` to do the addition.
    async fn put(
        &self,
        add_server: Arc<dyn AddHelper>,
        key: String,
        value: i64,
    ) -> Result<(), Status>;
    /// The counter `key` (0 if it was never put).
    async fn get(&self, key: String) -> Result<i64, Status>;
}

/// The key of the counter in both sides' plugin maps (go-plugin's example uses it too).
const PLUGIN_NAME: &str = "counter";

/// If the first argument is this, the binary runs as the plugin.
const PLUGIN_ARG: &str = "plugin";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let result = if args.first().map(OsStr::new) == Some(OsStr::new(PLUGIN_ARG)) {
        plugin().await
    } else if args.first().map(String::as_str) == Some("--kubernetes") {
        host_with(&args[1..], true).await
    } else {
        host(&args).await
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

/// The plugin's counters, in memory (they live as long as the plugin process).
#[derive(Debug, Default)]
struct Counters(Mutex<HashMap<String, i64>>);

impl Counters {
    fn value(&self, key: &str) -> i64 {
        let map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(key).copied().unwrap_or(0)
    }
}

#[intercom::async_trait]
impl Counter for Counters {
    async fn put(
        &self,
        add_server: Arc<dyn AddHelper>,
        key: String,
        value: i64,
    ) -> Result<(), Status> {
        let current = self.value(&key);
        // A call back into the host, through the broker.
        let sum = add_server.sum(current, value).await?;
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, sum);
        Ok(())
    }

    async fn get(&self, key: String) -> Result<i64, Status> {
        Ok(self.value(&key))
    }
}

/// `counter plugin`: serves [`Counters`] until the host shuts it down.
async fn plugin() -> Result<(), Box<dyn Error>> {
    intercom::serve(
        ServeConfig::new(CounterPlugin::HANDSHAKE)
            .plugin(PLUGIN_NAME, CounterPlugin::server(Counters::default())),
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------

/// The host's adder: the plugin calls it during `put`.
#[derive(Debug)]
struct HostAdder;

#[intercom::async_trait]
impl AddHelper for HostAdder {
    async fn sum(&self, a: i64, b: i64) -> Result<i64, Status> {
        println!("host: plugin asked for {a} + {b}");
        a.checked_add(b)
            .ok_or_else(|| Status::out_of_range(format!("{a} + {b} overflows")))
    }
}

/// `counter [KEY [FIRST [PUTS]]]`: puts FIRST, FIRST+1, … into KEY, PUTS times
/// (defaults `hits 1 3`), printing the counter after each.
async fn host(args: &[String]) -> Result<(), Box<dyn Error>> {
    host_with(args, false).await
}

/// The image the test cluster maps to this executable (`--kubernetes`).
#[cfg(feature = "kubernetes")]
const IMAGE: &str = "intercom.examples/counter:1";

/// The host; with `kubernetes`, the plugin runs as a Deployment on a local test cluster
/// (intercom-envtest; build its binaries once with
/// `intercom-envtest/build-control-plane.sh`) and is reached through a port-forward.
async fn host_with(args: &[String], kubernetes: bool) -> Result<(), Box<dyn Error>> {
    init_host_logging();
    let key = args.first().cloned().unwrap_or_else(|| "hits".to_owned());
    let first: i64 = match args.get(1) {
        Some(n) => n
            .parse()
            .map_err(|e| format!("FIRST must be an integer: {e}"))?,
        None => 1,
    };
    let puts: u32 = match args.get(2) {
        Some(n) => n
            .parse()
            .map_err(|e| format!("PUTS must be a count: {e}"))?,
        None => 3,
    };
    let exe = std::env::current_exe()?;
    // Kept alive until the plugin is gone.
    let mut cluster: Option<Box<dyn std::any::Any>> = None;
    let target = if kubernetes {
        let (target, env) = on_kubernetes(exe).await?;
        cluster = Some(env);
        target
    } else {
        Target::from(ProcessLauncher::new(exe).arg(PLUGIN_ARG))
    };
    let client = Client::new(
        ClientConfig::new(
            CounterPlugin::HANDSHAKE,
            PluginSet::new().with(PLUGIN_NAME, CounterPlugin::client()),
            target,
        )
        .name("counter"),
    );
    let result = count(&client, &key, first, puts).await;
    client.kill().await;
    drop(cluster);
    result
}

/// The plugin as a Deployment on a fresh local test cluster, and the cluster (to keep
/// alive until the plugin is gone).
#[cfg(feature = "kubernetes")]
async fn on_kubernetes(
    exe: std::path::PathBuf,
) -> Result<(Target, Box<dyn std::any::Any>), Box<dyn Error>> {
    use intercom::runtime::kubernetes::{ConnectMode, KubernetesConfig, PluginWorkload};
    let env = intercom_envtest::Env::builder()
        .image(IMAGE, exe)
        .start()
        .await?;
    let kube = KubernetesConfig::new(
        intercom::runtime::kubernetes::low_latency_client(env.control_plane().kube_config())?,
        "default",
    )
    .workload("counter", &PluginWorkload::new(IMAGE).arg(PLUGIN_ARG))
    .connect(ConnectMode::PortForward);
    Ok((kube.into(), Box::new(env)))
}

/// Without the `kubernetes` feature, `--kubernetes` says how to get it.
#[cfg(not(feature = "kubernetes"))]
async fn on_kubernetes(
    _exe: std::path::PathBuf,
) -> Result<(Target, Box<dyn std::any::Any>), Box<dyn Error>> {
    Err(KUBERNETES_OFF.into())
}

/// The error of `--kubernetes` in a build without the `kubernetes` feature.
#[cfg(not(feature = "kubernetes"))]
const KUBERNETES_OFF: &str = "this build has no Kubernetes runtime; run `cargo run -p counter \
     --features kubernetes -- --kubernetes`";

/// Puts and reads back through the generated client.
async fn count(client: &Client, key: &str, first: i64, puts: u32) -> Result<(), Box<dyn Error>> {
    let counter: CounterClient = client.connect().await?.dispense(PLUGIN_NAME)?;
    let adder: Arc<dyn AddHelper> = Arc::new(HostAdder);
    for i in 0..i64::from(puts) {
        counter
            .put(Arc::clone(&adder), key.to_owned(), first.saturating_add(i))
            .await?;
        let value = counter.get(key.to_owned()).await?;
        // Not holding the stdout lock across calls: `HostAdder` prints during `put`.
        writeln!(std::io::stdout(), "{key} = {value}")?;
    }
    Ok(())
}

/// The host's logs go to stderr, filtered by `RUST_LOG` (default `info`).
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
