/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* hybrid.c -- SPEC §6: the gated shared-normalizer output of one query,
 * and App. A.2: the phantom sink. */
#include "ref.h"

#include <math.h>

/* SPEC §3: kappa(t,j) = <phi_q(q_t), phi_k(k_j)>. */
static double kappa(const double *phi_q, const double *phi_k_j, int64_t m)
{
    double s = 0.0;
    for (int64_t i = 0; i < m; i++)
        s += phi_q[i] * phi_k_j[i];
    return s;
}

/* m_t = max_{j in E_t} s(t,j), 0 when E_t is empty (SPEC §6); with the
 * phantom sink (App. A.2) chunk-0 queries also see logit 0. */
static double exact_max(const still__resolved *r, int64_t t, const double *q_t,
                        const double *k, const uint8_t *exact, int *phantom)
{
    double m = -INFINITY;
    for (int64_t j = 0; j <= t; j++)
        if (exact[j])
            m = fmax(m, still__ref_logit(r, q_t, k + j * r->shape.dim_qk));
    *phantom = r->phantom_sink && t < r->C;
    if (*phantom)
        m = fmax(m, 0.0);
    return isinf(m) ? 0.0 : m;
}

/* o_t = [ω Σ_E e^{s-m} v + g ⊙ (φq^T S_Λ)] / [ω Σ_E e^{s-m} + φq^T z_Λ + eps_den]
 * (SPEC §6; λ = 1; the Λ terms are 0 with rest = drop, §15).  App. A.2
 * adds l phantom keys of logit 0 and value 0 to the exact part: l·e^{-m}
 * in its normalizer, l = C. */
void still__ref_hybrid(const still__resolved *r, int64_t t, const double *q_t,
                       const double *k, const double *v, const double *phi_q,
                       const double *phi_k, const double *gate_t, double omega,
                       const uint8_t *exact, double *o_t)
{
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v, m = r->m;
    int phantom;
    double m_t = exact_max(r, t, q_t, k, exact, &phantom);
    double soft_den = phantom ? (double)r->C * exp(-m_t) : 0.0, lin_den = 0.0;

    for (int64_t e = 0; e < dv; e++)
        o_t[e] = 0.0; /* accumulates the numerator, then divided */
    for (int64_t j = 0; j <= t; j++) {
        if (exact[j]) { /* softmax branch: ω e^{s-m} v_j */
            double p = exp(still__ref_logit(r, q_t, k + j * d) - m_t);
            soft_den += p;
            for (int64_t e = 0; e < dv; e++)
                o_t[e] += omega * p * v[j * dv + e];
        } else if (r->rest == STILL_REST_LINEAR) {
            /* linear branch: g ⊙ kappa v_j; φq^T z_Λ = Σ_Λ kappa (SPEC §12:
             * with rest = drop the key is ignored) */
            double kap = kappa(phi_q, phi_k + j * m, m);
            lin_den += kap;
            for (int64_t e = 0; e < dv; e++)
                o_t[e] += (gate_t ? gate_t[e] : 1.0) * kap * v[j * dv + e];
        }
    }
    double den = omega * soft_den + lin_den + r->eps_den;
    for (int64_t e = 0; e < dv; e++) /* SPEC §12: an empty E_t dropped gives 0 */
        o_t[e] = den == 0.0 ? 0.0 : o_t[e] / den;
}
