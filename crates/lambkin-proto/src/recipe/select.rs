//! Choosing a recipe's manifest for a device (§2.1): the first whose `Platform` matches.

use super::lifecycle::Lifecycle;
use super::model::{Artifact, Manifest, Recipe};
use super::platform::PlatformInfo;

/// The manifest chosen for a device, with what it runs.
#[derive(Debug, Clone, Copy)]
pub struct SelectedManifest<'r> {
    /// Its position in `Manifests`.
    pub index: usize,
    pub manifest: &'r Manifest,
    /// The manifest's own lifecycle, or the global one filtered by its selections.
    pub lifecycle: &'r Lifecycle,
    pub artifacts: &'r [Artifact],
}

/// No manifest of the recipe matches the device: the deployment fails (§2.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no manifest of {component} matches this device ({platform}); the manifests ask for: {wanted}"
)]
pub struct NoMatchingManifest {
    pub component: String,
    pub platform: String,
    pub wanted: String,
}

/// The first manifest whose `Platform` matches the device.
pub fn select_manifest<'r>(
    recipe: &'r Recipe,
    platform: &PlatformInfo,
) -> Result<SelectedManifest<'r>, NoMatchingManifest> {
    recipe
        .manifests
        .iter()
        .enumerate()
        .find(|(_, m)| m.platform.matches(platform))
        .map(|(index, manifest)| SelectedManifest {
            index,
            manifest,
            lifecycle: &manifest.effective_lifecycle,
            artifacts: &manifest.artifacts,
        })
        .ok_or_else(|| NoMatchingManifest {
            component: recipe.name.to_string(),
            platform: platform.to_string(),
            wanted: recipe
                .manifests
                .iter()
                .enumerate()
                .map(|(i, m)| format!("[{i}] {}", m.platform))
                .collect::<Vec<_>>()
                .join("; "),
        })
}
