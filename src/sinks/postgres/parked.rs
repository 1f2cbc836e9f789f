//! The PostgreSQL target's parked events (`<schema>.parked_events`), read and deleted for the
//! operator.

use tokio_postgres::{Client, types::ToSql};

use crate::sinks::parked::{ParkedEvent, ParkedQuery};

/// The connector's parked events `query` selects, from `table` (the quoted, qualified name).
pub(super) async fn list(client: &Client, table: &str, connector: &str, query: &ParkedQuery) -> Result<Vec<ParkedEvent>, tokio_postgres::Error> {
    let mut sql = format!(
        r#"SELECT id, "partition", position, event_id, stream, event_type, payload, error,
                  to_char(parked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
           FROM {table} WHERE connector = $1"#
    );
    let ids: Vec<i64> = query.ids.iter().filter_map(|id| id.parse().ok()).collect();
    let since = query.since;
    let limit = if query.limit == 0 { i64::MAX } else { query.limit as i64 };
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&connector];
    if let Some(event_type) = &query.event_type {
        params.push(event_type);
        sql.push_str(&format!(" AND event_type = ${}", params.len()));
    }
    if let Some(text) = &query.error_contains {
        params.push(text);
        sql.push_str(&format!(" AND strpos(error, ${}) > 0", params.len()));
    }
    if let Some(since) = &since {
        params.push(since);
        sql.push_str(&format!(" AND parked_at >= ${}", params.len()));
    }
    if !query.ids.is_empty() {
        params.push(&ids);
        sql.push_str(&format!(" AND id = ANY(${})", params.len()));
    }
    params.push(&limit);
    sql.push_str(&format!(" ORDER BY position, id LIMIT ${}", params.len()));
    let rows = client.query(&sql, &params).await?;
    Ok(rows
        .iter()
        .map(|r| ParkedEvent {
            id: r.get::<_, i64>(0).to_string(),
            partition: r.get::<_, i32>(1) as u32,
            position: r.get::<_, i64>(2) as u64,
            event_id: r.get(3),
            stream: r.get(4),
            event_type: r.get(5),
            payload: r.get(6),
            error: r.get(7),
            parked_at: r.get(8),
        })
        .collect())
}

/// How many parked events the connector has in `table`.
pub(super) async fn count(client: &Client, table: &str, connector: &str) -> Result<u64, tokio_postgres::Error> {
    let row = client.query_one(&format!("SELECT count(*) FROM {table} WHERE connector = $1"), &[&connector]).await?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}

/// Deletes the connector's parked events with these ids (ids that are not numbers name none).
pub(super) async fn discard(client: &Client, table: &str, connector: &str, ids: &[String]) -> Result<u64, tokio_postgres::Error> {
    let ids: Vec<i64> = ids.iter().filter_map(|id| id.parse().ok()).collect();
    client.execute(&format!("DELETE FROM {table} WHERE connector = $1 AND id = ANY($2)"), &[&connector, &ids]).await
}
