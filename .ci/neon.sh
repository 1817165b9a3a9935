#!/bin/bash
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# .ci/neon.sh -- the NEON job (issue 3): cross-builds libstill for aarch64
# with aarch64-linux-gnu-gcc and runs, under qemu-aarch64, the Check suites
# that exercise the fast path's kernels, with the recipe of CONVENTIONS.md:
#   - Debian packages of the arm64 architecture (dpkg --add-architecture);
#   - binfmt is not mounted: qemu-aarch64 is called explicitly, through the
#     tests' LOG_COMPILER, always under `timeout`;
#   - no -L /usr/aarch64-linux-gnu: with :arm64 packages installed the
#     arm64 loader and libraries are in the normal paths, and mixing in the
#     cross sysroot's glibc makes threads and fork spin forever.
# The suites run (each 5-25 s under qemu on this 2-core machine; build
# ~1.5 min, whole job ~4 min):
#   test_fast          fast vs ref on every ISA the CPU runs (generic and
#                      neon here), I7 across threads, block independence,
#                      dispatch and STILL_ISA;
#   test_fast_teacher  the fast teacher vs the ref, across threads;
#   test_state_fast    the fast streaming state vs the ref (decode = prefill);
#   test_state_io      save/load of fast states (the ISA recorded);
#   test_extremes      numerical extremes through the fast path;
#   test_overflow      float32 overflow is an error, never a wrong result;
#   test_authors       the fast path on the authors' two cases (SPEC App. A).
# Not run here, and why:
#   test_concurrency   8 pthreads starting at once crash qemu-user 7.2 itself
#                      (TCG assertions "cpu == current_cpu" and
#                      qemu_plugin_vcpu_init_hook), before any library code;
#   test_limits        caps the address space (RLIMIT_AS) with a few hundred
#                      KiB of headroom, which qemu's own mappings of the guest
#                      make meaningless (one false failure, and 2 min);
#   test_ref_*, test_state, test_grad*, test_lora, test_io and the shell
#                      tests: the double-precision oracle, training and I/O,
#                      no SIMD kernel in them; the native make check runs them.
# `still info` under qemu shows the table the dispatcher picks (neon), and
# STILL_ISA=neon is set for the suites so that every "auto" choice in them
# is the NEON table whatever the detection says (test_fast also runs generic
# explicitly, and sets and unsets STILL_ISA in its dispatch test).
# Env: NEON_BUILD_DIR (default /tmp/libstill-ci-neon, where .ci/run counts
# the TAP results, tests/*.trs), NEON_TIMEOUT (seconds per test program,
# default 300: ~10x the slowest).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${NEON_BUILD_DIR:-/tmp/libstill-ci-neon}
COPY=$BUILD-src
TIMEOUT=${NEON_TIMEOUT:-300}
start=$(date +%s)
say() { printf 'neon: %s (%ds)\n' "$*" $(( $(date +%s) - start )); }
# Results of an earlier run must not be counted if this one stops early.
rm -rf "$BUILD" "$COPY"

# ---- packages ------------------------------------------------------------------
pkgs=(autoconf automake libtool make pkgconf file gcc-aarch64-linux-gnu libc6-dev-arm64-cross
      qemu-user libopenblas-dev:arm64 libsleef-dev:arm64 check:arm64 libsubunit-dev:arm64
      pkgconf:arm64 libgomp1:arm64 libjansson-dev:arm64 nettle-dev:arm64 libpng-dev:arm64)
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- sources: a clean copy (the CI may have configured the tree in place,
# and an out-of-tree configure refuses a configured source tree) ---------------
mkdir -p "$BUILD" "$COPY"
if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$SRC" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$COPY"
else
    cp -a "$SRC/." "$COPY"
    if [ -f "$COPY/Makefile" ]; then make -C "$COPY" distclean >/dev/null 2>&1 || true; fi
fi
say "autoreconf"
(cd "$COPY" && autoreconf -fi >/dev/null 2>&1)

# ---- cross build ---------------------------------------------------------------
say "configure --host=aarch64-linux-gnu"
cd "$BUILD"
"$COPY/configure" --host=aarch64-linux-gnu --enable-werror >configure.out 2>&1 ||
    { tail -30 config.log; echo "neon: configure FAILED"; exit 1; }
grep -q "^STILL_AARCH64_TRUE=''$" config.log ||
    { echo "neon: configure did not select the aarch64 kernels"; exit 1; }
say "build"
progs=(test_fast test_fast_teacher test_state_fast test_state_io test_extremes test_overflow
       test_authors)
{ make -j2 -C ref && make -j2 -C simd && make -j2 -C lib && make -j2 -C tools still &&
  make -j2 -C tests "${progs[@]}"; } >make.out 2>&1 ||
    { grep -E 'error:|\*\*\*' make.out | head -30; echo "neon: build FAILED"; exit 1; }
file tests/test_fast | grep -q 'ARM aarch64' || { echo "neon: not an aarch64 binary"; exit 1; }

# ---- the table the dispatcher picks under qemu ---------------------------------------
say "still info under qemu-aarch64"
timeout 120 qemu-aarch64 tools/still info >info.out 2>&1 ||
    { cat info.out; echo "neon: still info FAILED under qemu"; exit 1; }
grep -E 'built with|cpu features|fast path ISA' info.out
grep -q '^fast path ISA  *neon (detected)' info.out ||
    { echo "neon: the dispatcher did not pick the NEON table"; exit 1; }

# ---- run under qemu ----------------------------------------------------------
say "make check under qemu-aarch64 (${progs[*]})"
status=0
STILL_ISA=neon make -C tests check TESTS="${progs[*]}" check_PROGRAMS="${progs[*]}" \
    LOG_COMPILER="timeout $TIMEOUT qemu-aarch64" >check.out 2>&1 || status=$?
for p in "${progs[@]}"; do
    echo "== tests/$p.log"
    grep -E '^# |^(not ok|Bail)|Checks:' "tests/$p.log" || true
done
grep -E '^# (TOTAL|PASS|FAIL|ERROR|SKIP)' tests/test-suite.log || true
if [ "$status" -ne 0 ] || ! grep -q '^# fast path ISAs tested here:.* neon' tests/test_fast.log; then
    head -100 tests/test-suite.log 2>/dev/null || tail -30 check.out
    say "FAILED"
    exit 1
fi
say "OK -- the fast path on generic and neon under qemu-aarch64 (${progs[*]})"
