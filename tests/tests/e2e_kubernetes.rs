//! The Kubernetes runtime end to end, against a real control plane (intercom-envtest:
//! etcd, kube-apiserver, kube-controller-manager, and a kubelet that runs pods as local
//! processes). Each test works in its own namespace and asserts that nothing is left.
//!
//! With `INTERCOM_E2E_KUBECONFIG` set, the same tests run against that cluster instead
//! (`tests/e2e-kind/run.sh` makes one with kind and loads the images).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use intercom::runtime::kubernetes::{
    ConnectMode, KubeError, KubernetesConfig, PluginWorkload, discover,
};
use intercom::tonic::transport::Channel;
use intercom::{Client, ClientConfig, ClientError};
use intercom_tests::{counter, kv, reverse};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, PostParams};

use intercom_tests::kubernetes::{
    MACRO_IMAGE, PLUGIN_IMAGE, SLEEPER_IMAGE, assert_nothing_left, client_for_token, config, env,
    kube_client, kv_client, namespace, on_real_node, plugin_client, plugin_pods,
    require_routed_pod_range, timed, whoami, whoami_eventually,
};

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
            let protocol = client.client().await.unwrap_or_else(|e| panic!("{mode:?}: {e}"));
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
        let protocol = client.client().await.unwrap();
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
async fn e2e_three_replicas_share_the_calls() {
    timed(async {
        let kube = kube_client();
        require_routed_pod_range();
        let ns = namespace(&kube, "e2e-replicas").await;
        let client = plugin_client(config(
            &kube,
            &ns,
            "spread",
            PluginWorkload::new(PLUGIN_IMAGE).replicas(3),
            ConnectMode::Endpoints,
        ));
        let mut kv = kv_client(&client).await;
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < 3 {
            assert!(Instant::now() < deadline, "calls reached only {seen:?}");
            seen.insert(whoami(&mut kv).await.unwrap());
        }
        client.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn e2e_a_replaced_pod_is_reconnected() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-replace").await;
        let client = plugin_client(config(
            &kube,
            &ns,
            "replace",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::PortForward,
        ));
        let mut kv = kv_client(&client).await;
        let before = whoami(&mut kv).await.unwrap();
        // A call in flight when its pod is deleted fails...
        let mut slow = kv.clone();
        let call = tokio::spawn(async move {
            slow.get(kv::GetRequest {
                key: "sleep".into(),
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pods: Api<Pod> = Api::namespaced(kube.clone(), &ns);
        for (pod, _) in plugin_pods(&kube, &ns, "replace").await {
            pods.delete(&pod, &DeleteParams::default()).await.unwrap();
        }
        let res = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .expect("in-flight call ends")
            .unwrap();
        assert!(res.is_err(), "the call on the deleted pod must fail");
        // ...and the next one reaches the replacement, with nothing done by the host.
        let after = whoami_eventually(&mut kv).await;
        assert_ne!(before, after, "answered by the replacement pod");
        assert!(!client.exited());
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

#[tokio::test]
async fn e2e_image_digest_pinning() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-digest").await;
        let client = plugin_client(
            config(
                &kube,
                &ns,
                "unpinned",
                PluginWorkload::new(PLUGIN_IMAGE),
                ConnectMode::PortForward,
            )
            .require_image_digest(true),
        );
        assert!(matches!(
            client.start().await,
            Err(ClientError::Kubernetes(KubeError::ImageNotPinned { .. }))
        ));
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

/// The `INTERCOM_E2E_KUBECONFIG` path loads its kubeconfig from inside a test's runtime
/// (it used to drop a runtime there and panic), and the config reaches the cluster: here
/// envtest's, through its admin kubeconfig file, as an external cluster's would be.
#[tokio::test]
async fn e2e_an_external_kubeconfig_loads_inside_a_test_runtime() {
    timed(async {
        let path = env().control_plane().kubeconfig().to_path_buf();
        let config = intercom_tests::kubernetes::external_cluster_config(path);
        let kube = kube::Client::try_from(config).expect("a client from the kubeconfig");
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(kube);
        let list = namespaces
            .list(&kube::api::ListParams::default())
            .await
            .expect("the cluster answers");
        assert!(
            list.items
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some("default"))
        );
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

#[tokio::test]
async fn e2e_least_privilege_rbac() {
    timed(async {
        let admin = kube_client();
        let ns = namespace(&admin, "plugins").await;
        // deploy/rbac.yaml as shipped.
        let yaml =
            std::fs::read_to_string(intercom_tests::workspace_root().join("deploy/rbac.yaml"))
                .unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).unwrap();
        for doc in docs {
            match doc["kind"].as_str() {
                Some("ServiceAccount") => {
                    let sa: ServiceAccount = serde_json::from_value(doc).unwrap();
                    Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
                        .create(&PostParams::default(), &sa)
                        .await
                        .unwrap();
                }
                Some("Role") => {
                    let r: Role = serde_json::from_value(doc).unwrap();
                    Api::<Role>::namespaced(admin.clone(), &ns)
                        .create(&PostParams::default(), &r)
                        .await
                        .unwrap();
                }
                Some("RoleBinding") => {
                    let b: RoleBinding = serde_json::from_value(doc).unwrap();
                    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
                        .create(&PostParams::default(), &b)
                        .await
                        .unwrap();
                }
                other => panic!("unexpected kind {other:?} in deploy/rbac.yaml"),
            }
        }
        let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
        let unbound: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "unbound"}})).unwrap();
        sas.create(&PostParams::default(), &unbound).await.unwrap();
        let token = |sa: &'static str| {
            let sas = sas.clone();
            async move {
                let req =
                    serde_json::from_value(serde_json::json!({"spec": {"audiences": []}})).unwrap();
                sas.create_token_request(sa, &PostParams::default(), &req)
                    .await
                    .unwrap()
                    .status
                    .unwrap()
                    .token
            }
        };
        // Bound to the shipped Role: works end to end.
        let host = client_for_token(&token("plugin-host").await);
        let client = plugin_client(config(
            &host,
            &ns,
            "rbac",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::PortForward,
        ));
        let mut kv = kv_client(&client).await;
        whoami(&mut kv).await.unwrap();
        // The Role covers the host Lease too (its creation only warns when forbidden).
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(admin.clone(), &ns);
        assert!(
            leases.get_opt("rbac").await.unwrap().is_some(),
            "no host Lease under the shipped Role"
        );
        client.kill().await;
        assert_nothing_left(&admin, &ns).await;
        // Without it: a clear 403, nothing left behind.
        let nobody = client_for_token(&token("unbound").await);
        let client = plugin_client(config(
            &nobody,
            &ns,
            "rbac",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::PortForward,
        ));
        match client.start().await {
            Err(ClientError::Kubernetes(err @ KubeError::Api { .. })) => {
                let text = err.to_string();
                assert!(
                    text.contains("forbidden") && text.contains("deploy/rbac.yaml"),
                    "{text}"
                );
            }
            other => panic!("unexpected: {other:?}"),
        }
        assert_nothing_left(&admin, &ns).await;
    })
    .await;
}

mod recorder {
    //! Records the host's `tracing` events (one global subscriber for this test binary).
    use std::sync::{Arc, Mutex, OnceLock};
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, SubscriberExt};

    #[derive(Debug, Clone, Default)]
    pub(crate) struct Event {
        pub(crate) level: Option<tracing::Level>,
        pub(crate) plugin: String,
        pub(crate) pod: String,
        pub(crate) message: String,
    }

    impl Visit for Event {
        fn record_str(&mut self, field: &Field, value: &str) {
            match field.name() {
                "plugin" => self.plugin = value.into(),
                "pod" => self.pod = value.into(),
                "message" => self.message = value.into(),
                _ => {}
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let text = format!("{value:?}").trim_matches('"').to_string();
            match field.name() {
                "plugin" => self.plugin = text,
                "pod" => self.pod = text,
                "message" => self.message = text,
                _ => {}
            }
        }
    }

    struct Layer(Arc<Mutex<Vec<Event>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Layer {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if event.metadata().target() != intercom::logs::PLUGIN_LOG_TARGET {
                return;
            }
            let mut e = Event {
                level: Some(*event.metadata().level()),
                ..Event::default()
            };
            event.record(&mut e);
            if let Ok(mut v) = self.0.lock() {
                v.push(e);
            }
        }
    }

    pub(crate) fn events() -> Arc<Mutex<Vec<Event>>> {
        static EVENTS: OnceLock<Arc<Mutex<Vec<Event>>>> = OnceLock::new();
        EVENTS
            .get_or_init(|| {
                let events = Arc::new(Mutex::new(Vec::new()));
                let subscriber = tracing_subscriber::registry().with(Layer(events.clone()));
                tracing::subscriber::set_global_default(subscriber)
                    .expect("one subscriber per test binary");
                events
            })
            .clone()
    }
}

#[tokio::test]
async fn e2e_plugin_logs_reach_the_host_with_the_pod_name() {
    timed(async {
        let events = recorder::events();
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-logs").await;
        let client = plugin_client(config(
            &kube,
            &ns,
            "logger",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::PortForward,
        ));
        let mut kv = kv_client(&client).await;
        // `put stdio` makes the test plugin log `log-1..3` (info) and `log-warn` (warn).
        kv.put(kv::PutRequest {
            key: "stdio".into(),
            value: b"v".to_vec(),
        })
        .await
        .unwrap();
        let (pod, _) = plugin_pods(&kube, &ns, "logger").await.remove(0);
        let deadline = Instant::now() + Duration::from_secs(20);
        let found = loop {
            let got: Vec<recorder::Event> = events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.plugin == "logger" && e.message.starts_with("log-"))
                .cloned()
                .collect();
            if got.iter().any(|e| e.message == "log-warn") {
                break got;
            }
            assert!(
                Instant::now() < deadline,
                "plugin logs never reached the host: {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(found.iter().all(|e| e.pod == pod), "{found:?}");
        let levels: Vec<(String, Option<tracing::Level>)> =
            found.iter().map(|e| (e.message.clone(), e.level)).collect();
        assert_eq!(
            levels,
            vec![
                ("log-1".into(), Some(tracing::Level::INFO)),
                ("log-2".into(), Some(tracing::Level::INFO)),
                ("log-3".into(), Some(tracing::Level::INFO)),
                ("log-warn".into(), Some(tracing::Level::WARN)),
            ]
        );
        client.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn e2e_plain_text_before_the_handshake_is_logged_not_fatal() {
    timed(async {
        let events = recorder::events();
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-chatty").await;
        let chatty = PluginWorkload::new(PLUGIN_IMAGE).env("INTERCOM_TEST_MODE", "chatty-start");
        let client = plugin_client(config(
            &kube,
            &ns,
            "chatty",
            chatty,
            ConnectMode::PortForward,
        ));
        let mut kv = kv_client(&client).await;
        kv.put(kv::PutRequest {
            key: "k".into(),
            value: b"v".to_vec(),
        })
        .await
        .expect("the plugin serves after its plain-text start-up lines");
        let (pod, _) = plugin_pods(&kube, &ns, "chatty").await.remove(0);
        let logged: Vec<recorder::Event> = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                e.plugin == "chatty" && e.message.contains("plain text before the handshake")
            })
            .cloned()
            .collect();
        assert_eq!(
            logged.len(),
            1,
            "the start-up line reaches the host once, as a log"
        );
        assert_eq!(logged[0].pod, pod);
        client.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn e2e_service_dns_goes_through_the_service_with_mtls() {
    timed(async {
        if std::env::var_os("INTERCOM_E2E_KUBECONFIG").is_some() {
            // The Service name only resolves inside the cluster; this test needs a host in
            // the cluster's network (envtest's proxy and hosts file give it one).
            eprintln!("e2e_service_dns: not run against INTERCOM_E2E_KUBECONFIG (host outside the cluster)");
            return;
        }
        require_routed_pod_range();
        // The process kubelet's Service proxy (which can steer); a real node has kube-proxy
        // and CoreDNS instead.
        let proxy = env().service_proxy();
        assert!(
            proxy.is_some() || on_real_node(),
            "no Service proxy: INTERCOM_ENVTEST_SERVICE_CIDR is not set; run the suite through scripts/test.sh"
        );
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-dns").await;
        let client = plugin_client(config(
            &kube,
            &ns,
            "dns",
            PluginWorkload::new(PLUGIN_IMAGE).replicas(2),
            ConnectMode::ServiceDns,
        ));
        let protocol = client.client().await.unwrap();
        let mut kv = kv_client(&client).await;
        let ips: BTreeSet<String> = plugin_pods(&kube, &ns, "dns")
            .await
            .into_iter()
            .map(|(_, ip)| ip)
            .collect();
        let who = whoami(&mut kv).await.unwrap();
        assert!(ips.contains(&who), "{who} is not one of the plugin's pods {ips:?}");
        assert!(protocol.broker().is_multiplexed());
        let mut counter: counter::counter_client::CounterClient<Channel> =
            protocol.dispense("counter").unwrap();
        intercom_tests::put_with_callback(protocol.broker(), &mut counter, "x", 5)
            .await
            .unwrap();
        if let Some(proxy) = proxy {
            steer_through_the_service(proxy, &kube, &ns, &mut kv).await;
        }
        let ips: Vec<String> = plugin_pods(&kube, &ns, "dns")
            .await
            .into_iter()
            .map(|(_, ip)| ip)
            .collect();
        assert_eq!(ips.len(), 2);
        let who = whoami(&mut kv).await.unwrap();
        // The replica that answered goes away; calls carry on through the Service.
        let pods: Api<Pod> = Api::namespaced(kube.clone(), &ns);
        let (victim, _) = plugin_pods(&kube, &ns, "dns")
            .await
            .into_iter()
            .find(|(_, ip)| *ip == who)
            .expect("the answering pod");
        pods.delete(&victim, &DeleteParams::default()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now: BTreeSet<String> = plugin_pods(&kube, &ns, "dns")
                .await
                .into_iter()
                .map(|(_, ip)| ip)
                .collect();
            let answer = whoami(&mut kv).await;
            if let Ok(ip) = &answer
                && *ip != who
                && now.contains(ip)
            {
                break;
            }
            assert!(Instant::now() < deadline, "still {answer:?} after deleting {victim}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        client.kill().await;
        assert!(client.exited());
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

/// Through the process kubelet's Service proxy: every connection went through the
/// Service (none to a pod IP directly), and the one connection, re-dialled and steered to
/// each replica in turn, is accepted by both (the host trusts every replica's handshake
/// certificate, not only that of the replica whose log it read).
async fn steer_through_the_service(
    proxy: &intercom_envtest::service_proxy::ServiceProxy,
    kube: &kube::Client,
    ns: &str,
    kv: &mut kv::kv_client::KvClient<Channel>,
) {
    assert!(proxy.connections(ns, "dns") >= 1);
    // The one connection is re-dialled through the Service, steered to each replica in
    // turn: both must be accepted at once (the host trusts every replica's handshake
    // certificate, not only that of the replica whose log it read).
    let mut before = loop {
        // First wait until no connection is being made (the start may have retried).
        let earlier = proxy.connections(ns, "dns");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = proxy.connections(ns, "dns");
        if now == earlier {
            break now;
        }
    };
    let ips: Vec<String> = plugin_pods(kube, ns, "dns")
        .await
        .into_iter()
        .map(|(_, ip)| ip)
        .collect();
    assert_eq!(ips.len(), 2);
    for target in &ips {
        proxy.steer(ns, "dns", Some(target.parse().expect("pod IP")));
        proxy.reset(ns, "dns");
        let deadline = Instant::now() + Duration::from_secs(30);
        while proxy.connections(ns, "dns") == before {
            assert!(
                Instant::now() < deadline,
                "the connection was not re-dialled"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            proxy.connections(ns, "dns"),
            before + 1,
            "a connection through the Service to {target} was refused and retried"
        );
        before += 1;
        for _ in 0..5 {
            assert_eq!(&whoami(kv).await.unwrap(), target);
        }
    }
    proxy.steer(ns, "dns", None);
}

#[tokio::test]
async fn e2e_a_dropped_port_forward_is_reestablished() {
    timed(async {
        if std::env::var_os("INTERCOM_E2E_KUBECONFIG").is_some() {
            // Cutting the forward needs envtest's kubelet.
            eprintln!("e2e_port_forward_drop: not run against INTERCOM_E2E_KUBECONFIG");
            return;
        }
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-pf-drop").await;
        let client = plugin_client(config(
            &kube,
            &ns,
            "pf",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::PortForward,
        ));
        let mut kv = kv_client(&client).await;
        let before = whoami(&mut kv).await.unwrap();
        let [(pod, _)]: [(String, String); 1] = plugin_pods(&kube, &ns, "pf")
            .await
            .try_into()
            .expect("one pod");
        let forwards = Forwards::of_env();
        let sessions = forwards.sessions(&ns, &pod).await;
        assert!(!sessions.is_empty(), "no port-forward into {pod}");
        let cut_at = Instant::now();
        forwards.cut(&ns, &pod).await;
        // The forward is re-established to the same pod, with nothing done by the host.
        let deadline = Instant::now() + Duration::from_secs(30);
        forwards
            .wait_new_session(&ns, &pod, &sessions, deadline)
            .await;
        let after = whoami_eventually(&mut kv).await;
        eprintln!(
            "port-forward cut: answering again after {:?}",
            cut_at.elapsed()
        );
        assert_eq!(before, after, "the same pod answers");
        let now = plugin_pods(&kube, &ns, "pf").await;
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].0, pod, "the pod was not replaced");
        // And again: every drop is repaired.
        let sessions = forwards.sessions(&ns, &pod).await;
        forwards.cut(&ns, &pod).await;
        let deadline = deadline + Duration::from_secs(30);
        forwards
            .wait_new_session(&ns, &pod, &sessions, deadline)
            .await;
        assert_eq!(whoami_eventually(&mut kv).await, before);
        assert!(!client.exited());
        client.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

/// The port-forwards into one pod, seen and cut on either node: the process kubelet
/// counts the sessions it served and ends them itself; on a real node each forward is a
/// loopback connection in the pod's network namespace (containerd dials `localhost`),
/// destroyed with `ss -K`.
enum Forwards {
    Process(&'static intercom_envtest::Kubelet),
    Real(&'static intercom_envtest::real_node::RealNode),
}

impl Forwards {
    fn of_env() -> Forwards {
        match (env().kubelet(), env().real_node()) {
            (Some(kubelet), _) => Forwards::Process(kubelet),
            (None, Some(node)) => Forwards::Real(node),
            (None, None) => panic!("an envtest node"),
        }
    }

    /// What identifies the current sessions (a count, or the connections).
    async fn sessions(&self, ns: &str, pod: &str) -> BTreeSet<String> {
        match self {
            Forwards::Process(kubelet) => match kubelet.port_forward_sessions(ns, pod) {
                0 => BTreeSet::new(),
                n => BTreeSet::from([n.to_string()]),
            },
            Forwards::Real(node) => node.port_forward_connections(ns, pod).await.unwrap(),
        }
    }

    async fn cut(&self, ns: &str, pod: &str) {
        match self {
            Forwards::Process(kubelet) => kubelet.cut_port_forwards(ns, pod),
            Forwards::Real(node) => node.cut_port_forwards(ns, pod).await.unwrap(),
        }
    }

    /// Waits until a session other than those in `before` is open.
    async fn wait_new_session(
        &self,
        ns: &str,
        pod: &str,
        before: &BTreeSet<String>,
        deadline: Instant,
    ) {
        loop {
            let now = self.sessions(ns, pod).await;
            if now.iter().any(|s| !before.contains(s)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the port-forward was not re-established"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn e2e_deleting_a_pod_mid_stream_fails_the_stream_and_the_next_call_succeeds() {
    use intercom_tests::macro_api::{Echo as _, EchoClient, EchoPlugin, PLUGIN_NAME};
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-stream").await;
        let client = Client::new(
            ClientConfig::new(
                EchoPlugin::HANDSHAKE,
                intercom::PluginSet::new().with(PLUGIN_NAME, EchoPlugin::client()),
            )
            .kubernetes(config(
                &kube,
                &ns,
                "stream",
                PluginWorkload::new(MACRO_IMAGE),
                ConnectMode::PortForward,
            ))
            .start_timeout(Duration::from_secs(90)),
        );
        let echo: EchoClient = client
            .client()
            .await
            .unwrap()
            .dispense(PLUGIN_NAME)
            .unwrap();
        let mut values = echo.count().await.unwrap();
        for expected in 0..10u64 {
            assert_eq!(values.message().await.unwrap(), Some(expected));
        }
        let [(pod, _)]: [(String, String); 1] = plugin_pods(&kube, &ns, "stream")
            .await
            .try_into()
            .expect("one pod");
        let pods: Api<Pod> = Api::namespaced(kube.clone(), &ns);
        pods.delete(&pod, &DeleteParams::default()).await.unwrap();
        // The stream ends with an error, not with a clean end of stream.
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match values.message().await {
                    Ok(Some(_)) => {}
                    other => return other,
                }
            }
        })
        .await
        .expect("the stream ends when its pod is deleted");
        assert!(
            ended.is_err(),
            "a stream cut by a pod deletion must fail: {ended:?}"
        );
        // The next call succeeds, on the replacement: a fresh process that has produced
        // nothing yet.
        let deadline = Instant::now() + Duration::from_secs(60);
        let produced = loop {
            match echo.produced().await {
                Ok(n) => break n,
                Err(e) => assert!(Instant::now() < deadline, "no replacement: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(produced, 0, "answered by a new plugin process");
        let replacement = plugin_pods(&kube, &ns, "stream").await;
        assert!(replacement.iter().all(|(name, _)| *name != pod));
        let mut values = echo.count().await.unwrap();
        assert_eq!(values.message().await.unwrap(), Some(0));
        drop(values);
        client.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}
