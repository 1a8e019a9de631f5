//! The runtime half of generated clients and servers: calls, handlers, panics and
//! callbacks. Generated code stays a thin, readable layer that moves arguments in and out
//! of messages; everything with logic lives here, where it is tested once.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{FutureExt as _, Stream, StreamExt as _};
use tokio::sync::oneshot;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

use tokio_util::sync::CancellationToken;

use crate::broker::GrpcBroker;
use crate::streaming::Streaming;

/// A boxed `Send` future, as tower services return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a generated server's `Service::call` returns.
pub type ResponseFuture = BoxFuture<Result<http::Response<Body>, Infallible>>;

/// Implemented by `#[intercom::plugin]` for `dyn Trait`: how a trait object is served
/// and dialled as a callback over the broker.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an `#[intercom::plugin]` trait object",
    label = "callback arguments must be `Arc<dyn Trait>` where `Trait` has `#[intercom::plugin]`",
    note = "add `#[intercom::plugin]` to the trait, or pass plain data instead of a trait object"
)]
pub trait PluginTrait: Send + Sync + 'static {
    /// The trait's full gRPC service name (`package.Service`).
    const SERVICE_NAME: &'static str;

    /// The generated server for `this`, as routes to serve on a broker id.
    fn routes(this: Arc<Self>, broker: GrpcBroker) -> Routes;

    /// The generated client over `channel`, as a trait object.
    fn client(channel: Channel, broker: GrpcBroker) -> Arc<Self>;

    /// Serves `this` on a fresh id of `broker` until the returned handle is dropped (the
    /// caller's side of a callback argument).
    ///
    /// # Errors
    /// `failed_precondition` without a broker, `unavailable` if the broker is closed.
    fn serve(broker: Option<&GrpcBroker>, this: Arc<Self>) -> Result<CallbackServer, Status> {
        serve_callback(broker, this)
    }

    /// Dials the callback the peer serves on broker id `id` (the callee's side).
    fn dial(broker: Option<GrpcBroker>, id: u32) -> BoxFuture<Result<Arc<Self>, Status>> {
        Box::pin(async move { dial_callback(broker.as_ref(), id).await })
    }
}

// ---------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------

/// The state of a generated client: the channel and, for callbacks, the broker.
#[derive(Clone, Debug)]
pub struct ClientCore {
    grpc: tonic::client::Grpc<Channel>,
    broker: Option<GrpcBroker>,
}

type Codec<Req, Resp> = ProstCodec<Req, Resp>;

impl ClientCore {
    /// A client over `channel`; callbacks need `broker`. Messages up to
    /// [`MAX_MESSAGE_SIZE`](crate::MAX_MESSAGE_SIZE) both ways, as go-plugin's host.
    pub fn new(channel: Channel, broker: Option<GrpcBroker>) -> Self {
        Self {
            grpc: tonic::client::Grpc::new(channel)
                .max_decoding_message_size(crate::MAX_MESSAGE_SIZE)
                .max_encoding_message_size(crate::MAX_MESSAGE_SIZE),
            broker,
        }
    }

    /// Connects to `dst` (a URI such as `http://127.0.0.1:50051`), with no broker.
    ///
    /// # Errors
    /// An invalid URI or a failed connection.
    pub async fn connect(dst: String) -> Result<Self, tonic::transport::Error> {
        let channel = tonic::transport::Endpoint::from_shared(dst)?
            .connect()
            .await?;
        Ok(Self::new(channel, None))
    }

    /// The broker, if the client came from a plugin connection.
    pub fn broker(&self) -> Option<&GrpcBroker> {
        self.broker.as_ref()
    }

    async fn ready(&self) -> Result<tonic::client::Grpc<Channel>, Status> {
        let mut grpc = self.grpc.clone();
        match grpc.ready().await {
            Ok(()) => Ok(grpc),
            Err(e) => {
                let status =
                    Status::unavailable(format!("the plugin connection is not ready: {e}"));
                Err(self.explain(status, true).await)
            }
        }
    }

    /// `responses` with each failure explained as in [`explain`](Self::explain): a stream
    /// cut short because the plugin died ends with "plugin `x` exited (…)".
    fn explain_stream<R: Send + 'static>(
        &self,
        responses: impl Stream<Item = Result<R, Status>> + Send + 'static,
    ) -> impl Stream<Item = Result<R, Status>> + Send + 'static {
        let core = self.clone();
        responses.then(move |item| {
            // Only a failure needs the core (a cheap clone); values pass straight on.
            let core = item.is_err().then(|| core.clone());
            async move {
                match (item, core) {
                    (Err(status), Some(core)) => Err(core.explain(status, false).await),
                    (item, _) => item,
                }
            }
        })
    }

    /// A failed call's status, saying "plugin `x` exited (…)" when the plugin process
    /// died (see [`ExitWatch::explain`](crate::plugin_exit::ExitWatch::explain)).
    async fn explain(&self, status: Status, connection_failed: bool) -> Status {
        match &self.broker {
            Some(broker) => broker.exit_watch().explain(status, connection_failed).await,
            None => status,
        }
    }

    /// A unary call.
    ///
    /// # Errors
    /// The status of the call.
    pub async fn unary<Req, Resp>(&self, path: &'static str, request: Req) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.ready().await?;
        let response = grpc
            .unary(
                tonic::Request::new(request),
                PathAndQuery::from_static(path),
                Codec::<Req, Resp>::default(),
            )
            .await;
        match response {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(self.explain(status, false).await),
        }
    }

    /// A server-streaming call; each response becomes a value through `value`.
    ///
    /// # Errors
    /// The status of the call (later failures arrive in the stream).
    pub async fn server_streaming<Req, Resp, T>(
        &self,
        path: &'static str,
        request: Req,
        value: fn(Resp) -> T,
    ) -> Result<Streaming<T>, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
        T: Send + 'static,
    {
        let mut grpc = self.ready().await?;
        let response = grpc
            .server_streaming(
                tonic::Request::new(request),
                PathAndQuery::from_static(path),
                Codec::<Req, Resp>::default(),
            )
            .await;
        match response {
            Ok(response) => {
                Ok(Streaming::new(self.explain_stream(response.into_inner())).map_values(value))
            }
            Err(status) => Err(self.explain(status, false).await),
        }
    }

    /// A client-streaming call. An `Err` item in `requests` aborts the call (the plugin
    /// sees it cancelled) and is returned.
    ///
    /// # Errors
    /// The status of the call, or the first `Err` of `requests`.
    pub async fn client_streaming<Req, Resp>(
        &self,
        path: &'static str,
        requests: Streaming<Req>,
    ) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.ready().await?;
        let (requests, failed) = until_error(requests);
        let call = grpc.client_streaming(
            tonic::Request::new(requests),
            PathAndQuery::from_static(path),
            Codec::<Req, Resp>::default(),
        );
        tokio::select! {
            biased;
            Ok(status) = failed => Err(status),
            response = call => match response {
                Ok(response) => Ok(response.into_inner()),
                Err(status) => Err(self.explain(status, false).await),
            },
        }
    }

    /// A bidirectional call. An `Err` item in `requests` ends the response stream with
    /// that status (and cancels the call).
    ///
    /// # Errors
    /// The status of the call (later failures arrive in the stream).
    pub async fn streaming<Req, Resp, T>(
        &self,
        path: &'static str,
        requests: Streaming<Req>,
        value: fn(Resp) -> T,
    ) -> Result<Streaming<T>, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
        T: Send + 'static,
    {
        let mut grpc = self.ready().await?;
        let (requests, mut failed) = until_error(requests);
        let call = grpc.streaming(
            tonic::Request::new(requests),
            PathAndQuery::from_static(path),
            Codec::<Req, Resp>::default(),
        );
        let responses = tokio::select! {
            biased;
            Ok(status) = &mut failed => return Err(status),
            response = call => match response {
                Ok(response) => Box::pin(self.explain_stream(response.into_inner())),
                Err(status) => return Err(self.explain(status, false).await),
            },
        };
        // Yield responses until they end or a request fails; dropping `responses` then
        // cancels the call.
        let merged = futures::stream::unfold(
            (Some(responses), failed.fuse()),
            |(responses, mut failed)| async move {
                let mut responses = responses?;
                tokio::select! {
                    biased;
                    Ok(status) = &mut failed => Some((Err(status), (None, failed))),
                    item = responses.next() => item.map(|item| (item, (Some(responses), failed))),
                }
            },
        );
        Ok(Streaming::new(merged).map_values(value))
    }
}

/// The requests up to the first error, which goes to the returned receiver. After an
/// error the stream never ends, so the peer does not mistake it for a complete input.
fn until_error<Req: Send + 'static>(
    requests: Streaming<Req>,
) -> (
    impl Stream<Item = Req> + Send + 'static,
    oneshot::Receiver<Status>,
) {
    let (tx, rx) = oneshot::channel();
    let stream =
        futures::stream::unfold((requests, Some(tx)), |(mut requests, mut tx)| async move {
            match requests.next().await {
                Some(Ok(request)) => Some((request, (requests, tx))),
                Some(Err(status)) => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(status);
                    }
                    std::future::pending().await
                }
                None => None,
            }
        });
    (stream, rx)
}

/// A callback served on a broker id. Dropping it shuts the server down gracefully: calls
/// in flight finish, the peer's connection is closed (HTTP/2 `GOAWAY`), and the id stops
/// accepting, so a peer that kept the callback gets `unavailable` from then on.
#[derive(Debug)]
#[must_use = "the callback stops being served when this handle is dropped"]
pub struct CallbackServer {
    id: u32,
    stop: CancellationToken,
}

impl CallbackServer {
    /// The broker id to send to the peer.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl Drop for CallbackServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves `callback` on a fresh id of `broker` until the returned handle is dropped.
///
/// # Errors
/// `failed_precondition` without a broker, `unavailable` if the broker is closed.
pub fn serve_callback<P: PluginTrait + ?Sized>(
    broker: Option<&GrpcBroker>,
    callback: Arc<P>,
) -> Result<CallbackServer, Status> {
    let broker = broker.ok_or_else(|| no_broker(P::SERVICE_NAME))?;
    let id = broker.next_id();
    let listener = broker.accept(id).map_err(|e| {
        Status::unavailable(format!(
            "failed to serve a `{}` callback on broker id {id}: {e}",
            P::SERVICE_NAME
        ))
    })?;
    let routes = P::routes(callback, broker.clone());
    let stop = CancellationToken::new();
    let shutdown = stop.clone().cancelled_owned();
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(listener, shutdown)
            .await;
        if let Err(error) = served {
            tracing::debug!(
                error = &error as &dyn std::error::Error,
                id,
                service = P::SERVICE_NAME,
                "a callback server failed"
            );
        }
    });
    Ok(CallbackServer { id, stop })
}

/// Dials the callback the peer serves on broker id `id`.
///
/// # Errors
/// `invalid_argument` for id 0 (no callback sent), `failed_precondition` without a broker,
/// `unavailable` if dialling fails.
pub async fn dial_callback<P: PluginTrait + ?Sized>(
    broker: Option<&GrpcBroker>,
    id: u32,
) -> Result<Arc<P>, Status> {
    let broker = broker.ok_or_else(|| no_broker(P::SERVICE_NAME))?;
    if id == 0 {
        return Err(Status::invalid_argument(format!(
            "no `{}` callback was sent (broker id 0)",
            P::SERVICE_NAME
        )));
    }
    let channel = broker.dial(id).await.map_err(|e| {
        Status::unavailable(format!(
            "failed to dial the `{}` callback on broker id {id}: {e}",
            P::SERVICE_NAME
        ))
    })?;
    Ok(P::client(channel, broker.clone()))
}

#[cold]
fn no_broker(service: &str) -> Status {
    Status::failed_precondition(format!(
        "cannot pass a `{service}` callback: this side has no broker (use a client or server \
         built by the plugin's GrpcPlugin, or call `with_broker`)"
    ))
}

// ---------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------

/// A tower service that runs a handler once (tonic calls each per-request service once).
struct Handler<F>(Option<F>);

impl<F, Req, Fut, Resp> tower::Service<tonic::Request<Req>> for Handler<F>
where
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>> + Send + 'static,
    Resp: Send + 'static,
{
    type Response = tonic::Response<Resp>;
    type Error = Status;
    type Future = BoxFuture<Result<tonic::Response<Resp>, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        match self.0.take() {
            Some(handler) => Box::pin(handler(request)),
            None => Box::pin(std::future::ready(Err(Status::internal(
                "intercom: a request handler was called twice",
            )))),
        }
    }
}

/// Serves one unary request with `handler`; a panic becomes `internal`.
pub fn unary<Req, Resp, F, Fut>(
    request: http::Request<Body>,
    method: &'static str,
    handler: F,
) -> ResponseFuture
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(Req) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    Box::pin(async move {
        let mut grpc = tonic::server::Grpc::new(Codec::<Resp, Req>::default());
        let service = Handler(Some(move |request: tonic::Request<Req>| {
            catch_panic(method, handler(request.into_inner())).map(|r| r.map(tonic::Response::new))
        }));
        Ok(grpc.unary(service, request).await)
    })
}

/// Serves one server-streaming request; panics, in the handler or while producing
/// values, become `internal`.
pub fn server_streaming<Req, Resp, F, Fut>(
    request: http::Request<Body>,
    method: &'static str,
    handler: F,
) -> ResponseFuture
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(Req) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Streaming<Resp>, Status>> + Send + 'static,
{
    Box::pin(async move {
        let mut grpc = tonic::server::Grpc::new(Codec::<Resp, Req>::default());
        let service = Handler(Some(move |request: tonic::Request<Req>| {
            let response = catch_panic(method, handler(request.into_inner()));
            respond_stream(method, response)
        }));
        Ok(grpc.server_streaming(service, request).await)
    })
}

/// Serves one client-streaming request.
pub fn client_streaming<Req, Resp, F, Fut>(
    request: http::Request<Body>,
    method: &'static str,
    handler: F,
) -> ResponseFuture
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(Streaming<Req>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    Box::pin(async move {
        let mut grpc = tonic::server::Grpc::new(Codec::<Resp, Req>::default());
        let service = Handler(Some(
            move |request: tonic::Request<tonic::Streaming<Req>>| {
                let requests = Streaming::new(request.into_inner());
                catch_panic(method, handler(requests)).map(|r| r.map(tonic::Response::new))
            },
        ));
        Ok(grpc.client_streaming(service, request).await)
    })
}

/// Serves one bidirectional request.
pub fn streaming<Req, Resp, F, Fut>(
    request: http::Request<Body>,
    method: &'static str,
    handler: F,
) -> ResponseFuture
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(Streaming<Req>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Streaming<Resp>, Status>> + Send + 'static,
{
    Box::pin(async move {
        let mut grpc = tonic::server::Grpc::new(Codec::<Resp, Req>::default());
        let service = Handler(Some(
            move |request: tonic::Request<tonic::Streaming<Req>>| {
                let requests = Streaming::new(request.into_inner());
                respond_stream(method, catch_panic(method, handler(requests)))
            },
        ));
        Ok(grpc.streaming(service, request).await)
    })
}

/// A response stream from the handler's result, guarded against panics.
async fn respond_stream<Resp>(
    method: &'static str,
    response: impl Future<Output = Result<Streaming<Resp>, Status>>,
) -> Result<tonic::Response<CatchPanic<Resp>>, Status> {
    let stream = response.await?;
    Ok(tonic::Response::new(CatchPanic::new(method, stream)))
}

/// The response to a path no method has: gRPC `UNIMPLEMENTED`, as tonic's servers send.
pub fn unimplemented(path: &str) -> ResponseFuture {
    let status = Status::unimplemented(format!("unknown method {path}"));
    Box::pin(std::future::ready(Ok(status.into_http())))
}

/// Awaits `future`, turning a panic into `internal`.
async fn catch_panic<T>(
    method: &'static str,
    future: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => Err(panicked(method, &*payload)),
    }
}

#[cold]
fn panicked(method: &str, payload: &(dyn Any + Send)) -> Status {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)");
    tracing::error!(method, panic = message, "a plugin method panicked");
    Status::internal(format!(
        "the implementation of `{method}` panicked: {message}"
    ))
}

/// A response stream whose panics end it with `internal`.
struct CatchPanic<T> {
    method: &'static str,
    inner: Option<Streaming<T>>,
}

impl<T> CatchPanic<T> {
    fn new(method: &'static str, inner: Streaming<T>) -> Self {
        Self {
            method,
            inner: Some(inner),
        }
    }
}

impl<T> Stream for CatchPanic<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let method = self.method;
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll_next_unpin(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                self.inner = None;
                Poll::Ready(Some(Err(panicked(method, &*payload))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn panics_become_internal() {
        let status = catch_panic::<()>("Boom", async { panic!("kaboom") })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(
            status.message().contains("`Boom` panicked: kaboom"),
            "{status:?}"
        );
    }

    #[tokio::test]
    async fn stream_panics_end_the_stream() {
        let stream = Streaming::from_stream(futures::stream::iter(0..3).map(|n| {
            assert!(n < 1, "too far");
            n
        }));
        let items: Vec<_> = CatchPanic::new("Count", stream).collect().await;
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].as_ref().ok(), Some(&0));
        assert_eq!(items[1].as_ref().unwrap_err().code(), tonic::Code::Internal);
    }

    #[tokio::test]
    async fn requests_stop_at_the_first_error() {
        let requests = Streaming::new(futures::stream::iter([
            Ok(1),
            Err(Status::aborted("stop")),
            Ok(2),
        ]));
        let (stream, failed) = until_error(requests);
        let mut stream = Box::pin(stream);
        assert_eq!(stream.next().await, Some(1));
        let next = tokio::time::timeout(std::time::Duration::from_millis(50), stream.next()).await;
        assert!(next.is_err(), "the stream must not end after an error");
        assert_eq!(failed.await.unwrap().code(), tonic::Code::Aborted);
    }
}
