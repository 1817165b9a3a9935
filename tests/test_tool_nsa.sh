#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_tool_nsa.sh -- `still run --routing nsa` (SPEC §17), printing
# TAP: the identities of §17 through the tool (gates 0,0,1 are routing
# window with rest drop, gates 0,1,0 with S at least the number of blocks
# are the teacher, the default window 512 covers a short sequence), the
# gates' linearity (ones = the sum of the three one-hot gates), the shape
# and content of --select-out (forced blocks 0, current and previous,
# ascending, -1 padded, shared by a GQA group), and refusals.

. "$(dirname "$0")/tap.sh"
tap_start test_tool_nsa
tap_require tools

# B = 1, Hq = 4, Hk = 2 (GQA), N = 40 (5 blocks of 8), d = 8, dv = 6
"$GEN" "$dir/q.npy" f8 11 1 1 4 40 8 &&
    "$GEN" "$dir/k.npy" f8 12 1 1 2 40 8 &&
    "$GEN" "$dir/v.npy" f8 13 1 1 2 40 6 &&
    "$GEN" "$dir/gbad.npy" f8 14 1 1 4 40 2
report $? "gen_npy writes the inputs"
Q="--q $dir/q.npy --k $dir/k.npy --v $dir/v.npy"
NSA="--routing nsa --nsa-block 8"

# numpy writes the gates and reads the selection: the first python3 that has it
have_numpy=0
for PY in python3 /usr/bin/python3; do
    "$PY" -c 'import numpy' >/dev/null 2>&1 && have_numpy=1 && break
done

# gates G1 G2 G3 FILE: constant gates [1,4,40,3]
gates() {
    "$PY" - "$@" <<'EOF'
import sys
import numpy as np
g = np.empty((1, 4, 40, 3))
g[...] = [float(x) for x in sys.argv[1:4]]
np.save(sys.argv[4], g)
EOF
}

expect 0 "teacher" "$STILL" teacher $Q --out "$dir/t.npy"
expect 0 "nsa with the default gates" "$STILL" run $Q $NSA --nsa-topk 3 --window 7 \
    --out "$dir/o111.npy" --select-out "$dir/sel.npy"
head -c 128 "$dir/sel.npy" | grep -q "'descr': '<i4'.*'shape': (1, 4, 40, 3)"
report $? "--select-out is an <i4 [B,Hq,N,S]"

if [ "$have_numpy" = 1 ]; then
    gates 0 0 1 "$dir/g001.npy" && gates 0 1 0 "$dir/g010.npy" && gates 1 0 0 "$dir/g100.npy"
    report $? "numpy writes the gates"
    expect 0 "nsa with gates 0,0,1" "$STILL" run $Q $NSA --nsa-topk 3 --window 7 \
        --nsa-gates "$dir/g001.npy" --out "$dir/o001.npy"
    expect 0 "routing window with rest drop" "$STILL" run $Q --routing window --window 7 \
        --rest drop --eps-den 0 --out "$dir/w7.npy"
    expect 0 "... they agree (SPEC §17)" "$STILL" check "$dir/o001.npy" "$dir/w7.npy" --rtol 0 \
        --atol 1e-14
    expect 0 "nsa with gates 0,0,1 and the default window 512" "$STILL" run $Q $NSA \
        --nsa-gates "$dir/g001.npy" --out "$dir/o001w.npy"
    expect 0 "... is the teacher (N < 512)" "$STILL" check "$dir/o001w.npy" "$dir/t.npy" \
        --rtol 0 --atol 1e-14
    expect 0 "nsa with gates 0,1,0 and S = the 5 blocks" "$STILL" run $Q $NSA --nsa-topk 5 \
        --window 7 --nsa-gates "$dir/g010.npy" --out "$dir/o010s5.npy"
    expect 0 "... is the teacher (SPEC §17)" "$STILL" check "$dir/o010s5.npy" "$dir/t.npy" \
        --rtol 0 --atol 1e-14
    expect 0 "nsa with gates 0,1,0 and S = 3" "$STILL" run $Q $NSA --nsa-topk 3 --window 7 \
        --nsa-gates "$dir/g010.npy" --out "$dir/o010.npy"
    expect 1 "... is not the teacher (blocks are left out)" "$STILL" check "$dir/o010.npy" \
        "$dir/t.npy" --rtol 0 --atol 1e-6
    expect 0 "nsa with gates 1,0,0" "$STILL" run $Q $NSA --nsa-topk 3 --window 7 \
        --nsa-gates "$dir/g100.npy" --out "$dir/o100.npy"
    "$PY" - "$dir" <<'EOF'
import sys
import numpy as np
d = sys.argv[1]
o = {g: np.load(f"{d}/o{g}.npy") for g in ("111", "100", "010", "001")}
err = np.abs(o["111"] - (o["100"] + o["010"] + o["001"])).max()
print(f"# max |o(1,1,1) - sum of the branches| = {err:.3g}")
sys.exit(0 if err < 1e-13 and np.abs(o["100"]).max() > 0 else 1)
EOF
    report $? "the default gates give the sum of the three branches"
    "$PY" - "$dir/sel.npy" <<'EOF'
import sys
import numpy as np
sel = np.load(sys.argv[1])
BS, S, G = 8, 3, 2
bad = []
if sel.dtype != np.int32 or sel.shape != (1, 4, 40, S):
    bad.append(f"dtype {sel.dtype} shape {sel.shape}")
for h in range(4):
    for t in range(40):
        row = list(sel[0, h, t])
        cur = t // BS
        forced = {0, cur} | ({cur - 1} if cur >= 1 else set())
        chosen = [c for c in row if c >= 0]
        want_n = min(S, cur + 1)
        if row != chosen + [-1] * (S - len(chosen)) or chosen != sorted(set(chosen)) \
                or len(chosen) != want_n or not forced <= set(chosen) \
                or any(c > cur for c in chosen):
            bad.append(f"head {h} query {t}: {row}")
        if h % G and row != list(sel[0, h - h % G, t]):
            bad.append(f"head {h} query {t}: not its group's {row}")
for b in bad[:5]:
    print("#", b)
sys.exit(1 if bad else 0)
EOF
    report $? "--select-out: ascending, -1 padded, forced blocks, one selection per group"
    expect 0 "nsa with S = 4 selects by score beyond the forced blocks" "$STILL" run $Q $NSA \
        --nsa-topk 4 --window 7 --out "$dir/o4.npy" --select-out "$dir/sel4.npy"
    "$PY" - "$dir/sel4.npy" <<'EOF'
import sys
import numpy as np
sel = np.load(sys.argv[1])
# from query 32 on (blocks 0..4), four of the five candidates are chosen
n = (sel[0, :, 32:] >= 0).sum(axis=-1)
sys.exit(0 if sel.shape == (1, 4, 40, 4) and (n == 4).all() else 1)
EOF
    report $? "--nsa-topk 4: four blocks once there are five candidates"
else
    for what in "gates 0,0,1 are routing window" "the default window is 512" \
        "gates 0,1,0 with S = the blocks are the teacher" "the gates are linear" \
        "--select-out's content" "--nsa-topk 4"; do
        skip "$what" "python3 with numpy not found"
    done
fi

expect 2 "routing nsa on the fast path" "$STILL" run $Q $NSA --path fast --out "$dir/x.npy"
grep -q 'path ref' "$dir/stderr"
report $? "... the message names the reference path"
expect 2 "--nsa-topk 2 (below the forced blocks)" "$STILL" run $Q $NSA --nsa-topk 2 \
    --out "$dir/x.npy"
expect 2 "--nsa-block 0" "$STILL" run $Q --routing nsa --nsa-block 0 --out "$dir/x.npy"
expect 2 "--scores-out with routing nsa" "$STILL" run $Q $NSA --out "$dir/x.npy" \
    --scores-out "$dir/s.npy"
expect 2 "--nsa-gates without routing nsa" "$STILL" run $Q --nsa-gates "$dir/gbad.npy" \
    --out "$dir/x.npy"
expect 3 "--nsa-gates of a last dimension other than 3" "$STILL" run $Q $NSA \
    --nsa-gates "$dir/gbad.npy" --out "$dir/x.npy"
[ ! -e "$dir/x.npy" ] && [ ! -e "$dir/s.npy" ]
report $? "nothing written on failure"

tap_end
