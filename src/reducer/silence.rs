//! Settling events a sidecar does not answer (`sidecar.answers: handled`).
//!
//! Eventuous Connector sidecars send nothing for an event they have no handler for. Silence
//! alone proves nothing: a slow or paused sidecar is silent too, and taking silence for
//! "ignored" on a timer once lost answers that came late. So an event counts as ignored only
//! when the sidecar answers a request sent after it on the same stream (answers come back in
//! request order). In the middle of a backlog the next handled event gives that proof at once;
//! at the end of one (a silent tail) no later event may come for a long time, so the
//! partition makes one: a *probe*, an event the sidecar answered before, sent again. Reducers
//! are stateless, so the sidecar answers it again; the answer's operations are discarded, and
//! it settles every silent event before it. A probe that is not answered either means the
//! sidecar is slow or stuck, which the timeout policy handles: never "ignored".
//!
//! [`Answered`] is what a connector's partitions learn together: the latest answered event
//! (probe material for a partition that has had no answer of its own yet), which event types
//! the sidecar answers and which it leaves silent (logged once each). [`Silence`] is one
//! partition's side: its own probe material and when a probe is due, from how fast the sidecar
//! has been answering.

use std::{
    collections::HashSet,
    sync::Arc,
    time::Duration,
};

use parking_lot::Mutex;

use tokio::{sync::watch, time::Instant};
use tracing::{debug, info};

use crate::event::Event;

/// Event types remembered per connector (a bound against a log with unbounded type names).
const MAX_LEARNED_TYPES: usize = 10_000;
/// How often a partition offers its latest answered event to the others.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// Bounds of the quiet time after which a probe is sent.
const MIN_PROBE_DELAY: Duration = Duration::from_millis(5);
const MAX_PROBE_DELAY: Duration = Duration::from_secs(1);
/// The quiet time is this many times the usual wait for the sidecar's next answer.
const PROBE_DELAY_FACTOR: u32 = 4;

/// What the partitions of one connector learn from the sidecar's answers.
pub struct Answered {
    connector: Arc<str>,
    latest: watch::Sender<Option<Arc<Event>>>,
    types: Mutex<LearnedTypes>,
}

#[derive(Default)]
struct LearnedTypes {
    answered: HashSet<String>,
    silent: HashSet<String>,
}

impl Answered {
    pub fn new(connector: Arc<str>) -> Arc<Self> {
        Arc::new(Self { connector, latest: watch::Sender::new(None), types: Mutex::default() })
    }

    /// Whether the sidecar has answered any event of this connector since it started.
    pub fn any(&self) -> bool {
        self.latest.borrow().is_some()
    }

    fn publish(&self, event: &Arc<Event>) {
        self.latest.send_replace(Some(event.clone()));
    }

    /// Learns that the sidecar answers events of `event_type`.
    fn learn_answered(&self, event_type: &str) {
        let mut types = self.types.lock();
        if types.answered.len() < MAX_LEARNED_TYPES && types.answered.insert(event_type.to_owned()) {
            debug!(connector = %self.connector, event_type, "the sidecar answers events of this type");
        }
    }

    /// Learns that the sidecar left an event of `event_type` unanswered; logged once per type.
    fn learn_silent(&self, event: &Event) -> bool {
        let mut types = self.types.lock();
        if types.silent.len() >= MAX_LEARNED_TYPES || types.silent.contains(&event.event_type) {
            return false;
        }
        types.silent.insert(event.event_type.clone());
        let also_answered = if types.answered.contains(&event.event_type) {
            " (it answered other events of this type: its handler decides per event)"
        } else {
            ""
        };
        info!(
            connector = %self.connector,
            event_type = %event.event_type,
            "the sidecar does not answer events of type `{}`{also_answered}: they are ignored, as `sidecar.answers: handled` allows \
             (first at position {}, stream `{}`); further ones are logged at debug level",
            event.event_type, event.position, event.stream
        );
        true
    }
}

/// One partition's view: probe material and when a probe is due.
pub struct Silence {
    shared: Arc<Answered>,
    latest: watch::Receiver<Option<Arc<Event>>>,
    /// The partition's own most recent answered event: the freshest sign of what the sidecar
    /// handles now.
    own: Option<Arc<Event>>,
    /// Event types this partition has already reported (so the shared set is locked once per
    /// type, not once per answer).
    reported_answered: HashSet<String>,
    reported_silent: HashSet<String>,
    published_at: Option<Instant>,
    /// The last time a request was sent or an answer came.
    last_activity: Instant,
    /// Smoothed wait from the last activity to the next answer.
    usual_wait: Duration,
    /// Never wait longer than this before probing (a quarter of the request timeout).
    ceiling: Duration,
}

impl Silence {
    pub fn new(shared: Arc<Answered>, request_timeout: Duration) -> Self {
        let latest = shared.latest.subscribe();
        Self {
            shared,
            latest,
            own: None,
            reported_answered: HashSet::new(),
            reported_silent: HashSet::new(),
            published_at: None,
            last_activity: Instant::now(),
            usual_wait: MIN_PROBE_DELAY,
            ceiling: (request_timeout / 4).clamp(MIN_PROBE_DELAY, MAX_PROBE_DELAY),
        }
    }

    /// A request (event or probe) went out at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// An answer (to anything) came at `now`.
    pub fn answer(&mut self, now: Instant) {
        let wait = now.saturating_duration_since(self.last_activity);
        self.usual_wait = (self.usual_wait * 7 + wait) / 8;
        self.last_activity = now;
    }

    /// `event` was answered without an error: probe material, and its type is one the
    /// sidecar handles.
    pub fn answered(&mut self, event: &Arc<Event>) {
        self.own = Some(event.clone());
        let now = self.last_activity;
        if self.published_at.is_none_or(|at| now.duration_since(at) >= PUBLISH_EVERY) {
            self.shared.publish(event);
            self.published_at = Some(now);
        }
        if !self.reported_answered.contains(&event.event_type) && self.reported_answered.len() < MAX_LEARNED_TYPES {
            self.reported_answered.insert(event.event_type.clone());
            self.shared.learn_answered(&event.event_type);
        }
    }

    /// `event` was settled as ignored: a later request was answered first.
    pub fn ignored(&mut self, event: &Event) {
        let first_here = !self.reported_silent.contains(&event.event_type)
            && self.reported_silent.len() < MAX_LEARNED_TYPES
            && self.reported_silent.insert(event.event_type.clone());
        if !(first_here && self.shared.learn_silent(event)) {
            debug!(event_type = %event.event_type, position = event.position, "not answered: ignored (sidecar.answers: handled)");
        }
    }

    /// The event to probe with: the partition's own latest answered one, else the connector's.
    pub fn probe_material(&self) -> Option<Arc<Event>> {
        self.own.clone().or_else(|| self.latest.borrow().clone())
    }

    /// A probe of `event_id` went unanswered past the timeout: do not use that event again
    /// (the sidecar may have stopped handling its type).
    pub fn distrust(&mut self, event_id: &str) {
        if self.own.as_ref().is_some_and(|e| e.event_id == event_id) {
            self.own = None;
        }
    }

    /// When a probe is due if nothing happens before: a few times the usual wait for an answer
    /// after the last activity, within bounds, and at the latest a quarter of the request
    /// timeout after the oldest unanswered event was sent (`oldest_sent`), so a steady trickle
    /// of silent events cannot put it off until that event times out.
    pub fn probe_due(&self, oldest_sent: Instant) -> Instant {
        let delay = (self.usual_wait * PROBE_DELAY_FACTOR).clamp(MIN_PROBE_DELAY, self.ceiling);
        (self.last_activity + delay).min(oldest_sent + self.ceiling)
    }

    /// Whether there is an event to probe with.
    pub fn has_probe_material(&self) -> bool {
        self.own.is_some() || self.latest.borrow().is_some()
    }

    /// Resolves when another partition offers probe material (for a partition that has none).
    pub async fn material_offered(&mut self) {
        if self.latest.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether the sidecar has answered any event of this connector since it started.
    pub fn sidecar_answered_any(&self) -> bool {
        self.own.is_some() || self.shared.any()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, event_type: &str) -> Arc<Event> {
        Arc::new(Event::sample(id, event_type, 1))
    }

    #[test]
    fn probes_after_a_few_usual_waits_and_shares_material() {
        let shared = Answered::new("c".into());
        let mut first = Silence::new(shared.clone(), Duration::from_secs(30));
        let second = Silence::new(shared.clone(), Duration::from_secs(30));
        assert!(first.probe_material().is_none() && !second.sidecar_answered_any());

        let mut now = Instant::now();
        first.sent(now);
        now += Duration::from_millis(2);
        first.answer(now);
        first.answered(&event("a", "Booked"));
        assert_eq!(second.probe_material().unwrap().event_id, "a", "the first answer is offered to every partition");
        assert!(second.sidecar_answered_any() && second.has_probe_material());
        let due = first.probe_due(now) - now;
        assert!(due >= MIN_PROBE_DELAY && due < Duration::from_millis(50), "{due:?}");

        // A slow sidecar stretches the quiet time, up to a quarter of the timeout (at most 1 s)...
        for _ in 0..50 {
            now += Duration::from_secs(2);
            first.answer(now);
        }
        assert_eq!(first.probe_due(now) - now, MAX_PROBE_DELAY);
        // ...counted from the oldest unanswered event at the latest.
        let oldest = now - Duration::from_millis(900);
        assert_eq!(first.probe_due(oldest), oldest + MAX_PROBE_DELAY);

        first.distrust("a");
        assert_eq!(first.probe_material().unwrap().event_id, "a", "the connector's latest stays as a fallback");
    }
}
