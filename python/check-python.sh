#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# check-python.sh -- runs python/test_still.py (make check) when a python3
# with NumPy is available; exits 77 (skipped) otherwise, saying why.
# STILL_LIB (set by python/Makefile.am) names the libstill.so to test.
srcdir=${srcdir:-$(dirname "$0")}
. "$srcdir/pyfind.sh"
if ! pyfind numpy; then
    echo "SKIP: no python3 with NumPy found (install the Debian package python3-numpy)"
    exit 77
fi
if [ -n "${STILL_LIB:-}" ] && [ ! -f "$STILL_LIB" ]; then
    echo "SKIP: $STILL_LIB not built (shared library disabled?)"
    exit 77
fi
echo "using $py ($("$py" -c 'import numpy; print("NumPy", numpy.__version__)'))"
exec "$py" "$srcdir/test_still.py"
