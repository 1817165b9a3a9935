/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* teacher.c -- SPEC §1: full causal softmax attention, the teacher. */
#include "ref.h"

#include <math.h>

/* SPEC §1: o_t = SM_t({first..t}) = sum_j e^{s(t,j)} v_j / sum_j e^{s(t,j)},
 * with the maximum logit subtracted so that no exponential overflows. */
void still__ref_softmax_range(const still__resolved *r, int64_t first, int64_t t,
                              const double *q_t, const double *k, const double *v, double *o_t)
{
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v;
    double m = -INFINITY, den = 0.0;

    for (int64_t j = first; j <= t; j++)
        m = fmax(m, still__ref_logit(r, q_t, k + j * d));
    for (int64_t e = 0; e < dv; e++)
        o_t[e] = 0.0;
    for (int64_t j = first; j <= t; j++) {
        double p = exp(still__ref_logit(r, q_t, k + j * d) - m);
        den += p;
        for (int64_t e = 0; e < dv; e++)
            o_t[e] += p * v[j * dv + e];
    }
    for (int64_t e = 0; e < dv; e++)
        o_t[e] /= den;
}

/* The teacher: J = {0..t}. */
void still__ref_teacher_row(const still__resolved *r, int64_t t, const double *q_t,
                            const double *k, const double *v, double *o_t)
{
    still__ref_softmax_range(r, 0, t, q_t, k, v, o_t);
}
