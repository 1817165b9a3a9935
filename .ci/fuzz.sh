#!/bin/bash
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# .ci/fuzz.sh -- the fuzzing job of issue 7.  Builds libstill out of tree
# with clang's coverage instrumentation (-fsanitize=fuzzer-no-link) plus
# ASan and UBSan, links every target tests/fuzz/fuzz_*.c with libFuzzer,
# and runs each for FUZZ_SECONDS (default 60) from the committed seed corpus
# tests/fuzz/corpus/<target>/.  Prints each target's executions and
# coverage (libFuzzer's -print_final_stats=1 and its last "cov:" line).
# A crash, leak, timeout or over-limit allocation fails the job and prints
# the input in hex: add it to tests/fuzz/corpus/<target>/ (crash-*), where
# `make check` replays it (tests/fuzz/corpus_main.c).
# The targets: npy, safetensors, state (still_state_load), tool_args (the
# tool's option parser) and config (random configurations over all of
# int64 and double through still_config_validate and both paths: forward,
# transfer gradient, state create and append).
#
# Env: FUZZ_SECONDS (per target), FUZZ_TARGETS (default: every fuzz_*.c),
# FUZZ_BUILD_DIR (default /tmp/libstill-ci-fuzz), FUZZ_CC (default clang).
set -euo pipefail
. "$(dirname "$0")/harden-common.sh"

SECS=${FUZZ_SECONDS:-60}
BUILD=${FUZZ_BUILD_DIR:-/tmp/libstill-ci-fuzz}
CC_FUZZ=${FUZZ_CC:-clang}
# clang, its sanitizer/libFuzzer runtimes, and libomp for -fopenmp
harden_need "${HARDEN_BUILD_PKGS[@]}" clang libclang-rt-14-dev libomp-14-dev

SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"
harden_configure "$BUILD" CC="$CC_FUZZ" \
    CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $SAN" \
    LDFLAGS="$SAN" --disable-shared
cd "$BUILD"
make -j"$(harden_jobs)" -C ref >make.out 2>&1 && make -j"$(harden_jobs)" -C simd >>make.out 2>&1 &&
    make -j"$(harden_jobs)" -C lib >>make.out 2>&1 ||
    { tail -40 make.out; echo "fuzz: library build FAILED"; exit 1; }

LIBS="lib/.libs/libstill_core.a $(pkg-config --libs openblas sleef jansson) -lm -fopenmp"
INCS="-I$HARDEN_SRC/include -I$HARDEN_SRC/lib -I$HARDEN_SRC/ref -I$HARDEN_SRC/tools -I$BUILD"
targets=${FUZZ_TARGETS:-$(cd "$HARDEN_SRC/tests/fuzz" && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//')}
extra_src() {  # sources a target needs beside the library
    case $1 in
        tool_args) echo "$HARDEN_SRC/tools/tool_common.c $HARDEN_SRC/tools/tool_attn.c $HARDEN_SRC/tools/tool_output.c" ;;
    esac
}
mkdir -p bin artifacts scratch
for t in $targets; do
    # shellcheck disable=SC2046,SC2086
    $CC_FUZZ -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer $SAN -DSTILL_FUZZING $INCS \
        "$HARDEN_SRC/tests/fuzz/fuzz_$t.c" $(extra_src "$t") $LIBS -o "bin/fuzz_$t" \
        >>make.out 2>&1 || { tail -30 make.out; echo "fuzz: building fuzz_$t FAILED"; exit 1; }
done

export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:allocator_may_return_null=1"
export LSAN_OPTIONS="suppressions=$HARDEN_SRC/.ci/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export FUZZ_SCRATCH_DIR="$BUILD/scratch"
failed=()
summary=()
for t in $targets; do
    work="corpus/$t"
    mkdir -p "$work"
    seeds="$HARDEN_SRC/tests/fuzz/corpus/$t"
    [ -d "$seeds" ] || seeds=
    echo "fuzz: $t for ${SECS}s"
    status=0
    # shellcheck disable=SC2086
    "bin/fuzz_$t" -max_total_time="$SECS" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=512 -max_len=65536 \
        -artifact_prefix="artifacts/$t-" "$work" $seeds >"$t.log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$t.log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$t.log" | tail -1)
    line=$(printf '%-12s executions %-10s (%s/s)  %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-cov: ?}")
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        summary+=("$line  FAILED (exit $status)")
        echo "---- fuzz_$t FAILED (exit $status); the report:"
        grep -E -A40 '==ERROR|runtime error|invariant failed|ERROR: libFuzzer|SUMMARY' "$t.log" | head -80 || tail -40 "$t.log"
        for a in artifacts/"$t"-*; do
            [ -f "$a" ] || continue
            echo "---- input $a ($(stat -c %s "$a") bytes), hex:"
            od -An -tx1 -v "$a" | head -64
        done
    else
        summary+=("$line  ok")
    fi
done

echo
echo "fuzz summary (${SECS}s per target, clang libFuzzer + ASan + UBSan):"
for l in "${summary[@]}"; do echo "  $l"; done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz: OK"
