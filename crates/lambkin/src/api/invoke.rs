//! `POST /2015-03-31/functions/{name}/invocations`: the AWS Invoke API (`lambda-apis.md` §2),
//! and `POST /2021-11-15/functions/{name}/response-streaming-invocations`:
//! `InvokeWithResponseStream` (§2.5), the same request answered as an event stream.

use base64::Engine;
use bytes::Bytes;
use http::request::Parts;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use tokio::sync::oneshot;

use lambkin_proto::lambda::error::{ApiError, ThrottleReason};
use lambkin_proto::lambda::function::PayloadEncoding;
use lambkin_proto::lambda::invoke::{
    header, FunctionRef, InvocationType, LogType, HEADER_CLIENT_CONTEXT, HEADER_INVOCATION_TYPE,
    HEADER_LOG_TYPE, HEADER_TRACE_ID, LATEST, MAX_CLIENT_CONTEXT_BYTES,
};

use super::stream::{self, Began, Encoding, ResponseBody, StreamedBody};
use super::{ApiState, Body};
use crate::lambda::function::{FunctionHandle, Refusal};
use crate::lambda::invocation::{Completion, Invocation, InvocationAbort, RequestId};
use lambkin_proto::lambda::stream::{InvokeComplete, EVENT_STREAM_CONTENT_TYPE};

/// `X-Amz-Executed-Version`'s value, made once.
const LATEST_VALUE: http::HeaderValue = http::HeaderValue::from_static(LATEST);
/// `X-Amz-Function-Error`'s value, made once.
const UNHANDLED: http::HeaderValue = http::HeaderValue::from_static("Unhandled");

/// Seconds a throttled caller is told to wait.
const RETRY_AFTER_SECONDS: u32 = 1;

fn header<'a>(req: &'a Parts, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// An Invoke request, parsed and checked against its function.
struct InvokeRequest {
    function: lambkin_proto::lambda::function::FunctionName,
    handle: FunctionHandle,
    invocation_type: InvocationType,
    log_type: LogType,
    client_context: Option<String>,
    trace_id: Option<String>,
    content_type: Option<String>,
    payload: Bytes,
}

impl InvokeRequest {
    fn invocation(
        self,
        request_id: RequestId,
        completion: Completion,
    ) -> (FunctionHandle, Invocation) {
        let inv = Invocation {
            request_id,
            payload: self.payload,
            content_type: self.content_type,
            client_context: self.client_context,
            trace_id: self.trace_id,
            want_log_tail: self.log_type == LogType::Tail,
            completion,
        };
        (self.handle, inv)
    }
}

/// Runs an invocation whose payload was read within its type's limit (`api::Operation`).
pub async fn invoke(
    req: &Parts,
    payload: Bytes,
    state: &ApiState,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let parsed = parse(req, payload, state, name)?;
    let request_id = RequestId::new();
    let response_base = || {
        Response::builder()
            .header(header::REQUEST_ID, request_id.as_str())
            .header(header::EXECUTED_VERSION, LATEST_VALUE)
    };
    match parsed.invocation_type {
        InvocationType::DryRun => Ok(response_base()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()))
            .map_err(internal)?),
        InvocationType::Event => {
            let store = state.registry.store();
            let function = parsed.function.clone();
            let seq = store
                .persist_event(function, request_id.to_string(), parsed.payload.clone())
                .await
                .map_err(|e| ApiError::Service(e.to_string()))?;
            let completion = Completion::Event {
                seq,
                store: store.clone(),
                sink: None,
            };
            let (handle, mut inv) = parsed.invocation(request_id.clone(), completion);
            // An Event gets neither a client context nor a log tail.
            inv.client_context = None;
            inv.want_log_tail = false;
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
            let (handle, inv) = parsed.invocation(request_id.clone(), Completion::Caller(tx));
            handle.submit(inv).await.map_err(refused)?;
            let outcome = rx
                .await
                .map_err(|_| ApiError::Service("the invocation was lost".into()))?;
            let response = outcome.map_err(aborted)?;
            let mut builder = response_base().status(StatusCode::OK).header(
                http::header::CONTENT_TYPE,
                response
                    .content_type
                    .as_deref()
                    .unwrap_or("application/json"),
            );
            if response.function_error {
                builder = builder.header(header::FUNCTION_ERROR, UNHANDLED);
            }
            if let Some(tail) = &response.log_tail {
                builder = builder.header(header::LOG_RESULT, tail);
            }
            builder.body(Full::new(response.body)).map_err(internal)
        }
    }
}

/// `InvokeWithResponseStream`: the function's answer as `PayloadChunk` events while it is
/// written (a function that does not stream: one chunk), then `InvokeComplete` with the error
/// and the log tail. Errors after the answer began are in `InvokeComplete`; the status stays 200.
pub async fn invoke_with_response_stream(
    req: &Parts,
    payload: Bytes,
    state: &ApiState,
    name: &str,
) -> Result<Response<ResponseBody>, ApiError> {
    let parsed = parse(req, payload, state, name)?;
    let request_id = RequestId::new();
    let response_base = || {
        Response::builder()
            .header(header::REQUEST_ID, request_id.as_str())
            .header(header::EXECUTED_VERSION, LATEST_VALUE)
    };
    match parsed.invocation_type {
        InvocationType::DryRun => {
            return response_base()
                .status(StatusCode::NO_CONTENT)
                .body(Full::new(Bytes::new()).into())
                .map_err(internal)
        }
        InvocationType::Event => return Err(ApiError::InvalidParameterValue(
            "InvokeWithResponseStream takes InvocationType RequestResponse or DryRun, not Event"
                .into(),
        )),
        InvocationType::RequestResponse => {}
    }
    let (completion, mut response) = crate::lambda::invocation::streaming();
    let (handle, inv) = parsed.invocation(request_id.clone(), completion);
    handle.submit(inv).await.map_err(refused)?;
    let body = match stream::began(&mut response).await {
        Began::Open { .. } => {
            ResponseBody::Streamed(StreamedBody::new(response, Encoding::EventStream))
        }
        // Every ending sends `Open` first; this is only reached if that changes.
        Began::Ended(ended) => {
            let end = ended.map_err(aborted)?;
            let complete = InvokeComplete::new(end.error.as_ref(), end.log_tail);
            Full::new(Bytes::from(
                lambkin_proto::lambda::stream::encode_invoke_complete(&complete),
            ))
            .into()
        }
    };
    response_base()
        .status(StatusCode::OK)
        .header("content-type", EVENT_STREAM_CONTENT_TYPE)
        .body(body)
        .map_err(internal)
}

fn aborted(abort: InvocationAbort) -> ApiError {
    match abort {
        InvocationAbort::ShuttingDown => ApiError::Service("the host is shutting down".into()),
        InvocationAbort::FunctionRemoved => ApiError::ResourceConflict(
            "the function was deleted while the invocation waited".into(),
        ),
        InvocationAbort::Remote(why) => ApiError::RemoteTarget(why),
    }
}

/// Parses an Invoke request's parts and checks its payload against the function.
fn parse(
    req: &Parts,
    mut payload: Bytes,
    state: &ApiState,
    name: &str,
) -> Result<InvokeRequest, ApiError> {
    let qualifier = req.uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("Qualifier="))
            .map(|q| super::percent_decode(q).into_owned())
    });
    let target = FunctionRef::parse(name, qualifier.as_deref())?;
    // The ARN only names what is not found: not made for an invocation that runs.
    let arn = || state.registry.arn(target.name.as_str());
    if let Some(q) = target.qualifier.as_deref().filter(|q| *q != LATEST) {
        return Err(ApiError::ResourceNotFound(format!("{}:{q}", arn())));
    }
    let Some((handle, spec)) = state.registry.lookup(&target.name) else {
        return Err(ApiError::ResourceNotFound(arn()));
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
    Ok(InvokeRequest {
        function: target.name,
        handle,
        invocation_type,
        log_type,
        client_context,
        trace_id,
        content_type,
        payload,
    })
}

pub(super) fn refused(refusal: Refusal) -> ApiError {
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
