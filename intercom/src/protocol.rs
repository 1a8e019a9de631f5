//! The contract both sides of a plugin connection share, in one place: every environment
//! variable a host sets for its plugin (go-plugin's names and intercom's own), the plugin
//! port intercom listens on when it picks one, the longest handshake line a host reads, and
//! the longest log line read as one.
//!
//! [`serve::env`](crate::serve::env) is this module's [`env`](mod@env), under the name it
//! had before.

/// The port a plugin listens on when told to use TCP without a port (Kubernetes).
pub const DEFAULT_SERVER_PORT: u16 = 50077;

/// The longest handshake line a host reads from a plugin's stdout (64 KiB, as go-plugin);
/// a longer first line is a bad handshake.
pub const MAX_HANDSHAKE_LINE: usize = 64 * 1024;

/// The longest plugin log line the host reads as one (64 KiB, every runtime); a longer
/// line arrives in pieces of this size.
pub const MAX_LOG_LINE: usize = 64 * 1024;

/// Environment variables a host sets for its plugin.
pub mod env {
    /// Comma-separated app protocol versions the host supports (go-plugin).
    pub const PROTOCOL_VERSIONS: &str = "PLUGIN_PROTOCOL_VERSIONS";
    /// Present (non-empty) when the host wants the broker multiplexed over one connection
    /// (go-plugin).
    pub const MULTIPLEX_GRPC: &str = "PLUGIN_MULTIPLEX_GRPC";
    /// The host's AutoMTLS certificate (PEM) (go-plugin).
    pub const CLIENT_CERT: &str = "PLUGIN_CLIENT_CERT";
    /// Lowest TCP port a plugin may bind (go-plugin).
    pub const MIN_PORT: &str = "PLUGIN_MIN_PORT";
    /// Highest TCP port a plugin may bind (go-plugin).
    pub const MAX_PORT: &str = "PLUGIN_MAX_PORT";
    /// Directory for unix sockets (go-plugin).
    pub const UNIX_SOCKET_DIR: &str = "PLUGIN_UNIX_SOCKET_DIR";
    /// Group (name or gid) given access to the plugin's unix socket (go-plugin).
    pub const UNIX_SOCKET_GROUP: &str = "PLUGIN_UNIX_SOCKET_GROUP";
    /// intercom: when set (non-empty), the plugin keeps running after its parent process
    /// exits, for a later host to reattach to (set by `ProcessLauncher::outlive_host`).
    pub const OUTLIVE_HOST: &str = "INTERCOM_OUTLIVE_HOST";
    /// intercom: listen on TCP at exactly this `ip:port`. The Kubernetes runtime sets
    /// `0.0.0.0:<port>`, every address of the pod: its IP, for the host and the kubelet's
    /// probes, and its loopback, which a container runtime's port-forward dials.
    /// intercom-envtest's kubelet sets `<pod IP>:<port>` and puts the pod IP in place of
    /// an unspecified IP, since there each pod has only that one address.
    pub const LISTEN_ADDR: &str = "INTERCOM_LISTEN_ADDR";
    /// intercom: the `ip:port` the plugin announces in its handshake line instead of the
    /// listener's own address (an unspecified `0.0.0.0` is no address to dial). The
    /// Kubernetes runtime sets `<pod IP>:<port>`.
    pub const ADVERTISE_ADDR: &str = "INTERCOM_ADVERTISE_ADDR";
    /// intercom: `tcp` makes the plugin listen on TCP `127.0.0.1` within the port range
    /// instead of a unix socket.
    pub const TRANSPORT: &str = "INTERCOM_TRANSPORT";
    /// intercom, Kubernetes: the pod's IP (downward API), which the plugin announces.
    pub const POD_IP: &str = "INTERCOM_POD_IP";
}
