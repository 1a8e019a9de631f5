//! A kubelet that runs pod containers as local processes.
//!
//! [`Kubelet::start`] registers a Node (Ready, Lease renewed) with a real apiserver and then
//! behaves like a kubelet plus a one-node scheduler:
//!
//! * **Scheduling**: pending pods of the `default-scheduler` whose `nodeSelector` and
//!   required node affinity match the node are bound through the `binding` subresource;
//!   the others get `PodScheduled=False` (`Unschedulable`).
//! * **Images**: [`KubeletConfig::images`] maps image references to local executables (the
//!   image's entrypoint). An unknown image gives `ErrImagePull`, then `ImagePullBackOff`.
//!   `imageID` is `sha256:<digest of the executable>`.
//! * **Containers**: every container is a process group in a per-pod directory (its cwd
//!   and `HOME`), with a clean environment: [`KubeletConfig::inherit_env`], `HOSTNAME`,
//!   `POD_IP`, `INTERCOM_LISTEN_ADDR=<pod IP>:<first TCP containerPort or 50077>`, then the
//!   pod's `envFrom`/`env` (`fieldRef`, `configMapKeyRef`, `secretKeyRef`, `$(VAR)`
//!   expansion), which win; an unspecified IP (`0.0.0.0:<port>`) in the resulting
//!   `INTERCOM_LISTEN_ADDR` becomes the pod IP, the pod's only address here (no per-pod
//!   loopback). `workingDir` and volume mounts are not applied (there is no mount
//!   namespace, so a mount path would be a host path): the per-pod directory is the cwd,
//!   private and writable, which is what a `workingDir` on an `emptyDir` gives a real pod.
//!   Without `command` the image's executable runs with `args`;
//!   with `command`, `command[0]` runs as given (a bare name is looked up in `PATH`).
//!   Init containers (and `restartPolicy: Always` sidecars) run first.
//! * **Networking**: each pod gets its own local IP, reported as `status.podIP`; `hostIP`
//!   is `127.0.0.1`. By default a loopback address (`127.a.b.x`, never `127.0.0.1`), which
//!   needs no privileges; but the apiserver rejects loopback addresses in EndpointSlices,
//!   so Services then have no endpoints. With [`KubeletConfig::pod_cidr`] (a range routed
//!   to this host, e.g. `ip route add local 10.213.0.0/16 dev lo`) EndpointSlices list the
//!   pods. There is no kube-proxy: Service ClusterIPs don't route, pod IPs do.
//! * **Status**: phase, conditions (`PodScheduled`, `PodReadyToStartContainers`,
//!   `Initialized`, `ContainersReady`, `Ready`), container states with exit codes and
//!   reasons, `restartCount`, `CrashLoopBackOff` (back-off from
//!   [`KubeletConfig::backoff_base`] doubling to [`KubeletConfig::backoff_max`]); startup,
//!   readiness and liveness probes (`tcpSocket`, `grpc`, `httpGet`, `exec`).
//! * **Deletion**: SIGTERM to the process group, SIGKILL after the grace period (capped by
//!   [`KubeletConfig::max_termination_grace`]), terminal phase, then the final delete with
//!   grace 0.
//! * **HTTPS API** (serving certificate signed by the cluster CA, client certificates from
//!   that CA required): `GET /containerLogs/{ns}/{pod}/{container}` (`follow`,
//!   `tailLines`, `sinceSeconds`, `sinceTime`, `timestamps`, `previous`, `limitBytes`,
//!   `stream`) and `/portForward/{ns}/{pod}` over WebSocket (`v4.channel.k8s.io`), which
//!   the apiserver passes through for clients such as kube-rs' `Api::portforward`.
//!
//! Unix only (process groups); per-pod loopback addresses need Linux's `127.0.0.0/8`.
#![cfg(unix)]

mod config;
mod container_env;
mod images;
mod ip;
mod logs;
mod node;
mod pods;
mod portforward;
mod probe;
mod process;
mod runtime;
mod scheduler;
mod server;
mod status;
mod tls;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use config::{KubeletConfig, PodCidr, PodCidrParseError};
pub use tls::TlsError;
pub use worker::DEFAULT_LISTEN_PORT;

use crate::control_plane::Pki;
use images::ImageStore;
use ip::IpPool;
pub(crate) use ip::random_u64;
use runtime::PodRuntime;

/// The variable telling a container where to listen (honoured by intercom's `serve`).
pub const LISTEN_ADDR_ENV: &str = "INTERCOM_LISTEN_ADDR";

/// Why a kubelet could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeletError {
    /// The serving certificate or TLS configuration could not be built.
    #[error("failed to set up the kubelet's TLS")]
    Tls(#[from] TlsError),
    /// The HTTPS listener could not be bound.
    #[error("failed to bind the kubelet HTTPS listener on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    /// The root directory for pod files could not be created.
    #[error("failed to create the kubelet root directory")]
    RootDir(#[source] std::io::Error),
    /// No address of [`KubeletConfig::pod_cidr`] can be bound: the range is not routed to
    /// this host.
    #[error(
        "failed to bind {probe} from pod CIDR {cidr}: route the range to this host, e.g. \
         `ip route add local {cidr} dev lo` (needs CAP_NET_ADMIN)"
    )]
    PodCidrNotLocal {
        /// The configured range.
        cidr: PodCidr,
        /// The address tried.
        probe: std::net::Ipv4Addr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// Creating the Node, its status or its Lease failed.
    #[error("failed to register node `{node}` with the apiserver")]
    RegisterNode {
        /// The node name.
        node: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// State shared by the kubelet's tasks.
pub(crate) struct Shared {
    pub(crate) client: kube::Client,
    pub(crate) config: KubeletConfig,
    pub(crate) node_name: String,
    pub(crate) node_labels: BTreeMap<String, String>,
    pub(crate) port: u16,
    pub(crate) boot_id: String,
    pub(crate) images: ImageStore,
    pub(crate) ips: IpPool,
    pub(crate) root: PathBuf,
    pods: Mutex<BTreeMap<(String, String), Arc<PodRuntime>>>,
    /// Set on drop: ends port-forward sessions.
    pub(crate) shutdown: watch::Sender<bool>,
    /// `(namespace, pod)` from [`Kubelet::cut_port_forwards`]: ends that pod's sessions.
    pub(crate) cut_port_forwards: tokio::sync::broadcast::Sender<(String, String)>,
    /// Port-forward sessions started so far, by `(namespace, pod)`.
    pub(crate) port_forward_sessions: Mutex<BTreeMap<(String, String), u64>>,
    /// Every container process group started, by namespace.
    started: Mutex<BTreeMap<String, Vec<i32>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node_name", &self.node_name)
            .field("port", &self.port)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn started(&self, namespace: &str, pgid: i32) {
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(namespace.to_owned())
            .or_default()
            .push(pgid);
    }

    pub(crate) fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodRuntime>> {
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    pub(crate) fn register(&self, rt: &Arc<PodRuntime>) {
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((rt.namespace.clone(), rt.name.clone()), rt.clone());
    }

    pub(crate) fn deregister(&self, rt: &PodRuntime) {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let key = (rt.namespace.clone(), rt.name.clone());
        if pods.get(&key).is_some_and(|p| p.uid == rt.uid) {
            pods.remove(&key);
        }
    }
}

/// A running kubelet. Dropping it kills every pod process and stops the server; the Node
/// object stays (as when a real kubelet dies) and turns NotReady once its Lease expires.
#[derive(Debug)]
pub struct Kubelet {
    shared: Arc<Shared>,
    /// Server, heartbeat, untaint, scheduler.
    tasks: JoinSet<()>,
    /// The pod dispatcher (owns the pod workers).
    pods: tokio::task::JoinHandle<()>,
    /// Pod directories and logs; removed on drop, after the processes are gone.
    _root: tempfile::TempDir,
}

impl Kubelet {
    /// Registers a node with the apiserver behind `client` and starts running its pods.
    ///
    /// `client` needs cluster-admin rights (nodes, leases, pods, pods/status,
    /// pods/binding, configmaps and secrets). `pki` is the cluster's: the kubelet's
    /// serving certificate is signed by its CA, and the apiserver's client certificate
    /// is verified against it.
    ///
    /// # Errors
    /// TLS material, the listener, the root directory or node registration failing.
    ///
    /// # Cancel safety
    /// Cancelling before it returns leaves at most a registered Node behind (no tasks or
    /// processes).
    #[tracing::instrument(skip_all, fields(node))]
    pub async fn start(
        client: kube::Client,
        pki: &Pki,
        config: KubeletConfig,
    ) -> Result<Self, KubeletError> {
        static NODES: AtomicU64 = AtomicU64::new(0);
        let node_name = config
            .node_name
            .clone()
            .unwrap_or_else(|| format!("envtest-node-{}", NODES.fetch_add(1, Ordering::Relaxed)));
        tracing::Span::current().record("node", node_name.as_str());
        if let Some(cidr) = config.pod_cidr {
            let probe = std::net::Ipv4Addr::from(*cidr.hosts().start());
            ip::is_local(probe).map_err(|source| KubeletError::PodCidrNotLocal {
                cidr,
                probe,
                source,
            })?;
        }
        let serving = pki
            .issue_serving_cert(
                &format!("{node_name}@kubelet"),
                &["127.0.0.1", "localhost", &node_name],
            )
            .map_err(TlsError::Issue)?;
        let tls = tls::server_config(&pki.ca_cert_pem, &serving.cert_pem, &serving.key_pem)?;
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(KubeletError::Bind)?;
        let port = listener.local_addr().map_err(KubeletError::Bind)?.port();
        let root = tempfile::Builder::new()
            .prefix("intercom-kubelet-")
            .tempdir()
            .map_err(KubeletError::RootDir)?;
        let shared = Arc::new(Shared {
            client,
            node_labels: node::labels(&node_name, &config.node_labels),
            images: ImageStore::new(&config.images),
            ips: IpPool::new(config.pod_cidr),
            config,
            node_name,
            port,
            boot_id: runtime::new_container_id()
                .trim_start_matches("intercom://")
                .to_owned(),
            root: root.path().to_owned(),
            pods: Mutex::new(BTreeMap::new()),
            shutdown: watch::Sender::new(false),
            cut_port_forwards: tokio::sync::broadcast::Sender::new(16),
            port_forward_sessions: Mutex::new(BTreeMap::new()),
            started: Mutex::new(BTreeMap::new()),
        });
        let since = jiff::Timestamp::now();
        let node = node::register(&shared).await?;
        let mut tasks = JoinSet::new();
        tasks.spawn(server::serve(
            listener,
            TlsAcceptor::from(Arc::new(tls)),
            shared.clone(),
        ));
        tasks.spawn(node::heartbeat(shared.clone(), node, since));
        tasks.spawn(node::untaint(shared.clone()));
        tasks.spawn(scheduler::run(shared.clone()));
        let pods = tokio::spawn(pods::run(shared.clone()));
        tracing::info!(node = %shared.node_name, port, "kubelet started");
        Ok(Self {
            shared,
            tasks,
            pods,
            _root: root,
        })
    }

    /// The Node's name.
    pub fn node_name(&self) -> &str {
        &self.shared.node_name
    }

    /// The port of the kubelet's HTTPS API on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// Maps one more image reference to an executable; pods in `ImagePullBackOff` pick it
    /// up at their next pull attempt.
    pub fn insert_image(&self, reference: &str, executable: impl Into<PathBuf>) {
        self.shared.images.insert(reference, executable.into());
    }

    /// Ends every open port-forward session to pod `namespace/name` at once, as a network
    /// failure between the apiserver and the node would; the pod keeps running and new
    /// sessions are not affected.
    pub fn cut_port_forwards(&self, namespace: &str, name: &str) {
        // Err: no session is open, nothing to cut.
        let _ = self
            .shared
            .cut_port_forwards
            .send((namespace.to_owned(), name.to_owned()));
    }

    /// How many port-forward sessions to pod `namespace/name` were opened so far.
    pub fn port_forward_sessions(&self, namespace: &str, name: &str) -> u64 {
        self.shared
            .port_forward_sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), name.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Every container process (group leader) this kubelet started for pods of
    /// `namespace`, running or not: a test checks that none is left.
    pub fn started_processes(&self, namespace: &str) -> Vec<u32> {
        self.shared
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .into_iter()
            .flatten()
            .filter_map(|&pid| u32::try_from(pid).ok())
            .collect()
    }

    /// Pids of the running container processes (each the leader of its process group)
    /// of pod `namespace/name`, by container name.
    pub fn pids(&self, namespace: &str, name: &str) -> BTreeMap<String, u32> {
        let Some(rt) = self.shared.pod(namespace, name) else {
            return BTreeMap::new();
        };
        rt.all()
            .filter_map(|c| {
                let pgid = c.lock().pgid?;
                Some((c.name.clone(), u32::try_from(pgid).ok()?))
            })
            .collect()
    }
}

impl Kubelet {
    /// Stops the kubelet: kills every container process (SIGTERM, then SIGKILL without
    /// grace), waits until they are reaped, then stops the server and the node tasks. Pods
    /// stay in the API, as when a real node goes down.
    ///
    /// # Cancel safety
    /// Dropping the future falls back to [`Drop`]: processes are SIGKILLed, reaping is left
    /// to the runtime.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        if let Err(error) = (&mut self.pods).await
            && error.is_panic()
        {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "pod dispatcher panicked"
            );
        }
        self.tasks.shutdown().await;
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        let pods: Vec<Arc<PodRuntime>> = self
            .shared
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for pod in pods {
            pod.kill_now();
        }
        self.pods.abort();
        self.tasks.abort_all();
    }
}
