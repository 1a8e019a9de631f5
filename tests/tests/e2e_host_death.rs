//! A host that dies without `kill` leaves no plugin behind: its Lease stops being renewed
//! and a live host in the namespace deletes the plugin's Deployment.

use std::process::Stdio;
use std::time::{Duration, Instant};

use intercom::runtime::kubernetes::{ConnectMode, PluginWorkload};
use intercom_tests::kubernetes::{
    PLUGIN_IMAGE, assert_nothing_left, config, env, kube_client, kv_client, namespace,
    on_external_cluster, plugin_client, timed,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const LEASE: Duration = Duration::from_secs(4);

#[tokio::test]
async fn e2e_a_sigkilled_hosts_plugins_are_removed_by_a_live_host() {
    if on_external_cluster() {
        // The host child needs envtest's kubeconfig file.
        return;
    }
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-host-death").await;
        // A live host in the namespace: its Lease keeper also watches the others'.
        let survivor = plugin_client(
            config(
                &kube,
                &ns,
                "survivor",
                PluginWorkload::new(PLUGIN_IMAGE),
                ConnectMode::PortForward,
            )
            .host_lease(LEASE),
        );
        kv_client(&survivor).await;

        // Another host, in a process of its own, launches "orphan".
        let mut host = Command::new(env!("CARGO_BIN_EXE_test-host"))
            .env("INTERCOM_TEST_HOST_KUBECONFIG", env().kubeconfig())
            .env("INTERCOM_TEST_HOST_NAMESPACE", &ns)
            .env("INTERCOM_TEST_HOST_PLUGIN", "orphan")
            .env("INTERCOM_TEST_HOST_LEASE_SECS", LEASE.as_secs().to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start test-host");
        let mut out = BufReader::new(host.stdout.take().unwrap()).lines();
        let started = tokio::time::timeout(Duration::from_secs(90), out.next_line())
            .await
            .expect("test-host starts its plugin")
            .expect("read test-host's stdout");
        assert_eq!(started.as_deref(), Some("orphan"));
        let deployments: Api<Deployment> = Api::namespaced(kube.clone(), &ns);
        let leases: Api<Lease> = Api::namespaced(kube.clone(), &ns);
        assert!(
            leases.get_opt("orphan").await.unwrap().is_some(),
            "the host made a Lease"
        );

        // While its host lives and renews, the plugin stays (three lease durations).
        tokio::time::sleep(LEASE * 3).await;
        assert!(
            deployments.get_opt("orphan").await.unwrap().is_some(),
            "a live host's plugin was reaped"
        );

        host.start_kill().expect("SIGKILL the host");
        host.wait().await.expect("the host is gone");
        let killed = Instant::now();
        while deployments.get_opt("orphan").await.unwrap().is_some() {
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "the dead host's plugin Deployment is still there after {:?}",
                killed.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "dead host's Deployment deleted {:?} after SIGKILL",
            killed.elapsed()
        );
        // The survivor's own plugin is untouched and still answers.
        kv_client(&survivor).await;
        assert!(deployments.get_opt("survivor").await.unwrap().is_some());
        survivor.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}
