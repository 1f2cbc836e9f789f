//! What `/metrics` says: the Prometheus families of every connector (state, committed work,
//! checkpoints, lag, and the histograms of `telemetry`), the gateway's version and its process.
//!
//! It exists to keep the names, labels and meanings of the series in one place, built at each
//! scrape from the connector registry and the process-wide telemetry, while prometheus-client
//! writes the exposition (HELP/TYPE lines, label escaping, the text format 0.0.4).

use std::fmt;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, prometheus_text},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge, info::Info},
    registry::{Registry, Unit},
};

use super::registry::{ConnectorState, Connectors, Snapshot};
use crate::{pipeline::Progress, telemetry};

/// The prefix of the gateway's own series (`process_*` have none, as every client's).
const PREFIX: &str = "projector_gateway";

/// The registry `/metrics` encodes: `build_info`, the families of `connectors` (read at each
/// scrape) and, on Linux, the `process_*` series.
pub fn registry(connectors: Connectors) -> Registry {
    let mut root = Registry::default();
    #[cfg(target_os = "linux")]
    root.register_collector(Box::new(ProcessFamilies));
    let ours = root.sub_registry_with_prefix(PREFIX);
    // `register` ends the help with a period of its own.
    ours.register("build", "The gateway's version (label `version`); always 1", Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]));
    ours.register_collector(Box::new(ConnectorFamilies(connectors)));
    root
}

/// The Prometheus text exposition (0.0.4) of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_text::encode(&mut out, registry).expect("writing to a String does not fail");
    out
}

/// The families of every connector registered, as they are at the scrape.
struct ConnectorFamilies(Connectors);

impl fmt::Debug for ConnectorFamilies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectorFamilies")
    }
}

impl Collector for ConnectorFamilies {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        encode_connectors(&self.0.snapshot(), encoder)
    }
}

/// A family of series labelled by connector: its HELP and TYPE lines, then one sample per
/// `(labels, metric)` of `samples`.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, unit, kind, help): (&str, Option<&Unit>, MetricType, &str),
    samples: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Every connector family, in the order `/metrics` lists them.
fn encode_connectors(connectors: &[Snapshot], mut encoder: DescriptorEncoder) -> fmt::Result {
    type Read = fn(&Progress) -> u64;
    const COUNTERS: [(&str, &str, Read); 4] = [
        ("events_applied", "Events whose operations were committed (ignored events included).", |p| p.events_applied),
        ("operations_applied", "Operations committed to the target.", |p| p.ops_applied),
        ("events_parked", "Events the poison policy `park` set aside.", |p| p.events_parked),
        ("batches_committed", "Batches committed with their checkpoints.", |p| p.batches),
    ];
    let e = &mut encoder;
    let connector = |c: &Snapshot| [("connector", c.id.clone())];
    let gauge = |name, help| (name, None, MetricType::Gauge, help);
    family(
        e,
        gauge(
            "connector_up",
            "1 while the connector runs with its sidecar and target answering; 0 when it is starting, waiting for a dependency, \
             standing by, stopped, disabled or failed (`connector_state` tells which).",
        ),
        connectors.iter().map(|c| (connector(c), ConstGauge::new(u64::from(c.state == ConnectorState::Running)))),
    )?;
    family(
        e,
        gauge("connector_state", "1 for the connector's state now (label `state`), 0 for every other state."),
        connectors.iter().flat_map(|c| {
            ConnectorState::NAMES.into_iter().map(|state| {
                ([("connector", c.id.clone()), ("state", state.to_owned())], ConstGauge::new(u64::from(c.state.name() == state)))
            })
        }),
    )?;
    family(
        e,
        gauge("connector_standby", "1 while another gateway holds the connector's lease and this one stands by."),
        connectors.iter().map(|c| (connector(c), ConstGauge::new(u64::from(matches!(c.state, ConnectorState::Standby(_)))))),
    )?;
    for (name, help, read) in COUNTERS {
        let samples = connectors.iter().filter_map(|c| Some((connector(c), ConstCounter::new(read(c.progress.as_ref()?)))));
        family(e, (name, None, MetricType::Counter, help), samples)?;
    }
    family(
        e,
        gauge("checkpoint_low_watermark", "Position every partition has committed (the resume point)."),
        connectors.iter().filter_map(|c| Some((connector(c), ConstGauge::new(c.progress.as_ref()?.low_watermark())))),
    )?;
    family(
        e,
        gauge("checkpoint_position", "Committed position of each partition."),
        connectors.iter().flat_map(|c| {
            let positions = c.progress.iter().flat_map(|p| p.run_positions());
            positions.map(|(partition, position)| ([("connector", c.id.clone()), ("partition", partition.to_string())], ConstGauge::new(position)))
        }),
    )?;
    let recorded: Vec<_> = connectors.iter().filter_map(|c| Some((connector(c), telemetry::of_connector(&c.id)?))).collect();
    let dependencies: Vec<_> = recorded
        .iter()
        .flat_map(|([(_, id)], t)| {
            t.outages()
                .map(|(on, outage)| ([("connector", id.clone()), ("dependency", on.name().to_owned())], outage))
        })
        .collect();
    family(
        e,
        gauge("dependency_up", "0 while the connector's sidecar, target or source (label `dependency`) is failing, 1 otherwise."),
        dependencies.iter().map(|(labels, outage)| (labels.clone(), ConstGauge::new(u64::from(outage.ongoing().is_none())))),
    )?;
    family(
        e,
        (
            "dependency_failures",
            None,
            MetricType::Counter,
            "Failures of the sidecar (a stream broken, an answer late), the target (a batch attempt failed) or the source (a read failed), by label `dependency`.",
        ),
        dependencies.iter().map(|(labels, outage)| (labels.clone(), ConstCounter::new(outage.failures().get()))),
    )?;
    family(
        e,
        gauge(
            "sidecar_endpoint_streams",
            "Partition streams open on each endpoint (label `endpoint`, e.g. `http://10.1.2.3:50051`) of the connector's sidecar: \
             its replicas, or the IPs its address resolves to.",
        ),
        recorded.iter().flat_map(|([(_, id)], t)| {
            t.sidecar_streams.counts().into_iter().map(|(endpoint, streams)| {
                ([("connector", id.clone()), ("endpoint", endpoint.to_string())], ConstGauge::new(streams))
            })
        }),
    )?;
    for series in &telemetry::SERIES {
        let mut metric = e.encode_descriptor(series.name, series.help, series.unit.as_ref(), series.kind)?;
        for (labels, recorded) in &recorded {
            (series.metric)(recorded).encode(metric.encode_family(labels)?)?;
        }
    }
    family(
        e,
        gauge("source_head_position", "Last position of the source's log at the last probe."),
        connectors.iter().filter_map(|c| Some((connector(c), ConstGauge::new(c.head.as_ref()?.position)))),
    )?;
    family(
        e,
        gauge("lag_positions", "Source head minus the committed low watermark (events, for SQLite and PostgreSQL logs)."),
        connectors.iter().filter_map(|c| Some((connector(c), ConstGauge::new(c.lag_positions()?)))),
    )?;
    family(
        e,
        ("lag", Some(&Unit::Seconds), MetricType::Gauge, "Age of the oldest event the connector has not committed yet (0 when caught up)."),
        connectors.iter().filter_map(|c| Some((connector(c), ConstGauge::new(c.lag_seconds()?)))),
    )
}

/// The `process_*` series client_golang exports (CPU, memory, file descriptors, threads, start
/// time), read from /proc at each scrape by `metrics-process`. A series the kernel does not
/// tell is left out, and so is a limit it reports as unlimited.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct ProcessFamilies;

#[cfg(target_os = "linux")]
impl Collector for ProcessFamilies {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let now = metrics_process::collector::collect();
        let limit = |max: Option<u64>| max.filter(|&max| max > 0);
        let gauges = [
            ("process_open_fds", None, "Number of open file descriptors.", now.open_fds),
            ("process_max_fds", None, "Maximum number of open file descriptors.", limit(now.max_fds)),
            ("process_virtual_memory", Some(Unit::Bytes), "Virtual memory size in bytes.", now.virtual_memory_bytes),
            ("process_virtual_memory_max", Some(Unit::Bytes), "Maximum amount of virtual memory available in bytes.", limit(now.virtual_memory_max_bytes)),
            ("process_resident_memory", Some(Unit::Bytes), "Resident memory size in bytes.", now.resident_memory_bytes),
            ("process_start_time", Some(Unit::Seconds), "Start time of the process since unix epoch in seconds.", now.start_time_seconds),
            ("process_threads", None, "Number of OS threads in the process.", now.threads),
        ];
        if let Some(seconds) = now.cpu_seconds_total {
            let metric = ConstCounter::new(seconds);
            metric.encode(encoder.encode_descriptor("process_cpu", "Total user and system CPU time spent in seconds.", Some(&Unit::Seconds), metric.metric_type())?)?;
        }
        for (name, unit, help, value) in gauges {
            if let Some(value) = value {
                let metric = ConstGauge::new(value);
                metric.encode(encoder.encode_descriptor(name, help, unit.as_ref(), metric.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::{sources::head::Head, status::Origin};

    fn progress(positions: Vec<u64>, events: u64) -> Progress {
        Progress { positions, events_applied: events, ops_applied: events * 2, events_parked: 1, batches: 3, held: None }
    }

    /// Fixed snapshots, encoded as `/metrics` encodes the registry's.
    #[derive(Debug)]
    struct Fixed(Vec<Snapshot>);

    impl Collector for Fixed {
        fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
            encode_connectors(&self.0, encoder)
        }
    }

    fn render_metrics(connectors: Vec<Snapshot>) -> String {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(Fixed(connectors)));
        encode(&registry)
    }

    #[test]
    fn renders_every_connector_with_escaped_labels() {
        let created = Utc::now() - chrono::Duration::seconds(90);
        let text = render_metrics(vec![
            Snapshot {
                id: "bookings".into(),
                origin: Origin::File,
                state: ConnectorState::Running,
                progress: Some(progress(vec![7, 5], 10)),
                head: Some(Head { position: 12, oldest_pending: Some(created) }),
                claims: None,
            },
            Snapshot { id: "odd \"one\"\\x".into(), origin: Origin::Api, state: ConnectorState::Failed("boom".into()), progress: None, head: None, claims: None },
        ]);
        for line in [
            "# TYPE projector_gateway_connector_up gauge",
            "projector_gateway_connector_up{connector=\"bookings\"} 1",
            "projector_gateway_connector_up{connector=\"odd \\\"one\\\"\\\\x\"} 0",
            "# TYPE projector_gateway_events_applied_total counter",
            "projector_gateway_events_applied_total{connector=\"bookings\"} 10",
            "projector_gateway_operations_applied_total{connector=\"bookings\"} 20",
            "projector_gateway_events_parked_total{connector=\"bookings\"} 1",
            "projector_gateway_batches_committed_total{connector=\"bookings\"} 3",
            "projector_gateway_checkpoint_low_watermark{connector=\"bookings\"} 5",
            "projector_gateway_checkpoint_position{connector=\"bookings\",partition=\"1\"} 5",
            "projector_gateway_source_head_position{connector=\"bookings\"} 12",
            "projector_gateway_lag_positions{connector=\"bookings\"} 7",
            "# TYPE projector_gateway_lag_seconds gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("events_applied_total{connector=\"odd"), "no progress, no counters:\n{text}");
        let lag: f64 = text.lines().find_map(|l| l.strip_prefix("projector_gateway_lag_seconds{connector=\"bookings\"} ")).unwrap().parse().unwrap();
        assert!((90.0..100.0).contains(&lag), "{lag}");
    }

    #[test]
    fn recorded_telemetry_is_listed_under_its_connector() {
        let id = "metrics-test-connector";
        let recorded = telemetry::for_connector(id);
        recorded.sidecar_round_trip.observe(0.002);
        recorded.batch_retries.inc();
        recorded.sidecar_streams.known(&["http://10.1.2.3:50051".into(), "http://10.1.2.4:50051".into()]);
        recorded.sidecar_streams.opened(&"http://10.1.2.3:50051".into());
        let running = Snapshot { id: id.into(), origin: Origin::Api, state: ConnectorState::Running, progress: None, head: None, claims: None };
        let text = render_metrics(vec![running]);
        telemetry::forget(id);
        for line in [
            "# TYPE projector_gateway_sidecar_round_trip_seconds histogram",
            "projector_gateway_sidecar_round_trip_seconds_bucket{connector=\"metrics-test-connector\",le=\"0.001\"} 0",
            "projector_gateway_sidecar_round_trip_seconds_bucket{connector=\"metrics-test-connector\",le=\"0.0025\"} 1",
            "projector_gateway_sidecar_round_trip_seconds_bucket{connector=\"metrics-test-connector\",le=\"+Inf\"} 1",
            "projector_gateway_sidecar_round_trip_seconds_count{connector=\"metrics-test-connector\"} 1",
            "projector_gateway_batch_apply_seconds_count{connector=\"metrics-test-connector\"} 0",
            "# TYPE projector_gateway_batch_retries_total counter",
            "projector_gateway_batch_retries_total{connector=\"metrics-test-connector\"} 1",
            "# TYPE projector_gateway_sidecar_endpoint_streams gauge",
            "projector_gateway_sidecar_endpoint_streams{connector=\"metrics-test-connector\",endpoint=\"http://10.1.2.3:50051\"} 1",
            "projector_gateway_sidecar_endpoint_streams{connector=\"metrics-test-connector\",endpoint=\"http://10.1.2.4:50051\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn says_the_version_and_the_process() {
        let text = encode(&registry(Connectors::default()));
        let version = format!("projector_gateway_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        assert!(text.lines().any(|l| l == version), "missing {version:?} in\n{text}");
        #[cfg(target_os = "linux")]
        for series in ["process_cpu_seconds_total ", "process_resident_memory_bytes ", "process_open_fds ", "process_start_time_seconds "] {
            assert!(text.lines().any(|l| l.starts_with(series)), "missing {series:?} in\n{text}");
        }
    }
}
