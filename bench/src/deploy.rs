//! `lambkin-bench deploy`: a local Greengrass deployment of many components on a fresh root,
//! timed from `lambkin deploy` to everything running, then a host restart timed the same way,
//! against a baseline measured in the same run: the same Install and Run scripts and the same
//! Python handler imports, started directly by the bench without Lambkin.
//!
//! Every repetition: the baseline, then a fresh root, `lambkin run`, `lambkin deploy`, a
//! restart (SIGTERM, wait for the exit, `lambkin run` again), and the host stopped. The report
//! shows medians.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::deploy_report::{
    self, Baseline, DeploySample, Phases, Python, Rep, Report, RestartSample, Stopped, INSTALL, RUN,
};
use crate::procfs;

/// The version every benchmark component has.
const VERSION: &str = "1.0.0";
/// How long anything the bench waits for may take before the run fails.
const WAIT_LIMIT: Duration = Duration::from_secs(120);
/// How long the host has to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Polling intervals: the marker directory, `api.addr`, and `lambkin list` (a process each).
const MARKER_POLL: Duration = Duration::from_millis(2);
const ADDR_POLL: Duration = Duration::from_millis(2);
const LIST_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Generic components (Install `true`, Run `echo started; exec sleep 3600`).
    #[arg(long, default_value_t = 50)]
    pub generic: usize,
    /// Pinned Python Lambda components (one process each).
    #[arg(long, default_value_t = 10)]
    pub lambdas: usize,
    /// Repetitions of every measurement; the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// The Python interpreter, given to Lambkin (`[lambda] python`) and used by the baseline.
    /// Default: the one Lambkin picks itself (`python3.MINOR`, else `python3`, from PATH).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Keep the work directory (roots, logs) and say where it is.
    #[arg(long)]
    pub keep: bool,
}

/// `lambkin-bench deploy`: runs the measurements and prints the table; every process started
/// is stopped on the way out, also on an error, Ctrl-C or SIGTERM.
pub fn main(lambkin: Option<PathBuf>, args: &Args) -> ExitCode {
    crate::run_to_table(run(lambkin, args), deploy_report::render)
}

fn say(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

/// Everything one run deploys: recipes and artifacts, written once, used by every repetition.
#[derive(Debug)]
struct Workload {
    recipes: PathBuf,
    artifacts: PathBuf,
    /// Where each handler module drops its marker when it is imported.
    ready: PathBuf,
    generic: Vec<String>,
    lambdas: Vec<String>,
    python: Python,
}

impl Workload {
    fn merges(&self) -> Vec<String> {
        self.generic
            .iter()
            .chain(&self.lambdas)
            .map(|name| format!("{name}={VERSION}"))
            .collect()
    }

    fn names(&self) -> Vec<String> {
        self.generic.iter().chain(&self.lambdas).cloned().collect()
    }
}

async fn run(lambkin: Option<PathBuf>, args: &Args) -> anyhow::Result<Report> {
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let lambkin = crate::binary(lambkin.as_deref(), "lambkin")?;
    let loadavg_start = procfs::loadavg();
    let python = find_python(args.python.as_deref())?;
    say(format!(
        "Lambda components: runtime {}, interpreter {} ({})",
        python.runtime,
        python.interpreter.display(),
        python.version
    ));
    let work = tempfile::Builder::new()
        .prefix("lambkin-bench-deploy-")
        .tempdir()
        .context("cannot create the work directory")?;
    let workload = write_workload(work.path(), args.generic, args.lambdas, python)?;

    let mut reps = Vec::with_capacity(args.reps);
    for rep in 1..=args.reps {
        let rep_dir = work.path().join(format!("rep-{rep}"));
        fs::create_dir_all(&rep_dir)?;
        say(format!("repetition {rep}/{}: baseline", args.reps));
        let baseline = baseline(&workload, &rep_dir).await?;
        say(format!(
            "repetition {rep}/{}: lambkin deploy, then a restart",
            args.reps
        ));
        reps.push(lambkin_rep(&lambkin, &workload, &rep_dir, baseline).await?);
    }
    let report = Report {
        generic: args.generic,
        lambdas: args.lambdas,
        python: workload.python.clone(),
        reps,
        loadavg_start,
        loadavg_end: procfs::loadavg(),
        kept: args.keep.then(|| work.path().to_owned()),
    };
    if args.keep {
        let kept = work.keep();
        say(format!("kept the work directory {}", kept.display()));
    }
    Ok(report)
}

/// One repetition on Lambkin: a fresh root, the deployment, the restart, the host stopped.
async fn lambkin_rep(
    lambkin: &Path,
    w: &Workload,
    rep_dir: &Path,
    baseline: Baseline,
) -> anyhow::Result<Rep> {
    let root = rep_dir.join("root");
    fs::create_dir_all(&root)?;
    if w.python.configured {
        let quoted = serde_json::to_string(&w.python.interpreter.to_string_lossy())?;
        fs::write(
            root.join("config.toml"),
            format!("[lambda]\npython = {quoted}\n"),
        )?;
    }
    let host_log = rep_dir.join("host.out");
    let (mut host, _) = start_host(lambkin, &root, &host_log).await?;

    // The deployment, timed from the command's start.
    clear_dir(&w.ready)?;
    let deploy_log = rep_dir.join("deploy.out");
    let wall = SystemTime::now();
    let started = Instant::now();
    let command = async {
        let status = tokio::process::Command::new(lambkin)
            .arg("deploy")
            .arg("--root")
            .arg(&root)
            .arg("-r")
            .arg(&w.recipes)
            .arg("-a")
            .arg(&w.artifacts)
            .args(w.merges().iter().flat_map(|m| ["-m", m.as_str()]))
            .stdin(Stdio::null())
            .stdout(File::create(&deploy_log)?)
            .stderr(File::create(rep_dir.join("deploy.err"))?)
            .kill_on_drop(true)
            .status()
            .await
            .context("cannot run lambkin deploy")?;
        let exit = started.elapsed();
        if !status.success() {
            bail!(
                "lambkin deploy failed ({status}): {} {}",
                tail(&deploy_log),
                tail(&rep_dir.join("deploy.err"))
            );
        }
        let (all_running, listed) = wait_all_running(lambkin, &root, &w.names(), started).await?;
        Ok((exit, all_running, listed))
    };
    let ((exit, all_running, listed), handlers) = tokio::try_join!(
        command,
        wait_markers(&w.ready, w.lambdas.len(), started, host.pid())
    )?;
    let host_processes = procfs::descendants(host.pid()).len();
    let deploy = DeploySample {
        exit,
        all_running,
        handlers,
        listed,
        host_processes,
        phases: generic_phases(&root, &w.generic, wall, Occurrence::First),
    };

    // The restart: SIGTERM, wait for the exit, `lambkin run` again.
    let stop = host.stop();
    clear_dir(&w.ready)?;
    let wall = SystemTime::now();
    let started = Instant::now();
    let start = async {
        let (host, addr) = start_host(lambkin, &root, &host_log).await?;
        let (all_running, _) = wait_all_running(lambkin, &root, &w.names(), started).await?;
        Ok((host, addr, all_running))
    };
    let ((mut host, addr, all_running), handlers) =
        tokio::try_join!(start, wait_markers(&w.ready, w.lambdas.len(), started, 0))?;
    let restart = RestartSample {
        addr,
        all_running,
        handlers,
        phases: generic_phases(&root, &w.generic, wall, Occurrence::Last),
    };
    let final_stop = host.stop();
    Ok(Rep {
        baseline,
        deploy,
        stop,
        restart,
        final_stop,
    })
}

/// The components' own start time, without Lambkin: the Python handler imports spawned first
/// (they run side by side), then each generic component's Install run to its end and its Run
/// spawned, one component after the other; done when every Run is started and every handler
/// module has been imported.
async fn baseline(w: &Workload, rep_dir: &Path) -> anyhow::Result<Baseline> {
    let dir = rep_dir.join("baseline");
    let mut code_dirs = Vec::with_capacity(w.lambdas.len());
    for name in &w.lambdas {
        let code = dir.join("code").join(name);
        fs::create_dir_all(&code)?;
        fs::write(
            code.join("lambda_function.py"),
            handler_module(&w.ready, name)?,
        )?;
        code_dirs.push(code);
    }
    let mut work_dirs = Vec::with_capacity(w.generic.len());
    for name in &w.generic {
        let work = dir.join("work").join(name);
        fs::create_dir_all(&work)?;
        work_dirs.push(work);
    }
    let logs = dir.join("logs");
    fs::create_dir_all(&logs)?;
    clear_dir(&w.ready)?;

    let mut children = Children::default();
    let started = Instant::now();
    for (name, code) in w.lambdas.iter().zip(&code_dirs) {
        let mut command = Command::new(&w.python.interpreter);
        command
            .arg("-c")
            .arg("import lambda_function")
            .current_dir(code)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(logs.join(format!("{name}.err")))?);
        children.spawn(command)?;
    }
    for (name, work) in w.generic.iter().zip(&work_dirs) {
        let log = logs.join(format!("{name}.log"));
        let status = Command::new("sh")
            .arg("-c")
            .arg(INSTALL)
            .current_dir(work)
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("cannot run the Install step of {name}"))?;
        if !status.success() {
            bail!("the Install step of {name} failed: {status}");
        }
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(RUN)
            .current_dir(work)
            .stdin(Stdio::null())
            .stdout(OpenOptions::new().append(true).open(&log)?)
            .stderr(Stdio::null());
        children.spawn(command)?;
    }
    let generic = started.elapsed();
    let python = wait_markers(&w.ready, w.lambdas.len(), started, 0)
        .await
        .with_context(|| format!("baseline Python imports (stderr under {})", logs.display()))?;
    // The Python processes have exited by now; the Run processes are still running.
    let running = children.running();
    if running < w.generic.len() {
        bail!(
            "only {running} of the baseline's {} Run processes are running",
            w.generic.len()
        );
    }
    drop(children);
    Ok(Baseline {
        total: generic.max(python),
        generic,
        python,
    })
}

/// Processes the baseline started: killed and reaped when dropped.
#[derive(Debug, Default)]
struct Children(Vec<Child>);

impl Children {
    fn spawn(&mut self, mut command: Command) -> anyhow::Result<()> {
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {command:?}"))?;
        self.0.push(child);
        Ok(())
    }

    /// How many have not exited.
    fn running(&mut self) -> usize {
        self.0
            .iter_mut()
            .filter_map(|c| c.try_wait().ok())
            .filter(Option::is_none)
            .count()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// `lambkin run` on `root`, timed from its spawn to `ROOT/state/api.addr`.
async fn start_host(
    lambkin: &Path,
    root: &Path,
    log: &Path,
) -> anyhow::Result<(HostProcess, Duration)> {
    let addr_file = root.join("state").join("api.addr");
    match fs::remove_file(&addr_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context("cannot remove a stale api.addr"),
    }
    let out = OpenOptions::new().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    let started = Instant::now();
    let child = Command::new(lambkin)
        .arg("run")
        .arg("--root")
        .arg(root)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {}", lambkin.display()))?;
    let mut host = HostProcess { child: Some(child) };
    loop {
        if fs::read_to_string(&addr_file).is_ok_and(|text| !text.trim().is_empty()) {
            return Ok((host, started.elapsed()));
        }
        if let Err(e) = host.check_running() {
            return Err(e.context(tail(log)));
        }
        if started.elapsed() >= WAIT_LIMIT {
            bail!(
                "lambkin did not write {} within {WAIT_LIMIT:?}; {}",
                addr_file.display(),
                tail(log)
            );
        }
        tokio::time::sleep(ADDR_POLL).await;
    }
}

/// A running `lambkin run`: stopped (SIGTERM, then SIGKILL) when dropped, with whatever it
/// left behind.
#[derive(Debug)]
struct HostProcess {
    child: Option<Child>,
}

impl HostProcess {
    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("lambkin exited early: {status}");
            }
        }
        Ok(())
    }

    /// SIGTERM, a wait for the exit (SIGKILL after [`STOP_GRACE`]), then SIGKILL for any
    /// process the host started and left running. Timed from the signal to the exit.
    fn stop(&mut self) -> Stopped {
        let Some(mut child) = self.child.take() else {
            return Stopped::default();
        };
        let before = procfs::descendants(child.id());
        let started = Instant::now();
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let mut killed = false;
        let mut status = None;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => {
                    status = Some(s);
                    break;
                }
                Err(_) => break,
                Ok(None) if started.elapsed() >= STOP_GRACE => {
                    eprintln!(
                        "bench: lambkin did not stop within {STOP_GRACE:?} of SIGTERM; killing it"
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    killed = true;
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        let took = started.elapsed();
        let left: Vec<_> = before.iter().filter(|p| p.alive()).collect();
        for proc in &left {
            if let Ok(pid) = i32::try_from(proc.pid) {
                eprintln!(
                    "bench: lambkin left process {} running; killing it",
                    proc.pid
                );
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        Stopped {
            took,
            left: left.len(),
            killed,
            clean_exit: status.is_some_and(|s| s.success()),
        }
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `lambkin list --json` until every component in it is RUNNING and all of `names` are
/// there; returns the time since `started` and how many components the list holds.
async fn wait_all_running(
    lambkin: &Path,
    root: &Path,
    names: &[String],
    started: Instant,
) -> anyhow::Result<(Duration, usize)> {
    loop {
        let output = tokio::process::Command::new(lambkin)
            .arg("list")
            .arg("--root")
            .arg(root)
            .arg("--json")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("cannot run lambkin list")?;
        let seen = started.elapsed();
        let last = if output.status.success() {
            let list: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)
                .context("lambkin list --json did not print a JSON array")?;
            let state = |name: &str| {
                list.iter()
                    .find(|c| c["name"] == name)
                    .and_then(|c| c["state"].as_str())
            };
            let all_listed = names.iter().all(|n| state(n).is_some());
            let all_running = list.iter().all(|c| c["state"] == "RUNNING");
            if all_listed && all_running {
                return Ok((seen, list.len()));
            }
            let not_running: Vec<String> = list
                .iter()
                .filter(|c| c["state"] != "RUNNING")
                .map(|c| format!("{} {}", c["name"], c["state"]))
                .collect();
            format!(
                "{} listed, {} of ours missing, not RUNNING: {}",
                list.len(),
                names.iter().filter(|n| state(n).is_none()).count(),
                not_running.join(", ")
            )
        } else {
            String::from_utf8_lossy(&output.stderr).trim().to_owned()
        };
        if seen >= WAIT_LIMIT {
            bail!("not every component was RUNNING within {WAIT_LIMIT:?}: {last}");
        }
        tokio::time::sleep(LIST_POLL).await;
    }
}

/// Waits until `count` handler modules have dropped their markers in `dir`; returns the time
/// since `started`. With a host pid, fails early if the host has gone.
async fn wait_markers(
    dir: &Path,
    count: usize,
    started: Instant,
    host: u32,
) -> anyhow::Result<Duration> {
    loop {
        let seen = fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .count();
        if seen >= count {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= WAIT_LIMIT {
            bail!("only {seen} of {count} Lambda handlers were imported within {WAIT_LIMIT:?}");
        }
        if host != 0 && !Path::new(&format!("/proc/{host}")).exists() {
            bail!("the host exited while the Lambda handlers were starting");
        }
        tokio::time::sleep(MARKER_POLL).await;
    }
}

/// Which of a component's `state:` lines to read: the deployment's (the first ones) or the
/// restart's (the last ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Occurrence {
    First,
    Last,
}

/// When the generic components went through their states, from their logs' `state:` lines
/// (millisecond timestamps), as times since `start`.
fn generic_phases(
    root: &Path,
    names: &[String],
    start: SystemTime,
    which: Occurrence,
) -> Option<Phases> {
    let start = start.duration_since(UNIX_EPOCH).ok()?.as_secs_f64() % 86_400.0;
    let mut first_installed = f64::INFINITY;
    let mut last_running = f64::NEG_INFINITY;
    for name in names {
        let log = fs::read_to_string(root.join("logs").join(format!("{name}.log"))).ok()?;
        let at = |state: &str| {
            let mut lines = log.lines().filter(|l| l.ends_with(state));
            let line = match which {
                Occurrence::First => lines.next(),
                Occurrence::Last => lines.next_back(),
            };
            line.and_then(log_time_of_day).map(|t| ms_since(start, t))
        };
        first_installed = first_installed.min(at("state: INSTALLED")?);
        last_running = last_running.max(at("state: RUNNING")?);
    }
    (!names.is_empty()).then_some(Phases {
        first_installed_ms: first_installed,
        last_running_ms: last_running,
    })
}

/// Seconds since midnight (UTC) of a log line that starts `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn log_time_of_day(line: &str) -> Option<f64> {
    let hours: f64 = line.get(11..13)?.parse().ok()?;
    let minutes: f64 = line.get(14..16)?.parse().ok()?;
    let seconds: f64 = line.get(17..23)?.parse().ok()?;
    Some(hours * 3600.0 + minutes * 60.0 + seconds)
}

/// Milliseconds from `start` to `t`, both seconds since midnight (across one midnight).
fn ms_since(start: f64, t: f64) -> f64 {
    let mut d = t - start;
    if d < -43_200.0 {
        d += 86_400.0;
    }
    d * 1e3
}

fn clear_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot clear {}", dir.display())),
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// The last lines of a log, for an error message.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "{} ends with:\n{}",
        path.display(),
        lines[lines.len().saturating_sub(20)..].join("\n")
    )
}

/// Finds the interpreter: `--python`, else the one Lambkin would pick for `python3.MINOR`
/// (that name on PATH, else `python3`, the first that runs), MINOR taken from `python3`.
fn find_python(explicit: Option<&Path>) -> anyhow::Result<Python> {
    let probe = match explicit {
        Some(p) => p.to_owned(),
        None => working_interpreter("python3")
            .ok_or_else(|| anyhow!("no working python3 on PATH (or give --python)"))?,
    };
    let minor = Command::new(&probe)
        .args(["-c", "import sys; print(sys.version_info[1])"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", probe.display()))?;
    let minor = String::from_utf8_lossy(&minor.stdout).trim().to_owned();
    if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
        bail!("{} did not say its version", probe.display());
    }
    let runtime = format!("python3.{minor}");
    let interpreter = match explicit {
        Some(p) => p.to_owned(),
        None => working_interpreter(&runtime)
            .or_else(|| working_interpreter("python3"))
            .ok_or_else(|| anyhow!("no working {runtime} or python3 on PATH"))?,
    };
    let version = Command::new(&interpreter)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text).trim().to_owned()
        })
        .unwrap_or_default();
    Ok(Python {
        interpreter,
        runtime,
        version,
        configured: explicit.is_some(),
    })
}

/// `name` on PATH, if it exists and `name --version` succeeds (as Lambkin probes).
fn working_interpreter(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .filter(|found| {
            Command::new(found)
                .arg("--version")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// Recipes and artifacts for `generic` generic and `lambdas` Lambda components under `dir`.
fn write_workload(
    dir: &Path,
    generic: usize,
    lambdas: usize,
    python: Python,
) -> anyhow::Result<Workload> {
    let recipes = dir.join("recipes");
    let artifacts = dir.join("artifacts");
    let ready = dir.join("ready");
    fs::create_dir_all(&recipes)?;
    fs::create_dir_all(&artifacts)?;
    fs::create_dir_all(&ready)?;
    let generic: Vec<String> = (1..=generic)
        .map(|i| format!("com.example.bench.Generic{i:02}"))
        .collect();
    let lambdas: Vec<String> = (1..=lambdas)
        .map(|i| format!("bench-lambda-{i:02}"))
        .collect();
    for name in &generic {
        write_json(
            &recipes.join(format!("{name}-{VERSION}.json")),
            &generic_recipe(name),
        )?;
    }
    for name in &lambdas {
        let zip = handler_zip(&handler_module(&ready, name)?)?;
        let artifact_dir = artifacts.join(name).join(VERSION);
        fs::create_dir_all(&artifact_dir)?;
        fs::write(artifact_dir.join("lambda-artifact.zip"), zip)?;
        write_json(
            &recipes.join(format!("{name}-{VERSION}.json")),
            &lambda_recipe(name, &python.runtime, &ready),
        )?;
    }
    Ok(Workload {
        recipes,
        artifacts,
        ready,
        generic,
        lambdas,
        python,
    })
}

fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn generic_recipe(name: &str) -> serde_json::Value {
    serde_json::json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": VERSION,
        "ComponentDescription": "Deployment benchmark: a generic component",
        "ComponentPublisher": "lambkin-bench",
        "Manifests": [{
            "Platform": {"os": "linux"},
            "Lifecycle": {"Install": INSTALL, "Run": RUN},
        }],
    })
}

/// A Lambda component's recipe, shaped as the cloud generates it for an imported function.
/// The function runs in a GreengrassContainer, so the directory its handler drops its marker
/// in is given to it as a `rw` volume at the same path.
fn lambda_recipe(name: &str, runtime: &str, ready: &Path) -> serde_json::Value {
    crate::recipes::LambdaRecipe {
        name,
        version: VERSION,
        description: "Deployment benchmark: a pinned Python function".into(),
        configuration: serde_json::json!({
            "lambdaExecutionParameters": {"EnvironmentVariables": {}},
            "containerParams": {
                "memorySize": 16384,
                "mountROSysfs": false,
                "volumes": {"0": {
                    "sourcePath": ready,
                    "destinationPath": ready,
                    "permission": "rw",
                    "addGroupOwner": false,
                }},
                "devices": {},
            },
            "containerMode": "GreengrassContainer",
            "timeoutInSeconds": 3,
            "maxInstancesCount": 100,
            "inputPayloadEncodingType": "json",
            "maxQueueSize": 1000,
            "pinned": true,
            "maxIdleTimeInSeconds": 60,
            "statusTimeoutInSeconds": 60,
            "pubsubTopics": {
                "0": {"topic": "core/topic", "type": "IOT_CORE"},
                "1": {"topic": "local/topic", "type": "PUB_SUB"},
                "2": {"topic": "#", "type": "IOT_CORE"},
            },
        }),
        handler: "lambda_function.lambda_handler",
        runtime,
        setenv: serde_json::json!({
            "AWS_GREENGRASS_LAMBDA_RUNTIME_PATH": "{aws.greengrass.LambdaRuntimes:artifacts:decompressedPath}/runtime/",
            "AWS_GREENGRASS_LAMBDA_EXEC_ARGS": serde_json::json!([
                runtime, "-u", "/runtime/python/lambda_runtime.py",
                "--handler=lambda_function.lambda_handler",
            ]).to_string(),
        }),
    }
    .to_json()
}

/// The handler module: importing it drops the marker `READY/NAME`, the bench's sign that the
/// function's process is up with its handler loaded.
fn handler_module(ready: &Path, name: &str) -> anyhow::Result<String> {
    let marker = serde_json::to_string(&ready.join(name).to_string_lossy())?;
    Ok(format!(
        "# {name}: importing this module drops the benchmark's marker.\n\
         open({marker}, \"w\").close()\n\
         \n\
         \n\
         def lambda_handler(event, context):\n    return event\n"
    ))
}

/// `lambda-artifact.zip`: `lambda_function.py` at the top.
fn handler_zip(module: &str) -> anyhow::Result<Vec<u8>> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    zip.start_file(
        "lambda_function.py",
        zip::write::SimpleFileOptions::default().unix_permissions(0o644),
    )?;
    zip.write_all(module.as_bytes())?;
    zip.finish()?;
    Ok(buf.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handler_module_names_its_marker() {
        let text = handler_module(Path::new("/tmp/r"), "bench-lambda-01").unwrap();
        assert!(text.contains("open(\"/tmp/r/bench-lambda-01\", \"w\").close()"));
        assert!(text.contains("def lambda_handler(event, context):"));
    }

    #[test]
    fn reads_the_time_of_day_of_a_log_line() {
        let t = log_time_of_day("2026-11-22T05:20:30.768Z [INFO] state: RUNNING").unwrap();
        assert!((t - (5.0 * 3600.0 + 20.0 * 60.0 + 30.768)).abs() < 1e-9);
        assert!((ms_since(86_399.5, 0.25) - 750.0).abs() < 1e-6);
        assert_eq!(log_time_of_day("short"), None);
    }

    #[test]
    fn lambda_recipes_carry_the_runtime_and_handler() {
        let r = lambda_recipe("bench-lambda-01", "python3.11", Path::new("/tmp/r"));
        let setenv = &r["Lifecycle"]["setenv"];
        assert_eq!(setenv["AWS_GREENGRASS_LAMBDA_RUNTIME"], "python3.11");
        assert_eq!(
            setenv["AWS_GREENGRASS_LAMBDA_FUNCTION_HANDLER"],
            "lambda_function.lambda_handler"
        );
        assert_eq!(r["ComponentType"], "aws.greengrass.lambda");
    }
}
