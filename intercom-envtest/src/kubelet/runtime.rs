//! In-memory state of the pods this kubelet runs, shared by the pod workers, the status
//! writer and the HTTPS server.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use nix::sys::signal::Signal;
use tokio::sync::{Notify, watch};

use super::logs::LogFile;
use super::process::signal_group;

/// How a container takes part in the pod's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `initContainers` entry that runs to completion before the next one.
    Init,
    /// `initContainers` entry with `restartPolicy: Always`: runs alongside the pod.
    Sidecar,
    /// `containers` entry.
    Regular,
}

/// A finished container instance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Terminated {
    pub(crate) exit_code: i32,
    pub(crate) signal: Option<i32>,
    pub(crate) reason: String,
    pub(crate) message: Option<String>,
    pub(crate) started_at: Option<Timestamp>,
    pub(crate) finished_at: Timestamp,
    pub(crate) container_id: Option<String>,
}

/// `state` of a container status.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Current {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated(Terminated),
}

/// Everything reported about one container.
#[derive(Debug, Clone)]
pub(crate) struct ContainerState {
    pub(crate) current: Current,
    pub(crate) last: Option<Terminated>,
    pub(crate) restart_count: i32,
    pub(crate) ready: bool,
    pub(crate) started: bool,
    pub(crate) image_id: String,
    /// The latest instance's id (kept while waiting to restart, like a real runtime).
    pub(crate) container_id: Option<String>,
    /// Process group of the running instance.
    pub(crate) pgid: Option<i32>,
    /// Logs of the latest instances by container id, newest last.
    pub(crate) logs: VecDeque<(String, Arc<LogFile>)>,
}

/// One container of a pod.
#[derive(Debug)]
pub(crate) struct ContainerRuntime {
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) kind: Kind,
    state: Mutex<ContainerState>,
    /// `Some(grace)`: stop the container (and don't restart it).
    pub(crate) stop: watch::Sender<Option<Duration>>,
    /// Mirrors `started` for waiters (sidecars gate the next init container).
    pub(crate) started: watch::Sender<bool>,
}

impl ContainerRuntime {
    pub(crate) fn new(name: String, image: String, kind: Kind) -> Self {
        Self {
            name,
            image,
            kind,
            state: Mutex::new(ContainerState {
                current: Current::Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                },
                last: None,
                restart_count: 0,
                ready: false,
                started: false,
                image_id: String::new(),
                container_id: None,
                pgid: None,
                logs: VecDeque::new(),
            }),
            stop: watch::Sender::new(None),
            started: watch::Sender::new(false),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ContainerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn snapshot(&self) -> ContainerState {
        self.lock().clone()
    }

    pub(crate) fn stop_requested(&self) -> Option<Duration> {
        *self.stop.borrow()
    }

    /// Waits until a stop is requested and returns its grace period.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(crate) async fn stopped(&self) -> Duration {
        let mut rx = self.stop.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(grace) => grace.unwrap_or_default(),
            // The sender lives in `self`: unreachable while we borrow it.
            Err(_) => Duration::ZERO,
        }
    }

    /// Sleeps for `delay`; `false` if a stop came first.
    pub(crate) async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            _ = self.stopped() => false,
        }
    }
}

/// One pod on this node.
#[derive(Debug)]
pub(crate) struct PodRuntime {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) ip: Ipv4Addr,
    pub(crate) dir: PathBuf,
    pub(crate) start_time: Timestamp,
    /// Init containers (including sidecars) in spec order.
    pub(crate) init: Vec<Arc<ContainerRuntime>>,
    /// Regular containers in spec order.
    pub(crate) containers: Vec<Arc<ContainerRuntime>>,
    /// Status changed: the status writer should patch.
    pub(crate) changed: Notify,
}

impl PodRuntime {
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<ContainerRuntime>> {
        self.init.iter().chain(&self.containers)
    }

    pub(crate) fn container(&self, name: &str) -> Option<&Arc<ContainerRuntime>> {
        self.all().find(|c| c.name == name)
    }

    pub(crate) fn touch(&self) {
        self.changed.notify_one();
    }

    /// Asks every container to stop within `grace`.
    pub(crate) fn stop_all(&self, grace: Duration) {
        for c in self.all() {
            c.stop.send_if_modified(|stop| {
                if stop.is_none() {
                    *stop = Some(grace);
                    true
                } else {
                    false
                }
            });
        }
    }

    /// SIGKILLs every running container at once (the kubelet is going away).
    pub(crate) fn kill_now(&self) {
        for c in self.all() {
            if let Some(pgid) = c.lock().pgid {
                signal_group(pgid, Signal::SIGKILL);
            }
        }
    }
}

/// The kubelet's back-off (`flowcontrol.Backoff`): base, doubling, capped; forgotten after
/// a quiet period of twice the cap.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    current: Option<Duration>,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            current: None,
        }
    }

    /// Delay before restarting a container that ran for `ran_for`: the first restart is
    /// immediate, then base, 2×base, … up to the cap.
    pub(crate) fn next_restart(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.max * 2 {
            self.current = None;
        }
        match self.current {
            None => {
                self.current = Some(self.base);
                Duration::ZERO
            }
            Some(delay) => {
                self.current = Some((delay * 2).min(self.max));
                delay
            }
        }
    }

    /// Delay before retrying a failed pull or configuration: base, 2×base, … up to the cap.
    pub(crate) fn next_retry(&mut self) -> Duration {
        let delay = self.current.unwrap_or(self.base);
        self.current = Some((delay * 2).min(self.max));
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.current = None;
    }
}

/// A container id in the runtime's `<type>://<id>` form.
pub(crate) fn new_container_id() -> String {
    let (a, b) = (super::ip::random_u64(), super::ip::random_u64());
    let hex = format!("{a:016x}{b:016x}");
    let (p1, rest) = hex.split_at(8);
    let (p2, rest) = rest.split_at(4);
    let (p3, rest) = rest.split_at(4);
    let (p4, p5) = rest.split_at(4);
    format!("intercom://{p1}-{p2}-{p3}-{p4}-{p5}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_like_the_kubelet() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(10), s(300));
        let delays: Vec<_> = (0..8).map(|_| b.next_restart(s(1))).collect();
        assert_eq!(
            delays,
            [s(0), s(10), s(20), s(40), s(80), s(160), s(300), s(300)]
        );
        assert_eq!(b.next_restart(s(600)), s(0));
        let mut r = Backoff::new(s(1), s(4));
        let retries: Vec<_> = (0..4).map(|_| r.next_retry()).collect();
        assert_eq!(retries, [s(1), s(2), s(4), s(4)]);
    }

    #[test]
    fn container_ids_look_like_uuids() {
        let id = new_container_id();
        let uuid = id.strip_prefix("intercom://").unwrap();
        assert_eq!(uuid.len(), 36);
        assert_ne!(id, new_container_id());
    }
}
