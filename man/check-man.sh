#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# check-man.sh -- make check: every function exported by include/still.h
# (declared with STILL_API) has a man page that names it in its NAME
# section, every page is installed, and every page lints clean with
# `mandoc -Tlint` and `groff -man -ww -z` (each run when the program exists).
#
# Environment (set by man/Makefile.am): srcdir, STILL_HEADER, MAN_PAGES
# (dist_man_MANS), MAN3_LINKS ("link.3:page.3 ..." installed as symlinks).
srcdir=${srcdir:-.}
STILL_HEADER=${STILL_HEADER:-$srcdir/../include/still.h}
fail=0
say() { printf '%s\n' "$*"; }
bad() { say "FAIL: $*"; fail=1; }

[ -r "$STILL_HEADER" ] || { say "FAIL: cannot read $STILL_HEADER"; exit 1; }
[ -n "$MAN_PAGES" ] || MAN_PAGES=$(cd "$srcdir" && ls *.[137])

# The names in the NAME section of a page, one per line.
page_names() {
    sed -n '/^\.SH NAME/,/^\.SH/p' "$1" | sed '1d;$d' | tr '\n' ' ' |
        sed 's/ \\-.*//' | tr ',' '\n' | sed 's/^ *//;s/ *$//' | grep -v '^$'
}

# The page documenting a function: its own page or the target of its link.
page_of() {
    for l in $MAN3_LINKS; do
        if [ "${l%%:*}" = "$1.3" ]; then
            printf '%s\n' "${l#*:}"
            return
        fi
    done
    printf '%s\n' "$1.3"
}

installed() {
    for p in $MAN_PAGES; do [ "$p" = "$1" ] && return 0; done
    return 1
}

# 1. every exported function has a page that names it
functions=$(grep '^STILL_API' "$STILL_HEADER" | sed 's/(.*//' | awk '{print $NF}' | tr -d '*')
count=0
for f in $functions; do
    count=$((count + 1))
    page=$(page_of "$f")
    if [ ! -f "$srcdir/$page" ]; then
        bad "$f: no man page ($page)"
    elif ! installed "$page"; then
        bad "$f: $page is not in dist_man_MANS"
    elif ! page_names "$srcdir/$page" | grep -qx "$f"; then
        bad "$f: $page does not name it in its NAME section"
    fi
done
[ "$count" -gt 0 ] || bad "no STILL_API function found in $STILL_HEADER"
say "$count exported functions, each with a man page: $([ $fail = 0 ] && echo yes || echo NO)"

# 2. every link points to an installed page, and every page in the
# directory is installed
for l in $MAN3_LINKS; do
    installed "${l#*:}" || bad "link ${l%%:*} -> ${l#*:}: target not installed"
done
for p in $(cd "$srcdir" && ls *.[137]); do
    installed "$p" || bad "$p is not in dist_man_MANS"
done

# 3. lint
if command -v mandoc >/dev/null 2>&1; then
    for p in $MAN_PAGES; do
        out=$(mandoc -Tlint "$srcdir/$p" 2>&1)
        [ -z "$out" ] || bad "mandoc -Tlint $p: $out"
    done
    say "mandoc -Tlint: $(echo $MAN_PAGES | wc -w) pages checked"
else
    say "SKIP: mandoc not found (install the Debian package mandoc); lint not run"
fi
if command -v groff >/dev/null 2>&1; then
    for p in $MAN_PAGES; do
        out=$(groff -man -ww -z "$srcdir/$p" 2>&1)
        [ -z "$out" ] || bad "groff -man -ww -z $p: $out"
    done
    say "groff -man -ww -z: $(echo $MAN_PAGES | wc -w) pages checked"
else
    say "SKIP: groff not found (install the Debian package groff-base); groff check not run"
fi
exit $fail
