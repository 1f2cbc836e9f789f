//! Partition claims in a MongoDB target: `gateway_members` (one document per gateway running a
//! connector, `_id: {connector, member}`: its heartbeat), `gateway_claims` (one per partition,
//! `_id: {connector, partition}`: holder, epoch, expiry) and `gateway_fences` (one per
//! partition: the holder and epoch that may commit for it), all in the sink's database and
//! kept with the server's clock (`$$NOW` in update pipelines and `$expr`), and the fence
//! command the sink runs first in every batch transaction.
//!
//! Taking a partition is two writes. First a conditional upsert of its claim document: the
//! filter matches only a claim that is free for the taker (expired, handed back, or its own),
//! and when it matches nothing the upsert's insert fails on the `_id` (duplicate key): someone
//! else holds it, or another member's upsert of a new claim won the race. Either way exactly
//! one member gets a claim under a new epoch. Then the taker moves the partition's fence
//! document to that epoch, and runs the partition only once it has.
//!
//! The fence updates the batch's fence documents inside the batch's transaction (matching
//! holder and epoch per partition) and the batch is refused unless it matched every one. The
//! claims and the fences are separate documents so that renewing a claim (every tick, outside
//! any transaction) never meets the holder's own batch transactions: on one document, each
//! renewal would wait for the batch in flight and each batch would conflict with the renewal
//! committed after its snapshot, and under load the claims expired while their holder was
//! busy committing. What SecantusDB showed (and MongoDB documents) about a fence document:
//! - a write outside a transaction (the taker moving the fence) of a document that an open
//!   batch transaction has written waits until that transaction commits or aborts (the server
//!   retries the write conflict internally, up to the command's `maxTimeMS`), so a partition
//!   taken over finds the batch's checkpoint once it runs, as `FOR SHARE` gives in PostgreSQL;
//! - a batch transaction that writes a fence document changed after its snapshot (a take that
//!   moved it first) fails with `WriteConflict` (112) labelled `TransientTransactionError`:
//!   the writer retries the batch, and the retry's fence finds the new epoch and refuses it;
//! - a transaction left open by a gateway killed or paused in its middle keeps its fence
//!   documents until the server reaps it (`transactionLifetimeLimitSeconds`, 60 s; SecantusDB
//!   reaps only when another transaction command arrives): moving those fences times out
//!   (`maxTimeMS`), the partitions are not run, and the take is tried again at the next tick,
//!   so such a handover takes up to that long instead of the claims' ttl;
//! - SecantusDB compares a stored date with `$$NOW` wrongly (naive against time-zone-aware
//!   datetimes: every comparison is false, a subtraction fails), so every comparison here is of
//!   `$toLong` of both sides, which means the same on MongoDB.
//!
//! Every command is counted (`statements`). A member's tick is four commands (heartbeat,
//! renewal, the live members, the claims; three when it holds nothing), taking partitions
//! three (the conditional upserts, reading back what was taken, moving its fences; four when
//! moving them waited out its time), handing back one.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::{
    Client, Database,
    bson::{Bson, DateTime, Document, doc},
    error::ErrorKind,
    options::ClientOptions,
};
use tracing::info;

use super::{
    Claims, LeaseError,
    partitions::{ClaimStore, Taken},
    share::{ClaimRow, View},
};

/// The members' heartbeats.
pub const MEMBERS: &str = "gateway_members";
/// One claim per partition.
pub const CLAIMS: &str = "gateway_claims";
/// One fence per partition: the holder and epoch whose batches may commit for it.
pub const FENCES: &str = "gateway_fences";

/// The fence: one `update` of the fence documents of `epochs` (partition, epoch) that `holder` holds
/// under exactly those epochs, counting the batch on each (`fenced_commits`). Run in the batch's
/// transaction; the batch is refused unless `n` (documents matched) is `epochs.len()`.
/// `epochs` must not be empty.
pub fn fence_command(connector: &str, holder: &str, epochs: &[(u32, i64)]) -> Document {
    doc! {
        "update": FENCES,
        "updates": [ {
            "q": { "_id.connector": connector, "holder": holder, "$or": pairs(epochs) },
            "u": { "$inc": { "fenced_commits": 1_i64 } },
            "multi": true,
            "upsert": false,
        } ],
        "ordered": true,
    }
}

/// The matched count of an `update` reply (`n`).
pub fn matched(reply: &Document) -> u64 {
    match reply.get("n") {
        Some(Bson::Int32(n)) => *n as u64,
        Some(Bson::Int64(n)) => *n as u64,
        _ => 0,
    }
}

/// `{_id.partition, epoch}` per claim, for an `$or`.
fn pairs(epochs: &[(u32, i64)]) -> Vec<Document> {
    epochs
        .iter()
        .map(|(p, e)| doc! { "_id.partition": *p as i32, "epoch": *e })
        .collect()
}

fn claim_id(connector: &str, partition: u32) -> Document {
    doc! { "connector": connector, "partition": partition as i32 }
}

fn member_id(connector: &str, member: &str) -> Document {
    doc! { "connector": connector, "member": member }
}

/// `$<field>` is before the server's now (true when the field is missing).
fn before_now(field: &str) -> Document {
    doc! { "$lt": [ { "$toLong": field }, { "$toLong": "$$NOW" } ] }
}

/// `$<field>` is after the server's now.
fn after_now(field: &str) -> Document {
    doc! { "$gt": [ { "$toLong": field }, { "$toLong": "$$NOW" } ] }
}

/// The claims and members of one target, on a client of their own.
pub struct MongoClaims {
    db: Database,
    /// `host:port/database`, without credentials.
    display: String,
    /// Commands sent (for the coordination cost the benchmark prints).
    statements: u64,
    /// Moving a fence waited out its `maxTimeMS` behind another gateway's open batch
    /// transaction: said once until a take gets through again.
    take_blocked: bool,
}

impl MongoClaims {
    /// Connects (failing fast when the server cannot be reached) and creates the indexes on
    /// the connector where missing.
    pub async fn open(url: &str, database: &str) -> Result<Self, LeaseError> {
        let mut options = ClientOptions::parse(url).await.map_err(|e| LeaseError::Store {
            database: "MongoDB",
            endpoint: database.to_owned(),
            action: "cannot use the connection string",
            cause: describe(&e),
        })?;
        let hosts = options.hosts.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        options.app_name.get_or_insert_with(|| "projector-gateway".into());
        options.server_selection_timeout.get_or_insert(std::time::Duration::from_secs(10));
        options.connect_timeout.get_or_insert(std::time::Duration::from_secs(5));
        let display = format!("{hosts}/{database}");
        let error = |action, e: &mongodb::error::Error| LeaseError::Store {
            database: "MongoDB",
            endpoint: display.clone(),
            action,
            cause: describe(e),
        };
        let client = Client::with_options(options).map_err(|e| error("cannot connect", &e))?;
        let db = client.database(database);
        for collection in [MEMBERS, CLAIMS, FENCES] {
            let index = doc! { "createIndexes": collection, "indexes": [ { "key": { "_id.connector": 1 }, "name": "connector" } ] };
            db.run_command(index)
                .await
                .map_err(|e| error("cannot create the claims indexes", &e))?;
        }
        Ok(Self {
            db,
            display,
            statements: 0,
            take_blocked: false,
        })
    }

    /// [`MongoClaims::open`] for a store that outlives its arguments.
    pub async fn open_owned(url: String, database: String) -> Result<Self, LeaseError> {
        Self::open(&url, &database).await
    }

    fn error(&self, action: &'static str, cause: String) -> LeaseError {
        LeaseError::Store {
            database: "MongoDB",
            endpoint: self.display.clone(),
            action,
            cause,
        }
    }

    /// Runs a write command; a write error fails it.
    async fn write(&mut self, action: &'static str, command: Document) -> Result<Document, LeaseError> {
        self.statements += 1;
        let reply = self.db.run_command(command).await.map_err(|e| self.error(action, describe(&e)))?;
        match reply.get_array("writeErrors").ok().and_then(|errors| errors.first()) {
            Some(first) => Err(self.error(action, format!("{first}"))),
            None => Ok(reply),
        }
    }

    async fn read(&mut self, action: &'static str, collection: &str, pipeline: Vec<Document>) -> Result<Vec<Document>, LeaseError> {
        self.statements += 1;
        let cursor = self.db.collection::<Document>(collection).aggregate(pipeline).await;
        let docs = match cursor {
            Ok(cursor) => cursor.try_collect().await,
            Err(e) => Err(e),
        };
        docs.map_err(|e| self.error(action, describe(&e)))
    }
}

/// The server's code for a command that ran out of its `maxTimeMS`.
const MAX_TIME_MS_EXPIRED: i32 = 50;

/// How long a command may wait for a fence document that an open batch transaction wrote.
fn max_time_ms(ttl_ms: u64) -> i64 {
    (ttl_ms / 3).max(100) as i64
}

impl MongoClaims {
    /// Moves the fence of each of `claimed` (just claimed by `holder`) to its new epoch, and
    /// returns those whose fence moved: only they may run. Moving a fence waits for the
    /// previous holder's batch transaction in flight; one that outlasts `maxTimeMS` (a gateway
    /// stopped inside it) leaves that partition claimed but not run, and it is taken again
    /// (new epoch) at the next tick. A fence never moves back to a lower epoch.
    async fn move_fences(&mut self, connector: &str, holder: &str, claimed: Vec<Taken>, ttl_ms: u64) -> Result<Vec<Taken>, LeaseError> {
        if claimed.is_empty() {
            return Ok(claimed);
        }
        let updates: Vec<Document> = claimed
            .iter()
            .map(|t| {
                doc! {
                    "q": { "_id": claim_id(connector, t.partition), "$or": [ { "epoch": { "$lt": t.epoch } }, { "epoch": { "$exists": false } } ] },
                    "u": { "$set": { "holder": holder, "epoch": t.epoch } },
                    "upsert": true,
                }
            })
            .collect();
        let command = doc! { "update": FENCES, "updates": updates, "ordered": false, "maxTimeMS": max_time_ms(ttl_ms) };
        self.statements += 1;
        match self.db.run_command(command).await {
            Ok(reply) if reply.get_array("writeErrors").is_err() => {
                self.take_blocked = false;
                return Ok(claimed);
            }
            // Some fence already at a higher epoch (this claim was lost meanwhile): see below.
            Ok(_) => {}
            Err(e) if matches!(&*e.kind, ErrorKind::Command(c) if c.code == MAX_TIME_MS_EXPIRED) => {
                if !std::mem::replace(&mut self.take_blocked, true) {
                    let partitions: Vec<u32> = claimed.iter().map(|t| t.partition).collect();
                    info!(
                        "MongoDB target {}: partition(s) {partitions:?} of connector `{connector}` are held by an open batch transaction \
                         (of a gateway stopped inside it, until the server ends it); trying again",
                        self.display
                    );
                }
            }
            Err(e) => return Err(self.error("cannot move the partitions' fences", describe(&e))),
        }
        // Which fences moved: read them back.
        let ids: Vec<Document> = claimed.iter().map(|t| claim_id(connector, t.partition)).collect();
        let fences = self
            .read("cannot read the partitions' fences", FENCES, vec![doc! { "$match": { "_id": { "$in": ids }, "holder": holder } }])
            .await?;
        let moved: BTreeMap<u32, i64> = fences
            .iter()
            .filter_map(|d| Some((u32::try_from(int(d.get_document("_id").ok()?.get("partition")?)?).ok()?, int(d.get("epoch")?)?)))
            .collect();
        Ok(claimed.into_iter().filter(|t| moved.get(&t.partition) == Some(&t.epoch)).collect())
    }
}

impl ClaimStore for MongoClaims {
    fn statements(&self) -> u64 {
        self.statements
    }

    async fn tick(&mut self, connector: &str, held: &Claims, ttl_ms: u64) -> Result<(Vec<u32>, View), LeaseError> {
        // No transaction writes a member or claim document: nothing here waits for a batch.
        let (ttl, me) = (ttl_ms as i64, held.holder.as_str());
        let heartbeat = doc! {
            "update": MEMBERS,
            "updates": [ {
                "q": { "_id": member_id(connector, me) },
                "u": [ { "$set": {
                    "joined_at": { "$cond": [ before_now("$expires_at"), "$$NOW", "$joined_at" ] },
                    "expires_at": { "$add": [ "$$NOW", ttl ] },
                } } ],
                "upsert": true,
            } ],
        };
        self.write("cannot keep the membership alive", heartbeat).await?;
        // Renewed while the epoch is still ours, even if it expired meanwhile:
        // nobody took it (that would have changed the epoch), and the fence keeps commits safe.
        if !held.epochs.is_empty() {
            let updates: Vec<Document> = held
                .epochs
                .iter()
                .map(|(p, e)| {
                    doc! {
                        "q": { "_id": claim_id(connector, *p), "holder": me, "epoch": *e, "released": false },
                        "u": [ { "$set": { "expires_at": { "$add": [ "$$NOW", ttl ] }, "renewed_at": "$$NOW" } } ],
                    }
                })
                .collect();
            let renew = doc! { "update": CLAIMS, "updates": updates, "ordered": false };
            self.write("cannot renew the partition claims", renew).await?;
        }
        let live = doc! { "$match": { "_id.connector": connector, "$expr": after_now("$expires_at") } };
        let members = self
            .read(
                "cannot read the members",
                MEMBERS,
                vec![live, doc! { "$sort": { "_id.member": 1 } }],
            )
            .await?;
        let claims = vec![
            doc! { "$match": { "_id.connector": connector } },
            doc! { "$sort": { "_id.partition": 1 } },
            doc! { "$project": {
                "holder": 1, "epoch": 1, "released": 1,
                "live": { "$and": [ after_now("$expires_at"), { "$ne": [ "$released", true ] } ] },
            } },
        ];
        let claims = self.read("cannot read the partition claims", CLAIMS, claims).await?;
        let view = View {
            members: members
                .iter()
                .filter_map(|d| Some(d.get_document("_id").ok()?.get_str("member").ok()?.to_owned()))
                .collect(),
            claims: claims.iter().filter_map(claim_row).collect(),
        };
        // Still held: ours under the epoch we hold it with (the renewal just moved it on).
        let still = claims
            .iter()
            .filter(|d| d.get_bool("released") != Ok(true))
            .filter_map(claim_row)
            .filter(|c| c.holder == me && held.epochs.get(&c.partition) == Some(&c.epoch))
            .map(|c| c.partition)
            .collect();
        Ok((still, view))
    }

    async fn take(&mut self, connector: &str, holder: &str, partitions: &[u32], ttl_ms: u64) -> Result<Vec<Taken>, LeaseError> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let ttl = ttl_ms as i64;
        // Free for `holder`: its own, handed back, or expired. The document before the take is
        // kept in `previous`, so the taker learns how long its former holder had been silent.
        let free = doc! { "$or": [ { "holder": holder }, { "released": true }, { "$expr": before_now("$expires_at") } ] };
        let updates: Vec<Document> = partitions
            .iter()
            .map(|p| {
                let mut q = doc! { "_id": claim_id(connector, *p) };
                q.extend(free.clone());
                doc! {
                    "q": q,
                    "u": [ { "$set": {
                        "previous": {
                            "holder": { "$ifNull": [ "$holder", Bson::Null ] },
                            "renewed_at": { "$ifNull": [ "$renewed_at", Bson::Null ] },
                            "released": { "$ifNull": [ "$released", false ] },
                        },
                        "holder": holder,
                        "epoch": { "$add": [ { "$ifNull": [ "$epoch", 0_i64 ] }, 1_i64 ] },
                        "expires_at": { "$add": [ "$$NOW", ttl ] },
                        "renewed_at": "$$NOW",
                        "released": false,
                    } } ],
                    "upsert": true,
                }
            })
            .collect();
        // No transaction writes a claim document, so this waits for nobody.
        let command = doc! { "update": CLAIMS, "updates": updates, "ordered": false };
        self.statements += 1;
        let reply = self.db.run_command(command).await.map_err(|e| self.error("cannot take partitions", describe(&e)))?;
        // A duplicate key: held by another member, or another member's upsert won the race.
        let mut refused = vec![false; partitions.len()];
        let mut failure = None;
        for error in reply.get_array("writeErrors").into_iter().flatten().filter_map(Bson::as_document) {
            let index = error
                .get_i32("index")
                .ok()
                .and_then(|i| usize::try_from(i).ok())
                .filter(|i| *i < partitions.len());
            if let Some(i) = index {
                refused[i] = true;
            }
            if !matches!(error.get_i32("code"), Ok(11000 | 11001)) {
                failure.get_or_insert_with(|| format!("{error}"));
            }
        }
        let got: Vec<Document> = partitions
            .iter()
            .zip(&refused)
            .filter(|(_, refused)| !**refused)
            .map(|(p, _)| claim_id(connector, *p))
            .collect();
        if got.is_empty() {
            return match failure {
                Some(cause) => Err(self.error("cannot take partitions", cause)),
                None => Ok(Vec::new()),
            };
        }
        let mine = doc! { "$match": { "_id": { "$in": got }, "holder": holder } };
        let docs = self.read("cannot read the partitions taken", CLAIMS, vec![mine]).await?;
        let claimed: Vec<Taken> = docs.iter().filter_map(|d| taken(d, holder)).collect();
        self.move_fences(connector, holder, claimed, ttl_ms).await
    }

    async fn release(&mut self, connector: &str, holder: &str, released: &BTreeMap<u32, i64>) -> Result<(), LeaseError> {
        if released.is_empty() {
            return Ok(());
        }
        let epochs: Vec<(u32, i64)> = released.iter().map(|(p, e)| (*p, *e)).collect();
        // `renewed_at` becomes the moment of the handover, which the taker measures from.
        let command = doc! {
            "update": CLAIMS,
            "updates": [ {
                "q": { "_id.connector": connector, "holder": holder, "$or": pairs(&epochs) },
                "u": [ { "$set": { "expires_at": "$$NOW", "renewed_at": "$$NOW", "released": true } } ],
                "multi": true,
            } ],
        };
        self.write("cannot hand partitions back", command).await.map(drop)
    }

    async fn leave(&mut self, connector: &str, member: &str) -> Result<(), LeaseError> {
        let command = doc! {
            "update": MEMBERS,
            "updates": [ { "q": { "_id": member_id(connector, member) }, "u": [ { "$set": { "expires_at": "$$NOW" } } ] } ],
        };
        self.write("cannot leave the members", command).await.map(drop)
    }
}

/// A claim document as the share reads it.
fn claim_row(d: &Document) -> Option<ClaimRow> {
    Some(ClaimRow {
        partition: u32::try_from(int(d.get_document("_id").ok()?.get("partition")?)?).ok()?,
        holder: d.get_str("holder").ok()?.to_owned(),
        epoch: int(d.get("epoch")?)?,
        live: d.get_bool("live").unwrap_or(false),
    })
}

/// A claim document just taken by `holder`.
fn taken(d: &Document, holder: &str) -> Option<Taken> {
    let row = claim_row(d)?;
    let previous = d.get_document("previous").ok();
    let from_another = previous.and_then(|p| p.get_str("holder").ok()).is_some_and(|h| h != holder);
    let since = match (
        previous.and_then(|p| p.get_datetime("renewed_at").ok()),
        d.get_datetime("renewed_at"),
    ) {
        (Some(before), Ok(now)) if from_another => Some(millis(*now) - millis(*before)),
        _ => None,
    };
    Some(Taken {
        partition: row.partition,
        epoch: row.epoch,
        since_previous_holder_ms: since,
        was_released: from_another && previous.is_some_and(|p| p.get_bool("released") == Ok(true)),
    })
}

fn millis(at: DateTime) -> i64 {
    at.timestamp_millis()
}

fn int(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(f) if f.fract() == 0.0 => Some(*f as i64),
        _ => None,
    }
}

/// One line for a driver error: the server's words and code where it answered.
fn describe(e: &mongodb::error::Error) -> String {
    match &*e.kind {
        ErrorKind::Command(c) => format!("{} (code {} {})", c.message, c.code, c.code_name),
        ErrorKind::ServerSelection { message, .. } => format!("server unreachable: {message}"),
        _ => e.to_string(),
    }
}
