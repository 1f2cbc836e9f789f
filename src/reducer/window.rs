//! The in-flight window of one partition: events sent and not yet answered, with the
//! read-progress marks between them and the probe sent after a silent stretch (see
//! `silence.rs`), in order. Pure bookkeeping, no I/O, so the matching rules are unit-tested on
//! their own.

use std::{collections::VecDeque, sync::Arc};

use tokio::time::Instant;
use tracing::Span;

use crate::event::{Event, Position};

#[derive(Debug)]
pub(super) enum Pending {
    Event { event: Arc<Event>, span: Span, attempts: u32, sent_at: Instant },
    /// An answered event sent again (`answers: handled`); its answer settles every event
    /// before it, and its operations are discarded.
    Probe { event_id: String, sent_at: Instant },
    ReadUpTo(Position),
}

/// How a response relates to the window.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Match {
    /// Answers the oldest unanswered event, as it must.
    Front,
    /// Answers an event sent after the oldest unanswered one.
    Later,
    /// Answers the probe.
    Probe,
    /// Answers no event in flight.
    Unknown,
}

/// What an answer to a later request settled (`answers: handled`): the events before it,
/// which the sidecar left unanswered, and the highest position among them and the marks.
#[derive(Debug, Default)]
pub(super) struct Settled {
    pub ignored: Vec<(Arc<Event>, Span)>,
    pub up_to: Option<Position>,
}

#[derive(Debug, Default)]
pub(super) struct Window {
    items: VecDeque<Pending>,
    events: usize,
    /// Probes among `items` (0 or 1), so looking for one costs nothing when there is none.
    probes: usize,
    /// `events` as last added to the connector's in-flight gauge.
    reported: usize,
}

impl Window {
    /// Events in flight (marks excluded).
    pub fn events(&self) -> usize {
        self.events
    }

    /// How much the events in flight changed since this was last asked: what the connector's
    /// in-flight gauge is moved by. Asked before an answered event is handed on, so the writer
    /// never sees an answered event still counted as in flight.
    pub fn in_flight_change(&mut self) -> i64 {
        let change = self.events as i64 - self.reported as i64;
        self.reported = self.events;
        change
    }

    /// What this window added to the in-flight gauge and has not taken back (when it is dropped
    /// with events in flight: a stop, an abort).
    pub fn reported(&self) -> i64 {
        self.reported as i64
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
            Pending::Probe { .. } | Pending::ReadUpTo(_) => None,
        })
    }

    /// Which request a response with `event_id` answers: the first one in order with that id.
    pub fn classify(&self, event_id: &str) -> Match {
        let mut first = true;
        for pending in &self.items {
            match pending {
                Pending::ReadUpTo(_) => continue,
                Pending::Event { event, .. } if event.event_id == event_id => {
                    return if first { Match::Front } else { Match::Later };
                }
                Pending::Probe { event_id: probed, .. } if probed == event_id => return Match::Probe,
                Pending::Event { .. } | Pending::Probe { .. } => first = false,
            }
        }
        Match::Unknown
    }

    /// Removes the oldest unanswered event with its trace span (marks before it must have
    /// been taken already; a probe before it is dropped: it has nothing left to settle).
    pub fn pop_front(&mut self) -> Option<(Arc<Event>, Span)> {
        debug_assert!(!matches!(self.items.front(), Some(Pending::ReadUpTo(_))));
        loop {
            match self.items.pop_front()? {
                Pending::Event { event, span, .. } => {
                    self.events -= 1;
                    return Some((event, span));
                }
                Pending::Probe { .. } => self.probes -= 1,
                Pending::ReadUpTo(_) => return None,
            }
        }
    }

    /// `answers: handled`: the request answered with `event_id` (classified `Later` or
    /// `Probe`) proves the sidecar saw every event before it and answered none: removes them
    /// and the marks between them, and the probe itself when it is the one answered.
    pub fn settle_before(&mut self, event_id: &str) -> Settled {
        let mut settled = Settled::default();
        while let Some(pending) = self.items.front() {
            let answered = match pending {
                Pending::Event { event, .. } => event.event_id == event_id,
                Pending::Probe { event_id: probed, .. } => probed == event_id,
                Pending::ReadUpTo(_) => false,
            };
            if answered {
                if matches!(pending, Pending::Probe { .. }) {
                    self.items.pop_front();
                    self.probes -= 1;
                }
                break;
            }
            match self.items.pop_front().expect("front exists") {
                Pending::Event { event, span, .. } => {
                    self.events -= 1;
                    settled.up_to = Some(event.position);
                    settled.ignored.push((event, span));
                }
                Pending::ReadUpTo(position) => settled.up_to = Some(position),
                Pending::Probe { .. } => self.probes -= 1,
            }
        }
        settled
    }

    /// Adds a probe of `event_id` sent at `now`.
    pub fn push_probe(&mut self, event_id: String, now: Instant) {
        self.items.push_back(Pending::Probe { event_id, sent_at: now });
        self.probes += 1;
    }

    /// The probe in flight (its event id and send time), if any.
    pub fn probe(&self) -> Option<(&str, Instant)> {
        if self.probes == 0 {
            return None;
        }
        self.items.iter().find_map(|p| match p {
            Pending::Probe { event_id, sent_at } => Some((event_id.as_str(), *sent_at)),
            _ => None,
        })
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

    /// Every unanswered event with its span, in order, for resending on a new stream; marks
    /// their send time as `now`. A probe is not resent (its answer belonged to the old stream).
    pub fn resend_all(&mut self, now: Instant) -> impl Iterator<Item = (&Arc<Event>, &Span)> {
        if self.probes > 0 {
            self.items.retain(|p| !matches!(p, Pending::Probe { .. }));
            self.probes = 0;
        }
        self.items.iter_mut().filter_map(move |p| match p {
            Pending::Event { event, span, sent_at, .. } => {
                *sent_at = now;
                Some((&*event, &*span))
            }
            Pending::Probe { .. } | Pending::ReadUpTo(_) => None,
        })
    }

    /// Restarts the response clock of every event (used once a stream is established, so the
    /// time spent connecting does not count against the sidecar).
    pub fn restart_clock(&mut self, now: Instant) {
        for p in &mut self.items {
            if let Pending::Event { sent_at, .. } | Pending::Probe { sent_at, .. } = p {
                *sent_at = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, position: Position) -> Arc<Event> {
        Arc::new(Event::sample(id, "T", position))
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

    #[test]
    fn a_probe_answer_settles_the_silent_events_before_it_and_nothing_after() {
        let now = Instant::now();
        let mut w = Window::default();
        w.push_event(event("silent-1", 2), Span::none(), now);
        w.push_read_up_to(3);
        w.push_event(event("silent-2", 4), Span::none(), now);
        w.push_probe("answered-before".into(), now);
        w.push_event(event("after", 6), Span::none(), now);
        assert_eq!(w.probe().map(|(id, _)| id), Some("answered-before"));
        assert_eq!(w.classify("answered-before"), Match::Probe);

        let settled = w.settle_before("answered-before");
        let ignored: Vec<_> = settled.ignored.iter().map(|(e, _)| e.event_id.as_str()).collect();
        assert_eq!((ignored, settled.up_to), (vec!["silent-1", "silent-2"], Some(4)));
        assert!(w.probe().is_none(), "the answered probe is gone");
        assert_eq!((w.events(), w.classify("after")), (1, Match::Front));
    }

    #[test]
    fn a_later_answer_settles_a_stale_probe_and_a_new_stream_drops_it() {
        let now = Instant::now();
        let mut w = Window::default();
        w.push_probe("stale".into(), now);
        w.push_event(event("a", 5), Span::none(), now);
        w.push_event(event("b", 6), Span::none(), now);
        assert_eq!(w.classify("a"), Match::Later, "a probe is a request before it");
        let settled = w.settle_before("a");
        assert!(settled.ignored.is_empty() && settled.up_to.is_none());
        assert_eq!(w.classify("a"), Match::Front);

        w.push_probe("p".into(), now);
        assert_eq!(w.resend_all(now).count(), 2);
        assert!(w.probe().is_none(), "probes are not resent");
        assert_eq!(w.pop_front().unwrap().0.event_id, "a");
    }
}
