//! The one list of sinks. A line names a sink's enum variant and config key, the `cfg` that
//! builds its runtime, its settings type (`<sink>/config.rs`, always compiled) and its runtime
//! type. The `sink` section of the configuration (`config::SinkConfig`: variants, keys,
//! settings) and the runtime dispatch (`pipeline::with_sink`: open the sink, or say which
//! cargo feature builds it) are generated from it, so a new sink is its folder, this line,
//! its feature in `Cargo.toml` and its tests.

/// Hands the list to the macro `$then`, after the arguments `$arg`s, which generates code
/// from it.
macro_rules! each_sink {
    ($then:ident $(, $arg:tt)*) => {
        $then! {
            $($arg)*;
            Sqlite   "sqlite"   (feature = "sqlite")   crate::sinks::settings::sqlite::SqliteSinkConfig     => crate::sinks::sqlite::SqliteSink;
            Postgres "postgres" (feature = "postgres") crate::sinks::settings::postgres::PostgresSinkConfig => crate::sinks::postgres::PostgresSink;
            Mssql    "mssql"    (feature = "mssql")    crate::sinks::settings::mssql::MssqlSinkConfig       => crate::sinks::mssql::MssqlSink;
            Mongo    "mongo"    (feature = "mongo")    crate::sinks::settings::mongo::MongoSinkConfig       => crate::sinks::mongo::MongoSink;
            Elastic  "elastic"  (feature = "elastic")  crate::sinks::settings::elastic::ElasticSinkConfig   => crate::sinks::elastic::ElasticSink;
            Redis    "redis"    (feature = "redis")    crate::sinks::settings::redis::RedisSinkConfig       => crate::sinks::redis::RedisSink;
            Console  "console"  (all())                crate::sinks::settings::console::ConsoleSinkConfig   => crate::sinks::console::ConsoleSink;
            Http     "http"     (feature = "http")     crate::sinks::settings::http::HttpSinkConfig         => crate::sinks::http::HttpSink;
        }
    };
}
pub(crate) use each_sink;
