//! The node's kubelet (v1.35 from the Go module proxy) on containerd: its configuration
//! file, serving certificate and command line, every path inside the node's directory.

use std::net::Ipv4Addr;
use std::path::Path;

use super::{RealNodeError, write_file};
use crate::control_plane::process::Process;
use crate::control_plane::{Component, ControlPlane};

/// The kubelet's HTTPS port on the node IP (the apiserver reaches logs, exec and
/// port-forward there).
const KUBELET_PORT: u16 = 10250;

/// What the kubelet is started with.
#[derive(Debug)]
pub(super) struct Settings<'a> {
    pub(super) binary: &'a Path,
    pub(super) dir: &'a Path,
    pub(super) node_name: &'a str,
    pub(super) node_ip: Ipv4Addr,
    pub(super) containerd_socket: &'a Path,
    pub(super) cluster_dns: Ipv4Addr,
}

/// Writes the kubelet's files and starts it; readiness is the Node turning Ready (the
/// caller waits for that through the API).
pub(super) async fn start(
    settings: &Settings<'_>,
    control_plane: &ControlPlane,
) -> Result<Process, RealNodeError> {
    let dir = settings.dir;
    let pki = control_plane.pki();
    let ip = settings.node_ip.to_string();
    let cert = pki
        .issue_serving_cert(settings.node_name, &[settings.node_name, &ip])
        .map_err(RealNodeError::from)?;
    let (cert_path, key_path) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    write_file(&cert_path, &cert.cert_pem)?;
    write_file(&key_path, &cert.key_pem)?;
    let resolv_conf = dir.join("resolv.conf");
    // Pods get the cluster DNS from kubelet; the host's resolvers are not theirs.
    write_file(&resolv_conf, "")?;
    let config = dir.join("kubelet-config.json");
    let files = Files {
        cert: &cert_path,
        key: &key_path,
        ca: &pki.ca_cert_path,
        resolv_conf: &resolv_conf,
    };
    write_file(&config, &config_json(settings, &files))?;
    let args = vec![
        flag("--config", &config),
        flag("--kubeconfig", control_plane.kubeconfig()),
        flag("--root-dir", &dir.join("root")),
        flag("--cert-dir", &dir.join("pki")),
        format!("--hostname-override={}", settings.node_name).into(),
        format!("--node-ip={ip}").into(),
        "--v=2".into(),
    ];
    Ok(Process::spawn(
        Component::Kubelet,
        settings.binary,
        args,
        dir,
        dir.join("kubelet.log"),
    )
    .await?)
}

struct Files<'a> {
    cert: &'a Path,
    key: &'a Path,
    ca: &'a Path,
    resolv_conf: &'a Path,
}

/// The KubeletConfiguration (JSON, which kubelet reads as YAML). Choices forced by these
/// machines: cgroup v1 allowed (`failCgroupV1: false`), cgroupfs, swap tolerated; eviction
/// and image GC thresholds that a nearly full test disk never trips (imported images
/// cannot be pulled again); no anonymous access, the cluster CA for client certificates.
fn config_json(settings: &Settings<'_>, files: &Files<'_>) -> String {
    let dir = settings.dir;
    serde_json::json!({
        "kind": "KubeletConfiguration",
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "address": settings.node_ip.to_string(),
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 0,
        "tlsCertFile": files.cert,
        "tlsPrivateKeyFile": files.key,
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": false},
            "x509": {"clientCAFile": files.ca},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": format!("unix://{}", settings.containerd_socket.display()),
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": false,
        "failSwapOn": false,
        "clusterDNS": [settings.cluster_dns.to_string()],
        "clusterDomain": "cluster.local",
        "resolvConf": files.resolv_conf,
        "volumePluginDir": dir.join("volume-plugins"),
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
            "imagefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": false,
        "nodeStatusUpdateFrequency": "2s",
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
        "shutdownGracePeriod": "0s",
        "protectKernelDefaults": false,
        "rotateCertificates": false,
        "serverTLSBootstrap": false,
        "enableDebuggingHandlers": true,
        "localStorageCapacityIsolation": true,
    })
    .to_string()
}

fn flag(name: &str, path: &Path) -> std::ffi::OsString {
    let mut flag = std::ffi::OsString::from(format!("{name}="));
    flag.push(path);
    flag
}
