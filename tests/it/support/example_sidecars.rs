//! The example sidecars of `sidecar-examples/` as the processes an operator runs, each set up
//! by its own `scripts/<language>-sidecar.sh`, and the scenarios every example must pass
//! through the gateway process: catch-up, live appends, the sidecar stopped with SIGTERM and
//! replaced while the gateway holds its streams, and the raw JSON payload. With
//! `REDUCER_TARGET=mongo`: the operations and Describe of the Rust reference, field for field,
//! and the read model in MongoDB (SecantusDB), also after the gateway is killed with SIGKILL.
//! With `REDUCER_TARGET=elastic` the same: the Rust reference's Elasticsearch operations and
//! Describe, and the documents in Elasticsearch (started by `scripts/elastic.sh`) exactly those
//! the reference writes, also after the gateway is killed with SIGKILL and replays.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Mutex,
    time::Duration,
};

use projector_gateway::{
    demo::BookingsGenerator,
    payload::{json_to_struct, struct_to_json},
    proto as gw,
};

#[cfg(feature = "elastic")]
use super::elastic::{Engine, Indices};
#[cfg(feature = "mongo")]
use super::mongo::{MongoDb, Server};
use super::{
    bookings_model::ReadModel,
    fixtures::*,
    processes::{self, Process, SIGTERM},
};

const WAIT: Duration = Duration::from_secs(180);

/// One example sidecar and how to start it.
pub struct Example {
    pub language: &'static str,
    /// Set-up script (relative to the repository): prints the program to run as its last
    /// stdout line; `--test` runs the example's own unit tests.
    script: &'static str,
    /// Arguments before `--address` (relative paths are resolved against the repository).
    program_args: &'static [&'static str],
}

pub const RUST: Example = Example { language: "rust", script: "scripts/rust-sidecar.sh", program_args: &[] };
pub const PYTHON: Example =
    Example { language: "python", script: "scripts/python-sidecar.sh", program_args: &["sidecar-examples/python/reducer.py"] };
pub const TYPESCRIPT: Example = Example { language: "typescript", script: "scripts/typescript-sidecar.sh", program_args: &[] };
pub const GO: Example = Example { language: "go", script: "scripts/go-sidecar.sh", program_args: &[] };
pub const JAVA: Example = Example { language: "java", script: "scripts/java-sidecar.sh", program_args: &[] };
/// The Eventuous-style sample (`sidecar-examples/typescript-eventuous`): its own `V1.*` events,
/// not the bookings domain of BOOKINGS.md, and no reply for unhandled types.
pub const TYPESCRIPT_EVENTUOUS: Example =
    Example { language: "typescript-eventuous", script: "scripts/typescript-eventuous-sidecar.sh", program_args: &[] };

impl Example {
    /// Runs the set-up script with `args`, capturing what it prints.
    pub fn run_script(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(processes::repo_root().join(self.script))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.script))
    }

    /// The program that starts the sidecar, set up once per test binary.
    pub fn program(&self) -> PathBuf {
        static PROGRAMS: Mutex<Option<HashMap<&'static str, PathBuf>>> = Mutex::new(None);
        let mut programs = PROGRAMS.lock().unwrap_or_else(|e| e.into_inner());
        let programs = programs.get_or_insert_with(HashMap::new);
        if let Some(program) = programs.get(self.language) {
            return program.clone();
        }
        let out = self.run_script(&[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{} failed ({}):\n{stderr}", self.script, out.status);
        let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
        let program = PathBuf::from(stdout.lines().last().expect("the program's path").trim());
        assert!(program.is_absolute() && program.is_file(), "not a program: {program:?}\n{stderr}");
        programs.insert(self.language, program.clone());
        program
    }

    /// The sidecar's command for the SQL read model, before `--address`.
    pub fn command(&self) -> Command {
        self.command_for("sql")
    }

    /// The sidecar's command with `REDUCER_TARGET=target`, before `--address`.
    pub fn command_for(&self, target: &str) -> Command {
        let mut command = Command::new(self.program());
        command.args(self.program_args.iter().map(|a| processes::repo_root().join(a)));
        command.env("REDUCER_TARGET", target);
        command
    }

    /// The sidecar (SQL read model) as a process listening on `address` (`HOST:PORT`, port 0
    /// for any).
    pub fn spawn(&self, address: &str, dir: &Path, name: &str) -> Process {
        self.spawn_for("sql", address, dir, name)
    }

    /// The sidecar with `REDUCER_TARGET=target` as a process listening on `address`.
    pub fn spawn_for(&self, target: &str, address: &str, dir: &Path, name: &str) -> Process {
        let mut command = self.command_for(target);
        command.args(["--address", address]);
        Process::spawn(command, dir.join(format!("{name}.log")), true)
    }
}

/// Shows the tail of each process log when the test fails, before the temp folder that holds
/// the logs is removed.
pub struct LogsOnFailure(pub Vec<PathBuf>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for path in &self.0 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- last lines of {} ---\n{}", path.display(), lines[lines.len().saturating_sub(40)..].join("\n"));
        }
    }
}

/// Polls the target until every partition's checkpoint has reached `head`; fails at once if
/// the gateway or the sidecar exits meanwhile.
pub async fn wait_until_applied(target: &Path, head: u64, partitions: u32, gateway: &mut Process, sidecar: &mut Process) {
    poll_until(&format!("the checkpoints to reach the log head {head}"), WAIT, || {
        assert_running(gateway, sidecar, &format!("the checkpoints reached {head}"));
        (sqlite_low_watermark(target, "bookings", partitions) >= head).then_some(())
    })
    .await;
}

/// Panics, with its stderr, if the gateway or the sidecar has exited before `what`.
fn assert_running(gateway: &mut Process, sidecar: &mut Process, what: &str) {
    for (name, process) in [("gateway", gateway), ("sidecar", sidecar)] {
        if let Some(status) = process.child.try_wait().unwrap() {
            panic!("the {name} exited ({status}) before {what}:\n{}", process.stderr());
        }
    }
}

fn everything(_: &str, _: &str) -> bool {
    true
}

fn stop(process: &mut Process, what: &str) {
    process.signal(SIGTERM);
    let status = process.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must stop the {what} cleanly: {status:?}\n{}", process.stderr());
}

/// Gateway process -> the example -> SQLite target: catch-up, live appends, the sidecar
/// stopped with SIGTERM (exit 0) and replaced on the same port while the gateway holds its
/// streams, the gateway stopped with SIGTERM; the read model equals the reference each time
/// and every checkpoint reaches the head. Returns the workspace for further checks.
pub async fn catch_up_live_and_sidecar_restart(example: &Example, seed: u64) -> Workspace {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(5_000, 500, seed);
    let mut sidecar = example.spawn("127.0.0.1:0", ws.dir.path(), &format!("{}-sidecar-1", example.language));
    let address = sidecar.address.clone().expect("sidecar address");
    let setup = Setup::default();
    let config = ws.path("gateway.yaml");
    let target = ws.target_path();
    std::fs::write(&config, connector_yaml(&ws.log_path(), &address, &sqlite_sink_yaml(&target), &setup)).unwrap();
    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway");
    let mut logs = LogsOnFailure(vec![gateway.stderr_path.clone(), sidecar.stderr_path.clone()]);

    let head = log.head().unwrap();
    wait_until_applied(&target, head, setup.partitions, &mut gateway, &mut sidecar).await;
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));

    append_generated(&mut log, 1_000, 100, seed + 1);
    wait_until_applied(&target, log.head().unwrap(), setup.partitions, &mut gateway, &mut sidecar).await;
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));

    stop(&mut sidecar, &format!("{} sidecar", example.language));
    let replacement = format!("{}-sidecar-2", example.language);
    let mut sidecar = example.spawn(address.trim_start_matches("http://"), ws.dir.path(), &replacement);
    logs.0.push(sidecar.stderr_path.clone());
    append_generated(&mut log, 1_000, 100, seed + 2);
    let head = log.head().unwrap();
    wait_until_applied(&target, head, setup.partitions, &mut gateway, &mut sidecar).await;

    stop(&mut gateway, "gateway");
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    let rows = sqlite_checkpoints(&target, "bookings");
    assert_eq!(rows.len(), setup.partitions as usize, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == setup.partitions && r.2 == head), "every partition at the head {head}: {rows:?}");
    stop(&mut sidecar, &format!("{} sidecar", example.language));
    ws
}

/// With `payload: json` the request's `eventPayload` stays empty and the example reads
/// `payloadJson`; the read model is the same.
pub async fn reads_the_raw_json_payload(example: &Example, seed: u64) {
    let ws = Workspace::new();
    let log = ws.log_with_events(2_000, 200, seed);
    let sidecar = example.spawn("127.0.0.1:0", ws.dir.path(), &format!("{}-sidecar", example.language));
    let _logs = LogsOnFailure(vec![sidecar.stderr_path.clone()]);
    let address = sidecar.address.as_deref().expect("sidecar address");
    let yaml = connector_yaml(&ws.log_path(), address, &sqlite_sink_yaml(&ws.target_path()), &Setup::default())
        .replacen("      window:", "      payload: json\n      window:", 1);
    assert!(yaml.contains("payload: json"), "{yaml}");
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.expect("clean stop");
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
}

/// An unknown `REDUCER_TARGET` is refused with exit code 2 and a message naming the choices.
pub fn refuses_an_unknown_target(example: &Example) {
    let out = example
        .command()
        .args(["--address", "127.0.0.1:0"])
        .env("REDUCER_TARGET", "cassandra")
        .output()
        .expect("run the sidecar");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty() && stderr.contains("REDUCER_TARGET"), "{stderr}");
}

/// The (projection, version) the gateway recorded from the sidecar's Describe.
pub fn recorded_projection(target: &Path) -> Option<(String, String)> {
    let conn = rusqlite::Connection::open(target).unwrap();
    conn.query_row("SELECT projection, version FROM projections WHERE connector = 'bookings'", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .ok()
}

/// With `REDUCER_TARGET=mongo` the example answers requests exactly as the Rust reference does
/// (`bookings_reducer::reduce_mongo`, BOOKINGS.md's "MongoDB read model"): the same operation
/// types, collections, filters, updates and `integerFields`, field for field, for generated
/// events of every type (some with the payload only as raw JSON), Ignore for the types it does
/// not handle, and a non-retryable error for payloads it cannot read. Its Describe answers
/// `bookings_reducer::mongo_description()`.
pub async fn emits_the_reference_mongo_operations(example: &Example, seed: u64) {
    let ws = Workspace::new();
    let sidecar = example.spawn_for("mongo", "127.0.0.1:0", ws.dir.path(), &format!("{}-mongo-sidecar", example.language));
    answers_like_the_reference(sidecar, bookings_reducer::Target::Mongo, seed).await;
}

/// With `REDUCER_TARGET=elastic` the example answers requests exactly as the Rust reference does
/// (`bookings_reducer::reduce_elastic`, the `elastic` target of `sidecar-examples/go/README.md`):
/// the same `Index` and `Update` operations, ids and documents, field for field, for generated
/// events of every type (some with the payload only as raw JSON), Ignore for the types it does
/// not handle, and a non-retryable error for payloads it cannot read. Its Describe answers
/// `bookings_reducer::elastic_description()`.
pub async fn emits_the_reference_elastic_operations(example: &Example, seed: u64) {
    let ws = Workspace::new();
    let sidecar = example.spawn_for("elastic", "127.0.0.1:0", ws.dir.path(), &format!("{}-elastic-sidecar", example.language));
    answers_like_the_reference(sidecar, bookings_reducer::Target::Elastic, seed).await;
}

/// The running `sidecar` answers the reference cases and Describe exactly as the Rust
/// reference does for `target`.
pub async fn answers_like_the_reference(sidecar: Process, target: bookings_reducer::Target, seed: u64) {
    let _logs = LogsOnFailure(vec![sidecar.stderr_path.clone()]);
    let channel = tonic::transport::Endpoint::from_shared(sidecar.address.clone().expect("sidecar address"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the sidecar");

    let (sent, references): (Vec<_>, Vec<_>) = reference_cases(seed).into_iter().unzip();
    for event_type in bookings_reducer::HANDLED_EVENT_TYPES.into_iter().chain(["GuestRegistered"]) {
        assert!(sent.iter().any(|r| r.event_type == event_type), "the sample has no {event_type}");
    }
    let mut client = gw::projection_client::ProjectionClient::new(channel.clone());
    let answered = tokio::time::timeout(WAIT, async {
        let mut responses = client.project(tokio_stream::iter(sent.clone())).await.expect("Project").into_inner();
        let mut answered = Vec::new();
        while let Some(response) = responses.message().await.expect("a response") {
            answered.push(response);
        }
        answered
    })
    .await
    .expect("the sidecar answers every request and ends the stream");
    assert_eq!(answered.len(), sent.len(), "one response per request");
    let mismatches: Vec<String> = sent
        .iter()
        .zip(&references)
        .zip(&answered)
        .filter_map(|((request, reference), response)| {
            let want = Answer::of(&convert(&target.reduce(&convert(reference))));
            let got = Answer::of(response);
            (response.event_id != request.event_id || got != want).then(|| {
                format!(
                    "{} {} at {} (payload as {}), answered as {}:\n  want {want}\n  got  {got}",
                    request.event_type,
                    request.event_id,
                    request.global_position,
                    if request.event_payload.is_some() { "Struct" } else { "JSON" },
                    response.event_id,
                )
            })
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} answers differ from the Rust reference; first ones:\n{}",
        mismatches.len(),
        sent.len(),
        mismatches[..mismatches.len().min(5)].join("\n")
    );

    let described = gw::projection_info_client::ProjectionInfoClient::new(channel)
        .describe(gw::DescribeRequest { connector: "bookings".into() })
        .await
        .expect("Describe")
        .into_inner();
    let reference: gw::DescribeResponse = convert(&target.description());
    let resets = |d: &gw::DescribeResponse| d.reset_operations.iter().map(Op::of).collect::<Vec<_>>();
    assert_eq!(
        (&described.projection, &described.version, &described.event_types, resets(&described)),
        (&reference.projection, &reference.version, &reference.event_types, resets(&reference)),
        "Describe differs from the Rust reference's description for {target:?}"
    );
}

/// Requests as the gateway sends them, each with the request the Rust reference is given for
/// it: generated events of every type with the payload as a Struct, every fifth only as raw
/// JSON (`payload: json`; the reference reads the Struct of the same event), then payloads to
/// refuse and a type to ignore.
fn reference_cases(seed: u64) -> Vec<(gw::ProjectionRequest, gw::ProjectionRequest)> {
    let request = |position: u64, event_type: &str, event_id: String, stream: &str, data: &str| gw::ProjectionRequest {
        event_type: event_type.into(),
        event_id,
        stream: stream.into(),
        event_payload: Some(json_to_struct(data.as_bytes()).expect("a JSON object")),
        global_position: position,
        content_type: "application/json".into(),
        ..Default::default()
    };
    let mut cases: Vec<_> = BookingsGenerator::new(seed, 40)
        .take(400)
        .into_iter()
        .enumerate()
        .map(|(n, e)| {
            let reference = request(n as u64 + 1, &e.event_type, e.event_id.expect("generated id"), &e.stream, &e.data);
            let mut sent = reference.clone();
            if n % 5 == 4 {
                sent.event_payload = None;
                sent.payload_json = e.data.into_bytes();
            }
            (sent, reference)
        })
        .collect();
    for (n, (event_type, data)) in [
        ("PaymentRecorded", r#"{"bookingId": "booking-1", "guestId": "guest-1"}"#),
        ("RoomBooked", r#"{"bookingId": "booking-1", "guestId": "guest-1", "roomId": "room-1", "checkIn": "2026-12-01", "checkOut": "2026-12-02", "priceCents": 99.5}"#),
        ("BookingCancelled", r#"{"bookingId": 7, "guestId": "guest-1"}"#),
        ("RoomRepainted", r#"{"roomId": "room-1"}"#),
    ]
    .into_iter()
    .enumerate()
    {
        let r = request(1_000 + n as u64, event_type, format!("edge-{n}"), "booking-1", data);
        cases.push((r.clone(), r));
    }
    cases
}

/// One answer as the gateway sees it, comparable across languages (Struct fields are maps).
#[derive(Debug, PartialEq)]
enum Answer {
    Error { retryable: bool, with_operations: bool },
    Operations(Vec<Op>),
}

#[derive(Debug, PartialEq)]
enum Op {
    Ignore,
    UpdateOne(gw::UpdateOne),
    DeleteMany(gw::DeleteMany),
    Index(gw::Index),
    Update(gw::Update),
    Other(String),
}

impl Answer {
    fn of(response: &gw::ProjectionResponse) -> Self {
        match &response.error {
            Some(e) => Answer::Error { retryable: e.retryable, with_operations: response.all_operations().next().is_some() },
            None => Answer::Operations(response.all_operations().map(Op::of).collect()),
        }
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Error { retryable, with_operations } => {
                write!(f, "error (retryable: {retryable}, with operations: {with_operations})")
            }
            Answer::Operations(ops) => {
                for (n, op) in ops.iter().enumerate() {
                    write!(f, "{}{n}. {op}", if n == 0 { "" } else { "\n       " })?;
                }
                Ok(())
            }
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let json = |s: &Option<prost_types::Struct>| s.as_ref().map_or("(absent)".to_string(), |s| struct_to_json(s).to_string());
        match self {
            Op::Ignore => write!(f, "Ignore"),
            Op::UpdateOne(u) => write!(
                f,
                "UpdateOne {:?} filter {} update {} pipeline {:?} integerFields {:?}",
                u.collection,
                json(&u.filter),
                json(&u.update),
                u.pipeline.iter().map(|s| struct_to_json(s).to_string()).collect::<Vec<_>>(),
                u.integer_fields
            ),
            Op::DeleteMany(d) => write!(f, "DeleteMany {:?} filter {} integerFields {:?}", d.collection, json(&d.filter), d.integer_fields),
            Op::Index(i) => write!(f, "Index {:?} {} index {:?} externalVersion {}", i.id, json(&i.document), i.index, i.external_version),
            Op::Update(u) => write!(
                f,
                "Update {:?} {} index {:?} docAsUpsert {} upsert {}",
                u.id,
                json(&u.document),
                u.index,
                u.doc_as_upsert,
                json(&u.upsert)
            ),
            Op::Other(what) => write!(f, "{what}"),
        }
    }
}

impl Op {
    fn of(any: &prost_types::Any) -> Self {
        let bytes = any.value.as_slice();
        match gw::message_name(any) {
            gw::names::IGNORE if bytes.is_empty() => Op::Ignore,
            gw::names::UPDATE_ONE => Op::UpdateOne(prost::Message::decode(bytes).expect("an UpdateOne")),
            gw::names::DELETE_MANY => Op::DeleteMany(prost::Message::decode(bytes).expect("a DeleteMany")),
            "projection.Index" => Op::Index(prost::Message::decode(bytes).expect("an Index")),
            "projection.Update" => Op::Update(prost::Message::decode(bytes).expect("an Update")),
            other => Op::Other(format!("{other} ({} bytes)", bytes.len())),
        }
    }
}

/// The same message in another crate's generated types (both come from `proto/`).
fn convert<A: prost::Message, B: prost::Message + Default>(message: &A) -> B {
    B::decode(message.encode_to_vec().as_slice()).expect("the same proto")
}

/// Gateway process -> the example with `REDUCER_TARGET=mongo` -> MongoDB (SecantusDB, where
/// each batch commits with its checkpoints): catch-up, live appends, a clean stop; each time the
/// documents are exactly the reference read model and every checkpoint reaches the head, and
/// the gateway recorded what the sidecar's Describe declared.
#[cfg(feature = "mongo")]
pub async fn mongo_catch_up_and_live(example: &Example, seed: u64) {
    let ws = Workspace::new();
    let db = MongoDb::fresh(Server::Secantus, &format!("{}_e2e", example.language)).await;
    let mut log = ws.log_with_events(3_000, 300, seed);
    let mut sidecar = example.spawn_for("mongo", "127.0.0.1:0", ws.dir.path(), &format!("{}-mongo-sidecar", example.language));
    let setup = Setup::default();
    let config = ws.path("gateway.yaml");
    let address = sidecar.address.clone().expect("sidecar address");
    std::fs::write(&config, connector_yaml(&ws.log_path(), &address, &db.sink_yaml(""), &setup)).unwrap();
    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway");
    let _logs = LogsOnFailure(vec![gateway.stderr_path.clone(), sidecar.stderr_path.clone()]);

    wait_until_mongo_applied(&db, log.head().unwrap(), setup.partitions, &mut gateway, &mut sidecar).await;
    assert_mongo_read_model(&db, &ws.log_path()).await;

    append_generated(&mut log, 1_000, 100, seed + 1);
    let head = log.head().unwrap();
    wait_until_mongo_applied(&db, head, setup.partitions, &mut gateway, &mut sidecar).await;
    stop(&mut gateway, "gateway");
    assert_mongo_read_model(&db, &ws.log_path()).await;
    let rows = db.checkpoints("bookings").await;
    assert_eq!(rows.len(), setup.partitions as usize, "{rows:?}");
    assert!(rows.iter().all(|((count, _), position)| *count == setup.partitions as i64 && *position == head as i64), "every partition at {head}: {rows:?}");
    let version = db.documents("checkpoints").await.into_iter().find(|d| d.get_str("_id") == Ok("bookings/version"));
    let recorded = version.as_ref().map(|d| (d.get_str("projection").unwrap_or_default(), d.get_str("version").unwrap_or_default()));
    assert_eq!(recorded, Some(("bookings", "1")), "the projection Describe declared");
    stop(&mut sidecar, &format!("{} sidecar", example.language));
}

/// The gateway process killed with SIGKILL in the middle of a catch-up into MongoDB through the
/// example (`REDUCER_TARGET=mongo`), then started again: the read model equals the reference
/// exactly. The `$inc` counters of `guest_stats` would show any event applied twice; on
/// SecantusDB each batch commits in one transaction with its checkpoints, so none is.
///
/// The killed gateway's transaction stays open on the server until the server's transaction
/// lifetime limit (60 s, like mongod's `transactionLifetimeLimitSeconds`) aborts it; until then
/// the restarted gateway's batches that touch the same documents fail with `WriteConflict` and
/// are retried. The log is small enough for the wait to absorb that minute.
#[cfg(feature = "mongo")]
pub async fn mongo_gateway_killed_mid_catch_up_resumes_exactly_once(example: &Example, seed: u64) {
    let ws = Workspace::new();
    let db = MongoDb::fresh(Server::Secantus, &format!("{}_kill", example.language)).await;
    let head = ws.log_with_events(6_000, 600, seed).head().unwrap();
    let mut sidecar = example.spawn_for("mongo", "127.0.0.1:0", ws.dir.path(), &format!("{}-mongo-sidecar", example.language));
    let setup = Setup { max_ops: 100, ..Setup::default() };
    let config = ws.path("gateway.yaml");
    let address = sidecar.address.clone().expect("sidecar address");
    std::fs::write(&config, connector_yaml(&ws.log_path(), &address, &db.sink_yaml(""), &setup)).unwrap();
    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway-1");
    let mut logs = LogsOnFailure(vec![gateway.stderr_path.clone(), sidecar.stderr_path.clone()]);

    wait_until_mongo_applied(&db, 1, setup.partitions, &mut gateway, &mut sidecar).await;
    gateway.kill_hard();
    let at_kill = db.low_watermark("bookings", setup.partitions).await;
    assert!(at_kill < head, "the gateway was killed after finishing ({at_kill} of {head}): the test proves nothing");

    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway-2");
    logs.0.push(gateway.stderr_path.clone());
    wait_until_mongo_applied(&db, head, setup.partitions, &mut gateway, &mut sidecar).await;
    stop(&mut gateway, "gateway");
    assert_mongo_read_model(&db, &ws.log_path()).await;
    stop(&mut sidecar, &format!("{} sidecar", example.language));
}

/// Polls the MongoDB target until every partition's checkpoint has reached `position`; fails at
/// once if the gateway or the sidecar exits meanwhile.
#[cfg(feature = "mongo")]
async fn wait_until_mongo_applied(db: &MongoDb, position: u64, partitions: u32, gateway: &mut Process, sidecar: &mut Process) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        assert_running(gateway, sidecar, &format!("the checkpoints reached {position}"));
        let low = db.low_watermark("bookings", partitions).await;
        if low >= position {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {WAIT:?} waiting for the checkpoints to reach {position} (at {low})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The documents are exactly the reference read model of the log: the same values (integers
/// stored as Int64), only the fields of BOOKINGS.md's "MongoDB read model", and nothing in the
/// sink's default collection.
#[cfg(feature = "mongo")]
async fn assert_mongo_read_model(db: &MongoDb, log: &Path) {
    db.read_model().await.assert_same(&ReadModel::from_log(log, everything));
    let booking_fields = ["_id", "check_in", "check_out", "guest_id", "last_position", "paid_cents", "price_cents", "room_id", "status"];
    let guest_fields = ["_id", "bookings", "cancellations", "paid_cents", "payments"];
    for (collection, fields) in [("bookings", &booking_fields[..]), ("guest_stats", &guest_fields[..])] {
        for document in db.documents(collection).await {
            let mut keys: Vec<&str> = document.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, fields, "the fields of a {collection} document: {document}");
        }
    }
    let stray = db.documents("docs").await;
    assert!(stray.is_empty(), "documents in the sink's default collection (operations that name no collection): {stray:?}");
}

/// Gateway process -> the example with `REDUCER_TARGET=elastic` -> Elasticsearch: catch-up, live
/// appends, a clean stop; each time the index holds exactly the documents the Rust reference
/// writes for the log (and so the reference read model, aggregated), every checkpoint reaches
/// the head, nothing is parked, and the gateway recorded what the sidecar's Describe declared.
#[cfg(feature = "elastic")]
pub async fn elastic_catch_up_and_live(example: &Example, seed: u64) {
    let ws = Workspace::new();
    let ix = Indices::fresh(Engine::Elasticsearch, &format!("{}-e2e", example.language));
    let mut log = ws.log_with_events(3_000, 300, seed);
    let mut sidecar = example.spawn_for("elastic", "127.0.0.1:0", ws.dir.path(), &format!("{}-elastic-sidecar", example.language));
    let setup = Setup::default();
    let config = ws.path("gateway.yaml");
    let address = sidecar.address.clone().expect("sidecar address");
    std::fs::write(&config, connector_yaml(&ws.log_path(), &address, &ix.sink_yaml(""), &setup)).unwrap();
    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway");
    let _logs = LogsOnFailure(vec![gateway.stderr_path.clone(), sidecar.stderr_path.clone()]);

    wait_until_elastic_applied(&ix, log.head().unwrap(), setup.partitions, &mut gateway, &mut sidecar).await;
    assert_elastic_read_model(&ix, &ws.log_path()).await;

    append_generated(&mut log, 1_000, 100, seed + 1);
    let head = log.head().unwrap();
    wait_until_elastic_applied(&ix, head, setup.partitions, &mut gateway, &mut sidecar).await;
    stop(&mut gateway, "gateway");
    assert_elastic_read_model(&ix, &ws.log_path()).await;
    let rows = elastic_checkpoints(&ix).await;
    assert_eq!(rows.len(), setup.partitions as usize, "{rows:?}");
    assert!(rows.iter().all(|((count, _), position)| *count == setup.partitions as u64 && *position == head), "every partition at {head}: {rows:?}");
    let version = ix.get(&ix.checkpoints_index(), "bookings/version").await.expect("the recorded projection version");
    assert_eq!((&version["projection"], &version["version"]), (&"bookings".into(), &"1".into()), "the projection Describe declared: {version}");
    stop(&mut sidecar, &format!("{} sidecar", example.language));
}

/// The gateway process killed with SIGKILL in the middle of a catch-up into Elasticsearch
/// through the example (`REDUCER_TARGET=elastic`), then started again: it replays from the
/// checkpoints it had stored (the target is at-least-once), and the index holds exactly the
/// documents the Rust reference writes for the log. The replay is harmless because every
/// document id comes from the log: a booking is indexed again and its later events merged again
/// in order, and a fact keyed by its event id is written again, never twice.
#[cfg(feature = "elastic")]
pub async fn elastic_gateway_killed_mid_catch_up_converges(example: &Example, seed: u64) {
    let ws = Workspace::new();
    let ix = Indices::fresh(Engine::Elasticsearch, &format!("{}-kill", example.language));
    let head = ws.log_with_events(6_000, 600, seed).head().unwrap();
    let mut sidecar = example.spawn_for("elastic", "127.0.0.1:0", ws.dir.path(), &format!("{}-elastic-sidecar", example.language));
    let setup = Setup { max_ops: 100, ..Setup::default() };
    let config = ws.path("gateway.yaml");
    let address = sidecar.address.clone().expect("sidecar address");
    std::fs::write(&config, connector_yaml(&ws.log_path(), &address, &ix.sink_yaml(""), &setup)).unwrap();
    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway-1");
    let mut logs = LogsOnFailure(vec![gateway.stderr_path.clone(), sidecar.stderr_path.clone()]);

    wait_until_elastic_applied(&ix, 1, setup.partitions, &mut gateway, &mut sidecar).await;
    gateway.kill_hard();
    let at_kill = elastic_low_watermark(&ix, setup.partitions).await;
    assert!(at_kill < head, "the gateway was killed after finishing ({at_kill} of {head}): the test proves nothing");

    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway-2");
    logs.0.push(gateway.stderr_path.clone());
    wait_until_elastic_applied(&ix, head, setup.partitions, &mut gateway, &mut sidecar).await;
    stop(&mut gateway, "gateway");
    assert_elastic_read_model(&ix, &ws.log_path()).await;
    stop(&mut sidecar, &format!("{} sidecar", example.language));
}

/// The connector's checkpoints: (partition count, partition) -> position; none while the
/// gateway has not created its checkpoints index yet (the wildcard matches nothing then).
#[cfg(feature = "elastic")]
async fn elastic_checkpoints(ix: &Indices) -> std::collections::BTreeMap<(u64, u64), u64> {
    ix.documents(&format!("{}*", ix.checkpoints_index()))
        .await
        .into_iter()
        .filter(|(_, d)| d["connector"] == "bookings" && d["kind"] == "checkpoint")
        .map(|(_, d)| ((d["partition_count"].as_u64().unwrap(), d["partition"].as_u64().unwrap()), d["position"].as_u64().unwrap()))
        .collect()
}

/// The lowest position over the connector's `partitions` checkpoints (0 while one is missing).
#[cfg(feature = "elastic")]
async fn elastic_low_watermark(ix: &Indices, partitions: u32) -> u64 {
    let rows = elastic_checkpoints(ix).await;
    (0..partitions as u64).map(|p| rows.get(&(partitions as u64, p)).copied().unwrap_or(0)).min().unwrap_or(0)
}

/// Polls the Elasticsearch target until every partition's checkpoint has reached `position`;
/// fails at once if the gateway or the sidecar exits meanwhile.
#[cfg(feature = "elastic")]
async fn wait_until_elastic_applied(ix: &Indices, position: u64, partitions: u32, gateway: &mut Process, sidecar: &mut Process) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        assert_running(gateway, sidecar, &format!("the checkpoints reached {position}"));
        let low = elastic_low_watermark(ix, partitions).await;
        if low >= position {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {WAIT:?} waiting for the checkpoints to reach {position} (at {low})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The index holds exactly the documents the Rust reference writes for the log, id for id and
/// field for field (numbers as the integers the sink writes); aggregated, they are the
/// reference read model computed straight from the log; and nothing was parked.
#[cfg(feature = "elastic")]
async fn assert_elastic_read_model(ix: &Indices, log: &Path) {
    let expected = reference_documents(log);
    let actual: std::collections::BTreeMap<String, serde_json::Value> =
        ix.documents(&ix.prefix).await.into_iter().map(|(id, d)| (id, whole_numbers(d))).collect();
    if actual != expected {
        let mut diffs: Vec<String> = expected
            .iter()
            .filter(|(id, d)| actual.get(*id) != Some(d))
            .map(|(id, d)| format!("{id}: want {d}, got {}", actual.get(id).map_or("(missing)".into(), |a| a.to_string())))
            .collect();
        diffs.extend(actual.keys().filter(|id| !expected.contains_key(*id)).map(|id| format!("{id}: not in the reference")));
        panic!(
            "{} difference(s) between the {} documents and the Rust reference's {}; first ones:\n{}",
            diffs.len(),
            actual.len(),
            expected.len(),
            diffs[..diffs.len().min(5)].join("\n")
        );
    }
    ix.read_model().await.assert_same(&ReadModel::from_log(log, everything));
    let parked = ix.documents(&format!("{}*", ix.parked_index())).await;
    assert!(parked.is_empty(), "parked events: {parked:?}");
}

/// The documents `bookings_reducer::reduce_elastic` writes for every event of the log, applied
/// in log order as the engine applies them: Index creates or replaces, Update merges into the
/// existing document.
#[cfg(feature = "elastic")]
fn reference_documents(log: &Path) -> std::collections::BTreeMap<String, serde_json::Value> {
    use bookings_reducer::proto::{Index, ProjectionRequest, Update};
    let conn = rusqlite::Connection::open(log).expect("log");
    let mut stmt = conn.prepare("SELECT position, event_id, stream, event_type, data FROM events ORDER BY position").unwrap();
    let events = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, String>(4)?)))
        .unwrap();
    let mut documents = std::collections::BTreeMap::new();
    for event in events {
        let (position, event_id, stream, event_type, data) = event.unwrap();
        let request = ProjectionRequest {
            event_id,
            event_type,
            stream,
            global_position: position as u64,
            event_payload: Some(json_to_struct(data.as_bytes()).expect("a JSON object")),
            ..Default::default()
        };
        let response = bookings_reducer::reduce_elastic(&request);
        assert!(response.error.is_none(), "the reference refuses {request:?}: {:?}", response.error);
        for any in response.operation.iter().chain(&response.operations) {
            let document = |s: &Option<prost_types::Struct>| whole_numbers(struct_to_json(s.as_ref().expect("a document")));
            match gw::message_name(any) {
                "projection.Index" => {
                    let index: Index = prost::Message::decode(any.value.as_slice()).expect("an Index");
                    documents.insert(index.id, document(&index.document));
                }
                "projection.Update" => {
                    let update: Update = prost::Message::decode(any.value.as_slice()).expect("an Update");
                    let serde_json::Value::Object(fields) = document(&update.document) else { unreachable!("a Struct is an object") };
                    let existing = documents.get_mut(&update.id).unwrap_or_else(|| panic!("the reference updates {}, which does not exist", update.id));
                    existing.as_object_mut().expect("an object").extend(fields);
                }
                gw::names::IGNORE => {}
                other => panic!("the reference emitted {other}"),
            }
        }
    }
    documents
}

/// `value` with every whole number as an integer (a Struct's numbers are doubles; the sink
/// writes whole ones as integers).
#[cfg(feature = "elastic")]
fn whole_numbers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers).collect()),
        Value::Object(fields) => Value::Object(fields.into_iter().map(|(k, v)| (k, whole_numbers(v))).collect()),
        other => other,
    }
}
