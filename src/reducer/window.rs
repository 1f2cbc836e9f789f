//! The in-flight window of one partition: events sent and not yet answered, with the
//! read-progress marks between them, in log order. Pure bookkeeping, no I/O, so the matching
//! rules are unit-tested on their own.

use std::{collections::VecDeque, sync::Arc};

use tokio::time::Instant;
use tracing::Span;

use crate::event::{Event, Position};

#[derive(Debug)]
pub(super) enum Pending {
    Event { event: Arc<Event>, span: Span, attempts: u32, sent_at: Instant },
    ReadUpTo(Position),
}

/// How a response relates to the window.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Match {
    /// Answers the oldest unanswered event, as it must.
    Front,
    /// Answers an event sent after the oldest unanswered one.
    Later,
    /// Answers no event in flight.
    Unknown,
}

#[derive(Debug, Default)]
pub(super) struct Window {
    items: VecDeque<Pending>,
    events: usize,
}

impl Window {
    /// Events in flight (marks excluded).
    pub fn events(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds an event sent at `now`, with its trace span.
    pub fn push_event(&mut self, event: Arc<Event>, span: Span, now: Instant) {
        self.items.push_back(Pending::Event { event, span, attempts: 0, sent_at: now });
        self.events += 1;
    }

    /// Adds a read-progress mark; consecutive marks collapse into the latest.
    pub fn push_read_up_to(&mut self, position: Position) {
        if let Some(Pending::ReadUpTo(last)) = self.items.back_mut() {
            *last = position;
        } else {
            self.items.push_back(Pending::ReadUpTo(position));
        }
    }

    /// Removes the marks at the front (nothing unanswered before them) and returns the last.
    pub fn take_released_mark(&mut self) -> Option<Position> {
        let mut released = None;
        while let Some(Pending::ReadUpTo(p)) = self.items.front() {
            released = Some(*p);
            self.items.pop_front();
        }
        released
    }

    /// The oldest unanswered event with its attempt count and send time.
    pub fn front(&self) -> Option<(&Arc<Event>, u32, Instant)> {
        self.items.iter().find_map(|p| match p {
            Pending::Event { event, attempts, sent_at, .. } => Some((event, *attempts, *sent_at)),
            Pending::ReadUpTo(_) => None,
        })
    }

    pub fn classify(&self, event_id: &str) -> Match {
        let mut events = self.items.iter().filter_map(|p| match p {
            Pending::Event { event, .. } => Some(event),
            Pending::ReadUpTo(_) => None,
        });
        match events.next() {
            Some(front) if front.event_id == event_id => Match::Front,
            Some(_) if events.any(|e| e.event_id == event_id) => Match::Later,
            _ => Match::Unknown,
        }
    }

    /// Removes the oldest unanswered event with its trace span (marks before it must have
    /// been taken already).
    pub fn pop_front(&mut self) -> Option<(Arc<Event>, Span)> {
        debug_assert!(!matches!(self.items.front(), Some(Pending::ReadUpTo(_))));
        match self.items.pop_front()? {
            Pending::Event { event, span, .. } => {
                self.events -= 1;
                Some((event, span))
            }
            Pending::ReadUpTo(_) => None,
        }
    }

    /// Counts one more attempt of the oldest event.
    pub fn bump_front_attempts(&mut self) -> u32 {
        for p in &mut self.items {
            if let Pending::Event { attempts, .. } = p {
                *attempts += 1;
                return *attempts;
            }
        }
        0
    }

    /// Every unanswered event with its span, in order, for resending; marks their send time
    /// as `now`.
    pub fn resend_all(&mut self, now: Instant) -> impl Iterator<Item = (&Arc<Event>, &Span)> {
        self.items.iter_mut().filter_map(move |p| match p {
            Pending::Event { event, span, sent_at, .. } => {
                *sent_at = now;
                Some((&*event, &*span))
            }
            Pending::ReadUpTo(_) => None,
        })
    }

    /// Restarts the response clock of every event (used once a stream is established, so the
    /// time spent connecting does not count against the sidecar).
    pub fn restart_clock(&mut self, now: Instant) {
        for p in &mut self.items {
            if let Pending::Event { sent_at, .. } = p {
                *sent_at = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, position: Position) -> Arc<Event> {
        Arc::new(Event {
            position,
            stream: "s".into(),
            revision: 0,
            event_type: "T".into(),
            event_id: id.into(),
            data: "{}".into(),
            metadata: None,
            created: chrono::Utc::now(),
            content_type: crate::event::ContentType::Json,
        })
    }

    #[test]
    fn matches_in_order_and_releases_marks_behind_answered_events() {
        let now = Instant::now();
        let mut w = Window::default();
        w.push_read_up_to(1);
        w.push_event(event("a", 2), Span::none(), now);
        w.push_read_up_to(3);
        w.push_read_up_to(4);
        w.push_event(event("b", 5), Span::none(), now);
        assert_eq!(w.take_released_mark(), Some(1));
        assert_eq!(w.classify("b"), Match::Later);
        assert_eq!(w.classify("zzz"), Match::Unknown);
        assert_eq!(w.classify("a"), Match::Front);
        assert_eq!(w.pop_front().unwrap().0.event_id, "a");
        assert_eq!(w.take_released_mark(), Some(4), "consecutive marks collapse");
        assert_eq!(w.events(), 1);
        assert_eq!(w.resend_all(now).map(|(e, _)| e.event_id.clone()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(w.bump_front_attempts(), 1);
        assert_eq!(w.front().unwrap().1, 1);
    }
}
