/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * grad_fast.h -- the fast twin of ref/grad.c (SPEC §8): one query head's
 * backward (VJP) for any upstream gradient with the O(N^2) products in float32 BLAS.
 */
#ifndef STILL_GRAD_FAST_H
#define STILL_GRAD_FAST_H

#include "../ref/train.h"

/* The contract of still__ref_head_vjp (ref/train.h), same arguments
 * (double arrays of one head), computed by blocks of queries: logits,
 * kernel values and their products with v, and every backward product,
 * are cblas_sgemm calls (outside any OpenMP region); row reductions
 * (maxima, denominators, the loss) and the feature maps are in double.
 * Scratch is O(N (d + dv + m) + 64 N) per head, never O(N^2). */
int still__fast_head_vjp(const still__resolved *r, const still_params *params, int64_t head,
                         const double *q, const double *k, const double *v, const double *gate,
                         const double *sigma, const uint8_t *sel, still__ref_upstream *up,
                         double *o, const still__ref_head_grads *g);

#endif /* STILL_GRAD_FAST_H */
