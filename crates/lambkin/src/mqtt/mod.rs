//! The connection to an MQTT broker (AWS IoT Core or any MQTT 5 broker), for the IPC
//! operations PublishToIoTCore and SubscribeToIoTCore (`greengrass-reference.md` §6).
//!
//! - [`spool`]: the durable FIFO every publish goes through, bounded in bytes.
//! - [`connection`]: one actor owning the `rumqttc` client; it reconnects with backoff,
//!   subscribes again after each reconnect, sends the spool's oldest message and removes it
//!   once the broker acknowledged it, and hands received messages to the subscriptions.
//!
//! Messages go out one at a time in spool order, so QoS 1 messages reach the broker in the
//! order they were accepted, across disconnections and host crashes (at least once: a crash
//! between the broker's PUBACK and the spool's delete sends one message again).

pub mod connection;
pub mod spool;

pub use connection::{IncomingMessage, Mqtt, OutgoingMessage, PublishError, SubscribeError};
pub use spool::{Spool, SpoolError, SpooledMessage};
