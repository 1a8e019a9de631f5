//! Pinning: the peer is trusted when it presents exactly the certificate exchanged out of band.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};

use super::{TlsError, check_certificate, fingerprint};

/// Which peer a [`PinnedCertVerifier`] checks; only used in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
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
pub(super) struct NotPinned {
    pub(super) role: Role,
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
    pub(super) fn one(der: &[u8]) -> Result<Self, TlsError> {
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
pub(super) struct PinnedCertVerifier {
    pub(super) pins: PinSet,
    pub(super) role: Role,
    pub(super) algorithms: WebPkiSupportedAlgorithms,
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
