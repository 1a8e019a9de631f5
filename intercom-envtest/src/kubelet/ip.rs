//! Pod IPs: one local address per pod.
//!
//! By default each kubelet draws a random `127.a.b.0/24` (never `127.0.0.0/24`, so never
//! `127.0.0.1`) and hands out `127.a.b.2..=254`. With a configured [`PodCidr`] it hands out
//! the range's hosts from a random offset. A process-wide set keeps two kubelets in one
//! test binary apart; a trial bind of every declared port keeps concurrently running test
//! binaries (which share the interfaces) apart.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::config::PodCidr;

/// Addresses held by any pod of any kubelet in this process.
static IN_USE: Mutex<BTreeSet<Ipv4Addr>> = Mutex::new(BTreeSet::new());

/// A random 64-bit number from std's per-process random hasher keys.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one((
        std::process::id(),
        std::time::SystemTime::now(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    ))
}

/// A kubelet's pod address range.
#[derive(Debug)]
pub(crate) enum IpPool {
    /// Random `127.a.b.0/24` blocks.
    Loopback(Mutex<[u8; 2]>),
    /// A configured range, locally routed.
    Cidr(PodCidr),
}

impl IpPool {
    pub(crate) fn new(cidr: Option<PodCidr>) -> Self {
        match cidr {
            Some(cidr) => Self::Cidr(cidr),
            None => Self::Loopback(Mutex::new(random_prefix())),
        }
    }

    /// Takes a free address where every port in `ports` can be bound; `None` if none is.
    pub(crate) fn allocate(&self, ports: &[u16]) -> Option<PodIp> {
        match self {
            Self::Loopback(prefix) => {
                let mut prefix = prefix.lock().unwrap_or_else(|e| e.into_inner());
                for _ in 0..8 {
                    let [a, b] = *prefix;
                    let block = (2..=254u8).map(|last| Ipv4Addr::new(127, a, b, last));
                    if let Some(ip) = take_first(block, ports) {
                        return Some(ip);
                    }
                    *prefix = random_prefix();
                }
                None
            }
            Self::Cidr(cidr) => {
                let hosts = cidr.hosts();
                let (first, count) = (*hosts.start(), hosts.end() - hosts.start() + 1);
                let offset = u32::try_from(random_u64() % u64::from(count)).unwrap_or(0);
                // Try at most 4096 addresses, starting at a random one.
                let candidates =
                    (0..count.min(4096)).map(|i| Ipv4Addr::from(first + (offset + i) % count));
                take_first(candidates, ports)
            }
        }
    }
}

fn take_first(candidates: impl Iterator<Item = Ipv4Addr>, ports: &[u16]) -> Option<PodIp> {
    for ip in candidates {
        let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        if in_use.contains(&ip) || !bindable(ip, ports) {
            continue;
        }
        in_use.insert(ip);
        return Some(PodIp(ip));
    }
    None
}

/// Whether `ip` is a local address (an ephemeral port can be bound on it).
pub(crate) fn is_local(ip: Ipv4Addr) -> std::io::Result<()> {
    TcpListener::bind(SocketAddrV4::new(ip, 0)).map(drop)
}

fn random_prefix() -> [u8; 2] {
    loop {
        let [a, b, ..] = random_u64().to_le_bytes();
        if (a, b) != (0, 0) && (a, b) != (255, 255) {
            return [a, b];
        }
    }
}

fn bindable(ip: Ipv4Addr, ports: &[u16]) -> bool {
    ports
        .iter()
        .all(|&port| TcpListener::bind(SocketAddrV4::new(ip, port)).is_ok())
}

/// An allocated pod address, released on drop.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PodIp(Ipv4Addr);

impl PodIp {
    pub(crate) fn addr(&self) -> Ipv4Addr {
        self.0
    }
}

impl Drop for PodIp {
    fn drop(&mut self) {
        IN_USE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_distinct_loopback_addresses() {
        let pool = IpPool::new(None);
        let a = pool.allocate(&[50077]).unwrap();
        let b = pool.allocate(&[50077]).unwrap();
        assert_ne!(a, b);
        assert!(a.addr().is_loopback());
        assert_ne!(a.addr(), Ipv4Addr::LOCALHOST);
        let held = a.addr();
        drop(a);
        assert!(!IN_USE.lock().unwrap().contains(&held));
    }

    #[test]
    fn allocates_inside_a_cidr() {
        // 127/8 is local, so any part of it works as a routed range here.
        let cidr = PodCidr::new(Ipv4Addr::new(127, 77, 3, 0), 29).unwrap();
        let pool = IpPool::new(Some(cidr));
        let ips: Vec<PodIp> = (0..6).map(|_| pool.allocate(&[50077]).unwrap()).collect();
        for ip in &ips {
            assert!(
                cidr.hosts().contains(&u32::from(ip.addr())),
                "{:?}",
                ip.addr()
            );
        }
        assert!(pool.allocate(&[50077]).is_none(), "a /29 has 6 hosts");
    }
}
