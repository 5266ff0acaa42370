//! One face for `rumqttc`'s two clients: MQTT 5 (`rumqttc::v5`, the default) and MQTT 3.1.1
//! (`rumqttc`'s v4 client, `[mqtt] version = "mqtt3"`). The connection actor speaks only the
//! types here, so both protocol versions get the same spool, ordering, QoS, resubscription
//! and size limits.
//!
//! On MQTT 3.1.1 a message carries only topic, QoS, retain and payload: the MQTT 5 members of
//! PublishToIoTCore (user properties, message expiry, correlation data, response topic,
//! payload format, content type) are dropped when the message is sent (with a warning, once
//! per connection), and received messages have none.
//!
//! Both clients acknowledge received QoS 1 messages only when told to ([`Client::try_ack`],
//! rumqttc's manual acks): the connection actor decides when (at once, or once a trigger has
//! stored the message). The session outlives a connection (`[mqtt] session_expiry_seconds`,
//! clean start off), so a message the host did not acknowledge before it went away is sent
//! again by the broker when it is back.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5 as mqtt5;
use rumqttc::{Outgoing, TlsConfiguration, Transport};

use lambkin_proto::ipc::shapes::iot_core::{MqttProperties, PayloadFormat, UserProperty};
use lambkin_proto::ipc::shapes::Blob;

use super::IncomingMessage;
use crate::config::MqttVersion;

/// Room for packet headers and properties above the largest payload.
const PACKET_HEADROOM: u32 = 65_536;
/// QoS 1 messages the broker may send an MQTT 5 connection before it has acknowledged them
/// (MQTT 5 Receive Maximum): bounds what waits for a trigger to store it.
const RECEIVE_MAXIMUM: u16 = 128;
/// The largest packet an MQTT 3.1.1 connection takes from the broker (messages over
/// `max_message_size_bytes` are then dropped by the connection, not fatal).
const V3_INCOMING_CEILING: usize = 16 * 1024 * 1024;

/// How to reach the broker, whatever the protocol version.
pub(super) struct Settings {
    pub version: MqttVersion,
    pub client_id: String,
    pub host: String,
    pub port: u16,
    pub keep_alive: Duration,
    pub max_message_size: u32,
    /// How long the broker keeps the session once the connection is gone; 0: a clean session
    /// at every connection (MQTT 3.1.1: any other value asks for a persistent session, which
    /// the broker keeps as long as it is configured to).
    pub session_expiry_seconds: u32,
    pub tls: Option<TlsConfiguration>,
    /// Requests the client may queue for its event loop.
    pub requests: usize,
}

/// The request side: hands requests to the event loop without waiting.
pub(super) enum Client {
    V5(rumqttc::v5::AsyncClient),
    V3 {
        client: rumqttc::AsyncClient,
        /// MQTT 5 properties were dropped from a message already (warned once).
        warned: bool,
    },
}

/// The connection side: polled by one task, reconnects when polled after an error.
pub(super) enum EventLoop {
    V5(Box<rumqttc::v5::EventLoop>),
    V3(Box<rumqttc::EventLoop>),
}

/// What the event loop saw, for the actor.
#[derive(Debug)]
pub(super) enum Event {
    /// CONNACK: `Ok` when accepted, else the broker's reason.
    Connected(Result<(), String>),
    /// A PUBLISH from the broker; `ack` for a QoS 1 message, which waits for
    /// [`Client::try_ack`].
    Message {
        message: IncomingMessage,
        ack: Option<Ack>,
    },
    /// PUBACK of packet `pkid`; `Some(reason)` when the broker refused the message.
    PubAck {
        pkid: u16,
        refused: Option<String>,
    },
    /// SUBACK of packet `pkid` for one filter.
    SubAck {
        pkid: u16,
        result: Result<(), String>,
    },
    /// A PUBLISH was written with packet id `pkid` (0 for QoS 0).
    Published(u16),
    /// A SUBSCRIBE was written with packet id `pkid`.
    Subscribed(u16),
    /// The broker sent DISCONNECT (MQTT 5) with this reason.
    Disconnected(String),
    Other,
}

/// What acknowledges one received QoS 1 (or 2) message: its packet id.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ack {
    pkid: u16,
    exactly_once: bool,
}

/// Creates the client and its event loop for `settings`.
pub(super) fn new(settings: Settings) -> (Client, EventLoop) {
    let max_packet = settings.max_message_size.saturating_add(PACKET_HEADROOM);
    let transport = settings.tls.map(Transport::tls_with_config);
    match settings.version {
        MqttVersion::Mqtt5 => {
            let mut options =
                rumqttc::v5::MqttOptions::new(settings.client_id, settings.host, settings.port);
            options
                .set_keep_alive(settings.keep_alive)
                .set_max_packet_size(Some(max_packet))
                .set_receive_maximum(Some(RECEIVE_MAXIMUM))
                .set_request_channel_capacity(settings.requests)
                .set_manual_acks(true)
                .set_clean_start(settings.session_expiry_seconds == 0);
            if let Some(mut properties) = options.connect_properties() {
                properties.session_expiry_interval = (settings.session_expiry_seconds > 0)
                    .then_some(settings.session_expiry_seconds);
                options.set_connect_properties(properties);
            }
            if let Some(transport) = transport {
                options.set_transport(transport);
            }
            let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, settings.requests);
            (Client::V5(client), EventLoop::V5(Box::new(eventloop)))
        }
        MqttVersion::Mqtt3 => {
            let mut options =
                rumqttc::MqttOptions::new(settings.client_id, settings.host, settings.port);
            // MQTT 3.1.1 cannot tell the broker the client's limit: larger packets are taken
            // (up to a ceiling) so that the connection drops an oversized message rather than
            // the connection itself; sending keeps the configured limit.
            let outgoing = max_packet as usize;
            let incoming = outgoing.max(V3_INCOMING_CEILING);
            options
                .set_keep_alive(settings.keep_alive)
                .set_max_packet_size(incoming, outgoing)
                .set_request_channel_capacity(settings.requests)
                .set_manual_acks(true)
                .set_clean_session(settings.session_expiry_seconds == 0);
            if let Some(transport) = transport {
                options.set_transport(transport);
            }
            let (client, eventloop) = rumqttc::AsyncClient::new(options, settings.requests);
            (
                Client::V3 {
                    client,
                    warned: false,
                },
                EventLoop::V3(Box::new(eventloop)),
            )
        }
    }
}

fn qos5(at_least_once: bool) -> rumqttc::v5::mqttbytes::QoS {
    if at_least_once {
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce
    } else {
        rumqttc::v5::mqttbytes::QoS::AtMostOnce
    }
}

fn qos3(at_least_once: bool) -> rumqttc::QoS {
    if at_least_once {
        rumqttc::QoS::AtLeastOnce
    } else {
        rumqttc::QoS::AtMostOnce
    }
}

/// Why a PUBLISH was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SendFailure {
    /// The client will never take this message (its topic breaks MQTT's rules): trying again
    /// cannot help.
    Refused(String),
    /// The request queue is full, or the event loop has stopped: another try may do.
    Busy(String),
}

impl Client {
    /// Queues a PUBLISH.
    pub fn try_publish(
        &mut self,
        topic: String,
        at_least_once: bool,
        retain: bool,
        payload: Vec<u8>,
        properties: MqttProperties,
    ) -> Result<(), SendFailure> {
        // rumqttc refuses a topic with a wildcard with the same error as a full queue; the
        // check here, a superset of its own, tells the two apart.
        super::topic::check_topic(
            &topic,
            super::topic::TopicRules::Mqtt {
                version: crate::config::MqttVersion::Mqtt5,
            },
        )
        .map_err(|e| SendFailure::Refused(e.to_string()))?;
        let sent = match self {
            Self::V5(client) => client
                .try_publish_with_properties(
                    topic,
                    qos5(at_least_once),
                    retain,
                    payload,
                    to_publish_properties(properties),
                )
                .map_err(|e| e.to_string()),
            Self::V3 { client, warned } => {
                let dropped = mqtt5_only(&properties);
                if !dropped.is_empty() && !*warned {
                    *warned = true;
                    tracing::warn!(
                        dropped = %dropped.join(", "),
                        "the MQTT connection is MQTT 3.1.1: MQTT 5 properties of published \
                         messages are dropped (warned once)"
                    );
                }
                client
                    .try_publish(topic, qos3(at_least_once), retain, payload)
                    .map_err(|e| e.to_string())
            }
        };
        sent.map_err(SendFailure::Busy)
    }

    /// Queues the PUBACK of a received QoS 1 message.
    pub fn try_ack(&self, ack: &Ack) -> Result<(), String> {
        // rumqttc acknowledges a PUBLISH by its packet id and QoS alone.
        match self {
            Self::V5(client) => {
                let qos = if ack.exactly_once {
                    rumqttc::v5::mqttbytes::QoS::ExactlyOnce
                } else {
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce
                };
                let mut publish = mqtt5::Publish::new("", qos, Bytes::new(), None);
                publish.pkid = ack.pkid;
                client.try_ack(&publish).map_err(|e| e.to_string())
            }
            Self::V3 { client, .. } => {
                let qos = if ack.exactly_once {
                    rumqttc::QoS::ExactlyOnce
                } else {
                    rumqttc::QoS::AtLeastOnce
                };
                let mut publish = rumqttc::Publish::new("", qos, Vec::new());
                publish.pkid = ack.pkid;
                client.try_ack(&publish).map_err(|e| e.to_string())
            }
        }
    }

    /// Queues a SUBSCRIBE for one filter.
    pub fn try_subscribe(&self, filter: String, at_least_once: bool) -> Result<(), String> {
        match self {
            Self::V5(client) => client
                .try_subscribe(filter, qos5(at_least_once))
                .map_err(|e| e.to_string()),
            Self::V3 { client, .. } => client
                .try_subscribe(filter, qos3(at_least_once))
                .map_err(|e| e.to_string()),
        }
    }

    /// Queues an UNSUBSCRIBE.
    pub fn try_unsubscribe(&self, filter: String) -> Result<(), String> {
        match self {
            Self::V5(client) => client.try_unsubscribe(filter).map_err(|e| e.to_string()),
            Self::V3 { client, .. } => client.try_unsubscribe(filter).map_err(|e| e.to_string()),
        }
    }

    /// Queues a DISCONNECT.
    pub fn try_disconnect(&self) {
        match self {
            Self::V5(client) => {
                let _ = client.try_disconnect();
            }
            Self::V3 { client, .. } => {
                let _ = client.try_disconnect();
            }
        }
    }
}

impl EventLoop {
    /// The next event; an error is the connection going down (the next poll reconnects).
    pub async fn poll(&mut self) -> Result<Event, String> {
        match self {
            Self::V5(eventloop) => match eventloop.poll().await {
                Ok(rumqttc::v5::Event::Incoming(packet)) => Ok(incoming5(packet)),
                Ok(rumqttc::v5::Event::Outgoing(outgoing)) => Ok(outgoing_event(outgoing)),
                Err(e) => Err(e.to_string()),
            },
            Self::V3(eventloop) => match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(packet)) => Ok(incoming3(packet)),
                Ok(rumqttc::Event::Outgoing(outgoing)) => Ok(outgoing_event(outgoing)),
                Err(e) => Err(e.to_string()),
            },
        }
    }
}

fn outgoing_event(outgoing: Outgoing) -> Event {
    match outgoing {
        Outgoing::Publish(pkid) => Event::Published(pkid),
        Outgoing::Subscribe(pkid) => Event::Subscribed(pkid),
        _ => Event::Other,
    }
}

fn incoming5(packet: mqtt5::Packet) -> Event {
    match packet {
        mqtt5::Packet::ConnAck(ack) => Event::Connected(match ack.code {
            mqtt5::ConnectReturnCode::Success => Ok(()),
            code => Err(format!("{code:?}")),
        }),
        mqtt5::Packet::Publish(publish) => {
            let ack = (publish.qos != rumqttc::v5::mqttbytes::QoS::AtMostOnce).then_some(Ack {
                pkid: publish.pkid,
                exactly_once: publish.qos == rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
            });
            let Ok(topic) = String::from_utf8(publish.topic.to_vec()) else {
                // Acknowledged all the same: the broker would send it again and again.
                return Event::Message {
                    message: IncomingMessage {
                        topic: String::new(),
                        at_least_once: ack.is_some(),
                        payload: Bytes::new(),
                        properties: MqttProperties::default(),
                    },
                    ack,
                };
            };
            Event::Message {
                message: IncomingMessage {
                    topic,
                    at_least_once: ack.is_some(),
                    payload: publish.payload,
                    properties: from_publish_properties(publish.retain, publish.properties),
                },
                ack,
            }
        }
        mqtt5::Packet::PubAck(ack) => Event::PubAck {
            pkid: ack.pkid,
            refused: match ack.reason {
                mqtt5::PubAckReason::Success | mqtt5::PubAckReason::NoMatchingSubscribers => None,
                reason => Some(format!("{reason:?}")),
            },
        },
        mqtt5::Packet::SubAck(ack) => Event::SubAck {
            pkid: ack.pkid,
            result: match ack.return_codes.first() {
                Some(mqtt5::SubscribeReasonCode::Success(_)) => Ok(()),
                Some(code) => Err(format!("{code:?}")),
                None => Err("empty SUBACK".to_owned()),
            },
        },
        mqtt5::Packet::Disconnect(disconnect) => {
            Event::Disconnected(format!("{:?}", disconnect.reason_code))
        }
        _ => Event::Other,
    }
}

fn incoming3(packet: rumqttc::Packet) -> Event {
    match packet {
        rumqttc::Packet::ConnAck(ack) => Event::Connected(match ack.code {
            rumqttc::ConnectReturnCode::Success => Ok(()),
            code => Err(format!("{code:?}")),
        }),
        rumqttc::Packet::Publish(publish) => {
            let ack = (publish.qos != rumqttc::QoS::AtMostOnce).then_some(Ack {
                pkid: publish.pkid,
                exactly_once: publish.qos == rumqttc::QoS::ExactlyOnce,
            });
            Event::Message {
                message: IncomingMessage {
                    topic: publish.topic,
                    at_least_once: ack.is_some(),
                    payload: publish.payload,
                    properties: MqttProperties {
                        retain: Some(publish.retain),
                        ..MqttProperties::default()
                    },
                },
                ack,
            }
        }
        rumqttc::Packet::PubAck(ack) => Event::PubAck {
            pkid: ack.pkid,
            refused: None,
        },
        rumqttc::Packet::SubAck(ack) => Event::SubAck {
            pkid: ack.pkid,
            result: match ack.return_codes.first() {
                Some(rumqttc::SubscribeReasonCode::Success(_)) => Ok(()),
                Some(rumqttc::SubscribeReasonCode::Failure) => Err("Failure".to_owned()),
                None => Err("empty SUBACK".to_owned()),
            },
        },
        _ => Event::Other,
    }
}

/// The names of the MQTT 5-only members `p` sets (what MQTT 3.1.1 cannot carry).
pub(super) fn mqtt5_only(p: &MqttProperties) -> Vec<&'static str> {
    let mut names = Vec::new();
    if p.user_properties.as_ref().is_some_and(|u| !u.is_empty()) {
        names.push("userProperties");
    }
    if p.message_expiry_interval_seconds.is_some() {
        names.push("messageExpiryIntervalSeconds");
    }
    if p.correlation_data.is_some() {
        names.push("correlationData");
    }
    if p.response_topic.is_some() {
        names.push("responseTopic");
    }
    if p.payload_format.is_some() {
        names.push("payloadFormat");
    }
    if p.content_type.is_some() {
        names.push("contentType");
    }
    names
}

fn to_publish_properties(p: MqttProperties) -> mqtt5::PublishProperties {
    mqtt5::PublishProperties {
        payload_format_indicator: p.payload_format.map(|f| match f {
            PayloadFormat::Bytes => 0,
            PayloadFormat::Utf8 => 1,
        }),
        message_expiry_interval: p
            .message_expiry_interval_seconds
            .map(|s| u32::try_from(s).unwrap_or(u32::MAX)),
        topic_alias: None,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data.map(|b| Bytes::from(b.0)),
        user_properties: p
            .user_properties
            .unwrap_or_default()
            .into_iter()
            .map(|u| (u.key, u.value))
            .collect(),
        subscription_identifiers: Vec::new(),
        content_type: p.content_type,
    }
}

fn from_publish_properties(retain: bool, p: Option<mqtt5::PublishProperties>) -> MqttProperties {
    let p = p.unwrap_or_default();
    MqttProperties {
        retain: Some(retain),
        user_properties: (!p.user_properties.is_empty()).then(|| {
            p.user_properties
                .into_iter()
                .map(|(key, value)| UserProperty { key, value })
                .collect()
        }),
        message_expiry_interval_seconds: p.message_expiry_interval.map(u64::from),
        correlation_data: p.correlation_data.map(|b| Blob(b.to_vec())),
        response_topic: p.response_topic,
        payload_format: p.payload_format_indicator.map(|f| {
            if f == 1 {
                PayloadFormat::Utf8
            } else {
                PayloadFormat::Bytes
            }
        }),
        content_type: p.content_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt5_only_members_are_named() {
        assert!(mqtt5_only(&MqttProperties::default()).is_empty());
        let p = MqttProperties {
            retain: Some(true),
            user_properties: Some(vec![UserProperty {
                key: "k".into(),
                value: "v".into(),
            }]),
            content_type: Some("application/json".into()),
            ..MqttProperties::default()
        };
        assert_eq!(mqtt5_only(&p), ["userProperties", "contentType"]);
    }

    #[test]
    fn properties_survive_the_mqtt5_round_trip() {
        let p = MqttProperties {
            retain: Some(false),
            user_properties: Some(vec![UserProperty {
                key: "k".into(),
                value: "v".into(),
            }]),
            message_expiry_interval_seconds: Some(60),
            correlation_data: Some(Blob(b"c".to_vec())),
            response_topic: Some("r/t".into()),
            payload_format: Some(PayloadFormat::Utf8),
            content_type: Some("text/plain".into()),
        };
        let back = from_publish_properties(false, Some(to_publish_properties(p.clone())));
        assert_eq!(back, p);
    }
}
