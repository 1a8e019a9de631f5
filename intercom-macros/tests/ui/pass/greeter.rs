// The README trait, implemented, served and called, in a crate without a `prost`
// dependency (only `intercom`).
use intercom::{PluginSet, ServeConfig, Status};

#[intercom::plugin(handshake(version = 1, cookie_key = "GREETER_PLUGIN", cookie_value = "hello"))]
pub trait Greeter: Send + Sync + 'static {
    async fn greet(&self, name: String) -> Result<String, Status>;
}

struct English;

#[intercom::async_trait]
impl Greeter for English {
    async fn greet(&self, name: String) -> Result<String, Status> {
        Ok(format!("Hello, {name}!"))
    }
}

async fn host(greeter: GreeterClient) -> Result<String, Status> {
    greeter.greet("world".into()).await
}

fn main() {
    let _serve = ServeConfig::new(GreeterPlugin::HANDSHAKE).plugin("greeter", GreeterPlugin::server(English));
    let _host = PluginSet::new().with("greeter", GreeterPlugin::client());
    let _dyn: std::sync::Arc<dyn Greeter> = std::sync::Arc::new(English);
    let _server = GreeterServer::new(English);
    let _ = host;
    assert!(GreeterPlugin::proto().contains("service Greeter"));
    assert_eq!(GreeterPlugin::SERVICE_NAME, "intercom.greeter.Greeter");
}
