/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_state_util.c -- see test_state_util.h. */
#include "test_state_util.h"

#include <stdlib.h>
#include <string.h>

/* Rows t0 .. t0+n-1 of a BHND double array [B][H][N][D], as [B][H][n][D]. */
static double *slice(const double *x, int64_t B, int64_t H, int64_t N, int64_t D, int64_t t0,
                     int64_t n)
{
    double *s = tu_dalloc(B * H * n * D);
    for (int64_t bh = 0; bh < B * H; bh++)
        memcpy(s + bh * n * D, x + (bh * N + t0) * D, (size_t)(n * D) * sizeof(double));
    return s;
}

/* The slice converted to the call's layout and dtype. */
static void *block_of(const tu_case *c, const double *x, int64_t H, int64_t D, int64_t t0,
                      int64_t n)
{
    const still_shape *s = &c->shape;
    size_t es = c->dtype == STILL_F32 ? sizeof(float) : sizeof(double);
    double *bhnd = slice(x, s->batch, H, s->seq_len, D, t0, n);
    void *out = tu_alloc((size_t)(s->batch * H * n * D) * es);
    tu_to_layout(bhnd, s->batch, H, n, D, s->layout, c->dtype, out);
    free(bhnd);
    return out;
}

int ts_append(still_state *st, const tu_case *c, int64_t t0, int64_t n, double *o,
              double *sigma)
{
    const still_shape *s = &c->shape;
    const int64_t B = s->batch, Hq = s->heads_q, Hk = s->heads_kv, N = s->seq_len;
    const int64_t d = s->dim_qk, dv = s->dim_v;
    size_t es = c->dtype == STILL_F32 ? sizeof(float) : sizeof(double);
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = c->dtype;
    t.q = block_of(c, c->q, Hq, d, t0, n);
    t.k = block_of(c, c->k, Hk, d, t0, n);
    t.v = block_of(c, c->v, Hk, dv, t0, n);
    t.gate = c->gate ? block_of(c, c->gate, Hq, dv, t0, n) : NULL;
    t.o = o ? tu_alloc((size_t)(B * Hq * n * dv) * es) : NULL;
    t.sigma = sigma ? tu_dalloc(B * Hq * n) : NULL;
    int rc = still_state_append(st, n, &t);
    if (rc == STILL_OK && o) {
        double *ob = tu_dalloc(B * Hq * n * dv);
        tu_from_layout(t.o, B, Hq, n, dv, s->layout, c->dtype, ob);
        for (int64_t bh = 0; bh < B * Hq; bh++)
            memcpy(o + (bh * N + t0) * dv, ob + bh * n * dv, (size_t)(n * dv) * sizeof(double));
        free(ob);
    }
    if (rc == STILL_OK && sigma)
        for (int64_t bh = 0; bh < B * Hq; bh++)
            memcpy(sigma + bh * N + t0, t.sigma + bh * n, (size_t)n * sizeof(double));
    free((void *)t.q);
    free((void *)t.k);
    free((void *)t.v);
    free((void *)t.gate);
    free(t.o);
    free(t.sigma);
    return rc;
}

int ts_decode(const tu_case *c, int path, const int64_t *blocks, int nb, double *o,
              double *sigma)
{
    still_state *st;
    int rc = still_state_create(&c->cfg, &c->shape, c->use_params ? &c->params : NULL, path, &st);
    int64_t t0 = 0;
    for (int i = 0; rc == STILL_OK && i < nb; i++) {
        rc = ts_append(st, c, t0, blocks[i], o, sigma);
        t0 += blocks[i];
    }
    still_state_destroy(st);
    return rc;
}

int ts_schedule_prefill(int64_t N, int64_t first, int64_t *blocks)
{
    int nb = 0;
    if (first > 0)
        blocks[nb++] = first;
    for (int64_t t = first; t < N; t++)
        blocks[nb++] = 1;
    return nb;
}

int ts_schedule_random(tu_rng *g, int64_t N, int64_t max_block, int64_t *blocks)
{
    int nb = 0;
    for (int64_t t = 0; t < N;) {
        int64_t n = tu_int(g, 1, max_block);
        if (n > N - t)
            n = N - t;
        blocks[nb++] = n;
        t += n;
    }
    return nb;
}
