#!/usr/bin/env bash
# Download the wheels of wheels.txt (beside this file) for a GPU machine without network
# (CPython 3.12, x86-64 manylinux) into DIR, default .device-run/whl: about 52 MB.
#   tests/benchmarks/device/fetch-wheels.sh [DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-.device-run/whl}
mkdir -p "$dir"
grep -v '^#' "$here/wheels.txt" | xargs python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir"
du -sh "$dir"
