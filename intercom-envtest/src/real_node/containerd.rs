//! The node's containerd: its own configuration, root, state and sockets in the node's
//! directory, the CRI plugin with runc and the CNI bridge, and image import with `ctr`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::{RealNodeError, write_file};
use crate::control_plane::Component;
use crate::control_plane::process::Process;
use crate::kubelet::PodCidr;

/// The containerd namespace the CRI plugin keeps Kubernetes' images and containers in.
pub(super) const K8S_NAMESPACE: &str = "k8s.io";

/// Where Debian's `containernetworking-plugins` installs the CNI plugins.
const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// The node's containerd paths, all under one directory.
#[derive(Debug, Clone)]
pub(super) struct Paths {
    pub(super) dir: PathBuf,
    pub(super) socket: PathBuf,
}

impl Paths {
    pub(super) fn new(dir: PathBuf) -> Paths {
        Paths {
            socket: dir.join("containerd.sock"),
            dir,
        }
    }
}

/// Writes the configuration and CNI conflist, then starts containerd and waits until it
/// answers on its socket.
pub(super) async fn start(
    binary: &Path,
    paths: &Paths,
    sandbox_image: &str,
    pod_cidr: PodCidr,
    deadline: Instant,
) -> Result<Process, RealNodeError> {
    let cni_conf = paths.dir.join("net.d");
    std::fs::create_dir_all(&cni_conf).map_err(|source| RealNodeError::Io {
        what: "create",
        path: cni_conf.clone(),
        source,
    })?;
    write_file(
        &cni_conf.join("10-intercom-envtest.conflist"),
        &cni_conflist(pod_cidr, &paths.dir.join("cni-ipam")),
    )?;
    let config = paths.dir.join("config.toml");
    write_file(&config, &config_toml(paths, sandbox_image, &cni_conf))?;
    let mut process = Process::spawn(
        Component::Containerd,
        binary,
        vec!["--config".into(), config.into_os_string()],
        &paths.dir,
        paths.dir.join("containerd.log"),
    )
    .await?;
    loop {
        if tokio::net::UnixStream::connect(&paths.socket).await.is_ok() {
            return Ok(process);
        }
        if let Some(error) = process.exited() {
            return Err(error.into());
        }
        if Instant::now() >= deadline {
            return Err(RealNodeError::NotReady {
                component: Component::Containerd,
                log_tail: process.log_tail(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// containerd 1.6's configuration (version 2): every path inside `paths.dir`; the CRI
/// plugin with `restrict_oom_score_adj` (these VMs refuse a negative `oom_score_adj`, which
/// the pause container asks for), cgroupfs, and the CNI plugins from Debian's package.
fn config_toml(paths: &Paths, sandbox_image: &str, cni_conf: &Path) -> String {
    let dir = paths.dir.display();
    let socket = paths.socket.display();
    let cni_conf = cni_conf.display();
    format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  max_container_log_line_size = 65536

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{dir}/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf}"
"#
    )
}

/// One bridge network for the pods: `cni0` as their gateway, addresses from `pod_cidr`
/// (host-local, state in `ipam_dir`), hairpin so a pod reaches itself through a Service.
fn cni_conflist(pod_cidr: PodCidr, ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "intercom-envtest",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr.to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    })
    .to_string()
}

/// The ids of the running containers (pod sandboxes included) of Kubernetes namespace
/// `namespace`.
pub(super) async fn running_containers(
    ctr: &Path,
    socket: &Path,
    namespace: &str,
) -> Result<Vec<String>, RealNodeError> {
    let filter = format!("labels.\"io.kubernetes.pod.namespace\"=={namespace}");
    let ids = run_ctr(ctr, socket, &["containers", "ls", "--quiet", &filter]).await?;
    let tasks = run_ctr(ctr, socket, &["tasks", "ls"]).await?;
    let running: Vec<&str> = tasks
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let id = fields.next()?;
            (fields.nth(1) == Some("RUNNING")).then_some(id)
        })
        .collect();
    Ok(ids
        .lines()
        .map(str::trim)
        .filter(|id| running.contains(id))
        .map(str::to_owned)
        .collect())
}

/// The pid of the running sandbox (pause) container of pod `namespace/pod`.
pub(super) async fn sandbox_pid(
    ctr: &Path,
    socket: &Path,
    namespace: &str,
    pod: &str,
) -> Result<Option<u32>, RealNodeError> {
    let filter = format!(
        "labels.\"io.kubernetes.pod.namespace\"=={namespace},labels.\"io.kubernetes.pod.name\"=={pod},labels.\"io.cri-containerd.kind\"==sandbox"
    );
    let ids = run_ctr(ctr, socket, &["containers", "ls", "--quiet", &filter]).await?;
    let ids: Vec<&str> = ids.lines().map(str::trim).collect();
    let tasks = run_ctr(ctr, socket, &["tasks", "ls"]).await?;
    Ok(tasks.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let id = fields.next()?;
        let pid = fields.next()?.parse().ok()?;
        (ids.contains(&id) && fields.next() == Some("RUNNING")).then_some(pid)
    }))
}

/// `ctr --address <socket> --namespace k8s.io <args>`'s standard output.
pub(super) async fn run_ctr(
    ctr: &Path,
    socket: &Path,
    args: &[&str],
) -> Result<String, RealNodeError> {
    let output = tokio::process::Command::new(ctr)
        .arg("--address")
        .arg(socket)
        .args(["--namespace", K8S_NAMESPACE])
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| RealNodeError::Io {
            what: "run",
            path: ctr.to_owned(),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(RealNodeError::Ctr {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Imports an image archive (OCI layout or `docker save`) into the CRI namespace.
pub(super) async fn import(ctr: &Path, socket: &Path, archive: &Path) -> Result<(), RealNodeError> {
    let archive_arg = archive.to_string_lossy();
    run_ctr(ctr, socket, &["images", "import", &archive_arg])
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_every_path_inside_the_node_directory() {
        let paths = Paths::new(PathBuf::from("/tmp/node/containerd"));
        let toml = config_toml(&paths, "pause:1", Path::new("/tmp/node/containerd/net.d"));
        for line in toml.lines().filter(|l| l.contains('/')) {
            assert!(
                line.contains("/tmp/node/containerd") || line.contains(CNI_BIN_DIR),
                "{line}"
            );
        }
        assert!(toml.contains("restrict_oom_score_adj = true"));
    }
}
