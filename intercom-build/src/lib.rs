//! build.rs code generation for `.proto`-first intercom plugins.
//!
//! Protos are compiled by [`protox`], a pure-Rust protobuf compiler, and fed to
//! `tonic-prost-build`, so a fresh machine needs no system `protoc`.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     intercom_build::compile_protos(&["proto/kv.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

use std::path::{Path, PathBuf};

/// Everything that can go wrong while generating code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `.proto` file failed to parse or resolve; the message carries file, line and column.
    #[error("failed to compile protos")]
    Compile(#[source] Box<protox::Error>),
    /// Writing the generated Rust failed.
    #[error("failed to generate Rust code from the compiled protos")]
    Generate(#[source] std::io::Error),
}

/// Starts a [`Builder`] with tonic server and client generation on.
pub fn configure() -> Builder {
    Builder {
        build_server: true,
        build_client: true,
        out_dir: None,
    }
}

/// Compiles `protos` (searched for in `includes`) with the default [`Builder`].
///
/// # Errors
/// See [`Builder::compile`].
pub fn compile_protos(
    protos: &[impl AsRef<Path>],
    includes: &[impl AsRef<Path>],
) -> Result<(), Error> {
    configure().compile(protos, includes)
}

/// Configures code generation; finish with [`Builder::compile`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    build_server: bool,
    build_client: bool,
    out_dir: Option<PathBuf>,
}

impl Builder {
    /// Whether to generate the tonic server (default `true`).
    pub fn build_server(mut self, enable: bool) -> Self {
        self.build_server = enable;
        self
    }

    /// Whether to generate the tonic client (default `true`).
    pub fn build_client(mut self, enable: bool) -> Self {
        self.build_client = enable;
        self
    }

    /// Where to write the generated files (default: `OUT_DIR`).
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Compiles the protos and writes one Rust file per proto package.
    ///
    /// Emits `cargo:rerun-if-changed` for every input file, so the build script
    /// reruns only when a `.proto` changes.
    ///
    /// # Errors
    /// [`Error::Compile`] with the location of the first problem in a `.proto`;
    /// [`Error::Generate`] when the output cannot be written.
    pub fn compile(
        self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<(), Error> {
        let mut compiler = protox::Compiler::new(includes.iter().map(AsRef::as_ref))
            .map_err(|e| Error::Compile(Box::new(e)))?;
        compiler.include_imports(true).include_source_info(true);
        for proto in protos {
            compiler
                .open_file(proto.as_ref())
                .map_err(|e| Error::Compile(Box::new(e)))?;
        }
        for file in compiler.files() {
            if let Some(path) = file.path() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
        let fds = compiler.file_descriptor_set();
        let mut builder = tonic_prost_build::configure()
            .build_server(self.build_server)
            .build_client(self.build_client);
        if let Some(dir) = self.out_dir {
            builder = builder.out_dir(dir);
        }
        builder.compile_fds(fds).map_err(Error::Generate)
    }
}
