/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* testutil.c -- PRNG, layout conversion and the independent model of SPEC
 * used by the ref-path suites (see testutil.h). */
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- PRNG: xoshiro256** seeded through splitmix64 ------------------------ */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void tu_rng_seed(tu_rng *g, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        g->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t tu_next(tu_rng *g)
{
    uint64_t *s = g->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double tu_unit(tu_rng *g)
{
    return (double)(tu_next(g) >> 11) * 0x1.0p-53;
}

double tu_uniform(tu_rng *g, double lo, double hi)
{
    return lo + (hi - lo) * tu_unit(g);
}

double tu_normal(tu_rng *g)
{
    /* Box-Muller; 1 - unit is in (0, 1] so the log is finite */
    double u1 = 1.0 - tu_unit(g), u2 = tu_unit(g);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int64_t tu_int(tu_rng *g, int64_t lo, int64_t hi)
{
    uint64_t span = (uint64_t)(hi - lo) + 1;
    return lo + (int64_t)(tu_next(g) % span);
}

void tu_fill(tu_rng *g, double *x, int64_t n, double lo, double hi)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = tu_uniform(g, lo, hi);
}

void tu_fill_normal(tu_rng *g, double *x, int64_t n, double sd)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = sd * tu_normal(g);
}

/* ---- helpers ------------------------------------------------------------- */
void *tu_alloc(size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    ck_assert_msg(p != NULL, "out of memory (%zu bytes)", bytes);
    return p;
}

double *tu_dalloc(int64_t n)
{
    return tu_alloc((size_t)n * sizeof(double));
}

double tu_max_abs(const double *x, int64_t n)
{
    double m = 0.0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

double tu_max_abs_diff(const double *a, const double *b, int64_t n)
{
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (a[i] == b[i])
            continue;
        double d = fabs(a[i] - b[i]);
        m = isnan(d) ? INFINITY : fmax(m, d);
    }
    return m;
}

int64_t tu_bhnd(int64_t H, int64_t N, int64_t D, int64_t b, int64_t h, int64_t n, int64_t i)
{
    return ((b * H + h) * N + n) * D + i;
}

static int64_t layout_index(int layout, int64_t H, int64_t N, int64_t D, int64_t b, int64_t h,
                            int64_t n, int64_t i)
{
    if (layout == STILL_LAYOUT_BNHD)
        return ((b * N + n) * H + h) * D + i;
    return tu_bhnd(H, N, D, b, h, n, i);
}

void tu_to_layout(const double *bhnd, int64_t B, int64_t H, int64_t N, int64_t D, int layout,
                  int dtype, void *out)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < D; i++) {
                    double x = bhnd[tu_bhnd(H, N, D, b, h, n, i)];
                    int64_t j = layout_index(layout, H, N, D, b, h, n, i);
                    if (dtype == STILL_F32)
                        ((float *)out)[j] = (float)x;
                    else
                        ((double *)out)[j] = x;
                }
}

void tu_from_layout(const void *in, int64_t B, int64_t H, int64_t N, int64_t D, int layout,
                    int dtype, double *bhnd)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < D; i++) {
                    int64_t j = layout_index(layout, H, N, D, b, h, n, i);
                    bhnd[tu_bhnd(H, N, D, b, h, n, i)] =
                        dtype == STILL_F32 ? (double)((const float *)in)[j]
                                           : ((const double *)in)[j];
                }
}

double tu_sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

/* ---- cases --------------------------------------------------------------- */
void tu_case_init(tu_case *c, tu_rng *g, const still_shape *shape, double sd, int with_gate)
{
    memset(c, 0, sizeof *c);
    c->shape = *shape;
    still_config_default(&c->cfg);
    still_params_default(&c->params);
    c->dtype = STILL_F64;
    const still_shape *s = shape;
    int64_t nq = s->batch * s->heads_q * s->seq_len, nk = s->batch * s->heads_kv * s->seq_len;
    c->q = tu_dalloc(nq * s->dim_qk);
    c->k = tu_dalloc(nk * s->dim_qk);
    c->v = tu_dalloc(nk * s->dim_v);
    tu_fill_normal(g, c->q, nq * s->dim_qk, sd);
    tu_fill_normal(g, c->k, nk * s->dim_qk, sd);
    tu_fill_normal(g, c->v, nk * s->dim_v, 1.0);
    if (with_gate) {
        c->gate = tu_dalloc(nq * s->dim_v);
        tu_fill(g, c->gate, nq * s->dim_v, 0.05, 1.0);
    }
}

void tu_case_random_params(tu_case *c, tu_rng *g, int64_t f, int with_b, int with_u, int tied,
                           int with_w)
{
    int64_t H = c->shape.heads_q, d = c->shape.dim_qk;
    double sd = 1.0 / sqrt((double)d);
    for (int map = 0; map < (tied ? 1 : 2); map++) {
        still_feature_map *fm = map == 0 ? &c->params.fq : &c->params.fk;
        double *W = tu_dalloc(H * f * d);
        tu_fill_normal(g, W, H * f * d, sd);
        c->store[4 * map + 0] = W;
        fm->f = f;
        fm->W = W;
        fm->b = fm->u = NULL;
        if (with_b) {
            double *b = tu_dalloc(H * f);
            tu_fill_normal(g, b, H * f, 0.3);
            c->store[4 * map + 1] = b;
            fm->b = b;
        }
        if (with_u) {
            double *u = tu_dalloc(H * d);
            tu_fill_normal(g, u, H * d, 1.0);
            c->store[4 * map + 2] = u;
            fm->u = u;
        }
    }
    c->params.fk_tied = tied;
    if (tied) {
        /* garbage in fk must be ignored when tied */
        c->params.fk.f = f + 7;
        c->params.fk.W = NULL;
    }
    if (with_w) {
        double *w = tu_dalloc(H);
        tu_fill_normal(g, w, H, 1.0);
        c->store[3] = w;
        c->params.window_w = w;
    }
    c->use_params = 1;
}

static void round_array(double *x, int64_t n)
{
    for (int64_t i = 0; x && i < n; i++)
        x[i] = (double)(float)x[i];
}

void tu_case_round(tu_case *c)
{
    if (c->dtype != STILL_F32)
        return;
    const still_shape *s = &c->shape;
    int64_t nq = s->batch * s->heads_q * s->seq_len, nk = s->batch * s->heads_kv * s->seq_len;
    round_array(c->q, nq * s->dim_qk);
    round_array(c->k, nk * s->dim_qk);
    round_array(c->v, nk * s->dim_v);
    round_array(c->gate, nq * s->dim_v);
}

void tu_case_free(tu_case *c)
{
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->gate);
    for (int i = 0; i < 8; i++)
        free(c->store[i]);
    memset(c, 0, sizeof *c);
}

static size_t esize(int dtype)
{
    return dtype == STILL_F32 ? sizeof(float) : sizeof(double);
}

int tu_run_ref(const tu_case *c, double *o, double *sigma, uint8_t *sel)
{
    const still_shape *s = &c->shape;
    int64_t B = s->batch, Hq = s->heads_q, Hk = s->heads_kv, N = s->seq_len;
    int64_t d = s->dim_qk, dv = s->dim_v;
    size_t es = esize(c->dtype);
    void *q = tu_alloc((size_t)(B * Hq * N * d) * es);
    void *k = tu_alloc((size_t)(B * Hk * N * d) * es);
    void *v = tu_alloc((size_t)(B * Hk * N * dv) * es);
    void *gate = c->gate ? tu_alloc((size_t)(B * Hq * N * dv) * es) : NULL;
    void *out = tu_alloc((size_t)(B * Hq * N * dv) * es);
    tu_to_layout(c->q, B, Hq, N, d, s->layout, c->dtype, q);
    tu_to_layout(c->k, B, Hk, N, d, s->layout, c->dtype, k);
    tu_to_layout(c->v, B, Hk, N, dv, s->layout, c->dtype, v);
    if (gate)
        tu_to_layout(c->gate, B, Hq, N, dv, s->layout, c->dtype, gate);
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = c->dtype;
    t.q = q;
    t.k = k;
    t.v = v;
    t.gate = gate;
    t.o = out;
    t.sigma = sigma;
    t.selected = sel;
    t.selection_in = c->selection_in;
    int rc = still_ref_forward(&c->cfg, s, c->use_params ? &c->params : NULL, &t);
    if (rc == STILL_OK && o)
        tu_from_layout(out, B, Hq, N, dv, s->layout, c->dtype, o);
    free(q);
    free(k);
    free(v);
    free(gate);
    free(out);
    return rc;
}

int tu_run_teacher(const tu_case *c, double *o)
{
    const still_shape *s = &c->shape;
    int64_t B = s->batch, Hq = s->heads_q, Hk = s->heads_kv, N = s->seq_len;
    int64_t d = s->dim_qk, dv = s->dim_v;
    size_t es = esize(c->dtype);
    void *q = tu_alloc((size_t)(B * Hq * N * d) * es);
    void *k = tu_alloc((size_t)(B * Hk * N * d) * es);
    void *v = tu_alloc((size_t)(B * Hk * N * dv) * es);
    void *out = tu_alloc((size_t)(B * Hq * N * dv) * es);
    tu_to_layout(c->q, B, Hq, N, d, s->layout, c->dtype, q);
    tu_to_layout(c->k, B, Hk, N, d, s->layout, c->dtype, k);
    tu_to_layout(c->v, B, Hk, N, dv, s->layout, c->dtype, v);
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = c->dtype;
    t.q = q;
    t.k = k;
    t.v = v;
    t.o = out;
    int rc = still_ref_teacher(&c->cfg, s, &t);
    if (rc == STILL_OK)
        tu_from_layout(out, B, Hq, N, dv, s->layout, c->dtype, o);
    free(q);
    free(k);
    free(v);
    free(out);
    return rc;
}

/* ---- the model: SPEC §2 ---------------------------------------------------- */
static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void softmax_into(const double *z, int64_t n, double sign, double *out)
{
    double mx = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, sign * z[i]);
    for (int64_t i = 0; i < n; i++)
        sum += out[i] = exp(sign * z[i] - mx);
    for (int64_t i = 0; i < n; i++)
        out[i] /= sum;
}

void tu_model_feature_map(int act, int npmap, int64_t f, int64_t d, const double *W,
                          const double *b, const double *u, const double *x, double *phi)
{
    double *xr = tu_dalloc(d), *z = tu_dalloc(f);
    /* 1. Householder reflection with the floored norm of u */
    memcpy(xr, x, (size_t)d * sizeof(double));
    if (u) {
        double nu = fmax(sqrt(dot(u, u, d)), 1e-6), xu = 0.0;
        for (int64_t i = 0; i < d; i++)
            xu += x[i] * (u[i] / nu);
        for (int64_t i = 0; i < d; i++)
            xr[i] = x[i] - 2.0 * xu * (u[i] / nu);
    }
    /* 2. z = W x' + b (W NULL: the identity, f = d) */
    for (int64_t r = 0; r < f; r++) {
        z[r] = W ? dot(W + r * d, xr, d) : xr[r];
        if (b)
            z[r] += b[r];
    }
    /* 3. norm preservation: ||z^|| = ||x|| */
    if (npmap) {
        double nx = sqrt(dot(x, x, d)), nz = fmax(sqrt(dot(z, z, f)), 1e-12);
        for (int64_t r = 0; r < f; r++)
            z[r] = nx * z[r] / nz;
    }
    /* 4. activation and the 1e-12 floor */
    int64_t m = f;
    switch (act) {
    case STILL_ACT_HEDGEHOG:
        softmax_into(z, f, 1.0, phi);
        softmax_into(z, f, -1.0, phi + f);
        m = 2 * f;
        break;
    case STILL_ACT_SOFTMAX:
        softmax_into(z, f, 1.0, phi);
        break;
    case STILL_ACT_ELU1:
        for (int64_t r = 0; r < f; r++)
            phi[r] = (z[r] > 0.0 ? z[r] : expm1(z[r])) + 1.0;
        break;
    default: /* relu */
        for (int64_t r = 0; r < f; r++)
            phi[r] = z[r] > 0.0 ? z[r] : 0.0;
        break;
    }
    for (int64_t r = 0; r < m; r++)
        phi[r] = fmax(phi[r], 1e-12);
    free(xr);
    free(z);
}

/* ---- SPEC §4 ---------------------------------------------------------------- */
double tu_model_saliency(double scale, int64_t d, const double *q_t, const double *keys, int64_t n)
{
    if (n == 1)
        return INFINITY;
    double *s = tu_dalloc(n), *p = tu_dalloc(n), *pt = tu_dalloc(n);
    for (int64_t j = 0; j < n; j++)
        s[j] = scale * dot(q_t, keys + j * d, d);
    /* p: softmax over the whole window, with the self term */
    softmax_into(s, n, 1.0, p);
    /* p~: softmax over the window without t (the last row), p~_t = 0 */
    softmax_into(s, n - 1, 1.0, pt);
    pt[n - 1] = 0.0;
    double sigma = 0.0, eps = 1e-8;
    for (int64_t j = 0; j < n; j++)
        sigma += p[j] * log((p[j] + eps) / (pt[j] + eps));
    free(s);
    free(p);
    free(pt);
    return sigma;
}

/* ---- SPEC §5 ---------------------------------------------------------------- */
void tu_model_select(const double *sigma, int64_t N, int64_t C, int64_t k, uint8_t *sel)
{
    memset(sel, 0, (size_t)N);
    if (k > C)
        k = C; /* window routing leaves topk unchecked; it selects nothing */
    for (int64_t c0 = 0; c0 + C <= N; c0 += C) {
        /* pick k times the largest unpicked sigma, the smaller position on ties */
        for (int64_t r = 0; r < k; r++) {
            int64_t best = -1;
            for (int64_t j = c0; j < c0 + C; j++)
                if (!sel[j] && (best < 0 || sigma[j] > sigma[best]))
                    best = j;
            sel[best] = 1;
        }
    }
}

/* SPEC §5: the cache keeps the max_sel candidates of largest sigma; on a tie
 * the older leaves first, i.e. the newer is kept. */
static int cache_before(const double *sigma, int64_t a, int64_t b)
{
    return sigma[a] > sigma[b] || (sigma[a] == sigma[b] && a > b);
}

void tu_model_route(int routing, int64_t C, int64_t L, int64_t w, int64_t max_sel,
                    const double *sigma, const uint8_t *sel, int64_t t, uint8_t *exact)
{
    if (routing == STILL_ROUTING_WINDOW) {
        for (int64_t j = 0; j <= t; j++)
            exact[j] = j >= t - w + 1;
        return;
    }
    int64_t c = t / C;
    int64_t last_split = L == 0 ? c - 1 : c - L; /* chunks 0..last_split are split */
    int64_t ncache = 0;
    for (int64_t j = 0; j <= t; j++) {
        if (j / C > last_split)
            exact[j] = L > 0; /* recent chunks: exact, or linear for L = 0 */
        else
            ncache += exact[j] = sel[j] ? 1 : 0;
    }
    if (max_sel <= 0 || ncache <= max_sel)
        return;
    /* the cap: a candidate stays when fewer than max_sel candidates rank
     * before it */
    uint8_t *keep = tu_alloc((size_t)t + 1);
    for (int64_t j = 0; j <= t; j++) {
        if (j / C > last_split || !exact[j])
            continue;
        int64_t before = 0;
        for (int64_t i = 0; i <= t; i++)
            if (i / C <= last_split && exact[i] && i != j && cache_before(sigma, i, j))
                before++;
        keep[j] = before < max_sel;
    }
    for (int64_t j = 0; j <= t; j++)
        if (j / C <= last_split && exact[j] && !keep[j])
            exact[j] = 0;
    free(keep);
}

/* ---- SPEC §6: the whole forward ---------------------------------------- */
double tu_eff_scale(const tu_case *c)
{
    return c->cfg.scale != 0.0 ? c->cfg.scale : 1.0 / sqrt((double)c->shape.dim_qk);
}

int64_t tu_eff_w(const still_config *cfg)
{
    return cfg->window ? cfg->window : (cfg->chunk >= 2 ? cfg->chunk : 2);
}

int64_t tu_eff_k(const still_config *cfg)
{
    if (cfg->routing == STILL_ROUTING_ALL)
        return cfg->chunk;
    if (cfg->routing == STILL_ROUTING_NONE)
        return 0;
    return cfg->topk;
}

static int64_t map_f(const tu_case *c, const still_feature_map *fm)
{
    return fm->W ? fm->f : c->shape.dim_qk;
}

int64_t tu_eff_m(const tu_case *c)
{
    int64_t f = c->use_params ? map_f(c, &c->params.fq) : c->shape.dim_qk;
    return c->cfg.act == STILL_ACT_HEDGEHOG ? 2 * f : f;
}

static void head_phi(const tu_case *c, int which, int64_t h, const double *x, double *phi)
{
    int64_t d = c->shape.dim_qk;
    const still_feature_map *fm = NULL;
    if (c->use_params)
        fm = (which == STILL_MAP_K && !c->params.fk_tied) ? &c->params.fk : &c->params.fq;
    int64_t f = fm ? map_f(c, fm) : d;
    const double *W = fm && fm->W ? fm->W + h * f * d : NULL;
    const double *b = fm && fm->b ? fm->b + h * f : NULL;
    const double *u = fm && fm->u ? fm->u + h * d : NULL;
    tu_model_feature_map(c->cfg.act, c->cfg.npmap, f, d, W, b, u, x, phi);
}

/* phi_q of every query and phi_k of every key of head (b, h): [N][m] each */
static void head_features(const tu_case *c, int64_t b, int64_t h, double *pq, double *pk)
{
    const still_shape *s = &c->shape;
    int64_t N = s->seq_len, d = s->dim_qk, m = tu_eff_m(c), kv = h / (s->heads_q / s->heads_kv);
    for (int64_t t = 0; t < N; t++) {
        head_phi(c, STILL_MAP_Q, h, c->q + tu_bhnd(s->heads_q, N, d, b, h, t, 0), pq + t * m);
        head_phi(c, STILL_MAP_K, h, c->k + tu_bhnd(s->heads_kv, N, d, b, kv, t, 0), pk + t * m);
    }
}

/* sigma [N] of query head h of batch b: SPEC §4, averaged over the group
 * with per-kv selection. */
static void head_sigma(const tu_case *c, int64_t b, int64_t h, double *sigma)
{
    const still_shape *s = &c->shape;
    int64_t N = s->seq_len, d = s->dim_qk, G = s->heads_q / s->heads_kv;
    int64_t w = tu_eff_w(&c->cfg), kv = h / G;
    int64_t h0 = c->cfg.select_per_kv ? kv * G : h, h1 = c->cfg.select_per_kv ? h0 + G : h + 1;
    const double *keys = c->k + tu_bhnd(s->heads_kv, N, d, b, kv, 0, 0);
    for (int64_t t = 0; t < N; t++) {
        int64_t a = t - w + 1 > 0 ? t - w + 1 : 0;
        double sum = 0.0;
        for (int64_t hh = h0; hh < h1; hh++)
            sum += tu_model_saliency(tu_eff_scale(c), d,
                                     c->q + tu_bhnd(s->heads_q, N, d, b, hh, t, 0),
                                     keys + a * d, t - a + 1);
        sigma[t] = sum / (double)(h1 - h0);
    }
}

static void head_selection(const tu_case *c, int64_t b, int64_t h, const double *sigma,
                           uint8_t *sel)
{
    int64_t N = c->shape.seq_len, C = c->cfg.chunk;
    if (c->selection_in) {
        const uint8_t *in = c->selection_in + (b * c->shape.heads_q + h) * N;
        for (int64_t j = 0; j < N; j++)
            sel[j] = j < (N / C) * C ? in[j] : 0;
    } else {
        tu_model_select(sigma, N, C, tu_eff_k(&c->cfg), sel);
    }
}

/* weights of o_t for head (b, h): ex[j] (exact) and lin[j] (linear, before
 * the gate), and the denominator */
static double row_weights(const tu_case *c, int64_t b, int64_t h, int64_t t, const double *sigma,
                          const uint8_t *sel, const double *pq, const double *pk, double *ex,
                          double *lin)
{
    const still_shape *s = &c->shape;
    int64_t N = s->seq_len, d = s->dim_qk, G = s->heads_q / s->heads_kv, kv = h / G;
    int64_t m = tu_eff_m(c);
    double omega = c->use_params && c->params.window_w ? tu_sigmoid(c->params.window_w[h]) : 1.0;
    uint8_t *exact = tu_alloc((size_t)N);
    double *logit = tu_dalloc(N);
    const double *q_t = c->q + tu_bhnd(s->heads_q, N, d, b, h, t, 0);
    tu_model_route(c->cfg.routing, c->cfg.chunk, c->cfg.local, tu_eff_w(&c->cfg), c->cfg.max_sel,
                   sigma, sel, t, exact);
    double mt = -INFINITY;
    for (int64_t j = 0; j <= t; j++) {
        logit[j] = tu_eff_scale(c) * dot(q_t, c->k + tu_bhnd(s->heads_kv, N, d, b, kv, j, 0), d);
        if (exact[j])
            mt = fmax(mt, logit[j]);
    }
    if (mt == -INFINITY)
        mt = 0.0; /* E_t empty */
    double den = c->cfg.eps_den;
    for (int64_t j = 0; j <= t; j++) {
        ex[j] = lin[j] = 0.0;
        if (exact[j]) {
            ex[j] = omega * exp(logit[j] - mt);
            den += ex[j];
        } else {
            lin[j] = dot(pq, pk + j * m, m);
            den += lin[j];
        }
    }
    free(exact);
    free(logit);
    return den;
}

void tu_model_forward(const tu_case *c, double *o, double *sigma_out, uint8_t *sel_out)
{
    const still_shape *s = &c->shape;
    int64_t N = s->seq_len, dv = s->dim_v, G = s->heads_q / s->heads_kv;
    double *sigma = tu_dalloc(N), *ex = tu_dalloc(N), *lin = tu_dalloc(N);
    double *pq = tu_dalloc(N * tu_eff_m(c)), *pk = tu_dalloc(N * tu_eff_m(c));
    uint8_t *sel = tu_alloc((size_t)N);
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t h = 0; h < s->heads_q; h++) {
            head_features(c, b, h, pq, pk);
            head_sigma(c, b, h, sigma);
            head_selection(c, b, h, sigma, sel);
            if (sigma_out)
                memcpy(sigma_out + (b * s->heads_q + h) * N, sigma, (size_t)N * sizeof(double));
            if (sel_out)
                memcpy(sel_out + (b * s->heads_q + h) * N, sel, (size_t)N);
            for (int64_t t = 0; t < N; t++) {
                double den = row_weights(c, b, h, t, sigma, sel, pq + t * tu_eff_m(c), pk, ex, lin);
                const double *g = c->gate ? c->gate + tu_bhnd(s->heads_q, N, dv, b, h, t, 0) : NULL;
                double *o_t = o + tu_bhnd(s->heads_q, N, dv, b, h, t, 0);
                for (int64_t e = 0; e < dv; e++) {
                    double ne = 0.0, nl = 0.0;
                    for (int64_t j = 0; j <= t; j++) {
                        double vj = c->v[tu_bhnd(s->heads_kv, N, dv, b, h / G, j, e)];
                        ne += ex[j] * vj;
                        nl += lin[j] * vj;
                    }
                    o_t[e] = (ne + (g ? g[e] : 1.0) * nl) / den;
                }
            }
        }
    free(sigma);
    free(ex);
    free(lin);
    free(pq);
    free(pk);
    free(sel);
}

void tu_model_weights(const tu_case *c, int64_t b, int64_t h, double *a)
{
    int64_t N = c->shape.seq_len;
    int64_t m = tu_eff_m(c);
    double *sigma = tu_dalloc(N), *ex = tu_dalloc(N), *lin = tu_dalloc(N);
    double *pq = tu_dalloc(N * m), *pk = tu_dalloc(N * m);
    uint8_t *sel = tu_alloc((size_t)N);
    head_features(c, b, h, pq, pk);
    head_sigma(c, b, h, sigma);
    head_selection(c, b, h, sigma, sel);
    for (int64_t t = 0; t < N; t++) {
        double den = row_weights(c, b, h, t, sigma, sel, pq + t * m, pk, ex, lin);
        for (int64_t j = 0; j < N; j++)
            a[t * N + j] = j <= t ? (ex[j] + lin[j]) / den : 0.0;
    }
    free(pq);
    free(pk);
    free(sigma);
    free(ex);
    free(lin);
    free(sel);
}

int tu_run_suite(struct Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
