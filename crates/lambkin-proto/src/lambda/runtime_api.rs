//! The Lambda Runtime API 2018-06-01 as Lambkin serves it to each instance: routes and the
//! exact header names real runtime clients read (`lambda-apis.md` §1).

pub const PREFIX: &str = "/2018-06-01";

pub const HEADER_REQUEST_ID: &str = "lambda-runtime-aws-request-id";
pub const HEADER_DEADLINE_MS: &str = "lambda-runtime-deadline-ms";
pub const HEADER_FUNCTION_ARN: &str = "lambda-runtime-invoked-function-arn";
pub const HEADER_TRACE_ID: &str = "lambda-runtime-trace-id";
pub const HEADER_CLIENT_CONTEXT: &str = "lambda-runtime-client-context";
pub const HEADER_COGNITO_IDENTITY: &str = "lambda-runtime-cognito-identity";
pub const HEADER_ERROR_TYPE: &str = "lambda-runtime-function-error-type";
pub const HEADER_RESPONSE_MODE: &str = "lambda-runtime-function-response-mode";

/// One Runtime API endpoint, parsed from method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Next,
    Response(String),
    Error(String),
    InitError,
    /// RIE's legacy health check.
    Ping,
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
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return Self::NotFound;
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let (route, expected) = match segments.as_slice() {
            ["", "runtime", "invocation", "next"] => (Self::Next, "GET"),
            ["", "runtime", "init", "error"] => (Self::InitError, "POST"),
            ["", "runtime", "invocation", id, "response"] if !id.is_empty() => {
                (Self::Response((*id).to_owned()), "POST")
            }
            ["", "runtime", "invocation", id, "error"] if !id.is_empty() => {
                (Self::Error((*id).to_owned()), "POST")
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
}

impl RuntimeApiError {
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidRequestId(_)
            | Self::TruncatedHttpRequest(_)
            | Self::InvalidResponseMode(_) => 400,
            Self::InvalidStateTransition(_) | Self::NotTheRuntime => 403,
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
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "errorMessage": self.to_string(), "errorType": self.error_type() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
