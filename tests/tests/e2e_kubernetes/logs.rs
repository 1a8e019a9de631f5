//! The plugin's log lines reach the host as `tracing` events with the plugin and pod
//! names, plain text before the handshake included.

use std::time::{Duration, Instant};

use intercom::runtime::kubernetes::{ConnectMode, PluginWorkload};
use intercom_tests::kubernetes::{
    PLUGIN_IMAGE, assert_nothing_left, config, kube_client, kv_client, namespace, plugin_client,
    plugin_pods, timed,
};
use intercom_tests::kv;

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
            if event.metadata().target() != intercom::PLUGIN_LOG_TARGET {
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
