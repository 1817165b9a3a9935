/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* validate.c -- checks on the arrays of a call, before any work (SPEC §10). */
#include "internal.h"

#include <float.h>
#include <math.h>

int still__sigma_valid(const double *sigma, int64_t n)
{
    int bad = 0;
#pragma omp simd reduction(| : bad)
    for (int64_t i = 0; i < n; i++)
        bad |= isnan(sigma[i]) || sigma[i] == -INFINITY;
    return !bad;
}

/* |x| <= MAX is false exactly for inf and NaN; the scan has no branch, so
 * it vectorizes (it runs before every call, over every input element). */
int still__all_finite(int dtype, const void *p, int64_t n)
{
    int bad = 0;
    if (dtype == STILL_F64) {
        const double *x = p;
#pragma omp simd reduction(| : bad)
        for (int64_t i = 0; i < n; i++)
            bad |= !(fabs(x[i]) <= DBL_MAX);
    } else {
        return still__finite_f32(p, n);
    }
    return !bad;
}

static int map_finite(const still_feature_map *fm, int64_t H, int64_t f, int64_t d)
{
    return (!fm->W || still__all_finite(STILL_F64, fm->W, H * f * d)) &&
           (!fm->b || still__all_finite(STILL_F64, fm->b, H * f)) &&
           (!fm->u || still__all_finite(STILL_F64, fm->u, H * d));
}

/* SPEC §5: a forced selection marks exactly k tokens of each complete chunk
 * (the other entries are ignored); with per-kv selection, the query heads
 * of a group must agree. */
static int selection_ok(const still__resolved *r, const uint8_t *sel)
{
    const still_shape *s = &r->shape;
    int64_t N = s->seq_len, full = N / r->C;
    for (int64_t bh = 0; bh < s->batch * s->heads_q; bh++) {
        const uint8_t *row = sel + bh * N;
        for (int64_t c = 0; c < full; c++) {
            int64_t count = 0;
            for (int64_t j = c * r->C; j < (c + 1) * r->C; j++) {
                if (row[j] > 1)
                    return STILL_E_SELECTION;
                count += row[j];
            }
            if (count != r->k)
                return STILL_E_SELECTION;
        }
        if (r->per_kv && (bh % s->heads_q) % r->group != 0) {
            const uint8_t *lead = row - ((bh % s->heads_q) % r->group) * N;
            for (int64_t j = 0; j < full * r->C; j++)
                if (row[j] != lead[j])
                    return STILL_E_SELECTION;
        }
    }
    return STILL_OK;
}

int still__check_tensors(const still__resolved *r, const still_params *params,
                         const still_tensors *t, int allow_f64)
{
    const still_shape *s = &r->shape;
    if (!t || !t->q || !t->k || !t->v || !t->o)
        return STILL_E_NULL;
    if (t->dtype != STILL_F32 && !(allow_f64 && t->dtype == STILL_F64))
        return STILL_E_DTYPE;
    int64_t nq = s->batch * s->heads_q * s->seq_len;
    int64_t nk = s->batch * s->heads_kv * s->seq_len;
    if (!still__all_finite(t->dtype, t->q, nq * s->dim_qk) ||
        !still__all_finite(t->dtype, t->k, nk * s->dim_qk) ||
        !still__all_finite(t->dtype, t->v, nk * s->dim_v) ||
        (t->gate && !still__all_finite(t->dtype, t->gate, nq * s->dim_v)))
        return STILL_E_NONFINITE;
    if (params) {
        if (!map_finite(&params->fq, s->heads_q, r->f_q, s->dim_qk) ||
            (!params->fk_tied && !map_finite(&params->fk, s->heads_q, r->f_k, s->dim_qk)) ||
            (params->window_w && !still__all_finite(STILL_F64, params->window_w, s->heads_q)))
            return STILL_E_NONFINITE;
    }
    if (t->selection_in && r->engine != STILL__ENGINE_WINDOW)
        return selection_ok(r, t->selection_in);
    return STILL_OK;
}
