//! `append` and `generate`: write to the embedded SQLite event log.

use std::{path::Path, process::ExitCode};

use anyhow::Context;
use projector_gateway::{
    demo::BookingsGenerator,
    sources::sqlite::{EventLog, NewEvent},
};

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
