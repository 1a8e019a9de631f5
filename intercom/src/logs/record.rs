//! [`LogRecord`], one plugin stderr line understood.

use super::LogLevel;

/// One plugin stderr line, understood.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogRecord {
    /// The level the host should log it at.
    pub(crate) level: LogLevel,
    /// The message: hclog's `@message`, or the (prefix-less) text of a plain line.
    pub(crate) message: String,
    /// hclog's `@module` (the logger name, or the `tracing` target of an intercom plugin).
    pub(crate) module: Option<String>,
    /// All other keys of a JSON line, sorted by key; string values as they are, any other
    /// JSON value as JSON text.
    pub(crate) fields: Vec<(String, String)>,
    /// hclog's `@timestamp`, as written by the plugin.
    pub(crate) timestamp: Option<String>,
}

impl LogRecord {
    /// A record with only a level and a message.
    pub(super) fn plain(level: LogLevel, message: &str) -> Self {
        Self {
            level,
            message: message.to_owned(),
            module: None,
            fields: Vec::new(),
            timestamp: None,
        }
    }
}
