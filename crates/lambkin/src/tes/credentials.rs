//! What the token exchange service hands out and why it cannot: the types every credential
//! source shares (a leaf: the sources and the server use it, it uses none of them).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One set of AWS credentials, in the ECS container-credentials shape the endpoint answers.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(rename = "AccessKeyId")]
    pub access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    pub secret_access_key: String,
    /// The session token; empty for long-term keys.
    #[serde(rename = "Token", default)]
    pub token: String,
    /// `2026-11-22T08:00:00Z`
    #[serde(rename = "Expiration")]
    pub expiration: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// Why no credentials can be given. [`FetchError::status`] is where each becomes a status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("no credential source is configured: add a [tes] table to config.toml")]
    NotConfigured,
    #[error("{0}")]
    File(String),
    #[error("the AWS IoT credentials provider answered {status}: {body}")]
    Upstream { status: u16, body: String },
    #[error("the AWS IoT credentials provider answered 200 with {0}")]
    Malformed(String),
    #[error("the AWS IoT credentials provider cannot be reached: {0}")]
    Unreachable(String),
    #[error("the AWS IoT credentials provider did not answer within {} s", .0.as_secs())]
    TimedOut(Duration),
}

impl FetchError {
    /// The status the endpoint answers with: the upstream's own status when it answered
    /// (as the nucleus does), 504 on its timeout, 500 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::Upstream { status, .. } => *status,
            Self::TimedOut(_) => 504,
            Self::NotConfigured | Self::File(_) | Self::Malformed(_) | Self::Unreachable(_) => 500,
        }
    }
}
