//! Calls through a generated client: concurrency, errors, panics.

mod macro_common;

use intercom::tonic::Code;
use intercom_tests::macro_api::{Echo as _, EchoError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls() {
    macro_common::with_plugin(|echo| async move {
        let calls = (0..1000u64).map(|n| {
            let echo = echo.clone();
            tokio::spawn(async move { (n, echo.slow_square(n, 20).await) })
        });
        let started = std::time::Instant::now();
        for call in futures::future::join_all(calls).await {
            let (n, result) = call.expect("the task ran");
            assert_eq!(result.expect("the call succeeded"), n * n);
        }
        // 1000 calls of 20 ms each ran concurrently, not one after the other (20 s).
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    })
    .await;
}

/// The plugin process ends in the middle of a call: the caller learns that it exited, with
/// which status and what it logged last, not a bare transport error.
#[tokio::test]
async fn a_plugin_that_exits_mid_call_says_it_exited() {
    let (client, echo) = macro_common::launch().await;
    let status = tokio::time::timeout(macro_common::DEADLINE, echo.exit(7))
        .await
        .expect("the call must not hang")
        .expect_err("the plugin cannot answer");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let shown = status.to_string();
    assert!(
        shown.contains("plugin `macro-plugin` exited (exit status 7)"),
        "{shown}"
    );
    assert!(
        shown.contains("the plugin gives up"),
        "its last log line: {shown}"
    );
    // Later calls say the same.
    let status = echo
        .slow_square(2, 0)
        .await
        .expect_err("the plugin is gone");
    assert!(
        status.message().contains("exited (exit status 7)"),
        "{status:?}"
    );
    client.kill().await;
}

#[tokio::test]
async fn a_panicking_implementation_returns_internal_and_the_plugin_lives_on() {
    macro_common::with_plugin(|echo| async move {
        let status = echo.panic("boom".into()).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        assert!(
            status.message().contains("`Panic` panicked: boom"),
            "{status:?}"
        );
        // Same connection, next call.
        assert_eq!(echo.slow_square(3, 0).await.unwrap(), 9);
        let status = echo.panic("again".into()).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(echo.slow_square(4, 0).await.unwrap(), 16);
    })
    .await;
}

#[tokio::test]
async fn custom_error_types_cross_both_ways() {
    macro_common::with_plugin(|echo| async move {
        assert_eq!(echo.fallible(false).await, Ok(7));
        // The plugin's `EchoError::Refused` became `permission_denied`, and the client's
        // `From<Status>` turned it back into an `EchoError`.
        assert_eq!(
            echo.fallible(true).await,
            Err(EchoError::Remote(
                Code::PermissionDenied,
                "asked to fail".into()
            ))
        );
    })
    .await;
}

#[tokio::test]
async fn clients_are_trait_objects() {
    macro_common::with_plugin(|echo| async move {
        let shared: std::sync::Arc<dyn intercom_tests::macro_api::Echo> = std::sync::Arc::new(echo);
        assert_eq!(shared.slow_square(5, 0).await.unwrap(), 25);
    })
    .await;
}

/// A plugin type the host never registers, for the "none of that type" case.
struct Unregistered;

impl intercom::GrpcPlugin for Unregistered {
    fn server(
        &self,
        _: &intercom::GrpcBroker,
        _: &mut intercom::tonic::service::RoutesBuilder,
    ) -> Result<(), intercom::BoxError> {
        Err("never served".into())
    }

    fn client(
        &self,
        _: &intercom::GrpcBroker,
        _: intercom::tonic::transport::Channel,
    ) -> Result<Box<dyn std::any::Any + Send + Sync>, intercom::BoxError> {
        Ok(Box::new(()))
    }
}

impl intercom::TypedPlugin for Unregistered {
    type Client = ();
}

/// `dispense_plugin::<EchoPlugin>()` finds the one `EchoPlugin` whatever its name and
/// returns a working `EchoClient`; a type with no entry, or with two, is a typed error.
#[tokio::test]
async fn a_client_is_dispensed_by_its_plugin_type() {
    use intercom::{Client, ClientConfig, ClientError, PluginSet, runtime::ProcessLauncher};
    use intercom_tests::macro_api::{EchoClient, EchoPlugin};

    let start = |plugins: PluginSet| {
        Client::new(ClientConfig::new(
            EchoPlugin::HANDSHAKE,
            plugins,
            ProcessLauncher::new(env!("CARGO_BIN_EXE_macro-plugin")),
        ))
    };
    let one = start(PluginSet::new().with("any-name", EchoPlugin::client()));
    let connection = one.connect().await.expect("the macro plugin starts");
    let echo: EchoClient = connection
        .dispense_plugin::<EchoPlugin>()
        .expect("one EchoPlugin");
    assert_eq!(echo.slow_square(6, 0).await.unwrap(), 36);
    match connection.dispense_plugin::<Unregistered>() {
        Err(ClientError::NoPluginOfType { plugin, available }) => {
            assert!(plugin.ends_with("Unregistered"), "{plugin}");
            assert_eq!(available, ["any-name"]);
        }
        other => panic!("expected NoPluginOfType, got {:?}", other.map(drop)),
    }
    one.kill().await;

    let two = start(
        PluginSet::new()
            .with("b", EchoPlugin::client())
            .with("a", EchoPlugin::client()),
    );
    let connection = two.connect().await.expect("the macro plugin starts");
    match connection.dispense_plugin::<EchoPlugin>() {
        Err(ClientError::AmbiguousPlugin { names, .. }) => assert_eq!(names, ["a", "b"]),
        other => panic!("expected AmbiguousPlugin, got {:?}", other.map(drop)),
    }
    let by_name: EchoClient = connection.dispense("a").expect("by name it is unambiguous");
    assert_eq!(by_name.slow_square(3, 0).await.unwrap(), 9);
    two.kill().await;
}

/// A tower service around the plugin's channel that counts the requests it forwards.
#[derive(Clone)]
struct Counting {
    inner: intercom::tonic::transport::Channel,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

type HttpRequest = intercom::tonic::codegen::http::Request<intercom::tonic::body::Body>;

impl intercom::tonic::codegen::Service<HttpRequest> for Counting {
    type Response = <intercom::tonic::transport::Channel as intercom::tonic::codegen::Service<
        HttpRequest,
    >>::Response;
    type Error = <intercom::tonic::transport::Channel as intercom::tonic::codegen::Service<
        HttpRequest,
    >>::Error;
    type Future = <intercom::tonic::transport::Channel as intercom::tonic::codegen::Service<
        HttpRequest,
    >>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.call(request)
    }
}

/// A generated client is generic over the tonic `GrpcService` it calls through, as
/// tonic's own clients: built over a tower service wrapping the plugin's channel, every
/// call goes through that service, as a struct and as `Arc<dyn Echo>`.
#[tokio::test]
async fn a_generated_client_calls_through_any_grpc_service() {
    use intercom_tests::macro_api::EchoClient;

    let (client, _) = macro_common::launch().await;
    let connection = client.connect().await.expect("connected");
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let service = Counting {
        inner: connection.channel(),
        calls: calls.clone(),
    };
    let echo: EchoClient<Counting> = EchoClient::with_broker(service, connection.broker().clone());
    assert_eq!(echo.slow_square(7, 0).await.unwrap(), 49);
    assert_eq!(echo.slow_square(8, 0).await.unwrap(), 64);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    let shared: std::sync::Arc<dyn intercom_tests::macro_api::Echo> = std::sync::Arc::new(echo);
    assert_eq!(shared.slow_square(3, 0).await.unwrap(), 9);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    client.kill().await;
}
