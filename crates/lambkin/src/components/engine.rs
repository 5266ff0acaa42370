//! The deployment engine: one actor that owns the device's running components and applies
//! deployments one at a time (a second waits for the first). A deployment is planned in full
//! first, recorded as IN_PROGRESS, applied (changed components stopped, new ones started in
//! dependency order and waited for), then committed with the device's new component set in one
//! transaction; if anything fails to install or start, the previous components and
//! configuration are restored (unless the request says DO_NOTHING). After a crash the host
//! starts the last committed set, so nothing is ever half-applied.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use lambkin_proto::deployment::{Detailed, Report};
use lambkin_proto::ipc::shapes::deployments::DeploymentStatus;
use lambkin_proto::lambda::function::{FunctionConfig, FunctionName};
use lambkin_proto::recipe::lambda as lambda_component;
use lambkin_proto::recipe::lifecycle::StepKind;
use lambkin_proto::recipe::model::DependencyType;
use lambkin_proto::recipe::platform::PlatformInfo;
use lambkin_proto::recipe::version::Version;

use super::configs::{Configurations, ProtectedKey};
use super::deployment::Staging;
use super::deployment::{
    self, Available, Current, DeploymentRequest, FailurePolicy, Kind, Plan, PlannedComponent,
};
use super::failure::{
    Aftermath, BootstrapFailure, Cause, ComponentError, DeployError, PlanError, Problem,
};
use super::lifecycle::State;
use super::status::{self, Change, Status};
use super::supervisor::{
    self, ComponentSpec, SkipIf, StateReport, StepKey, StepSpec, SupervisorHandle,
};
use super::triggers::Triggers;
use super::updates::ComponentUpdates;
use crate::lambda::registry::Registry;
use crate::layout::Layout;
use crate::logfile::LogFile;
use crate::metrics::counters::Counter;
use crate::store::{ComponentRecord, DeploymentRecord, Store, StoreError};

/// How long a component may take to come up in a deployment beyond its own step timeouts.
const START_SLACK: Duration = Duration::from_secs(5);
/// `errorResetTime` default (§2.5).
const ERROR_RESET: Duration = Duration::from_secs(3600);

pub use super::status::ComponentStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentOutcome {
    pub deployment_id: String,
    pub status: DeploymentStatus,
    pub message: String,
    /// Greengrass's detailed status, error stack and types.
    pub report: Report,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no component named {0}")]
    NotFound(String),
    #[error("component {0} is built in and always running")]
    Builtin(String),
    #[error("the deployment engine has stopped")]
    Stopped,
}

/// Why a deployment was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("the deployment engine has stopped")]
    Stopped,
    #[error("cannot record the deployment: {0}")]
    Unrecorded(StoreError),
}

/// Device-wide facts a deployment needs.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub layout: Layout,
    pub platform: PlatformInfo,
    pub thing_name: String,
    /// Time a stopped `Run` process gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// Environment every component gets.
    pub base_env: BTreeMap<String, String>,
    /// The IPC socket and tokens: each generic component gets its `SVCUID` and the socket's
    /// path. `None` when the host serves no IPC.
    pub ipc: Option<crate::ipc::ComponentIpc>,
    /// Local pub/sub, for the topics that trigger Lambda components (`pubsubTopics`).
    pub pubsub: crate::pubsub::PubSubHandle,
    /// Whom components run as when their deployment names no one, and whether the host can
    /// run them as other users at all.
    pub users: crate::users::Users,
    /// `[system_resource_limits]`: generic components' limits when their `runWith` gives none.
    pub system_resource_limits: crate::config::SystemResourceLimits,
    /// The broker connection, for Lambda components' `IOT_CORE` topics; `None` without
    /// `[mqtt]`.
    pub mqtt: Option<crate::mqtt::Mqtt>,
    /// Keys for the components whose `accessControl` grants them the Lambda API.
    pub lambda_api: crate::api::access::ComponentKeys,
}

enum Command {
    /// A deployment accepted (recorded `QUEUED`) under `id`.
    Deploy {
        id: String,
        request: Box<DeploymentRequest>,
        reply: oneshot::Sender<DeploymentOutcome>,
    },
    Restart(String, oneshot::Sender<Result<(), ControlError>>),
    Stop(String, oneshot::Sender<Result<(), ControlError>>),
    Shutdown(oneshot::Sender<()>),
}

/// A Lambda component's keys that decide how the host runs its function: isolation,
/// triggers, its environment, its layers, where its invocations run (a component must not
/// send its callers' payloads off the device on its own say).
const LAMBDA_HOST_KEYS: [&str; 6] = [
    "containerMode",
    "containerParams",
    "pubsubTopics",
    "lambdaExecutionParameters",
    "layers",
    "delegation",
];

/// The `accessControl` of a component's configuration (its key of that name, in any case, as
/// the nucleus reads it); empty, so denying everything, when it has none. Invalid policies are
/// skipped and logged.
fn access_control_in(
    component: &str,
    config: &serde_json::Value,
) -> lambkin_proto::ipc::AccessControl {
    let value = config.as_object().and_then(|c| {
        c.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("accessControl"))
            .map(|(_, v)| v)
    });
    let Some(value) = value else {
        return lambkin_proto::ipc::AccessControl::default();
    };
    let (policy, problems) = lambkin_proto::ipc::AccessControl::parse(value);
    for problem in problems {
        tracing::warn!(%component, %problem, "policy skipped");
    }
    policy
}

/// A cloneable handle on the engine.
#[derive(Debug, Clone)]
pub struct Engine {
    tx: mpsc::Sender<Command>,
    /// The components' states, as the status board's owner publishes them.
    board: watch::Receiver<status::Board>,
    /// The running components' configurations, shared with the actor.
    configs: Arc<Configurations>,
    store: Store,
    /// SubscribeToComponentUpdates and DeferComponentUpdate, shared with IPC.
    updates: Arc<ComponentUpdates>,
    deployments: Arc<DeploymentCounters>,
}

/// Deployments ended while this host runs, by outcome (`/metrics`).
#[derive(Debug, Default)]
pub struct DeploymentCounters {
    pub succeeded: Counter,
    pub failed: Counter,
    pub canceled: Counter,
}

impl DeploymentCounters {
    fn ended(&self, status: DeploymentStatus) {
        match status {
            DeploymentStatus::Succeeded => self.succeeded.inc(),
            DeploymentStatus::Failed => self.failed.inc(),
            DeploymentStatus::Canceled => self.canceled.inc(),
            DeploymentStatus::Queued | DeploymentStatus::InProgress => {}
        }
    }
}

impl Engine {
    /// Starts the engine: marks interrupted deployments failed and starts the last committed
    /// component set.
    pub async fn start(
        settings: EngineSettings,
        store: Store,
        registry: Registry,
        committed: Vec<ComponentRecord>,
        interrupted: Vec<DeploymentRecord>,
    ) -> Self {
        // Before anything reads the kept recipes: a deployment that committed keeps the recipes
        // it brought, one that did not drops them.
        let uncommitted = interrupted.iter().map(|d| d.id.clone()).collect();
        Staging::settle(&settings.layout, &uncommitted);
        let stored_run_with = deployment::stored_run_with(&settings.layout);
        for d in interrupted {
            let (message, report) = if d.status == DeploymentStatus::Queued {
                (
                    "the host stopped before this deployment started",
                    Report::interrupted(Detailed::FailedNoStateChange),
                )
            } else {
                (
                    "the host stopped during this deployment; the previous deployment's components were restored",
                    Report::interrupted(Detailed::FailedRollbackComplete),
                )
            };
            if let Err(e) = store
                .end_deployment(
                    d.id.clone(),
                    DeploymentStatus::Failed,
                    message.to_owned(),
                    report,
                    None,
                )
                .await
            {
                tracing::error!(deployment = %d.id, error = %e, "cannot mark an interrupted deployment failed");
            }
        }
        let configs: Arc<Configurations> = Arc::default();
        let (status, reports_tx, board) = status::spawn();
        let updates: Arc<ComponentUpdates> = Arc::default();
        let deployments: Arc<DeploymentCounters> = Arc::default();
        let mut actor = Actor {
            deployments: deployments.clone(),
            triggers: Triggers::new(
                settings.pubsub.clone(),
                settings.mqtt.clone(),
                registry.clone(),
            ),
            settings,
            store: store.clone(),
            registry,
            running: BTreeMap::new(),
            status,
            configs: configs.clone(),
            reports_tx,
            applied: Plan::default(),
            stored_run_with,
            lambda_cgroups: Mutex::default(),
            updates: updates.clone(),
        };
        let current: Current = committed
            .into_iter()
            .filter_map(|c| {
                Version::parse(&c.version)
                    .ok()
                    .map(|v| (c.name, (v, c.config)))
            })
            .collect();
        if !current.is_empty() {
            match actor.plan_from(
                &current,
                &DeploymentRequest::default(),
                Available::default(),
            ) {
                Ok(plan) => {
                    if let Err(e) = actor
                        .apply(&plan, &BTreeSet::new(), OnFailure::Continue)
                        .await
                    {
                        tracing::error!(error = %e, "the committed components did not all start");
                    }
                    actor.settle(&plan);
                }
                Err(e) => tracing::error!(error = %e, "cannot plan the committed components"),
            }
        }
        actor.stored_run_with.clear();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(actor.run(rx));
        Self {
            tx,
            board,
            configs,
            store,
            updates,
            deployments,
        }
    }

    /// The status board as last published: states, restarts and errors.
    pub fn board(&self) -> status::Board {
        self.board.borrow().clone()
    }

    /// Deployments ended while this host runs, by outcome.
    pub fn deployment_counters(&self) -> &DeploymentCounters {
        &self.deployments
    }

    /// The components' update subscriptions and answers (IPC's side of them).
    pub fn component_updates(&self) -> &Arc<ComponentUpdates> {
        &self.updates
    }

    /// Accepts a deployment: recorded `QUEUED` under a new id, then run once the deployments
    /// accepted before it have ended; the receiver gets its outcome.
    async fn accept(
        &self,
        request: DeploymentRequest,
    ) -> Result<(String, oneshot::Receiver<DeploymentOutcome>), AcceptError> {
        let id = uuid::Uuid::new_v4().to_string();
        let record = DeploymentRecord {
            id: id.clone(),
            status: DeploymentStatus::Queued,
            request: serde_json::to_string(&request).unwrap_or_default(),
            message: String::new(),
            report: None,
        };
        let (reply, rx) = oneshot::channel();
        let command = Command::Deploy {
            id: id.clone(),
            request: Box::new(request),
            reply,
        };
        // Recorded and queued by a task of its own: a caller that goes away meanwhile (an IPC
        // connection closed while the queue is full) cannot leave a deployment recorded QUEUED
        // that the actor never gets.
        let (store, tx) = (self.store.clone(), self.tx.clone());
        tokio::spawn(async move {
            store
                .begin_deployment(record)
                .await
                .map_err(AcceptError::Unrecorded)?;
            tx.send(command).await.map_err(|_| AcceptError::Stopped)
        })
        .await
        .map_err(|_| AcceptError::Stopped)??;
        Ok((id, rx))
    }

    /// Applies a deployment and waits for its outcome (`lambkin deploy`).
    pub async fn deploy(
        &self,
        request: DeploymentRequest,
    ) -> Result<DeploymentOutcome, AcceptError> {
        let (_, rx) = self.accept(request).await?;
        rx.await.map_err(|_| AcceptError::Stopped)
    }

    /// Accepts a deployment and answers its id without waiting for it to run, as the nucleus
    /// answers CreateLocalDeployment: a long deployment outlasts no caller's timeout, and one
    /// that restarts its caller still answers it. Its progress is read from the store
    /// (GetLocalDeploymentStatus).
    pub async fn submit(&self, request: DeploymentRequest) -> Result<String, AcceptError> {
        self.accept(request).await.map(|(id, _)| id)
    }

    pub fn list(&self) -> Vec<ComponentStatus> {
        self.board.borrow().components.values().cloned().collect()
    }

    /// A component's effective configuration; `None` for a component not on the device.
    pub fn configuration(&self, name: &str) -> Option<serde_json::Value> {
        self.configs.get(name)
    }

    /// The running components' configurations: what IPC reads and updates.
    pub fn configs(&self) -> &Configurations {
        &self.configs
    }

    /// Writes the configuration changes made so far to the store, so that a change made by
    /// [`Configurations::apply_update`] survives a restart of the host; returns once they are on
    /// disk. Only the change is written (the store appends it to the component's saved
    /// changes and folds them into the configuration now and then), never the whole
    /// configuration per update. Writes go one at a time, each taking every change queued
    /// when it goes, so a change answered after this returns is durable, in order.
    pub async fn persist_configuration(&self) -> Result<(), StoreError> {
        self.configs.persist(&self.store).await
    }

    /// A component's `accessControl` (its configuration's key of that name, in any case, as
    /// the nucleus reads it); empty, so denying everything, when it has none. Invalid
    /// policies are skipped and logged.
    pub fn access_control(&self, name: &str) -> lambkin_proto::ipc::AccessControl {
        self.configs
            .with(name, |config| access_control_in(name, config))
            .unwrap_or_default()
    }

    pub async fn deployments(&self) -> Vec<DeploymentRecord> {
        self.store.list_deployments().await.unwrap_or_default()
    }

    pub async fn restart(&self, name: String) -> Result<(), ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Restart(name, reply))
            .await
            .map_err(|_| ControlError::Stopped)?;
        rx.await.map_err(|_| ControlError::Stopped)?
    }

    pub async fn stop(&self, name: String) -> Result<(), ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Stop(name, reply))
            .await
            .map_err(|_| ControlError::Stopped)?;
        rx.await.map_err(|_| ControlError::Stopped)?
    }

    /// Stops every component (Shutdown steps, then their processes).
    pub async fn shutdown(&self) {
        // A deployment waiting on components' answers waits no more.
        self.updates.stop();
        let (done, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(done)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// When a component was started and how long it has to come up.
type Deadline = (Instant, Duration);

/// `lambkin restart` and `lambkin stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Restart,
    Stop,
}

/// What [`Actor::apply`] does when a component fails to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnFailure {
    Stop,
    Continue,
}

struct RunningComponent {
    version: Version,
    kind: Kind,
    config: serde_json::Value,
    /// Generic components only.
    supervisor: Option<Arc<SupervisorHandle>>,
    /// What the plan said, to tell whether a new plan changes it.
    fingerprint: String,
}

struct Actor {
    settings: EngineSettings,
    deployments: Arc<DeploymentCounters>,
    store: Store,
    registry: Registry,
    running: BTreeMap<String, RunningComponent>,
    /// The status board and the dependency rules (their owner is `status`'s task).
    status: Status,
    /// The running components' configurations, shared with IPC.
    configs: Arc<Configurations>,
    /// Where supervisors send their state reports (to the status board's owner).
    reports_tx: mpsc::UnboundedSender<StateReport>,
    /// The plan the running components were started from: what a failed deployment rolls
    /// back to. Kept in memory rather than planned again, because planning reads the kept
    /// recipes and the deployment may have brought another recipe for a version that runs.
    applied: Plan,
    /// The components' `runWith` as the host found it at start, for the committed set.
    stored_run_with: BTreeMap<String, deployment::RunWith>,
    /// The control groups of Lambda components whose plain instances have limits.
    lambda_cgroups: Mutex<BTreeMap<String, crate::cgroup::Cgroup>>,
    /// Lambda components' `PUB_SUB` topic subscriptions.
    triggers: Triggers,
    /// Components told of an update before it (`componentUpdatePolicy`).
    updates: Arc<ComponentUpdates>,
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Builtin => "builtin",
        Kind::Generic => "generic",
        Kind::Lambda => "lambda",
    }
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(command) = rx.recv().await {
            match command {
                Command::Deploy { id, request, reply } => {
                    let outcome = self.deploy(id, *request).await;
                    self.deployments.ended(outcome.status);
                    let _ = reply.send(outcome);
                }
                Command::Restart(name, reply) => {
                    let _ = reply.send(self.control(&name, Control::Restart).await);
                }
                Command::Stop(name, reply) => {
                    let _ = reply.send(self.control(&name, Control::Stop).await);
                }
                Command::Shutdown(done) => {
                    let names: Vec<String> = self.running.keys().cloned().collect();
                    self.stop_components(names.iter().rev()).await;
                    let _ = done.send(());
                    return;
                }
            }
        }
    }

    /// Restarts or stops a component. A Lambda component's function is defined again (new
    /// instances) or removed (the Invoke API no longer finds it) until it is restarted or
    /// deployed again.
    async fn control(&mut self, name: &str, action: Control) -> Result<(), ControlError> {
        self.absorb_configuration_updates();
        let c = self
            .running
            .get(name)
            .ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
        match (&c.kind, &c.supervisor) {
            (_, Some(h)) => match action {
                Control::Restart => h.restart(),
                Control::Stop => h.stop(),
            },
            (Kind::Lambda, None) => {
                let planned = self
                    .applied
                    .components
                    .get(name)
                    .cloned()
                    .ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
                match action {
                    Control::Restart => {
                        self.set_status(&planned, State::Starting);
                        match self.define_lambda(&planned).await {
                            Ok(()) => {
                                self.triggers.start(name, &planned.config).await;
                                self.set_status(&planned, State::Running);
                            }
                            Err(e) => self.set_failed(&planned, e.to_string()),
                        }
                    }
                    Control::Stop => {
                        self.set_status(&planned, State::Stopping);
                        self.triggers.stop(name);
                        if let Ok(function) = FunctionName::parse(name) {
                            self.registry.remove_for_component(&function).await;
                        }
                        self.set_status(&planned, State::Finished);
                    }
                }
            }
            _ => return Err(ControlError::Builtin(name.to_owned())),
        }
        Ok(())
    }

    fn current(&self) -> Current {
        self.running
            .iter()
            .filter(|(_, c)| c.kind != Kind::Builtin)
            .map(|(n, c)| (n.clone(), (c.version.clone(), self.effective_config(n, c))))
            .collect()
    }

    /// A running component's configuration with the changes IPC made to it.
    fn effective_config(&self, name: &str, c: &RunningComponent) -> serde_json::Value {
        self.configs.get(name).unwrap_or_else(|| c.config.clone())
    }

    /// Takes in the changes IPC made to running components' configurations (UpdateConfiguration)
    /// since they started: what they run with now is what a deployment compares its plan
    /// with (an unchanged component keeps running) and what a failed one rolls back to.
    fn absorb_configuration_updates(&mut self) {
        let configs = self.configs.snapshot();
        for (name, c) in self.running.iter_mut() {
            let Some(effective) = configs.get(name) else {
                continue;
            };
            if *effective == c.config {
                continue;
            }
            c.config = effective.clone();
            if let Some(planned) = self.applied.components.get_mut(name) {
                planned.config = effective.clone();
                c.fingerprint = fingerprint(planned);
            }
        }
    }

    fn plan_from(
        &self,
        current: &Current,
        request: &DeploymentRequest,
        mut available: Available,
    ) -> Result<Plan, PlanError> {
        let stored = deployment::stored_recipes(&self.settings.layout);
        available.merge(stored);
        let mut plan = deployment::plan(
            current,
            request,
            &available,
            &self.settings.layout,
            &self.settings.platform,
            &self.settings.thing_name,
        )?;
        // A component keeps its runWith until a deployment gives it another.
        for (name, c) in plan.components.iter_mut() {
            if request.run_with.contains_key(name) {
                continue;
            }
            let previous = self
                .applied
                .components
                .get(name)
                .map(|p| p.run_with.clone())
                .or_else(|| self.stored_run_with.get(name).cloned());
            if let Some(previous) = previous {
                c.run_with = previous;
            }
        }
        Ok(plan)
    }

    /// Every component's user exists (a deployment naming one that does not is refused).
    fn check_users(&self, plan: &Plan) -> Result<(), PlanError> {
        let problems = plan
            .components
            .values()
            .filter(|c| c.kind != Kind::Builtin)
            .filter_map(|c| self.run_as(c).err())
            .map(|e| Problem::new(Cause::RunWith, e.to_string()))
            .collect();
        PlanError::check(problems)
    }

    /// Whom `c`'s processes run as; `None`: the host's own user.
    fn run_as(&self, c: &PlannedComponent) -> Result<Option<crate::users::RunAs>, ComponentError> {
        self.settings
            .users
            .for_component(&c.name, c.run_with.posix_user.as_deref())
            .map_err(|error| ComponentError::RunAs { at: at(c), error })
    }

    /// Whom `c`'s processes run as, said in its log and the host's when that is root by its
    /// `posixUser` or `[run_with_default]` (a host that is not root runs everything as itself,
    /// and says nothing).
    fn run_as_noted(
        &self,
        c: &PlannedComponent,
    ) -> Result<Option<crate::users::RunAs>, ComponentError> {
        let run_as = self.run_as(c)?;
        if run_as.as_ref().is_some_and(crate::users::RunAs::is_root) {
            let why = match &c.run_with.posix_user {
                Some(user) => format!("posixUser {user}"),
                None => "[run_with_default]".to_owned(),
            };
            tracing::warn!(component = %c.name, "the component runs as root ({why})");
            let log = self
                .settings
                .layout
                .logs_dir()
                .join(format!("{}.log", c.name));
            if let Ok(log) = LogFile::open(&log) {
                log.write_lines(
                    crate::logfile::Level::Info,
                    format!("{}@{} runs as root ({why})", c.name, c.version).as_bytes(),
                );
            }
        }
        Ok(run_as)
    }

    /// Gives `c`'s artifacts to the user it runs as (as the nucleus does); their modes stay
    /// as the recipe's `Permission` set them.
    fn give_artifacts(
        &self,
        c: &PlannedComponent,
        run_as: Option<&crate::users::RunAs>,
    ) -> Result<(), ComponentError> {
        let Some(run_as) = run_as else {
            return Ok(());
        };
        let paths = deployment::paths(&self.settings.layout, &c.name, &c.version);
        for dir in [&paths.artifacts, &paths.decompressed] {
            crate::users::give_tree(dir, run_as).map_err(|error| {
                ComponentError::GiveArtifacts {
                    at: at(c),
                    dir: dir.clone(),
                    user: run_as.user.to_string(),
                    error,
                }
            })?;
        }
        crate::users::make_reachable(self.settings.layout.root(), &paths.decompressed)
            .map_err(|error| ComponentError::Reachable { at: at(c), error })
    }

    async fn deploy(&mut self, id: String, request: DeploymentRequest) -> DeploymentOutcome {
        let outcome =
            |status: DeploymentStatus, message: String, report: Report| DeploymentOutcome {
                deployment_id: id.clone(),
                status,
                message,
                report,
            };
        if let Err(e) = self.store.start_deployment(id.clone()).await {
            return outcome(
                DeploymentStatus::Failed,
                format!("cannot record the deployment: {e}"),
                Report::unrecorded(Detailed::FailedNoStateChange),
            );
        }
        self.absorb_configuration_updates();
        let previous = self.current();
        let previous_plan = self.applied.clone();
        let mut brought = Vec::new();
        let result = self
            .prepare_and_apply(&id, &previous, &request, &mut brought)
            .await;
        let (status, message, report, committed) = match result {
            Ok(()) => (
                DeploymentStatus::Succeeded,
                String::new(),
                Report::succeeded(),
                Some(self.records()),
            ),
            Err(why) => {
                if request.failure_policy == FailurePolicy::Rollback {
                    Staging::new(&self.settings.layout, &id).restore_artifacts();
                }
                let aftermath = match request.failure_policy {
                    FailurePolicy::Rollback => match self.restore(&previous_plan).await {
                        Ok(()) => Aftermath::Restored,
                        Err(e) => Aftermath::RestoreFailed(e),
                    },
                    FailurePolicy::DoNothing => Aftermath::Left,
                };
                if request.failure_policy == FailurePolicy::Rollback {
                    self.record_restored_configurations().await;
                }
                let committed =
                    (request.failure_policy == FailurePolicy::DoNothing).then(|| self.records());
                let (message, report) = why.report(&aftermath);
                (DeploymentStatus::Failed, message, report, committed)
            }
        };
        let staging = Staging::new(&self.settings.layout, &id);
        if committed.is_some() {
            if !brought.is_empty() {
                if let Err(e) = staging.set_aside_recipes(&brought) {
                    tracing::error!(deployment = %id, error = %e, "cannot keep the deployment's recipes");
                }
            }
            let run_with = self
                .applied
                .components
                .iter()
                .filter(|(_, c)| c.run_with != deployment::RunWith::default())
                .map(|(n, c)| (n.clone(), c.run_with.clone()))
                .collect();
            if let Err(e) = staging.set_aside_run_with(&run_with) {
                tracing::error!(deployment = %id, error = %e, "cannot keep the components' runWith");
            }
        }
        crate::failpoint::hit("deployment-before-commit");
        let commits = committed.is_some();
        if let Err(e) = self
            .store
            .end_deployment(
                id.clone(),
                status,
                message.clone(),
                report.clone(),
                committed,
            )
            .await
        {
            staging.abandon();
            // The device runs what the store does not record: its next start restores the
            // recorded set.
            return outcome(
                DeploymentStatus::Failed,
                format!("cannot record the deployment's end: {e}"),
                Report::unrecorded(Detailed::FailedUnableToRollback),
            );
        }
        // Only now that the new set is committed: until then a crash must find the replaced
        // artifacts to put back, and the recipes and runWith the device ran before.
        if commits {
            staging.commit();
        }
        let notified = request
            .component_update_policy
            .as_ref()
            .is_some_and(|p| p.notify().is_some());
        if notified && status == DeploymentStatus::Succeeded {
            self.updates.done(&id);
        }
        outcome(status, message, report)
    }

    /// After a rollback: the device's components' configurations as they run again. A
    /// component that the failed deployment had changed may have updated its configuration
    /// over IPC meanwhile, and that update was recorded for the device's component.
    async fn record_restored_configurations(&self) {
        for record in self.records() {
            if let Err(e) = self
                .store
                .put_component_config(record.name.clone(), record.config)
                .await
            {
                tracing::error!(component = %record.name, error = %e, "cannot record the restored configuration");
            }
        }
    }

    /// Records that the running components follow `plan`, as far as it got.
    fn settle(&mut self, plan: &Plan) {
        let running = &self.running;
        self.applied = plan.retaining(|name| running.contains_key(name));
    }

    fn records(&self) -> Vec<ComponentRecord> {
        self.running
            .iter()
            .filter(|(_, c)| c.kind != Kind::Builtin)
            .map(|(name, c)| ComponentRecord {
                name: name.clone(),
                version: c.version.to_string(),
                config: self.effective_config(name, c),
            })
            .collect()
    }

    /// Plans, stages and applies `request`; `brought` gets the recipes of the planned
    /// components that it brings, to keep once the deployment commits.
    async fn prepare_and_apply(
        &mut self,
        id: &str,
        previous: &Current,
        request: &DeploymentRequest,
        brought: &mut Vec<(PathBuf, lambkin_proto::recipe::Recipe)>,
    ) -> Result<(), DeployError> {
        let mut available = Available::default();
        if let Some(dir) = request.recipe_dir.clone() {
            // Parsing is on a blocking thread: a large YAML document takes its time, and the
            // host's one async thread keeps serving invocations meanwhile.
            let (read, result) = tokio::task::spawn_blocking(move || {
                let result = available.read_dir(&dir);
                (available, result)
            })
            .await
            .map_err(|e| DeployError::Host {
                what: "reading the recipes",
                error: e.to_string(),
            })?;
            available = read;
            *brought = result?;
        }
        let plan = self.plan_from(previous, request, available)?;
        self.check_users(&plan)?;
        brought.retain(|(_, recipe)| plan.components.contains_key(recipe.name.as_str()));
        let fresh: BTreeSet<String> = brought
            .iter()
            .map(|(_, r)| format!("{}@{}", r.name, r.version))
            .collect();
        deployment::pull_docker_images(&plan).await?;
        // On a blocking thread: copying, hashing and unpacking archives takes a while, and the
        // host's one async thread keeps serving invocations meanwhile.
        let staged = {
            let (plan, artifact_dir, layout, fresh, id) = (
                plan.clone(),
                request.artifact_dir.clone(),
                self.settings.layout.clone(),
                fresh.clone(),
                id.to_owned(),
            );
            tokio::task::spawn_blocking(move || {
                deployment::stage_artifacts(&plan, artifact_dir.as_deref(), &layout, &fresh, &id)
            })
            .await
            .map_err(|e| DeployError::Host {
                what: "staging the artifacts",
                error: e.to_string(),
            })?
        };
        staged?;
        // Deploying a BROKEN component again is how it is repaired (§2.5).
        let broken: BTreeSet<String> = {
            let board = self.status.current().await;
            request
                .merge
                .keys()
                .filter(|n| {
                    board
                        .components
                        .get(*n)
                        .is_some_and(|s| s.state == State::Broken)
                })
                .cloned()
                .collect()
        };
        // DO_NOTHING leaves nothing half-done either: a failed component stays, failing, and
        // the rest of the deployment still starts, as the device will run it from now on.
        let on_failure = match request.failure_policy {
            FailurePolicy::Rollback => OnFailure::Stop,
            FailurePolicy::DoNothing => OnFailure::Continue,
        };
        // The components that asked are told, and may defer the update, before anything
        // stops or changes.
        if let Some(timeout) = request
            .component_update_policy
            .as_ref()
            .and_then(|p| p.notify())
        {
            self.updates.ask(id, timeout).await;
        }
        let result = self.apply(&plan, &broken, on_failure).await;
        self.settle(&plan);
        result
    }

    /// Returns to `previous`, the plan that ran before a failed deployment.
    async fn restore(&mut self, previous: &Plan) -> Result<(), DeployError> {
        let result = self
            .apply(previous, &BTreeSet::new(), OnFailure::Continue)
            .await;
        self.settle(previous);
        result
    }

    /// Makes the device run `plan`: stops what leaves or changes (dependents first), starts
    /// what is new or changed in dependency order, and waits for each to come up. `refresh`
    /// names components to replace even if unchanged.
    ///
    /// A deployment that rolls back on failure stops at the first component that fails
    /// ([`OnFailure::Stop`]). Bringing back a committed set (at start, or after a failed
    /// deployment) and a DO_NOTHING deployment go on ([`OnFailure::Continue`]): every component is kept, so none drops out of the device's
    /// set, and a component whose dependency did not come up waits for it, as it would for a
    /// dependency still starting.
    async fn apply(
        &mut self,
        plan: &Plan,
        refresh: &BTreeSet<String>,
        on_failure: OnFailure,
    ) -> Result<(), DeployError> {
        let fingerprints: BTreeMap<&str, String> = plan
            .components
            .iter()
            .map(|(n, c)| (n.as_str(), fingerprint(c)))
            .collect();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(n, c)| {
                refresh.contains(n.as_str()) || fingerprints.get(n.as_str()) != Some(&c.fingerprint)
            })
            .map(|(n, _)| n.clone())
            .collect();
        // Dependents first: reverse of the old start order is not kept, so stop in reverse
        // of the new plan's order, then whatever is left.
        let mut stop_order: Vec<String> = plan
            .order
            .iter()
            .rev()
            .filter(|n| stale.contains(n))
            .cloned()
            .collect();
        stop_order.extend(stale.iter().filter(|n| !plan.order.contains(n)).cloned());
        self.stop_components(stop_order.iter()).await;
        self.set_graph(plan);
        let mut failures = Vec::new();
        // As Greengrass: a component starts once its dependencies are up; components that do
        // not depend on each other start side by side. Started ones not yet seen up, with the
        // time they have to get there.
        let mut coming_up: Vec<(String, Deadline)> = Vec::new();
        for name in &plan.order {
            if self.running.contains_key(name) {
                continue;
            }
            let Some(c) = plan.components.get(name) else {
                continue;
            };
            let board = self.status.current().await;
            let waits_for: Vec<String> = c
                .dependencies
                .iter()
                .filter(|(d, _)| !board.is_up(d))
                .map(|(d, _)| d.clone())
                .collect();
            let hold = on_failure == OnFailure::Continue && !waits_for.is_empty();
            if !hold {
                for dependency in &waits_for {
                    let Some(at) = coming_up.iter().position(|(n, _)| n == dependency) else {
                        continue;
                    };
                    let (dependency, deadline) = coming_up.remove(at);
                    match self.wait_up(&dependency, deadline).await {
                        Ok(()) => {}
                        Err(e) if on_failure == OnFailure::Continue => failures.push(e),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            match self.start_component(c, hold.then_some(waits_for)).await {
                Ok(Some(deadline)) => coming_up.push((name.clone(), deadline)),
                Ok(None) => {}
                Err(e) if on_failure == OnFailure::Continue => failures.push(e),
                Err(e) => return Err(e.into()),
            }
        }
        for (name, deadline) in coming_up {
            match self.wait_up(&name, deadline).await {
                Ok(()) => {}
                Err(e) if on_failure == OnFailure::Continue => failures.push(e),
                Err(e) => return Err(e.into()),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(DeployError::Components(failures))
        }
    }

    fn set_graph(&mut self, plan: &Plan) {
        let hard = plan
            .components
            .values()
            .map(|c| {
                let hard = c
                    .dependencies
                    .iter()
                    .filter(|(_, ty)| *ty == DependencyType::Hard)
                    .map(|(dep, _)| dep.clone())
                    .collect();
                (c.name.clone(), hard)
            })
            .collect();
        self.status.change(Change::HardDependencies(hard));
    }

    async fn stop_components<'a>(&mut self, names: impl Iterator<Item = &'a String>) {
        for name in names {
            let Some(c) = self.running.remove(name) else {
                continue;
            };
            self.configs.stop(name);
            self.settings.lambda_api.revoke(name);
            if let Some(ipc) = &self.settings.ipc {
                ipc.revoke(name);
            }
            match c.kind {
                Kind::Generic => {
                    if let Some(h) = &c.supervisor {
                        h.shutdown().await;
                    }
                }
                Kind::Lambda => {
                    self.triggers.stop(name);
                    if let Ok(fname) = FunctionName::parse(name) {
                        self.registry.remove_for_component(&fname).await;
                    }
                    let group = self
                        .lambda_cgroups
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(name);
                    remove_component_cgroup(name, group).await;
                }
                Kind::Builtin => {}
            }
            self.status.change(Change::Remove(name.clone()));
        }
    }

    fn set_status(&mut self, c: &PlannedComponent, state: State) {
        self.set_status_with(c, state, None);
    }

    fn set_status_with(&mut self, c: &PlannedComponent, state: State, detail: Option<String>) {
        self.status.change(Change::Set(ComponentStatus {
            name: c.name.clone(),
            version: c.version.to_string(),
            kind: kind_name(&c.kind).to_owned(),
            state,
            detail,
            instance: None,
        }));
    }

    /// Starts `c` (held until `hold`'s components are up, if given). A generic component
    /// started now comes back with the deadline to be RUNNING (or FINISHED) by, for the
    /// caller to wait on; everything else is up, held or failed when this returns. A
    /// component that fails to start stays on the device (listed, and recorded if the
    /// device's set is), as the nucleus keeps an ERRORED one.
    async fn start_component(
        &mut self,
        c: &PlannedComponent,
        hold: Option<Vec<String>>,
    ) -> Result<Option<Deadline>, ComponentError> {
        let mut supervisor = None;
        let mut result = Ok(());
        self.configs
            .start(&c.name, c.config.clone(), protected_keys(c));
        // A new token for each start in a deployment: what the previous one was handed to
        // (a replaced version, a process left behind) cannot act as this one.
        if let Some(ipc) = &self.settings.ipc {
            ipc.renew(&c.name);
        }
        match c.kind {
            Kind::Builtin => self.set_status(c, State::Running),
            Kind::Lambda => {
                self.set_status(c, State::Starting);
                result = self.define_lambda(c).await;
                if result.is_ok() {
                    self.triggers.start(&c.name, &c.config).await;
                }
                match &result {
                    Ok(()) => self.set_status(c, State::Running),
                    Err(e) => self.set_failed(c, e.to_string()),
                }
            }
            Kind::Generic => {
                self.set_status(c, State::New);
                self.bootstrap(c).await?;
                let spec = self.component_spec(c)?;
                let timeout = [StepKey::Install, StepKey::Startup]
                    .iter()
                    .filter_map(|k| spec.steps.get(k).map(|s| s.timeout.unwrap_or_default()))
                    .sum::<Duration>();
                let handle = Arc::new(supervisor::spawn(spec, self.reports_tx.clone()));
                // Held, the rules start it once its dependencies are up (they may have come up
                // since they were looked at); otherwise it starts now.
                self.status.change(Change::Supervised {
                    name: c.name.clone(),
                    handle: handle.clone(),
                    hold: hold.clone(),
                });
                supervisor = Some(handle);
                self.running.insert(
                    c.name.clone(),
                    RunningComponent {
                        version: c.version.clone(),
                        kind: c.kind.clone(),
                        config: c.config.clone(),
                        supervisor: supervisor.clone(),
                        fingerprint: fingerprint(c),
                    },
                );
                if hold.is_some() {
                    return Ok(None);
                }
                return Ok(Some((Instant::now(), timeout + START_SLACK)));
            }
        }
        self.running.insert(
            c.name.clone(),
            RunningComponent {
                version: c.version.clone(),
                kind: c.kind.clone(),
                config: c.config.clone(),
                supervisor,
                fingerprint: fingerprint(c),
            },
        );
        result.map(|()| None)
    }

    fn set_failed(&mut self, c: &PlannedComponent, why: String) {
        self.set_status_with(c, State::Errored, Some(why));
    }

    async fn define_lambda(&self, c: &PlannedComponent) -> Result<(), ComponentError> {
        let (name, config, code_dir) = self.lambda_function(c)?;
        // As a generic component's processes: the device's variables and its IPC token, so
        // a handler can use IPC as the component, under the component's `accessControl`.
        let mut env = self.settings.base_env.clone();
        if let Some(ipc) = &self.settings.ipc {
            env.extend(ipc.env_for(&c.name));
        }
        let run_as = self.run_as_noted(c)?;
        self.give_artifacts(c, run_as.as_ref())?;
        let work = deployment::paths(&self.settings.layout, &c.name, &c.version).work;
        env.extend(self.lambda_api_env(c, &work, run_as.as_ref())?);
        // A plain function's instances share a group, as a generic component's steps: with
        // systemResourceLimits it applies them; without, it only holds what they start (a
        // `setsid` daemon too), so that removing the component ends all of it (as root, with
        // cgroups; otherwise process groups only). A containerized instance has its own.
        let cgroup = match (&config.greengrass.isolation, self.limits(c)) {
            (lambkin_proto::lambda::function::Isolation::NoContainer, Some(limits)) => Some(
                crate::cgroup::host()
                    .map_err(|error| ComponentError::NoCgroups { at: at(c), error })?
                    .create(&format!("component-{}", c.name), limits)
                    .map_err(|error| ComponentError::Limits { at: at(c), error })?,
            ),
            (lambkin_proto::lambda::function::Isolation::NoContainer, None) => {
                match crate::cgroup::tracking(&format!("component-{}", c.name)) {
                    Ok(group) => Some(group),
                    Err(e) => {
                        tracing::debug!(component = %c.name, error = %e, "no cgroup to hold the function's processes; its instances' process groups are stopped instead");
                        None
                    }
                }
            }
            _ => None,
        };
        if let Some(group) = &cgroup {
            self.lambda_cgroups
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(c.name.clone(), group.clone());
        }
        self.registry
            .define_for_component(name, config, code_dir, env, run_as, cgroup)
            .await
            .map_err(|error| ComponentError::Define {
                at: at(c),
                error: Box::new(error),
            })
    }

    /// Waits until `name` is RUNNING or FINISHED; an error if it reports ERRORED or BROKEN,
    /// or does not get there within `limit` of `since` (when it was started).
    async fn wait_up(
        &mut self,
        name: &str,
        (since, limit): Deadline,
    ) -> Result<(), ComponentError> {
        let deadline = since + limit;
        loop {
            let status = self.status.current().await.components.get(name).cloned();
            if let Some(s) = status {
                match s.state {
                    State::Running | State::Finished => return Ok(()),
                    State::Errored | State::Broken => {
                        return Err(ComponentError::Broke {
                            at: format!("{name}@{}", s.version),
                            detail: s.detail.unwrap_or_else(|| "it reported ERRORED".into()),
                        })
                    }
                    _ => {}
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ComponentError::NotUp {
                    name: name.to_owned(),
                    limit,
                });
            }
            let _ = tokio::time::timeout(deadline - now, self.status.changed()).await;
        }
    }

    /// A component whose `accessControl` grants it the Lambda API gets a fresh key of its own
    /// in its work directory (`api::access`), and the variable naming it; others get nothing.
    fn lambda_api_env(
        &self,
        c: &PlannedComponent,
        work: &std::path::Path,
        run_as: Option<&crate::users::RunAs>,
    ) -> Result<BTreeMap<String, String>, ComponentError> {
        if !crate::api::access::wants_lambda_api(&access_control_in(&c.name, &c.config)) {
            // Granted no longer (or never): a key from an earlier start stops working.
            self.settings.lambda_api.revoke(&c.name);
            return Ok(BTreeMap::new());
        }
        crate::users::prepare_work_dir(self.settings.layout.root(), work, run_as).map_err(
            |error| ComponentError::Prepare {
                at: at(c),
                dir: work.to_owned(),
                error,
            },
        )?;
        let owner = run_as.unwrap_or_else(|| crate::users::host_identity());
        self.settings
            .lambda_api
            .issue(&c.name, work, (owner.uid, owner.gid))
            .map_err(|error| ComponentError::ApiKey {
                name: c.name.clone(),
                error,
            })
    }

    fn component_spec(&self, c: &PlannedComponent) -> Result<Arc<ComponentSpec>, ComponentError> {
        let layout = &self.settings.layout;
        let paths = deployment::paths(layout, &c.name, &c.version);
        let run_as = self.run_as_noted(c)?;
        crate::users::prepare_work_dir(layout.root(), &paths.work, run_as.as_ref()).map_err(
            |error| ComponentError::Prepare {
                at: at(c),
                dir: paths.work.clone(),
                error,
            },
        )?;
        self.give_artifacts(c, run_as.as_ref())?;
        let log =
            LogFile::open(&layout.logs_dir().join(format!("{}.log", c.name))).map_err(|error| {
                ComponentError::OpenLog {
                    name: c.name.clone(),
                    error,
                }
            })?;
        let mut env = self.settings.base_env.clone();
        if let Some(ipc) = &self.settings.ipc {
            env.extend(ipc.env_for(&c.name));
        }
        env.extend(self.lambda_api_env(c, &paths.work, run_as.as_ref())?);
        env.extend(c.lifecycle.setenv.clone());
        let steps = c
            .lifecycle
            .steps
            .iter()
            .filter_map(|(kind, step)| {
                let key = match kind {
                    StepKind::Install => StepKey::Install,
                    StepKind::Startup => StepKey::Startup,
                    StepKind::Run => StepKey::Run,
                    StepKind::Shutdown => StepKey::Shutdown,
                    StepKind::Recover => StepKey::Recover,
                    _ => return None,
                };
                let skip_if = step.skip_if.as_ref().map(|s| {
                    let check = match &s.check {
                        lambkin_proto::recipe::lifecycle::SkipCheck::OnPath(exe) => {
                            SkipIf::OnPath(exe.clone())
                        }
                        lambkin_proto::recipe::lifecycle::SkipCheck::Exists(f) => {
                            SkipIf::Exists(PathBuf::from(f))
                        }
                    };
                    if s.negated {
                        SkipIf::Not(Box::new(check))
                    } else {
                        check
                    }
                });
                Some((
                    key,
                    StepSpec {
                        script: step.script.clone(),
                        timeout: step.timeout,
                        env: step.setenv.clone(),
                        skip_if,
                        requires_privilege: step.requires_privilege,
                    },
                ))
            })
            .collect();
        Ok(Arc::new(ComponentSpec {
            name: c.name.clone(),
            work_dir: paths.work,
            env,
            steps,
            error_reset: ERROR_RESET,
            stop_grace: self.settings.stop_grace,
            log: Arc::new(log),
            host_root: self.settings.layout.root().to_owned(),
            run_as,
            limits: self.limits(c),
        }))
    }

    /// `c`'s `systemResourceLimits`: its own, else the host's default.
    fn limits(&self, c: &PlannedComponent) -> Option<crate::cgroup::Limits> {
        match &c.run_with.system_resource_limits {
            Some(l) => crate::users::cgroup_limits(l.cpus, l.memory_kib),
            None => {
                let d = &self.settings.system_resource_limits;
                crate::users::cgroup_limits(d.cpus, d.memory)
            }
        }
    }

    /// Runs the component's `Bootstrap` step when it is new on the device, its version
    /// changed, or its bootstrap script changed (§2.2). Exit 0 is success; 100 asks for a
    /// nucleus restart, which Lambkin does not need (logged); 101 asks for a device reboot,
    /// which Lambkin does not do, so the deployment fails saying so; anything else fails it.
    async fn bootstrap(&self, c: &PlannedComponent) -> Result<(), ComponentError> {
        use lambkin_proto::recipe::lifecycle::StepKind;
        let Some(step) = c.lifecycle.step(StepKind::Bootstrap) else {
            return Ok(());
        };
        let at = at(c);
        let failed = |failure| ComponentError::Bootstrap {
            at: at.clone(),
            failure,
        };
        let marker_dir = self.settings.layout.state_dir().join("bootstrapped");
        let marker = marker_dir.join(&c.name);
        let fingerprint = format!("{}\n{}", c.version, step.script);
        if std::fs::read_to_string(&marker).ok().as_deref() == Some(fingerprint.as_str()) {
            return Ok(());
        }
        let paths = deployment::paths(&self.settings.layout, &c.name, &c.version);
        let run_as = self.run_as(c)?;
        crate::users::prepare_work_dir(self.settings.layout.root(), &paths.work, run_as.as_ref())
            .map_err(|error| ComponentError::Prepare {
            at: at.clone(),
            dir: paths.work.clone(),
            error,
        })?;
        self.give_artifacts(c, run_as.as_ref())?;
        let mut env = self.settings.base_env.clone();
        env.extend(step.environment(&c.lifecycle));
        let mut cmd = std::process::Command::new("sh");
        crate::child_env::start_empty(&mut cmd);
        cmd.arg("-c")
            .arg(&step.script)
            .current_dir(&paths.work)
            .envs(&env)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        // Its own process group, and (as root, with cgroups) a group of its own, so that a
        // timed-out Bootstrap ends with everything it started, a `setsid` daemon included.
        let tracking = crate::cgroup::tracking(&format!("bootstrap-{}", c.name)).ok();
        let (user, privileged) = match run_as.as_ref() {
            Some(run_as) if !step.requires_privilege => (crate::child::User::Become(run_as), false),
            run_as => (
                crate::child::User::Host,
                run_as.is_some_and(|r| !r.is_root()) && crate::users::host_identity().is_root(),
            ),
        };
        crate::child::prepare(
            &mut cmd,
            crate::child::Setup {
                marker: Some(self.settings.layout.root()),
                cgroups: tracking
                    .as_ref()
                    .map(|g| g.procs_files())
                    .unwrap_or_default(),
                user,
                ..crate::child::Setup::default()
            },
        )
        .map_err(|e| failed(BootstrapFailure::NotStarted(e)))?;
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let limit = step.timeout.unwrap_or(Duration::from_secs(120));
        let ended = run_to_end(cmd, limit).await;
        if let Some(group) = tracking {
            // Nothing of a step that ended may hold its group: what it left running goes
            // with it on a timeout; after an exit the group is kept until its last process
            // is gone (a later start of the host removes it).
            let timed_out = matches!(ended, Ended::TimedOut);
            let _ = tokio::task::spawn_blocking(move || {
                if timed_out {
                    group.kill_all();
                }
                group.remove()
            })
            .await;
        }
        let status = match ended {
            Ended::Exited(status, stdout, stderr) => {
                let log = self
                    .settings
                    .layout
                    .logs_dir()
                    .join(format!("{}.log", c.name));
                if let Ok(log) = LogFile::open(&log) {
                    if privileged {
                        log.write_lines(
                            crate::logfile::Level::Info,
                            b"Bootstrap runs as root (RequiresPrivilege)",
                        );
                        tracing::info!(component = %at, "Bootstrap ran as root (RequiresPrivilege)");
                    }
                    let trim = |b: &[u8]| b.strip_suffix(b"\n").unwrap_or(b).to_vec();
                    log.write_lines(crate::logfile::Level::Info, &trim(&stdout));
                    log.write_lines(crate::logfile::Level::Warn, &trim(&stderr));
                }
                status
            }
            Ended::NotStarted(e) => return Err(failed(BootstrapFailure::NotStarted(e))),
            Ended::TimedOut => return Err(failed(BootstrapFailure::TimedOut(limit))),
        };
        match status.code() {
            Some(0) => {}
            Some(100) => {
                tracing::info!(component = %at, "Bootstrap asked for a restart of the host; Lambkin applies it without one")
            }
            Some(101) => return Err(failed(BootstrapFailure::Reboot)),
            _ => return Err(failed(BootstrapFailure::Exited(status))),
        }
        crate::layout::create_private_dir(&marker_dir)
            .and_then(|()| crate::layout::write_private(&marker, fingerprint.as_bytes()))
            .map_err(|e| failed(BootstrapFailure::Record(e)))
    }

    /// The function a Lambda component defines (`greengrass-reference.md` §1.2–1.3): its
    /// values as `lambkin_proto::recipe::lambda` reads them, then what only the device can
    /// check (its container's paths and devices, containers at all, its layers) and where
    /// its code is.
    fn lambda_function(
        &self,
        c: &PlannedComponent,
    ) -> Result<(FunctionName, FunctionConfig, PathBuf), ComponentError> {
        let component = lambda_component::LambdaComponent {
            name: &c.name,
            setenv: &c.lifecycle.setenv,
            description: c.recipe.as_ref().and_then(|r| r.description.as_deref()),
            configuration: &c.config,
        };
        let lambda_component::LambdaFunction {
            name,
            config: mut function,
            layers,
        } = lambda_component::function(&component)
            .map_err(|error| ComponentError::LambdaSettings { at: at(c), error })?;
        crate::lambda::sandbox::check_on_host(&function.greengrass.isolation)
            .map_err(|error| ComponentError::Isolation { at: at(c), error })?;
        function.layers = self
            .lambda_layers(&layers)
            .map_err(|error| ComponentError::Layers { at: at(c), error })?;
        let code_dir = deployment::paths(&self.settings.layout, &c.name, &c.version)
            .decompressed
            .join("lambda-artifact");
        Ok((name, function, code_dir))
    }
}

impl Actor {
    /// A Lambda component's `layers` (Lambkin's key: layer version ARNs published on this
    /// host, laid over `/opt` in order, as a function's `Layers`).
    fn lambda_layers(
        &self,
        arns: &[String],
    ) -> Result<Vec<lambkin_proto::lambda::function::LayerUse>, crate::lambda::layers::LayersError>
    {
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        let resolved = self.registry.layers().resolve(arns)?;
        Ok(resolved.into_iter().map(|r| r.layer).collect())
    }
}

/// Removes the control group a Lambda component's plain instances shared: they have ended;
/// what they started and left behind (a `setsid` daemon) is killed first.
async fn remove_component_cgroup(name: &str, group: Option<crate::cgroup::Cgroup>) {
    let Some(group) = group else {
        return;
    };
    let removed = tokio::task::spawn_blocking(move || {
        group.kill_all();
        group.remove()
    })
    .await;
    if let Ok(Err(e)) = removed {
        tracing::warn!(component = %name, error = %e, "cannot remove the component's cgroup");
    }
}

/// How a step run to its end ended.
enum Ended {
    /// Exited with its status; what it wrote to stdout and stderr.
    Exited(std::process::ExitStatus, Vec<u8>, Vec<u8>),
    NotStarted(std::io::Error),
    /// Did not exit within its timeout: its process group was killed.
    TimedOut,
}

/// Runs `cmd` (its own process group, stdout and stderr piped) until it exits or `limit`
/// passes; on the timeout its whole process group is killed. Its output is what it wrote
/// until it exited and, for a moment after, what a background child still writes: a child
/// left holding the pipes does not hold the step.
async fn run_to_end(mut cmd: tokio::process::Command, limit: Duration) -> Ended {
    use tokio::io::AsyncReadExt as _;
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return Ended::NotStarted(e),
    };
    let pgid = child.id().and_then(|pid| i32::try_from(pid).ok());
    // What a pipe gave so far stays readable when its reader is given up.
    type Sink = Arc<Mutex<Vec<u8>>>;
    let read = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        let sink = Sink::default();
        let task = tokio::spawn({
            let sink = sink.clone();
            async move {
                let Some(mut pipe) = pipe else { return };
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend_from_slice(&buf[..n]);
                }
            }
        });
        (task, sink)
    };
    let (stdout, stdout_sink) = read(child.stdout.take().map(|p| Box::new(p) as _));
    let (stderr, stderr_sink) = read(child.stderr.take().map(|p| Box::new(p) as _));
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Ended::NotStarted(e),
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill().await;
            stdout.abort();
            stderr.abort();
            return Ended::TimedOut;
        }
    };
    let collect = |task: tokio::task::JoinHandle<()>, sink: Sink| async move {
        let abort = task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .is_err()
        {
            abort.abort();
        }
        std::mem::take(&mut *sink.lock().unwrap_or_else(PoisonError::into_inner))
    };
    let (stdout, stderr) = tokio::join!(collect(stdout, stdout_sink), collect(stderr, stderr_sink));
    Ended::Exited(status, stdout, stderr)
}

/// What of the configurations only deployments may change because of `c`, by target
/// component: a Lambda component's keys that decide how the host runs it, and what its
/// privileged steps read (its own configuration's, or a dependency's).
fn protected_keys(c: &PlannedComponent) -> Vec<(String, ProtectedKey)> {
    let mut keys = Vec::new();
    if c.kind == Kind::Lambda {
        for key in LAMBDA_HOST_KEYS {
            keys.push((
                c.name.clone(),
                ProtectedKey {
                    path: vec![key.to_owned()],
                    why: "it decides how the host runs the function".into(),
                },
            ));
        }
    }
    for (component, pointer) in &c.privileged_reads {
        let path = pointer
            .split('/')
            .skip(1)
            .map(|p| p.replace("~1", "/").replace("~0", "~"))
            .collect();
        keys.push((
            component.clone().unwrap_or_else(|| c.name.clone()),
            ProtectedKey {
                path,
                why: format!("a RequiresPrivilege step of {} reads it", c.name),
            },
        ));
    }
    keys
}

/// How errors name a component: `NAME@VERSION`.
fn at(c: &PlannedComponent) -> String {
    format!("{}@{}", c.name, c.version)
}

/// What identifies a component's running form: version, configuration and lifecycle.
fn fingerprint(c: &PlannedComponent) -> String {
    format!(
        "{}|{}|{:?}|{:?}",
        c.version, c.config, c.lifecycle, c.run_with
    )
}
