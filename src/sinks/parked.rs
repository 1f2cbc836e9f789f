//! Parked events as an operator works with them: what the poison policy `park` recorded in the
//! target (the event, its payload and the reason), listed with a filter and discarded once dealt
//! with. Each sink reads and deletes its own store (`Sink::parked_events`,
//! `Sink::discard_parked`); the CLI (`parked`) and the management API call those.

use serde::Serialize;

/// One parked event, as the target holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParkedEvent {
    /// The store's own id of the record (a row id, a document `_id`): what `discard` takes.
    pub id: String,
    pub partition: u32,
    /// The event's position in the log.
    pub position: u64,
    pub event_id: String,
    pub stream: String,
    pub event_type: String,
    /// The payload as the log held it (JSON, as text), where the target kept it.
    pub payload: Option<String>,
    /// Why it was parked.
    pub error: String,
    /// When it was parked, RFC 3339 in UTC.
    pub parked_at: String,
}

/// Which parked events to list: those every given filter matches (none given: all of them),
/// oldest position first, at most `limit` (0: no limit).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParkedQuery {
    /// Exactly this event type.
    pub event_type: Option<String>,
    /// The reason contains this text (case-sensitive).
    pub error_contains: Option<String>,
    /// Parked at or after this instant.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only these record ids (`show`, `discard` of named events).
    pub ids: Vec<String>,
    pub limit: usize,
}

impl ParkedQuery {
    /// The default page size of a listing.
    pub const DEFAULT_LIMIT: usize = 100;

    /// Whether `event` passes the filter (for stores filtered in the gateway, and for tests).
    pub fn matches(&self, event: &ParkedEvent) -> bool {
        self.event_type.as_ref().is_none_or(|t| *t == event.event_type)
            && self.error_contains.as_ref().is_none_or(|s| event.error.contains(s.as_str()))
            && self.since.is_none_or(|since| {
                chrono::DateTime::parse_from_rfc3339(&event.parked_at).is_ok_and(|at| at >= since)
            })
            && (self.ids.is_empty() || self.ids.contains(&event.id))
    }

    /// `since` as the stores compare it: RFC 3339 in UTC with milliseconds, as they write it.
    pub fn since_text(&self) -> Option<String> {
        self.since.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(id: &str, event_type: &str, error: &str, parked_at: &str) -> ParkedEvent {
        ParkedEvent {
            id: id.into(),
            partition: 0,
            position: 1,
            event_id: "e".into(),
            stream: "s".into(),
            event_type: event_type.into(),
            payload: None,
            error: error.into(),
            parked_at: parked_at.into(),
        }
    }

    #[test]
    fn a_query_matches_by_type_reason_time_and_id() {
        let event = parked("7", "RoomBooked", "duplicate key value", "2026-12-07T10:00:00.000Z");
        assert!(ParkedQuery::default().matches(&event));
        assert!(ParkedQuery { event_type: Some("RoomBooked".into()), ..Default::default() }.matches(&event));
        assert!(!ParkedQuery { event_type: Some("Other".into()), ..Default::default() }.matches(&event));
        assert!(ParkedQuery { error_contains: Some("duplicate".into()), ..Default::default() }.matches(&event));
        assert!(!ParkedQuery { error_contains: Some("timeout".into()), ..Default::default() }.matches(&event));
        let at = |s: &str| Some(chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc());
        assert!(ParkedQuery { since: at("2026-12-07T09:59:59Z"), ..Default::default() }.matches(&event));
        assert!(!ParkedQuery { since: at("2026-12-07T10:00:01Z"), ..Default::default() }.matches(&event));
        assert!(ParkedQuery { ids: vec!["7".into()], ..Default::default() }.matches(&event));
        assert!(!ParkedQuery { ids: vec!["8".into()], ..Default::default() }.matches(&event));
    }
}
