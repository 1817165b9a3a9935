#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# check-install.sh -- the package as users install it (make check): a copy
# of python/ installed with pip, offline, into a temporary venv that sees
# the system's packages (NumPy from Debian), then imported from outside
# the tree, finding libstill through STILL_LIB and then through
# pkg-config.  Exits 77 (skipped) without python3-venv, pip or setuptools.
srcdir=${srcdir:-$(dirname "$0")}
. "$srcdir/pyfind.sh"
if ! pyfind numpy setuptools pip venv; then
    echo "SKIP: no python3 with NumPy, setuptools and venv (Debian: python3-numpy python3-setuptools python3-venv python3-pip)"
    exit 77
fi
if [ -n "${STILL_LIB:-}" ] && [ ! -f "$STILL_LIB" ]; then
    echo "SKIP: $STILL_LIB not built (shared library disabled?)"
    exit 77
fi
# Under AddressSanitizer python3 runs only with the ASan runtime preloaded
# (.ci/sanitize.sh gives it through a wrapper as PYTHON3); the venv's own
# interpreter has no such wrapper.  Installing is not what ASan checks:
# check-python.sh and check-torch.sh run the library under it.
if [ -n "${ASAN_OPTIONS:-}" ]; then
    echo "SKIP: under AddressSanitizer (the venv's python3 cannot preload its runtime)"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/still-py.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP
mkdir "$tmp/src" "$tmp/pc"
# a copy: pip writes build/ and *.egg-info next to pyproject.toml, and the
# source tree may be read-only (make distcheck)
cp -R "$srcdir/pyproject.toml" "$srcdir/README-python.md" "$srcdir/still" "$tmp/src/" &&
    chmod -R u+w "$tmp/src" || exit 1
# the system's pip installs into the venv (pip --python, pip >= 22.3):
# faster than a venv of its own pip
"$py" -m venv --without-pip --system-site-packages "$tmp/env" || { echo "FAIL: venv"; exit 1; }
"$py" -m pip --python "$tmp/env/bin/python" install -q --no-build-isolation --no-index \
    "$tmp/src" ||
    { echo "FAIL: pip install of the package"; exit 1; }
echo "ok 1 - pip install --no-build-isolation --no-index into a venv"
cd "$tmp" || exit 1
check() {  # check N TEXT ENV... : the installed package, imported from $tmp
    n=$1 text=$2
    shift 2
    if env "$@" "$tmp/env/bin/python" -c '
import os, sys, numpy as np, still
env = os.path.realpath(sys.argv[1])
assert os.path.realpath(still.__file__).startswith(env + "/"), still.__file__
assert os.path.realpath(still.library_path) == os.path.realpath(sys.argv[2]), \
    (still.library_path, sys.argv[2])
r = np.random.default_rng(1)
q, k, v = (r.standard_normal((1, 1, 5, 4)) for _ in range(3))
s = q[0, 0] @ k[0, 0].T / 2.0 + np.triu(np.full((5, 5), -np.inf), 1)
p = np.exp(s - s.max(axis=1, keepdims=True))
want = (p / p.sum(axis=1, keepdims=True)) @ v[0, 0]
assert np.abs(still.ref_teacher(q, k, v)[0, 0] - want).max() < 1e-12
print("   ", still.__file__, "->", still.library_path)
' "$tmp/env" "$lib"; then
        echo "ok $n - $text"
    else
        echo "not ok $n - $text"
        failed=1
    fi
}
failed=0
lib=${STILL_LIB:-}
if [ -z "$lib" ]; then
    echo "ok 2 # SKIP STILL_LIB not set"
else
    check 2 "the installed package imports and finds libstill through STILL_LIB" STILL_LIB="$lib"
    libdir=$(dirname "$lib")
    printf 'prefix=/nonexistent\nlibdir=%s\nName: still\nDescription: test\nVersion: 0.1.0\nLibs: -L${libdir} -lstill\n' \
        "$libdir" >"$tmp/pc/still.pc"
    if command -v pkg-config >/dev/null 2>&1; then
        check 3 "without STILL_LIB it finds libstill through pkg-config's libdir" \
            -u STILL_LIB PKG_CONFIG_PATH="$tmp/pc"
    else
        echo "ok 3 # SKIP no pkg-config"
    fi
fi
exit $failed
