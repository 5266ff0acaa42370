//! The parts of an Invoke API request (`POST /2015-03-31/functions/{name}/invocations`),
//! parsed from header and path values into types (`lambda-apis.md` §2.1).

use super::error::ApiError;
use super::function::FunctionName;

pub const HEADER_INVOCATION_TYPE: &str = "x-amz-invocation-type";
pub const HEADER_LOG_TYPE: &str = "x-amz-log-type";
pub const HEADER_CLIENT_CONTEXT: &str = "x-amz-client-context";
pub const HEADER_TRACE_ID: &str = "x-amzn-trace-id";
pub const HEADER_FUNCTION_ERROR: &str = "x-amz-function-error";
pub const HEADER_LOG_RESULT: &str = "x-amz-log-result";
pub const HEADER_EXECUTED_VERSION: &str = "x-amz-executed-version";
pub const HEADER_REQUEST_ID: &str = "x-amzn-requestid";
pub const HEADER_ERROR_TYPE: &str = "x-amzn-errortype";

/// The response headers an invoke answer carries, as header names made at compile time: a
/// name given as text is parsed, and a non-standard one copied, on every response.
pub mod header {
    use http::HeaderName;

    pub const REQUEST_ID: HeaderName = HeaderName::from_static(super::HEADER_REQUEST_ID);
    pub const EXECUTED_VERSION: HeaderName =
        HeaderName::from_static(super::HEADER_EXECUTED_VERSION);
    pub const FUNCTION_ERROR: HeaderName = HeaderName::from_static(super::HEADER_FUNCTION_ERROR);
    pub const LOG_RESULT: HeaderName = HeaderName::from_static(super::HEADER_LOG_RESULT);
}

/// The only version Lambkin runs; `Qualifier` may name it or be absent.
pub const LATEST: &str = "$LATEST";
/// `ClientContext` is at most 3,583 bytes of base64.
pub const MAX_CLIENT_CONTEXT_BYTES: usize = 3583;
/// The log tail returned with `X-Amz-Log-Type: Tail`.
pub const LOG_TAIL_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvocationType {
    #[default]
    RequestResponse,
    Event,
    DryRun,
}

impl InvocationType {
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("RequestResponse") => Ok(Self::RequestResponse),
            Some("Event") => Ok(Self::Event),
            Some("DryRun") => Ok(Self::DryRun),
            Some(other) => Err(ApiError::InvalidParameterValue(format!(
                "invocation type {other:?} must be RequestResponse, Event or DryRun"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogType {
    #[default]
    None,
    Tail,
}

impl LogType {
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("None") => Ok(Self::None),
            Some("Tail") => Ok(Self::Tail),
            Some(other) => Err(ApiError::InvalidParameterValue(format!(
                "log type {other:?} must be None or Tail"
            ))),
        }
    }
}

/// A `{FunctionName}` path value: a bare name, a partial ARN (`123456789012:function:NAME`)
/// or a full ARN, each optionally with `:QUALIFIER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: FunctionName,
    pub qualifier: Option<String>,
}

impl FunctionRef {
    pub fn parse(value: &str, query_qualifier: Option<&str>) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::InvalidParameterValue(format!(
                "function name {value:?} is not a valid function name or ARN"
            ))
        };
        if value.is_empty() || value.len() > 170 {
            return Err(invalid());
        }
        let parts: Vec<&str> = value.split(':').collect();
        let (name, qualifier) = match parts.as_slice() {
            [name] => (*name, None),
            [name, q] => (*name, Some(*q)),
            [_account, "function", name] => (*name, None),
            [_account, "function", name, q] => (*name, Some(*q)),
            ["arn", _partition, "lambda", _region, _account, "function", name] => (*name, None),
            ["arn", _partition, "lambda", _region, _account, "function", name, q] => {
                (*name, Some(*q))
            }
            _ => return Err(invalid()),
        };
        let name = FunctionName::parse(name).map_err(|_| invalid())?;
        let qualifier = match (qualifier, query_qualifier) {
            (Some(a), Some(b)) if a != b => {
                return Err(ApiError::InvalidParameterValue(format!(
                    "the qualifier in the function name ({a}) and in the query ({b}) differ"
                )))
            }
            (q, None) | (None, q) => q,
            (Some(a), Some(_)) => Some(a),
        };
        Ok(Self {
            name,
            qualifier: qualifier.map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_refs_accept_every_aws_form() {
        for (input, name, q) in [
            ("my-fn", "my-fn", None),
            ("my-fn:$LATEST", "my-fn", Some("$LATEST")),
            ("123456789012:function:my-fn", "my-fn", None),
            (
                "arn:aws:lambda:us-west-2:123456789012:function:my-fn",
                "my-fn",
                None,
            ),
            (
                "arn:aws:lambda:us-west-2:123456789012:function:my-fn:prod",
                "my-fn",
                Some("prod"),
            ),
        ] {
            let r = FunctionRef::parse(input, None).unwrap();
            assert_eq!(r.name.as_str(), name);
            assert_eq!(r.qualifier.as_deref(), q);
        }
        for bad in ["", "a/b", "a:b:c", "arn:aws:s3:::bucket", "my fn"] {
            assert!(FunctionRef::parse(bad, None).is_err(), "{bad}");
        }
        assert!(FunctionRef::parse("f:1", Some("2")).is_err());
    }

    #[test]
    fn header_values_parse() {
        assert_eq!(
            InvocationType::parse(None).unwrap(),
            InvocationType::RequestResponse
        );
        assert_eq!(
            InvocationType::parse(Some("Event")).unwrap(),
            InvocationType::Event
        );
        assert!(InvocationType::parse(Some("event")).is_err());
        assert_eq!(LogType::parse(Some("Tail")).unwrap(), LogType::Tail);
        assert!(LogType::parse(Some("tail")).is_err());
    }
}
