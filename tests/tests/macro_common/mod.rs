//! Shared by the `macro_*` tests: launching the `macro-plugin` binary (whose interface is
//! `intercom_tests::macro_api`). Its executable is `env!("CARGO_BIN_EXE_macro-plugin")`,
//! which only an integration test can name, so this stays a module of each test binary.
// Each `macro_*` binary uses a part of it.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, PluginSet};

use intercom_tests::macro_api::{EchoClient, EchoPlugin, PLUGIN_NAME};

/// The longest one test may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Launches the `macro-plugin` binary and dispenses its `EchoClient`.
pub async fn launch() -> (Client, EchoClient) {
    let client = Client::new(ClientConfig::new(
        EchoPlugin::HANDSHAKE,
        PluginSet::new().with(PLUGIN_NAME, EchoPlugin::client()),
        ProcessLauncher::new(env!("CARGO_BIN_EXE_macro-plugin")),
    ));
    let echo = client
        .connect()
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
        !intercom_tests::pid_running(pid),
        "plugin {pid} is still running"
    );
}
