//! [`ImageBuilder`]: what goes into the image, and [`ImageBuilder::build`].

use std::fs;
use std::path::{Path, PathBuf};

use super::archive::{RunConfig, validate_reference};
use super::elf::{self, ElfInfo, ElfProblem};
use super::layer::Tree;
use super::ldd::{self, Linkage};
use super::{Image, ImageError, Platform};

/// The `PATH` set when [`ImageBuilder::env`] sets none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which runtime files of the entrypoint binary go into the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Libraries {
    /// A dynamic binary (one with an ELF `PT_INTERP`) gets every library `ldd` lists and
    /// its loader, each at the path `ldd` reports (symlinks followed: the file at that
    /// path holds the target's content). A static binary gets nothing.
    #[default]
    FromLdd,
    /// Nothing is added, and a binary that names a loader is an error (it could not run).
    Static,
}

/// Describes a single-layer image around one binary; finish with [`ImageBuilder::build`].
///
/// See the [module docs](super) for an example.
#[derive(Debug, Clone)]
#[must_use]
pub struct ImageBuilder {
    reference: String,
    binary: Option<PathBuf>,
    binary_dest: Option<String>,
    libraries: Libraries,
    files: Vec<(PathBuf, String)>,
    dirs: Vec<(String, u32)>,
    run: RunConfig,
    platform: Platform,
}

impl ImageBuilder {
    /// Starts an image named `reference` (`name:tag`, e.g. `example.com/greeter:1`). For
    /// kind and other CRI clusters use the fully qualified name pods ask for
    /// (`docker.io/library/greeter:1`, not `greeter:1`).
    pub fn new(reference: impl Into<String>) -> Self {
        Self {
            reference: reference.into(),
            binary: None,
            binary_dest: None,
            libraries: Libraries::default(),
            files: Vec::new(),
            dirs: Vec::new(),
            run: RunConfig::default(),
            platform: Platform::host(),
        }
    }

    /// The ELF binary the image runs (its `Entrypoint`), copied to
    /// `/usr/local/bin/<file name>` unless [`ImageBuilder::binary_dest`] says otherwise.
    pub fn entrypoint_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Where the entrypoint binary goes in the image (absolute).
    pub fn binary_dest(mut self, dest: impl Into<String>) -> Self {
        self.binary_dest = Some(dest.into());
        self
    }

    /// Which shared libraries to add; [`Libraries::FromLdd`] by default.
    pub fn libraries(mut self, libraries: Libraries) -> Self {
        self.libraries = libraries;
        self
    }

    /// Copies the host file `src` (symlinks followed) to `dest` in the image, mode 0755 if
    /// any execute bit is set on `src`, else 0644.
    pub fn file(mut self, src: impl Into<PathBuf>, dest: impl Into<String>) -> Self {
        self.files.push((src.into(), dest.into()));
        self
    }

    /// Adds an empty directory, e.g. `dir("/tmp", 0o1777)`. Parents of files need no call:
    /// they are added with mode 0755.
    pub fn dir(mut self, dest: impl Into<String>, mode: u32) -> Self {
        self.dirs.push((dest.into(), mode));
        self
    }

    /// The user (and group) the entrypoint runs as: `65532`, `65532:65532`; root if unset.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.run.user = Some(user.into());
        self
    }

    /// The working directory, created (mode 0755) if nothing else creates it.
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.run.workdir = Some(dir.into());
        self
    }

    /// Sets an environment variable (a later call for the same key replaces the value).
    /// `PATH` defaults to Docker's.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        match self.run.env.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.run.env.push((key, value)),
        }
        self
    }

    /// The default arguments of the entrypoint (OCI `Cmd`), which a pod's `args` replace.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.run.cmd = args.into_iter().map(Into::into).collect();
        self
    }

    /// Sets a label (`org.opencontainers.image.source`, …).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.run.labels.insert(key.into(), value.into());
        self
    }

    /// The platform; [`Platform::host`] by default. The binary must be built for it.
    pub fn platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// Reads every file, assembles the layer, config and manifest, and computes their
    /// digests. Same inputs, same digests.
    ///
    /// # Caveats
    /// - Libraries a program loads at run time with `dlopen` (glibc's NSS modules for
    ///   user and host lookups, plugins) are not in `ldd`'s list: add them with `file`.
    /// - `$ORIGIN`-relative `RUNPATH`s resolve on the host; in the image the libraries
    ///   sit at their host paths, so keep the binary's relative layout with
    ///   [`ImageBuilder::binary_dest`] and [`ImageBuilder::file`] if you rely on them.
    /// - `ldd` runs the binary's loader: use it on binaries you trust.
    ///
    /// # Errors
    /// An invalid reference, path or env name; an unreadable file; an entrypoint that is
    /// not ELF, is for another architecture, or whose libraries `ldd` cannot resolve;
    /// two sources for one path. Each [`ImageError`] names the value at fault.
    pub fn build(self) -> Result<Image, ImageError> {
        validate_reference(&self.reference)?;
        let binary = self.binary.as_deref().ok_or(ImageError::NoEntrypoint)?;
        if let Some((name, _)) = self
            .run
            .env
            .iter()
            .find(|(k, _)| k.is_empty() || k.contains('='))
        {
            return Err(ImageError::InvalidEnv { name: name.clone() });
        }
        let data = read_file(binary)?;
        let info = elf::inspect(&data).map_err(|problem| match problem {
            ElfProblem::NotElf => ImageError::NotElf {
                path: binary.to_owned(),
            },
            ElfProblem::Malformed(reason) => ImageError::MalformedElf {
                path: binary.to_owned(),
                reason,
            },
        })?;
        if let Some(arch) = info
            .architecture
            .filter(|a| *a != self.platform.architecture)
        {
            return Err(ImageError::ArchMismatch {
                path: binary.to_owned(),
                binary: arch,
                platform: self.platform.to_string(),
            });
        }
        let dest = match &self.binary_dest {
            Some(dest) => dest.clone(),
            None => default_dest(binary)?,
        };
        let mut tree = Tree::default();
        tree.add_file(&dest, binary, data, 0o755)?;
        for lib in runtime_files(self.libraries, binary, &info)? {
            let dest = lib.to_str().ok_or_else(|| ImageError::InvalidPath {
                path: lib.display().to_string(),
                reason: "library paths must be UTF-8",
            })?;
            tree.add_file(dest, &lib, read_file(&lib)?, 0o755)?;
        }
        for (src, dest) in &self.files {
            let mode = if is_executable(src) { 0o755 } else { 0o644 };
            tree.add_file(dest, src, read_file(src)?, mode)?;
        }
        for (dir, mode) in &self.dirs {
            tree.add_dir(dir, *mode)?;
        }
        let mut run = self.run;
        if let Some(workdir) = run.workdir.as_ref().filter(|w| !tree.has_dir(w)) {
            tree.add_dir(workdir, 0o755)?;
        }
        if !run.env.iter().any(|(k, _)| k == "PATH") {
            run.env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
        }
        run.entrypoint = vec![format!("/{}", super::layer::normalize(&dest)?)];
        Image::assemble(self.reference, self.platform, &run, &tree)
    }
}

/// The loader and libraries a binary needs, per `libraries`.
fn runtime_files(
    libraries: Libraries,
    binary: &Path,
    info: &ElfInfo,
) -> Result<Vec<PathBuf>, ImageError> {
    let Some(interpreter) = &info.interpreter else {
        return Ok(Vec::new()); // static: nothing to add in either mode
    };
    if libraries == Libraries::Static {
        return Err(ImageError::NotStatic {
            path: binary.to_owned(),
            interpreter: interpreter.clone(),
        });
    }
    match ldd::libraries(binary)? {
        Linkage::Static => Err(ImageError::LddNotDynamic {
            path: binary.to_owned(),
            interpreter: interpreter.clone(),
        }),
        Linkage::Dynamic(mut paths) => {
            // ldd lists the loader by its PT_INTERP path; make sure, whatever its version prints.
            let interpreter = PathBuf::from(interpreter);
            if !paths.contains(&interpreter) {
                paths.push(interpreter);
            }
            Ok(paths)
        }
    }
}

fn default_dest(binary: &Path) -> Result<String, ImageError> {
    let name = binary.file_name().and_then(|n| n.to_str());
    let name = name.ok_or_else(|| ImageError::InvalidPath {
        path: binary.display().to_string(),
        reason: "the binary needs a UTF-8 file name, or set `binary_dest`",
    })?;
    Ok(format!("/usr/local/bin/{name}"))
}

/// Reads a regular file (symlinks followed).
fn read_file(path: &Path) -> Result<Vec<u8>, ImageError> {
    let read_error = |source| ImageError::Read {
        path: path.to_owned(),
        source,
    };
    if !fs::metadata(path).map_err(read_error)?.is_file() {
        return Err(ImageError::NotAFile {
            path: path.to_owned(),
        });
    }
    fs::read(path).map_err(read_error)
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(_: &Path) -> bool {
    false
}
