/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* driver.c -- the chunked STILL driver of the fast path (SPEC §4-6,
 * Algorithm 1), one unit (lib/fast.h) at a time.
 *
 * A block of tokens is cut at chunk boundaries into segments.  Before the
 * first query of chunk c is processed, chunk c - max(L,1) is split (top-k to
 * the cache, the rest folded into S, z; then the cap's evictions), or for
 * routing `window` the keys that left every window of chunk c are folded.
 * A segment then appends its keys to the raw history and, per query head:
 *   - sigma of its tokens from the logits of their windows (SPEC §4);
 *   - the exact branch: online softmax over the cache, then over the raw
 *     tokens, tile by tile (SPEC §6 E_t);
 *   - the linear branch: phi_q^T S, phi_q^T z, plus the raw tokens that are
 *     linear (L = 0: the current chunk; `window`: left of the window);
 *   - the gated shared-normalizer combination (SPEC §6, App. A.2).
 * Products are our own kernels (simd/), never BLAS: they run inside the
 * OpenMP regions of the callers, where Debian's pthread OpenBLAS would
 * start its own threads on top of ours (CONVENTIONS), and at these shapes
 * our kernels are faster anyway.  bench/bench_kernels, one core, quiet
 * machine (GFLOP/s; AVX-512 kernels vs cblas_sgemm with Debian's default
 * Haswell core / with OPENBLAS_CORETYPE=SkylakeX):
 *   logits 256 keys x 64 queries x d 128    219  vs 102 / 187
 *   P V    64 x dv 128 x 256 keys           195  vs  99 / 169
 *   W x    64 x f 128 x d 128               205  vs  98 / 167
 *   phi S  64 x dv 128 x m 256              208  vs  99 / 170
 *   fold   m 256 x dv 128 x 64              199  vs 106 / 192
 * (the FMA peak of one core is 224; our AVX2 kernels reach 92-98).
 *
 * Orientation: logits are formed keys x queries (A = key rows as stored,
 * B = the segment's queries, scaled and transposed once), so no key array
 * is ever transposed and each query's reductions run down its column in
 * key order -- the same order for one query (decode) as for 64 (prefill).
 */
#include "fast.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KEY_TILE 256 /* keys per online-softmax tile */

static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

/* saturated at INT64_MAX (sizes are checked again when allocating) */
#define sat_mul still__sat_mul
#define sat_add still__sat_add

/* ---- the context ------------------------------------------------------------- */

static float *floats(size_t n, int *rc)
{
    size_t bytes;
    float *p;
    if (*rc)
        return NULL;
    if (still__mul_size(n ? n : 1, sizeof(float), &bytes)) {
        *rc = STILL_E_OVERFLOW;
        return NULL;
    }
    if (!(p = malloc(bytes)))
        *rc = STILL_E_NOMEM;
    return p;
}

/* SPEC §2 parameters of one map in float: W transposed (the B of a gemm),
 * b, and the unit Householder vector û = u / max(||u||, 1e-6). */
static int map_init(const still_feature_map *fm, int64_t f, int64_t H, int64_t d,
                    still__fast_map *out)
{
    int rc = STILL_OK;
    size_t n;
    out->f = f;
    out->WT = out->b = out->uhat = NULL;
    if (!fm)
        return STILL_OK;
    if (fm->W) {
        if (still__mul3_size((size_t)H, (size_t)f, (size_t)d, &n))
            return STILL_E_OVERFLOW;
        if (!(out->WT = floats(n, &rc)))
            return rc;
        for (int64_t h = 0; h < H; h++)
            for (int64_t o = 0; o < f; o++)
                for (int64_t p = 0; p < d; p++)
                    out->WT[(h * d + p) * f + o] = (float)fm->W[(h * f + o) * d + p];
    }
    if (fm->b) {
        if (!(out->b = floats((size_t)(H * f), &rc)))
            return rc;
        for (int64_t i = 0; i < H * f; i++)
            out->b[i] = (float)fm->b[i];
    }
    if (fm->u) {
        if (!(out->uhat = floats((size_t)(H * d), &rc)))
            return rc;
        for (int64_t h = 0; h < H; h++) {
            const double *u = fm->u + h * d;
            double s = 0.0;
            for (int64_t p = 0; p < d; p++)
                s += u[p] * u[p];
            double inv = 1.0 / fmax(sqrt(s), 1e-6);
            for (int64_t p = 0; p < d; p++)
                out->uhat[h * d + p] = (float)(u[p] * inv);
        }
    }
    return STILL_OK;
}

static void map_free(still__fast_map *m)
{
    free(m->WT);
    free(m->b);
    free(m->uhat);
    m->WT = m->b = m->uhat = NULL;
}

void still__fast_ctx_free(still__fast_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->fk.WT != ctx->fq.WT || ctx->fk.b != ctx->fq.b || ctx->fk.uhat != ctx->fq.uhat)
        map_free(&ctx->fk);
    map_free(&ctx->fq);
    free(ctx->omega);
    ctx->omega = NULL;
}

int still__fast_ctx_init(still__fast_ctx *ctx, const still__resolved *r,
                         const still_params *params, const still__kernels *kern,
                         int64_t max_len)
{
    const int64_t H = r->shape.heads_q, d = r->shape.dim_qk, C = r->C;
    int rc;

    memset(ctx, 0, sizeof *ctx);
    ctx->r = *r;
    ctx->kern = kern;
    ctx->max_len = max_len;
    ctx->nh = r->per_kv ? r->group : 1;
    ctx->Ls = r->Ls;
    /* history rows: the raw tokens (at most Ls chunks, or w + C with routing
     * `window`), the last w keys, and one segment of up to C new rows */
    int64_t Ce = imin(C, max_len), we = imin(r->w, max_len);
    int64_t raw = imin(sat_mul(ctx->Ls, Ce), max_len);
    int64_t span = sat_add(imax(raw, sat_add(we, Ce)), Ce);
    /* slack for 8 chunks: the rows kept move down once per 8 chunks */
    ctx->hist_cap = sat_add(span, imax(span, sat_mul(8, Ce)));
    ctx->win_rows = sat_add(Ce, we);
    if (ctx->hist_cap > ((int64_t)1 << 40) || ctx->win_rows > ((int64_t)1 << 40))
        return STILL_E_OVERFLOW;
    ctx->sigma_for_state = r->engine != STILL__ENGINE_WINDOW && r->k > 0 &&
                           (r->max_sel > 0 || r->k < C);

    still_params def;
    if (!params) {
        still_params_default(&def);
        params = &def;
    }
    if ((rc = map_init(&params->fq, r->f_q, H, d, &ctx->fq)))
        goto fail;
    if (params->fk_tied)
        ctx->fk = ctx->fq;
    else if ((rc = map_init(&params->fk, r->f_k, H, d, &ctx->fk)))
        goto fail;
    if (params->window_w) { /* SPEC §6: ω = sigmoid(w_h) */
        rc = STILL_OK;
        if (!(ctx->omega = floats((size_t)H, &rc)))
            goto fail;
        for (int64_t h = 0; h < H; h++) {
            double x = params->window_w[h];
            ctx->omega[h] = (float)(x >= 0.0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)));
        }
    }
    return STILL_OK;
fail:
    still__fast_ctx_free(ctx);
    return rc;
}

/* ---- unit memory ------------------------------------------------------------- */

/* Sizes of the fixed arrays of a unit, in elements. */
typedef struct unit_sizes {
    size_t hk, hv, hphi, hsig, S, z, total_bytes;
} unit_sizes;

static int unit_sizes_of(const still__fast_ctx *ctx, unit_sizes *s)
{
    const still__resolved *r = &ctx->r;
    const size_t cap = (size_t)ctx->hist_cap, d = (size_t)r->shape.dim_qk,
                 dv = (size_t)r->shape.dim_v, m = (size_t)r->m, nh = (size_t)ctx->nh;
    size_t fl;
    if (still__mul_size(cap, d, &s->hk) || still__mul_size(cap, dv, &s->hv) ||
        still__mul3_size(nh, cap, m, &s->hphi) || still__mul3_size(nh, m, dv, &s->S) ||
        still__mul_size(nh, m, &s->z))
        return STILL_E_OVERFLOW;
    s->hsig = cap;
    fl = s->hk + s->hv;
    if (fl < s->hk || fl + s->hphi < fl || fl + s->hphi + s->S < fl + s->hphi)
        return STILL_E_OVERFLOW;
    fl += s->hphi + s->S;
    if (fl + s->z < fl || (fl + s->z) > SIZE_MAX / sizeof(float) - s->hsig * sizeof(double))
        return STILL_E_OVERFLOW;
    fl += s->z;
    s->total_bytes = s->hsig * sizeof(double) + fl * sizeof(float);
    return STILL_OK;
}

int still__fast_unit_init(const still__fast_ctx *ctx, int64_t b, int64_t hq0,
                          still__fast_unit *u)
{
    unit_sizes s;
    int rc;
    memset(u, 0, sizeof *u);
    u->b = b;
    u->hq0 = hq0;
    u->hk = hq0 / ctx->r.group;
    if ((rc = unit_sizes_of(ctx, &s)))
        return rc;
    if (!(u->fixed = calloc(1, s.total_bytes))) /* S = 0, z = 0 */
        return STILL_E_NOMEM;
    u->hist_sigma = u->fixed; /* doubles first: aligned */
    float *p = (float *)(u->hist_sigma + s.hsig);
    u->hist_k = p, p += s.hk;
    u->hist_v = p, p += s.hv;
    u->hist_phik = p, p += s.hphi;
    u->S = p, p += s.S;
    u->z = p;
    return STILL_OK;
}

void still__fast_unit_free(still__fast_unit *u)
{
    if (!u)
        return;
    free(u->fixed);
    free(u->cache_block);
    free(u->ring_kp);
    memset(u, 0, sizeof *u);
}

int still__fast_unit_reserve(const still__fast_ctx *ctx, still__fast_unit *u, int64_t need)
{
    const int64_t d = ctx->r.shape.dim_qk, dv = ctx->r.shape.dim_v;
    size_t per, bytes;
    if (need <= u->cache_cap)
        return STILL_OK;
    if (need > INT64_MAX - STILL__PANEL) /* a saturated need */
        return STILL_E_OVERFLOW;
    int64_t cap = imax(need, imax(2 * u->cache_cap, 16));
    cap = imax(need, imin(cap, ctx->r.cache_cap)); /* never more held */
    cap = (cap + STILL__PANEL - 1) / STILL__PANEL * STILL__PANEL; /* whole panels */
    /* k, packed k, v, sigma, position and the eviction mark of each entry */
    per = (size_t)(2 * d + dv) * sizeof(float) + sizeof(double) + sizeof(int64_t) + 1;
    if (still__mul_size((size_t)cap, per, &bytes))
        return STILL_E_OVERFLOW;
    void *block = malloc(bytes);
    if (!block)
        return STILL_E_NOMEM;
    double *sigma = block;
    int64_t *pos = (int64_t *)(sigma + cap);
    float *k = (float *)(pos + cap), *kp = k + cap * d, *v = kp + cap * d;
    uint8_t *out = (uint8_t *)(v + cap * dv);
    if (u->cache_n) {
        memcpy(sigma, u->cache_sigma, (size_t)u->cache_n * sizeof *sigma);
        memcpy(pos, u->cache_pos, (size_t)u->cache_n * sizeof *pos);
        memcpy(k, u->cache_k, (size_t)(u->cache_n * d) * sizeof *k);
        memcpy(v, u->cache_v, (size_t)(u->cache_n * dv) * sizeof *v);
    }
    if (u->cache_kp_n) /* whole panels: the zeroed tail lanes too */
        memcpy(kp, u->cache_k + u->cache_cap * d,
               (size_t)((u->cache_kp_n + STILL__PANEL - 1) / STILL__PANEL * STILL__PANEL * d) *
                   sizeof *kp);
    free(u->cache_block);
    u->cache_block = block;
    u->cache_sigma = sigma, u->cache_pos = pos, u->cache_k = k, u->cache_v = v;
    u->cache_out = out;
    u->cache_cap = cap;
    return STILL_OK;
}

size_t still__fast_unit_bytes(const still__fast_ctx *ctx, const still__fast_unit *u)
{
    unit_sizes s;
    const int64_t d = ctx->r.shape.dim_qk, dv = ctx->r.shape.dim_v;
    size_t cache = (size_t)u->cache_cap *
                   ((size_t)(2 * d + dv) * sizeof(float) + sizeof(double) + sizeof(int64_t) + 1);
    if (u->ring_kp)
        cache += (size_t)STILL__RING * (size_t)d * sizeof(float);
    return (unit_sizes_of(ctx, &s) ? 0 : s.total_bytes) + cache;
}

/* ---- scratch ----------------------------------------------------------------- */

void still__fast_scratch_free(still__fast_scratch *ws)
{
    if (!ws)
        return;
    free(ws->block);
    memset(ws, 0, sizeof *ws);
}

int still__fast_scratch_init(const still__fast_ctx *ctx, still__fast_scratch *ws)
{
    const still__resolved *r = &ctx->r;
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v, m = r->m, f = r->f_q;
    const int64_t Cn = imin(r->C, ctx->max_len), nh = ctx->nh;
    /* element counts (floats), in the order they are placed */
    /* saturated products: one beyond INT64_MAX fails the size check below
     * (a restored state's C and window may be huge, SPEC §7) */
    const int64_t cnt[] = {
        sat_mul(d, Cn),             /* qst */
        sat_mul(KEY_TILE, Cn),      /* tile */
        sat_mul(ctx->win_rows, Cn), /* win */
        sat_mul(Cn, dv),            /* acc */
        sat_mul(Cn, dv),            /* lin */
        sat_mul(Cn, m),             /* phiq */
        sat_mul(m, Cn),             /* phiqt */
        sat_mul(Cn, d),             /* xh */
        sat_mul(Cn, f),             /* zf */
        Cn, Cn, Cn, Cn,             /* mrow, lrow, alpha, den */
        sat_mul(nh, Cn),            /* sig */
        sat_mul(Cn, d), sat_mul(Cn, dv), sat_mul(Cn, m), /* ek, ev, ephi */
        sat_mul(2 * dv, Cn), sat_mul(2, Cn), /* dacc, dl: doubles */
    };
    size_t total = 0, n;
    memset(ws, 0, sizeof *ws);
    for (size_t i = 0; i < sizeof cnt / sizeof cnt[0]; i++) {
        if (cnt[i] < 0 || (size_t)cnt[i] > SIZE_MAX / 4 - total - 64)
            return STILL_E_OVERFLOW;
        total += ((size_t)cnt[i] + 15) & ~(size_t)15; /* 64-byte steps */
    }
    /* then C bytes: the selection of a chunk */
    if (still__mul_size(total, sizeof(float), &n) || n > SIZE_MAX - 64 ||
        (size_t)Cn > SIZE_MAX - n - 64)
        return STILL_E_OVERFLOW;
    n += 64 + (size_t)Cn;
    if (!(ws->block = malloc(n)))
        return STILL_E_NOMEM;
    uintptr_t base = ((uintptr_t)ws->block + 63) & ~(uintptr_t)63;
    float *p = (float *)base;
    float **dst[] = {&ws->qst, &ws->tile, &ws->win, &ws->acc, &ws->lin, &ws->phiq,
                     &ws->phiqt, &ws->xh, &ws->zf, &ws->mrow, &ws->lrow, &ws->alpha,
                     &ws->den, &ws->sig, &ws->ek, &ws->ev, &ws->ephi};
    size_t i = 0;
    for (; i < sizeof dst / sizeof dst[0]; i++) {
        *dst[i] = p;
        p += ((size_t)cnt[i] + 15) & ~(size_t)15;
    }
    ws->dacc = (double *)(void *)p; /* 64-byte aligned, as every array */
    p += ((size_t)cnt[i++] + 15) & ~(size_t)15;
    ws->dl = (double *)(void *)p;
    p += ((size_t)cnt[i++] + 15) & ~(size_t)15;
    ws->sel = (uint8_t *)p;
    return STILL_OK;
}

/* ---- helpers ----------------------------------------------------------------- */

static float *hist_row_k(const still__fast_ctx *ctx, const still__fast_unit *u, int64_t pos)
{
    return u->hist_k + (pos - u->hist_first) * ctx->r.shape.dim_qk;
}
static float *hist_row_v(const still__fast_ctx *ctx, const still__fast_unit *u, int64_t pos)
{
    return u->hist_v + (pos - u->hist_first) * ctx->r.shape.dim_v;
}
static float *hist_row_phik(const still__fast_ctx *ctx, const still__fast_unit *u, int64_t i,
                            int64_t pos)
{
    return u->hist_phik + (i * ctx->hist_cap + pos - u->hist_first) * ctx->r.m;
}

/* SPEC §2: phi [n][ldphi] of n <= C rows X [n][ldx] with the map of query
 * head h: Householder, W x' + b, NP rescale, act, floor. */
static void feature_rows(const still__fast_ctx *ctx, const still__fast_map *fm, int64_t h,
                         int64_t n, const float *X, int64_t ldx, float *phi, int64_t ldphi,
                         still__fast_scratch *ws)
{
    const still__kernels *K = ctx->kern;
    const int64_t d = ctx->r.shape.dim_qk, f = fm->f;
    const float *xp = X, *zp;
    int64_t ldp = ldx, ldz;

    if (fm->uhat) {
        K->householder_rows(n, d, X, ldx, fm->uhat + h * d, ws->xh, d);
        xp = ws->xh;
        ldp = d;
    }
    zp = xp;
    ldz = ldp;
    if (fm->WT) {
        K->gemm(n, f, d, xp, ldp, 1, fm->WT + h * d * f, f, ws->zf, f, 0);
        zp = ws->zf;
        ldz = f;
    }
    if (fm->b) {
        const float *bias = fm->b + h * f;
        for (int64_t i = 0; i < n; i++)
            for (int64_t o = 0; o < f; o++)
                ws->zf[i * f + o] = zp[i * ldz + o] + bias[o];
        zp = ws->zf;
        ldz = f;
    }
    /* a z or zhat that is not finite (W x + b beyond float, ||x|| beyond
     * float) would leave the act and the floor a valid-looking phi */
    if (!K->npmap_rows(n, d, f, ctx->r.act, ctx->r.npmap, X, ldx, zp, ldz, phi, ldphi))
        ws->overflow = 1;
}

void still__fast_topk(const double *sigma, int64_t C, int64_t k, uint8_t *sel)
{
    memset(sel, k >= C, (size_t)C);
    if (k >= C)
        return;
    for (int64_t round = 0; round < k; round++) {
        int64_t best = -1;
        for (int64_t j = 0; j < C; j++) /* strictly larger: ties keep the smaller j */
            if (!sel[j] && (best < 0 || sigma[j] > sigma[best]))
                best = j;
        sel[best] = 1;
    }
}

/* SPEC §3: S += sum_j phi_k(k_j) v_j^T, z += sum_j phi_k(k_j) over rows j < n
 * of phik [n][m] and v [n][ldv], in row order, for query head i. */
static void fold_rows(const still__fast_ctx *ctx, still__fast_unit *u, int64_t i,
                      const float *phik, const float *v, int64_t ldv, int64_t n)
{
    const int64_t m = ctx->r.m, dv = ctx->r.shape.dim_v;
    if (ctx->r.rest == STILL_REST_DROP) /* SPEC §12: the tokens are only counted */
        return;
    ctx->kern->gemm(m, dv, n, phik, 1, m, v, ldv, u->S + i * m * dv, dv, 1);
    ctx->kern->colsum_acc(n, m, phik, m, u->z + i * m);
}

/* SPEC §5 cap: the `ne` cached tokens of lowest ranking sigma (ties: the
 * older) leave the cache and fold into S, z of every head. */
static void evict(const still__fast_ctx *ctx, still__fast_unit *u, still__fast_scratch *ws,
                  int64_t ne)
{
    const int64_t d = ctx->r.shape.dim_qk, dv = ctx->r.shape.dim_v, m = ctx->r.m;
    uint8_t *out = u->cache_out;
    memset(out, 0, (size_t)u->cache_n);
    for (int64_t e = 0; e < ne; e++) {
        int64_t worst = -1;
        for (int64_t j = 0; j < u->cache_n; j++) /* strictly lower: ties keep the older */
            if (!out[j] && (worst < 0 || u->cache_sigma[j] < u->cache_sigma[worst]))
                worst = j;
        out[worst] = 1;
    }
    int64_t n = 0, kept = 0;
    for (int64_t j = 0; j < u->cache_n; j++) {
        if (out[j]) { /* gathered in position order */
            if (j < u->cache_kp_n) /* the packed rows from here on move */
                u->cache_kp_n = j;
            memcpy(ws->ek + n * d, u->cache_k + j * d, (size_t)d * sizeof(float));
            memcpy(ws->ev + n * dv, u->cache_v + j * dv, (size_t)dv * sizeof(float));
            n++;
        } else {
            if (kept != j) {
                memmove(u->cache_k + kept * d, u->cache_k + j * d, (size_t)d * sizeof(float));
                memmove(u->cache_v + kept * dv, u->cache_v + j * dv, (size_t)dv * sizeof(float));
                u->cache_sigma[kept] = u->cache_sigma[j];
                u->cache_pos[kept] = u->cache_pos[j];
            }
            kept++;
        }
    }
    u->cache_n = kept;
    for (int64_t i = 0; i < ctx->nh; i++) {
        feature_rows(ctx, &ctx->fk, u->hq0 + i, n, ws->ek, d, ws->ephi, m, ws);
        fold_rows(ctx, u, i, ws->ephi, ws->ev, dv, n);
    }
    u->folded += n;
}

/* SPEC §5-6: what happens when the first query of chunk c arrives. */
static void chunk_arrival(const still__fast_ctx *ctx, still__fast_unit *u,
                          still__fast_scratch *ws, int64_t c, const uint8_t *forced)
{
    const still__resolved *r = &ctx->r;
    const int64_t C = r->C, d = r->shape.dim_qk, dv = r->shape.dim_v, m = r->m;

    if (r->engine == STILL__ENGINE_WINDOW) { /* keys left of every window of chunk c */
        int64_t first = imax(0, c * C - r->w + 1);
        /* SPEC §13: the sinks among them join the cache (reserved by the
         * caller), in position order */
        for (; u->raw_first < imin(first, r->sinks); u->raw_first++) {
            int64_t s = u->cache_n++;
            memcpy(u->cache_k + s * d, hist_row_k(ctx, u, u->raw_first), (size_t)d * sizeof(float));
            memcpy(u->cache_v + s * dv, hist_row_v(ctx, u, u->raw_first), (size_t)dv * sizeof(float));
            u->cache_sigma[s] = 0.0; /* sinks are not ranked */
            u->cache_pos[s] = u->raw_first;
        }
        if (first > u->raw_first) {
            for (int64_t i = 0; i < ctx->nh; i++)
                fold_rows(ctx, u, i, hist_row_phik(ctx, u, i, u->raw_first),
                          hist_row_v(ctx, u, u->raw_first), dv, first - u->raw_first);
            u->folded += first - u->raw_first;
            u->raw_first = first;
        }
        return;
    }
    const int64_t cs = c - ctx->Ls; /* the chunk that ages past L */
    if (cs < 0)
        return;
    const int64_t p0 = cs * C; /* <= c * C: no overflow once cs >= 0 */
    const double *rs = u->hist_sigma + (p0 - u->hist_first);
    uint8_t *sel = ws->sel;
    int64_t nsel = 0;
    if (forced)
        for (int64_t j = 0; j < C; j++)
            sel[j] = forced[p0 + j] != 0;
    else
        still__fast_topk(rs, C, r->k, sel);
    for (int64_t j = 0; j < C; j++) {
        if (!sel[j])
            continue;
        int64_t s = u->cache_n++; /* reserved by the caller */
        memcpy(u->cache_k + s * d, hist_row_k(ctx, u, p0 + j), (size_t)d * sizeof(float));
        memcpy(u->cache_v + s * dv, hist_row_v(ctx, u, p0 + j), (size_t)dv * sizeof(float));
        u->cache_sigma[s] = rs[j];
        u->cache_pos[s] = p0 + j;
        nsel++;
    }
    /* the rest fold into S, z: the selected rows are zeroed (they are dead
     * once split) and contribute exact zeros to the chains */
    for (int64_t i = 0; i < ctx->nh; i++) {
        float *phik = hist_row_phik(ctx, u, i, p0);
        for (int64_t j = 0; j < C; j++)
            if (sel[j])
                memset(phik + j * m, 0, (size_t)m * sizeof(float));
        if (nsel < C)
            fold_rows(ctx, u, i, phik, hist_row_v(ctx, u, p0), dv, C);
    }
    u->folded += C - nsel;
    u->raw_first = p0 + C;
    if (r->max_sel > 0 && u->cache_n > r->max_sel)
        evict(ctx, u, ws, u->cache_n - r->max_sel);
}

/* The history must keep the raw tokens and the last w keys (SPEC §4). */
static int64_t keep_from(const still__fast_ctx *ctx, const still__fast_unit *u)
{
    return imax(0, imin(u->raw_first, u->pos - ctx->r.w));
}

/* Makes room for n more history rows, dropping rows no longer needed. */
static void hist_make_room(const still__fast_ctx *ctx, still__fast_unit *u, int64_t n)
{
    const int64_t d = ctx->r.shape.dim_qk, dv = ctx->r.shape.dim_v, m = ctx->r.m;
    if (u->hist_n + n <= ctx->hist_cap)
        return;
    const int64_t drop = keep_from(ctx, u) - u->hist_first, keep = u->hist_n - drop;
    if (drop <= 0)
        return;
    memmove(u->hist_k, u->hist_k + drop * d, (size_t)(keep * d) * sizeof(float));
    memmove(u->hist_v, u->hist_v + drop * dv, (size_t)(keep * dv) * sizeof(float));
    memmove(u->hist_sigma, u->hist_sigma + drop, (size_t)keep * sizeof(double));
    for (int64_t i = 0; i < ctx->nh; i++) {
        float *phik = u->hist_phik + i * ctx->hist_cap * m;
        memmove(phik, phik + drop * m, (size_t)(keep * m) * sizeof(float));
    }
    u->hist_first += drop;
    u->hist_n = keep;
}

/* SPEC App. A.1: the authors' score of the token at position t from the
 * logits of its window, column S (stride lds) whose row 0 is key0. */
static float authors_saliency(const float *S, int64_t lds, int64_t key0, int64_t t, int64_t l)
{
    const double eps = 1e-8;
    const int64_t c = t / l, i = t % l;
    /* slots 0..last hold keys; in chunk 0 the slots after i are empty */
    const int64_t last = c == 0 ? i : l - 1;
    double m1 = -INFINITY, m2 = -INFINITY, z1 = 0.0, z2 = 0.0, sigma = 0.0;
    if (t == 0)
        return INFINITY;
#define SLOT_KEY(j) ((j) <= i ? c * l + (j) : (c - 1) * l + (j))
#define SLOT_LOGIT(key) ((double)S[((key) - key0) * lds])
    for (int64_t j = 0; j <= last; j++) {
        m1 = fmax(m1, SLOT_LOGIT(SLOT_KEY(j)));
        if (j != i)
            m2 = fmax(m2, SLOT_LOGIT(SLOT_KEY(j)));
    }
    for (int64_t j = 0; j <= last; j++) {
        z1 += exp(SLOT_LOGIT(SLOT_KEY(j)) - m1);
        if (j != i)
            z2 += exp(SLOT_LOGIT(SLOT_KEY(j)) - m2);
    }
    for (int64_t j = 0; j <= last; j++) {
        double a1 = exp(SLOT_LOGIT(SLOT_KEY(j)) - m1) / z1;
        double a2 = j == i ? 0.0 : exp(SLOT_LOGIT(SLOT_KEY(j)) - m2) / z2;
        double p = (a1 + eps) / (1.0 + (double)l * eps);
        double pw = (a2 + eps) / (1.0 + (double)l * eps + 1.0 / (double)l);
        if (j == l - 1)
            pw = 1.0 / (double)l + eps; /* the slot overwrite */
        sigma += p * log(p / (pw + eps));
    }
    if (last < l - 1) {
        /* the empty slots last+1 .. l-1 (a1 = a2 = 0) all give the same
         * term, the overwritten slot l-1 its own: added in closed form, so
         * a token costs O(keys held), not O(l) (a huge chunk in a restored
         * state stream must not make each token cost O(C)) */
        const double p = eps / (1.0 + (double)l * eps);
        const double pw = eps / (1.0 + (double)l * eps + 1.0 / (double)l);
        sigma += (double)(l - 2 - last) * (p * log(p / (pw + eps)));
        sigma += p * log(p / (1.0 / (double)l + eps + eps));
    }
#undef SLOT_KEY
#undef SLOT_LOGIT
    return (float)sigma;
}

/* sigma [n] of the segment's queries (qst packed) at positions a..a+n-1
 * (SPEC §4 or App. A.1), from the logits of keys w0 = max(0, a-w+1) ..
 * a+n-1: those of the raw tile `band` (first key band0) when it holds them,
 * else computed into ws->win. */
static void segment_saliency(const still__fast_ctx *ctx, const still__fast_unit *u,
                             still__fast_scratch *ws, int64_t a, int64_t n, float *sig,
                             const float *band, int64_t band0)
{
    const still__resolved *r = &ctx->r;
    const int64_t w0 = imax(0, a - r->w + 1), rows = a + n - w0;
    const float *S = band ? band + (w0 - band0) * n : ws->win;
    if (!band)
        ctx->kern->gemm(rows, n, r->shape.dim_qk, hist_row_k(ctx, u, w0), r->shape.dim_qk, 1,
                        ws->qst, n, ws->win, n, 0);
    /* SPEC §10: the logits of the windows are finite (an overflowed one
     * would weigh 0 or nothing in p and p~, and sigma rank wrongly);
     * key w0 + i is in the windows of queries key - a .. key - a + w - 1 */
    int ok = 1;
    for (int64_t i = 0; i < rows; i++) {
        const int64_t base = w0 + i - a; /* r->w may be saturated at INT64_MAX */
        const int64_t lo = imax(0, base), hi = r->w >= n - base ? n : base + r->w;
        if (lo < hi)
            ok &= still__finite_f32(S + i * n + lo, hi - lo);
    }
    if (!ok)
        ws->overflow = 1;
    if (r->saliency == STILL_SALIENCY_SPEC)
        ctx->kern->saliency_cols(rows, n, S, n, w0, a, r->w, sig);
    else
        for (int64_t t = 0; t < n; t++)
            sig[t] = authors_saliency(S + t, n, w0, a + t, r->C);
}

/* The part of a raw-token tile T [tn][n] = A (keys k0.. as rows) · B
 * (queries a.., packed [Kd][n]) that can be visible: key k0+j is seen only
 * by queries t >= k0+j-a, so each group of 16 keys starts at its first
 * visible query (every entry left out is masked afterwards; each entry is
 * its own chain, so the bits of the others do not change). */
static void raw_tile_gemm(const still__kernels *K, int64_t tn, int64_t n, int64_t Kd,
                          const float *A, int64_t lda, const float *B, float *T, int64_t k0,
                          int64_t a)
{
    for (int64_t j0 = 0; j0 < tn; j0 += 16) {
        const int64_t c0 = imax(0, k0 + j0 - a);
        if (c0 < n)
            K->gemm(imin(16, tn - j0), n - c0, Kd, A + j0 * lda, lda, 1, B + c0, n,
                    T + j0 * n + c0, n, 0);
    }
}

/* acc [n][dv] += P^T V over a raw-token tile P [tn][n] (keys k0.., queries
 * a..): a group of 16 queries stops at its last query's key, since the
 * entries of later keys are exact zeros (masked) and end no chain. */
static void raw_tile_values(const still__kernels *K, int64_t tn, int64_t n, int64_t dv,
                            const float *P, const float *V, int64_t ldv, float *acc, int64_t k0,
                            int64_t a)
{
    for (int64_t t0 = 0; t0 < n; t0 += 16) {
        const int64_t cnt = imin(16, n - t0), keys = imin(tn, a + t0 + cnt - k0);
        if (keys > 0)
            K->gemm(cnt, dv, keys, P + t0, 1, n, V, ldv, acc + t0 * dv, dv, 1);
    }
}

/* One tile of the exact branch: logits in tile [tn][n] (masked -inf) and
 * their values v [tn][ldv]; raw (k0 >= 0: the keys k0.. of queries a..)
 * stops each query's values at its own position.
 *
 * Precision (SPEC §10, N <= 65536), as in lib/fast_teacher.c: the tile's
 * own sums lt = sum e^{s-m} (lrow) and sum e^{s-m} v (acc) are float
 * chains of at most KEY_TILE terms from zero; the running l and acc are
 * carried from tile to tile in double (dl, dacc), rescaled by alpha when
 * the maximum grows.  Carried in float, a large cache after a dominant key
 * (a needle, a sink) lost every later key whose weight fell under half an
 * ulp of l ~ 1 (tests/test_fast_precision.c).  A query with lt = 0 has no
 * visible entry in the tile (then alpha = 1 and its partial sums are +0):
 * it is left alone, so a query computed alone (decode) or in a block
 * (prefill) goes through the same operations. */
static void exact_tile(const still__fast_ctx *ctx, still__fast_scratch *ws, float *tile,
                       int64_t n, int64_t tn, const float *v, int64_t ldv, int64_t k0, int64_t a)
{
    const still__kernels *K = ctx->kern;
    const int64_t dv = ctx->r.shape.dim_v;
    memset(ws->lrow, 0, (size_t)n * sizeof(float));
    K->softmax_cols(tn, n, tile, n, ws->mrow, ws->lrow, ws->alpha);
    for (int64_t t0 = 0; t0 < n; t0 += 16) {
        const int64_t cnt = imin(16, n - t0);
        /* raw: a group of 16 queries stops at its last query's key, since
         * the entries of later keys are exact zeros (masked) */
        const int64_t keys = k0 >= 0 ? imin(tn, a + t0 + cnt - k0) : tn;
        if (keys <= 0)
            continue; /* no visible key in the tile: lt = 0 for the group */
        K->gemm(cnt, dv, keys, tile + t0, 1, n, v, ldv, ws->acc + t0 * dv, dv, 0);
        for (int64_t t = t0; t < t0 + cnt; t++) {
            if (ws->lrow[t] == 0.0f)
                continue;
            still__fast_carry(ws->dacc + t * dv, &ws->dl[t], ws->acc + t * dv, ws->lrow[t],
                              ws->alpha[t], dv);
        }
    }
}

/* The cache's keys packed in panels (simd/kernels.h gemv_panel; lib/fast.h:
 * behind cache_k in the cache block), brought up to date: whole panels of
 * 16 rows from the first stale one, by the transpose kernel (its scale 1
 * is exact), the rows of the last panel past cache_n zeroed. */
static const float *cache_panels(const still__fast_ctx *ctx, still__fast_unit *u)
{
    const int64_t d = ctx->r.shape.dim_qk, P = STILL__PANEL;
    float *kp = u->cache_k + u->cache_cap * d;
    if (u->cache_kp_n == u->cache_n) /* else the last partial panel is packed anew every step */
        return kp;
    for (int64_t j = u->cache_kp_n / P * P; j < u->cache_n; j += P) {
        const int64_t rows = imin(P, u->cache_n - j);
        float *pan = kp + j * d;
        ctx->kern->transpose(rows, d, u->cache_k + j * d, d, 1.0f, pan, P);
        for (int64_t p = 0; rows < P && p < d; p++)
            memset(pan + p * P + rows, 0, (size_t)(P - rows) * sizeof(float));
    }
    u->cache_kp_n = u->cache_n;
    return kp;
}

int still__fast_unit_ring(const still__fast_ctx *ctx, still__fast_unit *u)
{
    if (u->ring_kp)
        return STILL_OK;
    /* calloc: the lanes of rows never written are finite (panel filler) */
    if (!(u->ring_kp = calloc((size_t)STILL__RING * (size_t)ctx->r.shape.dim_qk, sizeof(float))))
        return STILL_E_NOMEM;
    u->ring_pos = 0;
    return STILL_OK;
}

/* The logits of ONE query (qst, position a) against the raw keys raw_first
 * .. a -- the band of segment() -- from the unit's ring of packed keys
 * (lib/fast.h), into out [.] from the band's panel start p0 (raw_first
 * rounded down to a panel; rows p0 .. raw_first-1 are scored and ignored);
 * returns the band, out + raw_first - p0, or NULL when the ring cannot be
 * allocated (the caller then uses the gemm: the same bits, simd/kernels.h
 * gemv_panel).  A gemm of one column runs one latency-bound chain per key
 * row; across keys the band costs ~1/4 (issue 4). */
static float *ring_band(const still__fast_ctx *ctx, still__fast_unit *u, int64_t a,
                        const float *x, float *out)
{
    const int64_t d = ctx->r.shape.dim_qk, P = STILL__PANEL, R = STILL__RING;
    if (still__fast_unit_ring(ctx, u)) /* a state's units have it from creation */
        return NULL;
    /* the positions not packed yet, of the last R (rows of older positions
     * are scored only as the panel's filler: any finite value) */
    for (int64_t p = imax(imax(u->ring_pos, u->hist_first), a + 1 - R); p <= a; p++) {
        const float *k = hist_row_k(ctx, u, p);
        float *pan = u->ring_kp + (p % R) / P * P * d + p % P;
        for (int64_t e = 0; e < d; e++)
            pan[e * P] = k[e];
    }
    u->ring_pos = a + 1;
    const int64_t p0 = u->raw_first / P * P, s0 = p0 % R, M = a + 1 - p0;
    const int64_t m1 = imin(M, R - s0); /* R is whole panels: both parts start one */
    ctx->kern->gemv_panel(m1, d, u->ring_kp + s0 * d, x, out);
    if (M > m1)
        ctx->kern->gemv_panel(M - m1, d, u->ring_kp, x, out + m1);
    return out + (u->raw_first - p0);
}

/* Keeps the entries of tile [tn][n] (keys k0.., queries a..) that are
 * visible (key <= q) and routed to the exact branch (want_exact) or to the
 * linear one (SPEC §6: among the raw tokens, all are exact for L >= 1, all
 * linear for L = 0, and with routing `window` the keys key > q - w are
 * exact); the others become `off`.  For one key the kept queries are one
 * range [lo, hi). */
static void mask_tile(const still__resolved *r, float *tile, int64_t tn, int64_t n, int64_t k0,
                      int64_t a, int want_exact, float off, still__fast_scratch *ws)
{
    int ok = 1;
    for (int64_t j = 0; j < tn; j++) {
        const int64_t rel = k0 + j - a; /* the query index of the key itself */
        int64_t lo = rel, hi = n;       /* visible: q >= key */
        if (r->engine == STILL__ENGINE_WINDOW) {
            /* exact iff q <= key + w - 1, i.e. t < rel + w, or the key is
             * a sink (SPEC §13) */
            int64_t edge = r->w > n - rel || k0 + j < r->sinks ? n : rel + r->w;
            if (want_exact)
                hi = edge;
            else
                lo = imax(lo, edge);
        } else if ((r->L > 0) != want_exact) {
            lo = n;
        }
        lo = imin(imax(lo, 0), n);
        hi = imin(imax(hi, lo), n);
        float *row = tile + j * n;
        for (int64_t t = 0; t < lo; t++)
            row[t] = off;
        for (int64_t t = hi; t < n; t++)
            row[t] = off;
        /* SPEC §10: a kept logit that overflowed to -inf would pass for a
         * masked entry (weight 0), +inf and NaN for nothing better */
        ok &= still__finite_f32(row + lo, hi - lo);
    }
    if (!ok)
        ws->overflow = 1;
}

/* The output of query head i of the unit for the segment a..a+n-1 (qst
 * packed): SPEC §6. */
static void segment_output(const still__fast_ctx *ctx, still__fast_unit *u,
                           still__fast_scratch *ws, const still__fast_block *blk, int64_t i,
                           int64_t off, int64_t a, int64_t n, float *band)
{
    const still__resolved *r = &ctx->r;
    const still__kernels *K = ctx->kern;
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v, m = r->m, b = a + n;
    const int64_t h = u->hq0 + i;
    const int raw_has_exact = r->engine == STILL__ENGINE_WINDOW || r->L > 0;
    const int raw_has_linear = r->rest == STILL_REST_LINEAR &&
                               (r->engine == STILL__ENGINE_WINDOW || r->L == 0);
    const int any_exact = u->cache_n > 0 || raw_has_exact; /* else E_t is empty */

    for (int64_t t = 0; t < n; t++) {
        ws->mrow[t] = -INFINITY;
        ws->dl[t] = 0.0;
    }
    if (any_exact)
        memset(ws->dacc, 0, (size_t)(n * dv) * sizeof(double));

    /* exact: the cache, then the raw tokens (SPEC §6 E_t).  One query
     * (decode) scores the cache from its packed copy, across keys: the
     * bits of the gemm (simd/kernels.h gemv_panel) at a fraction of the
     * time, since a gemm with one column runs one chain per key row. */
    const int packed = n == 1 && u->cache_n > 0;
    const float *cache_kp = packed ? cache_panels(ctx, u) : NULL;
    for (int64_t c0 = 0; c0 < u->cache_n; c0 += KEY_TILE) { /* KEY_TILE: whole panels */
        int64_t tn = imin(KEY_TILE, u->cache_n - c0);
        if (packed)
            K->gemv_panel(tn, d, cache_kp + c0 * d, ws->qst, ws->tile);
        else
            K->gemm(tn, n, d, u->cache_k + c0 * d, d, 1, ws->qst, n, ws->tile, n, 0);
        if (!still__finite_f32(ws->tile, tn * n)) /* every entry is seen (SPEC §10) */
            ws->overflow = 1;
        exact_tile(ctx, ws, ws->tile, n, tn, u->cache_v + c0 * dv, dv, -1, a);
    }
    if (raw_has_exact) {
        for (int64_t k0 = u->raw_first; k0 < b; k0 += KEY_TILE) {
            int64_t tn = imin(KEY_TILE, b - k0);
            if (r->engine == STILL__ENGINE_WINDOW && k0 + tn - 1 <= a - r->w && k0 >= r->sinks)
                continue; /* left of every window, no sink: no exact entry (a no-op tile) */
            float *tile = ws->tile;
            if (band && k0 == u->raw_first) /* computed for the saliency already */
                tile = band;
            else
                raw_tile_gemm(K, tn, n, d, hist_row_k(ctx, u, k0), d, ws->qst, tile, k0, a);
            mask_tile(r, tile, tn, n, k0, a, 1, -INFINITY, ws);
            exact_tile(ctx, ws, tile, n, tn, hist_row_v(ctx, u, k0), dv, k0, a);
        }
    }
    if (any_exact) {
        for (int64_t t = 0; t < n; t++) { /* the double carries, rounded once */
            ws->lrow[t] = (float)ws->dl[t];
            for (int64_t e = 0; e < dv; e++)
                ws->acc[t * dv + e] = (float)ws->dacc[t * dv + e];
        }
    } else { /* E_t empty: one zero row serves every query below */
        memset(ws->lrow, 0, (size_t)n * sizeof(float));
        memset(ws->acc, 0, (size_t)dv * sizeof(float));
    }

    /* linear: phi_q^T S, phi_q^T z, and the linear raw tokens (SPEC §3, §6) */
    const int have_linear = r->rest == STILL_REST_LINEAR && (u->folded > 0 || raw_has_linear);
    if (have_linear) {
        const float *q = blk->q + i * blk->q_hs + off * blk->q_ns;
        feature_rows(ctx, &ctx->fq, h, n, q, blk->q_ns, ws->phiq, m, ws);
        if (raw_has_linear) /* B of kappa = phi_q . phi_k */
            K->transpose(n, m, ws->phiq, m, 1.0f, ws->phiqt, n);
        if (u->folded > 0) {
            K->gemm(n, dv, m, ws->phiq, m, 1, u->S + i * m * dv, dv, ws->lin, dv, 0);
            /* phi_q^T z: a row over the queries when phi_q is transposed
             * (full vectors), else a column; the same chains either way */
            if (raw_has_linear)
                K->gemm(1, n, m, u->z + i * m, m, 1, ws->phiqt, n, ws->den, n, 0);
            else
                K->gemm(n, 1, m, ws->phiq, m, 1, u->z + i * m, 1, ws->den, 1, 0);
        } else {
            memset(ws->lin, 0, (size_t)(n * dv) * sizeof(float));
            memset(ws->den, 0, (size_t)n * sizeof(float));
        }
        if (raw_has_linear) {
            for (int64_t k0 = u->raw_first; k0 < b; k0 += KEY_TILE) {
                int64_t tn = imin(KEY_TILE, b - k0);
                if (r->engine == STILL__ENGINE_WINDOW && k0 > b - 1 - r->w)
                    break; /* inside every window: no linear entry (no-op tiles) */
                raw_tile_gemm(K, tn, n, m, hist_row_phik(ctx, u, i, k0), m, ws->phiqt, ws->tile,
                              k0, a);
                mask_tile(r, ws->tile, tn, n, k0, a, 0, 0.0f, ws);
                K->colsum_acc(tn, n, ws->tile, n, ws->den);
                raw_tile_values(K, tn, n, dv, ws->tile, hist_row_v(ctx, u, k0), dv, ws->lin, k0,
                                a);
            }
        }
    }

    /* SPEC §6: o = [ω Σ e^{s-m} v + g ⊙ (φ^T S)] / [ω Σ e^{s-m} + φ^T z + eps_den] */
    const float omega = ctx->omega ? ctx->omega[h] : 1.0f, eps_den = (float)r->eps_den;
    int den_bad = 0;
    for (int64_t t = 0; t < n; t++) {
        float *acc = ws->acc + (any_exact ? t * dv : 0), *lin = ws->lin + t * dv;
        float mt = ws->mrow[t], lt = ws->lrow[t];
        if (mt == -INFINITY) /* E_t empty: m_t = 0, nothing exact */
            mt = 0.0f, lt = 0.0f;
        if (r->phantom_sink && a + t < r->C) { /* App. A.2: C keys of logit 0, value 0 */
            if (mt < 0.0f) {
                float s = expf(mt);
                K->scale_row(dv, s, acc);
                lt *= s;
                mt = 0.0f;
            }
            lt += (float)r->C * expf(-mt);
        }
        float den = omega * lt + (have_linear ? ws->den[t] : 0.0f) + eps_den;
        den_bad |= !(fabsf(den) <= FLT_MAX); /* an infinite den makes o = 0 (SPEC §10) */
        if (den == 0.0f) /* SPEC §12: E_t empty and dropped, eps_den 0: o = 0 (acc = 0) */
            den = 1.0f;
        const float *g = blk->gate ? blk->gate + i * blk->g_hs + (off + t) * blk->g_ns : NULL;
        K->combine_row(dv, omega, acc, have_linear ? lin : NULL, g, den,
                       blk->o + i * blk->o_hs + (off + t) * blk->o_ns);
    }
    if (den_bad)
        ws->overflow = 1;
}

/* The segment a..a+n-1 of chunk a / C (rows off.. of the block). */
static void segment(const still__fast_ctx *ctx, still__fast_unit *u, still__fast_scratch *ws,
                    const still__fast_block *blk, int64_t off, int64_t n, int need_sigma)
{
    const still__resolved *r = &ctx->r;
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v, m = r->m, a = u->pos;
    const int64_t Cn = imin(r->C, ctx->max_len);
    const float scale = (float)r->scale;

    hist_make_room(ctx, u, n);
    for (int64_t t = 0; t < n; t++) {
        memcpy(u->hist_k + (u->hist_n + t) * d, blk->k + (off + t) * blk->k_ns,
               (size_t)d * sizeof(float));
        memcpy(u->hist_v + (u->hist_n + t) * dv, blk->v + (off + t) * blk->v_ns,
               (size_t)dv * sizeof(float));
    }
    u->hist_n += n;
    for (int64_t i = 0; i < ctx->nh; i++)
        feature_rows(ctx, &ctx->fk, u->hq0 + i, n, hist_row_k(ctx, u, a), d,
                     hist_row_phik(ctx, u, i, a), m, ws);

    /* the raw tokens' first exact tile holds every saliency window of the
     * segment when they reach back w keys (L = 2, w = C: the default):
     * computed once into ws->win for both */
    const int64_t band_rows = a + n - u->raw_first;
    const int share = need_sigma && blk->o && (r->engine == STILL__ENGINE_WINDOW || r->L > 0) &&
                      u->raw_first <= imax(0, a - r->w + 1) && band_rows <= KEY_TILE &&
                      band_rows <= ctx->win_rows;
    /* the logits q.k are needed for sigma and for an exact set (pure
     * linear mode, k = 0 and L = 0, has neither) */
    const int logits = need_sigma || (blk->o && (u->cache_n > 0 || r->L > 0 ||
                                                 r->engine == STILL__ENGINE_WINDOW));
    /* one query (decode) scores the band from the ring, when it fits in
     * win from its panel start (15 rows more at most) */
    const int ring = share && n == 1 && band_rows + STILL__PANEL - 1 <= sat_mul(ctx->win_rows, Cn);
    for (int64_t i = 0; i < ctx->nh; i++) {
        const float *q = blk->q + i * blk->q_hs + off * blk->q_ns;
        float *band = NULL;
        if (logits) /* B of the logits */
            ctx->kern->transpose(n, d, q, blk->q_ns, scale, ws->qst, n);
        if (ring)
            band = ring_band(ctx, u, a, ws->qst, ws->win);
        if (share && !band) {
            raw_tile_gemm(ctx->kern, band_rows, n, d, hist_row_k(ctx, u, u->raw_first), d,
                          ws->qst, ws->win, u->raw_first, a);
            band = ws->win;
        }
        if (need_sigma)
            segment_saliency(ctx, u, ws, a, n, ws->sig + i * Cn, band, u->raw_first);
        if (blk->o)
            segment_output(ctx, u, ws, blk, i, off, a, n, band);
    }
    if (need_sigma) /* SPEC §5: per-kv selection ranks by the group mean */
        for (int64_t t = 0; t < n; t++) {
            double s = 0.0;
            for (int64_t i = 0; i < ctx->nh; i++)
                s += (double)ws->sig[i * Cn + t];
            s /= (double)ctx->nh;
            u->hist_sigma[a - u->hist_first + t] = s;
            if (blk->sigma)
                for (int64_t i = 0; i < ctx->nh; i++)
                    blk->sigma[i * blk->sigma_hs + off + t] = s;
        }
    u->pos = a + n;
}

/* Chunk arrivals (c >= 1) inside positions from .. to-1. */
static int64_t arrivals(int64_t C, int64_t from, int64_t to)
{
    int64_t first = from <= 1 ? 1 : (from - 1) / C + 1, last = (to - 1) / C;
    return to > from && last >= first ? last - first + 1 : 0;
}

int still__fast_unit_append(const still__fast_ctx *ctx, still__fast_unit *u,
                            still__fast_scratch *ws, const still__fast_block *blk)
{
    const still__resolved *r = &ctx->r;
    const int64_t C = r->C, end = u->pos + blk->n;
    const int need_sigma = blk->sigma != NULL ||
                           (ctx->sigma_for_state && (!blk->forced || r->max_sel > 0));
    int rc;

    if (blk->n <= 0)
        return STILL_OK;
    ws->overflow = 0;
    if (r->engine == STILL__ENGINE_WINDOW && r->sinks > 0) {
        /* SPEC §13: the sinks leave the raw tokens at chunk arrivals, at
         * most C of them at each, at most one arrival per C tokens plus one */
        int64_t need = imin(sat_add(u->cache_n, sat_add(blk->n, C)), imax(u->cache_n, r->cache_cap));
        need = imin(need, end); /* nor more than the tokens seen (a huge C, a short input) */
        if ((rc = still__fast_unit_reserve(ctx, u, need)))
            return rc;
    } else if (r->engine != STILL__ENGINE_WINDOW && r->k > 0) {
        /* each arrival splits a complete raw chunk, if there is one */
        int64_t need = sat_add(u->cache_n, sat_mul(imin(arrivals(C, u->pos, end),
                                                        (end - u->raw_first) / C), r->k));
        need = imin(imin(need, end), imax(u->cache_n, r->cache_cap));
        if ((rc = still__fast_unit_reserve(ctx, u, need)))
            return rc;
    }
    int64_t off = 0;
    while (u->pos < end) {
        const int64_t c = u->pos / C, n = imin(end - u->pos, C - u->pos % C);
        if (u->pos == c * C && c >= 1 && u->split_chunks < c) {
            chunk_arrival(ctx, u, ws, c, r->engine == STILL__ENGINE_WINDOW ? NULL : blk->forced);
            u->split_chunks = c;
        }
        segment(ctx, u, ws, blk, off, n, need_sigma);
        off += n;
    }
    return ws->overflow ? STILL_E_NONFINITE : STILL_OK;
}

void still__fast_unit_refresh(const still__fast_ctx *ctx, still__fast_unit *u,
                              still__fast_scratch *ws)
{
    const int64_t d = ctx->r.shape.dim_qk, m = ctx->r.m, Cn = imin(ctx->r.C, ctx->max_len);
    u->cache_kp_n = 0; /* the cache was written from outside: packed anew */
    u->ring_pos = 0;
    for (int64_t i = 0; i < ctx->nh; i++)
        for (int64_t p = u->hist_first; p < u->pos; p += Cn) {
            int64_t n = imin(Cn, u->pos - p);
            feature_rows(ctx, &ctx->fk, u->hq0 + i, n, hist_row_k(ctx, u, p), d,
                         hist_row_phik(ctx, u, i, p), m, ws);
        }
}
