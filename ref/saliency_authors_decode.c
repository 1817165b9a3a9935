/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* saliency_authors_decode.c -- SPEC App. A.3: the score the authors' decode
 * gives a token: the smoothed divergence of App. A.1 over the |W_t| keys of
 * its window, with logits q_t^T k_j (no scale) and the overwrite on the
 * token's own slot. */
#include "ref.h"

#include <math.h>

#define SALIENCY_EPS 1e-8 /* App. A.1 and A.3 */

static double raw_logit(const double *q, const double *k, int64_t d)
{
    double s = 0.0;
    for (int64_t e = 0; e < d; e++)
        s += q[e] * k[e];
    return s;
}

double still__ref_saliency_authors_decode(const still__resolved *r, const double *q_t,
                                          const double *keys, int64_t n)
{
    const int64_t d = r->shape.dim_qk, l = r->C, self = n - 1;
    const double eps = SALIENCY_EPS;
    double m1 = -INFINITY, m2 = -INFINITY, z1 = 0.0, z2 = 0.0, sigma = 0.0;

    for (int64_t j = 0; j < n; j++) {
        double u = raw_logit(q_t, keys + j * d, d);
        m1 = fmax(m1, u);
        if (j != self)
            m2 = fmax(m2, u);
    }
    for (int64_t j = 0; j < n; j++) {
        double u = raw_logit(q_t, keys + j * d, d);
        z1 += exp(u - m1);
        if (j != self)
            z2 += exp(u - m2);
    }
    for (int64_t j = 0; j < n; j++) {
        double u = raw_logit(q_t, keys + j * d, d);
        double p = (exp(u - m1) / z1 + eps) / (1.0 + (double)l * eps);
        double p_without = j == self ? 1.0 / (double)l + eps /* the overwrite */
                                     : (exp(u - m2) / z2 + eps) /
                                           (1.0 + (double)l * eps + 1.0 / (double)l);
        sigma += p * log(p / (p_without + eps));
    }
    return sigma;
}
