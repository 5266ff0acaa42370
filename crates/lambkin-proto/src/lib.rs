//! Lambkin's wire formats and documents: typed, validated values with no I/O and no async
//! runtime, so every decoder here can be unit-tested, property-tested and fuzzed alone.
//!
//! # Layout
//! - [`lambda::function`]: the function model (names, runtimes, settings with Greengrass defaults).
//! - [`lambda::invoke`]: the Invoke API's request parts (invocation type, log type, function refs).
//! - [`lambda::runtime_api`]: the Runtime API 2018-06-01 routes and headers.
//! - [`lambda::management`]: the Lambda management API's JSON shapes (CreateFunction and friends).
//! - [`lambda::error`]: every error the Lambda APIs answer, with its AWS code and HTTP status.
//! - [`recipe`]: Greengrass V2 component recipes (JSON/YAML), platform selection, variables,
//!   and a Lambda component's configuration as the function it defines ([`recipe::lambda`]).
//! - [`eventstream`]: AWS event-stream frames (prelude, headers, CRCs, limits) and their decoder.
//! - [`ipc`]: Greengrass IPC: the event-stream RPC session, operation shapes, errors, authorization.
//! - [`deployment`]: a deployment's outcome as Greengrass reports it (detailed status, error
//!   codes and types).
//! - [`metrics`]: the Prometheus text format and OpenMetrics: families encoded, samples read back.

pub mod calendar;
pub mod deployment;
pub mod eventstream;
pub mod ipc;
pub mod lambda;
pub mod metrics;
pub mod openwhisk;
pub mod recipe;
