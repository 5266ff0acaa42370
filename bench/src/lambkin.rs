//! Lambkin under test: `lambkin run` on a fresh root, the echo function created through the
//! Lambda management API, cold starts forced by configuration updates. Every request to the
//! host is signed with its own key, unless the host was started with signing off.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::client::{ApiKey, Conn, Reply, Target};
use crate::process::Supervised;
use crate::procfs;

pub const FUNCTION: &str = "echo";
pub const INVOKE_PATH: &str = "/2015-03-31/functions/echo/invocations";
/// The same echo function on tokio's multi-thread runtime (`#[tokio::main]`'s default).
pub const FUNCTION_MT: &str = "echo-mt";
pub const INVOKE_PATH_MT: &str = "/2015-03-31/functions/echo-mt/invocations";
/// The host's configuration with sequential invocations left on the CPUs the kernel picks
/// (`lambda::placement` in the host).
pub const COLOCATION_OFF: &str = "[lambda]\ncolocate_sequential = false\n";
/// The host's configuration with the Lambda API's signatures off (development mode).
pub const SIGNING_OFF: &str = "[api]\nauth = \"none\"\n";

/// How long the host has to write `state/api.addr`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `lambkin run`. Fields drop in order: the host stops before its root is removed.
#[derive(Debug)]
pub struct Host {
    pub process: Supervised,
    pub addr: SocketAddr,
    /// The host's own key, which every request is signed with; `None` with signing off.
    key: Option<Arc<ApiKey>>,
    root: tempfile::TempDir,
}

impl Host {
    pub fn start(lambkin: &Path) -> anyhow::Result<Self> {
        Self::start_with_config(lambkin, None)
    }

    /// [`Host::start`] with `config` written to the root's `config.toml` first.
    pub fn start_with_config(lambkin: &Path, config: Option<&str>) -> anyhow::Result<Self> {
        Self::spawn(lambkin, config, true)
    }

    /// A host with the Lambda API's signatures off ([`SIGNING_OFF`]), called unsigned.
    pub fn start_unsigned(lambkin: &Path) -> anyhow::Result<Self> {
        Self::spawn(lambkin, Some(SIGNING_OFF), false)
    }

    fn spawn(lambkin: &Path, config: Option<&str>, signed: bool) -> anyhow::Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("lambkin-bench-")
            .tempdir()
            .context("cannot create the host's root")?;
        if let Some(config) = config {
            std::fs::write(root.path().join("config.toml"), config)
                .context("cannot write the host's config.toml")?;
        }
        let stdout = File::create(root.path().join("host.stdout"))?;
        let stderr = File::create(root.path().join("host.stderr"))?;
        let mut command = Command::new(lambkin);
        command
            .arg("run")
            .arg("--root")
            .arg(root.path())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let mut process = Supervised::spawn("lambkin", command)?;
        let addr_file = root.path().join("state").join("api.addr");
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                if let Ok(addr) = text.trim().parse::<SocketAddr>() {
                    break addr;
                }
            }
            if let Err(e) = process.check_running() {
                return Err(e.context(host_stderr_tail(root.path())));
            }
            if Instant::now() >= deadline {
                bail!(
                    "lambkin did not write {} within {READY_TIMEOUT:?}; {}",
                    addr_file.display(),
                    host_stderr_tail(root.path())
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The key is written before the listener's address.
        let key = if signed {
            Some(ApiKey::of_host(root.path())?)
        } else {
            None
        };
        Ok(Self {
            process,
            addr,
            key,
            root,
        })
    }

    /// A connection to the host's API, signing as the host wants.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        Conn::connect(self.addr, self.key.clone()).await
    }

    /// The host's function at `path` as a load target.
    pub fn target(&self, name: &'static str, path: &str) -> Target {
        Target {
            name,
            addr: self.addr,
            path: path.to_owned(),
            key: self.key.clone(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The host's root directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    fn function_log(&self) -> PathBuf {
        self.root
            .path()
            .join("logs")
            .join(format!("{FUNCTION}.log"))
    }

    /// `POST /2015-03-31/functions`: the echo function, on demand, up to 64 instances.
    pub async fn create_echo(&self, zip: &[u8]) -> anyhow::Result<()> {
        self.create(FUNCTION, zip, serde_json::json!({})).await
    }

    /// `DELETE /2015-03-31/functions/NAME`: the function and its instances go.
    pub async fn delete(&self, name: &str) -> anyhow::Result<()> {
        let mut conn = self.connect().await?;
        let reply = conn
            .request(
                Method::DELETE,
                &format!("/2015-03-31/functions/{name}"),
                Bytes::new(),
            )
            .await?;
        expect_status(&reply, StatusCode::NO_CONTENT, "DeleteFunction")
    }

    /// The same code as `echo-mt`, told to run on tokio's multi-thread runtime.
    pub async fn create_echo_mt(&self, zip: &[u8]) -> anyhow::Result<()> {
        let env = serde_json::json!({ "FIXTURE_TOKIO_MULTI_THREAD": "1" });
        self.create(FUNCTION_MT, zip, env).await
    }

    async fn create(
        &self,
        name: &str,
        zip: &[u8],
        variables: serde_json::Value,
    ) -> anyhow::Result<()> {
        let body = serde_json::json!({
            "FunctionName": name,
            "Environment": {"Variables": variables},
            "Runtime": "provided.al2023",
            "Role": "arn:aws:iam::000000000000:role/x",
            "Handler": "bootstrap",
            "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
            "Timeout": 30,
            "Greengrass": {"Pinned": false, "MaxInstancesCount": 64, "MaxIdleTimeInSeconds": 600},
        });
        let mut conn = self.connect().await?;
        let reply = conn
            .request(
                Method::POST,
                "/2015-03-31/functions",
                Bytes::from(body.to_string()),
            )
            .await?;
        expect_status(&reply, StatusCode::CREATED, "CreateFunction")
    }

    /// `PUT .../configuration`: a new configuration replaces the function's instances.
    pub async fn reconfigure(&self, description: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({ "Description": description });
        let mut conn = self.connect().await?;
        let reply = conn
            .request(
                Method::PUT,
                &format!("/2015-03-31/functions/{FUNCTION}/configuration"),
                Bytes::from(body.to_string()),
            )
            .await?;
        expect_status(&reply, StatusCode::OK, "UpdateFunctionConfiguration")
    }

    /// Waits until the host has no child process left (instances stopped).
    pub async fn wait_no_instances(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !procfs::descendants(self.pid()).is_empty() {
            if Instant::now() >= deadline {
                bail!("the host's instances did not stop within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// The `Init Duration` of the REPORT line of this request, in ms; `None` when the REPORT
    /// has none (a warm invoke). Waits for the line to be written.
    pub async fn init_duration_ms(&self, request_id: &str) -> anyhow::Result<Option<f64>> {
        let report = report_line(&self.function_log(), request_id).await?;
        Ok(parse_init_duration(&report))
    }

    /// The `Duration` of the last `count` REPORT lines without an `Init Duration` (warm
    /// invokes): the time from handing the event to the runtime to its answer, in ms.
    pub fn warm_durations_ms(&self, count: usize) -> anyhow::Result<Vec<f64>> {
        let log = std::fs::read_to_string(self.function_log())?;
        let mut durations: Vec<f64> = log
            .lines()
            .filter_map(|l| l.find("REPORT RequestId:").map(|at| &l[at..]))
            .filter(|report| parse_init_duration(report).is_none())
            .filter_map(parse_duration)
            .collect();
        let keep = durations.len().saturating_sub(count);
        Ok(durations.split_off(keep))
    }

    /// `reps` cold starts: the first invoke after creation, then the first invoke after each
    /// configuration update (which stops the warm instance).
    pub async fn cold_starts(&self, payload: &Bytes, reps: usize) -> anyhow::Result<Vec<Cold>> {
        let mut samples = Vec::with_capacity(reps);
        for i in 0..reps {
            if i > 0 {
                self.reconfigure(&format!("cold start {i}")).await?;
                self.wait_no_instances(Duration::from_secs(10)).await?;
            }
            let mut conn = self.connect().await?;
            let started = Instant::now();
            let reply = conn
                .invoke(INVOKE_PATH, payload)
                .await
                .with_context(|| format!("cold invoke {}", i + 1))?;
            let total = started.elapsed();
            let request_id = request_id(&reply)?;
            let init_ms = self.init_duration_ms(&request_id).await?.ok_or_else(|| {
                anyhow!(
                    "cold invoke {} ({request_id}) reported no Init Duration: it was warm",
                    i + 1
                )
            })?;
            samples.push(Cold { total, init_ms });
        }
        Ok(samples)
    }
}

/// One cold invoke: its time at the client and the runtime's init as the host reported it.
#[derive(Debug, Clone, Copy)]
pub struct Cold {
    pub total: Duration,
    pub init_ms: f64,
}

fn request_id(reply: &Reply) -> anyhow::Result<String> {
    reply
        .headers
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the invoke response has no x-amzn-RequestId"))
}

/// The REPORT line of `request_id` in the function log `log`, from `REPORT` on; waits up to
/// 5 s for it to be written (the host writes it after the answer).
pub async fn report_line(log: &Path, request_id: &str) -> anyhow::Result<String> {
    let prefix = format!("REPORT RequestId: {request_id}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        // Lines may carry a time and level before the REPORT itself.
        if let Some(line) = text
            .lines()
            .find_map(|l| l.find(&prefix).map(|at| &l[at..]))
        {
            return Ok(line.to_owned());
        }
        if Instant::now() >= deadline {
            bail!("no REPORT line for {request_id} in {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn parse_duration(report: &str) -> Option<f64> {
    report
        .split('\t')
        .find_map(|field| field.trim().strip_prefix("Duration:"))
        .and_then(|v| v.trim().trim_end_matches("ms").trim().parse().ok())
}

/// The `Init Duration` field of a REPORT line, in ms.
pub fn parse_init_duration(report: &str) -> Option<f64> {
    report
        .split('\t')
        .find_map(|field| field.trim().strip_prefix("Init Duration:"))
        .and_then(|v| v.trim().strip_suffix("ms"))
        .and_then(|v| v.trim().parse().ok())
}

fn expect_status(reply: &Reply, want: StatusCode, operation: &str) -> anyhow::Result<()> {
    if reply.status == want {
        Ok(())
    } else {
        bail!(
            "{operation}: HTTP {} (expected {}): {}",
            reply.status.as_u16(),
            want.as_u16(),
            String::from_utf8_lossy(&reply.body)
        )
    }
}

fn host_stderr_tail(root: &Path) -> String {
    let text = std::fs::read_to_string(root.join("host.stderr")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    format!("lambkin's stderr ends with:\n{tail}")
}

/// The deployment package: `bootstrap` at the top, mode 0755.
pub fn echo_zip(bootstrap: &Path) -> anyhow::Result<Vec<u8>> {
    let binary = std::fs::read(bootstrap)
        .with_context(|| format!("cannot read the fixture {}", bootstrap.display()))?;
    zip_of("bootstrap", &binary, 0o755)
}

/// A deployment package of one file, `name` with `content` and mode `mode`.
pub fn zip_of(name: &str, content: &[u8], mode: u32) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    zip.start_file(
        name,
        zip::write::SimpleFileOptions::default().unix_permissions(mode),
    )
    .context("zip")?;
    zip.write_all(content)?;
    zip.finish().context("zip")?;
    Ok(buf.into_inner())
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_init_duration};

    #[test]
    fn reads_init_duration_from_a_report_line() {
        let line = "REPORT RequestId: id\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 20 MB\tInit Duration: 30.25 ms";
        assert_eq!(parse_init_duration(line), Some(30.25));
        assert_eq!(parse_duration(line), Some(1.5));
        assert_eq!(
            parse_init_duration("REPORT RequestId: id\tDuration: 1.50 ms"),
            None
        );
    }
}
