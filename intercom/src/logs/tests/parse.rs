//! Tests of [`StderrParser`]'s line rules and of [`LogLevel`]'s names.

use tracing::Level;

use super::fields;
use crate::logs::{LogLevel, LogRecord, StderrParser};

/// One JSON line and the record it must parse to.
struct Case {
    line: &'static str,
    level: LogLevel,
    message: &'static str,
    module: Option<&'static str>,
    fields: &'static [(&'static str, &'static str)],
    timestamp: Option<&'static str>,
}

/// A line that is not an hclog entry: a debug record holding the raw line.
fn raw(line: &'static str) -> Case {
    Case {
        line,
        level: LogLevel::Debug,
        message: line,
        module: None,
        fields: &[],
        timestamp: None,
    }
}

/// Well-formed hclog lines, each with the record it must parse to.
fn hclog_cases() -> Vec<Case> {
    vec![
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
    ]
}

/// Lines that are JSON objects but not hclog entries: each one a raw debug record.
fn malformed_cases() -> Vec<Case> {
    vec![
        raw(r#"{"@level":"fatal","@message":"unknown level"}"#),
        raw(r#"{"@level":"warning","@message":"not an hclog level"}"#),
        raw(r#"{"@message":"missing level"}"#),
        raw(r#"{"@level":3,"@message":"numeric level"}"#),
        raw(r#"{"@level":null,"@message":"null level"}"#),
        raw(r#"{"@level":"info","@message":{"not":"a string"}}"#),
        raw(r#"{"@level":"info","@message":42}"#),
        raw("{}"),
    ]
}

#[test]
fn json_lines() {
    for case in hclog_cases().into_iter().chain(malformed_cases()) {
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
