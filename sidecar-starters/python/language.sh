# Python: a venv in .venv (or SIDECAR_VENV) with requirements.txt, stubs in generated/.
VENV="${SIDECAR_VENV:-.venv}"
PY="$VENV/bin/python"
SIDECAR=("$PY" reducer.py)

setup() {
  if ! [ -x "$PY" ]; then
    need python3 "install Python 3.9 or newer"
    log "creating a venv in $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
  fi
  # requirements.txt is installed again only when it changed.
  local stamp
  stamp="$VENV/.installed-$(sha256sum requirements.txt | cut -c1-16)"
  if ! [ -f "$stamp" ]; then
    log "installing requirements.txt into $VENV"
    "$PY" -m pip install --disable-pip-version-check --no-input -q -r requirements.txt || die "pip install failed"
    touch "$stamp"
  fi
  if ! [ -f generated/projection_pb2_grpc.py ] || [ proto/projection.proto -nt generated/projection_pb2_grpc.py ]; then
    PYTHON="$PY" ./generate.sh
  fi
}

unit_tests() {
  "$PY" -m unittest -v
}
