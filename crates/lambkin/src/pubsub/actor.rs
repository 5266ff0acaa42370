//! The router's actor: one task that owns the [`Router`] and the router's end of every
//! subscriber's channel, and the cloneable [`PubSubHandle`] that talks to it. Each
//! subscriber reads its own channel through its [`Subscription`]; the overflow policy is in
//! the module documentation ([`super`]).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::queue::{self, Bounds, Group, Inbox, Outbox, Pushed, TryRecvError};
use super::router::{Client, Message, Payload, ReceiveMode, Router, Subscriber, SubscriptionId};
use super::topic::{Filter, Topic};
use crate::metrics::counters::PubSubCounters;

/// Commands that may wait for the actor before callers wait too.
const MAILBOX: usize = 1024;

/// How much the router holds for its subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages queued per subscription before the oldest is dropped.
    pub subscriber_queue: NonZeroUsize,
    /// Bytes queued per subscription before the oldest is dropped (one message larger than
    /// this is still queued alone).
    pub subscriber_bytes: usize,
}

impl Limits {
    pub const DEFAULT_SUBSCRIBER_QUEUE: NonZeroUsize = match NonZeroUsize::new(1024) {
        Some(n) => n,
        None => NonZeroUsize::MIN,
    };
    /// 8 MiB: thousands of telemetry messages, or one large message waiting while the
    /// subscriber takes the one before it.
    pub const DEFAULT_SUBSCRIBER_BYTES: usize = 8 * 1024 * 1024;

    fn bounds(&self) -> Bounds {
        Bounds {
            items: self.subscriber_queue,
            bytes: self.subscriber_bytes,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            subscriber_queue: Self::DEFAULT_SUBSCRIBER_QUEUE,
            subscriber_bytes: Self::DEFAULT_SUBSCRIBER_BYTES,
        }
    }
}

/// The router is gone: shut down, or its task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pub/sub router has stopped")]
pub struct Stopped;

/// A subscription as `subscriptions` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionStatus {
    pub id: SubscriptionId,
    pub subscriber: Subscriber,
    /// Messages waiting for the subscriber.
    pub queued: usize,
    /// Bytes they hold (as [`Weigh`](super::queue::Weigh) counts them).
    pub queued_bytes: usize,
    /// Messages dropped so far because its queue was full.
    pub dropped: u64,
}

#[derive(Debug)]
enum Command {
    Publish {
        from: Client,
        message: Message,
        done: oneshot::Sender<usize>,
    },
    Subscribe {
        subscriber: Subscriber,
        /// The group the subscription's queue joins; its own when `None`.
        group: Option<Arc<Group>>,
        reply: oneshot::Sender<Subscription>,
    },
    List {
        reply: oneshot::Sender<Vec<SubscriptionStatus>>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// A cloneable handle on the router's actor.
#[derive(Debug, Clone)]
pub struct PubSubHandle {
    tx: mpsc::Sender<Command>,
    counters: Arc<PubSubCounters>,
}

impl PubSubHandle {
    /// Starts the actor. It runs until [`shutdown`](Self::shutdown) or until every handle is
    /// dropped; either way every subscription is then closed.
    pub fn spawn(limits: Limits) -> Self {
        let (tx, rx) = mpsc::channel(MAILBOX);
        // Unbounded, but bounded by construction: each subscription sends its id once, when
        // it is dropped.
        let (gone_tx, gone_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(PubSubCounters::default());
        let actor = Actor {
            router: Router::new(),
            outboxes: HashMap::new(),
            limits,
            gone_tx,
            counters: counters.clone(),
        };
        tokio::spawn(run(actor, rx, gone_rx));
        Self { tx, counters }
    }

    /// Messages published and dropped so far.
    pub fn counters(&self) -> &PubSubCounters {
        &self.counters
    }

    /// Publishes `payload` on `topic` as `from`, and returns how many subscriptions it was
    /// queued for. When this returns, the message is in each of their queues, behind every
    /// message published before it. Waits only when the actor's own mailbox is full, never
    /// for a subscriber.
    pub async fn publish(
        &self,
        from: Client,
        topic: Topic,
        payload: Payload,
    ) -> Result<usize, Stopped> {
        let (done, rx) = oneshot::channel();
        let message = Message::new(topic, payload);
        self.send(Command::Publish {
            from,
            message,
            done,
        })
        .await?;
        rx.await.map_err(|_| Stopped)
    }

    /// Subscribes `client` to `filter`. Messages published after this returns are queued for
    /// the subscription; dropping the [`Subscription`] ends it.
    pub async fn subscribe(
        &self,
        client: Client,
        filter: Filter,
        mode: ReceiveMode,
    ) -> Result<Subscription, Stopped> {
        self.subscribe_with(client, filter, mode, None).await
    }

    /// As [`subscribe`](Self::subscribe), with the subscription's queue in `group`: it shares
    /// the group's byte budget and wake-up with the group's other queues (an IPC
    /// connection's subscriptions, read by the connection's one task). Read it with
    /// [`Subscription::try_recv`] after [`Group::ready`].
    pub async fn subscribe_in(
        &self,
        client: Client,
        filter: Filter,
        mode: ReceiveMode,
        group: Arc<Group>,
    ) -> Result<Subscription, Stopped> {
        self.subscribe_with(client, filter, mode, Some(group)).await
    }

    async fn subscribe_with(
        &self,
        client: Client,
        filter: Filter,
        mode: ReceiveMode,
        group: Option<Arc<Group>>,
    ) -> Result<Subscription, Stopped> {
        let (reply, rx) = oneshot::channel();
        let subscriber = Subscriber {
            client,
            filter,
            mode,
        };
        self.send(Command::Subscribe {
            subscriber,
            group,
            reply,
        })
        .await?;
        rx.await.map_err(|_| Stopped)
    }

    /// Every live subscription, oldest first, with its queue's state.
    pub async fn subscriptions(&self) -> Result<Vec<SubscriptionStatus>, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::List { reply }).await?;
        rx.await.map_err(|_| Stopped)
    }

    /// Stops the actor and closes every subscription (each still reads what is queued for
    /// it). Returns once that is done; at once if the actor had stopped already.
    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        if self.send(Command::Shutdown { done }).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn send(&self, command: Command) -> Result<(), Stopped> {
        self.tx.send(command).await.map_err(|_| Stopped)
    }
}

/// One subscription's end of its channel: its messages in publish order.
#[derive(Debug)]
pub struct Subscription {
    id: SubscriptionId,
    inbox: Inbox<Message>,
    gone: mpsc::UnboundedSender<SubscriptionId>,
}

impl Subscription {
    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    /// The next message; `None` once the router has stopped and the queue is drained.
    pub async fn recv(&mut self) -> Option<Message> {
        self.inbox.recv().await
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        self.inbox.try_recv()
    }

    /// Messages dropped so far because this subscription's queue (or its group) was full.
    pub fn dropped(&self) -> u64 {
        self.inbox.dropped()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.gone.send(self.id);
    }
}

#[derive(Debug)]
struct Actor {
    router: Router,
    outboxes: HashMap<SubscriptionId, Outbox<Message>>,
    limits: Limits,
    gone_tx: mpsc::UnboundedSender<SubscriptionId>,
    counters: Arc<PubSubCounters>,
}

async fn run(
    mut actor: Actor,
    mut rx: mpsc::Receiver<Command>,
    mut gone_rx: mpsc::UnboundedReceiver<SubscriptionId>,
) {
    loop {
        tokio::select! {
            // Ended subscriptions first: a subscription dropped before a command was sent is
            // gone by the time the command is handled.
            biased;
            Some(id) = gone_rx.recv() => actor.remove(id),
            command = rx.recv() => match command {
                Some(Command::Shutdown { done }) => {
                    // Dropping the outboxes closes every subscription.
                    drop(actor);
                    let _ = done.send(());
                    return;
                }
                Some(command) => actor.on(command),
                None => return,
            },
        }
    }
}

impl Actor {
    fn on(&mut self, command: Command) {
        match command {
            Command::Publish {
                from,
                message,
                done,
            } => {
                let queued = self.publish(&from, &message);
                let _ = done.send(queued);
            }
            Command::Subscribe {
                subscriber,
                group,
                reply,
            } => {
                let bounds = self.limits.bounds();
                let (outbox, inbox) = match group {
                    Some(group) => queue::channel(bounds, group),
                    None => queue::solo(bounds),
                };
                tracing::debug!(client = %subscriber.client, filter = %subscriber.filter, mode = subscriber.mode.as_str(), "subscribed");
                let id = self.router.subscribe(subscriber);
                self.outboxes.insert(id, outbox);
                // If the caller has gone, the subscription's drop reports it.
                let _ = reply.send(Subscription {
                    id,
                    inbox,
                    gone: self.gone_tx.clone(),
                });
            }
            Command::List { reply } => {
                let list = self
                    .router
                    .iter()
                    .map(|(id, subscriber)| {
                        let (queued, queued_bytes, dropped) =
                            self.outboxes.get(&id).map_or((0, 0, 0), Outbox::status);
                        SubscriptionStatus {
                            id,
                            subscriber: subscriber.clone(),
                            queued,
                            queued_bytes,
                            dropped,
                        }
                    })
                    .collect();
                let _ = reply.send(list);
            }
            // Handled by the loop, which owns the actor.
            Command::Shutdown { .. } => {}
        }
    }

    /// Queues `message` for every subscription that gets it; never waits.
    fn publish(&mut self, from: &Client, message: &Message) -> usize {
        let mut queued = 0;
        let mut gone = Vec::new();
        self.counters.messages.inc();
        for delivery in self.router.publish(from, message) {
            let id = delivery.subscription;
            let Some(outbox) = self.outboxes.get(&id) else {
                continue;
            };
            match outbox.push(delivery.message) {
                Pushed::Queued => queued += 1,
                Pushed::Dropped { dropped } => {
                    queued += 1;
                    self.counters.dropped.inc();
                    // 1, 2, 4, 8…: a stuck subscriber is reported without flooding the log.
                    if dropped.is_power_of_two() {
                        if let Some(s) = self.router.get(id) {
                            tracing::warn!(subscription = %id, client = %s.client, filter = %s.filter, dropped, "subscriber queue full, message dropped");
                        }
                    }
                }
                Pushed::ReceiverGone => gone.push(id),
            }
        }
        for id in gone {
            self.remove(id);
        }
        queued
    }

    fn remove(&mut self, id: SubscriptionId) {
        self.outboxes.remove(&id);
        if let Some(s) = self.router.unsubscribe(id) {
            tracing::debug!(subscription = %id, client = %s.client, filter = %s.filter, "unsubscribed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use lambkin_proto::recipe::ComponentName;

    use super::*;

    fn component(name: &str) -> Client {
        Client::Component(ComponentName::parse(name).unwrap())
    }

    fn filter(text: &str) -> Filter {
        Filter::parse(text).unwrap()
    }

    fn topic(text: &str) -> Topic {
        Topic::parse(text).unwrap()
    }

    fn numbered(n: u64) -> Payload {
        Payload::Json(Arc::new(json!({ "n": n })))
    }

    fn number(message: &Message) -> u64 {
        match &message.payload {
            Payload::Json(v) => v["n"].as_u64().unwrap(),
            Payload::Binary(_) => panic!("expected a json message"),
        }
    }

    fn limits(queue: usize) -> Limits {
        Limits {
            subscriber_queue: NonZeroUsize::new(queue).unwrap(),
            ..Limits::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_publisher_ten_subscribers_each_receive_everything_in_order() {
        const MESSAGES: u64 = 1000;
        let pubsub = PubSubHandle::spawn(limits(MESSAGES as usize));
        let mut readers = Vec::new();
        for i in 0..10 {
            let client = component(&format!("com.example.Sub{i}"));
            // Half exact, half wildcard: both see every message.
            let f = if i % 2 == 0 { "data/stream" } else { "data/#" };
            let mut sub = pubsub
                .subscribe(client, filter(f), ReceiveMode::All)
                .await
                .unwrap();
            readers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while got.len() < MESSAGES as usize {
                    let message = sub.recv().await.unwrap();
                    assert_eq!(message.topic.as_str(), "data/stream");
                    got.push(number(&message));
                }
                (got, sub.dropped())
            }));
        }
        let publisher = {
            let pubsub = pubsub.clone();
            tokio::spawn(async move {
                for n in 0..MESSAGES {
                    let queued = pubsub
                        .publish(
                            component("com.example.Pub"),
                            topic("data/stream"),
                            numbered(n),
                        )
                        .await
                        .unwrap();
                    assert_eq!(queued, 10);
                }
            })
        };
        publisher.await.unwrap();
        for reader in readers {
            let (got, dropped) = reader.await.unwrap();
            assert_eq!(got, (0..MESSAGES).collect::<Vec<_>>());
            assert_eq!(dropped, 0);
        }
        pubsub.shutdown().await;
    }

    #[tokio::test]
    async fn a_stalled_subscriber_does_not_hold_up_the_publisher_or_the_others() {
        let pubsub = PubSubHandle::spawn(limits(4));
        let mut stalled = pubsub
            .subscribe(component("Stalled"), filter("t/+"), ReceiveMode::All)
            .await
            .unwrap();
        let mut live = pubsub
            .subscribe(component("Live"), filter("t/+"), ReceiveMode::All)
            .await
            .unwrap();
        for n in 0..100 {
            let queued = pubsub
                .publish(Client::Cli, topic("t/x"), numbered(n))
                .await
                .unwrap();
            assert_eq!(queued, 2);
            assert_eq!(number(&live.recv().await.unwrap()), n);
        }
        assert_eq!(live.dropped(), 0);

        // The stalled subscriber kept the newest four, in order, and counted the rest.
        let status = pubsub.subscriptions().await.unwrap();
        assert_eq!(
            status
                .iter()
                .map(|s| (s.id, s.queued, s.dropped))
                .collect::<Vec<_>>(),
            [(stalled.id(), 4, 96), (live.id(), 0, 0)]
        );
        assert_eq!(stalled.dropped(), 96);
        let mut kept = Vec::new();
        while let Ok(message) = stalled.try_recv() {
            kept.push(number(&message));
        }
        assert_eq!(kept, [96, 97, 98, 99]);
        assert_eq!(stalled.try_recv(), Err(TryRecvError::Empty));
        pubsub.shutdown().await;
    }

    #[tokio::test]
    async fn a_never_read_subscriber_holds_at_most_its_bytes() {
        let pubsub = PubSubHandle::spawn(Limits {
            subscriber_bytes: 3000,
            ..Limits::default()
        });
        let stalled = pubsub
            .subscribe(component("Stalled"), filter("big"), ReceiveMode::All)
            .await
            .unwrap();
        let kilobyte = || Payload::Binary(bytes::Bytes::from(vec![7u8; 1000]));
        for _ in 0..50 {
            pubsub
                .publish(Client::Cli, topic("big"), kilobyte())
                .await
                .unwrap();
        }
        let status = pubsub.subscriptions().await.unwrap();
        // Two messages of 1003 bytes (topic included) fit in 3000, a third does not.
        assert_eq!((status[0].queued, status[0].queued_bytes), (2, 2006));
        assert_eq!(stalled.dropped(), 48);
        pubsub.shutdown().await;
    }

    #[tokio::test]
    async fn subscriptions_of_one_group_share_its_budget_and_wake_up() {
        let pubsub = PubSubHandle::spawn(Limits::default());
        let group = Group::new(queue::Budget::new(2500));
        let mut a = pubsub
            .subscribe_in(component("C"), filter("a"), ReceiveMode::All, group.clone())
            .await
            .unwrap();
        let mut b = pubsub
            .subscribe_in(component("C"), filter("b"), ReceiveMode::All, group.clone())
            .await
            .unwrap();
        let kilobyte = || Payload::Binary(bytes::Bytes::from(vec![7u8; 1000]));
        for t in ["a", "a", "b"] {
            pubsub
                .publish(Client::Cli, topic(t), kilobyte())
                .await
                .unwrap();
        }
        // 1001 + 1001 from `a` leave no room for `b`'s 1001: the newest is dropped, since `b`
        // has nothing of its own to give.
        assert_eq!(group.used(), 2002);
        assert_eq!((a.dropped(), b.dropped()), (0, 1));
        group.ready().await;
        assert!(a.try_recv().is_ok());
        assert_eq!(b.try_recv(), Err(TryRecvError::Empty));
        pubsub
            .publish(Client::Cli, topic("b"), kilobyte())
            .await
            .unwrap();
        assert!(b.try_recv().is_ok());
        assert!(a.try_recv().is_ok());
        assert_eq!(group.used(), 0);
        pubsub.shutdown().await;
    }

    #[tokio::test]
    async fn receive_modes_apply_to_the_publishers_own_messages() {
        let pubsub = PubSubHandle::spawn(Limits::default());
        let me = component("com.example.Me");
        let wildcard = filter("t/#");
        let default_mode = ReceiveMode::default_for(&wildcard);
        assert_eq!(default_mode, ReceiveMode::FromOthers);
        let mut others_only = pubsub
            .subscribe(me.clone(), wildcard, default_mode)
            .await
            .unwrap();
        let mut everything = pubsub
            .subscribe(me.clone(), filter("t/#"), ReceiveMode::All)
            .await
            .unwrap();

        assert_eq!(
            pubsub.publish(me.clone(), topic("t/1"), numbered(1)).await,
            Ok(1)
        );
        assert_eq!(
            pubsub.publish(Client::Cli, topic("t/2"), numbered(2)).await,
            Ok(2)
        );

        assert_eq!(number(&everything.try_recv().unwrap()), 1);
        assert_eq!(number(&everything.try_recv().unwrap()), 2);
        let from_cli = others_only.try_recv().unwrap();
        assert_eq!((number(&from_cli), from_cli.topic.as_str()), (2, "t/2"));
        assert_eq!(others_only.try_recv(), Err(TryRecvError::Empty));
        pubsub.shutdown().await;
    }

    #[tokio::test]
    async fn dropping_a_subscription_unsubscribes_it() {
        let pubsub = PubSubHandle::spawn(Limits::default());
        let kept = pubsub
            .subscribe(Client::Cli, filter("t"), ReceiveMode::All)
            .await
            .unwrap();
        let dropped = pubsub
            .subscribe(Client::Cli, filter("t"), ReceiveMode::All)
            .await
            .unwrap();
        drop(dropped);
        let ids: Vec<_> = pubsub
            .subscriptions()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, [kept.id()]);
        assert_eq!(
            pubsub.publish(Client::Cli, topic("t"), numbered(0)).await,
            Ok(1)
        );
        pubsub.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_closes_subscriptions_after_what_is_queued() {
        let pubsub = PubSubHandle::spawn(Limits::default());
        let mut sub = pubsub
            .subscribe(Client::Cli, filter("#"), ReceiveMode::All)
            .await
            .unwrap();
        let binary = Payload::Binary(bytes::Bytes::from_static(b"\xff\x00"));
        pubsub
            .publish(Client::Cli, topic("a"), binary.clone())
            .await
            .unwrap();
        pubsub.shutdown().await;

        assert_eq!(sub.recv().await.map(|m| m.payload), Some(binary));
        assert_eq!(sub.recv().await, None);
        assert_eq!(sub.try_recv(), Err(TryRecvError::Closed));
        assert_eq!(
            pubsub.publish(Client::Cli, topic("a"), numbered(0)).await,
            Err(Stopped)
        );
        assert!(matches!(
            pubsub
                .subscribe(Client::Cli, filter("a"), ReceiveMode::All)
                .await,
            Err(Stopped)
        ));
        // A second shutdown is harmless.
        pubsub.shutdown().await;
    }

    #[tokio::test]
    async fn the_actor_stops_when_every_handle_is_dropped() {
        let pubsub = PubSubHandle::spawn(Limits::default());
        let mut sub = pubsub
            .subscribe(Client::Cli, filter("#"), ReceiveMode::All)
            .await
            .unwrap();
        drop(pubsub);
        assert_eq!(sub.recv().await, None);
    }
}
