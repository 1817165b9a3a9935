/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* state.c -- SPEC §7: the streaming state of the oracle, in double.
 *
 * Token by token, with the prefill's rules and the prefill's functions
 * (ref.h): a token's sigma is computed on arrival from the last w keys
 * (SPEC §4, App. A.1); when its chunk ages past the L exact chunks it is
 * split: the top-k (SPEC §5) join the cache, the rest fold into S, z
 * (SPEC §3); past the cap the cache evicts its lowest sigma (ties: the
 * older) into S, z.  The output of a query is SPEC §6 in state form: the
 * exact set is the cache and the raw tokens, the linear set is S, z. */
#include "ref.h"
#include "state.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One unit (lib/state.h): the query heads hq0 .. hq0+nq-1 of batch b.
 * Every array holds what the unit holds, not what the configuration allows:
 * the raw tokens and the key window grow (geometrically, up to raw_cap and
 * keys_cap rows) as tokens arrive, so a state -- created or restored from a
 * stream (lib/state_io.c) -- allocates in proportion to its tokens, and a
 * configuration with a huge chunk or window costs nothing until it is used
 * (issue 7). */
typedef struct ref_unit {
    int64_t b, hq0, hk;
    int64_t cache_n, cache_cap;
    double *cache_k, *cache_v, *cache_sigma; /* [cap][d], [cap][dv], [cap] */
    int64_t *cache_pos;                      /* [cap] */
    void *cache_block;                       /* the one allocation of the four */
    int64_t raw_n, raw_room;
    double *raw_k, *raw_v, *raw_sigma; /* [raw_room][d], [raw_room][dv], [raw_room] */
    int64_t keys_n, keys_room;
    double *keys;                      /* [keys_room][d], oldest first */
    void *rows_block;                  /* raw and keys in one allocation */
    double *S, *z;                     /* [nq][m][dv], [nq][m] */
    int64_t folded;
    double *fixed_block;               /* S, z in one allocation */
} ref_unit;

/* The units and the scratch of one token. */
typedef struct ref_impl {
    ref_unit *u;
    double *q, *gate, *o, *sigma;     /* [nq][d], [nq][dv], [nq][dv], [nq] */
    double *k, *v;                    /* [d], [dv] */
    double *phi_q, *phi_k;            /* [m] */
    double *soft_num, *lin_num;       /* [dv] */
    int gate_on;                      /* the block has gate values */
    void *scratch_block;
    /* the scratch sized by the tokens seen (at most C rows, grown like the
     * units' rows): the selection of a chunk */
    uint8_t *sel;                     /* [tok_room] */
    int64_t tok_room, tok_cap;
    void *tok_block;
    size_t fixed_bytes, scratch_bytes, tok_bytes; /* per unit; total; total */
} ref_impl;

/* ---- sizes ------------------------------------------------------------------ */

/* Adds rows*cols doubles to *total, overflow-checked. */
static int add_doubles(size_t *total, int64_t rows, int64_t cols)
{
    size_t n;
    if (still__mul_size((size_t)rows, (size_t)cols, &n) || n > SIZE_MAX / 8 - *total)
        return -1;
    *total += n;
    return 0;
}

/* Doubles of a unit's fixed arrays: S, z. */
static int fixed_doubles(const still_state *st, size_t *total)
{
    const still__resolved *r = &st->r;
    const int64_t dv = r->shape.dim_v, nq = st->unit_heads;
    size_t mdv;
    *total = 0;
    if (still__mul_size((size_t)r->m, (size_t)dv, &mdv) || mdv > (size_t)INT64_MAX)
        return -1;
    return add_doubles(total, nq, (int64_t)mdv) || add_doubles(total, nq, r->m);
}

/* The room to grow to for `need` rows, at most `cap`: doubling, so that a
 * stream of single tokens reallocates O(log) times. */
static int64_t grown_room(int64_t room, int64_t need, int64_t cap)
{
    int64_t to = room > INT64_MAX / 2 ? INT64_MAX : 2 * room;
    to = to > need ? to : need;
    to = to > 16 ? to : 16;
    return to < cap ? to : cap;
}

/* Makes room for raw_need raw tokens and keys_need window keys (at most
 * raw_cap and keys_cap); on failure the unit is unchanged. */
static int rows_reserve(const still_state *st, ref_unit *u, int64_t raw_need, int64_t keys_need)
{
    const int64_t d = st->r.shape.dim_qk, dv = st->r.shape.dim_v;
    size_t n = 0;
    if (raw_need <= u->raw_room && keys_need <= u->keys_room && u->rows_block)
        return STILL_OK;
    const int64_t raw = raw_need <= u->raw_room ? u->raw_room
                                                : grown_room(u->raw_room, raw_need, st->r.raw_cap);
    const int64_t keys = keys_need <= u->keys_room
                             ? u->keys_room
                             : grown_room(u->keys_room, keys_need, st->r.keys_cap);
    if (raw < raw_need || keys < keys_need)
        return STILL_E_OVERFLOW; /* more than the configuration holds: a caller's bug */
    if (add_doubles(&n, raw, d + dv + 1) || add_doubles(&n, keys, d) || n == 0)
        return STILL_E_OVERFLOW;
    double *block = malloc(n * sizeof(double));
    if (!block)
        return STILL_E_NOMEM;
    double *rk = block, *rv = rk + raw * d, *rs = rv + raw * dv, *kk = rs + raw;
    if (u->raw_n) {
        memcpy(rk, u->raw_k, (size_t)(u->raw_n * d) * sizeof(double));
        memcpy(rv, u->raw_v, (size_t)(u->raw_n * dv) * sizeof(double));
        memcpy(rs, u->raw_sigma, (size_t)u->raw_n * sizeof(double));
    }
    if (u->keys_n)
        memcpy(kk, u->keys, (size_t)(u->keys_n * d) * sizeof(double));
    free(u->rows_block);
    u->rows_block = block;
    u->raw_k = rk, u->raw_v = rv, u->raw_sigma = rs, u->keys = kk;
    u->raw_room = raw, u->keys_room = keys;
    return STILL_OK;
}

/* Makes room in the token scratch for `need` rows (at most tok_cap). */
static int tok_reserve(ref_impl *w, int64_t need)
{
    size_t n = 0;
    need = need < w->tok_cap ? need : w->tok_cap;
    if (need <= w->tok_room)
        return STILL_OK;
    const int64_t rows = grown_room(w->tok_room, need, w->tok_cap);
    /* the selection's bytes, counted as doubles (rows/8 + 1 of them) */
    if (add_doubles(&n, rows / 8 + 1, 1))
        return STILL_E_OVERFLOW;
    double *block = malloc(n * sizeof(double));
    if (!block)
        return STILL_E_NOMEM;
    free(w->tok_block); /* nothing in it lasts beyond a token */
    w->tok_block = block;
    w->tok_bytes = n * sizeof(double);
    w->sel = (uint8_t *)block;
    w->tok_room = rows;
    return STILL_OK;
}

/* ---- init / fini ------------------------------------------------------------ */

static int ref_init(still_state *st)
{
    const still__resolved *r = &st->r;
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v, nq = st->unit_heads;
    const int64_t per_batch = st->units / r->shape.batch;
    size_t fixed, scratch = 0;
    ref_impl *w;

    if (!(w = calloc(1, sizeof *w)))
        return STILL_E_NOMEM;
    st->impl = w;
    w->tok_cap = r->C; /* the selection of a chunk: grows */
    if (fixed_doubles(st, &fixed) || add_doubles(&scratch, nq, d + 2 * dv + 1) ||
        add_doubles(&scratch, 1, d + 3 * dv + 2 * r->m))
        return STILL_E_OVERFLOW;
    w->fixed_bytes = fixed * sizeof(double);
    w->scratch_bytes = scratch * sizeof(double);
    if (!(w->u = calloc((size_t)st->units, sizeof *w->u)) ||
        !(w->scratch_block = malloc(w->scratch_bytes)))
        return STILL_E_NOMEM;
    double *p = w->scratch_block;
    w->q = p, p += nq * d;
    w->gate = p, p += nq * dv;
    w->o = p, p += nq * dv;
    w->sigma = p, p += nq;
    w->k = p, p += d;
    w->v = p, p += dv;
    w->phi_q = p, p += r->m;
    w->phi_k = p, p += r->m;
    w->soft_num = p, p += dv;
    w->lin_num = p;
    for (int64_t i = 0; i < st->units; i++) {
        ref_unit *u = &w->u[i];
        u->b = i / per_batch;
        if (r->per_kv) {
            u->hk = i % per_batch;
            u->hq0 = u->hk * r->group;
        } else {
            u->hq0 = i % per_batch;
            u->hk = u->hq0 / r->group;
        }
        if (!(u->fixed_block = calloc(1, w->fixed_bytes))) /* S = 0, z = 0 */
            return STILL_E_NOMEM;
        u->S = u->fixed_block;
        u->z = u->S + nq * r->m * dv;
        int rc = rows_reserve(st, u, 1, 1); /* never a NULL row array */
        if (rc)
            return rc;
    }
    return STILL_OK;
}

static void ref_fini(still_state *st)
{
    ref_impl *w = st->impl;
    if (!w)
        return;
    for (int64_t i = 0; w->u && i < st->units; i++) {
        free(w->u[i].fixed_block);
        free(w->u[i].rows_block);
        free(w->u[i].cache_block);
    }
    free(w->u);
    free(w->scratch_block);
    free(w->tok_block);
    free(w);
    st->impl = NULL;
}

/* Makes room for `need` cached tokens; on failure the unit is unchanged. */
static int cache_reserve(const still_state *st, ref_unit *u, int64_t need)
{
    const int64_t d = st->r.shape.dim_qk, dv = st->r.shape.dim_v;
    size_t bytes;
    if (need <= u->cache_cap)
        return STILL_OK;
    int64_t cap = u->cache_cap * 2 > need ? u->cache_cap * 2 : need;
    if (cap > st->r.cache_cap)
        cap = need; /* the cache never holds more than max_sel + k */
    if (still__mul3_size((size_t)cap, (size_t)(d + dv + 2), sizeof(double), &bytes))
        return STILL_E_OVERFLOW;
    double *block = malloc(bytes);
    if (!block)
        return STILL_E_NOMEM;
    double *k = block, *v = k + cap * d, *sigma = v + cap * dv;
    int64_t *pos = (int64_t *)(sigma + cap);
    if (u->cache_n) {
        memcpy(k, u->cache_k, (size_t)(u->cache_n * d) * sizeof *k);
        memcpy(v, u->cache_v, (size_t)(u->cache_n * dv) * sizeof *v);
        memcpy(sigma, u->cache_sigma, (size_t)u->cache_n * sizeof *sigma);
        memcpy(pos, u->cache_pos, (size_t)u->cache_n * sizeof *pos);
    }
    free(u->cache_block);
    u->cache_block = block;
    u->cache_k = k, u->cache_v = v, u->cache_sigma = sigma, u->cache_pos = pos;
    u->cache_cap = cap;
    return STILL_OK;
}

/* ---- the branches ----------------------------------------------------------- */

/* SPEC §3: S += phi_k(k) v^T, z += phi_k(k) for every query head of the
 * unit; with rest = drop (SPEC §12) the token is only counted. */
static void fold(const still_state *st, ref_impl *w, ref_unit *u, const double *k,
                 const double *v)
{
    const still__resolved *r = &st->r;
    const int64_t m = r->m, dv = r->shape.dim_v;
    int64_t f;
    const still_feature_map *fk = still__ref_map_of(r, &st->params, STILL_MAP_K, &f);
    for (int64_t i = 0; r->rest == STILL_REST_LINEAR && i < st->unit_heads; i++) {
        double *S = u->S + i * m * dv, *z = u->z + i * m;
        still__ref_feature_map(r, fk, f, u->hq0 + i, k, w->phi_k);
        for (int64_t a = 0; a < m; a++) {
            for (int64_t e = 0; e < dv; e++)
                S[a * dv + e] += w->phi_k[a] * v[e];
            z[a] += w->phi_k[a];
        }
    }
    u->folded++;
}

static void cache_push(const still_state *st, ref_unit *u, const double *k, const double *v,
                       double sigma, int64_t pos)
{
    const int64_t d = st->r.shape.dim_qk, dv = st->r.shape.dim_v, n = u->cache_n;
    memcpy(u->cache_k + n * d, k, (size_t)d * sizeof *k);
    memcpy(u->cache_v + n * dv, v, (size_t)dv * sizeof *v);
    u->cache_sigma[n] = sigma;
    u->cache_pos[n] = pos;
    u->cache_n++;
}

/* SPEC App. A.3: token t is decoded by the authors' decode rules (it came
 * after the state's first block). */
static int authors_decoding(const still_state *st, int64_t t)
{
    return st->r.authors_decode && t >= st->prompt;
}

/* SPEC §5 cap: while the cache holds more than max_sel, its lowest sigma
 * (ties: the older) folds into the linear state; the order of the rest is
 * kept (position order). */
static void cache_evict(const still_state *st, ref_impl *w, ref_unit *u)
{
    const int64_t d = st->r.shape.dim_qk, dv = st->r.shape.dim_v;
    while (st->r.max_sel && u->cache_n > st->r.max_sel) {
        int64_t e = 0;
        for (int64_t j = 1; j < u->cache_n; j++)
            if (u->cache_sigma[j] < u->cache_sigma[e]) /* equal: keep e, the older */
                e = j;
        fold(st, w, u, u->cache_k + e * d, u->cache_v + e * dv);
        int64_t tail = u->cache_n - e - 1;
        memmove(u->cache_k + e * d, u->cache_k + (e + 1) * d, (size_t)(tail * d) * sizeof(double));
        memmove(u->cache_v + e * dv, u->cache_v + (e + 1) * dv,
                (size_t)(tail * dv) * sizeof(double));
        memmove(u->cache_sigma + e, u->cache_sigma + e + 1, (size_t)tail * sizeof(double));
        memmove(u->cache_pos + e, u->cache_pos + e + 1, (size_t)tail * sizeof(int64_t));
        u->cache_n--;
    }
}

/* Drops the `count` oldest raw tokens (already routed). */
static void raw_drop(const still_state *st, ref_unit *u, int64_t count)
{
    const int64_t d = st->r.shape.dim_qk, dv = st->r.shape.dim_v, rest = u->raw_n - count;
    memmove(u->raw_k, u->raw_k + count * d, (size_t)(rest * d) * sizeof(double));
    memmove(u->raw_v, u->raw_v + count * dv, (size_t)(rest * dv) * sizeof(double));
    memmove(u->raw_sigma, u->raw_sigma + count, (size_t)rest * sizeof(double));
    u->raw_n = rest;
}

/* SPEC §5: the oldest raw chunk (complete, first position `first`) is split:
 * its top-k join the cache, the rest fold; then the cap. */
static void split_oldest_chunk(const still_state *st, ref_impl *w, ref_unit *u, int64_t first,
                               int64_t t)
{
    const still__resolved *r = &st->r;
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v;
    /* App. A.3: a chunk split while decoding is ranked by the scores of the
     * next chunk, slot by slot (L = 2: the raw tokens are the two chunks) */
    const double *rank = authors_decoding(st, t) ? u->raw_sigma + r->C : u->raw_sigma;
    still__ref_select(r, rank, r->C, w->sel); /* one complete chunk */
    for (int64_t j = 0; j < r->C; j++) {
        if (w->sel[j])
            cache_push(st, u, u->raw_k + j * d, u->raw_v + j * dv, u->raw_sigma[j], first + j);
        else
            fold(st, w, u, u->raw_k + j * d, u->raw_v + j * dv);
    }
    cache_evict(st, w, u);
    raw_drop(st, u, r->C);
}

/* SPEC §5-6: before query t, the tokens that leave the exact set: for
 * the window engine the token t-w (a sink, SPEC §13, joins the cache);
 * otherwise, when t starts a chunk, the chunk that ages past the L recent
 * ones (L = 0: the previous chunk). */
static void age(const still_state *st, ref_impl *w, ref_unit *u, int64_t t)
{
    const still__resolved *r = &st->r;
    if (r->engine == STILL__ENGINE_WINDOW) {
        if (u->raw_n == r->w) {
            if (t - r->w < r->sinks)
                cache_push(st, u, u->raw_k, u->raw_v, 0.0, t - r->w); /* not ranked */
            else
                fold(st, w, u, u->raw_k, u->raw_v);
            raw_drop(st, u, 1);
        }
    } else if (t % r->C == 0 && u->raw_n == st->r.raw_cap) {
        split_oldest_chunk(st, w, u, t - u->raw_n, t);
    }
}

/* ---- saliency (SPEC §4, App. A.1) ------------------------------------------ */

/* Pushes k_t into the key window and computes sigma of every query head of
 * the unit into w->sigma (App. A.1 reads the window in place: w = C, so it
 * holds positions max(0, t - C + 1) .. t, key0 = t - nwin + 1); returns
 * the unit's ranking sigma (the group mean with per-kv selection, summed
 * in head order as the prefill does). */
static double token_sigma(const still_state *st, ref_impl *w, ref_unit *u, int64_t t)
{
    const still__resolved *r = &st->r;
    const int64_t d = r->shape.dim_qk;
    if (u->keys_n == st->r.keys_cap) { /* keep the last w - 1 */
        memmove(u->keys, u->keys + (u->keys_n - (r->w - 1)) * d,
                (size_t)((r->w - 1) * d) * sizeof(double));
        u->keys_n = r->w - 1;
    }
    memcpy(u->keys + u->keys_n * d, w->k, (size_t)d * sizeof(double));
    u->keys_n++;
    const int64_t nwin = u->keys_n < r->w ? u->keys_n : r->w; /* |W_t| */
    const double *window = u->keys + (u->keys_n - nwin) * d;
    double mean = 0.0;
    for (int64_t i = 0; i < st->unit_heads; i++) {
        const double *q_i = w->q + i * d;
        if (authors_decoding(st, t)) /* t >= 1: nwin >= 2 */
            w->sigma[i] = still__ref_saliency_authors_decode(r, q_i, window, nwin);
        else
            w->sigma[i] = r->saliency == STILL_SALIENCY_AUTHORS
                              ? still__ref_saliency_authors(r, q_i, window, t - nwin + 1, t)
                              : still__ref_saliency_window(r, q_i, window, nwin);
        mean += w->sigma[i];
    }
    if (!r->per_kv)
        return w->sigma[0];
    mean /= (double)r->group;
    for (int64_t i = 0; i < st->unit_heads; i++)
        w->sigma[i] = mean; /* the prefill reports the group's sigma */
    return mean;
}

/* ---- the output (SPEC §6) ----------------------------------------------- */

static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Adds p·v to num and p to *den for every exact token of rows [n]. */
static void exact_rows(const still__resolved *r, const double *q_t, const double *k,
                       const double *v, int64_t n, double m_t, double *num, double *den)
{
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v;
    for (int64_t j = 0; j < n; j++) {
        double p = exp(still__ref_logit(r, q_t, k + j * d) - m_t);
        *den += p;
        for (int64_t e = 0; e < dv; e++)
            num[e] += p * v[j * dv + e];
    }
}

static double rows_max(const still__resolved *r, const double *q_t, const double *k,
                       int64_t n, double m)
{
    for (int64_t j = 0; j < n; j++)
        m = fmax(m, still__ref_logit(r, q_t, k + j * r->shape.dim_qk));
    return m;
}

/* o_t of query head i of the unit: exact set = cache ∪ raw (raw linear for
 * L = 0), linear set = S, z; App. A.2 phantom sink in chunk 0. */
static void output(const still_state *st, ref_impl *w, ref_unit *u, int64_t t, int64_t i,
                   const double *gate_t, double *o_t)
{
    const still__resolved *r = &st->r;
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v, m = r->m, hq = u->hq0 + i;
    const int raw_exact = r->engine == STILL__ENGINE_WINDOW || r->L > 0;
    const double *q_t = w->q + i * d, *S = u->S + i * m * dv, *z = u->z + i * m;
    const double omega = still__ref_omega(&st->params, hq);
    int64_t f;
    const still_feature_map *fq = still__ref_map_of(r, &st->params, STILL_MAP_Q, &f);
    const still_feature_map *fk = still__ref_map_of(r, &st->params, STILL_MAP_K, &f);

    still__ref_feature_map(r, fq, r->f_q, hq, q_t, w->phi_q);
    double m_t = rows_max(r, q_t, u->cache_k, u->cache_n, -INFINITY);
    if (raw_exact)
        m_t = rows_max(r, q_t, u->raw_k, u->raw_n, m_t);
    const int decoding = authors_decoding(st, t); /* App. A.3: no sink, no eps_den */
    const int phantom = r->phantom_sink && t < r->C && !decoding;
    if (phantom)
        m_t = fmax(m_t, 0.0);
    if (isinf(m_t))
        m_t = 0.0; /* E_t empty */

    double soft_den = phantom ? (double)r->C * exp(-m_t) : 0.0;
    const int linear = r->rest == STILL_REST_LINEAR; /* SPEC §12 */
    double lin_den = linear ? dot(w->phi_q, z, m) : 0.0;
    memset(w->soft_num, 0, (size_t)dv * sizeof(double));
    exact_rows(r, q_t, u->cache_k, u->cache_v, u->cache_n, m_t, w->soft_num, &soft_den);
    for (int64_t e = 0; e < dv; e++) { /* phi_q^T S */
        double acc = 0.0;
        for (int64_t a = 0; a < m; a++)
            acc += w->phi_q[a] * S[a * dv + e];
        w->lin_num[e] = linear ? acc : 0.0;
    }
    if (raw_exact) {
        exact_rows(r, q_t, u->raw_k, u->raw_v, u->raw_n, m_t, w->soft_num, &soft_den);
    } else if (linear) { /* L = 0: the current chunk is linear (SPEC §6) */
        for (int64_t j = 0; j < u->raw_n; j++) {
            still__ref_feature_map(r, fk, r->f_k, hq, u->raw_k + j * d, w->phi_k);
            double kap = dot(w->phi_q, w->phi_k, m);
            lin_den += kap;
            for (int64_t e = 0; e < dv; e++)
                w->lin_num[e] += kap * u->raw_v[j * dv + e];
        }
    }
    const double den = omega * soft_den + lin_den + (decoding ? 0.0 : r->eps_den);
    for (int64_t e = 0; e < dv; e++) /* SPEC §12: an empty E_t dropped gives 0 */
        o_t[e] = den == 0.0 ? 0.0
                            : (omega * w->soft_num[e] + (gate_t ? gate_t[e] : 1.0) * w->lin_num[e]) /
                                  den;
}

/* ---- append ----------------------------------------------------------------- */

/* Element (b, h, i, 0) of a [B,H,n,D] array in the layout. */
static int64_t at(const still__strides *s, int64_t b, int64_t h, int64_t i)
{
    return b * s->b + h * s->h + i * s->n;
}

/* Token i of the block for unit u: gathers q, k, v, gate in double. */
static void gather_token(const still_state *st, ref_impl *w, const ref_unit *u, int64_t n,
                         int64_t i, const still_tensors *t)
{
    const still_shape *s = &st->r.shape;
    const int64_t d = s->dim_qk, dv = s->dim_v;
    still__strides sq = still__strides_of(s->layout, s->heads_q, n, d);
    still__strides sk = still__strides_of(s->layout, s->heads_kv, n, d);
    still__strides sv = still__strides_of(s->layout, s->heads_kv, n, dv);
    still__strides sg = still__strides_of(s->layout, s->heads_q, n, dv);
    for (int64_t e = 0; e < d; e++)
        w->k[e] = still__load(t->dtype, t->k, at(&sk, u->b, u->hk, i) + e);
    for (int64_t e = 0; e < dv; e++)
        w->v[e] = still__load(t->dtype, t->v, at(&sv, u->b, u->hk, i) + e);
    for (int64_t h = 0; h < st->unit_heads; h++) {
        for (int64_t e = 0; e < d; e++)
            w->q[h * d + e] = still__load(t->dtype, t->q, at(&sq, u->b, u->hq0 + h, i) + e);
        for (int64_t e = 0; t->gate && e < dv; e++)
            w->gate[h * dv + e] =
                still__load(t->dtype, t->gate, at(&sg, u->b, u->hq0 + h, i) + e);
    }
}

static void scatter_token(const still_state *st, const ref_impl *w, const ref_unit *u,
                          int64_t n, int64_t i, const still_tensors *t)
{
    const still_shape *s = &st->r.shape;
    const int64_t dv = s->dim_v;
    still__strides so = still__strides_of(s->layout, s->heads_q, n, dv);
    for (int64_t h = 0; h < st->unit_heads; h++) {
        int64_t hq = u->hq0 + h;
        for (int64_t e = 0; t->o && e < dv; e++)
            still__store(t->dtype, t->o, at(&so, u->b, hq, i) + e, w->o[h * dv + e]);
        if (t->sigma)
            t->sigma[(u->b * s->heads_q + hq) * n + i] = w->sigma[h];
    }
}

/* SPEC §7: one token at position t through unit u. */
static void step(const still_state *st, ref_impl *w, ref_unit *u, int64_t t, int want_o)
{
    const int64_t d = st->r.shape.dim_qk, dv = st->r.shape.dim_v;
    age(st, w, u, t);
    double sigma = token_sigma(st, w, u, t);
    memcpy(u->raw_k + u->raw_n * d, w->k, (size_t)d * sizeof(double));
    memcpy(u->raw_v + u->raw_n * dv, w->v, (size_t)dv * sizeof(double));
    u->raw_sigma[u->raw_n] = sigma;
    u->raw_n++;
    for (int64_t i = 0; want_o && i < st->unit_heads; i++)
        output(st, w, u, t, i, w->gate_on ? w->gate + i * dv : NULL, w->o + i * dv);
}

static int ref_append(still_state *st, int64_t n, const still_tensors *t)
{
    ref_impl *w = st->impl;
    const still__resolved *r = &st->r;
    /* room first, so that nothing below can fail: at most n/C + 1 splits
     * (the window engine caches the sinks only) */
    for (int64_t i = 0; i < st->units; i++) {
        ref_unit *u = &w->u[i];
        /* a restored state's k need not fit its few tokens */
        int rc = cache_reserve(st, u, still__state_cache_need(r, u->cache_n, u->raw_n, n,
                                                                  still__sat_add(st->position, n)));
        if (rc)
            return rc;
    }
    /* the rows of n more tokens (raw tokens and window keys never exceed
     * their caps: aging drops before a push), and the token scratch, sized
     * by the tokens held, not the position (a restored state may hold a
     * few tokens at a large position): the split of a chunk needs C rows,
     * which are raw then (App. A.1 reads the unit's window keys in place) */
    int64_t held = 0;
    for (int64_t i = 0; i < st->units; i++)
        held = w->u[i].raw_n > held ? w->u[i].raw_n : held;
    held = n > INT64_MAX - held ? INT64_MAX : held + n;
    int rc = tok_reserve(w, held);
    for (int64_t i = 0; !rc && i < st->units; i++) {
        ref_unit *u = &w->u[i];
        rc = rows_reserve(st, u, n < st->r.raw_cap - u->raw_n ? u->raw_n + n : st->r.raw_cap,
                          n < st->r.keys_cap - u->keys_n ? u->keys_n + n : st->r.keys_cap);
    }
    if (rc)
        return rc;
    w->gate_on = t->gate != NULL;
    for (int64_t i = 0; i < st->units; i++) {
        ref_unit *u = &w->u[i];
        for (int64_t j = 0; j < n; j++) {
            gather_token(st, w, u, n, j, t);
            step(st, w, u, st->position + j, t->o != NULL);
            scatter_token(st, w, u, n, j, t);
        }
    }
    return STILL_OK;
}

/* ---- accounting, serialization, census ------------------------------------- */

static size_t ref_bytes(const still_state *st)
{
    const ref_impl *w = st->impl;
    const int64_t d = st->r.shape.dim_qk, dv = st->r.shape.dim_v;
    size_t total = sizeof *w + (size_t)st->units * (sizeof *w->u + w->fixed_bytes) +
                   w->scratch_bytes + w->tok_bytes;
    for (int64_t i = 0; i < st->units; i++) {
        const ref_unit *u = &w->u[i];
        total += (size_t)u->cache_cap * (size_t)(d + dv + 2) * sizeof(double);
        total += ((size_t)u->raw_room * (size_t)(d + dv + 1) + (size_t)u->keys_room * (size_t)d) *
                 sizeof(double);
    }
    return total;
}

/* The key window (the last min(P, w) keys) is serialized without the rows
 * that are raw tokens too (lib/state.h): its first `older` rows. */
static int64_t window_rows(const still_state *st, const ref_unit *u)
{
    return u->keys_n < st->r.w ? u->keys_n : st->r.w;
}

static int64_t older_rows(const still_state *st, const ref_unit *u)
{
    int64_t n = window_rows(st, u) - u->raw_n;
    return n > 0 ? n : 0;
}

static void ref_get_counts(const still_state *st, int64_t unit, still__unit_counts *c)
{
    const ref_unit *u = &((const ref_impl *)st->impl)->u[unit];
    c->cache_n = u->cache_n;
    c->raw_n = u->raw_n;
    c->keys_n = older_rows(st, u);
    c->folded = u->folded;
}

static int ref_set_counts(still_state *st, int64_t unit, const still__unit_counts *c)
{
    ref_unit *u = &((ref_impl *)st->impl)->u[unit];
    const int64_t P = c->cache_n + c->raw_n + c->folded, window = P < st->r.w ? P : st->r.w;
    int rc = cache_reserve(st, u, c->cache_n);
    if (!rc)
        rc = rows_reserve(st, u, c->raw_n, window);
    if (rc)
        return rc;
    u->cache_n = c->cache_n;
    u->raw_n = c->raw_n;
    u->keys_n = P < st->r.w ? P : st->r.w; /* the window; filled by finish_load */
    u->folded = c->folded;
    return STILL_OK;
}

/* The window's rows that are raw tokens: copied from the raw keys. */
static int ref_finish_load(still_state *st, int64_t unit)
{
    ref_unit *u = &((ref_impl *)st->impl)->u[unit];
    const int64_t d = st->r.shape.dim_qk, older = older_rows(st, u);
    const int64_t from_raw = u->keys_n - older;
    memcpy(u->keys + older * d, u->raw_k + (u->raw_n - from_raw) * d,
           (size_t)(from_raw * d) * sizeof(double));
    return STILL_OK;
}

static int64_t ref_raw_count(const still_state *st, int64_t P)
{
    if (st->r.engine == STILL__ENGINE_WINDOW) /* folded token by token */
        return P < st->r.w ? P : st->r.w;
    return still__state_split_raw_count(st, P);
}

static int ref_spans(still_state *st, int64_t unit, still__span *sp)
{
    ref_unit *u = &((ref_impl *)st->impl)->u[unit];
    const int64_t d = st->r.shape.dim_qk, dv = st->r.shape.dim_v, m = st->r.m;
    const int64_t nq = st->unit_heads;
    still__span list[] = {
        {u->cache_k, u->cache_n * d, STILL__SPAN_F64, 0},
        {u->cache_v, u->cache_n * dv, STILL__SPAN_F64, 0},
        {u->cache_sigma, u->cache_n, STILL__SPAN_F64, 1},
        {u->cache_pos, u->cache_n, STILL__SPAN_I64, 0},
        {u->raw_k, u->raw_n * d, STILL__SPAN_F64, 0},
        {u->raw_v, u->raw_n * dv, STILL__SPAN_F64, 0},
        {u->raw_sigma, u->raw_n, STILL__SPAN_F64, 1},
        {u->keys + (u->keys_n - window_rows(st, u)) * d, older_rows(st, u) * d,
         STILL__SPAN_F64, 0},
        {u->S, nq * m * dv, STILL__SPAN_F64, 0},
        {u->z, nq * m, STILL__SPAN_F64, 0},
    };
    int n = (int)(sizeof list / sizeof list[0]);
    memcpy(sp, list, sizeof list);
    return n;
}

static void ref_census(const still_state *st, int64_t b, int64_t hq, still__census *c,
                       int64_t *cache_pos)
{
    const still__resolved *r = &st->r;
    const int64_t unit = r->per_kv ? b * r->shape.heads_kv + hq / r->group
                                   : b * r->shape.heads_q + hq;
    const ref_unit *u = &((const ref_impl *)st->impl)->u[unit];
    c->cached = u->cache_n;
    c->raw = u->raw_n;
    c->raw_exact = r->engine == STILL__ENGINE_WINDOW || r->L > 0 ? u->raw_n : 0;
    c->folded = u->folded;
    c->raw_first = st->position - u->raw_n;
    if (cache_pos && u->cache_n) /* window routing has no cache array: no memcpy from NULL */
        memcpy(cache_pos, u->cache_pos, (size_t)u->cache_n * sizeof(int64_t));
}

const still__state_ops still__ref_state_ops = {
    .init = ref_init,
    .fini = ref_fini,
    .append = ref_append,
    .bytes = ref_bytes,
    .get_counts = ref_get_counts,
    .set_counts = ref_set_counts,
    .spans = ref_spans,
    .finish_load = ref_finish_load,
    .raw_count = ref_raw_count,
    .census = ref_census,
};
