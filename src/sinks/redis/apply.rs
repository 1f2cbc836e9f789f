//! Applies a batch to Redis: its operations, its parked events and its checkpoints in one
//! MULTI/EXEC, fenced by WATCH. Two round trips on the writer's own connection:
//!
//! 1. `WATCH` the checkpoint hash and every key whose type matters to the batch (not those it
//!    only SETs, DELs or PEXPIREs); `HMGET` the checkpoint fields the batch moves; the current
//!    value of each counter the batch increments (`GET`, `HGET`: their replies also tell the
//!    key's type, a value or nothing, or WRONGTYPE) and the `TYPE` of the other keys. The
//!    stored positions must be those the batch was planned from
//!    (`sinks::Stored`), else the batch is refused whole (`ApplyError::checkpoint_moved`).
//!    Then the batch is played over the types and counters read (`check.rs`): an operation
//!    Redis would refuse inside EXEC fails its event here, before anything is sent.
//! 2. `MULTI`, the commands in batch order, an `XADD` per parked event, one `HSET` of the
//!    checkpoint fields, `EXEC`. EXEC answers nil when a watched key changed since step 1:
//!    if the checkpoint fields moved, another process committed for this connector
//!    (`checkpoint_moved`); otherwise another client wrote a key of the batch (or another
//!    writer of this connector its own checkpoint field) and the batch is planned again at once.
//!
//! MULTI/EXEC is all or nothing against other clients: none sees part of a batch, and a batch
//! whose EXEC did not run (nil, a refused command while queueing, the connection lost before
//! EXEC) changed nothing. It is not a rollback: a command that fails while EXEC runs fails
//! alone and the others, the checkpoints included, are applied; hence step 1's play. Should
//! one fail anyway (a case the play takes as fine), the batch is reported with the command and
//! its event, as applied without that command, and the connector stops.
//!
//! A connection lost after EXEC was sent leaves the batch in doubt: the next attempt at it
//! first reads the checkpoint fields, and if they hold the batch's positions it committed; if
//! that read was wrong, the fence of the attempt refuses it.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    sync::Arc,
};

use redis::{Pipeline, RedisError, Value, aio::MultiplexedConnection};

use super::{
    Target, checkpoint_field,
    check::{Held, Observed, Play},
    describe_error, is_transient, is_transient_code,
    ops::{KeyType, RedisOp},
};
use crate::{
    event::Position,
    sinks::{ApplyError, Batch, BatchItem, EventRef, SinkWriter, Stored, moved_detail},
};

/// How many times in a row a batch is planned again at once when EXEC found a watched key
/// changed by another client (not the checkpoints) before it counts as a transient failure.
const REPLANS: usize = 20;

/// Applies batches on a connection of its own.
pub struct RedisWriter {
    target: Arc<Target>,
    conn: Option<MultiplexedConnection>,
    /// Checkpoints of a batch whose EXEC was sent on a connection that was then lost.
    in_doubt: Option<(u32, Vec<(u32, Position)>)>,
}

impl RedisWriter {
    pub(super) fn new(target: Arc<Target>) -> Self {
        Self { target, conn: None, in_doubt: None }
    }

    async fn connection(&mut self) -> Result<MultiplexedConnection, ApplyError> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let conn = self.target.connect().await.map_err(|e| failure("cannot connect", &e))?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// A request that failed: a connection in an unknown state (a WATCH or a MULTI on it, a
    /// late reply) is not used again.
    fn lost(&mut self, what: &str, e: &RedisError) -> ApplyError {
        if !matches!(e.kind(), redis::ErrorKind::Server(_) | redis::ErrorKind::Extension) {
            self.conn = None;
        }
        failure(what, e)
    }

    async fn apply_batch(&mut self, batch: &Batch<RedisOp>) -> Result<(), ApplyError> {
        let target = self.target.clone();
        let plan = Plan::new(batch, &target);
        if let Some(doubt) = self.in_doubt.take()
            && doubt.0 == batch.partition_count
            && doubt.1 == batch.positions()
            && !doubt.1.is_empty()
        {
            match self.stored(&plan.fields).await {
                Ok(stored) if stored.iter().zip(&doubt.1).all(|(s, (_, p))| *s == Some(*p)) => return Ok(()),
                Ok(_) => {}
                Err(e) => {
                    self.in_doubt = Some(doubt);
                    return Err(ApplyError { message: format!("cannot check whether the previous attempt committed: {}", e.message), ..e });
                }
            }
        }
        for _ in 0..REPLANS {
            let observed = self.observe(&plan).await?;
            if let Err(refused) = plan.judge(batch, &observed) {
                self.unwatch().await;
                return Err(refused);
            }
            match self.exec(&plan, batch, &observed.stored).await? {
                Exec::Committed => return Ok(()),
                Exec::WatchFired => {
                    let stored = self.stored(&plan.fields).await?;
                    if let Some(moved) = plan.moved(batch, &stored) {
                        return Err(moved);
                    }
                }
            }
        }
        Err(ApplyError {
            message: format!("keys of this batch changed under it {REPLANS} times in a row (another client writes them)"),
            transient: true,
            failed_at: None,
            checkpoint_moved: false,
        })
    }

    /// The stored positions of `fields`, read without WATCH.
    async fn stored(&mut self, fields: &[String]) -> Result<Vec<Option<Position>>, ApplyError> {
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.connection().await?;
        let values: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(&self.target.checkpoints)
            .arg(fields)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.lost("cannot read the checkpoints", &e))?;
        values.iter().zip(fields).map(|(v, f)| stored_position(v.as_deref(), f, &self.target.checkpoints)).collect()
    }

    /// Step 1: WATCH, then what the fence and the play need, in one round trip.
    async fn observe<'p>(&mut self, plan: &'p Plan<'_>) -> Result<Watched<'p>, ApplyError> {
        let mut conn = self.connection().await?;
        let target = self.target.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("WATCH").arg(&target.checkpoints).arg(&plan.keys);
        if !plan.fields.is_empty() {
            pipe.cmd("HMGET").arg(&target.checkpoints).arg(&plan.fields);
        }
        for key in &plan.typed {
            pipe.cmd("TYPE").arg(*key);
        }
        for key in &plan.counters {
            pipe.cmd("GET").arg(*key);
        }
        for (key, field) in &plan.hash_counters {
            pipe.cmd("HGET").arg(*key).arg(*field);
        }
        pipe.ignore_errors();
        let replies: Vec<Value> = pipe.query_async(&mut conn).await.map_err(|e| self.lost("cannot read the keys of the batch", &e))?;
        let mut replies = replies.into_iter();
        // A counter's read answering WRONGTYPE tells the key's type: not the counter's.
        let mut next = |what: &str| -> Result<Result<Value, ()>, ApplyError> {
            match replies.next() {
                Some(Value::ServerError(e)) if e.code() == "WRONGTYPE" && what != "WATCH" => Ok(Err(())),
                Some(Value::ServerError(e)) => Err(server_failure(&format!("reading the keys of the batch ({what})"), e.code(), &redis_words(&e))),
                Some(value) => Ok(Ok(value)),
                None => Err(ApplyError { message: format!("no reply for {what}"), transient: true, failed_at: None, checkpoint_moved: false }),
            }
        };
        // WATCH answers OK; a failure is an error reply, returned above.
        let _ = next("WATCH")?;
        let stored = if plan.fields.is_empty() {
            Vec::new()
        } else {
            let Ok(Value::Array(values)) = next("HMGET")? else {
                return Err(ApplyError {
                    message: format!("the checkpoint key `{}` holds something else than the hash this gateway writes", target.checkpoints),
                    transient: false,
                    failed_at: None,
                    checkpoint_moved: false,
                });
            };
            values
                .iter()
                .zip(&plan.fields)
                .map(|(v, f)| stored_position(bytes(v).as_deref(), f, &target.checkpoints))
                .collect::<Result<_, _>>()?
        };
        let mut observed = Observed::default();
        for key in &plan.typed {
            let held = next("TYPE")?.map_or(Held::Nothing, |t| Held::from_type(&type_name(&t)));
            observed.types.insert(*key, held);
        }
        // The keys not asked their type: what their counters' reads tell.
        let mut counted = |key: &'p str, read: &Result<Value, ()>, kind: KeyType| {
            let held = match read {
                Err(()) => Held::Other(format!("type other than {}", kind.name())),
                Ok(_) => Held::Maybe(kind),
            };
            observed.types.entry(key).or_insert(held);
        };
        let mut counters = Vec::with_capacity(plan.counters.len());
        for key in &plan.counters {
            let read = next("GET")?;
            counted(key, &read, KeyType::String);
            counters.push((*key, read.ok().as_ref().and_then(bytes)));
        }
        let mut hash_counters = Vec::with_capacity(plan.hash_counters.len());
        for key_field in &plan.hash_counters {
            let read = next("HGET")?;
            counted(key_field.0, &read, KeyType::Hash);
            hash_counters.push((*key_field, read.ok().as_ref().and_then(bytes)));
        }
        observed.counters = counters.into_iter().collect();
        observed.hash_counters = hash_counters.into_iter().collect();
        Ok(Watched { stored, observed })
    }

    async fn unwatch(&mut self) {
        if let Ok(mut conn) = self.connection().await
            && let Err(e) = redis::cmd("UNWATCH").query_async::<()>(&mut conn).await
        {
            self.lost("UNWATCH", &e);
        }
    }

    /// Step 2: MULTI, the commands, the checkpoints, EXEC, in one round trip.
    async fn exec(&mut self, plan: &Plan<'_>, batch: &Batch<RedisOp>, stored: &[Option<Position>]) -> Result<Exec, ApplyError> {
        let mut conn = self.connection().await?;
        let mut pipe = transaction_pipe();
        for (_, op) in &plan.steps {
            op.push_commands(&mut pipe);
        }
        let moving: Vec<_> = batch
            .checkpoints
            .iter()
            .zip(&plan.fields)
            .zip(stored)
            // An unchecked write never moves a position backwards.
            .filter(|((checkpoint, _), found)| {
                checkpoint.stored != Stored::Unchecked || found.is_none_or(|at| at < checkpoint.position)
            })
            .map(|((checkpoint, field), _)| (field, checkpoint.position))
            .collect();
        if !moving.is_empty() {
            let hset = pipe.cmd("HSET").arg(&self.target.checkpoints);
            for (field, position) in moving {
                hset.arg(field).arg(position);
            }
        }
        let replies = match transaction(&mut conn, pipe).await {
            Ok(replies) => replies,
            Err(e) => {
                // The EXEC may have run: the next attempt checks the checkpoints first.
                self.in_doubt = Some((batch.partition_count, batch.positions()));
                return Err(self.lost("EXEC's outcome is unknown", &e));
            }
        };
        match replies {
            Transaction::WatchFired => Ok(Exec::WatchFired),
            Transaction::Refused { index, code, message } => {
                let origin = plan.origin_of(index);
                Err(ApplyError {
                    message: format!("Redis refused {} while queueing it, so nothing of this batch was applied: {message}", origin.describe()),
                    transient: is_transient_code(&code),
                    failed_at: if is_transient_code(&code) { None } else { origin.item() },
                    checkpoint_moved: false,
                })
            }
            Transaction::Ran(results) => match results.iter().position(|r| matches!(r, Value::ServerError(_))) {
                None => Ok(Exec::Committed),
                Some(index) => {
                    let Value::ServerError(error) = &results[index] else { unreachable!() };
                    Err(ApplyError {
                        message: format!(
                            "{} failed while EXEC ran: {}. Redis has no rollback: every other command of this batch and its checkpoints \
                             were applied, so this command's effect is missing from the read model; the connector stops (restarted, it goes on \
                             after this batch)",
                            plan.origin_of(index).describe(),
                            redis_words(error)
                        ),
                        transient: false,
                        failed_at: None,
                        checkpoint_moved: false,
                    })
                }
            },
        }
    }
}

impl SinkWriter for RedisWriter {
    type Op = RedisOp;

    async fn apply(&mut self, batch: Arc<Batch<RedisOp>>) -> Result<(), ApplyError> {
        self.apply_batch(&batch).await.map_err(|mut e| {
            e.message = format!("Redis target `{}`: {}", self.target.display, e.message);
            e
        })
    }
}

/// What step 1 read.
struct Watched<'p> {
    /// The stored position of each checkpoint field of the batch, in `Plan::fields` order.
    stored: Vec<Option<Position>>,
    observed: Observed<'p>,
}

enum Exec {
    Committed,
    WatchFired,
}

/// Where a command of the transaction comes from.
#[derive(Clone, Copy)]
enum Origin<'b> {
    /// Operation `number` (1-based) of the event at `item` in the batch.
    Op { item: usize, number: usize, event: &'b EventRef, op: &'b RedisOp },
    Park { item: usize, event: &'b EventRef },
    Checkpoints,
}

impl Origin<'_> {
    fn item(&self) -> Option<usize> {
        match self {
            Origin::Op { item, .. } | Origin::Park { item, .. } => Some(*item),
            Origin::Checkpoints => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Origin::Op { number, event, op, .. } => format!("operation {number} of {event} ({op})"),
            Origin::Park { event, .. } => format!("parking {event}"),
            Origin::Checkpoints => "writing the checkpoints".into(),
        }
    }
}

/// One batch as the commands of its transaction and what to read before it.
struct Plan<'b> {
    /// The operations (parked events as XADDs), each with where it comes from.
    steps: Vec<(Origin<'b>, Cow<'b, RedisOp>)>,
    /// The step of each command of the transaction (an operation may be two commands).
    command_step: Vec<usize>,
    /// Every key whose type matters (an operation needs one), once: what WATCH holds.
    keys: Vec<&'b str>,
    /// Those whose type is read with TYPE: all but the keys whose counters' reads tell it.
    typed: Vec<&'b str>,
    /// Keys an INCRBY counts in, and hash fields an HINCRBY counts in.
    counters: Vec<&'b str>,
    hash_counters: Vec<(&'b str, &'b str)>,
    /// The checkpoint field of each of `batch.checkpoints`.
    fields: Vec<String>,
}

impl<'b> Plan<'b> {
    fn new(batch: &'b Batch<RedisOp>, target: &'b Target) -> Self {
        let (mut steps, mut command_step) = (Vec::new(), Vec::new());
        for (item, entry) in batch.items.iter().enumerate() {
            match entry {
                BatchItem::Apply { event, ops } => {
                    for (n, op) in ops.iter().enumerate() {
                        command_step.extend(std::iter::repeat_n(steps.len(), op.command_count()));
                        steps.push((Origin::Op { item, number: n + 1, event, op }, Cow::Borrowed(op)));
                    }
                }
                BatchItem::Park { event, error } => {
                    command_step.push(steps.len());
                    steps.push((Origin::Park { item, event }, Cow::Owned(park(event, error, &target.parked))));
                }
                BatchItem::Advance { .. } => {}
            }
        }
        // The type each key must hold for the batch (`None`: more than one), the counters to
        // read, and so what to ask of each key.
        let mut needs: Vec<(&'b str, Option<KeyType>)> = Vec::new();
        let mut need_index: HashMap<&'b str, usize> = HashMap::new();
        let (mut counters, mut hash_counters, mut counted) = (Vec::new(), Vec::new(), HashSet::new());
        for (origin, op) in &steps {
            let op: &'b RedisOp = match (origin, op) {
                (Origin::Op { op, .. }, _) => op,
                // The parked events' stream: an XADD.
                _ => {
                    let parked: &'b str = &target.parked;
                    let i = *need_index.entry(parked).or_insert_with(|| {
                        needs.push((parked, Some(KeyType::Stream)));
                        needs.len() - 1
                    });
                    if needs[i].1 != Some(KeyType::Stream) {
                        needs[i].1 = None;
                    }
                    continue;
                }
            };
            if let Some(needed) = op.needs() {
                let key = op.keys()[0].as_str();
                match need_index.get(key) {
                    Some(&i) if needs[i].1 != Some(needed) => needs[i].1 = None,
                    Some(_) => {}
                    None => {
                        need_index.insert(key, needs.len());
                        needs.push((key, Some(needed)));
                    }
                }
            }
            match op {
                RedisOp::IncrBy { key, .. } if counted.insert((key.as_str(), "")) => counters.push(key.as_str()),
                RedisOp::HashIncrBy { key, field, .. } if counted.insert((key.as_str(), field.as_str())) => {
                    hash_counters.push((key.as_str(), field.as_str()));
                }
                _ => {}
            }
        }
        let typed_by_counter = |key: &str, needed: Option<KeyType>| match needed {
            Some(KeyType::String) => counted.contains(&(key, "")),
            Some(KeyType::Hash) => hash_counters.iter().any(|(k, _)| *k == key),
            _ => false,
        };
        let typed: Vec<&'b str> = needs.iter().filter(|(key, needed)| !typed_by_counter(key, *needed)).map(|(key, _)| *key).collect();
        let mut watched = typed.clone();
        watched.extend(needs.iter().map(|(key, _)| *key).filter(|key| !typed.contains(key)));
        let fields = batch.checkpoints.iter().map(|c| checkpoint_field(batch.partition_count, c.partition)).collect();
        Self { steps, command_step, keys: watched, typed, counters, hash_counters, fields }
    }

    /// Where the transaction's command `index` comes from (past the operations: the
    /// checkpoints).
    fn origin_of(&self, index: usize) -> Origin<'b> {
        self.command_step.get(index).map_or(Origin::Checkpoints, |step| self.steps[*step].0)
    }

    /// The fence, then the play: whether the batch may be sent as planned.
    fn judge(&self, batch: &Batch<RedisOp>, watched: &Watched) -> Result<(), ApplyError> {
        if let Some(moved) = self.moved(batch, &watched.stored) {
            return Err(moved);
        }
        let mut play = Play::new(&watched.observed);
        for (origin, op) in &self.steps {
            if let Err(refusal) = play.apply(op) {
                return Err(ApplyError {
                    message: format!(
                        "{} would fail while EXEC runs: {}; nothing of this batch was sent",
                        origin.describe(),
                        refusal.0
                    ),
                    transient: false,
                    failed_at: origin.item(),
                    checkpoint_moved: false,
                });
            }
        }
        Ok(())
    }

    /// The fence: a checkpoint the batch was planned from that is no longer stored.
    fn moved(&self, batch: &Batch<RedisOp>, stored: &[Option<Position>]) -> Option<ApplyError> {
        batch.checkpoints.iter().zip(stored).find_map(|(checkpoint, found)| {
            let holds = match (checkpoint.stored, found) {
                (Stored::At(at), Some(found)) => at == *found,
                (Stored::Absent, None) | (Stored::Unchecked, _) => true,
                _ => false,
            };
            let found = found.map_or("no field".to_string(), |at| format!("position {at}"));
            (!holds).then(|| ApplyError::checkpoint_moved(moved_detail(checkpoint.partition, checkpoint.stored, &found)))
        })
    }
}

/// A parked event as an entry of the connector's `parked_events` stream.
fn park(event: &EventRef, error: &str, key: &str) -> RedisOp {
    let e = &event.event;
    let field = |name: &str, value: &[u8]| (name.to_string(), value.to_vec());
    RedisOp::StreamAdd {
        key: key.to_string(),
        fields: vec![
            field("partition", event.partition.to_string().as_bytes()),
            field("position", e.position.to_string().as_bytes()),
            field("eventId", e.event_id.as_bytes()),
            field("stream", e.stream.as_bytes()),
            field("eventType", e.event_type.as_bytes()),
            field("payload", &e.data),
            field("error", error.as_bytes()),
            field("parkedAt", chrono::Utc::now().to_rfc3339().as_bytes()),
        ],
        max_len: None,
    }
}

/// What a transaction's round trip answered.
pub(super) enum Transaction {
    /// EXEC ran; one reply per command, a failed command's as its `ServerError`.
    Ran(Vec<Value>),
    /// EXEC answered nil: a watched key changed; nothing ran.
    WatchFired,
    /// A command was refused while queueing (EXECABORT): nothing ran.
    Refused { index: usize, code: String, message: String },
}

/// A pipeline that opens a transaction: `MULTI`, then the caller's commands.
pub(super) fn transaction_pipe() -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.cmd("MULTI");
    pipe
}

/// Sends the commands of `pipe` (from [`transaction_pipe`]) and `EXEC`, in one round trip.
pub(super) async fn transaction(conn: &mut MultiplexedConnection, mut pipe: Pipeline) -> Result<Transaction, RedisError> {
    let commands = pipe.len() - 1;
    pipe.cmd("EXEC");
    pipe.ignore_errors();
    let mut replies: Vec<Value> = pipe.query_async(conn).await?;
    let exec = replies.pop().unwrap_or(Value::Nil);
    Ok(match exec {
        Value::Nil => Transaction::WatchFired,
        Value::Array(results) => Transaction::Ran(results),
        Value::ServerError(abort) => {
            // MULTI's reply first, then one QUEUED (or the refusal) per command.
            let refused = replies.iter().skip(1).enumerate().find_map(|(i, r)| match r {
                Value::ServerError(e) => Some((i, e.code().to_string(), redis_words(e))),
                _ => None,
            });
            let (index, code, message) = refused.unwrap_or((commands, abort.code().to_string(), redis_words(&abort)));
            Transaction::Refused { index, code, message }
        }
        other => Transaction::Refused { index: commands, code: String::new(), message: format!("EXEC answered {other:?}") },
    })
}

/// A server error as Redis writes it: `WRONGTYPE Operation against a key ...`.
pub(super) fn redis_words(e: &redis::ServerError) -> String {
    match e.details() {
        Some(details) => format!("{} {details}", e.code()),
        None => e.code().to_string(),
    }
}

/// A stored checkpoint position (`None`: no field).
fn stored_position(value: Option<&[u8]>, field: &str, key: &str) -> Result<Option<Position>, ApplyError> {
    value
        .map(|v| {
            super::position(v).ok_or_else(|| ApplyError {
                message: format!("field `{field}` of `{key}` holds {:?}, not a position", String::from_utf8_lossy(v)),
                transient: false,
                failed_at: None,
                checkpoint_moved: false,
            })
        })
        .transpose()
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn type_name(value: &Value) -> String {
    match value {
        Value::SimpleString(s) => s.clone(),
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Okay => "OK".into(),
        other => format!("{other:?}"),
    }
}

/// A failed request.
fn failure(what: &str, e: &RedisError) -> ApplyError {
    ApplyError { message: format!("{what}: {}", describe_error(e)), transient: is_transient(e), failed_at: None, checkpoint_moved: false }
}

/// A server error in a reply.
fn server_failure(what: &str, code: &str, message: &str) -> ApplyError {
    ApplyError { message: format!("{what}: {message}"), transient: is_transient_code(code), failed_at: None, checkpoint_moved: false }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::CheckpointWrite;

    fn target() -> Target {
        Target {
            client: redis::Client::open("redis://127.0.0.1:1/0").unwrap(),
            connection: redis::AsyncConnectionConfig::new(),
            display: "127.0.0.1:1/0".into(),
            prefix: "t:".into(),
            checkpoints: "t:checkpoints:c".into(),
            parked: "t:parked_events:c".into(),
            projections: "t:projections:c".into(),
        }
    }

    fn event(position: Position) -> EventRef {
        let event = crate::event::Event {
            position,
            stream: format!("s-{position}"),
            revision: 0,
            event_type: "Tested".into(),
            event_id: format!("e-{position}"),
            data: bytes::Bytes::from_static(b"{}"),
            metadata: None,
            created: chrono::Utc::now(),
            content_type: crate::event::ContentType::Json,
        };
        EventRef::new(Arc::new(event), 0)
    }

    #[test]
    fn plans_the_commands_the_keys_to_watch_and_the_counters_to_read() {
        let incr = RedisOp::IncrBy { key: "t:n".into(), by: 1 };
        let push = RedisOp::ListPush { key: "t:l".into(), values: vec![b"x".to_vec()], left: false, max_len: Some(5) };
        let hincr = RedisOp::HashIncrBy { key: "t:g".into(), field: "c".into(), by: 2 };
        let batch = Batch::fenced(
            vec![
                BatchItem::Apply { event: event(10), ops: vec![incr.clone(), push, hincr] },
                BatchItem::Park { event: event(11), error: "bad".into() },
                BatchItem::Apply { event: event(12), ops: vec![incr] },
            ],
            1,
            &[Some(9)],
        );
        let target = target();
        let plan = Plan::new(&batch, &target);
        assert_eq!(plan.keys, ["t:l", "t:parked_events:c", "t:n", "t:g"], "the keys asked TYPE first, then those of counters");
        assert_eq!(plan.typed, ["t:l", "t:parked_events:c"]);
        assert_eq!(plan.counters, ["t:n"]);
        assert_eq!(plan.hash_counters, [("t:g", "c")]);
        assert_eq!(plan.fields, ["1:0"]);
        assert_eq!(plan.command_step, [0, 1, 1, 2, 3, 4], "INCRBY, RPUSH and LTRIM, HINCRBY, XADD, INCRBY");
        assert_eq!(plan.origin_of(2).item(), Some(0), "LTRIM belongs to the first event's second operation");
        assert!(plan.origin_of(4).describe().starts_with("parking event e-11"));
        assert_eq!(plan.origin_of(5).describe(), format!("operation 1 of {} (RedisIncrBy `t:n` by 1)", event(12)));
        assert_eq!(plan.origin_of(6).item(), None, "past the operations: the checkpoints");
        assert!(plan.moved(&batch, &[Some(9)]).is_none());
        let moved = plan.moved(&batch, &[Some(12)]).expect("moved");
        assert!(moved.checkpoint_moved && moved.message.contains("partition 0: expected position 9, found position 12"), "{}", moved.message);
        let absent = Batch::fenced(vec![BatchItem::<RedisOp>::Advance { partition: 0, position: 3 }], 1, &[None]);
        assert_eq!(absent.checkpoints, [CheckpointWrite { partition: 0, position: 3, stored: Stored::Absent }]);
        assert!(Plan::new(&absent, &target).moved(&absent, &[Some(1)]).is_some(), "a field appeared");
    }
}
