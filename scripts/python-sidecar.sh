#!/usr/bin/env bash
# Sets up the Python example sidecar (sidecar-examples/python) so it can run: a venv with
# requirements.txt installed and the gRPC stubs generated from proto/projection.proto.
#
#   scripts/python-sidecar.sh          # prints the venv's python as the last line on stdout
#   "$(scripts/python-sidecar.sh | tail -n 1)" sidecar-examples/python/reducer.py --address 127.0.0.1:50051
#
# Environment:
#   PYTHON_SIDECAR_VENV  where the venv lives (default sidecar-examples/python/.venv)
#   PYTHON               interpreter that creates the venv (default python3; 3.9 or newer)
#
# Idempotent and quick when nothing changed: requirements are installed only when an installed
# version differs from a pin in requirements.txt, and stubs are generated only when they are
# missing or older than the proto, generate.sh or the installed packages. Concurrent calls (e.g.
# several test binaries at once) are serialised with flock on a lock file in the venv.
# Everything but the interpreter path goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXAMPLE="$ROOT/sidecar-examples/python"
PROTO="$ROOT/proto/projection.proto"
REQUIREMENTS="$EXAMPLE/requirements.txt"
VENV="${PYTHON_SIDECAR_VENV:-$EXAMPLE/.venv}"
BASE_PYTHON="${PYTHON:-python3}"

case "$VENV" in
  /*) ;;
  *) VENV="$PWD/$VENV" ;;
esac
VENV="${VENV%/}"
VENV_PYTHON="$VENV/bin/python"
# Written after a successful install; its age tells generate whether the packages changed.
INSTALLED_STAMP="$VENV/.requirements-installed"

log() { printf 'python-sidecar.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

take_lock() {
  mkdir -p "$VENV" || die "cannot create $VENV; set PYTHON_SIDECAR_VENV elsewhere"
  exec 9>>"$VENV/.setup.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 600 9 || die "timed out after 600 s waiting for the lock $VENV/.setup.lock"
  else
    log "flock not found: concurrent setups are not serialised"
  fi
}

# A venv is usable when its python runs and has pip.
venv_ok() {
  [ -x "$VENV_PYTHON" ] && "$VENV_PYTHON" -c 'import pip' >/dev/null 2>&1
}

create_venv() {
  command -v "$BASE_PYTHON" >/dev/null 2>&1 || die "no '$BASE_PYTHON' on PATH; install Python 3.9+ or set PYTHON"
  "$BASE_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
    die "$("$BASE_PYTHON" --version 2>&1) is too old; the sidecar needs Python 3.9 or newer (set PYTHON)"
  log "creating a venv in $VENV with $("$BASE_PYTHON" --version 2>&1)"
  # A venv left half-made by an interrupted run is rebuilt, not patched. The lock file stays:
  # removing it would let a concurrent caller lock a new file while we hold the old one.
  find "$VENV" -mindepth 1 -maxdepth 1 ! -name .setup.lock -exec rm -rf {} +
  "$BASE_PYTHON" -m venv "$VENV" >&2 ||
    die "python -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
}

# Exit 0 when every `name==version` pin of requirements.txt is installed at that version.
# Reads package metadata only (no imports of the packages), so it takes a few tens of ms. Any
# line that is not a plain pin makes it answer "not satisfied" and pip decides.
requirements_satisfied() {
  "$VENV_PYTHON" - "$REQUIREMENTS" <<'EOF'
import re, sys
from importlib import metadata

for raw in open(sys.argv[1], encoding="utf-8"):
    line = raw.split("#", 1)[0].strip()
    if not line:
        continue
    pin = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!_-]+)", line)
    if not pin:
        sys.exit(1)
    try:
        if metadata.version(pin.group(1)) != pin.group(2):
            sys.exit(1)
    except metadata.PackageNotFoundError:
        sys.exit(1)
EOF
}

install_requirements() {
  if requirements_satisfied; then
    return 0
  fi
  log "installing $REQUIREMENTS into $VENV"
  "$VENV_PYTHON" -m pip install --disable-pip-version-check --no-input -r "$REQUIREMENTS" >&2 ||
    die "pip install -r $REQUIREMENTS failed"
  touch "$INSTALLED_STAMP"
}

stubs_stale() {
  local stub
  for stub in projection_pb2.py projection_pb2_grpc.py; do
    stub="$EXAMPLE/generated/$stub"
    [ -f "$stub" ] || return 0
    [ "$PROTO" -nt "$stub" ] && return 0
    [ "$EXAMPLE/generate.sh" -nt "$stub" ] && return 0
    [ -f "$INSTALLED_STAMP" ] && [ "$INSTALLED_STAMP" -nt "$stub" ] && return 0
  done
  return 1
}

generate_stubs() {
  if stubs_stale; then
    log "generating the gRPC stubs from $PROTO"
    PYTHON="$VENV_PYTHON" bash "$EXAMPLE/generate.sh" >&2 || die "generate.sh failed"
  fi
}

take_lock
venv_ok || create_venv
install_requirements
generate_stubs
log "ready: $VENV_PYTHON"
printf '%s\n' "$VENV_PYTHON"
