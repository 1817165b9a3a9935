/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* nsa.c -- SPEC §17: the output of one query of routing nsa, the gated
 * sum of its compressed, selected and sliding branches. */
#include "ref.h"

#include <math.h>

/* The selected branch: softmax attention of q_t over the positions j <= t
 * of the n selected blocks, o_slc [dv]. */
static void selected_branch(const still__resolved *r, int64_t t, const double *q_t,
                            const double *k, const double *v, const int64_t *blocks,
                            int64_t n, double *o_slc)
{
    const int64_t BS = r->nsa_block, d = r->shape.dim_qk, dv = r->shape.dim_v;
    double m = -INFINITY, den = 0.0;

    for (int64_t i = 0; i < n; i++)
        for (int64_t j = blocks[i] * BS; j < (blocks[i] + 1) * BS && j <= t; j++)
            m = fmax(m, still__ref_logit(r, q_t, k + j * d));
    for (int64_t e = 0; e < dv; e++)
        o_slc[e] = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = blocks[i] * BS; j < (blocks[i] + 1) * BS && j <= t; j++) {
            const double p = exp(still__ref_logit(r, q_t, k + j * d) - m);
            den += p;
            for (int64_t e = 0; e < dv; e++)
                o_slc[e] += p * v[j * dv + e];
        }
    for (int64_t e = 0; e < dv; e++)
        o_slc[e] /= den; /* the block of t is always selected: den >= 1 */
}

void still__ref_nsa_row(const still__resolved *r, int64_t t, const double *q_t,
                        const double *k, const double *v, const double *o_cmp,
                        const int64_t *blocks, int64_t n, const double *gates_t,
                        double *scratch, double *o_t)
{
    const int64_t dv = r->shape.dim_v;
    const int64_t first = t - r->w + 1 > 0 ? t - r->w + 1 : 0;
    double *o_slc = scratch, *o_swa = scratch + dv;
    const double g_cmp = gates_t ? gates_t[0] : 1.0, g_slc = gates_t ? gates_t[1] : 1.0,
                 g_swa = gates_t ? gates_t[2] : 1.0;

    selected_branch(r, t, q_t, k, v, blocks, n, o_slc);
    still__ref_softmax_range(r, first, t, q_t, k, v, o_swa); /* the last w positions */
    for (int64_t e = 0; e < dv; e++)
        o_t[e] = g_cmp * o_cmp[e] + g_slc * o_slc[e] + g_swa * o_swa[e];
}
