/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * golden.h -- what `still golden` (cmd_golden.c) shares with its real
 * suite (golden_real.c): the type of a case, and the inputs only the real
 * suite has (rounding through bfloat16 / float16, tiny-lm's activations,
 * layout BNHD, decode split points).
 */
#ifndef STILL_GOLDEN_H
#define STILL_GOLDEN_H

#include "tool.h"

#include <stdint.h>

/* Parameter files of the cases (SPEC §11). */
enum {
    P_NONE,     /* no file: the identity NP-Map */
    P_FULL,     /* fq.W, fq.b, fq.u and a separate fk.W, fk.b, fk.u */
    P_AUTHORS,  /* fq.W, fq.u, fk.W, fk.u: the authors' maps (no bias) */
    P_BIAS,     /* fq.W and fq.b, fk tied */
    P_WINDOW    /* window.w only: omega = sigmoid(w) per head */
};

typedef struct golden_case {
    const char *name;
    const char *what;
    int64_t B, Hq, Hk, N, d, dv;
    const char *flags; /* still run's configuration options */
    int params;
    int64_t f;         /* rows of W when the file has W */
} golden_case;

/* ---- the real suite (golden_real.c) ----------------------------------------- */

/* How the drawn inputs are rounded before they are stored as <f4. */
enum { GOLDEN_ROUND_F32 = 0, GOLDEN_ROUND_BF16 = 1, GOLDEN_ROUND_F16 = 2 };

/* What a case of the real suite has beyond a small one's. */
typedef struct golden_real {
    int round;          /* GOLDEN_ROUND_*: q, k, v, gate and dO rounded through it */
    int layer;          /* 2 or 5: q, k, v are tiny-lm's activations of that layer */
    int layout;         /* STILL_LAYOUT_* of the array files */
    const char *stream; /* the name whose stream draws the inputs (a layout twin
                           shares its twin's), NULL: the case's own */
} golden_real;

typedef struct golden_real_case {
    golden_case c;
    golden_real x;
} golden_real_case;

/* The real suite's cases with every N capped at max_n (0: no cap); *n
 * gets their number. */
const golden_real_case *golden_real_cases(int64_t max_n, int *n);
/* Rounds x[n] through bfloat16 or float16, to nearest even (float16:
 * subnormals below 2^-14, overflow to infinity past 65504). */
void golden_round(float *x, int64_t n, int round);
/* tiny-lm's activations of `layer`: which = 0, 1, 2 for q, k, v, its first
 * N tokens into x [1,H,N,D] (BHND).  TOOL_EXIT_OK or the exit status after
 * the message. */
int golden_tinylm_load(const char *cmd, int layer, int which, int64_t H, int64_t N, int64_t D,
                       float *x);
/* x [B,H,N,D] into y [B,N,H,D]. */
void golden_to_bnhd(const float *x, int64_t B, int64_t H, int64_t N, int64_t D, float *y);
/* The decode split points of N tokens in chunks of C (prefill n, decode
 * the rest): a chunk boundary near N/2, a point inside the next chunk,
 * and N - 1; at most 3 into sp, returns their number. */
int golden_split_points(int64_t N, int64_t C, int64_t *sp);

#endif /* STILL_GOLDEN_H */
