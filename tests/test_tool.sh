#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_tool.sh -- the `still` tool end to end (SPEC §11), printing TAP.
#
# Inputs are written by gen_npy (its own .npy header code) and by printf
# (safetensors files); the tool is checked on its exit statuses, on "one
# line on stderr and no output file" for every failure class, and on
# results: `run` with --topk = --chunk (and eps-den 0) equals `teacher`
# (SPEC I1), a forced selection reproduces the run that chose it, decode
# equals prefill (SPEC I6), and `check` does fail on arrays that differ.

. "$(dirname "$0")/tap.sh"
tap_start test_tool

# refused STATUS DESCRIPTION COMMAND...: as expect, and afterwards neither
# $dir/out.npy, $dir/sig.npy nor $dir/sel.npy exists, and $dir/keep.npy
# (a file that was there before) is untouched.
refused() {
    rm -f "$dir/out.npy" "$dir/sig.npy" "$dir/sel.npy"
    printf 'keep' >"$dir/keep.npy"
    expect "$@"
    left=""
    for f in out.npy sig.npy sel.npy; do
        [ -e "$dir/$f" ] && left="$left $f"
    done
    [ "$(cat "$dir/keep.npy")" = keep ] || left="$left keep.npy(changed)"
    ls "$dir" | grep -q '\.tmp-' && left="$left (a temporary file)"
    if [ -n "$left" ]; then
        echo "# left behind:$left"
        report 1 "$2: no output written"
    else
        report 0 "$2: no output written"
    fi
}

# descr FILE: the dtype a .npy header declares
descr() {
    head -c 128 "$1" | tr -d '\000' | sed -n "s/.*'descr': '\([^']*\)'.*/\1/p"
}

# safetensors FILE JSON DATABYTES: a safetensors file with zero data
safetensors() {
    len=$(printf '%s' "$2" | wc -c)
    # the 8-byte little-endian length (headers here are < 65536 bytes)
    printf "\\$(printf %03o $((len % 256)))\\$(printf %03o $((len / 256)))\\000\\000\\000\\000\\000\\000" >"$1"
    printf '%s' "$2" >>"$1"
    head -c "$3" /dev/zero >>"$1"
}

tap_require tools

# ---- help and usage --------------------------------------------------------
expect 0 "still --help" "$STILL" --help
grep -q '^exit status:' "$dir/stdout"
report $? "still --help documents the exit statuses"
commands=$(sed -n '/^commands:/,/^$/p' "$dir/stdout" | sed -n 's/^  \([a-z][a-z0-9_-]*\) .*/\1/p')
[ -n "$commands" ]
report $? "still --help lists the subcommands"
for c in $commands; do
    expect 0 "still $c --help" "$STILL" "$c" --help
    grep -q "^usage: still $c" "$dir/stdout"
    report $? "still $c --help prints its usage"
done
expect 2 "still without a command is a usage error" "$STILL"
expect 2 "an unknown command is a usage error" "$STILL" frobnicate
expect 2 "still run without --q --k --v is a usage error" "$STILL" run
expect 2 "still run without --out is a usage error" "$STILL" run --q a --k b --v c
expect 2 "an unknown option is a usage error" "$STILL" run --frob
expect 0 "still info" "$STILL" info
grep -q '^libstill' "$dir/stdout"
report $? "still info names the library version"
grep -q '^fast path ISA' "$dir/stdout"
report $? "still info reports the fast path's ISA"

# ---- inputs -----------------------------------------------------------------
# B=2, Hq=4, Hk=2 (GQA), N=40 (5 chunks of 8), d=8, dv=6
"$GEN" "$dir/q.npy" f4 1 1 2 4 40 8 &&
    "$GEN" "$dir/k.npy" f4 2 1 2 2 40 8 &&
    "$GEN" "$dir/v.npy" f8 3 1 2 2 40 6 &&
    "$GEN" "$dir/g.npy" f4 4 1 2 4 40 6 &&
    "$GEN" --version 2 "$dir/q3.npy" f8 5 1 4 40 8 &&
    "$GEN" --version 3 "$dir/k3.npy" f2 6 1 2 40 8 &&
    "$GEN" "$dir/v3.npy" f4 7 1 2 40 6 &&
    "$GEN" --nan 17 "$dir/vnan.npy" f8 3 1 2 2 40 6 &&
    "$GEN" "$dir/kd.npy" f4 2 1 2 2 40 7 &&
    "$GEN" "$dir/kh.npy" f4 2 1 2 3 40 8 &&
    "$GEN" "$dir/vn.npy" f8 3 1 2 2 39 6 &&
    "$GEN" "$dir/gbad.npy" f4 4 1 2 2 40 6
report $? "gen_npy writes the inputs"
head -c 300 "$dir/q.npy" >"$dir/qtrunc.npy"
Q="--q $dir/q.npy --k $dir/k.npy --v $dir/v.npy"
Q3="--q $dir/q3.npy --k $dir/k3.npy --v $dir/v3.npy"
O="--out $dir/out.npy"

# ---- results -------------------------------------------------------------------
# SPEC I1: k = C, no cap, eps_den = 0, L >= 1 gives full softmax attention
expect 0 "run --path ref --topk = --chunk" "$STILL" run $Q --chunk 8 --topk 8 --eps-den 0 \
    --gate "$dir/g.npy" --out "$dir/o_all.npy"
expect 0 "teacher --path ref" "$STILL" teacher $Q --out "$dir/o_teacher.npy"
expect 0 "run with topk = chunk matches the teacher (still check)" \
    "$STILL" check "$dir/o_all.npy" "$dir/o_teacher.npy" --rtol 1e-12 --atol 1e-14
expect 0 "run --local 1 --topk = --chunk 5" "$STILL" run $Q --chunk 5 --topk 5 --local 1 \
    --eps-den 0 --out "$dir/o_all5.npy"
expect 0 "... matches the teacher too" \
    "$STILL" check "$dir/o_all5.npy" "$dir/o_teacher.npy" --rtol 1e-12 --atol 1e-14
expect 0 "3-D inputs (v2 and v3 headers, <f2 keys) run" "$STILL" run $Q3 --chunk 8 --topk 8 \
    --eps-den 0 --out "$dir/o3.npy"
expect 0 "3-D teacher" "$STILL" teacher $Q3 --out "$dir/t3.npy"
expect 0 "3-D run with topk = chunk matches the teacher" \
    "$STILL" check "$dir/o3.npy" "$dir/t3.npy" --rtol 1e-12 --atol 1e-14
grep -q "'shape': (4, 40, 6)" "$dir/o3.npy"
report $? "3-D inputs give a 3-D output [Hq,N,dv]"
# the check is not vacuous: the hybrid with k = 2 differs from the teacher
expect 0 "run with --topk 2" "$STILL" run $Q --chunk 8 --topk 2 --out "$dir/o_k2.npy" \
    --scores-out "$dir/s_k2.npy" --select-out "$dir/sel_k2.npy"
expect 1 "still check fails on arrays that differ" \
    "$STILL" check "$dir/o_k2.npy" "$dir/o_teacher.npy" --rtol 1e-6 --atol 1e-9
grep -q '^FAIL' "$dir/stdout"
report $? "still check prints FAIL"
expect 1 "still check fails on different shapes" "$STILL" check "$dir/o_k2.npy" "$dir/s_k2.npy"
[ "$(descr "$dir/o_k2.npy")" = "<f8" ] && [ "$(descr "$dir/s_k2.npy")" = "<f8" ] &&
    [ "$(descr "$dir/sel_k2.npy")" = "|u1" ]
report $? "ref output <f8, scores <f8, selection |u1"
grep -q "'shape': (2, 4, 40)" "$dir/s_k2.npy" && grep -q "'shape': (2, 4, 40)" "$dir/sel_k2.npy"
report $? "scores and selection are [B,Hq,N]"
expect 0 "--dtype f4 on the ref path" "$STILL" run $Q --chunk 8 --topk 2 --dtype f4 \
    --out "$dir/o_k2f4.npy"
[ "$(descr "$dir/o_k2f4.npy")" = "<f4" ]
report $? "--dtype f4 writes <f4"
expect 0 "the f4 output is the f8 one rounded" \
    "$STILL" check "$dir/o_k2f4.npy" "$dir/o_k2.npy" --rtol 1e-7 --atol 0
# SPEC §10: a ref result beyond float32 (gate and v of 1e30: a gated linear
# term of ~1e60) is an error for --dtype f4 (exit 4), never an inf written
"$GEN" "$dir/vbig.npy" f8 3 1e30 2 2 40 6 && "$GEN" "$dir/gbig.npy" f8 4 1e30 2 4 40 6
report $? "gen_npy writes v and gate of 1e30"
QBIG="--q $dir/q.npy --k $dir/k.npy --v $dir/vbig.npy --gate $dir/gbig.npy"
expect 0 "--dtype f8 holds a ref result of ~1e60" "$STILL" run $QBIG --chunk 8 --topk 2 \
    --local 0 --out "$dir/o_big8.npy"
rm -f "$dir/o_big4.npy"
expect 4 "--dtype f4 refuses a ref result beyond float32" "$STILL" run $QBIG --chunk 8 \
    --topk 2 --local 0 --dtype f4 --out "$dir/o_big4.npy"
[ ! -e "$dir/o_big4.npy" ] && grep -q "float32" "$dir/stderr"
report $? "... writes nothing and says why"
# SPEC §10: the ref path accepts a given selection
expect 0 "run with --select-in of its own selection" "$STILL" run $Q --chunk 8 --topk 2 \
    --select-in "$dir/sel_k2.npy" --out "$dir/o_forced.npy"
expect 0 "... gives the same output exactly" \
    "$STILL" check "$dir/o_forced.npy" "$dir/o_k2.npy" --rtol 0 --atol 0
# SPEC I6: streaming decode = prefill
"$STILL" run $Q --chunk 8 --topk 2 --mode decode --out "$dir/o_dec.npy" \
    --scores-out "$dir/s_dec.npy" >/dev/null 2>"$dir/stderr"
if [ $? -eq 4 ]; then
    echo "ok $((n + 1)) - decode equals prefill # SKIP $(cat "$dir/stderr")"
    n=$((n + 1))
else
    expect 0 "decode equals prefill" "$STILL" check "$dir/o_dec.npy" "$dir/o_k2.npy" \
        --rtol 1e-10 --atol 1e-13
    expect 0 "decode scores equal prefill scores" "$STILL" check "$dir/s_dec.npy" \
        "$dir/s_k2.npy" --rtol 1e-10 --atol 1e-13
fi

# float32 inputs with odd sizes (d = dv = 3, one head): the decode buffers
# hold 15 floats before the scores' doubles, which must stay aligned (UBSan
# in the sanitize job); decode = prefill for the scores as for the outputs
"$GEN" "$dir/qo.npy" f4 11 1 1 1 40 3 && "$GEN" "$dir/ko.npy" f4 12 1 1 1 40 3 &&
    "$GEN" "$dir/vo.npy" f4 13 1 1 1 40 3
report $? "gen_npy writes float32 inputs of odd sizes"
QO="--q $dir/qo.npy --k $dir/ko.npy --v $dir/vo.npy"
for p in ref fast; do
    expect 0 "$p prefill of odd-sized float32 inputs with scores" "$STILL" run $QO --path $p \
        --chunk 8 --topk 2 --out "$dir/oo_$p.npy" --scores-out "$dir/so_$p.npy"
    expect 0 "$p decode of the same" "$STILL" run $QO --path $p --chunk 8 --topk 2 \
        --mode decode --out "$dir/ood_$p.npy" --scores-out "$dir/sod_$p.npy"
    expect 0 "$p decode scores equal prefill scores" "$STILL" check "$dir/sod_$p.npy" \
        "$dir/so_$p.npy" --rtol 1e-5 --atol 1e-6
    expect 0 "$p decode outputs equal prefill outputs" "$STILL" check "$dir/ood_$p.npy" \
        "$dir/oo_$p.npy" --rtol 1e-5 --atol 1e-6
done

# SPEC §10: the fast path (float32) within 1e-5 max|v| of the ref path (|v| <= 1)
"$STILL" run $Q --chunk 8 --topk 2 --path fast --out "$dir/o_fast.npy" >/dev/null 2>"$dir/stderr"
if [ $? -eq 4 ]; then
    echo "ok $((n + 1)) - fast path within 1e-5 max|v| of ref # SKIP $(cat "$dir/stderr")"
    n=$((n + 1))
else
    [ "$(descr "$dir/o_fast.npy")" = "<f4" ]
    report $? "the fast path writes <f4 by default"
    expect 0 "fast path within 1e-5 max|v| of ref" "$STILL" check "$dir/o_fast.npy" \
        "$dir/o_k2.npy" --rtol 0 --atol 1e-5
fi

# parameters: window.w [Hq] with routing window (SPEC §6, LoLCATs' factor)
safetensors "$dir/p_ok.safetensors" \
    '{"window.w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}' 16
expect 0 "run with a parameter file" "$STILL" run $Q --routing window --window 4 \
    --params "$dir/p_ok.safetensors" $O

# ---- failures: one line, a documented status, no output ---------------------
refused 3 "a missing input file" "$STILL" run --q "$dir/none.npy" --k "$dir/k.npy" \
    --v "$dir/v.npy" $O
grep -q 'none.npy' "$dir/stderr"
report $? "the error names the missing file"
refused 3 "a truncated input" "$STILL" run --q "$dir/qtrunc.npy" --k "$dir/k.npy" \
    --v "$dir/v.npy" $O
refused 3 "a NaN in v" "$STILL" run --q "$dir/q.npy" --k "$dir/k.npy" --v "$dir/vnan.npy" $O
grep -q 'NaN' "$dir/stderr"
report $? "the error says NaN and where"
refused 3 "k with another d than q" "$STILL" run --q "$dir/q.npy" --k "$dir/kd.npy" \
    --v "$dir/v.npy" $O
refused 3 "kv heads not dividing the query heads" "$STILL" run --q "$dir/q.npy" \
    --k "$dir/kh.npy" --v "$dir/v.npy" $O
refused 3 "v with another N" "$STILL" run --q "$dir/q.npy" --k "$dir/k.npy" \
    --v "$dir/vn.npy" $O
refused 3 "a gate of the wrong shape" "$STILL" run $Q --gate "$dir/gbad.npy" $O
refused 3 "a u1 array as q" "$STILL" run --q "$dir/sel_k2.npy" --k "$dir/k.npy" \
    --v "$dir/v.npy" $O
refused 3 "a forced selection with the wrong count" "$STILL" run $Q --chunk 8 --topk 3 \
    --select-in "$dir/sel_k2.npy" $O
safetensors "$dir/p_unknown.safetensors" \
    '{"fq.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}' 16
refused 3 "a parameter file with an unknown tensor" "$STILL" run $Q \
    --params "$dir/p_unknown.safetensors" $O
grep -q 'fq.weight' "$dir/stderr"
report $? "the error names the unknown tensor"
safetensors "$dir/p_shape.safetensors" \
    '{"window.w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}' 12
refused 3 "a parameter of the wrong shape" "$STILL" run $Q \
    --params "$dir/p_shape.safetensors" $O
safetensors "$dir/p_json.safetensors" \
    '{"window.w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},}' 16
refused 3 "a parameter file with bad JSON" "$STILL" run $Q \
    --params "$dir/p_json.safetensors" $O
safetensors "$dir/p_range.safetensors" \
    '{"window.w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}' 8
refused 3 "parameter offsets past the file" "$STILL" run $Q \
    --params "$dir/p_range.safetensors" $O
refused 2 "--topk above --chunk" "$STILL" run $Q --chunk 8 --topk 9 $O
refused 2 "an unknown --routing" "$STILL" run $Q --routing bogus $O
refused 2 "--chunk 0" "$STILL" run $Q --chunk 0 $O
refused 2 "--chunk not a number" "$STILL" run $Q --chunk 8x $O
refused 2 "--window 1" "$STILL" run $Q --window 1 $O
refused 2 "--eps-den negative" "$STILL" run $Q --eps-den -1 $O
refused 2 "--out without a value" "$STILL" run $Q --out
refused 2 "--out and --scores-out on one file" "$STILL" run $Q $O --scores-out "$dir/out.npy"
refused 2 "--select-in with --mode decode" "$STILL" run $Q $O --mode decode \
    --select-in "$dir/sel_k2.npy"
refused 2 "teacher refuses --scores-out" "$STILL" teacher $Q $O --scores-out "$dir/sig.npy"
refused 5 "an output in a missing directory" "$STILL" run $Q --scores-out "$dir/sig.npy" \
    --out "$dir/nodir/out.npy"
refused 5 "a last output that fails removes the earlier ones" "$STILL" run $Q \
    --out "$dir/out.npy" --scores-out "$dir/sig.npy" --select-out "$dir"
# a library refusal: an ISA this CPU cannot have
case $(uname -m) in
aarch64 | arm64) foreign=avx2 ;;
*) foreign=neon ;;
esac
refused 4 "the fast path with a foreign ISA (library error)" "$STILL" run $Q --path fast \
    --isa $foreign $O
refused 4 "the fast teacher with a foreign ISA" "$STILL" teacher $Q --path fast --isa $foreign $O
refused 3 "still check on a missing file" "$STILL" check "$dir/none.npy" "$dir/o_k2.npy"
refused 2 "still check with a bad --rtol" "$STILL" check "$dir/o_k2.npy" "$dir/o_k2.npy" \
    --rtol x
refused 2 "still check with one file" "$STILL" check "$dir/o_k2.npy"

# SPEC App. A.3: --compat authors-decode (the options after it make l = 8)
AD="--compat authors-decode --chunk 8 --window 8 --topk 2"
AP="--compat authors --chunk 8 --window 8 --topk 2"
expect 0 "run --compat authors-decode (prefill)" "$STILL" run $Q $AD --out "$dir/o_adp.npy"
expect 0 "run --compat authors (prefill)" "$STILL" run $Q $AP --out "$dir/o_ap.npy"
expect 0 "... a prefill with authors-decode is the authors' prefill" \
    "$STILL" check "$dir/o_adp.npy" "$dir/o_ap.npy" --rtol 0 --atol 0
expect 0 "run --mode decode --compat authors-decode" "$STILL" run $Q $AD --mode decode \
    --out "$dir/o_add.npy"
expect 1 "... differs from the authors' prefill (App. A.3)" \
    "$STILL" check "$dir/o_add.npy" "$dir/o_ap.npy" --rtol 1e-6 --atol 1e-6
expect 0 "decode --compat authors-decode --prefill 40 (one block)" "$STILL" decode $Q $AD \
    --prefill 40 --out "$dir/o_adb.npy"
expect 0 "... one block is the authors' prefill" \
    "$STILL" check "$dir/o_adb.npy" "$dir/o_ap.npy" --rtol 1e-12 --atol 1e-14
refused 4 "run --mode decode --compat authors-decode --path fast" "$STILL" run $Q $AD \
    --mode decode --path fast --out "$dir/out.npy"
refused 2 "--compat with an unknown name" "$STILL" run $Q --compat authors-prefill \
    --out "$dir/out.npy"

tap_end
