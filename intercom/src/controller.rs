//! `plugin.GRPCController` on the plugin side: the host's graceful shutdown request.
//!
//! go-plugin's plugin stops its server inside the handler, so its reply may never leave;
//! every host (go-plugin's and intercom's) treats a connection that ends instead of a
//! reply as a completed shutdown. intercom's plugin answers first and stops the moment
//! the server has taken the reply's last frame (its trailers) and dropped its body: no fixed delay, and the
//! reply still leaves in the common case.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::StreamExt;
use futures::future::BoxFuture;
use http_body_util::{BodyStream, StreamBody};
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;

use crate::proto::grpc_controller_server::{GrpcController, GrpcControllerServer};

/// The controller service for a plugin's main server: a Shutdown request cancels
/// `shutdown` once its reply has been handed to the connection.
pub(crate) fn service(shutdown: CancellationToken) -> StopAfterReply {
    let requested = Arc::new(AtomicBool::new(false));
    StopAfterReply {
        inner: GrpcControllerServer::new(Controller {
            requested: requested.clone(),
        }),
        requested,
        shutdown,
    }
}

/// Answers Shutdown and marks it requested; [`StopAfterReply`] does the stopping.
#[derive(Debug)]
struct Controller {
    requested: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(
        &self,
        _: tonic::Request<crate::proto::Empty>,
    ) -> Result<tonic::Response<crate::proto::Empty>, tonic::Status> {
        tracing::debug!("shutdown requested by the host");
        self.requested.store(true, Ordering::SeqCst);
        Ok(tonic::Response::new(crate::proto::Empty {}))
    }
}

/// The controller server, each response body carrying a [`StopOnDrop`]: if Shutdown was
/// requested, the server stops as soon as it is done with that body.
#[derive(Clone)]
pub(crate) struct StopAfterReply {
    inner: GrpcControllerServer<Controller>,
    requested: Arc<AtomicBool>,
    shutdown: CancellationToken,
}

impl NamedService for StopAfterReply {
    const NAME: &'static str = <GrpcControllerServer<Controller> as NamedService>::NAME;
}

impl tower::Service<http::Request<Body>> for StopAfterReply {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<http::Request<Body>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let call = self.inner.call(request);
        let requested = self.requested.clone();
        let shutdown = self.shutdown.clone();
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|body| {
                let guard = StopOnDrop {
                    requested,
                    shutdown,
                };
                // The server drops the body once it has taken the trailers.
                Body::new(StreamBody::new(BodyStream::new(body).map(move |frame| {
                    let _ = &guard;
                    frame
                })))
            }))
        })
    }
}

/// Stops the server when dropped, if Shutdown was requested by then.
struct StopOnDrop {
    requested: Arc<AtomicBool>,
    shutdown: CancellationToken,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if self.requested.load(Ordering::SeqCst) {
            self.shutdown.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hyper_util::rt::TokioIo;
    use tokio_util::sync::CancellationToken;

    use crate::proto::grpc_controller_client::GrpcControllerClient;

    /// A Shutdown request gets its reply, and the server's shutdown token fires after it
    /// (before, a fixed 20 ms sleep stood between the two).
    #[tokio::test]
    async fn shutdown_replies_then_stops_the_server() {
        let shutdown = CancellationToken::new();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tonic::transport::Server::builder()
            .add_service(super::service(shutdown.clone()))
            .serve_with_incoming(futures::stream::iter([Ok::<_, std::io::Error>(server_io)]));
        let server = tokio::spawn(server);
        let mut io = Some(client_io);
        let channel = tonic::transport::Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                let io = io
                    .take()
                    .ok_or(std::io::Error::from(std::io::ErrorKind::NotConnected));
                async move { io.map(TokioIo::new) }
            }))
            .await
            .expect("connects over the duplex");
        assert!(!shutdown.is_cancelled(), "stopped before any request");
        GrpcControllerClient::new(channel)
            .shutdown(crate::proto::Empty {})
            .await
            .expect("the Shutdown reply arrives");
        tokio::time::timeout(Duration::from_secs(5), shutdown.cancelled())
            .await
            .expect("the server is told to stop after its reply");
        server.abort();
    }
}
