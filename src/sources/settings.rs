//! Each source's settings (`<source>/config.rs`): its serde config, defaults and checks,
//! compiled whatever features are on, so a configuration naming a source this build leaves
//! out still loads far enough to say which cargo feature builds it; the runtime beside them
//! in the same folder is behind the feature (hence the paths).

#[path = "kurrentdb/config.rs"]
pub mod kurrentdb;
#[path = "postgres/config.rs"]
pub mod postgres;
#[path = "sqlite/config.rs"]
pub mod sqlite;
