//! Bounded memory under a stall: with a backlog waiting in the SQLite log, a sidecar that stops
//! answering (SIGSTOP) and, separately, a target that refuses writes (another connection holds
//! its write lock) leave the gateway's resident memory where it was: every stage is joined by
//! bounded channels, so a stall holds back the reading of the log instead of filling memory.
//!
//! The gateway, the example sidecar and `projector-gateway generate` run as real processes;
//! the gateway's `VmRSS` (sampled every 100 ms through the stall) and `VmHWM` (its peak since
//! start) come from `/proc/<pid>/status`. The test command runs it with 100,000 events in the
//! log and 12 s stalls; `scripts/stall` with 1,000,000 (`STALL_EVENTS`) and 30 s stalls
//! (`STALL_SECS`). The bound is the same.
//!
//! ```text
//! cargo test --test it stall_memory:: -- --nocapture      # 100k events, debug build
//! scripts/stall                                      # 1M events, release build
//! ```

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::support::{
    fixtures::*,
    processes::{self, Process, SIGCONT, SIGSTOP},
};

/// Events in the log: 100,000 unless `STALL_EVENTS` says otherwise.
fn backlog() -> usize {
    std::env::var("STALL_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

/// The bound on the gateway's resident memory, at any time of a run (`VmHWM`): the same with
/// 100,000 or 1,000,000 events waiting, since it depends on the configuration (window x
/// partitions, channel sizes, `max_ops`), not on the backlog.
const RSS_BOUND_KIB: u64 = 96 * 1024;

/// How long each stall lasts (`STALL_SECS`, 12 s unless set): several request timeouts (the
/// sidecar's) or many busy retries (the target's).
fn stall() -> Duration {
    Duration::from_secs(std::env::var("STALL_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(12))
}

/// Where the gateway stalls: once it has committed this far (the rest of the log waits).
const STALL_AT: u64 = 2_000;

const WAIT: Duration = Duration::from_secs(300);

/// The event log, generated once for the test binary with `projector-gateway generate`.
fn shared_log() -> &'static Path {
    static LOG: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &LOG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.db");
        let started = Instant::now();
        let out = Command::new(processes::gateway_bin())
            .args(["generate", "--log"])
            .arg(&log)
            .args(["--events", &backlog().to_string(), "--streams", "5000", "--seed", "19"])
            .output()
            .expect("projector-gateway generate");
        assert!(out.status.success(), "generate failed: {}", String::from_utf8_lossy(&out.stderr));
        eprintln!("stall: generated {} events in {:.1?}", backlog(), started.elapsed());
        (dir, log)
    })
    .1
}

/// One stall at a time: the two tests would otherwise share two cores four ways.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

struct Rss {
    /// The highest `VmRSS` sampled during the stall.
    stalled_max_kib: u64,
    /// `VmHWM` at the end of the stall: the peak since the gateway started.
    peak_kib: u64,
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the gateway is running");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Samples the gateway's RSS every 100 ms for [`stall`].
async fn sample_through_the_stall(gateway: &mut Process) -> Rss {
    let pid = gateway.child.id();
    let until = Instant::now() + stall();
    let mut stalled_max_kib = 0;
    while Instant::now() < until {
        assert!(gateway.child.try_wait().unwrap().is_none(), "the gateway stopped during the stall:\n{}", gateway.stderr());
        stalled_max_kib = stalled_max_kib.max(status_kib(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Rss { stalled_max_kib, peak_kib: status_kib(pid, "VmHWM:") }
}

/// A gateway and the example sidecar on the shared log, into a fresh SQLite target, with the
/// gateway's default window and partitions; a request timeout short enough to resend several
/// times during a stall, and retries enough never to give up on it.
struct Run {
    ws: Workspace,
    gateway: Process,
    sidecar: Process,
}

impl Run {
    fn start() -> Self {
        let ws = Workspace::new();
        let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
        let setup = Setup { partitions: 8, window: 256, max_ops: 500, request_timeout_ms: 4_000, max_retries: 1_000, ..Setup::default() };
        let yaml = connector_yaml(shared_log(), sidecar.address.as_deref().unwrap(), &sqlite_sink_yaml(&ws.target_path()), &setup);
        std::fs::write(ws.path("gateway.yaml"), yaml).unwrap();
        let gateway = processes::gateway_run(&ws.path("gateway.yaml"), ws.dir.path(), "gateway");
        Self { ws, gateway, sidecar }
    }

    fn committed(&self) -> u64 {
        sqlite_low_watermark(&self.ws.target_path(), "bookings", 8)
    }

    async fn wait_committed(&self, position: u64) {
        poll_until(&format!("the gateway to commit position {position}"), WAIT, || (self.committed() >= position).then_some(())).await;
    }
}

fn report(what: &str, rss: &Rss, committed_before: u64, committed_during: u64) {
    eprintln!(
        "stall: {what} with {} events in the log, {} waiting: gateway VmRSS max {} KiB during the {:?} stall, VmHWM {} KiB \
         (bound {RSS_BOUND_KIB} KiB); committed {committed_before} before, {committed_during} at the end of the stall",
        backlog(),
        backlog() as u64 - committed_before,
        rss.stalled_max_kib,
        stall(),
        rss.peak_kib,
    );
    assert!(rss.peak_kib < RSS_BOUND_KIB, "{what}: the gateway peaked at {} KiB (bound {RSS_BOUND_KIB} KiB)", rss.peak_kib);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sidecar_leaves_the_gateway_memory_bounded() {
    let _serial = serial().await;
    let mut run = Run::start();
    run.wait_committed(STALL_AT).await;
    run.sidecar.signal(SIGSTOP);
    let before = run.committed();
    let rss = sample_through_the_stall(&mut run.gateway).await;
    let during = run.committed();
    run.sidecar.signal(SIGCONT);
    report("sidecar SIGSTOPped", &rss, before, during);
    // The checkpoint waited (what was answered before the stop may still commit), and the
    // gateway goes on once the sidecar does.
    assert!(during < backlog() as u64, "the backlog was applied during the stall");
    run.wait_committed(during + 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_target_leaves_the_gateway_memory_bounded() {
    let _serial = serial().await;
    let mut run = Run::start();
    run.wait_committed(STALL_AT).await;
    // Another connection takes the target's write lock and holds it.
    let lock = rusqlite::Connection::open(run.ws.target_path()).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS stall_lock (x); INSERT INTO stall_lock VALUES (1);").unwrap();
    let before = run.committed();
    let rss = sample_through_the_stall(&mut run.gateway).await;
    let during = run.committed();
    lock.execute_batch("ROLLBACK").unwrap();
    report("target locked", &rss, before, during);
    assert_eq!(during, before, "a batch committed through the lock");
    run.wait_committed(during + 1_000).await;
}
