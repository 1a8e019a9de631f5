//! Reading a pod's log for the handshake, within the start's wait. A pod's log merges the
//! plugin's stdout and stderr, so log lines may come first; which line is the handshake,
//! and how many may come before it, is [`HandshakeFinder`]'s (shared with the process
//! runtime). Lines before the handshake go to the log forwarder.

use std::time::Duration;

use futures::{Stream, StreamExt};

use crate::handshake::find::{HandshakeFinder, Line, NotFound, Preamble};

/// How long a started plugin container has to print its handshake, by default.
pub(crate) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads `lines` until one looks like a handshake and returns it; every line before it
/// goes to `log`. Stops at [`HandshakeFinder`]'s bounds or after `wait`.
pub(crate) async fn find_handshake<S>(
    lines: &mut S,
    wait: Duration,
    mut log: impl FnMut(&str),
) -> Result<String, NotFound>
where
    S: Stream<Item = std::io::Result<String>> + Unpin,
{
    let mut finder = HandshakeFinder::new(Preamble::Logs);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let line = match tokio::time::timeout_at(deadline, lines.next()).await {
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(_)) | None) => return Err(finder.not_found(true)),
            Err(_) => return Err(finder.not_found(false)),
        };
        match finder.push(line.as_bytes()) {
            Line::Handshake => return Ok(line),
            Line::Log => log(&line),
            Line::Exhausted => {
                log(&line);
                return Err(finder.not_found(false));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn lines(v: &[&str]) -> impl Stream<Item = std::io::Result<String>> + Unpin {
        stream::iter(v.iter().map(|l| Ok(l.to_string())).collect::<Vec<_>>())
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
        let many: Vec<String> = (0..crate::handshake::find::MAX_LINES_BEFORE_HANDSHAKE + 10)
            .map(|i| format!("line {i}"))
            .collect();
        let mut s = stream::iter(many.into_iter().map(Ok::<_, std::io::Error>));
        let err = find_handshake(&mut s, Duration::from_secs(5), |_| {})
            .await
            .unwrap_err();
        assert_eq!(
            err.lines,
            crate::handshake::find::MAX_LINES_BEFORE_HANDSHAKE
        );
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
}
