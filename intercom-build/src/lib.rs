//! build.rs code generation for `.proto`-first intercom plugins.
//!
//! Protos are compiled by [`protox`], a pure-Rust protobuf compiler, and fed to
//! `tonic-prost-build`, so a fresh machine needs no system `protoc`. On top of tonic's
//! server and client, every service named with [`Builder::plugin`] gets intercom glue:
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     intercom_build::configure()
//!         .handshake(1, "BASIC_PLUGIN", "hello")
//!         .plugin("kv_grpc", "proto.KV")
//!         .compile(&["proto/kv.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```
//!
//! Include tonic's code and the glue in the same module (the glue refers to tonic's
//! `kv_server`/`kv_client` modules by relative path):
//!
//! ```ignore
//! // `ignore`: needs the build script above to have generated OUT_DIR/proto.rs.
//! pub mod proto {
//!     intercom::tonic::include_proto!("proto");
//!     intercom::include_plugin!("proto"); // OUT_DIR/proto.intercom.rs
//! }
//! ```
//!
//! `intercom::include_plugin!("proto")` is
//! `include!(concat!(env!("OUT_DIR"), "/proto.intercom.rs"))`.
//!
//! # Generated items
//!
//! In the module of package `P` (file `OUT_DIR/P.intercom.rs`), for
//! `.plugin("kv_grpc", "P.KV")` (names follow tonic's: `KV` → `Kv`):
//!
//! - `pub const HANDSHAKE: intercom::HandshakeConfig` (with [`Builder::handshake`]);
//! - `pub const KV_PLUGIN_NAME: &str = "kv_grpc"`, also `KvPlugin::NAME`;
//! - `pub struct KvPlugin`, an [`intercom::GrpcPlugin`]: `KvPlugin::server(impl kv_server::Kv)`
//!   (or `KvPlugin::server_with_broker(|broker| impl)` when the implementation dials
//!   callbacks) in the plugin, `KvPlugin::client()` in the host, where `dispense` returns
//!   `kv_client::KvClient<Channel>`.
//!
//! For `.callback("P.PutRequest.add_server", "P.AddHelper")` (go-plugin's bidirectional
//! pattern: a `uint32` field carries a broker id):
//!
//! - `pub fn serve_add_server(&GrpcBroker, impl add_helper_server::AddHelper)
//!   -> Result<(u32, BrokerServer), BrokerError>`: the caller serves its callback on a fresh
//!   id, puts the id in `add_server` and keeps the `BrokerServer` until the call returns;
//! - `pub async fn dial_add_server(&GrpcBroker, id) -> Result<AddHelperClient<Channel>, BrokerError>`:
//!   the receiver dials the id it got.
//!
//! Callback helpers are named after the field, so two callback fields of one package must
//! have different names; the service and the field's message must be in the same package.
//!
//! # Container images without a registry
//!
//! Feature `image` (off by default) adds the `image` module and the `intercom-image`
//! binary: an OCI image archive from a plugin binary and the shared libraries it needs,
//! which `ctr images import`, `kind load image-archive` and `docker load` accept, with no
//! registry or container engine involved. See the [module docs] and the README.
//!
//! [`intercom::GrpcPlugin`]: https://docs.rs/intercom/latest/intercom/trait.GrpcPlugin.html
//! [module docs]: https://docs.rs/intercom-build/latest/intercom_build/image/
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod emit;
#[cfg(feature = "image")]
#[cfg_attr(docsrs, doc(cfg(feature = "image")))]
pub mod image;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// tonic's protobuf code generator, which [`Builder::tonic`] configures; re-exported so a
/// build script needs no direct dependency to name its builder.
pub use tonic_prost_build;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{FileDescriptorProto, FileDescriptorSet};

/// Everything that can go wrong while generating code.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `.proto` file failed to parse or resolve; the message starts with
    /// `file:line:column:` when protox knows the location.
    #[error("failed to compile protos: {}", located(.0))]
    Compile(Box<protox::Error>),
    /// A [`Builder::plugin`] or [`Builder::callback`] argument names nothing usable.
    #[error("invalid intercom-build configuration: {0}")]
    Config(ConfigError),
    /// Writing the generated Rust failed.
    #[error("failed to generate Rust code from the compiled protos")]
    Generate(#[source] std::io::Error),
}

/// A [`Builder::plugin`] or [`Builder::callback`] that does not fit the compiled protos.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No compiled proto defines the service.
    #[error("no service `{service}` in the compiled protos (services: {})", known.join(", "))]
    UnknownService {
        /// The fully qualified name asked for.
        service: String,
        /// Every service the protos define, fully qualified.
        known: Vec<String>,
    },
    /// No top-level message has the field.
    #[error("no field `{field}` (expected `package.Message.field` of a top-level message)")]
    UnknownField {
        /// The fully qualified field asked for.
        field: String,
    },
    /// A callback field that cannot carry a broker id.
    #[error("callback field `{field}` must be a singular `uint32` (it carries a broker id)")]
    NotABrokerId {
        /// The fully qualified field.
        field: String,
    },
    /// The callback service lives in another package than the field's message.
    #[error("callback service `{service}` must be in the package of `{field}` (`{package}`)")]
    CallbackPackage {
        /// The fully qualified field.
        field: String,
        /// The fully qualified service.
        service: String,
        /// The field's package.
        package: String,
    },
    /// Two callback fields of one package share a name, so their helpers would clash.
    #[error(
        "callback `{field}`: another callback field of its package is also named `{name}`, \
         so `serve_{name}`/`dial_{name}` would clash"
    )]
    HelperClash {
        /// The fully qualified field given second.
        field: String,
        /// The field's name.
        name: String,
    },
    /// Plugins or callbacks were asked for with tonic's server or client turned off.
    #[error("plugins and callbacks need both the tonic server and client")]
    NeedsServerAndClient,
}

/// Build scripts print errors with `Debug`; show the same text as `Display` (and the cause).
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        if let Self::Generate(source) = self {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

/// protox's `Display` is the bare message; its `Debug` is `file:line:col: message` for
/// parse and check errors (and the plain message otherwise).
fn located(err: &protox::Error) -> String {
    format!("{err:?}")
}

/// Starts a [`Builder`] with tonic server and client generation on.
pub fn configure() -> Builder {
    Builder {
        build_server: true,
        build_client: true,
        out_dir: None,
        handshake: None,
        plugins: Vec::new(),
        callbacks: Vec::new(),
        tonic: Vec::new(),
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
    handshake: Option<(u32, String, String)>,
    /// `(plugin-map name, fully qualified service)`, in call order.
    plugins: Vec<(String, String)>,
    /// `(fully qualified field, fully qualified service)`, in call order.
    callbacks: Vec<(String, String)>,
    /// [`Builder::tonic`] hooks, applied in call order.
    tonic: Vec<TonicHook>,
}

/// One [`Builder::tonic`] closure.
#[derive(Clone)]
struct TonicHook(
    Arc<dyn Fn(tonic_prost_build::Builder) -> tonic_prost_build::Builder + Send + Sync>,
);

impl fmt::Debug for TonicHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TonicHook(..)")
    }
}

impl Builder {
    /// Whether to generate the tonic server (default `true`). The plugin glue needs both.
    pub fn build_server(mut self, enable: bool) -> Self {
        self.build_server = enable;
        self
    }

    /// Whether to generate the tonic client (default `true`). The plugin glue needs both.
    pub fn build_client(mut self, enable: bool) -> Self {
        self.build_client = enable;
        self
    }

    /// Where to write the generated files (default: `OUT_DIR`).
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Emits `pub const HANDSHAKE: intercom::HandshakeConfig` in every package file with a
    /// plugin: protocol `version` and magic cookie `cookie_key=cookie_value`.
    pub fn handshake(
        mut self,
        version: u32,
        cookie_key: impl Into<String>,
        cookie_value: impl Into<String>,
    ) -> Self {
        self.handshake = Some((version, cookie_key.into(), cookie_value.into()));
        self
    }

    /// Exposes the service `service` (fully qualified, e.g. `proto.KV`) as the plugin
    /// named `name` in the plugin map (e.g. `kv_grpc`).
    pub fn plugin(mut self, name: impl Into<String>, service: impl Into<String>) -> Self {
        self.plugins.push((name.into(), service.into()));
        self
    }

    /// Marks `field` (fully qualified, e.g. `proto.PutRequest.add_server`, a `uint32`) as
    /// the broker id of a callback serving `service` (e.g. `proto.AddHelper`): generates
    /// `serve_<field>` and `dial_<field>`.
    pub fn callback(mut self, field: impl Into<String>, service: impl Into<String>) -> Self {
        self.callbacks.push((field.into(), service.into()));
        self
    }

    /// Passes options through to tonic-prost-build: `configure` receives its
    /// [`Builder`](tonic_prost_build::Builder) and returns it configured. Several calls
    /// apply in order.
    ///
    /// intercom-build sets `build_server`, `build_client` and `out_dir` afterwards, from
    /// [`build_server`](Self::build_server), [`build_client`](Self::build_client) and
    /// [`out_dir`](Self::out_dir), since the glue depends on them.
    ///
    /// For example, tonic's default stubs: every RPC of the generated server trait gets a
    /// default body returning `Unimplemented`, so a plugin for a large protocol
    /// implements only the RPCs it serves:
    ///
    /// ```no_run
    /// // build.rs
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     intercom_build::configure()
    ///         .tonic(|tonic| tonic.generate_default_stubs(true))
    ///         .plugin("provider", "tfplugin6.Provider")
    ///         .compile(&["proto/tfplugin6.proto"], &["proto"])?;
    ///     Ok(())
    /// }
    /// ```
    pub fn tonic(
        mut self,
        configure: impl Fn(tonic_prost_build::Builder) -> tonic_prost_build::Builder
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.tonic.push(TonicHook(Arc::new(configure)));
        self
    }

    /// Compiles the protos and writes one Rust file per proto package (tonic's
    /// `<package>.rs`), plus `<package>.intercom.rs` for each package with a plugin or
    /// callback.
    ///
    /// Emits `cargo:rerun-if-changed` for every input file, so the build script
    /// reruns only when a `.proto` changes.
    ///
    /// # Errors
    /// [`Error::Compile`] with the location of the first problem in a `.proto`;
    /// [`Error::Config`] when a plugin or callback names an unknown service or field;
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
        let glue = self.glue(&fds)?;
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    Error::Generate(std::io::Error::other(
                        "OUT_DIR is not set: run from a build script or call Builder::out_dir",
                    ))
                })?,
        };
        let tonic = self
            .tonic
            .iter()
            .fold(tonic_prost_build::configure(), |b, hook| (hook.0)(b));
        tonic
            .build_server(self.build_server)
            .build_client(self.build_client)
            .out_dir(&out_dir)
            .compile_fds(fds)
            .map_err(Error::Generate)?;
        for (package, code) in glue {
            let name = if package.is_empty() { "_" } else { &package };
            std::fs::write(out_dir.join(format!("{name}.intercom.rs")), code)
                .map_err(Error::Generate)?;
        }
        Ok(())
    }

    /// The glue per package, in package order.
    fn glue(&self, fds: &FileDescriptorSet) -> Result<BTreeMap<String, String>, Error> {
        let wants_glue = !self.plugins.is_empty() || !self.callbacks.is_empty();
        let has_tonic = self.build_server && self.build_client;
        if wants_glue && !has_tonic {
            return Err(Error::Config(ConfigError::NeedsServerAndClient));
        }
        let mut plugins: BTreeMap<String, Vec<emit::Plugin>> = BTreeMap::new();
        for (name, full) in &self.plugins {
            let (package, service) = find_service(fds, full)?;
            plugins.entry(package).or_default().push(emit::Plugin {
                name: name.clone(),
                full_name: full.clone(),
                service,
            });
        }
        let mut callbacks: BTreeMap<String, Vec<emit::Callback>> = BTreeMap::new();
        for (full_field, full_service) in &self.callbacks {
            let (package, field) = find_id_field(fds, full_field)?;
            let (service_package, service) = find_service(fds, full_service)?;
            if service_package != package {
                return Err(Error::Config(ConfigError::CallbackPackage {
                    field: full_field.clone(),
                    service: full_service.clone(),
                    package,
                }));
            }
            let entry = callbacks.entry(package).or_default();
            if entry.iter().any(|c| c.field == field) {
                return Err(Error::Config(ConfigError::HelperClash {
                    field: full_field.clone(),
                    name: field,
                }));
            }
            entry.push(emit::Callback {
                full_field: full_field.clone(),
                field,
                full_service: full_service.clone(),
                service,
            });
        }
        let packages: std::collections::BTreeSet<&String> =
            plugins.keys().chain(callbacks.keys()).collect();
        Ok(packages
            .into_iter()
            .map(|package| {
                let p = plugins.get(package).map_or(&[][..], Vec::as_slice);
                let c = callbacks.get(package).map_or(&[][..], Vec::as_slice);
                let handshake = if p.is_empty() {
                    None
                } else {
                    self.handshake.as_ref()
                };
                (package.clone(), emit::package(handshake, p, c))
            })
            .collect())
    }
}

/// Splits `a.b.Name` into the file whose package prefixes it and the rest.
fn in_package<'a>(
    fds: &'a FileDescriptorSet,
    full: &'a str,
) -> impl Iterator<Item = (&'a FileDescriptorProto, &'a str)> {
    fds.file.iter().filter_map(move |file| {
        let package = file.package();
        let rest = if package.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(package)?.strip_prefix('.')
        };
        rest.map(|rest| (file, rest))
    })
}

fn find_service(fds: &FileDescriptorSet, full: &str) -> Result<(String, String), Error> {
    in_package(fds, full)
        .find_map(|(file, name)| {
            file.service
                .iter()
                .any(|s| s.name() == name)
                .then(|| (file.package().to_owned(), name.to_owned()))
        })
        .ok_or_else(|| {
            let known: Vec<String> = fds
                .file
                .iter()
                .flat_map(|f| {
                    f.service.iter().map(move |s| {
                        if f.package().is_empty() {
                            s.name().to_owned()
                        } else {
                            format!("{}.{}", f.package(), s.name())
                        }
                    })
                })
                .collect();
            Error::Config(ConfigError::UnknownService {
                service: full.to_owned(),
                known,
            })
        })
}

/// The package and Rust field name of a top-level message's `uint32` field.
fn find_id_field(fds: &FileDescriptorSet, full: &str) -> Result<(String, String), Error> {
    let found = in_package(fds, full).find_map(|(file, rest)| {
        let (message, field) = rest.split_once('.')?;
        let message = file.message_type.iter().find(|m| m.name() == message)?;
        let field = message.field.iter().find(|f| f.name() == field)?;
        Some((file.package().to_owned(), field))
    });
    let Some((package, field)) = found else {
        return Err(Error::Config(ConfigError::UnknownField {
            field: full.to_owned(),
        }));
    };
    if field.r#type() != Type::Uint32 || field.label() == Label::Repeated {
        return Err(Error::Config(ConfigError::NotABrokerId {
            field: full.to_owned(),
        }));
    }
    Ok((package, field.name().to_owned()))
}
