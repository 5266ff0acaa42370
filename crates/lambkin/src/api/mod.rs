//! The host's HTTP listener (default `127.0.0.1:3001`): the AWS Invoke API, the Lambda
//! management API, Lambkin's own `/lambkin/v1` API, `/metrics` and the web console (`/console/`). The whole route table is `route`;
//! every error becomes HTTP in `error_response`, the one place that maps them.
//!
//! A Lambda API request is admitted in one order: its operation is known from the route, the
//! caller's signature is pre-checked (a known key) before the body is read within the
//! operation's limit, then the whole signature is verified and the caller's grants checked
//! (`access`), and only then does the operation run.

pub mod access;
pub mod auth;
pub mod console;
mod invoke;
mod layers;
mod local;
mod management;
mod metrics;
pub mod state;
pub mod stream;
mod url_requests;
pub mod url_store;
mod urls;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use lambkin_proto::lambda::error::ApiError;
use lambkin_proto::lambda::invoke::HEADER_ERROR_TYPE;

pub use local::SUBSCRIBE_PROTOCOL;
use state::percent_decode;
pub use state::{json_response, ApiState, Body};
use stream::ResponseBody;

/// Serves until `shutdown` turns true, then stops accepting and lets open requests finish.
pub async fn serve(listener: TcpListener, state: Arc<ApiState>, shutdown: watch::Receiver<bool>) {
    crate::http::serve(
        listener,
        "API",
        crate::http::Limits::API,
        state,
        |req, conn, state| async move { route(req, conn, &state).await },
        shutdown,
    )
    .await;
}

/// The whole route table. Routes off the invoke path are boxed: hyper moves a request's
/// future into place, and an unboxed one is as large as the largest route's.
async fn route(
    req: Request<Incoming>,
    conn: crate::http::Conn,
    state: &ApiState,
) -> Response<ResponseBody> {
    // A shared handle on the request's URI (no copy), so the segments outlive `req`'s move.
    let uri = req.uri().clone();
    let path = uri.path();
    let decoded: Vec<std::borrow::Cow<'_, str>> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = decoded.iter().map(AsRef::as_ref).collect();
    let method = req.method().clone();
    // A URL's host form is a URL's alone: nothing else on the listener answers through it.
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(url_id) = url_requests::host_form(host, &state.region) {
        let raw_path = req.uri().path().to_owned();
        return Box::pin(url_requests::serve(
            req, conn.peer, state, &url_id, &raw_path,
        ))
        .await;
    }
    if let ["lambda-url", url_id, ..] = segments.as_slice() {
        let url_id = (*url_id).to_owned();
        // The path after `/lambda-url/URLID`, still percent-encoded (`rawPath`).
        let after = req.uri().path().strip_prefix("/lambda-url/").unwrap_or("");
        let raw_path = after.find('/').map_or("/", |i| &after[i..]).to_owned();
        return Box::pin(url_requests::serve(
            req, conn.peer, state, &url_id, &raw_path,
        ))
        .await;
    }
    let result = match (&method, segments.as_slice()) {
        (&Method::GET, ["lambkin", "v1", "health"]) => authorized(&req, state)
            .map(|()| json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
        (&Method::POST, ["lambkin", "v1", "console", "link"]) => {
            authorized(&req, state).map(|()| {
                json_response(
                    StatusCode::OK,
                    &serde_json::json!({ "path": state.console.login_path() }),
                )
            })
        }
        (_, ["lambkin", "v1", ..]) => match authorized(&req, state) {
            Ok(()) => Box::pin(local::route(req, state, &method, &segments[2..])).await,
            Err(e) => Err(e),
        },
        (&Method::GET, ["metrics"]) => {
            let (parts, _body) = req.into_parts();
            Ok(Box::pin(metrics::serve(&parts, state)).await)
        }
        (_, ["console", rest @ ..]) => {
            return Box::pin(console::route(req, conn.local, state, &method, rest)).await
        }
        (_, ["api", "v1", rest @ ..]) => {
            Ok(Box::pin(crate::openwhisk::http::route(req, state, rest)).await)
        }
        _ => match Operation::route(&method, &segments, req.uri().query()) {
            Some(operation) => {
                return lambda_api(req, state, operation)
                    .await
                    .unwrap_or_else(|e| error_response(e).map(ResponseBody::from))
            }
            None => Err(ApiError::UnknownOperation(format!(
                "no operation for {method} {path}"
            ))),
        },
    };
    result
        .unwrap_or_else(error_response)
        .map(ResponseBody::from)
}

/// A Lambda API operation, named as IAM names its action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Invoke(String),
    InvokeWithResponseStream(String),
    CreateFunctionUrlConfig(String),
    GetFunctionUrlConfig(String),
    UpdateFunctionUrlConfig(String),
    DeleteFunctionUrlConfig(String),
    ListFunctionUrlConfigs(String),
    CreateFunction,
    ListFunctions,
    GetFunction(String),
    GetFunctionConfiguration(String),
    DeleteFunction(String),
    UpdateFunctionCode(String),
    UpdateFunctionConfiguration(String),
    /// Layer operations: the layer's name (or ARN) and version as the path gave them.
    PublishLayerVersion(String),
    GetLayerVersion(String, String),
    GetLayerVersionByArn,
    ListLayers,
    ListLayerVersions(String),
    DeleteLayerVersion(String, String),
}

/// Zips travel base64 inside JSON: 50 MB of zip, as Lambda's direct-upload limit.
const MAX_MANAGEMENT_BODY_BYTES: usize = 70 * 1024 * 1024;
/// Operations without a body.
const MAX_EMPTY_BODY_BYTES: usize = 64 * 1024;

impl Operation {
    /// The operation a method and path (decoded segments) name, and for one path, the query.
    fn route(method: &Method, segments: &[&str], query: Option<&str>) -> Option<Self> {
        let name = |n: &str| n.to_owned();
        Some(match (method, segments) {
            (&Method::GET, ["2018-10-31", "layers"] | ["2018-10-31", "layers", ""]) => {
                if layers::query_value(query, "find").as_deref() == Some("LayerVersion") {
                    Self::GetLayerVersionByArn
                } else {
                    Self::ListLayers
                }
            }
            (&Method::POST, ["2018-10-31", "layers", l, "versions"]) => {
                Self::PublishLayerVersion(name(l))
            }
            (&Method::GET, ["2018-10-31", "layers", l, "versions"]) => {
                Self::ListLayerVersions(name(l))
            }
            (&Method::GET, ["2018-10-31", "layers", l, "versions", v]) => {
                Self::GetLayerVersion(name(l), name(v))
            }
            (&Method::DELETE, ["2018-10-31", "layers", l, "versions", v]) => {
                Self::DeleteLayerVersion(name(l), name(v))
            }
            (&Method::POST, ["2015-03-31", "functions", f, "invocations"]) => Self::Invoke(name(f)),
            (&Method::POST, ["2021-11-15", "functions", f, "response-streaming-invocations"]) => {
                Self::InvokeWithResponseStream(name(f))
            }
            (&Method::POST, ["2021-10-31", "functions", f, "url"]) => {
                Self::CreateFunctionUrlConfig(name(f))
            }
            (&Method::GET, ["2021-10-31", "functions", f, "url"]) => {
                Self::GetFunctionUrlConfig(name(f))
            }
            (&Method::PUT, ["2021-10-31", "functions", f, "url"]) => {
                Self::UpdateFunctionUrlConfig(name(f))
            }
            (&Method::DELETE, ["2021-10-31", "functions", f, "url"]) => {
                Self::DeleteFunctionUrlConfig(name(f))
            }
            (&Method::GET, ["2021-10-31", "functions", f, "urls"]) => {
                Self::ListFunctionUrlConfigs(name(f))
            }
            (&Method::POST, ["2015-03-31", "functions"] | ["2015-03-31", "functions", ""]) => {
                Self::CreateFunction
            }
            (&Method::GET, ["2015-03-31", "functions"] | ["2015-03-31", "functions", ""]) => {
                Self::ListFunctions
            }
            (&Method::GET, ["2015-03-31", "functions", f]) => Self::GetFunction(name(f)),
            (&Method::GET, ["2015-03-31", "functions", f, "configuration"]) => {
                Self::GetFunctionConfiguration(name(f))
            }
            (&Method::DELETE, ["2015-03-31", "functions", f]) => Self::DeleteFunction(name(f)),
            (&Method::PUT, ["2015-03-31", "functions", f, "code"]) => {
                Self::UpdateFunctionCode(name(f))
            }
            (&Method::PUT, ["2015-03-31", "functions", f, "configuration"]) => {
                Self::UpdateFunctionConfiguration(name(f))
            }
            _ => return None,
        })
    }

    /// The IAM action (`lambda:InvokeFunction`, ...).
    pub fn action(&self) -> &'static str {
        match self {
            // IAM authorizes InvokeWithResponseStream as InvokeFunction.
            Self::Invoke(_) | Self::InvokeWithResponseStream(_) => "lambda:InvokeFunction",
            Self::CreateFunctionUrlConfig(_) => "lambda:CreateFunctionUrlConfig",
            Self::GetFunctionUrlConfig(_) => "lambda:GetFunctionUrlConfig",
            Self::UpdateFunctionUrlConfig(_) => "lambda:UpdateFunctionUrlConfig",
            Self::DeleteFunctionUrlConfig(_) => "lambda:DeleteFunctionUrlConfig",
            Self::ListFunctionUrlConfigs(_) => "lambda:ListFunctionUrlConfigs",
            Self::CreateFunction => "lambda:CreateFunction",
            Self::ListFunctions => "lambda:ListFunctions",
            Self::GetFunction(_) => "lambda:GetFunction",
            Self::GetFunctionConfiguration(_) => "lambda:GetFunctionConfiguration",
            Self::DeleteFunction(_) => "lambda:DeleteFunction",
            Self::UpdateFunctionCode(_) => "lambda:UpdateFunctionCode",
            Self::UpdateFunctionConfiguration(_) => "lambda:UpdateFunctionConfiguration",
            Self::PublishLayerVersion(_) => "lambda:PublishLayerVersion",
            // GetLayerVersionByArn is GetLayerVersion in IAM.
            Self::GetLayerVersion(..) | Self::GetLayerVersionByArn => "lambda:GetLayerVersion",
            Self::ListLayers => "lambda:ListLayers",
            Self::ListLayerVersions(_) => "lambda:ListLayerVersions",
            Self::DeleteLayerVersion(..) => "lambda:DeleteLayerVersion",
        }
    }

    /// The function the operation acts on, as the path gave it (a name or an ARN); `None`
    /// for the operations that act on no one function (they need a grant on `*`).
    pub fn function(&self) -> Option<&str> {
        match self {
            Self::Invoke(f)
            | Self::InvokeWithResponseStream(f)
            | Self::CreateFunctionUrlConfig(f)
            | Self::GetFunctionUrlConfig(f)
            | Self::UpdateFunctionUrlConfig(f)
            | Self::DeleteFunctionUrlConfig(f)
            | Self::ListFunctionUrlConfigs(f)
            | Self::GetFunction(f)
            | Self::GetFunctionConfiguration(f)
            | Self::DeleteFunction(f)
            | Self::UpdateFunctionCode(f)
            | Self::UpdateFunctionConfiguration(f) => Some(f),
            Self::CreateFunction
            | Self::ListFunctions
            | Self::PublishLayerVersion(_)
            | Self::GetLayerVersion(..)
            | Self::GetLayerVersionByArn
            | Self::ListLayers
            | Self::ListLayerVersions(_)
            | Self::DeleteLayerVersion(..) => None,
        }
    }

    /// The largest body the operation takes, and its name in the 413.
    fn body_limit(&self, headers: &http::HeaderMap) -> (usize, &'static str) {
        use lambkin_proto::lambda::invoke::{InvocationType, HEADER_INVOCATION_TYPE};
        use lambkin_proto::lambda::{MAX_ASYNC_REQUEST_BYTES, MAX_SYNC_REQUEST_BYTES};
        match self {
            Self::Invoke(_) => {
                let kind = headers
                    .get(HEADER_INVOCATION_TYPE)
                    .and_then(|v| v.to_str().ok());
                match InvocationType::parse(kind) {
                    Ok(InvocationType::Event) => (MAX_ASYNC_REQUEST_BYTES, "InvokeAsync"),
                    _ => (MAX_SYNC_REQUEST_BYTES, "Invoke"),
                }
            }
            Self::InvokeWithResponseStream(_) => {
                (MAX_SYNC_REQUEST_BYTES, "InvokeWithResponseStream")
            }
            Self::CreateFunctionUrlConfig(_) => (MAX_EMPTY_BODY_BYTES, "CreateFunctionUrlConfig"),
            Self::GetFunctionUrlConfig(_) => (MAX_EMPTY_BODY_BYTES, "GetFunctionUrlConfig"),
            Self::UpdateFunctionUrlConfig(_) => (MAX_EMPTY_BODY_BYTES, "UpdateFunctionUrlConfig"),
            Self::DeleteFunctionUrlConfig(_) => (MAX_EMPTY_BODY_BYTES, "DeleteFunctionUrlConfig"),
            Self::ListFunctionUrlConfigs(_) => (MAX_EMPTY_BODY_BYTES, "ListFunctionUrlConfigs"),
            Self::CreateFunction => (MAX_MANAGEMENT_BODY_BYTES, "CreateFunction"),
            Self::UpdateFunctionCode(_) => (MAX_MANAGEMENT_BODY_BYTES, "UpdateFunctionCode"),
            Self::UpdateFunctionConfiguration(_) => {
                (MAX_MANAGEMENT_BODY_BYTES, "UpdateFunctionConfiguration")
            }
            Self::PublishLayerVersion(_) => (MAX_MANAGEMENT_BODY_BYTES, "PublishLayerVersion"),
            Self::GetLayerVersion(..) => (MAX_EMPTY_BODY_BYTES, "GetLayerVersion"),
            Self::GetLayerVersionByArn => (MAX_EMPTY_BODY_BYTES, "GetLayerVersionByArn"),
            Self::ListLayers => (MAX_EMPTY_BODY_BYTES, "ListLayers"),
            Self::ListLayerVersions(_) => (MAX_EMPTY_BODY_BYTES, "ListLayerVersions"),
            Self::DeleteLayerVersion(..) => (MAX_EMPTY_BODY_BYTES, "DeleteLayerVersion"),
            // These take no body; a small one is tolerated.
            Self::ListFunctions => (MAX_EMPTY_BODY_BYTES, "ListFunctions"),
            Self::GetFunction(_) => (MAX_EMPTY_BODY_BYTES, "GetFunction"),
            Self::GetFunctionConfiguration(_) => (MAX_EMPTY_BODY_BYTES, "GetFunctionConfiguration"),
            Self::DeleteFunction(_) => (MAX_EMPTY_BODY_BYTES, "DeleteFunction"),
        }
    }
}

/// Admits a Lambda API request (see the module's documentation), then runs it.
async fn lambda_api(
    req: Request<Incoming>,
    state: &ApiState,
    operation: Operation,
) -> Result<Response<ResponseBody>, ApiError> {
    let (parts, body) = req.into_parts();
    let checked = state.gate.precheck(&parts)?;
    let (limit, name) = operation.body_limit(&parts.headers);
    let body = read_body(body, limit, name).await?;
    let principal = state.gate.verify(&parts, &body, checked)?;
    access::authorize(&principal, &operation, state)?;
    let whole = match operation {
        Operation::InvokeWithResponseStream(f) => {
            return invoke::invoke_with_response_stream(&parts, body, state, &f).await
        }
        Operation::Invoke(f) => invoke::invoke(&parts, body, state, &f).await,
        Operation::CreateFunctionUrlConfig(f) => urls::create(state, &f, parts.uri.query(), &body),
        Operation::GetFunctionUrlConfig(f) => urls::get(state, &f, parts.uri.query()),
        Operation::UpdateFunctionUrlConfig(f) => urls::update(state, &f, parts.uri.query(), &body),
        Operation::DeleteFunctionUrlConfig(f) => urls::delete(state, &f, parts.uri.query()),
        Operation::ListFunctionUrlConfigs(f) => urls::list(state, &f, parts.uri.query()),
        Operation::CreateFunction => Box::pin(management::create(&body, state)).await,
        Operation::ListFunctions => management::list(state, parts.uri.query()),
        Operation::GetFunction(f) => management::get(state, &f),
        Operation::GetFunctionConfiguration(f) => management::get_configuration(state, &f),
        Operation::DeleteFunction(f) => Box::pin(management::delete(state, &f)).await,
        Operation::UpdateFunctionCode(f) => {
            Box::pin(management::update_code(&body, state, &f)).await
        }
        Operation::UpdateFunctionConfiguration(f) => {
            Box::pin(management::update_configuration(&body, state, &f)).await
        }
        Operation::PublishLayerVersion(l) => Box::pin(layers::publish(&body, state, &l)).await,
        Operation::GetLayerVersion(l, v) => layers::get(state, &l, &v),
        Operation::GetLayerVersionByArn => layers::get_by_arn(state, parts.uri.query()),
        Operation::ListLayers => layers::list(state, parts.uri.query()),
        Operation::ListLayerVersions(l) => layers::list_versions(state, &l, parts.uri.query()),
        Operation::DeleteLayerVersion(l, v) => Box::pin(layers::delete(state, &l, &v)).await,
    };
    whole.map(|r| r.map(ResponseBody::from))
}

fn authorized(req: &Request<Incoming>, state: &ApiState) -> Result<(), ApiError> {
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented.is_some_and(|p| {
        lambkin_proto::lambda::sigv4::constant_time_eq(p.as_bytes(), state.cli_token.as_bytes())
    }) {
        Ok(())
    } else {
        Err(ApiError::AccessDenied(
            "the local API needs the token the host wrote under ROOT/state".into(),
        ))
    }
}

/// Bodies past this size are not even drained before a 413: the connection is closed.
const MAX_DRAINED_BYTES: usize = 64 * 1024 * 1024;

/// Reads a body of at most `limit` bytes. A larger one is read to its end and discarded (up
/// to [`MAX_DRAINED_BYTES`]) before the 413, so ordinary clients get to read the answer.
async fn read_body(
    mut body: Incoming,
    limit: usize,
    operation: &'static str,
) -> Result<Bytes, ApiError> {
    let too_large = ApiError::RequestTooLarge { limit, operation };
    let mut collected = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::InvalidRequestContent(format!("the request body could not be read: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > MAX_DRAINED_BYTES {
            return Err(too_large);
        }
        if seen <= limit {
            collected.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(too_large);
    }
    Ok(collected.freeze())
}

/// The one place Lambda API errors become HTTP: status, `X-Amzn-ErrorType`, AWS's body.
fn error_response(e: ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_response(status, &e.body());
    r.headers_mut()
        .insert(HEADER_ERROR_TYPE, http::HeaderValue::from_static(e.code()));
    if let ApiError::TooManyRequests {
        retry_after_seconds,
        ..
    } = &e
    {
        if let Ok(v) = http::HeaderValue::from_str(&retry_after_seconds.to_string()) {
            r.headers_mut().insert("retry-after", v);
        }
    }
    r
}
