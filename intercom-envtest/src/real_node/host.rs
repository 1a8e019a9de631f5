//! What the real node needs of the machine it runs on, checked before anything starts: root,
//! and the private namespaces `real-node-ns.sh` creates, so that kubelet's global sysctls,
//! its fixed paths, CNI's interfaces and kube-proxy's iptables rules never reach the
//! machine.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

use super::RealNodeError;

/// The script that creates the namespaces (by absolute path, for error messages).
pub(super) const NAMESPACE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/real-node-ns.sh");

/// The global sysctls kubelet writes; each must be a file bind-mounted over the real one.
const MASKED_SYSCTLS: [&str; 3] = [
    "/proc/sys/vm/overcommit_memory",
    "/proc/sys/kernel/panic",
    "/proc/sys/kernel/panic_on_oops",
];

/// The fixed directories kubelet, CNI and containerd write under; each must be a private
/// mount.
const PRIVATE_DIRS: [&str; 3] = ["/var/lib", "/var/log", "/run"];

/// Interface name prefixes a namespace of ours may hold: `lo`, the node's veth pair
/// (`intercom-…`) and what CNI's bridge plugin makes (`cni0`, `veth…`).
const OUR_INTERFACES: [&str; 4] = ["lo", "intercom-", "cni", "veth"];

/// Fails unless this process runs as root inside the namespaces of [`NAMESPACE_SCRIPT`].
pub(super) fn check_isolated() -> Result<(), RealNodeError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(not_isolated(
            "the real node needs root (containerd, runc, iptables)",
        ));
    }
    let dev = read("/proc/net/dev")?;
    if let Some(foreign) = interfaces(&dev).find(|name| !is_ours(name)) {
        return Err(not_isolated(&format!(
            "network interface `{foreign}` belongs to the machine's network namespace"
        )));
    }
    let mountinfo = read("/proc/self/mountinfo")?;
    let mounted: Vec<&str> = mount_points(&mountinfo).collect();
    for path in MASKED_SYSCTLS.iter().chain(&PRIVATE_DIRS) {
        if !mounted.contains(path) {
            return Err(not_isolated(&format!(
                "{path} is not a private mount, so kubelet would write the machine's"
            )));
        }
    }
    Ok(())
}

/// Fails unless `ip` is an address of this network namespace.
pub(super) fn check_node_ip(ip: Ipv4Addr) -> Result<(), RealNodeError> {
    TcpListener::bind((ip, 0))
        .map(drop)
        .map_err(|source| RealNodeError::NodeIp { ip, source })
}

fn not_isolated(what: &str) -> RealNodeError {
    RealNodeError::NotIsolated {
        what: what.to_owned(),
        script: NAMESPACE_SCRIPT,
    }
}

fn read(path: &str) -> Result<String, RealNodeError> {
    std::fs::read_to_string(path).map_err(|source| RealNodeError::Io {
        what: "read",
        path: Path::new(path).to_owned(),
        source,
    })
}

/// The interface names in `/proc/net/dev` (two header lines, then `name: counters`).
fn interfaces(dev: &str) -> impl Iterator<Item = &str> {
    dev.lines()
        .skip(2)
        .filter_map(|line| line.split_once(':').map(|(name, _)| name.trim()))
}

fn is_ours(name: &str) -> bool {
    name == "lo" || OUR_INTERFACES[1..].iter().any(|p| name.starts_with(p))
}

/// The mount points in `/proc/self/mountinfo` (field 5; octal escapes left as they are).
fn mount_points(mountinfo: &str) -> impl Iterator<Item = &str> {
    mountinfo.lines().filter_map(|line| line.split(' ').nth(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_are_read_from_proc_net_dev() {
        let dev = "Inter-|   Receive\n face |bytes\n    lo: 1 2 3\nintercom-node: 4\n  eth0: 5\n";
        let names: Vec<_> = interfaces(dev).collect();
        assert_eq!(names, ["lo", "intercom-node", "eth0"]);
        assert!(is_ours("lo") && is_ours("cni0") && is_ours("veth1234") && is_ours("intercom-gw"));
        assert!(!is_ours("eth0") && !is_ours("lo0") && !is_ours("docker0"));
    }

    #[test]
    fn mount_points_are_field_five() {
        let info =
            "36 35 98:0 /mnt1 /proc/sys/kernel/panic rw,noatime master:1 - ext3 /dev/root rw\n";
        assert_eq!(
            mount_points(info).collect::<Vec<_>>(),
            ["/proc/sys/kernel/panic"]
        );
    }
}
