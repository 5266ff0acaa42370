//! The HTTP side of a remote target: connections (TCP, rustls for `https://`), a pool of idle
//! keep-alive ones, one signed Invoke request and its answer read within limits.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use lambkin_proto::lambda::invoke::{
    HEADER_CLIENT_CONTEXT, HEADER_FUNCTION_ERROR, HEADER_INVOCATION_TYPE, HEADER_LOG_RESULT,
    HEADER_LOG_TYPE, HEADER_REQUEST_ID,
};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use super::{RemoteAnswer, RemoteError, RemoteInvoke, SigningKey};
use crate::config::{RemoteEndpoint, RemoteTargetConfig};

/// The most of an answer read: a synchronous Lambda answer is at most 6 MB.
const MAX_ANSWER_BYTES: usize = 6 * 1024 * 1024 + 64 * 1024;
/// The most of a target's error message kept (in the caller's answer and the log).
const MAX_MESSAGE_BYTES: usize = 1024;
/// The most of a target's error code kept.
const MAX_CODE_BYTES: usize = 128;
/// Idle connections kept per target.
const MAX_IDLE: usize = 32;
/// An idle connection older than this is not reused (a Lambkin host closes idle ones at 30 s).
const IDLE_REUSE: Duration = Duration::from_secs(15);

/// The TLS client settings of an `https://` target: its `ca`, else the system's roots.
pub fn tls_config(config: &RemoteTargetConfig) -> Result<Arc<ClientConfig>, String> {
    let roots = crate::pem::roots(config.ca.as_deref()).map_err(|e| match config.ca {
        Some(_) => e.to_string(),
        None => format!("{e} (or set ca)"),
    })?;
    let mut tls = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

/// Connections to one endpoint.
pub struct Client {
    endpoint: RemoteEndpoint,
    /// `Host`: the host, with the port when it is not the scheme's.
    authority: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(endpoint: RemoteEndpoint, tls: Option<Arc<ClientConfig>>) -> Result<Self, String> {
        let default_port = if endpoint.tls { 443 } else { 80 };
        let host = if endpoint.host.contains(':') {
            format!("[{}]", endpoint.host)
        } else {
            endpoint.host.clone()
        };
        let authority = if endpoint.port == default_port {
            host
        } else {
            format!("{host}:{}", endpoint.port)
        };
        let tls = match tls {
            Some(config) => {
                let name = ServerName::try_from(endpoint.host.clone())
                    .map_err(|_| format!("{:?} is not a host name for TLS", endpoint.host))?;
                Some((TlsConnector::from(config), name))
            }
            None => None,
        };
        Ok(Self {
            endpoint,
            authority,
            tls,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A fresh connection, within `connect_timeout`.
    async fn connect(
        &self,
        target: &str,
        connect_timeout: Duration,
    ) -> Result<SendRequest<Full<Bytes>>, RemoteError> {
        let unreachable = |why: String| RemoteError::Unreachable {
            target: target.to_owned(),
            why,
        };
        let (host, port) = (self.endpoint.host.as_str(), self.endpoint.port);
        let connect = async {
            let tcp = TcpStream::connect((host, port))
                .await
                .map_err(|e| unreachable(format!("cannot connect to {host}:{port}: {e}")))?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                Some((connector, name)) => {
                    let stream = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| unreachable(format!("TLS with {host}:{port}: {e}")))?;
                    handshake(TokioIo::new(stream)).await
                }
                None => handshake(TokioIo::new(tcp)).await,
            }
            .map_err(|e| unreachable(format!("HTTP with {host}:{port}: {e}")))
        };
        tokio::time::timeout(connect_timeout, connect)
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no connection to {host}:{port} within {} ms",
                    connect_timeout.as_millis()
                ))
            })?
    }

    /// An idle connection that is still open, if any.
    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() < IDLE_REUSE && !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    }

    fn put_idle(&self, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE && !sender.is_closed() {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// One signed Invoke request; the answer (its whole body) within `answer_within`.
    pub async fn invoke(
        &self,
        target: &str,
        region: &str,
        key: &SigningKey,
        req: &RemoteInvoke,
        connect_timeout: Duration,
        answer_within: Duration,
    ) -> Result<RemoteAnswer, RemoteError> {
        let request = self.request(target, region, key, req)?;
        let mut sender = match self.take_idle() {
            Some(sender) => sender,
            None => self.connect(target, connect_timeout).await?,
        };
        let exchange = async {
            let sent = match sender.try_send_request(request).await {
                Err(mut e) => match e.take_message() {
                    // The pooled connection closed before the request left: a fresh one.
                    Some(request) => {
                        sender = self.connect(target, connect_timeout).await?;
                        sender.try_send_request(request).await
                    }
                    None => Err(e),
                },
                ok => ok,
            };
            let response = sent.map_err(|e| classify(target, e.error()))?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| RemoteError::Garbage {
                    target: target.to_owned(),
                    what: format!("a body that cannot be read whole: {e}"),
                })?
                .to_bytes();
            Ok::<_, RemoteError>((status, headers, body))
        };
        // The whole exchange, from sending the request to the answer's last byte.
        let (status, headers, body) = tokio::time::timeout(answer_within, exchange)
            .await
            .map_err(|_| RemoteError::TimedOut {
                target: target.to_owned(),
                after: answer_within,
            })??;
        self.put_idle(sender);
        answer(target, req.event, status, &headers, body)
    }

    fn request(
        &self,
        target: &str,
        region: &str,
        key: &SigningKey,
        req: &RemoteInvoke,
    ) -> Result<hyper::Request<Full<Bytes>>, RemoteError> {
        let mut path = format!(
            "/2015-03-31/functions/{}/invocations",
            percent_encode(&req.function)
        );
        if let Some(qualifier) = &req.qualifier {
            path.push_str("?Qualifier=");
            path.push_str(&percent_encode(qualifier));
        }
        let mut builder = hyper::Request::post(path)
            .header(hyper::header::HOST, self.authority.as_str())
            .header(
                HEADER_INVOCATION_TYPE,
                if req.event {
                    "Event"
                } else {
                    "RequestResponse"
                },
            )
            .header(
                "content-type",
                req.content_type.as_deref().unwrap_or("application/json"),
            );
        if req.log_tail && !req.event {
            builder = builder.header(HEADER_LOG_TYPE, "Tail");
        }
        if let Some(context) = req.client_context.as_deref().filter(|_| !req.event) {
            builder = builder.header(
                HEADER_CLIENT_CONTEXT,
                base64::engine::general_purpose::STANDARD.encode(context),
            );
        }
        let mut request =
            builder
                .body(Full::new(req.payload.clone()))
                .map_err(|e| RemoteError::Garbage {
                    target: target.to_owned(),
                    what: format!("cannot build the request: {e}"),
                })?;
        lambkin_proto::lambda::sigv4::sign_request_with_token(
            &mut request,
            &req.payload,
            &lambkin_proto::lambda::sigv4::Key {
                access_key_id: &key.access_key_id,
                secret: &key.secret,
            },
            key.session_token.as_deref(),
            region,
            SystemTime::now(),
        )
        .map_err(|why| RemoteError::Credentials {
            target: target.to_owned(),
            why: format!("cannot sign: {why}"),
        })?;
        Ok(request)
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    // Ends when the connection closes: when the last `SendRequest` is dropped (leaving the
    // pool, or with the target) or the peer closes it.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A send error: an answer that is not HTTP, or a connection that went away.
fn classify(target: &str, e: &hyper::Error) -> RemoteError {
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        RemoteError::Garbage {
            target: target.to_owned(),
            what: e.to_string(),
        }
    } else {
        RemoteError::Unreachable {
            target: target.to_owned(),
            why: format!("the connection ended before an answer: {e}"),
        }
    }
}

fn header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The answer's meaning: 202 to an `Event`, 200 to a `RequestResponse`, an API error
/// (4xx/5xx, its code and message as AWS sends them), or something else.
fn answer(
    target: &str,
    event: bool,
    status: u16,
    headers: &http::HeaderMap,
    body: Bytes,
) -> Result<RemoteAnswer, RemoteError> {
    let request_id = header(headers, HEADER_REQUEST_ID);
    match status {
        202 if event => Ok(RemoteAnswer::Accepted { request_id }),
        200 if !event => Ok(RemoteAnswer::Response {
            content_type: header(headers, "content-type"),
            function_error: header(headers, HEADER_FUNCTION_ERROR),
            log_result: header(headers, HEADER_LOG_RESULT),
            request_id,
            body,
        }),
        400..=599 => {
            let document: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
            let field = |names: &[&str]| -> Option<String> {
                let document = document.as_ref()?;
                names
                    .iter()
                    .find_map(|n| document.get(*n).and_then(|v| v.as_str()))
                    .map(str::to_owned)
            };
            // The target's words go into the caller's answer and the log: bounded, and
            // without control characters (no forged log lines, no terminal escapes).
            let code = header(headers, "x-amzn-errortype")
                .map(|c| c.split(':').next().unwrap_or_default().to_owned())
                .or_else(|| field(&["__type", "code"]))
                .map(|c| printable(&c, MAX_CODE_BYTES));
            let message = match field(&["message", "Message"]) {
                Some(message) => printable(&message, MAX_MESSAGE_BYTES),
                None => printable(&String::from_utf8_lossy(&body), 200),
            };
            Err(RemoteError::Refused {
                target: target.to_owned(),
                status,
                code,
                message,
            })
        }
        other => Err(RemoteError::Garbage {
            target: target.to_owned(),
            what: format!(
                "status {other} to {} request",
                if event {
                    "an Event"
                } else {
                    "a RequestResponse"
                }
            ),
        }),
    }
}

/// `text` without control characters, cut on a character boundary to at most `max` bytes
/// (then ending in `…`, within the `max`).
fn printable(text: &str, max: usize) -> String {
    const MORE: &str = "…";
    let mut out: String = text.chars().filter(|c| !c.is_control()).collect();
    if out.len() > max {
        let mut end = max.saturating_sub(MORE.len());
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push_str(MORE);
    }
    out
}

/// A path segment or query value as AWS SDKs encode it: unreserved characters as they are.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn answers_are_read_as_the_invoke_api_means_them() {
        let mut headers = http::HeaderMap::new();
        headers.insert(HEADER_FUNCTION_ERROR, "Unhandled".parse().unwrap());
        let ok = answer("b", false, 200, &headers, Bytes::from_static(b"{}"));
        assert!(matches!(
            ok,
            Ok(RemoteAnswer::Response { function_error: Some(ref e), .. }) if e == "Unhandled"
        ));
        assert!(matches!(
            answer("b", true, 202, &headers, Bytes::new()),
            Ok(RemoteAnswer::Accepted { .. })
        ));
        let refused = answer(
            "b",
            false,
            403,
            &http::HeaderMap::new(),
            Bytes::from_static(br#"{"Type":"User","message":"The security token included in the request is invalid."}"#),
        );
        assert_eq!(
            refused.map(|_| ()).map_err(|e| e.to_string()),
            Err("remote target b answered 403: The security token included in the request is invalid.".to_owned())
        );
        assert!(matches!(
            answer("b", true, 200, &headers, Bytes::new()),
            Err(RemoteError::Garbage { .. })
        ));
        assert_eq!(percent_encode("arn:aws:lambda:x"), "arn%3Aaws%3Alambda%3Ax");
    }

    #[test]
    fn a_targets_error_message_is_bounded_and_has_no_control_characters() {
        // 3 000 three-byte characters, a forged log line and a terminal escape.
        let long = "é€".repeat(1500);
        let document = serde_json::json!({
            "__type": format!("Bad\u{1b}[31m{}", "X".repeat(500)),
            "message": format!("first\nINFO forged line\r\u{1b}[2J{long}"),
        });
        let refused = answer(
            "b",
            false,
            500,
            &http::HeaderMap::new(),
            Bytes::from(document.to_string()),
        );
        let Err(RemoteError::Refused { code, message, .. }) = refused else {
            panic!("an error answer: {refused:?}");
        };
        assert!(message.len() <= MAX_MESSAGE_BYTES, "{}", message.len());
        assert!(message.len() > MAX_MESSAGE_BYTES - 8, "{}", message.len());
        assert!(
            message.starts_with("firstINFO forged line[2Jé€"),
            "{message}"
        );
        assert!(message.ends_with('…'));
        assert!(!message.chars().any(char::is_control), "{message:?}");
        let code = code.unwrap();
        assert!(
            code.len() <= MAX_CODE_BYTES && code.starts_with("Bad[31mXX"),
            "{code}"
        );
        // Short, printable words stay as they are.
        assert_eq!(printable("fine: 1 € ok", 1024), "fine: 1 € ok");
        assert_eq!(printable("abcd", 4), "abcd");
        assert_eq!(printable("abcde", 4), "a…");
    }
}
