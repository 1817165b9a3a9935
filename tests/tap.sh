# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# tap.sh -- what the shell tests share (sourced: . "$(dirname "$0")/tap.sh").
#
# tap_start NAME sets the C locale (byte-wise sed and grep on binary .npy
# headers), STILL (the tool under test, $STILL_TOOL overrides), GEN (the
# gen_npy helper), a private directory $dir removed on exit, and the
# counters; tap_require skips the whole test unless what it needs is there;
# report / skip / expect print one TAP line each; tap_end prints the plan
# and gives the exit status (0 when nothing failed).

tap_start() {
    LC_ALL=C
    export LC_ALL
    STILL=${STILL_TOOL:-../tools/still}
    GEN=${STILL_GEN_NPY:-./gen_npy}
    dir=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || exit 1
    trap 'rm -rf "$dir"' EXIT INT TERM
    n=0
    failed=0
}

# tap_require WHAT...: each WHAT is "tools" (the tool and gen_npy built),
# "tool" (the tool alone) or the name of a command that must be on PATH;
# the first one missing ends the test with a TAP plan of 0 and the reason.
tap_require() {
    for need in "$@"; do
        case $need in
        tools) [ -x "$STILL" ] && [ -x "$GEN" ] || why="$STILL or $GEN not built" ;;
        tool) [ -x "$STILL" ] || why="$STILL not built" ;;
        *) command -v "$need" >/dev/null 2>&1 || why="$need(1) not found" ;;
        esac
        if [ -n "${why:-}" ]; then
            echo "1..0 # SKIP $why"
            exit 0
        fi
    done
}

report() { # report STATUS DESCRIPTION: one TAP line, "ok" when STATUS is 0
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"
        failed=$((failed + 1))
    fi
}

skip() { # skip DESCRIPTION WHY
    n=$((n + 1))
    echo "ok $n - $1 # SKIP $2"
}

# expect STATUS DESCRIPTION COMMAND...: runs the command; passes when it
# exits with STATUS and, when STATUS is not 0, wrote exactly one line on
# stderr.  Its output stays in $dir/stdout and $dir/stderr.
expect() {
    want=$1
    desc=$2
    shift 2
    "$@" >"$dir/stdout" 2>"$dir/stderr"
    got=$?
    lines=$(wc -l <"$dir/stderr")
    if [ "$got" -ne "$want" ]; then
        echo "# exit status $got, expected $want: $*"
        sed 's/^/#   /' "$dir/stdout" "$dir/stderr" | tail -20
        report 1 "$desc"
    elif [ "$want" -ne 0 ] && [ "$lines" -ne 1 ]; then
        echo "# $lines lines on stderr, expected 1: $*"
        sed 's/^/#   /' "$dir/stderr"
        report 1 "$desc"
    else
        report 0 "$desc"
    fi
}

tap_end() {
    echo "1..$n"
    [ "$failed" -eq 0 ]
}
