# Rust: `cargo build` generates the stubs from proto/ (build.rs, with protox and tonic-build:
# no protoc needed) and builds target/debug/library-loans.
SIDECAR=("${CARGO_TARGET_DIR:-target}/debug/library-loans")

setup() {
  need cargo "install Rust (https://rustup.rs)"
  cargo build || die "cargo build failed"
}

unit_tests() {
  cargo test
}
