/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* fast_liger.c -- SPEC §16 on the fast path (float32): mixer liger,
 * o_t = α·SWA_t + β·GLA_t.
 *
 * SWA_t is routing `window` with rest = drop and eps_den 0 (the identity
 * of §16), so the fast driver's window engine computes it into o, threads
 * and SIMD included.  GLA then runs per (batch, kv head) unit, threaded
 * over the units: the recurrence S_t = diag(e^{g_t}) S_{t-1} +
 * φ(k_lin,t) v_t^T, one pass over the tokens (O(N d dv)), and each query
 * head of the group reads S_t^T φ(q_lin,t); the loops over dv are
 * contiguous and vectorised by the compiler.  Every unit is computed in
 * one order whatever the thread count (SPEC I7). */
#include "fast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* φ(x) = softmax(x) over d entries, no scale (SPEC §16); 0 when a sum
 * overflowed float (it cannot for finite x: the max is subtracted). */
void still__fast_liger_map(int64_t d, const float *x, float *phi)
{
    float m = x[0], sum = 0.0f;
    for (int64_t i = 1; i < d; i++)
        m = x[i] > m ? x[i] : m;
    for (int64_t i = 0; i < d; i++)
        sum += phi[i] = expf(x[i] - m);
    const float inv = 1.0f / sum;
    for (int64_t i = 0; i < d; i++)
        phi[i] *= inv;
}

/* e^{g} with g = logsigmoid(x)/16 = -log1p(e^{-x})/16 (x >= 0) or
 * (x - log1p(e^{x}))/16, in double (one value per channel and token). */
static float decay_of(float x)
{
    const double xd = x;
    const double ls = xd >= 0.0 ? -log1p(exp(-xd)) : xd - log1p(exp(xd));
    return (float)exp(ls / 16.0);
}

void still__fast_liger_update(int64_t d, int64_t dv, const float *k_lin_t, const float *v_t,
                              float *phi, float *S)
{
    still__fast_liger_map(d, k_lin_t, phi);
    for (int64_t c = 0; c < d; c++) { /* the decay of step t, then key t */
        const float keep = decay_of(k_lin_t[c]), pk = phi[c];
        float *row = S + c * dv;
#pragma omp simd
        for (int64_t e = 0; e < dv; e++)
            row[e] = keep * row[e] + pk * v_t[e];
    }
}

void still__fast_liger_read(int64_t d, int64_t dv, const float *S, const float *q_lin_t,
                            float *phi, float *gla)
{
    still__fast_liger_map(d, q_lin_t, phi);
    memset(gla, 0, (size_t)dv * sizeof *gla);
    for (int64_t c = 0; c < d; c++) {
        const float pq = phi[c], *row = S + c * dv;
#pragma omp simd
        for (int64_t e = 0; e < dv; e++)
            gla[e] += pq * row[e];
    }
}

/* Element (b, h, n, 0) of a [B,H,N,D] array in the layout. */
static int64_t at(const still__strides *s, int64_t b, int64_t h, int64_t n)
{
    return b * s->b + h * s->h + n * s->n;
}

/* The GLA branch of unit (b, hk), combined into o (holding SWA). */
static void gla_unit(const still__resolved *r, const still_tensors *t, int64_t b, int64_t hk,
                     float *S, float *phi, float *gla)
{
    const still_shape *s = &r->shape;
    const int64_t N = s->seq_len, d = s->dim_qk, dv = s->dim_v;
    const still__strides sq = still__strides_of(s->layout, s->heads_q, N, d);
    const still__strides sk = still__strides_of(s->layout, s->heads_kv, N, d);
    const still__strides sv = still__strides_of(s->layout, s->heads_kv, N, dv);
    const still__strides so = still__strides_of(s->layout, s->heads_q, N, dv);
    const float *kl = t->k_lin ? t->k_lin : t->k, *ql = t->q_lin ? t->q_lin : t->q;
    const float *v = t->v;
    float *o = t->o;
    const float alpha = (float)r->alpha, beta = (float)r->beta;

    memset(S, 0, (size_t)(d * dv) * sizeof *S); /* S_{-1} = 0 */
    for (int64_t n = 0; n < N; n++) {
        still__fast_liger_update(d, dv, kl + at(&sk, b, hk, n), v + at(&sv, b, hk, n), phi, S);
        for (int64_t hq = hk * r->group; hq < (hk + 1) * r->group; hq++) {
            still__fast_liger_read(d, dv, S, ql + at(&sq, b, hq, n), phi, gla);
            float *o_n = o + at(&so, b, hq, n);
#pragma omp simd
            for (int64_t e = 0; e < dv; e++)
                o_n[e] = alpha * o_n[e] + beta * gla[e];
        }
    }
}

/* SPEC §16: the window branch by the window engine into t->o. */
static int window_branch(const still_config *cfg, const still_shape *shape,
                         const still_tensors *t)
{
    still_config win = *cfg;
    still_tensors only = *t;
    win.mixer = STILL_MIXER_STILL;
    win.routing = STILL_ROUTING_WINDOW;
    win.rest = STILL_REST_DROP;
    win.eps_den = 0.0;
    win.phantom_sink = 0;
    win.window = cfg->window ? cfg->window : (cfg->chunk >= 2 ? cfg->chunk : 2); /* r->w */
    only.gate = NULL; /* liger has no gate (SPEC §16): ignored, as by the ref */
    only.sigma = NULL;
    only.selected = NULL;
    only.q_lin = only.k_lin = NULL;
    return still_forward(&win, shape, NULL, &only);
}

int still__fast_forward_liger(const still_config *cfg, const still_shape *shape,
                              const still_tensors *t)
{
    still__resolved r;
    int rc;

    if (!t)
        return STILL_E_NULL;
    if ((rc = still__resolve(cfg, shape, NULL, &r)) || (rc = still__check_tensors(&r, NULL, t, 0)))
        return rc;
    if (cfg->query_begin != 0 || cfg->query_end != 0 || t->selection_in)
        return STILL_E_UNSUPPORTED;
    if ((rc = still__liger_inputs_ok(&r, t)))
        return rc;
    if ((rc = window_branch(cfg, shape, t)))
        return rc;
    const int64_t units = r.shape.batch * r.shape.heads_kv, d = r.shape.dim_qk;
    const int64_t dv = r.shape.dim_v;
    const int threads = still__fast_threads(cfg->threads, units);
    int err = STILL_OK;

#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *S = malloc((size_t)(d * dv + d + dv) * sizeof(float)); /* d, dv <= 2^20 */
        if (!S) {
#pragma omp atomic write
            err = STILL_E_NOMEM;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t iu = 0; iu < units; iu++)
            if (S)
                gla_unit(&r, t, iu / r.shape.heads_kv, iu % r.shape.heads_kv, S, S + d * dv,
                         S + d * dv + d);
        free(S);
    }
    if (err)
        return err;
    /* SPEC §10: an output float cannot hold is an error */
    return still__all_finite(STILL_F32, t->o,
                             r.shape.batch * r.shape.heads_q * r.shape.seq_len * dv)
               ? STILL_OK
               : STILL_E_NONFINITE;
}
