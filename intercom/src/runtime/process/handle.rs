//! [`ProcessHandle`]: control over one running plugin process, and the reaper that
//! kills its group and removes its socket directory when the last handle goes away.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::runtime::{ExitInfo, PluginHandle};

/// Kills the process group when the last handle goes away (the backstop for a host that
/// never called `kill`), and removes the plugin's socket directory.
struct Reaper {
    task: tokio::task::AbortHandle,
    /// Taken (removed) by `kill`, else dropped with the last handle.
    socket_dir: Mutex<Option<tempfile::TempDir>>,
}

impl Reaper {
    fn remove_socket_dir(&self) {
        let dir = self.socket_dir.lock().map(|mut d| d.take());
        if let Ok(Some(dir)) = dir
            && let Err(e) = dir.close()
        {
            tracing::debug!(error = %e, "could not remove the plugin's socket directory");
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // The reaper task owns the Child (kill_on_drop); aborting it drops the Child,
        // which SIGKILLs the leader and lets tokio reap it in the background.
        self.task.abort();
        self.remove_socket_dir();
    }
}

/// A running plugin process.
#[derive(Clone)]
pub struct ProcessHandle {
    pid: u32,
    exit: watch::Receiver<Option<ExitInfo>>,
    reaper: Arc<Reaper>,
}

impl fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("pid", &self.pid)
            .field("exit", &*self.exit.borrow())
            .finish()
    }
}

impl ProcessHandle {
    /// The handle of the process `pid`, whose exit arrives on `exit`; `reaper` is the task
    /// that waits for it, `socket_dir` the directory it was given for its socket.
    pub(super) fn new(
        pid: u32,
        exit: watch::Receiver<Option<ExitInfo>>,
        reaper: tokio::task::AbortHandle,
        socket_dir: tempfile::TempDir,
    ) -> Self {
        ProcessHandle {
            pid,
            exit,
            reaper: Arc::new(Reaper {
                task: reaper,
                socket_dir: Mutex::new(Some(socket_dir)),
            }),
        }
    }

    fn signal_group(&self, signal: nix::sys::signal::Signal) -> io::Result<()> {
        let Ok(pid) = i32::try_from(self.pid) else {
            return Ok(());
        };
        if pid <= 0 {
            return Ok(());
        }
        match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        // Last clone of a still-running plugin: take the whole group down.
        if Arc::strong_count(&self.reaper) == 1 && self.exit.borrow().is_none() {
            let _ = self.signal_group(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl PluginHandle for ProcessHandle {
    fn id(&self) -> String {
        self.pid.to_string()
    }

    fn wait(&self) -> BoxFuture<'static, ExitInfo> {
        let mut rx = self.exit.clone();
        async move {
            match rx.wait_for(Option::is_some).await {
                Ok(v) => v.unwrap_or_default(),
                Err(_) => ExitInfo::default(),
            }
        }
        .boxed()
    }

    fn exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    fn kill(&self) -> BoxFuture<'_, io::Result<()>> {
        async move {
            self.signal_group(nix::sys::signal::Signal::SIGKILL)?;
            self.wait().await;
            // Anything the leader left behind in its group.
            let _ = self.signal_group(nix::sys::signal::Signal::SIGKILL);
            self.reaper.remove_socket_dir();
            Ok(())
        }
        .boxed()
    }
}
