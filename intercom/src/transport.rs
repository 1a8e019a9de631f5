//! Sockets under every gRPC connection: listeners a plugin (or a classic broker) binds,
//! dialing the address from a handshake line, and the one byte-stream type that unix
//! sockets, TCP, yamux streams and TLS all become.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::handshake::Network;
use crate::unix_socket::{self, SocketDirError, SocketGroup, SocketGroupError};

/// Environment variables the listener honours (the [`protocol`](crate::protocol) ones).
pub use crate::protocol::env;

/// Where and how a plugin listens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenConfig {
    /// A unix socket in a private directory (`0700`, socket `0600`) made inside `dir`
    /// (`None`: the temp dir), or shared with `group` (directory `0710`, socket `0660`).
    Unix {
        /// Where the socket's own directory is made.
        dir: Option<PathBuf>,
        /// The group given access to the socket (`None`: only the owner).
        group: Option<SocketGroup>,
    },
    /// TCP on 127.0.0.1, first free port in the inclusive range (both 0: OS picks).
    TcpRange {
        /// Lowest port.
        min: u16,
        /// Highest port.
        max: u16,
    },
    /// TCP on exactly this address.
    Tcp(SocketAddr),
}

impl ListenConfig {
    /// Reads the listener choice from the environment, as a plugin does at start.
    ///
    /// `INTERCOM_LISTEN_ADDR` wins, then `INTERCOM_TRANSPORT=tcp` (port range from
    /// `PLUGIN_MIN_PORT`/`PLUGIN_MAX_PORT`), else a unix socket in `PLUGIN_UNIX_SOCKET_DIR`
    /// shared with `PLUGIN_UNIX_SOCKET_GROUP` when set.
    ///
    /// # Errors
    /// A malformed address or port, or a min port above the max port.
    pub fn from_env() -> Result<Self, ListenError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub(crate) fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ListenError> {
        if let Some(addr) = get(env::LISTEN_ADDR).filter(|s| !s.is_empty()) {
            let parsed = addr.parse().map_err(|_| ListenError::BadListenAddr {
                value: addr.clone(),
            })?;
            return Ok(Self::Tcp(parsed));
        }
        let tcp = get(env::TRANSPORT).is_some_and(|t| t.eq_ignore_ascii_case("tcp"));
        if tcp {
            let port = |key: &'static str| -> Result<u16, ListenError> {
                match get(key).filter(|s| !s.is_empty()) {
                    None => Ok(0),
                    Some(v) => v
                        .parse()
                        .map_err(|_| ListenError::BadPort { key, value: v }),
                }
            };
            let (min, max) = (port(env::MIN_PORT)?, port(env::MAX_PORT)?);
            if min > max {
                return Err(ListenError::PortRange { min, max });
            }
            return Ok(Self::TcpRange { min, max });
        }
        Ok(Self::Unix {
            dir: get(env::UNIX_SOCKET_DIR)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            group: get(env::UNIX_SOCKET_GROUP)
                .filter(|s| !s.is_empty())
                .map(SocketGroup::new),
        })
    }
}

/// Reads `INTERCOM_ADVERTISE_ADDR`: the address a plugin announces in its handshake
/// instead of its listener's (unset or empty: none).
///
/// # Errors
/// [`ListenError::BadAdvertiseAddr`] when the value is not a dialable `ip:port`.
pub fn advertise_from_env() -> Result<Option<SocketAddr>, ListenError> {
    advertise_from_lookup(|k| std::env::var(k).ok())
}

pub(crate) fn advertise_from_lookup(
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<SocketAddr>, ListenError> {
    let Some(value) = get(env::ADVERTISE_ADDR).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match value.parse::<SocketAddr>() {
        Ok(addr) => check_advertise(addr).map(Some),
        Err(_) => Err(ListenError::BadAdvertiseAddr { value }),
    }
}

/// An advertised address must be one a host can dial: a specific IP and a port.
pub(crate) fn check_advertise(addr: SocketAddr) -> Result<SocketAddr, ListenError> {
    if addr.ip().is_unspecified() || addr.port() == 0 {
        return Err(ListenError::BadAdvertiseAddr {
            value: addr.to_string(),
        });
    }
    Ok(addr)
}

/// Failures to open a listener.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// `INTERCOM_LISTEN_ADDR` is not `ip:port`.
    #[error(
        "failed to parse INTERCOM_LISTEN_ADDR {value:?}: expected `ip:port`, e.g. `127.0.0.5:50077`"
    )]
    BadListenAddr {
        /// The value found.
        value: String,
    },
    /// The advertised address (`INTERCOM_ADVERTISE_ADDR` or
    /// [`ServeConfig::advertise`](crate::ServeConfig::advertise)) is not a dialable
    /// `ip:port`.
    #[error(
        "failed to use {value:?} as the plugin's advertised address (INTERCOM_ADVERTISE_ADDR): expected `ip:port` with a specific IP and a non-zero port, e.g. `10.1.2.3:50077`"
    )]
    BadAdvertiseAddr {
        /// The value found.
        value: String,
    },
    /// A port variable is not a number.
    #[error("failed to parse {key}={value:?} as a port number")]
    BadPort {
        /// The variable.
        key: &'static str,
        /// The value found.
        value: String,
    },
    /// `PLUGIN_MIN_PORT` > `PLUGIN_MAX_PORT`.
    #[error("PLUGIN_MIN_PORT value of {min} is greater than PLUGIN_MAX_PORT value of {max}")]
    PortRange {
        /// The minimum.
        min: u16,
        /// The maximum.
        max: u16,
    },
    /// No port in the range could be bound.
    #[error("failed to bind a TCP listener on 127.0.0.1 in ports {min}..={max}: all taken")]
    NoFreePort {
        /// The minimum.
        min: u16,
        /// The maximum.
        max: u16,
    },
    /// The unix socket's directory could not be made.
    #[error(transparent)]
    SocketDir(#[from] SocketDirError),
    /// The unix socket group could not be applied.
    #[error(transparent)]
    SocketGroup(#[from] SocketGroupError),
    /// The OS refused to bind.
    #[error("failed to bind {what}")]
    Bind {
        /// What was being bound.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// First pause after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause between retries of a failing accept.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A bound listener: a unix socket (removed on drop) or TCP.
#[derive(Debug)]
pub(crate) enum Listener {
    Unix {
        listener: UnixListener,
        // Removes the socket file (and its private directory) on drop.
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Tcp(TcpListener),
}

impl Listener {
    /// Binds as `config` says. Synchronous, so a broker can register an id and bind
    /// before the id is sent to the peer; needs a tokio runtime context.
    pub(crate) fn bind(config: &ListenConfig) -> Result<Self, ListenError> {
        match config {
            ListenConfig::Unix { dir, group } => {
                let base = dir.clone().unwrap_or_else(std::env::temp_dir);
                let group = group.as_ref();
                let tmp = unix_socket::private_dir(
                    &base,
                    "plugin",
                    group,
                    unix_socket::GROUP_PLUGIN_DIR,
                )?;
                let path = tmp.path().join("plugin.sock");
                let listener = UnixListener::bind(&path).map_err(|source| ListenError::Bind {
                    what: format!("unix socket {}", path.display()),
                    source,
                })?;
                unix_socket::restrict(
                    &path,
                    group,
                    unix_socket::PRIVATE_SOCKET,
                    unix_socket::GROUP_SOCKET,
                )?;
                Ok(Self::Unix {
                    listener,
                    _dir: tmp,
                    path,
                })
            }
            ListenConfig::Tcp(addr) => bind_tcp(*addr).map_err(|source| ListenError::Bind {
                what: format!("TCP {addr}"),
                source,
            }),
            ListenConfig::TcpRange { min, max } => {
                if *min == 0 && *max == 0 {
                    return bind_tcp(([127, 0, 0, 1], 0).into()).map_err(|source| {
                        ListenError::Bind {
                            what: "TCP 127.0.0.1:0".into(),
                            source,
                        }
                    });
                }
                for port in *min..=*max {
                    if let Ok(l) = bind_tcp(([127, 0, 0, 1], port).into()) {
                        return Ok(l);
                    }
                }
                Err(ListenError::NoFreePort {
                    min: *min,
                    max: *max,
                })
            }
        }
    }

    /// The network for the handshake line.
    pub(crate) fn network(&self) -> Network {
        match self {
            Self::Unix { .. } => Network::Unix,
            Self::Tcp(_) => Network::Tcp,
        }
    }

    /// The address for the handshake line.
    pub(crate) fn address(&self) -> io::Result<String> {
        match self {
            Self::Unix { path, .. } => Ok(path.display().to_string()),
            Self::Tcp(l) => l.local_addr().map(|a| a.to_string()),
        }
    }

    /// Accepts the next connection, riding out failures: `EMFILE` (no fds left),
    /// `ECONNABORTED` and the like are logged and retried after a pause that doubles from
    /// [`ACCEPT_BACKOFF_MIN`] to [`ACCEPT_BACKOFF_MAX`], so they never end an accept loop.
    /// `what` names the listener in the log.
    pub(crate) async fn accept_retrying(&self, what: &'static str) -> Io {
        let mut backoff = Duration::ZERO;
        loop {
            match self.accept().await {
                Ok(io) => return io,
                Err(err) => {
                    backoff = (backoff * 2).clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
                    tracing::warn!(
                        error = &err as &dyn std::error::Error,
                        retry_in = ?backoff,
                        "{what} failed to accept a connection"
                    );
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// Accepts one connection.
    pub(crate) async fn accept(&self) -> io::Result<Io> {
        match self {
            Self::Unix { listener, .. } => listener.accept().await.map(|(s, _)| Io::Unix(s)),
            Self::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(Io::Tcp(s))
            }
        }
    }
}

fn bind_tcp(addr: SocketAddr) -> io::Result<Listener> {
    let std = std::net::TcpListener::bind(addr)?;
    std.set_nonblocking(true)?;
    TcpListener::from_std(std).map(Listener::Tcp)
}

/// Dials `address` on `network`, as a host dials a handshake address.
pub(crate) async fn dial(network: Network, address: &str) -> io::Result<Io> {
    match network {
        Network::Unix => UnixStream::connect(Path::new(address)).await.map(Io::Unix),
        Network::Tcp => {
            let s = TcpStream::connect(address).await?;
            let _ = s.set_nodelay(true);
            Ok(Io::Tcp(s))
        }
    }
}

/// The byte streams gRPC runs over.
pub(crate) enum Io {
    Unix(UnixStream),
    Tcp(TcpStream),
    Mux(tokio_yamux::StreamHandle),
    TlsClient(Box<tokio_rustls::client::TlsStream<Io>>),
    TlsServer(Box<tokio_rustls::server::TlsStream<Io>>),
    /// Anything else a runtime dials through (e.g. a port-forward through the apiserver).
    Boxed(Pin<Box<dyn ByteStream>>),
}

/// A byte stream a runtime can hand the SDK as "the connection to the plugin".
pub trait ByteStream: AsyncRead + AsyncWrite + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + 'static> ByteStream for T {}

impl fmt::Debug for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unix(_) => "Io::Unix",
            Self::Tcp(_) => "Io::Tcp",
            Self::Mux(_) => "Io::Mux",
            Self::TlsClient(_) => "Io::TlsClient",
            Self::TlsServer(_) => "Io::TlsServer",
            Self::Boxed(_) => "Io::Boxed",
        })
    }
}

macro_rules! delegate {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self.get_mut() {
            Io::Unix(s) => Pin::new(s).$method($($arg),*),
            Io::Tcp(s) => Pin::new(s).$method($($arg),*),
            Io::Mux(s) => Pin::new(s).$method($($arg),*),
            Io::TlsClient(s) => Pin::new(&mut **s).$method($($arg),*),
            Io::TlsServer(s) => Pin::new(&mut **s).$method($($arg),*),
            Io::Boxed(s) => s.as_mut().$method($($arg),*),
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, poll_shutdown(cx))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Unix(s) => s.is_write_vectored(),
            Io::Tcp(s) => s.is_write_vectored(),
            Io::Mux(s) => s.is_write_vectored(),
            Io::TlsClient(s) => s.is_write_vectored(),
            Io::TlsServer(s) => s.is_write_vectored(),
            Io::Boxed(s) => s.is_write_vectored(),
        }
    }
}

impl tonic::transport::server::Connected for Io {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

/// TLS settings of one side of a connection: both roles, each pinned to the peer's
/// certificate (a side is a TLS server for connections it accepts and a TLS client for
/// those it dials, including broker connections).
#[derive(Clone)]
pub(crate) struct TlsPair {
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) client: Arc<rustls::ClientConfig>,
    pub(crate) peer_der: Vec<u8>,
}

impl fmt::Debug for TlsPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsPair")
    }
}

impl TlsPair {
    /// Builds both configs for `own`, pinning `peer_der`.
    pub(crate) fn new(
        own: &crate::tls::Identity,
        peer_der: &[u8],
    ) -> Result<Self, crate::tls::TlsError> {
        Ok(Self {
            server: crate::tls::server_config(own, peer_der)?,
            client: crate::tls::client_config(own, peer_der)?,
            peer_der: peer_der.to_vec(),
        })
    }

    /// Builds both configs for `own`, accepting any certificate of `pins` (now or later);
    /// `peer_der` is the one expected, for reporting.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    pub(crate) fn with_pins(
        own: &crate::tls::Identity,
        pins: &crate::tls::PinSet,
        peer_der: &[u8],
    ) -> Result<Self, crate::tls::TlsError> {
        Ok(Self {
            server: crate::tls::server_config_any(own, pins)?,
            client: crate::tls::client_config_any(own, pins)?,
            peer_der: peer_der.to_vec(),
        })
    }

    /// Runs the TLS client handshake over `io`.
    pub(crate) async fn connect(&self, io: Io) -> io::Result<Io> {
        let connector = tokio_rustls::TlsConnector::from(self.client.clone());
        let tls = connector.connect(crate::tls::server_name(), io).await?;
        Ok(Io::TlsClient(Box::new(tls)))
    }

    /// Runs the TLS server handshake over `io`.
    pub(crate) async fn accept(&self, io: Io) -> io::Result<Io> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server.clone());
        let tls = acceptor.accept(io).await?;
        Ok(Io::TlsServer(Box::new(tls)))
    }
}

/// Reads the first byte of a fresh connection (what the peer speaks first tells a yamux
/// session from TLS from plaintext HTTP/2) and gives back a stream that still starts with
/// it. `None`: the peer closed without sending anything (e.g. a TCP probe).
pub(crate) async fn sniff(mut io: Io) -> io::Result<Option<(u8, Io)>> {
    use tokio::io::AsyncReadExt;
    let mut first = [0u8; 1];
    if io.read(&mut first).await? == 0 {
        return Ok(None);
    }
    Ok(Some((
        first[0],
        Io::Boxed(Box::pin(Prefixed {
            prefix: Some(first[0]),
            inner: io,
        })),
    )))
}

/// A stream with one byte put back in front.
struct Prefixed {
    prefix: Option<u8>,
    inner: Io,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(b) = self.prefix.take() {
            if buf.remaining() == 0 {
                self.prefix = Some(b);
                return Poll::Ready(Ok(()));
            }
            buf.put_slice(&[b]);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The first byte of a yamux frame (protocol version 0).
pub(crate) const YAMUX_FIRST_BYTE: u8 = 0;
/// The first byte of a TLS record (handshake).
pub(crate) const TLS_FIRST_BYTE: u8 = 0x16;

/// Wraps `io` as a TLS client when `tls` is set.
pub(crate) async fn secure_client(tls: Option<&TlsPair>, io: Io) -> io::Result<Io> {
    match tls {
        Some(t) => t.connect(io).await,
        None => Ok(io),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn listen_config_from_env() {
        assert_eq!(
            ListenConfig::from_lookup(lookup(&[])).unwrap(),
            ListenConfig::Unix {
                dir: None,
                group: None,
            }
        );
        assert_eq!(
            ListenConfig::from_lookup(lookup(&[(env::UNIX_SOCKET_DIR, "/run/x")])).unwrap(),
            ListenConfig::Unix {
                dir: Some("/run/x".into()),
                group: None,
            }
        );
        assert_eq!(
            ListenConfig::from_lookup(lookup(&[(env::UNIX_SOCKET_GROUP, "plugins")])).unwrap(),
            ListenConfig::Unix {
                dir: None,
                group: Some(SocketGroup::new("plugins")),
            }
        );
        assert_eq!(
            ListenConfig::from_lookup(lookup(&[
                (env::TRANSPORT, "tcp"),
                (env::MIN_PORT, "10000"),
                (env::MAX_PORT, "10010")
            ]))
            .unwrap(),
            ListenConfig::TcpRange {
                min: 10000,
                max: 10010
            }
        );
        assert_eq!(
            ListenConfig::from_lookup(lookup(&[(env::LISTEN_ADDR, "127.0.0.9:50077")])).unwrap(),
            ListenConfig::Tcp("127.0.0.9:50077".parse().unwrap())
        );
        assert!(matches!(
            ListenConfig::from_lookup(lookup(&[(env::LISTEN_ADDR, "nope")])),
            Err(ListenError::BadListenAddr { .. })
        ));
        assert!(matches!(
            ListenConfig::from_lookup(lookup(&[
                (env::TRANSPORT, "tcp"),
                (env::MIN_PORT, "20"),
                (env::MAX_PORT, "10")
            ])),
            Err(ListenError::PortRange { min: 20, max: 10 })
        ));
        assert!(matches!(
            ListenConfig::from_lookup(lookup(&[(env::TRANSPORT, "tcp"), (env::MIN_PORT, "x")])),
            Err(ListenError::BadPort { .. })
        ));
    }

    #[test]
    fn advertise_addr_from_env_must_be_dialable() {
        assert_eq!(advertise_from_lookup(lookup(&[])).unwrap(), None);
        assert_eq!(
            advertise_from_lookup(lookup(&[(env::ADVERTISE_ADDR, "")])).unwrap(),
            None
        );
        assert_eq!(
            advertise_from_lookup(lookup(&[(env::ADVERTISE_ADDR, "10.1.2.3:50077")])).unwrap(),
            Some("10.1.2.3:50077".parse().unwrap())
        );
        for bad in [
            "10.1.2.3",
            "pod:50077",
            "0.0.0.0:50077",
            "[::]:1",
            "10.1.2.3:0",
        ] {
            let err = advertise_from_lookup(lookup(&[(env::ADVERTISE_ADDR, bad)])).unwrap_err();
            assert!(
                matches!(&err, ListenError::BadAdvertiseAddr { .. }),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains("INTERCOM_ADVERTISE_ADDR"), "{err}");
        }
    }

    #[tokio::test]
    async fn tcp_range_binds_inside_range_and_unix_socket_is_removed() {
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let l = Listener::bind(&ListenConfig::TcpRange {
            min: port,
            max: port,
        })
        .unwrap();
        assert_eq!(l.address().unwrap(), format!("127.0.0.1:{port}"));
        // The only port is taken now.
        let err = Listener::bind(&ListenConfig::TcpRange {
            min: port,
            max: port,
        })
        .unwrap_err();
        assert!(matches!(err, ListenError::NoFreePort { .. }));

        let u = Listener::bind(&ListenConfig::Unix {
            dir: None,
            group: None,
        })
        .unwrap();
        let path = PathBuf::from(u.address().unwrap());
        assert!(path.exists());
        let _c = dial(Network::Unix, &u.address().unwrap()).await.unwrap();
        drop(u);
        assert!(
            !path.exists(),
            "socket file must be removed with the listener"
        );
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[tokio::test]
    async fn a_unix_socket_and_its_directory_are_private() {
        let base = tempfile::tempdir().unwrap();
        let l = Listener::bind(&ListenConfig::Unix {
            dir: Some(base.path().to_path_buf()),
            group: None,
        })
        .unwrap();
        let socket = PathBuf::from(l.address().unwrap());
        assert_eq!(mode(&socket), 0o600, "socket mode");
        assert_eq!(
            mode(socket.parent().unwrap()),
            0o700,
            "socket directory mode"
        );
    }

    #[tokio::test]
    async fn a_unix_socket_group_owns_the_socket_and_may_connect() {
        use std::os::unix::fs::MetadataExt;
        let base = tempfile::tempdir().unwrap();
        // Our own primary group: one this process may always chown to.
        let gid = nix::unistd::getegid().as_raw();
        let l = Listener::bind(&ListenConfig::Unix {
            dir: Some(base.path().to_path_buf()),
            group: Some(SocketGroup::new(gid.to_string())),
        })
        .unwrap();
        let socket = PathBuf::from(l.address().unwrap());
        let dir = socket.parent().unwrap();
        assert_eq!(mode(&socket), 0o660, "socket mode");
        assert_eq!(mode(dir), 0o710, "socket directory mode");
        assert_eq!(std::fs::metadata(&socket).unwrap().gid(), gid);
        assert_eq!(std::fs::metadata(dir).unwrap().gid(), gid);
        let _c = dial(Network::Unix, &l.address().unwrap()).await.unwrap();
    }

    #[test]
    fn an_unknown_unix_socket_group_fails_the_bind_with_its_name() {
        let base = tempfile::tempdir().unwrap();
        let err = Listener::bind(&ListenConfig::Unix {
            dir: Some(base.path().to_path_buf()),
            group: Some(SocketGroup::new("no-such-group-intercom-test")),
        })
        .unwrap_err();
        assert!(matches!(err, ListenError::SocketDir(_)), "{err:?}");
        assert!(
            err.to_string().contains("no-such-group-intercom-test"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(base.path()).unwrap().count(),
            0,
            "nothing left"
        );
    }
}
