//! Requests to function URLs, in either form: `Host: URLID.lambda-url.REGION.on.aws` on the API
//! listener, or its path form `/lambda-url/URLID/PATH`. A request becomes the payload format
//! 2.0 event; the answer is read as AWS reads it (buffered), or flows as the function writes
//! it after its HTTP prelude (`RESPONSE_STREAM`). CORS preflights are answered here, not by
//! the function. An `AWS_IAM` URL takes only requests signed as the Lambda API's are (service
//! `lambda`), checked by the same gate and grants (`lambda:InvokeFunctionUrl`); a browser
//! cannot sign them, whatever `Cors` allows.
//!
//! Errors become HTTP in [`UrlError::response`], the one place for this protocol.

use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::oneshot;

use lambkin_proto::lambda::error::ApiError;
use lambkin_proto::lambda::function::FunctionName;
use lambkin_proto::lambda::stream::HTTP_INTEGRATION_CONTENT_TYPE;
use lambkin_proto::lambda::url::{self as url, AuthType, HttpAnswer, InvokeMode, UrlRequest};

use super::stream::{self, Began, ResponseBody, StreamedBody};
use super::url_store::FunctionUrl;
use super::ApiState;
use crate::lambda::invocation::{Completion, Invocation, InvocationAbort, RequestId, StreamPart};

/// Why a URL request was not answered by its function.
#[derive(Debug, thiserror::Error)]
enum UrlError {
    #[error("no function URL {0:?} here")]
    UnknownUrl(String),
    /// Refused by the gate or the grants (`AWS_IAM`), or a Lambda API error (queue full).
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The function failed, or answered what cannot be an HTTP response.
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Aborted(InvocationAbort),
}

impl UrlError {
    /// The one place URL errors become HTTP. Lambda API refusals keep their codes.
    fn response(self) -> Response<ResponseBody> {
        let (status, message) = match &self {
            Self::Api(e) => return super::error_response(e.clone()).map(ResponseBody::from),
            Self::UnknownUrl(_) => (StatusCode::NOT_FOUND, self.to_string()),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, self.to_string()),
            Self::BadGateway(why) => {
                tracing::warn!(error = %why, "function URL: the function's answer is not a response");
                (StatusCode::BAD_GATEWAY, "Internal Server Error".to_owned())
            }
            Self::Aborted(why @ InvocationAbort::Remote(_)) => {
                (StatusCode::BAD_GATEWAY, why.to_string())
            }
            Self::Aborted(why) => (StatusCode::SERVICE_UNAVAILABLE, why.to_string()),
        };
        super::json_response(status, &serde_json::json!({ "Message": message }))
            .map(ResponseBody::from)
    }
}

/// The URL id a `Host` names in the host form, if it is one.
pub fn host_form(host: &str, region: &str) -> Option<String> {
    // Every request to the listener asks: the common answer (no) costs no allocation.
    const MARK: &[u8] = b".lambda-url.";
    if !host
        .as_bytes()
        .windows(MARK.len())
        .any(|w| w.eq_ignore_ascii_case(MARK))
    {
        return None;
    }
    let name = host.rsplit_once(':').map_or(host, |(n, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            n
        } else {
            host
        }
    });
    let suffix = format!(".lambda-url.{region}.on.aws");
    let id = name.to_ascii_lowercase().strip_suffix(&suffix)?.to_owned();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(id)
}

/// Serves a request to the URL `url_id` from `peer`; `raw_path` is the path after the URL's
/// own part.
pub async fn serve(
    req: Request<Incoming>,
    peer: Option<std::net::SocketAddr>,
    state: &ApiState,
    url_id: &str,
    raw_path: &str,
) -> Response<ResponseBody> {
    let origin = req
        .headers()
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(found) = state.urls.by_id(url_id) else {
        return UrlError::UnknownUrl(url_id.to_owned()).response();
    };
    let cors = found.config.cors.clone();
    if let (Some(cors), Some(origin), Some(method)) = (
        cors.as_ref(),
        origin.as_deref(),
        req.headers()
            .get("access-control-request-method")
            .and_then(|v| v.to_str().ok()),
    ) {
        if req.method() == Method::OPTIONS {
            return preflight(cors, origin, method);
        }
    }
    let mut response = match invoke(req, peer, state, &found, raw_path).await {
        Ok(response) => response,
        Err(e) => e.response(),
    };
    if let (Some(cors), Some(origin)) = (cors.as_ref(), origin.as_deref()) {
        for (name, value) in cors.response_headers(origin) {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

fn preflight(cors: &url::Cors, origin: &str, method: &str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::from(Full::new(Bytes::new())));
    for (name, value) in cors.preflight(origin, method) {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

async fn invoke(
    req: Request<Incoming>,
    peer: Option<std::net::SocketAddr>,
    state: &ApiState,
    found: &FunctionUrl,
    raw_path: &str,
) -> Result<Response<ResponseBody>, UrlError> {
    let (parts, body) = req.into_parts();
    let prechecked = match found.config.auth_type {
        AuthType::AwsIam => Some(state.gate.precheck(&parts)?),
        AuthType::None => None,
    };
    let body = super::read_body(body, url::MAX_REQUEST_BYTES, "InvokeFunctionUrl")
        .await
        .map_err(|e| match e {
            ApiError::RequestTooLarge { limit, .. } => UrlError::TooLarge(limit),
            other => UrlError::Api(other),
        })?;
    let account_id = state
        .registry
        .arn(&found.function)
        .split(':')
        .nth(4)
        .unwrap_or_default()
        .to_owned();
    let signed = prechecked.is_some();
    if let Some(checked) = prechecked {
        let principal = state.gate.verify(&parts, &body, checked)?;
        super::access::authorize_action(
            &principal,
            "lambda:InvokeFunctionUrl",
            Some(&found.function),
            state,
        )?;
    }
    let name = FunctionName::parse(&found.function)
        .map_err(|_| UrlError::UnknownUrl(found.url_id.clone()))?;
    let Some((handle, _)) = state.registry.lookup(&name) else {
        return Err(UrlError::UnknownUrl(found.url_id.clone()));
    };
    let request_id = RequestId::new();
    let event = url::event(&UrlRequest {
        method: parts.method.as_str(),
        raw_path,
        raw_query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &body,
        source_ip: peer.map_or_else(|| "127.0.0.1".to_owned(), |p| p.ip().to_string()),
        url_id: &found.url_id,
        region: &state.region,
        account_id: signed.then_some(account_id.as_str()),
        request_id: request_id.as_str(),
        time: clf_time(SystemTime::now()),
        time_epoch_ms: crate::timestamp::epoch_millis(SystemTime::now()),
    });
    let invocation = |completion| Invocation {
        request_id: request_id.clone(),
        payload: Bytes::from(event.to_string()),
        content_type: Some("application/json".into()),
        client_context: None,
        trace_id: None,
        want_log_tail: false,
        completion,
    };
    match found.config.invoke_mode {
        InvokeMode::Buffered => {
            let (tx, rx) = oneshot::channel();
            handle
                .submit(invocation(Completion::Caller(tx)))
                .await
                .map_err(|r| UrlError::Api(super::invoke::refused(r)))?;
            let response = rx
                .await
                .map_err(|_| UrlError::Aborted(InvocationAbort::ShuttingDown))?
                .map_err(UrlError::Aborted)?;
            if response.function_error {
                return Err(UrlError::BadGateway(format!(
                    "the function failed: {}",
                    String::from_utf8_lossy(&response.body)
                )));
            }
            buffered(response.content_type.as_deref(), &response.body)
        }
        InvokeMode::ResponseStream => {
            let (completion, mut stream) = crate::lambda::invocation::streaming();
            handle
                .submit(invocation(completion))
                .await
                .map_err(|r| UrlError::Api(super::invoke::refused(r)))?;
            match streamed(&mut stream).await? {
                Head::Whole(response) => Ok(response),
                Head::Streamed(head, first) => {
                    Ok(head.map(|()| ResponseBody::Streamed(StreamedBody::raw(stream, first))))
                }
            }
        }
    }
}

/// How a `RESPONSE_STREAM` answer begins.
enum Head {
    /// The head, and the body bytes read with the prelude; the rest flows.
    Streamed(Response<()>, Bytes),
    /// A function that did not stream: answered whole.
    Whole(Response<ResponseBody>),
}

/// The status, headers and cookies of an answer.
fn head_of(answer: &HttpAnswer) -> Result<Response<()>, UrlError> {
    let mut builder = Response::builder().status(answer.status);
    for (name, value) in &answer.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    for cookie in &answer.cookies {
        builder = builder.header(http::header::SET_COOKIE, cookie.as_str());
    }
    builder
        .body(())
        .map_err(|e| UrlError::BadGateway(format!("the answer's head is not HTTP: {e}")))
}

/// `dd/Mon/yyyy:HH:MM:SS +0000`, the event's `requestContext.time`.
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = lambkin_proto::calendar::civil_from_days(days);
    let month = MONTHS[(month as usize).saturating_sub(1).min(11)];
    format!(
        "{day:02}/{month}/{year}:{:02}:{:02}:{:02} +0000",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A buffered answer (or a gathered stream with its prelude) as an HTTP response.
fn buffered(content_type: Option<&str>, body: &[u8]) -> Result<Response<ResponseBody>, UrlError> {
    let answer = if content_type == Some(HTTP_INTEGRATION_CONTENT_TYPE) {
        let (mut head, at) = url::split_prelude(body)
            .map_err(UrlError::BadGateway)?
            .ok_or_else(|| UrlError::BadGateway("the prelude has no delimiter".into()))?;
        head.body = body[at..].to_vec();
        head
    } else {
        url::answer(body).map_err(UrlError::BadGateway)?
    };
    let body = Bytes::from(answer.body.clone());
    head_of(&answer).map(|head| head.map(|()| Full::new(body).into()))
}

/// A streamed answer's head (and the body bytes read with its prelude); a function that did
/// not stream is answered whole.
async fn streamed(
    stream: &mut crate::lambda::invocation::ResponseStream,
) -> Result<Head, UrlError> {
    let (content_type, streamed) = match stream::began(stream).await {
        Began::Open {
            content_type,
            streamed,
        } => (content_type, streamed),
        Began::Ended(ended) => {
            let end = ended.map_err(UrlError::Aborted)?;
            return Err(UrlError::BadGateway(format!(
                "the function failed: {:?}",
                end.error
            )));
        }
    };
    if !streamed {
        let (data, end) = stream::gather(stream).await;
        let end = end.map_err(UrlError::Aborted)?;
        if let Some(error) = end.error {
            return Err(UrlError::BadGateway(format!(
                "the function failed: {}: {}",
                error.error_type, error.message
            )));
        }
        return buffered(content_type.as_deref(), &data).map(Head::Whole);
    }
    if content_type.as_deref() != Some(HTTP_INTEGRATION_CONTENT_TYPE) {
        let answer = HttpAnswer {
            status: 200,
            headers: vec![(
                "content-type".into(),
                content_type.unwrap_or_else(|| "application/octet-stream".into()),
            )],
            cookies: Vec::new(),
            body: Vec::new(),
        };
        return head_of(&answer).map(|r| Head::Streamed(r, Bytes::new()));
    }
    // The prelude: JSON, eight NUL bytes, then the body.
    let mut read = Vec::new();
    loop {
        match stream.parts.recv().await {
            Some(StreamPart::Data(data)) => read.extend_from_slice(&data),
            Some(StreamPart::Open { .. }) => {}
            None => {
                return Err(UrlError::BadGateway(
                    "the stream ended before its prelude did".into(),
                ))
            }
        }
        if let Some((head, at)) = url::split_prelude(&read).map_err(UrlError::BadGateway)? {
            let first = Bytes::copy_from_slice(&read[at..]);
            return head_of(&head).map(|r| Head::Streamed(r, first));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_form;

    #[test]
    fn only_the_region_s_url_hosts_are_urls() {
        let id = "3f0c9d2a6b1e4f7a8c5d0e1f2a3b4c5d";
        assert_eq!(
            host_form(&format!("{id}.lambda-url.us-east-1.on.aws"), "us-east-1").as_deref(),
            Some(id)
        );
        assert_eq!(
            host_form(
                &format!("{id}.LAMBDA-URL.us-east-1.on.aws:3001"),
                "us-east-1"
            )
            .as_deref(),
            Some(id)
        );
        assert_eq!(host_form("127.0.0.1:3001", "us-east-1"), None);
        assert_eq!(
            host_form(&format!("{id}.lambda-url.eu-west-1.on.aws"), "us-east-1"),
            None
        );
        assert_eq!(
            host_form(
                &format!("{id}.lambda-url.us-east-1.on.aws.evil.example"),
                "us-east-1"
            ),
            None
        );
        assert_eq!(
            host_form("a.b.lambda-url.us-east-1.on.aws", "us-east-1"),
            None
        );
        assert_eq!(host_form(".lambda-url.us-east-1.on.aws", "us-east-1"), None);
    }
}
