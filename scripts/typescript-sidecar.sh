#!/usr/bin/env bash
# Sets up the TypeScript example sidecar (sidecar-examples/typescript) so it can run: installs
# the pinned npm dependencies (npm ci), generates the stubs from proto/projection.proto (buf +
# ts-proto, both npm packages: no protoc needed) and compiles with tsc. Prints, as the last line
# on stdout, the absolute path of a launcher that starts the sidecar with the arguments it gets:
#
#   scripts/typescript-sidecar.sh            # set up; prints the launcher
#   scripts/typescript-sidecar.sh --test     # set up, then run the unit tests (node:test)
#   "$(scripts/typescript-sidecar.sh | tail -n 1)" --address 127.0.0.1:50051
#
# Environment: NODE, the Node.js binary to build and run with (default: node on PATH; 20 or
# newer); npm comes from PATH. The other TypeScript examples are set up by this same script
# through their own wrappers (scripts/typescript-eventuous-sidecar.sh), which set TS_EXAMPLE
# (folder under sidecar-examples/), TS_LAUNCHER (launcher name), TS_STUBS (generated stubs
# folder), TS_ENTRY (compiled entry point) and TS_SCRIPT (name in messages).
#
# Idempotent and quick when nothing changed: each step keeps a stamp holding a hash of its
# inputs and runs again only when they changed (package-lock.json for npm ci; the proto and
# buf.gen.yaml for the stubs; the TypeScript sources and tsconfig.json for the build).
# Concurrent calls (e.g. several test binaries at once) are serialised with flock. The build
# goes to a temporary folder that replaces dist/ whole, so a sidecar starting meanwhile never
# loads half a build. Everything but the launcher path goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXAMPLE="$ROOT/sidecar-examples/${TS_EXAMPLE:-typescript}"
PROTO_DIR="$ROOT/proto"
LAUNCHER_NAME="${TS_LAUNCHER:-bookings-reducer}"
LAUNCHER="$EXAMPLE/dist/$LAUNCHER_NAME"
ENTRY="${TS_ENTRY:-dist/src/main.js}"
SCRIPT="${TS_SCRIPT:-typescript-sidecar.sh}"
DEPS_STAMP="$EXAMPLE/node_modules/.setup-stamp"
STUBS_STAMP="$EXAMPLE/${TS_STUBS:-src/gen}/.setup-stamp"
BUILD_STAMP="$EXAMPLE/dist/.setup-stamp"

log() { printf '%s: %s\n' "$SCRIPT" "$*" >&2; }
die() { log "error: $*"; exit 1; }

run_tests=0
for arg in "$@"; do
  case "$arg" in
    --test) run_tests=1 ;;
    -h | --help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown argument '$arg' (usage: scripts/$SCRIPT [--test])" ;;
  esac
done

NODE_BIN="$(command -v "${NODE:-node}" || true)"
[ -n "$NODE_BIN" ] || die "no Node.js ('${NODE:-node}') on PATH; install Node.js 20 or newer, or set NODE"
"$NODE_BIN" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  die "Node.js $("$NODE_BIN" --version) is too old; the sidecar needs 20 or newer (set NODE)"
command -v npm >/dev/null 2>&1 || die "no npm on PATH (it comes with Node.js)"
# npm, buf and the ts-proto plugin run with the chosen node first on PATH.
export PATH="$EXAMPLE/node_modules/.bin:$(dirname "$NODE_BIN"):$PATH"

take_lock() {
  exec 9>>"$EXAMPLE/.setup.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 600 9 || die "timed out after 600 s waiting for the lock $EXAMPLE/.setup.lock"
  else
    log "flock not found: concurrent setups are not serialised"
  fi
}

# A hash of the given files' contents (and names), for the stamps.
hash_files() {
  (cd "$EXAMPLE" && sha256sum "$@" | sha256sum | cut -d' ' -f1)
}

stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

install_dependencies() {
  local want
  want="$(hash_files package.json package-lock.json) node-$("$NODE_BIN" --version)"
  stamp_ok "$DEPS_STAMP" "$want" && return 0
  log "installing the npm dependencies (npm ci)"
  # --ignore-scripts: no package needs an install script (buf's binary comes in its
  # platform package), and none may download anything.
  (cd "$EXAMPLE" && npm ci --ignore-scripts --no-audit --no-fund --prefer-offline) >&2 ||
    die "npm ci failed in $EXAMPLE"
  printf '%s\n' "$want" >"$DEPS_STAMP"
}

generate_stubs() {
  local want
  want="$(hash_files "$PROTO_DIR/projection.proto" buf.gen.yaml "$DEPS_STAMP")"
  stamp_ok "$STUBS_STAMP" "$want" && return 0
  log "generating the stubs from $PROTO_DIR/projection.proto"
  (cd "$EXAMPLE" && buf generate "$PROTO_DIR" --template buf.gen.yaml) >&2 || die "buf generate failed"
  printf '%s\n' "$want" >"$STUBS_STAMP"
}

build() {
  local want tmp sources
  mapfile -t sources < <(cd "$EXAMPLE" && find src test -type f -name '*.ts' | LC_ALL=C sort)
  want="$(hash_files tsconfig.json "$DEPS_STAMP" "${sources[@]}") $NODE_BIN"
  stamp_ok "$BUILD_STAMP" "$want" && [ -x "$LAUNCHER" ] && return 0
  log "compiling with tsc"
  tmp="$(mktemp -d "$EXAMPLE/.dist.XXXXXX")"
  chmod 755 "$tmp" # mktemp makes it private; the build is for whoever runs the sidecar
  (cd "$EXAMPLE" && tsc -p tsconfig.json --outDir "$tmp") >&2 || { rm -rf "$tmp"; die "tsc failed"; }
  cat >"$tmp/$LAUNCHER_NAME" <<EOF
#!/bin/sh
# Written by scripts/$SCRIPT: starts the sidecar of $EXAMPLE.
exec "$NODE_BIN" "$EXAMPLE/$ENTRY" "\$@"
EOF
  chmod 755 "$tmp/$LAUNCHER_NAME"
  printf '%s\n' "$want" >"$tmp/.setup-stamp"
  rm -rf "$EXAMPLE/.dist.old"
  if [ -d "$EXAMPLE/dist" ]; then mv "$EXAMPLE/dist" "$EXAMPLE/.dist.old"; fi
  mv "$tmp" "$EXAMPLE/dist"
  rm -rf "$EXAMPLE/.dist.old"
}

unit_tests() {
  log "running the unit tests (node --test)"
  (cd "$EXAMPLE" && "$NODE_BIN" --test dist/test/*.test.js) >&2 || die "unit tests failed"
}

take_lock
install_dependencies
generate_stubs
build
[ "$run_tests" = 1 ] && unit_tests
log "ready: $LAUNCHER"
printf '%s\n' "$LAUNCHER"
