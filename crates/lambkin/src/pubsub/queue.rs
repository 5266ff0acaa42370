//! A subscriber's bounded queue and the channel built on it.
//!
//! [`Queue`] is the policy, with no I/O: a FIFO bounded in items and in bytes, where a push
//! that does not fit drops the oldest items and counts them. Queues can share a byte
//! [`Budget`] (the IPC connection that reads them all): a push makes room within the budget
//! from its own queue's oldest items, and when the rest of the budget is held by the other
//! queues, the new item is the one dropped. An item larger than every bound is still taken
//! into an empty queue of an empty budget, so that any message can be delivered to a reader
//! that keeps up.
//!
//! The channel shares one `Queue` between the router's end (`Outbox`, which pushes and never
//! waits) and the subscriber's end (`Inbox`, which waits for items). The channels of one
//! [`Group`] share its budget and its wake-up. A lock is held only to push or pop one item,
//! so a subscriber can never hold up the router for longer than that.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// How many bytes an item holds, as counted against the bounds.
pub trait Weigh {
    fn weight(&self) -> usize;
}

/// One queue's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub items: NonZeroUsize,
    pub bytes: usize,
}

/// Bytes held by the queues that share it, and how many they may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    used: usize,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self { used: 0, limit }
    }

    /// No bound beyond each queue's own.
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    pub fn used(&self) -> usize {
        self.used
    }

    fn fits(&self, weight: usize) -> bool {
        weight <= self.limit.saturating_sub(self.used)
    }
}

/// What a push did with the item.
#[derive(Debug, PartialEq, Eq)]
pub enum Push<T> {
    /// Queued, after dropping these older items to make room.
    Queued { dropped: Vec<T> },
    /// Not queued: the budget is held by the other queues, and this queue's own items
    /// (dropped too) did not free enough.
    Refused { item: T, dropped: Vec<T> },
}

/// A FIFO bounded in items and bytes that makes room by dropping its oldest items.
#[derive(Debug)]
pub struct Queue<T> {
    items: VecDeque<T>,
    bounds: Bounds,
    bytes: usize,
    dropped: u64,
}

impl<T: Weigh> Queue<T> {
    pub fn new(bounds: Bounds) -> Self {
        Self {
            // Grown on demand: most subscribers keep up and hold a few items at most.
            items: VecDeque::new(),
            bounds,
            bytes: 0,
            dropped: 0,
        }
    }

    /// Appends `item`, first removing the oldest items while the queue is over one of its
    /// bounds with it or `budget` cannot take it; every removed item is counted as dropped
    /// and returned. When the queue is empty and the budget still cannot take the item,
    /// because other queues hold it, the item is refused and counted as dropped too.
    pub fn push(&mut self, item: T, budget: &mut Budget) -> Push<T> {
        let weight = item.weight();
        let mut dropped = Vec::new();
        while !self.items.is_empty()
            && (self.items.len() >= self.bounds.items.get()
                || self.bytes + weight > self.bounds.bytes
                || !budget.fits(weight))
        {
            if let Some(oldest) = self.take_front(budget) {
                self.dropped += 1;
                dropped.push(oldest);
            }
        }
        if !budget.fits(weight) && budget.used > 0 {
            self.dropped += 1;
            return Push::Refused { item, dropped };
        }
        self.bytes += weight;
        budget.used += weight;
        self.items.push_back(item);
        Push::Queued { dropped }
    }

    pub fn pop(&mut self, budget: &mut Budget) -> Option<T> {
        self.take_front(budget)
    }

    fn take_front(&mut self, budget: &mut Budget) -> Option<T> {
        let item = self.items.pop_front()?;
        let weight = item.weight();
        self.bytes -= weight;
        budget.used -= weight;
        Some(item)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// How many items have been dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl<T> Queue<T> {
    /// Empties the queue, giving its bytes back to `budget`.
    fn clear(&mut self, budget: &mut Budget) -> VecDeque<T> {
        budget.used -= self.bytes;
        self.bytes = 0;
        std::mem::take(&mut self.items)
    }
}

/// Why a `try_recv` returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    #[error("no message is queued")]
    Empty,
    #[error("the subscription is closed and its queue is drained")]
    Closed,
}

/// Channels read by one reader: they share a byte budget, and one wake-up that any of them
/// gives when an item arrives in its empty queue or it closes.
#[derive(Debug)]
pub struct Group {
    budget: SharedBudget,
    ready: Notify,
}

/// A budget several groups count against (each with its own reader and wake-up).
pub type SharedBudget = Arc<Mutex<Budget>>;

impl Group {
    pub fn new(budget: Budget) -> Arc<Self> {
        Self::sharing(Arc::new(Mutex::new(budget)))
    }

    /// A group whose queues count against `budget` together with other groups' queues.
    pub fn sharing(budget: SharedBudget) -> Arc<Self> {
        Arc::new(Self {
            budget,
            ready: Notify::new(),
        })
    }

    /// Waits until one of the group's channels may have something new (an item in an empty
    /// queue, or a close); then read them all with `try_recv`. A wake-up given while nobody
    /// waits is kept for the next wait.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Bytes queued in the group's channels.
    pub fn used(&self) -> usize {
        self.lock_budget().used
    }

    fn lock_budget(&self) -> MutexGuard<'_, Budget> {
        // Nothing panics while the lock is held, and the budget is valid after every step.
        self.budget.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct State<T> {
    queue: Queue<T>,
    /// The router's end is gone: no more items will come.
    closed: bool,
    /// The subscriber's end is gone: items would never be read.
    receiver_gone: bool,
}

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
    group: Arc<Group>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while the lock is held, and the state is valid after every step.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A bounded channel over a [`Queue`], its bytes counted in `group`'s budget.
pub(crate) fn channel<T: Weigh>(bounds: Bounds, group: Arc<Group>) -> (Outbox<T>, Inbox<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: Queue::new(bounds),
            closed: false,
            receiver_gone: false,
        }),
        group,
    });
    (Outbox(Arc::clone(&shared)), Inbox(shared))
}

/// A channel that is alone in its group, with no budget beyond its own bounds.
pub(crate) fn solo<T: Weigh>(bounds: Bounds) -> (Outbox<T>, Inbox<T>) {
    channel(bounds, Group::new(Budget::unlimited()))
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Room was made by dropping older items, or the item itself was dropped; `dropped`
    /// counts this queue's drops so far.
    Dropped {
        dropped: u64,
    },
    /// The subscriber's end is gone; the item was discarded.
    ReceiverGone,
}

/// The router's end of a channel. Dropping it closes the channel: the subscriber still gets
/// what is queued, then the end.
#[derive(Debug)]
pub(crate) struct Outbox<T>(Arc<Shared<T>>);

impl<T: Weigh> Outbox<T> {
    /// Queues `item` without waiting, making room if needed.
    pub(crate) fn push(&self, item: T) -> Pushed {
        let (was_empty, push, dropped) = {
            let mut state = self.0.lock();
            if state.receiver_gone {
                return Pushed::ReceiverGone;
            }
            let was_empty = state.queue.is_empty();
            let push = state.queue.push(item, &mut self.0.group.lock_budget());
            (was_empty, push, state.queue.dropped())
        };
        match push {
            Push::Queued { dropped: older } => {
                // The reader waits only after finding the queue empty.
                if was_empty {
                    self.0.group.ready.notify_one();
                }
                // Dropped here, outside the locks.
                if older.is_empty() {
                    Pushed::Queued
                } else {
                    Pushed::Dropped { dropped }
                }
            }
            Push::Refused { .. } => Pushed::Dropped { dropped },
        }
    }

    /// Items and bytes waiting, and items dropped so far.
    pub(crate) fn status(&self) -> (usize, usize, u64) {
        let state = self.0.lock();
        (
            state.queue.len(),
            state.queue.bytes(),
            state.queue.dropped(),
        )
    }

    /// Whether the subscriber's end is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.lock().receiver_gone
    }
}

impl<T> Drop for Outbox<T> {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.group.ready.notify_one();
    }
}

/// The subscriber's end of a channel. Dropping it discards what is queued, and the next push
/// reports that the receiver is gone.
#[derive(Debug)]
pub struct Inbox<T>(Arc<Shared<T>>);

impl<T: Weigh> Inbox<T> {
    /// The oldest queued item; `None` once the channel is closed and drained. For a channel
    /// alone in its group; the reader of a shared group waits on [`Group::ready`] instead.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            match self.try_recv() {
                Ok(item) => return Some(item),
                Err(TryRecvError::Closed) => return None,
                // A push into the now-empty queue, or the close, stores a wake-up even if it
                // happens before this wait starts, so nothing is missed.
                Err(TryRecvError::Empty) => self.0.group.ready().await,
            }
        }
    }

    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.0.lock();
        let popped = state.queue.pop(&mut self.0.group.lock_budget());
        match popped {
            Some(item) => Ok(item),
            None if state.closed => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Items dropped so far because the queue or its group's budget was full.
    pub fn dropped(&self) -> u64 {
        self.0.lock().queue.dropped()
    }
}

impl<T> Drop for Inbox<T> {
    fn drop(&mut self) {
        let discarded = {
            let mut state = self.0.lock();
            state.receiver_gone = true;
            let mut budget = self.0.group.lock_budget();
            state.queue.clear(&mut budget)
        };
        drop(discarded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An item of `n` bytes, named by `id`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Item(u32, usize);

    impl Weigh for Item {
        fn weight(&self) -> usize {
            self.1
        }
    }

    impl Weigh for u32 {
        fn weight(&self) -> usize {
            1
        }
    }

    fn bounds(items: usize, bytes: usize) -> Bounds {
        Bounds {
            items: NonZeroUsize::new(items).unwrap(),
            bytes,
        }
    }

    fn ids(items: impl IntoIterator<Item = Item>) -> Vec<u32> {
        items.into_iter().map(|i| i.0).collect()
    }

    #[test]
    fn a_full_queue_drops_its_oldest_item_and_counts_it() {
        let mut budget = Budget::unlimited();
        let mut q = Queue::new(bounds(3, usize::MAX));
        for i in 1..=3u32 {
            assert_eq!(q.push(i, &mut budget), Push::Queued { dropped: vec![] });
        }
        assert_eq!(q.dropped(), 0);
        assert_eq!(q.push(4, &mut budget), Push::Queued { dropped: vec![1] });
        assert_eq!(q.push(5, &mut budget), Push::Queued { dropped: vec![2] });
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(&mut budget), Some(3));
        assert_eq!(q.push(6, &mut budget), Push::Queued { dropped: vec![] });
        assert_eq!(
            (
                q.pop(&mut budget),
                q.pop(&mut budget),
                q.pop(&mut budget),
                q.pop(&mut budget)
            ),
            (Some(4), Some(5), Some(6), None)
        );
        assert_eq!(q.dropped(), 2);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_queue_of_one_keeps_the_newest_item() {
        let mut budget = Budget::unlimited();
        let mut q = Queue::new(bounds(1, usize::MAX));
        for i in 0..10u32 {
            q.push(i, &mut budget);
        }
        assert_eq!(q.pop(&mut budget), Some(9));
        assert_eq!(q.dropped(), 9);
    }

    #[test]
    fn bytes_bound_the_queue_as_well_as_items() {
        let mut budget = Budget::unlimited();
        let mut q = Queue::new(bounds(100, 10));
        q.push(Item(1, 4), &mut budget);
        q.push(Item(2, 4), &mut budget);
        // 4 + 4 + 4 > 10: the oldest goes.
        assert_eq!(
            q.push(Item(3, 4), &mut budget),
            Push::Queued {
                dropped: vec![Item(1, 4)]
            }
        );
        assert_eq!((q.len(), q.bytes(), budget.used()), (2, 8, 8));
        // An item over the bound empties the queue and is kept alone: a reader that keeps
        // up still gets every message, however large.
        assert_eq!(
            q.push(Item(4, 64), &mut budget),
            Push::Queued {
                dropped: vec![Item(2, 4), Item(3, 4)]
            }
        );
        assert_eq!((q.len(), q.bytes(), q.dropped()), (1, 64, 3));
        assert_eq!(
            q.push(Item(5, 1), &mut budget),
            Push::Queued {
                dropped: vec![Item(4, 64)]
            }
        );
        assert_eq!(ids(std::iter::from_fn(|| q.pop(&mut budget))), [5]);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn queues_sharing_a_budget_drop_their_own_oldest_then_the_newest() {
        let mut budget = Budget::new(10);
        let mut a = Queue::new(bounds(100, 100));
        let mut b = Queue::new(bounds(100, 100));
        a.push(Item(1, 4), &mut budget);
        a.push(Item(2, 4), &mut budget);
        b.push(Item(3, 2), &mut budget);
        assert_eq!(budget.used(), 10);
        // `a` makes room from its own oldest.
        assert_eq!(
            a.push(Item(4, 4), &mut budget),
            Push::Queued {
                dropped: vec![Item(1, 4)]
            }
        );
        // `b` cannot make room from its own 2 bytes: `a` holds the rest, so the new item goes.
        assert_eq!(
            b.push(Item(5, 8), &mut budget),
            Push::Refused {
                item: Item(5, 8),
                dropped: vec![Item(3, 2)]
            }
        );
        assert_eq!((b.len(), b.dropped(), budget.used()), (0, 2, 8));
        // Once `a` is read, there is room again.
        a.pop(&mut budget);
        a.pop(&mut budget);
        assert_eq!(
            b.push(Item(6, 8), &mut budget),
            Push::Queued { dropped: vec![] }
        );
        assert_eq!(budget.used(), 8);
        // An empty budget takes one item over its limit, so it can always be delivered.
        let mut alone = Budget::new(10);
        let mut c = Queue::new(bounds(100, 100));
        assert_eq!(
            c.push(Item(7, 50), &mut alone),
            Push::Queued { dropped: vec![] }
        );
        assert!(matches!(
            c.push(Item(8, 50), &mut alone),
            Push::Queued { dropped } if ids(dropped.clone()) == [7]
        ));
        assert_eq!(c.clear(&mut alone).len(), 1);
        assert_eq!(alone.used(), 0);
    }

    #[test]
    fn pushes_never_wait_and_report_drops() {
        let (tx, mut rx) = solo(bounds(2, usize::MAX));
        assert_eq!(tx.push(1u32), Pushed::Queued);
        assert_eq!(tx.push(2), Pushed::Queued);
        assert_eq!(tx.push(3), Pushed::Dropped { dropped: 1 });
        assert_eq!(tx.push(4), Pushed::Dropped { dropped: 2 });
        assert_eq!(tx.status(), (2, 2, 2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Ok(4));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(rx.dropped(), 2);
    }

    #[test]
    fn a_group_counts_its_channels_bytes_until_read_or_discarded() {
        let group = Group::new(Budget::new(100));
        let (tx_a, mut rx_a) = channel(bounds(10, 50), group.clone());
        let (tx_b, rx_b) = channel(bounds(10, 50), group.clone());
        tx_a.push(Item(1, 30));
        tx_b.push(Item(2, 40));
        assert_eq!(group.used(), 70);
        // Over the group's 100 and with nothing of its own to give, `a`'s third item drops
        // its oldest; `b` is untouched.
        assert_eq!(tx_a.push(Item(3, 40)), Pushed::Dropped { dropped: 1 });
        assert_eq!(group.used(), 80);
        assert_eq!(rx_a.try_recv(), Ok(Item(3, 40)));
        assert_eq!(group.used(), 40);
        drop(rx_b);
        assert_eq!(group.used(), 0);
        assert!(tx_b.is_closed());
        assert_eq!(tx_b.push(Item(4, 1)), Pushed::ReceiverGone);
    }

    #[test]
    fn closing_lets_the_subscriber_drain_first() {
        let (tx, mut rx) = solo(bounds(4, usize::MAX));
        tx.push(1u32);
        tx.push(2);
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    }

    #[test]
    fn a_dropped_inbox_is_reported_to_the_router() {
        let (tx, rx) = solo(bounds(4, usize::MAX));
        tx.push(1u32);
        drop(rx);
        assert_eq!(tx.push(2), Pushed::ReceiverGone);
        assert_eq!(tx.status(), (0, 0, 0));
    }

    #[tokio::test]
    async fn recv_waits_for_a_push_and_for_the_close() {
        let (tx, mut rx) = solo(bounds(4, usize::MAX));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(item) = rx.recv().await {
                got.push(item);
            }
            got
        });
        for i in 0..3u32 {
            tx.push(i);
            tokio::task::yield_now().await;
        }
        drop(tx);
        assert_eq!(reader.await.unwrap(), [0, 1, 2]);
    }

    #[tokio::test]
    async fn a_group_wakes_its_reader_for_any_of_its_channels() {
        let group = Group::new(Budget::unlimited());
        let (tx_a, mut rx_a) = channel(bounds(4, 100), group.clone());
        let (tx_b, mut rx_b) = channel(bounds(4, 100), group.clone());
        // A wake-up given before the wait is kept.
        tx_b.push(7u32);
        group.ready().await;
        assert_eq!(rx_a.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(rx_b.try_recv(), Ok(7));
        let waiting = tokio::spawn({
            let group = group.clone();
            async move { group.ready().await }
        });
        tokio::task::yield_now().await;
        tx_a.push(8);
        waiting.await.unwrap();
        assert_eq!(rx_a.try_recv(), Ok(8));
    }
}
