//! Greengrass components: lifecycles, deployments, supervision.
//!
//! - [`lifecycle`]: the per-component state machine (sans-I/O).
//! - [`supervisor`]: one actor per component, running its steps as processes.

pub mod lifecycle;
pub mod supervisor;
