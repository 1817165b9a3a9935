#!/bin/bash
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# .ci/consumers.sh -- libstill used as its users use it: configured with
# --prefix, built, installed, and its source and build tree removed; then
# a pkg-config consumer (shared, and static with --static), a CMake
# consumer (tests/consumers/cmake: find_package(still) -> still::still),
# the installed `still demo --no-needle` run from another directory, the
# installed Python module, the installed documents and man pages.
#
# One TAP line per check on stdout, and a .trs file in $CONSUMERS_DIR
# (default /tmp/libstill-ci-consumers) that .ci/run counts.  Exit status 1
# when a check failed.
set -euo pipefail
export LC_ALL=C
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${CONSUMERS_DIR:-/tmp/libstill-ci-consumers}
rm -rf "$OUT"
mkdir -p "$OUT"
work=$(mktemp -d /tmp/libstill-consumers.XXXXXX)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
trs=$OUT/consumers.trs
: >"$trs"
n=0
failed=0

# check DESCRIPTION CMD...: runs CMD (its output in $OUT/NAME.log); one TAP
# line and one .trs result.
check() {
    local desc=$1 log
    shift
    n=$((n + 1))
    log=$OUT/check-$n.log
    if "$@" >"$log" 2>&1; then
        echo "ok $n - $desc"
        echo ":test-result: PASS $desc" >>"$trs"
    else
        echo "not ok $n - $desc"
        echo ":test-result: FAIL $desc" >>"$trs"
        sed 's/^/# /' "$log" | tail -30
        failed=$((failed + 1))
    fi
}
skip() {
    n=$((n + 1))
    echo "ok $n - $1 # SKIP $2"
    echo ":test-result: SKIP $1" >>"$trs"
}

# A copy of the committed tree, built and installed, then deleted.
build() {
    git clone -q "$SRC" "$work/src" && cd "$work/src" && autoreconf -fi &&
        ./configure --prefix="$prefix" --enable-werror &&
        make -j"$(nproc 2>/dev/null || echo 2)" && make install &&
        mkdir -p "$work/tree/tests" && cp -R tests/consumers "$work/tree/tests/" &&
        cp -R examples "$work/tree/" && cd "$work" && rm -rf "$work/src"
}
check "configure --prefix, make, make install, source tree removed" build
[ -x "$prefix/bin/still" ] || { echo "Bail out! libstill was not installed"; exit 1; }
cd "$work"

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
export LD_LIBRARY_PATH=$prefix/lib
ex=$work/tree/examples/attention_error.c

pc_shared() {
    # the documented line of examples/attention_error.c
    cc "$ex" $(pkg-config --cflags --libs still) -lm -o pc-shared &&
        ./pc-shared && ldd ./pc-shared >ldd.txt && grep -q "$prefix/lib/libstill.so" ldd.txt
    # (not ldd | grep -q: under pipefail, grep's early exit can end ldd
    # with SIGPIPE and fail a check whose library is there)
}
check "pkg-config: the example builds and runs against the installed libstill.so" pc_shared

pc_plain() {
    # the README's line, for a program that needs nothing else
    printf '%s\n' '#include <still.h>' '#include <stdio.h>' \
        'int main(void) { still_config c; still_config_default(&c);' \
        '  puts(still_version_string()); return 0; }' >plain.c
    cc plain.c $(pkg-config --cflags --libs still) -o pc-plain &&
        [ "$(./pc-plain)" = "$(pkg-config --modversion still)" ]
}
check "pkg-config: cc prog.c \$(pkg-config --cflags --libs still) builds and runs" pc_plain

pc_static() {
    # libstill.a with what pkg-config --static adds (OpenBLAS, SLEEF, the
    # OpenMP runtime, libm); no libstill.so at run time
    local libs
    libs=$(pkg-config --static --libs still)
    libs=${libs/-lstill/$prefix/lib/libstill.a}
    cc "$ex" $(pkg-config --cflags still) $libs -o pc-static &&
        ./pc-static && ! ldd ./pc-static | grep -q libstill
}
check "pkg-config --static: the example links libstill.a and runs" pc_static

pc_meta() {
    pkg-config --print-requires-private still | grep -qx 'openblas' &&
        pkg-config --print-requires-private still | grep -qx 'sleef' &&
        ! grep -q -- '-fopenmp\|openblas-' "$prefix/lib/pkgconfig/still.pc" &&
        grep -q 'MIT' "$prefix/lib/pkgconfig/still.pc"
}
check "still.pc: Requires.private openblas sleef, no copied flags, MIT" pc_meta

if command -v cmake >/dev/null 2>&1; then
    cm() {
        cmake -S tree/tests/consumers/cmake -B cmake-build -DCMAKE_PREFIX_PATH="$prefix" &&
            cmake --build cmake-build && ./cmake-build/attention_error &&
            ldd ./cmake-build/attention_error >ldd-cmake.txt &&
            grep -q "$prefix/lib/libstill.so" ldd-cmake.txt
    }
    check "CMake: find_package(still) and still::still build and run the example" cm
    cm_version() {
        cmake -S tree/tests/consumers/cmake -B cmake-v1 -DCMAKE_PREFIX_PATH="$prefix" \
            -DSTILL_WANT_VERSION="$(pkg-config --modversion still)" &&
            ! cmake -S tree/tests/consumers/cmake -B cmake-v9 -DCMAKE_PREFIX_PATH="$prefix" \
                -DSTILL_WANT_VERSION=9.0
    }
    check "CMake: its own version is accepted, 9.0 refused" cm_version
else
    skip "CMake consumer" "cmake not installed"
fi

demo() {
    mkdir -p elsewhere && cd elsewhere &&
        "$prefix/bin/still" demo --no-needle >demo.out &&
        cat demo.out && grep -q 'layer 2 of tiny-lm' demo.out && grep -q 'layer 5 of tiny-lm' demo.out
}
check "the installed still demo --no-needle runs from another directory" demo

docs() {
    local d=$prefix/share/doc/libstill f
    for f in SPEC.md README.md LICENSE NEWS; do
        [ -s "$d/$f" ] || { echo "missing $d/$f"; return 1; }
    done
    "$prefix/bin/still" --version | grep -q 'MIT'
}
check "docdir holds SPEC.md README.md LICENSE NEWS; still --version names MIT" docs

pymod=$(find "$prefix" -path '*/still/__init__.py' | head -1)
python=$(for p in python3 /usr/bin/python3; do
    "$p" -c 'import numpy' 2>/dev/null && { echo "$p"; break; }; done || true)
if [ -z "$pymod" ]; then
    n=$((n + 1)); echo "not ok $n - the Python module is installed"
    echo ":test-result: FAIL the Python module is installed" >>"$trs"; failed=$((failed + 1))
elif [ -z "$python" ]; then
    skip "the installed Python module" "no python3 with NumPy"
else
    py() {
        # without LD_LIBRARY_PATH: the module finds the installed library;
        # the teacher against causal softmax attention written in NumPy
        env -u LD_LIBRARY_PATH PYTHONPATH="$(dirname "$(dirname "$pymod")")" PREFIX="$prefix" "$python" -c '
import os, numpy as np, still
assert still.library_path.startswith(os.environ["PREFIX"] + "/"), still.library_path
r = np.random.default_rng(1)
q, k, v = (r.standard_normal((1, 1, 5, 4)) for _ in range(3))
s = q[0, 0] @ k[0, 0].T / 2.0 + np.triu(np.full((5, 5), -np.inf), 1)
p = np.exp(s - s.max(axis=1, keepdims=True))
want = (p / p.sum(axis=1, keepdims=True)) @ v[0, 0]
o = still.ref_teacher(q, k, v)
assert np.abs(o[0, 0] - want).max() < 1e-12, (o, want)
print(still.__file__, still.library_path)'
    }
    check "the installed Python module finds the installed library" py
fi

if command -v man >/dev/null 2>&1; then
    mp() {
        local p
        for p in "still" "7 still" "3 libstill" "still_forward" "still_state_append" "still-golden"; do
            MANPATH=$prefix/share/man: man -w $p | grep -q "^$prefix/share/man/" ||
                { echo "MANPATH=$prefix/share/man: man -w $p: not found there"; return 1; }
            # man-db also looks beside the directories of PATH
            env -u MANPATH PATH="$prefix/bin:$PATH" man -w $p | grep -q "^$prefix/share/man/" ||
                { echo "PATH=$prefix/bin:...: man -w $p: not found under $prefix"; return 1; }
        done
    }
    check "MANPATH=PREFIX/share/man: or PREFIX/bin on PATH: man finds still(1), still(7), libstill(3), the function pages" mp
else
    skip "man pages" "no man command"
fi

echo "1..$n"
echo "$((n - failed)) of $n consumer checks passed"
[ "$failed" -eq 0 ]
