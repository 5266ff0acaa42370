//! When a received QoS 1 message is acknowledged to the broker (sans-I/O; the connection
//! actor performs the answers): at once when no durable subscription took it, else once every
//! durable subscription that took it has accepted its receipt. What a connection that ended
//! left waiting is forgotten: the broker sends those messages again, and a late acceptance of
//! one acknowledges nothing.

use std::collections::HashMap;

/// What to do with a message just received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Received<A> {
    /// Acknowledge it now.
    Now(A),
    /// Wait for the receipts carrying this id.
    Later(u64),
}

/// Messages waiting for their durable subscribers, by receipt id.
#[derive(Debug)]
pub(super) struct Acks<A> {
    waiting: HashMap<u64, (A, usize)>,
    next: u64,
}

impl<A> Default for Acks<A> {
    fn default() -> Self {
        Self {
            waiting: HashMap::new(),
            next: 0,
        }
    }
}

impl<A> Acks<A> {
    /// The id the receipts of the next message received carry.
    pub fn next_id(&self) -> u64 {
        self.next
    }

    /// A message was received and `durable` durable subscriptions took it (with receipts
    /// carrying [`next_id`](Self::next_id)).
    pub fn received(&mut self, ack: A, durable: usize) -> Received<A> {
        if durable == 0 {
            return Received::Now(ack);
        }
        let id = self.next;
        self.next += 1;
        self.waiting.insert(id, (ack, durable));
        Received::Later(id)
    }

    /// A receipt was accepted: the acknowledgement to send when it was the last one.
    pub fn accepted(&mut self, id: u64) -> Option<A> {
        let (_, left) = self.waiting.get_mut(&id)?;
        *left = left.saturating_sub(1);
        if *left > 0 {
            return None;
        }
        self.waiting.remove(&id).map(|(ack, _)| ack)
    }

    /// A new connection: the broker sends again what the last one left unacknowledged.
    pub fn reconnected(&mut self) {
        self.waiting.clear();
    }

    /// Messages waiting for receipts.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_no_durable_subscription_took_is_acknowledged_at_once() {
        let mut acks = Acks::default();
        assert_eq!(acks.received("a", 0), Received::Now("a"));
        assert_eq!(acks.waiting(), 0);
    }

    #[test]
    fn a_message_waits_for_every_durable_subscription_that_took_it() {
        let mut acks = Acks::default();
        let id = acks.next_id();
        assert_eq!(acks.received("a", 2), Received::Later(id));
        let other = acks.next_id();
        assert_ne!(other, id);
        assert_eq!(acks.received("b", 1), Received::Later(other));
        assert_eq!(acks.accepted(id), None);
        assert_eq!(acks.accepted(other), Some("b"));
        assert_eq!(acks.accepted(id), Some("a"));
        // Accepted twice, or unknown: nothing more.
        assert_eq!(acks.accepted(id), None);
        assert_eq!(acks.accepted(99), None);
        assert_eq!(acks.waiting(), 0);
    }

    #[test]
    fn receipts_of_a_connection_that_ended_acknowledge_nothing() {
        let mut acks = Acks::default();
        let Received::Later(id) = acks.received("a", 1) else {
            panic!("a durable subscription took it");
        };
        acks.reconnected();
        assert_eq!(acks.accepted(id), None);
        // Ids are not reused: a late receipt cannot acknowledge a newer message.
        let Received::Later(newer) = acks.received("b", 1) else {
            panic!("a durable subscription took it");
        };
        assert_ne!(newer, id);
        assert_eq!(acks.accepted(id), None);
        assert_eq!(acks.accepted(newer), Some("b"));
    }
}
