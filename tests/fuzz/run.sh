#!/bin/sh
# Build a libFuzzer target with clang (address and undefined sanitizers) and run it.
#   tests/fuzz/run.sh NAME SECONDS      e.g. tests/fuzz/run.sh cron 60
# Builds into build-fuzz/ at the top of the tree. The committed seeds in
# tests/fuzz/corpus/NAME are read; inputs the fuzzer finds go to build-fuzz/corpus-NAME,
# crashers to build-fuzz/crash-NAME-*. Add a crasher to the seeds once it is fixed.
set -eu
name=${1:?usage: run.sh NAME SECONDS}
secs=${2:?usage: run.sh NAME SECONDS}
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$top/build-fuzz
case $name in
cron) srcs="core/def/cron.c core/base/tz.c core/base/err.c"
      incs="-I$top/core/base -I$top/core/def"
      libs=$(pkg-config --cflags --libs icu-uc icu-i18n) ;;
*) echo "run.sh: unknown fuzz target \"$name\" (known: cron)" >&2; exit 2 ;;
esac
mkdir -p "$out/corpus-$name"
src_paths=""
for s in $srcs; do src_paths="$src_paths $top/$s"; done
# shellcheck disable=SC2086
clang -std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    $incs "$top/tests/fuzz/fuzz_$name.c" $src_paths $libs -lpthread -o "$out/fuzz_$name"
"$out/fuzz_$name" -max_total_time="$secs" -timeout=10 -max_len=320 \
    -artifact_prefix="$out/crash-$name-" "$out/corpus-$name" "$top/tests/fuzz/corpus/$name"
