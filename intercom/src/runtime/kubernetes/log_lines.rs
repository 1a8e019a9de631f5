//! A pod's log as lines, read the way the process runtime reads a plugin's stderr: at
//! most [`MAX_LOG_LINE`](crate::logs::MAX_LOG_LINE) bytes per line (a longer one arrives
//! in pieces) and invalid UTF-8 replaced, so one endless line cannot grow the host's
//! memory and one bad byte cannot stop log forwarding.

use std::io;

use futures::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use futures::stream::{self, BoxStream, StreamExt};

use crate::logs::MAX_LOG_LINE;

/// The lines of `reader`, bounded and lossy; ends at EOF or after the first read error.
pub(crate) fn bounded_lines<R>(reader: R) -> BoxStream<'static, io::Result<String>>
where
    R: AsyncBufRead + Unpin + Send + 'static,
{
    stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buf = Vec::new();
        match (&mut reader)
            .take(MAX_LOG_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) => None,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']).to_owned();
                Some((Ok(line), Some(reader)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_come_in_pieces_and_bad_utf8_is_replaced() {
        let mut log = vec![b'x'; MAX_LOG_LINE * 3 + 10];
        log.push(b'\n');
        log.extend_from_slice(b"bad \xff\xfe bytes\n");
        log.extend_from_slice(b"{\"@level\":\"info\",\"@message\":\"still forwarded\"}\n");
        let lines: Vec<String> = bounded_lines(futures::io::Cursor::new(log))
            .map(|l| l.expect("no read error"))
            .collect()
            .await;
        assert_eq!(lines.len(), 6, "3 full pieces, the rest, then two lines");
        assert!(lines.iter().all(|l| l.len() <= MAX_LOG_LINE));
        assert_eq!(lines[3].len(), 10);
        assert_eq!(lines[4], "bad \u{fffd}\u{fffd} bytes");
        assert!(lines[5].contains("still forwarded"));
    }
}
