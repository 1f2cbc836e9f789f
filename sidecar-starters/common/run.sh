#!/usr/bin/env bash
# From zero to a read model in one command, for the library-loans reducer sidecar:
#
#   ./run.sh          set up (on the first run: dependencies, gRPC stubs, build), start the
#                     sidecar, append the sample events of events.jsonl to a fresh events.db,
#                     run the gateway until it has caught up (into a fresh readmodel.db), print
#                     the loans table, stop the sidecar
#   ./run.sh setup    only the set-up (quick when nothing changed)
#   ./run.sh test     the set-up, then the sidecar's unit tests
#   ./run.sh serve    the set-up, then the sidecar in the foreground (Ctrl-C stops it)
#
# Environment:
#   PROJECTOR_GATEWAY  the gateway's binary (default: `projector-gateway` on PATH)
#   REDUCER_ADDRESS    HOST:PORT the sidecar listens on (default 127.0.0.1:50051, the address
#                      in gateway.yaml; another one is passed to the gateway for this run)
#
# ./run.sh starts from a fresh events.db and readmodel.db each time: they hold the sample only.
# The sidecar's output goes to sidecar.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

log() { printf 'run.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# need COMMAND HINT: fails with HINT when COMMAND is not on PATH.
need() { command -v "$1" >/dev/null 2>&1 || die "no '$1' on PATH: $2"; }

# -------------------------------------------------------------------------------------------
# The language's part: setup (dependencies, stubs, build), unit_tests, and SIDECAR, the
# command that starts the sidecar.
# -------------------------------------------------------------------------------------------
@LANGUAGE@
# -------------------------------------------------------------------------------------------

DEFAULT_ADDRESS=127.0.0.1:50051
export REDUCER_ADDRESS="${REDUCER_ADDRESS:-$DEFAULT_ADDRESS}"

find_gateway() {
  GATEWAY="${PROJECTOR_GATEWAY:-projector-gateway}"
  command -v "$GATEWAY" >/dev/null 2>&1 ||
    die "no projector-gateway: put it on PATH or set PROJECTOR_GATEWAY=/path/to/projector-gateway"
}

# Prints the loans table with whatever SQLite client there is.
show_loans() {
  local query='SELECT loan_id, book_id, member_id, lent_at, returned_at, last_position FROM loans ORDER BY loan_id'
  if command -v sqlite3 >/dev/null 2>&1; then
    sqlite3 -header -column readmodel.db "$query"
  elif command -v python3 >/dev/null 2>&1; then
    python3 - "$query" <<'EOF'
import sqlite3, sys
rows = sqlite3.connect("readmodel.db").execute(sys.argv[1])
print(" | ".join(d[0] for d in rows.description))
for row in rows:
    print(" | ".join("NULL" if v is None else str(v) for v in row))
EOF
  else
    log "readmodel.db is written; open it with any SQLite client: $query"
  fi
}

SIDECAR_PID=
stop_sidecar() {
  [ -n "$SIDECAR_PID" ] || return 0
  if kill -0 "$SIDECAR_PID" 2>/dev/null; then
    kill -TERM "$SIDECAR_PID" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$SIDECAR_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SIDECAR_PID" 2>/dev/null || true
  fi
  wait "$SIDECAR_PID" 2>/dev/null || true
  SIDECAR_PID=
}

# Starts the sidecar in the background and waits for its `listening on HOST:PORT` line.
start_sidecar() {
  log "starting the sidecar on $REDUCER_ADDRESS (output in sidecar.log)"
  "${SIDECAR[@]}" >sidecar.log 2>&1 &
  SIDECAR_PID=$!
  trap stop_sidecar EXIT
  for _ in $(seq 600); do
    grep -q '^listening on ' sidecar.log 2>/dev/null && return 0
    kill -0 "$SIDECAR_PID" 2>/dev/null || { cat sidecar.log >&2; die "the sidecar exited before it listened"; }
    sleep 0.1
  done
  cat sidecar.log >&2
  die "the sidecar did not listen within 60 s"
}

everything() {
  local started=$SECONDS config=gateway.yaml
  find_gateway
  setup
  rm -f events.db events.db-wal events.db-shm readmodel.db readmodel.db-wal readmodel.db-shm
  start_sidecar
  log "appending the sample events"
  "$GATEWAY" append --log events.db --from events.jsonl
  if [ "$REDUCER_ADDRESS" != "$DEFAULT_ADDRESS" ]; then
    # gateway.yaml names the default address; this run's copy names the sidecar's.
    config=.gateway.run.yaml
    sed "s#address: http://.*#address: http://$REDUCER_ADDRESS#" gateway.yaml >"$config"
  fi
  log "projecting: $GATEWAY run --config $config --exit-when-caught-up"
  if ! "$GATEWAY" run --config "$config" --exit-when-caught-up --quiet; then
    log "the gateway stopped with an error (above); the sidecar's last lines (sidecar.log):"
    tail -n 20 sidecar.log >&2
    exit 1
  fi
  stop_sidecar
  log "the read model (readmodel.db), built in $((SECONDS - started)) s:"
  show_loans
}

case "${1:-}" in
  "") everything ;;
  setup) setup ;;
  test) setup && unit_tests ;;
  serve) setup && exec "${SIDECAR[@]}" ;;
  -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" ;;
  *) die "unknown command '$1' (./run.sh [setup|test|serve])" ;;
esac
