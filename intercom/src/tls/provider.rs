//! The rustls crypto provider of AutoMTLS: nothing on a launch's path waits for aws-lc's
//! entropy pool.
//!
//! aws-lc seeds its random generator from two sources, the OS and CPU jitter, and gathers the
//! jitter the first time a process asks for random bytes: tens of milliseconds, once per
//! process, which every plugin pays on every launch (the profile in issue 16 put 71 % of a
//! Rust plugin's AutoMTLS start-up there). It can only be turned off when aws-lc is built, not
//! at run time, so this provider keeps aws-lc out of every step that needs randomness instead:
//!
//! | step | implementation | randomness |
//! |---|---|---|
//! | P-521 key, certificate and handshake signatures | RustCrypto `p521`, RFC 6979 | OS (key only) |
//! | serial numbers, TLS randoms, tickets | ring's `SystemRandom` | OS |
//! | local key exchange (X25519, P-256, P-384) | ring | OS |
//! | post-quantum key exchange (X25519MLKEM768) | aws-lc | aws-lc |
//! | record encryption, signature verification | aws-lc | none |
//!
//! ring has no P-521 at all, and go-plugin's certificates are P-521, so verification stays with
//! aws-lc (it needs no randomness). The OS generator is what Go's `crypto/rand` and ring use.
//!
//! The post-quantum group is what the Kubernetes runtime offers first (its traffic crosses a
//! network) and what servers accept from peers that offer it (Go's TLS offers it first); the
//! process runtime's connections stay on one machine and offer the OS-random groups only.

use std::fmt;
use std::sync::Arc;

use p521::ecdsa::signature::Signer as _;
use p521::elliptic_curve::Generate as _;
use p521::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _};
use rustls::crypto::{CryptoProvider, KeyProvider, SupportedKxGroup};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use super::kx;

/// The groups a connection that stays on one machine offers, all with OS randomness.
const LOCAL_KX_GROUPS: &[&dyn SupportedKxGroup] = &[kx::X25519, kx::SECP256R1, kx::SECP384R1];

/// Which key exchange groups a configuration offers (as TLS client) or accepts (as server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyExchange {
    /// The [`LOCAL_KX_GROUPS`]: for connections that stay on one machine.
    Local,
    /// X25519MLKEM768 first, then the local groups: for connections that cross a network,
    /// and for servers (a peer's offer picks the group; rustls follows the client's order).
    PostQuantumFirst,
}

/// A provider instance per config, so nothing depends on a process-wide default being
/// installed.
pub(crate) fn provider(kx: KeyExchange) -> Arc<CryptoProvider> {
    let aws_lc = rustls::crypto::aws_lc_rs::default_provider();
    let mut kx_groups = Vec::with_capacity(LOCAL_KX_GROUPS.len() + 1);
    if kx == KeyExchange::PostQuantumFirst {
        kx_groups.push(rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768);
    }
    kx_groups.extend_from_slice(LOCAL_KX_GROUPS);
    Arc::new(CryptoProvider {
        cipher_suites: aws_lc.cipher_suites,
        kx_groups,
        signature_verification_algorithms: aws_lc.signature_verification_algorithms,
        secure_random: &kx::OsRandom,
        key_provider: &P521Keys,
    })
}

/// Fills `bytes` from the OS generator (ring's `SystemRandom`).
pub(crate) fn fill_random(bytes: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
    use rustls::crypto::SecureRandom as _;
    kx::OsRandom.fill(bytes)
}

/// An ECDSA P-521 key: generated from the OS generator, signing deterministically (RFC 6979),
/// so it never asks for random bytes after it exists.
#[derive(Clone)]
pub(crate) struct P521Key {
    key: p521::ecdsa::SigningKey,
    /// The public key as an uncompressed SEC1 point (what rcgen's `der_bytes` means).
    point: Vec<u8>,
}

impl P521Key {
    /// A fresh key from the OS generator.
    pub(crate) fn generate() -> Result<Self, rustls::Error> {
        let key = p521::ecdsa::SigningKey::try_generate()
            .map_err(|e| rustls::Error::General(format!("the OS random generator failed: {e}")))?;
        Ok(Self::from_signing_key(key))
    }

    /// Loads a PKCS#8 `PrivateKeyInfo` holding a P-521 key (the form [`Self::to_pkcs8`]
    /// writes, and the form rcgen and aws-lc wrote in earlier versions).
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self, rustls::Error> {
        p521::ecdsa::SigningKey::from_pkcs8_der(der)
            .map(Self::from_signing_key)
            .map_err(|e| rustls::Error::General(format!("not a PKCS#8 ECDSA P-521 key: {e}")))
    }

    fn from_signing_key(key: p521::ecdsa::SigningKey) -> Self {
        let point = key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        Self { key, point }
    }

    /// The key as PKCS#8 DER.
    pub(crate) fn to_pkcs8(&self) -> Result<PrivatePkcs8KeyDer<'static>, rustls::Error> {
        let document = self
            .key
            .to_pkcs8_der()
            .map_err(|e| rustls::Error::General(format!("failed to encode the P-521 key: {e}")))?;
        Ok(PrivatePkcs8KeyDer::from(document.as_bytes().to_vec()))
    }

    /// An ASN.1 DER ECDSA signature of SHA-512(`message`).
    fn sign_der(&self, message: &[u8]) -> Result<Vec<u8>, p521::ecdsa::Error> {
        let signature: p521::ecdsa::DerSignature = self.key.try_sign(message)?;
        Ok(signature.as_bytes().to_vec())
    }
}

impl fmt::Debug for P521Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P521Key")
    }
}

impl rcgen::PublicKeyData for P521Key {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P521_SHA512
    }
}

impl rcgen::SigningKey for P521Key {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.sign_der(message)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

impl SigningKey for P521Key {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP521_SHA512)
            .then(|| Box::new(self.clone()) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        let spki = self.key.verifying_key().to_public_key_der().ok()?;
        Some(SubjectPublicKeyInfoDer::from(spki.as_bytes().to_vec()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

impl Signer for P521Key {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.sign_der(message)
            .map_err(|e| rustls::Error::General(format!("P-521 signing failed: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP521_SHA512
    }
}

/// Loads the identities' P-521 keys as [`P521Key`]s; other keys are refused (an
/// [`Identity`](super::Identity) holds nothing else).
#[derive(Debug)]
struct P521Keys;

impl KeyProvider for P521Keys {
    fn load_private_key(
        &self,
        key_der: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn SigningKey>, rustls::Error> {
        match key_der {
            PrivateKeyDer::Pkcs8(der) => Ok(Arc::new(P521Key::from_pkcs8(der.secret_pkcs8_der())?)),
            _ => Err(rustls::Error::General(
                "only PKCS#8 ECDSA P-521 keys are supported".into(),
            )),
        }
    }
}
