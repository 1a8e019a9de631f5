//! The node's images, built from local executables with `intercom-build`'s image builder
//! and imported into containerd: the pause image and one image per
//! [`EnvBuilder::image`](crate::EnvBuilder::image) entry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use intercom_build::image::{ImageBuilder, Libraries};

use super::{RealNodeError, containerd, mkdir};

/// The sandbox ("pause") image: `sleep infinity` with its libraries. A pod's sandbox only
/// holds its namespaces; containerd stops it with SIGKILL.
pub const PAUSE_IMAGE: &str = "intercom-envtest.local/pause:1";
/// The executable the pause image runs.
const PAUSE_EXECUTABLE: &str = "/bin/sleep";
/// Carried by every other image (see [`build`]).
const ENV_EXECUTABLE: &str = "/usr/bin/env";

/// Builds and imports the pause image and every entry of `images` whose reference is a
/// tag (a digest reference names a digest no local build can have: the real node pulls
/// it, which fails, as it should). Returns each reference's manifest digest.
pub(super) async fn import_all(
    ctr: &Path,
    socket: &Path,
    dir: &Path,
    images: &BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, String>, RealNodeError> {
    mkdir(dir)?;
    let mut digests = BTreeMap::new();
    let pause = (PAUSE_IMAGE.to_owned(), PathBuf::from(PAUSE_EXECUTABLE));
    let all = std::iter::once((&pause.0, &pause.1)).chain(images);
    for (index, (reference, executable)) in all.enumerate() {
        if reference.contains('@') {
            tracing::debug!(%reference, "digest reference: not built");
            continue;
        }
        let archive = dir.join(format!("{index}.tar"));
        let digest = build(reference, executable, &archive, reference == PAUSE_IMAGE)?;
        containerd::import(ctr, socket, &archive).await?;
        // Also under `<repository>@<manifest digest>`, as a pull by digest would leave it:
        // containerd's CRI resolves a pod's digest reference by image name.
        let pinned = format!("{}@{digest}", repository(reference));
        containerd::run_ctr(ctr, socket, &["images", "tag", reference, &pinned]).await?;
        // containerd holds the blobs now.
        if let Err(error) = std::fs::remove_file(&archive) {
            tracing::debug!(%error, archive = %archive.display(), "archive not removed");
        }
        digests.insert(reference.clone(), digest);
    }
    Ok(digests)
}

/// `reference` without its tag (`example.com/a/b:1` → `example.com/a/b`).
fn repository(reference: &str) -> &str {
    let name_start = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[name_start..].find(':') {
        Some(colon) => &reference[..name_start + colon],
        None => reference,
    }
}

/// Writes the image archive for `reference` and returns its manifest digest.
///
/// The executable sits at its own absolute path, as on the process kubelet (which runs
/// host paths), so a pod `command` naming it works on both nodes; `/usr/bin/env` comes
/// along (it needs only the C library a dynamic executable brings) for commands that
/// adjust the environment; `/tmp` is writable (mode 1777).
fn build(
    reference: &str,
    executable: &Path,
    archive: &Path,
    pause: bool,
) -> Result<String, RealNodeError> {
    let err = |source| RealNodeError::ImageBuild {
        reference: reference.to_owned(),
        executable: executable.to_owned(),
        source,
    };
    let mut builder = ImageBuilder::new(reference)
        .entrypoint_binary(executable)
        .binary_dest(executable.to_string_lossy())
        .libraries(Libraries::FromLdd)
        .dir("/tmp", 0o1777);
    if !pause {
        builder = builder.file(ENV_EXECUTABLE, ENV_EXECUTABLE);
    }
    if pause {
        builder = builder.args(["infinity"]);
    }
    let image = builder.build().map_err(err)?;
    image.write_oci_archive(archive).map_err(err)?;
    Ok(image.manifest_digest().as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::repository;

    #[test]
    fn the_repository_is_the_reference_without_its_tag() {
        assert_eq!(
            repository("intercom.test/test-plugin:1"),
            "intercom.test/test-plugin"
        );
        assert_eq!(repository("localhost:5000/a/b:v2"), "localhost:5000/a/b");
        assert_eq!(repository("busybox"), "busybox");
    }
}
