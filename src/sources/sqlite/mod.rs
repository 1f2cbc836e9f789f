//! The embedded SQLite event log: the default source, written by `projector-gateway append`,
//! the demo and the tests, read by [`SqliteSource`].

mod head;
mod log;
mod source;

pub use head::SqliteHead;
pub use log::{EventLog, LogError, NewEvent};
pub use source::SqliteSource;
