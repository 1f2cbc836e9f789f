//! An OTLP trace collector for the trace tests: the `TraceService` gRPC server generated from
//! the official OpenTelemetry protos (the `opentelemetry-proto` crate), on loopback, keeping
//! every span it receives with its service name. It stands in for an OpenTelemetry Collector,
//! Jaeger or Tempo, which speak the same service and cannot be installed here.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    trace::v1::Span,
};
use tokio_stream::wrappers::TcpListenerStream;

/// A span as received, with its attributes flattened to strings.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub span_id: Vec<u8>,
    pub attributes: HashMap<String, String>,
    /// (trace id, span id) of each linked span.
    pub links: Vec<(Vec<u8>, Vec<u8>)>,
    pub trace_id: Vec<u8>,
    pub parent_span_id: Vec<u8>,
    pub end_ns: u64,
    /// 2 = error (`Status.StatusCode`).
    pub status_code: i32,
    pub status_message: String,
    pub event_names: Vec<String>,
}

#[derive(Clone, Default)]
struct Received {
    /// Keep each span (tests), or only count them (the benchmark, where the collector shares
    /// the process it measures).
    keep: bool,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    count: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(&self, request: tonic::Request<ExportTraceServiceRequest>) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let count: usize = request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        self.count.fetch_add(count as u64, Relaxed);
        if !self.keep {
            return Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }));
        }
        let mut received = self.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.map(|r| flatten(&r.attributes)).unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                received.extend(scope.spans.into_iter().map(|span| received_span(&service, span)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn received_span(service: &str, span: Span) -> ReceivedSpan {
    let status = span.status.unwrap_or_default();
    ReceivedSpan {
        service: service.to_owned(),
        attributes: flatten(&span.attributes),
        links: span.links.into_iter().map(|l| (l.trace_id, l.span_id)).collect(),
        event_names: span.events.into_iter().map(|e| e.name).collect(),
        name: span.name,
        span_id: span.span_id,
        trace_id: span.trace_id,
        parent_span_id: span.parent_span_id,
        end_ns: span.end_time_unix_nano,
        status_code: status.code,
        status_message: status.message,
    }
}

fn flatten(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(text).unwrap_or_default())).collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// A running collector; stops with the test's runtime.
pub struct Collector {
    /// `http://127.0.0.1:<port>`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    received: Received,
}

impl Collector {
    /// A collector that keeps every span.
    pub async fn start() -> Self {
        Self::serve(true).await
    }

    /// A collector that only counts the spans it receives.
    pub async fn counting() -> Self {
        Self::serve(false).await
    }

    async fn serve(keep: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("collector port");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let received = Received { keep, ..Received::default() };
        let service = TraceServiceServer::new(received.clone());
        tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(TcpListenerStream::new(listener)));
        Self { endpoint, received }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().unwrap().clone()
    }

    /// How many spans it received.
    pub fn count(&self) -> u64 {
        self.received.count.load(Relaxed)
    }
}
