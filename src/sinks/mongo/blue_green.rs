//! Blue/green rebuilds on a MongoDB target: version `v` of the read model is built in
//! collections of its own, `<collection>_v<v>` for every collection the sidecar's operations
//! name (and the default `collection`), by the run under `<connector>@v<v>`, which records the
//! collections it wrote (`<connector>@v<v>/collections` in the checkpoints collection). Readers
//! keep reading `<collection>`.
//!
//! The swap, on a server with multi-document transactions (a replica set, SecantusDB):
//! 1. with `keep_old_versions` > 0, each live collection is copied into `<collection>_v<old>`
//!    (`$out`): the old version kept, as it was just before the swap;
//! 2. one transaction: the connector's projection version becomes the new one (the live run
//!    reads it in each batch transaction and refuses a batch of another version), the new
//!    version's checkpoints take the connector's id, the old ones go; every batch of the live
//!    run writes some of those checkpoint documents, so one in flight conflicts with the swap
//!    and one of the two is retried;
//! 3. `renameCollection <collection>_v<new> -> <collection>` with `dropTarget: true`, for each
//!    collection, one after the other. Each rename is atomic (a reader sees the old collection
//!    or the new one, never none), but **a read model of several collections is not swapped as
//!    a whole**: between two renames a reader sees the new version of one collection and the
//!    old version of another (MongoDB runs no `renameCollection` in a transaction).
//!
//! Without transactions (FerretDB v1, a standalone MongoDB) there is no fence for the live
//! run's batches, so the rebuild is refused there.

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use super::{MongoSink, checkpoint_id, version_id};
use crate::{
    config::MongoSinkConfig,
    sinks::{
        SinkError, SinkErrorKind,
        blue_green::{VersionRecord, VersionState, drop_replaced, mark_past_policy, staged_id, version_suffix},
    },
};

/// The collection that holds version `version` of the read model's `collection`.
pub fn version_collection(collection: &str, version: &str) -> Result<String, SinkError> {
    let name = format!("{collection}_v{}", version_suffix(version)?);
    if name.len() > 200 {
        return Err(SinkError::config(format!("collection `{name}` (version `{version}` of `{collection}`) is too long a name")));
    }
    Ok(name)
}

/// The id of the document listing the collections a staged run wrote.
pub(super) fn collections_id(connector: &str) -> String {
    format!("{connector}/collections")
}

fn record_id(connector: &str, version: &str) -> String {
    format!("{connector}/blue_green/{version}")
}

/// The versions of one connector's read model in a MongoDB target.
pub struct Collections {
    sink: MongoSink,
}

impl Collections {
    pub async fn open(connector: &str, config: &MongoSinkConfig) -> Result<Self, SinkError> {
        Ok(Self { sink: MongoSink::open(config, connector).await? })
    }

    fn error(&self, what: &str, e: &mongodb::error::Error) -> SinkError {
        self.sink.error(SinkErrorKind::Refused, what, e)
    }

    fn gateway(&self) -> mongodb::Collection<Document> {
        self.sink.db.collection::<Document>(&self.sink.names.checkpoints)
    }

    pub async fn live_version(&self) -> Result<Option<String>, SinkError> {
        crate::sinks::Sink::projection_version(&self.sink).await
    }

    pub async fn versions(&self) -> Result<Vec<VersionRecord>, SinkError> {
        let docs: Vec<Document> = self
            .gateway()
            .find(doc! { "kind": "blue_green_version", "connector": &*self.sink.connector })
            .await
            .map_err(|e| self.error("cannot read the versions", &e))?
            .try_collect()
            .await
            .map_err(|e| self.error("cannot read the versions", &e))?;
        let text = |d: &Document, k: &str| d.get_str(k).ok().map(str::to_string);
        let mut versions: Vec<VersionRecord> = docs
            .iter()
            .filter_map(|d| {
                Some(VersionRecord {
                    version: text(d, "version")?,
                    state: VersionState::parse(d.get_str("state").ok()?),
                    place: text(d, "place").unwrap_or_default(),
                    sidecar: text(d, "sidecar"),
                    changed_at: text(d, "changed_at").unwrap_or_default(),
                    detail: text(d, "detail"),
                })
            })
            .collect();
        versions.sort_by(|a, b| a.changed_at.cmp(&b.changed_at));
        Ok(versions)
    }

    pub async fn record(&self, r: &VersionRecord) -> Result<(), SinkError> {
        let connector = &*self.sink.connector;
        let document = doc! {
            "kind": "blue_green_version", "connector": connector, "version": &r.version, "state": r.state.as_str(),
            "place": &r.place, "sidecar": r.sidecar.clone(), "changed_at": &r.changed_at, "detail": r.detail.clone(),
        };
        self.gateway()
            .replace_one(doc! { "_id": record_id(connector, &r.version) }, document)
            .upsert(true)
            .await
            .map(drop)
            .map_err(|e| self.error("cannot record the rebuild", &e))
    }

    /// The collections version `version`'s run wrote (their versioned names).
    async fn written(&self, version: &str) -> Result<Vec<String>, SinkError> {
        let id = collections_id(&staged_id(&self.sink.connector, version));
        let found = self.gateway().find_one(doc! { "_id": id }).await.map_err(|e| self.error("cannot read the rebuild's collections", &e))?;
        let mut names: Vec<String> = found
            .and_then(|d| d.get_array("names").ok().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|b| b.as_str().map(str::to_string))
            .collect();
        let default = version_collection(&self.sink.base_collection, version)?;
        if !names.contains(&default) {
            names.push(default);
        }
        Ok(names)
    }

    /// Drops version `version`'s collections and its rows.
    pub async fn discard(&self, version: &str) -> Result<(), SinkError> {
        for name in self.written(version).await? {
            self.sink.db.collection::<Document>(&name).drop().await.map_err(|e| self.error(&format!("cannot drop `{name}`"), &e))?;
        }
        let key = staged_id(&self.sink.connector, version);
        self.gateway()
            .delete_many(doc! { "$or": [ { "connector": &key }, { "_id": { "$in": [version_id(&key), collections_id(&key)] } } ] })
            .await
            .map(drop)
            .map_err(|e| self.error(&format!("cannot delete the rows of version {version}"), &e))
    }

    pub async fn swap(&self, projection: &str, live: Option<&str>, new: &str, keep: u32) -> Result<Vec<String>, SinkError> {
        if !self.sink.transactional {
            return Err(SinkError::config(format!(
                "MongoDB target `{}` runs no multi-document transactions, which the swap needs to fence the live run's batches; \
                 use `on_new_version: rebuild_in_place` here",
                self.sink.names.display
            )));
        }
        let fail = |what: &str, e: &mongodb::error::Error| self.error(&format!("the swap failed ({what})"), e);
        let suffix = format!("_v{}", version_suffix(new)?);
        let pairs: Vec<(String, String)> = self
            .written(new)
            .await?
            .into_iter()
            .filter_map(|name| Some((name.strip_suffix(&suffix)?.to_string(), name.clone())))
            .collect();
        // 1. The old version, kept as it is now.
        let existing = self.sink.db.list_collection_names().await.map_err(|e| fail("listing the collections", &e))?;
        let pairs: Vec<(String, String)> = pairs.into_iter().filter(|(base, versioned)| existing.contains(base) || existing.contains(versioned)).collect();
        if let Some(old) = live.filter(|_| keep > 0) {
            for (base, _) in pairs.iter().filter(|(base, _)| existing.contains(base)) {
                let kept = version_collection(base, old)?;
                self.sink
                    .db
                    .collection::<Document>(base)
                    .aggregate([doc! { "$match": {} }, doc! { "$out": &kept }])
                    .await
                    .map_err(|e| fail(&format!("copying `{base}` into `{kept}`"), &e))?;
            }
        }
        // 2. The fence and the checkpoints, in one transaction (retried on a write conflict
        // with a batch of the live run).
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.hand_over(projection, new).await {
                Ok(()) => break,
                Err(e) if attempts < 20 && super::is_transient(&e) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                Err(e) => return Err(fail("recording the new version and moving the checkpoints", &e)),
            }
        }
        // 3. The renames, one collection at a time. A collection the new version never wrote
        // is none of its read model: the live one goes (it was copied above).
        for (base, versioned) in &pairs {
            if !existing.contains(versioned) {
                if existing.contains(base) {
                    self.sink.db.collection::<Document>(base).drop().await.map_err(|e| fail(&format!("dropping `{base}`"), &e))?;
                }
                continue;
            }
            let command = doc! {
                "renameCollection": format!("{}.{versioned}", self.sink.db.name()),
                "to": format!("{}.{base}", self.sink.db.name()),
                "dropTarget": true,
            };
            self.sink.client.database("admin").run_command(command).await.map_err(|e| {
                fail(&format!("renaming `{versioned}` to `{base}`; the collections renamed before it show version {new} already"), &e)
            })?;
        }
        // The record of versions, and the policy.
        let now = chrono::Utc::now().to_rfc3339();
        let mut versions = self.versions().await?;
        versions.retain(|v| Some(v.version.as_str()) != live && v.version != new);
        if let Some(old) = live.filter(|_| keep > 0) {
            let place = version_collection(&self.sink.base_collection, old)?;
            versions.push(VersionRecord { version: old.into(), state: VersionState::Retired, place, sidecar: None, changed_at: now.clone(), detail: None });
        }
        let place = self.sink.base_collection.clone();
        versions.push(VersionRecord { version: new.into(), state: VersionState::Live, place, sidecar: None, changed_at: now, detail: None });
        let dropped = mark_past_policy(&mut versions, keep);
        for v in &versions {
            self.record(v).await?;
        }
        Ok(drop_replaced(&self.sink.connector, dropped, async |old| self.discard_kept(&old.version, &pairs).await).await)
    }

    /// Drops a replaced version's copies (`<collection>_v<version>`) and its rows.
    async fn discard_kept(&self, version: &str, pairs: &[(String, String)]) -> Result<(), SinkError> {
        for (base, _) in pairs {
            let name = version_collection(base, version)?;
            self.sink.db.collection::<Document>(&name).drop().await.map_err(|e| self.error(&format!("cannot drop `{name}`"), &e))?;
        }
        self.discard(version).await
    }

    async fn hand_over(&self, projection: &str, new: &str) -> Result<(), mongodb::error::Error> {
        let connector = &*self.sink.connector;
        let staged = staged_id(connector, new);
        let gateway = self.gateway();
        let mut session = self.sink.client.start_session().await?;
        session.start_transaction().await?;
        let result: Result<(), mongodb::error::Error> = async {
            gateway
                .update_one(
                    doc! { "_id": version_id(connector) },
                    doc! { "$set": { "kind": "projection_version", "connector": connector, "projection": projection, "version": new } },
                )
                .upsert(true)
                .session(&mut session)
                .await?;
            gateway.delete_many(doc! { "connector": connector, "kind": "checkpoint" }).session(&mut session).await?;
            let rows: Vec<Document> =
                gateway.find(doc! { "connector": &staged, "kind": "checkpoint" }).session(&mut session).await?.stream(&mut session).try_collect().await?;
            for mut row in rows {
                let count = row.get_i64("partitionCount").unwrap_or_default() as u32;
                let partition = row.get_i64("partition").unwrap_or_default() as u32;
                row.insert("_id", checkpoint_id(connector, count, partition));
                row.insert("connector", Bson::String(connector.to_string()));
                gateway.insert_one(row).session(&mut session).await?;
            }
            gateway
                .delete_many(doc! { "$or": [ { "connector": &staged, "kind": "checkpoint" }, { "_id": version_id(&staged) } ] })
                .session(&mut session)
                .await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => session.commit_transaction().await,
            Err(e) => {
                let _ = session.abort_transaction().await;
                Err(e)
            }
        }
    }
}
