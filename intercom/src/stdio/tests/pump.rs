//! Tests of [`pump`], against a fixed stream, a server without the service and a real
//! capture.

use std::error::Error;
use std::io::Write;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::Router;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Request, Response, Status};

use super::{TestResult, WAIT, capture_on_temp_files};
use crate::proto::StdioData;
use crate::proto::grpc_stdio_client::GrpcStdioClient;
use crate::proto::grpc_stdio_server::{GrpcStdio, GrpcStdioServer};
use crate::proto::stdio_data::Channel;
use crate::stdio::pump;

async fn spawn_server(
    router: Router,
) -> Result<(tonic::transport::Channel, JoinHandle<()>), Box<dyn Error + Send + Sync>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = router
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    Ok((channel, server))
}

/// Sends fixed chunks, then ends the stream.
struct Fixed(Vec<StdioData>);

#[tonic::async_trait]
impl GrpcStdio for Fixed {
    type StreamStdioStream = futures::stream::Iter<std::vec::IntoIter<Result<StdioData, Status>>>;

    async fn stream_stdio(
        &self,
        _: Request<()>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        let items: Vec<_> = self.0.iter().cloned().map(Ok).collect();
        Ok(Response::new(futures::stream::iter(items)))
    }
}

fn data(channel: i32, text: &str) -> StdioData {
    StdioData {
        channel,
        data: text.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn stdio_pump_routes_channels_and_drops_unknown_ones() -> TestResult {
    let chunks = vec![
        data(Channel::Stdout as i32, "out1 "),
        data(Channel::Stderr as i32, "err1 "),
        data(Channel::Invalid as i32, "invalid "),
        data(7, "seven "),
        data(Channel::Stdout as i32, "out2"),
        data(Channel::Stderr as i32, "err2"),
    ];
    let router = Server::builder().add_service(GrpcStdioServer::new(Fixed(chunks)));
    let (channel, server) = spawn_server(router).await?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let client = GrpcStdioClient::new(channel);
    tokio::time::timeout(WAIT, pump(client, &mut out, &mut err, "fixed")).await??;
    assert_eq!(out, b"out1 out2");
    assert_eq!(err, b"err1 err2");
    server.abort();
    Ok(())
}

#[tokio::test]
async fn stdio_pump_without_the_service_returns_ok() -> TestResult {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let (channel, server) = spawn_server(Server::builder().add_service(health)).await?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let client = GrpcStdioClient::new(channel);
    tokio::time::timeout(WAIT, pump(client, &mut out, &mut err, "old")).await??;
    assert!(out.is_empty() && err.is_empty());
    server.abort();
    Ok(())
}

#[tokio::test]
async fn stdio_pump_copies_captured_output_end_to_end() -> TestResult {
    let (capture, out, err) = capture_on_temp_files()?;
    (&out).write_all(b"before the stream\n")?;
    let (channel, server) = spawn_server(Server::builder().add_service(capture.service())).await?;
    let (host_out, mut read_out) = tokio::io::duplex(64 * 1024);
    let (host_err, mut read_err) = tokio::io::duplex(64 * 1024);
    let client = GrpcStdioClient::new(channel);
    // Spawned: also proves the pump future is Send.
    let pumping = tokio::spawn(async move { pump(client, host_out, host_err, "e2e").await });
    let big = vec![b'z'; 5000];
    (&out).write_all(&big)?;
    (&err).write_all(b"to stderr\n")?;

    let mut got = vec![0; 18 + big.len()];
    tokio::time::timeout(WAIT, read_out.read_exact(&mut got)).await??;
    assert_eq!(got.get(..18), Some(&b"before the stream\n"[..]));
    assert_eq!(got.get(18..), Some(&big[..]));
    let mut got = vec![0; 10];
    tokio::time::timeout(WAIT, read_err.read_exact(&mut got)).await??;
    assert_eq!(got, b"to stderr\n");

    // The stream stays open; a second host is refused.
    assert!(!pumping.is_finished());
    let (channel2, server2) =
        spawn_server(Server::builder().add_service(capture.service())).await?;
    let status = GrpcStdioClient::new(channel2)
        .stream_stdio(())
        .await
        .err()
        .ok_or("second stream accepted")?;
    assert_eq!(status.code(), Code::FailedPrecondition);

    pumping.abort();
    server.abort();
    server2.abort();
    drop(capture);
    drop((out, err));
    Ok(())
}
