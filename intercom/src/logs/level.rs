//! The [`LogLevel`] of a plugin log line and its conversions to and from `tracing`'s
//! levels.

use std::fmt;

use tracing::Level;

/// The level of a plugin log line; hclog's levels, which map one to one onto `tracing`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum LogLevel {
    /// Very verbose diagnostics.
    Trace,
    /// Diagnostics; also the level of lines nothing else applies to.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin survived.
    Warn,
    /// Failures, and every plain line once a crash was seen.
    Error,
}

impl LogLevel {
    /// The hclog spelling: `trace`, `debug`, `info`, `warn` or `error`.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// Parses an hclog level name, ignoring case and surrounding whitespace; `None` for
    /// anything else (hclog's `off` and `warning` included).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        [
            LogLevel::Trace,
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
        ]
        .into_iter()
        .find(|l| l.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::TRACE => LogLevel::Trace,
            Level::DEBUG => LogLevel::Debug,
            Level::INFO => LogLevel::Info,
            Level::WARN => LogLevel::Warn,
            Level::ERROR => LogLevel::Error,
        }
    }
}

impl From<LogLevel> for Level {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Trace => Level::TRACE,
            LogLevel::Debug => Level::DEBUG,
            LogLevel::Info => Level::INFO,
            LogLevel::Warn => Level::WARN,
            LogLevel::Error => Level::ERROR,
        }
    }
}
