//! Tests of [`HclogLayer`], hclog's timestamp layout and the plugin's level filter.

use std::fmt;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

use super::fields;
use crate::logs::hclog::hclog_timestamp;
use crate::logs::init::env_filter;
use crate::logs::{HclogLayer, LogLevel, LogRecord, StderrParser};

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

/// Logs the events [`hclog_layer_round_trip`] checks: every field type, span fields,
/// reserved keys and an event without a message.
fn log_sample_events() {
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
        let reserved = tracing::info_span!("reserved", "@message" = "dropped", "@level" = "x");
        let _reserved = reserved.enter();
        tracing::info!(target: "kv::store", "reserved");
    }
    tracing::info!(target: "kv::store", ratio = 1);
}

/// Parses the lines [`log_sample_events`] produced and checks the records they give.
fn assert_sample_records(lines: &[String]) {
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
}

#[test]
fn hclog_layer_round_trip() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::registry().with(HclogLayer::new(buffer.clone()));
    tracing::subscriber::with_default(subscriber, log_sample_events);

    let lines = buffer.lines();
    assert_eq!(lines.len(), 7, "{lines:#?}");
    assert_eq!(*buffer.writes.lock().unwrap(), 7, "one write per line");
    for line in &lines {
        assert!(line.starts_with(r#"{"@level":""#), "{line}");
    }
    assert_sample_records(&lines);

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
    assert!(lines[2].starts_with(r#"{"@level":"info","@message":"hello world","@timestamp":""#));
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
