//! [`Image`], its JSON documents, and the OCI image-layout archive that carries them.
//!
//! The archive holds, with mtime 0 and owner `0:0`:
//!
//! - `oci-layout`: `{"imageLayoutVersion":"1.0.0"}`;
//! - `index.json`: one manifest descriptor with its platform and the annotations
//!   `io.containerd.image.name` and `org.opencontainers.image.ref.name`, both the full
//!   reference (containerd's importer names the image after the first);
//! - `manifest.json`: Docker's `[{"Config", "RepoTags", "Layers"}]`, for `docker load`
//!   (containerd ignores it when `oci-layout` is present);
//! - `blobs/sha256/<hex>`: the manifest, the config and the uncompressed layer.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::layer::{Tree, header};
use super::{ImageError, Platform};

/// Media type of the image index (`index.json`).
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of the image manifest.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the image config.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of the (uncompressed) layer.
pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// The `created` time written into the config: the epoch, so digests do not depend on
/// when the image was built.
const CREATED: &str = "1970-01-01T00:00:00Z";

/// A content digest, `sha256:<64 lowercase hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// The SHA-256 digest of `data`.
    pub fn sha256(data: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(data))))
    }

    /// `sha256:…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part, which is also the blob's file name under `blobs/sha256/`.
    pub fn hex(&self) -> &str {
        self.0.strip_prefix("sha256:").unwrap_or(&self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
struct Blob {
    media_type: &'static str,
    digest: Digest,
    data: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, data: Vec<u8>) -> Self {
        Self {
            media_type,
            digest: Digest::sha256(&data),
            data,
        }
    }

    fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest.0, "size": self.data.len() })
    }

    fn path(&self) -> String {
        format!("blobs/sha256/{}", self.digest.hex())
    }
}

/// The runtime settings of the config's `config` object.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunConfig {
    pub(crate) user: Option<String>,
    pub(crate) workdir: Option<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) entrypoint: Vec<String>,
    pub(crate) cmd: Vec<String>,
    pub(crate) labels: BTreeMap<String, String>,
}

/// A built single-layer image, held in memory; see [`ImageBuilder`](super::ImageBuilder).
#[derive(Debug, Clone)]
pub struct Image {
    reference: String,
    platform: Platform,
    files: Vec<String>,
    manifest: Blob,
    config: Blob,
    layer: Blob,
}

impl Image {
    pub(crate) fn assemble(
        reference: String,
        platform: Platform,
        run: &RunConfig,
        tree: &Tree,
    ) -> Result<Self, ImageError> {
        let layer = Blob::new(MEDIA_TYPE_LAYER, tree.to_tar()?);
        let config = Blob::new(
            MEDIA_TYPE_CONFIG,
            to_json(&config(&platform, run, &layer.digest)),
        );
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
        });
        let manifest = Blob::new(MEDIA_TYPE_MANIFEST, to_json(&manifest));
        let files = tree.files();
        Ok(Self {
            reference,
            platform,
            files,
            manifest,
            config,
            layer,
        })
    }

    /// The reference the archive names the image by, e.g. `example.com/greeter:1`.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The platform in the config and the index.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The manifest digest: what `ctr images ls` shows as DIGEST and a pod's `imageID` ends in.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest.digest
    }

    /// The config digest (Docker's "image ID").
    pub fn config_digest(&self) -> &Digest {
        &self.config.digest
    }

    /// The layer digest, which is also its diff ID (the layer is not compressed).
    pub fn layer_digest(&self) -> &Digest {
        &self.layer.digest
    }

    /// The manifest JSON.
    pub fn manifest_json(&self) -> &[u8] {
        &self.manifest.data
    }

    /// The config JSON.
    pub fn config_json(&self) -> &[u8] {
        &self.config.data
    }

    /// Absolute paths of every file in the layer, sorted (directories left out).
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Writes the OCI image-layout archive to `path`, through a `.partial` sibling that is
    /// renamed into place, so a failed write leaves no truncated archive behind.
    ///
    /// # Errors
    /// [`ImageError::Write`] if creating, writing or renaming the file fails.
    pub fn write_oci_archive(&self, path: impl AsRef<Path>) -> Result<(), ImageError> {
        let path = path.as_ref();
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let write = || -> io::Result<()> {
            let file = io::BufWriter::new(fs::File::create(&partial)?);
            self.write_oci_archive_to(file)?
                .into_inner()
                .map_err(io::Error::from)?
                .sync_all()?;
            fs::rename(&partial, path)
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&partial);
            ImageError::Write {
                path: path.to_owned(),
                source,
            }
        })
    }

    /// Writes the OCI image-layout archive to `out` and returns it.
    ///
    /// # Errors
    /// Any error of `out`.
    pub fn write_oci_archive_to<W: Write>(&self, out: W) -> io::Result<W> {
        let mut tar = tar::Builder::new(out);
        let file = |tar: &mut tar::Builder<W>, name: &str, data: &[u8]| {
            let mut h = header(tar::EntryType::Regular, 0o644, data.len());
            tar.append_data(&mut h, name, data)
        };
        file(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        file(&mut tar, "index.json", &self.index_json())?;
        file(&mut tar, "manifest.json", &self.docker_manifest_json())?;
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut h, dir, io::empty())?;
        }
        let mut blobs = [&self.manifest, &self.config, &self.layer];
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        for blob in blobs {
            file(&mut tar, &blob.path(), &blob.data)?;
        }
        tar.into_inner()
    }

    fn index_json(&self) -> Vec<u8> {
        let mut manifest = self.manifest.descriptor();
        manifest["platform"] = platform_json(&self.platform);
        manifest["annotations"] = json!({
            "io.containerd.image.name": self.reference,
            "org.opencontainers.image.ref.name": self.reference,
        });
        to_json(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [manifest],
        }))
    }

    fn docker_manifest_json(&self) -> Vec<u8> {
        to_json(&json!([{
            "Config": self.config.path(),
            "RepoTags": [self.reference],
            "Layers": [self.layer.path()],
        }]))
    }
}

fn platform_json(platform: &Platform) -> Value {
    let mut value = json!({ "os": platform.os, "architecture": platform.architecture });
    if let Some(variant) = &platform.variant {
        value["variant"] = json!(variant);
    }
    value
}

fn config(platform: &Platform, run: &RunConfig, diff_id: &Digest) -> Value {
    let mut config = serde_json::Map::new();
    let env: Vec<String> = run.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    config.insert("Env".into(), json!(env));
    config.insert("Entrypoint".into(), json!(run.entrypoint));
    if !run.cmd.is_empty() {
        config.insert("Cmd".into(), json!(run.cmd));
    }
    if let Some(user) = &run.user {
        config.insert("User".into(), json!(user));
    }
    if let Some(workdir) = &run.workdir {
        config.insert("WorkingDir".into(), json!(workdir));
    }
    if !run.labels.is_empty() {
        config.insert("Labels".into(), json!(run.labels));
    }
    let mut value = platform_json(platform);
    value["created"] = json!(CREATED);
    value["config"] = Value::Object(config);
    value["rootfs"] = json!({ "type": "layers", "diff_ids": [diff_id.0] });
    value["history"] = json!([{ "created": CREATED, "created_by": "intercom-build image" }]);
    value
}

/// Compact JSON with sorted keys (serde_json's map is a `BTreeMap`), so equal values
/// give equal bytes.
fn to_json(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value)
        .expect("a `Value` has string keys, and writing to a `Vec` cannot fail")
}

/// Checks `reference` is `name:tag` (the name may have a registry host and port).
pub(crate) fn validate_reference(reference: &str) -> Result<(), ImageError> {
    let invalid = |reason| ImageError::InvalidReference {
        reference: reference.to_owned(),
        reason,
    };
    if reference.contains('@') {
        return Err(invalid(
            "a digest cannot be chosen (it is computed); give `name:tag`",
        ));
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    let Some((_, tag)) = last.rsplit_once(':') else {
        return Err(invalid("it needs a tag, e.g. `example.com/greeter:1`"));
    };
    let name = &reference[..reference.len() - tag.len() - 1];
    let tag_ok = tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if tag.is_empty() || !tag_ok {
        return Err(invalid(
            "a tag is 1-128 of `A-Za-z0-9_.-`, not starting with `.` or `-`",
        ));
    }
    let name_ok = name.split('/').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-:".contains(&b))
    });
    if !name_ok {
        return Err(invalid(
            "the name is `/`-separated parts of `a-z0-9._-` (a host may add `:port`)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects_references() {
        for ok in [
            "greeter:1",
            "example.com/greeter:1",
            "localhost:5000/a/b:v1.2-rc_3",
        ] {
            assert!(validate_reference(ok).is_ok(), "{ok}");
        }
        for bad in [
            "greeter",
            "Greeter:1",
            "a/b:",
            "a@sha256:00",
            "a b:1",
            "a:-x",
            "localhost:5000/a",
            ":1",
        ] {
            assert!(validate_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_is_sha256_hex() {
        let d = Digest::sha256(b"");
        assert_eq!(
            d.hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string(), format!("sha256:{}", d.hex()));
    }
}
