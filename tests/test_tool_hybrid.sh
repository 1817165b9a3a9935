#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_tool_hybrid.sh -- the tool's --rest, --routing sinks|terraced and
# --sinks (SPEC §11-14) end to end, printing TAP: the fast path within
# SPEC §10 of the ref, the identities (w >= N is the teacher, s = 0 is
# routing window), decode = prefill, and bad values refused in one line.

. "$(dirname "$0")/tap.sh"
tap_start test_tool_hybrid
tap_require tools

N=45
$GEN "$dir/q.npy" f8 1 1.0 2 4 $N 8 &&
    $GEN "$dir/k.npy" f8 2 1.0 2 2 $N 8 &&
    $GEN "$dir/v.npy" f8 3 1.0 2 2 $N 6 || {
    echo "Bail out! gen_npy failed"
    exit 1
}
IN="--q $dir/q.npy --k $dir/k.npy --v $dir/v.npy"
EXACT="--rtol 0 --atol 1e-12"

for routing in "sinks --sinks 3 --window 9" "terraced --window 8"; do
    for rest in linear drop; do
        what="--routing $routing --rest $rest"
        $STILL run $IN $what --out "$dir/r.npy" >/dev/null 2>&1 &&
            $STILL run $IN $what --path fast --out "$dir/f.npy" >/dev/null 2>&1
        report $? "run $what on both paths"
        expect 0 "... fast within SPEC §10 of ref" \
            $STILL check "$dir/f.npy" "$dir/r.npy" --contract --v "$dir/v.npy"
        $STILL run $IN $what --mode decode --out "$dir/d.npy" >/dev/null 2>&1
        expect 0 "... decode equals prefill" $STILL check "$dir/d.npy" "$dir/r.npy" $EXACT
    done
done

$STILL teacher $IN --out "$dir/t.npy" >/dev/null 2>&1
for routing in "sinks --sinks 2 --window 64" "terraced --window 64"; do
    for rest in linear drop; do
        $STILL run $IN --routing $routing --rest $rest --eps-den 0 --out "$dir/o.npy" \
            >/dev/null 2>&1
        expect 0 "--routing $routing --rest $rest (w >= N, eps-den 0) is the teacher" \
            $STILL check "$dir/o.npy" "$dir/t.npy" $EXACT
    done
done

$STILL run $IN --routing sinks --sinks 0 --window 7 --out "$dir/s.npy" >/dev/null 2>&1 &&
    $STILL run $IN --routing window --window 7 --out "$dir/w.npy" >/dev/null 2>&1 &&
    cmp -s "$dir/s.npy" "$dir/w.npy"
report $? "--routing sinks --sinks 0 is --routing window, byte for byte"

expect 2 "--rest foo is refused" $STILL run $IN --rest foo --out "$dir/x.npy"
expect 2 "--sinks -1 is refused" $STILL run $IN --routing sinks --sinks -1 --out "$dir/x.npy"
expect 2 "--routing lru is refused" $STILL run $IN --routing lru --out "$dir/x.npy"
expect 0 "grad --routing sinks --rest drop runs" \
    $STILL grad $IN --routing sinks --sinks 2 --window 9 --rest drop --grads-out "$dir/g.safetensors"
expect 0 "grad --routing terraced runs" \
    $STILL grad $IN --routing terraced --window 8 --grads-out "$dir/g.safetensors"
tap_end
