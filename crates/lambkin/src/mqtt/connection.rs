//! The broker connection: a [`Mqtt`] handle and the actor behind it.
//!
//! A poller task drives `rumqttc`'s event loop (MQTT 5 or 3.1.1, through `super::client`;
//! connecting, and reconnecting with doubling backoff after a failure) and passes every event to
//! the actor. The actor owns the subscriptions and the one message in flight: it sends the spool's
//! oldest message when connected and nothing is in flight, and deletes it from the spool when the
//! broker acknowledged it (QoS 1) or the connection wrote it (QoS 0). A message in flight when the
//! connection drops is sent again by `rumqttc` after the reconnect, with its packet id. A message
//! published directly ([`Mqtt::publish_direct`], not spooled) goes to the client at once while
//! connected; the packet ids the client gives are told apart by the order of the requests
//! (`super::outbound`), so its acknowledgement is never taken for the spool's.
//!
//! Received QoS 1 messages are acknowledged by the actor (manual acks). A message for ordinary
//! subscriptions (IPC's SubscribeToIoTCore) is acknowledged once it is in their queues; a
//! message for a *durable* subscription ([`Mqtt::subscribe_durable`], a trigger's) comes with a
//! [`Receipt`] and is acknowledged only once every durable subscription it went to has
//! [accepted](Receipt::accept) it (stored it). A receipt [rejected](Receipt::reject) (the
//! subscriber could not store it: a full disk) leaves the message unacknowledged, and once the
//! durable queues have drained the connection is made again, after a pause that doubles while
//! rejections go on (`acks::Redelivery`), so that the broker sends it again (the session
//! outlives the connection): unacknowledged QoS 1 messages count against the receive maximum,
//! and the broker would send no more of them on this connection. Receipts of an earlier
//! connection acknowledge nothing; the broker sends those messages again.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::TlsConfiguration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use lambkin_proto::ipc::shapes::iot_core::MqttProperties;

use super::acks::{Acks, Held, Hold, Received, Redeliver, Redelivery};
use super::client::{self, Ack, Client, Event, EventLoop, SendFailure, Settings};
use super::outbound::{Handed, Outbound, Written};
use super::spool::{Spool, SpoolError, SpooledMessage};
use super::topic::{self, TopicRefused, TopicRules};
use crate::config::{MqttConfig, SpoolStorage};
use crate::metrics::counters::MqttCounters;
use crate::pubsub::queue::{self, Bounds, Group, Inbox, Outbox, Pushed, Weigh};
use crate::pubsub::Filter;

/// Commands waiting for the actor before callers wait.
const COMMANDS: usize = 256;
/// Events from the event loop waiting for the actor before the loop waits.
const EVENTS: usize = 256;
/// Requests the actor may queue for the event loop (one publish plus subscriptions).
const REQUESTS: usize = 1024;
/// Messages, and bytes, waiting for one subscription before the oldest are dropped (the local
/// pub/sub policy, `pubsub::queue`).
const SUBSCRIBER_QUEUE: Bounds = Bounds {
    items: match NonZeroUsize::new(256) {
        Some(n) => n,
        None => NonZeroUsize::MIN,
    },
    bytes: 8 * 1024 * 1024,
};

/// Messages waiting for one durable subscription. With QoS 1 a broker sends no more than the
/// connection's receive maximum (MQTT 5; a broker setting on 3.1.1) before they are
/// acknowledged, but not every broker keeps to it (mosquitto 2.0.11 does not when the client
/// also sends a Maximum Packet Size, as this one does). Past it a QoS 0 message is dropped and
/// a QoS 1 message left unacknowledged: once the durable queues have drained, the connection
/// is made again so that the broker sends those again (the session outlives the connection).
const DURABLE_QUEUE: usize = 1024;

/// The pause before a reconnect for messages a durable subscriber rejected (could not
/// store), at first and at most: doubling while rejections go on.
const REJECTED_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// Messages, and bytes, that match no subscription yet, held while the host starts (see
/// [`Mqtt::settled`]); past either a QoS 1 message is left unacknowledged (the broker resends
/// it after the reconnect [`Mqtt::settled`] asks for) and a QoS 0 message dropped.
const UNCLAIMED: (usize, usize) = (1024, 8 * 1024 * 1024);

/// A message for a durable subscription, with what acknowledges it.
#[derive(Debug)]
pub struct Delivery {
    pub message: IncomingMessage,
    /// `None` for a QoS 0 message (nothing to acknowledge).
    pub receipt: Option<Receipt>,
}

/// Acknowledges one received message to the broker once accepted.
#[derive(Debug)]
pub struct Receipt {
    id: u64,
    commands: mpsc::Sender<Command>,
}

impl Receipt {
    /// The subscriber has the message safe (stored): once every durable subscription that
    /// received it says so, the connection sends its PUBACK.
    pub async fn accept(self) {
        let _ = self.commands.send(Command::Accepted(self.id)).await;
    }

    /// The subscriber could not keep the message (its store failed): it stays
    /// unacknowledged, and the connection is made again later so that the broker sends it
    /// again.
    pub async fn reject(self) {
        let _ = self.commands.send(Command::Rejected(self.id)).await;
    }
}

/// A message for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub topic: String,
    pub at_least_once: bool,
    pub payload: Vec<u8>,
    pub properties: MqttProperties,
}

/// A message from the broker, for one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    pub topic: String,
    /// Received at QoS 1 (or 2), not 0.
    pub at_least_once: bool,
    pub payload: Bytes,
    pub properties: MqttProperties,
}

impl Weigh for IncomingMessage {
    fn weight(&self) -> usize {
        let p = &self.properties;
        let strings = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        self.topic.len()
            + self.payload.len()
            + p.user_properties
                .iter()
                .flatten()
                .map(|u| u.key.len() + u.value.len())
                .sum::<usize>()
            + p.correlation_data.as_ref().map_or(0, |c| c.0.len())
            + strings(&p.response_topic)
            + strings(&p.content_type)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    InvalidTopic(#[from] TopicRefused),
    #[error("Device is offline. Dropping QoS 0 message.")]
    OfflineQos0,
    #[error("payload of {size} bytes is over the {max}-byte maximum")]
    TooLarge { size: usize, max: u32 },
    #[error("{0}")]
    Spool(#[from] SpoolError),
    #[error("the MQTT connection has stopped")]
    Stopped,
    /// Published directly while the connection is down: nothing keeps it.
    #[error("the MQTT connection is down; the message is not kept")]
    Offline,
    #[error("the MQTT client did not take the message: {0}")]
    NotSent(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("{0}")]
    Refused(String),
    #[error("invalid topic filter: {0}")]
    InvalidFilter(String),
    #[error("the MQTT connection has stopped")]
    Stopped,
}

enum Command {
    Subscribe {
        filter: String,
        at_least_once: bool,
        messages: Sink,
        reply: oneshot::Sender<Result<(), SubscribeError>>,
    },
    /// A durable subscriber accepted the message of this receipt.
    Accepted(u64),
    /// A durable subscriber could not keep the message of this receipt.
    Rejected(u64),
    /// The host has made its subscriptions: messages no subscription claims are acknowledged
    /// and dropped from now on.
    Settled,
    /// The spool has a new message.
    Wake,
    /// Publish this message now, not spooled.
    PublishDirect {
        message: OutgoingMessage,
        reply: oneshot::Sender<Result<(), PublishError>>,
    },
    Stop(oneshot::Sender<()>),
}

enum LoopEvent {
    Event(Event),
    Down(String),
}

/// The handle: cloneable, shared by every IPC connection.
#[derive(Debug, Clone)]
pub struct Mqtt {
    commands: mpsc::Sender<Command>,
    spool: Spool,
    connected: watch::Receiver<bool>,
    keep_qos0_when_offline: bool,
    max_message_size: u32,
    rules: TopicRules,
    counters: Arc<MqttCounters>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Subscribe { filter, .. } => write!(f, "Subscribe({filter})"),
            Self::Accepted(id) => write!(f, "Accepted({id})"),
            Self::Rejected(id) => write!(f, "Rejected({id})"),
            Self::Settled => f.write_str("Settled"),
            Self::Wake => f.write_str("Wake"),
            Self::PublishDirect { message, .. } => write!(f, "PublishDirect({})", message.topic),
            Self::Stop(_) => f.write_str("Stop"),
        }
    }
}

impl Mqtt {
    /// Opens the spool under `state_dir` and starts connecting to the broker of `config`.
    pub fn start(config: &MqttConfig, thing_name: &str, state_dir: &Path) -> anyhow::Result<Self> {
        let broker = config.broker().map_err(anyhow::Error::msg)?;
        let client_id = config
            .client_id
            .clone()
            .unwrap_or_else(|| thing_name.to_owned());
        let tls = if broker.tls {
            let tls = super::tls::client_config(config, broker.port).map_err(anyhow::Error::msg)?;
            Some(TlsConfiguration::Rustls(tls))
        } else {
            None
        };
        let rules = TopicRules::for_broker(&broker.host, config.version);
        let spool_path = state_dir.join("spool.db");
        let spool = Spool::open(
            match config.spool.storage_type {
                SpoolStorage::Disk => Some(spool_path.as_path()),
                SpoolStorage::Memory => None,
            },
            config.spool.max_size_bytes,
        )?;
        let (client, eventloop) = client::new(Settings {
            version: config.version,
            client_id,
            host: broker.host.clone(),
            port: broker.port,
            keep_alive: Duration::from_secs(config.keep_alive_seconds),
            max_message_size: config.max_message_size_bytes,
            session_expiry_seconds: config.session_expiry_seconds,
            tls,
            requests: REQUESTS,
        });
        let (events_tx, events_rx) = mpsc::channel(EVENTS);
        let backoff = (
            Duration::from_millis(config.reconnect_min_ms),
            Duration::from_millis(config.reconnect_max_ms),
        );
        let poller = tokio::spawn(poll(eventloop, events_tx, backoff));
        let (commands_tx, commands_rx) = mpsc::channel(COMMANDS);
        let (connected_tx, connected_rx) = watch::channel(false);
        let counters = Arc::new(MqttCounters::default());
        let actor = Actor {
            client,
            spool: spool.clone(),
            connected: connected_tx,
            subscriptions: Vec::new(),
            commands: commands_tx.clone(),
            acks: Acks::default(),
            unclaimed: Some(Held::new(UNCLAIMED.0, UNCLAIMED.1)),
            redelivery: Redelivery::new(REJECTED_RETRY.0, REJECTED_RETRY.1),
            redeliver_at: None,
            in_flight: None,
            outbound: Outbound::default(),
            subscribes_sent: VecDeque::new(),
            subacks: HashMap::new(),
            last_failure: None,
            without_client_certificate: broker.tls && config.cert.is_none(),
            rules,
            max_message_size: config.max_message_size_bytes,
            oversized_received: crate::logfile::Noted::default(),
            unsendable: 0,
            poller,
            connected_before: false,
            counters: counters.clone(),
        };
        tokio::spawn(actor.run(commands_rx, events_rx));
        tracing::info!(url = %config.url, version = ?config.version, "MQTT connection starting");
        Ok(Self {
            commands: commands_tx,
            spool,
            connected: connected_rx,
            keep_qos0_when_offline: config.spool.keep_qos0_when_offline,
            max_message_size: config.max_message_size_bytes,
            rules,
            counters,
        })
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Reconnections, and each component's messages and bytes, so far.
    /// The largest payload the broker takes (`max_message_size_bytes`).
    pub fn max_message_size(&self) -> u32 {
        self.max_message_size
    }

    pub fn counters(&self) -> &MqttCounters {
        &self.counters
    }

    /// Messages and bytes waiting in the spool.
    pub fn spool_usage(&self) -> Result<(u64, u64), SpoolError> {
        self.spool.usage()
    }

    /// Accepts `message` for the broker: on disk when this returns `Ok`. A message the
    /// broker would not take (its topic, or a property, breaks MQTT's or AWS IoT Core's
    /// rules, `super::topic`) is refused here rather than spooled, where it would hold up
    /// every message behind it.
    pub async fn publish(&self, message: OutgoingMessage) -> Result<(), PublishError> {
        topic::check_topic(&message.topic, self.rules)?;
        topic::check_properties(&message.properties)?;
        let size = message.payload.len();
        if size > self.max_message_size as usize {
            return Err(PublishError::TooLarge {
                size,
                max: self.max_message_size,
            });
        }
        if !message.at_least_once && !self.keep_qos0_when_offline && !self.is_connected() {
            return Err(PublishError::OfflineQos0);
        }
        let mut properties = message.properties;
        let retain = properties.retain.take().unwrap_or(false);
        let spooled = SpooledMessage {
            id: 0,
            topic: message.topic,
            qos: u8::from(message.at_least_once),
            retain,
            payload: message.payload,
            properties: serde_json::to_string(&properties).unwrap_or_default(),
        };
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.add(&spooled))
            .await
            .map_err(|_| PublishError::Stopped)??;
        // A full queue already holds a wake-up.
        let _ = self.commands.try_send(Command::Wake);
        Ok(())
    }

    /// Publishes `message` now, past the spool (for what is worthless later: an answer to a
    /// request whose requester is waiting): refused while the connection is down, never kept
    /// across a reconnect or a restart. A QoS 1 message handed to the connection is sent again
    /// by the client after a reconnect, as any unacknowledged one.
    pub async fn publish_direct(&self, message: OutgoingMessage) -> Result<(), PublishError> {
        topic::check_topic(&message.topic, self.rules)?;
        topic::check_properties(&message.properties)?;
        let size = message.payload.len();
        if size > self.max_message_size as usize {
            return Err(PublishError::TooLarge {
                size,
                max: self.max_message_size,
            });
        }
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::PublishDirect { message, reply })
            .await
            .map_err(|_| PublishError::Stopped)?;
        answer.await.map_err(|_| PublishError::Stopped)?
    }

    /// Subscribes to `filter` at the broker; messages arrive on the returned inbox until it
    /// is dropped, in a queue of their own, bounded as local pub/sub's (a subscriber that
    /// falls behind loses the oldest). Answers after the broker's SUBACK, or at once while
    /// offline (the subscription is made when the connection comes up).
    pub async fn subscribe(
        &self,
        filter: &str,
        at_least_once: bool,
    ) -> Result<Inbox<IncomingMessage>, SubscribeError> {
        self.subscribe_with(filter, at_least_once, None).await
    }

    /// As [`subscribe`](Self::subscribe), with the subscription's queue in `group` (an IPC
    /// connection's, which reads all its subscriptions with one task and one byte budget).
    pub async fn subscribe_in(
        &self,
        filter: &str,
        at_least_once: bool,
        group: Arc<Group>,
    ) -> Result<Inbox<IncomingMessage>, SubscribeError> {
        self.subscribe_with(filter, at_least_once, Some(group))
            .await
    }

    async fn subscribe_with(
        &self,
        filter: &str,
        at_least_once: bool,
        group: Option<Arc<Group>>,
    ) -> Result<Inbox<IncomingMessage>, SubscribeError> {
        let (messages, receiver) = match group {
            Some(group) => queue::channel(SUBSCRIBER_QUEUE, group),
            None => queue::solo(SUBSCRIBER_QUEUE),
        };
        self.send_subscribe(filter, at_least_once, Sink::Queue(messages))
            .await?;
        Ok(receiver)
    }

    /// Subscribes to `filter` (QoS 1; a `$share/GROUP/FILTER` on MQTT 5) so that nothing
    /// received is lost: each QoS 1 message comes with a [`Receipt`], and the broker is
    /// acknowledged only once the receipt is accepted (see the module's documentation).
    /// Messages arrive in the order the broker sent them.
    pub async fn subscribe_durable(
        &self,
        filter: &str,
    ) -> Result<mpsc::Receiver<Delivery>, SubscribeError> {
        let (messages, receiver) = mpsc::channel(DURABLE_QUEUE);
        self.send_subscribe(filter, true, Sink::Durable(messages))
            .await?;
        Ok(receiver)
    }

    async fn send_subscribe(
        &self,
        filter: &str,
        at_least_once: bool,
        messages: Sink,
    ) -> Result<(), SubscribeError> {
        topic::check_filter(filter, self.rules)
            .map_err(|e| SubscribeError::InvalidFilter(e.to_string()))?;
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Subscribe {
                filter: filter.to_owned(),
                at_least_once,
                messages,
                reply,
            })
            .await
            .map_err(|_| SubscribeError::Stopped)?;
        answer.await.map_err(|_| SubscribeError::Stopped)?
    }

    /// Says the host has made the subscriptions it starts with (its components' triggers).
    /// Until then a message that matches no subscription is held, unacknowledged, for a
    /// subscription still to come: the session outlives the connection, so the broker sends
    /// what it kept for the host as soon as it connects, before the triggers subscribe again.
    /// From then on such a message is acknowledged and dropped, as MQTT has it.
    pub async fn settled(&self) {
        let _ = self.commands.send(Command::Settled).await;
    }

    /// Disconnects and stops the actor; what is in the spool stays for the next start.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Returns at `at`, or never when there is none.
async fn wait_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Drives the event loop forever, reconnecting with backoff after each failure.
async fn poll(
    mut eventloop: EventLoop,
    events: mpsc::Sender<LoopEvent>,
    (min, max): (Duration, Duration),
) {
    let mut backoff = Backoff::new(min, max);
    loop {
        let event = match eventloop.poll().await {
            Ok(event) => {
                if matches!(event, Event::Connected(Ok(()))) {
                    backoff.connected(std::time::Instant::now());
                }
                LoopEvent::Event(event)
            }
            Err(reason) => LoopEvent::Down(reason),
        };
        let down = matches!(event, LoopEvent::Down(_));
        if events.send(event).await.is_err() {
            return;
        }
        if down {
            // Paces reconnection attempts; not a synchronisation.
            tokio::time::sleep(backoff.down(std::time::Instant::now())).await;
        }
    }
}

/// How long to wait before the next connection attempt: doubling from `min` up to `max` while
/// connections fail, and back to `min` only once a connection stayed up for
/// [`STABLE_CONNECTION`], so a broker that accepts and then drops the connection at once (a
/// message the client cannot take, say) is retried at `max`, not ten times a second.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    connected_at: Option<std::time::Instant>,
}

/// A connection that lasted this long was a good one: the backoff starts over.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
            connected_at: None,
        }
    }

    fn connected(&mut self, at: std::time::Instant) {
        self.connected_at = Some(at);
    }

    /// The connection went down (or an attempt failed) at `at`: the pause before the next.
    fn down(&mut self, at: std::time::Instant) -> Duration {
        if self
            .connected_at
            .take()
            .is_some_and(|since| at.saturating_duration_since(since) >= STABLE_CONNECTION)
        {
            self.next = self.min;
        }
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }
}

/// Where a subscription's messages go.
enum Sink {
    /// Acknowledged once queued; the queue drops its oldest when full.
    Queue(Outbox<IncomingMessage>),
    /// Acknowledged once the subscriber accepts the message.
    Durable(mpsc::Sender<Delivery>),
}

impl Sink {
    fn is_closed(&self) -> bool {
        match self {
            Self::Queue(outbox) => outbox.is_closed(),
            Self::Durable(sender) => sender.is_closed(),
        }
    }
}

struct Subscription {
    filter: String,
    /// What messages are matched against: the filter, or a shared subscription's filter
    /// without its `$share/GROUP/`.
    matcher: Filter,
    at_least_once: bool,
    messages: Sink,
}

struct InFlight {
    id: i64,
    at_least_once: bool,
    /// Known once the connection wrote it.
    pkid: Option<u16>,
}

struct Actor {
    client: Client,
    spool: Spool,
    connected: watch::Sender<bool>,
    subscriptions: Vec<Subscription>,
    /// For receipts.
    commands: mpsc::Sender<Command>,
    /// Received messages of this connection that durable subscribers have not all accepted.
    acks: Acks<Ack>,
    /// Messages no subscription matched, held until [`Mqtt::settled`] for subscriptions still
    /// to come; `None` once settled.
    unclaimed: Option<Held<(IncomingMessage, Option<Ack>)>>,
    /// QoS 1 messages left unacknowledged on this connection (a full durable queue, a
    /// rejected receipt): when to connect again so that the broker resends them.
    redelivery: Redelivery,
    /// When the next reconnect for rejected messages is due, if one is waiting.
    redeliver_at: Option<tokio::time::Instant>,
    in_flight: Option<InFlight>,
    /// Whose each written PUBLISH and PUBACK is: the spool's or a direct message's.
    outbound: Outbound,
    /// Subscribe requests handed to the client, in order, waiting for their packet id.
    subscribes_sent: VecDeque<Option<oneshot::Sender<Result<(), SubscribeError>>>>,
    /// Subscribe requests written, by packet id, waiting for their SUBACK.
    subacks: HashMap<u16, Option<oneshot::Sender<Result<(), SubscribeError>>>>,
    /// Why the last connection attempt failed, so that a repeated failure is logged once.
    last_failure: Option<String>,
    /// `mqtts://` without `cert`/`key`: a broker that wants one just closes the connection,
    /// so failures say so.
    without_client_certificate: bool,
    rules: TopicRules,
    /// The largest payload sent: a message spooled under an earlier, larger limit is not
    /// sent (the configuration says what the broker takes).
    max_message_size: u32,
    /// Messages from the broker over `max_message_size` (dropped).
    oversized_received: crate::logfile::Noted,
    /// Spooled messages dropped because they cannot be sent (accepted by an older host, or
    /// refused by the client), so far.
    unsendable: u64,
    poller: JoinHandle<()>,
    /// Whether a connection was made before, so the next one is a reconnect.
    connected_before: bool,
    counters: Arc<MqttCounters>,
}

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::Receiver<LoopEvent>,
    ) {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Subscribe { filter, at_least_once, messages, reply }) => {
                        self.subscribe(filter, at_least_once, messages, reply);
                    }
                    Some(Command::Accepted(id)) => self.accepted(id),
                    Some(Command::Rejected(id)) => self.rejected(id),
                    Some(Command::Settled) => self.settle(),
                    Some(Command::Wake) => self.pump().await,
                    Some(Command::PublishDirect { message, reply }) => {
                        let _ = reply.send(self.publish_direct(message));
                    }
                    Some(Command::Stop(done)) => {
                        self.client.try_disconnect();
                        self.poller.abort();
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.poller.abort();
                        return;
                    }
                },
                () = wait_until(self.redeliver_at) => {
                    self.redeliver_at = None;
                    self.redeliver();
                }
                event = events.recv() => match event {
                    Some(LoopEvent::Event(event)) => self.on_event(event).await,
                    Some(LoopEvent::Down(reason)) => self.on_down(&reason),
                    None => return,
                },
            }
        }
    }

    fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    fn subscribe(
        &mut self,
        filter: String,
        at_least_once: bool,
        messages: Sink,
        reply: oneshot::Sender<Result<(), SubscribeError>>,
    ) {
        let matched = topic::subscribed(&filter)
            .map_err(|e| e.to_string())
            .and_then(|s| Filter::parse(s.filter).map_err(|e| e.to_string()));
        let matcher = match matched {
            Ok(matcher) => matcher,
            Err(e) => {
                let _ = reply.send(Err(SubscribeError::InvalidFilter(e)));
                return;
            }
        };
        let reply = if self.is_connected() {
            match self.client.try_subscribe(filter.clone(), at_least_once) {
                Ok(()) => {
                    self.subscribes_sent.push_back(Some(reply));
                    None
                }
                Err(e) => Some((reply, Err(SubscribeError::Refused(e)))),
            }
        } else {
            Some((reply, Ok(())))
        };
        let refused = matches!(reply, Some((_, Err(_))));
        if !refused {
            let claimed = self.claim(&matcher);
            self.subscriptions.push(Subscription {
                filter,
                matcher,
                at_least_once,
                messages,
            });
            for (message, ack) in claimed {
                self.deliver(message, ack);
            }
        }
        if let Some((reply, result)) = reply {
            let _ = reply.send(result);
        }
    }

    /// Takes the held messages `matcher` matches, in order.
    fn claim(&mut self, matcher: &Filter) -> Vec<(IncomingMessage, Option<Ack>)> {
        let Some(unclaimed) = &mut self.unclaimed else {
            return Vec::new();
        };
        unclaimed.claim(|(m, _)| matcher.matches_mqtt(&m.topic))
    }

    /// The host's subscriptions are made: what no one claimed is acknowledged and dropped.
    fn settle(&mut self) {
        let Some(mut unclaimed) = self.unclaimed.take() else {
            return;
        };
        let unclaimed = unclaimed.take_all();
        if !unclaimed.is_empty() {
            tracing::info!(
                messages = unclaimed.len(),
                "messages the broker kept for this host's session match no subscription; dropped"
            );
        }
        for (_, ack) in unclaimed {
            if let Some(ack) = ack {
                self.acknowledge(&ack);
            }
        }
        // What did not fit while held is asked for again, now that the subscriptions are
        // made (once what they claimed has drained).
        self.redeliver();
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected(Err(code)) => {
                tracing::warn!(%code, "the MQTT broker refused the connection");
            }
            Event::Connected(Ok(())) => {
                tracing::info!("MQTT connected");
                self.last_failure = None;
                // The broker sends what the last connection left unacknowledged again.
                self.acks.reconnected();
                self.redelivery.reconnected();
                self.redeliver_at = None;
                // Their acknowledgements were the last connection's: the broker resends them.
                if let Some(unclaimed) = &mut self.unclaimed {
                    unclaimed.take_all();
                }
                if self.connected_before {
                    self.counters.reconnects.inc();
                }
                self.connected_before = true;
                let _ = self.connected.send(true);
                self.resubscribe();
                self.pump().await;
            }
            Event::Message { message, ack } => self.deliver(message, ack),
            Event::PubAck { pkid, refused } => {
                if self.outbound.acknowledged(pkid) {
                    if let Some(reason) = refused {
                        tracing::warn!(%reason, "the MQTT broker refused a message published directly");
                    }
                    return;
                }
                let Some(in_flight) = &self.in_flight else {
                    return;
                };
                if in_flight.pkid != Some(pkid) {
                    return;
                }
                if let Some(reason) = refused {
                    tracing::warn!(%reason, "the MQTT broker refused a message; dropped");
                }
                self.delivered().await;
            }
            Event::SubAck { pkid, result } => {
                let Some(reply) = self.subacks.remove(&pkid).flatten() else {
                    return;
                };
                let _ = reply.send(result.map_err(SubscribeError::Refused));
            }
            Event::Published(pkid) => {
                let spooled = self.in_flight.as_ref().and_then(|f| f.pkid);
                match self.outbound.written(pkid, spooled) {
                    Written::Spooled => {}
                    Written::Direct | Written::Resent => return,
                }
                let Some(in_flight) = &mut self.in_flight else {
                    return;
                };
                if in_flight.at_least_once {
                    in_flight.pkid = Some(pkid);
                } else {
                    self.delivered().await;
                }
            }
            Event::Subscribed(pkid) => {
                let reply = self.subscribes_sent.pop_front().flatten();
                self.subacks.insert(pkid, reply);
            }
            Event::Disconnected(reason) => {
                tracing::warn!(%reason, "the MQTT broker disconnected");
            }
            Event::Other => {}
        }
    }

    fn on_down(&mut self, reason: &str) {
        if self.is_connected() {
            tracing::warn!(%reason, "MQTT connection lost; reconnecting");
        } else if self.last_failure.as_deref() != Some(reason) {
            // Each new reason once (a wrong CA, a refused certificate, a broker that is
            // down); the same failure again, attempt after attempt, only at debug level.
            if self.without_client_certificate {
                tracing::warn!(
                    %reason,
                    note = "mqtt.cert and mqtt.key are not set: a broker that requires a client \
                            certificate (as AWS IoT Core does) closes the connection",
                    "MQTT connection failed; retrying with backoff"
                );
            } else {
                tracing::warn!(%reason, "MQTT connection failed; retrying with backoff");
            }
        } else {
            tracing::debug!(%reason, "MQTT connection attempt failed");
        }
        self.last_failure = Some(reason.to_owned());
        let _ = self.connected.send(false);
        // Subscriptions are made again after the reconnect; their callers need not wait.
        for reply in self
            .subscribes_sent
            .drain(..)
            .chain(self.subacks.drain().map(|(_, reply)| reply))
            .flatten()
        {
            let _ = reply.send(Ok(()));
        }
    }

    /// After a (re)connection: every filter once, at the highest QoS asked for it.
    fn resubscribe(&mut self) {
        self.subscriptions.retain(|s| !s.messages.is_closed());
        let mut filters: Vec<(String, bool)> = Vec::new();
        for s in &self.subscriptions {
            match filters.iter_mut().find(|(f, _)| *f == s.filter) {
                Some((_, at_least_once)) => *at_least_once |= s.at_least_once,
                None => filters.push((s.filter.clone(), s.at_least_once)),
            }
        }
        for (filter, at_least_once) in filters {
            match self.client.try_subscribe(filter.clone(), at_least_once) {
                Ok(()) => self.subscribes_sent.push_back(None),
                Err(e) => tracing::warn!(%filter, error = %e, "cannot subscribe again"),
            }
        }
    }

    /// Hands `message` to the client now, past the spool: only while connected.
    fn publish_direct(&mut self, message: OutgoingMessage) -> Result<(), PublishError> {
        if !self.is_connected() {
            return Err(PublishError::Offline);
        }
        let mut properties = message.properties;
        let retain = properties.retain.take().unwrap_or(false);
        let at_least_once = message.at_least_once;
        match self.client.try_publish(
            message.topic,
            at_least_once,
            retain,
            message.payload,
            properties,
        ) {
            Ok(()) => {
                self.outbound.handed(Handed::Direct { at_least_once });
                Ok(())
            }
            Err(SendFailure::Refused(why) | SendFailure::Busy(why)) => {
                Err(PublishError::NotSent(why))
            }
        }
    }

    /// Acknowledges `ack` now.
    fn acknowledge(&self, ack: &Ack) {
        if let Err(e) = self.client.try_ack(ack) {
            // Not acknowledged: the broker sends it again after the next reconnect.
            tracing::warn!(error = %e, "cannot acknowledge a received MQTT message");
        }
    }

    /// A durable subscriber accepted a message: acknowledged once all have.
    fn accepted(&mut self, id: u64) {
        if let Some(ack) = self.acks.accepted(id) {
            self.acknowledge(&ack);
        }
        self.redelivery.accepted();
        self.redeliver();
    }

    /// A durable subscriber could not keep a message: never acknowledged on this connection,
    /// the broker sends it again after a reconnect.
    fn rejected(&mut self, id: u64) {
        if self.acks.rejected(id) {
            let rejected = self.redelivery.rejected();
            // 1, 2, 4, 8…: reported without flooding the log (the subscriber names each).
            if rejected.is_power_of_two() {
                tracing::warn!(
                    rejected,
                    "a durable IoT Core subscriber could not keep a message; left to the broker until a reconnect"
                );
            }
        }
        self.redeliver();
    }

    /// Reconnects, once the durable queues have drained, so that the broker sends again what
    /// this connection left unacknowledged (at once for a full queue, after a pause for
    /// rejected messages: see `acks::Redelivery`).
    fn redeliver(&mut self) {
        let messages = self.redelivery.unacknowledged();
        // Not before the host has subscribed: the broker's resent messages would meet no
        // subscription again.
        let drained = self.unclaimed.is_none() && self.durable_queues_empty();
        match self.redelivery.check(std::time::Instant::now(), drained) {
            Redeliver::Wait => {}
            Redeliver::At(due) => self.redeliver_at = Some(due.into()),
            Redeliver::Now => {
                self.redeliver_at = None;
                tracing::warn!(
                    messages,
                    "reconnecting to the MQTT broker so that it sends again the messages left unacknowledged"
                );
                // The session stays: the broker sends what is unacknowledged when it is back.
                self.client.try_disconnect();
            }
        }
    }

    /// Whether every durable subscription has taken all its messages.
    fn durable_queues_empty(&self) -> bool {
        self.subscriptions.iter().all(|s| match &s.messages {
            Sink::Durable(sender) => sender.capacity() == sender.max_capacity(),
            Sink::Queue(_) => true,
        })
    }

    /// Hands `message` to the subscriptions it matches; acknowledges it (QoS 1, `ack`) now
    /// unless a durable subscription took it, whose receipt does.
    fn deliver(&mut self, message: IncomingMessage, ack: Option<Ack>) {
        // Refused before anything holds it (acknowledged: it would come back the same).
        if self.oversized(&message) {
            if let Some(ack) = ack {
                self.acknowledge(&ack);
            }
            return;
        }
        if let Some(unclaimed) = &mut self.unclaimed {
            if !self
                .subscriptions
                .iter()
                .any(|s| s.matcher.matches_mqtt(&message.topic))
            {
                let weight = message.weight();
                if let Hold::Full((message, ack)) = unclaimed.hold((message, ack), weight) {
                    if ack.is_some() {
                        // Not acknowledged: the broker sends it again after the reconnect
                        // that settling asks for.
                        let left_behind = self.redelivery.left_behind();
                        if left_behind.is_power_of_two() {
                            tracing::warn!(
                                topic = %message.topic,
                                left_behind,
                                "too many messages of the broker's session wait for a subscription (1,024 or 8 MiB); left to the broker until a reconnect"
                            );
                        }
                    }
                }
                return;
            }
        }
        let durable = self.fan_out(message, ack.is_some());
        let Some(ack) = ack else { return };
        if let Received::Now(ack) = self.acks.received(ack, durable) {
            self.acknowledge(&ack);
        }
    }

    /// Whether `message` is over `max_message_size_bytes` (then dropped, with a warning). On
    /// MQTT 3.1.1 nothing tells the broker the client's limit: the client takes larger
    /// packets (up to its own ceiling) so that one oversized message, retained above all, is
    /// dropped here instead of ending the connection at every reconnect.
    fn oversized(&mut self, message: &IncomingMessage) -> bool {
        if message.payload.len() <= self.max_message_size as usize {
            return false;
        }
        if let Some(dropped) = self.oversized_received.note() {
            tracing::warn!(
                topic = %message.topic,
                bytes = message.payload.len(),
                limit = self.max_message_size,
                dropped,
                "a message from the broker is over max_message_size_bytes; dropped"
            );
        }
        true
    }

    /// Queues `message` for its subscriptions (receipts carrying the next receipt id when it
    /// is `acknowledged`, QoS 1); how many durable subscriptions took it.
    fn fan_out(&mut self, message: IncomingMessage, acknowledged: bool) -> usize {
        let mut closed = false;
        let id = self.acks.next_id();
        let mut durable = 0usize;
        let mut left_behind = 0u64;
        for s in &self.subscriptions {
            if !s.matcher.matches_mqtt(&message.topic) {
                continue;
            }
            match &s.messages {
                Sink::Queue(outbox) => match outbox.push(message.clone()) {
                    Pushed::Queued => {}
                    // 1, 2, 4, 8…: a stuck subscriber is reported without flooding the log.
                    Pushed::Dropped { dropped } => {
                        if dropped.is_power_of_two() {
                            tracing::warn!(filter = %s.filter, dropped, "an IoT Core subscriber is behind; message dropped");
                        }
                    }
                    Pushed::ReceiverGone => closed = true,
                },
                Sink::Durable(sender) => {
                    let receipt = acknowledged.then(|| Receipt {
                        id,
                        commands: self.commands.clone(),
                    });
                    let delivery = Delivery {
                        message: message.clone(),
                        receipt,
                    };
                    match sender.try_send(delivery) {
                        Ok(()) => durable += 1,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            // Not acknowledged: it comes again after a reconnect.
                            durable += usize::from(acknowledged);
                            left_behind += u64::from(acknowledged);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
                    }
                }
            }
        }
        if closed {
            self.drop_closed();
        }
        for _ in 0..left_behind {
            let left_behind = self.redelivery.left_behind();
            // 1, 2, 4, 8…: reported without flooding the log.
            if left_behind.is_power_of_two() {
                tracing::warn!(
                    topic = %message.topic,
                    left_behind,
                    "a durable IoT Core subscriber is behind (the broker sent more than the receive maximum); the message is left to the broker until the next reconnect"
                );
            }
        }
        durable
    }

    /// Forgets subscriptions whose streams ended, unsubscribing filters nobody wants.
    fn drop_closed(&mut self) {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.subscriptions)
            .into_iter()
            .partition(|s| s.messages.is_closed());
        self.subscriptions = kept;
        for s in gone {
            if self.is_connected() && !self.subscriptions.iter().any(|k| k.filter == s.filter) {
                let _ = self.client.try_unsubscribe(s.filter);
            }
        }
    }

    /// The message in flight reached the broker: off the spool, and the next one goes.
    async fn delivered(&mut self) {
        if let Some(in_flight) = self.in_flight.take() {
            let spool = self.spool.clone();
            let removed = tokio::task::spawn_blocking(move || spool.remove(in_flight.id)).await;
            if !matches!(removed, Ok(Ok(()))) {
                tracing::error!("cannot remove a delivered message from the MQTT spool");
            }
        }
        self.pump().await;
    }

    /// Sends the spool's oldest message when connected and nothing is in flight. A message
    /// that cannot be sent (the broker's rules, or the client, refuse it) is dropped from the
    /// spool, logged and counted, and the next one goes: left at the head, it would be tried
    /// forever, also after a restart, and hold up every message behind it.
    async fn pump(&mut self) {
        loop {
            if self.in_flight.is_some() || !self.is_connected() {
                return;
            }
            let spool = self.spool.clone();
            let head = match tokio::task::spawn_blocking(move || spool.head()).await {
                Ok(Ok(Some(head))) => head,
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read the MQTT spool");
                    return;
                }
                Err(_) => return,
            };
            let at_least_once = head.qos > 0;
            let properties: MqttProperties =
                serde_json::from_str(&head.properties).unwrap_or_default();
            let checked = topic::check_topic(&head.topic, self.rules)
                .and_then(|()| topic::check_properties(&properties))
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    // Spooled under an earlier, larger `max_message_size_bytes`.
                    let size = head.payload.len();
                    let max = self.max_message_size;
                    if size > max as usize {
                        Err(PublishError::TooLarge { size, max }.to_string())
                    } else {
                        Ok(())
                    }
                });
            if let Err(reason) = checked {
                if !self.discard(head.id, &head.topic, &reason).await {
                    return;
                }
                continue;
            }
            let sent = self.client.try_publish(
                head.topic.clone(),
                at_least_once,
                head.retain,
                head.payload,
                properties,
            );
            match sent {
                Ok(()) => {
                    self.outbound.handed(Handed::Spooled);
                    self.in_flight = Some(InFlight {
                        id: head.id,
                        at_least_once,
                        pkid: None,
                    });
                    return;
                }
                Err(SendFailure::Refused(reason)) => {
                    if !self.discard(head.id, &head.topic, &reason).await {
                        return;
                    }
                }
                // The request queue is full or the event loop is gone: the message stays at
                // the head for the next try.
                Err(SendFailure::Busy(e)) => {
                    tracing::error!(error = %e, "cannot hand a message to the MQTT client");
                    return;
                }
            }
        }
    }

    /// Drops an unsendable message from the spool; `false` if it could not be removed (the
    /// caller then stops, rather than meeting it again at once).
    async fn discard(&mut self, id: i64, topic: &str, reason: &str) -> bool {
        self.unsendable += 1;
        tracing::error!(
            %topic,
            %reason,
            dropped = self.unsendable,
            "a spooled message cannot be sent to the broker; dropped from the spool"
        );
        let spool = self.spool.clone();
        let removed = tokio::task::spawn_blocking(move || spool.remove(id)).await;
        if matches!(removed, Ok(Ok(()))) {
            true
        } else {
            tracing::error!("cannot remove an unsendable message from the MQTT spool");
            false
        }
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn failed_attempts_wait_twice_as_long_each_time_up_to_the_maximum() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(1500));
        let mut b = Backoff::new(min, max);
        let t0 = std::time::Instant::now();
        let pauses: Vec<u128> = (0..7).map(|_| b.down(t0).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1500, 1500, 1500]);
    }

    #[test]
    fn the_backoff_starts_over_only_after_a_connection_that_lasted() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(30));
        let mut b = Backoff::new(min, max);
        let t0 = std::time::Instant::now();
        assert_eq!(b.down(t0), min);
        // Connected, then dropped at once, again and again: the pause keeps growing.
        let mut pauses = Vec::new();
        for i in 1..12u64 {
            let at = t0 + Duration::from_secs(i);
            b.connected(at);
            pauses.push(b.down(at + Duration::from_millis(50)));
        }
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]), "{pauses:?}");
        assert_eq!(pauses.last().copied(), Some(max));
        // A connection that stayed up: the next failure is retried quickly.
        let at = t0 + Duration::from_secs(100);
        b.connected(at);
        assert_eq!(b.down(at + STABLE_CONNECTION), min);
    }
}
