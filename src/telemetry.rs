//! Distributions the operations endpoint exports as Prometheus histograms: how long a batch
//! takes to commit, how many operations it carries, how long the sidecar takes to answer an
//! event, and how often a batch had to be retried.
//!
//! Recording is a few relaxed atomic additions, cheap enough for every event. The figures live
//! in a process-wide registry keyed by connector id (as the `prometheus` crate's default
//! registry does), so the pipeline's stages record without being handed anything new and the
//! endpoint finds them by the connector's id.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

/// Upper bounds of the latency buckets, in seconds.
const SECONDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Upper bounds of the batch-size buckets, in operations.
const OPERATIONS: &[f64] = &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0];
/// Sums are kept in millionths, so that an integer atomic holds them.
const SUM_SCALE: f64 = 1e6;

/// A histogram with fixed buckets.
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is above every bound.
    counts: Vec<AtomicU64>,
    sum_millionths: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum_millionths: AtomicU64::new(0) }
    }

    pub fn observe(&self, value: f64) {
        let bucket = self.bounds.iter().position(|&bound| value <= bound).unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_millionths.fetch_add((value.max(0.0) * SUM_SCALE) as u64, Relaxed);
    }

    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    /// Appends the `_bucket`, `_sum` and `_count` lines of `name` with label `connector`.
    fn render(&self, out: &mut String, name: &str, connector: &str) {
        let mut cumulative = 0;
        let bounds = self.bounds.iter().map(|b| b.to_string()).chain(std::iter::once("+Inf".to_owned()));
        for (bound, count) in bounds.zip(&self.counts) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{connector=\"{connector}\",le=\"{bound}\"}} {cumulative}");
        }
        let sum = self.sum_millionths.load(Relaxed) as f64 / SUM_SCALE;
        let _ = writeln!(out, "{name}_sum{{connector=\"{connector}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{connector=\"{connector}\"}} {cumulative}");
    }
}

/// What one connector records.
pub struct ConnectorTelemetry {
    /// The connector's id, for the trace spans its stages open.
    pub connector: Arc<str>,
    /// Time to apply and commit a batch that succeeded (the last attempt).
    pub batch_apply: Histogram,
    /// Operations per committed batch.
    pub batch_operations: Histogram,
    /// From sending an event to the sidecar to its answer.
    pub sidecar_round_trip: Histogram,
    /// Attempts at a batch that failed with a transient error and were retried.
    pub batch_retries: AtomicU64,
    /// The sidecar as the partition streams see it: one warning per outage.
    pub sidecar_outage: crate::outage::Outage,
    /// The target as the writers see it: one warning per outage.
    pub target_outage: crate::outage::Outage,
}

impl ConnectorTelemetry {
    fn new(connector: &str) -> Self {
        Self {
            connector: connector.into(),
            batch_apply: Histogram::new(SECONDS),
            batch_operations: Histogram::new(OPERATIONS),
            sidecar_round_trip: Histogram::new(SECONDS),
            batch_retries: AtomicU64::new(0),
            sidecar_outage: Default::default(),
            target_outage: Default::default(),
        }
    }

    /// Appends the lines of series `index` of [`SERIES`] for this connector: `name` is the
    /// series' full name, `connector` the label value, already escaped.
    pub fn render_series(&self, index: usize, out: &mut String, name: &str, connector: &str) {
        match index {
            0 => self.batch_apply.render(out, name, connector),
            1 => self.batch_operations.render(out, name, connector),
            2 => self.sidecar_round_trip.render(out, name, connector),
            _ => {
                let _ = writeln!(out, "{name}{{connector=\"{connector}\"}} {}", self.batch_retries.load(Relaxed));
            }
        }
    }
}

/// Name, type and help of each series [`ConnectorTelemetry::render_series`] writes.
pub const SERIES: [(&str, &str, &str); 4] = [
    ("batch_apply_seconds", "histogram", "Time to apply and commit a batch, checkpoints included (the attempt that succeeded)."),
    ("batch_operations", "histogram", "Operations per committed batch."),
    ("sidecar_round_trip_seconds", "histogram", "From sending an event to the sidecar to its answer."),
    ("batch_retries_total", "counter", "Batch attempts that failed with a transient error and were retried."),
];

static REGISTRY: LazyLock<Mutex<HashMap<String, Arc<ConnectorTelemetry>>>> = LazyLock::new(Default::default);

/// The telemetry of connector `id`, created on first use (a connector restarted in the same
/// process goes on counting, as Prometheus counters should).
pub fn for_connector(id: &str) -> Arc<ConnectorTelemetry> {
    REGISTRY.lock().expect("telemetry registry").entry(id.to_owned()).or_insert_with(|| Arc::new(ConnectorTelemetry::new(id))).clone()
}

/// The telemetry of connector `id`, if it recorded anything.
pub fn of_connector(id: &str) -> Option<Arc<ConnectorTelemetry>> {
    REGISTRY.lock().expect("telemetry registry").get(id).cloned()
}

/// Drops the telemetry of a deleted connector (a connector created again under the same id
/// starts from zero).
pub fn forget(id: &str) {
    REGISTRY.lock().expect("telemetry registry").remove(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_sum_and_count_follow() {
        let h = Histogram::new(&[1.0, 10.0]);
        for v in [0.5, 1.0, 3.0, 20.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "c");
        assert_eq!(
            out,
            "x_bucket{connector=\"c\",le=\"1\"} 2\nx_bucket{connector=\"c\",le=\"10\"} 3\nx_bucket{connector=\"c\",le=\"+Inf\"} 4\nx_sum{connector=\"c\"} 24.5\nx_count{connector=\"c\"} 4\n"
        );
    }
}
