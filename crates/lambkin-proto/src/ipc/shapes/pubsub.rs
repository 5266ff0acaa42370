//! Local publish/subscribe (§4.1).

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Blob, BASE64};
use crate::ipc::error::IpcError;

/// `PublishToTopicRequest`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishToTopicRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_message: Option<PublishMessage>,
}

/// `PublishMessage`, a union: exactly one member should be set. Also the shape of
/// `SubscriptionResponseMessage`, the event a subscriber gets.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_message: Option<JsonMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_message: Option<BinaryMessage>,
}

/// `SubscriptionResponseMessage`: the event of a `SubscribeToTopic` stream.
pub type SubscriptionResponseMessage = PublishMessage;

/// `JsonMessage`: any JSON document, passed through as is.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<MessageContext>,
}

/// `BinaryMessage`: bytes as base64.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BinaryMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<MessageContext>,
}

/// `MessageContext`: on delivery, the concrete topic the message was published to. Ignored on
/// publish.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// `PublishToTopicResponse`: always `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PublishToTopicResponse {}

/// What a publish carries, once the union is resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum MessagePayload {
    /// A JSON document; `null` when the client sent `jsonMessage` without `message`.
    Json(Value),
    Binary(Vec<u8>),
}

/// A message to deliver, borrowed from where it is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MessageRef<'a> {
    Json(&'a Value),
    Binary(&'a [u8]),
}

/// A validated `PublishToTopic`.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub topic: String,
    pub message: MessagePayload,
}

impl PublishToTopicRequest {
    /// The nucleus's checks, with its texts (§4.1); authorization comes first, on the raw
    /// `topic`. The message union is checked last, with text of our own: the spec is silent.
    pub fn validate(self) -> Result<Publish, IpcError> {
        let topic = self
            .topic
            .ok_or_else(|| IpcError::invalid_arguments("Publish topic must not be null"))?;
        if topic.contains(['+', '#', '*']) {
            return Err(IpcError::invalid_arguments(
                "Publish topic must not contain a wildcard.",
            ));
        }
        let message = match self
            .publish_message
            .map(|m| (m.json_message, m.binary_message))
        {
            Some((Some(json), None)) => MessagePayload::Json(json.message.unwrap_or(Value::Null)),
            Some((None, Some(binary))) => {
                MessagePayload::Binary(binary.message.map(|b| b.0).unwrap_or_default())
            }
            _ => {
                return Err(IpcError::invalid_arguments(
                    "Publish message must hold exactly one of jsonMessage and binaryMessage",
                ))
            }
        };
        Ok(Publish { topic, message })
    }
}

impl PublishMessage {
    /// The event a subscriber gets for a message published to `topic`: the same variant as
    /// published, with `context.topic` set to the concrete topic.
    pub fn delivery(message: &MessagePayload, topic: &str) -> Self {
        let context = Some(MessageContext {
            topic: Some(topic.to_owned()),
        });
        match message {
            MessagePayload::Json(value) => Self {
                json_message: Some(JsonMessage {
                    message: Some(value.clone()),
                    context,
                }),
                binary_message: None,
            },
            MessagePayload::Binary(bytes) => Self {
                json_message: None,
                binary_message: Some(BinaryMessage {
                    message: Some(Blob(bytes.clone())),
                    context,
                }),
            },
        }
    }
}

impl PublishMessage {
    /// The JSON of [`delivery`](Self::delivery) for `message` published on `topic`, written
    /// from the borrowed message into one buffer: a subscriber's event costs one copy of the
    /// message, not three.
    pub fn encode_delivery(message: MessageRef<'_>, topic: &str) -> serde_json::Result<Vec<u8>> {
        #[derive(Serialize)]
        struct Context<'a> {
            topic: &'a str,
        }
        #[derive(Serialize)]
        struct Json<'a> {
            message: &'a Value,
            context: Context<'a>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct JsonEvent<'a> {
            json_message: Json<'a>,
        }
        const BINARY_START: &[u8] = br#"{"binaryMessage":{"message":""#;
        const BINARY_CONTEXT: &[u8] = br#"","context":{"topic":"#;
        match message {
            MessageRef::Json(message) => serde_json::to_vec(&JsonEvent {
                json_message: Json {
                    message,
                    context: Context { topic },
                },
            }),
            MessageRef::Binary(bytes) => {
                // Base64 needs no JSON escape, so it goes straight into the buffer.
                let topic = serde_json::to_vec(topic)?;
                let encoded = bytes.len().div_ceil(3) * 4;
                let mut out = Vec::with_capacity(
                    BINARY_START.len() + encoded + BINARY_CONTEXT.len() + topic.len() + 3,
                );
                out.extend_from_slice(BINARY_START);
                let start = out.len();
                out.resize(start + encoded, 0);
                let written = BASE64
                    .encode_slice(bytes, &mut out[start..])
                    .map_err(serde::ser::Error::custom)?;
                out.truncate(start + written);
                out.extend_from_slice(BINARY_CONTEXT);
                out.extend_from_slice(&topic);
                out.extend_from_slice(b"}}}");
                Ok(out)
            }
        }
    }
}

/// `ReceiveMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReceiveMode {
    ReceiveAllMessages,
    /// The subscriber's own component's messages are not delivered to it.
    ReceiveMessagesFromOthers,
}

/// `SubscribeToTopicRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeToTopicRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_mode: Option<ReceiveMode>,
}

/// A validated `SubscribeToTopic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The filter, which may use the MQTT wildcards `+` and `#`.
    pub topic: String,
    pub receive_mode: ReceiveMode,
}

impl SubscribeToTopicRequest {
    /// The nucleus's check and default (§4.1): an empty filter is refused; without
    /// `receiveMode`, a filter with a wildcard does not receive its own component's messages.
    pub fn validate(self) -> Result<Subscribe, IpcError> {
        let topic = self.topic.unwrap_or_default();
        if topic.is_empty() {
            return Err(IpcError::invalid_arguments(
                "Subscribe topic must not be empty",
            ));
        }
        let receive_mode = self.receive_mode.unwrap_or(if topic.contains(['+', '#']) {
            ReceiveMode::ReceiveMessagesFromOthers
        } else {
            ReceiveMode::ReceiveAllMessages
        });
        Ok(Subscribe {
            topic,
            receive_mode,
        })
    }
}

/// `SubscribeToTopicResponse`: the nucleus sends `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeToTopicResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::shapes::parse_request;
    use serde_json::json;

    #[test]
    fn python_and_node_publishes_read_the_same() {
        let py: PublishToTopicRequest = parse_request(
            br#"{"topic": "test/topic", "publishMessage": {"jsonMessage": {"message": {"hello": "world", "n": 1}}}}"#,
        )
        .unwrap();
        let publish = py.validate().unwrap();
        assert_eq!(publish.topic, "test/topic");
        assert_eq!(
            publish.message,
            MessagePayload::Json(json!({"hello": "world", "n": 1}))
        );
        let node: PublishToTopicRequest = parse_request(
            br#"{"topic":"test/topic","publishMessage":{"binaryMessage":{"message":"AAH/"}}}"#,
        )
        .unwrap();
        assert_eq!(
            node.validate().unwrap().message,
            MessagePayload::Binary(vec![0, 1, 0xff])
        );
    }

    #[test]
    fn publish_checks_use_the_nucleus_texts() {
        let message = |r: PublishToTopicRequest| r.validate().unwrap_err().to_string();
        assert_eq!(
            message(PublishToTopicRequest::default()),
            "Publish topic must not be null"
        );
        for topic in ["a/+", "a/#", "a*"] {
            let request = PublishToTopicRequest {
                topic: Some(topic.into()),
                publish_message: None,
            };
            assert_eq!(
                message(request),
                "Publish topic must not contain a wildcard."
            );
        }
        let request = PublishToTopicRequest {
            topic: Some("a".into()),
            publish_message: Some(PublishMessage::default()),
        };
        assert!(matches!(
            request.validate(),
            Err(IpcError::InvalidArguments { .. })
        ));
    }

    #[test]
    fn deliveries_match_the_captured_events() {
        let json_event = PublishMessage::delivery(
            &MessagePayload::Json(json!({"hello": "world", "n": 1})),
            "test/topic",
        );
        assert_eq!(
            serde_json::to_string(&json_event).unwrap(),
            r#"{"jsonMessage":{"message":{"hello":"world","n":1},"context":{"topic":"test/topic"}}}"#
        );
        let binary_event = PublishMessage::delivery(
            &MessagePayload::Binary(vec![0, 1, b'b', b'i', b'n', b'a', b'r', b'y', 0xff]),
            "test/topic",
        );
        assert_eq!(
            serde_json::to_string(&binary_event).unwrap(),
            r#"{"binaryMessage":{"message":"AAFiaW5hcnn/","context":{"topic":"test/topic"}}}"#
        );
    }

    #[test]
    fn encoded_deliveries_are_the_deliveries_json() {
        let document = json!({"hello": "world", "n": 1, "s": "\"quoted\"\n"});
        for topic in ["test/topic", "a \"quoted\" \\ topic/\u{1}/é"] {
            let expected = serde_json::to_vec(&PublishMessage::delivery(
                &MessagePayload::Json(document.clone()),
                topic,
            ))
            .unwrap();
            let encoded =
                PublishMessage::encode_delivery(MessageRef::Json(&document), topic).unwrap();
            assert_eq!(
                String::from_utf8(encoded).unwrap(),
                String::from_utf8(expected).unwrap()
            );
            for len in [0, 1, 2, 3, 4, 100] {
                let bytes: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
                let expected = serde_json::to_vec(&PublishMessage::delivery(
                    &MessagePayload::Binary(bytes.clone()),
                    topic,
                ))
                .unwrap();
                let encoded =
                    PublishMessage::encode_delivery(MessageRef::Binary(&bytes), topic).unwrap();
                assert_eq!(
                    String::from_utf8(encoded).unwrap(),
                    String::from_utf8(expected).unwrap(),
                    "{len} bytes"
                );
            }
        }
    }

    #[test]
    fn subscribe_defaults_the_receive_mode_by_wildcard() {
        let subscribe = |topic: &str| {
            SubscribeToTopicRequest {
                topic: Some(topic.into()),
                receive_mode: None,
            }
            .validate()
        };
        assert_eq!(
            subscribe("test/topic").unwrap().receive_mode,
            ReceiveMode::ReceiveAllMessages
        );
        assert_eq!(
            subscribe("test/+").unwrap().receive_mode,
            ReceiveMode::ReceiveMessagesFromOthers
        );
        assert_eq!(
            subscribe("").unwrap_err().to_string(),
            "Subscribe topic must not be empty"
        );
        let explicit: SubscribeToTopicRequest =
            parse_request(br#"{"topic": "a/#", "receiveMode": "RECEIVE_ALL_MESSAGES"}"#).unwrap();
        assert_eq!(
            explicit.validate().unwrap().receive_mode,
            ReceiveMode::ReceiveAllMessages
        );
        assert_eq!(
            serde_json::to_string(&SubscribeToTopicResponse::default()).unwrap(),
            "{}"
        );
    }
}
