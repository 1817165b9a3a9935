#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_tool_sizes.sh -- configuration values at the top of the ranges the
# tool accepts (--chunk, --topk, --window, --local, --cap up to 2^40): what
# derives from two of them (C x L, max_sel + k, 2w) must saturate, not
# overflow, so a value beyond the sequence acts as its length.  Each huge
# configuration of `still run` (both paths) and `still grad` must equal a
# small one with the same meaning; it used to crash (SIGSEGV, chunk = local
# = 2^40) or silently mix the linear set into the cache.  Printing TAP.

. "$(dirname "$0")/tap.sh"
tap_start test_tool_sizes

tap_require tools

# B=1, Hq=2, Hk=1, N=20, d=4, dv=3
"$GEN" "$dir/q.npy" f8 1 1 1 2 20 4 &&
    "$GEN" "$dir/k.npy" f8 2 1 1 1 20 4 &&
    "$GEN" "$dir/v.npy" f8 3 1 1 1 20 3
report $? "gen_npy writes the inputs"
IN="--q $dir/q.npy --k $dir/k.npy --v $dir/v.npy --threads 1"
T=1099511627776 # 2^40, the tool's upper bound

# same NAME HUGE SMALL: run (ref and fast) and grad with the two option
# sets, and compare the outputs
same() {
    name=$1
    for path in ref fast; do
        # shellcheck disable=SC2086
        expect 0 "$name: run --path $path (huge)" "$STILL" run $IN $2 --path $path \
            --out "$dir/oh-$path.npy"
        # shellcheck disable=SC2086
        expect 0 "$name: run --path $path (small)" "$STILL" run $IN $3 --path $path \
            --out "$dir/os-$path.npy"
        expect 0 "$name: run --path $path gives the small configuration's output" \
            "$STILL" check "$dir/oh-$path.npy" "$dir/os-$path.npy" --rtol 1e-12 --atol 1e-12
    done
    # shellcheck disable=SC2086
    expect 0 "$name: grad (huge)" "$STILL" grad $IN $2 --grads-out "$dir/gh.safetensors"
    lh=$(sed -n 's/.*; loss \([^;]*\);.*/\1/p' "$dir/stdout")
    # shellcheck disable=SC2086
    expect 0 "$name: grad (small)" "$STILL" grad $IN $3 --grads-out "$dir/gs.safetensors"
    ls=$(sed -n 's/.*; loss \([^;]*\);.*/\1/p' "$dir/stdout")
    [ -n "$lh" ] && [ "$lh" = "$ls" ]
    report $? "$name: grad gives the small configuration's loss ($lh vs $ls)"
}

same "chunk = local = 2^40" "--chunk $T --topk 3 --window 8 --local $T" \
    "--chunk 64 --topk 3 --window 8 --local 1"
same "local = 2^40" "--chunk 4 --topk 2 --window 8 --local $T --cap $T" \
    "--chunk 4 --topk 2 --window 8 --local 5"
same "everything 2^40" "--chunk $T --topk $T --window $T --local $T --cap $T" \
    "--chunk 64 --topk 64 --window 20 --local 1"
# and two with a linear set, so that the losses are not ~0
same "cap 2^40" "--chunk 4 --topk 2 --window 8 --local 1 --cap $T" \
    "--chunk 4 --topk 2 --window 8 --local 1"
same "chunk 2^40, local 0" "--chunk $T --topk 3 --window 8 --local 0 --cap $T" \
    "--chunk 64 --topk 3 --window 8 --local 0"
same "routing window, window 2^40" "--routing window --chunk $T --window $T --local $T" \
    "--routing window --chunk 64 --window 20"

tap_end
