//! What the definition log records (one change to one connector), what its replay yields, and
//! the fold from one to the other; apart from the storage so every backend (SQLite, PostgreSQL)
//! and a build with neither share them.

use std::collections::HashMap;

tokio::task_local! {
    /// Who makes the change being applied (the name of the management token it came with,
    /// `token` for an unnamed one, `anonymous` without any): the API sets it around each
    /// change, and the definition log records it with every event appended within.
    pub(crate) static CHANGED_BY: String;
}

/// One change to one connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefinitionEvent {
    /// Created through the API with this definition text.
    Created { definition: String },
    /// Its definition replaced through the API (`PUT`) with this text.
    Updated { definition: String },
    Deleted,
    Enabled,
    Disabled,
    /// Checkpoints moved (`start`, `end` resolved to a position, or a position).
    Reset { to: String },
}

#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))] // read only by the stores
impl DefinitionEvent {
    /// The `kind` column, also the change's name in log lines and messages (`created`).
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::Updated { .. } => "updated",
            Self::Deleted => "deleted",
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::Reset { .. } => "reset",
        }
    }

    /// The `body` column: the definition text, or where a reset moved the checkpoints.
    pub(super) fn body(&self) -> Option<&str> {
        match self {
            Self::Created { definition } | Self::Updated { definition } => Some(definition),
            Self::Reset { to } => Some(to),
            _ => None,
        }
    }

    /// The event a stored row holds; `None` for a kind this gateway does not know (the CHECK
    /// of the table admits none, so only a newer gateway could have written it).
    pub(super) fn from_stored(kind: &str, body: Option<String>) -> Option<Self> {
        Some(match kind {
            "created" => Self::Created { definition: body.unwrap_or_default() },
            "updated" => Self::Updated { definition: body.unwrap_or_default() },
            "deleted" => Self::Deleted,
            "enabled" => Self::Enabled,
            "disabled" => Self::Disabled,
            "reset" => Self::Reset { to: body.unwrap_or_default() },
            _ => return None,
        })
    }
}

/// What the log says a gateway should run: the API-created connectors that still exist (in
/// creation order, with their definition text) and every connector an operator left disabled.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub created: Vec<(String, String)>,
    pub disabled: Vec<String>,
    /// The sequence number of the last event replayed (0 for an empty log): a gateway that
    /// follows a shared log applies what comes after it.
    pub through: i64,
}

#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))] // used only by the stores
impl Replayed {
    /// The replay of `events` (sequence number, connector, change), in log order.
    pub(super) fn fold(events: impl IntoIterator<Item = (i64, String, DefinitionEvent)>) -> Self {
        let mut created: Vec<(String, String)> = Vec::new();
        let mut disabled: HashMap<String, bool> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut through = 0;
        for (seq, connector, event) in events {
            through = through.max(seq);
            match event {
                DefinitionEvent::Created { definition } => {
                    created.retain(|(id, _)| *id != connector);
                    created.push((connector.clone(), definition));
                    disabled.remove(&connector);
                }
                DefinitionEvent::Updated { definition: text } => {
                    if let Some((_, definition)) = created.iter_mut().find(|(id, _)| *id == connector) {
                        *definition = text;
                    }
                }
                DefinitionEvent::Deleted => {
                    created.retain(|(id, _)| *id != connector);
                    disabled.remove(&connector);
                }
                DefinitionEvent::Enabled | DefinitionEvent::Disabled => {
                    if !order.contains(&connector) {
                        order.push(connector.clone());
                    }
                    disabled.insert(connector, event == DefinitionEvent::Disabled);
                }
                DefinitionEvent::Reset { .. } => {}
            }
        }
        let disabled = order.into_iter().filter(|id| disabled.get(id).copied().unwrap_or(false)).collect();
        Self { created, disabled, through }
    }
}

/// One event as read back from the log, for a gateway that follows it: what changed, and who
/// wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub seq: i64,
    pub connector: String,
    pub event: DefinitionEvent,
    /// The gateway instance (`--instance-id`) that appended it, where the log records it (the
    /// shared PostgreSQL log does; the SQLite file belongs to one gateway).
    pub instance: Option<String>,
    /// Who made the change (see [`CHANGED_BY`]), when recorded.
    pub by: Option<String>,
}
