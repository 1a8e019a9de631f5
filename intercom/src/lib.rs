#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

// Plugins run in process groups, listen on unix sockets and die with their host through
// Unix signals: there is no Windows implementation to fall back to.
#[cfg(not(unix))]
compile_error!(
    "intercom is Unix only: plugins run in process groups and listen on unix sockets \
     (see the README's \"Platforms, MSRV and license\" section)"
);

#[doc = include_str!("guide.md")]
pub mod guide {}
pub mod handshake;
pub mod include;
mod logs;
pub mod proto;
pub mod protocol;
mod stdio;
mod tls;

/// The go-plugin core protocol version this crate speaks (the first handshake field).
pub const CORE_PROTOCOL_VERSION: u32 = 1;
pub use protocol::DEFAULT_SERVER_PORT;
/// The largest message a host's generated clients send and receive: 2³¹−1 bytes, as
/// go-plugin's host (`math.MaxInt32`), instead of tonic's 4 MiB receive limit. Servers
/// keep gRPC's 4 MiB receive limit, as go-plugin's plugins do. A client from
/// `intercom-build` glue can be given another limit with tonic's
/// `max_decoding_message_size`/`max_encoding_message_size` after `dispense`.
pub const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;
/// The gRPC health service name a plugin reports SERVING for.
pub const GRPC_SERVICE_NAME: &str = "plugin";

mod admission;
pub mod broker;
pub mod client;
mod connection;
mod controller;
mod host_watch;
mod mux;
pub mod plugin;
mod plugin_exit;
mod reattach_pid;
pub mod runtime;
pub mod serve;
mod stderr_tail;
mod sync;
mod transport;
pub mod unix_socket;

pub use broker::{BrokerError, BrokerListener, BrokerServer, GrpcBroker};
#[allow(deprecated)]
pub use client::ClientProtocol;
pub use client::{
    Client, ClientConfig, ClientError, Connection, Multiplex, ReattachConfig, Target,
    cleanup_clients,
};
pub use handshake::{HandshakeConfig, HandshakeError};
pub use logs::{PLUGIN_LOG_TARGET, init_plugin_logging};
pub use plugin::{BoxError, GrpcPlugin, PluginSet, TypedPlugin};
pub use runtime::ProcessLauncher;
pub use serve::{ServeConfig, ServeError, serve};
pub use tls::TlsError;
pub use transport::{ListenConfig, ListenError};

/// k8s-openapi, for the Kubernetes runtime's types.
#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
pub use k8s_openapi;
/// kube-rs, for the Kubernetes runtime's types.
#[cfg(feature = "kubernetes")]
#[cfg_attr(docsrs, doc(cfg(feature = "kubernetes")))]
pub use kube;
pub use prost;
pub use tokio;
/// Re-exported so users need no direct dependency to name these types.
pub use tonic;

#[doc(hidden)]
pub mod __fuzz;
#[doc(hidden)]
pub mod __private;
#[doc(hidden)]
pub mod __testing;
mod codegen;
pub mod streaming;

pub use intercom_macros::{Enumeration, Message, plugin};
pub use streaming::{SendError, StreamSender, Streaming};
/// The status of a failed plugin call (tonic's): plugin methods return
/// `Result<T, E>` with `E: Into<Status>` (and `E: From<Status>` for the client side).
pub use tonic::Status;
/// Re-exported for implementing `#[intercom::plugin]` traits: write
/// `#[intercom::async_trait] impl MyTrait for MyType { async fn … }`.
pub use tonic::async_trait;
