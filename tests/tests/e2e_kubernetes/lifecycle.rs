//! A plugin's life on Kubernetes: start, call, kill and clean up (in both connect modes);
//! callbacks both ways; pod failures reported fast; a kill that restarts nothing; the host
//! pod's deletion collecting its plugins; discover and reattach.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use intercom::ClientError;
use intercom::runtime::kubernetes::{
    ConnectMode, KubeError, KubernetesConfig, PluginWorkload, discover,
};
use intercom::tonic::transport::Channel;
use intercom_tests::kubernetes::{
    PLUGIN_IMAGE, SLEEPER_IMAGE, assert_nothing_left, config, env, kube_client, kv_client,
    namespace, plugin_client, require_routed_pod_range, timed, whoami,
};
use intercom_tests::{counter, kv, reverse};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};

#[tokio::test]
async fn e2e_start_call_and_kill_leave_nothing_behind() {
    timed(async {
        let kube = kube_client();
        require_routed_pod_range();
        let ns = namespace(&kube, "e2e-basic").await;
        for (mode, name) in [(ConnectMode::PortForward, "kv-pf"), (ConnectMode::Endpoints, "kv-ep")] {
            // Watch for the pod turning Ready ourselves, to split start-up into "Kubernetes
            // made the pod ready" and "what the SDK adds after that".
            let pods: Api<Pod> = Api::namespaced(kube.clone(), &ns);
            let label = format!("intercom.dev/plugin={name}");
            let ready_at = tokio::spawn(async move {
                use futures::TryStreamExt;
                let stream = kube::runtime::watcher(pods, kube::runtime::watcher::Config::default().labels(&label));
                let mut stream = std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(stream));
                while let Ok(Some(pod)) = stream.try_next().await {
                    let ready = pod.status.and_then(|s| s.conditions).unwrap_or_default().iter().any(|c| c.type_ == "Ready" && c.status == "True");
                    if ready {
                        return Some(Instant::now());
                    }
                }
                None
            });
            let started = Instant::now();
            let client = plugin_client(config(&kube, &ns, name, PluginWorkload::new(PLUGIN_IMAGE), mode));
            let protocol = client.connect().await.unwrap_or_else(|e| panic!("{mode:?}: {e}"));
            let ready = started.elapsed();
            protocol.ping().await.unwrap();
            let mut kv = kv_client(&client).await;
            kv.put(kv::PutRequest {
                key: "k".into(),
                value: b"v".to_vec(),
            })
            .await
            .unwrap();
            let got = kv.get(kv::GetRequest { key: "k".into() }).await.unwrap().into_inner().value;
            assert!(got.starts_with(b"v\n\nWritten from plugin-rust-grpc"));
            let first_call = started.elapsed();
            let pod_ready = ready_at.await.ok().flatten().map(|t| t.duration_since(started));
            eprintln!(
                "{mode:?}: start() returned after {ready:?}; first call done after {first_call:?}; pod Ready after {pod_ready:?}; SDK overhead after ready {:?}",
                pod_ready.map(|r| first_call.saturating_sub(r))
            );
            let mut times = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                kv.get(kv::GetRequest { key: "k".into() }).await.unwrap();
                times.push(t.elapsed());
            }
            times.sort();
            eprintln!("{mode:?}: warm Get p50 {:?}", times[times.len() / 2]);
            assert!(!client.exited());
            client.kill().await;
            client.kill().await; // twice is fine
            assert!(client.exited());
            assert!(kv.get(kv::GetRequest { key: "k".into() }).await.is_err());
        }
        if std::env::var_os("INTERCOM_E2E_KUBECONFIG").is_none() {
            // What `assert_nothing_left` checks for processes is not vacuous (one pod per
            // mode).
            if let Some(kubelet) = env().kubelet() {
                assert!(kubelet.started_processes(&ns).len() >= 2);
            }
        }
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn e2e_callbacks_cross_the_pod_boundary_both_ways() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-broker").await;
        let client = plugin_client(config(
            &kube,
            &ns,
            "counter",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::PortForward,
        ));
        let protocol = client.connect().await.unwrap();
        assert!(protocol.broker().is_multiplexed());
        // Host serves AddHelper; the pod dials it through the broker on the one connection.
        let mut counter: counter::counter_client::CounterClient<Channel> =
            protocol.dispense("counter").unwrap();
        for _ in 0..2 {
            intercom_tests::put_with_callback(protocol.broker(), &mut counter, "x", 1)
                .await
                .unwrap();
        }
        assert_eq!(
            counter
                .get(counter::GetRequest { key: "x".into() })
                .await
                .unwrap()
                .into_inner()
                .value,
            2
        );
        // The pod serves Adder on a broker id; the host dials it.
        let mut spawner: reverse::spawner_client::SpawnerClient<Channel> =
            protocol.dispense("reverse").unwrap();
        let id = spawner
            .spawn(reverse::SpawnRequest {})
            .await
            .unwrap()
            .into_inner()
            .broker_id;
        let channel = protocol.broker().dial(id).await.unwrap();
        let r = reverse::adder_client::AdderClient::new(channel)
            .add(reverse::AddRequest { a: 40, b: 2 })
            .await
            .unwrap()
            .into_inner()
            .r;
        assert_eq!(r, 42);
        client.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn e2e_pod_failures_are_reported_fast_and_clean_up() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-failures").await;
        // Unknown image.
        let started = Instant::now();
        let client = plugin_client(config(
            &kube,
            &ns,
            "noimage",
            PluginWorkload::new("intercom.test/missing:1"),
            ConnectMode::PortForward,
        ));
        match client.start().await {
            Err(ClientError::Kubernetes(KubeError::PodFailed { reason, .. })) => {
                assert!(
                    reason == "ErrImagePull" || reason == "ImagePullBackOff",
                    "{reason}"
                );
            }
            other => panic!("unexpected: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(60));
        // A plugin that exits at once: CrashLoopBackOff, with its log.
        let crashing = PluginWorkload::new(PLUGIN_IMAGE).env("INTERCOM_TEST_MODE", "exit-early");
        let client = plugin_client(config(
            &kube,
            &ns,
            "crasher",
            crashing,
            ConnectMode::PortForward,
        ));
        match client.start().await {
            Err(ClientError::Kubernetes(err @ KubeError::PodFailed { .. })) => {
                let text = err.to_string();
                assert!(text.contains("CrashLoopBackOff"), "{text}");
                assert!(text.contains("configuration file is missing"), "{text}");
            }
            other => panic!("unexpected: {other:?}"),
        }
        // Text instead of a handshake: a log line, then no handshake within the timeout.
        let garbage = PluginWorkload::new(PLUGIN_IMAGE).env("INTERCOM_TEST_MODE", "garbage");
        let client = plugin_client(
            config(&kube, &ns, "garbage", garbage, ConnectMode::PortForward)
                .handshake_timeout(Duration::from_secs(5)),
        );
        let started = Instant::now();
        let err = client.start().await.expect_err("garbage handshake");
        assert!(
            matches!(
                &err,
                ClientError::Kubernetes(KubeError::NoHandshake { last: Some(last), .. })
                    if last == "this is not a handshake line"
            ),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "took {:?}",
            started.elapsed()
        );
        // Invalid objects: rejected before any API call.
        let (mut d, s) = PluginWorkload::new(PLUGIN_IMAGE).build("invalid");
        if let Some(spec) = d.spec.as_mut() {
            spec.replicas = Some(0);
        }
        let client = plugin_client(KubernetesConfig::new(kube.clone(), &ns).objects(d, s));
        assert!(matches!(
            client.start().await,
            Err(ClientError::Kubernetes(KubeError::Invalid(_)))
        ));
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

/// What a watch on a plugin's pods saw: the highest `restartCount` and every container
/// id of the plugin container.
#[derive(Debug, Default)]
struct ContainerStarts {
    max_restarts: i32,
    container_ids: BTreeSet<String>,
}

/// Watches the pods labelled `intercom.dev/plugin=<name>`; returns once the watch has
/// seen a pod, with the task that keeps recording.
async fn watch_container_starts(
    kube: &kube::Client,
    ns: &str,
    name: &str,
) -> (
    std::sync::Arc<std::sync::Mutex<ContainerStarts>>,
    tokio::task::JoinHandle<()>,
) {
    use futures::TryStreamExt;
    let pods: Api<Pod> = Api::namespaced(kube.clone(), ns);
    let label = format!("intercom.dev/plugin={name}");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(ContainerStarts::default()));
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let stream = kube::runtime::watcher(
            pods,
            kube::runtime::watcher::Config::default().labels(&label),
        );
        let mut stream = std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(stream));
        let mut first = Some(first_tx);
        while let Ok(Some(pod)) = stream.try_next().await {
            let statuses = pod
                .status
                .and_then(|s| s.container_statuses)
                .unwrap_or_default();
            {
                let mut seen = record.lock().unwrap();
                for c in statuses.iter().filter(|c| c.name == "plugin") {
                    seen.max_restarts = seen.max_restarts.max(c.restart_count);
                    if let Some(id) = &c.container_id {
                        seen.container_ids.insert(id.clone());
                    }
                }
            }
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
        }
    });
    first_rx.await.expect("the watch sees the plugin's pod");
    (seen, task)
}

#[tokio::test]
async fn e2e_kill_restarts_no_container() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-kill-restart").await;
        // A restart is a race between the plugin's exit and the kubelet noticing the
        // deletion: a few rounds.
        for round in 0..3 {
            let name = format!("kill-{round}");
            let client = plugin_client(config(
                &kube,
                &ns,
                &name,
                PluginWorkload::new(PLUGIN_IMAGE),
                ConnectMode::PortForward,
            ));
            let mut kv = kv_client(&client).await;
            whoami(&mut kv).await.unwrap();
            let (seen, watch) = watch_container_starts(&kube, &ns, &name).await;
            let started_before = on_envtest_started(&ns);
            let killing = Instant::now();
            client.kill().await;
            eprintln!("round {round}: kill took {:?}", killing.elapsed());
            assert!(client.exited());
            // kill returned once the pods were gone; let the watch catch up.
            tokio::time::sleep(Duration::from_millis(500)).await;
            watch.abort();
            let seen = std::mem::take(&mut *seen.lock().unwrap());
            assert_eq!(
                seen.max_restarts, 0,
                "round {round}: the plugin container was restarted during kill: {seen:?}"
            );
            assert_eq!(
                seen.container_ids.len(),
                1,
                "round {round}: one container during kill: {seen:?}"
            );
            assert_eq!(
                on_envtest_started(&ns),
                started_before,
                "round {round}: the kubelet started no container process during kill"
            );
        }
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

/// How many container processes envtest's process kubelet started for `ns` (0 on a real
/// node or an external cluster, where the watch alone is the check).
fn on_envtest_started(ns: &str) -> usize {
    if intercom_tests::kubernetes::on_external_cluster() {
        0
    } else {
        env()
            .kubelet()
            .map_or(0, |kubelet| kubelet.started_processes(ns).len())
    }
}

#[tokio::test]
async fn e2e_host_pod_deletion_collects_its_plugins() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-gc").await;
        let pods: Api<Pod> = Api::namespaced(kube.clone(), &ns);
        let host: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "host"},
            "spec": {"containers": [{"name": "host", "image": SLEEPER_IMAGE, "args": ["3600"]}]}
        }))
        .unwrap();
        let host = pods.create(&PostParams::default(), &host).await.unwrap();
        let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: "host".into(),
            uid: host.metadata.uid.clone().unwrap(),
            ..Default::default()
        };
        let client = plugin_client(
            config(
                &kube,
                &ns,
                "owned",
                PluginWorkload::new(PLUGIN_IMAGE),
                ConnectMode::PortForward,
            )
            .owned_by(owner),
        );
        let mut kv = kv_client(&client).await;
        whoami(&mut kv).await.unwrap();
        pods.delete("host", &DeleteParams::default()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !client.exited() {
            assert!(
                Instant::now() < deadline,
                "the plugin outlived its host pod"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let started = Instant::now();
        assert!(whoami(&mut kv).await.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a call on a dead plugin errors promptly"
        );
        client.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn e2e_discover_and_reattach() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-discover").await;
        let first = plugin_client(
            config(
                &kube,
                &ns,
                "found",
                PluginWorkload::new(PLUGIN_IMAGE),
                ConnectMode::PortForward,
            )
            .reattachable(true),
        );
        first.start().await.unwrap();
        let found = discover(kube.clone(), &ns).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "found");
        assert_eq!(found[0].image, PLUGIN_IMAGE);
        assert_eq!(found[0].protocol_versions, "1");
        // Reattach by name; kill on it only disconnects.
        let second = plugin_client(
            KubernetesConfig::new(kube.clone(), &ns)
                .reattach("found")
                .connect(ConnectMode::PortForward),
        );
        let mut kv = kv_client(&second).await;
        whoami(&mut kv).await.unwrap();
        second.kill().await;
        let deployments: Api<Deployment> = Api::namespaced(kube.clone(), &ns);
        assert!(
            deployments.get_opt("found").await.unwrap().is_some(),
            "reattached kill must not delete"
        );
        first.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}
