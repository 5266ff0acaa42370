//! The web console at `/console/`: pages (HTML, CSS and JS inside the binary, no external
//! URL, a strict Content-Security-Policy) and the JSON API they poll, for someone holding a
//! session.
//!
//! A session starts from a login link: `lambkin console` asks `POST /lambkin/v1/console/link`
//! (the CLI's token) for a one-time token and prints `http://ADDR/console/login?t=TOKEN`;
//! opening it spends the token (good once, for 5 minutes) and sets the session cookie
//! (random, `HttpOnly`, `SameSite=Strict`, `Path=/console`, 8 hours, kept in memory only).
//!
//! Every request is admitted in one order: `Host` must name the listener (no DNS-rebound
//! name), then the session cookie (401 otherwise, saying nothing of the device), then, for a
//! request that changes something, same origin (`Origin`, when sent, is the listener's;
//! `Sec-Fetch-Site`, when sent, is `same-origin`), so a page elsewhere cannot drive the
//! console through the user's browser. The console acts as the host's owner
//! (`Principal::Host`) and its actions are the API's own handlers: invoke through
//! `invoke::invoke` after `access::authorize`, component control, deployments and publish
//! through `local::route`. [`Refusal::response`] is the one place its refusals become HTTP;
//! the handlers' `ApiError`s go through the API's `error_response`.

pub mod sessions;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use lambkin_proto::ipc::shapes::deployments::DeploymentStatus;
use lambkin_proto::lambda::error::ApiError;

use super::auth::Principal;
use super::state::{json_response, ApiState, Body};
use super::{access, error_response, invoke, local, management, read_body, Operation};
use crate::pubsub::{Client, Filter, Payload, ReceiveMode};
pub use sessions::Console;
use sessions::SessionId;
use sessions::SESSION_LIFETIME;

/// The session cookie's name.
const COOKIE: &str = "lambkin_console";
/// The header carrying a session's API key (see `sessions::Sessions::key_matches`).
const KEY_HEADER: &str = "x-lambkin-console";
/// What the pages may load: their own scripts, styles and API, nothing else, in no frame.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// How long a poll for pub/sub messages waits for the first one.
const MESSAGE_WAIT: Duration = Duration::from_secs(1);
/// Messages one poll takes at most.
const MESSAGES_PER_POLL: usize = 100;
/// The end of a log a page shows (and polls).
const LOG_TAIL_BYTES: u64 = 16 * 1024;
/// Deployments the overview shows.
const RECENT_DEPLOYMENTS: usize = 5;

const INDEX_HTML: &str = include_str!("assets/index.html");
const CONSOLE_CSS: &str = include_str!("assets/console.css");
const CONSOLE_JS: &str = include_str!("assets/console.js");

/// Why the console did not answer.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("{0}")]
    ForeignHost(String),
    #[error("log in to the console with the link `lambkin console` prints")]
    NoSession,
    #[error("this login link is used, expired or unknown: run `lambkin console` for a new one")]
    LinkRefused,
    #[error("{0}")]
    CrossSite(String),
    #[error("no console page or operation {0}")]
    NotFound(String),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl Refusal {
    /// The one place the console's refusals become HTTP.
    fn response(self) -> Response<Body> {
        let status = match self {
            Self::Api(e) => return error_response(e),
            Self::ForeignHost(_) | Self::LinkRefused | Self::CrossSite(_) => StatusCode::FORBIDDEN,
            Self::NoSession => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
        };
        let mut r = Response::new(Body::from(Bytes::from(format!("{self}\n"))));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }
}

/// Serves `/console/REST`.
pub async fn route(
    req: Request<Incoming>,
    state: &ApiState,
    method: &Method,
    rest: &[&str],
) -> Response<Body> {
    let mut r = serve(req, state, method, rest)
        .await
        .unwrap_or_else(Refusal::response);
    let headers = r.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        // The login link's token must not travel on in a Referer.
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, http::HeaderValue::from_static(value));
    }
    r
}

async fn serve(
    req: Request<Incoming>,
    state: &ApiState,
    method: &Method,
    rest: &[&str],
) -> Result<Response<Body>, Refusal> {
    let (parts, body) = req.into_parts();
    let host = header(&parts, "host").unwrap_or("");
    if !state.gate.is_own_host(host) {
        return Err(Refusal::ForeignHost(format!(
            "Host {host:?} is not this listener's address: refused"
        )));
    }
    if let (&Method::GET, ["login"]) = (method, rest) {
        return login(&parts, state);
    }
    let session = state
        .console
        .sessions
        .session(cookie(&parts).unwrap_or(""), Instant::now())
        .ok_or(Refusal::NoSession)?;
    if method != Method::GET && method != Method::HEAD {
        same_origin(&parts, host)?;
    }
    // Data and actions need the page's key too: a cookie reaches every port of the host.
    if rest.first() == Some(&"api")
        && !state
            .console
            .sessions
            .key_matches(&session, header(&parts, KEY_HEADER).unwrap_or(""))
    {
        return Err(Refusal::NoSession);
    }
    match (method, rest) {
        (&Method::GET, [] | [""] | ["index.html"]) => {
            Ok(asset(INDEX_HTML, "text/html; charset=utf-8"))
        }
        (&Method::GET, ["console.css"]) => Ok(asset(CONSOLE_CSS, "text/css; charset=utf-8")),
        (&Method::GET, ["console.js"]) => Ok(asset(CONSOLE_JS, "text/javascript; charset=utf-8")),
        (&Method::GET, ["api", "overview"]) => Ok(overview(state).await),
        (&Method::GET, ["api", "functions", name]) => Ok(management::get(state, name)?),
        (&Method::POST, ["api", "functions", name, "invoke"]) => {
            let operation = Operation::Invoke((*name).to_owned());
            access::authorize(&Principal::Host, &operation, state)?;
            let (limit, op_name) = operation.body_limit(&parts.headers);
            let payload = read_body(body, limit, op_name).await?;
            Ok(invoke::invoke(&parts, payload, state, name).await?)
        }
        (&Method::GET, ["api", "components", name]) => component(state, name),
        (&Method::POST, ["api", "components", name, action @ ("restart" | "stop")]) => {
            let req = Request::from_parts(parts, body);
            Ok(local::route(req, state, method, &["components", name, action]).await?)
        }
        (&Method::GET, ["api", "logs", name]) => logs(state, name).await,
        (&Method::GET, ["api", "deployments"]) => Ok(deployments(state, usize::MAX).await),
        (&Method::POST, ["api", "publish"]) => {
            let req = Request::from_parts(parts, body);
            Ok(local::route(req, state, method, &["publish"]).await?)
        }
        (&Method::POST, ["api", "logout"]) => Ok(logout(state, &session)),
        (&Method::POST, ["api", "subscribe"]) => subscribe(state, session, body).await,
        (&Method::GET, ["api", "messages"]) => Ok(messages(state, &session).await),
        _ => Err(Refusal::NotFound(format!(
            "{method} /console/{}",
            rest.join("/")
        ))),
    }
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The session cookie's value, if the request carries one.
fn cookie(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// A request that changes something comes from the console's own pages: `Origin`, when
/// sent, is this listener (as `Host` names it), and `Sec-Fetch-Site`, when sent, says so.
fn same_origin(parts: &Parts, host: &str) -> Result<(), Refusal> {
    if let Some(origin) = header(parts, "origin") {
        if origin != format!("http://{host}") {
            return Err(Refusal::CrossSite(format!(
                "a request from another site (Origin {origin}) is refused"
            )));
        }
    }
    if let Some(site) = header(parts, "sec-fetch-site").filter(|s| *s != "same-origin") {
        return Err(Refusal::CrossSite(format!(
            "a {site} request from a browser is refused"
        )));
    }
    Ok(())
}

/// Spends a login link and opens a session.
fn login(parts: &Parts, state: &ApiState) -> Result<Response<Body>, Refusal> {
    let token = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("t="))
        .ok_or(Refusal::LinkRefused)?;
    let (session, key) = state
        .console
        .sessions
        .redeem(token, Instant::now())
        .ok_or(Refusal::LinkRefused)?;
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}",
        session.as_str(),
        SESSION_LIFETIME.as_secs()
    );
    let mut r = Response::new(Body::from(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    // The key travels in the fragment, which the browser keeps to the page and sends to no
    // server; the page moves it into its origin's storage and drops it from the address.
    r.headers_mut().insert(
        http::header::LOCATION,
        http::HeaderValue::from_str(&format!("/console/#key={key}"))
            .map_err(|e| ApiError::Service(format!("cannot name the console's page: {e}")))?,
    );
    r.headers_mut().insert(
        http::header::SET_COOKIE,
        http::HeaderValue::from_str(&cookie)
            .map_err(|e| ApiError::Service(format!("cannot set the session cookie: {e}")))?,
    );
    Ok(r)
}

/// Ends the session (and its subscription) and tells the browser to forget the cookie.
fn logout(state: &ApiState, session: &SessionId) -> Response<Body> {
    state.console.sessions.end(session);
    state
        .console
        .subscriptions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(session);
    let mut r = json_response(StatusCode::OK, &serde_json::json!({ "loggedOut": true }));
    r.headers_mut().insert(
        http::header::SET_COOKIE,
        http::HeaderValue::from_static(
            "lambkin_console=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0",
        ),
    );
    r
}

fn asset(text: &'static str, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(Bytes::from_static(text.as_bytes())));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

/// Components, functions with their counters, the broker and the latest deployments.
async fn overview(state: &ApiState) -> Response<Body> {
    let counters: HashMap<String, _> = state
        .registry
        .metrics()
        .into_iter()
        .map(|(name, m, _)| (name.as_str().to_owned(), m))
        .collect();
    let mut functions: Vec<serde_json::Value> = state
        .registry
        .list()
        .into_iter()
        .filter_map(|config| serde_json::to_value(config).ok())
        .map(|config| {
            let name = config["FunctionName"].as_str().unwrap_or("").to_owned();
            let metrics = counters.get(&name).map(|m| {
                let d = m.duration.snapshot();
                let mut buckets: Vec<(f64, f64)> =
                    d.buckets.iter().map(|(b, n)| (*b, *n as f64)).collect();
                buckets.push((f64::INFINITY, d.count as f64));
                let ms = |q: f64| {
                    lambkin_proto::metrics::quantile(q, &buckets)
                        .filter(|s| s.is_finite())
                        .map(|s| s * 1000.0)
                };
                serde_json::json!({
                    "success": m.success.get(),
                    "functionError": m.function_error.get(),
                    "timeout": m.timeout.get(),
                    "throttled": m.throttled.get(),
                    "coldStarts": m.cold_starts.get(),
                    "meanMs": (d.count > 0).then(|| d.sum_seconds * 1000.0 / d.count as f64),
                    "p50Ms": ms(0.5),
                    "p99Ms": ms(0.99),
                })
            });
            serde_json::json!({
                "name": name,
                "runtime": config["Runtime"],
                "metrics": metrics,
            })
        })
        .collect();
    functions.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut components = state.engine.list();
    components.sort_by(|a, b| a.name.cmp(&b.name));
    let mqtt = match &state.console.mqtt {
        None => serde_json::Value::Null,
        Some(mqtt) => {
            let spool = {
                let mqtt = mqtt.clone();
                tokio::task::spawn_blocking(move || mqtt.spool_usage()).await
            };
            let (messages, bytes) = match spool {
                Ok(Ok((m, b))) => (Some(m), Some(b)),
                _ => (None, None),
            };
            serde_json::json!({
                "connected": mqtt.is_connected(),
                "spoolMessages": messages,
                "spoolBytes": bytes,
            })
        }
    };
    let recent = deployments_json(state, RECENT_DEPLOYMENTS).await;
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "components": components,
            "functions": functions,
            "mqtt": mqtt,
            "deployments": recent,
        }),
    )
}

/// A component's status and its configuration as it runs now.
fn component(state: &ApiState, name: &str) -> Result<Response<Body>, Refusal> {
    let status = state
        .engine
        .list()
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| ApiError::ComponentNotFound(name.to_owned()))?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "status": status,
            "configuration": state.engine.configuration(name),
        }),
    ))
}

/// The end of a component's or function's log (`ROOT/logs/NAME.log`). Only a name the host
/// knows is read, so no path is made from anything else.
async fn logs(state: &ApiState, name: &str) -> Result<Response<Body>, Refusal> {
    let is_component = state.engine.list().iter().any(|c| c.name == name);
    let is_function = lambkin_proto::lambda::function::FunctionName::parse(name)
        .ok()
        .is_some_and(|f| state.registry.lookup(&f).is_some());
    if !is_component && !is_function {
        return Err(ApiError::ResourceNotFound(name.to_owned()).into());
    }
    let path = state.layout.logs_dir().join(format!("{name}.log"));
    let text = tokio::task::spawn_blocking(move || log_tail(&path))
        .await
        .map_err(|e| ApiError::Service(format!("cannot read the log: {e}")))?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "text": text }),
    ))
}

/// The last [`LOG_TAIL_BYTES`] of a file, from the first whole line; empty if there is none.
fn log_tail(path: &std::path::Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let from = if start > 0 {
        bytes.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1)
    } else {
        0
    };
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}

async fn deployments(state: &ApiState, most: usize) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "deployments": deployments_json(state, most).await }),
    )
}

/// The newest `most` deployments, newest first, each with the components it merged (with
/// their state now while it is in progress: its live progress) and removed.
async fn deployments_json(state: &ApiState, most: usize) -> Vec<serde_json::Value> {
    // The store lists them newest first.
    let list = state.engine.deployments().await;
    let board = state.engine.list();
    list.into_iter()
        .take(most)
        .map(|d| {
            let request: serde_json::Value =
                serde_json::from_str(&d.request).unwrap_or(serde_json::Value::Null);
            let in_progress = d.status == DeploymentStatus::InProgress;
            let merged: Vec<serde_json::Value> = request["merge"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(name, version)| {
                            let now = in_progress
                                .then(|| board.iter().find(|c| &c.name == name))
                                .flatten()
                                .map(|c| c.state);
                            serde_json::json!({
                                "name": name,
                                "version": version,
                                "state": now,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let removed: Vec<&str> = request["remove"]
                .as_array()
                .map(|r| r.iter().filter_map(serde_json::Value::as_str).collect())
                .unwrap_or_default();
            serde_json::json!({
                "deploymentId": d.id,
                "status": d.status,
                "message": d.message,
                "merged": merged,
                "removed": removed,
            })
        })
        .collect()
}

#[derive(serde::Deserialize)]
struct SubscribeRequest {
    filter: String,
}

/// Subscribes the session to a filter (replacing its previous subscription).
async fn subscribe(
    state: &ApiState,
    session: SessionId,
    body: Incoming,
) -> Result<Response<Body>, Refusal> {
    let body = read_body(body, 64 * 1024, "Subscribe").await?;
    let request: SubscribeRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidParameterValue(format!("invalid subscribe request: {e}")))?;
    let filter = Filter::parse(&request.filter)
        .map_err(|e| ApiError::InvalidParameterValue(e.to_string()))?;
    let subscription = state
        .pubsub
        .subscribe(Client::Cli, filter, ReceiveMode::All)
        .await
        .map_err(|_| ApiError::Service("local pub/sub has stopped".into()))?;
    let now = Instant::now();
    let mut subscriptions = state
        .console
        .subscriptions
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    // Sessions that ended take their subscriptions with them.
    subscriptions.retain(|s, _| state.console.sessions.session(s.as_str(), now).is_some());
    subscriptions.insert(session, Arc::new(tokio::sync::Mutex::new(subscription)));
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "filter": request.filter }),
    ))
}

/// The session's messages since its last poll: waits up to [`MESSAGE_WAIT`] for the first.
async fn messages(state: &ApiState, session: &SessionId) -> Response<Body> {
    let subscription = state
        .console
        .subscriptions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(session)
        .cloned();
    let Some(subscription) = subscription else {
        return json_response(
            StatusCode::OK,
            &serde_json::json!({ "messages": [], "dropped": 0 }),
        );
    };
    let mut subscription = subscription.lock().await;
    let mut out = Vec::new();
    if let Ok(Some(first)) = tokio::time::timeout(MESSAGE_WAIT, subscription.recv()).await {
        out.push(first);
        while out.len() < MESSAGES_PER_POLL {
            match subscription.try_recv() {
                Ok(m) => out.push(m),
                Err(_) => break,
            }
        }
    }
    let messages: Vec<serde_json::Value> = out
        .iter()
        .map(|m| match &m.payload {
            Payload::Json(value) => {
                serde_json::json!({ "topic": m.topic.as_str(), "json": value.as_ref() })
            }
            Payload::Binary(bytes) => serde_json::json!({
                "topic": m.topic.as_str(),
                "text": String::from_utf8_lossy(bytes),
            }),
        })
        .collect();
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "messages": messages, "dropped": subscription.dropped() }),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::post("/console/api/publish");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let p = parts(&[("cookie", "a=1; lambkin_console=abc; b=2")]);
        assert_eq!(cookie(&p), Some("abc"));
        let p = parts(&[("cookie", "lambkin_console_x=abc"), ("cookie", "c=3")]);
        assert_eq!(cookie(&p), None);
    }

    #[test]
    fn only_the_listeners_own_origin_may_change_things() {
        let host = "127.0.0.1:3001";
        for allowed in [
            vec![],
            vec![("origin", "http://127.0.0.1:3001")],
            vec![
                ("origin", "http://127.0.0.1:3001"),
                ("sec-fetch-site", "same-origin"),
            ],
        ] {
            assert!(same_origin(&parts(&allowed), host).is_ok(), "{allowed:?}");
        }
        for refused in [
            vec![("origin", "http://evil.example")],
            vec![("origin", "null")],
            vec![("origin", "http://127.0.0.1:3002")],
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
            vec![("sec-fetch-site", "none")],
        ] {
            let refusal = same_origin(&parts(&refused), host).unwrap_err();
            assert_eq!(refusal.response().status(), 403, "{refused:?}");
        }
    }
}
