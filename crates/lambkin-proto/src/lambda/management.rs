//! JSON shapes of the Lambda management API (`lambda-2015-03-31`) that Lambkin serves, so the
//! AWS CLI and SDKs can define functions with `--endpoint-url`. Requests refuse unknown keys;
//! keys that only make sense in the cloud (`Role`, `Tags`, `Publish`…) are accepted and kept
//! or ignored as noted. `Greengrass` is Lambkin's extension for the Greengrass settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::function::{FunctionName, GreengrassPatch, GreengrassSettings};
use super::layer::FunctionLayer;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Environment {
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct FunctionCode {
    /// Base64 of the zip, as the SDKs send it.
    pub zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    pub s3_bucket: Option<String>,
    #[serde(rename = "S3Key")]
    pub s3_key: Option<String>,
    #[serde(rename = "S3ObjectVersion")]
    pub s3_object_version: Option<String>,
    pub image_uri: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateFunctionRequest {
    pub function_name: FunctionName,
    pub runtime: Option<String>,
    pub role: Option<String>,
    pub handler: Option<String>,
    pub code: FunctionCode,
    pub description: Option<String>,
    pub timeout: Option<u32>,
    /// The timeout in milliseconds, finer than `Timeout` (which must still be given, its
    /// seconds rounded up): set by the host's own callers (an OpenWhisk action's limit),
    /// never read from the wire.
    #[serde(skip)]
    pub timeout_ms: Option<u32>,
    pub memory_size: Option<u32>,
    pub environment: Option<Environment>,
    pub greengrass: Option<GreengrassPatch>,
    /// Layer version ARNs, laid over `/opt` in this order.
    pub layers: Option<Vec<String>>,
    /// Only `Zip` exists on a device.
    pub package_type: Option<String>,
    // Accepted and ignored: they describe the cloud, not the device.
    pub publish: Option<bool>,
    pub tags: Option<BTreeMap<String, String>>,
    pub architectures: Option<Vec<String>>,
    pub tracing_config: Option<serde_json::Value>,
    pub logging_config: Option<serde_json::Value>,
    pub ephemeral_storage: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateFunctionCodeRequest {
    pub zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    pub s3_bucket: Option<String>,
    #[serde(rename = "S3Key")]
    pub s3_key: Option<String>,
    #[serde(rename = "S3ObjectVersion")]
    pub s3_object_version: Option<String>,
    pub image_uri: Option<String>,
    pub publish: Option<bool>,
    pub dry_run: Option<bool>,
    pub revision_id: Option<String>,
    pub architectures: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateFunctionConfigurationRequest {
    pub runtime: Option<String>,
    pub role: Option<String>,
    pub handler: Option<String>,
    pub description: Option<String>,
    pub timeout: Option<u32>,
    /// The timeout in milliseconds, finer than `Timeout` (which must still be given, its
    /// seconds rounded up): set by the host's own callers (an OpenWhisk action's limit),
    /// never read from the wire.
    #[serde(skip)]
    pub timeout_ms: Option<u32>,
    pub memory_size: Option<u32>,
    pub environment: Option<Environment>,
    pub greengrass: Option<GreengrassPatch>,
    /// Layer version ARNs replacing the function's (an empty list removes them all).
    pub layers: Option<Vec<String>>,
    pub revision_id: Option<String>,
    pub tracing_config: Option<serde_json::Value>,
    pub logging_config: Option<serde_json::Value>,
    pub ephemeral_storage: Option<serde_json::Value>,
}

/// `FunctionConfiguration` as GetFunction, ListFunctions and the writes return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionConfiguration {
    pub function_name: String,
    pub function_arn: String,
    pub runtime: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    pub code_size: u64,
    pub description: String,
    pub timeout: u32,
    pub memory_size: u32,
    pub last_modified: String,
    pub code_sha256: String,
    pub version: String,
    pub environment: Environment,
    pub state: String,
    pub last_update_status: String,
    pub package_type: String,
    pub architectures: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<FunctionLayer>,
    pub greengrass: GreengrassSettings,
}
