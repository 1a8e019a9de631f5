//! A real Kubernetes control plane on `127.0.0.1`: etcd, kube-apiserver and
//! kube-controller-manager, each a child process, with their own PKI in a temporary directory.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use intercom_envtest::control_plane::ControlPlane;
//! use k8s_openapi::api::core::v1::Namespace;
//! use kube::api::{Api, ListParams};
//!
//! let cp = ControlPlane::start().await?;
//! let namespaces: Api<Namespace> = Api::all(cp.client());
//! assert!(!namespaces.list(&ListParams::default()).await?.items.is_empty());
//! drop(cp); // kills all three processes and removes the directory
//! # Ok(()) }
//! ```
//!
//! What runs:
//! - **etcd** on two free ports (client and peer), data in the temporary directory, without
//!   fsync.
//! - **kube-apiserver** on a free port with RBAC authorization, client certificates from
//!   [`Pki`] (`--client-ca-file`), service-account tokens signed by its own key pair, Services in
//!   [`SERVICE_CLUSTER_IP_RANGE`], and a kubelet client certificate for logs/exec/port-forward.
//! - **kube-controller-manager** with the controllers in [`CONTROLLERS`], each under its own
//!   service account, and no serving port.
//!
//! Every component writes its stdout and stderr to `<component>.log` in
//! [`ControlPlane::dir`]; start-up errors carry the last lines of the failing one.

mod kubeconfig;
mod pki;
pub(crate) mod process;

use std::error::Error as StdError;
use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use tempfile::TempDir;
use tokio::time::Instant;

use crate::binaries::{Binaries, BinariesError};
use crate::kubelet::PodCidr;
pub use pki::{IssuedCert, Pki};
use process::Process;

/// How long [`ControlPlane::start`] waits for the whole control plane by default.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// The default Service ClusterIP range (`--service-cluster-ip-range`); the `kubernetes`
/// Service gets its first address, `10.0.0.1`. See [`ControlPlaneBuilder::service_cidr`].
pub const SERVICE_CLUSTER_IP_RANGE: &str = "10.0.0.0/24";

const DEFAULT_SERVICE_CIDR: PodCidr = match PodCidr::new(Ipv4Addr::new(10, 0, 0, 0), 24) {
    Some(cidr) => cidr,
    None => panic!("10.0.0.0/24 is a valid range"),
};

/// The controllers kube-controller-manager runs (`--controllers`, canonical v1.35 names).
///
/// Left out on purpose: node-lifecycle and taint-eviction (they would evict pods from a test
/// kubelet that pauses), node-ipam, the persistent-volume controllers, certificate signing,
/// bootstrap tokens, resource quota and autoscaling.
pub const CONTROLLERS: &[&str] = &[
    "clusterrole-aggregation-controller",
    "cronjob-controller",
    "daemonset-controller",
    "deployment-controller",
    "disruption-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "garbage-collector-controller",
    "job-controller",
    "namespace-controller",
    "pod-garbage-collector-controller",
    "replicaset-controller",
    "replicationcontroller-controller",
    "root-ca-certificate-publisher-controller",
    "service-cidr-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "statefulset-controller",
    "ttl-after-finished-controller",
];

/// How often start-up checks whether a component has exited.
const EXIT_POLL: Duration = Duration::from_millis(100);
/// Upper bound of one readiness request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

type BoxError = Box<dyn StdError + Send + Sync>;

/// One program of the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Component {
    /// etcd.
    Etcd,
    /// kube-apiserver.
    KubeApiserver,
    /// kube-controller-manager.
    KubeControllerManager,
    /// containerd (the real node's container runtime).
    Containerd,
    /// The real node's kubelet.
    Kubelet,
    /// kube-scheduler (the real node's scheduler).
    KubeScheduler,
    /// kube-proxy (the real node's Service proxy).
    KubeProxy,
    /// CoreDNS (the real node's cluster DNS).
    CoreDns,
}

impl Component {
    /// The program name, e.g. `kube-apiserver`.
    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::Containerd => "containerd",
            Component::Kubelet => "kubelet",
            Component::KubeScheduler => "kube-scheduler",
            Component::KubeProxy => "kube-proxy",
            Component::CoreDns => "coredns",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of [`ControlPlane`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlPlaneError {
    /// The etcd / kube-apiserver / kube-controller-manager binaries were not found.
    #[error("failed to find the control-plane binaries")]
    Binaries(#[from] BinariesError),
    /// The temporary directory could not be created.
    #[error("failed to create the control plane's temporary directory")]
    TempDir(#[source] std::io::Error),
    /// No free port could be reserved on 127.0.0.1.
    #[error("failed to reserve a free port on 127.0.0.1")]
    Ports(#[source] std::io::Error),
    /// A key or certificate could not be generated.
    #[error("failed to issue the certificate for `{subject}`")]
    Certificates {
        /// The certificate's common name (or the key's purpose).
        subject: String,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// A file in the temporary directory could not be written.
    #[error("failed to write {path:?}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The written kubeconfig could not be loaded.
    #[error("failed to load the kubeconfig {path:?}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A component could not be started.
    #[error("failed to start {component} from {path:?}")]
    Spawn {
        /// The component.
        component: Component,
        /// Its binary.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A component exited during start-up.
    #[error("{component} exited during start-up ({status}); last lines of {log:?}:\n{log_tail}")]
    Exited {
        /// The component.
        component: Component,
        /// How it exited.
        status: ExitStatus,
        /// Its log file (gone once the start failed, as it lives in the temporary directory).
        log: PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A component did not become ready in time.
    #[error(
        "{component} was not ready after {waited:?} (raise it with \
         `ControlPlaneBuilder::start_timeout`); last lines of {log:?}:\n{log_tail}"
    )]
    NotReady {
        /// The component whose readiness was awaited.
        component: Component,
        /// Time since the start began.
        waited: Duration,
        /// Its log file (gone once the start failed, as it lives in the temporary directory).
        log: PathBuf,
        /// The last lines of its log.
        log_tail: String,
        /// The last failure of the readiness check, if any.
        #[source]
        last_error: Option<BoxError>,
    },
    /// A Kubernetes client could not be built.
    #[error("failed to build a Kubernetes client")]
    Kube(#[source] kube::Error),
    /// The token for [`ControlPlane::client_for_token`] cannot be sent as a header.
    #[error("failed to use the bearer token: it is not a valid HTTP header value")]
    InvalidToken(#[source] http::header::InvalidHeaderValue),
}

impl ControlPlaneError {
    /// Whether a component failed because another process took its port between our
    /// reservation and its bind.
    fn is_port_conflict(&self) -> bool {
        matches!(self, ControlPlaneError::Exited { log_tail, .. }
            if log_tail.contains("address already in use"))
    }
}

/// Configures and starts a [`ControlPlane`].
#[derive(Debug)]
#[must_use]
pub struct ControlPlaneBuilder {
    binaries: Option<Binaries>,
    start_timeout: Duration,
    service_cidr: Option<PodCidr>,
    node_lifecycle: bool,
    advertise_address: Option<Ipv4Addr>,
}

impl Default for ControlPlaneBuilder {
    fn default() -> Self {
        ControlPlaneBuilder {
            binaries: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            service_cidr: None,
            node_lifecycle: false,
            advertise_address: None,
        }
    }
}

impl ControlPlaneBuilder {
    /// Uses these binaries instead of [`Binaries::find`].
    pub fn binaries(mut self, binaries: Binaries) -> Self {
        self.binaries = Some(binaries);
        self
    }

    /// Bounds the whole start (default [`DEFAULT_START_TIMEOUT`]).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// The Service ClusterIP range (default [`SERVICE_CLUSTER_IP_RANGE`]); the `kubernetes`
    /// Service gets its first address. A range routed to this host lets a
    /// [`ServiceProxy`](crate::service_proxy::ServiceProxy) serve the ClusterIPs.
    pub fn service_cidr(mut self, cidr: PodCidr) -> Self {
        self.service_cidr = Some(cidr);
        self
    }

    /// Also runs `node-lifecycle-controller`, as a cluster of real kubelets does (it lifts
    /// the `not-ready` taint a kubelet registers with, and taints nodes that stop
    /// reporting). Off by default: the process kubelet manages its own taints.
    pub fn node_lifecycle(mut self, on: bool) -> Self {
        self.node_lifecycle = on;
        self
    }

    /// Makes the apiserver reachable from pods at `address`, an address of this network
    /// namespace (a real node's IP): it binds all addresses (`--bind-address=0.0.0.0`)
    /// instead of 127.0.0.1, advertises `address`, runs the `lease` endpoint reconciler so
    /// that the `kubernetes` Service gets the endpoint `<address>:<port>`, and its serving
    /// certificate names `address` too. [`ControlPlane::server_url`] and the kubeconfigs
    /// keep using 127.0.0.1.
    ///
    /// Off by default: the apiserver listens on 127.0.0.1 only and the `kubernetes`
    /// Service has no endpoints (Endpoints validation rejects loopback addresses). Binding
    /// all addresses exposes the apiserver on every interface of the network namespace, so
    /// use it inside a private one (as `real-node-ns.sh` makes).
    pub fn advertise_address(mut self, address: Ipv4Addr) -> Self {
        self.advertise_address = Some(address);
        self
    }

    /// Starts the control plane; see [`ControlPlane::start`].
    ///
    /// # Errors
    ///
    /// See [`ControlPlane::start`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future kills every process started so far and removes the
    /// temporary directory.
    #[tracing::instrument(name = "control_plane_start", skip_all)]
    pub async fn start(self) -> Result<ControlPlane, ControlPlaneError> {
        let binaries = match self.binaries {
            Some(binaries) => binaries,
            None => Binaries::find()?,
        };
        let deadline = Instant::now() + self.start_timeout;
        let service_cidr = self.service_cidr.unwrap_or(DEFAULT_SERVICE_CIDR);
        let mut controllers = CONTROLLERS.to_vec();
        if self.node_lifecycle {
            controllers.push("node-lifecycle-controller");
        }
        let settings = Settings {
            deadline,
            service_cidr,
            controllers: &controllers,
            advertise_address: self.advertise_address,
        };
        match start_once(&binaries, &settings).await {
            Err(err) if err.is_port_conflict() => {
                tracing::warn!(
                    error = &err as &dyn StdError,
                    "port taken during start-up; retrying with new ports"
                );
                start_once(&binaries, &settings).await
            }
            result => result,
        }
    }
}

/// A running control plane; dropping it stops every process and removes its directory.
pub struct ControlPlane {
    /// etcd, kube-apiserver, kube-controller-manager, in start order.
    processes: Vec<Process>,
    server_url: String,
    kubeconfig: PathBuf,
    config: kube::Config,
    pki: Pki,
    startup: Duration,
    /// `None` only inside `Drop`.
    dir: Option<TempDir>,
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server_url", &self.server_url)
            .field("dir", &self.dir.as_ref().map(TempDir::path))
            .field("processes", &self.processes)
            .field("startup", &self.startup)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager from [`Binaries::find`] on free
    /// ports of 127.0.0.1, and resolves once the apiserver is ready (`/readyz`), and namespace
    /// `default` and its ServiceAccount `default` exist (which proves the controllers run).
    ///
    /// Bounded by [`DEFAULT_START_TIMEOUT`]; use [`ControlPlane::builder`] to change it. If a
    /// component loses its port to another process between reservation and bind, the whole
    /// start is retried once with new ports.
    ///
    /// # Caveats
    ///
    /// There is no kubelet and no scheduler: pods stay `Pending` unless something binds them to
    /// a node (see the `kubelet` module).
    ///
    /// # Errors
    ///
    /// [`ControlPlaneError::Binaries`] if the binaries are missing, [`ControlPlaneError::Exited`]
    /// if a component dies, [`ControlPlaneError::NotReady`] on timeout (both with the end of the
    /// component's log), and the I/O and certificate variants for local failures.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future kills every process started so far and removes the
    /// temporary directory.
    pub async fn start() -> Result<ControlPlane, ControlPlaneError> {
        ControlPlane::builder().start().await
    }

    /// Like [`ControlPlane::start`], with the given binaries.
    ///
    /// # Errors
    ///
    /// See [`ControlPlane::start`].
    ///
    /// # Cancel safety
    ///
    /// See [`ControlPlane::start`].
    pub async fn start_with(binaries: Binaries) -> Result<ControlPlane, ControlPlaneError> {
        ControlPlane::builder().binaries(binaries).start().await
    }

    /// A builder to set the binaries and the start-up timeout.
    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder::default()
    }

    /// A client authenticated as `admin` in group `system:masters` (may do anything).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (the client spawns its connection task).
    pub fn client(&self) -> Client {
        Client::try_from(self.config.clone())
            .expect("the admin configuration already produced a client during start-up")
    }

    /// A client that authenticates with the bearer `token` only, e.g. a ServiceAccount token
    /// from the TokenRequest API, to test what RBAC lets that account do.
    ///
    /// # Errors
    ///
    /// [`ControlPlaneError::InvalidToken`] if the token contains bytes not allowed in an HTTP
    /// header, [`ControlPlaneError::Kube`] if the client cannot be built.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (the client spawns its connection task).
    pub fn client_for_token(&self, token: &str) -> Result<Client, ControlPlaneError> {
        let mut value = http::HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(ControlPlaneError::InvalidToken)?;
        value.set_sensitive(true);
        let mut config = self.config.clone();
        config.auth_info = kube::config::AuthInfo::default();
        config.headers.push((http::header::AUTHORIZATION, value));
        Client::try_from(config).map_err(ControlPlaneError::Kube)
    }

    /// The admin client configuration, to derive clients with other settings.
    pub fn kube_config(&self) -> kube::Config {
        self.config.clone()
    }

    /// The admin kubeconfig file (self-contained; usable with `kubectl --kubeconfig`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The apiserver's URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The cluster CA and certificate files.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The temporary directory holding data, certificates, kubeconfigs and logs.
    pub fn dir(&self) -> &Path {
        match &self.dir {
            Some(dir) => dir.path(),
            None => Path::new(""),
        }
    }

    /// The process id of `component`, or `None` if it has exited.
    pub fn pid(&self, component: Component) -> Option<u32> {
        self.process(component).map(Process::pid)
    }

    /// The log file of `component` (its stdout and stderr).
    pub fn log_file(&self, component: Component) -> Option<&Path> {
        self.process(component).map(Process::log)
    }

    /// How long [`ControlPlane::start`] took, from reserving ports to ready.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Stops every component (SIGKILL to each process group, then reaps it) and removes the
    /// temporary directory. The same happens on drop.
    pub fn stop(self) {
        drop(self);
    }

    fn process(&self, component: Component) -> Option<&Process> {
        self.processes.iter().find(|p| p.component() == component)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Reverse start order: nobody logs errors about a vanished dependency.
        for process in self.processes.iter_mut().rev() {
            process.kill();
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            if let Err(error) = dir.close() {
                tracing::warn!(
                    error = &error as &dyn StdError,
                    dir = ?path,
                    "failed to remove the control plane's directory"
                );
            }
        }
    }
}

/// Free ports of one start attempt.
#[derive(Debug, Clone, Copy)]
struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
}

impl Ports {
    /// Binds three ephemeral ports at once (so they differ), then releases them.
    fn reserve() -> Result<Ports, ControlPlaneError> {
        let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(ControlPlaneError::Ports);
        let listeners = [bind()?, bind()?, bind()?];
        let port = |i: usize| -> Result<u16, ControlPlaneError> {
            let listener = listeners.get(i).ok_or_else(|| {
                ControlPlaneError::Ports(std::io::Error::other("listener index out of range"))
            })?;
            Ok(listener
                .local_addr()
                .map_err(ControlPlaneError::Ports)?
                .port())
        };
        Ok(Ports {
            etcd_client: port(0)?,
            etcd_peer: port(1)?,
            apiserver: port(2)?,
        })
    }
}

/// What one start attempt needs besides the binaries.
struct Settings<'a> {
    deadline: Instant,
    service_cidr: PodCidr,
    controllers: &'a [&'a str],
    /// See [`ControlPlaneBuilder::advertise_address`].
    advertise_address: Option<Ipv4Addr>,
}

async fn start_once(
    binaries: &Binaries,
    settings: &Settings<'_>,
) -> Result<ControlPlane, ControlPlaneError> {
    let Settings {
        deadline,
        service_cidr,
        controllers,
        advertise_address,
    } = *settings;
    let started = Instant::now();
    // Declared first so that it is dropped last, after every process is killed.
    let dir = tempfile::Builder::new()
        .prefix("intercom-envtest-")
        .tempdir()
        .map_err(ControlPlaneError::TempDir)?;
    let root = dir.path().to_owned();
    let ports = Ports::reserve()?;
    let kubernetes_ip = std::net::Ipv4Addr::from(*service_cidr.hosts().start()).to_string();
    let advertised = advertise_address.map(|ip| ip.to_string());
    let extra_ips: Vec<&str> = [Some(kubernetes_ip.as_str()), advertised.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let (pki, material) = Pki::generate(&root.join("pki"), &extra_ips)?;

    let server_url = format!("https://127.0.0.1:{}", ports.apiserver);
    let kubeconfig = root.join("admin.kubeconfig");
    pki::write(
        &kubeconfig,
        &kubeconfig::render(&server_url, &pki.ca_cert_pem, "admin", &material.admin),
    )?;
    let kcm_kubeconfig = root.join("kube-controller-manager.kubeconfig");
    pki::write(
        &kcm_kubeconfig,
        &kubeconfig::render(
            &server_url,
            &pki.ca_cert_pem,
            "system:kube-controller-manager",
            &material.controller_manager,
        ),
    )?;
    let config = load_config(&kubeconfig).await?;
    let client = Client::try_from(config.clone()).map_err(ControlPlaneError::Kube)?;

    let mut processes = Vec::with_capacity(3);
    let mut last_error = None;

    processes.push(
        Process::spawn(
            Component::Etcd,
            &binaries.etcd,
            etcd_args(&root, ports),
            &root,
            root.join("etcd.log"),
        )
        .await?,
    );
    let etcd_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, ports.etcd_client));
    let outcome = wait_for(
        &mut processes,
        deadline,
        tcp_accepts(etcd_addr, &mut last_error),
    )
    .await;
    settle(
        outcome,
        &processes,
        Component::Etcd,
        started,
        last_error.take(),
    )?;
    tracing::debug!(elapsed = ?started.elapsed(), "etcd accepts connections");

    processes.push(
        Process::spawn(
            Component::KubeApiserver,
            &binaries.kube_apiserver,
            apiserver_args(&root, ports, &pki, &material, service_cidr)
                .into_iter()
                .chain(listen_args(advertise_address))
                .collect(),
            &root,
            root.join("kube-apiserver.log"),
        )
        .await?,
    );
    let outcome = wait_for(&mut processes, deadline, readyz(&client, &mut last_error)).await;
    settle(
        outcome,
        &processes,
        Component::KubeApiserver,
        started,
        last_error.take(),
    )?;
    tracing::debug!(elapsed = ?started.elapsed(), "kube-apiserver ready");

    processes.push(
        Process::spawn(
            Component::KubeControllerManager,
            &binaries.kube_controller_manager,
            controller_manager_args(&root, controllers, &kcm_kubeconfig, &pki, &material),
            &root,
            root.join("kube-controller-manager.log"),
        )
        .await?,
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let outcome = wait_for(
        &mut processes,
        deadline,
        exists(namespaces, "default", &mut last_error),
    )
    .await;
    settle(
        outcome,
        &processes,
        Component::KubeApiserver,
        started,
        last_error.take(),
    )?;
    let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let outcome = wait_for(
        &mut processes,
        deadline,
        exists(service_accounts, "default", &mut last_error),
    )
    .await;
    settle(
        outcome,
        &processes,
        Component::KubeControllerManager,
        started,
        last_error.take(),
    )?;

    let startup = started.elapsed();
    tracing::info!(server = %server_url, dir = ?root, ?startup, "control plane ready");
    Ok(ControlPlane {
        processes,
        server_url,
        kubeconfig,
        config,
        pki,
        startup,
        dir: Some(dir),
    })
}

async fn load_config(path: &Path) -> Result<kube::Config, ControlPlaneError> {
    let err = |source| ControlPlaneError::Kubeconfig {
        path: path.to_owned(),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(err)?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(err)
}

/// `--name=value` with a path value, without a lossy UTF-8 round trip.
fn flag(name: &str, path: &Path) -> OsString {
    let mut arg = OsString::from(name);
    arg.push("=");
    arg.push(path);
    arg
}

fn etcd_args(root: &Path, ports: Ports) -> Vec<OsString> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        "--name=envtest".into(),
        flag("--data-dir", &root.join("etcd")),
        format!("--listen-client-urls={client}").into(),
        format!("--advertise-client-urls={client}").into(),
        format!("--listen-peer-urls={peer}").into(),
        format!("--initial-advertise-peer-urls={peer}").into(),
        format!("--initial-cluster=envtest={peer}").into(),
        "--initial-cluster-state=new".into(),
        "--unsafe-no-fsync=true".into(),
    ]
}

fn apiserver_args(
    root: &Path,
    ports: Ports,
    pki: &Pki,
    material: &pki::Material,
    service_cidr: PodCidr,
) -> Vec<OsString> {
    vec![
        format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client).into(),
        format!("--secure-port={}", ports.apiserver).into(),
        flag("--cert-dir", &root.join("apiserver-certs")),
        flag("--tls-cert-file", &material.apiserver_cert_path),
        flag("--tls-private-key-file", &material.apiserver_key_path),
        flag("--client-ca-file", &pki.ca_cert_path),
        "--authorization-mode=RBAC".into(),
        format!("--service-account-issuer={}", pki::SERVICE_ACCOUNT_ISSUER).into(),
        flag(
            "--service-account-key-file",
            &material.service_account_pub_path,
        ),
        flag(
            "--service-account-signing-key-file",
            &material.service_account_key_path,
        ),
        format!("--service-cluster-ip-range={service_cidr}").into(),
        "--allow-privileged=true".into(),
        flag(
            "--kubelet-client-certificate",
            &pki.apiserver_kubelet_client_cert_path,
        ),
        flag(
            "--kubelet-client-key",
            &pki.apiserver_kubelet_client_key_path,
        ),
        flag("--kubelet-certificate-authority", &pki.ca_cert_path),
        "--kubelet-preferred-address-types=InternalIP".into(),
        "--enable-priority-and-fairness=false".into(),
        "--profiling=false".into(),
        // As on clusters that harden owner references (OpenShift, many managed ones): an
        // ownerReference with blockOwnerDeletion needs `update` on the owner's finalizers.
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
    ]
}

/// Where the apiserver listens and what it advertises; see
/// [`ControlPlaneBuilder::advertise_address`].
fn listen_args(advertise_address: Option<Ipv4Addr>) -> Vec<OsString> {
    match advertise_address {
        Some(address) => vec![
            "--bind-address=0.0.0.0".into(),
            format!("--advertise-address={address}").into(),
            "--endpoint-reconciler-type=lease".into(),
        ],
        None => vec![
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            // The `kubernetes` Service cannot get endpoints: its address would be
            // 127.0.0.1, which Endpoints validation rejects (the lease reconciler logs that
            // every 10 s).
            "--endpoint-reconciler-type=none".into(),
        ],
    }
}

fn controller_manager_args(
    root: &Path,
    controllers: &[&str],
    kubeconfig: &Path,
    pki: &Pki,
    material: &pki::Material,
) -> Vec<OsString> {
    vec![
        flag("--kubeconfig", kubeconfig),
        format!("--controllers={}", controllers.join(",")).into(),
        "--leader-elect=false".into(),
        "--secure-port=0".into(),
        flag(
            "--service-account-private-key-file",
            &material.service_account_key_path,
        ),
        flag("--root-ca-file", &pki.ca_cert_path),
        "--use-service-account-credentials=true".into(),
        "--allocate-node-cidrs=false".into(),
        "--profiling=false".into(),
        // Otherwise it creates /usr/libexec/kubernetes/kubelet-plugins/volume/exec on the
        // machine.
        flag("--flex-volume-plugin-dir", &root.join("flexvolume")),
    ]
}

/// How a bounded wait ended.
enum Outcome {
    Ready,
    TimedOut,
    Exited(ControlPlaneError),
}

/// Runs `ready` until it completes, the deadline passes or any component exits.
async fn wait_for(
    processes: &mut [Process],
    deadline: Instant,
    ready: impl Future<Output = ()>,
) -> Outcome {
    tokio::select! {
        biased;
        err = first_exit(processes) => Outcome::Exited(err),
        result = tokio::time::timeout_at(deadline, ready) => match result {
            Ok(()) => Outcome::Ready,
            Err(_) => Outcome::TimedOut,
        },
    }
}

/// Turns an [`Outcome`] into a result, blaming `component` on timeout.
fn settle(
    outcome: Outcome,
    processes: &[Process],
    component: Component,
    started: Instant,
    last_error: Option<BoxError>,
) -> Result<(), ControlPlaneError> {
    match outcome {
        Outcome::Ready => Ok(()),
        Outcome::Exited(err) => Err(err),
        Outcome::TimedOut => {
            let process = processes.iter().find(|p| p.component() == component);
            Err(ControlPlaneError::NotReady {
                component,
                waited: started.elapsed(),
                log: process.map(|p| p.log().to_owned()).unwrap_or_default(),
                log_tail: process.map(Process::log_tail).unwrap_or_default(),
                last_error,
            })
        }
    }
}

async fn first_exit(processes: &mut [Process]) -> ControlPlaneError {
    loop {
        for process in processes.iter_mut() {
            if let Some(err) = process.exited() {
                return err;
            }
        }
        tokio::time::sleep(EXIT_POLL).await;
    }
}

/// Completes once `addr` accepts a TCP connection.
async fn tcp_accepts(addr: SocketAddr, last_error: &mut Option<BoxError>) {
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return,
            Err(err) => *last_error = Some(Box::new(err)),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Completes once the apiserver answers `/readyz` with success.
async fn readyz(client: &Client, last_error: &mut Option<BoxError>) {
    loop {
        let request = http::Request::get("/readyz?verbose")
            .body(Vec::new())
            .expect("a constant path and an empty body form a valid request");
        match tokio::time::timeout(PROBE_TIMEOUT, client.request_text(request)).await {
            Ok(Ok(_)) => return,
            Ok(Err(err)) => *last_error = Some(Box::new(err)),
            Err(elapsed) => *last_error = Some(Box::new(elapsed)),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Completes once the object `name` exists (watched, re-watched after errors).
async fn exists<K>(api: Api<K>, name: &str, last_error: &mut Option<BoxError>)
where
    K: kube::Resource
        + Clone
        + fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned
        + Send
        + 'static,
{
    loop {
        let present = |object: Option<&K>| object.is_some();
        match kube::runtime::wait::await_condition(api.clone(), name, present).await {
            Ok(_) => return,
            Err(err) => *last_error = Some(Box::new(err)),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_differ() {
        let ports = Ports::reserve().expect("ports");
        assert_ne!(ports.etcd_client, ports.etcd_peer);
        assert_ne!(ports.etcd_client, ports.apiserver);
        assert_ne!(ports.etcd_peer, ports.apiserver);
    }

    #[test]
    fn port_conflict_is_recognised() {
        let err = ControlPlaneError::Exited {
            component: Component::KubeApiserver,
            status: std::os::unix::process::ExitStatusExt::from_raw(256),
            log: PathBuf::from("kube-apiserver.log"),
            log_tail: "failed to listen on 127.0.0.1:1234: listen tcp 127.0.0.1:1234: bind: \
                       address already in use"
                .to_owned(),
        };
        assert!(err.is_port_conflict());
        assert!(
            err.to_string()
                .starts_with("kube-apiserver exited during start-up"),
            "{err}"
        );
    }

    #[test]
    fn the_apiserver_listens_on_loopback_unless_it_advertises_an_address() {
        let text = |args: Vec<OsString>| -> Vec<String> {
            args.into_iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            text(listen_args(None)),
            [
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none"
            ]
        );
        assert_eq!(
            text(listen_args(Some(Ipv4Addr::new(10, 215, 0, 2)))),
            [
                "--bind-address=0.0.0.0",
                "--advertise-address=10.215.0.2",
                "--endpoint-reconciler-type=lease"
            ]
        );
    }

    #[test]
    fn flag_joins_name_and_path() {
        assert_eq!(
            flag("--data-dir", Path::new("/tmp/x")),
            OsString::from("--data-dir=/tmp/x")
        );
    }
}
