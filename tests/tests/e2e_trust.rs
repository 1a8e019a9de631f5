//! Trust on Kubernetes, end to end against intercom-envtest: the host trusts only the pods
//! its own Deployment owns (not whatever carries its labels), AutoMTLS fails closed when a
//! pod's plugin announces no certificate, image digests are checked on launch and on
//! reattach, and the NetworkPolicy option fences the plugin port.

use std::time::{Duration, Instant};

use intercom::runtime::kubernetes::{ConnectMode, KubeError, KubernetesConfig, PluginWorkload};
use intercom::{Client, ClientConfig, ClientError};
use intercom_tests::kubernetes::{
    PLUGIN_IMAGE, WRONG_DIGEST_IMAGE, assert_nothing_left, config, env, kube_client, kv_client,
    namespace, pinned_image, plugin_client, plugin_pods, require_routed_pod_range, timed, whoami,
};
use intercom_tests::{HANDSHAKE, host_plugins};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams};

/// Creates pod `name` next to the plugin's pod `of`: the same spec (image, env with the
/// host's certificate, probe) and exactly the same labels, instance label included, but
/// controlled by a ConfigMap instead of the plugin's ReplicaSet. Returns its IP once it
/// is ready (it serves the test plugin, so `whoami` would answer its IP).
async fn stray_pod(kube: &kube::Client, ns: &str, of: &str, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(kube.clone(), ns);
    let original = pods.get(of).await.unwrap();
    let owner: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": format!("{name}-owner")}}))
            .unwrap();
    let owner = Api::<ConfigMap>::namespaced(kube.clone(), ns)
        .create(&PostParams::default(), &owner)
        .await
        .unwrap();
    let stray = Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: original.metadata.labels.clone(),
            // A controller of its own: the plugin's ReplicaSet does not adopt it, though it
            // also carries the ReplicaSet's `pod-template-hash`.
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: owner.metadata.name.clone().unwrap(),
                uid: owner.metadata.uid.clone().unwrap(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: original.spec.clone(),
        status: None,
    };
    pods.create(&PostParams::default(), &stray).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pod = pods.get(name).await.unwrap();
        let status = pod.status.unwrap_or_default();
        let ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if let (true, Some(ip)) = (ready, status.pod_ip) {
            return ip;
        }
        assert!(
            Instant::now() < deadline,
            "the stray pod never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every answer of `whoami` for `period` comes from `expected`, never from `stray`
/// (failed calls are allowed and counted).
async fn answers_only_from(
    kv: &mut intercom_tests::kv::kv_client::KvClient<intercom::tonic::transport::Channel>,
    expected: &str,
    stray: &str,
    period: Duration,
) -> usize {
    let until = Instant::now() + period;
    let mut answered = 0;
    while Instant::now() < until {
        if let Ok(who) = whoami(kv).await {
            assert_ne!(who, stray, "a call reached the stray pod");
            assert_eq!(who, expected);
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    answered
}

async fn delete_stray(kube: &kube::Client, ns: &str, name: &str) {
    Api::<Pod>::namespaced(kube.clone(), ns)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(kube.clone(), ns)
        .delete(&format!("{name}-owner"), &DeleteParams::default())
        .await
        .unwrap();
}

/// 13.3: a pod carrying the plugin's labels (instance label included) but not owned by
/// the Deployment's ReplicaSet is never dialled nor balanced to, and does not hold up
/// `kill`.
#[tokio::test]
async fn e2e_a_stray_pod_with_the_plugin_labels_gets_no_call() {
    timed(async {
        require_routed_pod_range();
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-stray").await;
        let client = plugin_client(config(
            &kube,
            &ns,
            "owned",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::Endpoints,
        ));
        let mut kv = kv_client(&client).await;
        let [(pod, ip)]: [(String, String); 1] = plugin_pods(&kube, &ns, "owned")
            .await
            .try_into()
            .expect("one plugin pod");
        assert_eq!(whoami(&mut kv).await.unwrap(), ip);
        let stray = stray_pod(&kube, &ns, &pod, "stray").await;
        assert_ne!(stray, ip);
        // Time for the host to see the stray pod ready (it watches the instance label).
        tokio::time::sleep(Duration::from_secs(3)).await;
        let answered = answers_only_from(&mut kv, &ip, &stray, Duration::from_secs(4)).await;
        assert!(answered > 20, "only {answered} calls were answered");
        // The stray pod carries the instance label, but kill waits only for owned pods.
        let started = Instant::now();
        client.kill().await;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "kill waited {:?} for a pod it does not own",
            started.elapsed()
        );
        delete_stray(&kube, &ns, "stray").await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

/// 13.3: through the Service name (`ServiceDns`), a connection the Service sends to a
/// stray pod is refused: its certificate is not pinned, since the host never read its
/// handshake. Calls come back once the Service picks the owned pod again.
#[tokio::test]
async fn e2e_a_stray_pod_behind_the_service_is_not_pinned() {
    timed(async {
        require_routed_pod_range();
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-stray-dns").await;
        let client = plugin_client(config(
            &kube,
            &ns,
            "pinned",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::ServiceDns,
        ));
        let mut kv = kv_client(&client).await;
        let [(pod, ip)]: [(String, String); 1] = plugin_pods(&kube, &ns, "pinned")
            .await
            .try_into()
            .expect("one plugin pod");
        assert_eq!(whoami(&mut kv).await.unwrap(), ip);
        let stray = stray_pod(&kube, &ns, &pod, "stray").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        // The Service selects the stray pod too (by labels); send every connection there.
        let mut steer = Steer::new(&kube, &ns, "pinned").await;
        steer.to(&stray, &ip);
        let before = steer.dials();
        steer.reset();
        answers_only_from(&mut kv, &ip, &stray, Duration::from_secs(5)).await;
        assert!(
            steer.dials() > before,
            "the host did not dial through the Service to the stray pod"
        );
        // Back to the owned pod: calls are answered again.
        steer.to(&ip, &stray);
        steer.reset();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match whoami(&mut kv).await {
                Ok(who) => {
                    assert_eq!(who, ip);
                    break;
                }
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "no answer after steering back: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        steer.clear();
        client.kill().await;
        delete_stray(&kube, &ns, "stray").await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

/// One Service's connections sent to one pod, on either node. The process kubelet's
/// Service proxy steers, resets and counts them itself. On a real node kube-proxy
/// balances at random, so iptables in the node's network namespace (where the test runs)
/// answers connections to the other pod with a TCP reset and counts the SYNs to the chosen
/// one, and `ss -K` ends the host's open connections to the ClusterIP.
enum Steer {
    Proxy {
        proxy: &'static intercom_envtest::service_proxy::ServiceProxy,
        ns: String,
        service: String,
    },
    Kube {
        cluster_ip: String,
        port: i32,
    },
}

/// The iptables chain the real-node steering lives in.
const STEER_CHAIN: &str = "INTERCOM-E2E-STEER";

impl Steer {
    async fn new(kube: &kube::Client, ns: &str, service: &str) -> Steer {
        if let Some(proxy) = env().service_proxy() {
            return Steer::Proxy {
                proxy,
                ns: ns.into(),
                service: service.into(),
            };
        }
        assert!(
            intercom_tests::kubernetes::on_real_node(),
            "no Service proxy: INTERCOM_ENVTEST_SERVICE_CIDR is not set; run the suite through scripts/test.sh"
        );
        let svc = Api::<k8s_openapi::api::core::v1::Service>::namespaced(kube.clone(), ns)
            .get(service)
            .await
            .unwrap();
        let spec = svc.spec.expect("a Service spec");
        let port = spec.ports.as_ref().and_then(|p| p.first()).expect("a port");
        let port = match &port.target_port {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p)) => *p,
            _ => port.port,
        };
        iptables(&["-N", STEER_CHAIN]);
        iptables(&["-I", "OUTPUT", "-j", STEER_CHAIN]);
        Steer::Kube {
            cluster_ip: spec.cluster_ip.expect("a ClusterIP"),
            port,
        }
    }

    /// From now on the Service's new connections reach `target`, none `other`.
    fn to(&mut self, target: &str, other: &str) {
        match self {
            Steer::Proxy { proxy, ns, service } => {
                proxy.steer(ns, service, Some(target.parse().expect("pod IP")));
            }
            Steer::Kube { port, .. } => {
                let port = port.to_string();
                iptables(&["-F", STEER_CHAIN]);
                let dial = [
                    "-p", "tcp", "-d", target, "--dport", &port, "--syn", "-j", "RETURN",
                ];
                iptables(&[&["-A", STEER_CHAIN][..], &dial[..]].concat());
                let refuse = ["-p", "tcp", "-d", other, "--dport", &port];
                let reset = ["-j", "REJECT", "--reject-with", "tcp-reset"];
                iptables(&[&["-A", STEER_CHAIN][..], &refuse[..], &reset[..]].concat());
            }
        }
    }

    /// Ends the open connections through the Service, so the host dials again.
    fn reset(&self) {
        match self {
            Steer::Proxy { proxy, ns, service } => proxy.reset(ns, service),
            Steer::Kube { cluster_ip, port } => {
                let port = format!(":{port}");
                let killed = std::process::Command::new("ss")
                    .args(["-K", "dst", cluster_ip, "dport", "=", &port])
                    .output()
                    .expect("ss");
                assert!(killed.status.success(), "ss -K: {killed:?}");
            }
        }
    }

    /// A count that grows with each dial of the steered-to pod (the proxy counts every
    /// connection through the Service).
    fn dials(&self) -> u64 {
        match self {
            Steer::Proxy { proxy, ns, service } => proxy.connections(ns, service),
            Steer::Kube { .. } => {
                let out = std::process::Command::new("iptables")
                    .args(["-L", STEER_CHAIN, "-v", "-x", "-n"])
                    .output()
                    .expect("iptables");
                let text = String::from_utf8_lossy(&out.stdout);
                // Two header lines, then the RETURN rule: `pkts bytes target …`.
                text.lines()
                    .nth(2)
                    .and_then(|l| l.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0)
            }
        }
    }

    fn clear(&mut self) {
        match self {
            Steer::Proxy { proxy, ns, service } => proxy.steer(ns, service, None),
            Steer::Kube { .. } => {
                iptables(&["-D", "OUTPUT", "-j", STEER_CHAIN]);
                iptables(&["-F", STEER_CHAIN]);
                iptables(&["-X", STEER_CHAIN]);
            }
        }
    }
}

fn iptables(args: &[&str]) {
    let out = std::process::Command::new("iptables")
        .args(args)
        .output()
        .expect("iptables");
    assert!(out.status.success(), "iptables {args:?}: {out:?}");
}

/// The test plugin's objects, run through `env -u PLUGIN_CLIENT_CERT`: the plugin never
/// sees the host's certificate, so it serves plaintext and announces no certificate.
fn plaintext_plugin(kube: &kube::Client, ns: &str, name: &str) -> KubernetesConfig {
    let (mut deployment, service) = PluginWorkload::new(PLUGIN_IMAGE).build(name);
    let container = deployment
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|p| p.containers.first_mut())
        .expect("the plugin container");
    container.command = Some(vec![
        "/usr/bin/env".into(),
        "-u".into(),
        "PLUGIN_CLIENT_CERT".into(),
        intercom_tests::kubernetes::test_plugin_path().into(),
    ]);
    KubernetesConfig::new(kube.clone(), ns)
        .objects(deployment, service)
        .connect(ConnectMode::PortForward)
}

/// 13.2 on Kubernetes: with AutoMTLS on (the default), a pod whose plugin announces no
/// certificate fails the start at once with `AutoMtlsUnsupported`, and nothing is left;
/// with AutoMTLS off the same pod is used in plaintext.
#[tokio::test]
async fn e2e_automtls_refuses_a_pod_without_a_certificate() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-no-cert").await;
        let client = plugin_client(plaintext_plugin(&kube, &ns, "plain"));
        let started = Instant::now();
        let err = client
            .start()
            .await
            .expect_err("plaintext must not be chosen silently");
        match &err {
            ClientError::Kubernetes(KubeError::AutoMtlsUnsupported { pod }) => {
                assert!(pod.starts_with("plain-"), "{pod}");
            }
            other => panic!("unexpected: {other:?}"),
        }
        assert!(err.to_string().contains("auto_mtls(false)"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "refused only after {:?}",
            started.elapsed()
        );
        assert_nothing_left(&kube, &ns).await;
        // AutoMTLS off: the same plugin, in plaintext.
        let client = Client::new(
            ClientConfig::new(
                HANDSHAKE,
                host_plugins(),
                plaintext_plugin(&kube, &ns, "plain"),
            )
            .auto_mtls(false)
            .start_timeout(Duration::from_secs(90)),
        );
        let mut kv = kv_client(&client).await;
        let [(_, ip)]: [(String, String); 1] = plugin_pods(&kube, &ns, "plain")
            .await
            .try_into()
            .expect("one plugin pod");
        assert_eq!(whoami(&mut kv).await.unwrap(), ip);
        client.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

/// The start fails with `ChecksumsDoNotMatch` for `image`'s digest against the pod's.
fn assert_checksum_error(result: Result<(), ClientError>, image: &str) {
    match result {
        Err(ClientError::Kubernetes(KubeError::ChecksumsDoNotMatch {
            image: wanted,
            expected,
            actual,
            ..
        })) => {
            assert_eq!(wanted, image);
            assert!(image.ends_with(&expected), "{expected}");
            assert_eq!(Some(actual.as_str()), pinned_image().split('@').nth(1));
        }
        other => panic!("unexpected: {other:?}"),
    }
}

/// A start pinned to a digest no image has is refused: by intercom's own check on the
/// process kubelet (which runs any reference it maps, reporting the executable's digest as
/// the imageID), by the runtime on a real node (containerd resolves the digest and fails
/// the pull: no pod ever runs another digest).
fn assert_wrong_digest_refused(result: Result<(), ClientError>, image: &str) {
    if !intercom_tests::kubernetes::on_real_node() {
        return assert_checksum_error(result, image);
    }
    match result {
        Err(ClientError::Kubernetes(KubeError::PodFailed {
            reason, message, ..
        })) => {
            assert!(
                reason == "ErrImagePull" || reason == "ImagePullBackOff",
                "{reason}: {message}"
            );
            let digest = image.split('@').nth(1).expect("a digest reference");
            assert!(message.contains(digest), "{message}");
        }
        other => panic!("unexpected: {other:?}"),
    }
}

/// 13.8: with `require_image_digest`, an image pinned to a digest that is not the pod's
/// fails the start (see [`assert_wrong_digest_refused`]) and leaves nothing behind; pinned
/// to the right digest, the plugin works. (Unpinned: `e2e_kubernetes::config::e2e_image_digest_pinning`.)
#[tokio::test]
async fn e2e_a_wrong_digest_fails_and_the_right_one_works() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-digests").await;
        let pinned = |image: &str| {
            plugin_client(
                config(
                    &kube,
                    &ns,
                    "digest",
                    PluginWorkload::new(image),
                    ConnectMode::PortForward,
                )
                .require_image_digest(true),
            )
        };
        let client = pinned(WRONG_DIGEST_IMAGE);
        assert_wrong_digest_refused(client.start().await, WRONG_DIGEST_IMAGE);
        assert_nothing_left(&kube, &ns).await;
        let client = pinned(&pinned_image());
        let mut kv = kv_client(&client).await;
        whoami(&mut kv).await.unwrap();
        client.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

/// 13.8: reattaching with `require_image_digest` checks too: an unpinned Deployment is
/// refused with `ImageNotPinned`, one whose pods do not run the pinned digest with the
/// checksum error (and neither refusal deletes the Deployment); the right digest works.
/// On a real node no pod can run a digest other than its pin (the runtime refuses the
/// pull), so the checksum case exists only on the process kubelet; the others run on both.
#[tokio::test]
async fn e2e_reattach_checks_the_image_digest() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-reattach-digest").await;
        let deployments: Api<Deployment> = Api::namespaced(kube.clone(), &ns);
        let reattach = |name: &str| {
            plugin_client(
                KubernetesConfig::new(kube.clone(), &ns)
                    .reattach(name)
                    .connect(ConnectMode::PortForward)
                    .require_image_digest(true),
            )
        };
        // Launched by hosts that do not require digests.
        let mut first = Vec::new();
        let mut launched = vec![
            ("unpinned", PLUGIN_IMAGE.to_string()),
            ("right", pinned_image()),
        ];
        let real_node = intercom_tests::kubernetes::on_real_node();
        if !real_node {
            launched.push(("wrong", WRONG_DIGEST_IMAGE.to_string()));
        }
        for (name, image) in launched {
            let client = plugin_client(
                config(
                    &kube,
                    &ns,
                    name,
                    PluginWorkload::new(image),
                    ConnectMode::PortForward,
                )
                .reattachable(true),
            );
            client.start().await.unwrap();
            first.push(client);
        }
        match reattach("unpinned").start().await {
            Err(ClientError::Kubernetes(KubeError::ImageNotPinned { image })) => {
                assert_eq!(image, PLUGIN_IMAGE);
            }
            other => panic!("unexpected: {other:?}"),
        }
        let mut refused = vec!["unpinned"];
        if !real_node {
            assert_checksum_error(reattach("wrong").start().await, WRONG_DIGEST_IMAGE);
            refused.push("wrong");
        }
        for name in refused {
            assert!(
                deployments.get_opt(name).await.unwrap().is_some(),
                "a refused reattach must not delete {name}"
            );
        }
        let second = reattach("right");
        let mut kv = kv_client(&second).await;
        whoami(&mut kv).await.unwrap();
        second.kill().await;
        for client in first {
            client.kill().await;
        }
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

/// 13.8: `network_policy(true)` creates a NetworkPolicy selecting exactly the plugin's
/// pods, admitting ingress only to the plugin port and only from host pods, owned by the
/// Deployment (gone with it).
#[tokio::test]
async fn e2e_the_network_policy_selects_the_plugin_pods_and_port() {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-netpol").await;
        let client = plugin_client(
            config(
                &kube,
                &ns,
                "fenced",
                PluginWorkload::new(PLUGIN_IMAGE),
                ConnectMode::PortForward,
            )
            .network_policy(true),
        );
        client.start().await.unwrap();
        let policies: Api<NetworkPolicy> = Api::namespaced(kube.clone(), &ns);
        let policy = policies.get("fenced").await.expect("the NetworkPolicy");
        let spec = policy.spec.expect("spec");
        let selector = spec
            .pod_selector
            .and_then(|s| s.match_labels)
            .unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(kube.clone(), &ns);
        let [(pod, _)]: [(String, String); 1] = plugin_pods(&kube, &ns, "fenced")
            .await
            .try_into()
            .expect("one plugin pod");
        let labels = pods
            .get(&pod)
            .await
            .unwrap()
            .metadata
            .labels
            .unwrap_or_default();
        assert!(
            selector.contains_key("intercom.dev/instance"),
            "{selector:?}"
        );
        assert!(
            selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "{selector:?} does not select the plugin pod {labels:?}"
        );
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
        let [rule]: [_; 1] = spec.ingress.expect("ingress").try_into().expect("one rule");
        let ports: Vec<(Option<String>, Option<String>)> = rule
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.port.map(|p| format!("{p:?}")), p.protocol))
            .collect();
        assert_eq!(ports, vec![(Some("Int(50077)".into()), Some("TCP".into()))]);
        let from: Vec<_> = rule
            .from
            .unwrap_or_default()
            .into_iter()
            .map(|peer| peer.pod_selector.and_then(|s| s.match_labels))
            .collect();
        let only_hosts = [("intercom.dev/host".to_string(), "none".to_string())].into();
        assert_eq!(
            from,
            vec![Some(only_hosts)],
            "no INTERCOM_HOST_POD_LABELS: no pod admitted"
        );
        client.kill().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while policies.get_opt("fenced").await.unwrap().is_some() {
            assert!(
                Instant::now() < deadline,
                "the NetworkPolicy outlived its Deployment"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

/// 13.5: the host's private key goes into a Secret only for a plugin launched
/// `reattachable`; reattaching to one that was not is a typed error saying so.
#[tokio::test]
async fn e2e_the_host_key_is_kept_only_for_reattachable_plugins() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-host-key").await;
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(kube.clone(), &ns);
        let launch = |name: &str, reattachable: bool| {
            plugin_client(
                config(
                    &kube,
                    &ns,
                    name,
                    PluginWorkload::new(PLUGIN_IMAGE),
                    ConnectMode::PortForward,
                )
                .reattachable(reattachable),
            )
        };
        let private = launch("private", false);
        private.start().await.unwrap();
        let shared = launch("shared", true);
        shared.start().await.unwrap();
        let names: Vec<String> = secrets
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect();
        assert!(
            names.contains(&"shared-intercom-host".to_string()),
            "a reattachable plugin's host identity is kept: {names:?}"
        );
        assert!(
            !names.iter().any(|n| n.starts_with("private")),
            "no Secret for a plugin that is not reattachable: {names:?}"
        );
        let reattach = plugin_client(
            KubernetesConfig::new(kube.clone(), &ns)
                .reattach("private")
                .connect(ConnectMode::PortForward),
        );
        match reattach.start().await {
            Err(ClientError::Kubernetes(KubeError::NotReattachable { deployment })) => {
                assert_eq!(deployment, "private");
            }
            other => panic!("expected NotReattachable, got {other:?}"),
        }
        private.kill().await;
        shared.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

/// 13.4: in a namespace enforcing Pod Security "restricted", a `PluginWorkload` runs as
/// built; a user Deployment that violates the policy fails the start at once with the
/// admission message (not as a start timeout).
#[tokio::test]
async fn e2e_a_restricted_namespace_runs_built_pods_and_rejects_a_violating_deployment() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Patch, PatchParams};
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-restricted").await;
        let enforce = serde_json::json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }}});
        Api::<Namespace>::all(kube.clone())
            .patch(&ns, &PatchParams::default(), &Patch::Merge(&enforce))
            .await
            .unwrap();

        let built = plugin_client(config(
            &kube,
            &ns,
            "built",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::Endpoints,
        ));
        let mut kv = kv_client(&built).await;
        whoami(&mut kv).await.expect("a restricted pod answers");

        // The same objects with the security contexts taken out: the pods are rejected.
        let (mut deployment, service) = PluginWorkload::new(PLUGIN_IMAGE).build("loose");
        if let Some(spec) = deployment
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
        {
            spec.security_context = None;
            for c in &mut spec.containers {
                c.security_context = None;
            }
        }
        let loose = plugin_client(
            KubernetesConfig::new(kube.clone(), &ns)
                .objects(deployment, service)
                .connect(ConnectMode::Endpoints),
        );
        match loose.start().await {
            Err(ClientError::Kubernetes(KubeError::PodsRejected {
                deployment,
                message,
                ..
            })) => {
                assert_eq!(deployment, "loose");
                assert!(message.contains("PodSecurity"), "{message}");
            }
            other => panic!("expected PodsRejected, got {other:?}"),
        }
        loose.kill().await;
        built.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}
