//! Conformance fixture for response streaming: a `lambda_runtime` function that streams its
//! answer (`lambda_runtime::streaming`). See `tests/functions/README.md` for its events.
//!
//! `{"action":"stream", "chunks":[...]}` writes each chunk in turn. With `"gate": DIR` it
//! waits, after writing chunk `i`, for the file `DIR/ack-i` (the test creates it once it has
//! received chunk `i`), so a client that sees chunk `i` before chunk `i+1` was written proves
//! the answer flows; without a gate it pauses `gap_ms` between chunks. `"error": M` ends the
//! stream with an error after the chunks; `"then_sleep": S` sleeps S seconds after them
//! (past the function's timeout); `"bytes": N` (with `"chunk_bytes"`) streams N bytes of `x`;
//! `"stamps": N` writes N lines of the time (ns since the epoch), `gap_ms` apart.
//! `"status"`, `"headers"`, `"cookies"` go into the HTTP prelude. `{"action":"pid"}` answers
//! `{"pid": N}` (buffered); any other action answers buffered, with the event itself.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lambda_runtime::streaming::{channel, Body, Response};
use lambda_runtime::{service_fn, Error, FunctionResponse, LambdaEvent, MetadataPrelude};
use lambda_runtime_api_client::Error as StreamError;
use serde_json::Value;

/// How long the function waits for one acknowledgement before it gives up.
const GATE_DEADLINE: Duration = Duration::from_secs(30);

async fn wait_for_file(path: PathBuf) -> Result<(), Error> {
    let started = Instant::now();
    while !path.exists() {
        if started.elapsed() > GATE_DEADLINE {
            return Err(format!("no {} within {GATE_DEADLINE:?}", path.display()).into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn prelude(event: &Value) -> Result<MetadataPrelude, Error> {
    let mut prelude = MetadataPrelude {
        status_code: http::StatusCode::OK,
        ..MetadataPrelude::default()
    };
    if let Some(status) = event.get("status").and_then(Value::as_u64) {
        prelude.status_code = u16::try_from(status)?.try_into()?;
    }
    if let Some(headers) = event.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            let name: http::HeaderName = name.parse()?;
            prelude
                .headers
                .insert(name, value.as_str().unwrap_or_default().parse()?);
        }
    }
    if let Some(cookies) = event.get("cookies").and_then(Value::as_array) {
        prelude.cookies = cookies
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
    }
    Ok(prelude)
}

async fn write(mut tx: lambda_runtime::streaming::Sender, event: Value) {
    let gap = Duration::from_millis(event.get("gap_ms").and_then(Value::as_u64).unwrap_or(0));
    let gate = event.get("gate").and_then(Value::as_str).map(PathBuf::from);
    let chunks: Vec<String> = event
        .get("chunks")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let count = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        if tx.send_data(chunk.into()).await.is_err() {
            return;
        }
        if i + 1 == count {
            break;
        }
        match &gate {
            Some(dir) => {
                if let Err(e) = wait_for_file(dir.join(format!("ack-{i}"))).await {
                    tx.send_error(StreamError::new(e));
                    return;
                }
            }
            None => tokio::time::sleep(gap).await,
        }
    }
    // Timestamps (ns since the epoch, one a line), for the benchmark's chunk latency.
    for _ in 0..event.get("stamps").and_then(Value::as_u64).unwrap_or(0) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        if tx.send_data(format!("{now}\n").into()).await.is_err() {
            return;
        }
        tokio::time::sleep(gap).await;
    }
    if let Some(total) = event.get("bytes").and_then(Value::as_u64) {
        let size = event
            .get("chunk_bytes")
            .and_then(Value::as_u64)
            .unwrap_or(64 * 1024)
            .max(1);
        let mut left = total;
        while left > 0 {
            let n = left.min(size);
            if tx.send_data(vec![b'x'; n as usize].into()).await.is_err() {
                return;
            }
            left -= n;
        }
    }
    if let Some(seconds) = event.get("then_sleep").and_then(Value::as_f64) {
        tokio::time::sleep(Duration::from_secs_f64(seconds.max(0.0))).await;
    }
    if let Some(message) = event.get("error").and_then(Value::as_str) {
        tx.send_error(StreamError::new(message.to_owned()));
    }
}

async fn handler(event: LambdaEvent<Value>) -> Result<FunctionResponse<Value, Body>, Error> {
    let (payload, _context) = event.into_parts();
    // Through a function URL the event is the HTTP request: its body holds the instructions.
    let payload = match (
        payload.get("version").and_then(Value::as_str),
        payload.get("body").and_then(Value::as_str),
    ) {
        (Some("2.0"), Some(body)) => serde_json::from_str(body).unwrap_or(payload),
        _ => payload,
    };
    match payload.get("action").and_then(Value::as_str) {
        Some("stream") => {}
        Some("pid") => {
            return Ok(FunctionResponse::BufferedResponse(
                serde_json::json!({ "pid": std::process::id() }),
            ))
        }
        _ => return Ok(FunctionResponse::BufferedResponse(payload)),
    }
    let metadata_prelude = prelude(&payload)?;
    let (tx, rx) = channel();
    tokio::spawn(write(tx, payload));
    Ok(FunctionResponse::StreamingResponse(Response {
        metadata_prelude,
        stream: rx,
    }))
}

fn main() -> Result<(), Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(lambda_runtime::run(service_fn(handler)))
}
