//! The node's cluster services besides the kubelet: kube-scheduler, kube-proxy (iptables
//! mode) and CoreDNS, each a process of the node's namespaces talking to the apiserver
//! with the admin kubeconfig.
//!
//! CoreDNS runs as a process on the node IP rather than as a pod behind a `kube-dns`
//! Service: the node needs no image for it, it is up before the first test pod, and pods
//! reach it through the same bridge gateway as any node address (kubelet's `clusterDNS`).

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::Path;

use super::{RealNodeError, write_file};
use crate::control_plane::process::Process;
use crate::control_plane::{Component, ControlPlane};
use crate::kubelet::PodCidr;

/// kube-scheduler, leader election off, no serving port.
pub(super) async fn scheduler(
    binary: &Path,
    dir: &Path,
    control_plane: &ControlPlane,
) -> Result<Process, RealNodeError> {
    let kubeconfig = control_plane.kubeconfig();
    let args = vec![
        flag("--kubeconfig", kubeconfig),
        flag("--authentication-kubeconfig", kubeconfig),
        flag("--authorization-kubeconfig", kubeconfig),
        "--leader-elect=false".into(),
        "--secure-port=0".into(),
        "--profiling=false".into(),
    ];
    let log = dir.join("kube-scheduler.log");
    Ok(Process::spawn(Component::KubeScheduler, binary, args, dir, log).await?)
}

/// kube-proxy in iptables mode. The conntrack settings are zero so that it writes no
/// global sysctl (the node's network namespace has its own iptables and route_localnet).
pub(super) async fn proxy(
    binary: &Path,
    dir: &Path,
    control_plane: &ControlPlane,
    node_name: &str,
    pod_cidr: PodCidr,
) -> Result<Process, RealNodeError> {
    let config = dir.join("kube-proxy-config.json");
    let json = serde_json::json!({
        "kind": "KubeProxyConfiguration",
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "clientConnection": {"kubeconfig": control_plane.kubeconfig()},
        "mode": "iptables",
        "clusterCIDR": pod_cidr.to_string(),
        "hostnameOverride": node_name,
        "healthzBindAddress": "",
        "metricsBindAddress": "",
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"syncPeriod": "1s", "minSyncPeriod": "0s"},
    });
    write_file(&config, &json.to_string())?;
    let args = vec![flag("--config", &config), "--v=2".into()];
    let log = dir.join("kube-proxy.log");
    Ok(Process::spawn(Component::KubeProxy, binary, args, dir, log).await?)
}

/// CoreDNS on `ip:53`, answering `cluster.local` from the apiserver and nothing else (a
/// name outside the cluster fails at once rather than after a resolver timeout).
pub(super) async fn dns(
    binary: &Path,
    dir: &Path,
    control_plane: &ControlPlane,
    ip: Ipv4Addr,
) -> Result<Process, RealNodeError> {
    let corefile = dir.join("Corefile");
    let kubeconfig = control_plane.kubeconfig().display();
    write_file(
        &corefile,
        &format!(
            ".:53 {{\n    bind {ip}\n    errors\n    kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        kubeconfig {kubeconfig}\n        pods insecure\n        ttl 1\n    }}\n}}\n"
        ),
    )?;
    let args = vec![flag("-conf", &corefile)];
    let log = dir.join("coredns.log");
    Ok(Process::spawn(Component::CoreDns, binary, args, dir, log).await?)
}

fn flag(name: &str, path: &Path) -> OsString {
    let mut flag = OsString::from(format!("{name}="));
    flag.push(path);
    flag
}
