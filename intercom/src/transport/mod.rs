//! Sockets under every gRPC connection: listeners a plugin (or a classic broker) binds,
//! dialing the address from a handshake line, and the one byte-stream type that unix
//! sockets, TCP, yamux streams and TLS all become.

mod byte_stream;
mod config;
mod error;
mod listener;
mod sniff;
mod tls_pair;

pub use byte_stream::ByteStream;
pub(crate) use byte_stream::Io;
pub(crate) use config::check_advertise;
pub use config::{ListenConfig, advertise_from_env};
pub use error::ListenError;
pub(crate) use listener::{Listener, dial};
pub(crate) use sniff::{TLS_FIRST_BYTE, YAMUX_FIRST_BYTE, sniff};
pub(crate) use tls_pair::{TlsPair, secure_client};

/// Environment variables the listener honours (the [`protocol`](crate::protocol) ones).
pub use crate::protocol::env;

#[cfg(test)]
mod tests;
