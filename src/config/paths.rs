//! The file paths a connector's configuration holds: the SQLite event log and read model, the
//! `init_sql_file`s, the sidecar's TLS files, a producer sink's checkpoint file.
//!
//! A relative path in a config file is read from the directory of that file, as most tools do
//! (a `run` from another directory must not create an empty read model there): the loader
//! resolves them once, before anything checks them ([`resolve_connector`]). A connector that
//! does not come from a file (the management API) keeps its paths as given, read from the
//! gateway's current directory.
//! `validate` then checks, without connecting to anything, that what the gateway reads exists
//! and that what it creates can be created ([`check_files`]).

use std::path::{Path, PathBuf};

use super::{
    ConnectorConfig, GatewayConfig, SinkConfig, SourceConfig,
    problem::{ConfigProblem, problem},
};
use crate::sinks::checkpoint_store::CheckpointStoreConfig;

/// What the gateway does with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Reads it: it must exist.
    Read,
    /// Reads the event log: it must exist (`append` and `generate` create one).
    ReadLog,
    /// Opens it, creating it and its directories when missing (a SQLite read model).
    Create,
    /// Writes it, creating it (but not its directory) when missing (a checkpoint file).
    CreateInDirectory,
}

/// Hands each file path of `c` to `visit`, with its key path under the connector
/// (`sink.sqlite.init_sql_file`) and what the gateway does with it.
fn each_path(c: &mut ConnectorConfig, mut visit: impl FnMut(&str, &mut PathBuf, Use)) {
    if let SourceConfig::Sqlite(s) = &mut c.source {
        visit("source.sqlite.path", &mut s.path, Use::ReadLog);
    }
    if let Some(tls) = c.sidecar.as_mut().and_then(|s| s.tls.as_mut()) {
        for (key, file) in [("ca_file", &mut tls.ca_file), ("cert_file", &mut tls.cert_file), ("key_file", &mut tls.key_file)] {
            if let Some(file) = file {
                visit(&format!("sidecar.tls.{key}"), file, Use::Read);
            }
        }
    }
    let (sink, init_sql_file) = match &mut c.sink {
        SinkConfig::Sqlite(s) => {
            visit("sink.sqlite.path", &mut s.path, Use::Create);
            ("sqlite", &mut s.init_sql_file)
        }
        SinkConfig::Postgres(s) => ("postgres", &mut s.init_sql_file),
        SinkConfig::Mssql(s) => ("mssql", &mut s.init_sql_file),
        SinkConfig::Console(s) => {
            if let Some(CheckpointStoreConfig::File(file)) = &mut s.checkpoints {
                visit("sink.console.checkpoints.file", file, Use::CreateInDirectory);
            }
            return;
        }
        SinkConfig::Http(s) => {
            if let Some(CheckpointStoreConfig::File(file)) = &mut s.checkpoints {
                visit("sink.http.checkpoints.file", file, Use::CreateInDirectory);
            }
            return;
        }
        _ => return,
    };
    if let Some(file) = init_sql_file {
        visit(&format!("sink.{sink}.init_sql_file"), file, Use::Read);
    }
}

/// SQLite's names that are not files of the file system: `:memory:` and `file:` URIs.
fn is_special(path: &Path) -> bool {
    let text = path.to_string_lossy();
    text == ":memory:" || text.starts_with("file:")
}

/// Resolves every relative path of `connector` from `base` (the directory of its config file).
pub fn resolve_connector(connector: &mut ConnectorConfig, base: &Path) {
    if base.as_os_str().is_empty() {
        return;
    }
    each_path(connector, |_, path, _| {
        if path.is_relative() && !path.as_os_str().is_empty() && !is_special(path) {
            *path = base.join(&*path);
        }
    });
}

/// Resolves every relative path of `config` from `base` (the directory of the config file).
pub fn resolve_relative_to(config: &mut GatewayConfig, base: &Path) {
    for connector in &mut config.connectors {
        resolve_connector(connector, base);
    }
}

/// What can be told of the files without connecting to anything: the files the gateway reads
/// exist, and those it creates can be created. Each problem names the key path and the path
/// (as resolved).
pub fn check_files(config: &GatewayConfig) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    for (index, connector) in config.connectors.iter().enumerate() {
        let mut connector = connector.clone();
        each_path(&mut connector, |key, path, used| {
            if path.as_os_str().is_empty() || is_special(path) {
                return;
            }
            if let Some(message) = check(path, used) {
                problems.push(problem(format!("connectors[{index}].{key}"), message));
            }
        });
    }
    problems
}

/// Why the gateway could not use `path` as it will, if it could not.
fn check(path: &Path, used: Use) -> Option<String> {
    let shown = path.display();
    let metadata = std::fs::metadata(path);
    match (used, metadata) {
        (_, Ok(m)) if m.is_dir() => Some(format!("`{shown}` is a directory; expected a file")),
        (_, Ok(_)) => None,
        (Use::Read | Use::ReadLog, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Some(match used {
            Use::ReadLog => format!(
                "`{shown}`: no such file; the event log must exist (`projector-gateway append` or `generate` creates one), \
                 check the path (a relative one is read from the config file's directory)"
            ),
            _ => format!("`{shown}`: no such file (a relative path is read from the config file's directory)"),
        }),
        (Use::Read | Use::ReadLog, Err(e)) => Some(format!("`{shown}` cannot be read: {e}")),
        (Use::Create, Err(_)) => {
            // Created with its directories: the nearest existing ancestor must be a directory.
            let existing = path.ancestors().skip(1).find(|a| a.as_os_str().is_empty() || a.exists())?;
            if existing.as_os_str().is_empty() || existing.is_dir() {
                None
            } else {
                Some(format!("`{shown}` cannot be created: `{}` is not a directory", existing.display()))
            }
        }
        (Use::CreateInDirectory, Err(_)) => {
            let directory = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if directory.is_dir() {
                None
            } else {
                Some(format!("`{shown}` cannot be created: its directory `{}` does not exist", directory.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sink: &str) -> GatewayConfig {
        let sidecar = if sink.contains("console") { "" } else { "    sidecar: { address: \"http://127.0.0.1:1\" }\n" };
        super::super::parse(&format!("connectors:\n  - id: a\n    source: {{ sqlite: {{ path: events.db }} }}\n{sidecar}    sink: {sink}\n"))
            .unwrap()
    }

    fn sqlite_sink(c: &GatewayConfig) -> &crate::config::SqliteSinkConfig {
        let SinkConfig::Sqlite(s) = &c.connectors[0].sink else { panic!() };
        s
    }

    #[test]
    fn relative_paths_are_resolved_from_the_base_and_the_others_kept() {
        let mut c = config("{ sqlite: { path: read.db, init_sql_file: /etc/schema.sql } }");
        resolve_relative_to(&mut c, Path::new("/srv/gateway"));
        let SourceConfig::Sqlite(source) = &c.connectors[0].source else { panic!() };
        assert_eq!(source.path, Path::new("/srv/gateway/events.db"));
        assert_eq!(sqlite_sink(&c).path, Path::new("/srv/gateway/read.db"));
        assert_eq!(sqlite_sink(&c).init_sql_file.as_deref(), Some(Path::new("/etc/schema.sql")));

        let mut c = config("{ sqlite: { path: \":memory:\", init_sql_file: sql/schema.sql } }");
        resolve_relative_to(&mut c, Path::new("conf"));
        assert_eq!(sqlite_sink(&c).path, Path::new(":memory:"));
        assert_eq!(sqlite_sink(&c).init_sql_file.as_deref(), Some(Path::new("conf/sql/schema.sql")));

        // A config file in the current directory: nothing changes.
        let mut c = config("{ sqlite: { path: read.db } }");
        resolve_relative_to(&mut c, Path::new(""));
        assert_eq!(sqlite_sink(&c).path, Path::new("read.db"));

        let mut c = config("{ console: { checkpoints: { file: cp.json } } }");
        resolve_relative_to(&mut c, Path::new("/x"));
        let SinkConfig::Console(console) = &c.connectors[0].sink else { panic!() };
        assert_eq!(console.checkpoints, Some(CheckpointStoreConfig::File("/x/cp.json".into())));
    }

    #[test]
    fn files_read_must_exist_and_files_created_must_be_creatable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("events.db"), "").unwrap();
        std::fs::write(dir.path().join("not-a-dir"), "").unwrap();
        let mut c = config("{ sqlite: { path: new/deeper/read.db, init_sql_file: schema.sql } }");
        resolve_relative_to(&mut c, dir.path());
        let found: Vec<String> = check_files(&c).iter().map(ToString::to_string).collect();
        let schema = dir.path().join("schema.sql");
        assert_eq!(
            found,
            [format!(
                "connectors[0].sink.sqlite.init_sql_file: `{}`: no such file (a relative path is read from the config file's directory)",
                schema.display()
            )]
        );

        std::fs::write(&schema, "").unwrap();
        let mut c = config("{ sqlite: { path: not-a-dir/read.db, init_sql_file: schema.sql } }");
        resolve_relative_to(&mut c, dir.path());
        let SourceConfig::Sqlite(source) = &mut c.connectors[0].source else { panic!() };
        source.path = dir.path().join("evnts.db");
        let found: Vec<String> = check_files(&c).iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].starts_with(&format!("connectors[0].source.sqlite.path: `{}`: no such file; the event log must exist", dir.path().join("evnts.db").display())), "{found:#?}");
        assert_eq!(
            found[1],
            format!(
                "connectors[0].sink.sqlite.path: `{}` cannot be created: `{}` is not a directory",
                dir.path().join("not-a-dir/read.db").display(),
                dir.path().join("not-a-dir").display()
            )
        );

        let mut c = config("{ console: { checkpoints: { file: missing/cp.json } } }");
        resolve_relative_to(&mut c, dir.path());
        let found: Vec<String> = check_files(&c).iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("connectors[0].sink.console.checkpoints.file: `"), "{found:#?}");
        assert!(found[0].ends_with("missing` does not exist"), "{found:#?}");
    }
}
