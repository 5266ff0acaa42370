//! What the OpenWhisk API's handlers (`http`, `web`) share about a request and its answer:
//! the body and query read within limits, the activation header, JSON answers, how long a
//! blocking invoke waits. A leaf: it names neither handler.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

use lambkin_proto::openwhisk::WhiskError;

use crate::api::state::{percent_decode, Body};

/// The longest a blocking invoke waits before answering 202 with the activation id
/// (OpenWhisk's controller waits 60 s too).
pub(super) const BLOCKING_WAIT: Duration = Duration::from_secs(60);
/// An invoke's parameters (the Lambda payload limit).
pub(super) const MAX_INVOKE_BODY_BYTES: usize = lambkin_proto::lambda::MAX_SYNC_REQUEST_BYTES;

pub(super) fn set_activation_header(r: &mut Response<Body>, id: &str) {
    if let Ok(v) = http::HeaderValue::from_str(id) {
        r.headers_mut().insert("x-openwhisk-activation-id", v);
    }
}

pub(super) async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, WhiskError> {
    Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                WhiskError::TooLarge(format!("the body exceeds {limit} bytes"))
            } else {
                WhiskError::Malformed(format!("the request body could not be read: {e}"))
            }
        })
}

/// The query's pairs, decoded (`+` is a space).
pub(super) fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let decode = |s: &str| percent_decode(&s.replace('+', " ")).into_owned();
            (decode(k), decode(v))
        })
        .collect()
}

pub(super) fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    crate::api::state::json_response(status, value)
}
