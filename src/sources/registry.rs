//! The one list of sources. A line names a source's enum variant and config key, the `cfg`
//! that builds its runtime, its settings type (`<source>/config.rs`, always compiled) and its
//! runtime type. The `source` section of the configuration (`config::SourceConfig`) and the
//! runtime dispatch (`sources::open`, `sources::head::open`) are generated from it, so a new
//! source is its folder, this line, its feature in `Cargo.toml` and its tests.

/// Hands the list to the macro `$then`, after the arguments `$arg`s, which generates code
/// from it.
macro_rules! each_source {
    ($then:ident $(, $arg:tt)*) => {
        $then! {
            $($arg)*;
            Sqlite    "sqlite"    (feature = "sqlite")    crate::sources::settings::sqlite::SqliteSourceConfig       => crate::sources::sqlite::SqliteSource;
            Postgres  "postgres"  (feature = "postgres")  crate::sources::settings::postgres::PostgresSourceConfig   => crate::sources::postgres::PostgresSource;
            Kurrentdb "kurrentdb" (feature = "kurrentdb") crate::sources::settings::kurrentdb::KurrentdbSourceConfig => crate::sources::kurrentdb::KurrentdbSource;
        }
    };
}
pub(crate) use each_source;
