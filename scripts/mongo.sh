#!/usr/bin/env bash
# Throwaway MongoDB-wire servers for tests, benches and the demo: loopback only, no auth.
#
#   scripts/mongo.sh start secantus|ferret   # install if needed, start; prints the URL as the
#                                            # last line on stdout
#   scripts/mongo.sh stop secantus|ferret    # stop it if running
#   scripts/mongo.sh status secantus|ferret  # "running ..." (exit 0) or "stopped" (exit 3)
#   scripts/mongo.sh url secantus|ferret     # print the URL
#
# The servers:
# - secantus: SecantusDB (PyPI package `secantusdb`, WiredTiger storage) in a venv; reports
#   itself as a single-node replica set and runs multi-document transactions.
# - ferret: FerretDB v1.24.0 (Go module, built with the Go toolchain) on its SQLite backend;
#   no transactions.
#
# Environment:
#   MONGO_BASE_DIR        data, logs, pid and lock files (default /tmp/projector-gateway-mongo)
#   MONGO_TOOLS_DIR       where the servers are installed (default <repo>/target/mongo-tools:
#                         `secantus-venv/` and `gobin/`)
#   SECANTUS_PORT         default 27327
#   FERRET_PORT           default 27328
#   MONGO_START_TIMEOUT_SECS  default 60
#
# Idempotent: `start` on a running server only prints its URL. Concurrent calls are serialised
# with flock on a lock file per server. Everything but the URL goes to stderr.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_DIR="${MONGO_BASE_DIR:-/tmp/projector-gateway-mongo}"
TOOLS_DIR="${MONGO_TOOLS_DIR:-$REPO_DIR/target/mongo-tools}"
HOST=127.0.0.1
START_TIMEOUT_SECS="${MONGO_START_TIMEOUT_SECS:-60}"
SECANTUS_VERSION="${SECANTUS_VERSION:-}" # empty: the newest on PyPI
FERRET_MODULE=github.com/FerretDB/FerretDB
FERRET_VERSION=v1.24.0

log() { printf 'mongo.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  cat >&2 <<EOF
usage: $0 start|stop|status|url secantus|ferret
  env: MONGO_BASE_DIR (default /tmp/projector-gateway-mongo), MONGO_TOOLS_DIR,
       SECANTUS_PORT (default 27327), FERRET_PORT (default 27328)
EOF
  exit 2
}

[ $# -eq 2 ] || usage
CMD="$1"
SERVER="$2"
case "$SERVER" in
  secantus) PORT="${SECANTUS_PORT:-27327}"; URL="mongodb://$HOST:$PORT/?directConnection=true" ;;
  ferret) PORT="${FERRET_PORT:-27328}"; URL="mongodb://$HOST:$PORT/?directConnection=true" ;;
  *) usage ;;
esac
DIR="$BASE_DIR/$SERVER"
DATA_DIR="$DIR/data"
LOG_FILE="$DIR/server.log"
PID_FILE="$DIR/server.pid"
LOCK_FILE="$DIR/.mongo.sh.lock"
SECANTUS_VENV="$TOOLS_DIR/secantus-venv"
SECANTUS_BIN="$SECANTUS_VENV/bin/secantusd-py"
GOBIN_DIR="$TOOLS_DIR/gobin"
FERRET_BIN="$GOBIN_DIR/ferretdb"

take_lock() {
  mkdir -p "$DIR"
  exec 9>>"$LOCK_FILE"
  if command -v flock >/dev/null 2>&1; then
    flock -w 600 9 || die "timed out waiting for the lock $LOCK_FILE"
  fi
}

# True when something accepts TCP connections on the port.
port_open() {
  (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

# The pid of our server when it runs.
running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  local state
  state="$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null || true)"
  [ "$state" != "Z" ] || return 1
  printf '%s\n' "$pid"
}

install_secantus() {
  [ -x "$SECANTUS_BIN" ] && return 0
  local python
  python="$(command -v python3 || true)"
  [ -n "$python" ] || die "python3 is needed to install SecantusDB"
  log "installing SecantusDB from PyPI into $SECANTUS_VENV"
  rm -rf "$SECANTUS_VENV"
  "$python" -m venv "$SECANTUS_VENV" >&2
  local spec=secantusdb
  [ -z "$SECANTUS_VERSION" ] || spec="secantusdb==$SECANTUS_VERSION"
  "$SECANTUS_VENV/bin/pip" install --quiet --disable-pip-version-check "$spec" >&2
  [ -x "$SECANTUS_BIN" ] || die "installed secantusdb but found no $SECANTUS_BIN"
}

install_ferret() {
  [ -x "$FERRET_BIN" ] && return 0
  command -v go >/dev/null 2>&1 || die "the Go toolchain is needed to build FerretDB"
  mkdir -p "$GOBIN_DIR"
  log "installing FerretDB $FERRET_VERSION (Go module proxy) into $GOBIN_DIR"
  # Not a plain `go install module@version`, for two reasons: it also asks the proxy for the
  # module's version list (to warn about deprecation), which a proxy serving the version but
  # not the list refuses; and FerretDB embeds build/version/version.txt, which its module zip
  # ships empty (its own build writes it with `git describe`), so such a binary panics at
  # start. So: download the module, copy it, write the version file, `go install` the copy.
  local dir work
  dir="$(go mod download -json "$FERRET_MODULE@$FERRET_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -n "$dir" ] && [ -d "$dir" ] || die "go mod download $FERRET_MODULE@$FERRET_VERSION gave no directory"
  work="$TOOLS_DIR/ferretdb-src"
  rm -rf "$work"
  cp -R "$dir" "$work"
  chmod -R u+w "$work"
  printf '%s\n' "$FERRET_VERSION" >"$work/build/version/version.txt"
  (cd "$work" && GOBIN="$GOBIN_DIR" GOFLAGS=-buildvcs=false go install -trimpath ./cmd/ferretdb) >&2
  rm -rf "$work"
  [ -x "$FERRET_BIN" ] || die "built FerretDB but found no $FERRET_BIN"
}

launch() {
  mkdir -p "$DATA_DIR"
  log "starting $SERVER on $HOST:$PORT, data $DATA_DIR, log $LOG_FILE"
  # setsid: the server outlives this script; 9>&-: it must not inherit the lock's descriptor.
  case "$SERVER" in
    secantus)
      setsid "$SECANTUS_BIN" --host "$HOST" --port "$PORT" --storage-path "$DATA_DIR" \
        --log-level WARNING --cache-size 256M \
        </dev/null >>"$LOG_FILE" 2>&1 9>&- &
      ;;
    ferret)
      setsid "$FERRET_BIN" --listen-addr="$HOST:$PORT" --handler=sqlite \
        --sqlite-url="file:$DATA_DIR/" --state-dir="$DIR" --debug-addr=- \
        --telemetry=disable --log-level=warn \
        </dev/null >>"$LOG_FILE" 2>&1 9>&- &
      ;;
  esac
  echo $! >"$PID_FILE"
}

wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT_SECS))
  while ! port_open; do
    if ! running_pid >/dev/null; then
      log "$SERVER exited during start; last lines of $LOG_FILE:"
      tail -n 30 "$LOG_FILE" >&2 || true
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$SERVER not listening on $HOST:$PORT after ${START_TIMEOUT_SECS}s; last lines of $LOG_FILE:"
      tail -n 30 "$LOG_FILE" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
}

cmd_start() {
  take_lock
  case "$SERVER" in
    secantus) install_secantus ;;
    ferret) install_ferret ;;
  esac
  if pid="$(running_pid)"; then
    log "$SERVER already running (pid $pid)"
  else
    if port_open; then
      die "another server already answers on $HOST:$PORT; stop it or set ${SERVER^^}_PORT"
    fi
    launch
  fi
  wait_ready
  log "ready"
  printf '%s\n' "$URL"
}

cmd_stop() {
  [ -d "$DIR" ] || { log "not running (no $DIR)"; return 0; }
  take_lock
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping $SERVER (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while running_pid >/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$SERVER did not stop within 30s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  rm -f "$PID_FILE"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    echo "running on $HOST:$PORT (pid $pid, data $DATA_DIR, log $LOG_FILE)"
  else
    echo "stopped"
    exit 3
  fi
}

case "$CMD" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) printf '%s\n' "$URL" ;;
  *) usage ;;
esac
