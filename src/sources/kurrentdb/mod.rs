//! KurrentDB (EventStoreDB) as an event source: a catch-up subscription to `$all` from the
//! stored position, which the server turns into a live one once it has caught up, so there is
//! no gap or duplicate at the switch.
//!
//! The subscription runs in its own task and hands events to the pipeline through a bounded
//! channel: the pipeline drains what is ready into one batch without ever dropping a pending
//! read of the subscription, and a slow pipeline slows the subscription down (the server then
//! falls back to catch-up reads on its side). When the subscription drops (server restart,
//! leader change, "consumer too slow"), the task resubscribes with backoff from the last event
//! it handed on. Positions are `$all` commit positions, as Eventuous stores them.

mod convert;
mod filter;
mod subscription;

use std::time::Duration;

use futures::{FutureExt, future::BoxFuture};
use kurrentdb::{Client, ClientSettings, ReadAllOptions, StreamPosition};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{EventSource, SourceBatch, SourceError};
use crate::{
    config::{FilterConfig, KurrentdbSourceConfig},
    event::Position,
};
use subscription::{Delivery, Subscriber};

/// How long the first contact with the server may take before `open` reports it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

pub struct KurrentdbSource {
    deliveries: mpsc::Receiver<Delivery>,
    subscriber: JoinHandle<()>,
    batch_size: usize,
    /// A failure that came after events still to be handed over.
    failure: Option<SourceError>,
    location: String,
}

impl crate::sources::OpenSource for KurrentdbSource {
    type Settings = crate::config::KurrentdbSourceConfig;

    async fn open(settings: &Self::Settings, filter: &crate::config::FilterConfig, after: Position) -> Result<Self, SourceError> {
        Self::open(settings, filter, after).await
    }

    /// `$all`'s head also moves with system events and checkpoint streams the connector never
    /// sees, so head minus checkpoint would not be a lag: no probe.
    async fn head(_settings: &Self::Settings) -> Result<Option<Box<dyn crate::sources::head::HeadProbe>>, SourceError> {
        Ok(None)
    }
}

impl KurrentdbSource {
    /// Connects (checking that the server answers and lets these credentials read `$all`) and
    /// subscribes after `after` (0: from the start of `$all`).
    pub async fn open(config: &KurrentdbSourceConfig, filter: &FilterConfig, after: Position) -> Result<Self, SourceError> {
        let location = location(&config.connection_string);
        let open_error = |reason: String| SourceError::Open { location: location.clone(), reason };
        let settings: ClientSettings = config
            .connection_string
            .parse()
            .map_err(|e: kurrentdb::ClientSettingsParseError| open_error(e.message().to_owned()))?;
        let client = Client::new(settings).map_err(|e| open_error(e.to_string()))?;
        match tokio::time::timeout(CONNECT_TIMEOUT, probe(&client)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(open_error(subscription::explain(&e))),
            Err(_) => return Err(open_error(format!("no answer within {CONNECT_TIMEOUT:?}; is the server up and the connection string right?"))),
        }
        let (tx, deliveries) = mpsc::channel(config.batch_size.max(16) * 4);
        let subscriber = Subscriber {
            client,
            location: location.clone(),
            filter: filter::server_filter(filter, config.checkpoint_interval),
            resolve_links: config.resolve_links,
            non_json: config.non_json,
            after,
            delivered: (after, after),
            output: tx,
        };
        Ok(Self {
            deliveries,
            subscriber: tokio::spawn(subscriber.run()),
            batch_size: config.batch_size,
            failure: None,
            location,
        })
    }
}

impl Drop for KurrentdbSource {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

impl EventSource for KurrentdbSource {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<SourceBatch, SourceError>> {
        async move {
            if let Some(failure) = self.failure.take() {
                return Err(failure);
            }
            let mut batch = SourceBatch::default();
            // Wait for the first delivery, then take whatever else is ready, up to a batch.
            let mut next = self.deliveries.recv().await;
            loop {
                match next {
                    Some(Delivery::Event(event)) => {
                        batch.end = batch.end.max(event.position);
                        batch.events.push(event);
                    }
                    Some(Delivery::ReadUpTo(position)) => batch.end = batch.end.max(position),
                    Some(Delivery::Failed(failure)) => {
                        if batch.events.is_empty() && batch.end == 0 {
                            return Err(failure);
                        }
                        // Hand over what was read first; the failure comes with the next call.
                        self.failure = Some(failure);
                        break;
                    }
                    None => {
                        return Err(SourceError::Stopped {
                            location: self.location.clone(),
                            reason: "the subscription task ended unexpectedly".into(),
                        });
                    }
                }
                if batch.events.len() >= self.batch_size {
                    break;
                }
                match self.deliveries.try_recv() {
                    Ok(delivery) => next = Some(delivery),
                    Err(_) => break,
                }
            }
            Ok(batch)
        }
        .boxed()
    }
}

/// Reads the last event of `$all`: the server answers, and the credentials may read `$all`.
async fn probe(client: &Client) -> Result<(), kurrentdb::Error> {
    let options = ReadAllOptions::default().position(StreamPosition::End).backwards().max_count(1);
    let mut read = client.read_all(&options).await?;
    read.next().await?;
    Ok(())
}

/// The connection string without credentials, for messages.
fn location(connection_string: &str) -> String {
    match (connection_string.find("://"), connection_string.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://{}", &connection_string[..scheme], &connection_string[at + 1..]),
        _ => connection_string.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_never_show_credentials() {
        assert_eq!(super::location("esdb://admin:changeit@db:2113?tls=false"), "esdb://db:2113?tls=false");
        assert_eq!(super::location("kurrentdb://db:2113"), "kurrentdb://db:2113");
    }
}
