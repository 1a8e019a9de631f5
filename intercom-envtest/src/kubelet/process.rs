//! A container instance as a local process group.

use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::logs::{LogFile, Pipe};

/// How a container process should be started.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) program: OsString,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
}

/// A running container process: leader of its own process group, output pumped into `log`.
#[derive(Debug)]
pub(crate) struct Process {
    child: Child,
    pgid: Pid,
    pumps: Vec<JoinHandle<()>>,
    log: Arc<LogFile>,
    /// The group was killed and reaped by `finish`; its id may be reused.
    finished: bool,
}

impl Process {
    /// Starts `launch` in `dir` with a clean environment of exactly `launch.env`.
    pub(crate) fn spawn(launch: &Launch, dir: &Path, log: Arc<LogFile>) -> std::io::Result<Self> {
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| std::io::Error::other("spawned process has no pid"))?;
        let mut pumps = Vec::with_capacity(2);
        if let Some(out) = child.stdout.take() {
            pumps.push(tokio::spawn(log.clone().pump(Pipe::Stdout, out)));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(tokio::spawn(log.clone().pump(Pipe::Stderr, err)));
        }
        Ok(Self {
            child,
            pgid: Pid::from_raw(pid),
            pumps,
            log,
            finished: false,
        })
    }

    pub(crate) fn pid(&self) -> i32 {
        self.pgid.as_raw()
    }

    /// Sends `signal` to the whole process group.
    pub(crate) fn signal(&self, signal: Signal) {
        signal_group(self.pgid.as_raw(), signal);
    }

    /// Waits for the leader to exit.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(crate) async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// SIGTERM, up to `grace` for the leader to exit, then SIGKILL.
    pub(crate) async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        self.signal(Signal::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                self.signal(Signal::SIGKILL);
                self.child.wait().await
            }
        }
    }

    /// After the leader exited: kills what is left of the group (a container's processes
    /// die with it), drains the pipes and closes the log.
    pub(crate) async fn finish(mut self) {
        self.signal(Signal::SIGKILL);
        for pump in &mut self.pumps {
            // Pipes close when the group is gone; a grandchild that escaped the group
            // could hold them open, so don't wait forever.
            if tokio::time::timeout(Duration::from_secs(2), &mut *pump)
                .await
                .is_err()
            {
                pump.abort();
            }
        }
        self.log.close();
        self.finished = true;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Backstop for aborted tasks.
        if !self.finished {
            self.signal(Signal::SIGKILL);
        }
        for pump in &self.pumps {
            pump.abort();
        }
    }
}

/// Signals process group `pgid`, ignoring a group that is already gone.
pub(crate) fn signal_group(pgid: i32, signal: Signal) {
    if pgid <= 1 {
        return;
    }
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(error) => {
            tracing::debug!(
                error = &error as &dyn std::error::Error,
                pgid,
                "failed to signal process group"
            );
        }
    }
}

/// Exit code as a container runtime reports it: the code, or 128 + signal.
pub(crate) fn exit_code(status: ExitStatus) -> (i32, Option<i32>) {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(signal)) => (128 + signal, Some(signal)),
        (None, None) => (128, None),
    }
}
