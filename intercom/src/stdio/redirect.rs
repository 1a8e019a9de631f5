//! [`Redirect`]: one descriptor `dup2`ed elsewhere and put back on drop, with its
//! `fcntl`/`dup2` helpers.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

/// One descriptor pointed elsewhere, with a duplicate of what it pointed at before.
#[derive(Debug)]
pub(super) struct Redirect {
    target: RawFd,
    pub(super) saved: Arc<File>,
    cloexec: bool,
}

impl Redirect {
    /// Makes `target` refer to what `to` refers to, saving a close-on-exec duplicate of
    /// the old `target` first. `target` keeps its own close-on-exec flag.
    ///
    /// # Safety
    ///
    /// `target` must be open and stay open for the life of the returned value.
    pub(super) unsafe fn new(target: RawFd, to: BorrowedFd<'_>) -> io::Result<Redirect> {
        // SAFETY: the caller keeps `target` open; the borrow ends within this function.
        let current = unsafe { BorrowedFd::borrow_raw(target) };
        // `try_clone_to_owned` uses F_DUPFD_CLOEXEC: the duplicate never leaks into children.
        let saved = current.try_clone_to_owned()?;
        let cloexec = cloexec(current)?;
        dup2(to, target, cloexec)?;
        Ok(Redirect {
            target,
            saved: Arc::new(File::from(saved)),
            cloexec,
        })
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        // Best effort: nothing sensible to do on failure, and the logger may be the very
        // stream that failed.
        let _ = dup2(self.saved.as_fd(), self.target, self.cloexec);
    }
}

/// Whether `fd` has FD_CLOEXEC set.
pub(super) fn cloexec(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: F_GETFD takes no pointer argument; `fd` is open.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::FD_CLOEXEC != 0)
}

/// `dup2(from, to)`, retried on EINTR, then gives `to` the requested close-on-exec flag
/// (`dup2` always clears it).
fn dup2(from: BorrowedFd<'_>, to: RawFd, cloexec: bool) -> io::Result<()> {
    loop {
        // SAFETY: plain syscall on integer descriptors, no memory involved; `from` is
        // open and the callers own `to`.
        if unsafe { libc::dup2(from.as_raw_fd(), to) } >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    if cloexec {
        // SAFETY: F_SETFD takes an integer argument; `to` was just made valid by dup2.
        if unsafe { libc::fcntl(to, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
