//! A component's own lifecycle report (§4.4) and the CLI's component operations (§4.5).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::required_component_name;
use crate::ipc::error::IpcError;

/// `ReportedLifecycleState`: what a component may report about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReportedLifecycleState {
    Running,
    Errored,
}

/// `UpdateStateRequest`: applies to the caller's own component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStateRequest {
    pub state: ReportedLifecycleState,
}

/// `UpdateStateResponse`: always `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateStateResponse {}

/// The error when the caller's component is unknown to the host.
pub fn caller_not_found(caller: &str) -> IpcError {
    IpcError::ResourceNotFound {
        message: "Component with given name not found".into(),
        resource_type: Some("Component".into()),
        resource_name: Some(caller.to_owned()),
    }
}

/// `LifecycleState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LifecycleState {
    New,
    Installed,
    Starting,
    Running,
    Stopping,
    Errored,
    Broken,
    Finished,
}

/// `ComponentDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentDetails {
    pub component_name: String,
    pub version: String,
    pub state: LifecycleState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Map<String, Value>>,
}

/// A request that names one target component: `GetComponentDetailsRequest`,
/// `RestartComponentRequest`, `StopComponentRequest` (and Pause/Resume).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_name: Option<String>,
}

pub type GetComponentDetailsRequest = ComponentRequest;
pub type RestartComponentRequest = ComponentRequest;
pub type StopComponentRequest = ComponentRequest;

impl ComponentRequest {
    /// The target, which must be named (§4.5).
    pub fn validate(self) -> Result<String, IpcError> {
        required_component_name(self.component_name)
    }
}

/// The error for a target the host does not know (§4.5; the model's `ComponentNotFoundError`
/// is not what the nucleus uses).
pub fn component_not_found(name: &str) -> IpcError {
    IpcError::resource_not_found(format!(
        "Component with name {name} not found in Greengrass"
    ))
}

/// `GetComponentDetailsResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetComponentDetailsResponse {
    pub component_details: ComponentDetails,
}

/// `ListComponentsRequest`: no members.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListComponentsRequest {}

/// `ListComponentsResponse`: every component but the nucleus itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListComponentsResponse {
    pub components: Vec<ComponentDetails>,
}

/// `RequestStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestStatus {
    Succeeded,
    Failed,
}

/// `RestartComponentResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartComponentResponse {
    pub restart_status: RequestStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `StopComponentResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopComponentResponse {
    pub stop_status: RequestStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::shapes::parse_request;
    use serde_json::json;

    #[test]
    fn update_state_reads_the_two_reportable_states() {
        let r: UpdateStateRequest = parse_request(br#"{"state": "RUNNING"}"#).unwrap();
        assert_eq!(r.state, ReportedLifecycleState::Running);
        let r: UpdateStateRequest = parse_request(br#"{"state":"ERRORED"}"#).unwrap();
        assert_eq!(r.state, ReportedLifecycleState::Errored);
        assert!(parse_request::<UpdateStateRequest>(br#"{"state": "BROKEN"}"#).is_err());
        let body: Value =
            serde_json::from_slice(&caller_not_found("com.example.Probe").to_wire().payload)
                .unwrap();
        assert_eq!(
            body,
            json!({"message": "Component with given name not found", "resourceType": "Component", "resourceName": "com.example.Probe"})
        );
    }

    #[test]
    fn targets_must_be_named() {
        let empty: ComponentRequest = parse_request(br#"{"componentName": ""}"#).unwrap();
        assert_eq!(
            empty.validate().unwrap_err().to_string(),
            "Component name cannot be empty"
        );
        let missing: ComponentRequest = parse_request(b"{}").unwrap();
        assert!(missing.validate().is_err());
        let named: ComponentRequest = parse_request(br#"{"componentName": "c"}"#).unwrap();
        assert_eq!(named.validate().unwrap(), "c");
        assert_eq!(
            component_not_found("c").to_string(),
            "Component with name c not found in Greengrass"
        );
    }

    #[test]
    fn responses_have_the_model_members() {
        let details = ComponentDetails {
            component_name: "c".into(),
            version: "1.0.0".into(),
            state: LifecycleState::Running,
            configuration: Some(Map::new()),
        };
        assert_eq!(
            serde_json::to_value(GetComponentDetailsResponse {
                component_details: details.clone()
            })
            .unwrap(),
            json!({"componentDetails": {"componentName": "c", "version": "1.0.0", "state": "RUNNING", "configuration": {}}})
        );
        assert_eq!(
            serde_json::to_value(ListComponentsResponse {
                components: vec![details]
            })
            .unwrap()["components"][0]["state"],
            "RUNNING"
        );
        assert_eq!(
            serde_json::to_value(RestartComponentResponse {
                restart_status: RequestStatus::Succeeded,
                message: None
            })
            .unwrap(),
            json!({"restartStatus": "SUCCEEDED"})
        );
        assert_eq!(
            serde_json::to_value(StopComponentResponse {
                stop_status: RequestStatus::Failed,
                message: Some("timed out".into())
            })
            .unwrap(),
            json!({"stopStatus": "FAILED", "message": "timed out"})
        );
    }
}
