#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# test_tool_ux.sh -- what the `still` tool prints and assumes, printing TAP.
#
# - `still bench --plot` without gnuplot on PATH says so in one line on
#   stderr and still prints its whole table (exit 0); a gnuplot that fails
#   is one line and exit 5, after the table; a real gnuplot writes a PNG;
# - progress: one line on stderr rewritten in place with \r, only when
#   stderr is a terminal (script(1) gives the command one), never with
#   --no-progress or when stderr is a file;
# - still transfer runs on the fast path unless --path ref;
# - result rows reach a pipe while the command still runs (line-buffered
#   stdout);
# - --help of every subcommand lists exactly the options its parser
#   accepts: each option --help lists is accepted, and each "--name"
#   literal of the command's sources that the parser accepts is listed.
#   An option counts as accepted when `still CMD --name x --zz-unknown`
#   does not answer "unknown option '--name'".

. "$(dirname "$0")/tap.sh"
tap_start test_tool_ux
srcdir=${srcdir:-$(dirname "$0")}
top=$srcdir/..

tap_require tool
case $STILL in
/*) ;;
*) STILL=$(pwd)/$STILL ;;
esac

# a bench of a few seconds: tiny heads, no ref path
SMALL="--n 256,512 --heads 1 --dim 16 --f 16 --cap 8 --reps 1 --ref-max 0"

# ---- --plot without gnuplot, with a failing one, with the real one -------------
mkdir "$dir/nobin" "$dir/badbin" "$dir/killbin"
# shellcheck disable=SC2086
PATH=$dir/nobin "$STILL" bench $SMALL --plot "$dir/p.png" >"$dir/stdout" 2>"$dir/stderr"
st=$?
echo "# exit status $st; stderr: $(cat "$dir/stderr")"
[ $st -eq 0 ]
report $? "bench --plot without gnuplot on PATH exits 0 (not killed by SIGPIPE)"
[ "$(wc -l <"$dir/stderr")" -eq 1 ] && grep -q 'gnuplot not found' "$dir/stderr"
report $? "... and says so in one line on stderr"
grep -q '^ *512  STILL capped' "$dir/stdout" && grep -q '^summary of this run' "$dir/stdout"
report $? "... and prints the whole table"
[ ! -e "$dir/p.png" ]
report $? "... and writes no plot"

printf '#!/bin/sh\nexit 3\n' >"$dir/badbin/gnuplot"
printf '#!/bin/sh\nkill -9 $$\n' >"$dir/killbin/gnuplot"
chmod +x "$dir/badbin/gnuplot" "$dir/killbin/gnuplot"
for bin in badbin killbin; do
    # shellcheck disable=SC2086
    PATH=$dir/$bin:$PATH "$STILL" bench $SMALL --plot "$dir/p.png" >"$dir/stdout" 2>"$dir/stderr"
    st=$?
    echo "# $bin: exit status $st; stderr: $(cat "$dir/stderr")"
    [ $st -eq 5 ] && [ "$(wc -l <"$dir/stderr")" -eq 1 ] && grep -q 'gnuplot failed' "$dir/stderr"
    report $? "bench --plot with a gnuplot that fails ($bin): exit 5, one line on stderr"
    grep -q '^summary of this run' "$dir/stdout"
    report $? "... after the whole table ($bin)"
done

if command -v gnuplot >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    expect 0 "bench --plot with gnuplot" "$STILL" bench $SMALL --plot "$dir/p.png"
    [ "$(head -c 8 "$dir/p.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]
    report $? "... writes a PNG"
else
    skip "bench --plot with gnuplot" "gnuplot not installed"
    skip "... writes a PNG" "gnuplot not installed"
fi

# ---- the machine's peak, measured; the BLAS kernels named ----------------------
# shellcheck disable=SC2086
expect 0 "bench runs" "$STILL" bench $SMALL
grep -q '^multiply-add peak of this machine, [a-z0-9]* kernel on 2 threads: [0-9.]* GFLOP/s' \
    "$dir/stdout"
report $? "bench reports the multiply-add peak it measured"
grep -q '^ *[0-9][0-9]*  liger (w=64)  ' "$dir/stdout"
report $? "bench has a row of mixer liger (SPEC §16)"
peak=$(sed -n 's/^multiply-add peak.*: \([0-9.]*\) GFLOP\/s.*/\1/p' "$dir/stdout")
# every %peak is GFLOP/s over that peak (the columns: N method.. seconds
# tokens/s GFLOP/s %peak)
awk -v peak="$peak" '$1 ~ /^[0-9]+$/ && $0 ~ /%/ {
    for (i = 2; i <= NF; i++) if ($i ~ /%$/) { p = $i; g = $(i - 1); break }
    sub(/%/, "", p); rows++
    # all three printed rounded (%.1f): GFLOP/s (5/peak points), %peak (0.05)
    # and the peak itself (p * 0.05/peak); with a low peak (a loaded
    # machine) the last term is not small
    tol = 0.051 + 5.01 / peak + p * 0.0501 / peak
    if (peak <= 0 || (100 * g / peak - p) > tol || (p - 100 * g / peak) > tol) bad++ }
    END { exit !(rows >= 4 && !bad) }' "$dir/stdout"
report $? "every row's %peak is its GFLOP/s over the measured peak ($peak GFLOP/s)"
grep -q '^BLAS: OpenBLAS kernels [A-Za-z0-9]' "$dir/stdout"
report $? "bench names the OpenBLAS kernel set"
# shellcheck disable=SC2086
OPENBLAS_CORETYPE=Haswell "$STILL" bench $SMALL >"$dir/stdout" 2>/dev/null
grep -q '^BLAS: OpenBLAS kernels .*(OPENBLAS_CORETYPE=Haswell)' "$dir/stdout"
report $? "... and OPENBLAS_CORETYPE when it is set"
# (the constant peak was "448 GFLOP/s": a measured number may hold the digits)
grep -Eq '(^|[^0-9.])448 GFLOP|ggml|ANCHORS|issue' "$dir/stdout"
[ $? -ne 0 ]
report $? "bench output has no constant peak or internal references"

# ---- progress on a terminal only -------------------------------------------------
if command -v script >/dev/null 2>&1 && script -qc true /dev/null >/dev/null 2>&1; then
    # stdout to a file, stderr on the terminal script(1) provides
    script -qc "'$STILL' transfer --synthetic --steps 40 --out '$dir/p.st' >'$dir/t.out'" \
        "$dir/tty.txt" >/dev/null 2>&1
    tr '\r' '\n' <"$dir/tty.txt" | grep -q '^still transfer: step, loss .*\[40/40\]'
    report $? "transfer on a terminal shows progress rewritten with \\r"
    [ "$(sed '/^Script started/d; /^Script done/d' "$dir/tty.txt" | grep -c .)" -le 1 ]
    report $? "... on one line (no newline on stderr)"
    grep -q 'still transfer: ' "$dir/t.out"
    report $? "... and its summary on stdout"
    script -qc "'$STILL' transfer --synthetic --steps 40 --no-progress --out '$dir/p.st' >'$dir/t.out'" \
        "$dir/tty.txt" >/dev/null 2>&1
    ! grep -q 'step, loss' "$dir/tty.txt"
    report $? "transfer --no-progress on a terminal shows none"
    # shellcheck disable=SC2086
    script -qc "'$STILL' bench $SMALL >'$dir/b.out'" "$dir/tty.txt" >/dev/null 2>&1
    tr '\r' '\n' <"$dir/tty.txt" | grep -q '^still bench: N=512: teacher \[1/2\]'
    report $? "bench on a terminal shows progress"
else
    for t in 1 2 3 4 5; do skip "progress on a terminal ($t)" "script(1) not available"; done
fi
"$STILL" transfer --synthetic --steps 40 --out "$dir/p.st" >"$dir/t.out" 2>"$dir/t.err"
[ $? -eq 0 ] && [ ! -s "$dir/t.err" ]
report $? "transfer with stderr not a terminal prints nothing there"
# shellcheck disable=SC2086
"$STILL" bench $SMALL >"$dir/b.out" 2>"$dir/b.err"
[ $? -eq 0 ] && [ ! -s "$dir/b.err" ]
report $? "bench with stderr not a terminal prints nothing there"

# ---- still transfer: the fast path unless --path ref -------------------------------
expect 0 "transfer without --path" "$STILL" transfer --synthetic --steps 2 --out "$dir/p2.st"
grep -q '^still transfer: fast path' "$dir/stdout"
report $? "... runs on the fast path"
expect 0 "transfer --path ref" "$STILL" transfer --synthetic --steps 2 --path ref \
    --out "$dir/p2.st"
grep -q '^still transfer: ref path' "$dir/stdout"
report $? "... runs on the ref path"

# ---- result rows reach a pipe as they are printed --------------------------------
# The first rows must arrive while the ref path (seconds at N = 4096) still runs.
# shellcheck disable=SC2086
("$STILL" bench --n 256,4096 --heads 1 --dim 16 --f 16 --reps 1 --ref-max 4096 \
    --teacher-max 256 --no-progress | cat >"$dir/pipe.out") &
waited=0
while [ $waited -lt 300 ] && ! grep -q '^ *256  ref' "$dir/pipe.out" 2>/dev/null; do
    sleep 0.1
    waited=$((waited + 1))
done
grep -q '^ *256  ref' "$dir/pipe.out" && ! grep -q '^summary' "$dir/pipe.out"
report $? "bench rows reach a pipe before the run ends"
wait

# ---- --help lists exactly the options the parser accepts -------------------------
# accepted CMD... OPT: 0 when the parser takes OPT (no "unknown option 'OPT'")
accepted() {
    opt=$1
    shift
    (cd "$dir/scratch" && "$STILL" "$@" "$opt" x --zz-unknown) >/dev/null 2>"$dir/acc.err"
    ! grep -qF "unknown option '$opt'" "$dir/acc.err"
}
mkdir "$dir/scratch"
[ -r "$top/tools/tool_attn.c" ] && [ -r "$top/bench/bench_decode.c" ]
report $? "the tool's sources are readable (for the parsers' option names)"
# the unknown marker itself must be refused, or the test would be vacuous
"$STILL" run --zz-unknown >/dev/null 2>"$dir/acc.err"
grep -qF "unknown option '--zz-unknown'" "$dir/acc.err"
report $? "an unknown option is named in the error"
"$STILL" --help >"$dir/help"
commands=$(sed -n '/^commands:/,/^$/p' "$dir/help" | sed -n 's/^  \([a-z][a-z0-9_-]*\) .*/\1/p')
for c in $commands "bench --decode"; do
    # shellcheck disable=SC2086
    "$STILL" $c --zz-unknown >/dev/null 2>"$dir/acc.err"
    grep -qF "unknown option '--zz-unknown'" "$dir/acc.err"
    report $? "still $c names an unknown option in its error"
    # shellcheck disable=SC2086
    "$STILL" $c --help >"$dir/help" 2>&1
    listed=$(sed -n 's/^ *\(-h, \)\{0,1\}\(--[a-z][a-z0-9-]*\).*/\2/p' "$dir/help" | sort -u)
    bad=""
    for opt in $listed; do
        # shellcheck disable=SC2086
        accepted "$opt" $c || bad="$bad $opt"
    done
    [ -z "$bad" ] || echo "# still $c --help lists options its parser refuses:$bad"
    [ -z "$bad" ]
    report $? "still $c: every option --help lists is accepted"
    # the parser's options: "--name" literals of its sources that it accepts
    case $c in
    "bench --decode") srcs="$top/bench/bench_decode.c" ;;
    *) srcs="$top/tools/cmd_$c.c $top/tools/tool_attn.c $top/tools/tool_common.c" ;;
    esac
    # shellcheck disable=SC2086
    literals=$(cat $srcs | grep -o '"--[a-z][a-z0-9-]*"' | tr -d '"' | sort -u)
    missing=""
    for opt in $literals; do
        [ "$opt" = "--help" ] && continue
        # shellcheck disable=SC2086
        if accepted "$opt" $c && ! echo "$listed" | grep -qx -- "$opt"; then
            missing="$missing $opt"
        fi
    done
    [ -z "$missing" ] || echo "# still $c accepts options its --help does not list:$missing"
    [ -z "$missing" ]
    report $? "still $c: every option the parser accepts is in --help"
done

tap_end
