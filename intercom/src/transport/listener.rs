//! [`Listener`]: binding and accepting on a unix socket or TCP, and [`dial`]ing a
//! handshake address.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use super::{Io, ListenConfig, ListenError};
use crate::handshake::Network;
use crate::unix_socket;

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
