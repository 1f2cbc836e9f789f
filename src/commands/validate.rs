//! `validate`: loads a config and prints every problem, or a one-line summary.

use std::{path::Path, process::ExitCode};

use projector_gateway::config::{self, ConfigError};

/// Exit code for an invalid configuration (distinct from a runtime failure).
pub const INVALID_CONFIG: u8 = 2;

pub fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    match config::load_file(path) {
        Ok(config) => {
            let ids: Vec<_> = config.connectors.iter().map(|c| c.id.as_str()).collect();
            println!("{}: ok, {} connector(s): {}", path.display(), ids.len(), ids.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            report(&e);
            Ok(ExitCode::from(INVALID_CONFIG))
        }
    }
}

/// Prints a configuration error, one problem per line.
pub fn report(error: &ConfigError) {
    eprintln!("error: {error}");
}
