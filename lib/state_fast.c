/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* state_fast.c -- SPEC §7: the streaming state of the fast path (float32).
 *
 * A thin wrapper of the chunked driver's resumable units (lib/fast.h): the
 * prefill is one block of N tokens per unit, decode is blocks of any size,
 * with bitwise the same results for a fixed ISA.  An append runs the units
 * in one OpenMP region (cfg->threads, 0 = OpenMP's default), each unit by
 * one thread in a fixed order, so results do not depend on the thread
 * count (SPEC I7). */
#include "state.h"
#include "fast.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

typedef struct fast_impl {
    still__fast_ctx ctx;
    int ctx_ready;
    still__fast_unit *u;          /* [units] */
    int threads;
    still__fast_scratch *scratch; /* [threads] */
} fast_impl;

static void fast_fini(still_state *st)
{
    fast_impl *w = st->impl;
    if (!w)
        return;
    for (int64_t i = 0; w->u && i < st->units; i++)
        still__fast_unit_free(&w->u[i]);
    for (int i = 0; w->scratch && i < w->threads; i++)
        still__fast_scratch_free(&w->scratch[i]);
    if (w->ctx_ready)
        still__fast_ctx_free(&w->ctx);
    free(w->u);
    free(w->scratch);
    free(w);
    st->impl = NULL;
}

static int fast_init(still_state *st)
{
    const still__kernels *kern;
    fast_impl *w;
    int rc;

    if (!(w = calloc(1, sizeof *w)))
        return STILL_E_NOMEM;
    st->impl = w;
    /* max_len 0: the arrays grow with the tokens (fast_grow) */
    if ((rc = still__kernels_select(st->cfg.isa, &kern)) ||
        (rc = still__fast_ctx_init(&w->ctx, &st->r, &st->params, kern, 0)))
        return rc;
    w->ctx_ready = 1;
    w->threads = still__fast_threads(st->cfg.threads, st->units);
    if (!(w->u = calloc((size_t)st->units, sizeof *w->u)) ||
        !(w->scratch = calloc((size_t)w->threads, sizeof *w->scratch)))
        return STILL_E_NOMEM;
    for (int i = 0; i < w->threads; i++)
        if ((rc = still__fast_scratch_init(&w->ctx, &w->scratch[i])))
            return rc;
    const int64_t per_b = st->units / st->r.shape.batch, nh = st->unit_heads;
    for (int64_t i = 0; i < st->units; i++)
        if ((rc = still__fast_unit_init(&w->ctx, i / per_b, (i % per_b) * nh, &w->u[i])) ||
            (rc = still__fast_unit_ring(&w->ctx, &w->u[i]))) /* decode's, counted now */
            return rc;
    return STILL_OK;
}

/* ---- growth (issue 7) ----------------------------------------------------------
 * A unit's history and the scratch are sized by the context's max_len
 * (lib/driver.c still__fast_ctx_init: every size is the min of max_len and
 * C, w or L*C, and at least max_len rows fit), which a state keeps at
 * least the history rows it holds plus the tokens of the append: so a
 * state -- created, or restored from a stream -- allocates in proportion to
 * its tokens, not to what its configuration could hold (a chunk of 1e9
 * costs nothing until it fills).  max_len only sizes buffers: the results
 * do not depend on it (prefill and decode differ in it and agree bitwise). */

/* max_len from which no size changes: max(w, L*C) (the driver's mins). */
static int64_t saturated_len(const still__resolved *r)
{
    const int64_t Ls = r->L > 0 ? r->L : 1;
    if (r->C > (INT64_MAX - r->w) / Ls)
        return INT64_MAX;
    return Ls * r->C + r->w;
}

/* Moves unit `from` (context fc) into the empty unit `to` (context tc,
 * max_len larger): the same tokens, the cache block handed over. */
static void unit_move(const still__fast_ctx *fc, still__fast_unit *from,
                      const still__fast_ctx *tc, still__fast_unit *to)
{
    const int64_t d = fc->r.shape.dim_qk, dv = fc->r.shape.dim_v, m = fc->r.m, nh = fc->nh;
    const int64_t rows = from->hist_n;
    /* every field as it is (the bookkeeping, the cache block handed over),
     * then the arrays of to's own fixed block */
    const still__fast_unit fresh = *to;
    *to = *from;
    to->fixed = fresh.fixed;
    to->hist_k = fresh.hist_k, to->hist_v = fresh.hist_v, to->hist_phik = fresh.hist_phik;
    to->hist_sigma = fresh.hist_sigma;
    to->S = fresh.S, to->z = fresh.z;
    from->cache_block = NULL;
    from->ring_kp = NULL; /* handed over too (positions, not rows: still valid) */
    if (rows) {
        memcpy(to->hist_k, from->hist_k, (size_t)(rows * d) * sizeof(float));
        memcpy(to->hist_v, from->hist_v, (size_t)(rows * dv) * sizeof(float));
        memcpy(to->hist_sigma, from->hist_sigma, (size_t)rows * sizeof(double));
        for (int64_t i = 0; i < nh; i++) /* [nh][hist_cap][m] */
            memcpy(to->hist_phik + i * tc->hist_cap * m, from->hist_phik + i * fc->hist_cap * m,
                   (size_t)(rows * m) * sizeof(float));
    }
    memcpy(to->S, from->S, (size_t)(nh * m * dv) * sizeof(float));
    memcpy(to->z, from->z, (size_t)(nh * m) * sizeof(float));
}

/* Makes max_len >= need (doubling); on failure the state is unchanged. */
static int fast_grow(still_state *st, int64_t need)
{
    fast_impl *w = st->impl;
    if (need <= w->ctx.max_len)
        return STILL_OK;
    int64_t to = w->ctx.max_len > INT64_MAX / 2 ? INT64_MAX : 2 * w->ctx.max_len;
    to = to > need ? to : need;
    if (to >= saturated_len(&st->r))
        to = INT64_MAX;
    still__fast_ctx ctx;
    still__fast_unit *u = NULL;
    still__fast_scratch *ws = NULL;
    int rc = still__fast_ctx_init(&ctx, &st->r, &st->params, w->ctx.kern, to);
    if (rc)
        return rc;
    if (!(u = calloc((size_t)st->units, sizeof *u)) ||
        !(ws = calloc((size_t)w->threads, sizeof *ws)))
        rc = STILL_E_NOMEM;
    for (int i = 0; !rc && i < w->threads; i++)
        rc = still__fast_scratch_init(&ctx, &ws[i]);
    for (int64_t i = 0; !rc && i < st->units; i++)
        rc = still__fast_unit_init(&ctx, w->u[i].b, w->u[i].hq0, &u[i]);
    if (rc) {
        for (int64_t i = 0; u && i < st->units; i++)
            still__fast_unit_free(&u[i]);
        for (int i = 0; ws && i < w->threads; i++)
            still__fast_scratch_free(&ws[i]);
        free(u);
        free(ws);
        still__fast_ctx_free(&ctx);
        return rc;
    }
    for (int64_t i = 0; i < st->units; i++) {
        unit_move(&w->ctx, &w->u[i], &ctx, &u[i]);
        still__fast_unit_free(&w->u[i]);
    }
    for (int i = 0; i < w->threads; i++)
        still__fast_scratch_free(&w->scratch[i]);
    free(w->u);
    free(w->scratch);
    still__fast_ctx_free(&w->ctx);
    w->ctx = ctx;
    w->u = u;
    w->scratch = ws;
    return STILL_OK;
}

/* The block of unit u inside the tensors of an append of n tokens. */
static void block_of(const still_state *st, const still__fast_unit *u, int64_t n,
                     const still_tensors *t, still__fast_block *blk)
{
    const still_shape *sh = &st->r.shape;
    const int64_t Hq = sh->heads_q, row0 = u->b * Hq + u->hq0;
    const still__strides sq = still__strides_of(sh->layout, Hq, n, sh->dim_qk);
    const still__strides sk = still__strides_of(sh->layout, sh->heads_kv, n, sh->dim_qk);
    const still__strides sv = still__strides_of(sh->layout, sh->heads_kv, n, sh->dim_v);
    const still__strides so = still__strides_of(sh->layout, Hq, n, sh->dim_v);
    memset(blk, 0, sizeof *blk);
    blk->n = n;
    blk->q = (const float *)t->q + u->b * sq.b + u->hq0 * sq.h;
    blk->q_hs = sq.h, blk->q_ns = sq.n;
    blk->k = (const float *)t->k + u->b * sk.b + u->hk * sk.h, blk->k_ns = sk.n;
    blk->v = (const float *)t->v + u->b * sv.b + u->hk * sv.h, blk->v_ns = sv.n;
    if (t->gate) {
        blk->gate = (const float *)t->gate + u->b * so.b + u->hq0 * so.h;
        blk->g_hs = so.h, blk->g_ns = so.n;
    }
    if (t->o) {
        blk->o = (float *)t->o + u->b * so.b + u->hq0 * so.h;
        blk->o_hs = so.h, blk->o_ns = so.n;
    }
    if (t->sigma) {
        blk->sigma = t->sigma + row0 * n;
        blk->sigma_hs = n;
    }
}

/* The n tokens of one unit (lib/fast.h). */
static int append_unit(const still_state *st, still__fast_unit *u, still__fast_scratch *ws,
                       int64_t n, const still_tensors *t)
{
    const fast_impl *w = st->impl;
    still__fast_block blk;
    block_of(st, u, n, t, &blk);
    return still__fast_unit_append(&w->ctx, u, ws, &blk);
}

static int fast_append(still_state *st, int64_t n, const still_tensors *t)
{
    fast_impl *w = st->impl;
    const still__resolved *r = &st->r;
    /* the history rows held and the block's (issue 7: growth above) */
    int64_t rows = 0;
    for (int64_t i = 0; i < st->units; i++)
        rows = w->u[i].hist_n > rows ? w->u[i].hist_n : rows;
    int grc = fast_grow(st, n > INT64_MAX - rows ? INT64_MAX : rows + n);
    if (grc)
        return grc;
    /* room first, for every unit, so that a failure changes nothing: at
     * most n/C + 1 chunk arrivals, k tokens each (lib/fast.h) */
    if (r->engine == STILL__ENGINE_WINDOW ? r->sinks > 0 : r->k > 0)
        for (int64_t i = 0; i < st->units; i++) {
            const int64_t raw = w->u[i].pos - w->u[i].raw_first;
            int rc = still__fast_unit_reserve(
                &w->ctx, &w->u[i], still__state_cache_need(r, w->u[i].cache_n, raw, n,
                                        still__sat_add(st->position, n)));
            if (rc)
                return rc;
        }
    /* a region costs microseconds, and idle threads spin: only worth it
     * when the units have real work (roughly, multiply-adds of the step) */
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v;
    /* in double: a restored stream's max_sel may be near INT64_MAX */
    const double keys = (double)(r->max_sel > 0 ? r->max_sel : w->u[0].cache_n) +
                        (double)w->ctx.hist_cap + (double)r->m;
    const double work = (double)n * (double)st->units * keys * (double)(d + dv);
    const int threads = work >= 2e5 && st->units > 1 ? w->threads : 1;
    int err = STILL_OK;
    if (threads == 1) {
        /* no region at all: libgomp's region, even with a team of one,
         * makes two futex system calls, and on the test VM a kernel entry
         * costs the next microseconds of work its cached state -- a decode
         * step took 122 us with the region, 91 without (issue 4).  The same
         * units in the same order: the same bits */
        for (int64_t i = 0; i < st->units; i++) {
            /* STILL_E_NONFINITE: the unit took the tokens; so must the
             * others (lib/fast.h), and the position advances */
            int rc = append_unit(st, &w->u[i], &w->scratch[0], n, t);
            if (rc && !err)
                err = rc;
        }
        return err;
    }
#pragma omp parallel num_threads(threads)
    {
        still__fast_scratch *ws = &w->scratch[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < st->units; i++) {
            int rc = append_unit(st, &w->u[i], ws, n, t);
            if (rc) { /* STILL_E_NONFINITE only: the cache was reserved above */
#pragma omp atomic write
                err = rc;
            }
        }
    }
    return err;
}

static size_t fast_bytes(const still_state *st)
{
    const fast_impl *w = st->impl;
    size_t total = sizeof *w + (size_t)st->units * sizeof *w->u;
    for (int64_t i = 0; i < st->units; i++)
        total += still__fast_unit_bytes(&w->ctx, &w->u[i]);
    return total;
}

/* ---- serialization ------------------------------------------------------------ */

static int64_t window_of(const still_state *st, int64_t P)
{
    return P < st->r.w ? P : st->r.w;
}

static void fast_get_counts(const still_state *st, int64_t unit, still__unit_counts *c)
{
    const still__fast_unit *u = &((const fast_impl *)st->impl)->u[unit];
    const int64_t raw = u->pos - u->raw_first, older = window_of(st, u->pos) - raw;
    c->cache_n = u->cache_n;
    c->raw_n = raw;
    c->keys_n = older > 0 ? older : 0;
    c->folded = u->folded;
}

/* Rebuilds the bookkeeping of an empty unit at position P (lib/fast.h: how
 * to restore a unit); the history keeps exactly the rows the stream holds. */
static int fast_set_counts(still_state *st, int64_t unit, const still__unit_counts *c)
{
    fast_impl *w = st->impl;
    const int64_t P = c->cache_n + c->raw_n + c->folded, rows = c->raw_n + c->keys_n;
    int rc = fast_grow(st, rows); /* moves the units: no pointer into them before */
    if (rc)
        return rc;
    still__fast_unit *u = &w->u[unit];
    if (rows > w->ctx.hist_cap)
        return STILL_E_FORMAT;
    rc = still__fast_unit_reserve(&w->ctx, u, c->cache_n);
    if (rc)
        return rc;
    u->cache_n = c->cache_n;
    u->pos = P;
    u->raw_first = P - c->raw_n;
    u->hist_first = P - rows;
    u->hist_n = rows;
    u->split_chunks = P > 0 ? (P - 1) / st->r.C : 0; /* arrivals c*C <= P-1 handled */
    u->folded = c->folded;
    return STILL_OK;
}

static int fast_spans(still_state *st, int64_t unit, still__span *sp)
{
    const fast_impl *w = st->impl;
    still__fast_unit *u = &w->u[unit];
    const int64_t d = st->r.shape.dim_qk, dv = st->r.shape.dim_v, m = st->r.m;
    const int64_t nh = st->unit_heads, raw = u->pos - u->raw_first;
    const int64_t at_raw = u->raw_first - u->hist_first;
    int64_t older = window_of(st, u->pos) - raw;
    older = older > 0 ? older : 0;
    still__span list[] = {
        {u->cache_k, u->cache_n * d, STILL__SPAN_F32, 0},
        {u->cache_v, u->cache_n * dv, STILL__SPAN_F32, 0},
        {u->cache_sigma, u->cache_n, STILL__SPAN_F64, 1},
        {u->cache_pos, u->cache_n, STILL__SPAN_I64, 0},
        {u->hist_k + at_raw * d, raw * d, STILL__SPAN_F32, 0},
        {u->hist_v + at_raw * dv, raw * dv, STILL__SPAN_F32, 0},
        {u->hist_sigma + at_raw, raw, STILL__SPAN_F64, 1},
        {u->hist_k + (at_raw - older) * d, older * d, STILL__SPAN_F32, 0},
        {u->S, nh * m * dv, STILL__SPAN_F32, 0},
        {u->z, nh * m, STILL__SPAN_F32, 0},
    };
    memcpy(sp, list, sizeof list);
    return (int)(sizeof list / sizeof list[0]);
}

/* phi_k of the history rows is derived: recomputed (lib/fast.h). */
static int fast_finish_load(still_state *st, int64_t unit)
{
    fast_impl *w = st->impl;
    still__fast_unit_refresh(&w->ctx, &w->u[unit], &w->scratch[0]);
    return STILL_OK;
}

/* Raw tokens at position P: routing `window` folds the keys that left
 * every window of a chunk when the chunk arrives (lib/driver.c). */
static int64_t fast_raw_count(const still_state *st, int64_t P)
{
    const still__resolved *r = &st->r;
    if (r->engine != STILL__ENGINE_WINDOW)
        return still__state_split_raw_count(st, P);
    if (P == 0)
        return 0;
    int64_t c = (P - 1) / r->C, first = c * r->C - r->w + 1;
    return P - (first > 0 ? first : 0);
}

static void fast_census(const still_state *st, int64_t b, int64_t hq, still__census *c,
                        int64_t *cache_pos)
{
    const still__resolved *r = &st->r;
    const int64_t unit = r->per_kv ? b * r->shape.heads_kv + hq / r->group
                                   : b * r->shape.heads_q + hq;
    const still__fast_unit *u = &((const fast_impl *)st->impl)->u[unit];
    c->cached = u->cache_n;
    c->raw = u->pos - u->raw_first;
    c->folded = u->folded;
    c->raw_first = u->raw_first;
    if (r->engine == STILL__ENGINE_WINDOW) /* the last w are exact, older raw linear */
        c->raw_exact = c->raw < r->w ? c->raw : r->w;
    else
        c->raw_exact = r->L > 0 ? c->raw : 0;
    if (cache_pos && u->cache_n) /* window routing has no cache array: no memcpy from NULL */
        memcpy(cache_pos, u->cache_pos, (size_t)u->cache_n * sizeof(int64_t));
}

const still__state_ops still__fast_state_ops = {
    .init = fast_init,
    .fini = fast_fini,
    .append = fast_append,
    .bytes = fast_bytes,
    .get_counts = fast_get_counts,
    .set_counts = fast_set_counts,
    .spans = fast_spans,
    .finish_load = fast_finish_load,
    .raw_count = fast_raw_count,
    .census = fast_census,
};
