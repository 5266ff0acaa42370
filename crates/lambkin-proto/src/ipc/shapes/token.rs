//! ValidateAuthorizationToken (§4.5): Stream Manager asks whether a token is one the host gave
//! out. Only `aws.greengrass.StreamManager` may call it (see
//! [`authorization`](crate::ipc::authorization)).

use serde::{Deserialize, Serialize};

use crate::ipc::error::IpcError;

/// `ValidateAuthorizationTokenRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ValidateAuthorizationTokenRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl ValidateAuthorizationTokenRequest {
    /// The token to look up; a missing one is the nucleus's `InvalidTokenError`.
    pub fn validate(self) -> Result<String, IpcError> {
        self.token.ok_or_else(|| IpcError::InvalidToken {
            message: "Invalid authentication token".into(),
        })
    }
}

/// The answer for a token the host does not know: an error, never `isValid: false`.
pub fn token_not_found() -> IpcError {
    IpcError::InvalidToken {
        message: "Authentication token not found".into(),
    }
}

/// `ValidateAuthorizationTokenResponse`: `{"isValid": true}` for a known token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidateAuthorizationTokenResponse {
    pub is_valid: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::shapes::parse_request;

    #[test]
    fn tokens_are_validated_with_the_nucleus_errors() {
        let request: ValidateAuthorizationTokenRequest =
            parse_request(br#"{"token": "ABC"}"#).unwrap();
        assert_eq!(request.validate().unwrap(), "ABC");
        let missing: ValidateAuthorizationTokenRequest = parse_request(b"{}").unwrap();
        assert_eq!(
            missing.validate().unwrap_err().to_wire().payload,
            br#"{"message":"Invalid authentication token"}"#
        );
        assert_eq!(
            token_not_found().to_wire().service_model_type,
            Some("aws.greengrass#InvalidTokenError")
        );
        assert_eq!(
            serde_json::to_string(&ValidateAuthorizationTokenResponse { is_valid: true }).unwrap(),
            r#"{"isValid":true}"#
        );
    }
}
