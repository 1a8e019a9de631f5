//! A Rust host the orphan tests SIGKILL: launches the plugin command given as arguments
//! (`test-host PROGRAM [ARGS…]`), pings it, prints the plugin's pid on stdout, and then
//! waits forever. `INTERCOM_TEST_HOST_MUX=0` asks for the classic broker;
//! `INTERCOM_TEST_HOST_SOCKETS` is where the plugin's socket directory is made.
//!
//! With `INTERCOM_TEST_HOST_KUBECONFIG` set it launches the test plugin on Kubernetes
//! instead: plugin `INTERCOM_TEST_HOST_PLUGIN` in namespace `INTERCOM_TEST_HOST_NAMESPACE`,
//! with a host Lease of `INTERCOM_TEST_HOST_LEASE_SECS`, and prints its Deployment's name.

use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, Multiplex};
use intercom_tests::{HANDSHAKE, host_plugins};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(kubeconfig) = std::env::var_os("INTERCOM_TEST_HOST_KUBECONFIG") {
        return kubernetes_host(kubeconfig).await;
    }
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

async fn kubernetes_host(kubeconfig: std::ffi::OsString) -> Result<(), Box<dyn std::error::Error>> {
    use intercom::runtime::kubernetes::{ConnectMode, KubernetesConfig, PluginWorkload};
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let kubeconfig = intercom::kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = intercom::kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &intercom::kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let kube = intercom::runtime::kubernetes::low_latency_client(config)?;
    let name = var("INTERCOM_TEST_HOST_PLUGIN")?;
    let lease = std::time::Duration::from_secs(var("INTERCOM_TEST_HOST_LEASE_SECS")?.parse()?);
    let workload = PluginWorkload::new("intercom.test/test-plugin:1");
    let client = Client::new(
        ClientConfig::new(HANDSHAKE, host_plugins()).kubernetes(
            KubernetesConfig::new(kube, var("INTERCOM_TEST_HOST_NAMESPACE")?)
                .workload(&name, &workload)
                .connect(ConnectMode::PortForward)
                .host_lease(lease),
        ),
    );
    client.client().await?.ping().await?;
    println!("{name}");
    std::future::pending::<()>().await;
    Ok(())
}
