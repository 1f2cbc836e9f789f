#!/usr/bin/env bash
# Generates the Go stubs of proto/projection.proto into projectionpb/ (projection.pb.go,
# projection_grpc.pb.go) and records what they were generated from in
# projectionpb/generated-from.txt. The stubs come with the project; ./run.sh runs this only
# when proto/projection.proto no longer matches that record (e.g. after you copied a newer
# proto). buf, protoc-gen-go and protoc-gen-go-grpc are installed with `go install` from the Go
# module proxy into .gobin/ (no protoc needed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12       # keep equal to google.golang.org/protobuf in go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

tools="$PWD/.gobin"
install() {
  [ "$(go version -m "$tools/$1" 2>/dev/null | awk '$1 == "mod" { print $3; exit }')" = "$3" ] && return 0
  echo "generate.sh: installing $1 $3 into .gobin/" >&2
  GOBIN="$tools" go install "$2@$3"
}
install protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
install buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"

PATH="$tools:$PATH" BUF_CACHE_DIR="$tools/buf-cache" "$tools/buf" generate --template buf.gen.yaml
{
  printf '# What the stubs in this folder were generated from (written by generate.sh).\n'
  printf 'proto/projection.proto sha256:%s\n' "$(sha256sum <proto/projection.proto | cut -d ' ' -f 1)"
  printf 'buf %s\nprotoc-gen-go %s\nprotoc-gen-go-grpc %s\n' "$BUF_VERSION" "$PROTOC_GEN_GO_VERSION" "$PROTOC_GEN_GO_GRPC_VERSION"
} >projectionpb/generated-from.txt
echo "generate.sh: stubs written to projectionpb/" >&2
