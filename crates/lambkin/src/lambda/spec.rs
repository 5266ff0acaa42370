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
    /// What its instances wait for before starting their processes (open for all but the
    /// functions read from the store as the host starts).
    pub start_gate: StartGate,
}

/// A gate instances wait at before starting their processes. The functions the host reads
/// from its store as it starts get a closed one, opened once the committed components have
/// started: their pinned instances (and those their stored Events need) then do not compete
/// with the components for the CPU while the host is not yet ready, and the host is ready
/// sooner. A dropped opener opens it.
#[derive(Debug, Clone)]
pub struct StartGate(tokio::sync::watch::Receiver<bool>);

impl StartGate {
    /// A gate that is open.
    pub fn open() -> Self {
        Self(tokio::sync::watch::channel(true).1)
    }

    /// A closed gate and what opens it (`send_replace(true)`, or dropping it).
    pub fn closed() -> (tokio::sync::watch::Sender<bool>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Self(rx))
    }

    /// Whether instances may start now.
    pub fn is_open(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the gate is open (or its opener is gone).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|open| *open).await;
    }
}
