//! A Rust host the orphan tests SIGKILL: launches the plugin command given as arguments
//! (`test-host PROGRAM [ARGS…]`), pings it, prints the plugin's pid on stdout, and then
//! waits forever. `INTERCOM_TEST_HOST_MUX=0` asks for the classic broker;
//! `INTERCOM_TEST_HOST_SOCKETS` is where the plugin's socket directory is made.
//!
//! With `INTERCOM_TEST_HOST_KUBECONFIG` set it launches the test plugin on Kubernetes
//! instead: plugin `INTERCOM_TEST_HOST_PLUGIN` in namespace `INTERCOM_TEST_HOST_NAMESPACE`,
//! with a host Lease of `INTERCOM_TEST_HOST_LEASE_SECS`, and prints its Deployment's name.
//!
//! With `INTERCOM_TEST_HOST_IN_CLUSTER=1` it is a host running in a pod
//! (`deploy/host-in-cluster.yaml`, `tests/tests/e2e_in_cluster_host.rs`): in-cluster
//! config (the pod's ServiceAccount token), plugins in the pod's own namespace (downward-API
//! `POD_NAMESPACE`; with `POD_NAME` the plugins' Deployments are owned by the host pod).
//! For [`ConnectMode::Endpoints`] and then [`ConnectMode::ServiceDns`] it launches the test
//! plugin from image `INTERCOM_TEST_HOST_PLUGIN_IMAGE`, calls `Counter.Put` twice with a
//! host-served callback, reads the sum back, kills the plugin and prints one outcome line,
//! `in-cluster <mode> ok: callback sum=5 owner=Pod/<name>` or
//! `in-cluster <mode> failed: <error chain>`; it exits 1 when a mode failed.

use intercom::runtime::ProcessLauncher;
use intercom::runtime::kubernetes::ConnectMode;
use intercom::{Client, ClientConfig, Multiplex};
use intercom_tests::{HANDSHAKE, counter, host_plugins};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var("INTERCOM_TEST_HOST_IN_CLUSTER").as_deref() == Ok("1") {
        std::process::exit(in_cluster_host().await);
    }
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
    let client =
        Client::new(ClientConfig::new(HANDSHAKE, host_plugins(), launcher).multiplex(multiplex));
    let protocol = client.connect().await?;
    protocol.ping().await?;
    println!("{}", client.id().ok_or("a started plugin has a pid")?);
    std::future::pending::<()>().await;
    Ok(())
}

async fn kubernetes_host(kubeconfig: std::ffi::OsString) -> Result<(), Box<dyn std::error::Error>> {
    use intercom::runtime::kubernetes::{KubernetesConfig, PluginWorkload};
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
    let client = Client::new(ClientConfig::new(
        HANDSHAKE,
        host_plugins(),
        KubernetesConfig::new(kube, var("INTERCOM_TEST_HOST_NAMESPACE")?)
            .workload(&name, &workload)
            .connect(ConnectMode::PortForward)
            .host_lease(lease),
    ));
    client.connect().await?.ping().await?;
    println!("{name}");
    std::future::pending::<()>().await;
    Ok(())
}

/// The in-cluster host (see the module docs); returns the exit code.
async fn in_cluster_host() -> i32 {
    let setup = async {
        let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
        let config = intercom::kube::Config::incluster()?;
        let kube = intercom::runtime::kubernetes::low_latency_client(config)?;
        Ok::<_, BoxError>((
            kube,
            var("POD_NAMESPACE")?,
            var("INTERCOM_TEST_HOST_PLUGIN_IMAGE")?,
        ))
    };
    let (kube, namespace, image) = match setup.await {
        Ok(setup) => setup,
        Err(err) => {
            println!("in-cluster setup failed: {}", chain(&*err));
            return 1;
        }
    };
    let mut code = 0;
    for (mode, label) in [
        (ConnectMode::Endpoints, "endpoints"),
        (ConnectMode::ServiceDns, "service-dns"),
    ] {
        let name = format!("counter-{label}");
        match one_mode(&kube, &namespace, &image, &name, mode).await {
            Ok(outcome) => println!("in-cluster {label} ok: {outcome}"),
            Err(err) => {
                println!("in-cluster {label} failed: {}", chain(&*err));
                code = 1;
            }
        }
    }
    code
}

/// Launches plugin `name` with `mode`, calls it with a callback and kills it; returns
/// what the outcome line reports.
async fn one_mode(
    kube: &intercom::kube::Client,
    namespace: &str,
    image: &str,
    name: &str,
    mode: ConnectMode,
) -> Result<String, BoxError> {
    use intercom::runtime::kubernetes::{KubernetesConfig, PluginWorkload};
    // The plugin pod's root filesystem is read-only; its counter files go to /tmp.
    let workload = PluginWorkload::new(image).env("INTERCOM_TEST_PLUGIN_DIR", "/tmp");
    let client = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            host_plugins(),
            KubernetesConfig::new(kube.clone(), namespace)
                .workload(name, &workload)
                .connect(mode),
        )
        .start_timeout(std::time::Duration::from_secs(90)),
    );
    let outcome = call_with_callbacks(&client, kube, namespace, name).await;
    client.kill().await;
    let outcome = outcome?;
    if !client.exited() {
        return Err(format!("{name}: still running after kill").into());
    }
    Ok(outcome)
}

/// `Counter.Put` 2 and 3 through host-served callbacks, then `Counter.Get`; with the
/// owner of the plugin's Deployment.
async fn call_with_callbacks(
    client: &Client,
    kube: &intercom::kube::Client,
    namespace: &str,
    name: &str,
) -> Result<String, BoxError> {
    let protocol = client.connect().await?;
    let mut counter: counter::counter_client::CounterClient<intercom::tonic::transport::Channel> =
        protocol.dispense("counter")?;
    for value in [2, 3] {
        intercom_tests::put_with_callback(protocol.broker(), &mut counter, "sum", value).await?;
    }
    let sum = counter
        .get(counter::GetRequest { key: "sum".into() })
        .await?
        .into_inner()
        .value;
    if sum != 5 {
        return Err(format!("{name}: callback sum is {sum}, not 2 + 3").into());
    }
    Ok(format!(
        "callback sum={sum} owner={}",
        deployment_owner(kube, namespace, name).await?
    ))
}

/// `Kind/name` of the owners of the plugin's Deployment (`none` without one).
async fn deployment_owner(
    kube: &intercom::kube::Client,
    namespace: &str,
    name: &str,
) -> Result<String, BoxError> {
    use k8s_openapi::api::apps::v1::Deployment;
    let deployments: intercom::kube::Api<Deployment> =
        intercom::kube::Api::namespaced(kube.clone(), namespace);
    let lp =
        intercom::kube::api::ListParams::default().labels(&format!("intercom.dev/plugin={name}"));
    let owners: Vec<String> = deployments
        .list(&lp)
        .await?
        .items
        .into_iter()
        .flat_map(|d| d.metadata.owner_references.unwrap_or_default())
        .map(|o| format!("{}/{}", o.kind, o.name))
        .collect();
    Ok(if owners.is_empty() {
        "none".to_owned()
    } else {
        owners.join(",")
    })
}

/// `err: cause: cause…`.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
