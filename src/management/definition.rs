//! What the definition log records (one change to one connector) and what its replay yields;
//! apart from the SQLite storage so a build without the `sqlite` feature shares the types.

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

#[cfg_attr(not(feature = "sqlite"), allow(dead_code))] // read only by the SQLite store
impl DefinitionEvent {
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

    pub(super) fn body(&self) -> Option<&str> {
        match self {
            Self::Created { definition } | Self::Updated { definition } => Some(definition),
            Self::Reset { to } => Some(to),
            _ => None,
        }
    }
}

/// What the log says a gateway should run: the API-created connectors that still exist (in
/// creation order, with their definition text) and every connector an operator left disabled.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub created: Vec<(String, String)>,
    pub disabled: Vec<String>,
}
