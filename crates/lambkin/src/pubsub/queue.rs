//! A subscriber's bounded queue and the channel built on it.
//!
//! [`Queue`] is the policy, with no I/O: a FIFO of at most `capacity` items where a push onto
//! a full queue drops the oldest item and counts it. The channel shares one `Queue` between
//! the router's end (`Outbox`, which pushes and never waits) and the subscriber's end
//! (`Inbox`, which waits for items). A lock is held only to push or pop one item, so a
//! subscriber can never hold up the router for longer than that.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// A FIFO of at most `capacity` items that makes room by dropping its oldest item.
#[derive(Debug)]
pub struct Queue<T> {
    items: VecDeque<T>,
    capacity: NonZeroUsize,
    dropped: u64,
}

impl<T> Queue<T> {
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            // Grown on demand: most subscribers keep up and hold a few items at most.
            items: VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }

    /// Appends `item`. When the queue is full, first removes the oldest item, counts it as
    /// dropped and returns it.
    pub fn push(&mut self, item: T) -> Option<T> {
        let oldest = if self.items.len() >= self.capacity.get() {
            self.dropped += 1;
            self.items.pop_front()
        } else {
            None
        };
        self.items.push_back(item);
        oldest
    }

    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn capacity(&self) -> NonZeroUsize {
        self.capacity
    }

    /// How many items pushes have dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
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
    /// Signalled when an item arrives in an empty queue, and on close.
    ready: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while the lock is held, and the state is valid after every step.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A bounded channel over a [`Queue`] of `capacity` items.
pub(crate) fn channel<T>(capacity: NonZeroUsize) -> (Outbox<T>, Inbox<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: Queue::new(capacity),
            closed: false,
            receiver_gone: false,
        }),
        ready: Notify::new(),
    });
    (Outbox(Arc::clone(&shared)), Inbox(shared))
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// The queue was full: its oldest item was dropped; `dropped` counts all drops so far.
    DroppedOldest {
        dropped: u64,
    },
    /// The subscriber's end is gone; the item was discarded.
    ReceiverGone,
}

/// The router's end of a channel. Dropping it closes the channel: the subscriber still gets
/// what is queued, then the end.
#[derive(Debug)]
pub(crate) struct Outbox<T>(Arc<Shared<T>>);

impl<T> Outbox<T> {
    /// Queues `item` without waiting, making room if needed.
    pub(crate) fn push(&self, item: T) -> Pushed {
        let (was_empty, oldest, dropped) = {
            let mut state = self.0.lock();
            if state.receiver_gone {
                return Pushed::ReceiverGone;
            }
            let was_empty = state.queue.is_empty();
            let oldest = state.queue.push(item);
            (was_empty, oldest, state.queue.dropped())
        };
        // The subscriber waits only after finding the queue empty.
        if was_empty {
            self.0.ready.notify_one();
        }
        match oldest {
            // Dropped here, outside the lock.
            Some(_oldest) => Pushed::DroppedOldest { dropped },
            None => Pushed::Queued,
        }
    }

    /// Items waiting, and items dropped so far.
    pub(crate) fn status(&self) -> (usize, u64) {
        let state = self.0.lock();
        (state.queue.len(), state.queue.dropped())
    }
}

impl<T> Drop for Outbox<T> {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_one();
    }
}

/// The subscriber's end of a channel. Dropping it discards what is queued, and the next push
/// reports [`Pushed::ReceiverGone`].
#[derive(Debug)]
pub(crate) struct Inbox<T>(Arc<Shared<T>>);

impl<T> Inbox<T> {
    /// The oldest queued item; `None` once the channel is closed and drained.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            match self.try_recv() {
                Ok(item) => return Some(item),
                Err(TryRecvError::Closed) => return None,
                // A push into the now-empty queue, or the close, stores a permit even if it
                // happens before this wait starts, so nothing is missed.
                Err(TryRecvError::Empty) => self.0.ready.notified().await,
            }
        }
    }

    pub(crate) fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.0.lock();
        match state.queue.pop() {
            Some(item) => Ok(item),
            None if state.closed => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Items dropped so far because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.0.lock().queue.dropped()
    }
}

impl<T> Drop for Inbox<T> {
    fn drop(&mut self) {
        let discarded = {
            let mut state = self.0.lock();
            state.receiver_gone = true;
            std::mem::take(&mut state.queue.items)
        };
        drop(discarded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn a_full_queue_drops_its_oldest_item_and_counts_it() {
        let mut q = Queue::new(capacity(3));
        assert_eq!(q.push(1), None);
        assert_eq!(q.push(2), None);
        assert_eq!(q.push(3), None);
        assert_eq!(q.dropped(), 0);
        assert_eq!(q.push(4), Some(1));
        assert_eq!(q.push(5), Some(2));
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some(3));
        assert_eq!(q.push(6), None);
        assert_eq!(
            (q.pop(), q.pop(), q.pop(), q.pop()),
            (Some(4), Some(5), Some(6), None)
        );
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.capacity().get(), 3);
    }

    #[test]
    fn a_queue_of_one_keeps_the_newest_item() {
        let mut q = Queue::new(capacity(1));
        for i in 0..10 {
            q.push(i);
        }
        assert_eq!(q.pop(), Some(9));
        assert_eq!(q.dropped(), 9);
    }

    #[test]
    fn pushes_never_wait_and_report_drops() {
        let (tx, mut rx) = channel(capacity(2));
        assert_eq!(tx.push(1), Pushed::Queued);
        assert_eq!(tx.push(2), Pushed::Queued);
        assert_eq!(tx.push(3), Pushed::DroppedOldest { dropped: 1 });
        assert_eq!(tx.push(4), Pushed::DroppedOldest { dropped: 2 });
        assert_eq!(tx.status(), (2, 2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Ok(4));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(rx.dropped(), 2);
    }

    #[test]
    fn closing_lets_the_subscriber_drain_first() {
        let (tx, mut rx) = channel(capacity(4));
        tx.push(1);
        tx.push(2);
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    }

    #[test]
    fn a_dropped_inbox_is_reported_to_the_router() {
        let (tx, rx) = channel(capacity(4));
        tx.push(1);
        drop(rx);
        assert_eq!(tx.push(2), Pushed::ReceiverGone);
        assert_eq!(tx.status(), (0, 0));
    }

    #[tokio::test]
    async fn recv_waits_for_a_push_and_for_the_close() {
        let (tx, mut rx) = channel(capacity(4));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(item) = rx.recv().await {
                got.push(item);
            }
            got
        });
        for i in 0..3 {
            tx.push(i);
            tokio::task::yield_now().await;
        }
        drop(tx);
        assert_eq!(reader.await.unwrap(), [0, 1, 2]);
    }
}
