//! The function model: what a Lambda function is, validated once at the edge so the host only
//! ever holds well-formed values. Greengrass's own settings live beside AWS Lambda's, with
//! Greengrass's defaults (`greengrass-reference.md` §1.3).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A function's name: 1–64 of `[A-Za-z0-9_.-]`, as the Invoke API's pattern allows (`.` lets
/// Greengrass Lambda components keep their component names).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct FunctionName(String);

impl FunctionName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(name: &str) -> Result<Self, FunctionError> {
        let valid_chars = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        // A name becomes a directory (`ROOT/functions/NAME`, `ROOT/work/NAME`): `.` and `..`
        // would name the directory above instead.
        if name.is_empty()
            || name.len() > Self::MAX_LEN
            || !valid_chars
            || name == "."
            || name == ".."
        {
            return Err(FunctionError::InvalidName(name.to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FunctionName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The runtime a function runs on. `provided*` runs the code's own `bootstrap`; the managed
/// ids run a handler-only zip through a runtime client that Lambkin ships.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// `provided`, `provided.al2`, `provided.al2023`: the id is kept to be reported back.
    Provided(String),
    /// `python3.N`, with N the minor version.
    Python { minor: u32 },
    /// `nodejsN.x`, with N the major version.
    Node { major: u32 },
}

impl Runtime {
    pub fn parse(id: &str) -> Result<Self, FunctionError> {
        let unsupported = || FunctionError::UnsupportedRuntime(id.to_owned());
        match id {
            "provided" | "provided.al2" | "provided.al2023" => {
                return Ok(Self::Provided(id.to_owned()))
            }
            _ => {}
        }
        if let Some(minor) = id.strip_prefix("python3.") {
            let minor: u32 = minor.parse().map_err(|_| unsupported())?;
            return if (8..=14).contains(&minor) {
                Ok(Self::Python { minor })
            } else {
                Err(unsupported())
            };
        }
        if let Some(major) = id.strip_prefix("nodejs").and_then(|s| s.strip_suffix(".x")) {
            let major: u32 = major.parse().map_err(|_| unsupported())?;
            return if (16..=24).contains(&major) {
                Ok(Self::Node { major })
            } else {
                Err(unsupported())
            };
        }
        Err(unsupported())
    }

    pub fn id(&self) -> String {
        match self {
            Self::Provided(id) => id.clone(),
            Self::Python { minor } => format!("python3.{minor}"),
            Self::Node { major } => format!("nodejs{major}.x"),
        }
    }

    /// Whether the runtime needs a `Handler` naming code in the zip.
    pub fn needs_handler(&self) -> bool {
        !matches!(self, Self::Provided(_))
    }
}

impl Serialize for Runtime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.id())
    }
}

impl<'de> Deserialize<'de> for Runtime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How an event's bytes reach the handler (Greengrass `inputPayloadEncodingType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadEncoding {
    #[default]
    Json,
    Binary,
}

impl PayloadEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Binary => "binary",
        }
    }
}

/// Greengrass's per-function settings, defaults as in `greengrass-reference.md` §1.3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct GreengrassSettings {
    /// One long-lived instance started with the host, invocations queued in order.
    pub pinned: bool,
    pub max_instances_count: u32,
    pub max_queue_size: u32,
    pub max_idle_time_in_seconds: u32,
    pub status_timeout_in_seconds: u32,
    pub input_payload_encoding_type: PayloadEncoding,
    /// How the function's processes are isolated (Greengrass `containerMode`).
    pub isolation: Isolation,
    /// Where its invocations run: here (the default), or on a remote target.
    #[serde(skip_serializing_if = "Delegation::is_local")]
    pub delegation: Delegation,
}

impl Default for GreengrassSettings {
    fn default() -> Self {
        Self {
            pinned: true,
            max_instances_count: 100,
            max_queue_size: 1000,
            max_idle_time_in_seconds: 60,
            status_timeout_in_seconds: 60,
            input_payload_encoding_type: PayloadEncoding::Json,
            isolation: Isolation::NoContainer,
            delegation: Delegation::default(),
        }
    }
}

/// Where a function's invocations run (`Greengrass.Delegation` on the API, `delegation` in a
/// Lambda component's configuration): on this host, or on a remote target named in the host's
/// configuration (`[remote_targets.NAME]`), as the function `function_name` there.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct Delegation {
    pub policy: DelegationPolicy,
    /// The remote target's name; required unless the policy is `local`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The function's name (or ARN) at the target; default: this function's own name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    /// The version or alias invoked at the target (`Qualifier`); default: none (`$LATEST`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    /// `overflow`: how many invocations may wait here for an instance before the next one
    /// goes to the target (0, the default: any invocation that would wait goes there).
    #[serde(skip_serializing_if = "is_zero")]
    pub overflow_queue_threshold: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// When a function's invocations go to its remote target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DelegationPolicy {
    /// Always here.
    #[default]
    Local,
    /// Always at the target; when it cannot be reached, a synchronous call fails and an
    /// `Event` waits, stored, until it can.
    Remote,
    /// Here, unless the invocation would wait here past the threshold or be refused.
    Overflow,
    /// At the target, here when the target cannot be reached or does not answer in time.
    RemoteFirst,
}

impl DelegationPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Remote => "remote",
            Self::Overflow => "overflow",
            Self::RemoteFirst => "remote-first",
        }
    }

    /// Parses a policy as it is written (`local`, `remote`, `overflow`, `remote-first`).
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Local, Self::Remote, Self::Overflow, Self::RemoteFirst]
            .into_iter()
            .find(|p| p.as_str() == text)
    }
}

impl Delegation {
    /// The longest target name (a TOML table key in the host's configuration).
    pub const MAX_TARGET_NAME: usize = 64;

    pub fn is_local(&self) -> bool {
        self.policy == DelegationPolicy::Local
    }

    /// Whether `name` may name a remote target: 1-64 of `[A-Za-z0-9_-]`.
    pub fn is_target_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= Self::MAX_TARGET_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    fn validate(&self, problems: &mut Vec<String>) {
        match (&self.target, self.policy) {
            (None, DelegationPolicy::Local) => {}
            (None, policy) => problems.push(format!(
                "Greengrass.Delegation.Target is required with the policy {}",
                policy.as_str()
            )),
            (Some(target), _) if !Self::is_target_name(target) => problems.push(format!(
                "Greengrass.Delegation.Target {target:?} must be 1-64 letters, digits, '-' or '_'"
            )),
            (Some(_), _) => {}
        }
        if let Some(name) = &self.function_name {
            let plain = FunctionName::parse(name).is_ok();
            let arn = name.starts_with("arn:")
                && name.len() <= 256
                && !name.contains(['/', '?', '#', ' ']);
            if !plain && !arn {
                problems.push(format!(
                    "Greengrass.Delegation.FunctionName {name:?} is not a function name or ARN"
                ));
            }
        }
        if let Some(qualifier) = &self.qualifier {
            let ok = !qualifier.is_empty()
                && qualifier.len() <= 128
                && qualifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"$-_".contains(&b));
            if !ok {
                problems.push(format!(
                    "Greengrass.Delegation.Qualifier {qualifier:?} is not a version or alias"
                ));
            }
        }
    }
}

/// How a function's processes are isolated (Greengrass `containerMode`,
/// `greengrass-reference.md` §1.3). Functions made through the Lambda API are plain processes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "Mode")]
pub enum Isolation {
    /// A plain process of the host's user, no limits (`NoContainer`).
    #[default]
    NoContainer,
    /// Its own mount, PID, IPC and UTS namespaces, a memory limit, and only the files and
    /// devices it was given (`GreengrassContainer`).
    GreengrassContainer(ContainerParams),
}

impl Isolation {
    /// Where a containerised function finds its code.
    pub const CODE_PATH: &'static str = "/lambda";

    fn validate(&self, problems: &mut Vec<String>) {
        if let Self::GreengrassContainer(params) = self {
            params.validate(problems);
        }
    }
}

/// A container's settings (Greengrass `containerParams`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ContainerParams {
    /// The memory limit of each instance, swap included.
    pub memory_size_kib: u64,
    /// Whether `/sys` is mounted (read-only) inside.
    pub mount_ro_sysfs: bool,
    pub volumes: Vec<Volume>,
    pub devices: Vec<Device>,
}

impl ContainerParams {
    /// Greengrass's default memory limit, in KB.
    pub const DEFAULT_MEMORY_SIZE_KIB: u64 = 16_384;
    /// The smallest limit Greengrass accepts, in KB.
    pub const MIN_MEMORY_SIZE_KIB: u64 = 2048;

    fn validate(&self, problems: &mut Vec<String>) {
        if self.memory_size_kib < Self::MIN_MEMORY_SIZE_KIB {
            problems.push(format!(
                "containerParams.memorySize must be at least {} KB, got {}",
                Self::MIN_MEMORY_SIZE_KIB,
                self.memory_size_kib
            ));
        }
        for v in &self.volumes {
            let (source, destination) = (v.source.as_str(), v.destination.as_str());
            if !is_clean_absolute(source) {
                problems.push(format!(
                    "volume sourcePath {source:?} must be an absolute path without '..'"
                ));
            } else if source == "/sys" || source.starts_with("/sys/") {
                problems.push(format!(
                    "volume sourcePath {source:?} may not be under /sys"
                ));
            }
            if !is_clean_absolute(destination) || destination == "/" {
                problems.push(format!(
                    "volume destinationPath {destination:?} must be an absolute path other than / without '..'"
                ));
            } else if ["/proc", "/dev", "/sys", Isolation::CODE_PATH]
                .iter()
                .any(|p| destination == *p || destination.starts_with(&format!("{p}/")))
            {
                problems.push(format!(
                    "volume destinationPath {destination:?} may not be under /proc, /dev, /sys or {}",
                    Isolation::CODE_PATH
                ));
            }
        }
        for d in &self.devices {
            let path = d.path.as_str();
            if !is_clean_absolute(path) || !path.starts_with("/dev/") {
                problems.push(format!(
                    "device path {path:?} must be a path under /dev/ without '..'"
                ));
            }
        }
    }
}

fn is_clean_absolute(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains('\0')
        && path
            .split('/')
            .skip(1)
            .all(|part| part != ".." && part != ".")
        && !path.contains("//")
}

/// Whether a container may write a mounted path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Access {
    /// `ro` (Greengrass's default).
    #[default]
    #[serde(rename = "ro")]
    ReadOnly,
    /// `rw`.
    #[serde(rename = "rw")]
    ReadWrite,
}

impl Access {
    /// Parses Greengrass's `permission` value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "ro" => Some(Self::ReadOnly),
            "rw" => Some(Self::ReadWrite),
            _ => None,
        }
    }
}

/// A host directory or file bind-mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Volume {
    pub source: String,
    pub destination: String,
    pub permission: Access,
    /// `addGroupOwner`: the function's processes also get the source's group, so they have
    /// the access its group has (the function's user rarely owns what it is given).
    #[serde(default)]
    pub add_group_owner: bool,
}

/// A device node made available inside a container, at the same path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Device {
    pub path: String,
    pub permission: Access,
    /// `addGroupOwner`: the function's processes also get the device's group (`dialout` for
    /// a serial port, say), so its user may open it.
    #[serde(default)]
    pub add_group_owner: bool,
}

/// A partial [`GreengrassSettings`], as the API receives it: keys left out keep their current
/// value (on create: Greengrass's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GreengrassPatch {
    pub pinned: Option<bool>,
    pub max_instances_count: Option<u32>,
    pub max_queue_size: Option<u32>,
    pub max_idle_time_in_seconds: Option<u32>,
    pub status_timeout_in_seconds: Option<u32>,
    pub input_payload_encoding_type: Option<PayloadEncoding>,
    /// Replaces the whole delegation when given.
    pub delegation: Option<Delegation>,
}

impl GreengrassPatch {
    pub fn apply(&self, to: &mut GreengrassSettings) {
        let GreengrassPatch {
            pinned,
            max_instances_count,
            max_queue_size,
            max_idle_time_in_seconds,
            status_timeout_in_seconds,
            input_payload_encoding_type,
            delegation,
        } = self.clone();
        to.pinned = pinned.unwrap_or(to.pinned);
        to.max_instances_count = max_instances_count.unwrap_or(to.max_instances_count);
        to.max_queue_size = max_queue_size.unwrap_or(to.max_queue_size);
        to.max_idle_time_in_seconds =
            max_idle_time_in_seconds.unwrap_or(to.max_idle_time_in_seconds);
        to.status_timeout_in_seconds =
            status_timeout_in_seconds.unwrap_or(to.status_timeout_in_seconds);
        to.input_payload_encoding_type =
            input_payload_encoding_type.unwrap_or(to.input_payload_encoding_type);
        if let Some(delegation) = delegation {
            to.delegation = delegation;
        }
    }
}

impl GreengrassSettings {
    fn validate(&self, problems: &mut Vec<String>) {
        let at_least_one = [
            ("MaxInstancesCount", self.max_instances_count),
            ("MaxQueueSize", self.max_queue_size),
            ("MaxIdleTimeInSeconds", self.max_idle_time_in_seconds),
            ("StatusTimeoutInSeconds", self.status_timeout_in_seconds),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                problems.push(format!("Greengrass.{key} must be at least 1, got 0"));
            }
        }
        self.delegation.validate(problems);
    }
}

/// Everything that defines how a function runs, apart from its code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    pub runtime: Runtime,
    pub handler: Option<String>,
    pub timeout_seconds: u32,
    /// A finer timeout, in milliseconds, within `timeout_seconds` (an OpenWhisk action's
    /// limit); the Lambda API shows `timeout_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
    pub memory_size_mb: u32,
    pub environment: BTreeMap<String, String>,
    pub description: String,
    pub role: String,
    pub greengrass: GreengrassSettings,
    /// The layers laid over `/opt`, in order (a later one's file wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerUse>,
}

/// A layer version a function uses, as it was when the function took it: AWS keeps a
/// function's layers working after the version is deleted, and so does the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerUse {
    pub arn: String,
    pub code_size: u64,
    /// Base64 of the SHA-256 of the layer's zip.
    pub code_sha256: String,
}

impl FunctionConfig {
    pub const DEFAULT_TIMEOUT_SECONDS: u32 = 3;
    pub const DEFAULT_MEMORY_SIZE_MB: u32 = 128;
    pub const TIMEOUT_SECONDS: std::ops::RangeInclusive<u32> = 1..=900;
    pub const MEMORY_SIZE_MB: std::ops::RangeInclusive<u32> = 128..=10_240;
    /// AWS caps a function's variables at 4 KB in all.
    pub const MAX_ENVIRONMENT_BYTES: usize = 4096;

    /// How long an invocation may run: `timeout_ms` when set, else `timeout_seconds`.
    pub fn timeout(&self) -> std::time::Duration {
        match self.timeout_ms {
            Some(ms) => std::time::Duration::from_millis(u64::from(ms)),
            None => std::time::Duration::from_secs(u64::from(self.timeout_seconds)),
        }
    }

    /// Checks every rule at once, so one answer names every problem.
    pub fn validate(&self) -> Result<(), FunctionError> {
        let mut problems = Vec::new();
        if !Self::TIMEOUT_SECONDS.contains(&self.timeout_seconds) {
            problems.push(format!(
                "Timeout must be between 1 and 900 seconds, got {}",
                self.timeout_seconds
            ));
        }
        if let Some(ms) = self.timeout_ms {
            if ms == 0 || u64::from(ms) > u64::from(self.timeout_seconds) * 1000 {
                problems.push(format!(
                    "the timeout of {ms} ms must be at least 1 ms and within Timeout ({} seconds)",
                    self.timeout_seconds
                ));
            }
        }
        if !Self::MEMORY_SIZE_MB.contains(&self.memory_size_mb) {
            problems.push(format!(
                "MemorySize must be between 128 and 10240 MB, got {}",
                self.memory_size_mb
            ));
        }
        match (&self.handler, self.runtime.needs_handler()) {
            (None, true) => problems.push(format!(
                "Handler is required for runtime {}",
                self.runtime.id()
            )),
            (Some(h), _) if h.is_empty() || h.len() > 128 || h.contains(char::is_whitespace) => {
                problems.push(format!("Handler {h:?} is not a valid handler"))
            }
            _ => {}
        }
        validate_environment(&self.environment, &mut problems);
        self.greengrass.validate(&mut problems);
        self.greengrass.isolation.validate(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(FunctionError::InvalidConfig(problems.join("; ")))
        }
    }
}

/// Variables the platform sets itself; a function may not override them (AWS's list).
pub const RESERVED_ENVIRONMENT: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

fn validate_environment(env: &BTreeMap<String, String>, problems: &mut Vec<String>) {
    let mut size = 0;
    let mut reserved = Vec::new();
    for (key, value) in env {
        size += key.len() + value.len();
        let mut chars = key.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            problems.push(format!(
                "environment variable name {key:?} must match [a-zA-Z][a-zA-Z0-9_]*"
            ));
        }
        if RESERVED_ENVIRONMENT.contains(&key.as_str()) {
            reserved.push(key.as_str());
        }
    }
    if !reserved.is_empty() {
        problems.push(format!(
            "environment variables contain reserved keys that cannot be modified: {}",
            reserved.join(", ")
        ));
    }
    if size > FunctionConfig::MAX_ENVIRONMENT_BYTES {
        problems.push(format!(
            "environment variables take {size} bytes, more than the 4 KB limit"
        ));
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FunctionError {
    #[error("function name {0:?} must be 1-64 characters of letters, digits, '-', '_' and '.'")]
    InvalidName(String),
    #[error("runtime {0:?} is not supported; use provided, provided.al2, provided.al2023, python3.8-python3.14 or nodejs16.x-nodejs24.x")]
    UnsupportedRuntime(String),
    #[error("{0}")]
    InvalidConfig(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delegation_is_checked_patched_and_kept_out_of_sight_when_local() {
        let mut settings = GreengrassSettings::default();
        let text = serde_json::to_string(&settings).unwrap_or_default();
        assert!(!text.contains("Delegation"), "{text}");
        let patch: GreengrassPatch = serde_json::from_str(
            r#"{"Delegation":{"Policy":"remote-first","Target":"b","Qualifier":"$LATEST"}}"#,
        )
        .unwrap_or_default();
        patch.apply(&mut settings);
        assert_eq!(settings.delegation.policy, DelegationPolicy::RemoteFirst);
        let mut problems = Vec::new();
        settings.validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        settings.delegation = Delegation {
            policy: DelegationPolicy::Overflow,
            target: Some("no such/name".into()),
            function_name: Some("../x".into()),
            qualifier: Some("".into()),
            overflow_queue_threshold: 0,
        };
        settings.validate(&mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
        settings.delegation.target = None;
        problems.clear();
        settings.validate(&mut problems);
        assert!(problems[0].contains("Target is required with the policy overflow"));
        assert!(
            serde_json::from_str::<GreengrassPatch>(r#"{"Delegation":{"Policy":"often"}}"#)
                .is_err()
        );
    }

    #[test]
    fn names_that_are_path_components_are_refused() {
        for bad in [".", "..", "", "a/b", "../etc", "a\0b", &"x".repeat(300)] {
            assert!(FunctionName::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["hello", "com.example.Hello", "a..b", "_x-1"] {
            assert!(FunctionName::parse(good).is_ok(), "{good:?}");
        }
    }

    fn config() -> FunctionConfig {
        FunctionConfig {
            runtime: Runtime::Python { minor: 11 },
            handler: Some("app.handler".into()),
            timeout_seconds: 3,
            timeout_ms: None,
            memory_size_mb: 128,
            environment: BTreeMap::new(),
            description: String::new(),
            role: String::new(),
            greengrass: GreengrassSettings::default(),
            layers: Vec::new(),
        }
    }

    #[test]
    fn names_follow_aws_rules() {
        assert!(FunctionName::parse("my-fn_1").is_ok());
        assert!(FunctionName::parse("").is_err());
        assert!(FunctionName::parse("a/b").is_err());
        assert!(FunctionName::parse("has space").is_err());
        assert!(FunctionName::parse(&"x".repeat(65)).is_err());
        assert!(FunctionName::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn runtimes_round_trip() {
        for id in [
            "provided",
            "provided.al2",
            "provided.al2023",
            "python3.8",
            "python3.13",
            "nodejs20.x",
        ] {
            assert_eq!(Runtime::parse(id).map(|r| r.id()), Ok(id.to_owned()));
        }
        for id in [
            "python2.7",
            "python3",
            "nodejs",
            "java21",
            "nodejs20",
            "go1.x",
        ] {
            assert!(Runtime::parse(id).is_err(), "{id}");
        }
    }

    #[test]
    fn a_millisecond_timeout_is_within_the_seconds_and_optional_in_stored_records() {
        let mut c = config();
        assert_eq!(c.timeout(), std::time::Duration::from_secs(3));
        c.timeout_ms = Some(2500);
        assert_eq!(c.timeout(), std::time::Duration::from_millis(2500));
        assert!(c.validate().is_ok());
        for bad in [0, 3001] {
            c.timeout_ms = Some(bad);
            assert!(c.validate().is_err(), "{bad}");
        }
        let mut stored = serde_json::to_value(config()).unwrap();
        assert!(stored.get("timeout_ms").is_none(), "not written when unset");
        stored.as_object_mut().unwrap().remove("timeout_ms");
        let read: FunctionConfig = serde_json::from_value(stored).unwrap();
        assert_eq!(read.timeout_ms, None, "records from before it read back");
    }

    #[test]
    fn validation_names_every_problem() {
        let mut c = config();
        c.timeout_seconds = 0;
        c.memory_size_mb = 64;
        c.environment.insert("AWS_REGION".into(), "x".into());
        c.environment.insert("1BAD".into(), "x".into());
        let Err(FunctionError::InvalidConfig(msg)) = c.validate() else {
            panic!("expected invalid config");
        };
        assert!(msg.contains("Timeout"), "{msg}");
        assert!(msg.contains("MemorySize"), "{msg}");
        assert!(msg.contains("AWS_REGION"), "{msg}");
        assert!(msg.contains("1BAD"), "{msg}");
    }

    #[test]
    fn container_settings_are_checked() {
        let mut c = config();
        c.greengrass.isolation = Isolation::GreengrassContainer(ContainerParams {
            memory_size_kib: 1024,
            mount_ro_sysfs: false,
            volumes: vec![Volume {
                source: "/data/../etc".into(),
                destination: "/proc/x".into(),
                permission: Access::ReadWrite,
                add_group_owner: false,
            }],
            devices: vec![Device {
                path: "/etc/passwd".into(),
                permission: Access::ReadOnly,
                add_group_owner: false,
            }],
        });
        let Err(FunctionError::InvalidConfig(msg)) = c.validate() else {
            panic!("expected invalid config");
        };
        assert!(msg.contains("at least 2048 KB, got 1024"), "{msg}");
        assert!(msg.contains("\"/data/../etc\""), "{msg}");
        assert!(msg.contains("\"/proc/x\" may not be under /proc"), "{msg}");
        assert!(msg.contains("device path \"/etc/passwd\""), "{msg}");
        let Isolation::GreengrassContainer(params) = &mut c.greengrass.isolation else {
            unreachable!()
        };
        params.memory_size_kib = 2048;
        params.volumes[0].source = "/var/data".into();
        params.volumes[0].destination = "/data".into();
        params.devices[0].path = "/dev/video0".into();
        assert_eq!(c.validate(), Ok(()));
        let stored = serde_json::to_string(&c.greengrass).unwrap();
        let back: GreengrassSettings = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, c.greengrass);
        let old: GreengrassSettings = serde_json::from_str(r#"{"Pinned":false}"#).unwrap();
        assert_eq!(
            old.isolation,
            Isolation::NoContainer,
            "records from before stay plain"
        );
    }

    #[test]
    fn greengrass_defaults_match_the_reference() {
        let g = GreengrassSettings::default();
        assert!(g.pinned);
        assert_eq!(
            (
                g.max_instances_count,
                g.max_queue_size,
                g.max_idle_time_in_seconds,
                g.status_timeout_in_seconds
            ),
            (100, 1000, 60, 60)
        );
        let patch: GreengrassPatch = serde_json::from_str(r#"{"Pinned":false}"#).unwrap();
        let mut settings = GreengrassSettings {
            max_queue_size: 5,
            ..GreengrassSettings::default()
        };
        patch.apply(&mut settings);
        assert!(!settings.pinned);
        assert_eq!(settings.max_queue_size, 5, "keys left out keep their value");
        assert!(serde_json::from_str::<GreengrassPatch>(r#"{"Pined":false}"#).is_err());
    }
}
