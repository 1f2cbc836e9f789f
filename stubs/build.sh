#!/usr/bin/env bash
# Builds the stub packages of the sidecar contract, proto/projection.proto, into stubs/dist/,
# so that a sidecar project can install the generated code instead of running protoc itself:
#
#   stubs/build.sh                 # all four
#   stubs/build.sh python go       # some of them: python, npm, maven, go
#
#   dist/projector_gateway_proto-<version>-py3-none-any.whl
#       pip install it; `from projector_gateway_proto import projection_pb2, projection_pb2_grpc`
#       (grpcio-tools from the Python example's venv, scripts/python-sidecar.sh)
#   dist/projector-gateway-proto-<version>.tgz
#       npm install it; `import { ProjectionService, ... } from "@projector-gateway/proto"`
#       (ts-proto for @grpc/grpc-js, ES modules with type declarations)
#   dist/projector-gateway-proto-<version>.jar and .pom
#       io.projectorgateway:projector-gateway-proto, package io.projectorgateway.projection
#       (`mvn install:install-file -Dfile=<jar> -DpomFile=<pom>` puts it in a local repository)
#   dist/goproxy/
#       the Go module github.com/projector-gateway/projector-gateway/stubs/go (stubs/go/) at
#       v<version>, as a file-based Go module proxy: <module>/@v/list, v<version>.info, .mod,
#       .zip. With GOPROXY=file://<dist>/goproxy,https://proxy.golang.org and
#       GONOSUMDB=github.com/projector-gateway/projector-gateway, `go get
#       github.com/projector-gateway/projector-gateway/stubs/go@v<version>`, then
#       `import ".../stubs/go/projectionpb"`. Its generated code is committed in
#       stubs/go/projectionpb/ and regenerated first (buf and the plugins with `go run`, at the
#       Go example's versions) when projectionpb/generated-from.txt no longer matches: commit
#       the new stubs then. Needs Go 1.26+ and python3 (which writes the zip).
#
# Each package's version is the gateway's (Cargo.toml); the script refuses to build when one
# says otherwise (the Go module's version is only the proxy's: Go versions are tags, not a
# field of go.mod). Prints the files (for Go, the proxy's folder) written as its last lines on
# stdout; everything else goes to stderr.
set -euo pipefail

STUBS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$STUBS")"
DIST="$STUBS/dist"
PROTO="$ROOT/proto/projection.proto"

log() { printf 'stubs/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)"
[ -n "$VERSION" ] || die "cannot read the gateway's version from Cargo.toml"
check_version() { # FILE WHAT-IT-SAYS
  [ "$2" = "$VERSION" ] || die "$1 says version $2, the gateway is $VERSION: make them agree"
}

python_package() {
  check_version stubs/python/pyproject.toml "$(sed -n 's/^version = "\(.*\)"$/\1/p' "$STUBS/python/pyproject.toml")"
  local python package
  python="${PYTHON:-$(bash "$ROOT/scripts/python-sidecar.sh" | tail -n 1)}"
  package="$STUBS/python/projector_gateway_proto"
  log "python: generating into $package"
  rm -rf "$package" "$STUBS/python/build" "$STUBS/python"/*.egg-info
  mkdir -p "$package"
  # protoc sees the proto as projector_gateway_proto/projection.proto, so the generated service
  # module imports its messages from the package, not as a top-level module.
  local include tmp
  include="$("$python" -c 'import os, grpc_tools; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
  tmp="$(mktemp -d)"
  mkdir "$tmp/projector_gateway_proto"
  cp "$PROTO" "$tmp/projector_gateway_proto/projection.proto"
  "$python" -m grpc_tools.protoc -I "$tmp" -I "$include" --python_out="$STUBS/python" --pyi_out="$STUBS/python" \
    --grpc_python_out="$STUBS/python" projector_gateway_proto/projection.proto
  cp "$PROTO" "$package/projection.proto"
  rm -rf "$tmp"
  printf '"""gRPC stubs of the projector-gateway sidecar contract (proto/projection.proto)."""\n' >"$package/__init__.py"
  touch "$package/py.typed"
  log "python: building the wheel"
  # The venv's setuptools builds it: no build environment to download.
  "$python" -m pip wheel --disable-pip-version-check --no-deps --no-build-isolation -q -w "$DIST" "$STUBS/python" >&2
  rm -rf "$STUBS/python/build" "$STUBS/python"/*.egg-info
  BUILT+=("$DIST/projector_gateway_proto-$VERSION-py3-none-any.whl")
}

npm_package() {
  check_version stubs/npm/package.json "$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$STUBS/npm/package.json")"
  command -v npm >/dev/null 2>&1 || die "no npm on PATH (install Node.js 20 or newer)"
  log "npm: installing the build's dependencies, generating, compiling"
  mkdir -p "$STUBS/npm/proto"
  cp "$PROTO" "$STUBS/npm/proto/projection.proto"
  cp "$PROTO" "$STUBS/npm/projection.proto"
  (
    cd "$STUBS/npm"
    npm ci --ignore-scripts --no-audit --no-fund --prefer-offline >&2
    rm -rf dist
    npm run --silent build >&2
    npm pack --silent --pack-destination "$DIST" >/dev/null
  ) || die "building the npm package failed"
  BUILT+=("$DIST/projector-gateway-proto-$VERSION.tgz")
}

maven_package() {
  check_version stubs/maven/pom.xml "$(sed -n '0,/<version>/s/^  <version>\(.*\)<\/version>$/\1/p' "$STUBS/maven/pom.xml")"
  command -v mvn >/dev/null 2>&1 || die "no mvn on PATH (install Maven 3.6.3 or newer and a JDK 17 or newer)"
  log "maven: mvn package"
  mvn -B -q -ntp -Dstyle.color=never -f "$STUBS/maven/pom.xml" package >&2 || die "mvn package failed"
  cp "$STUBS/maven/target/projector-gateway-proto-$VERSION.jar" "$DIST/"
  cp "$STUBS/maven/pom.xml" "$DIST/projector-gateway-proto-$VERSION.pom"
  BUILT+=("$DIST/projector-gateway-proto-$VERSION.jar" "$DIST/projector-gateway-proto-$VERSION.pom")
}

# The Go module: the path it is published under, and buf's version (the Go example's, in
# scripts/go-sidecar.sh; the plugins' versions are in stubs/go/buf.gen.yaml).
GO_MODULE=github.com/projector-gateway/projector-gateway/stubs/go
GO_BUF_VERSION=v1.75.0

# What the committed Go stubs are generated from; compared with projectionpb/generated-from.txt.
go_stub_inputs() {
  printf '# What the stubs in this folder were generated from. Written by stubs/build.sh,\n'
  printf '# which regenerates them when this no longer matches. Do not edit.\n'
  printf 'proto/projection.proto sha256:%s\n' "$(sha256sum <"$PROTO" | cut -d ' ' -f 1)"
  printf 'stubs/go/buf.gen.yaml sha256:%s\n' "$(sha256sum <"$STUBS/go/buf.gen.yaml" | cut -d ' ' -f 1)"
  printf 'buf %s\n' "$GO_BUF_VERSION"
  sed -n 's|.*/cmd/\(protoc-gen-go[a-z-]*\)@\(v[^"]*\)".*|\1 \2|p' "$STUBS/go/buf.gen.yaml"
}

go_stubs() {
  local module="$STUBS/go" stubs="$STUBS/go/projectionpb" stub tmp
  if [ -f "$stubs/projection.pb.go" ] && [ -f "$stubs/projection_grpc.pb.go" ] &&
    [ "$(cat "$stubs/generated-from.txt" 2>/dev/null)" = "$(go_stub_inputs)" ]; then
    return 0
  fi
  log "go: generating $stubs (buf $GO_BUF_VERSION with go run)"
  tmp="$(mktemp -d)"
  (cd "$module" && go run "github.com/bufbuild/buf/cmd/buf@$GO_BUF_VERSION" generate --template buf.gen.yaml \
    --output "$tmp") >&2 || { rm -rf "$tmp"; die "buf generate failed"; }
  mkdir -p "$stubs"
  for stub in projection.pb.go projection_grpc.pb.go; do
    [ -f "$tmp/projectionpb/$stub" ] || { rm -rf "$tmp"; die "buf generate did not write projectionpb/$stub"; }
    mv -f "$tmp/projectionpb/$stub" "$stubs/$stub"
  done
  rm -rf "$tmp"
  go_stub_inputs >"$stubs/generated-from.txt"
  log "go: new stubs written to $stubs: commit them with projectionpb/generated-from.txt"
}

go_module() {
  command -v go >/dev/null 2>&1 || die "no go on PATH (install Go 1.26 or newer)"
  command -v python3 >/dev/null 2>&1 || die "no python3 on PATH (it writes the module zip)"
  export GOTOOLCHAIN=local # never download a Go toolchain
  local module="$STUBS/go" version="v$VERSION" major
  [ "$(sed -n 's/^module //p' "$module/go.mod")" = "$GO_MODULE" ] ||
    die "stubs/go/go.mod does not say 'module $GO_MODULE'"
  # From v2 on, Go wants the major version at the end of the module path.
  major="${VERSION%%.*}"
  if [ "$major" -ge 2 ] && [ "${GO_MODULE##*/}" != "v$major" ]; then
    die "version $version of a Go module needs the module path to end in /v$major ($GO_MODULE)"
  fi
  go_stubs
  log "go: building the module"
  (cd "$module" && go build ./...) >&2 || die "stubs/go does not build"
  # The go command's file proxy layout: <escaped module path>/@v/, where the escaped path writes
  # each capital letter as ! and the lower case letter.
  local escaped at time
  escaped="$(printf '%s' "$GO_MODULE" | sed 's/[A-Z]/!\L&/g')"
  at="$DIST/goproxy/$escaped/@v"
  log "go: writing $version into $at"
  mkdir -p "$at"
  cp "$module/go.mod" "$at/$version.mod"
  # The release's time: SOURCE_DATE_EPOCH, else the commit's, else now.
  time="${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || true)}"
  [ -n "$time" ] || time="$(date +%s)"
  printf '{"Version":"%s","Time":"%s"}\n' "$version" "$(date -u -d "@$time" +%Y-%m-%dT%H:%M:%SZ)" >"$at/$version.info"
  # The module zip: every file of the module under <module>@<version>/, by Go's rules: no
  # version control folders, no vendor folders, nothing of a nested module, no symbolic links.
  # Like the go command fetching it from the repository, it takes the repository's LICENSE when
  # the module has none. Deterministic (sorted, fixed times): the same sources, the same zip.
  python3 - "$module" "$GO_MODULE@$version" "$at/$version.zip" "$ROOT/LICENSE" <<'PYTHON' || die "writing the module zip failed"
import os, re, sys, zipfile
root, prefix, out, repo_license = sys.argv[1:5]
files = []
for dirpath, dirnames, filenames in os.walk(root):
    rel = os.path.relpath(dirpath, root)
    keep = []
    for d in sorted(dirnames):
        path = os.path.join(dirpath, d)
        if d in (".git", ".hg", ".svn", ".bzr", "vendor") or os.path.islink(path) \
                or os.path.exists(os.path.join(path, "go.mod")):
            print(f"stubs/build.sh: go: leaving {os.path.relpath(path, root)}/ out of the zip", file=sys.stderr)
            continue
        keep.append(d)
    dirnames[:] = keep
    for f in filenames:
        path = os.path.join(dirpath, f)
        name = os.path.normpath(os.path.join(rel, f)).replace(os.sep, "/")
        if os.path.islink(path) or not os.path.isfile(path):
            print(f"stubs/build.sh: go: leaving {name} out of the zip (not a regular file)", file=sys.stderr)
            continue
        if not re.fullmatch(r"[A-Za-z0-9_.~+-]+(/[A-Za-z0-9_.~+-]+)*", name):
            sys.exit(f"{name}: not a file name Go allows in a module zip")
        files.append(name)
lower = [n.lower() for n in files]
if len(set(lower)) != len(lower):
    sys.exit("two files differ only in case, which Go refuses in a module zip")
if "go.mod" not in files:
    sys.exit("no go.mod")
sources = {name: os.path.join(root, name) for name in files}
if "LICENSE" not in sources and os.path.isfile(repo_license):
    sources["LICENSE"] = repo_license
tmp = out + ".tmp"
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
    for name in sorted(sources):
        info = zipfile.ZipInfo(f"{prefix}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        with open(sources[name], "rb") as src:
            z.writestr(info, src.read())
os.replace(tmp, out)
PYTHON
  # Every version in the folder (an older build's stays served).
  (cd "$at" && ls -- *.info | sed 's/\.info$//' | sort -V) >"$at/list"
  BUILT+=("$DIST/goproxy")
}

kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(python npm maven go)
mkdir -p "$DIST"
BUILT=()
for kind in "${kinds[@]}"; do
  case "$kind" in
    python) python_package ;;
    npm) npm_package ;;
    maven) maven_package ;;
    go) go_module ;;
    *) die "unknown package '$kind' (python, npm, maven, go)" ;;
  esac
done
for file in "${BUILT[@]}"; do
  [ -e "$file" ] || die "$file was not written"
  printf '%s\n' "$file"
done
