//! `validate`: loads a config and prints every problem, or a one-line summary and, offline,
//! what a connector taking over an Eventuous checkpoint will do at its first start.

use std::{path::Path, process::ExitCode};

use projector_gateway::config::{self, ConfigError};

/// Exit code for an invalid configuration (distinct from a runtime failure).
pub const INVALID_CONFIG: u8 = 2;

pub fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    match config::load_file(path) {
        Ok(config) => {
            let ids: Vec<_> = config.connectors.iter().map(|c| c.id.as_str()).collect();
            println!("{}: ok, {} connector(s): {}", path.display(), ids.len(), ids.join(", "));
            for c in &config.connectors {
                if let Some(checkpoint) = c.eventuous_checkpoint.as_ref().and_then(|e| e.resolve(&c.sink)) {
                    println!(
                        "connector {}: on its first start (no checkpoint of its own) resumes after the Eventuous checkpoint `{}` \
                         in the {}, or starts from the beginning of the log if there is none",
                        c.id, checkpoint.id, checkpoint.place
                    );
                }
            }
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
