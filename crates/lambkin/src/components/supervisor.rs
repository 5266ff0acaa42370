//! One actor per generic component: it owns the component's [`Lifecycle`], runs its steps as
//! shell scripts (`sh -c`, cwd `ROOT/work/NAME`, the component's environment, as the
//! component's user unless the step `RequiresPrivilege`), enforces step timeouts, logs their
//! output to `ROOT/logs/NAME.log`, and reports every state change.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::lifecycle::{Input, Lifecycle, Outcome, Output, State, Step, Steps};
use crate::child::{Setup, User};
use crate::logfile::{Level, LogFile};
use crate::users::RunAs;

/// A condition under which a step is skipped (`Skipif`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipIf {
    /// `onpath EXE`: skip when the executable is on PATH.
    OnPath(String),
    /// `exists FILE`: skip when the file exists.
    Exists(PathBuf),
    /// `!…`: the opposite.
    Not(Box<SkipIf>),
}

impl SkipIf {
    fn holds(&self, env_path: Option<&str>) -> bool {
        match self {
            Self::OnPath(exe) => env_path
                .map(|p| std::env::split_paths(p).any(|dir| dir.join(exe).is_file()))
                .unwrap_or(false),
            Self::Exists(path) => path.exists(),
            Self::Not(inner) => !inner.holds(env_path),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSpec {
    pub script: String,
    /// `None`: no limit (the `Run` step).
    pub timeout: Option<Duration>,
    /// The step's own `Setenv`, over the component's.
    pub env: BTreeMap<String, String>,
    pub skip_if: Option<SkipIf>,
    pub requires_privilege: bool,
}

/// Everything needed to run a component, with variables already interpolated.
#[derive(Debug)]
pub struct ComponentSpec {
    pub name: String,
    pub work_dir: PathBuf,
    pub env: BTreeMap<String, String>,
    pub steps: BTreeMap<StepKey, StepSpec>,
    pub error_reset: Duration,
    /// SIGTERM → SIGKILL when the `Run` process is stopped.
    pub stop_grace: Duration,
    pub log: Arc<LogFile>,
    /// The host's root, marked on every process so a later host can end what outlived it.
    pub host_root: PathBuf,
    /// The user steps run as, except `RequiresPrivilege` ones (the host's user, root); `None`:
    /// the host's user for every step.
    pub run_as: Option<RunAs>,
    /// `systemResourceLimits`: every step's processes share one control group with these
    /// limits (`lambkin/component-NAME`), made when the first step starts and removed when the
    /// supervisor ends. `None`: no group.
    pub limits: Option<crate::cgroup::Limits>,
}

/// [`Step`] as an ordered map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StepKey {
    Install,
    Startup,
    Run,
    Shutdown,
    Recover,
}

impl From<Step> for StepKey {
    fn from(step: Step) -> Self {
        match step {
            Step::Install => Self::Install,
            Step::Startup => Self::Startup,
            Step::Run => Self::Run,
            Step::Shutdown => Self::Shutdown,
            Step::Recover => Self::Recover,
        }
    }
}

impl ComponentSpec {
    fn steps(&self) -> Steps {
        Steps {
            install: self.steps.contains_key(&StepKey::Install),
            startup: self.steps.contains_key(&StepKey::Startup),
            run: self.steps.contains_key(&StepKey::Run),
            shutdown: self.steps.contains_key(&StepKey::Shutdown),
            recover: self.steps.contains_key(&StepKey::Recover),
        }
    }
}

/// A state change, as the deployment engine and `lambkin list` see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateReport {
    pub name: String,
    /// The supervisor that sent it ([`SupervisorHandle::instance`]): a component replaced by a
    /// deployment has a new one, and the old one's last reports may arrive after it.
    pub instance: u64,
    pub state: State,
    /// Why, when the state is ERRORED or BROKEN.
    pub detail: Option<String>,
}

#[derive(Debug)]
enum Command {
    Start,
    Stop,
    Restart,
    Shutdown(oneshot::Sender<()>),
}

/// A handle on a component's actor.
#[derive(Debug)]
pub struct SupervisorHandle {
    tx: mpsc::UnboundedSender<Command>,
    instance: u64,
}

impl SupervisorHandle {
    /// What tells this supervisor's reports from those of others for the same component.
    pub fn instance(&self) -> u64 {
        self.instance
    }
    pub fn start(&self) {
        let _ = self.tx.send(Command::Start);
    }
    pub fn stop(&self) {
        let _ = self.tx.send(Command::Stop);
    }
    pub fn restart(&self) {
        let _ = self.tx.send(Command::Restart);
    }
    /// Stops the component (Shutdown step, then any process it left) and waits.
    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(done)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Starts the actor. Commands are unbounded but tiny and rare (deployments, CLI requests).
pub fn spawn(
    spec: Arc<ComponentSpec>,
    reports: mpsc::UnboundedSender<StateReport>,
) -> SupervisorHandle {
    static INSTANCES: AtomicU64 = AtomicU64::new(1);
    let instance = INSTANCES.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(spec, instance, rx, reports));
    SupervisorHandle { tx, instance }
}

struct RunningStep {
    step: Step,
    child: tokio::process::Child,
    pgid: Option<i32>,
    deadline: Option<Instant>,
    /// SIGTERM was sent; SIGKILL follows at `deadline`.
    terminating: bool,
}

struct Actor {
    spec: Arc<ComponentSpec>,
    instance: u64,
    lifecycle: Lifecycle,
    reports: mpsc::UnboundedSender<StateReport>,
    current: Option<RunningStep>,
    /// Process groups started by steps, killed when the component is shut down.
    groups: BTreeSet<i32>,
    pipes: JoinSet<()>,
    last_failure: Option<String>,
    /// The step whose timeout expired; its exit is reported as a timeout.
    timed_out: Option<Step>,
    /// The component's control group, once a step has needed it.
    cgroup: Option<crate::cgroup::Cgroup>,
    /// A tracking group (no limits) was tried already: make it once, not at every step.
    tracking_tried: bool,
    /// How many processes of the group the kernel had killed for memory when the current
    /// step started.
    oom_before_step: u64,
    /// Engine requests stopping the containers a stopped `Run` started
    /// ([`super::containers`]); the next step waits for them, so that a restarted `Run`'s
    /// new container is never among those stopped.
    container_stops: JoinSet<()>,
}

async fn run(
    spec: Arc<ComponentSpec>,
    instance: u64,
    mut rx: mpsc::UnboundedReceiver<Command>,
    reports: mpsc::UnboundedSender<StateReport>,
) {
    let mut actor = Actor {
        lifecycle: Lifecycle::new(spec.steps(), spec.error_reset),
        spec,
        instance,
        reports,
        current: None,
        groups: BTreeSet::new(),
        pipes: JoinSet::new(),
        last_failure: None,
        timed_out: None,
        cgroup: None,
        tracking_tried: false,
        oom_before_step: 0,
        container_stops: JoinSet::new(),
    };
    let _ = actor.reports.send(StateReport {
        name: actor.spec.name.clone(),
        instance,
        state: State::New,
        detail: None,
    });
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    loop {
        let deadline = actor.current.as_ref().and_then(|c| c.deadline);
        tokio::select! {
            command = rx.recv(), if shutdown.is_none() => match command {
                Some(Command::Start) => actor.input(Input::Start).await,
                Some(Command::Stop) => actor.input(Input::Stop).await,
                Some(Command::Restart) => actor.input(Input::Restart).await,
                Some(Command::Shutdown(done)) => {
                    shutdown = Some(done);
                    actor.input(Input::Stop).await;
                }
                None => {
                    let (done, _) = oneshot::channel();
                    shutdown = Some(done);
                    actor.input(Input::Stop).await;
                }
            },
            status = wait_current(&mut actor.current) => {
                let Some(current) = actor.current.take() else { continue };
                let timed_out = actor.timed_out.take() == Some(current.step);
                let outcome = match status {
                    _ if timed_out => Outcome::TimedOut,
                    Ok(s) if s.success() => Outcome::Succeeded,
                    Ok(s) => Outcome::Failed(actor.describe(s)),
                    Err(e) => Outcome::Failed(e.to_string()),
                };
                if current.terminating && !timed_out {
                    actor.log(Level::Info, &format!("{:?} stopped", current.step));
                    let outputs = actor.lifecycle.on(Input::StepEnded(current.step, outcome), Instant::now());
                    actor.perform(outputs).await;
                } else {
                    actor.step_ended(current.step, outcome).await;
                }
            }
            () = sleep_until(deadline) => actor.on_deadline(),
        }
        if shutdown.is_some() && actor.current.is_none() && !actor.lifecycle.busy() {
            break;
        }
    }
    actor.containers_stopped().await;
    for pgid in std::mem::take(&mut actor.groups) {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    if let Some(group) = actor.cgroup.take() {
        // Its process groups were just killed; what left them (a `setsid` daemon) is still in
        // the cgroup, and goes now. The kernel may take a moment to let the group go.
        let removed = tokio::task::spawn_blocking(move || {
            group.kill_all();
            group.remove()
        })
        .await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(component = %actor.spec.name, error = %e, "cannot remove the component's cgroup");
        }
    }
    // Let the pipes flush what the processes wrote last.
    let flush = async { while actor.pipes.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(1), flush)
        .await
        .is_err()
    {
        actor.pipes.abort_all();
    }
    if let Some(done) = shutdown {
        let _ = done.send(());
    }
}

/// A tracking group's name: the host's pid first (so a restarted host removes what a killed
/// one left, `Cgroups::remove_stale`), then the component and a number of this supervisor's
/// own, so that two hosts, or two supervisors of one name, never share a group (stopping one
/// kills everything in its group).
fn tracking_label(component: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("component-{component}-{n}")
}

async fn wait_current(
    current: &mut Option<RunningStep>,
) -> std::io::Result<std::process::ExitStatus> {
    match current {
        Some(c) => c.child.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

impl Actor {
    /// How a step ended, saying so when the kernel killed it for going over its memory limit.
    fn describe(&self, status: std::process::ExitStatus) -> String {
        let why = describe(status);
        let limit = self.spec.limits.and_then(|l| l.memory_bytes);
        match (&self.cgroup, limit) {
            // The process killed may be one the step's shell started: the shell then exits 137.
            (Some(group), Some(bytes)) if oom_kills(group) > self.oom_before_step => {
                format!(
                    "{why}: it went over its memory limit of {} KB (systemResourceLimits)",
                    bytes / 1024
                )
            }
            _ => why,
        }
    }

    /// The component's control group, made on first use: its `systemResourceLimits`, or,
    /// without limits, a group that only holds its processes together (where the host can
    /// make one: as root, with cgroups), so that a stop ends every process it started.
    fn cgroup(&mut self) -> Result<Option<&crate::cgroup::Cgroup>, String> {
        let Some(limits) = self.spec.limits else {
            if self.cgroup.is_none() && !self.tracking_tried {
                self.tracking_tried = true;
                match crate::cgroup::tracking(&tracking_label(&self.spec.name)) {
                    Ok(group) => self.cgroup = Some(group),
                    Err(e) => {
                        tracing::debug!(component = %self.spec.name, error = %e, "no cgroup to hold the component's processes; its process groups are stopped instead")
                    }
                }
            }
            return Ok(self.cgroup.as_ref());
        };
        if self.cgroup.is_none() {
            let cgroups = crate::cgroup::host()
                .map_err(|e| format!("systemResourceLimits need cgroups: {e}"))?;
            let group = cgroups
                .create(&format!("component-{}", self.spec.name), limits)
                .map_err(|e| format!("cannot apply systemResourceLimits: {e}"))?;
            self.cgroup = Some(group);
        }
        Ok(self.cgroup.as_ref())
    }

    async fn input(&mut self, input: Input) {
        let outputs = self.lifecycle.on(input, Instant::now());
        self.perform(outputs).await;
    }

    async fn step_ended(&mut self, step: Step, outcome: Outcome) {
        match &outcome {
            Outcome::Succeeded => {}
            Outcome::Failed(why) => {
                self.log(Level::Warn, &format!("{step:?} failed: {why}"));
                self.last_failure = Some(format!("{step:?} failed: {why}"));
            }
            Outcome::TimedOut => {
                self.log(Level::Warn, &format!("{step:?} timed out"));
                self.last_failure = Some(format!("{step:?} timed out"));
            }
        }
        let outputs = self
            .lifecycle
            .on(Input::StepEnded(step, outcome), Instant::now());
        Box::pin(self.perform(outputs)).await;
    }

    fn log(&self, level: Level, line: &str) {
        self.spec.log.write_lines(level, line.as_bytes());
    }

    async fn perform(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Entered(state) => {
                    let detail = matches!(state, State::Errored | State::Broken)
                        .then(|| self.last_failure.clone())
                        .flatten();
                    self.log(Level::Info, &format!("state: {state}"));
                    let _ = self.reports.send(StateReport {
                        name: self.spec.name.clone(),
                        instance: self.instance,
                        state,
                        detail,
                    });
                }
                Output::RunStep(step) => self.start_step(step).await,
                Output::StopRun => {
                    if let Some(current) = self.current.as_mut() {
                        if current.step == Step::Run && !current.terminating {
                            if let Some(pgid) = current.pgid {
                                let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
                            }
                            current.terminating = true;
                            let deadline = Instant::now() + self.spec.stop_grace;
                            current.deadline = Some(deadline);
                            self.stop_containers(deadline);
                        }
                    }
                }
            }
        }
    }

    /// When `Run` calls `docker`: asks the engine to stop the containers handed the
    /// component's token by `deadline`, the end of the stop grace ([`super::containers`]).
    fn stop_containers(&mut self, deadline: Instant) {
        let runs_docker = self
            .spec
            .steps
            .get(&StepKey::Run)
            .is_some_and(|run| super::containers::uses_docker(&run.script));
        let Some(token) = self.spec.env.get("SVCUID").filter(|_| runs_docker) else {
            return;
        };
        let token = token.clone();
        let name = self.spec.name.clone();
        let log = self.spec.log.clone();
        self.container_stops.spawn(async move {
            match super::containers::stop_handed(&token, deadline).await {
                Ok(ids) if ids.is_empty() => {}
                Ok(ids) => {
                    let line = format!("stopped its containers {}", ids.join(" "));
                    log.write_lines(Level::Info, line.as_bytes());
                }
                Err(why) => {
                    tracing::warn!(component = %name, error = %why, "cannot stop the component's containers");
                    let line = format!("cannot stop its containers: {why}");
                    log.write_lines(Level::Warn, line.as_bytes());
                }
            }
        });
    }

    /// Waits for the container stops under way (each bounded by its `docker` timeouts).
    async fn containers_stopped(&mut self) {
        while self.container_stops.join_next().await.is_some() {}
    }

    async fn start_step(&mut self, step: Step) {
        self.containers_stopped().await;
        let Some(spec) = self.spec.steps.get(&StepKey::from(step)).cloned() else {
            // A step the lifecycle asked for but the recipe lacks: nothing to run.
            Box::pin(self.step_ended(step, Outcome::Succeeded)).await;
            return;
        };
        let mut env = self.spec.env.clone();
        env.extend(spec.env.clone());
        let path = env
            .get("PATH")
            .cloned()
            .or_else(|| crate::child_env::path().to_str().map(str::to_owned));
        if spec
            .skip_if
            .as_ref()
            .is_some_and(|s| s.holds(path.as_deref()))
        {
            self.log(Level::Info, &format!("{step:?} skipped (Skipif)"));
            Box::pin(self.step_ended(step, Outcome::Succeeded)).await;
            return;
        }
        let mut cmd = std::process::Command::new("sh");
        crate::child_env::start_empty(&mut cmd);
        cmd.arg("-c")
            .arg(&spec.script)
            .current_dir(&self.spec.work_dir)
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let cgroups = match self.cgroup() {
            Ok(Some(group)) => Some((oom_kills(group), group.procs_files())),
            Ok(None) => None,
            Err(why) => {
                Box::pin(self.step_ended(step, Outcome::Failed(why))).await;
                return;
            }
        };
        let cgroups = match cgroups {
            Some((oom_before, files)) => {
                self.oom_before_step = oom_before;
                files
            }
            None => Vec::new(),
        };
        let user = match self.spec.run_as.as_ref() {
            Some(run_as) if !spec.requires_privilege => User::Become(run_as),
            run_as => {
                // Said where the component's owner looks, each time: a step that would
                // otherwise run as the component's user runs as root.
                if run_as.is_some_and(|r| !r.is_root()) && crate::users::host_identity().is_root() {
                    self.log(
                        Level::Info,
                        &format!("{step:?} runs as root (RequiresPrivilege)"),
                    );
                    tracing::info!(component = %self.spec.name, step = ?step, "step runs as root (RequiresPrivilege)");
                }
                User::Host
            }
        };
        let host_root = self.spec.host_root.clone();
        let prepared = crate::child::prepare(
            &mut cmd,
            Setup {
                marker: Some(&host_root),
                cgroups,
                user,
                ..Setup::default()
            },
        );
        if let Err(e) = prepared {
            let why = format!("cannot join the component's cgroup: {e}");
            Box::pin(self.step_ended(step, Outcome::Failed(why))).await;
            return;
        }
        match tokio::process::Command::from(cmd).spawn() {
            Ok(mut child) => {
                let pgid = child.id().map(|p| p as i32);
                if let Some(pgid) = pgid {
                    self.groups.insert(pgid);
                }
                if let Some(out) = child.stdout.take() {
                    self.pipes
                        .spawn(pump(out, self.spec.log.clone(), Level::Info));
                }
                if let Some(err) = child.stderr.take() {
                    self.pipes
                        .spawn(pump(err, self.spec.log.clone(), Level::Warn));
                }
                self.current = Some(RunningStep {
                    step,
                    child,
                    pgid,
                    deadline: spec.timeout.map(|t| Instant::now() + t),
                    terminating: false,
                });
            }
            Err(e) => {
                let why = format!("cannot start sh: {e}");
                Box::pin(self.step_ended(step, Outcome::Failed(why))).await;
            }
        }
    }

    /// A step overran its timeout, or a stopped `Run` outlived its grace period.
    fn on_deadline(&mut self) {
        let Some(current) = self.current.as_mut() else {
            return;
        };
        current.deadline = None;
        if let Some(pgid) = current.pgid {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        if !current.terminating {
            // Reported as a timeout once the process is gone.
            current.terminating = true;
            let step = current.step;
            self.last_failure = Some(format!("{step:?} timed out"));
            self.timed_out = Some(step);
        }
    }
}

/// How many of `group`'s processes the kernel has killed for memory (`oom_kill` of v1's
/// `memory.oom_control` or v2's `memory.events`).
fn oom_kills(group: &crate::cgroup::Cgroup) -> u64 {
    group
        .procs_files()
        .iter()
        .filter_map(|procs| procs.parent())
        .flat_map(|dir| ["memory.oom_control", "memory.events"].map(|f| dir.join(f)))
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.strip_prefix("oom_kill "))
                .filter_map(|n| n.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0)
}

/// Copies a step's output into the component's log, line by line.
async fn pump(stream: impl AsyncRead + Unpin, log: Arc<LogFile>, level: Level) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        log.write_lines(level, line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path, steps: &[(StepKey, &str, Option<u64>)]) -> Arc<ComponentSpec> {
        Arc::new(ComponentSpec {
            name: "test.Component".into(),
            work_dir: dir.to_owned(),
            env: BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())]),
            steps: steps
                .iter()
                .map(|(key, script, timeout)| {
                    (
                        *key,
                        StepSpec {
                            script: (*script).to_owned(),
                            timeout: timeout.map(Duration::from_secs),
                            env: BTreeMap::new(),
                            skip_if: None,
                            requires_privilege: false,
                        },
                    )
                })
                .collect(),
            error_reset: Duration::from_secs(3600),
            stop_grace: Duration::from_millis(500),
            log: Arc::new(LogFile::open(&dir.join("component.log")).unwrap()),
            host_root: dir.to_owned(),
            run_as: None,
            limits: None,
        })
    }

    /// How long a test waits for anything it expects.
    const PATIENCE: Duration = Duration::from_secs(20);

    async fn wait_for_state(
        rx: &mut mpsc::UnboundedReceiver<StateReport>,
        want: State,
    ) -> Vec<State> {
        let mut seen = Vec::new();
        wait_for_report(rx, want, &mut seen).await;
        seen
    }

    /// The first report of `want`, the states before it added to `seen`; fails after
    /// [`PATIENCE`].
    async fn wait_for_report(
        rx: &mut mpsc::UnboundedReceiver<StateReport>,
        want: State,
        seen: &mut Vec<State>,
    ) -> StateReport {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let report = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no {want} after {seen:?}"))
                .unwrap();
            seen.push(report.state);
            if report.state == want {
                return report;
            }
        }
    }

    /// Polls `f` until it returns `Some`; fails naming `what` after [`PATIENCE`].
    async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "{what} did not happen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn install_and_run_with_the_component_environment() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec(
            tmp.path(),
            &[
                (StepKey::Install, "echo installed > installed.txt", Some(10)),
                (StepKey::Run, "echo \"$GREETING from run\"; sleep 30", None),
            ],
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handle = spawn(spec, tx);
        handle.start();
        let seen = wait_for_state(&mut rx, State::Running).await;
        assert_eq!(
            seen,
            vec![
                State::New,
                State::Installed,
                State::Starting,
                State::Running
            ]
        );
        assert!(tmp.path().join("installed.txt").is_file());
        let log_path = tmp.path().join("component.log");
        eventually("the Run step's output reaching the log", || {
            std::fs::read_to_string(&log_path)
                .ok()
                .filter(|log| log.contains("hello from run"))
        })
        .await;
        handle.shutdown().await;
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(log.contains("Run stopped"), "{log}");
        assert!(log.contains("state: FINISHED"), "{log}");
    }

    #[tokio::test]
    async fn a_run_that_keeps_failing_goes_broken_after_three_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec(
            tmp.path(),
            &[
                (StepKey::Run, "echo run >> runs.txt; exit 3", None),
                (StepKey::Recover, "echo recovered >> recover.txt", Some(5)),
            ],
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handle = spawn(spec, tx);
        handle.start();
        wait_for_state(&mut rx, State::Broken).await;
        let runs = std::fs::read_to_string(tmp.path().join("runs.txt")).unwrap();
        assert_eq!(runs.lines().count(), 3, "started three times, not again");
        let recovers = std::fs::read_to_string(tmp.path().join("recover.txt")).unwrap();
        assert_eq!(recovers.lines().count(), 2);
        handle.shutdown().await;
    }

    #[tokio::test]
    async fn a_startup_that_overruns_its_timeout_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec(tmp.path(), &[(StepKey::Startup, "sleep 30", Some(1))]);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handle = spawn(spec, tx);
        handle.start();
        // Errored for the timeout (the step itself would sleep 30 s, then succeed).
        let report = wait_for_report(&mut rx, State::Errored, &mut Vec::new()).await;
        assert_eq!(report.detail.as_deref(), Some("Startup timed out"));
        handle.shutdown().await;
    }

    #[tokio::test]
    async fn stopping_runs_shutdown_and_kills_what_run_left() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec(
            tmp.path(),
            &[
                (StepKey::Run, "sleep 60 & echo $! > child.pid; wait", None),
                (StepKey::Shutdown, "echo bye > shutdown.txt", Some(5)),
            ],
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handle = spawn(spec, tx);
        handle.start();
        wait_for_state(&mut rx, State::Running).await;
        let pid_file = tmp.path().join("child.pid");
        let pid = eventually("the Run step writing its child's pid", || {
            std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
        })
        .await;
        handle.stop();
        wait_for_state(&mut rx, State::Finished).await;
        assert!(tmp.path().join("shutdown.txt").is_file());
        // SIGKILL was sent to the group; the kernel ends the process promptly but not
        // synchronously, so give it a moment (a survivor would still be there after 5 s).
        let gone = || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                stat.contains(") Z ") || stat.contains(") X ")
            }
        };
        eventually("the Run step's child going with the stop", || {
            gone().then_some(())
        })
        .await;
        handle.shutdown().await;
    }
}
