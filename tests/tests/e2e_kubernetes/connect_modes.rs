//! Connect modes beyond the basic round trip (in [`super::lifecycle`]): `ServiceDns` goes
//! through the Service (with mTLS, steered to each replica, surviving a replica's
//! deletion), and a dropped `PortForward` is re-established to the same pod.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use intercom::runtime::kubernetes::{ConnectMode, PluginWorkload};
use intercom::tonic::transport::Channel;
use intercom_tests::kubernetes::{
    PLUGIN_IMAGE, assert_nothing_left, config, env, kube_client, kv_client, namespace,
    on_real_node, plugin_client, plugin_pods, require_routed_pod_range, timed, whoami,
    whoami_eventually,
};
use intercom_tests::{counter, kv};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

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
        let protocol = client.connect().await.unwrap();
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
