//! What the SQL targets (SQLite, PostgreSQL, and later SQL Server) share: the typed statement
//! model the sidecar sends and its decoding from `Any`.

mod ops;

pub use ops::{SqlOp, SqlValue, decode_sql_op};
