/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * cmd_bench_decode.c -- `still bench --decode`: the decode benchmark of
 * the streaming state (SPEC §7).  Its one copy of the code is
 * bench/bench_decode.c (also built alone as bench/bench_decode), compiled
 * here without its main() and with the tool's progress line; cmd_bench.c
 * hands `--decode` runs to still_bench_decode().
 */
#define _POSIX_C_SOURCE 200809L
#include "tool.h"

#define STILL_BENCH_DECODE_NO_MAIN
#define BENCH_NAME "still bench --decode"
#define BENCH_PROGRESS(done, total, ...) tool_progress((done), (total), __VA_ARGS__)
#define BENCH_PROGRESS_OPTION(arg) tool_progress_option(arg)
#define BENCH_PROGRESS_CLEAR() tool_progress_clear()
#include "../bench/bench_decode.c"
