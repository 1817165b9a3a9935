/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * test_authors.c -- SPEC Appendix A: the ref path reproduces the authors'
 * prefill (tests/data/authors-compat, computed by a transcription of their
 * PyTorch code, see its README), and the properties of the two switches
 * (issue 8): off they change nothing, the phantom sink touches only
 * chunk-0 queries and by exactly l·e^{-m_t} in the denominator, and the
 * authors' saliency is the formula of App. A.1; App. A.3, the authors'
 * decode, against a naive implementation that recomputes every token from
 * its whole prefix.
 */
#include "internal.h"
#include "io.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the authors' cases --------------------------------------------------- */

typedef struct authors_case {
    int64_t B, H, N, d;
    double *q, *k, *v, *gate, *o, *sigma; /* BHND; sigma [B][H][N] */
    still_params params;
    double *storage;
} authors_case;

/* Reads dir/name.npy as doubles and checks its rank. */
static double *load_npy(const char *dir, const char *name, int ndim, int64_t *shape)
{
    char path[4096], err[STILL__ERRLEN] = "";
    still__array a;
    double *x = NULL;
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    int rc = still__npy_read(path, &a, err, sizeof err);
    ck_assert_msg(rc == STILL_OK, "%s: %s", path, err);
    ck_assert_int_eq(a.ndim, ndim);
    memcpy(shape, a.shape, (size_t)ndim * sizeof *shape);
    ck_assert_int_eq(still__array_to_f64(&a, &x), STILL_OK);
    still__array_free(&a);
    return x;
}

static void load_case(const char *name, authors_case *c)
{
    const char *root = getenv("STILL_TEST_DATA");
    char dir[2048], path[4096], err[STILL__ERRLEN] = "";
    int64_t shape[4], shape_s[3];
    ck_assert_msg(root != NULL, "STILL_TEST_DATA is not set");
    snprintf(dir, sizeof dir, "%s/authors-compat/%s", root, name);

    c->q = load_npy(dir, "q", 4, shape);
    c->B = shape[0], c->H = shape[1], c->N = shape[2], c->d = shape[3];
    c->k = load_npy(dir, "k", 4, shape);
    c->v = load_npy(dir, "v", 4, shape);
    c->gate = load_npy(dir, "gate", 4, shape);
    c->o = load_npy(dir, "o", 4, shape);
    ck_assert(shape[0] == c->B && shape[1] == c->H && shape[2] == c->N && shape[3] == c->d);
    c->sigma = load_npy(dir, "sigma", 3, shape_s);
    ck_assert(shape_s[0] == c->B && shape_s[1] == c->H && shape_s[2] == c->N);
    snprintf(path, sizeof path, "%s/params.safetensors", dir);
    int rc = still__params_read(path, c->H, c->d, &c->params, &c->storage, err, sizeof err);
    ck_assert_msg(rc == STILL_OK, "%s: %s", path, err);
}

static void free_case(authors_case *c)
{
    free(c->q); free(c->k); free(c->v); free(c->gate); free(c->o); free(c->sigma);
    free(c->storage);
}

/* SPEC App. A: C = w = l = 64, k = 4, L = 2, eps_den = 1e-6, both switches. */
static void compat_config(still_config *cfg)
{
    still_config_default(cfg);
    cfg->chunk = 64;
    cfg->window = 64;
    cfg->topk = 4;
    cfg->local = 2;
    cfg->eps_den = 1e-6;
    cfg->saliency = STILL_SALIENCY_AUTHORS;
    cfg->phantom_sink = 1;
}

static double max_abs(const double *x, int64_t n)
{
    double m = 0.0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

static double max_abs_diff(const double *a, const double *b, int64_t n)
{
    double m = 0.0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

static const char *const case_names[] = {"case1", "case2"};

START_TEST(test_authors_output_and_saliency_reproduced_to_1e12)
{
    authors_case c;
    still_config cfg;
    load_case(case_names[_i], &c);
    compat_config(&cfg);
    const int64_t n_o = c.B * c.H * c.N * c.d, n_s = c.B * c.H * c.N;
    still_shape shape = {c.B, c.H, c.H, c.N, c.d, c.d, STILL_LAYOUT_BHND};
    double *o = calloc((size_t)n_o, sizeof *o), *sigma = calloc((size_t)n_s, sizeof *sigma);
    uint8_t *sel = calloc((size_t)n_s, 1);
    ck_assert(o && sigma && sel);
    still_tensors t = {STILL_F64, c.q, c.k, c.v, c.gate, o, sigma, sel, NULL, NULL, NULL, NULL,
                       NULL, NULL};

    ck_assert_int_eq(still_ref_forward(&cfg, &shape, &c.params, &t), STILL_OK);

    /* o: relative to the largest output */
    double err_o = max_abs_diff(o, c.o, n_o) / max_abs(c.o, n_o);
    /* sigma: +inf where theirs is (their NaN of token 0), elsewhere
     * relative to the largest finite score */
    double scale_s = 0.0, err_s = 0.0;
    for (int64_t i = 0; i < n_s; i++)
        if (isfinite(c.sigma[i]))
            scale_s = fmax(scale_s, fabs(c.sigma[i]));
    for (int64_t i = 0; i < n_s; i++) {
        if (isinf(c.sigma[i]) || isinf(sigma[i])) {
            ck_assert_msg(sigma[i] == c.sigma[i], "sigma[%lld]: %g vs %g", (long long)i,
                          sigma[i], c.sigma[i]);
            ck_assert_msg(i % c.N == 0, "only token 0 scores +inf");
            ck_assert_msg(sel[i] == 1, "token 0 (+inf) is selected first");
            continue;
        }
        err_s = fmax(err_s, fabs(sigma[i] - c.sigma[i]) / scale_s);
    }
    printf("# %s: max|o - o_authors|/max|o_authors| = %.3g, "
           "max|sigma - sigma_authors|/max|sigma_authors| = %.3g\n",
           case_names[_i], err_o, err_s);
    ck_assert_msg(err_o <= 1e-12, "%s: o differs by %g", case_names[_i], err_o);
    ck_assert_msg(err_s <= 1e-12, "%s: sigma differs by %g", case_names[_i], err_s);
    free(o); free(sigma); free(sel);
    free_case(&c);
}
END_TEST

static float *to_f32(const double *x, int64_t n)
{
    float *y = malloc((size_t)n * sizeof *y);
    ck_assert(y);
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)x[i];
    return y;
}

/* SPEC §10 on the fast path: the authors' outputs within 1e-5·max|v|, and
 * the same selection wherever the two sigmas are not near-tied. */
START_TEST(test_authors_output_reproduced_by_fast_path)
{
    authors_case c;
    still_config cfg;
    load_case(case_names[_i], &c);
    compat_config(&cfg);
    const int64_t n_o = c.B * c.H * c.N * c.d, n_s = c.B * c.H * c.N;
    still_shape shape = {c.B, c.H, c.H, c.N, c.d, c.d, STILL_LAYOUT_BHND};
    float *q = to_f32(c.q, n_o), *k = to_f32(c.k, n_o), *v = to_f32(c.v, n_o);
    float *gate = to_f32(c.gate, n_o), *o = calloc((size_t)n_o, sizeof *o);
    double *sigma = calloc((size_t)n_s, sizeof *sigma), err = 0.0;
    uint8_t *sel = calloc((size_t)n_s, 1), *sel_ref = calloc((size_t)n_s, 1);
    double *o_ref = calloc((size_t)n_o, sizeof *o_ref);
    ck_assert(o && sigma && sel && sel_ref && o_ref);
    still_tensors t = {STILL_F32, q, k, v, gate, o, sigma, sel, NULL, NULL, NULL, NULL, NULL, NULL};
    still_tensors tr = {STILL_F64, c.q, c.k, c.v, c.gate, o_ref, NULL, sel_ref, NULL, NULL, NULL,
                        NULL, NULL, NULL};

    ck_assert_int_eq(still_forward(&cfg, &shape, &c.params, &t), STILL_OK);
    ck_assert_int_eq(still_ref_forward(&cfg, &shape, &c.params, &tr), STILL_OK);
    for (int64_t i = 0; i < n_s; i++)
        if (sel[i] != sel_ref[i])
            ck_assert_msg(isfinite(sigma[i]) && isfinite(c.sigma[i]) &&
                              fabs(sigma[i] - c.sigma[i]) < 1e-4 * (1.0 + fabs(c.sigma[i])),
                          "%s: token %lld selected differently, sigma %g vs %g",
                          case_names[_i], (long long)i, sigma[i], c.sigma[i]);
    for (int64_t i = 0; i < n_o; i++)
        err = fmax(err, fabs((double)o[i] - c.o[i]));
    printf("# %s fast: max|o - o_authors| = %.3g, bound 1e-5*max|v| = %.3g\n", case_names[_i],
           err, 1e-5 * max_abs(c.v, n_o));
    ck_assert_msg(err <= 1e-5 * max_abs(c.v, n_o), "%s: fast o differs by %g", case_names[_i],
                  err);
    free(q); free(k); free(v); free(gate); free(o); free(sigma); free(sel); free(sel_ref);
    free(o_ref);
    free_case(&c);
}
END_TEST

/* Without the phantom sink the authors' chunk-0 outputs are NOT reproduced
 * (the data can tell the switch apart from its absence). */
START_TEST(test_authors_data_needs_the_phantom_sink)
{
    authors_case c;
    still_config cfg;
    load_case("case1", &c);
    compat_config(&cfg);
    cfg.phantom_sink = 0;
    const int64_t n_o = c.B * c.H * c.N * c.d;
    still_shape shape = {c.B, c.H, c.H, c.N, c.d, c.d, STILL_LAYOUT_BHND};
    double *o = calloc((size_t)n_o, sizeof *o);
    ck_assert(o != NULL);
    still_tensors t = {STILL_F64, c.q, c.k, c.v, c.gate, o, NULL, NULL, NULL, NULL, NULL, NULL,
                       NULL, NULL};
    ck_assert_int_eq(still_ref_forward(&cfg, &shape, &c.params, &t), STILL_OK);
    ck_assert(max_abs_diff(o, c.o, n_o) > 1e-3 * max_abs(c.o, n_o));
    free(o);
    free_case(&c);
}
END_TEST

/* ---- random inputs for the properties ------------------------------------ */

typedef struct rng {
    uint64_t s;
} rng;

static double uniform(rng *g, double lo, double hi) /* splitmix64 */
{
    uint64_t z = (g->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return lo + (hi - lo) * (double)(z >> 11) / 9007199254740992.0;
}

static double *random_array(rng *g, int64_t n, double lo, double hi)
{
    double *x = malloc((size_t)n * sizeof *x);
    ck_assert(x != NULL);
    for (int64_t i = 0; i < n; i++)
        x[i] = uniform(g, lo, hi);
    return x;
}

/* One head set of random inputs with NP-Map parameters. */
typedef struct random_case {
    still_shape shape;
    double *q, *k, *v, *gate, *W, *u;
    still_params params;
} random_case;

static void random_setup(random_case *rc, uint64_t seed, int64_t N, int64_t d)
{
    rng g = {seed};
    still_shape s = {1, 2, 1, N, d, 3, STILL_LAYOUT_BHND};
    rc->shape = s;
    rc->q = random_array(&g, 2 * N * d, -1.5, 1.5);
    rc->k = random_array(&g, N * d, -1.5, 1.5);
    rc->v = random_array(&g, N * 3, -1.0, 1.0);
    rc->gate = random_array(&g, 2 * N * 3, 0.0, 1.0);
    rc->W = random_array(&g, 2 * d * d, -0.5, 0.5);
    rc->u = random_array(&g, 2 * d, -1.0, 1.0);
    still_params_default(&rc->params);
    rc->params.fq.f = d;
    rc->params.fq.W = rc->W;
    rc->params.fq.u = rc->u;
}

static void random_free(random_case *rc)
{
    free(rc->q); free(rc->k); free(rc->v); free(rc->gate); free(rc->W); free(rc->u);
}

static void random_forward(const random_case *rc, const still_config *cfg, double *o,
                           double *sigma)
{
    still_tensors t = {STILL_F64, rc->q, rc->k, rc->v, rc->gate, o, sigma, NULL, NULL, NULL,
                       NULL, NULL, NULL, NULL};
    ck_assert_int_eq(still_ref_forward(cfg, &rc->shape, &rc->params, &t), STILL_OK);
}

/* Issue 8: with both switches off (set explicitly), the result is the
 * default path bit for bit; and each switch does change the result. */
START_TEST(test_switches_off_equal_default_path)
{
    random_case rc;
    const int64_t N = 53, n_o = 2 * N * 3;
    double o_def[2 * 53 * 3], o_off[2 * 53 * 3], o_on[2 * 53 * 3];
    double s_def[2 * 53], s_off[2 * 53], s_on[2 * 53];
    still_config def, off, on;
    random_setup(&rc, 11, N, 6);
    still_config_default(&def);
    def.chunk = 8;
    def.topk = 2;
    off = def;
    off.saliency = STILL_SALIENCY_SPEC;
    off.phantom_sink = 0;
    on = def;
    on.saliency = STILL_SALIENCY_AUTHORS;
    on.phantom_sink = 1;

    random_forward(&rc, &def, o_def, s_def);
    random_forward(&rc, &off, o_off, s_off);
    random_forward(&rc, &on, o_on, s_on);
    ck_assert(memcmp(o_def, o_off, sizeof o_def) == 0);
    ck_assert(memcmp(s_def, s_off, sizeof s_def) == 0);
    ck_assert(max_abs_diff(o_def, o_on, n_o) > 1e-6);
    ck_assert(max_abs_diff(s_def + 1, s_on + 1, N - 1) > 1e-6);
    random_free(&rc);
}
END_TEST

/* App. A.2: the phantom sink changes only queries of chunk 0.  With
 * L >= 1 and eps_den = 0 a chunk-0 query is plain softmax attention over
 * 0..t, so o_phantom = sum e^{s} v / (sum e^{s} + l) = o_teacher·Z/(Z + l)
 * with Z = sum_{j<=t} e^{s(t,j)}: exactly l·e^{-m_t} more in the
 * denominator after the shift by m_t. */
START_TEST(test_phantom_changes_only_chunk0_queries_by_l_exp_minus_m)
{
    random_case rc;
    const int64_t N = 45, d = 5, dv = 3, C = 12;
    double o_off[2 * 45 * 3], o_on[2 * 45 * 3], teacher[2 * 45 * 3];
    still_config cfg;
    random_setup(&rc, 29, N, d);
    still_config_default(&cfg);
    cfg.chunk = C;
    cfg.topk = 3;
    cfg.local = 1 + _i; /* L = 1 and 2 */
    cfg.eps_den = 0.0;
    random_forward(&rc, &cfg, o_off, NULL);
    cfg.phantom_sink = 1;
    random_forward(&rc, &cfg, o_on, NULL);
    still_tensors t = {STILL_F64, rc.q, rc.k, rc.v, NULL, teacher, NULL, NULL, NULL, NULL, NULL,
                       NULL, NULL, NULL};
    ck_assert_int_eq(still_ref_teacher(&cfg, &rc.shape, &t), STILL_OK);

    for (int64_t h = 0; h < 2; h++)
        for (int64_t n = 0; n < N; n++) {
            const double *o1 = o_off + (h * N + n) * dv, *o2 = o_on + (h * N + n) * dv;
            if (n >= C) { /* untouched, bit for bit */
                ck_assert(memcmp(o1, o2, (size_t)dv * sizeof *o1) == 0);
                continue;
            }
            double Z = 0.0;
            for (int64_t j = 0; j <= n; j++) {
                double dot = 0.0;
                for (int64_t i = 0; i < d; i++)
                    dot += rc.q[(h * N + n) * d + i] * rc.k[j * d + i];
                Z += exp(dot / sqrt((double)d));
            }
            for (int64_t e = 0; e < dv; e++) {
                double want = teacher[(h * N + n) * dv + e] * Z / (Z + (double)C);
                ck_assert_msg(fabs(o2[e] - want) <= 1e-13, "h=%lld t=%lld: %.17g vs %.17g",
                              (long long)h, (long long)n, o2[e], want);
                ck_assert(fabs(o2[e] - o1[e]) > 1e-6 * fabs(o1[e]));
            }
        }
    random_free(&rc);
}
END_TEST

/* App. A.1 written out again, slot by slot with stored arrays: the score
 * of token t = c·l + i (t >= 1). */
static double authors_sigma(const double *q_t, const double *k, int64_t d, int64_t l, int64_t t,
                            int overwrite)
{
    const double eps = 1e-8;
    int64_t c = t / l, i = t % l;
    double s[64], a1[64], a2[64], m1 = -INFINITY, m2 = -INFINITY, z1 = 0.0, z2 = 0.0;
    int present[64];
    for (int64_t j = 0; j < l; j++) {
        int64_t key = j <= i ? c * l + j : (c - 1) * l + j;
        present[j] = j <= i || c > 0;
        s[j] = 0.0;
        if (present[j])
            for (int64_t x = 0; x < d; x++)
                s[j] += q_t[x] * k[key * d + x] / sqrt((double)d);
        if (present[j])
            m1 = fmax(m1, s[j]);
        if (present[j] && j != i)
            m2 = fmax(m2, s[j]);
    }
    for (int64_t j = 0; j < l; j++) {
        a1[j] = present[j] ? exp(s[j] - m1) : 0.0;
        a2[j] = present[j] && j != i ? exp(s[j] - m2) : 0.0;
        z1 += a1[j];
        z2 += a2[j];
    }
    double sigma = 0.0;
    for (int64_t j = 0; j < l; j++) {
        double p = (a1[j] / z1 + eps) / (1.0 + l * eps);
        double pw = (a2[j] / z2 + eps) / (1.0 + l * eps + 1.0 / l);
        if (overwrite && j == l - 1)
            pw = 1.0 / l + eps;
        sigma += p * log(p / (pw + eps));
    }
    return sigma;
}

/* App. A.1: the library's authors saliency is the formula (token 0 +inf),
 * and the slot overwrite touches slot l-1 only: removing it changes sigma
 * by exactly the slot-(l-1) term. */
START_TEST(test_authors_saliency_is_appendix_a1_formula)
{
    random_case rc;
    const int64_t N = 37, d = 4, l = 8;
    double sigma[2 * 37], o[2 * 37 * 3];
    still_config cfg;
    random_setup(&rc, 47, N, d);
    still_config_default(&cfg);
    cfg.chunk = l;
    cfg.topk = 2;
    cfg.saliency = STILL_SALIENCY_AUTHORS;
    random_forward(&rc, &cfg, o, sigma);
    for (int64_t h = 0; h < 2; h++) {
        ck_assert(isinf(sigma[h * N]) && sigma[h * N] > 0);
        for (int64_t t = 1; t < N; t++) {
            const double *q_t = rc.q + (h * N + t) * d;
            double want = authors_sigma(q_t, rc.k, d, l, t, 1);
            ck_assert_msg(fabs(sigma[h * N + t] - want) <= 1e-13 * (1.0 + fabs(want)),
                          "h=%lld t=%lld: %.17g vs %.17g", (long long)h, (long long)t,
                          sigma[h * N + t], want);
        }
    }
    /* without the overwrite, only the slot-(l-1) term differs */
    const double eps = 1e-8;
    int64_t t = 13, i = t % l;
    const double *q_t = rc.q + t * d;
    double s_last = 0.0, m1 = -INFINITY, z1 = 0.0, m2 = -INFINITY, z2 = 0.0, s_j;
    for (int64_t j = 0; j < l; j++) {
        int64_t key = j <= i ? t - i + j : t - i - l + j;
        s_j = 0.0;
        for (int64_t x = 0; x < d; x++)
            s_j += q_t[x] * rc.k[key * d + x] / sqrt((double)d);
        if (j == l - 1)
            s_last = s_j;
        m1 = fmax(m1, s_j);
        if (j != i)
            m2 = fmax(m2, s_j);
    }
    for (int64_t j = 0; j < l; j++) {
        int64_t key = j <= i ? t - i + j : t - i - l + j;
        s_j = 0.0;
        for (int64_t x = 0; x < d; x++)
            s_j += q_t[x] * rc.k[key * d + x] / sqrt((double)d);
        z1 += exp(s_j - m1);
        if (j != i)
            z2 += exp(s_j - m2);
    }
    double p = (exp(s_last - m1) / z1 + eps) / (1.0 + l * eps);
    double pw = (exp(s_last - m2) / z2 + eps) / (1.0 + l * eps + 1.0 / l);
    double term_with = p * log(p / (1.0 / l + 2.0 * eps)), term_without = p * log(p / (pw + eps));
    double delta = authors_sigma(q_t, rc.k, d, l, t, 0) - sigma[t];
    ck_assert_msg(fabs(delta - (term_without - term_with)) <= 1e-13, "%.17g vs %.17g", delta,
                  term_without - term_with);
    random_free(&rc);
}
END_TEST

/* ---- App. A.3: the authors' decode ------------------------------------------ */

/* One problem, batch 1: q [Hq][N][d], k [Hk][N][d], v [Hk][N][dv],
 * gate [Hq][N][dv] (or NULL). */
typedef struct decode_problem {
    int64_t Hq, Hk, N, d, dv;
    const double *q, *k, *v, *gate;
    const still_params *params;
} decode_problem;

/* App. A.3's score of a decoded token t, from scratch: logits without the
 * scale over the last l keys, the self slot overwritten. */
static double naive_decode_sigma(const double *q_t, const double *k, int64_t d, int64_t l,
                                 int64_t t)
{
    const double eps = 1e-8;
    int64_t first = t - l + 1 > 0 ? t - l + 1 : 0, n = t - first + 1;
    double u[256], with[256], without[256], zw = 0.0, zo = 0.0, mx = -INFINITY, sigma = 0.0;
    ck_assert(n <= 256);
    for (int64_t j = 0; j < n; j++) {
        u[j] = 0.0;
        for (int64_t x = 0; x < d; x++)
            u[j] += q_t[x] * k[(first + j) * d + x];
        mx = fmax(mx, u[j]);
    }
    for (int64_t j = 0; j < n; j++) {
        with[j] = exp(u[j] - mx);
        without[j] = j == n - 1 ? 0.0 : exp(u[j] - mx);
        zw += with[j];
        zo += without[j];
    }
    for (int64_t j = 0; j < n; j++) {
        double p = (with[j] / zw + eps) / (1.0 + l * eps);
        double pt = j == n - 1 ? 1.0 / l + eps : (without[j] / zo + eps) / (1.0 + l * eps + 1.0 / l);
        sigma += p * log(p / (pt + eps));
    }
    return sigma;
}

/* q^T k / sqrt(d): the scaled logit of SPEC §0. */
static double dot_scaled(const double *q, const double *k, int64_t d)
{
    double s = 0.0;
    for (int64_t x = 0; x < d; x++)
        s += q[x] * k[x];
    return s / sqrt((double)d);
}

/* 1 when token i of scores [l] is among the k largest (ties: smaller i). */
static int naive_top(const double *score, int64_t l, int64_t k, int64_t i)
{
    int64_t better = 0;
    for (int64_t j = 0; j < l; j++)
        if (score[j] > score[i] || (score[j] == score[i] && j < i))
            better++;
    return better < k;
}

/* App. A.3 from scratch for every query head and token t >= n (prompt n):
 * the scores of every token (A.1 from the library's prefill sigma_pre for
 * t < n), the selections of the split chunks, the output over the exact
 * and linear sets.  o [Hq][N][dv]. */
static void naive_authors_decode(const decode_problem *pb, const still_config *cfg, int64_t n,
                                 const double *sigma_pre, double *o, double *sigma)
{
    const int64_t l = cfg->chunk, k = cfg->topk, N = pb->N, d = pb->d, dv = pb->dv;
    const int64_t group = pb->Hq / pb->Hk, prompt_chunks = (n + l - 1) / l;
    still_shape sh = {1, pb->Hq, pb->Hk, N, d, dv, STILL_LAYOUT_BHND};
    still__resolved r;
    ck_assert_int_eq(still__resolve(cfg, &sh, pb->params, &r), STILL_OK);
    double *phi_q = malloc((size_t)r.m * sizeof *phi_q), *phi_k = malloc((size_t)r.m * sizeof *phi_k);
    double *num = malloc((size_t)dv * sizeof *num), *lin = malloc((size_t)dv * sizeof *lin);
    uint8_t *exact = malloc((size_t)N), *linear = malloc((size_t)N);
    ck_assert(phi_q && phi_k && num && lin && exact && linear);
    for (int64_t h = 0; h < pb->Hq; h++) {
        const double *q = pb->q + h * N * d, *kk = pb->k + (h / group) * N * d;
        const double *v = pb->v + (h / group) * N * dv;
        double *sg = sigma + h * N;
        for (int64_t t = 0; t < N; t++)
            sg[t] = t < n ? sigma_pre[h * N + t] : naive_decode_sigma(q + t * d, kk, d, l, t);
        for (int64_t t = n; t < N; t++) {
            const int64_t c = t / l;
            memset(exact, 0, (size_t)N);
            memset(linear, 0, (size_t)N);
            for (int64_t cc = 0; cc <= c - 2; cc++) {
                const double *rank = cc <= prompt_chunks - 3 ? sg + cc * l : sg + (cc + 1) * l;
                for (int64_t i = 0; i < l; i++) {
                    if (naive_top(rank, l, k, i))
                        exact[cc * l + i] = 1;
                    else
                        linear[cc * l + i] = 1;
                }
            }
            for (int64_t j = (c - 1) * l > 0 ? (c - 1) * l : 0; j <= t; j++)
                exact[j] = 1;
            double mx = -INFINITY, den = 0.0, lden = 0.0;
            for (int64_t j = 0; j <= t; j++)
                if (exact[j])
                    mx = fmax(mx, dot_scaled(q + t * d, kk + j * d, d));
            ck_assert_int_eq(still_ref_feature_map(cfg, pb->params, STILL_MAP_Q, h, d, 1, q + t * d,
                                                   phi_q), STILL_OK);
            memset(num, 0, (size_t)dv * sizeof *num);
            memset(lin, 0, (size_t)dv * sizeof *lin);
            for (int64_t j = 0; j <= t; j++) {
                if (exact[j]) {
                    double p = exp(dot_scaled(q + t * d, kk + j * d, d) - mx);
                    den += p;
                    for (int64_t e = 0; e < dv; e++)
                        num[e] += p * v[j * dv + e];
                } else if (linear[j]) {
                    ck_assert_int_eq(still_ref_feature_map(cfg, pb->params, STILL_MAP_K, h, d, 1,
                                                           kk + j * d, phi_k), STILL_OK);
                    double kap = 0.0;
                    for (int64_t a = 0; a < r.m; a++)
                        kap += phi_q[a] * phi_k[a];
                    lden += kap;
                    for (int64_t e = 0; e < dv; e++)
                        lin[e] += kap * v[j * dv + e];
                }
            }
            for (int64_t e = 0; e < dv; e++) {
                double g = pb->gate ? pb->gate[(h * N + t) * dv + e] : 1.0;
                o[(h * N + t) * dv + e] = (num[e] + g * lin[e]) / (den + lden); /* no eps_den */
            }
        }
    }
    free(phi_q); free(phi_k); free(num); free(lin); free(exact); free(linear);
}

/* Rows from..from+cnt-1 of x [H][N][D] into y [H][cnt][D]. */
static void rows_of(const double *x, int64_t H, int64_t N, int64_t D, int64_t from, int64_t cnt,
                    double *y)
{
    for (int64_t h = 0; h < H; h++)
        memcpy(y + h * cnt * D, x + (h * N + from) * D, (size_t)(cnt * D) * sizeof *y);
}

/* Runs a ref state with the switch: a first block of n tokens, then blocks
 * of `step` tokens (saved and restored half-way when `reload`); o and
 * sigma of every token, [Hq][N][dv] and [Hq][N]. */
static void state_run(const decode_problem *pb, const still_config *cfg, int64_t n, int64_t step,
                      int reload, double *o, double *sigma)
{
    const int64_t N = pb->N, d = pb->d, dv = pb->dv, cap = n > step ? n : step;
    still_shape sh = {1, pb->Hq, pb->Hk, 0, d, dv, STILL_LAYOUT_BHND};
    still_state *st;
    ck_assert_int_eq(still_state_create(cfg, &sh, pb->params, STILL_PATH_REF, &st), STILL_OK);
    double *bq = malloc((size_t)(pb->Hq * cap * d) * sizeof *bq);
    double *bk = malloc((size_t)(pb->Hk * cap * d) * sizeof *bk);
    double *bv = malloc((size_t)(pb->Hk * cap * dv) * sizeof *bv);
    double *bg = malloc((size_t)(pb->Hq * cap * dv) * sizeof *bg);
    double *bo = malloc((size_t)(pb->Hq * cap * dv) * sizeof *bo);
    double *bs = malloc((size_t)(pb->Hq * cap) * sizeof *bs);
    ck_assert(bq && bk && bv && bg && bo && bs);
    for (int64_t t = 0; t < N;) {
        int64_t cnt = t == 0 ? n : (step < N - t ? step : N - t);
        if (reload && t >= N / 2 && t - cnt < N / 2) {
            size_t len;
            ck_assert_int_eq(still_state_save(st, NULL, 0, &len), STILL_OK);
            void *buf = malloc(len);
            ck_assert(buf);
            ck_assert_int_eq(still_state_save(st, buf, len, &len), STILL_OK);
            still_state_destroy(st);
            ck_assert_int_eq(still_state_load(buf, len, pb->params, &st), STILL_OK);
            free(buf);
        }
        rows_of(pb->q, pb->Hq, N, d, t, cnt, bq);
        rows_of(pb->k, pb->Hk, N, d, t, cnt, bk);
        rows_of(pb->v, pb->Hk, N, dv, t, cnt, bv);
        if (pb->gate)
            rows_of(pb->gate, pb->Hq, N, dv, t, cnt, bg);
        still_tensors tt = {STILL_F64, bq, bk, bv, pb->gate ? bg : NULL, bo, bs,
                            NULL, NULL, NULL, NULL, NULL, NULL, NULL};
        ck_assert_int_eq(still_state_append(st, cnt, &tt), STILL_OK);
        for (int64_t h = 0; h < pb->Hq; h++) {
            memcpy(o + (h * N + t) * dv, bo + h * cnt * dv, (size_t)(cnt * dv) * sizeof *o);
            memcpy(sigma + h * N + t, bs + h * cnt, (size_t)cnt * sizeof *sigma);
        }
        t += cnt;
    }
    still_state_destroy(st);
    free(bq); free(bk); free(bv); free(bg); free(bo); free(bs);
}

/* The state with the switch against the naive A.3 at every position; the
 * prompt's tokens against the library's --compat authors prefill.  Returns
 * max |o_decode - o_prefill| over the decoded tokens. */
static double check_authors_decode(const decode_problem *pb, const still_config *cfg, int64_t n)
{
    const int64_t N = pb->N, dv = pb->dv, no = pb->Hq * N * dv;
    still_shape sh = {1, pb->Hq, pb->Hk, N, pb->d, dv, STILL_LAYOUT_BHND};
    double *o_pre = calloc((size_t)no, sizeof(double)), *s_pre = calloc((size_t)(pb->Hq * N), sizeof(double));
    double *o_nv = calloc((size_t)no, sizeof(double)), *s_nv = calloc((size_t)(pb->Hq * N), sizeof(double));
    double *o_st = calloc((size_t)no, sizeof(double)), *s_st = calloc((size_t)(pb->Hq * N), sizeof(double));
    ck_assert(o_pre && s_pre && o_nv && s_nv && o_st && s_st);
    still_tensors tp = {STILL_F64, pb->q, pb->k, pb->v, pb->gate, o_pre, s_pre,
                        NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    ck_assert_int_eq(still_ref_forward(cfg, &sh, pb->params, &tp), STILL_OK);
    naive_authors_decode(pb, cfg, n, s_pre, o_nv, s_nv);
    double vmax = max_abs(pb->v, pb->Hk * N * dv), diff = 0.0;
    for (int reload = 0; reload <= 1; reload++)
        for (int64_t step = 1; step <= 3; step += 2) {
            state_run(pb, cfg, n, step, reload, o_st, s_st);
            for (int64_t h = 0; h < pb->Hq; h++)
                for (int64_t t = 0; t < N; t++) {
                    double want_s = s_nv[h * N + t], got_s = s_st[h * N + t];
                    ck_assert_msg(want_s == got_s || fabs(want_s - got_s) <= 1e-12 * (1.0 + fabs(want_s)),
                                  "n=%lld step=%lld h=%lld t=%lld sigma %.17g vs %.17g", (long long)n,
                                  (long long)step, (long long)h, (long long)t, got_s, want_s);
                    const double *want = (t < n ? o_pre : o_nv) + (h * N + t) * dv;
                    for (int64_t e = 0; e < dv; e++)
                        ck_assert_msg(fabs(o_st[(h * N + t) * dv + e] - want[e]) <= 1e-12 * vmax,
                                      "n=%lld step=%lld reload=%d h=%lld t=%lld e=%lld: %.17g vs %.17g",
                                      (long long)n, (long long)step, reload, (long long)h,
                                      (long long)t, (long long)e, o_st[(h * N + t) * dv + e], want[e]);
                    for (int64_t e = 0; t >= n && e < dv; e++)
                        diff = fmax(diff, fabs(o_st[(h * N + t) * dv + e] - o_pre[(h * N + t) * dv + e]));
                }
        }
    free(o_pre); free(s_pre); free(o_nv); free(s_nv); free(o_st); free(s_st);
    return diff / vmax;
}

START_TEST(test_authors_decode_state_equals_naive_appendix_a3_random)
{
    const int64_t N = 61, d = 5, l = 8;
    random_case rc;
    still_config cfg;
    random_setup(&rc, 71, N, d);
    compat_config(&cfg);
    cfg.chunk = cfg.window = l;
    cfg.topk = 2;
    cfg.authors_decode = 1;
    decode_problem pb = {2, 1, N, d, 3, rc.q, rc.k, rc.v, rc.gate, &rc.params};
    const int64_t prompts[] = {1, 2, 8, 13, 16, 24, 30, 60};
    for (size_t i = 0; i < sizeof prompts / sizeof prompts[0]; i++) {
        double diff = check_authors_decode(&pb, &cfg, prompts[i]);
        printf("# App. A.3 random, prompt %lld: max |decode - prefill| = %.3g max|v|\n",
               (long long)prompts[i], diff);
        ck_assert(diff > 0.0); /* A.3: no eps_den, other scores */
    }
    random_free(&rc);
}
END_TEST

START_TEST(test_authors_decode_state_equals_naive_appendix_a3_case1)
{
    authors_case c;
    still_config cfg;
    load_case("case1", &c);
    compat_config(&cfg);
    cfg.authors_decode = 1;
    decode_problem pb = {c.H, c.H, c.N, c.d, c.d, c.q, c.k, c.v, c.gate, &c.params};
    const int64_t prompts[] = {64, 100};
    for (size_t i = 0; i < sizeof prompts / sizeof prompts[0]; i++) {
        double diff = check_authors_decode(&pb, &cfg, prompts[i]);
        printf("# App. A.3 case1, prompt %lld: max |decode - prefill| = %.3g max|v|\n",
               (long long)prompts[i], diff);
        ck_assert(diff > 0.0);
    }
    free_case(&c);
}
END_TEST

START_TEST(test_authors_decode_refusals)
{
    random_case rc;
    still_config cfg;
    still_state *st = NULL;
    random_setup(&rc, 5, 4, 4);
    still_shape sh = rc.shape;
    compat_config(&cfg);
    cfg.chunk = cfg.window = 4;
    cfg.authors_decode = 2;
    ck_assert_int_eq(still_state_create(&cfg, &sh, &rc.params, STILL_PATH_REF, &st), STILL_E_CONFIG);
    cfg.authors_decode = 1;
    ck_assert_int_eq(still_state_create(&cfg, &sh, &rc.params, STILL_PATH_FAST, &st),
                     STILL_E_UNSUPPORTED);
    ck_assert_ptr_null(st);
    still_config bad = cfg;
    bad.saliency = STILL_SALIENCY_SPEC;
    ck_assert_int_eq(still_state_create(&bad, &sh, &rc.params, STILL_PATH_REF, &st),
                     STILL_E_UNSUPPORTED);
    bad = cfg;
    bad.local = 1;
    ck_assert_int_eq(still_state_create(&bad, &sh, &rc.params, STILL_PATH_REF, &st),
                     STILL_E_UNSUPPORTED);
    bad = cfg;
    bad.max_sel = 4;
    ck_assert_int_eq(still_state_create(&bad, &sh, &rc.params, STILL_PATH_REF, &st),
                     STILL_E_UNSUPPORTED);
    ck_assert_int_eq(still_state_create(&cfg, &sh, &rc.params, STILL_PATH_REF, &st), STILL_OK);
    still_state_destroy(st);
    random_free(&rc);
}
END_TEST

static Suite *authors_suite(void)
{
    Suite *s = suite_create("authors");
    TCase *tc = tcase_create("compat");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_authors_output_and_saliency_reproduced_to_1e12, 0, 2);
    tcase_add_loop_test(tc, test_authors_output_reproduced_by_fast_path, 0, 2);
    tcase_add_test(tc, test_authors_data_needs_the_phantom_sink);
    tcase_add_test(tc, test_switches_off_equal_default_path);
    tcase_add_loop_test(tc, test_phantom_changes_only_chunk0_queries_by_l_exp_minus_m, 0, 2);
    tcase_add_test(tc, test_authors_saliency_is_appendix_a1_formula);
    tcase_add_test(tc, test_authors_decode_state_equals_naive_appendix_a3_random);
    tcase_add_test(tc, test_authors_decode_state_equals_naive_appendix_a3_case1);
    tcase_add_test(tc, test_authors_decode_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(authors_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
