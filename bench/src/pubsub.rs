//! `lambkin-bench pubsub`: Lambkin's local publish/subscribe over Greengrass IPC against a
//! local mosquitto over MQTT (QoS 0), in one run, with the same clients on both sides:
//!
//! - Python: the AWS IoT Device SDK v2 (`GreengrassCoreIPCClientV2`) against Lambkin, paho-mqtt
//!   against mosquitto (`bench/pubsub/client.py`);
//! - Rust: the bench's IPC client on `lambkin-proto` against Lambkin, rumqttc against
//!   mosquitto (`lambkin-bench pubsub-client`).
//!
//! Each case is one publisher and N subscriber processes (N = 1 and 10), 256-byte messages:
//! first paced messages for the latency (publish call → subscriber callback, from wall-clock
//! timestamps in the payload), then a burst for the throughput (messages delivered to all
//! subscribers per second, from the burst's first publish to its last delivery).
//!
//! The IPC clients connect as components do: the bench deploys a publisher and a subscriber
//! component whose Run step records the SVCUID and socket path Lambkin gives it; the clients
//! run with that environment.

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::lambkin::Host;
use crate::process::Supervised;
use crate::procfs;
use crate::pubsub_report::{
    self, Broker, Case, ClientKind, Outcome, Plan, Report, Trigger, TRIGGER_INTERVAL_US,
};

/// The Python client, written into the work directory for each run.
const CLIENT_PY: &str = include_str!("../pubsub/client.py");
/// The MQTT-triggered function's handler.
const HANDLER_PY: &str = include_str!("../pubsub/handler.py");
const FUNCTION: &str = "com.lambkin.bench.MqttFunction";
const PUBLISHER: &str = "com.lambkin.bench.Publisher";
const SUBSCRIBER: &str = "com.lambkin.bench.Subscriber";
const COMPONENT_VERSION: &str = "1.0.0";
/// How long clients have to connect and subscribe, and components to start.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// How long one publisher may run.
const PUBLISH_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A shorter run (fewer messages).
    #[arg(long)]
    pub quick: bool,
    /// The Python interpreter with awsiotsdk and paho-mqtt (scripts/bench passes the
    /// conformance venv's).
    #[arg(long, default_value = "python3")]
    pub python: PathBuf,
    /// The mosquitto broker.
    #[arg(long, default_value = "mosquitto")]
    pub mosquitto: PathBuf,
    /// Subscriber counts, one case each.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 10])]
    pub subscribers: Vec<usize>,
    /// Client pairs to run (python: awsiotsdk / paho-mqtt; rust: the bench's IPC client /
    /// rumqttc).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [ClientKind::Python, ClientKind::Rust])]
    pub clients: Vec<ClientKind>,
    /// Paced messages per case for the latency (default 1000, 300 with --quick).
    #[arg(long)]
    pub latency: Option<usize>,
    /// Microseconds between two paced messages.
    #[arg(long, default_value_t = 2000)]
    pub interval_us: u64,
    /// Burst messages per case for the throughput (default 20000, 3000 with --quick).
    #[arg(long)]
    pub throughput: Option<usize>,
    /// IPC publishes awaiting their response at most during the burst.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Leave out the MQTT → function measurement.
    #[arg(long)]
    pub no_trigger: bool,
    /// Keep the work directory (the host's root, client logs) and say where it is.
    #[arg(long)]
    pub keep: bool,
}

pub fn main(lambkin: Option<PathBuf>, args: &Args) -> ExitCode {
    crate::run_to_table(run(lambkin, args), pubsub_report::render)
}

fn say(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

/// What the clients need to reach each broker.
#[derive(Debug)]
struct Brokers {
    /// Environment of the publisher and the subscriber components.
    publisher_env: Vec<(String, String)>,
    subscriber_env: Vec<(String, String)>,
    lambkin_pid: u32,
    mosquitto_port: u16,
    mosquitto_pid: u32,
}

async fn run(lambkin: Option<PathBuf>, args: &Args) -> anyhow::Result<Report> {
    let lambkin = crate::binary(lambkin.as_deref(), "lambkin")?;
    let this = std::env::current_exe().context("cannot find this binary")?;
    let plan = Plan {
        latency: args.latency.unwrap_or(if args.quick { 300 } else { 1000 }),
        interval_us: args.interval_us,
        throughput: args
            .throughput
            .unwrap_or(if args.quick { 3000 } else { 20_000 }),
        window: args.window.max(1),
    };
    if args.subscribers.is_empty() || args.subscribers.contains(&0) {
        bail!("--subscribers needs counts of at least 1");
    }
    let loadavg_start = procfs::loadavg();
    let versions = versions(&args.python, &args.mosquitto).await?;
    let work = tempfile::Builder::new()
        .prefix("lambkin-bench-pubsub-")
        .tempdir()
        .context("cannot create the work directory")?;
    // With --keep the directory stays, whatever happens.
    let (_work_guard, work_path) = if args.keep {
        (None, work.keep())
    } else {
        let path = work.path().to_owned();
        (Some(work), path)
    };
    let work = WorkDir(work_path);
    let script = work.path().join("client.py");
    fs::write(&script, CLIENT_PY)?;

    say("starting mosquitto on a free loopback port");
    let (mosquitto, mosquitto_port) = start_mosquitto(&args.mosquitto, work.path(), "")?;
    say("starting lambkin (its MQTT connection on mosquitto) and deploying the components");
    let python_abs = std::path::absolute(&args.python)?;
    let config = format!(
        "thing_name = \"lambkin-bench\"\n[lambda]\npython = {}\n[mqtt]\nurl = \"mqtt://127.0.0.1:{mosquitto_port}\"\n",
        serde_json::to_string(&python_abs.to_string_lossy())?
    );
    let host = Host::start_with_config(&lambkin, Some(&config))?;
    let (publisher_env, subscriber_env) = deploy_components(&lambkin, host.root(), work.path())
        .await
        .context("deploying the IPC components")?;
    if !args.no_trigger {
        deploy_function(&lambkin, host.root(), work.path(), &args.python)
            .await
            .context("deploying the MQTT-triggered function")?;
    }
    let brokers = Brokers {
        publisher_env,
        subscriber_env,
        lambkin_pid: host.pid(),
        mosquitto_port,
        mosquitto_pid: mosquitto.pid(),
    };

    let clients = Clients {
        python: args.python.clone(),
        script,
        this,
        logs: work.path().join("logs"),
    };
    fs::create_dir_all(&clients.logs)?;
    let mut outcomes = BTreeMap::new();
    let mut topic = 0usize;
    for &subscribers in &args.subscribers {
        for &kind in &args.clients {
            for broker in [Broker::Lambkin, Broker::Mosquitto] {
                topic += 1;
                let case = Case {
                    kind,
                    broker,
                    subscribers,
                };
                say(format!(
                    "{} clients, 1 → {subscribers}, {}",
                    kind.label(),
                    broker.label()
                ));
                let outcome = run_case(&clients, &brokers, &plan, case, topic)
                    .await
                    .with_context(|| {
                        format!(
                            "{} clients, 1 → {subscribers}, {} (client logs in {})",
                            kind.label(),
                            broker.label(),
                            clients.logs.display()
                        )
                    })?;
                say(format!(
                    "  {:.0} msgs/s delivered ({:.1}%), p50 {:.0} µs, p99 {:.0} µs",
                    outcome.delivered_per_second,
                    outcome.delivered_fraction * 100.0,
                    outcome.p50_us,
                    outcome.p99_us
                ));
                outcomes.insert(case, outcome);
            }
        }
    }
    let trigger = if args.no_trigger {
        None
    } else {
        say("MQTT → function: paho → mosquitto → Lambkin's IOT_CORE trigger → handler");
        let t = run_trigger(&clients, &brokers, &plan)
            .await
            .with_context(|| {
                format!(
                    "MQTT → function (client logs in {})",
                    clients.logs.display()
                )
            })?;
        say(format!(
            "  broker p50 {:.0} µs; to the handler p50 {:.0} µs",
            t.broker.0, t.to_handler.0
        ));
        Some(t)
    };
    drop(mosquitto);
    drop(host);
    let report = Report {
        trigger,
        plan,
        subscribers: args.subscribers.clone(),
        outcomes,
        versions,
        loadavg_start,
        loadavg_end: procfs::loadavg(),
        kept: args.keep.then(|| work.path().to_owned()),
    };
    if args.keep {
        say(format!("kept the work directory {}", work.path().display()));
    }
    Ok(report)
}

/// The versions of everything measured, for the notes.
async fn versions(python: &Path, mosquitto: &Path) -> anyhow::Result<Vec<String>> {
    let probe = "import importlib.metadata as m, sys; \
                 print(f\"Python {sys.version.split()[0]}, awsiotsdk {m.version('awsiotsdk')}, \
                 awscrt {m.version('awscrt')}, paho-mqtt {m.version('paho-mqtt')}\")";
    let out = Command::new(python)
        .arg("-c")
        .arg(probe)
        .output()
        .await
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} lacks awsiotsdk or paho-mqtt (run scripts/install-test-deps): {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut versions = vec![String::from_utf8_lossy(&out.stdout).trim().to_owned()];
    // `mosquitto -h` prints its version first and exits 3.
    let out = Command::new(mosquitto)
        .arg("-h")
        .output()
        .await
        .with_context(|| format!("cannot run {}", mosquitto.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    versions.push(text.lines().next().unwrap_or("mosquitto").trim().to_owned());
    versions.push("rumqttc 0.24 (MQTT 3.1.1)".to_owned());
    Ok(versions)
}

/// Deploys the publisher and the subscriber components; returns the IPC environment each
/// was given (SVCUID and the socket path), which its Run step writes to `ipc.env`.
async fn deploy_components(
    lambkin: &Path,
    root: &Path,
    work: &Path,
) -> anyhow::Result<(Vec<(String, String)>, Vec<(String, String)>)> {
    let recipes = work.join("recipes");
    fs::create_dir_all(&recipes)?;
    let run = "env | grep -E '^(SVCUID|AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT)=' \
               > ipc.env.new && mv ipc.env.new ipc.env && exec sleep 3600";
    for (name, operation) in [
        (PUBLISHER, "aws.greengrass#PublishToTopic"),
        (SUBSCRIBER, "aws.greengrass#SubscribeToTopic"),
    ] {
        let recipe = serde_json::json!({
            "RecipeFormatVersion": "2020-01-25",
            "ComponentName": name,
            "ComponentVersion": COMPONENT_VERSION,
            "ComponentConfiguration": {"DefaultConfiguration": {"accessControl": {
                "aws.greengrass.ipc.pubsub": {
                    format!("{name}:pubsub:1"): {
                        "operations": [operation],
                        "resources": ["bench/*"],
                    }
                }
            }}},
            "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"Run": run}}],
        });
        fs::write(
            recipes.join(format!("{name}-{COMPONENT_VERSION}.json")),
            serde_json::to_vec_pretty(&recipe)?,
        )?;
    }
    let out = Command::new(lambkin)
        .arg("deploy")
        .arg("--root")
        .arg(root)
        .arg("-r")
        .arg(&recipes)
        .args(["-m", &format!("{PUBLISHER}={COMPONENT_VERSION}")])
        .args(["-m", &format!("{SUBSCRIBER}={COMPONENT_VERSION}")])
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run lambkin deploy")?;
    if !out.status.success() {
        bail!(
            "lambkin deploy failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let publisher = component_env(root, PUBLISHER).await?;
    let subscriber = component_env(root, SUBSCRIBER).await?;
    Ok((publisher, subscriber))
}

async fn component_env(root: &Path, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let file = root.join("work").join(name).join("ipc.env");
    let started = Instant::now();
    let text = loop {
        if let Ok(text) = fs::read_to_string(&file) {
            break text;
        }
        if started.elapsed() > READY_LIMIT {
            bail!("{name} did not write {} in time", file.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let env: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if env.len() != 2 {
        bail!("{name} was not given SVCUID and the socket path: {text:?}");
    }
    Ok(env)
}

/// mosquitto on 127.0.0.1 at a port that was free a moment before, anonymous, no persistence,
/// with `set_tcp_nodelay` (without it, Nagle's algorithm holds paced messages back for up to
/// the subscriber's delayed ACK, tens of milliseconds at p99); `extra`: further lines.
pub(crate) fn start_mosquitto(
    mosquitto: &Path,
    work: &Path,
    extra: &str,
) -> anyhow::Result<(Supervised, u16)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a free port")?
        .port();
    let conf = work.join("mosquitto.conf");
    fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             set_tcp_nodelay true\nlog_dest file {}\n{extra}",
            work.join("mosquitto.log").display()
        ),
    )?;
    let mut command = std::process::Command::new(mosquitto);
    command
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(work.join("mosquitto.err"))?);
    let mut process = Supervised::spawn("mosquitto", command)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        process
            .check_running()
            .with_context(|| fs::read_to_string(work.join("mosquitto.err")).unwrap_or_default())?;
        if started.elapsed() > READY_LIMIT {
            bail!("mosquitto does not accept connections on {addr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((process, port))
}

/// How to start each kind of client.
#[derive(Debug)]
struct Clients {
    python: PathBuf,
    script: PathBuf,
    this: PathBuf,
    logs: PathBuf,
}

impl Clients {
    #[allow(clippy::too_many_arguments)]
    fn command(
        &self,
        kind: ClientKind,
        broker: Broker,
        role: &str,
        name: &str,
        topic: &str,
        plan: &Plan,
        brokers: &Brokers,
        env: &[(String, String)],
    ) -> anyhow::Result<Command> {
        let mut command = match kind {
            ClientKind::Python => {
                let mut c = Command::new(&self.python);
                c.arg("-u").arg(&self.script);
                c
            }
            ClientKind::Rust => {
                let mut c = Command::new(&self.this);
                c.arg("pubsub-client");
                c
            }
        };
        command
            .arg(match broker {
                Broker::Lambkin => "ipc",
                Broker::Mosquitto => "mqtt",
            })
            .arg(role)
            .args(["--topic", topic, "--name", name, "--host", "127.0.0.1"])
            .args(["--port", &brokers.mosquitto_port.to_string()])
            .args(["--latency", &plan.latency.to_string()])
            .args(["--interval-us", &plan.interval_us.to_string()])
            .args(["--throughput", &plan.throughput.to_string()])
            .args(["--window", &plan.window.to_string()])
            .args(["--idle", "3"])
            .args(["--deadline", &PUBLISH_LIMIT.as_secs().to_string()])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(self.logs.join(format!("{name}.err")))?)
            .kill_on_drop(true);
        Ok(command)
    }
}

/// A client process and its stdout, line by line.
struct Running {
    name: String,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Running {
    fn spawn(name: String, mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("{name} has no stdout"))?;
        Ok(Self {
            name,
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    async fn line(&mut self, limit: Duration) -> anyhow::Result<String> {
        match tokio::time::timeout(limit, self.lines.next_line()).await {
            Err(_) => bail!("{} printed nothing within {limit:?}", self.name),
            Ok(Err(e)) => Err(e).with_context(|| format!("reading {}'s output", self.name)),
            Ok(Ok(None)) => {
                let status = self.child.wait().await?;
                bail!(
                    "{} ended ({status}) before printing its result; see {}.err",
                    self.name,
                    self.name
                )
            }
            Ok(Ok(Some(line))) => Ok(line),
        }
    }

    async fn result(mut self, limit: Duration) -> anyhow::Result<serde_json::Value> {
        let line = self.line(limit).await?;
        let value = serde_json::from_str(&line)
            .with_context(|| format!("{} printed {line:?}", self.name))?;
        let status = self.child.wait().await?;
        if !status.success() {
            bail!("{} exited with {status}", self.name);
        }
        Ok(value)
    }
}

async fn run_case(
    clients: &Clients,
    brokers: &Brokers,
    plan: &Plan,
    case: Case,
    topic_id: usize,
) -> anyhow::Result<Outcome> {
    let topic = format!("bench/{topic_id}");
    let prefix = format!("case{topic_id}");
    let mut subscribers = Vec::with_capacity(case.subscribers);
    for i in 0..case.subscribers {
        let name = format!("{prefix}-sub{i}");
        let command = clients.command(
            case.kind,
            case.broker,
            "sub",
            &name,
            &topic,
            plan,
            brokers,
            &brokers.subscriber_env,
        )?;
        subscribers.push(Running::spawn(name, command)?);
    }
    for s in &mut subscribers {
        let line = s.line(READY_LIMIT).await?;
        if line != "ready" {
            bail!("{} printed {line:?} instead of ready", s.name);
        }
    }
    let broker_pid = match case.broker {
        Broker::Lambkin => brokers.lambkin_pid,
        Broker::Mosquitto => brokers.mosquitto_pid,
    };
    let cpu_before = procfs::cpu_ns(broker_pid).unwrap_or(0);
    let name = format!("{prefix}-pub");
    let command = clients.command(
        case.kind,
        case.broker,
        "pub",
        &name,
        &topic,
        plan,
        brokers,
        &brokers.publisher_env,
    )?;
    let publisher = Running::spawn(name, command)?.result(PUBLISH_LIMIT).await?;
    let mut results = Vec::with_capacity(subscribers.len());
    for s in subscribers {
        results.push(s.result(Duration::from_secs(60)).await?);
    }
    let cpu_ns = procfs::cpu_ns(broker_pid)
        .unwrap_or(0)
        .saturating_sub(cpu_before);
    Outcome::from_results(plan, case.subscribers, &publisher, &results, cpu_ns)
}

/// Deploys the Lambda component whose IOT_CORE topic `lambkin-bench/fn/in` invokes
/// `bench/pubsub/handler.py` (pinned, one instance, NoContainer).
async fn deploy_function(
    lambkin: &Path,
    root: &Path,
    work: &Path,
    python: &Path,
) -> anyhow::Result<()> {
    let out = Command::new(python)
        .arg("-c")
        .arg("import sys; print(f'python{sys.version_info[0]}.{sys.version_info[1]}')")
        .output()
        .await?;
    let runtime = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let recipe = crate::recipes::LambdaRecipe {
        name: FUNCTION,
        version: COMPONENT_VERSION,
        description: "Messaging benchmark: the function an IOT_CORE topic invokes".into(),
        configuration: serde_json::json!({
            "lambdaExecutionParameters": {"EnvironmentVariables": {}},
            "containerMode": "NoContainer",
            "timeoutInSeconds": 30,
            "maxInstancesCount": 1,
            "inputPayloadEncodingType": "json",
            "maxQueueSize": 1000,
            "pinned": true,
            "maxIdleTimeInSeconds": 60,
            "statusTimeoutInSeconds": 60,
            "pubsubTopics": {"0": {"topic": "lambkin-bench/fn/in", "type": "IOT_CORE"}},
            "accessControl": {"aws.greengrass.ipc.mqttproxy": {
                format!("{FUNCTION}:mqtt:1"): {
                    "operations": ["aws.greengrass#PublishToIoTCore"],
                    "resources": ["lambkin-bench/fn/out"],
                }
            }},
        }),
        handler: "handler.handler",
        runtime: &runtime,
        setenv: serde_json::json!({}),
    };
    crate::recipes::deploy_python(lambkin, root, work, "function", &recipe, HANDLER_PY).await
}

/// Paced paho publishes: to a paho subscriber through mosquitto, then to the function.
async fn run_trigger(clients: &Clients, brokers: &Brokers, plan: &Plan) -> anyhow::Result<Trigger> {
    let name = "trigger".to_owned();
    let mut command = Command::new(&clients.python);
    command
        .arg("-u")
        .arg(&clients.script)
        .args([
            "mqtt",
            "trigger",
            "--name",
            "lambkin-bench-trigger",
            "--host",
            "127.0.0.1",
        ])
        .args(["--port", &brokers.mosquitto_port.to_string()])
        .args(["--latency", &plan.latency.to_string()])
        .args(["--interval-us", &TRIGGER_INTERVAL_US.to_string()])
        .args(["--idle", "5"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(clients.logs.join(format!("{name}.err")))?)
        .kill_on_drop(true);
    let mut running = Running::spawn(name, command)?;
    let line = running.line(READY_LIMIT).await?;
    if line != "ready" {
        bail!("the trigger client printed {line:?} instead of ready");
    }
    let result = running.result(PUBLISH_LIMIT).await?;
    Trigger::from_result(plan, &result)
}

/// The run's work directory (removed on the way out unless `--keep`).
#[derive(Debug)]
struct WorkDir(PathBuf);

impl WorkDir {
    fn path(&self) -> &Path {
        &self.0
    }
}
