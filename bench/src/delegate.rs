//! The delegation benchmark: a function that waits 50 ms per event (I/O-bound: the CPU is not
//! the limit), `maxInstancesCount` 4, on one host alone against the same host with `overflow`
//! to a second host (the same function there, also 4 instances), in turns within one run, with
//! the same load. The second host is host A's remote target, signed with its key as any target.
//! Overflow is measured twice: with `OverflowQueueThreshold` 0 (any invocation that would
//! wait goes out) and 4 (up to one waiting per local instance stays here).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use base64::Engine as _;
use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::client::{throughput_interleaved, Throughput};
use crate::lambkin::Host;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A shorter run (2 s of load per setup instead of 10).
    #[arg(long)]
    pub quick: bool,
    /// Concurrent callers (one connection each).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

/// The function both hosts run: 50 ms of waiting per event.
const CODE: &str =
    "import time\n\ndef handler(event, context):\n    time.sleep(0.05)\n    return event\n";
const MAX_INSTANCES: u32 = 4;
/// The ratio the issue asks of two hosts over one.
const TARGET_RATIO: f64 = 1.8;

/// The thresholds measured.
const THRESHOLDS: [u32; 2] = [0, 4];

#[derive(Debug)]
pub struct Report {
    alone: Throughput,
    /// Per threshold of [`THRESHOLDS`]: the throughput and how many of its invocations the
    /// function's log says went to the second host (warm-up included).
    overflow: [(Throughput, usize); 2],
    concurrency: usize,
    seconds: u64,
    loadavg: String,
}

pub fn main(lambkin: Option<PathBuf>, args: &Args) -> ExitCode {
    crate::run_to_table(run(lambkin, args), render)
}

fn say(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

async fn create(host: &Host, name: &str, greengrass: serde_json::Value) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "FunctionName": name,
        "Runtime": "python3.11",
        "Role": "arn:aws:iam::000000000000:role/x",
        "Handler": "app.handler",
        "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(crate::lambkin::zip_of("app.py", CODE.as_bytes(), 0o644)?)},
        "Timeout": 30,
        "Greengrass": greengrass,
    });
    let reply = host
        .connect()
        .await?
        .request(
            Method::POST,
            "/2015-03-31/functions",
            Bytes::from(body.to_string()),
        )
        .await?;
    if reply.status != StatusCode::CREATED {
        bail!(
            "CreateFunction {name}: HTTP {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    Ok(())
}

fn count_delegated(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|text| text.lines().filter(|l| l.contains("DELEGATED")).count())
        .unwrap_or(0)
}

async fn run(lambkin: Option<PathBuf>, args: &Args) -> anyhow::Result<Report> {
    let lambkin = crate::binary(lambkin.as_deref(), "lambkin")?;
    let seconds = if args.quick { 2 } else { 10 };
    say("starting host B (the remote) and host A with B as its target `peer`");
    let b = Host::start(&lambkin)?;
    let on_demand = serde_json::json!({"Pinned": false, "MaxInstancesCount": MAX_INSTANCES});
    create(&b, "wait50", on_demand.clone()).await?;
    let config = format!(
        "[remote_targets.peer]\nendpoint = \"http://{}\"\ncredentials = \"file\"\npath = \"{}\"\nprofile = \"lambkin\"\n",
        b.addr,
        b.root().join("state/credentials").display()
    );
    let a = Host::start_with_config(&lambkin, Some(&config))?;
    create(&a, "wait50", on_demand).await?;
    for threshold in THRESHOLDS {
        create(
            &a,
            &format!("wait50-overflow-{threshold}"),
            serde_json::json!({
                "Pinned": false,
                "MaxInstancesCount": MAX_INSTANCES,
                "Delegation": {
                    "Policy": "overflow",
                    "Target": "peer",
                    "FunctionName": "wait50",
                    "OverflowQueueThreshold": threshold,
                },
            }),
        )
        .await?;
    }
    let alone = a.target("one host", "/2015-03-31/functions/wait50/invocations");
    let [over0, over4] = THRESHOLDS.map(|threshold| {
        a.target(
            "overflow to a second host",
            &format!("/2015-03-31/functions/wait50-overflow-{threshold}/invocations"),
        )
    });
    let payload = Bytes::from_static(br#"{"n":1}"#);
    say(format!(
        "{} callers, {seconds} s of load per setup in 4 turns, 1 s warm-up",
        args.concurrency
    ));
    let [alone, over0, over4] = throughput_interleaved(
        [(&alone, a.pid()), (&over0, a.pid()), (&over4, a.pid())],
        &payload,
        args.concurrency,
        Duration::from_secs(1),
        Duration::from_secs(seconds),
        4,
    )
    .await?;
    let delegated = THRESHOLDS.map(|threshold| {
        count_delegated(
            &a.root()
                .join(format!("logs/wait50-overflow-{threshold}.log")),
        )
    });
    Ok(Report {
        alone,
        overflow: [(over0, delegated[0]), (over4, delegated[1])],
        concurrency: args.concurrency,
        seconds,
        loadavg: crate::procfs::loadavg(),
    })
}

fn render(r: &Report) -> String {
    let alone = r.alone.per_second();
    let mut out = format!(
        "| setup | invocations/s | errors | on the second host | ratio |\n|---|---|---|---|---|\n\
         | one host, `maxInstancesCount` 4 | {alone:.1} | {} | 0% | 1.00× |\n",
        r.alone.errors
    );
    let mut best: f64 = 0.0;
    for (threshold, (run, delegated)) in THRESHOLDS.iter().zip(&r.overflow) {
        let per_second = run.per_second();
        let ratio = if alone > 0.0 { per_second / alone } else { 0.0 };
        best = best.max(ratio);
        #[allow(clippy::cast_precision_loss)]
        let share = if run.ok_total > 0 {
            *delegated as f64 * 100.0 / run.ok_total as f64
        } else {
            0.0
        };
        out.push_str(&format!(
            "| same host, `overflow` (`OverflowQueueThreshold` {threshold}) to a second host \
             (4 instances there) | {per_second:.1} | {} | {share:.0}% | {ratio:.2}× |\n",
            run.errors
        ));
    }
    let verdict = if best >= TARGET_RATIO {
        "meets"
    } else {
        "misses"
    };
    out.push_str(&format!(
        "\nA function waiting 50 ms per event; {} callers, {} s of load per setup in 4 turns \
         (interleaved). \"On the second host\": the overflow function's `DELEGATED` log lines \
         over its invocations, warm-up included. The best ratio {verdict} the {TARGET_RATIO}× \
         target. Load average {}.",
        r.concurrency, r.seconds, r.loadavg,
    ));
    out
}
