//! The process a reattached client may signal, and nothing else.
//!
//! A pid in a [`ReattachConfig`](crate::ReattachConfig) is only a number: by the time a
//! host reattaches, the plugin may be gone and its pid reused by a stranger. So a
//! reattached client checks, before it trusts the pid, that the process is the plugin —
//! on a unix socket, that the pid is the socket's listener (`SO_PEERCRED`) — and remembers
//! the process's start time. It signals or watches the pid only while that start time is
//! unchanged: a reused pid is a different process, which is never signalled.

use std::io;

/// A process: its pid and its start time (clock ticks after boot, from `/proc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessIdentity {
    pid: u32,
    started: u64,
}

impl ProcessIdentity {
    /// The process running as `pid` now, if any.
    pub(crate) fn of(pid: u32) -> Option<Self> {
        start_time(pid).map(|started| Self { pid, started })
    }

    /// The pid.
    pub(crate) fn pid(self) -> u32 {
        self.pid
    }

    /// Whether this very process still runs (not a zombie, not a reused pid).
    pub(crate) fn is_running(self) -> bool {
        start_time(self.pid) == Some(self.started)
    }

    /// SIGKILLs the process if it is still this one; says whether a signal was sent.
    pub(crate) fn kill_if_running(self) -> io::Result<bool> {
        if !self.is_running() {
            return Ok(false);
        }
        let pid = i32::try_from(self.pid).map_err(io::Error::other)?;
        match nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        ) {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::ESRCH) => Ok(false),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

/// Whether `pid` is `ancestor` or a descendant of it (following parents in `/proc`).
pub(crate) fn is_same_or_descendant(pid: u32, ancestor: u32) -> bool {
    let mut current = pid;
    // Process trees are shallow; the bound only guards against a cycle in a racing read.
    for _ in 0..64 {
        if current == ancestor {
            return true;
        }
        match parent(current) {
            Some(p) if p > 1 => current = p,
            _ => return false,
        }
    }
    false
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Field 22 of `/proc/<pid>/stat` (after the parenthesised command name, which may hold
/// spaces); `None` when there is no such process or it is a zombie.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    // Fields from 3 on: state is field 3, starttime field 22.
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(22 - 4)?.parse().ok()
}

/// The pid of the process listening on the unix socket at `path`, as the kernel saw it
/// at `listen()` (`SO_PEERCRED`).
pub(crate) async fn unix_listener_pid(path: &str) -> io::Result<Option<u32>> {
    let stream = tokio::net::UnixStream::connect(path).await?;
    let cred = stream.peer_cred()?;
    Ok(cred.pid().and_then(|p| u32::try_from(p).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_running_and_a_gone_one_is_not() {
        let me = ProcessIdentity::of(std::process::id()).expect("we run");
        assert!(me.is_running());
        let moved = ProcessIdentity {
            started: me.started + 1,
            ..me
        };
        assert!(
            !moved.is_running(),
            "same pid, other start time: another process"
        );
        assert!(!moved.kill_if_running().unwrap(), "never signalled");
    }

    #[tokio::test]
    async fn an_exited_child_is_not_running_even_as_a_zombie() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let identity = ProcessIdentity::of(child.id()).expect("the child runs");
        assert!(identity.is_running());
        // Wait for the exit without reaping: the zombie keeps the pid.
        while ProcessIdentity::of(child.id()).is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(!identity.is_running());
        assert!(!identity.kill_if_running().unwrap());
        child.wait().unwrap();
    }

    #[test]
    fn a_child_descends_from_us_and_we_do_not_descend_from_it() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id();
        assert!(is_same_or_descendant(child.id(), me));
        assert!(is_same_or_descendant(me, me));
        assert!(!is_same_or_descendant(me, child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn the_listener_pid_of_a_unix_socket_is_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _l = tokio::net::UnixListener::bind(&path).unwrap();
        let pid = unix_listener_pid(path.to_str().unwrap()).await.unwrap();
        assert_eq!(pid, Some(std::process::id()));
    }
}
