//! Blue/green rebuilds on a SQLite target: each version of the read model is a file of its own
//! beside the configured `path` (`<file>.v<version>`), and `path` is a symbolic link to the live
//! one. The swap writes a new link beside it and renames it over `path`: one atomic rename, so
//! a reader that opens `path` gets the old version or the new one, whole.
//!
//! Why a link and not a rename of the files themselves: in WAL mode SQLite names a database's
//! `-wal` and `-shm` files after the path it was opened by. Were the new file renamed to
//! `path`, a reader still holding the old file open would share `path-wal`/`path-shm` with
//! the new one, and read (or, closing last, delete) the other database's log. SQLite resolves
//! symbolic links before it names those files, so each version keeps its own (`<file>.v2-wal`).
//! A reader holding the old version open goes on seeing it, consistent, until it reopens `path`.
//!
//! Before the swap the new version is stopped: its connections closed and its WAL copied into
//! the file and truncated (`PRAGMA wal_checkpoint(TRUNCATE)`), so the file alone is the whole
//! version. The first swap of a `path` that is still a plain file first gives that file its
//! version's name too (a hard link, after the same checkpoint), so it stays there to be kept
//! or dropped by the policy.
//!
//! The record of the versions (`blue_green_versions`) lives in the live file; the swap copies
//! it into the new one before the rename.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use rusqlite::{Connection, params};

use crate::sinks::{
    SinkError,
    blue_green::{VersionRecord, VersionState, drop_replaced, mark_past_policy, staged_id, version_suffix},
};

const VERSIONS: &str = r#"CREATE TABLE IF NOT EXISTS blue_green_versions (
    connector  TEXT NOT NULL,
    version    TEXT NOT NULL,
    state      TEXT NOT NULL,
    place      TEXT NOT NULL,
    sidecar    TEXT,
    changed_at TEXT NOT NULL,
    detail     TEXT,
    PRIMARY KEY (connector, version))"#;

/// Where version `suffix` of the read model at `path` is built: a file beside it.
pub fn version_path(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{name}.v{suffix}"))
}

/// (device, inode) of the file `path` names now, links followed; `None` if there is none.
pub fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The versions of one connector's SQLite read model.
pub struct Files {
    connector: String,
    path: PathBuf,
}

impl Files {
    pub fn new(connector: &str, path: &Path) -> Self {
        Self { connector: connector.to_string(), path: path.to_path_buf() }
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> SinkError {
        SinkError::refused(format!("SQLite target {}: {what}: {e}", self.path.display()))
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Self) -> Result<T, SinkError> + Send + 'static) -> Result<T, SinkError> {
        let this = Self { connector: self.connector.clone(), path: self.path.clone() };
        tokio::task::spawn_blocking(move || f(&this)).await?
    }

    fn open(&self, path: &Path) -> Result<Connection, SinkError> {
        let conn = Connection::open(path).map_err(|e| self.fail(&format!("cannot open {}", path.display()), e))?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(|e| self.fail("cannot configure", e))?;
        conn.execute_batch(VERSIONS).map_err(|e| self.fail("cannot create blue_green_versions", e))?;
        Ok(conn)
    }

    /// Reading writes nothing (the live run may be opening the file at the same moment): a
    /// missing file or table is no version.
    fn open_to_read(&self) -> Result<Option<Connection>, SinkError> {
        if !self.path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(&self.path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| self.fail("cannot open", e))?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(|e| self.fail("cannot configure", e))?;
        Ok(Some(conn))
    }

    pub async fn versions(&self) -> Result<Vec<VersionRecord>, SinkError> {
        self.blocking(|this| {
            let Some(conn) = this.open_to_read()? else { return Ok(Vec::new()) };
            match read_versions(&conn, &this.connector) {
                Err(e) if e.to_string().contains("no such table") => Ok(Vec::new()),
                other => other.map_err(|e| this.fail("cannot read blue_green_versions", e)),
            }
        })
        .await
    }

    pub async fn live_version(&self) -> Result<Option<String>, SinkError> {
        self.blocking(|this| {
            let Some(conn) = this.open_to_read()? else { return Ok(None) };
            let version = conn.query_row("SELECT version FROM projections WHERE connector = ?1", [&this.connector], |r| r.get(0));
            match version {
                Ok(version) => Ok(Some(version)),
                Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
                Err(e) if e.to_string().contains("no such table") => Ok(None),
                Err(e) => Err(this.fail("cannot read the live projection version", e)),
            }
        })
        .await
    }

    pub async fn record(&self, record: &VersionRecord) -> Result<(), SinkError> {
        let record = record.clone();
        self.blocking(move |this| {
            let conn = this.open(&this.path)?;
            write_version(&conn, &this.connector, &record).map_err(|e| this.fail("cannot record the rebuild", e))
        })
        .await
    }

    pub async fn discard(&self, version: &str) -> Result<(), SinkError> {
        let version = version.to_string();
        self.blocking(move |this| {
            let file = version_path(&this.path, &version_suffix(&version)?);
            if file_identity(&file).is_some() && file_identity(&file) == file_identity(&this.path) {
                return Err(this.fail("cannot discard", format!("version {version} is the live one")));
            }
            remove_database(&file).map_err(|e| this.fail(&format!("cannot remove {}", file.display()), e))
        })
        .await
    }

    pub async fn swap(&self, projection: &str, live: Option<&str>, new: &str, keep: u32) -> Result<Vec<String>, SinkError> {
        let (projection, live, new) = (projection.to_string(), live.map(str::to_string), new.to_string());
        let dropped = self.blocking(move |this| this.swap_now(&projection, live.as_deref(), &new, keep)).await?;
        // A reader holding a dropped version's file keeps it open.
        let remove = async |old: VersionRecord| {
            let place = PathBuf::from(&old.place);
            tokio::task::spawn_blocking(move || remove_database(&place)).await.map_err(SinkError::from)?.map_err(|e| self.fail("cannot remove it", e))
        };
        Ok(drop_replaced(&self.connector, dropped, remove).await)
    }

    /// The swap itself; returns the replaced versions past the policy, to drop.
    fn swap_now(&self, projection: &str, live: Option<&str>, new: &str, keep: u32) -> Result<Vec<VersionRecord>, SinkError> {
        let staged = version_path(&self.path, &version_suffix(new)?);
        let now = chrono::Utc::now().to_rfc3339();
        // 1. The live version gets a name of its own, whole in its file.
        let live_conn = self.open(&self.path)?;
        let mut versions = read_versions(&live_conn, &self.connector).map_err(|e| self.fail("cannot read blue_green_versions", e))?;
        let old_place = match std::fs::read_link(&self.path) {
            Ok(target) => self.path.with_file_name(target),
            Err(_) => {
                let name = version_path(&self.path, &version_suffix(live.unwrap_or("0"))?);
                checkpoint_truncate(&live_conn).map_err(|e| self.fail("cannot checkpoint the live version's WAL", e))?;
                if file_identity(&name) != file_identity(&self.path) {
                    std::fs::hard_link(&self.path, &name).map_err(|e| self.fail(&format!("cannot name the live version {}", name.display()), e))?;
                }
                name
            }
        };
        drop(live_conn);
        if let Some(live) = live {
            versions.retain(|v| v.version != live);
            versions.push(VersionRecord {
                version: live.to_string(),
                state: VersionState::Retired,
                place: old_place.display().to_string(),
                sidecar: None,
                changed_at: now.clone(),
                detail: None,
            });
        }
        versions.retain(|v| v.version != new);
        versions.push(VersionRecord {
            version: new.to_string(),
            state: VersionState::Live,
            place: staged.display().to_string(),
            sidecar: None,
            changed_at: now.clone(),
            detail: None,
        });
        let dropped = mark_past_policy(&mut versions, keep);
        // 2. The new version takes the connector's id, the record, and is made whole in its file.
        let mut conn = self.open(&staged)?;
        let tx = conn.transaction().map_err(|e| self.fail("cannot begin on the new version", e))?;
        let staged_id = staged_id(&self.connector, new);
        for table in ["checkpoints", "projections", "parked_events"] {
            tx.execute(&format!("DELETE FROM {table} WHERE connector = ?1"), [&self.connector])
                .and_then(|_| tx.execute(&format!("UPDATE {table} SET connector = ?1 WHERE connector = ?2"), [&self.connector, &staged_id]))
                .map_err(|e| self.fail(&format!("cannot hand the new version's {table} to the connector"), e))?;
        }
        tx.execute(
            "INSERT INTO projections (connector, projection, version, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (connector) DO UPDATE SET projection = excluded.projection, version = excluded.version, updated_at = excluded.updated_at",
            params![self.connector, projection, new, now],
        )
        .map_err(|e| self.fail("cannot record the new version", e))?;
        tx.execute("DELETE FROM blue_green_versions WHERE connector = ?1", [&self.connector])
            .map_err(|e| self.fail("cannot copy blue_green_versions", e))?;
        for record in &versions {
            write_version(&tx, &self.connector, record).map_err(|e| self.fail("cannot copy blue_green_versions", e))?;
        }
        tx.commit().map_err(|e| self.fail("cannot commit on the new version", e))?;
        checkpoint_truncate(&conn).map_err(|e| self.fail("cannot checkpoint the new version's WAL", e))?;
        drop(conn);
        // 3. The swap: a link to the new file, renamed over `path`.
        let link = self.path.with_file_name(format!(".{}.swap", staged.file_name().unwrap_or_default().to_string_lossy()));
        let _ = std::fs::remove_file(&link);
        let target = staged.file_name().map(PathBuf::from).unwrap_or_default();
        std::os::unix::fs::symlink(&target, &link).map_err(|e| self.fail(&format!("cannot create the link {}", link.display()), e))?;
        std::fs::rename(&link, &self.path).map_err(|e| self.fail(&format!("cannot rename {} over it", link.display()), e))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(dropped)
    }
}

fn checkpoint_truncate(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
}

/// Removes a database file with its `-wal`, `-shm` and `-journal` files (missing ones are fine).
fn remove_database(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn read_versions(conn: &Connection, connector: &str) -> rusqlite::Result<Vec<VersionRecord>> {
    let mut stmt = conn.prepare(
        "SELECT version, state, place, sidecar, changed_at, detail FROM blue_green_versions WHERE connector = ?1 ORDER BY changed_at",
    )?;
    stmt.query_map([connector], |r| {
        Ok(VersionRecord {
            version: r.get(0)?,
            state: VersionState::parse(&r.get::<_, String>(1)?),
            place: r.get(2)?,
            sidecar: r.get(3)?,
            changed_at: r.get(4)?,
            detail: r.get(5)?,
        })
    })?
    .collect()
}

fn write_version(conn: &Connection, connector: &str, v: &VersionRecord) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO blue_green_versions (connector, version, state, place, sidecar, changed_at, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (connector, version) DO UPDATE SET state = excluded.state, place = excluded.place, sidecar = excluded.sidecar,
           changed_at = excluded.changed_at, detail = excluded.detail",
        params![connector, v.version, v.state.as_str(), v.place, v.sidecar, v.changed_at, v.detail],
    )
    .map(drop)
}
