//! Scenario 8 of the benchmark: the Kubernetes runtime on intercom-envtest (real etcd,
//! kube-apiserver and kube-controller-manager, the process kubelet), with examples/kv's
//! plugin as the pod's image.
//!
//! ```text
//! bench-kube --plugin PATH --reps R --concurrent N
//! ```
//!
//! For each connect mode (port-forward, endpoints), R times in turn: `start()` and a first
//! `Put` + `Get`, split at the moment a watch of our own sees the plugin's pod turn Ready
//! into "pod ready" (Kubernetes' share) and "SDK overhead" (from there to the first call's
//! reply); then kill, and wait until nothing of it is left. Then N plugins started at once
//! (port-forward): the time until all N have answered their first call, and the largest
//! overhead after its own pod's Ready. Prints one JSON object: medians in nanoseconds.
//! Run it in a network namespace with the routed pod range, as `scripts/bench.sh` does.
//! `RUST_LOG` (e.g. `intercom=debug`) logs to stderr, with timestamps, to see where a
//! start's time goes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use intercom::runtime::kubernetes::{ConnectMode, KubernetesConfig, PluginWorkload};
use intercom::{Client, ClientConfig, PluginSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use kv::{HANDSHAKE, KvClient, KvPlugin, PLUGIN_NAME, proto};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The plugin's image reference; the process kubelet maps it to `--plugin`.
const IMAGE: &str = "bench.test/kv-plugin:1";
/// The namespace the benchmark works in.
const NAMESPACE: &str = "bench";
/// How long one plugin may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// When each pod (by plugin name label) was first seen Ready.
type ReadyAt = Arc<Mutex<HashMap<String, Instant>>>;

fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let result = parse().and_then(|(plugin, reps, concurrent)| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(run(plugin, reps, concurrent))
    });
    match result {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bench-kube: error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn parse() -> Result<(PathBuf, usize, usize), BoxError> {
    let (mut plugin, mut reps, mut concurrent) = (None, 5, 20);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--plugin" => plugin = Some(PathBuf::from(value()?)),
            "--reps" => reps = value()?.parse::<usize>()?.max(1),
            "--concurrent" => concurrent = value()?.parse::<usize>()?.max(1),
            other => return Err(format!("unknown flag {other:?}").into()),
        }
    }
    Ok((plugin.ok_or("--plugin is required")?, reps, concurrent))
}

async fn run(
    plugin: PathBuf,
    reps: usize,
    concurrent: usize,
) -> Result<serde_json::Value, BoxError> {
    let env = intercom_envtest::Env::builder()
        .image(IMAGE, plugin)
        .start()
        .await?;
    let kube =
        intercom::runtime::kubernetes::low_latency_client(env.control_plane().kube_config())?;
    namespace(&kube).await?;
    let ready_at = watch_ready(&kube);
    let mut out = serde_json::Map::new();
    for (mode, tag) in [
        (ConnectMode::PortForward, "port_forward"),
        (ConnectMode::Endpoints, "endpoints"),
    ] {
        let (mut first, mut pod, mut overhead) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..reps {
            let name = format!("kv-{}-{rep}", tag.replace('_', "-"));
            let t = start_and_call(&kube, &name, mode, &ready_at).await?;
            first.push(t.first_call);
            pod.push(t.pod_ready);
            overhead.push(t.first_call.saturating_sub(t.pod_ready));
        }
        out.insert(format!("{tag}_first_call_ns"), median_ns(&mut first).into());
        out.insert(format!("{tag}_pod_ready_ns"), median_ns(&mut pod).into());
        out.insert(
            format!("{tag}_overhead_ns"),
            median_ns(&mut overhead).into(),
        );
    }
    let started = Instant::now();
    let starts = (0..concurrent).map(|i| {
        let (kube, ready_at) = (kube.clone(), ready_at.clone());
        async move {
            start_and_call(
                &kube,
                &format!("kv-many-{i}"),
                ConnectMode::PortForward,
                &ready_at,
            )
            .await
        }
    });
    let all = futures::future::try_join_all(starts).await?;
    let all_done = started.elapsed();
    let worst = all
        .iter()
        .map(|t| t.first_call.saturating_sub(t.pod_ready))
        .max()
        .unwrap_or_default();
    out.insert("concurrent".into(), concurrent.into());
    out.insert(
        "concurrent_all_first_calls_ns".into(),
        (all_done.as_nanos() as f64).into(),
    );
    out.insert(
        "concurrent_max_overhead_ns".into(),
        (worst.as_nanos() as f64).into(),
    );
    drop(env);
    Ok(serde_json::Value::Object(out))
}

/// One plugin's start-up, from `Client::new` on.
struct Timing {
    /// Until the first call's reply.
    first_call: Duration,
    /// Until our watch saw its pod Ready.
    pod_ready: Duration,
}

/// Starts plugin `name`, makes a first `Put` and `Get`, kills it and waits until its
/// objects are gone.
async fn start_and_call(
    kube: &kube::Client,
    name: &str,
    mode: ConnectMode,
    ready_at: &ReadyAt,
) -> Result<Timing, BoxError> {
    let started = Instant::now();
    let config = KubernetesConfig::new(kube.clone(), NAMESPACE)
        .workload(name, &PluginWorkload::new(IMAGE))
        .connect(mode);
    let client = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            PluginSet::new().with(PLUGIN_NAME, KvPlugin::client()),
            config,
        )
        .start_timeout(START_TIMEOUT),
    );
    let result = async {
        let mut kv: KvClient<intercom::tonic::transport::Channel> =
            client.connect().await?.dispense(PLUGIN_NAME)?;
        let put = proto::PutRequest {
            key: "k".into(),
            value: b"v".to_vec(),
        };
        kv.put(put).await?;
        kv.get(proto::GetRequest { key: "k".into() }).await?;
        let first_call = started.elapsed();
        let ready = ready_at
            .lock()
            .map_err(|_| "the Ready watch panicked")?
            .get(name)
            .copied()
            .ok_or(format!("the Ready watch never saw {name}'s pod Ready"))?;
        Ok::<_, BoxError>(Timing {
            first_call,
            pod_ready: ready.duration_since(started),
        })
    }
    .await;
    client.kill().await;
    wait_gone(kube, name).await?;
    result
}

/// Records when each plugin's pod is first seen Ready (by its `intercom.dev/plugin` label).
fn watch_ready(kube: &kube::Client) -> ReadyAt {
    let ready_at = ReadyAt::default();
    let pods: Api<Pod> = Api::namespaced(kube.clone(), NAMESPACE);
    let seen = ready_at.clone();
    tokio::spawn(async move {
        let config = kube::runtime::watcher::Config::default().labels("intercom.dev/plugin");
        let stream =
            kube::runtime::WatchStreamExt::applied_objects(kube::runtime::watcher(pods, config));
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(pod)) = stream.try_next().await {
            let now = Instant::now();
            let ready = pod
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let name = pod
                .metadata
                .labels
                .unwrap_or_default()
                .remove("intercom.dev/plugin");
            if let (true, Some(name), Ok(mut seen)) = (ready, name, seen.lock()) {
                seen.entry(name).or_insert(now);
            }
        }
    });
    ready_at
}

async fn namespace(kube: &kube::Client) -> Result<(), BoxError> {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(kube.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// Waits until no pod of plugin `name` is left.
async fn wait_gone(kube: &kube::Client, name: &str) -> Result<(), BoxError> {
    let pods: Api<Pod> = Api::namespaced(kube.clone(), NAMESPACE);
    let lp = ListParams::default().labels(&format!("intercom.dev/plugin={name}"));
    let deadline = Instant::now() + START_TIMEOUT;
    while !pods.list(&lp).await?.items.is_empty() {
        if Instant::now() > deadline {
            return Err(
                format!("{name}'s pods were still there {START_TIMEOUT:?} after kill").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn median_ns(v: &mut [Duration]) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(f64::NAN, |d| d.as_nanos() as f64)
}
