//! Container log files in the CRI format, and reading them the way `kubectl logs` asks.
//!
//! One file per container instance; every record is
//! `<RFC 3339 nano timestamp> <stdout|stderr> <F|P> <bytes>\n` (`P`: a partial line that
//! continues in the next record), exactly what containerd writes under `/var/log/pods`.

use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::Stream;
use jiff::Timestamp;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncSeekExt as _, BufReader};
use tokio::sync::watch;

/// Longest record; longer lines are split into `P` records.
const MAX_RECORD: usize = 16 * 1024;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pipe {
    Stdout,
    Stderr,
}

impl Pipe {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Progress {
    /// Bytes of whole records in the file.
    len: u64,
    /// No more writes will come.
    closed: bool,
}

/// The log of one container instance.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    file: Mutex<Option<File>>,
    progress: watch::Sender<Progress>,
}

/// Formats a time like the kubelet (`RFC3339NanoFixed`).
pub(crate) fn format_timestamp(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string()
}

impl LogFile {
    pub(crate) fn create(path: PathBuf) -> std::io::Result<Arc<Self>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::create(&path)?;
        Ok(Arc::new(Self {
            path,
            file: Mutex::new(Some(file)),
            progress: watch::Sender::new(Progress::default()),
        }))
    }

    /// Appends one record (`partial`: the line continues in the next record).
    pub(crate) fn append(&self, pipe: Pipe, line: &[u8], partial: bool) {
        let mut record = format!(
            "{} {} {} ",
            format_timestamp(Timestamp::now()),
            pipe.as_str(),
            if partial { 'P' } else { 'F' }
        )
        .into_bytes();
        record.extend_from_slice(line);
        record.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let Some(f) = file.as_mut() else { return };
        if let Err(error) = f.write_all(&record) {
            tracing::warn!(error = &error as &dyn std::error::Error, path = ?self.path, "failed to write container log");
            return;
        }
        drop(file);
        self.progress.send_modify(|p| p.len += record.len() as u64);
    }

    /// Ends the log: followers finish once they have read everything.
    pub(crate) fn close(&self) {
        self.file.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.progress.send_modify(|p| p.closed = true);
    }

    /// Copies a pipe into the log until it closes.
    pub(crate) async fn pump(self: Arc<Self>, pipe: Pipe, reader: impl AsyncRead + Unpin) {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = (&mut reader)
                .take(MAX_RECORD as u64)
                .read_until(b'\n', &mut line)
                .await;
            match read {
                Ok(0) => return,
                Ok(_) => {
                    let whole = line.last() == Some(&b'\n');
                    if whole {
                        line.pop();
                    }
                    // A line cut by the size cap continues; a last line without newline ends.
                    let partial = !whole && line.len() >= MAX_RECORD;
                    self.append(pipe, &line, partial);
                }
                Err(error) => {
                    tracing::debug!(
                        error = &error as &dyn std::error::Error,
                        "container pipe read failed"
                    );
                    return;
                }
            }
        }
    }
}

/// What `GET /containerLogs` asked for (kubelet query parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogQuery {
    pub(crate) follow: bool,
    pub(crate) previous: bool,
    pub(crate) timestamps: bool,
    pub(crate) tail_lines: Option<u64>,
    pub(crate) since: Option<Timestamp>,
    pub(crate) limit_bytes: Option<u64>,
    /// `None`: both pipes.
    pub(crate) pipe: Option<Pipe>,
}

/// A query parameter the kubelet rejects.
#[derive(Debug, thiserror::Error)]
#[error("failed to parse query parameter {name}={value:?}")]
pub(crate) struct BadQuery {
    pub(crate) name: String,
    pub(crate) value: String,
}

impl LogQuery {
    /// Parses `follow=&previous=&timestamps=&tailLines=&sinceSeconds=&sinceTime=&limitBytes=&stream=`.
    pub(crate) fn parse(query: &str, now: Timestamp) -> Result<Self, BadQuery> {
        let mut q = Self::default();
        for (name, value) in form_pairs(query) {
            let bad = || BadQuery {
                name: name.clone(),
                value: value.clone(),
            };
            let flag = || match value.as_str() {
                "" | "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(bad()),
            };
            match name.as_str() {
                "follow" => q.follow = flag()?,
                "previous" => q.previous = flag()?,
                "timestamps" => q.timestamps = flag()?,
                "tailLines" | "tail" if value == "all" => q.tail_lines = None,
                "tailLines" | "tail" => q.tail_lines = Some(value.parse().map_err(|_| bad())?),
                "limitBytes" => q.limit_bytes = Some(value.parse().map_err(|_| bad())?),
                "sinceSeconds" => {
                    let secs: i64 = value.parse().map_err(|_| bad())?;
                    let span = jiff::SignedDuration::from_secs(secs);
                    q.since = Some(now.checked_sub(span).map_err(|_| bad())?);
                }
                "sinceTime" => q.since = Some(value.parse().map_err(|_| bad())?),
                "stream" => {
                    q.pipe = match value.as_str() {
                        "" | "All" => None,
                        "Stdout" => Some(Pipe::Stdout),
                        "Stderr" => Some(Pipe::Stderr),
                        _ => return Err(bad()),
                    }
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

/// `application/x-www-form-urlencoded` pairs, percent-decoded.
pub(crate) fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One parsed record.
struct Record<'a> {
    time: Option<Timestamp>,
    raw_time: &'a [u8],
    pipe: Option<Pipe>,
    partial: bool,
    content: &'a [u8],
}

fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let raw_time = parts.next()?;
    let pipe = match parts.next()? {
        b"stdout" => Some(Pipe::Stdout),
        b"stderr" => Some(Pipe::Stderr),
        _ => None,
    };
    let partial = parts.next()? == b"P";
    let content = parts.next().unwrap_or_default();
    let time = std::str::from_utf8(raw_time)
        .ok()
        .and_then(|t| t.parse().ok());
    Some(Record {
        time,
        raw_time,
        pipe,
        partial,
        content,
    })
}

/// Applies the per-record filters and renders what the client sees.
#[derive(Debug)]
struct Renderer {
    query: LogQuery,
    /// Bytes still allowed by `limitBytes`.
    remaining: Option<u64>,
}

impl Renderer {
    fn keep(&self, r: &Record<'_>) -> bool {
        let pipe_ok = self.query.pipe.is_none() || r.pipe == self.query.pipe;
        let time_ok = match (self.query.since, r.time) {
            (Some(since), Some(t)) => t >= since,
            _ => true,
        };
        pipe_ok && time_ok
    }

    fn render(&mut self, r: &Record<'_>, out: &mut Vec<u8>) {
        let start = out.len();
        if self.query.timestamps {
            out.extend_from_slice(r.raw_time);
            out.push(b' ');
        }
        out.extend_from_slice(r.content);
        if !r.partial {
            out.push(b'\n');
        }
        if let Some(remaining) = self.remaining.as_mut() {
            let added = (out.len() - start) as u64;
            if added > *remaining {
                out.truncate(start + usize::try_from(*remaining).unwrap_or(usize::MAX));
                *remaining = 0;
            } else {
                *remaining -= added;
            }
        }
    }

    fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }
}

/// Body of a log response: the selected existing lines, then (with `follow`) new lines
/// until the instance's log is closed.
pub(crate) fn read(
    log: Arc<LogFile>,
    query: LogQuery,
) -> Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>> {
    let renderer = Renderer {
        remaining: query.limit_bytes,
        query,
    };
    Box::pin(futures::stream::unfold(
        Some(ReadState {
            progress: log.progress.subscribe(),
            log,
            renderer,
            offset: 0,
            first: true,
        }),
        |state| async move {
            let mut state = state?;
            match state.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(state))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        },
    ))
}

struct ReadState {
    log: Arc<LogFile>,
    progress: watch::Receiver<Progress>,
    renderer: Renderer,
    offset: u64,
    first: bool,
}

impl ReadState {
    async fn next_chunk(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            if self.renderer.exhausted() {
                return Ok(None);
            }
            let progress = *self.progress.borrow_and_update();
            if progress.len > self.offset {
                let data = self.read_range(progress.len).await?;
                let out = self.render(&data);
                self.first = false;
                if !out.is_empty() {
                    return Ok(Some(Bytes::from(out)));
                }
                continue;
            }
            if self.first {
                // Nothing written yet: an empty first chunk keeps `tailLines` semantics simple.
                self.first = false;
            }
            if !self.renderer.query.follow || progress.closed {
                return Ok(None);
            }
            if self.progress.changed().await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn read_range(&mut self, end: u64) -> std::io::Result<Vec<u8>> {
        let mut file = tokio::fs::File::open(&self.log.path).await?;
        file.seek(std::io::SeekFrom::Start(self.offset)).await?;
        let len = usize::try_from(end - self.offset).unwrap_or(usize::MAX);
        let mut data = vec![0; len];
        file.read_exact(&mut data).await?;
        self.offset = end;
        Ok(data)
    }

    fn render(&mut self, data: &[u8]) -> Vec<u8> {
        let records: Vec<Record<'_>> = data
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(parse_record)
            .filter(|r| self.renderer.keep(r))
            .collect();
        let skip = match (self.first, self.renderer.query.tail_lines) {
            (true, Some(tail)) => {
                let whole_lines = records.iter().filter(|r| !r.partial).count() as u64;
                let drop_lines = whole_lines.saturating_sub(tail);
                // Skip records until `drop_lines` complete lines have gone by.
                let mut seen = 0;
                records
                    .iter()
                    .position(|r| {
                        if seen == drop_lines {
                            return true;
                        }
                        if !r.partial {
                            seen += 1;
                        }
                        false
                    })
                    .unwrap_or(records.len())
            }
            _ => 0,
        };
        let mut out = Vec::new();
        for r in records.iter().skip(skip) {
            self.renderer.render(r, &mut out);
            if self.renderer.exhausted() {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    async fn collect(log: &Arc<LogFile>, query: LogQuery) -> String {
        let chunks: Vec<_> = read(log.clone(), query).collect().await;
        let bytes: Vec<u8> = chunks
            .into_iter()
            .flat_map(|c| c.unwrap().to_vec())
            .collect();
        String::from_utf8(bytes).unwrap()
    }

    #[tokio::test]
    async fn tail_timestamps_limit_and_pipes() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::create(dir.path().join("0.log")).unwrap();
        for i in 0..5 {
            log.append(Pipe::Stdout, format!("line {i}").as_bytes(), false);
        }
        log.append(Pipe::Stderr, b"oops", false);
        log.close();
        assert_eq!(
            collect(&log, LogQuery::default()).await,
            "line 0\nline 1\nline 2\nline 3\nline 4\noops\n"
        );
        let tail = LogQuery {
            tail_lines: Some(2),
            ..LogQuery::default()
        };
        assert_eq!(collect(&log, tail).await, "line 4\noops\n");
        let stdout = LogQuery {
            pipe: Some(Pipe::Stdout),
            tail_lines: Some(1),
            ..LogQuery::default()
        };
        assert_eq!(collect(&log, stdout).await, "line 4\n");
        let limited = LogQuery {
            limit_bytes: Some(9),
            ..LogQuery::default()
        };
        assert_eq!(collect(&log, limited).await, "line 0\nli");
        let stamped = LogQuery {
            timestamps: true,
            tail_lines: Some(1),
            ..LogQuery::default()
        };
        let line = collect(&log, stamped).await;
        let (ts, rest) = line.split_once(' ').unwrap();
        assert_eq!(rest, "oops\n");
        assert!(ts.parse::<Timestamp>().is_ok(), "{ts}");
        let future = LogQuery {
            since: Some(Timestamp::now() + jiff::SignedDuration::from_secs(60)),
            ..LogQuery::default()
        };
        assert_eq!(collect(&log, future).await, "");
    }

    #[tokio::test]
    async fn follow_streams_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::create(dir.path().join("0.log")).unwrap();
        log.append(Pipe::Stdout, b"first", false);
        let query = LogQuery {
            follow: true,
            ..LogQuery::default()
        };
        let reader = tokio::spawn({
            let log = log.clone();
            async move { collect(&log, query).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        log.append(Pipe::Stdout, b"second", false);
        log.close();
        assert_eq!(reader.await.unwrap(), "first\nsecond\n");
    }

    #[test]
    fn parses_kubelet_queries() {
        let now = Timestamp::now();
        let q = LogQuery::parse(
            "follow=true&tailLines=10&timestamps=true&sinceSeconds=5&stream=Stderr",
            now,
        )
        .unwrap();
        assert!(q.follow && q.timestamps && !q.previous);
        assert_eq!(q.tail_lines, Some(10));
        assert_eq!(q.pipe, Some(Pipe::Stderr));
        assert_eq!(q.since, Some(now - jiff::SignedDuration::from_secs(5)));
        assert!(LogQuery::parse("tailLines=x", now).is_err());
        assert_eq!(
            form_pairs("a=1%2C2&b"),
            vec![("a".into(), "1,2".into()), ("b".into(), String::new())]
        );
    }
}
