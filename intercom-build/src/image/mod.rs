//! OCI image archives from a binary and its shared libraries, with no registry and no
//! container engine (feature `image`).
//!
//! [`ImageBuilder`] puts one ELF binary, the loader and libraries `ldd` lists for it (or
//! nothing, for a static binary), and any extra files into a single reproducible layer;
//! [`Image::write_oci_archive`] writes an OCI image layout as a tar that also carries
//! Docker's `manifest.json`, so `ctr images import` (containerd 1.6+), `kind load
//! image-archive` and `docker load` all take it. [`import_into_containerd`] and
//! [`load_into_kind`] run those tools.
//!
//! ```no_run
//! use intercom_build::image::{ImageBuilder, import_into_containerd};
//!
//! let image = ImageBuilder::new("example.com/greeter:1")
//!     .entrypoint_binary("target/release/greeter")
//!     .dir("/tmp", 0o1777)
//!     .user("65532:65532")
//!     .env("RUST_LOG", "info")
//!     .build()?;
//! image.write_oci_archive("greeter.tar")?;
//! println!("{} {}", image.reference(), image.manifest_digest());
//! import_into_containerd("greeter.tar", "/run/containerd/containerd.sock", "k8s.io")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Reproducibility
//! Entries are sorted, owned by `0:0`, dated 0, with modes fixed by the builder (0755 for
//! binaries, libraries and directories, 0644 for non-executable files); the config's
//! `created` is the epoch. The same inputs give the same manifest digest on any machine.
//!
//! # Libraries
//! With [`Libraries::FromLdd`] (the default) a binary with an ELF `PT_INTERP` gets every
//! path `ldd` prints, the loader included, as a regular file at that path holding the
//! symlink target's content (so `/lib64/ld-linux-x86-64.so.2` exists even where it is a
//! symlink on the host). The loader then finds the libraries in its built-in
//! directories, as the host's did. A binary without `PT_INTERP` is static and gets none.

mod archive;
mod builder;
mod elf;
mod error;
mod import;
mod layer;
mod ldd;
mod platform;

pub use archive::{
    Digest, Image, MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_LAYER, MEDIA_TYPE_MANIFEST,
};
pub use builder::{ImageBuilder, Libraries};
pub use error::ImageError;
pub use import::{ImportError, import_into_containerd, load_into_kind};
pub use platform::Platform;
