//! [`KubeletConfig`]: the image map and the knobs tests turn.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// An IPv4 range pod IPs are drawn from instead of the loopback range (see
/// [`KubeletConfig::pod_cidr`]).
///
/// ```
/// use intercom_envtest::kubelet::PodCidr;
/// let cidr: PodCidr = "10.213.0.0/16".parse().unwrap();
/// assert_eq!(cidr.to_string(), "10.213.0.0/16");
/// assert!("10.213.0.0/33".parse::<PodCidr>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodCidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl PodCidr {
    /// The range `network/prefix_len` (host bits of `network` are cleared); `None` unless
    /// `prefix_len` is 8..=30.
    pub const fn new(network: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        if prefix_len < 8 || prefix_len > 30 {
            return None;
        }
        let mask = u32::MAX << (32 - prefix_len);
        Some(Self {
            network: Ipv4Addr::from_bits(network.to_bits() & mask),
            prefix_len,
        })
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The usable host addresses (without network and broadcast address).
    pub(crate) fn hosts(&self) -> std::ops::RangeInclusive<u32> {
        let first = u32::from(self.network);
        let size = 1u32 << (32 - self.prefix_len);
        (first + 1)..=(first + size - 2)
    }
}

impl std::fmt::Display for PodCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// A string that is not `a.b.c.d/n` with `n` in 8..=30.
#[derive(Debug, thiserror::Error)]
#[error(
    "failed to parse pod CIDR {input:?}: expected `a.b.c.d/n` with n in 8..=30, e.g. `10.213.0.0/16`"
)]
pub struct PodCidrParseError {
    input: String,
}

impl FromStr for PodCidr {
    type Err = PodCidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PodCidrParseError {
            input: s.chars().take(64).collect(),
        };
        let (ip, len) = s.split_once('/').ok_or_else(err)?;
        let network: Ipv4Addr = ip.parse().map_err(|_| err())?;
        let prefix_len: u8 = len.parse().map_err(|_| err())?;
        Self::new(network, prefix_len).ok_or_else(err)
    }
}

/// Settings of a [`Kubelet`](super::Kubelet).
///
/// Plain data with a by-value builder; [`KubeletConfig::default`] is a kubelet with an empty
/// image map (every pod then shows `ErrImagePull`).
///
/// ```
/// use std::time::Duration;
/// use intercom_envtest::kubelet::KubeletConfig;
/// let config = KubeletConfig::new()
///     .image("registry.example/greeter:1", "/path/to/greeter")
///     .backoff_base(Duration::from_millis(200));
/// assert_eq!(config.images.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KubeletConfig {
    /// Image reference → local executable that is the image's entrypoint.
    ///
    /// References are compared after the usual normalisation (`greeter` ≡
    /// `docker.io/library/greeter:latest`), so a key matches however the pod spells it.
    pub images: BTreeMap<String, PathBuf>,
    /// First delay of the restart and image-pull back-offs (kubelet: 10 s). It doubles after
    /// every failure up to [`backoff_max`](Self::backoff_max).
    pub backoff_base: Duration,
    /// Ceiling of the back-offs (kubelet: 5 min).
    pub backoff_max: Duration,
    /// Node name; `None` picks `envtest-node-<n>` (unique within the process).
    pub node_name: Option<String>,
    /// Extra node labels (besides `kubernetes.io/hostname`, `kubernetes.io/os` and
    /// `kubernetes.io/arch`), matched by `nodeSelector` and node affinity.
    pub node_labels: BTreeMap<String, String>,
    /// Upper bound on a pod's termination grace period: SIGTERM, then SIGKILL after
    /// `min(deletionGracePeriodSeconds, max_termination_grace)`.
    pub max_termination_grace: Duration,
    /// Variables copied from the kubelet's own environment into every container (when set),
    /// below the pod's `env`. Default: `PATH`, `RUST_LOG`, `RUST_BACKTRACE`, `LLVM_PROFILE_FILE`.
    pub inherit_env: BTreeSet<String>,
    /// How often the node Lease is renewed (kubelet: 10 s).
    pub lease_renew_interval: Duration,
    /// Where pod IPs come from. `None` (default): a random `127.a.b.0/24` per kubelet, which
    /// needs no privileges, but the apiserver refuses loopback addresses in EndpointSlices
    /// (`may not be in the loopback range`), so Services get no endpoints. `Some(range)`:
    /// addresses of `range`, which must be routed to this host, e.g.
    /// `ip route add local 10.213.0.0/16 dev lo` (needs `CAP_NET_ADMIN`); then
    /// EndpointSlices list the pods. [`Kubelet::start`](super::Kubelet::start) checks that
    /// an address of the range can be bound.
    pub pod_cidr: Option<PodCidr>,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        Self {
            images: BTreeMap::new(),
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            node_name: None,
            node_labels: BTreeMap::new(),
            max_termination_grace: Duration::from_secs(5),
            inherit_env: ["PATH", "RUST_LOG", "RUST_BACKTRACE", "LLVM_PROFILE_FILE"]
                .into_iter()
                .map(String::from)
                .collect(),
            lease_renew_interval: Duration::from_secs(10),
            pod_cidr: None,
        }
    }
}

impl KubeletConfig {
    /// The defaults (see the field docs).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps an image reference to the executable run for it.
    #[must_use]
    pub fn image(mut self, reference: impl Into<String>, executable: impl Into<PathBuf>) -> Self {
        self.images.insert(reference.into(), executable.into());
        self
    }

    /// Sets [`backoff_base`](Self::backoff_base).
    #[must_use]
    pub fn backoff_base(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self
    }

    /// Sets [`backoff_max`](Self::backoff_max).
    #[must_use]
    pub fn backoff_max(mut self, max: Duration) -> Self {
        self.backoff_max = max;
        self
    }

    /// Sets the node name.
    #[must_use]
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = Some(name.into());
        self
    }

    /// Adds a node label.
    #[must_use]
    pub fn node_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.node_labels.insert(key.into(), value.into());
        self
    }

    /// Sets [`max_termination_grace`](Self::max_termination_grace).
    #[must_use]
    pub fn max_termination_grace(mut self, grace: Duration) -> Self {
        self.max_termination_grace = grace;
        self
    }

    /// Copies one more variable of the kubelet's environment into every container.
    #[must_use]
    pub fn inherit_env(mut self, name: impl Into<String>) -> Self {
        self.inherit_env.insert(name.into());
        self
    }

    /// Sets [`pod_cidr`](Self::pod_cidr).
    #[must_use]
    pub fn pod_cidr(mut self, cidr: PodCidr) -> Self {
        self.pod_cidr = Some(cidr);
        self
    }

    /// Sets [`lease_renew_interval`](Self::lease_renew_interval).
    #[must_use]
    pub fn lease_renew_interval(mut self, interval: Duration) -> Self {
        self.lease_renew_interval = interval;
        self
    }
}
