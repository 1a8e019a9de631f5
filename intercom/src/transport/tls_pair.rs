//! [`TlsPair`]: the TLS configs of one side of a connection, and [`secure_client`].

use std::fmt;
use std::io;
use std::sync::Arc;

use super::Io;

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
    #[cfg(feature = "kubernetes")]
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

/// Wraps `io` as a TLS client when `tls` is set.
pub(crate) async fn secure_client(tls: Option<&TlsPair>, io: Io) -> io::Result<Io> {
    match tls {
        Some(t) => t.connect(io).await,
        None => Ok(io),
    }
}
