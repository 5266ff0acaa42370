//! The messaging benchmark's results and their table: per client pair and pattern, Lambkin's
//! IPC pub/sub beside mosquitto, with the ratios.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{anyhow, bail};

/// How much every case does.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub latency: usize,
    pub interval_us: u64,
    pub throughput: usize,
    pub window: usize,
}

/// Time between two paced messages to the function (it runs one invocation at a time).
pub const TRIGGER_INTERVAL_US: u64 = 10_000;

/// Which clients a case uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum ClientKind {
    /// awsiotsdk on IPC, paho-mqtt on MQTT.
    Python,
    /// The bench's IPC client on IPC, rumqttc on MQTT.
    Rust,
}

impl ClientKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Python => "Python",
            Self::Rust => "Rust",
        }
    }

    fn pair(self) -> &'static str {
        match self {
            Self::Python => "Python: awsiotsdk IPC / paho-mqtt",
            Self::Rust => "Rust: lambkin-proto IPC / rumqttc",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Broker {
    Lambkin,
    Mosquitto,
}

impl Broker {
    pub fn label(self) -> &'static str {
        match self {
            Self::Lambkin => "Lambkin IPC",
            Self::Mosquitto => "mosquitto",
        }
    }
}

/// One measured combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Case {
    pub subscribers: usize,
    pub kind: ClientKind,
    pub broker: Broker,
}

/// What one case measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Latency-phase deliveries: publish call → subscriber callback, pooled over subscribers.
    pub p50_us: f64,
    pub p99_us: f64,
    pub latency_received: usize,
    pub latency_expected: usize,
    /// Burst deliveries per second to all subscribers together, from the burst's first
    /// publish to its last delivery.
    pub delivered_per_second: f64,
    /// Burst deliveries over burst messages × subscribers.
    pub delivered_fraction: f64,
    /// The publisher's own rate during the burst.
    pub published_per_second: f64,
    /// The subscriber processes' CPU time per message they received.
    pub subscriber_cpu_us_per_delivery: f64,
    /// The publisher process's CPU time per message it published.
    pub publisher_cpu_us_per_publish: f64,
    /// The broker's CPU time (user + system) over the case, per delivered message.
    pub broker_cpu_us_per_delivery: f64,
}

fn u64_field(v: &serde_json::Value, name: &str) -> anyhow::Result<u64> {
    v.get(name)
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| anyhow!("a client result has no {name}: {v}"))
}

impl Outcome {
    /// From the publisher's and the subscribers' JSON results.
    pub fn from_results(
        plan: &Plan,
        subscribers: usize,
        publisher: &serde_json::Value,
        results: &[serde_json::Value],
        broker_cpu_ns: u64,
    ) -> anyhow::Result<Self> {
        let mut latencies: Vec<u64> = Vec::new();
        let mut received = 0u64;
        let mut first_send = u64::MAX;
        let mut subscriber_cpu = 0.0;
        let mut last_recv = 0u64;
        for r in results {
            subscriber_cpu += r
                .get("cpu_seconds")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0);
            let bad = u64_field(r, "bad")?;
            if bad > 0 {
                bail!("a subscriber received {bad} malformed messages");
            }
            let lat = r
                .get("latency_ns")
                .and_then(serde_json::Value::as_array)
                .ok_or_else(|| anyhow!("a subscriber result has no latency_ns"))?;
            latencies.extend(lat.iter().filter_map(serde_json::Value::as_u64));
            let n = u64_field(r, "tp_received")?;
            if n > 0 {
                received += n;
                first_send = first_send.min(u64_field(r, "tp_first_send_ns")?);
                last_recv = last_recv.max(u64_field(r, "tp_last_recv_ns")?);
            }
        }
        if latencies.is_empty() {
            bail!("no latency-phase message arrived");
        }
        if received == 0 {
            bail!("no burst message arrived");
        }
        latencies.sort_unstable();
        let pct = |p: f64| {
            let rank = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
            latencies[rank - 1] as f64 / 1000.0
        };
        let span_s = last_recv.saturating_sub(first_send) as f64 / 1e9;
        let published_seconds = publisher
            .get("throughput_seconds")
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| anyhow!("the publisher's result has no throughput_seconds"))?;
        let deliveries = received + latencies.len() as u64;
        let publisher_cpu = publisher
            .get("cpu_seconds")
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| anyhow!("the publisher's result has no cpu_seconds"))?;
        let publishes = u64_field(publisher, "published")?.max(1);
        Ok(Self {
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            latency_received: latencies.len(),
            latency_expected: plan.latency * subscribers,
            delivered_per_second: received as f64 / span_s.max(1e-9),
            delivered_fraction: received as f64 / (plan.throughput * subscribers) as f64,
            published_per_second: plan.throughput as f64 / published_seconds.max(1e-9),
            subscriber_cpu_us_per_delivery: subscriber_cpu * 1e6 / deliveries as f64,
            publisher_cpu_us_per_publish: publisher_cpu * 1e6 / publishes as f64,
            broker_cpu_us_per_delivery: broker_cpu_ns as f64 / 1e3 / deliveries as f64,
        })
    }
}

/// The MQTT → function measurement: (p50, p99) in µs of each path.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// paho → mosquitto → paho.
    pub broker: (f64, f64),
    /// paho → mosquitto → Lambkin's MQTT connection → IOT_CORE trigger → handler called.
    pub to_handler: (f64, f64),
    /// The same, then the handler's PublishToIoTCore back through mosquitto to paho.
    pub round_trip: (f64, f64),
    pub broker_count: usize,
    pub handler_count: usize,
    pub expected: usize,
}

fn percentiles(mut values: Vec<u64>) -> anyhow::Result<(f64, f64)> {
    if values.is_empty() {
        bail!("no sample");
    }
    values.sort_unstable();
    let pct = |p: f64| {
        let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1] as f64 / 1000.0
    };
    Ok((pct(0.50), pct(0.99)))
}

fn samples(v: &serde_json::Value, name: &str) -> anyhow::Result<Vec<u64>> {
    Ok(v.get(name)
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| anyhow!("the trigger client's result has no {name}"))?
        .iter()
        .filter_map(serde_json::Value::as_u64)
        .collect())
}

impl Trigger {
    pub fn from_result(plan: &Plan, v: &serde_json::Value) -> anyhow::Result<Self> {
        let broker = samples(v, "broker_ns")?;
        let to_handler = samples(v, "to_handler_ns")?;
        let round_trip = samples(v, "round_trip_ns")?;
        Ok(Self {
            broker_count: broker.len(),
            handler_count: to_handler.len(),
            expected: plan.latency,
            broker: percentiles(broker).map_err(|_| anyhow!("no message reached paho"))?,
            to_handler: percentiles(to_handler)
                .map_err(|_| anyhow!("the function answered no message"))?,
            round_trip: percentiles(round_trip)?,
        })
    }
}

/// Everything one run measured.
#[derive(Debug)]
pub struct Report {
    pub trigger: Option<Trigger>,
    pub plan: Plan,
    pub subscribers: Vec<usize>,
    pub outcomes: BTreeMap<Case, Outcome>,
    pub versions: Vec<String>,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub kept: Option<PathBuf>,
}

fn rate(v: f64) -> String {
    format!("{v:.0}")
}

fn lat(o: &Outcome) -> String {
    format!("{:.0} / {:.0}", o.p50_us, o.p99_us)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".to_owned()
    }
}

pub fn render(r: &Report) -> String {
    let header = [
        "Clients",
        "Pattern",
        "Lambkin msgs/s",
        "mosquitto msgs/s",
        "Throughput Lambkin/mosquitto",
        "Lambkin p50 / p99 µs",
        "mosquitto p50 / p99 µs",
        "p50 Lambkin/mosquitto",
    ];
    let right = [false, false, true, true, true, true, true, true];
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for &n in &r.subscribers {
        for kind in [ClientKind::Python, ClientKind::Rust] {
            let get = |broker| {
                r.outcomes.get(&Case {
                    subscribers: n,
                    kind,
                    broker,
                })
            };
            let (Some(l), Some(m)) = (get(Broker::Lambkin), get(Broker::Mosquitto)) else {
                continue;
            };
            rows.push([
                kind.pair().to_owned(),
                format!("1 → {n}"),
                rate(l.delivered_per_second),
                rate(m.delivered_per_second),
                ratio(l.delivered_per_second, m.delivered_per_second),
                lat(l),
                lat(m),
                ratio(l.p50_us, m.p50_us),
            ]);
            for (broker, o) in [(Broker::Lambkin, l), (Broker::Mosquitto, m)] {
                notes.push(format!(
                    "- {}, 1 → {n}, {}: burst delivered {:.1}% ({:.0} msgs/s published), \
                     paced delivered {}/{}; CPU: publisher {:.1} µs per publish, broker {:.1} µs \
                     and subscriber {:.1} µs per delivery",
                    kind.label(),
                    broker.label(),
                    o.delivered_fraction * 100.0,
                    o.published_per_second,
                    o.latency_received,
                    o.latency_expected,
                    o.publisher_cpu_us_per_publish,
                    o.broker_cpu_us_per_delivery,
                    o.subscriber_cpu_us_per_delivery
                ));
            }
        }
    }
    let mut out = crate::report::markdown_table(header, right, &rows);
    let p = &r.plan;
    let _ = write!(
        out,
        "\n\nOne publisher process and N subscriber processes per case, 256-byte messages, \
         QoS 0 on MQTT. Latency: {} messages paced {} µs apart, publish call → subscriber \
         callback (wall-clock timestamps in the payload), pooled over the subscribers. \
         Throughput: a burst of {} messages (IPC publishers keep at most {} awaiting their \
         response), deliveries to all subscribers per second from the burst's first publish \
         to its last delivery.\n\n",
        p.latency, p.interval_us, p.throughput, p.window
    );
    out.push_str(&notes.join("\n"));
    if let Some(t) = &r.trigger {
        let rows = [
            [
                "paho → mosquitto → paho".to_owned(),
                format!("{:.0} / {:.0}", t.broker.0, t.broker.1),
                "–".to_owned(),
                format!("{}/{}", t.broker_count, t.expected),
            ],
            [
                "paho → mosquitto → Lambkin IOT_CORE trigger → Python handler".to_owned(),
                format!("{:.0} / {:.0}", t.to_handler.0, t.to_handler.1),
                format!("{:+.0}", t.to_handler.0 - t.broker.0),
                format!("{}/{}", t.handler_count, t.expected),
            ],
            [
                "… and the handler's PublishToIoTCore back to paho".to_owned(),
                format!("{:.0} / {:.0}", t.round_trip.0, t.round_trip.1),
                format!("{:+.0}", t.round_trip.0 - t.broker.0),
                format!("{}/{}", t.handler_count, t.expected),
            ],
        ];
        out.push_str("\n\n");
        out.push_str(&crate::report::markdown_table(
            [
                "MQTT → function",
                "p50 / p99 µs",
                "p50 over the broker µs",
                "Arrived",
            ],
            [false, true, true, true],
            &rows,
        ));
        let _ =
            write!(
            out,
            "\n\n{} paced messages each ({} ms apart), QoS 0, 256-byte JSON; the handler notes \
             the wall clock when it is called and publishes it back (target: p50 to the \
             handler under 1 ms above the broker's own delivery: {}).",
            t.expected,
            TRIGGER_INTERVAL_US / 1000,
            if t.to_handler.0 - t.broker.0 < 1000.0 { "met" } else { "not met" }
        );
    }
    let _ = write!(
        out,
        "\n\nVersions: {}.\nLoad average (1, 5, 15 min) at the start: {}; at the end: {}.",
        r.versions.join("; "),
        r.loadavg_start,
        r.loadavg_end
    );
    if let Some(dir) = &r.kept {
        let _ = write!(out, "\nWork directory kept at {}.", dir.display());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            latency: 4,
            interval_us: 1000,
            throughput: 10,
            window: 8,
        }
    }

    #[test]
    fn outcome_pools_subscribers_and_counts_losses() {
        let publisher =
            serde_json::json!({"published": 15, "throughput_seconds": 0.5, "cpu_seconds": 0.015});
        let subs = [
            serde_json::json!({"latency_ns": [1000, 2000, 3000, 4000], "tp_received": 10,
                "tp_first_send_ns": 1_000_000_000u64, "tp_last_recv_ns": 1_500_000_000u64,
                "bad": 0, "cpu_seconds": 0.001}),
            serde_json::json!({"latency_ns": [5000, 6000, 7000, 100_000], "tp_received": 5,
                "tp_first_send_ns": 1_100_000_000u64, "tp_last_recv_ns": 2_000_000_000u64,
                "bad": 0, "cpu_seconds": 0.001}),
        ];
        let o = Outcome::from_results(&plan(), 2, &publisher, &subs, 46_000).unwrap();
        assert_eq!(o.p50_us, 4.0);
        assert_eq!(o.p99_us, 100.0);
        assert_eq!((o.latency_received, o.latency_expected), (8, 8));
        // 15 deliveries from the first send (1.0 s) to the last delivery (2.0 s).
        assert!((o.delivered_per_second - 15.0).abs() < 1e-9);
        assert!((o.delivered_fraction - 0.75).abs() < 1e-9);
        assert!((o.published_per_second - 20.0).abs() < 1e-9);
        // 46 µs of broker CPU over 23 deliveries; 15 ms of publisher CPU over 15 publishes.
        assert!((o.broker_cpu_us_per_delivery - 2.0).abs() < 1e-9);
        assert!((o.publisher_cpu_us_per_publish - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn malformed_or_missing_deliveries_fail_the_case() {
        let publisher =
            serde_json::json!({"published": 1, "throughput_seconds": 0.1, "cpu_seconds": 0.0});
        let bad = serde_json::json!({"latency_ns": [1], "tp_received": 1, "tp_first_send_ns": 1,
            "tp_last_recv_ns": 2, "bad": 3});
        assert!(Outcome::from_results(&plan(), 1, &publisher, &[bad], 0).is_err());
        let nothing = serde_json::json!({"latency_ns": [], "tp_received": 0,
            "tp_first_send_ns": 0, "tp_last_recv_ns": 0, "bad": 0});
        assert!(Outcome::from_results(&plan(), 1, &publisher, &[nothing], 0).is_err());
    }
}
