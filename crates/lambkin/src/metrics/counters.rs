//! The counters the host's paths update: plain atomics (relaxed: each is a tally read on its
//! own), no lock and no allocation per update. A leaf: the function actor, instances, IPC,
//! pub/sub and MQTT reach it; only the scrape (`super`) reads everything.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// A monotonic count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The upper bounds of the duration histograms, in microseconds: from 100 µs (an echo
/// function on a warm instance) to 15 min (Lambda's longest timeout).
pub const DURATION_BOUNDS_MICROS: [u64; 20] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    900_000_000,
];

/// A duration histogram on [`DURATION_BOUNDS_MICROS`]: one atomic per bucket (not
/// cumulative; the scrape adds them up) and the sum in microseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    /// One per bound, and the last for what lies above every bound.
    buckets: [AtomicU64; DURATION_BOUNDS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

/// What a scrape reads of a [`Histogram`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, cumulative count) for every finite bound.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let at = DURATION_BOUNDS_MICROS.partition_point(|&bound| bound < micros);
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(DURATION_BOUNDS_MICROS.len());
        for (bound, count) in DURATION_BOUNDS_MICROS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound as f64 / 1e6, cumulative));
        }
        let count = cumulative + self.buckets[DURATION_BOUNDS_MICROS.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// How an invocation that ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The function answered an error (`X-Amz-Function-Error`), or its runtime failed to
    /// start or exited.
    FunctionError,
    /// The function's timeout ended it.
    Timeout,
}

/// A function's counters, kept across its reconfigurations (a new configuration keeps the
/// same `Arc`), gone with the function.
#[derive(Debug, Default)]
pub struct FunctionMetrics {
    pub success: Counter,
    pub function_error: Counter,
    pub timeout: Counter,
    /// Refused: the queue was full.
    pub throttled: Counter,
    /// Taken by the function's remote target (`Greengrass.Delegation`): answered there, or,
    /// for an `Event`, accepted there.
    pub delegated: Counter,
    /// Invocations that waited for their instance's init.
    pub cold_starts: Counter,
    pub duration: Histogram,
    pub init_duration: Histogram,
}

impl FunctionMetrics {
    /// An invocation that ran on an instance ended.
    pub fn finished(&self, outcome: Outcome, duration: Duration, cold: bool) {
        match outcome {
            Outcome::Success => self.success.inc(),
            Outcome::FunctionError => self.function_error.inc(),
            Outcome::Timeout => self.timeout.inc(),
        }
        if cold {
            self.cold_starts.inc();
        }
        self.duration.observe(duration);
    }
}

/// One component's messages and payload bytes to and from the MQTT broker.
#[derive(Debug, Default)]
pub struct Traffic {
    pub sent_messages: Counter,
    pub sent_bytes: Counter,
    pub received_messages: Counter,
    pub received_bytes: Counter,
}

/// MQTT traffic by component: what each published through IPC (accepted into the spool) and
/// what reached it (IPC subscriptions, IOT_CORE triggers), payload bytes.
#[derive(Debug, Default)]
pub struct TrafficByComponent {
    by_component: RwLock<BTreeMap<String, Arc<Traffic>>>,
}

impl TrafficByComponent {
    /// The counters of `component`, made at its first message.
    pub fn of(&self, component: &str) -> Arc<Traffic> {
        if let Some(t) = self
            .by_component
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(component)
        {
            return t.clone();
        }
        self.by_component
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(component.to_owned())
            .or_default()
            .clone()
    }

    pub fn sent(&self, component: &str, bytes: usize) {
        let t = self.of(component);
        t.sent_messages.inc();
        t.sent_bytes.add(bytes as u64);
    }

    pub fn received(&self, component: &str, bytes: usize) {
        let t = self.of(component);
        t.received_messages.inc();
        t.received_bytes.add(bytes as u64);
    }

    pub fn all(&self) -> Vec<(String, Arc<Traffic>)> {
        self.by_component
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The MQTT connection's own counters.
#[derive(Debug, Default)]
pub struct MqttCounters {
    /// Connections made after the first.
    pub reconnects: Counter,
    pub traffic: TrafficByComponent,
}

/// Local pub/sub's counters.
#[derive(Debug, Default)]
pub struct PubSubCounters {
    /// Messages published.
    pub messages: Counter,
    /// Messages dropped from a subscriber's full queue.
    pub dropped: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(3600));
        let s = h.snapshot();
        assert_eq!(s.buckets[0], (0.0001, 1));
        assert_eq!(s.buckets[1], (0.00025, 2));
        assert_eq!(s.buckets.last().map(|b| b.1), Some(2));
        assert_eq!(s.count, 3);
        assert!((s.sum_seconds - 3600.000201).abs() < 1e-9);
    }

    #[test]
    fn traffic_is_counted_per_component() {
        let t = TrafficByComponent::default();
        t.sent("a", 10);
        t.sent("a", 5);
        t.received("b", 7);
        let all = t.all();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].1.sent_bytes.get(), 15);
        assert_eq!(all[0].1.sent_messages.get(), 2);
        assert_eq!(all[1].1.received_bytes.get(), 7);
    }
}
