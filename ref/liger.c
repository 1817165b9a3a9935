/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* liger.c -- SPEC §16: Liger attention, o_t = α·SWA_t + β·GLA_t: softmax
 * over the last w positions plus gated linear attention with softmax
 * feature maps, a per-channel decay from the keys and no normaliser. */
#include "ref.h"

#include <math.h>

/* φ(x) = softmax(x) over the d entries of x (no scale, SPEC §16). */
void still__ref_liger_map(int64_t d, const double *x, double *phi)
{
    double m = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < d; i++)
        m = fmax(m, x[i]);
    for (int64_t i = 0; i < d; i++)
        sum += phi[i] = exp(x[i] - m);
    for (int64_t i = 0; i < d; i++)
        phi[i] /= sum;
}

/* log(sigmoid(x)) without overflow or cancellation. */
double still__ref_logsigmoid(double x)
{
    return x >= 0.0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}

/* GLA_t = S_t^T φ(q_lin,t), S_t = diag(e^{g_t}) S_{t-1} + φ(k_lin,t) v_t^T:
 * written out, key j <= t enters with channel c decayed by
 * exp(g_{j+1,c} + ... + g_{t,c}) (its own step is not decayed, SPEC §16).
 * The sum is taken from j = t down, accumulating the log-decay. */
static void gla_row(const still__resolved *r, int64_t t, const double *q_lin_t,
                    const double *k_lin, const double *v, int decay, double *scratch,
                    double *gla)
{
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v;
    double *phi_q = scratch, *phi_k = scratch + d, *log_decay = scratch + 2 * d;

    still__ref_liger_map(d, q_lin_t, phi_q);
    for (int64_t c = 0; c < d; c++)
        log_decay[c] = 0.0;
    for (int64_t e = 0; e < dv; e++)
        gla[e] = 0.0;
    for (int64_t j = t; j >= 0; j--) {
        const double *k_j = k_lin + j * d;
        double weight = 0.0;
        still__ref_liger_map(d, k_j, phi_k);
        for (int64_t c = 0; c < d; c++)
            weight += phi_q[c] * exp(log_decay[c]) * phi_k[c];
        for (int64_t e = 0; e < dv; e++)
            gla[e] += weight * v[j * dv + e];
        if (decay) /* g_j = logsigmoid(k_lin,j)/16 decays the keys before j */
            for (int64_t c = 0; c < d; c++)
                log_decay[c] += still__ref_logsigmoid(k_j[c]) / 16.0;
    }
}

void still__ref_liger_row(const still__resolved *r, int64_t t, const double *q_t,
                          const double *k, const double *v, const double *q_lin_t,
                          const double *k_lin, int decay, double *scratch, double *o_t)
{
    const int64_t dv = r->shape.dim_v, d = r->shape.dim_qk;
    double *gla = scratch + 3 * d;
    /* SWA_t: softmax over {max(0, t-w+1)..t}, normalised (SPEC §1) */
    const int64_t first = t - r->w + 1 > 0 ? t - r->w + 1 : 0;

    still__ref_softmax_range(r, first, t, q_t, k, v, o_t);
    gla_row(r, t, q_lin_t, k_lin, v, decay, scratch, gla);
    for (int64_t e = 0; e < dv; e++)
        o_t[e] = r->alpha * o_t[e] + r->beta * gla[e];
}

/* SPEC §16, the state form: S_t = diag(e^{g_t}) S_{t-1} + φ(k_lin,t) v_t^T
 * with g_t = logsigmoid(k_lin,t)/16 (decay = 0 forces g = 0). */
void still__ref_liger_update(int64_t d, int64_t dv, const double *k_lin_t, const double *v_t,
                             int decay, double *phi_k, double *S)
{
    still__ref_liger_map(d, k_lin_t, phi_k);
    for (int64_t c = 0; c < d; c++) {
        const double keep = decay ? exp(still__ref_logsigmoid(k_lin_t[c]) / 16.0) : 1.0;
        for (int64_t e = 0; e < dv; e++)
            S[c * dv + e] = keep * S[c * dv + e] + phi_k[c] * v_t[e];
    }
}

/* SPEC §16: GLA_t = S_t^T φ(q_lin,t), no normaliser. */
void still__ref_liger_read(int64_t d, int64_t dv, const double *S, const double *q_lin_t,
                           double *phi_q, double *gla)
{
    still__ref_liger_map(d, q_lin_t, phi_q);
    for (int64_t e = 0; e < dv; e++) {
        double acc = 0.0;
        for (int64_t c = 0; c < d; c++)
            acc += phi_q[c] * S[c * dv + e];
        gla[e] = acc;
    }
}
