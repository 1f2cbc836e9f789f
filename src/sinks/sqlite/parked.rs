//! The SQLite target's parked events (`parked_events`), read and deleted for the operator.

use rusqlite::{Connection, params_from_iter};

use crate::sinks::parked::{ParkedEvent, ParkedQuery};

/// The connector's parked events `query` selects. The time filter runs here, not in SQL: the
/// rows hold RFC 3339 text with any offset, which SQLite's text comparison would misorder.
pub(super) fn list(conn: &Connection, connector: &str, query: &ParkedQuery) -> rusqlite::Result<Vec<ParkedEvent>> {
    let mut sql = String::from(
        r#"SELECT id, "partition", position, event_id, stream, event_type, payload, error, parked_at
           FROM parked_events WHERE connector = ?1"#,
    );
    let mut params: Vec<String> = vec![connector.to_owned()];
    if let Some(event_type) = &query.event_type {
        params.push(event_type.clone());
        sql.push_str(&format!(" AND event_type = ?{}", params.len()));
    }
    if let Some(text) = &query.error_contains {
        params.push(text.clone());
        sql.push_str(&format!(" AND instr(error, ?{}) > 0", params.len()));
    }
    if !query.ids.is_empty() {
        let first = params.len() + 1;
        params.extend(query.ids.iter().cloned());
        let marks: Vec<String> = (first..=params.len()).map(|n| format!("CAST(?{n} AS INTEGER)")).collect();
        sql.push_str(&format!(" AND id IN ({})", marks.join(", ")));
    }
    sql.push_str(" ORDER BY position, id");
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map(params_from_iter(params.iter()), |r| {
        Ok(ParkedEvent {
            id: r.get::<_, i64>(0)?.to_string(),
            partition: r.get(1)?,
            position: r.get::<_, i64>(2)? as u64,
            event_id: r.get(3)?,
            stream: r.get(4)?,
            event_type: r.get(5)?,
            payload: r.get(6)?,
            error: r.get(7)?,
            parked_at: in_utc(&r.get::<_, String>(8)?),
        })
    })?;
    let mut found = Vec::new();
    for row in rows {
        let event = row?;
        if query.matches(&event) {
            found.push(event);
            if found.len() == query.limit {
                break;
            }
        }
    }
    Ok(found)
}

/// How many parked events the connector has.
pub(super) fn count(conn: &Connection, connector: &str) -> rusqlite::Result<u64> {
    conn.query_row("SELECT count(*) FROM parked_events WHERE connector = ?1", [connector], |r| r.get::<_, i64>(0)).map(|n| n as u64)
}

/// Deletes the connector's parked events with these ids (ids that are not numbers name none).
pub(super) fn discard(conn: &Connection, connector: &str, ids: &[String]) -> rusqlite::Result<u64> {
    let mut deleted = 0;
    let mut statement = conn.prepare("DELETE FROM parked_events WHERE connector = ?1 AND id = ?2")?;
    for id in ids.iter().filter_map(|id| id.parse::<i64>().ok()) {
        deleted += statement.execute(rusqlite::params![connector, id])? as u64;
    }
    Ok(deleted)
}

/// A stored time as RFC 3339 in UTC with milliseconds (as the other targets give it), or as
/// stored when it is not RFC 3339.
fn in_utc(stored: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(stored)
        .map(|at| at.to_utc().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|_| stored.to_owned())
}
