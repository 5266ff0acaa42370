//! The broker connection: a [`Mqtt`] handle and the actor behind it.
//!
//! A poller task drives `rumqttc`'s event loop (MQTT 5 or 3.1.1, through `super::client`;
//! connecting, and reconnecting with doubling backoff after a failure) and passes every event to
//! the actor. The actor owns the subscriptions and the one message in flight: it sends the spool's
//! oldest message when connected and nothing is in flight, and deletes it from the spool when the
//! broker acknowledged it (QoS 1) or the connection wrote it (QoS 0). A message in flight when the
//! connection drops is sent again by `rumqttc` after the reconnect, with its packet id.

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

use super::client::{self, Client, Event, EventLoop, SendFailure, Settings};
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
        messages: Outbox<IncomingMessage>,
        reply: oneshot::Sender<Result<(), SubscribeError>>,
    },
    /// The spool has a new message.
    Wake,
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
            Self::Wake => f.write_str("Wake"),
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
            in_flight: None,
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
        topic::check_filter(filter, self.rules)
            .map_err(|e| SubscribeError::InvalidFilter(e.to_string()))?;
        let (messages, receiver) = match group {
            Some(group) => queue::channel(SUBSCRIBER_QUEUE, group),
            None => queue::solo(SUBSCRIBER_QUEUE),
        };
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
        answer.await.map_err(|_| SubscribeError::Stopped)??;
        Ok(receiver)
    }

    /// Disconnects and stops the actor; what is in the spool stays for the next start.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
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

struct Subscription {
    filter: String,
    matcher: Filter,
    at_least_once: bool,
    messages: Outbox<IncomingMessage>,
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
    in_flight: Option<InFlight>,
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
                    Some(Command::Wake) => self.pump().await,
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
        messages: Outbox<IncomingMessage>,
        reply: oneshot::Sender<Result<(), SubscribeError>>,
    ) {
        let matcher = match Filter::parse(&filter) {
            Ok(matcher) => matcher,
            Err(e) => {
                let _ = reply.send(Err(SubscribeError::InvalidFilter(e.to_string())));
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
            self.subscriptions.push(Subscription {
                filter,
                matcher,
                at_least_once,
                messages,
            });
        }
        if let Some((reply, result)) = reply {
            let _ = reply.send(result);
        }
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected(Err(code)) => {
                tracing::warn!(%code, "the MQTT broker refused the connection");
            }
            Event::Connected(Ok(())) => {
                tracing::info!("MQTT connected");
                self.last_failure = None;
                if self.connected_before {
                    self.counters.reconnects.inc();
                }
                self.connected_before = true;
                let _ = self.connected.send(true);
                self.resubscribe();
                self.pump().await;
            }
            Event::Message(message) => self.deliver(message),
            Event::PubAck { pkid, refused } => {
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

    fn deliver(&mut self, message: IncomingMessage) {
        // On MQTT 3.1.1 nothing tells the broker the client's limit: the client takes larger
        // packets (up to its own ceiling) so that one oversized message, retained above all,
        // is dropped here instead of ending the connection at every reconnect.
        if message.payload.len() > self.max_message_size as usize {
            if let Some(dropped) = self.oversized_received.note() {
                tracing::warn!(
                    topic = %message.topic,
                    bytes = message.payload.len(),
                    limit = self.max_message_size,
                    dropped,
                    "a message from the broker is over max_message_size_bytes; dropped"
                );
            }
            return;
        }
        let mut closed = false;
        for s in &self.subscriptions {
            if !s.matcher.matches_mqtt(&message.topic) {
                continue;
            }
            match s.messages.push(message.clone()) {
                Pushed::Queued => {}
                // 1, 2, 4, 8…: a stuck subscriber is reported without flooding the log.
                Pushed::Dropped { dropped } => {
                    if dropped.is_power_of_two() {
                        tracing::warn!(filter = %s.filter, dropped, "an IoT Core subscriber is behind; message dropped");
                    }
                }
                Pushed::ReceiverGone => closed = true,
            }
        }
        if closed {
            self.drop_closed();
        }
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
