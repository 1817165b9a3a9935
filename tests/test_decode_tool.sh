#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_decode_tool.sh -- `still decode` and `still run --mode decode` end to
# end (SPEC §7, §11), printing TAP: stopping and resuming through a state
# file gives the same outputs and the same final state as one run (on both
# paths, for any stop and prefill), `run --mode decode` equals `decode`,
# decode equals prefill (SPEC I6), and every bad state file or option is
# refused with one line on stderr and no output written.

. "$(dirname "$0")/tap.sh"
tap_start test_decode_tool

# run COMMAND...: runs quietly, returns its status (stderr kept in $dir/stderr)
run() {
    "$@" >"$dir/stdout" 2>"$dir/stderr"
}

# refused STATUS DESCRIPTION COMMAND...: exits with STATUS, one line on
# stderr, and neither $dir/o.npy nor $dir/o.st written.
refused() {
    want=$1
    desc=$2
    shift 2
    rm -f "$dir/o.npy" "$dir/o.st"
    run "$@"
    got=$?
    lines=$(wc -l <"$dir/stderr")
    if [ "$got" -ne "$want" ] || [ "$lines" -ne 1 ] || [ -e "$dir/o.npy" ] || [ -e "$dir/o.st" ] ||
        ls "$dir" | grep -q '\.tmp-'; then
        echo "# status $got (expected $want), $lines stderr lines: $*"
        sed 's/^/#   /' "$dir/stderr"
        report 1 "$desc"
    else
        report 0 "$desc"
    fi
}

# data FILE BYTES: the last BYTES bytes of a file (the data of a .npy)
data() {
    tail -c "$2" "$1"
}

N=45
$GEN "$dir/q.npy" f8 1 1.0 2 4 $N 8 &&
    $GEN "$dir/k.npy" f8 2 1.0 2 2 $N 8 &&
    $GEN "$dir/v.npy" f8 3 1.0 2 2 $N 6 &&
    $GEN "$dir/q1.npy" f8 4 1.0 1 $N 8 &&
    $GEN "$dir/k1.npy" f8 5 1.0 1 $N 8 &&
    $GEN "$dir/v1.npy" f8 6 1.0 1 $N 5 || {
    echo "Bail out! gen_npy failed"
    exit 1
}
IN="--q $dir/q.npy --k $dir/k.npy --v $dir/v.npy"
IN1="--q $dir/q1.npy --k $dir/k1.npy --v $dir/v1.npy"

# stop_resume PATH DESCRIPTION OPTIONS...: for several stops and prefills,
# one run vs a run stopped at the stop and resumed: the final states are the
# same bytes; on the 1-head inputs, the two outputs put end to end are the
# one run's output, byte for byte.
stop_resume() {
    path=$1
    desc=$2
    shift 2
    bad=""
    run "$STILL" decode $IN --path "$path" "$@" --out "$dir/a.npy" --state-out "$dir/a.st" ||
        bad="$bad one-run"
    run "$STILL" decode $IN1 --path "$path" "$@" --out "$dir/a1.npy" --state-out "$dir/a1.st" ||
        bad="$bad one-run-1head"
    es=8
    [ "$path" = fast ] && es=4
    for stop in 1 9 20; do
        for pre in 0 5; do
            [ "$pre" -gt "$stop" ] && continue
            run "$STILL" decode $IN --path "$path" "$@" --stop $stop --prefill $pre \
                --out "$dir/b1.npy" --state-out "$dir/b1.st" &&
                run "$STILL" decode $IN --path "$path" "$@" --state-in "$dir/b1.st" \
                    --out "$dir/b2.npy" --state-out "$dir/b2.st" || {
                bad="$bad stop$stop/$pre(status)"
                continue
            }
            cmp -s "$dir/a.st" "$dir/b2.st" || bad="$bad stop$stop/$pre(state)"
            run "$STILL" decode $IN1 --path "$path" "$@" --stop $stop --prefill $pre \
                --out "$dir/c1.npy" --state-out "$dir/c1.st" &&
                run "$STILL" decode $IN1 --path "$path" "$@" --state-in "$dir/c1.st" \
                    --out "$dir/c2.npy" || {
                bad="$bad 1head-stop$stop/$pre(status)"
                continue
            }
            { data "$dir/c1.npy" $((stop * 5 * es)); data "$dir/c2.npy" $(((N - stop) * 5 * es)); } \
                >"$dir/c.bin"
            data "$dir/a1.npy" $((N * 5 * es)) | cmp -s - "$dir/c.bin" ||
                bad="$bad 1head-stop$stop/$pre(output)"
        done
    done
    [ -n "$bad" ] && echo "# differs:$bad"
    [ -z "$bad" ]
    report $? "$desc"
}

stop_resume ref "ref: stop + resume = one run (saliency, L=2)" --chunk 8 --topk 2
stop_resume ref "ref: stop + resume = one run (cap 5, L=0)" --chunk 8 --topk 2 --cap 5 --local 0
stop_resume ref "ref: stop + resume = one run (routing window)" --chunk 8 --routing window --window 6
stop_resume fast "fast: stop + resume = one run (cap 5)" --chunk 8 --topk 2 --cap 5
stop_resume fast "fast: stop + resume = one run (L=1, routing all)" --chunk 8 --routing all --local 1
stop_resume ref "ref: stop + resume = one run (mixer liger, SPEC §16)" --mixer liger --window 6
stop_resume fast "fast: stop + resume = one run (mixer liger)" --mixer liger --window 6

# three legs: 0..9, 10..29, 30..44
run "$STILL" decode $IN --chunk 8 --topk 2 --cap 5 --stop 10 --out "$dir/l1.npy" --state-out "$dir/l1.st" &&
    run "$STILL" decode $IN --chunk 8 --topk 2 --cap 5 --state-in "$dir/l1.st" --stop 30 \
        --out "$dir/l2.npy" --state-out "$dir/l2.st" &&
    run "$STILL" decode $IN --chunk 8 --topk 2 --cap 5 --state-in "$dir/l2.st" \
        --out "$dir/l3.npy" --state-out "$dir/l3.st" &&
    run "$STILL" decode $IN --chunk 8 --topk 2 --cap 5 --out "$dir/a.npy" --state-out "$dir/a.st" &&
    cmp -s "$dir/l3.st" "$dir/a.st"
report $? "three legs through two state files = one run"

# mixer liger's linear inputs through still decode (SPEC §16)
$GEN "$dir/ql1.npy" f8 7 1.0 1 $N 8 && $GEN "$dir/kl1.npy" f8 8 1.0 1 $N 8 &&
    run "$STILL" decode $IN1 --mixer liger --window 6 --q-lin "$dir/ql1.npy" \
        --k-lin "$dir/kl1.npy" --out "$dir/lg.npy" &&
    run "$STILL" run $IN1 --mixer liger --window 6 --q-lin "$dir/ql1.npy" \
        --k-lin "$dir/kl1.npy" --mode decode --out "$dir/lr.npy" &&
    cmp -s "$dir/lg.npy" "$dir/lr.npy" &&
    run "$STILL" decode $IN1 --mixer liger --window 6 --out "$dir/l0.npy" &&
    ! cmp -s "$dir/lg.npy" "$dir/l0.npy"
report $? "decode --mixer liger --q-lin --k-lin = run --mode decode, and the inputs count"

# still run --mode decode = still decode (the same appends of one token)
run "$STILL" run $IN --chunk 8 --topk 2 --cap 5 --mode decode --out "$dir/r.npy" &&
    cmp -s "$dir/r.npy" "$dir/a.npy"
report $? "run --mode decode = decode, byte for byte"

# SPEC I6: decode = prefill (ref path, double: to rounding)
run "$STILL" run $IN --chunk 8 --topk 2 --cap 5 --out "$dir/p.npy" &&
    run "$STILL" check "$dir/a.npy" "$dir/p.npy" --rtol 0 --atol 1e-12
report $? "decode = prefill within 1e-12 (SPEC I6)"
run "$STILL" run $IN --chunk 8 --topk 2 --path fast --out "$dir/pf.npy" &&
    run "$STILL" decode $IN --chunk 8 --topk 2 --path fast --prefill 13 --out "$dir/df.npy" &&
    cmp -s "$dir/pf.npy" "$dir/df.npy"
report $? "fast path: decode = prefill, bitwise"

# refusals: one line on stderr, no output
run "$STILL" decode $IN --chunk 8 --topk 2 --cap 5 --stop 20 --out "$dir/b1.npy" --state-out "$dir/good.st"
size=$(wc -c <"$dir/good.st")
head -c $((size - 1)) "$dir/good.st" >"$dir/trunc.st"
refused 3 "a truncated state file" "$STILL" decode $IN --chunk 8 --topk 2 --cap 5 \
    --state-in "$dir/trunc.st" --out "$dir/o.npy" --state-out "$dir/o.st"
{ head -c 300 "$dir/good.st"; printf 'X'; tail -c $((size - 301)) "$dir/good.st"; } >"$dir/flip.st"
refused 3 "a corrupted state file" "$STILL" decode $IN --chunk 8 --topk 2 --cap 5 \
    --state-in "$dir/flip.st" --out "$dir/o.npy" --state-out "$dir/o.st"
{ head -c 8 "$dir/good.st"; printf '\011'; tail -c $((size - 9)) "$dir/good.st"; } >"$dir/ver.st"
refused 3 "a state file of another version" "$STILL" decode $IN --chunk 8 --topk 2 --cap 5 \
    --state-in "$dir/ver.st" --out "$dir/o.npy"
refused 3 "a missing state file" "$STILL" decode $IN --chunk 8 --topk 2 --cap 5 \
    --state-in "$dir/none.st" --out "$dir/o.npy"
refused 3 "a state saved with another configuration" "$STILL" decode $IN --chunk 8 --topk 3 \
    --cap 5 --state-in "$dir/good.st" --out "$dir/o.npy"
refused 3 "a state saved by the other path" "$STILL" decode $IN --chunk 8 --topk 2 --cap 5 \
    --path fast --state-in "$dir/good.st" --out "$dir/o.npy"
refused 3 "a state of other shapes" "$STILL" decode $IN1 --chunk 8 --topk 2 --cap 5 \
    --state-in "$dir/good.st" --out "$dir/o.npy"
refused 3 "--stop beyond the inputs" "$STILL" decode $IN --chunk 8 --stop 46 --out "$dir/o.npy"
refused 3 "nothing left to decode" "$STILL" decode $IN --chunk 8 --topk 2 --cap 5 --stop 20 \
    --state-in "$dir/good.st" --out "$dir/o.npy"
refused 2 "--prefill beyond the tokens to decode" "$STILL" decode $IN --chunk 8 --stop 10 \
    --prefill 11 --out "$dir/o.npy"
refused 2 "--state-out = --state-in" "$STILL" decode $IN --chunk 8 --topk 2 --cap 5 \
    --state-in "$dir/good.st" --state-out "$dir/good.st" --out "$dir/o.npy"
refused 2 "--mode prefill" "$STILL" decode $IN --mode prefill --out "$dir/o.npy"
refused 2 "an unknown option" "$STILL" decode $IN --frobnicate --out "$dir/o.npy"
refused 5 "an unwritable --state-out" "$STILL" decode $IN --chunk 8 --out "$dir/o.npy" \
    --state-out "$dir/no/such/dir/o.st"

tap_end
