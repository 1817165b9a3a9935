#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_grad_transfer.sh -- `still transfer` and `still grad` end to end
# (SPEC §8, §11), printing TAP.
#
# On the built-in synthetic case (two kinds of tokens, each query head
# attending to one kind) attention transfer from the identity map must
# lower the training loss at least 10x and the error against the teacher
# on held-out tokens; the fitted parameters must be read by `still run`
# and `still grad`, and `still grad` must measure the same improvement on
# the whole sequence with its own forward.

. "$(dirname "$0")/tap.sh"
tap_start test_grad_transfer

# the loss curve: 150 Adam steps, the last quarter of the tokens held out
"$STILL" transfer --synthetic --steps 150 --lr 0.03 --holdout 0.25 \
    --csv "$dir/loss.csv" --plot "$dir/loss.png" --out "$dir/p.safetensors" \
    --synthetic-out "$dir/syn" >"$dir/summary.txt" 2>"$dir/err.txt"
report $? "still transfer --synthetic runs and writes its outputs"
sed 's/^/# /' "$dir/summary.txt"

# CSV: step,loss,holdout_mse; first and last rows
first=$(sed -n 2p "$dir/loss.csv")
last=$(tail -n 1 "$dir/loss.csv")
echo "# first: $first"
echo "# last:  $last"
awk -F, -v a="$first" -v b="$last" 'BEGIN {
    split(a, x, ","); split(b, y, ",");
    exit !(x[1] == 0 && y[1] == 150 && y[2] > 0 && x[2] / y[2] >= 10) }'
report $? "training loss falls at least 10x from the identity initialization"
awk -F, -v a="$first" -v b="$last" 'BEGIN {
    split(a, x, ","); split(b, y, ",");
    exit !(x[3] > 0 && y[3] > 0 && y[3] < x[3] / 2) }'
report $? "held-out error against the teacher drops (at least 2x)"
lines=$(wc -l <"$dir/loss.csv")
[ "$lines" -eq 152 ]
report $? "the CSV has a header and one line per step 0..150 ($lines lines)"
[ "$(head -c 8 "$dir/loss.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]
report $? "the plot is a PNG"
# decoded independently (Python's zlib): chunk CRCs, 8-bit RGB, the raster
# un-filtered; white background, the blue training curve, the red held-out one
if command -v python3 >/dev/null 2>&1; then
    python3 - "$dir/loss.png" >"$dir/png.txt" 2>&1 <<'EOF'
import struct, sys, zlib
b = open(sys.argv[1], 'rb').read()
i, chunks = 8, []
while i < len(b):
    n, = struct.unpack('>I', b[i:i + 4])
    t, d = b[i + 4:i + 8], b[i + 8:i + 8 + n]
    assert zlib.crc32(t + d) == struct.unpack('>I', b[i + 8 + n:i + 12 + n])[0], t
    chunks.append((t, d))
    i += 12 + n
assert chunks[0][0] == b'IHDR' and chunks[-1][0] == b'IEND'
w, h, depth, ctype, _, _, interlace = struct.unpack('>IIBBBBB', chunks[0][1])
assert (depth, ctype, interlace) == (8, 2, 0), 'not 8-bit RGB'
raw = zlib.decompress(b''.join(d for t, d in chunks if t == b'IDAT'))
s = 3 * w
assert len(raw) == h * (1 + s)
prev, colours = bytearray(s), {}
for y in range(h):
    f, row = raw[y * (1 + s)], bytearray(raw[y * (1 + s) + 1:(y + 1) * (1 + s)])
    for x in range(s):
        a, up, c = row[x - 3] if x >= 3 else 0, prev[x], prev[x - 3] if x >= 3 else 0
        p = a + up - c
        pred = [0, a, up, (a + up) // 2,
                a if abs(p - a) <= abs(p - up) and abs(p - a) <= abs(p - c)
                else up if abs(p - up) <= abs(p - c) else c][f]
        row[x] = (row[x] + pred) & 255
    for x in range(0, s, 3):
        colours[bytes(row[x:x + 3])] = colours.get(bytes(row[x:x + 3]), 0) + 1
    prev = row
print(w, h, colours.get(bytes([255, 255, 255]), 0), colours.get(bytes([30, 90, 200]), 0),
      colours.get(bytes([210, 60, 40]), 0))
EOF
    read -r w h white blue red <"$dir/png.txt"
    echo "# png: $(cat "$dir/png.txt")"
    [ "$w" = 640 ] && [ "$h" = 400 ] && [ "$white" -gt 200000 ] && [ "$blue" -gt 500 ] &&
        [ "$red" -gt 500 ]
    report $? "the PNG decodes: 640x400 RGB, white ground, blue and red curves"
else
    skip "the PNG decodes" "python3 not found"
fi

# the fitted parameters in use: still run, and still grad on all N tokens
cfg="--chunk 16 --topk 2 --local 1"
in="--q $dir/syn-q.npy --k $dir/syn-k.npy --v $dir/syn-v.npy"
# shellcheck disable=SC2086
"$STILL" run $in $cfg --params "$dir/p.safetensors" --out "$dir/o.npy" >/dev/null
report $? "still run --params reads the fitted parameters"
# shellcheck disable=SC2086
l0=$("$STILL" grad $in $cfg --grads-out "$dir/g0.safetensors" | sed -n 's/.*; loss \([^;]*\);.*/\1/p')
# shellcheck disable=SC2086
l1=$("$STILL" grad $in $cfg --params "$dir/p.safetensors" --grads-out "$dir/g1.safetensors" |
    sed -n 's/.*; loss \([^;]*\);.*/\1/p')
echo "# still grad on all tokens: identity loss $l0, fitted loss $l1"
awk -v a="$l0" -v b="$l1" 'BEGIN { exit !(a > 0 && b > 0 && a / b >= 10) }'
report $? "still grad: the fitted parameters lower the whole-sequence loss 10x"

# still grad names its tensors as SPEC §11 says
if command -v python3 >/dev/null 2>&1; then
    names=$(python3 - "$dir/g0.safetensors" "$dir/g1.safetensors" <<'EOF'
import json, struct, sys
for path in sys.argv[1:]:
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    print(' '.join('%s%s' % (k, v['shape']) for k, v in h.items() if k != '__metadata__'))
EOF
)
    echo "$names" | sed 's/^/# /'
    [ "$names" = "loss[] fq.W[2, 16, 16] q[1, 2, 192, 16] k[1, 1, 192, 16] v[1, 1, 192, 8]
loss[] fq.W[2, 16, 16] fq.b[2, 16] q[1, 2, 192, 16] k[1, 1, 192, 16] v[1, 1, 192, 8]" ]
    report $? "still grad writes loss and the gradients of the tensors in effect"
else
    echo "ok $((n + 1)) # SKIP python3 not found"
    n=$((n + 1))
fi

# still grad --dout (SPEC §18): the VJP of dO = 2 (o - o_T) / n is the
# transfer gradient, through the tool's files alone: o from still grad,
# o_T from still teacher, dO formed here (python3's struct, no numpy)
if command -v python3 >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    "$STILL" grad $in $cfg --params "$dir/p.safetensors" --out "$dir/go.npy" \
        --grads-out "$dir/gt.safetensors" >/dev/null &&
        "$STILL" teacher $in --out "$dir/gT.npy" >/dev/null &&
        python3 - "$dir/go.npy" "$dir/gT.npy" "$dir/dout.npy" <<'EOF'
import struct, sys
def read(path):
    raw = open(path, 'rb').read()
    assert raw[:6] == b'\x93NUMPY' and raw[6] == 1
    n = struct.unpack('<H', raw[8:10])[0]
    header = raw[10:10 + n].decode()
    assert "'<f8'" in header and "'fortran_order': False" in header
    body = raw[10 + n:]
    return raw[:10 + n], struct.unpack('<%dd' % (len(body) // 8), body)
head, o = read(sys.argv[1])
_, t = read(sys.argv[2])
d = [2.0 * (a - b) / len(o) for a, b in zip(o, t)]
open(sys.argv[3], 'wb').write(head + struct.pack('<%dd' % len(d), *d))
EOF
    st=$?
    # shellcheck disable=SC2086
    [ $st -eq 0 ] && "$STILL" grad $in $cfg --params "$dir/p.safetensors" \
        --dout "$dir/dout.npy" --grads-out "$dir/gv.safetensors" >"$dir/vjp.txt"
    st=$?
    sed 's/^/# /' "$dir/vjp.txt"
    cat >"$dir/cmp.py" <<'EOF'
import json, struct, sys
def read(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == '__metadata__':
            continue
        assert v['dtype'] == 'F64'
        a, b = v['data_offsets']
        out[k] = struct.unpack('<%dd' % ((b - a) // 8), raw[8 + n + a:8 + n + b])
    return out
gt, gv, tol = read(sys.argv[1]), read(sys.argv[2]), float(sys.argv[3])
assert sorted(gv) == sorted(k for k in gt if k != 'loss'), (sorted(gt), sorted(gv))
for k in gv:
    mx = max(abs(x) for x in gt[k])
    diff = max(abs(a - b) for a, b in zip(gt[k], gv[k]))
    print('# %s: max |vjp - transfer| %.1e of max %.2e' % (k, diff, mx))
    assert mx > 0 and diff <= tol * mx, k
EOF
    [ $st -eq 0 ] && python3 "$dir/cmp.py" "$dir/gt.safetensors" "$dir/gv.safetensors" 1e-10
    report $? "still grad --dout 2(o - o_T)/n writes the transfer gradients, without loss"
    # the fast path's VJP of the same dO: within its bound (still_vjp(3))
    # shellcheck disable=SC2086
    "$STILL" grad $in $cfg --params "$dir/p.safetensors" --path fast --dtype f8 \
        --dout "$dir/dout.npy" --grads-out "$dir/gvf.safetensors" >/dev/null &&
        python3 "$dir/cmp.py" "$dir/gt.safetensors" "$dir/gvf.safetensors" 1e-5
    report $? "still grad --path fast --dout is within 1e-5 of the ref's gradients"
else
    echo "ok $((n + 1)) # SKIP python3 not found"
    echo "ok $((n + 2)) # SKIP python3 not found"
    n=$((n + 2))
fi
# shellcheck disable=SC2086
"$STILL" grad $in --dout "$dir/syn-q.npy" --grads-out "$dir/bad.safetensors" \
    >/dev/null 2>"$dir/err3.txt"
st=$?
[ $st -eq 3 ] && [ "$(wc -l <"$dir/err3.txt")" -eq 1 ] && [ ! -e "$dir/bad.safetensors" ]
report $? "a --dout of another shape than o exits 3 with one line on stderr"
sed 's/^/# /' "$dir/err3.txt"
# shellcheck disable=SC2086
"$STILL" grad $in --dout "$dir/syn-v.npy" --teacher "$dir/syn-v.npy" \
    --grads-out "$dir/bad.safetensors" >/dev/null 2>"$dir/err4.txt"
st=$?
[ $st -eq 2 ] && [ "$(wc -l <"$dir/err4.txt")" -eq 1 ] && [ ! -e "$dir/bad.safetensors" ]
report $? "--dout with --teacher exits 2 with one line on stderr"

# failures: one line on stderr, nothing written
"$STILL" transfer --synthetic --steps 5 --holdout 2 --out "$dir/bad.safetensors" \
    >/dev/null 2>"$dir/err1.txt"
st=$?
[ $st -eq 2 ] && [ "$(wc -l <"$dir/err1.txt")" -eq 1 ] && [ ! -e "$dir/bad.safetensors" ]
report $? "a bad --holdout exits 2 with one line on stderr and writes nothing"
"$STILL" grad --q "$dir/none.npy" --k "$dir/syn-k.npy" --v "$dir/syn-v.npy" \
    --grads-out "$dir/bad.safetensors" >/dev/null 2>"$dir/err2.txt"
st=$?
[ $st -eq 3 ] && [ "$(wc -l <"$dir/err2.txt")" -eq 1 ] && [ ! -e "$dir/bad.safetensors" ]
report $? "a missing input exits 3 with one line on stderr and writes nothing"

tap_end
