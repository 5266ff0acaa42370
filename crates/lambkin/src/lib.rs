//! Lambkin: runs AWS Lambda functions, AWS IoT Greengrass V2 components and OpenWhisk actions
//! on a device, as one binary.
//!
//! # Layout
//! The linked modules are public: what the binary (`main.rs`), the integration tests and the
//! benches use. The rest are the crate's own.
//! - [`host`]: wires the services together and stops them in order.
//! - [`cli`]: the `lambkin` commands that talk to a running host.
//! - [`top`]: `lambkin top`, the device at a glance in a terminal, from `/metrics`.
//! - [`lambda`]: functions, their instances (processes with a Runtime API each), scheduling,
//!   layers, extensions and telemetry, GreengrassContainer sandboxes.
//! - [`http`]: the HTTP/1.1 listener loop the API and the token exchange service share.
//! - [`mqtt`]: the MQTT broker connection and the durable spool of messages bound for it.
//! - [`mqtt_invoke`]: functions invoked over MQTT 5 request/response.
//! - [`remote`]: remote targets: Lambda-compatible Invoke endpoints that functions delegate
//!   invocations to, SigV4-signed.
//! - [`tes`]: the token exchange service: AWS credentials for components over loopback HTTP.
//! - [`pubsub`]: local publish/subscribe: topic filters, the router, per-subscriber queues.
//! - [`cgroup`]: memory, process and CPU limits, and tracking groups (cgroup v1 or v2).
//! - [`layout`]: the root directory's layout.
//! - [`install`]: `lambkin install`/`uninstall`: the default user, the root and a systemd unit.
//! - [`logfile`]: per-component and per-function log files; `logwatch`: waiting for one to
//!   change, for those who follow it.
//! - [`journal`]: the host's stderr as a systemd journal stream (levels as `<N>` prefixes).
//! - [`keys`]: the host's own keys and tokens.
//! - [`metrics`]: `/metrics`: the counters the host's paths update (atomics only), and the
//!   families a scrape gathers from them and from the services' states.
//! - `api`: the HTTP listener: AWS Invoke (streamed too), management, layer and function URL
//!   APIs, function URLs themselves, `/lambkin/v1`, the web console (`/console/`), and the
//!   OpenWhisk API's edge.
//! - `components`: Greengrass components: recipes planned into deployments, the lifecycle state
//!   machine, supervisors, the status board and dependency rules, Lambda components.
//! - [`ipc`]: the Greengrass IPC socket that components reach with the Device SDK v2.
//! - `openwhisk`: OpenWhisk actions (`/api/v1`) as Lambda functions, their activations.
//! - `backup`: `lambkin backup` and `restore`: a root as one archive, the databases as copies.
//! - `store`: durable state in SQLite (functions, accepted `Event` invocations, components,
//!   deployments, configuration changes).
//! - [`config`]: `config.toml`, validated before anything starts.
//! - `child`: the one setup of every child process; `child_env`: the environment it begins with.
//! - `pem`: the PEM certificates, keys and CA roots of the host's TLS clients.
//! - [`orphans`]: ending what a previous run of the host left running.
//! - `users`: the users components and functions run as, their work directories and code.
//! - `secret`: every key, token and session from the operating system's random source.
//! - `timestamp`: UTC formatting for logs and API fields; `failpoint`: crash points for tests.

pub(crate) mod api;
pub(crate) mod backup;
pub mod cgroup;
pub(crate) mod child;
pub(crate) mod child_env;
pub mod cli;
pub(crate) mod components;
pub mod config;
pub(crate) mod failpoint;
pub mod host;
pub mod http;
pub mod install;
pub mod ipc;
pub mod journal;
pub mod keys;
pub mod lambda;
pub mod layout;
pub mod logfile;
pub(crate) mod logwatch;
pub mod metrics;
pub mod mqtt;
pub mod mqtt_invoke;
pub(crate) mod openwhisk;
pub mod orphans;
pub(crate) mod pem;
pub mod pubsub;
pub mod remote;
pub(crate) mod schema;
pub(crate) mod secret;
pub(crate) mod store;
pub mod tes;
pub(crate) mod timestamp;
pub mod top;
pub(crate) mod users;
