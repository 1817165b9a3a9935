#!/bin/bash
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# .ci/sanitize.sh -- the sanitizer job of issue 7: an out-of-tree build with
# AddressSanitizer + UndefinedBehaviorSanitizer, then the whole Check suite
# (`make check`) with CK_FORK=no so every test runs in one process and the
# leak checker sees it.  Any report fails the run: -fno-sanitize-recover=all
# turns UBSan findings into aborts, halt_on_error=1 stops ASan at the first
# error, detect_leaks=1 makes LeakSanitizer report at exit, and the logs are
# grepped for reports as a second line of defence.
#
# Then ThreadSanitizer on tests/test_concurrency (8 pthreads calling the
# API on separate and shared inputs, the fast path's OpenMP regions inside).
# TSan needs every synchronization it is to see to be instrumented, and the
# OpenMP runtime is not:
#   - gcc + libgomp: 230 reports on a clean run, every one between a
#     libgomp worker and the thread that waited for it (libgomp's barriers
#     are futexes TSan cannot see) -- unusable;
#   - clang + libomp + its TSan tool libarcher (OMP_TOOL_LIBRARIES, which
#     tells TSan the OpenMP happens-before edges): 25 reports left, all
#     inside libomp's own uninstrumented allocator and locks; with
#     .ci/tsan.supp (called_from_lib:libomp.so.5) 0 reports, while a
#     deliberate race in an omp region or between pthreads is still
#     reported (checked when this job was written).
# So the TSan stage uses clang + libomp + archer + that suppression.
#
# Env: SANITIZE_STAGES (default "asan tsan"), SANITIZE_CC (default gcc),
# TSAN_BUILD_DIR (default: the ASan one + "-tsan"), SANITIZE_BUILD_DIR (default
# /tmp/libstill-ci-sanitize, where .ci/run counts its TAP results).
set -euo pipefail
. "$(dirname "$0")/harden-common.sh"

CC_SAN=${SANITIZE_CC:-gcc}
BUILD=${SANITIZE_BUILD_DIR:-/tmp/libstill-ci-sanitize}
harden_need "${HARDEN_BUILD_PKGS[@]}" clang libomp-14-dev

STAGES=${SANITIZE_STAGES:-"asan tsan"}
has_stage() { case " $STAGES " in *" $1 "*) return 0 ;; esac; return 1; }

asan_stage() {
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"
harden_configure "$BUILD" --enable-werror CC="$CC_SAN" \
    CFLAGS="-O1 -g $SAN -fno-omit-frame-pointer" LDFLAGS="$SAN"

# LSan suppressions (see the file for why each entry is there).
export CK_FORK=no
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:allocator_may_return_null=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export LSAN_OPTIONS="suppressions=$HARDEN_SRC/.ci/lsan.supp:print_suppressions=0"

cd "$BUILD"
make -j"$(harden_jobs)" >make.out 2>&1 || { tail -60 make.out; echo "sanitize: build FAILED"; exit 1; }
status=0
# Every subdirectory but python/ first; python/ loads the ASan-built
# libstill.so into an uninstrumented python3 through ctypes, which ASan
# allows only with its runtime preloaded, and python's own allocations are
# not ours: that one test runs with the runtime preloaded and leak
# detection off (LeakSanitizer covers libstill in every C test).
subdirs=$(sed -n 's/^SUBDIRS *= *//p' "$HARDEN_SRC/Makefile.am" | sed 's/\<python\>//')
make -j"$(harden_jobs)" check SUBDIRS="$subdirs" >check.out 2>&1 || status=$?
if [ -d python ]; then
    case $CC_SAN in
        clang*) rt=$($CC_SAN -print-file-name=libclang_rt.asan-x86_64.so) ;;
        *) rt=$($CC_SAN -print-file-name=libasan.so) ;;
    esac
    # preloaded into python3 only (in make itself ASan flags make's strndup)
    # the python3 check-python.sh would choose: the first with NumPy
    py=/usr/bin/python3
    for cand in "$(command -v python3 || true)" /usr/bin/python3; do
        if [ -n "$cand" ] && "$cand" -c 'import numpy' >/dev/null 2>&1; then
            py=$cand
            break
        fi
    done
    printf '#!/bin/sh\nLD_PRELOAD="%s" ASAN_OPTIONS="%s:detect_leaks=0" exec "%s" "$@"\n' \
        "$rt" "$ASAN_OPTIONS" "$py" >python3-asan
    chmod +x python3-asan
    make -C python check PYTHON3="$BUILD/python3-asan" >>check.out 2>&1 || status=$?
fi

# every per-program log; a report anywhere fails the job even if a runner
# somewhere swallowed the exit status
reports=$(grep -lE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|UndefinedBehavior|Leak)Sanitizer' \
          $(find . -name '*.log' -not -name config.log) check.out 2>/dev/null || true)
grep -E '^(PASS|FAIL|ERROR|XFAIL|XPASS|SKIP):' check.out | sort | uniq -c | sort -rn | head -5 || true
for f in $(find . -name test-suite.log); do
    echo "== $f"; sed -n '1,12p' "$f" | grep -E '^# (TOTAL|PASS|SKIP|XFAIL|FAIL|XPASS|ERROR)' || true
done
if [ -n "$reports" ]; then
    for f in $reports; do
        echo "== sanitizer report in $f"
        grep -E -A25 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$f" | head -60
    done
    status=1
fi
if [ "$status" -ne 0 ]; then
    for f in $(find . -name test-suite.log); do cat "$f"; done | head -200
    grep -E -B2 -A3 'error:|Error [0-9]' check.out | head -40 || true
    echo "sanitize: FAILED (ASan+UBSan, $CC_SAN)"
    exit 1
fi
echo "sanitize: ASan+UBSan+LSan OK -- make check clean ($CC_SAN, CK_FORK=no)"
}

# ---- ThreadSanitizer: the concurrency suite (see the top of this file) ----
tsan_stage() {
TSAN_BUILD=${TSAN_BUILD_DIR:-$BUILD-tsan}
harden_configure "$TSAN_BUILD" CC=clang CFLAGS="-O1 -g -fsanitize=thread" \
    LDFLAGS="-fsanitize=thread" --disable-shared
cd "$TSAN_BUILD"
{ make -j"$(harden_jobs)" -C ref && make -j"$(harden_jobs)" -C simd &&
  make -j"$(harden_jobs)" -C lib && make -C tests test_concurrency; } >make.out 2>&1 ||
    { tail -40 make.out; echo "sanitize: TSan build FAILED"; exit 1; }
archer=$(ls /usr/lib/llvm-*/lib/libarcher.so 2>/dev/null | head -1)
[ -n "$archer" ] || { echo "sanitize: libarcher.so not found (Debian package libomp-14-dev)"; exit 1; }
tstatus=0
CK_FORK=no CK_TAP_LOG_FILE_NAME=- OMP_TOOL_LIBRARIES="$archer" ARCHER_OPTIONS=verbose=1 \
    TSAN_OPTIONS="halt_on_error=1 exitcode=66 suppressions=$HARDEN_SRC/.ci/tsan.supp" \
    tests/test_concurrency >tsan.out 2>&1 || tstatus=$?
grep -E '^(ok|not ok)|Checks:' tsan.out | tail -5 || true
if [ "$tstatus" -ne 0 ] || grep -q 'WARNING: ThreadSanitizer' tsan.out; then
    grep -A40 'WARNING: ThreadSanitizer' tsan.out | head -80 || tail -40 tsan.out
    echo "sanitize: ThreadSanitizer FAILED (exit $tstatus)"
    exit 1
fi
grep -q 'Archer detected OpenMP application with TSan' tsan.out ||
    echo "sanitize: note: archer did not announce itself; OpenMP edges may be unseen"
echo "sanitize: ThreadSanitizer OK -- test_concurrency, 0 reports (clang + libomp + archer)"
}

if has_stage asan; then asan_stage; fi
if has_stage tsan; then tsan_stage; fi
echo "sanitize: OK ($STAGES)"
