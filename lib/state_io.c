/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* state_io.c -- SPEC §7: saving and restoring a streaming state as a
 * versioned, checksummed, little-endian byte stream.
 *
 * Stream, version 1, 2, 3 or 4 (every integer and float little-endian, packed byte by
 * byte -- no struct is ever dumped):
 *
 *   magic     8 bytes  89 53 54 49 4C 4C 0D 0A  ("\x89STILL\r\n")
 *   version   u32      1, or 2 when the configuration needs the
 *                      extension below (rest = drop or a routing after
 *                      `none`): one configuration has one stream
 *   path      u32      STILL_PATH_REF (arrays f64) or STILL_PATH_FAST (f32)
 *   length    u64      bytes of the whole stream, checksum included
 *   config    i64 chunk, topk, window, local, max_sel;
 *             i32 routing, act, npmap, select_per_kv, saliency,
 *                 phantom_sink, isa, threads;
 *             f64 scale, eps_den
 *   shape     i64 batch, heads_q, heads_kv, dim_qk, dim_v; i32 layout
 *   params    u64 fingerprint (the parameters are not in the stream)
 *   position  i64
 *   units     i64
 *   extension (versions 2 and 3): i64 sinks; i32 rest (SPEC §12-13)
 *   extension (version 3 only, App. A.3): i32 authors_decode (1);
 *             i64 prompt, the length of the first block
 *   extension (version 4 only, SPEC §16, after the version-2 one): i32
 *             mixer (STILL_MIXER_LIGER); f64 alpha, beta
 *   per unit  i64 cache_n, raw_n, keys_n, folded; then its arrays in the
 *             order of the path's spans(): cache k, v, sigma, position;
 *             raw k, v, sigma; the keys of the saliency window older than
 *             the raw tokens (keys_n rows); S; z.  Mixer liger (version 4)
 *             has one unit per (batch, kv head), no cache, raw_n = min(P, w),
 *             keys_n = 0, and its arrays are raw k, v; S [d][dv]
 *   checksum  u64      FNV-1a 64 of every byte before it
 *
 * A reader checks, in this order: magic (STILL_E_FORMAT), version
 * (STILL_E_VERSION), length (STILL_E_FORMAT), checksum (STILL_E_CHECKSUM),
 * then every field against the configuration (STILL_E_FORMAT) and the
 * parameters (STILL_E_PARAMS). */
#include "state.h"

#include <math.h>
#include <string.h>

#define HEADER_BYTES_V1 180 /* magic .. units */
#define HEADER_BYTES_V2 192 /* and the extension */
#define HEADER_BYTES_V3 204 /* and App. A.3's */
#define HEADER_BYTES_V4 212 /* version 2's and SPEC §16's */

/* The stream version of a configuration: 1 unless it needs the fields of
 * version 2 (a version-1 stream reads as rest = linear, sinks default). */
static uint32_t version_of(const still_config *g)
{
    if (g->mixer == STILL_MIXER_LIGER) /* SPEC §16 (no App. A.3 with it) */
        return 4u;
    if (g->authors_decode)
        return 3u;
    return g->rest != STILL_REST_LINEAR || g->routing > STILL_ROUTING_NONE ? 2u : 1u;
}

static size_t header_bytes(uint32_t version)
{
    return version == 1u   ? HEADER_BYTES_V1
           : version == 2u ? HEADER_BYTES_V2
           : version == 3u ? HEADER_BYTES_V3
                           : HEADER_BYTES_V4;
}
#define UNIT_HEAD_BYTES 32
static const uint8_t stream_magic[8] = {0x89, 'S', 'T', 'I', 'L', 'L', '\r', '\n'};

/* ---- little-endian packing ---------------------------------------------- */

typedef struct cursor {
    uint8_t *p;       /* writer */
    const uint8_t *q; /* reader */
    size_t off, end;  /* the reader never passes end */
} cursor;

static void put_u64(cursor *c, uint64_t x)
{
    for (int b = 0; b < 8; b++)
        c->p[c->off + b] = (uint8_t)(x >> (8 * b));
    c->off += 8;
}

static void put_u32(cursor *c, uint32_t x)
{
    for (int b = 0; b < 4; b++)
        c->p[c->off + b] = (uint8_t)(x >> (8 * b));
    c->off += 4;
}

static void put_f64(cursor *c, double x)
{
    uint64_t bits;
    memcpy(&bits, &x, 8);
    put_u64(c, bits);
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t x = 0;
    for (int b = 0; b < 8; b++)
        x |= (uint64_t)p[b] << (8 * b);
    return x;
}

static uint32_t le32(const uint8_t *p)
{
    uint32_t x = 0;
    for (int b = 0; b < 4; b++)
        x |= (uint32_t)p[b] << (8 * b);
    return x;
}

/* Readers: 0 on success, -1 when the stream ends first. */
static int get_u64(cursor *c, uint64_t *x)
{
    if (c->end - c->off < 8)
        return -1;
    *x = le64(c->q + c->off);
    c->off += 8;
    return 0;
}

static int get_i64(cursor *c, int64_t *x)
{
    uint64_t u;
    if (get_u64(c, &u))
        return -1;
    memcpy(x, &u, 8); /* two's complement, as written */
    return 0;
}

static int get_i32(cursor *c, int *x)
{
    if (c->end - c->off < 4)
        return -1;
    uint32_t u = le32(c->q + c->off);
    int32_t s;
    memcpy(&s, &u, 4);
    *x = s;
    c->off += 4;
    return 0;
}

static int get_f64(cursor *c, double *x)
{
    uint64_t u;
    if (get_u64(c, &u))
        return -1;
    memcpy(x, &u, 8);
    return 0;
}

/* ---- arrays ------------------------------------------------------------- */

static size_t kind_bytes(int kind)
{
    return kind == STILL__SPAN_F32 ? 4 : 8;
}

static void put_span(cursor *c, const still__span *s)
{
    for (int64_t i = 0; i < s->count; i++) {
        if (s->kind == STILL__SPAN_F32) {
            uint32_t bits;
            memcpy(&bits, (const float *)s->p + i, 4);
            put_u32(c, bits);
        } else { /* f64 and i64: 8 bytes of the same bits */
            uint64_t bits;
            memcpy(&bits, (const uint64_t *)s->p + i, 8);
            put_u64(c, bits);
        }
    }
}

/* Reads a span, refusing NaN (and infinities where they mean nothing). */
static int get_span(cursor *c, const still__span *s)
{
    if ((size_t)s->count > (c->end - c->off) / kind_bytes(s->kind))
        return STILL_E_FORMAT;
    for (int64_t i = 0; i < s->count; i++) {
        const uint8_t *p = c->q + c->off;
        double x;
        if (s->kind == STILL__SPAN_F32) {
            uint32_t bits = le32(p);
            float f;
            memcpy(&f, &bits, 4);
            memcpy((float *)s->p + i, &f, 4);
            x = f;
        } else {
            uint64_t bits = le64(p);
            memcpy((uint64_t *)s->p + i, &bits, 8);
            memcpy(&x, &bits, 8);
        }
        c->off += kind_bytes(s->kind);
        if (s->kind != STILL__SPAN_I64 &&
            (isnan(x) || (isinf(x) && !(s->inf_ok && x > 0))))
            return STILL_E_FORMAT;
    }
    return STILL_OK;
}

/* ---- save ----------------------------------------------------------------- */

/* Bytes of the stream, overflow-checked. */
static int stream_length(still_state *st, size_t *len)
{
    still__span sp[STILL__MAX_SPANS];
    size_t total = header_bytes(version_of(&st->cfg)) + 8;
    for (int64_t u = 0; u < st->units; u++) {
        int n = st->ops->spans(st, u, sp);
        total += UNIT_HEAD_BYTES;
        for (int i = 0; i < n; i++) {
            size_t b;
            if (still__mul_size((size_t)sp[i].count, kind_bytes(sp[i].kind), &b) ||
                b > SIZE_MAX - total)
                return STILL_E_OVERFLOW;
            total += b;
        }
    }
    *len = total;
    return STILL_OK;
}

static void put_header(cursor *c, const still_state *st, size_t len)
{
    const still_config *g = &st->cfg;
    const still_shape *s = &st->r.shape;
    memcpy(c->p, stream_magic, 8);
    c->off = 8;
    put_u32(c, version_of(g));
    put_u32(c, (uint32_t)st->path);
    put_u64(c, (uint64_t)len);
    const int64_t i64s[] = {g->chunk, g->topk, g->window, g->local, g->max_sel};
    for (size_t i = 0; i < sizeof i64s / sizeof i64s[0]; i++)
        put_u64(c, (uint64_t)i64s[i]);
    const int i32s[] = {g->routing, g->act, g->npmap, g->select_per_kv,
                        g->saliency, g->phantom_sink, g->isa, g->threads};
    for (size_t i = 0; i < sizeof i32s / sizeof i32s[0]; i++)
        put_u32(c, (uint32_t)i32s[i]);
    put_f64(c, g->scale);
    put_f64(c, g->eps_den);
    const int64_t dims[] = {s->batch, s->heads_q, s->heads_kv, s->dim_qk, s->dim_v};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        put_u64(c, (uint64_t)dims[i]);
    put_u32(c, (uint32_t)s->layout);
    put_u64(c, st->params_fp);
    put_u64(c, (uint64_t)st->position);
    put_u64(c, (uint64_t)st->units);
    if (version_of(g) >= 2u) {
        put_u64(c, (uint64_t)g->sinks);
        put_u32(c, (uint32_t)g->rest);
    }
    if (version_of(g) == 3u) {
        put_u32(c, (uint32_t)g->authors_decode);
        put_u64(c, (uint64_t)st->prompt);
    }
    if (version_of(g) == 4u) {
        put_u32(c, (uint32_t)g->mixer);
        put_f64(c, g->alpha);
        put_f64(c, g->beta);
    }
}

int still_state_save(const still_state *st, void *buf, size_t cap, size_t *len)
{
    /* spans() hands out pointers for reading and writing alike; saving only
     * reads through them */
    still_state *s = (still_state *)st;
    still__span sp[STILL__MAX_SPANS];
    cursor c = {buf, NULL, 0, 0};
    int rc;

    if (!st || !len)
        return STILL_E_NULL;
    if ((rc = stream_length(s, len)))
        return rc;
    if (!buf)
        return STILL_OK;
    if (cap < *len)
        return STILL_E_OVERFLOW;
    put_header(&c, st, *len);
    for (int64_t u = 0; u < st->units; u++) {
        still__unit_counts k;
        st->ops->get_counts(st, u, &k);
        put_u64(&c, (uint64_t)k.cache_n);
        put_u64(&c, (uint64_t)k.raw_n);
        put_u64(&c, (uint64_t)k.keys_n);
        put_u64(&c, (uint64_t)k.folded);
        int n = st->ops->spans(s, u, sp);
        for (int i = 0; i < n; i++)
            put_span(&c, &sp[i]);
    }
    put_u64(&c, still__fnv1a64(STILL__FNV_INIT, buf, c.off));
    return STILL_OK;
}

/* ---- load ----------------------------------------------------------------- */

static int get_config(cursor *c, still_config *g, still_shape *s, int *path)
{
    int64_t *i64s[] = {&g->chunk, &g->topk, &g->window, &g->local, &g->max_sel};
    int *i32s[] = {&g->routing, &g->act, &g->npmap, &g->select_per_kv,
                   &g->saliency, &g->phantom_sink, &g->isa, &g->threads};
    int64_t *dims[] = {&s->batch, &s->heads_q, &s->heads_kv, &s->dim_qk, &s->dim_v};
    for (size_t i = 0; i < sizeof i64s / sizeof i64s[0]; i++)
        if (get_i64(c, i64s[i]))
            return STILL_E_FORMAT;
    for (size_t i = 0; i < sizeof i32s / sizeof i32s[0]; i++)
        if (get_i32(c, i32s[i]))
            return STILL_E_FORMAT;
    if (get_f64(c, &g->scale) || get_f64(c, &g->eps_den))
        return STILL_E_FORMAT;
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (get_i64(c, dims[i]))
            return STILL_E_FORMAT;
    s->seq_len = 1;
    if (get_i32(c, &s->layout))
        return STILL_E_FORMAT;
    if (*path != STILL_PATH_REF && *path != STILL_PATH_FAST)
        return STILL_E_FORMAT;
    return STILL_OK;
}

/* The counts of a unit must be those its state can have at position P. */
static int counts_ok(const still_state *st, int64_t P, const still__unit_counts *k)
{
    const still__resolved *r = &st->r;
    const int64_t window = P < r->w ? P : r->w, raw = st->ops->raw_count(st, P);
    if (k->cache_n < 0 || k->folded < 0 || k->raw_n != raw ||
        k->keys_n != (window > raw ? window - raw : 0) || k->cache_n > P - k->raw_n ||
        k->folded != P - k->raw_n - k->cache_n)
        return 0;
    if (r->mixer == STILL_MIXER_LIGER) /* SPEC §16: the window and S only */
        return k->cache_n == 0;
    if (r->engine == STILL__ENGINE_WINDOW) /* the sinks that left the window */
        return k->cache_n == (r->sinks < P - k->raw_n ? r->sinks : P - k->raw_n);
    int64_t split = (P - k->raw_n) / r->C; /* chunks split so far */
    if (r->k && split > INT64_MAX / r->k)
        return 0;
    return k->cache_n <= split * r->k && (!r->max_sel || k->cache_n <= r->max_sel);
}

/* Cached positions are distinct, in order, and before the raw tokens. */
static int positions_ok(const int64_t *pos, int64_t n, int64_t raw_first)
{
    for (int64_t i = 0; i < n; i++)
        if (pos[i] < 0 || pos[i] >= raw_first || (i && pos[i] <= pos[i - 1]))
            return 0;
    return 1;
}

/* a += b * n, overflow-checked (0 on success). */
static int add_mul(size_t *a, int64_t n, size_t b)
{
    size_t x;
    if (n < 0 || still__mul_size((size_t)n, b, &x) || x > SIZE_MAX - *a)
        return -1;
    *a += x;
    return 0;
}

/* Bytes of the arrays of a unit with counts k in a stream of the path: the
 * order of the paths' spans() (cache k, v, sigma, position; raw k, v,
 * sigma; older keys; S; z), f64 or f32 for k, v, S, z and 8 bytes for
 * sigma and position.  -1 on overflow. */
static int unit_stream_bytes(const still__resolved *r, int path, int64_t unit_heads,
                             const still__unit_counts *k, size_t *bytes)
{
    const size_t e = path == STILL_PATH_REF ? 8 : 4;
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v;
    size_t n, s;
    if (r->mixer == STILL_MIXER_LIGER) /* SPEC §16: raw k, v; S [d][dv] */
        return still__mul3_size((size_t)d, (size_t)dv, e, &n) ||
                       still__mul_size((size_t)(d + dv), e, &s) || add_mul(&n, k->raw_n, s)
                   ? -1
                   : (*bytes = n, 0);
    if (still__mul3_size((size_t)unit_heads, (size_t)r->m, (size_t)(dv + 1), &n) || /* S, z */
        still__mul_size(n, e, &n) || add_mul(&n, k->cache_n, 16) || add_mul(&n, k->raw_n, 8) ||
        still__mul_size((size_t)(d + dv), e, &s) || add_mul(&n, k->cache_n, s) ||
        add_mul(&n, k->raw_n, s) || add_mul(&n, k->keys_n, (size_t)d * e))
        return -1;
    *bytes = n;
    return 0;
}

static int load_units(cursor *c, still_state *st, int64_t P)
{
    still__span sp[STILL__MAX_SPANS];
    int rc;
    for (int64_t u = 0; u < st->units; u++) {
        still__unit_counts k;
        if (get_i64(c, &k.cache_n) || get_i64(c, &k.raw_n) || get_i64(c, &k.keys_n) ||
            get_i64(c, &k.folded))
            return STILL_E_FORMAT;
        if (!counts_ok(st, P, &k))
            return STILL_E_FORMAT;
        /* the stream must hold the unit's arrays before any room is made
         * for them: a state allocates what its stream holds (issue 7) */
        size_t need;
        if (unit_stream_bytes(&st->r, st->path, st->unit_heads, &k, &need) ||
            need > c->end - c->off)
            return STILL_E_FORMAT;
        if ((rc = st->ops->set_counts(st, u, &k)))
            return rc;
        int n = st->ops->spans(st, u, sp);
        for (int i = 0; i < n; i++) {
            if ((rc = get_span(c, &sp[i])))
                return rc;
            if (sp[i].kind == STILL__SPAN_I64 &&
                !positions_ok(sp[i].p, sp[i].count, P - k.raw_n))
                return STILL_E_FORMAT;
        }
        if ((rc = st->ops->finish_load(st, u)))
            return rc;
    }
    return STILL_OK;
}

/* Before the state is built: the header's unit count is the
 * configuration's, and the rest of the stream holds at least every unit's
 * counts and linear state (what a state allocates per unit beyond its
 * tokens).  The caller's parameters set the feature dimension; when they do
 * not fit the configuration, still__state_new says how. */
static int units_fit(const cursor *c, const still_config *cfg, const still_shape *shape,
                     const still_params *params, int path, int64_t units)
{
    still__resolved r;
    still__unit_counts none = {0, 0, 0, 0};
    size_t per, all;
    if (still__resolve(cfg, shape, params, &r))
        return STILL_OK;
    const int64_t heads = still__state_kv_units(&r) ? shape->heads_kv : shape->heads_q;
    if (heads > INT64_MAX / shape->batch || units != shape->batch * heads)
        return STILL_E_FORMAT;
    if (unit_stream_bytes(&r, path, still__state_kv_units(&r) ? r.group : 1, &none, &per) ||
        per > SIZE_MAX - UNIT_HEAD_BYTES ||
        still__mul_size((size_t)units, per + UNIT_HEAD_BYTES, &all) || all > c->end - c->off)
        return STILL_E_FORMAT;
    return STILL_OK;
}

int still_state_load(const void *buf, size_t len, const still_params *params,
                     still_state **out)
{
    cursor c = {NULL, buf, 0, 0};
    still_config cfg;
    still_shape shape;
    still_state *st;
    uint64_t total, fp;
    int64_t position, units, prompt = 0;
    int path, rc;

    if (!out)
        return STILL_E_NULL;
    *out = NULL;
    if (!buf)
        return STILL_E_NULL;
    if (len < 8 || memcmp(buf, stream_magic, 8) != 0)
        return STILL_E_FORMAT;
    if (len < 12)
        return STILL_E_FORMAT;
    const uint32_t version = le32(c.q + 8);
    if (version < 1u || version > 4u)
        return STILL_E_VERSION;
    if (len < header_bytes(version) + 8 ||
        (total = le64(c.q + 16)) != (uint64_t)len)
        return STILL_E_FORMAT;
    if (still__fnv1a64(STILL__FNV_INIT, buf, len - 8) != le64(c.q + len - 8))
        return STILL_E_CHECKSUM;
    c.end = len - 8;
    path = (int)le32(c.q + 12);
    c.off = 24;
    still_config_default(&cfg); /* the fields a stream does not hold keep their defaults */
    if ((rc = get_config(&c, &cfg, &shape, &path)))
        return rc;
    if (get_u64(&c, &fp) || get_i64(&c, &position) || get_i64(&c, &units) || position < 0)
        return STILL_E_FORMAT;
    if (version >= 2u && (get_i64(&c, &cfg.sinks) || get_i32(&c, &cfg.rest)))
        return STILL_E_FORMAT;
    if (version == 3u && (get_i32(&c, &cfg.authors_decode) || get_i64(&c, &prompt) ||
                          prompt < 0 || prompt > position || (position > 0 && prompt == 0)))
        return STILL_E_FORMAT;
    if (version == 4u &&
        (get_i32(&c, &cfg.mixer) || get_f64(&c, &cfg.alpha) || get_f64(&c, &cfg.beta)))
        return STILL_E_FORMAT;
    if (version_of(&cfg) != version) /* one configuration, one stream */
        return STILL_E_FORMAT;
    still__resolved r;
    if (still__resolve(&cfg, &shape, NULL, &r))
        return STILL_E_FORMAT;
    if ((rc = units_fit(&c, &cfg, &shape, params, path, units)))
        return rc;
    if ((rc = still__state_new(&cfg, &shape, params, path, &st)))
        return rc; /* the caller's parameters do not fit the configuration */
    if (st->params_fp != fp)
        rc = STILL_E_PARAMS;
    else if (units != st->units)
        rc = STILL_E_FORMAT;
    else if ((rc = load_units(&c, st, position)) == STILL_OK && c.off != c.end)
        rc = STILL_E_FORMAT;
    if (rc) {
        still_state_destroy(st);
        return rc;
    }
    st->position = position;
    st->prompt = prompt;
    *out = st;
    return STILL_OK;
}
