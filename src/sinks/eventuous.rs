//! Reading the checkpoint an Eventuous checkpoint store left in a target
//! ([`Sink::eventuous_checkpoint`](super::Sink::eventuous_checkpoint)): what each target's
//! stored value means, said once for all of them, and the messages when it cannot be read.
//! Where the checkpoint is comes from `config::EventuousCheckpoint`.

use std::fmt;

use super::SinkError;
use crate::{config::EventuousCheckpoint, event::Position};

/// The position a stored value stands for: `None` (null: Eventuous's own stores before a first
/// position) and -1 (the Eventuous Connector's `SqlCheckpointStore`) mean "no position yet";
/// any other negative number is no position any Eventuous store writes.
pub fn position(stored: Option<i64>, checkpoint: &EventuousCheckpoint) -> Result<Option<Position>, SinkError> {
    match stored {
        None | Some(-1) => Ok(None),
        Some(p) if p >= 0 => Ok(Some(p as Position)),
        Some(p) => Err(unexpected(checkpoint, format!("position {p}"))),
    }
}

/// A stored checkpoint that is not what an Eventuous store writes.
pub fn unexpected(checkpoint: &EventuousCheckpoint, found: impl fmt::Display) -> SinkError {
    SinkError::checkpoints(format!(
        "the Eventuous checkpoint `{}` in the {} holds {found}, which no Eventuous checkpoint store writes (a position is a \
         whole number, null or -1); correct it, or remove `eventuous_checkpoint` to start from the beginning of the log",
        checkpoint.id, checkpoint.place
    ))
}

/// A failure to read the checkpoint (the target's own words in `detail`); `transient` when the
/// target's classification says it is an outage.
pub fn unreadable(checkpoint: &EventuousCheckpoint, detail: impl fmt::Display, transient: bool) -> SinkError {
    SinkError::checkpoints(format!("cannot read the Eventuous checkpoint `{}` in the {}: {detail}", checkpoint.id, checkpoint.place))
        .unreachable_if(transient)
}

/// The sink a connector with `eventuous_checkpoint` was given a place it does not keep.
pub fn not_here(checkpoint: &EventuousCheckpoint, sink: &str) -> SinkError {
    SinkError::config(format!("the {sink} target cannot read an Eventuous checkpoint in a {}", checkpoint.place))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EventuousPlace;

    #[test]
    fn null_and_minus_one_mean_no_position_and_other_negatives_are_refused() {
        let checkpoint = EventuousCheckpoint {
            id: "c".into(),
            place: EventuousPlace::Table { database: "SQL Server", schema: Some("dbo".into()), table: "Checkpoints".into() },
        };
        assert_eq!(position(None, &checkpoint).unwrap(), None);
        assert_eq!(position(Some(-1), &checkpoint).unwrap(), None);
        assert_eq!(position(Some(0), &checkpoint).unwrap(), Some(0));
        assert_eq!(position(Some(1234), &checkpoint).unwrap(), Some(1234));
        let message = position(Some(-5), &checkpoint).unwrap_err().to_string();
        assert!(
            message.starts_with("the Eventuous checkpoint `c` in the SQL Server table `dbo.Checkpoints` holds position -5, which"),
            "{message}"
        );
    }
}
