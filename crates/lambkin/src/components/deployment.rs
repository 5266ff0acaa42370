//! Planning a deployment: from the device's current components and a request (merge, remove,
//! configuration updates) to the complete set of components to run, with dependencies resolved,
//! versions chosen, configuration merged and lifecycles interpolated. Everything here either
//! succeeds for every component or names every reason it cannot; nothing runs yet.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lambkin_proto::recipe::version::Version;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384, Sha512};

use lambkin_proto::recipe::lifecycle::Lifecycle;
use lambkin_proto::recipe::model::{
    ComponentType, DependencyType, DigestAlgorithm, Recipe, Unarchive,
};
use lambkin_proto::recipe::platform::PlatformInfo;
use lambkin_proto::recipe::variables::{ComponentVariables, Variables};
use lambkin_proto::recipe::RecipeFormat;

use super::builtin;
use crate::layout::Layout;

/// A local deployment, as `lambkin deploy` (and `CreateLocalDeployment`) asks for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentRequest {
    pub recipe_dir: Option<PathBuf>,
    pub artifact_dir: Option<PathBuf>,
    /// Components to add or update: name → version.
    #[serde(default)]
    pub merge: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
    /// Per component: `{"MERGE": {...}, "RESET": ["/pointer"]}`, RESET applied first.
    #[serde(default)]
    pub update_config: BTreeMap<String, ConfigUpdate>,
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Per component: the user it runs as (`posixUser`) and its `systemResourceLimits`, kept
    /// for later deployments until one gives it another (`--run-with`, `componentToRunWithInfo`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub run_with: BTreeMap<String, RunWith>,
    /// Whether the components subscribed to updates are told first, and may defer it (a
    /// cloud deployment's `componentUpdatePolicy`; local deployments skip it unless asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_update_policy: Option<ComponentUpdatePolicy>,
}

/// A deployment's `componentUpdatePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentUpdatePolicy {
    pub action: UpdateAction,
    /// How long each component's answer is waited for (the nucleus's default: 60 s).
    #[serde(default = "ComponentUpdatePolicy::default_timeout")]
    pub timeout_in_seconds: u64,
}

impl ComponentUpdatePolicy {
    fn default_timeout() -> u64 {
        60
    }

    /// The wait for each answer, when the components are to be told.
    pub fn notify(&self) -> Option<std::time::Duration> {
        (self.action == UpdateAction::NotifyComponents)
            .then(|| std::time::Duration::from_secs(self.timeout_in_seconds))
    }
}

/// `componentUpdatePolicy.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UpdateAction {
    NotifyComponents,
    SkipNotifyComponents,
}

/// A component's `runWith`.
pub type RunWith = lambkin_proto::ipc::shapes::deployments::RunWithInfo;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigUpdate {
    #[serde(rename = "MERGE", default)]
    pub merge: Option<serde_json::Value>,
    #[serde(rename = "RESET", default)]
    pub reset: Vec<String>,
}

/// What happens when a component of the deployment fails to install or start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailurePolicy {
    /// The device returns to its previous components and configuration.
    #[default]
    Rollback,
    /// The components stay as the deployment left them.
    DoNothing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Built into Lambkin (the nucleus, the Lambda launcher and runtimes, TES, CLI).
    Builtin,
    Generic,
    Lambda,
}

/// One component of the planned device.
#[derive(Debug, Clone)]
pub struct PlannedComponent {
    pub name: String,
    pub version: Version,
    pub kind: Kind,
    pub recipe: Option<Recipe>,
    pub config: serde_json::Value,
    /// Direct dependencies and how they bind.
    pub dependencies: Vec<(String, DependencyType)>,
    /// The chosen manifest's lifecycle, variables interpolated (generic components).
    pub lifecycle: Lifecycle,
    /// The chosen manifest's index, to find its artifacts.
    pub manifest: Option<usize>,
    /// Whom it runs as and its limits: the request's, else what it ran with before.
    pub run_with: RunWith,
    /// Configuration values its privileged steps read (`(component, pointer)`, see
    /// `privileged_configuration_reads`): they may change by deployment only.
    pub privileged_reads: Vec<(Option<String>, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub components: BTreeMap<String, PlannedComponent>,
    /// Names in start order: every component after its dependencies.
    pub order: Vec<String>,
}

impl Plan {
    /// The components of the plan that `keep` accepts, in the same order.
    pub fn retaining(&self, keep: impl Fn(&str) -> bool) -> Plan {
        Plan {
            components: self
                .components
                .iter()
                .filter(|(name, _)| keep(name))
                .map(|(name, c)| (name.clone(), c.clone()))
                .collect(),
            order: self.order.iter().filter(|n| keep(n)).cloned().collect(),
        }
    }
}

pub use super::failure::PlanError;
use super::failure::{Cause, Problem};

/// The recipes this deployment can choose from: those already on the device and those it
/// brings.
#[derive(Debug, Default)]
pub struct Available {
    recipes: BTreeMap<String, BTreeMap<Version, Recipe>>,
}

impl Available {
    pub fn add(&mut self, recipe: Recipe) {
        self.recipes
            .entry(recipe.name.to_string())
            .or_default()
            .insert(recipe.version.clone(), recipe);
    }

    /// Adds what `other` has that this does not.
    pub fn merge(&mut self, other: Available) {
        for (name, versions) in other.recipes {
            let mine = self.recipes.entry(name).or_default();
            for (v, r) in versions {
                mine.entry(v).or_insert(r);
            }
        }
    }

    fn get(&self, name: &str, version: &Version) -> Option<&Recipe> {
        self.recipes.get(name).and_then(|v| v.get(version))
    }

    fn versions(&self, name: &str) -> Vec<Version> {
        let mut out: Vec<Version> = self
            .recipes
            .get(name)
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default();
        if let Some(v) = builtin::version(name) {
            out.push(v);
        }
        out.sort();
        out
    }

    /// Reads every recipe file of `dir` (`.json`, `.yaml`, `.yml`), each at most
    /// [`MAX_RECIPE_BYTES`]; errors name the file. Parsing a large or hostile YAML document takes
    /// a while: the engine calls this on a blocking thread.
    pub fn read_dir(&mut self, dir: &Path) -> Result<Vec<(PathBuf, Recipe)>, PlanError> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            PlanError::one(
                Cause::RecipesUnreadable,
                format!("cannot read recipe directory {}: {e}", dir.display()),
            )
        })?;
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| RecipeFormat::from_path(p).is_some())
            .collect();
        paths.sort();
        let mut problems = Vec::new();
        let mut read = Vec::new();
        for path in paths {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if size > MAX_RECIPE_BYTES {
                problems.push(Problem::new(
                    Cause::RecipeInvalid,
                    format!(
                        "{}: the recipe is {size} bytes, over the limit of {MAX_RECIPE_BYTES}",
                        path.display()
                    ),
                ));
                continue;
            }
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    Recipe::parse(&text, RecipeFormat::for_file(&path, &text))
                        .map_err(|e| e.to_string())
                });
            match parsed {
                Ok(recipe) => {
                    self.add(recipe.clone());
                    read.push((path, recipe));
                }
                Err(e) => problems.push(Problem::new(
                    Cause::RecipeInvalid,
                    format!("{}: {e}", path.display()),
                )),
            }
        }
        PlanError::check(problems).map(|()| read)
    }
}

/// The largest recipe file a deployment reads. Real recipes are a few kilobytes; this leaves
/// room for long scripts while keeping a hostile document's parse short.
pub const MAX_RECIPE_BYTES: u64 = 256 * 1024;

/// The device's current components: name → (version, effective configuration).
pub type Current = BTreeMap<String, (Version, serde_json::Value)>;

/// Computes the device after `request`, or every reason it cannot be.
pub fn plan(
    current: &Current,
    request: &DeploymentRequest,
    available: &Available,
    layout: &Layout,
    platform: &PlatformInfo,
    thing_name: &str,
) -> Result<Plan, PlanError> {
    let mut problems = Vec::new();
    // The components asked for: what runs now, updated by merge and remove.
    let mut wanted: BTreeMap<String, Version> = current
        .iter()
        .map(|(name, (version, _))| (name.clone(), version.clone()))
        .collect();
    for (name, version) in &request.merge {
        // A component already on the device keeps its name (refusing it would lose it).
        if crate::layout::is_reserved_name(name) && !current.contains_key(name) {
            problems.push(Problem::new(Cause::Request, format!(
                "--merge {name}: the component name {name} is reserved (logs/lambkin.log is the host's own log); choose another name"
            )));
            continue;
        }
        match lambkin_proto::recipe::version::parse_component_version(version) {
            Ok(v) => {
                wanted.insert(name.clone(), v);
            }
            Err(e) => problems.push(Problem::new(
                Cause::Request,
                format!("--merge {name}={version}: {e}"),
            )),
        }
    }
    for name in &request.remove {
        if wanted.remove(name).is_none() {
            problems.push(Problem::new(
                Cause::Request,
                format!("--remove {name}: no such component on the device"),
            ));
        }
    }

    // Resolve dependencies, breadth first: a dependency not asked for gets the highest
    // available version that satisfies its requirement.
    let mut chosen: BTreeMap<String, Version> = BTreeMap::new();
    let mut queue: Vec<(String, Version)> = wanted.into_iter().collect();
    while let Some((name, version)) = queue.pop() {
        if chosen.contains_key(&name) {
            continue;
        }
        if builtin::version(&name).is_none() && available.get(&name, &version).is_none() {
            let have = available.versions(&name);
            problems.push(Problem::new(
                Cause::NoVersion,
                if have.is_empty() {
                    format!("no recipe for {name}@{version}: put it in the recipe directory")
                } else {
                    format!("no recipe for {name}@{version}; available: {}", list(&have))
                },
            ));
            continue;
        }
        chosen.insert(name.clone(), version.clone());
        let Some(recipe) = available.get(&name, &version) else {
            continue;
        };
        for (dep, requirement) in &recipe.dependencies {
            let dep = dep.to_string();
            let req = &requirement.version_requirement;
            if let Some(v) = chosen
                .get(&dep)
                .or_else(|| queue.iter().find(|(n, _)| *n == dep).map(|(_, v)| v))
            {
                if !req.satisfies(v) {
                    problems.push(Problem::new(
                        Cause::NoVersion,
                        format!(
                            "{name}@{version} needs {dep} {}, but the deployment has {dep}@{v}",
                            req.as_str()
                        ),
                    ));
                }
                continue;
            }
            let have = available.versions(&dep);
            match have.iter().rev().find(|v| req.satisfies(v)) {
                Some(v) => queue.push((dep, v.clone())),
                None => problems.push(Problem::new(Cause::NoVersion, format!(
                    "{name}@{version} needs {dep} {}, and no version of it satisfies that (available: {})",
                    req.as_str(),
                    if have.is_empty() { "none".to_owned() } else { list(&have) }
                ))),
            }
        }
    }
    for name in request.update_config.keys() {
        if !chosen.contains_key(name) {
            problems.push(Problem::new(
                Cause::Request,
                format!("--update-config names {name}, which the deployment does not include"),
            ));
        }
    }
    for (name, run_with) in &request.run_with {
        if !chosen.contains_key(name) {
            problems.push(Problem::new(
                Cause::Request,
                format!("--run-with names {name}, which the deployment does not include"),
            ));
        }
        if let Some(user) = &run_with.posix_user {
            if let Err(e) = crate::users::parse_posix_user(user) {
                problems.push(Problem::new(
                    Cause::RunWith,
                    format!("--run-with {name}: {e}"),
                ));
            }
        }
        if let Some(limits) = &run_with.system_resource_limits {
            if let Err(e) = crate::users::check_limits(limits.cpus, limits.memory_kib) {
                problems.push(Problem::new(
                    Cause::RunWith,
                    format!("--system-limits {name}: {e}"),
                ));
            }
        }
    }
    PlanError::check(std::mem::take(&mut problems))?;

    let order = start_order(&chosen, available)?;

    // Configuration, manifests and lifecycles.
    let mut components = BTreeMap::new();
    for name in &order {
        let version = &chosen[name];
        let Some(recipe) = available.get(name, version) else {
            components.insert(
                name.clone(),
                PlannedComponent {
                    name: name.clone(),
                    version: version.clone(),
                    kind: Kind::Builtin,
                    recipe: None,
                    config: serde_json::json!({}),
                    dependencies: Vec::new(),
                    lifecycle: Lifecycle::default(),
                    manifest: None,
                    run_with: RunWith::default(),
                    privileged_reads: Vec::new(),
                },
            );
            continue;
        };
        let defaults = &recipe.default_configuration;
        let mut config = defaults.clone();
        if let Some((_, previous)) = current.get(name) {
            merge_json(&mut config, previous);
        }
        if let Some(update) = request.update_config.get(name) {
            for pointer in &update.reset {
                if let Err(e) = reset(&mut config, defaults, pointer) {
                    problems.push(Problem::new(
                        Cause::Request,
                        format!("--update-config {name} RESET {pointer:?}: {e}"),
                    ));
                }
            }
            if let Some(merge) = &update.merge {
                merge_json(&mut config, merge);
            }
        }
        let selected = match recipe.select_manifest(platform) {
            Ok(s) => s,
            Err(e) => {
                problems.push(Problem::new(Cause::NoVersion, e.to_string()));
                continue;
            }
        };
        let kind = match recipe.component_type {
            ComponentType::Lambda => Kind::Lambda,
            _ => Kind::Generic,
        };
        components.insert(
            name.clone(),
            PlannedComponent {
                name: name.clone(),
                version: version.clone(),
                kind,
                recipe: Some(recipe.clone()),
                config,
                dependencies: recipe
                    .dependencies
                    .iter()
                    .map(|(n, d)| (n.to_string(), d.dependency_type))
                    .collect(),
                lifecycle: selected.lifecycle.clone(),
                manifest: Some(selected.index),
                run_with: request.run_with.get(name).cloned().unwrap_or_default(),
                privileged_reads: Vec::new(),
            },
        );
    }
    PlanError::check(problems)?;
    interpolate(&mut components, layout, thing_name)?;
    Ok(Plan { components, order })
}

fn list(versions: &[Version]) -> String {
    versions
        .iter()
        .map(Version::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Dependencies first; a cycle is an error naming it.
fn start_order(
    chosen: &BTreeMap<String, Version>,
    available: &Available,
) -> Result<Vec<String>, PlanError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        chosen: &BTreeMap<String, Version>,
        available: &Available,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), PlanError> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = path.iter().position(|n| n == name).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(name.to_owned());
                return Err(PlanError::one(
                    Cause::Cycle,
                    format!("dependency cycle: {}", cycle.join(" -> ")),
                ));
            }
            None => {}
        }
        marks.insert(name.to_owned(), Mark::Visiting);
        path.push(name.to_owned());
        if let Some(recipe) = chosen.get(name).and_then(|v| available.get(name, v)) {
            for dep in recipe.dependencies.keys() {
                visit(dep.as_str(), chosen, available, marks, path, order)?;
            }
        }
        path.pop();
        marks.insert(name.to_owned(), Mark::Done);
        order.push(name.to_owned());
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut order = Vec::new();
    for name in chosen.keys() {
        visit(
            name,
            chosen,
            available,
            &mut marks,
            &mut Vec::new(),
            &mut order,
        )?;
    }
    Ok(order)
}

/// `MERGE`: objects merge key by key; anything else replaces.
pub fn merge_json(into: &mut serde_json::Value, from: &serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => merge_json(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (into, from) => *into = from.clone(),
    }
}

/// `RESET`: the value at `pointer` goes back to the recipe's default, or away if it has none;
/// `""` resets everything.
fn reset(
    config: &mut serde_json::Value,
    defaults: &serde_json::Value,
    pointer: &str,
) -> Result<(), String> {
    if pointer.is_empty() {
        *config = defaults.clone();
        return Ok(());
    }
    if !pointer.starts_with('/') {
        return Err("a JSON pointer starts with /".into());
    }
    // Lists reset only as a whole (§3.2): a pointer into a list resets the list.
    let pointer = &list_boundary(config, pointer);
    match defaults.pointer(pointer) {
        Some(default) => {
            if let Some(slot) = config.pointer_mut(pointer) {
                *slot = default.clone();
            } else {
                let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
                if let Some(serde_json::Value::Object(map)) = config.pointer_mut(parent) {
                    map.insert(unescape(key), default.clone());
                }
            }
        }
        None => {
            let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
            if let Some(serde_json::Value::Object(map)) = config.pointer_mut(parent) {
                map.remove(&unescape(key));
            }
        }
    }
    Ok(())
}

/// The pointer cut at the first list it enters, or unchanged.
fn list_boundary(config: &serde_json::Value, pointer: &str) -> String {
    let mut prefix = String::new();
    for token in pointer.split('/').skip(1) {
        if config
            .pointer(&prefix)
            .is_some_and(serde_json::Value::is_array)
        {
            return prefix;
        }
        prefix.push('/');
        prefix.push_str(token);
    }
    prefix
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Where a component's files are.
#[derive(Debug)]
pub struct ComponentPaths {
    pub artifacts: PathBuf,
    pub decompressed: PathBuf,
    pub work: PathBuf,
}

pub fn paths(layout: &Layout, name: &str, version: &Version) -> ComponentPaths {
    let packages = layout.root().join("packages");
    ComponentPaths {
        artifacts: packages
            .join("artifacts")
            .join(name)
            .join(version.to_string()),
        decompressed: packages
            .join("artifacts-unarchived")
            .join(name)
            .join(version.to_string()),
        work: layout.root().join("work").join(name),
    }
}

fn interpolate(
    components: &mut BTreeMap<String, PlannedComponent>,
    layout: &Layout,
    thing_name: &str,
) -> Result<(), PlanError> {
    let root = layout.root().display().to_string();
    let texts: BTreeMap<String, (String, String, String, serde_json::Value)> = components
        .values()
        .map(|c| {
            let p = paths(layout, &c.name, &c.version);
            (
                c.name.clone(),
                (
                    p.artifacts.display().to_string(),
                    p.decompressed.display().to_string(),
                    p.work.display().to_string(),
                    c.config.clone(),
                ),
            )
        })
        .collect();
    let vars_of = |name: &str| {
        texts.get(name).map(|(a, d, w, c)| ComponentVariables {
            artifacts_path: a,
            decompressed_path: d,
            work_path: w,
            configuration: c,
        })
    };
    let mut problems = Vec::new();
    let mut done = BTreeMap::new();
    for c in components.values() {
        if c.kind != Kind::Generic {
            continue;
        }
        let Some(component) = vars_of(&c.name) else {
            continue;
        };
        let dependencies = c
            .dependencies
            .iter()
            .filter_map(|(d, _)| vars_of(d).map(|v| (d.as_str(), v)))
            .collect();
        let vars = Variables {
            kernel_root_path: &root,
            thing_name,
            component,
            dependencies,
        };
        let reads = lambkin_proto::recipe::privileged_configuration_reads(&c.lifecycle);
        match vars.interpolate_lifecycle(&c.lifecycle) {
            Ok(l) => {
                done.insert(c.name.clone(), (l, reads));
            }
            Err(errors) => problems.extend(errors.iter().map(|e| {
                Problem::new(
                    Cause::Interpolation,
                    format!("{}@{}: {e}", c.name, c.version),
                )
            })),
        }
    }
    PlanError::check(problems)?;
    for (name, (lifecycle, reads)) in done {
        if let Some(c) = components.get_mut(&name) {
            c.lifecycle = lifecycle;
            c.privileged_reads = reads;
        }
    }
    Ok(())
}

/// Copies, checks and unpacks the artifacts of the planned components that the deployment
/// brings (those with files under `artifact_dir/NAME/VERSION/`). Components already on the
/// device keep theirs.
///
/// A version already on the device that the deployment brings again has its files moved aside
/// first (see `restore_artifacts`), so a failed or interrupted deployment can put them back.
pub fn stage_artifacts(
    plan: &Plan,
    artifact_dir: Option<&Path>,
    layout: &Layout,
    fresh: &BTreeSet<String>,
    deployment_id: &str,
) -> Result<(), PlanError> {
    let mut problems = Vec::new();
    for c in plan.components.values() {
        let (Some(recipe), Some(index)) = (&c.recipe, c.manifest) else {
            continue;
        };
        let Some(manifest) = recipe.manifests.get(index) else {
            continue;
        };
        let key = format!("{}@{}", c.name, c.version);
        let p = paths(layout, &c.name, &c.version);
        if !fresh.contains(&key) && p.artifacts.is_dir() {
            continue;
        }
        let kept = previous_dir(layout, deployment_id)
            .join("artifacts")
            .join(&c.name)
            .join(c.version.to_string());
        if let Err(e) = set_aside_artifacts(layout, deployment_id, &c.name, &c.version) {
            problems.push(Problem::new(
                Cause::ArtifactWrite,
                format!("{key}: cannot set its current artifacts aside: {e}"),
            ));
            continue;
        }
        for artifact in &manifest.artifacts {
            let uri = artifact.uri.as_str();
            if artifact.uri.docker_image().is_some() {
                // Images are the Docker engine's: see `pull_docker_images`.
                continue;
            }
            let Some(file) = artifact.uri.file_name() else {
                problems.push(Problem::new(
                    Cause::ArtifactUri,
                    format!("{key}: artifact {uri} names no file"),
                ));
                continue;
            };
            let source =
                artifact_dir.map(|d| d.join(&c.name).join(c.version.to_string()).join(file));
            let target = p.artifacts.join(file);
            // The file the device already had for this version, when the deployment brings none.
            let on_device = kept.join(file);
            let bytes = match source.as_ref().map(std::fs::read) {
                Some(Ok(bytes)) => bytes,
                Some(Err(e)) if on_device.is_file() && e.kind() == std::io::ErrorKind::NotFound => {
                    match std::fs::read(&on_device) {
                        Ok(b) => b,
                        Err(e) => {
                            problems.push(Problem::new(
                                Cause::ArtifactMissing,
                                format!("{key}: artifact {file}: {e}"),
                            ));
                            continue;
                        }
                    }
                }
                Some(Err(e)) => {
                    problems.push(Problem::new(
                        Cause::ArtifactMissing,
                        format!(
                            "{key}: artifact {file} not found at {}: {e}",
                            source.as_deref().unwrap_or(Path::new("?")).display()
                        ),
                    ));
                    continue;
                }
                None => match std::fs::read(&on_device) {
                    Ok(b) => b,
                    Err(_) => {
                        problems.push(Problem::new(
                            Cause::ArtifactMissing,
                            format!(
                                "{key}: artifact {file} is missing and no --artifact-dir was given"
                            ),
                        ));
                        continue;
                    }
                },
            };
            if let Some(expected) = &artifact.digest {
                use base64::Engine;
                let digest = match artifact.algorithm {
                    DigestAlgorithm::Sha256 => Sha256::digest(&bytes).to_vec(),
                    DigestAlgorithm::Sha384 => Sha384::digest(&bytes).to_vec(),
                    DigestAlgorithm::Sha512 => Sha512::digest(&bytes).to_vec(),
                };
                let actual = base64::engine::general_purpose::STANDARD.encode(digest);
                if &actual != expected {
                    problems.push(Problem::new(Cause::ArtifactDigest, format!(
                        "{key}: artifact {file} has {} digest {actual}, but the recipe says {expected}",
                        artifact.algorithm.as_str()
                    )));
                    continue;
                }
            }
            if let Err((cause, e)) =
                write_artifact(&bytes, &target, artifact, &p.decompressed, file)
            {
                problems.push(Problem::new(cause, format!("{key}: artifact {file}: {e}")));
            }
        }
    }
    PlanError::check(problems)
}

/// How long `docker info` may take to say whether an engine answers.
const DOCKER_INFO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `docker pull` may take.
const DOCKER_PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Makes the `docker:` artifacts of the planned components present in the Docker engine
/// (§5): when `docker info` succeeds, each image that `docker image inspect` does not find is
/// pulled with `docker pull` (an image already present is not pulled again, as nucleus 2.10
/// does); when no engine answers, the deployment is refused naming every such artifact.
/// Private registries (ECR) need the engine to be logged in already.
pub async fn pull_docker_images(plan: &Plan) -> Result<(), PlanError> {
    let mut images: Vec<(String, String)> = Vec::new();
    for c in plan.components.values() {
        let (Some(recipe), Some(index)) = (&c.recipe, c.manifest) else {
            continue;
        };
        let Some(manifest) = recipe.manifests.get(index) else {
            continue;
        };
        for artifact in &manifest.artifacts {
            if let Some(image) = artifact.uri.docker_image() {
                images.push((format!("{}@{}", c.name, c.version), image.to_owned()));
            }
        }
    }
    if images.is_empty() {
        return Ok(());
    }
    if let Err(why) = docker(&["info"], DOCKER_INFO_TIMEOUT).await {
        let named: Vec<String> = images
            .iter()
            .map(|(key, image)| format!("{key}: artifact docker:{image}"))
            .collect();
        return Err(PlanError::one(
            Cause::DockerUnavailable,
            format!(
                "{}: a Docker engine is needed to pull it, and none answers (`docker info`: {why})",
                named.join(", ")
            ),
        ));
    }
    let mut problems = Vec::new();
    let mut done = BTreeSet::new();
    for (key, image) in &images {
        if !done.insert(image.clone()) {
            continue;
        }
        if docker(&["image", "inspect", image], DOCKER_INFO_TIMEOUT)
            .await
            .is_ok()
        {
            continue;
        }
        tracing::info!(component = %key, %image, "pulling a Docker image");
        if let Err(why) = docker(&["pull", image], DOCKER_PULL_TIMEOUT).await {
            problems.push(Problem::new(
                Cause::DockerPull,
                format!("{key}: artifact docker:{image}: `docker pull` failed: {why}"),
            ));
        }
    }
    PlanError::check(problems)
}

/// Runs `docker ARGS…`; `Err` says why it did not succeed (not found, timed out, or its
/// exit status and the last line of its error output).
async fn docker(args: &[&str], limit: Duration) -> Result<(), String> {
    let mut command = tokio::process::Command::new("docker");
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(limit, command.output()).await {
        Err(_) => return Err(format!("no answer within {} s", limit.as_secs())),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("the docker command is not installed".to_owned())
        }
        Ok(Err(e)) => return Err(format!("cannot run docker: {e}")),
        Ok(Ok(output)) => output,
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    Err(format!("{}: {last}", output.status))
}

/// An artifact that cannot be written or moved into place.
fn written(e: std::io::Error) -> (Cause, String) {
    (Cause::ArtifactWrite, e.to_string())
}

fn write_artifact(
    bytes: &[u8],
    target: &Path,
    artifact: &lambkin_proto::recipe::model::Artifact,
    decompressed: &Path,
    file: &str,
) -> Result<(), (Cause, String)> {
    use lambkin_proto::recipe::model::PermissionLevel;
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(written)?;
    }
    let staging = target.with_extension("staging");
    std::fs::write(&staging, bytes).map_err(written)?;
    let read = match artifact.permission.read {
        PermissionLevel::None => 0o200,
        PermissionLevel::Owner => 0o600,
        PermissionLevel::All => 0o644,
    };
    let exec = match artifact.permission.execute {
        PermissionLevel::None => 0,
        PermissionLevel::Owner => 0o100,
        PermissionLevel::All => 0o111,
    };
    std::fs::set_permissions(
        &staging,
        std::fs::Permissions::from_mode(read | exec | 0o200),
    )
    .map_err(written)?;
    std::fs::rename(&staging, target).map_err(written)?;
    if artifact.unarchive == Unarchive::Zip {
        let stem = Path::new(file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.to_owned());
        let dest = decompressed.join(&stem);
        let staging = decompressed.join(format!(".{stem}.unpacking"));
        let _ = std::fs::remove_dir_all(&staging);
        crate::lambda::code::unpack(bytes, &staging).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staging);
            (Cause::ArtifactUnpack, e.to_string())
        })?;
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&staging, &dest).map_err(written)?;
    }
    Ok(())
}

/// What a deployment changes on disk besides the store, and the one rule for it: nothing the
/// device runs from is replaced until the deployment commits (the store records its end).
///
/// - Recipes it brings and the components' `runWith` wait beside the device's (set aside);
///   [`Staging::commit`] moves them in, [`Staging::abandon`] drops them.
/// - Artifacts of a version it brings again are moved out of the way (by
///   [`stage_artifacts`]); [`Staging::commit`] forgets them, [`Staging::restore_artifacts`]
///   puts them back.
/// - A crash between the two is settled at the next start ([`Staging::settle`]): the store
///   says which deployments never committed; theirs are dropped (artifacts put back), the
///   others' kept.
#[derive(Debug)]
pub struct Staging<'a> {
    layout: &'a Layout,
    id: &'a str,
}

impl<'a> Staging<'a> {
    pub fn new(layout: &'a Layout, deployment_id: &'a str) -> Self {
        Self {
            layout,
            id: deployment_id,
        }
    }

    /// Sets aside the recipes the deployment brings.
    pub fn set_aside_recipes(&self, recipes: &[(PathBuf, Recipe)]) -> std::io::Result<()> {
        set_aside_recipes(self.layout, self.id, recipes)
    }

    /// Sets aside the components' `runWith` as the deployment leaves them.
    pub fn set_aside_run_with(&self, run_with: &BTreeMap<String, RunWith>) -> std::io::Result<()> {
        set_aside_run_with(self.layout, self.id, run_with)
    }

    /// The deployment failed and rolls back: the artifacts it replaced come back.
    pub fn restore_artifacts(&self) {
        restore_artifacts(self.layout, self.id);
    }

    /// The deployment did not commit: what it set aside goes.
    pub fn abandon(&self) {
        drop_run_with(self.layout, self.id);
        drop_recipes(self.layout, self.id);
    }

    /// The deployment committed: what it set aside becomes the device's, and what it replaced
    /// is forgotten. Failures are logged: the device runs the committed set already.
    pub fn commit(&self) {
        if let Err(e) = keep_recipes(self.layout, self.id) {
            tracing::error!(deployment = %self.id, error = %e, "cannot keep the deployment's recipes");
        }
        match keep_run_with(self.layout, self.id) {
            // Nothing was set aside: the deployment committed nothing to keep.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(deployment = %self.id, error = %e, "cannot keep the components' runWith")
            }
            Ok(()) => {}
        }
        drop_previous_artifacts(self.layout, self.id);
    }

    /// At start, before anything reads the recipes: finishes or undoes what deployments the
    /// host stopped during left on disk; `uncommitted` are those the store says never ended.
    pub fn settle(layout: &Layout, uncommitted: &BTreeSet<String>) {
        settle_pending_recipes(layout, uncommitted);
        settle_previous_artifacts(layout, uncommitted);
        settle_pending_run_with(layout, uncommitted);
    }
}

fn recipes_dir(layout: &Layout) -> PathBuf {
    layout.root().join("packages").join("recipes")
}

/// Where a deployment's recipes wait for it to commit.
fn pending_recipes_dir(layout: &Layout, deployment_id: &str) -> PathBuf {
    recipes_dir(layout).join(format!("{PENDING_PREFIX}{deployment_id}"))
}

const PENDING_PREFIX: &str = ".pending-";

/// Sets aside the recipes a deployment brings until it commits: the device keeps its recipes
/// (`ROOT/packages/recipes/NAME@VERSION.recipe.{json,yaml}`) as they are, because a recipe
/// brought again for a version already on the device replaces that version's recipe, which
/// the committed deployment still runs until the new one commits. [`keep_recipes`] moves them
/// in after the commit; at start, [`settle_pending_recipes`] finishes or drops what a crash
/// interrupted.
fn set_aside_recipes(
    layout: &Layout,
    deployment_id: &str,
    recipes: &[(PathBuf, Recipe)],
) -> std::io::Result<()> {
    let dir = pending_recipes_dir(layout, deployment_id);
    std::fs::create_dir_all(&dir)?;
    for (source, recipe) in recipes {
        let ext = match source.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => "yaml",
            _ => "json",
        };
        let target = dir.join(format!("{}@{}.recipe.{ext}", recipe.name, recipe.version));
        std::fs::copy(source, target)?;
    }
    Ok(())
}

/// Moves a committed deployment's recipes in with the device's own.
fn keep_recipes(layout: &Layout, deployment_id: &str) -> std::io::Result<()> {
    let dir = pending_recipes_dir(layout, deployment_id);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        // A recipe kept in the other format would be read as well; the new one replaces it.
        if let Some(stem) = text
            .strip_suffix(".recipe.json")
            .or_else(|| text.strip_suffix(".recipe.yaml"))
        {
            for ext in ["json", "yaml"] {
                let other = recipes_dir(layout).join(format!("{stem}.recipe.{ext}"));
                if other.file_name() != Some(name.as_os_str()) {
                    let _ = std::fs::remove_file(other);
                }
            }
        }
        std::fs::rename(entry.path(), recipes_dir(layout).join(&name))?;
    }
    std::fs::remove_dir(&dir)
}

/// Drops the recipes set aside by deployments that never committed (`uncommitted`, those the
/// host found in progress) and keeps those of deployments that did.
fn settle_pending_recipes(layout: &Layout, uncommitted: &BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(recipes_dir(layout)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix(PENDING_PREFIX) else {
            continue;
        };
        let result = if uncommitted.contains(id) {
            std::fs::remove_dir_all(entry.path())
        } else {
            keep_recipes(layout, id)
        };
        if let Err(e) = result {
            tracing::error!(deployment = %id, error = %e, "cannot settle the recipes of an interrupted deployment");
        }
    }
}

/// Where a deployment keeps the files it replaced, until it commits or rolls back.
fn previous_dir(layout: &Layout, deployment_id: &str) -> PathBuf {
    layout
        .root()
        .join("packages")
        .join(format!("{PREVIOUS_PREFIX}{deployment_id}"))
}

const PREVIOUS_PREFIX: &str = ".previous-";
const ARTIFACT_KINDS: [&str; 2] = ["artifacts", "artifacts-unarchived"];

/// Moves a version's files out of the way of the deployment that brings it again.
fn set_aside_artifacts(
    layout: &Layout,
    deployment_id: &str,
    name: &str,
    version: &Version,
) -> std::io::Result<()> {
    let packages = layout.root().join("packages");
    for kind in ARTIFACT_KINDS {
        let current = packages.join(kind).join(name).join(version.to_string());
        if !current.exists() {
            continue;
        }
        let aside = previous_dir(layout, deployment_id)
            .join(kind)
            .join(name)
            .join(version.to_string());
        if let Some(parent) = aside.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(&current, &aside)?;
    }
    Ok(())
}

/// Puts back the files a deployment replaced (it failed, or the host stopped during it).
fn restore_artifacts(layout: &Layout, deployment_id: &str) {
    let previous = previous_dir(layout, deployment_id);
    let packages = layout.root().join("packages");
    for kind in ARTIFACT_KINDS {
        let Ok(names) = std::fs::read_dir(previous.join(kind)) else {
            continue;
        };
        for name in names.flatten() {
            let Ok(versions) = std::fs::read_dir(name.path()) else {
                continue;
            };
            for version in versions.flatten() {
                let target = packages
                    .join(kind)
                    .join(name.file_name())
                    .join(version.file_name());
                let _ = std::fs::remove_dir_all(&target);
                let moved = target
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::rename(version.path(), &target));
                if let Err(e) = moved {
                    tracing::error!(path = %target.display(), error = %e, "cannot restore replaced artifacts");
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(previous);
}

/// Forgets the files a committed deployment replaced.
fn drop_previous_artifacts(layout: &Layout, deployment_id: &str) {
    let _ = std::fs::remove_dir_all(previous_dir(layout, deployment_id));
}

/// At start: deployments that never committed get their replaced files back; those that did
/// drop them.
fn settle_previous_artifacts(layout: &Layout, uncommitted: &BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(layout.root().join("packages")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix(PREVIOUS_PREFIX) else {
            continue;
        };
        if uncommitted.contains(id) {
            restore_artifacts(layout, id);
        } else {
            drop_previous_artifacts(layout, id);
        }
    }
}

/// Drops the recipes a deployment set aside (it did not commit).
fn drop_recipes(layout: &Layout, deployment_id: &str) {
    let _ = std::fs::remove_dir_all(pending_recipes_dir(layout, deployment_id));
}

/// `ROOT/state/run-with.json`: each component's `runWith` as the last committed deployment
/// left it, so a host that starts again runs each as the same user.
fn run_with_file(layout: &Layout) -> PathBuf {
    layout.state_dir().join("run-with.json")
}

fn pending_run_with_file(layout: &Layout, deployment_id: &str) -> PathBuf {
    layout
        .state_dir()
        .join(format!("run-with{PENDING_PREFIX}{deployment_id}.json"))
}

/// Writes what a deployment about to commit leaves the components running with; like the
/// recipes it brings, it is kept ([`keep_run_with`]) only once the deployment has committed.
fn set_aside_run_with(
    layout: &Layout,
    deployment_id: &str,
    run_with: &BTreeMap<String, RunWith>,
) -> std::io::Result<()> {
    let path = pending_run_with_file(layout, deployment_id);
    let json = serde_json::to_vec_pretty(run_with).map_err(std::io::Error::other)?;
    crate::layout::write_private(&path, &json)
}

/// Makes a committed deployment's `runWith` the device's.
fn keep_run_with(layout: &Layout, deployment_id: &str) -> std::io::Result<()> {
    std::fs::rename(
        pending_run_with_file(layout, deployment_id),
        run_with_file(layout),
    )
}

/// Drops what [`set_aside_run_with`] wrote for a deployment that did not commit.
fn drop_run_with(layout: &Layout, deployment_id: &str) {
    let _ = std::fs::remove_file(pending_run_with_file(layout, deployment_id));
}

/// At start: keeps the `runWith` of a deployment that committed before the host stopped, drops
/// that of one that did not (`uncommitted`).
fn settle_pending_run_with(layout: &Layout, uncommitted: &BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(layout.state_dir()) else {
        return;
    };
    let prefix = format!("run-with{PENDING_PREFIX}");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".json"))
        else {
            continue;
        };
        if uncommitted.contains(id) {
            drop_run_with(layout, id);
        } else if let Err(e) = keep_run_with(layout, id) {
            tracing::error!(deployment = %id, error = %e, "cannot keep the runWith of a committed deployment");
        }
    }
}

/// The device's components' `runWith` (empty when none was ever given).
pub fn stored_run_with(layout: &Layout) -> BTreeMap<String, RunWith> {
    match std::fs::read(run_with_file(layout)) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::error!(error = %e, "run-with.json unreadable: components run as the default user");
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    }
}

/// The recipes kept on the device.
pub fn stored_recipes(layout: &Layout) -> Available {
    let mut available = Available::default();
    if let Ok(entries) = std::fs::read_dir(recipes_dir(layout)) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !(name.ends_with(".recipe.json") || name.ends_with(".recipe.yaml")) {
                continue;
            }
            match std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| {
                    Recipe::parse(&t, RecipeFormat::for_file(&path, &t)).map_err(|e| e.to_string())
                }) {
                Ok(recipe) => available.add(recipe),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "stored recipe unreadable")
                }
            }
        }
    }
    available
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recipe of `name@version` with `dependencies` (name → requirement), `defaults` and a
    /// Run step.
    fn recipe(
        name: &str,
        version: &str,
        dependencies: &[(&str, &str)],
        defaults: serde_json::Value,
        run: &str,
    ) -> Recipe {
        let deps: serde_json::Map<String, serde_json::Value> = dependencies
            .iter()
            .map(|(n, r)| {
                (
                    (*n).to_owned(),
                    serde_json::json!({ "VersionRequirement": r }),
                )
            })
            .collect();
        let text = serde_json::json!({
            "RecipeFormatVersion": "2020-01-25",
            "ComponentName": name,
            "ComponentVersion": version,
            "ComponentDependencies": deps,
            "ComponentConfiguration": { "DefaultConfiguration": defaults },
            "Manifests": [{ "Lifecycle": { "Run": run } }],
        })
        .to_string();
        Recipe::parse(&text, RecipeFormat::Json).unwrap()
    }

    fn available(recipes: Vec<Recipe>) -> Available {
        let mut available = Available::default();
        for r in recipes {
            available.add(r);
        }
        available
    }

    fn request(merge: &[(&str, &str)]) -> DeploymentRequest {
        DeploymentRequest {
            merge: merge
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            ..DeploymentRequest::default()
        }
    }

    fn planned(
        current: &Current,
        request: &DeploymentRequest,
        available: &Available,
    ) -> Result<Plan, PlanError> {
        let layout = Layout::new("/gg");
        plan(
            current,
            request,
            available,
            &layout,
            &PlatformInfo::current(),
            "thing",
        )
    }

    fn refused(result: Result<Plan, PlanError>) -> PlanError {
        match result {
            Ok(plan) => panic!("planned {:?}", plan.order),
            Err(e) => e,
        }
    }

    #[test]
    fn a_dependency_gets_the_highest_version_that_satisfies_it_and_starts_first() {
        let available = available(vec![
            recipe(
                "app",
                "1.0.0",
                &[("lib", "^1.0.0")],
                serde_json::json!({}),
                "run app",
            ),
            recipe("lib", "1.0.0", &[], serde_json::json!({}), "run lib 1.0"),
            recipe("lib", "1.2.0", &[], serde_json::json!({}), "run lib 1.2"),
            recipe("lib", "2.0.0", &[], serde_json::json!({}), "run lib 2.0"),
        ]);
        let plan = planned(&Current::new(), &request(&[("app", "1.0.0")]), &available).unwrap();
        assert_eq!(plan.order, ["lib", "app"]);
        assert_eq!(plan.components["lib"].version.to_string(), "1.2.0");
        assert_eq!(
            plan.components["app"].dependencies,
            [("lib".to_owned(), DependencyType::Hard)]
        );
    }

    #[test]
    fn what_cannot_be_planned_is_named_all_at_once() {
        let available = available(vec![
            recipe(
                "app",
                "1.0.0",
                &[("lib", "^1.0.0")],
                serde_json::json!({}),
                "run",
            ),
            recipe("lib", "2.0.0", &[], serde_json::json!({}), "run"),
            recipe("other", "1.0.0", &[], serde_json::json!({}), "run"),
        ]);
        let mut req = request(&[("app", "1.0.0"), ("lib", "2.0.0"), ("other", "9.0.0")]);
        req.remove = vec!["ghost".into()];
        req.update_config
            .insert("stranger".into(), ConfigUpdate::default());
        req.run_with.insert(
            "app".into(),
            RunWith {
                posix_user: Some("a b".into()),
                ..RunWith::default()
            },
        );
        let refused = refused(planned(&Current::new(), &req, &available));
        let text = refused.to_string();
        // Each named with its kind, which decides the error codes the device reports.
        for (expected, cause) in [
            (
                "app@1.0.0 needs lib ^1.0.0, but the deployment has lib@2.0.0",
                Cause::NoVersion,
            ),
            (
                "no recipe for other@9.0.0; available: 1.0.0",
                Cause::NoVersion,
            ),
            (
                "--remove ghost: no such component on the device",
                Cause::Request,
            ),
            (
                "--update-config names stranger, which the deployment does not include",
                Cause::Request,
            ),
            ("--run-with app: ", Cause::RunWith),
        ] {
            assert!(text.contains(expected), "{expected:?} not in {text}");
            assert!(
                refused
                    .problems
                    .iter()
                    .any(|p| p.text.contains(expected) && p.cause == cause),
                "{expected:?} is not a {cause:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_dependency_cycle_is_refused_naming_it() {
        let available = available(vec![
            recipe(
                "a",
                "1.0.0",
                &[("b", "1.0.0")],
                serde_json::json!({}),
                "run",
            ),
            recipe(
                "b",
                "1.0.0",
                &[("a", "1.0.0")],
                serde_json::json!({}),
                "run",
            ),
        ]);
        let refused = refused(planned(
            &Current::new(),
            &request(&[("a", "1.0.0")]),
            &available,
        ));
        assert_eq!(
            refused.problems.iter().map(|p| p.cause).collect::<Vec<_>>(),
            [Cause::Cycle]
        );
        let text = refused.to_string();
        assert!(text.contains("cycle"), "{text}");
        assert!(text.contains('a') && text.contains('b'), "{text}");
    }

    #[test]
    fn configuration_is_defaults_then_the_device_then_reset_then_merge() {
        let available = available(vec![recipe(
            "app",
            "1.0.0",
            &[],
            serde_json::json!({"a": 1, "b": 2, "c": {"d": 3}}),
            "run {configuration:/a} {configuration:/b} {configuration:/c/d}",
        )]);
        let current = Current::from([(
            "app".to_owned(),
            (
                Version::parse("1.0.0").unwrap(),
                serde_json::json!({"a": 10, "b": 20, "c": {"d": 30}}),
            ),
        )]);
        let mut req = request(&[]);
        req.update_config.insert(
            "app".into(),
            ConfigUpdate {
                reset: vec!["/b".into()],
                merge: Some(serde_json::json!({"c": {"d": "x y"}})),
            },
        );
        let plan = planned(&current, &req, &available).unwrap();
        let app = &plan.components["app"];
        assert_eq!(
            app.config,
            serde_json::json!({"a": 10, "b": 2, "c": {"d": "x y"}})
        );
        // Interpolated into the Run script, each value quoted for the shell where needed.
        let run = app.lifecycle.steps.values().next().unwrap();
        assert_eq!(run.script, "run 10 2 'x y'");
    }

    #[test]
    fn reset_of_a_list_element_resets_the_whole_list() {
        let defaults = serde_json::json!({"list": [1, 2, 3], "x": {"y": 1}});
        let mut config = serde_json::json!({"list": [9, 9], "x": {"y": 5, "z": 2}});
        reset(&mut config, &defaults, "/list/0").unwrap();
        reset(&mut config, &defaults, "/x/z").unwrap();
        assert_eq!(
            config,
            serde_json::json!({"list": [1, 2, 3], "x": {"y": 5}})
        );
        reset(&mut config, &defaults, "/x/y").unwrap();
        assert_eq!(config["x"]["y"], 1);
    }

    fn recipe_file(dir: &Path, version: &str, run: &str) -> (PathBuf, Recipe) {
        let text = serde_json::json!({
            "RecipeFormatVersion": "2020-01-25",
            "ComponentName": "com.example.Kept",
            "ComponentVersion": version,
            "Manifests": [{ "Lifecycle": { "Run": run } }],
        })
        .to_string();
        let path = dir.join(format!("{version}-{run}.json"));
        std::fs::write(&path, &text).unwrap();
        (path, Recipe::parse(&text, RecipeFormat::Json).unwrap())
    }

    fn kept_run(layout: &Layout, version: &str) -> Option<String> {
        let available = stored_recipes(layout);
        let recipe = available.get("com.example.Kept", &Version::parse(version).ok()?)?;
        let lifecycle = &recipe.manifests.first()?.effective_lifecycle;
        Some(lifecycle.steps.values().next()?.script.clone())
    }

    #[test]
    fn recipes_set_aside_are_kept_only_for_deployments_that_committed() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path().join("root"));
        let brought = tmp.path().join("brought");
        std::fs::create_dir_all(&brought).unwrap();

        set_aside_recipes(&layout, "one", &[recipe_file(&brought, "1.0.0", "first")]).unwrap();
        keep_recipes(&layout, "one").unwrap();
        assert_eq!(kept_run(&layout, "1.0.0").as_deref(), Some("first"));

        // Set aside, then the host stopped: "two" never committed, "three" did.
        set_aside_recipes(&layout, "two", &[recipe_file(&brought, "1.0.0", "second")]).unwrap();
        set_aside_recipes(&layout, "three", &[recipe_file(&brought, "2.0.0", "third")]).unwrap();
        assert_eq!(kept_run(&layout, "1.0.0").as_deref(), Some("first"));
        assert_eq!(kept_run(&layout, "2.0.0"), None);
        settle_pending_recipes(&layout, &BTreeSet::from(["two".to_owned()]));
        assert_eq!(kept_run(&layout, "1.0.0").as_deref(), Some("first"));
        assert_eq!(kept_run(&layout, "2.0.0").as_deref(), Some("third"));
        let left: Vec<_> = std::fs::read_dir(recipes_dir(&layout))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }

    #[test]
    fn a_staging_keeps_what_it_set_aside_only_when_committed() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path().join("root"));
        std::fs::create_dir_all(layout.state_dir()).unwrap();
        let brought = tmp.path().join("brought");
        std::fs::create_dir_all(&brought).unwrap();
        let run_with = BTreeMap::from([("com.example.Kept".to_owned(), RunWith::default())]);

        let failed = Staging::new(&layout, "failed");
        failed
            .set_aside_recipes(&[recipe_file(&brought, "1.0.0", "never")])
            .unwrap();
        failed.set_aside_run_with(&run_with).unwrap();
        failed.abandon();
        assert_eq!(kept_run(&layout, "1.0.0"), None);
        assert!(stored_run_with(&layout).is_empty());

        let done = Staging::new(&layout, "done");
        done.set_aside_recipes(&[recipe_file(&brought, "1.0.0", "kept")])
            .unwrap();
        done.set_aside_run_with(&run_with).unwrap();
        // Not the device's until the commit.
        assert_eq!(kept_run(&layout, "1.0.0"), None);
        done.commit();
        assert_eq!(kept_run(&layout, "1.0.0").as_deref(), Some("kept"));
        assert_eq!(stored_run_with(&layout), run_with);

        // Interrupted: settled as the store says.
        let interrupted = Staging::new(&layout, "interrupted");
        interrupted
            .set_aside_recipes(&[recipe_file(&brought, "1.0.0", "interrupted")])
            .unwrap();
        Staging::settle(&layout, &BTreeSet::from(["interrupted".to_owned()]));
        assert_eq!(kept_run(&layout, "1.0.0").as_deref(), Some("kept"));
    }
}
