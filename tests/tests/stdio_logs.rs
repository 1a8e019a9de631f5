//! What the plugin writes reaches the host: fd 1/2 through GRPCStdio into `sync_stdout` /
//! `sync_stderr`, and its hclog JSON log lines into the host's `tracing` with the plugin's
//! name and level, each in order; start, connect and kill run in spans named after the
//! plugin.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use intercom::runtime::ProcessLauncher;
use intercom::tonic::transport::Channel;
use intercom::{Client, ClientConfig};
use intercom_tests::{HANDSHAKE, host_plugins, kv};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

#[derive(Debug, Clone)]
struct Event {
    level: tracing::Level,
    target: String,
    plugin: String,
    message: String,
    /// For a span: its parent span's name (events have none recorded).
    parent: Option<String>,
}

#[derive(Default)]
struct Fields {
    plugin: String,
    message: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "plugin" => self.plugin = value.to_string(),
            "message" => self.message = value.to_string(),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "plugin" => self.plugin = format!("{value:?}").trim_matches('"').to_string(),
            "message" => self.message = format!("{value:?}").trim_matches('"').to_string(),
            _ => {}
        }
    }
}

struct Recorder(Arc<Mutex<Vec<Event>>>);

impl<S> Layer<S> for Recorder
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent())
            .map(|parent| parent.name().to_string());
        if let Ok(mut v) = self.0.lock() {
            v.push(Event {
                level: *attrs.metadata().level(),
                target: "span".to_string(),
                plugin: f.plugin,
                message: attrs.metadata().name().to_string(),
                parent,
            });
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        if let Ok(mut v) = self.0.lock() {
            v.push(Event {
                level: *event.metadata().level(),
                target: event.metadata().target().to_string(),
                plugin: f.plugin,
                message: f.message,
                parent: None,
            });
        }
    }
}

fn events() -> Arc<Mutex<Vec<Event>>> {
    static EVENTS: OnceLock<Arc<Mutex<Vec<Event>>>> = OnceLock::new();
    EVENTS
        .get_or_init(|| {
            let events = Arc::new(Mutex::new(Vec::new()));
            let subscriber = tracing_subscriber::registry().with(Recorder(events.clone()));
            tracing::subscriber::set_global_default(subscriber)
                .expect("one subscriber per test binary");
            events
        })
        .clone()
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Sink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl tokio::io::AsyncWrite for Sink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn stdio_and_logs_arrive_in_order() {
    let events = events();
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr, raw) = (Sink::default(), Sink::default(), Sink::default());
    let client = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            host_plugins(),
            ProcessLauncher::new(env!("CARGO_BIN_EXE_test-plugin")).current_dir(dir.path()),
        )
        .name("stdio-test")
        .sync_stdout(stdout.clone())
        .sync_stderr(stderr.clone())
        .stderr(raw.clone()),
    );
    let mut kv: kv::kv_client::KvClient<Channel> =
        client.connect().await.unwrap().dispense("kv_grpc").unwrap();
    kv.put(kv::PutRequest {
        key: "stdio".into(),
        value: b"v".to_vec(),
    })
    .await
    .unwrap();

    eventually("synced stdout", || stdout.text().contains("out-3\n")).await;
    eventually("synced stderr", || stderr.text().contains("err-3\n")).await;
    assert_eq!(stdout.text(), "out-1\nout-2\nout-3\n");
    assert_eq!(stderr.text(), "err-1\nerr-2\nerr-3\n");

    let ours = || -> Vec<Event> {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.plugin == "stdio-test" && e.target == "intercom::plugin")
            .cloned()
            .collect()
    };
    eventually("plugin logs in the host's tracing", || {
        ours().iter().any(|e| e.message == "log-warn")
    })
    .await;
    let logs: Vec<(tracing::Level, String)> = ours()
        .into_iter()
        .filter(|e| e.message.starts_with("log-"))
        .map(|e| (e.level, e.message))
        .collect();
    assert_eq!(
        logs,
        vec![
            (tracing::Level::INFO, "log-1".to_string()),
            (tracing::Level::INFO, "log-2".to_string()),
            (tracing::Level::INFO, "log-3".to_string()),
            (tracing::Level::WARN, "log-warn".to_string()),
        ]
    );
    // The raw stderr copy holds the hclog JSON lines verbatim.
    assert!(
        raw.text()
            .lines()
            .any(|l| l.starts_with('{') && l.contains("\"@message\":\"log-warn\"")),
        "{}",
        raw.text()
    );
    // Nothing the plugin printed on fd 1/2 leaked into its log stream.
    assert!(!raw.text().contains("out-1") && !raw.text().contains("err-1"));
    client.kill().await;
}

#[tokio::test]
async fn start_connect_and_kill_run_in_spans_named_after_the_plugin() {
    let events = events();
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            host_plugins(),
            ProcessLauncher::new(env!("CARGO_BIN_EXE_test-plugin")).current_dir(dir.path()),
        )
        .name("span-test"),
    );
    let spans = || -> Vec<(String, Option<String>)> {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.target == "span" && e.plugin == "span-test")
            .map(|e| (e.message.clone(), e.parent.clone()))
            .collect()
    };
    client.start().await.unwrap();
    assert_eq!(
        spans(),
        [
            ("plugin_start".to_string(), None),
            (
                "plugin_connect".to_string(),
                Some("plugin_start".to_string())
            ),
        ]
    );
    // A started client hands out its connection without starting again.
    client.connect().await.unwrap();
    assert_eq!(spans().len(), 2);
    client.kill().await;
    assert_eq!(spans().last(), Some(&("plugin_kill".to_string(), None)));
}
