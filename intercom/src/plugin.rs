//! What a plugin *is* to the SDK: something that registers gRPC services on the plugin's
//! server and builds a typed client on the host (go-plugin's `GRPCPlugin`).

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use tonic::service::RoutesBuilder;
use tonic::transport::Channel;

use crate::broker::GrpcBroker;

/// A boxed error from user code.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One plugin interface, both sides.
///
/// The plugin process calls [`server`](Self::server) once at start-up to register its
/// services; the host calls [`client`](Self::client) on each `dispense` to wrap the
/// shared connection in a typed client. `#[intercom::plugin]` generates implementations;
/// writing one by hand looks like this:
///
/// ```no_run
/// use std::any::{Any, TypeId};
/// use intercom::{BoxError, GrpcBroker, GrpcPlugin};
/// use intercom::tonic::{service::RoutesBuilder, transport::Channel};
/// # mod pb { pub mod kv_server { #[derive(Clone)] pub struct KvServer<T>(pub T); impl<T> KvServer<T> { pub fn new(t: T) -> Self { Self(t) } } } pub mod kv_client { #[derive(Clone)] pub struct KvClient<T>(pub T); impl<T> KvClient<T> { pub fn new(t: T) -> Self { Self(t) } } } }
/// # #[derive(Clone)] struct MyKv;
/// struct KvPlugin(Option<MyKv>);
///
/// impl GrpcPlugin for KvPlugin {
///     fn server(&self, _broker: &GrpcBroker, routes: &mut RoutesBuilder) -> Result<(), BoxError> {
///         let kv = self.0.clone().ok_or("KvPlugin::server needs an implementation")?;
///         # let _ = (kv, routes);
///         // routes.add_service(pb::kv_server::KvServer::new(kv));
///         Ok(())
///     }
///     fn client(&self, _broker: &GrpcBroker, channel: Channel) -> Result<Box<dyn Any + Send + Sync>, BoxError> {
///         Ok(Box::new(pb::kv_client::KvClient::new(channel)))
///     }
/// }
/// ```
pub trait GrpcPlugin: Send + Sync + 'static {
    /// Registers this plugin's services on the plugin's gRPC server.
    ///
    /// # Errors
    /// Whatever prevents serving (e.g. the host-side value has no implementation).
    fn server(&self, broker: &GrpcBroker, routes: &mut RoutesBuilder) -> Result<(), BoxError>;

    /// Builds the host-side client over the connection to the plugin.
    ///
    /// # Errors
    /// Whatever prevents building the client.
    fn client(
        &self,
        broker: &GrpcBroker,
        channel: Channel,
    ) -> Result<Box<dyn Any + Send + Sync>, BoxError>;
}

/// A [`GrpcPlugin`] that names the client it dispenses, so a host can ask for it by type:
/// [`Connection::dispense_plugin::<GreeterPlugin>()`](crate::Connection::dispense_plugin)
/// finds the one `GreeterPlugin` in its plugin set, whatever its name, and returns a
/// `GreeterClient`. `#[intercom::plugin]` and intercom-build implement it.
pub trait TypedPlugin: GrpcPlugin {
    /// What [`client`](GrpcPlugin::client) builds (before boxing).
    type Client: Any + Send + Sync;
}

/// The plugins one side knows, by name (go-plugin's `PluginSet`).
///
/// Names never cross the wire: the host looks them up locally on `dispense`; only the gRPC
/// service names must agree between host and plugin.
#[derive(Clone, Default)]
pub struct PluginSet(BTreeMap<String, Entry>);

/// One plugin of a set, and the type it was registered as.
#[derive(Clone)]
struct Entry {
    plugin: Arc<dyn GrpcPlugin>,
    type_id: TypeId,
}

impl fmt::Debug for PluginSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl PluginSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `plugin` under `name` (builder style).
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, plugin: impl GrpcPlugin) -> Self {
        self.insert(name, plugin);
        self
    }

    /// Adds `plugin` under `name`.
    pub fn insert<P: GrpcPlugin>(&mut self, name: impl Into<String>, plugin: P) {
        let entry = Entry {
            plugin: Arc::new(plugin),
            type_id: TypeId::of::<P>(),
        };
        self.0.insert(name.into(), entry);
    }

    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn GrpcPlugin>> {
        self.0.get(name).map(|e| &e.plugin)
    }

    /// The names under which a `P` was registered, in name order.
    pub fn names_of<P: GrpcPlugin>(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|(_, e)| e.type_id == TypeId::of::<P>())
            .map(|(name, _)| name.as_str())
    }

    /// Names and plugins, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<dyn GrpcPlugin>)> {
        self.0.iter().map(|(k, e)| (k.as_str(), &e.plugin))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
