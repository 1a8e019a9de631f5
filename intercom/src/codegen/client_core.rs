//! The runtime half of a generated client: [`ClientCore`], generic over the tonic
//! [`GrpcService`] it calls through (a [`Channel`] by default, as tonic's own clients).
//! Every call is explained the same way when the plugin died ("plugin `x` exited (…)").

use futures::{FutureExt as _, Stream, StreamExt as _};
use tokio::sync::oneshot;
use tonic::Status;
use tonic::body::Body;
use tonic::client::GrpcService;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{Bytes, StdError};
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

use crate::broker::GrpcBroker;
use crate::streaming::Streaming;

/// What a generated client calls through: any tonic [`GrpcService`] that is cheap to
/// clone and can be shared across tasks — a [`Channel`], a `tower::balance`, a
/// channel wrapped in tower layers. Implemented for every such service.
pub trait GrpcTransport:
    GrpcService<
        Body,
        Error: Into<StdError> + Send,
        Future: Send,
        ResponseBody: tonic::codegen::Body<Data = Bytes, Error: Into<StdError> + Send>
                          + Send
                          + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> GrpcTransport for T where
    T: GrpcService<
            Body,
            Error: Into<StdError> + Send,
            Future: Send,
            ResponseBody: tonic::codegen::Body<Data = Bytes, Error: Into<StdError> + Send>
                              + Send
                              + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// The state of a generated client: the service it calls through and, for callbacks,
/// the broker.
#[derive(Clone, Debug)]
pub struct ClientCore<T = Channel> {
    grpc: tonic::client::Grpc<T>,
    broker: Option<GrpcBroker>,
}

type Codec<Req, Resp> = ProstCodec<Req, Resp>;

impl ClientCore<Channel> {
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
}

impl<T: GrpcTransport> ClientCore<T> {
    /// A client over `service`; callbacks need `broker`. Messages up to
    /// [`MAX_MESSAGE_SIZE`](crate::MAX_MESSAGE_SIZE) both ways, as go-plugin's host.
    pub fn new(service: T, broker: Option<GrpcBroker>) -> Self {
        Self {
            grpc: tonic::client::Grpc::new(service)
                .max_decoding_message_size(crate::MAX_MESSAGE_SIZE)
                .max_encoding_message_size(crate::MAX_MESSAGE_SIZE),
            broker,
        }
    }

    /// The broker, if the client came from a plugin connection.
    pub fn broker(&self) -> Option<&GrpcBroker> {
        self.broker.as_ref()
    }

    async fn ready(&self) -> Result<tonic::client::Grpc<T>, Status> {
        let mut grpc = self.grpc.clone();
        match grpc.ready().await {
            Ok(()) => Ok(grpc),
            Err(e) => {
                let e: StdError = e.into();
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
    pub async fn server_streaming<Req, Resp, V>(
        &self,
        path: &'static str,
        request: Req,
        value: fn(Resp) -> V,
    ) -> Result<Streaming<V>, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
        V: Send + 'static,
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
    pub async fn streaming<Req, Resp, V>(
        &self,
        path: &'static str,
        requests: Streaming<Req>,
        value: fn(Resp) -> V,
    ) -> Result<Streaming<V>, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
        V: Send + 'static,
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
pub(super) fn until_error<Req: Send + 'static>(
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

#[cfg(test)]
mod tests {
    use super::*;

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
