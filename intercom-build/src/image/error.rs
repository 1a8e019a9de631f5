//! [`ImageError`]: everything that can go wrong while building or writing an image.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Why an image could not be built or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The reference is not `name:tag` (the tag names the image in `docker load` and kind).
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference {
        /// The reference given.
        reference: String,
        /// What is wrong and what is expected.
        reason: &'static str,
    },
    /// A platform string is not `os/architecture[/variant]`.
    #[error(
        "invalid platform `{input}`: expected `os/architecture` or `os/architecture/variant`, \
         e.g. `linux/amd64` or `linux/arm64/v8`"
    )]
    InvalidPlatform {
        /// The string given.
        input: String,
    },
    /// [`ImageBuilder::build`](super::ImageBuilder::build) without an entrypoint.
    #[error("no entrypoint binary: call `ImageBuilder::entrypoint_binary(path)` before `build()`")]
    NoEntrypoint,
    /// A destination in the image is not an absolute, `..`-free path.
    #[error("invalid path `{path}` in the image: {reason}")]
    InvalidPath {
        /// The destination given.
        path: String,
        /// What is wrong and what is expected.
        reason: &'static str,
    },
    /// An environment variable name that the OCI `KEY=VALUE` form cannot carry.
    #[error("invalid environment variable name `{name}`: it must be non-empty and contain no `=`")]
    InvalidEnv {
        /// The name given.
        name: String,
    },
    /// A source file could not be read.
    #[error("failed to read {path:?}")]
    Read {
        /// The file on the host.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A source is a directory or a special file.
    #[error("{path:?} is not a regular file (add each file of a directory with `file(src, dest)`)")]
    NotAFile {
        /// The path on the host.
        path: PathBuf,
    },
    /// The entrypoint binary is not an ELF file.
    #[error(
        "{path:?} is not an ELF executable (the entrypoint must be a Linux binary, not a script)"
    )]
    NotElf {
        /// The binary on the host.
        path: PathBuf,
    },
    /// The entrypoint's ELF headers are truncated or inconsistent.
    #[error("failed to read the ELF headers of {path:?}: {reason}")]
    MalformedElf {
        /// The binary on the host.
        path: PathBuf,
        /// What is inconsistent.
        reason: &'static str,
    },
    /// The entrypoint is built for another CPU than the image platform.
    #[error(
        "{path:?} is built for `{binary}` but the image platform is `{platform}` \
         (set the platform to match, e.g. `linux/{binary}`)"
    )]
    ArchMismatch {
        /// The binary on the host.
        path: PathBuf,
        /// The binary's architecture (OCI name).
        binary: &'static str,
        /// The image platform.
        platform: String,
    },
    /// [`Libraries::Static`](super::Libraries::Static) for a dynamically linked binary.
    #[error(
        "{path:?} is dynamically linked (its loader is {interpreter}) but the image was asked to \
         be static: use `Libraries::FromLdd` (`--lib-from-ldd`) to copy its libraries"
    )]
    NotStatic {
        /// The binary on the host.
        path: PathBuf,
        /// Its `PT_INTERP`.
        interpreter: String,
    },
    /// `ldd` could not be started.
    #[error(
        "failed to run `ldd` on {path:?} (it ships with the C library, e.g. Debian's `libc-bin`; \
         or build a static binary and use `Libraries::Static`)"
    )]
    LddSpawn {
        /// The binary on the host.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `ldd` exited with an error.
    #[error("`ldd {path:?}` failed ({status}): {stderr}")]
    LddFailed {
        /// The binary on the host.
        path: PathBuf,
        /// ldd's exit status.
        status: ExitStatus,
        /// ldd's stderr (truncated).
        stderr: String,
    },
    /// `ldd` calls a binary static that names a loader: usually another architecture.
    #[error(
        "`ldd` says {path:?} is not a dynamic executable, yet it names the loader {interpreter}: \
         is it built for another architecture? Use `Libraries::Static` and add its libraries \
         and loader with `file(src, dest)`"
    )]
    LddNotDynamic {
        /// The binary on the host.
        path: PathBuf,
        /// Its `PT_INTERP`.
        interpreter: String,
    },
    /// A needed library is missing on the host.
    #[error(
        "{path:?} needs `{library}`, which `ldd` could not find (install it, or point \
         LD_LIBRARY_PATH at it)"
    )]
    LibraryNotFound {
        /// The binary on the host.
        path: PathBuf,
        /// The library's name.
        library: String,
    },
    /// A line of `ldd` output that is not in a known form.
    #[error("failed to understand `ldd {path:?}` output line {line:?}")]
    LddOutput {
        /// The binary on the host.
        path: PathBuf,
        /// The line (truncated).
        line: String,
    },
    /// Two different sources for one destination.
    #[error("two sources for `{dest}` in the image: {first:?} and {second:?}")]
    DuplicatePath {
        /// The destination.
        dest: String,
        /// The source added first.
        first: PathBuf,
        /// The source added second.
        second: PathBuf,
    },
    /// A path is wanted both as a file and as a directory.
    #[error("`{path}` is already a {existing} in the image, so it cannot also be a {wanted}")]
    PathConflict {
        /// The path in the image.
        path: String,
        /// `file` or `directory`.
        existing: &'static str,
        /// `file` or `directory`.
        wanted: &'static str,
    },
    /// Encoding the layer tar failed (a path tar cannot store).
    #[error("failed to write the image layer")]
    Layer(#[source] io::Error),
    /// Writing the archive failed.
    #[error("failed to write the OCI archive {path:?}")]
    Write {
        /// The archive path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}
