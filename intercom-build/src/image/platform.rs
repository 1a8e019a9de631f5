//! [`Platform`]: the OS and CPU an image runs on.

use std::fmt;
use std::str::FromStr;

use super::ImageError;

/// The OCI platform of an image (`os`, `architecture`, optional `variant`), in Go's
/// `GOOS`/`GOARCH` names as the OCI image spec uses them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `v8` for some `arm64` images, `v7` for `arm`; usually `None`.
    pub variant: Option<String>,
}

impl Platform {
    /// A platform with no variant.
    pub fn new(os: impl Into<String>, architecture: impl Into<String>) -> Self {
        Self {
            os: os.into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Linux on this machine's CPU (`linux/amd64` on x86-64), the default of
    /// [`ImageBuilder::platform`](super::ImageBuilder::platform).
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            other => other, // arm, riscv64, s390x, mips64: same names
        };
        Self::new("linux", arch)
    }
}

impl Default for Platform {
    fn default() -> Self {
        Self::host()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Parses `os/architecture` or `os/architecture/variant`.
impl FromStr for Platform {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ImageError::InvalidPlatform {
            input: s.to_owned(),
        };
        let mut parts = s.split('/');
        let (Some(os), Some(arch)) = (parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let variant = parts.next();
        let well_formed = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if parts.next().is_some() || !well_formed(os) || !well_formed(arch) {
            return Err(invalid());
        }
        if variant.is_some_and(|v| !well_formed(v)) {
            return Err(invalid());
        }
        Ok(Self {
            os: os.to_owned(),
            architecture: arch.to_owned(),
            variant: variant.map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_platforms() -> Result<(), ImageError> {
        let p: Platform = "linux/arm64/v8".parse()?;
        assert_eq!((p.os.as_str(), p.architecture.as_str()), ("linux", "arm64"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            "linux/amd64".parse::<Platform>()?,
            Platform::new("linux", "amd64")
        );
        for bad in ["linux", "linux/", "Linux/amd64", "linux/amd64/v8/x", ""] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
        Ok(())
    }
}
