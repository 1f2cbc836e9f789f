//! The gateway's own documents in the engine: the `checkpoints` index (one document per
//! connector, partition count and partition, id `<connector>/<count>/<partition>`, and the
//! connector's projection version, id `<connector>/version`) and the `parked_events` index,
//! both created at start with explicit mappings. Checkpoints are read with a search, after a
//! refresh of that index, so a checkpoint written just before a restart is seen.

use elasticsearch::{Elasticsearch, http::Method};
use serde_json::{Value, json};

use super::{
    Names,
    client::{self, Engine, RequestError, encode_segment},
};
use crate::{
    checkpoint::CheckpointRow,
    event::Position,
    sinks::{SinkError, SinkErrorKind},
};

pub fn checkpoint_id(connector: &str, partition_count: u32, partition: u32) -> String {
    format!("{connector}/{partition_count}/{partition}")
}

fn version_id(connector: &str) -> String {
    format!("{connector}/version")
}

/// The checkpoint document of a partition.
pub fn checkpoint_document(connector: &str, partition_count: u32, partition: u32, position: Position) -> Value {
    json!({
        "kind": "checkpoint",
        "connector": connector,
        "partition_count": partition_count,
        "partition": partition,
        "position": position,
        "updated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// `what` failed with `e`: a failure of `kind`, or an outage when `e` is transient.
fn error(names: &Names, kind: SinkErrorKind, what: &str, e: RequestError) -> SinkError {
    SinkError::new(kind, format!("Elasticsearch target `{}`: {what}: {}", names.display, e.message)).unreachable_if(e.transient)
}

/// Checks that the engine answers, and which engine it is.
pub async fn reach(client: &Elasticsearch, names: &Names) -> Result<Engine, SinkError> {
    client::send_json(client, Method::Get, "/_cluster/health", None)
        .await
        .map(|(_, engine)| engine)
        .map_err(|e| {
            let hint = if e.transient { "; start it, or fix `sink.elastic.url`" } else { "" };
            SinkError::refused(format!("cannot reach the Elasticsearch target `{}`: {}{hint}", names.display, e.message)).unreachable_if(e.transient)
        })
}

/// Creates the checkpoints and parked-events indices unless they exist.
pub async fn create_indices(client: &Elasticsearch, names: &Names) -> Result<(), SinkError> {
    // Written after every batch: an fsync per request would cost as much as a small batch.
    // Losing the last seconds of checkpoints in an engine crash only applies those events again.
    let checkpoints = json!({"settings": {"index.translog.durability": "async"}, "mappings": {"dynamic": false, "properties": {
        "kind": {"type": "keyword"},
        "connector": {"type": "keyword"},
        "partition_count": {"type": "long"},
        "partition": {"type": "long"},
        "position": {"type": "long"},
        "updated_at": {"type": "date"},
        "projection": {"type": "keyword"},
        "version": {"type": "keyword"},
    }}});
    let parked = json!({"mappings": {"properties": {
        "connector": {"type": "keyword"},
        "partition": {"type": "long"},
        "position": {"type": "long"},
        "event_id": {"type": "keyword"},
        "event_type": {"type": "keyword"},
        "stream": {"type": "keyword"},
        "payload": {"type": "text", "index": false},
        "error": {"type": "text"},
        "parked_at": {"type": "date"},
    }}});
    for (index, body) in [(&names.checkpoints, checkpoints), (&names.parked, parked)] {
        create_index(client, index, body).await.map_err(|e| error(names, SinkErrorKind::Schema, &format!("cannot create the index `{index}`"), e))?;
    }
    Ok(())
}

/// Creates an index with these settings and mappings; one that exists already is left as it is.
pub async fn create_index(client: &Elasticsearch, index: &str, body: Value) -> Result<(), RequestError> {
    let response = client
        .send(
            Method::Put,
            &format!("/{}", encode_segment(index)),
            Default::default(),
            Option::<&()>::None,
            Some(serde_json::to_vec(&body).expect("JSON")),
            None,
        )
        .await
        .map_err(|e| client::transport_error(&e))?;
    if response.status_code().is_success() {
        return Ok(());
    }
    let failure = client::response_error(response).await;
    if failure.message.contains("resource_already_exists_exception") {
        return Ok(());
    }
    Err(failure)
}

/// Every checkpoint document of the connector.
pub async fn load(client: &Elasticsearch, names: &Names, connector: &str) -> Result<Vec<CheckpointRow>, SinkError> {
    let hits = search(client, names, connector, "checkpoint")
        .await
        .map_err(|e| error(names, SinkErrorKind::Checkpoints, "cannot read the checkpoints", e))?;
    Ok(hits
        .iter()
        .filter_map(|source| {
            let int = |key: &str| source.get(key).and_then(Value::as_u64);
            Some(CheckpointRow {
                partition_count: u32::try_from(int("partition_count")?).ok()?,
                partition: u32::try_from(int("partition")?).ok()?,
                position: int("position")?,
            })
        })
        .collect())
}

/// The `_source` of the connector's documents of this kind (after a refresh).
pub(super) async fn search(client: &Elasticsearch, names: &Names, connector: &str, kind: &str) -> Result<Vec<Value>, RequestError> {
    let index = encode_segment(&names.checkpoints);
    client::send(client, Method::Post, &format!("/{index}/_refresh"), None).await?;
    let query = json!({
        "size": 10_000,
        "query": {"bool": {"filter": [{"term": {"connector": connector}}, {"term": {"kind": kind}}]}},
    });
    let (reply, _) = client::send_json(client, Method::Post, &format!("/{index}/_search"), Some(query.to_string().into_bytes())).await?;
    Ok(reply["hits"]["hits"].as_array().map(|hits| hits.iter().map(|h| h["_source"].clone()).collect()).unwrap_or_default())
}

/// Deletes documents of the checkpoints index by id, in one `_bulk` request.
async fn delete_ids(client: &Elasticsearch, names: &Names, ids: &[String]) -> Result<(), RequestError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut body = Vec::new();
    for id in ids {
        body.extend_from_slice(json!({"delete": {"_index": &names.checkpoints, "_id": id}}).to_string().as_bytes());
        body.push(b'\n');
    }
    let (reply, _) = client::send_json(client, Method::Post, "/_bulk?filter_path=errors,items.*.error", Some(body)).await?;
    if reply["errors"].as_bool() == Some(true) {
        return Err(RequestError { message: format!("deleting checkpoints failed: {}", reply["items"]), transient: false });
    }
    Ok(())
}

/// Deletes the checkpoints of an earlier partition count.
pub async fn delete_count(client: &Elasticsearch, names: &Names, connector: &str, partition_count: u32) -> Result<(), SinkError> {
    let ids: Vec<String> = (0..partition_count).map(|p| checkpoint_id(connector, partition_count, p)).collect();
    delete_ids(client, names, &ids).await.map_err(|e| error(names, SinkErrorKind::Checkpoints, "cannot delete checkpoints", e))
}

/// Deletes every checkpoint of the connector (a rebuild).
pub async fn delete_all(client: &Elasticsearch, names: &Names, connector: &str) -> Result<(), SinkError> {
    let rows = load(client, names, connector).await?;
    let ids: Vec<String> = rows.iter().map(|r| checkpoint_id(connector, r.partition_count, r.partition)).collect();
    delete_ids(client, names, &ids).await.map_err(|e| error(names, SinkErrorKind::Checkpoints, "cannot delete the checkpoints", e))
}

/// The projection version the connector recorded, if any.
pub async fn projection_version(client: &Elasticsearch, names: &Names, connector: &str) -> Result<Option<String>, SinkError> {
    let path = format!("/{}/_doc/{}", encode_segment(&names.checkpoints), encode_segment(&version_id(connector)));
    let response = client
        .send(Method::Get, &path, Default::default(), Option::<&()>::None, Option::<Vec<u8>>::None, None)
        .await
        .map_err(|e| error(names, SinkErrorKind::Refused, "cannot read the projection version", client::transport_error(&e)))?;
    if client::is_not_found(response.status_code()) {
        return Ok(None);
    }
    if !response.status_code().is_success() {
        return Err(error(names, SinkErrorKind::Refused, "cannot read the projection version", client::response_error(response).await));
    }
    let doc: Value =
        response.json().await.map_err(|e| error(names, SinkErrorKind::Refused, "cannot read the projection version", client::transport_error(&e)))?;
    Ok(doc["_source"]["version"].as_str().map(str::to_string))
}

/// Records the projection version (refreshed at once).
pub async fn record_version(client: &Elasticsearch, names: &Names, connector: &str, projection: &str, version: &str) -> Result<(), SinkError> {
    let path = format!("/{}/_doc/{}?refresh=true", encode_segment(&names.checkpoints), encode_segment(&version_id(connector)));
    let body = json!({"kind": "projection_version", "connector": connector, "projection": projection, "version": version});
    client::send(client, Method::Put, &path, Some(body.to_string().into_bytes()))
        .await
        .map(drop)
        .map_err(|e| error(names, SinkErrorKind::Refused, "cannot record the projection version", e))
}

/// Deletes every checkpoint and the projection version of `connector` (a dropped version).
pub async fn forget(client: &Elasticsearch, names: &Names, connector: &str) -> Result<(), SinkError> {
    delete_all(client, names, connector).await?;
    delete_ids(client, names, &[version_id(connector)]).await.map_err(|e| error(names, SinkErrorKind::Checkpoints, "cannot delete the projection version", e))
}
