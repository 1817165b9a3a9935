/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* state_fast_liger.c -- SPEC §16 decode: the streaming state of mixer
 * liger on the fast path, in float: the units of ref/liger_state.c (one
 * per (batch, kv head): the last min(P, w) raw keys and values and S
 * [d][dv]), the window branch a float softmax over those rows, the linear
 * branch the fast forward's recurrence (lib/fast_liger.c), so that decode
 * stays within SPEC §10 of the prefill whatever the blocks.
 *
 * One unit per (batch, kv head), shared by the query heads of its group
 * (k, v and k_lin are the kv head's, SPEC §16 GQA).  A unit holds the raw
 * keys and values of the last min(P, w) tokens (the window branch) and the
 * gated linear state S [d][dv] (the linear branch) -- nothing else: in the
 * stream's words (lib/state.h) no cache, raw_n = min(P, w), no older keys,
 * folded = P - raw_n.  The window rows grow (doubling, up to w) as tokens
 * arrive, so a state costs in proportion to what it holds (issue 7). */
#include "fast.h"
#include "state.h"

#include <math.h>

#include <stdlib.h>
#include <string.h>

typedef struct liger_unit {
    int64_t b, hk;
    int64_t raw_n, raw_room;
    float *raw_k, *raw_v; /* [raw_room][d], [raw_room][dv], oldest first */
    void *rows_block;
    float *S;              /* [d][dv] */
} liger_unit;

typedef struct liger_impl {
    liger_unit *u;
    float *q, *q_lin, *o;   /* one query head: [d], [d], [dv] */
    float *k, *v, *k_lin;   /* [d], [dv], [d] */
    float *phi, *gla;       /* [d], [dv] */
    void *scratch_block;
    size_t scratch_bytes;
} liger_impl;

/* Doubles of d*dv and of the scratch, overflow-checked (0 on success). */
static int sizes(const still_state *st, size_t *S_doubles, size_t *scratch)
{
    const int64_t d = st->r.shape.dim_qk, dv = st->r.shape.dim_v;
    if (still__mul_size((size_t)d, (size_t)dv, S_doubles) || *S_doubles > SIZE_MAX / 16)
        return -1;
    *scratch = (size_t)(5 * d + 4 * dv); /* d, dv <= 2^20 (still__resolve) */
    return 0;
}

/* Makes room for `need` window rows (at most w); on failure unchanged. */
static int rows_reserve(const still_state *st, liger_unit *u, int64_t need)
{
    const int64_t d = st->r.shape.dim_qk, dv = st->r.shape.dim_v, w = st->r.w;
    size_t bytes;
    if (need <= u->raw_room && u->rows_block)
        return STILL_OK;
    int64_t room = u->raw_room > INT64_MAX / 2 ? INT64_MAX : 2 * u->raw_room;
    room = room > need ? room : need;
    room = room > 16 ? room : 16;
    room = room < w ? room : w;
    if (room < need)
        return STILL_E_OVERFLOW; /* more than the window: a caller's bug */
    if (still__mul3_size((size_t)room, (size_t)(d + dv), sizeof(float), &bytes))
        return STILL_E_OVERFLOW;
    float *block = malloc(bytes);
    if (!block)
        return STILL_E_NOMEM;
    float *k = block, *v = block + room * d;
    if (u->raw_n) {
        memcpy(k, u->raw_k, (size_t)(u->raw_n * d) * sizeof(float));
        memcpy(v, u->raw_v, (size_t)(u->raw_n * dv) * sizeof(float));
    }
    free(u->rows_block);
    u->rows_block = block;
    u->raw_k = k, u->raw_v = v, u->raw_room = room;
    return STILL_OK;
}

static int liger_init(still_state *st)
{
    const still__resolved *r = &st->r;
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v;
    const int64_t per_batch = st->units / r->shape.batch;
    size_t nS, scratch;
    liger_impl *w;

    if (!(w = calloc(1, sizeof *w)))
        return STILL_E_NOMEM;
    st->impl = w;
    if (sizes(st, &nS, &scratch))
        return STILL_E_OVERFLOW;
    w->scratch_bytes = scratch * sizeof(float);
    if (!(w->u = calloc((size_t)st->units, sizeof *w->u)) ||
        !(w->scratch_block = malloc(w->scratch_bytes)))
        return STILL_E_NOMEM;
    float *p = w->scratch_block;
    w->q = p, p += d;
    w->q_lin = p, p += d;
    w->o = p, p += dv;
    w->k = p, p += d;
    w->v = p, p += dv;
    w->k_lin = p, p += d;
    w->phi = p, p += d;
    w->gla = p;
    for (int64_t i = 0; i < st->units; i++) {
        liger_unit *u = &w->u[i];
        u->b = i / per_batch;
        u->hk = i % per_batch;
        if (!(u->S = calloc(nS, sizeof(float)))) /* S_{-1} = 0 */
            return STILL_E_NOMEM;
        int rc = rows_reserve(st, u, 1); /* never a NULL row array */
        if (rc)
            return rc;
    }
    return STILL_OK;
}

static void liger_fini(still_state *st)
{
    liger_impl *w = st->impl;
    if (!w)
        return;
    for (int64_t i = 0; w->u && i < st->units; i++) {
        free(w->u[i].S);
        free(w->u[i].rows_block);
    }
    free(w->u);
    free(w->scratch_block);
    free(w);
    st->impl = NULL;
}

/* Element (b, h, i, 0) of a [B,H,n,D] array in the layout. */
static int64_t at(const still__strides *s, int64_t b, int64_t h, int64_t i)
{
    return b * s->b + h * s->h + i * s->n;
}

static void load_row(const float *p, int64_t off, int64_t n, float *x)
{
    memcpy(x, p + off, (size_t)n * sizeof *x);
}

static float logit(const still__resolved *r, const float *q, const float *k)
{
    float s = 0.0f;
    for (int64_t c = 0; c < r->shape.dim_qk; c++)
        s += q[c] * k[c];
    return (float)r->scale * s;
}

/* SPEC §1 over the window rows: softmax of scale <q, k_j>, normalised (two
 * passes over the rows: no buffer of w logits, whatever w). */
static void window_softmax(const still__resolved *r, const liger_impl *w, const liger_unit *u,
                           float *o)
{
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v;
    float m = -INFINITY, den = 0.0f;
    for (int64_t j = 0; j < u->raw_n; j++) {
        const float s = logit(r, w->q, u->raw_k + j * d);
        m = s > m ? s : m;
    }
    memset(o, 0, (size_t)dv * sizeof *o);
    for (int64_t j = 0; j < u->raw_n; j++) {
        const float p = expf(logit(r, w->q, u->raw_k + j * d) - m), *v = u->raw_v + j * dv;
        den += p;
#pragma omp simd
        for (int64_t e = 0; e < dv; e++)
            o[e] += p * v[e];
    }
    const float inv = 1.0f / den;
    for (int64_t e = 0; e < dv; e++)
        o[e] *= inv;
}

/* SPEC §16: token i of the block (position P) into unit u: the window
 * drops its oldest row when full, then takes k, v; S takes the decay and
 * φ(k_lin) v^T. */
static void take_token(const still_state *st, liger_impl *w, liger_unit *u, int64_t n,
                       int64_t i, const still_tensors *t)
{
    const still_shape *s = &st->r.shape;
    const int64_t d = s->dim_qk, dv = s->dim_v;
    still__strides sk = still__strides_of(s->layout, s->heads_kv, n, d);
    still__strides sv = still__strides_of(s->layout, s->heads_kv, n, dv);
    load_row(t->k, at(&sk, u->b, u->hk, i), d, w->k);
    load_row(t->v, at(&sv, u->b, u->hk, i), dv, w->v);
    load_row(t->k_lin ? t->k_lin : t->k, at(&sk, u->b, u->hk, i), d, w->k_lin);
    if (u->raw_n == st->r.w) {
        memmove(u->raw_k, u->raw_k + d, (size_t)((u->raw_n - 1) * d) * sizeof(float));
        memmove(u->raw_v, u->raw_v + dv, (size_t)((u->raw_n - 1) * dv) * sizeof(float));
        u->raw_n--;
    }
    memcpy(u->raw_k + u->raw_n * d, w->k, (size_t)d * sizeof(float));
    memcpy(u->raw_v + u->raw_n * dv, w->v, (size_t)dv * sizeof(float));
    u->raw_n++;
    still__fast_liger_update(d, dv, w->k_lin, w->v, w->phi, u->S);
}

/* SPEC §16: o_t = α·SWA_t + β·GLA_t of every query head of unit u. */
static void outputs(const still_state *st, liger_impl *w, const liger_unit *u, int64_t n,
                    int64_t i, const still_tensors *t)
{
    const still__resolved *r = &st->r;
    const still_shape *s = &r->shape;
    const int64_t d = s->dim_qk, dv = s->dim_v;
    still__strides sq = still__strides_of(s->layout, s->heads_q, n, d);
    still__strides so = still__strides_of(s->layout, s->heads_q, n, dv);
    for (int64_t hq = u->hk * r->group; hq < (u->hk + 1) * r->group; hq++) {
        load_row(t->q, at(&sq, u->b, hq, i), d, w->q);
        load_row(t->q_lin ? t->q_lin : t->q, at(&sq, u->b, hq, i), d, w->q_lin);
        window_softmax(r, w, u, w->o);
        still__fast_liger_read(d, dv, u->S, w->q_lin, w->phi, w->gla);
        float *o = (float *)t->o + at(&so, u->b, hq, i);
        const float alpha = (float)r->alpha, beta = (float)r->beta;
        for (int64_t e = 0; e < dv; e++)
            o[e] = alpha * w->o[e] + beta * w->gla[e];
    }
}

static int liger_append(still_state *st, int64_t n, const still_tensors *t)
{
    liger_impl *w = st->impl;
    if (t->sigma) /* SPEC §16: liger has no saliency to report */
        return STILL_E_UNSUPPORTED;
    for (int64_t i = 0; i < st->units; i++) { /* room first: nothing below fails */
        liger_unit *u = &w->u[i];
        int rc = rows_reserve(st, u, n < st->r.w - u->raw_n ? u->raw_n + n : st->r.w);
        if (rc)
            return rc;
    }
    for (int64_t i = 0; i < st->units; i++)
        for (int64_t j = 0; j < n; j++) {
            take_token(st, w, &w->u[i], n, j, t);
            if (t->o)
                outputs(st, w, &w->u[i], n, j, t);
        }
    return STILL_OK;
}

static size_t liger_bytes(const still_state *st)
{
    const liger_impl *w = st->impl;
    const int64_t d = st->r.shape.dim_qk, dv = st->r.shape.dim_v;
    size_t total = sizeof *w + w->scratch_bytes + (size_t)st->units * sizeof *w->u;
    for (int64_t i = 0; i < st->units; i++)
        total += ((size_t)w->u[i].raw_room * (size_t)(d + dv) + (size_t)d * (size_t)dv) *
                 sizeof(float); /* the window rows and S [d][dv] */
    return total;
}

static void liger_get_counts(const still_state *st, int64_t unit, still__unit_counts *c)
{
    const liger_unit *u = &((const liger_impl *)st->impl)->u[unit];
    c->cache_n = 0;
    c->raw_n = u->raw_n;
    c->keys_n = 0;
    c->folded = st->position - u->raw_n;
}

static int liger_set_counts(still_state *st, int64_t unit, const still__unit_counts *c)
{
    liger_unit *u = &((liger_impl *)st->impl)->u[unit];
    int rc = rows_reserve(st, u, c->raw_n);
    if (!rc)
        u->raw_n = c->raw_n;
    return rc;
}

static int liger_spans(still_state *st, int64_t unit, still__span *sp)
{
    liger_unit *u = &((liger_impl *)st->impl)->u[unit];
    const int64_t d = st->r.shape.dim_qk, dv = st->r.shape.dim_v;
    sp[0] = (still__span){u->raw_k, u->raw_n * d, STILL__SPAN_F32, 0};
    sp[1] = (still__span){u->raw_v, u->raw_n * dv, STILL__SPAN_F32, 0};
    sp[2] = (still__span){u->S, d * dv, STILL__SPAN_F32, 0};
    return 3;
}

static int liger_finish_load(still_state *st, int64_t unit)
{
    (void)st, (void)unit;
    return STILL_OK;
}

static int64_t liger_raw_count(const still_state *st, int64_t P)
{
    return P < st->r.w ? P : st->r.w;
}

static void liger_census(const still_state *st, int64_t b, int64_t hq, still__census *c,
                         int64_t *cache_pos)
{
    const still__resolved *r = &st->r;
    const liger_unit *u =
        &((const liger_impl *)st->impl)->u[b * r->shape.heads_kv + hq / r->group];
    (void)cache_pos; /* no cache */
    c->cached = 0;
    c->raw = c->raw_exact = u->raw_n;
    c->folded = st->position - u->raw_n;
    c->raw_first = st->position - u->raw_n;
}

const still__state_ops still__fast_liger_state_ops = {
    .init = liger_init,
    .fini = liger_fini,
    .append = liger_append,
    .bytes = liger_bytes,
    .get_counts = liger_get_counts,
    .set_counts = liger_set_counts,
    .spans = liger_spans,
    .finish_load = liger_finish_load,
    .raw_count = liger_raw_count,
    .census = liger_census,
};
