//! A Greengrass Lambda component as the function it defines (`greengrass-reference.md`
//! §1.2–1.3): its recipe's `Setenv` and its configuration (`pinned`, `timeoutInSeconds`,
//! `maxInstancesCount`, `containerMode`, `containerParams`, …) turned into a
//! [`FunctionConfig`], and `containerMode`/`containerParams` into an [`Isolation`]; its
//! `pubsubTopics` into the [`EventSource`]s that trigger it.
//!
//! Every decision about values is made here; what only the device can tell (a volume's source
//! exists, a device is a device node, the host can make containers, a layer ARN names a layer
//! it has) is left to the host. A value of the wrong type or out of range is refused naming
//! its key, and every such problem is named at once.
//!
//! Greengrass sends numbers as floats (`"memorySize": 16384.0`) and booleans sometimes as the
//! strings `"true"`/`"false"`; both are accepted. `null` is a key left out. Lists
//! (`volumes`, `devices`) arrive as objects keyed `"0"`, `"1"`, …; arrays are accepted too.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::lambda::function::{
    Access, ContainerParams, Delegation, DelegationPolicy, Device, FunctionConfig, FunctionError,
    FunctionName, GreengrassSettings, Isolation, PayloadEncoding, Runtime, Volume,
};

/// The `Setenv` variable that names the function's runtime.
pub const RUNTIME_VARIABLE: &str = "AWS_GREENGRASS_LAMBDA_RUNTIME";
/// The `Setenv` variable that names the function's handler.
pub const HANDLER_VARIABLE: &str = "AWS_GREENGRASS_LAMBDA_FUNCTION_HANDLER";

/// The largest `containerParams.memorySize`, in KB: Lambda's largest function, 10240 MB.
pub const MAX_MEMORY_SIZE_KIB: u64 = *FunctionConfig::MEMORY_SIZE_MB.end() as u64 * 1024;

/// What a Lambda component brings to its function: its name, its recipe's lifecycle `Setenv`,
/// its description and its effective configuration.
#[derive(Debug, Clone, Copy)]
pub struct LambdaComponent<'a> {
    pub name: &'a str,
    pub setenv: &'a BTreeMap<String, String>,
    pub description: Option<&'a str>,
    pub configuration: &'a Value,
}

/// The function a Lambda component defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaFunction {
    pub name: FunctionName,
    /// Validated; its `layers` are empty: the host resolves [`layers`](Self::layers) into them.
    pub config: FunctionConfig,
    /// `layers`: layer version ARNs, in order, to be laid over `/opt`.
    pub layers: Vec<String>,
}

/// One setting that cannot be used, and the key it is at (`containerParams.volumes.0.permission`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub key: String,
    pub problem: SettingProblem,
}

/// What is wrong with a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingProblem {
    /// Not of the kind the key takes; `value` is the JSON given.
    NotA {
        value: String,
        expected: &'static str,
    },
    /// Of the right kind, outside what the key allows.
    OutOfRange { value: String, rule: String },
    /// An entry without a member it needs.
    Missing(&'static str),
    /// A name or runtime the function model refuses.
    Refused(FunctionError),
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match &self.problem {
            SettingProblem::NotA { value, expected } => {
                write!(f, "{key} {value} is not {expected}")
            }
            SettingProblem::OutOfRange { value, rule } => {
                write!(f, "{key} {value} is out of range: {rule}")
            }
            SettingProblem::Missing(what) => write!(f, "{key} has no {what}"),
            SettingProblem::Refused(e) => write!(f, "{key}: {e}"),
        }
    }
}

impl std::error::Error for SettingError {}

/// Why a Lambda component defines no function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LambdaComponentError {
    /// Settings that cannot be read, each naming its key.
    #[error("{}", join(.0))]
    Settings(Vec<SettingError>),
    /// Settings read, but the function they make breaks the model's rules
    /// ([`FunctionConfig::validate`]: handler, environment, container paths and memory).
    #[error(transparent)]
    Function(FunctionError),
}

impl LambdaComponentError {
    /// The settings named, when the problem is with settings.
    pub fn settings(&self) -> &[SettingError] {
        match self {
            Self::Settings(problems) => problems,
            Self::Function(_) => &[],
        }
    }
}

fn join(problems: &[SettingError]) -> String {
    problems
        .iter()
        .map(SettingError::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The function a Lambda component defines, validated. Defaults are Greengrass's
/// ([`GreengrassSettings::default`], `timeoutInSeconds` 3, `memorySize` 16384 KB); the
/// function's `MemorySize` is `memorySize` in whole MB, at least Lambda's 128.
pub fn function(component: &LambdaComponent<'_>) -> Result<LambdaFunction, LambdaComponentError> {
    let mut problems = Vec::new();
    let name = FunctionName::parse(component.name)
        .map_err(|e| problems.push(refused("ComponentName", e)))
        .ok();
    let runtime = match component.setenv.get(RUNTIME_VARIABLE) {
        None => {
            problems.push(SettingError {
                key: "Setenv".into(),
                problem: SettingProblem::Missing(RUNTIME_VARIABLE),
            });
            None
        }
        Some(id) => Runtime::parse(id)
            .map_err(|e| problems.push(refused(&format!("Setenv.{RUNTIME_VARIABLE}"), e)))
            .ok(),
    };
    let config = Reader {
        root: component.configuration,
        problems: &mut problems,
    }
    .settings();
    match (name, runtime, problems.is_empty()) {
        (Some(name), Some(runtime), true) => {
            let function = FunctionConfig {
                runtime,
                handler: component.setenv.get(HANDLER_VARIABLE).cloned(),
                timeout_seconds: config.timeout_seconds,
                timeout_ms: None,
                memory_size_mb: config.memory_size_mb,
                environment: config.environment,
                description: component.description.unwrap_or_default().to_owned(),
                role: String::new(),
                greengrass: config.greengrass,
                layers: Vec::new(),
            };
            function
                .validate()
                .map_err(LambdaComponentError::Function)?;
            Ok(LambdaFunction {
                name,
                config: function,
                layers: config.layers,
            })
        }
        _ => Err(LambdaComponentError::Settings(problems)),
    }
}

/// A Lambda component's isolation (`containerMode`, default `GreengrassContainer`, and
/// `containerParams`), with the problems found reading it. What could be read is returned
/// even when something could not, so a caller can check the rest on the device and name
/// every problem at once. The container's paths and memory are checked by the model
/// ([`FunctionConfig::validate`]).
pub fn isolation(configuration: &Value) -> (Isolation, Vec<SettingError>) {
    let mut problems = Vec::new();
    let isolation = Reader {
        root: configuration,
        problems: &mut problems,
    }
    .isolation();
    (isolation, problems)
}

fn refused(key: &str, e: FunctionError) -> SettingError {
    SettingError {
        key: key.to_owned(),
        problem: SettingProblem::Refused(e),
    }
}

/// The settings read from a configuration.
struct Settings {
    greengrass: GreengrassSettings,
    timeout_seconds: u32,
    memory_size_mb: u32,
    environment: BTreeMap<String, String>,
    layers: Vec<String>,
}

/// Reads values at keys, noting every problem.
struct Reader<'a, 'p> {
    root: &'a Value,
    problems: &'p mut Vec<SettingError>,
}

impl<'a> Reader<'a, '_> {
    fn settings(&mut self) -> Settings {
        let defaults = GreengrassSettings::default();
        let contained = self.contained();
        // Read in both modes: a NoContainer function has no limit but still reports a size.
        let params = self.container_params();
        let memory_size_kib = self
            .memory_size_kib(params)
            .unwrap_or(ContainerParams::DEFAULT_MEMORY_SIZE_KIB);
        let isolation = if contained {
            Isolation::GreengrassContainer(self.container(params, memory_size_kib))
        } else {
            Isolation::NoContainer
        };
        let greengrass = GreengrassSettings {
            pinned: self
                .boolean(self.root, "pinned", "pinned")
                .ok()
                .flatten()
                .unwrap_or(defaults.pinned),
            max_instances_count: self.count("maxInstancesCount", defaults.max_instances_count),
            max_queue_size: self.count("maxQueueSize", defaults.max_queue_size),
            max_idle_time_in_seconds: self
                .count("maxIdleTimeInSeconds", defaults.max_idle_time_in_seconds),
            status_timeout_in_seconds: self
                .count("statusTimeoutInSeconds", defaults.status_timeout_in_seconds),
            input_payload_encoding_type: self.encoding(),
            isolation,
            delegation: self.delegation(),
        };
        // At most MAX_MEMORY_SIZE_KIB, so the quotient fits.
        let memory_size_mb = u32::try_from(memory_size_kib.div_ceil(1024)).unwrap_or(u32::MAX);
        Settings {
            greengrass,
            timeout_seconds: self.timeout_seconds(),
            memory_size_mb: memory_size_mb.max(*FunctionConfig::MEMORY_SIZE_MB.start()),
            environment: self.environment(),
            layers: self.layers(),
        }
    }

    fn isolation(&mut self) -> Isolation {
        if !self.contained() {
            return Isolation::NoContainer;
        }
        let params = self.container_params();
        let memory_size_kib = self
            .memory_size_kib(params)
            .unwrap_or(ContainerParams::DEFAULT_MEMORY_SIZE_KIB);
        Isolation::GreengrassContainer(self.container(params, memory_size_kib))
    }

    /// Whether `containerMode` asks for a container (the default); a bad mode is named and
    /// makes none.
    fn contained(&mut self) -> bool {
        match present(self.root.get("containerMode")) {
            None => true,
            Some(Value::String(s)) if s == "GreengrassContainer" => true,
            Some(Value::String(s)) if s == "NoContainer" => false,
            Some(v) => {
                self.not_a(
                    "containerMode",
                    v,
                    "one of GreengrassContainer, NoContainer",
                );
                false
            }
        }
    }

    /// The container's settings but its memory. An entry with a problem is left out.
    fn container(&mut self, params: Option<&'a Value>, memory_size_kib: u64) -> ContainerParams {
        let mount_ro_sysfs = match params {
            Some(p) => self
                .boolean(p, "mountROSysfs", "containerParams.mountROSysfs")
                .ok()
                .flatten()
                .unwrap_or(false),
            None => false,
        };
        let mut volumes = Vec::new();
        for (index, entry) in self.entries(params, "volumes") {
            let at = format!("containerParams.volumes.{index}");
            let Some(source) = entry.get("sourcePath").and_then(Value::as_str) else {
                self.missing(&at, "sourcePath");
                continue;
            };
            let destination = match present(entry.get("destinationPath")) {
                None => Ok(source.to_owned()),
                Some(Value::String(d)) => Ok(d.clone()),
                Some(v) => Err(self.not_a(&format!("{at}.destinationPath"), v, "a path")),
            };
            let permission = self.permission(entry, &at);
            let add_group_owner =
                self.boolean(entry, "addGroupOwner", &format!("{at}.addGroupOwner"));
            if let (Ok(destination), Ok(permission), Ok(add_group_owner)) =
                (destination, permission, add_group_owner)
            {
                volumes.push(Volume {
                    source: source.to_owned(),
                    destination,
                    permission,
                    add_group_owner: add_group_owner.unwrap_or(false),
                });
            }
        }
        let mut devices = Vec::new();
        for (index, entry) in self.entries(params, "devices") {
            let at = format!("containerParams.devices.{index}");
            let Some(path) = entry.get("path").and_then(Value::as_str) else {
                self.missing(&at, "path");
                continue;
            };
            let permission = self.permission(entry, &at);
            let add_group_owner =
                self.boolean(entry, "addGroupOwner", &format!("{at}.addGroupOwner"));
            if let (Ok(permission), Ok(add_group_owner)) = (permission, add_group_owner) {
                devices.push(Device {
                    path: path.to_owned(),
                    permission,
                    add_group_owner: add_group_owner.unwrap_or(false),
                });
            }
        }
        ContainerParams {
            memory_size_kib,
            mount_ro_sysfs,
            volumes,
            devices,
        }
    }

    /// `containerParams`, when it is an object.
    fn container_params(&mut self) -> Option<&'a Value> {
        match present(self.root.get("containerParams")) {
            None => None,
            Some(v @ Value::Object(_)) => Some(v),
            Some(v) => {
                self.not_a("containerParams", v, "an object");
                None
            }
        }
    }

    /// `containerParams.memorySize` in KB, fractions rounded up; `None` when absent or bad
    /// (then named).
    fn memory_size_kib(&mut self, params: Option<&Value>) -> Option<u64> {
        let key = "containerParams.memorySize";
        let value = present(params?.get("memorySize"))?;
        let Some(kib) = value.as_f64().filter(|n| n.is_finite() && *n >= 0.0) else {
            self.not_a(key, value, "a number of KB");
            return None;
        };
        if kib > MAX_MEMORY_SIZE_KIB as f64 {
            self.out_of_range(
                key,
                value,
                format!("it must be at most {MAX_MEMORY_SIZE_KIB} KB (10240 MB)"),
            );
            return None;
        }
        // Within range: rounded up, it converts exactly.
        Some(kib.ceil() as u64)
    }

    fn timeout_seconds(&mut self) -> u32 {
        let key = "timeoutInSeconds";
        let Some(seconds) = self.whole_number(key) else {
            return FunctionConfig::DEFAULT_TIMEOUT_SECONDS;
        };
        match u32::try_from(seconds) {
            Ok(s) if FunctionConfig::TIMEOUT_SECONDS.contains(&s) => s,
            _ => {
                let rule = format!(
                    "Timeout must be between {} and {} seconds",
                    FunctionConfig::TIMEOUT_SECONDS.start(),
                    FunctionConfig::TIMEOUT_SECONDS.end()
                );
                self.problems.push(SettingError {
                    key: key.into(),
                    problem: SettingProblem::OutOfRange {
                        value: seconds.to_string(),
                        rule,
                    },
                });
                FunctionConfig::DEFAULT_TIMEOUT_SECONDS
            }
        }
    }

    /// A count or a number of seconds at the top level: a whole number from 1 to `u32::MAX`.
    fn count(&mut self, key: &str, default: u32) -> u32 {
        let Some(n) = self.whole_number(key) else {
            return default;
        };
        match u32::try_from(n) {
            Ok(n) if n >= 1 => n,
            _ => {
                self.problems.push(SettingError {
                    key: key.into(),
                    problem: SettingProblem::OutOfRange {
                        value: n.to_string(),
                        rule: format!("it must be between 1 and {}", u32::MAX),
                    },
                });
                default
            }
        }
    }

    /// A top-level whole number (`3` or `3.0`); `None` when absent or not one (then named).
    fn whole_number(&mut self, key: &str) -> Option<u64> {
        let value = present(self.root.get(key))?;
        if let Some(n) = value.as_u64() {
            return Some(n);
        }
        match value.as_f64() {
            // 2^64 and beyond do not fit; below, a whole float converts exactly.
            Some(n)
                if n.is_finite()
                    && n >= 0.0
                    && n.fract() == 0.0
                    && n < 18_446_744_073_709_551_616.0 =>
            {
                Some(n as u64)
            }
            _ => {
                self.not_a(key, value, "a whole number");
                None
            }
        }
    }

    fn encoding(&mut self) -> PayloadEncoding {
        let key = "inputPayloadEncodingType";
        match present(self.root.get(key)) {
            None => PayloadEncoding::default(),
            Some(Value::String(s)) if s == "json" => PayloadEncoding::Json,
            Some(Value::String(s)) if s == "binary" => PayloadEncoding::Binary,
            Some(v) => {
                self.not_a(key, v, "json or binary");
                PayloadEncoding::default()
            }
        }
    }

    /// `delegation`: `{"policy", "target", "functionName", "qualifier",
    /// "overflowQueueThreshold"}`; the model checks the values it reads
    /// ([`FunctionConfig::validate`]).
    fn delegation(&mut self) -> Delegation {
        let key = "delegation";
        let object = match present(self.root.get(key)) {
            None => return Delegation::default(),
            Some(v @ Value::Object(_)) => v,
            Some(v) => {
                self.not_a(key, v, "an object");
                return Delegation::default();
            }
        };
        let mut delegation = Delegation::default();
        if let Some(map) = object.as_object() {
            for (member, value) in map {
                let at = format!("{key}.{member}");
                if value.is_null() {
                    continue;
                }
                match member.as_str() {
                    "policy" => match value.as_str().and_then(DelegationPolicy::parse) {
                        Some(policy) => delegation.policy = policy,
                        None => {
                            self.not_a(&at, value, "one of local, remote, overflow, remote-first");
                        }
                    },
                    "target" | "functionName" | "qualifier" => match value.as_str() {
                        Some(text) => {
                            let slot = match member.as_str() {
                                "target" => &mut delegation.target,
                                "functionName" => &mut delegation.function_name,
                                _ => &mut delegation.qualifier,
                            };
                            *slot = Some(text.to_owned());
                        }
                        None => {
                            self.not_a(&at, value, "a string");
                        }
                    },
                    "overflowQueueThreshold" => {
                        match value.as_f64().filter(|n| n.fract() == 0.0 && *n >= 0.0) {
                            Some(n) if n <= f64::from(u32::MAX) => {
                                // Whole and in range: the conversion is exact.
                                delegation.overflow_queue_threshold = n as u32;
                            }
                            _ => {
                                self.not_a(&at, value, "a whole number of at least 0");
                            }
                        }
                    }
                    _ => self.out_of_range(
                        &at,
                        value,
                        "delegation takes policy, target, functionName, qualifier and \
                         overflowQueueThreshold"
                            .into(),
                    ),
                }
            }
        }
        delegation
    }

    /// `lambdaExecutionParameters.EnvironmentVariables`: strings as they are, other values as
    /// their JSON text.
    fn environment(&mut self) -> BTreeMap<String, String> {
        let parameters = match present(self.root.get("lambdaExecutionParameters")) {
            None => return BTreeMap::new(),
            Some(v @ Value::Object(_)) => v,
            Some(v) => {
                self.not_a("lambdaExecutionParameters", v, "an object");
                return BTreeMap::new();
            }
        };
        match present(parameters.get("EnvironmentVariables")) {
            None => BTreeMap::new(),
            Some(Value::Object(variables)) => variables
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect(),
            Some(v) => {
                self.not_a(
                    "lambdaExecutionParameters.EnvironmentVariables",
                    v,
                    "an object",
                );
                BTreeMap::new()
            }
        }
    }

    /// `layers` (Lambkin's key): a list of layer version ARNs.
    fn layers(&mut self) -> Vec<String> {
        let Some(value) = present(self.root.get("layers")) else {
            return Vec::new();
        };
        let arns: Option<Vec<String>> = value.as_array().and_then(|items| {
            items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect()
        });
        arns.unwrap_or_else(|| {
            self.not_a("layers", value, "a list of layer version ARNs");
            Vec::new()
        })
    }

    /// The entries of `containerParams.<key>`, with their index.
    fn entries(&mut self, params: Option<&'a Value>, key: &str) -> Vec<(String, &'a Value)> {
        match params.and_then(|p| present(p.get(key))) {
            None => Vec::new(),
            Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            Some(v) => {
                self.not_a(&format!("containerParams.{key}"), v, "a list");
                Vec::new()
            }
        }
    }

    /// An entry's `permission`: `ro` (the default) or `rw`.
    fn permission(&mut self, entry: &Value, at: &str) -> Result<Access, Noted> {
        match present(entry.get("permission")) {
            None => Ok(Access::ReadOnly),
            Some(v) => match v.as_str().and_then(Access::parse) {
                Some(access) => Ok(access),
                None => Err(self.not_a(&format!("{at}.permission"), v, "ro or rw")),
            },
        }
    }

    /// A boolean member of `object`; the strings "true" and "false" as the cloud may send
    /// them; `None` when absent.
    fn boolean(&mut self, object: &Value, member: &str, key: &str) -> Result<Option<bool>, Noted> {
        match present(object.get(member)) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" => Ok(Some(true)),
            Some(Value::String(s)) if s == "false" => Ok(Some(false)),
            Some(v) => Err(self.not_a(key, v, "a boolean")),
        }
    }

    fn not_a(&mut self, key: &str, value: &Value, expected: &'static str) -> Noted {
        self.problems.push(SettingError {
            key: key.to_owned(),
            problem: SettingProblem::NotA {
                value: value.to_string(),
                expected,
            },
        });
        Noted
    }

    fn out_of_range(&mut self, key: &str, value: &Value, rule: String) {
        self.problems.push(SettingError {
            key: key.to_owned(),
            problem: SettingProblem::OutOfRange {
                value: value.to_string(),
                rule,
            },
        });
    }

    fn missing(&mut self, key: &str, what: &'static str) {
        self.problems.push(SettingError {
            key: key.to_owned(),
            problem: SettingProblem::Missing(what),
        });
    }
}

/// Where a `pubsubTopics` entry's messages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceType {
    /// Local publish/subscribe.
    PubSub,
    /// AWS IoT Core, through the MQTT connection.
    IotCore,
}

impl SourceType {
    /// The name a configuration gives it (`PUB_SUB`, `IOT_CORE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PubSub => "PUB_SUB",
            Self::IotCore => "IOT_CORE",
        }
    }
}

/// One `pubsubTopics` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSource {
    pub topic: String,
    pub kind: SourceType,
}

/// The entries of a Lambda component's configuration (`pubsubTopics`: an object keyed
/// `"0"`, `"1"`, …, in key order), and a description of each entry that is not one.
pub fn event_sources(config: &Value) -> (Vec<EventSource>, Vec<String>) {
    let mut sources = Vec::new();
    let mut problems = Vec::new();
    let Some(topics) = config.get("pubsubTopics") else {
        return (sources, problems);
    };
    let Some(entries) = topics.as_object() else {
        problems.push(format!("pubsubTopics is not an object: {topics}"));
        return (sources, problems);
    };
    let mut entries: Vec<(&String, &Value)> = entries.iter().collect();
    // "10" after "9": numeric keys in numeric order, others after them.
    entries.sort_by_key(|(k, _)| (k.parse::<u64>().unwrap_or(u64::MAX), (*k).clone()));
    for (key, entry) in entries {
        let topic = entry.get("topic").and_then(Value::as_str);
        let kind = match entry.get("type").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case("PUB_SUB") => Some(SourceType::PubSub),
            Some(t) if t.eq_ignore_ascii_case("IOT_CORE") => Some(SourceType::IotCore),
            _ => None,
        };
        match (topic, kind) {
            (Some(topic), Some(kind)) => sources.push(EventSource {
                topic: topic.to_owned(),
                kind,
            }),
            _ => problems.push(format!(
                "pubsubTopics/{key} needs a topic and a type PUB_SUB or IOT_CORE: {entry}"
            )),
        }
    }
    (sources, problems)
}

/// A problem was named; the value is left out.
struct Noted;

/// A value that is there: `null` is a key left out.
fn present(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn setenv() -> BTreeMap<String, String> {
        BTreeMap::from([
            (RUNTIME_VARIABLE.to_owned(), "python3.11".to_owned()),
            (HANDLER_VARIABLE.to_owned(), "app.handler".to_owned()),
        ])
    }

    fn translate(configuration: &Value) -> Result<LambdaFunction, LambdaComponentError> {
        function(&LambdaComponent {
            name: "com.example.Hello",
            setenv: &setenv(),
            description: Some("says hello"),
            configuration,
        })
    }

    /// The keys every problem of a refused configuration names.
    fn keys_named(configuration: &Value) -> Vec<String> {
        match translate(configuration) {
            Ok(f) => panic!("accepted: {f:?}"),
            Err(e) => e.settings().iter().map(|p| p.key.clone()).collect(),
        }
    }

    fn container(f: &LambdaFunction) -> &ContainerParams {
        match &f.config.greengrass.isolation {
            Isolation::GreengrassContainer(params) => params,
            Isolation::NoContainer => panic!("no container"),
        }
    }

    #[test]
    fn entries_are_read_in_key_order_and_bad_ones_named() {
        let config = json!({"pubsubTopics": {
            "10": {"topic": "ten", "type": "PUB_SUB"},
            "0": {"topic": "core/topic", "type": "IOT_CORE"},
            "1": {"topic": "local/+", "type": "PUB_SUB"},
            "2": {"topic": "x", "type": "SOMETHING"},
        }});
        let (sources, problems) = event_sources(&config);
        assert_eq!(
            sources,
            vec![
                EventSource {
                    topic: "core/topic".into(),
                    kind: SourceType::IotCore
                },
                EventSource {
                    topic: "local/+".into(),
                    kind: SourceType::PubSub
                },
                EventSource {
                    topic: "ten".into(),
                    kind: SourceType::PubSub
                },
            ]
        );
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("pubsubTopics/2"));
        assert_eq!(event_sources(&json!({})), (vec![], vec![]));
    }

    proptest! {
        /// Every entry is either a source or a named problem, never both nor neither, and the
        /// sources come in the numeric order of their keys.
        #[test]
        fn every_entry_is_a_source_or_a_named_problem(
            entries in proptest::collection::btree_map(
                0u16..200,
                (proptest::option::of("[a-z/+#]{0,6}"), proptest::option::of(prop_oneof![
                    Just("PUB_SUB"), Just("pub_sub"), Just("IOT_CORE"), Just("Iot_Core"), Just("MQTT"),
                ])),
                0..12,
            )
        ) {
            let object: serde_json::Map<String, Value> = entries
                .iter()
                .map(|(k, (topic, kind))| {
                    let mut e = serde_json::Map::new();
                    if let Some(t) = topic { e.insert("topic".into(), json!(t)); }
                    if let Some(k) = kind { e.insert("type".into(), json!(k)); }
                    (k.to_string(), Value::Object(e))
                })
                .collect();
            let (sources, problems) = event_sources(&json!({"pubsubTopics": object}));
            prop_assert_eq!(sources.len() + problems.len(), entries.len());
            let expected: Vec<&str> = entries
                .values()
                .filter(|(t, k)| t.is_some() && matches!(k, Some(k) if *k != "MQTT"))
                .map(|(t, _)| t.as_deref().unwrap_or_default())
                .collect();
            let got: Vec<&str> = sources.iter().map(|s| s.topic.as_str()).collect();
            prop_assert_eq!(got, expected);
            for (key, (t, k)) in &entries {
                let bad = t.is_none() || matches!(k, None | Some("MQTT"));
                let named = problems.iter().any(|p| p.starts_with(&format!("pubsubTopics/{key} ")));
                prop_assert_eq!(bad, named, "entry {}", key);
            }
        }
    }

    #[test]
    fn delegation_is_read_and_its_bad_values_named() {
        let f = translate(&json!({"delegation": {
            "policy": "overflow", "target": "cloud", "functionName": "other",
            "qualifier": "prod", "overflowQueueThreshold": 3.0,
        }}))
        .unwrap();
        assert_eq!(
            f.config.greengrass.delegation,
            Delegation {
                policy: DelegationPolicy::Overflow,
                target: Some("cloud".into()),
                function_name: Some("other".into()),
                qualifier: Some("prod".into()),
                overflow_queue_threshold: 3,
            }
        );
        assert!(translate(&json!({}))
            .unwrap()
            .config
            .greengrass
            .delegation
            .is_local());
        assert_eq!(
            keys_named(&json!({"delegation": {
                "policy": "sometimes", "target": 1, "overflowQueueThreshold": -1, "extra": 1,
            }})),
            [
                "delegation.extra",
                "delegation.overflowQueueThreshold",
                "delegation.policy",
                "delegation.target"
            ]
        );
        assert_eq!(keys_named(&json!({"delegation": "remote"})), ["delegation"]);
        // Read, then refused by the model: a remote policy needs its target.
        let e = translate(&json!({"delegation": {"policy": "remote"}})).unwrap_err();
        assert!(
            e.to_string()
                .contains("Greengrass.Delegation.Target is required"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_configuration_takes_greengrass_defaults() {
        let f = translate(&json!({})).unwrap();
        assert_eq!(f.name.as_str(), "com.example.Hello");
        assert_eq!(f.config.runtime, Runtime::Python { minor: 11 });
        assert_eq!(f.config.handler.as_deref(), Some("app.handler"));
        assert_eq!(f.config.description, "says hello");
        assert_eq!(f.config.timeout_seconds, 3);
        assert_eq!(f.config.timeout_ms, None);
        assert_eq!(
            f.config.memory_size_mb, 128,
            "16384 KB is below Lambda's 128 MB"
        );
        assert!(f.config.environment.is_empty());
        assert!(f.layers.is_empty() && f.config.layers.is_empty());
        let g = &f.config.greengrass;
        assert!(g.pinned);
        assert_eq!(
            (
                g.max_instances_count,
                g.max_queue_size,
                g.max_idle_time_in_seconds,
                g.status_timeout_in_seconds,
                g.input_payload_encoding_type
            ),
            (100, 1000, 60, 60, PayloadEncoding::Json)
        );
        assert_eq!(
            g.isolation,
            Isolation::GreengrassContainer(ContainerParams {
                memory_size_kib: 16384,
                mount_ro_sysfs: false,
                volumes: vec![],
                devices: vec![],
            })
        );
        let nulls = json!({"pinned": null, "timeoutInSeconds": null, "containerMode": null,
                           "containerParams": null, "lambdaExecutionParameters": null});
        assert_eq!(translate(&nulls), Ok(f), "null is a key left out");
    }

    #[test]
    fn every_key_maps_to_its_field() {
        let f = translate(&json!({
            "pinned": false,
            "maxInstancesCount": 7.0,
            "maxQueueSize": 9,
            "maxIdleTimeInSeconds": 11.0,
            "statusTimeoutInSeconds": 13,
            "timeoutInSeconds": 30.0,
            "inputPayloadEncodingType": "binary",
            "lambdaExecutionParameters": {"EnvironmentVariables": {"A": "x", "N": 5, "B": true}},
            "layers": ["arn:aws:lambda:us-east-1:123456789012:layer:lib:1"],
            "containerMode": "GreengrassContainer",
            "containerParams": {
                "memorySize": 262145.0,
                "mountROSysfs": "true",
                "volumes": {"0": {"sourcePath": "/var/data", "destinationPath": "/data",
                                  "permission": "rw", "addGroupOwner": true},
                            "1": {"sourcePath": "/srv"}},
                "devices": [{"path": "/dev/ttyUSB0", "permission": "rw", "addGroupOwner": "true"},
                            {"path": "/dev/null"}]
            }
        }))
        .unwrap();
        let g = &f.config.greengrass;
        assert!(!g.pinned);
        assert_eq!(
            (
                g.max_instances_count,
                g.max_queue_size,
                g.max_idle_time_in_seconds,
                g.status_timeout_in_seconds,
                g.input_payload_encoding_type
            ),
            (7, 9, 11, 13, PayloadEncoding::Binary)
        );
        assert_eq!(f.config.timeout_seconds, 30);
        assert_eq!(
            f.config.memory_size_mb, 257,
            "262145 KB rounds up to 257 MB"
        );
        assert_eq!(
            f.config.environment,
            BTreeMap::from([
                ("A".to_owned(), "x".to_owned()),
                ("B".to_owned(), "true".to_owned()),
                ("N".to_owned(), "5".to_owned()),
            ])
        );
        assert_eq!(
            f.layers,
            vec!["arn:aws:lambda:us-east-1:123456789012:layer:lib:1".to_owned()]
        );
        let params = container(&f);
        assert_eq!(params.memory_size_kib, 262_145);
        assert!(params.mount_ro_sysfs);
        assert_eq!(
            params.volumes,
            vec![
                Volume {
                    source: "/var/data".into(),
                    destination: "/data".into(),
                    permission: Access::ReadWrite,
                    add_group_owner: true,
                },
                Volume {
                    source: "/srv".into(),
                    destination: "/srv".into(),
                    permission: Access::ReadOnly,
                    add_group_owner: false,
                },
            ]
        );
        assert_eq!(
            params.devices,
            vec![
                Device {
                    path: "/dev/ttyUSB0".into(),
                    permission: Access::ReadWrite,
                    add_group_owner: true,
                },
                Device {
                    path: "/dev/null".into(),
                    permission: Access::ReadOnly,
                    add_group_owner: false,
                },
            ]
        );
    }

    #[test]
    fn memory_size_rounds_up_to_whole_kb_and_mb() {
        let memory = |kib: Value| {
            let f = translate(&json!({"containerParams": {"memorySize": kib}})).unwrap();
            (container(&f).memory_size_kib, f.config.memory_size_mb)
        };
        assert_eq!(memory(json!(2048.5)), (2049, 128));
        assert_eq!(memory(json!(131_072)), (131_072, 128));
        assert_eq!(memory(json!(131_073)), (131_073, 129));
        assert_eq!(memory(json!(10_485_760)), (10_485_760, 10_240));
        assert_eq!(
            keys_named(&json!({"containerParams": {"memorySize": 10_485_761}})),
            ["containerParams.memorySize"]
        );
    }

    #[test]
    fn no_container_reads_only_the_memory_size() {
        let f = translate(&json!({
            "containerMode": "NoContainer",
            "containerParams": {"memorySize": 524_288, "mountROSysfs": 3,
                                "volumes": {"0": {"permission": "x"}}, "devices": 5}
        }))
        .unwrap();
        assert_eq!(f.config.greengrass.isolation, Isolation::NoContainer);
        assert_eq!(f.config.memory_size_mb, 512);
        let tiny = json!({"containerMode": "NoContainer", "containerParams": {"memorySize": 1}});
        assert_eq!(translate(&tiny).unwrap().config.memory_size_mb, 128);
        assert_eq!(isolation(&tiny), (Isolation::NoContainer, vec![]));
    }

    #[test]
    fn each_bad_value_is_named_by_its_key() {
        let cases = [
            (json!({"pinned": "yes"}), "pinned"),
            (json!({"maxInstancesCount": 0}), "maxInstancesCount"),
            (json!({"maxQueueSize": -1}), "maxQueueSize"),
            (json!({"maxIdleTimeInSeconds": 1.5}), "maxIdleTimeInSeconds"),
            (
                json!({"statusTimeoutInSeconds": "60"}),
                "statusTimeoutInSeconds",
            ),
            (json!({"maxQueueSize": 4_294_967_296_u64}), "maxQueueSize"),
            (json!({"timeoutInSeconds": 0}), "timeoutInSeconds"),
            (json!({"timeoutInSeconds": 901.0}), "timeoutInSeconds"),
            (
                json!({"inputPayloadEncodingType": "xml"}),
                "inputPayloadEncodingType",
            ),
            (
                json!({"lambdaExecutionParameters": []}),
                "lambdaExecutionParameters",
            ),
            (
                json!({"lambdaExecutionParameters": {"EnvironmentVariables": "A=1"}}),
                "lambdaExecutionParameters.EnvironmentVariables",
            ),
            (json!({"layers": "arn"}), "layers"),
            (json!({"layers": [1]}), "layers"),
            (json!({"containerMode": "Docker"}), "containerMode"),
            (json!({"containerParams": [1]}), "containerParams"),
            (
                json!({"containerParams": {"memorySize": "16 MB"}}),
                "containerParams.memorySize",
            ),
            (
                json!({"containerParams": {"memorySize": -1}}),
                "containerParams.memorySize",
            ),
            (
                json!({"containerParams": {"mountROSysfs": 1}}),
                "containerParams.mountROSysfs",
            ),
            (
                json!({"containerParams": {"volumes": "/data"}}),
                "containerParams.volumes",
            ),
            (
                json!({"containerParams": {"devices": 5}}),
                "containerParams.devices",
            ),
            (
                json!({"containerParams": {"volumes": {"a": {"destinationPath": "/x"}}}}),
                "containerParams.volumes.a",
            ),
            (
                json!({"containerParams": {"volumes": [{"sourcePath": "/x", "destinationPath": 1}]}}),
                "containerParams.volumes.0.destinationPath",
            ),
            (
                json!({"containerParams": {"volumes": [{"sourcePath": "/x", "permission": "rx"}]}}),
                "containerParams.volumes.0.permission",
            ),
            (
                json!({"containerParams": {"devices": [{"path": "/dev/null", "addGroupOwner": 1}]}}),
                "containerParams.devices.0.addGroupOwner",
            ),
            (
                json!({"containerParams": {"devices": {"3": {"permission": "ro"}}}}),
                "containerParams.devices.3",
            ),
        ];
        for (configuration, key) in cases {
            assert_eq!(keys_named(&configuration), [key], "{configuration}");
        }
    }

    #[test]
    fn messages_name_the_key_and_the_value() {
        let err = translate(&json!({"timeoutInSeconds": 5000})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "timeoutInSeconds 5000 is out of range: Timeout must be between 1 and 900 seconds"
        );
        let err = translate(&json!({
            "maxQueueSize": "9",
            "containerParams": {"volumes": {"1": {"sourcePath": "/etc", "permission": "rx"}}}
        }))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "containerParams.volumes.1.permission \"rx\" is not ro or rw; \
             maxQueueSize \"9\" is not a whole number",
            "every problem at once"
        );
    }

    #[test]
    fn the_recipe_names_the_function_and_its_runtime() {
        let configuration = json!({});
        let with = |name: &str, setenv: &BTreeMap<String, String>| {
            function(&LambdaComponent {
                name,
                setenv,
                description: None,
                configuration: &configuration,
            })
        };
        let f = with("hello", &setenv()).unwrap();
        assert_eq!(f.config.description, "");
        let mut no_handler = setenv();
        no_handler.remove(HANDLER_VARIABLE);
        let err = with("hello", &no_handler).unwrap_err();
        assert!(
            matches!(&err, LambdaComponentError::Function(e) if e.to_string().contains("Handler is required")),
            "{err}"
        );
        let mut provided = no_handler.clone();
        provided.insert(RUNTIME_VARIABLE.into(), "provided.al2023".into());
        assert_eq!(with("hello", &provided).unwrap().config.handler, None);
        let mut bad = setenv();
        bad.insert(RUNTIME_VARIABLE.into(), "java21".into());
        let keys = |e: LambdaComponentError| -> Vec<String> {
            e.settings().iter().map(|p| p.key.clone()).collect()
        };
        assert_eq!(
            keys(with("hello", &bad).unwrap_err()),
            ["Setenv.AWS_GREENGRASS_LAMBDA_RUNTIME"]
        );
        let err = with("a/b", &BTreeMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "ComponentName: {}; Setenv has no AWS_GREENGRASS_LAMBDA_RUNTIME",
                FunctionError::InvalidName("a/b".into())
            )
        );
    }

    #[test]
    fn the_model_checks_what_was_read() {
        let err = translate(&json!({"containerParams": {"memorySize": 1024.0}})).unwrap_err();
        assert!(
            err.to_string()
                .contains("containerParams.memorySize must be at least 2048 KB, got 1024"),
            "{err}"
        );
        let err = translate(&json!({"lambdaExecutionParameters":
            {"EnvironmentVariables": {"AWS_REGION": "x"}}}))
        .unwrap_err();
        assert!(err.to_string().contains("AWS_REGION"), "{err}");
    }

    #[test]
    fn isolation_keeps_what_it_could_read() {
        let (read, problems) = isolation(&json!({"containerParams": {
            "memorySize": 4096,
            "volumes": {"0": {"sourcePath": "/surely/not/here", "destinationPath": "/data", "permission": "rw"},
                        "1": {"sourcePath": "/etc", "destinationPath": "/etc2", "permission": "rx"}},
            "devices": {"0": {"path": "/dev/null", "addGroupOwner": 1}},
        }}));
        let Isolation::GreengrassContainer(params) = read else {
            panic!("no container: {read:?}");
        };
        assert_eq!(params.memory_size_kib, 4096);
        let sources: Vec<&str> = params.volumes.iter().map(|v| v.source.as_str()).collect();
        assert_eq!(sources, ["/surely/not/here"], "the bad entry is left out");
        assert!(params.devices.is_empty());
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "containerParams.volumes.1.permission",
                "containerParams.devices.0.addGroupOwner"
            ]
        );
        assert_eq!(
            problems[1].to_string(),
            "containerParams.devices.0.addGroupOwner 1 is not a boolean"
        );
    }

    /// Any JSON value: nested objects and arrays of scalars, strings and numbers of every kind.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-zA-Z0-9/._ -]{0,12}".prop_map(Value::from),
            prop_oneof![
                Just("true"),
                Just("false"),
                Just("ro"),
                Just("rw"),
                Just("json"),
                Just("binary"),
                Just("NoContainer"),
                Just("GreengrassContainer"),
                Just("/dev/null")
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z0-9]{0,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const KEYS: [&str; 11] = [
        "pinned",
        "maxInstancesCount",
        "maxQueueSize",
        "maxIdleTimeInSeconds",
        "statusTimeoutInSeconds",
        "timeoutInSeconds",
        "inputPayloadEncodingType",
        "lambdaExecutionParameters",
        "layers",
        "containerMode",
        "containerParams",
    ];

    const CONTAINER_KEYS: [&str; 4] = ["memorySize", "mountROSysfs", "volumes", "devices"];

    /// A configuration with any value at the keys read, and in `containerParams` and its
    /// entries: where a panic would hide.
    fn any_configuration() -> impl Strategy<Value = Value> {
        let entry = proptest::collection::btree_map(
            prop_oneof![
                Just("sourcePath"),
                Just("destinationPath"),
                Just("permission"),
                Just("addGroupOwner"),
                Just("path")
            ],
            any_json(),
            0..5,
        )
        .prop_map(|m| json!(m));
        let entries = proptest::collection::vec(entry, 0..3)
            .prop_flat_map(|items| {
                prop_oneof![
                    Just(Value::Array(items.clone())),
                    Just(Value::Object(
                        items
                            .iter()
                            .enumerate()
                            .map(|(i, v)| (i.to_string(), v.clone()))
                            .collect()
                    )),
                ]
            })
            .boxed();
        let params = (
            proptest::collection::btree_map(
                proptest::sample::select(&CONTAINER_KEYS[..2]),
                any_json(),
                0..3,
            ),
            proptest::option::of(entries.clone()),
            proptest::option::of(entries),
            any_json(),
        )
            .prop_map(|(mut m, volumes, devices, other)| {
                let mut object: serde_json::Map<String, Value> = m
                    .iter_mut()
                    .map(|(k, v)| ((*k).to_owned(), v.take()))
                    .collect();
                if let Some(v) = volumes {
                    object.insert("volumes".into(), v);
                }
                if let Some(d) = devices {
                    object.insert("devices".into(), d);
                }
                prop_oneof![Just(Value::Object(object)), Just(other)]
            })
            .prop_flat_map(|s| s);
        (
            proptest::collection::btree_map(proptest::sample::select(&KEYS[..]), any_json(), 0..8),
            proptest::option::of(params),
        )
            .prop_map(|(m, params)| {
                let mut object: serde_json::Map<String, Value> =
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                if let Some(p) = params {
                    object.insert("containerParams".into(), p);
                }
                Value::Object(object)
            })
    }

    /// A whole number as Greengrass may send it: an integer or its float.
    fn number(n: u64, float: bool) -> Value {
        if float {
            json!(n as f64)
        } else {
            json!(n)
        }
    }

    #[derive(Debug, Clone)]
    struct Valid {
        pinned: bool,
        counts: [u32; 4],
        timeout: u32,
        binary: bool,
        memory_kib: u64,
        sysfs: bool,
        volumes: Vec<(u8, u8, bool, bool)>,
        devices: Vec<(u8, bool, bool)>,
        environment: BTreeMap<String, String>,
        floats: bool,
        contained: bool,
    }

    fn valid() -> impl Strategy<Value = Valid> {
        (
            (
                any::<bool>(),
                proptest::array::uniform4(1..=u32::MAX),
                1..=900u32,
                any::<bool>(),
            ),
            (2048..=MAX_MEMORY_SIZE_KIB, any::<bool>()),
            proptest::collection::vec((0..20u8, 0..20u8, any::<bool>(), any::<bool>()), 0..4),
            proptest::collection::vec((0..20u8, any::<bool>(), any::<bool>()), 0..4),
            proptest::collection::btree_map("[A-Z][A-Z0-9_]{0,8}", "[ -~]{0,16}", 0..4),
            (any::<bool>(), any::<bool>()),
        )
            .prop_map(
                |(
                    (pinned, counts, timeout, binary),
                    (memory_kib, sysfs),
                    volumes,
                    devices,
                    environment,
                    (floats, contained),
                )| Valid {
                    pinned,
                    counts,
                    timeout,
                    binary,
                    memory_kib,
                    sysfs,
                    volumes,
                    devices,
                    environment: environment
                        .into_iter()
                        .filter(|(k, _)| {
                            !crate::lambda::function::RESERVED_ENVIRONMENT.contains(&k.as_str())
                        })
                        .collect(),
                    floats,
                    contained,
                },
            )
    }

    fn access(rw: bool) -> &'static str {
        if rw {
            "rw"
        } else {
            "ro"
        }
    }

    impl Valid {
        fn configuration(&self) -> Value {
            let volumes: serde_json::Map<String, Value> = self
                .volumes
                .iter()
                .enumerate()
                .map(|(i, (s, d, rw, group))| {
                    (
                        i.to_string(),
                        json!({"sourcePath": format!("/srv/v{s}"),
                        "destinationPath": format!("/data/v{d}"), "permission": access(*rw),
                        "addGroupOwner": group}),
                    )
                })
                .collect();
            let devices: Vec<Value> = self
                .devices
                .iter()
                .map(|(n, rw, group)| {
                    json!({"path": format!("/dev/d{n}"), "permission": access(*rw),
                           "addGroupOwner": group.to_string()})
                })
                .collect();
            let [instances, queue, idle, status] = self.counts.map(u64::from);
            json!({
                "pinned": self.pinned,
                "maxInstancesCount": number(instances, self.floats),
                "maxQueueSize": number(queue, self.floats),
                "maxIdleTimeInSeconds": number(idle, self.floats),
                "statusTimeoutInSeconds": number(status, self.floats),
                "timeoutInSeconds": number(u64::from(self.timeout), self.floats),
                "inputPayloadEncodingType": if self.binary { "binary" } else { "json" },
                "lambdaExecutionParameters": {"EnvironmentVariables": self.environment},
                "containerMode": if self.contained { "GreengrassContainer" } else { "NoContainer" },
                "containerParams": {
                    "memorySize": number(self.memory_kib, self.floats),
                    "mountROSysfs": self.sysfs,
                    "volumes": volumes,
                    "devices": devices,
                },
            })
        }
    }

    proptest! {
        #[test]
        fn any_json_configuration_is_translated_or_refused_without_panicking(
            configuration in prop_oneof![any_json(), any_configuration()]
        ) {
            if let Err(e) = translate(&configuration) {
                prop_assert!(!e.to_string().is_empty());
            }
            let _ = isolation(&configuration);
        }

        #[test]
        fn a_valid_configuration_maps_every_field(v in valid()) {
            let f = translate(&v.configuration());
            prop_assert!(f.is_ok(), "{:?}", f);
            let f = f.unwrap();
            let g = &f.config.greengrass;
            prop_assert_eq!(g.pinned, v.pinned);
            prop_assert_eq!(
                [g.max_instances_count, g.max_queue_size, g.max_idle_time_in_seconds, g.status_timeout_in_seconds],
                v.counts
            );
            prop_assert_eq!(f.config.timeout_seconds, v.timeout);
            prop_assert_eq!(g.input_payload_encoding_type == PayloadEncoding::Binary, v.binary);
            prop_assert_eq!(&f.config.environment, &v.environment);
            let mb = u32::try_from(v.memory_kib.div_ceil(1024)).unwrap().max(128);
            prop_assert_eq!(f.config.memory_size_mb, mb);
            match &g.isolation {
                Isolation::NoContainer => prop_assert!(!v.contained),
                Isolation::GreengrassContainer(params) => {
                    prop_assert!(v.contained);
                    prop_assert_eq!(params.memory_size_kib, v.memory_kib);
                    prop_assert_eq!(params.mount_ro_sysfs, v.sysfs);
                    let volumes: Vec<(String, String, Access, bool)> = v.volumes.iter().map(|(s, d, rw, group)| (
                        format!("/srv/v{s}"), format!("/data/v{d}"),
                        if *rw { Access::ReadWrite } else { Access::ReadOnly }, *group)).collect();
                    let read: Vec<(String, String, Access, bool)> = params.volumes.iter().map(|x| (
                        x.source.clone(), x.destination.clone(), x.permission, x.add_group_owner)).collect();
                    prop_assert_eq!(read, volumes);
                    let devices: Vec<(String, Access, bool)> = v.devices.iter().map(|(n, rw, group)| (
                        format!("/dev/d{n}"), if *rw { Access::ReadWrite } else { Access::ReadOnly }, *group)).collect();
                    let read: Vec<(String, Access, bool)> = params.devices.iter().map(|x| (
                        x.path.clone(), x.permission, x.add_group_owner)).collect();
                    prop_assert_eq!(read, devices);
                }
            }
        }

        #[test]
        fn a_value_out_of_range_is_refused_naming_its_key(
            v in valid(),
            which in 0..6usize,
            high in any::<bool>(),
            float in any::<bool>(),
            excess in 1..=u64::from(u32::MAX),
        ) {
            let (key, low, top) = [
                ("maxInstancesCount", 0, u64::from(u32::MAX)),
                ("maxQueueSize", 0, u64::from(u32::MAX)),
                ("maxIdleTimeInSeconds", 0, u64::from(u32::MAX)),
                ("statusTimeoutInSeconds", 0, u64::from(u32::MAX)),
                ("timeoutInSeconds", 0, 900),
                ("containerParams.memorySize", 0, MAX_MEMORY_SIZE_KIB),
            ][which];
            // memorySize has no lower bound of its own: the model's 2048 KB applies, in
            // a container only.
            let bad = if high || key == "containerParams.memorySize" { top + excess } else { low };
            let mut configuration = v.configuration();
            let at = match key.split_once('.') {
                Some((outer, inner)) => &mut configuration[outer][inner],
                None => &mut configuration[key],
            };
            *at = number(bad, float);
            let keys: Vec<String> = match translate(&configuration) {
                Ok(f) => return Err(TestCaseError::fail(format!("accepted: {f:?}"))),
                Err(e) => e.settings().iter().map(|p| p.key.clone()).collect(),
            };
            prop_assert_eq!(keys, vec![key.to_owned()]);
        }

        #[test]
        fn a_value_of_the_wrong_kind_is_refused_naming_its_key(
            v in valid(),
            which in 0..KEYS.len(),
            wrong in prop_oneof![
                Just(json!("x")), Just(json!([])), Just(json!({"a": 1})), Just(json!(-1)),
                Just(json!(0.5)), Just(json!(true)),
            ],
        ) {
            let key = KEYS[which];
            // Each key's own kinds: the value is wrong unless the key takes it.
            let fits = match key {
                "pinned" => wrong.is_boolean(),
                "lambdaExecutionParameters" | "containerParams" => wrong.is_object(),
                "layers" => wrong == json!([]),
                _ => false,
            };
            prop_assume!(!fits);
            let mut configuration = v.configuration();
            configuration[key] = wrong;
            let keys: Vec<String> = match translate(&configuration) {
                Ok(f) => return Err(TestCaseError::fail(format!("accepted: {f:?}"))),
                Err(e) => e.settings().iter().map(|p| p.key.clone()).collect(),
            };
            prop_assert_eq!(keys, vec![key.to_owned()]);
        }
    }
}
