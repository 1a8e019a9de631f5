//! Launching, watching and connecting to the plugin's pods.
//!
//! One task watches the plugin's pods (and, in `Endpoints` mode, the Service's
//! EndpointSlices). Each ready pod gets its own connection: its handshake line is read
//! from the container log, its certificate pinned, and its channel and broker session
//! join the [`Balancer`] and the broker group. Pods that stop being ready, restart or go
//! away leave; new ones join, so rollouts and crashes need nothing from the host.

mod create;
mod failures;
mod owned;
mod plugin;
mod pod_watch;
mod port_forward;
mod replica;
mod shared_stdio;
mod start;

pub(crate) use create::{digest_of, launch, reattach};
use failures::{last_logs, pod_failure, pod_ready, progress_deadline_exceeded, replica_failure};
use owned::{create_network_policy, load_identity, store_identity};
use pod_watch::watch_plugin;
use port_forward::port_forward;
use replica::{check_first_line, connect_pod, fail_waiting_start};
use shared_stdio::pump_shared_stdio;
use start::connect_all;

use crate::sync::lock;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::balancer::Balancer;
use super::handshake_scan;
use super::host_owner::{self, HostPod};
use super::lease;
use super::objects::{INSTANCE_LABEL, Injection, inject, owner_reference};
use super::owners::{self, Owners};
use super::validate::{validate_deployment, validate_service};
use super::{ConnectMode, KubeError, KubernetesConfig, Retry};
use crate::broker::{Group, GrpcBroker};
use crate::connection::{Conn, Dialer, Writer, address_dialer, connect, pump_stdio};
use crate::handshake::{Handshake, Network};
use crate::runtime::{ExitInfo, PluginHandle};
use crate::tls::PinSet;
use crate::transport::{Io, TlsPair};

/// What the Client hands the runtime for one launch.
pub(crate) struct LaunchContext {
    pub(crate) name: String,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) identity: Option<crate::tls::Identity>,
    pub(crate) host_versions: Vec<u32>,
    pub(crate) deadline: Instant,
    pub(crate) sync_stdout: Option<Writer>,
    pub(crate) sync_stderr: Option<Writer>,
}

/// A plugin running as a Deployment.
pub(crate) struct KubePlugin {
    deployments: Api<Deployment>,
    services: Api<Service>,
    pods: Api<Pod>,
    namespace: String,
    deployment: String,
    service: String,
    instance: String,
    /// Which pods are the plugin's (by owner UID, not by label).
    owners: Owners,
    balancer: Arc<Balancer>,
    group: Arc<Group>,
    broker: GrpcBroker,
    /// Pod name → its live connection.
    legs: Mutex<HashMap<String, Leg>>,
    exited: watch::Sender<bool>,
    closed: CancellationToken,
    delete_on_kill: bool,
    watcher: Mutex<Option<tokio::task::AbortHandle>>,
    /// Renews the host Lease and reaps the namespace's abandoned plugins.
    keeper: Mutex<Option<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for KubePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubePlugin")
            .field("namespace", &self.namespace)
            .field("deployment", &self.deployment)
            .field("replicas_connected", &self.balancer.len())
            .finish()
    }
}

struct Leg {
    /// Pod uid + container id: a restarted container is a new plugin process.
    key: String,
    conn: Conn,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Leg {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.conn.broker.close();
        if let Some(m) = &self.conn.mux {
            m.close();
        }
    }
}

/// Start progress, reported by the watcher to the waiting `launch`.
#[derive(Debug, Clone)]
enum Start {
    Waiting(&'static str),
    Connected(u32),
    /// The error, to be taken once by the waiting launch.
    Failed(Arc<Mutex<Option<KubeError>>>),
}

fn failed(err: KubeError) -> Start {
    Start::Failed(Arc::new(Mutex::new(Some(err))))
}

struct Shared {
    plugin: Arc<KubePlugin>,
    mode: ConnectMode,
    identity: Option<crate::tls::Identity>,
    host_versions: Vec<u32>,
    client_name: String,
    image: String,
    require_digest: bool,
    /// How long a started container has to print its handshake.
    handshake_timeout: Duration,
    container: String,
    start: watch::Sender<Start>,
    stdout: Arc<tokio::sync::Mutex<Option<Writer>>>,
    stderr: Arc<tokio::sync::Mutex<Option<Writer>>>,
    /// Pods with a connection attempt in flight.
    connecting: Mutex<HashSet<String>>,
    /// Endpoints mode: ready addresses by pod name.
    endpoints: Mutex<BTreeMap<String, String>>,
    /// Latest pod objects.
    seen: Mutex<BTreeMap<String, Pod>>,
    /// Asks the watch loop to look at a pod again.
    retry: tokio::sync::mpsc::UnboundedSender<String>,
    /// Replica keys another host took over; not reconnected while they last.
    yielded: Mutex<HashSet<String>>,
    /// Containers whose first log line was checked before they became ready.
    checked: Mutex<HashSet<String>>,
    /// `ServiceDns`: the certificates of every replica whose handshake was read, since a
    /// connection through the Service name may reach any of them.
    pins: PinSet,
    /// `ServiceDns`: the replicas whose handshake was read (and certificate pinned), by pod.
    pinned: Mutex<HashMap<String, Pinned>>,
    /// `ServiceDns`: held while dialling the one connection through the Service.
    dial: tokio::sync::Mutex<()>,
}

/// `ServiceDns`: a replica whose handshake was read. Its log is forwarded whether or not
/// the one connection through the Service reaches it; dropping this stops that.
struct Pinned {
    /// The container (see `evaluate`): a new one prints a new handshake.
    key: String,
    logs: tokio::task::AbortHandle,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.logs.abort();
    }
}

/// How long one Kubernetes API call of a start's clean-up or of `kill` may take.
const API_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `kill` waits for the Deployment, the Service and every pod to be gone.
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);

/// How often a replica's connection is tried again after a failed attempt.
const CONNECT_RETRY_DELAY: Duration = Duration::from_millis(500);

/// How long after a replica's connection drops it is dialled again (if still ready).
const RECONNECT_DELAY: Duration = Duration::from_millis(300);

/// How often a starting pod's log is read for an invalid or missing handshake line.
const FIRST_LINE_POLL: Duration = Duration::from_millis(500);

/// How long one read of a pod's log may take (start checks, failure reports).
const LOG_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// At most how long a wait for the plugin's pods sleeps before looking again, if no
/// watch event comes first.
const POD_RECHECK: Duration = Duration::from_secs(1);

/// Runs a clean-up from a `Drop` on the current tokio runtime; outside one it cannot
/// run, and a warning names the Deployment left running.
fn spawn_cleanup(
    deployment: &str,
    why: &str,
    cleanup: impl std::future::Future<Output = ()> + Send + 'static,
) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(cleanup);
        }
        Err(_) => tracing::warn!(
            deployment,
            "{why} outside a tokio runtime; its Deployment is left running"
        ),
    }
}

/// Deletes Deployment `name` in the foreground within [`API_CALL_TIMEOUT`], whatever
/// the outcome (best effort: the start or the handle is gone).
async fn delete_quietly(api: Api<Deployment>, name: String) {
    let foreground = DeleteParams::foreground();
    let _ = tokio::time::timeout(API_CALL_TIMEOUT, api.delete(&name, &foreground)).await;
}
