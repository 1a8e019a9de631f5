//! intercom: out-of-process plugins over gRPC.
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod proto;
