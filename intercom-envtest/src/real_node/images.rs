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
        // containerd holds the blobs now.
        if let Err(error) = std::fs::remove_file(&archive) {
            tracing::debug!(%error, archive = %archive.display(), "archive not removed");
        }
        digests.insert(reference.clone(), digest);
    }
    Ok(digests)
}

/// Writes the image archive for `reference` and returns its manifest digest. Plugin
/// images run as uid 65532 with a writable `/tmp`, as the pods intercom generates expect.
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
        .libraries(Libraries::FromLdd)
        .dir("/tmp", 0o1777);
    if pause {
        builder = builder.args(["infinity"]);
    }
    let image = builder.build().map_err(err)?;
    image.write_oci_archive(archive).map_err(err)?;
    Ok(image.manifest_digest().as_str().to_owned())
}
