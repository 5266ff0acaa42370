//! `lambkin-bench container`: what a GreengrassContainer instance costs over a plain process,
//! on a real function through the Invoke API.
//!
//! One `lambkin run` on a fresh root (as root: containers need namespaces, mounts and
//! cgroups), two Lambda components deployed from recipes, identical but for `containerMode`
//! (NoContainer, GreengrassContainer): the Rust `lambda_runtime` echo fixture as
//! `provided.al2023`, on demand, `maxIdleTimeInSeconds: 1`. Then, per mode:
//!
//! - cold starts of a (re)deployed configuration: a deployment that changes both components'
//!   configuration, then the first invoke (a container starts from the sandbox init the host
//!   prepared for the new configuration when it was deployed);
//! - cold starts after the idle instance was reaped (a container takes the waiting *zygote*);
//! - warm p50 of sequential invokes;
//! - memory: K long invokes keep K instances busy; Pss of the host and every process under it.
//!
//! Before every cold start the bench waits until neither function has an instance left (no
//! process, no instance cgroup), and, for the zygote path, until the waiting sandbox init has
//! joined its cgroup. The runtime and its own init are the same binary in both modes, so they
//! cancel in the differences.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::client::{self, Conn, Latency};
use crate::lambkin::Host;
use crate::procfs;

/// The version both benchmark components have.
const VERSION: &str = "1.0.0";
/// How long an idle instance lives before the host reaps it.
const MAX_IDLE_S: u32 = 1;
/// Each container's memory limit (KB): well above what the fixture uses.
const MEMORY_SIZE_KIB: u32 = 65_536;
/// How long anything the bench waits for may take before the run fails.
const WAIT_LIMIT: Duration = Duration::from_secs(60);
/// How long the bench lets a deployment settle before the first cold start after it.
const SETTLE: Duration = Duration::from_secs(1);
/// Polling interval for processes and cgroups.
const POLL: Duration = Duration::from_millis(2);
/// Target: a container costs less than this over a plain process.
const TARGET_MS: f64 = 5.0;
/// Target: less memory than this per containerised instance (KiB: 1 MB).
const TARGET_KIB: f64 = 1024.0;
/// Warm invokes, after a warm-up.
const WARM_COUNT: usize = 200;
const WARM_UP: usize = 20;
/// How long each invoke of the memory measurement sleeps in the function.
const SLEEP_S: f64 = 3.0;
/// Pss readings per memory measurement (the median counts).
const PSS_READINGS: usize = 3;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A shorter run: 3 cold starts per mode and path instead of 10.
    #[arg(long)]
    pub quick: bool,
    /// Instances kept busy at once for the memory measurement.
    #[arg(long, default_value_t = 8)]
    pub instances: usize,
    /// Keep the recipes and a copy of the host's logs, and say where they are.
    #[arg(long)]
    pub keep: bool,
}

/// `lambkin-bench container`: runs the measurements and prints the table; every process
/// started is stopped on the way out, also on an error, Ctrl-C or SIGTERM.
pub fn main(lambkin: Option<PathBuf>, bootstrap: Option<PathBuf>, args: &Args) -> ExitCode {
    if effective_uid() != Some(0) {
        eprintln!(
            "bench: the container benchmark needs root: GreengrassContainer instances need \
             namespaces, mounts and cgroups (run it as root, e.g. `sudo scripts/bench container`)"
        );
        return ExitCode::FAILURE;
    }
    if let Err(why) = memory_cgroup() {
        eprintln!("bench: the container benchmark needs a memory cgroup: {why}");
        return ExitCode::FAILURE;
    }
    crate::run_to_table(run(lambkin, bootstrap, args), render)
}

fn say(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

/// This process's effective user id (the second field of `Uid:` in `/proc/self/status`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
}

/// Which cgroup version the host has, if it has a memory controller.
fn memory_cgroup() -> Result<&'static str, String> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("memory/memory.limit_in_bytes").is_file() {
        return Ok("v1");
    }
    match std::fs::read_to_string(base.join("cgroup.controllers")) {
        Ok(c) if c.split_whitespace().any(|x| x == "memory") => Ok("v2"),
        Ok(_) => Err("cgroup v2 without the memory controller".into()),
        Err(_) => Err("no cgroup hierarchy at /sys/fs/cgroup".into()),
    }
}

/// The two ways a Lambda component's function runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Container,
}

impl Mode {
    const BOTH: [Mode; 2] = [Mode::Plain, Mode::Container];

    /// The component's (and so the function's) name.
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "bench-echo-plain",
            Mode::Container => "bench-echo-container",
        }
    }

    fn container_mode(self) -> &'static str {
        match self {
            Mode::Plain => "NoContainer",
            Mode::Container => "GreengrassContainer",
        }
    }

    fn invoke_path(self) -> String {
        format!("/2015-03-31/functions/{}/invocations", self.name())
    }
}

/// How an instance was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartPath {
    /// A plain process (NoContainer).
    Plain,
    /// A sandbox init already waiting in its cgroup took the instance.
    Zygote,
    /// A sandbox init spawned for the instance, which then joined a fresh cgroup.
    Fallback,
}

/// One cold invoke: the time at the client, the `Init Duration` the host reported, the path.
#[derive(Debug, Clone, Copy)]
struct Cold {
    total: Duration,
    init_ms: f64,
    path: StartPath,
}

/// Memory with K instances busy.
#[derive(Debug, Clone, Default)]
struct Memory {
    /// Pss of the host and of every process under it (median of the readings), KiB.
    total_kib: u64,
    /// Every reading, KiB.
    readings: Vec<u64>,
    /// Page tables (`VmPTE`) of the same processes, KiB, at the median reading.
    page_tables_kib: u64,
    instances: usize,
    /// Mean Pss of an instance's runtime process, KiB.
    runtime_kib: f64,
    /// Mean Pss of an instance's other processes (a container's monitor and PID 1), KiB.
    extra_kib: f64,
    /// Processes per instance.
    processes: f64,
    /// Instance cgroup directories (all controllers) per instance.
    cgroups: f64,
}

#[derive(Debug)]
struct ModeResult {
    deployed: Vec<Cold>,
    reaped: Vec<Cold>,
    warm: Latency,
    memory: Memory,
}

#[derive(Debug)]
struct Report {
    reps: usize,
    k: usize,
    plain: ModeResult,
    container: ModeResult,
    /// The waiting zygote's memory and its cgroup directories.
    zygote: MemStat,
    zygote_cgroups: usize,
    deploy_ms: Vec<f64>,
    left_after_stop: usize,
    lambkin_version: String,
    kernel: String,
    cgroup: &'static str,
    loadavg_start: String,
    loadavg_end: String,
    kept: Option<PathBuf>,
}

async fn run(
    lambkin: Option<PathBuf>,
    bootstrap: Option<PathBuf>,
    args: &Args,
) -> anyhow::Result<Report> {
    if args.instances == 0 {
        bail!("--instances must be at least 1");
    }
    let reps = if args.quick { 3 } else { 10 };
    let loadavg_start = procfs::loadavg();
    let lambkin = crate::binary(lambkin.as_deref(), "lambkin")?;
    let bootstrap = crate::binary(bootstrap.as_deref(), "bootstrap")?;
    let zip = crate::lambkin::echo_zip(&bootstrap)?;
    let lambkin_version = std::process::Command::new(&lambkin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();

    let work = tempfile::Builder::new()
        .prefix("lambkin-bench-container-")
        .tempdir()
        .context("cannot create the work directory")?;
    let (recipes, artifacts) = write_components(work.path(), &zip, args.instances)?;

    say("starting lambkin");
    let mut host = Host::start(&lambkin)?;
    let bench = Bench {
        lambkin: &lambkin,
        host: &host,
        recipes: &recipes,
        artifacts: &artifacts,
    };
    say("deploying the two components");
    bench.deploy(None).await?;

    // Cold starts of a fresh configuration: the container's zygote was made at deployment.
    let mut deployed: BTreeMap<&str, Vec<Cold>> = BTreeMap::new();
    let mut deploy_ms = Vec::with_capacity(reps);
    for rep in 1..=reps {
        say(format!(
            "cold starts after a deployment: {rep}/{reps} (a deployment, then one per mode)"
        ));
        deploy_ms.push(bench.deploy(Some(rep)).await?);
        // The deployment's own work (artifacts written, the store's commit) settles first, as
        // long as a reaping takes; the order alternates so neither mode always goes first.
        tokio::time::sleep(SETTLE).await;
        let order = if rep % 2 == 1 {
            Mode::BOTH
        } else {
            [Mode::Container, Mode::Plain]
        };
        for mode in order {
            // The host prepares a new configuration's first sandbox init when it is deployed.
            bench.wait_quiet(Some(true)).await?;
            let cold = bench.cold_start(mode).await?;
            deployed.entry(mode.name()).or_default().push(cold);
        }
    }
    // Cold starts after reaping: the container's zygote waits in its cgroup.
    let mut reaped: BTreeMap<&str, Vec<Cold>> = BTreeMap::new();
    for rep in 1..=reps {
        say(format!("cold starts after reaping: {rep}/{reps}"));
        for mode in Mode::BOTH {
            bench.wait_quiet(Some(true)).await?;
            let cold = bench.cold_start(mode).await?;
            reaped.entry(mode.name()).or_default().push(cold);
        }
    }
    let mut warm = BTreeMap::new();
    for mode in Mode::BOTH {
        say(format!(
            "{}: warm latency, {WARM_COUNT} sequential invokes",
            mode.container_mode()
        ));
        warm.insert(mode.name(), bench.warm(mode).await?);
    }

    say("the waiting zygote's memory");
    bench.wait_quiet(Some(true)).await?;
    let zygote = processes_of(host.pid(), Mode::Container.name())
        .zygotes
        .first()
        .copied()
        .ok_or_else(|| anyhow!("no sandbox init waiting for the container function"))?;
    let zygote = mem_stat(zygote).unwrap_or_default();
    let zygote_cgroups = cgroup_dirs(host.pid(), Mode::Container.name()).1;

    let mut memory = BTreeMap::new();
    for mode in Mode::BOTH {
        say(format!(
            "{}: memory with {} instances busy",
            mode.container_mode(),
            args.instances
        ));
        memory.insert(mode.name(), bench.memory(mode, args.instances).await?);
    }

    say("stopping the host");
    let before_stop = procfs::descendants(host.pid());
    host.process.stop();
    let left_after_stop = before_stop.iter().filter(|p| p.alive()).count();

    let mut result = |mode: Mode| -> anyhow::Result<ModeResult> {
        let name = mode.name();
        Ok(ModeResult {
            deployed: deployed.remove(name).unwrap_or_default(),
            reaped: reaped.remove(name).unwrap_or_default(),
            warm: warm
                .remove(name)
                .ok_or_else(|| anyhow!("no warm latency for {name}"))?,
            memory: memory.remove(name).unwrap_or_default(),
        })
    };
    let plain = result(Mode::Plain)?;
    let container = result(Mode::Container)?;
    let kept = if args.keep {
        // The host's root goes with the host; its logs are copied next to the recipes.
        let logs = work.path().join("logs");
        copy_dir(&host.root().join("logs"), &logs)?;
        let work = work.keep();
        say(format!(
            "kept the recipes and the host's logs under {}",
            work.display()
        ));
        Some(work)
    } else {
        None
    };
    Ok(Report {
        reps,
        k: args.instances,
        plain,
        container,
        zygote,
        zygote_cgroups,
        deploy_ms,
        left_after_stop,
        lambkin_version,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        cgroup: memory_cgroup().unwrap_or("unknown"),
        loadavg_start,
        loadavg_end: procfs::loadavg(),
        kept,
    })
}

/// The running host and what it is deployed from.
struct Bench<'a> {
    lambkin: &'a Path,
    host: &'a Host,
    recipes: &'a Path,
    artifacts: &'a Path,
}

impl Bench<'_> {
    /// `lambkin deploy` of both components; with `generation`, a configuration change to both
    /// (an environment variable), which replaces their functions' configurations. Returns the
    /// command's time in ms.
    async fn deploy(&self, generation: Option<usize>) -> anyhow::Result<f64> {
        let mut command = tokio::process::Command::new(self.lambkin);
        command
            .arg("deploy")
            .arg("--root")
            .arg(self.host.root())
            .arg("-r")
            .arg(self.recipes)
            .arg("-a")
            .arg(self.artifacts);
        for mode in Mode::BOTH {
            command.arg("-m").arg(format!("{}={VERSION}", mode.name()));
        }
        if let Some(generation) = generation {
            let merge = json!({"MERGE": {"lambdaExecutionParameters": {"EnvironmentVariables":
                {"BENCH_DEPLOYMENT": generation.to_string()}}}});
            let update: serde_json::Map<String, Value> = Mode::BOTH
                .iter()
                .map(|m| (m.name().to_owned(), merge.clone()))
                .collect();
            command.arg("-c").arg(Value::Object(update).to_string());
        }
        let started = Instant::now();
        let output = command
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("cannot run lambkin deploy")?;
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || !stdout.contains("SUCCEEDED") {
            bail!(
                "lambkin deploy failed ({}): {stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(took.as_secs_f64() * 1e3)
    }

    /// Waits until neither function has an instance (no process, no instance cgroup); with
    /// `Some(true)`, also until the container function's waiting sandbox init is in its
    /// cgroup; with `Some(false)`, until it has none.
    async fn wait_quiet(&self, zygote: Option<bool>) -> anyhow::Result<()> {
        let host = self.host.pid();
        let started = Instant::now();
        loop {
            let mut busy = Vec::new();
            for mode in Mode::BOTH {
                let procs = processes_of(host, mode.name());
                let (cgroups, zygote_cgroups) = cgroup_dirs(host, mode.name());
                if !procs.instances.is_empty() {
                    busy.push(format!(
                        "{}: {} instances",
                        mode.name(),
                        procs.instances.len()
                    ));
                }
                if cgroups > 0 {
                    busy.push(format!("{}: {cgroups} instance cgroups", mode.name()));
                }
                if mode == Mode::Container {
                    let ready = procs.zygotes.iter().any(|&z| in_zygote_cgroup(z, host));
                    if zygote == Some(true) && (procs.zygotes.len() != 1 || !ready) {
                        busy.push(format!(
                            "{}: {} sandbox inits waiting, ready: {ready}",
                            mode.name(),
                            procs.zygotes.len()
                        ));
                    }
                    if zygote == Some(false) && (!procs.zygotes.is_empty() || zygote_cgroups > 0) {
                        busy.push(format!(
                            "{}: sandbox inits still waiting: {:?}, their cgroup directories: {zygote_cgroups}",
                            mode.name(),
                            procs.zygotes
                        ));
                    }
                }
            }
            if busy.is_empty() {
                return Ok(());
            }
            self.host_alive()?;
            if started.elapsed() >= WAIT_LIMIT {
                bail!(
                    "the functions did not settle within {WAIT_LIMIT:?}: {}",
                    busy.join("; ")
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn host_alive(&self) -> anyhow::Result<()> {
        if Path::new(&format!("/proc/{}", self.host.pid())).exists() {
            Ok(())
        } else {
            bail!("the host exited")
        }
    }

    /// One cold invoke of `mode`'s function (no instance is running): the time at the client,
    /// the REPORT line's `Init Duration`, and whether a waiting sandbox init took it.
    async fn cold_start(&self, mode: Mode) -> anyhow::Result<Cold> {
        let host = self.host.pid();
        let zygote = processes_of(host, mode.name())
            .zygotes
            .into_iter()
            .find(|&z| in_zygote_cgroup(z, host));
        let payload = crate::payload(64);
        let mut conn = self.host.connect().await?;
        let started = Instant::now();
        let reply = conn
            .invoke(&mode.invoke_path(), &payload)
            .await
            .with_context(|| format!("cold invoke of {}", mode.name()))?;
        let total = started.elapsed();
        let path = match (mode, zygote) {
            (Mode::Plain, _) => StartPath::Plain,
            (Mode::Container, Some(z)) if !children_of(z).is_empty() => StartPath::Zygote,
            (Mode::Container, _) => StartPath::Fallback,
        };
        let request_id = reply
            .headers
            .get("x-amzn-requestid")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("the invoke response has no x-amzn-RequestId"))?
            .to_owned();
        let init_ms = self
            .init_duration_ms(mode, &request_id)
            .await?
            .ok_or_else(|| {
                anyhow!(
                    "the cold invoke {request_id} of {} reported no Init Duration: it was warm",
                    mode.name()
                )
            })?;
        Ok(Cold {
            total,
            init_ms,
            path,
        })
    }

    /// The `Init Duration` of the REPORT line of `request_id` in `ROOT/logs/NAME.log`, in ms.
    async fn init_duration_ms(&self, mode: Mode, request_id: &str) -> anyhow::Result<Option<f64>> {
        let log = self
            .host
            .root()
            .join("logs")
            .join(format!("{}.log", mode.name()));
        let report = crate::lambkin::report_line(&log, request_id).await?;
        Ok(crate::lambkin::parse_init_duration(&report))
    }

    /// Warm p50: one invoke to start an instance, a pause for the host to start the next
    /// zygote in the background, then a warm-up and the timed sequential invokes.
    async fn warm(&self, mode: Mode) -> anyhow::Result<Latency> {
        let payload = crate::payload(64);
        let path = mode.invoke_path();
        self.host.connect().await?.invoke(&path, &payload).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let target = self.host.target(mode.name(), &path);
        let latency = client::sequential(&target, &payload, WARM_UP, WARM_COUNT).await?;
        if latency.errors > 0 {
            bail!("{}: {} warm invokes failed", mode.name(), latency.errors);
        }
        Ok(latency)
    }

    /// `k` invokes that sleep [`SLEEP_S`] at once, so `k` instances are busy; then the Pss of
    /// the host and of every process under it (the other function has no instance; the
    /// container function's zygote is there in both measurements).
    async fn memory(&self, mode: Mode, k: usize) -> anyhow::Result<Memory> {
        let host = self.host.pid();
        self.wait_quiet(Some(true)).await?;
        let body = Bytes::from(json!({"action": "sleep", "seconds": SLEEP_S}).to_string());
        let mut calls = tokio::task::JoinSet::new();
        let started = Instant::now();
        let target = self.host.target(mode.name(), &mode.invoke_path());
        for _ in 0..k {
            let target = target.clone();
            let body = body.clone();
            calls.spawn(async move {
                let mut conn = Conn::to(&target).await?;
                let reply = conn.request(Method::POST, &target.path, body).await?;
                if reply.status != StatusCode::OK || !reply.body.starts_with(b"{\"slept\"") {
                    bail!(
                        "HTTP {}: {}",
                        reply.status.as_u16(),
                        String::from_utf8_lossy(&reply.body)
                    );
                }
                Ok(())
            });
        }
        // Every instance's runtime up, and the container function's zygote ready again.
        let procs = loop {
            let procs = processes_of(host, mode.name());
            let running = procs
                .instances
                .iter()
                .filter(|i| i.runtime.is_some())
                .count();
            let zygote_ready = processes_of(host, Mode::Container.name())
                .zygotes
                .iter()
                .any(|&z| in_zygote_cgroup(z, host));
            if running == k && zygote_ready {
                break procs;
            }
            if started.elapsed() >= Duration::from_secs_f64(SLEEP_S / 2.0) {
                bail!(
                    "only {running} of {k} instances of {} were running after {:?}",
                    mode.name(),
                    started.elapsed()
                );
            }
            tokio::time::sleep(POLL).await;
        };
        // Let the runtimes take their events and the host settle.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut readings = Vec::with_capacity(PSS_READINGS);
        for _ in 0..PSS_READINGS {
            readings.push(tree_mem(host));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if started.elapsed() >= Duration::from_secs_f64(SLEEP_S - 0.2) {
            bail!(
                "the memory readings of {} took until {:?}, past the invokes' sleep",
                mode.name(),
                started.elapsed()
            );
        }
        let mut runtime = 0u64;
        let mut extra = 0u64;
        let mut processes = 0usize;
        for instance in &procs.instances {
            processes += instance.pids.len();
            for &pid in &instance.pids {
                let pss = mem_stat(pid).map_or(0, |m| m.pss_kib);
                if Some(pid) == instance.runtime {
                    runtime += pss;
                } else {
                    extra += pss;
                }
            }
        }
        let cgroups = cgroup_dirs(host, mode.name()).0;
        while let Some(joined) = calls.join_next().await {
            joined.map_err(|e| anyhow!("an invoke task failed: {e}"))??;
        }
        let mut sorted = readings.clone();
        sorted.sort_unstable_by_key(|m| m.pss_kib);
        let middle = sorted[sorted.len() / 2];
        #[allow(clippy::cast_precision_loss)]
        let per = |x: f64| x / procs.instances.len().max(1) as f64;
        #[allow(clippy::cast_precision_loss)]
        Ok(Memory {
            total_kib: middle.pss_kib,
            readings: readings.iter().map(|m| m.pss_kib).collect(),
            page_tables_kib: middle.page_tables_kib,
            instances: procs.instances.len(),
            runtime_kib: per(runtime as f64),
            extra_kib: per(extra as f64),
            processes: per(processes as f64),
            cgroups: per(cgroups as f64),
        })
    }
}

/// Writes the two components' recipes and the shared artifact; returns (recipes, artifacts).
fn write_components(dir: &Path, zip: &[u8], k: usize) -> anyhow::Result<(PathBuf, PathBuf)> {
    let recipes = dir.join("recipes");
    let artifacts = dir.join("artifacts");
    std::fs::create_dir_all(&recipes)?;
    for mode in Mode::BOTH {
        let artifact_dir = artifacts.join(mode.name()).join(VERSION);
        std::fs::create_dir_all(&artifact_dir)?;
        std::fs::write(artifact_dir.join("lambda-artifact.zip"), zip)?;
        let recipe = serde_json::to_string_pretty(&recipe(mode, k + 4))?;
        let path = recipes.join(format!("{}-{VERSION}.json", mode.name()));
        std::fs::write(&path, recipe)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok((recipes, artifacts))
}

/// A Lambda component's recipe for the Rust echo fixture as `provided.al2023`, shaped as the
/// cloud generates it for an imported function.
fn recipe(mode: Mode, max_instances: usize) -> Value {
    crate::recipes::LambdaRecipe {
        name: mode.name(),
        version: VERSION,
        description: format!(
            "Container benchmark: the Rust echo fixture, {}",
            mode.container_mode()
        ),
        configuration: json!({
            "lambdaExecutionParameters": {"EnvironmentVariables": {}},
            "containerParams": {
                "memorySize": MEMORY_SIZE_KIB,
                "mountROSysfs": false,
                "volumes": {},
                "devices": {},
            },
            "containerMode": mode.container_mode(),
            "timeoutInSeconds": 30,
            "maxInstancesCount": max_instances,
            "inputPayloadEncodingType": "json",
            "maxQueueSize": 1000,
            "pinned": false,
            "maxIdleTimeInSeconds": MAX_IDLE_S,
            "statusTimeoutInSeconds": 60,
            "pubsubTopics": {},
        }),
        handler: "bootstrap",
        runtime: "provided.al2023",
        setenv: json!({}),
    }
    .to_json()
}

/// Copies the files of `from` (not its subdirectories) into `to`.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

// ---- What /proc and the cgroup hierarchies say about the functions' processes ----

/// The processes of one function under the host.
#[derive(Debug, Default)]
struct Processes {
    instances: Vec<InstanceProcesses>,
    /// Sandbox inits waiting for the function's next instance (zygotes).
    zygotes: Vec<u32>,
}

#[derive(Debug)]
struct InstanceProcesses {
    /// Every process of the instance: the runtime; for a container also the monitor (the
    /// host's child) and PID 1.
    pids: Vec<u32>,
    /// The runtime process (`bootstrap`), once it is exec'd.
    runtime: Option<u32>,
}

fn children_of(pid: u32) -> Vec<u32> {
    crate::procfs::child_map().remove(&pid).unwrap_or_default()
}

/// `pid` and all its descendants.
fn subtree(map: &BTreeMap<u32, Vec<u32>>, pid: u32) -> Vec<u32> {
    let mut found = vec![pid];
    let mut todo = vec![pid];
    while let Some(parent) = todo.pop() {
        for &child in map.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            found.push(child);
            todo.push(child);
        }
    }
    found
}

/// A NUL-separated `/proc` file (`cmdline`, `environ`) as its entries.
fn nul_list(path: &str) -> Vec<Vec<u8>> {
    std::fs::read(path)
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn is_sandbox_init(argv: &[Vec<u8>]) -> bool {
    argv.get(1).is_some_and(|a| a == b"sandbox-init")
}

/// Whether `pid` is a runtime process of function `name`: not a sandbox init, and started
/// with the function's name in its environment.
fn is_runtime_of(pid: u32, name: &str) -> bool {
    if is_sandbox_init(&nul_list(&format!("/proc/{pid}/cmdline"))) {
        return false;
    }
    let wanted = format!("AWS_LAMBDA_FUNCTION_NAME={name}");
    nul_list(&format!("/proc/{pid}/environ"))
        .iter()
        .any(|v| v == wanted.as_bytes())
}

/// The host's children that belong to function `name`, with their descendants: a plain
/// instance is the runtime itself; a container's is its sandbox init (the monitor), whose
/// argument names the function as the container's hostname; a sandbox init started as a
/// zygote that has no child yet is waiting for the next instance.
fn processes_of(host: u32, name: &str) -> Processes {
    let map = crate::procfs::child_map();
    let mut found = Processes::default();
    for &pid in map.get(&host).map(Vec::as_slice).unwrap_or_default() {
        let argv = nul_list(&format!("/proc/{pid}/cmdline"));
        if is_sandbox_init(&argv) {
            let spec: Value = argv
                .get(2)
                .and_then(|a| serde_json::from_slice(a).ok())
                .unwrap_or(Value::Null);
            if spec["hostname"] != name {
                continue;
            }
            let pids = subtree(&map, pid);
            if spec["zygote"] == true && pids.len() == 1 {
                found.zygotes.push(pid);
                continue;
            }
            let runtime = pids.iter().copied().find(|&p| is_runtime_of(p, name));
            found.instances.push(InstanceProcesses { pids, runtime });
        } else if is_runtime_of(pid, name) {
            found.instances.push(InstanceProcesses {
                pids: subtree(&map, pid),
                runtime: Some(pid),
            });
        }
    }
    found
}

/// Whether a zygote has joined its cgroup (named `HOSTPID.FUNCTION.zN` under `lambkin/`).
fn in_zygote_cgroup(pid: u32, host: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    let prefix = format!("/lambkin/{host}.");
    text.lines().any(|line| {
        line.split_once(&prefix)
            .is_some_and(|(_, rest)| rest.rsplit('.').next().is_some_and(|s| s.starts_with('z')))
    })
}

/// The function's cgroup directories under `lambkin/` in every hierarchy:
/// (instances', zygotes').
fn cgroup_dirs(host: u32, name: &str) -> (usize, usize) {
    let base = Path::new("/sys/fs/cgroup");
    let mut parents = vec![base.join("lambkin")];
    if let Ok(entries) = std::fs::read_dir(base) {
        parents.extend(entries.flatten().map(|e| e.path().join("lambkin")));
    }
    let mut seen = std::collections::BTreeSet::new();
    let prefix = format!("{host}.{name}.");
    let (mut instances, mut zygotes) = (0, 0);
    for parent in parents {
        let Ok(real) = parent.canonicalize() else {
            continue;
        };
        if !seen.insert(real.clone()) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&real) else {
            continue;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if rest.starts_with('z') {
                zygotes += 1;
            } else {
                instances += 1;
            }
        }
    }
    (instances, zygotes)
}

/// What a process holds, KiB.
#[derive(Debug, Clone, Copy, Default)]
struct MemStat {
    /// `Pss` (`/proc/PID/smaps_rollup`): its pages, each shared one divided among its users.
    pss_kib: u64,
    /// `Private_Clean` + `Private_Dirty`: pages no other process maps.
    private_kib: u64,
    /// `VmPTE` (`/proc/PID/status`): its page tables, which Pss leaves out.
    page_tables_kib: u64,
}

/// A process's [`MemStat`]; `None` once it is gone.
fn mem_stat(pid: u32) -> Option<MemStat> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |text: &str, key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(MemStat {
        pss_kib: field(&rollup, "Pss:"),
        private_kib: field(&rollup, "Private_Clean:") + field(&rollup, "Private_Dirty:"),
        page_tables_kib: field(&status, "VmPTE:"),
    })
}

/// Pss and page tables of `root` and of every process under it, KiB: pages shared among
/// them are counted once in all (that is what Pss divides), so the sum is what they hold
/// together.
fn tree_mem(root: u32) -> MemStat {
    let mut total = mem_stat(root).unwrap_or_default();
    for p in procfs::descendants(root) {
        if let Some(m) = mem_stat(p.pid) {
            total.pss_kib += m.pss_kib;
            total.private_kib += m.private_kib;
            total.page_tables_kib += m.page_tables_kib;
        }
    }
    total
}

// ---- The table ----

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn yes_no(met: bool) -> String {
    if met { "yes" } else { "**no**" }.to_owned()
}

/// `12345.6` → `12,346`.
fn grouped(value: f64) -> String {
    #[allow(clippy::cast_possible_truncation)]
    let n = value.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::from(if n < 0 { "−" } else { "" });
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Medians of one series of cold starts, read against that mode's warm p50.
#[derive(Debug, Clone, Copy)]
struct ColdStats {
    total: f64,
    init: f64,
    /// total − warm p50: what the cold start adds to an invoke.
    over_warm: f64,
    /// total − Init Duration − warm p50: the host's part outside Init Duration.
    outside_init: f64,
}

impl ColdStats {
    fn of(samples: &[Cold], warm: &Latency) -> Self {
        let warm = ms(warm.p50);
        Self {
            total: median(samples.iter().map(|c| ms(c.total)).collect()),
            init: median(samples.iter().map(|c| c.init_ms).collect()),
            over_warm: median(samples.iter().map(|c| ms(c.total) - warm).collect()),
            outside_init: median(
                samples
                    .iter()
                    .map(|c| ms(c.total) - c.init_ms - warm)
                    .collect(),
            ),
        }
    }
}

struct Table {
    rows: Vec<[String; 6]>,
}

impl Table {
    fn row(&mut self, cells: [&str; 6]) {
        self.rows.push(cells.map(str::to_owned));
    }

    /// A row with a value per mode and their difference.
    fn compared(&mut self, label: &str, plain: f64, container: f64, digits: usize) {
        self.row([
            label,
            &format!("{plain:.digits$}"),
            &format!("{container:.digits$}"),
            &format!("{:+.digits$}", container - plain),
            "",
            "",
        ]);
    }

    fn render(&self) -> String {
        crate::report::markdown_table(
            [
                "Metric",
                "NoContainer",
                "GreengrassContainer",
                "Container − NoContainer",
                "Target",
                "Met",
            ],
            [false, true, true, true, false, false],
            &self.rows,
        )
    }
}

fn path_count(samples: &[Cold], path: StartPath) -> usize {
    samples.iter().filter(|c| c.path == path).count()
}

fn samples_ms(samples: &[Cold]) -> String {
    samples
        .iter()
        .map(|c| format!("{:.2}", ms(c.total)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn render(r: &Report) -> String {
    let (p, c) = (&r.plain, &r.container);
    let n = r.reps;
    let mut t = Table { rows: Vec::new() };
    let mut notes: Vec<String> = Vec::new();

    // Cold starts after reaping: the zygote path.
    let pr = ColdStats::of(&p.reaped, &p.warm);
    let cr = ColdStats::of(&c.reaped, &c.warm);
    t.compared(
        &format!(
            "After reaping (container: zygote): cold start total at the client (ms, median of {n})"
        ),
        pr.total,
        cr.total,
        2,
    );
    t.compared(
        "After reaping: Init Duration from the REPORT line (ms, median)",
        pr.init,
        cr.init,
        2,
    );
    t.compared(
        &format!("Warm latency p50, {WARM_COUNT} sequential invokes (ms)"),
        ms(p.warm.p50),
        ms(c.warm.p50),
        3,
    );
    t.compared(
        "After reaping: total − warm p50 (ms, median)",
        pr.over_warm,
        cr.over_warm,
        2,
    );
    t.compared(
        "After reaping: host part outside Init Duration, total − Init − warm p50 (ms, median)",
        pr.outside_init,
        cr.outside_init,
        2,
    );
    let zygote_cost = cr.over_warm - pr.over_warm;
    t.row([
        "**Container cost over the plain process, zygote path** (ms)",
        "",
        "",
        &format!("**{zygote_cost:.2}**"),
        &format!("< {TARGET_MS:.0}"),
        &yes_no(zygote_cost < TARGET_MS),
    ]);

    // Cold starts of a fresh configuration: from the zygote made when it was deployed.
    let pd = ColdStats::of(&p.deployed, &p.warm);
    let cd = ColdStats::of(&c.deployed, &c.warm);
    t.compared(
        &format!("After a deployment (container: the zygote made at deployment): cold start total at the client (ms, median of {n})"),
        pd.total,
        cd.total,
        2,
    );
    t.compared(
        "After a deployment: Init Duration from the REPORT line (ms, median)",
        pd.init,
        cd.init,
        2,
    );
    t.compared(
        "After a deployment: total − warm p50 (ms, median)",
        pd.over_warm,
        cd.over_warm,
        2,
    );
    t.compared(
        "After a deployment: host part outside Init Duration, total − Init − warm p50 (ms, median)",
        pd.outside_init,
        cd.outside_init,
        2,
    );
    let fallback_cost = cd.over_warm - pd.over_warm;
    t.row([
        "**Container cost over the plain process, first start of a new configuration** (ms)",
        "",
        "",
        &format!("**{fallback_cost:.2}**"),
        &format!("< {TARGET_MS:.0}"),
        &yes_no(fallback_cost < TARGET_MS),
    ]);

    // Memory.
    let (pm, cm) = (&p.memory, &c.memory);
    #[allow(clippy::cast_precision_loss)]
    let (plain_total, container_total) = (pm.total_kib as f64, cm.total_kib as f64);
    t.compared(
        &format!(
            "Pss of the host and every process under it, {} instances busy (kB)",
            r.k
        ),
        plain_total,
        container_total,
        0,
    );
    #[allow(clippy::cast_precision_loss)]
    let per_instance = (container_total - plain_total) / r.k as f64;
    t.row([
        &format!(
            "**Memory per containerised instance over a plain one: Δ Pss / {}** (kB)",
            r.k
        ),
        "",
        "",
        &format!("**{}**", grouped(per_instance)),
        "< 1 MB (1,024 kB)",
        &yes_no(per_instance < TARGET_KIB),
    ]);
    #[allow(clippy::cast_precision_loss)]
    let with_tables =
        (container_total + cm.page_tables_kib as f64 - plain_total - pm.page_tables_kib as f64)
            / r.k as f64;
    t.row([
        &format!("The same with page tables: Δ (Pss + VmPTE) / {} (kB)", r.k),
        "",
        "",
        &grouped(with_tables),
        "< 1 MB (1,024 kB)",
        &yes_no(with_tables < TARGET_KIB),
    ]);
    t.compared(
        "Per instance: the runtime process's Pss (kB, mean)",
        pm.runtime_kib,
        cm.runtime_kib,
        0,
    );
    t.compared(
        "Per instance: the other processes' Pss, sandbox monitor + PID 1 (kB, mean)",
        pm.extra_kib,
        cm.extra_kib,
        0,
    );
    t.compared("Per instance: processes", pm.processes, cm.processes, 0);
    t.compared(
        "Per instance: cgroup directories (all controllers)",
        pm.cgroups,
        cm.cgroups,
        0,
    );
    #[allow(clippy::cast_precision_loss)]
    t.row([
        "The waiting zygote, one per on-demand container function: Pss (private, page tables) (kB)",
        "—",
        &format!(
            "{} ({}, {})",
            grouped(r.zygote.pss_kib as f64),
            grouped(r.zygote.private_kib as f64),
            grouped(r.zygote.page_tables_kib as f64)
        ),
        "",
        "",
        "",
    ]);

    notes.push(format!(
        "Functions: the Rust `lambda_runtime` echo fixture (`bootstrap`, lambda_runtime {}) as \
         `provided.al2023`, two Lambda components identical but for `containerMode`, on demand, \
         `maxIdleTimeInSeconds: {MAX_IDLE_S}`, containerParams.memorySize {MEMORY_SIZE_KIB} KB; \
         invoked through the Invoke API with a {}-byte JSON payload, one new connection per cold invoke.",
        lambda_runtime_version(),
        crate::payload(64).len()
    ));
    notes.push(format!(
        "Cold starts: {n} per mode and path; before each, neither function has an instance left \
         (no process, no instance cgroup). After a deployment: a deployment changing both \
         components' configuration (an environment variable; median {:.0} ms), {} s to settle, then \
         one invoke per mode, alternating which goes first, once the container's zygote for the \
         new configuration has joined its cgroup. After reaping: the \
         previous instance reaped after {MAX_IDLE_S} s idle, and the container's zygote in its cgroup.",
        median(r.deploy_ms.clone()),
        SETTLE.as_secs()
    ));
    notes.push(format!(
        "Paths seen (from the zygote's process before and after each invoke): after reaping \
         {}/{n} zygote, {}/{n} fallback; after a deployment {}/{n} fallback, {}/{n} zygote.",
        path_count(&c.reaped, StartPath::Zygote),
        path_count(&c.reaped, StartPath::Fallback),
        path_count(&c.deployed, StartPath::Fallback),
        path_count(&c.deployed, StartPath::Zygote),
    ));
    notes.push(format!(
        "Init Duration runs from just before the host starts the process to the runtime's first \
         `/next`. NoContainer: the runtime's fork, exec and own init. \
         GreengrassContainer: from taking the waiting sandbox init, so it also holds the sandbox \
         set-up: the namespaces, the root's mounts, pivot_root, PID 1's fork, the runtime's exec. \
         Init Duration over NoContainer's: {:+.2} ms after reaping, {:+.2} ms after a \
         deployment; the rest of the container's cost is outside it: {:+.2} ms and {:+.2} ms.",
        cr.init - pr.init,
        cd.init - pd.init,
        cr.outside_init - pr.outside_init,
        cd.outside_init - pd.outside_init,
    ));
    notes.push(format!(
        "Cold totals (ms): NoContainer after reaping {}; GreengrassContainer after reaping {}; \
         NoContainer after a deployment {}; GreengrassContainer after a deployment {}.",
        samples_ms(&p.reaped),
        samples_ms(&c.reaped),
        samples_ms(&p.deployed),
        samples_ms(&c.deployed),
    ));
    notes.push(format!(
        "Warm p99 (ms): NoContainer {:.3}, GreengrassContainer {:.3}.",
        ms(p.warm.p99),
        ms(c.warm.p99)
    ));
    notes.push(format!(
        "Memory: {} invokes of `{{\"action\":\"sleep\",\"seconds\":{SLEEP_S}}}` at once keep {} \
         NoContainer and then {} GreengrassContainer instances busy; Pss (`/proc/PID/smaps_rollup`) \
         of the host and every process under it, median of {PSS_READINGS} readings (NoContainer \
         {:?} kB, GreengrassContainer {:?} kB; page tables {} and {} kB); the container function's \
         waiting zygote is there in both. Kernel memory (cgroups, namespaces, mounts) is not in \
         these figures. The zygote's cgroup directories: {}.",
        r.k,
        pm.instances,
        cm.instances,
        pm.readings,
        cm.readings,
        pm.page_tables_kib,
        cm.page_tables_kib,
        r.zygote_cgroups,
    ));
    notes.push(format!(
        "Host: {}, Linux {}, cgroup {}; processes left after the host's SIGTERM: {}.",
        r.lambkin_version, r.kernel, r.cgroup, r.left_after_stop
    ));
    notes.push(format!(
        "Machine load (/proc/loadavg) at the start: {}; at the end: {}.",
        r.loadavg_start, r.loadavg_end
    ));
    if let Some(root) = &r.kept {
        notes.push(format!("Kept: {}.", root.display()));
    }

    let mut out = t.render();
    out.push_str("\n\n");
    for note in notes {
        let _ = writeln!(out, "- {note}");
    }
    out
}

/// The `lambda_runtime` version the fixture is built with, from the workspace's lock file.
fn lambda_runtime_version() -> String {
    let lock = include_str!("../../Cargo.lock");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"lambda_runtime\"" {
            if let Some(version) = lines
                .next()
                .and_then(|l| l.strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
            {
                return version.to_owned();
            }
        }
    }
    "unknown".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_differ_only_in_container_mode() {
        let mut plain = recipe(Mode::Plain, 12);
        let mut contained = recipe(Mode::Container, 12);
        let config = |r: &Value| r["ComponentConfiguration"]["DefaultConfiguration"].clone();
        assert_eq!(config(&plain)["containerMode"], "NoContainer");
        assert_eq!(config(&contained)["containerMode"], "GreengrassContainer");
        for r in [&mut plain, &mut contained] {
            r["ComponentConfiguration"]["DefaultConfiguration"]["containerMode"] = json!("");
            for key in ["ComponentName", "ComponentDescription", "ComponentSource"] {
                r[key] = json!("");
            }
            r["Lifecycle"]["setenv"]["AWS_GREENGRASS_LAMBDA_ARN"] = json!("");
        }
        assert_eq!(plain, contained);
    }

    #[test]
    fn finds_the_lock_files_lambda_runtime() {
        assert_ne!(lambda_runtime_version(), "unknown");
    }

    #[test]
    fn groups_thousands_and_signs() {
        assert_eq!(grouped(12_345.6), "12,346");
        assert_eq!(grouped(-1_234.0), "−1,234");
        assert_eq!(grouped(512.0), "512");
    }
}
