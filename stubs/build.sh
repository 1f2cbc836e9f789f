#!/usr/bin/env bash
# Builds the stub packages of the sidecar contract, proto/projection.proto, into stubs/dist/,
# so that a sidecar project can install the generated code instead of running protoc itself:
#
#   stubs/build.sh                 # all three
#   stubs/build.sh python npm      # some of them: python, npm, maven
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
#
# Each package's version is the gateway's (Cargo.toml); the script refuses to build when one
# says otherwise. Go has no package here: Go projects keep their stubs in the repository, as the
# Go starter does (projector-gateway new-sidecar --lang go). Prints the files written as its last
# lines on stdout; everything else goes to stderr.
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

kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(python npm maven)
mkdir -p "$DIST"
BUILT=()
for kind in "${kinds[@]}"; do
  case "$kind" in
    python) python_package ;;
    npm) npm_package ;;
    maven) maven_package ;;
    *) die "unknown package '$kind' (python, npm, maven)" ;;
  esac
done
for file in "${BUILT[@]}"; do
  [ -f "$file" ] || die "$file was not written"
  printf '%s\n' "$file"
done
