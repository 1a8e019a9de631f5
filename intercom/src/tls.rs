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
//! All configurations use rustls' aws-lc-rs provider explicitly (ring cannot do P-521), speak
//! TLS 1.2 and 1.3 and advertise ALPN `h2`, as gRPC requires.
//!
//! ```
//! # fn main() -> Result<(), intercom::tls::TlsError> {
//! use intercom::tls::{client_config, server_config, Identity};
//!
//! // The host generates its identity and sends `host.cert_pem()` in PLUGIN_CLIENT_CERT.
//! let host = Identity::generate()?;
//! // The plugin parses that, generates its own identity and serves TLS pinned to the host.
//! let host_der = intercom::tls::parse_pem_certificate(&host.cert_pem())?;
//! let plugin = Identity::generate()?;
//! let server = server_config(&plugin, &host_der)?;
//! // The host reads the plugin certificate from the handshake line and dials it.
//! let client = client_config(&host, plugin.cert_der())?;
//! assert_eq!(server.alpn_protocols, [b"h2".to_vec()]);
//! assert_eq!(client.alpn_protocols, [b"h2".to_vec()]);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::{PemObject as _, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme, SupportedProtocolVersion,
};
use sha2::{Digest as _, Sha256};

/// The host name both sides put in their certificates and use for SNI (go-plugin: `"localhost"`).
pub const HOST_NAME: &str = "localhost";

/// The organization go-plugin writes into its certificates' subject.
const ORGANIZATION: &str = "HashiCorp";

/// go-plugin's certificate lifetime, `262980 * time.Hour` (about 30 years).
const VALIDITY_HOURS: i64 = 262_980;

/// go-plugin back-dates `NotBefore` by 30 seconds to tolerate clock skew.
const BACKDATE_SECONDS: i64 = 30;

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
        /// The cause reported by rcgen.
        #[source]
        source: rcgen::Error,
    },
    /// The random certificate serial number could not be drawn.
    #[error("failed to generate certificate serial number")]
    GenerateSerial {
        /// The cause reported by the crypto provider.
        #[source]
        source: rustls::Error,
    },
    /// The system clock is so far off that the certificate validity cannot be represented.
    #[error("failed to compute certificate validity from the system clock (is the clock sane?)")]
    Validity,
    /// The self-signed certificate could not be built or signed.
    #[error("failed to sign certificate")]
    SignCertificate {
        /// The cause reported by rcgen.
        #[source]
        source: rcgen::Error,
    },
    /// The PEM text is malformed (bad base64, missing END line, ...).
    #[error("failed to parse PEM certificate {input:?}")]
    ParsePem {
        /// The start of the offending input.
        input: String,
        /// The cause reported by the PEM parser.
        #[source]
        source: rustls::pki_types::pem::Error,
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
        source: rustls::Error,
    },
    /// rustls refused the server configuration (for instance the key does not match the certificate).
    #[error("failed to build TLS server config")]
    ServerConfig {
        /// The cause reported by rustls.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the client configuration (for instance the key does not match the certificate).
    #[error("failed to build TLS client config")]
    ClientConfig {
        /// The cause reported by rustls.
        #[source]
        source: rustls::Error,
    },
}

/// A certificate and its private key, shaped like go-plugin's `generateCert()`.
///
/// One is generated per launch by each side; it is never written to disk. `Debug` prints the
/// certificate fingerprint only, never the key.
///
/// ```
/// # fn main() -> Result<(), intercom::tls::TlsError> {
/// let identity = intercom::tls::Identity::generate()?;
/// assert!(identity.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
/// assert_eq!(identity.fingerprint().len(), 64);
/// # Ok(()) }
/// ```
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Identity {
    /// Generates a fresh key and self-signed certificate exactly like go-plugin's `generateCert()`.
    ///
    /// ECDSA P-521 key; serial a random integer below 2^128; subject and issuer `O=HashiCorp,
    /// CN=localhost`; SAN DNS `localhost`; extended key usage clientAuth + serverAuth; key usage
    /// digitalSignature | keyEncipherment | keyAgreement | keyCertSign; basic constraints CA=true;
    /// valid from 30 s ago for 262 980 h; signed with ECDSA-SHA512. Both EKUs and the SAN are
    /// needed because Go peers verify the certificate as a root with hostname `localhost`, in both
    /// the client and the server role.
    ///
    /// # Errors
    ///
    /// Fails if key generation, the random source or signing fails, or the system clock is
    /// absurd ([`TlsError::Validity`]).
    pub fn generate() -> Result<Identity, TlsError> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let mut serial = [0u8; 16]; // 128 random bits: uniform in [0, 2^128), as Go's rand.Int.
        provider
            .secure_random
            .fill(&mut serial)
            .map_err(|e| TlsError::GenerateSerial { source: e.into() })?;

        let now = time::OffsetDateTime::now_utc();
        let not_before = now
            .checked_sub(time::Duration::seconds(BACKDATE_SECONDS))
            .ok_or(TlsError::Validity)?;
        let not_after = now
            .checked_add(time::Duration::hours(VALIDITY_HOURS))
            .ok_or(TlsError::Validity)?;

        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512)
            .map_err(|source| TlsError::GenerateKey { source })?;
        let params = certificate_params(&serial, not_before, not_after)
            .map_err(|source| TlsError::SignCertificate { source })?;
        let cert = params
            .self_signed(&key_pair)
            .map_err(|source| TlsError::SignCertificate { source })?;

        Ok(Identity {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key_pair.serialize_der()),
        })
    }

    /// The certificate, DER-encoded (what go-plugin base64-encodes into the handshake's CERT field).
    pub fn cert_der(&self) -> &[u8] {
        self.cert.as_ref()
    }

    /// The certificate as one PEM `CERTIFICATE` block with `\n` line endings and a trailing
    /// newline, byte-for-byte what go-plugin's host puts in `PLUGIN_CLIENT_CERT`.
    pub fn cert_pem(&self) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(self.cert.as_ref());
        let mut pem = String::with_capacity(body.len() + body.len() / 64 + 60);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        // Base64 output is ASCII, so splitting the bytes into 64-byte lines is lossless.
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }

    /// The private key, PKCS#8 DER. Secret: only for persisting the identity where the
    /// same host must prove itself again (a Kubernetes host that reattaches).
    pub fn private_key_pkcs8_der(&self) -> &[u8] {
        self.key.secret_pkcs8_der()
    }

    /// Rebuilds an identity from [`cert_der`](Self::cert_der) and
    /// [`private_key_pkcs8_der`](Self::private_key_pkcs8_der).
    ///
    /// # Errors
    /// [`TlsError::InvalidCertificate`] when the certificate does not parse or the key does
    /// not load.
    pub fn from_der(cert_der: &[u8], key_pkcs8_der: &[u8]) -> Result<Identity, TlsError> {
        let identity = Identity {
            cert: CertificateDer::from(cert_der.to_vec()),
            key: PrivatePkcs8KeyDer::from(key_pkcs8_der.to_vec()),
        };
        // Prove both parse and belong together by building a config with them.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        provider
            .key_provider
            .load_private_key(identity.private_key())
            .map_err(|source| TlsError::InvalidCertificate { source })?;
        server_config(&identity, cert_der)?;
        Ok(identity)
    }

    /// Lower-case hex SHA-256 of the DER certificate, for logs (safe to print; the key is not involved).
    pub fn fingerprint(&self) -> String {
        fingerprint(self.cert.as_ref())
    }

    fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// go-plugin's certificate template (`mtls.go`), for rcgen.
fn certificate_params(
    serial: &[u8],
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> Result<rcgen::CertificateParams, rcgen::Error> {
    let mut params = rcgen::CertificateParams::default();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
    params.not_before = not_before;
    params.not_after = not_after;
    // Go's pkix.Name encodes O before CN, as PrintableStrings.
    let mut name = rcgen::DistinguishedName::new();
    name.push(
        rcgen::DnType::OrganizationName,
        rcgen::DnValue::PrintableString(ORGANIZATION.try_into()?),
    );
    name.push(
        rcgen::DnType::CommonName,
        rcgen::DnValue::PrintableString(HOST_NAME.try_into()?),
    );
    params.distinguished_name = name;
    params.subject_alt_names = vec![rcgen::SanType::DnsName(HOST_NAME.try_into()?)];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    ];
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::KeyAgreement,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    Ok(params)
}

/// Parses the PEM text of `PLUGIN_CLIENT_CERT` into the DER certificate to pin.
///
/// Exactly one `CERTIFICATE` block is expected (go-plugin sends one). Text outside PEM blocks and
/// blocks of other types are skipped, as Go's `AppendCertsFromPEM` does. The DER is checked to be
/// an X.509 certificate, so garbage is reported here rather than as a failed handshake later.
///
/// ```
/// # fn main() -> Result<(), intercom::tls::TlsError> {
/// let identity = intercom::tls::Identity::generate()?;
/// let der = intercom::tls::parse_pem_certificate(&identity.cert_pem())?;
/// assert_eq!(der, identity.cert_der());
/// assert!(intercom::tls::parse_pem_certificate("not a certificate").is_err());
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`TlsError::ParsePem`] for malformed PEM, [`TlsError::MissingCertificate`] when there is no
/// `CERTIFICATE` block, [`TlsError::MultipleCertificates`] when there are several, and
/// [`TlsError::InvalidCertificate`] when the block does not hold an X.509 certificate.
pub fn parse_pem_certificate(pem: &str) -> Result<Vec<u8>, TlsError> {
    let mut certificates = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem.as_bytes()) {
        match section {
            Ok((SectionKind::Certificate, der)) => certificates.push(der),
            Ok(_) => {}
            Err(source) => {
                return Err(TlsError::ParsePem {
                    input: quote_input(pem),
                    source,
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
/// ```
/// # fn main() -> Result<(), intercom::tls::TlsError> {
/// use intercom::tls::{server_config, Identity};
/// let (plugin, host) = (Identity::generate()?, Identity::generate()?);
/// let config = server_config(&plugin, host.cert_der())?;
/// let _acceptor = tokio_rustls::TlsAcceptor::from(config);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`TlsError::InvalidCertificate`] if `peer_der` is not an X.509 certificate,
/// [`TlsError::ServerConfig`] if rustls refuses `own`.
pub fn server_config(own: &Identity, peer_der: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
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
    let provider = provider();
    let verifier = PinnedCertVerifier {
        pins,
        role: Role::Client,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|source| TlsError::ServerConfig { source })?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(own.cert_chain(), own.private_key())
        .map_err(|source| TlsError::ServerConfig { source })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Builds the TLS client config: presents `own` as client certificate, accepts only a server
/// presenting exactly `peer_der` (whatever the server name), offers ALPN `h2`, TLS 1.2 and 1.3.
///
/// Use it on the host side to dial the plugin, and on the plugin side to dial host brokers.
/// Connect with [`server_name()`].
///
/// ```
/// # fn main() -> Result<(), intercom::tls::TlsError> {
/// use intercom::tls::{client_config, Identity};
/// let (host, plugin) = (Identity::generate()?, Identity::generate()?);
/// let config = client_config(&host, plugin.cert_der())?;
/// let _connector = tokio_rustls::TlsConnector::from(config);
/// # Ok(()) }
/// ```
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
    client_config_pinning(own, PinSet::one(peer_der)?, versions)
}

/// A client config accepting any server certificate of `pins`, which may change later.
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))] // used by the Kubernetes runtime
pub(crate) fn client_config_any(
    own: &Identity,
    pins: &PinSet,
) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_pinning(own, pins.clone(), PROTOCOL_VERSIONS)
}

fn client_config_pinning(
    own: &Identity,
    pins: PinSet,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = PinnedCertVerifier {
        pins,
        role: Role::Server,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|source| TlsError::ClientConfig { source })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(own.cert_chain(), own.private_key())
        .map_err(|source| TlsError::ClientConfig { source })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The server name to dial with (`localhost`, as go-plugin); pass it to
/// `tokio_rustls::TlsConnector::connect`. It is sent as SNI but not checked: the certificate is pinned.
pub fn server_name() -> ServerName<'static> {
    // Not outside data: a constant, and `server_name_is_localhost` runs this line.
    ServerName::try_from(HOST_NAME).expect("`localhost` is a valid DNS name")
}

/// A provider instance per config, so nothing depends on a process-wide default being installed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn check_certificate(der: &[u8]) -> Result<(), TlsError> {
    let cert = CertificateDer::from(der);
    ParsedCertificate::try_from(&cert)
        .map(drop)
        .map_err(|source| TlsError::InvalidCertificate { source })
}

fn fingerprint(der: &[u8]) -> String {
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

/// Which peer a [`PinnedCertVerifier`] checks; only used in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Client => "client",
            Role::Server => "server",
        })
    }
}

/// The handshake error when the peer presents a certificate other than the pinned one.
#[derive(Debug)]
struct NotPinned {
    role: Role,
    presented: String,
    pinned: String,
}

impl fmt::Display for NotPinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} certificate (sha256 {}) is not the pinned certificate (sha256 {})",
            self.role, self.presented, self.pinned
        )
    }
}

impl std::error::Error for NotPinned {}

/// A changing set of accepted peer certificates, by name: e.g. the replicas of a plugin
/// reached through one Service name, where any replica may answer. Clones share the set.
#[derive(Clone, Default)]
pub(crate) struct PinSet(Arc<RwLock<BTreeMap<String, CertificateDer<'static>>>>);

impl PinSet {
    /// A set of exactly `der`.
    fn one(der: &[u8]) -> Result<Self, TlsError> {
        let set = PinSet::default();
        set.insert("peer", der)?;
        Ok(set)
    }

    /// Accepts `der` (under `name`, replacing what was there).
    pub(crate) fn insert(&self, name: &str, der: &[u8]) -> Result<(), TlsError> {
        check_certificate(der)?;
        self.write()
            .insert(name.to_owned(), CertificateDer::from(der.to_vec()));
        Ok(())
    }

    /// Stops accepting the certificate named `name`.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))] // used by the Kubernetes runtime
    pub(crate) fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    fn contains(&self, der: &[u8]) -> bool {
        self.read().values().any(|c| c.as_ref() == der)
    }

    fn fingerprints(&self) -> String {
        let pins = self.read();
        if pins.is_empty() {
            return "none".into();
        }
        pins.values()
            .map(|c| fingerprint(c.as_ref()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, CertificateDer<'static>>> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, CertificateDer<'static>>> {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for PinSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PinSet").field(&self.fingerprints()).finish()
    }
}

/// Accepts exactly the pinned certificates of a [`PinSet`] (usually one), as server or client
/// verifier, and checks handshake signatures against the one presented.
///
/// This replaces Go's chain building with the peer certificate as sole root: the only chain that
/// could be built there is the pinned certificate itself, so equality is the same trust decision.
/// Validity dates and extensions are not checked: the certificate is fresh from the peer process
/// and was handed over out of band.
struct PinnedCertVerifier {
    pins: PinSet,
    role: Role,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCertVerifier {
    fn check(&self, presented: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.pins.contains(presented.as_ref()) {
            return Ok(());
        }
        let error = NotPinned {
            role: self.role,
            presented: fingerprint(presented.as_ref()),
            pinned: self.pins.fingerprints(),
        };
        tracing::debug!(
            error = &error as &dyn std::error::Error,
            "rejecting TLS peer"
        );
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(error)),
        )))
    }
}

impl fmt::Debug for PinnedCertVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedCertVerifier")
            .field("role", &self.role)
            .field("pinned", &self.pins.fingerprints())
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Duration;

    use rustls::pki_types::alg_id;
    use rustls::{AlertDescription, CipherSuite, ProtocolVersion};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};
    use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

    use super::*;

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

    #[tokio::test]
    async fn mutual_handshake_with_pinned_certs_succeeds() {
        let (plugin, host) = (identity(), identity());
        let server = server_config(&plugin, host.cert_der()).expect("server config");
        let client = client_config(&host, plugin.cert_der()).expect("client config");
        assert_mutual_tls(server, client, &plugin, &host, ProtocolVersion::TLSv1_3).await;
    }

    #[tokio::test]
    async fn tls12_and_tls13_both_work_with_p521() {
        for (versions, expected) in [
            (TLS12_ONLY, ProtocolVersion::TLSv1_2),
            (TLS13_ONLY, ProtocolVersion::TLSv1_3),
        ] {
            let (plugin, host) = (identity(), identity());
            // The server keeps its default (1.2 + 1.3); the client restricts the version.
            let server = server_config(&plugin, host.cert_der()).expect("server config");
            let client = client_config_with_versions(&host, plugin.cert_der(), versions)
                .expect("client config");
            let (server_stream, _client_stream) =
                handshake(Arc::clone(&server), Arc::clone(&client)).await;
            let suite = server_stream
                .expect("handshake succeeds")
                .get_ref()
                .1
                .negotiated_cipher_suite()
                .expect("suite negotiated")
                .suite();
            if expected == ProtocolVersion::TLSv1_2 {
                // A P-521 certificate forces an ECDHE_ECDSA suite in TLS 1.2.
                assert!(
                    matches!(
                        suite,
                        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                            | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                    ),
                    "{suite:?}"
                );
            }
            assert_mutual_tls(server, client, &plugin, &host, expected).await;
        }
    }

    #[tokio::test]
    async fn server_rejects_client_with_unrelated_identity() {
        for versions in [TLS12_ONLY, TLS13_ONLY] {
            let (plugin, host, stranger) = (identity(), identity(), identity());
            let server = server_config(&plugin, host.cert_der()).expect("server config");
            // The stranger pins the right server, but presents its own certificate.
            let client = client_config_with_versions(&stranger, plugin.cert_der(), versions)
                .expect("client config");
            let (server_result, client_result) = handshake(server, client).await;
            let err = server_result.expect_err("server must reject the stranger");
            assert_not_pinned(&err, Role::Client);
            assert_peer_alert(client_result, AlertDescription::CertificateUnknown).await;
        }
    }

    #[tokio::test]
    async fn client_rejects_server_with_unpinned_cert() {
        for versions in [TLS12_ONLY, TLS13_ONLY] {
            let (plugin, host, impostor) = (identity(), identity(), identity());
            // The impostor serves its own certificate and would accept the host.
            let server = server_config(&impostor, host.cert_der()).expect("server config");
            let client = client_config_with_versions(&host, plugin.cert_der(), versions)
                .expect("client config");
            let (server_result, client_result) = handshake(server, client).await;
            let err = client_result.expect_err("client must reject the impostor");
            assert_not_pinned(&err, Role::Server);
            assert_peer_alert(server_result, AlertDescription::CertificateUnknown).await;
        }
    }

    #[tokio::test]
    async fn pin_set_accepts_any_member_and_follows_changes() {
        let (a, b, host) = (identity(), identity(), identity());
        let pins = PinSet::default();
        pins.insert("a", a.cert_der()).expect("pin a");
        pins.insert("b", b.cert_der()).expect("pin b");
        let client = client_config_any(&host, &pins).expect("client config");
        for plugin in [&a, &b] {
            let server = server_config(plugin, host.cert_der()).expect("server config");
            let (server_result, client_result) = handshake(server, client.clone()).await;
            server_result.expect("server side");
            client_result.expect("a pinned replica is accepted");
        }
        pins.remove("b");
        let server = server_config(&b, host.cert_der()).expect("server config");
        let (_, client_result) = handshake(server, client.clone()).await;
        let err = client_result.expect_err("a removed pin is refused");
        assert_not_pinned(&err, Role::Server);
        assert!(
            err.to_string().contains(&a.fingerprint()),
            "the message lists what is pinned: {err}"
        );
        assert!(pins.insert("c", b"not a certificate").is_err());

        let server_side = server_config_any(&a, &pins).expect("server config");
        pins.insert("host", host.cert_der()).expect("pin host");
        let (server_result, client_result) = handshake(
            server_side,
            client_config(&host, a.cert_der()).expect("client"),
        )
        .await;
        server_result.expect("the server accepts a client pinned later");
        client_result.expect("client side");
    }

    #[tokio::test]
    async fn server_rejects_client_without_certificate() {
        for versions in [TLS12_ONLY, TLS13_ONLY] {
            let (plugin, host) = (identity(), identity());
            let server = server_config(&plugin, host.cert_der()).expect("server config");
            let provider = provider();
            let verifier = PinnedCertVerifier {
                pins: PinSet::one(plugin.cert_der()).expect("pin"),
                role: Role::Server,
                algorithms: provider.signature_verification_algorithms,
            };
            let mut client = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .expect("versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            client.alpn_protocols = vec![b"h2".to_vec()];
            let (server_result, client_result) = handshake(server, Arc::new(client)).await;
            let err = server_result.expect_err("server must require a client certificate");
            assert!(
                matches!(rustls_error(&err), rustls::Error::NoCertificatesPresented),
                "{err:?}"
            );
            assert_peer_alert(client_result, AlertDescription::CertificateRequired).await;
        }
    }

    #[test]
    fn generated_cert_has_go_plugin_shape() {
        let before = time::OffsetDateTime::now_utc().unix_timestamp();
        let id = identity();
        let after = time::OffsetDateTime::now_utc().unix_timestamp();

        let (rest, cert) = X509Certificate::from_der(id.cert_der()).expect("valid X.509");
        assert!(rest.is_empty(), "no trailing bytes");

        // Key: ECDSA on P-521; signature: ECDSA with SHA-512.
        let spki = cert.public_key();
        assert_eq!(
            spki.algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .expect("named curve");
        assert_eq!(curve, x509_parser::oid_registry::OID_NIST_EC_P521);
        assert_eq!(
            cert.signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA512
        );

        // Self-signed: issuer == subject, and the signature verifies with the cert's own key.
        assert_eq!(cert.issuer().as_raw(), cert.subject().as_raw());
        let p521_sha512 = rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .all
            .iter()
            .find(|alg| {
                alg.public_key_alg_id() == alg_id::ECDSA_P521
                    && alg.signature_alg_id() == alg_id::ECDSA_SHA512
            })
            .expect("aws-lc-rs verifies ECDSA P-521 SHA-512");
        p521_sha512
            .verify_signature(
                &spki.subject_public_key.data,
                cert.tbs_certificate.as_ref(),
                &cert.signature_value.data,
            )
            .expect("self-signature verifies");

        // Subject: O=HashiCorp, CN=localhost (O first, as Go encodes it).
        let subject = cert.subject();
        let cn: Vec<_> = subject.iter_common_name().map(|a| a.as_str()).collect();
        let org: Vec<_> = subject.iter_organization().map(|a| a.as_str()).collect();
        assert_eq!(cn.len(), 1);
        assert_eq!(cn[0].as_ref().ok(), Some(&"localhost"));
        assert_eq!(org.len(), 1);
        assert_eq!(org[0].as_ref().ok(), Some(&"HashiCorp"));
        assert_eq!(subject.to_string(), "O=HashiCorp, CN=localhost");

        // Extensions.
        let basic = cert
            .basic_constraints()
            .expect("well-formed")
            .expect("basic constraints present");
        assert!(basic.value.ca);
        assert!(basic.critical);
        let eku = cert
            .extended_key_usage()
            .expect("well-formed")
            .expect("EKU present");
        assert!(eku.value.client_auth && eku.value.server_auth);
        assert!(!eku.value.any);
        let ku = cert
            .key_usage()
            .expect("well-formed")
            .expect("key usage present");
        assert!(ku.value.digital_signature());
        assert!(ku.value.key_encipherment());
        assert!(ku.value.key_agreement());
        assert!(ku.value.key_cert_sign());
        assert!(!ku.value.crl_sign() && !ku.value.non_repudiation());
        let san = cert
            .subject_alternative_name()
            .expect("well-formed")
            .expect("SAN present");
        assert_eq!(san.value.general_names, [GeneralName::DNSName("localhost")]);

        // Serial: random, below 2^128 (at most 16 value bytes after DER's sign byte).
        let serial = cert.raw_serial();
        let serial = serial.strip_prefix(&[0]).unwrap_or(serial);
        assert!(serial.len() <= 16, "serial {serial:02x?}");
        let other = identity();
        let (_, other_cert) = X509Certificate::from_der(other.cert_der()).expect("valid X.509");
        assert_ne!(cert.serial, other_cert.serial, "serials are random");

        // Validity: now - 30 s .. now + 262980 h.
        let not_before = cert.validity().not_before.timestamp();
        let not_after = cert.validity().not_after.timestamp();
        assert!(
            (before - 31..=after - 29).contains(&not_before),
            "{not_before} vs [{before}, {after}]"
        );
        let lifetime = not_after - not_before;
        let expected = 262_980 * 3600 + 30;
        assert!((lifetime - expected).abs() <= 1, "lifetime {lifetime}s");
    }

    #[test]
    fn pem_round_trips_and_rejects_garbage() {
        let id = identity();
        let pem = id.cert_pem();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.ends_with("\n-----END CERTIFICATE-----\n"));
        assert!(pem.lines().all(|line| line.len() <= 64), "Go wraps at 64");
        assert!(!pem.contains('\r'));
        assert_eq!(
            parse_pem_certificate(&pem).expect("round trip"),
            id.cert_der()
        );
        // CRLF and surrounding text are tolerated, like Go's pem.Decode.
        let crlf = format!("junk before\r\n{}", pem.replace('\n', "\r\n"));
        assert_eq!(parse_pem_certificate(&crlf).expect("crlf"), id.cert_der());

        let err = parse_pem_certificate("").expect_err("empty");
        assert!(
            matches!(err, TlsError::MissingCertificate { .. }),
            "{err:?}"
        );
        let err = parse_pem_certificate("hello world").expect_err("no PEM");
        assert!(
            matches!(err, TlsError::MissingCertificate { .. }),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("failed to "), "{err}");
        assert!(err.to_string().contains("hello world"), "{err}");

        let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let err = parse_pem_certificate(bad_base64).expect_err("bad base64");
        assert!(matches!(err, TlsError::ParsePem { .. }), "{err:?}");
        assert!(std::error::Error::source(&err).is_some());

        let truncated = &pem[..pem.len() / 2];
        let err = parse_pem_certificate(truncated).expect_err("no END line");
        assert!(matches!(err, TlsError::ParsePem { .. }), "{err:?}");

        let not_x509 = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        let err = parse_pem_certificate(not_x509).expect_err("not X.509");
        assert!(
            matches!(err, TlsError::InvalidCertificate { .. }),
            "{err:?}"
        );

        let key_only = "-----BEGIN EC PRIVATE KEY-----\naGVsbG8=\n-----END EC PRIVATE KEY-----\n";
        let err = parse_pem_certificate(key_only).expect_err("no cert block");
        assert!(
            matches!(err, TlsError::MissingCertificate { .. }),
            "{err:?}"
        );

        let two = format!("{pem}{}", identity().cert_pem());
        let err = parse_pem_certificate(&two).expect_err("two certs");
        assert!(
            matches!(err, TlsError::MultipleCertificates { count: 2 }),
            "{err:?}"
        );

        let long = "x".repeat(1000);
        let err = parse_pem_certificate(&long).expect_err("garbage");
        assert!(err.to_string().len() < 200, "input is truncated: {err}");
    }

    #[test]
    fn configs_reject_garbage_pins_and_set_h2() {
        let id = identity();
        let err = server_config(&id, b"not a certificate").expect_err("garbage pin");
        assert!(
            matches!(err, TlsError::InvalidCertificate { .. }),
            "{err:?}"
        );
        let err = client_config(&id, b"").expect_err("empty pin");
        assert!(
            matches!(err, TlsError::InvalidCertificate { .. }),
            "{err:?}"
        );

        let server = server_config(&id, id.cert_der()).expect("server config");
        assert_eq!(server.alpn_protocols, [b"h2".to_vec()]);
        let client = client_config(&id, id.cert_der()).expect("client config");
        assert_eq!(client.alpn_protocols, [b"h2".to_vec()]);
        assert_eq!(server_name().to_str(), "localhost");
        assert!(matches!(server_name(), ServerName::DnsName(_)));
    }

    #[test]
    fn identity_debug_and_fingerprint() {
        let id = identity();
        let fp = id.fingerprint();
        assert_eq!(fp.len(), 64);
        assert!(
            fp.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(fp, hex::encode(Sha256::digest(id.cert_der())));
        let debug = format!("{id:?}");
        assert!(debug.contains(&fp), "{debug}");
        assert!(
            !debug.to_lowercase().contains("key"),
            "no key in Debug: {debug}"
        );
        let copy = id.clone();
        assert_eq!(copy.cert_der(), id.cert_der());
        assert_ne!(identity().fingerprint(), fp);
    }
}
