//! Conformance fixture for Lambkin's `provided.*` runtimes.
//!
//! Implements the shared fixture event protocol (see `tests/functions/README.md`):
//! `echo` (default), `error`, `sleep`, `crash`, `context` and `log`.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::{json, Value};

/// The error a handler returns for `{"action":"error"}`.
#[derive(Debug)]
struct FixtureError(String);

impl std::fmt::Display for FixtureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FixtureError {}

impl From<FixtureError> for Diagnostic {
    fn from(error: FixtureError) -> Self {
        Diagnostic {
            error_type: "FixtureError".into(),
            error_message: error.0,
        }
    }
}

fn str_field<'a>(event: &'a Value, key: &str) -> Option<&'a str> {
    event.get(key).and_then(Value::as_str)
}

fn remaining_ms(deadline_ms: u64) -> u64 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    deadline_ms.saturating_sub(now_ms)
}

async fn handler(event: LambdaEvent<Value>) -> Result<Value, FixtureError> {
    let (payload, context) = event.into_parts();
    match str_field(&payload, "action").unwrap_or("echo") {
        "error" => Err(FixtureError(
            str_field(&payload, "message").unwrap_or("error").to_owned(),
        )),
        "sleep" => {
            let seconds = payload
                .get("seconds")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            tokio::time::sleep(Duration::from_secs_f64(seconds.max(0.0))).await;
            Ok(json!({ "slept": seconds }))
        }
        "crash" => {
            let code = payload
                .get("code")
                .and_then(Value::as_i64)
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(1);
            // Flush whatever was printed so the host sees it before the exit.
            let _ = std::io::stdout().flush();
            std::process::exit(code)
        }
        "context" => {
            let client_context = match &context.client_context {
                Some(cc) => serde_json::to_value(cc)
                    .map_err(|e| FixtureError(format!("client context: {e}")))?,
                None => Value::Null,
            };
            Ok(json!({
                "client_context": client_context,
                "function_name": context.env_config.function_name,
                "remaining_ms": remaining_ms(context.deadline),
                "request_id": context.request_id,
                "env": std::env::vars()
                    .filter(|(k, _)| k.starts_with("FIXTURE_"))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            }))
        }
        "log" => {
            println!("{}", str_field(&payload, "message").unwrap_or(""));
            let _ = std::io::stdout().flush();
            Ok(json!({ "logged": true }))
        }
        _ => Ok(payload),
    }
}

/// A Lambda instance handles one event at a time, so the function runs on tokio's
/// current-thread runtime; `FIXTURE_TOKIO_MULTI_THREAD=1` in its environment selects the
/// multi-thread runtime `#[tokio::main]` would give (the benchmark measures both).
fn main() -> Result<(), lambda_runtime::Error> {
    let mut builder = if std::env::var_os("FIXTURE_TOKIO_MULTI_THREAD").is_some() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()?
        .block_on(lambda_runtime::run(service_fn(handler)))
}
