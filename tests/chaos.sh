#!/bin/sh
# Short fault-injection runs (tern chaos) of every scenario with fixed seeds, for CI; exits
# non-zero when any run finds a violation. Usage: tests/chaos.sh PATH_TO_TERN
set -u
tern=${1:?usage: chaos.sh PATH_TO_TERN}
status=0
for run in "master-crash 101" "worker-crash 102" "partition 103" "lossy-net 104" \
           "disk-full 105" "mixed 106"; do
    set -- $run
    echo "== tern chaos --seed $2 --duration 15s $1"
    if ! "$tern" chaos --seed "$2" --duration 15s --settle 90s "$1"; then
        echo "chaos.sh: $1 with seed $2 failed; its directory is kept (see above)" >&2
        status=1
    fi
done
exit $status
