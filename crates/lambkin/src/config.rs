//! The host's configuration (`ROOT/config.toml` or `--config`), parsed, validated and frozen
//! before any socket is bound. Unknown keys are errors; every problem is named at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct HostConfig {
    /// The Invoke API listener.
    pub listen: SocketAddr,
    /// `[api]`: how callers of the Lambda API are authenticated.
    pub api: ApiConfig,
    /// `AWS_REGION` given to functions and used in ARNs.
    pub region: String,
    /// The account id used in ARNs.
    pub account_id: String,
    /// The device's AWS IoT thing name (`{iot:thingName}`, `AWS_IOT_THING_NAME`).
    pub thing_name: String,
    pub lambda: LambdaConfig,
    /// `[run_with_default]`: whom components run as when their deployment names no one, and
    /// API functions.
    pub run_with_default: RunWithDefault,
    /// `[system_resource_limits]`: generic components' limits when their deployment gives none.
    pub system_resource_limits: SystemResourceLimits,
    /// The MQTT broker (AWS IoT Core or any MQTT 5 broker); none: IoT Core operations fail.
    pub mqtt: Option<MqttConfig>,
    /// The token exchange service's credential source; none: it answers that none is set.
    pub tes: Option<TesConfig>,
    /// `[openwhisk]`: the OpenWhisk API's kinds.
    pub openwhisk: OpenWhiskConfig,
    /// `[mqtt_invoke]`: the functions that may be invoked over MQTT.
    pub mqtt_invoke: MqttInvokeConfig,
    /// `[metrics]`: `/metrics` and the counters behind it.
    pub metrics: MetricsConfig,
    /// `[remote_targets.NAME]`: Lambda-compatible Invoke endpoints a function may delegate
    /// its invocations to (`Greengrass.Delegation`).
    pub remote_targets: std::collections::BTreeMap<String, RemoteTargetConfig>,
}

/// `[mqtt_invoke]`: invoke over MQTT (`crate::mqtt_invoke`), MQTT 5 request/response on
/// `lambkin/THING/functions/NAME/invoke` through the `[mqtt]` broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct MqttInvokeConfig {
    /// The functions that answer requests over MQTT (besides what the broker's policies
    /// allow); empty (the default): none, and the host does not subscribe.
    pub functions: Vec<String>,
}

impl MqttInvokeConfig {
    fn problems(&self, config: &HostConfig, problems: &mut Vec<String>) {
        if self.functions.is_empty() {
            return;
        }
        for name in &self.functions {
            if lambkin_proto::lambda::function::FunctionName::parse(name).is_err() {
                problems.push(format!(
                    "mqtt_invoke.functions: {name:?} is not a function name"
                ));
            }
        }
        match &config.mqtt {
            None => problems.push("mqtt_invoke.functions needs an [mqtt] broker".to_owned()),
            Some(mqtt) if mqtt.version == MqttVersion::Mqtt3 => problems.push(
                "mqtt_invoke.functions needs MQTT 5 (its Response Topic and Correlation Data): \
                 [mqtt] version is \"mqtt3\", which has no request/response"
                    .to_owned(),
            ),
            Some(_) => {}
        }
        if config.thing_name.contains(['/', '+', '#']) {
            problems.push(format!(
                "mqtt_invoke.functions: thing_name {:?} is a level of the request topics and may not contain '/', '+' or '#'",
                config.thing_name
            ));
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct MetricsConfig {
    /// `true` (default): functions keep their counters and `/metrics` answers; `false`: no
    /// counter is kept on the invoke path and `/metrics` is not served (404).
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[remote_targets.NAME]`: a Lambda-compatible Invoke endpoint (AWS Lambda in a region, or
/// another Lambkin host's API) and what its requests are signed with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RemoteTargetConfig {
    /// `https://lambda.REGION.amazonaws.com`, or `http(s)://HOST:PORT` of another host.
    pub endpoint: String,
    /// The region requests are signed for; default: the host's `region`.
    #[serde(default)]
    pub region: Option<String>,
    /// Where the signing key comes from.
    pub credentials: RemoteCredentialSource,
    /// `static`: the key itself (and a session token, for temporary credentials).
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub session_token: Option<String>,
    /// `file`: a shared-credentials file (`aws_access_key_id`, `aws_secret_access_key` under a
    /// `[profile]`), read at each request, so a new key takes effect at once.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `file`: the profile; default `default`.
    #[serde(default)]
    pub profile: Option<String>,
    /// `https`: a PEM CA to trust instead of the system's roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// How long connecting (and the TLS handshake) may take before the target counts as
    /// unreachable.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long the target may take to answer beyond the function's own timeout.
    #[serde(default = "default_answer_slack_ms")]
    pub answer_slack_ms: u64,
    /// The longest wait between two attempts to hand a delegated `Event` to the target.
    #[serde(default = "default_event_retry_max_ms")]
    pub event_retry_max_ms: u64,
}

fn default_connect_timeout_ms() -> u64 {
    2000
}
fn default_answer_slack_ms() -> u64 {
    5000
}
fn default_event_retry_max_ms() -> u64 {
    30_000
}

/// `credentials` of a `[remote_targets.NAME]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteCredentialSource {
    /// The token exchange service's source (`[tes]`): on a production device, the IoT role
    /// alias's temporary credentials.
    Tes,
    Static,
    File,
}

/// A remote target's endpoint, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEndpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl RemoteTargetConfig {
    /// `endpoint` as scheme, host and port.
    pub fn address(&self) -> Result<RemoteEndpoint, String> {
        let bad = |why: &str| {
            format!(
                "endpoint {:?} {why}; write https://lambda.REGION.amazonaws.com or \
                 http(s)://HOST:PORT",
                self.endpoint
            )
        };
        let uri: http::Uri = self.endpoint.parse().map_err(|_| bad("is not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("must start with https:// or http://")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("has no host"))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("may not have a path"));
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(RemoteEndpoint {
            tls,
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            host,
        })
    }

    fn problems(&self, name: &str, has_tes: bool, problems: &mut Vec<String>) {
        let at = format!("remote_targets.{name}");
        if !lambkin_proto::lambda::function::Delegation::is_target_name(name) {
            problems.push(format!(
                "{at}: a target's name must be 1-64 letters, digits, '-' or '_'"
            ));
        }
        let endpoint = self.address();
        if let Err(e) = &endpoint {
            problems.push(format!("{at}.{e}"));
        }
        if let Some(region) = &self.region {
            if region.is_empty()
                || !region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                problems.push(format!(
                    "{at}.region {region:?} is not a region name such as us-east-1"
                ));
            }
        }
        let given = [
            ("access_key_id", self.access_key_id.is_some()),
            ("secret_access_key", self.secret_access_key.is_some()),
            ("session_token", self.session_token.is_some()),
            ("path", self.path.is_some()),
            ("profile", self.profile.is_some()),
        ];
        let (source, required, optional): (&str, &[&str], &[&str]) = match self.credentials {
            RemoteCredentialSource::Tes => ("tes", &[], &[]),
            RemoteCredentialSource::Static => (
                "static",
                &["access_key_id", "secret_access_key"],
                &["session_token"],
            ),
            RemoteCredentialSource::File => ("file", &["path"], &["profile"]),
        };
        for (key, is_given) in given {
            if required.contains(&key) && !is_given {
                problems.push(format!(
                    "{at}.{key} is required with credentials = \"{source}\""
                ));
            }
            if is_given && !required.contains(&key) && !optional.contains(&key) {
                problems.push(format!(
                    "{at}.{key} does not apply to credentials = \"{source}\""
                ));
            }
        }
        if self.credentials == RemoteCredentialSource::Tes && !has_tes {
            problems.push(format!(
                "{at}: credentials = \"tes\" needs a [tes] section (the token exchange service's source)"
            ));
        }
        for (key, value) in [
            ("access_key_id", &self.access_key_id),
            ("secret_access_key", &self.secret_access_key),
            ("profile", &self.profile),
        ] {
            if value.as_deref().is_some_and(str::is_empty) {
                problems.push(format!("{at}.{key} may not be empty"));
            }
        }
        if self.ca.is_some() && endpoint.is_ok_and(|e| !e.tls) {
            problems.push(format!("{at}.ca applies to an https:// endpoint only"));
        }
        if self.connect_timeout_ms == 0 {
            problems.push(format!("{at}.connect_timeout_ms must be at least 1"));
        }
        if self.event_retry_max_ms == 0 {
            problems.push(format!("{at}.event_retry_max_ms must be at least 1"));
        }
    }

    fn resolve_paths(&mut self, dir: &Path) {
        for path in [&mut self.path, &mut self.ca].into_iter().flatten() {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn answer_slack(&self) -> Duration {
        Duration::from_millis(self.answer_slack_ms)
    }
    pub fn event_retry_max(&self) -> Duration {
        Duration::from_millis(self.event_retry_max_ms)
    }
}

/// `[openwhisk]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct OpenWhiskConfig {
    /// `[openwhisk.kinds]`: OpenWhisk kind → Lambda runtime id, over the built-in table
    /// (`lambkin_proto::openwhisk::KindTable`), e.g. `"nodejs:24" = "nodejs22.x"`, or a
    /// runtime with layers, `"nodejs:10" = { runtime = "nodejs20.x", layers = ["node10:1"] }`.
    pub kinds: std::collections::BTreeMap<String, lambkin_proto::openwhisk::KindEntry>,
    /// Whether a blocking invoke answers only once the activation's record is synced to disk.
    /// `false` (default, as OpenWhisk's controller answers before the record is stored): the
    /// record is appended with the next 100 ms batch, unsynced, and a crash may lose the
    /// records of the activations answered in the last moments before it (their callers have
    /// the results). Stored non-blocking activations are synced either way.
    pub sync_blocking_records: bool,
}

impl OpenWhiskConfig {
    /// The kind table this configuration makes.
    pub fn kind_table(&self) -> Result<lambkin_proto::openwhisk::KindTable, Vec<String>> {
        lambkin_proto::openwhisk::KindTable::with(&self.kinds)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct LambdaConfig {
    /// Time an instance gets between SIGTERM and SIGKILL when it is stopped.
    pub shutdown_grace_ms: u64,
    /// Time a runtime has to reach its first `/next` before the instance is killed.
    pub init_timeout_seconds: u64,
    /// Interpreter for `python3.x` runtimes; default: `python3.x`, else `python3`, from PATH.
    pub python: Option<PathBuf>,
    /// Interpreter for `nodejs*` runtimes; default: `node` from PATH.
    pub node: Option<PathBuf>,
    /// An instance answering short invocations one at a time shares the host's CPU with the
    /// host's thread (see `lambda::placement`); `false` leaves placement to the kernel.
    pub colocate_sequential: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3001)),
            api: ApiConfig::default(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            thing_name: "lambkin".into(),
            lambda: LambdaConfig::default(),
            run_with_default: RunWithDefault::default(),
            system_resource_limits: SystemResourceLimits::default(),
            mqtt: None,
            tes: None,
            openwhisk: OpenWhiskConfig::default(),
            mqtt_invoke: MqttInvokeConfig::default(),
            metrics: MetricsConfig::default(),
            remote_targets: std::collections::BTreeMap::new(),
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct ApiConfig {
    pub auth: ApiAuth,
}

/// `[api] auth`: `"sigv4"` (the default): every Lambda API request carries a Signature
/// Version 4 from a key the host knows; `"none"`: development mode, loopback listeners only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiAuth {
    #[default]
    Sigv4,
    None,
}

impl HostConfig {
    /// An unsigned API on a non-loopback address would hand the device to the network.
    pub fn check_listen(&self, listen: SocketAddr) -> Result<(), String> {
        if self.api.auth == ApiAuth::None && !listen.ip().is_loopback() {
            return Err(format!(
                "api.auth = \"none\" (development mode) is for loopback listeners only, not {listen}"
            ));
        }
        Ok(())
    }
}

impl Default for LambdaConfig {
    fn default() -> Self {
        Self {
            shutdown_grace_ms: 2000,
            init_timeout_seconds: 10,
            python: None,
            node: None,
            colocate_sequential: true,
        }
    }
}

/// `[run_with_default]` (the nucleus's `runWithDefault`): the user components run as unless
/// their deployment gives a `posixUser`, and functions made through the Lambda API. Unset:
/// `ggc_user:ggc_group` on a host that runs as root (see `crate::users`); a host that is not
/// root runs everything as itself. A user or group name that does not exist is created (a
/// system user, a system group) when the host starts as root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct RunWithDefault {
    /// `user` or `user:group`, names or numeric ids.
    pub posix_user: Option<String>,
}

/// `[system_resource_limits]` (the nucleus's `systemResourceLimits`): the CPU and memory a
/// generic component's processes may use together, unless its deployment's `runWith` gives
/// its own. Unset: unlimited.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct SystemResourceLimits {
    /// CPU time as a number of cores (`0.5`: half of one).
    pub cpus: Option<f64>,
    /// Memory in KB, as Greengrass counts it.
    pub memory: Option<u64>,
}

/// `[mqtt]`: the broker connection and the spool of messages bound for it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct MqttConfig {
    /// `mqtt://HOST[:PORT]` (default port 1883) or `mqtts://HOST[:PORT]` (8883).
    pub url: String,
    /// The protocol version: `mqtt5` (default) or `mqtt3` (3.1.1).
    #[serde(default)]
    pub version: MqttVersion,
    /// Default: the thing name.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_seconds: u64,
    /// PEM files for `mqtts://`: the CA to trust, and the device's certificate and key. A
    /// relative path is relative to the configuration file's directory.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Largest payload a publish may carry, and (with headroom) a received packet.
    #[serde(default = "default_max_message_size")]
    pub max_message_size_bytes: u32,
    /// First and longest wait between connection attempts (doubling in between).
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_ms: u64,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// How long the broker keeps the host's session (its subscriptions and the QoS 1 messages
    /// the host has not acknowledged) after the connection ends, so that they come again
    /// when the host is back; 0: a clean session at every connection. MQTT 3.1.1 has no
    /// expiry: any other value asks for a persistent session, kept as long as the broker is
    /// configured to.
    #[serde(default = "default_session_expiry")]
    pub session_expiry_seconds: u32,
    #[serde(default)]
    pub spool: SpoolConfig,
}

/// `[mqtt] version`: Greengrass's names, `mqtt5` and `mqtt3` (also `mqtt311`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MqttVersion {
    /// MQTT 5.
    #[default]
    Mqtt5,
    /// MQTT 3.1.1: MQTT 5 message properties are dropped.
    #[serde(alias = "mqtt311")]
    Mqtt3,
}

/// `[mqtt.spool]`: messages accepted for the broker, kept until it acknowledges them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct SpoolConfig {
    /// Where the spool lives (Greengrass's `spooler.storageType`).
    pub storage_type: SpoolStorage,
    pub max_size_bytes: u64,
    pub keep_qos0_when_offline: bool,
}

/// `[mqtt.spool] storage_type`: `"disk"` (default: `ROOT/state/spool.db`, survives a crash) or
/// `"memory"` (lost when the host stops; Greengrass's names `Disk` and `Memory` also accepted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpoolStorage {
    #[default]
    #[serde(alias = "Disk")]
    Disk,
    #[serde(alias = "Memory")]
    Memory,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            storage_type: SpoolStorage::Disk,
            max_size_bytes: 2_621_440,
            keep_qos0_when_offline: false,
        }
    }
}

fn default_keep_alive() -> u64 {
    60
}
fn default_max_message_size() -> u32 {
    131_072
}
fn default_reconnect_min() -> u64 {
    100
}
fn default_reconnect_max() -> u64 {
    30_000
}
/// AWS IoT Core's default persistent session expiry.
fn default_session_expiry() -> u32 {
    3600
}

/// Where the broker is, from `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl MqttConfig {
    pub fn broker(&self) -> Result<BrokerAddress, String> {
        let (tls, rest) = if let Some(rest) = self.url.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = self.url.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(format!(
                "mqtt.url {:?} must start with mqtt:// or mqtts://",
                self.url
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("mqtt.url {:?} has a bad port", self.url))?;
                (host, port)
            }
            _ => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(format!("mqtt.url {:?} has no host", self.url));
        }
        Ok(BrokerAddress {
            host: host.to_owned(),
            port,
            tls,
        })
    }

    /// Makes the TLS file paths absolute (relative to `dir`, the configuration file's
    /// directory). What they hold is checked by the MQTT client's own code
    /// (`crate::cli::load_config`), so this module needs none of it.
    fn resolve_paths(&mut self, dir: &Path) {
        for path in [&mut self.ca, &mut self.cert, &mut self.key]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }

    fn problems(&self, problems: &mut Vec<String>) {
        match self.broker() {
            Ok(broker) => {
                if broker.tls && self.ca.is_none() {
                    problems.push("mqtt.ca is required with mqtts://".to_owned());
                }
                if !broker.tls && (self.ca.is_some() || self.cert.is_some() || self.key.is_some()) {
                    problems
                        .push("mqtt.ca, mqtt.cert and mqtt.key need an mqtts:// url".to_owned());
                }
            }
            Err(problem) => problems.push(problem),
        }
        if self.cert.is_some() != self.key.is_some() {
            problems.push("mqtt.cert and mqtt.key go together".to_owned());
        }
        if self.client_id.as_deref().is_some_and(str::is_empty) {
            problems.push("mqtt.client_id may not be empty".to_owned());
        }
        if self.keep_alive_seconds < 5 || self.keep_alive_seconds > 65_535 {
            problems.push("mqtt.keep_alive_seconds must be 5-65535".to_owned());
        }
        if self.max_message_size_bytes == 0 {
            problems.push("mqtt.max_message_size_bytes must be at least 1".to_owned());
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            problems.push(
                "mqtt.reconnect_min_ms must be at least 1 and at most mqtt.reconnect_max_ms"
                    .to_owned(),
            );
        }
        if self.spool.max_size_bytes == 0 {
            problems.push("mqtt.spool.max_size_bytes must be at least 1".to_owned());
        }
    }
}

/// `[tes]`: where the token exchange service gets the AWS credentials it hands to components.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct TesConfig {
    pub source: TesSource,
    /// `static`: the keys themselves (development only).
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub session_token: Option<String>,
    /// `file`: a JSON file in the shape the endpoint answers (`AccessKeyId`, `SecretAccessKey`,
    /// optional `Token` and `Expiration`), read on every request.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `iot`: the AWS IoT credentials provider endpoint, `HOST[:PORT]` (port 443 by default).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `iot`: the role alias whose role's credentials are issued.
    #[serde(default)]
    pub role_alias: Option<String>,
    /// `iot`: PEM files: the device certificate and key, and the CA to trust (default: the
    /// system's roots). Relative paths here and in `path` are relative to the configuration
    /// file's directory.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The loopback port to listen on; 0 (default): any free port.
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub credential_retry_in_sec: CredentialRetry,
}

/// `source` of `[tes]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TesSource {
    Static,
    File,
    Iot,
}

/// `[tes.credential_retry_in_sec]`: how long a failed upstream answer is given again before
/// the next attempt, by the upstream status (Greengrass's `credentialRetryInSec`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct CredentialRetry {
    /// A 4xx answer.
    pub client_error: u64,
    /// A 5xx answer.
    pub server_error: u64,
    /// Any other status.
    pub unknown_error: u64,
}

impl Default for CredentialRetry {
    fn default() -> Self {
        Self {
            client_error: 120,
            server_error: 60,
            unknown_error: 300,
        }
    }
}

impl TesConfig {
    fn problems(&self, problems: &mut Vec<String>) {
        let given = |name: &str| -> bool {
            match name {
                "access_key_id" => self.access_key_id.is_some(),
                "secret_access_key" => self.secret_access_key.is_some(),
                "session_token" => self.session_token.is_some(),
                "path" => self.path.is_some(),
                "endpoint" => self.endpoint.is_some(),
                "role_alias" => self.role_alias.is_some(),
                "cert" => self.cert.is_some(),
                "key" => self.key.is_some(),
                "ca" => self.ca.is_some(),
                _ => false,
            }
        };
        let (source, required, optional): (&str, &[&str], &[&str]) = match self.source {
            TesSource::Static => (
                "static",
                &["access_key_id", "secret_access_key"],
                &["session_token"],
            ),
            TesSource::File => ("file", &["path"], &[]),
            TesSource::Iot => ("iot", &["endpoint", "role_alias", "cert", "key"], &["ca"]),
        };
        for name in required {
            if !given(name) {
                problems.push(format!("tes.{name} is required with source = \"{source}\""));
            }
        }
        for name in [
            "access_key_id",
            "secret_access_key",
            "session_token",
            "path",
            "endpoint",
            "role_alias",
            "cert",
            "key",
            "ca",
        ] {
            if given(name) && !required.contains(&name) && !optional.contains(&name) {
                problems.push(format!(
                    "tes.{name} does not apply to source = \"{source}\""
                ));
            }
        }
        for (name, value) in [
            ("access_key_id", &self.access_key_id),
            ("secret_access_key", &self.secret_access_key),
            ("role_alias", &self.role_alias),
        ] {
            if value.as_deref().is_some_and(str::is_empty) {
                problems.push(format!("tes.{name} may not be empty"));
            }
        }
        if let Some(endpoint) = &self.endpoint {
            if let Err(problem) = self.iot_endpoint_of(endpoint) {
                problems.push(problem);
            }
        }
    }

    /// Makes the file paths absolute (relative to `dir`, the configuration file's
    /// directory). For `iot`, the certificate, key and CA are checked by the client's own code
    /// (`crate::cli::load_config`); a `file` source's file may appear later: it is read on
    /// every request.
    fn resolve_paths(&mut self, dir: &Path) {
        for path in [&mut self.path, &mut self.cert, &mut self.key, &mut self.ca]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }

    /// `endpoint` as (host, port).
    pub fn iot_endpoint(&self) -> Result<(String, u16), String> {
        self.iot_endpoint_of(self.endpoint.as_deref().unwrap_or_default())
    }

    fn iot_endpoint_of(&self, endpoint: &str) -> Result<(String, u16), String> {
        let bad = || {
            format!(
                "tes.endpoint {endpoint:?} must be HOST or HOST:PORT, such as \
                 c1234.credentials.iot.us-east-1.amazonaws.com"
            )
        };
        let endpoint = endpoint.strip_prefix("https://").unwrap_or(endpoint);
        let endpoint = endpoint.trim_end_matches('/');
        let (host, port) = match endpoint.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
            None => (endpoint, 443),
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(bad());
        }
        Ok((host.to_owned(), port))
    }

    /// How long a failed fetch answered with `status` is answered again (0: not at all).
    pub fn retry_after(&self, status: Option<u16>) -> Duration {
        let r = &self.credential_retry_in_sec;
        Duration::from_secs(match status {
            Some(400..=499) => r.client_error,
            Some(500..=599) => r.server_error,
            Some(_) => r.unknown_error,
            None => 0,
        })
    }
}

impl LambdaConfig {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
    pub fn init_timeout(&self) -> Duration {
        Duration::from_secs(self.init_timeout_seconds)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problems}")]
    Invalid { path: PathBuf, problems: String },
}

/// Where byte `at` of a TOML text is, for an error: `line N` and, when the line is a
/// `key = value` one, the key under its table (`line 3, lambda.python`).
fn locate(text: &str, at: usize) -> String {
    let before = text.get(..at).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let table = before
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix('[')
                .and_then(|l| l.split(']').next())
                .map(|t| t.trim_matches(['[', ' ']).to_owned())
        })
        .next_back();
    match line.split_once('=') {
        Some((key, _)) if !line.starts_with('[') => {
            let key = key.trim();
            match table {
                Some(table) => format!("line {line_no}, {table}.{key}"),
                None => format!("line {line_no}, {key}"),
            }
        }
        _ => format!("line {line_no}"),
    }
}

impl HostConfig {
    /// Reads `path`; a missing file at the default location means the defaults.
    pub fn load(path: &Path, must_exist: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Self::default())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Self::from_text(&text, path)
    }

    /// Parses `text` as the configuration file at `path` would be: its relative TLS paths
    /// taken from `path`'s directory.
    pub fn from_text(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config = Self::parse(text).map_err(|problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(mqtt) = &mut config.mqtt {
            mqtt.resolve_paths(dir);
        }
        if let Some(tes) = &mut config.tes {
            tes.resolve_paths(dir);
        }
        for target in config.remote_targets.values_mut() {
            target.resolve_paths(dir);
        }
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => format!("{}: {}", locate(text, span.start), e.message()),
            None => e.message().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            problems.push(format!(
                "region {:?} is not a region name such as us-east-1",
                self.region
            ));
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(format!(
                "account_id {:?} must be 12 digits",
                self.account_id
            ));
        }
        if self.thing_name.is_empty() || self.thing_name.len() > 128 {
            problems.push(format!(
                "thing_name {:?} must be 1-128 characters",
                self.thing_name
            ));
        }
        if let Err(e) = self.check_listen(self.listen) {
            problems.push(e);
        }
        if self.lambda.init_timeout_seconds == 0 {
            problems.push("lambda.init_timeout_seconds must be at least 1".to_owned());
        }
        if let Err(e) = crate::users::check_limits(
            self.system_resource_limits.cpus,
            self.system_resource_limits.memory,
        ) {
            problems.push(format!("system_resource_limits: {e}"));
        }
        if let Some(user) = &self.run_with_default.posix_user {
            if let Err(e) = crate::users::parse_posix_user(user) {
                problems.push(format!("run_with_default.posix_user: {e}"));
            }
        }
        if let Some(mqtt) = &self.mqtt {
            mqtt.problems(&mut problems);
        }
        if let Some(tes) = &self.tes {
            tes.problems(&mut problems);
        }
        self.mqtt_invoke.problems(self, &mut problems);
        for (name, target) in &self.remote_targets {
            target.problems(name, self.tes.is_some(), &mut problems);
        }
        if let Err(kinds) = self.openwhisk.kind_table() {
            problems.extend(kinds.into_iter().map(|p| format!("openwhisk.kinds: {p}")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = HostConfig::parse("").unwrap();
        assert_eq!(c, HostConfig::default());
        let c = HostConfig::parse("listen = \"127.0.0.1:0\"\n[lambda]\nshutdown_grace_ms = 10\n")
            .unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.lambda.shutdown_grace(), Duration::from_millis(10));
    }

    #[test]
    fn mqtt_invoke_needs_an_mqtt_5_broker_and_function_names() {
        let broker = "[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n";
        let c = HostConfig::parse(&format!(
            "thing_name = \"gw\"\n[mqtt_invoke]\nfunctions = [\"echo\"]\n{broker}"
        ))
        .unwrap();
        assert_eq!(c.mqtt_invoke.functions, ["echo"]);
        assert!(HostConfig::parse("")
            .unwrap()
            .mqtt_invoke
            .functions
            .is_empty());
        let e = HostConfig::parse("[mqtt_invoke]\nfunctions = [\"echo\", \"a/b\"]\n").unwrap_err();
        assert!(e.contains("needs an [mqtt] broker"), "{e}");
        assert!(e.contains("\"a/b\" is not a function name"), "{e}");
        let e = HostConfig::parse(&format!(
            "[mqtt_invoke]\nfunctions = [\"echo\"]\n{broker}version = \"mqtt3\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("needs MQTT 5"), "{e}");
        let e = HostConfig::parse("[mqtt_invoke]\nallow = []\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn openwhisk_kinds_extend_the_built_in_table() {
        let c = HostConfig::parse("[openwhisk.kinds]\n\"nodejs:24\" = \"nodejs22.x\"\n").unwrap();
        let table = c.openwhisk.kind_table().unwrap();
        assert_eq!(
            table.resolve("nodejs:24").unwrap().1,
            Some("nodejs22.x"),
            "added"
        );
        assert!(
            table.resolve("nodejs:20").is_ok(),
            "the built-in kinds stay"
        );
        assert!(!c.openwhisk.sync_blocking_records, "unsynced unless told");
        let synced = HostConfig::parse("[openwhisk]\nsync_blocking_records = true\n").unwrap();
        assert!(synced.openwhisk.sync_blocking_records);
        let layered = HostConfig::parse(
            "[openwhisk.kinds]\n\"nodejs:10\" = { runtime = \"nodejs20.x\", layers = [\"n10:2\"] }\n",
        )
        .unwrap();
        assert_eq!(
            layered
                .openwhisk
                .kind_table()
                .unwrap()
                .layers("nodejs:10")
                .len(),
            1
        );
        let err = HostConfig::parse(
            "[openwhisk.kinds]\n\"nodejs:10\" = { runtime = \"nodejs20.x\", layers = [\"n10\"] }\n",
        )
        .unwrap_err();
        assert!(err.contains("layer \"n10\" names no version"), "{err}");
        let err = HostConfig::parse(
            "[openwhisk.kinds]\n\"java:8\" = \"java8\"\n\"python:3\" = \"nodejs20.x\"\n",
        )
        .unwrap_err();
        assert!(err.contains("openwhisk.kinds: kind \"java:8\""), "{err}");
        assert!(
            err.contains("kind \"python:3\" cannot run on \"nodejs20.x\""),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = HostConfig::parse("lisen = \"x\"").unwrap_err();
        assert!(err.contains("lisen"), "{err}");
        let err = HostConfig::parse("region = \"US East\"\naccount_id = \"1\"").unwrap_err();
        assert!(
            err.contains("region") && err.contains("account_id"),
            "{err}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_with_its_line_and_table() {
        let err =
            HostConfig::parse("region = \"us-east-1\"\n[lambda]\ncolocate_sequential = \"yes\"\n")
                .unwrap_err();
        assert!(
            err.starts_with("line 3, lambda.colocate_sequential: invalid type"),
            "{err}"
        );
        let err =
            HostConfig::parse("# [lambda]\n[mqtt]\nurl = \"mqtt://h\"\nkeep_alive_seconds = -1\n")
                .unwrap_err();
        assert!(err.starts_with("line 4, mqtt.keep_alive_seconds"), "{err}");
        let c = HostConfig::parse("[lambda]\ncolocate_sequential = false\n").unwrap();
        assert!(!c.lambda.colocate_sequential);
        assert!(HostConfig::default().lambda.colocate_sequential);
    }

    #[test]
    fn tes_table() {
        let c = HostConfig::parse(
            "[tes]\nsource = \"static\"\naccess_key_id = \"AKID\"\nsecret_access_key = \"s\"\n",
        )
        .unwrap();
        let tes = c.tes.unwrap();
        assert_eq!(tes.source, TesSource::Static);
        assert_eq!(tes.retry_after(Some(403)), Duration::from_secs(120));
        assert_eq!(tes.retry_after(Some(503)), Duration::from_secs(60));
        assert_eq!(tes.retry_after(Some(302)), Duration::from_secs(300));
        assert_eq!(tes.retry_after(None), Duration::ZERO);
        let c = HostConfig::parse(
            "[tes]\nsource = \"iot\"\nendpoint = \"x.credentials.iot.eu-west-1.amazonaws.com\"\n\
             role_alias = \"A\"\ncert = \"c\"\nkey = \"k\"\n[tes.credential_retry_in_sec]\nclient_error = 5\n",
        )
        .unwrap();
        let tes = c.tes.unwrap();
        assert_eq!(
            tes.iot_endpoint().unwrap(),
            ("x.credentials.iot.eu-west-1.amazonaws.com".to_owned(), 443)
        );
        assert_eq!(tes.retry_after(Some(404)), Duration::from_secs(5));
        let err = HostConfig::parse("[tes]\nsource = \"iot\"\npath = \"p\"\n").unwrap_err();
        assert!(
            err.contains("tes.endpoint is required")
                && err.contains("tes.role_alias is required")
                && err.contains("tes.path does not apply"),
            "{err}"
        );
        let err = HostConfig::parse("[tes]\nsource = \"vault\"\n").unwrap_err();
        assert!(err.contains("vault"), "{err}");
        let err = HostConfig::parse("[tes]\nsource = \"file\"\nendpoint = \"a b\"\n").unwrap_err();
        assert!(
            err.contains("tes.path is required") && err.contains("tes.endpoint"),
            "{err}"
        );
    }

    #[test]
    fn remote_targets_table() {
        let config = HostConfig::parse(
            r#"
            [remote_targets.cloud]
            endpoint = "https://lambda.eu-west-1.amazonaws.com"
            region = "eu-west-1"
            credentials = "static"
            access_key_id = "AKIA"
            secret_access_key = "s"
            [remote_targets.peer]
            endpoint = "http://127.0.0.1:3001"
            credentials = "file"
            path = "/r/state/credentials"
            profile = "lambkin"
            "#,
        )
        .unwrap();
        let cloud = &config.remote_targets["cloud"];
        assert_eq!(
            cloud.address().unwrap(),
            RemoteEndpoint {
                tls: true,
                host: "lambda.eu-west-1.amazonaws.com".into(),
                port: 443
            }
        );
        assert_eq!(config.remote_targets["peer"].address().unwrap().port, 3001);
        let e = HostConfig::parse(
            r#"
            [remote_targets."bad name"]
            endpoint = "ftp://x"
            credentials = "tes"
            [remote_targets.b]
            endpoint = "http://127.0.0.1:1/path"
            credentials = "static"
            path = "/x"
            ca = "/ca.pem"
            "#,
        )
        .unwrap_err();
        for problem in [
            "remote_targets.bad name: a target's name must be",
            "must start with https:// or http://",
            "credentials = \"tes\" needs a [tes] section",
            "may not have a path",
            "remote_targets.b.access_key_id is required with credentials = \"static\"",
            "remote_targets.b.path does not apply to credentials = \"static\"",
        ] {
            assert!(e.contains(problem), "{problem:?} not in {e}");
        }
        let e = HostConfig::parse("[remote_targets.b]\nendpoint = \"http://h:1\"\ncredentials = \"file\"\npath = \"/p\"\nsecret = 1\n")
            .unwrap_err();
        assert!(e.contains("unknown field `secret`"), "{e}");
    }

    #[test]
    fn mqtt_table() {
        let c = HostConfig::parse("[mqtt]\nurl = \"mqtt://127.0.0.1:1884\"\n").unwrap();
        let mqtt = c.mqtt.unwrap();
        assert_eq!(mqtt.spool.max_size_bytes, 2_621_440);
        assert_eq!(
            mqtt.broker().unwrap(),
            BrokerAddress {
                host: "127.0.0.1".into(),
                port: 1884,
                tls: false
            }
        );
        let c = HostConfig::parse("[mqtt]\nurl = \"mqtts://h\"\nca = \"ca.pem\"\n").unwrap();
        assert_eq!(c.mqtt.unwrap().broker().unwrap().port, 8883);
        let err = HostConfig::parse("[mqtt]\nurl = \"mqtt://h\"\nport = 3\n").unwrap_err();
        assert!(err.contains("port"), "{err}");
        let err =
            HostConfig::parse("[mqtt]\nurl = \"http://h\"\nkeep_alive_seconds = 1\n").unwrap_err();
        assert!(
            err.contains("mqtt.url") && err.contains("keep_alive"),
            "{err}"
        );
        let err = HostConfig::parse("[mqtt]\nurl = \"mqtts://h\"\ncert = \"c\"\n").unwrap_err();
        assert!(err.contains("mqtt.ca") && err.contains("mqtt.key"), "{err}");
    }

    #[test]
    fn mqtt_version() {
        let version = |v: &str| {
            HostConfig::parse(&format!("[mqtt]\nurl = \"mqtt://h\"\n{v}"))
                .map(|c| c.mqtt.unwrap().version)
        };
        assert_eq!(version(""), Ok(MqttVersion::Mqtt5));
        assert_eq!(version("version = \"mqtt5\""), Ok(MqttVersion::Mqtt5));
        assert_eq!(version("version = \"mqtt3\""), Ok(MqttVersion::Mqtt3));
        assert_eq!(version("version = \"mqtt311\""), Ok(MqttVersion::Mqtt3));
        let err = version("version = \"mqtt4\"").unwrap_err();
        assert!(err.contains("mqtt4") && err.contains("mqtt5"), "{err}");
    }

    #[test]
    fn spool_storage_type() {
        let storage = |v: &str| {
            HostConfig::parse(&format!("[mqtt]\nurl = \"mqtt://h\"\n[mqtt.spool]\n{v}"))
                .map(|c| c.mqtt.unwrap().spool.storage_type)
        };
        assert_eq!(storage(""), Ok(SpoolStorage::Disk));
        assert_eq!(
            storage("storage_type = \"memory\""),
            Ok(SpoolStorage::Memory)
        );
        assert_eq!(storage("storage_type = \"Disk\""), Ok(SpoolStorage::Disk));
        let err = storage("storage_type = \"tape\"").unwrap_err();
        assert!(err.contains("tape"), "{err}");
    }

    #[test]
    fn tls_file_paths_are_relative_to_the_configuration_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[mqtt]\nurl = \"mqtts://h\"\nca = \"certs/ca.pem\"\n",
        )
        .unwrap();
        let config = HostConfig::load(&path, true).unwrap();
        assert_eq!(
            config.mqtt.and_then(|m| m.ca),
            Some(dir.path().join("certs/ca.pem"))
        );
    }
}
