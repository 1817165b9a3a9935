#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
#
# test_spdx.sh -- every file of the project that can carry a comment
# carries the licence lines (build-aux/spdx-check, over the files git
# tracks), and the check does fail on a file without them.  Printing TAP.
# Outside a git checkout (a release tarball) the first test is skipped.

. "$(dirname "$0")/tap.sh"
tap_start test_spdx
top=${STILL_TOP_SRCDIR:-$(dirname "$0")/..}
spdx=$top/build-aux/spdx-check

sh "$spdx" "$top" >"$dir/missing" 2>"$dir/err"
status=$?
if [ "$status" -eq 2 ]; then
    skip "every tracked source file has the SPDX and copyright lines" "$(cat "$dir/err")"
else
    sed 's/^/# no licence lines: /' "$dir/missing"
    report "$status" "every tracked source file has the SPDX and copyright lines"
fi

# a repository of two files, one without the lines: spdx-check names it
if command -v git >/dev/null 2>&1; then
    repo=$dir/repo
    mkdir "$repo" && git -C "$repo" init -q &&
        printf 'int x;\n' >"$repo/bare.c" &&
        printf '#!/bin/sh\n# SPDX-License-Identifier: MIT\n# Copyright (c) 2026 The libstill authors\n' \
            >"$repo/ok.sh" &&
        printf '#!/bin/sh\necho no header\n' >"$repo/script" &&
        printf 'not a source file\n' >"$repo/notes.txt" &&
        git -C "$repo" add bare.c ok.sh script notes.txt
    sh "$spdx" "$repo" >"$dir/found"
    status=$?
    [ "$status" -eq 1 ] && [ "$(cat "$dir/found")" = "bare.c
script" ]
    r=$?
    [ "$r" -eq 0 ] || echo "# spdx-check exited $status, listed: $(cat "$dir/found")"
    report "$r" "spdx-check fails on a source file and a script without the lines"
else
    skip "spdx-check fails on a source file without the lines" "no git"
fi

tap_end
