//! Tests of [`emit`](crate::logs::emit): the `tracing` events of plugin log records.

use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use super::fields;
use crate::logs::emit::render_fields;
use crate::logs::{PLUGIN_LOG_TARGET, StderrParser, emit};

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
