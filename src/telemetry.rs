//! Distributions `/metrics` exports as Prometheus histograms: how long a batch takes to
//! commit, how many operations it carries, how long the sidecar takes to answer an event, and
//! how often a batch had to be retried; and what a connector counts as it runs (events, the
//! partition streams on each sidecar replica).
//!
//! Recording is a few relaxed atomic additions, cheap enough for every event: the histograms
//! are our own (prometheus-client's `Histogram` takes a mutex per observation), and only their
//! encoding goes through prometheus-client ([`EncodeMetric`]), so `/metrics` writes them as it
//! writes every other family. The figures live in a process-wide registry keyed by connector id
//! (as the `prometheus` crate's default registry does), so the pipeline's stages record without
//! being handed anything new and the endpoint finds them by the connector's id.

use std::{
    collections::HashMap,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use crate::outage::{Dependency, Ongoing, Outage};

use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{MetricType, counter::Counter, gauge::Gauge},
    registry::Unit,
};

/// Upper bounds of the latency buckets, in seconds.
const SECONDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Upper bounds of the handover buckets (a partition's holder gone to its new holder), in seconds.
const HANDOVER_SECONDS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0];
/// Upper bounds of the batch-size buckets, in operations.
const OPERATIONS: &[f64] = &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0];
/// Sums are kept in millionths, so that an integer atomic holds them.
const SUM_SCALE: f64 = 1e6;

/// A histogram with fixed buckets.
#[derive(Debug)]
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
}

/// The `_bucket`, `_sum` and `_count` lines, written by prometheus-client's encoder. Each bucket
/// is read once and the count is their total, so `le="+Inf"` and `_count` always agree.
impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        let buckets: Vec<(f64, u64)> = self.bounds.iter().copied().zip(counts.iter().copied()).collect();
        let sum = self.sum_millionths.load(Relaxed) as f64 / SUM_SCALE;
        encoder.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
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
    pub batch_retries: Counter,
    /// The sidecar as the partition streams see it: one warning per outage.
    pub sidecar_outage: crate::outage::Outage,
    /// The target as the writers see it: one warning per outage.
    pub target_outage: crate::outage::Outage,
    /// The source as the router sees it: one warning per outage.
    pub source_outage: crate::outage::Outage,
    /// Events the source returned.
    pub events_read: Counter,
    /// Events the connector's filter (or the sidecar's `Describe` types) left out.
    pub events_filtered: Counter,
    /// Events read again after a restart that their partition had already committed.
    pub events_already_applied: Counter,
    /// Events sent to the sidecar and not answered yet, over every partition.
    pub in_flight: Gauge,
    /// Parked events the target holds for the connector: counted in the target when the
    /// connector starts, then kept up to date with what it parks and what this process's
    /// management API discards or replays.
    pub parked: Gauge,
    /// Partition streams open on each endpoint of the sidecar (its replicas).
    pub sidecar_streams: EndpointStreams,
    /// Partitions this process holds (`lease.scope: partitions`).
    pub partitions_held: Gauge,
    /// Live gateways sharing the connector's partitions, as this one last saw them.
    pub claim_members: Gauge,
    /// Times this process changed the set of partitions it runs.
    pub rebalances: Counter,
    /// For each partition this process took from another gateway: from that gateway's last
    /// renewal (its death, as near as the store knows) or hand-back to the take.
    pub partition_handover: Histogram,
    /// Statements this process sent to the claims store (the cost of coordination).
    pub coordination_statements: Counter,
}

/// How many partition streams each endpoint of a connector's sidecar holds now (streams it
/// accepted and that are not over). An endpoint the connector knows of holds a count, 0 too, so
/// a replica that gets no partition shows; one no longer resolved goes once its streams end.
#[derive(Debug, Default)]
pub struct EndpointStreams(parking_lot::Mutex<std::collections::BTreeMap<Arc<str>, i64>>);

impl EndpointStreams {
    /// A stream on `endpoint` was accepted.
    pub fn opened(&self, endpoint: &Arc<str>) {
        *self.0.lock().entry(endpoint.clone()).or_default() += 1;
    }

    /// A stream on `endpoint` is over.
    pub fn closed(&self, endpoint: &Arc<str>) {
        if let Some(count) = self.0.lock().get_mut(endpoint) {
            *count -= 1;
        }
    }

    /// The endpoints resolved now: each is listed, and those gone are dropped once idle.
    pub fn known(&self, endpoints: &[Arc<str>]) {
        let mut counts = self.0.lock();
        counts.retain(|endpoint, count| *count > 0 || endpoints.contains(endpoint));
        for endpoint in endpoints {
            counts.entry(endpoint.clone()).or_default();
        }
    }

    /// Each endpoint with its open streams, by endpoint.
    pub fn counts(&self) -> Vec<(Arc<str>, i64)> {
        self.0.lock().iter().map(|(endpoint, count)| (endpoint.clone(), *count)).collect()
    }
}

impl ConnectorTelemetry {
    /// Each dependency with its outage record, in the order operators see them.
    pub fn outages(&self) -> [(Dependency, &Outage); 3] {
        [(Dependency::Sidecar, &self.sidecar_outage), (Dependency::Target, &self.target_outage), (Dependency::Source, &self.source_outage)]
    }

    /// The first dependency in an outage now, with it.
    pub fn ongoing_outage(&self) -> Option<(Dependency, Ongoing)> {
        self.outages().into_iter().find_map(|(on, outage)| Some((on, outage.ongoing()?)))
    }

    fn new(connector: &str) -> Self {
        Self {
            connector: connector.into(),
            batch_apply: Histogram::new(SECONDS),
            batch_operations: Histogram::new(OPERATIONS),
            sidecar_round_trip: Histogram::new(SECONDS),
            batch_retries: Counter::default(),
            sidecar_outage: Default::default(),
            target_outage: Default::default(),
            source_outage: Default::default(),
            events_read: Counter::default(),
            events_filtered: Counter::default(),
            events_already_applied: Counter::default(),
            in_flight: Gauge::default(),
            parked: Gauge::default(),
            partitions_held: Gauge::default(),
            claim_members: Gauge::default(),
            rebalances: Counter::default(),
            partition_handover: Histogram::new(HANDOVER_SECONDS),
            coordination_statements: Counter::default(),
            sidecar_streams: EndpointStreams::default(),
        }
    }
}

/// One family a connector's telemetry exports: its name (without the gateway's prefix, the
/// unit and a counter's `_total`, which the encoder adds), unit, type, help, and which of the
/// connector's metrics it is.
pub struct Series {
    pub name: &'static str,
    pub unit: Option<Unit>,
    pub kind: MetricType,
    pub help: &'static str,
    pub metric: fn(&ConnectorTelemetry) -> &dyn EncodeMetric,
}

/// Every family of [`ConnectorTelemetry`], in the order `/metrics` lists them.
pub const SERIES: [Series; 14] = [
    Series {
        name: "batch_apply",
        unit: Some(Unit::Seconds),
        kind: MetricType::Histogram,
        help: "Time to apply and commit a batch, checkpoints included (the attempt that succeeded).",
        metric: |t| &t.batch_apply,
    },
    Series {
        name: "batch_operations",
        unit: None,
        kind: MetricType::Histogram,
        help: "Operations per committed batch.",
        metric: |t| &t.batch_operations,
    },
    Series {
        name: "sidecar_round_trip",
        unit: Some(Unit::Seconds),
        kind: MetricType::Histogram,
        help: "From sending an event to the sidecar to its answer.",
        metric: |t| &t.sidecar_round_trip,
    },
    Series {
        name: "batch_retries",
        unit: None,
        kind: MetricType::Counter,
        help: "Batch attempts that failed with a transient error and were retried.",
        metric: |t| &t.batch_retries,
    },
    Series {
        name: "events_read",
        unit: None,
        kind: MetricType::Counter,
        help: "Events the source returned (filtered and already applied ones included).",
        metric: |t| &t.events_read,
    },
    Series {
        name: "events_filtered",
        unit: None,
        kind: MetricType::Counter,
        help: "Events read and left out by the connector's filter or the types the sidecar's Describe named.",
        metric: |t| &t.events_filtered,
    },
    Series {
        name: "events_already_applied",
        unit: None,
        kind: MetricType::Counter,
        help: "Events read again after a restart or re-plan that their partition had already committed.",
        metric: |t| &t.events_already_applied,
    },
    Series {
        name: "events_in_flight",
        unit: None,
        kind: MetricType::Gauge,
        help: "Events sent to the sidecar and not answered yet, over every partition stream.",
        metric: |t| &t.in_flight,
    },
    Series {
        name: "parked_events",
        unit: None,
        kind: MetricType::Gauge,
        help: "Parked events the target holds for the connector (counted there at each start, then kept up to date by this process).",
        metric: |t| &t.parked,
    },
    Series {
        name: "partitions_held",
        unit: None,
        kind: MetricType::Gauge,
        help: "Partitions of the connector this gateway holds (lease.scope: partitions).",
        metric: |t| &t.partitions_held,
    },
    Series {
        name: "claim_members",
        unit: None,
        kind: MetricType::Gauge,
        help: "Live gateways sharing the connector's partitions, as this gateway last saw them.",
        metric: |t| &t.claim_members,
    },
    Series {
        name: "rebalances",
        unit: None,
        kind: MetricType::Counter,
        help: "Times this gateway changed the set of partitions it runs.",
        metric: |t| &t.rebalances,
    },
    Series {
        name: "partition_handover",
        unit: Some(Unit::Seconds),
        kind: MetricType::Histogram,
        help: "Per partition taken from another gateway: from that gateway's last renewal (or its hand-back) to the take.",
        metric: |t| &t.partition_handover,
    },
    Series {
        name: "coordination_statements",
        unit: None,
        kind: MetricType::Counter,
        help: "Statements this gateway sent to the partition claims store (heartbeats, renewals, reads, takes, hand-backs).",
        metric: |t| &t.coordination_statements,
    },
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
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("x", "An x", h);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        assert_eq!(
            out,
            "# HELP x An x.\n# TYPE x histogram\nx_bucket{le=\"1\"} 2\nx_bucket{le=\"10\"} 3\nx_bucket{le=\"+Inf\"} 4\nx_sum 24.5\nx_count 4\n"
        );
    }

    #[test]
    fn a_connector_restarted_goes_on_counting_and_a_deleted_one_starts_from_zero() {
        let id = "telemetry-test-connector";
        for_connector(id).batch_retries.inc();
        for_connector(id).batch_retries.inc();
        assert_eq!(of_connector(id).unwrap().batch_retries.get(), 2);
        forget(id);
        assert!(of_connector(id).is_none());
        assert_eq!(for_connector(id).batch_retries.get(), 0);
        forget(id);
    }
}
