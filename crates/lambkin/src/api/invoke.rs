//! `POST /2015-03-31/functions/{name}/invocations`: the AWS Invoke API (`lambda-apis.md` §2).

use base64::Engine;
use bytes::Bytes;
use http::request::Parts;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use tokio::sync::oneshot;

use lambkin_proto::lambda::error::{ApiError, ThrottleReason};
use lambkin_proto::lambda::function::PayloadEncoding;
use lambkin_proto::lambda::invoke::{
    FunctionRef, InvocationType, LogType, HEADER_CLIENT_CONTEXT, HEADER_EXECUTED_VERSION,
    HEADER_FUNCTION_ERROR, HEADER_INVOCATION_TYPE, HEADER_LOG_RESULT, HEADER_LOG_TYPE,
    HEADER_REQUEST_ID, HEADER_TRACE_ID, LATEST, MAX_CLIENT_CONTEXT_BYTES,
};

use super::{ApiState, Body};
use crate::lambda::function::Refusal;
use crate::lambda::invocation::{Completion, Invocation, InvocationAbort, RequestId};

/// Seconds a throttled caller is told to wait.
const RETRY_AFTER_SECONDS: u32 = 1;

fn header<'a>(req: &'a Parts, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Runs an invocation whose payload was read within its type's limit (`api::Operation`).
pub async fn invoke(
    req: &Parts,
    mut payload: Bytes,
    state: &ApiState,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let qualifier = req.uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("Qualifier="))
            .map(super::percent_decode)
    });
    let target = FunctionRef::parse(name, qualifier.as_deref())?;
    let arn = state.registry.arn(target.name.as_str());
    if let Some(q) = target.qualifier.as_deref().filter(|q| *q != LATEST) {
        return Err(ApiError::ResourceNotFound(format!("{arn}:{q}")));
    }
    let Some((handle, spec)) = state.registry.lookup(&target.name) else {
        return Err(ApiError::ResourceNotFound(arn));
    };
    let invocation_type = InvocationType::parse(header(req, HEADER_INVOCATION_TYPE))?;
    let log_type = LogType::parse(header(req, HEADER_LOG_TYPE))?;
    let client_context = header(req, HEADER_CLIENT_CONTEXT)
        .map(decode_client_context)
        .transpose()?;
    let trace_id = header(req, HEADER_TRACE_ID).map(str::to_owned);
    let content_type = header(req, "content-type")
        .filter(|ct| !ct.starts_with("application/x-www-form-urlencoded"))
        .map(str::to_owned);
    if spec.config.greengrass.input_payload_encoding_type == PayloadEncoding::Json {
        if payload.iter().all(u8::is_ascii_whitespace) {
            payload = Bytes::from_static(b"{}");
        } else if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
            return Err(ApiError::InvalidRequestContent(format!(
                "Could not parse request body into json: {e}"
            )));
        }
    }
    let request_id = RequestId::new();
    let response_base = || {
        Response::builder()
            .header(HEADER_REQUEST_ID, request_id.as_str())
            .header(HEADER_EXECUTED_VERSION, LATEST)
    };
    match invocation_type {
        InvocationType::DryRun => Ok(response_base()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()))
            .map_err(internal)?),
        InvocationType::Event => {
            let store = state.registry.store();
            let seq = store
                .persist_event(target.name.clone(), request_id.to_string(), payload.clone())
                .await
                .map_err(|e| ApiError::Service(e.to_string()))?;
            let inv = Invocation {
                request_id: request_id.clone(),
                payload,
                content_type,
                client_context: None,
                trace_id,
                want_log_tail: false,
                completion: Completion::Event {
                    seq,
                    store: store.clone(),
                    sink: None,
                },
            };
            if let Err(refusal) = handle.submit(inv).await {
                store.complete_event(seq).await;
                return Err(refused(refusal));
            }
            Ok(response_base()
                .status(StatusCode::ACCEPTED)
                .body(Full::new(Bytes::new()))
                .map_err(internal)?)
        }
        InvocationType::RequestResponse => {
            let (tx, rx) = oneshot::channel();
            let inv = Invocation {
                request_id: request_id.clone(),
                payload,
                content_type,
                client_context,
                trace_id,
                want_log_tail: log_type == LogType::Tail,
                completion: Completion::Caller(tx),
            };
            handle.submit(inv).await.map_err(refused)?;
            let outcome = rx
                .await
                .map_err(|_| ApiError::Service("the invocation was lost".into()))?;
            let response = outcome.map_err(|abort| match abort {
                InvocationAbort::ShuttingDown => {
                    ApiError::Service("the host is shutting down".into())
                }
                InvocationAbort::FunctionRemoved => ApiError::ResourceConflict(
                    "the function was deleted while the invocation waited".into(),
                ),
            })?;
            let mut builder = response_base().status(StatusCode::OK).header(
                "content-type",
                response
                    .content_type
                    .as_deref()
                    .unwrap_or("application/json"),
            );
            if response.function_error {
                builder = builder.header(HEADER_FUNCTION_ERROR, "Unhandled");
            }
            if let Some(tail) = &response.log_tail {
                builder = builder.header(HEADER_LOG_RESULT, tail);
            }
            builder.body(Full::new(response.body)).map_err(internal)
        }
    }
}

fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::QueueFull { max_queue } => ApiError::TooManyRequests {
            message: format!(
                "Rate Exceeded: the function's queue of {max_queue} invocations is full"
            ),
            retry_after_seconds: RETRY_AFTER_SECONDS,
            reason: ThrottleReason::ConcurrentInvocationLimitExceeded,
        },
        Refusal::ShuttingDown => ApiError::Service("the host is shutting down".into()),
    }
}

fn internal(e: http::Error) -> ApiError {
    ApiError::Service(format!("cannot build the response: {e}"))
}

/// `X-Amz-Client-Context` is base64 JSON; the runtime gets the JSON itself.
fn decode_client_context(value: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::InvalidRequestContent(
            "Client context must be a valid Base64-encoded JSON object.".into(),
        )
    };
    if value.len() > MAX_CLIENT_CONTEXT_BYTES {
        return Err(ApiError::InvalidParameterValue(format!(
            "Client context must be at most {MAX_CLIENT_CONTEXT_BYTES} bytes of base64, got {}",
            value.len()
        )));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| invalid())?;
    match serde_json::from_slice::<serde_json::Value>(&decoded) {
        Ok(serde_json::Value::Object(_)) => String::from_utf8(decoded).map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}
