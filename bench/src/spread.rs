//! `lambkin-bench spread`: one MQTT 5 shared-group stream processed by one, two and three
//! hosts on one mosquitto. Every host deploys the same Lambda component, whose IOT_CORE
//! trigger is `$share/GROUP/lambkin-bench/spread/+` and whose Python handler waits 50 ms per
//! event (I/O-bound: CPU is not the limit), with `maxInstancesCount` 4. The bench publishes
//! the stream (QoS 1, as fast as the broker takes it) with rumqttc and times it from the first
//! publish until every host's function log shows as many ended invocations as were
//! published; the table gives messages/s and the ratio against one host.
//!
//! mosquitto runs with no limit on the messages it queues for a session (`max_queued_messages
//! 0`): a host acknowledges a message only once stored, and stores the next only once its
//! function's queue has room, so most of the stream waits at the broker, whose default limit
//! (1,000 per session) would drop the rest.
//!
//! Before each timed stream a warm-up (a few messages per instance and host) starts every
//! instance and proves every host's subscription is in the group.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::Command;

use crate::lambkin::Host;

const FUNCTION: &str = "com.lambkin.bench.SpreadWorker";
const COMPONENT_VERSION: &str = "1.0.0";
/// Instances per host.
const INSTANCES: u32 = 4;
/// What the handler waits per event.
const WORK: Duration = Duration::from_millis(50);
/// How long everything may take to happen before the run gives up.
const LIMIT: Duration = Duration::from_secs(300);
/// Targets from issue 16: two hosts at least 1.8×, three 2.6× one host's rate.
const TARGETS: [f64; 3] = [1.0, 1.8, 2.6];

const HANDLER_PY: &str =
    "import time\n\n\ndef handler(event, context):\n    time.sleep(0.05)\n    return {}\n";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A shorter run (fewer messages).
    #[arg(long)]
    pub quick: bool,
    /// Messages in each timed stream (default 2400, 600 with --quick).
    #[arg(long)]
    pub messages: Option<usize>,
    /// A Python whose version names the function's runtime (python3.X).
    #[arg(long, default_value = "python3")]
    pub python: PathBuf,
    /// The mosquitto broker (2.x: MQTT 5 shared subscriptions).
    #[arg(long, default_value = "mosquitto")]
    pub mosquitto: PathBuf,
}

/// One stream through `hosts` hosts.
#[derive(Debug)]
struct Run {
    hosts: usize,
    messages: usize,
    seconds: f64,
    /// Invocations each host ran in the timed stream.
    per_host: Vec<usize>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
}

#[derive(Debug)]
struct Report {
    runs: Vec<Run>,
    runtime: String,
}

pub fn main(lambkin: Option<PathBuf>, args: &Args) -> ExitCode {
    crate::run_to_table(run(lambkin, args), render)
}

fn say(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

async fn run(lambkin: Option<PathBuf>, args: &Args) -> anyhow::Result<Report> {
    let lambkin = crate::binary(lambkin.as_deref(), "lambkin")?;
    let messages = args.messages.unwrap_or(if args.quick { 600 } else { 2400 });
    let work = tempfile::Builder::new()
        .prefix("lambkin-bench-spread-")
        .tempdir()
        .context("cannot create the work directory")?;
    let runtime = python_runtime(&args.python).await?;
    // The whole stream may wait at the broker for a busy group: mosquitto's default queue of
    // 1,000 messages per session would drop the rest.
    let (_mosquitto, port) = crate::pubsub::start_mosquitto(
        &args.mosquitto,
        work.path(),
        "max_queued_messages 0\nmax_queued_bytes 0\n",
    )?;
    say(format!("mosquitto on 127.0.0.1:{port}"));
    let mut runs = Vec::new();
    for hosts in 1..=3 {
        say(format!("{hosts} host(s), {messages} messages"));
        runs.push(run_group(&lambkin, work.path(), port, &runtime, hosts, messages).await?);
        let last = runs.last().map(Run::rate).unwrap_or_default();
        say(format!("{hosts} host(s): {last:.1} messages/s"));
    }
    Ok(Report { runs, runtime })
}

/// `python3.X` of `python`.
async fn python_runtime(python: &Path) -> anyhow::Result<String> {
    let out = Command::new(python)
        .arg("-c")
        .arg("import sys; print(f'python{sys.version_info[0]}.{sys.version_info[1]}')")
        .output()
        .await
        .with_context(|| format!("cannot run {}", python.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn run_group(
    lambkin: &Path,
    work: &Path,
    port: u16,
    runtime: &str,
    count: usize,
    messages: usize,
) -> anyhow::Result<Run> {
    let group = format!("spread{count}");
    let topic_root = format!("lambkin-bench/spread{count}");
    let filter = format!("$share/{group}/{topic_root}/+");
    let mut hosts = Vec::new();
    for i in 0..count {
        let config = format!(
            "thing_name = \"bench-{count}-{i}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
             reconnect_min_ms = 50\nreconnect_max_ms = 200\n"
        );
        let host = Host::start_with_config(lambkin, Some(&config))?;
        deploy(
            lambkin,
            host.root(),
            work,
            runtime,
            &filter,
            &format!("{count}-{i}"),
        )
        .await?;
        hosts.push(host);
    }
    let publisher = Publisher::connect(port, &format!("lambkin-bench-publisher-{count}")).await?;

    // Warm-up: every instance of every host started, every subscription in the group.
    let warmup = count * INSTANCES as usize * 2;
    let started = Instant::now();
    let mut sent = 0usize;
    loop {
        for _ in 0..warmup {
            publisher.publish(&format!("{topic_root}/w{sent}")).await?;
            sent += 1;
        }
        let ended = wait_ended(&hosts, sent, Duration::from_secs(30)).await;
        if ended.iter().all(|&n| n > 0) && ended.iter().sum::<usize>() >= sent {
            break;
        }
        if started.elapsed() > LIMIT {
            bail!("the warm-up did not reach every host: {ended:?}");
        }
    }
    let before = ended_per_host(&hosts);
    let base: usize = before.iter().sum();

    let start = Instant::now();
    for n in 0..messages {
        publisher.publish(&format!("{topic_root}/{n}")).await?;
    }
    let ended = wait_ended(&hosts, base + messages, LIMIT).await;
    let seconds = start.elapsed().as_secs_f64();
    if ended.iter().sum::<usize>() < base + messages {
        bail!(
            "{} of {messages} messages ran within {LIMIT:?}",
            ended.iter().sum::<usize>() - base
        );
    }
    let per_host = ended.iter().zip(&before).map(|(a, b)| a - b).collect();
    publisher.close().await;
    Ok(Run {
        hosts: count,
        messages,
        seconds,
        per_host,
    })
}

/// Waits (polling the logs) until the hosts ran `total` invocations between them, or `limit`
/// passed; what each ran.
async fn wait_ended(hosts: &[Host], total: usize, limit: Duration) -> Vec<usize> {
    let deadline = Instant::now() + limit;
    loop {
        let ended = ended_per_host(hosts);
        if ended.iter().sum::<usize>() >= total || Instant::now() >= deadline {
            return ended;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Invocations ended so far on each host, from its function's log.
fn ended_per_host(hosts: &[Host]) -> Vec<usize> {
    hosts
        .iter()
        .map(|h| {
            fs::read_to_string(h.root().join("logs").join(format!("{FUNCTION}.log")))
                .map(|log| log.matches("END RequestId:").count())
                .unwrap_or(0)
        })
        .collect()
}

/// Deploys the worker component on the host at `root`.
async fn deploy(
    lambkin: &Path,
    root: &Path,
    work: &Path,
    runtime: &str,
    filter: &str,
    tag: &str,
) -> anyhow::Result<()> {
    let recipe = crate::recipes::LambdaRecipe {
        name: FUNCTION,
        version: COMPONENT_VERSION,
        description: "Shared-subscription benchmark: a Python function waiting 50 ms per event"
            .into(),
        configuration: serde_json::json!({
            "lambdaExecutionParameters": {"EnvironmentVariables": {}},
            "containerMode": "NoContainer",
            "timeoutInSeconds": 30,
            "maxInstancesCount": INSTANCES,
            "inputPayloadEncodingType": "json",
            "maxQueueSize": 1000,
            "pinned": false,
            "maxIdleTimeInSeconds": 60,
            "statusTimeoutInSeconds": 60,
            "pubsubTopics": {"0": {"topic": filter, "type": "IOT_CORE"}},
        }),
        handler: "handler.handler",
        runtime,
        setenv: serde_json::json!({}),
    };
    crate::recipes::deploy_python(lambkin, root, work, tag, &recipe, HANDLER_PY).await
}

/// rumqttc (MQTT 5) publishing QoS 1 messages; its event loop runs on a task of its own.
struct Publisher {
    client: rumqttc::v5::AsyncClient,
    eventloop: tokio::task::JoinHandle<()>,
}

impl Publisher {
    async fn connect(port: u16, client_id: &str) -> anyhow::Result<Self> {
        let mut options = rumqttc::v5::MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 1024);
        let (connected_tx, connected) = tokio::sync::oneshot::channel();
        let eventloop = tokio::spawn(async move {
            let mut connected_tx = Some(connected_tx);
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(
                        rumqttc::v5::mqttbytes::v5::Packet::ConnAck(_),
                    )) => {
                        if let Some(tx) = connected_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        say(format!("publisher: {e}"));
                        // Paces reconnection attempts.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), connected)
            .await
            .context("the publisher did not connect")?
            .context("the publisher's event loop ended")?;
        Ok(Self { client, eventloop })
    }

    async fn publish(&self, topic: &str) -> anyhow::Result<()> {
        self.client
            .publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, "{}")
            .await
            .context("cannot publish")
    }

    async fn close(self) {
        let _ = self.client.disconnect().await;
        self.eventloop.abort();
    }
}

fn render(report: &Report) -> String {
    let base = report.runs.first().map(Run::rate).unwrap_or(f64::NAN);
    let mut out = String::new();
    out.push_str(&format!(
        "Shared-group stream: a {runtime} handler that waits {work} ms per event, \
         maxInstancesCount {INSTANCES} per host, QoS 1 on one mosquitto\n\n",
        runtime = report.runtime,
        work = WORK.as_millis()
    ));
    out.push_str("| hosts | messages | seconds | messages/s | × one host | target | per host |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for (run, target) in report.runs.iter().zip(TARGETS) {
        let ratio = run.rate() / base;
        let verdict = if run.hosts == 1 {
            "baseline".to_owned()
        } else if ratio >= target {
            format!("≥ {target}× met")
        } else {
            format!("≥ {target}× missed")
        };
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.1} | {:.2}× | {} | {:?} |\n",
            run.hosts,
            run.messages,
            run.seconds,
            run.rate(),
            ratio,
            verdict,
            run.per_host
        ));
    }
    out
}
