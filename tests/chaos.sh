#!/bin/sh
# Short fault-injection runs (tern chaos) of every scenario with fixed seeds, for CI; exits
# non-zero when any run finds a violation. Usage: tests/chaos.sh PATH_TO_TERN
# With TERN_COVERAGE_DIR set, the transitions each run's master log replays are written
# to $TERN_COVERAGE_DIR/chaos.cov (for the sm-coverage test).
set -u
tern=${1:?usage: chaos.sh PATH_TO_TERN}
cov=
if [ -n "${TERN_COVERAGE_DIR:-}" ]; then
    mkdir -p "$TERN_COVERAGE_DIR" && cov=$TERN_COVERAGE_DIR/chaos.cov && : >"$cov"
fi
status=0
for run in "master-crash 101" "worker-crash 102" "partition 103" "lossy-net 104" \
           "disk-full 105" "mixed 106" "schedule 107"; do
    set -- $run
    tmp=$(mktemp -d /tmp/tern-chaos-sh-XXXXXX) || exit 1
    echo "== tern chaos --seed $2 --duration 15s $1"
    if ! "$tern" chaos --seed "$2" --duration 15s --settle 90s --dir "$tmp/run" "$1"; then
        echo "chaos.sh: $1 with seed $2 failed; its directory $tmp/run is kept" >&2
        status=1
        continue
    fi
    if [ -n "$cov" ] &&
       ! "$tern" replay --data "$tmp/run/master" --coverage-out "$cov" >/dev/null; then
        echo "chaos.sh: $1 with seed $2: replay of $tmp/run/master failed; it is kept" >&2
        status=1
        continue
    fi
    rm -rf "$tmp"
done
exit $status
