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


/// The known name nearest to `given`, if it is near enough to be a typo of it (a few edits,
/// fewer for short names): for "did you mean `partitioning`?".
pub fn nearest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (given.chars().count() / 3).clamp(1, 3);
    known
        .into_iter()
        .filter(|k| *k != given)
        .map(|k| (edit_distance(&given.to_lowercase(), &k.to_lowercase()), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// "; did you mean `x`?" when `given` looks like a typo of one of `known`, else nothing.
pub fn did_you_mean<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    nearest(given, known).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default()
}

/// Levenshtein distance (insertions, deletions, substitutions), by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb { diagonal } else { 1 + diagonal.min(above).min(row[j]) };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_known_name_only_when_it_is_near() {
        let keys = ["id", "source", "sidecar", "partitioning", "batch", "sink", "poison"];
        assert_eq!(nearest("partitionning", keys), Some("partitioning"));
        assert_eq!(nearest("partitoning", keys), Some("partitioning"));
        assert_eq!(nearest("sourc", keys), Some("source"));
        assert_eq!(nearest("Sidecar", keys), Some("sidecar"));
        assert_eq!(nearest("sdiecar", keys), Some("sidecar"));
        assert_eq!(nearest("filter", keys), None);
        assert_eq!(nearest("x", keys), None);
        assert_eq!(did_you_mean("pol_interval_ms", ["poll_interval_ms", "batch_size", "path"]), "; did you mean `poll_interval_ms`?");
        assert_eq!(did_you_mean("whatever", ["poll_interval_ms"]), "");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
