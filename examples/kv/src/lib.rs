//! The shared part of the KV example: the `proto.KV` service (go-plugin's
//! examples/grpc, same wire names) and the hand-written plugin glue.

use std::any::Any;

use intercom::tonic::service::RoutesBuilder;
use intercom::tonic::transport::Channel;
use intercom::{BoxError, GrpcBroker, GrpcPlugin, HandshakeConfig};

/// Generated from `proto/kv.proto`.
pub mod proto {
    #![allow(missing_docs)]
    intercom::tonic::include_proto!("proto");
}

pub use proto::kv_client::KvClient;
pub use proto::kv_server::{Kv, KvServer};

/// go-plugin's examples use this handshake.
pub const HANDSHAKE: HandshakeConfig = HandshakeConfig::new(1, "BASIC_PLUGIN", "hello");

/// The name the host dispenses (go-plugin's `kv_grpc`).
pub const PLUGIN_NAME: &str = "kv_grpc";

/// The KV plugin, both sides: `KvPlugin::server(impl)` in the plugin, `KvPlugin::client()`
/// in the host's plugin map.
#[derive(Debug, Clone, Default)]
pub struct KvPlugin<T = ()> {
    implementation: Option<T>,
}

impl KvPlugin<()> {
    /// The host's entry.
    pub fn client() -> Self {
        Self {
            implementation: None,
        }
    }
}

impl<T: Kv> KvPlugin<T> {
    /// The plugin's entry, serving `implementation`.
    pub fn server(implementation: T) -> Self {
        Self {
            implementation: Some(implementation),
        }
    }
}

impl<T: Kv + Clone> GrpcPlugin for KvPlugin<T> {
    fn server(&self, _: &GrpcBroker, routes: &mut RoutesBuilder) -> Result<(), BoxError> {
        let implementation = self
            .implementation
            .clone()
            .ok_or("KvPlugin::server needs an implementation")?;
        routes.add_service(KvServer::new(implementation));
        Ok(())
    }

    fn client(
        &self,
        _: &GrpcBroker,
        channel: Channel,
    ) -> Result<Box<dyn Any + Send + Sync>, BoxError> {
        Ok(Box::new(KvClient::new(channel)))
    }
}

/// `()` never serves; it only marks the host side.
#[intercom::tonic::async_trait]
impl Kv for () {
    async fn get(
        &self,
        _: tonic::Request<proto::GetRequest>,
    ) -> Result<tonic::Response<proto::GetResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("host-side placeholder"))
    }
    async fn put(
        &self,
        _: tonic::Request<proto::PutRequest>,
    ) -> Result<tonic::Response<proto::Empty>, tonic::Status> {
        Err(tonic::Status::unimplemented("host-side placeholder"))
    }
}
