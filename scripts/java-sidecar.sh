#!/usr/bin/env bash
# Sets up the Java example sidecar (sidecar-examples/java) so it can run: resolves its
# dependencies from Maven Central, generates the gRPC stubs from proto/projection.proto (protoc
# and protoc-gen-grpc-java come from Maven Central too), builds the shaded jar, and writes a
# launcher script beside it.
#
#   scripts/java-sidecar.sh            # prints the launcher's path as the last line on stdout
#   scripts/java-sidecar.sh --test     # the same, after running the JUnit tests (exit 1 if one fails)
#   "$(scripts/java-sidecar.sh | tail -n 1)" --address 127.0.0.1:50051
#
# Environment:
#   JAVA_HOME                 the JDK to build and run with (default: `java` on PATH); 17 or newer
#   MVN                       the Maven command (default: mvn)
#   JAVA_SIDECAR_MAVEN_REPO   local Maven repository (default: Maven's own, ~/.m2/repository)
#
# Idempotent and quick when nothing changed: the jar is rebuilt only when a hash of its inputs
# (pom.xml, src/main, the proto, this script, the java used) differs from the one recorded by the
# last successful build, and Maven runs offline when that pom's dependencies were resolved before.
# Concurrent calls (e.g. several tests at once) are serialised with flock. Everything but the
# launcher path goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="$ROOT/scripts/java-sidecar.sh"
EXAMPLE="$ROOT/sidecar-examples/java"
PROTO="$ROOT/proto/projection.proto"
TARGET="$EXAMPLE/target"
JAR="$TARGET/bookings-reducer.jar"
LAUNCHER="$EXAMPLE/bookings-reducer"
# Stamps, kept in target/ (and only they survive a rebuild there; see clean_outputs).
# The hash of the inputs of the jar in target/, written after a successful build:
BUILT_STAMP="$TARGET/.stamp-inputs"
# The hash of the pom whose dependencies are in the local repository, with the kind of run that
# resolved them appended (-build: to build the jar; -test: to run the tests too):
RESOLVED_STAMP="$TARGET/.stamp-resolved"

log() { printf 'java-sidecar.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$SCRIPT" | sed '$d' | sed 's/^# \{0,1\}//' >&2
}

run_tests=false
for arg in "$@"; do
  case "$arg" in
    --test) run_tests=true ;;
    -h | --help) usage; exit 0 ;;
    *) usage; die "unknown argument '$arg'" ;;
  esac
done

take_lock() {
  exec 9>>"$EXAMPLE/.setup.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 1800 9 || die "timed out after 30 min waiting for the lock $EXAMPLE/.setup.lock"
  else
    log "flock not found: concurrent setups are not serialised"
  fi
}

# Sets JAVA to the java binary to build and run with, and checks that it is 17 or newer.
find_java() {
  if [ -n "${JAVA_HOME:-}" ]; then
    JAVA="$JAVA_HOME/bin/java"
    [ -x "$JAVA" ] || die "JAVA_HOME=$JAVA_HOME has no bin/java"
  else
    JAVA="$(command -v java)" || die "no 'java' on PATH; install a JDK 17+ (apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
  fi
  local spec
  spec="$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')"
  case "$spec" in
    1.* | 9 | 1[0-6] | "") die "$JAVA is Java ${spec:-of unknown version}; the sidecar needs 17 or newer (set JAVA_HOME)" ;;
  esac
}

find_maven() {
  MVN="${MVN:-mvn}"
  command -v "$MVN" >/dev/null 2>&1 || die "no '$MVN' on PATH; install Maven 3.6.3+ (apt-get install maven) or set MVN"
}

sha() { sha256sum | cut -d ' ' -f 1; }

inputs_hash() {
  {
    printf '%s\n' "$JAVA"
    find "$EXAMPLE/pom.xml" "$EXAMPLE/src/main" "$PROTO" "$SCRIPT" -type f -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha
}

# Runs Maven in the example: `maven build|test GOAL... OPTION...`. Offline when an earlier
# run of that kind resolved this pom's dependencies (a test run also resolves the test
# providers a build skips), and online again if an artifact turns out to be missing, e.g.
# because the local repository was emptied since.
maven() {
  local kind="$1" pom_hash args=(-B -ntp -Dstyle.color=never -f "$EXAMPLE/pom.xml")
  shift
  [ -n "${JAVA_SIDECAR_MAVEN_REPO:-}" ] && args+=("-Dmaven.repo.local=$JAVA_SIDECAR_MAVEN_REPO")
  pom_hash="$(printf '%s\n' "${JAVA_SIDECAR_MAVEN_REPO:-}" | cat - "$EXAMPLE/pom.xml" | sha)"
  if [ -f "$RESOLVED_STAMP-$kind" ] && [ "$(cat "$RESOLVED_STAMP-$kind")" = "$pom_hash" ]; then
    log "mvn -o $*"
    local output status
    output="$(mktemp)"
    set +e
    "$MVN" "${args[@]}" -o "$@" 2>&1 | tee "$output" >&2
    status="${PIPESTATUS[0]}"
    set -e
    if [ "$status" = 0 ] || ! grep -q 'in offline mode' "$output"; then
      rm -f "$output"
      return "$status"
    fi
    rm -f "$output"
    log "something is missing from the local repository; trying again online"
  fi
  log "mvn $*"
  "$MVN" "${args[@]}" "$@" >&2 || return 1
  printf '%s\n' "$pom_hash" >"$RESOLVED_STAMP-build"
  if [ "$kind" = test ]; then
    printf '%s\n' "$pom_hash" >"$RESOLVED_STAMP-test"
  fi
}

# Removes what earlier builds left in target/ (classes of deleted sources would otherwise end
# up in the jar or run as tests), except the stamps and the files named as arguments. The jar
# is unlinked, never rewritten in place, so a sidecar running from it is not disturbed.
clean_outputs() {
  local keep=(! -name '.stamp-*') name
  for name in "$@"; do
    keep+=(! -name "$name")
  done
  [ -d "$TARGET" ] && find "$TARGET" -mindepth 1 -maxdepth 1 "${keep[@]}" -exec rm -rf {} +
  return 0
}

write_launcher() {
  local content tmp
  content="$(
    printf '#!/usr/bin/env bash\n'
    printf '# Starts the Java bookings reducer sidecar. Written by scripts/java-sidecar.sh; not committed.\n'
    printf '# Options go to the JVM through JAVA_OPTS; arguments to the sidecar (--address HOST:PORT).\n'
    printf 'exec %q $JAVA_OPTS -jar %q "$@"\n' "$JAVA" "$JAR"
  )"
  if [ -x "$LAUNCHER" ] && [ "$(cat "$LAUNCHER")" = "$content" ]; then
    return 0
  fi
  tmp="$(mktemp "$LAUNCHER.XXXXXX")"
  printf '%s\n' "$content" >"$tmp"
  chmod 755 "$tmp"
  mv -f "$tmp" "$LAUNCHER"
}

take_lock
find_java
hash="$(inputs_hash)"
if [ -f "$JAR" ] && [ -f "$BUILT_STAMP" ] && [ "$(cat "$BUILT_STAMP")" = "$hash" ]; then
  if $run_tests; then
    find_maven
    clean_outputs "$(basename "$JAR")"
    maven test test || die "the unit tests failed (mvn test in $EXAMPLE)"
  fi
else
  find_maven
  log "building $JAR"
  rm -f "$BUILT_STAMP"
  clean_outputs
  if $run_tests; then
    maven test package || die "the build or its unit tests failed (mvn package in $EXAMPLE)"
  else
    maven build package -Dmaven.test.skip=true || die "the build failed (mvn package in $EXAMPLE)"
  fi
  [ -f "$JAR" ] || die "mvn package succeeded but $JAR is missing"
  printf '%s\n' "$hash" >"$BUILT_STAMP"
fi
write_launcher
log "ready: $LAUNCHER"
printf '%s\n' "$LAUNCHER"
