#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# render-spec.sh -- writes still-spec.7 from SPEC.md (maintainers, when
# SPEC.md changes; needs pandoc).  tests/test_spec.sh checks that the page
# has every section of SPEC.md, and, where pandoc is installed, that it is
# this script's output.
set -e
top=${1:-$(dirname "$0")/..}
pandoc --standalone --from markdown-smart --to man \
    --metadata title=STILL-SPEC --metadata section=7 \
    --metadata date=2026-12-03 --metadata footer="libstill 0.1.0" \
    --metadata header="libstill Manual" \
    "$top/SPEC.md" | sed 's/\\f\[V\]/\\f[B]/g' |
    sed '1,/^\.TH/{/^\.TH/!d}' |
    awk '/^\.PP$/ && prev ~ /^\.S[HS] / { next } { print; prev = $0 }' |
    sed '1a .SH NAME\nstill-spec \\- the numerical specification of libstill' |
    sed '1i .\\" SPDX-License-Identifier: MIT\n.\\" Copyright (c) 2026 The libstill authors\n.\\" Generated from SPEC.md by man/render-spec.sh: edit SPEC.md, not this page.'
