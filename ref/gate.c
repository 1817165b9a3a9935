/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* gate.c -- SPEC §6: the logistic function, LoLCATs' window factor ω and
 * the gating projection G = sigmoid(X W_g^T). */
#include "ref.h"

#include <math.h>

/* 1/(1+e^{-x}), written so that no exponential overflows. */
double still__ref_sigmoid(double x)
{
    if (x >= 0.0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* SPEC §6: ω = sigmoid(w_h) when the window factors are given, else 1. */
double still__ref_omega(const still_params *params, int64_t head)
{
    if (!params || !params->window_w)
        return 1.0;
    return still__ref_sigmoid(params->window_w[head]);
}

/* SPEC §6: G[b][h][n][e] = sigmoid(sum_i X[b][n][i] Wg[h·dv + e][i]). */
void still__ref_gate_projection(int64_t batch, int64_t seq_len, int64_t hidden,
                                int64_t heads_q, int64_t dim_v, const double *X,
                                const double *Wg, double *G)
{
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < heads_q; h++)
            for (int64_t n = 0; n < seq_len; n++)
                for (int64_t e = 0; e < dim_v; e++) {
                    const double *x = X + (b * seq_len + n) * hidden;
                    const double *w = Wg + (h * dim_v + e) * hidden;
                    double acc = 0.0;
                    for (int64_t i = 0; i < hidden; i++)
                        acc += x[i] * w[i];
                    G[((b * heads_q + h) * seq_len + n) * dim_v + e] = still__ref_sigmoid(acc);
                }
}
