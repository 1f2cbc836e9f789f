#!/usr/bin/env bash
# The sidecar benchmark: the Python and TypeScript example sidecars' events/s through the
# gateway against the same sidecar fed by a minimal client in its own language, in one run
# (bench/sidecars/: python_client.py, typescript_client.js, run.py). The gateway should not be
# the bottleneck: through-gateway / raw >= 0.9. See bench/README.md, "Sidecars".
#
#   bench/sidecars.sh            # 200k events, 3 rounds (medians); 7-8 minutes on 2 cores
#   bench/sidecars.sh --quick    # 20k events, 3 rounds; about a minute after the build
#
# Other arguments go to bench/sidecars/run.py: `--events N`, `--rounds N`,
# `--only python,typescript`, `--dir D`, `--keep`. It builds the gateway in release
# (`cargo build --release`), sets up both sidecars (scripts/python-sidecar.sh,
# scripts/typescript-sidecar.sh), and prints a table that ends with one
# `bench sidecar=... ratio=...` line per sidecar.
set -euo pipefail

cd "$(dirname "$0")/.."

args=(--events 200000 --rounds 3)
rest=()
for arg in "$@"; do
  case "$arg" in
    --quick) args=(--events 20000 --rounds 3) ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) rest+=("$arg") ;;
  esac
done

echo "bench/sidecars.sh: building the gateway (cargo build --release)" >&2
cargo build --release --quiet --bin projector-gateway >&2
python="$(bash scripts/python-sidecar.sh | tail -n 1)"
typescript="$(bash scripts/typescript-sidecar.sh | tail -n 1)"

# Later arguments win (argparse), so `--events N` overrides the preset.
exec "$python" bench/sidecars/run.py --gateway target/release/projector-gateway \
  --python "$python" --typescript "$typescript" "${args[@]}" "${rest[@]}"
