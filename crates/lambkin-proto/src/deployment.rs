//! A deployment's outcome as Greengrass reports it (nucleus 2.8 and later): the detailed
//! status, and for a failure the error stack (`DeploymentErrorCode`s, most generic first) and
//! the error types they fall in. The host decides which codes a failure has; this module holds
//! the vocabulary, how it is written, and its one mapping to the IPC's
//! `DeploymentStatusDetails`.

use serde::{Deserialize, Serialize};

use crate::ipc::shapes::deployments::{DeploymentStatusDetails, DetailedDeploymentStatus};

/// Defines [`ErrorCode`] from one list of its variants and Greengrass's names for them, so
/// the enum, [`ErrorCode::as_str`] and [`ErrorCode::ALL`] cannot drift apart.
macro_rules! error_codes {
    ($($variant:ident => $name:literal,)+) => {
        /// A Greengrass deployment error code: a step of the error stack.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum ErrorCode {
            $($variant,)+
        }

        impl ErrorCode {
            /// Every code Lambkin reports.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code as Greengrass writes it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)+
                }
            }
        }
    };
}

error_codes! {
    DeploymentFailure => "DEPLOYMENT_FAILURE",
    DeploymentInterrupted => "DEPLOYMENT_INTERRUPTED",
    ArtifactDownloadError => "ARTIFACT_DOWNLOAD_ERROR",
    NoAvailableComponentVersion => "NO_AVAILABLE_COMPONENT_VERSION",
    ComponentPackageLoadingError => "COMPONENT_PACKAGE_LOADING_ERROR",
    ComponentCircularDependencyError => "COMPONENT_CIRCULAR_DEPENDENCY_ERROR",
    ComponentVersionRequirementsNotMet => "COMPONENT_VERSION_REQUIREMENTS_NOT_MET",
    NucleusMissingRequiredCapabilities => "NUCLEUS_MISSING_REQUIRED_CAPABILITIES",
    DeploymentDocumentNotValid => "DEPLOYMENT_DOCUMENT_NOT_VALID",
    RunWithConfigNotValid => "RUN_WITH_CONFIG_NOT_VALID",
    IoError => "IO_ERROR",
    IoReadError => "IO_READ_ERROR",
    IoWriteError => "IO_WRITE_ERROR",
    IoUnzipError => "IO_UNZIP_ERROR",
    SetPermissionError => "SET_PERMISSION_ERROR",
    RecipeParseError => "RECIPE_PARSE_ERROR",
    ArtifactUriNotValid => "ARTIFACT_URI_NOT_VALID",
    ArtifactChecksumMismatch => "ARTIFACT_CHECKSUM_MISMATCH",
    ConfigInterpolateError => "CONFIG_INTERPOLATE_ERROR",
    DockerError => "DOCKER_ERROR",
    DockerServiceUnavailable => "DOCKER_SERVICE_UNAVAILABLE",
    DockerPullError => "DOCKER_PULL_ERROR",
    ComponentUpdateError => "COMPONENT_UPDATE_ERROR",
    ComponentBroken => "COMPONENT_BROKEN",
    ComponentBootstrapTimeout => "COMPONENT_BOOTSTRAP_TIMEOUT",
    ComponentBootstrapError => "COMPONENT_BOOTSTRAP_ERROR",
    ComponentConfigurationNotValid => "COMPONENT_CONFIGURATION_NOT_VALID",
}

/// A Greengrass deployment error type: the class of an error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorType {
    RequestError,
    ComponentRecipeError,
    UserComponentError,
    DeviceError,
    DependencyError,
}

impl ErrorCode {
    /// The code's class, as the nucleus gives it; a local deployment's component errors are
    /// the user's components'. `None`: a code that only frames more specific ones.
    pub fn error_type(self) -> Option<ErrorType> {
        use ErrorCode::*;
        match self {
            DeploymentFailure
            | DeploymentInterrupted
            | ArtifactDownloadError
            | NoAvailableComponentVersion
            | ComponentPackageLoadingError
            | IoError => None,
            ComponentCircularDependencyError
            | ComponentVersionRequirementsNotMet
            | NucleusMissingRequiredCapabilities
            | DeploymentDocumentNotValid
            | RunWithConfigNotValid => Some(ErrorType::RequestError),
            IoReadError | IoWriteError | IoUnzipError | SetPermissionError => {
                Some(ErrorType::DeviceError)
            }
            RecipeParseError
            | ArtifactUriNotValid
            | ArtifactChecksumMismatch
            | ConfigInterpolateError => Some(ErrorType::ComponentRecipeError),
            DockerError | DockerServiceUnavailable | DockerPullError => {
                Some(ErrorType::DependencyError)
            }
            ComponentUpdateError
            | ComponentBroken
            | ComponentBootstrapTimeout
            | ComponentBootstrapError
            | ComponentConfigurationNotValid => Some(ErrorType::UserComponentError),
        }
    }
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::RequestError => "REQUEST_ERROR",
            ErrorType::ComponentRecipeError => "COMPONENT_RECIPE_ERROR",
            ErrorType::UserComponentError => "USER_COMPONENT_ERROR",
            ErrorType::DeviceError => "DEVICE_ERROR",
            ErrorType::DependencyError => "DEPENDENCY_ERROR",
        }
    }
}

/// `DetailedDeploymentStatus`, with the nucleus's value the IPC model has no name for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Detailed {
    Successful,
    FailedNoStateChange,
    FailedRollbackNotRequested,
    FailedRollbackComplete,
    /// The rollback failed too: the device runs what the two left.
    FailedUnableToRollback,
}

/// What the device reports of a deployment that ended: kept with it in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub detailed: Detailed,
    /// Most generic first; empty for a deployment that succeeded.
    #[serde(default)]
    pub error_stack: Vec<ErrorCode>,
    #[serde(default)]
    pub error_types: Vec<ErrorType>,
}

impl Report {
    pub fn succeeded() -> Self {
        Report {
            detailed: Detailed::Successful,
            error_stack: Vec::new(),
            error_types: Vec::new(),
        }
    }

    /// A deployment the host stopped before or during: `FailedNoStateChange` if it had not
    /// started, `FailedRollbackComplete` if it had (started again, the host restored the
    /// previous set).
    pub fn interrupted(detailed: Detailed) -> Self {
        Report::failed(
            detailed,
            &[ErrorCode::DeploymentInterrupted],
            [].into_iter(),
        )
    }

    /// A deployment the store could not record the start or end of.
    pub fn unrecorded(detailed: Detailed) -> Self {
        Report::failed(
            detailed,
            &[ErrorCode::IoError, ErrorCode::IoWriteError],
            [].into_iter(),
        )
    }

    /// `stack` under `DEPLOYMENT_FAILURE`; the types of every code, of `stack` and of
    /// `others` (the codes of the failure's other errors), each once, in that order.
    pub fn failed<'a>(
        detailed: Detailed,
        stack: &'a [ErrorCode],
        others: impl Iterator<Item = &'a [ErrorCode]>,
    ) -> Self {
        let mut error_stack = vec![ErrorCode::DeploymentFailure];
        error_stack.extend_from_slice(stack);
        let mut error_types = Vec::new();
        for code in stack.iter().chain(others.flatten()) {
            if let Some(t) = code.error_type() {
                if !error_types.contains(&t) {
                    error_types.push(t);
                }
            }
        }
        Report {
            detailed,
            error_stack,
            error_types,
        }
    }

    /// As `GetLocalDeploymentStatus` and `ListLocalDeployments` answer it, with the failure's
    /// message as its cause. The IPC model has no name for [`Detailed::FailedUnableToRollback`]:
    /// it is left out, as the nucleus's own CLI service leaves out a status it cannot name.
    pub fn status_details(&self, failure_cause: &str) -> DeploymentStatusDetails {
        let detailed = match self.detailed {
            Detailed::Successful => Some(DetailedDeploymentStatus::Successful),
            Detailed::FailedNoStateChange => Some(DetailedDeploymentStatus::FailedNoStateChange),
            Detailed::FailedRollbackNotRequested => {
                Some(DetailedDeploymentStatus::FailedRollbackNotRequested)
            }
            Detailed::FailedRollbackComplete => {
                Some(DetailedDeploymentStatus::FailedRollbackComplete)
            }
            Detailed::FailedUnableToRollback => None,
        };
        let failed = self.detailed != Detailed::Successful;
        DeploymentStatusDetails {
            detailed_deployment_status: detailed,
            deployment_error_stack: failed.then(|| {
                self.error_stack
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect()
            }),
            deployment_error_types: failed.then(|| {
                self.error_types
                    .iter()
                    .map(|t| t.as_str().to_owned())
                    .collect()
            }),
            deployment_failure_cause: (failed && !failure_cause.is_empty())
                .then(|| failure_cause.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_written_as_its_serde_name() {
        for &code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
            if let Some(t) = code.error_type() {
                assert_eq!(
                    serde_json::to_value(t).unwrap(),
                    serde_json::json!(t.as_str())
                );
            }
        }
    }

    #[test]
    fn a_failure_is_written_with_the_model_members() {
        let report = Report::failed(
            Detailed::FailedRollbackComplete,
            &[ErrorCode::ComponentUpdateError, ErrorCode::ComponentBroken],
            [].into_iter(),
        );
        assert_eq!(
            serde_json::to_value(report.status_details("a@1.0.0 failed to start")).unwrap(),
            serde_json::json!({
                "detailedDeploymentStatus": "FAILED_ROLLBACK_COMPLETE",
                "deploymentErrorStack": ["DEPLOYMENT_FAILURE", "COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN"],
                "deploymentErrorTypes": ["USER_COMPONENT_ERROR"],
                "deploymentFailureCause": "a@1.0.0 failed to start"
            })
        );
        assert_eq!(
            serde_json::to_value(Report::succeeded().status_details("")).unwrap(),
            serde_json::json!({"detailedDeploymentStatus": "SUCCESSFUL"})
        );
        let unable = Report {
            detailed: Detailed::FailedUnableToRollback,
            ..report
        };
        assert_eq!(unable.status_details("x").detailed_deployment_status, None);
    }

    #[test]
    fn a_report_is_kept_and_read_back() {
        let report = Report::interrupted(Detailed::FailedRollbackComplete);
        let text = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), report);
        assert_eq!(
            report.error_stack,
            [
                ErrorCode::DeploymentFailure,
                ErrorCode::DeploymentInterrupted
            ]
        );
    }
}
