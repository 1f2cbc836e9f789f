#!/usr/bin/env bash
# Generates the Python gRPC stubs for proto/projection.proto into ./generated/
# (projection_pb2.py, projection_pb2.pyi, projection_pb2_grpc.py). Not committed.
#
#   PYTHON=/path/to/venv/bin/python ./generate.sh     # default: python3 on PATH
#
# Needs grpcio-tools (requirements.txt); its bundled protoc and the well-known types
# (google/protobuf/*.proto) are used, so no system protoc is needed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_dir="$(cd "$here/../../proto" && pwd)"
out="$here/generated"
PYTHON="${PYTHON:-python3}"

wkt_include="$("$PYTHON" -c 'import os, grpc_tools; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')" ||
  { echo "generate.sh: grpc_tools is not importable by $PYTHON; pip install -r requirements.txt first" >&2; exit 1; }

# Generate into a temporary dir and swap it in, so a concurrent reader never sees half a set.
tmp="$(mktemp -d "$here/.generated.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
chmod a+rx "$tmp" # mktemp makes it private; the stubs are for whoever runs the reducer
"$PYTHON" -m grpc_tools.protoc \
  -I "$proto_dir" \
  -I "$wkt_include" \
  --python_out="$tmp" \
  --pyi_out="$tmp" \
  --grpc_python_out="$tmp" \
  "$proto_dir/projection.proto"

rm -rf "$out.old"
[ -d "$out" ] && mv "$out" "$out.old"
mv "$tmp" "$out"
rm -rf "$out.old"
echo "generate.sh: stubs written to $out" >&2
