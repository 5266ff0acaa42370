//! What `/metrics` costs on the invoke path: two hosts side by side in one run, one as it comes
//! (metrics on) and one with `[metrics] enabled = false`, each with the same echo function,
//! loaded by the same client taking turns: sequential latency (p50, p99) and throughput at
//! concurrency 64. The hosts' own `/metrics` is read at the end, to show the counters counted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::client::{self, Latency, Throughput};
use crate::lambkin::{self, Host};
use crate::{binary, payload, procfs, say, Plan};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A shorter run (fewer invokes, 1 s of throughput per host).
    #[arg(long)]
    pub quick: bool,
    /// Both hosts with metrics on (an A/A run): the difference the method shows by itself.
    #[arg(long)]
    pub control: bool,
}

/// The host's configuration with metrics off.
const METRICS_OFF: &str = "[metrics]\nenabled = false\n";
/// Turns the two hosts take.
const LATENCY_TURNS: usize = 20;
const THROUGHPUT_TURNS: u32 = 6;
const CONCURRENCY: usize = 64;

#[derive(Debug)]
pub struct Report {
    plan: Plan,
    control: bool,
    latency: [Latency; 2],
    throughput: [Throughput; 2],
    /// Invocations the metrics-on host's `/metrics` counted for the echo function.
    counted: f64,
    loadavg: (String, String),
}

pub fn main(lambkin: Option<PathBuf>, bootstrap: Option<PathBuf>, args: &Args) -> ExitCode {
    crate::run_to_table(run(lambkin, bootstrap, args), render)
}

async fn run(
    lambkin: Option<PathBuf>,
    bootstrap: Option<PathBuf>,
    args: &Args,
) -> anyhow::Result<Report> {
    let plan = Plan::new(args.quick);
    let loadavg_start = procfs::loadavg();
    let exe = binary(lambkin.as_deref(), "lambkin")?;
    let bootstrap = binary(bootstrap.as_deref(), "bootstrap")?;
    let zip = lambkin::echo_zip(&bootstrap)?;
    let payload = payload(plan.payload_len);
    say("starting two hosts: metrics on (the default) and [metrics] enabled = false");
    let mut on = Host::start(&exe)?;
    let mut off = Host::start_with_config(&exe, (!args.control).then_some(METRICS_OFF))?;
    on.create_echo(&zip).await?;
    off.create_echo(&zip).await?;
    let on_target = on.target("metrics on", lambkin::INVOKE_PATH);
    let off_target = off.target("metrics off", lambkin::INVOKE_PATH);
    say(format!(
        "sequential latency: {} invokes each, taking turns",
        plan.latency_count
    ));
    let latency = client::interleaved(
        [&on_target, &off_target],
        &payload,
        plan.latency_warmup,
        plan.latency_count,
        LATENCY_TURNS,
    )
    .await?;
    say(format!(
        "throughput at concurrency {CONCURRENCY}: {THROUGHPUT_TURNS} turns each"
    ));
    // Half the turns with the metrics-on host first, half with it second: a turn's place in
    // the round (what ran just before it) weighs on both alike.
    let half = THROUGHPUT_TURNS / 2;
    let duration = plan.duration * half;
    let [on_first, off_second] = client::throughput_interleaved(
        [(&on_target, on.pid()), (&off_target, off.pid())],
        &payload,
        CONCURRENCY,
        plan.warmup,
        duration,
        half,
    )
    .await?;
    let [off_first, on_second] = client::throughput_interleaved(
        [(&off_target, off.pid()), (&on_target, on.pid())],
        &payload,
        CONCURRENCY,
        plan.warmup,
        duration,
        half,
    )
    .await?;
    let throughput = [merge(on_first, on_second), merge(off_second, off_first)];
    on.process.check_running()?;
    off.process.check_running()?;
    let counted = counted_invocations(&on).await?;
    if !args.control && scrape(&off).await?.0 != 404 {
        bail!("the host with [metrics] enabled = false serves /metrics");
    }
    on.process.stop();
    off.process.stop();
    Ok(Report {
        plan,
        control: args.control,
        latency,
        throughput,
        counted,
        loadavg: (loadavg_start, procfs::loadavg()),
    })
}

/// Two measurements of one target as one.
fn merge(a: Throughput, b: Throughput) -> Throughput {
    Throughput {
        concurrency: a.concurrency,
        ok: a.ok + b.ok,
        ok_total: a.ok_total + b.ok_total,
        errors: a.errors + b.errors,
        window: a.window + b.window,
        first_error: a.first_error.or(b.first_error),
        cpu: a.cpu.zip(b.cpu).map(|(x, y)| (x.0 + y.0, x.1 + y.1)),
    }
}

/// `GET /metrics` with the host's token: (status, body).
async fn scrape(host: &Host) -> anyhow::Result<(u16, String)> {
    let token = std::fs::read_to_string(host.root().join("state").join("metrics.token"))
        .unwrap_or_default();
    let stream = tokio::net::TcpStream::connect(host.addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let request = Request::get("/metrics")
        .header("host", host.addr.to_string())
        .header("authorization", format!("Bearer {}", token.trim()))
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    drop(sender);
    let _ = driver.await;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn counted_invocations(host: &Host) -> anyhow::Result<f64> {
    let (status, body) = scrape(host).await?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    let samples = lambkin_proto::metrics::parse_text(&body).context("/metrics")?;
    Ok(samples
        .iter()
        .filter(|s| {
            s.name == "lambkin_function_invocations_total"
                && s.label("function") == Some(lambkin::FUNCTION)
        })
        .map(|s| s.value)
        .sum())
}

fn render(r: &Report) -> String {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let [on, off] = &r.latency;
    let [t_on, t_off] = &r.throughput;
    let diff = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:+.1} %", (a - b) / b * 100.0)
        } else {
            "-".into()
        }
    };
    let mut out = String::new();
    let second = if r.control {
        "metrics on (a second host: A/A control)"
    } else {
        "`[metrics] enabled = false`"
    };
    out.push_str(&format!(
        "| echo function, 64-byte payload | metrics on (default) | {second} | first vs second |\n"
    ));
    out.push_str("|---|---|---|---|\n");
    out.push_str(&format!(
        "| sequential p50 | {:.0} µs | {:.0} µs | {} |\n",
        us(on.p50),
        us(off.p50),
        diff(us(on.p50), us(off.p50))
    ));
    out.push_str(&format!(
        "| sequential p99 | {:.0} µs | {:.0} µs | {} |\n",
        us(on.p99),
        us(off.p99),
        diff(us(on.p99), us(off.p99))
    ));
    out.push_str(&format!(
        "| concurrency {CONCURRENCY} | {:.0} /s | {:.0} /s | {} |\n",
        t_on.per_second(),
        t_off.per_second(),
        diff(t_on.per_second(), t_off.per_second())
    ));
    let cpu = |t: &Throughput| {
        t.cpu_per_invoke_us()
            .map_or_else(|| "-".to_owned(), |(own, _)| format!("{own:.1} µs"))
    };
    out.push_str(&format!(
        "| host CPU per invoke at concurrency {CONCURRENCY} | {} | {} | |\n",
        cpu(t_on),
        cpu(t_off)
    ));
    out.push_str(&format!(
        "\n{} sequential invokes per host in {LATENCY_TURNS} turns; {THROUGHPUT_TURNS} turns of {:?} each at concurrency {CONCURRENCY} (half of them with the metrics-on host first, half second); errors: {} / {} (latency), {} / {} (throughput). The metrics-on host's /metrics counted {:.0} invocations of echo. Load average {} → {}.\n",
        r.plan.latency_count,
        r.plan.duration,
        on.errors,
        off.errors,
        t_on.errors,
        t_off.errors,
        r.counted,
        r.loadavg.0.trim(),
        r.loadavg.1.trim(),
    ));
    out
}
