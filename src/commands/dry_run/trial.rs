//! The SQL targets' trial: every statement of the sample, in order, in ONE transaction that is
//! rolled back at the end, each with its outcome (rows changed, or the database's error).
//!
//! - The transaction starts with the connector's init SQL (`init_sql`, `init_sql_file`), as
//!   opening the target for `run` would, so the reducer's tables exist even on a target that
//!   never ran; it is rolled back with the rest. The gateway's own tables are not touched.
//! - Each event's operations run under a savepoint: when one fails, the event's earlier ones
//!   are undone and its later ones are not run (the gateway applies an event's operations all
//!   or none), and the next event goes on from there.
//! - An operation that would end the transaction itself (`COMMIT`, `ROLLBACK`, `BEGIN`, ...)
//!   is not run. Should the transaction end anyway, nothing more is run and the output says so.
//! - SQLite: a target file that does not exist is not created: the statements run on an
//!   empty in-memory database. PostgreSQL (`--explain`): each statement's plan, from `EXPLAIN`
//!   under a savepoint of its own.
//! - SQL Server: the statements are decoded, not run ("not checked").

use std::sync::LazyLock;

use regex::Regex;

use super::{
    answers::Answer,
    decode::{Decoded, Target},
    report::{Check, EventReport},
};
use projector_gateway::sinks::sql::SqlOp;

/// What the trial did, for the header, and what went wrong outside any one operation.
#[derive(Default)]
pub struct Trial {
    pub summary: String,
    /// Problems of the trial itself (the target cannot be reached, the init SQL failed, the
    /// transaction ended early): each makes the dry run fail.
    pub problems: Vec<String>,
}

/// One event's statements, in order, with where each sits among its operations.
struct EventPlan {
    /// Where the event sits in the sample.
    event: usize,
    position: u64,
    ops: Vec<(usize, SqlOp)>,
}

/// The outcome of every planned statement (aligned with the plan), and the trial.
type Outcome = (Vec<Vec<Check>>, Trial);

/// Why an operation of an event is not run after another of its operations failed.
const AFTER_FAILURE: &str = "an earlier operation of this event failed: the gateway applies an event's operations all or none";

/// Runs the trial where the target takes one, and fills in each operation's check.
pub async fn run(target: &Target, events: &mut [EventReport], explain: bool) -> Trial {
    let plan = plan(events);
    let (checks, trial) = match target {
        #[cfg(feature = "sqlite")]
        Target::Sqlite(config) => {
            let config = config.clone();
            let ops = plan.iter().map(|p| (p.position, p.ops.iter().map(|(_, op)| op.clone()).collect())).collect();
            match tokio::task::spawn_blocking(move || sqlite::trial(&config, ops)).await {
                Ok(outcome) => outcome,
                Err(e) => (Vec::new(), Trial { summary: String::new(), problems: vec![format!("the SQLite trial failed: {e}")] }),
            }
        }
        #[cfg(feature = "postgres")]
        Target::Postgres(config) => {
            let ops = plan.iter().map(|p| (p.position, p.ops.iter().map(|(_, op)| op.clone()).collect())).collect();
            postgres::trial(config, ops, explain).await
        }
        #[cfg(feature = "mssql")]
        Target::Mssql(_) => {
            let summary = "the statements are decoded, not run: the dry run does not try them on SQL Server (not checked)".to_string();
            return Trial { summary, problems: Vec::new() };
        }
        #[allow(unreachable_patterns)]
        _ => {
            let summary = "the operations are decoded and shown; nothing is sent to the database".to_string();
            return Trial { summary, problems: Vec::new() };
        }
    };
    let _ = explain;
    // Where the trial stopped early, the rest were not run.
    let stopped = "not run: the trial stopped before it (see above)";
    let mut checks = checks.into_iter();
    for planned in &plan {
        let event_checks = checks.next().unwrap_or_default();
        let event = &mut events[planned.event];
        let mut event_checks = event_checks.into_iter();
        for (index, _) in &planned.ops {
            event.ops[*index].check = event_checks.next().unwrap_or_else(|| Check::NotRun(stopped.into()));
        }
    }
    trial
}

/// The statements to run: those of every event whose answer decoded in full. The SQL
/// operations of an event with an undecodable operation are marked not run (the gateway
/// would apply none of them).
fn plan(events: &mut [EventReport]) -> Vec<EventPlan> {
    let mut plan = Vec::new();
    for (at, event) in events.iter_mut().enumerate() {
        if !matches!(event.answer, Answer::Operations(_)) {
            continue;
        }
        let undecodable = event.ops.iter().find(|op| op.decoded.is_err()).map(|op| op.number);
        let mut ops = Vec::new();
        for (index, op) in event.ops.iter_mut().enumerate() {
            let Ok(Some(sql)) = op.decoded.as_ref().map(|d| d.as_ref().and_then(Decoded::sql)) else { continue };
            match undecodable {
                Some(n) => {
                    op.check = Check::NotRun(format!(
                        "operation {n} of this event cannot be decoded, so the gateway would apply none of its operations"
                    ))
                }
                None => ops.push((index, sql.clone())),
            }
        }
        if !ops.is_empty() {
            plan.push(EventPlan { event: at, position: event.event.position, ops });
        }
    }
    plan
}

/// SQL that ends, opens or nests a transaction: run inside the dry run's, it would commit or
/// break it. Found at the start of a statement (so also `; END` inside a trigger's body).
fn controls_transaction(sql: &str) -> bool {
    static CONTROL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)(?:^|;)\s*(?:BEGIN|COMMIT|END|ROLLBACK|ABORT|RELEASE|SAVEPOINT|START\s+TRANSACTION|PREPARE\s+TRANSACTION)\b")
            .expect("a valid regex")
    });
    CONTROL.is_match(sql)
}

fn sql_text(op: &SqlOp) -> &str {
    match op {
        SqlOp::Raw(sql) | SqlOp::Statement { sql, .. } => sql,
    }
}

fn not_run_control() -> Check {
    Check::NotRun(
        "it holds a transaction statement (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...), which would end the dry run's transaction; \
         the gateway runs every operation inside its own batch transaction, which such a statement breaks"
            .into(),
    )
}

/// The init SQL of a target: `init_sql`, then the text of `init_sql_file`, with their names.
fn init_scripts(init_sql: &Option<String>, init_sql_file: &Option<std::path::PathBuf>) -> Result<Vec<(String, String)>, String> {
    let mut scripts = Vec::new();
    if let Some(sql) = init_sql {
        scripts.push(("`init_sql`".to_string(), sql.clone()));
    }
    if let Some(file) = init_sql_file {
        let sql = std::fs::read_to_string(file).map_err(|e| format!("cannot read `init_sql_file` {}: {e}", file.display()))?;
        scripts.push((format!("`init_sql_file` {}", file.display()), sql));
    }
    Ok(scripts)
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use rusqlite::{Connection, OpenFlags};

    use super::*;
    use projector_gateway::{config::SqliteSinkConfig, sinks::sqlite::execute_op};

    pub fn trial(config: &SqliteSinkConfig, plan: Vec<(u64, Vec<SqlOp>)>) -> Outcome {
        let path = config.path.display().to_string();
        let mut trial = Trial::default();
        let exists = config.path.exists();
        // Never created: without SQLITE_OPEN_CREATE a missing file is an error, not a new file.
        let opened = if exists {
            Connection::open_with_flags(&config.path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        } else {
            Connection::open_in_memory()
        };
        let conn = match opened.and_then(|c| c.busy_timeout(std::time::Duration::from_secs(10)).map(|()| c)) {
            Ok(c) => c,
            Err(e) => {
                trial.problems.push(format!("SQLite target {path}: cannot open: {e}"));
                return (Vec::new(), trial);
            }
        };
        trial.summary = if exists {
            "the statements ran in order in one transaction (after the init SQL), rolled back at the end".to_string()
        } else {
            "the file does not exist yet and was not created: the statements ran in order on an empty in-memory database \
             (after the init SQL), in one transaction, rolled back at the end"
                .to_string()
        };
        if let Err(e) = conn.execute_batch("BEGIN") {
            trial.problems.push(format!("SQLite target {path}: cannot begin a transaction: {e}"));
            return (Vec::new(), trial);
        }
        match init_scripts(&config.init_sql, &config.init_sql_file) {
            Ok(scripts) => {
                for (name, sql) in scripts {
                    if let Err(e) = under_savepoint(&conn, "dry_run_init", || conn.execute_batch(&sql).map_err(|e| e.to_string())) {
                        trial.problems.push(format!("{name} failed inside the dry run's transaction: {e}"));
                    }
                }
            }
            Err(e) => trial.problems.push(e),
        }
        let mut checks = Vec::new();
        if conn.is_autocommit() {
            trial.problems.push("the init SQL ended the dry run's transaction (it holds COMMIT or ROLLBACK); no statement was run".into());
            return (checks, trial);
        }
        'events: for (position, ops) in plan {
            let mut event_checks = Vec::new();
            if let Err(e) = conn.execute_batch("SAVEPOINT dry_run_event") {
                trial.problems.push(format!("cannot set a savepoint before the event at position {position}: {e}"));
                break;
            }
            let mut failed = false;
            for (n, op) in ops.iter().enumerate() {
                if failed {
                    event_checks.push(Check::NotRun(AFTER_FAILURE.into()));
                    continue;
                }
                if controls_transaction(sql_text(op)) {
                    event_checks.push(not_run_control());
                    continue;
                }
                let before = conn.total_changes();
                match execute_op(&conn, op) {
                    Ok(()) => event_checks.push(Check::Ok { rows: Some(conn.total_changes() - before), plan: Vec::new() }),
                    Err(error) => {
                        event_checks.push(Check::Failed { error, plan: Vec::new() });
                        failed = true;
                    }
                }
                if conn.is_autocommit() {
                    trial.problems.push(ended(position, n + 1, failed));
                    checks.push(event_checks);
                    break 'events;
                }
            }
            let undo = if failed { "ROLLBACK TO dry_run_event; RELEASE dry_run_event" } else { "RELEASE dry_run_event" };
            if let Err(e) = conn.execute_batch(undo) {
                trial.problems.push(format!("after the event at position {position}: {e}"));
                checks.push(event_checks);
                break;
            }
            checks.push(event_checks);
        }
        if !conn.is_autocommit()
            && let Err(e) = conn.execute_batch("ROLLBACK")
        {
            trial.problems.push(format!("SQLite target {path}: the rollback failed ({e}); the connection is closed without committing"));
        }
        (checks, trial)
    }

    /// Runs `f` under a savepoint, undone if it fails.
    fn under_savepoint(conn: &Connection, name: &str, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        conn.execute_batch(&format!("SAVEPOINT {name}")).map_err(|e| e.to_string())?;
        let result = f();
        let undo = if result.is_ok() { format!("RELEASE {name}") } else { format!("ROLLBACK TO {name}; RELEASE {name}") };
        if !conn.is_autocommit() {
            conn.execute_batch(&undo).map_err(|e| e.to_string())?;
        }
        result
    }

    fn ended(position: u64, number: usize, failed: bool) -> String {
        if failed {
            format!(
                "the database rolled the dry run's transaction back after operation {number} of the event at position {position} failed; \
                 nothing after it was run"
            )
        } else {
            format!(
                "operation {number} of the event at position {position} ended the dry run's transaction itself: what ran before it may \
                 have been COMMITTED to the target; nothing after it was run"
            )
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use postgres_types::ToSql;
    use tokio_postgres::{Client, error::SqlState};

    use super::*;
    use projector_gateway::{
        config::PostgresSinkConfig,
        postgres::{PgEndpoint, describe, is_connection_lost},
        sinks::postgres::bind_all,
    };

    pub async fn trial(config: &PostgresSinkConfig, plan: Vec<(u64, Vec<SqlOp>)>, explain: bool) -> Outcome {
        let mut trial = Trial::default();
        let endpoint = match PgEndpoint::parse(&config.url) {
            Ok(e) => e,
            Err(e) => {
                trial.problems.push(format!("sink.postgres.url: {e}"));
                return (Vec::new(), trial);
            }
        };
        let server = endpoint.display().to_string();
        let client = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => {
                trial.problems.push(format!("cannot connect to the PostgreSQL target {server}: {}", describe(&e)));
                return (Vec::new(), trial);
            }
        };
        trial.summary = format!(
            "the statements ran in order in one transaction (after the init SQL), rolled back at the end{}; sequences they advanced \
             (serial and identity columns) stay advanced, as after any rolled-back transaction",
            if explain { ", each with its plan" } else { "" }
        );
        if let Err(e) = client.batch_execute("BEGIN").await {
            trial.problems.push(format!("PostgreSQL target {server}: cannot begin a transaction: {}", describe(&e)));
            return (Vec::new(), trial);
        }
        match tokio::task::spawn_blocking({
            let (sql, file) = (config.init_sql.clone(), config.init_sql_file.clone());
            move || init_scripts(&sql, &file)
        })
        .await
        {
            Ok(Ok(scripts)) => {
                for (name, sql) in scripts {
                    if let Err(e) = under_savepoint(&client, "dry_run_init", client.batch_execute(&sql)).await {
                        trial.problems.push(format!("{name} failed inside the dry run's transaction: {}", describe(&e)));
                    }
                }
            }
            Ok(Err(e)) => trial.problems.push(e),
            Err(e) => trial.problems.push(e.to_string()),
        }
        let mut checks = Vec::new();
        for (position, ops) in plan {
            if let Err(e) = client.batch_execute("SAVEPOINT dry_run_event").await {
                trial.problems.push(if e.code() == Some(&SqlState::NO_ACTIVE_SQL_TRANSACTION) {
                    format!(
                        "the dry run's transaction had ended before the event at position {position} (an operation or the init SQL \
                         ended it): what ran before may have been COMMITTED to the target; nothing more was run"
                    )
                } else {
                    format!("cannot set a savepoint before the event at position {position}: {}", describe(&e))
                });
                return (checks, trial);
            }
            let mut event_checks = Vec::new();
            let mut failed = false;
            for op in &ops {
                if failed {
                    event_checks.push(Check::NotRun(AFTER_FAILURE.into()));
                    continue;
                }
                if controls_transaction(sql_text(op)) {
                    event_checks.push(not_run_control());
                    continue;
                }
                let plan = match op {
                    SqlOp::Statement { sql, params } if explain => plan_of(&client, sql, params).await,
                    _ => Vec::new(),
                };
                let check = match execute(&client, op).await {
                    Ok(rows) => Check::Ok { rows, plan },
                    Err(Failure::Database(e)) if is_connection_lost(&e) => {
                        trial.problems.push(format!("the connection to {server} was lost: {}; nothing was committed", describe(&e)));
                        return (checks, trial);
                    }
                    Err(Failure::Database(e)) => Check::Failed { error: describe(&e), plan },
                    Err(Failure::Bind(error)) => Check::Failed { error, plan },
                };
                failed = matches!(check, Check::Failed { .. });
                event_checks.push(check);
            }
            let undo = if failed { "ROLLBACK TO SAVEPOINT dry_run_event; RELEASE SAVEPOINT dry_run_event" } else { "RELEASE SAVEPOINT dry_run_event" };
            checks.push(event_checks);
            if let Err(e) = client.batch_execute(undo).await {
                trial.problems.push(format!("after the event at position {position}: {}", describe(&e)));
                return (checks, trial);
            }
        }
        match client.batch_execute("SAVEPOINT dry_run_end").await {
            Err(e) if e.code() == Some(&SqlState::NO_ACTIVE_SQL_TRANSACTION) => trial.problems.push(
                "the dry run's transaction had ended before its rollback (an operation ended it): what ran before may have been \
                 COMMITTED to the target"
                    .into(),
            ),
            _ => {
                if let Err(e) = client.batch_execute("ROLLBACK").await {
                    trial.problems.push(format!(
                        "PostgreSQL target {server}: the rollback failed ({}); the connection is closed without committing",
                        describe(&e)
                    ));
                }
            }
        }
        (checks, trial)
    }

    enum Failure {
        Database(tokio_postgres::Error),
        Bind(String),
    }

    /// Runs one operation as the sink does: raw SQL by the simple protocol, a statement
    /// prepared, its parameters bound to the types the server inferred. The rows it changed,
    /// where the server says.
    async fn execute(client: &Client, op: &SqlOp) -> Result<Option<u64>, Failure> {
        match op {
            SqlOp::Raw(sql) => client.batch_execute(sql).await.map(|()| None).map_err(Failure::Database),
            SqlOp::Statement { sql, params } => {
                let statement = client.prepare(sql).await.map_err(Failure::Database)?;
                let bound = bind_all(params, statement.params()).map_err(Failure::Bind)?;
                let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
                client.execute(&statement, &refs).await.map(Some).map_err(Failure::Database)
            }
        }
    }

    /// `EXPLAIN` of a statement with its parameters, under a savepoint of its own (a statement
    /// that cannot be explained, e.g. DDL, must not abort the transaction).
    async fn plan_of(client: &Client, sql: &str, params: &[projector_gateway::sinks::sql::SqlValue]) -> Vec<String> {
        let explained = under_savepoint(client, "dry_run_plan", async {
            let statement = client.prepare(&format!("EXPLAIN {sql}")).await?;
            let bound = match bind_all(params, statement.params()) {
                Ok(bound) => bound,
                // The statement's own run reports it.
                Err(_) => return Ok(Vec::new()),
            };
            let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
            let rows = client.query(&statement, &refs).await?;
            Ok(rows.iter().filter_map(|r| r.try_get::<_, String>(0).ok()).collect())
        })
        .await;
        explained.unwrap_or_else(|e| vec![format!("(no plan: {})", describe(&e))])
    }

    /// Runs `work` under a savepoint, undone if it fails.
    async fn under_savepoint<T>(
        client: &Client,
        name: &str,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, tokio_postgres::Error> {
        client.batch_execute(&format!("SAVEPOINT {name}")).await?;
        let result = work.await;
        let undo = match &result {
            Ok(_) => format!("RELEASE SAVEPOINT {name}"),
            Err(_) => format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"),
        };
        client.batch_execute(&undo).await?;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_transaction_statements_from_others() {
        for control in ["COMMIT", "  commit;", "INSERT INTO t VALUES (1); COMMIT", "begin transaction", "ROLLBACK TO x", "END", "start transaction"] {
            assert!(controls_transaction(control), "{control}");
        }
        for plain in ["INSERT INTO t (ending, committed) VALUES ($1, $2)", "UPDATE t SET x = 1 WHERE status = 'COMMIT'", "SELECT 1"] {
            assert!(!controls_transaction(plain), "{plain}");
        }
    }
}
