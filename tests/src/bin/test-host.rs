//! A Rust host the orphan tests SIGKILL: launches the plugin command given as arguments
//! (`test-host PROGRAM [ARGS…]`), pings it, prints the plugin's pid on stdout, and then
//! waits forever. `INTERCOM_TEST_HOST_MUX=0` asks for the classic broker;
//! `INTERCOM_TEST_HOST_SOCKETS` is where the plugin's socket directory is made.

use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, Multiplex};
use intercom_tests::{HANDSHAKE, host_plugins};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let program = args.next().ok_or("usage: test-host PROGRAM [ARGS…]")?;
    let multiplex = match std::env::var("INTERCOM_TEST_HOST_MUX").as_deref() {
        Ok("0") => Multiplex::Off,
        _ => Multiplex::Auto,
    };
    let mut launcher = ProcessLauncher::new(program).args(args);
    if let Some(dir) = std::env::var_os("INTERCOM_TEST_HOST_SOCKETS") {
        launcher = launcher.unix_socket_dir(dir);
    }
    let client = Client::new(
        ClientConfig::new(HANDSHAKE, host_plugins())
            .launcher(launcher)
            .multiplex(multiplex),
    );
    let protocol = client.client().await?;
    protocol.ping().await?;
    println!("{}", client.id().ok_or("a started plugin has a pid")?);
    std::future::pending::<()>().await;
    Ok(())
}
