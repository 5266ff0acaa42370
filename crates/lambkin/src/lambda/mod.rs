//! The Lambda function host: functions, their instances and the invocations they run.
//!
//! - [`registry`]: the set of functions (create, update, delete, look up), persisted.
//! - [`spec`]: what an instance needs to start (a leaf the others read).
//! - [`function`]: one actor per function, driving a [`scheduler`] and owning its instances.
//! - [`scheduler`]: the sans-I/O rules of on-demand and pinned lifecycles.
//! - [`instance`]: one actor per runtime process and its Runtime API server.
//! - `deadline`: the one timer an instance's and a function's loop wait on.
//! - [`delegate`]: invocations sent to a remote target under the function's delegation policy.
//! - [`invocation`]: an invocation in flight and how its outcome is delivered.
//! - [`code`]: unpacking and checking a function's zip.
//! - [`layers`]: published layer versions, and a function's layers merged for `/opt`.
//! - [`extensions`]: the Extensions API's state on an instance, and starting the external ones.
//! - [`runtimes`]: how a runtime id becomes a command, and the runtime clients we ship.
//! - [`sandbox`]: GreengrassContainer isolation: config mapping, the sandbox init.
//! - [`instance_cgroup`]: a containerised instance's control group.
//! - [`zygote`]: sandbox inits started ahead of need, and the slot a configuration keeps one in.
//! - [`peer`]: who is at the other end of a Runtime API connection (the runtime, or not).
//! - [`placement`]: which CPU an instance answering short invocations one at a time runs on.
//! - [`logs`]: the function log and the START/END/REPORT frame.
//! - [`telemetry`]: Telemetry and Logs API subscriptions, and delivering their records.

pub mod code;
pub(crate) mod deadline;
pub mod delegate;
pub mod extensions;
pub mod function;
pub mod instance;
pub mod instance_cgroup;
pub mod invocation;
pub mod layers;
pub mod logs;
pub mod peer;
pub mod placement;
pub mod registry;
pub mod runtimes;
pub mod sandbox;
pub mod scheduler;
pub mod spec;
pub mod telemetry;
pub mod zygote;
