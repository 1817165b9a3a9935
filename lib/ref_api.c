/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* ref_api.c -- public entry points of the ref path, the oracle (SPEC §1-6,
 * App. A).  They validate everything before any work, gather each head
 * into contiguous double arrays, call the per-formula functions of ref/
 * and scatter the results; the loops over formulas live in ref/. */
#include "internal.h"
#include "../ref/ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The contiguous double arrays of one (batch, kv head) group. */
typedef struct ref_work {
    double *q, *k, *v, *gate, *o; /* [N][d] or [N][dv] */
    double *sigma, *sigma_group;  /* [N]: one query head's, the group's mean */
    double *phi_q, *phi_k;        /* [m], [N][m] */
    uint8_t *sel, *exact;         /* [N] */
} ref_work;

static void work_free(ref_work *w)
{
    free(w->q); free(w->k); free(w->v); free(w->gate); free(w->o);
    free(w->sigma); free(w->sigma_group); free(w->phi_q); free(w->phi_k);
    free(w->sel); free(w->exact);
    memset(w, 0, sizeof *w);
}

static int work_alloc(const still__resolved *r, ref_work *w)
{
    const int64_t N = r->shape.seq_len, d = r->shape.dim_qk, dv = r->shape.dim_v;
    int rc = STILL_OK;
    memset(w, 0, sizeof *w);
    w->q = still__array_new(N, d, sizeof(double), 0, &rc);
    w->k = still__array_new(N, d, sizeof(double), 0, &rc);
    w->v = still__array_new(N, dv, sizeof(double), 0, &rc);
    w->gate = still__array_new(N, dv, sizeof(double), 0, &rc);
    w->o = still__array_new(N, dv, sizeof(double), 0, &rc);
    w->sigma = still__array_new(N, 1, sizeof(double), 0, &rc);
    w->sigma_group = still__array_new(N, 1, sizeof(double), 0, &rc);
    w->phi_q = still__array_new(1, r->m, sizeof(double), 0, &rc);
    w->phi_k = still__array_new(N, r->m, sizeof(double), 0, &rc);
    w->sel = still__array_new(N, 1, 1, 0, &rc);
    w->exact = still__array_new(N, 1, 1, 0, &rc);
    if (rc)
        work_free(w);
    return rc;
}

/* sigma of query head hq of batch b into w->sigma (SPEC §4 / App. A.1). */
static void head_saliency(const still__resolved *r, const still_tensors *t, int64_t b,
                          int64_t hq, ref_work *w)
{
    const still_shape *s = &r->shape;
    still__gather_head(t->dtype, t->q, s->layout, s->heads_q, s->seq_len, s->dim_qk, b, hq, w->q);
    still__ref_saliency(r, w->q, w->k, s->seq_len, w->sigma);
}

/* SPEC §5: the selection of a head from sigma, or the forced one (its
 * entries outside complete chunks ignored); routing `window` selects
 * nothing that matters, so a forced selection is ignored there. */
static void head_selection(const still__resolved *r, const still_tensors *t, int64_t row,
                           const double *sigma, uint8_t *sel)
{
    const int64_t N = r->shape.seq_len, complete = N / r->C * r->C;
    if (!t->selection_in || r->routing == STILL_ROUTING_WINDOW) {
        still__ref_select(r, sigma, N, sel);
        return;
    }
    for (int64_t j = 0; j < N; j++)
        sel[j] = j < complete && t->selection_in[row * N + j] != 0;
}

/* One (batch, kv head) group: SPEC §4-6 for each of its query heads; with
 * per-kv selection, sigma is the mean over the group and the selection is
 * shared (SPEC §5). */
static void forward_group(const still__resolved *r, const still_params *params,
                          const still_tensors *t, int64_t b, int64_t hk, ref_work *w)
{
    const still_shape *s = &r->shape;
    const int64_t N = s->seq_len, hq0 = hk * r->group;

    still__gather_head(t->dtype, t->k, s->layout, s->heads_kv, N, s->dim_qk, b, hk, w->k);
    still__gather_head(t->dtype, t->v, s->layout, s->heads_kv, N, s->dim_v, b, hk, w->v);
    if (r->per_kv) {
        for (int64_t j = 0; j < N; j++)
            w->sigma_group[j] = 0.0;
        for (int64_t hq = hq0; hq < hq0 + r->group; hq++) {
            head_saliency(r, t, b, hq, w);
            for (int64_t j = 0; j < N; j++)
                w->sigma_group[j] += w->sigma[j];
        }
        for (int64_t j = 0; j < N; j++)
            w->sigma_group[j] /= (double)r->group;
        head_selection(r, t, b * s->heads_q + hq0, w->sigma_group, w->sel);
    }
    for (int64_t hq = hq0; hq < hq0 + r->group; hq++) {
        const int64_t row = b * s->heads_q + hq;
        const double *sigma = r->per_kv ? w->sigma_group : w->sigma;
        head_saliency(r, t, b, hq, w);
        if (!r->per_kv)
            head_selection(r, t, row, w->sigma, w->sel);
        if (t->gate)
            still__gather_head(t->dtype, t->gate, s->layout, s->heads_q, N, s->dim_v, b, hq, w->gate);
        still__ref_head_forward(r, params, hq, w->q, w->k, w->v, t->gate ? w->gate : NULL,
                                sigma, w->sel, w->phi_q, w->phi_k, w->exact, w->o);
        still__scatter_head(t->dtype, t->o, s->layout, s->heads_q, N, s->dim_v, b, hq, w->o);
        if (t->sigma)
            memcpy(t->sigma + row * N, sigma, (size_t)N * sizeof(double));
        if (t->selected)
            memcpy(t->selected + row * N, w->sel, (size_t)N);
    }
}

/* 1 when every output (B·Hq·N·dv elements, in either layout) is finite as
 * stored (SPEC §10): the ref computes in double; a float32 output beyond
 * FLT_MAX was stored as infinity (IEEE conversion), a float64 one
 * overflowed in double.  The same rule as the fast path's. */
static int outputs_finite(const still__resolved *r, const still_tensors *t)
{
    const still_shape *s = &r->shape;
    return still__all_finite(t->dtype, t->o, /* checked addressable */
                             s->batch * s->heads_q * s->seq_len * s->dim_v);
}

int still_ref_forward(const still_config *cfg, const still_shape *shape,
                      const still_params *params, const still_tensors *t)
{
    still__resolved r;
    ref_work w;
    int rc;

    if ((rc = still__resolve(cfg, shape, params, &r)) ||
        (rc = still__check_tensors(&r, params, t, 1)) || (rc = work_alloc(&r, &w)))
        return rc;
    for (int64_t b = 0; b < r.shape.batch; b++)
        for (int64_t hk = 0; hk < r.shape.heads_kv; hk++)
            forward_group(&r, params, t, b, hk, &w);
    work_free(&w);
    return outputs_finite(&r, t) ? STILL_OK : STILL_E_NONFINITE;
}

/* SPEC §1 for query head hq of batch b. */
static void teacher_head(const still__resolved *r, const still_tensors *t, int64_t b,
                         int64_t hq, ref_work *w)
{
    const still_shape *s = &r->shape;
    const int64_t N = s->seq_len, hk = hq / r->group;
    still__gather_head(t->dtype, t->q, s->layout, s->heads_q, N, s->dim_qk, b, hq, w->q);
    still__gather_head(t->dtype, t->k, s->layout, s->heads_kv, N, s->dim_qk, b, hk, w->k);
    still__gather_head(t->dtype, t->v, s->layout, s->heads_kv, N, s->dim_v, b, hk, w->v);
    for (int64_t n = 0; n < N; n++)
        still__ref_teacher_row(r, n, w->q + n * s->dim_qk, w->k, w->v, w->o + n * s->dim_v);
    still__scatter_head(t->dtype, t->o, s->layout, s->heads_q, N, s->dim_v, b, hq, w->o);
}

int still_ref_teacher(const still_config *cfg, const still_shape *shape, const still_tensors *t)
{
    still_config only_scale;
    still_tensors inputs;
    still__resolved r;
    ref_work w;
    int rc;

    if (!t)
        return STILL_E_NULL;
    still_config_default(&only_scale); /* the teacher reads only the scale */
    if (cfg)
        only_scale.scale = cfg->scale;
    inputs = *t;
    inputs.gate = NULL; /* ignored, so neither checked */
    inputs.selection_in = NULL;
    if ((rc = still__resolve(&only_scale, shape, NULL, &r)) ||
        (rc = still__check_tensors(&r, NULL, &inputs, 1)) || (rc = work_alloc(&r, &w)))
        return rc;
    for (int64_t b = 0; b < r.shape.batch; b++)
        for (int64_t hq = 0; hq < r.shape.heads_q; hq++)
            teacher_head(&r, t, b, hq, &w);
    work_free(&w);
    return outputs_finite(&r, t) ? STILL_OK : STILL_E_NONFINITE;
}

static int finite_doubles(const double *p, int64_t n)
{
    return still__all_finite(STILL_F64, p, n);
}

/* The parameters of one head of a map are finite (SPEC §10). */
static int map_head_finite(const still_feature_map *fm, int64_t f, int64_t d, int64_t head)
{
    size_t bytes;
    if (!fm)
        return STILL_OK;
    /* W [head+1][f][d] is the largest array read */
    if (still__mul3_size((size_t)head + 1, (size_t)f, (size_t)d, &bytes) ||
        still__mul_size(bytes, sizeof(double), &bytes) || bytes > (size_t)INT64_MAX)
        return STILL_E_OVERFLOW;
    if ((fm->W && !finite_doubles(fm->W + head * f * d, f * d)) ||
        (fm->b && !finite_doubles(fm->b + head * f, f)) ||
        (fm->u && !finite_doubles(fm->u + head * d, d)))
        return STILL_E_NONFINITE;
    return STILL_OK;
}

int still_ref_feature_map(const still_config *cfg, const still_params *params, int which,
                          int64_t head, int64_t dim_qk, int64_t n, const double *x, double *phi)
{
    still_shape one = {1, 1, 1, 1, dim_qk, 1, STILL_LAYOUT_BHND};
    still__resolved r;
    const still_feature_map *fm;
    size_t count;
    int64_t f;
    int rc;

    if (!x || !phi)
        return STILL_E_NULL;
    if (which != STILL_MAP_Q && which != STILL_MAP_K)
        return STILL_E_CONFIG;
    if (head < 0 || n < 0)
        return STILL_E_SHAPE;
    if ((rc = still__resolve(cfg, &one, params, &r)))
        return rc;
    /* x [n][d] and phi [n][m] must be addressable */
    if (still__mul3_size((size_t)n, (size_t)(r.m > dim_qk ? r.m : dim_qk), sizeof(double),
                         &count))
        return STILL_E_OVERFLOW;
    fm = still__ref_map_of(&r, params, which, &f);
    if ((rc = map_head_finite(fm, f, dim_qk, head)))
        return rc;
    if (!finite_doubles(x, n * dim_qk))
        return STILL_E_NONFINITE;
    still__ref_feature_rows(&r, params, which, head, n, x, phi);
    return STILL_OK;
}

int still_ref_gate_projection(int64_t batch, int64_t seq_len, int64_t hidden, int64_t heads_q,
                              int64_t dim_v, const double *X, const double *Wg, double *G)
{
    size_t nx, nw, ng;
    int rc;
    if (!X || !Wg || !G)
        return STILL_E_NULL;
    if ((rc = still__gate_projection_sizes(batch, seq_len, hidden, heads_q, dim_v,
                                           sizeof(double), &nx, &nw, &ng)))
        return rc;
    if (!finite_doubles(X, (int64_t)nx) || !finite_doubles(Wg, (int64_t)nw))
        return STILL_E_NONFINITE;
    still__ref_gate_projection(batch, seq_len, hidden, heads_q, dim_v, X, Wg, G);
    return STILL_OK;
}
