#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests, benches and the demo: loopback only, trust auth.
#
#   scripts/postgres.sh start    # install (Debian packages) if needed, init, start, create
#                                # role+db; prints the URL as the only line on stdout
#   scripts/postgres.sh stop     # stop it if running
#   scripts/postgres.sh status   # "running ..." (exit 0) or "stopped" (exit 3)
#   scripts/postgres.sh url      # print the URL
#
# Environment:
#   PG_PORT      TCP port on 127.0.0.1 (default 54329)
#   PG_DATA_DIR  cluster directory (default /tmp/projector-gateway-pg/data); its parent holds
#                the unix socket, the server log (postgres.log) and a lock file
#   PG_BIN       directory holding pg_ctl, initdb, postgres, psql, pg_isready (default: found
#                under /usr/lib/postgresql/*/bin, else from PATH)
#
# TLS (optional; for a cluster of its own, e.g. PG_PORT=54339
# PG_DATA_DIR=/tmp/projector-gateway-pg-tls/data, never the shared one while tests use it):
#   PG_SSL_CERT_FILE, PG_SSL_KEY_FILE  server certificate (chain) and key, PEM: copied into the
#                cluster directory (owned by the server's OS user, key mode 0600) and `ssl = on`;
#                TCP connections must then use TLS (pg_hba `hostssl` lines only)
#   PG_SSL_CA_FILE   CA certificate(s) the server verifies client certificates with
#   PG_SSL_CERT_USER a role (created, LOGIN, not superuser) that must log in with a client
#                certificate whose CN is its name (`hostssl ... cert`); needs PG_SSL_CA_FILE
# `start` on a running cluster whose TLS files or rules differ from these restarts it.
#
# Idempotent: `start` on a running server only makes sure the role and database exist.
# Concurrent calls are serialised with flock on a lock file beside the cluster.
# Everything but the URL goes to stderr.
set -euo pipefail

PG_PORT="${PG_PORT:-54329}"
PG_DATA_DIR="${PG_DATA_DIR:-/tmp/projector-gateway-pg/data}"
PG_HOST=127.0.0.1
DB_USER=gateway
DB_PASSWORD=gateway
DB_NAME=gateway
START_TIMEOUT_SECS="${PG_START_TIMEOUT_SECS:-60}"
PG_SSL_CERT_FILE="${PG_SSL_CERT_FILE:-}"
PG_SSL_KEY_FILE="${PG_SSL_KEY_FILE:-}"
PG_SSL_CA_FILE="${PG_SSL_CA_FILE:-}"
PG_SSL_CERT_USER="${PG_SSL_CERT_USER:-}"

# Normalise the data dir to an absolute path without a trailing slash.
case "$PG_DATA_DIR" in
  /*) ;;
  *) PG_DATA_DIR="$PWD/$PG_DATA_DIR" ;;
esac
PG_DATA_DIR="${PG_DATA_DIR%/}"
BASE_DIR="$(dirname "$PG_DATA_DIR")"
SOCKET_DIR="$BASE_DIR"
LOG_FILE="$BASE_DIR/postgres.log"
LOCK_FILE="$BASE_DIR/.postgres.sh.lock"
URL="postgres://${DB_USER}:${DB_PASSWORD}@${PG_HOST}:${PG_PORT}/${DB_NAME}"

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  cat >&2 <<EOF
usage: $0 start|stop|status|url
  env: PG_PORT (default 54329), PG_DATA_DIR (default /tmp/projector-gateway-pg/data), PG_BIN
EOF
  exit 2
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Runs a command as the OS user that owns the cluster: `postgres` when we are root (the server
# refuses to run as root), ourselves otherwise. Runs from / so that a cwd the postgres user
# cannot read (e.g. /root) produces no warnings.
as_pg() {
  if is_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

# Sets PG_BIN to the directory with the server binaries; returns 1 when there is none.
find_bin() {
  if [ -n "${PG_BIN:-}" ]; then
    [ -x "$PG_BIN/pg_ctl" ] || die "PG_BIN=$PG_BIN holds no pg_ctl"
    return 0
  fi
  local dir best=""
  # Highest major version first (sort -V on the version component).
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
    if [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
      best="$dir"
      break
    fi
  done
  if [ -z "$best" ]; then
    local p
    # /usr/bin/pg_ctlcluster & co. are Debian wrappers; a real pg_ctl elsewhere on PATH is fine.
    if p="$(command -v pg_ctl 2>/dev/null)"; then
      p="$(readlink -f "$p")"
      dir="$(dirname "$p")"
      if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
        best="$dir"
      fi
    fi
  fi
  [ -n "$best" ] || return 1
  PG_BIN="$best"
}

install_postgres() {
  log "no PostgreSQL server binaries found; installing Debian package 'postgresql'"
  local sudo=()
  if ! is_root; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install PostgreSQL (apt-get install postgresql) first"
    sudo=(sudo)
  fi
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: install PostgreSQL server binaries and set PG_BIN"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2
  find_bin || die "installed 'postgresql' but found no pg_ctl under /usr/lib/postgresql/*/bin"
}

ensure_bin() {
  find_bin || install_postgres
  if is_root && ! id postgres >/dev/null 2>&1; then
    die "running as root but there is no 'postgres' OS user (the Debian package creates it)"
  fi
}

# Serialises concurrent calls (fd 9 stays open until the script exits).
take_lock() {
  exec 9>>"$LOCK_FILE"
  if command -v flock >/dev/null 2>&1; then
    flock -w 120 9 || die "timed out waiting for the lock $LOCK_FILE"
  fi
}

# The base dir holds the socket, the log and the lock; the cluster user must own it.
prepare_base_dir() {
  mkdir -p "$BASE_DIR"
  if is_root; then
    chown postgres: "$BASE_DIR"
    chmod 0755 "$BASE_DIR"
    # Every ancestor must be traversable by the postgres user.
    as_pg test -w "$BASE_DIR" ||
      die "the postgres OS user cannot write $BASE_DIR (is a parent directory private?); set PG_DATA_DIR elsewhere, e.g. under /tmp"
  fi
}

cluster_running() {
  [ -f "$PG_DATA_DIR/PG_VERSION" ] || return 1
  # A postmaster killed -9 whose parent has not reaped it yet still "exists" for pg_ctl status
  # and for the server's own lock-file check; treat a zombie as gone and drop its pid file.
  local pid state
  if [ -f "$PG_DATA_DIR/postmaster.pid" ]; then
    pid="$(head -n 1 "$PG_DATA_DIR/postmaster.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
      state="$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null || true)"
      if [ "$state" = "Z" ]; then
        log "postmaster $pid is a zombie; removing its stale postmaster.pid"
        rm -f "$PG_DATA_DIR/postmaster.pid"
        return 1
      fi
    fi
  fi
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA_DIR" status >/dev/null 2>&1
}

# 0 = accepting connections, 1 = rejecting (starting up), 2 = no response.
isready() {
  local rc=0
  "$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -t 2 >/dev/null 2>&1 || rc=$?
  return "$rc"
}

init_cluster() {
  log "initialising a new cluster in $PG_DATA_DIR"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA_DIR" -U postgres --auth=trust -E UTF8 --no-locale >&2
  # Loopback and the private socket only; trust everywhere (throwaway test server).
  as_pg tee "$PG_DATA_DIR/pg_hba.conf" >/dev/null <<'EOF'
# projector-gateway test server: loopback only, trust auth.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  trust
host    all       all   ::1/128       trust
EOF
  as_pg tee -a "$PG_DATA_DIR/postgresql.conf" >/dev/null <<'EOF'

# --- projector-gateway test settings (scripts/postgres.sh) ---
include_if_exists = 'projector-gateway.conf'
EOF
}

# Rewritten at every start so that PG_PORT / PG_DATA_DIR changes take effect.
write_settings() {
  as_pg tee "$PG_DATA_DIR/projector-gateway.conf" >/dev/null <<EOF
# Written by scripts/postgres.sh at every start; edits are lost.
listen_addresses = '$PG_HOST'
port = $PG_PORT
unix_socket_directories = '$SOCKET_DIR'
max_connections = 200
shared_buffers = 128MB
timezone = 'UTC'
log_timezone = 'UTC'
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  if tls_enabled; then
    as_pg tee -a "$PG_DATA_DIR/projector-gateway.conf" >/dev/null <<EOF
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_ca_file = '$([ -n "$PG_SSL_CA_FILE" ] && echo root.crt)'
EOF
  fi
}

tls_enabled() { [ -n "$PG_SSL_CERT_FILE" ]; }

check_tls_env() {
  tls_enabled || {
    [ -z "$PG_SSL_KEY_FILE$PG_SSL_CA_FILE$PG_SSL_CERT_USER" ] || die "PG_SSL_KEY_FILE, PG_SSL_CA_FILE and PG_SSL_CERT_USER need PG_SSL_CERT_FILE"
    return 0
  }
  [ -n "$PG_SSL_KEY_FILE" ] || die "PG_SSL_CERT_FILE needs PG_SSL_KEY_FILE"
  local f
  for f in "$PG_SSL_CERT_FILE" "$PG_SSL_KEY_FILE" ${PG_SSL_CA_FILE:+"$PG_SSL_CA_FILE"}; do
    [ -r "$f" ] || die "cannot read $f"
  done
  if [ -n "$PG_SSL_CERT_USER" ]; then
    [ -n "$PG_SSL_CA_FILE" ] || die "PG_SSL_CERT_USER needs PG_SSL_CA_FILE (the CA of the client certificates)"
    [[ "$PG_SSL_CERT_USER" =~ ^[a-z_][a-z0-9_]*$ ]] || die "PG_SSL_CERT_USER must be a plain lower-case role name"
  fi
}

# The pg_hba.conf of a TLS cluster: the private socket trusted, TCP (loopback) only over TLS.
tls_hba() {
  echo "# Written by scripts/postgres.sh (PG_SSL_*) at every start: loopback only, TCP only over TLS."
  echo "# TYPE  DATABASE  USER  ADDRESS       METHOD"
  echo "local   all       all                 trust"
  if [ -n "$PG_SSL_CERT_USER" ]; then
    echo "hostssl all       $PG_SSL_CERT_USER  127.0.0.1/32  cert"
    echo "hostssl all       $PG_SSL_CERT_USER  ::1/128       cert"
  fi
  echo "hostssl all       all   127.0.0.1/32  trust"
  echo "hostssl all       all   ::1/128       trust"
}

# 0 when the cluster already has these TLS files and rules.
tls_up_to_date() {
  cmp -s "$PG_SSL_CERT_FILE" "$PG_DATA_DIR/server.crt" &&
    cmp -s "$PG_SSL_KEY_FILE" "$PG_DATA_DIR/server.key" &&
    { [ -z "$PG_SSL_CA_FILE" ] || cmp -s "$PG_SSL_CA_FILE" "$PG_DATA_DIR/root.crt"; } &&
    { [ -n "$PG_SSL_CA_FILE" ] || [ ! -e "$PG_DATA_DIR/root.crt" ]; } &&
    [ "$(tls_hba)" = "$(cat "$PG_DATA_DIR/pg_hba.conf")" ]
}

# Copies the TLS files into the cluster directory for the server's OS user (which may not be
# able to read them where they are) and writes the TLS rules.
write_tls() {
  local owner=()
  if is_root; then
    owner=(-o postgres -g postgres)
  fi
  install "${owner[@]}" -m 0644 "$PG_SSL_CERT_FILE" "$PG_DATA_DIR/server.crt"
  install "${owner[@]}" -m 0600 "$PG_SSL_KEY_FILE" "$PG_DATA_DIR/server.key"
  if [ -n "$PG_SSL_CA_FILE" ]; then
    install "${owner[@]}" -m 0644 "$PG_SSL_CA_FILE" "$PG_DATA_DIR/root.crt"
  else
    rm -f "$PG_DATA_DIR/root.crt"
  fi
  tls_hba | as_pg tee "$PG_DATA_DIR/pg_hba.conf" >/dev/null
}

start_server() {
  write_settings
  if tls_enabled; then
    write_tls
  fi
  log "starting PostgreSQL ($PG_BIN) on $PG_HOST:$PG_PORT, log $LOG_FILE"
  # 9>&-: the server must not inherit the lock's descriptor, or it would hold the lock forever.
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA_DIR" -l "$LOG_FILE" -w -t "$START_TIMEOUT_SECS" start >&2 9>&-; then
    log "pg_ctl start failed; last lines of $LOG_FILE:"
    tail -n 30 "$LOG_FILE" >&2 || true
    exit 1
  fi
}

wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT_SECS)) rc
  while :; do
    rc=0
    isready || rc=$?
    [ "$rc" -eq 0 ] && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "server on $PG_HOST:$PG_PORT not ready after ${START_TIMEOUT_SECS}s (pg_isready exit $rc); last lines of $LOG_FILE:"
      tail -n 30 "$LOG_FILE" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
}

psql_admin() {
  # Over the private unix socket as the bootstrap superuser (trust auth).
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PG_PORT" -U postgres -d postgres "$@"
}

ensure_role_and_db() {
  local has
  has="$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")"
  if [ "$has" != "1" ]; then
    log "creating role $DB_USER"
    psql_admin -c "CREATE ROLE $DB_USER LOGIN SUPERUSER PASSWORD '$DB_PASSWORD'" >&2
  fi
  has="$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")"
  if [ "$has" != "1" ]; then
    log "creating database $DB_NAME"
    psql_admin -c "CREATE DATABASE $DB_NAME OWNER $DB_USER" >&2
  fi
  if [ -n "$PG_SSL_CERT_USER" ]; then
    has="$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_SSL_CERT_USER'")"
    if [ "$has" != "1" ]; then
      log "creating role $PG_SSL_CERT_USER (client certificate login)"
      psql_admin -c "CREATE ROLE $PG_SSL_CERT_USER LOGIN" >&2
    fi
  fi
}

cmd_start() {
  check_tls_env
  ensure_bin
  prepare_base_dir
  take_lock
  if cluster_running && tls_enabled && ! tls_up_to_date; then
    log "restarting ($PG_DATA_DIR) with new TLS files or rules"
    write_settings
    write_tls
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA_DIR" -l "$LOG_FILE" -m fast -w -t "$START_TIMEOUT_SECS" restart >&2 9>&-; then
      log "pg_ctl restart failed; last lines of $LOG_FILE:"
      tail -n 30 "$LOG_FILE" >&2 || true
      exit 1
    fi
  elif cluster_running; then
    log "already running ($PG_DATA_DIR)"
  else
    local rc=0
    isready || rc=$?
    if [ "$rc" -ne 2 ]; then
      die "another server already answers on $PG_HOST:$PG_PORT (not the cluster in $PG_DATA_DIR); stop it or set PG_PORT"
    fi
    if [ ! -f "$PG_DATA_DIR/PG_VERSION" ]; then
      if [ -d "$PG_DATA_DIR" ] && [ -n "$(ls -A "$PG_DATA_DIR" 2>/dev/null)" ]; then
        die "$PG_DATA_DIR exists, is not empty and holds no cluster; remove it or set PG_DATA_DIR"
      fi
      init_cluster
    fi
    start_server
  fi
  wait_ready
  ensure_role_and_db
  log "ready"
  printf '%s\n' "$URL"
}

cmd_stop() {
  ensure_bin
  [ -d "$BASE_DIR" ] || { log "not running (no $BASE_DIR)"; return 0; }
  take_lock
  if cluster_running; then
    log "stopping ($PG_DATA_DIR)"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA_DIR" -m fast -w -t "$START_TIMEOUT_SECS" stop >&2
  else
    log "not running"
  fi
}

cmd_status() {
  if ! find_bin; then
    echo "stopped (PostgreSQL is not installed)"
    exit 3
  fi
  if cluster_running; then
    echo "running on $PG_HOST:$PG_PORT (data $PG_DATA_DIR, log $LOG_FILE)"
  else
    echo "stopped"
    exit 3
  fi
}

[ $# -eq 1 ] || usage
case "$1" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) printf '%s\n' "$URL" ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
