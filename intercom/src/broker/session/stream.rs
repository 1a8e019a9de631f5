//! The broker stream itself: the host runs it over its gRPC client, the plugin serves it
//! as `plugin.GRPCBroker/StartStream` (starting over when a newer host connects).

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::{Session, State};
use crate::proto::ConnInfo;
use crate::sync::lock;

impl Session {
    /// Plugin side, on a new host connection: a fresh broker stream and state.
    fn restart(&self) -> mpsc::UnboundedReceiver<ConnInfo> {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.inner.tx) = tx;
        {
            let mut closed = lock(&self.inner.closed);
            closed.cancel();
            *closed = CancellationToken::new();
        }
        let mut state = lock(&self.inner.state);
        *state = State::default();
        rx
    }

    /// Host side: runs the broker stream over `client` until it ends, then closes.
    pub(crate) async fn run_host(
        self,
        mut client: crate::proto::grpc_broker_client::GrpcBrokerClient<Channel>,
    ) {
        let Some(rx) = lock(&self.inner.rx).take() else {
            return;
        };
        let outgoing = UnboundedReceiverStream::new(rx);
        let closed = self.inner.closed();
        let stream = tokio::select! {
            res = client.start_stream(outgoing) => res,
            () = closed.cancelled() => return,
        };
        match stream {
            Ok(resp) => self.pump(resp.into_inner()).await,
            Err(status) => {
                tracing::debug!(code = ?status.code(), message = status.message(), "plugin has no broker stream; broker disabled");
                self.close();
            }
        }
    }

    async fn pump(self, mut incoming: impl Stream<Item = Result<ConnInfo, tonic::Status>> + Unpin) {
        loop {
            tokio::select! {
                msg = incoming.next() => match msg {
                    Some(Ok(info)) => self.receive(info),
                    Some(Err(status)) => {
                        tracing::debug!(code = ?status.code(), "broker stream ended");
                        break;
                    }
                    None => break,
                },
                () = self.inner.closed().cancelled_owned() => break,
            }
        }
        self.close();
    }

    /// The plugin's `GRPCBroker` service.
    pub(crate) fn service(
        &self,
    ) -> crate::proto::grpc_broker_server::GrpcBrokerServer<BrokerService> {
        crate::proto::grpc_broker_server::GrpcBrokerServer::new(BrokerService {
            broker: self.clone(),
        })
    }
}

/// Plugin side of `plugin.GRPCBroker/StartStream`.
#[derive(Debug)]
pub(crate) struct BrokerService {
    broker: Session,
}

#[tonic::async_trait]
impl crate::proto::grpc_broker_server::GrpcBroker for BrokerService {
    type StartStreamStream =
        Pin<Box<dyn Stream<Item = Result<ConnInfo, tonic::Status>> + Send + 'static>>;

    async fn start_stream(
        &self,
        request: tonic::Request<tonic::Streaming<ConnInfo>>,
    ) -> Result<tonic::Response<Self::StartStreamStream>, tonic::Status> {
        let first = lock(&self.broker.inner.rx).take();
        // A second stream comes from a host that reconnected (Kubernetes): start over.
        let rx = first.unwrap_or_else(|| self.broker.restart());
        let broker = self.broker.clone();
        tokio::spawn(broker.pump(request.into_inner()));
        let out = UnboundedReceiverStream::new(rx).map(Ok);
        Ok(tonic::Response::new(Box::pin(out)))
    }
}
