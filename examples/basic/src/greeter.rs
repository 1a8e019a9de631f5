//! The plugin glue for `greeter.Greeter`, written by hand.
//!
//! `#[intercom::plugin]` generates all of this (see `examples/greeter`). Each piece has a job:
//!
//! 1. [`proto`]: the protobuf messages and the tonic client and server that `build.rs`
//!    generates from `proto/greeter.proto`. Only these gRPC names go over the wire.
//! 2. [`HANDSHAKE`] and [`PLUGIN_NAME`]: the values host and plugin must agree on.
//! 3. [`GreeterPlugin`]: the [`GrpcPlugin`] implementation. In the plugin it adds the tonic
//!    *server* to intercom's gRPC server. In the host it wraps intercom's connection in
//!    the tonic *client*.

use std::any::Any;
use std::convert::Infallible;
use std::sync::Arc;

use intercom::tonic::service::RoutesBuilder;
use intercom::tonic::transport::Channel;
use intercom::{BoxError, GrpcBroker, GrpcPlugin, HandshakeConfig, TypedPlugin};
use tonic::{Request, Response, Status};

/// Code generated from `proto/greeter.proto` (package `greeter`).
pub mod proto {
    #![allow(missing_docs)]
    tonic::include_proto!("greeter");
}

use proto::greeter_server::{Greeter, GreeterServer};

/// The handshake both sides use. Core protocol 1 is go-plugin's, and the app protocol
/// version is 1. The plugin refuses to start unless the host sets the environment
/// variable `BASIC_PLUGIN=hello`, so running `basic plugin` by hand just prints a
/// notice. This is a safety check, not a security measure.
pub const HANDSHAKE: HandshakeConfig = HandshakeConfig::new(1, "BASIC_PLUGIN", "hello");

/// The key in both sides' plugin maps. It never goes over the wire: the host uses it to
/// look up the plugin on `dispense`.
pub const PLUGIN_NAME: &str = "greeter";

/// The typed client that the host dispenses: the generated tonic client over intercom's
/// channel to the plugin. `dispense::<T>` must name exactly this type.
pub type GreeterClient = proto::greeter_client::GreeterClient<Channel>;

/// The greeter plugin, for both sides of the connection.
///
/// The plugin registers `GreeterPlugin::server(implementation)` with
/// [`ServeConfig::plugin`](intercom::ServeConfig::plugin). The host puts
/// `GreeterPlugin::client()` in its [`PluginSet`](intercom::PluginSet). The host side holds no
/// implementation, so its type parameter is [`Infallible`] there.
#[derive(Debug)]
pub struct GreeterPlugin<T = Infallible> {
    /// The service implementation. Only the plugin side has one.
    implementation: Option<Arc<T>>,
}

impl GreeterPlugin {
    /// The host's entry: it can dispense clients but cannot serve.
    pub fn client() -> Self {
        Self {
            implementation: None,
        }
    }
}

impl<T: Greeter> GreeterPlugin<T> {
    /// The plugin's entry: it serves `implementation`.
    pub fn server(implementation: T) -> Self {
        Self {
            implementation: Some(Arc::new(implementation)),
        }
    }
}

impl<T: Greeter> GrpcPlugin for GreeterPlugin<T> {
    /// Plugin side: `intercom::serve` calls this once, before it prints the handshake
    /// line, to add our tonic service next to intercom's own services (health, broker,
    /// controller, stdio). The broker is for plugins that pass callbacks or streams to
    /// each other. The greeter does not need it.
    fn server(&self, _broker: &GrpcBroker, routes: &mut RoutesBuilder) -> Result<(), BoxError> {
        let implementation = self.implementation.clone().ok_or(
            "GreeterPlugin::client() cannot serve; register GreeterPlugin::server(implementation)",
        )?;
        routes.add_service(GreeterServer::from_arc(implementation));
        Ok(())
    }

    /// Host side: `Connection::dispense` calls this to wrap the shared connection,
    /// which is already handshaken and secured with AutoMTLS. It returns a boxed
    /// [`GreeterClient`], and `dispense::<GreeterClient>` downcasts it back.
    fn client(
        &self,
        _broker: &GrpcBroker,
        channel: Channel,
    ) -> Result<Box<dyn Any + Send + Sync>, BoxError> {
        Ok(Box::new(GreeterClient::new(channel)))
    }
}

/// Lets a host dispense by type: `connection.dispense_plugin::<GreeterPlugin<Infallible>>()`
/// returns the [`GreeterClient`] that [`client`](GrpcPlugin::client) builds.
impl<T: Greeter> TypedPlugin for GreeterPlugin<T> {
    type Client = GreeterClient;
}

/// Gives the host side's `GreeterPlugin<Infallible>` a `Greeter` type. No value of
/// `Infallible` exists, so this method can never run.
#[tonic::async_trait]
impl Greeter for Infallible {
    async fn greet(
        &self,
        _: Request<proto::GreetRequest>,
    ) -> Result<Response<proto::GreetResponse>, Status> {
        match *self {}
    }
}
