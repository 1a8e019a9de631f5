//! Several replicas share the calls; a pod replaced under a running host is reconnected,
//! for unary calls and mid-stream.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use intercom::runtime::kubernetes::{ConnectMode, PluginWorkload};
use intercom::{Client, ClientConfig};
use intercom_tests::kubernetes::{
    MACRO_IMAGE, PLUGIN_IMAGE, assert_nothing_left, config, kube_client, kv_client, namespace,
    plugin_client, plugin_pods, require_routed_pod_range, timed, whoami, whoami_eventually,
};
use intercom_tests::kv;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

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
async fn e2e_deleting_a_pod_mid_stream_fails_the_stream_and_the_next_call_succeeds() {
    use intercom_tests::macro_api::{Echo as _, EchoClient, EchoPlugin, PLUGIN_NAME};
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-stream").await;
        let client = Client::new(
            ClientConfig::new(
                EchoPlugin::HANDSHAKE,
                intercom::PluginSet::new().with(PLUGIN_NAME, EchoPlugin::client()),
                config(
                    &kube,
                    &ns,
                    "stream",
                    PluginWorkload::new(MACRO_IMAGE),
                    ConnectMode::PortForward,
                ),
            )
            .start_timeout(Duration::from_secs(90)),
        );
        let echo: EchoClient = client
            .connect()
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
