//! Every error the Lambda APIs (Invoke and management) answer, with its AWS error code and
//! HTTP status decided here once, exhaustively (`lambda-apis.md` §2.3).

use crate::lambda::sigv4::SignatureError;

/// Why a `TooManyRequestsException` was raised (`Reason` in the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleReason {
    /// The function's queue (`maxQueueSize`) is full.
    ConcurrentInvocationLimitExceeded,
}

impl ThrottleReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConcurrentInvocationLimitExceeded => "ConcurrentInvocationLimitExceeded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("Function not found: {0}")]
    ResourceNotFound(String),
    /// A layer version that does not exist (or no longer does).
    #[error("The resource you requested does not exist.")]
    LayerVersionNotFound,
    #[error("{0}")]
    ResourceConflict(String),
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    InvalidRequestContent(String),
    /// A parameter outside its constraint (a pattern, a length), as AWS's request
    /// validation answers it.
    #[error("{0}")]
    Validation(String),
    #[error("Request must be smaller than {limit} bytes for the {operation} operation")]
    RequestTooLarge {
        limit: usize,
        operation: &'static str,
    },
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_seconds: u32,
        reason: ThrottleReason,
    },
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Service(String),
    /// No room for a function's code (AWS: the account's code storage is used up; here: the
    /// device's disk is full).
    #[error("{0}")]
    CodeStorageExceeded(String),
    #[error("{0}")]
    UnknownOperation(String),
    #[error("{0}")]
    AccessDenied(String),
    #[error("Component not found: {0}")]
    ComponentNotFound(String),
    /// The request's Signature Version 4 was not accepted.
    #[error("{0}")]
    Signature(#[from] crate::lambda::sigv4::SignatureError),
    /// A function delegated to a remote target that could not run it there: unreachable,
    /// timed out, refused the request, or answered something that is not an Invoke answer.
    #[error("{0}")]
    RemoteTarget(String),
}

/// Whose fault an error is, as AWS reports it in the body's `Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    User,
    Service,
}

impl Blame {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Service => "Service",
        }
    }
}

impl ApiError {
    /// The AWS error code sent as `X-Amzn-ErrorType`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ResourceNotFound(_) | Self::LayerVersionNotFound => "ResourceNotFoundException",
            Self::Validation(_) => "ValidationException",
            Self::ResourceConflict(_) => "ResourceConflictException",
            Self::InvalidParameterValue(_) => "InvalidParameterValueException",
            Self::InvalidRequestContent(_) => "InvalidRequestContentException",
            Self::RequestTooLarge { .. } => "RequestTooLargeException",
            Self::TooManyRequests { .. } => "TooManyRequestsException",
            Self::UnsupportedMediaType(_) => "UnsupportedMediaTypeException",
            Self::Service(_) => "ServiceException",
            Self::CodeStorageExceeded(_) => "CodeStorageExceededException",
            Self::UnknownOperation(_) => "UnknownOperationException",
            Self::AccessDenied(_) => "AccessDeniedException",
            Self::ComponentNotFound(_) => "ResourceNotFoundException",
            Self::RemoteTarget(_) => "RemoteTargetException",
            Self::Signature(e) => match e {
                SignatureError::Missing => "MissingAuthenticationTokenException",
                SignatureError::Incomplete(_) => "IncompleteSignatureException",
                SignatureError::UnknownKey => "UnrecognizedClientException",
                SignatureError::Mismatch | SignatureError::Expired(_) => {
                    "InvalidSignatureException"
                }
            },
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::ResourceNotFound(_)
            | Self::LayerVersionNotFound
            | Self::UnknownOperation(_)
            | Self::ComponentNotFound(_) => 404,
            Self::ResourceConflict(_) => 409,
            Self::AccessDenied(_) | Self::Signature(_) => 403,
            Self::InvalidParameterValue(_)
            | Self::InvalidRequestContent(_)
            | Self::CodeStorageExceeded(_)
            | Self::Validation(_) => 400,
            Self::RequestTooLarge { .. } => 413,
            Self::TooManyRequests { .. } => 429,
            Self::UnsupportedMediaType(_) => 415,
            Self::Service(_) => 500,
            Self::RemoteTarget(_) => 502,
        }
    }

    pub fn blame(&self) -> Blame {
        match self {
            Self::Service(_) | Self::RemoteTarget(_) => Blame::Service,
            Self::ResourceNotFound(_)
            | Self::LayerVersionNotFound
            | Self::Validation(_)
            | Self::ResourceConflict(_)
            | Self::InvalidParameterValue(_)
            | Self::InvalidRequestContent(_)
            | Self::CodeStorageExceeded(_)
            | Self::RequestTooLarge { .. }
            | Self::TooManyRequests { .. }
            | Self::UnsupportedMediaType(_)
            | Self::UnknownOperation(_)
            | Self::AccessDenied(_)
            | Self::ComponentNotFound(_)
            | Self::Signature(_) => Blame::User,
        }
    }

    /// The JSON body AWS sends with the error (`{"Type","message"}`, plus throttling details).
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "Type": self.blame().as_str(),
            "message": self.to_string(),
        });
        if let Self::TooManyRequests {
            retry_after_seconds,
            reason,
            ..
        } = self
        {
            body["Reason"] = reason.as_str().into();
            body["retryAfterSeconds"] = retry_after_seconds.to_string().into();
        }
        body
    }
}
