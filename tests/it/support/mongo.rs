//! The real MongoDB-wire servers of the tests (started once per test binary by
//! `scripts/mongo.sh`): SecantusDB (a single-node replica set with transactions) and FerretDB
//! v1 on SQLite (no transactions). A fresh database per test, and reading the bookings read
//! model and the gateway's documents back.

use std::{collections::BTreeMap, process::Command, sync::OnceLock};

use futures::TryStreamExt;
use mongodb::{
    Client, Database,
    bson::{Bson, Document, doc},
};

use super::{
    bookings_model::{Booking, GuestStats, ReadModel},
    processes::repo_root,
};

/// A server `scripts/mongo.sh` runs, or a real MongoDB at `MONGODB_URL` (opt-in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Secantus,
    Ferret,
    /// `MONGODB_URL`, e.g. `mongodb://127.0.0.1:27017/?replicaSet=rs0`; its tests are skipped
    /// when the variable is not set.
    External,
}

/// The URL of the opt-in real MongoDB, if set.
pub fn external_url() -> Option<String> {
    std::env::var("MONGODB_URL").ok().filter(|u| !u.trim().is_empty())
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::Secantus => "secantus",
            Server::Ferret => "ferret",
            Server::External => "MONGODB_URL",
        }
    }

    /// Whether the server is expected to run multi-document transactions; `None` when only
    /// the sink's detection can tell (a real MongoDB: replica set or standalone).
    pub fn expects_transactions(self) -> Option<bool> {
        match self {
            Server::Secantus => Some(true),
            Server::Ferret => Some(false),
            Server::External => None,
        }
    }

    /// Whether concurrent updates of one document are atomic (two writers may share one).
    pub fn atomic_document_updates(self) -> bool {
        self != Server::Ferret
    }

    /// Whether the server reports write concern errors.
    pub fn has_write_concerns(self) -> bool {
        self != Server::Ferret
    }

    /// `url` with one more query option.
    pub fn url_with(self, option: &str) -> String {
        let url = self.url();
        let sep = if url.contains('?') { '&' } else { '?' };
        let base = if url.contains('?') || url.ends_with('/') { url.to_string() } else { format!("{url}/") };
        format!("{base}{sep}{option}")
    }

    /// Whether the server takes aggregation-pipeline updates.
    pub fn has_pipeline_updates(self) -> bool {
        self != Server::Ferret
    }

    /// The server's URL, starting it (and installing it) on first use.
    pub fn url(self) -> &'static str {
        static SECANTUS: OnceLock<String> = OnceLock::new();
        static FERRET: OnceLock<String> = OnceLock::new();
        static EXTERNAL: OnceLock<String> = OnceLock::new();
        let cell = match self {
            Server::Secantus => &SECANTUS,
            Server::Ferret => &FERRET,
            Server::External => {
                return EXTERNAL.get_or_init(|| external_url().expect("MONGODB_URL is set for the External server"));
            }
        };
        cell.get_or_init(|| {
            let out = Command::new("bash")
                .arg(repo_root().join("scripts/mongo.sh"))
                .args(["start", self.name()])
                .stderr(std::process::Stdio::inherit())
                .output()
                .expect("run scripts/mongo.sh");
            assert!(out.status.success(), "scripts/mongo.sh start {} failed", self.name());
            String::from_utf8(out.stdout).unwrap().lines().last().expect("URL").trim().to_string()
        })
    }
}

/// A database of its own for one test (names are unique; the servers keep their data under
/// /tmp/projector-gateway-mongo).
pub struct MongoDb {
    pub server: Server,
    pub name: String,
    pub db: Database,
}

impl MongoDb {
    pub async fn fresh(server: Server, hint: &str) -> Self {
        let client = Client::with_uri_str(server.url()).await.expect("client");
        let name = format!("t_{hint}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let db = client.database(&name);
        Self { server, name, db }
    }

    /// The sink's configuration for this database: collection `docs`, the default gateway
    /// collections, transactions where the server has them, one writer.
    pub fn sink_config(&self) -> projector_gateway::config::MongoSinkConfig {
        projector_gateway::config::MongoSinkConfig {
            url: self.server.url().to_string(),
            database: self.name.clone(),
            collection: "docs".into(),
            checkpoints_collection: "checkpoints".into(),
            parked_collection: "parked_events".into(),
            transactions: projector_gateway::config::MongoTransactions::Auto,
            writers: 1,
        }
    }

    /// The sink section for this database, `extra` lines appended (8 spaces of indent).
    pub fn sink_yaml(&self, extra: &str) -> String {
        format!(
            "      mongo:\n        url: \"{}\"\n        database: {}\n        collection: docs\n{extra}",
            self.server.url(),
            self.name
        )
    }

    pub async fn documents(&self, collection: &str) -> Vec<Document> {
        self.db
            .collection::<Document>(collection)
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("documents")
    }

    /// The bookings read model of `bookings_reducer::reduce_mongo`.
    pub async fn read_model(&self) -> ReadModel {
        let mut model = ReadModel::default();
        for d in self.documents("bookings").await {
            let text = |k: &str| d.get_str(k).unwrap_or_else(|_| panic!("booking {d}: no string `{k}`")).to_string();
            model.bookings.insert(
                text("_id"),
                Booking {
                    guest_id: text("guest_id"),
                    room_id: text("room_id"),
                    check_in: text("check_in"),
                    check_out: text("check_out"),
                    price_cents: int64(&d, "price_cents"),
                    paid_cents: int64(&d, "paid_cents"),
                    status: text("status"),
                    last_position: int64(&d, "last_position"),
                },
            );
        }
        for d in self.documents("guest_stats").await {
            model.guests.insert(
                d.get_str("_id").expect("guest _id").to_string(),
                GuestStats {
                    bookings: int64(&d, "bookings"),
                    cancellations: int64(&d, "cancellations"),
                    payments: int64(&d, "payments"),
                    paid_cents: int64(&d, "paid_cents"),
                },
            );
        }
        model
    }

    /// The connector's checkpoint documents: (partition count, partition) -> position.
    pub async fn checkpoints(&self, connector: &str) -> BTreeMap<(i64, i64), i64> {
        self.documents("checkpoints")
            .await
            .into_iter()
            .filter(|d| d.get_str("connector") == Ok(connector) && d.get_str("kind") == Ok("checkpoint"))
            .map(|d| ((int64(&d, "partitionCount"), int64(&d, "partition")), int64(&d, "position")))
            .collect()
    }

    /// The lowest position of the connector's checkpoints for `partitions` partitions; 0 while
    /// one of them has none.
    pub async fn low_watermark(&self, connector: &str, partitions: u32) -> u64 {
        let rows = self.checkpoints(connector).await;
        let positions: Vec<i64> = rows.iter().filter(|((count, _), _)| *count == partitions as i64).map(|(_, p)| *p).collect();
        if positions.len() < partitions as usize { 0 } else { positions.into_iter().min().unwrap_or(0).max(0) as u64 }
    }
}

/// An integral field, which must be stored as Int64 (the reducer's `integerFields`).
pub fn int64(d: &Document, key: &str) -> i64 {
    match d.get(key) {
        Some(Bson::Int64(i)) => *i,
        other => panic!("`{key}` of {d} is not an Int64: {other:?}"),
    }
}
