#!/usr/bin/env bash
# tern's one entry point for a fresh Debian machine: install what is missing, build,
# then run the main job or the tests.
#   tools/setup.sh run    build and run examples/etl.yaml on the embedded default (./tern-data)
#   tools/setup.sh test   build and pass the tests (also in an address+undefined sanitizer build
#                         and in a thread sanitizer build, then fuzz each decoder briefly)
#   tools/setup.sh bench  build, install the peers (Celery with Redis, Dask: Debian packages,
#                         needed by nothing else) and run `tern bench latency` beside them
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(gcc libtsan2 pkg-config meson ninja-build libnng-dev liblmdb-dev libmsgpack-dev
          libcriterion-dev libyaml-dev libsodium-dev libicu-dev libmbedtls-dev libcurl4-openssl-dev libjansson-dev libgraphviz-dev clang
          clang-format libzookeeper-mt-dev)

install_missing() {
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "setup: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

build() { # build DIR [meson options...]
    local dir=$1
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >/dev/null
    fi
    ninja -C "$dir" --quiet
}

# Criterion counts a test whose setup or teardown died (a sanitizer report there ends the
# process) as passed, with only a warning in the log: fail the run on it instead.
no_teardown_deaths() { # no_teardown_deaths BUILD_DIR
    if grep -H "during its setup or teardown" "$1/meson-logs/testlog.txt"; then
        echo "setup.sh: a test died in its setup or teardown ($1/meson-logs/testlog.txt)" >&2
        exit 1
    fi
}

# meson test, and on a failure, as the last lines printed: what each failed test said
# (the full logs above it run to thousands of lines)
run_tests() { # run_tests BUILD_DIR [meson test options]
    local dir=$1
    shift
    if ! meson test -C "$dir" --print-errorlogs "$@"; then
        echo "setup.sh: tests failed in $dir; what they said (all of it in $dir/meson-logs/testlog.txt):" >&2
        {
            # an assertion and its message (lines of "[----]"), a sanitizer's first lines
            awk '/Assertion Failed/ { n = 40 } /^\[----\]/ && n > 0 { print; n--; next }
                 { n = 0 } /ERROR: (Address|Undefined|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error:/ { m = 6 }
                 m > 0 { print; m-- }' "$dir/meson-logs/testlog.txt" | head -150
            grep -E '^\[FAIL\]|^[0-9]+/[0-9]+ .* (FAIL|TIMEOUT) ' "$dir/meson-logs/testlog.txt"
            # a test that started and never ended (the runner aborted on its timeout)
            awk '/^\[RUN \] / { run[$3] = 1 } /^\[(PASS|FAIL|SKIP)\] / { n = $2; sub(/:$/, "", n); delete run[n] }
                 END { for (t in run) print "[NOEND] " t ": started, never ended" }' "$dir/meson-logs/testlog.txt"
        } | cut -c1-300 >&2
        exit 1
    fi
    no_teardown_deaths "$dir"
}

case "${1:-}" in
run)
    install_missing
    build build
    shift
    exec build/tools/tern run examples/etl.yaml "$@"
    ;;
test)
    # the libFuzzer and sanitizer runtimes of clang (only recommended by clang)
    packages+=(libclang-rt-dev)
    # the web UI's test drives a real browser: headless Chromium through Selenium
    packages+=(chromium chromium-driver python3-selenium)
    # the failover tests start a real ZooKeeper (a server, or an ensemble of three)
    packages+=(zookeeper)
    install_missing
    # the layout .clang-format gives (STYLE §8)
    git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror
    build build -Dwerror=true
    run_tests build
    # the same suites under AddressSanitizer and UndefinedBehaviorSanitizer
    build build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbuildtype=debug
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp" \
        run_tests build-asan --timeout-multiplier 3
    # and under ThreadSanitizer (the chaos test is not run there): a report ends the
    # process with status 66, which fails its test; tests/tsan.supp names the frames of
    # uninstrumented libraries it may ignore
    build build-tsan -Dwerror=true -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debug
    TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp" \
        run_tests build-tsan --timeout-multiplier 3
    # every libFuzzer target for 20 s over its committed corpus (tests/fuzz): a crash, a
    # hang or a sanitizer report fails
    tests/fuzz/run.sh all 20
    ;;
bench)
    packages+=(python3-celery python3-redis redis-server python3-distributed)
    install_missing
    build build
    exec tools/bench/peers/run.sh build
    ;;
*)
    echo "usage: tools/setup.sh run|test|bench" >&2
    exit 2
    ;;
esac
