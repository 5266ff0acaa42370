//! Topics that trigger Lambda functions: a Lambda component's `pubsubTopics`
//! (`greengrass-reference.md` §1.3).
//!
//! Each entry of type `PUB_SUB` (wildcards allowed) becomes a local pub/sub subscription of
//! the component, as [`Client::Component`] in [`ReceiveMode::All`]; every message it
//! receives becomes one asynchronous invocation of the component's function:
//!
//! - the event is the message: a JSON message's document, serialized, or a binary message's
//!   bytes (a function whose `inputPayloadEncodingType` is `json` gets only JSON: a binary
//!   message that is not JSON is dropped with a warning, as the Invoke API refuses it);
//! - the concrete topic reaches the handler as `context.client_context.custom["subject"]`,
//!   as in Greengrass: the invocation carries the client context
//!   `{"custom":{"subject":"<topic>"}}`;
//! - messages of one entry are submitted in the order they arrive, one at a time (the next
//!   is submitted once the function has admitted the previous one); two entries are two
//!   subscriptions, each in its own order;
//! - a full function queue drops the message: there is no caller to answer, so it is
//!   counted and logged (at 1, 2, 4, 8… drops).
//!
//! These invocations are **not persisted** in the store, unlike the Invoke API's `Event`s:
//! local pub/sub promises no durability (no QoS, no retention, no redelivery; a
//! subscriber's queue drops its oldest message when full), so a message is as durable as
//! its trip through the router. A crash loses the invocations that were queued, as it
//! loses the messages still queued in the router.
//!
//! Subscriptions start when the component's function is defined and end when the
//! component is stopped, removed or replaced ([`Triggers::stop`] drops them). Entries of
//! type `IOT_CORE` belong to the MQTT connection: they are parsed and left alone here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;

use lambkin_proto::lambda::function::{FunctionName, PayloadEncoding};
use lambkin_proto::recipe::ComponentName;

use crate::lambda::function::Refusal;
use crate::lambda::invocation::{Completion, Invocation, RequestId};
use crate::lambda::registry::Registry;
use crate::pubsub::{Client, Filter, Message, Payload, PubSubHandle, ReceiveMode, Subscription};

/// Where a `pubsubTopics` entry's messages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceType {
    /// Local publish/subscribe.
    PubSub,
    /// AWS IoT Core, through the MQTT connection.
    IotCore,
}

/// One `pubsubTopics` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSource {
    pub topic: String,
    pub kind: SourceType,
}

/// The entries of a Lambda component's configuration (`pubsubTopics`: an object keyed
/// `"0"`, `"1"`, …, in key order), and a description of each entry that is not one.
pub fn event_sources(config: &serde_json::Value) -> (Vec<EventSource>, Vec<String>) {
    let mut sources = Vec::new();
    let mut problems = Vec::new();
    let Some(topics) = config.get("pubsubTopics") else {
        return (sources, problems);
    };
    let Some(entries) = topics.as_object() else {
        problems.push(format!("pubsubTopics is not an object: {topics}"));
        return (sources, problems);
    };
    let mut entries: Vec<(&String, &serde_json::Value)> = entries.iter().collect();
    // "10" after "9": numeric keys in numeric order, others after them.
    entries.sort_by_key(|(k, _)| (k.parse::<u64>().unwrap_or(u64::MAX), (*k).clone()));
    for (key, entry) in entries {
        let topic = entry.get("topic").and_then(serde_json::Value::as_str);
        let kind = match entry.get("type").and_then(serde_json::Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case("PUB_SUB") => Some(SourceType::PubSub),
            Some(t) if t.eq_ignore_ascii_case("IOT_CORE") => Some(SourceType::IotCore),
            _ => None,
        };
        match (topic, kind) {
            (Some(topic), Some(kind)) => sources.push(EventSource {
                topic: topic.to_owned(),
                kind,
            }),
            _ => problems.push(format!(
                "pubsubTopics/{key} needs a topic and a type PUB_SUB or IOT_CORE: {entry}"
            )),
        }
    }
    (sources, problems)
}

/// The running trigger subscriptions, by component. Owned by the deployment engine.
#[derive(Debug)]
pub struct Triggers {
    pubsub: PubSubHandle,
    registry: Registry,
    running: BTreeMap<String, Vec<JoinHandle<()>>>,
}

impl Triggers {
    pub fn new(pubsub: PubSubHandle, registry: Registry) -> Self {
        Self {
            pubsub,
            registry,
            running: BTreeMap::new(),
        }
    }

    /// Subscribes the Lambda component `component` to its `PUB_SUB` topics, replacing any
    /// subscriptions it had. When this returns, messages published are delivered.
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
        for source in sources {
            if source.kind == SourceType::IotCore {
                tracing::debug!(%component, topic = %source.topic, "IOT_CORE topic: left to the MQTT connection");
                continue;
            }
            let filter = match Filter::parse(&source.topic) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(%component, topic = %source.topic, error = %e, "PUB_SUB topic is not a valid filter; ignored");
                    continue;
                }
            };
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
                    break;
                }
            };
            tracing::debug!(%component, topic = %source.topic, "PUB_SUB topic triggers the function");
            tasks.push(tokio::spawn(forward(
                subscription,
                self.registry.clone(),
                function.clone(),
            )));
        }
        if !tasks.is_empty() {
            self.running.insert(component.to_owned(), tasks);
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

/// One subscription's messages → invocations of `function`, in order.
async fn forward(mut subscription: Subscription, registry: Registry, function: FunctionName) {
    let dropped = Arc::new(AtomicU64::new(0));
    while let Some(message) = subscription.recv().await {
        let Some((handle, spec)) = registry.lookup(&function) else {
            count_drop(&dropped, &function, &message, "the function is not defined");
            continue;
        };
        let Some(invocation) =
            invocation(&message, spec.config.greengrass.input_payload_encoding_type)
        else {
            count_drop(
                &dropped,
                &function,
                &message,
                "a binary message that is not JSON, for a function that takes json",
            );
            continue;
        };
        match handle.submit(invocation).await {
            Ok(()) => {}
            Err(Refusal::QueueFull { max_queue }) => count_drop(
                &dropped,
                &function,
                &message,
                &format!("the function's queue of {max_queue} invocations is full"),
            ),
            Err(Refusal::ShuttingDown) => count_drop(
                &dropped,
                &function,
                &message,
                "the function is shutting down",
            ),
        }
    }
}

/// The invocation a message makes, or `None` when the function cannot take it.
pub fn invocation(message: &Message, encoding: PayloadEncoding) -> Option<Invocation> {
    let payload = match &message.payload {
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
    let client_context = serde_json::json!({"custom": {"subject": message.topic.as_str()}});
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

fn count_drop(dropped: &AtomicU64, function: &FunctionName, message: &Message, why: &str) {
    let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(%function, topic = %message.topic.as_str(), dropped = n, "a message that triggers the function was dropped: {why}");
    } else {
        tracing::debug!(%function, topic = %message.topic.as_str(), dropped = n, "a message that triggers the function was dropped: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::Topic;

    #[test]
    fn entries_are_read_in_key_order_and_bad_ones_named() {
        let config = serde_json::json!({"pubsubTopics": {
            "10": {"topic": "ten", "type": "PUB_SUB"},
            "0": {"topic": "core/topic", "type": "IOT_CORE"},
            "1": {"topic": "local/+", "type": "PUB_SUB"},
            "2": {"topic": "x", "type": "SOMETHING"},
        }});
        let (sources, problems) = event_sources(&config);
        assert_eq!(
            sources,
            vec![
                EventSource {
                    topic: "core/topic".into(),
                    kind: SourceType::IotCore
                },
                EventSource {
                    topic: "local/+".into(),
                    kind: SourceType::PubSub
                },
                EventSource {
                    topic: "ten".into(),
                    kind: SourceType::PubSub
                },
            ]
        );
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("pubsubTopics/2"));
        assert_eq!(event_sources(&serde_json::json!({})), (vec![], vec![]));
    }

    #[test]
    fn a_message_becomes_an_event_with_its_topic_as_subject() {
        let message = Message {
            topic: Topic::parse("sensors/kitchen/temp").unwrap(),
            payload: Payload::Json(Arc::new(serde_json::json!({"c": 21}))),
        };
        let inv = invocation(&message, PayloadEncoding::Json).unwrap();
        assert_eq!(&inv.payload[..], br#"{"c":21}"#);
        let context: serde_json::Value =
            serde_json::from_str(inv.client_context.as_deref().unwrap()).unwrap();
        assert_eq!(context["custom"]["subject"], "sensors/kitchen/temp");
        assert!(matches!(inv.completion, Completion::Detached));

        let binary = Message {
            topic: Topic::parse("raw").unwrap(),
            payload: Payload::Binary(Bytes::from_static(b"\x00\x01")),
        };
        assert!(invocation(&binary, PayloadEncoding::Json).is_none());
        let inv = invocation(&binary, PayloadEncoding::Binary).unwrap();
        assert_eq!(&inv.payload[..], b"\x00\x01");
    }
}
