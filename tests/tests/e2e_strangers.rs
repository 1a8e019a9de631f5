//! A stranger that reaches a plugin pod's IP (any pod of the cluster can, by default)
//! never disturbs the host's session, end to end against intercom-envtest: the same
//! admission as the process runtime, on a plugin that listens on TCP.

use std::time::Duration;

use intercom::runtime::kubernetes::{ConnectMode, PluginWorkload};
use intercom_tests::kubernetes::{
    PLUGIN_IMAGE, assert_nothing_left, config, kube_client, kv_client, namespace, plugin_client,
    plugin_pods, require_routed_pod_range, timed, whoami,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::io::AsyncWriteExt;

/// Connects to `addr` over and over, sending `bytes` each time, until aborted.
fn stranger(addr: String, bytes: &'static [u8]) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await {
                let _ = s.write_all(bytes).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

#[tokio::test]
async fn e2e_strangers_at_the_pod_ip_never_disturb_the_host_session() {
    require_routed_pod_range();
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-strangers").await;
        let client = plugin_client(config(
            &kube,
            &ns,
            "guarded",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::Endpoints,
        ));
        let mut kv = kv_client(&client).await;
        let ip = whoami(&mut kv).await.unwrap();
        let pods = plugin_pods(&kube, &ns, "guarded").await;
        assert_eq!(pods.len(), 1);
        let addr = format!("{ip}:{}", intercom::DEFAULT_SERVER_PORT);
        // yamux's first byte (the one that used to replace the session), garbage, and a
        // TLS record header with nothing after it.
        let strangers = [
            stranger(addr.clone(), &[0x00]),
            stranger(addr.clone(), b"GET / HTTP/1.1\r\n\r\n"),
            stranger(addr.clone(), &[0x16, 0x03, 0x01, 0x00, 0x05]),
        ];
        let mut failed = 0;
        for _ in 0..200 {
            match whoami(&mut kv).await {
                Ok(answer) => assert_eq!(answer, ip),
                Err(_) => failed += 1,
            }
        }
        for s in &strangers {
            s.abort();
        }
        assert_eq!(failed, 0, "calls failed while strangers knocked");
        // The replica is neither abandoned nor replaced.
        assert_eq!(plugin_pods(&kube, &ns, "guarded").await, pods);
        let pod = Api::<Pod>::namespaced(kube.clone(), &ns)
            .get(&pods[0].0)
            .await
            .unwrap();
        let restarts: i32 = pod
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
            .iter()
            .map(|c| c.restart_count)
            .sum();
        assert_eq!(restarts, 0, "the plugin never restarted");
        assert_eq!(whoami(&mut kv).await.unwrap(), ip);
        client.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}
