//! The Lambda management API (`/2015-03-31/functions…`), so the AWS CLI and SDKs define
//! functions here as they would in the cloud.

use hyper::{Response, StatusCode};
use serde::de::DeserializeOwned;

use lambkin_proto::lambda::error::ApiError;
use lambkin_proto::lambda::function::FunctionError;
use lambkin_proto::lambda::invoke::FunctionRef;
use lambkin_proto::lambda::management::{
    CreateFunctionRequest, UpdateFunctionCodeRequest, UpdateFunctionConfigurationRequest,
};
use lambkin_proto::lambda::paging::Paging;

use super::{json_response, ApiState, Body};
use crate::lambda::code::CodeError;
use crate::lambda::registry::ManageError;

/// The one place management errors become API errors.
fn api_error(e: ManageError) -> ApiError {
    match e {
        ManageError::NotFound(arn) => ApiError::ResourceNotFound(arn),
        ManageError::AlreadyExists(_) | ManageError::OwnedByComponent(_) => {
            ApiError::ResourceConflict(e.to_string())
        }
        ManageError::Invalid(
            FunctionError::InvalidName(_)
            | FunctionError::UnsupportedRuntime(_)
            | FunctionError::InvalidConfig(_),
        )
        | ManageError::Unsupported(_)
        | ManageError::Reserved(_)
        | ManageError::UnknownTarget { .. }
        | ManageError::Runtime(_) => ApiError::InvalidParameterValue(e.to_string()),
        ManageError::Code(
            CodeError::NotBase64(_)
            | CodeError::BadZip(_)
            | CodeError::UnsafePath(_)
            | CodeError::MissingEntryPoint(_)
            | CodeError::TooLarge(_),
        ) => ApiError::InvalidParameterValue(e.to_string()),
        ManageError::Code(CodeError::Io(io)) if io.kind() == std::io::ErrorKind::StorageFull => {
            ApiError::CodeStorageExceeded(format!(
                "the device's disk is full: cannot store the function's code ({io})"
            ))
        }
        ManageError::Code(CodeError::Io(_)) | ManageError::Store(_) | ManageError::Log(_) => {
            ApiError::Service(e.to_string())
        }
        ManageError::Layers(e) => super::layers::api_error(e),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8], operation: &'static str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::InvalidParameterValue(format!("{operation}: invalid request body: {e}"))
    })
}

fn target(
    state: &ApiState,
    name: &str,
) -> Result<lambkin_proto::lambda::function::FunctionName, ApiError> {
    FunctionRef::parse(name, None)
        .map(|r| r.name)
        .map_err(|_| ApiError::ResourceNotFound(state.registry.arn(name)))
}

fn to_json<T: serde::Serialize>(status: StatusCode, value: &T) -> Result<Response<Body>, ApiError> {
    let value = serde_json::to_value(value).map_err(|e| ApiError::Service(e.to_string()))?;
    Ok(json_response(status, &value))
}

pub async fn create(body: &[u8], state: &ApiState) -> Result<Response<Body>, ApiError> {
    let request: CreateFunctionRequest = parse(body, "CreateFunction")?;
    let config = state.registry.create(request).await.map_err(api_error)?;
    to_json(StatusCode::CREATED, &config)
}

/// ListFunctions, paged as AWS pages it (`MaxItems` 1 to 10,000, `Marker` from a previous
/// page's `NextMarker`). Without `MaxItems` every function is listed in one page (AWS stops at
/// 50): callers that never page still see them all.
pub fn list(state: &ApiState, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let paging = Paging::parse(
        "ListFunctions",
        super::layers::query_value(query, "Marker").as_deref(),
        super::layers::query_value(query, "MaxItems").as_deref(),
        MAX_FUNCTIONS_PER_PAGE,
    )?;
    let all = state
        .registry
        .list()
        .into_iter()
        .map(|f| (f.function_name.clone(), f));
    let (functions, next) = paging.take(all);
    let mut body = serde_json::json!({ "Functions": functions });
    if let Some(next) = next {
        body["NextMarker"] = next.into();
    }
    to_json(StatusCode::OK, &body)
}

/// AWS's bound for ListFunctions' `MaxItems`.
const MAX_FUNCTIONS_PER_PAGE: usize = 10_000;

pub fn get(state: &ApiState, name: &str) -> Result<Response<Body>, ApiError> {
    let name = target(state, name)?;
    let (config, code_dir) = state.registry.get(&name).map_err(api_error)?;
    to_json(
        StatusCode::OK,
        &serde_json::json!({
            "Configuration": config,
            "Code": { "RepositoryType": "Local", "Location": format!("file://{}", code_dir.display()) },
            "Tags": {},
        }),
    )
}

pub fn get_configuration(state: &ApiState, name: &str) -> Result<Response<Body>, ApiError> {
    let name = target(state, name)?;
    let (config, _) = state.registry.get(&name).map_err(api_error)?;
    to_json(StatusCode::OK, &config)
}

pub async fn delete(state: &ApiState, name: &str) -> Result<Response<Body>, ApiError> {
    let name = target(state, name)?;
    state.registry.delete(&name).await.map_err(api_error)?;
    // A function's URL goes with it, as in Lambda.
    state.urls.function_deleted(name.as_str());
    let mut r = Response::new(http_body_util::Full::new(bytes::Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

pub async fn update_code(
    body: &[u8],
    state: &ApiState,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let name = target(state, name)?;
    let request: UpdateFunctionCodeRequest = parse(body, "UpdateFunctionCode")?;
    let config = state
        .registry
        .update_code(&name, request)
        .await
        .map_err(api_error)?;
    to_json(StatusCode::OK, &config)
}

pub async fn update_configuration(
    body: &[u8],
    state: &ApiState,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let name = target(state, name)?;
    let request: UpdateFunctionConfigurationRequest = parse(body, "UpdateFunctionConfiguration")?;
    let config = state
        .registry
        .update_configuration(&name, request)
        .await
        .map_err(api_error)?;
    to_json(StatusCode::OK, &config)
}
