//! go-plugin's `SecureConfig`: the plugin binary is hashed before it is run.

use std::path::Path;

use sha2::Digest;

use crate::runtime::LaunchError;

/// Hash algorithms for [`SecureConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hash {
    /// SHA-256.
    Sha256,
}

/// Pins the plugin binary to a digest (go-plugin's `SecureConfig`): the file about to be
/// executed is hashed first and must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecureConfig {
    /// Expected digest bytes.
    pub checksum: Option<Vec<u8>>,
    /// The algorithm.
    pub hash: Option<Hash>,
}

impl SecureConfig {
    /// SHA-256 pinning to `checksum`.
    pub fn sha256(checksum: impl Into<Vec<u8>>) -> Self {
        Self {
            checksum: Some(checksum.into()),
            hash: Some(Hash::Sha256),
        }
    }

    pub(super) fn verify(&self, path: &Path) -> Result<(), LaunchError> {
        let expected = self
            .checksum
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or(LaunchError::MissingChecksum)?;
        let hash = self.hash.ok_or(LaunchError::MissingHash)?;
        let bytes = std::fs::read(path).map_err(|source| LaunchError::Checksum {
            path: path.display().to_string(),
            source,
        })?;
        let actual = match hash {
            Hash::Sha256 => sha2::Sha256::digest(&bytes).to_vec(),
        };
        // Constant-time compare: the digest is not secret, but this costs nothing.
        let same = actual.len() == expected.len()
            && actual
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(LaunchError::ChecksumMismatch {
                path: path.display().to_string(),
                expected: hex::encode(expected),
                actual: hex::encode(actual),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_config_errors_are_distinct() {
        let exe = std::env::current_exe().unwrap();
        assert!(matches!(
            SecureConfig::default().verify(&exe),
            Err(LaunchError::MissingChecksum)
        ));
        let no_hash = SecureConfig {
            checksum: Some(vec![1; 32]),
            hash: None,
        };
        assert!(matches!(
            no_hash.verify(&exe),
            Err(LaunchError::MissingHash)
        ));
        assert!(matches!(
            SecureConfig::sha256(vec![0; 32]).verify(&exe),
            Err(LaunchError::ChecksumMismatch { .. })
        ));
        let good = sha2::Sha256::digest(std::fs::read(&exe).unwrap()).to_vec();
        SecureConfig::sha256(good).verify(&exe).unwrap();
    }
}
