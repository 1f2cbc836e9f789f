//! The SQL Server target's parked events (`<schema>.parked_events`), read and deleted for the
//! operator.
//!
//! Text compares under a binary collation (`Latin1_General_BIN2`), not the column's (SQL
//! Server's default collations ignore case): the connector and the event type exactly, the
//! reason's text as a case-sensitive substring. `parked_at` is a `datetime2` the server filled
//! in UTC (`SYSUTCDATETIME()`).

use tiberius::Query;

use super::connect::MssqlClient;
use crate::sinks::parked::{ParkedEvent, ParkedQuery};

/// Ids per statement: parameters stay well below the 2,100 of an RPC.
const IDS_PER_STATEMENT: usize = 2_000;

/// The connector's parked events `query` selects, from `table` (the quoted, qualified name).
pub(super) async fn list(
    client: &mut MssqlClient,
    table: &str,
    connector: &str,
    query: &ParkedQuery,
) -> Result<Vec<ParkedEvent>, tiberius::error::Error> {
    let ids = record_ids(&query.ids);
    if !query.ids.is_empty() && ids.is_empty() {
        return Ok(Vec::new());
    }
    let chunks: Vec<&[i64]> = if ids.is_empty() { vec![&[]] } else { ids.chunks(IDS_PER_STATEMENT).collect() };
    let mut found = Vec::new();
    for chunk in &chunks {
        found.extend(select(client, table, connector, query, chunk).await?);
    }
    if chunks.len() > 1 {
        found.sort_by_key(|e: &ParkedEvent| (e.position, e.id.parse::<i64>().unwrap_or_default()));
        if query.limit > 0 {
            found.truncate(query.limit);
        }
    }
    Ok(found)
}

/// One `SELECT` of [`list`], for these ids (none: any).
async fn select(
    client: &mut MssqlClient,
    table: &str,
    connector: &str,
    query: &ParkedQuery,
    ids: &[i64],
) -> Result<Vec<ParkedEvent>, tiberius::error::Error> {
    let mut conditions = vec!["connector = @P1 COLLATE Latin1_General_BIN2".to_string()];
    let mut count = 1;
    let mut next = || {
        count += 1;
        count
    };
    if query.event_type.is_some() {
        // `=` ignores trailing spaces, even under a binary collation: the lengths compare too.
        let n = next();
        conditions.push(format!("event_type = @P{n} COLLATE Latin1_General_BIN2 AND DATALENGTH(event_type) = DATALENGTH(@P{n})"));
    }
    // CHARINDEX finds no empty text: an empty one filters nothing, as in `ParkedQuery::matches`.
    let error_contains = query.error_contains.as_deref().filter(|text| !text.is_empty());
    if error_contains.is_some() {
        conditions.push(format!("CHARINDEX(@P{} COLLATE Latin1_General_BIN2, error COLLATE Latin1_General_BIN2) > 0", next()));
    }
    if query.since.is_some() {
        conditions.push(format!("parked_at >= @P{}", next()));
    }
    if !ids.is_empty() {
        let marks: Vec<String> = ids.iter().map(|_| format!("@P{}", next())).collect();
        conditions.push(format!("id IN ({})", marks.join(", ")));
    }
    let top = if query.limit > 0 { format!("TOP (@P{}) ", next()) } else { String::new() };
    let sql = format!(
        "SELECT {top}id, [partition], position, event_id, stream, event_type, payload, error, parked_at FROM {table} WHERE {} \
         ORDER BY position, id",
        conditions.join(" AND ")
    );
    let mut statement = Query::new(sql);
    statement.bind(connector);
    if let Some(event_type) = &query.event_type {
        statement.bind(event_type.as_str());
    }
    if let Some(text) = error_contains {
        statement.bind(text);
    }
    if let Some(since) = query.since {
        statement.bind(since);
    }
    for id in ids {
        statement.bind(*id);
    }
    if query.limit > 0 {
        statement.bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
    }
    let rows = statement.query(client).await?.into_first_result().await?;
    rows.iter().map(parked_event).collect()
}

/// Deletes the connector's parked events with these ids (ids that are not numbers name none).
/// How many parked events the connector has in `table`.
pub(super) async fn count(client: &mut MssqlClient, table: &str, connector: &str) -> Result<u64, tiberius::error::Error> {
    let mut statement = Query::new(format!("SELECT COUNT_BIG(*) FROM {table} WHERE connector = @P1 COLLATE Latin1_General_BIN2"));
    statement.bind(connector);
    let row = statement.query(client).await?.into_row().await?;
    Ok(row.and_then(|r| r.get::<i64, _>(0)).unwrap_or(0) as u64)
}

pub(super) async fn discard(client: &mut MssqlClient, table: &str, connector: &str, ids: &[String]) -> Result<u64, tiberius::error::Error> {
    let mut deleted = 0;
    for chunk in record_ids(ids).chunks(IDS_PER_STATEMENT) {
        let marks: Vec<String> = (0..chunk.len()).map(|n| format!("@P{}", n + 2)).collect();
        let mut statement =
            Query::new(format!("DELETE FROM {table} WHERE connector = @P1 COLLATE Latin1_General_BIN2 AND id IN ({})", marks.join(", ")));
        statement.bind(connector);
        for id in chunk {
            statement.bind(*id);
        }
        deleted += statement.execute(client).await?.total();
    }
    Ok(deleted)
}

/// The ids that are numbers (the table's `bigint` ids), each once, in order.
fn record_ids(ids: &[String]) -> Vec<i64> {
    let mut ids: Vec<i64> = ids.iter().filter_map(|id| id.parse().ok()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A row of the `SELECT` of [`select`].
fn parked_event(row: &tiberius::Row) -> Result<ParkedEvent, tiberius::error::Error> {
    let null = |column: &str| tiberius::error::Error::Conversion(format!("NULL in the `{column}` of a parked event").into());
    let text = |i: usize, column: &str| row.try_get::<&str, _>(i)?.map(str::to_string).ok_or_else(|| null(column));
    let parked_at: chrono::NaiveDateTime = row.try_get(8)?.ok_or_else(|| null("parked_at"))?;
    Ok(ParkedEvent {
        id: row.try_get::<i64, _>(0)?.ok_or_else(|| null("id"))?.to_string(),
        partition: row.try_get::<i32, _>(1)?.ok_or_else(|| null("partition"))? as u32,
        position: row.try_get::<i64, _>(2)?.ok_or_else(|| null("position"))? as u64,
        event_id: text(3, "event_id")?,
        stream: text(4, "stream")?,
        event_type: text(5, "event_type")?,
        payload: row.try_get::<&str, _>(6)?.map(str::to_string),
        error: text(7, "error")?,
        parked_at: parked_at.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_are_not_numbers_name_nothing() {
        assert_eq!(record_ids(&["7".into(), "x".into(), "3".into(), "7".into(), "".into()]), [3, 7]);
    }
}
