//! Topics that trigger Lambda functions: a Lambda component's `pubsubTopics`
//! (`greengrass-reference.md` §1.3).
//!
//! Each entry (wildcards allowed) becomes a subscription of the component: an entry of type
//! `PUB_SUB` a local pub/sub subscription, as [`Client::Component`] in [`ReceiveMode::All`];
//! an entry of type `IOT_CORE` a subscription at the broker, at QoS 1, through the host's
//! MQTT connection ([`Mqtt::subscribe`], made again after every reconnect). Every message
//! either receives becomes one asynchronous invocation of the component's function:
//!
//! - the event is the message: a JSON message's document, serialized, or a binary message's
//!   bytes (a broker message is bytes); a function whose `inputPayloadEncodingType` is
//!   `json` gets only JSON: a binary message that is not JSON is dropped with a warning, as
//!   the Invoke API refuses it;
//! - the concrete topic reaches the handler as `context.client_context.custom["subject"]`,
//!   as in Greengrass: the invocation carries the client context
//!   `{"custom":{"subject":"<topic>"}}`;
//! - messages of one entry are submitted in the order they arrive, one at a time (the next
//!   is submitted once the function has admitted the previous one); two entries are two
//!   subscriptions, each in its own order; the function's lifecycle (pinned or on demand,
//!   `maxInstancesCount`, `maxQueueSize`) then decides when each runs;
//! - a local message meeting a full function queue is dropped: there is no caller to answer,
//!   so it is counted and logged (at 1, 2, 4, 8… drops).
//!
//! An `IOT_CORE` entry may name an MQTT 5 shared subscription, `$share/GROUP/FILTER`: the
//! broker hands each message to one of the group's subscribers, so hosts subscribed with the
//! same group split the topic's messages (MQTT 3.1.1 has none: such an entry triggers
//! nothing, and a warning names the protocol).
//!
//! An `IOT_CORE` entry on a host without `[mqtt]` is accepted, as Greengrass accepts it
//! without a cloud connection: the deployment succeeds and a warning names the topic. A
//! broker that is unreachable when the component starts gets the subscription when the
//! connection comes up.
//!
//! Durability:
//! - Local pub/sub promises none (no QoS, no retention, no redelivery; a subscriber's queue
//!   drops its oldest message when full), so a local message is as durable as its trip
//!   through the router: its invocation is not stored.
//! - A broker message (QoS 1) is stored as an `Event` invocation (`Store::persist_event`, on
//!   disk when it returns), and only then acknowledged to the broker ([`Receipt::accept`]):
//!   a host that goes away at any point has either stored the message (it runs after the
//!   restart, as every stored `Event` does) or not acknowledged it (the broker sends it
//!   again, to this host's session or, for a shared subscription whose session ended, to
//!   another member). At least once: a message stored but not acknowledged, or run but not
//!   yet forgotten, runs twice. A stored message waits for room in a full function queue
//!   rather than being dropped (so a slow function slows the subscription: the broker holds
//!   what is not acknowledged). One that cannot be stored (a full disk, an I/O error) is
//!   rejected ([`Receipt::reject`]) with a warning naming the topic and the error: the
//!   connection is made again once the subscribers' queues have drained, after a pause that
//!   doubles while storing keeps failing, and the broker sends it again. One the function
//!   can never take (not JSON for a `json` function, the function gone) is acknowledged and
//!   dropped with a warning. The client context (the subject) is stored with it, so an event
//!   run after a restart has it too.
//!
//! Subscriptions start when the component's function is defined and end when the
//! component is stopped, removed or replaced ([`Triggers::stop`] drops them).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use lambkin_proto::lambda::function::{FunctionName, PayloadEncoding};
use lambkin_proto::recipe::lambda::{event_sources, SourceType};
use lambkin_proto::recipe::ComponentName;

use crate::lambda::function::Refusal;
use crate::lambda::invocation::{Completion, Invocation, RequestId};
use crate::lambda::registry::Registry;
use crate::metrics::counters::Traffic;
use crate::mqtt::connection::{Delivery, Receipt};
use crate::mqtt::Mqtt;
use crate::pubsub::{Client, Filter, Payload, PubSubHandle, ReceiveMode, Subscription};

/// How long starting a component waits for the broker to acknowledge its subscriptions;
/// past it the component starts anyway and the subscriptions complete in the background.
const SUBACK_WAIT: Duration = Duration::from_secs(10);

/// The running trigger subscriptions, by component. Owned by the deployment engine.
#[derive(Debug)]
pub struct Triggers {
    pubsub: PubSubHandle,
    mqtt: Option<Mqtt>,
    registry: Registry,
    running: BTreeMap<String, Vec<JoinHandle<()>>>,
}

/// How long a stored broker message waits before it is offered again to a function whose
/// queue is full, at first and at most (doubling in between).
const QUEUE_FULL_RETRY: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_millis(500));

impl Triggers {
    /// Triggers fed by local pub/sub and, when the host has one, the broker connection.
    pub fn new(pubsub: PubSubHandle, mqtt: Option<Mqtt>, registry: Registry) -> Self {
        Self {
            pubsub,
            mqtt,
            registry,
            running: BTreeMap::new(),
        }
    }

    /// Subscribes the Lambda component `component` to its `pubsubTopics`, replacing any
    /// subscriptions it had. When this returns, messages published locally are delivered,
    /// and so are broker messages once the broker has acknowledged the subscription (waited
    /// for up to 10 s while connected).
    pub async fn start(&mut self, component: &str, config: &serde_json::Value) {
        self.stop(component);
        let (Ok(function), Ok(client_name)) = (
            FunctionName::parse(component),
            ComponentName::parse(component),
        ) else {
            return;
        };
        let (sources, problems) = event_sources(config);
        for problem in problems {
            tracing::warn!(%component, "{problem}");
        }
        let mut tasks = Vec::new();
        let mut acknowledged = Vec::new();
        for source in sources {
            let kind = source.kind.as_str();
            let filter = match Filter::parse(&source.topic) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(%component, topic = %source.topic, error = %e, "{kind} topic is not a valid filter; ignored");
                    continue;
                }
            };
            match source.kind {
                SourceType::PubSub => {
                    let subscription = match self
                        .pubsub
                        .subscribe(
                            Client::Component(client_name.clone()),
                            filter,
                            ReceiveMode::All,
                        )
                        .await
                    {
                        Ok(s) => s,
                        Err(_) => {
                            tracing::warn!(%component, "local pub/sub has stopped; no triggers");
                            continue;
                        }
                    };
                    tracing::debug!(%component, topic = %source.topic, "PUB_SUB topic triggers the function");
                    tasks.push(tokio::spawn(forward_local(
                        subscription,
                        self.registry.clone(),
                        function.clone(),
                    )));
                }
                SourceType::IotCore => {
                    let Some(mqtt) = self.mqtt.clone() else {
                        tracing::warn!(%component, topic = %source.topic, "IOT_CORE topic accepted, but the host has no [mqtt] broker: nothing will arrive on it");
                        continue;
                    };
                    let (subscribed, ack) = oneshot::channel();
                    acknowledged.push(ack);
                    tasks.push(tokio::spawn(subscribe_and_forward(
                        mqtt,
                        source.topic,
                        subscribed,
                        self.registry.clone(),
                        function.clone(),
                    )));
                }
            }
        }
        if !tasks.is_empty() {
            self.running.insert(component.to_owned(), tasks);
        }
        let all = all_acknowledged(acknowledged);
        if tokio::time::timeout(SUBACK_WAIT, all).await.is_err() {
            tracing::warn!(%component, "the broker has not acknowledged every IOT_CORE subscription yet; they complete in the background");
        }
    }

    /// Ends the component's trigger subscriptions (messages still queued for them are
    /// dropped).
    pub fn stop(&mut self, component: &str) {
        for task in self.running.remove(component).unwrap_or_default() {
            task.abort();
        }
    }
}

/// Waits for every acknowledgement (a dropped sender counts as one).
async fn all_acknowledged(acks: Vec<oneshot::Receiver<()>>) {
    for ack in acks {
        let _ = ack.await;
    }
}

/// Subscribes at the broker (QoS 1), says so, then forwards the subscription's messages.
async fn subscribe_and_forward(
    mqtt: Mqtt,
    topic: String,
    subscribed: oneshot::Sender<()>,
    registry: Registry,
    function: FunctionName,
) {
    let messages = match mqtt.subscribe_durable(&topic).await {
        Ok(messages) => messages,
        Err(e) => {
            tracing::warn!(%function, %topic, error = %e, "cannot subscribe to the IOT_CORE topic; it triggers nothing");
            return;
        }
    };
    tracing::debug!(%function, %topic, "IOT_CORE topic triggers the function");
    let _ = subscribed.send(());
    let traffic = mqtt.counters().traffic.of(function.as_str());
    forward_broker(messages, traffic, registry, function).await;
}

/// A broker subscription's messages → stored `Event` invocations of `function`, in order,
/// each acknowledged to the broker once stored.
async fn forward_broker(
    mut messages: tokio::sync::mpsc::Receiver<Delivery>,
    traffic: Arc<Traffic>,
    registry: Registry,
    function: FunctionName,
) {
    let dropped = AtomicU64::new(0);
    // Messages that could not be stored since the last one that could (1, 2, 4, 8… are
    // logged: a full disk does not flood the log it may share).
    let mut failing = 0u64;
    while let Some(Delivery { message, receipt }) = messages.recv().await {
        // Counted as the function's component's traffic, redeliveries included.
        traffic.received_messages.inc();
        traffic.received_bytes.add(message.payload.len() as u64);
        let topic = message.topic;
        let Some((handle, spec)) = registry.lookup(&function) else {
            count_drop(&dropped, &function, &topic, "the function is not defined");
            accept(receipt).await;
            continue;
        };
        let Some(mut invocation) = invocation(
            &topic,
            &Payload::Binary(message.payload),
            spec.config.greengrass.input_payload_encoding_type,
        ) else {
            count_drop(
                &dropped,
                &function,
                &topic,
                "a binary message that is not JSON, for a function that takes json",
            );
            accept(receipt).await;
            continue;
        };
        let store = registry.store().clone();
        let seq = match store
            .persist_event_with_context(
                function.clone(),
                invocation.request_id.to_string(),
                invocation.payload.clone(),
                invocation.client_context.clone(),
            )
            .await
        {
            Ok(seq) => {
                if failing > 0 {
                    tracing::info!(%function, %topic, failed = failing, "messages that trigger the function are stored again");
                    failing = 0;
                }
                seq
            }
            Err(e) => {
                // Not acknowledged: the connection is made again (after a pause) and the
                // broker sends it again, on the session.
                failing += 1;
                if failing.is_power_of_two() {
                    tracing::warn!(%function, %topic, error = %e, failed = failing, "cannot store a message that triggers the function; rejected, the broker sends it again after a reconnect");
                }
                reject(receipt).await;
                continue;
            }
        };
        accept(receipt).await;
        invocation.completion = Completion::Event {
            seq,
            store,
            sink: registry.event_sink(),
        };
        admit(&handle, invocation, &function, &topic).await;
    }
}

/// Tells the connection the message is safe (acknowledged once every durable subscriber has).
async fn accept(receipt: Option<Receipt>) {
    if let Some(receipt) = receipt {
        receipt.accept().await;
    }
}

/// Tells the connection the message could not be kept (the broker is to send it again).
async fn reject(receipt: Option<Receipt>) {
    if let Some(receipt) = receipt {
        receipt.reject().await;
    }
}

/// Submits a stored invocation, offering it again while the function's queue is full: it is
/// accepted already, so it is not dropped (a refused one is dropped unrun, its row kept).
async fn admit(
    handle: &crate::lambda::function::FunctionHandle,
    invocation: Invocation,
    function: &FunctionName,
    topic: &str,
) {
    let Invocation {
        request_id,
        payload,
        content_type,
        client_context,
        completion,
        ..
    } = invocation;
    let Completion::Event { seq, store, sink } = completion else {
        return;
    };
    let mut pause = QUEUE_FULL_RETRY.0;
    let mut warned = false;
    loop {
        let attempt = Invocation {
            request_id: request_id.clone(),
            payload: payload.clone(),
            content_type: content_type.clone(),
            client_context: client_context.clone(),
            trace_id: None,
            want_log_tail: false,
            completion: Completion::Event {
                seq,
                store: store.clone(),
                sink: sink.clone(),
            },
        };
        match handle.submit(attempt).await {
            // Refused as shutting down: it stays stored and runs after the restart.
            Ok(()) | Err(Refusal::ShuttingDown) => return,
            Err(Refusal::QueueFull { max_queue }) => {
                if !warned {
                    warned = true;
                    tracing::debug!(%function, %topic, max_queue, "the function's queue is full; the stored message waits for room");
                }
                // Paces the offers while the function works through its queue.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(QUEUE_FULL_RETRY.1);
            }
        }
    }
}

/// A local subscription's messages → invocations of `function`, in order.
async fn forward_local(mut subscription: Subscription, registry: Registry, function: FunctionName) {
    let dropped = Arc::new(AtomicU64::new(0));
    while let Some(message) = subscription.recv().await {
        let (topic, payload) = (message.topic.as_str().to_owned(), message.payload);
        let Some((handle, spec)) = registry.lookup(&function) else {
            count_drop(&dropped, &function, &topic, "the function is not defined");
            continue;
        };
        let Some(invocation) = invocation(
            &topic,
            &payload,
            spec.config.greengrass.input_payload_encoding_type,
        ) else {
            count_drop(
                &dropped,
                &function,
                &topic,
                "a binary message that is not JSON, for a function that takes json",
            );
            continue;
        };
        match handle.submit(invocation).await {
            Ok(()) => {}
            Err(Refusal::QueueFull { max_queue }) => count_drop(
                &dropped,
                &function,
                &topic,
                &format!("the function's queue of {max_queue} invocations is full"),
            ),
            Err(Refusal::ShuttingDown) => {
                count_drop(&dropped, &function, &topic, "the function is shutting down")
            }
        }
    }
}

/// The invocation a message makes, or `None` when the function cannot take it.
pub fn invocation(topic: &str, payload: &Payload, encoding: PayloadEncoding) -> Option<Invocation> {
    let payload = match payload {
        Payload::Json(value) => Bytes::from(serde_json::to_vec(value.as_ref()).ok()?),
        Payload::Binary(bytes) => {
            if encoding == PayloadEncoding::Json
                && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err()
            {
                return None;
            }
            bytes.clone()
        }
    };
    let content_type = match encoding {
        PayloadEncoding::Json => "application/json",
        PayloadEncoding::Binary => "application/octet-stream",
    };
    let client_context = serde_json::json!({"custom": {"subject": topic}});
    Some(Invocation {
        request_id: RequestId::new(),
        payload,
        content_type: Some(content_type.to_owned()),
        client_context: Some(client_context.to_string()),
        trace_id: None,
        want_log_tail: false,
        completion: Completion::Detached,
    })
}

fn count_drop(dropped: &AtomicU64, function: &FunctionName, topic: &str, why: &str) {
    let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(%function, topic = %topic, dropped = n, "a message that triggers the function was dropped: {why}");
    } else {
        tracing::debug!(%function, topic = %topic, dropped = n, "a message that triggers the function was dropped: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::{Message, Topic};

    #[test]
    fn a_message_becomes_an_event_with_its_topic_as_subject() {
        let message = Message::new(
            Topic::parse("sensors/kitchen/temp").unwrap(),
            Payload::Json(Arc::new(serde_json::json!({"c": 21}))),
        );
        let inv = invocation(
            message.topic.as_str(),
            &message.payload,
            PayloadEncoding::Json,
        )
        .unwrap();
        assert_eq!(&inv.payload[..], br#"{"c":21}"#);
        let context: serde_json::Value =
            serde_json::from_str(inv.client_context.as_deref().unwrap()).unwrap();
        assert_eq!(context["custom"]["subject"], "sensors/kitchen/temp");
        assert!(matches!(inv.completion, Completion::Detached));

        let binary = Message::new(
            Topic::parse("raw").unwrap(),
            Payload::Binary(Bytes::from_static(b"\x00\x01")),
        );
        assert!(invocation("raw", &binary.payload, PayloadEncoding::Json).is_none());
        let inv = invocation("raw", &binary.payload, PayloadEncoding::Binary).unwrap();
        assert_eq!(&inv.payload[..], b"\x00\x01");

        // A broker message is bytes: JSON bytes are a json function's event as they are.
        let from_broker = Payload::Binary(Bytes::from_static(br#"{"c": 22}"#));
        let inv = invocation("sensors/hall/temp", &from_broker, PayloadEncoding::Json).unwrap();
        assert_eq!(&inv.payload[..], br#"{"c": 22}"#);
        assert_eq!(inv.content_type.as_deref(), Some("application/json"));
    }
}
