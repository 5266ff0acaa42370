//! The Lambda Runtime API 2018-06-01 as Lambkin serves it to each instance: routes and the
//! exact header names real runtime clients read (`lambda-apis.md` §1); and on the same port
//! the Extensions API 2020-01-01 (§1.7): registration, events, init and exit errors.

use serde::{Deserialize, Serialize};

pub const PREFIX: &str = "/2018-06-01";

pub const HEADER_REQUEST_ID: &str = "lambda-runtime-aws-request-id";
pub const HEADER_DEADLINE_MS: &str = "lambda-runtime-deadline-ms";
pub const HEADER_FUNCTION_ARN: &str = "lambda-runtime-invoked-function-arn";
pub const HEADER_TRACE_ID: &str = "lambda-runtime-trace-id";
pub const HEADER_CLIENT_CONTEXT: &str = "lambda-runtime-client-context";
pub const HEADER_COGNITO_IDENTITY: &str = "lambda-runtime-cognito-identity";
pub const HEADER_ERROR_TYPE: &str = "lambda-runtime-function-error-type";
pub const HEADER_RESPONSE_MODE: &str = "lambda-runtime-function-response-mode";

/// The headers of a `/next` answer, as header names made at compile time: a name given as
/// text is parsed, and a non-standard one copied, on every response.
pub mod header {
    use http::HeaderName;

    pub const REQUEST_ID: HeaderName = HeaderName::from_static(super::HEADER_REQUEST_ID);
    pub const DEADLINE_MS: HeaderName = HeaderName::from_static(super::HEADER_DEADLINE_MS);
    pub const FUNCTION_ARN: HeaderName = HeaderName::from_static(super::HEADER_FUNCTION_ARN);
    pub const TRACE_ID: HeaderName = HeaderName::from_static(super::HEADER_TRACE_ID);
    pub const CLIENT_CONTEXT: HeaderName = HeaderName::from_static(super::HEADER_CLIENT_CONTEXT);
}

pub const EXTENSION_PREFIX: &str = "/2020-01-01/extension";
pub const HEADER_EXTENSION_NAME: &str = "lambda-extension-name";
pub const HEADER_EXTENSION_IDENTIFIER: &str = "lambda-extension-identifier";
pub const HEADER_EXTENSION_EVENT_IDENTIFIER: &str = "lambda-extension-event-identifier";
pub const HEADER_EXTENSION_ERROR_TYPE: &str = "lambda-extension-function-error-type";
pub const HEADER_EXTENSION_ACCEPT_FEATURE: &str = "lambda-extension-accept-feature";

/// One Runtime API endpoint, parsed from method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Next,
    Response(String),
    Error(String),
    InitError,
    /// RIE's legacy health check.
    Ping,
    ExtensionRegister,
    ExtensionNext,
    ExtensionInitError,
    ExtensionExitError,
    /// Telemetry API or Logs API `subscribe` (`PUT`).
    Subscribe(super::telemetry::Api),
    NotFound,
    MethodNotAllowed,
}

impl Route {
    pub fn parse(method: &str, path: &str) -> Self {
        if path == "/ping" {
            return if method == "GET" {
                Self::Ping
            } else {
                Self::MethodNotAllowed
            };
        }
        if let Some(api) = super::telemetry::Api::from_path(path) {
            return if method == "PUT" {
                Self::Subscribe(api)
            } else {
                Self::MethodNotAllowed
            };
        }
        if let Some(rest) = path.strip_prefix(EXTENSION_PREFIX) {
            let (route, expected) = match rest {
                "/register" => (Self::ExtensionRegister, "POST"),
                "/event/next" => (Self::ExtensionNext, "GET"),
                "/init/error" => (Self::ExtensionInitError, "POST"),
                "/exit/error" => (Self::ExtensionExitError, "POST"),
                _ => return Self::NotFound,
            };
            return if method == expected {
                route
            } else {
                Self::MethodNotAllowed
            };
        }
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return Self::NotFound;
        };
        // Up to five segments and whether more follow, with no collection made: every
        // request of every invocation comes through here.
        let mut segments = rest.split('/');
        let found: [Option<&str>; 6] = std::array::from_fn(|_| segments.next());
        let (route, expected) = match found {
            [Some(""), Some("runtime"), Some("invocation"), Some("next"), None, _] => {
                (Self::Next, "GET")
            }
            [Some(""), Some("runtime"), Some("init"), Some("error"), None, _] => {
                (Self::InitError, "POST")
            }
            [Some(""), Some("runtime"), Some("invocation"), Some(id), Some("response"), None]
                if !id.is_empty() =>
            {
                (Self::Response(id.to_owned()), "POST")
            }
            [Some(""), Some("runtime"), Some("invocation"), Some(id), Some("error"), None]
                if !id.is_empty() =>
            {
                (Self::Error(id.to_owned()), "POST")
            }
            _ => return Self::NotFound,
        };
        if method == expected {
            route
        } else {
            Self::MethodNotAllowed
        }
    }
}

/// Errors the Runtime API itself answers, with RIE's `errorType` strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeApiError {
    #[error("invalid request id {0:?}")]
    InvalidRequestId(String),
    #[error("{0}")]
    InvalidStateTransition(String),
    #[error("response payload of {size} bytes exceeds the {limit} bytes limit")]
    RequestEntityTooLarge { size: usize, limit: usize },
    #[error("the request body could not be read: {0}")]
    TruncatedHttpRequest(String),
    #[error("unsupported response mode {0:?}")]
    InvalidResponseMode(String),
    #[error("no such route")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the instance is shutting down")]
    ShuttingDown,
    /// The connection comes from a process that is neither the instance's runtime nor one it
    /// started: an instance's Runtime API is its runtime's alone.
    #[error("this Runtime API serves only its instance's runtime and the processes it started")]
    NotTheRuntime,
    /// An Extensions API refusal (all 403, with RIE's `errorType`s).
    #[error("{0}")]
    Extension(#[from] ExtensionError),
    /// A Telemetry or Logs API subscription refused.
    #[error("{0}")]
    Subscription(#[from] super::telemetry::SubscriptionError),
}

/// What the Extensions API refuses, named as the Runtime Interface Emulator names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    #[error("Empty extension name")]
    EmptyName,
    #[error("Extension registration closed already")]
    RegistrationClosed,
    #[error("Extension with this name already registered")]
    NameTaken,
    #[error("{0}")]
    InvalidEventType(String),
    #[error("{0}")]
    InvalidRequestFormat(String),
    #[error("Missing Lambda-Extension-Identifier header")]
    MissingIdentifier,
    #[error("Unknown extension {0}")]
    UnknownIdentifier(String),
    #[error("Missing Lambda-Extension-Function-Error-Type header")]
    MissingErrorType,
    #[error("{0}")]
    InvalidState(String),
}

impl ExtensionError {
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::EmptyName => "Extension.InvalidExtensionName",
            Self::RegistrationClosed => "Extension.RegistrationClosed",
            Self::NameTaken | Self::InvalidState(_) => "Extension.InvalidExtensionState",
            Self::InvalidEventType(_) => "Extension.InvalidEventType",
            Self::InvalidRequestFormat(_) => "InvalidRequestFormat",
            Self::MissingIdentifier => "Extension.MissingExtensionIdentifier",
            Self::UnknownIdentifier(_) => "Extension.UnknownExtensionIdentifier",
            Self::MissingErrorType => "Extension.MissingHeader",
        }
    }
}

/// The events an extension subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExtensionEventType {
    Invoke,
    Shutdown,
}

/// `POST /extension/register`'s body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RegisterRequest {
    #[serde(default)]
    pub events: Vec<ExtensionEventType>,
}

impl RegisterRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ExtensionError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ExtensionError::InvalidEventType(e.to_string()),
            _ => ExtensionError::InvalidRequestFormat(e.to_string()),
        })
    }
}

/// `POST /extension/register`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    pub function_name: String,
    pub function_version: String,
    pub handler: String,
    /// Only when the extension asked for it (`Lambda-Extension-Accept-Feature: accountId`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

/// Whether a `Lambda-Extension-Accept-Feature` value (a comma-separated list) names `accountId`.
pub fn accepts_account_id(features: &str) -> bool {
    features.split(',').any(|f| f.trim() == "accountId")
}

/// Why an instance is shutting down, as `SHUTDOWN` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShutdownReason {
    Spindown,
    Timeout,
    Failure,
}

/// What `GET /extension/event/next` hands an extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "eventType", rename_all = "UPPERCASE")]
pub enum ExtensionEvent {
    #[serde(rename_all = "camelCase")]
    Invoke {
        deadline_ms: u64,
        request_id: String,
        invoked_function_arn: String,
        tracing: Tracing,
    },
    #[serde(rename_all = "camelCase")]
    Shutdown {
        shutdown_reason: ShutdownReason,
        deadline_ms: u64,
    },
}

impl ExtensionEvent {
    pub fn kind(&self) -> ExtensionEventType {
        match self {
            Self::Invoke { .. } => ExtensionEventType::Invoke,
            Self::Shutdown { .. } => ExtensionEventType::Shutdown,
        }
    }
}

/// An `INVOKE` event's trace header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tracing {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl RuntimeApiError {
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidRequestId(_)
            | Self::TruncatedHttpRequest(_)
            | Self::InvalidResponseMode(_) => 400,
            Self::Subscription(e) => e.status(),
            Self::InvalidStateTransition(_) | Self::NotTheRuntime | Self::Extension(_) => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestEntityTooLarge { .. } => 413,
            Self::ShuttingDown => 500,
        }
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidRequestId(_) => "InvalidRequestID",
            Self::InvalidStateTransition(_) => "InvalidStateTransition",
            Self::RequestEntityTooLarge { .. } => "RequestEntityTooLarge",
            Self::TruncatedHttpRequest(_) => "TruncatedHTTPRequest",
            Self::InvalidResponseMode(_) => "InvalidResponseModeHeader",
            Self::NotFound => "NotFound",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::ShuttingDown => "InternalServerError",
            Self::NotTheRuntime => "AccessDenied",
            Self::Extension(e) => e.error_type(),
            Self::Subscription(e) => e.error_type(),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "errorMessage": self.to_string(), "errorType": self.error_type() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The Runtime API's own routes as a match on the whole segment list.
    fn by_segment_list(method: &str, rest: &str) -> Route {
        let segments: Vec<&str> = rest.split('/').collect();
        let (route, expected) = match segments.as_slice() {
            ["", "runtime", "invocation", "next"] => (Route::Next, "GET"),
            ["", "runtime", "init", "error"] => (Route::InitError, "POST"),
            ["", "runtime", "invocation", id, "response"] if !id.is_empty() => {
                (Route::Response((*id).to_owned()), "POST")
            }
            ["", "runtime", "invocation", id, "error"] if !id.is_empty() => {
                (Route::Error((*id).to_owned()), "POST")
            }
            _ => return Route::NotFound,
        };
        if method == expected {
            route
        } else {
            Route::MethodNotAllowed
        }
    }

    proptest! {
        #[test]
        fn runtime_routes_parse_as_a_match_on_the_segment_list(
            method in prop::sample::select(vec!["GET", "POST", "PUT"]),
            route in prop::sample::select(vec![
                "/runtime/invocation/next",
                "/runtime/init/error",
                "/runtime/invocation/8a7f/response",
                "/runtime/invocation/8a7f/error",
                "/runtime/invocation//response",
            ]),
            // A route cut short, changed in one place, or made longer.
            keep in 0usize..7,
            changed in prop::option::of((0usize..6, prop::sample::select(vec!["", "next", "x"]))),
            more in prop::collection::vec(prop::sample::select(vec!["", "next", "response"]), 0..3),
        ) {
            let mut segments: Vec<&str> = route.split('/').take(keep).collect();
            if let Some((at, segment)) = changed {
                if let Some(place) = segments.get_mut(at) {
                    *place = segment;
                }
            }
            segments.extend(more);
            let rest = segments.join("/");
            let path = format!("{PREFIX}{rest}");
            prop_assert_eq!(Route::parse(method, &path), by_segment_list(method, &rest));
        }
    }

    #[test]
    fn routes_parse() {
        assert_eq!(
            Route::parse("GET", "/2018-06-01/runtime/invocation/next"),
            Route::Next
        );
        assert_eq!(
            Route::parse("POST", "/2018-06-01/runtime/invocation/abc/response"),
            Route::Response("abc".into())
        );
        assert_eq!(
            Route::parse("POST", "/2018-06-01/runtime/invocation/abc/error"),
            Route::Error("abc".into())
        );
        assert_eq!(
            Route::parse("POST", "/2018-06-01/runtime/init/error"),
            Route::InitError
        );
        assert_eq!(
            Route::parse("POST", "/2018-06-01/runtime/invocation/next"),
            Route::MethodNotAllowed
        );
        assert_eq!(
            Route::parse("POST", "/2018-06-01/runtime/invocation//response"),
            Route::NotFound
        );
        assert_eq!(
            Route::parse("GET", "/2018-06-01/runtime/x"),
            Route::NotFound
        );
        assert_eq!(Route::parse("GET", "/ping"), Route::Ping);
        assert_eq!(
            Route::parse("PUT", "/2022-07-01/telemetry"),
            Route::Subscribe(crate::lambda::telemetry::Api::Telemetry)
        );
        assert_eq!(
            Route::parse("PUT", "/2020-08-15/logs/"),
            Route::Subscribe(crate::lambda::telemetry::Api::Logs)
        );
        assert_eq!(
            Route::parse("POST", "/2022-07-01/telemetry"),
            Route::MethodNotAllowed
        );
    }

    #[test]
    fn extension_routes_and_events_are_aws_shapes() {
        assert_eq!(
            Route::parse("POST", "/2020-01-01/extension/register"),
            Route::ExtensionRegister
        );
        assert_eq!(
            Route::parse("GET", "/2020-01-01/extension/event/next"),
            Route::ExtensionNext
        );
        assert_eq!(
            Route::parse("POST", "/2020-01-01/extension/init/error"),
            Route::ExtensionInitError
        );
        assert_eq!(
            Route::parse("POST", "/2020-01-01/extension/exit/error"),
            Route::ExtensionExitError
        );
        assert_eq!(
            Route::parse("GET", "/2020-01-01/extension/register"),
            Route::MethodNotAllowed
        );
        let invoke = ExtensionEvent::Invoke {
            deadline_ms: 5,
            request_id: "r".into(),
            invoked_function_arn: "arn".into(),
            tracing: Tracing {
                kind: "X-Amzn-Trace-Id".into(),
                value: "Root=1".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&invoke).unwrap(),
            serde_json::json!({"eventType": "INVOKE", "deadlineMs": 5, "requestId": "r",
                "invokedFunctionArn": "arn", "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1"}})
        );
        let shutdown = ExtensionEvent::Shutdown {
            shutdown_reason: ShutdownReason::Spindown,
            deadline_ms: 7,
        };
        assert_eq!(
            serde_json::to_value(&shutdown).unwrap(),
            serde_json::json!({"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 7})
        );
        assert_eq!(
            RegisterRequest::parse(br#"{"events":["INVOKE","SHUTDOWN"]}"#),
            Ok(RegisterRequest {
                events: vec![ExtensionEventType::Invoke, ExtensionEventType::Shutdown]
            })
        );
        assert!(matches!(
            RegisterRequest::parse(br#"{"events":["BOOT"]}"#),
            Err(ExtensionError::InvalidEventType(_))
        ));
        assert!(matches!(
            RegisterRequest::parse(b"{"),
            Err(ExtensionError::InvalidRequestFormat(_))
        ));
        assert!(accepts_account_id("other, accountId"));
        assert!(!accepts_account_id("accountIds"));
        let e = RuntimeApiError::from(ExtensionError::MissingIdentifier);
        assert_eq!(
            (e.status(), e.error_type()),
            (403, "Extension.MissingExtensionIdentifier")
        );
    }

    #[test]
    fn a_stranger_is_refused_without_learning_anything() {
        let e = RuntimeApiError::NotTheRuntime;
        assert_eq!((e.status(), e.error_type()), (403, "AccessDenied"));
        assert_eq!(
            e.body()["errorMessage"],
            "this Runtime API serves only its instance's runtime and the processes it started"
        );
    }
}
