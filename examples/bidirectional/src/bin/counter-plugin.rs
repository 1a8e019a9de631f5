//! The counter plugin: keeps each counter in a file `kv_<KEY>` (JSON `{"Value":n}`) in
//! its working directory, like go-plugin's examples/bidirectional plugin. It cannot add:
//! `Put` dials the host's `AddHelper` from `PutRequest.add_server` and asks it for
//! `current + N`.

use bidirectional::{Counter, CounterPlugin, HANDSHAKE, PLUGIN_NAME, proto};
use intercom::{GrpcBroker, ServeConfig};
use tonic::{Request, Response, Status};

#[derive(Clone)]
struct FileCounter {
    broker: GrpcBroker,
}

fn path(key: &str) -> String {
    format!("kv_{key}")
}

/// The stored value of `key`; `None` when it was never put.
async fn load(key: &str) -> Result<Option<i64>, Status> {
    let bytes = match tokio::fs::read(path(key)).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Status::internal(format!("failed to read {key:?}: {e}"))),
    };
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Status::internal(format!("failed to parse the value of {key:?}: {e}")))?;
    json.get("Value")
        .and_then(serde_json::Value::as_i64)
        .map(Some)
        .ok_or_else(|| Status::internal(format!("the value of {key:?} is not {{\"Value\":n}}")))
}

#[intercom::tonic::async_trait]
impl Counter for FileCounter {
    async fn get(
        &self,
        req: Request<proto::GetRequest>,
    ) -> Result<Response<proto::GetResponse>, Status> {
        let key = req.into_inner().key;
        let value = load(&key)
            .await?
            .ok_or_else(|| Status::not_found(format!("no value for {key:?}")))?;
        Ok(Response::new(proto::GetResponse { value }))
    }

    async fn put(&self, req: Request<proto::PutRequest>) -> Result<Response<proto::Empty>, Status> {
        let proto::PutRequest {
            add_server,
            key,
            value,
        } = req.into_inner();
        let mut adder = proto::dial_add_server(&self.broker, add_server)
            .await
            .map_err(|e| Status::unavailable(format!("failed to dial the host's adder: {e}")))?;
        let current = load(&key).await?.unwrap_or(0);
        let sum = adder
            .sum(proto::SumRequest {
                a: current,
                b: value,
            })
            .await?
            .into_inner()
            .r;
        tokio::fs::write(path(&key), format!("{{\"Value\":{sum}}}"))
            .await
            .map_err(|e| Status::internal(format!("failed to store {key:?}: {e}")))?;
        Ok(Response::new(proto::Empty {}))
    }
}

#[tokio::main]
async fn main() -> Result<(), intercom::ServeError> {
    intercom::serve(ServeConfig::new(HANDSHAKE).plugin(
        PLUGIN_NAME,
        CounterPlugin::server_with_broker(|broker| FileCounter {
            broker: broker.clone(),
        }),
    ))
    .await
}
