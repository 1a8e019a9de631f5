//! Plugin log lines on stderr, in both directions.
//!
//! A go-plugin plugin writes its logs to its real stderr, normally one
//! [hclog](https://github.com/hashicorp/go-hclog) JSON object per line, and the host turns
//! every line into a log event of its own at the right level.
//!
//! - **Host side:** [`StderrParser`] turns each stderr line into a [`LogRecord`] and
//!   [`emit`] sends it on as a `tracing` event with target [`PLUGIN_LOG_TARGET`].
//! - **Plugin side:** [`HclogLayer`] is a `tracing_subscriber` layer that writes one
//!   hclog-style JSON object per event, so a Go host (or an intercom host) re-levels the
//!   plugin's logs; [`init_plugin_logging`] installs it globally.
//!
//! # Line rules (go-plugin `client.go` `logStderr`)
//!
//! - A line that is a JSON object is an hclog entry: `@level` (trace, debug, info, warn,
//!   error; any case) selects the level, `@message` is the message, `@timestamp` and
//!   `@module` are kept, every other key (including `@caller`) becomes a field. A
//!   missing, non-string or unknown `@level`, or a non-string `@message`, makes the whole
//!   raw line a debug record.
//! - Any other line is plain text: a `[TRACE]`, `[DEBUG]`, `[INFO]`, `[WARN]` or
//!   `[ERROR]` prefix selects the level (the prefix is removed and the rest trimmed),
//!   anything else is debug.
//! - A plain line starting with `panic: ` or `fatal error: ` (a Go crash) switches the
//!   parser to *panic mode*: that line and every later plain line is an error, so a
//!   stack trace is not buried at debug. intercom also enters panic mode on a Rust panic
//!   message, a line starting with `thread '` that contains `panicked at`. JSON lines
//!   keep their own level in panic mode.
//!
//! Two deliberate differences from go-plugin: a JSON line whose `@timestamp` is not in
//! hclog's layout is still treated as JSON (go-plugin falls back to plain text), and a
//! non-string `@message`/`@level` never panics (go-plugin's reader can).

mod emit;
mod hclog;
mod init;
mod level;
mod parse;
mod record;
mod visitor;

pub(crate) use emit::{emit, emit_with};
pub(crate) use hclog::HclogLayer;
pub use init::init_plugin_logging;
pub(crate) use level::LogLevel;
pub(crate) use parse::StderrParser;
pub(crate) use record::LogRecord;

/// The `tracing` target of the events a host emits for its plugins' log lines (each with
/// field `plugin`, the plugin's name): filter on it to route or silence plugin logs.
pub const PLUGIN_LOG_TARGET: &str = "intercom::plugin";

pub(crate) use crate::protocol::MAX_LOG_LINE;

/// Keys of an hclog JSON object that are not user fields.
const LEVEL_KEY: &str = "@level";
const MESSAGE_KEY: &str = "@message";
const TIMESTAMP_KEY: &str = "@timestamp";
const MODULE_KEY: &str = "@module";
const RESERVED_KEYS: [&str; 4] = [LEVEL_KEY, MESSAGE_KEY, TIMESTAMP_KEY, MODULE_KEY];

#[cfg(test)]
mod tests;
