//! Traces (design §4): one span per event, from the moment it is sent to the sidecar (or handed
//! to a producer sink) until the batch that applies it has committed, and one span per attempt
//! at applying a batch, linked to the spans of the events it carries. So an operator who follows
//! one event id sees where its time went (the sidecar, the queue before the writer, the
//! database) and which batch applied it.
//!
//! The spans have their own target ([`TARGET`]) and are only ever recorded by the OpenTelemetry
//! layer, which exists only when OTLP export is configured (the `OTEL_*` environment variables,
//! as every OpenTelemetry SDK reads them). Otherwise each span is one disabled-callsite check,
//! so the pipeline pays nothing for them; the log output never shows them.
//!
//! Sampling is decided here, per event, before its span is built (a hash of its position
//! against the ratio of `OTEL_TRACES_SAMPLER_ARG`): an event left out costs nothing, where the
//! SDK's own sampler would only drop a span already built. A batch span is built when at least
//! one of its events was sampled.

use std::{
    fmt, io,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use indicatif::MultiProgress;
use tracing::{Level, Span, field::Empty};
use tracing_subscriber::{EnvFilter, Layer, Registry, filter::Targets, fmt::MakeWriter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::{
    config::PoisonPolicy,
    event::{Event, Position},
};

/// The target of the gateway's trace spans.
pub const TARGET: &str = "projector_gateway::traces";

/// The span of one event in partition `partition` of connector `connector`: a root span (each
/// event its own trace), open until every handle to it is dropped, which is when the batch that
/// carries the event has been applied (or the event was skipped or parked).
pub fn event_span(connector: &str, partition: u32, event: &Event) -> Span {
    if !sampled(event.position) {
        return Span::none();
    }
    tracing::debug_span!(
        target: TARGET,
        parent: None,
        "event",
        "otel.kind" = "consumer",
        connector,
        partition,
        "event.stream" = %event.stream,
        "event.type" = %event.event_type,
        "event.id" = %event.event_id,
        "event.position" = event.position,
        operations = Empty,
        outcome = Empty,
        "otel.status_code" = Empty,
        "otel.status_message" = Empty,
    )
}

/// The W3C `traceparent` of `span` for the sidecar, or empty when the span is not exported
/// (no export, or the event was not sampled).
pub fn traceparent(span: &Span) -> String {
    if span.is_none() {
        return String::new();
    }
    #[cfg(feature = "otlp")]
    {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let context = span.context();
        let span_context = context.span().span_context().clone();
        if span_context.is_valid() {
            // Sampled: the gateway exports every span it builds (it samples before building).
            return format!("00-{}-{}-01", span_context.trace_id(), span_context.span_id());
        }
    }
    String::new()
}

/// Records on an event's span that the sidecar answered it with `operations` operations.
pub fn answered(span: &Span, operations: usize) {
    span.record("operations", operations);
    tracing::event!(target: TARGET, parent: span, Level::DEBUG, operations, "answered");
}

/// Records on an event's span what became of it when it was not applied: `outcome` is
/// `ignored`, `skipped`, `parked` or `stopped`; `error` why, when it failed.
pub fn ended_without_applying(span: &Span, outcome: &str, error: Option<&str>) {
    span.record("outcome", outcome);
    if let Some(error) = error {
        span.record("otel.status_code", "error");
        span.record("otel.status_message", error);
    }
}

/// Records on an event's span that it went to the poison policy, and why.
pub fn poisoned(span: &Span, policy: PoisonPolicy, reason: &str) {
    let outcome = match policy {
        PoisonPolicy::Stop => "stopped",
        PoisonPolicy::Skip => "skipped",
        PoisonPolicy::Park => "parked",
    };
    ended_without_applying(span, outcome, Some(reason));
}

/// The most event spans a batch span links to (OpenTelemetry's default link limit).
const MAX_LINKS: usize = 128;

/// The span of one attempt at applying a batch, linked to the spans of (up to 128 of) its
/// events.
pub fn batch_span<'a>(
    connector: &str,
    events: impl Iterator<Item = &'a Span>,
    (items, operations): (usize, usize),
    positions: Option<(Position, Position)>,
    attempt: u32,
) -> Span {
    // Without export, return before walking the batch's items for a sampled event.
    if !tracing::enabled!(target: TARGET, Level::DEBUG) {
        return Span::none();
    }
    let mut events = events.filter(|span| !span.is_none()).peekable();
    if events.peek().is_none() {
        return Span::none();
    }
    let (first, last) = positions.unwrap_or_default();
    let span = tracing::debug_span!(
        target: TARGET,
        parent: None,
        "apply_batch",
        connector,
        items,
        operations,
        "positions.first" = first,
        "positions.last" = last,
        attempt,
        "otel.status_code" = Empty,
        "otel.status_message" = Empty,
    );
    if !span.is_disabled() {
        for event in events.take(MAX_LINKS) {
            span.follows_from(event);
        }
    }
    span
}

/// Records on a batch span that its attempt failed.
pub fn batch_failed(span: &Span, error: &dyn fmt::Display) {
    span.record("otel.status_code", "error");
    span.record("otel.status_message", tracing::field::display(error));
}

/// Why trace export could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("trace export (OpenTelemetry): {0}")]
pub struct TraceSetupError(String);

/// The installed trace export, flushed by [`TraceExport::shutdown`] before the process exits.
#[derive(Default)]
pub struct TraceExport {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl TraceExport {
    /// Exports the spans not sent yet; call it from a thread where the runtime still runs.
    pub fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: exporting the last trace spans failed: {e}");
        }
    }
}

/// Where to export spans, and how many: `endpoint` is the collector's OTLP/gRPC URL;
/// `sample_ratio` the share of events traced (0 to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    pub endpoint: String,
    pub sample_ratio: f64,
}

/// The sampling threshold: an event is traced when the hash of its position is below it.
static SAMPLE_BELOW: AtomicU64 = AtomicU64::new(u64::MAX);

#[cfg_attr(not(feature = "otlp"), allow(dead_code))] // set by the OTLP export only
fn set_sample_ratio(ratio: f64) {
    let below = if ratio >= 1.0 { u64::MAX } else { (ratio.max(0.0) * u64::MAX as f64) as u64 };
    SAMPLE_BELOW.store(below, Relaxed);
}

/// Whether the event at `position` is traced (splitmix64 of the position: positions are dense,
/// their hashes are not).
fn sampled(position: Position) -> bool {
    let below = SAMPLE_BELOW.load(Relaxed);
    if below == u64::MAX {
        return true;
    }
    let mut z = position.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) < below
}

/// The share of events `OTEL_TRACES_SAMPLER` (and its `_ARG`) asks for.
fn sample_ratio(sampler: Option<&str>, arg: Option<&str>) -> Result<f64, TraceSetupError> {
    let ratio = || match arg {
        None => Ok(1.0),
        Some(arg) => arg.trim().parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r)).ok_or_else(|| {
            TraceSetupError(format!("OTEL_TRACES_SAMPLER_ARG={arg} is not a ratio; expected a number from 0 to 1, e.g. 0.01"))
        }),
    };
    match sampler {
        None | Some("always_on" | "parentbased_always_on") => Ok(1.0),
        Some("always_off" | "parentbased_always_off") => Ok(0.0),
        Some("traceidratio" | "parentbased_traceidratio") => ratio(),
        Some(other) => Err(TraceSetupError(format!(
            "OTEL_TRACES_SAMPLER={other} is not supported; use always_on, always_off or traceidratio (with OTEL_TRACES_SAMPLER_ARG)"
        ))),
    }
}

impl ExportSettings {
    /// The export the environment asks for, as the OpenTelemetry SDKs read it
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`, unless
    /// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`); `None` when it asks for none.
    pub fn from_env() -> Result<Option<Self>, TraceSetupError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, TraceSetupError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match set("OTEL_TRACES_EXPORTER").as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(TraceSetupError(format!("OTEL_TRACES_EXPORTER={other} is not supported; use `otlp` (or `none`)")));
            }
        }
        for name in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
            if let Some(protocol) = set(name)
                && protocol != "grpc"
            {
                return Err(TraceSetupError(format!(
                    "{name}={protocol} is not supported; the gateway exports over OTLP/gRPC: set it to `grpc` and point \
                     OTEL_EXPORTER_OTLP_ENDPOINT at the collector's gRPC port (4317 by default)"
                )));
            }
        }
        let Some(endpoint) = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT")) else {
            return Ok(None);
        };
        let sample_ratio = sample_ratio(set("OTEL_TRACES_SAMPLER").as_deref(), set("OTEL_TRACES_SAMPLER_ARG").as_deref())?;
        Ok(Some(Self { endpoint, sample_ratio }))
    }
}

/// Where the log lines go: stderr, or, while `run` shows its live progress bars on a terminal,
/// above them ([`LogOutput::above`]), so a line never lands in the middle of a bar and a bar
/// redrawn never overwrites a line.
#[derive(Clone, Default)]
pub struct LogOutput {
    bars: Option<MultiProgress>,
    to: Destination,
}

/// Where the lines are written in the end.
#[derive(Clone, Default)]
enum Destination {
    #[default]
    Stderr,
    /// Kept in memory, with what the bars drew (tests).
    #[cfg(test)]
    Recording(std::sync::Arc<parking_lot::Mutex<Vec<String>>>),
}

impl LogOutput {
    /// Each log line written above `bars`: the bars are cleared, the line written to stderr as
    /// it is (`MultiProgress::suspend`), and the bars drawn again below it.
    pub fn above(bars: MultiProgress) -> Self {
        Self { bars: Some(bars), to: Destination::Stderr }
    }

    fn write_out(&self, line: &[u8]) -> io::Result<()> {
        match &self.to {
            Destination::Stderr => io::Write::write_all(&mut io::stderr(), line),
            #[cfg(test)]
            Destination::Recording(recording) => {
                recording.lock().push(String::from_utf8_lossy(line).into_owned());
                Ok(())
            }
        }
    }
}

impl<'a> MakeWriter<'a> for LogOutput {
    type Writer = LogLine<'a>;

    fn make_writer(&'a self) -> LogLine<'a> {
        match &self.bars {
            Some(bars) if !bars.is_hidden() => LogLine::Above { output: self, bars, line: Vec::new() },
            _ => LogLine::Direct(self),
        }
    }
}

/// One log line on its way out. The fmt layer formats a whole event, writes it and drops the
/// writer, so a line meant for above the bars is collected and written when dropped.
pub enum LogLine<'a> {
    Direct(&'a LogOutput),
    Above { output: &'a LogOutput, bars: &'a MultiProgress, line: Vec<u8> },
}

impl io::Write for LogLine<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Direct(output) => output.write_out(buf).map(|()| buf.len()),
            Self::Above { line, .. } => {
                line.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine<'_> {
    fn drop(&mut self) {
        if let Self::Above { output, bars, line } = self
            && !line.is_empty()
        {
            let _ = bars.suspend(|| output.write_out(line));
        }
    }
}

static OUTPUT: OnceLock<LogOutput> = OnceLock::new();

/// Writes `line` (and a newline) to stderr as the log lines are written: above the progress
/// bars while there are some. For the `error: ...` lines printed besides the log.
pub fn eprint_line(line: &str) {
    let output = OUTPUT.get_or_init(LogOutput::default);
    let mut writer = output.make_writer();
    let _ = io::Write::write_all(&mut writer, format!("{line}\n").as_bytes());
}

/// Installs the process's subscriber: the log lines (`RUST_LOG`, else `default_level`) on
/// stderr (through `output`) and, when the environment configures OTLP export
/// ([`ExportSettings::from_env`]), the trace spans to the collector. Must run inside the runtime
/// (the exporter's connection is spawned on it).
pub fn init(default_level: &str, output: LogOutput, format: LogFormat) -> Result<TraceExport, TraceSetupError> {
    init_to(default_level, ExportSettings::from_env()?, output, format)
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event, coloured on a terminal unless `NO_COLOR` is set.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields.message`, the
    /// event's fields such as `connector`), for log collectors.
    Json,
}

/// [`init`] with the export given rather than read from the environment, the log on stderr.
pub fn init_with(default_level: &str, export: Option<ExportSettings>) -> Result<TraceExport, TraceSetupError> {
    init_to(default_level, export, LogOutput::default(), LogFormat::Text)
}

fn init_to(default_level: &str, export: Option<ExportSettings>, output: LogOutput, format: LogFormat) -> Result<TraceExport, TraceSetupError> {
    let _ = OUTPUT.set(output.clone());
    let logs = EnvFilter::try_from_default_env()
        // PostgreSQL's notices (`relation ... already exists, skipping`) are the server's
        // chatter, not the gateway's: only with RUST_LOG asking for them.
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},tokio_postgres=warn")))
        .add_directive(format!("{TARGET}=off").parse().expect("a valid directive"));
    // https://no-color.org: set and not empty means no colour.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let log_layer: BoxedLayer = match format {
        LogFormat::Text => Box::new(tracing_subscriber::fmt::layer().with_writer(output).with_ansi(colour).with_filter(logs)),
        LogFormat::Json => Box::new(
            tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(true).with_span_list(false).with_writer(output).with_filter(logs),
        ),
    };
    let (trace_layer, export) = match export {
        Some(settings) => export_layer(settings)?,
        None => (None, TraceExport::default()),
    };
    let layers: Vec<BoxedLayer> = trace_layer.into_iter().chain([log_layer]).collect();
    tracing_subscriber::registry().with(layers).init();
    Ok(export)
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

#[cfg(feature = "otlp")]
fn export_layer(settings: ExportSettings) -> Result<(Option<BoxedLayer>, TraceExport), TraceSetupError> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(&settings.endpoint)
        .build()
        .map_err(|e| TraceSetupError(format!("{e}; check OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://127.0.0.1:4317)")))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    if !named {
        resource = resource.with_service_name("projector-gateway");
    }
    // Sampled here, per event (see the module doc); what reaches the SDK is kept.
    set_sample_ratio(settings.sample_ratio);
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .build();
    let tracer = provider.tracer("projector-gateway");
    // No source locations, thread names or busy/idle times: per-event spans stay small.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(Targets::new().with_target(TARGET, Level::DEBUG));
    Ok((Some(Box::new(layer)), TraceExport { provider: Some(provider) }))
}

#[cfg(not(feature = "otlp"))]
fn export_layer(_: ExportSettings) -> Result<(Option<BoxedLayer>, TraceExport), TraceSetupError> {
    eprintln!("warning: OTEL_EXPORTER_OTLP_ENDPOINT is set, but this build has no `otlp` feature: traces are not exported");
    let _ = Targets::new();
    Ok((None, TraceExport::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<ExportSettings>, TraceSetupError> {
        ExportSettings::from_vars(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn export_follows_the_sdk_environment_variables() {
        let endpoint = |url: &str| Some(ExportSettings { endpoint: url.into(), sample_ratio: 1.0 });
        assert_eq!(settings(&[]).unwrap(), None);
        assert_eq!(settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]).unwrap(), endpoint("http://c:4317"));
        let both = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317")];
        assert_eq!(settings(&both).unwrap(), endpoint("http://t:4317"), "the traces endpoint wins");
        for off in [("OTEL_SDK_DISABLED", "true"), ("OTEL_TRACES_EXPORTER", "none")] {
            assert_eq!(settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), off]).unwrap(), None, "{off:?}");
        }
        let grpc = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
        assert_eq!(settings(&grpc).unwrap(), endpoint("http://c:4317"));
        let e = settings(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")]).unwrap_err().to_string();
        assert!(e.contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json is not supported"), "{e}");
        let e = settings(&[("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err().to_string();
        assert!(e.contains("OTEL_TRACES_EXPORTER=zipkin is not supported"), "{e}");
        let sampled = |sampler: &str, arg: &str| {
            let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_TRACES_SAMPLER", sampler), ("OTEL_TRACES_SAMPLER_ARG", arg)];
            settings(&vars).map(|s| s.unwrap().sample_ratio)
        };
        assert_eq!(sampled("traceidratio", "0.01").unwrap(), 0.01);
        assert_eq!(sampled("parentbased_traceidratio", "0.5").unwrap(), 0.5);
        assert_eq!(sampled("always_off", "").unwrap(), 0.0);
        assert_eq!(sampled("parentbased_always_on", "").unwrap(), 1.0);
        assert!(sampled("traceidratio", "2").unwrap_err().to_string().contains("OTEL_TRACES_SAMPLER_ARG=2 is not a ratio"));
        assert!(sampled("jaeger_remote", "").unwrap_err().to_string().contains("OTEL_TRACES_SAMPLER=jaeger_remote is not supported"));
    }

    /// A terminal that records what is written to it, one entry per write.
    #[derive(Debug, Clone, Default)]
    struct Screen(std::sync::Arc<parking_lot::Mutex<Vec<String>>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            100
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.0.lock().push(s.to_owned());
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            self.write_str("<clear>")
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_are_written_whole_above_the_progress_bars() {
        use std::io::Write as _;
        let screen = Screen::default();
        let bars = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::term_like(Box::new(screen.clone())));
        let bar = bars.add(indicatif::ProgressBar::new(10).with_style(indicatif::ProgressStyle::with_template("bar {msg}").unwrap()));
        bar.set_message("orders");
        bar.tick();
        let output = LogOutput { to: Destination::Recording(screen.0.clone()), ..LogOutput::above(bars) };
        {
            // The fmt layer may write a line in pieces; it goes out once, whole.
            let mut line = output.make_writer();
            line.write_all(b"INFO progress: ").unwrap();
            line.write_all(b"position 7\n").unwrap();
        }
        let written = screen.0.lock().clone();
        let at = written.iter().position(|w| w == "INFO progress: position 7\n").unwrap_or_else(|| panic!("{written:?}"));
        let cleared = written[..at].iter().rposition(|w| w == "bar orders").zip(written[..at].iter().rposition(|w| w == "<clear>"));
        assert!(cleared.is_some_and(|(drawn, cleared)| cleared > drawn), "the bar is cleared before the line: {written:?}");
        assert!(written[at + 1..].iter().any(|w| w == "bar orders"), "and drawn again below it: {written:?}");
    }

    #[test]
    fn sampling_keeps_about_the_ratio_of_dense_positions() {
        set_sample_ratio(0.1);
        let kept = (1..=100_000u64).filter(|p| sampled(*p)).count();
        set_sample_ratio(1.0);
        assert!((9_000..11_000).contains(&kept), "{kept}");
        assert!((1..=1_000u64).all(sampled));
    }
}
