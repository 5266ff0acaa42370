//! `GET /metrics`: the host's metrics for Prometheus, in the text format or OpenMetrics (as
//! `Accept` asks), for a caller with the bearer token of `ROOT/state/metrics.token` (compared
//! in constant time) and never for a web page. [`Refusal::response`] is the one place its
//! refusals become HTTP; a refusal says nothing of the metrics.

use bytes::Bytes;
use http::request::Parts;
use hyper::{Response, StatusCode};

use lambkin_proto::lambda::sigv4::constant_time_eq;
use lambkin_proto::metrics::{encode, Format};

use super::state::{ApiState, Body};
use crate::metrics::{Exporter, Sources};

/// Why `/metrics` did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    #[error("metrics are turned off ([metrics] enabled = false)")]
    Disabled,
    #[error("{0}")]
    CrossSite(String),
    #[error("/metrics takes the bearer token the host wrote in ROOT/state/metrics.token")]
    Unauthorized,
}

impl Refusal {
    fn response(self) -> Response<Body> {
        let status = match self {
            Self::Disabled => StatusCode::NOT_FOUND,
            Self::CrossSite(_) => StatusCode::FORBIDDEN,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
        };
        let mut r = Response::new(Body::from(Bytes::from(format!("{self}\n"))));
        *r.status_mut() = status;
        let headers = r.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"lambkin\""),
            );
        }
        r
    }
}

/// Answers a scrape.
pub async fn serve(parts: &Parts, state: &ApiState) -> Response<Body> {
    match admit(parts, state) {
        Ok(exporter) => {
            let format = Format::from_accept(
                parts
                    .headers
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
            );
            let families = crate::metrics::gather(Sources {
                registry: &state.registry,
                engine: &state.engine,
                pubsub: &state.pubsub,
                exporter,
            })
            .await;
            let mut r = Response::new(Body::from(Bytes::from(encode(&families, format))));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(format.content_type()),
            );
            r
        }
        Err(refusal) => refusal.response(),
    }
}

fn admit<'a>(parts: &Parts, state: &'a ApiState) -> Result<&'a Exporter, Refusal> {
    let exporter = state.metrics.as_ref().ok_or(Refusal::Disabled)?;
    super::auth::not_cross_site(parts).map_err(|e| Refusal::CrossSite(e.to_string()))?;
    let presented = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), exporter.token.as_bytes()) => Ok(exporter),
        _ => Err(Refusal::Unauthorized),
    }
}
