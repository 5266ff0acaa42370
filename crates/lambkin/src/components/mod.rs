//! Greengrass components: lifecycles, deployments, supervision.
//!
//! - [`builtin`]: the components Lambkin provides itself.
//! - [`configs`]: the running components' configurations (and the keys only deployments may
//!   change), owned in one place, shared by the engine and IPC.
//! - [`containers`]: the Docker containers a component's `Run` started, stopped with it.
//! - [`deployment`]: planning a deployment (dependencies, versions, configuration, artifacts).
//! - [`engine`]: the actor that applies deployments and owns the running components.
//! - [`failure`]: why a deployment failed, typed, and the one mapping to what the device
//!   reports (message, Greengrass's detailed status, error stack and types).
//! - [`graph`]: who depends on whom (sans-I/O): when a held component starts, when a HARD
//!   dependent restarts.
//! - [`lifecycle`]: the per-component state machine (sans-I/O).
//! - [`supervisor`]: one actor per component, running its steps as processes.
//! - [`triggers`]: a Lambda component's `PUB_SUB` topics, invoking its function.
//! - [`updates`]: telling subscribed components of a deployment's update, which they may defer.

pub mod builtin;
pub mod configs;
pub mod containers;
pub mod deployment;
pub mod engine;
pub mod failure;
pub mod graph;
pub mod lifecycle;
pub mod status;
pub mod supervisor;
pub mod triggers;
pub mod updates;
