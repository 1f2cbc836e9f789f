//! A TDS test double: a TCP server speaking just enough of TDS 7.4 (the SQL Server protocol)
//! for tiberius, so the SQL Server target can be tested on a machine where no SQL Server can
//! be installed.
//!
//! What it is: a **recorder**. It answers PRELOGIN (encryption NOT_SUP: no TLS, so the client
//! connects with `Encrypt=DANGER_PLAINTEXT`; a real server normally uses TLS), LOGIN7 (LOGINACK,
//! ENVCHANGE database/packet size/collation, DONE), SQL batches and RPCs. It records every
//! request: the SQL text, each parameter's name, TDS type and value, and the transaction
//! descriptor of ALL_HEADERS. It answers DONE tokens, or a scripted ERROR token (number,
//! state, class, message and the line of the text where a given string is, as SQL Server
//! reports the line of the failing statement).
//!
//! What little it interprets, it interprets honestly and narrowly: `BEGIN TRAN` / `COMMIT
//! TRAN` / `ROLLBACK TRAN` in a text open and end a transaction (with the ENVCHANGE tokens a
//! server sends, so the client carries the descriptor); a failing request ends an open
//! transaction as `XACT_ABORT ON` does; and it keeps an in-memory checkpoint table, parked
//! events and projection versions by reading the parameters of the gateway's own `MERGE` and
//! `INSERT` statements (their shape is the gateway's, in `src/sinks/mssql/schema.rs`), applied
//! at commit, and it evaluates the gateway's checkpoint check against the committed rows,
//! answering the error that check throws when a row is not where the batch expects it. It answers the gateway's checkpoint and version `SELECT`s from that state. It
//! also keeps the Eventuous Connector's `Checkpoints` table (its `SqlCheckpointStore`'s exact
//! `CREATE TABLE`, `INSERT` and `UPDATE`, with tiberius's `@Pn` for ADO.NET's named
//! parameters), and answers the gateway's `SELECT Position FROM ... WHERE ID = @P1` from it,
//! or with error 208 (Invalid object name) before that table was created. It
//! does not parse or run any other SQL: whether a statement is valid T-SQL, whether a
//! parameter converts to its column, and locking are not tested by it (docs/targets/mssql.md).

pub mod wire;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use regex::Regex;
use tokio::{net::TcpListener, task::JoinHandle};
pub use wire::{Param, Value};
use wire::{Cell, Column};

/// One request as the double received it.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Login { user: String, database: String },
    /// A SQL batch (no parameters).
    Batch { connection: u32, text: String, transaction: u64 },
    /// An RPC; for `sp_executesql`, `text` is `@stmt`, `declared` is `@params` and `params`
    /// the statement's own parameters (`@P1`..).
    Rpc { connection: u32, procedure: String, text: String, declared: String, params: Vec<Param>, transaction: u64 },
}

impl Request {
    pub fn text(&self) -> &str {
        match self {
            Request::Login { .. } => "",
            Request::Batch { text, .. } | Request::Rpc { text, .. } => text,
        }
    }
}

/// An error the double answers a request with.
#[derive(Debug, Clone)]
pub struct ScriptedError {
    /// The request's text contains this; the error's line is the line it is on.
    pub when_text_contains: String,
    pub number: u32,
    pub class: u8,
    pub message: String,
    /// How many requests fail this way (`None`: every one).
    pub times: Option<u32>,
}

/// A parked event row: (connector, partition, position, event id, stream, event type, error).
pub type ParkedRow = (String, i64, i64, String, String, String, String);

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    errors: Vec<ScriptedError>,
    /// (connector, partition count, partition) → position.
    checkpoints: BTreeMap<(String, i64, i64), i64>,
    parked: Vec<ParkedRow>,
    /// connector → (projection, version).
    versions: BTreeMap<String, (String, String)>,
    /// The Eventuous Connector's checkpoint tables: table (`dbo.checkpoints`) → id → position.
    eventuous: BTreeMap<String, BTreeMap<String, Option<i64>>>,
    next_descriptor: u64,
    connections: u32,
}

/// Writes of one transaction, applied at `COMMIT`.
#[derive(Default)]
struct Pending {
    checkpoints: Vec<((String, i64, i64), i64)>,
    deletes: Vec<(String, Option<i64>)>,
    parked: Vec<ParkedRow>,
    versions: Vec<(String, (String, String))>,
    /// Eventuous Connector checkpoint tables created.
    eventuous_tables: Vec<String>,
    /// Eventuous Connector checkpoint rows: (table, id, position, inserted (else updated)).
    eventuous_rows: Vec<(String, String, Option<i64>, bool)>,
}

/// The running double; stops when dropped.
pub struct TdsServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for TdsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TdsServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State { next_descriptor: 1, ..State::default() }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut sessions = tokio::task::JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                let state = shared.clone();
                sessions.spawn(async move {
                    let _ = Session::new(state).serve(socket).await;
                });
                while sessions.try_join_next().is_some() {}
            }
        });
        Self { port, state, task }
    }

    /// An ADO.NET connection string to the double (no TLS: it does not speak it).
    pub fn connection_string(&self, database: &str) -> String {
        format!(
            "Server=tcp:127.0.0.1,{};Database={database};User Id=gateway;Password=secret;Encrypt=DANGER_PLAINTEXT",
            self.port
        )
    }

    pub fn fail(&self, error: ScriptedError) {
        self.state.lock().unwrap().errors.push(error);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }

    /// (partition count, partition, position) of `connector`'s checkpoint rows.
    pub fn checkpoints(&self, connector: &str) -> Vec<(i64, i64, i64)> {
        let state = self.state.lock().unwrap();
        state.checkpoints.iter().filter(|((c, ..), _)| c == connector).map(|((_, n, p), pos)| (*n, *p, *pos)).collect()
    }

    pub fn set_checkpoint(&self, connector: &str, partition_count: i64, partition: i64, position: i64) {
        self.state.lock().unwrap().checkpoints.insert((connector.into(), partition_count, partition), position);
    }

    pub fn parked(&self) -> Vec<ParkedRow> {
        self.state.lock().unwrap().parked.clone()
    }

    pub fn version(&self, connector: &str) -> Option<(String, String)> {
        self.state.lock().unwrap().versions.get(connector).cloned()
    }

    /// The Eventuous Connector's checkpoint rows of a table (`Checkpoints`, `dbo.Checkpoints`).
    pub fn eventuous_checkpoints(&self, table: &str) -> BTreeMap<String, Option<i64>> {
        self.state.lock().unwrap().eventuous.get(&eventuous_table(table)).cloned().unwrap_or_default()
    }
}

/// An Eventuous checkpoint table's name as the double keys it: brackets dropped, lowercase
/// (SQL Server's default collations), `dbo.` when it names no schema.
fn eventuous_table(name: &str) -> String {
    let name = name.replace(['[', ']'], "").to_lowercase();
    if name.contains('.') { name } else { format!("dbo.{name}") }
}

/// The gateway's read of an Eventuous checkpoint: (table, parameter number of the id).
fn eventuous_select(text: &str) -> Option<(String, usize)> {
    let select = Regex::new(r"^SELECT Position FROM (\S+) WHERE ID = @P(\d+)$").unwrap();
    let m = select.captures(text.trim())?;
    Some((eventuous_table(&m[1]), m[2].parse().unwrap()))
}

struct Session {
    state: Arc<Mutex<State>>,
    id: u32,
    /// The open transaction's descriptor and its writes.
    transaction: Option<(u64, Pending)>,
}

impl Session {
    fn new(state: Arc<Mutex<State>>) -> Self {
        let id = {
            let mut s = state.lock().unwrap();
            s.connections += 1;
            s.connections
        };
        Self { state, id, transaction: None }
    }

    async fn serve(mut self, mut socket: tokio::net::TcpStream) -> std::io::Result<()> {
        loop {
            let (kind, payload) = wire::read_message(&mut socket).await?;
            let answer = match kind {
                wire::PRELOGIN => wire::prelogin_response(),
                wire::LOGIN7 => {
                    let (user, database) = wire::login_fields(&payload);
                    let answer = wire::login_response(&database);
                    self.state.lock().unwrap().requests.push(Request::Login { user, database });
                    answer
                }
                wire::SQL_BATCH => {
                    let mut r = wire::Reader::new(&payload);
                    let transaction = r.all_headers();
                    let text = r.rest_utf16();
                    self.record(Request::Batch { connection: self.id, text: text.clone(), transaction });
                    self.answer(&text, &[], 0xfd)
                }
                wire::RPC => {
                    let mut r = wire::Reader::new(&payload);
                    let transaction = r.all_headers();
                    let procedure = r.proc_name();
                    let mut params = Vec::new();
                    while !r.done() {
                        params.push(r.param());
                    }
                    let (text, declared) = if procedure == "sp_executesql" && params.len() >= 2 {
                        let own: Vec<Param> = params.drain(..2).collect();
                        let text = |p: &Param| match &p.value {
                            Value::Text(t) => t.clone(),
                            _ => String::new(),
                        };
                        (text(&own[0]), text(&own[1]))
                    } else {
                        (String::new(), String::new())
                    };
                    self.record(Request::Rpc {
                        connection: self.id,
                        procedure,
                        text: text.clone(),
                        declared,
                        params: params.clone(),
                        transaction,
                    });
                    let mut answer = self.answer(&text, &params, 0xfe);
                    let at = answer.len() - 13;
                    answer.splice(at..at, {
                        let mut status = Vec::new();
                        wire::return_status(&mut status, 0);
                        status
                    });
                    answer
                }
                wire::ATTENTION => {
                    let mut out = Vec::new();
                    wire::done(&mut out, 0xfd, 0x0020, 0);
                    out
                }
                other => panic!("the TDS double does not handle packet type 0x{other:02x}"),
            };
            wire::write_message(&mut socket, &answer).await?;
        }
    }

    fn record(&self, request: Request) {
        self.state.lock().unwrap().requests.push(request);
    }

    /// The tokens answering a text; the last token is the DONE of kind `done_kind`.
    fn answer(&mut self, text: &str, params: &[Param], done_kind: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let upper = text.to_ascii_uppercase();
        if upper.contains("BEGIN TRAN") && self.transaction.is_none() {
            let descriptor = {
                let mut s = self.state.lock().unwrap();
                s.next_descriptor += 1;
                s.next_descriptor
            };
            wire::transaction_change(&mut out, 8, descriptor);
            self.transaction = Some((descriptor, Pending::default()));
        }
        let scripted = self
            .scripted_error(text)
            .or_else(|| self.checkpoint_check_fails(text, params))
            .or_else(|| self.missing_eventuous_table(text));
        if let Some(error) = scripted {
            let line = text.lines().position(|l| l.contains(&error.when_text_contains)).map_or(1, |i| i as u32 + 1);
            wire::error(&mut out, error.number, 1, error.class, &error.message, line);
            if let Some((descriptor, _)) = self.transaction.take() {
                wire::transaction_change(&mut out, 10, descriptor); // XACT_ABORT: rolled back
            }
            wire::done(&mut out, done_kind, 0x0002, 0);
            return out;
        }
        let mut pending = Pending::default();
        interpret(text, params, &mut pending);
        match &mut self.transaction {
            Some((_, open)) => {
                open.checkpoints.extend(pending.checkpoints);
                open.deletes.extend(pending.deletes);
                open.parked.extend(pending.parked);
                open.versions.extend(pending.versions);
                open.eventuous_tables.extend(pending.eventuous_tables);
                open.eventuous_rows.extend(pending.eventuous_rows);
            }
            None => self.state.lock().unwrap().apply(pending),
        }
        if upper.trim_start().starts_with("SELECT PARTITION_COUNT") {
            let connector = text_param(params, 0);
            let rows: Vec<Vec<Cell>> = self
                .state
                .lock()
                .unwrap()
                .checkpoints
                .iter()
                .filter(|((c, ..), _)| *c == connector)
                .map(|((_, n, p), pos)| vec![Cell::Int(*n as i32), Cell::Int(*p as i32), Cell::BigInt(*pos)])
                .collect();
            wire::result_set(
                &mut out,
                &[Column::Int("partition_count"), Column::Int("partition"), Column::BigInt("position")],
                &rows,
            );
        } else if let Some((table, id)) = eventuous_select(text) {
            let id = text_param(params, id - 1);
            let position = self.state.lock().unwrap().eventuous.get(&table).and_then(|rows| rows.get(&id).copied());
            let rows: Vec<Vec<Cell>> = position.map(|p| vec![p.map_or(Cell::Null, Cell::BigInt)]).into_iter().collect();
            wire::result_set(&mut out, &[Column::BigInt("Position")], &rows);
        } else if upper.trim_start().starts_with("SELECT VERSION FROM") {
            let connector = text_param(params, 0);
            let rows: Vec<Vec<Cell>> =
                self.state.lock().unwrap().versions.get(&connector).map(|(_, v)| vec![Cell::Text(v.clone())]).into_iter().collect();
            wire::result_set(&mut out, &[Column::NVarChar("version")], &rows);
        }
        if upper.contains("COMMIT TRAN") {
            if let Some((descriptor, pending)) = self.transaction.take() {
                self.state.lock().unwrap().apply(pending);
                wire::transaction_change(&mut out, 9, descriptor);
            }
        } else if upper.contains("ROLLBACK TRAN")
            && let Some((descriptor, _)) = self.transaction.take()
        {
            wire::transaction_change(&mut out, 10, descriptor);
        }
        wire::done(&mut out, done_kind, 0x0000, 0);
        out
    }

    /// The gateway's checkpoint check (`GatewaySql::check_checkpoints`), evaluated against the
    /// committed checkpoints: the error it throws when a row is not where the batch expects
    /// it (a null expected position: no row).
    fn checkpoint_check_fails(&self, text: &str, params: &[Param]) -> Option<ScriptedError> {
        let check = Regex::new(
            r"IF \(SELECT count\(\*\) FROM \(VALUES ((?:\(@P\d+, @P\d+\)(?:, )?)+)\) AS s\(\[partition\], expected\).*?t\.connector = @P(\d+) AND t\.partition_count = @P(\d+).*?THROW (\d+), N'([^']*)'",
        )
        .unwrap();
        let pair = Regex::new(r"\(@P(\d+), @P(\d+)\)").unwrap();
        let p = |n: &str| &params[n.parse::<usize>().unwrap() - 1].value;
        let state = self.state.lock().unwrap();
        for m in check.captures_iter(text) {
            let (Value::Text(connector), Value::Int(count)) = (p(&m[2]), p(&m[3])) else { panic!("check parameters: {params:?}") };
            for row in pair.captures_iter(&m[1]) {
                let Value::Int(partition) = p(&row[1]) else { panic!("partition parameter: {params:?}") };
                let stored = state.checkpoints.get(&(connector.clone(), *count, *partition)).copied();
                let expected = match p(&row[2]) {
                    Value::Null => None,
                    Value::Int(at) => Some(*at),
                    other => panic!("expected position parameter: {other:?}"),
                };
                if stored != expected {
                    return Some(ScriptedError {
                        when_text_contains: "IF (SELECT count(*)".into(),
                        number: m[4].parse().unwrap(),
                        class: 16,
                        message: m[5].to_string(),
                        times: None,
                    });
                }
            }
        }
        None
    }

    /// SQL Server's answer to the gateway's read of an Eventuous checkpoint table that was
    /// never created.
    fn missing_eventuous_table(&self, text: &str) -> Option<ScriptedError> {
        let (table, _) = eventuous_select(text)?;
        if self.state.lock().unwrap().eventuous.contains_key(&table) {
            return None;
        }
        let named = Regex::new(r"FROM (\S+)").unwrap().captures(text).map(|m| m[1].replace(['[', ']'], "")).unwrap_or_default();
        Some(ScriptedError {
            when_text_contains: "SELECT Position".into(),
            number: 208,
            class: 16,
            message: format!("Invalid object name '{named}'."),
            times: None,
        })
    }

    fn scripted_error(&self, text: &str) -> Option<ScriptedError> {
        let mut state = self.state.lock().unwrap();
        let index = state.errors.iter().position(|e| text.contains(&e.when_text_contains) && e.times != Some(0))?;
        let error = &mut state.errors[index];
        if let Some(times) = &mut error.times {
            *times -= 1;
        }
        Some(error.clone())
    }
}

impl State {
    fn apply(&mut self, pending: Pending) {
        for (connector, count) in pending.deletes {
            self.checkpoints.retain(|(c, n, _), _| !(*c == connector && count.is_none_or(|count| *n == count)));
        }
        self.checkpoints.extend(pending.checkpoints);
        self.parked.extend(pending.parked);
        self.versions.extend(pending.versions);
        for table in pending.eventuous_tables {
            self.eventuous.entry(table).or_default();
        }
        for (table, id, position, inserted) in pending.eventuous_rows {
            let Some(rows) = self.eventuous.get_mut(&table) else { panic!("the Eventuous table {table} does not exist") };
            match (inserted, rows.get_mut(&id)) {
                (true, Some(_)) => panic!("duplicate key {id} in {table}"),
                (true, None) => drop(rows.insert(id, position)),
                (false, Some(stored)) => *stored = position,
                (false, None) => {}
            }
        }
    }
}

fn text_param(params: &[Param], index: usize) -> String {
    match params.get(index).map(|p| &p.value) {
        Some(Value::Text(t)) => t.clone(),
        other => panic!("parameter {index} is not text: {other:?}"),
    }
}

/// Reads the gateway's own writes (checkpoint `MERGE`, checkpoint `DELETE`, parked `INSERT`,
/// version `MERGE`) out of a text and its parameters.
fn interpret(text: &str, params: &[Param], pending: &mut Pending) {
    let p = |n: &str| -> &Value { &params[n.parse::<usize>().unwrap() - 1].value };
    let text_of = |v: &Value| match v {
        Value::Text(t) => t.clone(),
        other => panic!("expected text, got {other:?}"),
    };
    let int_of = |v: &Value| match v {
        Value::Int(i) => *i,
        other => panic!("expected an integer, got {other:?}"),
    };
    let merge = Regex::new(
        r"MERGE \S+\.\[checkpoints\] WITH \(HOLDLOCK\) AS t USING \(VALUES ((?:\(@P\d+, @P\d+\)(?:, )?)+)\) AS s \(\[partition\], position\) ON t\.connector = @P(\d+) AND t\.partition_count = @P(\d+)",
    )
    .unwrap();
    let pair = Regex::new(r"\(@P(\d+), @P(\d+)\)").unwrap();
    for m in merge.captures_iter(text) {
        let (connector, count) = (text_of(p(&m[2])), int_of(p(&m[3])));
        for row in pair.captures_iter(&m[1]) {
            pending.checkpoints.push(((connector.clone(), count, int_of(p(&row[1]))), int_of(p(&row[2]))));
        }
    }
    let delete = Regex::new(r"DELETE FROM \S+\.\[checkpoints\] WHERE connector = @P(\d+)(?: AND partition_count = @P(\d+))?").unwrap();
    for m in delete.captures_iter(text) {
        pending.deletes.push((text_of(p(&m[1])), m.get(2).map(|n| int_of(p(n.as_str())))));
    }
    let parked = Regex::new(r"INSERT INTO \S+\.\[parked_events\] \([^)]*\) VALUES \(@P(\d+), @P(\d+), @P(\d+), @P(\d+), @P(\d+), @P(\d+), @P(\d+), @P(\d+)\)").unwrap();
    for m in parked.captures_iter(text) {
        pending.parked.push((
            text_of(p(&m[1])),
            int_of(p(&m[2])),
            int_of(p(&m[3])),
            text_of(p(&m[4])),
            text_of(p(&m[5])),
            text_of(p(&m[6])),
            text_of(p(&m[8])),
        ));
    }
    let version = Regex::new(r"MERGE \S+\.\[projections\] WITH \(HOLDLOCK\) AS t USING \(VALUES \(@P(\d+), @P(\d+), @P(\d+)\)\)").unwrap();
    for m in version.captures_iter(text) {
        pending.versions.push((text_of(p(&m[1])), (text_of(p(&m[2])), text_of(p(&m[3])))));
    }
    // The Eventuous Connector's `SqlCheckpointStore` (EsdbSqlServer), statement for statement.
    let position_of = |v: &Value| match v {
        Value::Null => None,
        other => Some(int_of(other)),
    };
    let create = Regex::new(r"CREATE TABLE (\S+) \(ID VARCHAR\(100\) NOT NULL PRIMARY KEY, Position BIGINT\)").unwrap();
    for m in create.captures_iter(text) {
        pending.eventuous_tables.push(eventuous_table(&m[1]));
    }
    let insert = Regex::new(r"INSERT INTO (\S+) \(ID, Position\) VALUES \(@P(\d+), @P(\d+)\)").unwrap();
    for m in insert.captures_iter(text) {
        pending.eventuous_rows.push((eventuous_table(&m[1]), text_of(p(&m[2])), position_of(p(&m[3])), true));
    }
    let update = Regex::new(r"UPDATE (\S+) SET Position = @P(\d+) WHERE ID = @P(\d+)").unwrap();
    for m in update.captures_iter(text) {
        pending.eventuous_rows.push((eventuous_table(&m[1]), text_of(p(&m[3])), position_of(p(&m[2])), false));
    }
}
