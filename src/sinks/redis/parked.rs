//! The Redis target's parked events: the stream `parked_events:<connector>`, one entry per
//! parked event (its id is the entry's), read with `XRANGE` and filtered here, deleted with
//! `XDEL`.

use std::collections::HashMap;

use redis::{RedisError, aio::MultiplexedConnection};

use crate::sinks::parked::{ParkedEvent, ParkedQuery};

/// The stream's entries `query` selects, oldest position first.
pub(super) async fn list(conn: &mut MultiplexedConnection, key: &str, query: &ParkedQuery) -> Result<Vec<ParkedEvent>, RedisError> {
    let entries: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE").arg(key).arg("-").arg("+").query_async(conn).await?;
    let mut events: Vec<ParkedEvent> = entries.into_iter().filter_map(|(id, fields)| parked_event(id, &fields)).filter(|e| query.matches(e)).collect();
    events.sort_by(|a, b| (a.position, &a.id).cmp(&(b.position, &b.id)));
    if query.limit > 0 {
        events.truncate(query.limit);
    }
    Ok(events)
}

/// How many entries the stream holds.
pub(super) async fn count(conn: &mut MultiplexedConnection, key: &str) -> Result<u64, RedisError> {
    redis::cmd("XLEN").arg(key).query_async(conn).await
}

/// Deletes the entries with these ids (ids that are not entry ids name none).
pub(super) async fn discard(conn: &mut MultiplexedConnection, key: &str, ids: &[String]) -> Result<u64, RedisError> {
    let ids: Vec<&String> = ids.iter().filter(|id| is_entry_id(id)).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    redis::cmd("XDEL").arg(key).arg(&ids).query_async(conn).await
}

/// `<milliseconds>-<sequence>`, as Redis names stream entries.
fn is_entry_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(ms, seq)| ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok())
}

/// An entry as the operator sees it; `None` for one the gateway did not write.
fn parked_event(id: String, fields: &HashMap<String, Vec<u8>>) -> Option<ParkedEvent> {
    let text = |name: &str| fields.get(name).map(|v| String::from_utf8_lossy(v).into_owned());
    let parked_at = text("parkedAt").unwrap_or_default();
    Some(ParkedEvent {
        partition: text("partition")?.parse().ok()?,
        position: text("position")?.parse().ok()?,
        event_id: text("eventId").unwrap_or_default(),
        stream: text("stream").unwrap_or_default(),
        event_type: text("eventType").unwrap_or_default(),
        payload: text("payload"),
        error: text("error").unwrap_or_default(),
        parked_at: chrono::DateTime::parse_from_rfc3339(&parked_at)
            .map(|at| at.to_utc().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or(parked_at),
        id,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_ids_are_told_apart() {
        assert!(super::is_entry_id("1733571234567-0"));
        assert!(!super::is_entry_id("12"));
        assert!(!super::is_entry_id("bookings/0/12"));
    }
}
