#!/bin/bash
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# bench/run.sh -- the benchmarks of the fast path, in one run:
#   still info; bench_kernels (our kernels vs cblas_sgemm, one core, with
#   OpenBLAS's default core and with OPENBLAS_CORETYPE=SkylakeX); the table
#   of `still bench` with the plot; and the BLAS-dependent lines again with
#   SkylakeX.  Run it on a quiet machine: the figures are medians, but a
#   shared machine still moves them.
# usage: bench/run.sh [BUILD_DIR [OUT_DIR]]   (defaults: . and ./bench-results)
set -euo pipefail
BUILD=$(cd "${1:-.}" && pwd)
OUT=${2:-$BUILD/bench-results}
THREADS=${BENCH_THREADS:-2}
mkdir -p "$OUT"
make -C "$BUILD/lib" >/dev/null
make -C "$BUILD/tools" >/dev/null
make -C "$BUILD/bench" bench >/dev/null
STILL=$BUILD/tools/still
KERNELS=$BUILD/bench/bench_kernels

"$STILL" info | tee "$OUT/info.txt"
echo
for core in default SkylakeX; do
    echo "== bench_kernels, OpenBLAS core: $core"
    if [ "$core" = default ]; then
        OPENBLAS_NUM_THREADS=1 "$KERNELS"
    else
        OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=$core "$KERNELS"
    fi
done | tee "$OUT/kernels.txt"
echo
echo "== still bench (OpenBLAS default core)"
"$STILL" bench --threads "$THREADS" --n 1024,2048,4096,8192,16384,32768,65536 \
    --teacher-max 65536 --ref-max 2048 --reps 5 --blas --plot "$OUT/still_bench.png" | tee "$OUT/table.txt"
echo
echo "== still bench, OpenBLAS core SkylakeX: the lines that use BLAS"
OPENBLAS_CORETYPE=SkylakeX "$STILL" bench --threads "$THREADS" --n 2048,4096 --blas \
    --ref-max 0 | tee "$OUT/table_skylakex.txt"
echo
echo "== the same with OMP_WAIT_POLICY=passive (libgomp's threads do not spin after"
echo "   a region, so OpenBLAS's threads get the cores between our regions)"
for core in default SkylakeX; do
    echo "-- OpenBLAS core $core"
    if [ "$core" = default ]; then
        OMP_WAIT_POLICY=passive "$STILL" bench --threads "$THREADS" --n 2048,4096 --blas --ref-max 0
    else
        OMP_WAIT_POLICY=passive OPENBLAS_CORETYPE=$core "$STILL" bench --threads "$THREADS" \
            --n 2048,4096 --blas --ref-max 0
    fi
done | tee "$OUT/table_passive.txt"
echo "results in $OUT"
