//! The checks of a connector's new-version policy (`sidecar.on_new_version`,
//! `sidecar.rebuild_on_new_version`, `sidecar.blue_green`): the two spellings of the policy
//! agree, a blue/green rebuild is asked only of a target that can build a version beside the
//! live one (SQLite, PostgreSQL with `read_model_schema`, Elasticsearch with `index`, MongoDB),
//! and its sidecar address is one.

use super::{ConnectorConfig, OnNewVersion, SinkConfig, problem::{ConfigProblem, problem}};

/// Checks the policy of `c` (whose key path is `path`).
pub(super) fn validate(c: &ConnectorConfig, path: &str, problems: &mut Vec<ConfigProblem>) {
    let Some(sidecar) = &c.sidecar else { return };
    let at = |key: &str| format!("{path}.sidecar.{key}");
    match sidecar.on_new_version {
        Some(policy @ (OnNewVersion::Warn | OnNewVersion::BlueGreen)) if sidecar.rebuild_on_new_version => problems.push(problem(
            at("rebuild_on_new_version"),
            format!(
                "`true` (rebuild in place) contradicts `on_new_version: {}`; remove `rebuild_on_new_version` (`on_new_version` replaces it)",
                name(policy)
            ),
        )),
        _ => {}
    }
    if sidecar.new_version_policy() == OnNewVersion::BlueGreen {
        refuse_unsupported_target(&c.sink, &at("on_new_version"), problems);
    }
    let Some(blue_green) = &sidecar.blue_green else { return };
    if let Some(address) = &blue_green.sidecar {
        let endpoint = (address.starts_with("http://") || address.starts_with("https://"))
            && address.parse::<tonic::transport::Uri>().is_ok_and(|uri| uri.host().is_some());
        if !endpoint {
            problems.push(problem(
                at("blue_green.sidecar"),
                format!("`{address}` is not a gRPC endpoint; expected the new version's sidecar, e.g. `http://127.0.0.1:50052`"),
            ));
        }
    }
    if sidecar.new_version_policy() != OnNewVersion::BlueGreen {
        // The section also serves the `rebuild` command and the management API's verb, so it
        // is allowed with another policy, but only on a target that can use it.
        refuse_unsupported_target(&c.sink, &at("blue_green"), problems);
    }
}

/// A blue/green rebuild on a target that cannot build a version beside the live one.
fn refuse_unsupported_target(sink: &SinkConfig, at: &str, problems: &mut Vec<ConfigProblem>) {
    match sink {
        SinkConfig::Sqlite(_) => {}
        SinkConfig::Postgres(settings) => {
            let path = at.split(".sidecar.").next().unwrap_or(at);
            match &settings.read_model_schema {
                None => problems.push(problem(
                    format!("{path}.sink.postgres.read_model_schema"),
                    "missing; a blue/green rebuild builds the new version in a schema of its own and swaps it in by renaming \
                     schemas, so the read model must live in a schema of its own: name it here (e.g. `read_model_schema: bookings`; \
                     its readers set `search_path` to it)",
                )),
                Some(schema) if *schema == settings.schema => problems.push(problem(
                    format!("{path}.sink.postgres.read_model_schema"),
                    format!(
                        "`{schema}` is also `sink.postgres.schema`, where the gateway keeps its own tables (checkpoints, leases), \
                         which must not be swapped with the read model; use another schema for one of them"
                    ),
                )),
                Some(_) => {}
            }
        }
        SinkConfig::Elastic(settings) => {
            let path = at.split(".sidecar.").next().unwrap_or(at);
            if settings.index.is_none() {
                problems.push(problem(
                    format!("{path}.sink.elastic.index"),
                    "missing; a blue/green rebuild builds the new version in `<index>_v<version>` and swaps it in by moving the \
                     alias `<index>` (readers query it), so the read model must be the connector's index: name it here",
                ));
            }
        }
        SinkConfig::Mongo(_) => {}
        other => problems.push(problem(
            at,
            format!(
                "blue/green rebuild is not available for the {} sink yet (sqlite, postgres, elastic and mongo have it; SQL Server and Redis not yet); use `on_new_version: rebuild_in_place` \
                 (or `rebuild_on_new_version: true`) to rebuild in place, or remove this key",
                other.key()
            ),
        )),
    }
}

fn name(policy: OnNewVersion) -> &'static str {
    match policy {
        OnNewVersion::Warn => "warn",
        OnNewVersion::RebuildInPlace => "rebuild_in_place",
        OnNewVersion::BlueGreen => "blue_green",
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn problems(sidecar_extra: &str, sink: &str) -> Vec<String> {
        let yaml = format!(
            "connectors:\n  - id: a\n    source: {{ sqlite: {{ path: e.db }} }}\n    sidecar:\n      address: \"http://127.0.0.1:50051\"\n{sidecar_extra}    sink: {sink}\n"
        );
        match parse(&yaml) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn the_old_key_still_loads_and_means_rebuild_in_place() {
        let yaml = "connectors:\n  - id: a\n    source: { sqlite: { path: e.db } }\n    sidecar: { address: \"http://127.0.0.1:50051\", rebuild_on_new_version: true }\n    sink: { sqlite: { path: t.db } }\n";
        let config = parse(yaml).unwrap();
        let sidecar = config.connectors[0].sidecar.as_ref().unwrap();
        assert_eq!(sidecar.new_version_policy(), crate::config::OnNewVersion::RebuildInPlace);
        assert_eq!(sidecar.blue_green().keep_old_versions, 1);
    }

    #[test]
    fn blue_green_is_refused_where_the_target_cannot_build_beside_and_says_what_to_do() {
        let mssql = problems("      on_new_version: blue_green\n", "{ mssql: { connection_string: \"Server=tcp:127.0.0.1,1433;Database=d;User Id=sa;Password=x\" } }");
        assert_eq!(
            mssql,
            ["connectors[0].sidecar.on_new_version: blue/green rebuild is not available for the mssql sink yet (sqlite, postgres, elastic and mongo have it; \
              SQL Server and Redis not yet); use `on_new_version: rebuild_in_place` (or `rebuild_on_new_version: true`) to rebuild in place, or remove this key"],
        );
        assert!(problems("      on_new_version: blue_green\n", "{ mongo: { url: \"mongodb://127.0.0.1:27017\", database: d, collection: c } }").is_empty());
        let elastic = problems("      on_new_version: blue_green\n", "{ elastic: { url: \"http://127.0.0.1:9200\" } }");
        assert_eq!(elastic.len(), 1, "{elastic:?}");
        assert!(elastic[0].starts_with("connectors[0].sink.elastic.index: missing; "), "{elastic:?}");
        let postgres = problems("      on_new_version: blue_green\n", "{ postgres: { url: \"postgres://g@127.0.0.1/d\" } }");
        assert_eq!(postgres.len(), 1, "{postgres:?}");
        assert!(postgres[0].starts_with("connectors[0].sink.postgres.read_model_schema: missing; "), "{postgres:?}");
        assert!(problems("      on_new_version: blue_green\n", "{ sqlite: { path: t.db } }").is_empty());
        let both = problems("      on_new_version: blue_green\n      rebuild_on_new_version: true\n", "{ sqlite: { path: t.db } }");
        assert_eq!(both.len(), 1, "{both:?}");
        assert!(both[0].starts_with("connectors[0].sidecar.rebuild_on_new_version: `true` (rebuild in place) contradicts"), "{both:?}");
        let address = problems("      blue_green: { sidecar: \"127.0.0.1:1\" }\n", "{ sqlite: { path: t.db } }");
        assert_eq!(address.len(), 1, "{address:?}");
        assert!(address[0].starts_with("connectors[0].sidecar.blue_green.sidecar: `127.0.0.1:1` is not a gRPC endpoint"), "{address:?}");
    }
}
