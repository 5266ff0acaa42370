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

pub mod router;
pub mod topic;
pub mod trie;

pub use router::{
    Client, Delivery, Message, Payload, ReceiveMode, Router, Subscriber, SubscriptionId,
};
pub use topic::{Filter, FilterError, FilterLevel, Topic, TopicError};
