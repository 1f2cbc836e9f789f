//! Reads the Eventuous Connector's own configuration file (`connector`, `source`, `target`,
//! `grpc` keys, as in Eventuous/connectors' `config-project.yaml` files), so a user switches by
//! pointing the gateway at the file they have. It becomes one of our connectors with the
//! settings an Eventuous sidecar needs (`answers: handled`: Eventuous sidecars do not answer
//! events they have no handler for), and problems are reported with the Eventuous file's own
//! key paths.

use serde_yaml::{Mapping, Value};

use super::problem::{ConfigProblem, key_name, problem};

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
        let name = key_name(key);
        if !SECTIONS.contains(&name.as_str()) {
            problems.push(problem(name, format!("unknown key in an Eventuous Connector file; expected {}", SECTIONS.join(", "))));
        }
    }
    let connector = section(root, "connector", &["connectorId", "connectorAssembly", "diagnostics"], problems);
    let source = section(root, "source", &["connectionString", "concurrencyLimit"], problems);
    let target = section(
        root,
        "target",
        &["connectionString", "database", "collection", "connectorMode", "dataStream", "cloudId", "apiKey"],
        problems,
    );
    let (connector, source, target) = (connector?, source?, target?);
    let id = text(connector, "connector", "connectorId", problems);
    let assembly = text(connector, "connector", "connectorAssembly", problems)?;
    let events = text(source, "source", "connectionString", problems);

    let mut origins = vec![
        ("connectors[0].id".to_owned(), "connector.connectorId".to_owned()),
        ("connectors[0].source.kurrentdb.connection_string".to_owned(), "source.connectionString".to_owned()),
        ("connectors[0].partitioning.count".to_owned(), "source.concurrencyLimit".to_owned()),
    ];
    let (sink, sidecar) = match target_kind(&assembly) {
        Some(TargetKind::Mongo) => (mongo_target(target, &mut origins, problems), sidecar(root, false, &mut origins, problems)),
        Some(TargetKind::Elastic) => {
            let (sink, projects) = elastic_target(target, &mut origins, problems)?;
            (sink, if projects { sidecar(root, true, &mut origins, problems) } else { Some(None) })
        }
        Some(TargetKind::SqlServer) => (sql_server_target(target, &mut origins, problems), sidecar(root, false, &mut origins, problems)),
        None => {
            problems.push(problem(
                "connector.connectorAssembly",
                format!("`{assembly}` is not an Eventuous connector this gateway can stand in for; expected Eventuous.Connector.EsdbMongo, EsdbSqlServer or EsdbElastic"),
            ));
            return None;
        }
    };
    if problems.len() > before {
        return None;
    }
    let (id, events, sidecar) = (id?, events?, sidecar?);

    let mut ours = Mapping::new();
    // The Eventuous Connector subscribes with `connectorId` as the subscription id, which is
    // the id of its checkpoint in the target: the first start resumes after it.
    ours.insert("eventuous_checkpoint".into(), single("id", id.clone().into()));
    origins.push(("connectors[0].eventuous_checkpoint".to_owned(), "connector.connectorId".to_owned()));
    ours.insert("id".into(), id.into());
    ours.insert("source".into(), single("kurrentdb", single("connection_string", events.into())));
    if let Some(limit) = source.get("concurrencyLimit") {
        ours.insert("partitioning".into(), single("count", limit.clone()));
    }
    if let Some(sidecar) = sidecar {
        ours.insert("sidecar".into(), sidecar);
    }
    ours.insert("sink".into(), sink);
    let document = single("connectors", Value::Sequence(vec![Value::Mapping(ours)]));
    Some(Translated { document, origins })
}

/// The address of the sidecar an Eventuous connector calls, as our `sidecar` section with the
/// settings Eventuous sidecars need. Older files name the section `filter`, newer ones `grpc`;
/// EsdbElastic has none and always calls `http://localhost:9091` (`optional`).
fn sidecar(root: &Mapping, optional: bool, origins: &mut Vec<(String, String)>, problems: &mut Vec<ConfigProblem>) -> Option<Option<Value>> {
    let key = if root.contains_key("grpc") || !root.contains_key("filter") { "grpc" } else { "filter" };
    let uri = if optional && !root.contains_key(key) {
        Some(ELASTIC_SIDECAR.to_owned())
    } else {
        let grpc = section(root, key, &["uri", "credentials"], problems)?;
        let uri = text(grpc, key, "uri", problems)?;
        // The uri's scheme decides: `https://` is TLS (the sidecar's certificate checked
        // against the Mozilla roots), `http://` plain text. `ssl` with an `http://` uri would
        // be plain text where the file asks for TLS.
        match grpc.get("credentials").and_then(Value::as_str) {
            Some("insecure") | None => Some(uri),
            Some("ssl") if uri.starts_with("https://") => Some(uri),
            Some("ssl") => {
                let tls_uri = uri.replacen("http://", "https://", 1);
                problems.push(problem(
                    format!("{key}.credentials"),
                    format!(
                        "`ssl` with the plain-text uri `{uri}`; write `uri: {tls_uri}` for TLS to the sidecar, or `credentials: insecure`"
                    ),
                ));
                return None;
            }
            Some(other) => {
                problems.push(problem(format!("{key}.credentials"), format!("`{other}` is not a credentials setting; expected `insecure` or `ssl`")));
                return None;
            }
        }
    };
    origins.push(("connectors[0].sidecar.address".to_owned(), format!("{key}.uri")));
    let mut sidecar = Mapping::new();
    sidecar.insert("address".into(), uri?.into());
    // Eventuous sidecars send nothing for events they have no handler for; such silences are
    // settled by later answers and probes, never by a timer (reducer/silence.rs).
    sidecar.insert("answers".into(), "handled".into());
    Some(Some(Value::Mapping(sidecar)))
}

/// The schema of the gateway's own tables in a SQL Server target translated from an
/// EsdbSqlServer file.
const GATEWAY_SQL_SERVER_SCHEMA: &str = "projector_gateway";

/// Where Eventuous.Connector.EsdbElastic calls its sidecar (it has no setting for it).
const ELASTIC_SIDECAR: &str = "http://localhost:9091";

fn mongo_target(target: &Mapping, origins: &mut Vec<(String, String)>, problems: &mut Vec<ConfigProblem>) -> Value {
    for (ours, theirs) in [("url", "connectionString"), ("database", "database"), ("collection", "collection")] {
        origins.push((format!("connectors[0].sink.mongo.{ours}"), format!("target.{theirs}")));
    }
    let mut mongo = Mapping::new();
    mongo.insert("url".into(), text(target, "target", "connectionString", problems).unwrap_or_default().into());
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

/// EsdbSqlServer's target: its connection string, as SQL Server users write it. The sidecar's
/// raw `Execute` statements stay allowed (that is what Eventuous sidecars send). The gateway's
/// tables go in a schema of their own: in `dbo`, its `checkpoints` would be the Connector's
/// `Checkpoints` table (SQL Server compares names without case), which it takes over.
fn sql_server_target(target: &Mapping, origins: &mut Vec<(String, String)>, problems: &mut Vec<ConfigProblem>) -> Value {
    for key in ["database", "collection", "connectorMode", "dataStream", "cloudId", "apiKey"] {
        if target.contains_key(key) {
            problems.push(problem(format!("target.{key}"), "not a setting of the SQL Server target; expected only connectionString"));
        }
    }
    origins.push(("connectors[0].sink.mssql.connection_string".to_owned(), "target.connectionString".to_owned()));
    let url = text(target, "target", "connectionString", problems).unwrap_or_default();
    let mut mssql = Mapping::new();
    mssql.insert("connection_string".into(), url.into());
    mssql.insert("schema".into(), GATEWAY_SQL_SERVER_SCHEMA.into());
    single("mssql", Value::Mapping(mssql))
}

/// EsdbElastic's target: `connectorMode: project` (the sidecar's operations, into
/// `dataStream.indexName` unless they name an index) or `produce` (its default: every event a
/// document of the data stream `dataStream.indexName`, with the template and lifecycle policy
/// the file describes). Returns the sink and whether a sidecar is needed.
fn elastic_target(target: &Mapping, origins: &mut Vec<(String, String)>, problems: &mut Vec<ConfigProblem>) -> Option<(Value, bool)> {
    if target.contains_key("cloudId") {
        problems.push(problem(
            "target.cloudId",
            "Elastic Cloud ids are not supported; use the deployment's Elasticsearch endpoint in `connectionString` (https://...)",
        ));
    }
    let url = text(target, "target", "connectionString", problems);
    let projects = match target.get("connectorMode").map(|m| m.as_str()) {
        None | Some(Some("produce")) => false,
        Some(Some("project")) => true,
        Some(_) => {
            problems.push(problem("target.connectorMode", "expected `project` or `produce`"));
            return None;
        }
    };
    let data_stream = match target.get("dataStream") {
        Some(Value::Mapping(m)) => m,
        Some(_) => {
            problems.push(problem("target.dataStream", "expected a mapping"));
            return None;
        }
        None => {
            problems.push(problem("target.dataStream", "missing; EsdbElastic needs `dataStream.indexName`"));
            return None;
        }
    };
    let index = text(data_stream, "target.dataStream", "indexName", problems)?;
    let mut elastic = Mapping::new();
    elastic.insert("url".into(), url?.into());
    origins.push(("connectors[0].sink.elastic.url".to_owned(), "target.connectionString".to_owned()));
    if let Some(key) = target.get("apiKey") {
        elastic.insert("api_key".into(), key.clone());
        origins.push(("connectors[0].sink.elastic.api_key".to_owned(), "target.apiKey".to_owned()));
    }
    if projects {
        for key in ["template", "lifecycle"] {
            if data_stream.contains_key(key) {
                problems.push(problem(format!("target.dataStream.{key}"), "only used with `connectorMode: produce`; remove it"));
            }
        }
        elastic.insert("index".into(), index.into());
        origins.push(("connectors[0].sink.elastic.index".to_owned(), "target.dataStream.indexName".to_owned()));
    } else {
        elastic.insert("producer".into(), elastic_producer(data_stream, index, problems)?);
        origins.push(("connectors[0].sink.elastic.producer.index".to_owned(), "target.dataStream.indexName".to_owned()));
        origins.push(("connectors[0].sink.elastic.producer".to_owned(), "target.dataStream".to_owned()));
    }
    Some((single("elastic", Value::Mapping(elastic)), projects))
}

/// Our producer settings for EsdbElastic's `dataStream`: the data stream, its template (name,
/// shards, replicas: Eventuous's defaults are 1 and 1) and its lifecycle policy.
fn elastic_producer(data_stream: &Mapping, index: String, problems: &mut Vec<ConfigProblem>) -> Option<Value> {
    let at = "target.dataStream";
    for k in data_stream.keys() {
        let name = key_name(k);
        if !["indexName", "template", "lifecycle"].contains(&name.as_str()) {
            problems.push(problem(format!("{at}.{name}"), "unknown key; expected one of indexName, template, lifecycle"));
        }
    }
    let mut producer = serde_json::json!({"index": index, "data_stream": true});
    let mut settings = serde_json::json!({"index.number_of_shards": 1, "index.number_of_replicas": 1});
    if let Some(template) = data_stream.get("template") {
        let template = mapping(template, &format!("{at}.template"), &["templateName", "numberOfShards", "numberOrReplicas"], problems)?;
        if let Some(name) = text_if_present(template, &format!("{at}.template"), "templateName", problems) {
            producer["template"] = name.into();
        }
        for (theirs, ours) in [("numberOfShards", "index.number_of_shards"), ("numberOrReplicas", "index.number_of_replicas")] {
            if let Some(n) = template.get(theirs) {
                match n.as_u64() {
                    Some(n) => settings[ours] = n.into(),
                    None => problems.push(problem(format!("{at}.template.{theirs}"), "expected a whole number")),
                }
            }
        }
    }
    producer["settings"] = settings;
    if let Some(lifecycle) = data_stream.get("lifecycle") {
        let path = format!("{at}.lifecycle");
        let lifecycle = mapping(lifecycle, &path, &["policyName", "tiers"], problems)?;
        let name = text(lifecycle, &path, "policyName", problems)?;
        let phases = match lifecycle.get("tiers") {
            Some(Value::Sequence(tiers)) => lifecycle_phases(tiers, &format!("{path}.tiers"), problems)?,
            None => serde_json::Map::new(),
            Some(_) => {
                problems.push(problem(format!("{path}.tiers"), "expected a list of tiers"));
                return None;
            }
        };
        producer["lifecycle_policy"] = serde_json::json!({"name": name, "policy": {"phases": phases}});
    }
    serde_json::from_value(producer).ok()
}

/// The ILM phases for Eventuous's tier list, action for action as EsdbElastic creates them.
fn lifecycle_phases(tiers: &[Value], at: &str, problems: &mut Vec<ConfigProblem>) -> Option<serde_json::Map<String, serde_json::Value>> {
    use serde_json::json;
    const KEYS: [&str; 7] = ["tier", "minAge", "rollover", "priority", "forceMerge", "readOnly", "delete"];
    let mut phases = serde_json::Map::new();
    for (i, tier) in tiers.iter().enumerate() {
        let path = format!("{at}[{i}]");
        let tier = mapping(tier, &path, &KEYS, problems)?;
        let name = text(tier, &path, "tier", problems)?;
        if !["hot", "warm", "cold", "frozen", "delete"].contains(&name.as_str()) {
            problems.push(problem(format!("{path}.tier"), format!("`{name}` is not a tier; expected hot, warm, cold, frozen or delete")));
            continue;
        }
        let mut actions = serde_json::Map::new();
        if let Some(rollover) = tier.get("rollover") {
            let rollover = mapping(rollover, &format!("{path}.rollover"), &["maxAge", "maxDocs", "maxSize"], problems)?;
            let mut r = serde_json::Map::new();
            for (theirs, ours) in [("maxAge", "max_age"), ("maxDocs", "max_docs"), ("maxSize", "max_size")] {
                if let Some(v) = rollover.get(theirs) {
                    r.insert(ours.into(), yaml_to_json(v));
                }
            }
            actions.insert("rollover".into(), r.into());
        }
        if tier.get("delete").and_then(Value::as_bool) == Some(true) {
            actions.insert("delete".into(), json!({}));
        }
        if tier.get("readOnly").and_then(Value::as_bool) == Some(true) {
            actions.insert("readonly".into(), json!({}));
        }
        if let Some(priority) = tier.get("priority") {
            actions.insert("set_priority".into(), json!({ "priority": yaml_to_json(priority) }));
        }
        if let Some(merge) = tier.get("forceMerge") {
            let merge = mapping(merge, &format!("{path}.forceMerge"), &["maxNumSegments"], problems)?;
            actions.insert("forcemerge".into(), json!({ "max_num_segments": merge.get("maxNumSegments").map(yaml_to_json) }));
        }
        let mut phase = serde_json::Map::new();
        if let Some(age) = tier.get("minAge") {
            phase.insert("min_age".into(), yaml_to_json(age));
        }
        phase.insert("actions".into(), actions.into());
        phases.insert(name, phase.into());
    }
    Some(phases)
}

fn yaml_to_json(value: &Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

fn mapping<'a>(value: &'a Value, at: &str, known: &[&str], problems: &mut Vec<ConfigProblem>) -> Option<&'a Mapping> {
    let Some(map) = value.as_mapping() else {
        problems.push(problem(at, "expected a mapping"));
        return None;
    };
    for k in map.keys() {
        let name = key_name(k);
        if !known.contains(&name.as_str()) {
            problems.push(problem(format!("{at}.{name}"), format!("unknown key; expected one of {}", known.join(", "))));
        }
    }
    Some(map)
}

fn text_if_present(map: &Mapping, section: &str, key: &str, problems: &mut Vec<ConfigProblem>) -> Option<String> {
    map.contains_key(key).then(|| text(map, section, key, problems)).flatten()
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
    mapping(value, key, known, problems)
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
        assert_eq!(sidecar.address.as_deref(), Some("http://localhost:9091"));
        assert_eq!((sidecar.answers, sidecar.on_timeout), (Answers::Handled, TimeoutPolicy::Retry));
        let SinkConfig::Mongo(mongo) = &c.sink else { panic!("{:?}", c.sink) };
        assert_eq!((mongo.url.as_str(), mongo.database.as_str(), mongo.collection.as_str()), (
            "mongodb://mongoadmin:secret@localhost:27017",
            "test",
            "bookings"
        ));
        // Older files call the sidecar section `filter`.
        let older = ESDB_MONGO.replace("grpc:", "filter:");
        assert_eq!(parse(&older).unwrap().connectors[0].sidecar.as_ref().unwrap().address.as_deref(), Some("http://localhost:9091"));
    }

    #[test]
    fn an_https_uri_is_tls_and_ssl_credentials_need_one() {
        let https = ESDB_MONGO.replace("http://localhost:9091", "https://reducer.internal:9091");
        for file in [https.clone(), https.replace("credentials: \"insecure\"", "credentials: ssl")] {
            let sidecar = parse(&file).unwrap().connectors[0].sidecar.clone().unwrap();
            assert_eq!((sidecar.address.as_deref(), sidecar.tls), (Some("https://reducer.internal:9091"), None));
        }
        let messages = |file: &str| parse(file).unwrap_err().iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(messages(&ESDB_MONGO.replace("credentials: \"insecure\"", "credentials: ssl")), [
            "grpc.credentials: `ssl` with the plain-text uri `http://localhost:9091`; write `uri: https://localhost:9091` for TLS to the sidecar, or `credentials: insecure`"
        ]);
        assert_eq!(messages(&ESDB_MONGO.replace("credentials: \"insecure\"", "credentials: tls")), [
            "grpc.credentials: `tls` is not a credentials setting; expected `insecure` or `ssl`"
        ]);
    }

    /// Eventuous/connectors' EsdbElastic `config-project.yaml`: no sidecar section (the
    /// connector always calls localhost:9091).
    const ESDB_ELASTIC_PROJECT: &str = r#"
connector:
  connectorId: "esdb-elastic-connector"
  connectorAssembly: "Eventuous.Connector.EsdbElastic"
source:
  connectionString: "esdb://localhost:2113?tls=false"
  concurrencyLimit: 1
target:
  connectionString: "http://localhost:9200"
  connectorMode: "project"
  dataStream:
    indexName: "test"
"#;

    /// Eventuous/connectors' EsdbElastic `config-produce.yaml`.
    const ESDB_ELASTIC_PRODUCE: &str = r#"
connector:
  connectorId: "esdb-elastic-connector"
  connectorAssembly: "Eventuous.Connector.EsdbElastic"
  diagnostics:
    traceSamplerProbability: 0
source:
  connectionString: "esdb://localhost:2113?tls=false"
  concurrencyLimit: 1
target:
  connectionString: "http://localhost:9200"
  connectorMode: "produce"
  dataStream:
    indexName: "eventlog"
    template:
      templateName: "eventlog-template"
    lifecycle:
      policyName: "eventlog-policy"
      tiers:
        - tier: "hot"
          minAge: "1d"
          priority: 100
          rollover:
            maxAge: "1d"
            maxSize: "100mb"
        - tier: "warm"
          minAge: "1d"
          priority: 50
          forceMerge:
            maxNumSegments: 1
        - tier: "cold"
          minAge: "1d"
          priority: 0
          readOnly: true
"#;

    #[test]
    fn an_eventuous_elastic_project_file_calls_the_sidecar_eventuous_would() {
        let config = parse(ESDB_ELASTIC_PROJECT).expect("valid");
        let c = &config.connectors[0];
        let sidecar = c.sidecar.as_ref().expect("a projector");
        assert_eq!(sidecar.address.as_deref(), Some("http://localhost:9091"));
        assert_eq!((sidecar.answers, sidecar.on_timeout), (Answers::Handled, TimeoutPolicy::Retry));
        let SinkConfig::Elastic(elastic) = &c.sink else { panic!("{:?}", c.sink) };
        assert_eq!((elastic.url.as_str(), elastic.index.as_deref(), elastic.producer.is_none()), ("http://localhost:9200", Some("test"), true));
        // A `grpc` section, when a file has one, is used.
        let with_grpc = format!("{ESDB_ELASTIC_PROJECT}grpc:\n  uri: \"http://reducer:5000\"\n");
        assert_eq!(parse(&with_grpc).unwrap().connectors[0].sidecar.as_ref().unwrap().address.as_deref(), Some("http://reducer:5000"));
    }

    #[test]
    fn an_eventuous_elastic_produce_file_becomes_a_producer_with_its_template_and_lifecycle() {
        let config = parse(ESDB_ELASTIC_PRODUCE).expect("valid");
        let c = &config.connectors[0];
        assert!(c.sidecar.is_none(), "produce mode has no sidecar");
        let SinkConfig::Elastic(elastic) = &c.sink else { panic!("{:?}", c.sink) };
        let producer = elastic.producer.as_ref().expect("producer settings");
        assert_eq!((producer.index.as_str(), producer.data_stream, producer.template.as_deref()), ("eventlog", true, Some("eventlog-template")));
        assert_eq!(serde_json::json!(producer.settings), serde_json::json!({"index.number_of_shards": 1, "index.number_of_replicas": 1}));
        let lifecycle = producer.lifecycle_policy.as_ref().expect("the lifecycle policy");
        assert_eq!(lifecycle.name, "eventlog-policy");
        assert_eq!(
            lifecycle.policy,
            serde_json::json!({"phases": {
                "hot": {"min_age": "1d", "actions": {"rollover": {"max_age": "1d", "max_size": "100mb"}, "set_priority": {"priority": 100}}},
                "warm": {"min_age": "1d", "actions": {"set_priority": {"priority": 50}, "forcemerge": {"max_num_segments": 1}}},
                "cold": {"min_age": "1d", "actions": {"readonly": {}, "set_priority": {"priority": 0}}},
            }})
        );
        // Eventuous's default mode is `produce`.
        let no_mode = ESDB_ELASTIC_PRODUCE.replace("  connectorMode: \"produce\"\n", "");
        assert!(parse(&no_mode).unwrap().connectors[0].sidecar.is_none());
    }

    #[test]
    fn eventuous_elastic_problems_name_the_file_keys() {
        let found = |text: &str| -> Vec<String> { parse(text).unwrap_err().iter().map(|p| p.to_string()).collect() };
        let bad = ESDB_ELASTIC_PRODUCE
            .replace("tier: \"cold\"", "tier: \"tepid\"")
            .replace("templateName:", "templateNaem:")
            .replace("http://localhost:9200", "ftp://localhost:9200");
        let problems = found(&bad);
        for expected in [
            "target.dataStream.lifecycle.tiers[2].tier: `tepid` is not a tier",
            "target.dataStream.template.templateNaem: unknown key",
        ] {
            assert!(problems.iter().any(|m| m.starts_with(expected)), "{expected} not in {problems:#?}");
        }
        let bad_url = found(&ESDB_ELASTIC_PROJECT.replace("http://localhost:9200", "ftp://localhost:9200"));
        assert!(bad_url.iter().any(|m| m.starts_with("target.connectionString: `ftp` is not an http(s) URL")), "{bad_url:#?}");
        let cloud = found(&ESDB_ELASTIC_PROJECT.replace("  connectorMode:", "  cloudId: \"abc\"\n  connectorMode:"));
        assert!(cloud[0].starts_with("target.cloudId: Elastic Cloud ids are not supported"), "{cloud:#?}");
        let mode = found(&ESDB_ELASTIC_PROJECT.replace("\"project\"", "\"mirror\""));
        assert_eq!(mode, ["target.connectorMode: expected `project` or `produce`"]);
        let no_index = found(&ESDB_ELASTIC_PROJECT.replace("    indexName: \"test\"\n", "    {}\n"));
        assert!(no_index.iter().any(|m| m.starts_with("target.dataStream")), "{no_index:#?}");
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
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].starts_with("target.database: not a setting of the SQL Server target"), "{found:#?}");
        let unknown = ESDB_MONGO.replace("EsdbMongo", "EsdbCassandra");
        let found: Vec<String> = parse(&unknown).unwrap_err().iter().map(|p| p.to_string()).collect();
        assert!(found[0].starts_with("connector.connectorAssembly: `Eventuous.Connector.EsdbCassandra` is not an Eventuous connector"), "{found:#?}");
    }

    /// Eventuous/connectors' EsdbSqlServer `config-project.yaml`.
    const ESDB_SQL_SERVER: &str = r#"
connector:
  connectorId: "esdb-sql-connector"
  connectorAssembly: "Eventuous.Connector.EsdbSqlServer"
source:
  connectionString: "esdb://localhost:2113?tls=false"
  concurrencyLimit: 1
target:
  connectionString: "Server=localhost;Database=test;User=sa;Password=Your_password123;Encrypt=True;TrustServerCertificate=True"
grpc:
  uri: "http://localhost:9091"
  credentials: "insecure"
"#;

    #[cfg(feature = "mssql")]
    #[test]
    fn an_eventuous_sql_server_file_becomes_a_sql_server_connector() {
        let config = parse(ESDB_SQL_SERVER).expect("valid");
        let c = &config.connectors[0];
        assert_eq!(c.sidecar.as_ref().unwrap().address.as_deref(), Some("http://localhost:9091"));
        let SinkConfig::Mssql(mssql) = &c.sink else { panic!("{:?}", c.sink) };
        assert_eq!(
            mssql.connection_string,
            "Server=localhost;Database=test;User=sa;Password=Your_password123;Encrypt=True;TrustServerCertificate=True"
        );
        assert!(mssql.allow_raw_sql, "Eventuous sidecars send raw SQL");
        let bad = ESDB_SQL_SERVER.replace("Server=localhost;", "Server=localhost;Bogus;");
        let found: Vec<String> = parse(&bad).unwrap_err().iter().map(|p| p.to_string()).collect();
        assert!(found[0].starts_with("target.connectionString"), "{found:#?}");
    }
}
