//! The [`Target::Launch`](super::Target::Launch) start: launch with a [`Launcher`], read the
//! handshake line from stdout (go-plugin's first line, at most 64 KiB), connect.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::deadline::Deadline;
use super::stop::{Stop, Stopped, ask_to_shut_down};
use super::{StartContext, Started};
use crate::client::config::Offer;
use crate::client::{ClientError, Connection, Multiplex};
use crate::connection::{Conn, address_dialer, connect, pump_stderr};
use crate::handshake::Handshake;
use crate::handshake::find::{HandshakeFinder, Line as FoundLine, MAX_HANDSHAKE_LINE, Preamble};
use crate::plugin_exit::PluginExit;
use crate::runtime::{Launcher, Output, PluginHandle};
use crate::stderr_tail::StderrTail;
use crate::sync::lock;
use crate::tls::Identity;
use crate::transport::TlsPair;

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

/// Launches, handshakes and connects. On error the process is stopped before the error is
/// returned, so `Client::exited` is true (`Client::id` still names what ran).
pub(super) async fn start(
    launcher: &dyn Launcher,
    ctx: StartContext<'_>,
) -> Result<Started, ClientError> {
    let (handle_slot, exited) = (ctx.handle, ctx.exited.clone());
    let result = launch(launcher, ctx).await;
    if result.is_err() {
        let handle = lock(handle_slot).clone();
        if let Some(handle) = handle {
            // Bounded: a process that survives SIGKILL this long is beyond our reach.
            let _ = tokio::time::timeout(FAILED_LAUNCH_KILL_TIMEOUT, handle.kill()).await;
        }
        exited.store(true, Ordering::SeqCst);
    }
    result
}

async fn launch(launcher: &dyn Launcher, ctx: StartContext<'_>) -> Result<Started, ClientError> {
    let StartContext {
        name,
        config,
        handle: handle_slot,
        exited,
    } = ctx;
    let name = name.to_string();
    let Offer {
        host_versions,
        identity,
        env,
    } = config.offer(Some(config.port_range), config.multiplex != Multiplex::Off)?;
    let deadline = Deadline::new(&name, config.start_timeout);

    let launched = match tokio::time::timeout(deadline.remaining(), launcher.launch(env)).await {
        Ok(l) => l?,
        Err(_) => return Err(deadline.passed("launch", String::new())),
    };
    let handle: Arc<dyn PluginHandle> = Arc::from(launched.handle);
    *lock(handle_slot) = Some(handle.clone());
    // From here on, any early return must kill what runs: this guard does it.
    let guard = KillGuard(Some(handle.clone()));

    let mut tasks = tokio::task::JoinSet::new();
    let stderr = PluginStderr::default();
    tasks.spawn(pump_stderr(
        launched.stderr,
        name.clone(),
        stderr.tail.clone(),
        config.stderr.take(),
        stderr.done.clone(),
    ));
    tasks.spawn(mark_exited(handle.clone(), exited.clone(), name.clone()));

    let plugin = Plugin {
        name: &name,
        handle: handle.as_ref(),
        stderr: &stderr,
        deadline: &deadline,
    };
    let required = config.multiplex == Multiplex::Required;
    let handshake = plugin
        .read_handshake(launched.stdout, &mut tasks, &host_versions, required)
        .await?;
    let (conn, multiplex) = plugin
        .connect(&handshake, config.multiplex, identity.as_ref())
        .await?;
    conn.broker.exit_watch().arm();
    let handle_for_stop = handle.clone();
    tasks.spawn(record_exit(handle, conn.clone(), name.clone(), stderr));
    guard.disarm();
    tracing::debug!(plugin = %name, version = handshake.app_version, multiplex, tls = identity.is_some(), elapsed = ?deadline.started.elapsed(), "plugin connected");
    Ok(Started {
        conn,
        version: handshake.app_version,
        tasks,
        stop: Box::new(LaunchedStop(handle_for_stop)),
    })
}

/// A launched plugin, between its launch and its connection.
struct Plugin<'a> {
    name: &'a str,
    handle: &'a dyn PluginHandle,
    stderr: &'a PluginStderr,
    deadline: &'a Deadline,
}

impl Plugin<'_> {
    /// Reads stdout until the finder names the handshake line (go-plugin's contract: the
    /// first one), then parses and validates it. Later stdout lines are drained by a task
    /// in `tasks` and discarded, as go-plugin does.
    async fn read_handshake(
        &self,
        stdout: Output,
        tasks: &mut tokio::task::JoinSet<()>,
        host_versions: &[u32],
        required: bool,
    ) -> Result<Handshake, ClientError> {
        let mut stdout = BufReader::new(stdout);
        // Bytes, not a String: a non-UTF-8 line is a bad handshake, not a closed stdout.
        let mut line = Vec::new();
        let mut finder = HandshakeFinder::new(Preamble::Nothing);
        loop {
            line.clear();
            let wait = self.deadline.remaining();
            match read_line(&mut stdout, &mut line, self.handle, wait).await {
                LineOutcome::Line => {}
                LineOutcome::Timeout => {
                    let step = "waiting for the handshake line on stdout";
                    return Err(self.deadline.passed(step, self.stderr.render()));
                }
                LineOutcome::Eof => return Err(self.no_handshake().await),
            }
            match finder.push(&line) {
                FoundLine::Handshake => break,
                FoundLine::Log => {}
                FoundLine::Exhausted => return Err(self.no_handshake().await),
            }
        }
        tasks.spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut stdout, &mut sink).await;
        });
        match Handshake::parse_bytes(&line)
            .and_then(|h| h.validate(host_versions, required).map(|()| h))
        {
            Ok(h) => Ok(h),
            // The plugin still runs (its stderr stays open): give the pump a moment for
            // what it printed before the bad line.
            Err(source) => Err(ClientError::Handshake {
                name: self.name.to_owned(),
                stderr: self.stderr.after(STDERR_DRAIN).await,
                source,
            }),
        }
    }

    /// Dials the address the handshake announced (as the handle translates it), with
    /// AutoMTLS when the host offered it (failing closed) and the multiplexed broker when
    /// both sides want it. Returns the connection and whether it is multiplexed.
    async fn connect(
        &self,
        handshake: &Handshake,
        mode: Multiplex,
        identity: Option<&Identity>,
    ) -> Result<(Arc<Conn>, bool), ClientError> {
        let name = self.name;
        let (network, address) = self
            .handle
            .plugin_to_host(&handshake.network.to_string(), &handshake.address);
        let network = network.parse().unwrap_or(handshake.network);
        let multiplex = mode != Multiplex::Off && handshake.multiplex == Some(true);
        if mode == Multiplex::Auto && !multiplex {
            tracing::debug!(plugin = %name, "plugin does not multiplex; using the classic broker");
        }
        let tls = match (identity, &handshake.server_cert) {
            (Some(id), Some(cert)) => Some(TlsPair::new(id, cert)?),
            // Fail closed, as go-plugin does: the host asked for mTLS.
            (Some(_), None) => {
                let name = name.to_owned();
                return Err(ClientError::AutoMtlsUnsupported { name });
            }
            _ => None,
        };
        let dialer = address_dialer(network, address.clone());
        let connect = connect(dialer, network, address.clone(), multiplex, tls)
            .instrument(tracing::info_span!("plugin_connect", plugin = %name, %address));
        match tokio::time::timeout(self.deadline.remaining(), connect).await {
            Ok(Ok(c)) => Ok((Arc::new(c), multiplex)),
            Ok(Err(source)) => Err(ClientError::Connect {
                name: name.to_owned(),
                network,
                address,
                source,
            }),
            Err(_) => Err(self.deadline.passed("connecting", self.stderr.render())),
        }
    }

    /// The error for a stdout that ended without a handshake line: the plugin exited (with
    /// its status) or it closed stdout and kept running.
    async fn no_handshake(&self) -> ClientError {
        let status = tokio::time::timeout(EXIT_STATUS_WAIT, self.handle.wait()).await;
        // Let the stderr pump drain what the plugin said last (it ends at EOF).
        let stderr = self.stderr.after(EXIT_STDERR_GRACE).await;
        let name = self.name.to_owned();
        match status {
            Ok(status) => ClientError::ExitedBeforeHandshake {
                name,
                status,
                stderr,
            },
            Err(_) => ClientError::NoHandshake { name, stderr },
        }
    }
}

/// Stops a launched plugin as go-plugin does: ask it to shut down, wait up to
/// `kill_timeout` for it to exit, then kill it (and its process group).
struct LaunchedStop(Arc<dyn PluginHandle>);

impl Stop for LaunchedStop {
    fn stop<'a>(
        &'a self,
        conn: &'a Connection,
        name: &'a str,
        kill_timeout: Duration,
    ) -> BoxFuture<'a, Stopped> {
        async move {
            let handle = &self.0;
            let graceful = ask_to_shut_down(conn, kill_timeout).await;
            let exited = graceful
                && tokio::time::timeout(kill_timeout, handle.wait())
                    .await
                    .is_ok();
            if !exited {
                tracing::warn!(plugin = %name, "plugin failed to exit gracefully; killing it");
            }
            if let Err(err) = handle.kill().await {
                tracing::warn!(plugin = %name, error = &err as &dyn std::error::Error, "failed to kill plugin");
            }
            Stopped {
                gone: true,
                flush_pumps: true,
            }
        }
        .boxed()
    }
}

/// What the stderr pump keeps of the plugin's stderr, and when it reached EOF.
#[derive(Clone, Default)]
struct PluginStderr {
    tail: Arc<Mutex<StderrTail>>,
    done: CancellationToken,
}

impl PluginStderr {
    /// The last lines, as an error message ends with them.
    fn render(&self) -> String {
        lock(&self.tail).render()
    }

    /// The last lines once the pump reached EOF, or after `grace`.
    async fn after(&self, grace: Duration) -> String {
        let _ = tokio::time::timeout(grace, self.done.cancelled()).await;
        self.render()
    }
}

/// Reads the next line of stdout (at most [`MAX_HANDSHAKE_LINE`] bytes, as go-plugin),
/// until `wait` passes or the plugin exits. A line written just before the exit still counts.
async fn read_line(
    stdout: &mut BufReader<Output>,
    line: &mut Vec<u8>,
    handle: &dyn PluginHandle,
    wait: Duration,
) -> LineOutcome {
    let read = async {
        let mut limited = stdout.take(MAX_HANDSHAKE_LINE as u64);
        limited.read_until(b'\n', line).await
    };
    tokio::select! {
        biased;
        res = tokio::time::timeout(wait, read) => match res {
            Ok(Ok(0)) | Ok(Err(_)) => LineOutcome::Eof,
            Ok(Ok(_)) => LineOutcome::Line,
            Err(_) => LineOutcome::Timeout,
        },
        _ = handle.wait() => LineOutcome::Eof,
    }
}

/// Sets `exited` when the plugin process ends.
async fn mark_exited(handle: Arc<dyn PluginHandle>, exited: Arc<AtomicBool>, name: String) {
    let status = handle.wait().await;
    exited.store(true, Ordering::SeqCst);
    tracing::debug!(plugin = %name, %status, "plugin exited");
}

/// When the process is gone, fails what is in flight at once instead of waiting for the
/// transport to notice, and tells the calls how it ended.
async fn record_exit(
    handle: Arc<dyn PluginHandle>,
    conn: Arc<Conn>,
    name: String,
    stderr: PluginStderr,
) {
    let status = handle.wait().await;
    // Its last words: stderr reaches EOF as the process ends (unless something it started
    // keeps the pipe open).
    let stderr = stderr.after(EXIT_STDERR_GRACE).await;
    conn.broker.exit_watch().record(PluginExit {
        name,
        status,
        stderr,
    });
    conn.close();
}

/// How waiting for the handshake line ended.
enum LineOutcome {
    Line,
    Eof,
    Timeout,
}

/// Kills what was launched unless disarmed: every early return of a launch goes through it,
/// and so does a launch future dropped mid-start.
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
