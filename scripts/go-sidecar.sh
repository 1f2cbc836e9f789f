#!/usr/bin/env bash
# Sets up the Go example sidecar (sidecar-examples/go) so it can run: the gRPC stubs current
# with proto/projection.proto, and the sidecar built into sidecar-examples/go/bin/.
#
#   scripts/go-sidecar.sh                  # prints the executable's path as the last line on stdout
#   "$(scripts/go-sidecar.sh | tail -n 1)" --address 127.0.0.1:50051
#   scripts/go-sidecar.sh --test           # then runs gofmt and `go test ./...` (exit 1 on failure)
#   scripts/go-sidecar.sh --regenerate     # regenerates the stubs even when they look current
#
# The stubs (sidecar-examples/go/projectionpb/*.pb.go) are committed. They are regenerated
# only when projectionpb/generated-from.txt no longer matches their inputs (the proto,
# buf.gen.yaml and the tool versions below): then buf, protoc-gen-go and protoc-gen-go-grpc
# are installed with `go install` from the Go module proxy into sidecar-examples/go/.gobin/
# (gitignored), and the new stubs should be committed. The binary is rebuilt only when a Go
# source, go.mod, go.sum or the Go version changed.
#
# Idempotent and quick when nothing changed. Concurrent calls (e.g. several test binaries at
# once) are serialised with flock. Everything but the executable's path goes to stderr.
set -euo pipefail

# Tool versions used to generate the stubs. Changing one regenerates them.
BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12       # keep equal to google.golang.org/protobuf in go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXAMPLE="$ROOT/sidecar-examples/go"
PROTO="$ROOT/proto/projection.proto"
STUBS="$EXAMPLE/projectionpb"
STUB_STAMP="$STUBS/generated-from.txt"
TOOLS="$EXAMPLE/.gobin"
BIN="$EXAMPLE/bin/bookings-sidecar"
BUILD_STAMP="$EXAMPLE/bin/.bookings-sidecar.inputs"

log() { printf 'go-sidecar.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; }

run_tests=false
regenerate=false
for arg in "$@"; do
  case "$arg" in
    --test) run_tests=true ;;
    --regenerate) regenerate=true ;;
    -h | --help) usage; exit 0 ;;
    *) usage; die "unknown argument '$arg'" ;;
  esac
done

command -v go >/dev/null 2>&1 || die "no 'go' on PATH; install Go 1.26 or newer (https://go.dev/doc/install)"
# Never download a Go toolchain: a Go older than go.mod asks for fails with a clear message.
export GOTOOLCHAIN=local

take_lock() {
  exec 9>>"$EXAMPLE/.setup.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 900 9 || die "timed out after 900 s waiting for the lock $EXAMPLE/.setup.lock"
  else
    log "flock not found: concurrent setups are not serialised"
  fi
}

release_lock() { exec 9>&-; }

# What the committed stubs were generated from; compared with generated-from.txt.
stub_inputs() {
  printf '# What the stubs in this folder were generated from. Written by scripts/go-sidecar.sh,\n'
  printf '# which regenerates them when this no longer matches. Do not edit.\n'
  printf 'proto/projection.proto sha256:%s\n' "$(sha256sum <"$PROTO" | cut -d ' ' -f 1)"
  printf 'sidecar-examples/go/buf.gen.yaml sha256:%s\n' "$(sha256sum <"$EXAMPLE/buf.gen.yaml" | cut -d ' ' -f 1)"
  printf 'buf %s\nprotoc-gen-go %s\nprotoc-gen-go-grpc %s\n' \
    "$BUF_VERSION" "$PROTOC_GEN_GO_VERSION" "$PROTOC_GEN_GO_GRPC_VERSION"
}

stubs_current() {
  [ -f "$STUBS/projection.pb.go" ] && [ -f "$STUBS/projection_grpc.pb.go" ] && [ -f "$STUB_STAMP" ] &&
    [ "$(cat "$STUB_STAMP")" = "$(stub_inputs)" ]
}

# install_tool NAME PACKAGE VERSION: `go install PACKAGE@VERSION` into $TOOLS unless the
# binary there was built from that version already.
install_tool() {
  local name="$1" package="$2" version="$3" have
  have="$(go version -m "$TOOLS/$name" 2>/dev/null | awk '$1 == "mod" { print $3; exit }')" || true
  if [ "$have" = "$version" ]; then
    return 0
  fi
  log "installing $name $version from the Go module proxy into $TOOLS"
  GOBIN="$TOOLS" go install "$package@$version" >&2 || die "go install $package@$version failed"
}

generate_stubs() {
  if ! $regenerate && stubs_current; then
    return 0
  fi
  install_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
  install_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
  install_tool buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"
  log "generating the stubs from $PROTO"
  # Generate beside the package and move the files in, so a reader never sees half a set.
  local tmp
  tmp="$(mktemp -d "$EXAMPLE/.generate.XXXXXX")"
  trap "rm -rf '$tmp'" EXIT
  (cd "$EXAMPLE" && PATH="$TOOLS:$PATH" BUF_CACHE_DIR="$TOOLS/buf-cache" \
    "$TOOLS/buf" generate --template buf.gen.yaml --output "$tmp") >&2 || die "buf generate failed"
  mkdir -p "$STUBS"
  local stub changed=false
  for stub in projection.pb.go projection_grpc.pb.go; do
    [ -f "$tmp/projectionpb/$stub" ] || die "buf generate did not write projectionpb/$stub"
    # An unchanged file keeps its modification time, so the binary is not rebuilt for nothing.
    if ! cmp -s "$tmp/projectionpb/$stub" "$STUBS/$stub"; then
      mv -f "$tmp/projectionpb/$stub" "$STUBS/$stub"
      changed=true
    fi
  done
  stub_inputs >"$STUB_STAMP"
  rm -rf "$tmp"
  trap - EXIT
  if $changed; then
    log "new stubs written to $STUBS: commit them with projectionpb/generated-from.txt"
  else
    log "the stubs in $STUBS were already up to date"
  fi
}

# Everything the binary is built from, with sizes and modification times, and the Go version.
build_inputs() {
  go env GOVERSION GOOS GOARCH
  (cd "$EXAMPLE" && find . \( -path ./.gobin -o -path ./bin -o -name '.generate.*' \) -prune -o \
    -type f \( -name '*.go' ! -name '*_test.go' -o -name go.mod -o -name go.sum \) \
    -printf '%P %s %T@\n' | LC_ALL=C sort)
}

build() {
  local inputs
  inputs="$(build_inputs)"
  if [ -x "$BIN" ] && [ -f "$BUILD_STAMP" ] && [ "$(cat "$BUILD_STAMP")" = "$inputs" ]; then
    return 0
  fi
  log "building $BIN"
  mkdir -p "$(dirname "$BIN")"
  (cd "$EXAMPLE" && go build -buildvcs=false -trimpath -o "$BIN.tmp" .) >&2 || die "go build failed"
  mv -f "$BIN.tmp" "$BIN"
  printf '%s\n' "$inputs" >"$BUILD_STAMP"
}

test_example() {
  log "checking formatting (gofmt -l)"
  local unformatted
  unformatted="$(cd "$EXAMPLE" && gofmt -l $(find . \( -path ./.gobin -o -path ./bin \) -prune -o -name '*.go' -print))"
  [ -z "$unformatted" ] || die "not gofmt-formatted (run gofmt -w): $unformatted"
  log "running go test ./..."
  (cd "$EXAMPLE" && go test ./...) >&2 || die "go test ./... failed"
}

take_lock
generate_stubs
build
release_lock # tests need no lock: the go command is safe to run concurrently
if $run_tests; then
  test_example
fi
log "ready: $BIN"
printf '%s\n' "$BIN"
