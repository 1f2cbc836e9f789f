//! Temp folders, sample event logs, connector configs and polling with deadlines (tests never
//! sleep to synchronise: they poll an observable condition until a deadline).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use projector_gateway::{
    config::{self, ConnectorConfig},
    demo::BookingsGenerator,
    pipeline::{ConnectorControl, ConnectorError, ProgressReceiver, run_connector},
    sources::sqlite::EventLog,
};
use tokio::{sync::oneshot, task::JoinHandle};

/// A temp folder with an event log path and a target path in it.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    /// A fresh folder, removed at the end of the test unless `KEEP_TEST_DIRS` is set (then its
    /// path is printed, to read the logs of the processes a failed test ran).
    pub fn new() -> Self {
        let mut dir = tempfile::tempdir().expect("temp dir");
        if std::env::var_os("KEEP_TEST_DIRS").is_some() {
            dir.disable_cleanup(true);
            eprintln!("test workspace kept: {}", dir.path().display());
        }
        Self { dir }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("events.db")
    }

    pub fn target_path(&self) -> PathBuf {
        self.dir.path().join("target.db")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Creates the event log with `count` bookings events over `streams` booking streams.
    pub fn log_with_events(&self, count: usize, streams: usize, seed: u64) -> EventLog {
        let mut log = EventLog::open(&self.log_path()).expect("event log");
        append_generated(&mut log, count, streams, seed);
        log
    }
}

/// Appends generated events (in chunks) to a log.
pub fn append_generated(log: &mut EventLog, count: usize, streams: usize, seed: u64) {
    let mut generator = BookingsGenerator::new(seed, streams);
    let mut left = count;
    while left > 0 {
        let chunk = generator.take(left.min(5_000));
        left -= chunk.len();
        log.append(&chunk).expect("append");
    }
}

/// Connector settings a test varies.
#[derive(Clone, Debug)]
pub struct Setup {
    pub id: String,
    pub partitions: u32,
    pub window: usize,
    pub max_ops: usize,
    pub poison: &'static str,
    pub request_timeout_ms: u64,
    pub max_retries: u32,
    pub extra_filter: String,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            id: "bookings".into(),
            partitions: 4,
            window: 64,
            max_ops: 200,
            poison: "stop",
            request_timeout_ms: 10_000,
            max_retries: 2,
            extra_filter: String::new(),
        }
    }
}

/// YAML of one connector from a SQLite log through `sidecar` into `sink_yaml`.
pub fn connector_yaml(log: &Path, sidecar: &str, sink_yaml: &str, setup: &Setup) -> String {
    let source = format!("      sqlite: {{ path: \"{}\", poll_interval_ms: 2 }}\n", log.display());
    connector_yaml_from(&source, sidecar, sink_yaml, setup)
}

/// YAML of one connector from `source_yaml` (the body of the `source:` section) through
/// `sidecar` into `sink_yaml`.
pub fn connector_yaml_from(source_yaml: &str, sidecar: &str, sink_yaml: &str, setup: &Setup) -> String {
    let filter = if setup.extra_filter.is_empty() { String::new() } else { format!("    filter: {}\n", setup.extra_filter) };
    format!(
        "connectors:\n  - id: {id}\n    source:\n{source_yaml}{filter}    sidecar:\n      address: \"{sidecar}\"\n      window: {window}\n      request_timeout_ms: {timeout}\n      max_retries: {retries}\n    partitioning: {{ count: {partitions} }}\n    batch: {{ max_ops: {max_ops} }}\n    poison: {poison}\n    sink:\n{sink_yaml}",
        id = setup.id,
        window = setup.window,
        timeout = setup.request_timeout_ms,
        retries = setup.max_retries,
        partitions = setup.partitions,
        max_ops = setup.max_ops,
        poison = setup.poison,
    )
}

/// The sink section for a SQLite target with the bookings schema.
pub fn sqlite_sink_yaml(target: &Path) -> String {
    format!(
        "      sqlite:\n        path: \"{}\"\n        init_sql_file: \"{}\"\n",
        target.display(),
        schema_file().display()
    )
}

pub fn schema_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecar-examples/bookings-schema.sql")
}

pub fn parse_connector(yaml: &str) -> ConnectorConfig {
    match config::parse(yaml) {
        Ok(mut c) => c.connectors.remove(0),
        Err(problems) => panic!("test config invalid: {problems:#?}\n{yaml}"),
    }
}

/// A connector running in this process.
pub struct Running {
    pub control: ConnectorControl,
    pub progress: ProgressReceiver,
    pub task: JoinHandle<Result<(), ConnectorError>>,
}

impl Running {
    /// Starts the connector and waits until it has loaded its checkpoints.
    pub async fn start(config: ConnectorConfig) -> Self {
        let control = ConnectorControl::default();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(run_connector(config, control.clone(), move |p| {
            let _ = tx.send(p);
        }));
        match rx.await {
            Ok(progress) => Self { control, progress, task },
            Err(_) => panic!("connector failed to start: {:?}", task.await),
        }
    }

    /// Waits until every partition passed `position` (panics after `within`, or if the
    /// connector stops first, with its error).
    pub async fn wait_for(&mut self, position: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.progress.borrow_and_update().low_watermark() >= position {
                return;
            }
            tokio::select! {
                changed = self.progress.changed() => if changed.is_err() {
                    let result = (&mut self.task).await;
                    panic!("connector stopped before reaching {position}: {result:?}");
                },
                _ = tokio::time::sleep_until(deadline) => panic!(
                    "connector did not reach position {position} within {within:?}: {:?}",
                    self.progress.borrow()
                ),
            }
        }
    }

    /// Graceful stop; returns the connector's result.
    pub async fn stop(self) -> Result<(), ConnectorError> {
        self.control.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("connector stops within 30 s")
            .expect("connector task")
    }

    /// Waits for the connector to end by itself (e.g. after a poison `stop`).
    pub async fn ended(self, within: Duration) -> Result<(), ConnectorError> {
        tokio::time::timeout(within, self.task).await.expect("connector ends in time").expect("connector task")
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `within`.
pub async fn poll_until<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`poll_until`] for a check that must await (a database query).
pub async fn poll_until_async<T, F: Future<Output = Option<T>>>(what: &str, within: Duration, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checkpoint rows of a SQLite target: (partition_count, partition, position).
pub fn sqlite_checkpoints(target: &Path, connector: &str) -> Vec<(u32, u32, u64)> {
    let conn = rusqlite::Connection::open(target).expect("target");
    let Ok(mut stmt) = conn.prepare(
        r#"SELECT partition_count, "partition", position FROM checkpoints WHERE connector = ?1 ORDER BY 1, 2"#,
    ) else {
        return Vec::new();
    };
    stmt.query_map([connector], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// The lowest stored position of the connector under `partitions` (0 if any row is missing).
pub fn sqlite_low_watermark(target: &Path, connector: &str, partitions: u32) -> u64 {
    let rows: Vec<_> = sqlite_checkpoints(target, connector).into_iter().filter(|r| r.0 == partitions).collect();
    if rows.len() < partitions as usize { 0 } else { rows.iter().map(|r| r.2).min().unwrap_or(0) }
}

/// An event of type `Tested` at `position` in stream `s-<position>`, routed to partition 0:
/// what sink tests apply batches of.
pub fn tested_event(position: u64) -> projector_gateway::sinks::EventRef {
    let event = projector_gateway::event::Event {
        position,
        stream: format!("s-{position}"),
        revision: 0,
        event_type: "Tested".into(),
        event_id: format!("e-{position}"),
        data: bytes::Bytes::from_static(b"{}"),
        metadata: None,
        created: chrono::Utc::now(),
        content_type: projector_gateway::event::ContentType::Json,
    };
    projector_gateway::sinks::EventRef::new(std::sync::Arc::new(event), 0)
}
