//! A host written with `#[intercom::plugin]` drives go-plugin's Go counter plugin (the
//! `examples/bidirectional` interface), passing an `Arc<dyn AddHelper>` callback that the
//! Go plugin dials through the broker: classic and multiplexed broker, AutoMTLS off and on.
//! The traits only set `package = "proto"`; everything else on the wire is the macro's
//! default naming and numbering.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, Multiplex, PluginSet, Status};
use intercom_tests::go_fixture;

/// go-plugin's `proto.AddHelper`.
#[intercom::plugin(package = "proto")]
pub trait AddHelper: Send + Sync + 'static {
    async fn sum(&self, a: i64, b: i64) -> Result<i64, Status>;
}

/// go-plugin's `proto.Counter`.
#[intercom::plugin(
    package = "proto",
    handshake(version = 1, cookie_key = "BASIC_PLUGIN", cookie_value = "hello")
)]
pub trait Counter: Send + Sync + 'static {
    async fn put(
        &self,
        add_server: Arc<dyn AddHelper>,
        key: String,
        value: i64,
    ) -> Result<(), Status>;
    async fn get(&self, key: String) -> Result<i64, Status>;
}

/// Adds, counting its calls.
#[derive(Default)]
struct Adder(AtomicU32);

#[intercom::async_trait]
impl AddHelper for Adder {
    async fn sum(&self, a: i64, b: i64) -> Result<i64, Status> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(a + b)
    }
}

#[tokio::test]
async fn macro_host_serves_callbacks_to_the_go_counter_plugin() {
    for (mux, mtls) in [(false, false), (false, true), (true, false), (true, true)] {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::new(
            ClientConfig::new(
                CounterPlugin::HANDSHAKE,
                PluginSet::new().with("counter", CounterPlugin::client()),
                ProcessLauncher::new(go_fixture("counter-plugin")).current_dir(dir.path()),
            )
            .multiplex(if mux {
                Multiplex::Required
            } else {
                Multiplex::Off
            })
            .auto_mtls(mtls),
        );
        let run = async {
            let counter: CounterClient = client.connect().await?.dispense("counter")?;
            let adder = Arc::new(Adder::default());
            for value in [5, 7] {
                counter.put(adder.clone(), "x".into(), value).await?;
            }
            let total = counter.get("x".into()).await?;
            Ok::<_, Box<dyn std::error::Error>>((total, adder.0.load(Ordering::SeqCst)))
        };
        let result = tokio::time::timeout(Duration::from_secs(30), run).await;
        client.kill().await;
        let (total, calls) = result
            .expect("finished in time")
            .unwrap_or_else(|e| panic!("mux={mux} mtls={mtls}: {e}"));
        assert_eq!(total, 12, "mux={mux} mtls={mtls}");
        assert_eq!(
            calls, 2,
            "the Go plugin called the Rust AddHelper once per put"
        );
    }
}
