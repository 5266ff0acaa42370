//! Greengrass components: lifecycles, deployments, supervision.
//!
//! - [`lifecycle`]: the per-component state machine (sans-I/O).

pub mod lifecycle;
