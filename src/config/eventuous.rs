//! Reads the Eventuous Connector's own configuration file (`connector`, `source`, `target`,
//! `grpc` keys, as in Eventuous/connectors' `config-project.yaml` files), so a user switches by
//! pointing the gateway at the file they have. It becomes one of our connectors with the
//! settings an Eventuous sidecar needs (`answers: handled`, `on_timeout: ignore`: Eventuous
//! sidecars do not answer events they have no handler for), and problems are reported with the
//! Eventuous file's own key paths.

use serde_yaml::{Mapping, Value};

use super::load::{ConfigProblem, problem};

/// Whether the document is an Eventuous Connector file rather than ours.
pub(super) fn is_eventuous(root: &Mapping) -> bool {
    root.contains_key("connector") && !root.contains_key("connectors")
}

/// Our document for an Eventuous file, and how our key paths map back to its keys.
pub(super) struct Translated {
    pub document: Value,
    /// (our key path, the Eventuous key path it came from)
    pub origins: Vec<(String, String)>,
}

impl Translated {
    /// The problem with its path in the Eventuous file's terms.
    pub fn relabel(&self, mut problem: ConfigProblem) -> ConfigProblem {
        if let Some((ours, theirs)) = self.origins.iter().find(|(ours, _)| problem.path.starts_with(ours.as_str())) {
            problem.path = format!("{theirs}{}", &problem.path[ours.len()..]);
        }
        problem
    }
}

const SECTIONS: [&str; 5] = ["connector", "source", "target", "grpc", "filter"];

/// Translates an Eventuous Connector file. `None` when it cannot be (the problems say why).
pub(super) fn translate(root: &Mapping, problems: &mut Vec<ConfigProblem>) -> Option<Translated> {
    let before = problems.len();
    for key in root.keys() {
        let name = key.as_str().unwrap_or_default();
        if !SECTIONS.contains(&name) {
            problems.push(problem(name, format!("unknown key in an Eventuous Connector file; expected {}", SECTIONS.join(", "))));
        }
    }
    let connector = section(root, "connector", &["connectorId", "connectorAssembly", "diagnostics"], problems);
    let source = section(root, "source", &["connectionString", "concurrencyLimit"], problems);
    // Older files name the sidecar section `filter`, newer ones `grpc`.
    let grpc_key = if root.contains_key("grpc") || !root.contains_key("filter") { "grpc" } else { "filter" };
    let grpc = section(root, grpc_key, &["uri", "credentials"], problems);
    let target = section(root, "target", &["connectionString", "database", "collection", "connectorMode", "dataStream"], problems);
    let (connector, source, grpc, target) = (connector?, source?, grpc?, target?);

    let id = text(connector, "connector", "connectorId", problems);
    let assembly = text(connector, "connector", "connectorAssembly", problems);
    let events = text(source, "source", "connectionString", problems);
    let uri = text(grpc, grpc_key, "uri", problems);
    let target_url = text(target, "target", "connectionString", problems);
    let address = match (uri, grpc.get("credentials").and_then(Value::as_str)) {
        (Some(uri), Some("insecure") | None) => Some(uri),
        (Some(uri), Some(_)) => Some(uri.replacen("http://", "https://", 1)),
        (None, _) => None,
    };
    let assembly = assembly?;

    let mut origins = vec![
        ("connectors[0].id".to_owned(), "connector.connectorId".to_owned()),
        ("connectors[0].source.kurrentdb.connection_string".to_owned(), "source.connectionString".to_owned()),
        ("connectors[0].partitioning.count".to_owned(), "source.concurrencyLimit".to_owned()),
        ("connectors[0].sidecar.address".to_owned(), format!("{grpc_key}.uri")),
    ];
    let sink = match target_kind(&assembly) {
        Some(TargetKind::Mongo) => {
            for (ours, theirs) in [("url", "connectionString"), ("database", "database"), ("collection", "collection")] {
                origins.push((format!("connectors[0].sink.mongo.{ours}"), format!("target.{theirs}")));
            }
            let mut mongo = Mapping::new();
            mongo.insert("url".into(), target_url.clone().unwrap_or_default().into());
            for (ours, theirs) in [("database", "database"), ("collection", "collection")] {
                match target.get(theirs) {
                    Some(value) => mongo.insert(ours.into(), value.clone()),
                    None => {
                        problems.push(problem(format!("target.{theirs}"), "missing; the MongoDB target needs it"));
                        None
                    }
                };
            }
            single("mongo", Value::Mapping(mongo))
        }
        Some(TargetKind::SqlServer) => {
            problems.push(problem(
                "connector.connectorAssembly",
                format!("`{assembly}`: the SQL Server target is not available in this version of the gateway; use the PostgreSQL or SQLite target, or the Eventuous Connector for SQL Server"),
            ));
            return None;
        }
        Some(TargetKind::Elastic) => {
            problems.push(problem(
                "connector.connectorAssembly",
                format!("`{assembly}`: Eventuous Elasticsearch files are not translated yet; write the connector in the gateway's own format (README, Elasticsearch target)"),
            ));
            return None;
        }
        None => {
            problems.push(problem(
                "connector.connectorAssembly",
                format!("`{assembly}` is not an Eventuous connector this gateway can stand in for; expected Eventuous.Connector.EsdbMongo"),
            ));
            return None;
        }
    };
    if problems.len() > before {
        return None;
    }
    let (id, events, address) = (id?, events?, address?);

    let mut ours = Mapping::new();
    ours.insert("id".into(), id.into());
    ours.insert("source".into(), single("kurrentdb", single("connection_string", events.into())));
    if let Some(limit) = source.get("concurrencyLimit") {
        ours.insert("partitioning".into(), single("count", limit.clone()));
    }
    let mut sidecar = Mapping::new();
    sidecar.insert("address".into(), address.into());
    sidecar.insert("answers".into(), "handled".into());
    sidecar.insert("on_timeout".into(), "ignore".into());
    ours.insert("sidecar".into(), Value::Mapping(sidecar));
    ours.insert("sink".into(), sink);
    let document = single("connectors", Value::Sequence(vec![Value::Mapping(ours)]));
    Some(Translated { document, origins })
}

enum TargetKind {
    Mongo,
    SqlServer,
    Elastic,
}

/// The target an Eventuous connector assembly writes to, e.g. `Eventuous.Connector.EsdbMongo`.
fn target_kind(assembly: &str) -> Option<TargetKind> {
    let name = assembly.rsplit('.').next().unwrap_or_default().to_ascii_lowercase();
    if name.ends_with("mongo") {
        Some(TargetKind::Mongo)
    } else if name.ends_with("sqlserver") {
        Some(TargetKind::SqlServer)
    } else if name.ends_with("elastic") {
        Some(TargetKind::Elastic)
    } else {
        None
    }
}

fn section<'a>(root: &'a Mapping, key: &str, known: &[&str], problems: &mut Vec<ConfigProblem>) -> Option<&'a Mapping> {
    let Some(value) = root.get(key) else {
        problems.push(problem(key, "missing"));
        return None;
    };
    let Some(map) = value.as_mapping() else {
        problems.push(problem(key, "expected a mapping"));
        return None;
    };
    for k in map.keys() {
        let name = k.as_str().unwrap_or_default();
        if !known.contains(&name) {
            problems.push(problem(format!("{key}.{name}"), format!("unknown key; expected one of {}", known.join(", "))));
        }
    }
    Some(map)
}

fn text(map: &Mapping, section: &str, key: &str, problems: &mut Vec<ConfigProblem>) -> Option<String> {
    match map.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::String(_)) => {
            problems.push(problem(format!("{section}.{key}"), "empty"));
            None
        }
        Some(_) => {
            problems.push(problem(format!("{section}.{key}"), "expected text"));
            None
        }
        None => {
            problems.push(problem(format!("{section}.{key}"), "missing"));
            None
        }
    }
}

fn single(key: &str, value: Value) -> Value {
    let mut map = Mapping::new();
    map.insert(key.into(), value);
    Value::Mapping(map)
}

#[cfg(test)]
mod tests {
    use crate::config::{Answers, SinkConfig, SourceConfig, TimeoutPolicy, parse};

    /// Eventuous/connectors' `config-project.yaml` for EsdbMongo, as users have it.
    const ESDB_MONGO: &str = r#"
connector:
  connectorId: "esdb-mongo-connector"
  connectorAssembly: "Eventuous.Connector.EsdbMongo"
  diagnostics:
    tracing:
      enabled: true
      exporters: [zipkin]
    metrics:
      enabled: true
      exporters: [prometheus]
    traceSamplerProbability: 0
source:
  connectionString: "esdb://localhost:2113?tls=false"
  concurrencyLimit: 1
target:
  connectionString: "mongodb://mongoadmin:secret@localhost:27017"
  database: test
  collection: bookings
grpc:
  uri: "http://localhost:9091"
  credentials: "insecure"
"#;

    #[test]
    fn an_eventuous_mongo_file_becomes_a_connector_for_eventuous_sidecars() {
        let config = parse(ESDB_MONGO).expect("valid");
        let c = &config.connectors[0];
        assert_eq!(c.id, "esdb-mongo-connector");
        let SourceConfig::Kurrentdb(source) = &c.source else { panic!("{:?}", c.source) };
        assert_eq!(source.connection_string, "esdb://localhost:2113?tls=false");
        assert_eq!(c.partitioning.count, 1);
        let sidecar = c.sidecar.as_ref().unwrap();
        assert_eq!(sidecar.address, "http://localhost:9091");
        assert_eq!((sidecar.answers, sidecar.on_timeout), (Answers::Handled, TimeoutPolicy::Ignore));
        let SinkConfig::Mongo(mongo) = &c.sink else { panic!("{:?}", c.sink) };
        assert_eq!((mongo.url.as_str(), mongo.database.as_str(), mongo.collection.as_str()), (
            "mongodb://mongoadmin:secret@localhost:27017",
            "test",
            "bookings"
        ));
        // Older files call the sidecar section `filter`.
        let older = ESDB_MONGO.replace("grpc:", "filter:");
        assert_eq!(parse(&older).unwrap().connectors[0].sidecar.as_ref().unwrap().address, "http://localhost:9091");
    }

    #[test]
    fn problems_are_reported_with_the_eventuous_key_paths() {
        let text = ESDB_MONGO
            .replace("esdb://localhost:2113?tls=false", "")
            .replace("  database: test\n", "")
            .replace("concurrencyLimit: 1", "concurrencyLimt: 1");
        let found: Vec<String> = parse(&text).unwrap_err().iter().map(|p| p.to_string()).collect();
        for expected in ["source.connectionString: empty", "source.concurrencyLimt: unknown key", "target.database: missing"] {
            assert!(found.iter().any(|m| m.starts_with(expected)), "{expected} not in {found:#?}");
        }
        let bad_url = ESDB_MONGO.replace("mongodb://mongoadmin", "mongo://mongoadmin");
        let found: Vec<String> = parse(&bad_url).unwrap_err().iter().map(|p| p.to_string()).collect();
        assert!(found.iter().any(|m| m.starts_with("target.connectionString: `mongo://")), "{found:#?}");

        let sql = ESDB_MONGO.replace("EsdbMongo", "EsdbSqlServer");
        let found: Vec<String> = parse(&sql).unwrap_err().iter().map(|p| p.to_string()).collect();
        assert!(found[0].starts_with("connector.connectorAssembly: `Eventuous.Connector.EsdbSqlServer`: the SQL Server target is not available"), "{found:#?}");
    }
}
