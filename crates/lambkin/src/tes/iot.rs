//! The AWS IoT credentials provider client: `GET https://ENDPOINT/role-aliases/ALIAS/credentials`
//! over mutual TLS with the device certificate, the thing name in `x-amzn-iot-thingname`. It
//! answers `{"credentials":{"accessKeyId","secretAccessKey","sessionToken","expiration"}}`,
//! mapped here to the ECS shape the token exchange service hands out.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use crate::config::TesConfig;

use super::credentials::{Credentials, FetchError};

/// How long a whole request may take (the nucleus's upstream timeout, answered with 504).
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an answer read; the real one is under 2 KB.
const MAX_ANSWER: usize = 64 * 1024;

/// A client for one endpoint and role alias.
pub struct IotProvider {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    path: String,
    thing_name: String,
    tls: TlsConnector,
}

impl std::fmt::Debug for IotProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IotProvider")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Answer {
    credentials: Upstream,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Upstream {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

impl IotProvider {
    /// Reads the certificate, key and CA (`[tes] cert`, `key`, `ca`; the system's roots when
    /// no CA is given) and checks the endpoint.
    pub fn new(config: &TesConfig, thing_name: &str) -> anyhow::Result<Self> {
        let (host, port) = config.iot_endpoint().map_err(anyhow::Error::msg)?;
        let role_alias = config.role_alias.as_deref().unwrap_or_default();
        let cert_path = config.cert.as_deref().unwrap_or(std::path::Path::new(""));
        let key_path = config.key.as_deref().unwrap_or(std::path::Path::new(""));
        let certs = crate::pem::certificates(cert_path)?;
        let key = crate::pem::private_key(key_path)?;
        let roots = crate::pem::roots(config.ca.as_deref())
            .context("the CA to trust (set tes.ca, or the system's certificates)")?;
        let tls = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .with_context(|| {
                format!(
                    "{} and {} are not a certificate and its key",
                    cert_path.display(),
                    key_path.display()
                )
            })?;
        let server_name = ServerName::try_from(host.as_str())
            .map(|n| n.to_owned())
            .with_context(|| format!("tes.endpoint {host:?} is not a host name"))?;
        Ok(Self {
            host,
            port,
            server_name,
            path: format!("/role-aliases/{role_alias}/credentials"),
            thing_name: thing_name.to_owned(),
            tls: TlsConnector::from(Arc::new(tls)),
        })
    }

    /// One request, bounded by [`TIMEOUT`].
    pub async fn fetch(&self) -> Result<Credentials, FetchError> {
        let (status, body) = tokio::time::timeout(TIMEOUT, self.request())
            .await
            .map_err(|_| FetchError::TimedOut(TIMEOUT))??;
        if status != 200 {
            return Err(FetchError::Upstream {
                status,
                body: String::from_utf8_lossy(&body).trim().to_owned(),
            });
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            FetchError::Malformed(format!("an answer that is not credentials JSON: {e}"))
        })?;
        let c = answer.credentials;
        match super::parse_expiration(&c.expiration) {
            None => {
                return Err(FetchError::Malformed(format!(
                    "an expiration that is not a time: {:?}",
                    c.expiration
                )))
            }
            Some(t) if t <= SystemTime::now() => {
                return Err(FetchError::Malformed(format!(
                    "credentials that expired at {}",
                    c.expiration
                )))
            }
            Some(_) => {}
        }
        Ok(Credentials {
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            token: c.session_token,
            expiration: c.expiration,
        })
    }

    async fn request(&self) -> Result<(u16, Bytes), FetchError> {
        let unreachable = |what: &str, e: &dyn std::fmt::Display| {
            FetchError::Unreachable(format!("{what} {}:{}: {e}", self.host, self.port))
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable("cannot connect to", &e))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| unreachable("TLS with", &e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable("HTTP with", &e))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let host_header = if self.port == 443 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let request = hyper::Request::get(self.path.as_str())
            .header(hyper::header::HOST, host_header)
            .header("x-amzn-iot-thingname", self.thing_name.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| unreachable("cannot build a request for", &e))?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| unreachable("no answer from", &e))?;
            let status = response.status().as_u16();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| unreachable("incomplete answer from", &e))?
                .to_bytes();
            Ok((status, body))
        }
        .await;
        driver.abort();
        result
    }
}
