//! The one load client every target gets: HTTP/1.1 over a plain `TcpStream` with TCP_NODELAY,
//! one keep-alive connection per worker, reconnecting after a failed request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::procfs;

/// A request that takes longer than this counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to invoke one target.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// The invoke path, e.g. `/2015-03-31/functions/echo/invocations`.
    pub path: String,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// One keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            host: addr.to_string(),
        })
    }

    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(reply) => Ok(reply?),
            Err(_) => bail!("no response within {REQUEST_TIMEOUT:?}"),
        }
    }

    /// Invokes and checks the answer: 200 and the same JSON that was sent.
    pub async fn invoke(&mut self, path: &str, payload: &Bytes) -> anyhow::Result<Reply> {
        let reply = self.request(Method::POST, path, payload.clone()).await?;
        check_echo(&reply, payload)?;
        Ok(reply)
    }
}

fn check_echo(reply: &Reply, sent: &Bytes) -> anyhow::Result<()> {
    if reply.status != StatusCode::OK {
        bail!(
            "HTTP {}: {}",
            reply.status.as_u16(),
            String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)])
        );
    }
    if reply.body == *sent {
        return Ok(());
    }
    // The same JSON in other bytes (key order, spacing) is still an echo.
    let same = serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .zip(serde_json::from_slice::<serde_json::Value>(sent).ok())
        .is_some_and(|(a, b)| a == b);
    if same {
        Ok(())
    } else {
        bail!(
            "not an echo: {}",
            String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)])
        )
    }
}

/// Sequential warm latency.
#[derive(Debug, Clone)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    /// Failed invokes (each followed by a new connection), warm-up included.
    pub errors: u64,
}

/// `warmup` invokes, then `count` timed ones, one at a time over one connection.
pub async fn sequential(
    target: &Target,
    payload: &Bytes,
    warmup: usize,
    count: usize,
) -> anyhow::Result<Latency> {
    let mut conn = Conn::connect(target.addr).await?;
    let mut errors = 0u64;
    let mut samples = Vec::with_capacity(count);
    let mut last_error = None;
    for i in 0..warmup + count {
        let started = Instant::now();
        match conn.invoke(&target.path, payload).await {
            Ok(_) => {
                if i >= warmup {
                    samples.push(started.elapsed());
                }
            }
            Err(e) => {
                errors += 1;
                last_error = Some(e);
                if errors > 100 {
                    break;
                }
                conn = Conn::connect(target.addr).await?;
            }
        }
    }
    if samples.len() < count / 2 {
        let why = last_error.map_or_else(String::new, |e| format!("{e:#}"));
        bail!(
            "{}: only {} of {count} invokes succeeded ({why})",
            target.name,
            samples.len()
        );
    }
    samples.sort_unstable();
    Ok(Latency {
        p50: percentile(&samples, 0.50),
        p99: percentile(&samples, 0.99),
        errors,
    })
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Throughput at one concurrency level.
#[derive(Debug, Clone)]
pub struct Throughput {
    pub concurrency: usize,
    /// Successful invokes completed inside the measured window.
    pub ok: u64,
    /// Successful invokes, warm-up included.
    pub ok_total: u64,
    /// Failed invokes, warm-up included.
    pub errors: u64,
    pub window: Duration,
    pub first_error: Option<String>,
    /// CPU ticks the target used during the whole run (warm-up included): its own process and
    /// its descendants.
    pub cpu: Option<(u64, u64)>,
}

impl Throughput {
    /// CPU µs per successful invoke: (target process, its descendants).
    pub fn cpu_per_invoke_us(&self) -> Option<(f64, f64)> {
        let (own, children) = self.cpu?;
        if self.ok_total == 0 {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let per = |ticks: u64| {
            ticks as f64 * 1e6 / procfs::TICKS_PER_SECOND as f64 / self.ok_total as f64
        };
        Some((per(own), per(children)))
    }

    pub fn per_second(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            #[allow(clippy::cast_precision_loss)]
            let ok = self.ok as f64;
            ok / secs
        } else {
            0.0
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    ok_total: u64,
    errors: u64,
    first_error: Option<String>,
}

/// `concurrency` workers, each on its own connection, invoke back to back for `warmup` and then
/// for `duration`; the invokes completed during `duration` count.
pub async fn throughput(
    target: &Target,
    payload: &Bytes,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    cpu_of: Option<u32>,
) -> anyhow::Result<Throughput> {
    let before = cpu_of.map(procfs::CpuSnapshot::take);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let target = target.clone();
        let payload = payload.clone();
        let tally = tally.clone();
        workers.spawn(async move {
            let mut ok = 0u64;
            let mut ok_total = 0u64;
            let mut errors = 0u64;
            let mut first_error = None;
            let mut conn = None;
            while Instant::now() < end {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match Conn::connect(target.addr).await {
                        Ok(c) => conn.insert(c),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| format!("{e:#}"));
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                match c.invoke(&target.path, &payload).await {
                    Ok(_) => {
                        ok_total += 1;
                        let now = Instant::now();
                        if now >= measure_from && now <= end {
                            ok += 1;
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                        conn = None;
                    }
                }
            }
            let mut t = tally.lock().await;
            t.ok += ok;
            t.ok_total += ok_total;
            t.errors += errors;
            if t.first_error.is_none() {
                t.first_error = first_error;
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.map_err(|e| anyhow!("a load worker failed: {e}"))?;
    }
    let after = cpu_of.map(procfs::CpuSnapshot::take);
    let t = std::mem::take(&mut *tally.lock().await);
    Ok(Throughput {
        concurrency,
        ok: t.ok,
        ok_total: t.ok_total,
        errors: t.errors,
        window: duration,
        first_error: t.first_error,
        cpu: before.zip(after).map(|(b, a)| a.since(&b)),
    })
}
