//! The layer operations of the Lambda API (`/2018-10-31/layers…`): PublishLayerVersion,
//! GetLayerVersion, GetLayerVersionByArn, ListLayers, ListLayerVersions, DeleteLayerVersion.

use hyper::{Response, StatusCode};

use lambkin_proto::lambda::error::ApiError;
use lambkin_proto::lambda::layer::{
    LayerError, LayerFilter, LayerName, LayerVersionNumber, Page, PublishLayerVersionRequest,
};

use super::{json_response, ApiState, Body};
use crate::lambda::code::CodeError;
use crate::lambda::layers::LayersError;

/// The one place layer errors become API errors (the management API's function errors
/// carrying one come here too).
pub fn api_error(e: LayersError) -> ApiError {
    match e {
        LayersError::Invalid(LayerError::InvalidName(_) | LayerError::InvalidVersionArn(_)) => {
            ApiError::Validation(e.to_string())
        }
        LayersError::Invalid(LayerError::TooMany | LayerError::SameLayerTwice(..))
        | LayersError::UnknownVersion(_)
        | LayersError::Unsupported(_)
        | LayersError::TooLarge { .. } => ApiError::InvalidParameterValue(e.to_string()),
        LayersError::NotFound => ApiError::LayerVersionNotFound,
        LayersError::Code(
            CodeError::NotBase64(_)
            | CodeError::BadZip(_)
            | CodeError::UnsafePath(_)
            | CodeError::MissingEntryPoint(_)
            | CodeError::TooLarge(_),
        ) => ApiError::InvalidParameterValue(e.to_string()),
        LayersError::Code(CodeError::Io(_)) | LayersError::Io(_) => {
            ApiError::Service(e.to_string())
        }
    }
}

fn name(value: &str) -> Result<LayerName, ApiError> {
    LayerName::parse(value).map_err(|e| api_error(e.into()))
}

fn version(value: &str) -> Result<LayerVersionNumber, ApiError> {
    lambkin_proto::lambda::layer::parse_version(value).ok_or_else(|| {
        ApiError::Validation(format!(
            "1 validation error detected: Value '{value}' at 'versionNumber' failed to satisfy constraint: Member must be a number of at least 1"
        ))
    })
}

fn to_json<T: serde::Serialize>(status: StatusCode, value: &T) -> Result<Response<Body>, ApiError> {
    let value = serde_json::to_value(value).map_err(|e| ApiError::Service(e.to_string()))?;
    Ok(json_response(status, &value))
}

/// The value of `key` in a query string, percent-decoded.
pub fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (super::percent_decode(k) == key)
            .then(|| super::percent_decode(&v.replace('+', " ")).into_owned())
    })
}

fn filter(query: Option<&str>) -> LayerFilter {
    LayerFilter {
        compatible_runtime: query_value(query, "CompatibleRuntime"),
        compatible_architecture: query_value(query, "CompatibleArchitecture"),
    }
}

pub async fn publish(
    body: &[u8],
    state: &ApiState,
    layer: &str,
) -> Result<Response<Body>, ApiError> {
    let layer = name(layer)?;
    let request: PublishLayerVersionRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::InvalidParameterValue(format!("PublishLayerVersion: invalid request body: {e}"))
    })?;
    let published = state
        .registry
        .layers()
        .publish(&layer, request)
        .await
        .map_err(api_error)?;
    to_json(StatusCode::CREATED, &published)
}

pub fn get(state: &ApiState, layer: &str, number: &str) -> Result<Response<Body>, ApiError> {
    let (layer, number) = (name(layer)?, version(number)?);
    let found = state
        .registry
        .layers()
        .get(&layer, number)
        .map_err(api_error)?;
    to_json(StatusCode::OK, &found)
}

pub fn get_by_arn(state: &ApiState, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let arn = query_value(query, "Arn").unwrap_or_default();
    let found = state
        .registry
        .layers()
        .get_by_arn(&arn)
        .map_err(api_error)?;
    to_json(StatusCode::OK, &found)
}

fn page(query: Option<&str>) -> Result<Page, ApiError> {
    Page::parse(
        query_value(query, "Marker"),
        query_value(query, "MaxItems").as_deref(),
    )
    .map_err(ApiError::Validation)
}

/// A list and, when there is more, `NextMarker`.
fn listed<T: serde::Serialize>(
    key: &str,
    (items, next): (Vec<T>, Option<String>),
) -> Result<Response<Body>, ApiError> {
    let mut body = serde_json::json!({ key: items });
    if let Some(next) = next {
        body["NextMarker"] = next.into();
    }
    to_json(StatusCode::OK, &body)
}

pub fn list(state: &ApiState, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let page = page(query)?;
    listed(
        "Layers",
        state.registry.layers().list(&filter(query), &page),
    )
}

pub fn list_versions(
    state: &ApiState,
    layer: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let layer = name(layer)?;
    let page = page(query)?;
    listed(
        "LayerVersions",
        state
            .registry
            .layers()
            .list_versions(&layer, &filter(query), &page),
    )
}

pub async fn delete(
    state: &ApiState,
    layer: &str,
    number: &str,
) -> Result<Response<Body>, ApiError> {
    let (layer, number) = (name(layer)?, version(number)?);
    state
        .registry
        .layers()
        .delete(&layer, number)
        .await
        .map_err(api_error)?;
    let mut r = Response::new(http_body_util::Full::new(bytes::Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}
