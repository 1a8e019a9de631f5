//! `basic`: a greeter host and its plugin in one binary, written against intercom's
//! runtime API directly.
//!
//! ```text
//! $ cargo run -p basic
//! … INFO intercom::plugin: greeting name=world plugin=greeter …
//! Hello, world! (from plugin pid 1234)
//! $ cargo run -p basic -- Ferris
//! Hello, Ferris! (from plugin pid 1235)
//! ```
//!
//! - `basic [NAME]` is the **host**. It starts this executable again as
//!   `basic plugin`, pings it, calls `Greet` with `NAME` (default `world`), prints the
//!   reply, and stops the plugin.
//! - `basic plugin` is the **plugin**. It serves `greeter.Greeter` through
//!   [`intercom::serve()`] until the host shuts it down.
//!
//! The plugin's `tracing` events are written to its stderr as hclog JSON. The host reads
//! them and emits them again as its own `tracing` events, with target `intercom::plugin`.
//! `RUST_LOG` filters them, as it does everything else (default `info`).
//!
//! [`greeter`] is the hand-written glue that `#[intercom::plugin]` generates (see `examples/greeter`).
#![warn(missing_docs)]

mod greeter;

use std::error::Error;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, PluginSet, ServeConfig};
use tonic::{Request, Response, Status};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use greeter::{GreeterClient, GreeterPlugin, HANDSHAKE, PLUGIN_NAME, proto};

/// If the first argument is this, the binary runs as the plugin.
const PLUGIN_ARG: &str = "plugin";

/// Who the host greets when no name is given.
const DEFAULT_NAME: &str = "world";

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let first = args.next();
    let result = if first.as_deref() == Some(OsStr::new(PLUGIN_ARG)) {
        plugin().await
    } else {
        host(first).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&*err);
            ExitCode::FAILURE
        }
    }
}

/// Prints `error: <err>: <cause>: <cause>…` on stderr.
fn report(err: &dyn Error) {
    let mut line = format!("error: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    // Not `eprintln!`, which panics when stderr is closed (e.g. `basic 2>&1 | head -1`).
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

// ---------------------------------------------------------------------------------------
// Plugin side
// ---------------------------------------------------------------------------------------

/// The plugin's implementation of `greeter.Greeter`: the only part a plugin author
/// writes besides `main`.
#[derive(Debug, Clone, Copy)]
struct LocalGreeter;

#[tonic::async_trait]
impl proto::greeter_server::Greeter for LocalGreeter {
    async fn greet(
        &self,
        request: Request<proto::GreetRequest>,
    ) -> Result<Response<proto::GreetResponse>, Status> {
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(Status::invalid_argument("the name to greet is empty"));
        }
        // This goes out as hclog JSON on the plugin's stderr and comes back as a
        // `tracing` event in the host.
        tracing::info!(%name, "greeting");
        Ok(Response::new(proto::GreetResponse {
            message: format!("Hello, {name}! (from plugin pid {})", std::process::id()),
        }))
    }
}

/// `basic plugin`. `serve` checks the magic cookie, prints the handshake line on stdout,
/// installs the hclog `tracing` subscriber, and serves until the host asks it to shut
/// down. Run by hand without the cookie, it prints a notice and exits with status 1.
async fn plugin() -> Result<(), Box<dyn Error>> {
    intercom::serve(
        ServeConfig::new(HANDSHAKE).plugin(PLUGIN_NAME, GreeterPlugin::server(LocalGreeter)),
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------

/// `basic [NAME]`: greets `NAME` through the plugin and prints the reply.
async fn host(name: Option<OsString>) -> Result<(), Box<dyn Error>> {
    init_host_logging();
    let name = match name {
        None => DEFAULT_NAME.to_owned(),
        Some(name) => name
            .into_string()
            .map_err(|name| format!("the name to greet must be UTF-8, got {name:?}"))?,
    };
    // The plugin is this executable, started again with the argument `plugin`.
    let exe = std::env::current_exe().map_err(|source| Context {
        what: "failed to find this executable to start it as the plugin",
        source: source.into(),
    })?;

    // Nothing starts yet. `ClientConfig::new` uses go-plugin's defaults: AutoMTLS, a
    // multiplexed broker when the plugin supports it, and a 1-minute start timeout.
    let client = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            PluginSet::new().with(PLUGIN_NAME, GreeterPlugin::client()),
            ProcessLauncher::new(exe).arg(PLUGIN_ARG),
        )
        .name("greeter"),
    );
    let result = greet(&client, name).await;
    // Always stop the plugin, including after an error. `kill` asks it to shut down, waits
    // up to `kill_timeout` (2 s), then kills its process group. The plugin is gone when
    // this returns.
    client.kill().await;
    let message = result?;
    writeln!(std::io::stdout().lock(), "{message}").map_err(|source| Context {
        what: "failed to print the greeting",
        source: source.into(),
    })?;
    Ok(())
}

/// Starts the plugin, checks that it is healthy, and makes one `Greet` call.
async fn greet(client: &Client, name: String) -> Result<String, Box<dyn Error>> {
    // Launch, read the handshake line, and connect.
    let protocol = client.connect().await?;
    // gRPC health check of the plugin's `plugin` service.
    protocol.ping().await?;
    // Purely local: `GreeterPlugin::client` wraps the connection in a `GreeterClient`.
    let mut greeter: GreeterClient = protocol.dispense(PLUGIN_NAME)?;
    let reply = greeter
        .greet(proto::GreetRequest { name })
        .await
        .map_err(|status| Context {
            what: "the plugin's Greet call failed",
            source: format!("{}: {}", status.code(), status.message()).into(),
        })?;
    Ok(reply.into_inner().message)
}

/// Sends the host's `tracing` events to stderr, filtered by `RUST_LOG` (default
/// `info`). This includes the plugin's forwarded log lines, and keeps stdout for the
/// greeting.
fn init_host_logging() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    // `try_init` fails only if a subscriber is already set. Keep that one.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // If a write fails, drop the line. Otherwise the subscriber reports the failure
        // with `eprintln!`, and that panics when stderr is a closed pipe. The panic would
        // happen inside whichever task logged, which could be the task that owns the
        // plugin connection.
        .log_internal_errors(false)
        .try_init();
}

/// An error with a short description of what was being done.
#[derive(Debug)]
struct Context {
    /// What failed.
    what: &'static str,
    /// Why.
    source: Box<dyn Error + Send + Sync>,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)
    }
}

impl Error for Context {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}
