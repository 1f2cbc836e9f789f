//! The sidecar's answers to the sample, on one `Project` stream, as `run` asks them: the same
//! requests (`reducer::build_request`, each event's partition, the connector's payload format),
//! up to `sidecar.window` in flight, answers matched in request order.
//!
//! Nothing is retried: each event gets one answer, or what went wrong instead. An event the
//! sidecar leaves unanswered is told by a timer here (`run` settles the silences of an
//! `answers: handled` sidecar by its later answers and probes, never by a timer): once the
//! sidecar has said nothing for the timeout, every event in flight counts as unanswered by an
//! `answers: handled` sidecar, and the oldest one by a sidecar that answers all (the others
//! are sent again on a new stream, as `run` does after a timeout). A
//! stream the sidecar fails or ends is charged to its oldest unanswered event (as `run` does)
//! and the rest are sent again on a new stream.

use std::time::Duration;

use prost_types::Any;
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming, transport::Channel};

use projector_gateway::{
    config::{Answers, SidecarConfig},
    event::Event,
    partition::Partitioner,
    proto::{ProjectionRequest, ProjectionResponse, projection_client::ProjectionClient},
    reducer::{build_request, status_text},
};

/// What the sidecar did with one event.
#[derive(Debug, Clone)]
pub enum Answer {
    /// It answered with these operations (none, or `Ignore`: nothing to apply).
    Operations(Vec<Any>),
    /// It answered with its `error` field.
    Error { message: String, retryable: bool },
    /// No usable answer: the stream failed or ended while this event was the oldest
    /// unanswered one, or the answers came out of order.
    Failed(String),
    /// It said nothing.
    Silent(Silence),
}

/// How a silence was told.
#[derive(Debug, Clone, Copy)]
pub enum Silence {
    /// The sidecar answered an event sent after this one (`answers: handled`).
    Settled,
    /// The sidecar said nothing for this long while the event was in flight.
    TimedOut(Duration),
}

/// One event's answer and the partition it was sent in.
pub struct Asked {
    pub partition: u32,
    pub answer: Answer,
}

/// How one stream ended.
enum StreamEnd {
    Done,
    /// Open a new one for the events not answered yet.
    Restart,
    Failed(Status),
    Ended,
}

/// Sends `events` (in order) and collects an answer for each, waiting at most `silence` for the
/// sidecar's next answer. `Err` when the sidecar cannot be reached at all.
pub async fn ask(
    channel: Channel,
    sidecar: &SidecarConfig,
    partitioner: &Partitioner,
    events: &[Event],
    silence: Duration,
) -> Result<Vec<Asked>, String> {
    let n = events.len();
    let partitions: Vec<u32> = events.iter().map(|e| partitioner.partition_of(&e.stream)).collect();
    let mut answers: Vec<Option<Answer>> = vec![None; n];
    let handled = sidecar.answers == Answers::Handled;
    let window = sidecar.window.max(1);
    let client = ProjectionClient::new(channel)
        .max_decoding_message_size(sidecar.max_message_bytes)
        .max_encoding_message_size(sidecar.max_message_bytes);
    // The oldest event without an answer.
    let mut oldest = 0;
    while oldest < n {
        let (requests, outgoing) = mpsc::channel::<ProjectionRequest>(window + 1);
        let mut sent = oldest;
        let mut client = client.clone();
        let call = client.project(ReceiverStream::new(outgoing));
        tokio::pin!(call);
        let mut responses: Option<Streaming<ProjectionResponse>> = None;
        let mut answered = false;
        let mut deadline = Instant::now() + silence;
        let end = loop {
            while sent < n && sent - oldest < window {
                if requests.try_send(build_request(&events[sent], partitions[sent], sidecar.payload)).is_err() {
                    break;
                }
                sent += 1;
            }
            if oldest == n {
                break StreamEnd::Done;
            }
            tokio::select! {
                opened = &mut call, if responses.is_none() => match opened {
                    Ok(response) => responses = Some(response.into_inner()),
                    Err(status) => break StreamEnd::Failed(status),
                },
                message = next_message(&mut responses), if responses.is_some() => match message {
                    Ok(Some(response)) => {
                        answered = true;
                        deadline = Instant::now() + silence;
                        let id = response.event_id.clone();
                        match (oldest..sent).find(|i| events[*i].event_id == id) {
                            Some(i) if i == oldest || handled => {
                                for silent in &mut answers[oldest..i] {
                                    *silent = Some(Answer::Silent(Silence::Settled));
                                }
                                answers[i] = Some(answer_of(response));
                                oldest = i + 1;
                            }
                            Some(_) => {
                                answers[oldest] = Some(Answer::Failed(format!(
                                    "the sidecar answered event `{id}`, sent after this one, before answering this one; responses must come back \
                                     in request order. If the sidecar sends no answer for events it has no handler for, set `sidecar.answers: handled`"
                                )));
                                oldest += 1;
                                break StreamEnd::Restart;
                            }
                            None => {
                                answers[oldest] = Some(Answer::Failed(format!(
                                    "the sidecar answered with eventId `{id}`, which matches no event in flight; each response must carry its request's eventId"
                                )));
                                oldest += 1;
                                break StreamEnd::Restart;
                            }
                        }
                    }
                    Ok(None) => break StreamEnd::Ended,
                    Err(status) => break StreamEnd::Failed(status),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    // A sidecar that answers only what it handles left every event in flight
                    // unanswered; one that answers all is stuck at the oldest, and the others
                    // are sent again on a new stream.
                    let silent = if handled { sent } else { oldest + 1 };
                    for silent in &mut answers[oldest..silent] {
                        *silent = Some(Answer::Silent(Silence::TimedOut(silence)));
                    }
                    oldest = silent;
                    break StreamEnd::Restart;
                }
            }
        };
        let reason = match end {
            StreamEnd::Done | StreamEnd::Restart => continue,
            StreamEnd::Failed(status) if !answered && unreachable(&status) => {
                // The dry run asks the first replica (`dry_run::dry_run`).
                let address = sidecar.addresses().first().copied().unwrap_or_default();
                return Err(format!("the sidecar at {address} cannot be reached ({})", status_text(&status)));
            }
            StreamEnd::Failed(status) => format!("the sidecar failed its stream with `{}` while this event was the oldest unanswered one", status_text(&status)),
            StreamEnd::Ended => "the sidecar ended its stream while this event was the oldest unanswered one".to_string(),
        };
        // Every way out above leaves an event in flight; were none, nothing would move on.
        if oldest == sent {
            return Err(format!("the sidecar's stream ended with no event in flight: {reason}"));
        }
        answers[oldest] = Some(Answer::Failed(reason));
        oldest += 1;
    }
    Ok(answers
        .into_iter()
        .zip(partitions)
        .map(|(answer, partition)| Asked { partition, answer: answer.expect("every event was answered or settled") })
        .collect())
}

fn answer_of(response: ProjectionResponse) -> Answer {
    match response.error {
        Some(error) => Answer::Error { message: error.message, retryable: error.retryable },
        None => Answer::Operations(response.all_operations().cloned().collect()),
    }
}

/// A status that says the sidecar was not reached (no connection), rather than that it failed.
fn unreachable(status: &Status) -> bool {
    status.code() == Code::Unavailable || std::error::Error::source(status).is_some()
}

async fn next_message(responses: &mut Option<Streaming<ProjectionResponse>>) -> Result<Option<ProjectionResponse>, Status> {
    match responses {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}
