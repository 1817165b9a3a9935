#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_lm_tool.sh -- `still lm` end to end on the random model of test_lm
# (test_lm --write-model), printing TAP: eval prints one row per --attn
# with the teacher's KL 0; generate writes the bytes asked and a state line
# per report, the teacher's state growing and capped STILL's flat; transfer
# lowers every layer's transfer loss and writes parameter files that
# eval --params-dir reads; the hybrid family (sinks, terraced, --rest) and
# token ids from .npy (--ids); bad options are refused with one line.

. "$(dirname "$0")/tap.sh"
tap_start test_lm_tool
tap_require tool
TEST_LM=${STILL_TEST_LM:-$(dirname "$STILL")/../tests/test_lm}
[ -x "$TEST_LM" ] || { echo "1..0 # SKIP test_lm not built"; exit 0; }
"$TEST_LM" --write-model "$dir" >/dev/null 2>&1
report $? "test_lm --write-model writes a model"
# a text of bytes below the vocabulary (64): digits and letters of 0..63
awk 'BEGIN { for (i = 0; i < 100; i++) printf "%c", 48 + (i * 7) % 15 }' >"$dir/text.txt"
cp "$dir/text.txt" "$dir/dump_text.txt"

"$STILL" lm eval --model "$dir" --chunk 8 --topk 2 --window 8 >"$dir/eval" 2>"$dir/stderr"
report $? "lm eval runs"
[ "$(grep -c '^\(teacher\|still\|window\|linear\) ' "$dir/eval")" -eq 4 ]
report $? "lm eval: one row per default configuration"
awk '$1 == "teacher" && $3 == "0.0000" && $2 > 0 { ok = 1 } END { exit !ok }' "$dir/eval"
report $? "lm eval: the teacher has bits/byte > 0 and KL 0"
awk '$1 == "linear" && $3 > 0 { ok = 1 } END { exit !ok }' "$dir/eval"
report $? "lm eval: linear attention has KL > 0"

"$STILL" lm generate --model "$dir" --attn teacher --prompt 0123 --tokens 40 \
    --report-every 10 >"$dir/gen" 2>"$dir/gen.err"
report $? "lm generate runs"
[ "$(head -c 40 "$dir/gen" | wc -c)" -eq 40 ] && [ "$(grep -c '^position' "$dir/gen.err")" -eq 5 ]
report $? "lm generate: 40 bytes and a state line at 0, 10, 20, 30, 40"
first=$(sed -n 2p "$dir/gen.err" | awk '{ print $NF }')
last=$(tail -n 1 "$dir/gen.err" | awk '{ print $NF }')
[ "$last" -gt "$first" ]
report $? "lm generate: the teacher's state grows ($first -> $last bytes)"
"$STILL" lm generate --model "$dir" --attn still --chunk 8 --topk 2 --cap 4 --prompt 0123 \
    --tokens 60 --report-every 20 >/dev/null 2>"$dir/gen.err"
a=$(sed -n 3p "$dir/gen.err" | awk '{ print $NF }')
b=$(tail -n 1 "$dir/gen.err" | awk '{ print $NF }')
[ -n "$a" ] && [ "$a" -eq "$b" ]
report $? "lm generate: capped STILL's state stays flat ($a, $b bytes)"

"$STILL" lm transfer --model "$dir" --attn 1=still --chunk 8 --topk 2 --text "$dir/text.txt" \
    --out-dir "$dir/p" --steps 40 --lr 0.02 >"$dir/tr" 2>"$dir/stderr"
report $? "lm transfer runs"
awk '/transfer loss/ { n++; if (!($NF < $(NF-2))) bad = 1 } END { exit !(n == 1 && !bad) }' "$dir/tr"
report $? "lm transfer: the layer's loss falls"
[ -f "$dir/p/layer1.safetensors" ] && [ ! -e "$dir/p/layer0.safetensors" ]
report $? "lm transfer: a parameter file for the transferred layer only"
"$STILL" lm eval --model "$dir" --attn 1=still --chunk 8 --topk 2 >"$dir/e1" 2>/dev/null &&
    "$STILL" lm eval --model "$dir" --attn 1=still --chunk 8 --topk 2 --params-dir "$dir/p" \
        >"$dir/e2" 2>/dev/null
report $? "lm eval --params-dir reads the files"
kl1=$(awk '$1 == "0=teacher,1=still" { print $3 }' "$dir/e1")
kl2=$(awk '$1 == "0=teacher,1=still" { print $3 }' "$dir/e2")
[ -n "$kl1" ] && [ "$kl1" != "$kl2" ]
report $? "lm eval: the transferred maps change the result (KL $kl1 -> $kl2)"

"$STILL" lm rank --model "$dir" --chunk 8 --topk 2 --budget 1 >"$dir/r1" 2>/dev/null &&
    "$STILL" lm rank --model "$dir" --chunk 8 --topk 2 --budget 1 >"$dir/r2" 2>/dev/null
report $? "lm rank runs"
cmp -s "$dir/r1" "$dir/r2"
report $? "lm rank: the same table every run"
awk '$1 == "2" && $2 == "0,1" && $4 == "0.0000" { ok = 1 } $1 == "2" && $2 == "1,0" && $4 == "0.0000" { ok = 1 } END { exit !ok }' "$dir/r1"
report $? "lm rank: every layer kept softmax is the teacher (KL 0)"
# keeping the first-ranked layer leaves only the other linearized: its KL
# is that layer's "only it linearized" column
first=$(awk '$NF == "1" && $1 ~ /^[01]$/ { print $1 }' "$dir/r1")
other=$((1 - first))
want=$(awk -v l="$other" '$1 == l && NF == 5 { print $3 }' "$dir/r1")
got=$(awk '$1 == "1" && NF == 4 { print $4 }' "$dir/r1")
[ -n "$want" ] && [ "$want" = "$got" ]
report $? "lm rank: one softmax layer kept = the other alone linearized (KL $got, $want)"

# SPEC §13: sinks with s + w >= N (100 bytes) keeps every key exact, so its
# row is the teacher's, with either rest; a short window is not
"$STILL" lm eval --model "$dir" --attn teacher --attn sinks --sinks 4 --window 96 \
    >"$dir/es" 2>/dev/null &&
    "$STILL" lm eval --model "$dir" --attn sinks --attn 0=sinks,1=terraced --sinks 4 \
        --window 96 --rest drop >"$dir/esd" 2>/dev/null &&
    "$STILL" lm eval --model "$dir" --attn sinks --sinks 4 --window 8 --rest drop \
        >"$dir/es3" 2>/dev/null
report $? "lm eval --attn sinks, terraced with --sinks and --rest runs"
t=$(awk '$1 == "teacher" { print $2, $3 }' "$dir/es")
s1=$(awk '$1 == "sinks" { print $2, $3 }' "$dir/es")
s2=$(awk '$1 == "sinks" { print $2, $3 }' "$dir/esd")
s3=$(awk '$1 == "sinks" { print $2, $3 }' "$dir/es3")
[ -n "$t" ] && [ "$s1" = "$t" ] && [ "$s2" = "$t" ] && [ "$s3" != "$t" ]
report $? "lm eval: sinks covering every key is the teacher's row ($t; $s1; $s2; w 8: $s3)"
"$STILL" lm generate --model "$dir" --attn 0=sinks,1=terraced --chunk 8 --window 8 --sinks 2 \
    --rest drop --prompt 0123 --tokens 20 --report-every 10 >"$dir/gen" 2>"$dir/gen.err"
[ $? -eq 0 ] && [ "$(head -c 20 "$dir/gen" | wc -c)" -eq 20 ]
report $? "lm generate with sinks and terraced layers"
"$STILL" lm rank --model "$dir" --attn sinks --chunk 8 --window 8 --budget 1 >/dev/null 2>&1
report $? "lm rank --attn sinks runs"
expect 2 "lm eval --sinks -1 is refused" "$STILL" lm eval --model "$dir" --attn sinks --sinks -1
expect 2 "lm eval --sinks x is refused" "$STILL" lm eval --model "$dir" --attn sinks --sinks x
expect 2 "lm eval --rest keep is refused" "$STILL" lm eval --model "$dir" --attn sinks --rest keep
expect 2 "lm eval --attn sink is refused" "$STILL" lm eval --model "$dir" --attn 0=sink
expect 2 "lm transfer with --rest drop (nothing to train) is refused" \
    "$STILL" lm transfer --model "$dir" --attn 1=sinks --rest drop --text "$dir/text.txt" \
    --out-dir "$dir/pd"
[ ! -e "$dir/pd" ]
report $? "lm transfer --rest drop writes no directory"
"$STILL" lm transfer --model "$dir" --attn 1=terraced --window 8 --text "$dir/text.txt" \
    --out-dir "$dir/pt" --steps 5 >/dev/null 2>&1 && [ -f "$dir/pt/layer1.safetensors" ]
report $? "lm transfer of a terraced layer writes its feature maps"

# --ids: the text's bytes as token ids (.npy written by test_lm's own
# header code) give the text's table, in every dtype
"$STILL" lm eval --model "$dir" --attn teacher --attn sinks --chunk 8 --window 8 --sinks 2 \
    | tail -n +2 >"$dir/et"
for t in i4 i8 f8; do
    "$TEST_LM" --write-ids "$dir/ids_$t.npy" $t "$dir/text.txt" &&
        "$STILL" lm eval --model "$dir" --ids "$dir/ids_$t.npy" --attn teacher --attn sinks \
            --chunk 8 --window 8 --sinks 2 | tail -n +2 | cmp -s - "$dir/et" &&
        [ "$(wc -l <"$dir/et")" -eq 3 ]
    report $? "lm eval --ids ($t) gives the text's table"
done
"$STILL" lm generate --model "$dir" --attn still --chunk 8 --topk 2 --prompt-file "$dir/text.txt" \
    --tokens 12 >"$dir/g1" 2>/dev/null &&
    "$STILL" lm generate --model "$dir" --attn still --chunk 8 --topk 2 --ids "$dir/ids_i8.npy" \
        --tokens 12 >"$dir/g2" 2>/dev/null && cmp -s "$dir/g1" "$dir/g2"
report $? "lm generate --ids: the prompt file's continuation"
# rank and transfer read ids as eval does: the same tables and files as the text
"$STILL" lm rank --model "$dir" --chunk 8 --topk 2 --budget 1 --text "$dir/text.txt" \
    2>/dev/null | grep -v '^model\|^softmax layers kept' >"$dir/rt" &&
    "$STILL" lm rank --model "$dir" --chunk 8 --topk 2 --budget 1 --ids "$dir/ids_i4.npy" \
        2>/dev/null | grep -v '^model\|^softmax layers kept' | cmp -s - "$dir/rt" &&
    [ "$(wc -l <"$dir/rt")" -gt 6 ]
report $? "lm rank --ids gives the text's ranking"
"$STILL" lm transfer --model "$dir" --attn 1=still --chunk 8 --topk 2 --text "$dir/text.txt" \
    --out-dir "$dir/xt" --steps 4 2>/dev/null | grep '^layer\|^held-out' | sed 's/(.*)//' \
    >"$dir/xt.out" &&
    "$STILL" lm transfer --model "$dir" --attn 1=still --chunk 8 --topk 2 \
        --ids "$dir/ids_i8.npy" --heldout-ids "$dir/ids_f8.npy" --out-dir "$dir/xi" --steps 4 \
        2>/dev/null | grep '^layer\|^held-out' | sed 's/(.*)//; s/bits\/token/bits\/byte/' |
    cmp -s - "$dir/xt.out" && cmp -s "$dir/xt/layer1.safetensors" "$dir/xi/layer1.safetensors" &&
    [ "$(wc -l <"$dir/xt.out")" -eq 2 ]
report $? "lm transfer --ids --heldout-ids: the text's losses, bits and parameter file"
expect 2 "lm transfer with --text and --ids is refused" \
    "$STILL" lm transfer --model "$dir" --text "$dir/text.txt" --ids "$dir/ids_i4.npy" \
    --out-dir "$dir/xx"
expect 2 "lm eval --heldout-ids is refused (transfer only)" \
    "$STILL" lm eval --model "$dir" --heldout-ids "$dir/ids_i4.npy"
"$TEST_LM" --write-ids "$dir/ids_oov.npy" i8 "$dir/text.txt" 1 100
expect 3 "lm eval --ids: an id beyond the vocabulary is refused" \
    "$STILL" lm eval --model "$dir" --ids "$dir/ids_oov.npy"
"$TEST_LM" --write-ids "$dir/ids_neg.npy" i4 "$dir/text.txt" 1 -200
expect 3 "lm eval --ids: a negative id is refused" \
    "$STILL" lm eval --model "$dir" --ids "$dir/ids_neg.npy"
"$TEST_LM" --write-ids "$dir/ids_2d.npy" i4 "$dir/text.txt" 2
expect 3 "lm eval --ids: a 2-D array is refused" \
    "$STILL" lm eval --model "$dir" --ids "$dir/ids_2d.npy"
expect 3 "lm eval --ids: a text file is refused" "$STILL" lm eval --model "$dir" --ids "$dir/text.txt"
expect 2 "lm eval --ids with --text is refused" \
    "$STILL" lm eval --model "$dir" --ids "$dir/ids_i4.npy" --text "$dir/text.txt"

# still demo's part 3: the model's rows are still lm eval's (defaults, the
# first 512 bytes); without a model one line says how to fetch it
"$STILL" demo --no-needle --no-progress --model "$dir" >"$dir/demo" 2>"$dir/demo.err"
report $? "demo --model runs"
"$STILL" lm eval --model "$dir" --max-bytes 512 --attn teacher --attn still --attn window \
    --attn sinks --attn terraced >"$dir/demo.eval" 2>/dev/null
ok=0
for k in teacher still window sinks terraced; do
    a=$(awk -v k=$k '$1 == k && NF == 2 { print $2 }' "$dir/demo")
    b=$(awk -v k=$k '$1 == k && NF == 3 { print $2 }' "$dir/demo.eval")
    [ -n "$a" ] && [ "$a" = "$b" ] || { echo "# $k: demo '$a', lm eval '$b'"; ok=1; }
done
report $ok "demo part 3: bits/byte of the five kinds are lm eval's"
mkdir -p "$dir/elsewhere"
(cd "$dir/elsewhere" && "$STILL" demo --no-needle --no-progress >out 2>err) &&
    [ "$(grep -c 'no models/tiny-lm here.*fetch-lm-models.sh' "$dir/elsewhere/out")" -eq 1 ] &&
    ! grep -q '^sinks' "$dir/elsewhere/out" && [ ! -s "$dir/elsewhere/err" ]
report $? "demo without a model: one line on how to fetch it, exit 0"
(cd "$dir/elsewhere" && "$STILL" demo --no-needle --no-model >out2 2>&1) &&
    ! grep -q 'tiny-lm here' "$dir/elsewhere/out2"
report $? "demo --no-model: no part 3"
expect 3 "demo --model of a missing directory is refused" \
    "$STILL" demo --no-needle --model "$dir/nothing"

expect 2 "lm without a subcommand is refused" "$STILL" lm --model "$dir"
expect 2 "lm eval with a bad --attn is refused" "$STILL" lm eval --model "$dir" --attn 9=still
expect 3 "lm eval of a directory without a model is refused" "$STILL" lm eval --model "$dir/p"
expect 5 "lm transfer into a non-empty directory is refused" \
    "$STILL" lm transfer --model "$dir" --text "$dir/text.txt" --out-dir "$dir/p"
expect 3 "lm generate: a prompt byte beyond the vocabulary is refused" \
    "$STILL" lm generate --model "$dir" --prompt zz
expect 3 "lm eval --recall on a model without a byte vocabulary is refused" \
    "$STILL" lm eval --model "$dir" --recall
tap_end
