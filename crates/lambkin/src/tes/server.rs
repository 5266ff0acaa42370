//! The token exchange service's HTTP listener. The nucleus's order of checks, and its answers:
//! a path outside `/2016-11-01/credentialprovider/` is 404; a method other than GET is 405; a
//! path under it that is not exactly it is 400; a missing or unknown `Authorization` token is
//! 403; then the credentials (200, JSON) or the source's failure ([`FetchError::status`]).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::ipc::Tokens;

use super::credentials::FetchError;
use super::source::Source;
use super::PATH;

/// What requests are answered from.
#[derive(Debug)]
pub struct State {
    /// The components' `SVCUID` tokens: the only accepted `Authorization` values.
    pub tokens: Tokens,
    pub source: std::sync::Arc<Source>,
}

/// Everything the endpoint can refuse with; [`Refusal::status`] is the one place a status
/// is chosen.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("no such resource: the credentials are at {PATH}")]
    NotFound,
    #[error("only GET is supported")]
    MethodNotAllowed,
    #[error("unexpected path {0}: the credentials are at {PATH}")]
    BadPath(String),
    #[error("the Authorization header is missing or is not a component's token")]
    Forbidden,
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

impl Refusal {
    /// The HTTP status of each refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadPath(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Fetch(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

/// Serves until `shutdown` turns true, then waits for the connections in progress.
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: watch::Receiver<bool>) {
    crate::http::serve(
        listener,
        "token exchange",
        crate::http::Limits::TOKEN_EXCHANGE,
        state,
        |req, _conn, state| async move { answer(req, &state).await },
        shutdown,
    )
    .await;
}

async fn answer(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let result = match credentials(&req, state).await {
        Ok(body) => Response::builder()
            .status(StatusCode::OK)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body))),
        Err(refusal) => {
            if !matches!(refusal, Refusal::Fetch(_)) {
                tracing::info!(path = %req.uri().path(), method = %req.method(), "token exchange refused: {refusal}");
            }
            Response::builder()
                .status(refusal.status())
                .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Full::new(Bytes::from(refusal.to_string())))
        }
    };
    result.unwrap_or_else(|_| {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
    })
}

async fn credentials(req: &Request<Incoming>, state: &State) -> Result<Vec<u8>, Refusal> {
    let path = req.uri().path();
    if !path.starts_with(PATH) {
        return Err(Refusal::NotFound);
    }
    if req.method() != Method::GET {
        return Err(Refusal::MethodNotAllowed);
    }
    if path != PATH {
        return Err(Refusal::BadPath(path.to_owned()));
    }
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // TES's default policy lets every component (`principal *`) get credentials: a known
    // token is enough.
    let Some(component) = (!token.is_empty())
        .then(|| state.tokens.component(token))
        .flatten()
    else {
        return Err(Refusal::Forbidden);
    };
    tracing::debug!(%component, "credentials requested");
    let credentials = state.source.credentials().await?;
    serde_json::to_vec(&credentials)
        .map_err(|e| Refusal::Fetch(FetchError::Malformed(e.to_string())))
}
