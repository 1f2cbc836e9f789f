//! A configuration problem, and the small checks every section of a connector uses: the
//! loader, the Eventuous file translator and each component's settings (`sinks/<x>/config.rs`)
//! report problems the same way, each with the key path where it sits.

use std::{fmt, path::Path};

/// One thing wrong with a configuration, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Key path, e.g. `connectors[0].sink.postgres.url`; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A problem at `path`.
pub fn problem(path: impl Into<String>, message: impl Into<String>) -> ConfigProblem {
    ConfigProblem { path: path.into(), message: message.into() }
}

/// A mapping key as a key path shows it (a key that is not a string, as YAML writes it).
pub fn key_name(key: &serde_yaml::Value) -> String {
    match key {
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

/// A path that must not be empty.
pub fn non_empty_path(p: &Path, path: &str, problems: &mut Vec<ConfigProblem>) {
    if p.as_os_str().is_empty() {
        problems.push(problem(path, "empty; expected a file path"));
    }
}

/// A number that must be at least `min`.
pub fn at_least(value: u64, min: u64, path: &str, problems: &mut Vec<ConfigProblem>) {
    if value < min {
        problems.push(problem(path, format!("{value} is too small; expected at least {min}")));
    }
}

/// A plain SQL identifier (a schema or table name the gateway puts into statements).
pub fn identifier(name: &str, path: &str, problems: &mut Vec<ConfigProblem>) {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        problems.push(problem(path, format!("`{name}` is not a plain SQL identifier (letters, digits, `_`)")));
    }
}

