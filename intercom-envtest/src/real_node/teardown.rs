//! Leaving nothing behind when the node stops: containers and containerd's shims (which
//! containerd starts detached, so they outlive it), the mounts containerd and kubelet made
//! under the node's directory, and the pods' cgroups (cgroup v1 is machine-wide).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The cgroup kubelet puts pods in (under each hierarchy's root).
const KUBEPODS: &str = "kubepods";
/// How long processes get to vanish after SIGKILL before the cgroups are removed.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// SIGKILLs every process in the pods' cgroups and every shim of `containerd_socket`,
/// waits (bounded) for them to go, then removes the cgroups.
pub(super) fn kill_containers(containerd_socket: &Path) {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let mut pids = cgroup_pids();
        pids.extend(shim_pids(containerd_socket));
        if pids.is_empty() {
            break;
        }
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        if Instant::now() >= deadline {
            tracing::warn!(?pids, "processes of the real node survived SIGKILL");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    remove_cgroups();
}

/// Detaches every mount below `dir` (deepest first): overlay root filesystems, sandbox
/// `/dev/shm`s, kubelet's volume tmpfs mounts.
pub(super) fn unmount_below(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        if let Err(errno) = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
            tracing::debug!(%errno, point = %point.display(), "umount failed");
        }
    }
}

/// `/proc/self/mountinfo` escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> PathBuf {
    PathBuf::from(
        field
            .replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
            .replace("\\134", "\\"),
    )
}

/// Every hierarchy's `kubepods` directory.
fn kubepods_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(CGROUP_ROOT) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path().join(KUBEPODS))
        .filter(|p| p.is_dir())
        .collect()
}

/// The pids in every cgroup below `kubepods`, in every hierarchy.
fn cgroup_pids() -> Vec<i32> {
    let mut pids = Vec::new();
    let mut stack = kubepods_dirs();
    while let Some(dir) = stack.pop() {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The containerd shims serving `socket` (their command line names its address).
fn shim_pids(socket: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let needle = socket.as_os_str().as_encoded_bytes();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline.starts_with(b"/usr/bin/containerd-shim")
                    && cmdline.windows(needle.len()).any(|w| w == needle)
            })
        })
        .collect()
}

/// Removes the `kubepods` cgroup trees, leaves first.
fn remove_cgroups() {
    for root in kubepods_dirs() {
        let mut dirs = vec![root.clone()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(entries) = std::fs::read_dir(&dirs[i]) {
                dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
            i += 1;
        }
        for dir in dirs.iter().rev() {
            if let Err(error) = std::fs::remove_dir(dir) {
                tracing::debug!(%error, dir = %dir.display(), "cgroup not removed");
            }
        }
    }
}
