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
    /// Validate the configuration; exit 0, or 78 naming every problem.
    CheckConfig {
        #[command(flatten)]
        root: RootArg,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Loads the configuration a command names, or the root's default one.
pub fn load_config(
    layout: &Layout,
    explicit: Option<&Path>,
) -> Result<HostConfig, crate::config::ConfigError> {
    match explicit {
        Some(path) => HostConfig::load(path, true),
        None => HostConfig::load(&layout.config_file(), false),
    }
}

fn host_addr(layout: &Layout) -> anyhow::Result<String> {
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
        .body(Full::new(payload))?;
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
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let all: Vec<&str> = text.lines().collect();
    let mut out = std::io::stdout();
    for line in &all[all.len().saturating_sub(lines)..] {
        writeln!(out, "{line}")?;
    }
    if !follow {
        return Ok(0);
    }
    let mut offset = file.stream_position()?;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let len = std::fs::metadata(&path)?.len();
        if len < offset {
            offset = 0;
        }
        if len > offset {
            file.seek(SeekFrom::Start(offset))?;
            let mut chunk = Vec::new();
            file.read_to_end(&mut chunk)?;
            offset += chunk.len() as u64;
            out.write_all(&chunk)?;
            out.flush()?;
        }
    }
}
