#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_tool_family.sh -- `still run` with routing lte and mixer
# liger (SPEC §11, §15-16), printing TAP: the identities of §15-16
# through the tool (budget >= N with positive scores is the teacher,
# non-positive scores without sinks are a window of w+1 with rest drop,
# liger with alpha 1 beta 0 is a window with rest drop), the shapes of
# --scores-out/--select-out, and refusals.

. "$(dirname "$0")/tap.sh"
tap_start test_tool_family
tap_require tools

# lte_params FILE BIAS4: a one-layer network for Hk = 1, c0 = d + dv = 7,
# two channels, all weights 0 and lte.proj.b = the 4 bytes BIAS4 (a
# little-endian float32), so that every score is sigmoid(bias) - 1/2.
lte_params() {
    json='{"lte.conv1.W":{"dtype":"F32","shape":[1,2,7,3],"data_offsets":[0,168]},"lte.conv1.b":{"dtype":"F32","shape":[1,2],"data_offsets":[168,176]},"lte.proj.W":{"dtype":"F32","shape":[1,2],"data_offsets":[176,184]},"lte.proj.b":{"dtype":"F32","shape":[1],"data_offsets":[184,188]}}'
    len=$(printf '%s' "$json" | wc -c)
    printf "\\$(printf %03o $((len % 256)))\\$(printf %03o $((len / 256)))\\000\\000\\000\\000\\000\\000" >"$1"
    printf '%s' "$json" >>"$1"
    head -c 184 /dev/zero >>"$1"
    printf "$2" >>"$1"
}

# B = 1, Hq = 2, Hk = 1, N = 12, d = 4, dv = 3
"$GEN" "$dir/q.npy" f8 1 1 1 2 12 4 &&
    "$GEN" "$dir/k.npy" f8 2 1 1 1 12 4 &&
    "$GEN" "$dir/v.npy" f8 3 1 1 1 12 3 &&
    "$GEN" "$dir/ql.npy" f8 4 1 1 2 12 4 &&
    "$GEN" "$dir/kl.npy" f8 5 1 1 1 12 4 &&
    "$GEN" "$dir/kbad.npy" f8 5 1 1 1 12 5
report $? "gen_npy writes the inputs"
lte_params "$dir/pos.safetensors" '\000\000\200\077' # +1.0
lte_params "$dir/neg.safetensors" '\000\000\200\277' # -1.0
Q="--q $dir/q.npy --k $dir/k.npy --v $dir/v.npy"

expect 0 "teacher" "$STILL" teacher $Q --out "$dir/t.npy"
expect 0 "lte with positive scores and budget >= N" "$STILL" run $Q --routing lte --budget 12 \
    --sinks 1 --window 4 --eps-den 0 --params "$dir/pos.safetensors" --out "$dir/o_pos.npy" \
    --scores-out "$dir/r.npy" --select-out "$dir/sel.npy"
expect 0 "... equals the teacher" "$STILL" check "$dir/o_pos.npy" "$dir/t.npy" --rtol 0 \
    --atol 1e-13
head -c 128 "$dir/r.npy" | grep -q "'shape': (1, 1, 12)"
report $? "--scores-out is [B,Hk,N]"
head -c 128 "$dir/sel.npy" | grep -q "'descr': '|u1'.*'shape': (1, 1, 12)"
report $? "--select-out is a |u1 [B,Hk,N]"
# retained after the last query t = 11: positions 1..6 (sink 0, window 7..11)
expect 0 "lte with non-positive scores, no sinks, rest drop" "$STILL" run $Q --routing lte \
    --budget 3 --sinks 0 --window 4 --rest drop --eps-den 0 --params "$dir/neg.safetensors" \
    --out "$dir/o_neg.npy"
expect 0 "routing window of w + 1 with rest drop" "$STILL" run $Q --routing window --window 5 \
    --rest drop --eps-den 0 --out "$dir/o_win5.npy"
expect 0 "... they agree" "$STILL" check "$dir/o_neg.npy" "$dir/o_win5.npy" --rtol 0 --atol 1e-14

expect 0 "liger with alpha 1, beta 0" "$STILL" run $Q --mixer liger --alpha 1 --beta 0 \
    --window 4 --q-lin "$dir/ql.npy" --k-lin "$dir/kl.npy" --out "$dir/o_lig.npy"
expect 0 "routing window with rest drop" "$STILL" run $Q --routing window --window 4 \
    --rest drop --eps-den 0 --out "$dir/o_win4.npy"
expect 0 "... they agree" "$STILL" check "$dir/o_lig.npy" "$dir/o_win4.npy" --rtol 0 --atol 1e-14
expect 0 "liger with its linear inputs" "$STILL" run $Q --mixer liger --lte-dilation 1 \
    --q-lin "$dir/ql.npy" --k-lin "$dir/kl.npy" --out "$dir/o_lig2.npy"
expect 0 "liger with w = 4 and its linear inputs" "$STILL" run $Q --mixer liger --window 4 \
    --q-lin "$dir/ql.npy" --k-lin "$dir/kl.npy" --out "$dir/o_lig3.npy"
expect 1 "... the linear branch changes the output" "$STILL" check "$dir/o_lig2.npy" \
    "$dir/o_lig.npy" --rtol 0 --atol 1e-6
expect 0 "liger decoded token by token on the ref path" "$STILL" run $Q --mixer liger \
    --window 4 --q-lin "$dir/ql.npy" --k-lin "$dir/kl.npy" --mode decode --out "$dir/o_ligd.npy"
expect 0 "... equals its prefill (SPEC §16: decode = prefill)" "$STILL" check \
    "$dir/o_ligd.npy" "$dir/o_lig3.npy" --rtol 0 --atol 1e-12
expect 0 "liger on the fast path" "$STILL" run $Q --mixer liger --window 4 --path fast \
    --q-lin "$dir/ql.npy" --k-lin "$dir/kl.npy" --out "$dir/o_ligf.npy"
expect 0 "... within SPEC §10 of the ref" "$STILL" check "$dir/o_ligf.npy" "$dir/o_lig3.npy" \
    --rtol 0 --atol 1e-5
expect 0 "liger decoded on the fast path" "$STILL" run $Q --mixer liger --window 4 --path fast \
    --q-lin "$dir/ql.npy" --k-lin "$dir/kl.npy" --mode decode --out "$dir/o_ligfd.npy"
expect 0 "... within SPEC §10 of the ref" "$STILL" check "$dir/o_ligfd.npy" "$dir/o_lig3.npy" \
    --rtol 0 --atol 1e-5

expect 2 "routing lte without --budget" "$STILL" run $Q --routing lte \
    --params "$dir/pos.safetensors" --out "$dir/x.npy"
expect 2 "routing lte on the fast path" "$STILL" run $Q --routing lte --budget 2 --path fast \
    --params "$dir/pos.safetensors" --out "$dir/x.npy"
expect 2 "a malformed --lte-dilation" "$STILL" run $Q --routing lte --budget 2 \
    --lte-dilation 2,,1 --params "$dir/pos.safetensors" --out "$dir/x.npy"
expect 4 "a window not above the network's margin (the library refuses it)" "$STILL" run $Q --routing lte --budget 2 \
    --window 2 --lte-dilation 2 --params "$dir/pos.safetensors" --out "$dir/x.npy"
expect 3 "lte weights missing from --params" "$STILL" run $Q --routing lte --budget 2 \
    --params "$dir/empty.safetensors" --out "$dir/x.npy"
expect 3 "--k-lin of another shape than k" "$STILL" run $Q --mixer liger \
    --k-lin "$dir/kbad.npy" --out "$dir/x.npy"
[ ! -e "$dir/x.npy" ]
report $? "nothing written on failure"

tap_end
