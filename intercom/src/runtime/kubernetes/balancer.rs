//! Spreads calls over the replicas of a plugin.
//!
//! Every replica is its own plugin process with its own connection (and, with AutoMTLS,
//! its own certificate), so balancing happens per call, above the connections: the
//! channel handed to typed clients talks HTTP/2 to an in-process proxy that forwards each
//! request to the next replica's channel, round robin.

use crate::sync::lock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tower::ServiceExt;

/// How long a call waits for a replica when none is connected (e.g. during a rollout).
const WAIT_FOR_REPLICA: Duration = Duration::from_secs(10);

/// The replicas' channels.
#[derive(Debug, Default)]
pub(crate) struct Balancer {
    legs: Mutex<Vec<(String, Channel)>>,
    next: AtomicUsize,
    changed: tokio::sync::Notify,
    closed: CancellationToken,
}

impl Balancer {
    pub(crate) fn insert(&self, name: String, channel: Channel) {
        let mut legs = lock(&self.legs);
        legs.retain(|(n, _)| *n != name);
        legs.push((name, channel));
        drop(legs);
        self.changed.notify_waiters();
    }

    pub(crate) fn remove(&self, name: &str) {
        lock(&self.legs).retain(|(n, _)| n != name);
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.legs).len()
    }

    /// Calls now fail at once.
    pub(crate) fn close(&self) {
        self.closed.cancel();
        lock(&self.legs).clear();
        self.changed.notify_waiters();
    }

    fn pick(&self) -> Option<Channel> {
        let legs = lock(&self.legs);
        if legs.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % legs.len();
        legs.get(i).map(|(_, c)| c.clone())
    }

    async fn pick_or_wait(&self) -> Result<Channel, tonic::Status> {
        let deadline = tokio::time::Instant::now() + WAIT_FOR_REPLICA;
        loop {
            let changed = self.changed.notified();
            if self.closed.is_cancelled() {
                return Err(tonic::Status::unavailable(
                    "the plugin is gone (its Deployment was deleted or killed)",
                ));
            }
            if let Some(c) = self.pick() {
                return Ok(c);
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(tonic::Status::unavailable(
                        "no ready replica of the plugin is connected",
                    ));
                }
            }
        }
    }

    /// The channel typed clients use.
    pub(crate) fn channel(self: &Arc<Self>) -> Channel {
        let balancer = self.clone();
        let connector = tower::service_fn(move |_: http::Uri| {
            let balancer = balancer.clone();
            async move {
                let (client, server) = tokio::io::duplex(256 * 1024);
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let balancer = balancer.clone();
                        async move {
                            let req = req.map(tonic::body::Body::new);
                            let response = match balancer.pick_or_wait().await {
                                Ok(channel) => match channel.oneshot(req).await {
                                    Ok(resp) => resp,
                                    Err(err) => tonic::Status::unavailable(format!(
                                        "the plugin replica could not be reached: {err}"
                                    ))
                                    .into_http(),
                                },
                                Err(status) => status.into_http(),
                            };
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(server), service)
                        .await;
                });
                Ok::<_, std::io::Error>(TokioIo::new(client))
            }
        });
        crate::broker::endpoint().connect_with_connector_lazy(connector)
    }
}
