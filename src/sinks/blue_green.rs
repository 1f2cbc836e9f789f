//! What a target does for a blue/green rebuild (`pipeline/blue_green.rs` runs it): name the
//! place where a new version of the read model is built beside the live one, keep the record of
//! the connector's versions (which one is live, which is building, which were replaced), swap a
//! caught-up version in atomically for readers, and drop replaced versions past the policy.
//!
//! Two targets can, each with a module of its own:
//! - SQLite (`sqlite/blue_green.rs`): each version is a file beside the configured `path`
//!   (`<file>.v<version>`); `path` becomes a symbolic link to the live one, and the swap is the
//!   atomic rename of a new link over it.
//! - PostgreSQL (`postgres/blue_green.rs`): each version is a schema (`<read_model_schema>_v<version>`);
//!   the swap renames schemas in one transaction, with the checkpoints and the recorded version.
//!
//! - Elasticsearch / OpenSearch (`elastic/blue_green.rs`): each version is an index
//!   (`<index>_v<version>`); readers query `<index>`, an alias, and the swap is one `_aliases`
//!   request. The versions' rows do not change hands (no transaction): the live version is
//!   recorded, and a sink opened for the connector writes that version's index under its id.
//!
//! - MongoDB (`mongo/blue_green.rs`): each version is a set of collections
//!   (`<collection>_v<version>`), renamed over the live ones one by one (`dropTarget`), after a
//!   transaction that moves the checkpoints and fences the live run.
//!
//! The new version's run keeps its checkpoints, projection version and parked events under a
//! connector id of its own ([`staged_id`]), so it resumes after a crash and never touches the
//! live version's rows; the swap gives them the connector's id.

use crate::config::{ConnectorConfig, OnNewVersion, SinkConfig};

use super::SinkError;

/// Where a version of a connector's read model is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Being built beside the live version.
    Building,
    /// What readers see.
    Live,
    /// Replaced by a swap, still kept (`keep_old_versions`).
    Retired,
    /// Replaced and dropped.
    Dropped,
    /// Its rebuild failed; the live version was left as it was.
    Failed,
}

impl VersionState {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Building => "building",
            VersionState::Live => "live",
            VersionState::Retired => "retired",
            VersionState::Dropped => "dropped",
            VersionState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "building" => VersionState::Building,
            "live" => VersionState::Live,
            "retired" => VersionState::Retired,
            "dropped" => VersionState::Dropped,
            _ => VersionState::Failed,
        }
    }
}

/// One version of a connector's read model, as the target records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VersionRecord {
    pub version: String,
    pub state: VersionState,
    /// The file or schema that holds it.
    pub place: String,
    /// The sidecar address that builds it (a rebuild), so a restarted gateway resumes it there.
    pub sidecar: Option<String>,
    /// When it last changed state (RFC 3339).
    pub changed_at: String,
    /// Why a rebuild failed.
    pub detail: Option<String>,
}

/// The connector id under which version `version` of `connector` keeps its rows while it is
/// built.
pub fn staged_id(connector: &str, version: &str) -> String {
    format!("{connector}@v{version}")
}

/// The version a staged connector id (`<connector>@v<version>`) builds; connector ids cannot
/// hold `@`, so no other id has one.
pub fn staged_version(connector: &str) -> Option<&str> {
    connector.split_once('@').and_then(|(_, v)| v.strip_prefix('v'))
}

/// A version as part of a file or schema name: letters, digits, `_`, `.` and `-` are kept, any
/// other character becomes `_`. Refused when nothing is left or it is too long for a name.
pub fn version_suffix(version: &str) -> Result<String, SinkError> {
    let suffix: String = version.chars().map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '_' }).collect();
    if version.is_empty() || version.len() > 40 {
        return Err(SinkError::config(format!(
            "projection version `{version}` cannot name a version of the read model (1 to 40 characters); report a shorter version in Describe"
        )));
    }
    Ok(suffix)
}

/// The configuration of the run that builds version `version` beside `live`: its sink at the
/// version's place, its rows under [`staged_id`], its sidecar at `sidecar`, no rebuild of its
/// own, no lease.
pub fn staged_config(live: &ConnectorConfig, version: &str, sidecar: &str) -> Result<ConnectorConfig, SinkError> {
    let mut staged = live.clone();
    staged.id = staged_id(&live.id, version);
    staged.lease = None;
    staged.eventuous_checkpoint = None;
    let suffix = version_suffix(version)?;
    match &mut staged.sink {
        SinkConfig::Sqlite(settings) => settings.path = super::sqlite::blue_green::version_path(&settings.path, &suffix),
        #[cfg(feature = "postgres")]
        SinkConfig::Postgres(settings) => {
            let schema = settings.read_model_schema.as_deref().ok_or_else(|| unsupported(&live.sink))?;
            settings.read_model_schema = Some(super::postgres::blue_green::version_schema(schema, &suffix)?);
        }
        // The sink derives the version's index from the staged id (`elastic/blue_green.rs`).
        #[cfg(feature = "mongo")]
        SinkConfig::Mongo(settings) => {
            super::mongo::blue_green::version_collection(&settings.collection, version)?;
        }
        #[cfg(feature = "elastic")]
        SinkConfig::Elastic(settings) if settings.index.is_some() => {
            super::elastic::blue_green::version_index(settings.index.as_deref().unwrap_or_default(), version)?;
        }
        other => return Err(unsupported(other)),
    }
    if let Some(settings) = &mut staged.sidecar {
        settings.address = Some(sidecar.to_string());
        settings.addresses = None;
        settings.on_new_version = Some(OnNewVersion::BlueGreen);
        settings.rebuild_on_new_version = false;
    }
    Ok(staged)
}

fn unsupported(sink: &SinkConfig) -> SinkError {
    match sink {
        SinkConfig::Postgres(_) => SinkError::config(
            "a blue/green rebuild on PostgreSQL needs the read model in a schema of its own: set `sink.postgres.read_model_schema`",
        ),
        SinkConfig::Elastic(_) => SinkError::config(
            "a blue/green rebuild on Elasticsearch versions the read model's index behind an alias: set `sink.elastic.index`",
        ),
        other => SinkError::config(format!(
            "blue/green rebuild is not available for the {} sink yet (sqlite, postgres, elastic and mongo have it; SQL Server and Redis not yet); use `on_new_version: rebuild_in_place`",
            other.key()
        )),
    }
}

/// A connector's target, for the rebuild's bookkeeping and its swap.
pub enum Target {
    #[cfg(feature = "sqlite")]
    Sqlite(super::sqlite::blue_green::Files),
    #[cfg(feature = "postgres")]
    Postgres(Box<super::postgres::blue_green::Schemas>),
    #[cfg(feature = "elastic")]
    Elastic(Box<super::elastic::blue_green::Versions>),
    #[cfg(feature = "mongo")]
    Mongo(Box<super::mongo::blue_green::Collections>),
}

impl Target {
    /// The target of `live` (refused for one that cannot build a version beside the live one).
    pub async fn open(live: &ConnectorConfig) -> Result<Self, SinkError> {
        match &live.sink {
            #[cfg(feature = "sqlite")]
            SinkConfig::Sqlite(settings) => Ok(Target::Sqlite(super::sqlite::blue_green::Files::new(&live.id, &settings.path))),
            #[cfg(feature = "postgres")]
            SinkConfig::Postgres(settings) => {
                let schema = settings.read_model_schema.as_deref().ok_or_else(|| unsupported(&live.sink))?;
                Ok(Target::Postgres(Box::new(super::postgres::blue_green::Schemas::open(&live.id, settings, schema).await?)))
            }
            #[cfg(feature = "mongo")]
            SinkConfig::Mongo(settings) => Ok(Target::Mongo(Box::new(super::mongo::blue_green::Collections::open(&live.id, settings).await?))),
            #[cfg(feature = "elastic")]
            SinkConfig::Elastic(settings) if settings.producer.is_none() && live.sidecar.is_some() => {
                Ok(Target::Elastic(Box::new(super::elastic::blue_green::Versions::open(&live.id, settings).await?)))
            }
            other => Err(unsupported(other)),
        }
    }

    /// The projection version the live read model records, if any.
    pub async fn live_version(&self) -> Result<Option<String>, SinkError> {
        match self {
            #[cfg(feature = "sqlite")]
            Target::Sqlite(files) => files.live_version().await,
            #[cfg(feature = "postgres")]
            Target::Postgres(schemas) => schemas.live_version().await,
            #[cfg(feature = "elastic")]
            Target::Elastic(indices) => indices.live_version().await,
            #[cfg(feature = "mongo")]
            Target::Mongo(collections) => collections.live_version().await,
        }
    }

    /// Every version the target records for the connector, oldest change first.
    pub async fn versions(&self) -> Result<Vec<VersionRecord>, SinkError> {
        match self {
            #[cfg(feature = "sqlite")]
            Target::Sqlite(files) => files.versions().await,
            #[cfg(feature = "postgres")]
            Target::Postgres(schemas) => schemas.versions().await,
            #[cfg(feature = "elastic")]
            Target::Elastic(indices) => indices.versions().await,
            #[cfg(feature = "mongo")]
            Target::Mongo(collections) => collections.versions().await,
        }
    }

    /// Records (inserts or replaces) one version's row.
    pub async fn record(&self, record: &VersionRecord) -> Result<(), SinkError> {
        match self {
            #[cfg(feature = "sqlite")]
            Target::Sqlite(files) => files.record(record).await,
            #[cfg(feature = "postgres")]
            Target::Postgres(schemas) => schemas.record(record).await,
            #[cfg(feature = "elastic")]
            Target::Elastic(indices) => indices.record(record).await,
            #[cfg(feature = "mongo")]
            Target::Mongo(collections) => collections.record(record).await,
        }
    }

    /// Drops what a rebuild of `version` left (its file or schema, its rows): a failed rebuild
    /// started again starts from the beginning of the log.
    pub async fn discard(&self, version: &str) -> Result<(), SinkError> {
        match self {
            #[cfg(feature = "sqlite")]
            Target::Sqlite(files) => files.discard(version).await,
            #[cfg(feature = "postgres")]
            Target::Postgres(schemas) => schemas.discard(version).await,
            #[cfg(feature = "elastic")]
            Target::Elastic(indices) => indices.discard(version).await,
            #[cfg(feature = "mongo")]
            Target::Mongo(collections) => collections.discard(version).await,
        }
    }

    /// Makes version `new` (built under [`staged_id`], stopped) the live one, atomically for
    /// readers; `live` is the version it replaces (`None`: none was recorded). Then drops the
    /// replaced versions past the `keep` newest; returns the versions dropped.
    pub async fn swap(&self, projection: &str, live: Option<&str>, new: &str, keep: u32) -> Result<Vec<String>, SinkError> {
        match self {
            #[cfg(feature = "sqlite")]
            Target::Sqlite(files) => files.swap(projection, live, new, keep).await,
            #[cfg(feature = "postgres")]
            Target::Postgres(schemas) => schemas.swap(projection, live, new, keep).await,
            #[cfg(feature = "elastic")]
            Target::Elastic(indices) => indices.swap(projection, live, new, keep).await,
            #[cfg(feature = "mongo")]
            Target::Mongo(collections) => collections.swap(projection, live, new, keep).await,
        }
    }
}

/// The version a rebuild is building, if one is recorded as building.
pub fn building(versions: &[VersionRecord]) -> Option<&VersionRecord> {
    versions.iter().rev().find(|v| v.state == VersionState::Building)
}

/// Marks the replaced versions of `versions` past the `keep` newest as dropped; returns them
/// (what the swap then drops with [`drop_replaced`]).
pub fn mark_past_policy(versions: &mut [VersionRecord], keep: u32) -> Vec<VersionRecord> {
    let dropped = past_policy(versions, keep);
    for v in versions.iter_mut().filter(|v| dropped.iter().any(|d| d.version == v.version)) {
        v.state = VersionState::Dropped;
    }
    dropped
}

/// After a swap committed: drops each of `dropped` with `drop` (a reader of an old version
/// must not hold the swap up, so this comes after it). A version that cannot be dropped is a
/// warning, not a failure: the swap is done, and the version stays where its record says.
/// Returns the versions dropped.
pub async fn drop_replaced<F: Future<Output = Result<(), SinkError>>>(
    connector: &str,
    dropped: Vec<VersionRecord>,
    mut drop: impl FnMut(VersionRecord) -> F,
) -> Vec<String> {
    let mut gone = Vec::new();
    for old in dropped {
        let (version, place) = (old.version.clone(), old.place.clone());
        match drop(old).await {
            Ok(()) => gone.push(version),
            Err(e) => tracing::warn!(connector = %connector, "cannot drop version {version} ({place}): {e}"),
        }
    }
    gone
}

/// The replaced versions past the `keep` newest, newest first in `versions`' order reversed.
pub fn past_policy(versions: &[VersionRecord], keep: u32) -> Vec<VersionRecord> {
    let mut retired: Vec<&VersionRecord> = versions.iter().filter(|v| v.state == VersionState::Retired).collect();
    retired.sort_by(|a, b| b.changed_at.cmp(&a.changed_at));
    retired.into_iter().skip(keep as usize).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retired(version: &str, at: &str) -> VersionRecord {
        VersionRecord { version: version.into(), state: VersionState::Retired, place: String::new(), sidecar: None, changed_at: at.into(), detail: None }
    }

    #[test]
    fn the_policy_keeps_the_newest_replaced_versions() {
        let versions = [retired("1", "2026-01-01T00:00:00Z"), retired("3", "2026-03-01T00:00:00Z"), retired("2", "2026-02-01T00:00:00Z")];
        let dropped: Vec<String> = past_policy(&versions, 1).into_iter().map(|v| v.version).collect();
        assert_eq!(dropped, ["2", "1"]);
        assert!(past_policy(&versions, 3).is_empty());
    }

    #[test]
    fn a_version_names_a_file_or_schema_only_with_safe_characters() {
        assert_eq!(version_suffix("2.1-beta").unwrap(), "2.1-beta");
        assert_eq!(version_suffix("a b/c").unwrap(), "a_b_c");
        assert!(version_suffix("").is_err());
    }
}
