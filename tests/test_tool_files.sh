#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_tool_files.sh -- the files of the `still` tool (man still, OUTPUT
# FILES and EXIT STATUS), printing TAP:
#   - an error message prints the value that is in the file (a selection
#     value read after its array was freed printed garbage);
#   - outputs: an existing file survives when a later output of the same
#     command fails (run, decode, grad, transfer); the same file named twice
#     (./O.npy, a symbolic or hard link) or an input named as an output is
#     refused before anything is written; a symbolic link stays a link; a
#     FIFO or a character device is written in place, never replaced; a
#     FIFO nobody reads is refused; SIGTERM during a write leaves no
#     temporary file;
#   - no hangs: a FIFO as an input ends with status 3, and a low
#     address-space limit (prlimit --as) ends every command with a
#     documented status, within a timeout.
# Devices are private nodes made with mknod in the test's directory (never
# /dev/null itself: the old tool replaced the output file it was given).

. "$(dirname "$0")/tap.sh"
tap_start test_tool_files

# timeout(1) bounds every command that used to hang
tap_require tools timeout
T="timeout 60"

# old FILE...: each file holds "old FILE" (a user's existing output)
old() {
    for f in "$@"; do printf 'old %s' "$f" >"$dir/$f"; done
}
# kept DESCRIPTION FILE...: each is still "old FILE", and no temporary is left
kept() {
    bad=""
    desc=$1
    shift
    for f in "$@"; do
        [ "$(cat "$dir/$f" 2>/dev/null)" = "old $f" ] || bad="$bad $f"
    done
    ls -a "$dir" "$dir/sub" 2>/dev/null | grep -q '\.tmp-' && bad="$bad (a temporary file)"
    [ -n "$bad" ] && echo "# not as before:$bad"
    [ -z "$bad" ]
    report $? "$desc"
}
# is_npy FILE: starts with the .npy magic
is_npy() {
    [ "$(head -c 6 "$1" | tail -c 5)" = NUMPY ]
}

"$GEN" "$dir/q.npy" f8 1 1 1 2 40 8 &&
    "$GEN" "$dir/k.npy" f8 2 1 1 1 40 8 &&
    "$GEN" "$dir/v.npy" f8 3 1 1 1 40 4 &&
    "$GEN" "$dir/sel.npy" u1 4 1 1 2 40 || { echo "1..0 # SKIP gen_npy failed"; exit 0; }
IN="--q $dir/q.npy --k $dir/k.npy --v $dir/v.npy --chunk 8 --topk 2"
mkdir "$dir/sub"

# ---- an error names the value that is in the file ---------------------------
# the selection's first value made 7 (|u1 data is the last 80 bytes)
size=$(wc -c <"$dir/sel.npy")
cp "$dir/sel.npy" "$dir/sel7.npy"
printf '\007' | dd of="$dir/sel7.npy" bs=1 seek=$((size - 80)) conv=notrunc 2>/dev/null
expect 3 "a selection value 7 is refused" $T "$STILL" run $IN --select-in "$dir/sel7.npy" \
    --out "$dir/o.npy"
grep -q 'value 7 at row 0 position 0, expected 0 or 1' "$dir/stderr"
report $? "the message prints the value of the file (7), read before the array is freed"
[ $? -eq 0 ] || sed 's/^/#   /' "$dir/stderr"

# ---- a later output fails: the earlier ones are not lost --------------------
old O.npy S.npy G.st P.st
expect 5 "run: --select-out in a missing directory" $T "$STILL" run $IN --out "$dir/O.npy" \
    --scores-out "$dir/S.npy" --select-out "$dir/none/sel.npy"
kept "run: the existing --out and --scores-out are kept" O.npy S.npy
expect 5 "decode: --state-out in a missing directory" $T "$STILL" decode $IN \
    --out "$dir/O.npy" --state-out "$dir/none/st"
kept "decode: the existing --out is kept" O.npy
expect 5 "grad: --grads-out in a missing directory" $T "$STILL" grad $IN --out "$dir/O.npy" \
    --scores-out "$dir/S.npy" --grads-out "$dir/none/g.st"
kept "grad: the existing --out and --scores-out are kept" O.npy S.npy
expect 5 "transfer: --csv in a missing directory" $T "$STILL" transfer --synthetic --steps 2 \
    --out "$dir/P.st" --csv "$dir/none/loss.csv"
kept "transfer: the existing --out is kept" P.st
expect 5 "a directory as an output is refused" $T "$STILL" run $IN --out "$dir/O.npy" \
    --scores-out "$dir/sub"
kept "(the existing --out is kept)" O.npy

# ---- the same file twice ------------------------------------------------------
expect 2 "O.npy and ./O.npy are the same file" $T "$STILL" run $IN --out "$dir/O.npy" \
    --scores-out "$dir/./O.npy"
kept "(nothing written)" O.npy
ln -s O.npy "$dir/L.npy"
expect 2 "a symbolic link to another output" $T "$STILL" run $IN --out "$dir/O.npy" \
    --select-out "$dir/L.npy"
kept "(nothing written)" O.npy
ln "$dir/O.npy" "$dir/H.npy"
expect 2 "a hard link to another output" $T "$STILL" grad $IN --out "$dir/H.npy" \
    --grads-out "$dir/O.npy"
kept "(nothing written)" O.npy
expect 2 "the same file through sub/.. (outputs not yet existing)" $T "$STILL" run $IN \
    --out "$dir/new.npy" --scores-out "$dir/sub/../new.npy"
[ ! -e "$dir/new.npy" ]
report $? "(nothing written)"
cp "$dir/q.npy" "$dir/qq.npy"
expect 2 "an input named as an output" $T "$STILL" run $IN --q "$dir/qq.npy" \
    --out "$dir/./qq.npy"
cmp -s "$dir/q.npy" "$dir/qq.npy"
report $? "(the input is unchanged)"
rm -f "$dir/L.npy" "$dir/H.npy"

# ---- links, FIFOs and devices are not replaced -----------------------------
ln -s sub/real.npy "$dir/link.npy"
expect 0 "an output through a symbolic link" $T "$STILL" run $IN --out "$dir/link.npy"
[ -L "$dir/link.npy" ] && is_npy "$dir/sub/real.npy"
report $? "the link stays a link; the file it points to is written"
mkfifo "$dir/fifo"
($T cat "$dir/fifo" >"$dir/from_fifo") &
reader=$!
expect 0 "a FIFO output with a reader" $T "$STILL" run $IN --out "$dir/O.npy" \
    --scores-out "$dir/fifo"
wait $reader
[ -p "$dir/fifo" ] && is_npy "$dir/from_fifo" && is_npy "$dir/O.npy"
report $? "the FIFO stays a FIFO and its reader got the array"
old O.npy
expect 5 "a FIFO output that nobody reads is refused" $T "$STILL" run $IN --out "$dir/O.npy" \
    --scores-out "$dir/fifo"
[ -p "$dir/fifo" ]
report $? "(the FIFO stays a FIFO)"
kept "(the existing --out is kept)" O.npy
if mknod "$dir/null" c 1 3 2>/dev/null && mknod "$dir/full" c 1 7 2>/dev/null; then
    expect 0 "a character device (null) as an output" $T "$STILL" run $IN --out "$dir/null" \
        --scores-out "$dir/S2.npy"
    [ -c "$dir/null" ] && is_npy "$dir/S2.npy"
    report $? "the device stays a device; the other output is written"
    old O.npy
    expect 5 "a write that fails (a full device) after another output" $T "$STILL" run $IN \
        --out "$dir/O.npy" --scores-out "$dir/full"
    [ -c "$dir/full" ]
    report $? "(the device stays a device)"
    kept "the existing --out is kept when a later write fails" O.npy
else
    skip "a character device as an output" "mknod not permitted"
fi

# ---- a signal during a write --------------------------------------------------
# --scores-out is a FIFO held open but never read: after 64 KiB the write
# blocks, with --out already in its temporary; then SIGTERM.
"$GEN" "$dir/qb.npy" f8 5 1 1 4 4096 8 &&
    "$GEN" "$dir/kb.npy" f8 6 1 1 1 4096 8 &&
    "$GEN" "$dir/vb.npy" f8 7 1 1 1 4096 4
mkfifo "$dir/slow"
exec 7<>"$dir/slow"
old O.npy
"$STILL" run --q "$dir/qb.npy" --k "$dir/kb.npy" --v "$dir/vb.npy" --out "$dir/O.npy" \
    --scores-out "$dir/slow" 2>"$dir/stderr" &
pid=$!
waited=0
while [ $waited -lt 600 ] && [ "$(cat /proc/$pid/wchan 2>/dev/null)" != pipe_write ] &&
    kill -0 $pid 2>/dev/null; do
    sleep 0.1
    waited=$((waited + 1))
done
kill -TERM $pid 2>/dev/null
wait $pid
status=$?
exec 7<&-
[ $status -eq 143 ]
report $? "SIGTERM during a write ends the command by the signal (status $status)"
kept "SIGTERM during a write leaves no temporary, the existing --out kept" O.npy

# ---- no hangs -------------------------------------------------------------------
mkfifo "$dir/qfifo" "$dir/stfifo"
expect 3 "a FIFO as --q ends with status 3" $T "$STILL" run --q "$dir/qfifo" --k "$dir/k.npy" \
    --v "$dir/v.npy" --out "$dir/o.npy"
expect 3 "a FIFO as --state-in ends with status 3" $T "$STILL" decode $IN \
    --state-in "$dir/stfifo" --out "$dir/o.npy"
expect 3 "a FIFO as the first array of check ends with status 3" $T "$STILL" check \
    "$dir/qfifo" "$dir/q.npy"
mkdir "$dir/gold"
mkfifo "$dir/gold/manifest.json"
expect 3 "a FIFO as a golden manifest ends with status 3" $T "$STILL" golden --verify "$dir/gold"

if grep -q __asan_init "$STILL" 2>/dev/null; then
    skip "address-space limits" "AddressSanitizer needs an unlimited address space"
elif command -v prlimit >/dev/null 2>&1; then
    # 100 MB: the old tool hung at exit in OpenBLAS's thread-pool shutdown
    # (its workers retried for their buffers forever); 60 MB: below what
    # OpenBLAS's 128 MiB buffer needs
    for as in 60000000 100000000; do
        L="timeout 60 prlimit --as=$as"
        expect 0 "info under an address-space limit of $as" $L "$STILL" info
        expect 0 "run under an address-space limit of $as" $L "$STILL" run $IN \
            --out "$dir/o.npy"
        expect 3 "run with a missing input under a limit of $as" $L "$STILL" run $IN \
            --q "$dir/missing.npy" --out "$dir/o.npy"
        expect 4 "grad --path fast without room for OpenBLAS's buffer ($as)" $L "$STILL" grad \
            $IN --path fast --grads-out "$dir/g.st"
    done
else
    skip "address-space limits" "prlimit not available"
fi

tap_end
