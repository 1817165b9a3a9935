# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# pyfind.sh -- sourced by the check-*.sh scripts: pyfind MODULE... sets py
# to the first of $PYTHON3, python3, /usr/bin/python3 that imports every
# MODULE (empty when none does).
pyfind() {
    py=
    for cand in "${PYTHON3:-}" python3 /usr/bin/python3; do
        [ -n "$cand" ] || continue
        command -v "$cand" >/dev/null 2>&1 || continue
        ok=1
        for m in "$@"; do
            "$cand" -c "import $m" >/dev/null 2>&1 || { ok=0; break; }
        done
        if [ "$ok" = 1 ]; then
            py=$cand
            return 0
        fi
    done
    return 1
}
