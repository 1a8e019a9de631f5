//! How a plugin process ended, shared by every client of its connection, so a call that
//! fails because the plugin died says so ("plugin `x` exited (exit status 101)", with
//! the last lines of its stderr) instead of showing a raw transport error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tonic::{Code, Status};

use crate::runtime::ExitInfo;

/// How long a failed call waits for the exit to be recorded: a dead plugin's socket closes
/// a moment before the host reaps the process.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// A plugin's end, as reported in call errors.
#[derive(Debug, Clone)]
pub(crate) struct PluginExit {
    /// Plugin name.
    pub(crate) name: String,
    /// How it ended.
    pub(crate) status: ExitInfo,
    /// The last lines of its stderr (may be empty).
    pub(crate) stderr: String,
}

/// Where the end of one plugin process is recorded; cheap to clone. Only a host that
/// waits on the plugin's process [arms](Self::arm) it; for the others (reattached,
/// Kubernetes, the plugin side) [`explain`](Self::explain) returns statuses unchanged at
/// once.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExitWatch(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Whether an exit will be recorded.
    armed: AtomicBool,
    exit: watch::Sender<Option<Arc<PluginExit>>>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            armed: AtomicBool::new(false),
            exit: watch::Sender::new(None),
        }
    }
}

impl ExitWatch {
    /// Declares that the plugin's exit will be [recorded](Self::record).
    pub(crate) fn arm(&self) {
        self.0.armed.store(true, Ordering::SeqCst);
    }

    /// Records the end (the first record wins).
    pub(crate) fn record(&self, exit: PluginExit) {
        self.0.exit.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(Arc::new(exit));
            true
        });
    }

    /// The end, if recorded.
    fn get(&self) -> Option<Arc<PluginExit>> {
        self.0.exit.borrow().clone()
    }

    /// The end, waiting up to `grace` for it to be recorded.
    async fn wait(&self, grace: Duration) -> Option<Arc<PluginExit>> {
        let mut rx = self.0.exit.subscribe();
        let recorded = tokio::time::timeout(grace, rx.wait_for(Option::is_some)).await;
        match recorded {
            Ok(Ok(slot)) => slot.clone(),
            _ => None,
        }
    }

    /// `status` of a failed call, explained by the plugin's exit when it died: an
    /// `unavailable` status that names the plugin, how it ended and its last stderr
    /// lines, with the original status as its source. Statuses the plugin sent itself
    /// are returned unchanged.
    ///
    /// `connection_failed` says the failure certainly came from the connection (not the
    /// plugin); only then (or when tonic reports a transport cause) does it wait, up to
    /// [`EXIT_GRACE`], for the exit to be recorded.
    pub(crate) async fn explain(&self, status: Status, connection_failed: bool) -> Status {
        if !self.0.armed.load(Ordering::SeqCst) {
            return status;
        }
        // Transport failures carry their cause; statuses decoded from a response do not.
        let from_connection = connection_failed || std::error::Error::source(&status).is_some();
        let exit = match self.get() {
            Some(exit) if from_connection || lost_connection(status.code()) => exit,
            Some(_) => return status,
            None if from_connection => match self.wait(EXIT_GRACE).await {
                Some(exit) => exit,
                None => return status,
            },
            None => return status,
        };
        let mut explained = Status::unavailable(exit.message());
        explained.set_source(Arc::new(status));
        explained
    }
}

impl PluginExit {
    fn message(&self) -> String {
        let mut message = format!(
            "plugin `{}` exited ({}) before the call completed",
            self.name, self.status
        );
        if !self.stderr.is_empty() {
            message.push_str("; last lines of the plugin's stderr:\n");
            message.push_str(&self.stderr);
        }
        message
    }
}

/// The codes a call gets when its connection goes away.
fn lost_connection(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Cancelled | Code::Unknown | Code::Internal
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armed() -> ExitWatch {
        let watch = ExitWatch::default();
        watch.arm();
        watch
    }

    fn exit() -> PluginExit {
        PluginExit {
            name: "greeter".into(),
            status: ExitInfo {
                code: Some(101),
                signal: None,
            },
            stderr: "thread 'main' panicked at src/main.rs:1:1:\nboom".into(),
        }
    }

    #[tokio::test]
    async fn a_connection_failure_after_the_exit_names_the_exit() {
        let watch = armed();
        watch.record(exit());
        let status = watch
            .explain(Status::unavailable("error trying to connect"), true)
            .await;
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status
                .message()
                .starts_with("plugin `greeter` exited (exit status 101) before the call completed"),
            "{status}"
        );
        assert!(
            status
                .message()
                .ends_with("panicked at src/main.rs:1:1:\nboom"),
            "{status}"
        );
        assert!(
            std::error::Error::source(&status).is_some(),
            "the original status is kept"
        );
    }

    #[tokio::test]
    async fn an_exit_recorded_while_the_call_fails_is_waited_for() {
        let watch = armed();
        let later = watch.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            later.record(exit());
        });
        let status = watch
            .explain(Status::unknown("transport error"), true)
            .await;
        assert!(
            status.message().contains("exited (exit status 101)"),
            "{status}"
        );
    }

    #[tokio::test]
    async fn statuses_from_a_live_plugin_are_unchanged() {
        let watch = armed();
        let status = watch
            .explain(Status::invalid_argument("empty name"), false)
            .await;
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "empty name");
        // Even after the exit, a status the plugin sent with its own code stays.
        watch.record(exit());
        let status = watch.explain(Status::not_found("no key"), false).await;
        assert_eq!(status.message(), "no key");
    }

    /// Kubernetes and reattached plugins: no process to wait on, no delay.
    #[tokio::test]
    async fn an_unarmed_watch_returns_at_once() {
        let watch = ExitWatch::default();
        let started = std::time::Instant::now();
        let status = watch.explain(Status::unavailable("reset"), true).await;
        assert_eq!(status.message(), "reset");
        assert!(
            started.elapsed() < EXIT_GRACE / 5,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_failure_without_an_exit_is_unchanged() {
        let watch = armed();
        let status = watch.explain(Status::unavailable("reset"), true).await;
        assert_eq!(status.message(), "reset");
    }
}
