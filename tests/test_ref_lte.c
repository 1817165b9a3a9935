/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_ref_lte.c -- routing lte (SPEC §15) on the ref path: the score
 * network against a second, padded implementation written here, the
 * streaming cache against a list model of its rules, the identities of
 * §15, prefix recomputation (decode) = prefill, GQA and refusals. */
#include "../ref/ref.h"
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One lte call in BHND double: inputs, network and outputs. */
typedef struct lte_case {
    still_shape shape;
    still_config cfg;
    double *q, *k, *v, *x; /* x [B][Hk][N][c0] or NULL (= [k ‖ v]) */
    int64_t c0;
    still_lte_params net;
    still_params params;
    double *store[2 * STILL_LTE_LAYERS_MAX + 2];
} lte_case;

/* Random network with `layers` layers of `width` channels; proj_bias_only:
 * proj.W = 0 and proj.b = bias, so every r_j = sigmoid(bias) - 1/2. */
static void lte_case_init(lte_case *c, tu_rng *g, int64_t B, int64_t Hq, int64_t Hk, int64_t N,
                          int64_t d, int64_t dv, int with_x, int64_t layers, int64_t width)
{
    memset(c, 0, sizeof *c);
    c->shape = (still_shape){B, Hq, Hk, N, d, dv, STILL_LAYOUT_BHND};
    still_config_default(&c->cfg);
    c->cfg.routing = STILL_ROUTING_LTE;
    c->cfg.window = 6;
    c->cfg.sinks = 2;
    c->cfg.budget = 3;
    c->q = tu_dalloc(B * Hq * N * d);
    c->k = tu_dalloc(B * Hk * N * d);
    c->v = tu_dalloc(B * Hk * N * dv);
    tu_fill_normal(g, c->q, B * Hq * N * d, 1.0);
    tu_fill_normal(g, c->k, B * Hk * N * d, 1.0);
    tu_fill_normal(g, c->v, B * Hk * N * dv, 1.0);
    c->c0 = with_x ? 3 : d + dv;
    if (with_x) {
        c->x = tu_dalloc(B * Hk * N * c->c0);
        tu_fill_normal(g, c->x, B * Hk * N * c->c0, 1.0);
    }
    c->net.layers = layers;
    c->net.channels[0] = c->c0;
    for (int64_t l = 0; l < layers; l++) {
        c->net.channels[l + 1] = width;
        int64_t nw = Hk * width * c->net.channels[l] * 3;
        double *W = c->store[2 * l] = tu_dalloc(nw), *b = c->store[2 * l + 1] = tu_dalloc(Hk * width);
        tu_fill_normal(g, W, nw, 0.6);
        tu_fill_normal(g, b, Hk * width, 0.3);
        c->net.conv_W[l] = W;
        c->net.conv_b[l] = b;
    }
    double *pw = c->store[2 * layers] = tu_dalloc(Hk * width), *pb = c->store[2 * layers + 1] = tu_dalloc(Hk);
    tu_fill_normal(g, pw, Hk * width, 1.0);
    tu_fill_normal(g, pb, Hk, 0.2);
    c->net.proj_W = pw;
    c->net.proj_b = pb;
    still_params_default(&c->params);
    c->params.lte = &c->net;
}

/* Every r_j = sigmoid(bias) - 1/2. */
static void lte_case_constant_score(lte_case *c, double bias)
{
    double *pw = (double *)c->net.proj_W, *pb = (double *)c->net.proj_b;
    for (int64_t i = 0; i < c->shape.heads_kv * c->net.channels[c->net.layers]; i++)
        pw[i] = 0.0;
    for (int64_t i = 0; i < c->shape.heads_kv; i++)
        pb[i] = bias;
}

static void lte_case_free(lte_case *c)
{
    free(c->q); free(c->k); free(c->v); free(c->x);
    for (size_t i = 0; i < sizeof c->store / sizeof c->store[0]; i++)
        free(c->store[i]);
}

static int lte_run(const lte_case *c, double *o, double *score, uint8_t *retained)
{
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c->q; t.k = c->k; t.v = c->v; t.o = o;
    t.sigma = score;
    t.selected = retained;
    t.lte_input = c->x;
    return still_ref_forward(&c->cfg, &c->shape, &c->params, &t);
}

static int64_t nq_of(const lte_case *c) { return c->shape.batch * c->shape.heads_q * c->shape.seq_len; }
static int64_t nk_of(const lte_case *c) { return c->shape.batch * c->shape.heads_kv * c->shape.seq_len; }

/* ---- the network, a second implementation: zero-padded copies -------------- */
static double model_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* r [N] of kv head (b, hk), padding every layer's input with δ zero rows on
 * both sides and reading rows j, j+δ, j+2δ of the padded copy. */
static void model_scores(const lte_case *c, int64_t b, int64_t hk, const int64_t *dil, double *r)
{
    const int64_t N = c->shape.seq_len, d = c->shape.dim_qk, dv = c->shape.dim_v;
    const int64_t Hk = c->shape.heads_kv, bh = b * Hk + hk;
    int64_t ci = c->c0;
    double *cur = tu_dalloc(N * ci);
    for (int64_t j = 0; j < N; j++)
        for (int64_t i = 0; i < ci; i++)
            cur[j * ci + i] = c->x ? c->x[(bh * N + j) * ci + i]
                              : i < d ? c->k[(bh * N + j) * d + i]
                                      : c->v[(bh * N + j) * dv + i - d];
    for (int64_t l = 0; l < c->net.layers; l++) {
        const int64_t co = c->net.channels[l + 1], del = dil[l];
        double *pad = tu_dalloc((N + 2 * del) * ci), *next = tu_dalloc(N * co);
        memcpy(pad + del * ci, cur, (size_t)(N * ci) * sizeof(double));
        const double *W = c->net.conv_W[l] + hk * co * ci * 3, *bias = c->net.conv_b[l] + hk * co;
        for (int64_t o = 0; o < co; o++)
            for (int64_t j = 0; j < N; j++) {
                double a = bias[o];
                for (int64_t i = 0; i < ci; i++)
                    for (int tap = 0; tap < 3; tap++)
                        a += W[(o * ci + i) * 3 + tap] * pad[(j + tap * del) * ci + i];
                next[j * co + o] = a * model_sigmoid(a);
            }
        free(pad);
        free(cur);
        cur = next;
        ci = co;
    }
    for (int64_t j = 0; j < N; j++) {
        double z = c->net.proj_b[hk];
        for (int64_t i = 0; i < ci; i++)
            z += c->net.proj_W[hk * ci + i] * cur[j * ci + i];
        r[j] = model_sigmoid(z) - 0.5;
    }
    free(cur);
}

START_TEST(test_scores_match_padded_network)
{
    tu_rng g;
    tu_rng_seed(&g, 1501);
    for (int trial = 0; trial < 6; trial++) {
        lte_case c;
        lte_case_init(&c, &g, 2, 2, 2, 23, 3, 2, trial % 2, 1 + trial % 3, 1 + trial % 4);
        int64_t dil[STILL_LTE_LAYERS_MAX];
        for (int l = 0; l < STILL_LTE_LAYERS_MAX; l++)
            dil[l] = c.cfg.lte_dilation[l] = trial < 3 ? 0 : 1 + (l + trial) % 2;
        for (int l = 0; l < STILL_LTE_LAYERS_MAX; l++)
            dil[l] = dil[l] ? dil[l] : 2;
        c.cfg.window = 7;
        double *o = tu_dalloc(nq_of(&c) * c.shape.dim_v), *r = tu_dalloc(nk_of(&c));
        double *want = tu_dalloc(c.shape.seq_len);
        ck_assert_int_eq(lte_run(&c, o, r, NULL), STILL_OK);
        for (int64_t bh = 0; bh < c.shape.batch * c.shape.heads_kv; bh++) {
            model_scores(&c, bh / c.shape.heads_kv, bh % c.shape.heads_kv, dil, want);
            TU_ASSERT_CLOSE(r + bh * c.shape.seq_len, want, c.shape.seq_len, 1e-13, "r");
        }
        free(o); free(r); free(want);
        lte_case_free(&c);
    }
}
END_TEST

/* A hand-set 1-channel case: X = e_p (1 at position p), one layer of taps
 * (a, b, c) and bias 0, δ = 2, then p = 1, p0 = 0: Y[j] = silu(a) at
 * j = p + 2, silu(b) at p, silu(c) at p - 2, 0 elsewhere. */
START_TEST(test_scores_hand_set_one_channel)
{
    tu_rng g;
    tu_rng_seed(&g, 1502);
    lte_case c;
    lte_case_init(&c, &g, 1, 1, 1, 9, 2, 2, 1, 1, 1);
    const int64_t N = 9, pos = 4;
    free(c.x);
    c.x = tu_dalloc(N);
    c.c0 = c.net.channels[0] = 1;
    c.x[pos] = 1.0;
    double taps[3] = {0.7, -1.3, 2.1};
    memcpy((double *)c.net.conv_W[0], taps, sizeof taps);
    ((double *)c.net.conv_b[0])[0] = 0.0;
    ((double *)c.net.proj_W)[0] = 1.0;
    ((double *)c.net.proj_b)[0] = 0.0;
    double o[9 * 2], r[9];
    ck_assert_int_eq(lte_run(&c, o, r, NULL), STILL_OK);
    for (int64_t j = 0; j < N; j++) {
        double y = j == pos + 2 ? taps[0] : j == pos ? taps[1] : j == pos - 2 ? taps[2] : 0.0;
        double want = 1.0 / (1.0 + exp(-y * (1.0 / (1.0 + exp(-y))))) - 0.5;
        ck_assert_msg(fabs(r[j] - want) < 1e-15, "r[%lld] = %g, want %g", (long long)j, r[j], want);
    }
    lte_case_free(&c);
}
END_TEST

START_TEST(test_score_ignores_input_after_margin)
{
    tu_rng g;
    tu_rng_seed(&g, 1503);
    lte_case c;
    lte_case_init(&c, &g, 1, 1, 1, 30, 2, 2, 1, 3, 3);
    c.cfg.window = 8; /* m = 6 < w */
    const int64_t N = 30, m = 6;
    double *o = tu_dalloc(N * 2), r0[30], r1[30];
    ck_assert_int_eq(lte_run(&c, o, r0, NULL), STILL_OK);
    double keep[3];
    for (int64_t p = m + 1; p < N; p += 5) {
        for (int64_t i = 0; i < c.c0; i++) {
            keep[i] = c.x[p * c.c0 + i];
            c.x[p * c.c0 + i] += 3.0;
        }
        ck_assert_int_eq(lte_run(&c, o, r1, NULL), STILL_OK);
        for (int64_t j = 0; j + m + 1 <= p; j++)
            ck_assert_msg(r1[j] == r0[j], "r[%lld] changed by X at %lld", (long long)j, (long long)p);
        ck_assert_msg(r1[p - m] != r0[p - m], "X at %lld must reach r[%lld]", (long long)p,
                      (long long)(p - m));
        for (int64_t i = 0; i < c.c0; i++)
            c.x[p * c.c0 + i] = keep[i];
    }
    free(o);
    lte_case_free(&c);
}
END_TEST

/* What a decode state must keep (SPEC §15, causality): r_j reads X over
 * j - m .. j + m, so the score network run alone on those 2m + 1 inputs
 * (fewer at the start, where both read zeros) gives r_j bitwise; with one
 * input less on the left, the zeros it reads instead change some r_j. */
START_TEST(test_score_from_last_2m_plus_1_inputs_equals_prefill)
{
    tu_rng g;
    tu_rng_seed(&g, 1509);
    lte_case c;
    const int64_t N = 40, dil[3] = {2, 1, 3}, m = 6;
    lte_case_init(&c, &g, 1, 1, 1, N, 2, 2, 1, 3, 3);
    ck_assert_int_eq(still__ref_lte_margin(&c.net, dil), m);
    const int64_t width = still__ref_lte_width(&c.net);
    double *scratch = tu_dalloc(2 * N * width), full[40], part[40];
    still__ref_lte_score(&c.net, dil, 0, N, c.x, scratch, full);
    int short_differs = 0;
    for (int64_t j = 0; j < N; j++) {
        const int64_t lo = j > m ? j - m : 0, hi = j + m < N ? j + m : N - 1;
        still__ref_lte_score(&c.net, dil, 0, hi - lo + 1, c.x + lo * c.c0, scratch, part);
        ck_assert_msg(part[j - lo] == full[j], "r[%lld] from X[%lld..%lld]", (long long)j,
                      (long long)lo, (long long)hi);
        if (j > m) { /* one input less on the left */
            still__ref_lte_score(&c.net, dil, 0, hi - lo, c.x + (lo + 1) * c.c0, scratch, part);
            short_differs |= part[j - lo - 1] != full[j];
        }
    }
    ck_assert_msg(short_differs, "2m inputs must not be enough for every r_j");
    free(scratch);
    lte_case_free(&c);
}
END_TEST

/* ---- the cache, a list model of SPEC §15's rules ------------------------- */
/* exact [N][N] (row t: which j <= t are exact) and the retained list after
 * the last query, from scores r. */
static void model_cache(const double *r, int64_t N, int64_t s, int64_t w, int64_t b,
                        uint8_t *exact, uint8_t *retained_end)
{
    ck_assert(N >= 1);
    const size_t Nz = (size_t)N;
    int64_t *list = tu_alloc((Nz + 1) * sizeof(int64_t)), n = 0;
    for (int64_t t = 0; t < N; t++) {
        int64_t leaving = t - w - 1;
        if (leaving >= s) {
            if (r[leaving] > 0.0 && n < b) {
                list[n++] = leaving;
            } else if (r[leaving] > 0.0) {
                int64_t weakest = 0; /* list is in order of arrival: the older first */
                for (int64_t i = 1; i < n; i++)
                    if (r[list[i]] < r[list[weakest]])
                        weakest = i;
                if (n > 0 && r[list[weakest]] < r[leaving]) {
                    memmove(list + weakest, list + weakest + 1, (size_t)(n - weakest - 1) * sizeof *list);
                    list[n - 1] = leaving;
                }
            }
        }
        uint8_t *row = exact + t * N;
        memset(row, 0, Nz);
        for (int64_t j = 0; j <= t; j++)
            row[j] = j < s || j >= t - w;
        for (int64_t i = 0; i < n; i++)
            row[list[i]] = 1;
    }
    memset(retained_end, 0, Nz);
    for (int64_t i = 0; i < n; i++)
        retained_end[list[i]] = 1;
    free(list);
}

START_TEST(test_cache_matches_list_model_with_ties)
{
    tu_rng g;
    tu_rng_seed(&g, 1504);
    const int64_t N = 40;
    double r[40];
    uint8_t got[40], want_rows[40 * 40], want_end[40], got_end[40];
    int64_t evicted_at[40];
    for (int trial = 0; trial < 300; trial++) {
        still_config cfg;
        still_config_default(&cfg);
        cfg.routing = STILL_ROUTING_LTE;
        cfg.sinks = tu_int(&g, 0, 5);
        cfg.window = tu_int(&g, 2, 9);
        cfg.budget = tu_int(&g, 0, 6);
        still_shape sh = {1, 1, 1, N, 2, 2, STILL_LAYOUT_BHND};
        still__resolved rs;
        ck_assert_int_eq(still__resolve(&cfg, &sh, NULL, &rs), STILL_OK);
        for (int64_t j = 0; j < N; j++) /* few values: ties, and some <= 0 */
            r[j] = 0.1 * (double)tu_int(&g, -2, 4);
        model_cache(r, N, cfg.sinks, cfg.window, cfg.budget, want_rows, want_end);
        still__ref_lte_cache(&rs, r, N, evicted_at);
        for (int64_t t = 0; t < N; t++) {
            still__ref_lte_exact(evicted_at, t, got);
            for (int64_t j = 0; j <= t; j++)
                ck_assert_msg(got[j] == want_rows[t * N + j], "trial %d t %lld j %lld: %d vs %d",
                              trial, (long long)t, (long long)j, got[j], want_rows[t * N + j]);
        }
        still__ref_lte_retained(&rs, evicted_at, N, got_end);
        ck_assert_mem_eq(got_end, want_end, (size_t)N);
    }
}
END_TEST

/* ---- SPEC §15 identities ---------------------------------------------------- */
static void teacher_of(const lte_case *c, double *o)
{
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c->q; t.k = c->k; t.v = c->v; t.o = o;
    ck_assert_int_eq(still_ref_teacher(&c->cfg, &c->shape, &t), STILL_OK);
}

START_TEST(test_budget_covers_all_positive_scores_is_teacher)
{
    tu_rng g;
    tu_rng_seed(&g, 1505);
    for (int rest = 0; rest < 2; rest++) {
        lte_case c;
        lte_case_init(&c, &g, 2, 4, 2, 33, 3, 2, 0, 2, 2);
        lte_case_constant_score(&c, 1.5);
        c.cfg.budget = 33;
        c.cfg.sinks = rest ? 0 : 3;
        c.cfg.rest = rest;
        c.cfg.eps_den = 0.0;
        double *o = tu_dalloc(nq_of(&c) * 2), *ot = tu_dalloc(nq_of(&c) * 2);
        uint8_t *ret = tu_alloc((size_t)nk_of(&c));
        ck_assert_int_eq(lte_run(&c, o, NULL, ret), STILL_OK);
        teacher_of(&c, ot);
        TU_ASSERT_CLOSE(o, ot, nq_of(&c) * 2, 1e-13, "o vs teacher");
        /* every position before the window of the last query is retained */
        for (int64_t j = 0; j < 33; j++)
            ck_assert_int_eq(ret[j], j >= c.cfg.sinks && j <= 32 - c.cfg.window - 1);
        free(o); free(ot); free(ret);
        lte_case_free(&c);
    }
}
END_TEST

START_TEST(test_nonpositive_scores_no_sinks_is_window_of_w_plus_1)
{
    tu_rng g;
    tu_rng_seed(&g, 1506);
    lte_case c;
    lte_case_init(&c, &g, 1, 2, 1, 29, 3, 2, 1, 1, 2);
    lte_case_constant_score(&c, -0.5);
    c.cfg.sinks = 0;
    c.cfg.budget = 5;
    c.cfg.rest = STILL_REST_DROP;
    c.cfg.eps_den = 0.0;
    const int64_t N = 29, d = 3, dv = 2, w = c.cfg.window;
    double *o = tu_dalloc(nq_of(&c) * dv), *ow = tu_dalloc(nq_of(&c) * dv);
    ck_assert_int_eq(lte_run(&c, o, NULL, NULL), STILL_OK);
    /* routing window of w + 1 positions, rest = drop */
    still_config win = c.cfg;
    win.routing = STILL_ROUTING_WINDOW;
    win.window = w + 1;
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c.q; t.k = c.k; t.v = c.v; t.o = ow;
    ck_assert_int_eq(still_ref_forward(&win, &c.shape, NULL, &t), STILL_OK);
    TU_ASSERT_CLOSE(o, ow, nq_of(&c) * dv, 1e-14, "lte vs window w+1");
    /* and a direct softmax over t-w..t */
    for (int64_t h = 0; h < 2; h++)
        for (int64_t n = 0; n < N; n++) {
            double num[2] = {0, 0}, den = 0.0;
            for (int64_t j = n - w > 0 ? n - w : 0; j <= n; j++) {
                double s = 0.0;
                for (int64_t i = 0; i < d; i++)
                    s += c.q[(h * N + n) * d + i] * c.k[j * d + i];
                double e = exp(s / sqrt((double)d));
                den += e;
                for (int64_t x = 0; x < dv; x++)
                    num[x] += e * c.v[j * dv + x];
            }
            for (int64_t x = 0; x < dv; x++)
                ck_assert(fabs(o[(h * N + n) * dv + x] - num[x] / den) < 1e-13);
        }
    free(o); free(ow);
    lte_case_free(&c);
}
END_TEST

/* rest = linear: the evicted keys are the linear set of SPEC §6; with an
 * evicting cache its output differs from rest = drop, and the keys kept
 * give the same exact part (checked through I4-like shift invariance). */
START_TEST(test_rest_linear_adds_evicted_keys_to_linear_state)
{
    tu_rng g;
    tu_rng_seed(&g, 1507);
    lte_case c;
    lte_case_init(&c, &g, 1, 1, 1, 25, 2, 1, 0, 1, 2);
    c.cfg.budget = 1;
    c.cfg.sinks = 1;
    c.cfg.window = 3;
    c.cfg.eps_den = 0.0;
    const int64_t N = 25, d = 2;
    double o_lin[25], o_drop[25], r[25];
    ck_assert_int_eq(lte_run(&c, o_lin, r, NULL), STILL_OK);
    c.cfg.rest = STILL_REST_DROP;
    ck_assert_int_eq(lte_run(&c, o_drop, NULL, NULL), STILL_OK);
    /* direct: exact set from the list model, linear = the rest with
     * hedgehog identity maps computed by the independent model */
    uint8_t *rows = tu_alloc((size_t)(N * N)), end[25];
    model_cache(r, N, 1, 3, 1, rows, end);
    for (int64_t n = 0; n < N; n++) {
        double phq[4], phk[4], num = 0, den = 0, mx = -INFINITY;
        tu_model_feature_map(STILL_ACT_HEDGEHOG, 1, d, d, NULL, NULL, NULL, c.q + n * d, phq);
        for (int64_t j = 0; j <= n; j++)
            if (rows[n * N + j])
                mx = fmax(mx, (c.q[n * d] * c.k[j * d] + c.q[n * d + 1] * c.k[j * d + 1]) / sqrt(2.0));
        double snum = 0, sden = 0;
        for (int64_t j = 0; j <= n; j++) {
            double s = (c.q[n * d] * c.k[j * d] + c.q[n * d + 1] * c.k[j * d + 1]) / sqrt(2.0);
            if (rows[n * N + j]) {
                sden += exp(s - mx);
                snum += exp(s - mx) * c.v[j];
            } else {
                tu_model_feature_map(STILL_ACT_HEDGEHOG, 1, d, d, NULL, NULL, NULL, c.k + j * d, phk);
                double kap = 0;
                for (int i = 0; i < 4; i++)
                    kap += phq[i] * phk[i];
                num += kap * c.v[j];
                den += kap;
            }
        }
        ck_assert(fabs(o_lin[n] - (snum + num) / (sden + den)) < 1e-13);
        ck_assert(fabs(o_drop[n] - snum / sden) < 1e-13);
    }
    free(rows);
    lte_case_free(&c);
}
END_TEST

/* decode: the output of query t computed from positions 0..t only (a
 * prefill of the prefix, as a token-by-token decode sees the sequence)
 * equals row t of the whole prefill, for every t, both rests. */
START_TEST(test_prefix_recomputation_equals_prefill)
{
    tu_rng g;
    tu_rng_seed(&g, 1508);
    for (int rest = 0; rest < 2; rest++) {
        lte_case c;
        lte_case_init(&c, &g, 1, 2, 1, 36, 2, 2, rest, 3, 2);
        c.cfg.window = 7; /* m = 6 */
        c.cfg.rest = rest;
        const int64_t N = 36, d = 2, dv = 2, c0 = c.c0;
        double *o = tu_dalloc(2 * N * dv), *op = tu_dalloc(2 * N * dv), *r = tu_dalloc(N);
        ck_assert_int_eq(lte_run(&c, o, r, NULL), STILL_OK);
        int pos = 0, neg = 0;
        for (int64_t j = 0; j < N; j++)
            pos += r[j] > 0, neg += r[j] <= 0;
        ck_assert_msg(pos > 3 && neg > 0, "scores of both signs (%d, %d)", pos, neg);
        for (int64_t n = 1; n <= N; n++) {
            lte_case p = c;
            p.shape.seq_len = n;
            p.q = tu_dalloc(2 * n * d);
            for (int64_t h = 0; h < 2; h++)
                memcpy(p.q + h * n * d, c.q + h * N * d, (size_t)(n * d) * sizeof(double));
            ck_assert_int_eq(lte_run(&p, op, NULL, NULL), STILL_OK);
            for (int64_t h = 0; h < 2; h++)
                TU_ASSERT_CLOSE(op + (h * n + n - 1) * dv, o + (h * N + n - 1) * dv, dv, 1e-14,
                                "prefix vs prefill");
            free(p.q);
        }
        (void)c0;
        free(o); free(op); free(r);
        lte_case_free(&c);
    }
}
END_TEST

/* GQA: each query head equals a one-head call on its kv head's inputs
 * and network. */
START_TEST(test_gqa_query_head_equals_single_head_call)
{
    tu_rng g;
    tu_rng_seed(&g, 1509);
    lte_case c;
    lte_case_init(&c, &g, 1, 4, 2, 21, 2, 3, 0, 1, 2);
    c.cfg.window = 4;
    const int64_t N = 21, d = 2, dv = 3;
    double *o = tu_dalloc(4 * N * dv), *o1 = tu_dalloc(N * dv), r[42], r1[21];
    ck_assert_int_eq(lte_run(&c, o, r, NULL), STILL_OK);
    for (int64_t h = 0; h < 4; h++) {
        const int64_t hk = h / 2, cw = c.net.channels[1];
        lte_case one = c;
        one.shape.heads_q = one.shape.heads_kv = 1;
        one.q = c.q + h * N * d;
        one.k = c.k + hk * N * d;
        one.v = c.v + hk * N * dv;
        one.net.conv_W[0] = c.net.conv_W[0] + hk * cw * c.c0 * 3;
        one.net.conv_b[0] = c.net.conv_b[0] + hk * cw;
        one.net.proj_W = c.net.proj_W + hk * cw;
        one.net.proj_b = c.net.proj_b + hk;
        one.params.lte = &one.net;
        ck_assert_int_eq(lte_run(&one, o1, r1, NULL), STILL_OK);
        TU_ASSERT_CLOSE(o + h * N * dv, o1, N * dv, 0.0, "GQA o");
        TU_ASSERT_CLOSE(r + hk * N, r1, N, 0.0, "GQA r");
    }
    free(o); free(o1);
    lte_case_free(&c);
}
END_TEST

START_TEST(test_invalid_lte_refused)
{
    tu_rng g;
    tu_rng_seed(&g, 1510);
    lte_case c;
    lte_case_init(&c, &g, 1, 1, 1, 12, 2, 2, 0, 2, 2);
    double o[24];
    c.params.lte = NULL;
    ck_assert_int_eq(lte_run(&c, o, NULL, NULL), STILL_E_PARAMS); /* no defaults */
    c.params.lte = &c.net;
    c.cfg.window = 4; /* m = 4: not < w */
    ck_assert_int_eq(lte_run(&c, o, NULL, NULL), STILL_E_CONFIG);
    c.cfg.window = 5;
    ck_assert_int_eq(lte_run(&c, o, NULL, NULL), STILL_OK);
    c.cfg.lte_dilation[1] = 3; /* m = 5 */
    ck_assert_int_eq(lte_run(&c, o, NULL, NULL), STILL_E_CONFIG);
    c.cfg.lte_dilation[1] = -1;
    ck_assert_int_eq(lte_run(&c, o, NULL, NULL), STILL_E_CONFIG);
    c.cfg.lte_dilation[1] = 0;
    c.net.channels[0] = 3; /* [k ‖ v] has d + dv = 4 */
    ck_assert_int_eq(lte_run(&c, o, NULL, NULL), STILL_E_PARAMS);
    c.net.channels[0] = 4;
    c.net.proj_b = NULL;
    ck_assert_int_eq(lte_run(&c, o, NULL, NULL), STILL_E_PARAMS);
    c.net.proj_b = c.store[2 * 2 + 1];
    c.store[0][3] = NAN;
    ck_assert_int_eq(lte_run(&c, o, NULL, NULL), STILL_E_NONFINITE);
    c.store[0][3] = 0.0;
    c.cfg.sinks = -1;
    ck_assert_int_eq(lte_run(&c, o, NULL, NULL), STILL_E_CONFIG);
    c.cfg.sinks = 2;
    c.cfg.rest = 2;
    ck_assert_int_eq(lte_run(&c, o, NULL, NULL), STILL_E_CONFIG);
    c.cfg.rest = STILL_REST_DROP;
    /* the fast path, the states and the gradients do not have it yet */
    float qf[24] = {0}, of[24];
    still_tensors tf;
    memset(&tf, 0, sizeof tf);
    tf.dtype = STILL_F32;
    tf.q = tf.k = tf.v = qf;
    tf.o = of;
    ck_assert_int_eq(still_forward(&c.cfg, &c.shape, &c.params, &tf), STILL_E_UNSUPPORTED);
    still_state *st = NULL;
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, &c.params, STILL_PATH_REF, &st),
                     STILL_E_UNSUPPORTED);
    ck_assert_ptr_null(st);
    still_grads gr;
    memset(&gr, 0, sizeof gr);
    ck_assert_int_eq(still_ref_vjp(&c.cfg, &c.shape, &c.params, &tf, of, &gr), STILL_E_UNSUPPORTED);
    /* the teacher ignores the routing */
    ck_assert_int_eq(still_teacher(&c.cfg, &c.shape, &tf), STILL_OK);
    /* rest = drop with another routing runs on both paths and in decode */
    still_config win;
    still_config_default(&win);
    win.routing = STILL_ROUTING_WINDOW;
    win.rest = STILL_REST_DROP;
    ck_assert_int_eq(still_forward(&win, &c.shape, NULL, &tf), STILL_OK);
    ck_assert_int_eq(still_state_create(&win, &c.shape, NULL, STILL_PATH_REF, &st), STILL_OK);
    still_state_destroy(st);
    uint8_t sel[12] = {0};
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c.q; t.k = c.k; t.v = c.v; t.o = o;
    t.selection_in = sel;
    ck_assert_int_eq(still_ref_forward(&c.cfg, &c.shape, &c.params, &t), STILL_E_UNSUPPORTED);
    lte_case_free(&c);
}
END_TEST

static Suite *lte_suite(void)
{
    Suite *s = suite_create("ref_lte");
    TCase *tc = tcase_create("lte");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_scores_match_padded_network);
    tcase_add_test(tc, test_scores_hand_set_one_channel);
    tcase_add_test(tc, test_score_ignores_input_after_margin);
    tcase_add_test(tc, test_score_from_last_2m_plus_1_inputs_equals_prefill);
    tcase_add_test(tc, test_cache_matches_list_model_with_ties);
    tcase_add_test(tc, test_budget_covers_all_positive_scores_is_teacher);
    tcase_add_test(tc, test_nonpositive_scores_no_sinks_is_window_of_w_plus_1);
    tcase_add_test(tc, test_rest_linear_adds_evicted_keys_to_linear_state);
    tcase_add_test(tc, test_prefix_recomputation_equals_prefill);
    tcase_add_test(tc, test_gqa_query_head_equals_single_head_call);
    tcase_add_test(tc, test_invalid_lte_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(lte_suite());
}
