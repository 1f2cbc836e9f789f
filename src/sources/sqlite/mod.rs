//! The embedded SQLite event log: the default source, written by `projector-gateway append`,
//! the demo and the tests, read by [`SqliteSource`].

mod log;
mod source;

pub use log::{EventLog, LogError, NewEvent};
pub use source::SqliteSource;
