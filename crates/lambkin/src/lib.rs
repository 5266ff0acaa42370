//! Lambkin: runs AWS Lambda functions (and, later, AWS IoT Greengrass V2 components) on a
//! device, as one binary.
//!
//! # Layout
//! - [`host`]: wires the services together and stops them in order.
//! - [`api`]: the HTTP listener: AWS Invoke and management APIs, `/lambkin/v1`.
//! - [`lambda`]: functions, their instances (processes with a Runtime API each), scheduling.
//! - [`store`]: durable state in SQLite (functions, accepted `Event` invocations).
//! - [`config`]: `config.toml`, validated before anything starts.
//! - [`layout`]: the root directory's layout.
//! - [`logfile`]: per-component log files.
//! - [`cgroup`]: per-instance memory, process and CPU limits (cgroup v1 or v2).
//! - [`child_env`]: the environment every process the host starts begins with (an allow-list).
//! - [`orphans`]: ending what a previous run of the host left running.
//! - [`cli`]: the `lambkin` commands that talk to a running host.
//! - [`components`]: Greengrass components (lifecycle state machine so far).
//! - [`pubsub`]: local publish/subscribe: topic filters, the router, per-subscriber queues.
//! - [`ipc`]: the Greengrass IPC socket that components reach with the Device SDK v2.
//! - [`mqtt`]: the MQTT broker connection and the durable spool of messages bound for it.
//! - [`openwhisk`]: OpenWhisk actions (`/api/v1`) as Lambda functions, their activations.
//! - [`tes`]: the token exchange service: AWS credentials for components over loopback HTTP.
//! - [`timestamp`]: UTC formatting for logs and API fields.
//! - [`users`]: the users components and functions run as, their work directories and code.

pub mod api;
pub mod cgroup;
pub mod child;
pub mod child_env;
pub mod cli;
pub mod components;
pub mod config;
pub mod failpoint;
pub mod host;
pub mod http;
pub mod ipc;
pub mod keys;
pub mod lambda;
pub mod layout;
pub mod logfile;
pub mod mqtt;
pub mod openwhisk;
pub mod orphans;
pub mod pubsub;
pub mod store;
pub mod tes;
pub mod timestamp;
pub mod users;
