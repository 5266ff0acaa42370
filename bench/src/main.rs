//! `lambkin-bench`: measures Lambkin against a plain echo server (the floor) and the AWS Lambda
//! Runtime Interface Emulator, side by side in one run, with one load client, on loopback, and
//! prints the results as a markdown table.

mod client;
mod container;
mod delegate;
mod deploy;
mod deploy_report;
mod floor;
mod lambkin;
mod metrics;
mod openwhisk;
mod process;
mod procfs;
mod pubsub;
mod pubsub_client;
mod pubsub_report;
mod recipes;
mod report;
mod rie;
mod spread;
mod stream;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use bytes::Bytes;
use clap::{Parser, Subcommand};

use client::{Target, Throughput};
use report::{Level, Results, RieRss, RieThroughput};

#[derive(Debug, Parser)]
#[command(
    name = "lambkin-bench",
    about = "Benchmarks Lambkin against a plain echo server and the AWS Lambda RIE"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// A shorter run (fewer invokes, 1 s per throughput level).
    #[arg(long)]
    quick: bool,
    /// The `lambkin` binary (default: next to this one).
    #[arg(long)]
    lambkin: Option<PathBuf>,
    /// The echo fixture's `bootstrap` binary (default: next to this one).
    #[arg(long)]
    bootstrap: Option<PathBuf>,
    /// The `aws-lambda-rie` binary; without it the RIE column says why it is missing.
    #[arg(long)]
    rie: Option<PathBuf>,
    /// Where the emulator comes from, for the notes under the table.
    #[arg(long)]
    rie_version: Option<String>,
    /// Why there is no emulator, for the table.
    #[arg(long, default_value = "unavailable")]
    rie_unavailable: String,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Run the floor echo server (used by the bench itself).
    #[command(hide = true)]
    FloorServer,
    /// Load one running target (for profiling it): sequential latency, then throughput.
    Load {
        /// The target, e.g. `http://127.0.0.1:3001/2015-03-31/functions/echo/invocations`.
        url: String,
        /// Concurrent workers (one connection each) for the throughput part.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Seconds of throughput load.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Sequential invokes timed before the throughput part.
        #[arg(long, default_value_t = 2000)]
        invokes: usize,
        /// The target's pid: report its CPU time (and its children's) per invoke.
        #[arg(long)]
        pid: Option<u32>,
        /// A Lambkin host's root: sign every request with its key (`ROOT/state/credentials`);
        /// without it, requests go unsigned (a host with `[api] auth = "none"`, or not Lambkin).
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Deployment benchmark: 50 generic + 10 Lambda components, deploy and restart times.
    Deploy(deploy::Args),
    /// Messaging benchmark: IPC pub/sub (Python SDK and Rust clients) against mosquitto.
    Pubsub(pubsub::Args),
    /// Container benchmark (root): cold start and memory of GreengrassContainer over NoContainer.
    Container(container::Args),
    /// OpenWhisk benchmark: a Node action's blocking invoke through the OpenWhisk API against
    /// the same handler as a Lambda function through the Invoke API.
    Openwhisk(openwhisk::Args),
    /// Delegation benchmark: a 50 ms function with 4 instances on one host, against the same
    /// host with `overflow` to a second host.
    Delegate(delegate::Args),
    /// Streaming benchmark: chunk latency and 16 MiB throughput through
    /// InvokeWithResponseStream and a streaming function URL, against the floor's chunked HTTP.
    Stream(stream::Args),
    /// Shared-subscription benchmark: one MQTT 5 shared-group stream (a 50 ms function)
    /// processed by one, two and three hosts on one mosquitto.
    Spread(spread::Args),
    /// Metrics' cost: invoke latency and concurrency-64 throughput with metrics on and with
    /// `[metrics] enabled = false`, two hosts taking turns.
    Metrics(metrics::Args),
    /// One publisher or subscriber of the messaging benchmark (used by the bench itself).
    #[command(hide = true)]
    PubsubClient(pubsub_client::Args),
}

/// Turns the signed and signing-off hosts take in one throughput measurement.
const THROUGHPUT_TURNS: u32 = 4;
/// Turns they take in the sequential latency run.
const LATENCY_TURNS: usize = 20;

/// How much of everything one run does.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub quick: bool,
    pub payload_len: usize,
    pub latency_warmup: usize,
    pub latency_count: usize,
    pub levels: [usize; 3],
    pub warmup: Duration,
    pub duration: Duration,
    pub cold_reps: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        Self {
            quick,
            payload_len: 64,
            latency_warmup: if quick { 100 } else { 200 },
            latency_count: if quick { 500 } else { 2000 },
            levels: [1, 8, 64],
            warmup: Duration::from_millis(if quick { 500 } else { 1000 }),
            duration: Duration::from_secs(if quick { 1 } else { 3 }),
            cold_reps: if quick { 3 } else { 10 },
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Sub::Deploy(args)) = &cli.command {
        return deploy::main(cli.lambkin.clone(), args);
    }
    if let Some(Sub::Openwhisk(args)) = &cli.command {
        return openwhisk::main(cli.lambkin.clone(), args);
    }
    if let Some(Sub::Delegate(args)) = &cli.command {
        return delegate::main(cli.lambkin.clone(), args);
    }
    if let Some(Sub::Stream(args)) = &cli.command {
        return stream::main(cli.lambkin.clone(), args);
    }
    if let Some(Sub::Container(args)) = &cli.command {
        return container::main(cli.lambkin.clone(), cli.bootstrap.clone(), args);
    }
    if let Some(Sub::Metrics(args)) = &cli.command {
        return metrics::main(cli.lambkin.clone(), cli.bootstrap.clone(), args);
    }
    if let Some(Sub::Pubsub(args)) = &cli.command {
        return pubsub::main(cli.lambkin.clone(), args);
    }
    if let Some(Sub::Spread(args)) = &cli.command {
        return spread::main(cli.lambkin.clone(), args);
    }
    if let Some(Sub::PubsubClient(args)) = &cli.command {
        return pubsub_client::main(args);
    }
    if let Some(Sub::FloorServer) = cli.command {
        return match floor::serve() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("floor-server: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Sub::Load {
        url,
        concurrency,
        seconds,
        invokes,
        pid,
        root,
    }) = &cli.command
    {
        return match load_one(url, *concurrency, *seconds, *invokes, pid, root.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("load: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // On Ctrl-C or SIGTERM the run is dropped, which stops every process it started.
    run_to_table(run(&cli), report::render)
}

/// Runs a benchmark on a current-thread runtime until it finishes, Ctrl-C or SIGTERM (the run
/// is then dropped, which stops every process it started), and prints its table.
pub fn run_to_table<T>(
    run: impl std::future::Future<Output = anyhow::Result<T>>,
    render: impl FnOnce(&T) -> String,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            results = run => results,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
            _ = term.recv() => Err(anyhow!("terminated")),
        }
    });
    match outcome {
        Ok(results) => {
            println!("{}", render(&results));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `lambkin-bench load URL`: the bench's client against a target that is already running.
fn load_one(
    url: &str,
    concurrency: usize,
    seconds: u64,
    invokes: usize,
    pid: &Option<u32>,
    root: Option<&Path>,
) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("{url}: only http:// URLs"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: std::net::SocketAddr = authority
        .parse()
        .with_context(|| format!("{authority}: not IP:PORT"))?;
    let target = Target {
        name: "target",
        addr,
        path: if path.is_empty() { "/" } else { path }.to_owned(),
        key: root.map(client::ApiKey::of_host).transpose()?,
    };
    let payload = payload(Plan::new(false).payload_len);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if invokes > 0 {
            let l = client::sequential(&target, &payload, invokes / 10, invokes).await?;
            println!(
                "sequential: p50 {:.0} µs, p99 {:.0} µs over {invokes} invokes, {} errors",
                l.p50.as_secs_f64() * 1e6,
                l.p99.as_secs_f64() * 1e6,
                l.errors
            );
        }
        if seconds > 0 {
            let t = client::throughput(
                &target,
                &payload,
                concurrency,
                Duration::from_millis(500),
                Duration::from_secs(seconds),
                *pid,
            )
            .await?;
            let cpu = t
                .cpu_per_invoke_us()
                .map(|(own, children)| {
                    format!(", CPU per invoke: {own:.0} µs (target) + {children:.0} µs (children)")
                })
                .unwrap_or_default();
            println!(
                "concurrency {concurrency}: {:.0} invocations/s, {} errors{cpu}{}",
                t.per_second(),
                t.errors,
                t.first_error
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            );
        }
        Ok(())
    })
}

/// The binary the options name, else `name` next to this one; absolute, and checked to exist.
pub(crate) fn binary(given: Option<&Path>, name: &str) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_owned(),
        None => {
            let exe = std::env::current_exe().context("cannot find this binary")?;
            exe.parent()
                .ok_or_else(|| anyhow!("{} has no directory", exe.display()))?
                .join(name)
        }
    };
    path.canonicalize()
        .with_context(|| format!("no {name} binary at {}", path.display()))
}

/// A compact JSON object of exactly `len` bytes (keys sorted, so any JSON echo keeps the bytes).
fn payload(len: usize) -> Bytes {
    let head = r#"{"bench":"lambkin","pad":""#;
    let tail = r#""}"#;
    let pad = len.saturating_sub(head.len() + tail.len());
    Bytes::from(format!("{head}{}{tail}", "x".repeat(pad)))
}

fn say(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

async fn run(cli: &Cli) -> anyhow::Result<Results> {
    let plan = Plan::new(cli.quick);
    let loadavg_start = procfs::loadavg();
    let lambkin_exe = binary(cli.lambkin.as_deref(), "lambkin")?;
    let bootstrap = binary(cli.bootstrap.as_deref(), "bootstrap")?;
    let bench_exe = std::env::current_exe().context("cannot find this binary")?;
    let payload = payload(plan.payload_len);
    let zip = lambkin::echo_zip(&bootstrap)?;

    // Targets: the floor, Lambkin, the emulator (each stopped when dropped, on any path out).
    say("starting the floor echo server");
    let mut floor = floor::Floor::start(&bench_exe)?;
    say("starting lambkin");
    let mut host = lambkin::Host::start(&lambkin_exe)?;
    host.create_echo(&zip).await?;
    // Let the host settle after the create before reading its idle memory.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let host_rss_idle_kib = procfs::rss_kib(host.pid())?;
    let floor_rss_idle_kib = procfs::rss_kib(floor.process.pid())?;
    // Signing's cost: two more hosts started side by side and given the same function and
    // nothing else, so that only signing tells them apart: one as it comes (signed), one with
    // the Lambda API's signatures off, called by the same client unsigned and signed (which it
    // does not check), so the cost splits into the host's verifying and the client's signing.
    say("starting a signed and an unsigned ([api] auth = \"none\") lambkin for signing's cost");
    let mut signed = lambkin::Host::start(&lambkin_exe)?;
    let mut unsigned = lambkin::Host::start_unsigned(&lambkin_exe)?;
    signed.create_echo(&zip).await?;
    unsigned.create_echo(&zip).await?;

    say(format!("lambkin: {} cold starts", plan.cold_reps));
    let cold = host.cold_starts(&payload, plan.cold_reps).await?;

    // Absolute, since the emulator runs from the fixture's directory.
    let rie_exe = match cli.rie.as_deref().map(Path::canonicalize) {
        Some(Ok(path)) => Some(path),
        Some(Err(e)) => {
            say(format!("no emulator at the given path: {e}"));
            None
        }
        None => None,
    };
    let rie_exe = rie_exe.as_deref();
    let rie_cold = match rie_exe {
        Some(exe) => {
            say(format!("aws-lambda-rie: {} cold starts", plan.cold_reps));
            rie_cold_starts(exe, &bootstrap, &payload, plan.cold_reps)
                .await
                .map_err(|e| {
                    say(format!("aws-lambda-rie cold starts failed: {e:#}"));
                    format!("failed: {e:#}")
                })
        }
        None => Err(cli.rie_unavailable.clone()),
    };
    let mut rie = match rie_exe {
        Some(exe) => rie::Rie::start(exe, &bootstrap).map_err(|e| {
            say(format!("aws-lambda-rie did not start: {e:#}"));
            format!("failed to start: {e:#}")
        }),
        None => Err(cli.rie_unavailable.clone()),
    };

    let floor_target = Target {
        name: "floor",
        addr: floor.addr,
        path: "/echo".into(),
        key: None,
    };
    let lambkin_target = host.target("lambkin", lambkin::INVOKE_PATH);
    let signed_target = signed.target("lambkin (signed, for signing's cost)", lambkin::INVOKE_PATH);
    let unsigned_target = unsigned.target("lambkin (signing off)", lambkin::INVOKE_PATH);
    let unchecked_target = Target {
        name: "lambkin (signing off, called signed)",
        key: signed_target.key.clone(),
        ..unsigned_target.clone()
    };
    let rie_target = |r: &rie::Rie| Target {
        name: "aws-lambda-rie",
        addr: r.addr,
        path: rie::INVOKE_PATH.into(),
        key: None,
    };
    let client_signing = match &signed_target.key {
        Some(key) => client::signing_time(key, &signed_target.path, &payload)?,
        None => Duration::ZERO,
    };

    say(format!(
        "sequential latency: {} invokes per target",
        plan.latency_count
    ));
    let seq = |t: Target| {
        let payload = payload.clone();
        async move { client::sequential(&t, &payload, plan.latency_warmup, plan.latency_count).await }
    };
    let floor_latency = seq(floor_target.clone()).await?;
    let lambkin_latency = seq(lambkin_target.clone()).await?;
    // The REPORT lines are written after the answers.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let function_durations_ms = host.warm_durations_ms(plan.latency_count)?;
    say("lambkin: the same function on tokio's multi-thread runtime");
    host.create_echo_mt(&zip).await?;
    say("signing's cost: sequential latency, signed and signing off, taking turns");
    // The three take turns, so that what else the machine does at the time weighs on all
    // alike.
    let signing_latency = client::interleaved(
        [&signed_target, &unsigned_target, &unchecked_target],
        &payload,
        plan.latency_warmup,
        plan.latency_count,
        LATENCY_TURNS,
    )
    .await?;
    let lambkin_mt_latency = seq(host.target("lambkin (echo-mt)", lambkin::INVOKE_PATH_MT)).await?;
    host.delete(lambkin::FUNCTION_MT).await?;
    say("lambkin with co-location off: sequential latency and concurrency 1");
    let colocation_off = {
        let mut off =
            lambkin::Host::start_with_config(&lambkin_exe, Some(lambkin::COLOCATION_OFF))?;
        off.create_echo(&zip).await?;
        let target = off.target("lambkin (co-location off)", lambkin::INVOKE_PATH);
        let latency = seq(target.clone()).await?;
        let c1 = client::throughput(
            &target,
            &payload,
            1,
            plan.warmup,
            plan.duration,
            Some(off.pid()),
        )
        .await?;
        off.process.check_running()?;
        off.process.stop();
        report::Colocation { latency, c1 }
    };
    let rie_latency = match &rie {
        Ok(r) => seq(rie_target(r))
            .await
            .map_err(|e| format!("failed: {e:#}")),
        Err(why) => Err(why.clone()),
    };
    let rie_rss = match &rie {
        Ok(r) => Ok(RieRss {
            idle_kib: procfs::rss_kib(r.pid())?,
            loaded_kib: None,
            runtime_kib: procfs::descendants_rss_kib(r.pid()).1,
        }),
        Err(why) => Err(why.clone()),
    };
    let mut rie_rss = rie_rss;

    let mut levels = Vec::new();
    let mut host_rss_loaded_kib = 0;
    let mut floor_rss_loaded_kib = 0;
    let mut instances = (0, 0);
    let mut signing_levels = Vec::new();
    for &concurrency in &plan.levels {
        say(format!(
            "throughput at concurrency {concurrency}: {:?} warm-up + {:?} per target",
            plan.warmup, plan.duration
        ));
        let load = |t: Target, pid: u32| {
            let payload = payload.clone();
            async move {
                client::throughput(
                    &t,
                    &payload,
                    concurrency,
                    plan.warmup,
                    plan.duration,
                    Some(pid),
                )
                .await
            }
        };
        let floor_t = load(floor_target.clone(), floor.process.pid()).await?;
        floor.process.check_running()?;
        let lambkin_t = load(lambkin_target.clone(), host.pid()).await?;
        let last = concurrency == plan.levels[plan.levels.len() - 1];
        host.process.check_running()?;
        if last {
            host_rss_loaded_kib = procfs::rss_kib(host.pid())?;
            instances = procfs::descendants_rss_kib(host.pid());
            floor_rss_loaded_kib = procfs::rss_kib(floor.process.pid())?;
        }
        if last || concurrency == plan.levels[0] {
            // The three take turns here too.
            signing_levels.push(
                client::throughput_interleaved(
                    [
                        (&signed_target, signed.pid()),
                        (&unsigned_target, unsigned.pid()),
                        (&unchecked_target, unsigned.pid()),
                    ],
                    &payload,
                    concurrency,
                    plan.warmup,
                    plan.duration,
                    THROUGHPUT_TURNS,
                )
                .await?,
            );
            signed.process.check_running()?;
            unsigned.process.check_running()?;
        }
        let rie_t = match rie_exe {
            Some(exe) => {
                rie_throughput(exe, &bootstrap, &mut rie, &rie_target, &load, &mut rie_rss).await
            }
            None => Err(cli.rie_unavailable.clone()),
        };
        levels.push(Level {
            concurrency,
            floor: floor_t,
            lambkin: lambkin_t,
            rie: rie_t,
        });
    }

    say("stopping the targets");
    if let Ok(r) = rie.as_mut() {
        r.process.stop();
    }
    host.process.stop();
    signed.process.stop();
    unsigned.process.stop();
    floor.process.stop();

    let signing = report::Signing {
        latency: signing_latency,
        levels: signing_levels,
        client_signing,
    };
    Ok(Results {
        plan,
        floor_latency,
        lambkin_latency,
        function_durations_ms,
        lambkin_mt_latency,
        colocation_off,
        signing,
        rie_latency,
        levels,
        cold,
        rie_cold,
        host_rss_idle_kib,
        host_rss_loaded_kib,
        instances,
        floor_rss_idle_kib,
        floor_rss_loaded_kib,
        rie_rss,
        rie_version: cli.rie_version.clone(),
        loadavg_start,
        loadavg_end: procfs::loadavg(),
    })
}

/// Runs one throughput level against the emulator, restarting it first if an earlier level
/// brought it down, and notes whether it survived.
async fn rie_throughput<F, Fut>(
    exe: &Path,
    bootstrap: &Path,
    rie: &mut Result<rie::Rie, String>,
    target: &dyn Fn(&rie::Rie) -> Target,
    load: &F,
    rss: &mut Result<RieRss, String>,
) -> Result<RieThroughput, String>
where
    F: Fn(Target, u32) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Throughput>>,
{
    let running = rie
        .as_mut()
        .is_ok_and(|r| r.process.check_running().is_ok());
    let restarted = if running {
        false
    } else {
        say("aws-lambda-rie is not running: starting a fresh one for this level");
        if let Ok(r) = rie.as_mut() {
            r.process.stop();
        }
        *rie = rie::Rie::start(exe, bootstrap).map_err(|e| format!("failed to start: {e:#}"));
        true
    };
    let r = rie.as_mut().map_err(|why| why.clone())?;
    let pid = r.pid();
    let throughput = load(target(r), pid)
        .await
        .map_err(|e| format!("failed: {e:#}"))?;
    let crashed = r.process.check_running().is_err();
    if crashed {
        say(format!(
            "aws-lambda-rie exited during the run at concurrency {}",
            throughput.concurrency
        ));
    } else if let Ok(rss) = rss.as_mut() {
        rss.loaded_kib = procfs::rss_kib(r.pid())
            .ok()
            .map(|kib| (throughput.concurrency, kib));
    }
    Ok(RieThroughput {
        throughput,
        crashed,
        restarted,
    })
}

/// The emulator starts its runtime on the first invoke: time that invoke on fresh emulators.
async fn rie_cold_starts(
    exe: &Path,
    bootstrap: &Path,
    payload: &Bytes,
    reps: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let mut r = rie::Rie::start(exe, bootstrap)?;
        let mut conn = client::Conn::connect(r.addr, None).await?;
        let started = Instant::now();
        conn.invoke(rie::INVOKE_PATH, payload).await?;
        samples.push(started.elapsed());
        drop(conn);
        r.process.stop();
    }
    Ok(samples)
}
