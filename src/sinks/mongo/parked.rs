//! The MongoDB target's parked events (`parked_collection`, one document per event, `_id`
//! `<connector>/<partition>/<position>`), read and deleted for the operator.

use futures::TryStreamExt;
use mongodb::{
    Database,
    bson::{Bson, Document, doc},
};

use super::Names;
use crate::sinks::parked::{ParkedEvent, ParkedQuery};

/// The connector's parked events `query` selects, every filter run by the server: the reason's
/// text as a regular expression of the text with its punctuation escaped (case-sensitive).
pub(super) async fn list(db: &Database, names: &Names, connector: &str, query: &ParkedQuery) -> Result<Vec<ParkedEvent>, mongodb::error::Error> {
    let mut filter = doc! { "connector": connector };
    if let Some(event_type) = &query.event_type {
        filter.insert("eventType", event_type.as_str());
    }
    if let Some(text) = &query.error_contains {
        filter.insert("error", doc! { "$regex": literal_pattern(text) });
    }
    if let Some(since) = query.since {
        // BSON dates hold milliseconds: the first one at or after `since`.
        let millis = since.timestamp_millis() + i64::from(since.timestamp_subsec_nanos() % 1_000_000 != 0);
        filter.insert("parkedAt", doc! { "$gte": mongodb::bson::DateTime::from_millis(millis) });
    }
    if !query.ids.is_empty() {
        filter.insert("_id", doc! { "$in": &query.ids });
    }
    let collection = db.collection::<Document>(&names.parked);
    let mut find = collection.find(filter).sort(doc! { "position": 1, "_id": 1 });
    if query.limit > 0 {
        find = find.limit(i64::try_from(query.limit).unwrap_or(i64::MAX));
    }
    let documents: Vec<Document> = find.await?.try_collect().await?;
    Ok(documents.iter().filter_map(parked_event).collect())
}

/// How many parked events the connector has.
pub(super) async fn count(db: &Database, names: &Names, connector: &str) -> Result<u64, mongodb::error::Error> {
    db.collection::<Document>(&names.parked).count_documents(doc! { "connector": connector }).await
}

/// Deletes the connector's parked events with these `_id`s.
pub(super) async fn discard(db: &Database, names: &Names, connector: &str, ids: &[String]) -> Result<u64, mongodb::error::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let deleted = db.collection::<Document>(&names.parked).delete_many(doc! { "connector": connector, "_id": { "$in": ids } }).await?;
    Ok(deleted.deleted_count)
}

/// A parked document as the operator sees it; `None` for one without a partition or position
/// (not written by the gateway).
fn parked_event(d: &Document) -> Option<ParkedEvent> {
    let int = |key: &str| match d.get(key) {
        Some(Bson::Int64(i)) => Some(*i),
        Some(Bson::Int32(i)) => Some(i64::from(*i)),
        Some(Bson::Double(f)) if f.fract() == 0.0 => Some(*f as i64),
        _ => None,
    };
    let text = |key: &str| d.get_str(key).unwrap_or_default().to_string();
    let parked_at = match d.get("parkedAt") {
        Some(Bson::DateTime(at)) => chrono::DateTime::from_timestamp_millis(at.timestamp_millis())
            .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default(),
        Some(Bson::String(at)) => chrono::DateTime::parse_from_rfc3339(at)
            .map(|at| at.to_utc().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|_| at.clone()),
        _ => String::new(),
    };
    Some(ParkedEvent {
        id: match d.get("_id") {
            Some(Bson::String(id)) => id.clone(),
            Some(other) => other.to_string(),
            None => return None,
        },
        partition: u32::try_from(int("partition")?).ok()?,
        position: u64::try_from(int("position")?).ok()?,
        event_id: text("eventId"),
        stream: text("stream"),
        event_type: text("eventType"),
        payload: d.get_str("payload").ok().map(str::to_string),
        error: text("error"),
        parked_at,
    })
}

/// A regular expression matching `text` as it is: every ASCII punctuation character escaped
/// (a backslash before punctuation is that character in PCRE, Go's RE2 and Python's `re`, the
/// engines of MongoDB, FerretDB and SecantusDB).
fn literal_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_matched_as_it_is() {
        assert_eq!(literal_pattern("duplicate key (code 11000): {_id: \"a.b\"}"), r#"duplicate key \(code 11000\)\: \{\_id\: \"a\.b\"\}"#);
        assert_eq!(literal_pattern("née 5$"), r"née 5\$");
    }
}
