#!/bin/bash
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# .ci/valgrind.sh -- the valgrind job of issue 7: a representative subset
# of the Check suites and the `still` tool on small inputs, under memcheck
# (--leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1,
# CK_FORK=no so each suite is one process).  libgomp's and OpenBLAS's
# thread pools stay allocated at exit ("possibly lost"/"still reachable"):
# only definite leaks count (CONVENTIONS).  Any memcheck error, definite
# leak, or failing suite fails the job; every log's ERROR SUMMARY is
# checked too (forked children -- test_limits -- write their own).
#
# Env: VALGRIND_TESTS (suites, default below), VALGRIND_BUILD_DIR (default
# /tmp/libstill-ci-valgrind).
set -euo pipefail
. "$(dirname "$0")/harden-common.sh"

BUILD=${VALGRIND_BUILD_DIR:-/tmp/libstill-ci-valgrind}
TESTS_WANTED=${VALGRIND_TESTS:-"test_limits test_concurrency test_io test_ref_api test_state fuzz/corpus_npy fuzz/corpus_safetensors fuzz/corpus_state"}
harden_need "${HARDEN_BUILD_PKGS[@]}" valgrind

harden_configure "$BUILD" --enable-werror CFLAGS="-O1 -g"
cd "$BUILD"
make -j"$(harden_jobs)" >make.out 2>&1 || { tail -40 make.out; echo "valgrind: build FAILED"; exit 1; }
# build the Check programs without running them
make -j"$(harden_jobs)" -C tests check TESTS= >>make.out 2>&1 ||
    { tail -40 make.out; echo "valgrind: building the tests FAILED"; exit 1; }

export CK_FORK=no CK_TAP_LOG_FILE_NAME=- STILL_TEST_DATA="$HARDEN_SRC/tests/data"
mkdir -p vg
VG=(valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --error-exitcode=1 --track-fds=no
    --num-callers=30 --trace-children=no)
results=()
failed=0
# vgrun NAME EXPECTED-STATUS CMD...: runs CMD under memcheck; it must exit
# with EXPECTED-STATUS ("0", or "nonzero" for a refused input) and every
# memcheck log it wrote must say 0 errors.
vgrun() {
    local name=$1 want=$2 status=0 log bad=0
    shift 2
    rm -f vg/"$name".*.log
    "${VG[@]}" --log-file="vg/$name.%p.log" "$@" >"vg/$name.out" 2>&1 || status=$?
    for log in vg/"$name".*.log; do
        grep -q 'ERROR SUMMARY: 0 errors' "$log" || bad=1
    done
    if [ "$want" = 0 ] && [ "$status" -ne 0 ]; then bad=1; fi
    if [ "$want" = nonzero ] && { [ "$status" -eq 0 ] || [ "$status" -eq 1 ]; }; then
        # 1 is memcheck's error exit code here; a refusal uses the tool's own codes
        bad=1
    fi
    local errs
    errs=$(cat vg/"$name".*.log | sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' |
           awk '{s += $1} END {print s + 0}')
    if [ "$bad" -ne 0 ]; then
        failed=$((failed + 1))
        results+=("$(printf '%-28s FAILED (exit %d, %s memcheck errors)' "$name" "$status" "$errs")")
        echo "---- $name FAILED; its output and memcheck logs:"
        tail -30 "vg/$name.out"
        for log in vg/"$name".*.log; do
            grep -q 'ERROR SUMMARY: 0 errors' "$log" || sed -n '/^==[0-9]*== [A-Z].*/,$p' "$log" | head -80
        done
    else
        results+=("$(printf '%-28s ok (exit %d, 0 memcheck errors, %d process(es))' "$name" "$status" \
                  "$(ls vg/"$name".*.log | wc -l)")")
    fi
}

for t in $TESTS_WANTED; do
    if [ ! -x "tests/$t" ]; then
        results+=("$(printf '%-28s not built here, skipped' "$t")")
        continue
    fi
    echo "valgrind: $t"
    vgrun "$(echo "$t" | tr / _)" 0 "tests/$t"
done

# the tool on the seed corpus' small inputs: q [1,2,8,4], k/v [1,1,8,*]
C="$HARDEN_SRC/tests/fuzz/corpus/npy"
T=tools/still
if [ -x "$T" ]; then
    io=(--q "$C/seed-q-1x2x8x4.npy" --k "$C/seed-k-1x1x8x4.npy" --v "$C/seed-v-1x1x8x3.npy")
    echo "valgrind: the still tool"
    vgrun tool_run_ref 0 "$T" run "${io[@]}" --chunk 4 --topk 1 --path ref --out vg/o_ref.npy
    vgrun tool_teacher 0 "$T" teacher "${io[@]}" --out vg/o_teacher.npy
    if "$T" run "${io[@]}" --chunk 4 --topk 1 --path fast --out vg/o_fast_probe.npy >/dev/null 2>&1; then
        vgrun tool_run_fast 0 "$T" run "${io[@]}" --chunk 4 --topk 1 --path fast --out vg/o_fast.npy
    else
        results+=("$(printf '%-28s skipped: --path fast is refused by this build' tool_run_fast)")
    fi
    vgrun tool_bad_npy nonzero "$T" run --q "$C/seed-f4-fortran.npy" --k "$C/seed-k-1x1x8x4.npy" \
        --v "$C/seed-v-1x1x8x3.npy" --out vg/o_bad.npy
    vgrun tool_bad_flag nonzero "$T" run "${io[@]}" --chunk banana --out vg/o_bad.npy
else
    results+=("the still tool: not built, skipped")
fi

echo
echo "valgrind summary (memcheck, definite leaks count, CK_FORK=no):"
for r in "${results[@]}"; do echo "  $r"; done
if [ "$failed" -ne 0 ]; then
    echo "valgrind: FAILED ($failed run(s))"
    exit 1
fi
echo "valgrind: OK"
