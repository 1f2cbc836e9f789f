//! The sidecar's answers as the target's typed operations, decoded by the decoder each sink's
//! `Sink::decode` calls (`decode_sql_op`, `decode_mongo_op`, `decode_elastic_op`,
//! `decode_redis_op`) with the connector's settings, without opening the target: opening one
//! creates the gateway's own tables, indices or keys. Where a sink's `decode` checks more than
//! its decoder, the check is repeated here (Elasticsearch's default index, Redis's reserved
//! keys): keep them in step.

use prost_types::Any;
use serde_json::{Value, json};

use projector_gateway::{
    config::{ConnectorConfig, SinkConfig},
    sinks::{
        DecodeError,
        sql::{SqlOp, SqlValue, decode_sql_op},
    },
};

/// The connector's target, as far as decoding and the dry run need it.
pub enum Target {
    #[cfg(feature = "sqlite")]
    Sqlite(projector_gateway::config::SqliteSinkConfig),
    #[cfg(feature = "postgres")]
    Postgres(projector_gateway::config::PostgresSinkConfig),
    #[cfg(feature = "mssql")]
    Mssql(projector_gateway::config::MssqlSinkConfig),
    #[cfg(feature = "mongo")]
    Mongo,
    #[cfg(feature = "elastic")]
    Elastic { default_index: bool },
    #[cfg(feature = "redis")]
    Redis { prefix: String, reserved: [String; 3] },
}

impl Target {
    /// The target of `connector`, or why a dry run cannot decode for it.
    pub fn of(connector: &ConnectorConfig) -> Result<Self, String> {
        match &connector.sink {
            #[cfg(feature = "sqlite")]
            SinkConfig::Sqlite(c) => Ok(Target::Sqlite(c.clone())),
            #[cfg(feature = "postgres")]
            SinkConfig::Postgres(c) => Ok(Target::Postgres(c.clone())),
            #[cfg(feature = "mssql")]
            SinkConfig::Mssql(c) => Ok(Target::Mssql(c.clone())),
            #[cfg(feature = "mongo")]
            SinkConfig::Mongo(_) => Ok(Target::Mongo),
            #[cfg(feature = "elastic")]
            SinkConfig::Elastic(c) => Ok(Target::Elastic { default_index: c.index.is_some() }),
            #[cfg(feature = "redis")]
            SinkConfig::Redis(c) => {
                // The keys `RedisSink::open` reserves for the gateway (`sinks/redis/mod.rs`).
                let (prefix, id) = (&c.key_prefix, &connector.id);
                let reserved = [format!("{prefix}checkpoints:{id}"), format!("{prefix}parked_events:{id}"), format!("{prefix}projections:{id}")];
                Ok(Target::Redis { prefix: prefix.clone(), reserved })
            }
            SinkConfig::Console(_) | SinkConfig::Http(_) => Err(format!(
                "the {} sink is a producer sink: it records every event as it is and applies no operations of a sidecar",
                connector.sink.key()
            )),
            #[allow(unreachable_patterns)]
            other => Err(format!(
                "the {0} sink is not built into this binary; build it with the cargo feature `{0}`",
                other.key()
            )),
        }
    }

    /// The target in a few words, for the output's header.
    pub fn describe(&self) -> String {
        match self {
            #[cfg(feature = "sqlite")]
            Target::Sqlite(c) => format!("SQLite {}", c.path.display()),
            #[cfg(feature = "postgres")]
            Target::Postgres(c) => format!(
                "PostgreSQL {}",
                projector_gateway::postgres::PgEndpoint::parse(&c.url).map_or_else(|_| "(unparsable URL)".to_string(), |e| e.display().to_string())
            ),
            #[cfg(feature = "mssql")]
            Target::Mssql(_) => "SQL Server".to_string(),
            #[cfg(feature = "mongo")]
            Target::Mongo => "MongoDB".to_string(),
            #[cfg(feature = "elastic")]
            Target::Elastic { .. } => "Elasticsearch/OpenSearch".to_string(),
            #[cfg(feature = "redis")]
            Target::Redis { .. } => "Redis".to_string(),
        }
    }

    /// Decodes one operation as the connector's sink does; `Ok(None)` for `Ignore`.
    pub fn decode(&self, any: &Any) -> Result<Option<Decoded>, DecodeError> {
        match self {
            #[cfg(feature = "sqlite")]
            Target::Sqlite(c) => Ok(decode_sql_op(any, c.allow_raw_sql, "sqlite")?.map(Decoded::Sql)),
            #[cfg(feature = "postgres")]
            Target::Postgres(c) => Ok(decode_sql_op(any, c.allow_raw_sql, "postgres")?.map(Decoded::Sql)),
            #[cfg(feature = "mssql")]
            Target::Mssql(c) => Ok(decode_sql_op(any, c.allow_raw_sql, "mssql")?.map(Decoded::Sql)),
            #[cfg(feature = "mongo")]
            Target::Mongo => Ok(projector_gateway::sinks::mongo::decode_mongo_op(any)?.map(Decoded::Mongo)),
            #[cfg(feature = "elastic")]
            Target::Elastic { default_index } => {
                let op = projector_gateway::sinks::elastic::decode_elastic_op(any)?;
                // `ElasticSink::decode`'s own check.
                if op.as_ref().is_some_and(|op| op.index.is_none()) && !default_index {
                    return Err(DecodeError::Malformed {
                        name: projector_gateway::proto::message_name(any).to_string(),
                        reason: "it names no `index` and the connector has no default (`sink.elastic.index`)".into(),
                    });
                }
                Ok(op.map(Decoded::Elastic))
            }
            #[cfg(feature = "redis")]
            Target::Redis { prefix, reserved } => {
                let keys = projector_gateway::sinks::redis::KeySpace { prefix, reserved };
                Ok(projector_gateway::sinks::redis::decode_redis_op(any, &keys)?.map(Decoded::Redis))
            }
        }
    }
}

/// One decoded operation.
pub enum Decoded {
    Sql(SqlOp),
    #[cfg(feature = "mongo")]
    Mongo(projector_gateway::sinks::mongo::MongoOp),
    #[cfg(feature = "elastic")]
    Elastic(projector_gateway::sinks::elastic::ElasticOp),
    #[cfg(feature = "redis")]
    Redis(projector_gateway::sinks::redis::RedisOp),
}

impl Decoded {
    pub fn sql(&self) -> Option<&SqlOp> {
        match self {
            Decoded::Sql(op) => Some(op),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The operation for the table: a first line, then its details (parameters, documents).
    pub fn lines(&self) -> Vec<String> {
        match self {
            Decoded::Sql(SqlOp::Raw(sql)) => vec![format!("Execute (raw SQL): {sql}")],
            Decoded::Sql(SqlOp::Statement { sql, params }) => std::iter::once(format!("Statement: {sql}"))
                .chain(params.iter().enumerate().map(|(i, p)| format!("  ${} = {p}", i + 1)))
                .collect(),
            #[cfg(feature = "mongo")]
            Decoded::Mongo(op) => mongo_lines(op),
            #[cfg(feature = "elastic")]
            Decoded::Elastic(op) => elastic_lines(op),
            #[cfg(feature = "redis")]
            Decoded::Redis(op) => vec![op.to_string()],
        }
    }

    /// The operation as a JSON object (`kind` and its fields).
    pub fn json(&self) -> Value {
        match self {
            Decoded::Sql(SqlOp::Raw(sql)) => json!({ "kind": "Execute", "sql": sql }),
            Decoded::Sql(SqlOp::Statement { sql, params }) => {
                json!({ "kind": "Statement", "sql": sql, "params": params.iter().map(sql_value_json).collect::<Vec<_>>() })
            }
            #[cfg(feature = "mongo")]
            Decoded::Mongo(op) => mongo_json(op),
            #[cfg(feature = "elastic")]
            Decoded::Elastic(op) => elastic_json(op),
            #[cfg(feature = "redis")]
            Decoded::Redis(op) => json!({ "kind": op.name(), "text": op.to_string() }),
        }
    }
}

/// A typed parameter as `{"type": ..., "value": ...}`, with the contract's type names.
fn sql_value_json(value: &SqlValue) -> Value {
    use base64::Engine as _;
    let (kind, value) = match value {
        SqlValue::Null => ("null", Value::Null),
        SqlValue::Bool(b) => ("bool", json!(b)),
        SqlValue::Int(i) => ("int64", json!(i)),
        // NaN and the infinities are no JSON numbers.
        SqlValue::Double(d) if d.is_finite() => ("double", json!(d)),
        SqlValue::Double(d) => ("double", json!(d.to_string())),
        SqlValue::Text(s) => ("string", json!(s)),
        SqlValue::Bytes(b) => ("bytes", json!(base64::engine::general_purpose::STANDARD.encode(b))),
        SqlValue::Decimal(d) => ("decimal", json!(d)),
        SqlValue::Timestamp(t) => ("timestamp", json!(t.to_rfc3339())),
        SqlValue::Uuid(u) => ("uuid", json!(u)),
        SqlValue::Json(j) => ("json", serde_json::from_str(j).unwrap_or_else(|_| json!(j))),
    };
    json!({ "type": kind, "value": value })
}

#[cfg(feature = "mongo")]
fn mongo_parts(op: &projector_gateway::sinks::mongo::MongoOp) -> Vec<(&'static str, mongodb::bson::Bson)> {
    use mongodb::bson::Bson;
    use projector_gateway::sinks::mongo::Write;
    match &op.write {
        Write::Insert { documents } => vec![("documents", Bson::Array(documents.iter().cloned().map(Bson::Document).collect()))],
        Write::Update { filter, update, .. } => vec![("filter", Bson::Document(filter.clone())), ("update", update.to_bson())],
        Write::Replace { filter, replacement } => {
            vec![("filter", Bson::Document(filter.clone())), ("replacement", Bson::Document(replacement.clone()))]
        }
        Write::Delete { filter, .. } => vec![("filter", Bson::Document(filter.clone()))],
    }
}

#[cfg(feature = "mongo")]
fn mongo_lines(op: &projector_gateway::sinks::mongo::MongoOp) -> Vec<String> {
    let on = op.collection.as_deref().map_or_else(|| " on the connector's collection".to_string(), |c| format!(" on `{c}`"));
    std::iter::once(format!("{}{on}", op.write.name()))
        .chain(mongo_parts(op).into_iter().map(|(name, value)| format!("  {name}: {}", value.into_relaxed_extjson())))
        .collect()
}

#[cfg(feature = "mongo")]
fn mongo_json(op: &projector_gateway::sinks::mongo::MongoOp) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("kind".into(), json!(op.write.name()));
    object.insert("collection".into(), json!(op.collection));
    for (name, value) in mongo_parts(op) {
        object.insert(name.into(), value.into_relaxed_extjson());
    }
    Value::Object(object)
}

#[cfg(feature = "elastic")]
fn elastic_body(op: &projector_gateway::sinks::elastic::ElasticOp) -> Option<(&'static str, Value)> {
    use projector_gateway::sinks::elastic::Action;
    let (name, bytes) = match &op.action {
        Action::Index { source, .. } | Action::Create { source } => ("document", source),
        Action::Update { body, .. } => ("body", body),
        Action::Delete { .. } => return None,
    };
    Some((name, serde_json::from_slice(bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(bytes)))))
}

#[cfg(feature = "elastic")]
fn elastic_lines(op: &projector_gateway::sinks::elastic::ElasticOp) -> Vec<String> {
    use projector_gateway::sinks::elastic::Action;
    let index = op.index.as_deref().map_or_else(|| "the connector's index".to_string(), |i| format!("`{i}`"));
    let versioned = matches!(op.action, Action::Index { external_version: true, .. } | Action::Delete { external_version: true });
    let first = format!("{} of `{}` in {index}{}", op.name(), op.id, if versioned { " (external version)" } else { "" });
    std::iter::once(first).chain(elastic_body(op).map(|(name, body)| format!("  {name}: {body}"))).collect()
}

#[cfg(feature = "elastic")]
fn elastic_json(op: &projector_gateway::sinks::elastic::ElasticOp) -> Value {
    use projector_gateway::sinks::elastic::Action;
    let mut object = serde_json::Map::new();
    object.insert("kind".into(), json!(op.name()));
    object.insert("index".into(), json!(op.index));
    object.insert("id".into(), json!(op.id));
    if let Action::Index { external_version, .. } | Action::Delete { external_version } = op.action {
        object.insert("external_version".into(), json!(external_version));
    }
    if let Some((name, body)) = elastic_body(op) {
        object.insert(name.into(), body);
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_keep_their_contract_type_in_json() {
        let op = Decoded::Sql(SqlOp::Statement {
            sql: "UPDATE t SET a = $1, b = $2, c = $3".into(),
            params: vec![SqlValue::Int(5), SqlValue::Json("{\"x\":1}".into()), SqlValue::Double(f64::NAN)],
        });
        assert_eq!(
            op.json(),
            json!({
                "kind": "Statement",
                "sql": "UPDATE t SET a = $1, b = $2, c = $3",
                "params": [{"type": "int64", "value": 5}, {"type": "json", "value": {"x": 1}}, {"type": "double", "value": "NaN"}]
            })
        );
        assert_eq!(op.lines(), ["Statement: UPDATE t SET a = $1, b = $2, c = $3", "  $1 = int64 5", "  $2 = json {\"x\":1}", "  $3 = double NaN"]);
    }
}
