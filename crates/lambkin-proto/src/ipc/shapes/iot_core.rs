//! The AWS IoT Core MQTT proxy (§4.2, IPC service `aws.greengrass.ipc.mqttproxy`).

use serde::{Deserialize, Serialize};

use super::Blob;
use crate::ipc::error::IpcError;

/// `QOS`: the strings `"0"` and `"1"`, not numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Qos {
    #[serde(rename = "0")]
    AtMostOnce,
    #[serde(rename = "1")]
    AtLeastOnce,
}

impl Qos {
    /// The nucleus's reading of the `qos` member (§4.2).
    fn parse(qos: Option<&str>) -> Result<Self, IpcError> {
        match qos {
            None => Err(IpcError::invalid_arguments("QoS is required")),
            Some("0") => Ok(Self::AtMostOnce),
            Some("1") => Ok(Self::AtLeastOnce),
            Some(other) => Err(IpcError::invalid_arguments(format!(
                "Invalid QoS value: {other}"
            ))),
        }
    }
}

/// `PayloadFormat`: `"0"` bytes, `"1"` UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PayloadFormat {
    #[serde(rename = "0")]
    Bytes,
    #[serde(rename = "1")]
    Utf8,
}

/// `UserProperty`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserProperty {
    pub key: String,
    pub value: String,
}

/// The MQTT 5 members a publish and a delivered message share (nucleus ≥ 2.10).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MqttProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_properties: Option<Vec<UserProperty>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_expiry_interval_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format: Option<PayloadFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// `PublishToIoTCoreRequest`. `qos` stays a string here so that a bad value gets the
/// nucleus's `InvalidArgumentsError` rather than a parse failure.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishToIoTCoreRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Blob>,
    #[serde(flatten)]
    pub properties: MqttProperties,
}

/// A validated `PublishToIoTCore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoTCorePublish {
    pub topic_name: String,
    pub qos: Qos,
    pub payload: Vec<u8>,
    pub properties: MqttProperties,
}

impl PublishToIoTCoreRequest {
    /// The nucleus's checks in its order, with its texts (§4.2).
    pub fn validate(self) -> Result<IoTCorePublish, IpcError> {
        let topic_name = self
            .topic_name
            .ok_or_else(|| IpcError::invalid_arguments("Topic is required"))?;
        let payload = self
            .payload
            .ok_or_else(|| IpcError::invalid_arguments("Payload is required"))?;
        let qos = Qos::parse(self.qos.as_deref())?;
        Ok(IoTCorePublish {
            topic_name,
            qos,
            payload: payload.0,
            properties: self.properties,
        })
    }
}

/// `PublishToIoTCoreResponse`: always `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PublishToIoTCoreResponse {}

/// `SubscribeToIoTCoreRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeToIoTCoreRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
}

/// A validated `SubscribeToIoTCore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoTCoreSubscribe {
    /// The filter, which may use `+` and `#`.
    pub topic_name: String,
    pub qos: Qos,
}

impl SubscribeToIoTCoreRequest {
    /// The same checks and texts as a publish's topic and QoS.
    pub fn validate(self) -> Result<IoTCoreSubscribe, IpcError> {
        let topic_name = self
            .topic_name
            .ok_or_else(|| IpcError::invalid_arguments("Topic is required"))?;
        let qos = Qos::parse(self.qos.as_deref())?;
        Ok(IoTCoreSubscribe { topic_name, qos })
    }
}

/// `SubscribeToIoTCoreResponse`: `{}`, sent after the cloud's SUBACK.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubscribeToIoTCoreResponse {}

/// `MQTTMessage`: a message from the cloud; `topic_name` is the concrete topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MqttMessage {
    pub topic_name: String,
    pub payload: Blob,
    #[serde(flatten)]
    pub properties: MqttProperties,
}

/// `IoTCoreMessage`: the event of a `SubscribeToIoTCore` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoTCoreMessage {
    pub message: MqttMessage,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::shapes::parse_request;
    use serde_json::json;

    #[test]
    fn a_full_publish_reads_every_member() {
        let request: PublishToIoTCoreRequest = parse_request(
            br#"{"topicName": "dev/a1/telemetry", "qos": "0", "payload": "eyJ0IjoyMS41fQ==",
                 "retain": false, "userProperties": [{"key": "k", "value": "v"}],
                 "messageExpiryIntervalSeconds": 60, "correlationData": "AAE=", "responseTopic": "r/t",
                 "payloadFormat": "1", "contentType": "application/json"}"#,
        )
        .unwrap();
        let publish = request.validate().unwrap();
        assert_eq!(publish.topic_name, "dev/a1/telemetry");
        assert_eq!(publish.qos, Qos::AtMostOnce);
        assert_eq!(publish.payload, br#"{"t":21.5}"#);
        let p = &publish.properties;
        assert_eq!(p.retain, Some(false));
        assert_eq!(p.user_properties.as_ref().map(Vec::len), Some(1));
        assert_eq!(p.message_expiry_interval_seconds, Some(60));
        assert_eq!(p.correlation_data, Some(Blob(vec![0, 1])));
        assert_eq!(p.payload_format, Some(PayloadFormat::Utf8));
        assert_eq!(p.content_type.as_deref(), Some("application/json"));
    }

    #[test]
    fn publish_checks_use_the_nucleus_texts_in_its_order() {
        let error = |body: &str| {
            parse_request::<PublishToIoTCoreRequest>(body.as_bytes())
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        assert_eq!(error(r#"{"qos": "0", "payload": ""}"#), "Topic is required");
        assert_eq!(
            error(r#"{"topicName": "t", "qos": "0"}"#),
            "Payload is required"
        );
        assert_eq!(
            error(r#"{"topicName": "t", "payload": ""}"#),
            "QoS is required"
        );
        assert_eq!(
            error(r#"{"topicName": "t", "payload": "", "qos": "2"}"#),
            "Invalid QoS value: 2"
        );
    }

    #[test]
    fn delivered_messages_omit_absent_members() {
        let event = IoTCoreMessage {
            message: MqttMessage {
                topic_name: "dev/a1/telemetry".into(),
                payload: Blob(br#"{"t":21.5}"#.to_vec()),
                properties: MqttProperties {
                    retain: Some(false),
                    payload_format: Some(PayloadFormat::Bytes),
                    ..MqttProperties::default()
                },
            },
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"message": {"topicName": "dev/a1/telemetry", "payload": "eyJ0IjoyMS41fQ==",
                               "retain": false, "payloadFormat": "0"}})
        );
        let subscribe: SubscribeToIoTCoreRequest =
            parse_request(br#"{"topicName": "dev/+/telemetry", "qos": "1"}"#).unwrap();
        assert_eq!(subscribe.validate().unwrap().qos, Qos::AtLeastOnce);
    }
}
