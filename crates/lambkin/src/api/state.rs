//! What the API's handlers share, and what the OpenWhisk API's edge (served on the same
//! listener) borrows: the state, the body type, JSON answers and path decoding. A leaf: it
//! names no handler, so the route table can reach the handlers and they can reach this.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use super::auth;
use crate::components::engine::Engine;
use crate::lambda::registry::Registry;
use crate::pubsub::PubSubHandle;

pub type Body = Full<Bytes>;

/// What the API's handlers share.
#[derive(Debug)]
pub struct ApiState {
    pub registry: Registry,
    pub engine: Engine,
    /// Local pub/sub, for `lambkin pub` and `lambkin sub`.
    pub pubsub: PubSubHandle,
    /// The token `/lambkin/v1` callers must present (`Authorization: Bearer …`).
    pub cli_token: String,
    /// Who may call the Lambda API.
    pub gate: auth::Gate,
    /// The OpenWhisk API (`/api/v1`), with its own key.
    pub openwhisk: Arc<crate::openwhisk::OpenWhisk>,
    /// The state database, for `lambkin backup`'s snapshot.
    pub store: crate::store::Store,
    pub layout: crate::layout::Layout,
    /// Function URLs.
    pub urls: super::url_store::FunctionUrls,
    /// The region URLs' host form names (`URLID.lambda-url.REGION.on.aws`).
    pub region: String,
    /// `/metrics`; `None` with `[metrics] enabled = false`.
    pub metrics: Option<crate::metrics::Exporter>,
    /// The web console's login links, sessions and subscriptions.
    pub console: super::console::sessions::Console,
}

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// `segment` with its `%XX` escapes decoded (invalid UTF-8 replaced); borrowed when it has none,
/// as most paths and query values do.
pub(crate) fn percent_decode(segment: &str) -> std::borrow::Cow<'_, str> {
    if !segment.contains('%') {
        return std::borrow::Cow::Borrowed(segment);
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_arns_in_paths() {
        assert_eq!(
            percent_decode("arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af"),
            "arn:aws:lambda:us-east-1:000000000000:function:f"
        );
        assert_eq!(percent_decode("%24LATEST"), "$LATEST");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("plain"), "plain");
    }
}
