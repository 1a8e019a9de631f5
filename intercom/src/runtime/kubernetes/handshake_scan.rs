//! Finding the handshake in a pod's log. A pod's log merges the plugin's stdout and
//! stderr, so log lines may come first: hclog JSON, and plain text a plugin (or its
//! runtime) writes to stderr while starting. Lines that do not look like a handshake are
//! logs; the first that does is the handshake (and is validated as one). The search is
//! bounded in lines, bytes and time.

use std::time::Duration;

use futures::{Stream, StreamExt};

/// At most this many lines are read looking for the handshake.
pub(crate) const MAX_LINES_BEFORE_HANDSHAKE: usize = 1_000;

/// At most this many bytes are read looking for the handshake.
pub(crate) const MAX_BYTES_BEFORE_HANDSHAKE: usize = 1 << 20;

/// How long a started plugin container has to print its handshake, by default.
pub(crate) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Why no handshake was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotFound {
    /// Lines read (all logs).
    pub(crate) lines: usize,
    /// The last of them, if any.
    pub(crate) last: Option<String>,
    /// Whether the log ended (the container stopped) rather than a bound being hit.
    pub(crate) ended: bool,
}

/// Reads `lines` until one looks like a handshake and returns it; every line before it
/// goes to `log`. Stops after [`MAX_LINES_BEFORE_HANDSHAKE`] lines,
/// [`MAX_BYTES_BEFORE_HANDSHAKE`] bytes or `wait`.
pub(crate) async fn find_handshake<S>(
    lines: &mut S,
    wait: Duration,
    mut log: impl FnMut(&str),
) -> Result<String, NotFound>
where
    S: Stream<Item = std::io::Result<String>> + Unpin,
{
    let mut seen = NotFound {
        lines: 0,
        last: None,
        ended: false,
    };
    let mut bytes = 0usize;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let next = tokio::time::timeout_at(deadline, lines.next()).await;
        let line = match next {
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(_)) | None) => {
                seen.ended = true;
                return Err(seen);
            }
            Err(_) => return Err(seen),
        };
        if looks_like_handshake(&line) {
            return Ok(line);
        }
        log(&line);
        seen.lines += 1;
        bytes += line.len() + 1;
        seen.last = Some(line);
        if seen.lines >= MAX_LINES_BEFORE_HANDSHAKE || bytes >= MAX_BYTES_BEFORE_HANDSHAKE {
            return Err(seen);
        }
    }
}

/// The first line of a log snapshot that looks like a handshake, if any.
pub(crate) fn handshake_in(text: &str) -> Option<&str> {
    text.lines()
        .take(MAX_LINES_BEFORE_HANDSHAKE)
        .find(|l| looks_like_handshake(l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn lines(v: &[&str]) -> impl Stream<Item = std::io::Result<String>> + Unpin {
        stream::iter(v.iter().map(|l| Ok(l.to_string())).collect::<Vec<_>>())
    }

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

    #[tokio::test]
    async fn plain_text_and_json_before_the_handshake_are_logs() {
        let mut logged = Vec::new();
        let mut s = lines(&[
            "Picked up JAVA_TOOL_OPTIONS: -Xmx1g",
            "{\"@level\":\"debug\",\"@message\":\"starting\"}",
            "1|1|tcp|10.0.0.4:1234|grpc|",
            "after",
        ]);
        let got = find_handshake(&mut s, Duration::from_secs(1), |l| {
            logged.push(l.to_owned())
        })
        .await
        .expect("a handshake");
        assert_eq!(got, "1|1|tcp|10.0.0.4:1234|grpc|");
        assert_eq!(logged.len(), 2);
        assert_eq!(
            s.next().await.unwrap().unwrap(),
            "after",
            "the rest is left for the log forwarder"
        );
    }

    #[tokio::test]
    async fn the_search_is_bounded_in_lines_and_ends_with_the_log() {
        let many: Vec<String> = (0..MAX_LINES_BEFORE_HANDSHAKE + 10)
            .map(|i| format!("line {i}"))
            .collect();
        let mut s = stream::iter(many.into_iter().map(Ok::<_, std::io::Error>));
        let err = find_handshake(&mut s, Duration::from_secs(5), |_| {})
            .await
            .unwrap_err();
        assert_eq!(err.lines, MAX_LINES_BEFORE_HANDSHAKE);
        assert!(!err.ended);
        let mut short = lines(&["only this"]);
        let err = find_handshake(&mut short, Duration::from_secs(5), |_| {})
            .await
            .unwrap_err();
        assert_eq!(
            (err.lines, err.last.as_deref(), err.ended),
            (1, Some("only this"), true)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_search_is_bounded_in_time() {
        let mut s = lines(&["hello"]).chain(stream::pending());
        let err = find_handshake(&mut s, Duration::from_secs(3), |_| {})
            .await
            .unwrap_err();
        assert_eq!((err.lines, err.ended), (1, false));
    }

    #[test]
    fn handshake_in_a_snapshot() {
        assert_eq!(
            handshake_in("boot\n{\"x\":1}\n1|1|tcp|a:1|grpc|\n"),
            Some("1|1|tcp|a:1|grpc|")
        );
        assert_eq!(handshake_in("boot\nstill booting\n"), None);
    }
}
