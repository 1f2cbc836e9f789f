//! Writes the benchmark's event logs: one pass of the demo's bookings generator feeds several
//! SQLite event logs at once, each receiving the first `limit` events, so the smaller logs are
//! exact prefixes of the larger ones (the baseline runs on the first events of the log the
//! end-to-end runs read).
//!
//! `EventLog::append` checks every payload and looks up each stream's revision, which is right
//! for the product and too slow for millions of events. Here the schema still comes from
//! `EventLog::open` (so the logs are real event logs), but rows are inserted many per
//! statement, in large transactions, with revisions counted in memory, and the generator and
//! each log's inserts run on threads of their own.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, mpsc},
    thread,
};

use anyhow::Context;
use projector_gateway::{
    demo::BookingsGenerator,
    sources::sqlite::{EventLog, NewEvent},
};
use rusqlite::{Connection, params_from_iter, types::Value};

/// One log to write: the first `limit` generated events.
pub struct LogTarget {
    pub path: PathBuf,
    pub limit: usize,
}

/// Rows per INSERT statement (8 parameters each, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 256;
/// Events per generated chunk and per transaction.
const CHUNK: usize = 50_000;

/// Generates `max(limit)` events with `seed` over `streams` booking streams and writes each
/// target's prefix. Generating, numbering and each log's inserts run on their own threads.
pub fn write_logs(targets: &[LogTarget], streams: usize, seed: u64) -> anyhow::Result<()> {
    let total = targets.iter().map(|t| t.limit).max().unwrap_or(0);

    let (chunks_tx, chunks) = mpsc::sync_channel::<Vec<NewEvent>>(4);
    let generator = thread::Builder::new().name("log-generator".into()).spawn(move || {
        let mut generator = BookingsGenerator::new(seed, streams);
        let mut made = 0;
        while made < total {
            let chunk = generator.take((total - made).min(CHUNK));
            made += chunk.len();
            if chunks_tx.send(chunk).is_err() {
                break;
            }
        }
    })?;

    let mut writers = Vec::new();
    for t in targets {
        if t.path.exists() {
            std::fs::remove_file(&t.path)?;
        }
        drop(EventLog::open(&t.path).with_context(|| format!("creating {}", t.path.display()))?);
        let mut conn = Connection::open(&t.path)?;
        // A throwaway file written once: no journal, no fsync, a large cache for the indexes.
        conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -524288;")?;
        let (tx, rows) = mpsc::sync_channel::<(Arc<Vec<Value>>, usize)>(2);
        let writer = thread::Builder::new().name("log-writer".into()).spawn(move || -> rusqlite::Result<()> {
            for (chunk, count) in rows {
                insert_rows(&mut conn, &chunk[..count * 8])?;
            }
            conn.execute_batch("PRAGMA journal_mode = WAL;")
        })?;
        writers.push((tx, t.limit, writer));
    }

    let created_us = chrono::Utc::now().timestamp_micros();
    let mut revisions: HashMap<String, i64> = HashMap::new();
    let mut written = 0usize;
    for chunk in chunks {
        let mut rows = Vec::with_capacity(chunk.len() * 8);
        for (i, e) in chunk.into_iter().enumerate() {
            let revision = revisions.entry(e.stream.clone()).or_insert(-1);
            *revision += 1;
            rows.extend([
                Value::Integer((written + i + 1) as i64),
                Value::Text(e.event_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string())),
                Value::Text(e.stream),
                Value::Integer(*revision),
                Value::Text(e.event_type),
                Value::Text(e.data),
                e.metadata.map_or(Value::Null, Value::Text),
                Value::Integer(created_us),
            ]);
        }
        let count = rows.len() / 8;
        let rows = Arc::new(rows);
        for (tx, limit, _) in &writers {
            let take = count.min(limit.saturating_sub(written));
            if take > 0 {
                // A writer that failed has hung up; its error is reported below.
                let _ = tx.send((rows.clone(), take));
            }
        }
        written += count;
    }
    generator.join().map_err(|_| anyhow::anyhow!("the generator thread panicked"))?;
    for (tx, _, writer) in writers {
        drop(tx);
        writer.join().map_err(|_| anyhow::anyhow!("a log writer thread panicked"))??;
    }
    Ok(())
}

fn insert_rows(conn: &mut Connection, rows: &[Value]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for group in rows.chunks(ROWS_PER_INSERT * 8) {
        let n = group.len() / 8;
        let mut stmt = tx.prepare_cached(&insert_sql(n))?;
        stmt.execute(params_from_iter(group.iter()))?;
    }
    tx.commit()
}

fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO events (position, event_id, stream, revision, event_type, data, metadata, created_us) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?,?,?,?)");
    }
    sql
}
