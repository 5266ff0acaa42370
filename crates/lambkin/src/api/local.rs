//! Lambkin's own API for its CLI (`/lambkin/v1/...`, token required): deployments and
//! component control, as `greengrass-cli` offers them, and local pub/sub from the shell.
//!
//! - `POST publish` `{"topic", "json": VALUE}` or `{"topic", "binary": BASE64}` publishes as
//!   [`Client::Cli`] and answers `{"subscribers": N}`.
//! - `POST subscribe` `{"filter"}` with `Connection: upgrade`, `Upgrade: lambkin-sub`
//!   subscribes as [`Client::Cli`] (all messages), answers `101 Switching Protocols` once
//!   the subscription is live, then writes one JSON object a line per message
//!   (`{"topic", "json"}` or `{"topic", "binary"}`) until the client closes the connection
//!   or the host stops.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use lambkin_proto::lambda::error::ApiError;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{json_response, read_body, ApiState, Body};
use crate::components::deployment::DeploymentRequest;
use crate::components::engine::{AcceptError, ControlError};
use crate::pubsub::{Client, Filter, Payload, ReceiveMode, Subscription, Topic};

/// The `Upgrade` protocol of `POST /lambkin/v1/subscribe`.
pub const SUBSCRIBE_PROTOCOL: &str = "lambkin-sub";

const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The one place component-control errors become API errors.
fn api_error(e: ControlError) -> ApiError {
    match e {
        ControlError::NotFound(name) => ApiError::ComponentNotFound(name),
        ControlError::Builtin(_) => ApiError::InvalidParameterValue(e.to_string()),
        ControlError::Stopped => ApiError::Service(e.to_string()),
    }
}

/// The one place a deployment not accepted becomes an API error.
fn accept_error(e: AcceptError) -> ApiError {
    ApiError::Service(e.to_string())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Response<Body>, ApiError> {
    let value = serde_json::to_value(value).map_err(|e| ApiError::Service(e.to_string()))?;
    Ok(json_response(StatusCode::OK, &value))
}

pub async fn route(
    req: Request<Incoming>,
    state: &ApiState,
    method: &Method,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    match (method, rest) {
        (&Method::POST, ["deployments"]) => {
            let body =
                read_body(req.into_body(), MAX_REQUEST_BYTES, "CreateLocalDeployment").await?;
            let request: DeploymentRequest = serde_json::from_slice(&body).map_err(|e| {
                ApiError::InvalidParameterValue(format!("invalid deployment request: {e}"))
            })?;
            let outcome = state.engine.deploy(request).await.map_err(accept_error)?;
            to_json(&serde_json::json!({
                "deploymentId": outcome.deployment_id,
                "status": outcome.status,
                "message": outcome.message,
                "deploymentStatusDetails": outcome.report.status_details(&outcome.message),
            }))
        }
        (&Method::GET, ["deployments"]) => {
            let list: Vec<serde_json::Value> = state
                .engine
                .deployments()
                .await
                .into_iter()
                .map(|d| {
                    serde_json::json!({
                        "deploymentId": d.id,
                        "status": d.status,
                        "message": d.message,
                        "deploymentStatusDetails": d.report.map(|r| r.status_details(&d.message)),
                    })
                })
                .collect();
            to_json(&list)
        }
        (&Method::GET, ["components"]) => to_json(&state.engine.list()),
        (&Method::POST, ["backup"]) => {
            let path = crate::backup::snapshot_running(&state.layout, &state.store)
                .await
                .map_err(|e| ApiError::Service(e.to_string()))?;
            to_json(&serde_json::json!({ "database": path }))
        }
        (&Method::POST, ["components", name, "restart"]) => {
            state
                .engine
                .restart((*name).to_owned())
                .await
                .map_err(api_error)?;
            to_json(&serde_json::json!({"status": "RESTARTING"}))
        }
        (&Method::POST, ["components", name, "stop"]) => {
            state
                .engine
                .stop((*name).to_owned())
                .await
                .map_err(api_error)?;
            to_json(&serde_json::json!({"status": "STOPPING"}))
        }
        (&Method::POST, ["publish"]) => publish(req, state).await,
        (&Method::POST, ["subscribe"]) => subscribe(req, state).await,
        _ => Err(ApiError::UnknownOperation(format!(
            "no local operation for {method} /lambkin/v1/{}",
            rest.join("/")
        ))),
    }
}

#[derive(serde::Deserialize)]
struct PublishRequest {
    topic: String,
    #[serde(default)]
    json: Option<serde_json::Value>,
    #[serde(default)]
    binary: Option<String>,
}

async fn publish(req: Request<Incoming>, state: &ApiState) -> Result<Response<Body>, ApiError> {
    let body = read_body(req.into_body(), MAX_REQUEST_BYTES, "Publish").await?;
    let request: PublishRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidParameterValue(format!("invalid publish request: {e}")))?;
    let topic =
        Topic::parse(&request.topic).map_err(|e| ApiError::InvalidParameterValue(e.to_string()))?;
    let payload = match (request.json, request.binary) {
        (Some(value), None) => Payload::Json(std::sync::Arc::new(value)),
        (None, Some(encoded)) => Payload::Binary(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .map_err(|e| {
                    ApiError::InvalidParameterValue(format!("binary is not base64: {e}"))
                })?,
        )),
        _ => {
            return Err(ApiError::InvalidParameterValue(
                "a publish request needs exactly one of json and binary".into(),
            ))
        }
    };
    let subscribers = state
        .pubsub
        .publish(Client::Cli, topic, payload)
        .await
        .map_err(|_| ApiError::Service("local pub/sub has stopped".into()))?;
    to_json(&serde_json::json!({ "subscribers": subscribers }))
}

#[derive(serde::Deserialize)]
struct SubscribeRequest {
    filter: String,
}

async fn subscribe(
    mut req: Request<Incoming>,
    state: &ApiState,
) -> Result<Response<Body>, ApiError> {
    let upgrading = req
        .headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(SUBSCRIBE_PROTOCOL));
    if !upgrading {
        return Err(ApiError::InvalidParameterValue(format!(
            "subscribe needs `Connection: upgrade` and `Upgrade: {SUBSCRIBE_PROTOCOL}`"
        )));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let body = read_body(req.into_body(), MAX_REQUEST_BYTES, "Subscribe").await?;
    let request: SubscribeRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidParameterValue(format!("invalid subscribe request: {e}")))?;
    let filter = Filter::parse(&request.filter)
        .map_err(|e| ApiError::InvalidParameterValue(e.to_string()))?;
    let subscription = state
        .pubsub
        .subscribe(Client::Cli, filter, ReceiveMode::All)
        .await
        .map_err(|_| ApiError::Service("local pub/sub has stopped".into()))?;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => stream_messages(TokioIo::new(upgraded), subscription).await,
            Err(e) => tracing::debug!(error = %e, "a subscriber left before the upgrade"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(hyper::header::CONNECTION, "upgrade")
        .header(hyper::header::UPGRADE, SUBSCRIBE_PROTOCOL)
        .body(Full::new(Bytes::new()))
        .map_err(|e| ApiError::Service(format!("cannot build the response: {e}")))
}

/// One line of JSON per message until the client closes its end or the subscription ends.
async fn stream_messages<S>(mut io: S, mut subscription: Subscription)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut scratch = [0u8; 256];
    loop {
        tokio::select! {
            message = subscription.recv() => {
                let Some(message) = message else { break };
                let mut line = match &message.payload {
                    Payload::Json(value) => serde_json::json!({
                        "topic": message.topic.as_str(),
                        "json": value.as_ref(),
                    }),
                    Payload::Binary(bytes) => serde_json::json!({
                        "topic": message.topic.as_str(),
                        "binary": base64::engine::general_purpose::STANDARD.encode(bytes),
                    }),
                }
                .to_string()
                .into_bytes();
                line.push(b'\n');
                if io.write_all(&line).await.is_err() || io.flush().await.is_err() {
                    break;
                }
            }
            read = io.read(&mut scratch) => {
                // The client sends nothing: end of stream or an error means it has gone.
                if matches!(read, Ok(0) | Err(_)) {
                    break;
                }
            }
        }
    }
    let _ = io.shutdown().await;
}
