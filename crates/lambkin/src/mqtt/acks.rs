//! When a received QoS 1 message is acknowledged to the broker (sans-I/O; the connection
//! actor performs the answers): at once when no durable subscription took it, else once every
//! durable subscription that took it has accepted its receipt. What a connection that ended
//! left waiting is forgotten: the broker sends those messages again, and a late acceptance of
//! one acknowledges nothing.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

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

    /// A receipt was rejected (the subscriber could not keep the message): it is never
    /// acknowledged on this connection, whatever the other receipts say. Whether it was a
    /// message of this connection (a rejection of an earlier one's asks for nothing: the
    /// broker sends that again anyway).
    pub fn rejected(&mut self, id: u64) -> bool {
        self.waiting.remove(&id).is_some()
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

/// What the connection does about messages it left unacknowledged (a full durable queue, a
/// rejected receipt, a held message past the bound): once the durable queues have drained, it
/// connects again so that the broker sends them again on the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Redeliver {
    /// Nothing to do yet (nothing left behind, or the queues still hold messages).
    Wait,
    /// Reconnect now.
    Now,
    /// Reconnect at this time, unless told otherwise before.
    At(Instant),
}

/// When to reconnect for messages left unacknowledged (sans-I/O). Messages a full queue
/// left behind are asked for again as soon as the queues have drained: the subscriber is
/// keeping up again. Messages a subscriber *rejected* (it could not store them: a full disk)
/// are asked for again after a pause that doubles while rejections go on, from `min` up to
/// `max`, and starts over once a receipt is accepted (the store works again): a full disk
/// makes a slow retry, not a reconnect loop.
#[derive(Debug)]
pub(super) struct Redelivery {
    min: Duration,
    max: Duration,
    pause: Duration,
    /// QoS 1 messages left unacknowledged on this connection: for a full queue, rejected.
    left_behind: u64,
    rejected: u64,
    due: Option<Instant>,
}

impl Redelivery {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            pause: min,
            left_behind: 0,
            rejected: 0,
            due: None,
        }
    }

    /// A QoS 1 message was left unacknowledged for want of room; how many so far on this
    /// connection.
    pub fn left_behind(&mut self) -> u64 {
        self.left_behind += 1;
        self.left_behind
    }

    /// A receipt of this connection was rejected; how many so far on this connection.
    pub fn rejected(&mut self) -> u64 {
        self.rejected += 1;
        self.rejected
    }

    /// A receipt was accepted: the subscribers store again, a later rejection is retried
    /// after the shortest pause.
    pub fn accepted(&mut self) {
        self.pause = self.min;
    }

    /// A new connection: the broker sends what the last one left unacknowledged.
    pub fn reconnected(&mut self) {
        self.left_behind = 0;
        self.rejected = 0;
        self.due = None;
    }

    /// What to do at `now`, the durable queues being `drained` or not.
    pub fn check(&mut self, now: Instant, drained: bool) -> Redeliver {
        if self.left_behind == 0 && self.rejected == 0 || !drained {
            return Redeliver::Wait;
        }
        if self.rejected == 0 {
            return self.now();
        }
        match self.due {
            Some(due) if now >= due => self.now(),
            Some(due) => Redeliver::At(due),
            None => {
                let due = now + self.pause;
                self.pause = (self.pause * 2).min(self.max);
                self.due = Some(due);
                Redeliver::At(due)
            }
        }
    }

    /// Messages left unacknowledged on this connection, of both kinds.
    pub fn unacknowledged(&self) -> u64 {
        self.left_behind + self.rejected
    }

    fn now(&mut self) -> Redeliver {
        self.reconnected();
        Redeliver::Now
    }
}

/// Messages held, unacknowledged, for subscriptions still to come, bounded by count and by
/// bytes (sans-I/O): what does not fit is refused, for the broker to send again.
#[derive(Debug)]
pub(super) struct Held<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
}

/// What became of a message offered to [`Held::hold`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Hold<T> {
    Held,
    /// No room (count or bytes): the message is handed back.
    Full(T),
}

impl<T> Held<T> {
    pub fn new(max_items: usize, max_bytes: usize) -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            max_items,
            max_bytes,
        }
    }

    /// Holds `item` of `weight` bytes if both bounds leave room for it.
    pub fn hold(&mut self, item: T, weight: usize) -> Hold<T> {
        if self.items.len() >= self.max_items || self.bytes.saturating_add(weight) > self.max_bytes
        {
            return Hold::Full(item);
        }
        self.bytes += weight;
        self.items.push_back((item, weight));
        Hold::Held
    }

    /// Takes the held items `claims` wants, in order.
    pub fn claim(&mut self, mut claims: impl FnMut(&T) -> bool) -> Vec<T> {
        let (claimed, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.items)
            .into_iter()
            .partition(|(item, _)| claims(item));
        self.items = kept.into();
        self.bytes = self.items.iter().map(|(_, w)| w).sum();
        claimed.into_iter().map(|(item, _)| item).collect()
    }

    /// Takes every held item, in order.
    pub fn take_all(&mut self) -> Vec<T> {
        self.bytes = 0;
        std::mem::take(&mut self.items)
            .into_iter()
            .map(|(item, _)| item)
            .collect()
    }

    /// The bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
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

#[cfg(test)]
mod redelivery_tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(8);

    #[test]
    fn a_receipt_rejected_is_never_acknowledged_on_its_connection() {
        let mut acks = Acks::default();
        let Received::Later(id) = acks.received("a", 2) else {
            panic!("durable subscriptions took it");
        };
        assert!(acks.rejected(id));
        // The other subscription accepts it: still nothing to acknowledge.
        assert_eq!(acks.accepted(id), None);
        assert_eq!(acks.waiting(), 0);
        // A rejection of an earlier connection's message asks for nothing.
        let Received::Later(old) = acks.received("b", 1) else {
            panic!("a durable subscription took it");
        };
        acks.reconnected();
        assert!(!acks.rejected(old));
    }

    #[test]
    fn messages_left_behind_by_a_full_queue_are_asked_for_once_the_queues_drained() {
        let t0 = Instant::now();
        let mut r = Redelivery::new(MIN, MAX);
        assert_eq!(r.check(t0, true), Redeliver::Wait);
        assert_eq!(r.left_behind(), 1);
        assert_eq!(r.check(t0, false), Redeliver::Wait);
        assert_eq!(r.check(t0, true), Redeliver::Now);
        // Asked for: nothing more until something else is left behind.
        assert_eq!(r.check(t0, true), Redeliver::Wait);
    }

    #[test]
    fn rejected_messages_are_asked_for_after_a_pause_that_doubles_until_one_is_accepted() {
        let mut now = Instant::now();
        let mut r = Redelivery::new(MIN, MAX);
        let mut pauses = Vec::new();
        for _ in 0..6 {
            r.rejected();
            assert_eq!(r.check(now, false), Redeliver::Wait);
            let Redeliver::At(due) = r.check(now, true) else {
                panic!("a rejection waits for its pause");
            };
            pauses.push((due - now).as_secs());
            // Early: still waiting for the same time.
            assert_eq!(r.check(now, true), Redeliver::At(due));
            now = due;
            assert_eq!(r.check(now, true), Redeliver::Now);
            assert_eq!(r.check(now, true), Redeliver::Wait);
        }
        assert_eq!(pauses, [1, 2, 4, 8, 8, 8]);
        // The store works again: the next rejection is retried after the shortest pause.
        r.accepted();
        r.rejected();
        assert_eq!(r.check(now, true), Redeliver::At(now + MIN));
    }

    #[test]
    fn a_reconnect_for_other_reasons_forgets_what_was_left_behind() {
        let now = Instant::now();
        let mut r = Redelivery::new(MIN, MAX);
        r.rejected();
        r.left_behind();
        assert_eq!(r.unacknowledged(), 2);
        r.reconnected();
        assert_eq!(r.unacknowledged(), 0);
        assert_eq!(r.check(now, true), Redeliver::Wait);
    }
}

#[cfg(test)]
mod held_tests {
    use super::*;

    #[test]
    fn held_messages_are_bounded_by_count() {
        let mut held = Held::new(2, 1000);
        assert_eq!(held.hold("a", 1), Hold::Held);
        assert_eq!(held.hold("b", 1), Hold::Held);
        assert_eq!(held.hold("c", 1), Hold::Full("c"));
        assert_eq!(held.take_all(), ["a", "b"]);
        assert_eq!(held.hold("c", 1), Hold::Held);
    }

    #[test]
    fn held_messages_are_bounded_by_bytes_and_a_large_one_is_refused_before_it_is_held() {
        let mut held = Held::new(100, 10);
        assert_eq!(held.hold("large", 11), Hold::Full("large"));
        assert_eq!(held.bytes(), 0);
        assert_eq!(held.hold("a", 6), Hold::Held);
        assert_eq!(held.hold("b", 5), Hold::Full("b"));
        // A smaller one still fits.
        assert_eq!(held.hold("c", 4), Hold::Held);
        assert_eq!(held.bytes(), 10);
        assert_eq!(held.hold("d", usize::MAX), Hold::Full("d"));
    }

    #[test]
    fn claiming_frees_the_room_of_what_was_claimed() {
        let mut held = Held::new(100, 10);
        assert_eq!(held.hold("x/1", 4), Hold::Held);
        assert_eq!(held.hold("y/1", 4), Hold::Held);
        assert_eq!(held.hold("x/2", 2), Hold::Held);
        assert_eq!(held.claim(|t| t.starts_with("x/")), ["x/1", "x/2"]);
        assert_eq!(held.bytes(), 4);
        assert_eq!(held.hold("z", 6), Hold::Held);
        assert_eq!(held.take_all(), ["y/1", "z"]);
        assert_eq!(held.bytes(), 0);
    }
}
