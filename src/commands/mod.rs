//! One module per subcommand. This is the edge of the program: errors become `anyhow` with
//! context here and one clear line for the operator in `main`.

pub mod append;
pub mod caught_up;
pub mod demo;
pub mod dry_run;
pub mod new_sidecar;
pub mod progress;
pub mod reset;
pub mod run;
pub mod validate;
