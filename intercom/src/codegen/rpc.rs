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
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

type Codec<Req, Resp> = ProstCodec<Req, Resp>;

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
}
