//! Authorization of IPC operations (`greengrass-ipc.md` §5), as a pure decision over a
//! component's parsed `accessControl` policy.
//!
//! A component's policy grants only that component's own calls (the principal is always the
//! policy's owner). [`check_for`] says what an operation needs; [`authorize`] decides and, when
//! it denies, gives the exact error the nucleus sends (§5.4).

use std::fmt;

use serde_json::{Map, Value};

use super::error::IpcError;
use super::operation::Operation;
use crate::recipe::ComponentName;

/// IPC service ids: the destinations (top-level keys) of `accessControl`.
pub const PUBSUB: &str = "aws.greengrass.ipc.pubsub";
pub const MQTT_PROXY: &str = "aws.greengrass.ipc.mqttproxy";
pub const CLI: &str = "aws.greengrass.Cli";
pub const LIFECYCLE: &str = "aws.greengrass.ipc.lifecycle";
pub const SECRET_MANAGER: &str = "aws.greengrass.SecretManager";
pub const SHADOW_MANAGER: &str = "aws.greengrass.ShadowManager";
pub const COMPONENT_METRIC: &str = "aws.greengrass.ipc.componentmetric";
pub const CLIENT_DEVICES_AUTH: &str = "aws.greengrass.clientdevices.Auth";

/// Lambkin's own destination: a component's calls to the host's Lambda API (Invoke and
/// management), with IAM's action names as operations and function names (or `*`) as
/// resources.
pub const LAMBDA_API: &str = "lambkin.lambda";
/// The operations a [`LAMBDA_API`] policy may name (`lambda:*` grants them all).
pub const LAMBDA_API_ACTIONS: &[&str] = &[
    "lambda:*",
    "lambda:InvokeFunction",
    "lambda:ListFunctions",
    "lambda:GetFunction",
    "lambda:GetFunctionConfiguration",
    "lambda:CreateFunction",
    "lambda:UpdateFunctionCode",
    "lambda:UpdateFunctionConfiguration",
    "lambda:DeleteFunction",
];

/// The one component that may call ValidateAuthorizationToken.
pub const STREAM_MANAGER: &str = "aws.greengrass.StreamManager";
/// Identities that start with this bypass the CLI check, as does the CLI component itself.
pub const CLI_CLIENT_PREFIX: &str = "greengrass-cli-";

/// How a policy's resource patterns meet a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Matching {
    /// `*` is a glob over any characters; `+` and `#` are literal.
    Standard,
    /// As [`Standard`](Self::Standard), and `+` as a whole level matches one level, a trailing
    /// `/#` the rest of the topic including its parent, and `#` alone everything.
    MqttStyle,
}

/// What topics a subscription's filter stands for, as the destination matches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterScope {
    /// Local pub/sub (`SubscribeToTopic`): `+` one level, `#` one or more trailing levels but
    /// not the parent (the nucleus's `SubscriptionTrie`).
    LocalPubSub,
    /// An MQTT broker (`SubscribeToIoTCore`): `+` one level, `a/#` also `a` itself.
    Mqtt,
}

/// How a resource pattern is read against a concrete string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// [`Matching::Standard`]: `*` a glob, everything else literal.
    Standard,
    /// [`Matching::MqttStyle`]: whole-level `+` and a trailing `/#` as MQTT reads them (the
    /// parent included), `*` a glob.
    Mqtt,
    /// A local pub/sub policy read as the topics it grants a subscriber: whole-level `+` and
    /// a trailing `/#` as local pub/sub reads a filter (no parent), `*` a glob.
    LocalPubSub,
}

/// The operations whose resource is a topic filter, and what it stands for.
fn filter_scope(operation: Operation) -> Option<FilterScope> {
    match operation {
        Operation::SubscribeToTopic => Some(FilterScope::LocalPubSub),
        Operation::SubscribeToIoTCore => Some(FilterScope::Mqtt),
        _ => None,
    }
}

/// What an operation needs before it runs (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// Any authenticated component may call it.
    Open,
    /// A policy of the caller's for `destination` must allow the operation on the resource.
    Policy {
        destination: &'static str,
        matching: Matching,
    },
    /// Only [`STREAM_MANAGER`] may call it.
    StreamManagerOnly,
}

/// What `operation` needs. The resource to check is the operation's own (§5.2): the topic for
/// pub/sub, `topicName` for IoT Core, the target component for CLI and lifecycle operations,
/// the literal `*` for ListComponents and the local deployment operations other than
/// GetLocalDeploymentStatus (which checks `deploymentId`).
pub fn check_for(operation: Operation) -> Check {
    use Operation::*;
    let policy = |destination, matching| Check::Policy {
        destination,
        matching,
    };
    match operation {
        PublishToTopic | SubscribeToTopic => policy(PUBSUB, Matching::Standard),
        PublishToIoTCore | SubscribeToIoTCore => policy(MQTT_PROXY, Matching::MqttStyle),
        GetComponentDetails
        | RestartComponent
        | StopComponent
        | ListComponents
        | CreateLocalDeployment
        | CancelLocalDeployment
        | ListLocalDeployments
        | GetLocalDeploymentStatus
        | CreateDebugPassword => policy(CLI, Matching::Standard),
        PauseComponent | ResumeComponent => policy(LIFECYCLE, Matching::Standard),
        GetSecretValue => policy(SECRET_MANAGER, Matching::Standard),
        GetThingShadow | UpdateThingShadow | DeleteThingShadow | ListNamedShadowsForThing => {
            policy(SHADOW_MANAGER, Matching::Standard)
        }
        PutComponentMetric => policy(COMPONENT_METRIC, Matching::Standard),
        VerifyClientDeviceIdentity
        | GetClientDeviceAuthToken
        | AuthorizeClientDeviceAction
        | SubscribeToCertificateUpdates => policy(CLIENT_DEVICES_AUTH, Matching::Standard),
        ValidateAuthorizationToken => Check::StreamManagerOnly,
        GetConfiguration
        | UpdateConfiguration
        | SubscribeToConfigurationUpdate
        | SubscribeToValidateConfigurationUpdates
        | SendConfigurationValidityReport
        | UpdateState
        | SubscribeToComponentUpdates
        | DeferComponentUpdate
        | SubscribeToIoTCoreConnectionStatus => Check::Open,
    }
}

/// The operations a destination registers; a policy naming any other is invalid.
fn registered(destination: &str, operation: &str) -> bool {
    if destination.eq_ignore_ascii_case(LAMBDA_API) {
        return operation == "*" || LAMBDA_API_ACTIONS.contains(&operation);
    }
    operation == "*"
        || Operation::ALL.iter().any(|op| {
            op.name() == operation
                && matches!(check_for(*op), Check::Policy { destination: d, .. } if d.eq_ignore_ascii_case(destination))
        })
}

/// Decides whether `principal` may call `operation` on `resource`, given the principal's own
/// `accessControl`. `resource` is `None` only where the request left it null, which no policy
/// with resources matches.
pub fn authorize(
    policy: &AccessControl,
    principal: &ComponentName,
    operation: Operation,
    resource: Option<&str>,
) -> Result<(), IpcError> {
    match check_for(operation) {
        Check::Open => Ok(()),
        Check::StreamManagerOnly if principal.as_str() == STREAM_MANAGER => Ok(()),
        Check::StreamManagerOnly => Err(IpcError::unauthorized(format!(
            "{principal} is not authorized to perform {}",
            operation.name()
        ))),
        Check::Policy { destination, .. }
            if destination == CLI
                && (principal.as_str() == CLI
                    || principal.as_str().starts_with(CLI_CLIENT_PREFIX)) =>
        {
            Ok(())
        }
        Check::Policy {
            destination,
            matching,
        } => {
            let allowed = match (filter_scope(operation), resource) {
                (Some(scope), Some(filter)) => {
                    policy.allows_filter(destination, operation.name(), filter, scope)
                }
                _ => policy.allows(destination, operation.name(), resource, matching),
            };
            if allowed {
                Ok(())
            } else if destination == MQTT_PROXY {
                // The detailed text is only logged by the nucleus (§5.4).
                Err(IpcError::unauthorized("Not Authorized"))
            } else {
                Err(IpcError::unauthorized(format!(
                    "Principal {principal} is not authorized to perform {destination}:{} on resource {}",
                    operation.name(),
                    resource.unwrap_or("null")
                )))
            }
        }
    }
}

/// One component's `accessControl`: the valid policies, each for one destination.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessControl {
    policies: Vec<Policy>,
}

/// One policy: operations it allows (or `*`) on resources matching any of its patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub destination: String,
    pub id: String,
    pub description: Option<String>,
    pub operations: Vec<String>,
    /// Empty when the policy lists none: it then matches only a null resource.
    pub resources: Vec<ResourcePattern>,
}

/// Something in `accessControl` that was skipped, for the host to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// Where: `destination`, `destination.policyId` or `destination.policyId.resources`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "accessControl: {}", self.message)
        } else {
            write!(f, "accessControl.{}: {}", self.path, self.message)
        }
    }
}

/// Looks a key up ignoring ASCII case, as the nucleus's configuration does.
fn get_ignore_case<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

impl AccessControl {
    /// Reads a component's `accessControl` value: an object, or a JSON string holding one
    /// (§5.1). What is invalid is skipped and reported, as the nucleus skips it with an error
    /// in its log: a policy with an empty id, a policy naming an operation its destination does
    /// not register (the whole policy), a resource with a bare `?` or an unknown `${}` escape
    /// (that resource).
    pub fn parse(value: &Value) -> (Self, Vec<PolicyProblem>) {
        let mut problems = Vec::new();
        let mut problem =
            |path: String, message: String| problems.push(PolicyProblem { path, message });
        let parsed;
        let value = match value {
            Value::String(text) => match serde_json::from_str::<Value>(text) {
                Ok(v) => {
                    parsed = v;
                    &parsed
                }
                Err(e) => {
                    problem(String::new(), format!("string is not JSON: {e}"));
                    return (Self::default(), problems);
                }
            },
            other => other,
        };
        let Value::Object(destinations) = value else {
            problem(String::new(), "must be an object of destinations".into());
            return (Self::default(), problems);
        };
        let mut policies = Vec::new();
        for (destination, by_id) in destinations {
            let Value::Object(by_id) = by_id else {
                problem(destination.clone(), "must be an object of policies".into());
                continue;
            };
            for (id, body) in by_id {
                let path = format!("{destination}.{id}");
                if id.is_empty() {
                    problem(path, "policy id must not be empty".into());
                    continue;
                }
                let Value::Object(body) = body else {
                    problem(path, "policy must be an object".into());
                    continue;
                };
                let strings = |key: &str| -> Result<Vec<String>, String> {
                    match get_ignore_case(body, key) {
                        None | Some(Value::Null) => Ok(Vec::new()),
                        Some(Value::Array(items)) => items
                            .iter()
                            .map(|i| {
                                i.as_str()
                                    .map(str::to_owned)
                                    .ok_or_else(|| format!("{key} must be a list of strings"))
                            })
                            .collect(),
                        Some(_) => Err(format!("{key} must be a list of strings")),
                    }
                };
                let (operations, resources) = match (strings("operations"), strings("resources")) {
                    (Ok(o), Ok(r)) => (o, r),
                    (Err(e), _) | (_, Err(e)) => {
                        problem(path, e);
                        continue;
                    }
                };
                if let Some(bad) = operations.iter().find(|op| !registered(destination, op)) {
                    problem(
                        path,
                        format!("operation {bad:?} is not one of {destination}'s; policy skipped"),
                    );
                    continue;
                }
                let mut patterns = Vec::new();
                for resource in resources {
                    match ResourcePattern::parse(&resource) {
                        Ok(p) => patterns.push(p),
                        Err(e) => problem(format!("{path}.resources"), e.to_string()),
                    }
                }
                policies.push(Policy {
                    destination: destination.clone(),
                    id: id.clone(),
                    description: get_ignore_case(body, "policyDescription")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    operations,
                    resources: patterns,
                });
            }
        }
        (Self { policies }, problems)
    }

    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Whether a policy for `destination` allows `operation` (by name, or `*`) on `resource`.
    pub fn allows(
        &self,
        destination: &str,
        operation: &str,
        resource: Option<&str>,
        matching: Matching,
    ) -> bool {
        self.policies.iter().any(|p| {
            p.destination.eq_ignore_ascii_case(destination)
                && p.operations.iter().any(|o| o == operation || o == "*")
                && match resource {
                    None => p.resources.is_empty(),
                    Some(r) => p.resources.iter().any(|pat| pat.matches(r, matching)),
                }
        })
    }
}

impl AccessControl {
    /// Whether a policy for `destination` allows `operation` on the topic filter `filter`:
    /// every topic the filter matches must be matched by the resources of policies that
    /// allow the operation (a filter is the set of its topics, and a subscription receives
    /// exactly those). So a grant of `a/+` allows `a/b` and `a/+`, not `a/#`.
    ///
    /// The resources are read as the destination reads a subscription: IoT Core's
    /// MQTT_STYLE, and for local pub/sub whole-level `+` and `/#` as that filter matches
    /// (STANDARD keeps them literal, which grants the filter of that text; here it grants
    /// that filter's topics, so also any narrower filter).
    ///
    /// Decided on finitely many sample topics: the filter with every wildcard level filled
    /// by one byte no resource names (a resource can only take such bytes with a glob or a
    /// level wildcard, which then takes any level content), and a `#` filled with 0 to K+1
    /// levels, K being the most `/` a resource matches literally (past K, a glob already
    /// takes a `/`, and then any number of levels). A filter that is not a valid filter is
    /// matched as text instead: the operation refuses it once authorized, as the nucleus
    /// authorizes before it validates.
    pub fn allows_filter(
        &self,
        destination: &str,
        operation: &str,
        filter: &str,
        scope: FilterScope,
    ) -> bool {
        let matching = match scope {
            FilterScope::LocalPubSub => Matching::Standard,
            FilterScope::Mqtt => Matching::MqttStyle,
        };
        let Some(levels) = filter_levels(filter) else {
            return self.allows(destination, operation, Some(filter), matching);
        };
        let patterns: Vec<&ResourcePattern> = self
            .policies
            .iter()
            .filter(|p| {
                p.destination.eq_ignore_ascii_case(destination)
                    && p.operations.iter().any(|o| o == operation || o == "*")
            })
            .flat_map(|p| &p.resources)
            .collect();
        let reading = match scope {
            FilterScope::LocalPubSub => Reading::LocalPubSub,
            FilterScope::Mqtt => Reading::Mqtt,
        };
        // A byte no pattern matches literally; without one (a policy naming every byte), no
        // sample can stand for all level contents, so the filter is refused.
        let Some(fill) = (1..=u8::MAX)
            .filter(|b| !matches!(b, b'/' | b'+' | b'#' | b'$'))
            .find(|b| !patterns.iter().any(|p| p.has_literal(*b)))
        else {
            return false;
        };
        let most_separators = patterns
            .iter()
            .map(|p| p.literal_separators())
            .max()
            .unwrap_or(0);
        samples(&levels, scope, fill, most_separators + 1)
            .iter()
            .all(|topic| patterns.iter().any(|p| p.matches_bytes(topic, reading)))
    }
}

/// One level of a subscription filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterLevel<'a> {
    Exact(&'a str),
    /// `+`
    One,
    /// `#`, always last.
    Rest,
}

/// A filter's levels; `None` unless it is a valid filter (non-empty, `+` and `#` only as
/// whole levels, `#` only last).
fn filter_levels(filter: &str) -> Option<Vec<FilterLevel<'_>>> {
    if filter.is_empty() {
        return None;
    }
    let mut levels: Vec<FilterLevel<'_>> = Vec::new();
    for level in filter.split('/') {
        if levels.last() == Some(&FilterLevel::Rest) {
            return None;
        }
        levels.push(match level {
            "+" => FilterLevel::One,
            "#" => FilterLevel::Rest,
            exact if exact.contains(['+', '#']) => return None,
            exact => FilterLevel::Exact(exact),
        });
    }
    Some(levels)
}

/// Topics that stand for every topic the filter matches (see
/// [`AccessControl::allows_filter`]): each `+` filled with `fill`, a `#` with 1 to
/// `most_levels` levels of `fill` (and, for MQTT, with none: the parent).
fn samples(
    levels: &[FilterLevel<'_>],
    scope: FilterScope,
    fill: u8,
    most_levels: usize,
) -> Vec<Vec<u8>> {
    let mut fixed = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        if i > 0 && *level != FilterLevel::Rest {
            fixed.push(b'/');
        }
        match level {
            FilterLevel::Exact(text) => fixed.extend_from_slice(text.as_bytes()),
            FilterLevel::One => fixed.push(fill),
            FilterLevel::Rest => {}
        }
    }
    if levels.last() != Some(&FilterLevel::Rest) {
        return vec![fixed];
    }
    let alone = levels.len() == 1;
    let mut out = Vec::new();
    // The parent: for MQTT, `a/#` matches `a` too (`#` alone has no parent).
    if scope == FilterScope::Mqtt && !alone && !fixed.is_empty() {
        out.push(fixed.clone());
    }
    let mut topic = fixed;
    for count in 1..=most_levels + usize::from(alone) {
        if !(alone && count == 1) {
            topic.push(b'/');
        }
        topic.push(fill);
        out.push(topic.clone());
    }
    out
}

/// A pattern piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Token {
    Literal(u8),
    /// `*`: any characters, `/` included.
    Glob,
    /// `+` standing as a whole level.
    LevelPlus,
    /// `/#` ending the pattern.
    SlashHashTail,
    /// `#` as the whole pattern.
    HashAll,
}

/// A resource of a policy, parsed once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourcePattern {
    text: String,
    tokens: Vec<Token>,
}

/// Why a resource pattern is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidResource {
    #[error("resource {0:?} has a bare '?'; write ${{?}} for a literal one")]
    BareQuestionMark(String),
    #[error("resource {0:?} has an escape other than ${{*}}, ${{$}} and ${{?}}")]
    UnknownEscape(String),
}

impl ResourcePattern {
    pub fn parse(text: &str) -> Result<Self, InvalidResource> {
        let bytes = text.as_bytes();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let at_level_start = i == 0 || bytes[i - 1] == b'/';
            let at_level_end = i + 1 == bytes.len() || bytes[i + 1] == b'/';
            match bytes[i] {
                b'$' if bytes.get(i + 1) == Some(&b'{') => {
                    match (bytes.get(i + 2), bytes.get(i + 3)) {
                        (Some(&c @ (b'*' | b'$' | b'?')), Some(b'}')) => {
                            tokens.push(Token::Literal(c));
                            i += 4;
                            continue;
                        }
                        _ => return Err(InvalidResource::UnknownEscape(text.to_owned())),
                    }
                }
                b'?' => return Err(InvalidResource::BareQuestionMark(text.to_owned())),
                b'*' => tokens.push(Token::Glob),
                b'+' if at_level_start && at_level_end => tokens.push(Token::LevelPlus),
                b'#' if i == 0 && bytes.len() == 1 => tokens.push(Token::HashAll),
                b'#' if i + 1 == bytes.len() && i > 0 && bytes[i - 1] == b'/' => {
                    // The '/' before it was pushed as a literal; the tail takes its place.
                    tokens.pop();
                    tokens.push(Token::SlashHashTail);
                }
                b => tokens.push(Token::Literal(b)),
            }
            i += 1;
        }
        Ok(Self {
            text: text.to_owned(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern matches all of `resource`.
    pub fn matches(&self, resource: &str, matching: Matching) -> bool {
        let reading = match matching {
            Matching::Standard => Reading::Standard,
            Matching::MqttStyle => Reading::Mqtt,
        };
        self.matches_bytes(resource.as_bytes(), reading)
    }

    fn matches_bytes(&self, s: &[u8], reading: Reading) -> bool {
        let n = s.len();
        let wildcards = reading != Reading::Standard;
        let mqtt = reading == Reading::Mqtt;
        // after[j]: the tokens from the current one on match s[j..]. Built from the last token
        // back; O(tokens × len).
        let mut after = vec![false; n + 1];
        after[n] = true;
        for token in self.tokens.iter().rev() {
            let mut here = vec![false; n + 1];
            for j in (0..=n).rev() {
                here[j] = match *token {
                    Token::Literal(b) => j < n && s[j] == b && after[j + 1],
                    Token::Glob => after[j] || (j < n && here[j + 1]),
                    Token::LevelPlus if wildcards => {
                        after[j] || (j < n && s[j] != b'/' && here[j + 1])
                    }
                    Token::LevelPlus => j < n && s[j] == b'+' && after[j + 1],
                    // Always the last token, so `after` is true only at the end.
                    Token::SlashHashTail if mqtt => j == n || s[j] == b'/',
                    // Local pub/sub's `#` is one or more levels, never the parent.
                    Token::SlashHashTail if wildcards => j < n && s[j] == b'/',
                    Token::SlashHashTail => s[j..] == *b"/#",
                    Token::HashAll if wildcards => true,
                    Token::HashAll => s[j..] == *b"#",
                };
            }
            after = here;
        }
        after[0]
    }

    /// How many `/` the pattern matches one for one: a topic with more levels than this can
    /// only match where a glob or a `#` takes the extra ones.
    fn literal_separators(&self) -> usize {
        self.tokens
            .iter()
            .filter(|t| **t == Token::Literal(b'/'))
            .count()
    }

    fn has_literal(&self, byte: u8) -> bool {
        self.tokens.contains(&Token::Literal(byte))
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn pattern(p: &str) -> ResourcePattern {
        ResourcePattern::parse(p).unwrap()
    }

    fn standard(p: &str, r: &str) -> bool {
        pattern(p).matches(r, Matching::Standard)
    }

    fn mqtt(p: &str, r: &str) -> bool {
        pattern(p).matches(r, Matching::MqttStyle)
    }

    fn probe() -> ComponentName {
        ComponentName::parse("com.example.Probe").unwrap()
    }

    #[test]
    fn standard_matching_globs_and_keeps_mqtt_wildcards_literal() {
        assert!(standard("*", "anything/at/all"));
        assert!(standard("*", ""));
        assert!(standard("sensors/*", "sensors/a/b"));
        assert!(!standard("sensors/*", "sensor"));
        assert!(standard("test/topic", "test/topic"));
        assert!(!standard("test/topic", "test/topic/x"));
        assert!(standard("test/topic/#", "test/topic/#"));
        assert!(!standard("test/topic/#", "test/topic/x"));
        assert!(!standard("test/topic/#", "test/topic"));
        assert!(standard("a/+/c", "a/+/c"));
        assert!(!standard("a/+/c", "a/b/c"));
        assert!(standard("#", "#"));
        assert!(!standard("#", "a"));
        assert!(standard("a*c*e", "abcde"));
        assert!(!standard("a*c*e", "abcd"));
    }

    #[test]
    fn mqtt_style_matching_uses_whole_level_wildcards() {
        assert!(mqtt("dev/+/telemetry", "dev/a1/telemetry"));
        assert!(!mqtt("dev/+/telemetry", "dev/a/b/telemetry"));
        assert!(mqtt("dev/+/telemetry", "dev/+/telemetry"));
        assert!(mqtt("a/#", "a"));
        assert!(mqtt("a/#", "a/b/c"));
        assert!(mqtt("a/#", "a/"));
        assert!(!mqtt("a/#", "ab"));
        assert!(mqtt("#", "any/thing"));
        assert!(mqtt("+", "x"));
        assert!(!mqtt("+", "x/y"));
        assert!(mqtt("+/+", "x/y"));
        // Not a whole level: literal.
        assert!(mqtt("a+/b", "a+/b"));
        assert!(!mqtt("a+/b", "ax/b"));
        assert!(mqtt("a/b#", "a/b#"));
        assert!(!mqtt("a/#/b", "a/x/b"));
        assert!(mqtt("a/#/b", "a/#/b"));
        // `*` is still a glob.
        assert!(mqtt("dev/*", "dev/a/b"));
        assert!(mqtt(
            "$aws/things/thing1/shadow/#",
            "$aws/things/thing1/shadow/update/accepted"
        ));
        assert!(mqtt(
            "$aws/things/thing1/shadow/#",
            "$aws/things/thing1/shadow"
        ));
    }

    #[test]
    fn escapes_stand_for_literal_characters() {
        assert!(standard("a/${*}", "a/*"));
        assert!(!standard("a/${*}", "a/b"));
        assert!(standard("${$}x", "$x"));
        assert!(standard("what${?}", "what?"));
        assert!(standard("$aws/x", "$aws/x"));
        assert_eq!(
            ResourcePattern::parse("a?"),
            Err(InvalidResource::BareQuestionMark("a?".into()))
        );
        for bad in ["${x}", "${*", "a${", "${}"] {
            assert_eq!(
                ResourcePattern::parse(bad),
                Err(InvalidResource::UnknownEscape(bad.into())),
                "{bad}"
            );
        }
    }

    fn spec_policy() -> (AccessControl, Vec<PolicyProblem>) {
        AccessControl::parse(&json!({
            "aws.greengrass.ipc.pubsub": {
                "com.example.Pub:pubsub:1": {
                    "policyDescription": "Allows publish/subscribe",
                    "operations": ["aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"],
                    "resources": ["test/topic", "sensors/*"]
                }
            },
            "aws.greengrass.ipc.mqttproxy": {
                "com.example.Pub:mqttproxy:1": {
                    "operations": ["aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"],
                    "resources": ["dev/+/telemetry", "$aws/things/thing1/shadow/#"]
                }
            }
        }))
    }

    #[test]
    fn the_spec_policy_reads_whole() {
        let (policy, problems) = spec_policy();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(policy.policies().len(), 2);
        let pubsub = &policy.policies()[1];
        assert_eq!(
            pubsub.description.as_deref(),
            Some("Allows publish/subscribe")
        );
        assert_eq!(pubsub.resources[1].as_str(), "sensors/*");
    }

    #[test]
    fn decisions_follow_the_policy() {
        let (policy, _) = spec_policy();
        let ok = |op, r: &str| authorize(&policy, &probe(), op, Some(r)).is_ok();
        assert!(ok(Operation::PublishToTopic, "test/topic"));
        assert!(ok(Operation::SubscribeToTopic, "sensors/a/b"));
        assert!(!ok(Operation::PublishToTopic, "test/other"));
        assert!(ok(Operation::PublishToIoTCore, "dev/a1/telemetry"));
        assert!(ok(
            Operation::SubscribeToIoTCore,
            "$aws/things/thing1/shadow/get"
        ));
        assert!(!ok(Operation::PublishToIoTCore, "test/topic"));
        // A pub/sub grant says nothing about the CLI, and open operations need nothing.
        assert!(!ok(Operation::RestartComponent, "com.example.Other"));
        assert!(ok(Operation::GetConfiguration, "anything"));
        assert!(authorize(
            &AccessControl::default(),
            &probe(),
            Operation::UpdateState,
            None
        )
        .is_ok());
    }

    #[test]
    fn denials_carry_the_nucleus_texts() {
        let (policy, _) = spec_policy();
        let denied = |op, r: Option<&str>| authorize(&policy, &probe(), op, r).unwrap_err();
        assert_eq!(
            denied(Operation::PublishToTopic, Some("forbidden/x")),
            IpcError::unauthorized("Principal com.example.Probe is not authorized to perform aws.greengrass.ipc.pubsub:aws.greengrass#PublishToTopic on resource forbidden/x")
        );
        assert_eq!(
            denied(Operation::SubscribeToTopic, Some("x")).to_string(),
            "Principal com.example.Probe is not authorized to perform aws.greengrass.ipc.pubsub:aws.greengrass#SubscribeToTopic on resource x"
        );
        assert_eq!(
            denied(Operation::PublishToIoTCore, Some("x")).to_string(),
            "Not Authorized"
        );
        assert_eq!(
            denied(Operation::RestartComponent, Some("com.example.Target")).to_string(),
            "Principal com.example.Probe is not authorized to perform aws.greengrass.Cli:aws.greengrass#RestartComponent on resource com.example.Target"
        );
        assert_eq!(
            denied(Operation::ValidateAuthorizationToken, None).to_string(),
            "com.example.Probe is not authorized to perform aws.greengrass#ValidateAuthorizationToken"
        );
        assert_eq!(
            denied(Operation::PublishToTopic, None).to_string(),
            "Principal com.example.Probe is not authorized to perform aws.greengrass.ipc.pubsub:aws.greengrass#PublishToTopic on resource null"
        );
    }

    #[test]
    fn stream_manager_and_the_cli_are_special() {
        let none = AccessControl::default();
        let name = |n: &str| ComponentName::parse(n).unwrap();
        assert!(authorize(
            &none,
            &name(STREAM_MANAGER),
            Operation::ValidateAuthorizationToken,
            None
        )
        .is_ok());
        assert!(authorize(&none, &name(CLI), Operation::ListComponents, Some("*")).is_ok());
        assert!(authorize(
            &none,
            &name("greengrass-cli-user"),
            Operation::StopComponent,
            Some("c")
        )
        .is_ok());
        assert!(authorize(
            &none,
            &name("greengrass-cli-user"),
            Operation::PublishToTopic,
            Some("t")
        )
        .is_err());
    }

    #[test]
    fn cli_listing_needs_a_star_resource() {
        let (policy, problems) = AccessControl::parse(&json!({
            "aws.greengrass.Cli": {
                "p1": {"operations": ["aws.greengrass#ListComponents"], "resources": ["*"]},
                "p2": {"operations": ["aws.greengrass#RestartComponent"], "resources": ["com.example.A"]}
            }
        }));
        assert!(problems.is_empty());
        assert!(authorize(&policy, &probe(), Operation::ListComponents, Some("*")).is_ok());
        assert!(authorize(
            &policy,
            &probe(),
            Operation::RestartComponent,
            Some("com.example.A")
        )
        .is_ok());
        assert!(authorize(
            &policy,
            &probe(),
            Operation::RestartComponent,
            Some("com.example.B")
        )
        .is_err());
    }

    #[test]
    fn star_operations_and_case_insensitive_keys() {
        let (policy, problems) = AccessControl::parse(&json!({
            "AWS.Greengrass.IPC.PubSub": {
                "all": {"Operations": ["*"], "RESOURCES": ["*"]}
            }
        }));
        assert!(problems.is_empty(), "{problems:?}");
        assert!(authorize(&policy, &probe(), Operation::SubscribeToTopic, Some("a/#")).is_ok());
    }

    #[test]
    fn a_policy_as_a_json_string_is_parsed() {
        let text =
            json!({"aws.greengrass.ipc.pubsub": {"p": {"operations": ["*"], "resources": ["t"]}}})
                .to_string();
        let (policy, problems) = AccessControl::parse(&Value::String(text));
        assert!(problems.is_empty());
        assert!(policy.allows(
            PUBSUB,
            "aws.greengrass#PublishToTopic",
            Some("t"),
            Matching::Standard
        ));
        let (empty, problems) = AccessControl::parse(&Value::String("{".into()));
        assert!(empty.policies().is_empty());
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn invalid_parts_are_skipped_and_named() {
        let (policy, problems) = AccessControl::parse(&json!({
            "aws.greengrass.ipc.pubsub": {
                "": {"operations": ["*"], "resources": ["*"]},
                "wrong-op": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["*"]},
                "bad-resource": {"operations": ["aws.greengrass#PublishToTopic"], "resources": ["ok", "what?"]},
                "not-a-list": {"operations": "aws.greengrass#PublishToTopic"}
            },
            "com.example.Unknown": {"p": {"operations": ["aws.greengrass#PublishToTopic"]}},
            "aws.greengrass.ipc.mqttproxy": "nope"
        }));
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "aws.greengrass.ipc.mqttproxy",
                "aws.greengrass.ipc.pubsub.",
                "aws.greengrass.ipc.pubsub.bad-resource.resources",
                "aws.greengrass.ipc.pubsub.not-a-list",
                "aws.greengrass.ipc.pubsub.wrong-op",
                "com.example.Unknown.p",
            ]
        );
        assert!(problems[4]
            .to_string()
            .contains("aws.greengrass#PublishToIoTCore"));
        assert_eq!(policy.policies().len(), 1);
        assert!(policy.allows(
            PUBSUB,
            "aws.greengrass#PublishToTopic",
            Some("ok"),
            Matching::Standard
        ));
        assert!(!AccessControl::parse(&json!([])).1.is_empty());
    }

    #[test]
    fn a_policy_without_resources_matches_only_a_null_resource() {
        let (policy, _) = AccessControl::parse(&json!({
            "aws.greengrass.ipc.pubsub": {"p": {"operations": ["*"]}}
        }));
        assert!(policy.allows(
            PUBSUB,
            "aws.greengrass#PublishToTopic",
            None,
            Matching::Standard
        ));
        assert!(!policy.allows(
            PUBSUB,
            "aws.greengrass#PublishToTopic",
            Some("t"),
            Matching::Standard
        ));
    }

    fn mqtt_proxy(resources: &[&str]) -> AccessControl {
        let (policy, problems) = AccessControl::parse(&json!({
            "aws.greengrass.ipc.mqttproxy": {"p": {
                "operations": ["aws.greengrass#SubscribeToIoTCore", "aws.greengrass#PublishToIoTCore"],
                "resources": resources
            }}
        }));
        assert!(problems.is_empty(), "{problems:?}");
        policy
    }

    fn pubsub(resources: &[&str]) -> AccessControl {
        let (policy, problems) = AccessControl::parse(&json!({
            "aws.greengrass.ipc.pubsub": {"p": {
                "operations": ["aws.greengrass#SubscribeToTopic", "aws.greengrass#PublishToTopic"],
                "resources": resources
            }}
        }));
        assert!(problems.is_empty(), "{problems:?}");
        policy
    }

    fn may_subscribe(policy: &AccessControl, op: Operation, filter: &str) -> bool {
        authorize(policy, &probe(), op, Some(filter)).is_ok()
    }

    #[test]
    fn an_iot_core_filter_is_allowed_only_within_what_the_policy_grants() {
        let sub = |resources: &[&str], filter| {
            may_subscribe(
                &mqtt_proxy(resources),
                Operation::SubscribeToIoTCore,
                filter,
            )
        };
        // `a/+` is one level under `a`: `a/#` would add `a`, `a/b/c`…
        assert!(sub(&["a/+"], "a/b"));
        assert!(sub(&["a/+"], "a/+"));
        assert!(!sub(&["a/+"], "a/#"));
        assert!(!sub(&["a/+"], "a/+/#"));
        assert!(!sub(&["a/+"], "#"));
        assert!(!sub(&["a/+"], "+/+"));
        assert!(!sub(&["a/+"], "+/b"));
        assert!(!sub(&["a/+"], "a"));
        // `+/+` is every two-level topic.
        assert!(sub(&["+/+"], "a/b"));
        assert!(sub(&["+/+"], "a/+"));
        assert!(sub(&["+/+"], "+/+"));
        assert!(!sub(&["+/+"], "a/#"));
        assert!(!sub(&["+/+"], "#"));
        // `#` and `*` grant everything.
        for all in ["#", "*"] {
            for filter in ["#", "+/+", "a/#", "$aws/things/t/shadow/#"] {
                assert!(sub(&[all], filter), "{all} {filter}");
            }
        }
        // `a/#` covers `a` and everything under it.
        assert!(sub(&["a/#"], "a/#"));
        assert!(sub(&["a/#"], "a/+/c"));
        assert!(sub(&["a/#"], "a"));
        assert!(!sub(&["a/#"], "+/#"));
        // A glob grants what it matches as text: `a/*` has every topic under `a`, but not `a`
        // itself, which MQTT's `a/#` also matches.
        assert!(sub(&["a/*"], "a/+/#"));
        assert!(sub(&["a/*"], "a/+"));
        assert!(!sub(&["a/*"], "a/#"));
        assert!(sub(&["a", "a/*"], "a/#"));
        assert!(sub(&["dev/*/telemetry"], "dev/+/telemetry"));
        assert!(!sub(&["dev/*/telemetry"], "dev/#"));
        assert!(sub(&["*/telemetry"], "+/+/telemetry"));
        assert!(!sub(&["*/telemetry"], "+/+/#"));
        // Mixed: several resources that together cover the filter.
        assert!(sub(&["a", "a/+", "a/+/#"], "a/#"));
        assert!(!sub(&["a", "a/+", "a/+/+"], "a/#"));
        assert!(sub(&["a/b/#", "a/+/c"], "a/b/c"));
        assert!(!sub(&["a/b/#", "a/+/c"], "a/+/+"));
        // Publishing is about one topic, matched as before.
        let policy = mqtt_proxy(&["a/+"]);
        assert!(authorize(&policy, &probe(), Operation::PublishToIoTCore, Some("a/b")).is_ok());
        assert!(authorize(
            &policy,
            &probe(),
            Operation::PublishToIoTCore,
            Some("a/b/c")
        )
        .is_err());
    }

    #[test]
    fn a_local_filter_is_allowed_only_within_what_the_policy_grants() {
        let sub = |resources: &[&str], filter| {
            may_subscribe(&pubsub(resources), Operation::SubscribeToTopic, filter)
        };
        // The nucleus's STANDARD grants: the filter of that text…
        assert!(sub(&["test/topic/#"], "test/topic/#"));
        assert!(sub(&["a/+"], "a/+"));
        assert!(sub(&["sensors/*"], "sensors/#"));
        assert!(sub(&["sensors/*"], "sensors/a/b"));
        // … and, read as the topics it matches, any narrower filter.
        assert!(sub(&["test/topic/#"], "test/topic/x"));
        assert!(sub(&["test/topic/#"], "test/topic/+/y"));
        // Never a wider one.
        assert!(!sub(&["a/+"], "a/#"));
        assert!(!sub(&["test/topic/#"], "test/#"));
        assert!(!sub(&["test/topic/#"], "test/topic"));
        assert!(!sub(&["test/topic/#"], "#"));
        assert!(!sub(&["+/+"], "#"));
        assert!(sub(&["+/+"], "x/+"));
        assert!(sub(&["#"], "#"));
        assert!(sub(&["*"], "#"));
        // Local `a/#` has no parent, so `a/*` covers it.
        assert!(sub(&["a/*"], "a/#"));
        // Publishing stays STANDARD: a `+` in the policy is a `+`.
        let policy = pubsub(&["a/+"]);
        assert!(authorize(&policy, &probe(), Operation::PublishToTopic, Some("a/b")).is_err());
    }

    #[test]
    fn an_invalid_filter_is_matched_as_text_then_refused_by_its_operation() {
        let policy = mqtt_proxy(&["a/*"]);
        assert!(may_subscribe(
            &policy,
            Operation::SubscribeToIoTCore,
            "a/#/b"
        ));
        assert!(!may_subscribe(
            &policy,
            Operation::SubscribeToIoTCore,
            "b/#/c"
        ));
        // The denial text names the filter as sent.
        let policy = pubsub(&["a/+"]);
        assert_eq!(
            authorize(&policy, &probe(), Operation::SubscribeToTopic, Some("a/#"))
                .unwrap_err()
                .to_string(),
            "Principal com.example.Probe is not authorized to perform aws.greengrass.ipc.pubsub:aws.greengrass#SubscribeToTopic on resource a/#"
        );
    }

    /// Whether `filter` matches `topic`, level by level, as `scope` reads it.
    fn filter_matches(filter: &str, topic: &str, scope: FilterScope) -> bool {
        let f: Vec<&str> = filter.split('/').collect();
        let t: Vec<&str> = topic.split('/').collect();
        if f.last() == Some(&"#") {
            let prefix = &f[..f.len() - 1];
            let parent =
                scope == FilterScope::Mqtt && !prefix.is_empty() && t.len() == prefix.len();
            (t.len() > prefix.len() || parent)
                && prefix.iter().zip(&t).all(|(f, t)| *f == "+" || f == t)
        } else {
            f.len() == t.len() && f.iter().zip(&t).all(|(f, t)| *f == "+" || f == t)
        }
    }

    /// Every topic over `alphabet` of up to `len` bytes.
    fn all_topics(alphabet: &[char], len: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut layer = vec![String::new()];
        for _ in 0..len {
            layer = layer
                .iter()
                .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                .collect();
            out.extend(layer.iter().cloned());
        }
        out
    }

    /// The same semantics through the regex crate, to check the table matcher against.
    fn naive(p: &ResourcePattern, r: &str, matching: Matching) -> bool {
        let mqtt = matching == Matching::MqttStyle;
        let mut re = String::from("^");
        for t in &p.tokens {
            re.push_str(&match *t {
                Token::Literal(b) => regex_lite::escape(&(b as char).to_string()),
                Token::Glob => "(?s:.*)".into(),
                Token::LevelPlus if mqtt => "[^/]*".into(),
                Token::LevelPlus => regex_lite::escape("+"),
                Token::SlashHashTail if mqtt => "(?s:/.*)?".into(),
                Token::SlashHashTail => regex_lite::escape("/#"),
                Token::HashAll if mqtt => "(?s:.*)".into(),
                Token::HashAll => regex_lite::escape("#"),
            });
        }
        re.push('$');
        regex_lite::Regex::new(&re).unwrap().is_match(r)
    }

    proptest! {
        #[test]
        fn the_matcher_agrees_with_a_regex(p in "[ab/*+#]{0,8}", r in "[ab/+#*]{0,10}") {
            let pattern = ResourcePattern::parse(&p).unwrap();
            for matching in [Matching::Standard, Matching::MqttStyle] {
                prop_assert_eq!(pattern.matches(&r, matching), naive(&pattern, &r, matching), "{} vs {} ({:?})", p, r, matching);
            }
        }

        #[test]
        fn parsing_never_panics(p in "\\PC{0,24}", r in "\\PC{0,24}") {
            if let Ok(pattern) = ResourcePattern::parse(&p) {
                let _ = pattern.matches(&r, Matching::MqttStyle);
                let _ = pattern.matches(&r, Matching::Standard);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Allowed only when no topic the filter matches is left out by every resource
        /// (checked against every short topic over the resources' bytes and one more), and
        /// refused only with a topic to show for it.
        #[test]
        fn filter_grants_agree_with_the_topics_they_stand_for(
            resources in proptest::collection::vec("[ab/*+#]{1,5}", 1..3),
            filter in "(a|b|\\+)(/(a|b|\\+)){0,2}(/#)?|#",
            mqtt in any::<bool>(),
        ) {
            let (scope, reading, destination, op) = if mqtt {
                (FilterScope::Mqtt, Reading::Mqtt, MQTT_PROXY, Operation::SubscribeToIoTCore)
            } else {
                (FilterScope::LocalPubSub, Reading::LocalPubSub, PUBSUB, Operation::SubscribeToTopic)
            };
            let (policy, _) = AccessControl::parse(&json!({
                destination: {"p": {"operations": [op.name()], "resources": resources}}
            }));
            let patterns = &policy.policies()[0].resources;
            let covered = |t: &[u8]| patterns.iter().any(|p| p.matches_bytes(t, reading));
            if policy.allows_filter(destination, op.name(), &filter, scope) {
                let uncovered = all_topics(&['a', 'b', '\u{1}', '/'], 7)
                    .into_iter()
                    .find(|t| filter_matches(&filter, t, scope) && !covered(t.as_bytes()));
                prop_assert!(uncovered.is_none(), "{:?} allows {} but not {:?}", resources, filter, uncovered);
            } else {
                let levels = filter_levels(&filter).unwrap();
                let most = patterns.iter().map(|p| p.literal_separators()).max().unwrap_or(0);
                let witness = samples(&levels, scope, 1, most + 1)
                    .into_iter()
                    .find(|t| !covered(t));
                prop_assert!(witness.is_some(), "{:?} refuses {} without a reason", resources, filter);
                let witness = String::from_utf8(witness.unwrap()).unwrap();
                prop_assert!(filter_matches(&filter, &witness, scope), "{} does not match its sample {:?}", filter, witness);
            }
        }
    }
}
