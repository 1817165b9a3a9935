/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* state.c -- the public API of the streaming state (SPEC §7): creation,
 * validation of every append, and the dispatch to the ref (double) or fast
 * (float) units.  Save and load live in state_io.c. */
#include "state.h"

#include <stdlib.h>
#include <string.h>

/* ---- parameters: a deep copy, so the caller may free its own -------------- */

/* Element counts of the arrays of one map, 0 when absent. */
static void map_counts(const still_feature_map *fm, int64_t H, int64_t f, int64_t d,
                       size_t n[3])
{
    n[0] = fm->W ? (size_t)H * (size_t)f * (size_t)d : 0;
    n[1] = fm->b ? (size_t)H * (size_t)f : 0;
    n[2] = fm->u ? (size_t)H * (size_t)d : 0;
}

/* Copies the n[i] doubles of src[i] to *cursor, pointing dst[i] at them. */
static void copy_arrays(const double *const src[3], const size_t n[3], double **cursor,
                        const double *dst[3])
{
    for (int i = 0; i < 3; i++) {
        dst[i] = NULL;
        if (!n[i])
            continue;
        memcpy(*cursor, src[i], n[i] * sizeof(double));
        dst[i] = *cursor;
        *cursor += n[i];
    }
}

/* SPEC §2, §6: the maps and window factors of every head, copied. */
static int params_copy(still_state *st, const still_params *params)
{
    const still__resolved *r = &st->r;
    const int64_t H = r->shape.heads_q, d = r->shape.dim_qk;
    still_params def;
    size_t nq[3], nk[3] = {0, 0, 0}, nw, total;

    if (!params) {
        still_params_default(&def);
        params = &def;
    }
    /* the sizes were checked addressable by still__resolve's caller only for
     * the tensors; W [Hq][f][d] needs its own check */
    if (still__mul3_size((size_t)H, (size_t)(r->f_q > d ? r->f_q : d), (size_t)d, &total) ||
        total > SIZE_MAX / 4 / sizeof(double))
        return STILL_E_OVERFLOW;
    map_counts(&params->fq, H, r->f_q, d, nq);
    if (!params->fk_tied)
        map_counts(&params->fk, H, r->f_k, d, nk);
    nw = params->window_w ? (size_t)H : 0;
    total = nq[0] + nq[1] + nq[2] + nk[0] + nk[1] + nk[2] + nw;

    const double *sq[3] = {params->fq.W, params->fq.b, params->fq.u};
    const double *sk[3] = {params->fk.W, params->fk.b, params->fk.u};
    for (int i = 0; i < 3; i++)
        if (!still__all_finite(STILL_F64, sq[i], (int64_t)nq[i]) ||
            !still__all_finite(STILL_F64, sk[i], (int64_t)nk[i]))
            return STILL_E_NONFINITE; /* SPEC §10 */
    if (!still__all_finite(STILL_F64, params->window_w, (int64_t)nw))
        return STILL_E_NONFINITE;

    st->param_bytes = total * sizeof(double);
    if (total && !(st->param_store = malloc(st->param_bytes)))
        return STILL_E_NOMEM;
    double *cursor = st->param_store;
    const double *dq[3], *dk[3];
    copy_arrays(sq, nq, &cursor, dq);
    copy_arrays(sk, nk, &cursor, dk);
    st->params = *params;
    st->params.fq.W = dq[0];
    st->params.fq.b = dq[1];
    st->params.fq.u = dq[2];
    st->params.fk.W = dk[0];
    st->params.fk.b = dk[1];
    st->params.fk.u = dk[2];
    st->params.window_w = NULL;
    if (nw) {
        memcpy(cursor, params->window_w, nw * sizeof(double));
        st->params.window_w = cursor;
    }
    st->params_fp = still__params_fingerprint(r, &st->params);
    return STILL_OK;
}

/* Hashes one array with its presence (a NULL array and an empty one differ
 * from any array of values). */
static uint64_t hash_array(uint64_t h, const double *p, size_t n)
{
    uint8_t present = p != NULL, le[8];
    h = still__fnv1a64(h, &present, 1);
    for (size_t i = 0; p && i < n; i++) {
        uint64_t bits;
        memcpy(&bits, &p[i], 8);
        for (int b = 0; b < 8; b++)
            le[b] = (uint8_t)(bits >> (8 * b)); /* little-endian, as the stream */
        h = still__fnv1a64(h, le, 8);
    }
    return h;
}

uint64_t still__params_fingerprint(const still__resolved *r, const still_params *params)
{
    const int64_t H = r->shape.heads_q, d = r->shape.dim_qk;
    uint64_t h = STILL__FNV_INIT;
    still_params def;
    uint8_t head[17];

    if (!params) {
        still_params_default(&def);
        params = &def;
    }
    for (int b = 0; b < 8; b++) {
        head[b] = (uint8_t)((uint64_t)r->f_q >> (8 * b));
        head[8 + b] = (uint8_t)((uint64_t)r->f_k >> (8 * b));
    }
    head[16] = params->fk_tied != 0;
    h = still__fnv1a64(h, head, sizeof head);
    h = hash_array(h, params->fq.W, (size_t)(H * r->f_q * d));
    h = hash_array(h, params->fq.b, (size_t)(H * r->f_q));
    h = hash_array(h, params->fq.u, (size_t)(H * d));
    if (!params->fk_tied) {
        h = hash_array(h, params->fk.W, (size_t)(H * r->f_k * d));
        h = hash_array(h, params->fk.b, (size_t)(H * r->f_k));
        h = hash_array(h, params->fk.u, (size_t)(H * d));
    }
    return hash_array(h, params->window_w, (size_t)H);
}

uint64_t still__fnv1a64(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ---- the state ------------------------------------------------------------ */

int64_t still__state_split_raw_count(const still_state *st, int64_t P)
{
    const still__resolved *r = &st->r;
    if (P == 0)
        return 0;
    /* after query P-1, the chunks from its split end on are unsplit */
    return P - still__split_end(r, P - 1);
}

int64_t still__state_cache_need(const still__resolved *r, int64_t cache_n, int64_t raw,
                                int64_t n, int64_t seen)
{
    int64_t need;
    if (r->engine == STILL__ENGINE_WINDOW) {
        /* SPEC §13: one sink leaves per token (ref), or the fast path's
         * chunk arrivals move at most C at once: n + C bounds both */
        need = still__sat_add(cache_n, still__sat_add(n, r->C));
    } else {
        int64_t splits = n / r->C + 1;
        const int64_t complete = still__sat_add(raw, n) / r->C;
        if (splits > complete)
            splits = complete;
        need = still__sat_add(cache_n, still__sat_mul(splits, r->k));
    }
    /* the cache holds distinct positions: never more than the tokens seen
     * (a chunk or k far beyond a short stream reserves no more) */
    if (need > seen)
        need = seen;
    if (need <= r->cache_cap)
        return need > cache_n ? need : cache_n;
    return cache_n > r->cache_cap ? cache_n : r->cache_cap;
}

/* SPEC §16: mixer liger has units of its own on each path. */
static int liger_ops(still_state *st)
{
    if (st->r.mixer == STILL_MIXER_LIGER)
        st->ops = st->path == STILL_PATH_REF ? &still__ref_liger_state_ops
                                             : &still__fast_liger_state_ops;
    return STILL_OK;
}

int still__state_new(const still_config *cfg, const still_shape *shape,
                     const still_params *params, int path, still_state **out)
{
    still_shape one;
    still_state *st;
    int rc;

    if (!out)
        return STILL_E_NULL;
    *out = NULL;
    if (!shape)
        return STILL_E_NULL;
    if (path != STILL_PATH_REF && path != STILL_PATH_FAST)
        return STILL_E_CONFIG;
    if (!(st = calloc(1, sizeof *st)))
        return STILL_E_NOMEM;
    if (cfg)
        st->cfg = *cfg;
    else
        still_config_default(&st->cfg);
    one = *shape;
    one.seq_len = 1; /* ignored: a state has no length (still.h) */
    st->path = path;
    st->ops = path == STILL_PATH_REF ? &still__ref_state_ops : &still__fast_state_ops;
    if ((rc = still__resolve(&st->cfg, &one, params, &st->r)) ||
        (path == STILL_PATH_FAST && st->r.authors_decode && /* App. A.3: ref path only */
         (rc = STILL_E_UNSUPPORTED)) ||
        (rc = liger_ops(st)) || (rc = params_copy(st, params))) {
        free(st->param_store);
        free(st);
        return rc;
    }
    st->unit_heads = still__state_kv_units(&st->r) ? st->r.group : 1;
    st->units = one.batch * (still__state_kv_units(&st->r) ? one.heads_kv : one.heads_q);
    if ((rc = st->ops->init(st))) {
        st->ops->fini(st);
        free(st->param_store);
        free(st);
        return rc;
    }
    *out = st;
    return STILL_OK;
}

int still_state_create(const still_config *cfg, const still_shape *shape,
                       const still_params *params, int path, still_state **out)
{
    still_config only;
    const still_config *checked = cfg;
    int rc;
    if (cfg && cfg->mixer == STILL_MIXER_LIGER) { /* SPEC §16: liger streams (its own units) */
        only = *cfg;
        only.mixer = STILL_MIXER_STILL;
        checked = &only;
    }
    rc = still__no_query_range(checked); /* a stream has no fixed set of queries */
    if (rc)
        return rc;
    return still__state_new(cfg, shape, params, path, out);
}

void still_state_destroy(still_state *st)
{
    if (!st)
        return;
    st->ops->fini(st);
    free(st->param_store);
    free(st);
}

/* 1 when the n tokens' outputs t->o, dense [B][Hq][n][dv], are finite. */
static int outputs_finite(const still_shape *s, int64_t n, const still_tensors *t)
{
    return still__all_finite(t->dtype, t->o, s->batch * s->heads_q * n * s->dim_v); /* fits */
}

int still_state_append(still_state *st, int64_t n, const still_tensors *t)
{
    still__resolved rn;
    still_shape sh;
    still_tensors checked;
    int rc;

    if (!st)
        return STILL_E_NULL;
    if (n < 0)
        return STILL_E_SHAPE;
    if (n == 0)
        return STILL_OK;
    if (!t)
        return STILL_E_NULL;
    if (t->selected || t->selection_in)
        return STILL_E_UNSUPPORTED; /* selections are known only at the split */
    if (st->position > INT64_MAX - n)
        return STILL_E_OVERFLOW;
    sh = st->r.shape;
    sh.seq_len = n; /* the arrays of this call: [B,H,n,*], addressable */
    if ((rc = still__resolve(&st->cfg, &sh, &st->params, &rn)))
        return rc;
    checked = *t;
    if (!checked.o)
        checked.o = (void *)t; /* o is optional here; the check reads no o */
    if ((rc = still__check_tensors(&rn, NULL, &checked, st->path == STILL_PATH_REF)) ||
        (rn.mixer == STILL_MIXER_LIGER && (rc = still__liger_inputs_ok(&rn, t))))
        return rc;
    if (st->position == 0)
        st->prompt = n; /* App. A.3: the first block is the prompt */
    rc = st->ops->append(st, n, t);
    if (rc && rc != STILL_E_NONFINITE)
        return rc;
    st->position += n;
    /* the tokens are taken; an output the dtype cannot hold (float32 and
     * inputs far beyond order 1, SPEC §10), an intermediate of the fast
     * path that overflowed float (STILL_E_NONFINITE from the append), or a
     * NaN sigma, is reported, not returned as success */
    if (rc || (t->o && !outputs_finite(&st->r.shape, n, t)) ||
        (t->sigma && !still__sigma_valid(t->sigma, st->r.shape.batch * st->r.shape.heads_q * n)))
        return STILL_E_NONFINITE;
    return STILL_OK;
}

int still_state_position(const still_state *st, int64_t *position)
{
    if (!st || !position)
        return STILL_E_NULL;
    *position = st->position;
    return STILL_OK;
}

int still_state_bytes(const still_state *st, size_t *bytes)
{
    if (!st || !bytes)
        return STILL_E_NULL;
    *bytes = sizeof *st + st->param_bytes + st->ops->bytes(st);
    return STILL_OK;
}

int still__state_census(const still_state *st, int64_t b, int64_t hq, still__census *c,
                        int64_t *cache_pos)
{
    if (!st || !c)
        return STILL_E_NULL;
    if (b < 0 || b >= st->r.shape.batch || hq < 0 || hq >= st->r.shape.heads_q)
        return STILL_E_SHAPE;
    st->ops->census(st, b, hq, c, cache_pos);
    return STILL_OK;
}
