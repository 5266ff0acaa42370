//! Lambkin's own API for its CLI (`/lambkin/v1/...`, token required): deployments and
//! component control, as `greengrass-cli` offers them.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use lambkin_proto::lambda::error::ApiError;

use super::{json_response, read_body, ApiState, Body};
use crate::components::deployment::DeploymentRequest;
use crate::components::engine::ControlError;

const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The one place component-control errors become API errors.
fn api_error(e: ControlError) -> ApiError {
    match e {
        ControlError::NotFound(name) => ApiError::ComponentNotFound(name),
        ControlError::Builtin(_) => ApiError::InvalidParameterValue(e.to_string()),
        ControlError::Stopped => ApiError::Service(e.to_string()),
    }
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
            let body = read_body(req, MAX_REQUEST_BYTES, "CreateLocalDeployment").await?;
            let request: DeploymentRequest = serde_json::from_slice(&body).map_err(|e| {
                ApiError::InvalidParameterValue(format!("invalid deployment request: {e}"))
            })?;
            let outcome = state.engine.deploy(request).await.map_err(api_error)?;
            to_json(&outcome)
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
                    })
                })
                .collect();
            to_json(&list)
        }
        (&Method::GET, ["components"]) => to_json(&state.engine.list()),
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
        _ => Err(ApiError::UnknownOperation(format!(
            "no local operation for {method} /lambkin/v1/{}",
            rest.join("/")
        ))),
    }
}
