//! [`StderrParser`]: the go-plugin line rules that turn stderr lines into records.

use serde_json::{Map, Value};

use super::{
    LEVEL_KEY, LogLevel, LogRecord, MESSAGE_KEY, MODULE_KEY, RESERVED_KEYS, TIMESTAMP_KEY,
};

/// Plain-text prefixes that select a level, as go-plugin recognises them.
const LEVEL_PREFIXES: [(&str, LogLevel); 5] = [
    ("[TRACE]", LogLevel::Trace),
    ("[DEBUG]", LogLevel::Debug),
    ("[INFO]", LogLevel::Info),
    ("[WARN]", LogLevel::Warn),
    ("[ERROR]", LogLevel::Error),
];

/// Parses a plugin's stderr, line by line, into [`LogRecord`]s.
///
/// It is stateful: after a line that shows the plugin crashing (`panic: `, `fatal error: `
/// or a Rust `thread '…' panicked at`), every later plain-text line is an error (go-plugin's
/// "panic mode"); see the [module docs](super) for all rules. Use one parser per plugin
/// process.
#[derive(Debug, Default)]
pub(crate) struct StderrParser {
    panic_mode: bool,
}

impl StderrParser {
    /// A parser that has seen no line yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Whether a crash was seen, so plain lines are now errors.
    #[cfg(test)]
    pub(crate) fn in_panic_mode(&self) -> bool {
        self.panic_mode
    }

    /// Turns one stderr line (with or without its `\n`/`\r\n`) into a record. Never fails:
    /// anything unrecognised is a debug record holding the line.
    pub(crate) fn parse(&mut self, line: &str) -> LogRecord {
        let line = line.trim_end_matches(['\n', '\r']);
        if let Some(record) = parse_json_line(line) {
            return record;
        }
        if !self.panic_mode && starts_crash(line) {
            self.panic_mode = true;
        }
        if self.panic_mode {
            return LogRecord::plain(LogLevel::Error, line.trim_end());
        }
        for (prefix, level) in LEVEL_PREFIXES {
            if let Some(rest) = line.strip_prefix(prefix) {
                return LogRecord::plain(level, rest.trim());
            }
        }
        LogRecord::plain(LogLevel::Debug, line.trim_end())
    }
}

/// Whether a plain line is the first line of a Go or Rust crash report.
fn starts_crash(line: &str) -> bool {
    line.starts_with("panic: ")
        || line.starts_with("fatal error: ")
        || (line.starts_with("thread '") && line.contains("panicked at"))
}

/// The record for a JSON object line, or `None` if the line is not a JSON object.
fn parse_json_line(line: &str) -> Option<LogRecord> {
    let trimmed = line.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    let object: Map<String, Value> = serde_json::from_str(trimmed).ok()?;
    let level = match object.get(LEVEL_KEY) {
        Some(Value::String(name)) => LogLevel::from_name(name),
        _ => None,
    };
    let message = match object.get(MESSAGE_KEY) {
        Some(Value::String(message)) => Some(message.clone()),
        None => Some(String::new()),
        Some(_) => None,
    };
    let (Some(level), Some(message)) = (level, message) else {
        return Some(LogRecord::plain(LogLevel::Debug, trimmed));
    };
    let mut fields: Vec<(String, String)> = object
        .iter()
        .filter(|(key, _)| !RESERVED_KEYS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value_text(value)))
        .collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Some(LogRecord {
        level,
        message,
        module: object.get(MODULE_KEY).map(value_text),
        fields,
        timestamp: object.get(TIMESTAMP_KEY).map(value_text),
    })
}

/// A JSON value as field text: strings unquoted, anything else as JSON.
pub(super) fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
