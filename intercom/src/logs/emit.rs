//! Host side: [`emit`] and [`emit_with`] turn a [`LogRecord`] into a `tracing` event.

use tracing::Level;

use super::{LogLevel, LogRecord, PLUGIN_LOG_TARGET};

/// Emits a plugin log record as a `tracing` event.
///
/// The event has target [`PLUGIN_LOG_TARGET`], the record's level, the message as its
/// message, and the fields `plugin` (the plugin's name), `module` and `timestamp` (when
/// the record has them) and `fields`: the record's extra fields as one `k=v k2=v2`
/// string (values with spaces, quotes or `=` are quoted), because `tracing` field names
/// must be known at compile time. Filter these events with
/// `intercom::plugin=<level>` in an `EnvFilter`.
pub(crate) fn emit(plugin: &str, record: &LogRecord) {
    emit_with(plugin, None, record);
}

/// As [`emit`], with the Kubernetes pod the line came from as field `pod`.
pub(crate) fn emit_with(plugin: &str, pod: Option<&str>, record: &LogRecord) {
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
pub(super) fn render_fields(fields: &[(String, String)]) -> Option<String> {
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
