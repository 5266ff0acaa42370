//! Why a deployment failed, typed from where it fails to where it is reported.
//!
//! Planning collects [`Problem`]s (a [`Cause`] and the sentence naming it), the engine adds
//! [`ComponentError`]s, and [`DeployError`] carries either to [`DeployError::report`], the one
//! place a failure becomes what the device reports: the message (the errors' sentences, as the
//! CLI prints them) and Greengrass's detailed status, error stack and error types (nucleus
//! 2.8's `DeploymentErrorCode`s, most generic first), which `GetLocalDeploymentStatus` and
//! `ListLocalDeployments` answer and the store keeps with the deployment.

use std::path::PathBuf;
use std::time::Duration;

use lambkin_proto::deployment::{Detailed, ErrorCode, Report};

/// What kind of reason a planning [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The recipe directory cannot be read.
    RecipesUnreadable,
    /// A recipe file does not parse, or is too large to.
    RecipeInvalid,
    /// The request itself: a version that does not parse, a name it may not use, a component
    /// it names that the deployment does not have, a configuration pointer.
    Request,
    /// A `runWith` (user, limits) that cannot be.
    RunWith,
    /// No recipe of a version the deployment needs, or none for this platform.
    NoVersion,
    /// Components that depend on each other in a circle.
    Cycle,
    /// A recipe variable that cannot be filled in.
    Interpolation,
    /// An artifact URI that names no file.
    ArtifactUri,
    /// An artifact file that is not where the deployment said.
    ArtifactMissing,
    /// An artifact whose digest is not the recipe's.
    ArtifactDigest,
    /// An artifact that cannot be written, or a version's artifacts set aside.
    ArtifactWrite,
    /// An archive artifact that cannot be unpacked.
    ArtifactUnpack,
    /// A `docker:` artifact with no engine to pull it.
    DockerUnavailable,
    /// A `docker:` artifact the engine could not pull.
    DockerPull,
}

impl Cause {
    /// The error stack under `DEPLOYMENT_FAILURE`.
    fn codes(self) -> &'static [ErrorCode] {
        use ErrorCode::*;
        match self {
            Cause::RecipesUnreadable => &[IoError, IoReadError],
            Cause::RecipeInvalid => &[ComponentPackageLoadingError, RecipeParseError],
            Cause::Request => &[DeploymentDocumentNotValid],
            Cause::RunWith => &[RunWithConfigNotValid],
            Cause::NoVersion => &[
                NoAvailableComponentVersion,
                ComponentVersionRequirementsNotMet,
            ],
            Cause::Cycle => &[ComponentCircularDependencyError],
            Cause::Interpolation => &[ConfigInterpolateError],
            Cause::ArtifactUri => &[ArtifactUriNotValid],
            Cause::ArtifactMissing => &[ArtifactDownloadError, IoError, IoReadError],
            Cause::ArtifactDigest => &[ArtifactDownloadError, ArtifactChecksumMismatch],
            Cause::ArtifactWrite => &[ArtifactDownloadError, IoError, IoWriteError],
            Cause::ArtifactUnpack => &[ArtifactDownloadError, IoError, IoUnzipError],
            Cause::DockerUnavailable => {
                &[ArtifactDownloadError, DockerError, DockerServiceUnavailable]
            }
            Cause::DockerPull => &[ArtifactDownloadError, DockerError, DockerPullError],
        }
    }
}

/// One reason a deployment cannot be planned or staged: its kind and the sentence naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub cause: Cause,
    pub text: String,
}

impl Problem {
    pub fn new(cause: Cause, text: impl Into<String>) -> Self {
        Problem {
            cause,
            text: text.into(),
        }
    }
}

/// Every reason a deployment cannot be planned or staged; nothing on the device changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join(.problems.iter().map(|p| p.text.as_str())))]
pub struct PlanError {
    /// Never empty.
    pub problems: Vec<Problem>,
}

impl PlanError {
    pub fn one(cause: Cause, text: impl Into<String>) -> Self {
        PlanError {
            problems: vec![Problem::new(cause, text)],
        }
    }

    /// `Err` with `problems` unless there are none.
    pub fn check(problems: Vec<Problem>) -> Result<(), PlanError> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PlanError { problems })
        }
    }
}

fn join<'a>(texts: impl Iterator<Item = &'a str>) -> String {
    texts.collect::<Vec<_>>().join("; ")
}

/// How a component's `Bootstrap` step failed.
#[derive(Debug)]
pub enum BootstrapFailure {
    NotStarted(std::io::Error),
    TimedOut(Duration),
    /// It exited 101: it asks for a device reboot.
    Reboot,
    Exited(std::process::ExitStatus),
    /// It succeeded, but that cannot be recorded (it would run again).
    Record(std::io::Error),
}

/// Why one component of a deployment could not be made to run.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("{at}: {error}")]
    RunAs {
        at: String,
        error: crate::users::UserError,
    },
    #[error("{at}: cannot prepare {}: {error}", .dir.display())]
    Prepare {
        at: String,
        dir: PathBuf,
        error: std::io::Error,
    },
    #[error("{at}: cannot give {} to {user}: {error}", .dir.display())]
    GiveArtifacts {
        at: String,
        dir: PathBuf,
        user: String,
        error: std::io::Error,
    },
    #[error("{at}: {error}")]
    Reachable { at: String, error: std::io::Error },
    #[error("cannot open the log of {name}: {error}")]
    OpenLog { name: String, error: std::io::Error },
    #[error("{name}: cannot hand out its Lambda API key: {error}")]
    ApiKey {
        name: String,
        error: crate::keys::KeyError,
    },
    #[error("{at}: systemResourceLimits need cgroups: {error}")]
    NoCgroups {
        at: String,
        error: &'static crate::cgroup::CgroupError,
    },
    #[error("{at}: cannot apply systemResourceLimits: {error}")]
    Limits {
        at: String,
        error: crate::cgroup::CgroupError,
    },
    /// The recipe's Lambda settings do not make a function.
    #[error("{at}: {error}")]
    LambdaSettings {
        at: String,
        error: lambkin_proto::recipe::lambda::LambdaComponentError,
    },
    /// The function's isolation needs what this device lacks.
    #[error("{at}: {error}")]
    Isolation { at: String, error: String },
    #[error("{at}: {error}")]
    Layers {
        at: String,
        error: crate::lambda::layers::LayersError,
    },
    #[error("{at}: {error}")]
    Define {
        at: String,
        error: Box<crate::lambda::registry::ManageError>,
    },
    #[error("{at}: {}", bootstrap_text(.failure))]
    Bootstrap {
        at: String,
        failure: BootstrapFailure,
    },
    /// It reported ERRORED or BROKEN while coming up.
    #[error("{at} failed to start: {detail}")]
    Broke { at: String, detail: String },
    #[error("{name} did not reach RUNNING within {} s", .limit.as_secs())]
    NotUp { name: String, limit: Duration },
}

fn bootstrap_text(failure: &BootstrapFailure) -> String {
    match failure {
        BootstrapFailure::NotStarted(e) => format!("Bootstrap could not start: {e}"),
        BootstrapFailure::TimedOut(limit) => {
            format!("Bootstrap timed out after {} s", limit.as_secs())
        }
        BootstrapFailure::Reboot => {
            "Bootstrap asked for a device reboot (exit 101), which Lambkin does not do".to_owned()
        }
        BootstrapFailure::Exited(status) => format!("Bootstrap failed: {status}"),
        BootstrapFailure::Record(e) => format!("cannot record its Bootstrap: {e}"),
    }
}

impl ComponentError {
    /// The error stack under `DEPLOYMENT_FAILURE`.
    fn codes(&self) -> &'static [ErrorCode] {
        use ErrorCode::*;
        match self {
            ComponentError::RunAs { .. } => &[ComponentUpdateError, RunWithConfigNotValid],
            ComponentError::Prepare { .. }
            | ComponentError::OpenLog { .. }
            | ComponentError::ApiKey { .. } => &[ComponentUpdateError, IoError, IoWriteError],
            ComponentError::GiveArtifacts { .. } | ComponentError::Reachable { .. } => {
                &[ComponentUpdateError, IoError, SetPermissionError]
            }
            ComponentError::NoCgroups { .. } | ComponentError::Isolation { .. } => {
                &[ComponentUpdateError, NucleusMissingRequiredCapabilities]
            }
            ComponentError::Limits { .. } => &[ComponentUpdateError, IoError, IoWriteError],
            ComponentError::LambdaSettings { .. } | ComponentError::Layers { .. } => {
                &[ComponentUpdateError, ComponentConfigurationNotValid]
            }
            ComponentError::Define { .. } => &[ComponentUpdateError],
            ComponentError::Bootstrap {
                failure: BootstrapFailure::TimedOut(_),
                ..
            } => &[ComponentUpdateError, ComponentBootstrapTimeout],
            ComponentError::Bootstrap {
                failure: BootstrapFailure::Record(_),
                ..
            } => &[ComponentUpdateError, IoError, IoWriteError],
            ComponentError::Bootstrap { .. } => &[ComponentUpdateError, ComponentBootstrapError],
            ComponentError::Broke { .. } => &[ComponentUpdateError, ComponentBroken],
            ComponentError::NotUp { .. } => &[ComponentUpdateError],
        }
    }
}

/// Why a deployment failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Refused before anything on the device changed.
    #[error(transparent)]
    Refused(#[from] PlanError),
    /// Components that could not be made to run, in the order they failed (never empty).
    #[error("{}", join_display(.0))]
    Components(Vec<ComponentError>),
    /// The host could not carry the deployment out: `what` failed with `error`.
    #[error("{what} failed: {error}")]
    Host { what: &'static str, error: String },
}

fn join_display(errors: &[ComponentError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<ComponentError> for DeployError {
    fn from(e: ComponentError) -> Self {
        DeployError::Components(vec![e])
    }
}

/// What was done about a failure: the device's components as the failure left them, or put
/// back (and whether that worked).
#[derive(Debug)]
pub enum Aftermath {
    /// `DO_NOTHING`: left as the deployment left them.
    Left,
    /// Rolled back to the previous components.
    Restored,
    /// The rollback failed too.
    RestoreFailed(DeployError),
}

impl DeployError {
    /// The one mapping of a failed deployment to what the device reports: the message the
    /// CLI prints and the IPC's failure cause, and the report with Greengrass's codes. The
    /// stack is the first error's; the types are every error's.
    pub fn report(&self, aftermath: &Aftermath) -> (String, Report) {
        let message = match aftermath {
            Aftermath::Left => {
                format!("{self}; components left as the deployment left them (DO_NOTHING)")
            }
            Aftermath::Restored => {
                format!("{self}; the previous components and configuration were restored")
            }
            Aftermath::RestoreFailed(e) => {
                format!("{self}; restoring the previous components also failed: {e}")
            }
        };
        let detailed = match (self, aftermath) {
            (DeployError::Refused(_), _) => Detailed::FailedNoStateChange,
            (_, Aftermath::Left) => Detailed::FailedRollbackNotRequested,
            (_, Aftermath::Restored) => Detailed::FailedRollbackComplete,
            (_, Aftermath::RestoreFailed(_)) => Detailed::FailedUnableToRollback,
        };
        let stacks: Vec<&'static [ErrorCode]> = match self {
            DeployError::Refused(e) => e.problems.iter().map(|p| p.cause.codes()).collect(),
            DeployError::Components(errors) => errors.iter().map(ComponentError::codes).collect(),
            DeployError::Host { .. } => Vec::new(),
        };
        let first = stacks.first().copied().unwrap_or_default();
        let report = Report::failed(detailed, first, stacks.iter().skip(1).copied());
        (message, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambkin_proto::deployment::ErrorType;

    fn bootstrap(failure: BootstrapFailure) -> DeployError {
        ComponentError::Bootstrap {
            at: "com.example.B@1.0.0".into(),
            failure,
        }
        .into()
    }

    #[test]
    fn a_refused_deployment_changed_nothing_whatever_its_policy() {
        let refused = DeployError::from(PlanError::one(
            Cause::NoVersion,
            "no recipe for com.example.A@2.0.0: put it in the recipe directory",
        ));
        for aftermath in [Aftermath::Left, Aftermath::Restored] {
            let (_, report) = refused.report(&aftermath);
            assert_eq!(report.detailed, Detailed::FailedNoStateChange);
            assert_eq!(
                report.error_stack,
                [
                    ErrorCode::DeploymentFailure,
                    ErrorCode::NoAvailableComponentVersion,
                    ErrorCode::ComponentVersionRequirementsNotMet
                ]
            );
            assert_eq!(report.error_types, [ErrorType::RequestError]);
        }
    }

    #[test]
    fn what_was_done_after_a_component_failed_is_the_detailed_status() {
        let failed = || -> DeployError {
            ComponentError::Broke {
                at: "com.example.A@1.0.0".into(),
                detail: "exit status 3".into(),
            }
            .into()
        };
        let cases = [
            (Aftermath::Left, Detailed::FailedRollbackNotRequested),
            (Aftermath::Restored, Detailed::FailedRollbackComplete),
            (
                Aftermath::RestoreFailed(failed()),
                Detailed::FailedUnableToRollback,
            ),
        ];
        for (aftermath, detailed) in cases {
            let (_, report) = failed().report(&aftermath);
            assert_eq!(report.detailed, detailed);
            assert_eq!(
                report.error_stack,
                [
                    ErrorCode::DeploymentFailure,
                    ErrorCode::ComponentUpdateError,
                    ErrorCode::ComponentBroken
                ]
            );
            assert_eq!(report.error_types, [ErrorType::UserComponentError]);
        }
    }

    #[test]
    fn messages_are_the_errors_sentences_and_what_was_done() {
        let (message, _) = bootstrap(BootstrapFailure::Reboot).report(&Aftermath::Restored);
        assert_eq!(
            message,
            "com.example.B@1.0.0: Bootstrap asked for a device reboot (exit 101), which Lambkin \
             does not do; the previous components and configuration were restored"
        );
        let two = DeployError::Components(vec![
            ComponentError::NotUp {
                name: "com.example.A".into(),
                limit: Duration::from_secs(7),
            },
            ComponentError::Broke {
                at: "com.example.C@2.0.0".into(),
                detail: "it reported ERRORED".into(),
            },
        ]);
        let (message, report) = two.report(&Aftermath::Left);
        assert_eq!(
            message,
            "com.example.A did not reach RUNNING within 7 s; com.example.C@2.0.0 failed to \
             start: it reported ERRORED; components left as the deployment left them (DO_NOTHING)"
        );
        // The first error's stack.
        assert_eq!(
            report.error_stack,
            [
                ErrorCode::DeploymentFailure,
                ErrorCode::ComponentUpdateError
            ]
        );
        let planned = DeployError::from(PlanError {
            problems: vec![
                Problem::new(Cause::ArtifactDigest, "a: digest"),
                Problem::new(Cause::DockerPull, "b: pull"),
            ],
        });
        assert_eq!(planned.to_string(), "a: digest; b: pull");
    }

    #[test]
    fn the_types_are_every_errors_each_once() {
        let planned = DeployError::from(PlanError {
            problems: vec![
                Problem::new(Cause::ArtifactDigest, "a"),
                Problem::new(Cause::DockerPull, "b"),
                Problem::new(Cause::ArtifactUri, "c"),
            ],
        });
        let (_, report) = planned.report(&Aftermath::Restored);
        assert_eq!(
            report.error_stack,
            [
                ErrorCode::DeploymentFailure,
                ErrorCode::ArtifactDownloadError,
                ErrorCode::ArtifactChecksumMismatch
            ]
        );
        assert_eq!(
            report.error_types,
            [ErrorType::ComponentRecipeError, ErrorType::DependencyError]
        );
    }

    #[test]
    fn a_bootstrap_timeout_is_told_from_a_bootstrap_failure() {
        let (_, timed_out) = bootstrap(BootstrapFailure::TimedOut(Duration::from_secs(3)))
            .report(&Aftermath::Restored);
        assert_eq!(
            timed_out.error_stack.last(),
            Some(&ErrorCode::ComponentBootstrapTimeout)
        );
        let (_, failed) = bootstrap(BootstrapFailure::Reboot).report(&Aftermath::Restored);
        assert_eq!(
            failed.error_stack.last(),
            Some(&ErrorCode::ComponentBootstrapError)
        );
    }

    #[test]
    fn a_host_failure_has_only_the_generic_code() {
        let e = DeployError::Host {
            what: "staging the artifacts",
            error: "task panicked".into(),
        };
        let (message, report) = e.report(&Aftermath::Restored);
        assert!(message.starts_with("staging the artifacts failed: task panicked; "));
        assert_eq!(report.error_stack, [ErrorCode::DeploymentFailure]);
        assert!(report.error_types.is_empty());
    }
}
