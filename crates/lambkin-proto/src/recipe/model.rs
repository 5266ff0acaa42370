//! The typed recipe (§2.1–2.4): every field validated, defaults filled in, and for each
//! manifest the lifecycle it runs already chosen, so deployments only read well-formed values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::document::{index, join, join_user, one_of, text, user_map, Doc, Fields, Report};
use super::lifecycle::{
    parse_manifest_lifecycle, select_global_lifecycle, Lifecycle, Selection, ALL_SELECTION,
};
use super::platform::{parse_platform, PlatformRequirement};
use super::variables::check_lifecycle;
use super::version::{parse_component_version, Version, VersionRequirement};

/// The only `RecipeFormatVersion` there is.
pub const RECIPE_FORMAT_VERSION: &str = "2020-01-25";

/// A component's name: 1–128 of `[A-Za-z0-9-_.]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("component name {0:?} must be 1-128 characters of letters, digits, '-', '_' and '.'")]
pub struct InvalidComponentName(pub String);

impl ComponentName {
    pub const MAX_LEN: usize = 128;

    pub fn parse(name: &str) -> Result<Self, InvalidComponentName> {
        let valid_chars = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        // A name becomes a directory (`ROOT/functions/NAME`, `ROOT/work/NAME`): `.` and `..`
        // would name the directory above instead.
        if name.is_empty()
            || name.len() > Self::MAX_LEN
            || !valid_chars
            || name == "."
            || name == ".."
        {
            return Err(InvalidComponentName(name.to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ComponentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for ComponentName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// `ComponentType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ComponentType {
    /// Scripts run by the host.
    #[default]
    Generic,
    /// A Lambda function imported as a component.
    Lambda,
    /// Runs inside the nucleus (Java); a change restarts it.
    Plugin,
    /// The nucleus itself.
    Nucleus,
}

impl ComponentType {
    const NAMES: [(&'static str, Self); 4] = [
        ("aws.greengrass.generic", Self::Generic),
        ("aws.greengrass.lambda", Self::Lambda),
        ("aws.greengrass.plugin", Self::Plugin),
        ("aws.greengrass.nucleus", Self::Nucleus),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "aws.greengrass.generic",
            Self::Lambda => "aws.greengrass.lambda",
            Self::Plugin => "aws.greengrass.plugin",
            Self::Nucleus => "aws.greengrass.nucleus",
        }
    }
}

/// `DependencyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DependencyType {
    /// The component restarts when the dependency changes state.
    #[default]
    Hard,
    Soft,
}

/// One entry of `ComponentDependencies`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub version_requirement: VersionRequirement,
    pub dependency_type: DependencyType,
}

/// `Unarchive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Unarchive {
    #[default]
    None,
    Zip,
}

/// Who may read or execute an artifact on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermissionLevel {
    None,
    Owner,
    All,
}

/// `Permission`: read defaults to `OWNER`, execute to `NONE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArtifactPermission {
    pub read: PermissionLevel,
    pub execute: PermissionLevel,
}

impl Default for ArtifactPermission {
    fn default() -> Self {
        Self {
            read: PermissionLevel::Owner,
            execute: PermissionLevel::None,
        }
    }
}

/// `Algorithm` of an artifact's `Digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DigestAlgorithm {
    #[default]
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgorithm {
    const NAMES: [(&'static str, Self); 3] = [
        ("SHA-256", Self::Sha256),
        ("SHA-384", Self::Sha384),
        ("SHA-512", Self::Sha512),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
        }
    }
}

/// An artifact's `Uri`: `s3://bucket/key`, `greengrass:name.zip`, `docker:image:tag`, … Which
/// schemes can be fetched is the deployment's business (§2.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactUri(String);

impl ArtifactUri {
    pub fn parse(uri: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = uri.split_once(':') else {
            return Err(format!("{uri:?} is not a URI: it has no scheme"));
        };
        let mut chars = scheme.chars();
        let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return Err(format!("{uri:?} is not a URI: {scheme:?} is not a scheme"));
        }
        if rest.is_empty() || uri.chars().any(char::is_whitespace) {
            return Err(format!("{uri:?} is not a URI"));
        }
        if scheme.eq_ignore_ascii_case("docker") {
            check_docker_image(rest).map_err(|problem| {
                format!(
                    "{uri:?} is not a Docker image reference (docker:[REGISTRY/]NAME[:TAG][@sha256:DIGEST]): {problem}"
                )
            })?;
        }
        Ok(Self(uri.to_owned()))
    }

    /// For `docker:` URIs, the image reference to pull: `repo/name:tag`, `name@sha256:…`,
    /// `ACCOUNT.dkr.ecr.REGION.amazonaws.com/repo:tag`, `public.ecr.aws/…`.
    pub fn docker_image(&self) -> Option<&str> {
        let (scheme, rest) = self.0.split_once(':')?;
        scheme.eq_ignore_ascii_case("docker").then_some(rest)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The scheme, lowercased: `s3`, `greengrass`, `docker`, …
    pub fn scheme(&self) -> String {
        self.0
            .split_once(':')
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default()
    }

    /// The file the artifact is stored as: the last path segment. `None` for `docker:` images,
    /// which are no file.
    pub fn file_name(&self) -> Option<&str> {
        let (scheme, rest) = self.0.split_once(':')?;
        if scheme.eq_ignore_ascii_case("docker") {
            return None;
        }
        let name = rest.rsplit('/').next().unwrap_or(rest);
        (!name.is_empty()).then_some(name)
    }
}

/// Checks an image reference as the Docker engine reads it: `[DOMAIN[:PORT]/]PATH[:TAG][@DIGEST]`,
/// PATH components lower-case alphanumerics joined by `.`, `_`, `__` or `-`s, a tag of up to 128
/// word characters, dots and dashes, a digest `ALGORITHM:HEX` (`sha256` with 64 hex digits).
fn check_docker_image(reference: &str) -> Result<(), String> {
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        let (algorithm, hex) = digest
            .split_once(':')
            .ok_or_else(|| format!("digest {digest:?} is not ALGORITHM:HEX"))?;
        let hex_ok = !hex.is_empty()
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        let algorithm_ok = !algorithm.is_empty()
            && algorithm.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'+' | b'.' | b'_' | b'-')
            });
        if !hex_ok || !algorithm_ok || (algorithm == "sha256" && hex.len() != 64) {
            return Err(format!(
                "digest {digest:?} is not sha256: and 64 lower-case hex digits"
            ));
        }
    }
    // A tag follows the last `:` after the last `/` (a `:` before it is a registry's port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let mut bytes = tag.bytes();
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let ok = tag.len() <= 128
            && bytes.next().is_some_and(word)
            && bytes.all(|b| word(b) || b == b'.' || b == b'-');
        if !ok {
            return Err(format!(
                "tag {tag:?} must be 1-128 of [A-Za-z0-9_.-], not starting with . or -"
            ));
        }
    }
    if name.is_empty() {
        return Err("the image name is empty".to_owned());
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 {
        let first = components[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            check_registry(first)?;
            components.remove(0);
        }
    }
    for component in components {
        check_path_component(component)?;
    }
    Ok(())
}

fn check_registry(domain: &str) -> Result<(), String> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err(format!("registry {domain:?} has a bad port"));
        }
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !host.split('.').all(label_ok) {
        return Err(format!("registry {domain:?} is not a host name"));
    }
    Ok(())
}

fn check_path_component(component: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{component:?} is not a repository name: lower-case letters and digits, joined by ., _, __ or -"
        )
    };
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return Err(bad());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(&bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        match &component[start..i] {
            "." | "_" | "__" => {}
            sep if sep.bytes().all(|b| b == b'-') => {}
            _ => return Err(bad()),
        }
    }
    Ok(())
}

impl fmt::Display for ArtifactUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One entry of a manifest's `Artifacts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub uri: ArtifactUri,
    /// Base64 of the digest, set by the service; a mismatch fails the deployment.
    pub digest: Option<String>,
    pub algorithm: DigestAlgorithm,
    pub unarchive: Unarchive,
    pub permission: ArtifactPermission,
}

/// One entry of `Manifests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub name: Option<String>,
    pub platform: PlatformRequirement,
    /// Selection names, highest priority first, for the global `Lifecycle`.
    pub selections: Vec<String>,
    pub artifacts: Vec<Artifact>,
    /// The manifest's own `Lifecycle`, when it has a non-empty one.
    pub lifecycle: Option<Lifecycle>,
    /// What runs when this manifest is chosen: `lifecycle`, or else the recipe's global
    /// `Lifecycle` with this manifest's selections applied.
    pub effective_lifecycle: Lifecycle,
}

/// A Greengrass V2 component recipe, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub name: ComponentName,
    pub version: Version,
    pub description: Option<String>,
    pub publisher: Option<String>,
    pub component_type: ComponentType,
    /// `ComponentSource`: the Lambda function's ARN for imported functions.
    pub source: Option<String>,
    /// `ComponentConfiguration.DefaultConfiguration`, keys verbatim; `{}` when absent.
    pub default_configuration: serde_json::Value,
    pub dependencies: BTreeMap<ComponentName, Dependency>,
    /// In order of preference: the first that matches the device is used.
    pub manifests: Vec<Manifest>,
}

impl Recipe {
    /// Whether `name` is one of the recipe's own dependencies (the only components its
    /// variables may name).
    pub fn is_direct_dependency(&self, name: &str) -> bool {
        self.dependencies.contains_key(name)
    }
}

const TOP_FIELDS: &[&str] = &[
    "RecipeFormatVersion",
    "ComponentName",
    "ComponentVersion",
    "ComponentDescription",
    "ComponentPublisher",
    "ComponentType",
    "ComponentSource",
    "ComponentConfiguration",
    "ComponentDependencies",
    "Manifests",
    "Lifecycle",
];

/// Builds the typed recipe, reporting every problem; `None` when any was found.
pub(crate) fn build(doc: &Doc, report: &mut Report) -> Option<Recipe> {
    let top = Fields::read(doc, "", TOP_FIELDS, report)?;

    match top.get("RecipeFormatVersion") {
        None => report.error("RecipeFormatVersion", "required"),
        Some(v) => {
            if let Some(v) = text(v, "RecipeFormatVersion", report) {
                if v != RECIPE_FORMAT_VERSION {
                    report.error(
                        "RecipeFormatVersion",
                        format!("{v:?} is not supported; the format is {RECIPE_FORMAT_VERSION}"),
                    );
                }
            }
        }
    }
    let name = match top.get("ComponentName") {
        None => {
            report.error("ComponentName", "required");
            None
        }
        Some(v) => text(v, "ComponentName", report).and_then(|n| {
            ComponentName::parse(&n)
                .map_err(|e| report.error("ComponentName", e.to_string()))
                .ok()
        }),
    };
    let version = match top.get("ComponentVersion") {
        None => {
            report.error("ComponentVersion", "required");
            None
        }
        Some(v) => text(v, "ComponentVersion", report).and_then(|v| {
            parse_component_version(&v)
                .map_err(|e| report.error("ComponentVersion", e))
                .ok()
        }),
    };
    let optional_text =
        |field: &str, report: &mut Report| top.get(field).and_then(|v| text(v, field, report));
    let description = optional_text("ComponentDescription", report);
    let publisher = optional_text("ComponentPublisher", report);
    let source = optional_text("ComponentSource", report);
    let component_type = top
        .get("ComponentType")
        .and_then(|v| one_of(v, "ComponentType", &ComponentType::NAMES, report))
        .unwrap_or_default();
    let default_configuration = top
        .get("ComponentConfiguration")
        .map(|v| default_configuration(v, report))
        .unwrap_or_else(empty_object);
    let dependencies = top
        .get("ComponentDependencies")
        .map(|v| dependencies(v, report))
        .unwrap_or_default();

    let global = match top.get("Lifecycle") {
        Some(doc @ Doc::Map(_)) => Some(doc),
        Some(other) => {
            report.error(
                "Lifecycle",
                format!("must be an object, got {}", other.kind()),
            );
            None
        }
        None => None,
    };
    let manifests = match top.get("Manifests") {
        None => {
            report.error(
                "Manifests",
                "required: give at least one manifest (one with no Platform matches every device)",
            );
            Vec::new()
        }
        Some(doc) => manifests(doc, global, report),
    };

    for manifest in &manifests {
        for e in check_lifecycle(&manifest.effective_lifecycle, &|dep| {
            dependencies.contains_key(dep)
        }) {
            let (path, message) = e.split();
            report.error(&path, message);
        }
    }

    if !report.problems.is_empty() {
        return None;
    }
    Some(Recipe {
        name: name?,
        version: version?,
        description,
        publisher,
        component_type,
        source,
        default_configuration,
        dependencies,
        manifests,
    })
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn default_configuration(doc: &Doc, report: &mut Report) -> serde_json::Value {
    const PATH: &str = "ComponentConfiguration";
    let Some(fields) = Fields::read(doc, PATH, &["DefaultConfiguration"], report) else {
        return empty_object();
    };
    let Some(config) = fields.get("DefaultConfiguration") else {
        return empty_object();
    };
    let path = fields.path("DefaultConfiguration");
    if !matches!(config, Doc::Map(_)) {
        report.error(&path, format!("must be an object, got {}", config.kind()));
        return empty_object();
    }
    reject_duplicate_keys(config, &path, report);
    config.to_json()
}

/// A key given twice in free-form configuration would silently lose one value.
fn reject_duplicate_keys(doc: &Doc, path: &str, report: &mut Report) {
    match doc {
        Doc::Map(_) => {
            for (key, value) in user_map(doc, path, report).unwrap_or_default() {
                reject_duplicate_keys(value, &join_user(path, key), report);
            }
        }
        Doc::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                reject_duplicate_keys(item, &index(path, i), report);
            }
        }
        _ => {}
    }
}

fn dependencies(doc: &Doc, report: &mut Report) -> BTreeMap<ComponentName, Dependency> {
    const PATH: &str = "ComponentDependencies";
    let mut out = BTreeMap::new();
    for (name, value) in user_map(doc, PATH, report).unwrap_or_default() {
        let path = join_user(PATH, name);
        let name = ComponentName::parse(name).map_err(|e| report.error(&path, e.to_string()));
        let Some(fields) = Fields::read(
            value,
            &path,
            &["VersionRequirement", "DependencyType"],
            report,
        ) else {
            continue;
        };
        let requirement = match fields.get("VersionRequirement") {
            None => {
                report.error(&fields.path("VersionRequirement"), "required");
                None
            }
            Some(v) => {
                let at = fields.path("VersionRequirement");
                text(v, &at, report).and_then(|r| {
                    VersionRequirement::parse(&r)
                        .map_err(|e| report.error(&at, e.to_string()))
                        .ok()
                })
            }
        };
        let dependency_type = fields
            .get("DependencyType")
            .and_then(|v| {
                one_of(
                    v,
                    &fields.path("DependencyType"),
                    &[
                        ("HARD", DependencyType::Hard),
                        ("SOFT", DependencyType::Soft),
                    ],
                    report,
                )
            })
            .unwrap_or_default();
        if let (Ok(name), Some(version_requirement)) = (name, requirement) {
            out.insert(
                name,
                Dependency {
                    version_requirement,
                    dependency_type,
                },
            );
        }
    }
    out
}

const MANIFEST_FIELDS: &[&str] = &["Name", "Platform", "Lifecycle", "Selections", "Artifacts"];

/// A manifest before the global lifecycle is applied to it.
struct ReadManifest {
    name: Option<String>,
    platform: PlatformRequirement,
    selections: Vec<String>,
    artifacts: Vec<Artifact>,
    lifecycle: Option<Lifecycle>,
}

fn manifests(doc: &Doc, global: Option<&Doc>, report: &mut Report) -> Vec<Manifest> {
    const PATH: &str = "Manifests";
    let Doc::Seq(items) = doc else {
        report.error(PATH, format!("must be a list, got {}", doc.kind()));
        return Vec::new();
    };
    if items.is_empty() {
        report.error(
            PATH,
            "is empty: give at least one manifest (one with no Platform matches every device)",
        );
    }
    let read: Vec<(usize, ReadManifest)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| manifest(item, &index(PATH, i), report).map(|m| (i, m)))
        .collect();

    // Every selection name of the recipe marks a selection map in the global lifecycle.
    let keywords: BTreeSet<String> = read
        .iter()
        .flat_map(|(_, m)| m.selections.iter().cloned())
        .chain([ALL_SELECTION.to_owned()])
        .collect();
    let global_is_empty = !matches!(global, Some(Doc::Map(entries)) if !entries.is_empty());
    read.into_iter()
        .map(|(i, m)| {
            let effective = match (&m.lifecycle, global) {
                (Some(own), _) => own.clone(),
                (None, None) => Lifecycle {
                    source: "Lifecycle".to_owned(),
                    ..Lifecycle::default()
                },
                (None, Some(global)) => {
                    let selection = Selection {
                        keywords: &keywords,
                        selectors: &m.selections,
                    };
                    let lifecycle = select_global_lifecycle(global, &selection, report);
                    if lifecycle.is_empty() && !global_is_empty {
                        report.warn(
                            &index(PATH, i),
                            "the global Lifecycle has no step for this manifest's selections",
                        );
                    }
                    lifecycle
                }
            };
            Manifest {
                name: m.name,
                platform: m.platform,
                selections: m.selections,
                artifacts: m.artifacts,
                lifecycle: m.lifecycle,
                effective_lifecycle: effective,
            }
        })
        .collect()
}

fn manifest(doc: &Doc, path: &str, report: &mut Report) -> Option<ReadManifest> {
    let fields = Fields::read(doc, path, MANIFEST_FIELDS, report)?;
    let name = fields
        .get("Name")
        .and_then(|v| text(v, &fields.path("Name"), report));
    let platform = fields
        .get("Platform")
        .map(|v| parse_platform(v, &fields.path("Platform"), report))
        .unwrap_or_default();
    let selections = fields
        .get("Selections")
        .map(|v| selections(v, &fields.path("Selections"), report))
        .unwrap_or_default();
    let artifacts = fields
        .get("Artifacts")
        .map(|v| artifacts(v, &fields.path("Artifacts"), report))
        .unwrap_or_default();
    // An empty Lifecycle counts as none: the global one applies (`RecipeLoader`).
    let lifecycle = match fields.get("Lifecycle") {
        Some(Doc::Map(entries)) if entries.is_empty() => None,
        Some(doc) => Some(parse_manifest_lifecycle(
            doc,
            &fields.path("Lifecycle"),
            report,
        )),
        None => None,
    };
    Some(ReadManifest {
        name,
        platform,
        selections,
        artifacts,
        lifecycle,
    })
}

/// `Selections`: a list of names, or one name.
fn selections(doc: &Doc, path: &str, report: &mut Report) -> Vec<String> {
    match doc {
        Doc::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| text(item, &index(path, i), report))
            .collect(),
        other => text(other, path, report).into_iter().collect(),
    }
}

const ARTIFACT_FIELDS: &[&str] = &["Uri", "Digest", "Algorithm", "Unarchive", "Permission"];

fn artifacts(doc: &Doc, path: &str, report: &mut Report) -> Vec<Artifact> {
    let Doc::Seq(items) = doc else {
        report.error(path, format!("must be a list, got {}", doc.kind()));
        return Vec::new();
    };
    let mut out: Vec<Artifact> = Vec::new();
    let mut files: BTreeMap<String, usize> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let at = index(path, i);
        let Some(artifact) = artifact(item, &at, report) else {
            continue;
        };
        if let Some(file) = artifact.uri.file_name() {
            if let Some(first) = files.insert(file.to_owned(), i) {
                report.error(
                    &join(&at, "Uri"),
                    format!(
                        "file name {file:?} is also that of {}; file names must be unique in a manifest",
                        index(path, first)
                    ),
                );
            }
        }
        out.push(artifact);
    }
    out
}

fn artifact(doc: &Doc, path: &str, report: &mut Report) -> Option<Artifact> {
    let fields = Fields::read(doc, path, ARTIFACT_FIELDS, report)?;
    let uri = match fields.get("Uri") {
        None => {
            report.error(&fields.path("Uri"), "required");
            None
        }
        Some(v) => {
            let at = fields.path("Uri");
            text(v, &at, report).and_then(|u| {
                ArtifactUri::parse(&u)
                    .map_err(|e| report.error(&at, e))
                    .ok()
            })
        }
    };
    let digest = fields
        .get("Digest")
        .and_then(|v| text(v, &fields.path("Digest"), report));
    let algorithm = fields
        .get("Algorithm")
        .and_then(|v| {
            one_of(
                v,
                &fields.path("Algorithm"),
                &DigestAlgorithm::NAMES,
                report,
            )
        })
        .unwrap_or_default();
    let unarchive = fields
        .get("Unarchive")
        .and_then(|v| {
            one_of(
                v,
                &fields.path("Unarchive"),
                &[("NONE", Unarchive::None), ("ZIP", Unarchive::Zip)],
                report,
            )
        })
        .unwrap_or_default();
    let permission = fields
        .get("Permission")
        .map(|v| permission(v, &fields.path("Permission"), report))
        .unwrap_or_default();
    Some(Artifact {
        uri: uri?,
        digest,
        algorithm,
        unarchive,
        permission,
    })
}

fn permission(doc: &Doc, path: &str, report: &mut Report) -> ArtifactPermission {
    const LEVELS: [(&str, PermissionLevel); 3] = [
        ("NONE", PermissionLevel::None),
        ("OWNER", PermissionLevel::Owner),
        ("ALL", PermissionLevel::All),
    ];
    let mut permission = ArtifactPermission::default();
    let Some(fields) = Fields::read(doc, path, &["Read", "Execute"], report) else {
        return permission;
    };
    if let Some(v) = fields.get("Read") {
        if let Some(level) = one_of(v, &fields.path("Read"), &LEVELS, report) {
            permission.read = level;
        }
    }
    if let Some(v) = fields.get("Execute") {
        if let Some(level) = one_of(v, &fields.path("Execute"), &LEVELS, report) {
            permission.execute = level;
        }
    }
    permission
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_names_follow_the_schema() {
        assert!(ComponentName::parse("aws.greengrass.LambdaLauncher").is_ok());
        assert!(ComponentName::parse("my-component_1").is_ok());
        assert!(ComponentName::parse("").is_err());
        assert!(ComponentName::parse("a/b").is_err());
        assert!(ComponentName::parse("a b").is_err());
        assert!(ComponentName::parse(&"x".repeat(128)).is_ok());
        assert!(ComponentName::parse(&"x".repeat(129)).is_err());
        for path_like in [".", "..", "../x", "a\0b", "/"] {
            assert!(ComponentName::parse(path_like).is_err(), "{path_like:?}");
        }
        assert!(ComponentName::parse("...").is_ok());
    }

    #[test]
    fn artifact_uris() {
        let u = ArtifactUri::parse("s3://bucket/path/app.zip").unwrap();
        assert_eq!(u.scheme(), "s3");
        assert_eq!(u.file_name(), Some("app.zip"));
        let u = ArtifactUri::parse("greengrass:lambda-artifact.zip").unwrap();
        assert_eq!(u.file_name(), Some("lambda-artifact.zip"));
        let u = ArtifactUri::parse("docker:public.ecr.aws/a/b:latest").unwrap();
        assert_eq!(u.scheme(), "docker");
        assert_eq!(u.file_name(), None);
        assert!(ArtifactUri::parse("no-scheme").is_err());
        assert!(ArtifactUri::parse("s3://has space").is_err());
        assert_eq!(u.docker_image(), Some("public.ecr.aws/a/b:latest"));
        assert_eq!(ArtifactUri::parse("s3://b/k").unwrap().docker_image(), None);
    }

    #[test]
    fn docker_uris_are_image_references() {
        for good in [
            "docker:redis",
            "docker:redis:7.2-alpine",
            "docker:library/hello-world:latest",
            "docker:123456789012.dkr.ecr.us-west-2.amazonaws.com/team/model:v1.0",
            "docker:public.ecr.aws/amazonlinux/amazonlinux:2023",
            "docker:localhost:5000/my_app__x:1",
            "docker:my-registry.local:5000/a/b",
            "docker:alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "docker:alpine:3@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            let uri = ArtifactUri::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(uri.docker_image(), good.strip_prefix("docker:"));
        }
        for (bad, says) in [
            ("docker:Redis", "repository name"),
            ("docker:redis:", "tag"),
            ("docker:redis:-x", "tag"),
            ("docker:a//b", "repository name"),
            ("docker:a/b-", "repository name"),
            ("docker:alpine@sha256:abc", "digest"),
            ("docker:alpine@latest", "digest"),
            ("docker:my_registry.io:99999/a", "port"),
            ("docker:-bad.io/a", "host name"),
        ] {
            let err = ArtifactUri::parse(bad).unwrap_err();
            assert!(
                err.contains("Docker image reference") && err.contains(says),
                "{bad}: {err}"
            );
        }
        assert!(ArtifactUri::parse("1s3://x").is_err());
    }
}
