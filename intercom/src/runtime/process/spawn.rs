//! Forking plugins so that they die with the host.
//!
//! On Linux every plugin gets `PR_SET_PDEATHSIG = SIGKILL`, so the kernel kills it when
//! the host dies, however it dies (SIGKILL included) and whatever the plugin is written
//! in. The kernel sends that signal when the *thread* that forked the child exits, not
//! the process, and tokio may poll a task on a blocking-pool thread that exits when idle:
//! a plugin forked there would be killed seconds later. So every plugin is forked by one
//! dedicated thread that lives as long as the host process.

use std::io;
use std::sync::OnceLock;
use std::sync::mpsc;

/// A spawn to run on the spawner thread.
type Job = Box<dyn FnOnce() + Send>;

/// The spawner thread's queue, started on first use.
fn spawner() -> io::Result<&'static mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    if let Some(tx) = SPAWNER.get() {
        return Ok(tx);
    }
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("intercom-spawner".into())
        .spawn(move || {
            // Runs until the process ends: every sender lives in the static.
            for job in rx {
                job();
            }
        })?;
    // Another caller may have won the race: its thread serves, ours ends with its queue.
    Ok(SPAWNER.get_or_init(|| tx))
}

/// Spawns `cmd` from the spawner thread, in the caller's tokio runtime (which reaps it).
/// Unless `outlive_host`, the child is killed when the host process dies (Linux).
pub(super) async fn spawn(
    mut cmd: tokio::process::Command,
    outlive_host: bool,
) -> io::Result<tokio::process::Child> {
    if !outlive_host {
        die_with_host(&mut cmd);
    }
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _context = runtime.enter();
        let _ = tx.send(cmd.spawn());
    });
    spawner()?
        .send(job)
        .map_err(|_| io::Error::other("the intercom-spawner thread is gone"))?;
    rx.await
        .map_err(|_| io::Error::other("the intercom-spawner thread dropped the spawn"))?
}

#[cfg(target_os = "linux")]
fn die_with_host(cmd: &mut tokio::process::Command) {
    let host = nix::unistd::getpid();
    // SAFETY: the closure runs between fork and exec and calls only prctl(2) and
    // getppid(2), all async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(io::Error::from)?;
            // The host died between fork and prctl: the signal will never come.
            // (A raw OS error: building any other io::Error would allocate.)
            if nix::unistd::getppid() != host {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Elsewhere there is no parent-death signal; Rust plugins still watch their parent.
#[cfg(not(target_os = "linux"))]
fn die_with_host(_: &mut tokio::process::Command) {}
