//! The JSON payloads of the operations (`greengrass-ipc.md` §4), one type per shape, members
//! in lowerCamelCase. Requests keep what the model makes optional as `Option`, so a missing
//! member reaches the host, which answers with the nucleus's text; `validate` methods do that
//! where the spec gives the text. Unknown keys are ignored, as all three implementations do;
//! absent members are omitted when writing.
//!
//! - [`pubsub`]: PublishToTopic, SubscribeToTopic and their messages.
//! - [`iot_core`]: PublishToIoTCore, SubscribeToIoTCore, `MQTTMessage`.
//! - [`configuration`]: GetConfiguration, UpdateConfiguration, SubscribeToConfigurationUpdate.
//! - [`components`]: UpdateState and the CLI's component operations.
//! - [`deployments`]: the CLI's local deployment operations.
//! - [`token`]: ValidateAuthorizationToken, for Stream Manager.
//! - [`updates`]: SubscribeToComponentUpdates and DeferComponentUpdate.

pub mod components;
pub mod configuration;
pub mod deployments;
pub mod iot_core;
pub mod pubsub;
pub mod token;
pub mod updates;

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::IpcError;

/// Standard base64; padding is written, and accepted or not when read.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A `blob` member: bytes, carried as a standard base64 string with padding (§4).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Blob(pub Vec<u8>);

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({})", BASE64.encode(&self.0))
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        BASE64
            .decode(text.as_bytes())
            .map(Blob)
            .map_err(|e| serde::de::Error::custom(format!("blob is not base64: {e}")))
    }
}

/// Reads a request payload into its shape. A payload that does not fit the shape is what the
/// nucleus answers with its unmodelled `InternalServerError` (§3.7); an empty payload reads as
/// `{}`.
pub fn parse_request<T: DeserializeOwned>(payload: &[u8]) -> Result<T, IpcError> {
    let payload = if payload.is_empty() { b"{}" } else { payload };
    serde_json::from_slice(payload).map_err(|e| IpcError::unmodelled(e.to_string()))
}

/// A component name member that must be present and non-empty (the CLI operations, §4.5).
pub(crate) fn required_component_name(name: Option<String>) -> Result<String, IpcError> {
    match name {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(IpcError::invalid_arguments(
            "Component name cannot be empty",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_padded_base64_and_read_either_way() {
        let blob = Blob(vec![0, 1, b'b', b'i', b'n', b'a', b'r', b'y', 0xff]);
        assert_eq!(serde_json::to_string(&blob).unwrap(), r#""AAFiaW5hcnn/""#);
        let padded: Blob = serde_json::from_str(r#""AAH/""#).unwrap();
        assert_eq!(padded.0, [0, 1, 0xff]);
        let short: Blob = serde_json::from_str(r#""eyJ0IjoyMS41fQ==""#).unwrap();
        let unpadded: Blob = serde_json::from_str(r#""eyJ0IjoyMS41fQ""#).unwrap();
        assert_eq!(short, unpadded);
        assert_eq!(short.0, br#"{"t":21.5}"#);
        assert!(serde_json::from_str::<Blob>(r#""not base64!""#).is_err());
    }

    #[test]
    fn a_payload_that_does_not_fit_is_unmodelled() {
        let err = parse_request::<pubsub::PublishToTopicRequest>(br#"{"topic": 7}"#).unwrap_err();
        assert!(matches!(err, IpcError::Unmodelled { .. }), "{err:?}");
        let empty: pubsub::PublishToTopicRequest = parse_request(b"").unwrap();
        assert_eq!(empty.topic, None);
    }
}
