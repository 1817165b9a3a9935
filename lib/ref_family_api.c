/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* ref_family_api.c -- still_ref_forward for the hybrid family of SPEC
 * §15-16: routing lte (learned token eviction) and mixer liger.  Checks
 * their inputs before any work, gathers each head into double arrays,
 * calls ref/lte_*.c and ref/liger.c, and scatters the results. */
#include "internal.h"
#include "../ref/ref.h"

#include <stdlib.h>
#include <string.h>

/* The arrays of one (batch, kv head) group. */
typedef struct family_work {
    double *q, *k, *v, *gate, *o; /* [N][d] or [N][dv] */
    double *q_lin, *k_lin;        /* [N][d] (liger) */
    double *x, *net, *score;      /* lte: X [N][c0], 2 [N][width], r [N] */
    double *phi_q, *phi_k;        /* [m], [N][m] (lte, rest = linear) */
    double *scratch;              /* liger row: 3d + dv */
    int64_t *evicted_at;          /* [N] */
    uint8_t *exact, *retained;    /* [N] */
} family_work;

static void work_free(family_work *w)
{
    free(w->q); free(w->k); free(w->v); free(w->gate); free(w->o);
    free(w->q_lin); free(w->k_lin); free(w->x); free(w->net); free(w->score);
    free(w->phi_q); free(w->phi_k); free(w->scratch); free(w->evicted_at);
    free(w->exact); free(w->retained);
    memset(w, 0, sizeof *w);
}

static int work_alloc(const still__resolved *r, const still_lte_params *lte, family_work *w)
{
    const int64_t N = r->shape.seq_len, d = r->shape.dim_qk, dv = r->shape.dim_v;
    int rc = STILL_OK;
    memset(w, 0, sizeof *w);
    w->q = still__array_new(N, d, sizeof(double), 0, &rc);
    w->k = still__array_new(N, d, sizeof(double), 0, &rc);
    w->v = still__array_new(N, dv, sizeof(double), 0, &rc);
    w->gate = still__array_new(N, dv, sizeof(double), 0, &rc);
    w->o = still__array_new(N, dv, sizeof(double), 0, &rc);
    w->exact = still__array_new(N, 1, 1, 0, &rc);
    if (r->mixer == STILL_MIXER_LIGER) {
        w->q_lin = still__array_new(N, d, sizeof(double), 0, &rc);
        w->k_lin = still__array_new(N, d, sizeof(double), 0, &rc);
        w->scratch = still__array_new(still__sat_add(still__sat_mul(3, d), dv), 1,
                                      sizeof(double), 0, &rc);
    } else {
        w->x = still__array_new(N, lte->channels[0], sizeof(double), 0, &rc);
        w->net = still__array_new(still__sat_mul(2, N), still__ref_lte_width(lte),
                                  sizeof(double), 0, &rc);
        w->score = still__array_new(N, 1, sizeof(double), 0, &rc);
        w->phi_q = still__array_new(r->m, 1, sizeof(double), 0, &rc);
        w->phi_k = still__array_new(N, r->m, sizeof(double), 0, &rc);
        w->evicted_at = still__array_new(N, 1, sizeof(int64_t), 0, &rc);
        w->retained = still__array_new(N, 1, 1, 0, &rc);
    }
    if (rc)
        work_free(w);
    return rc;
}

/* 1 when the n doubles of p are there and finite. */
static int doubles_ok(const double *p, int64_t n)
{
    return p && still__all_finite(STILL_F64, p, n);
}

/* SPEC §15: the network's layers and channels in range, every array
 * present and finite, the input width c0 = d + dv without an input X, and
 * the right margin m = sum of the dilations below the window (m < w). */
static int lte_params_ok(const still__resolved *r, const still_lte_params *p,
                         const int64_t *dilation, int with_input)
{
    const int64_t Hk = r->shape.heads_kv;
    size_t n;
    if (!p || p->layers < 1 || p->layers > STILL_LTE_LAYERS_MAX)
        return STILL_E_PARAMS;
    for (int64_t l = 0; l <= p->layers; l++)
        if (p->channels[l] < 1 || p->channels[l] > (int64_t)1 << 20)
            return STILL_E_PARAMS;
    if (!with_input && p->channels[0] != r->shape.dim_qk + r->shape.dim_v)
        return STILL_E_PARAMS;
    for (int64_t l = 0; l < p->layers; l++) {
        if (still__mul3_size((size_t)Hk, (size_t)p->channels[l + 1],
                             (size_t)p->channels[l] * 3, &n) || n > (size_t)INT64_MAX / 8)
            return STILL_E_OVERFLOW;
        if (!p->conv_W[l] || !p->conv_b[l])
            return STILL_E_PARAMS;
        if (!doubles_ok(p->conv_W[l], (int64_t)n) ||
            !doubles_ok(p->conv_b[l], Hk * p->channels[l + 1]))
            return STILL_E_NONFINITE;
    }
    if (!p->proj_W || !p->proj_b)
        return STILL_E_PARAMS;
    if (!doubles_ok(p->proj_W, Hk * p->channels[p->layers]) || !doubles_ok(p->proj_b, Hk))
        return STILL_E_NONFINITE;
    if (still__ref_lte_margin(p, dilation) >= r->w)
        return STILL_E_CONFIG;
    return STILL_OK;
}

int still__liger_inputs_ok(const still__resolved *r, const still_tensors *t)
{
    const still_shape *s = &r->shape;
    const int64_t nq = s->batch * s->heads_q * s->seq_len, nk = s->batch * s->heads_kv * s->seq_len;
    return (t->q_lin && !still__all_finite(t->dtype, t->q_lin, nq * s->dim_qk)) ||
                   (t->k_lin && !still__all_finite(t->dtype, t->k_lin, nk * s->dim_qk))
               ? STILL_E_NONFINITE
               : STILL_OK;
}

/* The inputs of the family beyond still__check_tensors's: lte's X, liger's
 * q_lin, k_lin (finite); a forced selection has no meaning here. */
static int family_tensors_ok(const still__resolved *r, const still_lte_params *lte,
                             const still_tensors *t)
{
    const still_shape *s = &r->shape;
    const int64_t nk = s->batch * s->heads_kv * s->seq_len;
    if (t->selection_in)
        return STILL_E_UNSUPPORTED;
    if (r->mixer == STILL_MIXER_LIGER)
        return still__liger_inputs_ok(r, t);
    if (t->lte_input) {
        size_t n;
        if (still__mul3_size((size_t)nk, (size_t)lte->channels[0], sizeof(double), &n))
            return STILL_E_OVERFLOW;
        if (!still__all_finite(t->dtype, t->lte_input, nk * lte->channels[0]))
            return STILL_E_NONFINITE;
    }
    return STILL_OK;
}

/* Reports progress; 1 when the callback asks to stop. */
static int progress_stop(const still_config *cfg, int64_t done, int64_t total)
{
    return cfg && cfg->progress && cfg->progress(cfg->progress_user, done, total) != 0;
}

/* SPEC §15 network input of kv head hk: the caller's X, or [k_j ‖ v_j]. */
static void lte_input_of(const still__resolved *r, const still_lte_params *lte,
                         const still_tensors *t, int64_t b, int64_t hk, family_work *w)
{
    const still_shape *s = &r->shape;
    const int64_t N = s->seq_len, d = s->dim_qk, dv = s->dim_v, c0 = lte->channels[0];
    if (t->lte_input) {
        still__gather_head(t->dtype, t->lte_input, s->layout, s->heads_kv, N, c0, b, hk, w->x);
        return;
    }
    for (int64_t j = 0; j < N; j++) {
        memcpy(w->x + j * c0, w->k + j * d, (size_t)d * sizeof(double));
        memcpy(w->x + j * c0 + d, w->v + j * dv, (size_t)dv * sizeof(double));
    }
}

/* SPEC §15: scores, cache and the hybrid output of queries q0..q1-1 of
 * query head hq (the exact sets shared by the kv group). */
static void lte_head(const still__resolved *r, const still_params *params,
                     const still_tensors *t, int64_t b, int64_t hq, int64_t q0, int64_t q1,
                     family_work *w)
{
    const still_shape *s = &r->shape;
    const int64_t N = s->seq_len, d = s->dim_qk, dv = s->dim_v;
    int64_t f_q;
    const still_feature_map *fq = still__ref_map_of(r, params, STILL_MAP_Q, &f_q);
    const double omega = still__ref_omega(params, hq);

    still__gather_head(t->dtype, t->q, s->layout, s->heads_q, N, d, b, hq, w->q);
    if (t->gate)
        still__gather_head(t->dtype, t->gate, s->layout, s->heads_q, N, dv, b, hq, w->gate);
    if (r->rest == STILL_REST_LINEAR)
        still__ref_feature_rows(r, params, STILL_MAP_K, hq, N, w->k, w->phi_k);
    for (int64_t n = q0; n < q1; n++) {
        if (r->rest == STILL_REST_LINEAR)
            still__ref_feature_map(r, fq, f_q, hq, w->q + n * d, w->phi_q);
        still__ref_lte_exact(w->evicted_at, n, w->exact);
        still__ref_hybrid(r, n, w->q + n * d, w->k, w->v, w->phi_q, w->phi_k,
                          t->gate ? w->gate + n * dv : NULL, omega, w->exact, w->o + n * dv);
    }
}

/* SPEC §16: the outputs of queries q0..q1-1 of query head hq. */
static void liger_head(const still__resolved *r, const still_tensors *t, int64_t b, int64_t hq,
                       int64_t q0, int64_t q1, family_work *w)
{
    const still_shape *s = &r->shape;
    const int64_t N = s->seq_len, d = s->dim_qk, dv = s->dim_v;
    still__gather_head(t->dtype, t->q, s->layout, s->heads_q, N, d, b, hq, w->q);
    still__gather_head(t->dtype, t->q_lin ? t->q_lin : t->q, s->layout, s->heads_q, N, d, b, hq,
                       w->q_lin);
    for (int64_t n = q0; n < q1; n++)
        still__ref_liger_row(r, n, w->q + n * d, w->k, w->v, w->q_lin + n * d, w->k_lin, 1,
                             w->scratch, w->o + n * dv);
}

/* One (batch, kv head) group; 1 when the progress callback asked to stop. */
static int family_group(const still_config *cfg, const still__resolved *r,
                        const still_params *params, const int64_t *dilation,
                        const still_tensors *t, int64_t b, int64_t hk, int64_t q0, int64_t q1,
                        family_work *w, int64_t *done, int64_t total)
{
    const still_shape *s = &r->shape;
    const int64_t N = s->seq_len, d = s->dim_qk, dv = s->dim_v, row = b * s->heads_kv + hk;

    still__gather_head(t->dtype, t->k, s->layout, s->heads_kv, N, d, b, hk, w->k);
    still__gather_head(t->dtype, t->v, s->layout, s->heads_kv, N, dv, b, hk, w->v);
    if (r->mixer == STILL_MIXER_LIGER) {
        still__gather_head(t->dtype, t->k_lin ? t->k_lin : t->k, s->layout, s->heads_kv, N, d, b,
                           hk, w->k_lin);
    } else {
        lte_input_of(r, params->lte, t, b, hk, w);
        still__ref_lte_score(params->lte, dilation, hk, N, w->x, w->net, w->score);
        still__ref_lte_cache(r, w->score, N, w->evicted_at);
        if (t->sigma) /* SPEC §15: r as [B,Hk,N] */
            memcpy(t->sigma + row * N, w->score, (size_t)N * sizeof(double));
        if (t->selected) {
            still__ref_lte_retained(r, w->evicted_at, N, w->retained);
            memcpy(t->selected + row * N, w->retained, (size_t)N);
        }
    }
    for (int64_t hq = hk * r->group; hq < (hk + 1) * r->group; hq++) {
        if (r->mixer == STILL_MIXER_LIGER)
            liger_head(r, t, b, hq, q0, q1, w);
        else
            lte_head(r, params, t, b, hq, q0, q1, w);
        still__scatter_rows(t->dtype, t->o, s->layout, s->heads_q, N, dv, b, hq, q0, q1, w->o);
        *done += q1 - q0;
        if (progress_stop(cfg, *done, total))
            return 1;
    }
    return 0;
}

int still__ref_forward_family(const still_config *cfg, const still__resolved *r,
                              const still_params *params, const still_tensors *t, int64_t q0,
                              int64_t q1)
{
    const still_shape *s = &r->shape;
    const still_lte_params *lte = params ? params->lte : NULL;
    int64_t dilation[STILL_LTE_LAYERS_MAX], done = 0;
    const int64_t total = s->batch * s->heads_q * (q1 - q0);
    family_work w;
    int rc;

    for (int l = 0; l < STILL_LTE_LAYERS_MAX; l++) /* SPEC §15: default 2 */
        dilation[l] = cfg && cfg->lte_dilation[l] ? cfg->lte_dilation[l] : 2;
    if (!t)
        return STILL_E_NULL;
    if (r->mixer != STILL_MIXER_LIGER && !lte)
        return STILL_E_PARAMS; /* SPEC §15: the lte weights have no defaults */
    if ((rc = still__check_tensors(r, params, t, 1)) ||
        (r->mixer != STILL_MIXER_LIGER &&
         (rc = lte_params_ok(r, lte, dilation, t->lte_input != NULL))) ||
        (rc = family_tensors_ok(r, lte, t)) || (rc = work_alloc(r, lte, &w)))
        return rc;
    if (progress_stop(cfg, 0, total)) {
        work_free(&w);
        return STILL_E_CANCELED;
    }
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t hk = 0; hk < s->heads_kv; hk++)
            if (family_group(cfg, r, params, dilation, t, b, hk, q0, q1, &w, &done, total)) {
                work_free(&w);
                return STILL_E_CANCELED;
            }
    work_free(&w);
    return still__rows_finite(t->dtype, t->o, s->layout, s->batch, s->heads_q, s->seq_len,
                              s->dim_v, q0, q1)
               ? STILL_OK
               : STILL_E_NONFINITE;
}
