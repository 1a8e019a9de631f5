//! Child processes of the control plane: spawned in their own process group with output to a
//! log file, killed (whole group) and reaped on drop.
//!
//! Children are forked by one long-lived thread of this process and, on Linux, get
//! `PR_SET_PDEATHSIG(SIGKILL)`: the kernel then kills them when that thread ends, i.e. when the
//! test binary exits without running destructors (Ctrl-C, `process::exit`, abort). The
//! parent-death signal follows the *thread* that forked, which is why no Tokio worker thread
//! (which may exit while the control plane lives) does the forking.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::oneshot;

use super::{Component, ControlPlaneError};

/// How many lines of a component's log an error carries.
const LOG_TAIL_LINES: usize = 30;
/// How long `kill` waits for a SIGKILLed child to become reapable before giving up.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running control-plane component.
pub(crate) struct Process {
    component: Component,
    child: Child,
    log: PathBuf,
    /// Set once the child was reaped; after that its pid may belong to someone else.
    status: Option<ExitStatus>,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("component", &self.component)
            .field("pid", &self.child.id())
            .field("log", &self.log)
            .field("status", &self.status)
            .finish()
    }
}

impl Process {
    /// Starts `program args…` in `cwd`, stdout and stderr appended to `log`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a child forked after the caller went away is killed and reaped by the
    /// spawner thread.
    pub(crate) async fn spawn(
        component: Component,
        program: &Path,
        args: Vec<OsString>,
        cwd: &Path,
        log: PathBuf,
    ) -> Result<Process, ControlPlaneError> {
        let spawn_err = |source| ControlPlaneError::Spawn {
            component,
            path: program.to_owned(),
            source,
        };
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|source| ControlPlaneError::WriteFile {
                path: log.clone(),
                source,
            })?;
        let err = out.try_clone().map_err(spawn_err)?;

        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        set_parent_death_signal(&mut command);

        let child = spawn_on_spawner_thread(command).await.map_err(spawn_err)?;
        tracing::debug!(%component, pid = child.id(), log = ?log, "started");
        Ok(Process {
            component,
            child,
            log,
            status: None,
        })
    }

    pub(crate) fn component(&self) -> Component {
        self.component
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// The last lines of this component's log.
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log, LOG_TAIL_LINES)
    }

    /// `Some(error)` if the child has exited (it is reaped here).
    pub(crate) fn exited(&mut self) -> Option<ControlPlaneError> {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.status = status,
                Err(error) => {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        component = %self.component,
                        "failed to poll child"
                    );
                }
            }
        }
        let status = self.status?;
        Some(ControlPlaneError::Exited {
            component: self.component,
            status,
            log: self.log.clone(),
            log_tail: self.log_tail(),
        })
    }

    /// Kills the child's process group with SIGKILL and reaps the child (bounded wait).
    pub(crate) fn kill(&mut self) {
        if self.status.is_some() {
            return;
        }
        // The child is not reaped yet, so its pid (= its process group id) is still ours.
        match i32::try_from(self.child.id()) {
            Ok(pgid) => {
                if let Err(errno) = killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
                    tracing::debug!(%errno, component = %self.component, "killpg failed");
                    let _ = self.child.kill();
                }
            }
            Err(_) => {
                let _ = self.child.kill();
            }
        }
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    tracing::debug!(component = %self.component, %status, "stopped");
                    return;
                }
                Ok(None) if start.elapsed() < REAP_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(None) => {
                    tracing::warn!(
                        component = %self.component,
                        pid = self.child.id(),
                        "child did not exit within {REAP_TIMEOUT:?} of SIGKILL"
                    );
                    return;
                }
                Err(error) => {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        component = %self.component,
                        "failed to reap child"
                    );
                    return;
                }
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(target_os = "linux")]
fn set_parent_death_signal(command: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs between fork and exec and only makes the async-signal-safe
    // `prctl` and `getppid` system calls; it allocates nothing on success.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // The parent may have died before prctl took effect.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::other("parent exited during spawn"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_command: &mut Command) {}

struct SpawnRequest {
    command: Command,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// The sender to the spawner thread; the thread lives as long as the process.
static SPAWNER: Mutex<Option<mpsc::Sender<SpawnRequest>>> = Mutex::new(None);

fn spawner() -> io::Result<mpsc::Sender<SpawnRequest>> {
    let mut guard = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(sender) = guard.as_ref() {
        return Ok(sender.clone());
    }
    let (sender, receiver) = mpsc::channel::<SpawnRequest>();
    std::thread::Builder::new()
        .name("intercom-envtest-spawner".to_owned())
        .spawn(move || {
            // Ends only if every sender is gone, and the static keeps one forever.
            for SpawnRequest { mut command, reply } in receiver {
                if let Err(Ok(mut orphan)) = reply.send(command.spawn()) {
                    // The caller was cancelled: do not leak the child.
                    if let Ok(pgid) = i32::try_from(orphan.id()) {
                        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                    }
                    let _ = orphan.kill();
                    let _ = orphan.wait();
                }
            }
        })?;
    *guard = Some(sender.clone());
    Ok(sender)
}

async fn spawn_on_spawner_thread(command: Command) -> io::Result<Child> {
    let (reply, receive) = oneshot::channel();
    spawner()?
        .send(SpawnRequest { command, reply })
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    receive
        .await
        .map_err(|_| io::Error::other("the spawner thread dropped the request"))?
}

/// The last `lines` lines of the file at `path` (at most its last 64 KiB), or a note saying
/// why it could not be read.
pub(super) fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all.get(start..).unwrap_or_default().join("\n")
        }
        Err(error) => format!("<could not read {}: {error}>", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).expect("write");
        let tail = log_tail(&path, 3);
        assert_eq!(tail, "line 97\nline 98\nline 99");
        assert!(log_tail(&dir.path().join("missing"), 3).starts_with("<could not read"));
    }

    #[tokio::test]
    async fn kill_reaps_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The shell starts a grandchild in the same process group and waits for it.
        let mut process = Process::spawn(
            Component::Etcd,
            Path::new("/bin/sh"),
            vec!["-c".into(), "sleep 600 & echo started; wait".into()],
            dir.path(),
            dir.path().join("sh.log"),
        )
        .await
        .expect("spawn");
        let pid = process.pid();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(process.log())
            .unwrap_or_default()
            .contains("started")
        {
            assert!(Instant::now() < deadline, "shell did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(process.exited().is_none());
        let group = group_members(pid);
        assert!(group.len() >= 2, "expected shell + sleep, got {group:?}");
        drop(process);
        for member in group {
            // Reaped child: gone. Grandchild: killed, reparented and reaped by init.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{member}")).exists() && !is_zombie_of_other(member) {
                assert!(Instant::now() < deadline, "pid {member} survived");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Pids whose process group is `pgid`.
    fn group_members(pgid: u32) -> Vec<u32> {
        let mut members = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the parenthesised command: state ppid pgrp …
            let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
                members.push(pid);
            }
        }
        members
    }

    /// A zombie reparented away from us is dead; reaping it is init's job.
    fn is_zombie_of_other(pid: u32) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return true;
        };
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        state == Some("Z") && ppid != Some(std::process::id())
    }
}
