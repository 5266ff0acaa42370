//! Where the token exchange service's credentials come from, and how long an answer is kept.
//!
//! - `static`: the configured keys, with an `Expiration` an hour ahead on every answer.
//! - `file`: a JSON file in the answer's own shape, read on every request, so that editing it
//!   takes effect at once (local and cheap, so never cached).
//! - `iot`: the AWS IoT credentials provider. Its credentials are kept until 5 minutes before
//!   they expire; a failed answer from it (a status other than 200) is given again for
//!   `credential_retry_in_sec` by its class; a connection failure or timeout is kept for
//!   [`UNREACHABLE_KEEP`]. One fetch at a time: concurrent requests wait for it and take its
//!   answer, so a hung provider costs them one timeout together, not one each.

use std::path::PathBuf;
#[cfg(test)]
use std::time::UNIX_EPOCH;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::{TesConfig, TesSource};

use super::credentials::{Credentials, FetchError};
use super::iot::IotProvider;
use super::{format_expiration, parse_expiration};

/// Credentials are handed out until this long before they expire (nucleus: 5 minutes).
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// How long a connection failure or timeout is given again before the provider is tried anew.
pub const UNREACHABLE_KEEP: Duration = Duration::from_secs(10);
/// Credentials are never kept longer than this, whatever their expiration says.
pub const MAX_KEEP: Duration = Duration::from_secs(12 * 3600);
/// What a `static` answer says its credentials are good for.
const STATIC_LIFETIME: Duration = Duration::from_secs(3600);

/// The configured source.
#[derive(Debug)]
pub enum Source {
    None,
    Static {
        access_key_id: String,
        secret_access_key: String,
        session_token: String,
    },
    File(PathBuf),
    Iot(Box<IotSource>),
}

/// The `iot` source: the client, the answer kept, and the retry settings.
#[derive(Debug)]
pub struct IotSource {
    provider: IotProvider,
    cache: Mutex<Option<Cached>>,
    config: TesConfig,
}

/// An answer of the IoT provider, given again until `until`.
#[derive(Debug)]
pub struct Cached {
    answer: Result<Credentials, FetchError>,
    until: Instant,
}

impl Source {
    /// The source `[tes]` names; the IoT provider's certificate and key are read now.
    pub fn from_config(config: Option<&TesConfig>, thing_name: &str) -> anyhow::Result<Self> {
        let Some(config) = config else {
            return Ok(Self::None);
        };
        Ok(match config.source {
            TesSource::Static => Self::Static {
                access_key_id: config.access_key_id.clone().unwrap_or_default(),
                secret_access_key: config.secret_access_key.clone().unwrap_or_default(),
                session_token: config.session_token.clone().unwrap_or_default(),
            },
            TesSource::File => Self::File(config.path.clone().unwrap_or_default()),
            TesSource::Iot => Self::Iot(Box::new(IotSource {
                provider: IotProvider::new(config, thing_name)
                    .context("cannot set up the AWS IoT credentials provider client")?,
                cache: Mutex::new(None),
                config: config.clone(),
            })),
        })
    }

    /// Credentials for a caller that is already authorized.
    pub async fn credentials(&self) -> Result<Credentials, FetchError> {
        match self {
            Self::None => Err(FetchError::NotConfigured),
            Self::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => Ok(Credentials {
                access_key_id: access_key_id.clone(),
                secret_access_key: secret_access_key.clone(),
                token: session_token.clone(),
                expiration: format_expiration(SystemTime::now() + STATIC_LIFETIME),
            }),
            Self::File(path) => read_file(path).await,
            Self::Iot(iot) => {
                let IotSource {
                    provider,
                    cache,
                    config,
                } = iot.as_ref();
                // Held across the fetch: one request goes upstream, the others wait for it.
                let mut cached = cache.lock().await;
                if let Some(entry) = cached.as_ref() {
                    if Instant::now() < entry.until {
                        return entry.answer.clone();
                    }
                }
                let answer = provider.fetch().await;
                let keep = keep_for(&answer, config, SystemTime::now());
                if keep.is_zero() {
                    if let Ok(credentials) = &answer {
                        tracing::warn!(expiration = %credentials.expiration, "credentials expire within 5 minutes; not kept");
                    }
                    *cached = None;
                } else {
                    *cached = Some(Cached {
                        answer: answer.clone(),
                        until: Instant::now() + keep,
                    });
                }
                if let Err(e) = &answer {
                    tracing::warn!(error = %e, "credentials fetch failed");
                }
                answer
            }
        }
    }
}

/// The token exchange service's credentials sign requests to remote targets with
/// `credentials = "tes"` (on a production device, the IoT role alias's).
impl crate::remote::KeySource for Source {
    fn key(&self) -> crate::remote::KeyFuture<'_> {
        Box::pin(async move {
            let c = self.credentials().await.map_err(|e| e.to_string())?;
            Ok(crate::remote::SigningKey {
                access_key_id: c.access_key_id,
                secret: c.secret_access_key,
                session_token: Some(c.token).filter(|t| !t.is_empty()),
            })
        })
    }
}

/// How long an answer of the provider is given again.
fn keep_for(
    answer: &Result<Credentials, FetchError>,
    config: &TesConfig,
    now: SystemTime,
) -> Duration {
    match answer {
        Ok(credentials) => parse_expiration(&credentials.expiration)
            .and_then(|t| t.duration_since(now).ok())
            .and_then(|left| left.checked_sub(REFRESH_BEFORE_EXPIRY))
            .unwrap_or_default()
            .min(MAX_KEEP),
        Err(FetchError::Upstream { status, .. }) => config.retry_after(Some(*status)),
        Err(FetchError::Unreachable(_) | FetchError::TimedOut(_)) => UNREACHABLE_KEEP,
        Err(FetchError::NotConfigured | FetchError::File(_) | FetchError::Malformed(_)) => {
            Duration::ZERO
        }
    }
}

async fn read_file(path: &std::path::Path) -> Result<Credentials, FetchError> {
    let text = tokio::fs::read(path)
        .await
        .map_err(|e| FetchError::File(format!("cannot read {}: {e}", path.display())))?;
    #[derive(Deserialize)]
    struct OnDisk {
        #[serde(rename = "AccessKeyId")]
        access_key_id: String,
        #[serde(rename = "SecretAccessKey")]
        secret_access_key: String,
        #[serde(rename = "Token", default)]
        token: Option<String>,
        #[serde(rename = "Expiration", default)]
        expiration: Option<String>,
    }
    let on_disk: OnDisk = serde_json::from_slice(&text).map_err(|e| {
        FetchError::File(format!(
            "{} is not credentials JSON {{\"AccessKeyId\", \"SecretAccessKey\", \"Token\", \"Expiration\"}}: {e}",
            path.display()
        ))
    })?;
    let expiration = match on_disk.expiration {
        Some(expiration) => {
            if parse_expiration(&expiration).is_none() {
                return Err(FetchError::File(format!(
                    "{}: Expiration {expiration:?} is not a UTC time such as 2026-11-22T08:00:00Z",
                    path.display()
                )));
            }
            expiration
        }
        None => format_expiration(SystemTime::now() + STATIC_LIFETIME),
    };
    Ok(Credentials {
        access_key_id: on_disk.access_key_id,
        secret_access_key: on_disk.secret_access_key,
        token: on_disk.token.unwrap_or_default(),
        expiration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(expiration: &str) -> Result<Credentials, FetchError> {
        Ok(Credentials {
            access_key_id: "A".into(),
            secret_access_key: "S".into(),
            token: String::new(),
            expiration: expiration.into(),
        })
    }

    #[test]
    fn answers_are_kept_within_bounds_and_failures_briefly() {
        let config = crate::config::HostConfig::parse(
            "[tes]\nsource = \"static\"\naccess_key_id = \"A\"\nsecret_access_key = \"S\"\n",
        )
        .ok()
        .and_then(|c| c.tes)
        .expect("a [tes] table");
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let in_an_hour = format_expiration(now + Duration::from_secs(3600));
        assert_eq!(
            keep_for(&credentials(&in_an_hour), &config, now),
            Duration::from_secs(3300)
        );
        // An absurd expiration is kept no longer than the cap, and overflows nothing.
        for absurd in ["9999-12-31T23:59:59Z", "99999999999-01-01T00:00:00Z"] {
            assert!(
                keep_for(&credentials(absurd), &config, now) <= MAX_KEEP,
                "{absurd}"
            );
        }
        // A hung or unreachable provider: the waiting requests share the failure for a while.
        for failure in [
            FetchError::TimedOut(Duration::from_secs(30)),
            FetchError::Unreachable("refused".into()),
        ] {
            assert_eq!(keep_for(&Err(failure), &config, now), UNREACHABLE_KEEP);
        }
        assert_eq!(
            keep_for(&Err(FetchError::Malformed("x".into())), &config, now),
            Duration::ZERO
        );
    }

    /// An `iot` source for a provider at `127.0.0.1:port`, with a CA and a device
    /// certificate made for the test in `dir`.
    fn iot_source(dir: &std::path::Path, port: u16) -> Source {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Test credentials CA");
        let ca = ca_params.self_signed(&ca_key).expect("a CA");
        let device_key = KeyPair::generate().expect("a device key");
        let device = CertificateParams::new(Vec::<String>::new())
            .expect("device params")
            .signed_by(&device_key, &ca, &ca_key)
            .expect("a device certificate");
        let files = [
            ("ca.pem", ca.pem()),
            ("device.pem.crt", device.pem()),
            ("private.pem.key", device_key.serialize_pem()),
        ];
        for (name, pem) in &files {
            std::fs::write(dir.join(name), pem).expect("a PEM file");
        }
        let config = crate::config::HostConfig::parse(&format!(
            "[tes]\nsource = \"iot\"\nendpoint = \"127.0.0.1:{port}\"\nrole_alias = \"alias\"\n\
             cert = {:?}\nkey = {:?}\nca = {:?}\n",
            dir.join("device.pem.crt").display().to_string(),
            dir.join("private.pem.key").display().to_string(),
            dir.join("ca.pem").display().to_string(),
        ))
        .expect("the configuration");
        Source::from_config(config.tes.as_ref(), "thing").expect("the iot source")
    }

    /// A provider that takes the connection and never answers: the request ends after the
    /// 30 s timeout, answered 504, and a request right after gets that answer at once
    /// (kept, not a second 30 s wait). The clock is tokio's, paused: no real 30 s pass.
    #[tokio::test(start_paused = true)]
    async fn a_provider_that_never_answers_is_answered_504_after_its_timeout_and_kept() {
        let dir = tempfile::tempdir().expect("a directory");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a listener");
        let port = listener.local_addr().expect("its address").port();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let source = iot_source(dir.path(), port);

        let started = tokio::time::Instant::now();
        let answer = source.credentials().await;
        assert!(
            matches!(answer, Err(FetchError::TimedOut(t)) if t == super::super::iot::TIMEOUT),
            "{answer:?}"
        );
        assert_eq!(answer.as_ref().map_err(FetchError::status).err(), Some(504));
        assert!(started.elapsed() >= super::super::iot::TIMEOUT);

        let again = tokio::time::Instant::now();
        let kept = source.credentials().await;
        assert!(matches!(kept, Err(FetchError::TimedOut(_))), "{kept:?}");
        assert!(
            again.elapsed() < Duration::from_secs(1),
            "the kept answer waited {:?}",
            again.elapsed()
        );
        silent.abort();
    }
}
