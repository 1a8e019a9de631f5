//! Host side: [`pump`] copies a plugin's `StreamStdio` chunks to two writers.

use std::io;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tonic::Code;
use tonic::Status;
use tonic::codegen::{Body, Bytes, StdError};

use crate::proto::grpc_stdio_client::GrpcStdioClient;
use crate::proto::stdio_data::Channel;

/// Host side: opens `StreamStdio` on `client` and copies `STDOUT` chunks to `stdout` and
/// `STDERR` chunks to `stderr` until the stream ends.
///
/// Each chunk is written whole and the writer flushed before the next one is read, so a
/// slow writer slows the plugin down (go-plugin behaves the same). Events carry target
/// `intercom::stdio` and field `plugin`.
///
/// # Caveats
///
/// - A plugin without the service (`UNIMPLEMENTED`, or `UNAVAILABLE` on the first call)
///   is not an error: a warning is logged and `Ok(())` returned at once.
/// - Chunks on an unknown channel are dropped with a warning; a failing writer is
///   logged and the chunk dropped, and copying goes on (as go-plugin does).
/// - It does not return while the plugin keeps the stream open, which a go-plugin
///   plugin does until the host cancels: run it as a background task and drop or abort
///   it (or close the connection) on shutdown.
///
/// # Errors
///
/// The status of the opening call or of the stream, except the codes meaning "gone or
/// not supported" (`UNAVAILABLE`, `UNIMPLEMENTED`, `CANCELLED`), which end it with
/// `Ok(())`; an abrupt plugin exit may surface as another code (e.g. `UNKNOWN`).
///
/// # Cancel safety
///
/// Dropping the future cancels the RPC; a chunk being written at that moment may be
/// partly written, and chunks not yet received are lost (the plugin sends them once).
pub(crate) async fn pump<T, O, E>(
    mut client: GrpcStdioClient<T>,
    mut stdout: O,
    mut stderr: E,
    plugin: &str,
) -> Result<(), Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
    O: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin + Send,
{
    let mut stream = match client.stream_stdio(()).await {
        Ok(response) => response.into_inner(),
        Err(status) if matches!(status.code(), Code::Unavailable | Code::Unimplemented) => {
            tracing::warn!(
                plugin,
                code = ?status.code(),
                message = status.message(),
                "plugin does not support stdio syncing"
            );
            return Ok(());
        }
        Err(status) => return Err(status),
    };
    loop {
        let chunk = match stream.message().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                tracing::debug!(plugin, "plugin ended the stdio stream");
                return Ok(());
            }
            Err(status)
                if matches!(
                    status.code(),
                    Code::Unavailable | Code::Unimplemented | Code::Cancelled
                ) =>
            {
                tracing::debug!(
                    plugin,
                    code = ?status.code(),
                    message = status.message(),
                    "stdio stream closed"
                );
                return Ok(());
            }
            Err(status) => return Err(status),
        };
        tracing::trace!(
            plugin,
            channel = chunk.channel,
            len = chunk.data.len(),
            "stdio data"
        );
        let written = match Channel::try_from(chunk.channel) {
            Ok(Channel::Stdout) => write_chunk(&mut stdout, &chunk.data).await,
            Ok(Channel::Stderr) => write_chunk(&mut stderr, &chunk.data).await,
            Ok(Channel::Invalid) | Err(_) => {
                tracing::warn!(
                    plugin,
                    channel = chunk.channel,
                    "unknown stdio channel, dropping chunk"
                );
                continue;
            }
        };
        if let Err(err) = written {
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                plugin,
                channel = chunk.channel,
                "failed to copy plugin output"
            );
        }
    }
}

/// Writes one chunk whole and flushes the writer.
async fn write_chunk<W: AsyncWrite + Unpin>(writer: &mut W, data: &[u8]) -> io::Result<()> {
    writer.write_all(data).await?;
    writer.flush().await
}
