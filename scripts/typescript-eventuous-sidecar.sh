#!/usr/bin/env bash
# Sets up the Eventuous-style TypeScript sidecar (sidecar-examples/typescript-eventuous) so it
# can run, with the same steps, stamps and lock as the other TypeScript example
# (scripts/typescript-sidecar.sh does the work): npm ci, stubs from proto/projection.proto
# (buf + ts-proto), tsc. Prints, as the last line on stdout, the absolute path of a launcher
# that starts the sidecar with the arguments it gets:
#
#   scripts/typescript-eventuous-sidecar.sh            # set up; prints the launcher
#   scripts/typescript-eventuous-sidecar.sh --test     # set up, then run the unit tests (node:test)
#   REDUCER_TARGET=mongo "$(scripts/typescript-eventuous-sidecar.sh | tail -n 1)" --address 127.0.0.1:50051
set -euo pipefail
TS_EXAMPLE=typescript-eventuous TS_LAUNCHER=eventuous-sidecar TS_STUBS=src/compiled \
  TS_ENTRY=dist/src/server.js TS_SCRIPT=typescript-eventuous-sidecar.sh \
  exec bash "$(dirname "${BASH_SOURCE[0]}")/typescript-sidecar.sh" "$@"
