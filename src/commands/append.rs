//! `append` and `generate`: write to the embedded SQLite event log (`append --from`: a
//! JSON-lines file of events, in transactions of 1,000).

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::Path,
    process::ExitCode,
    time::Instant,
};

use anyhow::Context;
use projector_gateway::{
    demo::BookingsGenerator,
    event::Position,
    sources::sqlite::{EventLog, NewEvent},
};
use serde::Deserialize;

pub fn append(
    log: &Path,
    stream: String,
    event_type: String,
    data: String,
    metadata: Option<String>,
    id: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut events = EventLog::open(log).with_context(|| format!("opening event log {}", log.display()))?;
    let event = NewEvent { stream, event_type, data, metadata, event_id: id, created: None };
    let position = events.append(std::slice::from_ref(&event))?[0];
    println!("appended {} to `{}` at position {position}", event.event_type, event.stream);
    Ok(ExitCode::SUCCESS)
}

/// Events appended per transaction by `append --from`.
const FROM_CHUNK: usize = 1_000;

/// One line of `append --from`: an event as `--stream`, `--type`, `--data`, `--metadata` and
/// `--id` give it, with the payload and metadata as JSON objects (not text).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    stream: String,
    #[serde(rename = "type")]
    event_type: String,
    data: serde_json::Value,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    #[serde(default)]
    id: Option<String>,
}

impl Line {
    fn parse(text: &str) -> Result<NewEvent, String> {
        let line: Line = serde_json::from_str(text).map_err(|e| format!("not an event: {e}"))?;
        if line.stream.is_empty() {
            return Err("`stream` is empty".into());
        }
        if line.event_type.is_empty() {
            return Err("`type` is empty".into());
        }
        if !line.data.is_object() {
            return Err("`data` is not a JSON object".into());
        }
        if line.metadata.as_ref().is_some_and(|m| !m.is_object() && !m.is_null()) {
            return Err("`metadata` is not a JSON object".into());
        }
        Ok(NewEvent {
            stream: line.stream,
            event_type: line.event_type,
            data: line.data.to_string(),
            metadata: line.metadata.filter(|m| !m.is_null()).map(|m| m.to_string()),
            event_id: line.id,
            created: None,
        })
    }
}

/// What `append --from` appended so far: committed transactions only.
#[derive(Default)]
struct Appended {
    events: usize,
    /// The last line of the last committed transaction.
    last_line: usize,
    positions: Option<(Position, Position)>,
}

impl Appended {
    fn add(&mut self, positions: &[Position], last_line: usize) {
        if let (Some(first), Some(last)) = (positions.first(), positions.last()) {
            self.positions = Some((self.positions.map_or(*first, |(f, _)| f), *last));
        }
        self.events += positions.len();
        self.last_line = last_line;
    }

    /// What an error message says of what was appended before it.
    fn before_failure(&self) -> String {
        match self.positions {
            None => "nothing was appended".to_string(),
            Some((first, last)) => format!(
                "the {} event(s) of lines 1 to {} were appended (positions {first} to {last}), nothing after line {}",
                self.events, self.last_line, self.last_line
            ),
        }
    }
}

/// `append --from`: every event of a JSON-lines file (`-`: standard input), one transaction
/// per 1,000. A line that is not an event stops it with the line's number; the transactions
/// committed before it stay, nothing after them is appended.
pub fn append_from(log: &Path, from: &Path) -> anyhow::Result<ExitCode> {
    let input: Box<dyn BufRead> = if from == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(BufReader::new(File::open(from).with_context(|| format!("--from {}", from.display()))?))
    };
    let shown = if from == Path::new("-") { "standard input".to_string() } else { from.display().to_string() };
    let mut events = EventLog::open(log).with_context(|| format!("opening event log {}", log.display()))?;
    let started = Instant::now();
    let mut appended = Appended::default();
    let mut chunk: Vec<NewEvent> = Vec::with_capacity(FROM_CHUNK);
    let mut chunk_first_line = 1;
    let mut commit = |chunk: &mut Vec<NewEvent>, first_line: usize, last_line: usize, appended: &mut Appended| -> anyhow::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let positions = events.append(chunk).map_err(|e| {
            anyhow::anyhow!("{shown}: the transaction of lines {first_line} to {last_line} failed: {e}; {}", appended.before_failure())
        })?;
        appended.add(&positions, last_line);
        chunk.clear();
        Ok(())
    };
    let mut number = 0;
    for line in input.lines() {
        number += 1;
        let text = line.map_err(|e| anyhow::anyhow!("{shown}: line {number} cannot be read: {e}; {}", appended.before_failure()))?;
        if text.trim().is_empty() {
            continue;
        }
        let event = Line::parse(&text).map_err(|reason| anyhow::anyhow!("{shown}: line {number}: {reason}; {}", appended.before_failure()))?;
        if chunk.is_empty() {
            chunk_first_line = number;
        }
        chunk.push(event);
        if chunk.len() == FROM_CHUNK {
            commit(&mut chunk, chunk_first_line, number, &mut appended)?;
        }
    }
    commit(&mut chunk, chunk_first_line, number, &mut appended)?;
    let elapsed = started.elapsed();
    match appended.positions {
        None => println!("appended nothing: {shown} holds no event"),
        Some((first, last)) => println!(
            "appended {} event(s) from {shown} to {} at positions {first} to {last} in {:.2}s ({:.0} events/s)",
            appended.events,
            log.display(),
            elapsed.as_secs_f64(),
            appended.events as f64 / elapsed.as_secs_f64().max(1e-9)
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn generate(log: &Path, count: usize, streams: usize, seed: u64) -> anyhow::Result<ExitCode> {
    let mut events = EventLog::open(log).with_context(|| format!("opening event log {}", log.display()))?;
    let written = write_sample_events(&mut events, count, streams, seed, |_| {})?;
    println!("appended {written} sample events to {} (head position {})", log.display(), events.head()?);
    Ok(ExitCode::SUCCESS)
}

/// Appends `count` generated events in transactions of 10,000, reporting progress.
pub fn write_sample_events(
    log: &mut EventLog,
    count: usize,
    streams: usize,
    seed: u64,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<usize> {
    let mut generator = BookingsGenerator::new(seed, streams);
    let mut written = 0;
    while written < count {
        let chunk = generator.take((count - written).min(10_000));
        log.append(&chunk)?;
        written += chunk.len();
        progress(written);
    }
    Ok(written)
}
