//! The [`Target::Reattach`](super::Target::Reattach) start: connect to a plugin that already
//! runs (go-plugin's `ReattachConfig`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::BoxFuture;

use tracing::Instrument as _;

use super::deadline::Deadline;
use super::stop::{Stop, Stopped, ask_to_shut_down};
use super::{StartContext, Started};
use crate::client::{ClientError, Connection, Multiplex, ReattachConfig};
use crate::connection::{address_dialer, connect};
use crate::handshake::Network;
use crate::reattach_pid::{self, ProcessIdentity};

/// How often a reattached plugin (not our child: no exit notice) is checked for being alive.
const REATTACHED_EXIT_POLL: Duration = Duration::from_secs(1);

/// How often `kill` checks whether a reattached plugin has exited, up to `kill_timeout`.
const REATTACHED_KILL_POLL: Duration = Duration::from_millis(20);

/// Checks the process (when a pid is given) and connects: no handshake, classic broker.
pub(super) async fn start(
    re: &ReattachConfig,
    ctx: StartContext<'_>,
) -> Result<Started, ClientError> {
    let StartContext {
        name,
        config,
        exited,
        ..
    } = ctx;
    if config.multiplex == Multiplex::Required {
        return Err(ClientError::ReattachMultiplex);
    }
    let name = name.to_string();
    let deadline = Deadline::new(&name, config.start_timeout);
    let step = "connecting to the reattached plugin";
    let process = match re.pid {
        Some(pid) => {
            match tokio::time::timeout(deadline.remaining(), reattach_process(re, pid)).await {
                Ok(process) => Some(process?),
                Err(_) => return Err(deadline.passed(step, String::new())),
            }
        }
        None => None,
    };
    let connect = connect(
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
    ));
    let conn = tokio::time::timeout(deadline.remaining(), connect)
        .await
        .map_err(|_| deadline.passed(step, String::new()))?
        .map_err(|source| ClientError::Connect {
            name: name.clone(),
            network: re.network,
            address: re.address.clone(),
            source,
        })?;
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(process) = process {
        let exited = exited.clone();
        tasks.spawn(async move {
            while process.is_running() {
                tokio::time::sleep(REATTACHED_EXIT_POLL).await;
            }
            exited.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    Ok(Started {
        conn: Arc::new(conn),
        version: re.protocol_version,
        tasks,
        stop: Box::new(if re.test {
            ReattachedStop::Disconnect
        } else {
            ReattachedStop::Shutdown(process)
        }),
    })
}

/// How a reattached plugin stops (go-plugin's `Kill` after a reattach).
enum ReattachedStop {
    /// Test mode: the host only disconnects; the plugin is responsible for exiting on its
    /// own, so it is not even asked to shut down.
    Disconnect,
    /// Ask it to shut down and, when the host knows its process, wait up to
    /// `kill_timeout` for it to exit, then kill that very process if it still runs.
    Shutdown(Option<ProcessIdentity>),
}

impl Stop for ReattachedStop {
    fn stop<'a>(
        &'a self,
        conn: &'a Connection,
        name: &'a str,
        kill_timeout: Duration,
    ) -> BoxFuture<'a, Stopped> {
        async move {
            let process = match self {
                ReattachedStop::Disconnect => None,
                ReattachedStop::Shutdown(process) => {
                    ask_to_shut_down(conn, kill_timeout).await;
                    process.as_ref()
                }
            };
            if let Some(process) = process {
                let deadline = Instant::now() + kill_timeout;
                while process.is_running() && Instant::now() < deadline {
                    tokio::time::sleep(REATTACHED_KILL_POLL).await;
                }
                // Only the very process attached to: never a pid reused since.
                if let Err(err) = process.kill_if_running() {
                    tracing::warn!(plugin = %name, pid = process.pid(), error = &err as &dyn std::error::Error, "failed to kill the reattached plugin");
                }
            }
            Stopped {
                gone: false,
                flush_pumps: true,
            }
        }
        .boxed()
    }
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
