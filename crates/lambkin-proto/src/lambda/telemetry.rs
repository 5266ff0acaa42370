//! The Telemetry API (`PUT /2022-07-01/telemetry`) and the older Logs API
//! (`PUT /2020-08-15/logs`) on an instance's Runtime API: the subscription request, its
//! validation with AWS's ranges and defaults, the refusals, and the records Lambda POSTs to a
//! subscriber (`[{"time","type","record"}, …]`, or one JSON object per line over TCP).

use serde::{Deserialize, Serialize};

pub const TELEMETRY_PATH: &str = "/2022-07-01/telemetry";
pub const LOGS_PATH: &str = "/2020-08-15/logs";

/// Which of the two subscription APIs a request came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Telemetry,
    Logs,
}

impl Api {
    /// The API a path names (with or without a trailing slash), if any.
    pub fn from_path(path: &str) -> Option<Self> {
        match path.strip_suffix('/').unwrap_or(path) {
            TELEMETRY_PATH => Some(Self::Telemetry),
            LOGS_PATH => Some(Self::Logs),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Telemetry => "Telemetry API",
            Self::Logs => "Logs API",
        }
    }
}

/// The kinds of records a subscriber takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordType {
    Platform,
    Function,
    Extension,
}

/// `maxItems`: 1000–10000, 10000 by default.
pub const MAX_ITEMS: (u32, u32, u32) = (1_000, 10_000, 10_000);
/// `maxBytes`: 262144–1048576, 262144 by default.
pub const MAX_BYTES: (u32, u32, u32) = (262_144, 1_048_576, 262_144);
/// `timeoutMs`: 25–30000, 1000 by default.
pub const TIMEOUT_MS: (u32, u32, u32) = (25, 30_000, 1_000);

/// How a subscriber's records are batched, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffering {
    pub max_items: u32,
    pub max_bytes: u32,
    pub timeout_ms: u32,
}

impl Default for Buffering {
    fn default() -> Self {
        Self {
            max_items: MAX_ITEMS.2,
            max_bytes: MAX_BYTES.2,
            timeout_ms: TIMEOUT_MS.2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Tcp,
}

/// Where records go: a loopback listener of the instance (checked by the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub protocol: Protocol,
    /// The host name as written (`sandbox.localdomain`, `localhost` or `127.0.0.1`).
    pub host: String,
    pub port: u16,
    /// The HTTP request target (`/` when the URI names none).
    pub path: String,
}

/// A validated subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub api: Api,
    pub types: Vec<RecordType>,
    pub buffering: Buffering,
    pub destination: Destination,
}

/// What a subscription is refused for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The body is not a valid subscription (AWS's `ValidationError`, 400).
    #[error("{0}")]
    Validation(String),
    /// The extension subscribed with the other API already: AWS refuses a mix (with a type
    /// it does not document; this one is ours).
    #[error("{0}")]
    Clash(String),
}

impl SubscriptionError {
    pub fn status(&self) -> u16 {
        400
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Validation(_) => "ValidationError",
            Self::Clash(_) => "Telemetry.SubscriptionClash",
        }
    }
}

/// The host names that mean the instance itself.
pub const LOCAL_HOSTS: [&str; 3] = ["sandbox.localdomain", "localhost", "127.0.0.1"];

/// The request as sent; fields Lambkin does not know are ignored, as newer clients send more.
#[derive(Debug, Deserialize)]
struct RawRequest {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<String>,
    #[serde(default)]
    types: Option<Vec<String>>,
    buffering: Option<RawBuffering>,
    destination: Option<RawDestination>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBuffering {
    max_items: Option<i64>,
    max_bytes: Option<i64>,
    timeout_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct RawDestination {
    protocol: Option<String>,
    #[serde(rename = "URI")]
    uri: Option<String>,
}

fn invalid(message: impl Into<String>) -> SubscriptionError {
    SubscriptionError::Validation(message.into())
}

fn in_range(
    name: &str,
    value: Option<i64>,
    (min, max, default): (u32, u32, u32),
) -> Result<u32, SubscriptionError> {
    match value {
        None => Ok(default),
        Some(v) if v >= i64::from(min) && v <= i64::from(max) => Ok(v as u32),
        Some(v) => Err(invalid(format!(
            "buffering.{name} must be between {min} and {max} (got {v})"
        ))),
    }
}

impl Subscription {
    /// Parses and validates a subscription request's body as `api` reads it.
    pub fn parse(api: Api, body: &[u8]) -> Result<Self, SubscriptionError> {
        let raw: RawRequest = serde_json::from_slice(body)
            .map_err(|e| invalid(format!("invalid subscription request: {e}")))?;
        match (api, raw.schema_version.as_deref()) {
            (Api::Telemetry, Some("2022-07-01" | "2022-12-13" | "2025-01-29")) => {}
            (Api::Telemetry, Some(other)) => {
                return Err(invalid(format!(
                    "schemaVersion {other:?} is not one of 2022-07-01, 2022-12-13, 2025-01-29"
                )))
            }
            (Api::Telemetry, None) => return Err(invalid("schemaVersion is required")),
            // The Logs API's versions (2020-08-15, 2021-03-18) differ only in what AWS adds.
            (Api::Logs, _) => {}
        }
        let types = match raw.types {
            None => return Err(invalid("types is required")),
            Some(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    "platform" => Ok(RecordType::Platform),
                    "function" => Ok(RecordType::Function),
                    "extension" => Ok(RecordType::Extension),
                    other => Err(invalid(format!(
                        "types: {other:?} is not one of platform, function, extension"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let buffering = match raw.buffering {
            None => Buffering::default(),
            Some(b) => Buffering {
                max_items: in_range("maxItems", b.max_items, MAX_ITEMS)?,
                max_bytes: in_range("maxBytes", b.max_bytes, MAX_BYTES)?,
                timeout_ms: in_range("timeoutMs", b.timeout_ms, TIMEOUT_MS)?,
            },
        };
        let destination = raw
            .destination
            .ok_or_else(|| invalid("destination is required"))?;
        let protocol = match destination.protocol.as_deref() {
            Some("HTTP") => Protocol::Http,
            Some("TCP") => Protocol::Tcp,
            Some(other) => {
                return Err(invalid(format!(
                    "destination.protocol {other:?} is not one of HTTP, TCP"
                )))
            }
            None => return Err(invalid("destination.protocol is required")),
        };
        let uri = destination
            .uri
            .ok_or_else(|| invalid("destination.URI is required"))?;
        let destination = parse_uri(protocol, &uri)?;
        Ok(Self {
            api,
            types,
            buffering,
            destination,
        })
    }

    pub fn wants(&self, kind: RecordType) -> bool {
        self.types.contains(&kind)
    }
}

/// `http://HOST:PORT/PATH` or `tcp://HOST:PORT` (HTTP's `PORT` defaults to 80), `HOST` one of
/// [`LOCAL_HOSTS`]: records never leave the instance.
fn parse_uri(protocol: Protocol, uri: &str) -> Result<Destination, SubscriptionError> {
    let scheme = match protocol {
        Protocol::Http => "http://",
        Protocol::Tcp => "tcp://",
    };
    let rest = uri
        .strip_prefix(scheme)
        .ok_or_else(|| invalid(format!("destination.URI {uri:?} must start with {scheme}")))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    if protocol == Protocol::Tcp && path != "/" {
        return Err(invalid(format!(
            "destination.URI {uri:?}: a TCP URI has no path"
        )));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid(format!("destination.URI {uri:?}: bad port")))?,
        ),
        None if protocol == Protocol::Http => (authority, 80),
        None => return Err(invalid(format!("destination.URI {uri:?} names no port"))),
    };
    if !LOCAL_HOSTS.contains(&host.to_ascii_lowercase().as_str()) {
        return Err(invalid(format!(
            "destination.URI {uri:?}: the destination must be in the execution environment (sandbox.localdomain)"
        )));
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(invalid(format!("destination.URI {uri:?}: bad path")));
    }
    Ok(Destination {
        protocol,
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

/// How an environment was initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitType {
    OnDemand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Init,
    Invoke,
}

/// An invocation's or an init's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Error,
    Failure,
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceContext {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitReportMetrics {
    pub duration_ms: f64,
}

/// A timed part of an invocation, as `platform.runtimeDone` carries them (schema 2022-12-13
/// on): `responseLatency`, from the event handed to the runtime to the first of its answer;
/// `responseDuration`, from there to the answer's end.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    pub name: &'static str,
    /// ISO 8601 UTC, milliseconds.
    pub start: String,
    pub duration_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeDoneMetrics {
    pub duration_ms: f64,
    pub produced_bytes: u64,
}

/// The numbers of an invocation's REPORT line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportMetrics {
    pub duration_ms: f64,
    pub billed_duration_ms: u64,
    #[serde(rename = "memorySizeMB")]
    pub memory_size_mb: u32,
    #[serde(rename = "maxMemoryUsedMB")]
    pub max_memory_used_mb: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_duration_ms: Option<f64>,
}

/// A record's `type` and `record`, as AWS shapes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "record")]
pub enum Record {
    #[serde(rename = "function")]
    Function(String),
    #[serde(rename = "extension")]
    Extension(String),
    #[serde(rename = "platform.initStart", rename_all = "camelCase")]
    InitStart {
        initialization_type: InitType,
        phase: Phase,
    },
    #[serde(rename = "platform.initRuntimeDone", rename_all = "camelCase")]
    InitRuntimeDone {
        initialization_type: InitType,
        phase: Phase,
        status: Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_type: Option<String>,
    },
    #[serde(rename = "platform.initReport", rename_all = "camelCase")]
    InitReport {
        initialization_type: InitType,
        phase: Phase,
        metrics: InitReportMetrics,
    },
    #[serde(rename = "platform.start", rename_all = "camelCase")]
    Start {
        request_id: String,
        version: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        tracing: Option<TraceContext>,
    },
    #[serde(rename = "platform.runtimeDone", rename_all = "camelCase")]
    RuntimeDone {
        request_id: String,
        status: Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_type: Option<String>,
        metrics: RuntimeDoneMetrics,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        spans: Vec<Span>,
    },
    /// The Logs API's form of the end of an invocation.
    #[serde(rename = "platform.end", rename_all = "camelCase")]
    End { request_id: String },
    #[serde(rename = "platform.report", rename_all = "camelCase")]
    Report {
        request_id: String,
        status: Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_type: Option<String>,
        metrics: ReportMetrics,
    },
    #[serde(rename = "platform.extension", rename_all = "camelCase")]
    PlatformExtension {
        name: String,
        state: &'static str,
        events: Vec<String>,
    },
    #[serde(rename = "platform.telemetrySubscription", rename_all = "camelCase")]
    TelemetrySubscription {
        name: String,
        state: &'static str,
        types: Vec<RecordType>,
    },
    #[serde(rename = "platform.logsSubscription", rename_all = "camelCase")]
    LogsSubscription {
        name: String,
        state: &'static str,
        types: Vec<RecordType>,
    },
    #[serde(rename = "platform.logsDropped", rename_all = "camelCase")]
    LogsDropped {
        reason: &'static str,
        dropped_records: u64,
        dropped_bytes: u64,
    },
}

/// `platform.logsDropped`'s reason, as AWS words it.
pub const DROPPED_REASON: &str =
    "Some logs were dropped because the downstream consumer is slower than the logs production rate";

impl Record {
    /// The kind of subscription that takes this record.
    pub fn kind(&self) -> RecordType {
        match self {
            Self::Function(_) => RecordType::Function,
            Self::Extension(_) => RecordType::Extension,
            _ => RecordType::Platform,
        }
    }

    /// About how many bytes the record takes on the wire (for `maxBytes` and the drop count).
    pub fn approx_len(&self) -> usize {
        match self {
            Self::Function(line) | Self::Extension(line) => line.len() + 64,
            _ => 256,
        }
    }

    /// The record as `api` sends it: the Logs API knows no init phase records, ends an
    /// invocation with `platform.end` and names its subscription record differently.
    pub fn for_api(self, api: Api) -> Option<Self> {
        if api == Api::Telemetry {
            return Some(self);
        }
        match self {
            Self::InitStart { .. } | Self::InitRuntimeDone { .. } | Self::InitReport { .. } => None,
            Self::RuntimeDone { request_id, .. } => Some(Self::End { request_id }),
            Self::TelemetrySubscription { name, state, types } => {
                Some(Self::LogsSubscription { name, state, types })
            }
            other => Some(other),
        }
    }
}

/// One record with its time (`2022-10-21T14:05:03.165Z`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event<'a> {
    pub time: &'a str,
    #[serde(flatten)]
    pub record: &'a Record,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn parse(body: serde_json::Value) -> Result<Subscription, SubscriptionError> {
        Subscription::parse(Api::Telemetry, body.to_string().as_bytes())
    }

    #[test]
    fn a_subscription_takes_aws_defaults_and_ranges() {
        let s = parse(
            json!({"schemaVersion": "2022-12-13", "types": ["platform", "function"],
            "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:8080/in"}}),
        )
        .unwrap();
        assert_eq!(
            s.buffering,
            Buffering {
                max_items: 10_000,
                max_bytes: 262_144,
                timeout_ms: 1_000
            }
        );
        assert_eq!(s.destination.port, 8080);
        assert_eq!(s.destination.path, "/in");
        assert!(s.wants(RecordType::Function) && !s.wants(RecordType::Extension));
        let tcp = parse(
            json!({"schemaVersion": "2025-01-29", "types": ["extension"],
            "buffering": {"maxItems": 1000, "maxBytes": 1048576, "timeoutMs": 25},
            "destination": {"protocol": "TCP", "URI": "tcp://127.0.0.1:9999"}}),
        )
        .unwrap();
        assert_eq!(tcp.destination.protocol, Protocol::Tcp);
        for (buffering, field) in [
            (json!({"maxItems": 999}), "maxItems"),
            (json!({"maxBytes": 1048577}), "maxBytes"),
            (json!({"timeoutMs": 24}), "timeoutMs"),
            (json!({"timeoutMs": 30001}), "timeoutMs"),
        ] {
            let e = parse(
                json!({"schemaVersion": "2022-07-01", "types": ["platform"], "buffering": buffering,
                "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:1"}}),
            )
            .unwrap_err();
            assert_eq!(e.error_type(), "ValidationError");
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn a_destination_outside_the_instance_is_refused() {
        for uri in [
            "http://10.0.0.1:80/",
            "http://example.com/",
            "http://sandbox.localdomain.evil:80/",
            "http://user@127.0.0.1:80/",
            "http://127.0.0.2:80/",
            "ftp://127.0.0.1:21",
        ] {
            let e = parse(json!({"schemaVersion": "2022-07-01", "types": ["platform"],
                "destination": {"protocol": "HTTP", "URI": uri}}))
            .unwrap_err();
            assert_eq!(e.error_type(), "ValidationError", "{uri}");
        }
        assert!(parse(json!({"schemaVersion": "2019-01-01", "types": [],
            "destination": {"protocol": "HTTP", "URI": "http://127.0.0.1:1"}}))
        .is_err());
    }

    proptest::proptest! {
        /// Any body, from any extension, is a subscription or a refusal: never a panic.
        #[test]
        fn any_body_parses_or_is_refused(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = Subscription::parse(Api::Telemetry, &body);
            let _ = Subscription::parse(Api::Logs, &body);
        }

        #[test]
        fn any_uri_stays_on_the_loopback(uri in "(http|tcp)://[a-z0-9.:@/%-]{0,40}") {
            let body = json!({"schemaVersion": "2022-07-01", "types": ["platform"],
                "destination": {"protocol": "HTTP", "URI": uri}});
            if let Ok(s) = parse(body) {
                proptest::prop_assert!(LOCAL_HOSTS.contains(&s.destination.host.to_ascii_lowercase().as_str()));
            }
        }
    }

    #[test]
    fn records_are_aws_shapes() {
        let report = Record::Report {
            request_id: "r".into(),
            status: Status::Success,
            error_type: None,
            metrics: ReportMetrics {
                duration_ms: 1.5,
                billed_duration_ms: 2,
                memory_size_mb: 128,
                max_memory_used_mb: 20,
                init_duration_ms: Some(30.0),
            },
        };
        let event = Event {
            time: "2022-10-21T14:05:03.165Z",
            record: &report,
        };
        assert_eq!(
            serde_json::to_value(event).unwrap(),
            json!({"time": "2022-10-21T14:05:03.165Z", "type": "platform.report", "record": {
                "requestId": "r", "status": "success", "metrics": {"durationMs": 1.5,
                "billedDurationMs": 2, "memorySizeMB": 128, "maxMemoryUsedMB": 20, "initDurationMs": 30.0}}})
        );
        let line = Record::Function("hello".into());
        assert_eq!(
            serde_json::to_value(Event {
                time: "t",
                record: &line
            })
            .unwrap(),
            json!({"time": "t", "type": "function", "record": "hello"})
        );
        let done = Record::RuntimeDone {
            request_id: "r".into(),
            status: Status::Error,
            error_type: None,
            metrics: RuntimeDoneMetrics {
                duration_ms: 1.0,
                produced_bytes: 3,
            },
            spans: vec![Span {
                name: "responseLatency",
                start: "2026-12-07T10:00:00.000Z".into(),
                duration_ms: 0.5,
            }],
        };
        assert_eq!(
            serde_json::to_value(&done).unwrap()["record"]["spans"],
            json!([{"name": "responseLatency", "start": "2026-12-07T10:00:00.000Z", "durationMs": 0.5}])
        );
        assert_eq!(
            done.for_api(Api::Logs),
            Some(Record::End {
                request_id: "r".into()
            })
        );
    }
}
