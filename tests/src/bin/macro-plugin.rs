//! The test plugin for the `macro_*` tests: serves the `#[intercom::plugin]` trait `Echo`
//! (`intercom_tests::macro_api`) under the plugin name `echo`.

use intercom_tests::macro_api::{EchoImpl, EchoPlugin, PLUGIN_NAME};

#[tokio::main]
async fn main() -> Result<(), intercom::ServeError> {
    intercom::serve(
        intercom::ServeConfig::new(EchoPlugin::HANDSHAKE)
            .plugin(PLUGIN_NAME, EchoPlugin::server(EchoImpl::default())),
    )
    .await
}
