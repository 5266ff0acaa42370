//! Apache OpenWhisk's REST API (`/api/v1`) and action interface as typed values: the action
//! document a client `PUT`s and gets back, limits and their bounds, kinds, the activation record
//! with OpenWhisk's four outcomes (`ActivationResponse`), the answer of Lambkin's action adapter
//! classified into one of them, the HTTP Basic key, list queries, and every API error with its
//! status and OpenWhisk's message. Shapes and messages follow apache/openwhisk
//! (`docs/actions-new.md`, `docs/rest_api.md`, `common/.../ActivationResult.scala`,
//! `common/.../http/ErrorResponse.scala`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// An annotation or parameter: `{"key": K, "value": V}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Value,
}

/// An action's limits, in OpenWhisk's units: `timeout` in milliseconds, `memory` and `logs` in
/// megabytes, `concurrency` activations per instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub timeout: u64,
    pub memory: u32,
    pub logs: u32,
    pub concurrency: u32,
}

impl Default for Limits {
    /// OpenWhisk's defaults.
    fn default() -> Self {
        Self {
            timeout: 60_000,
            memory: 256,
            logs: 10,
            concurrency: 1,
        }
    }
}

impl Limits {
    pub const TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=300_000;
    pub const MEMORY_MB: std::ops::RangeInclusive<u32> = 128..=2048;
    pub const LOGS_MB: std::ops::RangeInclusive<u32> = 0..=10;
    /// OpenWhisk's range (its default maximum, 500). An instance here runs one activation at
    /// a time (each is a Lambda invocation), so an action of concurrency N may have N times
    /// as many instances: N times the activations at once, as OpenWhisk users expect.
    pub const CONCURRENCY: std::ops::RangeInclusive<u32> = 1..=500;

    fn apply(mut self, put: &LimitsPut) -> Result<Self, WhiskError> {
        fn check<T: PartialOrd + std::fmt::Display + Copy>(
            field: &str,
            unit: &str,
            value: T,
            range: &std::ops::RangeInclusive<T>,
        ) -> Result<T, WhiskError> {
            if range.contains(&value) {
                Ok(value)
            } else {
                Err(WhiskError::BadRequest(format!(
                    "{field} {value} {unit} is outside the allowed range of {} to {} {unit}.",
                    range.start(),
                    range.end()
                )))
            }
        }
        if let Some(t) = put.timeout {
            self.timeout = check("timeout", "milliseconds", t, &Self::TIMEOUT_MS)?;
        }
        if let Some(m) = put.memory {
            self.memory = check("memory", "MB", m, &Self::MEMORY_MB)?;
        }
        if let Some(l) = put.logs {
            self.logs = check("logs", "MB", l, &Self::LOGS_MB)?;
        }
        if let Some(c) = put.concurrency {
            // OpenWhisk's `ConcurrencyLimit` words.
            let (min, max) = (*Self::CONCURRENCY.start(), *Self::CONCURRENCY.end());
            if c < min {
                return Err(WhiskError::Malformed(format!(
                    "concurrency {c} below allowed threshold of {min}"
                )));
            }
            if c > max {
                return Err(WhiskError::Malformed(format!(
                    "concurrency {c} exceeds allowed threshold of {max}"
                )));
            }
            self.concurrency = c;
        }
        Ok(self)
    }

    /// The largest activation log, in bytes.
    pub fn log_bytes(&self) -> usize {
        self.logs as usize * 1024 * 1024
    }
}

/// Limits as a `PUT` gives them: any may be left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LimitsPut {
    pub timeout: Option<u64>,
    pub memory: Option<u32>,
    pub logs: Option<u32>,
    pub concurrency: Option<u32>,
}

/// How an action's code runs, from the family of its `exec.kind` (`nodejs:20` → Node,
/// `python:3.11` → Python); which Lambda runtime it runs on is the [`KindTable`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `nodejs:*`: the Node adapter on a `nodejs*.x` runtime.
    Node,
    /// `python:*`: the Python adapter on a `python3.*` runtime.
    Python,
    /// `blackbox` (or `native`): an executable speaking OpenWhisk's ActionLoop protocol (one
    /// JSON line per activation on stdin, the result on file descriptor 3), given as a script
    /// or as a zip holding `exec`; its adapter runs on a `python3.*` runtime.
    Native,
    /// `sequence`: the action runs its components in order.
    Sequence,
}

impl Kind {
    /// Images a `blackbox` action may name: the ActionLoop skeletons (no image runs here).
    pub const NATIVE_IMAGES: &'static [&'static str] = &[
        "openwhisk/dockerskeleton",
        "openwhisk/actionloop-v2",
        "openwhisk/actionloop",
    ];

    /// The family of `kind`, whether or not the table has it.
    pub fn family(kind: &str) -> Option<Self> {
        match kind {
            "sequence" => Some(Self::Sequence),
            "blackbox" | "native" => Some(Self::Native),
            _ if kind.starts_with("nodejs:") => Some(Self::Node),
            _ if kind.starts_with("python:") => Some(Self::Python),
            _ => None,
        }
    }

    /// Whether a Lambda runtime id suits the family's adapter.
    fn runs_on(self, runtime: &str) -> bool {
        match self {
            Self::Node => runtime.starts_with("nodejs"),
            Self::Python | Self::Native => runtime.starts_with("python3."),
            Self::Sequence => false,
        }
    }
}

/// What `[openwhisk.kinds]` maps a kind to: a Lambda runtime id, or a runtime with the
/// layers laid over its `/opt` (`{ runtime = "nodejs20.x", layers = ["node-libs:3"] }`), as
/// the proposal maps `"nodejs:10"` to a layer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum KindEntry {
    Runtime(String),
    Layered(LayeredKind),
}

/// A kind on a runtime with layers: each a layer version ARN or `NAME:VERSION` (a layer
/// published on this host), in the order they are laid over `/opt`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayeredKind {
    pub runtime: String,
    pub layers: Vec<String>,
}

/// A kind's layer as the table names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindLayer {
    Arn(crate::lambda::layer::LayerVersionArn),
    /// A layer published on this host, by name and version.
    Local(
        crate::lambda::layer::LayerName,
        crate::lambda::layer::LayerVersionNumber,
    ),
}

impl KindLayer {
    /// A layer version ARN, or `NAME:VERSION`.
    pub fn parse(value: &str) -> Result<Self, String> {
        use crate::lambda::layer::{parse_version, LayerName, LayerVersionArn};
        if value.starts_with("arn:") {
            return LayerVersionArn::parse(value)
                .map(Self::Arn)
                .map_err(|_| format!("layer {value:?} is not a layer version ARN"));
        }
        match value.rsplit_once(':') {
            Some((name, version)) => match (LayerName::parse(name), parse_version(version)) {
                (Ok(name), Some(version)) => Ok(Self::Local(name, version)),
                _ => Err(format!(
                    "layer {value:?} is neither a layer version ARN nor NAME:VERSION"
                )),
            },
            None => Err(format!(
                "layer {value:?} names no version (NAME:VERSION or a layer version ARN)"
            )),
        }
    }
}

/// OpenWhisk kind → the Lambda runtime it runs on (and the layers it brings), as the proposal
/// maps them. Built in: `nodejs:default|18|20|22`, `python:default|3|3.10–3.13`, `blackbox`,
/// `native`; the configuration (`[openwhisk.kinds]`) adds kinds or maps them elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindTable {
    runtimes: std::collections::BTreeMap<String, String>,
    layers: std::collections::BTreeMap<String, Vec<KindLayer>>,
}

impl Default for KindTable {
    fn default() -> Self {
        let mut runtimes = std::collections::BTreeMap::new();
        for (kind, runtime) in [
            ("nodejs:default", "nodejs20.x"),
            ("nodejs:18", "nodejs18.x"),
            ("nodejs:20", "nodejs20.x"),
            ("nodejs:22", "nodejs22.x"),
            ("python:default", "python3.12"),
            ("python:3", "python3.12"),
            ("python:3.10", "python3.10"),
            ("python:3.11", "python3.11"),
            ("python:3.12", "python3.12"),
            ("python:3.13", "python3.13"),
            ("blackbox", "python3.12"),
            ("native", "python3.12"),
        ] {
            runtimes.insert(kind.to_owned(), runtime.to_owned());
        }
        Self {
            runtimes,
            layers: std::collections::BTreeMap::new(),
        }
    }
}

impl KindTable {
    /// The built-in table with `entries` (kind → Lambda runtime id, and layers) over it. Each
    /// kind must be of a family this host runs (`nodejs:*`, `python:*`, `blackbox`, `native`),
    /// its runtime one that family's adapter runs on, its layers at most five, each named
    /// once; every problem is named. Whether the layers exist is checked when an action of
    /// the kind is made (they may be published after the host starts).
    pub fn with(
        entries: &std::collections::BTreeMap<String, KindEntry>,
    ) -> Result<Self, Vec<String>> {
        let mut table = Self::default();
        let mut problems = Vec::new();
        for (kind, entry) in entries {
            let (runtime, layers) = match entry {
                KindEntry::Runtime(runtime) => (runtime, &[][..]),
                KindEntry::Layered(l) => (&l.runtime, l.layers.as_slice()),
            };
            match Kind::family(kind) {
                None | Some(Kind::Sequence) => problems.push(format!(
                    "kind {kind:?} is not of a family this host runs (nodejs:*, python:*, blackbox, native)"
                )),
                Some(family) if !family.runs_on(runtime) => problems.push(format!(
                    "kind {kind:?} cannot run on {runtime:?} (nodejs:* needs nodejsN.x; python:*, blackbox and native need python3.N)"
                )),
                Some(_) => {
                    if let Err(e) = crate::lambda::function::Runtime::parse(runtime) {
                        problems.push(format!("kind {kind:?}: {e}"));
                        continue;
                    }
                    let mut parsed = Vec::new();
                    for layer in layers {
                        match KindLayer::parse(layer) {
                            Ok(l) => parsed.push(l),
                            Err(e) => problems.push(format!("kind {kind:?}: {e}")),
                        }
                    }
                    let name_of = |l: &KindLayer| match l {
                        KindLayer::Arn(a) => a.name.clone(),
                        KindLayer::Local(n, _) => n.clone(),
                    };
                    if layers.len() > crate::lambda::layer::MAX_FUNCTION_LAYERS {
                        problems.push(format!(
                            "kind {kind:?} names {} layers; a function takes at most {}",
                            layers.len(),
                            crate::lambda::layer::MAX_FUNCTION_LAYERS
                        ));
                    } else if let Some(twice) = parsed
                        .iter()
                        .enumerate()
                        .find(|(i, l)| parsed[..*i].iter().any(|o| name_of(o) == name_of(l)))
                    {
                        problems.push(format!(
                            "kind {kind:?} names layer {} twice",
                            name_of(twice.1)
                        ));
                    } else if parsed.len() == layers.len() {
                        table.runtimes.insert(kind.clone(), runtime.clone());
                        if parsed.is_empty() {
                            table.layers.remove(kind);
                        } else {
                            table.layers.insert(kind.clone(), parsed);
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(table)
        } else {
            Err(problems)
        }
    }

    /// The layers `kind` brings (none for most).
    pub fn layers(&self, kind: &str) -> &[KindLayer] {
        self.layers.get(kind).map_or(&[], Vec::as_slice)
    }

    /// The kind's family and Lambda runtime (`None` for a sequence), or OpenWhisk's error
    /// naming the kinds there are.
    pub fn resolve(&self, kind: &str) -> Result<(Kind, Option<&str>), WhiskError> {
        if kind == "sequence" {
            return Ok((Kind::Sequence, None));
        }
        match (Kind::family(kind), self.runtimes.get(kind)) {
            (Some(family), Some(runtime)) => Ok((family, Some(runtime.as_str()))),
            _ => Err(WhiskError::BadRequest(format!(
                "The specified runtime '{kind}' is not supported by this platform. Valid values are: '{}'.",
                self.kinds().join("', '")
            ))),
        }
    }

    /// Every kind, `sequence` last.
    pub fn kinds(&self) -> Vec<&str> {
        self.runtimes
            .keys()
            .map(String::as_str)
            .chain(std::iter::once("sequence"))
            .collect()
    }
}

/// `exec` as a `PUT` gives it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ExecPut {
    pub kind: String,
    pub code: Option<String>,
    pub binary: Option<bool>,
    pub main: Option<String>,
    pub components: Option<Vec<String>>,
    pub image: Option<String>,
}

/// The body of `PUT /api/v1/namespaces/NS/actions/NAME`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ActionPut {
    pub exec: Option<ExecPut>,
    pub parameters: Option<Vec<KeyValue>>,
    pub annotations: Option<Vec<KeyValue>>,
    pub limits: Option<LimitsPut>,
    pub version: Option<String>,
    pub publish: Option<bool>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// An action's `exec`, as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exec {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<String>,
    #[serde(default)]
    pub binary: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub main: Option<String>,
    /// A sequence's actions, fully qualified (`/NS/NAME`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub components: Option<Vec<String>>,
}

/// An action, as stored and as `GET` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub publish: bool,
    pub exec: Exec,
    pub annotations: Vec<KeyValue>,
    pub parameters: Vec<KeyValue>,
    pub limits: Limits,
    /// Epoch milliseconds of the last write.
    pub updated: u64,
}

impl Action {
    /// The action a `PUT` makes, from `put` over `existing` (an update keeps what the `PUT`
    /// leaves out and bumps the patch version). Checks everything that needs no code run.
    pub fn from_put(
        put: ActionPut,
        existing: Option<&Action>,
        namespace: &str,
        name: &str,
        now_ms: u64,
        kinds: &KindTable,
    ) -> Result<Self, WhiskError> {
        check_name(name)?;
        let exec = match (put.exec, existing) {
            (Some(exec), _) => check_exec(exec, kinds)?,
            (None, Some(old)) => old.exec.clone(),
            (None, None) => {
                return Err(WhiskError::BadRequest(
                    "The request content was malformed: exec is required to create an action."
                        .into(),
                ))
            }
        };
        let base = existing.map_or_else(Limits::default, |a| a.limits);
        let limits = match &put.limits {
            Some(l) => base.apply(l)?,
            None => base,
        };
        let parameters = put
            .parameters
            .or_else(|| existing.map(|a| a.parameters.clone()))
            .unwrap_or_default();
        let annotations = put
            .annotations
            .or_else(|| existing.map(|a| a.annotations.clone()))
            .unwrap_or_default();
        let version = match existing {
            Some(old) => bump_patch(&old.version),
            None => put.version.unwrap_or_else(|| "0.0.1".into()),
        };
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            version,
            publish: put.publish.unwrap_or(false),
            exec,
            annotations,
            parameters,
            limits,
            updated: now_ms,
        })
    }

    /// The family of the action's kind (checked against the table when it was written).
    pub fn kind(&self) -> Result<Kind, WhiskError> {
        Kind::family(&self.exec.kind).ok_or_else(|| {
            WhiskError::Internal(format!("the stored kind '{}' is unknown", self.exec.kind))
        })
    }

    /// The entry point (`main` unless named).
    pub fn main(&self) -> &str {
        self.exec.main.as_deref().unwrap_or("main")
    }

    pub fn annotation(&self, key: &str) -> Option<&Value> {
        self.annotations
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| &kv.value)
    }

    /// Whether `--web true` made this a web action.
    pub fn is_web(&self) -> bool {
        match self.annotation("web-export") {
            Some(Value::Bool(web)) => *web,
            Some(Value::String(web)) => web == "true",
            _ => false,
        }
    }

    /// The default parameters, with `over`'s on top (the invoke's win).
    pub fn merged_parameters(&self, over: Map<String, Value>) -> Map<String, Value> {
        let mut merged: Map<String, Value> = self
            .parameters
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        merged.extend(over);
        merged
    }

    /// The document `GET` returns: with the code, or without (`?code=false`).
    pub fn to_json(&self, with_code: bool) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if !with_code {
            if let Some(exec) = value.get_mut("exec").and_then(Value::as_object_mut) {
                exec.remove("code");
            }
        }
        value
    }

    /// The summary `GET .../actions` lists: no code, no parameters.
    pub fn summary(&self) -> Value {
        json!({
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
            "publish": self.publish,
            "annotations": self.annotations,
            "limits": self.limits,
            "exec": { "kind": self.exec.kind, "binary": self.exec.binary },
            "updated": self.updated,
        })
    }
}

/// OpenWhisk's entity names: a letter, digit or `_` first, then those and `@ . -` and spaces;
/// Lambkin takes the subset a Lambda function name can carry (`[A-Za-z0-9_.-]`, at most
/// [`MAX_NAME_LEN`]), since each action is a Lambda function of the same name behind a prefix.
pub fn check_name(name: &str) -> Result<(), WhiskError> {
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !first_ok || !rest_ok || name.len() > MAX_NAME_LEN {
        return Err(WhiskError::BadRequest(format!(
            "The name of the entity contains illegal characters: '{name}' (on this host: 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 _ . -, not starting with . or -)."
        )));
    }
    Ok(())
}

/// The longest action name: the Lambda name limit (64) less the prefix (`ow-`).
pub const MAX_NAME_LEN: usize = 61;

/// An entry point name: one identifier (`main`, `handler_2`).
fn check_main(main: &str) -> Result<(), WhiskError> {
    let ok = main
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'$')
        && main
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        && main.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err(WhiskError::BadRequest(format!(
            "exec.main '{main}' is not a function name (letters, digits, _ and $)."
        )))
    }
}

fn check_exec(exec: ExecPut, kinds: &KindTable) -> Result<Exec, WhiskError> {
    let (kind, _) = kinds.resolve(&exec.kind)?;
    match kind {
        Kind::Sequence => {
            let components = exec.components.unwrap_or_default();
            if components.is_empty() {
                return Err(WhiskError::BadRequest(
                    "No component specified for the sequence.".into(),
                ));
            }
            if components.len() > 50 {
                return Err(WhiskError::BadRequest(
                    "Too many actions in the sequence.".into(),
                ));
            }
            Ok(Exec {
                kind: exec.kind,
                code: None,
                binary: false,
                main: None,
                components: Some(components),
            })
        }
        Kind::Native => {
            if let Some(image) = exec.image.as_deref() {
                let base = image.split(':').next().unwrap_or(image);
                if !Kind::NATIVE_IMAGES.contains(&base) {
                    return Err(WhiskError::BadRequest(format!(
                        "image '{image}' cannot run here: this host runs no container images; give the executable as exec.code (a script, or a zip holding exec with binary: true)"
                    )));
                }
            }
            let code = exec.code.filter(|c| !c.trim().is_empty()).ok_or_else(|| {
                WhiskError::BadRequest(
                    "The request content was malformed: exec.code (the executable) is required."
                        .into(),
                )
            })?;
            let binary = exec.binary == Some(true);
            if !binary && !code.starts_with("#!") {
                return Err(WhiskError::BadRequest(
                    "a native action's code must be a script starting with #! or a base64 zip holding exec (binary: true)".into(),
                ));
            }
            Ok(Exec {
                kind: exec.kind,
                code: Some(code),
                binary,
                main: exec.main,
                components: None,
            })
        }
        Kind::Node | Kind::Python => {
            let code = exec.code.filter(|c| !c.trim().is_empty()).ok_or_else(|| {
                WhiskError::BadRequest(
                    "The request content was malformed: exec.code is required for this kind."
                        .into(),
                )
            })?;
            if let Some(main) = &exec.main {
                check_main(main)?;
            }
            Ok(Exec {
                kind: exec.kind,
                code: Some(code),
                binary: exec.binary == Some(true),
                main: exec.main,
                components: None,
            })
        }
    }
}

fn bump_patch(version: &str) -> String {
    let mut parts: Vec<u64> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    parts.resize(3, 0);
    parts[2] += 1;
    format!("{}.{}.{}", parts[0], parts[1], parts[2])
}

/// The body of `PUT /api/v1/namespaces/NS/triggers/NAME`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TriggerPut {
    pub parameters: Option<Vec<KeyValue>>,
    pub annotations: Option<Vec<KeyValue>>,
    pub version: Option<String>,
    pub publish: Option<bool>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub limits: Option<Value>,
}

/// A trigger, as stored and returned. The annotation [`Trigger::PUBSUB_TOPIC`] binds it to a
/// local pub/sub topic filter: each message fires it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub publish: bool,
    pub parameters: Vec<KeyValue>,
    pub annotations: Vec<KeyValue>,
    pub limits: Value,
    pub updated: u64,
}

impl Trigger {
    /// The annotation naming the local pub/sub topic filter whose messages fire the trigger.
    pub const PUBSUB_TOPIC: &'static str = "lambkin-pubsub-topic";
    /// The annotation naming the IoT Core (MQTT broker) topic filter whose messages fire it.
    pub const IOTCORE_TOPIC: &'static str = "lambkin-iotcore-topic";

    pub fn from_put(
        put: TriggerPut,
        existing: Option<&Trigger>,
        namespace: &str,
        name: &str,
        now_ms: u64,
    ) -> Result<Self, WhiskError> {
        check_name(name)?;
        let trigger = Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            version: existing.map_or_else(
                || put.version.clone().unwrap_or_else(|| "0.0.1".into()),
                |t| bump_patch(&t.version),
            ),
            publish: put.publish.unwrap_or(false),
            parameters: put
                .parameters
                .or_else(|| existing.map(|t| t.parameters.clone()))
                .unwrap_or_default(),
            annotations: put
                .annotations
                .or_else(|| existing.map(|t| t.annotations.clone()))
                .unwrap_or_default(),
            limits: json!({}),
            updated: now_ms,
        };
        for key in [Self::PUBSUB_TOPIC, Self::IOTCORE_TOPIC] {
            match trigger.annotation(key) {
                None | Some(Value::String(_)) => {}
                Some(other) => {
                    return Err(WhiskError::BadRequest(format!(
                        "annotation {key} must be a topic filter (a string), not {other}"
                    )))
                }
            }
        }
        Ok(trigger)
    }

    fn annotation(&self, key: &str) -> Option<&Value> {
        self.annotations
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| &kv.value)
    }

    /// The local pub/sub topic filter bound to the trigger, if any.
    pub fn pubsub_topic(&self) -> Option<&str> {
        self.annotation(Self::PUBSUB_TOPIC).and_then(Value::as_str)
    }

    /// The IoT Core topic filter bound to the trigger, if any.
    pub fn iotcore_topic(&self) -> Option<&str> {
        self.annotation(Self::IOTCORE_TOPIC).and_then(Value::as_str)
    }

    pub fn merged_parameters(&self, over: Map<String, Value>) -> Map<String, Value> {
        let mut merged: Map<String, Value> = self
            .parameters
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        merged.extend(over);
        merged
    }
}

/// The body of `PUT /api/v1/namespaces/NS/rules/NAME` (`/NS/NAME` references), and of
/// `POST` (`{"status": "active" | "inactive"}`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RulePut {
    pub trigger: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub annotations: Option<Vec<KeyValue>>,
}

/// A rule's trigger or action: `{"name", "path"}` (path: the namespace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    pub name: String,
    pub path: String,
}

/// A rule: its trigger fires its action while it is `active`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub publish: bool,
    pub status: String,
    pub trigger: EntityRef,
    pub action: EntityRef,
    pub annotations: Vec<KeyValue>,
    pub updated: u64,
}

impl Rule {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// `active` or `inactive`, as a rule's status.
pub fn rule_status(status: &str) -> Result<&'static str, WhiskError> {
    match status {
        "active" => Ok("active"),
        "inactive" => Ok("inactive"),
        other => Err(WhiskError::BadRequest(format!(
            "Rule status '{other}' is not 'active' or 'inactive'."
        ))),
    }
}

/// The namespace (if given) and name of a reference: `/NS/NAME`, `NS/NAME` or `NAME`.
pub fn split_reference(reference: &str) -> Result<(Option<&str>, &str), WhiskError> {
    let parts: Vec<&str> = reference.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        [name] => Ok((None, name)),
        [ns, name] | [ns, "default", name] => Ok((Some(ns), name)),
        _ => Err(WhiskError::BadRequest(format!(
            "'{reference}' is not a fully qualified name (packages are not supported)."
        ))),
    }
}

/// OpenWhisk's four outcomes (`ActivationResponse.statusCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Outcome {
    Success = 0,
    ApplicationError = 1,
    DeveloperError = 2,
    WhiskError = 3,
}

impl From<Outcome> for u8 {
    fn from(o: Outcome) -> u8 {
        o as u8
    }
}

impl TryFrom<u8> for Outcome {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            0 => Ok(Self::Success),
            1 => Ok(Self::ApplicationError),
            2 => Ok(Self::DeveloperError),
            3 => Ok(Self::WhiskError),
            _ => Err(format!("status code {v} is not 0-3")),
        }
    }
}

impl Outcome {
    /// `response.status`, as OpenWhisk's `messageForCode`.
    pub fn status(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ApplicationError => "application error",
            Self::DeveloperError => "action developer error",
            Self::WhiskError => "whisk internal error",
        }
    }
}

/// What an activation produced: its outcome and result (`{"error": ...}` unless a success).
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationResponse {
    pub outcome: Outcome,
    pub result: Value,
}

/// OpenWhisk's messages for the failures the platform, not the action, reports.
pub mod messages {
    pub const ABNORMAL_RUN: &str =
        "The action did not produce a valid response and exited unexpectedly.";
    pub const MEMORY_EXHAUSTED: &str = "The action exhausted its memory and was aborted.";
    pub const NOT_A_DICTIONARY: &str = "The action did not return a dictionary.";

    pub fn timed_out(timeout_ms: u64) -> String {
        format!("The action exceeded its time limits of {timeout_ms} milliseconds.")
    }
}

impl ActivationResponse {
    pub fn success(result: Value) -> Self {
        Self {
            outcome: Outcome::Success,
            result,
        }
    }

    pub fn error(outcome: Outcome, error: Value) -> Self {
        Self {
            outcome,
            result: json!({ "error": error }),
        }
    }

    /// `response` as OpenWhisk shows it: `status`, `statusCode`, `success`, `result`.
    pub fn to_json(&self) -> Value {
        json!({
            "status": self.outcome.status(),
            "statusCode": self.outcome as u8,
            "success": self.outcome == Outcome::Success,
            "result": self.result,
        })
    }

    /// Classifies what the function answered. `lambda_error` is `Some((errorType,
    /// errorMessage))` when the Lambda invocation failed (the platform ended it: a timeout, an
    /// exit, or the adapter itself could not run); otherwise `body` is the adapter's answer.
    pub fn classify(
        lambda_error: Option<(&str, &str)>,
        adapter: Option<&AdapterAnswer>,
        timeout_ms: u64,
    ) -> Self {
        let developer = |msg: String| Self::error(Outcome::DeveloperError, Value::String(msg));
        if let Some((error_type, message)) = lambda_error {
            return match error_type {
                "Sandbox.Timedout" => developer(messages::timed_out(timeout_ms)),
                "Runtime.OutOfMemory" => developer(messages::MEMORY_EXHAUSTED.into()),
                "Runtime.ExitError" => developer(messages::ABNORMAL_RUN.into()),
                _ => developer(format!(
                    "The action failed during initialization: {error_type}: {message}"
                )),
            };
        }
        let Some(answer) = adapter else {
            return developer(messages::ABNORMAL_RUN.into());
        };
        match &answer.outcome {
            AdapterOutcome::Returned(value) => match value {
                Value::Object(fields) => match fields.get("error") {
                    Some(error) => Self::error(Outcome::ApplicationError, error.clone()),
                    None => Self::success(value.clone()),
                },
                Value::Array(_) => Self::success(value.clone()),
                _ => developer(messages::NOT_A_DICTIONARY.into()),
            },
            AdapterOutcome::Threw(message) => developer(message.clone()),
            AdapterOutcome::InitFailed(message) => developer(message.clone()),
        }
    }
}

/// What Lambkin's action adapter (the handler every code action's function runs) answers:
/// `{"returned": V}`, `{"threw": "An error has occurred: ..."}` or `{"init": "..."}`, with
/// the activation's `logs` (`[["stdout"|"stderr", epoch ms, text], ...]`), and `init_ms` when
/// this activation loaded the code.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterAnswer {
    pub outcome: AdapterOutcome,
    pub logs: Vec<LogEntry>,
    pub init_ms: Option<u64>,
    /// When the adapter started the activation (epoch ms).
    pub started_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AdapterOutcome {
    Returned(Value),
    Threw(String),
    InitFailed(String),
}

/// One line of an activation's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: Stream,
    pub time_ms: u64,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl LogEntry {
    /// OpenWhisk's log line: `2026-12-07T03:14:40.123Z stdout: text`.
    pub fn to_line(&self) -> String {
        let stream = match self.stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        format!("{} {stream}: {}", iso_millis(self.time_ms), self.text)
    }
}

impl AdapterAnswer {
    pub fn parse(body: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let obj = value.as_object()?;
        let outcome = if let Some(v) = obj.get("returned") {
            AdapterOutcome::Returned(v.clone())
        } else if let Some(Value::String(s)) = obj.get("threw") {
            AdapterOutcome::Threw(s.clone())
        } else if let Some(Value::String(s)) = obj.get("init") {
            AdapterOutcome::InitFailed(s.clone())
        } else {
            return None;
        };
        let logs = obj
            .get("logs")
            .and_then(Value::as_array)
            .map(|lines| {
                lines
                    .iter()
                    .filter_map(|l| {
                        let l = l.as_array()?;
                        let stream = match l.first()?.as_str()? {
                            "stderr" => Stream::Stderr,
                            _ => Stream::Stdout,
                        };
                        Some(LogEntry {
                            stream,
                            time_ms: l.get(1)?.as_u64()?,
                            text: l.get(2)?.as_str()?.to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            outcome,
            logs,
            init_ms: obj.get("init_ms").and_then(Value::as_u64),
            started_ms: obj.get("started_ms").and_then(Value::as_u64),
        })
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of epoch milliseconds.
pub fn iso_millis(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let (y, m, d) = crate::calendar::civil_from_days(days);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// An activation record, as OpenWhisk returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub subject: String,
    pub activation_id: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub response: ActivationResponse,
    pub logs: Vec<String>,
    pub annotations: Vec<KeyValue>,
}

impl Activation {
    pub fn duration_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.start_ms)
    }

    /// The whole record (`GET .../activations/ID`, and what is kept on disk).
    pub fn to_json(&self) -> Value {
        json!({
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
            "subject": self.subject,
            "activationId": self.activation_id,
            "start": self.start_ms,
            "end": self.end_ms,
            "duration": self.duration_ms(),
            "statusCode": self.response.outcome as u8,
            "response": self.response.to_json(),
            "logs": self.logs,
            "annotations": self.annotations,
            "publish": false,
        })
    }

    /// A list entry: the record without its result and logs.
    pub fn summary(&self) -> Value {
        json!({
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
            "subject": self.subject,
            "activationId": self.activation_id,
            "start": self.start_ms,
            "end": self.end_ms,
            "duration": self.duration_ms(),
            "statusCode": self.response.outcome as u8,
            "annotations": self.annotations,
            "publish": false,
        })
    }

    /// Reads back what [`Activation::to_json`] wrote.
    pub fn from_json(value: &Value) -> Option<Self> {
        let s = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        let response = value.get("response")?;
        let code = response.get("statusCode").and_then(Value::as_u64)?;
        Some(Self {
            namespace: s("namespace")?,
            name: s("name")?,
            version: s("version").unwrap_or_default(),
            subject: s("subject").unwrap_or_default(),
            activation_id: s("activationId")?,
            start_ms: value.get("start").and_then(Value::as_u64)?,
            end_ms: value.get("end").and_then(Value::as_u64)?,
            response: ActivationResponse {
                outcome: Outcome::try_from(u8::try_from(code).ok()?).ok()?,
                result: response.get("result").cloned().unwrap_or(Value::Null),
            },
            logs: serde_json::from_value(value.get("logs")?.clone()).ok()?,
            annotations: serde_json::from_value(value.get("annotations")?.clone()).ok()?,
        })
    }
}

/// The query of `GET .../activations` (and `GET .../actions`: `limit`, `skip`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListQuery {
    pub name: Option<String>,
    pub limit: usize,
    pub skip: usize,
    pub since: Option<u64>,
    pub upto: Option<u64>,
    pub docs: bool,
    /// `count=true`: the number of matches (`{"COLLECTION": N}`), not the list.
    pub count: bool,
}

impl ListQuery {
    pub const DEFAULT_LIMIT: usize = 30;
    pub const MAX_LIMIT: usize = 200;

    /// Parses a decoded query's pairs for `collection` (`actions`, `activations`).
    pub fn parse(pairs: &[(String, String)], collection: &str) -> Result<Self, WhiskError> {
        let mut q = Self {
            limit: Self::DEFAULT_LIMIT,
            ..Self::default()
        };
        let integer = |v: &str| {
            v.parse::<u64>().map_err(|_| {
                WhiskError::BadRequest(format!(
                    "The value '{v}' is not an integer for {collection}."
                ))
            })
        };
        for (k, v) in pairs {
            match k.as_str() {
                "name" => q.name = Some(v.trim_start_matches('/').to_owned()),
                "limit" => {
                    let n = integer(v)? as usize;
                    if n > Self::MAX_LIMIT {
                        return Err(WhiskError::BadRequest(format!(
                            "The value '{v}' is not in the range of 0 to {} for {collection}.",
                            Self::MAX_LIMIT
                        )));
                    }
                    q.limit = if n == 0 { Self::MAX_LIMIT } else { n };
                }
                "skip" => q.skip = integer(v)? as usize,
                "since" => q.since = Some(integer(v)?),
                "upto" => q.upto = Some(integer(v)?),
                "docs" => q.docs = v == "true",
                "count" => q.count = v == "true",
                _ => {}
            }
        }
        // `name` may be `package/action` or a path with the namespace in front: the action's
        // own name is the last segment.
        if let Some(name) = q.name.as_mut() {
            if let Some((_, last)) = name.rsplit_once('/') {
                *name = last.to_owned();
            }
        }
        Ok(q)
    }
}

/// The `UUID:KEY` of `Authorization: Basic base64(UUID:KEY)`, if the header is one.
pub fn basic_credentials(header: &str) -> Option<String> {
    use base64::Engine;
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    String::from_utf8(decoded).ok()
}

/// Every refusal of the OpenWhisk API, each with its status and OpenWhisk's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhiskError {
    #[error("The resource requires authentication, which was not supplied with the request")]
    NoCredentials,
    #[error("The supplied authentication is invalid")]
    BadCredentials,
    #[error("The supplied authentication is not authorized to access this resource.")]
    Forbidden,
    #[error("{0}")]
    Refused(String),
    #[error("The requested resource does not exist.")]
    NotFound,
    #[error("resource already exists")]
    AlreadyExists,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("The request content was malformed: {0}")]
    Malformed(String),
    #[error("The request is too large: {0}")]
    TooLarge(String),
    #[error("Method not allowed.")]
    MethodNotAllowed,
    #[error("Too many requests in the last minute: {0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Internal(String),
    #[error(
        "The server is currently unavailable (because it is overloaded or down for maintenance)."
    )]
    Unavailable,
}

impl WhiskError {
    pub fn status(&self) -> u16 {
        match self {
            Self::NoCredentials | Self::BadCredentials => 401,
            Self::Forbidden | Self::Refused(_) => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::AlreadyExists | Self::Conflict(_) => 409,
            Self::BadRequest(_) | Self::Malformed(_) => 400,
            Self::TooLarge(_) => 413,
            Self::TooManyRequests(_) => 429,
            Self::Internal(_) => 500,
            Self::Unavailable => 503,
        }
    }

    /// OpenWhisk's error body; `code` is the request's transaction id.
    pub fn body(&self, code: &str) -> Value {
        json!({ "error": self.to_string(), "code": code })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kinds_map_to_lambda_runtimes() {
        let table = KindTable::default();
        let rt = |k: &str| table.resolve(k).unwrap();
        assert_eq!(rt("nodejs:20"), (Kind::Node, Some("nodejs20.x")));
        assert_eq!(rt("nodejs:default"), (Kind::Node, Some("nodejs20.x")));
        assert_eq!(rt("python:3.11"), (Kind::Python, Some("python3.11")));
        assert_eq!(rt("python:3"), (Kind::Python, Some("python3.12")));
        assert_eq!(rt("sequence"), (Kind::Sequence, None));
        assert_eq!(rt("blackbox"), (Kind::Native, Some("python3.12")));
        for bad in ["java:8", "nodejs:6", "python:2", "nodejs", ""] {
            let e = table.resolve(bad).unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(
                e.to_string()
                    .starts_with(&format!("The specified runtime '{bad}' is not supported")),
                "{e}"
            );
        }
    }

    #[test]
    fn the_kind_table_takes_entries_of_known_families() {
        let entries = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, KindEntry> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), KindEntry::Runtime(v.to_string())))
                .collect()
        };
        let table = KindTable::with(&entries(&[
            ("nodejs:24", "nodejs22.x"),
            ("python:3", "python3.11"),
        ]))
        .unwrap();
        assert_eq!(
            table.resolve("nodejs:24").unwrap(),
            (Kind::Node, Some("nodejs22.x"))
        );
        assert_eq!(
            table.resolve("python:3").unwrap(),
            (Kind::Python, Some("python3.11"))
        );
        assert!(table.kinds().contains(&"nodejs:24"));
        let problems = KindTable::with(&entries(&[
            ("java:8", "java8"),
            ("nodejs:24", "python3.12"),
            ("python:3.99", "python3.99"),
            ("sequence", "nodejs20.x"),
        ]))
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn a_kind_may_bring_layers_by_arn_or_name_and_version() {
        let layered = |layers: &[&str]| {
            let mut entries = std::collections::BTreeMap::new();
            entries.insert(
                "nodejs:10".to_owned(),
                KindEntry::Layered(LayeredKind {
                    runtime: "nodejs20.x".into(),
                    layers: layers.iter().map(|l| l.to_string()).collect(),
                }),
            );
            KindTable::with(&entries)
        };
        let table = layered(&[
            "node10:3",
            "arn:aws:lambda:us-east-1:123456789012:layer:tools:1",
        ])
        .unwrap();
        assert_eq!(table.resolve("nodejs:10").unwrap().1, Some("nodejs20.x"));
        assert_eq!(table.layers("nodejs:10").len(), 2);
        assert!(table.layers("nodejs:20").is_empty());
        for (bad, says) in [
            (&["node10"][..], "names no version"),
            (&["node10:0"][..], "neither a layer version ARN"),
            (&["a/b:1"][..], "neither a layer version ARN"),
            (
                &["arn:aws:lambda:x:1:layer:a:1"][..],
                "not a layer version ARN",
            ),
            (&["a:1", "a:2"][..], "names layer a twice"),
            (&["a:1", "b:1", "c:1", "d:1", "e:1", "f:1"][..], "at most 5"),
        ] {
            let problems = layered(bad).unwrap_err();
            assert!(
                problems.iter().any(|p| p.contains(says)),
                "{bad:?}: {problems:?}"
            );
        }
        let parsed: std::collections::BTreeMap<String, KindEntry> = serde_json::from_value(
            json!({"nodejs:10": {"runtime": "nodejs20.x", "layers": ["n:1"]}, "nodejs:24": "nodejs22.x"}),
        )
        .unwrap();
        assert!(KindTable::with(&parsed).is_ok());
        assert!(serde_json::from_value::<KindEntry>(
            json!({"runtime": "nodejs20.x", "layers": [], "image": "x"})
        )
        .is_err());
    }

    fn put(body: Value) -> ActionPut {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn an_update_keeps_what_it_leaves_out_and_bumps_the_version() {
        let first = Action::from_put(
            put(
                json!({"exec": {"kind": "nodejs:20", "code": "function main(){}"},
                       "parameters": [{"key": "a", "value": 1}],
                       "limits": {"timeout": 3000}}),
            ),
            None,
            "guest",
            "hello",
            1,
            &KindTable::default(),
        )
        .unwrap();
        assert_eq!(first.version, "0.0.1");
        assert_eq!(first.limits.timeout, 3000);
        assert_eq!(first.limits.memory, 256);
        let second = Action::from_put(
            put(json!({"limits": {"memory": 512}})),
            Some(&first),
            "guest",
            "hello",
            2,
            &KindTable::default(),
        )
        .unwrap();
        assert_eq!(second.version, "0.0.2");
        assert_eq!(second.exec, first.exec);
        assert_eq!(second.parameters, first.parameters);
        assert_eq!((second.limits.timeout, second.limits.memory), (3000, 512));
        assert!(second.to_json(false)["exec"].get("code").is_none());
        assert!(second.to_json(true)["exec"]["code"].is_string());
    }

    #[test]
    fn bad_actions_are_refused_with_a_reason() {
        let bad = |body: Value, name: &str| {
            Action::from_put(put(body), None, "guest", name, 0, &KindTable::default())
                .unwrap_err()
                .to_string()
        };
        let code = json!({"kind": "nodejs:20", "code": "x"});
        assert!(bad(json!({}), "a").contains("exec is required"));
        assert!(bad(json!({"exec": code}), "a b").contains("illegal characters"));
        assert!(bad(json!({"exec": code}), "-a").contains("illegal characters"));
        assert!(bad(json!({"exec": {"kind": "nodejs:20"}}), "a").contains("exec.code"));
        assert!(bad(
            json!({"exec": {"kind": "nodejs:20", "code": "x", "main": "a.b()"}}),
            "a"
        )
        .contains("exec.main"));
        assert!(bad(json!({"exec": code, "limits": {"timeout": 50}}), "a").contains("timeout 50"));
        assert_eq!(
            bad(json!({"exec": code, "limits": {"concurrency": 0}}), "a"),
            "The request content was malformed: concurrency 0 below allowed threshold of 1"
        );
        assert_eq!(
            bad(json!({"exec": code, "limits": {"concurrency": 501}}), "a"),
            "The request content was malformed: concurrency 501 exceeds allowed threshold of 500"
        );
        let kept = Action::from_put(
            put(json!({"exec": code, "limits": {"concurrency": 500}})),
            None,
            "guest",
            "a",
            0,
            &KindTable::default(),
        )
        .unwrap();
        assert_eq!(kept.limits.concurrency, 500);
        assert_eq!(kept.to_json(false)["limits"]["concurrency"], 500);
        assert!(
            bad(json!({"exec": {"kind": "sequence", "components": []}}), "a")
                .contains("No component")
        );
    }

    #[test]
    fn outcomes_follow_openwhisk() {
        let answer = |outcome| AdapterAnswer {
            outcome,
            logs: vec![],
            init_ms: None,
            started_ms: None,
        };
        let c = |a: AdapterOutcome| ActivationResponse::classify(None, Some(&answer(a)), 1000);
        let ok = c(AdapterOutcome::Returned(json!({"x": 1})));
        assert_eq!(ok.to_json()["status"], "success");
        assert_eq!(ok.to_json()["statusCode"], 0);
        let app = c(AdapterOutcome::Returned(json!({"error": "no"})));
        assert_eq!(
            app.to_json(),
            json!({"status": "application error", "statusCode": 1, "success": false,
                   "result": {"error": "no"}})
        );
        let threw = c(AdapterOutcome::Threw(
            "An error has occurred: Error: x".into(),
        ));
        assert_eq!(threw.outcome, Outcome::DeveloperError);
        assert_eq!(threw.to_json()["status"], "action developer error");
        assert_eq!(
            c(AdapterOutcome::Returned(json!(3))).result["error"],
            messages::NOT_A_DICTIONARY
        );
        let timeout = ActivationResponse::classify(Some(("Sandbox.Timedout", "x")), None, 1500);
        assert_eq!(
            timeout.result["error"],
            "The action exceeded its time limits of 1500 milliseconds."
        );
        let exit = ActivationResponse::classify(Some(("Runtime.ExitError", "x")), None, 1);
        assert_eq!(exit.result["error"], messages::ABNORMAL_RUN);
        assert_eq!(exit.outcome, Outcome::DeveloperError);
    }

    #[test]
    fn the_adapter_answer_and_log_lines() {
        let a = AdapterAnswer::parse(
            br#"{"returned":{"a":1},"logs":[["stdout",1786072480123,"hi"],["stderr",0,"e"]],"init_ms":5}"#,
        )
        .unwrap();
        assert_eq!(a.outcome, AdapterOutcome::Returned(json!({"a": 1})));
        assert_eq!(a.init_ms, Some(5));
        assert_eq!(a.logs[0].to_line(), "2026-08-07T03:14:40.123Z stdout: hi");
        assert_eq!(a.logs[1].to_line(), "1970-01-01T00:00:00.000Z stderr: e");
        assert!(AdapterAnswer::parse(b"{\"errorType\":\"x\"}").is_none());
    }

    #[test]
    fn activation_records_read_back() {
        let a = Activation {
            namespace: "guest".into(),
            name: "hello".into(),
            version: "0.0.1".into(),
            subject: "guest".into(),
            activation_id: "abc".into(),
            start_ms: 10,
            end_ms: 25,
            response: ActivationResponse::success(json!({"x": 1})),
            logs: vec!["l".into()],
            annotations: vec![KeyValue {
                key: "kind".into(),
                value: json!("nodejs:20"),
            }],
        };
        let v = a.to_json();
        assert_eq!(v["duration"], 15);
        assert_eq!(Activation::from_json(&v).unwrap(), a);
        assert!(a.summary().get("response").is_none());
    }

    #[test]
    fn list_queries_and_credentials() {
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let q = ListQuery::parse(
            &pairs(&[("name", "guest/hello"), ("limit", "5"), ("since", "7")]),
            "activations",
        )
        .unwrap();
        assert_eq!(
            (q.name.as_deref(), q.limit, q.since),
            (Some("hello"), 5, Some(7))
        );
        assert_eq!(
            ListQuery::parse(&pairs(&[("limit", "201")]), "activations")
                .unwrap_err()
                .to_string(),
            "The value '201' is not in the range of 0 to 200 for activations."
        );
        assert_eq!(
            basic_credentials("Basic dXVpZDprZXk=").as_deref(),
            Some("uuid:key")
        );
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(
            WhiskError::BadCredentials.body("t"),
            json!({"error": "The supplied authentication is invalid", "code": "t"})
        );
    }
}
