//! Decides which events reach the sidecar. An event the filter rejects still moves the
//! checkpoint (it is "deliberately skipped"), so a filtered connector never replays from far
//! behind after a restart.

use std::collections::HashSet;

use regex::Regex;

use crate::{config::FilterConfig, event::Event};

/// A compiled [`FilterConfig`].
#[derive(Debug, Clone)]
pub struct EventFilter {
    include_types: HashSet<String>,
    exclude_types: HashSet<String>,
    include_prefixes: Vec<String>,
    exclude_prefixes: Vec<String>,
    include_regex: Option<Regex>,
    exclude_regex: Option<Regex>,
    include_system: bool,
    /// The declared types and the configured includes have nothing in common.
    reject_all: bool,
}

impl EventFilter {
    /// Compiles the filter; fails only on an invalid regex (which config validation reports
    /// with its key path first).
    pub fn new(config: &FilterConfig) -> Result<Self, regex::Error> {
        Ok(Self {
            include_types: config.include_types.iter().cloned().collect(),
            exclude_types: config.exclude_types.iter().cloned().collect(),
            include_prefixes: config.include_stream_prefixes.clone(),
            exclude_prefixes: config.exclude_stream_prefixes.clone(),
            include_regex: config.include_stream_regex.as_deref().map(Regex::new).transpose()?,
            exclude_regex: config.exclude_stream_regex.as_deref().map(Regex::new).transpose()?,
            include_system: config.include_system,
            reject_all: false,
        })
    }

    /// Narrows the accepted event types to those a sidecar declared it handles.
    pub fn restrict_types(&mut self, types: impl IntoIterator<Item = String>) {
        let declared: HashSet<String> = types.into_iter().collect();
        self.include_types = if self.include_types.is_empty() {
            declared
        } else {
            self.include_types.intersection(&declared).cloned().collect()
        };
        // An empty include list means "everything": nothing in common must mean nothing.
        self.reject_all = self.include_types.is_empty();
    }

    pub fn accepts(&self, event: &Event) -> bool {
        if self.reject_all || (!self.include_system && event.is_system()) {
            return false;
        }
        let stream = event.stream.as_str();
        let included = (self.include_types.is_empty() || self.include_types.contains(&event.event_type))
            && (self.include_prefixes.is_empty()
                || self.include_prefixes.iter().any(|p| stream.starts_with(p.as_str())))
            && self.include_regex.as_ref().is_none_or(|r| r.is_match(stream));
        included
            && !self.exclude_types.contains(&event.event_type)
            && !self.exclude_prefixes.iter().any(|p| stream.starts_with(p.as_str()))
            && !self.exclude_regex.as_ref().is_some_and(|r| r.is_match(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str, event_type: &str) -> Event {
        Event {
            position: 1,
            stream: stream.into(),
            revision: 0,
            event_type: event_type.into(),
            event_id: "id".into(),
            data: "{}".into(),
            metadata: None,
            created: chrono::Utc::now(),
            content_type: crate::event::ContentType::Json,
        }
    }

    #[test]
    fn excludes_system_events_by_default() {
        let filter = EventFilter::new(&FilterConfig::default()).unwrap();
        assert!(filter.accepts(&event("booking-1", "RoomBooked")));
        assert!(!filter.accepts(&event("$stats", "x")));
        assert!(!filter.accepts(&event("booking-1", "$metadata")));
    }

    #[test]
    fn applies_includes_then_excludes() {
        let filter = EventFilter::new(&FilterConfig {
            include_stream_prefixes: vec!["booking-".into()],
            exclude_types: vec!["GuestCheckedOut".into()],
            exclude_stream_regex: Some("^booking-9".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(filter.accepts(&event("booking-1", "RoomBooked")));
        assert!(!filter.accepts(&event("guest-1", "RoomBooked")));
        assert!(!filter.accepts(&event("booking-1", "GuestCheckedOut")));
        assert!(!filter.accepts(&event("booking-95", "RoomBooked")));
    }

    #[test]
    fn restricts_to_declared_types() {
        let mut filter = EventFilter::new(&FilterConfig {
            include_types: vec!["A".into(), "B".into()],
            ..Default::default()
        })
        .unwrap();
        filter.restrict_types(["B".to_string(), "C".to_string()]);
        assert!(!filter.accepts(&event("s", "A")));
        assert!(filter.accepts(&event("s", "B")));
        assert!(!filter.accepts(&event("s", "C")));
        filter.restrict_types(["C".to_string()]);
        assert!(!filter.accepts(&event("s", "B")), "nothing in common accepts nothing");
        assert!(!filter.accepts(&event("s", "C")));
    }
}
