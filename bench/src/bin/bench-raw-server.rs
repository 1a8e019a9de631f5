//! The floor: go-plugin's KV service served by plain tonic, with no intercom in the path
//! (no handshake, health, broker, controller, stdio or TLS).
//!
//! `bench-raw-server unix|tcp` binds a unix socket in the temp dir or `127.0.0.1:0`, prints
//! `unix:PATH` or `tcp:ADDR` on stdout and serves until stdin closes. The KV service is the
//! same as `kv-plugin`'s: each value is the file `kv_<KEY>` in the working directory; beside
//! it runs scenario 6's streaming twin, [`intercom_bench::RawZeros`].

use std::process::ExitCode;

use kv::{Kv, KvServer, proto};
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::Server;
use tonic::{Request, Response, Status};

#[derive(Debug, Clone, Copy)]
struct FileKv;

#[tonic::async_trait]
impl Kv for FileKv {
    async fn get(
        &self,
        req: Request<proto::GetRequest>,
    ) -> Result<Response<proto::GetResponse>, Status> {
        let key = req.into_inner().key;
        // As examples/kv's plugin: one blocking read (the floor runs the same workload).
        let value = std::fs::read(format!("kv_{key}"))
            .map_err(|e| Status::not_found(format!("no value for {key:?}: {e}")))?;
        Ok(Response::new(proto::GetResponse { value }))
    }

    async fn put(&self, req: Request<proto::PutRequest>) -> Result<Response<proto::Empty>, Status> {
        let proto::PutRequest { key, value } = req.into_inner();
        tokio::fs::write(format!("kv_{key}"), value)
            .await
            .map_err(|e| Status::internal(format!("failed to store {key:?}: {e}")))?;
        Ok(Response::new(proto::Empty {}))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-raw-server: error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let transport = std::env::args().nth(1).unwrap_or_else(|| "unix".into());
    // Serving ends when the driver closes our stdin.
    let stdin_closed = async {
        let mut buf = [0u8; 64];
        let mut stdin = tokio::io::stdin();
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    let service = KvServer::new(FileKv);
    let chunks = intercom_bench::raw::chunks_server::ChunksServer::new(intercom_bench::RawZeros);
    match transport.as_str() {
        "unix" => {
            let dir = tempfile::tempdir()?;
            let path = dir.path().join("kv.sock");
            let listener = tokio::net::UnixListener::bind(&path)?;
            println!("unix:{}", path.display());
            Server::builder()
                .add_service(service)
                .add_service(chunks)
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stdin_closed)
                .await?;
        }
        "tcp" => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("tcp:{}", listener.local_addr()?);
            // serve_with_incoming does not apply the builder's TCP_NODELAY; set it per stream
            // as intercom's plugin listener does.
            let incoming = TcpListenerStream::new(listener).map(|conn| {
                conn.inspect(|s| {
                    let _ = s.set_nodelay(true);
                })
            });
            Server::builder()
                .add_service(service)
                .add_service(chunks)
                .serve_with_incoming_shutdown(incoming, stdin_closed)
                .await?;
        }
        other => return Err(format!("unknown transport {other:?}, expected unix or tcp").into()),
    }
    Ok(())
}
