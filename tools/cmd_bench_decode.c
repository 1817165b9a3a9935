/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * cmd_bench_decode.c -- `still bench --decode`: the decode benchmark of
 * the streaming state (SPEC §7, issue 4).  Its one copy of the code is
 * bench/bench_decode.c (also built alone as bench/bench_decode), compiled
 * here without its main(); cmd_bench.c hands `--decode` runs to
 * still_bench_decode().
 */
#define STILL_BENCH_DECODE_NO_MAIN
#include "../bench/bench_decode.c"
