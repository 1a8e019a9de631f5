//! The test plugin for the `macro_*` tests: serves the `#[intercom::plugin]` trait `Echo`
//! (`src/macro_api.rs`) under the plugin name `echo`.

#[path = "../macro_api.rs"]
mod macro_api;

use macro_api::{EchoImpl, EchoPlugin, PLUGIN_NAME};

#[tokio::main]
async fn main() -> Result<(), intercom::ServeError> {
    intercom::serve(
        intercom::ServeConfig::new(EchoPlugin::HANDSHAKE)
            .plugin(PLUGIN_NAME, EchoPlugin::server(EchoImpl::default())),
    )
    .await
}
