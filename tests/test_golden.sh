#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_golden.sh -- `still golden` end to end, printing TAP.
#
# Its SHA-256 is checked against the FIPS 180-2 test vectors and against
# sha256sum; a generated set is checked for: every file's digest in the
# manifest equals sha256sum's, --verify passes on the ref and fast paths
# and fails (exit 1) when one byte of a file or one flag of a command line
# changes, generating twice gives the same bytes, and each case's
# "command" and "teacher_command", run with `still run` / `still teacher`,
# reproduce its outputs exactly (the manifest tells the truth).  SPEC I1
# gives an independent check of one stored output: routing all with
# eps_den 0 equals the teacher.

. "$(dirname "$0")/tap.sh"
tap_start test_golden

# flip FILE: changes the last byte of FILE (xor 1)
flip() {
    size=$(wc -c <"$1")
    b=$(tail -c 1 "$1" | od -An -tu1 | tr -d ' ')
    printf "\\$(printf '%03o' $((b ^ 1)))" |
        dd of="$1" bs=1 seek=$((size - 1)) conv=notrunc 2>/dev/null
}

# digests MANIFEST: "sha256  case/file" for every file of every case (the
# manifest has one key per line: a case's keys at 6 spaces, its files' at 8)
digests() {
    awk -F'"' '/^      "name": /{c = $4} /^        "[^"]*": \{$/{f = $2}
               /^          "sha256": /{print $4 "  " c "/" f}' "$1"
}

# ---- SHA-256 --------------------------------------------------------------------
# FIPS 180-2, appendix B.1 and B.2
printf 'abc' >"$dir/abc"
printf 'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq' >"$dir/m448"
"$STILL" golden --sha256 "$dir/abc" "$dir/m448" >"$dir/sums" 2>&1
got=$(cut -c1-64 "$dir/sums" | tr '\n' ' ')
want="ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad \
248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1 "
[ "$got" = "$want" ] || echo "# got $got"
report $([ "$got" = "$want" ]; echo $?) "sha256 of the FIPS 180-2 vectors 'abc' and the 448-bit message"

if command -v sha256sum >/dev/null 2>&1; then
    # padding boundaries: one block, the length spilling into a second, exact blocks
    files=""
    for len in 0 1 55 56 63 64 65 119 120 128 1000 70000; do
        head -c "$len" /dev/zero | tr '\000' 'x' >"$dir/len$len"
        files="$files $dir/len$len"
    done
    "$STILL" golden --sha256 $files >"$dir/ours"
    sha256sum $files >"$dir/theirs"
    cmp -s "$dir/ours" "$dir/theirs"
    st=$?
    [ $st -eq 0 ] || diff "$dir/ours" "$dir/theirs" | sed 's/^/#   /'
    report $st "sha256 equals sha256sum at every padding boundary (0..70000 bytes)"
else
    skip "sha256 equals sha256sum at every padding boundary" "no sha256sum"
fi

# ---- generating ------------------------------------------------------------------
set1="$dir/set1"
t0=$(date +%s)
expect 0 "still golden --out writes a set" "$STILL" golden --out "$set1"
t1=$(date +%s)
sed 's/^/# /' "$dir/stdout" | tail -2
ncases=$(grep -c '^      "name": ' "$set1/manifest.json")
[ "$ncases" -ge 12 ]
report $? "the manifest lists $ncases cases (at least 12), in $((t1 - t0)) s"
size=$(du -sk "$set1" | cut -f1)
[ "$size" -lt 10240 ]
report $? "the set is small: ${size} KiB"

# every file of every case directory is in the manifest, and no other file
digests "$set1/manifest.json" | sed 's/^[0-9a-f]*  //' | sort >"$dir/listed"
(cd "$set1" && find . -type f ! -name manifest.json | sed 's|^\./||' | sort) >"$dir/present"
cmp -s "$dir/listed" "$dir/present"
report $? "the manifest lists exactly the files of the set ($(wc -l <"$dir/present") files)"

for f in q.npy k.npy v.npy gate.npy o.npy sigma.npy sel.npy o_teacher.npy; do
    missing=$(for c in $(grep '^      "name": ' "$set1/manifest.json" | cut -d'"' -f4); do
        [ -f "$set1/$c/$f" ] || echo "$c"; done)
    [ -z "$missing" ] || echo "# $f missing in: $missing"
    report $([ -z "$missing" ]; echo $?) "every case has $f"
done

if command -v sha256sum >/dev/null 2>&1; then
    digests "$set1/manifest.json" >"$dir/sha.txt"
    (cd "$set1" && sha256sum -c --quiet "$dir/sha.txt") >"$dir/shacheck" 2>&1
    st=$?
    sed 's/^/#   /' "$dir/shacheck" | head
    report $st "sha256sum agrees with the manifest for all $(wc -l <"$dir/sha.txt") files"
else
    skip "sha256sum agrees with the manifest" "no sha256sum"
fi

# ---- determinism ---------------------------------------------------------------------
expect 0 "still golden --out again (same seed)" "$STILL" golden --out "$dir/set2"
diff -r "$set1" "$dir/set2" >"$dir/diff" 2>&1
st=$?
head -5 "$dir/diff" | sed 's/^/#   /'
report $st "generating twice gives byte-identical sets"
expect 0 "still golden --out --seed 2" "$STILL" golden --out "$dir/set3" --seed 2
! cmp -s "$set1/default/q.npy" "$dir/set3/default/q.npy"
report $? "another seed draws other inputs"
rm -rf "$dir/set2" "$dir/set3"

# ---- verify ------------------------------------------------------------------------------
expect 0 "--verify --path ref passes" "$STILL" golden --verify "$set1" --path ref
grep -q '^PASS' "$dir/stdout"
report $? "--verify --path ref prints PASS"
"$STILL" golden --verify "$set1" --path fast >"$dir/stdout" 2>"$dir/stderr"
st=$?
if [ $st -eq 4 ]; then
    skip "--verify --path fast passes" "$(cat "$dir/stderr")"
else
    [ $st -eq 0 ] || sed 's/^/#   /' "$dir/stdout" "$dir/stderr" | tail -20
    report $st "--verify --path fast passes (SPEC §10 float32 tolerances, sel equal)"
fi

cp -R "$set1" "$dir/bad"
flip "$dir/bad/default/o.npy"
expect 1 "--verify fails (exit 1) after one byte of o.npy changed" \
    "$STILL" golden --verify "$dir/bad"
grep -q 'default .*FAIL.*o.npy sha256 differs' "$dir/stdout"
report $? "--verify names the case and the file whose sha256 differs"
rm -rf "$dir/bad"

cp -R "$set1" "$dir/bad"
flip "$dir/bad/cap/q.npy"
expect 1 "--verify fails after one byte of an input changed" "$STILL" golden --verify "$dir/bad"
rm -rf "$dir/bad"

# a changed flag with every file intact: only recomputing can see it
cp -R "$set1" "$dir/bad"
sed 's/--local 2 /--local 1 /; /^        "--local",$/{n;s/"2"/"1"/;}' "$set1/manifest.json" \
    >"$dir/bad/manifest.json"
! cmp -s "$set1/manifest.json" "$dir/bad/manifest.json"
report $? "(the edited manifest differs)"
expect 1 "--verify fails when a command line's flag changed (recomputes, not only hashes)" \
    "$STILL" golden --verify "$dir/bad"
rm -rf "$dir/bad"

# ---- the manifest's command lines reproduce the outputs -----------------------------
bad=""
for c in $(grep '^      "name": ' "$set1/manifest.json" | cut -d'"' -f4); do
    run=$(awk -F'"' -v c="$c" '/^      "name": /{n = $4} n == c && /^      "command": /{print $4}' \
        "$set1/manifest.json")
    teach=$(awk -F'"' -v c="$c" '/^      "name": /{n = $4} n == c && /^      "teacher_command": /{print $4}' \
        "$set1/manifest.json")
    w="$dir/rerun/$c"
    mkdir -p "$w"
    for f in q.npy k.npy v.npy gate.npy params.safetensors; do
        [ -f "$set1/$c/$f" ] && cp "$set1/$c/$f" "$w/"
    done
    case "$run" in "still run "*) ;; *) bad="$bad $c(command: '$run')"; continue ;; esac
    case "$teach" in "still teacher "*) ;; *) bad="$bad $c(teacher_command)"; continue ;; esac
    (cd "$w" && eval "\"\$STILL\" ${run#still }" >/dev/null && eval "\"\$STILL\" ${teach#still }" >/dev/null) ||
        { bad="$bad $c(exit)"; continue; }
    for f in o.npy sigma.npy sel.npy o_teacher.npy; do
        "$STILL" check "$w/$f" "$set1/$c/$f" --rtol 0 --atol 0 >/dev/null 2>&1 || bad="$bad $c/$f"
    done
done
[ -z "$bad" ] || echo "# differ:$bad"
report $([ -z "$bad" ]; echo $?) "each case's command and teacher_command reproduce o, sigma, sel, o_teacher exactly (still check --atol 0)"

# SPEC I1: k = C, eps_den 0, L >= 1 is full softmax attention
expect 0 "routing_all's o.npy equals its o_teacher.npy (SPEC I1)" \
    "$STILL" check "$set1/routing_all/o.npy" "$set1/routing_all/o_teacher.npy" --rtol 0 --atol 1e-12

# ---- refusals ----------------------------------------------------------------------------------
expect 2 "no --out or --verify: usage error" "$STILL" golden
expect 2 "both --out and --verify: usage error" "$STILL" golden --out "$dir/x" --verify "$set1"
expect 2 "--path fast for writing: usage error" "$STILL" golden --out "$dir/x" --path fast
expect 2 "a bad seed: usage error" "$STILL" golden --out "$dir/x" --seed -1
mkdir "$dir/full"
echo keep >"$dir/full/keep"
expect 5 "--out into a non-empty directory is refused" "$STILL" golden --out "$dir/full"
left=$(ls "$dir" | grep -c 'full\.tmp-')
[ "$(cat "$dir/full/keep")" = keep ] && [ "$(ls "$dir/full")" = keep ] && [ "$left" -eq 0 ]
report $? "--out into a non-empty directory: nothing written, nothing left behind"
mkdir "$dir/empty"
expect 0 "--out into an empty directory fills it" "$STILL" golden --out "$dir/empty"
cmp -s "$set1/manifest.json" "$dir/empty/manifest.json"
report $? "the set written into the empty directory is the same"
rm -rf "$dir/empty"
mkdir "$dir/nomani"
expect 3 "--verify without a manifest: input error" "$STILL" golden --verify "$dir/nomani"
printf '{"format": "still-golden", "format_version": 1, "cases": [' >"$dir/nomani/manifest.json"
expect 3 "--verify of a truncated manifest: input error" "$STILL" golden --verify "$dir/nomani"
printf '{"format": "still-golden", "format_version": 99, "cases": []}' >"$dir/nomani/manifest.json"
expect 3 "--verify of an unknown format version: input error" "$STILL" golden --verify "$dir/nomani"

tap_end
