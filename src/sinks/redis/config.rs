//! The Redis target's settings: the server's URL, the prefix of every key, the writers, and what
//! is checked before a connector starts. Compiled whatever features are on (see
//! `sinks/registry.rs`).

use serde::{Deserialize, Serialize};

use crate::config::{
    ConnectorConfig, SinkSettings,
    problem::{ConfigProblem, at_least, problem},
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisSinkConfig {
    /// `redis://[user:password@]host:port/db`, or `rediss://` for TLS; the password may come
    /// from the environment (`redis://:${REDIS_PASSWORD}@host:6379/0`).
    pub url: String,
    /// Put in front of every key: the read model's and the gateway's own
    /// (`<prefix>checkpoints:<connector>`, `<prefix>parked_events:<connector>`,
    /// `<prefix>projections:<connector>`). Empty by default.
    #[serde(default)]
    pub key_prefix: String,
    /// Connections applying batches in parallel; each owns a fixed set of partitions.
    #[serde(default = "crate::config::defaults::writers")]
    pub writers: usize,
    /// How long to wait for the server's answer to a request before the connection counts as
    /// lost (a batch whose EXEC was sent is then checked against the checkpoints).
    #[serde(default = "defaults::response_timeout_ms")]
    pub response_timeout_ms: u64,
}

mod defaults {
    pub fn response_timeout_ms() -> u64 {
        30_000
    }
}

/// Longest `key_prefix`: a namespace, not data.
const MAX_PREFIX: usize = 128;

impl SinkSettings for RedisSinkConfig {
    fn validate(&self, _: &ConnectorConfig, connector_path: &str, problems: &mut Vec<ConfigProblem>) {
        let at = |key: &str| format!("{connector_path}.sink.redis.{key}");
        url(&self.url, &at("url"), problems);
        if let Some(reason) = prefix_problem(&self.key_prefix) {
            problems.push(problem(at("key_prefix"), reason));
        }
        at_least(self.writers as u64, 1, &at("writers"), problems);
        at_least(self.response_timeout_ms, 100, &at("response_timeout_ms"), problems);
    }
}

fn url(url: &str, path: &str, problems: &mut Vec<ConfigProblem>) {
    if url.trim().is_empty() {
        problems.push(problem(path, "empty; expected e.g. `redis://127.0.0.1:6379/0`"));
    } else if !url.starts_with("redis://") && !url.starts_with("rediss://") {
        problems.push(problem(
            path,
            format!("`{url}` is not a Redis URL; expected `redis://[user:password@]host:port/db` (`rediss://` for TLS)"),
        ));
    } else if let Some(reason) = url_problem(url) {
        problems.push(problem(path, reason));
    }
}

#[cfg(feature = "redis")]
fn url_problem(url: &str) -> Option<String> {
    crate::sinks::redis::parse_url(url).err().map(|e| e.to_string())
}

#[cfg(not(feature = "redis"))]
fn url_problem(_: &str) -> Option<String> {
    None
}

/// Printable characters without spaces (a prefix is typed into `redis-cli` and read in
/// `SCAN MATCH` patterns), at most [`MAX_PREFIX`] bytes.
fn prefix_problem(prefix: &str) -> Option<String> {
    if prefix.len() > MAX_PREFIX {
        return Some(format!("{} bytes long; at most {MAX_PREFIX}", prefix.len()));
    }
    let bad = prefix.chars().find(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '?' | '[' | ']' | '\\'))?;
    Some(format!(
        "`{prefix}` holds {bad:?}; a key prefix is printable characters without spaces, glob characters (`*?[]`) or backslashes, e.g. `app:`"
    ))
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn problems(sink: &str) -> Vec<String> {
        let text = format!(
            "connectors:\n  - id: c\n    source: {{ sqlite: {{ path: e.db }} }}\n    sidecar: {{ address: \"http://127.0.0.1:1\" }}\n    sink: {{ redis: {sink} }}\n"
        );
        match parse(&text) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn takes_a_redis_url_with_defaults() {
        assert_eq!(problems("{ url: \"redis://127.0.0.1:6379/0\" }"), Vec::<String>::new());
        assert_eq!(problems("{ url: \"rediss://:secret@cache.example:6380/2\", key_prefix: \"app:\", writers: 2 }"), Vec::<String>::new());
        let text = "connectors:\n  - id: c\n    source: { sqlite: { path: e.db } }\n    sidecar: { address: \"http://127.0.0.1:1\" }\n    sink: { redis: { url: \"redis://h:1/0\" } }\n";
        let crate::config::SinkConfig::Redis(c) = parse(text).unwrap().connectors.remove(0).sink else { panic!("not redis") };
        assert_eq!((c.key_prefix.as_str(), c.writers, c.response_timeout_ms), ("", 1, 30_000));
    }

    #[test]
    fn names_each_problem_with_its_key() {
        let found = problems("{ url: \"http://127.0.0.1:6379\", key_prefix: \"my app:\", writers: 0 }");
        assert!(found.iter().any(|p| p.starts_with("connectors[0].sink.redis.url: `http://127.0.0.1:6379` is not a Redis URL")), "{found:?}");
        assert!(found.iter().any(|p| p.starts_with("connectors[0].sink.redis.key_prefix: `my app:` holds ' '")), "{found:?}");
        assert!(found.iter().any(|p| p.starts_with("connectors[0].sink.redis.writers: 0 is too small")), "{found:?}");
        let glob = problems("{ url: \"redis://h/0\", key_prefix: \"a*\" }");
        assert!(glob.iter().any(|p| p.contains("key_prefix: `a*` holds '*'")), "{glob:?}");
    }

    #[cfg(feature = "redis")]
    #[test]
    fn checks_the_url_as_the_client_reads_it() {
        let found = problems("{ url: \"redis://127.0.0.1:6379/x\" }");
        assert!(found.iter().any(|p| p.starts_with("connectors[0].sink.redis.url: ") && p.contains("database")), "{found:?}");
    }
}
