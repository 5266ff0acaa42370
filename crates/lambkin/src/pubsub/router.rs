//! The router's state, with no I/O: who is subscribed to what, and for a published message,
//! which subscriptions get it (`greengrass-ipc.md` §4.1).
//!
//! Subscriptions are found through a [`Trie`] of their filters, so a publish costs what its
//! topic can reach, not the number of subscriptions. A publisher's own message skips its
//! subscriptions in [`ReceiveMode::FromOthers`]. Queues and delivery belong to the task that
//! owns the router; the router only says who gets what, in publish order.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use lambkin_proto::lambda::function::FunctionName;
use lambkin_proto::recipe::ComponentName;

use super::queue::Weigh;
use super::topic::{Filter, Topic};
use super::trie::Trie;

/// Who publishes or subscribes. `RECEIVE_MESSAGES_FROM_OTHERS` compares these.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Client {
    /// A Greengrass component, by its name. A Lambda component is a component: its
    /// `pubsubTopics` subscriptions and its IPC calls both use this identity, as the nucleus
    /// does, so that it is recognised as the publisher of its own messages.
    Component(ComponentName),
    /// A Lambda function that is not a Greengrass component.
    Function(FunctionName),
    /// The `lambkin pub` and `lambkin sub` commands. Each CLI subscription should ask for
    /// [`ReceiveMode::All`]: publishing to yourself from another terminal is the point.
    Cli,
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Component(name) => write!(f, "component:{name}"),
            Self::Function(name) => write!(f, "function:{name}"),
            Self::Cli => f.write_str("cli"),
        }
    }
}

/// `SubscribeToTopic`'s `receiveMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiveMode {
    /// `RECEIVE_ALL_MESSAGES`: the subscriber's own messages too.
    All,
    /// `RECEIVE_MESSAGES_FROM_OTHERS`: not the messages the subscriber published itself.
    FromOthers,
}

impl ReceiveMode {
    /// The mode when the request names none: from others for a filter with wildcards, all
    /// otherwise (the nucleus's rule, so that a component listening on `#` does not hear
    /// itself).
    pub fn default_for(filter: &Filter) -> Self {
        if filter.has_wildcards() {
            Self::FromOthers
        } else {
            Self::All
        }
    }

    /// The IPC name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "RECEIVE_ALL_MESSAGES",
            Self::FromOthers => "RECEIVE_MESSAGES_FROM_OTHERS",
        }
    }
}

/// What a message carries: `PublishMessage`'s union. A subscriber gets the same variant that
/// was published. Cheap to clone: one copy is shared by every subscriber.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// `jsonMessage.message`: a JSON document, passed through as is.
    Json(Arc<serde_json::Value>),
    /// `binaryMessage.message`: bytes.
    Binary(Bytes),
}

/// A published message as a subscriber receives it: the concrete topic (`context.topic`,
/// also for a filter with wildcards) and the payload. Cheap to clone.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: Topic,
    pub payload: Payload,
    /// What a queue holding it counts, worked out once.
    weight: usize,
}

impl Message {
    pub fn new(topic: Topic, payload: Payload) -> Self {
        let weight = topic.as_str().len() + payload.weight();
        Self {
            topic,
            payload,
            weight,
        }
    }
}

impl Weigh for Message {
    fn weight(&self) -> usize {
        self.weight
    }
}

impl Payload {
    /// About the bytes the payload holds: a binary message's length; for a JSON document,
    /// its strings plus a machine word or so per value (in memory a parsed document is
    /// larger than its text, and a subscriber's queue should count what it holds).
    fn weight(&self) -> usize {
        fn json(value: &serde_json::Value) -> usize {
            const NODE: usize = 32;
            NODE + match value {
                serde_json::Value::String(s) => s.len(),
                serde_json::Value::Array(items) => items.iter().map(json).sum(),
                serde_json::Value::Object(map) => {
                    map.iter().map(|(k, v)| NODE + k.len() + json(v)).sum()
                }
                serde_json::Value::Null
                | serde_json::Value::Bool(_)
                | serde_json::Value::Number(_) => 0,
            }
        }
        match self {
            Self::Json(value) => json(value),
            Self::Binary(bytes) => bytes.len(),
        }
    }
}

/// A subscription's id, unique for the router's lifetime (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(u64);

impl SubscriptionId {
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a subscription is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub client: Client,
    pub filter: Filter,
    pub mode: ReceiveMode,
}

/// One message for one subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub subscription: SubscriptionId,
    pub message: Message,
}

/// The subscriptions, indexed by filter.
#[derive(Debug, Default)]
pub struct Router {
    subscriptions: BTreeMap<SubscriptionId, Subscriber>,
    trie: Trie<SubscriptionId>,
    next_id: u64,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscription. A client may hold any number, overlapping or not; each gets its
    /// own copy of every message it matches.
    pub fn subscribe(&mut self, subscriber: Subscriber) -> SubscriptionId {
        let id = SubscriptionId(self.next_id);
        self.next_id += 1;
        self.trie.insert(&subscriber.filter, id);
        self.subscriptions.insert(id, subscriber);
        id
    }

    /// Removes a subscription; `None` if it was not there (removed already).
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> Option<Subscriber> {
        let subscriber = self.subscriptions.remove(&id)?;
        self.trie.remove(&subscriber.filter, id);
        Some(subscriber)
    }

    /// Who gets `message`, published by `from`: every subscription whose filter matches the
    /// topic, except `from`'s own subscriptions in [`ReceiveMode::FromOthers`]. In
    /// subscription order; none is success too.
    pub fn publish(&self, from: &Client, message: &Message) -> Vec<Delivery> {
        let mut ids = Vec::new();
        self.trie.matches(message.topic.as_str(), &mut ids);
        ids.sort_unstable();
        ids.into_iter()
            .filter(|id| {
                self.subscriptions
                    .get(id)
                    .is_some_and(|s| s.mode == ReceiveMode::All || s.client != *from)
            })
            .map(|subscription| Delivery {
                subscription,
                message: message.clone(),
            })
            .collect()
    }

    pub fn get(&self, id: SubscriptionId) -> Option<&Subscriber> {
        self.subscriptions.get(&id)
    }

    /// Every subscription, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (SubscriptionId, &Subscriber)> + '_ {
        self.subscriptions.iter().map(|(id, s)| (*id, s))
    }

    pub fn len(&self) -> usize {
        self.subscriptions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn component(name: &str) -> Client {
        Client::Component(ComponentName::parse(name).unwrap())
    }

    fn subscriber(client: &Client, filter: &str, mode: Option<ReceiveMode>) -> Subscriber {
        let filter = Filter::parse(filter).unwrap();
        let mode = mode.unwrap_or_else(|| ReceiveMode::default_for(&filter));
        Subscriber {
            client: client.clone(),
            filter,
            mode,
        }
    }

    fn message(topic: &str, n: u64) -> Message {
        Message::new(
            Topic::parse(topic).unwrap(),
            Payload::Json(Arc::new(json!({ "n": n }))),
        )
    }

    fn receivers(router: &Router, from: &Client, topic: &str) -> Vec<SubscriptionId> {
        router
            .publish(from, &message(topic, 0))
            .into_iter()
            .map(|d| d.subscription)
            .collect()
    }

    #[test]
    fn the_default_mode_depends_on_wildcards() {
        for (filter, mode) in [
            ("a/b", ReceiveMode::All),
            ("a/+", ReceiveMode::FromOthers),
            ("#", ReceiveMode::FromOthers),
            ("a/*", ReceiveMode::All),
        ] {
            let filter = Filter::parse(filter).unwrap();
            assert_eq!(ReceiveMode::default_for(&filter), mode, "{filter}");
        }
        assert_eq!(ReceiveMode::All.as_str(), "RECEIVE_ALL_MESSAGES");
        assert_eq!(
            ReceiveMode::FromOthers.as_str(),
            "RECEIVE_MESSAGES_FROM_OTHERS"
        );
    }

    #[test]
    fn matching_subscriptions_get_the_message_with_its_concrete_topic() {
        let (a, b) = (component("com.example.A"), component("com.example.B"));
        let mut router = Router::new();
        let exact = router.subscribe(subscriber(&b, "sensors/t1/temp", None));
        let plus = router.subscribe(subscriber(&b, "sensors/+/temp", None));
        let hash = router.subscribe(subscriber(&b, "sensors/#", None));
        let _other = router.subscribe(subscriber(&b, "actuators/#", None));

        let sent = message("sensors/t1/temp", 7);
        let deliveries = router.publish(&a, &sent);
        assert_eq!(
            deliveries,
            [exact, plus, hash].map(|subscription| Delivery {
                subscription,
                message: sent.clone()
            })
        );
        assert_eq!(deliveries[1].message.topic.as_str(), "sensors/t1/temp");
        assert!(receivers(&router, &a, "nothing/here").is_empty());
    }

    #[test]
    fn from_others_skips_only_the_publishers_own_subscriptions() {
        let (a, b) = (component("A"), component("B"));
        let mut router = Router::new();
        let a_all = router.subscribe(subscriber(&a, "t/#", Some(ReceiveMode::All)));
        let a_others = router.subscribe(subscriber(&a, "t/x", Some(ReceiveMode::FromOthers)));
        let a_default = router.subscribe(subscriber(&a, "t/+", None));
        let b_others = router.subscribe(subscriber(&b, "t/x", Some(ReceiveMode::FromOthers)));

        assert_eq!(receivers(&router, &a, "t/x"), [a_all, b_others]);
        assert_eq!(receivers(&router, &b, "t/x"), [a_all, a_others, a_default]);
        assert_eq!(
            receivers(&router, &Client::Cli, "t/x"),
            [a_all, a_others, a_default, b_others]
        );
    }

    #[test]
    fn a_component_and_a_function_of_the_same_name_are_different_clients() {
        let c = component("same");
        let f = Client::Function(FunctionName::parse("same").unwrap());
        let mut router = Router::new();
        let sub = router.subscribe(subscriber(&c, "#", None));
        assert_eq!(receivers(&router, &f, "x"), [sub]);
        assert!(receivers(&router, &c, "x").is_empty());
        assert_eq!(c.to_string(), "component:same");
        assert_eq!(f.to_string(), "function:same");
    }

    #[test]
    fn unsubscribed_subscriptions_get_nothing_and_ids_are_not_reused() {
        let a = component("A");
        let mut router = Router::new();
        let first = router.subscribe(subscriber(&a, "t", None));
        let second = router.subscribe(subscriber(&a, "t", None));
        assert_eq!(router.len(), 2);
        assert_eq!(
            router.unsubscribe(first).map(|s| s.filter.to_string()),
            Some("t".into())
        );
        assert_eq!(router.unsubscribe(first), None);
        assert_eq!(receivers(&router, &Client::Cli, "t"), [second]);
        let third = router.subscribe(subscriber(&a, "t", None));
        assert!(third > second);
        assert_eq!(
            router.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            [second, third]
        );
        assert!(router.get(first).is_none());
        router.unsubscribe(second);
        router.unsubscribe(third);
        assert!(router.is_empty());
        assert!(receivers(&router, &Client::Cli, "t").is_empty());
    }

    #[test]
    fn the_payload_is_shared_not_copied() {
        let mut router = Router::new();
        for _ in 0..3 {
            router.subscribe(subscriber(&component("B"), "t", None));
        }
        let value = Arc::new(json!({ "big": "document" }));
        let sent = Message::new(
            Topic::parse("t").unwrap(),
            Payload::Json(Arc::clone(&value)),
        );
        let deliveries = router.publish(&Client::Cli, &sent);
        assert_eq!(deliveries.len(), 3);
        for d in &deliveries {
            let Payload::Json(got) = &d.message.payload else {
                panic!("json in, json out");
            };
            assert!(Arc::ptr_eq(got, &value));
        }
    }
}
