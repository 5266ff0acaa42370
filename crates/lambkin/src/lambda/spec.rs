//! What an instance of a function needs to start, frozen per configuration generation: a
//! leaf that the function actor, its instances and the sandbox all read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lambkin_proto::lambda::function::{FunctionConfig, FunctionName};

use super::runtimes::Launch;
use crate::logfile::LogFile;

/// Everything an instance needs to start, frozen per configuration generation.
#[derive(Debug)]
pub struct FunctionSpec {
    pub name: FunctionName,
    pub arn: Arc<str>,
    pub config: FunctionConfig,
    pub code_dir: PathBuf,
    pub launch: Launch,
    pub log: Arc<LogFile>,
    pub region: String,
    pub init_timeout: Duration,
    pub shutdown_grace: Duration,
    /// The host's root, marked on every instance process (see `crate::orphans`).
    pub host_root: PathBuf,
    /// Variables a Lambda component gives its function: its IPC token (`SVCUID`,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`), the IPC socket and the device's variables.
    /// Empty for a function created through the management API: it belongs to no
    /// component, so it has no principal to use IPC as.
    pub component_env: BTreeMap<String, String>,
    /// The user the instances run as: a Lambda component's `runWith`, an API function's the
    /// default user; `None`: the host's user. The plain path drops to it before exec, the
    /// sandbox init after mounting.
    pub run_as: Option<crate::users::RunAs>,
    /// The component's control group (`systemResourceLimits`), which a plain (NoContainer)
    /// instance joins before exec; a containerized one has its own group.
    pub cgroup: Option<crate::cgroup::Cgroup>,
    /// The sandbox init waiting for this configuration's next instance, if any.
    pub zygote: super::zygote::ZygoteSlot,
    /// Where the host places instances (one for every function).
    pub placement: Arc<super::placement::Placement>,
    /// The function's layers, when it has any.
    pub layers: Option<super::layers::LayerView>,
    /// The external extensions its layers bring (`/opt/extensions/NAME`), started with each
    /// instance's runtime.
    pub extensions: Vec<String>,
    /// The function's counters (kept across configurations); `None` with `[metrics]
    /// enabled = false`.
    pub metrics: Option<Arc<crate::metrics::counters::FunctionMetrics>>,
    /// Where its invocations may go instead of here (`Greengrass.Delegation`); `None`: `local`.
    pub delegation: Option<super::delegate::Delegation>,
}
