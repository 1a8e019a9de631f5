//! [`Identity`]: a throw-away key and certificate, shaped like go-plugin's.

use std::fmt;

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::provider::{self, P521Key};
use super::{HOST_NAME, TlsError, fingerprint, server_config};

/// The organization go-plugin writes into its certificates' subject.
const ORGANIZATION: &str = "HashiCorp";

/// go-plugin's certificate lifetime, `262980 * time.Hour` (about 30 years).
const VALIDITY_HOURS: i64 = 262_980;

/// go-plugin back-dates `NotBefore` by 30 seconds to tolerate clock skew.
const BACKDATE_SECONDS: i64 = 30;

/// A certificate and its private key, shaped like go-plugin's `generateCert()`.
///
/// One is generated per launch by each side; it is never written to disk. `Debug` prints the
/// certificate fingerprint only, never the key.
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
        let mut serial = [0u8; 16]; // 128 random bits: uniform in [0, 2^128), as Go's rand.Int.
        provider::fill_random(&mut serial).map_err(|e| TlsError::GenerateSerial {
            source: Box::new(rustls::Error::from(e)),
        })?;

        let now = time::OffsetDateTime::now_utc();
        let not_before = now
            .checked_sub(time::Duration::seconds(BACKDATE_SECONDS))
            .ok_or(TlsError::Validity)?;
        let not_after = now
            .checked_add(time::Duration::hours(VALIDITY_HOURS))
            .ok_or(TlsError::Validity)?;

        let key = P521Key::generate().map_err(|source| TlsError::GenerateKey {
            source: source.into(),
        })?;
        let params = certificate_params(&serial, not_before, not_after).map_err(|source| {
            TlsError::SignCertificate {
                source: source.into(),
            }
        })?;
        let cert = params
            .self_signed(&key)
            .map_err(|source| TlsError::SignCertificate {
                source: source.into(),
            })?;

        Ok(Identity {
            cert: cert.der().clone(),
            key: key.to_pkcs8().map_err(|source| TlsError::GenerateKey {
                source: source.into(),
            })?,
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
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))] // used by the Kubernetes runtime
    pub(crate) fn private_key_pkcs8_der(&self) -> &[u8] {
        self.key.secret_pkcs8_der()
    }

    /// Rebuilds an identity from [`cert_der`](Self::cert_der) and
    /// [`private_key_pkcs8_der`](Self::private_key_pkcs8_der).
    ///
    /// # Errors
    /// [`TlsError::InvalidCertificate`] when the certificate does not parse or the key does
    /// not load.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))] // used by the Kubernetes runtime
    pub(crate) fn from_der(cert_der: &[u8], key_pkcs8_der: &[u8]) -> Result<Identity, TlsError> {
        let identity = Identity {
            cert: CertificateDer::from(cert_der.to_vec()),
            key: PrivatePkcs8KeyDer::from(key_pkcs8_der.to_vec()),
        };
        // Prove both parse and belong together by building a config with them.
        P521Key::from_pkcs8(key_pkcs8_der).map_err(|source| TlsError::InvalidCertificate {
            source: source.into(),
        })?;
        server_config(&identity, cert_der)?;
        Ok(identity)
    }

    /// Lower-case hex SHA-256 of the DER certificate, for logs (safe to print; the key is not involved).
    pub(crate) fn fingerprint(&self) -> String {
        fingerprint(self.cert.as_ref())
    }

    pub(super) fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }

    pub(super) fn private_key(&self) -> PrivateKeyDer<'static> {
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
