//! Plugin side: which connections reach the plugin's services, and which one may become
//! the host's multiplexed session.
//!
//! Anyone who can reach the plugin's socket can connect to it (on Kubernetes, every pod
//! of the cluster by default). A connection is therefore *unproven* until it shows it is
//! the host, and an unproven connection can never disturb the current host session:
//!
//! - With AutoMTLS on, a yamux session is admitted (and may replace the current one, the
//!   reconnect a dropped port-forward or a reattaching host needs) only once the TLS
//!   handshake on its first stream has completed against the host's pinned certificate.
//!   A first byte, a bad certificate, garbage or silence ends only that connection.
//! - With AutoMTLS off nothing can be proven. A plugin whose host is its parent (a unix
//!   socket or an ephemeral port) then keeps its first live session and refuses others;
//!   a plugin on a fixed address (Kubernetes) lets a newer session replace the current
//!   one, since that is how a host reconnects. `SECURITY.md` says what that gives up.
//!
//! At most [`MAX_UNPROVEN`] connections may be unproven at once, each for at most
//! [`PROOF_TIMEOUT`]: a flood or a slowloris costs bounded memory and time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::broker::{MuxSlot, Session};
use crate::mux::{Mux, Role};
use crate::transport::{self, Io, Listener, TlsPair};

/// Connections that have not yet shown what they are (or proven they are the host).
pub(crate) const MAX_UNPROVEN: usize = 32;

/// How long a connection may take to send its first byte, and a yamux session to prove
/// it is the host.
pub(crate) const PROOF_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a replaced host session stays open so the replacement notice reaches it.
const REPLACED_NOTICE_GRACE: Duration = Duration::from_millis(200);

/// Where accepted connections go.
#[derive(Clone)]
pub(crate) struct Routes {
    /// To the main server, still to be TLS-accepted when AutoMTLS is on.
    pub(crate) raw: mpsc::Sender<Io>,
    /// To the main server, TLS already accepted.
    pub(crate) secured: mpsc::Sender<Io>,
    /// Plaintext connections while AutoMTLS is on: the health service only.
    pub(crate) probe: Option<mpsc::Sender<Io>>,
}

/// The plugin's admission policy and the state it guards.
#[derive(Clone)]
pub(crate) struct Admission {
    pub(crate) session: Session,
    pub(crate) slot: MuxSlot,
    pub(crate) tls: Option<TlsPair>,
    /// The host asked for a multiplexed session.
    pub(crate) multiplex: bool,
    /// The plugin outlives host sessions (a fixed TCP address): a new session may replace
    /// the current one, and the end of a session does not end the plugin.
    pub(crate) persistent: bool,
    pub(crate) routes: Routes,
    pub(crate) shutdown: CancellationToken,
    unproven: Arc<Semaphore>,
}

impl Admission {
    /// The policy for one plugin.
    pub(crate) fn new(
        session: Session,
        slot: MuxSlot,
        tls: Option<TlsPair>,
        multiplex: bool,
        persistent: bool,
        routes: Routes,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            session,
            slot,
            tls,
            multiplex,
            persistent,
            routes,
            shutdown,
            unproven: Arc::new(Semaphore::new(MAX_UNPROVEN)),
        }
    }

    /// Accepts connections until shutdown. Accept errors (`EMFILE`, `ECONNABORTED`, …)
    /// pause the loop with a growing delay (up to a second) and never end it.
    pub(crate) async fn accept_loop(self, listener: Listener) {
        loop {
            let io = tokio::select! {
                io = listener.accept_retrying("plugin listener") => io,
                () = self.shutdown.cancelled() => break,
            };
            tokio::spawn(self.clone().admit(io));
        }
    }

    /// Sorts one accepted connection by its first byte, proving it where it matters.
    async fn admit(self, io: Io) {
        let Ok(permit) = self.unproven.clone().try_acquire_owned() else {
            tracing::debug!(
                limit = MAX_UNPROVEN,
                "refused a connection: too many unproven connections"
            );
            return;
        };
        let sniffed = tokio::time::timeout(PROOF_TIMEOUT, transport::sniff(io)).await;
        let Ok(Ok(Some((first, io)))) = sniffed else {
            return;
        };
        match first {
            transport::YAMUX_FIRST_BYTE if self.multiplex => {
                let Some(mux) = self.prove_session(io).await else {
                    return;
                };
                drop(permit);
                self.run_session(mux).await;
            }
            transport::TLS_FIRST_BYTE => match &self.tls {
                Some(tls) => {
                    if let Some(io) = accept_tls(tls, io, "a connection").await {
                        drop(permit);
                        let _ = self.routes.secured.send(io).await;
                    }
                }
                None => {
                    drop(permit);
                    let _ = self.routes.raw.send(io).await;
                }
            },
            _ => {
                drop(permit);
                let to = match &self.routes.probe {
                    Some(probe) if self.tls.is_some() => probe,
                    _ => &self.routes.raw,
                };
                let _ = to.send(io).await;
            }
        }
    }

    /// Starts a yamux session over `io` and waits for it to prove it is the host; on
    /// success the session is installed and its first stream is on its way to the main
    /// server. `None`: the connection was refused (and is closed).
    async fn prove_session(&self, io: Io) -> Option<Mux> {
        let (mux, mut inbound) = Mux::start(io, Role::Server);
        let proof = tokio::time::timeout(PROOF_TIMEOUT, async {
            let first = inbound.recv().await?;
            match &self.tls {
                Some(tls) => accept_tls(tls, first, "a multiplexed host connection").await,
                None => Some(first),
            }
        })
        .await;
        let first = match proof {
            Ok(Some(first)) => first,
            Ok(None) => {
                mux.close();
                return None;
            }
            Err(_) => {
                tracing::warn!(
                    "refused a multiplexed connection: it did not prove it is the host within {PROOF_TIMEOUT:?}"
                );
                mux.close();
                return None;
            }
        };
        if self.tls.is_none()
            && !self.persistent
            && self.slot.get().is_some_and(|current| !current.is_closed())
        {
            tracing::warn!(
                "refused a second multiplexed connection while the host's is alive (AutoMTLS is off, so it cannot prove it is the host)"
            );
            mux.close();
            return None;
        }
        if let Some(previous) = self.slot.replace(mux.clone()) {
            tracing::debug!("a new host connection replaces the previous one");
            self.session.notify_replaced();
            tokio::spawn(async move {
                // Let the notice reach the old host before its connection goes.
                tokio::time::sleep(REPLACED_NOTICE_GRACE).await;
                previous.close();
            });
        }
        let to = if self.tls.is_some() {
            &self.routes.secured
        } else {
            &self.routes.raw
        };
        let _ = to.send(first).await;
        tokio::spawn(route_streams(
            mux.clone(),
            inbound,
            self.session.clone(),
            self.routes.raw.clone(),
            self.shutdown.clone(),
        ));
        Some(mux)
    }

    /// Waits for an admitted session to end; a plugin whose host is its parent ends
    /// with the host's current session.
    async fn run_session(&self, mux: Mux) {
        tokio::select! {
            () = mux.closed() => {}
            () = self.shutdown.cancelled() => {}
        }
        let current = self.slot.get().is_some_and(|m| m.same_session(&mux));
        if current && !self.persistent {
            // The host is gone: nothing can reach us any more.
            self.shutdown.cancel();
        }
    }
}

/// Routes an admitted session's streams: knocked ones to their broker ids, the rest to
/// the main server.
async fn route_streams(
    mux: Mux,
    mut inbound: mpsc::Receiver<Io>,
    session: Session,
    raw: mpsc::Sender<Io>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            stream = inbound.recv() => match stream {
                Some(io) => {
                    if let Some(io) = session.route_inbound(io) && raw.send(io).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            () = shutdown.cancelled() => break,
        }
    }
    mux.close();
}

/// The TLS server handshake, bounded by [`PROOF_TIMEOUT`]; failures are logged.
async fn accept_tls(tls: &TlsPair, io: Io, what: &str) -> Option<Io> {
    match tokio::time::timeout(PROOF_TIMEOUT, tls.accept(io)).await {
        Ok(Ok(io)) => Some(io),
        Ok(Err(err)) => {
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                "refused {what}: TLS handshake failed (not the host's pinned certificate?)"
            );
            None
        }
        Err(_) => {
            tracing::warn!("refused {what}: TLS handshake timed out");
            None
        }
    }
}
