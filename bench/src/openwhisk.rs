//! The OpenWhisk benchmark: a blocking invoke of a trivial Node action through the host's
//! OpenWhisk API (`POST /api/v1/namespaces/_/actions/echo?blocking=true&result=true`, Basic
//! auth) against the same handler as a Lambda function (`nodejs20.x`, on demand) through the
//! Invoke API (signed), on one host, in turns, with the same client. The difference of the
//! medians is what the OpenWhisk path adds: its API, the adapter in the function process, and
//! the activation's record (appended unsynced, as by default, or with `--synced` synced before the answer).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use base64::Engine as _;
use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::client::{interleaved, ApiKey, Conn, Latency, Target};
use crate::lambkin::Host;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A shorter run (fewer invokes).
    #[arg(long)]
    pub quick: bool,
    /// Blocking invokes answer once their record is synced (`[openwhisk]
    /// sync_blocking_records = true`).
    #[arg(long)]
    pub synced: bool,
}

/// The handler both paths run: the action's `main`, the Lambda function's `handler`.
const ACTION_CODE: &str = "function main(params) { return params; }";
const LAMBDA_CODE: &str = "exports.handler = async (event) => event;\n";
/// The budget the issue sets for the OpenWhisk path, at the median.
const BUDGET: Duration = Duration::from_micros(50);

#[derive(Debug)]
pub struct Report {
    lambda: Latency,
    openwhisk: Latency,
    count: usize,
    rounds: usize,
    loadavg: String,
    synced: bool,
}

pub fn main(lambkin: Option<PathBuf>, args: &Args) -> ExitCode {
    crate::run_to_table(run(lambkin, args), render)
}

fn say(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

async fn run(lambkin: Option<PathBuf>, args: &Args) -> anyhow::Result<Report> {
    let lambkin = crate::binary(lambkin.as_deref(), "lambkin")?;
    let (warmup, count, rounds) = if args.quick {
        (200, 1000, 10)
    } else {
        (500, 5000, 20)
    };
    say("starting a host");
    let host = if args.synced {
        Host::start_with_config(
            &lambkin,
            Some("[openwhisk]\nsync_blocking_records = true\n"),
        )?
    } else {
        Host::start(&lambkin)?
    };

    say("creating the Lambda function echo-node and the OpenWhisk action echo");
    let zip = crate::lambkin::zip_of("index.js", LAMBDA_CODE.as_bytes(), 0o644)?;
    let body = serde_json::json!({
        "FunctionName": "echo-node",
        "Runtime": "nodejs20.x",
        "Role": "arn:aws:iam::000000000000:role/x",
        "Handler": "index.handler",
        "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
        "Timeout": 60,
        "MemorySize": 256,
        // As an action's function: on demand, up to 8 instances.
        "Greengrass": {"Pinned": false, "MaxInstancesCount": 8},
    });
    let mut conn = host.connect().await?;
    let reply = conn
        .request(
            Method::POST,
            "/2015-03-31/functions",
            Bytes::from(body.to_string()),
        )
        .await?;
    if reply.status != StatusCode::CREATED {
        bail!("CreateFunction: HTTP {}", reply.status);
    }
    let key = ApiKey::openwhisk_of_host(host.root())?;
    let mut ow = Conn::connect(host.addr, Some(key.clone())).await?;
    let action = serde_json::json!({"exec": {"kind": "nodejs:20", "code": ACTION_CODE}});
    let reply = ow
        .request(
            Method::PUT,
            "/api/v1/namespaces/_/actions/echo?overwrite=true",
            Bytes::from(action.to_string()),
        )
        .await?;
    if reply.status != StatusCode::OK {
        bail!(
            "PUT action: HTTP {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }

    let lambda = host.target("lambda", "/2015-03-31/functions/echo-node/invocations");
    let openwhisk = Target {
        name: "openwhisk",
        addr: host.addr,
        path: "/api/v1/namespaces/_/actions/echo?blocking=true&result=true".into(),
        key: Some(Arc::clone(&key)),
    };
    let payload = Bytes::from_static(br#"{"message":"hello from the bench","n":42}"#);
    say(format!(
        "{warmup} warm-up invokes each, then {count} timed, in {rounds} turns"
    ));
    let [lambda, openwhisk] =
        interleaved([&lambda, &openwhisk], &payload, warmup, count, rounds).await?;
    Ok(Report {
        lambda,
        openwhisk,
        count,
        rounds,
        loadavg: crate::procfs::loadavg(),
        synced: args.synced,
    })
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn render(r: &Report) -> String {
    // Signed: the OpenWhisk path may come out faster (it checks no signature).
    let added_us = (r.openwhisk.p50.as_secs_f64() - r.lambda.p50.as_secs_f64()) * 1e6;
    let verdict = if added_us <= BUDGET.as_secs_f64() * 1e6 {
        "within"
    } else {
        "over"
    };
    format!(
        "| path | p50 | p99 | errors |\n|---|---|---|---|\n\
         | Invoke API, Lambda function `echo-node` (signed) | {} | {} | {} |\n\
         | OpenWhisk API, action `echo` (blocking, result only) | {} | {} | {} |\n\n\
         The OpenWhisk path adds {added_us:.0} µs at the median ({verdict} the {} budget). \
         {} timed invokes each, in {} turns; activation records {}; load average {}.",
        micros(r.lambda.p50),
        micros(r.lambda.p99),
        r.lambda.errors,
        micros(r.openwhisk.p50),
        micros(r.openwhisk.p99),
        r.openwhisk.errors,
        micros(BUDGET),
        r.count,
        r.rounds,
        if r.synced {
            "synced before the answer (sync_blocking_records = true)"
        } else {
            "appended unsynced (the default)"
        },
        r.loadavg,
    )
}
