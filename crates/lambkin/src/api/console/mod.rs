//! The web console at `/console/`: pages (HTML, CSS and JS inside the binary, no external
//! URL, a strict Content-Security-Policy) and the JSON API they poll, for someone holding a
//! session.
//!
//! A session starts from a login link: `lambkin console` asks `POST /lambkin/v1/console/link`
//! (the CLI's token) for a one-time token and prints `http://ADDR/console/login?t=TOKEN`;
//! opening it spends the token (good once, for 5 minutes) and sets the session cookie
//! (random, `HttpOnly`, `SameSite=Strict`, `Path=/console`, 8 hours, kept in memory only).
//!
//! Every request is admitted in one order: the connection must have reached the host through
//! loopback (the listener speaks plain HTTP, and a login token or session cookie sent over a
//! network would travel in the clear: 403 otherwise, naming the reason), `Host` must name the
//! listener (no DNS-rebound name), then the session cookie (401 otherwise, saying nothing of the device), then, for a
//! request that changes something, same origin (`Origin`, when sent, is the listener's;
//! `Sec-Fetch-Site`, when sent, is `same-origin`), so a page elsewhere cannot drive the
//! console through the user's browser. The console acts as the host's owner
//! (`Principal::Host`) and its actions are the API's own handlers: invoke through
//! `invoke::invoke` after `access::authorize`, component control, deployments and publish
//! through `local::route`. [`Refusal::response`] is the one place its refusals become HTTP;
//! the handlers' `ApiError`s go through the API's `error_response`.
//!
//! A log view follows its log live (`GET api/logs/NAME/follow`): the body is the log's tail,
//! then every line appended, across rotations, until the page goes away, the session ends
//! (logout or expiry) or the session opens more than `sessions::MAX_LOG_STREAMS` (the oldest
//! ends).

pub mod sessions;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use lambkin_proto::ipc::shapes::deployments::DeploymentStatus;
use lambkin_proto::lambda::error::ApiError;

use super::auth::Principal;
use super::state::{json_response, ApiState, Body};
use super::stream::ResponseBody;
use super::{access, error_response, invoke, local, management, read_body, Operation};
use crate::pubsub::{Client, Filter, Payload, ReceiveMode};
pub use sessions::Console;
use sessions::SessionId;
use sessions::{SESSION_LIFETIME, SUBSCRIPTION_IDLE};

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
/// The end of a log a page shows first.
const LOG_TAIL_BYTES: u64 = 16 * 1024;
/// How often a followed log is checked for new lines, a rotation, and its session when nothing
/// wakes it sooner (a change to the file does, see `crate::logwatch`).
const FOLLOW_PACE: Duration = Duration::from_millis(200);
/// The most a followed log sends in one piece.
const FOLLOW_CHUNK: usize = 64 * 1024;
/// Pieces a followed log reads in one step at most (a log far ahead is caught up with over
/// several steps, never held whole).
const FOLLOW_STEP_CHUNKS: usize = 4;
/// Deployments the overview shows.
const RECENT_DEPLOYMENTS: usize = 5;

const INDEX_HTML: &str = include_str!("assets/index.html");
const CONSOLE_CSS: &str = include_str!("assets/console.css");
const CONSOLE_JS: &str = include_str!("assets/console.js");

/// Why the console did not answer.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the console is served on loopback only: this connection reached the host at {0}, and over the network its plain HTTP would carry the login link and the session cookie in the clear; reach 127.0.0.1 (an SSH tunnel from another machine)")]
    NotLoopback(String),
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
    Busy(#[from] sessions::TooManySubscriptions),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl Refusal {
    /// The one place the console's refusals become HTTP.
    fn response(self) -> Response<Body> {
        let status = match self {
            Self::Api(e) => return error_response(e),
            Self::NotLoopback(_)
            | Self::ForeignHost(_)
            | Self::LinkRefused
            | Self::CrossSite(_) => StatusCode::FORBIDDEN,
            Self::NoSession => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
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

/// Serves `/console/REST`, a request that reached the host at `local`.
pub async fn route(
    req: Request<Incoming>,
    local: Option<SocketAddr>,
    state: &ApiState,
    method: &Method,
    rest: &[&str],
) -> Response<ResponseBody> {
    let mut r = serve(req, local, state, method, rest)
        .await
        .unwrap_or_else(|refusal| refusal.response().map(ResponseBody::from));
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
    local: Option<SocketAddr>,
    state: &ApiState,
    method: &Method,
    rest: &[&str],
) -> Result<Response<ResponseBody>, Refusal> {
    reached_over_loopback(local)?;
    let (parts, body) = req.into_parts();
    let host = header(&parts, "host").unwrap_or("");
    if !state.gate.is_own_host(host) {
        return Err(Refusal::ForeignHost(format!(
            "Host {host:?} is not this listener's address: refused"
        )));
    }
    if let (&Method::GET, ["login"]) = (method, rest) {
        return login(&parts, state).map(|r| r.map(ResponseBody::from));
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
    if let (&Method::GET, ["api", "logs", name, "follow"]) = (method, rest) {
        return follow(state, session, name);
    }
    let answer = match (method, rest) {
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
        (&Method::POST, ["api", "unsubscribe"]) => Ok(unsubscribe(state, &session)),
        (&Method::GET, ["api", "messages"]) => Ok(messages(state, &session).await),
        _ => Err(Refusal::NotFound(format!(
            "{method} /console/{}",
            rest.join("/")
        ))),
    };
    answer.map(|r| r.map(ResponseBody::from))
}

/// The console answers only a connection that reached the host through loopback (`local`:
/// the connection's own end). The listener has no TLS, so anywhere else its plain HTTP would
/// carry the login token and the session cookie across a network in the clear.
fn reached_over_loopback(local: Option<SocketAddr>) -> Result<(), Refusal> {
    match local {
        Some(addr) if addr.ip().to_canonical().is_loopback() => Ok(()),
        Some(addr) => Err(Refusal::NotLoopback(addr.to_string())),
        None => Err(Refusal::NotLoopback("an unknown address".into())),
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

/// Ends the session (its subscription and followed logs) and tells the browser to forget
/// the cookie.
fn logout(state: &ApiState, session: &SessionId) -> Response<Body> {
    state.console.sessions.end(session);
    state.console.subscriptions.remove(session);
    state.console.streams.end_session(session);
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
    let path = log_path(state, name)?;
    let text = tokio::task::spawn_blocking(move || log_tail(&path))
        .await
        .map_err(|e| ApiError::Service(format!("cannot read the log: {e}")))?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "text": text }),
    ))
}

/// The log of a component or function the host knows. `lambkin` (the host's own log, which
/// a function or component of that name made before the name was reserved would share) is
/// none of them.
fn log_path(state: &ApiState, name: &str) -> Result<PathBuf, Refusal> {
    let is_component = state.engine.list().iter().any(|c| c.name == name);
    let is_function = lambkin_proto::lambda::function::FunctionName::parse(name)
        .ok()
        .is_some_and(|f| state.registry.lookup(&f).is_some());
    if !is_component && !is_function || crate::layout::is_reserved_name(name) {
        return Err(ApiError::ResourceNotFound(name.to_owned()).into());
    }
    Ok(state.layout.logs_dir().join(format!("{name}.log")))
}

/// Follows a log: its tail, then what is appended, as a text body that lasts while the
/// page reads it and its session is open.
fn follow(
    state: &ApiState,
    session: SessionId,
    name: &str,
) -> Result<Response<ResponseBody>, Refusal> {
    let path = log_path(state, name)?;
    let id = state.console.streams.open(&session);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let follower = Follower {
        session,
        id,
        sessions: state.console.sessions.clone(),
        streams: state.console.streams.clone(),
        tx,
    };
    tokio::spawn(follower.run(path));
    let mut r = Response::new(ResponseBody::Channel(rx));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}

/// One followed log: sends while its stream is live (see `sessions::LogStreams`), its
/// session open and its reader there.
struct Follower {
    session: SessionId,
    id: u64,
    sessions: std::sync::Arc<sessions::Sessions>,
    streams: std::sync::Arc<sessions::LogStreams>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
}

/// The file a follower reads, and where it is in it.
struct Reading {
    file: std::fs::File,
    offset: u64,
}

impl Follower {
    fn live(&self) -> bool {
        !self.tx.is_closed()
            && self.streams.is_live(&self.session, self.id)
            && self.sessions.is_open(&self.session, Instant::now())
    }

    async fn run(self, path: PathBuf) {
        // Watching before the first read: whatever is written after it wakes the loop.
        let mut watch = crate::logwatch::LogWatch::new(&path);
        let mut reading: Option<Reading> = None;
        let mut first = true;
        while self.live() {
            let step = {
                let path = path.clone();
                let held = reading.take();
                tokio::task::spawn_blocking(move || read_on(&path, held, first)).await
            };
            let Ok((held, pieces)) = step else {
                break;
            };
            reading = held;
            first = first && reading.is_none();
            let mut sent_all = true;
            for piece in pieces {
                if !self.send(piece).await {
                    sent_all = false;
                    break;
                }
            }
            if !sent_all {
                break;
            }
            tokio::select! {
                () = watch.changed(FOLLOW_PACE) => {}
                () = self.tx.closed() => break,
            }
        }
        self.streams.close(&self.session, self.id);
    }

    /// Sends a piece, waiting for a slow reader while the stream stays live.
    async fn send(&self, piece: Bytes) -> bool {
        loop {
            match tokio::time::timeout(FOLLOW_PACE, self.tx.reserve()).await {
                Ok(Ok(permit)) => {
                    permit.send(piece);
                    return true;
                }
                Ok(Err(_)) => return false,
                Err(_) if !self.live() => return false,
                Err(_) => {}
            }
        }
    }
}

/// One step of following `path`: opens it when nothing is open (at its tail the first time,
/// from its start after a rotation or when it appears later), reads what was appended (at
/// most [`FOLLOW_STEP_CHUNKS`] pieces; the rest at the next step), and once the open file is
/// read to its end while `path` is a new file (rotated: the open one is now `NAME.log.1`),
/// moves to the new one. Returns the file to go on with and what was read.
fn read_on(path: &Path, held: Option<Reading>, first: bool) -> (Option<Reading>, Vec<Bytes>) {
    use std::os::unix::fs::MetadataExt as _;
    let mut pieces = Vec::new();
    let mut budget = FOLLOW_STEP_CHUNKS;
    let mut reading = match held {
        Some(r) => r,
        None => {
            let Ok(file) = std::fs::File::open(path) else {
                return (None, pieces);
            };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let offset = if first {
                len.saturating_sub(LOG_TAIL_BYTES)
            } else {
                0
            };
            let mut r = Reading { file, offset };
            if offset > 0 {
                // From the first whole line.
                let skipped = read_from(&mut r).unwrap_or_default();
                let from = skipped
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(skipped.len(), |i| i + 1);
                if from < skipped.len() {
                    pieces.push(Bytes::copy_from_slice(&skipped[from..]));
                }
            }
            r
        }
    };
    let rotated = match (reading.file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(now)) => (open.dev(), open.ino()) != (now.dev(), now.ino()),
        (Ok(_), Err(_)) => true,
        _ => false,
    };
    if reading
        .file
        .metadata()
        .is_ok_and(|m| m.len() < reading.offset)
    {
        // Truncated in place: from its start again.
        reading.offset = 0;
    }
    let at_end = drain(&mut reading, &mut pieces, &mut budget);
    if !(rotated && at_end) {
        return (Some(reading), pieces);
    }
    match std::fs::File::open(path) {
        Ok(file) => {
            let mut next = Reading { file, offset: 0 };
            drain(&mut next, &mut pieces, &mut budget);
            (Some(next), pieces)
        }
        Err(_) => (None, pieces),
    }
}

/// Reads pieces while `budget` lasts; whether the file was read to its end.
fn drain(reading: &mut Reading, pieces: &mut Vec<Bytes>, budget: &mut usize) -> bool {
    while *budget > 0 {
        match read_from(reading) {
            Some(piece) if !piece.is_empty() => {
                *budget -= 1;
                pieces.push(Bytes::from(piece));
            }
            _ => return true,
        }
    }
    false
}

/// Up to [`FOLLOW_CHUNK`] bytes from the reading's offset on (`None` on an error).
fn read_from(reading: &mut Reading) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    reading.file.seek(SeekFrom::Start(reading.offset)).ok()?;
    let mut chunk = Vec::new();
    (&mut reading.file)
        .take(FOLLOW_CHUNK as u64)
        .read_to_end(&mut chunk)
        .ok()?;
    reading.offset += chunk.len() as u64;
    Some(chunk)
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
                "deploymentStatusDetails": d.report.as_ref().map(|r| r.status_details(&d.message)),
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
    let sessions = state.console.sessions.clone();
    let subscriptions = state.console.subscriptions.clone();
    // Idle ones and those of sessions that ended go first, then the bound applies.
    let kept = subscriptions
        .insert(session, subscription, Instant::now(), |s| {
            sessions.is_open(s, Instant::now())
        })
        .map(|kept| std::sync::Arc::downgrade(&kept))?;
    // Ends it once unused (its page went away without saying so) or its session ended, even
    // if no other console request comes.
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SUBSCRIPTION_IDLE / 4).await;
            let now = Instant::now();
            if !subscriptions.sweep(now, |s| sessions.is_open(s, now), &kept) {
                break;
            }
        }
    });
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "filter": request.filter }),
    ))
}

/// Ends the session's subscription: its page went away, or subscribes no more.
fn unsubscribe(state: &ApiState, session: &SessionId) -> Response<Body> {
    state.console.subscriptions.remove(session);
    json_response(StatusCode::OK, &serde_json::json!({ "unsubscribed": true }))
}

/// The session's messages since its last poll: waits up to [`MESSAGE_WAIT`] for the first.
async fn messages(state: &ApiState, session: &SessionId) -> Response<Body> {
    let subscription = state.console.subscriptions.used(session, Instant::now());
    let Some(subscription) = subscription else {
        return json_response(
            StatusCode::OK,
            &serde_json::json!({ "messages": [], "dropped": 0, "subscribed": false }),
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
        &serde_json::json!({
            "messages": messages,
            "dropped": subscription.dropped(),
            "subscribed": true,
        }),
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
    fn the_console_answers_only_over_loopback() {
        for ok in [
            "127.0.0.1:3001",
            "127.8.9.10:80",
            "[::1]:3001",
            "[::ffff:127.0.0.1]:3001",
        ] {
            assert!(
                reached_over_loopback(Some(ok.parse().unwrap())).is_ok(),
                "{ok}"
            );
        }
        for refused in [
            "192.0.2.2:3001",
            "0.0.0.0:3001",
            "[fe80::1]:3001",
            "[::ffff:10.0.0.1]:3001",
        ] {
            let refusal = reached_over_loopback(Some(refused.parse().unwrap())).unwrap_err();
            let message = refusal.to_string();
            assert!(
                message.contains(refused) && message.contains("in the clear"),
                "{message}"
            );
            assert_eq!(refusal.response().status(), 403, "{refused}");
        }
        assert!(
            reached_over_loopback(None).is_err(),
            "an unknown address is refused"
        );
    }

    fn text(pieces: &[Bytes]) -> String {
        pieces
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    #[test]
    fn a_followed_log_starts_at_its_tail_and_follows_appends_rotation_and_truncation() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        let append = |p: &Path, s: &str| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap();
            f.write_all(s.as_bytes()).unwrap();
        };
        // Not there yet: nothing, and it is read from its start once it appears.
        let (held, pieces) = read_on(&path, None, true);
        assert!(held.is_none() && pieces.is_empty());
        // Longer than the tail: from the first whole line of the last LOG_TAIL_BYTES.
        let line = "x".repeat(99) + "\n";
        let old = line.repeat(LOG_TAIL_BYTES as usize / 100 + 50);
        append(&path, &format!("first\n{old}"));
        let (held, pieces) = read_on(&path, None, true);
        let tail = text(&pieces);
        assert!(!tail.contains("first") && tail.starts_with('x') && tail.ends_with('\n'));
        assert!(tail.len() as u64 <= LOG_TAIL_BYTES);
        // Appends.
        append(&path, "one\n");
        let (held, pieces) = read_on(&path, held, false);
        assert_eq!(text(&pieces), "one\n");
        let (held, pieces) = read_on(&path, held, false);
        assert!(pieces.is_empty(), "nothing new, nothing sent");
        // Rotated: the rest of the old file, then the new one from its start.
        append(&path, "two\n");
        std::fs::rename(&path, dir.path().join("f.log.1")).unwrap();
        append(&dir.path().join("f.log.1"), "three\n");
        append(&path, "four\n");
        let (held, pieces) = read_on(&path, held, false);
        assert_eq!(text(&pieces), "two\nthree\nfour\n");
        // Truncated in place (shorter than where it was read to): from its start again.
        std::fs::write(&path, "").unwrap();
        append(&path, "5\n");
        let (held, pieces) = read_on(&path, held, false);
        assert_eq!(text(&pieces), "5\n");
        // A log far ahead comes in steps of at most FOLLOW_STEP_CHUNKS pieces, all of it.
        let big = "y".repeat(FOLLOW_CHUNK * (FOLLOW_STEP_CHUNKS + 1));
        append(&path, &big);
        let (held, first) = read_on(&path, held, false);
        assert_eq!(first.len(), FOLLOW_STEP_CHUNKS);
        let (_, rest) = read_on(&path, held, false);
        assert_eq!(text(&first).len() + text(&rest).len(), big.len());
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
