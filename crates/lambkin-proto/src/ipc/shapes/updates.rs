//! SubscribeToComponentUpdates and DeferComponentUpdate: a deployment that notifies components
//! (`componentUpdatePolicy` `NOTIFY_COMPONENTS`) tells each subscribed component before it
//! updates anything, and lets it defer the update, then tells it once the update is done.

use serde::{Deserialize, Serialize};

use crate::ipc::error::IpcError;

/// `PreComponentUpdateEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreComponentUpdateEvent {
    pub deployment_id: String,
    /// Whether the update restarts the host (never, for Lambkin: it updates components in
    /// place).
    pub is_ggc_restarting: bool,
}

/// `PostComponentUpdateEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostComponentUpdateEvent {
    pub deployment_id: String,
}

/// `ComponentUpdatePolicyEvents`: the event of a SubscribeToComponentUpdates stream, one
/// member set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentUpdatePolicyEvents {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_update_event: Option<PreComponentUpdateEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_update_event: Option<PostComponentUpdateEvent>,
}

/// `DeferComponentUpdateRequest`: `recheckAfterMs` 0 (or absent) lets the update go ahead;
/// more asks the deployment to wait that long and ask again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeferComponentUpdateRequest {
    pub deployment_id: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub recheck_after_ms: Option<i64>,
}

impl DeferComponentUpdateRequest {
    /// The deployment it answers and how long it defers the update (zero: not at all).
    pub fn validate(&self) -> Result<(&str, u64), IpcError> {
        let id = self
            .deployment_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| IpcError::InvalidArguments {
                message: "Deployment ID is required".into(),
            })?;
        let recheck = self.recheck_after_ms.unwrap_or(0);
        if recheck < 0 {
            return Err(IpcError::InvalidArguments {
                message: "recheckAfterMs cannot be negative".into(),
            });
        }
        Ok((id, recheck as u64))
    }
}

/// `DeferComponentUpdateResponse`: always `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeferComponentUpdateResponse {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::shapes::parse_request;

    #[test]
    fn events_carry_one_member_in_the_clients_names() {
        let pre = ComponentUpdatePolicyEvents {
            pre_update_event: Some(PreComponentUpdateEvent {
                deployment_id: "d".into(),
                is_ggc_restarting: false,
            }),
            post_update_event: None,
        };
        assert_eq!(
            serde_json::to_string(&pre).unwrap(),
            r#"{"preUpdateEvent":{"deploymentId":"d","isGgcRestarting":false}}"#
        );
    }

    #[test]
    fn a_deferral_names_its_deployment() {
        let ok: DeferComponentUpdateRequest =
            parse_request(br#"{"deploymentId":"d","recheckAfterMs":1500}"#).unwrap();
        assert_eq!(ok.validate().unwrap(), ("d", 1500));
        let ack: DeferComponentUpdateRequest = parse_request(br#"{"deploymentId":"d"}"#).unwrap();
        assert_eq!(ack.validate().unwrap(), ("d", 0));
        let none: DeferComponentUpdateRequest = parse_request(br#"{"message":"x"}"#).unwrap();
        assert!(matches!(
            none.validate(),
            Err(IpcError::InvalidArguments { .. })
        ));
        let negative: DeferComponentUpdateRequest =
            parse_request(br#"{"deploymentId":"d","recheckAfterMs":-1}"#).unwrap();
        assert!(negative.validate().is_err());
    }
}
