//! The last lines of a plugin's stderr, kept for error messages.
//!
//! A plain ring of the last lines loses what matters most when a plugin panics with
//! `RUST_BACKTRACE=1` (or a Go plugin panics): the panic message comes first and the
//! backtrace after it pushes it out. So the tail also pins the most recent panic header and
//! its message, and shows them above the last lines when they have scrolled out.

use std::collections::VecDeque;

/// How many of the last lines are kept.
pub(crate) const TAIL_LINES: usize = 20;

/// How many lines of a panic (header and message) are pinned.
const PANIC_LINES: usize = 6;

/// The last lines of one plugin's stderr, with the latest panic message pinned.
#[derive(Debug, Default)]
pub(crate) struct StderrTail {
    /// The last [`TAIL_LINES`] lines; `.0` is the line number (from 0).
    lines: VecDeque<(u64, String)>,
    /// The latest panic: its first line's number and up to [`PANIC_LINES`] lines.
    panic: Option<(u64, Vec<String>)>,
    /// Whether the lines after the panic header are still its message.
    in_panic: bool,
    /// How many lines were pushed.
    count: u64,
}

impl StderrTail {
    /// Adds one line (without its newline).
    pub(crate) fn push(&mut self, line: &str) {
        let number = self.count;
        self.count += 1;
        if is_panic_start(line) {
            self.panic = Some((number, vec![line.to_owned()]));
            self.in_panic = true;
        } else if self.in_panic {
            match &mut self.panic {
                Some((_, lines)) if !ends_panic_message(line) && lines.len() < PANIC_LINES => {
                    lines.push(line.to_owned());
                }
                _ => self.in_panic = false,
            }
        }
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back((number, line.to_owned()));
    }

    /// The tail as text: the pinned panic first when its first line has scrolled out of
    /// the last lines, then the last lines; empty when nothing was written.
    pub(crate) fn render(&self) -> String {
        let mut out: Vec<&str> = Vec::new();
        let first_kept = self.lines.front().map_or(0, |(n, _)| *n);
        if let Some((start, panic)) = &self.panic
            && *start < first_kept
        {
            out.extend(panic.iter().map(String::as_str));
            out.push("[…]");
        }
        out.extend(self.lines.iter().map(|(_, l)| l.as_str()));
        out.join("\n")
    }
}

/// A Rust panic (`thread 'main' panicked at src/main.rs:3:5:`, or an intercom plugin's
/// `plugin panicked` log line, whose `panic` field says `panicked at …`) or a Go one
/// (`panic: …`).
fn is_panic_start(line: &str) -> bool {
    line.contains("panicked at ") || line.starts_with("panic: ")
}

/// Where the message after a panic header ends: the backtrace, a note, a blank line, or
/// Go's goroutine dump.
fn ends_panic_message(line: &str) -> bool {
    line.is_empty()
        || line.starts_with("stack backtrace:")
        || line.starts_with("note: ")
        || line.starts_with("goroutine ")
        || line.starts_with("   0: ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(lines: &[&str]) -> String {
        let mut t = StderrTail::default();
        for l in lines {
            t.push(l);
        }
        t.render()
    }

    #[test]
    fn short_output_is_kept_as_is() {
        assert_eq!(tail(&[]), "");
        assert_eq!(tail(&["one", "two"]), "one\ntwo");
    }

    /// `RUST_BACKTRACE=1` output: the header and message, then a backtrace far longer
    /// than the tail.
    #[test]
    fn a_panic_message_survives_a_long_backtrace() {
        let mut lines = vec![
            "starting".to_owned(),
            "thread 'tokio-runtime-worker' panicked at src/main.rs:12:9:".to_owned(),
            "the config file is missing".to_owned(),
            "stack backtrace:".to_owned(),
        ];
        for i in 0..40 {
            lines.push(format!("  {i:>2}: some::frame::number_{i}"));
            lines.push(format!("             at ./src/frame_{i}.rs:1:1"));
        }
        lines.push(
            "note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace."
                .to_owned(),
        );
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let text = tail(&refs);
        assert!(
            text.starts_with(
                "thread 'tokio-runtime-worker' panicked at src/main.rs:12:9:\nthe config file is missing\n[…]\n"
            ),
            "{text}"
        );
        assert!(
            !text.contains("stack backtrace:"),
            "only the message is pinned: {text}"
        );
        assert!(
            text.ends_with("RUST_BACKTRACE=full` for a verbose backtrace."),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3 + TAIL_LINES, "{text}");
    }

    #[test]
    fn a_panic_still_in_the_tail_is_not_repeated() {
        let text = tail(&[
            "thread 'main' panicked at src/main.rs:2:5:",
            "boom",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        ]);
        assert_eq!(text.matches("boom").count(), 1, "{text}");
        assert!(!text.contains('…'), "{text}");
    }

    #[test]
    fn a_go_panic_message_survives_its_goroutine_dump() {
        let mut lines = vec![
            "panic: runtime error: index out of range [3] with length 3",
            "",
        ];
        lines.push("goroutine 1 [running]:");
        let frames: Vec<String> = (0..30).map(|i| format!("main.f{i}()")).collect();
        lines.extend(frames.iter().map(String::as_str));
        let text = tail(&lines);
        assert!(
            text.starts_with("panic: runtime error: index out of range [3] with length 3\n[…]\n"),
            "{text}"
        );
    }

    #[test]
    fn the_latest_panic_is_pinned() {
        let note = "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace";
        let mut lines = vec!["thread 'a' panicked at a.rs:1:1:", "first", note];
        lines.extend(["thread 'b' panicked at b.rs:1:1:", "second", note]);
        let filler: Vec<String> = (0..30).map(|i| format!("line {i}")).collect();
        lines.extend(filler.iter().map(String::as_str));
        let text = tail(&lines);
        assert!(
            text.starts_with("thread 'b' panicked at b.rs:1:1:\nsecond\n[…]"),
            "{text}"
        );
        assert!(!text.contains("first"), "{text}");
    }
}
