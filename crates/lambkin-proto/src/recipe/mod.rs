//! Greengrass V2 component recipes (`greengrass-reference.md` §2): JSON or YAML text in, a
//! validated [`Recipe`] out, with every problem named by its key path at once.
//!
//! Keys of the recipe schema match in any case, as the Java nucleus's mapper accepts them
//! (`ComponentName`, `componentname`, `COMPONENTNAME`); keys the user chooses stay as written:
//! `DefaultConfiguration`, `Setenv` names, `ComponentDependencies` names, `Platform` attribute
//! names, selection names. Keys the schema does not know are ignored, as the nucleus ignores
//! them, and reported as warnings by [`Recipe::parse_with_warnings`].
//!
//! - [`model`]: the typed recipe, its names, dependencies, manifests and artifacts.
//! - [`lambda`]: a Lambda component's configuration as the function it defines (settings,
//!   container, environment, layers), every bad value named by its key.
//! - [`lifecycle`]: steps, their defaults, and `Selections` applied to the global lifecycle.
//! - [`platform`]: choosing the manifest for a device.
//! - [`variables`]: `{artifacts:path}` and friends, checked at parse and interpolated at deploy.
//! - [`version`]: component versions and npm-style `VersionRequirement` ranges.

mod document;
pub mod lambda;
pub mod lifecycle;
pub mod model;
pub mod platform;
pub mod select;
mod shell;
pub mod variables;
pub mod version;

use std::fmt;
use std::path::Path;

pub use document::Problem;
pub use lifecycle::{Lifecycle, SkipCheck, SkipIf, Step, StepKind};
pub use model::{
    Artifact, ArtifactPermission, ArtifactUri, ComponentName, ComponentType, Dependency,
    DependencyType, DigestAlgorithm, InvalidComponentName, Manifest, PermissionLevel, Recipe,
    Unarchive, RECIPE_FORMAT_VERSION,
};
pub use platform::{PlatformInfo, PlatformPattern, PlatformRequirement, PlatformTemplate};
pub use select::{select_manifest, NoMatchingManifest, SelectedManifest};
pub use variables::{privileged_configuration_reads, ComponentVariables, VariableError, Variables};
pub use version::{parse_component_version, Version, VersionRequirement, VersionRequirementError};

use document::{Doc, Report};

/// How a recipe is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipeFormat {
    Json,
    Yaml,
}

impl RecipeFormat {
    /// By extension: `.json`, `.yaml`, `.yml` (any case).
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Self::Json),
            "yaml" | "yml" => Some(Self::Yaml),
            _ => None,
        }
    }

    /// By content: JSON when the first character is `{`, else YAML.
    pub fn detect(text: &str) -> Self {
        let start = text.trim_start_matches('\u{feff}').trim_start();
        if start.starts_with('{') {
            Self::Json
        } else {
            Self::Yaml
        }
    }

    /// By extension when it tells, else by content.
    pub fn for_file(path: &Path, text: &str) -> Self {
        Self::from_path(path).unwrap_or_else(|| Self::detect(text))
    }
}

impl fmt::Display for RecipeFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Json => "JSON",
            Self::Yaml => "YAML",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipeError {
    #[error("recipe is not valid {format}: {message}")]
    Syntax {
        format: RecipeFormat,
        message: String,
    },
    #[error("recipe is invalid: {}", join_problems(.problems))]
    Invalid { problems: Vec<Problem> },
}

fn join_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Recipe {
    /// Parses and validates a recipe.
    pub fn parse(text: &str, format: RecipeFormat) -> Result<Self, RecipeError> {
        Self::parse_with_warnings(text, format).map(|(recipe, _)| recipe)
    }

    /// Parses a recipe, telling its format by content.
    pub fn parse_detected(text: &str) -> Result<Self, RecipeError> {
        Self::parse(text, RecipeFormat::detect(text))
    }

    /// As [`parse`](Self::parse), also returning what was accepted but ignored (unknown keys,
    /// platform keys in another case than the device's, unselected lifecycle branches), for a
    /// deployment to log.
    pub fn parse_with_warnings(
        text: &str,
        format: RecipeFormat,
    ) -> Result<(Self, Vec<Problem>), RecipeError> {
        let doc = match format {
            RecipeFormat::Json => Doc::parse_json(text),
            RecipeFormat::Yaml => Doc::parse_yaml(text),
        }
        .map_err(|message| RecipeError::Syntax { format, message })?;
        let mut report = Report::default();
        match model::build(&doc, &mut report) {
            Some(recipe) if report.problems.is_empty() => Ok((recipe, report.warnings)),
            _ => Err(RecipeError::Invalid {
                problems: report.problems,
            }),
        }
    }

    /// The first manifest that matches the device; see [`select_manifest`].
    pub fn select_manifest(
        &self,
        platform: &PlatformInfo,
    ) -> Result<SelectedManifest<'_>, NoMatchingManifest> {
        select_manifest(self, platform)
    }
}
