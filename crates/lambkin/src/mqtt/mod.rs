//! The connection to an MQTT broker (AWS IoT Core or any MQTT 5 or 3.1.1 broker), for the IPC
//! operations PublishToIoTCore and SubscribeToIoTCore (`greengrass-reference.md` §6).
//!
//! - [`spool`]: the durable FIFO every publish goes through (but answers to invokes over MQTT,
//!   published directly: worthless later), bounded in bytes.
//! - [`connection`]: one actor owning the `rumqttc` client; it reconnects with backoff,
//!   subscribes again after each reconnect, sends the spool's oldest message and removes it
//!   once the broker acknowledged it, and hands received messages to the subscriptions.
//! - `acks`: when a received QoS 1 message is acknowledged (sans-I/O): at once, or once
//!   every durable subscriber has accepted it.
//! - `outbound`: whose a written PUBLISH or a PUBACK is, the spool's message's or a directly
//!   published one's (sans-I/O).
//! - `client`: `rumqttc`'s MQTT 5 and MQTT 3.1.1 clients behind one set of types; on 3.1.1
//!   the MQTT 5 members of a published message are dropped.
//! - [`tls`]: `mqtts://` with a CA and a client certificate and key (PEM), checked with the
//!   configuration.
//! - [`topic`]: the topics and filters the broker takes (MQTT's rules, and AWS IoT Core's
//!   limits when the broker is AWS IoT Core), checked before a message is spooled.
//!
//! Messages go out one at a time in spool order, so QoS 1 messages reach the broker in the
//! order they were accepted, across disconnections and host crashes (at least once: a crash
//! between the broker's PUBACK and the spool's delete sends one message again).

mod acks;
mod client;
pub mod connection;
mod outbound;
pub mod spool;
pub mod tls;
pub mod topic;

pub use connection::{IncomingMessage, Mqtt, OutgoingMessage, PublishError, SubscribeError};
pub use spool::{Spool, SpoolError, SpooledMessage};
