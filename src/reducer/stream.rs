//! One partition's conversation with the sidecar: a pipelined bidirectional stream with a
//! credit window, strict in-order matching, deadlines, reconnection with resend, and the
//! poison policy for events the sidecar cannot handle.

use std::{sync::Arc, time::Duration};

use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming, transport::Channel};
use tracing::{debug, info, warn};

use super::{
    RoutedItem, build_request,
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
    Broken(String),
    /// The sidecar ended the stream with an error status of its own (a handler that threw):
    /// most likely on the oldest unanswered event, which is tried `max_retries` more times.
    FailedBySidecar(String),
}

/// The task that drives one partition's stream.
pub struct PartitionReducer<S: Sink> {
    pub partition: u32,
    pub client: ProjectionClient<Channel>,
    pub sink: Arc<S>,
    pub config: Arc<SidecarConfig>,
    pub policy: PoisonPolicy,
    pub input: mpsc::Receiver<RoutedItem>,
    pub output: mpsc::Sender<BatchItem<S::Op>>,
    /// Cancelled when the connector must stop now (error elsewhere, or shutdown deadline).
    pub abort: CancellationToken,
    pub telemetry: Arc<ConnectorTelemetry>,
}

impl<S: Sink> PartitionReducer<S> {
    /// Runs until the input is closed and every event was answered and handed on, or until
    /// aborted, or until an event is poisoned under policy `stop`.
    pub async fn run(mut self) -> Result<(), ReducerError> {
        let mut window = Window::default();
        let mut input_open = true;
        let mut backoff = Backoff::default();
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let far = Duration::from_secs(86_400 * 365);
        loop {
            let (requests, outgoing) = mpsc::channel::<ProjectionRequest>(self.config.window + 1);
            for (event, span) in window.resend_all(Instant::now()) {
                let _ = requests.try_send(traced_request(event, span, self.partition, self.config.payload));
            }
            let opened_at = Instant::now();
            let mut client = self.client.clone();
            let call = client.project(ReceiverStream::new(outgoing));
            tokio::pin!(call);
            let mut responses: Option<Streaming<ProjectionResponse>> = None;

            let end = loop {
                if let Some(position) = window.take_released_mark() {
                    self.emit(BatchItem::Advance { partition: self.partition, position }).await?;
                }
                if !input_open && window.is_empty() {
                    return Ok(());
                }
                // Counted from the send time, whether or not the response headers have come:
                // some servers (grpcio) send them only with their first answer.
                let deadline = window.front().map(|(_, _, sent_at)| sent_at + timeout);
                tokio::select! {
                    biased;
                    _ = self.abort.cancelled() => return Ok(()),
                    opened = &mut call, if responses.is_none() => match opened {
                        Ok(response) => {
                            responses = Some(response.into_inner());
                            window.restart_clock(Instant::now());
                        }
                        Err(status) => break StreamEnd::Broken(describe(&status)),
                    },
                    message = next_message(&mut responses), if responses.is_some() => match message {
                        Ok(Some(response)) => {
                            backoff.reset();
                            if let Some((lasted, repeats)) = self.telemetry.sidecar_outage.succeeded(opened_at.into_std()) {
                                info!(
                                    connector = %self.telemetry.connector,
                                    address = %self.config.address,
                                    "the sidecar answers again after {lasted:.1?} ({repeats} more failed attempt(s) across partitions while it was away)"
                                );
                            }
                            if let Flow::Restart = self.on_response(response, &mut window).await? {
                                break StreamEnd::Restart;
                            }
                        }
                        Ok(None) => break StreamEnd::Broken(ENDED_BY_SIDECAR.into()),
                        Err(status) if sent_by_handler(&status) => break StreamEnd::FailedBySidecar(describe(&status)),
                        Err(status) => break StreamEnd::Broken(describe(&status)),
                    },
                    _ = tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + far)), if deadline.is_some() => {
                        if let Flow::Restart = self.on_timeout(&mut window, timeout).await? {
                            break StreamEnd::Restart;
                        }
                    },
                    item = self.input.recv(), if input_open && window.events() < self.config.window => match item {
                        Some(RoutedItem::Event(event)) => {
                            let span = traces::event_span(&self.telemetry.connector, self.partition, &event);
                            let request = traced_request(&event, &span, self.partition, self.config.payload);
                            window.push_event(event, span, Instant::now());
                            if requests.try_send(request).is_err() {
                                break StreamEnd::Broken("the request stream closed".into());
                            }
                        }
                        Some(RoutedItem::ReadUpTo(position)) => window.push_read_up_to(position),
                        None => input_open = false,
                    },
                }
            };
            let end = match end {
                StreamEnd::FailedBySidecar(status) => self.on_sidecar_failure(&mut window, status).await?,
                other => other,
            };
            if let StreamEnd::Broken(reason) = end {
                let delay = backoff.next_delay();
                if reason == ENDED_BY_SIDECAR {
                    info!(partition = self.partition, "the sidecar ended the stream (restarting?); reconnecting in {delay:?} and resending {} unanswered event(s)", window.events());
                } else if self.telemetry.sidecar_outage.failed() {
                    warn!(
                        connector = %self.telemetry.connector,
                        partition = self.partition,
                        address = %self.config.address,
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
    }

    async fn on_response(&mut self, response: ProjectionResponse, window: &mut Window) -> Result<Flow, ReducerError> {
        match window.classify(&response.event_id) {
            Match::Front => {}
            Match::Later if self.config.answers == Answers::Handled => {
                self.acknowledge_skipped(window, &response.event_id).await?;
            }
            Match::Later => {
                let reason = format!(
                    "the sidecar answered event `{}`, sent after this one, before answering this one; responses must come back in request order",
                    response.event_id
                );
                self.poison(window, reason).await?;
                return Ok(Flow::Restart);
            }
            Match::Unknown if window.events() == 0 => {
                warn!(partition = self.partition, "the sidecar sent a response for eventId `{}` while no event was in flight; reopening the stream", response.event_id);
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
                traces::answered(&span, ops.len());
                self.emit(BatchItem::Apply { event: EventRef::traced(event, self.partition, span), ops }).await?;
            }
            Err(e) => self.poison(window, format!("the sidecar's answer cannot be applied: {e}")).await?,
        }
        Ok(Flow::Continue)
    }

    /// `answers: handled`: the sidecar answered `event_id`, so it skipped every event before
    /// it on this stream; those are ignored (their positions still count).
    async fn acknowledge_skipped(&mut self, window: &mut Window, event_id: &str) -> Result<(), ReducerError> {
        loop {
            if let Some(position) = window.take_released_mark() {
                self.emit(BatchItem::Advance { partition: self.partition, position }).await?;
            }
            if window.classify(event_id) == Match::Front {
                return Ok(());
            }
            let (skipped, span) = window.pop_front().expect("the answered event is still in the window");
            traces::ended_without_applying(&span, "ignored", None);
            debug!(partition = self.partition, event_id = %skipped.event_id, "not answered by the sidecar before a later event: ignored (sidecar.answers: handled)");
            self.emit(BatchItem::Advance { partition: self.partition, position: skipped.position }).await?;
        }
    }

    async fn on_timeout(&mut self, window: &mut Window, timeout: Duration) -> Result<Flow, ReducerError> {
        match self.config.on_timeout {
            TimeoutPolicy::Retry => {}
            TimeoutPolicy::Ignore => {
                let (event, span) = window.pop_front().expect("an event is in flight");
                traces::ended_without_applying(&span, "ignored", Some("no answer within the request timeout"));
                debug!(partition = self.partition, event_id = %event.event_id, "no answer within {timeout:?}: ignored (sidecar.on_timeout: ignore)");
                self.emit(BatchItem::Advance { partition: self.partition, position: event.position }).await?;
                // A late answer to it must not meet the next event: start a fresh stream.
                return Ok(Flow::Restart);
            }
            TimeoutPolicy::Stop => {
                self.poison(window, format!("the sidecar did not answer within {timeout:?} (sidecar.on_timeout: stop)")).await?;
                return Ok(Flow::Restart);
            }
        }
        let attempts = window.bump_front_attempts();
        if attempts > self.config.max_retries {
            let reason = format!("the sidecar did not answer within {timeout:?}, {attempts} time(s)");
            self.poison(window, reason).await?;
        } else if self.telemetry.sidecar_outage.failed() {
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
    /// event would hold the partition back for ever). Then the stream is reopened.
    async fn on_sidecar_failure(&mut self, window: &mut Window, status: String) -> Result<StreamEnd, ReducerError> {
        if let Some(position) = window.take_released_mark() {
            self.emit(BatchItem::Advance { partition: self.partition, position }).await?;
        }
        if window.front().is_none() {
            return Ok(StreamEnd::Broken(status));
        }
        let attempts = window.bump_front_attempts();
        if attempts > self.config.max_retries {
            let reason = format!(
                "the sidecar failed its stream with `{status}` while this event was the oldest unanswered one, {attempts} time(s); report a failing event with the response's `error` field"
            );
            self.poison(window, reason).await?;
            return Ok(StreamEnd::Restart);
        }
        Ok(StreamEnd::Broken(format!("{status} (attempt {attempts} at the oldest unanswered event)")))
    }

    /// Applies the poison policy to the oldest unanswered event.
    async fn poison(&mut self, window: &mut Window, reason: String) -> Result<(), ReducerError> {
        let (event, span) = window.pop_front().expect("an event is in flight");
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

fn describe(status: &Status) -> String {
    let source = std::error::Error::source(status).map(|s| format!(" ({s})")).unwrap_or_default();
    format!("{:?}: {}{source}", status.code(), status.message())
}
