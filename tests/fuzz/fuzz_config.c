/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * fuzz_config.c -- libFuzzer target for the configuration space (SPEC
 * §4-7): random bytes decode into a still_config whose integer fields
 * range over all of int64 (small values, powers of two and their
 * neighbours, INT64_MAX, negatives, raw words) and whose doubles over all
 * bit patterns, with a tiny shape (N <= 24, d <= 4) so that each run is
 * cheap.  The configuration goes through still_config_validate and then
 * through both paths: still_ref_forward, still_forward,
 * still_ref_transfer_grad, still_transfer_grad and a state of each path
 * (create, two appends).  Every call must return an error code, or
 * STILL_OK with finite outputs; a configuration still_config_validate
 * refuses is refused by every call, and one it accepts is not refused by
 * any call as a bad configuration (one resolution for every path).
 * Derived sizes (chunk x local, chunk x topk, max_sel + topk, 2 x window,
 * ...) once overflowed int64 here: heap overflows on the ref path and in
 * the fast gradient.
 */
#include "still.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond)                                                                         \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "fuzz_config: invariant failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

/* ---- decoding ------------------------------------------------------------------ */

typedef struct bytes {
    const uint8_t *p;
    size_t n;
} bytes;

static uint8_t u8(bytes *b)
{
    if (!b->n)
        return 0;
    b->n--;
    return *b->p++;
}

static uint64_t u64(bytes *b)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x |= (uint64_t)u8(b) << (8 * i);
    return x;
}

/* An int64 field: its default, small, a power of two or a neighbour of
 * one, near INT64_MAX, a raw word or a negative. */
static int64_t i64_field(bytes *b, int64_t def)
{
    const uint8_t sel = u8(b), x = u8(b);
    const int64_t p2 = (int64_t)1 << (x % 63);
    switch (sel % 8) {
    case 0: return def;
    case 1: return x % 9;
    case 2: return x % 64;
    case 3: return p2;
    case 4: return p2 + (x & 0x80 ? 1 : -1);
    case 5: return INT64_MAX - (x % 3);
    case 6: return (int64_t)u64(b);
    default: return x & 1 ? -(int64_t)(x % 4) : INT64_MIN + (x % 4);
    }
}

/* An enumeration of `count` values: mostly in range, sometimes not. */
static int enum_field(bytes *b, int count)
{
    const uint8_t x = u8(b);
    if (x >= 250)
        return x == 255 ? -1 : x == 254 ? 1000 : x == 253 ? INT32_MIN : INT32_MAX;
    return x % count;
}

static double double_field(bytes *b, double def)
{
    const uint8_t sel = u8(b), x = u8(b);
    switch (sel % 6) {
    case 0: return def;
    case 1: return x / 16.0;
    case 2: return -x / 16.0;
    case 3: return pow(10.0, (double)(x % 64) * 10.0 - 320.0);
    case 4: {
        uint64_t w = u64(b);
        double d;
        memcpy(&d, &w, sizeof d);
        return d;
    }
    default: return x & 1 ? INFINITY : 0.0;
    }
}

static void decode_config(bytes *b, still_config *c)
{
    still_config_default(c);
    c->chunk = i64_field(b, c->chunk);
    c->topk = i64_field(b, c->topk);
    c->window = i64_field(b, c->window);
    c->local = i64_field(b, c->local);
    c->max_sel = i64_field(b, c->max_sel);
    c->routing = enum_field(b, 6); /* saliency .. terraced (SPEC §6, §13-14) */
    c->act = enum_field(b, 4);
    c->npmap = enum_field(b, 2);
    c->select_per_kv = enum_field(b, 2);
    c->saliency = enum_field(b, 2);
    c->phantom_sink = enum_field(b, 2);
    c->scale = double_field(b, c->scale);
    c->eps_den = double_field(b, c->eps_den);
    const uint8_t isa = u8(b), thr = u8(b);
    c->isa = isa < 240 ? (isa % 3 == 2 ? STILL_ISA_GENERIC : STILL_ISA_AUTO) : isa - 245;
    c->threads = thr < 250 ? thr % 3 : thr == 255 ? 5000 : -1;
    c->rest = enum_field(b, 2); /* SPEC §12 */
    c->sinks = i64_field(b, c->sinks);
    /* the authors' saliency needs w = C: make it reachable often */
    if (c->saliency == STILL_SALIENCY_AUTHORS && (thr & 0x10))
        c->window = c->chunk;
}

static void decode_shape(bytes *b, still_shape *s)
{
    const uint8_t x = u8(b), y = u8(b), z = u8(b);
    s->batch = 1 + (x & 1);
    s->heads_kv = 1 + ((x >> 1) & 1);
    s->heads_q = s->heads_kv * (1 + ((x >> 2) & 1));
    s->seq_len = 1 + y % 24;
    s->dim_qk = 1 + z % 4;
    s->dim_v = 1 + (z >> 2) % 3;
    s->layout = (x >> 3) & 1 ? STILL_LAYOUT_BNHD : STILL_LAYOUT_BHND;
}

/* ---- the arrays of one run ----------------------------------------------------- */

typedef struct run {
    still_config cfg;
    still_shape s;
    still_params p;
    double *W, *bias, *u, *window_w; /* parameters */
    int64_t nq, nk, nv, no, nsig, f;
    double *q, *k, *v, *gate, *o, *teacher, *sigma; /* double inputs */
    float *qf, *kf, *vf, *gatef, *of, *teacherf;    /* the same in float */
    uint8_t *sel;
    double *g[11]; /* gradient buffers */
} run;

static double *doubles(int64_t n)
{
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    REQUIRE(p != NULL);
    return p;
}

static float *to_floats(const double *x, int64_t n)
{
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    REQUIRE(p != NULL);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)x[i];
    return p;
}

/* values in [-2, 2) from a small generator seeded by the input */
static void fill(double *x, int64_t n, uint64_t *seed, double lo)
{
    for (int64_t i = 0; i < n; i++) {
        *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = lo + (double)(*seed >> 40) / (double)(1 << 24) * (lo < 0 ? 4.0 : 1.0);
    }
}

static void run_init(run *r, bytes *b)
{
    memset(r, 0, sizeof *r);
    decode_config(b, &r->cfg);
    decode_shape(b, &r->s);
    const uint8_t pk = u8(b);
    uint64_t seed = u64(b) | 1;
    const still_shape *s = &r->s;
    const int64_t Hq = s->heads_q, d = s->dim_qk;
    r->nq = s->batch * Hq * s->seq_len * d;
    r->nk = s->batch * s->heads_kv * s->seq_len * d;
    r->nv = s->batch * s->heads_kv * s->seq_len * s->dim_v;
    r->no = s->batch * Hq * s->seq_len * s->dim_v;
    r->nsig = s->batch * Hq * s->seq_len;
    still_params_default(&r->p);
    r->f = d;
    if (pk & 1) { /* a map with W, b and u */
        r->f = 1 + (pk >> 4) % 3;
        r->W = doubles(Hq * r->f * d);
        r->bias = doubles(Hq * r->f);
        r->u = doubles(Hq * d);
        fill(r->W, Hq * r->f * d, &seed, -2.0);
        fill(r->bias, Hq * r->f, &seed, -2.0);
        fill(r->u, Hq * d, &seed, -2.0);
        r->p.fq = (still_feature_map){r->f, r->W, r->bias, r->u};
    }
    if (pk & 2) {
        r->window_w = doubles(Hq);
        fill(r->window_w, Hq, &seed, -2.0);
        r->p.window_w = r->window_w;
    }
    r->q = doubles(r->nq), r->k = doubles(r->nk), r->v = doubles(r->nv);
    r->gate = doubles(r->no), r->o = doubles(r->no), r->teacher = doubles(r->no);
    r->sigma = doubles(r->nsig);
    fill(r->q, r->nq, &seed, -2.0);
    fill(r->k, r->nk, &seed, -2.0);
    fill(r->v, r->nv, &seed, -2.0);
    fill(r->gate, r->no, &seed, 0.0);
    fill(r->teacher, r->no, &seed, -2.0);
    r->qf = to_floats(r->q, r->nq), r->kf = to_floats(r->k, r->nk);
    r->vf = to_floats(r->v, r->nv), r->gatef = to_floats(r->gate, r->no);
    r->of = to_floats(r->o, r->no), r->teacherf = to_floats(r->teacher, r->no);
    r->sel = calloc((size_t)r->nsig, 1);
    REQUIRE(r->sel != NULL);
    /* dfq_W dfq_b dfq_u dfk_W dfk_b dfk_u dwindow_w dgate dq dk dv */
    const int64_t gn[11] = {Hq * r->f * d, Hq * r->f, Hq * d, Hq * r->f * d, Hq * r->f,
                            Hq * d, Hq, r->no, r->nq, r->nk, r->nv};
    for (int i = 0; i < 11; i++)
        r->g[i] = doubles(gn[i]);
}

static void run_free(run *r)
{
    void *all[] = {r->W, r->bias, r->u, r->window_w, r->q, r->k, r->v, r->gate, r->o,
                   r->teacher, r->sigma, r->qf, r->kf, r->vf, r->gatef, r->of, r->teacherf,
                   r->sel};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    for (int i = 0; i < 11; i++)
        free(r->g[i]);
}

/* ---- the invariants -------------------------------------------------------------- */

static int finite_d(const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

static int finite_f(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* sigma may be +inf (SPEC §4: token 0), never NaN or -inf */
static int sigma_ok(const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (isnan(x[i]) || x[i] == -INFINITY)
            return 0;
    return 1;
}

/* The statuses a call may give a well-formed input of this target. */
static int allowed_failure(int rc)
{
    return rc == STILL_E_CONFIG || rc == STILL_E_OVERFLOW || rc == STILL_E_NOMEM ||
           rc == STILL_E_ISA || rc == STILL_E_UNSUPPORTED || rc == STILL_E_NONFINITE;
}

/* One call's status against the configuration's. */
static void check_status(const char *what, int rc, int valid)
{
    if (rc != STILL_OK && !allowed_failure(rc))
        fprintf(stderr, "fuzz_config: %s -> %d (%s)\n", what, rc, still_strerror(rc));
    REQUIRE(rc == STILL_OK || allowed_failure(rc));
    if (valid != STILL_OK && rc == STILL_OK)
        fprintf(stderr, "fuzz_config: %s accepted a configuration validate refused (%d)\n", what,
                valid);
    REQUIRE(valid == STILL_OK || rc != STILL_OK);
    if (valid == STILL_OK && rc == STILL_E_CONFIG)
        fprintf(stderr, "fuzz_config: %s refused a configuration validate accepted\n", what);
    REQUIRE(valid != STILL_OK || rc != STILL_E_CONFIG);
}

static still_tensors tensors_d(run *r)
{
    still_tensors t = {0};
    t.dtype = STILL_F64;
    t.q = r->q, t.k = r->k, t.v = r->v, t.gate = r->gate, t.o = r->o;
    t.sigma = r->sigma, t.selected = r->sel;
    return t;
}

static still_tensors tensors_f(run *r)
{
    still_tensors t = {0};
    t.dtype = STILL_F32;
    t.q = r->qf, t.k = r->kf, t.v = r->vf, t.gate = r->gatef, t.o = r->of;
    t.sigma = r->sigma, t.selected = r->sel;
    return t;
}

static void forwards(run *r, int valid)
{
    still_tensors t = tensors_d(r);
    int rc = still_ref_forward(&r->cfg, &r->s, &r->p, &t);
    check_status("still_ref_forward", rc, valid);
    if (rc == STILL_OK)
        REQUIRE(finite_d(r->o, r->no) && sigma_ok(r->sigma, r->nsig));
    t = tensors_f(r);
    rc = still_forward(&r->cfg, &r->s, &r->p, &t);
    check_status("still_forward", rc, valid);
    if (rc == STILL_OK)
        REQUIRE(finite_f(r->of, r->no) && sigma_ok(r->sigma, r->nsig));
}

/* Every gradient written is finite (the dfk_* are not written: fk tied). */
static void require_finite_grads(const char *what, const run *r, const int64_t *gn)
{
    for (int i = 0; i < 11; i++)
        if (i < 3 || i > 5)
            if (!finite_d(r->g[i], gn[i])) {
                fprintf(stderr, "fuzz_config: %s: gradient %d not finite (chunk %lld topk %lld "
                        "window %lld local %lld max_sel %lld routing %d act %d saliency %d "
                        "scale %g eps_den %g rest %d sinks %lld)\n", what, i, (long long)r->cfg.chunk,
                        (long long)r->cfg.topk, (long long)r->cfg.window,
                        (long long)r->cfg.local, (long long)r->cfg.max_sel, r->cfg.routing,
                        r->cfg.act, r->cfg.saliency, r->cfg.scale, r->cfg.eps_den, r->cfg.rest,
                        (long long)r->cfg.sinks);
                REQUIRE(!"a gradient is finite");
            }
}

static void grads(run *r, int valid)
{
    still_grads g = {r->g[0], r->g[1], r->g[2], r->g[3], r->g[4], r->g[5],
                     r->g[6], r->g[7], r->g[8],  r->g[9], r->g[10], NULL};
    const int64_t Hq = r->s.heads_q, d = r->s.dim_qk;
    const int64_t gn[11] = {Hq * r->f * d, Hq * r->f, Hq * d, Hq * r->f * d, Hq * r->f,
                            Hq * d, Hq, r->no, r->nq, r->nk, r->nv};
    double loss = NAN;
    still_tensors t = tensors_d(r);
    int rc = still_ref_transfer_grad(&r->cfg, &r->s, &r->p, &t, r->teacher, &loss, &g);
    check_status("still_ref_transfer_grad", rc, valid);
    if (rc == STILL_OK) {
        REQUIRE(isfinite(loss) && finite_d(r->o, r->no));
        require_finite_grads("still_ref_transfer_grad", r, gn);
    }
    loss = NAN;
    t = tensors_f(r);
    rc = still_transfer_grad(&r->cfg, &r->s, &r->p, &t, r->teacherf, &loss, &g);
    check_status("still_transfer_grad", rc, valid);
    if (rc == STILL_OK) {
        REQUIRE(isfinite(loss) && finite_f(r->of, r->no));
        require_finite_grads("still_transfer_grad", r, gn);
    }
}

/* A state of each path (SPEC §7), fed the sequence as one block twice. */
static void states(run *r, int valid)
{
    for (int path = STILL_PATH_REF; path <= STILL_PATH_FAST; path++) {
        still_state *st = NULL;
        int rc = still_state_create(&r->cfg, &r->s, &r->p, path, &st);
        check_status("still_state_create", rc, valid);
        if (rc != STILL_OK) {
            REQUIRE(st == NULL);
            continue;
        }
        still_tensors t = path == STILL_PATH_REF ? tensors_d(r) : tensors_f(r);
        t.selected = NULL;
        for (int rep = 0; rep < 2; rep++) {
            rc = still_state_append(st, r->s.seq_len, &t);
            check_status("still_state_append", rc, valid);
            if (rc != STILL_OK)
                break;
            REQUIRE(path == STILL_PATH_REF ? finite_d(r->o, r->no) : finite_f(r->of, r->no));
            if (!sigma_ok(r->sigma, r->nsig))
                fprintf(stderr, "fuzz_config: state path %d: sigma NaN or -inf\n", path);
            REQUIRE(sigma_ok(r->sigma, r->nsig));
        }
        size_t bytes = 0, len = 0;
        REQUIRE(still_state_bytes(st, &bytes) == STILL_OK);
        rc = still_state_save(st, NULL, 0, &len);
        REQUIRE(rc == STILL_OK || rc == STILL_E_OVERFLOW);
        still_state_destroy(st);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bytes b = {data, size};
    run r;
    run_init(&r, &b);
    const int valid = still_config_validate(&r.cfg, &r.s);
    REQUIRE(valid == STILL_OK || valid == STILL_E_CONFIG || valid == STILL_E_OVERFLOW);
    forwards(&r, valid);
    grads(&r, valid);
    states(&r, valid);
    run_free(&r);
    return 0;
}
