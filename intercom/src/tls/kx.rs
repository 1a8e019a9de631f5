//! Key exchange and random bytes from ring, built on ring itself rather than on rustls'
//! `ring` feature.
//!
//! rustls picks its process-wide default provider from its crate features, and panics when
//! both `aws_lc_rs` and `ring` are on (`ClientConfig::builder()`: "Could not automatically
//! determine the process-level CryptoProvider"). kube builds its TLS configs that way, and so
//! do many of our users' other crates, so intercom must leave rustls with aws-lc alone.

use std::fmt;

use ring::agreement;
use ring::rand::{SecureRandom as _, SystemRandom};
use rustls::crypto::SupportedKxGroup;
use rustls::crypto::{ActiveKeyExchange, GetRandomFailed, SecureRandom, SharedSecret};
use rustls::{NamedGroup, PeerMisbehaved};

/// Random bytes from the OS generator (ring's `SystemRandom`).
#[derive(Debug)]
pub(crate) struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&self, bytes: &mut [u8]) -> Result<(), GetRandomFailed> {
        SystemRandom::new().fill(bytes).map_err(|_| GetRandomFailed)
    }
}

/// Ephemeral ECDH on curve25519 (RFC 7748).
pub(crate) static X25519: &dyn SupportedKxGroup = &KxGroup {
    name: NamedGroup::X25519,
    algorithm: &agreement::X25519,
    valid_share: |share| share.len() == 32,
};

/// Ephemeral ECDH on NIST P-256.
pub(crate) static SECP256R1: &dyn SupportedKxGroup = &KxGroup {
    name: NamedGroup::secp256r1,
    algorithm: &agreement::ECDH_P256,
    valid_share: uncompressed_point,
};

/// Ephemeral ECDH on NIST P-384.
pub(crate) static SECP384R1: &dyn SupportedKxGroup = &KxGroup {
    name: NamedGroup::secp384r1,
    algorithm: &agreement::ECDH_P384,
    valid_share: uncompressed_point,
};

/// TLS 1.3 allows only the uncompressed SEC1 encoding (RFC 8446 §4.2.8.2), and TLS 1.2 as we
/// offer it negotiates nothing else; ring checks that the point is on the curve.
fn uncompressed_point(share: &[u8]) -> bool {
    share.first() == Some(&0x04)
}

/// One key exchange group.
struct KxGroup {
    name: NamedGroup,
    algorithm: &'static agreement::Algorithm,
    /// Whether a peer's key share has the shape the group's encoding requires.
    valid_share: fn(&[u8]) -> bool,
}

impl fmt::Debug for KxGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.name.fmt(f)
    }
}

impl SupportedKxGroup for KxGroup {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let private =
            agreement::EphemeralPrivateKey::generate(self.algorithm, &SystemRandom::new())
                .map_err(|_| GetRandomFailed)?;
        let public = private.compute_public_key().map_err(|_| GetRandomFailed)?;
        Ok(Box::new(Exchange {
            name: self.name,
            algorithm: self.algorithm,
            private,
            public,
            valid_share: self.valid_share,
        }))
    }

    fn name(&self) -> NamedGroup {
        self.name
    }
}

/// A key exchange under way: our ephemeral key pair, waiting for the peer's share.
struct Exchange {
    name: NamedGroup,
    algorithm: &'static agreement::Algorithm,
    private: agreement::EphemeralPrivateKey,
    public: agreement::PublicKey,
    valid_share: fn(&[u8]) -> bool,
}

impl ActiveKeyExchange for Exchange {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        if !(self.valid_share)(peer) {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        let peer = agreement::UnparsedPublicKey::new(self.algorithm, peer);
        agreement::agree_ephemeral(self.private, &peer, |secret| SharedSecret::from(secret))
            .map_err(|_| PeerMisbehaved::InvalidKeyShare.into())
    }

    fn pub_key(&self) -> &[u8] {
        self.public.as_ref()
    }

    fn group(&self) -> NamedGroup {
        self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both sides of each group derive the same secret, and a share of the wrong shape is
    /// refused before ring sees it.
    #[test]
    fn each_group_agrees_with_itself_and_refuses_malformed_shares() {
        for group in [X25519, SECP256R1, SECP384R1] {
            let ours = group.start().expect("start");
            let theirs = group.start().expect("start");
            let their_share = theirs.pub_key().to_vec();
            let our_share = ours.pub_key().to_vec();
            let a = ours.complete(&their_share).expect("complete");
            let b = theirs.complete(&our_share).expect("complete");
            assert_eq!(a.secret_bytes(), b.secret_bytes(), "{group:?}");

            let malformed = group.start().expect("start").complete(&[0x02; 33]);
            assert!(
                matches!(
                    malformed,
                    Err(rustls::Error::PeerMisbehaved(
                        PeerMisbehaved::InvalidKeyShare
                    ))
                ),
                "{group:?}: {:?}",
                malformed.err()
            );
        }
    }
}
