//! Errors an operation answers with (`greengrass-ipc.md` §4.6), mapped to the wire in one
//! place, [`IpcError::to_wire`], with no catch-all arm: a new variant forces a decision.

use std::fmt;

use serde_json::{json, Map, Value};

use super::envelope::{CONTENT_TYPE_JSON, CONTENT_TYPE_TEXT};

/// A modelled error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorShape {
    Unauthorized,
    Service,
    ResourceNotFound,
    InvalidArguments,
    InvalidToken,
    ComponentNotFound,
    Conflict,
    FailedUpdateConditionCheck,
}

impl ErrorShape {
    /// The `service-model-type` of the shape.
    pub fn shape_id(self) -> &'static str {
        match self {
            Self::Unauthorized => "aws.greengrass#UnauthorizedError",
            Self::Service => "aws.greengrass#ServiceError",
            Self::ResourceNotFound => "aws.greengrass#ResourceNotFoundError",
            Self::InvalidArguments => "aws.greengrass#InvalidArgumentsError",
            Self::InvalidToken => "aws.greengrass#InvalidTokenError",
            Self::ComponentNotFound => "aws.greengrass#ComponentNotFoundError",
            Self::Conflict => "aws.greengrass#ConflictError",
            Self::FailedUpdateConditionCheck => "aws.greengrass#FailedUpdateConditionCheckError",
        }
    }

    /// Python's `is_client_error`; the others are server errors, which Python retries.
    pub fn is_client_error(self) -> bool {
        match self {
            Self::Unauthorized
            | Self::ResourceNotFound
            | Self::InvalidArguments
            | Self::ComponentNotFound
            | Self::Conflict
            | Self::FailedUpdateConditionCheck => true,
            Self::Service | Self::InvalidToken => false,
        }
    }
}

impl fmt::Display for ErrorShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shape_id())
    }
}

/// Why an operation failed, as the client will see it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IpcError {
    #[error("{message}")]
    Unauthorized { message: String },
    #[error("{message}")]
    Service {
        message: String,
        /// `ServiceError.context`, e.g. `{"reasonString", "reasonCode"}` of a failed SUBACK.
        context: Option<Map<String, Value>>,
    },
    #[error("{message}")]
    ResourceNotFound {
        message: String,
        resource_type: Option<String>,
        resource_name: Option<String>,
    },
    #[error("{message}")]
    InvalidArguments { message: String },
    #[error("{message}")]
    InvalidToken { message: String },
    #[error("{message}")]
    ComponentNotFound { message: String },
    #[error("{message}")]
    Conflict { message: String },
    #[error("{message}")]
    FailedUpdateConditionCheck { message: String },
    /// A failure the model has no shape for: a request that does not deserialise into its
    /// shape, or a bug in a handler. The nucleus answers `text/plain` `InternalServerError`
    /// (§3.7); `detail` is for the host's log and never sent.
    #[error("internal server error: {detail}")]
    Unmodelled { detail: String },
}

/// An error as it goes on the wire: APPLICATION_ERROR with TERMINATE_STREAM, and these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorWire {
    pub content_type: &'static str,
    /// `None` for the unmodelled error, which carries no shape.
    pub service_model_type: Option<&'static str>,
    pub payload: Vec<u8>,
}

impl IpcError {
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized {
            message: message.into(),
        }
    }

    pub fn service(message: impl Into<String>) -> Self {
        Self::Service {
            message: message.into(),
            context: None,
        }
    }

    pub fn invalid_arguments(message: impl Into<String>) -> Self {
        Self::InvalidArguments {
            message: message.into(),
        }
    }

    pub fn resource_not_found(message: impl Into<String>) -> Self {
        Self::ResourceNotFound {
            message: message.into(),
            resource_type: None,
            resource_name: None,
        }
    }

    pub fn unmodelled(detail: impl Into<String>) -> Self {
        Self::Unmodelled {
            detail: detail.into(),
        }
    }

    /// What the nucleus answers for an operation of the model that it does not implement
    /// (§3.7, §4.7), given the operation's name (`Operation::name`): `ServiceError
    /// "Operation aws.greengrass#X is not supported by Greengrass"`.
    pub fn not_supported(operation: &str) -> Self {
        Self::service(format!(
            "Operation {operation} is not supported by Greengrass"
        ))
    }

    /// The shape the error is sent as; `None` for [`IpcError::Unmodelled`].
    pub fn shape(&self) -> Option<ErrorShape> {
        Some(match self {
            Self::Unauthorized { .. } => ErrorShape::Unauthorized,
            Self::Service { .. } => ErrorShape::Service,
            Self::ResourceNotFound { .. } => ErrorShape::ResourceNotFound,
            Self::InvalidArguments { .. } => ErrorShape::InvalidArguments,
            Self::InvalidToken { .. } => ErrorShape::InvalidToken,
            Self::ComponentNotFound { .. } => ErrorShape::ComponentNotFound,
            Self::Conflict { .. } => ErrorShape::Conflict,
            Self::FailedUpdateConditionCheck { .. } => ErrorShape::FailedUpdateConditionCheck,
            Self::Unmodelled { .. } => return None,
        })
    }

    /// The error's headers and payload. Members that are `None` are omitted, as the clients'
    /// serialisers omit them; `{"message": ...}` is all the clients read besides the extras of
    /// §4.6.
    pub fn to_wire(&self) -> ErrorWire {
        let modelled = |shape: ErrorShape, body: Value| ErrorWire {
            content_type: CONTENT_TYPE_JSON,
            service_model_type: Some(shape.shape_id()),
            payload: body.to_string().into_bytes(),
        };
        match self {
            Self::Unauthorized { message } => {
                modelled(ErrorShape::Unauthorized, json!({ "message": message }))
            }
            Self::Service { message, context } => {
                let mut body = json!({ "message": message });
                if let Some(context) = context {
                    body["context"] = Value::Object(context.clone());
                }
                modelled(ErrorShape::Service, body)
            }
            Self::ResourceNotFound {
                message,
                resource_type,
                resource_name,
            } => {
                let mut body = json!({ "message": message });
                if let Some(t) = resource_type {
                    body["resourceType"] = t.as_str().into();
                }
                if let Some(n) = resource_name {
                    body["resourceName"] = n.as_str().into();
                }
                modelled(ErrorShape::ResourceNotFound, body)
            }
            Self::InvalidArguments { message } => {
                modelled(ErrorShape::InvalidArguments, json!({ "message": message }))
            }
            Self::InvalidToken { message } => {
                modelled(ErrorShape::InvalidToken, json!({ "message": message }))
            }
            Self::ComponentNotFound { message } => {
                modelled(ErrorShape::ComponentNotFound, json!({ "message": message }))
            }
            Self::Conflict { message } => {
                modelled(ErrorShape::Conflict, json!({ "message": message }))
            }
            Self::FailedUpdateConditionCheck { message } => modelled(
                ErrorShape::FailedUpdateConditionCheck,
                json!({ "message": message }),
            ),
            Self::Unmodelled { .. } => ErrorWire {
                content_type: CONTENT_TYPE_TEXT,
                service_model_type: None,
                payload: b"InternalServerError".to_vec(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_error_for_an_unimplemented_operation_matches_the_capture() {
        let wire = IpcError::not_supported("aws.greengrass#ListComponents").to_wire();
        assert_eq!(wire.content_type, "application/json");
        assert_eq!(wire.service_model_type, Some("aws.greengrass#ServiceError"));
        assert_eq!(
            wire.payload,
            br#"{"message":"Operation aws.greengrass#ListComponents is not supported by Greengrass"}"#
        );
    }

    #[test]
    fn optional_members_are_omitted_or_sent() {
        let bare = IpcError::resource_not_found("Key not found").to_wire();
        assert_eq!(bare.payload, br#"{"message":"Key not found"}"#);
        let full = IpcError::ResourceNotFound {
            message: "Component with given name not found".into(),
            resource_type: Some("Component".into()),
            resource_name: Some("com.example.Probe".into()),
        };
        let body: Value = serde_json::from_slice(&full.to_wire().payload).unwrap();
        assert_eq!(
            body,
            json!({"message": "Component with given name not found", "resourceType": "Component", "resourceName": "com.example.Probe"})
        );
        let mut context = Map::new();
        context.insert("reasonCode".into(), 135.into());
        let service = IpcError::Service {
            message: "Subscribe to topic a failed with error NOT_AUTHORIZED".into(),
            context: Some(context),
        };
        let body: Value = serde_json::from_slice(&service.to_wire().payload).unwrap();
        assert_eq!(body["context"]["reasonCode"], 135);
    }

    #[test]
    fn unmodelled_errors_are_plain_text_without_a_shape() {
        let error = IpcError::unmodelled("expected a string at topic");
        let wire = error.to_wire();
        assert_eq!(wire.content_type, "text/plain");
        assert_eq!(wire.service_model_type, None);
        assert_eq!(wire.payload, b"InternalServerError");
        assert_eq!(error.shape(), None);
    }

    #[test]
    fn every_shape_is_in_the_greengrass_namespace() {
        for shape in [
            ErrorShape::Unauthorized,
            ErrorShape::Service,
            ErrorShape::ResourceNotFound,
            ErrorShape::InvalidArguments,
            ErrorShape::InvalidToken,
            ErrorShape::ComponentNotFound,
            ErrorShape::Conflict,
            ErrorShape::FailedUpdateConditionCheck,
        ] {
            assert!(shape.shape_id().starts_with("aws.greengrass#"));
            assert!(shape.shape_id().ends_with("Error"));
        }
        assert!(!ErrorShape::InvalidToken.is_client_error());
        assert!(ErrorShape::Unauthorized.is_client_error());
    }
}
