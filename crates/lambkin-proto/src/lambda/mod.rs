//! The AWS Lambda APIs Lambkin serves: Invoke, management and the per-instance Runtime API.

pub mod error;
pub mod function;
pub mod invoke;
pub mod layer;
pub mod management;
pub mod paging;
pub mod runtime_api;
pub mod sigv4;
pub mod stream;
pub mod telemetry;
pub mod url;

/// Largest synchronous request payload the Invoke API accepts (6 MiB, as AWS Lambda).
pub const MAX_SYNC_REQUEST_BYTES: usize = 6 * 1024 * 1024;
/// Largest asynchronous (`Event`) request payload (1 MiB).
pub const MAX_ASYNC_REQUEST_BYTES: usize = 1024 * 1024;
/// Largest function response, as the Runtime API enforces it (6 MiB + 100 bytes, the value AWS
/// names in `Function.ResponseSizeTooLarge`).
pub const MAX_RESPONSE_BYTES: usize = 6_291_556;
