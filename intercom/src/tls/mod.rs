//! Per-launch mutual TLS, compatible with go-plugin's AutoMTLS (`mtls.go`).
//!
//! Each side of a go-plugin connection generates a throw-away [`Identity`] (an ECDSA P-521
//! key and a self-signed certificate shaped exactly like go-plugin's `generateCert()`), and
//! the two sides swap certificates out of band: the host passes its certificate as PEM in
//! `PLUGIN_CLIENT_CERT`, the plugin answers with its certificate (base64 DER) in the
//! handshake line. Each side then trusts exactly the other side's certificate.
//!
//! Go's TLS stack does that with ordinary X.509 chain building, using the peer certificate as
//! the only root. webpki refuses these certificates (they are CA certificates used as end
//! entities), so this module *pins* the peer certificate instead: the handshake succeeds only
//! if the peer presents a certificate byte-for-byte equal to the one exchanged out of band,
//! and the handshake signatures are then verified against that certificate's key. The
//! TLS server always requires a client certificate, in both directions (the host can be the TLS
//! server for broker connections).
//!
//! All configurations use one crypto provider of this module's own (`provider.rs`: aws-lc for
//! records and verification, the OS generator for every random byte, RustCrypto for the P-521
//! key), speak TLS 1.2 and 1.3 and advertise ALPN `h2`, as gRPC requires. Client
//! configurations for connections that stay on one machine ([`client_config`]) offer X25519,
//! P-256 and P-384; the Kubernetes runtime's also offer X25519MLKEM768, first; servers accept
//! all four.

mod identity;
mod kx;
mod pins;
mod provider;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use rustls::pki_types::pem::{PemObject as _, SectionKind};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, ServerConfig, SupportedProtocolVersion};
use sha2::{Digest as _, Sha256};

pub use identity::Identity;
pub(crate) use pins::PinSet;
use pins::{PinnedCertVerifier, Role};
use provider::{KeyExchange, provider};

/// The host name both sides put in their certificates and use for SNI (go-plugin: `"localhost"`).
pub(crate) const HOST_NAME: &str = "localhost";

/// The only ALPN protocol gRPC speaks.
const ALPN_H2: &[u8] = b"h2";

/// TLS versions offered and accepted (go-plugin sets `MinVersion: tls.VersionTLS12`).
const PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// How much of an offending input is quoted in an error.
const MAX_QUOTED_INPUT: usize = 64;

/// Errors from generating an [`Identity`], parsing a peer certificate or building a TLS config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The ECDSA P-521 key pair could not be generated.
    #[error("failed to generate ECDSA P-521 key pair")]
    GenerateKey {
        /// The cause: the OS random generator failed, or the key did not encode.
        #[source]
        source: crate::BoxError,
    },
    /// The random certificate serial number could not be drawn.
    #[error("failed to generate certificate serial number")]
    GenerateSerial {
        /// The cause reported by the crypto provider.
        #[source]
        source: crate::BoxError,
    },
    /// The system clock is so far off that the certificate validity cannot be represented.
    #[error("failed to compute certificate validity from the system clock (is the clock sane?)")]
    Validity,
    /// The self-signed certificate could not be built or signed.
    #[error("failed to sign certificate")]
    SignCertificate {
        /// The cause reported by rcgen.
        #[source]
        source: crate::BoxError,
    },
    /// The PEM text is malformed (bad base64, missing END line, ...).
    #[error("failed to parse PEM certificate {input:?}")]
    ParsePem {
        /// The start of the offending input.
        input: String,
        /// The cause reported by the PEM parser.
        #[source]
        source: crate::BoxError,
    },
    /// The PEM text holds no `CERTIFICATE` block.
    #[error("failed to find a CERTIFICATE block in PEM {input:?}")]
    MissingCertificate {
        /// The start of the offending input.
        input: String,
    },
    /// The PEM text holds more than one `CERTIFICATE` block, so there is nothing single to pin.
    #[error("failed to pick the peer certificate: expected one CERTIFICATE block, found {count}")]
    MultipleCertificates {
        /// How many `CERTIFICATE` blocks were found.
        count: usize,
    },
    /// The bytes are not a DER-encoded X.509 certificate.
    #[error("failed to parse X.509 certificate")]
    InvalidCertificate {
        /// The cause reported by rustls/webpki.
        #[source]
        source: crate::BoxError,
    },
    /// rustls refused the server configuration (for instance the key does not match the certificate).
    #[error("failed to build TLS server config")]
    ServerConfig {
        /// The cause reported by rustls.
        #[source]
        source: crate::BoxError,
    },
    /// rustls refused the client configuration (for instance the key does not match the certificate).
    #[error("failed to build TLS client config")]
    ClientConfig {
        /// The cause reported by rustls.
        #[source]
        source: crate::BoxError,
    },
}

/// Parses the PEM text of `PLUGIN_CLIENT_CERT` into the DER certificate to pin.
///
/// Exactly one `CERTIFICATE` block is expected (go-plugin sends one). Text outside PEM blocks and
/// blocks of other types are skipped, as Go's `AppendCertsFromPEM` does. The DER is checked to be
/// an X.509 certificate, so garbage is reported here rather than as a failed handshake later.
///
/// # Errors
///
/// [`TlsError::ParsePem`] for malformed PEM, [`TlsError::MissingCertificate`] when there is no
/// `CERTIFICATE` block, [`TlsError::MultipleCertificates`] when there are several, and
/// [`TlsError::InvalidCertificate`] when the block does not hold an X.509 certificate.
pub(crate) fn parse_pem_certificate(pem: &str) -> Result<Vec<u8>, TlsError> {
    let mut certificates = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem.as_bytes()) {
        match section {
            Ok((SectionKind::Certificate, der)) => certificates.push(der),
            Ok(_) => {}
            Err(source) => {
                return Err(TlsError::ParsePem {
                    input: quote_input(pem),
                    source: Box::new(source),
                });
            }
        }
    }
    let der = match <[Vec<u8>; 1]>::try_from(certificates) {
        Ok([der]) => der,
        Err(found) if found.is_empty() => {
            return Err(TlsError::MissingCertificate {
                input: quote_input(pem),
            });
        }
        Err(found) => {
            return Err(TlsError::MultipleCertificates { count: found.len() });
        }
    };
    check_certificate(&der)?;
    Ok(der)
}

/// Builds the TLS server config: presents `own`, requires the client to present exactly
/// `peer_der`, offers ALPN `h2`, TLS 1.2 and 1.3.
///
/// Use it on the plugin side (with the host certificate from `PLUGIN_CLIENT_CERT`) and on the
/// host side when it accepts broker connections (with the plugin certificate from the handshake).
///
/// # Errors
///
/// [`TlsError::InvalidCertificate`] if `peer_der` is not an X.509 certificate,
/// [`TlsError::ServerConfig`] if rustls refuses `own`.
pub(crate) fn server_config(
    own: &Identity,
    peer_der: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with_versions(own, peer_der, PROTOCOL_VERSIONS)
}

fn server_config_with_versions(
    own: &Identity,
    peer_der: &[u8],
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_pinning(own, PinSet::one(peer_der)?, versions)
}

/// A server config accepting any client certificate of `pins`, which may change later.
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))] // used by the Kubernetes runtime
pub(crate) fn server_config_any(
    own: &Identity,
    pins: &PinSet,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_pinning(own, pins.clone(), PROTOCOL_VERSIONS)
}

fn server_config_pinning(
    own: &Identity,
    pins: PinSet,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider(KeyExchange::PostQuantumFirst);
    let verifier = PinnedCertVerifier {
        pins,
        role: Role::Client,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|source| TlsError::ServerConfig {
            source: source.into(),
        })?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(own.cert_chain(), own.private_key())
        .map_err(|source| TlsError::ServerConfig {
            source: source.into(),
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Builds the TLS client config: presents `own` as client certificate, accepts only a server
/// presenting exactly `peer_der` (whatever the server name), offers ALPN `h2`, TLS 1.2 and 1.3.
///
/// Use it on the host side to dial the plugin, and on the plugin side to dial host brokers.
/// Connect with [`server_name()`].
///
/// # Errors
///
/// [`TlsError::InvalidCertificate`] if `peer_der` is not an X.509 certificate,
/// [`TlsError::ClientConfig`] if rustls refuses `own`.
pub fn client_config(own: &Identity, peer_der: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with_versions(own, peer_der, PROTOCOL_VERSIONS)
}

fn client_config_with_versions(
    own: &Identity,
    peer_der: &[u8],
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_pinning(own, PinSet::one(peer_der)?, versions, KeyExchange::Local)
}

/// A client config accepting any server certificate of `pins`, which may change later.
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))] // used by the Kubernetes runtime
pub(crate) fn client_config_any(
    own: &Identity,
    pins: &PinSet,
) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_pinning(
        own,
        pins.clone(),
        PROTOCOL_VERSIONS,
        KeyExchange::PostQuantumFirst,
    )
}

fn client_config_pinning(
    own: &Identity,
    pins: PinSet,
    versions: &[&'static SupportedProtocolVersion],
    kx: KeyExchange,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider(kx);
    let verifier = PinnedCertVerifier {
        pins,
        role: Role::Server,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|source| TlsError::ClientConfig {
            source: source.into(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(own.cert_chain(), own.private_key())
        .map_err(|source| TlsError::ClientConfig {
            source: source.into(),
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The server name to dial with (`localhost`, as go-plugin); pass it to
/// `tokio_rustls::TlsConnector::connect`. It is sent as SNI but not checked: the certificate is pinned.
pub fn server_name() -> ServerName<'static> {
    // Not outside data: a constant, and `server_name_is_localhost` runs this line.
    ServerName::try_from(HOST_NAME).expect("`localhost` is a valid DNS name")
}

pub(crate) fn check_certificate(der: &[u8]) -> Result<(), TlsError> {
    let cert = CertificateDer::from(der);
    ParsedCertificate::try_from(&cert)
        .map(drop)
        .map_err(|source| TlsError::InvalidCertificate {
            source: source.into(),
        })
}

pub(crate) fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn quote_input(input: &str) -> String {
    let mut chars = input.chars();
    let mut quoted: String = chars.by_ref().take(MAX_QUOTED_INPUT).collect();
    if chars.next().is_some() {
        quoted.push('…');
    }
    quoted
}
