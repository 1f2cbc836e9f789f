//! Turns YAML text into a [`GatewayConfig`], reporting *every* problem it can find, each with
//! the key path where it sits (`connectors[0].sink.postgres.url: missing`), instead of stopping
//! at the first one. Each section of a connector is decoded on its own so that one mistake
//! does not hide the next, and the decoded model is then checked for values serde cannot judge
//! (regexes, URLs, ranges, duplicate ids). `${VAR}` in string values is replaced by the
//! environment variable, so secrets need not live in the file.

use std::{collections::HashSet, path::Path};

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

use super::{
    eventuous, eventuous_checkpoint,
    problem::{at_least, did_you_mean, identifier, key_name, problem},
    *,
};

/// A configuration that could not be loaded: every problem found. A cause is part of the
/// message and not a `source`, so a chain printed with `{:#}` says it once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: std::io::Error },
    #[error("{} problem(s) in {origin}:\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { origin: String, problems: Vec<ConfigProblem> },
}

/// Reads and validates a configuration file. Its relative file paths are resolved from the
/// file's directory (`paths.rs`).
pub fn load_file(path: &Path) -> Result<GatewayConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|reason| ConfigError::Read { path: path.display().to_string(), reason })?;
    parse_in(&text, path.parent().unwrap_or(Path::new(""))).map_err(|problems| ConfigError::Invalid {
        origin: path.display().to_string(),
        problems,
    })
}

/// Parses and validates configuration text; relative file paths stay relative (to the current
/// directory).
pub fn parse(text: &str) -> Result<GatewayConfig, Vec<ConfigProblem>> {
    parse_in(text, Path::new(""))
}

/// Parses and validates configuration text whose relative file paths are relative to `base`
/// (the config file's directory): they are resolved before anything checks them.
fn parse_in(text: &str, base: &Path) -> Result<GatewayConfig, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let mut document: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let at = e.location().map(|l| format!("line {} column {}", l.line(), l.column()));
            return Err(vec![problem(at.unwrap_or_default(), format!("not valid YAML: {e}"))]);
        }
    };
    expand_env(&mut document, "", &mut problems);

    let Some(root) = document.as_mapping() else {
        return Err(vec![problem("", "expected a mapping with a `connectors` list")]);
    };
    if eventuous::is_eventuous(root) {
        let Some(translated) = eventuous::translate(root, &mut problems) else {
            return Err(problems);
        };
        return parse_document(translated.document.clone(), problems, base)
            .map_err(|found| found.into_iter().map(|p| translated.relabel(p)).collect());
    }
    parse_document(document, problems, base)
}

/// Parses and validates one connector definition (YAML or JSON, as one item of `connectors`),
/// as the management API receives it. Problems name key paths within the definition.
pub fn parse_connector(text: &str) -> Result<ConnectorConfig, Vec<ConfigProblem>> {
    let mut item: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let at = e.location().map(|l| format!("line {} column {}", l.line(), l.column()));
            return Err(vec![problem(at.unwrap_or_default(), format!("not valid YAML or JSON: {e}"))]);
        }
    };
    let mut problems = Vec::new();
    expand_env(&mut item, "", &mut problems);
    let mut document = Mapping::new();
    document.insert("connectors".into(), Value::Sequence(vec![item]));
    let relabel = |p: ConfigProblem| {
        let path = p.path.strip_prefix("connectors[0]").unwrap_or(&p.path);
        ConfigProblem { path: path.strip_prefix('.').unwrap_or(path).to_owned(), message: p.message }
    };
    match parse_document(Value::Mapping(document), problems, Path::new("")) {
        Ok(mut config) => Ok(config.connectors.remove(0)),
        Err(problems) => Err(problems.into_iter().map(relabel).collect()),
    }
}

/// Validates a document in the gateway's own format, its relative file paths resolved from
/// `base` first (`paths.rs`).
fn parse_document(document: Value, mut problems: Vec<ConfigProblem>, base: &Path) -> Result<GatewayConfig, Vec<ConfigProblem>> {
    let Some(root) = document.as_mapping() else {
        return Err(vec![problem("", "expected a mapping with a `connectors` list")]);
    };
    for key in root.keys() {
        if key.as_str() != Some("connectors") {
            let name = key_name(key);
            let hint = did_you_mean(&name, ["connectors"]);
            problems.push(problem(name, format!("unknown key; expected `connectors`{hint}")));
        }
    }
    let connectors = match root.get("connectors") {
        Some(Value::Sequence(items)) if !items.is_empty() => items,
        Some(Value::Sequence(_)) => {
            problems.push(problem("connectors", "empty; define at least one connector"));
            return Err(problems);
        }
        Some(_) => {
            problems.push(problem("connectors", "expected a list of connectors"));
            return Err(problems);
        }
        None => {
            problems.push(problem("connectors", "missing"));
            return Err(problems);
        }
    };

    let mut parsed = Vec::new();
    for (index, value) in connectors.iter().enumerate() {
        let path = format!("connectors[{index}]");
        if let Some(mut connector) = connector(value, &path, &mut problems) {
            super::paths::resolve_connector(&mut connector, base);
            validate_connector(&connector, &path, &mut problems);
            parsed.push(connector);
        }
    }
    let mut seen = HashSet::new();
    for (index, c) in parsed.iter().enumerate() {
        if !seen.insert(c.id.as_str()) {
            problems.push(problem(
                format!("connectors[{index}].id"),
                format!("duplicate connector id `{}`; ids must be unique", c.id),
            ));
        }
    }
    if problems.is_empty() { Ok(GatewayConfig { connectors: parsed }) } else { Err(problems) }
}

const CONNECTOR_KEYS: [&str; 10] =
    ["id", "source", "filter", "sidecar", "partitioning", "batch", "sink", "poison", "lease", "eventuous_checkpoint"];

fn connector(value: &Value, path: &str, problems: &mut Vec<ConfigProblem>) -> Option<ConnectorConfig> {
    let Some(map) = value.as_mapping() else {
        problems.push(problem(path, "expected a mapping (id, source, sidecar, sink, ...)"));
        return None;
    };
    for key in map.keys() {
        if !CONNECTOR_KEYS.contains(&key.as_str().unwrap_or_default()) {
            let name = key_name(key);
            let hint = did_you_mean(&name, CONNECTOR_KEYS);
            problems.push(problem(
                format!("{path}.{name}"),
                format!("unknown key; expected one of {}{hint}", CONNECTOR_KEYS.join(", ")),
            ));
        }
    }
    let before = problems.len();
    let id = required::<String>(map, "id", path, problems);
    let source = required::<SourceConfig>(map, "source", path, problems);
    let filter = optional::<FilterConfig>(map, "filter", path, problems);
    let sidecar = optional::<Option<SidecarConfig>>(map, "sidecar", path, problems);
    let partitioning = optional::<PartitioningConfig>(map, "partitioning", path, problems);
    let batch = optional::<BatchConfig>(map, "batch", path, problems);
    let sink = required::<SinkConfig>(map, "sink", path, problems);
    let poison = optional::<PoisonPolicy>(map, "poison", path, problems);
    let lease = optional::<Option<LeaseConfig>>(map, "lease", path, problems);
    let eventuous_checkpoint = optional::<Option<EventuousCheckpointConfig>>(map, "eventuous_checkpoint", path, problems);
    if problems.len() > before {
        return None;
    }
    let (mut batch, sink) = (batch?, sink?);
    let max_ops_given = map.get("batch").and_then(Value::as_mapping).is_some_and(|b| b.contains_key("max_ops"));
    if !max_ops_given {
        batch.max_ops = sink.settings().default_max_ops();
    }
    Some(ConnectorConfig {
        id: id?,
        source: source?,
        filter: filter?,
        sidecar: sidecar?,
        partitioning: partitioning?,
        batch,
        sink,
        poison: poison?,
        lease: lease?,
        eventuous_checkpoint: eventuous_checkpoint?,
    })
}

fn required<T: DeserializeOwned>(
    map: &Mapping,
    key: &str,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    match map.get(key) {
        Some(value) => decode(value, &format!("{path}.{key}"), problems),
        None => {
            problems.push(problem(format!("{path}.{key}"), "missing"));
            None
        }
    }
}

fn optional<T: DeserializeOwned + Default>(
    map: &Mapping,
    key: &str,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    match map.get(key) {
        Some(Value::Null) | None => Some(T::default()),
        Some(value) => decode(value, &format!("{path}.{key}"), problems),
    }
}

/// Decodes one section, turning serde's message into a key path and a short phrase.
fn decode<T: DeserializeOwned>(value: &Value, path: &str, problems: &mut Vec<ConfigProblem>) -> Option<T> {
    // Decoded through JSON's data model: it reads externally tagged enums written as
    // `{ sqlite: {...} }`, which serde_yaml's own Value only reads as YAML tags.
    let json = match serde_json::to_value(value) {
        Ok(json) => json,
        Err(e) => {
            problems.push(problem(path, format!("cannot be read: {e}")));
            return None;
        }
    };
    match serde_path_to_error::deserialize::<_, T>(json) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let mut at = if inner == "." || inner.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{inner}")
            };
            let message = e.inner().to_string();
            let message = if let Some(field) = between(&message, "missing field `", "`") {
                at = format!("{at}.{field}");
                "missing".to_string()
            } else if let Some(field) = unknown_field(&message) {
                // Some versions of serde_path_to_error include the unknown key in the path.
                if !at.ends_with(&format!(".{field}")) {
                    at = format!("{at}.{field}");
                }
                let expected = message.split_once(", expected ").map(|(_, rest)| rest);
                let hint = did_you_mean(field, expected.map(quoted).unwrap_or_default());
                format!("unknown key; expected {}{hint}", expected.unwrap_or("no other keys"))
            } else if let Some(variant) = between(&message, "unknown variant `", "`, expected") {
                let expected = message.split_once(", expected ").map(|(_, rest)| rest);
                let hint = did_you_mean(variant, expected.map(quoted).unwrap_or_default());
                format!("{message}{hint}")
            } else {
                message
            };
            problems.push(problem(at, message));
            None
        }
    }
}

/// The key serde names in "unknown field `x`, expected ..." (a key may hold backticks itself).
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.split_once("unknown field `")?.1;
    let end = rest.find("`, expected").or_else(|| rest.find("`, there are no fields")).or_else(|| rest.rfind('`'))?;
    Some(&rest[..end])
}

/// The names serde lists between backticks (``one of `a`, `b` `` or `` `a` or `b` ``).
fn quoted(list: &str) -> Vec<&str> {
    list.split('`').skip(1).step_by(2).collect()
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// Checks what the types alone cannot.
fn validate_connector(c: &ConnectorConfig, path: &str, problems: &mut Vec<ConfigProblem>) {
    let valid_id = !c.id.is_empty()
        && c.id.len() <= 100
        && c.id.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    if !valid_id {
        problems.push(problem(
            format!("{path}.id"),
            format!("`{}` is not a valid id; use 1-100 letters, digits, `-`, `_` or `.`", c.id),
        ));
    }
    c.source.settings().validate(path, problems);
    for (key, pattern) in [
        ("include_stream_regex", &c.filter.include_stream_regex),
        ("exclude_stream_regex", &c.filter.exclude_stream_regex),
    ] {
        if let Some(Err(e)) = pattern.as_deref().map(regex::Regex::new) {
            problems.push(problem(format!("{path}.filter.{key}"), format!("not a valid regex: {e}")));
        }
    }
    if let Some(sidecar) = &c.sidecar {
        validate_sidecar(sidecar, &format!("{path}.sidecar"), problems);
    }
    let sink = c.sink.key();
    match c.mode() {
        _ if c.sink.supports(c.mode()) => {}
        ConnectorMode::Producer => problems.push(problem(
            format!("{path}.sidecar"),
            format!("missing; the {sink} sink applies the operations of a reducer sidecar (only producer sinks run without one)"),
        )),
        ConnectorMode::Projector => problems.push(problem(
            format!("{path}.sidecar"),
            format!("the {sink} sink records every event as it is and takes no sidecar; remove this key"),
        )),
    }
    let count = c.partitioning.count;
    if !(1..=4096).contains(&count) {
        problems.push(problem(
            format!("{path}.partitioning.count"),
            format!("{count} is out of range; expected 1 to 4096"),
        ));
    }
    at_least(c.batch.max_ops as u64, 1, &format!("{path}.batch.max_ops"), problems);
    if let Some(lease) = &c.lease {
        validate_lease(lease, &c.sink, &format!("{path}.lease"), problems);
    }
    if let Some(checkpoint) = &c.eventuous_checkpoint {
        validate_eventuous_checkpoint(checkpoint, &c.sink, path, problems);
    }
    c.sink.settings().validate(c, path, problems);
    super::blue_green::validate(c, path, problems);
}

/// One gRPC address (`address`) or several replicas' (`addresses`, each once, all `http://` or
/// all `https://`); TLS settings only with `https://`, their files read and checked as the
/// channels will read them (`reducer/tls.rs`).
fn validate_sidecar(sidecar: &SidecarConfig, path: &str, problems: &mut Vec<ConfigProblem>) {
    let addresses: Vec<(String, &str)> = match (&sidecar.address, &sidecar.addresses) {
        (Some(address), None) => vec![(format!("{path}.address"), address.as_str())],
        (None, Some(list)) if !list.is_empty() => {
            list.iter().enumerate().map(|(i, address)| (format!("{path}.addresses[{i}]"), address.as_str())).collect()
        }
        (None, Some(_)) => {
            let example = "`[http://reducer-0.reducer:50051, http://reducer-1.reducer:50051]`";
            problems.push(problem(format!("{path}.addresses"), format!("empty; list the sidecar replicas' gRPC endpoints, e.g. {example}")));
            Vec::new()
        }
        (Some(_), Some(_)) => {
            problems.push(problem(
                format!("{path}.addresses"),
                "given with `address`; give one sidecar in `address` or several replicas in `addresses`, not both",
            ));
            Vec::new()
        }
        (None, None) => {
            problems.push(problem(
                format!("{path}.address"),
                "missing; expected the sidecar's gRPC endpoint, e.g. `http://127.0.0.1:50051`, or several replicas' in `addresses`",
            ));
            Vec::new()
        }
    };
    let mut valid: Vec<(&String, &str)> = Vec::new();
    for (at, address) in &addresses {
        let https = crate::reducer::tls::is_https(address);
        let endpoint = (https || address.starts_with("http://")) && address.parse::<tonic::transport::Uri>().is_ok_and(|uri| uri.host().is_some());
        let same = |earlier: &&(&String, &str)| earlier.1.trim_end_matches('/') == address.trim_end_matches('/');
        if !endpoint {
            problems.push(problem(
                at,
                format!("`{address}` is not a gRPC endpoint; expected e.g. `http://127.0.0.1:50051`, or `https://reducer.internal:50443` for TLS"),
            ));
        } else if let Some((first_at, _)) = valid.iter().find(same) {
            problems.push(problem(at, format!("`{address}` is listed twice (also at `{first_at}`); list each replica once")));
        } else if let Some((first_at, first)) = valid.first().filter(|(_, first)| crate::reducer::tls::is_https(first) != https) {
            problems.push(problem(
                at,
                format!(
                    "`{address}` and `{first}` (`{first_at}`) are reached differently (TLS and plain text); list all replicas with `http://` or all with `https://`"
                ),
            ));
        } else {
            valid.push((at, *address));
        }
    }
    let https = valid.first().is_some_and(|(_, address)| crate::reducer::tls::is_https(address));
    if let (Some((_, address)), false, Some(_)) = (valid.first(), https, &sidecar.tls) {
        let tls_address = address.replacen("http://", "https://", 1);
        problems.push(problem(
            format!("{path}.tls"),
            format!("TLS settings for `{address}`, a plain-text address; use `{tls_address}` for TLS to the sidecar, or remove `tls`"),
        ));
    } else if https {
        // Each address is checked against its own host name; the files' problems are told once.
        let mut told = Vec::new();
        for (at, address) in &valid {
            for p in crate::reducer::tls::client_config(sidecar, address).err().unwrap_or_default() {
                let at = if p.key == "address" { (*at).clone() } else { format!("{path}.{}", p.key) };
                if !told.contains(&(at.clone(), p.message.clone())) {
                    told.push((at.clone(), p.message.clone()));
                    problems.push(problem(at, p.message));
                }
            }
        }
    }
    at_least(sidecar.resolve_every_secs, 1, &format!("{path}.resolve_every_secs"), problems);
    at_least(sidecar.window as u64, 1, &format!("{path}.window"), problems);
    // Below a few KiB not even an event's request fits; past 1 GiB is not a message but a leak.
    at_least(sidecar.max_message_bytes as u64, 4096, &format!("{path}.max_message_bytes"), problems);
    if sidecar.max_message_bytes > 1 << 30 {
        problems.push(problem(format!("{path}.max_message_bytes"), format!("{} is too large; expected at most 1073741824 (1 GiB)", sidecar.max_message_bytes)));
    }
    at_least(sidecar.request_timeout_ms, 1, &format!("{path}.request_timeout_ms"), problems);
}

/// An Eventuous checkpoint to take over: an id, and only the names the connector's target
/// has (a table, a collection or an index), on a target where Eventuous keeps checkpoints, in
/// a table that is not one of the gateway's own.
fn validate_eventuous_checkpoint(c: &EventuousCheckpointConfig, sink: &SinkConfig, connector_path: &str, problems: &mut Vec<ConfigProblem>) {
    let path = &format!("{connector_path}.eventuous_checkpoint");
    let Some(keys) = eventuous_checkpoint::keys_for(sink) else {
        problems.push(problem(
            path,
            format!(
                "the {} sink has no Eventuous checkpoint to take over (Eventuous keeps them in MongoDB, SQL Server, PostgreSQL, \
                 SQLite and Elasticsearch targets); remove this key",
                sink.key()
            ),
        ));
        return;
    };
    if c.id.trim().is_empty() {
        problems.push(problem(format!("{path}.id"), "empty; expected the Eventuous checkpoint id (the Eventuous Connector's `connectorId`)"));
    }
    let given = [("table", &c.table), ("schema", &c.schema), ("collection", &c.collection), ("index", &c.index)];
    for (key, value) in given {
        let Some(name) = value else { continue };
        let at = format!("{path}.{key}");
        if !keys.contains(&key) {
            let message = if key == "schema" && matches!(sink, SinkConfig::Sqlite(_)) {
                "SQLite has no schemas (Eventuous.Sqlite's schema is the prefix of the table name, as in `eventuous_checkpoints`); \
                 give the whole name in `table`"
                    .to_string()
            } else {
                let takes: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                format!("not a setting of the {} sink's Eventuous checkpoint; it takes {}", sink.key(), takes.join(" and "))
            };
            problems.push(problem(at, message));
            continue;
        }
        match key {
            "collection" => crate::sinks::settings::mongo::name(name, &at, "collection", problems),
            "index" => {
                if let Some(reason) = crate::sinks::settings::elastic::index_problem(name) {
                    problems.push(problem(at, format!("`{name}` is not a valid index name: it {reason}")));
                }
            }
            _ => identifier(name, &at, problems),
        }
    }
    // The gateway's own tables are `checkpoints`, `parked_events` and `projections` in the
    // sink's schema; SQL Server's default collations and SQLite compare names without case,
    // and PostgreSQL folds Eventuous's unquoted names to lowercase.
    let Some(EventuousPlace::Table { database, schema, table }) = c.resolve(sink).map(|r| r.place) else { return };
    let own_schema = match sink {
        SinkConfig::Mssql(s) => Some((s.schema.as_str(), "mssql")),
        SinkConfig::Postgres(s) => Some((s.schema.as_str(), "postgres")),
        _ => None,
    };
    let own_table = ["checkpoints", "parked_events", "projections"].into_iter().find(|t| t.eq_ignore_ascii_case(&table));
    match (own_table, own_schema, schema) {
        (Some(own), Some((own_schema, key)), Some(schema)) if own_schema.eq_ignore_ascii_case(&schema) => problems.push(problem(
            format!("{connector_path}.sink.{key}.schema"),
            format!(
                "the gateway keeps its own `{own}` table in `{own_schema}`, which is the Eventuous checkpoint table `{schema}.{table}` \
                 ({database} compares names without case); put the gateway's tables in a schema of their own, e.g. `projector_gateway`"
            ),
        )),
        (Some(own), None, None) => problems.push(problem(
            format!("{path}.table"),
            format!("`{table}` is the gateway's own `{own}` table in this target ({database} compares names without case); the Eventuous checkpoints cannot be there"),
        )),
        _ => {}
    }
}

/// A lease needs a target that can fence a commit with it, and a renewal well within its
/// lifetime.
fn validate_lease(lease: &LeaseConfig, sink: &SinkConfig, path: &str, problems: &mut Vec<ConfigProblem>) {
    match (sink, lease.scope) {
        (SinkConfig::Postgres(_), _) => {}
        // Several gateway processes on one machine sharing the target file.
        (SinkConfig::Sqlite(_), LeaseScope::Partitions) => {}
        // Claims are fenced inside each batch's transaction: none, no fence.
        (SinkConfig::Mongo(mongo), LeaseScope::Partitions) => {
            if mongo.transactions == MongoTransactions::Off {
                let connector = path.strip_suffix(".lease").unwrap_or(path);
                problems.push(problem(
                    format!("{connector}.sink.mongo.transactions"),
                    "`off`, but partition claims (`lease.scope: partitions`) are fenced inside each batch's transaction; \
                     set `auto` or `on` (the server must be a replica set or mongos)",
                ));
            }
        }
        (_, scope) => {
            let (what, supported) = match scope {
                LeaseScope::Connector => ("a lease is held and fenced in the target database", "only the postgres sink supports"),
                LeaseScope::Partitions => (
                    "partition claims (`scope: partitions`) are held and fenced in the target database",
                    "only the postgres, mongo and sqlite sinks support",
                ),
            };
            problems.push(problem(
                path,
                format!(
                    "{what}, which {supported} yet (this connector's is {}); \
                     run this connector on one gateway, or remove `lease`",
                    sink.key()
                ),
            ));
        }
    }
    at_least(lease.ttl_ms, 1_000, &format!("{path}.ttl_ms"), problems);
    at_least(lease.renew_every_ms, 100, &format!("{path}.renew_every_ms"), problems);
    if lease.renew_every_ms.saturating_mul(2) > lease.ttl_ms {
        problems.push(problem(
            format!("{path}.renew_every_ms"),
            format!(
                "{} ms is more than half of ttl_ms ({} ms): one late renewal would lose the lease; renew at most every {} ms",
                lease.renew_every_ms,
                lease.ttl_ms,
                lease.ttl_ms / 2
            ),
        ));
    }
}

/// Replaces `${NAME}` in every string value with the environment variable `NAME`.
fn expand_env(value: &mut Value, path: &str, problems: &mut Vec<ConfigProblem>) {
    match value {
        Value::String(s) if s.contains("${") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    problems.push(problem(path, "unterminated `${`; write `${NAME}`"));
                    return;
                };
                let name = &after[..end];
                match std::env::var(name) {
                    Ok(v) => out.push_str(&v),
                    Err(_) => {
                        problems.push(problem(path, format!("environment variable `{name}` is not set")));
                        // Keep the text as written, so no second problem is reported for it.
                        return;
                    }
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, &format!("{path}[{i}]"), problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = key_name(k);
                let child = if path.is_empty() { key } else { format!("{path}.{key}") };
                expand_env(v, &child, problems);
            }
        }
        _ => {}
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
connectors:
  - id: bookings
    source: { sqlite: { path: events.db } }
    sidecar: { address: "http://127.0.0.1:50051" }
    sink: { sqlite: { path: read.db } }
"#;

    #[test]
    fn accepts_a_minimal_connector_with_defaults() {
        let config = parse(GOOD).unwrap();
        let c = &config.connectors[0];
        assert_eq!(c.partitioning.count, 8);
        assert_eq!(c.sidecar.as_ref().unwrap().window, 256);
        assert_eq!(c.poison, PoisonPolicy::Stop);
    }

    fn messages(text: &str) -> Vec<String> {
        parse(text).unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let text = r#"
connectors:
  - id: "bad id"
    source: { sqlite: { path: events.db, pol_interval_ms: 5 } }
    sidecar: { address: "127.0.0.1:50051", window: 0, max_message_bytes: 100 }
    sink: { postgres: { schema: public } }
    filter: { include_stream_regex: "(" }
"#;
        let found = messages(text);
        for expected in [
            "connectors[0].source.sqlite.pol_interval_ms: unknown key",
            "connectors[0].sink.postgres.url: missing",
        ] {
            assert!(found.iter().any(|m| m.starts_with(expected)), "{expected} not in {found:#?}");
        }
        // The semantic checks run once the sections decode.
        let text = text.replace("pol_interval_ms", "poll_interval_ms").replace(
            "{ postgres: { schema: public } }",
            "{ sqlite: { path: read.db } }",
        );
        let found = messages(&text);
        for expected in [
            "connectors[0].id: `bad id` is not a valid id",
            "connectors[0].sidecar.address: `127.0.0.1:50051` is not a gRPC endpoint",
            "connectors[0].sidecar.window: 0 is too small",
            "connectors[0].sidecar.max_message_bytes: 100 is too small; expected at least 4096",
            "connectors[0].filter.include_stream_regex: not a valid regex",
        ] {
            assert!(found.iter().any(|m| m.starts_with(expected)), "{expected} not in {found:#?}");
        }
    }

    /// A CA, and a client certificate with its key, as PEM files in `dir`.
    fn tls_files(dir: &Path) -> (String, String, String) {
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["gateway".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
        let write = |name: &str, text: String| {
            std::fs::write(dir.join(name), text).unwrap();
            dir.join(name).display().to_string()
        };
        (write("ca.pem", issuer.pem()), write("client.pem", cert.pem()), write("client.key", key.serialize_pem()))
    }

    fn with_sidecar(sidecar: &str) -> String {
        GOOD.replace(r#"{ address: "http://127.0.0.1:50051" }"#, sidecar)
    }

    #[test]
    fn an_https_sidecar_takes_the_mozilla_roots_or_the_tls_files_it_names() {
        let config = parse(&with_sidecar(r#"{ address: "https://reducer.example:443" }"#)).unwrap();
        let sidecar = config.connectors[0].sidecar.as_ref().unwrap();
        assert_eq!((sidecar.address.as_deref(), &sidecar.tls), (Some("https://reducer.example:443"), &None));

        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = tls_files(dir.path());
        let text = with_sidecar(&format!(
            r#"{{ address: "https://127.0.0.1:50443", tls: {{ ca_file: "{ca}", cert_file: "{cert}", key_file: "{key}", domain: reducer.internal }} }}"#
        ));
        let config = parse(&text).unwrap();
        let tls = config.connectors[0].sidecar.as_ref().unwrap().tls.clone().unwrap();
        assert_eq!(tls.ca_file.as_deref(), Some(Path::new(&ca)));
        assert_eq!(tls.domain.as_deref(), Some("reducer.internal"));
        // A management API definition (JSON) reads the same keys.
        let json = format!(
            r#"{{"id": "a", "source": {{"sqlite": {{"path": "e.db"}}}}, "sidecar": {{"address": "https://127.0.0.1:50443", "tls": {{"ca_file": "{ca}"}}}}, "sink": {{"sqlite": {{"path": "t.db"}}}}}}"#
        );
        let definition: ConnectorConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(definition.sidecar.unwrap().tls.unwrap().ca_file.as_deref(), Some(Path::new(&ca)));
        // Without `tls`, nothing is written back.
        let plain = serde_json::to_value(&parse(GOOD).unwrap().connectors[0]).unwrap();
        assert!(plain["sidecar"].get("tls").is_none(), "{plain}");
    }

    #[test]
    fn tls_settings_need_an_https_address_and_files_that_can_be_used() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = tls_files(dir.path());
        let missing = dir.path().join("nowhere/ca.pem").display().to_string();
        let found = messages(&with_sidecar(&format!(r#"{{ address: "http://127.0.0.1:50051", tls: {{ ca_file: "{ca}" }} }}"#)));
        assert_eq!(found, [
            "connectors[0].sidecar.tls: TLS settings for `http://127.0.0.1:50051`, a plain-text address; use `https://127.0.0.1:50051` for TLS to the sidecar, or remove `tls`"
        ]);

        let found = messages(&with_sidecar(&format!(r#"{{ address: "https://127.0.0.1:50443", tls: {{ ca_file: "{missing}", cert_file: "{cert}" }} }}"#)));
        assert_eq!(found, [
            format!("connectors[0].sidecar.tls.ca_file: {missing}: no such file"),
            "connectors[0].sidecar.tls.key_file: missing; `cert_file` (the gateway's client certificate) needs its private key".to_string(),
        ]);

        // Files that are not what their key says: each named at its key path.
        let found = messages(&with_sidecar(&format!(
            r#"{{ address: "https://127.0.0.1:50443", tls: {{ ca_file: "{key}", cert_file: "{cert}", key_file: "{cert}", domain: "not a name" }} }}"#
        )));
        assert_eq!(found, [
            "connectors[0].sidecar.tls.domain: `not a name` is not a DNS name or an IP address".to_string(),
            format!("connectors[0].sidecar.tls.ca_file: {key}: holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"),
            format!("connectors[0].sidecar.tls.key_file: {cert}: holds no PEM private key (`-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)"),
        ]);

        // A key of another certificate.
        let other = tempfile::tempdir().unwrap();
        let (_, _, other_key) = tls_files(other.path());
        let found = messages(&with_sidecar(&format!(
            r#"{{ address: "https://127.0.0.1:50443", tls: {{ cert_file: "{cert}", key_file: "{other_key}" }} }}"#
        )));
        assert_eq!(found, [format!("connectors[0].sidecar.tls.key_file: {other_key} is not the private key of the certificate in `cert_file` ({cert})")]);

        // An address whose host no certificate can hold needs `domain`.
        let found = messages(&with_sidecar(r#"{ address: "https://reducer-:50443" }"#));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("connectors[0].sidecar.address: `reducer-` cannot be checked against a certificate"), "{found:#?}");
        assert!(parse(&with_sidecar(r#"{ address: "https://reducer-:50443", tls: { domain: reducer.internal } }"#)).is_ok());
        assert!(parse(&with_sidecar(r#"{ address: "https://[::1]:50443" }"#)).is_ok());
        let found = messages(&with_sidecar(r#"{ address: "https://127.0.0.1:50443", tls: { ca_fil: x } }"#));
        assert!(found[0].starts_with("connectors[0].sidecar.tls.ca_fil: unknown key"), "{found:#?}");
    }

    #[test]
    fn several_sidecar_replicas_are_listed_once_each_and_reached_alike() {
        let config = parse(&with_sidecar(r#"{ addresses: ["http://10.0.0.1:50051", "http://reducer:50051"], resolve_every_secs: 3 }"#)).unwrap();
        let sidecar = config.connectors[0].sidecar.as_ref().unwrap();
        assert_eq!(sidecar.addresses(), ["http://10.0.0.1:50051", "http://reducer:50051"]);
        assert_eq!(sidecar.shown_addresses(), "http://10.0.0.1:50051, http://reducer:50051");
        assert_eq!(sidecar.resolve_every_secs, 3);
        let one = parse(GOOD).unwrap();
        let one = one.connectors[0].sidecar.as_ref().unwrap();
        assert_eq!((one.addresses(), one.resolve_every_secs), (vec!["http://127.0.0.1:50051"], 10));
        // A file with `address` is written back as it was.
        let written = serde_json::to_value(one).unwrap();
        assert!(written.get("addresses").is_none() && written["address"] == "http://127.0.0.1:50051", "{written}");

        let problem_of = |sidecar: &str| messages(&with_sidecar(sidecar));
        assert_eq!(problem_of("{ window: 4 }"), [
            "connectors[0].sidecar.address: missing; expected the sidecar's gRPC endpoint, e.g. `http://127.0.0.1:50051`, or several \
             replicas' in `addresses`"
        ]);
        assert_eq!(problem_of(r#"{ address: "http://a:1", addresses: ["http://b:1"] }"#), [
            "connectors[0].sidecar.addresses: given with `address`; give one sidecar in `address` or several replicas in `addresses`, not both"
        ]);
        let empty = problem_of("{ addresses: [] }");
        assert!(empty.len() == 1 && empty[0].starts_with("connectors[0].sidecar.addresses: empty; list the sidecar replicas'"), "{empty:#?}");
        assert_eq!(problem_of(r#"{ addresses: ["http://a:1", "http://b:1", "http://a:1/"] }"#), [
            "connectors[0].sidecar.addresses[2]: `http://a:1/` is listed twice (also at `connectors[0].sidecar.addresses[0]`); list each replica once"
        ]);
        assert_eq!(problem_of(r#"{ addresses: ["http://a:1", "https://b:1"] }"#), [
            "connectors[0].sidecar.addresses[1]: `https://b:1` and `http://a:1` (`connectors[0].sidecar.addresses[0]`) are reached differently \
             (TLS and plain text); list all replicas with `http://` or all with `https://`"
        ]);
        assert_eq!(problem_of(r#"{ addresses: ["http://a:1", "b:1"], resolve_every_secs: 0 }"#), [
            "connectors[0].sidecar.addresses[1]: `b:1` is not a gRPC endpoint; expected e.g. `http://127.0.0.1:50051`, or \
             `https://reducer.internal:50443` for TLS",
            "connectors[0].sidecar.resolve_every_secs: 0 is too small; expected at least 1",
        ]);
        // Each https address is checked against its own host; a problem of the files is told once.
        let found = problem_of(r#"{ addresses: ["https://reducer-:1", "https://b:1", "https://c-:1"], tls: { ca_file: /nowhere/ca.pem } }"#);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[0].starts_with("connectors[0].sidecar.addresses[0]: `reducer-` cannot be checked"), "{found:#?}");
        assert_eq!(found[1], "connectors[0].sidecar.tls.ca_file: /nowhere/ca.pem: no such file");
        assert!(found[2].starts_with("connectors[0].sidecar.addresses[2]: `c-` cannot be checked"), "{found:#?}");
    }

    #[test]
    fn a_lease_needs_a_postgres_target_and_a_renewal_well_within_its_ttl() {
        let leased = |sink: &str, lease: &str| {
            GOOD.replace("{ sqlite: { path: read.db } }", sink) + &format!("    lease: {lease}\n")
        };
        let postgres = r#"{ postgres: { url: "postgres://gw@127.0.0.1/rm" } }"#;
        let config = parse(&leased(postgres, "{}")).unwrap();
        assert_eq!(config.connectors[0].lease, Some(LeaseConfig { scope: LeaseScope::Connector, ttl_ms: 15_000, renew_every_ms: 3_000 }));
        let found = messages(&leased("{ sqlite: { path: read.db } }", "{}"));
        assert!(found.iter().any(|m| m.starts_with("connectors[0].lease: a lease is held and fenced in the target database, which only the postgres sink supports yet (this connector's is sqlite)")), "{found:#?}");
        let found = messages(&leased(postgres, "{ ttl_ms: 2000, renew_every_ms: 1500 }"));
        assert!(found.iter().any(|m| m.starts_with("connectors[0].lease.renew_every_ms: 1500 ms is more than half of ttl_ms (2000 ms)")), "{found:#?}");
        let found = messages(&leased(postgres, "{ ttl_ms: 10 }"));
        assert!(found.iter().any(|m| m.starts_with("connectors[0].lease.ttl_ms: 10 is too small")), "{found:#?}");
        let config = parse(&leased(postgres, "{ scope: partitions }")).unwrap();
        assert_eq!(config.connectors[0].lease.as_ref().map(|l| l.scope), Some(LeaseScope::Partitions));
        // SQLite: partition claims among gateway processes sharing the target file.
        let config = parse(&leased("{ sqlite: { path: read.db } }", "{ scope: partitions }")).unwrap();
        assert_eq!(config.connectors[0].lease.as_ref().map(|l| l.scope), Some(LeaseScope::Partitions));
        let found = messages(&leased("{ console: {} }", "{ scope: partitions }"));
        assert!(found.iter().any(|m| m.starts_with("connectors[0].lease: partition claims (`scope: partitions`) are held and fenced in the target database, which only the postgres, mongo and sqlite sinks support yet (this connector's is console)")), "{found:#?}");
        // MongoDB: partition claims, fenced in each batch's transaction; no connector lease.
        let mongo = |extra: &str| format!(r#"{{ mongo: {{ url: "mongodb://127.0.0.1:1/", database: rm, collection: docs{extra} }} }}"#);
        let config = parse(&leased(&mongo(""), "{ scope: partitions }")).unwrap();
        assert_eq!(config.connectors[0].lease.as_ref().map(|l| l.scope), Some(LeaseScope::Partitions));
        assert!(parse(&leased(&mongo(", transactions: on"), "{ scope: partitions }")).is_ok());
        let found = messages(&leased(&mongo(", transactions: off"), "{ scope: partitions }"));
        assert_eq!(
            found,
            ["connectors[0].sink.mongo.transactions: `off`, but partition claims (`lease.scope: partitions`) are fenced inside each batch's transaction; \
              set `auto` or `on` (the server must be a replica set or mongos)"],
        );
        let found = messages(&leased(&mongo(""), "{}"));
        assert!(found.iter().any(|m| m.starts_with("connectors[0].lease: a lease is held and fenced in the target database, which only the postgres sink supports yet (this connector's is mongo)")), "{found:#?}");
        let found = messages(&leased(postgres, "{ scope: segments }"));
        assert!(found.iter().any(|m| m.starts_with("connectors[0].lease.scope: unknown variant `segments`")), "{found:#?}");
        let found = messages(&leased(postgres, "{ tll_ms: 2000 }"));
        assert!(found.iter().any(|m| m.starts_with("connectors[0].lease.tll_ms: unknown")), "{found:#?}");
    }

    #[test]
    fn a_projector_sink_needs_a_sidecar() {
        let without = GOOD.lines().filter(|l| !l.contains("sidecar") && !l.contains("address:")).collect::<Vec<_>>().join("\n");
        let found = messages(&without);
        assert!(
            found.iter().any(|m| m.starts_with("connectors[0].sidecar: missing; the sqlite sink applies the operations of a reducer sidecar")),
            "{found:#?}"
        );
    }

    #[test]
    fn checks_the_mongo_sink_with_key_paths() {
        let mongo = |body: &str| GOOD.replace("{ sqlite: { path: read.db } }", &format!("{{ mongo: {{ {body} }} }}"));
        let found = messages(&mongo("database: rm, collection: docs"));
        assert!(found.iter().any(|m| m.starts_with("connectors[0].sink.mongo.url: missing")), "{found:#?}");
        let found = messages(&mongo("url: \"http://x\", database: \"a.b\", collection: docs, writers: 0"));
        for expected in [
            "connectors[0].sink.mongo.url: `http://x` is not a MongoDB connection string",
            "connectors[0].sink.mongo.database: `a.b` is not a valid MongoDB database name",
            "connectors[0].sink.mongo.writers: 0 is too small",
        ] {
            assert!(found.iter().any(|m| m.starts_with(expected)), "{expected} not in {found:#?}");
        }
        let config = parse(&mongo("url: \"mongodb://127.0.0.1:1/\", database: rm, collection: docs")).unwrap();
        let SinkConfig::Mongo(m) = &config.connectors[0].sink else { panic!() };
        assert_eq!((m.checkpoints_collection.as_str(), m.parked_collection.as_str()), ("checkpoints", "parked_events"));
        assert_eq!(m.transactions, MongoTransactions::Auto);
    }

    #[test]
    fn checks_the_elastic_sink_with_key_paths() {
        let elastic = |body: &str| GOOD.replace("{ sqlite: { path: read.db } }", &format!("{{ elastic: {{ {body} }} }}"));
        let found = messages(&elastic("url: \"http://x\", refresh: soon"));
        assert_eq!(found, ["connectors[0].sink.elastic.refresh: `soon` is not a refresh policy; expected false, true or wait_for"]);
        let found = messages(&elastic("url: \"ftp://x\", index: Bookings, max_bulk_bytes: 10, writers: 0, producer: {}"));
        for expected in [
            "connectors[0].sink.elastic.url: `ftp` is not an http(s) URL",
            "connectors[0].sink.elastic.index: `Bookings` is not a valid index name: it must be lowercase",
            "connectors[0].sink.elastic.max_bulk_bytes: 10 is too small; expected at least 1024",
            "connectors[0].sink.elastic.writers: 0 is too small",
            "connectors[0].sink.elastic.producer: only for a producer connector (one without `sidecar`",
        ] {
            assert!(found.iter().any(|m| m.starts_with(expected)), "{expected} not in {found:#?}");
        }
        let config = parse(&elastic("url: \"http://127.0.0.1:9200\", index: bookings, refresh: false")).unwrap();
        let SinkConfig::Elastic(e) = &config.connectors[0].sink else { panic!() };
        assert_eq!((e.checkpoints_index.as_str(), e.parked_index.as_str(), e.refresh), ("checkpoints", "parked_events", ElasticRefresh::False));
        // Without a sidecar: a producer, whose settings default.
        let producer = elastic("url: \"http://127.0.0.1:9200\", producer: { index: \"ev-{category}\", payload: flattened }")
            .lines()
            .filter(|l| !l.contains("sidecar"))
            .collect::<Vec<_>>()
            .join("\n");
        let config = parse(&producer).unwrap();
        assert_eq!(config.connectors[0].mode(), ConnectorMode::Producer);
        let SinkConfig::Elastic(e) = &config.connectors[0].sink else { panic!() };
        let p = e.producer.as_ref().unwrap();
        assert_eq!((p.index.as_str(), p.data_stream, p.payload), ("ev-{category}", true, ElasticPayloadMapping::Flattened));
        let found = messages(&producer.replace("ev-{category}", "Ev-{category}-{category}"));
        assert!(found.iter().any(|m| m.starts_with("connectors[0].sink.elastic.producer.index: holds `{category}` more than once")), "{found:#?}");
        assert!(found.iter().any(|m| m.contains("`Ev-category-category` is not a valid index name: it must be lowercase")), "{found:#?}");
    }

    #[test]
    fn names_missing_sections_unknown_keys_and_duplicates() {
        let found = messages("connectors:\n  - id: a\n    sourc: {}\n");
        assert!(found.contains(&"connectors[0].source: missing".to_string()), "{found:#?}");
        assert!(found.contains(&"connectors[0].sink: missing".to_string()), "{found:#?}");
        assert!(found.iter().any(|m| m.starts_with("connectors[0].sourc: unknown key")), "{found:#?}");
        let twice = format!("{GOOD}{}", GOOD.replace("connectors:\n", ""));
        assert!(messages(&twice).iter().any(|m| m.contains("duplicate connector id `bookings`")));
    }

    #[test]
    fn an_unknown_key_near_a_known_one_gets_a_suggestion() {
        let found = messages(&GOOD.replace("sink:", "partitionning: { count: 2 }\n    sink:"));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("connectors[0].partitionning: unknown key; expected one of id, source"), "{found:#?}");
        assert!(found[0].ends_with("; did you mean `partitioning`?"), "{found:#?}");
        let found = messages(&GOOD.replace("path: events.db", "path: events.db, pol_interval_ms: 5"));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("connectors[0].source.sqlite.pol_interval_ms: unknown key; expected one of `path`"), "{found:#?}");
        assert!(found[0].ends_with("; did you mean `poll_interval_ms`?"), "{found:#?}");
        let found = messages(&GOOD.replace("sink: { sqlite:", "sink: { sqllite:"));
        assert!(found[0].starts_with("connectors[0].sink: unknown variant `sqllite`"), "{found:#?}");
        assert!(found[0].ends_with("; did you mean `sqlite`?"), "{found:#?}");
        let found = messages(&format!("{GOOD}conectors: []\n"));
        assert_eq!(found, ["conectors: unknown key; expected `connectors`; did you mean `connectors`?"]);
        // Nothing near: no suggestion.
        let found = messages(&GOOD.replace("sink:", "colour: blue\n    sink:"));
        assert!(!found[0].contains("did you mean"), "{found:#?}");
    }

    #[test]
    fn a_file_s_relative_paths_are_resolved_from_its_directory_before_they_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.yaml");
        std::fs::write(&file, GOOD.replace("read.db", "read.db, init_sql_file: schema.sql")).unwrap();
        let config = load_file(&file).unwrap();
        let SinkConfig::Sqlite(sink) = &config.connectors[0].sink else { panic!() };
        assert_eq!(sink.path, dir.path().join("read.db"));
        assert_eq!(sink.init_sql_file.as_deref(), Some(dir.path().join("schema.sql").as_path()));
        // Text without a file keeps them relative (the current directory).
        let SinkConfig::Sqlite(sink) = &parse(GOOD).unwrap().connectors[0].sink else { panic!() };
        assert_eq!(sink.path, Path::new("read.db"));
        let api = r#"{"id": "a", "source": {"sqlite": {"path": "e.db"}}, "sidecar": {"address": "http://127.0.0.1:1"}, "sink": {"sqlite": {"path": "read.db"}}}"#;
        let SinkConfig::Sqlite(sink) = parse_connector(api).unwrap().sink else { panic!() };
        assert_eq!(sink.path, Path::new("read.db"));
    }

    #[test]
    fn reports_yaml_syntax_errors_with_a_location() {
        let found = messages("connectors: [\n  - id: x\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("not valid YAML"), "{found:?}");
    }

    #[test]
    fn expands_environment_variables() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("PGW_TEST_EVENTS", "/data/events.db") };
        let config = parse(&GOOD.replace("events.db", "\"${PGW_TEST_EVENTS}\"")).unwrap();
        let SourceConfig::Sqlite(s) = &config.connectors[0].source else { panic!() };
        assert_eq!(s.path, Path::new("/data/events.db"));
        let found = messages(&GOOD.replace("events.db", "\"${PGW_TEST_UNSET_VARIABLE}\""));
        assert_eq!(found, ["connectors[0].source.sqlite.path: environment variable `PGW_TEST_UNSET_VARIABLE` is not set"]);
    }
}
