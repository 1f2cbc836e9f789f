//! Blue/green rebuilds on an Elasticsearch or OpenSearch target: versioned indices behind an
//! alias. Version `v` of the read model is the index `<index>_v<v>` (`<index>`: the connector's
//! default index, `sink.elastic.index`); readers query `<index>`, which after the first swap is
//! an alias of the live version's index. The swap is ONE `_aliases` request (remove the alias
//! from the old version's index, add it to the new one), which the engine applies atomically:
//! a search sees the old version or the new one, never neither.
//!
//! Each version keeps its checkpoints, projection version and parked events under its own id
//! (`<connector>@v<version>`, as the rebuild ran), and they do not change hands at the swap:
//! the engine has no transaction that could move them with the alias. Instead the checkpoints
//! index records which version is live (`<connector>/blue_green`), and a sink opened for the
//! connector reads it: with a live version recorded, it writes that version's index by its
//! concrete name and keeps its rows under that version's id. So a batch of the replaced
//! version's run that is still in flight at the swap lands in the replaced index and its own
//! rows, never in the new version; the run notices the record changed at its next batch
//! (checked before each one) and reopens its sink on the new version.
//!
//! The first blue/green swap of a read model whose `<index>` is a concrete index (built before
//! blue/green, or by `rebuild_in_place`): an alias cannot take the name of an index, so the
//! swap records the new live version (the fence), blocks writes to `<index>` (`index.blocks.write`;
//! an item refused by the block is retried, and the retry meets the fence), clones it into `<index>_v<old>`
//! (`_clone`: hard links, no copy; both engines have it), and the `_aliases` request then
//! `remove_index`es `<index>` in the same atomic step that adds the alias. A live run's batch
//! refused by the block is applied again after its sink reopened on the new version.
//! Limit: a batch of the live run that was checked before the live record changed and whose
//! `_bulk` request reaches the engine only after the `_aliases` request writes through the
//! new alias (the concrete index is gone); on later swaps this cannot happen (concrete names).
//!
//! The engine is at-least-once (no transactions: a batch's checkpoints are written after its
//! operations): a rebuild that crashes resumes from its last checkpoint and applies the
//! operations after it again, into the same `_v<version>` index; only idempotent operations
//! (index, delete, external versions) leave the same documents.

use elasticsearch::{Elasticsearch, http::Method};
use serde_json::{Value, json};

use super::{
    Names, checkpoints,
    client::{self, RequestError, encode_segment},
};
use crate::{
    config::ElasticSinkConfig,
    sinks::{
        SinkError, SinkErrorKind,
        blue_green::{VersionRecord, VersionState, drop_replaced, mark_past_policy, staged_id, version_suffix},
    },
};

/// The index that holds version `version` of the read model in `index`.
pub fn version_index(index: &str, version: &str) -> Result<String, SinkError> {
    let name = format!("{index}_v{}", version_suffix(version)?.to_lowercase());
    match super::index_name_problem(&name) {
        Some(problem) => Err(SinkError::config(format!("index `{name}` (version `{version}` of `{index}`) {problem}"))),
        None => Ok(name),
    }
}

pub use crate::sinks::blue_green::staged_version;

fn live_id(connector: &str) -> String {
    format!("{connector}/blue_green")
}

fn record_id(connector: &str, version: &str) -> String {
    format!("{connector}/blue_green/{version}")
}

/// The live version recorded by a swap, if one swapped.
pub(super) async fn live_record(client: &Elasticsearch, names: &Names, connector: &str) -> Result<Option<String>, RequestError> {
    let path = format!("/{}/_doc/{}", encode_segment(&names.checkpoints), encode_segment(&live_id(connector)));
    match client::send_json(client, Method::Get, &path, None).await {
        Ok((doc, _)) => Ok(doc["_source"]["version"].as_str().map(str::to_string)),
        Err(e) if e.message.starts_with("HTTP 404") => Ok(None),
        Err(e) => Err(e),
    }
}

/// How a sink opened for `connector` writes: the id its rows go under, and the version whose
/// index (`<index>_v<version>`) it writes (`None`: `<index>` itself), and the live version
/// recorded when it opened (the fence of a live run).
pub(super) struct Placement {
    pub key: String,
    pub version: Option<String>,
    pub live: Option<String>,
}

pub(super) async fn placement(client: &Elasticsearch, names: &Names, connector: &str) -> Result<Placement, SinkError> {
    if let Some(version) = staged_version(connector) {
        return Ok(Placement { key: connector.to_string(), version: Some(version.to_string()), live: None });
    }
    let live = live_record(client, names, connector).await.map_err(|e| error(names, "cannot read the live version", e))?;
    Ok(match live {
        Some(version) => Placement { key: staged_id(connector, &version), version: Some(version.clone()), live: Some(version) },
        None => Placement { key: connector.to_string(), version: None, live: None },
    })
}

fn error(names: &Names, what: &str, e: RequestError) -> SinkError {
    SinkError::new(SinkErrorKind::Refused, format!("Elasticsearch target `{}`: {what}: {}", names.display, e.message)).unreachable_if(e.transient)
}

/// The versions of one connector's read model in an Elasticsearch or OpenSearch target.
pub struct Versions {
    client: Elasticsearch,
    names: Names,
    connector: String,
    /// The read model's index (readers' name for it).
    index: String,
}

impl Versions {
    pub async fn open(connector: &str, config: &ElasticSinkConfig) -> Result<Self, SinkError> {
        let index = config.index.clone().ok_or_else(|| {
            SinkError::config("a blue/green rebuild on Elasticsearch versions the read model's index: set `sink.elastic.index`")
        })?;
        let (client, names) = super::connect(config)?;
        checkpoints::reach(&client, &names).await?;
        checkpoints::create_indices(&client, &names).await?;
        Ok(Self { client, names, connector: connector.to_string(), index })
    }

    /// The id the live version's rows are under.
    async fn live_key(&self) -> Result<String, SinkError> {
        Ok(placement(&self.client, &self.names, &self.connector).await?.key)
    }

    pub async fn live_version(&self) -> Result<Option<String>, SinkError> {
        checkpoints::projection_version(&self.client, &self.names, &self.live_key().await?).await
    }

    pub async fn versions(&self) -> Result<Vec<VersionRecord>, SinkError> {
        let hits = checkpoints::search(&self.client, &self.names, &self.connector, "blue_green_version")
            .await
            .map_err(|e| error(&self.names, "cannot read the versions", e))?;
        let text = |h: &Value, k: &str| h[k].as_str().map(str::to_string);
        let mut versions: Vec<VersionRecord> = hits
            .iter()
            .filter_map(|h| {
                Some(VersionRecord {
                    version: text(h, "version")?,
                    state: VersionState::parse(h["state"].as_str()?),
                    place: text(h, "place").unwrap_or_default(),
                    sidecar: text(h, "sidecar"),
                    changed_at: text(h, "changed_at").unwrap_or_default(),
                    detail: text(h, "detail"),
                })
            })
            .collect();
        versions.sort_by(|a, b| a.changed_at.cmp(&b.changed_at));
        Ok(versions)
    }

    pub async fn record(&self, record: &VersionRecord) -> Result<(), SinkError> {
        let path = format!("/{}/_doc/{}?refresh=true", encode_segment(&self.names.checkpoints), encode_segment(&record_id(&self.connector, &record.version)));
        let body = json!({
            "kind": "blue_green_version", "connector": &self.connector, "version": &record.version, "state": record.state.as_str(),
            "place": &record.place, "sidecar": &record.sidecar, "changed_at": &record.changed_at, "detail": &record.detail,
        });
        client::send(&self.client, Method::Put, &path, Some(body.to_string().into_bytes()))
            .await
            .map(drop)
            .map_err(|e| error(&self.names, "cannot record the rebuild", e))
    }

    /// Deletes version `version`'s index and its rows.
    pub async fn discard(&self, version: &str) -> Result<(), SinkError> {
        let index = version_index(&self.index, version)?;
        client::send(&self.client, Method::Delete, &format!("/{}?ignore_unavailable=true", encode_segment(&index)), None)
            .await
            .map_err(|e| error(&self.names, &format!("cannot delete the index `{index}`"), e))?;
        checkpoints::forget(&self.client, &self.names, &staged_id(&self.connector, version)).await
    }

    async fn set_live(&self, version: Option<&str>) -> Result<(), RequestError> {
        let path = format!("/{}/_doc/{}?refresh=true", encode_segment(&self.names.checkpoints), encode_segment(&live_id(&self.connector)));
        match version {
            Some(v) => {
                let body = json!({"kind": "blue_green_live", "connector": &self.connector, "version": v});
                client::send(&self.client, Method::Put, &path, Some(body.to_string().into_bytes())).await.map(drop)
            }
            None => match client::send(&self.client, Method::Delete, &path, None).await {
                Err(e) if !e.message.starts_with("HTTP 404") => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// Puts the live record back after a failed swap.
    async fn restore(&self, before: Option<&str>) {
        if let Err(back) = self.set_live(before).await {
            tracing::warn!(connector = %self.connector, "cannot put the live version record back after a failed swap: {}", back.message);
        }
    }

    /// The indices the alias `<index>` points at (`Ok(None)`: `<index>` is a concrete index;
    /// empty: neither exists).
    async fn alias_targets(&self) -> Result<Option<Vec<String>>, RequestError> {
        let name = encode_segment(&self.index);
        match client::send_json(&self.client, Method::Get, &format!("/_alias/{name}"), None).await {
            Ok((reply, _)) => return Ok(Some(reply.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default())),
            Err(e) if !e.message.starts_with("HTTP 404") => return Err(e),
            Err(_) => {}
        }
        match client::send(&self.client, Method::Get, &format!("/{name}"), None).await {
            Ok(_) => Ok(None),
            Err(e) if e.message.starts_with("HTTP 404") => Ok(Some(Vec::new())),
            Err(e) => Err(e),
        }
    }

    /// Makes version `new` live: the live record first (the fence: the live run's next batch
    /// is refused and its sink reopens), then, the first time, the concrete index blocked and
    /// cloned, then one `_aliases` request; then the old versions past `keep` are deleted. A
    /// failed step puts the live record back (a concrete index blocked stays blocked only if
    /// the `_aliases` request itself failed: unblock it with `index.blocks.write: false`).
    pub async fn swap(&self, projection: &str, live: Option<&str>, new: &str, keep: u32) -> Result<Vec<String>, SinkError> {
        let _ = projection;
        let fail = |what: &str, e: RequestError| error(&self.names, &format!("the swap failed ({what}); readers still see the live version"), e);
        let new_index = version_index(&self.index, new)?;
        // A version whose operations never wrote a document has no index yet.
        checkpoints::create_index(&self.client, &new_index, json!({})).await.map_err(|e| fail(&format!("creating `{new_index}`"), e))?;
        let before = live_record(&self.client, &self.names, &self.connector).await.map_err(|e| fail("reading the live version", e))?;
        // The fence first: from here on the live run's batches are refused before they send.
        self.set_live(Some(new)).await.map_err(|e| fail("recording the new live version", e))?;
        let mut actions = Vec::new();
        let mut kept = None;
        let targets = match self.alias_targets().await {
            Ok(targets) => targets,
            Err(e) => {
                self.restore(before.as_deref()).await;
                return Err(fail(&format!("looking up `{}`", self.index), e));
            }
        };
        match targets {
            Some(targets) => actions.extend(targets.iter().map(|t| json!({"remove": {"index": t, "alias": &self.index}}))),
            None => {
                // The first swap of a concrete index: keep it as `<index>_v<old>` (per policy).
                let name = encode_segment(&self.index);
                let settings = json!({"index.blocks.write": true}).to_string().into_bytes();
                if let Err(e) = client::send(&self.client, Method::Put, &format!("/{name}/_settings"), Some(settings)).await {
                    self.restore(before.as_deref()).await;
                    return Err(fail(&format!("blocking writes to `{}`", self.index), e));
                }
                if let Some(old) = live {
                    let old_index = version_index(&self.index, old)?;
                    let body = json!({"settings": {"index.blocks.write": false}}).to_string().into_bytes();
                    let cloned = client::send(&self.client, Method::Post, &format!("/{name}/_clone/{}", encode_segment(&old_index)), Some(body)).await;
                    if let Err(e) = cloned {
                        let unblock = json!({"index.blocks.write": false}).to_string().into_bytes();
                        let _ = client::send(&self.client, Method::Put, &format!("/{name}/_settings"), Some(unblock)).await;
                        self.restore(before.as_deref()).await;
                        return Err(fail(&format!("cloning `{}` into `{old_index}`", self.index), e));
                    }
                    kept = Some(old_index);
                }
                actions.push(json!({"remove_index": {"index": &self.index}}));
            }
        }
        actions.push(json!({"add": {"index": &new_index, "alias": &self.index}}));
        // Searches see what a refresh made visible: the new version whole, before readers get it.
        if let Err(e) = client::send(&self.client, Method::Post, &format!("/{}/_refresh", encode_segment(&new_index)), None).await {
            self.restore(before.as_deref()).await;
            return Err(fail(&format!("refreshing `{new_index}`"), e));
        }
        let body = json!({"actions": actions}).to_string().into_bytes();
        if let Err(e) = client::send(&self.client, Method::Post, "/_aliases", Some(body)).await {
            self.restore(before.as_deref()).await;
            return Err(fail("the _aliases request", e));
        }
        // The record of versions.
        let now = chrono::Utc::now().to_rfc3339();
        let mut versions = self.versions().await?;
        versions.retain(|v| Some(v.version.as_str()) != live && v.version != new);
        if let Some(old) = live {
            let place = kept.clone().unwrap_or(version_index(&self.index, old)?);
            versions.push(VersionRecord { version: old.into(), state: VersionState::Retired, place, sidecar: None, changed_at: now.clone(), detail: None });
        }
        let current = VersionRecord { version: new.into(), state: VersionState::Live, place: new_index, sidecar: None, changed_at: now, detail: None };
        versions.push(current);
        let dropped = mark_past_policy(&mut versions, keep);
        for v in &versions {
            self.record(v).await?;
        }
        Ok(drop_replaced(&self.connector, dropped, async |old| self.discard(&old.version).await).await)
    }
}
