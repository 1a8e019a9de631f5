//! A real Kubernetes node for an [`Env`](crate::Env): containerd 1.6 with runc and the CNI
//! bridge, kubelet, kube-scheduler, kube-proxy (iptables) and CoreDNS, against the
//! control plane the `Env` already runs.
//!
//! It only starts inside the private namespaces `intercom-envtest/real-node-ns.sh` creates
//! (checked: no interface of the machine in sight, kubelet's sysctls and fixed paths
//! masked) and runs as root; one node runs at a time in a namespace (a lock on its
//! `/run`), and the script lets one such namespace run at a time on a machine (cgroup v1
//! is machine-wide). Images come from local executables: each
//! [`EnvBuilder::image`](crate::EnvBuilder::image) entry becomes an OCI image built by
//! `intercom-build`'s image builder (the executable plus the shared libraries it needs)
//! and imported into containerd, so pods use them with any pull policy and never reach a
//! registry.
//!
//! The apiserver is reachable from pods: an [`Env`](crate::Env) with a real node makes it
//! listen on all addresses of the private network namespace and advertise the node IP
//! ([`ControlPlaneBuilder::advertise_address`](crate::control_plane::ControlPlaneBuilder::advertise_address)),
//! so the `kubernetes` Service has the endpoint `<node IP>:<apiserver port>`, which
//! kube-proxy serves at `kubernetes.default.svc:443`, and in-cluster clients
//! (ServiceAccount token, `KUBERNETES_SERVICE_HOST`) work in pods.
//!
//! Dropping it kills every container and shim, unmounts what containerd and kubelet
//! mounted, removes the pods' cgroups and then the directory.

mod addons;
mod containerd;
mod host;
mod images;
mod kubelet;
mod teardown;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use tokio::time::Instant;

use crate::binaries::{BinariesError, NodeBinaries};
use crate::control_plane::process::Process;
use crate::control_plane::{Component, ControlPlane, ControlPlaneError};
use crate::kubelet::PodCidr;

pub use images::PAUSE_IMAGE;

/// The variable naming the node's IP (an address of the private network namespace;
/// `real-node-ns.sh` sets it).
pub const NODE_IP_ENV: &str = "INTERCOM_ENVTEST_NODE_IP";
/// The node's name.
pub const NODE_NAME: &str = "intercom-envtest-node";
/// The pod range when none is given: 10.213.0.0/16.
pub const DEFAULT_POD_CIDR: PodCidr = match PodCidr::new(Ipv4Addr::new(10, 213, 0, 0), 16) {
    Some(cidr) => cidr,
    None => panic!("10.213.0.0/16 is a valid range"),
};
/// How long the whole node start may take.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Where the node's directory is made.
const RUN_DIR: &str = "/run";
/// The lock that keeps a second node off this machine's cgroups while one runs.
const LOCK_FILE: &str = "/run/intercom-envtest-real-node.lock";

/// Why a real node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RealNodeError {
    /// Not root, or not inside the namespaces of `real-node-ns.sh`.
    #[error(
        "the real node runs only as root inside the private namespaces {script} creates: {what}; run the tests as `{script} cargo test ...`"
    )]
    NotIsolated {
        /// What is missing.
        what: String,
        /// The script that creates the namespaces.
        script: &'static str,
    },
    /// [`NODE_IP_ENV`] is not an address of this network namespace.
    #[error("the node IP {ip} is not an address of this network namespace ({NODE_IP_ENV})")]
    NodeIp {
        /// The address.
        ip: Ipv4Addr,
        /// Why binding it failed.
        #[source]
        source: std::io::Error,
    },
    /// [`NODE_IP_ENV`] does not parse.
    #[error("{NODE_IP_ENV}={value:?} is not an IPv4 address")]
    NodeIpParse {
        /// The value found.
        value: String,
    },
    /// kubelet, kube-scheduler, kube-proxy or coredns is missing.
    #[error("failed to find the real node's binaries")]
    Binaries(#[from] BinariesError),
    /// containerd, ctr or runc is missing.
    #[error(
        "`{tool}` is not installed; the real node needs Debian's containerd, runc, containernetworking-plugins and iptables (scripts/setup-real-node.sh installs them)"
    )]
    MissingTool {
        /// The program looked for.
        tool: &'static str,
    },
    /// A file could not be read, written or run.
    #[error("failed to {what} {path:?}")]
    Io {
        /// What was done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A component failed to start (spawn, early exit, certificates).
    #[error(transparent)]
    Process(#[from] ControlPlaneError),
    /// A component did not become ready before the start timeout.
    #[error(
        "{component} was not ready within {START_TIMEOUT:?}; last lines of its log:\n{log_tail}"
    )]
    NotReady {
        /// The component.
        component: Component,
        /// Its log's last lines.
        log_tail: String,
    },
    /// An image could not be built from its executable.
    #[error("failed to build image {reference} from {executable:?}")]
    ImageBuild {
        /// The image reference.
        reference: String,
        /// The executable.
        executable: PathBuf,
        /// The cause.
        #[source]
        source: intercom_build::image::ImageError,
    },
    /// A `ctr` command (e.g. `images import`) failed.
    #[error("`ctr {args}` failed: {stderr}")]
    Ctr {
        /// Its arguments after the address and namespace.
        args: String,
        /// ctr's standard error.
        stderr: String,
    },
    /// The node never turned Ready.
    #[error(
        "node {NODE_NAME} was not Ready within {START_TIMEOUT:?}; last lines of the kubelet log:\n{log_tail}"
    )]
    NodeNotReady {
        /// The kubelet log's last lines.
        log_tail: String,
    },
}

/// What a [`RealNode`] starts with.
#[derive(Debug, Clone, Default)]
pub struct RealNodeConfig {
    /// Image reference → the executable that is its entrypoint.
    pub images: BTreeMap<String, PathBuf>,
    /// The pod range (default [`DEFAULT_POD_CIDR`]).
    pub pod_cidr: Option<PodCidr>,
}

/// A running real node; see the [module docs](self).
#[derive(Debug)]
pub struct RealNode {
    // Field order is drop order after `Drop::drop` ran: the lock goes last.
    addons: Vec<Process>,
    kubelet: Option<Process>,
    containerd: Option<Process>,
    containerd_socket: PathBuf,
    ctr: PathBuf,
    node_ip: Ipv4Addr,
    digests: BTreeMap<String, String>,
    dir: tempfile::TempDir,
    _lock: std::fs::File,
}

impl RealNode {
    /// Starts containerd, imports the images, starts kubelet and waits for the Node to be
    /// Ready, then starts kube-scheduler, kube-proxy and CoreDNS.
    ///
    /// # Errors
    /// [`RealNodeError`]; whatever started is stopped again.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future stops what started.
    pub async fn start(
        control_plane: &ControlPlane,
        config: RealNodeConfig,
    ) -> Result<RealNode, RealNodeError> {
        preflight()?;
        let node_ip = node_ip_from_env()?;
        let binaries = NodeBinaries::find()?;
        let tools = Tools::find()?;
        let deadline = Instant::now() + START_TIMEOUT;
        let lock = lock().await?;
        // On the namespace's own /run (a tmpfs, checked by `preflight`): images, snapshots
        // and logs vanish with the namespace even when the test binary never drops its Env.
        let dir = tempfile::Builder::new()
            .prefix("intercom-real-node-")
            .tempdir_in(RUN_DIR)
            .map_err(|source| io("create", RUN_DIR.into(), source))?;
        let pod_cidr = config.pod_cidr.unwrap_or(DEFAULT_POD_CIDR);
        let paths = containerd::Paths::new(dir.path().join("containerd"));
        let mut node = RealNode {
            addons: Vec::new(),
            kubelet: None,
            containerd: None,
            containerd_socket: paths.socket.clone(),
            ctr: tools.ctr.clone(),
            node_ip,
            digests: BTreeMap::new(),
            _lock: lock,
            dir,
        };
        node.containerd = Some(
            containerd::start(&tools.containerd, &paths, PAUSE_IMAGE, pod_cidr, deadline).await?,
        );
        let archives = node.dir.path().join("images");
        node.digests =
            images::import_all(&tools.ctr, &paths.socket, &archives, &config.images).await?;
        let kubelet_dir = node.dir.path().join("kubelet");
        mkdir(&kubelet_dir)?;
        let settings = kubelet::Settings {
            binary: &binaries.kubelet,
            dir: &kubelet_dir,
            node_name: NODE_NAME,
            node_ip,
            containerd_socket: &paths.socket,
            cluster_dns: node_ip,
        };
        node.kubelet = Some(kubelet::start(&settings, control_plane).await?);
        let addons_dir = node.dir.path().join("addons");
        mkdir(&addons_dir)?;
        node.addons
            .push(addons::scheduler(&binaries.kube_scheduler, &addons_dir, control_plane).await?);
        node.addons.push(
            addons::proxy(
                &binaries.kube_proxy,
                &addons_dir,
                control_plane,
                NODE_NAME,
                pod_cidr,
            )
            .await?,
        );
        node.addons
            .push(addons::dns(&binaries.coredns, &addons_dir, control_plane, node_ip).await?);
        node.wait_ready(control_plane, deadline).await?;
        Ok(node)
    }

    /// Waits for the Node to be Ready and CoreDNS to listen, failing early when a
    /// component exits.
    async fn wait_ready(
        &mut self,
        control_plane: &ControlPlane,
        deadline: Instant,
    ) -> Result<(), RealNodeError> {
        let nodes: Api<Node> = Api::all(control_plane.client());
        let dns = std::net::SocketAddr::from((self.node_ip, 53));
        loop {
            for process in self.processes_mut() {
                if let Some(error) = process.exited() {
                    return Err(error.into());
                }
            }
            let ready = nodes
                .get_opt(NODE_NAME)
                .await
                .ok()
                .flatten()
                .is_some_and(|n| is_ready(&n));
            if ready && tokio::net::TcpStream::connect(dns).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log_tail = self
                    .kubelet
                    .as_ref()
                    .map(Process::log_tail)
                    .unwrap_or_default();
                return Err(RealNodeError::NodeNotReady { log_tail });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn processes_mut(&mut self) -> impl Iterator<Item = &mut Process> {
        self.containerd
            .iter_mut()
            .chain(self.kubelet.iter_mut())
            .chain(self.addons.iter_mut())
    }

    /// The node's IP (its `InternalIP`, also the cluster DNS address).
    pub fn node_ip(&self) -> Ipv4Addr {
        self.node_ip
    }

    /// The node's name.
    pub fn node_name(&self) -> &'static str {
        NODE_NAME
    }

    /// The manifest digest (`sha256:…`) of the image built for `reference`, as the node
    /// knows it: pin it as `<name>@<digest>`.
    pub fn image_digest(&self, reference: &str) -> Option<&str> {
        self.digests.get(reference).map(String::as_str)
    }

    /// The ids of the running containers (pod sandboxes included) of Kubernetes
    /// namespace `namespace`: a test checks that none is left.
    ///
    /// # Errors
    /// [`RealNodeError::Ctr`] when containerd does not answer.
    pub async fn running_containers(&self, namespace: &str) -> Result<Vec<String>, RealNodeError> {
        containerd::running_containers(&self.ctr, &self.containerd_socket, namespace).await
    }

    /// The established loopback TCP connections inside pod `namespace/pod`'s network
    /// namespace, as `local->peer`: containerd's port-forward dials the container's port
    /// on `localhost` there, so each open forward shows as one.
    ///
    /// # Errors
    /// [`RealNodeError::Ctr`] or [`RealNodeError::Io`]; no running pod gives an empty set.
    pub async fn port_forward_connections(
        &self,
        namespace: &str,
        pod: &str,
    ) -> Result<std::collections::BTreeSet<String>, RealNodeError> {
        let Some(out) = self.ss_in_pod(namespace, pod, &["-Htn"]).await? else {
            return Ok(Default::default());
        };
        Ok(out
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (local, peer) = (fields.get(2)?, fields.get(3)?);
                Some(format!("{local}->{peer}"))
            })
            .collect())
    }

    /// Cuts every port-forward into pod `namespace/pod` (its loopback connections are
    /// destroyed with `ss -K`, as a dropped network path would end them).
    ///
    /// # Errors
    /// As [`port_forward_connections`](Self::port_forward_connections).
    pub async fn cut_port_forwards(&self, namespace: &str, pod: &str) -> Result<(), RealNodeError> {
        self.ss_in_pod(namespace, pod, &["-K"]).await.map(drop)
    }

    /// `ss <args> state established src 127.0.0.1` in the pod's network namespace;
    /// `None` when the pod has no running sandbox.
    async fn ss_in_pod(
        &self,
        namespace: &str,
        pod: &str,
        args: &[&str],
    ) -> Result<Option<String>, RealNodeError> {
        let ctr = &self.ctr;
        let Some(pid) =
            containerd::sandbox_pid(ctr, &self.containerd_socket, namespace, pod).await?
        else {
            return Ok(None);
        };
        let output = tokio::process::Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .arg("ss")
            .args(args)
            .args(["state", "established", "src", "127.0.0.1"])
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| io("run", "nsenter".into(), source))?;
        Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned()))
    }

    /// containerd's socket (for `ctr --address` or `crictl --runtime-endpoint`).
    pub fn containerd_socket(&self) -> &Path {
        &self.containerd_socket
    }

    /// The node's directory: configuration and logs of every component.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        // The kubelet first, so it restarts nothing; then every container and shim while
        // containerd still runs; then containerd, the mounts and the cgroups.
        self.kubelet.take();
        self.addons.clear();
        teardown::kill_containers(&self.containerd_socket);
        self.containerd.take();
        teardown::unmount_below(self.dir.path());
    }
}

/// What [`RealNode::start`] checks before it starts anything: root, the private
/// namespaces, the node IP, the binaries and the system tools.
///
/// # Errors
/// The [`RealNodeError`] saying what is missing.
pub fn preflight() -> Result<(), RealNodeError> {
    host::check_isolated()?;
    host::check_node_ip(node_ip_from_env()?)?;
    NodeBinaries::find()?;
    Tools::find().map(drop)
}

/// The system programs the node runs.
struct Tools {
    containerd: PathBuf,
    ctr: PathBuf,
}

impl Tools {
    fn find() -> Result<Tools, RealNodeError> {
        let which = |tool: &'static str| {
            [
                "/usr/bin",
                "/usr/sbin",
                "/usr/local/bin",
                "/usr/local/sbin",
                "/bin",
                "/sbin",
            ]
            .iter()
            .map(|dir| Path::new(dir).join(tool))
            .find(|path| path.is_file())
            .ok_or(RealNodeError::MissingTool { tool })
        };
        which("runc")?;
        which("iptables")?;
        Ok(Tools {
            containerd: which("containerd")?,
            ctr: which("ctr")?,
        })
    }
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The node IP from [`NODE_IP_ENV`] (default `10.215.0.2`, `real-node-ns.sh`'s).
pub(crate) fn node_ip_from_env() -> Result<Ipv4Addr, RealNodeError> {
    let value = std::env::var(NODE_IP_ENV).unwrap_or_else(|_| "10.215.0.2".to_owned());
    value
        .trim()
        .parse()
        .map_err(|_| RealNodeError::NodeIpParse { value })
}

/// Takes the machine-wide node lock, waiting (bounded by nothing but the other node's
/// life) while another node runs.
async fn lock() -> Result<std::fs::File, RealNodeError> {
    let file = std::fs::File::create(LOCK_FILE)
        .map_err(|source| io("create", LOCK_FILE.into(), source))?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|join| io("lock", LOCK_FILE.into(), std::io::Error::other(join)))?
        .map_err(|source| io("lock", LOCK_FILE.into(), source))
}

fn mkdir(dir: &Path) -> Result<(), RealNodeError> {
    std::fs::create_dir_all(dir).map_err(|source| io("create", dir.to_owned(), source))
}

pub(crate) fn write_file(path: &Path, contents: &str) -> Result<(), RealNodeError> {
    std::fs::write(path, contents).map_err(|source| io("write", path.to_owned(), source))
}

fn io(what: &'static str, path: PathBuf, source: std::io::Error) -> RealNodeError {
    RealNodeError::Io { what, path, source }
}
