//! The bookkeeping of multiplexed knocks, bounded.
//!
//! A multiplexed brokered stream carries no id: the accepting side hands "the next
//! inbound stream" to the id whose knock it acknowledged first (go-plugin's protocol).
//! Routing stays right only if both sides count the same way, so:
//! - the **dialing** side opens exactly one stream per positive ack it receives, in ack
//!   order, whether the dial that knocked is still waiting, gave up, or was cancelled
//!   (an abandoned stream is closed at once and reaches, harmlessly, the id it was acked for);
//! - the **accepting** side queues an id and sends its ack in one step, and hands each
//!   inbound stream to the id at the head of the queue, or drops it if that id stopped
//!   accepting — never to the id behind it.

use std::collections::VecDeque;

/// At most this many knocks wait for their ack (dialing side) or for their stream
/// (accepting side); more are refused.
pub(super) const MAX_PENDING_KNOCKS: usize = 64;

/// Dialing side: knocks sent and not yet answered, oldest first, each with what wants
/// the stream (`W`; a closed one means the dial gave up).
#[derive(Debug)]
pub(super) struct Sent<W> {
    queue: VecDeque<(u32, W)>,
}

impl<W> Default for Sent<W> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
        }
    }
}

/// There are already [`MAX_PENDING_KNOCKS`] knocks waiting.
#[derive(Debug)]
pub(super) struct Full;

impl<W> Sent<W> {
    /// Records a knock for `id`.
    pub(super) fn push(&mut self, id: u32, waiter: W) -> Result<(), Full> {
        if self.queue.len() >= MAX_PENDING_KNOCKS {
            return Err(Full);
        }
        self.queue.push_back((id, waiter));
        Ok(())
    }

    /// The oldest knock for `id`, answered now; `None` for an answer nobody asked for.
    pub(super) fn answer(&mut self, id: u32) -> Option<W> {
        let at = self.queue.iter().position(|(i, _)| *i == id)?;
        self.queue.remove(at).map(|(_, w)| w)
    }

    pub(super) fn clear(&mut self) {
        self.queue.clear();
    }
}

/// Accepting side: ids whose knock was acked, in ack order; each owns the next stream.
#[derive(Debug, Default)]
pub(super) struct Acked {
    queue: VecDeque<u32>,
}

impl Acked {
    /// Queues `id`; `false` if the queue is full (refuse the knock).
    pub(super) fn push(&mut self, id: u32) -> bool {
        if self.queue.len() >= MAX_PENDING_KNOCKS {
            return false;
        }
        self.queue.push_back(id);
        true
    }

    /// The id the next inbound stream belongs to, if any knock is waiting.
    pub(super) fn next(&mut self) -> Option<u32> {
        self.queue.pop_front()
    }

    pub(super) fn clear(&mut self) {
        self.queue.clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_go_to_the_oldest_knock_for_their_id() {
        let mut sent = Sent::default();
        sent.push(1, "a").unwrap();
        sent.push(2, "b").unwrap();
        sent.push(1, "c").unwrap();
        assert_eq!(sent.answer(1), Some("a"));
        assert_eq!(sent.answer(3), None, "an unsolicited answer opens nothing");
        assert_eq!(sent.answer(1), Some("c"));
        assert_eq!(sent.answer(2), Some("b"));
        assert_eq!(sent.answer(2), None);
    }

    #[test]
    fn both_queues_are_bounded() {
        let mut sent = Sent::default();
        let mut acked = Acked::default();
        for i in 0..MAX_PENDING_KNOCKS {
            sent.push(i as u32, ()).unwrap();
            assert!(acked.push(i as u32));
        }
        assert!(sent.push(0, ()).is_err());
        assert!(!acked.push(0));
        assert_eq!(acked.next(), Some(0));
        assert!(acked.push(0), "room again once a stream took its slot");
    }
}
