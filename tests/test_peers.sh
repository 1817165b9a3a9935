#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_peers.sh -- bench/peers.sh, printing TAP: its table has a row per
# (N, threads) with the teacher and STILL of `still bench`, PyTorch's
# attention when a python3 with torch is there, and ggml's when a
# ggml_attn program is given.  ggml is not a Debian package, so a stand-in
# program (GGML_ATTN) prints ggml_attn's line format with a known time; the
# table's ratio must be that time over the teacher's time of the same row.
. "$(dirname "$0")/tap.sh"
tap_start test_peers
srcdir=${srcdir:-$(dirname "$0")}
tap_require tool awk
case $STILL in
/*) ;;
*) STILL=$(pwd)/$STILL ;;
esac

cat >"$dir/ggml_attn" <<'SH'
#!/bin/sh
# [--decode] N HEADS D THREADS REPS -> "ggml[-decode] N threads median min max_err"
if [ "$1" = --decode ]; then
    echo "ggml-decode $2 $5 0.000001 0.000001 2e-08"
else
    echo "ggml $1 $4 0.250000 0.200000 3e-07"
fi
SH
chmod +x "$dir/ggml_attn"
STILL_TOOL=$STILL GGML_ATTN=$dir/ggml_attn sh "$srcdir/../bench/peers.sh" --n 256 --threads 1 \
    --reps 1 >"$dir/out" 2>"$dir/err"
report $? "peers.sh runs at N = 256, 1 thread"
# the row without the (%peak) groups: N T peak teacher STILL [peer r r | - - -] ggml ratio
row=$(sed -n 's/([^)]*)//g; /^ *256 *1 /p' "$dir/out")
set -- $row
[ $# -eq 10 ]
report $? "one row for N = 256, T = 1 with every column ($# fields: $row)"
teacher=${4:-0}
awk -v t="$teacher" 'BEGIN { exit !(t > 0) }'
report $? "the teacher's time is positive ($teacher s)"
[ "${9:-}" = "0.2500" ]
report $? "the ggml column is the program's median (${9:-none})"
# within the rounding of the printed times (4 decimals) and ratio (3)
awk -v t="$teacher" -v r="${10:-0}" \
    'BEGIN { exit !(r >= 0.25 / (t + 5e-5) - 5e-4 && r <= 0.25 / (t - 5e-5) + 5e-4) }'
report $? "ggml/teacher = 0.25 / teacher (${10:-none})"
grep -q 'largest |o - o_double| .*3e-07' "$dir/out"
report $? "the ggml error line reports the program's error"
py=
for cand in "${PYTHON3:-}" python3 /usr/bin/python3; do
    [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import torch' 2>/dev/null &&
        { py=$cand; break; }
done
if [ -n "$py" ]; then
    awk -v p="${6:-0}" -v t="$teacher" -v r="${7:-0}" \
        'BEGIN { exit !(p > 0 && r >= (p - 5e-5) / (t + 5e-5) - 5e-4 &&
                        r <= (p + 5e-5) / (t - 5e-5) + 5e-4) }'
    report $? "the torch column is timed and its ratio to the teacher is consistent (${6:-} ${7:-})"
else
    skip "the torch column" "no python3 with torch"
fi
# --decode: the baseline is the fastest full-softmax step of the run; the
# stand-in ggml takes 1 us, so it is the best, and cap/best = STILL capped's
# step in us over 1
STILL_TOOL=$STILL GGML_ATTN=$dir/ggml_attn sh "$srcdir/../bench/peers.sh" --decode --n 256 \
    --threads 1 --steps 4 >"$dir/dout" 2>"$dir/derr"
report $? "peers.sh --decode runs at N = 256, 1 thread"
# N T cap unc libstill torch ggml best cap/best unc/best
set -- $(sed -n '/^ *256 *1 /p' "$dir/dout")
[ $# -eq 10 ] && [ "$7" = 1.0 ] && [ "$8" = ggml ]
report $? "one decode row, ggml's 1 us step the best full softmax ($*)"
awk -v c="${3:-0}" -v u="${4:-0}" -v rc="${9:-0}" -v ru="${10:-0}" -v own="${5:-0}" \
    'BEGIN { exit !(c > 0 && own > 0 && rc >= c - 0.05 - 5e-5 && rc <= c + 0.05 + 5e-5 &&
                    ru >= u - 0.05 - 5e-5 && ru <= u + 0.05 + 5e-5) }'
report $? "cap/best and unc/best are STILL's steps over the best (${3:-} ${9:-}, ${4:-} ${10:-})"
grep -q 'largest |o - o_double| of the decode rows .*2e-08' "$dir/dout"
report $? "the ggml decode error line reports the program's error"
tap_end
