//! The control plane against itself: real etcd, kube-apiserver and kube-controller-manager.
//!
//! Each test starts its own control plane. Starts are serialised (`START`) so that the two
//! shared cores are not split across half a dozen apiservers booting at once; only
//! `e2e_two_control_planes_at_once` starts two together on purpose.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use intercom_envtest::control_plane::{Component, ControlPlane, ControlPlaneError};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, Pod, PodSpec, PodTemplateSpec, Secret, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Resource as _, ResourceExt as _};

/// Bound of every test; generous because the machines are small and shared.
const TEST_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound of one start.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound of one wait on a controller.
const WAIT: Duration = Duration::from_secs(60);

static START: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "intercom_envtest=info".into()),
        )
        .with_test_writer()
        .try_init();
}

async fn start(label: &str) -> Result<ControlPlane, Box<dyn std::error::Error + Send + Sync>> {
    init_tracing();
    let began = Instant::now();
    let cp = ControlPlane::builder()
        .start_timeout(START_TIMEOUT)
        .start()
        .await?;
    eprintln!(
        "[{label}] control plane ready in {:?} (startup_time {:?}) at {}",
        began.elapsed(),
        cp.startup_time(),
        cp.server_url()
    );
    Ok(cp)
}

async fn with_timeout(test: impl std::future::Future<Output = TestResult>) -> TestResult {
    tokio::time::timeout(TEST_TIMEOUT, test).await?
}

fn process_alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; count it as alive, since reaping is part of the contract.
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn e2e_start_lists_namespaces() -> TestResult {
    with_timeout(async {
        let _serial = START.lock().await;
        let cp = start("start").await?;
        let namespaces: Api<Namespace> = Api::all(cp.client());
        let names: Vec<String> = namespaces
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|ns| ns.name_any())
            .collect();
        assert!(names.iter().any(|n| n == "default"), "{names:?}");
        assert!(names.iter().any(|n| n == "kube-system"), "{names:?}");
        assert!(cp.server_url().starts_with("https://127.0.0.1:"));
        assert!(cp.kubeconfig().starts_with(cp.dir()));
        // The kubeconfig on disk works on its own.
        let kubeconfig = kube::config::Kubeconfig::read_from(cp.kubeconfig())?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        let version = kube::Client::try_from(config)?.apiserver_version().await?;
        eprintln!("[start] kube-apiserver {}", version.git_version);
        assert_eq!(version.minor, "35");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn e2e_two_control_planes_at_once() -> TestResult {
    with_timeout(async {
        let _serial = START.lock().await;
        let (a, b) = tokio::join!(start("two/a"), start("two/b"));
        let (a, b) = (a?, b?);
        assert_ne!(a.server_url(), b.server_url());
        assert_ne!(a.dir(), b.dir());
        for (cp, name) in [(&a, "only-in-a"), (&b, "only-in-b")] {
            let namespaces: Api<Namespace> = Api::all(cp.client());
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..Default::default()
                },
                ..Default::default()
            };
            namespaces.create(&PostParams::default(), &ns).await?;
        }
        // Separate etcds: each sees only its own namespace.
        let in_a: Api<Namespace> = Api::all(a.client());
        let in_b: Api<Namespace> = Api::all(b.client());
        assert!(in_a.get_opt("only-in-a").await?.is_some());
        assert!(in_a.get_opt("only-in-b").await?.is_none());
        assert!(in_b.get_opt("only-in-b").await?.is_some());
        assert!(in_b.get_opt("only-in-a").await?.is_none());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn e2e_deployment_gets_replicaset_and_pod_and_is_garbage_collected() -> TestResult {
    with_timeout(async {
        let cp = {
            let _serial = START.lock().await;
            start("deployment").await?
        };
        let client = cp.client();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

        let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
        let deployment = Deployment {
            metadata: ObjectMeta {
                name: Some("web".to_owned()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "web".to_owned(),
                            image: Some("example.invalid/web:1".to_owned()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let deployment = deployments
            .create(&PostParams::default(), &deployment)
            .await?;
        let deployment_uid = deployment.uid().ok_or("deployment without uid")?;

        let selector = watcher::Config::default().labels("app=web");
        let replicaset = tokio::time::timeout(
            WAIT,
            watcher(replicasets.clone(), selector.clone())
                .default_backoff()
                .applied_objects()
                .boxed()
                .try_next(),
        )
        .await??
        .ok_or("replicaset watch ended")?;
        let owner = replicaset
            .owner_references()
            .first()
            .ok_or("replicaset without owner")?;
        assert_eq!(owner.uid, deployment_uid);
        eprintln!("[deployment] replicaset {}", replicaset.name_any());

        let pod = tokio::time::timeout(
            WAIT,
            watcher(pods.clone(), selector)
                .default_backoff()
                .applied_objects()
                .boxed()
                .try_next(),
        )
        .await??
        .ok_or("pod watch ended")?;
        let owner = pod.owner_references().first().ok_or("pod without owner")?;
        assert_eq!(Some(owner.uid.as_str()), replicaset.meta().uid.as_deref());
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        assert!(matches!(phase, None | Some("Pending")), "phase {phase:?}");
        assert_eq!(pod.spec.as_ref().and_then(|s| s.node_name.as_deref()), None);
        // The ServiceAccount admission plugin mounted a token (the SA exists).
        let mounts = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.volume_mounts.as_ref())
            .map(Vec::len)
            .unwrap_or(0);
        assert!(mounts > 0, "no service-account token mount");
        eprintln!("[deployment] pod {} is {phase:?}", pod.name_any());

        deployments
            .delete("web", &DeleteParams::background())
            .await?;
        let rs_uid = replicaset.uid().ok_or("replicaset without uid")?;
        let pod_uid = pod.uid().ok_or("pod without uid")?;
        let rs_name = replicaset.name_any();
        let pod_name = pod.name_any();
        tokio::time::timeout(WAIT, async {
            await_condition(replicasets, &rs_name, conditions::is_deleted(&rs_uid)).await?;
            await_condition(pods, &pod_name, conditions::is_deleted(&pod_uid)).await?;
            Ok::<_, kube::runtime::wait::Error>(())
        })
        .await??;
        eprintln!("[deployment] garbage collector removed replicaset and pod");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn e2e_service_account_token_is_limited_by_rbac() -> TestResult {
    with_timeout(async {
        let cp = {
            let _serial = START.lock().await;
            start("rbac").await?
        };
        let client = cp.client();
        let ns = "rbac-test";
        Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: ObjectMeta {
                        name: Some(ns.to_owned()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await?;
        let meta = |name: &str| ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            ..Default::default()
        };
        let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        service_accounts
            .create(
                &PostParams::default(),
                &ServiceAccount {
                    metadata: meta("narrow"),
                    ..Default::default()
                },
            )
            .await?;
        Api::<Role>::namespaced(client.clone(), ns)
            .create(
                &PostParams::default(),
                &Role {
                    metadata: meta("read-configmaps"),
                    rules: Some(vec![PolicyRule {
                        api_groups: Some(vec![String::new()]),
                        resources: Some(vec!["configmaps".to_owned()]),
                        verbs: vec!["get".to_owned(), "list".to_owned()],
                        ..Default::default()
                    }]),
                },
            )
            .await?;
        Api::<RoleBinding>::namespaced(client.clone(), ns)
            .create(
                &PostParams::default(),
                &RoleBinding {
                    metadata: meta("narrow-reads-configmaps"),
                    role_ref: RoleRef {
                        api_group: "rbac.authorization.k8s.io".to_owned(),
                        kind: "Role".to_owned(),
                        name: "read-configmaps".to_owned(),
                    },
                    subjects: Some(vec![Subject {
                        kind: "ServiceAccount".to_owned(),
                        name: "narrow".to_owned(),
                        namespace: Some(ns.to_owned()),
                        ..Default::default()
                    }]),
                },
            )
            .await?;

        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(600),
                ..Default::default()
            },
            ..Default::default()
        };
        let token = service_accounts
            .create_token_request("narrow", &PostParams::default(), &request)
            .await?
            .status
            .ok_or("token request without status")?
            .token;
        let narrow = cp.client_for_token(&token)?;

        let configmaps: Api<ConfigMap> = Api::namespaced(narrow.clone(), ns);
        let listed = configmaps.list(&ListParams::default()).await?;
        // kube-root-ca.crt, published by the root-ca-certificate-publisher controller (it may
        // lag behind the namespace by a moment, so only log it).
        eprintln!(
            "[rbac] narrow lists configmaps: {:?}",
            listed
                .items
                .iter()
                .map(|c| c.name_any())
                .collect::<Vec<_>>()
        );

        let secrets: Api<Secret> = Api::namespaced(narrow.clone(), ns);
        match secrets.list(&ListParams::default()).await {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
            other => panic!("listing secrets should be forbidden, got {other:?}"),
        }
        let pods: Api<Pod> = Api::namespaced(narrow.clone(), ns);
        match pods.list(&ListParams::default()).await {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
            other => panic!("listing pods should be forbidden, got {other:?}"),
        }
        // A forged token is rejected outright.
        let forged = cp.client_for_token("not-a-token")?;
        match Api::<ConfigMap>::namespaced(forged, ns)
            .list(&ListParams::default())
            .await
        {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 401, "{status:?}"),
            other => panic!("a forged token should be unauthorized, got {other:?}"),
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn e2e_drop_stops_processes_and_removes_dir() -> TestResult {
    with_timeout(async {
        let cp = {
            let _serial = START.lock().await;
            start("drop").await?
        };
        let pids: Vec<u32> = [
            Component::Etcd,
            Component::KubeApiserver,
            Component::KubeControllerManager,
        ]
        .into_iter()
        .map(|c| cp.pid(c).ok_or(format!("{c} has no pid")))
        .collect::<Result<_, _>>()?;
        let dir = cp.dir().to_owned();
        for pid in &pids {
            assert!(process_alive(*pid), "pid {pid} not running before drop");
        }
        assert!(dir.join("etcd.log").exists());
        assert!(cp.pki().ca_cert_path.exists());

        let began = Instant::now();
        cp.stop();
        eprintln!("[drop] stopped in {:?}", began.elapsed());
        for pid in &pids {
            assert!(!process_alive(*pid), "pid {pid} still exists after drop");
        }
        assert!(!dir.exists(), "{dir:?} still exists after drop");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn e2e_start_timeout_reports_log_tail_and_cleans_up() -> TestResult {
    with_timeout(async {
        let _serial = START.lock().await;
        init_tracing();
        let err = ControlPlane::builder()
            .start_timeout(Duration::from_millis(1500))
            .start()
            .await
            .err()
            .ok_or("a 1.5 s start-up should time out")?;
        eprintln!("[timeout] {err}");
        match &err {
            ControlPlaneError::NotReady {
                component,
                log,
                log_tail,
                ..
            } => {
                assert!(
                    matches!(component, Component::Etcd | Component::KubeApiserver),
                    "{component}"
                );
                assert!(!log_tail.is_empty());
                let dir = log.parent().ok_or("log without directory")?;
                assert!(!dir.exists(), "{dir:?} left behind after a failed start");
            }
            other => panic!("expected NotReady, got {other:?}"),
        }
        Ok(())
    })
    .await
}
