//! What intercom's own integration tests need of its internals to play a rogue peer: a
//! TLS identity and a client configuration pinned to a plugin's certificate (rustls
//! types). Used by `tests/tests/{mtls,admission,fuzz_smoke}.rs`.
//!
//! Not a public API: no semver guarantees.
//!
//! The internals behind it stay crate-private; these lock that (each must fail to build):
//!
//! ```compile_fail
//! use intercom::tls::Identity;
//! ```
//! ```compile_fail
//! use intercom::transport::ListenConfig;
//! ```
//! ```compile_fail
//! use intercom::logs::PLUGIN_LOG_TARGET;
//! ```
//! ```compile_fail
//! use intercom::stdio::StdioCapture;
//! ```
//! while what signatures name is at the root:
//! ```
//! use intercom::{ListenConfig, ListenError, PLUGIN_LOG_TARGET, TlsError, init_plugin_logging};
//! let _ = (PLUGIN_LOG_TARGET, init_plugin_logging::<fn() -> std::io::Stderr>);
//! fn _named(_: ListenConfig, _: ListenError, _: TlsError) {}
//! ```

pub use crate::tls::{Identity, client_config, server_name};
