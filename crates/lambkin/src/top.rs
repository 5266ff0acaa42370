//! `lambkin top`: the device at a glance in a terminal (one reached over SSH, say): functions
//! with their invocations, rates, errors and p50/p99 latency, components with their states and
//! MQTT traffic, the MQTT connection and spool, the host's CPU and memory. Every frame is one
//! scrape of the host's `/metrics` (with `ROOT/state/metrics.token`); rates and the interval's
//! latency come from the difference between two scrapes. Plain text: the screen is cleared
//! between frames only when stdout is a terminal.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

use lambkin_proto::metrics::{parse_text, quantile, ParsedSample};

use crate::layout::Layout;

/// Clears the screen and puts the cursor home (a terminal only).
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Prints frames every `interval` until interrupted, or one frame with `once`.
pub async fn run(layout: &Layout, once: bool, interval: Duration) -> anyhow::Result<i32> {
    let terminal = std::io::stdout().is_terminal();
    let mut previous: Option<Scrape> = None;
    loop {
        let scrape = scrape(layout).await?;
        let frame = render(&scrape, previous.as_ref());
        let mut out = std::io::stdout().lock();
        if terminal && !once {
            out.write_all(CLEAR.as_bytes())?;
        }
        out.write_all(frame.as_bytes())?;
        out.flush()?;
        drop(out);
        if once {
            return Ok(0);
        }
        if !terminal {
            println!();
        }
        previous = Some(scrape);
        tokio::time::sleep(interval).await;
    }
}

/// One reading of `/metrics`.
#[derive(Debug)]
struct Scrape {
    addr: String,
    at: Instant,
    samples: Vec<ParsedSample>,
}

async fn scrape(layout: &Layout) -> anyhow::Result<Scrape> {
    let addr = crate::cli::host_addr(layout)?;
    let token_path = layout.metrics_token_file();
    let token = std::fs::read_to_string(&token_path).with_context(|| {
        format!(
            "cannot read the metrics token at {} (run this as the host's user)",
            token_path.display()
        )
    })?;
    let req = Request::get("/metrics")
        .header("host", &addr)
        .header("authorization", format!("Bearer {}", token.trim()))
        .body(Full::new(Bytes::new()))?;
    let reply = crate::cli::request(&addr, req).await?;
    match reply.status {
        200 => {}
        404 => bail!("the host serves no metrics ([metrics] enabled = false in its config.toml)"),
        status => bail!(
            "the host answered {status} to /metrics: {}",
            String::from_utf8_lossy(&reply.body).trim()
        ),
    }
    let text = std::str::from_utf8(&reply.body).context("/metrics is not UTF-8")?;
    Ok(Scrape {
        addr,
        at: Instant::now(),
        samples: parse_text(text)?,
    })
}

impl Scrape {
    /// The value of `name` with every label of `labels`, if there is such a sample.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .map(|s| s.value)
    }

    /// The values of `label` among the samples of `name`, in order, once each.
    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut seen = Vec::new();
        for s in self.samples.iter().filter(|s| s.name == name) {
            if let Some(v) = s.label(label) {
                if !seen.iter().any(|x: &String| x == v) {
                    seen.push(v.to_owned());
                }
            }
        }
        seen
    }

    /// A function's duration histogram: (upper bound, cumulative count), `+Inf` last.
    fn buckets(&self, function: &str) -> Vec<(f64, f64)> {
        let mut b: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == "lambkin_function_duration_seconds_bucket"
                    && s.label("function") == Some(function)
            })
            .filter_map(|s| {
                let le = match s.label("le")? {
                    "+Inf" => f64::INFINITY,
                    le => le.parse().ok()?,
                };
                Some((le, s.value))
            })
            .collect();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        b
    }
}

/// Invocations of a function so far, by outcome.
fn invocations(s: &Scrape, function: &str) -> BTreeMap<&'static str, f64> {
    ["success", "function_error", "timeout", "throttled"]
        .into_iter()
        .map(|outcome| {
            let v = s
                .value(
                    "lambkin_function_invocations_total",
                    &[("function", function), ("outcome", outcome)],
                )
                .unwrap_or(0.0);
            (outcome, v)
        })
        .collect()
}

fn render(now: &Scrape, before: Option<&Scrape>) -> String {
    let mut out = String::new();
    let elapsed = before.map(|b| now.at.duration_since(b.at).as_secs_f64());
    let rate = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        let (b, secs) = (before?, elapsed?);
        let delta = now.value(name, labels)? - b.value(name, labels).unwrap_or(0.0);
        (secs > 0.0).then(|| delta.max(0.0) / secs)
    };
    let _ = write!(out, "lambkin top - {}", now.addr);
    if let Some(cpu) = rate("lambkin_host_cpu_seconds_total", &[]) {
        let _ = write!(out, "  host CPU {:.1}%", cpu * 100.0);
    }
    if let Some(rss) = now.value("lambkin_host_resident_memory_bytes", &[]) {
        let _ = write!(out, "  RSS {}", bytes(rss));
    }
    if let Some(ipc) = now.value("lambkin_ipc_connections", &[]) {
        let _ = write!(out, "  IPC connections {ipc}");
    }
    out.push('\n');
    match now.value("lambkin_mqtt_connected", &[]) {
        Some(up) => {
            let _ = writeln!(
                out,
                "MQTT {}  reconnects {}  spool {} messages, {}",
                if up > 0.0 {
                    "connected"
                } else {
                    "DISCONNECTED"
                },
                now.value("lambkin_mqtt_reconnects_total", &[])
                    .unwrap_or(0.0),
                now.value("lambkin_mqtt_spool_messages", &[]).unwrap_or(0.0),
                bytes(now.value("lambkin_mqtt_spool_bytes", &[]).unwrap_or(0.0)),
            );
        }
        None => out.push_str("MQTT not configured\n"),
    }
    let _ = writeln!(
        out,
        "pub/sub {} messages, {} dropped",
        now.value("lambkin_pubsub_messages_total", &[])
            .unwrap_or(0.0),
        now.value("lambkin_pubsub_dropped_total", &[])
            .unwrap_or(0.0)
    );
    out.push('\n');
    let latency = if before.is_some() {
        "last interval"
    } else {
        "since start"
    };
    let _ = writeln!(
        out,
        "{:<32} {:>8} {:>8} {:>7} {:>8} {:>9} {:>9} {:>9} {:>4} {:>4} {:>5} {:>5}",
        "FUNCTION",
        "INVOKES",
        "RATE/s",
        "ERRORS",
        "TIMEOUTS",
        "THROTTLED",
        "P50 ms",
        "P99 ms",
        "BUSY",
        "IDLE",
        "QUEUE",
        "COLD"
    );
    for f in now.label_values("lambkin_function_invocations_total", "function") {
        let counts = invocations(now, &f);
        let ran = counts["success"] + counts["function_error"] + counts["timeout"];
        let per_second = before.zip(elapsed).map(|(b, secs)| {
            let was = invocations(b, &f);
            let ran_before = was["success"] + was["function_error"] + was["timeout"];
            ((ran - ran_before).max(0.0)) / secs.max(f64::EPSILON)
        });
        let mut buckets = now.buckets(&f);
        if let Some(b) = before {
            let old = b.buckets(&f);
            for (bucket, was) in buckets.iter_mut().zip(old) {
                bucket.1 = (bucket.1 - was.1).max(0.0);
            }
        }
        let ms = |q: f64| {
            quantile(q, &buckets).map_or_else(|| "-".to_owned(), |s| format!("{:.1}", s * 1000.0))
        };
        let gauge = |name: &str| {
            now.value(name, &[("function", &f)])
                .map_or_else(|| "-".to_owned(), |v| v.to_string())
        };
        let _ = writeln!(
            out,
            "{:<32} {:>8} {:>8} {:>7} {:>8} {:>9} {:>9} {:>9} {:>4} {:>4} {:>5} {:>5}",
            truncate(&f, 32),
            ran,
            per_second.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}")),
            counts["function_error"],
            counts["timeout"],
            counts["throttled"],
            ms(0.5),
            ms(0.99),
            gauge("lambkin_function_instances_busy"),
            gauge("lambkin_function_instances_idle"),
            gauge("lambkin_function_queue_depth"),
            now.value("lambkin_function_cold_starts_total", &[("function", &f)])
                .unwrap_or(0.0),
        );
    }
    let _ = writeln!(out, "(latency: {latency})\n");
    let _ = writeln!(
        out,
        "{:<40} {:<9} {:>8} {:>6} {:>22} {:>22}",
        "COMPONENT", "STATE", "RESTARTS", "ERRORS", "MQTT SENT", "MQTT RECEIVED"
    );
    for c in now.label_values("lambkin_component_state", "component") {
        let state = now
            .samples
            .iter()
            .find(|s| {
                s.name == "lambkin_component_state"
                    && s.label("component") == Some(c.as_str())
                    && s.value > 0.0
            })
            .and_then(|s| s.label("state"))
            .unwrap_or("-");
        let traffic = |messages: &str, b: &str| {
            let l = [("component", c.as_str())];
            match (now.value(messages, &l), now.value(b, &l)) {
                (Some(m), Some(b)) => format!("{m} msgs, {}", bytes(b)),
                _ => "-".to_owned(),
            }
        };
        let _ = writeln!(
            out,
            "{:<40} {:<9} {:>8} {:>6} {:>22} {:>22}",
            truncate(&c, 40),
            state,
            now.value("lambkin_component_restarts_total", &[("component", &c)])
                .unwrap_or(0.0),
            now.value("lambkin_component_errors_total", &[("component", &c)])
                .unwrap_or(0.0),
            traffic(
                "lambkin_mqtt_sent_messages_total",
                "lambkin_mqtt_sent_bytes_total"
            ),
            traffic(
                "lambkin_mqtt_received_messages_total",
                "lambkin_mqtt_received_bytes_total"
            ),
        );
    }
    out
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width - 1).collect();
        t.push('~');
        t
    }
}

/// Bytes in B, KiB or MiB.
fn bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b} B")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scrape(text: &str, at: Instant) -> Scrape {
        Scrape {
            addr: "127.0.0.1:3001".into(),
            at,
            samples: parse_text(text).unwrap(),
        }
    }

    const ONE: &str = r#"
lambkin_function_invocations_total{function="f",outcome="success"} 8
lambkin_function_invocations_total{function="f",outcome="function_error"} 2
lambkin_function_invocations_total{function="f",outcome="timeout"} 0
lambkin_function_invocations_total{function="f",outcome="throttled"} 1
lambkin_function_duration_seconds_bucket{function="f",le="0.001"} 5
lambkin_function_duration_seconds_bucket{function="f",le="0.01"} 10
lambkin_function_duration_seconds_bucket{function="f",le="+Inf"} 10
lambkin_function_instances_busy{function="f"} 1
lambkin_component_state{component="c",state="RUNNING"} 1
lambkin_component_state{component="c",state="ERRORED"} 0
lambkin_mqtt_sent_messages_total{component="c"} 4
lambkin_mqtt_sent_bytes_total{component="c"} 2048
"#;

    #[test]
    fn a_frame_shows_functions_and_components() {
        let frame = render(&scrape(ONE, Instant::now()), None);
        let line = frame.lines().find(|l| l.starts_with("f ")).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], "10", "{frame}");
        assert_eq!(cols[2], "-");
        assert_eq!(cols[3], "2");
        assert_eq!(cols[5], "1");
        assert_eq!(cols[6], "1.0", "p50 {frame}");
        let c = frame.lines().find(|l| l.starts_with("c ")).unwrap();
        assert!(
            c.contains("RUNNING") && c.contains("4 msgs, 2.0 KiB"),
            "{c}"
        );
        assert!(!frame.contains('\x1b'));
        assert!(frame.contains("MQTT not configured"));
    }

    #[test]
    fn rates_come_from_two_scrapes() {
        let t = Instant::now();
        let before = scrape(ONE, t);
        let now = scrape(
            &ONE.replace("outcome=\"success\"} 8", "outcome=\"success\"} 18"),
            t + Duration::from_secs(2),
        );
        let frame = render(&now, Some(&before));
        let line = frame.lines().find(|l| l.starts_with("f ")).unwrap();
        assert_eq!(line.split_whitespace().nth(2), Some("5.0"), "{frame}");
    }
}
