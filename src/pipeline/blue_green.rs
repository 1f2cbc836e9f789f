//! Blue/green rebuilds: a new version of a connector's projection is built beside the live read
//! model, from the start of the log, while the live one keeps serving (and, with a sidecar of
//! its own version, keeps committing); once the new one has caught up with the log it is swapped
//! in, atomically for readers, and replaced versions past `keep_old_versions` are dropped.
//! What is "beside" and what the swap is belongs to each target (`sinks/blue_green.rs`: SQLite
//! files behind a link, PostgreSQL schemas renamed in one transaction).
//!
//! A rebuild is started by the `rebuild` command, the management API
//! (`POST /connectors/{id}/rebuild`), or by the connector itself at start when
//! `sidecar.on_new_version: blue_green` and the new version's sidecar reports a version the
//! live read model was not built by, or when the target records a rebuild still building (a
//! gateway restarted mid-rebuild resumes it, at the sidecar address recorded with it).
//!
//! Which sidecar builds which version, and why the versions never mix:
//! - the rebuild runs against `--sidecar` / `sidecar.blue_green.sidecar`, else the connector's
//!   own sidecar; it asks that sidecar's `Describe` for the version, builds it under a
//!   connector id of its own (`<id>@v<version>`, so its checkpoints are its own and a crash
//!   resumes it), and its run pauses if its sidecar later reports another version;
//! - the live run applies operations only while its sidecar reports the version its read model
//!   records (checked with `Describe` at every start); when they differ it pauses (state
//!   `waiting_for_sidecar`, no batch applied) until the sidecar reports it again or a swap made
//!   the read model that version;
//! - the swap itself fences the live run: on PostgreSQL every batch share-locks and checks the
//!   recorded version, which the swap changes first; on SQLite the live run notices that
//!   `path` names another file, and its writes (if any slipped in) went to the old file.
//!   Either way the live run then reopens its sink on the new version.
//!
//! Limit: a sidecar replaced in place by another version *while* the live run streams to it is
//! noticed at the next start, not at once; run the new version at its own address
//! (`blue_green.sidecar`) so the old one keeps serving the live read model until the swap.
//!
//! A rebuild that fails (the new sidecar's error, the database refusing its statements, the
//! swap refused) is recorded as `failed` in the target, with its cause, and said once; the
//! live read model is untouched and its run goes on. The failed version's file or schema stays
//! for inspection until a rebuild of that version starts again.

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
    time::Duration,
};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{ConnectorControl, ConnectorError, ProgressReceiver, RunContext, WithSink, run_with_sink, with_sink};
use crate::{
    config::{ConnectorConfig, SidecarConfig},
    reducer::{self, Described},
    sinks::{
        Sink, SinkError,
        blue_green::{Target, VersionRecord, VersionState, building, staged_config},
    },
    sources,
};

/// What a rebuild is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RebuildRequest {
    /// The new version's sidecar; `None`: the one recorded with a rebuild in progress, else
    /// `sidecar.blue_green.sidecar`, else the connector's own.
    pub sidecar: Option<String>,
    /// Started by the connector itself (`rebuild_beside`): only a read model that records a
    /// version is rebuilt beside; a first start records the version in place.
    pub automatic: bool,
}

/// How a rebuild ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildOutcome {
    /// Version `to` is live; `from` was; `dropped` are the replaced versions removed by policy.
    Swapped { from: Option<String>, to: String, dropped: Vec<String> },
    /// The sidecar reports the version the live read model already has.
    UpToDate { version: String },
    /// The sidecar does not report a projection version (no `Describe`, or an empty version).
    NoVersion,
    /// Stopped before the swap (the rebuild resumes at the next start).
    Stopped,
}

/// What operators see of a rebuild in progress (`/connectors`, the management API).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RebuildReport {
    /// The version being built.
    pub version: String,
    /// The live version it replaces.
    pub replaces: Option<String>,
    /// `building`, `swapping`, `live` (swapped), `failed`, `stopped` (before the swap; resumable).
    pub state: &'static str,
    /// Every event up to this position is in the new version.
    pub position: u64,
    /// The log's head when last asked.
    pub head: u64,
    /// The failure of a failed rebuild.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RebuildReport {
    /// Events of the log not yet in the new version.
    pub fn lag(&self) -> u64 {
        self.head.saturating_sub(self.position)
    }
}

static REPORTS: LazyLock<Mutex<HashMap<String, RebuildReport>>> = LazyLock::new(Default::default);

/// The last rebuild of `connector` this process ran or runs, if any.
pub fn rebuild_report(connector: &str) -> Option<RebuildReport> {
    REPORTS.lock().ok()?.get(connector).cloned()
}

fn report(connector: &str, update: impl FnOnce(&mut RebuildReport)) {
    if let Ok(mut reports) = REPORTS.lock()
        && let Some(report) = reports.get_mut(connector)
    {
        update(report);
    }
}

/// How often the rebuild compares its progress with the log's head.
const CATCH_UP_CHECK: Duration = Duration::from_millis(100);

/// Builds the version the new sidecar reports beside the live read model of `live`, and swaps
/// it in once caught up. Returns when swapped, when there is nothing to build, or when
/// `control` stops it (the rebuild then resumes at the next start). A failure leaves the live
/// read model untouched; its error says so.
pub async fn rebuild(live: ConnectorConfig, request: RebuildRequest, control: ConnectorControl) -> Result<RebuildOutcome, ConnectorError> {
    let connector = live.id.clone();
    let sink_error = |error: SinkError| ConnectorError::Sink { connector: connector.clone(), error };
    let config_error = |message: String| ConnectorError::Config { connector: connector.clone(), message };
    let Some(sidecar) = live.sidecar.clone() else {
        return Err(config_error("a blue/green rebuild needs a sidecar (a producer connector has no projection version)".into()));
    };
    let target = Target::open(&live).await.map_err(sink_error)?;
    let versions = target.versions().await.map_err(sink_error)?;
    let resumed = building(&versions).cloned();
    let address = request
        .sidecar
        .clone()
        .or_else(|| resumed.as_ref().and_then(|r| r.sidecar.clone()))
        .or_else(|| sidecar.blue_green().sidecar)
        .or_else(|| sidecar.addresses().first().map(|a| a.to_string()))
        .ok_or_else(|| config_error("no sidecar address for the new version".into()))?;
    let description = match describe_at(&connector, &sidecar, &address, &control.shutdown).await? {
        Some(description) => description,
        None if control.shutdown.is_cancelled() => return Ok(RebuildOutcome::Stopped),
        None => return Ok(RebuildOutcome::NoVersion),
    };
    let new = description.version.clone();
    let live_version = target.live_version().await.map_err(sink_error)?;
    if live_version.as_deref() == Some(new.as_str()) || (request.automatic && live_version.is_none() && resumed.is_none()) {
        return Ok(RebuildOutcome::UpToDate { version: new });
    }
    // A rebuild of another version left behind (the sidecar moved on), or a failed one of this
    // version: start clean.
    for stale in versions.iter().filter(|v| {
        (v.state == VersionState::Building && v.version != new) || (v.state == VersionState::Failed && v.version == new)
    }) {
        target.discard(&stale.version).await.map_err(sink_error)?;
        if stale.state == VersionState::Building {
            record(&target, &stale.version, VersionState::Failed, &stale.place, None, Some("abandoned: the sidecar reports another version")).await;
        }
    }
    let staged = staged_config(&live, &new, &address).map_err(sink_error)?;
    let place = place_of(&staged);
    let resuming = resumed.as_ref().is_some_and(|r| r.version == new);
    target
        .record(&VersionRecord {
            version: new.clone(),
            state: VersionState::Building,
            place: place.clone(),
            sidecar: Some(address.clone()),
            changed_at: chrono::Utc::now().to_rfc3339(),
            detail: None,
        })
        .await
        .map_err(sink_error)?;
    if let Ok(mut reports) = REPORTS.lock() {
        reports.insert(
            connector.clone(),
            RebuildReport { version: new.clone(), replaces: live_version.clone(), state: "building", position: 0, head: 0, error: None },
        );
    }
    info!(
        connector = %connector,
        "blue/green rebuild: {} version {new} of projection `{}` in {place} with the sidecar at {address}, beside the live read model (version {})",
        if resuming { "resuming" } else { "building" },
        description.projection,
        live_version.as_deref().unwrap_or("none recorded"),
    );
    let built = build(&staged, &live, &control).await;
    let failed = |error: ConnectorError| {
        let detail = error.to_string();
        let place = place.clone();
        let target = &target;
        let new = new.clone();
        let live_version = live_version.clone();
        let connector = connector.clone();
        async move {
            record(target, &new, VersionState::Failed, &place, None, Some(&detail)).await;
            report(&connector, |r| {
                r.state = "failed";
                r.error = Some(detail.clone());
            });
            ConnectorError::Config {
                connector,
                message: format!(
                    "the blue/green rebuild to version {new} failed; the live read model (version {}) is untouched and still served; \
                     {place} is left for inspection: {detail}",
                    live_version.as_deref().unwrap_or("none recorded")
                ),
            }
        }
    };
    match built {
        Ok(true) => {}
        Ok(false) => {
            report(&connector, |r| r.state = "stopped");
            info!(connector = %connector, "blue/green rebuild of version {new} stopped before the swap; the live read model is untouched, and the rebuild resumes where it stopped at the next start or request");
            return Ok(RebuildOutcome::Stopped);
        }
        Err(e) => return Err(failed(e).await),
    }
    report(&connector, |r| r.state = "swapping");
    let keep = sidecar.blue_green().keep_old_versions;
    match target.swap(&description.projection, live_version.as_deref(), &new, keep).await {
        Ok(dropped) => {
            report(&connector, |r| r.state = "live");
            info!(
                connector = %connector,
                "blue/green rebuild: version {new} is live (it replaced version {}); dropped by policy (keep_old_versions: {keep}): {}",
                live_version.as_deref().unwrap_or("none recorded"),
                if dropped.is_empty() { "none".to_string() } else { dropped.join(", ") }
            );
            Ok(RebuildOutcome::Swapped { from: live_version, to: new, dropped })
        }
        Err(error) => Err(failed(sink_error(error)).await),
    }
}

/// Runs the new version's connector until it has caught up with the log, then stops it
/// (drained). `Ok(false)` when `control` stopped it first.
async fn build(staged: &ConnectorConfig, live: &ConnectorConfig, control: &ConnectorControl) -> Result<bool, ConnectorError> {
    let connector = live.id.clone();
    let source_error = |error| ConnectorError::Source { connector: connector.clone(), error };
    let Some(mut probe) = sources::open_head(&live.source).await.map_err(source_error)? else {
        return Err(ConnectorError::Config {
            connector: connector.clone(),
            message: "a blue/green rebuild needs a source whose head the gateway reads (SQLite or PostgreSQL), to know when the new version has caught up".into(),
        });
    };
    let run = control.child();
    let (started_tx, started_rx) = oneshot::channel::<ProgressReceiver>();
    struct Staged {
        control: ConnectorControl,
        started: oneshot::Sender<ProgressReceiver>,
    }
    impl WithSink for Staged {
        type Output = ();
        async fn with<S: Sink>(self, sink: S, config: ConnectorConfig) -> Result<(), ConnectorError> {
            let started = self.started;
            run_with_sink(sink, config, self.control, move |progress| {
                let _ = started.send(progress);
            })
            .await
        }
    }
    let context = RunContext::default();
    let running = with_sink(staged.clone(), &context, Staged { control: run.clone(), started: started_tx });
    tokio::pin!(running);
    let caught_up = async {
        let Ok(progress) = started_rx.await else { return std::future::pending().await };
        loop {
            let position = progress.borrow().low_watermark();
            match probe.head(position).await {
                Ok(head) => {
                    report(&connector, |r| {
                        r.position = position;
                        r.head = head.position;
                    });
                    if position >= head.position {
                        return;
                    }
                }
                Err(e) => warn!(connector = %connector, "blue/green rebuild: cannot read the log's head ({e}); asking again"),
            }
            tokio::time::sleep(CATCH_UP_CHECK).await;
        }
    };
    tokio::select! {
        ended = &mut running => return match ended {
            Ok(()) if control.shutdown.is_cancelled() || control.abort.is_cancelled() => Ok(false),
            Ok(()) => Err(ConnectorError::Config { connector: connector.clone(), message: "the new version's run ended before it caught up".into() }),
            Err(e) => Err(e),
        },
        () = caught_up => {}
    }
    // Caught up: stop reading, apply what was read, then the swap.
    run.shutdown.cancel();
    running.await?;
    Ok(!control.abort.is_cancelled())
}

/// Asks the sidecar at `address` (with the connector's sidecar settings) for its description,
/// waiting while it cannot be reached. `None`: no version, or stopped.
async fn describe_at(
    connector: &str,
    sidecar: &SidecarConfig,
    address: &str,
    stop: &CancellationToken,
) -> Result<Option<crate::proto::DescribeResponse>, ConnectorError> {
    let config_error = |message: String| ConnectorError::Config { connector: connector.to_string(), message };
    let mut settings = sidecar.clone();
    settings.address = Some(address.to_string());
    settings.addresses = None;
    let telemetry = crate::telemetry::for_connector(connector);
    let endpoints = reducer::Endpoints::start(connector, &settings, 1, telemetry)
        .await
        .map_err(|e| config_error(format!("the new version's sidecar {address}: {e}")))?;
    match reducer::describe(endpoints.view(), connector, stop).await {
        Ok(Described::Yes(description)) if !description.version.is_empty() => Ok(Some(description)),
        Ok(_) => Ok(None),
        Err(e) => Err(config_error(format!("the new version's sidecar {address}: {e}"))),
    }
}

/// The file or schema a staged configuration builds in, for messages and the record.
fn place_of(staged: &ConnectorConfig) -> String {
    match &staged.sink {
        crate::config::SinkConfig::Sqlite(settings) => settings.path.display().to_string(),
        crate::config::SinkConfig::Postgres(settings) => format!("schema {}", settings.read_model_schema.as_deref().unwrap_or_default()),
        crate::config::SinkConfig::Mongo(settings) => {
            let version = crate::sinks::blue_green::staged_version(&staged.id).unwrap_or_default();
            format!("collections `<name>_v{version}` (e.g. `{}_v{version}`)", settings.collection)
        }
        #[cfg(feature = "elastic")]
        crate::config::SinkConfig::Elastic(settings) => {
            let version = crate::sinks::elastic::blue_green::staged_version(&staged.id).unwrap_or_default();
            let index = settings.index.as_deref().unwrap_or_default();
            format!("index {}", crate::sinks::elastic::blue_green::version_index(index, version).unwrap_or_else(|_| index.to_string()))
        }
        other => other.key().to_string(),
    }
}

/// Records a version's state, warning (once) when the target refuses: the record is for
/// operators, the outcome is told by the caller anyway.
async fn record(target: &Target, version: &str, state: VersionState, place: &str, sidecar: Option<&str>, detail: Option<&str>) {
    let row = VersionRecord {
        version: version.to_string(),
        state,
        place: place.to_string(),
        sidecar: sidecar.map(str::to_string),
        changed_at: chrono::Utc::now().to_rfc3339(),
        detail: detail.map(str::to_string),
    };
    if let Err(e) = target.record(&row).await {
        warn!("cannot record version {version} as {} in the target: {e}", state.as_str());
    }
}

/// The rebuild a connector with `on_new_version: blue_green` runs beside its live run: one
/// attempt at start (a rebuild in progress, or a new version at the new sidecar). Its failure
/// is logged once; the live run goes on.
pub async fn rebuild_beside(live: ConnectorConfig, control: ConnectorControl) {
    match rebuild(live.clone(), RebuildRequest { sidecar: None, automatic: true }, control).await {
        Ok(RebuildOutcome::Swapped { .. } | RebuildOutcome::UpToDate { .. } | RebuildOutcome::NoVersion | RebuildOutcome::Stopped) => {}
        Err(e) => tracing::error!(connector = %live.id, "{e}"),
    }
}

/// The records of a connector's versions, for the CLI's and the API's status.
pub async fn versions(live: &ConnectorConfig) -> Result<Vec<VersionRecord>, ConnectorError> {
    let target = Target::open(live).await.map_err(|error| ConnectorError::Sink { connector: live.id.clone(), error })?;
    target.versions().await.map_err(|error| ConnectorError::Sink { connector: live.id.clone(), error })
}
