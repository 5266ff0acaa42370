//! The streaming benchmark: a `lambda_runtime` streaming function (the fixture's
//! `bootstrap-stream`) answered through `InvokeWithResponseStream` and through a
//! `RESPONSE_STREAM` function URL, against the floor writing the same chunked answer itself,
//! in one run, with one client.
//!
//! - Chunk latency: the writer (the function, or the floor) puts the time (ns since the epoch)
//!   in each chunk, 2 ms apart; the client reads the clock when the chunk's line is complete.
//!   Same machine, same clock. p50/p99.
//! - Throughput: a 16 MiB answer in 64 KiB chunks, from the request to the last byte, MiB/s
//!   (the median of the repetitions).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::client::ApiKey;
use crate::floor::{Floor, CHUNK_BYTES};
use crate::lambkin::Host;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A shorter run (fewer chunks and repetitions).
    #[arg(long)]
    pub quick: bool,
}

const FUNCTION: &str = "streamer";
const THROUGHPUT_BYTES: u64 = 16 * 1024 * 1024;
const GAP_MS: u64 = 2;
/// The issue's targets: chunk latency within this of the floor's; throughput at least half.
const LATENCY_BUDGET: Duration = Duration::from_micros(100);

#[derive(Debug)]
pub struct Row {
    name: &'static str,
    p50: Duration,
    p99: Duration,
    mib_per_s: f64,
}

#[derive(Debug)]
pub struct Report {
    rows: Vec<Row>,
    stamps: usize,
    reps: usize,
    loadavg: String,
}

pub fn main(lambkin: Option<PathBuf>, args: &Args) -> ExitCode {
    crate::run_to_table(run(lambkin, args), render)
}

fn say(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

/// How a target's answer is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// The bytes themselves.
    Raw,
    /// `InvokeWithResponseStream`'s events; the payload begins with the fixture's prelude.
    Events,
}

#[derive(Debug, Clone)]
struct StreamTarget {
    name: &'static str,
    addr: SocketAddr,
    path: String,
    key: Option<Arc<ApiKey>>,
    framing: Framing,
}

async fn run(lambkin: Option<PathBuf>, args: &Args) -> anyhow::Result<Report> {
    let lambkin = crate::binary(lambkin.as_deref(), "lambkin")?;
    let bootstrap = crate::binary(None, "bootstrap-stream")?;
    let bench = std::env::current_exe().context("cannot find this binary")?;
    let (stamps, reps) = if args.quick { (200, 3) } else { (1000, 10) };
    say("starting the floor and a host");
    let floor = Floor::start(&bench)?;
    let host = Host::start(&lambkin)?;
    let key = ApiKey::of_host(host.root())?;
    let zip = crate::lambkin::echo_zip(&bootstrap)?;
    let body = serde_json::json!({
        "FunctionName": FUNCTION,
        "Runtime": "provided.al2023",
        "Role": "arn:aws:iam::000000000000:role/x",
        "Handler": "bootstrap",
        "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
        "Timeout": 60,
        "Greengrass": {"Pinned": false, "MaxIdleTimeInSeconds": 600},
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
    let reply = conn
        .request(
            Method::POST,
            &format!("/2021-10-31/functions/{FUNCTION}/url"),
            Bytes::from(r#"{"AuthType":"NONE","InvokeMode":"RESPONSE_STREAM"}"#),
        )
        .await?;
    if reply.status != StatusCode::CREATED {
        bail!("CreateFunctionUrlConfig: HTTP {}", reply.status);
    }
    let url: serde_json::Value = serde_json::from_slice(&reply.body)?;
    let url_path = url["FunctionUrl"]
        .as_str()
        .and_then(|u| u.split_once("/lambda-url/"))
        .map(|(_, rest)| format!("/lambda-url/{rest}"))
        .context("the URL configuration has no FunctionUrl")?;
    let targets = [
        StreamTarget {
            name: "floor: chunked HTTP from the server itself",
            addr: floor.addr,
            path: "/stream".into(),
            key: None,
            framing: Framing::Raw,
        },
        StreamTarget {
            name: "InvokeWithResponseStream (signed)",
            addr: host.addr,
            path: format!("/2021-11-15/functions/{FUNCTION}/response-streaming-invocations"),
            key: Some(key),
            framing: Framing::Events,
        },
        StreamTarget {
            name: "function URL, RESPONSE_STREAM (AuthType NONE)",
            addr: host.addr,
            // The URL's event is the request: its body holds the instructions.
            path: url_path,
            key: None,
            framing: Framing::Raw,
        },
    ];
    let latency_event = serde_json::json!({"action": "stream", "stamps": stamps, "gap_ms": GAP_MS});
    let bulk_event = serde_json::json!({"action": "stream", "bytes": THROUGHPUT_BYTES, "chunk_bytes": CHUNK_BYTES});
    let mut rows = Vec::new();
    for target in &targets {
        say(format!("{}: warm-up", target.name));
        fetch(target, &latency_event, false).await?;
        say(format!(
            "{}: {stamps} chunks {GAP_MS} ms apart",
            target.name
        ));
        let mut latencies = fetch(target, &latency_event, true).await?.latencies;
        latencies.sort_unstable();
        if latencies.len() != stamps {
            bail!(
                "{}: {} of {stamps} chunks arrived",
                target.name,
                latencies.len()
            );
        }
        say(format!("{}: {reps} answers of 16 MiB", target.name));
        let mut rates = Vec::with_capacity(reps);
        for _ in 0..reps {
            let got = fetch(target, &bulk_event, false).await?;
            if got.bytes < THROUGHPUT_BYTES {
                bail!(
                    "{}: {} of {THROUGHPUT_BYTES} bytes arrived",
                    target.name,
                    got.bytes
                );
            }
            rates.push(THROUGHPUT_BYTES as f64 / (1024.0 * 1024.0) / got.elapsed.as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        rows.push(Row {
            name: target.name,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            mib_per_s: rates[rates.len() / 2],
        });
    }
    drop(host);
    drop(floor);
    Ok(Report {
        rows,
        stamps,
        reps,
        loadavg: crate::procfs::loadavg(),
    })
}

#[derive(Debug, Default)]
struct Fetched {
    latencies: Vec<Duration>,
    /// Payload bytes (after the prelude, for the events).
    bytes: u64,
    elapsed: Duration,
}

/// One request; reads the answer as it comes, timing each complete line when `stamped`.
async fn fetch(
    target: &StreamTarget,
    event: &serde_json::Value,
    stamped: bool,
) -> anyhow::Result<Fetched> {
    let body = Bytes::from(event.to_string());
    let stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(&target.path)
        .header("host", target.addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))?;
    if let Some(key) = &target.key {
        key.sign(&mut request, &body)?;
    }
    let started = Instant::now();
    let response = sender.send_request(request).await?;
    if response.status() != StatusCode::OK {
        bail!("{}: HTTP {}", target.name, response.status());
    }
    let mut body = response.into_body();
    let mut decoder = lambkin_proto::eventstream::Decoder::new();
    let mut payload: Vec<u8> = Vec::new();
    let mut past_prelude = target.framing == Framing::Raw;
    let mut out = Fetched::default();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let arrived = SystemTime::now();
        let mut fresh = Vec::new();
        match target.framing {
            Framing::Raw => fresh.extend_from_slice(&data),
            Framing::Events => {
                decoder.push(&data);
                while let Some(frame) = decoder.next_frame()? {
                    let kind = frame
                        .header(":event-type")
                        .and_then(|v| v.as_str())
                        .unwrap_or("");
                    match kind {
                        "PayloadChunk" => fresh.extend_from_slice(frame.payload()),
                        "InvokeComplete" if frame.payload() != b"{}" => {
                            bail!(
                                "{}: {}",
                                target.name,
                                String::from_utf8_lossy(frame.payload())
                            )
                        }
                        _ => {}
                    }
                }
            }
        }
        payload.extend_from_slice(&fresh);
        if !past_prelude {
            let Some(at) = payload.windows(8).position(|w| w == [0u8; 8]) else {
                continue;
            };
            payload.drain(..at + 8);
            past_prelude = true;
        }
        if stamped {
            while let Some(end) = payload.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = payload.drain(..=end).collect();
                let stamp: u128 = std::str::from_utf8(&line[..end])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let now = arrived
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                out.latencies
                    .push(Duration::from_nanos(now.saturating_sub(stamp) as u64));
            }
        } else {
            out.bytes += payload.len() as u64;
            payload.clear();
        }
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn render(r: &Report) -> String {
    let mut out =
        String::from("| path | chunk latency p50 | p99 | 16 MiB streamed |\n|---|---|---|---|\n");
    for row in &r.rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} MiB/s |\n",
            row.name,
            micros(row.p50),
            micros(row.p99),
            row.mib_per_s
        ));
    }
    if let Some(floor) = r.rows.first() {
        out.push('\n');
        for row in &r.rows[1..] {
            let added = row.p50.as_secs_f64() - floor.p50.as_secs_f64();
            let ratio = row.mib_per_s / floor.mib_per_s;
            out.push_str(&format!(
                "- {}: {:+.0} µs over the floor at p50 ({} the {} budget); {:.0}% of its throughput ({} half).\n",
                row.name,
                added * 1e6,
                if added <= LATENCY_BUDGET.as_secs_f64() { "within" } else { "over" },
                micros(LATENCY_BUDGET),
                ratio * 100.0,
                if ratio >= 0.5 { "at least" } else { "under" },
            ));
        }
    }
    out.push_str(&format!(
        "\n{} chunks {GAP_MS} ms apart per path for the latency; {} answers of 16 MiB in 64 KiB chunks for the throughput (median); load average {}.\n",
        r.stamps, r.reps, r.loadavg
    ));
    out
}
