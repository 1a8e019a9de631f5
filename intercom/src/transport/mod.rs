//! Sockets under every gRPC connection: listeners a plugin (or a classic broker) binds,
//! dialing the address from a handshake line, and the one byte-stream type that unix
//! sockets, TCP, yamux streams and TLS all become.

mod byte_stream;
mod config;
mod error;
mod listener;
mod sniff;
mod tls_pair;

pub(crate) use byte_stream::Io;
pub use config::ListenConfig;
pub(crate) use config::advertise_from_env;
pub(crate) use config::check_advertise;
pub use error::ListenError;
pub(crate) use listener::{Listener, dial};
pub(crate) use sniff::{TLS_FIRST_BYTE, YAMUX_FIRST_BYTE, sniff};
pub(crate) use tls_pair::{TlsPair, secure_client};

/// Environment variables the listener honours (the [`protocol`](crate::protocol) ones).
pub(crate) use crate::protocol::env;

#[cfg(test)]
mod tests;
