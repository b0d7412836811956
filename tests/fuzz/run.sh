#!/bin/sh
# Build libFuzzer targets with clang (address and undefined sanitizers) and run them.
#   tests/fuzz/run.sh NAME SECONDS      one target, e.g. tests/fuzz/run.sh cron 60
#   tests/fuzz/run.sh all SECONDS       every target, SECONDS each; fails on the first crash
# Targets: cron event frame ctl yaml params ds. Builds into build-fuzz/ at the top of the
# tree, straight from the sources (no meson). The committed seeds in tests/fuzz/corpus/NAME
# are read; inputs the fuzzer finds go to build-fuzz/corpus-NAME, crashers to
# build-fuzz/crash-NAME-*. Once a crasher is fixed, add it to the seeds.
set -eu
name=${1:?usage: run.sh NAME|all SECONDS}
secs=${2:?usage: run.sh NAME|all SECONDS}
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$top/build-fuzz
targets="cron event frame ctl yaml params ds"

if [ "$name" = all ]; then
    for t in $targets; do
        echo "run.sh: fuzzing $t for ${secs}s" >&2
        "$0" "$t" "$secs" || { echo "run.sh: fuzz target $t failed" >&2; exit 1; }
    done
    exit 0
fi

# The table: per target, the sources it is built from, its include dirs, its libraries
# and the largest input worth trying.
base="core/base/err.c core/base/str.c core/base/util.c"
binc="-I$top/core/base"
maxlen=4096
# msgpack-c is msgpack-c.pc on newer Debian, msgpack.pc on older
mp=$(pkg-config --cflags --libs msgpack-c 2>/dev/null || pkg-config --cflags --libs msgpack)
case $name in
cron) srcs="core/def/cron.c core/base/tz.c core/base/err.c"
      incs="$binc -I$top/core/def"
      libs=$(pkg-config --cflags --libs icu-uc icu-i18n)
      maxlen=320 ;;
event) srcs="core/log/event.c $base"
      incs="$binc -I$top/core/log -I$top/statemachines"
      libs="$mp $(pkg-config --cflags --libs libsodium)" ;;
frame) srcs="transport/proto.c $base"
      incs="$binc -I$top/transport"
      libs="$mp $(pkg-config --cflags --libs libsodium)"
      maxlen=16384 ;;
ctl) srcs="transport/ctl.c $base"
      incs="$binc -I$top/transport"
      libs=$mp ;;
yaml) srcs="core/def/def.c core/def/params.c core/def/schedule.c core/def/cron.c core/base/tz.c $base"
      incs="$binc -I$top/core/def"
      libs="$(pkg-config --cflags --libs yaml-0.1 icu-uc icu-i18n) $mp"
      maxlen=16384 ;;
params) srcs="core/def/params.c core/def/def.c core/def/schedule.c core/def/cron.c core/base/tz.c $base"
      incs="$binc -I$top/core/def"
      libs="$(pkg-config --cflags --libs yaml-0.1 icu-uc icu-i18n) $mp"
      maxlen=1024 ;;
ds) srcs="tools/ds_import.c tools/ds_export.c core/def/def.c core/def/params.c core/def/schedule.c core/def/cron.c core/base/tz.c $base"
      incs="$binc -I$top/core/def -I$top/tools"
      libs="$(pkg-config --cflags --libs jansson yaml-0.1 icu-uc icu-i18n) $mp"
      maxlen=16384 ;;
*) echo "run.sh: unknown fuzz target \"$name\" (known: $targets, all)" >&2; exit 2 ;;
esac
mkdir -p "$out/corpus-$name"
src_paths=""
for s in $srcs; do src_paths="$src_paths $top/$s"; done
# shellcheck disable=SC2086
clang -std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    $incs "$top/tests/fuzz/fuzz_$name.c" $src_paths $libs -lpthread -lm -o "$out/fuzz_$name"
"$out/fuzz_$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$maxlen" \
    -print_final_stats=0 -artifact_prefix="$out/crash-$name-" \
    "$out/corpus-$name" "$top/tests/fuzz/corpus/$name"
