//! The floor: a plain HTTP/1.1 server that answers a POST with the bytes it was sent. It runs
//! as its own process (`lambkin-bench floor-server`) with the same kind of runtime and
//! connection settings as the host, so the two differ only by what Lambkin does per invoke.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::process::Supervised;

/// The size of the chunks the streaming fixture writes, unless its event says otherwise.
pub const CHUNK_BYTES: u64 = 64 * 1024;

/// Serves until SIGTERM or Ctrl-C; prints `listening on http://ADDR` once ready.
pub fn serve() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
        drop(out);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(answer);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .writev(true)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        Ok(())
    })
}

/// `/stream`: a chunked answer written as the streaming fixture writes it (the same JSON
/// instructions: `stamps`, `gap_ms`, `bytes`, `chunk_bytes`); anything else: the echo.
async fn answer(req: Request<Incoming>) -> Result<Response<FloorBody>, Infallible> {
    if req.uri().path() != "/stream" {
        return echo(req).await.map(|r| r.map(FloorBody::Full));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(write_like_the_fixture(event, tx));
    Ok(Response::new(FloorBody::Stream(rx)))
}

/// The floor's body: whole, or chunks as a task writes them.
#[derive(Debug)]
pub enum FloorBody {
    Full(Full<Bytes>),
    Stream(tokio::sync::mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for FloorBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(body) => std::pin::Pin::new(body).poll_frame(cx),
            Self::Stream(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(hyper::body::Frame::data(c)))),
        }
    }
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let content_type = req.headers().get("content-type").cloned();
    let mut response = match req.into_body().collect().await {
        Ok(body) => Response::new(Full::new(body.to_bytes())),
        Err(_) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        }
    };
    if let Some(ct) = content_type {
        response.headers_mut().insert("content-type", ct);
    }
    Ok(response)
}

/// The floor server, running as a child process of the bench.
#[derive(Debug)]
pub struct Floor {
    pub process: Supervised,
    pub addr: SocketAddr,
}

impl Floor {
    pub fn start(bench_exe: &Path) -> anyhow::Result<Self> {
        let mut command = Command::new(bench_exe);
        command
            .arg("floor-server")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut process = Supervised::spawn("the floor server", command)?;
        let stdout = process
            .take_stdout()
            .ok_or_else(|| anyhow!("the floor server has no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("cannot read the floor server's address")?;
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .ok_or_else(|| anyhow!("the floor server said {line:?}"))?
            .parse()
            .context("the floor server's address")?;
        Ok(Self { process, addr })
    }
}

/// Writes what the streaming fixture writes for `event` (`stamps`, `gap_ms`, `bytes`,
/// `chunk_bytes`) into `tx`: the floor's answer.
pub async fn write_like_the_fixture(
    event: serde_json::Value,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let gap = Duration::from_millis(event["gap_ms"].as_u64().unwrap_or(0));
    for _ in 0..event["stamps"].as_u64().unwrap_or(0) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        if tx.send(Bytes::from(format!("{now}\n"))).await.is_err() {
            return;
        }
        tokio::time::sleep(gap).await;
    }
    let mut left = event["bytes"].as_u64().unwrap_or(0);
    let size = event["chunk_bytes"].as_u64().unwrap_or(CHUNK_BYTES).max(1);
    while left > 0 {
        let n = left.min(size);
        if tx.send(Bytes::from(vec![b'x'; n as usize])).await.is_err() {
            return;
        }
        left -= n;
    }
}
