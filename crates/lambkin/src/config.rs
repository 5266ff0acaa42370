//! The host's configuration (`ROOT/config.toml` or `--config`), parsed, validated and frozen
//! before any socket is bound. Unknown keys are errors; every problem is named at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct HostConfig {
    /// The Invoke API listener.
    pub listen: SocketAddr,
    /// `AWS_REGION` given to functions and used in ARNs.
    pub region: String,
    /// The account id used in ARNs.
    pub account_id: String,
    /// The device's AWS IoT thing name (`{iot:thingName}`, `AWS_IOT_THING_NAME`).
    pub thing_name: String,
    pub lambda: LambdaConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct LambdaConfig {
    /// Time an instance gets between SIGTERM and SIGKILL when it is stopped.
    pub shutdown_grace_ms: u64,
    /// Time a runtime has to reach its first `/next` before the instance is killed.
    pub init_timeout_seconds: u64,
    /// Interpreter for `python3.x` runtimes; default: `python3.x`, else `python3`, from PATH.
    pub python: Option<PathBuf>,
    /// Interpreter for `nodejs*` runtimes; default: `node` from PATH.
    pub node: Option<PathBuf>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3001)),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            thing_name: "lambkin".into(),
            lambda: LambdaConfig::default(),
        }
    }
}

impl Default for LambdaConfig {
    fn default() -> Self {
        Self {
            shutdown_grace_ms: 2000,
            init_timeout_seconds: 10,
            python: None,
            node: None,
        }
    }
}

impl LambdaConfig {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
    pub fn init_timeout(&self) -> Duration {
        Duration::from_secs(self.init_timeout_seconds)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problems}")]
    Invalid { path: PathBuf, problems: String },
}

impl HostConfig {
    /// Reads `path`; a missing file at the default location means the defaults.
    pub fn load(path: &Path, must_exist: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Self::default())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Self::parse(&text).map_err(|problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            problems.push(format!(
                "region {:?} is not a region name such as us-east-1",
                self.region
            ));
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(format!(
                "account_id {:?} must be 12 digits",
                self.account_id
            ));
        }
        if self.thing_name.is_empty() || self.thing_name.len() > 128 {
            problems.push(format!(
                "thing_name {:?} must be 1-128 characters",
                self.thing_name
            ));
        }
        if self.lambda.init_timeout_seconds == 0 {
            problems.push("lambda.init_timeout_seconds must be at least 1".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = HostConfig::parse("").unwrap();
        assert_eq!(c, HostConfig::default());
        let c = HostConfig::parse("listen = \"127.0.0.1:0\"\n[lambda]\nshutdown_grace_ms = 10\n")
            .unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.lambda.shutdown_grace(), Duration::from_millis(10));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = HostConfig::parse("lisen = \"x\"").unwrap_err();
        assert!(err.contains("lisen"), "{err}");
        let err = HostConfig::parse("region = \"US East\"\naccount_id = \"1\"").unwrap_err();
        assert!(
            err.contains("region") && err.contains("account_id"),
            "{err}"
        );
    }
}
