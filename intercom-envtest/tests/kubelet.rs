//! The process kubelet through a real apiserver: Deployments, Services/EndpointSlices, logs,
//! port-forward, garbage collection, image-pull and crash-loop back-offs, probes.
//!
//! The pods run `envtest-echo` (this crate's test binary). Each test starts its own
//! [`Env`]; starts are serialised (`START`) so the shared cores don't boot several
//! apiservers at once. Test bodies are split into boxed steps: one big `async` block makes
//! a debug-build poll frame of about a megabyte, which overflows the 2 MiB test thread once
//! k8s-openapi deserialises a Pod on top of it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt as _, StreamExt as _, TryStreamExt as _};
use intercom_envtest::{Env, EnvBuilder};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ContainerStatus, EnvVar, EnvVarSource, GRPCAction,
    ObjectFieldSelector, Pod, PodSpec, PodTemplateSpec, Probe, Service, ServicePort, ServiceSpec,
    TCPSocketAction,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, LogParams, ObjectMeta, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Resource as _, ResourceExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Bound of every test; generous because the machines are small and shared.
const TEST_TIMEOUT: Duration = Duration::from_secs(240);
/// Bound of one wait on the cluster.
const WAIT: Duration = Duration::from_secs(60);
/// The image reference mapped to `envtest-echo`.
const ECHO_IMAGE: &str = "registry.example/envtest-echo:1";
/// The echo server's port.
const PORT: u16 = 7000;

static START: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), BoxError>;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "intercom_envtest=info".into()),
        )
        .with_test_writer()
        .try_init();
}

fn builder() -> EnvBuilder {
    Env::builder()
        .image(ECHO_IMAGE, env!("CARGO_BIN_EXE_envtest-echo"))
        .backoff_base(Duration::from_millis(200))
}

async fn start(
    label: &str,
    builder: EnvBuilder,
) -> Result<Env, Box<dyn std::error::Error + Send + Sync>> {
    init_tracing();
    let _serial = START.lock().await;
    let began = Instant::now();
    let env = builder.start().await?;
    eprintln!(
        "[{label}] env ready in {:?} (control plane {:?}), node {}",
        began.elapsed(),
        env.control_plane().startup_time(),
        env.kubelet().expect("process kubelet").node_name()
    );
    Ok(env)
}

async fn with_timeout(test: impl std::future::Future<Output = TestResult>) -> TestResult {
    tokio::time::timeout(TEST_TIMEOUT, test).await?
}

async fn wait<T>(
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Box<dyn std::error::Error + Send + Sync>> {
    let began = Instant::now();
    let out = tokio::time::timeout(WAIT, fut)
        .await
        .map_err(|_| format!("timed out after {WAIT:?} waiting for {what}"))?;
    eprintln!("  {what}: {:?}", began.elapsed());
    Ok(out)
}

fn process_alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; count it as alive, since reaping is part of the contract.
    Path::new(&format!("/proc/{pid}")).exists()
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn echo_container(env: Vec<EnvVar>) -> Container {
    Container {
        name: "echo".into(),
        image: Some(ECHO_IMAGE.into()),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            container_port: i32::from(PORT),
            name: Some("echo".into()),
            ..ContainerPort::default()
        }]),
        ..Container::default()
    }
}

fn pod(name: &str, container: Container, restart_policy: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some(restart_policy.into()),
            termination_grace_period_seconds: Some(2),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

fn container_status(pod: Option<&Pod>) -> Option<&ContainerStatus> {
    pod?.status.as_ref()?.container_statuses.as_ref()?.first()
}

fn waiting_reason(pod: Option<&Pod>) -> Option<&str> {
    container_status(pod)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .as_deref()
}

fn is_ready(pod: Option<&Pod>) -> bool {
    pod.and_then(|p| p.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn phase(pod: Option<&Pod>) -> Option<&str> {
    pod?.status.as_ref()?.phase.as_deref()
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The Deployment + Service of the echo server, with a tcpSocket readiness probe.
async fn create_echo_deployment(client: &kube::Client) -> TestResult {
    let labels = BTreeMap::from([("app".to_owned(), "echo".to_owned())]);
    let services: Api<Service> = Api::default_namespaced(client.clone());
    services
        .create(
            &PostParams::default(),
            &Service {
                metadata: ObjectMeta {
                    name: Some("echo".into()),
                    ..ObjectMeta::default()
                },
                spec: Some(ServiceSpec {
                    selector: Some(labels.clone()),
                    ports: Some(vec![ServicePort {
                        port: i32::from(PORT),
                        target_port: Some(IntOrString::Int(i32::from(PORT))),
                        ..ServicePort::default()
                    }]),
                    ..ServiceSpec::default()
                }),
                ..Service::default()
            },
        )
        .await?;
    let mut container = echo_container(vec![
        env_var(
            "ECHO_PRINT_ENV",
            "MY_POD,MY_NS,MY_IP,LISTEN,INTERCOM_LISTEN_ADDR",
        ),
        field_env("MY_POD", "metadata.name"),
        field_env("MY_NS", "metadata.namespace"),
        field_env("MY_IP", "status.podIP"),
        env_var("LISTEN", "$(MY_IP):$(NOPE)"),
    ]);
    container.readiness_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("echo".into()),
            host: None,
        }),
        period_seconds: Some(1),
        ..Probe::default()
    });
    let deployment = Deployment {
        metadata: ObjectMeta {
            name: Some("echo".into()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    termination_grace_period_seconds: Some(3),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let created = Instant::now();
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    wait(
        "deployment available",
        await_condition(deployments, "echo", conditions::is_deployment_completed()),
    )
    .await??;
    eprintln!("  deployment create → available: {:?}", created.elapsed());
    Ok(())
}

/// The Deployment's single pod, checked: Ready, on our node, with a pod IP.
fn the_echo_pod(env: &Env) -> BoxFuture<'_, Result<(Pod, Ipv4Addr), BoxError>> {
    Box::pin(async move {
        let pods: Api<Pod> = Api::default_namespaced(env.client());
        let list = pods.list(&ListParams::default().labels("app=echo")).await?;
        let [pod] = list.items.as_slice() else {
            return Err(format!("expected one pod, got {}", list.items.len()).into());
        };
        assert!(is_ready(Some(pod)), "pod not Ready: {:?}", pod.status);
        let status = pod.status.as_ref().ok_or("no status")?;
        let pod_ip: Ipv4Addr = status.pod_ip.as_deref().ok_or("no podIP")?.parse()?;
        assert_ne!(pod_ip, Ipv4Addr::LOCALHOST);
        assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some(env.kubelet().expect("process kubelet").node_name())
        );
        let cs = container_status(Some(pod)).ok_or("no container status")?;
        assert!(cs.ready && cs.started == Some(true), "{cs:?}");
        assert!(
            cs.image_id.starts_with("sha256:") && cs.image_id.len() == 71,
            "{}",
            cs.image_id
        );
        assert!(
            cs.container_id
                .as_deref()
                .is_some_and(|id| id.starts_with("intercom://")),
            "{cs:?}"
        );
        assert!(
            cs.state.as_ref().and_then(|s| s.running.as_ref()).is_some(),
            "{cs:?}"
        );
        Ok((pod.clone(), pod_ip))
    })
}

/// Logs through the apiserver: whole, tail, timestamps, since + limit, follow. Returns the
/// container's pid (printed by `envtest-echo`).
fn check_logs<'a>(
    pods: &'a Api<Pod>,
    name: &'a str,
    pod_ip: Ipv4Addr,
) -> BoxFuture<'a, Result<u32, BoxError>> {
    Box::pin(async move {
        let logs = pods.logs(name, &LogParams::default()).await?;
        eprintln!("  logs:\n{logs}");
        let pid: u32 = logs
            .lines()
            .find_map(|l| {
                l.strip_prefix("envtest-echo pid=")?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .ok_or("no pid line in the logs")?;
        for want in [
            format!("env MY_POD={name}"),
            "env MY_NS=default".to_owned(),
            format!("env MY_IP={pod_ip}"),
            format!("env LISTEN={pod_ip}:$(NOPE)"),
            format!("env INTERCOM_LISTEN_ADDR={pod_ip}:{PORT}"),
            "line 2".to_owned(),
            "envtest-echo stderr".to_owned(),
            format!("listening on {pod_ip}:{PORT}"),
        ] {
            assert!(logs.lines().any(|l| l == want), "missing {want:?} in logs");
        }
        // stdout and stderr are separate pipes: their relative order is not fixed.
        let last_two = [
            format!("listening on {pod_ip}:{PORT}"),
            "envtest-echo stderr".to_owned(),
        ];
        let tail = pods
            .logs(
                name,
                &LogParams {
                    tail_lines: Some(2),
                    ..LogParams::default()
                },
            )
            .await?;
        let mut tail: Vec<&str> = tail.lines().collect();
        tail.sort_unstable();
        assert_eq!(tail, [last_two[1].as_str(), last_two[0].as_str()]);
        let stamped = pods
            .logs(
                name,
                &LogParams {
                    timestamps: true,
                    tail_lines: Some(1),
                    ..LogParams::default()
                },
            )
            .await?;
        let (stamp, rest) = stamped.split_once(' ').ok_or("no timestamp")?;
        assert!(stamp.ends_with('Z') && stamp.len() == 30, "{stamp}");
        assert!(
            last_two.iter().any(|l| rest == format!("{l}\n")),
            "{rest:?}"
        );
        let since = pods
            .logs(
                name,
                &LogParams {
                    since_seconds: Some(3600),
                    limit_bytes: Some(12),
                    ..LogParams::default()
                },
            )
            .await?;
        assert_eq!(since, "envtest-echo");
        let mut follow = pods
            .log_stream(
                name,
                &LogParams {
                    follow: true,
                    ..LogParams::default()
                },
            )
            .await?
            .lines();
        let first = wait("first followed log line", follow.try_next()).await??;
        assert!(first.is_some_and(|l| l.starts_with("envtest-echo pid=")));
        Ok(pid)
    })
}

/// `Api::portforward` through the apiserver to the echo server.
fn check_port_forward<'a>(pods: &'a Api<Pod>, name: &'a str) -> BoxFuture<'a, TestResult> {
    Box::pin(async move {
        let mut forwarder = pods.portforward(name, &[PORT]).await?;
        let mut stream = forwarder
            .take_stream(PORT)
            .ok_or("no stream for the port")?;
        for message in [&b"hello through the apiserver\n"[..], b"and again\n"] {
            stream.write_all(message).await?;
            let mut echoed = vec![0u8; message.len()];
            wait("echo through port-forward", stream.read_exact(&mut echoed)).await??;
            assert_eq!(echoed, message);
        }
        drop(stream);
        forwarder.join().await?;
        Ok(())
    })
}

/// Deleting the Deployment: the garbage collector removes ReplicaSet and pod, the kubelet
/// kills the process and does the final delete.
fn delete_deployment<'a>(
    client: &'a kube::Client,
    pod: &'a Pod,
    pid: u32,
) -> BoxFuture<'a, TestResult> {
    Box::pin(async move {
        let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        let uid = pod.uid().ok_or("pod has no uid")?;
        let deleted = Instant::now();
        deployments
            .delete("echo", &DeleteParams::foreground())
            .await?;
        wait(
            "pod deleted",
            await_condition(pods, &pod.name_any(), conditions::is_deleted(&uid)),
        )
        .await??;
        eprintln!("  deployment delete → pod gone: {:?}", deleted.elapsed());
        assert!(
            !process_alive(pid),
            "container process {pid} survived its pod"
        );
        Ok(())
    })
}

#[tokio::test]
async fn e2e_deployment_serves_logs_port_forward_and_is_collected() -> TestResult {
    with_timeout(async {
        let env = start("deployment", builder()).await?;
        let client = env.client();
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        Box::pin(create_echo_deployment(&client)).await?;
        let (pod, pod_ip) = the_echo_pod(&env).await?;
        // Loopback by default; from the routed range when the test script provides one.
        let routed = intercom_envtest::env::pod_cidr_from_env()?.is_some();
        assert_eq!(pod_ip.is_loopback(), !routed, "{pod_ip}");
        let name = pod.name_any();
        let pid = check_logs(&pods, &name, pod_ip).await?;
        assert!(process_alive(pid), "container process {pid} not running");
        assert_eq!(
            env.kubelet()
                .expect("process kubelet")
                .pids("default", &name)
                .get("echo"),
            Some(&pid)
        );
        check_port_forward(&pods, &name).await?;
        delete_deployment(&client, &pod, pid).await?;
        Ok(())
    })
    .await
}

/// The pod range the test script routes to `lo` inside its private network namespace.
/// Missing is a failure, not a skip: run the suite through `scripts/test.sh`.
fn routed_pod_cidr() -> Result<intercom_envtest::PodCidr, BoxError> {
    intercom_envtest::env::pod_cidr_from_env()?.ok_or_else(|| {
        "INTERCOM_ENVTEST_POD_CIDR is not set: run the tests through scripts/test.sh, which \
         routes a pod range to lo inside a private network namespace"
            .into()
    })
}

#[tokio::test]
async fn e2e_pod_cidr_endpointslice_lists_the_pod() -> TestResult {
    let cidr = routed_pod_cidr()?;
    with_timeout(async {
        let env = start("pod-cidr", builder().pod_cidr(cidr)).await?;
        let client = env.client();
        Box::pin(create_echo_deployment(&client)).await?;
        let (pod, pod_ip) = the_echo_pod(&env).await?;
        assert!(!pod_ip.is_loopback(), "{pod_ip} is a loopback address");
        let slices: Api<EndpointSlice> = Api::default_namespaced(client.clone());
        let config = watcher::Config::default().labels("kubernetes.io/service-name=echo");
        let ip = pod_ip.to_string();
        let mut stream = watcher(slices, config)
            .applied_objects()
            .try_filter(|s| {
                futures::future::ready(s.endpoints.iter().any(|e| {
                    e.addresses.contains(&ip)
                        && e.conditions.as_ref().and_then(|c| c.ready) == Some(true)
                }))
            })
            .boxed();
        let lists_pod = stream.try_next();
        wait("EndpointSlice lists the pod as ready", lists_pod).await??;
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        check_port_forward(&pods, &pod.name_any()).await?;
        Ok(())
    })
    .await
}

/// Unknown image: ErrImagePull, then ImagePullBackOff; logs explain.
fn unknown_image(pods: &Api<Pod>) -> BoxFuture<'_, TestResult> {
    Box::pin(async move {
        let mut ghost = echo_container(Vec::new());
        ghost.image = Some("registry.example/missing:1".into());
        pods.create(&PostParams::default(), &pod("ghost", ghost, "Always"))
            .await?;
        let ghost = wait(
            "ImagePullBackOff",
            await_condition(pods.clone(), "ghost", |p: Option<&Pod>| {
                waiting_reason(p) == Some("ImagePullBackOff")
            }),
        )
        .await??;
        assert_eq!(phase(ghost.as_ref()), Some("Pending"));
        let message = container_status(ghost.as_ref())
            .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone())
            .unwrap_or_default();
        assert!(message.contains("registry.example/missing:1"), "{message}");
        let err = pods
            .logs("ghost", &LogParams::default())
            .await
            .err()
            .ok_or("logs of a never-started container")?;
        assert!(
            err.to_string().contains("trying and failing to pull image")
                || err.to_string().contains("image can't be pulled"),
            "{err}"
        );
        Ok(())
    })
}

/// A process exiting 3 under restartPolicy Always: CrashLoopBackOff with growing restarts,
/// `previous` logs; then deleting it ends it.
fn crash_loop(pods: &Api<Pod>) -> BoxFuture<'_, TestResult> {
    Box::pin(async move {
        let crasher = echo_container(vec![env_var("ECHO_EXIT_CODE", "3")]);
        pods.create(&PostParams::default(), &pod("crasher", crasher, "Always"))
            .await?;
        let looping = wait(
            "CrashLoopBackOff with 2 restarts",
            await_condition(pods.clone(), "crasher", |p: Option<&Pod>| {
                waiting_reason(p) == Some("CrashLoopBackOff")
                    && container_status(p).is_some_and(|c| c.restart_count >= 2)
            }),
        )
        .await??;
        let cs = container_status(looping.as_ref()).ok_or("no status")?;
        let last = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .ok_or("no lastState")?;
        assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
        assert_eq!(phase(looping.as_ref()), Some("Running"));
        let restarts = cs.restart_count;
        wait(
            "restart count grows",
            await_condition(pods.clone(), "crasher", move |p: Option<&Pod>| {
                container_status(p).is_some_and(|c| c.restart_count > restarts)
            }),
        )
        .await??;
        let previous = pods
            .logs(
                "crasher",
                &LogParams {
                    previous: true,
                    ..LogParams::default()
                },
            )
            .await?;
        assert!(previous.contains("exiting with 3"), "{previous}");
        let uid = pods
            .get("crasher")
            .await?
            .meta()
            .uid
            .clone()
            .ok_or("no uid")?;
        pods.delete("crasher", &DeleteParams::default()).await?;
        wait(
            "crasher deleted",
            await_condition(pods.clone(), "crasher", conditions::is_deleted(&uid)),
        )
        .await??;
        Ok(())
    })
}

/// restartPolicy Never: Succeeded on exit 0, Failed on exit 7.
fn run_to_completion(pods: &Api<Pod>) -> BoxFuture<'_, TestResult> {
    Box::pin(async move {
        for (name, code) in [("once", "0"), ("fails", "7")] {
            pods.create(
                &PostParams::default(),
                &pod(
                    name,
                    echo_container(vec![env_var("ECHO_EXIT_CODE", code)]),
                    "Never",
                ),
            )
            .await?;
        }
        let once = wait(
            "Succeeded",
            await_condition(pods.clone(), "once", |p: Option<&Pod>| {
                phase(p) == Some("Succeeded")
            }),
        )
        .await??;
        let term = container_status(once.as_ref())
            .and_then(|c| c.state.as_ref()?.terminated.clone())
            .ok_or("no terminated state")?;
        assert_eq!(
            (term.exit_code, term.reason.as_deref()),
            (0, Some("Completed"))
        );
        let fails = wait(
            "Failed",
            await_condition(pods.clone(), "fails", |p: Option<&Pod>| {
                phase(p) == Some("Failed")
            }),
        )
        .await??;
        let term = container_status(fails.as_ref())
            .and_then(|c| c.state.as_ref()?.terminated.clone())
            .ok_or("no terminated state")?;
        assert_eq!((term.exit_code, term.reason.as_deref()), (7, Some("Error")));
        Ok(())
    })
}

/// A gRPC readiness probe with a service name, and a nodeSelector that matches no node.
fn grpc_probe_and_unschedulable(pods: &Api<Pod>) -> BoxFuture<'_, TestResult> {
    Box::pin(async move {
        let mut grpc = echo_container(vec![env_var("ECHO_GRPC_SERVICE", "plugin")]);
        grpc.readiness_probe = Some(Probe {
            grpc: Some(GRPCAction {
                port: i32::from(PORT),
                service: Some("plugin".into()),
            }),
            period_seconds: Some(1),
            ..Probe::default()
        });
        pods.create(&PostParams::default(), &pod("grpc", grpc, "Always"))
            .await?;
        wait(
            "gRPC-probed pod Ready",
            await_condition(pods.clone(), "grpc", is_ready),
        )
        .await??;

        let mut picky = pod("picky", echo_container(Vec::new()), "Always");
        if let Some(spec) = picky.spec.as_mut() {
            spec.node_selector = Some(BTreeMap::from([("disk".to_owned(), "ssd".to_owned())]));
        }
        pods.create(&PostParams::default(), &picky).await?;
        wait(
            "Unschedulable",
            await_condition(pods.clone(), "picky", |p: Option<&Pod>| {
                p.and_then(|p| p.status.as_ref()?.conditions.clone())
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.type_ == "PodScheduled"
                                && c.reason.as_deref() == Some("Unschedulable")
                        })
                    })
            }),
        )
        .await??;
        Ok(())
    })
}

/// An init container runs to completion before the main container; a failing liveness
/// probe restarts a container.
fn init_and_liveness(pods: &Api<Pod>) -> BoxFuture<'_, TestResult> {
    Box::pin(async move {
        let mut init = echo_container(vec![env_var("ECHO_EXIT_CODE", "0")]);
        init.name = "setup".into();
        init.ports = None;
        let mut staged = pod("staged", echo_container(Vec::new()), "Always");
        if let Some(spec) = staged.spec.as_mut() {
            spec.init_containers = Some(vec![init]);
        }
        pods.create(&PostParams::default(), &staged).await?;
        let staged = wait(
            "pod with init container Ready",
            await_condition(pods.clone(), "staged", is_ready),
        )
        .await??;
        let init_status = staged
            .as_ref()
            .and_then(|p| {
                p.status
                    .as_ref()?
                    .init_container_statuses
                    .as_ref()?
                    .first()
                    .cloned()
            })
            .ok_or("no init container status")?;
        let term = init_status
            .state
            .and_then(|s| s.terminated)
            .ok_or("init container not terminated")?;
        assert_eq!(
            (term.exit_code, term.reason.as_deref()),
            (0, Some("Completed"))
        );
        let logs = pods
            .logs(
                "staged",
                &LogParams {
                    container: Some("setup".into()),
                    ..LogParams::default()
                },
            )
            .await?;
        assert!(logs.contains("exiting with 0"), "{logs}");

        // Nothing listens on PORT + 1: the liveness probe fails and the kubelet restarts.
        let mut unhealthy = echo_container(Vec::new());
        unhealthy.liveness_probe = Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(PORT) + 1),
                host: None,
            }),
            period_seconds: Some(1),
            failure_threshold: Some(1),
            ..Probe::default()
        });
        pods.create(
            &PostParams::default(),
            &pod("unhealthy", unhealthy, "Always"),
        )
        .await?;
        let restarted = wait(
            "liveness restart",
            await_condition(pods.clone(), "unhealthy", |p: Option<&Pod>| {
                container_status(p).is_some_and(|c| c.restart_count >= 1)
            }),
        )
        .await??;
        let last = container_status(restarted.as_ref())
            .and_then(|c| c.last_state.as_ref()?.terminated.clone())
            .ok_or("no lastState after the liveness restart")?;
        // SIGTERM from the kubelet: 128 + 15.
        assert_eq!(last.exit_code, 143, "{last:?}");
        Ok(())
    })
}

#[tokio::test]
async fn e2e_back_offs_probes_and_init_containers() -> TestResult {
    with_timeout(async {
        let env = start("back-off", builder()).await?;
        let pods: Api<Pod> = Api::default_namespaced(env.client());
        unknown_image(&pods).await?;
        crash_loop(&pods).await?;
        run_to_completion(&pods).await?;
        grpc_probe_and_unschedulable(&pods).await?;
        init_and_liveness(&pods).await?;
        // Shutting the Env down kills and reaps the pods' processes.
        let pid = *env
            .kubelet()
            .expect("process kubelet")
            .pids("default", "grpc")
            .get("echo")
            .ok_or("grpc pod has no process")?;
        assert!(process_alive(pid));
        wait("env shutdown", env.shutdown()).await?;
        assert!(!process_alive(pid), "process {pid} outlived the Env");
        Ok(())
    })
    .await
}
