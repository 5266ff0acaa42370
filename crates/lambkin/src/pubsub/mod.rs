//! Local publish/subscribe: the message bus that Greengrass components reach over IPC
//! (`PublishToTopic`, `SubscribeToTopic`), that feeds Lambda functions their `PUB_SUB`
//! `pubsubTopics`, and that `lambkin pub` / `lambkin sub` use (`greengrass-ipc.md` §4.1,
//! `greengrass-reference.md` §4.5).
//!
//! - [`topic`]: [`Topic`] and [`Filter`], validated as the nucleus validates them, and the
//!   matching rules (`+` one level, `#` one or more trailing levels, not the parent).
//! - [`trie`]: the filters indexed level by level, so a publish visits only what can match.
//! - [`router`]: the pure state: subscriptions (client, filter, receive mode) by id, and for
//!   each publish the deliveries, in publish order.
//! - [`queue`]: each subscriber's queue, bounded in messages and bytes (the overflow policy
//!   below), and its channel.
//! - [`actor`]: the task that owns the router and the router's end of every channel, and
//!   [`PubSubHandle`], the cloneable handle on it.
//!
//! # Using it
//!
//! Parse at the edge, then talk to the handle:
//! [`Topic::parse`] / [`Filter::parse`] (their errors become `InvalidArgumentsError` on IPC;
//! authorize the raw text first, as the nucleus does), then
//! [`PubSubHandle::publish`]`(from, topic, payload)` and
//! [`PubSubHandle::subscribe`]`(client, filter, mode)`, which returns a [`Subscription`]:
//! `recv().await` yields each [`Message`] with its concrete topic (`context.topic`) and the
//! payload variant that was published. Dropping the subscription ends it (an IPC stream's
//! close, a function's removal). When the request names no receive mode, use
//! [`ReceiveMode::default_for`].
//!
//! # Ordering
//!
//! The actor handles publishes one at a time, in the order they reach it, and queues each
//! message for all of its subscribers before taking the next. So every subscriber sees
//! messages in one global publish order, and a publisher's messages in the order it sent
//! them. When [`PubSubHandle::publish`] returns, the message is queued for every matching
//! subscription.
//!
//! # Overflow policy
//!
//! Each subscription has its own queue of at most [`Limits::subscriber_queue`] messages
//! (1024 by default) and [`Limits::subscriber_bytes`] bytes (8 MiB by default; one message
//! larger than that is still queued, alone). The actor never waits for a subscriber: when a
//! message arrives for a subscription whose queue is full, **that subscription's oldest
//! queued messages are dropped** to make room, and counted ([`Subscription::dropped`],
//! [`SubscriptionStatus::dropped`]; a warning is logged at 1, 2, 4, 8… drops). Nothing else
//! is affected: the publisher, and every other subscriber, carry on at full speed. What a
//! subscriber does receive stays in publish order, with a gap where messages were dropped.
//! Publishers wait only when the actor's own mailbox is full, and the actor drains it
//! without ever waiting on a subscriber.
//!
//! Queues can also share a byte budget ([`queue::Group`], [`PubSubHandle::subscribe_in`]):
//! an IPC connection puts all its subscriptions in one group, so that a client with many
//! subscriptions it does not read holds at most the group's bytes. A message that does not
//! fit makes room from its own subscription's oldest messages; when the other
//! subscriptions of the group hold the rest of the budget, the new message is the one
//! dropped (and counted the same way).
//!
//! Why drop rather than wait: a subscriber is often an IPC client, another process that may
//! stop reading its socket at any time (hung, busy, paused with `PauseComponent`, or
//! hostile). If publishers waited for it, one such client would stall every publisher —
//! the host's own services included — and through them every other subscriber. Greengrass
//! IPC clients must not be able to stall the host. Local pub/sub promises no more than that
//! anyway: the nucleus offers no QoS, no retention and no redelivery on it.
//!
//! Why the oldest: most local traffic is telemetry and state, where a newer message
//! supersedes older ones. A subscriber that falls behind and catches up should see the
//! present, not a stale prefix followed by silence; the messages it loses are the most out
//! of date. Why bounded, in messages and in bytes: the nucleus queues without limit per
//! subscriber (an unbounded queue per subscriber in its executor, then the event-stream
//! library's own), so one stuck client grows the host's memory until it fails; a bound in
//! messages alone still lets 1024 messages of 16 MiB pile up. Here a subscriber holds at
//! most its queue's worth of messages, and messages are shared between subscribers, not
//! copied.
//!
//! The queue is the subscriber's channel rather than a field of the router's table, so that
//! each subscriber drains its own queue without a round trip through the actor; the policy
//! itself is the plain [`queue::Queue`], tested without a runtime.

pub mod actor;
pub mod queue;
pub mod router;
pub mod topic;
pub mod trie;

pub use actor::{Limits, PubSubHandle, Stopped, Subscription, SubscriptionStatus};
pub use queue::{Budget, Group, SharedBudget, TryRecvError};
pub use router::{
    Client, Delivery, Message, Payload, ReceiveMode, Router, Subscriber, SubscriptionId,
};
pub use topic::{Filter, FilterError, FilterLevel, Topic, TopicError};
