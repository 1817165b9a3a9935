/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* nsa_compress.c -- SPEC §17: the compressed keys and values of routing
 * nsa (the mean of each complete block) and its compressed branch, the
 * softmax of a query over the blocks complete by then. */
#include "ref.h"

#include <math.h>

int64_t still__ref_nsa_visible(const still__resolved *r, int64_t t)
{
    /* block c is visible iff (c+1) BS - 1 <= t, i.e. c < (t+1) / BS */
    return (t + 1) / r->nsa_block;
}

/* The mean of the BS rows of x [..][width] from row first on. */
static void block_mean(int64_t BS, int64_t width, const double *x, int64_t first,
                       double *mean)
{
    for (int64_t i = 0; i < width; i++)
        mean[i] = 0.0;
    for (int64_t j = first; j < first + BS; j++)
        for (int64_t i = 0; i < width; i++)
            mean[i] += x[j * width + i];
    for (int64_t i = 0; i < width; i++)
        mean[i] /= (double)BS;
}

void still__ref_nsa_compress(const still__resolved *r, int64_t N, const double *k,
                             const double *v, double *k_cmp, double *v_cmp)
{
    const int64_t BS = r->nsa_block, d = r->shape.dim_qk, dv = r->shape.dim_v;
    for (int64_t c = 0; c < N / BS; c++) {
        block_mean(BS, d, k, c * BS, k_cmp + c * d);
        block_mean(BS, dv, v, c * BS, v_cmp + c * dv);
    }
}

void still__ref_nsa_compressed(const still__resolved *r, int64_t t, const double *q_t,
                               const double *k_cmp, const double *v_cmp, double *weight,
                               double *o_cmp)
{
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v;
    const int64_t visible = still__ref_nsa_visible(r, t);
    double m = -INFINITY, den = 0.0;

    for (int64_t e = 0; e < dv; e++)
        o_cmp[e] = 0.0;
    if (visible == 0)
        return; /* no visible block: o_cmp = 0 */
    for (int64_t c = 0; c < visible; c++) {
        weight[c] = still__ref_logit(r, q_t, k_cmp + c * d);
        m = fmax(m, weight[c]);
    }
    for (int64_t c = 0; c < visible; c++)
        den += weight[c] = exp(weight[c] - m);
    for (int64_t c = 0; c < visible; c++) {
        weight[c] /= den;
        for (int64_t e = 0; e < dv; e++)
            o_cmp[e] += weight[c] * v_cmp[c * dv + e];
    }
}
