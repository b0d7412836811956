#!/bin/sh
# Short fault-injection runs (tern chaos) of every scenario with fixed seeds, for CI; exits
# non-zero when any run finds a violation. Usage: tests/chaos.sh PATH_TO_TERN
# failover (three masters on a ZooKeeper ensemble) needs the zookeeper package: without
# it (no /usr/share/java/zookeeper.jar or java) it is skipped and says so.
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
           "disk-full 105" "mixed 106" "schedule 107" "failover 108"; do
    set -- $run
    stores=master
    if [ "$1" = failover ]; then
        if [ ! -r /usr/share/java/zookeeper.jar ] || [ ! -x /usr/bin/java ]; then
            echo "chaos.sh: failover skipped: no ZooKeeper server (tools/setup.sh test)"
            continue
        fi
        stores="m1 m2 m3" # every master's log: the same events, each replayed
    fi
    tmp=$(mktemp -d /tmp/tern-chaos-sh-XXXXXX) || exit 1
    echo "== tern chaos --seed $2 --duration 15s $1"
    if ! "$tern" chaos --seed "$2" --duration 15s --settle 90s --dir "$tmp/run" "$1"; then
        echo "chaos.sh: $1 with seed $2 failed; its directory $tmp/run is kept" >&2
        status=1
        continue
    fi
    kept=
    for st in $stores; do
        if [ -n "$cov" ] &&
           ! "$tern" replay --data "$tmp/run/$st" --coverage-out "$cov" >/dev/null; then
            echo "chaos.sh: $1 with seed $2: replay of $tmp/run/$st failed; it is kept" >&2
            status=1
            kept=1
            break
        fi
    done
    [ -n "$kept" ] || rm -rf "$tmp"
done
exit $status
