//! Function URL configurations: CreateFunctionUrlConfig, GetFunctionUrlConfig,
//! UpdateFunctionUrlConfig, DeleteFunctionUrlConfig (`/2021-10-31/functions/NAME/url`) and
//! ListFunctionUrlConfigs (`…/urls`), on the store `url_store` keeps.

use std::time::SystemTime;

use hyper::{Response, StatusCode};

use lambkin_proto::lambda::error::ApiError;
use lambkin_proto::lambda::invoke::{FunctionRef, LATEST};
use lambkin_proto::lambda::paging::Paging;
use lambkin_proto::lambda::url::{
    AuthType, CreateUrlRequest, InvokeMode, UpdateUrlRequest, UrlConfig,
};

use super::url_store::FunctionUrl;
use super::{json_response, ApiState, Body};

fn now() -> String {
    crate::timestamp::iso8601_millis(SystemTime::now())
}

/// The function a path names, which must exist. A `Qualifier` (in the query or after the
/// name) is an alias name, as AWS takes it (not a version number); `$LATEST` names the
/// unqualified URL where AWS's model allows it (`latest`: Get, Update and Delete, not
/// Create). This host has no aliases, so a well-formed alias names one that does not exist.
fn function(
    state: &ApiState,
    name: &str,
    query: Option<&str>,
    latest: bool,
) -> Result<String, ApiError> {
    let qualifier = super::layers::query_value(query, "Qualifier");
    let target = FunctionRef::parse(name, qualifier.as_deref())?;
    let arn = state.registry.arn(target.name.as_str());
    match target.qualifier.as_deref() {
        Some(LATEST) if latest => {}
        Some(q) => {
            alias_name(q)?;
            return Err(ApiError::ResourceNotFound(format!(
                "Alias not found: {arn}:{q} (this host has no aliases: a function URL is the function's own, without a Qualifier)"
            )));
        }
        None => {}
    }
    if state.registry.lookup(&target.name).is_none() {
        return Err(ApiError::ResourceNotFound(arn));
    }
    Ok(target.name.to_string())
}

/// A `Qualifier` as AWS's model constrains it for function URLs: an alias name, 1 to 128
/// letters, digits, `-` and `_`, not all digits (a version).
fn alias_name(q: &str) -> Result<(), ApiError> {
    let well_formed = (1..=128).contains(&q.len())
        && q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !q.bytes().all(|b| b.is_ascii_digit());
    if well_formed {
        return Ok(());
    }
    Err(ApiError::Validation(format!(
        "1 validation error detected: Value '{q}' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$) (a function URL's Qualifier is an alias name, or $LATEST where the operation allows it: leave it out for the function's own URL)"
    )))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], operation: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::InvalidParameterValue(format!("{operation}: invalid request body: {e}"))
    })
}

fn answer(status: StatusCode, config: &UrlConfig) -> Result<Response<Body>, ApiError> {
    let value = serde_json::to_value(config).map_err(|e| ApiError::Service(e.to_string()))?;
    Ok(json_response(status, &value))
}

fn warn_if_public(function: &str, config: &UrlConfig) {
    if config.auth_type == AuthType::None {
        tracing::warn!(
            function,
            url = %config.function_url,
            "function URL with AuthType NONE: anyone who can reach the listener may invoke it"
        );
    }
}

pub fn create(
    state: &ApiState,
    name: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let function = function(state, name, query, false)?;
    let request: CreateUrlRequest = parse(body, "CreateFunctionUrlConfig")?;
    let auth_type = AuthType::parse(&request.auth_type)?;
    let invoke_mode = request
        .invoke_mode
        .as_deref()
        .map_or(Ok(InvokeMode::Buffered), InvokeMode::parse)?;
    if let Some(cors) = &request.cors {
        cors.validate()?;
    }
    let urls = &state.urls;
    let mut all = urls.lock();
    if all.contains_key(&function) {
        return Err(ApiError::ResourceConflict(format!(
            "Failed to create function url config for [functionArn = {}]. Error message:  FunctionUrlConfig exists for this Lambda function",
            state.registry.arn(&function)
        )));
    }
    let url_id = uuid::Uuid::new_v4().simple().to_string();
    let created = now();
    let config = UrlConfig {
        function_url: urls.function_url(&url_id),
        function_arn: state.registry.arn(&function),
        auth_type,
        cors: request.cors,
        creation_time: created.clone(),
        last_modified_time: created,
        invoke_mode,
    };
    let entry = FunctionUrl {
        function: function.clone(),
        url_id,
        config: config.clone(),
    };
    all.insert(function.clone(), entry);
    if let Err(e) = urls.save(&all) {
        all.remove(&function);
        return Err(e);
    }
    drop(all);
    warn_if_public(&function, &config);
    tracing::info!(function, url = %config.function_url, auth = ?config.auth_type, "function URL created");
    answer(StatusCode::CREATED, &config)
}

pub fn get(state: &ApiState, name: &str, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let function = function(state, name, query, true)?;
    let config = state
        .urls
        .lock()
        .get(&function)
        .map(|u| u.config.clone())
        .ok_or_else(|| no_url(state, &function))?;
    answer(StatusCode::OK, &config)
}

fn no_url(state: &ApiState, function: &str) -> ApiError {
    ApiError::ResourceNotFound(format!(
        "{}: the function has no URL configuration",
        state.registry.arn(function)
    ))
}

pub fn update(
    state: &ApiState,
    name: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let function = function(state, name, query, true)?;
    let request: UpdateUrlRequest = parse(body, "UpdateFunctionUrlConfig")?;
    let auth_type = request
        .auth_type
        .as_deref()
        .map(AuthType::parse)
        .transpose()?;
    let invoke_mode = request
        .invoke_mode
        .as_deref()
        .map(InvokeMode::parse)
        .transpose()?;
    if let Some(cors) = &request.cors {
        cors.validate()?;
    }
    let urls = &state.urls;
    let mut all = urls.lock();
    let Some(entry) = all.get_mut(&function) else {
        return Err(no_url(state, &function));
    };
    let before = entry.clone();
    if let Some(auth_type) = auth_type {
        entry.config.auth_type = auth_type;
    }
    if let Some(invoke_mode) = invoke_mode {
        entry.config.invoke_mode = invoke_mode;
    }
    if let Some(cors) = request.cors {
        entry.config.cors = Some(cors);
    }
    entry.config.last_modified_time = now();
    let config = entry.config.clone();
    if let Err(e) = urls.save(&all) {
        all.insert(function.clone(), before);
        return Err(e);
    }
    drop(all);
    warn_if_public(&function, &config);
    answer(StatusCode::OK, &config)
}

pub fn delete(
    state: &ApiState,
    name: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let function = function(state, name, query, true)?;
    let urls = &state.urls;
    let mut all = urls.lock();
    let Some(before) = all.remove(&function) else {
        return Err(no_url(state, &function));
    };
    if let Err(e) = urls.save(&all) {
        all.insert(function, before);
        return Err(e);
    }
    let mut r = Response::new(http_body_util::Full::new(bytes::Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

/// At most one configuration per function (this host has no aliases), paged as AWS pages
/// them: `MaxItems` 1 to 50, `Marker` from a previous page's `NextMarker`.
pub fn list(state: &ApiState, name: &str, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let paging = Paging::parse(
        "ListFunctionUrlConfigs",
        super::layers::query_value(query, "Marker").as_deref(),
        super::layers::query_value(query, "MaxItems").as_deref(),
        MAX_URL_CONFIGS_PER_PAGE,
    )?;
    let function = function(state, name, None, false)?;
    let all: Vec<(String, UrlConfig)> = state
        .urls
        .lock()
        .get(&function)
        .map(|u| (u.function.clone(), u.config.clone()))
        .into_iter()
        .collect();
    let (configs, next) = paging.take(all);
    let mut value = serde_json::json!({ "FunctionUrlConfigs": configs });
    if let Some(next) = next {
        value["NextMarker"] = next.into();
    }
    Ok(json_response(StatusCode::OK, &value))
}

/// AWS's bound for ListFunctionUrlConfigs' `MaxItems`.
const MAX_URL_CONFIGS_PER_PAGE: usize = 50;
