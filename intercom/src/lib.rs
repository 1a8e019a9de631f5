#![doc = include_str!("../../README.md")]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod handshake;
pub mod logs;
pub mod proto;
pub mod stdio;
pub mod tls;

/// The go-plugin core protocol version this crate speaks (the first handshake field).
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// The port a plugin listens on when told to use TCP without a port (Kubernetes).
pub const DEFAULT_SERVER_PORT: u16 = 50077;
/// The gRPC health service name a plugin reports SERVING for.
pub const GRPC_SERVICE_NAME: &str = "plugin";

pub mod broker;
pub mod client;
mod mux;
pub mod plugin;
pub mod runtime;
pub mod serve;
pub mod transport;

pub use broker::{BrokerError, BrokerListener, BrokerServer, GrpcBroker};
pub use client::{
    Client, ClientConfig, ClientError, ClientProtocol, Multiplex, ReattachConfig, cleanup_clients,
};
pub use handshake::{HandshakeConfig, HandshakeError};
pub use plugin::{BoxError, GrpcPlugin, PluginSet};
pub use serve::{ServeConfig, ServeError, serve};

pub use prost;
pub use tokio;
/// Re-exported so users need no direct dependency to name these types.
pub use tonic;
