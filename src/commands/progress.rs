//! What `run` prints about how far and how fast its connectors go, and the rate and number
//! formatting `demo` shares with it.
//!
//! Why it exists: `run`'s log says when a connector starts, stops or fails, not where it is;
//! those figures were only on `/metrics` and `/connectors`, with `--listen`. This puts them
//! where the operator looks. On a terminal, a live bar per connector, the way `demo` shows its
//! catch-up, with the log lines printed above the bars (`traces::LogOutput`) so neither garbles
//! the other. Elsewhere (a pod, a pipe, CI), one INFO line per connector every
//! `--progress-interval-secs`, through the log like every other line, so it carries the
//! `connector` field and goes wherever the log goes. `--quiet` turns both off.
//!
//! The figures are read from the registry the operations endpoint reads
//! (`status::Connectors`: each connector's state, its progress channel and the source's
//! head from its probe task), so connectors created later through the management API are
//! shown too, and reading never touches a connector's data path.

use std::{
    collections::{HashMap, VecDeque},
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{HumanCount, MultiProgress, ProgressBar, ProgressStyle};
use projector_gateway::{
    status::{ConnectorState, Connectors, Snapshot},
    traces::LogOutput,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// How often the terminal display is redrawn.
const REDRAW_EVERY: Duration = Duration::from_millis(500);
/// The span the terminal display's rates are measured over (steadier than one redraw's).
const TERMINAL_RATE_SPAN: Duration = Duration::from_secs(5);
/// The widest a connector's id is padded to in the terminal display.
const MAX_ID_WIDTH: usize = 32;

/// How `run` shows progress.
pub enum Display {
    /// `--quiet`.
    Off,
    /// stderr is a terminal: live bars, the log lines above them (`every` is for when lines
    /// replace the bars, see [`Display::sharing_stdout`]).
    Terminal { bars: MultiProgress, every: Duration },
    /// stderr is a file, a pipe or a pod's log: a summary line per connector every `every`.
    Log { every: Duration },
}

impl Display {
    /// The display for this process: off with `quiet`, else bars when stderr is a terminal,
    /// else summary lines every `every`.
    pub fn choose(quiet: bool, every: Duration) -> Self {
        if quiet {
            Self::Off
        } else if std::io::stderr().is_terminal() {
            Self::Terminal { bars: MultiProgress::new(), every }
        } else {
            Self::Log { every }
        }
    }

    /// Where the log lines go so they cooperate with this display.
    pub fn log_output(&self) -> LogOutput {
        match self {
            Self::Terminal { bars, .. } => LogOutput::above(bars.clone()),
            _ => LogOutput::default(),
        }
    }

    pub fn is_on(&self) -> bool {
        !matches!(self, Self::Off)
    }

    /// Lines instead of bars when something of `run` writes to stdout (a console sink's
    /// events) and stdout is a terminal too: the bars would be redrawn over those writes.
    pub fn sharing_stdout(self, writes_stdout: bool) -> Self {
        match self {
            Self::Terminal { every, .. } if writes_stdout && std::io::stdout().is_terminal() => Self::Log { every },
            other => other,
        }
    }

    /// Starts showing the progress of every connector in `connectors`, those registered later
    /// included, until [`Reporter::finish`].
    pub fn start(self, connectors: Connectors) -> Reporter {
        let stop = CancellationToken::new();
        let task = match self {
            Self::Off => None,
            Self::Terminal { bars, .. } => Some(tokio::spawn(report(Bars::new(bars), connectors, REDRAW_EVERY, false, stop.clone()))),
            Self::Log { every } => Some(tokio::spawn(report(Lines::default(), connectors, every, true, stop.clone()))),
        };
        Reporter { task, stop }
    }
}

/// The running display.
pub struct Reporter {
    task: Option<JoinHandle<()>>,
    stop: CancellationToken,
}

impl Reporter {
    /// Stops the display after one last report of every connector (where each one ended).
    pub async fn finish(self) {
        self.stop.cancel();
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}

/// A way of showing the connectors at one moment.
trait View: Send + 'static {
    /// Shows `connectors` as they are at `now`; `since` is when the view was last updated (the
    /// counters of a connector first seen now were 0 then).
    fn update(&mut self, connectors: &[Snapshot], now: Instant, since: Instant);
    /// The last update, after the connectors have ended.
    fn finish(self, connectors: &[Snapshot], now: Instant, since: Instant);
}

/// Updates `view` every `every` (at once too, unless `wait_first`) until `stop`.
async fn report(mut view: impl View, connectors: Connectors, every: Duration, wait_first: bool, stop: CancellationToken) {
    let mut since = Instant::now();
    let first = tokio::time::Instant::now() + if wait_first { every } else { Duration::ZERO };
    let mut ticks = tokio::time::interval_at(first, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => break,
        }
        let now = Instant::now();
        view.update(&connectors.snapshot(), now, since);
        since = now;
    }
    view.finish(&connectors.snapshot(), Instant::now(), since);
}

/// The summary lines of a display that is not a terminal.
#[derive(Default)]
struct Lines {
    connectors: HashMap<String, Reported>,
}

/// What was said of one connector.
struct Reported {
    window: Window,
    /// The state of the last line, when the connector had ended: an ended connector is
    /// reported once, not every interval.
    ended: Option<&'static str>,
}

impl View for Lines {
    fn update(&mut self, connectors: &[Snapshot], now: Instant, since: Instant) {
        self.report(connectors, now, since, false);
    }

    fn finish(mut self, connectors: &[Snapshot], now: Instant, since: Instant) {
        self.report(connectors, now, since, true);
    }
}

impl Lines {
    /// A line per connector (a connector that has ended: once, not every time); with `last`,
    /// every connector with the totals of its run instead of its rates.
    fn report(&mut self, connectors: &[Snapshot], now: Instant, since: Instant, last: bool) {
        self.connectors.retain(|id, _| connectors.iter().any(|c| c.id() == id));
        for connector in connectors {
            let reported = self
                .connectors
                .entry(connector.id().to_owned())
                .or_insert_with(|| Reported { window: Window::new(Duration::ZERO, since), ended: None });
            let rates = connector.progress().and_then(|p| reported.window.push(Sample { at: now, events: p.events_applied, batches: p.batches }));
            let ended = has_ended(connector.state()).then(|| connector.state().name());
            if !last && ended.is_some() && ended == reported.ended {
                continue;
            }
            reported.ended = ended;
            let figures = if last { Figures::last(connector) } else { Figures::of(connector, rates) };
            info!(connector = %connector.id(), "{}", figures.summary_line());
        }
    }
}

/// The live bars of a terminal display.
struct Bars {
    multi: MultiProgress,
    bars: Vec<Bar>,
}

struct Bar {
    id: String,
    bar: ProgressBar,
    window: Window,
    look: Look,
}

/// Which template a bar is drawn with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// Position and head known: a bar from 0 to the head.
    ToHead,
    /// Position only (a source with no head probe, or before its first answer).
    Position,
    /// Not running: the state only.
    State,
}

impl Look {
    fn style(self) -> ProgressStyle {
        match self {
            Self::ToHead => bar_style("{prefix} [{bar:30}] {pos}/{len} {wide_msg}"),
            Self::Position => bar_style("{prefix} position {pos} {wide_msg}"),
            Self::State => bar_style("{prefix} {wide_msg}"),
        }
    }
}

impl Bars {
    fn new(multi: MultiProgress) -> Self {
        Self { multi, bars: Vec::new() }
    }
}

impl View for Bars {
    fn update(&mut self, connectors: &[Snapshot], now: Instant, since: Instant) {
        let multi = &self.multi;
        self.bars.retain(|b| {
            let kept = connectors.iter().any(|c| c.id() == b.id);
            if !kept {
                b.bar.finish_and_clear();
                multi.remove(&b.bar);
            }
            kept
        });
        let width = connectors.iter().map(|c| c.id().chars().count()).max().unwrap_or(0).min(MAX_ID_WIDTH);
        for connector in connectors {
            let index = match self.bars.iter().position(|b| b.id == connector.id()) {
                Some(index) => index,
                None => {
                    let bar = self.multi.add(ProgressBar::new(0).with_style(Look::State.style()));
                    let window = Window::new(TERMINAL_RATE_SPAN, since);
                    self.bars.push(Bar { id: connector.id().to_owned(), bar, window, look: Look::State });
                    self.bars.len() - 1
                }
            };
            let shown = &mut self.bars[index];
            let rates = connector.progress().and_then(|p| shown.window.push(Sample { at: now, events: p.events_applied, batches: p.batches }));
            let figures = Figures::of(connector, rates);
            let look = match (figures.position, figures.head) {
                (Some(_), Some(_)) => Look::ToHead,
                (Some(_), None) => Look::Position,
                (None, _) => Look::State,
            };
            if shown.look != look {
                shown.bar.set_style(look.style());
                shown.look = look;
            }
            shown.bar.set_prefix(format!("{:>width$}", connector.id()));
            if let Some(position) = figures.position {
                shown.bar.set_length(figures.head.unwrap_or(position));
                shown.bar.set_position(position);
            }
            shown.bar.set_message(figures.terminal_message());
        }
    }

    /// Clears the bars, then says where each connector ended in the log (where it stays).
    fn finish(self, connectors: &[Snapshot], _: Instant, _: Instant) {
        for shown in &self.bars {
            shown.bar.finish_and_clear();
            self.multi.remove(&shown.bar);
        }
        for connector in connectors {
            info!(connector = %connector.id(), "{}", Figures::last(connector).summary_line());
        }
    }
}

fn has_ended(state: &ConnectorState) -> bool {
    matches!(state, ConnectorState::Stopped | ConnectorState::Disabled | ConnectorState::Failed(_))
}

/// A connector's counters at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    events: u64,
    batches: u64,
}

/// Rates over a span of time.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rates {
    events: f64,
    batches: f64,
    over: Duration,
}

/// The samples a connector's rates are measured over: at least `span` of them (the last two
/// only, with a span of 0).
struct Window {
    span: Duration,
    samples: VecDeque<Sample>,
}

impl Window {
    /// A window whose first sample is zeros at `start` (a connector's counters start at 0).
    fn new(span: Duration, start: Instant) -> Self {
        Self { span, samples: VecDeque::from([Sample { at: start, events: 0, batches: 0 }]) }
    }

    /// Adds `sample` and answers the rates over the window. Counters lower than the last
    /// sample's are those of a restarted connector, counted from 0 at the last sample.
    fn push(&mut self, sample: Sample) -> Option<Rates> {
        let last = *self.samples.back().expect("never empty");
        if sample.events < last.events || sample.batches < last.batches {
            self.samples.clear();
            self.samples.push_back(Sample { at: last.at, events: 0, batches: 0 });
        }
        self.samples.push_back(sample);
        while self.samples.len() > 2 && sample.at.duration_since(self.samples[1].at) >= self.span {
            self.samples.pop_front();
        }
        let first = self.samples.front().expect("never empty");
        let over = sample.at.duration_since(first.at);
        (!over.is_zero()).then(|| Rates {
            events: per_second(sample.events - first.events, over),
            batches: per_second(sample.batches - first.batches, over),
            over,
        })
    }
}

/// What a report says of one connector.
#[derive(Debug, Clone, PartialEq)]
struct Figures {
    /// The committed low watermark, once the connector runs.
    position: Option<u64>,
    /// The source's head at the last probe (never below the position).
    head: Option<u64>,
    /// Events between the position and the head, and the age of the oldest of them.
    lag: Option<(u64, f64)>,
    rates: Option<Rates>,
    /// Instead of rates, in the last report: events and batches committed since the connector
    /// (last) started.
    totals: Option<(u64, u64)>,
    /// The state, with the reason of a standby.
    state: String,
}

impl Figures {
    fn of(connector: &Snapshot, rates: Option<Rates>) -> Self {
        let position = connector.progress().map(|p| p.low_watermark());
        let head = connector.head().zip(position).map(|(head, position)| head.position.max(position));
        let lag = connector.lag_positions().zip(connector.lag_seconds()).map(|(events, seconds)| (events, if events == 0 { 0.0 } else { seconds }));
        let state = match connector.state() {
            ConnectorState::Standby(why) => format!("standby ({why})"),
            other => other.name().to_owned(),
        };
        Self { position, head, lag, rates: rates.filter(|_| position.is_some()), totals: None, state }
    }

    /// The figures of the last report, when `run` ends: totals rather than rates.
    fn last(connector: &Snapshot) -> Self {
        let totals = connector.progress().map(|p| (p.events_applied, p.batches));
        Self { totals, ..Self::of(connector, None) }
    }

    /// `(head 120400, lag 55 events / 0.4 s)`, `(head 120400, caught up)`, or nothing.
    fn head_text(&self) -> Option<String> {
        let head = self.head?;
        Some(match self.lag {
            Some((0, _)) | None => format!("head {head}, caught up"),
            Some((events, seconds)) => format!("head {head}, lag {} events / {}", count(events), seconds_text(seconds)),
        })
    }

    /// `2,345 ev/s`, `3.0 batches/s` (and how long they were measured over, for a line).
    fn rates_text(&self, with_span: bool) -> Option<String> {
        let r = self.rates?;
        let span = if with_span { format!(" over the last {:.0} s", r.over.as_secs_f64()) } else { String::new() };
        Some(format!("{} ev/s{span}, {} batches/s", rate(r.events), rate(r.batches)))
    }

    /// The log line: `progress: position 120345 (head 120400, lag 55 events / 0.4 s), 2,345
    /// ev/s over the last 10 s, 3.0 batches/s, state running`; what is not known is left out.
    fn summary_line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(position) = self.position {
            parts.push(match self.head_text() {
                Some(head) => format!("position {position} ({head})"),
                None => format!("position {position}"),
            });
        }
        parts.extend(self.rates_text(true));
        if let Some((events, batches)) = self.totals {
            parts.push(format!("{} events in {} batches since it started", count(events), count(batches)));
        }
        parts.push(format!("state {}", self.state));
        format!("progress: {}", parts.join(", "))
    }

    /// What a bar shows after its position: rates, lag, state.
    fn terminal_message(&self) -> String {
        let mut parts: Vec<String> = self.rates_text(false).into_iter().collect();
        if self.head.is_some() {
            parts.push(match self.lag {
                Some((0, _)) | None => "caught up".into(),
                Some((events, seconds)) => format!("lag {} events / {}", count(events), seconds_text(seconds)),
            });
        }
        parts.push(self.state.clone());
        parts.join(", ")
    }
}

/// `count` per second over `elapsed` (0 over no time).
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() { 0.0 } else { count as f64 / elapsed.as_secs_f64() }
}

/// A rate for people: thousands separated, one decimal below 10 (`2,345`, `3.5`, `0`).
pub fn rate(per_second: f64) -> String {
    if per_second <= 0.0 {
        "0".into()
    } else if per_second < 10.0 {
        format!("{per_second:.1}")
    } else {
        count(per_second.round() as u64)
    }
}

/// A count with thousands separators (`120,345`).
pub fn count(n: u64) -> String {
    HumanCount(n).to_string()
}

/// A lag in seconds: `0.4 s`, `75 s`, `1 h 02 min`.
fn seconds_text(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else if seconds < 3600.0 {
        format!("{seconds:.0} s")
    } else {
        let minutes = (seconds / 60.0) as u64;
        format!("{} h {:02} min", minutes / 60, minutes % 60)
    }
}

/// A bar drawn from `template` with `=>` as its fill, the style of every bar of the gateway.
pub fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("valid template").progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> Figures {
        Figures {
            position: Some(120_345),
            head: Some(120_400),
            lag: Some((55, 0.42)),
            rates: Some(Rates { events: 2_345.4, batches: 3.04, over: Duration::from_secs(10) }),
            totals: None,
            state: "running".into(),
        }
    }

    #[test]
    fn a_summary_line_says_what_is_known() {
        assert_eq!(
            figures().summary_line(),
            "progress: position 120345 (head 120400, lag 55 events / 0.4 s), 2,345 ev/s over the last 10 s, 3.0 batches/s, state running"
        );
        let caught_up = Figures { lag: Some((0, 0.0)), head: Some(120_345), ..figures() };
        assert!(caught_up.summary_line().starts_with("progress: position 120345 (head 120345, caught up), 2,345 ev/s"), "{}", caught_up.summary_line());
        let no_head = Figures { head: None, lag: None, ..figures() };
        assert_eq!(no_head.summary_line(), "progress: position 120345, 2,345 ev/s over the last 10 s, 3.0 batches/s, state running");
        let starting = Figures { position: None, head: None, lag: None, rates: None, totals: None, state: "starting".into() };
        assert_eq!(starting.summary_line(), "progress: state starting");
        let last = Figures { rates: None, totals: Some((20_000, 281)), state: "stopped".into(), ..figures() };
        assert_eq!(
            last.summary_line(),
            "progress: position 120345 (head 120400, lag 55 events / 0.4 s), 20,000 events in 281 batches since it started, state stopped"
        );
        assert_eq!(figures().terminal_message(), "2,345 ev/s, 3.0 batches/s, lag 55 events / 0.4 s, running");
    }

    #[test]
    fn rates_follow_the_window_and_survive_a_restart() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let sample = |s, events, batches| Sample { at: at(s), events, batches };
        // A span of 0: since the previous sample only.
        let mut window = Window::new(Duration::ZERO, t0);
        assert_eq!(window.push(sample(10, 1_000, 10)), Some(Rates { events: 100.0, batches: 1.0, over: Duration::from_secs(10) }));
        assert_eq!(window.push(sample(20, 1_500, 15)).unwrap().events, 50.0);
        // Counters back to 0 (the connector started again): counted from 0 at the last sample.
        assert_eq!(window.push(sample(30, 200, 2)).unwrap().events, 20.0);
        // A 5 s span over samples every second: the last five seconds.
        let mut window = Window::new(Duration::from_secs(5), t0);
        for s in 1..=10 {
            window.push(sample(s, s * 100, s));
        }
        let rates = window.push(sample(11, 1_600, 11)).unwrap();
        assert_eq!((rates.events, rates.over), (200.0, Duration::from_secs(5)));
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(rate(2_345.4), "2,345");
        assert_eq!(rate(3.04), "3.0");
        assert_eq!(rate(0.0), "0");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(seconds_text(0.42), "0.4 s");
        assert_eq!(seconds_text(75.2), "75 s");
        assert_eq!(seconds_text(3_725.0), "1 h 02 min");
        assert_eq!(per_second(500, Duration::from_millis(250)), 2_000.0);
    }
}
