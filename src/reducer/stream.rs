//! One partition's conversation with the sidecar: a pipelined bidirectional stream with a
//! credit window, strict in-order matching, deadlines, reconnection with resend, probes that
//! settle the events an `answers: handled` sidecar leaves silent (`silence.rs`), and the
//! poison policy for events the sidecar cannot handle. Each stream goes to the partition's
//! endpoint among the sidecar's replicas (`endpoints.rs`), and moves, as it would reconnect,
//! when that endpoint fails or the endpoints change.

use std::{sync::Arc, time::Duration};

use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use tracing::{debug, info, warn};

use super::{
    RoutedItem, build_request,
    endpoints::EndpointView,
    silence::Silence,
    window::{Match, Window},
};
use crate::{
    backoff::Backoff,
    config::{Answers, PoisonPolicy, SidecarConfig, TimeoutPolicy},
    proto::{ProjectionRequest, ProjectionResponse, projection_client::ProjectionClient},
    sinks::{BatchItem, EventRef, Sink},
    telemetry::ConnectorTelemetry,
    traces,
};

const ENDED_BY_SIDECAR: &str = "the sidecar ended the stream";

/// Why a partition stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReducerError {
    #[error("{event}: {reason}. The checkpoint stays before this event (poison policy `stop`); fix the cause (the sidecar, the sink's configuration), or set `poison: skip` or `park`, and restart")]
    Poisoned { event: Box<EventRef>, reason: String },
    #[error("partition {0}: the sink writer stopped; see its error")]
    SinkGone(u32),
}

/// What the caller does after handling a response or a timeout.
enum Flow {
    Continue,
    /// Reopen the stream and resend every unanswered event.
    Restart,
}

/// How a stream ended.
enum StreamEnd {
    Restart,
    /// The endpoints changed and another one owns this partition now.
    Moved,
    /// The stream could not be opened, or broke: its endpoint is suspect.
    Broken(String),
    /// The sidecar ended the stream with an error status of its own (a handler that threw):
    /// most likely on the oldest unanswered event, which is tried `max_retries` more times.
    FailedBySidecar(String),
    /// An answer could not be read (over the message size limit, not a `ProjectionResponse`):
    /// counted against the oldest unanswered event as a sidecar's failure is.
    Unreadable(String),
}

/// How long a stream the sidecar accepted must stay open without failing to end an outage
/// by itself (an answer ends it at once).
const HEALTHY_STREAM: Duration = Duration::from_millis(500);

/// The task that drives one partition's stream.
pub struct PartitionReducer<S: Sink> {
    pub partition: u32,
    /// The sidecar's endpoints (one per replica), which this partition's stream goes to.
    pub endpoints: EndpointView,
    pub sink: Arc<S>,
    pub config: Arc<SidecarConfig>,
    pub policy: PoisonPolicy,
    pub input: mpsc::Receiver<RoutedItem>,
    pub output: mpsc::Sender<BatchItem<S::Op>>,
    /// Cancelled when the connector must stop now (error elsewhere, or shutdown deadline).
    pub abort: CancellationToken,
    pub telemetry: Arc<ConnectorTelemetry>,
    /// What this partition knows of the sidecar's silences (probe material, when to probe).
    pub silence: Silence,
}

impl<S: Sink> PartitionReducer<S> {
    /// Runs until the input is closed and every event was answered and handed on, or until
    /// aborted, or until an event is poisoned under policy `stop`.
    pub async fn run(mut self) -> Result<(), ReducerError> {
        let mut window = Window::default();
        let result = self.drive(&mut window).await;
        // Events still counted in flight are not any more: this stream is over.
        self.telemetry.in_flight.dec_by(window.reported());
        result
    }

    async fn drive(&mut self, window: &mut Window) -> Result<(), ReducerError> {
        let mut input_open = true;
        let mut backoff = Backoff::default();
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let far = Duration::from_secs(86_400 * 365);
        let handled = self.config.answers == Answers::Handled;
        // Attempts in a row that found no endpoint answering (each tries the next endpoint).
        let mut failures = 0u32;
        loop {
            let endpoint = self.endpoints.current().pick(self.partition, failures).clone();
            // Room for a full window and one probe.
            let (requests, outgoing) = mpsc::channel::<ProjectionRequest>(self.config.window + 2);
            for (event, span) in window.resend_all(Instant::now()) {
                let _ = requests.try_send(traced_request(event, span, self.partition, self.config.payload));
            }
            let opened_at = Instant::now();
            // When the sidecar accepted this stream: one that stays healthy for a while ends an
            // outage even with nothing to answer (an idle partition), one that fails at once
            // (a sidecar that misbehaves on every stream) does not.
            let mut accepted_at: Option<Instant> = None;
            // Counted in the endpoint's gauge from its acceptance to the end of this stream.
            let mut _counted: Option<CountedStream> = None;
            let mut client = ProjectionClient::new(endpoint.channel())
                .max_decoding_message_size(self.config.max_message_bytes)
                .max_encoding_message_size(self.config.max_message_bytes);
            let call = client.project(ReceiverStream::new(outgoing));
            tokio::pin!(call);
            let mut responses: Option<Streaming<ProjectionResponse>> = None;

            let end = loop {
                self.telemetry.in_flight.inc_by(window.in_flight_change());
                if let Some(position) = window.take_released_mark() {
                    self.emit(BatchItem::Advance { partition: self.partition, position }).await?;
                }
                if !input_open && window.is_empty() {
                    return Ok(());
                }
                // Counted from the send time, whether or not the response headers have come:
                // some servers (grpcio) send them only with their first answer. A sidecar that
                // answers only what it handles has until its probe's answer is late.
                let deadline = match window.probe() {
                    Some((_, probe_sent)) => Some(probe_sent + timeout),
                    None => window.front().map(|(_, _, sent_at)| sent_at + timeout),
                };
                let silent = if handled && window.probe().is_none() { window.front() } else { None };
                let probe_at = silent
                    .filter(|_| self.silence.has_probe_material())
                    .map(|(_, _, oldest_sent)| self.silence.probe_due(oldest_sent));
                let awaiting_material = silent.is_some() && probe_at.is_none();
                tokio::select! {
                    biased;
                    _ = self.abort.cancelled() => return Ok(()),
                    opened = &mut call, if responses.is_none() => match opened {
                        Ok(response) => {
                            responses = Some(response.into_inner());
                            window.restart_clock(Instant::now());
                            accepted_at = Some(Instant::now());
                            _counted = Some(CountedStream::new(&self.telemetry, &endpoint.key));
                        }
                        Err(status) => break StreamEnd::Broken(describe(&status)),
                    },
                    message = next_message(&mut responses), if responses.is_some() => match message {
                        // An answer with nothing in flight proves nothing about the sidecar: the
                        // stream is reopened with backoff, as after a failure (a sidecar that
                        // does this on every stream would otherwise be reconnected to in a loop).
                        Ok(Some(response)) if window.events() == 0 && window.classify(&response.event_id) == Match::Unknown => {
                            break StreamEnd::Broken(format!(
                                "the sidecar sent an answer for eventId `{}` while no event was in flight",
                                response.event_id
                            ));
                        }
                        Ok(Some(response)) => {
                            backoff.reset();
                            failures = 0;
                            self.endpoints.serving(&endpoint);
                            self.sidecar_is_back(opened_at);
                            if let Flow::Restart = self.on_response(response, window).await? {
                                break StreamEnd::Restart;
                            }
                        }
                        Ok(None) => break StreamEnd::Broken(ENDED_BY_SIDECAR.into()),
                        Err(status) if unreadable(&status) => break StreamEnd::Unreadable(describe(&status)),
                        Err(status) if sent_by_handler(&status) => break StreamEnd::FailedBySidecar(describe(&status)),
                        Err(status) => break StreamEnd::Broken(describe(&status)),
                    },
                    _ = tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + far)), if deadline.is_some() => {
                        if let Flow::Restart = self.on_timeout(window, timeout).await? {
                            break StreamEnd::Restart;
                        }
                    },
                    item = self.input.recv(), if input_open && window.events() < self.config.window => match item {
                        Some(RoutedItem::Event(event)) => {
                            let span = traces::event_span(&self.telemetry.connector, self.partition, &event);
                            let request = traced_request(&event, &span, self.partition, self.config.payload);
                            let now = Instant::now();
                            window.push_event(event, span, now);
                            self.silence.sent(now);
                            if requests.try_send(request).is_err() {
                                break StreamEnd::Broken("the request stream closed".into());
                            }
                        }
                        Some(RoutedItem::ReadUpTo(position)) => window.push_read_up_to(position),
                        None => input_open = false,
                    },
                    _ = tokio::time::sleep_until(probe_at.unwrap_or_else(|| Instant::now() + far)), if probe_at.is_some() => {
                        if let Some(material) = self.silence.probe_material() {
                            let now = Instant::now();
                            debug!(partition = self.partition, probe = %material.event_id, unanswered = window.events(), "probing the sidecar's silence");
                            window.push_probe(material.event_id.clone(), now);
                            self.silence.sent(now);
                            if requests.try_send(build_request(&material, self.partition, self.config.payload)).is_err() {
                                break StreamEnd::Broken("the request stream closed".into());
                            }
                        }
                    },
                    _ = self.silence.material_offered(), if awaiting_material => {},
                    _ = tokio::time::sleep_until(accepted_at.map_or_else(|| Instant::now() + far, |at| at + HEALTHY_STREAM)),
                        if accepted_at.is_some() && self.telemetry.sidecar_outage.ongoing().is_some() => {
                        accepted_at = None;
                        self.sidecar_is_back(opened_at);
                    },
                    endpoints = self.endpoints.changed() => {
                        if endpoints.owner(self.partition).is_some_and(|owner| owner.key != endpoint.key) {
                            break StreamEnd::Moved;
                        }
                    },
                }
            };
            let reason = match end {
                StreamEnd::Restart => continue,
                StreamEnd::Moved => {
                    debug!(partition = self.partition, "the sidecar's endpoints changed: leaving {endpoint}, resending {} unanswered event(s)", window.events());
                    continue;
                }
                StreamEnd::Broken(reason) if self.endpoints.failed(&endpoint, &reason) => {
                    debug!(partition = self.partition, "sidecar stream on {endpoint} failed: {reason}; moving to another endpoint at once");
                    continue;
                }
                StreamEnd::Broken(reason) => reason,
                StreamEnd::FailedBySidecar(status) => match self.on_sidecar_failure(window, status, false).await? {
                    Some(reason) => reason,
                    None => continue,
                },
                StreamEnd::Unreadable(status) => match self.on_sidecar_failure(window, status, true).await? {
                    Some(reason) => reason,
                    None => continue,
                },
            };
            failures = failures.wrapping_add(1);
            let delay = backoff.next_delay();
            if reason == ENDED_BY_SIDECAR {
                info!(partition = self.partition, "the sidecar ended the stream (restarting?); reconnecting in {delay:?} and resending {} unanswered event(s)", window.events());
            } else if self.telemetry.sidecar_outage.failed(&reason) {
                warn!(
                    connector = %self.telemetry.connector,
                    partition = self.partition,
                    address = %endpoint,
                    "sidecar stream failed: {reason}; every partition reconnects with backoff and resends what is unanswered \
                     (nothing is lost); further failures are logged at debug level until the sidecar answers again"
                );
            } else {
                debug!(
                    connector = %self.telemetry.connector,
                    partition = self.partition,
                    "sidecar stream failed: {reason}; reconnecting in {delay:?} and resending {} unanswered event(s)",
                    window.events()
                );
            }
            tokio::select! {
                _ = self.abort.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn on_response(&mut self, response: ProjectionResponse, window: &mut Window) -> Result<Flow, ReducerError> {
        let matched = window.classify(&response.event_id);
        if matched != Match::Unknown {
            self.silence.answer(Instant::now());
        }
        match matched {
            Match::Front => {}
            Match::Probe => {
                // Probes are sent only to a sidecar that answers what it handles; the answer
                // is discarded, whatever it says.
                self.settle(window, &response.event_id).await?;
                return Ok(Flow::Continue);
            }
            Match::Later if self.config.answers == Answers::Handled => {
                self.settle(window, &response.event_id).await?;
            }
            Match::Later => {
                let reason = format!(
                    "the sidecar answered event `{}`, sent after this one, before answering this one; responses must come back in request order. \
                     If the sidecar sends no answer for events it has no handler for (as Eventuous Connector sidecars do), set `sidecar.answers: handled`",
                    response.event_id
                );
                self.poison(window, reason).await?;
                return Ok(Flow::Restart);
            }
            Match::Unknown => {
                let reason = format!(
                    "the sidecar answered with eventId `{}`, which matches no event in flight; each response must carry its request's eventId (a response that came after `request_timeout_ms` looks like this too)",
                    response.event_id
                );
                self.poison(window, reason).await?;
                return Ok(Flow::Restart);
            }
        }
        if !response.metadata.is_empty() {
            debug!(partition = self.partition, event_id = %response.event_id, metadata = ?response.metadata, "sidecar response metadata");
        }
        if let Some(error) = &response.error {
            if error.retryable {
                let attempts = window.bump_front_attempts();
                if attempts <= self.config.max_retries {
                    warn!(partition = self.partition, event_id = %response.event_id, "the sidecar reported a retryable error (attempt {attempts}): {}; sending the event again", error.message);
                    return Ok(Flow::Restart);
                }
            }
            let reason = format!("the sidecar reported an error: {}", error.message);
            self.poison(window, reason).await?;
            return Ok(Flow::Continue);
        }
        let ops: Result<Vec<S::Op>, _> =
            response.all_operations().filter_map(|any| self.sink.decode(any).transpose()).collect();
        match ops {
            Ok(ops) => {
                if let Some((_, _, sent_at)) = window.front() {
                    self.telemetry.sidecar_round_trip.observe_duration(sent_at.elapsed());
                }
                let (event, span) = window.pop_front().expect("classified as front");
                self.telemetry.in_flight.inc_by(window.in_flight_change());
                // What the sidecar wrote for this event, for a sidecar's author (`RUST_LOG=debug`
                // or `projector_gateway::reducer=debug`); nothing is formatted otherwise.
                if tracing::enabled!(tracing::Level::DEBUG) {
                    debug!(
                        connector = %self.telemetry.connector,
                        stream = %event.stream,
                        position = event.position,
                        event_type = %event.event_type,
                        "{} operation(s): {ops:?}",
                        ops.len()
                    );
                }
                self.silence.answered(&event);
                traces::answered(&span, ops.len());
                self.emit(BatchItem::Apply { event: EventRef::traced(event, self.partition, span), ops }).await?;
            }
            Err(e) => self.poison(window, format!("the sidecar's answer cannot be applied: {e}")).await?,
        }
        Ok(Flow::Continue)
    }

    /// `answers: handled`: the sidecar answered `event_id`, a request sent after the oldest
    /// unanswered event, so it saw every event before that request and answered none: they
    /// are ignored (their positions still count).
    async fn settle(&mut self, window: &mut Window, event_id: &str) -> Result<(), ReducerError> {
        let settled = window.settle_before(event_id);
        self.telemetry.in_flight.inc_by(window.in_flight_change());
        for (event, span) in &settled.ignored {
            traces::ended_without_applying(span, "ignored", None);
            self.silence.ignored(event);
        }
        match settled.up_to {
            Some(position) => self.emit(BatchItem::Advance { partition: self.partition, position }).await,
            None => Ok(()),
        }
    }

    /// Ends the sidecar's outage, if one began before `opened_at`, with one line.
    fn sidecar_is_back(&self, opened_at: Instant) {
        if let Some((lasted, repeats)) = self.telemetry.sidecar_outage.succeeded(opened_at.into_std()) {
            info!(
                connector = %self.telemetry.connector,
                address = %self.config.shown_addresses(),
                "the sidecar answers again after {lasted:.1?} ({repeats} more failed attempt(s) across partitions while it was away)"
            );
        }
    }

    async fn on_timeout(&mut self, window: &mut Window, timeout: Duration) -> Result<Flow, ReducerError> {
        let handled = self.config.answers == Answers::Handled;
        if handled && window.probe().is_none() && !self.silence.sidecar_answered_any() {
            // Nothing to probe with: silence cannot be told from a stuck sidecar. Wait (the
            // checkpoint stays before these events), never guess.
            warn!(
                connector = %self.telemetry.connector,
                partition = self.partition,
                "{} event(s) have had no answer for {timeout:?}, and the sidecar has answered no event of this connector since it started, \
                 so nothing proves it left them unanswered on purpose (`sidecar.answers: handled`) rather than being stuck; the checkpoint \
                 stays before them. They are settled as soon as the sidecar answers any event; sending them again",
                window.events()
            );
            return Ok(Flow::Restart);
        }
        if let Some((probe, _)) = window.probe() {
            let probe = probe.to_owned();
            self.silence.distrust(&probe);
        }
        // `ignore` once skipped the event on this timer, losing answers that came late; it
        // now retries (the connector says so at start).
        if self.config.on_timeout == TimeoutPolicy::Stop {
            let reason = format!("the sidecar did not answer within {timeout:?} (sidecar.on_timeout: stop){}", self.answers_hint(window));
            self.poison(window, reason).await?;
            return Ok(Flow::Restart);
        }
        let attempts = window.bump_front_attempts();
        if attempts > self.config.max_retries {
            let reason = format!("the sidecar did not answer within {timeout:?}, {attempts} time(s){}", self.answers_hint(window));
            self.poison(window, reason).await?;
        } else if self.telemetry.sidecar_outage.failed(format_args!("no answer within {timeout:?}")) {
            warn!(
                connector = %self.telemetry.connector,
                partition = self.partition,
                "the sidecar did not answer within {timeout:?} (attempt {attempts}); reopening the stream and resending; \
                 further failures are logged at debug level until the sidecar answers again"
            );
        } else {
            debug!(
                connector = %self.telemetry.connector,
                partition = self.partition,
                "the sidecar did not answer within {timeout:?} (attempt {attempts}); reopening the stream and resending"
            );
        }
        Ok(Flow::Restart)
    }

    /// The sidecar failed the stream with a status of its own while `window`'s oldest event was
    /// unanswered: counted as an attempt at that event, which goes to the poison policy once
    /// it has failed `max_retries` + 1 times (otherwise a handler that always throws on one
    /// event would hold the partition back for ever). Then the stream is reopened: at once when
    /// the event went to the poison policy (`None`), else with backoff, for the reason returned
    /// (the replica is not suspect: its handler failed, not its transport).
    async fn on_sidecar_failure(&mut self, window: &mut Window, status: String, unreadable: bool) -> Result<Option<String>, ReducerError> {
        if let Some(position) = window.take_released_mark() {
            self.emit(BatchItem::Advance { partition: self.partition, position }).await?;
        }
        if window.front().is_none() {
            return Ok(Some(status));
        }
        let attempts = window.bump_front_attempts();
        if attempts > self.config.max_retries {
            let reason = if unreadable {
                format!(
                    "an answer of the sidecar could not be read (`{status}`) while this event was the oldest unanswered one, {attempts} time(s); \
                     a sidecar answers with `ProjectionResponse` messages within the gateway's message size limit"
                )
            } else {
                format!(
                    "the sidecar failed its stream with `{status}` while this event was the oldest unanswered one, {attempts} time(s); report a failing event with the response's `error` field"
                )
            };
            self.poison(window, reason).await?;
            return Ok(None);
        }
        Ok(Some(format!("{status} (attempt {attempts} at the oldest unanswered event)")))
    }

    /// For a sidecar configured to answer every event that leaves one unanswered while it
    /// answers others: the setting that fits it.
    fn answers_hint(&self, window: &Window) -> String {
        match window.front() {
            Some((event, _, _)) if self.config.answers == Answers::All && self.silence.sidecar_answered_any() => format!(
                ". The sidecar answers other events; if it sends no answer for event types it has no handler for (`{}` here), \
                 as Eventuous Connector sidecars do, set `sidecar.answers: handled`",
                event.event_type
            ),
            _ => String::new(),
        }
    }

    /// Applies the poison policy to the oldest unanswered event.
    async fn poison(&mut self, window: &mut Window, reason: String) -> Result<(), ReducerError> {
        let (event, span) = window.pop_front().expect("an event is in flight");
        self.telemetry.in_flight.inc_by(window.in_flight_change());
        let item = poisoned(self.policy, EventRef::traced(event, self.partition, span), reason)?;
        self.emit(item).await
    }

    async fn emit(&self, item: BatchItem<S::Op>) -> Result<(), ReducerError> {
        self.output.send(item).await.map_err(|_| ReducerError::SinkGone(self.partition))
    }
}

/// What the poison policy makes of an event that cannot be reduced or produced: an error
/// (`stop`), a move past it (`skip`) or a parked event (`park`).
pub fn poisoned<Op>(policy: PoisonPolicy, event: EventRef, reason: String) -> Result<BatchItem<Op>, ReducerError> {
    traces::poisoned(&event.span, policy, &reason);
    match policy {
        PoisonPolicy::Stop => Err(ReducerError::Poisoned { event: Box::new(event), reason }),
        PoisonPolicy::Skip => {
            warn!("skipping {event} (poison policy `skip`): {reason}");
            Ok(BatchItem::Advance { partition: event.partition, position: event.event.position })
        }
        PoisonPolicy::Park => {
            warn!("parking {event} (poison policy `park`): {reason}");
            Ok(BatchItem::Park { event, error: reason })
        }
    }
}

/// The request for `event`, carrying the trace context of its span when it is traced.
fn traced_request(event: &crate::event::Event, span: &tracing::Span, partition: u32, payload: crate::config::PayloadFormat) -> ProjectionRequest {
    let mut request = build_request(event, partition, payload);
    request.traceparent = traces::traceparent(span);
    request
}

/// A stream the sidecar accepted, counted in its endpoint's gauge while it lasts.
struct CountedStream {
    telemetry: Arc<ConnectorTelemetry>,
    endpoint: Arc<str>,
}

impl CountedStream {
    fn new(telemetry: &Arc<ConnectorTelemetry>, endpoint: &Arc<str>) -> Self {
        telemetry.sidecar_streams.opened(endpoint);
        Self { telemetry: telemetry.clone(), endpoint: endpoint.clone() }
    }
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.telemetry.sidecar_streams.closed(&self.endpoint);
    }
}

async fn next_message(responses: &mut Option<Streaming<ProjectionResponse>>) -> Result<Option<ProjectionResponse>, Status> {
    match responses {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}

/// A status the sidecar's handler sent (no transport error under it), of a kind that says
/// the handler failed rather than the sidecar being away, overloaded or shutting down.
fn sent_by_handler(status: &Status) -> bool {
    use tonic::Code;
    std::error::Error::source(status).is_none()
        && matches!(
            status.code(),
            Code::Unknown | Code::Internal | Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange | Code::DataLoss
        )
}

/// A status the gateway's own decoder made of an answer it cannot read: one over the message
/// size limit (refused from its length prefix, never buffered) or bytes that are not a
/// `ProjectionResponse` (invalid UTF-8, nesting past prost's recursion limit). Told by tonic's
/// wording; were it to change, such a failure reads as the sidecar's own, and is counted the
/// same way.
fn unreadable(status: &Status) -> bool {
    use tonic::Code;
    let message = status.message();
    std::error::Error::source(status).is_none()
        && (status.code() == Code::OutOfRange && message.starts_with("Error, decoded message length too large")
            || status.code() == Code::Internal && message.starts_with("failed to decode Protobuf message"))
}

fn describe(status: &Status) -> String {
    super::status_text(status)
}
