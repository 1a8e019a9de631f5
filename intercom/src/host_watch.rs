//! A plugin shuts down when its host is gone: when its parent process (the host that
//! launched it, in any language) dies and it is re-parented, or on SIGTERM.
//!
//! A host connection is not a reliable sign: with go-plugin's classic broker a killed
//! host's connections may linger, and a Kubernetes plugin outlives every connection by
//! design. The parent is: a process runtime's plugin is its host's child. So the plugin
//! polls its parent pid and shuts down the moment it changes (`INTERCOM_OUTLIVE_HOST`
//! turns that off, for plugins meant to be reattached to after their host exits).

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// How often the parent pid is checked.
const PARENT_POLL: Duration = Duration::from_millis(200);

/// Starts listening for SIGTERM; call it first thing, and hand the result to [`spawn`].
///
/// As PID 1 (a container's entrypoint) a process gets no default action for SIGTERM: a
/// SIGTERM that arrives before a handler is installed is discarded, and the process then
/// runs until the kubelet's SIGKILL at the end of the grace period. Once installed, a
/// SIGTERM that arrives before [`spawn`] waits in the returned stream.
pub(crate) fn listen_sigterm() -> Option<Signal> {
    match signal(SignalKind::terminate()) {
        Ok(term) => Some(term),
        Err(err) => {
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                "failed to install a SIGTERM handler; SIGTERM will not shut the plugin down gracefully"
            );
            None
        }
    }
}

/// Cancels `shutdown` on SIGTERM (from [`listen_sigterm`]) and, if `watch_parent`, when
/// the parent process is gone. Both watches end with `shutdown`.
pub(crate) fn spawn(shutdown: &CancellationToken, term: Option<Signal>, watch_parent: bool) {
    if let Some(mut term) = term {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                Some(()) = term.recv() => {
                    tracing::debug!("SIGTERM: shutting down");
                    shutdown.cancel();
                }
                () = shutdown.cancelled() => {}
            }
        });
    }
    let parent = nix::unistd::getppid();
    // Parent 1 (or 0, as pid 1 in a container): started by init, not by a host.
    if !watch_parent || parent.as_raw() <= 1 {
        return;
    }
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PARENT_POLL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            if nix::unistd::getppid() != parent {
                tracing::warn!(
                    host_pid = parent.as_raw(),
                    "the host process is gone; shutting down"
                );
                shutdown.cancel();
                return;
            }
        }
    });
}
