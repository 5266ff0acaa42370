//! The one load client every target gets: HTTP/1.1 over a plain `TcpStream` with TCP_NODELAY,
//! one keep-alive connection per worker, reconnecting after a failed request. Requests to a
//! Lambkin host that wants signatures are signed here, and only here, as an AWS SDK signs them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use lambkin_proto::lambda::sigv4;

use crate::procfs;

/// A request that takes longer than this counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The region requests are signed for: the host's default. The host verifies the scope the
/// client chose, as AWS does, so any region name would do.
pub const REGION: &str = "us-east-1";

/// The access key a host's Lambda API wants requests signed with; or, for its OpenWhisk API,
/// the `UUID:KEY` sent as HTTP Basic credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub access_key_id: String,
    pub secret: String,
    pub region: String,
    /// `Authorization: Basic …` instead of a signature.
    pub basic: Option<String>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    /// The host's own key: profile `lambkin` of `ROOT/state/credentials`, which the host
    /// writes at its first start.
    pub fn of_host(root: &Path) -> anyhow::Result<Arc<Self>> {
        let path = root.join("state").join("credentials");
        let key = lambkin_host::keys::load(&path)
            .with_context(|| format!("cannot read the host's key from {}", path.display()))?;
        Ok(Arc::new(Self {
            access_key_id: key.access_key_id,
            secret: key.secret,
            region: REGION.to_owned(),
            basic: None,
        }))
    }

    /// The host's OpenWhisk key (`ROOT/state/openwhisk.auth`), sent as Basic credentials.
    pub fn openwhisk_of_host(root: &Path) -> anyhow::Result<Arc<Self>> {
        use base64::Engine as _;
        let path = root.join("state").join("openwhisk.auth");
        let auth = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read the host's OpenWhisk key from {}",
                path.display()
            )
        })?;
        Ok(Arc::new(Self {
            access_key_id: String::new(),
            secret: String::new(),
            region: REGION.to_owned(),
            basic: Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(auth.trim())
            )),
        }))
    }

    /// Adds `X-Amz-Date` and `Authorization` to `request` (whose body is `body`): a fresh
    /// Signature Version 4 at the current time over the payload's hash, as an SDK signs
    /// each call.
    pub fn sign<B>(&self, request: &mut Request<B>, body: &[u8]) -> anyhow::Result<()> {
        if let Some(basic) = &self.basic {
            request
                .headers_mut()
                .insert(hyper::header::AUTHORIZATION, basic.parse()?);
            return Ok(());
        }
        sigv4::sign_request(
            request,
            body,
            &sigv4::Key {
                access_key_id: &self.access_key_id,
                secret: &self.secret,
            },
            &self.region,
            SystemTime::now(),
        )
        .map_err(|e| anyhow!("cannot sign the request: {e}"))
    }
}

/// The client's own cost of signing one invoke request to `path` with `payload` as the load
/// client sends it: the median of 2,000 signatures, each timed alone.
pub fn signing_time(key: &ApiKey, path: &str, payload: &Bytes) -> anyhow::Result<Duration> {
    const SAMPLES: usize = 2000;
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", "127.0.0.1:3001")
            .header("content-type", "application/json")
            .body(Full::new(payload.clone()))?;
        let started = Instant::now();
        key.sign(&mut request, payload)?;
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    Ok(percentile(&samples, 0.50))
}

/// Where and how to invoke one target.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// The invoke path, e.g. `/2015-03-31/functions/echo/invocations`.
    pub path: String,
    /// What requests to it are signed with; `None`: unsigned.
    pub key: Option<Arc<ApiKey>>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// One keep-alive HTTP/1.1 connection; with a key, every request on it is signed.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    key: Option<Arc<ApiKey>>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, key: Option<Arc<ApiKey>>) -> anyhow::Result<Self> {
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
            key,
        })
    }

    /// A connection to `target`, signing as it wants.
    pub async fn to(target: &Target) -> anyhow::Result<Self> {
        Self::connect(target.addr, target.key.clone()).await
    }

    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))?;
        if let Some(key) = &self.key {
            key.sign(&mut request, &body)?;
        }
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
    let [latency] = interleaved([target], payload, warmup, count, 1).await?;
    Ok(latency)
}

/// [`sequential`] on several targets at once, taking turns: each gets its `warmup` invokes,
/// then `rounds` turns of `count / rounds` timed invokes each, one target after the other, so
/// that what else the machine does at the time weighs on all of them alike.
pub async fn interleaved<const N: usize>(
    targets: [&Target; N],
    payload: &Bytes,
    warmup: usize,
    count: usize,
    rounds: usize,
) -> anyhow::Result<[Latency; N]> {
    struct Run {
        conn: Conn,
        errors: u64,
        samples: Vec<Duration>,
        last_error: Option<anyhow::Error>,
    }
    impl Run {
        /// `n` invokes; `timed`: their times are kept. `false` after too many errors.
        async fn invokes(
            &mut self,
            target: &Target,
            payload: &Bytes,
            n: usize,
            timed: bool,
        ) -> anyhow::Result<bool> {
            for _ in 0..n {
                let started = Instant::now();
                match self.conn.invoke(&target.path, payload).await {
                    Ok(_) => {
                        if timed {
                            self.samples.push(started.elapsed());
                        }
                    }
                    Err(e) => {
                        self.errors += 1;
                        self.last_error = Some(e);
                        if self.errors > 100 {
                            return Ok(false);
                        }
                        self.conn = Conn::to(target).await?;
                    }
                }
            }
            Ok(true)
        }
    }
    let rounds = rounds.clamp(1, count.max(1));
    let mut runs = Vec::with_capacity(N);
    for target in targets {
        let mut run = Run {
            conn: Conn::to(target).await?,
            errors: 0,
            samples: Vec::with_capacity(count),
            last_error: None,
        };
        run.invokes(target, payload, warmup, false).await?;
        runs.push(run);
    }
    for round in 0..rounds {
        let n = count / rounds + usize::from(round < count % rounds);
        for (target, run) in targets.iter().zip(runs.iter_mut()) {
            if run.errors <= 100 {
                run.invokes(target, payload, n, true).await?;
            }
        }
    }
    let mut out = Vec::with_capacity(N);
    for (target, mut run) in targets.iter().zip(runs) {
        if run.samples.len() < count / 2 {
            let why = run
                .last_error
                .map_or_else(String::new, |e| format!("{e:#}"));
            bail!(
                "{}: only {} of {count} invokes succeeded ({why})",
                target.name,
                run.samples.len()
            );
        }
        run.samples.sort_unstable();
        out.push(Latency {
            p50: percentile(&run.samples, 0.50),
            p99: percentile(&run.samples, 0.99),
            errors: run.errors,
        });
    }
    out.try_into()
        .map_err(|_| anyhow!("one latency per target"))
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

/// [`throughput`] on several targets (each with the pid whose CPU is counted), taking turns:
/// `rounds` turns of `duration / rounds` each, one target after the other, so that what else
/// the machine does at the time weighs on all of them alike. Each target's first turn has the
/// whole `warmup`; the later ones [`TURN_WARMUP`] (new connections, instances already up).
pub async fn throughput_interleaved<const N: usize>(
    targets: [(&Target, u32); N],
    payload: &Bytes,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    rounds: u32,
) -> anyhow::Result<[Throughput; N]> {
    let rounds = rounds.max(1);
    let mut totals: Vec<Option<Throughput>> = (0..N).map(|_| None).collect();
    for round in 0..rounds {
        let warm = if round == 0 { warmup } else { TURN_WARMUP };
        for ((target, pid), total) in targets.iter().zip(totals.iter_mut()) {
            let turn = throughput(
                target,
                payload,
                concurrency,
                warm,
                duration / rounds,
                Some(*pid),
            )
            .await?;
            *total = Some(match total.take() {
                None => turn,
                Some(sum) => sum.add(turn),
            });
        }
    }
    let totals: Vec<Throughput> = totals.into_iter().flatten().collect();
    totals
        .try_into()
        .map_err(|_| anyhow!("one throughput per target"))
}

/// The warm-up of each later turn of [`throughput_interleaved`].
pub const TURN_WARMUP: Duration = Duration::from_millis(200);

impl Throughput {
    /// Two runs at the same concurrency as one: counts, windows and CPU added up.
    fn add(self, other: Self) -> Self {
        Self {
            concurrency: self.concurrency,
            ok: self.ok + other.ok,
            ok_total: self.ok_total + other.ok_total,
            errors: self.errors + other.errors,
            window: self.window + other.window,
            first_error: self.first_error.or(other.first_error),
            cpu: self
                .cpu
                .zip(other.cpu)
                .map(|((a, b), (c, d))| (a + c, b + d)),
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
                    None => match Conn::to(&target).await {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Throughput;

    fn run(ok: u64, ms: u64, cpu: Option<(u64, u64)>) -> Throughput {
        Throughput {
            concurrency: 64,
            ok,
            ok_total: ok + 10,
            errors: 1,
            window: Duration::from_millis(ms),
            first_error: None,
            cpu,
        }
    }

    #[test]
    fn turns_add_up_to_one_run() {
        let sum = run(300, 750, Some((10, 20))).add(run(500, 750, Some((1, 2))));
        assert_eq!((sum.ok, sum.ok_total, sum.errors), (800, 820, 2));
        assert_eq!(sum.window, Duration::from_millis(1500));
        assert!((sum.per_second() - 800.0 / 1.5).abs() < 1e-9);
        assert_eq!(sum.cpu, Some((11, 22)));
        assert_eq!(run(1, 1, None).add(run(1, 1, Some((1, 1)))).cpu, None);
    }
}
