#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_threads_env.sh -- the tool under hostile OpenMP environments,
# printing TAP.
#
# Absurd thread counts and stack sizes once ended the process inside the
# OpenMP runtime: OMP_NUM_THREADS=100000 overflowed the stack in libgomp
# (SIGSEGV), 2147483647 exited with status 1 ("Out of memory"), and
# OMP_STACKSIZE=100G exited with status 1 ("Thread creation failed"), all
# statuses still(1) does not document.  The library bounds its teams
# (libstill(3), ENVIRONMENT), so every run here must end within the
# timeout with status 0 and the bits of a one-thread run (SPEC I7), and an
# out-of-range --threads must be a usage error.

. "$(dirname "$0")/tap.sh"
tap_start test_threads_env

tap_require tools timeout
LIMIT=120 # seconds; a run that reaches it has hung

# 1200 units (B = 2, Hq = 600): more than STILL_THREADS_MAX, so the bound
# itself is exercised, not only "no more threads than units"
"$GEN" "$dir/q.npy" f4 1 1 2 600 8 4 &&
    "$GEN" "$dir/k.npy" f4 2 1 2 600 8 4 &&
    "$GEN" "$dir/v.npy" f4 3 1 2 600 8 4 || {
    echo "1..0 # SKIP gen_npy failed"
    exit 0
}
io="--q $dir/q.npy --k $dir/k.npy --v $dir/v.npy --path fast --chunk 4"

# the one-thread results, in a clean environment
for c in prefill decode teacher; do
    case $c in
    teacher) cmd="teacher $io" ;;
    *) cmd="run $io --mode $c" ;;
    esac
    # shellcheck disable=SC2086
    expect 0 "$c with --threads 1" env -u OMP_NUM_THREADS -u OMP_STACKSIZE \
        "$STILL" $cmd --threads 1 --out "$dir/want-$c.npy"
done

# hostile ENV...: each command ends with status 0 and the one-thread bits
hostile() {
    for c in prefill decode teacher; do
        case $c in
        teacher) cmd="teacher $io" ;;
        *) cmd="run $io --mode $c" ;;
        esac
        rm -f "$dir/o.npy"
        # shellcheck disable=SC2086
        expect 0 "$* $c: status 0" env "$@" timeout $LIMIT "$STILL" $cmd --out "$dir/o.npy"
        cmp -s "$dir/o.npy" "$dir/want-$c.npy"
        report $? "$* $c: the bits of one thread"
    done
}
hostile OMP_NUM_THREADS=100000
hostile OMP_NUM_THREADS=2147483647
hostile OMP_STACKSIZE=100G
hostile OMP_STACKSIZE=100G OMP_NUM_THREADS=64
hostile GOMP_STACKSIZE=104857600 OMP_NUM_THREADS=8
hostile OMP_THREAD_LIMIT=1 OMP_NUM_THREADS=100000

# an address-space limit that cannot hold 1024 default stacks (8 MiB each)
# but holds the process: the teams shrink to fit.  Skipped where the tool
# cannot start under such a limit at all (sanitizer builds reserve more).
# (the inner shell waits for the probe, so a sanitizer's abort is reported
# on its stderr, not this test's)
if sh -c 'ulimit -v 3000000 && "$0" info >/dev/null 2>&1; s=$?; exit $s' "$STILL" 2>/dev/null; then
    # shellcheck disable=SC2086
    expect 0 "ulimit -v 3000000, OMP_NUM_THREADS=1024 prefill: status 0" \
        sh -c 'ulimit -v 3000000 && exec "$@"' sh env OMP_NUM_THREADS=1024 \
        timeout $LIMIT "$STILL" run $io --out "$dir/o.npy"
    cmp -s "$dir/o.npy" "$dir/want-prefill.npy"
    report $? "ulimit -v 3000000, OMP_NUM_THREADS=1024 prefill: the bits of one thread"
else
    skip "prefill under ulimit -v" "the tool does not start under ulimit -v 3000000"
fi

# --threads beyond STILL_THREADS_MAX (1024) or negative: a usage error
for t in 1025 100000 2147483648 -1; do
    # shellcheck disable=SC2086
    expect 2 "--threads $t is a usage error" "$STILL" run $io --threads $t --out "$dir/o.npy"
done
[ ! -e "$dir/o.npy" ] || rm -f "$dir/o.npy"
# shellcheck disable=SC2086
expect 0 "--threads 1024 is accepted" "$STILL" run $io --threads 1024 --out "$dir/o.npy"
cmp -s "$dir/o.npy" "$dir/want-prefill.npy"
report $? "--threads 1024: the bits of one thread"

tap_end
