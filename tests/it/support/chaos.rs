//! Fault injection ("chaos") harness: the gateway and the example sidecar as real processes,
//! a SQLite event log as the source (pre-filled, optionally appended to throughout), a target
//! (SQLite, PostgreSQL or MongoDB), and a schedule of faults (SIGKILL crash loops, slow
//! PostgreSQL commits, cut connections, sidecar kills and hangs, two gateways on one
//! connector). After the faults, a clean run to the head of the log, SIGTERM, and the target's
//! read model compared field by field with the reference computed straight from the log
//! (`bookings_model`, never the gateway's code). Mismatches are counted, not panicked on, so
//! every scenario prints one `chaos scenario=... ` line (parsed by `scripts/chaos`), and the
//! test asserts at the end.
//!
//! Randomness (fault delays) is seeded: a fixed seed per test, printed, overridable with
//! `CHAOS_SEED`. Scale: `CHAOS_SCALE=long` (the long form of `scripts/chaos`), or a number
//! multiplying events and faults, or `CHAOS_EVENTS_SCALE` / `CHAOS_FAULTS_SCALE` separately.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use projector_gateway::{demo::BookingsGenerator, sources::sqlite::EventLog};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{
    bookings_model::ReadModel,
    fixtures::{Setup, Workspace, connector_yaml_from, sqlite_sink_yaml},
    postgres::{self as pg, Database},
    processes::{Process, SIGCONT, SIGSTOP, SIGTERM, free_port, gateway_bin},
};

const CONNECTOR: &str = "bookings";

// ---------------------------------------------------------------------------------------------
// Scale, seed, serialisation

/// How big the scenarios are.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub events: f64,
    pub faults: f64,
    pub long: bool,
}

impl Scale {
    pub fn from_env() -> Self {
        let num = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<f64>().ok()).filter(|v| *v > 0.0);
        let (mut events, mut faults, mut long) = (1.0, 1.0, false);
        match std::env::var("CHAOS_SCALE").ok().as_deref().map(str::trim) {
            Some("long") => {
                // See scripts/chaos: about 20-30 minutes for the whole file in a release build
                // (2M events for the 20k-event scenarios).
                (events, faults, long) = (100.0, 8.0, true);
            }
            Some(v) if v.parse::<f64>().is_ok_and(|v| v > 0.0) => {
                let v: f64 = v.parse().unwrap();
                (events, faults) = (v, v);
            }
            _ => {}
        }
        if let Some(v) = num("CHAOS_EVENTS_SCALE") {
            events = v;
        }
        if let Some(v) = num("CHAOS_FAULTS_SCALE") {
            faults = v;
        }
        Self { events, faults, long }
    }

    pub fn events(&self, n: usize) -> usize {
        ((n as f64) * self.events).round().max(1.0) as usize
    }

    pub fn faults(&self, n: usize) -> usize {
        ((n as f64) * self.faults).round().max(1.0) as usize
    }
}

/// The seed of a test: `CHAOS_SEED` if set, else the test's own.
pub fn seed(default: u64) -> u64 {
    std::env::var("CHAOS_SEED").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// Chaos tests run one at a time (fault timing on 2 cores means nothing when two scenarios
/// compete for them).
/// An async lock: each test has its own runtime, and the guard is held across its awaits.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

// ---------------------------------------------------------------------------------------------
// Targets

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Sqlite,
    Postgres,
    #[cfg(feature = "mongo")]
    Mongo,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Sqlite => "sqlite",
            Target::Postgres => "postgres",
            #[cfg(feature = "mongo")]
            Target::Mongo => "mongo",
        }
    }

    /// The example sidecar's `--target`.
    fn reducer(self) -> &'static str {
        match self {
            Target::Sqlite | Target::Postgres => "sql",
            #[cfg(feature = "mongo")]
            Target::Mongo => "mongo",
        }
    }
}

/// A fresh target database of one scenario.
pub struct TargetDb {
    pub kind: Target,
    sqlite: PathBuf,
    pg: Option<PgTarget>,
    #[cfg(feature = "mongo")]
    mongo: Option<super::mongo::MongoDb>,
}

pub struct PgTarget {
    pub db: Database,
    /// The harness's own connection (application_name `chaos-harness`, never cut).
    pub client: tokio_postgres::Client,
}

/// The harness's connections are told apart from the gateway's by this application name.
const HARNESS_APP: &str = "chaos-harness";

impl TargetDb {
    pub async fn fresh(kind: Target, ws: &Workspace, hint: &str) -> Self {
        let mut target = Self {
            kind,
            sqlite: ws.target_path(),
            pg: None,
            #[cfg(feature = "mongo")]
            mongo: None,
        };
        match kind {
            Target::Sqlite => {}
            Target::Postgres => {
                let db = Database::fresh(hint).await;
                let client = pg::connect(&format!("{}?application_name={HARNESS_APP}", db.url)).await;
                target.pg = Some(PgTarget { db, client });
            }
            #[cfg(feature = "mongo")]
            Target::Mongo => {
                target.mongo = Some(super::mongo::MongoDb::fresh(super::mongo::Server::Secantus, hint).await);
            }
        }
        target
    }

    pub fn pg(&self) -> &PgTarget {
        self.pg.as_ref().expect("a PostgreSQL target")
    }

    pub fn sink_yaml(&self) -> String {
        match self.kind {
            Target::Sqlite => sqlite_sink_yaml(&self.sqlite),
            Target::Postgres => pg::postgres_sink_yaml(&self.pg().db.url),
            #[cfg(feature = "mongo")]
            Target::Mongo => self.mongo.as_ref().unwrap().sink_yaml(""),
        }
    }

    pub async fn read_model(&self) -> ReadModel {
        match self.kind {
            Target::Sqlite => ReadModel::from_sqlite(&self.sqlite),
            Target::Postgres => pg::read_model(&self.pg().client).await,
            #[cfg(feature = "mongo")]
            Target::Mongo => self.mongo.as_ref().unwrap().read_model().await,
        }
    }

    /// The stored position of each partition under `partitions` (`None`: no row yet). `None`
    /// as a whole when the target cannot be read right now (not created yet, busy).
    pub async fn positions(&self, partitions: u32) -> Option<Vec<Option<u64>>> {
        let rows: Vec<(u32, u32, u64)> = match self.kind {
            Target::Sqlite => sqlite_rows(&self.sqlite)?,
            Target::Postgres => pg::checkpoints(&self.pg().client, CONNECTOR)
                .await
                .into_iter()
                .map(|(c, p, pos)| (c as u32, p as u32, pos.max(0) as u64))
                .collect(),
            #[cfg(feature = "mongo")]
            Target::Mongo => self
                .mongo
                .as_ref()
                .unwrap()
                .checkpoints(CONNECTOR)
                .await
                .into_iter()
                .map(|((c, p), pos)| (c as u32, p as u32, pos.max(0) as u64))
                .collect(),
        };
        let mut positions = vec![None; partitions as usize];
        for (count, partition, position) in rows {
            if count == partitions && partition < partitions {
                positions[partition as usize] = Some(position);
            }
        }
        Some(positions)
    }
}

/// Checkpoint rows of a SQLite target, without creating the file and without panicking on a
/// busy database.
fn sqlite_rows(path: &Path) -> Option<Vec<(u32, u32, u64)>> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX).ok()?;
    conn.busy_timeout(Duration::from_secs(2)).ok()?;
    let mut stmt = conn.prepare(r#"SELECT partition_count, "partition", position FROM checkpoints WHERE connector = ?1"#).ok()?;
    let rows = stmt.query_map([CONNECTOR], |r| Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u32, r.get::<_, i64>(2)?.max(0) as u64))).ok()?;
    rows.collect::<Result<Vec<_>, _>>().ok()
}

/// The lowest position over the partitions (0 while one has none).
pub fn low_watermark(positions: &[Option<u64>]) -> u64 {
    positions.iter().map(|p| p.unwrap_or(0)).min().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Faults and scenarios

/// One step of a fault schedule. Delays are (low, high) ranges in milliseconds, drawn from the
/// scenario's seeded generator.
#[derive(Debug, Clone)]
pub enum Fault {
    /// SIGKILL the gateway `after_ms` after each start and restart it at once, `kills` times.
    CrashLoop { kills: usize, after_ms: (u64, u64) },
    /// SIGKILL the gateway `after_commit_ms` after its first commit (a crash while it
    /// recovers) and restart it at once, `kills` times.
    RecoveryKills { kills: usize, after_commit_ms: (u64, u64) },
    /// SIGKILL the gateway `kill_after_ms` after its start and restart it at once; once the
    /// restarted one committed, stop it cleanly (SIGTERM, as a deployment does)
    /// `term_after_ms` later and start it again, `rounds` times.
    KillThenTerm { rounds: usize, kill_after_ms: (u64, u64), term_after_ms: (u64, u64) },
    /// SIGKILL the gateway `after_ms` after each start, restart it after `pause_ms`.
    SpacedKills { kills: usize, after_ms: (u64, u64), pause_ms: (u64, u64) },
    /// PostgreSQL: every commit of the gateway's new connections waits 100 ms
    /// (`commit_delay`); once the gateway commits, SIGKILL it `after_ms` later and restart it
    /// after `restart_pause_ms` (0: at once, while the killed one's last commit is still in
    /// flight), `kills` times. The settings are reset afterwards.
    SlowCommitKills { kills: usize, after_ms: (u64, u64), restart_pause_ms: u64 },
    /// PostgreSQL: the gateway's connections to the target cut every `every_ms` while it
    /// runs, `cuts` times, the way `via` says, commits slowed down as `slow` says (so that
    /// most cuts land while a COMMIT is in flight).
    ConnectionCuts { cuts: usize, every_ms: (u64, u64), slow: Slow, via: Cut },
    /// SIGKILL the sidecar every `every_ms`, restarting it on the same address after
    /// `down_ms`.
    SidecarKills { kills: usize, every_ms: (u64, u64), down_ms: (u64, u64) },
    /// SIGSTOP the sidecar every `every_ms` for `hang_ms`, then SIGCONT.
    SidecarHangs { hangs: usize, every_ms: (u64, u64), hang_ms: (u64, u64) },
    /// Two gateways on the connector at once for `overlap_ms`, then one SIGKILLed (with a
    /// lease: the holder); the other goes on for `after_ms`. Each round but the last ends with
    /// a SIGTERM of the survivor.
    TwoGateways { rounds: usize, overlap_ms: (u64, u64), after_ms: (u64, u64) },
}

impl Fault {
    fn scaled(self, scale: &Scale) -> Self {
        match self {
            Fault::CrashLoop { kills, after_ms } => Fault::CrashLoop { kills: scale.faults(kills), after_ms },
            Fault::RecoveryKills { kills, after_commit_ms } => Fault::RecoveryKills { kills: scale.faults(kills), after_commit_ms },
            Fault::KillThenTerm { rounds, kill_after_ms, term_after_ms } => {
                Fault::KillThenTerm { rounds: scale.faults(rounds), kill_after_ms, term_after_ms }
            }
            Fault::SpacedKills { kills, after_ms, pause_ms } => Fault::SpacedKills { kills: scale.faults(kills), after_ms, pause_ms },
            Fault::SlowCommitKills { kills, after_ms, restart_pause_ms } => {
                Fault::SlowCommitKills { kills: scale.faults(kills), after_ms, restart_pause_ms }
            }
            Fault::ConnectionCuts { cuts, every_ms, slow, via } => Fault::ConnectionCuts { cuts: scale.faults(cuts), every_ms, slow, via },
            Fault::SidecarKills { kills, every_ms, down_ms } => Fault::SidecarKills { kills: scale.faults(kills), every_ms, down_ms },
            Fault::SidecarHangs { hangs, every_ms, hang_ms } => Fault::SidecarHangs { hangs: scale.faults(hangs), every_ms, hang_ms },
            Fault::TwoGateways { rounds, overlap_ms, after_ms } => Fault::TwoGateways { rounds: scale.faults(rounds), overlap_ms, after_ms },
        }
    }
}

/// How PostgreSQL commits are slowed down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slow {
    Off,
    /// `commit_delay = 100000` (100 ms, its maximum) and `commit_siblings = 0` for the new
    /// connections to the target's database: each COMMIT waits 100 ms before its WAL flush.
    CommitDelay,
    /// A deferred constraint trigger on the gateway's checkpoints table that sleeps `ms` once
    /// per transaction: it runs inside COMMIT, before the transaction becomes visible (a
    /// loaded server, synchronous replication). The trigger is dropped afterwards.
    CommitTrigger { ms: u64 },
}

/// How a connection is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// `pg_terminate_backend` of the gateway's backends (found in `pg_stat_activity` by the
    /// database and the gateway's application name). The server finishes a COMMIT it is in
    /// before the backend exits, so the gateway sees the cut at its next statement.
    Terminate,
    /// The gateway reaches the target through a TCP proxy of the harness, which drops every
    /// connection at once: a COMMIT in flight is lost to the gateway while the server still
    /// commits it (the outcome is in doubt).
    Proxy,
}

/// A scenario: log, target, connector settings and the fault schedule.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub target: Target,
    pub seed: u64,
    /// Events in the log before the first start.
    pub events: usize,
    pub streams: usize,
    /// Events appended while the faults run (spread over `live_over_ms`; all of them are
    /// appended before the final run, whatever the faults took).
    pub live: usize,
    pub live_over_ms: u64,
    pub setup: Setup,
    /// `source.sqlite.batch_size` (events per read), if not the default.
    pub source_batch: Option<usize>,
    /// `lease:` (PostgreSQL only): `--instance-id`s a/b and a short lease.
    pub lease: bool,
    /// PostgreSQL only: the gateway reaches the target through the harness's TCP proxy (for
    /// `Cut::Proxy`).
    pub proxy: bool,
    pub faults: Vec<Fault>,
    /// Caps the fault multiplier of `CHAOS_SCALE` (a MongoDB restart after a SIGKILL waits
    /// for the dead transaction to expire: a minute each).
    pub max_fault_scale: f64,
    /// Caps the event multiplier of `CHAOS_SCALE` (a slow target).
    pub max_event_scale: f64,
    /// Longest time the final run may take to reach the head.
    pub final_within: Duration,
}

impl Scenario {
    pub fn new(name: &str, target: Target, default_seed: u64) -> Self {
        Self {
            name: name.into(),
            target,
            seed: seed(default_seed),
            events: 20_000,
            streams: 2_000,
            live: 0,
            live_over_ms: 4_000,
            setup: Setup { partitions: 8, max_ops: 100, ..Setup::default() },
            source_batch: None,
            lease: false,
            proxy: false,
            faults: Vec::new(),
            max_fault_scale: f64::INFINITY,
            max_event_scale: f64::INFINITY,
            final_within: Duration::from_secs(180),
        }
    }

    pub fn events(mut self, events: usize, streams: usize) -> Self {
        (self.events, self.streams) = (events, streams);
        self
    }

    pub fn live(mut self, events: usize, over_ms: u64) -> Self {
        (self.live, self.live_over_ms) = (events, over_ms);
        self
    }

    pub fn setup(mut self, f: impl FnOnce(&mut Setup)) -> Self {
        f(&mut self.setup);
        self
    }

    pub fn source_batch(mut self, n: usize) -> Self {
        self.source_batch = Some(n);
        self
    }

    pub fn lease(mut self) -> Self {
        self.lease = true;
        self
    }

    pub fn proxy(mut self) -> Self {
        self.proxy = true;
        self
    }

    pub fn max_fault_scale(mut self, cap: f64) -> Self {
        self.max_fault_scale = cap;
        self
    }

    pub fn max_event_scale(mut self, cap: f64) -> Self {
        self.max_event_scale = cap;
        self
    }

    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    /// Runs the scenario at the scale of the environment and reports.
    pub async fn run(self) -> Report {
        let mut scale = Scale::from_env();
        scale.faults = scale.faults.min(self.max_fault_scale);
        scale.events = scale.events.min(self.max_event_scale);
        let mut scenario = self;
        scenario.events = scale.events(scenario.events);
        scenario.streams = scale.events(scenario.streams).max(1);
        if scenario.live > 0 {
            scenario.live = scale.events(scenario.live);
            scenario.live_over_ms = (scenario.live_over_ms as f64 * scale.faults.max(1.0)) as u64;
        }
        scenario.faults = scenario.faults.into_iter().map(|f| f.scaled(&scale)).collect();
        if scale.long {
            scenario.final_within = scenario.final_within.max(Duration::from_secs(1_800));
        }
        println!(
            "chaos: scenario {} on {}: seed {} (CHAOS_SEED to replay), {} events + {} live, {} partitions, max_ops {}, source batch {:?}, faults {:?}",
            scenario.name,
            scenario.target.name(),
            scenario.seed,
            scenario.events,
            scenario.live,
            scenario.setup.partitions,
            scenario.setup.max_ops,
            scenario.source_batch,
            scenario.faults
        );
        Runner::new(scenario).await.run().await
    }
}

// ---------------------------------------------------------------------------------------------
// The live appender

struct Appender {
    stop: Arc<AtomicBool>,
    appended: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Appender {
    /// Appends `count` more events of `generator` to the log in small transactions, spread
    /// over `over`.
    fn start(log: PathBuf, mut generator: BookingsGenerator, count: usize, over: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let appended = Arc::new(AtomicUsize::new(0));
        let tick = Duration::from_millis(20);
        let ticks = (over.as_millis() / tick.as_millis()).max(1) as usize;
        let chunk = count.div_ceil(ticks).max(1);
        let thread = (count > 0).then(|| {
            let (stop, appended) = (stop.clone(), appended.clone());
            std::thread::spawn(move || {
                let mut log = EventLog::open(&log).expect("event log");
                let mut done = 0;
                while done < count {
                    // When stopped, the rest goes in at once: the run's log is always the same.
                    let n = if stop.load(Ordering::Relaxed) { (count - done).min(5_000) } else { chunk.min(count - done) };
                    log.append(&generator.take(n)).expect("append");
                    done += n;
                    appended.store(done, Ordering::Relaxed);
                    if !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                    }
                }
            })
        });
        Self { stop, appended, thread }
    }

    /// Appends what is left and waits for it.
    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the appender panicked");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy that cuts connections

/// Forwards loopback connections to a PostgreSQL server, and drops them all on demand.
pub struct TcpProxy {
    pub port: u16,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// A proxy in front of the host and port of `url` (`postgres://user:pw@host:port/db`).
    pub async fn start(url: &str) -> Self {
        let authority = url.split('@').nth(1).and_then(|rest| rest.split('/').next()).expect("host:port in the URL");
        let upstream: std::net::SocketAddr = authority.parse().expect("a numeric host:port");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(Mutex::new(Vec::<tokio::task::AbortHandle>::new()));
        let list = connections.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { continue };
                let _ = client.set_nodelay(true);
                let task = tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                let mut list = list.lock().unwrap();
                list.retain(|h| !h.is_finished());
                list.push(task.abort_handle());
            }
        });
        Self { port, connections, accept }
    }

    /// `url` pointing at the proxy.
    pub fn url(&self, url: &str) -> String {
        let (head, rest) = url.split_once('@').expect("user@ in the URL");
        let db = rest.split_once('/').map(|(_, db)| db).unwrap_or_default();
        format!("{head}@127.0.0.1:{}/{db}", self.port)
    }

    /// Drops every open connection (both ends closed at once); returns how many there were.
    pub fn cut(&self) -> usize {
        let list = std::mem::take(&mut *self.connections.lock().unwrap());
        let open = list.iter().filter(|h| !h.is_finished()).count();
        for h in list {
            h.abort();
        }
        open
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A gateway process the runner watches.
struct Gateway {
    process: Process,
    name: String,
    instance: Option<String>,
    started: Instant,
    /// Stored positions when it was started; it recovered when one of them moved up.
    baseline: Vec<Option<u64>>,
    recovered: bool,
}

fn moved(baseline: &[Option<u64>], now: &[Option<u64>]) -> bool {
    baseline.iter().zip(now).any(|(b, n)| match (b, n) {
        (Some(b), Some(n)) => n > b,
        (None, Some(_)) => true,
        _ => false,
    })
}

/// Scenario state while it runs.
struct Runner {
    scenario: Scenario,
    rng: StdRng,
    ws: Workspace,
    target: TargetDb,
    config: PathBuf,
    sidecar_address: String,
    sidecar: Option<Process>,
    sidecar_stopped: bool,
    sidecar_starts: usize,
    proxy: Option<TcpProxy>,
    appender: Appender,
    gateways: Vec<Gateway>,
    gateway_starts: usize,
    /// The latest positions seen.
    positions: Vec<Option<u64>>,
    // What the report counts.
    faults: BTreeMap<&'static str, usize>,
    /// Faults injected while the target had not reached the log's head.
    faults_mid_run: usize,
    recoveries: Vec<Duration>,
    unexpected_exits: Vec<String>,
    regressions: usize,
    regression_examples: Vec<String>,
    notes: Vec<String>,
}

impl Runner {
    async fn new(scenario: Scenario) -> Self {
        let ws = Workspace::new();
        if std::env::var_os("CHAOS_KEEP").is_some() {
            println!("chaos: keeping {}", ws.dir.path().display());
        }
        let mut generator = BookingsGenerator::new(scenario.seed, scenario.streams);
        {
            let mut log = EventLog::open(&ws.log_path()).expect("event log");
            let mut left = scenario.events;
            while left > 0 {
                let chunk = generator.take(left.min(5_000));
                left -= chunk.len();
                log.append(&chunk).expect("append");
            }
        }
        let target = TargetDb::fresh(scenario.target, &ws, &format!("chaos_{}", scenario.name)).await;
        let sidecar_address = format!("127.0.0.1:{}", free_port());
        let sidecar = spawn_sidecar(scenario.target, &sidecar_address, ws.dir.path(), 0);
        let mut source = format!("      sqlite: {{ path: \"{}\", poll_interval_ms: 2", ws.log_path().display());
        if let Some(n) = scenario.source_batch {
            source += &format!(", batch_size: {n}");
        }
        source += " }\n";
        let proxy = if scenario.proxy {
            assert_eq!(scenario.target, Target::Postgres, "the proxy is for the PostgreSQL target");
            Some(TcpProxy::start(&target.pg().db.url).await)
        } else {
            None
        };
        let sink_yaml = match &proxy {
            Some(p) => pg::postgres_sink_yaml(&p.url(&target.pg().db.url)),
            None => target.sink_yaml(),
        };
        let mut yaml = connector_yaml_from(&source, &format!("http://{sidecar_address}"), &sink_yaml, &scenario.setup);
        if scenario.lease {
            assert_eq!(scenario.target, Target::Postgres, "only the PostgreSQL target holds leases");
            yaml += "    lease: { ttl_ms: 1500, renew_every_ms: 250 }\n";
        }
        let config = ws.path("gateway.yaml");
        std::fs::write(&config, yaml).unwrap();
        let appender = Appender::start(ws.log_path(), generator, scenario.live, Duration::from_millis(scenario.live_over_ms));
        let positions = vec![None; scenario.setup.partitions as usize];
        Self {
            rng: StdRng::seed_from_u64(scenario.seed),
            scenario,
            ws,
            target,
            config,
            sidecar_address,
            sidecar: Some(sidecar),
            sidecar_stopped: false,
            sidecar_starts: 1,
            proxy,
            appender,
            gateways: Vec::new(),
            gateway_starts: 0,
            positions,
            faults: BTreeMap::new(),
            faults_mid_run: 0,
            recoveries: Vec::new(),
            unexpected_exits: Vec::new(),
            regressions: 0,
            regression_examples: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The log's last position.
    fn head(&self) -> u64 {
        let conn = rusqlite::Connection::open(self.ws.log_path()).expect("log");
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| r.get::<_, i64>(0)).expect("log head") as u64
    }

    fn delay(&mut self, (low, high): (u64, u64)) -> Duration {
        Duration::from_millis(if high > low { self.rng.random_range(low..=high) } else { low })
    }

    /// Counts a fault, and whether it hit before the target had everything appended so far.
    fn count_fault(&mut self, kind: &'static str) {
        *self.faults.entry(kind).or_default() += 1;
        if low_watermark(&self.positions) < self.head() {
            self.faults_mid_run += 1;
        }
    }

    /// Reads the stored positions; a partition's position that went down since the last
    /// read is a checkpoint regression (stored checkpoints must only move forward: nothing here
    /// resets them).
    async fn refresh(&mut self) {
        if let Some(p) = self.target.positions(self.scenario.setup.partitions).await {
            for (partition, (old, new)) in self.positions.iter().zip(&p).enumerate() {
                if let (Some(old), Some(new)) = (old, new)
                    && new < old
                {
                    self.regressions += 1;
                    if self.regression_examples.len() < 5 {
                        self.regression_examples.push(format!("partition {partition}: stored position went from {old} down to {new}"));
                    }
                }
            }
            self.positions = p;
        }
    }

    fn start_gateway(&mut self, instance: Option<&str>) {
        self.gateway_starts += 1;
        let name = format!("gateway-{}{}", self.gateway_starts, instance.map(|i| format!("-{i}")).unwrap_or_default());
        let mut command = Command::new(gateway_bin());
        command.args(["run", "--config"]).arg(&self.config).env("RUST_LOG", "info");
        let instance = instance.map(str::to_string).or_else(|| self.scenario.lease.then(|| format!("g{}", self.gateway_starts)));
        if let Some(i) = &instance {
            command.args(["--instance-id", i]);
        }
        let process = Process::spawn(command, self.ws.dir.path().join(format!("{name}.log")), false);
        self.gateways.push(Gateway { process, name, instance, started: Instant::now(), baseline: self.positions.clone(), recovered: false });
    }

    /// Starts the gateway after reading the current positions (its recovery baseline).
    async fn restart_gateway(&mut self) {
        self.refresh().await;
        self.start_gateway(None);
    }

    /// Waits (up to `within`) for the newest gateway to commit, noting it under `what` if it
    /// does not, then runs for a random delay out of `range`.
    async fn run_after_recovery(&mut self, within: Duration, what: &str, range: (u64, u64)) {
        if !self.until_recovered(within).await {
            self.notes.push(format!("{what}: the restarted gateway did not commit within {} s", within.as_secs()));
        }
        let d = self.delay(range);
        self.run_for(d).await;
    }

    /// Runs until a random delay out of `range` has passed since the newest gateway started.
    async fn run_since_newest_start(&mut self, range: (u64, u64)) {
        let d = self.delay(range);
        let started = self.gateways.last().expect("a gateway runs").started;
        self.run_for(d.saturating_sub(started.elapsed())).await;
    }

    /// Records the stored positions, then SIGKILLs the newest gateway as a fault of `kind`.
    async fn kill_newest(&mut self, kind: &'static str) {
        self.refresh().await;
        self.count_fault(kind);
        let last = self.gateways.len() - 1;
        self.kill_gateway(last);
    }

    fn kill_gateway(&mut self, index: usize) {
        let mut g = self.gateways.remove(index);
        g.process.kill_hard();
    }

    async fn term_gateway(&mut self, index: usize) -> bool {
        let mut g = self.gateways.remove(index);
        // A SIGTERM before the gateway watches for it would kill it outright: wait for its
        // first connector log line (it watches signals before it starts connectors).
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && g.process.child.try_wait().unwrap().is_none()
            && !std::fs::read_to_string(&g.process.stderr_path).unwrap_or_default().contains("starting connector")
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        g.process.signal(SIGTERM);
        let status = g.process.wait_exit(Duration::from_secs(60));
        if !status.success() {
            self.notes.push(format!("{} did not stop cleanly on SIGTERM: {status:?}\n{}", g.name, g.process.stderr()));
        }
        status.success()
    }

    /// One observation: positions, recoveries, gateways that stopped on their own (restarted
    /// at once when none is left).
    async fn tick(&mut self) {
        self.refresh().await;
        let now = Instant::now();
        for g in &mut self.gateways {
            if !g.recovered && moved(&g.baseline, &self.positions) {
                g.recovered = true;
                self.recoveries.push(now - g.started);
            }
        }
        let mut i = 0;
        while i < self.gateways.len() {
            if let Some(status) = self.gateways[i].process.child.try_wait().unwrap() {
                let g = self.gateways.remove(i);
                let tail = g.process.stderr();
                let last = tail.lines().rev().find(|l| l.contains("ERROR") || l.contains("error")).unwrap_or_default().to_string();
                self.unexpected_exits.push(format!("{} exited by itself ({status}): {last}", g.name));
            } else {
                i += 1;
            }
        }
        if self.gateways.is_empty() && self.gateway_starts > 0 {
            self.start_gateway(None);
        }
    }

    /// Observes for `d`.
    async fn run_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        loop {
            self.tick().await;
            let now = Instant::now();
            if now >= until {
                return;
            }
            tokio::time::sleep((until - now).min(Duration::from_millis(10))).await;
        }
    }

    /// Observes until the newest gateway committed something, or the target holds the whole
    /// log (nothing left to commit), or `within` passed (returns false).
    async fn until_recovered(&mut self, within: Duration) -> bool {
        let until = Instant::now() + within;
        loop {
            self.tick().await;
            if self.gateways.last().is_some_and(|g| g.recovered) {
                return true;
            }
            if low_watermark(&self.positions) >= self.head() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn ensure_gateway(&mut self) {
        if self.gateways.is_empty() {
            self.restart_gateway().await;
        }
    }

    async fn pg_admin(&self, sql: &str) {
        self.target.pg().client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// `commit_delay` for every new connection to the target's database (the `gateway` role of
    /// scripts/postgres.sh is a superuser, which `commit_delay` needs).
    async fn slow_commits(&self, on: bool) {
        let db = &self.target.pg().db.name;
        if on {
            self.pg_admin(&format!("ALTER DATABASE {db} SET commit_delay = 100000; ALTER DATABASE {db} SET commit_siblings = 0")).await;
        } else {
            self.pg_admin(&format!("ALTER DATABASE {db} RESET commit_delay; ALTER DATABASE {db} RESET commit_siblings")).await;
        }
    }

    async fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::CrashLoop { kills, after_ms } => {
                self.ensure_gateway().await;
                for _ in 0..kills {
                    self.run_since_newest_start(after_ms).await;
                    self.kill_newest("sigkill").await;
                    self.restart_gateway().await;
                }
            }
            Fault::RecoveryKills { kills, after_commit_ms } => {
                self.ensure_gateway().await;
                for _ in 0..kills {
                    self.run_after_recovery(Duration::from_secs(120), "recovery kills", after_commit_ms).await;
                    self.kill_newest("sigkill-in-recovery").await;
                    self.restart_gateway().await;
                }
            }
            Fault::KillThenTerm { rounds, kill_after_ms, term_after_ms } => {
                self.ensure_gateway().await;
                for _ in 0..rounds {
                    self.run_since_newest_start(kill_after_ms).await;
                    self.kill_newest("sigkill").await;
                    self.restart_gateway().await;
                    self.run_after_recovery(Duration::from_secs(120), "kill then term", term_after_ms).await;
                    self.refresh().await;
                    self.count_fault("sigterm-after-restart");
                    let last = self.gateways.len() - 1;
                    self.term_gateway(last).await;
                    self.restart_gateway().await;
                }
            }
            Fault::SpacedKills { kills, after_ms, pause_ms } => {
                self.ensure_gateway().await;
                for _ in 0..kills {
                    self.run_since_newest_start(after_ms).await;
                    self.kill_newest("sigkill-spaced").await;
                    let pause = self.delay(pause_ms);
                    tokio::time::sleep(pause).await;
                    self.restart_gateway().await;
                }
            }
            Fault::SlowCommitKills { kills, after_ms, restart_pause_ms } => {
                // The running gateway's connections predate the setting: start a new one.
                while !self.gateways.is_empty() {
                    self.term_gateway(0).await;
                }
                self.slow_commits(true).await;
                self.restart_gateway().await;
                for _ in 0..kills {
                    self.run_after_recovery(Duration::from_secs(60), "slow commits", after_ms).await;
                    self.kill_newest("sigkill-slow-commit").await;
                    if restart_pause_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(restart_pause_ms)).await;
                    }
                    self.restart_gateway().await;
                }
                self.slow_commits(false).await;
            }
            Fault::ConnectionCuts { cuts, every_ms, slow, via } => {
                assert!(via == Cut::Terminate || self.proxy.is_some(), "Cut::Proxy needs Scenario::proxy()");
                if slow == Slow::CommitDelay {
                    while !self.gateways.is_empty() {
                        self.term_gateway(0).await;
                    }
                    self.slow_commits(true).await;
                }
                self.ensure_gateway().await;
                if let Slow::CommitTrigger { ms } = slow {
                    // The gateway creates its checkpoints table: wait for its first commit.
                    if !self.until_recovered(Duration::from_secs(60)).await {
                        self.notes.push("connection cuts: the gateway did not commit within 60 s".into());
                    }
                    self.pg_admin(&format!(
                        r#"CREATE FUNCTION chaos_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
                           BEGIN
                             IF current_setting('chaos.slept', true) IS DISTINCT FROM 'yes' THEN
                               PERFORM set_config('chaos.slept', 'yes', true);
                               PERFORM pg_sleep({secs});
                             END IF;
                             RETURN NULL;
                           END $$;
                           CREATE CONSTRAINT TRIGGER chaos_slow_commit AFTER INSERT OR UPDATE ON public.checkpoints
                             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION chaos_slow_commit();"#,
                        secs = ms as f64 / 1000.0
                    ))
                    .await;
                }
                let (mut done, mut attempts) = (0, 0);
                while done < cuts && attempts < cuts * 20 {
                    attempts += 1;
                    let d = self.delay(every_ms);
                    self.run_for(d).await;
                    let cut = match via {
                        Cut::Terminate => {
                            let db = self.target.pg().db.name.clone();
                            let rows = self
                                .target
                                .pg()
                                .client
                                .query(
                                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                                     WHERE datname = $1 AND application_name = 'projector-gateway' AND pid <> pg_backend_pid()",
                                    &[&db],
                                )
                                .await
                                .expect("pg_terminate_backend");
                            rows.iter().any(|r| r.get::<_, Option<bool>>(0) == Some(true))
                        }
                        Cut::Proxy => self.proxy.as_ref().unwrap().cut() > 0,
                    };
                    if cut {
                        self.refresh().await;
                        self.count_fault(if via == Cut::Terminate { "pg-terminate-backend" } else { "pg-network-cut" });
                        done += 1;
                    }
                }
                match slow {
                    Slow::Off => {}
                    Slow::CommitDelay => self.slow_commits(false).await,
                    Slow::CommitTrigger { .. } => {
                        self.pg_admin("DROP TRIGGER chaos_slow_commit ON public.checkpoints; DROP FUNCTION chaos_slow_commit()").await
                    }
                }
            }
            Fault::SidecarKills { kills, every_ms, down_ms } => {
                self.ensure_gateway().await;
                for _ in 0..kills {
                    let d = self.delay(every_ms);
                    self.run_for(d).await;
                    self.refresh().await;
                    self.count_fault("sidecar-sigkill");
                    self.sidecar.take().unwrap().kill_hard();
                    let d = self.delay(down_ms);
                    self.run_for(d).await;
                    self.sidecar = Some(spawn_sidecar(self.scenario.target, &self.sidecar_address, self.ws.dir.path(), self.sidecar_starts));
                    self.sidecar_starts += 1;
                }
            }
            Fault::SidecarHangs { hangs, every_ms, hang_ms } => {
                self.ensure_gateway().await;
                for _ in 0..hangs {
                    let d = self.delay(every_ms);
                    self.run_for(d).await;
                    self.refresh().await;
                    self.count_fault("sidecar-sigstop");
                    self.sidecar.as_ref().unwrap().signal(SIGSTOP);
                    self.sidecar_stopped = true;
                    let d = self.delay(hang_ms);
                    self.run_for(d).await;
                    self.sidecar.as_ref().unwrap().signal(SIGCONT);
                    self.sidecar_stopped = false;
                }
            }
            Fault::TwoGateways { rounds, overlap_ms, after_ms } => {
                for round in 0..rounds {
                    while !self.gateways.is_empty() {
                        self.term_gateway(0).await;
                    }
                    self.refresh().await;
                    let (a, b) = (format!("a{round}"), format!("b{round}"));
                    self.start_gateway(Some(&a));
                    self.start_gateway(Some(&b));
                    self.count_fault("second-gateway");
                    let d = self.delay(overlap_ms);
                    self.run_for(d).await;
                    // With a lease, kill the holder (the other one only stands by).
                    let holder = if self.scenario.lease {
                        self.target
                            .pg()
                            .client
                            .query_opt("SELECT holder FROM public.gateway_leases WHERE connector = $1", &[&CONNECTOR])
                            .await
                            .ok()
                            .flatten()
                            .map(|r| r.get::<_, String>(0))
                    } else {
                        None
                    };
                    let victim = match holder {
                        Some(h) => self.gateways.iter().position(|g| g.instance.as_deref() == Some(&h)),
                        None if self.gateways.is_empty() => None,
                        None => Some(self.rng.random_range(0..self.gateways.len())),
                    };
                    if let Some(v) = victim {
                        self.refresh().await;
                        self.count_fault("sigkill");
                        self.kill_gateway(v);
                        if self.scenario.lease {
                            // The standby takes the lease over once it expires.
                            let survivor = self.gateways.first().and_then(|g| g.instance.clone());
                            for g in &mut self.gateways {
                                (g.started, g.baseline, g.recovered) = (Instant::now(), self.positions.clone(), false);
                            }
                            let deadline = Instant::now() + Duration::from_secs(20);
                            loop {
                                self.tick().await;
                                let holder = self
                                    .target
                                    .pg()
                                    .client
                                    .query_opt("SELECT holder FROM public.gateway_leases WHERE connector = $1", &[&CONNECTOR])
                                    .await
                                    .ok()
                                    .flatten()
                                    .map(|r| r.get::<_, String>(0));
                                if holder.is_some() && holder == survivor {
                                    break;
                                }
                                if Instant::now() >= deadline {
                                    self.notes.push(format!("two gateways, round {round}: {survivor:?} did not take the lease over within 20 s (holder {holder:?})"));
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    } else {
                        self.notes.push(format!("two gateways, round {round}: no gateway to kill (holder {:?})", self.gateways.len()));
                    }
                    let d = self.delay(after_ms);
                    self.run_for(d).await;
                }
            }
        }
    }

    async fn run(mut self) -> Report {
        let scenario_started = Instant::now();
        self.refresh().await;
        let faults = self.scenario.faults.clone();
        for fault in faults {
            self.inject(fault).await;
        }
        // The final run: every event appended, the sidecar answering, one gateway (or the
        // survivors) running to the head, then SIGTERM.
        self.appender.finish();
        if self.sidecar_stopped {
            self.sidecar.as_ref().unwrap().signal(SIGCONT);
        }
        let head = self.head();
        self.ensure_gateway().await;
        let deadline = Instant::now() + self.scenario.final_within;
        let mut reached = false;
        while Instant::now() < deadline {
            self.tick().await;
            if low_watermark(&self.positions) >= head {
                reached = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut stderr = String::new();
        if !reached {
            stderr = self.gateways.iter().map(|g| format!("--- {}:\n{}", g.name, g.process.stderr())).collect();
        }
        let mut clean_stop = true;
        while !self.gateways.is_empty() {
            clean_stop &= self.term_gateway(0).await;
        }
        let actual = self.target.read_model().await;
        let expected = ReadModel::from_log(&self.ws.log_path(), |_, _| true);
        let diff = compare(&actual, &expected);
        let final_positions = self.target.positions(self.scenario.setup.partitions).await.unwrap_or_default();
        // Transient batch failures the gateways retried (a cut connection, a write conflict).
        let batch_retries = std::fs::read_dir(self.ws.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("gateway-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default().matches("retrying the batch").count())
            .sum();
        // What an operator's log shows: WARN lines over every gateway start.
        let warn_lines = std::fs::read_dir(self.ws.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("gateway-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default().lines().filter(|l| l.contains(" WARN ")).count())
            .sum();
        if std::env::var_os("CHAOS_KEEP").is_some() {
            let _ = self.ws.dir.keep();
        }
        Report {
            scenario: self.scenario.name.clone(),
            target: self.scenario.target.name(),
            seed: self.scenario.seed,
            faults: self.faults,
            faults_mid_run: self.faults_mid_run,
            events: head,
            diff,
            recoveries: self.recoveries,
            unexpected_exits: self.unexpected_exits,
            regressions: self.regressions,
            regression_examples: self.regression_examples,
            batch_retries,
            warn_lines,
            reached,
            head,
            final_positions,
            clean_stop,
            stderr,
            notes: self.notes,
            elapsed: scenario_started.elapsed(),
        }
    }
}

/// The example sidecar (`projector-gateway example-sidecar`) for `target`'s read model.
fn spawn_sidecar(target: Target, address: &str, dir: &Path, n: usize) -> Process {
    let mut command = Command::new(gateway_bin());
    command.args(["example-sidecar", "--address", address, "--target", target.reducer()]).env_remove("REDUCER_TARGET");
    Process::spawn(command, dir.join(format!("sidecar-{n}.log")), true)
}

// ---------------------------------------------------------------------------------------------
// Comparison and report

/// How a read model differs from the reference, counted per row.
#[derive(Debug, Default, Clone)]
pub struct Diff {
    /// Rows of the reference (bookings + guests) plus unexpected rows.
    pub rows: usize,
    /// Rows missing, or with a field lower than the reference (an effect lost).
    pub lost: usize,
    /// Rows with a counter higher than the reference (an effect applied twice).
    pub duplicated: usize,
    /// By how much, summed over every counter (`bookings`, `cancellations`, `payments` of
    /// guests; `paid_cents` not counted).
    pub excess_increments: i64,
    /// Rows that differ otherwise (unexpected rows, a different status at the same position).
    pub other: usize,
    pub examples: Vec<String>,
}

pub fn compare(actual: &ReadModel, expected: &ReadModel) -> Diff {
    let mut d = Diff::default();
    // Up to 3 examples of each kind (lost, duplicated, other).
    let mut shown = [0usize; 3];
    let mut example = |d: &mut Diff, kind: usize, s: String| {
        if shown[kind] < 3 {
            shown[kind] += 1;
            d.examples.push(format!("{}: {s}", ["lost", "duplicated", "other"][kind]));
        }
    };
    for (id, e) in &expected.bookings {
        d.rows += 1;
        let Some(a) = actual.bookings.get(id) else {
            d.lost += 1;
            example(&mut d, 0, format!("booking {id} missing (expected {e:?})"));
            continue;
        };
        let (mut lost, mut dup, mut other) = (false, false, false);
        lost |= a.paid_cents < e.paid_cents || a.last_position < e.last_position;
        dup |= a.paid_cents > e.paid_cents;
        other |= !lost
            && !dup
            && (a.guest_id != e.guest_id
                || a.room_id != e.room_id
                || a.check_in != e.check_in
                || a.check_out != e.check_out
                || a.price_cents != e.price_cents
                || a.status != e.status
                || a.last_position != e.last_position);
        d.lost += lost as usize;
        d.duplicated += dup as usize;
        d.other += other as usize;
        if lost || dup || other {
            example(&mut d, if lost { 0 } else if dup { 1 } else { 2 }, format!("booking {id}: expected {e:?}, got {a:?}"));
        }
    }
    for (id, e) in &expected.guests {
        d.rows += 1;
        let Some(a) = actual.guests.get(id) else {
            d.lost += 1;
            example(&mut d, 0, format!("guest {id} missing (expected {e:?})"));
            continue;
        };
        let pairs = [(a.bookings, e.bookings), (a.cancellations, e.cancellations), (a.payments, e.payments), (a.paid_cents, e.paid_cents)];
        let lost = pairs.iter().any(|(a, e)| a < e);
        let dup = pairs.iter().any(|(a, e)| a > e);
        d.excess_increments += pairs[..3].iter().map(|(a, e)| (a - e).max(0)).sum::<i64>();
        d.lost += lost as usize;
        d.duplicated += dup as usize;
        if lost || dup {
            example(&mut d, if lost { 0 } else { 1 }, format!("guest {id}: expected {e:?}, got {a:?}"));
        }
    }
    for id in actual.bookings.keys().filter(|k| !expected.bookings.contains_key(*k)) {
        d.rows += 1;
        d.other += 1;
        example(&mut d, 2, format!("unexpected booking {id}"));
    }
    for id in actual.guests.keys().filter(|k| !expected.guests.contains_key(*k)) {
        d.rows += 1;
        d.other += 1;
        example(&mut d, 2, format!("unexpected guest {id}"));
    }
    d
}

/// What one scenario found.
#[derive(Debug)]
pub struct Report {
    pub scenario: String,
    pub target: &'static str,
    pub seed: u64,
    pub faults: BTreeMap<&'static str, usize>,
    pub faults_mid_run: usize,
    pub events: u64,
    pub diff: Diff,
    pub recoveries: Vec<Duration>,
    pub unexpected_exits: Vec<String>,
    /// Times a partition's stored position was seen going down.
    pub regressions: usize,
    pub regression_examples: Vec<String>,
    pub batch_retries: usize,
    /// WARN lines the gateways logged, over all their starts.
    pub warn_lines: usize,
    /// The final run reached the head within its deadline.
    pub reached: bool,
    pub head: u64,
    pub final_positions: Vec<Option<u64>>,
    pub clean_stop: bool,
    stderr: String,
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

impl Report {
    pub fn faults_total(&self) -> usize {
        self.faults.values().sum()
    }

    /// The `chaos scenario=...` line `scripts/chaos` parses, then details.
    pub fn print(&self) {
        let mut sorted = self.recoveries.clone();
        sorted.sort();
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{}", d.as_millis()));
        let kinds: Vec<String> = self.faults.iter().map(|(k, n)| format!("{k}:{n}")).collect();
        let verdict = if self.exactly_once() { "PASS" } else { "FAIL" };
        println!(
            "chaos scenario={} target={} seed={} faults={} fault_kinds={} faults_mid_run={} events={} rows={} lost={} duplicated={} excess_increments={} other={} recovery_p50_ms={} recovery_p99_ms={} recoveries={} checkpoint_regressions={} batch_retries={} warn_lines={} unexpected_exits={} reached_head={} clean_stop={} elapsed_s={:.1} result={}",
            self.scenario,
            self.target,
            self.seed,
            self.faults_total(),
            if kinds.is_empty() { "-".into() } else { kinds.join(",") },
            self.faults_mid_run,
            self.events,
            self.diff.rows,
            self.diff.lost,
            self.diff.duplicated,
            self.diff.excess_increments,
            self.diff.other,
            ms(percentile(&sorted, 50.0)),
            ms(percentile(&sorted, 99.0)),
            sorted.len(),
            self.regressions,
            self.batch_retries,
            self.warn_lines,
            self.unexpected_exits.len(),
            self.reached,
            self.clean_stop,
            self.elapsed.as_secs_f64(),
            verdict,
        );
        for e in &self.diff.examples {
            println!("chaos   {e}");
        }
        for e in &self.regression_examples {
            println!("chaos   checkpoint regression: {e}");
        }
        for e in self.unexpected_exits.iter().take(5) {
            println!("chaos   {e}");
        }
        for n in &self.notes {
            println!("chaos   note: {n}");
        }
    }

    /// Nothing lost, nothing applied twice, nothing else different, no stored checkpoint
    /// seen going backwards.
    pub fn exactly_once(&self) -> bool {
        self.reached && self.diff.lost == 0 && self.diff.duplicated == 0 && self.diff.other == 0 && self.regressions == 0
    }

    /// Prints the report and asserts: the final run reached the head, stopped cleanly, the
    /// faults hit mid-run, and the read model is exactly the reference.
    pub fn assert_exactly_once(&self) {
        self.print();
        assert!(
            self.reached,
            "{}: the final run did not reach the head {} within the deadline (positions {:?}):\n{}",
            self.scenario, self.head, self.final_positions, self.stderr
        );
        assert!(self.faults_total() > 0, "{}: no fault was injected: the scenario proves nothing", self.scenario);
        assert!(self.faults_mid_run > 0, "{}: every fault hit after the target had caught up: the scenario proves nothing", self.scenario);
        assert!(
            self.diff.lost == 0 && self.diff.duplicated == 0 && self.diff.other == 0,
            "{} on {} (seed {}): the read model differs from the reference in {} of {} rows: {} lost, {} with effects applied twice ({} excess counter increments), {} otherwise different; first ones:\n{}",
            self.scenario,
            self.target,
            self.seed,
            self.diff.lost + self.diff.duplicated + self.diff.other,
            self.diff.rows,
            self.diff.lost,
            self.diff.duplicated,
            self.diff.excess_increments,
            self.diff.other,
            self.diff.examples.join("\n")
        );
        assert!(
            self.regressions == 0,
            "{}: stored checkpoints went backwards {} time(s): {:?}",
            self.scenario,
            self.regressions,
            self.regression_examples
        );
        assert!(self.clean_stop, "{}: a gateway did not stop cleanly on SIGTERM: {:?}", self.scenario, self.notes);
    }
}
