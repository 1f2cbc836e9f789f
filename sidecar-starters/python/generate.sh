#!/usr/bin/env bash
# Generates the Python gRPC stubs of proto/projection.proto into generated/
# (projection_pb2.py, projection_pb2.pyi, projection_pb2_grpc.py); ./run.sh runs it when they
# are missing or older than the proto.
#
#   PYTHON=.venv/bin/python ./generate.sh     # default: python3 on PATH
#
# Needs grpcio-tools (requirements.txt): its bundled protoc and well-known types
# (google/protobuf/*.proto) are used, so no system protoc is needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PYTHON="${PYTHON:-python3}"

include="$("$PYTHON" -c 'import os, grpc_tools; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')" ||
  { echo "generate.sh: grpc_tools is not importable by $PYTHON; pip install -r requirements.txt first" >&2; exit 1; }
rm -rf generated.tmp
mkdir generated.tmp
"$PYTHON" -m grpc_tools.protoc -I proto -I "$include" \
  --python_out=generated.tmp --pyi_out=generated.tmp --grpc_python_out=generated.tmp \
  proto/projection.proto
rm -rf generated
mv generated.tmp generated
echo "generate.sh: stubs written to generated/" >&2
