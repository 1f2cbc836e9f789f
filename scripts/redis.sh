#!/usr/bin/env bash
# A throwaway Redis server for tests, benches and the demo: loopback only, no password.
#
#   scripts/redis.sh start    # install (Debian package `redis-server`) if needed, start;
#                             # prints the URL as the last line on stdout
#   scripts/redis.sh stop     # stop it if running (SHUTDOWN NOSAVE, then SIGKILL)
#   scripts/redis.sh kill     # SIGKILL it, as a crash would (the AOF keeps what was synced)
#   scripts/redis.sh status   # "running ..." (exit 0) or "stopped" (exit 3)
#   scripts/redis.sh url      # print the URL
#
# The server keeps its data in an append-only file (`appendonly yes`, `appendfsync everysec`,
# no RDB snapshots), so a restart after `kill` finds what was synced, as a production server
# configured for durability would; a MULTI/EXEC block is written to the file whole or, cut by a
# crash, dropped whole when the file is loaded.
#
# Environment:
#   REDIS_PORT        TCP port on 127.0.0.1 (default 6391, not Redis's 6379, so a developer's
#                     own server is left alone)
#   REDIS_BASE_DIR    data (`data/`), log, pid and lock files (default /tmp/projector-gateway-redis)
#   REDIS_START_TIMEOUT_SECS  default 60
#
# Idempotent: `start` on a running server only prints its URL. Concurrent calls are serialised
# with flock on a lock file beside the data. Everything but the URL goes to stderr. The tests
# run a second server (another port and folder) for the one that kills it.
set -euo pipefail

PORT="${REDIS_PORT:-6391}"
BASE_DIR="${REDIS_BASE_DIR:-/tmp/projector-gateway-redis}"
HOST=127.0.0.1
START_TIMEOUT_SECS="${REDIS_START_TIMEOUT_SECS:-60}"
DATA_DIR="$BASE_DIR/data"
LOG_FILE="$BASE_DIR/server.log"
PID_FILE="$BASE_DIR/server.pid"
LOCK_FILE="$BASE_DIR/.redis.sh.lock"
URL="redis://$HOST:$PORT/0"

log() { printf 'redis.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  cat >&2 <<EOF
usage: $0 start|stop|kill|status|url
  env: REDIS_PORT (default 6391), REDIS_BASE_DIR (default /tmp/projector-gateway-redis)
EOF
  exit 2
}

is_root() { [ "$(id -u)" -eq 0 ]; }

install_redis() {
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
  log "no redis-server found; installing Debian package 'redis-server'"
  local sudo=()
  if ! is_root; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install Redis (apt-get install redis-server) first"
    sudo=(sudo)
  fi
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: install redis-server and redis-cli"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server >&2
  # The package starts a system service on 6379; ours runs on its own port and is not it.
  command -v redis-server >/dev/null 2>&1 || die "installed 'redis-server' but found no redis-server on PATH"
}

take_lock() {
  mkdir -p "$BASE_DIR"
  exec 9>>"$LOCK_FILE"
  if command -v flock >/dev/null 2>&1; then
    flock -w 120 9 || die "timed out waiting for the lock $LOCK_FILE"
  fi
}

# The pid of our server when it runs.
running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid state
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state="$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null || true)"
  [ "$state" != "Z" ] || return 1
  printf '%s\n' "$pid"
}

# True when something accepts TCP connections on the port.
port_open() {
  (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

# PONG once the dataset is loaded (a server replaying its AOF answers LOADING).
answers() {
  [ "$(redis-cli -h "$HOST" -p "$PORT" ping 2>/dev/null)" = PONG ]
}

launch() {
  mkdir -p "$DATA_DIR"
  log "starting redis-server on $HOST:$PORT, data $DATA_DIR, log $LOG_FILE"
  # setsid: the server outlives this script; 9>&-: it must not inherit the lock's descriptor.
  # Not --daemonize: the pid written below is the server's own.
  setsid redis-server --bind "$HOST" --port "$PORT" --protected-mode yes \
    --dir "$DATA_DIR" --appendonly yes --appendfsync everysec --save "" \
    --logfile "$LOG_FILE" --loglevel warning --databases 16 \
    </dev/null >>"$LOG_FILE" 2>&1 9>&- &
  echo $! >"$PID_FILE"
}

wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT_SECS))
  while ! answers; do
    if ! running_pid >/dev/null; then
      log "redis-server exited during start; last lines of $LOG_FILE:"
      tail -n 30 "$LOG_FILE" >&2 || true
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "redis-server not answering on $HOST:$PORT after ${START_TIMEOUT_SECS}s; last lines of $LOG_FILE:"
      tail -n 30 "$LOG_FILE" >&2 || true
      exit 1
    fi
    sleep 0.05
  done
}

cmd_start() {
  install_redis
  take_lock
  if pid="$(running_pid)"; then
    log "already running (pid $pid)"
  else
    if port_open; then
      die "another server already answers on $HOST:$PORT; stop it or set REDIS_PORT"
    fi
    launch
  fi
  wait_ready
  log "ready"
  printf '%s\n' "$URL"
}

# Waits for the server's process to be gone, killing it after `$1` seconds.
wait_gone() {
  local pid="$1" deadline=$((SECONDS + $2))
  while running_pid >/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "redis-server (pid $pid) still running; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 30))
    fi
    sleep 0.05
  done
  rm -f "$PID_FILE"
}

cmd_stop() {
  [ -d "$BASE_DIR" ] || { log "not running (no $BASE_DIR)"; return 0; }
  take_lock
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping redis-server (pid $pid)"
  redis-cli -h "$HOST" -p "$PORT" shutdown nosave >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$pid" 30
}

cmd_kill() {
  [ -d "$BASE_DIR" ] || { log "not running (no $BASE_DIR)"; return 0; }
  take_lock
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    return 0
  fi
  log "killing redis-server (pid $pid) with SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" 30
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

[ $# -eq 1 ] || usage
case "$1" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  kill) cmd_kill ;;
  status) cmd_status ;;
  url) printf '%s\n' "$URL" ;;
  *) usage ;;
esac
