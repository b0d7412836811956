#!/usr/bin/env bash
# `tern bench latency` and the same workloads on Celery+Redis and on Dask, in one run:
#   tools/bench/peers/run.sh [BUILD_DIR]   (default: build)
# The peers come from Debian (tools/setup.sh bench installs them); nothing here is
# needed to build or test tern.
set -euo pipefail
cd "$(dirname "$0")/../../.."
build=${1:-build}
stamp=$build/tools/tern-bench-stamp
[ -x "$stamp" ] || { echo "run.sh: $stamp: build first (ninja -C $build)" >&2; exit 2; }
"$build/tools/tern" bench latency
/usr/bin/python3 tools/bench/peers/celery_bench.py "$stamp"
/usr/bin/python3 tools/bench/peers/dask_bench.py "$stamp" 2>/dev/null
