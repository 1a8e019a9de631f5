//! The reader threads: one per captured pipe, forwarding what arrives as [`StdioData`]
//! chunks.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use super::CHUNK_SIZE;
use crate::proto::StdioData;
use crate::proto::stdio_data::Channel;

/// Where the reader threads send; `None` while nobody listens (they discard).
pub(super) type SenderSlot = Arc<Mutex<Option<mpsc::Sender<StdioData>>>>;

/// Creates a pipe, starts a thread forwarding its read end into `tx` as `channel` chunks,
/// and returns the write end.
pub(super) fn start_reader(channel: Channel, tx: SenderSlot) -> io::Result<io::PipeWriter> {
    let (reader, writer) = io::pipe()?;
    std::thread::Builder::new()
        .name(format!(
            "intercom-{}",
            channel.as_str_name().to_ascii_lowercase()
        ))
        .spawn(move || forward(reader, channel, tx))?;
    Ok(writer)
}

/// Reads `source` until EOF (every write end closed), sending each read as one chunk.
/// Once the receiver is gone (stream consumed and cancelled, or service dropped) it keeps
/// draining and discards, so writers never block on a pipe nobody reads.
fn forward(mut source: io::PipeReader, channel: Channel, slot: SenderSlot) {
    loop {
        let mut data = vec![0; CHUNK_SIZE];
        match source.read(&mut data) {
            Ok(0) => return,
            Ok(n) => {
                data.truncate(n);
                let chunk = StdioData {
                    channel: channel as i32,
                    data,
                };
                let tx = slot.lock().unwrap_or_else(PoisonError::into_inner).clone();
                // A plain thread, outside any runtime: `blocking_send` is allowed here.
                if let Some(tx) = tx
                    && tx.blocking_send(chunk).is_err()
                {
                    // The stream was cancelled: discard until a host opens a new one.
                    let mut current = slot.lock().unwrap_or_else(PoisonError::into_inner);
                    if current.as_ref().is_some_and(|c| c.same_channel(&tx)) {
                        *current = None;
                    }
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // Not expected on a pipe; stop rather than spin.
            Err(_) => return,
        }
    }
}
