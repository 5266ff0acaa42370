//! The OpenWhisk REST API's edge (`/api/v1` on the host's API listener): its route table
//! (`route`), HTTP Basic authentication with the host's OpenWhisk key, and the one place its
//! errors become HTTP (`error_response`). Browsers are refused: a request with an `Origin` or
//! a cross-site `Sec-Fetch-Site` never reaches an operation, and no answer carries CORS
//! headers, so a web page can neither drive the API nor read from it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use lambkin_proto::openwhisk::{
    basic_credentials, ActionPut, ListQuery, Outcome, RulePut, TriggerPut, WhiskError,
};

use super::request::{
    json_response, query_pairs, read_body, set_activation_header, BLOCKING_WAIT,
    MAX_INVOKE_BODY_BYTES,
};
use super::{web, OpenWhisk};
use crate::api::state::{ApiState, Body};

/// An action's document with its code (OpenWhisk takes up to 48 MB of code).
const MAX_ACTION_BODY_BYTES: usize = 50 * 1024 * 1024;

/// Serves one `/api/v1/...` request; `rest` are the decoded path segments after `v1`.
pub async fn route(req: Request<Incoming>, state: &ApiState, rest: &[&str]) -> Response<Body> {
    let transaction = uuid::Uuid::new_v4().simple().to_string();
    let ow = &state.openwhisk;
    let answer = match rest {
        ["web", namespace, package, action, path @ ..] => {
            web::serve(req, state, namespace, package, action, path).await
        }
        _ => dispatch(req, ow, rest).await,
    };
    match answer {
        Ok(response) => response,
        Err(e) => error_response(&e, &transaction),
    }
}

async fn dispatch(
    req: Request<Incoming>,
    ow: &Arc<OpenWhisk>,
    rest: &[&str],
) -> Result<Response<Body>, WhiskError> {
    not_from_a_browser(&req)?;
    let method = req.method().clone();
    if method == Method::GET && rest.iter().all(|s| s.is_empty()) {
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "description": "Lambkin's OpenWhisk API",
                "api_paths": ["/api/v1"],
                "runtimes": ow.kinds().kinds(),
            }),
        ));
    }
    authenticate(&req, ow)?;
    let query = query_pairs(&req);
    let flag = |name: &str| query.iter().any(|(k, v)| k == name && v == "true");
    match (&method, rest) {
        (&Method::GET, ["namespaces"] | ["namespaces", ""]) => {
            Ok(json_response(StatusCode::OK, &json!([ow.namespace])))
        }
        (_, ["namespaces", namespace, ..]) if !ow.is_own_namespace(namespace) => {
            Err(WhiskError::Forbidden)
        }
        (&Method::GET, ["namespaces", _, "actions"] | ["namespaces", _, "actions", ""]) => {
            let q = ListQuery::parse(&query, "actions")?;
            if q.count {
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({ "actions": ow.actions().len() }),
                ));
            }
            let list: Vec<Value> = ow
                .actions()
                .iter()
                .skip(q.skip)
                .take(q.limit)
                .map(|a| a.summary())
                .collect();
            Ok(json_response(StatusCode::OK, &Value::Array(list)))
        }
        (&Method::GET, ["namespaces", _, "actions", name]) => {
            let action = ow.action(name).ok_or(WhiskError::NotFound)?;
            let with_code = !query.iter().any(|(k, v)| k == "code" && v == "false");
            Ok(json_response(StatusCode::OK, &action.to_json(with_code)))
        }
        (&Method::PUT, ["namespaces", _, "actions", name]) => {
            let name = name.to_string();
            let body = read_body(req, MAX_ACTION_BODY_BYTES).await?;
            let put: ActionPut =
                serde_json::from_slice(&body).map_err(|e| WhiskError::Malformed(e.to_string()))?;
            let action = ow.put_action(&name, put, flag("overwrite")).await?;
            Ok(json_response(StatusCode::OK, &action.to_json(true)))
        }
        (&Method::DELETE, ["namespaces", _, "actions", name]) => {
            let action = ow.delete_action(name).await?;
            Ok(json_response(StatusCode::OK, &action.to_json(false)))
        }
        (&Method::POST, ["namespaces", _, "actions", name]) => {
            let name = name.to_string();
            let (blocking, result_only) = (flag("blocking"), flag("result"));
            let wait = query
                .iter()
                .find(|(k, _)| k == "timeout")
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .map_or(BLOCKING_WAIT, |ms| {
                    Duration::from_millis(ms).min(BLOCKING_WAIT)
                });
            let body = read_body(req, MAX_INVOKE_BODY_BYTES).await?;
            let params = parameters(&body)?;
            invoke(ow, &name, params, blocking, result_only, wait).await
        }
        (&Method::GET, ["namespaces", _, "activations"] | ["namespaces", _, "activations", ""]) => {
            let q = ListQuery::parse(&query, "activations")?;
            if q.count {
                let all = ListQuery {
                    skip: 0,
                    limit: usize::MAX,
                    ..q.clone()
                };
                let n = ow.activations.list(&all).len();
                return Ok(json_response(StatusCode::OK, &json!({ "activations": n })));
            }
            let list: Vec<Value> = ow
                .activations
                .list(&q)
                .iter()
                .map(|a| if q.docs { a.to_json() } else { a.summary() })
                .collect();
            Ok(json_response(StatusCode::OK, &Value::Array(list)))
        }
        (&Method::GET, ["namespaces", _, "activations", id]) => {
            let a = ow.activations.get(id).ok_or(WhiskError::NotFound)?;
            Ok(json_response(StatusCode::OK, &a.to_json()))
        }
        (&Method::GET, ["namespaces", _, "activations", id, "logs"]) => {
            let a = ow.activations.get(id).ok_or(WhiskError::NotFound)?;
            Ok(json_response(StatusCode::OK, &json!({ "logs": a.logs })))
        }
        (&Method::GET, ["namespaces", _, "activations", id, "result"]) => {
            let a = ow.activations.get(id).ok_or(WhiskError::NotFound)?;
            Ok(json_response(StatusCode::OK, &a.response.to_json()))
        }
        (&Method::GET, ["namespaces", _, "triggers"] | ["namespaces", _, "triggers", ""]) => {
            let q = ListQuery::parse(&query, "triggers")?;
            let list: Vec<Value> = ow
                .triggers()
                .iter()
                .skip(q.skip)
                .take(q.limit)
                .map(|t| json!(**t))
                .collect();
            Ok(json_response(StatusCode::OK, &Value::Array(list)))
        }
        (&Method::GET, ["namespaces", _, "triggers", name]) => {
            let trigger = ow.trigger(name).ok_or(WhiskError::NotFound)?;
            Ok(json_response(StatusCode::OK, &json!(*trigger)))
        }
        (&Method::PUT, ["namespaces", _, "triggers", name]) => {
            let name = name.to_string();
            let body = read_body(req, MAX_INVOKE_BODY_BYTES).await?;
            let put: TriggerPut = if body.iter().all(u8::is_ascii_whitespace) {
                TriggerPut::default()
            } else {
                serde_json::from_slice(&body).map_err(|e| WhiskError::Malformed(e.to_string()))?
            };
            let trigger = ow.put_trigger(&name, put, flag("overwrite")).await?;
            Ok(json_response(StatusCode::OK, &json!(*trigger)))
        }
        (&Method::DELETE, ["namespaces", _, "triggers", name]) => {
            let trigger = ow.delete_trigger(name).await?;
            Ok(json_response(StatusCode::OK, &json!(*trigger)))
        }
        (&Method::POST, ["namespaces", _, "triggers", name]) => {
            let name = name.to_string();
            let body = read_body(req, MAX_INVOKE_BODY_BYTES).await?;
            let params = parameters(&body)?;
            let trigger = ow.trigger(&name).ok_or(WhiskError::NotFound)?;
            Ok(match ow.fire(&trigger, params).await {
                Some(id) => json_response(StatusCode::ACCEPTED, &json!({ "activationId": id })),
                None => {
                    let mut r = json_response(StatusCode::NO_CONTENT, &Value::Null);
                    *r.body_mut() = http_body_util::Full::new(Bytes::new());
                    r.headers_mut().remove("content-type");
                    r
                }
            })
        }
        (&Method::GET, ["namespaces", _, "rules"] | ["namespaces", _, "rules", ""]) => {
            let q = ListQuery::parse(&query, "rules")?;
            let list: Vec<Value> = ow
                .rules()
                .iter()
                .skip(q.skip)
                .take(q.limit)
                .map(|r| json!(**r))
                .collect();
            Ok(json_response(StatusCode::OK, &Value::Array(list)))
        }
        (&Method::GET, ["namespaces", _, "rules", name]) => {
            let rule = ow.rule(name).ok_or(WhiskError::NotFound)?;
            Ok(json_response(StatusCode::OK, &json!(*rule)))
        }
        (&Method::PUT, ["namespaces", _, "rules", name]) => {
            let name = name.to_string();
            let body = read_body(req, MAX_INVOKE_BODY_BYTES).await?;
            let put: RulePut =
                serde_json::from_slice(&body).map_err(|e| WhiskError::Malformed(e.to_string()))?;
            let rule = ow.put_rule(&name, put, flag("overwrite")).await?;
            Ok(json_response(StatusCode::OK, &json!(*rule)))
        }
        (&Method::POST, ["namespaces", _, "rules", name]) => {
            let name = name.to_string();
            let body = read_body(req, MAX_INVOKE_BODY_BYTES).await?;
            let put: RulePut =
                serde_json::from_slice(&body).map_err(|e| WhiskError::Malformed(e.to_string()))?;
            let status = put.status.ok_or_else(|| {
                WhiskError::Malformed("the body must give the rule's status".into())
            })?;
            ow.set_rule_status(&name, &status).await?;
            Ok(json_response(StatusCode::OK, &json!({})))
        }
        (&Method::DELETE, ["namespaces", _, "rules", name]) => {
            let rule = ow.delete_rule(name).await?;
            Ok(json_response(StatusCode::OK, &json!(*rule)))
        }
        (_, ["namespaces", _, "actions" | "activations" | "triggers" | "rules", ..]) => {
            Err(WhiskError::MethodNotAllowed)
        }
        _ => Err(WhiskError::NotFound),
    }
}

/// Runs the action; a blocking caller waits up to `wait` for the record (or its result).
async fn invoke(
    ow: &Arc<OpenWhisk>,
    name: &str,
    params: Map<String, Value>,
    blocking: bool,
    result_only: bool,
    wait: Duration,
) -> Result<Response<Body>, WhiskError> {
    let action = ow.action(name).ok_or(WhiskError::NotFound)?;
    let id = super::new_activation_id();
    let activation_id = id.simple().to_string();
    let accepted = || {
        let mut r = json_response(
            StatusCode::ACCEPTED,
            &json!({ "activationId": activation_id }),
        );
        set_activation_header(&mut r, &activation_id);
        r
    };
    // A non-blocking activation of a code action is stored before it is acknowledged, and
    // runs (and is recorded) after a restart if the host stops first.
    if !blocking && !matches!(action.kind(), Ok(super::Kind::Sequence)) {
        ow.enqueue(&action, params, id).await?;
        return Ok(accepted());
    }
    // The activation runs to its end whether or not the caller still waits for it.
    let run = tokio::spawn({
        let ow = ow.clone();
        let name = name.to_owned();
        async move {
            let outcome = ow.activate(action, params, id).await;
            if let Err(e) = &outcome {
                tracing::warn!(action = %name, error = %e, "activation refused");
            }
            outcome
        }
    });
    if !blocking {
        return Ok(accepted());
    }
    let activation = match tokio::time::timeout(wait, run).await {
        Err(_) => return Ok(accepted()),
        Ok(Err(e)) => return Err(WhiskError::Internal(format!("the activation failed: {e}"))),
        Ok(Ok(outcome)) => outcome?,
    };
    let status = match activation.response.outcome {
        Outcome::Success => StatusCode::OK,
        Outcome::ApplicationError | Outcome::DeveloperError => StatusCode::BAD_GATEWAY,
        Outcome::WhiskError => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = if result_only {
        activation.response.result.clone()
    } else {
        activation.to_json()
    };
    let mut r = json_response(status, &body);
    set_activation_header(&mut r, &activation_id);
    Ok(r)
}

/// An invoke's body: a JSON object, or nothing.
pub(super) fn parameters(body: &[u8]) -> Result<Map<String, Value>, WhiskError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(params)) => Ok(params),
        Ok(_) => Err(WhiskError::Malformed(
            "the parameters must be a JSON object".into(),
        )),
        Err(e) => Err(WhiskError::Malformed(e.to_string())),
    }
}

/// The presented Basic credentials must be the host's OpenWhisk key.
fn authenticate(req: &Request<Incoming>, ow: &OpenWhisk) -> Result<(), WhiskError> {
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .ok_or(WhiskError::NoCredentials)?;
    let presented = header
        .to_str()
        .ok()
        .and_then(basic_credentials)
        .ok_or(WhiskError::BadCredentials)?;
    if ow.key().matches(&presented) {
        Ok(())
    } else {
        Err(WhiskError::BadCredentials)
    }
}

pub(super) fn not_from_a_browser(req: &Request<Incoming>) -> Result<(), WhiskError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(origin) = header("origin") {
        return Err(WhiskError::Refused(format!(
            "a request from a web page (Origin {origin}) is refused: the API takes no cross-site requests"
        )));
    }
    if let Some(site) = header("sec-fetch-site").filter(|s| *s != "none" && *s != "same-origin") {
        return Err(WhiskError::Refused(format!(
            "a {site} request from a browser is refused"
        )));
    }
    Ok(())
}

/// The one place OpenWhisk API errors become HTTP: status, OpenWhisk's body, and the Basic
/// challenge on a 401.
fn error_response(e: &WhiskError, transaction: &str) -> Response<Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_response(status, &e.body(transaction));
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            "www-authenticate",
            http::HeaderValue::from_static("Basic realm=\"whisk rest service\""),
        );
    }
    r
}
