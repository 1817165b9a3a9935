#!/bin/bash
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# .ci/harden-common.sh -- helpers shared by .ci/sanitize.sh, .ci/valgrind.sh
# and .ci/fuzz.sh (issue 7).  Sourced, not run.

# The source tree (the parent of .ci/).
HARDEN_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive

# harden_need PKG...: installs the Debian packages that are missing.  Runs
# `apt-get update` only when an install without it fails (the main .ci/run
# has usually updated the lists already).
harden_need() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "harden: installing ${missing[*]}"
    apt-get install -y --no-install-recommends "${missing[@]}" ||
        { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; }
}

# The packages every build of libstill needs (CONVENTIONS: .ci/run).
HARDEN_BUILD_PKGS=(autoconf automake libtool pkg-config make gcc libc6-dev
                   libopenblas-dev libsleef-dev check libjansson-dev nettle-dev libpng-dev)

# harden_configure BUILD_DIR CONFIGURE-ARGS...: a fresh out-of-tree build
# directory, configured.  Generates ./configure once if the tree lacks it.
harden_configure() {
    local dir=$1
    shift
    if [ ! -x "$HARDEN_SRC/configure" ]; then
        (cd "$HARDEN_SRC" && autoreconf -fi)
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    (cd "$dir" && "$HARDEN_SRC/configure" "$@" >configure.out 2>&1) || {
        tail -40 "$dir/config.log"
        echo "harden: configure failed in $dir" >&2
        return 1
    }
}

# harden_jobs: parallel make jobs (the CI machine has 2 cores).
harden_jobs() { nproc 2>/dev/null || echo 2; }
