/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_state_util.h -- helpers of the streaming-state suites (test_state*.c):
 * feeding a tu_case (testutil.h) through a still_state in blocks. */
#ifndef STILL_TEST_STATE_UTIL_H
#define STILL_TEST_STATE_UTIL_H

#include "testutil.h"

/* Appends tokens t0 .. t0+n-1 of the case to st, in the case's layout and
 * dtype; scatters their outputs into o [B][Hq][N][dv] (BHND double, N the
 * case's length) and sigma [B][Hq][N], either may be NULL (o == NULL calls
 * the append without an output array).  Returns the append's status. */
int ts_append(still_state *st, const tu_case *c, int64_t t0, int64_t n, double *o,
              double *sigma);

/* Creates a state for the case on `path` and appends the whole sequence in
 * blocks of the sizes blocks[0..nb-1] (their sum must be N).  Returns the
 * first failing status, STILL_OK otherwise. */
int ts_decode(const tu_case *c, int path, const int64_t *blocks, int nb, double *o,
              double *sigma);

/* Block schedules of total N: prefill `first` tokens, then blocks of one;
 * or random sizes in [1, max_block].  Return the number of blocks written
 * to blocks[] (room for N entries). */
int ts_schedule_prefill(int64_t N, int64_t first, int64_t *blocks);
int ts_schedule_random(tu_rng *g, int64_t N, int64_t max_block, int64_t *blocks);

#endif
