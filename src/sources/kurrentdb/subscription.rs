//! The task that owns the `$all` subscription: it converts what the server sends into
//! deliveries for the source, and resubscribes with backoff after the last delivered position
//! when the subscription drops. Only errors that a retry cannot fix (access denied, a server
//! without filtered subscriptions) stop it, as a [`Delivery::Failed`].

use std::time::Duration;

use kurrentdb::{Client, Position as EsPosition, StreamPosition, SubscribeToAllOptions, SubscriptionEvent, SubscriptionFilter};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::convert::to_event;
use crate::{
    backoff::Backoff,
    config::NonJsonEvents,
    event::{Event, Position},
    sources::SourceError,
};

/// What the subscription hands the source, in log order.
pub enum Delivery {
    Event(Event),
    /// Everything up to this position has been read (a server checkpoint, or a skipped event).
    ReadUpTo(Position),
    /// The subscription stopped for good.
    Failed(SourceError),
}

pub struct Subscriber {
    pub client: Client,
    pub location: String,
    pub filter: Option<SubscriptionFilter>,
    pub resolve_links: bool,
    pub non_json: NonJsonEvents,
    /// The commit position to resubscribe after: the last delivered (or the connector's
    /// resume position).
    pub after: Position,
    /// The (commit, prepare) position of the last event delivered. Appended events have their
    /// own position as both; the events of an explicit transaction (legacy TCP API) share the
    /// commit position of the transaction and differ by prepare position, so telling a
    /// redelivery from the next event needs both.
    pub delivered: (u64, u64),
    pub output: mpsc::Sender<Delivery>,
}

impl Subscriber {
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let mut subscription = self.client.subscribe_to_all(&self.options()).await;
            let failure = loop {
                let delivery = match subscription.next_subscription_event().await {
                    Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                        backoff.reset();
                        let original = resolved.get_original_event();
                        let position = original.position.commit;
                        if !is_new(&mut self.delivered, (position, original.position.prepare)) {
                            // Already delivered before a resubscription.
                            continue;
                        }
                        self.after = position;
                        let recorded = resolved.event.as_ref().unwrap_or(original);
                        if !recorded.is_json && self.non_json == NonJsonEvents::Skip {
                            debug!(stream = recorded.stream_id(), event_type = %recorded.event_type, "skipping an event that is not JSON (source.kurrentdb.non_json: skip)");
                            Delivery::ReadUpTo(position)
                        } else {
                            Delivery::Event(to_event(recorded, position))
                        }
                    }
                    Ok(SubscriptionEvent::Checkpoint(reached)) if reached.commit > self.after => {
                        backoff.reset();
                        self.after = reached.commit;
                        self.delivered = (reached.commit, 0);
                        Delivery::ReadUpTo(reached.commit)
                    }
                    Ok(SubscriptionEvent::CaughtUp(_)) => {
                        info!(source = %self.location, "caught up with `$all` after position {}; following live", self.after);
                        continue;
                    }
                    Ok(SubscriptionEvent::FellBehind(_)) => {
                        info!(source = %self.location, "fell behind `$all` after position {}; the server catches up", self.after);
                        continue;
                    }
                    Ok(SubscriptionEvent::Confirmed(id)) => {
                        debug!(source = %self.location, subscription = %id, "subscribed to `$all` after position {}", self.after);
                        continue;
                    }
                    Ok(_) => continue,
                    Err(e) => break e,
                };
                if self.output.send(delivery).await.is_err() {
                    return; // The source was dropped.
                }
            };
            if is_fatal(&failure) {
                let stopped = SourceError::Stopped { location: self.location.clone(), reason: explain(&failure) };
                let _ = self.output.send(Delivery::Failed(stopped)).await;
                return;
            }
            let delay = backoff.next_delay();
            warn!(
                source = %self.location,
                "the `$all` subscription dropped: {}; resubscribing after position {} in {delay:?}",
                explain(&failure),
                self.after
            );
            tokio::time::sleep(delay).await;
        }
    }

    fn options(&self) -> SubscribeToAllOptions {
        let start = match self.after {
            0 => StreamPosition::Start,
            p => StreamPosition::Position(EsPosition { commit: p, prepare: p }),
        };
        let mut options = SubscribeToAllOptions::default().position(start);
        if let Some(filter) = &self.filter {
            options = options.filter(filter.clone());
        }
        if self.resolve_links {
            options = options.resolve_link_tos();
        }
        options
    }
}

/// Whether an event at `(commit, prepare)` comes after everything `delivered` so far (a
/// resubscription starts at the last commit position and delivers again the events of that
/// append up to the last one delivered); records it if so.
fn is_new(delivered: &mut (u64, u64), position: (u64, u64)) -> bool {
    if position <= *delivered {
        return false;
    }
    *delivered = position;
    true
}

/// Errors no resubscription can fix.
fn is_fatal(e: &kurrentdb::Error) -> bool {
    matches!(
        e,
        kurrentdb::Error::AccessDenied | kurrentdb::Error::UnsupportedFeature | kurrentdb::Error::InitializationError(_)
    )
}

/// What went wrong, in words an operator can act on.
pub fn explain(e: &kurrentdb::Error) -> String {
    match e {
        kurrentdb::Error::AccessDenied => {
            "access denied: the user of the connection string may not read `$all`; give it read access to `$all` (e.g. the `$ops` group) or fix the credentials".into()
        }
        kurrentdb::Error::UnsupportedFeature => "the server does not support filtered `$all` subscriptions (EventStoreDB 20.6 or later needed)".into(),
        kurrentdb::Error::GrpcConnectionError(inner) => {
            format!("cannot reach the server ({inner}); check that it is up and the connection string's hosts, ports and `tls` setting")
        }
        kurrentdb::Error::ConnectionClosed => "the server closed the connection".into(),
        kurrentdb::Error::Grpc { code, message } => format!("{message} (gRPC status {code:?})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::is_new;

    #[test]
    fn events_of_one_append_share_a_commit_position_and_are_all_new() {
        let mut delivered = (0, 0);
        // One append of three events at commit 100, then one at 400.
        for position in [(100, 100), (100, 180), (100, 260), (400, 400)] {
            assert!(is_new(&mut delivered, position), "{position:?}");
        }
        // A resubscription after commit 100 delivers that append's later events again.
        assert!(!is_new(&mut delivered, (100, 260)));
        assert!(!is_new(&mut delivered, (400, 400)));
        assert!(is_new(&mut delivered, (500, 500)));
    }
}
