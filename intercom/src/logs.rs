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

use std::fmt;
use std::io::Write as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The `tracing` target of the events [`emit`] produces for plugin log lines.
pub const PLUGIN_LOG_TARGET: &str = "intercom::plugin";

pub use crate::protocol::MAX_LOG_LINE;

/// Keys of an hclog JSON object that are not user fields.
const LEVEL_KEY: &str = "@level";
const MESSAGE_KEY: &str = "@message";
const TIMESTAMP_KEY: &str = "@timestamp";
const MODULE_KEY: &str = "@module";
const RESERVED_KEYS: [&str; 4] = [LEVEL_KEY, MESSAGE_KEY, TIMESTAMP_KEY, MODULE_KEY];

/// Plain-text prefixes that select a level, as go-plugin recognises them.
const LEVEL_PREFIXES: [(&str, LogLevel); 5] = [
    ("[TRACE]", LogLevel::Trace),
    ("[DEBUG]", LogLevel::Debug),
    ("[INFO]", LogLevel::Info),
    ("[WARN]", LogLevel::Warn),
    ("[ERROR]", LogLevel::Error),
];

/// The level of a plugin log line; hclog's levels, which map one to one onto `tracing`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogLevel {
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
    pub const fn as_str(self) -> &'static str {
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
    pub fn from_name(name: &str) -> Option<Self> {
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

/// One plugin stderr line, understood.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// The level the host should log it at.
    pub level: LogLevel,
    /// The message: hclog's `@message`, or the (prefix-less) text of a plain line.
    pub message: String,
    /// hclog's `@module` (the logger name, or the `tracing` target of an intercom plugin).
    pub module: Option<String>,
    /// All other keys of a JSON line, sorted by key; string values as they are, any other
    /// JSON value as JSON text.
    pub fields: Vec<(String, String)>,
    /// hclog's `@timestamp`, as written by the plugin.
    pub timestamp: Option<String>,
}

impl LogRecord {
    /// A record with only a level and a message.
    fn plain(level: LogLevel, message: &str) -> Self {
        Self {
            level,
            message: message.to_owned(),
            module: None,
            fields: Vec::new(),
            timestamp: None,
        }
    }
}

/// Parses a plugin's stderr, line by line, into [`LogRecord`]s.
///
/// It is stateful: after a line that shows the plugin crashing (`panic: `, `fatal error: `
/// or a Rust `thread '…' panicked at`), every later plain-text line is an error (go-plugin's
/// "panic mode"); see the [module docs](self) for all rules. Use one parser per plugin
/// process.
///
/// ```
/// use intercom::logs::{LogLevel, StderrParser};
///
/// let mut parser = StderrParser::default();
/// let r = parser.parse(r#"{"@level":"warn","@message":"disk low","free":"3%"}"#);
/// assert_eq!((r.level, r.message.as_str()), (LogLevel::Warn, "disk low"));
/// assert_eq!(r.fields, [("free".to_owned(), "3%".to_owned())]);
/// assert_eq!(parser.parse("[INFO] ready").level, LogLevel::Info);
/// assert_eq!(parser.parse("panic: oh no").level, LogLevel::Error);
/// assert_eq!(parser.parse("goroutine 1 [running]:").level, LogLevel::Error);
/// ```
#[derive(Debug, Default)]
pub struct StderrParser {
    panic_mode: bool,
}

impl StderrParser {
    /// A parser that has seen no line yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a crash was seen, so plain lines are now errors.
    pub fn in_panic_mode(&self) -> bool {
        self.panic_mode
    }

    /// Turns one stderr line (with or without its `\n`/`\r\n`) into a record. Never fails:
    /// anything unrecognised is a debug record holding the line.
    pub fn parse(&mut self, line: &str) -> LogRecord {
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
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Emits a plugin log record as a `tracing` event.
///
/// The event has target [`PLUGIN_LOG_TARGET`], the record's level, the message as its
/// message, and the fields `plugin` (the plugin's name), `module` and `timestamp` (when
/// the record has them) and `fields`: the record's extra fields as one `k=v k2=v2`
/// string (values with spaces, quotes or `=` are quoted), because `tracing` field names
/// must be known at compile time. Filter these events with
/// `intercom::plugin=<level>` in an `EnvFilter`.
pub fn emit(plugin: &str, record: &LogRecord) {
    emit_with(plugin, None, record);
}

/// As [`emit`], with the Kubernetes pod the line came from as field `pod`.
pub fn emit_with(plugin: &str, pod: Option<&str>, record: &LogRecord) {
    let module = record.module.as_deref();
    let timestamp = record.timestamp.as_deref();
    let fields = render_fields(&record.fields);
    let fields = fields.as_deref();
    let message = record.message.as_str();
    macro_rules! plugin_event {
        ($level:expr) => {
            tracing::event!(
                target: PLUGIN_LOG_TARGET,
                $level,
                plugin,
                pod,
                module,
                timestamp,
                fields,
                "{message}"
            )
        };
    }
    match record.level {
        LogLevel::Trace => plugin_event!(Level::TRACE),
        LogLevel::Debug => plugin_event!(Level::DEBUG),
        LogLevel::Info => plugin_event!(Level::INFO),
        LogLevel::Warn => plugin_event!(Level::WARN),
        LogLevel::Error => plugin_event!(Level::ERROR),
    }
}

/// `k=v k2="v 2"`, or `None` when there are no fields.
fn render_fields(fields: &[(String, String)]) -> Option<String> {
    if fields.is_empty() {
        return None;
    }
    let mut out = String::new();
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push('=');
        let needs_quotes = value.is_empty()
            || value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
        if needs_quotes {
            out.push_str(&format!("{value:?}"));
        } else {
            out.push_str(value);
        }
    }
    Some(out)
}

/// A `tracing_subscriber` layer that writes every event as one hclog JSON line.
///
/// Each line is a JSON object with, in this order, `@level` (`trace`…`error`),
/// `@message`, `@timestamp` (UTC, hclog's layout `2006-01-02T15:04:05.000000Z07:00`,
/// e.g. `2024-05-01T12:00:00.123456Z`), `@module` (the event's target), then the fields
/// of the spans in the event's scope (outermost first) and the event's own fields, a
/// later one replacing an earlier one of the same name. Strings, booleans and numbers
/// keep their JSON type; other values are written as their `Debug` text, errors as their
/// `Display` text. A field named like one of the `@` keys is dropped, as hclog does. An
/// event that came from the `log` crate through `tracing-log` gets its original target as
/// `@module` and loses the `log.*` fields.
///
/// Each line, including its `\n`, is handed to the writer in one `write_all` call, so
/// lines from several threads do not interleave on an unbuffered stderr. Write errors are
/// ignored: there is nowhere left to report them.
///
/// A plugin must never log to stdout: the first line of stdout is its handshake.
pub struct HclogLayer<W> {
    make_writer: W,
}

impl<W> HclogLayer<W> {
    /// A layer writing to the writers `make_writer` makes, e.g. `std::io::stderr`.
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

impl<W> fmt::Debug for HclogLayer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HclogLayer").finish_non_exhaustive()
    }
}

/// Span fields recorded by [`HclogLayer`], kept in the span's extensions.
#[derive(Debug, Default)]
struct SpanFields(Vec<(String, Value)>);

impl<S, W> Layer<S> for HclogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut visitor = JsonVisitor::default();
        attrs.record(&mut visitor);
        span.extensions_mut()
            .replace(SpanFields(visitor.into_pairs()));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut visitor = JsonVisitor::default();
        values.record(&mut visitor);
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanFields>() {
            Some(fields) => {
                for (key, value) in visitor.into_pairs() {
                    upsert(&mut fields.0, key, value);
                }
            }
            None => extensions.insert(SpanFields(visitor.into_pairs())),
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields: Vec<(String, Value)> = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(span_fields) = span.extensions().get::<SpanFields>() {
                    for (key, value) in &span_fields.0 {
                        upsert(&mut fields, key.clone(), value.clone());
                    }
                }
            }
        }
        let mut visitor = JsonVisitor::default();
        event.record(&mut visitor);
        let message = visitor.message.take().unwrap_or_default();
        let module = visitor
            .log_target
            .take()
            .unwrap_or_else(|| event.metadata().target().to_owned());
        for (key, value) in visitor.into_pairs() {
            upsert(&mut fields, key, value);
        }

        let level = LogLevel::from(*event.metadata().level());
        let timestamp = hclog_timestamp(time::OffsetDateTime::now_utc());
        let mut line = String::with_capacity(128 + message.len());
        line.push('{');
        push_pair(&mut line, LEVEL_KEY, &Value::from(level.as_str()));
        line.push(',');
        push_pair(&mut line, MESSAGE_KEY, &Value::String(message));
        line.push(',');
        push_pair(&mut line, TIMESTAMP_KEY, &Value::String(timestamp));
        line.push(',');
        push_pair(&mut line, MODULE_KEY, &Value::String(module));
        for (key, value) in &fields {
            line.push(',');
            push_pair(&mut line, key, value);
        }
        line.push_str("}\n");

        let mut writer = self.make_writer.make_writer_for(event.metadata());
        let _ = writer.write_all(line.as_bytes());
        let _ = writer.flush();
    }
}

/// Appends `"key":value` to a JSON object being built.
fn push_pair(out: &mut String, key: &str, value: &Value) {
    // `Value`'s Display writes compact JSON and cannot fail.
    out.push_str(&Value::from(key).to_string());
    out.push(':');
    out.push_str(&value.to_string());
}

/// Sets `key` to `value`, keeping the position of an existing entry.
fn upsert(fields: &mut Vec<(String, Value)>, key: String, value: Value) {
    match fields.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => fields.push((key, value)),
    }
}

/// Collects `tracing` fields as JSON values.
#[derive(Default)]
struct JsonVisitor {
    message: Option<String>,
    log_target: Option<String>,
    pairs: Vec<(String, Value)>,
}

impl JsonVisitor {
    fn into_pairs(self) -> Vec<(String, Value)> {
        self.pairs
    }

    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => self.message = Some(value_text(&value)),
            "log.target" => self.log_target = Some(value_text(&value)),
            "log.module_path" | "log.file" | "log.line" => {}
            name if RESERVED_KEYS.contains(&name) => {}
            name => upsert(&mut self.pairs, name.to_owned(), value),
        }
    }
}

impl Visit for JsonVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value =
            i64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from);
        self.put(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value =
            u64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from);
        self.put(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.put(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

/// Formats a time in hclog's layout `2006-01-02T15:04:05.000000Z07:00`: exactly six
/// fractional digits, then `Z` for UTC or `±hh:mm`.
fn hclog_timestamp(t: time::OffsetDateTime) -> String {
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    );
    let offset = t.offset();
    if offset.is_utc() {
        out.push('Z');
    } else {
        let seconds = offset.whole_seconds();
        let sign = if seconds < 0 { '-' } else { '+' };
        let seconds = seconds.unsigned_abs();
        out.push_str(&format!(
            "{sign}{:02}:{:02}",
            seconds / 3600,
            seconds % 3600 / 60
        ));
    }
    out
}

/// Installs a global `tracing` subscriber that writes hclog JSON lines through
/// [`HclogLayer`], unless a global subscriber is already set. Returns whether it
/// installed one.
///
/// The level filter is an [`EnvFilter`] read from `INTERCOM_LOG`, else `RUST_LOG`, else
/// `info` (invalid directives are skipped with a note on stderr). Pass
/// `std::io::stderr`, never stdout, which carries the handshake. Records of the `log`
/// crate are bridged into the same subscriber (`tracing_subscriber`'s `try_init`), unless
/// a `log` logger is already set; then it returns false although the subscriber is
/// installed.
///
/// ```no_run
/// if !intercom::logs::init_plugin_logging(std::io::stderr) {
///     // The application installed its own subscriber; keep it.
/// }
/// tracing::info!(answer = 42, "plugin starting");
/// ```
pub fn init_plugin_logging<W>(make_writer: W) -> bool
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = env_filter(
        std::env::var("INTERCOM_LOG").ok(),
        std::env::var("RUST_LOG").ok(),
    );
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(HclogLayer::new(make_writer));
    subscriber.try_init().is_ok()
}

/// The filter from the first non-blank of `INTERCOM_LOG` and `RUST_LOG`, default `info`.
fn env_filter(intercom_log: Option<String>, rust_log: Option<String>) -> EnvFilter {
    let directives = [intercom_log, rust_log]
        .into_iter()
        .flatten()
        .find(|value| !value.trim().is_empty())
        .unwrap_or_default();
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(directives.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn json_lines() {
        struct Case {
            line: &'static str,
            level: LogLevel,
            message: &'static str,
            module: Option<&'static str>,
            fields: &'static [(&'static str, &'static str)],
            timestamp: Option<&'static str>,
        }
        let raw = |line: &'static str| Case {
            line,
            level: LogLevel::Debug,
            message: line,
            module: None,
            fields: &[],
            timestamp: None,
        };
        let cases = [
            Case {
                line: r#"{"@level":"trace","@message":"t"}"#,
                level: LogLevel::Trace,
                message: "t",
                module: None,
                fields: &[],
                timestamp: None,
            },
            Case {
                line: r#"{"@level":"debug","@message":"d"}"#,
                level: LogLevel::Debug,
                message: "d",
                module: None,
                fields: &[],
                timestamp: None,
            },
            Case {
                line: r#"{"@level":"info","@message":"i","@module":"kv.db","@timestamp":"2024-05-01T12:00:00.123456Z"}"#,
                level: LogLevel::Info,
                message: "i",
                module: Some("kv.db"),
                fields: &[],
                timestamp: Some("2024-05-01T12:00:00.123456Z"),
            },
            Case {
                line: r#"{"@level":"warn","@message":"w"}"#,
                level: LogLevel::Warn,
                message: "w",
                module: None,
                fields: &[],
                timestamp: None,
            },
            Case {
                line: r#"{"@level":"error","@message":"e"}"#,
                level: LogLevel::Error,
                message: "e",
                module: None,
                fields: &[],
                timestamp: None,
            },
            Case {
                line: r#"{"@level":"ERROR","@message":"upper"}"#,
                level: LogLevel::Error,
                message: "upper",
                module: None,
                fields: &[],
                timestamp: None,
            },
            Case {
                line: r#"  {"@level":"Warn","@message":"mixed"}  "#,
                level: LogLevel::Warn,
                message: "mixed",
                module: None,
                fields: &[],
                timestamp: None,
            },
            Case {
                line: r#"{"@level":"info"}"#,
                level: LogLevel::Info,
                message: "",
                module: None,
                fields: &[],
                timestamp: None,
            },
            Case {
                line: r#"{"@level":"info","@message":"kv","@caller":"main.go:12","user":"bob","n":3,"ok":true,"list":[1,"a"],"nested":{"x":null},"none":null}"#,
                level: LogLevel::Info,
                message: "kv",
                module: None,
                fields: &[
                    ("@caller", "main.go:12"),
                    ("list", r#"[1,"a"]"#),
                    ("n", "3"),
                    ("nested", r#"{"x":null}"#),
                    ("none", "null"),
                    ("ok", "true"),
                    ("user", "bob"),
                ],
                timestamp: None,
            },
            Case {
                line: r#"{"@level":"info","@message":"m","@module":7,"@timestamp":1714564800}"#,
                level: LogLevel::Info,
                message: "m",
                module: Some("7"),
                fields: &[],
                timestamp: Some("1714564800"),
            },
            raw(r#"{"@level":"fatal","@message":"unknown level"}"#),
            raw(r#"{"@level":"warning","@message":"not an hclog level"}"#),
            raw(r#"{"@message":"missing level"}"#),
            raw(r#"{"@level":3,"@message":"numeric level"}"#),
            raw(r#"{"@level":null,"@message":"null level"}"#),
            raw(r#"{"@level":"info","@message":{"not":"a string"}}"#),
            raw(r#"{"@level":"info","@message":42}"#),
            raw("{}"),
        ];
        for case in cases {
            let got = StderrParser::new().parse(case.line);
            let want = LogRecord {
                level: case.level,
                message: case.message.trim().to_owned(),
                module: case.module.map(str::to_owned),
                fields: fields(case.fields),
                timestamp: case.timestamp.map(str::to_owned),
            };
            assert_eq!(got, want, "{}", case.line);
        }
    }

    #[test]
    fn plain_lines() {
        let cases = [
            ("[TRACE] t", LogLevel::Trace, "t"),
            ("[DEBUG]d", LogLevel::Debug, "d"),
            ("[INFO]  starting up  \r\n", LogLevel::Info, "starting up"),
            ("[WARN] careful", LogLevel::Warn, "careful"),
            ("[ERROR] broke: x", LogLevel::Error, "broke: x"),
            (
                "[info] lower-case is not a prefix",
                LogLevel::Debug,
                "[info] lower-case is not a prefix",
            ),
            (
                " [INFO] not at the start",
                LogLevel::Debug,
                " [INFO] not at the start",
            ),
            ("just text\n", LogLevel::Debug, "just text"),
            ("", LogLevel::Debug, ""),
            ("{not json", LogLevel::Debug, "{not json"),
            ("[1, 2]", LogLevel::Debug, "[1, 2]"),
            (
                "error: panic: is only a crash at the start",
                LogLevel::Debug,
                "error: panic: is only a crash at the start",
            ),
            ("panicky: no", LogLevel::Debug, "panicky: no"),
        ];
        for (line, level, message) in cases {
            let mut parser = StderrParser::new();
            assert_eq!(
                parser.parse(line),
                LogRecord::plain(level, message),
                "{line:?}"
            );
            assert!(!parser.in_panic_mode(), "{line:?}");
        }
    }

    #[test]
    fn panic_mode_is_sticky() {
        for first in [
            "panic: runtime error: index out of range",
            "fatal error: concurrent map writes",
            "thread 'main' panicked at src/main.rs:2:5:",
            "thread '<unnamed>' panicked at 'boom', src/lib.rs:1:1",
        ] {
            let mut parser = StderrParser::new();
            assert_eq!(parser.parse("[INFO] fine").level, LogLevel::Info);
            assert!(!parser.in_panic_mode());
            assert_eq!(
                parser.parse(first),
                LogRecord::plain(LogLevel::Error, first)
            );
            assert!(parser.in_panic_mode(), "{first}");
            // Later plain lines are errors, verbatim (prefix kept, indentation kept).
            assert_eq!(
                parser.parse("\t/go/src/main.go:12 +0x1d\n"),
                LogRecord::plain(LogLevel::Error, "\t/go/src/main.go:12 +0x1d")
            );
            assert_eq!(
                parser.parse("[DEBUG] after the crash"),
                LogRecord::plain(LogLevel::Error, "[DEBUG] after the crash")
            );
            // JSON lines keep their own level.
            let json = parser.parse(r#"{"@level":"info","@message":"still json"}"#);
            assert_eq!(
                (json.level, json.message.as_str()),
                (LogLevel::Info, "still json")
            );
            let unknown = parser.parse(r#"{"@message":"no level"}"#);
            assert_eq!(unknown.level, LogLevel::Debug);
            assert!(parser.in_panic_mode());
        }
        // "thread '" without "panicked at" is not a crash.
        let mut parser = StderrParser::new();
        parser.parse("thread 'worker' started");
        assert!(!parser.in_panic_mode());
    }

    #[test]
    fn level_names() {
        for level in [
            LogLevel::Trace,
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
        ] {
            assert_eq!(LogLevel::from_name(level.as_str()), Some(level));
            assert_eq!(
                LogLevel::from_name(&level.as_str().to_uppercase()),
                Some(level)
            );
            assert_eq!(LogLevel::from(Level::from(level)), level);
        }
        assert_eq!(LogLevel::from_name("off"), None);
    }

    #[test]
    fn fields_rendering() {
        assert_eq!(render_fields(&[]), None);
        assert_eq!(
            render_fields(&fields(&[
                ("a", "1"),
                ("b", "two words"),
                ("c", ""),
                ("d", "x=y"),
                ("e", "q\"")
            ]))
            .unwrap(),
            r#"a=1 b="two words" c="" d="x=y" e="q\"""#
        );
    }

    #[test]
    fn timestamp_layout() {
        let t = time::macros::datetime!(2024-05-01 12:03:04.123_456_789 UTC);
        assert_eq!(hclog_timestamp(t), "2024-05-01T12:03:04.123456Z");
        let t = time::macros::datetime!(2006-01-02 15:04:05 -07:00);
        assert_eq!(hclog_timestamp(t), "2006-01-02T15:04:05.000000-07:00");
        let t = time::macros::datetime!(2024-12-31 23:59:59.5 +05:30);
        assert_eq!(hclog_timestamp(t), "2024-12-31T23:59:59.500000+05:30");
    }

    /// `2006-01-02T15:04:05.000000Z` exactly, checked by hand.
    fn is_hclog_utc_timestamp(s: &str) -> bool {
        let b = s.as_bytes();
        let digit_at = |i: &usize| b.get(*i).is_some_and(u8::is_ascii_digit);
        b.len() == 27
            && [
                0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25,
            ]
            .iter()
            .all(digit_at)
            && [
                (4, b'-'),
                (7, b'-'),
                (10, b'T'),
                (13, b':'),
                (16, b':'),
                (19, b'.'),
                (26, b'Z'),
            ]
            .iter()
            .all(|(i, c)| b.get(*i) == Some(c))
    }

    /// A `MakeWriter` into a shared buffer that counts `write` calls.
    #[derive(Clone, Default)]
    struct Buffer {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
    }

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            *self.writes.lock().unwrap() += 1;
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.bytes.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    #[derive(Debug)]
    struct Oops;
    impl fmt::Display for Oops {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("oops happened")
        }
    }
    impl std::error::Error for Oops {}

    #[test]
    fn hclog_layer_round_trip() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(HclogLayer::new(buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "kv::store", "trace {}", 1);
            tracing::debug!(target: "kv::store", key = "a", "debug");
            tracing::info!(
                target: "kv::store",
                user = "bob",
                count = 3,
                neg = -4i64,
                ok = true,
                ratio = 0.5,
                big = u128::MAX,
                nan = f64::NAN,
                list = ?vec![1, 2],
                quote = "say \"hi\"\nbye",
                "hello {}", "world"
            );
            tracing::warn!(target: "kv::store", error = &Oops as &(dyn std::error::Error + 'static), "warn");
            {
                let outer = tracing::info_span!("request", id = 7, user = "span-user");
                let _outer = outer.enter();
                let inner = tracing::info_span!("step", step = tracing::field::Empty);
                inner.record("step", "load");
                let _inner = inner.enter();
                tracing::error!(target: "kv::store", user = "event-user", "in span");
            }
            {
                let reserved =
                    tracing::info_span!("reserved", "@message" = "dropped", "@level" = "x");
                let _reserved = reserved.enter();
                tracing::info!(target: "kv::store", "reserved");
            }
            tracing::info!(target: "kv::store", ratio = 1);
        });

        let lines = buffer.lines();
        assert_eq!(lines.len(), 7, "{lines:#?}");
        assert_eq!(*buffer.writes.lock().unwrap(), 7, "one write per line");
        for line in &lines {
            assert!(line.starts_with(r#"{"@level":""#), "{line}");
        }

        let mut parser = StderrParser::new();
        let records: Vec<LogRecord> = lines.iter().map(|l| parser.parse(l)).collect();
        for record in &records {
            assert_eq!(record.module.as_deref(), Some("kv::store"));
            let ts = record.timestamp.as_deref().unwrap();
            assert!(is_hclog_utc_timestamp(ts), "{ts}");
        }
        type Summary<'a> = (LogLevel, &'a str, Vec<(String, String)>);
        let summary: Vec<Summary<'_>> = records
            .iter()
            .map(|r| (r.level, r.message.as_str(), r.fields.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (LogLevel::Trace, "trace 1", vec![]),
                (LogLevel::Debug, "debug", fields(&[("key", "a")])),
                (
                    LogLevel::Info,
                    "hello world",
                    fields(&[
                        ("big", &u128::MAX.to_string()),
                        ("count", "3"),
                        ("list", "[1, 2]"),
                        ("nan", "NaN"),
                        ("neg", "-4"),
                        ("ok", "true"),
                        ("quote", "say \"hi\"\nbye"),
                        ("ratio", "0.5"),
                        ("user", "bob"),
                    ])
                ),
                (
                    LogLevel::Warn,
                    "warn",
                    fields(&[("error", "oops happened")])
                ),
                (
                    LogLevel::Error,
                    "in span",
                    fields(&[("id", "7"), ("step", "load"), ("user", "event-user")])
                ),
                (LogLevel::Info, "reserved", vec![]),
                (LogLevel::Info, "", fields(&[("ratio", "1")])),
            ]
        );

        // JSON types survive: numbers and booleans are not strings.
        let info: Map<String, Value> = serde_json::from_str(&lines[2]).unwrap();
        assert_eq!(info["count"], Value::from(3));
        assert_eq!(info["ok"], Value::Bool(true));
        assert_eq!(info["ratio"], Value::from(0.5));
        assert_eq!(info["user"], Value::from("bob"));
        assert_eq!(info["list"], Value::from("[1, 2]"));
        // Key order: the hclog keys first.
        let keys: Vec<&str> = info.keys().map(String::as_str).collect();
        assert!(keys.contains(&"@module"));
        assert!(
            lines[2].starts_with(r#"{"@level":"info","@message":"hello world","@timestamp":""#)
        );
    }

    #[test]
    fn env_filter_sources() {
        assert_eq!(env_filter(None, None).to_string(), "info");
        assert_eq!(
            env_filter(Some("debug".into()), Some("trace".into())).to_string(),
            "debug"
        );
        assert_eq!(
            env_filter(Some(" ".into()), Some("warn".into())).to_string(),
            "warn"
        );
        assert_eq!(
            env_filter(None, Some("my_plugin=trace".into())).to_string(),
            "my_plugin=trace"
        );
    }

    /// What a test layer saw of one event.
    #[derive(Debug, Default, PartialEq)]
    struct Seen {
        target: String,
        level: Option<Level>,
        fields: Vec<(String, String)>,
    }

    struct SeenVisitor<'a>(&'a mut Vec<(String, String)>);
    impl Visit for SeenVisitor<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().to_owned(), value.to_owned()));
        }
    }

    struct Capture(Arc<Mutex<Vec<Seen>>>);
    impl<S: Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let mut seen = Seen {
                target: event.metadata().target().to_owned(),
                level: Some(*event.metadata().level()),
                fields: Vec::new(),
            };
            event.record(&mut SeenVisitor(&mut seen.fields));
            self.0.lock().unwrap().push(seen);
        }
    }

    #[test]
    fn emit_produces_plugin_events() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(seen.clone()));
        let mut parser = StderrParser::new();
        let lines = [
            r#"{"@level":"warn","@message":"disk low","@module":"kv","@timestamp":"2024-05-01T12:00:00.000000Z","free":"3%","path":"/var lib"}"#,
            "[TRACE] tick",
            "plain",
            "panic: boom",
            "[INFO] after",
        ];
        tracing::subscriber::with_default(subscriber, || {
            for line in lines {
                emit("kv-plugin", &parser.parse(line));
            }
        });
        let seen = seen.lock().unwrap();
        let pairs = |p: &[(&str, &str)]| fields(p);
        assert_eq!(
            *seen,
            vec![
                Seen {
                    target: PLUGIN_LOG_TARGET.into(),
                    level: Some(Level::WARN),
                    fields: pairs(&[
                        ("message", "disk low"),
                        ("plugin", "kv-plugin"),
                        ("module", "kv"),
                        ("timestamp", "2024-05-01T12:00:00.000000Z"),
                        ("fields", r#"free=3% path="/var lib""#),
                    ]),
                },
                Seen {
                    target: PLUGIN_LOG_TARGET.into(),
                    level: Some(Level::TRACE),
                    fields: pairs(&[("message", "tick"), ("plugin", "kv-plugin")]),
                },
                Seen {
                    target: PLUGIN_LOG_TARGET.into(),
                    level: Some(Level::DEBUG),
                    fields: pairs(&[("message", "plain"), ("plugin", "kv-plugin")]),
                },
                Seen {
                    target: PLUGIN_LOG_TARGET.into(),
                    level: Some(Level::ERROR),
                    fields: pairs(&[("message", "panic: boom"), ("plugin", "kv-plugin")]),
                },
                Seen {
                    target: PLUGIN_LOG_TARGET.into(),
                    level: Some(Level::ERROR),
                    fields: pairs(&[("message", "[INFO] after"), ("plugin", "kv-plugin")]),
                },
            ]
        );
    }
}
