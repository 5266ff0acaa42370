//! Remote targets (`[remote_targets.NAME]`): Lambda-compatible Invoke endpoints (AWS Lambda in
//! a region, another Lambkin host) that functions delegate invocations to. Each target is a
//! client with its endpoint, its TLS settings, a signing key source and a small pool of
//! keep-alive connections; [`Target::invoke`] sends one Invoke request, SigV4-signed by
//! `lambkin_proto::lambda::sigv4` (the AWS SDK for Rust's signer), and reads the answer.
//!
//! A leaf below `lambda`: it knows nothing of invocations or functions, only the Invoke API's
//! request and answer. The token exchange service's source reaches it as a [`KeySource`] that
//! `host.rs` hands over, so this module reaches no other.

mod client;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::{RemoteCredentialSource, RemoteTargetConfig};

pub use client::tls_config;

/// A key to sign with: an access key id, its secret and, for temporary credentials, the
/// session token.
#[derive(Clone)]
pub struct SigningKey {
    pub access_key_id: String,
    pub secret: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("SigningKey")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The future a [`KeySource`] answers with.
pub type KeyFuture<'a> = Pin<Box<dyn Future<Output = Result<SigningKey, String>> + Send + 'a>>;

/// Where a target's signing key comes from at each request (the token exchange service's
/// source implements it, so the IoT role alias's credentials sign).
pub trait KeySource: Send + Sync + fmt::Debug {
    fn key(&self) -> KeyFuture<'_>;
}

/// A fixed key (`credentials = "static"`).
#[derive(Debug)]
struct StaticKey(SigningKey);

impl KeySource for StaticKey {
    fn key(&self) -> KeyFuture<'_> {
        Box::pin(std::future::ready(Ok(self.0.clone())))
    }
}

/// A shared-credentials file, read at each request (`credentials = "file"`).
#[derive(Debug)]
struct FileKey {
    path: PathBuf,
    profile: String,
}

impl KeySource for FileKey {
    fn key(&self) -> KeyFuture<'_> {
        Box::pin(async move {
            let text = tokio::fs::read_to_string(&self.path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
            let key =
                crate::keys::AccessKey::from_profile(&text, &self.profile).ok_or_else(|| {
                    format!(
                        "{} has no [{}] profile with aws_access_key_id and aws_secret_access_key",
                        self.path.display(),
                        self.profile
                    )
                })?;
            // Temporary credentials (an assumed role's, SSO's) need their token; the AWS
            // SDKs also read the older name, `aws_security_token`.
            let session_token = ["aws_session_token", "aws_security_token"]
                .into_iter()
                .find_map(|name| crate::keys::profile_setting(&text, &self.profile, name));
            Ok(SigningKey {
                access_key_id: key.access_key_id,
                secret: key.secret,
                session_token,
            })
        })
    }
}

/// The configured targets, by name.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    targets: BTreeMap<String, Arc<Target>>,
}

impl Targets {
    /// Clients for every `[remote_targets.NAME]`; `tes` is the token exchange service's
    /// source, for targets with `credentials = "tes"`. The configuration was checked already
    /// (`config::HostConfig::parse`); what is left to fail is reading a CA file.
    pub fn new(
        configs: &BTreeMap<String, RemoteTargetConfig>,
        host_region: &str,
        tes: Option<Arc<dyn KeySource>>,
    ) -> Result<Self, String> {
        let mut targets = BTreeMap::new();
        for (name, config) in configs {
            let keys: Arc<dyn KeySource> = match config.credentials {
                RemoteCredentialSource::Tes => tes.clone().ok_or_else(|| {
                    format!("remote_targets.{name}: credentials = \"tes\" needs a [tes] section")
                })?,
                RemoteCredentialSource::Static => Arc::new(StaticKey(SigningKey {
                    access_key_id: config.access_key_id.clone().unwrap_or_default(),
                    secret: config.secret_access_key.clone().unwrap_or_default(),
                    session_token: config.session_token.clone(),
                })),
                RemoteCredentialSource::File => Arc::new(FileKey {
                    path: config.path.clone().unwrap_or_default(),
                    profile: config
                        .profile
                        .clone()
                        .unwrap_or_else(|| "default".to_owned()),
                }),
            };
            let target = Target::new(name, config, host_region, keys)
                .map_err(|e| format!("remote_targets.{name}: {e}"))?;
            targets.insert(name.clone(), Arc::new(target));
        }
        Ok(Self { targets })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Target>> {
        self.targets.get(name).cloned()
    }

    /// The targets' names, for an error that names a missing one.
    pub fn names(&self) -> Vec<&str> {
        self.targets.keys().map(String::as_str).collect()
    }
}

/// One remote target: where, how to sign, and its connections.
#[derive(Debug)]
pub struct Target {
    name: String,
    region: String,
    keys: Arc<dyn KeySource>,
    client: client::Client,
    connect_timeout: Duration,
    answer_slack: Duration,
    event_retry_max: Duration,
}

/// An Invoke request to a target.
#[derive(Debug, Clone)]
pub struct RemoteInvoke {
    /// The function's name or ARN at the target.
    pub function: String,
    pub qualifier: Option<String>,
    /// `Event` (answered 202 once the target has it) rather than `RequestResponse`.
    pub event: bool,
    pub payload: Bytes,
    pub content_type: Option<String>,
    /// The client context as JSON (sent base64, as `X-Amz-Client-Context`).
    pub client_context: Option<String>,
    /// Ask for the last 4 KB of the log (`X-Amz-Log-Type: Tail`).
    pub log_tail: bool,
    /// How long the function may run there: the answer is awaited this long plus the target's
    /// `answer_slack_ms`.
    pub function_timeout: Duration,
}

/// What the target answered.
#[derive(Debug, Clone)]
pub enum RemoteAnswer {
    /// `Event`: the target has it (202).
    Accepted { request_id: Option<String> },
    /// `RequestResponse`: the function's answer (200), an error of its own included.
    Response {
        body: Bytes,
        content_type: Option<String>,
        /// `X-Amz-Function-Error`, as the target sent it.
        function_error: Option<String>,
        /// `X-Amz-Log-Result`, as the target sent it.
        log_result: Option<String>,
        request_id: Option<String>,
    },
}

/// Why a target did not run an invocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// No connection (refused, unresolvable, no TLS, past `connect_timeout_ms`), or one that
    /// closed before an answer.
    #[error("remote target {target} is unreachable: {why}")]
    Unreachable { target: String, why: String },
    /// Connected, but no answer in time.
    #[error("remote target {target} did not answer within {} ms", .after.as_millis())]
    TimedOut { target: String, after: Duration },
    /// An Invoke API error answer (403 signature, 404 function, 429, 5xx).
    #[error("remote target {target} answered {status}{}: {message}", .code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Refused {
        target: String,
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// Something that is not an Invoke answer.
    #[error("remote target {target} answered something that is not an Invoke answer: {what}")]
    Garbage { target: String, what: String },
    /// No key to sign with.
    #[error("no key to sign requests to remote target {target}: {why}")]
    Credentials { target: String, why: String },
}

impl Target {
    fn new(
        name: &str,
        config: &RemoteTargetConfig,
        host_region: &str,
        keys: Arc<dyn KeySource>,
    ) -> Result<Self, String> {
        let endpoint = config.address()?;
        let tls = if endpoint.tls {
            Some(tls_config(config)?)
        } else {
            None
        };
        Ok(Self {
            name: name.to_owned(),
            region: config
                .region
                .clone()
                .unwrap_or_else(|| host_region.to_owned()),
            keys,
            client: client::Client::new(endpoint, tls)?,
            connect_timeout: config.connect_timeout(),
            answer_slack: config.answer_slack(),
            event_retry_max: config.event_retry_max(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The longest wait between two attempts to hand over a delegated `Event`.
    pub fn event_retry_max(&self) -> Duration {
        self.event_retry_max
    }

    /// Sends one Invoke request and reads the answer.
    pub async fn invoke(&self, req: &RemoteInvoke) -> Result<RemoteAnswer, RemoteError> {
        let key = self
            .keys
            .key()
            .await
            .map_err(|why| RemoteError::Credentials {
                target: self.name.clone(),
                why,
            })?;
        let answer_within = if req.event {
            self.answer_slack
        } else {
            req.function_timeout + self.answer_slack
        };
        self.client
            .invoke(
                &self.name,
                &self.region,
                &key,
                req,
                self.connect_timeout,
                answer_within,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn a_credentials_file_profile_signs_with_its_session_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s0\n\
             [peer]\naws_access_key_id = ASIAPEER\naws_secret_access_key = s1\n\
             aws_session_token = IQoJb3JpZ2luX2VjE\n\
             [legacy]\naws_access_key_id = ASIALEGACY\naws_secret_access_key = s2\n\
             aws_security_token = OLDTOKEN\n",
        )
        .unwrap();
        let key = |profile: &str| FileKey {
            path: path.clone(),
            profile: profile.to_owned(),
        };
        let peer = key("peer").key().await.unwrap();
        assert_eq!(peer.access_key_id, "ASIAPEER");
        assert_eq!(peer.session_token.as_deref(), Some("IQoJb3JpZ2luX2VjE"));
        let legacy = key("legacy").key().await.unwrap();
        assert_eq!(legacy.session_token.as_deref(), Some("OLDTOKEN"));
        // Long-term keys have none, and another profile's is not borrowed.
        let default = key("default").key().await.unwrap();
        assert_eq!(default.access_key_id, "AKIDDEFAULT");
        assert_eq!(default.session_token, None);

        // The token goes out as SigV4 has it: x-amz-security-token, and signed.
        let mut request = hyper::Request::post("/2015-03-31/functions/f/invocations")
            .header(hyper::header::HOST, "peer.example:9001")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        lambkin_proto::lambda::sigv4::sign_request_with_token(
            &mut request,
            &[],
            &lambkin_proto::lambda::sigv4::Key {
                access_key_id: &peer.access_key_id,
                secret: &peer.secret,
            },
            peer.session_token.as_deref(),
            "us-east-1",
            std::time::SystemTime::now(),
        )
        .unwrap();
        let headers = request.headers();
        assert_eq!(headers["x-amz-security-token"], "IQoJb3JpZ2luX2VjE");
        let authorization = headers["authorization"].to_str().unwrap();
        assert!(
            authorization.contains("x-amz-security-token"),
            "{authorization}"
        );
    }
}
