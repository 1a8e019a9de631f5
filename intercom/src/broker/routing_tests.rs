//! Brokered streams reach the id they were opened for, whatever the interleaving of
//! dials, cancelled dials, late acks and closed listeners (issue: a FIFO of acked knocks
//! sent the next stream to the wrong service after a timed-out or cancelled dial).
//!
//! Two multiplexed sessions over an in-memory socket, on a paused clock: the host dials,
//! the plugin accepts. Every stream a dial returns carries the dialled id; the acceptor
//! records what it got and echoes its own id.

use std::sync::atomic::AtomicU64;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::*;
use crate::mux::{Mux, Role};
use crate::proto::ConnInfo;
use crate::sync::lock;
use crate::transport::Io;

/// What the test saw: (acceptor id, tag the stream carried) and (dialled id, echo).
#[derive(Default)]
struct Seen {
    accepted: Vec<(u32, u32)>,
    dialled: Vec<(u32, Option<u32>)>,
}

struct Pair {
    host: Session,
    plugin: Session,
    /// Delay applied to each plugin→host broker message (acks), in ms.
    ack_delay: Arc<AtomicU64>,
    seen: Arc<Mutex<Seen>>,
    acceptors: HashMap<u32, JoinHandle<()>>,
}

impl Pair {
    fn new() -> Self {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (host_mux, host_in) = Mux::start(Io::Boxed(Box::pin(a)), Role::Client);
        let (plugin_mux, plugin_in) = Mux::start(Io::Boxed(Box::pin(b)), Role::Server);
        let host = Session::new(Side::Host, Mode::Mux(MuxSlot::with(host_mux)), None);
        let plugin = Session::new(Side::Plugin, Mode::Mux(MuxSlot::with(plugin_mux)), None);
        let ack_delay = Arc::new(AtomicU64::new(0));
        wire(&host, &plugin, Arc::new(AtomicU64::new(0)));
        wire(&plugin, &host, ack_delay.clone());
        route(&host, host_in);
        route(&plugin, plugin_in);
        Self {
            host,
            plugin,
            ack_delay,
            seen: Arc::default(),
            acceptors: HashMap::new(),
        }
    }

    fn accept(&mut self, id: u32) {
        let Ok(mut listener) = self.plugin.accept(id) else {
            return;
        };
        let seen = self.seen.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(mut conn)) = listener.next().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut tag = [0u8; 4];
                    if conn.read_exact(&mut tag).await.is_ok() {
                        lock(&seen).accepted.push((id, u32::from_be_bytes(tag)));
                        let _ = conn.write_all(&id.to_be_bytes()).await;
                        let _ = conn.flush().await;
                    }
                });
            }
        });
        self.acceptors.insert(id, task);
    }

    fn unaccept(&mut self, id: u32) {
        if let Some(task) = self.acceptors.remove(&id) {
            task.abort();
        }
    }

    fn dial(&self, id: u32) -> JoinHandle<()> {
        let host = self.host.clone();
        let seen = self.seen.clone();
        tokio::spawn(async move {
            let Ok(mut io) = host.dial_io(id).await else {
                return;
            };
            let mut echo = [0u8; 4];
            let got = async {
                io.write_all(&id.to_be_bytes()).await?;
                io.flush().await?;
                io.read_exact(&mut echo).await?;
                std::io::Result::Ok(u32::from_be_bytes(echo))
            };
            let got = tokio::time::timeout(Duration::from_secs(30), got).await;
            lock(&seen)
                .dialled
                .push((id, got.ok().and_then(Result::ok)));
        })
    }

    /// Panics if any stream reached an acceptor of another id.
    fn assert_no_misroute(&self) {
        let seen = lock(&self.seen);
        for (acceptor, tag) in &seen.accepted {
            assert_eq!(
                acceptor, tag,
                "a stream dialled for id {tag} reached id {acceptor}"
            );
        }
        for (id, echo) in &seen.dialled {
            if let Some(echo) = echo {
                assert_eq!(id, echo, "a dial for id {id} got a stream to id {echo}");
            }
        }
    }
}

/// Carries `from`'s broker messages to `to`, each delayed by `delay` ms (in order).
fn wire(from: &Session, to: &Session, delay: Arc<AtomicU64>) {
    let Some(mut out) = from.take_outgoing() else {
        return;
    };
    let to = to.clone();
    tokio::spawn(async move {
        while let Some(info) = out.recv().await {
            let ms = delay.load(Ordering::SeqCst);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            to.receive(info);
        }
    });
}

/// Routes `session`'s inbound streams; unknocked ones go to "the main server" (dropped).
fn route(session: &Session, mut inbound: mpsc::Receiver<Io>) {
    let session = session.clone();
    tokio::spawn(async move {
        while let Some(io) = inbound.recv().await {
            drop(session.route_inbound(io));
        }
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime")
}

#[test]
fn a_late_ack_does_not_send_the_next_stream_to_the_wrong_id() {
    runtime().block_on(async {
        let mut pair = Pair::new();
        pair.accept(1);
        pair.accept(2);
        // The ack for 1 arrives after the dial gave up (BROKER_TIMEOUT is 5 s).
        pair.ack_delay.store(6_000, Ordering::SeqCst);
        let late = pair.dial(1);
        tokio::time::sleep(Duration::from_millis(10)).await;
        pair.ack_delay.store(0, Ordering::SeqCst);
        let next = pair.dial(2);
        let _ = late.await;
        let _ = next.await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        pair.assert_no_misroute();
        assert!(
            lock(&pair.seen).dialled.contains(&(2, Some(2))),
            "the dial for id 2 reached id 2"
        );
    });
}

#[test]
fn a_cancelled_dial_does_not_send_the_next_stream_to_the_wrong_id() {
    runtime().block_on(async {
        let mut pair = Pair::new();
        pair.accept(1);
        pair.accept(2);
        pair.ack_delay.store(100, Ordering::SeqCst);
        let cancelled = pair.dial(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancelled.abort();
        pair.ack_delay.store(0, Ordering::SeqCst);
        let next = pair.dial(2);
        let _ = next.await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        pair.assert_no_misroute();
        assert!(lock(&pair.seen).dialled.contains(&(2, Some(2))));
    });
}

#[test]
fn a_stream_for_a_closed_listener_does_not_reach_the_next_id() {
    runtime().block_on(async {
        let mut pair = Pair::new();
        pair.accept(1);
        pair.accept(2);
        // The knock for 1 is acked (queued on the plugin), then its listener closes
        // before the stream arrives; a dial for 2 is knocked behind it.
        pair.ack_delay.store(200, Ordering::SeqCst);
        let first = pair.dial(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        pair.unaccept(1);
        let second = pair.dial(2);
        let _ = first.await;
        let _ = second.await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        pair.assert_no_misroute();
    });
}

#[test]
fn a_flood_of_knocks_answers_and_infos_stays_bounded() {
    runtime().block_on(async {
        let mut pair = Pair::new();
        pair.accept(1);
        let knock = |id: u32, ack: bool| ConnInfo {
            service_id: id,
            network: String::new(),
            address: String::new(),
            knock: Some(crate::proto::conn_info::Knock {
                knock: true,
                ack,
                error: String::new(),
            }),
        };
        for i in 0..10_000u32 {
            pair.plugin.receive(knock(1, false)); // accepted id: queued for a stream
            pair.plugin.receive(knock(1_000 + i, false)); // nobody accepts: grace period
            pair.host.receive(knock(1, true)); // an ack nobody asked for
            pair.host.receive(ConnInfo {
                service_id: 1_000 + i,
                network: "tcp".into(),
                address: "127.0.0.1:1".into(),
                knock: None,
            });
        }
        let (_, acked, in_grace) = pair.plugin.stored();
        assert!(
            acked <= knocks::MAX_PENDING_KNOCKS,
            "{acked} acked knocks kept"
        );
        assert!(
            in_grace <= knocks::MAX_PENDING_KNOCKS,
            "{in_grace} knocks in grace"
        );
        let (infos, _, _) = pair.host.stored();
        assert!(infos <= 256, "{infos} ConnInfos kept");
        pair.assert_no_misroute();
        assert!(
            lock(&pair.seen).accepted.is_empty(),
            "unsolicited acks opened streams"
        );
        // The session still works once the flood has passed (grace periods end).
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(pair.plugin.stored().2, 0);
    });
}

#[derive(Debug, Clone)]
enum Op {
    Accept(u32),
    Unaccept(u32),
    /// Dial `id`; its ack is delayed by `ack_delay` ms; the dial is cancelled after
    /// `cancel_after` ms if set.
    Dial {
        id: u32,
        ack_delay: u64,
        cancel_after: Option<u64>,
    },
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let id = 1u32..=3;
    let delay = prop_oneof![Just(0u64), Just(50), Just(3_000), Just(6_000)];
    prop_oneof![
        id.clone().prop_map(Op::Accept),
        id.clone().prop_map(Op::Unaccept),
        (id, delay, prop::option::of(0u64..7_000)).prop_map(|(id, ack_delay, cancel_after)| {
            Op::Dial {
                id,
                ack_delay,
                cancel_after,
            }
        }),
        (0u64..8_000).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn streams_reach_the_id_they_were_dialled_for(ops in prop::collection::vec(op(), 1..14)) {
        runtime().block_on(async {
            let mut pair = Pair::new();
            let mut dials = Vec::new();
            for op in ops {
                match op {
                    Op::Accept(id) => pair.accept(id),
                    Op::Unaccept(id) => pair.unaccept(id),
                    Op::Dial { id, ack_delay, cancel_after } => {
                        pair.ack_delay.store(ack_delay, Ordering::SeqCst);
                        let dial = pair.dial(id);
                        match cancel_after {
                            None => dials.push(dial),
                            Some(ms) => {
                                tokio::spawn(async move {
                                    tokio::time::sleep(Duration::from_millis(ms)).await;
                                    dial.abort();
                                });
                            }
                        }
                    }
                    Op::Wait(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                }
                // Let the dial send its knock (and the link pick up its delay).
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            for dial in dials {
                let _ = dial.await;
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            pair.assert_no_misroute();
        });
    }
}
