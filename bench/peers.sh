#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# peers.sh -- libstill's fast teacher and STILL next to PyTorch's CPU
# attention, in one run, at the same shapes and thread counts:
#
#   sh bench/peers.sh [--n 4096,16384] [--threads 1,2] [--reps 3]
#
# For each thread count: `still bench` (teacher, STILL, and the machine's
# multiply-add peak measured in the same run), then bench/peers.py (torch:
# scaled_dot_product_attention, or matmul + softmax + matmul where torch
# is older than 2.0).  Prints medians, % of the peak (the teacher's FLOP
# count for every full-attention method) and the ratios.  The machine is
# shared: compare within one run only.  The python3 used is the first of
# $PYTHON3, python3, /usr/bin/python3 that imports torch (Debian:
# python3-torch); without one the peers are skipped, saying so.
# --ggml DIR adds ggml's CPU flash attention (ggml_flash_attn_ext, float32,
# an explicit causal mask) as a second peer: DIR is a ggml source tree (not
# a Debian package; e.g. `git clone https://github.com/ggml-org/ggml DIR`),
# built here once into DIR/build-libstill with cmake (GGML_NATIVE, Release),
# and bench/ggml_attn.c compiled against it; ggml_attn also checks 16 rows
# per head against a double causal softmax and prints the error.
# GGML_ATTN=PROGRAM uses an already built ggml_attn instead of --ggml DIR.
# STILL_TOOL names the still program (default: tools/still of this tree);
# PEERS_RAW=FILE keeps the raw output of the runs.
#
#   sh bench/peers.sh --decode [--n 1024,4096,16384] [--threads 1] [--steps 64]
#
# times decode instead: one query against a KV cache of N tokens.  `still
# bench --decode` gives STILL's step (capped at 1024 and uncapped) and its
# own full-softmax step; peers.py --decode and ggml_attn --decode give
# PyTorch's and ggml's full-softmax step at the same N, heads, d and
# threads.  The table's baseline is the fastest full-softmax decode of the
# run, whoever it is, and each STILL step is given as a share of it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tool=${STILL_TOOL:-$here/../tools/still}
ns=4096,16384
threads=1,2
reps=3
ggml=
decode=
steps=64
while [ $# -gt 0 ]; do
    case $1 in
    --decode) decode=1; shift ;;
    --steps) steps=$2; shift 2 ;;
    --ggml) ggml=$2; shift 2 ;;
    --n) ns=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    *) echo "usage: peers.sh [--decode [--steps S]] [--n N1,N2] [--threads T1,T2] [--reps R] [--ggml DIR]" >&2; exit 2 ;;
    esac
done
[ -x "$tool" ] || { echo "peers.sh: $tool not built (make first)" >&2; exit 1; }
py=
for cand in "${PYTHON3:-}" python3 /usr/bin/python3; do
    [ -n "$cand" ] || continue
    command -v "$cand" >/dev/null 2>&1 || continue
    if "$cand" -c 'import torch' >/dev/null 2>&1; then
        py=$cand
        break
    fi
done
[ -n "$py" ] || echo "peers.sh: no python3 with torch (Debian: python3-torch): peers skipped"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
gbin=${GGML_ATTN:-}
if [ -z "$gbin" ] && [ -n "$ggml" ]; then
    [ -f "$ggml/include/ggml.h" ] || { echo "peers.sh: $ggml is not a ggml source tree" >&2; exit 1; }
    gb=$ggml/build-libstill
    if [ ! -d "$gb/src" ] || ! ls "$gb"/src/libggml-cpu.* >/dev/null 2>&1; then
        echo "peers.sh: building ggml in $gb (once)" >&2
        cmake -S "$ggml" -B "$gb" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
            -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=ON >/dev/null &&
            nice make -C "$gb" -j2 >/dev/null || { echo "peers.sh: ggml build failed" >&2; exit 1; }
    fi
    gbin=$gb/ggml_attn_libstill
    ${CC:-cc} -O2 -I"$ggml/include" "$here/ggml_attn.c" -L"$gb/src" -Wl,-rpath,"$gb/src" \
        -lggml -lggml-base -lggml-cpu -lm -o "$gbin" ||
        { echo "peers.sh: compiling bench/ggml_attn.c failed" >&2; exit 1; }
fi
tmax=$(echo "$ns" | tr ',' '\n' | sort -n | tail -1)
[ -z "${PEERS_RAW:-}" ] || trap 'cp "$out" "$PEERS_RAW"; rm -f "$out"' EXIT
if [ -n "$decode" ]; then
    [ "$ns" != 4096,16384 ] || ns=1024,4096,16384
    tmax=$(echo "$ns" | tr ',' '\n' | sort -n | tail -1)
    for t in $(echo "$threads" | tr ',' ' '); do
        echo "threads $t" >>"$out"
        nice "$tool" bench --decode --n "$ns" --threads "$t" --steps "$steps" --full-max "$tmax" \
            --no-progress >>"$out"
        [ -z "$py" ] || nice "$py" "$here/peers.py" --decode --n "$ns" --threads "$t" \
            --steps "$steps" >>"$out"
        if [ -n "$gbin" ]; then
            for n in $(echo "$ns" | tr ',' ' '); do
                nice "$gbin" --decode "$n" 8 128 "$t" "$steps" >>"$out" ||
                    { echo "peers.sh: ggml_attn --decode failed at N = $n" >&2; exit 1; }
            done
        fi
    done
    # still bench --decode's first table: "N | capped wall cpu MiB | uncapped wall cpu MiB |
    # full wall cpu MiB | ratio"; the peers' lines give seconds per step
    awk '
    /^threads / { t = $2; sec = 0; next }
    /^STILL decode steps/ || /^sinks/ { sec = 1 }
    !sec && $2 == "|" && $6 == "|" && $1 + 0 > 0 {
        cap[t, $1] = $3; unc[t, $1] = $7; if ($12 != "-") own[t, $1] = $12; key[t, $1] = 1; next }
    $1 == "peer-decode" { split($3, a, "="); split($5, b, "="); tp[t, a[2]] = 1e6 * b[2]; pname = $2; next }
    $1 == "ggml-decode" { gg[t, $2] = 1e6 * $4; gerr = gerr < $6 + 0 ? $6 + 0 : gerr; have_gg = 1; next }
    END {
        printf "%7s %3s  %11s %11s  %11s %11s %11s  %-14s %9s %9s\n", "N", "T", "STILL cap", "uncapped",
               "libstill", (pname == "" ? "torch: -" : "torch"), (have_gg ? "ggml" : "ggml: -"),
               "best full", "cap/best", "unc/best"
        for (k in key) {
            split(k, p, SUBSEP)
            best = ""; bn = ""
            if (k in own) { best = own[k]; bn = "libstill" }
            if ((k in tp) && (best == "" || tp[k] < best)) { best = tp[k]; bn = "torch" }
            if ((k in gg) && (best == "" || gg[k] < best)) { best = gg[k]; bn = "ggml" }
            line = sprintf("%7d %3d  %11.1f %11.1f  %11s %11s %11s  %-14s", p[2], p[1], cap[k], unc[k],
                           (k in own) ? sprintf("%.1f", own[k]) : "-",
                           (k in tp) ? sprintf("%.1f", tp[k]) : "-",
                           (k in gg) ? sprintf("%.1f", gg[k]) : "-", bn)
            if (best != "")
                line = line sprintf(" %9.4f %9.4f", cap[k] / best, unc[k] / best)
            print line | "sort -k2,2n -k1,1n"
        }
        close("sort -k2,2n -k1,1n")
        print "us per one-token step (wall, median); full softmax decode over a KV cache of N"
        print "tokens: libstill (its own kernels), torch, ggml; best full = the fastest of them;"
        print "cap/best < 1: STILL capped at 1024 selected tokens is faster than the best peer."
        if (have_gg) printf "ggml: largest |o - o_double| of the decode rows it checked: %.3g\n", gerr
    }' "$out"
    exit 0
fi
for t in $(echo "$threads" | tr ',' ' '); do
    echo "threads $t" >>"$out"
    nice "$tool" bench --n "$ns" --threads "$t" --reps "$reps" --ref-max 0 \
        --teacher-max "$tmax" --no-progress >>"$out"
    [ -z "$py" ] || nice "$py" "$here/peers.py" --n "$ns" --threads "$t" --reps "$reps" >>"$out"
    if [ -n "$gbin" ]; then
        for n in $(echo "$ns" | tr ',' ' '); do
            nice "$gbin" "$n" 8 128 "$t" "$reps" >>"$out" ||
                { echo "peers.sh: ggml_attn failed at N = $n" >&2; exit 1; }
        done
    fi
done
# still bench rows: "N method seconds tokens/s GFLOP/s %peak"
awk '
/^threads / { t = $2; next }
/^multiply-add peak/ { for (i = 1; i <= NF; i++) if ($i == "GFLOP/s") peak[t] = $(i - 1); next }
$2 == "STILL" && $3 + 0 > 0 { still[t, $1] = $3; next }
$2 == "teacher" { teach[t, $1] = $3; gf[t, $1] = $5; key[t, $1] = 1; next }
$1 == "peer" { split($3, a, "="); split($5, b, "="); peer[t, a[2]] = b[2]; pname = $2; next }
$1 == "ggml" { gg[t, $2] = $4; gerr = gerr < $6 + 0 ? $6 + 0 : gerr; have_gg = 1; next }
END {
    hdr = sprintf("%7s %3s %8s  %18s  %18s  %18s  %9s %9s", "N", "T", "peak", "teacher s (%peak)",
                  "STILL s (%peak*)", (pname == "" ? "peer: none" : pname " s (%peak)"),
                  "peer/tchr", "peer/STILL")
    if (have_gg) hdr = hdr sprintf("  %18s  %9s", "ggml s (%peak)", "ggml/tchr")
    print hdr
    for (k in key) {
        split(k, p, SUBSEP); tt = p[1]; n = p[2]
        fl = gf[k] * teach[k] # GFLOP of full causal attention
        pk = peak[tt]
        line = sprintf("%7d %3d %8.1f  %9.4f (%5.1f%%)  %9.4f (%5.1f%%)", n, tt, pk, teach[k],
                       100 * gf[k] / pk, still[k], 100 * fl / still[k] / pk)
        if (k in peer)
            line = line sprintf("  %9.4f (%5.1f%%)  %9.3f %9.3f", peer[k], 100 * fl / peer[k] / pk,
                                peer[k] / teach[k], peer[k] / still[k])
        else if (have_gg)
            line = line sprintf("  %18s  %9s %9s", "-", "-", "-")
        if (k in gg)
            line = line sprintf("  %9.4f (%5.1f%%)  %9.3f", gg[k], 100 * fl / gg[k] / pk,
                                gg[k] / teach[k])
        print line | "sort -k2,2n -k1,1n"
    }
    close("sort -k2,2n -k1,1n")
    print "%peak*: STILL time against the FLOPs of full causal attention (its speed as a"
    print "replacement); GFLOP/s of its own work: still bench. peer/x > 1: x is faster."
    if (have_gg) printf "ggml: largest |o - o_double| over the rows it checked: %.3g\n", gerr
}' "$out"
