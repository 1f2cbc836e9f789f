//! Each sink's settings (`<sink>/config.rs`): its serde config, defaults and checks. They are
//! compiled whatever features are on, so a configuration naming a sink this build leaves out
//! still loads far enough to say which cargo feature builds it; the runtime beside them in the
//! same folder is behind the feature (hence the paths).

#[path = "console/config.rs"]
pub mod console;
#[path = "elastic/config.rs"]
pub mod elastic;
#[path = "http/config.rs"]
pub mod http;
#[path = "mongo/config.rs"]
pub mod mongo;
#[path = "mssql/config.rs"]
pub mod mssql;
#[path = "postgres/config.rs"]
pub mod postgres;
#[path = "redis/config.rs"] pub mod redis;
#[path = "sqlite/config.rs"]
pub mod sqlite;
