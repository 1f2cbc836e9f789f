//! Runs the target's WAL checkpoints on a thread of their own, off the commit path.
//!
//! In WAL mode with `synchronous = NORMAL` a commit appends its pages to the WAL and does not
//! fsync; the checkpoint that copies the WAL back into the database fsyncs twice. Left to
//! SQLite, that checkpoint runs inside whichever COMMIT takes the WAL past
//! `wal_autocheckpoint` pages (1000), so that batch, and every event waiting for it, pays both
//! fsyncs: 10-50 ms on a virtual disk, about every other batch during catch-up, and the p99 of
//! live latency. The sink turns the automatic checkpoint off on its writing connection and
//! this thread, on its own connection, runs a PASSIVE checkpoint (which never waits for the
//! writer) shortly after commits, at most every [`PAUSE`].
//!
//! A PASSIVE checkpoint cannot restart the WAL from its beginning while the writer keeps
//! appending, so when the WAL holds more than [`MAX_WAL_FRAMES`] the thread runs a RESTART
//! checkpoint, which waits for the writer's current transaction, copies the rest and lets the
//! next transaction start the WAL over: the file stays bounded.

use std::{
    path::Path,
    sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rusqlite::Connection;
use tracing::debug;

/// Shortest time between two checkpoints: one checkpoint covers every commit of that time.
const PAUSE: Duration = Duration::from_millis(100);
/// WAL size (in pages) past which the checkpoint also restarts the WAL.
const MAX_WAL_FRAMES: i64 = 16_384;

pub(super) struct Checkpointer {
    signal: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a second connection to the target at `path` and starts the thread.
    pub fn start(path: &Path) -> Result<Self, String> {
        let conn = Connection::open(path).map_err(|e| e.to_string())?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(|e| e.to_string())?;
        conn.execute_batch("PRAGMA synchronous = NORMAL;").map_err(|e| e.to_string())?;
        let (signal, commits) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(conn, commits))
            .map_err(|e| e.to_string())?;
        Ok(Self { signal: Some(signal), thread: Some(thread) })
    }

    /// Tells the thread that a transaction committed; never blocks.
    pub fn committed(&self) {
        if let Some(signal) = &self.signal {
            let _ = signal.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    /// Stops the thread (waiting at most for a checkpoint in progress).
    fn drop(&mut self) {
        drop(self.signal.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: Connection, commits: Receiver<()>) {
    let mut last: Option<Instant> = None;
    // Each round: wait for a commit, let the commits of the pause join it, checkpoint.
    while commits.recv().is_ok() {
        if let Some(last) = last
            && !wait_until(&commits, last + PAUSE)
        {
            break;
        }
        last = Some(Instant::now());
        match checkpoint(&conn, "PASSIVE") {
            Ok(frames) if frames > MAX_WAL_FRAMES => {
                if let Err(e) = checkpoint(&conn, "RESTART") {
                    debug!("SQLite target: restarting the WAL failed: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => debug!("SQLite target: checkpoint failed: {e}"),
        }
    }
    // The sink is closing: the last connection to close checkpoints what is left.
}

/// Waits until `deadline`, absorbing commit signals; false when the sink is closing.
fn wait_until(commits: &Receiver<()>, deadline: Instant) -> bool {
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else { return true };
        match commits.recv_timeout(left) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => return true,
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// Runs a checkpoint; returns the number of pages in the WAL.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| row.get(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_wal_into_the_database_after_commits_and_stops_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (v BLOB);")
            .unwrap();
        let checkpointer = Checkpointer::start(&path).unwrap();
        for _ in 0..50 {
            writer.execute("INSERT INTO t VALUES (zeroblob(8000))", []).unwrap();
            checkpointer.committed();
        }
        // Only a checkpoint puts the rows into the database file itself.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(&path).unwrap().len() < 50 * 8000 {
            assert!(Instant::now() < deadline, "the WAL was not checkpointed");
            std::thread::sleep(Duration::from_millis(20));
        }
        let dropped = Instant::now();
        drop(checkpointer);
        assert!(dropped.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn without_it_the_database_file_stays_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (v BLOB);")
            .unwrap();
        for _ in 0..50 {
            writer.execute("INSERT INTO t VALUES (zeroblob(8000))", []).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(std::fs::metadata(&path).unwrap().len() < 50 * 8000);
    }
}
