//! The connector's parked events in the `parked_events` index (one document per event, id
//! `<connector>/<partition>/<position>`), read and deleted for the operator.
//!
//! The index is created at start with an explicit mapping (`checkpoints::create_indices`):
//! `connector` and `event_type` are `keyword`s, so the engine filters them exactly (`term`),
//! with the time (`parked_at`, a `date`) and the ids; `error` is analysed `text`, which no
//! query matches as a case-sensitive substring, so the reason is filtered here, in the
//! gateway, with [`ParkedQuery::matches`] on the hits, page after page, until `limit` of them
//! pass.
//!
//! Parks are written with the sink's `refresh` setting (by default not refreshed), so the
//! listing and the discard refresh the index first: an event parked just before is found. A
//! discard deletes with `refresh=true`, so a listing right after it no longer sees what it
//! deleted. A parked index that does not exist (deleted since the start) holds nothing.

use elasticsearch::{Elasticsearch, http::Method};
use serde_json::{Value, json};

use super::{
    Names,
    client::{self, RequestError, encode_segment},
};
use crate::sinks::{
    SinkError, SinkErrorKind,
    parked::{ParkedEvent, ParkedQuery},
};

/// Hits per search request of a listing.
const PAGE: usize = 1000;

/// `what` failed with `e`: refused, or an outage when `e` is transient.
fn error(names: &Names, what: &str, e: RequestError) -> SinkError {
    SinkError::new(SinkErrorKind::Refused, format!("Elasticsearch target `{}`: {what}: {}", names.display, e.message)).unreachable_if(e.transient)
}

/// Whether the engine answered that the index does not exist.
fn no_index(e: &RequestError) -> bool {
    e.message.contains("index_not_found_exception")
}

/// The connector's parked events `query` selects, by position then id.
pub async fn list(client: &Elasticsearch, names: &Names, connector: &str, query: &ParkedQuery) -> Result<Vec<ParkedEvent>, SinkError> {
    match search(client, names, connector, query).await {
        Err(e) if no_index(&e) => Ok(Vec::new()),
        found => found.map_err(|e| error(names, &format!("cannot read the parked events of index `{}`", names.parked), e)),
    }
}

/// How many parked events the connector has (0 without a parked index).
pub async fn count(client: &Elasticsearch, names: &Names, connector: &str) -> Result<u64, SinkError> {
    let index = encode_segment(&names.parked);
    let body = serde_json::to_vec(&json!({"query": {"term": {"connector": connector}}})).expect("JSON");
    let counted = async {
        client::send(client, Method::Post, &format!("/{index}/_refresh"), None).await?;
        client::send_json(client, Method::Post, &format!("/{index}/_count"), Some(body)).await
    };
    match counted.await {
        Ok((answer, _)) => Ok(answer["count"].as_u64().unwrap_or(0)),
        Err(e) if no_index(&e) => Ok(0),
        Err(e) => Err(error(names, &format!("cannot count the parked events of index `{}`", names.parked), e)),
    }
}

async fn search(client: &Elasticsearch, names: &Names, connector: &str, query: &ParkedQuery) -> Result<Vec<ParkedEvent>, RequestError> {
    let index = encode_segment(&names.parked);
    client::send(client, Method::Post, &format!("/{index}/_refresh"), None).await?;
    let mut filter = vec![json!({"term": {"connector": connector}})];
    if let Some(event_type) = &query.event_type {
        filter.push(json!({"term": {"event_type": event_type}}));
    }
    if let Some(since) = query.since_text() {
        filter.push(json!({"range": {"parked_at": {"gte": since}}}));
    }
    if !query.ids.is_empty() {
        filter.push(json!({"ids": {"values": &query.ids}}));
    }
    // Sorting on `_id` needs its field data, which Elasticsearch 8 refuses: the engine sorts by
    // position then partition (unique within a connector, so pages follow each other with
    // `search_after`), and the events of one position are put in id order here.
    // A page of `limit` and one more shows where the position changes, unless the reason is
    // filtered here (most hits may fail it).
    let size = if query.limit == 0 || query.error_contains.is_some() { PAGE } else { (query.limit + 1).min(PAGE) };
    let mut body = json!({
        "size": size,
        "track_total_hits": false,
        "query": {"bool": {"filter": filter}},
        "sort": [{"position": "asc"}, {"partition": "asc"}],
    });
    let mut found: Vec<ParkedEvent> = Vec::new();
    // Once `limit` events passed: the position of the last of them; the others of that
    // position are still read, so the first ones by id are kept.
    let mut last_position = None;
    'pages: loop {
        let (reply, _) = client::send_json(client, Method::Post, &format!("/{index}/_search"), Some(body.to_string().into_bytes())).await?;
        let hits = reply["hits"]["hits"].as_array().cloned().unwrap_or_default();
        for hit in &hits {
            let Some(event) = parked_event(hit) else { continue };
            if last_position.is_some_and(|last| event.position > last) {
                break 'pages;
            }
            if query.matches(&event) {
                found.push(event);
                if query.limit > 0 && found.len() == query.limit {
                    last_position = Some(found[query.limit - 1].position);
                }
            }
        }
        match hits.last() {
            Some(last) if hits.len() == size => body["search_after"] = last["sort"].clone(),
            _ => break,
        }
    }
    found.sort_by(|a, b| (a.position, &a.id).cmp(&(b.position, &b.id)));
    if query.limit > 0 {
        found.truncate(query.limit);
    }
    Ok(found)
}

/// Deletes the connector's parked events with these ids: those of them a search finds with the
/// connector's name (after a refresh), by id in one `_bulk` request refreshed at once.
pub async fn discard(client: &Elasticsearch, names: &Names, connector: &str, ids: &[String]) -> Result<u64, SinkError> {
    if ids.is_empty() {
        return Ok(0);
    }
    match delete(client, names, connector, ids).await {
        Err(e) if no_index(&e) => Ok(0),
        deleted => deleted.map_err(|e| error(names, &format!("cannot discard parked events of index `{}`", names.parked), e)),
    }
}

async fn delete(client: &Elasticsearch, names: &Names, connector: &str, ids: &[String]) -> Result<u64, RequestError> {
    let index = encode_segment(&names.parked);
    client::send(client, Method::Post, &format!("/{index}/_refresh"), None).await?;
    let mut deleted = 0;
    // An `ids` query and a page of hits each stay well below the engine's limits.
    for chunk in ids.chunks(PAGE) {
        let query = json!({
            "size": chunk.len(),
            "_source": false,
            "query": {"bool": {"filter": [{"term": {"connector": connector}}, {"ids": {"values": chunk}}]}},
        });
        let (reply, _) = client::send_json(client, Method::Post, &format!("/{index}/_search"), Some(query.to_string().into_bytes())).await?;
        let hits = reply["hits"]["hits"].as_array().cloned().unwrap_or_default();
        if hits.is_empty() {
            continue;
        }
        let mut body = Vec::new();
        for hit in &hits {
            body.extend_from_slice(json!({"delete": {"_index": &names.parked, "_id": hit["_id"]}}).to_string().as_bytes());
            body.push(b'\n');
        }
        let path = "/_bulk?refresh=true&filter_path=items.*.result,items.*.error";
        let (reply, _) = client::send_json(client, Method::Post, path, Some(body)).await?;
        let items = reply["items"].as_array().cloned().unwrap_or_default();
        if let Some(failed) = items.iter().find_map(|item| item["delete"].get("error")) {
            let message = format!("deleting a parked event failed: {}", client::describe_error(failed));
            return Err(RequestError { message, transient: false });
        }
        // `not_found`: deleted by someone else since the search.
        deleted += items.iter().filter(|item| item["delete"]["result"] == "deleted").count() as u64;
    }
    Ok(deleted)
}

/// A hit as the operator sees it; `None` for a document without a partition or position (not
/// written by the gateway).
fn parked_event(hit: &Value) -> Option<ParkedEvent> {
    let source = &hit["_source"];
    let text = |key: &str| source[key].as_str().unwrap_or_default().to_string();
    let parked_at = text("parked_at");
    Some(ParkedEvent {
        id: hit["_id"].as_str()?.to_string(),
        partition: u32::try_from(source["partition"].as_u64()?).ok()?,
        position: source["position"].as_u64()?,
        event_id: text("event_id"),
        stream: text("stream"),
        event_type: text("event_type"),
        payload: source["payload"].as_str().map(str::to_string),
        error: text("error"),
        parked_at: chrono::DateTime::parse_from_rfc3339(&parked_at)
            .map(|at| at.to_utc().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or(parked_at),
    })
}
