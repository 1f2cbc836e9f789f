//! Fault injection: is the read model exactly once when the gateway is killed in a loop, its
//! PostgreSQL commits are slow or its connections cut, the sidecar dies or hangs, or two
//! gateways run one connector? Each test runs one scenario of `support/chaos.rs` (real
//! processes, a SQLite event log, live appends), prints its `chaos scenario=...` line, and
//! asserts the target's read model equals the reference computed from the log (nothing lost,
//! no counter applied twice) and that no stored checkpoint was seen going backwards.
//!
//! Bounded for CI (the whole file in a few minutes on 2 cores, one scenario at a time);
//! `scripts/chaos` runs the same tests at `CHAOS_SCALE=long`. `CHAOS_SEED` replays a run.

use crate::support::chaos::{Cut, Fault, Scenario, Slow, Target, serial};

/// Kills 50-300 ms after each start, restarted at once: each start resumes from checkpoints
/// that partitions left at different positions.
fn crash_loop(kills: usize) -> Fault {
    Fault::CrashLoop { kills, after_ms: (50, 300) }
}

/// Kills 0-40 ms after the restarted gateway's first commit: while it recovers.
fn recovery_kills(kills: usize) -> Fault {
    Fault::RecoveryKills { kills, after_commit_ms: (0, 40) }
}

fn spaced_kills(kills: usize) -> Fault {
    Fault::SpacedKills { kills, after_ms: (300, 1_500), pause_ms: (50, 500) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_sqlite() {
    let _serial = serial().await;
    Scenario::new("crash_loop", Target::Sqlite, 0x0C4A_0501)
        .events(30_000, 3_000)
        .source_batch(50)
        .live(3_000, 6_000)
        .fault(crash_loop(14))
        .fault(recovery_kills(10))
        .fault(spaced_kills(2))
        .run()
        .await
        .assert_exactly_once();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_postgres() {
    let _serial = serial().await;
    Scenario::new("crash_loop", Target::Postgres, 0x0C4A_0502)
        .events(20_000, 2_000)
        .source_batch(50)
        .live(2_000, 4_000)
        .fault(crash_loop(14))
        .fault(spaced_kills(2))
        .run()
        .await
        .assert_exactly_once();
}

/// MongoDB: a SIGKILL leaves the dead gateway's transaction open, holding its documents until
/// the server reaps it (`transactionLifetimeLimitSeconds`, 60 s), so the restarted gateway
/// waits that long on write conflicts before it commits; a crash loop would spend minutes
/// waiting. One crash mid-run, the restart, then a clean stop (SIGTERM, as a deployment does)
/// soon after it committed, and a start again.
#[cfg(feature = "mongo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_restart_mongo() {
    let _serial = serial().await;
    Scenario::new("crash_restart", Target::Mongo, 0x0C4A_0503)
        .events(10_000, 1_000)
        .source_batch(50)
        .max_fault_scale(3.0)
        .max_event_scale(20.0)
        .fault(Fault::KillThenTerm { rounds: 1, kill_after_ms: (300, 1_000), term_after_ms: (50, 300) })
        .run()
        .await
        .assert_exactly_once();
}

/// Every commit takes 100 ms (`commit_delay`); the gateway is killed while one is in flight
/// and restarted at once: it must not read its checkpoints before that commit is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_commit_restart_postgres() {
    let _serial = serial().await;
    Scenario::new("slow_commit_restart", Target::Postgres, 0x0C4A_0504)
        .events(20_000, 2_000)
        .setup(|s| s.max_ops = 200)
        // Reads of 5000 events: the first read after a restart ends past every partition's
        // stored position, so the "read up to" marks cannot lower a checkpoint (the crash
        // loops' failure); what this test finds is the restart reading stale checkpoints.
        .source_batch(5_000)
        .fault(Fault::SlowCommitKills { kills: 6, after_ms: (100, 400), restart_pause_ms: 0 })
        .run()
        .await
        .assert_exactly_once();
}

/// The gateway's backends terminated (`pg_terminate_backend`) while it runs, commits slowed
/// down (`commit_delay`) so that most land during a COMMIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_postgres() {
    let _serial = serial().await;
    Scenario::new("connection_cut", Target::Postgres, 0x0C4A_0505)
        .events(20_000, 2_000)
        .live(1_000, 4_000)
        .fault(Fault::ConnectionCuts { cuts: 12, every_ms: (100, 400), slow: Slow::CommitDelay, via: Cut::Terminate })
        .run()
        .await
        .assert_exactly_once();
}

/// The gateway's connections to PostgreSQL dropped on the network (a proxy between them)
/// while a COMMIT is in flight (every commit made to take 500 ms): the gateway cannot know
/// whether the batch committed, and must find out before applying it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_mid_commit_postgres() {
    let _serial = serial().await;
    Scenario::new("network_cut_mid_commit", Target::Postgres, 0x0C4A_0509)
        .events(20_000, 2_000)
        .proxy()
        .live(1_000, 4_000)
        .fault(Fault::ConnectionCuts { cuts: 8, every_ms: (200, 800), slow: Slow::CommitTrigger { ms: 500 }, via: Cut::Proxy })
        .run()
        .await
        .assert_exactly_once();
}

/// The sidecar killed and restarted on its address, then paused (SIGSTOP) past the request
/// timeout and resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_faults_sqlite() {
    let _serial = serial().await;
    let report = Scenario::new("sidecar_faults", Target::Sqlite, 0x0C4A_0506)
        .events(20_000, 2_000)
        .setup(|s| {
            s.request_timeout_ms = 1_000;
            s.max_retries = 20;
        })
        .live(2_000, 6_000)
        .fault(Fault::SidecarKills { kills: 4, every_ms: (200, 800), down_ms: (0, 300) })
        .fault(Fault::SidecarHangs { hangs: 3, every_ms: (200, 600), hang_ms: (300, 1_800) })
        .run()
        .await;
    report.assert_exactly_once();
    // One warning per outage, not one per partition stream and retry.
    let outages = report.faults_total();
    assert!(
        report.warn_lines <= 2 * outages,
        "{} WARN lines for {outages} sidecar outages: repeats must go to debug level",
        report.warn_lines
    );
}

/// Two gateways started on one connector without a lease (a deployment mistake
/// docs/operations.md warns about: "Without `lease:` ... run one replica"), both running for
/// a while, then one killed. The checkpoint fence refuses every batch of one that the other
/// already committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sqlite() {
    let _serial = serial().await;
    Scenario::new("two_gateways", Target::Sqlite, 0x0C4A_0507)
        .events(20_000, 2_000)
        .live(1_000, 3_000)
        .fault(Fault::TwoGateways { rounds: 1, overlap_ms: (800, 1_500), after_ms: (200, 600) })
        .run()
        .await
        .assert_exactly_once();
}

/// The same with `lease:` on PostgreSQL: one runs, the other stands by; the holder is killed
/// and the standby takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_postgres() {
    let _serial = serial().await;
    Scenario::new("two_gateways_leased", Target::Postgres, 0x0C4A_0508)
        .events(20_000, 2_000)
        .lease()
        .live(4_000, 10_000)
        .fault(Fault::TwoGateways { rounds: 2, overlap_ms: (800, 1_500), after_ms: (200, 600) })
        .run()
        .await
        .assert_exactly_once();
}

