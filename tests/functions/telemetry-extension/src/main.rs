//! Conformance fixture: an external extension built on the `lambda-extension` crate. It takes
//! `INVOKE` and `SHUTDOWN` and subscribes to the Telemetry API (on the port
//! `$TELEMETRY_PORT`, else one that is free), and writes one line per event and per record of
//! interest to `$EXTENSION_LOG`:
//!
//! - `INVOKE <request id>`, `SHUTDOWN <reason>`
//! - `start <request id>`, `runtimeDone <request id> <status>`,
//!   `report <request id> <durationMs> <billedDurationMs> <maxMemoryUsedMB>`
//! - `function <line>`
//!
//! With `TELEMETRY=off` it subscribes to nothing; without `$EXTENSION_LOG` it writes nothing.

use std::io::Write;

use lambda_extension::{
    service_fn, Error, Extension, LambdaEvent, LambdaTelemetry, LambdaTelemetryRecord, NextEvent,
    SharedService,
};

fn log(line: &str) {
    let Ok(path) = std::env::var("EXTENSION_LOG") else {
        return;
    };
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

async fn events(event: LambdaEvent) -> Result<(), Error> {
    match event.next {
        NextEvent::Invoke(invoke) => log(&format!("INVOKE {}", invoke.request_id)),
        NextEvent::Shutdown(shutdown) => log(&format!("SHUTDOWN {}", shutdown.shutdown_reason)),
    }
    Ok(())
}

async fn telemetry(records: Vec<LambdaTelemetry>) -> Result<(), Error> {
    for record in records {
        match record.record {
            LambdaTelemetryRecord::PlatformStart { request_id, .. } => {
                log(&format!("start {request_id}"));
            }
            LambdaTelemetryRecord::PlatformRuntimeDone {
                request_id, status, ..
            } => log(&format!("runtimeDone {request_id} {status:?}")),
            LambdaTelemetryRecord::PlatformReport {
                request_id,
                metrics,
                ..
            } => log(&format!(
                "report {request_id} {:.2} {} {}",
                metrics.duration_ms, metrics.billed_duration_ms, metrics.max_memory_used_mb
            )),
            LambdaTelemetryRecord::Function(line) => log(&format!("function {line}")),
            _ => {}
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Instances of a plain function share the device's loopback: without a port given, each
    // takes one that is free.
    let port = match std::env::var("TELEMETRY_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        Some(port) => port,
        None => std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
    };
    let extension = Extension::new().with_events_processor(service_fn(events));
    // `TELEMETRY=off`: a plain extension (events only), as the benchmark's no-op one.
    if std::env::var("TELEMETRY").is_ok_and(|v| v == "off") {
        return extension.run().await;
    }
    extension
        .with_telemetry_processor(SharedService::new(service_fn(telemetry)))
        .with_telemetry_port_number(port)
        .run()
        .await
}
