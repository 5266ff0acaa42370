//! `/metrics`: what the host counts, gathered at each scrape into `lambkin_proto::metrics`
//! families. The paths that count only touch [`counters`] (atomics); everything else (states,
//! queues, the spool, the host's CPU and memory) is read here, when Prometheus asks.

pub mod counters;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lambkin_proto::metrics::{Family, Kind, Value};

use crate::components::engine::Engine;
use crate::components::lifecycle::State;
use crate::lambda::registry::Registry;
use crate::mqtt::Mqtt;
use crate::pubsub::PubSubHandle;
use counters::{Gauge, HistogramSnapshot};

/// How long a scrape waits for all the function actors' occupancy together.
const OCCUPANCY_WAIT: Duration = Duration::from_secs(1);

/// What `/metrics` reads beyond the API's own state, and the token it takes.
#[derive(Debug)]
pub struct Exporter {
    /// The bearer token (`ROOT/state/metrics.token`).
    pub token: String,
    pub mqtt: Option<Mqtt>,
    pub ipc_connections: Arc<Gauge>,
}

/// What a scrape reads from the host's services.
pub(crate) struct Sources<'a> {
    pub registry: &'a Registry,
    pub engine: &'a Engine,
    pub pubsub: &'a PubSubHandle,
    pub exporter: &'a Exporter,
}

/// Every family, read now.
pub(crate) async fn gather(s: Sources<'_>) -> Vec<Family> {
    let mut out = functions(s.registry).await;
    out.extend(components(s.engine));
    out.extend(host_wide(&s).await);
    out.extend(process());
    out
}

fn labels(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn histogram(h: &HistogramSnapshot) -> Value {
    Value::Histogram {
        buckets: h.buckets.clone(),
        count: h.count,
        sum: h.sum_seconds,
    }
}

fn count(n: u64) -> Value {
    Value::Counter(n as f64)
}

fn gauge(n: impl Into<f64>) -> Value {
    Value::Gauge(n.into())
}

async fn functions(registry: &Registry) -> Vec<Family> {
    let mut invocations = Family::new(
        "lambkin_function_invocations_total",
        "Invocations by outcome: success, function_error (the function answered an error, or its runtime failed to start or exited), timeout, throttled (refused: the queue was full), delegated (taken by the function's remote target).",
        Kind::Counter,
    );
    let mut duration = Family::new(
        "lambkin_function_duration_seconds",
        "How long invocations that ran took, from the event handed to the runtime to its answer.",
        Kind::Histogram,
    );
    let mut init = Family::new(
        "lambkin_function_init_duration_seconds",
        "How long instances took from their start to their first request for an event.",
        Kind::Histogram,
    );
    let mut cold = Family::new(
        "lambkin_function_cold_starts_total",
        "Invocations that waited for their instance's init.",
        Kind::Counter,
    );
    let mut busy = Family::new(
        "lambkin_function_instances_busy",
        "Instances running an invocation.",
        Kind::Gauge,
    );
    let mut idle = Family::new(
        "lambkin_function_instances_idle",
        "Instances waiting for an invocation.",
        Kind::Gauge,
    );
    let mut queued = Family::new(
        "lambkin_function_queue_depth",
        "Invocations waiting for an instance.",
        Kind::Gauge,
    );
    let deadline = Instant::now() + OCCUPANCY_WAIT;
    for (name, m, handle) in registry.metrics() {
        let f = name.as_str();
        for (outcome, counter) in [
            ("success", &m.success),
            ("function_error", &m.function_error),
            ("timeout", &m.timeout),
            ("throttled", &m.throttled),
            ("delegated", &m.delegated),
        ] {
            invocations.push(
                labels(&[("function", f), ("outcome", outcome)]),
                count(counter.get()),
            );
        }
        duration.push(
            labels(&[("function", f)]),
            histogram(&m.duration.snapshot()),
        );
        init.push(
            labels(&[("function", f)]),
            histogram(&m.init_duration.snapshot()),
        );
        cold.push(labels(&[("function", f)]), count(m.cold_starts.get()));
        let wait = deadline.saturating_duration_since(Instant::now());
        if let Some(o) = handle.occupancy(wait).await {
            busy.push(labels(&[("function", f)]), gauge(o.busy as f64));
            idle.push(labels(&[("function", f)]), gauge(o.idle as f64));
            queued.push(labels(&[("function", f)]), gauge(o.queued as f64));
        }
    }
    vec![invocations, duration, init, cold, busy, idle, queued]
}

const STATES: [State; 8] = [
    State::New,
    State::Installed,
    State::Starting,
    State::Running,
    State::Stopping,
    State::Finished,
    State::Errored,
    State::Broken,
];

fn components(engine: &Engine) -> Vec<Family> {
    let board = engine.board();
    let mut state = Family::new(
        "lambkin_component_state",
        "1 for the component's lifecycle state (label state), 0 for the others.",
        Kind::Gauge,
    );
    let mut restarts = Family::new(
        "lambkin_component_restarts_total",
        "Times the component started again after it had run, while this host runs.",
        Kind::Counter,
    );
    let mut errors = Family::new(
        "lambkin_component_errors_total",
        "Times the component failed (entered ERRORED, or BROKEN other than from ERRORED), while this host runs.",
        Kind::Counter,
    );
    for (name, status) in board.components.iter() {
        for s in STATES {
            state.push(
                labels(&[("component", name), ("state", s.as_str())]),
                gauge(u8::from(status.state == s)),
            );
        }
        let counts = board.counts.get(name).copied().unwrap_or_default();
        restarts.push(labels(&[("component", name)]), count(counts.restarts));
        errors.push(labels(&[("component", name)]), count(counts.errors));
    }
    let d = engine.deployment_counters();
    let deployments = Family::new(
        "lambkin_deployments_total",
        "Deployments ended while this host runs, by outcome.",
        Kind::Counter,
    )
    .with(
        labels(&[("outcome", "succeeded")]),
        count(d.succeeded.get()),
    )
    .with(labels(&[("outcome", "failed")]), count(d.failed.get()))
    .with(labels(&[("outcome", "canceled")]), count(d.canceled.get()));
    vec![state, restarts, errors, deployments]
}

async fn host_wide(s: &Sources<'_>) -> Vec<Family> {
    let p = s.pubsub.counters();
    let mut out = vec![
        Family::new(
            "lambkin_pubsub_messages_total",
            "Messages published on local pub/sub.",
            Kind::Counter,
        )
        .with(vec![], count(p.messages.get())),
        Family::new(
            "lambkin_pubsub_dropped_total",
            "Messages dropped from a local subscriber's full queue.",
            Kind::Counter,
        )
        .with(vec![], count(p.dropped.get())),
        Family::new(
            "lambkin_ipc_connections",
            "Greengrass IPC connections open.",
            Kind::Gauge,
        )
        .with(vec![], gauge(s.exporter.ipc_connections.get() as f64)),
    ];
    let Some(mqtt) = &s.exporter.mqtt else {
        return out;
    };
    let c = mqtt.counters();
    out.push(
        Family::new(
            "lambkin_mqtt_connected",
            "1 while the MQTT connection is up.",
            Kind::Gauge,
        )
        .with(vec![], gauge(u8::from(mqtt.is_connected()))),
    );
    out.push(
        Family::new(
            "lambkin_mqtt_reconnects_total",
            "MQTT connections made after the first.",
            Kind::Counter,
        )
        .with(vec![], count(c.reconnects.get())),
    );
    let spool = {
        let mqtt = mqtt.clone();
        tokio::task::spawn_blocking(move || mqtt.spool_usage()).await
    };
    if let Ok(Ok((messages, bytes))) = spool {
        out.push(
            Family::new(
                "lambkin_mqtt_spool_messages",
                "Messages in the spool, waiting for the broker.",
                Kind::Gauge,
            )
            .with(vec![], gauge(messages as f64)),
        );
        out.push(
            Family::new(
                "lambkin_mqtt_spool_bytes",
                "Bytes in the spool, as counted against its max_size_bytes.",
                Kind::Gauge,
            )
            .with(vec![], gauge(bytes as f64)),
        );
    }
    let mut sent = Family::new(
        "lambkin_mqtt_sent_messages_total",
        "Messages a component published to the broker (PublishToIoTCore, accepted into the spool).",
        Kind::Counter,
    );
    let mut sent_bytes = Family::new(
        "lambkin_mqtt_sent_bytes_total",
        "Payload bytes a component published to the broker (PublishToIoTCore, accepted into the spool).",
        Kind::Counter,
    );
    let mut received = Family::new(
        "lambkin_mqtt_received_messages_total",
        "Messages from the broker delivered to a component (SubscribeToIoTCore, IOT_CORE triggers).",
        Kind::Counter,
    );
    let mut received_bytes = Family::new(
        "lambkin_mqtt_received_bytes_total",
        "Payload bytes from the broker delivered to a component (SubscribeToIoTCore, IOT_CORE triggers).",
        Kind::Counter,
    );
    for (component, t) in c.traffic.all() {
        let l = labels(&[("component", &component)]);
        sent.push(l.clone(), count(t.sent_messages.get()));
        sent_bytes.push(l.clone(), count(t.sent_bytes.get()));
        received.push(l.clone(), count(t.received_messages.get()));
        received_bytes.push(l, count(t.received_bytes.get()));
    }
    out.extend([sent, sent_bytes, received, received_bytes]);
    out
}

/// The host process's CPU time and resident memory, from `/proc/self`.
fn process() -> Vec<Family> {
    let mut out = Vec::new();
    if let Some(seconds) = cpu_seconds() {
        out.push(
            Family::new(
                "lambkin_host_cpu_seconds_total",
                "CPU time the host process spent, user and system (/proc/self/stat).",
                Kind::Counter,
            )
            .with(vec![], Value::Counter(seconds)),
        );
    }
    if let Some(bytes) = resident_bytes() {
        out.push(
            Family::new(
                "lambkin_host_resident_memory_bytes",
                "The host process's resident memory (/proc/self/status VmRSS).",
                Kind::Gauge,
            )
            .with(vec![], gauge(bytes as f64)),
        );
    }
    out
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields are counted after its `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)?;
    Some((utime + stime) as f64 / ticks as f64)
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_its_own_cpu_and_memory() {
        assert!(cpu_seconds().unwrap() >= 0.0);
        assert!(resident_bytes().unwrap() > 0);
    }
}
