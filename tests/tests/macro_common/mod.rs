//! Shared by the `macro_*` tests: launching the `macro-plugin` binary.
#![allow(dead_code)]

#[path = "../../src/macro_api.rs"]
pub mod api;

use std::future::Future;
use std::time::Duration;

use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, PluginSet};

use api::{EchoClient, EchoPlugin, PLUGIN_NAME};

/// The longest one test may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Launches the `macro-plugin` binary and dispenses its `EchoClient`.
pub async fn launch() -> (Client, EchoClient) {
    let client = Client::new(
        ClientConfig::new(
            EchoPlugin::HANDSHAKE,
            PluginSet::new().with(PLUGIN_NAME, EchoPlugin::client()),
        )
        .launcher(ProcessLauncher::new(env!("CARGO_BIN_EXE_macro-plugin"))),
    );
    let echo = client
        .client()
        .await
        .expect("the macro plugin starts")
        .dispense::<EchoClient>(PLUGIN_NAME)
        .expect("dispense EchoClient");
    (client, echo)
}

/// Runs `test` against a fresh plugin under [`DEADLINE`], then kills the plugin and
/// checks that its process is gone.
pub async fn with_plugin<F, Fut>(test: F)
where
    F: FnOnce(EchoClient) -> Fut,
    Fut: Future<Output = ()>,
{
    let (client, echo) = launch().await;
    let pid: u32 = client
        .id()
        .and_then(|id| id.parse().ok())
        .expect("a process plugin has a pid");
    tokio::time::timeout(DEADLINE, test(echo))
        .await
        .expect("the test finished in time");
    client.kill().await;
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))),
        "plugin {pid} is still running"
    );
}
