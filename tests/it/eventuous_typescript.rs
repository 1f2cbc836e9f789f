//! The Eventuous-style TypeScript sample (`sidecar-examples/typescript-eventuous`) end to end,
//! as an Eventuous user would run it: a SQLite event log of Eventuous's hotel-booking events
//! (`V1.RoomBooked`, `V1.PaymentRegistered`, `V1.FullyPaid`, and types the sample has no
//! handler for) -> the gateway process with `sidecar.answers: handled` and
//! `on_timeout: ignore` -> the sample, which answers with the Eventuous base messages only and
//! sends nothing for unhandled types -> (a) a SQLite target with its raw `Execute` SQL,
//! (b) MongoDB (SecantusDB) with its `InsertOne`/`UpdateOne`.
//!
//! Each time the read model is exactly what the events say, and every partition's checkpoint
//! reaches the log head although the log (and some partitions) end with unanswered events.
//! Silences are settled without waiting for a timeout (a partition ending in 100 unanswered
//! events reaches the head within a round trip or two, live unanswered events too), and a
//! sidecar paused past the request timeout loses nothing. The sample's own unit tests
//! (`node --test`) run here too.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use projector_gateway::sources::sqlite::{EventLog, NewEvent};
use crate::support::{
    example_sidecars::{self, LogsOnFailure, TYPESCRIPT_EVENTUOUS, wait_until_applied},
    fixtures::*,
    processes::{self, Process, SIGCONT, SIGSTOP, SIGTERM},
};

/// Event types the sample has no handler for (from Eventuous's hotel-booking domain).
const UNHANDLED: [&str; 2] = ["V1.BookingCancelled", "V1.OutstandingAmountChanged"];

/// One event of the test log, typed.
#[derive(Debug, Clone)]
enum Ev {
    Booked { id: u32, guest: String, price: f64, prepaid: f64 },
    Paid { id: u32, amount: f64, outstanding: f64 },
    FullyPaid { id: u32 },
    Unhandled { id: u32, event_type: &'static str },
}

impl Ev {
    fn to_new_event(&self) -> NewEvent {
        let (id, event_type, data) = match self {
            Ev::Booked { id, guest, price, prepaid } => (*id, "V1.RoomBooked", serde_json::json!({
                "bookingId": booking(*id), "roomId": format!("room-{}", id % 7), "guestId": guest,
                "checkIn": check_in(*id), "checkOut": check_out(*id), "bookingPrice": price, "prepaidAmount": prepaid,
            })),
            Ev::Paid { id, amount, outstanding } => (*id, "V1.PaymentRegistered", serde_json::json!({
                "bookingId": booking(*id), "paymentId": format!("payment-{id}-{outstanding}"), "paidAmount": amount,
                "outstanding": outstanding,
            })),
            Ev::FullyPaid { id } => (*id, "V1.FullyPaid", serde_json::json!({ "bookingId": booking(*id) })),
            Ev::Unhandled { id, event_type } => (*id, *event_type, serde_json::json!({ "bookingId": booking(*id), "reason": "n/a" })),
        };
        NewEvent {
            stream: format!("Booking-{id}"),
            event_type: event_type.into(),
            data: data.to_string(),
            metadata: None,
            event_id: None,
            created: None,
        }
    }
}

fn booking(id: u32) -> String {
    format!("booking-{id}")
}

fn check_in(id: u32) -> String {
    format!("2026-12-{:02}", id % 20 + 1)
}

fn check_out(id: u32) -> String {
    format!("2026-12-{:02}", id % 20 + 3)
}

/// What the sample's projections make of the events, per booking id.
#[derive(Debug, Clone, PartialEq)]
struct Booking {
    room: String,
    guest: String,
    check_in: String,
    check_out: String,
    price: f64,
    paid_amount: f64,
    outstanding: f64,
    paid: bool,
}

fn expected(events: &[Ev]) -> BTreeMap<String, Booking> {
    let mut model = BTreeMap::new();
    for e in events {
        match e {
            Ev::Booked { id, guest, price, prepaid } => {
                let row = Booking {
                    room: format!("room-{}", id % 7),
                    guest: guest.clone(),
                    check_in: check_in(*id),
                    check_out: check_out(*id),
                    price: *price,
                    paid_amount: *prepaid,
                    outstanding: price - prepaid,
                    paid: false,
                };
                model.insert(booking(*id), row);
            }
            Ev::Paid { id, amount, outstanding } => {
                let b = model.get_mut(&booking(*id)).expect("paid after booked");
                b.paid_amount += amount;
                b.outstanding = *outstanding;
            }
            Ev::FullyPaid { id } => model.get_mut(&booking(*id)).expect("paid after booked").paid = true,
            Ev::Unhandled { .. } => {}
        }
    }
    model
}

/// The catch-up log: bookings `first..first + count`, in three rounds across their streams
/// (bookings; payments and unhandled updates; full payments, then cancellations last), so
/// unhandled events sit between handled ones and at the tail of the log and of partitions.
fn events(first: u32, count: u32) -> Vec<Ev> {
    let ids = first..first + count;
    let mut events = Vec::new();
    for id in ids.clone() {
        // One guest id with a quote: the sample's SQL must quote it.
        let guest = if id % 13 == 0 { format!("guest-o'brien-{id}") } else { format!("guest-{id}") };
        let prepaid = if id % 3 == 0 { 20.0 } else { 0.0 };
        events.push(Ev::Booked { id, guest, price: 100.0 + f64::from(id) * 12.25, prepaid });
    }
    for id in ids.clone() {
        let price = 100.0 + f64::from(id) * 12.25;
        let prepaid = if id % 3 == 0 { 20.0 } else { 0.0 };
        if id % 2 == 0 {
            events.push(Ev::Paid { id, amount: 50.0, outstanding: price - prepaid - 50.0 });
        }
        if id % 4 == 0 {
            events.push(Ev::Paid { id, amount: price - prepaid - 50.0, outstanding: 0.0 });
        }
        if id % 3 == 1 {
            events.push(Ev::Unhandled { id, event_type: UNHANDLED[1] });
        }
    }
    events.extend(ids.clone().filter(|id| id % 4 == 0).map(|id| Ev::FullyPaid { id }));
    events.extend(ids.filter(|id| id % 5 == 0).map(|id| Ev::Unhandled { id, event_type: UNHANDLED[0] }));
    events
}

/// Live appends after the catch-up: a new booking paid in full, then unhandled events last.
fn live_events(id: u32) -> Vec<Ev> {
    vec![
        Ev::Booked { id, guest: format!("guest-{id}"), price: 99.5, prepaid: 0.0 },
        Ev::Paid { id, amount: 99.5, outstanding: 0.0 },
        Ev::FullyPaid { id },
        Ev::Unhandled { id, event_type: UNHANDLED[1] },
        Ev::Unhandled { id: 1, event_type: UNHANDLED[0] },
    ]
}

fn append(log: &mut EventLog, events: &[Ev]) -> u64 {
    let new: Vec<NewEvent> = events.iter().map(Ev::to_new_event).collect();
    log.append(&new).expect("append");
    log.head().expect("head")
}

/// The gateway settings an Eventuous user sets for such a sidecar. The deadline for an
/// unanswered tail is short to keep the test quick, and long enough for any real answer.
fn setup() -> Setup {
    Setup { request_timeout_ms: 2_000, ..Setup::default() }
}

fn connector(log: &Path, sidecar: &str, sink_yaml: &str) -> String {
    connector_with(log, sidecar, sink_yaml, &setup())
}

/// As [`connector`], with `on_timeout: ignore` as translated Eventuous files once had it: it
/// must be safe now.
fn connector_with(log: &Path, sidecar: &str, sink_yaml: &str, setup: &Setup) -> String {
    let yaml = connector_yaml(log, sidecar, sink_yaml, setup)
        .replacen("      window:", "      answers: handled\n      on_timeout: ignore\n      window:", 1);
    assert!(yaml.contains("answers: handled"), "{yaml}");
    yaml
}

fn stop(process: &mut Process, what: &str) {
    process.signal(SIGTERM);
    let status = process.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must stop the {what} cleanly: {status:?}\n{}", process.stderr());
}

/// The sample logged that it skipped (sent nothing for) each unhandled type.
fn assert_skipped_unhandled(sidecar: &Process) {
    let log = std::fs::read_to_string(&sidecar.stderr_path).unwrap();
    for event_type in UNHANDLED {
        assert!(log.contains(&format!("No handler found for event: {event_type}")), "{log}");
    }
}

fn sqlite_bookings(target: &Path) -> BTreeMap<String, Booking> {
    let conn = rusqlite::Connection::open(target).unwrap();
    let mut stmt = conn
        .prepare("SELECT BookingId, RoomId, GuestId, CheckInDate, CheckOutDate, BookingPrice, PaidAmount, Outstanding, Paid FROM Bookings")
        .unwrap();
    stmt.query_map([], |r| {
        let paid: i64 = r.get(8)?;
        let booking = Booking {
            room: r.get(1)?,
            guest: r.get(2)?,
            check_in: r.get(3)?,
            check_out: r.get(4)?,
            price: r.get(5)?,
            paid_amount: r.get(6)?,
            outstanding: r.get(7)?,
            paid: paid == 1,
        };
        Ok((r.get::<_, String>(0)?, booking))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventuous_style_sidecar_projects_raw_sql_into_sqlite_and_unhandled_events_do_not_block_the_checkpoint() {
    let ws = Workspace::new();
    let mut log = EventLog::open(&ws.log_path()).unwrap();
    let mut all = events(1, 60);
    let head = append(&mut log, &all);
    let mut sidecar = TYPESCRIPT_EVENTUOUS.spawn("127.0.0.1:0", ws.dir.path(), "sidecar");
    let target = ws.target_path();
    let schema = processes::repo_root().join("sidecar-examples/typescript-eventuous/bookings.sql");
    let sink = format!("      sqlite:\n        path: \"{}\"\n        init_sql_file: \"{}\"\n", target.display(), schema.display());
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, connector(&ws.log_path(), sidecar.address.as_deref().unwrap(), &sink)).unwrap();
    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway");
    let _logs = LogsOnFailure(vec![gateway.stderr_path.clone(), sidecar.stderr_path.clone()]);

    let partitions = setup().partitions;
    wait_until_applied(&target, head, partitions, &mut gateway, &mut sidecar).await;
    assert_eq!(sqlite_bookings(&target), expected(&all));
    assert_skipped_unhandled(&sidecar);

    let live = live_events(61);
    let head = append(&mut log, &live);
    all.extend(live);
    wait_until_applied(&target, head, partitions, &mut gateway, &mut sidecar).await;
    stop(&mut gateway, "gateway");
    let model = sqlite_bookings(&target);
    assert_eq!(model, expected(&all));
    assert_eq!((model.len(), model.values().filter(|b| b.paid).count()), (61, 16), "the events cover what they should");
    let rows = sqlite_checkpoints(&target, "bookings");
    assert_eq!(rows.len(), partitions as usize, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == partitions && r.2 == head), "every partition at the head {head}: {rows:?}");
    stop(&mut sidecar, "sidecar");
}

#[cfg(feature = "mongo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventuous_style_sidecar_projects_insert_one_and_update_one_into_mongodb() {
    use mongodb::bson::{Document, doc};
    use crate::support::mongo::{MongoDb, Server};

    fn document(id: &str, b: &Booking) -> Document {
        doc! {
            "_id": id, "roomId": &b.room, "guestId": &b.guest, "checkInDate": &b.check_in,
            "checkOutDate": &b.check_out, "bookingPrice": b.price, "paidAmount": b.paid_amount,
            "outstanding": b.outstanding, "paid": b.paid,
        }
    }
    async fn wait_for(db: &MongoDb, head: u64, gateway: &mut Process, sidecar: &mut Process) {
        let partitions = i64::from(setup().partitions);
        let at_head = |rows: &BTreeMap<(i64, i64), i64>| {
            rows.iter().filter(|((count, _), position)| *count == partitions && **position >= head as i64).count()
                == partitions as usize
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        while !at_head(&db.checkpoints("bookings").await) {
            for (name, process) in [("gateway", &mut *gateway), ("sidecar", &mut *sidecar)] {
                if let Some(status) = process.child.try_wait().unwrap() {
                    panic!("the {name} exited ({status}) before the checkpoints reached {head}:\n{}", process.stderr());
                }
            }
            assert!(std::time::Instant::now() < deadline, "the checkpoints did not reach {head}: {:?}", db.checkpoints("bookings").await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let expected_documents =
        |events: &[Ev]| -> Vec<Document> { expected(events).iter().map(|(id, b)| document(id, b)).collect() };

    let ws = Workspace::new();
    let db = MongoDb::fresh(Server::Secantus, "eventuous_ts").await;
    let mut log = EventLog::open(&ws.log_path()).unwrap();
    let mut all = events(1, 60);
    let head = append(&mut log, &all);
    let mut command = TYPESCRIPT_EVENTUOUS.command();
    command.env("REDUCER_TARGET", "mongo").args(["--address", "127.0.0.1:0"]);
    let mut sidecar = Process::spawn(command, ws.path("sidecar.log"), true);
    let config = ws.path("gateway.yaml");
    // Eventuous's MongoDB operations name no collection: they act on the connector's.
    let sink = db.sink_yaml("").replace("collection: docs", "collection: bookings");
    std::fs::write(&config, connector(&ws.log_path(), sidecar.address.as_deref().unwrap(), &sink)).unwrap();
    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway");
    let _logs = LogsOnFailure(vec![gateway.stderr_path.clone(), sidecar.stderr_path.clone()]);

    wait_for(&db, head, &mut gateway, &mut sidecar).await;
    assert_eq!(db.documents("bookings").await, expected_documents(&all));
    assert_skipped_unhandled(&sidecar);

    let live = live_events(61);
    let head = append(&mut log, &live);
    all.extend(live);
    wait_for(&db, head, &mut gateway, &mut sidecar).await;
    stop(&mut gateway, "gateway");
    assert_eq!(db.documents("bookings").await, expected_documents(&all));
    let partitions = i64::from(setup().partitions);
    let rows = db.checkpoints("bookings").await;
    assert_eq!(rows.len(), partitions as usize, "{rows:?}");
    assert!(rows.iter().all(|((count, _), position)| *count == partitions && *position == head as i64), "every partition at {head}: {rows:?}");
    stop(&mut sidecar, "sidecar");
}

/// The sample with a SQLite target, and the gateway running `setup`'s connector.
struct SqliteRun {
    ws: Workspace,
    log: EventLog,
    sidecar: Process,
    gateway: Process,
    _logs: LogsOnFailure,
}

impl SqliteRun {
    fn start(initial: &[Ev], setup: &Setup) -> Self {
        Self::start_with(initial, |log, sidecar, sink| connector_with(log, sidecar, sink, setup))
    }

    /// With the gateway's config from `yaml(log, sidecar address, sink section)`.
    fn start_with(initial: &[Ev], yaml: impl FnOnce(&Path, &str, &str) -> String) -> Self {
        let ws = Workspace::new();
        let mut log = EventLog::open(&ws.log_path()).unwrap();
        append(&mut log, initial);
        let sidecar = TYPESCRIPT_EVENTUOUS.spawn("127.0.0.1:0", ws.dir.path(), "sidecar");
        let schema = processes::repo_root().join("sidecar-examples/typescript-eventuous/bookings.sql");
        let sink = format!("      sqlite:\n        path: \"{}\"\n        init_sql_file: \"{}\"\n", ws.target_path().display(), schema.display());
        let config = ws.path("gateway.yaml");
        std::fs::write(&config, yaml(&ws.log_path(), sidecar.address.as_deref().unwrap(), &sink)).unwrap();
        let gateway = processes::gateway_run(&config, ws.dir.path(), "gateway");
        let _logs = LogsOnFailure(vec![gateway.stderr_path.clone(), sidecar.stderr_path.clone()]);
        Self { ws, log, sidecar, gateway, _logs }
    }

    /// How long every partition's checkpoint takes to reach the head `head`.
    async fn time_to(&mut self, head: u64, partitions: u32) -> Duration {
        let started = Instant::now();
        wait_until_applied(&self.ws.target_path(), head, partitions, &mut self.gateway, &mut self.sidecar).await;
        started.elapsed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tails_and_live_unanswered_events_settle_within_round_trips_not_timeouts() {
    // A timeout as long as the default: each silent event used to wait for all of it.
    let setup = Setup { request_timeout_ms: 30_000, ..Setup::default() };
    let bound = Duration::from_millis(setup.request_timeout_ms / 6);
    let mut all = events(1, 40);
    let mut run = SqliteRun::start(&all, &setup);
    let head = run.log.head().unwrap();
    let catch_up = run.time_to(head, setup.partitions).await;
    assert!(catch_up < bound, "the catch-up, whose partitions end with unanswered events, took {catch_up:?}");

    // One partition's last 100 events are unanswered.
    let mut tail = vec![Ev::Booked { id: 41, guest: "guest-41".into(), price: 10.0, prepaid: 0.0 }];
    tail.extend((0..100).map(|_| Ev::Unhandled { id: 41, event_type: UNHANDLED[1] }));
    let head = append(&mut run.log, &tail);
    all.extend(tail);
    let settled = run.time_to(head, setup.partitions).await;
    println!("silent tail: a partition ending with 100 unanswered events reached the head in {settled:?} (request_timeout_ms {})", setup.request_timeout_ms);
    assert!(settled < bound, "a silent tail of 100 events took {settled:?}");

    // Live appends of unanswered types only, on a partition whose last answer is old.
    for id in [3, 41] {
        let head = append(&mut run.log, &[Ev::Unhandled { id, event_type: UNHANDLED[0] }]);
        let live = run.time_to(head, setup.partitions).await;
        assert!(live < bound, "one live unanswered event held the checkpoint for {live:?}");
    }
    let started = Instant::now();
    stop(&mut run.gateway, "gateway");
    assert!(started.elapsed() < bound, "SIGTERM took {:?}", started.elapsed());
    assert_eq!(sqlite_bookings(&run.ws.target_path()), expected(&all));
    let gateway_log = std::fs::read_to_string(&run.gateway.stderr_path).unwrap();
    assert!(gateway_log.contains("the sidecar does not answer events of type `V1.OutstandingAmountChanged`"), "{gateway_log}");
    let warnings: Vec<&str> = gateway_log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        warnings.len() == 1 && warnings[0].contains("`sidecar.on_timeout: ignore` no longer skips"),
        "only the warning about the old setting, none for a sidecar that works as it should: {warnings:#?}"
    );
    stop(&mut run.sidecar, "sidecar");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_paused_past_the_request_timeout_loses_no_answer() {
    let setup = Setup { request_timeout_ms: 1_000, max_retries: 5, ..Setup::default() };
    let mut all = events(1, 20);
    let mut run = SqliteRun::start(&all, &setup);
    let head = run.log.head().unwrap();
    run.time_to(head, setup.partitions).await;

    // Paused, as a long GC pause or a frozen VM would: the answers come after the timeout.
    run.sidecar.signal(SIGSTOP);
    let paused = vec![
        Ev::Booked { id: 21, guest: "guest-21".into(), price: 80.0, prepaid: 0.0 },
        Ev::Paid { id: 21, amount: 30.0, outstanding: 50.0 },
        Ev::Booked { id: 22, guest: "guest-22".into(), price: 90.0, prepaid: 10.0 },
    ];
    let head = append(&mut run.log, &paused);
    all.extend(paused);
    poll_until("the gateway to report the request timeout", Duration::from_secs(30), || {
        std::fs::read_to_string(&run.gateway.stderr_path).unwrap().contains("did not answer within").then_some(())
    })
    .await;
    run.sidecar.signal(SIGCONT);
    run.time_to(head, setup.partitions).await;
    stop(&mut run.gateway, "gateway");
    assert_eq!(sqlite_bookings(&run.ws.target_path()), expected(&all), "every answer that came late is applied");
    stop(&mut run.sidecar, "sidecar");
}

#[test]
fn run_as_if_it_answered_every_event_the_connector_stops_and_names_answers_handled() {
    let setup = Setup { request_timeout_ms: 5_000, ..Setup::default() };
    let events = [
        Ev::Booked { id: 1, guest: "guest-1".into(), price: 10.0, prepaid: 0.0 },
        Ev::Unhandled { id: 1, event_type: UNHANDLED[1] },
        Ev::Paid { id: 1, amount: 10.0, outstanding: 0.0 },
    ];
    let mut run = SqliteRun::start_with(&events, |log, sidecar, sink| connector_yaml(log, sidecar, sink, &setup));
    let status = run.gateway.wait_exit(Duration::from_secs(60));
    let log = std::fs::read_to_string(&run.gateway.stderr_path).unwrap();
    assert!(!status.success(), "{log}");
    assert!(log.contains("responses must come back in request order") && log.contains("set `sidecar.answers: handled`"), "{log}");
    let rows = sqlite_checkpoints(&run.ws.target_path(), "bookings");
    assert_eq!(rows.iter().map(|r| r.2).min(), Some(1), "the stream's partition stays before the unanswered event: {rows:?}");
    stop(&mut run.sidecar, "sidecar");
}

#[test]
fn the_sample_refuses_an_unknown_target() {
    example_sidecars::refuses_an_unknown_target(&TYPESCRIPT_EVENTUOUS);
}

#[test]
fn the_sample_unit_tests_pass() {
    let out = TYPESCRIPT_EVENTUOUS.run_script(&["--test"]);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the sample's unit tests failed ({}):\n{report}", out.status);
    // node --test succeeds with zero tests too: make sure it ran some and none failed.
    let count = |key: &str| {
        report.lines().find_map(|line| {
            let rest = line.strip_prefix("# ").or_else(|| line.strip_prefix("ℹ "))?;
            rest.strip_prefix(key)?.trim().parse::<u32>().ok()
        })
    };
    assert!(count("pass ").is_some_and(|n| n > 0) && count("fail ") == Some(0), "{report}");
}
