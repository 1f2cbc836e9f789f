//! One module per subcommand. This is the edge of the program: errors become `anyhow` with
//! context here and one clear line for the operator in `main`.

pub mod append;
pub mod caught_up;
pub mod demo;
pub mod dry_run;
pub mod new_sidecar;
pub mod parked;
pub mod progress;
pub mod rebuild;
pub mod reset;
pub mod run;
pub mod validate;

/// The connector `id` of the config file at `path`; on a bad file or an unknown id, the
/// problem is printed and the exit code for an invalid config returned.
pub fn connector_of(path: &std::path::Path, id: &str) -> Result<projector_gateway::config::ConnectorConfig, std::process::ExitCode> {
    let invalid = std::process::ExitCode::from(validate::INVALID_CONFIG);
    let config = projector_gateway::config::load_file(path).map_err(|e| {
        validate::report(&e);
        invalid
    })?;
    let ids: Vec<&str> = config.connectors.iter().map(|c| c.id.as_str()).collect();
    config.connectors.iter().find(|c| c.id == id).cloned().ok_or_else(|| {
        eprintln!("error: {}: no connector `{id}`; the file has: {}", path.display(), ids.join(", "));
        invalid
    })
}
