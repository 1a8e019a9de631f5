//! Faults between the host and the apiserver: a create whose answer is lost, a start
//! cancelled half-way, an apiserver that stops answering during `kill`. Each ends with
//! the plugin's objects accounted for.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use intercom::runtime::kubernetes::{ConnectMode, PluginWorkload};
use intercom_tests::kubernetes::{
    PLUGIN_IMAGE, assert_nothing_left, cluster_config, config, kube_client, kv_client, namespace,
    plugin_client, timed,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, ListParams};
use kube::client::{Body, ClientBuilder, DynBody};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Response = http::Response<Box<DynBody>>;
type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

/// What the fault layer does to matching requests.
#[derive(Clone, Copy)]
enum Fault {
    /// The first `POST …/deployments` is sent, but its answer is replaced by an error
    /// (a timeout on the way back).
    LoseFirstDeploymentAnswer,
    /// Every `POST …/services` answer comes this late.
    DelayServiceCreates(Duration),
}

/// A kube client stack with `fault` injected above kube's own HTTP client.
struct Faulty<S> {
    inner: S,
    fault: Fault,
    fired: Arc<AtomicBool>,
}

impl<S> tower::Service<http::Request<Body>> for Faulty<S>
where
    S: tower::Service<http::Request<Body>, Response = Response, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> BoxFuture {
        let post = req.method() == http::Method::POST;
        let path = req.uri().path().to_owned();
        let answer = self.inner.call(req);
        match self.fault {
            Fault::LoseFirstDeploymentAnswer
                if post
                    && path.ends_with("/deployments")
                    && !self.fired.swap(true, Ordering::SeqCst) =>
            {
                Box::pin(async move {
                    let _created = answer.await;
                    Err::<Response, BoxError>("injected: the create's answer was lost".into())
                })
            }
            Fault::DelayServiceCreates(delay) if post && path.ends_with("/services") => {
                Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    answer.await
                })
            }
            _ => Box::pin(answer),
        }
    }
}

fn faulty_client(fault: Fault) -> kube::Client {
    let fired = Arc::new(AtomicBool::new(false));
    ClientBuilder::try_from(cluster_config())
        .expect("client builder")
        .with_layer(&tower::layer::layer_fn(move |inner| Faulty {
            inner,
            fault,
            fired: fired.clone(),
        }))
        .build()
}

async fn deployments_in(kube: &kube::Client, ns: &str) -> usize {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=intercom");
    Api::<Deployment>::namespaced(kube.clone(), ns)
        .list(&lp)
        .await
        .expect("list Deployments")
        .items
        .len()
}

/// Starts `client` in a task and aborts it `after` the moment `reached` first holds
/// (within 30 s); the start must still have been running.
async fn cancel_start_once<F, Fut>(client: intercom::Client, after: Duration, reached: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::spawn(async move { client.start().await.map_err(|e| e.to_string()) });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reached().await {
        assert!(Instant::now() < deadline, "the start never got that far");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(after).await;
    start.abort();
    assert!(
        start.await.is_err_and(|e| e.is_cancelled()),
        "the start was still running"
    );
}

#[tokio::test]
async fn e2e_a_create_whose_answer_was_lost_is_adopted() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-adopt").await;
        let faulty = faulty_client(Fault::LoseFirstDeploymentAnswer);
        let client = plugin_client(config(
            &faulty,
            &ns,
            "adopted",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::PortForward,
        ));
        // The retry gets 409 AlreadyExists for the Deployment the first attempt made: it
        // carries this start's instance label, so it is ours.
        let mut kv = kv_client(&client).await;
        kv.put(intercom_tests::kv::PutRequest {
            key: "k".into(),
            value: b"v".to_vec(),
        })
        .await
        .expect("a call to the adopted plugin");
        assert_eq!(deployments_in(&kube, &ns).await, 1);
        client.kill().await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn e2e_a_cancelled_start_leaves_no_deployment() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-cancel").await;
        let faulty = faulty_client(Fault::DelayServiceCreates(Duration::from_secs(3)));
        let client = plugin_client(config(
            &faulty,
            &ns,
            "cancelled",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::PortForward,
        ));
        // Cancel while the Service create is in flight: the Deployment exists by then.
        cancel_start_once(client, Duration::ZERO, || async {
            deployments_in(&kube, &ns).await > 0
        })
        .await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn e2e_a_start_cancelled_while_waiting_for_its_pod_leaves_nothing() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-cancel-wait").await;
        // Never prints a handshake: the start waits for a ready replica until cancelled.
        let silent = PluginWorkload::new(PLUGIN_IMAGE).env("INTERCOM_TEST_MODE", "silent");
        let client = plugin_client(config(
            &kube,
            &ns,
            "waiting",
            silent,
            ConnectMode::PortForward,
        ));
        let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(kube.clone(), &ns);
        // 1 s after the Service exists the watch task runs and holds the plugin.
        cancel_start_once(client, Duration::from_secs(1), || async {
            services.get_opt("waiting").await.unwrap().is_some()
        })
        .await;
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

/// A TCP proxy to the apiserver that can stop forwarding (an apiserver that is reachable
/// but answers nothing more).
struct FreezableProxy {
    address: std::net::SocketAddr,
    frozen: Arc<AtomicBool>,
}

impl FreezableProxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let gate = frozen.clone();
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let gate = gate.clone();
                tokio::spawn(async move {
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    tokio::join!(pipe(dr, uw, gate.clone()), pipe(ur, dw, gate));
                });
            }
        });
        Self { address, frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

/// Copies until EOF; once frozen, holds the bytes and the connection forever.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn e2e_kill_is_bounded_when_the_apiserver_stops_answering() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-frozen").await;
        let mut proxied = cluster_config();
        let upstream = proxied
            .cluster_url
            .authority()
            .expect("apiserver address")
            .to_string();
        let proxy = FreezableProxy::start(upstream).await;
        proxied.cluster_url = format!("https://{}", proxy.address).parse().unwrap();
        // No read timeout of the client's own: the SDK's bounds must hold by themselves.
        proxied.read_timeout = None;
        let via_proxy = intercom::runtime::kubernetes::low_latency_client(proxied).unwrap();
        let client = plugin_client(config(
            &via_proxy,
            &ns,
            "frozen",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::PortForward,
        ));
        kv_client(&client).await;
        proxy.freeze();
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(60), client.kill())
            .await
            .expect("kill returned although the apiserver answers nothing");
        eprintln!("kill returned after {:?}", started.elapsed());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "kill took {:?}",
            started.elapsed()
        );
        // The delete never reached the apiserver: the Deployment is still there.
        assert_eq!(deployments_in(&kube, &ns).await, 1);
        let api: Api<Deployment> = Api::namespaced(kube.clone(), &ns);
        api.delete("frozen", &DeleteParams::foreground())
            .await
            .unwrap();
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}
