#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_check_contract.sh -- still check --contract and --relnorm: the
# tolerances of SPEC §10 (and §18 for gradient files) taken from the inputs,
# not typed by hand.  Expected verdicts come from how the arrays were made
# (gen_npy's values scaled by a known factor, outputs of other settings),
# never from still check's own output.
. "$(dirname "$0")/tap.sh"
tap_start test_check_contract
tap_require tools

# B = u, A = s*u for the same uniform u (gen_npy scales one sequence), and
# v = B: max|A-B| = |s-1| max|u| and max|v| = max|u|, so the output
# contract |A-B| <= 1e-5 max|v| holds exactly when |s-1| <= 1e-5.
"$GEN" "$dir/b.npy" f8 7 1 3 50 4 &&
    "$GEN" "$dir/a_in.npy" f8 7 1.000005 3 50 4 &&
    "$GEN" "$dir/a_out.npy" f8 7 1.00002 3 50 4 || exit 1
expect 0 "contract: A = (1 + 5e-6) B with v = B passes" \
    "$STILL" check "$dir/a_in.npy" "$dir/b.npy" --contract --v "$dir/b.npy"
expect 1 "contract: A = (1 + 2e-5) B with v = B fails" \
    "$STILL" check "$dir/a_out.npy" "$dir/b.npy" --contract --v "$dir/b.npy"
# the same A against a v ten times larger: 2e-5 max|u| <= 1e-5 * 10 max|u|
"$GEN" "$dir/v10.npy" f8 7 10 3 50 4 || exit 1
expect 0 "contract: the tolerance scales with max|v| (v = 10 B)" \
    "$STILL" check "$dir/a_out.npy" "$dir/b.npy" --contract --v "$dir/v10.npy"
# relative norm: ||A-B|| / ||B|| = |s-1| exactly
expect 0 "relnorm: ||A-B||/||B|| = 2e-5 <= 3e-5" \
    "$STILL" check "$dir/a_out.npy" "$dir/b.npy" --relnorm 3e-5
expect 1 "relnorm: ||A-B||/||B|| = 2e-5 > 1e-5" \
    "$STILL" check "$dir/a_out.npy" "$dir/b.npy" --relnorm 1e-5
expect 2 "contract refuses hand-set tolerances" \
    "$STILL" check "$dir/a_in.npy" "$dir/b.npy" --contract --v "$dir/b.npy" --atol 1
expect 2 "contract on outputs needs --v" \
    "$STILL" check "$dir/a_in.npy" "$dir/b.npy" --contract

# The fast path against the oracle on real settings: within the contract;
# a fast output of other settings (eps_den 1e-3) is not.
"$GEN" "$dir/q.npy" f4 1 1 2 4 130 16 &&
    "$GEN" "$dir/k.npy" f4 2 1 2 2 130 16 &&
    "$GEN" "$dir/v.npy" f4 3 1 2 2 130 8 || exit 1
run() { # run NAME PATH [OPTIONS]: o, sigma and selection of still run
    name=$1 path=$2
    shift 2
    "$STILL" run --q "$dir/q.npy" --k "$dir/k.npy" --v "$dir/v.npy" --chunk 16 --topk 2 \
        --path "$path" --out "$dir/o_$name.npy" --scores-out "$dir/s_$name.npy" \
        --select-out "$dir/sel_$name.npy" "$@" >/dev/null 2>&1
}
run ref ref && run fast fast && run bad fast --eps-den 1e-3 || exit 1
expect 0 "contract: the fast path against the oracle" \
    "$STILL" check "$dir/o_fast.npy" "$dir/o_ref.npy" --contract --v "$dir/v.npy"
expect 1 "contract: another eps_den is caught" \
    "$STILL" check "$dir/o_bad.npy" "$dir/o_ref.npy" --contract --v "$dir/v.npy"

# Selections: the fast path's equals the oracle's up to near-ties.
expect 0 "contract: the fast selection against the oracle's, with both scores" \
    "$STILL" check "$dir/sel_fast.npy" "$dir/sel_ref.npy" --contract --chunk 16 \
    --scores-a "$dir/s_fast.npy" --scores-b "$dir/s_ref.npy"
expect 2 "contract on selections needs both sides' scores" \
    "$STILL" check "$dir/sel_fast.npy" "$dir/sel_ref.npy" --contract --scores-a "$dir/s_fast.npy"
# Another top-k is another budget: refused whatever the scores.
run k3 fast --topk 3 || exit 1
expect 1 "contract: a selection of another top-k fails" \
    "$STILL" check "$dir/sel_k3.npy" "$dir/sel_ref.npy" --contract --chunk 16 \
    --scores-a "$dir/s_k3.npy" --scores-b "$dir/s_ref.npy"
# A selection with the same count per chunk but other tokens: with the real
# scores it fails; with scores all equal (zeros: every token ties) it passes.
"$GEN" "$dir/zeros.npy" f8 5 0 2 4 130 || exit 1
# gen_npy's u1 values are random: build a selection of 2 per complete chunk
# that differs from the oracle's by shifting the oracle's by one token.
off=$(($(wc -c <"$dir/sel_ref.npy") - 2 * 4 * 130))
head -c "$off" "$dir/sel_ref.npy" >"$dir/sel_shift.npy"
tail -c $((2 * 4 * 130)) "$dir/sel_ref.npy" | od -An -v -tu1 | tr -s ' ' '\n' | sed '/^$/d' >"$dir/bytes"
# per row of 130: chunk c (16 tokens) rotated by one position inside the chunk
awk '{ v[NR - 1] = $1 } END {
    for (r = 0; r < 8; r++) for (j = 0; j < 130; j++) {
        c0 = int(j / 16) * 16
        if (c0 + 16 <= 130) src = c0 + (j - c0 + 1) % 16; else src = j
        printf "%c", v[r * 130 + src]
    } }' "$dir/bytes" >>"$dir/sel_shift.npy"
cmp -s "$dir/sel_shift.npy" "$dir/sel_ref.npy"
report $([ $? -ne 0 ] && echo 0 || echo 1) "the shifted selection differs from the oracle's"
expect 1 "contract: other tokens with the same count fail on the real scores" \
    "$STILL" check "$dir/sel_shift.npy" "$dir/sel_ref.npy" --contract --chunk 16 \
    --scores-a "$dir/s_ref.npy" --scores-b "$dir/s_ref.npy"
expect 0 "contract: other tokens with the same count pass where every score ties" \
    "$STILL" check "$dir/sel_shift.npy" "$dir/sel_ref.npy" --contract --chunk 16 \
    --scores-a "$dir/zeros.npy" --scores-b "$dir/zeros.npy"

# Gradient files, tensor by tensor (SPEC §10's bound for §18): the fast gradients
# against the oracle's pass, those of another top-k do not.
grad() { # grad NAME PATH [OPTIONS]
    name=$1 path=$2
    shift 2
    "$STILL" grad --q "$dir/q.npy" --k "$dir/k.npy" --v "$dir/v.npy" --chunk 16 --topk 2 \
        --path "$path" --grads-out "$dir/g_$name.safetensors" "$@" >/dev/null 2>&1
}
grad ref ref && grad fast fast && grad bad fast --topk 3 || exit 1
expect 0 "contract: fast gradients against the oracle's, every tensor" \
    "$STILL" check "$dir/g_fast.safetensors" "$dir/g_ref.safetensors" --contract
expect 1 "contract: the gradients of another top-k fail" \
    "$STILL" check "$dir/g_bad.safetensors" "$dir/g_ref.safetensors" --contract
n_tensors=$(grep -c '^== tensor' "$dir/stdout")
report $([ "$n_tensors" -ge 4 ] && echo 0 || echo 1) "every tensor is compared ($n_tensors)"
tap_end
