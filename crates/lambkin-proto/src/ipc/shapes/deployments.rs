//! The CLI's local deployment operations: CreateLocalDeployment, GetLocalDeploymentStatus and
//! ListLocalDeployments (members as in the SDK clients' models; the spec names them in §4.7).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `FailureHandlingPolicy`; a local deployment's default is `DO_NOTHING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureHandlingPolicy {
    Rollback,
    DoNothing,
}

/// `SystemResourceLimits`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemResourceLimits {
    /// Kilobytes of RAM.
    #[serde(default, rename = "memory", skip_serializing_if = "Option::is_none")]
    pub memory_kib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

/// `RunWithInfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunWithInfo {
    /// `user` or `user:group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posix_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_resource_limits: Option<SystemResourceLimits>,
}

/// `CreateLocalDeploymentRequest`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateLocalDeploymentRequest {
    /// `LOCAL_DEPLOYMENT` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// Component name → version, added to the group's root components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_component_versions_to_add: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_components_to_remove: Option<Vec<String>>,
    /// Component name → configuration update (`{"MERGE": {...}, "RESET": [...]}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_to_configuration: Option<BTreeMap<String, Map<String, Value>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_to_run_with_info: Option<BTreeMap<String, RunWithInfo>>,
    /// Recipes in this directory are copied into the host's store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe_directory_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts_directory_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_handling_policy: Option<FailureHandlingPolicy>,
}

/// `CreateLocalDeploymentResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateLocalDeploymentResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
}

/// `DeploymentStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatus {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    Canceled,
}

impl DeploymentStatus {
    /// The name on the wire (`IN_PROGRESS`, ...), also how the host stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::InProgress => "IN_PROGRESS",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Canceled => "CANCELED",
        }
    }

    /// The status of that name; `None` for any other text.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::InProgress,
            Self::Succeeded,
            Self::Failed,
            Self::Canceled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// `DetailedDeploymentStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DetailedDeploymentStatus {
    Successful,
    FailedNoStateChange,
    FailedRollbackNotRequested,
    FailedRollbackComplete,
    Rejected,
}

/// `DeploymentStatusDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatusDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detailed_deployment_status: Option<DetailedDeploymentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_error_stack: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_error_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_failure_cause: Option<String>,
}

/// `LocalDeployment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalDeployment {
    pub deployment_id: String,
    pub status: DeploymentStatus,
    /// `MM/dd/yyyy hh:mm:ss`, as the nucleus writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_status_details: Option<DeploymentStatusDetails>,
}

/// `GetLocalDeploymentStatusRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetLocalDeploymentStatusRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
}

/// `GetLocalDeploymentStatusResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetLocalDeploymentStatusResponse {
    pub deployment: LocalDeployment,
}

/// `ListLocalDeploymentsRequest`: no members.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListLocalDeploymentsRequest {}

/// `ListLocalDeploymentsResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListLocalDeploymentsResponse {
    pub local_deployments: Vec<LocalDeployment>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::shapes::parse_request;
    use serde_json::json;

    #[test]
    fn a_full_create_request_reads_every_member() {
        let request: CreateLocalDeploymentRequest = parse_request(
            br#"{"groupName": "g", "rootComponentVersionsToAdd": {"com.example.A": "1.0.0"},
                 "rootComponentsToRemove": ["com.example.B"],
                 "componentToConfiguration": {"com.example.A": {"MERGE": {"n": 1}, "RESET": ["/m"]}},
                 "componentToRunWithInfo": {"com.example.A": {"posixUser": "u:g", "systemResourceLimits": {"memory": 1024, "cpus": 0.5}}},
                 "recipeDirectoryPath": "/r", "artifactsDirectoryPath": "/a", "failureHandlingPolicy": "DO_NOTHING"}"#,
        )
        .unwrap();
        assert_eq!(request.group_name.as_deref(), Some("g"));
        assert_eq!(
            request.root_component_versions_to_add.unwrap()["com.example.A"],
            "1.0.0"
        );
        assert_eq!(
            request.component_to_configuration.unwrap()["com.example.A"]["MERGE"]["n"],
            1
        );
        let run_with = &request.component_to_run_with_info.unwrap()["com.example.A"];
        assert_eq!(run_with.posix_user.as_deref(), Some("u:g"));
        let limits = run_with.system_resource_limits.as_ref().unwrap();
        assert_eq!(limits.memory_kib, Some(1024));
        assert_eq!(limits.cpus, Some(0.5));
        assert_eq!(
            request.failure_handling_policy,
            Some(FailureHandlingPolicy::DoNothing)
        );
        let empty: CreateLocalDeploymentRequest = parse_request(b"{}").unwrap();
        assert_eq!(empty, CreateLocalDeploymentRequest::default());
    }

    #[test]
    fn deployments_are_written_with_the_model_members() {
        let deployment = LocalDeployment {
            deployment_id: "d-1".into(),
            status: DeploymentStatus::InProgress,
            created_on: None,
            deployment_status_details: Some(DeploymentStatusDetails {
                detailed_deployment_status: Some(DetailedDeploymentStatus::FailedNoStateChange),
                deployment_error_stack: None,
                deployment_error_types: None,
                deployment_failure_cause: Some("artifact digest mismatch".into()),
            }),
        };
        assert_eq!(
            serde_json::to_value(GetLocalDeploymentStatusResponse {
                deployment: deployment.clone()
            })
            .unwrap(),
            json!({"deployment": {"deploymentId": "d-1", "status": "IN_PROGRESS",
                   "deploymentStatusDetails": {"detailedDeploymentStatus": "FAILED_NO_STATE_CHANGE",
                                               "deploymentFailureCause": "artifact digest mismatch"}}})
        );
        assert_eq!(
            serde_json::to_value(ListLocalDeploymentsResponse {
                local_deployments: vec![deployment]
            })
            .unwrap()["localDeployments"][0]["deploymentId"],
            "d-1"
        );
        assert_eq!(
            serde_json::to_string(&CreateLocalDeploymentResponse {
                deployment_id: Some("d-1".into())
            })
            .unwrap(),
            r#"{"deploymentId":"d-1"}"#
        );
    }
}
