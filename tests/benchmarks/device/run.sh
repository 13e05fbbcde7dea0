#!/usr/bin/env bash
# The box benchmark on a lent GPU machine, in one call (see the README, "Measured on the
# box"). From the repository root, with the wheels fetched by fetch-wheels.sh:
#   tests/benchmarks/device/run.sh [box.py arguments]
# Without arguments: the full miniature month (4 MGRS tiles x 8 dates, no bandwidth cap),
# then its first 8 scenes fetched again at 10 and at 1 Gbit/s, and costs.py's per-unit costs.
# Figures go to $OUT (default /tmp/box-out) as each step ends, so a step cut short still
# leaves the others'. Set PYTHON to use another interpreter. Through the device tool: one
# run of this command with .device-run carried and a timeout of about 540 s.
set -u
cd "$(dirname "$0")/../../.."
out=${OUT:-/tmp/box-out}
work=${BOX_WORK:-/tmp/box-work}
python=${PYTHON:-python3}
mkdir -p "$out"
started=$(date +%s)
"$python" -m pip install -q --no-index --no-deps --no-compile --target "$work/site" \
  .device-run/whl/*.whl || { echo "installing the wheels failed"; exit 1; }
export PYTHONPATH="$work/site:$PWD/src:$PWD/tests" PYTHONUNBUFFERED=1
{ nvidia-smi -L 2>&1 || echo "no nvidia-smi"; nproc; free -g | head -2; } | tee "$out/machine.txt"
echo "set-up: $(($(date +%s) - started)) s"
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--gbps 0 10 1 --refetch 8)
timeout 400 "$python" tests/benchmarks/box.py --work "$work" --json "$out/box.json" "${args[@]}" \
  2>&1 | tee "$out/box.txt"
echo "box benchmark: exit ${PIPESTATUS[0]}, $(($(date +%s) - started)) s since the start"
# per-unit costs for the time plan (Snakemake's own job start-up is measured where it is installed)
timeout $((470 - $(date +%s) + started)) "$python" tests/benchmarks/costs.py --edge 4096 \
  2>&1 | tee "$out/costs.txt"
echo "done in $(($(date +%s) - started)) s"
