//! What the benchmark's binaries share: scenario 6's server-streaming service, once through
//! `#[intercom::plugin]`'s `Streaming<T>` ([`Chunks`]) and once as plain tonic code from
//! `proto/chunks.proto` ([`raw`]), both sending `count` chunks of `size` zero bytes.

use intercom::{Status, Streaming};

/// Plain tonic code for `proto/chunks.proto` (no intercom in its path).
pub mod raw {
    intercom::tonic::include_proto!("bench");
}

/// The key of the streaming plugin in both sides' plugin maps.
pub const CHUNKS_PLUGIN: &str = "chunks";

/// How many chunks either server produces ahead of its client.
pub const READ_AHEAD: usize = 4;

/// Scenario 6's service through the macro.
#[intercom::plugin(handshake(version = 1, cookie_key = "BENCH_STREAM", cookie_value = "bench"))]
pub trait Chunks: Send + Sync + 'static {
    /// `count` chunks of `size` zero bytes.
    async fn chunks(&self, count: u32, size: u32) -> Result<Streaming<Vec<u8>>, Status>;
}

/// Sends zeros, from a task, [`READ_AHEAD`] chunks ahead.
#[derive(Debug, Clone, Copy, Default)]
pub struct Zeros;

#[intercom::async_trait]
impl Chunks for Zeros {
    async fn chunks(&self, count: u32, size: u32) -> Result<Streaming<Vec<u8>>, Status> {
        let (tx, chunks) = Streaming::channel(READ_AHEAD);
        tokio::spawn(async move {
            for _ in 0..count {
                if tx.send(vec![0; size as usize]).await.is_err() {
                    return;
                }
            }
        });
        Ok(chunks)
    }
}

/// The raw tonic twin of [`Zeros`]: the same chunks through a channel of the same depth.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawZeros;

#[tonic::async_trait]
impl raw::chunks_server::Chunks for RawZeros {
    type ChunksStream = tokio_stream::wrappers::ReceiverStream<Result<raw::Chunk, tonic::Status>>;

    async fn chunks(
        &self,
        req: tonic::Request<raw::ChunksRequest>,
    ) -> Result<tonic::Response<Self::ChunksStream>, tonic::Status> {
        let raw::ChunksRequest { count, size } = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        tokio::spawn(async move {
            for _ in 0..count {
                let chunk = raw::Chunk {
                    data: vec![0; size as usize],
                };
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
    }
}
