# Go: the stubs come in projectionpb/ (generate.sh makes them again when proto/projection.proto
# changed); `go build` makes bin/sidecar, fetching grpc-go and protobuf from the Go module proxy
# on the first run.
SIDECAR=(bin/sidecar)

setup() {
  need go "install Go 1.26 or newer (https://go.dev/doc/install)"
  local proto_sum
  proto_sum="proto/projection.proto sha256:$(sha256sum <proto/projection.proto | cut -d ' ' -f 1)"
  if ! grep -qxF "$proto_sum" projectionpb/generated-from.txt 2>/dev/null; then
    log "proto/projection.proto changed: generating the stubs again"
    ./generate.sh || die "generate.sh failed"
  fi
  go build -o bin/sidecar . || die "go build failed"
}

unit_tests() {
  go test ./...
}
