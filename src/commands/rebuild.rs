//! `rebuild`: builds a new version of one connector's read model beside the live one (from the
//! start of the log, at the sidecar `--sidecar` names, else `sidecar.blue_green.sidecar`, else
//! the connector's own) and swaps it in once it has caught up; `--status` only prints the
//! versions the target records. A gateway running the connector meanwhile keeps serving the
//! live version and reopens its sink after the swap (`pipeline/blue_green.rs`).
//!
//! Exit codes: 0 swapped, or nothing to build; 1 the rebuild failed (the live read model is
//! untouched) or was stopped before the swap; 2 a bad config or connector.

use std::{path::Path, process::ExitCode, time::Duration};

use projector_gateway::pipeline::{ConnectorControl, RebuildOutcome, RebuildRequest, read_model_versions, rebuild as run_rebuild};

/// What `rebuild` is asked.
pub struct RebuildArgs<'a> {
    pub config: &'a Path,
    pub connector: &'a str,
    pub sidecar: Option<String>,
    pub status: bool,
}

pub async fn rebuild(args: RebuildArgs<'_>) -> anyhow::Result<ExitCode> {
    let found = match super::connector_of(args.config, args.connector) {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let connector = args.connector;
    if args.status {
        return match read_model_versions(&found).await {
            Ok(versions) if versions.is_empty() => {
                println!("connector `{connector}`: no blue/green rebuild recorded in the target");
                Ok(ExitCode::SUCCESS)
            }
            Ok(versions) => {
                println!("{:<12} {:<9} {:<26} place", "version", "state", "since");
                for v in versions {
                    println!("{:<12} {:<9} {:<26} {}{}", v.version, v.state.as_str(), v.changed_at, v.place, v.detail.map(|d| format!(" ({d})")).unwrap_or_default());
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(ExitCode::FAILURE)
            }
        };
    }
    let control = ConnectorControl::default();
    projector_gateway::shutdown::watch_signals(control.clone(), Duration::from_secs(30));
    match run_rebuild(found, RebuildRequest { sidecar: args.sidecar, automatic: false }, control).await {
        Ok(RebuildOutcome::Swapped { from, to, dropped }) => {
            println!(
                "connector `{connector}`: version {to} is live, it replaced version {}; dropped by policy: {}",
                from.as_deref().unwrap_or("(none recorded)"),
                if dropped.is_empty() { "none".to_string() } else { dropped.join(", ") }
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(RebuildOutcome::UpToDate { version }) => {
            println!("connector `{connector}`: the sidecar reports version {version}, which the live read model already is; nothing to build");
            Ok(ExitCode::SUCCESS)
        }
        Ok(RebuildOutcome::NoVersion) => {
            eprintln!(
                "error: connector `{connector}`: the sidecar reports no projection version (no Describe, or an empty version), so there is no new version to build"
            );
            Ok(ExitCode::FAILURE)
        }
        Ok(RebuildOutcome::Stopped) => {
            eprintln!("connector `{connector}`: stopped before the swap; the live read model is untouched, and the next `rebuild` or start resumes the rebuild");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
