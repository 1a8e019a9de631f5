//! Finding the handshake among the lines a plugin prints, for every runtime. Pure: the
//! runtimes read the lines (a process's stdout, a pod's log) and feed them in.
//!
//! A process's stdout is go-plugin's contract: its first line is the handshake, and
//! anything else there is a bad handshake. A pod's log merges stdout and stderr, so log
//! lines (hclog JSON, plain text a plugin or its runtime writes while starting) may come
//! first: there the first line that [looks like a handshake](looks_like_handshake) is the
//! handshake, and the lines before it are logs. Either search is bounded in lines and bytes.

pub(crate) use crate::protocol::MAX_HANDSHAKE_LINE;

/// At most this many log lines come before the handshake in a pod's log.
pub(crate) const MAX_LINES_BEFORE_HANDSHAKE: usize = 1_000;

/// At most this many bytes of log come before the handshake in a pod's log.
pub(crate) const MAX_BYTES_BEFORE_HANDSHAKE: usize = 1 << 20;

/// Whether `line` claims to be a handshake: `CORE|APP|NETWORK|ADDRESS…` with numeric
/// CORE and APP. Anything else printed before the handshake is a log line.
pub(crate) fn looks_like_handshake(line: &str) -> bool {
    let mut fields = line.trim().split('|');
    let numeric =
        |f: Option<&str>| f.is_some_and(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    numeric(fields.next())
        && numeric(fields.next())
        && fields.next().is_some()
        && fields.next().is_some()
}

/// What may come before the handshake line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Preamble {
    /// Nothing: the first line is the handshake, whatever it holds (a process's stdout).
    Nothing,
    /// Log lines, up to [`MAX_LINES_BEFORE_HANDSHAKE`] and [`MAX_BYTES_BEFORE_HANDSHAKE`]
    /// (a pod's log).
    Logs,
}

/// What one line turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// The handshake: parse and validate it.
    Handshake,
    /// A log line before the handshake: forward it, and feed the next.
    Log,
    /// A log line that used up the bounds: stop looking.
    Exhausted,
}

/// Fed one line at a time, says which is the handshake; remembers what came before it
/// for the error when there is none.
#[derive(Debug, Clone)]
pub(crate) struct HandshakeFinder {
    preamble: Preamble,
    logs: usize,
    bytes: usize,
    last: Option<String>,
}

/// Why no handshake was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotFound {
    /// Lines read (all logs).
    pub(crate) lines: usize,
    /// The last of them, if any.
    pub(crate) last: Option<String>,
    /// Whether the output ended (the plugin stopped) rather than a bound being hit.
    pub(crate) ended: bool,
}

impl HandshakeFinder {
    /// A finder for output in which `preamble` may come before the handshake.
    pub(crate) fn new(preamble: Preamble) -> Self {
        Self {
            preamble,
            logs: 0,
            bytes: 0,
            last: None,
        }
    }

    /// Classifies the next line, as read (a trailing newline is fine). A line that is
    /// not UTF-8 is a log line in a pod's log, and a bad handshake on a process's stdout.
    pub(crate) fn push(&mut self, line: &[u8]) -> Line {
        let handshake = match self.preamble {
            Preamble::Nothing => true,
            Preamble::Logs => std::str::from_utf8(line).is_ok_and(looks_like_handshake),
        };
        if handshake {
            return Line::Handshake;
        }
        self.logs += 1;
        self.bytes += line.len() + 1;
        let text = String::from_utf8_lossy(line);
        self.last = Some(text.trim_end_matches(['\r', '\n']).to_owned());
        if self.logs >= MAX_LINES_BEFORE_HANDSHAKE || self.bytes >= MAX_BYTES_BEFORE_HANDSHAKE {
            Line::Exhausted
        } else {
            Line::Log
        }
    }

    /// What was seen, once the search stops without a handshake; `ended` says whether the
    /// output ended.
    pub(crate) fn not_found(self, ended: bool) -> NotFound {
        NotFound {
            lines: self.logs,
            last: self.last,
            ended,
        }
    }
}

/// The handshake line in a snapshot of a pod's log, if any.
pub(crate) fn handshake_in(text: &str) -> Option<&str> {
    let mut finder = HandshakeFinder::new(Preamble::Logs);
    for line in text.lines() {
        match finder.push(line.as_bytes()) {
            Line::Handshake => return Some(line),
            Line::Log => {}
            Line::Exhausted => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_looks_like_a_handshake() {
        assert!(looks_like_handshake("1|1|unix|/tmp/plugin123|grpc|"));
        assert!(looks_like_handshake(
            "1|7|tcp|10.0.0.4:1234|grpc|CERT|true|extra"
        ));
        assert!(
            looks_like_handshake("2|1|tcp|x"),
            "an incompatible one is still a handshake"
        );
        assert!(!looks_like_handshake("starting plugin, please wait"));
        assert!(!looks_like_handshake(
            "{\"@level\":\"info\",\"@message\":\"a|b|c|d\"}"
        ));
        assert!(!looks_like_handshake("WARN|2026|disk|low"));
        assert!(!looks_like_handshake("1|1|tcp"));
        assert!(!looks_like_handshake(""));
    }

    #[test]
    fn on_a_process_stdout_the_first_line_is_the_handshake_whatever_it_holds() {
        let mut finder = HandshakeFinder::new(Preamble::Nothing);
        assert_eq!(
            finder.push(b"starting plugin, please wait"),
            Line::Handshake
        );
        assert_eq!(
            finder.not_found(true),
            NotFound {
                lines: 0,
                last: None,
                ended: true
            }
        );
    }

    #[test]
    fn in_a_pod_log_plain_text_and_json_before_the_handshake_are_logs() {
        let mut finder = HandshakeFinder::new(Preamble::Logs);
        assert_eq!(
            finder.push(b"Picked up JAVA_TOOL_OPTIONS: -Xmx1g"),
            Line::Log
        );
        assert_eq!(
            finder.push(b"{\"@level\":\"debug\",\"@message\":\"starting\"}"),
            Line::Log
        );
        assert_eq!(finder.push(b"1|1|tcp|10.0.0.4:1234|grpc|"), Line::Handshake);
    }

    #[test]
    fn a_line_that_is_not_utf8_is_a_log_in_a_pod_and_the_handshake_on_stdout() {
        let mut pod = HandshakeFinder::new(Preamble::Logs);
        assert_eq!(pod.push(b"1|1|tcp|\xff:1|grpc|\n"), Line::Log);
        assert_eq!(
            pod.push(b"1|1|tcp|10.0.0.4:1234|grpc|\r\n"),
            Line::Handshake
        );
        assert_eq!(
            pod.not_found(false).last.as_deref(),
            Some("1|1|tcp|\u{fffd}:1|grpc|"),
            "the log keeps a readable copy, without its newline"
        );
        let mut stdout = HandshakeFinder::new(Preamble::Nothing);
        assert_eq!(
            stdout.push(b"\xff\n"),
            Line::Handshake,
            "parsing rejects it"
        );
    }

    #[test]
    fn the_logs_before_the_handshake_are_bounded_in_lines_and_bytes() {
        let mut finder = HandshakeFinder::new(Preamble::Logs);
        for i in 1..MAX_LINES_BEFORE_HANDSHAKE {
            assert_eq!(finder.push(format!("line {i}").as_bytes()), Line::Log);
        }
        assert_eq!(finder.push(b"the last"), Line::Exhausted);
        let seen = finder.not_found(false);
        assert_eq!(
            (seen.lines, seen.last.as_deref(), seen.ended),
            (MAX_LINES_BEFORE_HANDSHAKE, Some("the last"), false)
        );

        let mut finder = HandshakeFinder::new(Preamble::Logs);
        let long = "x".repeat(MAX_BYTES_BEFORE_HANDSHAKE / 2);
        assert_eq!(finder.push(long.as_bytes()), Line::Log);
        assert_eq!(finder.push(long.as_bytes()), Line::Exhausted);
    }

    #[test]
    fn handshake_in_a_snapshot() {
        assert_eq!(
            handshake_in("boot\n{\"x\":1}\n1|1|tcp|a:1|grpc|\n"),
            Some("1|1|tcp|a:1|grpc|")
        );
        assert_eq!(handshake_in("boot\nstill booting\n"), None);
        let flood = "log\n".repeat(MAX_LINES_BEFORE_HANDSHAKE) + "1|1|tcp|a:1|grpc|\n";
        assert_eq!(
            handshake_in(&flood),
            None,
            "past the bound is not looked at"
        );
    }
}
