//! Where the Eventuous Connector keeps its checkpoint in each target, so that a connector
//! replacing it starts where it stopped instead of at the beginning of the log
//! (docs/configuration.md, "Taking over the Eventuous Connector's checkpoint"). Resolved from
//! the configuration alone, so `validate` can say where a connector will look without
//! connecting, and the sinks read what it names.
//!
//! The names and defaults are Eventuous's own (each sink's settings hold its target's,
//! `SinkSettings::eventuous_place`):
//! - MongoDB: `Eventuous.Projections.MongoDB`'s `MongoCheckpointStore`: collection
//!   `checkpoint`, documents `{_id: <id>, Position: <Int64 or null>}`;
//! - SQL Server: the Eventuous Connector's own `SqlCheckpointStore` (EsdbSqlServer):
//!   `Checkpoints (ID VARCHAR(100) PRIMARY KEY, Position BIGINT)`, created without a schema,
//!   so in the login's default schema (`dbo`), -1 for "none";
//! - PostgreSQL: `Eventuous.Postgresql`'s `<schema>.checkpoints (id, position)`, schema
//!   `eventuous`, null for "none";
//! - SQLite: `Eventuous.Sqlite`'s `<schema>_checkpoints (id, position)`: the table
//!   `eventuous_checkpoints`;
//! - Elasticsearch: `Eventuous.ElasticSearch`'s `ElasticCheckpointStore`: index `checkpoint`,
//!   one document per id (`_id`), `{id, position}` as NEST's default serializer camel-cases
//!   `Checkpoint(Id, Position)`.
//!
//! The id is Eventuous's subscription id, which the Eventuous Connector sets to its
//! `connector.connectorId`.

use std::fmt;

use super::{EventuousCheckpointConfig, SinkConfig};

/// An Eventuous checkpoint and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventuousCheckpoint {
    pub id: String,
    pub place: EventuousPlace,
}

/// Where an Eventuous checkpoint store keeps its checkpoints in a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventuousPlace {
    /// A table with `id` and `position` columns (any case), in a schema where the database
    /// has them. `database` names the engine in messages.
    Table { database: &'static str, schema: Option<String>, table: String },
    /// A MongoDB collection of `{_id, Position}` documents.
    Collection(String),
    /// An Elasticsearch index of `{id, position}` documents, `_id` = the checkpoint id.
    Index(String),
}

impl EventuousPlace {
    /// The table as `schema.table` (or `table`), for SQL places.
    pub fn qualified_table(&self) -> Option<String> {
        match self {
            EventuousPlace::Table { schema: Some(schema), table, .. } => Some(format!("{schema}.{table}")),
            EventuousPlace::Table { schema: None, table, .. } => Some(table.clone()),
            _ => None,
        }
    }
}

impl fmt::Display for EventuousPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventuousPlace::Table { database, .. } => {
                write!(f, "{database} table `{}`", self.qualified_table().unwrap_or_default())
            }
            EventuousPlace::Collection(name) => write!(f, "MongoDB collection `{name}`"),
            EventuousPlace::Index(name) => write!(f, "Elasticsearch index `{name}`"),
        }
    }
}

impl fmt::Display for EventuousCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` ({})", self.id, self.place)
    }
}

/// The keys of `eventuous_checkpoint` a sink takes besides `id`, or `None` for a sink where
/// Eventuous keeps no checkpoint.
pub(super) fn keys_for(sink: &SinkConfig) -> Option<&'static [&'static str]> {
    sink.settings().eventuous_keys()
}

/// A configured name, else Eventuous's default.
pub fn named(given: &Option<String>, default: &str) -> String {
    given.clone().unwrap_or_else(|| default.to_string())
}

impl EventuousCheckpointConfig {
    /// Where the checkpoint is in this sink's target: the configured names, else Eventuous's
    /// defaults there (each sink's settings know them). `None` for a sink where Eventuous
    /// keeps no checkpoint (the validator refuses the key there).
    pub fn resolve(&self, sink: &SinkConfig) -> Option<EventuousCheckpoint> {
        let place = sink.settings().eventuous_place(self)?;
        Some(EventuousCheckpoint { id: self.id.clone(), place })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn connector(sink: &str, checkpoint: &str) -> Result<crate::config::ConnectorConfig, Vec<String>> {
        let text = format!(
            "connectors:\n  - id: c\n    source: {{ sqlite: {{ path: e.db }} }}\n    sidecar: {{ address: \"http://127.0.0.1:1\" }}\n    sink: {sink}\n    eventuous_checkpoint: {checkpoint}\n"
        );
        parse(&text).map(|mut c| c.connectors.remove(0)).map_err(|p| p.iter().map(ToString::to_string).collect())
    }

    fn place(sink: &str, checkpoint: &str) -> String {
        let c = connector(sink, checkpoint).expect("valid");
        c.eventuous_checkpoint.unwrap().resolve(&c.sink).unwrap().to_string()
    }

    #[test]
    fn each_target_defaults_to_where_eventuous_keeps_its_checkpoint() {
        let id = "{ id: esdb-connector }";
        assert_eq!(place("{ mongo: { url: \"mongodb://h\", database: d, collection: c } }", id), "`esdb-connector` (MongoDB collection `checkpoint`)");
        let mssql = "{ mssql: { connection_string: \"Server=h;Database=d\", schema: gateway } }";
        assert_eq!(place(mssql, id), "`esdb-connector` (SQL Server table `dbo.Checkpoints`)");
        assert_eq!(place("{ postgres: { url: \"postgres://h/d\" } }", id), "`esdb-connector` (PostgreSQL table `eventuous.checkpoints`)");
        assert_eq!(place("{ sqlite: { path: t.db } }", id), "`esdb-connector` (SQLite table `eventuous_checkpoints`)");
        assert_eq!(place("{ elastic: { url: \"http://h:9200\", index: i } }", id), "`esdb-connector` (Elasticsearch index `checkpoint`)");
        assert_eq!(place(mssql, "{ id: x, schema: eventuous, table: Checkpoints }"), "`x` (SQL Server table `eventuous.Checkpoints`)");
        assert_eq!(place("{ sqlite: { path: t.db } }", "{ id: x, table: ConnectorCheckpoints }"), "`x` (SQLite table `ConnectorCheckpoints`)");
    }

    /// SQL Server and SQLite compare names without case: the Connector's `Checkpoints` table
    /// in the schema of the gateway's own tables would be the gateway's `checkpoints`.
    #[test]
    fn the_eventuous_table_cannot_be_one_of_the_gateways_own() {
        let found = connector("{ mssql: { connection_string: \"Server=h;Database=d\" } }", "{ id: x }").unwrap_err();
        assert_eq!(
            found,
            ["connectors[0].sink.mssql.schema: the gateway keeps its own `checkpoints` table in `dbo`, which is the Eventuous \
              checkpoint table `dbo.Checkpoints` (SQL Server compares names without case); put the gateway's tables in a schema of \
              their own, e.g. `projector_gateway`"]
        );
        let found = connector("{ postgres: { url: \"postgres://h/d\", schema: eventuous } }", "{ id: x }").unwrap_err();
        assert!(found[0].starts_with("connectors[0].sink.postgres.schema: the gateway keeps its own `checkpoints` table in `eventuous`"), "{found:?}");
        let found = connector("{ sqlite: { path: t.db } }", "{ id: x, table: Checkpoints }").unwrap_err();
        assert!(found[0].starts_with("connectors[0].eventuous_checkpoint.table: `Checkpoints` is the gateway's own `checkpoints` table"), "{found:?}");
    }

    #[test]
    fn keys_of_another_target_and_targets_without_a_layout_are_refused() {
        let mongo = "{ mongo: { url: \"mongodb://h\", database: d, collection: c } }";
        let found = connector(mongo, "{ id: x, table: Checkpoints }").unwrap_err();
        assert_eq!(
            found,
            ["connectors[0].eventuous_checkpoint.table: not a setting of the mongo sink's Eventuous checkpoint; it takes `collection`"]
        );
        let found = connector("{ sqlite: { path: t.db } }", "{ id: x, schema: eventuous }").unwrap_err();
        assert!(found[0].starts_with("connectors[0].eventuous_checkpoint.schema: SQLite has no schemas"), "{found:?}");
        let console = "connectors:\n  - id: c\n    source: { sqlite: { path: e.db } }\n    sink: { console: {} }\n    eventuous_checkpoint: { id: x }\n";
        let found: Vec<String> = parse(console).unwrap_err().iter().map(ToString::to_string).collect();
        assert!(
            found[0].starts_with("connectors[0].eventuous_checkpoint: the console sink has no Eventuous checkpoint to take over"),
            "{found:?}"
        );
        let found = connector(mongo, "{ id: \"\" }").unwrap_err();
        assert!(found[0].starts_with("connectors[0].eventuous_checkpoint.id: empty"), "{found:?}");
        let found = connector(mongo, "{ collection: checkpoint }").unwrap_err();
        assert_eq!(found, ["connectors[0].eventuous_checkpoint.id: missing"]);
        let found = connector("{ postgres: { url: \"postgres://h/d\" } }", "{ id: x, table: \"check points\" }").unwrap_err();
        assert!(found[0].starts_with("connectors[0].eventuous_checkpoint.table: `check points` is not a plain SQL identifier"), "{found:?}");
    }

    /// Each Eventuous Connector file takes over the checkpoint its connector stored under its
    /// `connectorId` (Eventuous's subscription id), where that connector's target keeps it.
    #[test]
    fn an_eventuous_connector_file_takes_over_its_checkpoint() {
        let file = |assembly: &str, target: &str| {
            format!(
                "connector:\n  connectorId: \"esdb-{assembly}\"\n  connectorAssembly: \"Eventuous.Connector.Esdb{assembly}\"\nsource:\n  connectionString: \"esdb://localhost:2113?tls=false\"\ntarget:\n{target}grpc:\n  uri: \"http://localhost:9091\"\n"
            )
        };
        let cases = [
            ("Mongo", "  connectionString: \"mongodb://localhost:27017\"\n  database: test\n  collection: bookings\n", "`esdb-Mongo` (MongoDB collection `checkpoint`)"),
            ("SqlServer", "  connectionString: \"Server=localhost;Database=test\"\n", "`esdb-SqlServer` (SQL Server table `dbo.Checkpoints`)"),
            ("Elastic", "  connectionString: \"http://localhost:9200\"\n  connectorMode: project\n  dataStream:\n    indexName: test\n", "`esdb-Elastic` (Elasticsearch index `checkpoint`)"),
        ];
        for (assembly, target, expected) in cases {
            let config = parse(&file(assembly, target)).unwrap_or_else(|p| panic!("{assembly}: {p:#?}"));
            let c = &config.connectors[0];
            let resolved = c.eventuous_checkpoint.as_ref().expect("set by the translation").resolve(&c.sink).unwrap();
            assert_eq!(resolved.to_string(), expected);
        }
    }
}
