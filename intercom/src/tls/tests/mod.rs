//! Tests of the mutual TLS configurations, by concern: identities and certificates,
//! configs and handshakes, pins, the crypto provider. The shared handshake harness is here.

mod configs;
mod identity;
mod pins;
mod provider;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::{
    AlertDescription, CertificateError, ClientConfig, ProtocolVersion, ServerConfig,
    SupportedProtocolVersion,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::tls::pins::{NotPinned, Role};
use crate::tls::{Identity, server_name};

const TIMEOUT: Duration = Duration::from_secs(30);
const TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

type ServerStream = tokio_rustls::server::TlsStream<DuplexStream>;
type ClientStream = tokio_rustls::client::TlsStream<DuplexStream>;

fn identity() -> Identity {
    Identity::generate().expect("identity generation works")
}

/// Runs both handshake halves concurrently over an in-memory pipe.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (io::Result<ServerStream>, io::Result<ClientStream>) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server);
    let connector = TlsConnector::from(client);
    tokio::time::timeout(TIMEOUT, async move {
        tokio::join!(
            acceptor.accept(server_io),
            connector.connect(server_name(), client_io)
        )
    })
    .await
    .expect("handshake finishes within the timeout")
}

fn rustls_error(err: &io::Error) -> &rustls::Error {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("expected a rustls error, got {err:?}"))
}

/// The error is our pin check failing for a peer in `role`.
fn assert_not_pinned(err: &io::Error, role: Role) {
    match rustls_error(err) {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            let not_pinned = other
                .0
                .downcast_ref::<NotPinned>()
                .unwrap_or_else(|| panic!("expected NotPinned, got {other:?}"));
            assert_eq!(not_pinned.role, role);
            assert!(
                not_pinned
                    .to_string()
                    .contains("is not the pinned certificate"),
                "{not_pinned}"
            );
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
}

/// The peer aborted the handshake with `alert`: either during `connect`/`accept` or, for a
/// TLS 1.3 client (which finishes before the server has judged its certificate), on first read.
async fn assert_peer_alert<S>(result: io::Result<S>, alert: AlertDescription)
where
    S: tokio::io::AsyncRead + Unpin,
{
    let err = match result {
        Err(err) => err,
        Ok(mut stream) => {
            let mut buf = [0u8; 16];
            tokio::time::timeout(TIMEOUT, stream.read(&mut buf))
                .await
                .expect("read finishes within the timeout")
                .expect_err("a rejected peer must not get data")
        }
    };
    match rustls_error(&err) {
        rustls::Error::AlertReceived(received) => assert_eq!(*received, alert),
        other => panic!("expected alert {alert:?}, got {other:?}"),
    }
}

/// Both sides see the pinned peer, `h2` and `version`, and bytes flow both ways.
async fn assert_mutual_tls(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    server_id: &Identity,
    client_id: &Identity,
    version: ProtocolVersion,
) {
    let (server_stream, client_stream) = handshake(server, client).await;
    let mut server_stream = server_stream.expect("server accepts the pinned client");
    let mut client_stream = client_stream.expect("client accepts the pinned server");

    let (_, server_conn) = server_stream.get_ref();
    assert_eq!(server_conn.protocol_version(), Some(version));
    assert_eq!(server_conn.alpn_protocol(), Some(&b"h2"[..]));
    let seen = server_conn.peer_certificates().expect("client sent a cert");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].as_ref(), client_id.cert_der());

    let (_, client_conn) = client_stream.get_ref();
    assert_eq!(client_conn.protocol_version(), Some(version));
    assert_eq!(client_conn.alpn_protocol(), Some(&b"h2"[..]));
    let seen = client_conn.peer_certificates().expect("server sent a cert");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].as_ref(), server_id.cert_der());

    let exchange = async {
        client_stream.write_all(b"ping from host").await?;
        client_stream.flush().await?;
        let mut buf = [0u8; 14];
        server_stream.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping from host");
        server_stream.write_all(b"pong from plugin").await?;
        server_stream.flush().await?;
        let mut buf = [0u8; 16];
        client_stream.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong from plugin");
        io::Result::Ok(())
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("exchange finishes within the timeout")
        .expect("bytes flow both ways");
}
