#!/usr/bin/env bash
# Throwaway search engines for the Elasticsearch target's tests and benches: loopback only, no
# security, one node, a small heap.
#
#   scripts/elastic.sh start [elasticsearch|opensearch]  # install if needed, start, wait for a
#                                                        # green/yellow cluster; prints the URL as
#                                                        # the last line on stdout
#   scripts/elastic.sh stop [elasticsearch|opensearch]   # stop it if running
#   scripts/elastic.sh status [elasticsearch|opensearch] # "running ..." (exit 0) or "stopped" (exit 3)
#   scripts/elastic.sh url [elasticsearch|opensearch]    # print the URL
#
# The engines (the engine defaults to elasticsearch):
# - elasticsearch: Elasticsearch's own `integ-test-zip` distribution (the server with only the
#   modules its REST tests need: no ingest, painless, reindex or ILM; see
#   docs/targets/elasticsearch.md), from Maven Central with Maven
#   (`org.elasticsearch.distribution.integ-test-zip:elasticsearch`), the newest 8.x: 9.x needs
#   Java 21 and this machine has Java 17.
# - opensearch: OpenSearch's `integ-test-zip` (`org.opensearch.distribution.integ-test-zip:opensearch`).
# Both run on the system's Java (no JDK is bundled in these zips). The engines refuse to run as
# root: when this script runs as root, the engine runs as `nobody`.
#
# Environment:
#   ELASTIC_BASE_DIR     data, logs, config copies, pid and lock files
#                        (default /tmp/projector-gateway-elastic)
#   ELASTIC_TOOLS_DIR    where the distributions are unpacked (default <base dir>/tools: outside
#                        the checkout, which may sit in a folder `nobody` cannot enter, e.g.
#                        under /root or a mktemp -d folder)
#   ELASTICSEARCH_VERSION (default 8.19.21), OPENSEARCH_VERSION (default 2.19.6)
#   ELASTICSEARCH_PORT   default 9327 (transport: +100)
#   OPENSEARCH_PORT      default 9328 (transport: +100)
#   ELASTIC_HEAP         default 512m
#   ELASTIC_START_TIMEOUT_SECS  default 180
#   JAVA_HOME            the Java to run them on (default: the one `java` on PATH belongs to)
#
# Throwaway: a start (of an engine that is not running) begins with an empty data folder.
# Idempotent: `start` on a running engine only prints its URL. Concurrent calls are serialised
# with flock on a lock file per engine. Everything but the URL goes to stderr.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_DIR="${ELASTIC_BASE_DIR:-/tmp/projector-gateway-elastic}"
TOOLS_DIR="${ELASTIC_TOOLS_DIR:-$BASE_DIR/tools}"
HOST=127.0.0.1
HEAP="${ELASTIC_HEAP:-512m}"
START_TIMEOUT_SECS="${ELASTIC_START_TIMEOUT_SECS:-180}"

log() { printf 'elastic.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  cat >&2 <<EOF
usage: $0 start|stop|status|url [elasticsearch|opensearch]
  env: ELASTIC_BASE_DIR (default /tmp/projector-gateway-elastic), ELASTIC_TOOLS_DIR,
       ELASTICSEARCH_PORT (default 9327), OPENSEARCH_PORT (default 9328), ELASTIC_HEAP (default 512m)
EOF
  exit 2
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
CMD="$1"
ENGINE="${2:-elasticsearch}"
case "$ENGINE" in
  elasticsearch)
    VERSION="${ELASTICSEARCH_VERSION:-8.19.21}"
    PORT="${ELASTICSEARCH_PORT:-9327}"
    ARTIFACT="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$VERSION:zip"
    ;;
  opensearch)
    VERSION="${OPENSEARCH_VERSION:-2.19.6}"
    PORT="${OPENSEARCH_PORT:-9328}"
    ARTIFACT="org.opensearch.distribution.integ-test-zip:opensearch:$VERSION:zip"
    ;;
  *) usage ;;
esac
URL="http://$HOST:$PORT"
HOME_DIR="$TOOLS_DIR/$ENGINE-$VERSION"
DIR="$BASE_DIR/$ENGINE"
LOCK_FILE="$BASE_DIR/.$ENGINE.lock"
PID_FILE="$DIR/server.pid"
CONSOLE_LOG="$DIR/console.log"

take_lock() {
  mkdir -p "$BASE_DIR"
  # The engine runs as `nobody` under root: it must be able to enter every folder it uses,
  # whatever the umask that created them.
  chmod a+rx "$BASE_DIR"
  exec 9>>"$LOCK_FILE"
  if command -v flock >/dev/null 2>&1; then
    flock -w 900 9 || die "timed out waiting for the lock $LOCK_FILE"
  fi
}

# The pid of our engine when it runs.
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

port_open() {
  (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

java_home() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    printf '%s\n' "$JAVA_HOME"
    return
  fi
  local java
  java="$(command -v java || true)"
  [ -n "$java" ] || die "no Java found: install a JDK 17+ (Debian: openjdk-17-jdk-headless) or set JAVA_HOME"
  dirname "$(dirname "$(readlink -f "$java")")"
}

install_engine() {
  [ -x "$HOME_DIR/bin/$ENGINE" ] && return 0
  command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is needed to fetch $ARTIFACT from Maven Central"
  command -v unzip >/dev/null 2>&1 || die "unzip is needed to unpack $ARTIFACT"
  local downloads="$TOOLS_DIR/downloads"
  mkdir -p "$downloads"
  chmod a+rx "$TOOLS_DIR"
  log "fetching $ARTIFACT from Maven Central into $downloads"
  mvn -B -q -Dstyle.color=never dependency:copy -Dartifact="$ARTIFACT" -DoutputDirectory="$downloads" -Dmdep.overWriteIfNewer=true >&2 ||
    die "mvn could not fetch $ARTIFACT"
  local zip="$downloads/$ENGINE-$VERSION.zip"
  [ -f "$zip" ] || die "mvn fetched $ARTIFACT but there is no $zip"
  local unpack="$TOOLS_DIR/.unpack-$ENGINE"
  rm -rf "$unpack"
  mkdir -p "$unpack"
  unzip -q "$zip" -d "$unpack"
  rm -rf "$HOME_DIR"
  mv "$unpack/$ENGINE-$VERSION" "$HOME_DIR"
  rm -rf "$unpack"
  chmod -R a+rX "$HOME_DIR"
  [ -x "$HOME_DIR/bin/$ENGINE" ] || die "unpacked $zip but found no $HOME_DIR/bin/$ENGINE"
}

# The engine's own config folder, copied once into the instance folder (the engine writes its
# keystore there), without GC logging to a relative path. Every start begins with an empty
# cluster: nothing that tests or benches leave behind is kept (or recovered at the next start).
prepare_instance() {
  rm -rf "$DIR/data" "$DIR/tmp"
  mkdir -p "$DIR/data" "$DIR/logs" "$DIR/tmp"
  if [ ! -d "$DIR/config" ]; then
    cp -R "$HOME_DIR/config" "$DIR/config"
    sed -i '/-Xlog:gc/d;/Xloggc/d;/HeapDumpPath/d;/ErrorFile/d' "$DIR/config/jvm.options"
  fi
  if [ "$(id -u)" = 0 ]; then
    chown -R nobody:nogroup "$DIR"
  fi
}

launch() {
  local java
  java="$(java_home)"
  local -a settings=(
    -E "network.host=$HOST"
    -E "http.port=$PORT"
    -E "transport.port=$((PORT + 100))"
    -E discovery.type=single-node
    -E "cluster.name=projector-gateway-$ENGINE"
    -E "path.data=$DIR/data"
    -E "path.logs=$DIR/logs"
    # Tests fill a disk that other work shares: never make indices read-only for it.
    -E cluster.routing.allocation.disk.threshold_enabled=false
  )
  local -a env=()
  case "$ENGINE" in
    elasticsearch)
      settings+=(-E xpack.security.enabled=false)
      env=(ES_JAVA_HOME="$java" ES_PATH_CONF="$DIR/config" ES_TMPDIR="$DIR/tmp"
        ES_JAVA_OPTS="-Xms$HEAP -Xmx$HEAP")
      ;;
    opensearch)
      env=(OPENSEARCH_JAVA_HOME="$java" OPENSEARCH_PATH_CONF="$DIR/config" OPENSEARCH_TMPDIR="$DIR/tmp"
        OPENSEARCH_JAVA_OPTS="-Xms$HEAP -Xmx$HEAP")
      ;;
  esac
  local -a as_user=()
  if [ "$(id -u)" = 0 ]; then
    as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
  fi
  rm -f "$PID_FILE"
  log "starting $ENGINE $VERSION on $URL (heap $HEAP, data $DIR/data, logs $DIR/logs)"
  # -d: the engine detaches once started; -p: the server's own pid. 9>&-: it must not inherit
  # the lock's descriptor.
  (cd "$DIR" && env "${env[@]}" setsid "${as_user[@]}" "$HOME_DIR/bin/$ENGINE" -d -p "$PID_FILE" "${settings[@]}" \
    </dev/null >>"$CONSOLE_LOG" 2>&1 9>&-) || {
    log "$ENGINE failed to start; last lines of $CONSOLE_LOG and of its server log:"
    tail -n 30 "$CONSOLE_LOG" >&2 || true
    tail -n 30 "$DIR/logs/projector-gateway-$ENGINE.log" >&2 2>/dev/null || true
    exit 1
  }
}

# Waits until the cluster reports green or yellow (a single node has no replicas to assign).
wait_healthy() {
  local deadline=$((SECONDS + START_TIMEOUT_SECS))
  while true; do
    if port_open && curl -fsS --max-time 5 "$URL/_cluster/health?wait_for_status=yellow&timeout=2s" >/dev/null 2>&1; then
      return 0
    fi
    if ! running_pid >/dev/null && [ -f "$PID_FILE" ]; then
      log "$ENGINE exited during start; last lines of $DIR/logs/projector-gateway-$ENGINE.log:"
      tail -n 30 "$DIR/logs/projector-gateway-$ENGINE.log" >&2 2>/dev/null || true
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$ENGINE not healthy on $URL after ${START_TIMEOUT_SECS}s; last lines of its log:"
      tail -n 30 "$DIR/logs/projector-gateway-$ENGINE.log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.2
  done
}

cmd_start() {
  command -v curl >/dev/null 2>&1 || die "curl is needed to check the engine's health"
  take_lock
  install_engine
  local started=$SECONDS
  if pid="$(running_pid)"; then
    log "$ENGINE already running (pid $pid)"
  else
    if port_open; then
      die "something else already answers on $HOST:$PORT; stop it or set ${ENGINE^^}_PORT"
    fi
    prepare_instance
    launch
  fi
  wait_healthy
  log "ready in $((SECONDS - started)) s"
  printf '%s\n' "$URL"
}

cmd_stop() {
  take_lock
  local pid
  if ! pid="$(running_pid)"; then
    log "$ENGINE not running"
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping $ENGINE (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while running_pid >/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$ENGINE did not stop within 60s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$PID_FILE"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    echo "running on $URL (pid $pid, $ENGINE $VERSION, data $DIR/data, logs $DIR/logs)"
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
