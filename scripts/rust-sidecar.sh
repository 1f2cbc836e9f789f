#!/usr/bin/env bash
# Builds the Rust example sidecar (sidecar-examples/rust: the workspace crate `bookings-reducer`)
# so it can run as its own process, like the other examples' setup scripts.
#
#   scripts/rust-sidecar.sh          # prints the binary's path as the last line on stdout
#   scripts/rust-sidecar.sh --test   # also runs the example's unit tests (cargo test -p bookings-reducer)
#   REDUCER_TARGET=mongo "$(scripts/rust-sidecar.sh | tail -n 1)" --address 127.0.0.1:50051
#
# A debug build (cargo's default profile), in cargo's target directory (CARGO_TARGET_DIR or
# <repo>/target). Idempotent: cargo rebuilds only what changed. The build resolves features for
# the whole workspace (`--workspace --bin`), so the dependencies the gateway's tests already
# built are reused as they are. Environment: CARGO, the cargo to run (default `cargo`; set by
# `cargo test` for the tests that call this script). Everything but the path goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO="${CARGO:-cargo}"

log() { printf 'rust-sidecar.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "${1:-}" in
  "") ;;
  --test) "$CARGO" test --manifest-path "$ROOT/Cargo.toml" -p bookings-reducer >&2 || die "the unit tests failed" ;;
  *) die "unknown argument '$1'; usage: $0 [--test]" ;;
esac

"$CARGO" build --manifest-path "$ROOT/Cargo.toml" --workspace --bin bookings-reducer >&2 ||
  die "cargo build of bookings-reducer failed"

target_dir="${CARGO_TARGET_DIR:-}"
if [ -z "$target_dir" ]; then
  target_dir="$("$CARGO" metadata --manifest-path "$ROOT/Cargo.toml" --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
fi
case "$target_dir" in
  /*) ;;
  "") die "cannot tell cargo's target directory" ;;
  *) target_dir="$ROOT/$target_dir" ;;
esac
binary="$target_dir/debug/bookings-reducer"
[ -x "$binary" ] || die "no binary at $binary after the build"
log "ready: $binary"
printf '%s\n' "$binary"
