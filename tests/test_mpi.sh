#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_mpi.sh -- the exact path split by query range across MPI processes:
# `mpirun -np P still run --path ref` (and still teacher) writes the bytes
# of the one-process run, for 2 and 3 ranks on loopback, with more ranks
# than queries, and the commands that cannot split are refused.  Skipped
# when the tool was built without Open MPI or mpirun is missing.
. "$(dirname "$0")/tap.sh"
tap_start test_mpi
tap_require tools
if [ -n "${ASAN_OPTIONS:-}" ]; then
    echo "1..0 # SKIP under AddressSanitizer (Open MPI's runtime is not instrumented)"
    exit 0
fi
if ! "$STILL" info | grep -q '^MPI  *yes'; then
    echo "1..0 # SKIP the tool was built without MPI (install libopenmpi-dev and reconfigure)"
    exit 0
fi
if ! command -v mpirun >/dev/null 2>&1; then
    echo "1..0 # SKIP mpirun not found (install the Debian package openmpi-bin)"
    exit 0
fi
# Open MPI refuses root unless told; two local ranks talk over loopback TCP.
OMPI_ALLOW_RUN_AS_ROOT=1
OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
mpi() { # mpi NP COMMAND...: bounded, on loopback
    np=$1
    shift
    timeout 180 mpirun --oversubscribe -np "$np" --mca btl self,tcp \
        --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo "$@"
}

"$GEN" "$dir/q.npy" f4 1 1 2 4 260 16 &&
    "$GEN" "$dir/k.npy" f4 2 1 2 2 260 16 &&
    "$GEN" "$dir/v.npy" f4 3 1 2 2 260 8 &&
    "$GEN" "$dir/gate.npy" f4 4 1 2 4 260 8 || exit 1
in="--q $dir/q.npy --k $dir/k.npy --v $dir/v.npy"
cfg="--gate $dir/gate.npy --chunk 16 --topk 3 --cap 9 --select-per-kv"
# shellcheck disable=SC2086
"$STILL" run $in $cfg --out "$dir/o1.npy" --scores-out "$dir/s1.npy" \
    --select-out "$dir/sel1.npy" >/dev/null || exit 1
for np in 2 3; do
    # shellcheck disable=SC2086
    expect 0 "still run over $np processes ends with status 0" \
        mpi "$np" "$STILL" run $in $cfg --out "$dir/o$np.npy" --scores-out "$dir/s$np.npy" \
        --select-out "$dir/sel$np.npy"
    cmp -s "$dir/o1.npy" "$dir/o$np.npy" && cmp -s "$dir/s1.npy" "$dir/s$np.npy" &&
        cmp -s "$dir/sel1.npy" "$dir/sel$np.npy"
    report $? "still run over $np processes writes the bytes of one process"
done

# layout BNHD: the gather places each rank's rows of o [B,N,H,dv]
"$GEN" "$dir/qt.npy" f4 5 1 2 260 4 16 &&
    "$GEN" "$dir/kt.npy" f4 6 1 2 260 2 16 &&
    "$GEN" "$dir/vt.npy" f4 7 1 2 260 2 8 || exit 1
int="--layout bnhd --q $dir/qt.npy --k $dir/kt.npy --v $dir/vt.npy --chunk 16 --topk 3"
# shellcheck disable=SC2086
"$STILL" run $int --out "$dir/ot1.npy" >/dev/null || exit 1
# shellcheck disable=SC2086
expect 0 "still run --layout bnhd over 2 processes ends with status 0" \
    mpi 2 "$STILL" run $int --out "$dir/ot2.npy"
cmp -s "$dir/ot1.npy" "$dir/ot2.npy"
report $? "still run --layout bnhd over 2 processes writes the bytes of one process"

# the teacher, float32 output
# shellcheck disable=SC2086
"$STILL" teacher $in --dtype f4 --out "$dir/t1.npy" >/dev/null || exit 1
# shellcheck disable=SC2086
expect 0 "still teacher over 2 processes ends with status 0" \
    mpi 2 "$STILL" teacher $in --dtype f4 --out "$dir/t2.npy"
cmp -s "$dir/t1.npy" "$dir/t2.npy"
report $? "still teacher over 2 processes writes the bytes of one process"

# more processes than queries: the idle ranks only take part in the gather
"$GEN" "$dir/q2.npy" f4 5 1 1 2 2 4 && "$GEN" "$dir/k2.npy" f4 6 1 1 1 2 4 &&
    "$GEN" "$dir/v2.npy" f4 7 1 1 1 2 4 || exit 1
small="--q $dir/q2.npy --k $dir/k2.npy --v $dir/v2.npy --chunk 1 --topk 1"
# shellcheck disable=SC2086
"$STILL" run $small --out "$dir/small1.npy" >/dev/null || exit 1
# shellcheck disable=SC2086
expect 0 "3 processes for 2 queries end with status 0" \
    mpi 3 "$STILL" run $small --out "$dir/small3.npy"
cmp -s "$dir/small1.npy" "$dir/small3.npy"
report $? "3 processes for 2 queries write the bytes of one process"

# what cannot split is refused, with nothing written
# shellcheck disable=SC2086
mpi 2 "$STILL" run $in --path fast --out "$dir/fast.npy" >"$dir/stdout" 2>"$dir/stderr"
st=$?
[ "$st" -ne 0 ] && [ ! -e "$dir/fast.npy" ] && grep -q "only the reference path" "$dir/stderr"
report $? "the fast path under MPI is refused (status $st), nothing written"
mpi 2 "$STILL" check "$dir/o1.npy" "$dir/o2.npy" >"$dir/stdout" 2>"$dir/stderr"
st=$?
[ "$st" -ne 0 ] && grep -q "only still run and still teacher split" "$dir/stderr"
report $? "another command under MPI is refused (status $st)"
tap_end
