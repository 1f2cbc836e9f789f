//! `reset`: moves one connector's checkpoints back to the start of the log or to a position,
//! and says what they were and what they are now.

use std::{path::Path, process::ExitCode};

use projector_gateway::{
    checkpoint::CheckpointRow,
    pipeline::{ResetTo, reset_connector},
};

pub async fn reset(path: &Path, connector: &str, to_position: Option<u64>) -> anyhow::Result<ExitCode> {
    let found = match super::connector_of(path, connector) {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let to = to_position.map_or(ResetTo::Start, ResetTo::Position);
    match reset_connector(found, to).await {
        Ok(outcome) => {
            println!("connector `{connector}`: checkpoints were {}", describe(&outcome.before));
            println!("connector `{connector}`: checkpoints are now {}", describe(&outcome.after));
            match to {
                ResetTo::Start | ResetTo::Position(0) => println!("the next start projects the log from its beginning"),
                ResetTo::Position(p) => println!("the next start projects the events after position {p}"),
            }
            println!(
                "the read model was not cleared: replayed events are applied again (clear it first unless the \
                 reducer's operations are idempotent, or let the sidecar's Describe rebuild it)"
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `none`, or the partition count and the lowest and highest positions.
fn describe(rows: &[CheckpointRow]) -> String {
    if rows.is_empty() {
        return "none".into();
    }
    let mut counts: Vec<u32> = rows.iter().map(|r| r.partition_count).collect();
    counts.sort_unstable();
    counts.dedup();
    counts
        .iter()
        .map(|count| {
            let positions: Vec<u64> = rows.iter().filter(|r| r.partition_count == *count).map(|r| r.position).collect();
            let (low, high) = (positions.iter().min().unwrap(), positions.iter().max().unwrap());
            format!("{} of {count} partition(s) at positions {low}..={high}", positions.len())
        })
        .collect::<Vec<_>>()
        .join("; ")
}
