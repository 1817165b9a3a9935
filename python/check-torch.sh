#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# check-torch.sh -- runs python/test_torch.py (still.torch, still.testing
# and the example examples/validate_port.py) when a python3 with NumPy and
# PyTorch is available; exits 77 (skipped) otherwise, saying why.
srcdir=${srcdir:-$(dirname "$0")}
. "$srcdir/pyfind.sh"
if ! pyfind numpy torch; then
    echo "SKIP: no python3 with NumPy and PyTorch found (install the Debian package python3-torch)"
    exit 77
fi
if [ -n "${STILL_LIB:-}" ] && [ ! -f "$STILL_LIB" ]; then
    echo "SKIP: $STILL_LIB not built (shared library disabled?)"
    exit 77
fi
echo "using $py ($("$py" -c 'import torch; print("PyTorch", torch.__version__)'))"
exec "$py" "$srcdir/test_torch.py"
