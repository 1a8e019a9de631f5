//! The "image registry": image references mapped to local executables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// A pulled image: what to run and the digest reported as `imageID`.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub(crate) executable: PathBuf,
    /// `sha256:<hex of the executable's bytes>`.
    pub(crate) id: String,
}

/// Why an image can't be "pulled".
#[derive(Debug, thiserror::Error)]
pub(crate) enum PullError {
    #[error("failed to pull image {reference:?}: not in the envtest image map (known: {known:?})")]
    Unknown {
        reference: String,
        known: Vec<String>,
    },
    #[error("failed to pull image {reference:?}: cannot read {executable:?}")]
    Read {
        reference: String,
        executable: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Digests by path, valid while size and mtime match; process-wide so that several
/// kubelets (one per test) hash a large test binary once.
static DIGESTS: Mutex<BTreeMap<PathBuf, CachedDigest>> = Mutex::new(BTreeMap::new());

/// Size, mtime and `sha256:…` digest of an executable.
type CachedDigest = (u64, Option<SystemTime>, String);

#[derive(Debug, Default)]
pub(crate) struct ImageStore {
    /// Normalised reference → executable.
    images: RwLock<BTreeMap<String, PathBuf>>,
}

impl ImageStore {
    pub(crate) fn new(images: &BTreeMap<String, PathBuf>) -> Self {
        let store = Self::default();
        for (reference, executable) in images {
            store.insert(reference, executable.clone());
        }
        store
    }

    pub(crate) fn insert(&self, reference: &str, executable: PathBuf) {
        let mut images = self.images.write().unwrap_or_else(|e| e.into_inner());
        images.insert(normalize(reference), executable);
    }

    /// Resolves `reference` and hashes its executable (on a blocking thread, cached).
    pub(crate) async fn pull(&self, reference: &str) -> Result<Image, PullError> {
        let executable = {
            let images = self.images.read().unwrap_or_else(|e| e.into_inner());
            match images.get(&normalize(reference)) {
                Some(path) => path.clone(),
                None => {
                    return Err(PullError::Unknown {
                        reference: reference.to_owned(),
                        known: images.keys().cloned().collect(),
                    });
                }
            }
        };
        let read_err = |source| PullError::Read {
            reference: reference.to_owned(),
            executable: executable.clone(),
            source,
        };
        let meta = tokio::fs::metadata(&executable).await.map_err(read_err)?;
        let key = (meta.len(), meta.modified().ok());
        if let Some((len, mtime, id)) = cached(&executable)
            && (len, mtime) == key
        {
            return Ok(Image { executable, id });
        }
        let path = executable.clone();
        let id = tokio::task::spawn_blocking(move || digest_file(&path))
            .await
            .map_err(|e| read_err(std::io::Error::other(e)))?
            .map_err(read_err)?;
        DIGESTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(executable.clone(), (key.0, key.1, id.clone()));
        Ok(Image { executable, id })
    }
}

fn cached(path: &Path) -> Option<CachedDigest> {
    DIGESTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(path)
        .cloned()
}

fn digest_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// Docker-style normalisation: `greeter` → `docker.io/library/greeter:latest`,
/// `me/greeter:1` → `docker.io/me/greeter:1`; references with a registry host keep it.
pub(crate) fn normalize(reference: &str) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    let last_component = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_component..].rfind(':') {
        Some(i) => {
            let (repo, tag) = name.split_at(last_component + i);
            (repo, Some(&tag[1..]))
        }
        None => (name, None),
    };
    let first = repo.split('/').next().unwrap_or_default();
    let has_registry =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let repo = if has_registry {
        repo.to_owned()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    match (tag, digest) {
        (Some(tag), Some(digest)) => format!("{repo}:{tag}@{digest}"),
        (None, Some(digest)) => format!("{repo}@{digest}"),
        (Some(tag), None) => format!("{repo}:{tag}"),
        (None, None) => format!("{repo}:latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(normalize("echo"), "docker.io/library/echo:latest");
        assert_eq!(normalize("echo:1"), "docker.io/library/echo:1");
        assert_eq!(normalize("me/echo"), "docker.io/me/echo:latest");
        assert_eq!(
            normalize("registry.example/echo:2"),
            "registry.example/echo:2"
        );
        assert_eq!(
            normalize("localhost:5000/echo"),
            "localhost:5000/echo:latest"
        );
        assert_eq!(
            normalize("localhost/echo@sha256:ab"),
            "localhost/echo@sha256:ab"
        );
        assert_eq!(
            normalize("docker.io/library/echo:latest"),
            "docker.io/library/echo:latest"
        );
    }
}
