//! Web actions (`--web true`): `/api/v1/web/NAMESPACE/default/ACTION[.json|.http|.html|.text]`
//! answers plain HTTP with the action's result, as OpenWhisk's `docs/webactions.md` says. The
//! request becomes parameters (the query, a JSON or form body, else `__ow_body`, and
//! `__ow_method`, `__ow_headers`, `__ow_path`); the result becomes the response
//! (`{statusCode, headers, body}` for `.http`, the default). No key is needed, so a request
//! must not come from a browser or through a name other than the listener's (the gate's
//! development-mode checks), and no answer carries CORS headers.

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use lambkin_proto::openwhisk::{Outcome, WhiskError};

use super::request::{
    json_response, query_pairs, read_body, set_activation_header, BLOCKING_WAIT,
    MAX_INVOKE_BODY_BYTES,
};
use crate::api::state::{percent_decode, ApiState, Body};

/// How the result becomes the response, from the name's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Http,
    Json,
    Html,
    Text,
}

fn split_extension(action: &str) -> (&str, Media) {
    for (ext, media) in [
        (".http", Media::Http),
        (".json", Media::Json),
        (".html", Media::Html),
        (".text", Media::Text),
    ] {
        if let Some(name) = action.strip_suffix(ext) {
            return (name, media);
        }
    }
    (action, Media::Http)
}

pub async fn serve(
    req: Request<Incoming>,
    state: &ApiState,
    namespace: &str,
    package: &str,
    action: &str,
    path: &[&str],
) -> Result<Response<Body>, WhiskError> {
    let ow = &state.openwhisk;
    let (parts, body) = req.into_parts();
    state
        .gate
        .not_a_browser(&parts)
        .map_err(|e| WhiskError::Refused(e.to_string()))?;
    let req = Request::from_parts(parts, body);
    let (name, media) = split_extension(action);
    if !ow.is_own_namespace(namespace) || package != "default" {
        return Err(WhiskError::NotFound);
    }
    let action = ow
        .action(name)
        .filter(|a| a.is_web())
        .ok_or(WhiskError::NotFound)?;
    let method = req.method().as_str().to_ascii_lowercase();
    let headers: Map<String, Value> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), json!(v.to_str().ok()?))))
        .collect();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let query = query_pairs(&req);
    let body = read_body(req, MAX_INVOKE_BODY_BYTES).await?;

    let mut params: Map<String, Value> = query.into_iter().map(|(k, v)| (k, json!(v))).collect();
    if !body.is_empty() {
        if content_type.starts_with("application/json") {
            match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(fields)) => params.extend(fields),
                Ok(other) => {
                    params.insert("__ow_body".into(), other);
                }
                Err(e) => return Err(WhiskError::Malformed(e.to_string())),
            }
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            for pair in String::from_utf8_lossy(&body)
                .split('&')
                .filter(|p| !p.is_empty())
            {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let decode = |s: &str| percent_decode(&s.replace('+', " ")).into_owned();
                params.insert(decode(k), json!(decode(v)));
            }
        } else {
            let text = match std::str::from_utf8(&body) {
                Ok(text) if content_type.starts_with("text/") => text.to_owned(),
                _ => base64::engine::general_purpose::STANDARD.encode(&body),
            };
            params.insert("__ow_body".into(), json!(text));
        }
    }
    let sub_path = if path.is_empty() {
        String::new()
    } else {
        format!("/{}", path.join("/"))
    };
    params.insert("__ow_method".into(), json!(method));
    params.insert("__ow_headers".into(), Value::Object(headers));
    params.insert("__ow_path".into(), json!(sub_path));

    let id = super::new_activation_id();
    let activation_id = id.simple().to_string();
    let run = tokio::spawn(ow.clone().activate(action, params, id));
    let activation = match tokio::time::timeout(BLOCKING_WAIT, run).await {
        Err(_) => {
            let mut r = json_response(
                StatusCode::ACCEPTED,
                &json!({ "error": "Response not yet ready.", "code": activation_id }),
            );
            set_activation_header(&mut r, &activation_id);
            return Ok(r);
        }
        Ok(Err(e)) => return Err(WhiskError::Internal(format!("the activation failed: {e}"))),
        Ok(Ok(outcome)) => outcome?,
    };
    let projection = match activation.response.outcome {
        Outcome::Success => activation.response.result.clone(),
        Outcome::ApplicationError => activation
            .response
            .result
            .get("error")
            .cloned()
            .unwrap_or(Value::Null),
        Outcome::DeveloperError | Outcome::WhiskError => {
            return Err(WhiskError::BadRequest(
                "There was an error processing your request.".into(),
            ))
        }
    };
    let mut response = transcode(&projection, media)?;
    set_activation_header(&mut response, &activation_id);
    Ok(response)
}

fn invalid(media: &str) -> WhiskError {
    WhiskError::BadRequest(format!("Response is not valid '{media}'."))
}

fn text_response(status: StatusCode, content_type: &str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert("content-type", v);
    }
    r
}

/// The result as the extension asks (OpenWhisk's `resultAs*`).
fn transcode(result: &Value, media: Media) -> Result<Response<Body>, WhiskError> {
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| result.get(*n))
            .cloned()
            .unwrap_or(Value::Null)
    };
    match media {
        Media::Json => match result {
            Value::Object(_) | Value::Array(_) => Ok(json_response(StatusCode::OK, result)),
            _ => Err(invalid("application/json")),
        },
        Media::Html => match field(&["body", "html"]) {
            Value::String(html) => Ok(text_response(
                StatusCode::OK,
                "text/html; charset=UTF-8",
                Bytes::from(html),
            )),
            _ => Err(invalid("text/html")),
        },
        Media::Text => {
            let text = match field(&["body", "text"]) {
                Value::String(s) => s,
                Value::Null if result.get("body").is_none() && result.get("text").is_none() => {
                    return Err(WhiskError::NotFound)
                }
                other => other.to_string(),
            };
            Ok(text_response(
                StatusCode::OK,
                "text/plain; charset=UTF-8",
                Bytes::from(text),
            ))
        }
        Media::Http => http_response(result).ok_or_else(|| invalid("message/http")),
    }
}

/// `{statusCode, headers, body}` → the response; `None` when it is not one.
fn http_response(result: &Value) -> Option<Response<Body>> {
    let fields = result.as_object()?;
    let status = match fields.get("statusCode") {
        None => None,
        Some(Value::Number(n)) => Some(u16::try_from(n.as_u64()?).ok()?),
        Some(Value::String(s)) => Some(s.parse::<u16>().ok()?),
        Some(_) => return None,
    };
    let mut headers = http::HeaderMap::new();
    if let Some(given) = fields.get("headers") {
        for (k, v) in given.as_object()? {
            let values: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                one => vec![one],
            };
            for value in values {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Bool(_) | Value::Number(_) => value.to_string(),
                    _ => return None,
                };
                headers.append(
                    http::HeaderName::from_bytes(k.as_bytes()).ok()?,
                    http::HeaderValue::from_str(&text).ok()?,
                );
            }
        }
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (default_status, body) = match fields.get("body") {
        None | Some(Value::Null) => (StatusCode::NO_CONTENT, Bytes::new()),
        Some(Value::String(s)) if s.is_empty() => (StatusCode::NO_CONTENT, Bytes::new()),
        Some(Value::String(s)) => {
            let binary = content_type.as_deref().is_some_and(|ct| {
                !(ct.starts_with("text/")
                    || ct.starts_with("application/json")
                    || ct.contains("xml")
                    || ct.starts_with("application/javascript"))
            });
            let bytes = if binary {
                base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .ok()?
            } else {
                s.clone().into_bytes()
            };
            if content_type.is_none() {
                headers.insert(
                    "content-type",
                    http::HeaderValue::from_static("text/html; charset=UTF-8"),
                );
            }
            (StatusCode::OK, Bytes::from(bytes))
        }
        Some(other) => {
            if content_type.is_none() {
                headers.insert(
                    "content-type",
                    http::HeaderValue::from_static("application/json"),
                );
            }
            (StatusCode::OK, Bytes::from(other.to_string()))
        }
    };
    if body.is_empty() {
        headers.remove("content-type");
    }
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = match status {
        Some(code) => StatusCode::from_u16(code).ok()?,
        None => default_status,
    };
    *r.headers_mut() = headers;
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_results_become_responses() {
        let r = http_response(&json!({"statusCode": 201, "headers": {"x-a": "1"},
                                      "body": "<p>hi</p>"}))
        .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(r.headers()["content-type"], "text/html; charset=UTF-8");
        let r = http_response(&json!({"body": {"a": 1}})).unwrap();
        assert_eq!(r.headers()["content-type"], "application/json");
        let r = http_response(&json!({"headers": {"content-type": "image/png"}, "body": "AAE="}))
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(http_response(&json!({})).unwrap().status(), 204);
        assert!(http_response(&json!({"statusCode": "abc"})).is_none());
        assert!(http_response(&json!("text")).is_none());
        assert_eq!(split_extension("a.b.json"), ("a.b", Media::Json));
        assert_eq!(split_extension("hello"), ("hello", Media::Http));
    }
}
