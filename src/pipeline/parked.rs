//! The operator's verbs over a connector's parked events (`projector-gateway parked`, the
//! management API's `/connectors/{id}/parked`): open the connector's sink and list or discard
//! what the poison policy `park` recorded there, whether or not the connector is running (the
//! connector only ever adds parked events; discarding one it is adding waits on the target's
//! own locking).

use super::{ConnectorError, WithSink, with_sink};
use crate::{
    config::ConnectorConfig,
    sinks::{
        Sink,
        parked::{ParkedEvent, ParkedQuery},
    },
};

/// The connector's parked events `query` selects, oldest position first.
pub async fn list_parked(config: ConnectorConfig, query: ParkedQuery) -> Result<Vec<ParkedEvent>, ConnectorError> {
    with_sink(config, &super::RunContext::default(), List(query)).await
}

/// Deletes the connector's parked events with these record ids; how many it deleted.
pub async fn discard_parked(config: ConnectorConfig, ids: Vec<String>) -> Result<u64, ConnectorError> {
    with_sink(config, &super::RunContext::default(), Discard(ids)).await
}

struct List(ParkedQuery);

impl WithSink for List {
    type Output = Vec<ParkedEvent>;

    async fn with<S: Sink>(self, sink: S, config: ConnectorConfig) -> Result<Self::Output, ConnectorError> {
        sink.parked_events(&self.0).await.map_err(|error| ConnectorError::Sink { connector: config.id, error })
    }
}

struct Discard(Vec<String>);

impl WithSink for Discard {
    type Output = u64;

    async fn with<S: Sink>(self, sink: S, config: ConnectorConfig) -> Result<Self::Output, ConnectorError> {
        sink.discard_parked(&self.0).await.map_err(|error| ConnectorError::Sink { connector: config.id, error })
    }
}
