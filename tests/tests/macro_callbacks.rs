//! Callbacks of `#[intercom::plugin]` traits: `Arc<dyn Trait>` arguments served over the
//! broker, nested both ways, and stopped when the call returns.

mod macro_common;

use std::sync::Arc;

use intercom::Status;
use intercom_tests::macro_api::{Echo as _, Leaf, Middle};

/// The host's middle callback: `2 * leaf(x)`, calling the plugin's leaf.
struct Doubler;

#[intercom::async_trait]
impl Middle for Doubler {
    async fn call(&self, leaf: Arc<dyn Leaf>, x: i64) -> Result<i64, Status> {
        Ok(2 * leaf.leaf(x).await?)
    }
}

struct Negate;

#[intercom::async_trait]
impl Leaf for Negate {
    async fn leaf(&self, x: i64) -> Result<i64, Status> {
        Ok(-x)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_nest_in_both_directions() {
    macro_common::with_plugin(|echo| async move {
        // host → plugin.nest(Doubler) → host Doubler.call(plugin PlusOne) → plugin PlusOne.
        for x in [0, 5, -7] {
            assert_eq!(
                echo.nest(Arc::new(Doubler), x).await.unwrap(),
                2 * (x + 1) + 1000
            );
        }
        // Concurrent nested calls each get their own broker ids.
        let calls = (0..20).map(|x| {
            let echo = echo.clone();
            async move { echo.nest(Arc::new(Doubler), x).await }
        });
        let results = futures::future::join_all(calls).await;
        for (x, result) in results.into_iter().enumerate() {
            assert_eq!(result.unwrap(), 2 * (x as i64 + 1) + 1000);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_callback_stops_working_when_its_call_returns() {
    macro_common::with_plugin(|echo| async move {
        echo.keep(Arc::new(Negate)).await.unwrap();
        // The host began shutting the callback server down when `keep` returned; once
        // that is through, the plugin's copy fails.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let status = loop {
            match echo.call_kept(3).await {
                Err(status) => break status,
                Ok(value) => {
                    assert_eq!(value, -3);
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the kept callback still works"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        };
        assert!(
            matches!(
                status.code(),
                intercom::tonic::Code::Unavailable
                    | intercom::tonic::Code::Unknown
                    | intercom::tonic::Code::Cancelled
            ),
            "a callback used after its call must fail, got {status:?}"
        );
        // The plugin is fine afterwards.
        assert_eq!(echo.nest(Arc::new(Doubler), 1).await.unwrap(), 1004);
    })
    .await;
}

#[tokio::test]
async fn callbacks_need_a_broker() {
    // A client built without a broker (e.g. over a plain channel) cannot pass callbacks.
    let channel =
        intercom::tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    let echo = intercom_tests::macro_api::EchoClient::new(channel);
    let status = echo.nest(Arc::new(Doubler), 1).await.unwrap_err();
    assert_eq!(
        status.code(),
        intercom::tonic::Code::FailedPrecondition,
        "{status:?}"
    );
}
