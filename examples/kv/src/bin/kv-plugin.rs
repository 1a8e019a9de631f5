//! The KV plugin: stores each value in a file `kv_<KEY>` in its working directory (every
//! host invocation starts a fresh plugin), like go-plugin's example plugins.

use intercom::ServeConfig;
use kv::{HANDSHAKE, Kv, KvPlugin, PLUGIN_NAME, proto};
use tonic::{Request, Response, Status};

#[derive(Debug, Clone, Copy)]
struct FileKv;

#[intercom::tonic::async_trait]
impl Kv for FileKv {
    async fn get(
        &self,
        req: Request<proto::GetRequest>,
    ) -> Result<Response<proto::GetResponse>, Status> {
        let key = req.into_inner().key;
        // One small local file: a blocking read costs less than tokio::fs's round trip
        // through the blocking pool, and is what go-plugin's Go plugin does. Slow or large
        // I/O belongs in `tokio::fs` or `spawn_blocking`.
        let value = std::fs::read(format!("kv_{key}"))
            .map_err(|e| Status::not_found(format!("no value for {key:?}: {e}")))?;
        Ok(Response::new(proto::GetResponse { value }))
    }

    async fn put(&self, req: Request<proto::PutRequest>) -> Result<Response<proto::Empty>, Status> {
        let proto::PutRequest { key, mut value } = req.into_inner();
        value.extend_from_slice(b"\n\nWritten from plugin-rust-grpc");
        tokio::fs::write(format!("kv_{key}"), value)
            .await
            .map_err(|e| Status::internal(format!("failed to store {key:?}: {e}")))?;
        Ok(Response::new(proto::Empty {}))
    }
}

#[tokio::main]
async fn main() -> Result<(), intercom::ServeError> {
    intercom::serve(ServeConfig::new(HANDSHAKE).plugin(PLUGIN_NAME, KvPlugin::server(FileKv))).await
}
