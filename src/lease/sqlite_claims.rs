//! Partition claims in a SQLite target, for several gateway processes on one machine sharing
//! one database file: `gateway_members` (one row per gateway running a connector: its
//! heartbeat) and `gateway_claims` (one row per partition: holder, epoch, expiry), in the
//! target file itself, and the fence statement the sink runs first in every batch transaction.
//!
//! SQLite has one writer at a time: every batch runs in an immediate transaction, which holds
//! the database's write lock from its first statement to its commit, and every statement here
//! that writes takes the same lock. So a take of a partition waits for the batch in flight
//! (and then finds its checkpoint), and a batch that begins after a take sees the new epoch and
//! is refused, as `FOR SHARE` gives in PostgreSQL. Times are the processes' clock (milliseconds
//! since the epoch, from SQLite's `unixepoch('subsec')`): the processes that share a file share
//! a machine, so they share that clock.
//!
//! A tick is one transaction of four statements (heartbeat, renewal, the live members, the
//! claims); taking partitions and handing them back are one transaction each.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Claims, LeaseError,
    partitions::{ClaimStore, Taken},
    share::{ClaimRow, View},
};

/// The tables, created where missing (in the target file, beside the gateway's own).
const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS gateway_members (
    connector  TEXT    NOT NULL,
    member     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    joined_at  INTEGER NOT NULL,
    PRIMARY KEY (connector, member)
);
CREATE TABLE IF NOT EXISTS gateway_claims (
    connector   TEXT    NOT NULL,
    "partition" INTEGER NOT NULL,
    holder      TEXT    NOT NULL,
    epoch       INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    renewed_at  INTEGER NOT NULL,
    released    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (connector, "partition")
);
"#;

/// Now, in milliseconds since the epoch, as SQL.
const NOW: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/// The fence: `?1` connector, `?2` holder, `?3` a JSON array of `[partition, epoch]` pairs.
/// Counts the pairs held under exactly those epochs; the batch is refused unless the count is
/// the number of pairs.
pub const FENCE_SQL: &str = r#"SELECT count(*) FROM gateway_claims c JOIN json_each(?3) j
    ON c."partition" = json_extract(j.value, '$[0]') AND c.epoch = json_extract(j.value, '$[1]')
    WHERE c.connector = ?1 AND c.holder = ?2"#;

/// `epochs` as the fence's JSON argument.
pub fn fence_pairs(epochs: &[(u32, i64)]) -> String {
    serde_json::to_string(&epochs.iter().map(|(p, e)| [i64::from(*p), *e]).collect::<Vec<_>>()).expect("numbers serialise")
}

/// The claims and members of one target file, on a connection of their own.
pub struct SqliteClaims {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    /// Statements sent (for the coordination cost the benchmark prints).
    statements: u64,
}

impl SqliteClaims {
    /// Opens the target file (creating it and the tables where missing).
    pub async fn open(path: &Path) -> Result<Self, LeaseError> {
        let owned = path.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || {
            if let Some(dir) = owned.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            let conn = Connection::open(&owned).map_err(|e| e.to_string())?;
            crate::sinks::sqlite::schema::configure(&conn).map_err(|e| e.to_string())?;
            conn.execute_batch(TABLES).map_err(|e| e.to_string())?;
            Ok::<_, String>(conn)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|cause| store_error(path, "cannot open the claims tables", cause))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path: path.to_path_buf(), statements: 0 })
    }

    /// [`SqliteClaims::open`] for a store that outlives its argument.
    pub async fn open_owned(path: PathBuf) -> Result<Self, LeaseError> {
        Self::open(&path).await
    }

    /// Runs `f` in one immediate transaction on a blocking thread, counting `statements`.
    async fn transaction<T: Send + 'static>(
        &mut self,
        action: &'static str,
        statements: u64,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, LeaseError> {
        self.statements += statements;
        let conn = self.conn.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok::<_, rusqlite::Error>(value)
        })
        .await;
        match done {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(store_error(&self.path, action, e.to_string())),
            Err(e) => Err(store_error(&self.path, action, e.to_string())),
        }
    }
}

fn store_error(path: &Path, action: &'static str, cause: String) -> LeaseError {
    LeaseError::Store { database: "SQLite", endpoint: path.display().to_string(), action, cause }
}

impl ClaimStore for SqliteClaims {
    fn statements(&self) -> u64 {
        self.statements
    }

    async fn tick(&mut self, connector: &str, held: &Claims, ttl_ms: u64) -> Result<(Vec<u32>, View), LeaseError> {
        let (connector, me, ttl) = (connector.to_owned(), held.holder.clone(), ttl_ms as i64);
        let epochs = held.epochs.clone();
        self.transaction("cannot renew the partition claims", 4, move |tx| {
            tx.prepare_cached(&format!(
                "INSERT INTO gateway_members (connector, member, expires_at, joined_at) VALUES (?1, ?2, {NOW} + ?3, {NOW})
                 ON CONFLICT (connector, member) DO UPDATE SET expires_at = excluded.expires_at,
                    joined_at = CASE WHEN gateway_members.expires_at < {NOW} THEN {NOW} ELSE gateway_members.joined_at END"
            ))?
            .execute(params![connector, me, ttl])?;
            // Renewed while the epoch is still ours, even if it expired meanwhile: nobody took
            // it (that would have changed the epoch), and the fence keeps commits safe.
            let mut still = Vec::new();
            let mut renew = tx.prepare_cached(&format!(
                r#"UPDATE gateway_claims SET expires_at = {NOW} + ?5, renewed_at = {NOW}
                   WHERE connector = ?1 AND holder = ?2 AND "partition" = ?3 AND epoch = ?4 AND NOT released"#
            ))?;
            for (partition, epoch) in &epochs {
                if renew.execute(params![connector, me, partition, epoch, ttl])? == 1 {
                    still.push(*partition);
                }
            }
            let members = tx
                .prepare_cached(&format!("SELECT member FROM gateway_members WHERE connector = ?1 AND expires_at > {NOW} ORDER BY member"))?
                .query_map([&connector], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            let claims = tx
                .prepare_cached(&format!(
                    r#"SELECT "partition", holder, epoch, expires_at > {NOW} AND NOT released FROM gateway_claims
                       WHERE connector = ?1 ORDER BY "partition""#
                ))?
                .query_map([&connector], |r| Ok(ClaimRow { partition: r.get(0)?, holder: r.get(1)?, epoch: r.get(2)?, live: r.get(3)? }))?
                .collect::<rusqlite::Result<Vec<ClaimRow>>>()?;
            Ok((still, View { members, claims }))
        })
        .await
    }

    async fn take(&mut self, connector: &str, holder: &str, partitions: &[u32], ttl_ms: u64) -> Result<Vec<Taken>, LeaseError> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let (connector, me, ttl, wanted) = (connector.to_owned(), holder.to_owned(), ttl_ms as i64, partitions.to_vec());
        self.transaction("cannot take partitions", 1, move |tx| {
            let mut taken = Vec::new();
            for partition in wanted {
                let before: Option<(String, i64, bool, i64, bool)> = tx
                    .prepare_cached(&format!(
                        r#"SELECT holder, epoch, released, {NOW} - renewed_at, expires_at < {NOW} FROM gateway_claims
                           WHERE connector = ?1 AND "partition" = ?2"#
                    ))?
                    .query_row(params![connector, partition], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                    .optional()?;
                // Taken when nobody has it, it expired or was handed back, or this instance had
                // it (a restart): each time with a new epoch, so whatever ran under the old one
                // is fenced off.
                let epoch = match &before {
                    None => 1,
                    Some((was, epoch, released, _, expired)) if *was == me || *released || *expired => epoch + 1,
                    Some(_) => continue,
                };
                tx.prepare_cached(&format!(
                    r#"INSERT INTO gateway_claims (connector, "partition", holder, epoch, expires_at, renewed_at, released)
                       VALUES (?1, ?2, ?3, ?4, {NOW} + ?5, {NOW}, 0)
                       ON CONFLICT (connector, "partition") DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch,
                          expires_at = excluded.expires_at, renewed_at = excluded.renewed_at, released = 0"#
                ))?
                .execute(params![connector, partition, me, epoch, ttl])?;
                let from_another = before.as_ref().filter(|(was, ..)| *was != me);
                taken.push(Taken {
                    partition,
                    epoch,
                    since_previous_holder_ms: from_another.map(|(_, _, _, idle, _)| *idle),
                    was_released: from_another.is_some_and(|(_, _, released, _, _)| *released),
                });
            }
            Ok(taken)
        })
        .await
    }

    async fn release(&mut self, connector: &str, holder: &str, released: &BTreeMap<u32, i64>) -> Result<(), LeaseError> {
        if released.is_empty() {
            return Ok(());
        }
        let (connector, me, released) = (connector.to_owned(), holder.to_owned(), released.clone());
        // `renewed_at` becomes the moment of the handover, which the taker measures from.
        self.transaction("cannot hand partitions back", 1, move |tx| {
            let mut release = tx.prepare_cached(&format!(
                r#"UPDATE gateway_claims SET expires_at = {NOW}, renewed_at = {NOW}, released = 1
                   WHERE connector = ?1 AND holder = ?2 AND "partition" = ?3 AND epoch = ?4"#
            ))?;
            for (partition, epoch) in &released {
                release.execute(params![connector, me, partition, epoch])?;
            }
            Ok(())
        })
        .await
    }

    async fn leave(&mut self, connector: &str, member: &str) -> Result<(), LeaseError> {
        let (connector, member) = (connector.to_owned(), member.to_owned());
        self.transaction("cannot leave the members", 1, move |tx| {
            tx.prepare_cached(&format!("UPDATE gateway_members SET expires_at = {NOW} WHERE connector = ?1 AND member = ?2"))?
                .execute(params![connector, member])
                .map(drop)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_counts_only_pairs_held_under_their_epochs() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(TABLES).unwrap();
        conn.execute_batch(
            r#"INSERT INTO gateway_claims VALUES ('c', 0, 'a', 3, 0, 0, 0), ('c', 1, 'a', 1, 0, 0, 0), ('c', 2, 'b', 1, 0, 0, 0)"#,
        )
        .unwrap();
        let count = |pairs: &[(u32, i64)]| -> i64 { conn.query_row(FENCE_SQL, params!["c", "a", fence_pairs(pairs)], |r| r.get(0)).unwrap() };
        assert_eq!(count(&[(0, 3), (1, 1)]), 2);
        assert_eq!(count(&[(0, 2), (1, 1)]), 1, "an old epoch");
        assert_eq!(count(&[(0, 3), (2, 1)]), 1, "another holder's");
        assert_eq!(count(&[(5, -1)]), 0, "a partition not held");
    }
}
