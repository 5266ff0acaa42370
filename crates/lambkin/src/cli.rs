//! The `lambkin` commands. `run` is the host; the others talk to a running host through the
//! address it wrote under `ROOT/state/`, or read the root directly (`logs`).

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use lambkin_proto::ipc::shapes::deployments::DeploymentStatus;

use crate::config::HostConfig;
use crate::layout::Layout;

/// Exit status for invalid configuration (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "lambkin",
    version,
    about = "Runs AWS Lambda functions on a device"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct RootArg {
    /// The host's root directory (default: $LAMBKIN_ROOT, else ./lambkin-root).
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
}

impl RootArg {
    pub fn layout(&self) -> Layout {
        Layout::resolve(
            self.root.clone(),
            std::env::var_os("LAMBKIN_ROOT").map(PathBuf::from),
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host in the foreground.
    Run {
        #[command(flatten)]
        root: RootArg,
        /// Configuration file (default: ROOT/config.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// API address, overriding the configuration (port 0: any free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Define the example function `hello` (Python) if it does not exist.
        #[arg(long)]
        with_example: bool,
    },
    /// Invoke a function and print its result; exits 1 on a function error.
    Invoke {
        #[command(flatten)]
        root: RootArg,
        name: String,
        /// The event (JSON); default `{}`.
        payload: Option<String>,
        #[arg(long, conflicts_with = "payload")]
        payload_file: Option<PathBuf>,
        /// Queue the invocation (`Event`) instead of waiting for its result.
        #[arg(long = "async")]
        asynchronous: bool,
        /// Print the invocation's log tail to stderr.
        #[arg(long)]
        log_tail: bool,
    },
    /// Print a function's log.
    Logs {
        #[command(flatten)]
        root: RootArg,
        name: String,
        /// Keep printing as the log grows.
        #[arg(long, short)]
        follow: bool,
        /// How many lines from the end to start with.
        #[arg(long, short = 'n', default_value_t = 100)]
        lines: usize,
    },
    /// Apply a local deployment and wait for it (as `greengrass-cli deployment create`).
    Deploy {
        #[command(flatten)]
        root: RootArg,
        /// Directory of recipes (JSON or YAML).
        #[arg(long, short = 'r')]
        recipe_dir: Option<PathBuf>,
        /// Directory of artifacts, laid out NAME/VERSION/FILE.
        #[arg(long, short = 'a')]
        artifact_dir: Option<PathBuf>,
        /// Add or update a component: NAME=VERSION (repeatable).
        #[arg(long, short = 'm')]
        merge: Vec<String>,
        /// Remove a component (repeatable).
        #[arg(long)]
        remove: Vec<String>,
        /// Configuration updates: {"NAME":{"RESET":["/p"],"MERGE":{...}}}, or a file holding it.
        #[arg(long, short = 'c')]
        update_config: Option<String>,
        /// What a failed deployment does: rollback (default) or do-nothing.
        #[arg(long, value_parser = ["rollback", "do-nothing"], default_value = "rollback")]
        failure_policy: String,
        /// The user a component runs as: NAME:posixUser=USER or NAME:posixUser=USER:GROUP
        /// (repeatable; as greengrass-cli's --runWith). Kept until a deployment changes it.
        #[arg(long)]
        run_with: Vec<String>,
        /// CPU and memory limits: {"NAME":{"cpus":0.5,"memory":KB}}, or a file holding it (as
        /// greengrass-cli's --systemLimits).
        #[arg(long)]
        system_limits: Option<String>,
        /// Tell the components subscribed to updates (SubscribeToComponentUpdates) first and
        /// let them defer it, waiting up to SECONDS (default 60) for each answer: a cloud
        /// deployment's NOTIFY_COMPONENTS. Local deployments skip it otherwise.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "60")]
        notify_components: Option<u64>,
    },
    /// List components: name, version, type, state.
    List {
        #[command(flatten)]
        root: RootArg,
        #[arg(long)]
        json: bool,
    },
    /// Restart a component.
    Restart {
        #[command(flatten)]
        root: RootArg,
        name: String,
    },
    /// Stop a component.
    Stop {
        #[command(flatten)]
        root: RootArg,
        name: String,
    },
    /// Publish a message on local pub/sub: JSON if MESSAGE parses as JSON, else its bytes.
    Pub {
        #[command(flatten)]
        root: RootArg,
        topic: String,
        message: String,
    },
    /// Print each local pub/sub message matching FILTER (`+`, `#` allowed) as one line,
    /// `TOPIC MESSAGE`, until interrupted.
    Sub {
        #[command(flatten)]
        root: RootArg,
        filter: String,
    },
    /// A live overview in the terminal, from the host's /metrics: functions (invocations,
    /// rates, errors, p50/p99 latency, instances) and components (states, MQTT traffic), the
    /// MQTT connection and spool. Refreshes every second until interrupted.
    Top {
        #[command(flatten)]
        root: RootArg,
        /// Print one frame and exit (plain text; latency since the host started).
        #[arg(long)]
        once: bool,
        /// Seconds between frames.
        #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
        interval: f64,
    },
    /// Print a one-time login link to the web console (good once, for 5 minutes).
    Console {
        #[command(flatten)]
        root: RootArg,
    },
    /// Print the shell lines that point the AWS CLI and SDKs at this host with its own key.
    Credentials {
        #[command(flatten)]
        root: RootArg,
    },
    /// Write a backup of the root to FILE (a .tar.gz), while the host runs or not: the
    /// databases as consistent copies, function code, layers, components and their work
    /// directories, keys and configuration; not the logs.
    Backup {
        #[command(flatten)]
        root: RootArg,
        file: PathBuf,
    },
    /// Restore a backup into the root (no host may run on it). A root that holds state
    /// already is refused unless --force, which replaces what it holds.
    Restore {
        #[command(flatten)]
        root: RootArg,
        file: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Set this device up (as root): the components' default user, the root directory, a
    /// config.toml from these flags and a systemd unit. Exit 78 on a bad flag, nothing written.
    Install {
        #[command(flatten)]
        root: RootArg,
        /// Where the unit `lambkin.service` is written; systemctl is called only when this is
        /// a directory systemd loads units from. The default is where systemd reads the
        /// administrator's units.
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
        /// The binary the unit runs (default: this one).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// The device's AWS IoT thing name.
        #[arg(long)]
        thing_name: Option<String>,
        /// The AWS Region.
        #[arg(long)]
        region: Option<String>,
        /// The MQTT broker: an AWS IoT data endpoint (xxxx-ats.iot.REGION.amazonaws.com, then
        /// mqtts://), or an mqtt:// or mqtts:// URL.
        #[arg(long)]
        mqtt_endpoint: Option<String>,
        /// The device's certificate (PEM), for mqtts://.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// The device's private key (PEM), for mqtts://.
        #[arg(long)]
        key: Option<PathBuf>,
        /// The CA certificate to trust (PEM), for mqtts://.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Whom components and functions run as, USER or USER:GROUP, created when missing
        /// (default ggc_user:ggc_group).
        #[arg(long)]
        component_default_user: Option<String>,
        /// Replace an existing config.toml that differs from what these flags give.
        #[arg(long)]
        force: bool,
        /// Print the systemctl commands instead of running them.
        #[arg(long)]
        no_enable: bool,
        /// Write no unit and call no systemctl (a package ships the unit and enables it).
        #[arg(long, conflicts_with = "no_enable")]
        no_unit: bool,
        /// Print the unit for --binary and --root with the default configuration (what a
        /// package ships) and exit: nothing is checked or written, and root is not needed.
        #[arg(long)]
        print_unit: bool,
    },
    /// Remove what `install` made (the unit; the default user and group if it created them),
    /// keeping the root unless --purge.
    Uninstall {
        #[command(flatten)]
        root: RootArg,
        /// Remove the root directory too: functions, components, state and logs.
        #[arg(long)]
        purge: bool,
        /// Print the systemctl commands instead of running them.
        #[arg(long)]
        no_enable: bool,
    },
    /// Validate the configuration; exit 0, or 78 naming every problem.
    CheckConfig {
        #[command(flatten)]
        root: RootArg,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// `top --interval`: at least 0.1 s, at most a day.
fn parse_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.1..=86_400.0).contains(&v) {
        Ok(v)
    } else {
        Err("between 0.1 and 86400 seconds".into())
    }
}

/// Loads the configuration a command names, or the root's default one, and checks that the
/// files it names for TLS (`[mqtt]` over `mqtts://`, `[tes]` from `iot`) hold what those
/// clients need, with the clients' own code.
pub fn load_config(
    layout: &Layout,
    explicit: Option<&Path>,
) -> Result<HostConfig, crate::config::ConfigError> {
    let path = explicit.map_or_else(|| layout.config_file(), Path::to_owned);
    let config = HostConfig::load(&path, explicit.is_some())?;
    check_files(&config, &path)?;
    Ok(config)
}

/// The checks of [`load_config`] past parsing: what the TLS files `config` (read from `path`)
/// names hold (the broker's, the IoT credentials provider's, remote targets' CAs), read by the
/// clients that will use them.
pub fn check_files(config: &HostConfig, path: &Path) -> Result<(), crate::config::ConfigError> {
    let invalid = |problems: String| crate::config::ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    };
    if let Some(mqtt) = &config.mqtt {
        if let Ok(broker) = mqtt.broker() {
            if broker.tls {
                crate::mqtt::tls::client_config(mqtt, broker.port).map_err(invalid)?;
            }
        }
    }
    for (name, target) in &config.remote_targets {
        if target.address().is_ok_and(|e| e.tls) {
            crate::remote::tls_config(target)
                .map_err(|e| invalid(format!("remote_targets.{name}: {e}")))?;
        }
    }
    if let Some(tes) = &config.tes {
        if tes.source == crate::config::TesSource::Iot {
            crate::tes::iot::IotProvider::new(tes, "")
                .map_err(|e| invalid(format!("[tes]: {e:#}")))?;
        }
    }
    Ok(())
}

pub(crate) fn host_addr(layout: &Layout) -> anyhow::Result<String> {
    let path = layout.api_addr_file();
    let addr = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no running host found ({} is missing); start one with `lambkin run --root {}`",
            path.display(),
            layout.root().display()
        )
    })?;
    Ok(addr.trim().to_owned())
}

#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// One HTTP/1.1 request to the host.
pub async fn request(addr: &str, req: Request<Full<Bytes>>) -> anyhow::Result<HttpReply> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach the host at {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let response = sender.send_request(req).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    drop(sender);
    let _ = driver.await;
    Ok(HttpReply {
        status,
        headers,
        body,
    })
}

/// Signs `req` (whose body is `body`) with the host's key from `layout`, as an AWS SDK signs a
/// Lambda API call.
pub fn sign(layout: &Layout, req: &mut Request<Full<Bytes>>, body: &[u8]) -> anyhow::Result<()> {
    let path = layout.credentials_file();
    let key = crate::keys::load(&path)
        .context("cannot sign the request with the host's key (run this as the host's user)")?;
    let region = load_config(layout, None)
        .map(|c| c.region)
        .unwrap_or_else(|_| "us-east-1".to_owned());
    lambkin_proto::lambda::sigv4::sign_request(
        req,
        body,
        &lambkin_proto::lambda::sigv4::Key {
            access_key_id: &key.access_key_id,
            secret: &key.secret,
        },
        &region,
        std::time::SystemTime::now(),
    )
    .map_err(|e| anyhow::anyhow!("cannot sign the request: {e}"))
}

/// `lambkin credentials`: what to `eval` so that the AWS CLI and SDKs use this host.
pub fn credentials(layout: &Layout) -> anyhow::Result<i32> {
    let path = layout.credentials_file();
    crate::keys::load(&path).context("the host's key is made at its first start")?;
    let config = load_config(layout, None)?;
    let addr = host_addr(layout).unwrap_or_else(|_| config.listen.to_string());
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    // AWS_DEFAULT_REGION too: the AWS CLI v1 and older SDKs read only that one.
    let region = quote(&config.region);
    println!(
        "export AWS_SHARED_CREDENTIALS_FILE={} AWS_PROFILE={} AWS_REGION={region} AWS_DEFAULT_REGION={region} AWS_ENDPOINT_URL_LAMBDA={}",
        quote(&path.display().to_string()),
        crate::keys::PROFILE,
        quote(&format!("http://{addr}")),
    );
    Ok(0)
}

pub async fn invoke(
    layout: &Layout,
    name: &str,
    payload: Option<String>,
    payload_file: Option<PathBuf>,
    asynchronous: bool,
    log_tail: bool,
) -> anyhow::Result<i32> {
    let addr = host_addr(layout)?;
    let payload = match (payload, payload_file) {
        (Some(p), _) => Bytes::from(p),
        (None, Some(file)) => Bytes::from(
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?,
        ),
        (None, None) => Bytes::from_static(b"{}"),
    };
    let req = Request::post(format!("/2015-03-31/functions/{name}/invocations"))
        .header("host", &addr)
        .header(
            "x-amz-invocation-type",
            if asynchronous {
                "Event"
            } else {
                "RequestResponse"
            },
        )
        .header("x-amz-log-type", if log_tail { "Tail" } else { "None" })
        .body(Full::new(payload.clone()))?;
    let mut req = req;
    sign(layout, &mut req, &payload)?;
    let reply = request(&addr, req).await?;
    if let Some(tail) = reply
        .headers
        .get("x-amz-log-result")
        .and_then(|v| v.to_str().ok())
    {
        let decoded = base64::engine::general_purpose::STANDARD.decode(tail)?;
        std::io::stderr().write_all(&decoded)?;
    }
    if !(200..300).contains(&reply.status) {
        let kind = reply
            .headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("error");
        bail!("{kind}: {}", String::from_utf8_lossy(&reply.body));
    }
    let mut out = std::io::stdout();
    out.write_all(&reply.body)?;
    if !reply.body.is_empty() {
        out.write_all(b"\n")?;
    }
    Ok(if reply.headers.contains_key("x-amz-function-error") {
        1
    } else {
        0
    })
}

pub async fn logs(layout: &Layout, name: &str, follow: bool, lines: usize) -> anyhow::Result<i32> {
    let function = lambkin_proto::lambda::function::FunctionName::parse(name)?;
    let path = layout.function_log(&function);
    let mut file = std::fs::File::open(&path)
        .with_context(|| format!("no log for {name} at {}", path.display()))?;
    // Watched before the first read: what is written after it wakes the loop below at once;
    // the pace bounds the wait where the change cannot be watched.
    let watch = follow.then(|| crate::logwatch::LogWatch::new(&path));
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let all: Vec<&str> = text.lines().collect();
    let mut out = std::io::stdout();
    for line in &all[all.len().saturating_sub(lines)..] {
        writeln!(out, "{line}")?;
    }
    let Some(mut watch) = watch else {
        return Ok(0);
    };
    let mut offset = file.stream_position()?;
    loop {
        watch.changed(Duration::from_millis(200)).await;
        // Rotated: NAME.log is a new file and the one open is NAME.log.1. What was written
        // to the old one since the last read is printed, then the new one from its start.
        let rotated = {
            use std::os::unix::fs::MetadataExt as _;
            let open = file.metadata()?;
            std::fs::metadata(&path)
                .is_ok_and(|now| (now.dev(), now.ino()) != (open.dev(), open.ino()))
        };
        if rotated {
            print_from(&mut file, offset, &mut out)?;
            file = std::fs::File::open(&path)?;
            offset = 0;
        }
        if file.metadata()?.len() < offset {
            // Truncated in place: start again from its beginning.
            offset = 0;
        }
        offset += print_from(&mut file, offset, &mut out)?;
    }
}

/// Prints what `file` holds from `offset` on; returns how many bytes that was.
fn print_from(file: &mut std::fs::File, offset: u64, out: &mut impl Write) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(offset))?;
    let mut chunk = Vec::new();
    file.read_to_end(&mut chunk)?;
    if !chunk.is_empty() {
        out.write_all(&chunk)?;
        out.flush()?;
    }
    Ok(chunk.len() as u64)
}

/// A request to the host's local API, with the token the host wrote.
async fn local(
    layout: &Layout,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<HttpReply> {
    let addr = host_addr(layout)?;
    let token = cli_token(layout)?;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", &addr)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))?;
    let reply = request(&addr, req).await?;
    if !(200..300).contains(&reply.status) {
        bail!("{}", error_message(&reply.body));
    }
    Ok(reply)
}

/// Asks the running host for a consistent copy of its state database (`lambkin backup`).
async fn local_backup(layout: &Layout) -> anyhow::Result<()> {
    local(layout, "POST", "/lambkin/v1/backup", None).await?;
    Ok(())
}

pub async fn backup(layout: &Layout, file: &std::path::Path) -> anyhow::Result<i32> {
    let done = crate::backup::backup(layout, file, || local_backup(layout)).await?;
    println!("{done}");
    Ok(0)
}

pub async fn restore(layout: &Layout, file: &std::path::Path, force: bool) -> anyhow::Result<i32> {
    let layout = layout.clone();
    let file = file.to_owned();
    let done = tokio::task::spawn_blocking(move || crate::backup::restore(&layout, &file, force))
        .await??;
    println!("{done}");
    Ok(0)
}

/// The token the host wrote for the CLI.
fn cli_token(layout: &Layout) -> anyhow::Result<String> {
    let token_path = layout.cli_token_file();
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("cannot read the host's token at {}", token_path.display()))?;
    Ok(token.trim().to_owned())
}

fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

fn absolute(path: PathBuf) -> anyhow::Result<PathBuf> {
    path.canonicalize()
        .with_context(|| format!("cannot find {}", path.display()))
}

/// `NAME:posixUser=USER[:GROUP]` → (NAME, `USER[:GROUP]`).
fn parse_run_with(arg: &str) -> anyhow::Result<(String, String)> {
    let parsed = arg.split_once(':').and_then(|(name, setting)| {
        let (key, value) = setting.split_once('=')?;
        (!name.is_empty() && key.eq_ignore_ascii_case("posixUser") && !value.is_empty())
            .then(|| (name.to_owned(), value.to_owned()))
    });
    match parsed {
        Some(p) => Ok(p),
        None => bail!("--run-with {arg:?} must be NAME:posixUser=USER[:GROUP]"),
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn deploy(
    layout: &Layout,
    recipe_dir: Option<PathBuf>,
    artifact_dir: Option<PathBuf>,
    merge: Vec<String>,
    remove: Vec<String>,
    update_config: Option<String>,
    failure_policy: &str,
    run_with: Vec<String>,
    system_limits: Option<String>,
    notify_components: Option<u64>,
) -> anyhow::Result<i32> {
    let mut runs_with = serde_json::Map::new();
    for r in run_with {
        let (name, setting) = parse_run_with(&r)?;
        let entry = runs_with
            .entry(name)
            .or_insert_with(|| serde_json::json!({}));
        entry["posixUser"] = setting.into();
    }
    if let Some(text) = system_limits {
        let text = if text.trim_start().starts_with('{') {
            text
        } else {
            std::fs::read_to_string(&text).with_context(|| format!("cannot read {text}"))?
        };
        let limits: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).context("--system-limits is not a JSON object")?;
        for (name, limit) in limits {
            let entry = runs_with
                .entry(name)
                .or_insert_with(|| serde_json::json!({}));
            entry["systemResourceLimits"] = limit;
        }
    }
    let mut merged = serde_json::Map::new();
    for m in merge {
        let Some((name, version)) = m.split_once('=') else {
            bail!("--merge {m:?} must be NAME=VERSION");
        };
        merged.insert(name.to_owned(), version.into());
    }
    let update_config = match update_config {
        None => serde_json::json!({}),
        Some(text) => {
            let text = if text.trim_start().starts_with('{') {
                text
            } else {
                std::fs::read_to_string(&text).with_context(|| format!("cannot read {text}"))?
            };
            serde_json::from_str(&text).context("--update-config is not valid JSON")?
        }
    };
    let mut body = serde_json::json!({
        "recipeDir": recipe_dir.map(absolute).transpose()?,
        "artifactDir": artifact_dir.map(absolute).transpose()?,
        "merge": merged,
        "remove": remove,
        "updateConfig": update_config,
        "failurePolicy": if failure_policy == "do-nothing" { "DO_NOTHING" } else { "ROLLBACK" },
        "runWith": runs_with,
    });
    if let Some(seconds) = notify_components {
        body["componentUpdatePolicy"] =
            serde_json::json!({"action": "NOTIFY_COMPONENTS", "timeoutInSeconds": seconds});
    }
    println!("Local deployment submitted; waiting for it to finish");
    let reply = local(layout, "POST", "/lambkin/v1/deployments", Some(body)).await?;
    let outcome: serde_json::Value = serde_json::from_slice(&reply.body)?;
    let id = outcome["deploymentId"].as_str().unwrap_or_default();
    let status = outcome["status"].as_str().unwrap_or_default();
    println!("Deployment {id}: {status}");
    print_status_details(&outcome["deploymentStatusDetails"]);
    if DeploymentStatus::parse(status) == Some(DeploymentStatus::Succeeded) {
        Ok(0)
    } else {
        eprintln!(
            "lambkin: {}",
            outcome["message"].as_str().unwrap_or_default()
        );
        Ok(1)
    }
}

/// A failed deployment's detailed status, error stack and error types, one line each (the
/// failure's cause is the message, printed on its own).
fn print_status_details(details: &serde_json::Value) {
    let detailed = details["detailedDeploymentStatus"].as_str();
    if let Some(detailed) = detailed.filter(|d| *d != "SUCCESSFUL") {
        println!("Detailed status: {detailed}");
    }
    for (key, label) in [
        ("deploymentErrorStack", "Error stack"),
        ("deploymentErrorTypes", "Error types"),
    ] {
        let list: Vec<&str> = details[key]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if !list.is_empty() {
            println!("{label}: {}", list.join(", "));
        }
    }
}

pub async fn list(layout: &Layout, json: bool) -> anyhow::Result<i32> {
    let reply = local(layout, "GET", "/lambkin/v1/components", None).await?;
    if json {
        println!("{}", String::from_utf8_lossy(&reply.body));
        return Ok(0);
    }
    let components: Vec<serde_json::Value> = serde_json::from_slice(&reply.body)?;
    println!("{:<44} {:<10} {:<8} STATE", "NAME", "VERSION", "TYPE");
    for c in components {
        let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
        println!(
            "{:<44} {:<10} {:<8} {}",
            field("name"),
            field("version"),
            field("type"),
            field("state")
        );
    }
    let actions = openwhisk_actions(layout).await.unwrap_or_else(|e| {
        eprintln!("cannot list the OpenWhisk actions: {e:#}");
        Vec::new()
    });
    for action in actions {
        let field = |k: &str| action[k].as_str().unwrap_or_default().to_owned();
        let kind = action["exec"]["kind"].as_str().unwrap_or_default();
        let runs_as = match kind {
            "sequence" => "sequence".to_owned(),
            _ => format!(
                "{kind}, Lambda {}{}",
                crate::openwhisk::FUNCTION_PREFIX,
                field("name")
            ),
        };
        println!(
            "{:<44} {:<10} {:<8} ready ({runs_as})",
            field("name"),
            field("version"),
            "openwhisk",
        );
    }
    Ok(0)
}

/// The host's OpenWhisk actions, through its OpenWhisk API with its key.
async fn openwhisk_actions(layout: &Layout) -> anyhow::Result<Vec<serde_json::Value>> {
    let addr = host_addr(layout)?;
    let auth_path = crate::openwhisk::auth_file(layout);
    let auth = std::fs::read_to_string(&auth_path)
        .with_context(|| format!("cannot read {}", auth_path.display()))?;
    let req = Request::builder()
        .method("GET")
        .uri("/api/v1/namespaces/_/actions?limit=200")
        .header("host", &addr)
        .header(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(auth.trim())
            ),
        )
        .body(Full::new(Bytes::new()))?;
    let reply = request(&addr, req).await?;
    if !(200..300).contains(&reply.status) {
        bail!(
            "OpenWhisk actions: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    Ok(serde_json::from_slice(&reply.body)?)
}

pub async fn control(layout: &Layout, name: &str, action: &str) -> anyhow::Result<i32> {
    local(
        layout,
        "POST",
        &format!("/lambkin/v1/components/{name}/{action}"),
        None,
    )
    .await?;
    println!("{name}: {action} requested");
    Ok(0)
}

/// `lambkin console`: asks the running host for a login link and prints it.
pub async fn console(layout: &Layout) -> anyhow::Result<i32> {
    let addr = host_addr(layout)?;
    let reply = local(layout, "POST", "/lambkin/v1/console/link", None).await?;
    let answer: serde_json::Value = serde_json::from_slice(&reply.body)?;
    let Some(path) = answer["path"].as_str() else {
        bail!("the host answered no login link");
    };
    println!("http://{addr}{path}");
    eprintln!("open it within 5 minutes; it logs in once");
    if addr
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| !a.ip().is_loopback() && !a.ip().is_unspecified())
    {
        eprintln!(
            "the host listens on {addr}, not on loopback, and the console answers only over \
             loopback (plain HTTP would carry the login in the clear): listen on 127.0.0.1, \
             through an SSH tunnel from another machine"
        );
    }
    Ok(0)
}

/// `lambkin pub`: publishes as the CLI.
pub async fn publish(layout: &Layout, topic: &str, message: &str) -> anyhow::Result<i32> {
    let body = match serde_json::from_str::<serde_json::Value>(message) {
        Ok(json) => serde_json::json!({"topic": topic, "json": json}),
        Err(_) => serde_json::json!({
            "topic": topic,
            "binary": base64::engine::general_purpose::STANDARD.encode(message.as_bytes()),
        }),
    };
    let reply = local(layout, "POST", "/lambkin/v1/publish", Some(body)).await?;
    let answer: serde_json::Value = serde_json::from_slice(&reply.body)?;
    eprintln!(
        "published on {topic} to {} subscription(s)",
        answer["subscribers"].as_u64().unwrap_or_default()
    );
    Ok(0)
}

/// `lambkin sub`: one line per message, `TOPIC MESSAGE`, until interrupted or the host stops.
/// JSON messages print as compact JSON, binary ones as text (invalid UTF-8 replaced).
/// "subscribed to FILTER" goes to stderr once the subscription is live.
pub async fn subscribe(layout: &Layout, filter: &str) -> anyhow::Result<i32> {
    use tokio::io::AsyncBufReadExt;
    let addr = host_addr(layout)?;
    let token = cli_token(layout)?;
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .with_context(|| format!("cannot reach the host at {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn.with_upgrades());
    let req = Request::builder()
        .method("POST")
        .uri("/lambkin/v1/subscribe")
        .header("host", &addr)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header(hyper::header::CONNECTION, "upgrade")
        .header(hyper::header::UPGRADE, crate::api::SUBSCRIBE_PROTOCOL)
        .body(Full::new(Bytes::from(
            serde_json::json!({ "filter": filter }).to_string(),
        )))?;
    let response = sender.send_request(req).await?;
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        let body = response.into_body().collect().await?.to_bytes();
        bail!("{}", error_message(&body));
    }
    let upgraded = hyper::upgrade::on(response).await?;
    drop(sender);
    eprintln!("subscribed to {filter}");
    let mut lines = tokio::io::BufReader::new(TokioIo::new(upgraded)).lines();
    while let Some(line) = lines.next_line().await? {
        let message: serde_json::Value = serde_json::from_str(&line)?;
        let topic = message["topic"].as_str().unwrap_or_default();
        let text = if let Some(encoded) = message["binary"].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded)?;
            String::from_utf8_lossy(&bytes).replace('\n', "\\n")
        } else {
            message["json"].to_string()
        };
        println!("{topic} {text}");
    }
    let _ = driver.await;
    eprintln!("the host closed the subscription");
    Ok(0)
}
