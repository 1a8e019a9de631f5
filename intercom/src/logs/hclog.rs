//! Plugin side: [`HclogLayer`], the `tracing_subscriber` layer writing hclog JSON lines,
//! and hclog's timestamp layout.

use std::fmt;
use std::io::Write as _;

use serde_json::Value;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::visitor::JsonVisitor;
use super::{LEVEL_KEY, LogLevel, MESSAGE_KEY, MODULE_KEY, TIMESTAMP_KEY};

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
pub(crate) struct HclogLayer<W> {
    make_writer: W,
}

impl<W> HclogLayer<W> {
    /// A layer writing to the writers `make_writer` makes, e.g. `std::io::stderr`.
    pub(crate) fn new(make_writer: W) -> Self {
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
pub(super) fn upsert(fields: &mut Vec<(String, Value)>, key: String, value: Value) {
    match fields.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => fields.push((key, value)),
    }
}

/// Formats a time in hclog's layout `2006-01-02T15:04:05.000000Z07:00`: exactly six
/// fractional digits, then `Z` for UTC or `±hh:mm`.
pub(super) fn hclog_timestamp(t: time::OffsetDateTime) -> String {
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
