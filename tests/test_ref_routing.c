/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_ref_routing.c -- delayed selection, the cap, the routing policies and
 * the hybrid output (SPEC §5-6) of the ref path, and forced selections. */
#include "../ref/ref.h"
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const int64_t CHUNKS[4] = {1, 3, 8, 16};

static still__resolved resolve_cfg(const still_config *cfg, int64_t N)
{
    still_shape s = {1, 1, 1, N, 2, 1, STILL_LAYOUT_BHND};
    still__resolved r;
    int rc = still__resolve(cfg, &s, NULL, &r);
    ck_assert_msg(rc == STILL_OK, "still__resolve: %s", still_strerror(rc));
    return r;
}

/* sigma with many ties (few distinct values), +inf at token 0 */
static void tied_sigma(tu_rng *g, double *sigma, int64_t N)
{
    for (int64_t j = 0; j < N; j++)
        sigma[j] = (double)tu_int(g, 0, 4) * 0.5;
    sigma[0] = INFINITY;
}

/* last split chunk for a query in chunk c (SPEC §6) */
static int64_t last_split(int64_t c, int64_t L)
{
    return L == 0 ? c - 1 : c - L;
}

/* ---- still__ref_route ------------------------------------------------------- */
START_TEST(test_route_matches_model_every_combination)
{
    tu_rng g;
    tu_rng_seed(&g, 301);
    const int64_t caps[] = {0, 1, 2, 5};
    const int64_t N = 41;
    double sigma[41];
    uint8_t sel[41], got[41], want[41];
    for (int routing = 0; routing < 4; routing++)
        for (int64_t L = 0; L <= 3; L++)
            for (int ci = 0; ci < 4; ci++)
                for (int capi = 0; capi < 4; capi++) {
                    still_config cfg;
                    still_config_default(&cfg);
                    cfg.routing = routing;
                    cfg.chunk = CHUNKS[ci];
                    cfg.topk = tu_int(&g, 0, cfg.chunk);
                    cfg.local = L;
                    cfg.max_sel = caps[capi];
                    cfg.window = tu_int(&g, 0, 1) ? 0 : tu_int(&g, 2, 12);
                    still__resolved r = resolve_cfg(&cfg, N);
                    tied_sigma(&g, sigma, N);
                    tu_model_select(sigma, N, cfg.chunk, tu_eff_k(&cfg), sel);
                    for (int64_t t = 0; t < N; t++) {
                        memset(got, 7, sizeof got);
                        still__ref_route(&r, sigma, sel, t, got);
                        tu_model_route(routing, cfg.chunk, L, tu_eff_w(&cfg), cfg.max_sel, sigma,
                                       sel, t, want);
                        for (int64_t j = 0; j <= t; j++)
                            ck_assert_msg(got[j] == want[j],
                                          "routing %d L %lld C %lld k %lld cap %lld w %lld t %lld: "
                                          "exact[%lld] = %d, want %d",
                                          routing, (long long)L, (long long)cfg.chunk,
                                          (long long)cfg.topk, (long long)cfg.max_sel,
                                          (long long)r.w, (long long)t, (long long)j, got[j],
                                          want[j]);
                    }
                }
}
END_TEST

/* SPEC §6: for L >= 1 the chunks c-L+1..c are exact; for L = 0 the current
 * chunk is linear; in split chunks only selected tokens can be exact. */
START_TEST(test_route_recent_chunks_and_split_chunks)
{
    tu_rng g;
    tu_rng_seed(&g, 302);
    const int64_t N = 50;
    double sigma[50];
    uint8_t sel[50], ex[50];
    for (int rep = 0; rep < 60; rep++) {
        still_config cfg;
        still_config_default(&cfg);
        cfg.chunk = CHUNKS[rep % 4];
        cfg.topk = tu_int(&g, 0, cfg.chunk);
        cfg.local = rep % 4;
        cfg.routing = rep % 3 == 0 ? STILL_ROUTING_SALIENCY : rep % 3 == 1 ? STILL_ROUTING_ALL
                                                                          : STILL_ROUTING_NONE;
        still__resolved r = resolve_cfg(&cfg, N);
        tied_sigma(&g, sigma, N);
        tu_model_select(sigma, N, cfg.chunk, tu_eff_k(&cfg), sel);
        for (int64_t t = 0; t < N; t++) {
            still__ref_route(&r, sigma, sel, t, ex);
            int64_t C = cfg.chunk, c = t / C, L = cfg.local;
            for (int64_t j = 0; j <= t; j++) {
                ck_assert(ex[j] <= 1);
                if (j / C > last_split(c, L))
                    ck_assert_msg(ex[j] == (L > 0), "L %lld t %lld: recent key %lld has exact=%d",
                                  (long long)L, (long long)t, (long long)j, ex[j]);
                else if (!sel[j])
                    ck_assert_msg(ex[j] == 0, "unselected key %lld of a split chunk is exact",
                                  (long long)j);
                else
                    ck_assert_msg(ex[j] == 1, "selected key %lld is not exact (no cap)",
                                  (long long)j);
            }
            /* routing all with L >= 1: everything exact; none with L = 0:
             * everything linear */
            if (cfg.routing == STILL_ROUTING_ALL && L >= 1)
                for (int64_t j = 0; j <= t; j++)
                    ck_assert(ex[j] == 1);
            if (cfg.routing == STILL_ROUTING_NONE && L == 0)
                for (int64_t j = 0; j <= t; j++)
                    ck_assert(ex[j] == 0);
        }
    }
}
END_TEST

/* SPEC §5 cap: at most max_sel cached tokens; exactly min(max_sel, #selected)
 * stay; the ones that leave are the lowest sigma, ties the older. */
START_TEST(test_route_cap_bound_and_eviction_order)
{
    tu_rng g;
    tu_rng_seed(&g, 303);
    const int64_t N = 60;
    double sigma[60];
    uint8_t sel[60], ex[60];
    for (int rep = 0; rep < 80; rep++) {
        still_config cfg;
        still_config_default(&cfg);
        cfg.chunk = CHUNKS[rep % 4];
        cfg.topk = tu_int(&g, 1, cfg.chunk);
        cfg.local = rep % 4;
        cfg.max_sel = tu_int(&g, 1, 7);
        still__resolved r = resolve_cfg(&cfg, N);
        tied_sigma(&g, sigma, N);
        tu_model_select(sigma, N, cfg.chunk, cfg.topk, sel);
        for (int64_t t = 0; t < N; t++) {
            still__ref_route(&r, sigma, sel, t, ex);
            int64_t ls = last_split(t / cfg.chunk, cfg.local), nsel = 0, ncache = 0;
            for (int64_t j = 0; j <= t && j / cfg.chunk <= ls; j++) {
                nsel += sel[j];
                ncache += ex[j];
                ck_assert(!ex[j] || sel[j]);
            }
            int64_t want = nsel < cfg.max_sel ? nsel : cfg.max_sel;
            ck_assert_msg(ncache == want, "t %lld: %lld cached of %lld selected, cap %lld",
                          (long long)t, (long long)ncache, (long long)nsel, (long long)cfg.max_sel);
            for (int64_t e = 0; e <= t && e / cfg.chunk <= ls; e++) {
                if (!sel[e] || ex[e])
                    continue; /* e was evicted: every kept token outranks it */
                for (int64_t kp = 0; kp <= t && kp / cfg.chunk <= ls; kp++)
                    if (ex[kp])
                        ck_assert_msg(sigma[kp] > sigma[e] || (sigma[kp] == sigma[e] && kp > e),
                                      "evicted %lld (sigma %g) outranks kept %lld (sigma %g)",
                                      (long long)e, sigma[e], (long long)kp, sigma[kp]);
            }
        }
    }
    /* all sigma equal: the newest max_sel selected tokens stay */
    still_config cfg;
    still_config_default(&cfg);
    cfg.chunk = 2;
    cfg.topk = 1;
    cfg.local = 1;
    cfg.max_sel = 2;
    still__resolved r = resolve_cfg(&cfg, 12);
    for (int j = 0; j < 12; j++) {
        sigma[j] = 1.0;
        sel[j] = j % 2 == 0;
    }
    still__ref_route(&r, sigma, sel, 11, ex); /* split chunks 0..4: selected 0,2,4,6,8 */
    const uint8_t want[12] = {0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 1};
    for (int j = 0; j < 12; j++)
        ck_assert_msg(ex[j] == want[j], "equal sigma: exact[%d] = %d", j, ex[j]);
}
END_TEST

START_TEST(test_route_window_is_last_w_positions)
{
    double sigma[30] = {0};
    uint8_t sel[30] = {0}, ex[30];
    for (int64_t w = 2; w <= 33; w += 3)
        for (int64_t L = 0; L <= 2; L++) {
            still_config cfg;
            still_config_default(&cfg);
            cfg.routing = STILL_ROUTING_WINDOW;
            cfg.chunk = 4;
            cfg.window = w;
            cfg.local = L;
            cfg.max_sel = 1;
            still__resolved r = resolve_cfg(&cfg, 30);
            for (int64_t t = 0; t < 30; t++) {
                still__ref_route(&r, sigma, sel, t, ex);
                for (int64_t j = 0; j <= t; j++)
                    ck_assert_msg(ex[j] == (j > t - w), "w %lld t %lld j %lld: %d", (long long)w,
                                  (long long)t, (long long)j, ex[j]);
            }
        }
}
END_TEST

/* ---- the hybrid output (SPEC §6) ------------------------------------------- */

/* o of the case computed here from the formula of SPEC §6, with the sets
 * given by still__ref_route on the sigma and selection the forward reported,
 * the features by still_ref_feature_map. */
static void formula_output(const tu_case *c, const double *sigma, const uint8_t *sel, double *o)
{
    const still_shape *s = &c->shape;
    int64_t N = s->seq_len, d = s->dim_qk, dv = s->dim_v, G = s->heads_q / s->heads_kv;
    const still_params *prm = c->use_params ? &c->params : NULL;
    still__resolved r;
    ck_assert_int_eq(still__resolve(&c->cfg, s, prm, &r), STILL_OK);
    int64_t m = r.m;
    double *pq = tu_dalloc(m), *pk = tu_dalloc(N * m);
    uint8_t *ex = tu_alloc((size_t)N);
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t h = 0; h < s->heads_q; h++) {
            int64_t kv = h / G;
            const double *K = c->k + tu_bhnd(s->heads_kv, N, d, b, kv, 0, 0);
            const double *V = c->v + tu_bhnd(s->heads_kv, N, dv, b, kv, 0, 0);
            ck_assert_int_eq(still_ref_feature_map(&c->cfg, prm, STILL_MAP_K, h, d, N, K, pk), STILL_OK);
            double omega = prm && prm->window_w ? tu_sigmoid(prm->window_w[h]) : 1.0;
            for (int64_t t = 0; t < N; t++) {
                const double *q_t = c->q + tu_bhnd(s->heads_q, N, d, b, h, t, 0);
                ck_assert_int_eq(still_ref_feature_map(&c->cfg, prm, STILL_MAP_Q, h, d, 1, q_t, pq),
                                 STILL_OK);
                still__ref_route(&r, sigma + (b * s->heads_q + h) * N, sel + (b * s->heads_q + h) * N,
                                 t, ex);
                double mt = -INFINITY;
                for (int64_t j = 0; j <= t; j++) {
                    double sj = 0.0;
                    for (int64_t i = 0; i < d; i++)
                        sj += q_t[i] * K[j * d + i];
                    if (ex[j])
                        mt = fmax(mt, r.scale * sj);
                }
                if (mt == -INFINITY)
                    mt = 0.0;
                double den = r.eps_den;
                double *o_t = o + tu_bhnd(s->heads_q, N, dv, b, h, t, 0);
                double *lin = tu_dalloc(dv);
                for (int64_t e = 0; e < dv; e++)
                    o_t[e] = 0.0;
                for (int64_t j = 0; j <= t; j++) {
                    if (ex[j]) {
                        double sj = 0.0;
                        for (int64_t i = 0; i < d; i++)
                            sj += q_t[i] * K[j * d + i];
                        double wgt = omega * exp(r.scale * sj - mt);
                        den += wgt;
                        for (int64_t e = 0; e < dv; e++)
                            o_t[e] += wgt * V[j * dv + e];
                    } else {
                        double kap = 0.0;
                        for (int64_t i = 0; i < m; i++)
                            kap += pq[i] * pk[j * m + i];
                        den += kap;
                        for (int64_t e = 0; e < dv; e++)
                            lin[e] += kap * V[j * dv + e];
                    }
                }
                const double *gt = c->gate ? c->gate + tu_bhnd(s->heads_q, N, dv, b, h, t, 0) : NULL;
                for (int64_t e = 0; e < dv; e++)
                    o_t[e] = (o_t[e] + (gt ? gt[e] : 1.0) * lin[e]) / den;
                free(lin);
            }
        }
    free(pq);
    free(pk);
    free(ex);
}

static void check_against_formula(tu_case *c, double tol)
{
    const still_shape *s = &c->shape;
    int64_t ns = s->batch * s->heads_q * s->seq_len, no = ns * s->dim_v;
    double *o = tu_dalloc(no), *want = tu_dalloc(no), *sigma = tu_dalloc(ns);
    uint8_t *sel = tu_alloc((size_t)ns);
    int rc = tu_run_ref(c, o, sigma, sel);
    ck_assert_msg(rc == STILL_OK, "still_ref_forward: %s", still_strerror(rc));
    formula_output(c, sigma, sel, want);
    TU_ASSERT_CLOSE(o, want, no, tol * (1.0 + tu_max_abs(want, no)), "o vs SPEC §6 formula");
    free(o);
    free(want);
    free(sigma);
    free(sel);
}

START_TEST(test_hybrid_output_matches_formula_with_route_sets)
{
    tu_rng g;
    tu_rng_seed(&g, 304);
    for (int rep = 0; rep < 12; rep++) {
        still_shape s = {1 + rep % 2, 2, 1 + rep % 2 * 1, tu_int(&g, 5, 40), 3, 2, (int)(rep % 2)};
        if (s.heads_q % s.heads_kv)
            s.heads_kv = 1;
        tu_case c;
        tu_case_init(&c, &g, &s, 1.0, 1); /* with gate values */
        tu_case_random_params(&c, &g, 4, rep % 2, rep % 3 == 0, rep % 4 == 0, 0);
        c.cfg.chunk = CHUNKS[rep % 4];
        c.cfg.topk = tu_int(&g, 0, c.cfg.chunk);
        c.cfg.local = rep % 4;
        c.cfg.max_sel = rep % 3;
        c.cfg.act = rep % 4;
        c.cfg.eps_den = rep % 2 ? 1e-6 : 0.1;
        c.cfg.select_per_kv = rep % 5 == 0;
        check_against_formula(&c, 1e-11);
        tu_case_free(&c);
    }
}
END_TEST

/* LoLCATs: window routing with omega = sigmoid(window_w[h]) per head. */
START_TEST(test_window_routing_with_omega_matches_formula)
{
    tu_rng g;
    tu_rng_seed(&g, 305);
    for (int rep = 0; rep < 10; rep++) {
        still_shape s = {1, 3, 1, tu_int(&g, 3, 45), 4, 3, (int)(rep % 2)};
        tu_case c;
        tu_case_init(&c, &g, &s, 1.0, rep % 2);
        tu_case_random_params(&c, &g, 3, 1, 0, rep % 3 == 0, 1);
        c.cfg.routing = STILL_ROUTING_WINDOW;
        c.cfg.chunk = CHUNKS[rep % 4];
        c.cfg.window = tu_int(&g, 2, s.seq_len + 2);
        c.cfg.act = rep % 4;
        check_against_formula(&c, 1e-11);
        /* and against the model, whose window set is built independently */
        int64_t no = 3 * s.seq_len * 3;
        double *o = tu_dalloc(no), *want = tu_dalloc(no);
        ck_assert_int_eq(tu_run_ref(&c, o, NULL, NULL), STILL_OK);
        tu_model_forward(&c, want, NULL, NULL);
        TU_ASSERT_CLOSE(o, want, no, 1e-11 * (1 + tu_max_abs(want, no)), "window routing vs model");
        /* omega matters: another window_w gives another output */
        double *w = (double *)c.params.window_w;
        for (int h = 0; h < 3; h++)
            w[h] += 1.5;
        double *o2 = tu_dalloc(no);
        ck_assert_int_eq(tu_run_ref(&c, o2, NULL, NULL), STILL_OK);
        if (c.cfg.window < s.seq_len)
            ck_assert_msg(tu_max_abs_diff(o, o2, no) > 1e-9, "omega ignored");
        free(o);
        free(o2);
        free(want);
        tu_case_free(&c);
    }
}
END_TEST

/* o_t = sum_j a_tj v_j: with v_j = e_j (dv = N) the output row is the weight
 * row.  Every key j <= t has weight > 0 (it is in one of the two sets: no
 * token lost, even under the cap), keys j > t none, the weights sum to 1
 * with eps_den = 0, and they are the model's. */
START_TEST(test_weights_every_key_counted_once)
{
    tu_rng g;
    tu_rng_seed(&g, 306);
    for (int rep = 0; rep < 16; rep++) {
        int64_t N = tu_int(&g, 1, 36);
        still_shape s = {1, 2, 1, N, 3, N, STILL_LAYOUT_BHND};
        tu_case c;
        tu_case_init(&c, &g, &s, 1.0, 0);
        memset(c.v, 0, (size_t)(N * N) * sizeof(double));
        for (int64_t j = 0; j < N; j++)
            c.v[j * N + j] = 1.0;
        if (rep % 2)
            tu_case_random_params(&c, &g, 3, 1, 1, rep % 4 == 1, 0);
        c.cfg.chunk = CHUNKS[rep % 4];
        c.cfg.topk = tu_int(&g, 0, c.cfg.chunk);
        c.cfg.local = tu_int(&g, 0, 3);
        c.cfg.max_sel = tu_int(&g, 0, 3);
        c.cfg.routing = rep % 7 == 3 ? STILL_ROUTING_WINDOW : STILL_ROUTING_SALIENCY;
        c.cfg.act = rep % 4;
        c.cfg.eps_den = 0.0;
        double *o = tu_dalloc(2 * N * N), *a = tu_dalloc(N * N);
        ck_assert_int_eq(tu_run_ref(&c, o, NULL, NULL), STILL_OK);
        for (int64_t h = 0; h < 2; h++) {
            tu_model_weights(&c, 0, h, a);
            for (int64_t t = 0; t < N; t++) {
                const double *row = o + (h * N + t) * N;
                double sum = 0.0;
                for (int64_t j = 0; j < N; j++) {
                    if (j <= t)
                        ck_assert_msg(row[j] > 0.0, "rep %d h %lld t %lld: key %lld has weight %g",
                                      rep, (long long)h, (long long)t, (long long)j, row[j]);
                    else
                        ck_assert_msg(row[j] == 0.0, "t %lld sees future key %lld", (long long)t,
                                      (long long)j);
                    sum += row[j];
                }
                ck_assert_msg(fabs(sum - 1.0) < 1e-12, "t %lld: weights sum to %.17g", (long long)t,
                              sum);
                TU_ASSERT_CLOSE(row, a + t * N, N, 1e-12, "weights vs model");
            }
        }
        free(o);
        free(a);
        tu_case_free(&c);
    }
}
END_TEST

/* A random case of the given routing; cap_mode 1 = a cap in force. */
static void random_case(tu_rng *g, tu_case *c, int routing, int cap_mode)
{
    int64_t Hk = tu_int(g, 1, 2), G = tu_int(g, 1, 3);
    still_shape s = {tu_int(g, 1, 2), Hk * G, Hk, tu_int(g, 1, 48), tu_int(g, 1, 6),
                     tu_int(g, 1, 4), (int)tu_int(g, 0, 1)};
    tu_case_init(c, g, &s, tu_uniform(g, 0.5, 2.0), (int)tu_int(g, 0, 1));
    c->cfg.chunk = CHUNKS[tu_int(g, 0, 3)];
    c->cfg.topk = tu_int(g, 0, c->cfg.chunk);
    c->cfg.local = tu_int(g, 0, 3);
    c->cfg.max_sel = cap_mode ? tu_int(g, 1, 6) : 0;
    c->cfg.routing = routing;
    c->cfg.window = tu_int(g, 0, 1) ? 0 : tu_int(g, 2, s.seq_len + 3);
    c->cfg.act = (int)tu_int(g, 0, 3);
    c->cfg.npmap = (int)tu_int(g, 0, 1);
    c->cfg.select_per_kv = (int)tu_int(g, 0, 1);
    const double eps[3] = {0.0, 1e-6, 0.05};
    c->cfg.eps_den = eps[tu_int(g, 0, 2)];
    c->cfg.scale = tu_int(g, 0, 2) == 0 ? tu_uniform(g, 0.3, 1.5) : 0.0;
    if (tu_int(g, 0, 2))
        tu_case_random_params(c, g, tu_int(g, 1, 6), (int)tu_int(g, 0, 1), (int)tu_int(g, 0, 1),
                              (int)tu_int(g, 0, 1),
                              routing == STILL_ROUTING_WINDOW && tu_int(g, 0, 1));
    c->dtype = tu_int(g, 0, 3) == 0 ? STILL_F32 : STILL_F64;
    tu_case_round(c);
}

/* forward vs the model on n random cases: o, and sigma and the selection
 * where the routing defines them */
static void sweep_against_model(uint64_t seed, int routing, int cap_mode, int n)
{
    tu_rng g;
    tu_rng_seed(&g, seed);
    for (int rep = 0; rep < n; rep++) {
        tu_case c;
        random_case(&g, &c, routing, cap_mode);
        const still_shape *s = &c.shape;
        int64_t ns = s->batch * s->heads_q * s->seq_len, no = ns * s->dim_v;
        double *o = tu_dalloc(no), *want = tu_dalloc(no), *sg = tu_dalloc(ns), *sw = tu_dalloc(ns);
        uint8_t *eg = tu_alloc((size_t)ns), *ew = tu_alloc((size_t)ns);
        int rc = tu_run_ref(&c, o, sg, eg);
        ck_assert_msg(rc == STILL_OK, "rep %d: %s", rep, still_strerror(rc));
        tu_model_forward(&c, want, sw, ew);
        double tol = c.dtype == STILL_F32 ? 1e-6 : 1e-10;
        ck_assert_msg(tu_max_abs_diff(o, want, no) <= tol * (1.0 + tu_max_abs(want, no)),
                      "rep %d (routing %d C %lld k %lld L %lld cap %lld w %lld act %d np %d "
                      "per_kv %d N %lld dtype %d): max |o - model| = %g",
                      rep, routing, (long long)c.cfg.chunk, (long long)c.cfg.topk,
                      (long long)c.cfg.local, (long long)c.cfg.max_sel, (long long)c.cfg.window,
                      c.cfg.act, c.cfg.npmap, c.cfg.select_per_kv, (long long)s->seq_len, c.dtype,
                      tu_max_abs_diff(o, want, no));
        if (routing != STILL_ROUTING_WINDOW) {
            for (int64_t i = 0; i < ns; i++) {
                ck_assert_msg(sg[i] == sw[i] || fabs(sg[i] - sw[i]) <= 1e-10 * (1 + fabs(sw[i])),
                              "rep %d: sigma[%lld] %.17g vs %.17g", rep, (long long)i, sg[i], sw[i]);
                ck_assert_msg(eg[i] == ew[i], "rep %d: selected[%lld]", rep, (long long)i);
            }
        }
        free(o);
        free(want);
        free(sg);
        free(sw);
        free(eg);
        free(ew);
        tu_case_free(&c);
    }
}

START_TEST(test_forward_matches_model_saliency_routing)
{
    sweep_against_model(307, STILL_ROUTING_SALIENCY, 0, 30);
}
END_TEST

START_TEST(test_forward_matches_model_with_cap)
{
    sweep_against_model(308, STILL_ROUTING_SALIENCY, 1, 30);
}
END_TEST

START_TEST(test_forward_matches_model_window_routing)
{
    sweep_against_model(309, STILL_ROUTING_WINDOW, 0, 20);
}
END_TEST

START_TEST(test_forward_matches_model_all_and_none_routing)
{
    sweep_against_model(310, STILL_ROUTING_ALL, 0, 12);
    sweep_against_model(311, STILL_ROUTING_NONE, 1, 12);
}
END_TEST

/* SPEC §5: a cap that is never reached changes nothing. */
START_TEST(test_cap_not_reached_equals_no_cap)
{
    tu_rng g;
    tu_rng_seed(&g, 312);
    for (int rep = 0; rep < 8; rep++) {
        still_shape s = {1, 2, 2, tu_int(&g, 10, 50), 3, 2, STILL_LAYOUT_BHND};
        tu_case c;
        tu_case_init(&c, &g, &s, 1.0, 1);
        c.cfg.chunk = CHUNKS[rep % 4];
        c.cfg.topk = tu_int(&g, 1, c.cfg.chunk);
        c.cfg.local = rep % 3;
        int64_t nsel = (s.seq_len / c.cfg.chunk) * c.cfg.topk;
        int64_t no = 2 * s.seq_len * 2;
        double *o1 = tu_dalloc(no), *o2 = tu_dalloc(no), *o3 = tu_dalloc(no);
        ck_assert_int_eq(tu_run_ref(&c, o1, NULL, NULL), STILL_OK);
        c.cfg.max_sel = nsel;
        ck_assert_int_eq(tu_run_ref(&c, o2, NULL, NULL), STILL_OK);
        TU_ASSERT_CLOSE(o1, o2, no, 1e-13, "cap = #selected vs no cap");
        /* a binding cap does change the output (token 0 and the rest differ) */
        c.cfg.max_sel = 1;
        ck_assert_int_eq(tu_run_ref(&c, o3, NULL, NULL), STILL_OK);
        if (nsel > 2 && s.seq_len > (c.cfg.local + 1) * c.cfg.chunk + 2)
            ck_assert_msg(tu_max_abs_diff(o1, o3, no) > 1e-12, "cap 1 changed nothing");
        free(o1);
        free(o2);
        free(o3);
        tu_case_free(&c);
    }
}
END_TEST

/* ---- forced selection (SPEC §10) ------------------------------------------- */

/* a random valid selection: exactly k ones per complete chunk, the same
 * within each kv group when per_kv */
static void random_selection(tu_rng *g, const tu_case *c, uint8_t *sel)
{
    const still_shape *s = &c->shape;
    int64_t N = s->seq_len, C = c->cfg.chunk, k = tu_eff_k(&c->cfg);
    int64_t G = s->heads_q / s->heads_kv;
    for (int64_t bh = 0; bh < s->batch * s->heads_q; bh++) {
        uint8_t *row = sel + bh * N;
        if (c->cfg.select_per_kv && (bh % s->heads_q) % G != 0) {
            memcpy(row, row - N, (size_t)N);
            continue;
        }
        memset(row, 0, (size_t)N);
        for (int64_t c0 = 0; c0 + C <= N; c0 += C)
            for (int64_t r = 0; r < k;) {
                int64_t j = c0 + tu_int(g, 0, C - 1);
                if (!row[j]) {
                    row[j] = 1;
                    r++;
                }
            }
    }
}

START_TEST(test_forced_selection_honoured)
{
    tu_rng g;
    tu_rng_seed(&g, 313);
    for (int rep = 0; rep < 16; rep++) {
        tu_case c;
        random_case(&g, &c, STILL_ROUTING_SALIENCY, rep % 2);
        const still_shape *s = &c.shape;
        int64_t ns = s->batch * s->heads_q * s->seq_len, no = ns * s->dim_v;
        uint8_t *forced = tu_alloc((size_t)ns), *natural = tu_alloc((size_t)ns);
        double *o0 = tu_dalloc(no), *o = tu_dalloc(no), *want = tu_dalloc(no);
        ck_assert_int_eq(tu_run_ref(&c, o0, NULL, natural), STILL_OK);
        random_selection(&g, &c, forced);
        c.selection_in = forced;
        ck_assert_int_eq(tu_run_ref(&c, o, NULL, NULL), STILL_OK);
        tu_model_forward(&c, want, NULL, NULL);
        double tol = c.dtype == STILL_F32 ? 1e-6 : 1e-10;
        TU_ASSERT_CLOSE(o, want, no, tol * (1 + tu_max_abs(want, no)), "forced selection vs model");
        /* a different selection in a split chunk changes the output */
        int differs = 0;
        int64_t C = c.cfg.chunk, N = s->seq_len;
        for (int64_t bh = 0; bh < s->batch * s->heads_q; bh++)
            for (int64_t j = 0; j < N; j++) {
                int64_t ls = last_split((N - 1) / C, c.cfg.local);
                if (j / C <= ls && j / C < N / C && forced[bh * N + j] != natural[bh * N + j])
                    differs = 1;
            }
        if (differs && c.cfg.max_sel == 0)
            ck_assert_msg(tu_max_abs_diff(o, o0, no) > 0.0, "rep %d: forced selection ignored", rep);
        free(forced);
        free(natural);
        free(o0);
        free(o);
        free(want);
        tu_case_free(&c);
    }
}
END_TEST

/* forcing the selection the ref chose itself reproduces its output */
START_TEST(test_forcing_own_selection_reproduces_output)
{
    tu_rng g;
    tu_rng_seed(&g, 314);
    for (int rep = 0; rep < 10; rep++) {
        tu_case c;
        random_case(&g, &c, rep % 3 == 0 ? STILL_ROUTING_ALL : STILL_ROUTING_SALIENCY, rep % 2);
        const still_shape *s = &c.shape;
        int64_t ns = s->batch * s->heads_q * s->seq_len, no = ns * s->dim_v;
        uint8_t *sel = tu_alloc((size_t)ns);
        double *o1 = tu_dalloc(no), *o2 = tu_dalloc(no);
        ck_assert_int_eq(tu_run_ref(&c, o1, NULL, sel), STILL_OK);
        c.selection_in = sel;
        int rc = tu_run_ref(&c, o2, NULL, NULL);
        ck_assert_msg(rc == STILL_OK, "own selection refused: %s", still_strerror(rc));
        ck_assert_msg(memcmp(o1, o2, (size_t)no * sizeof(double)) == 0, "rep %d: output differs", rep);
        free(sel);
        free(o1);
        free(o2);
        tu_case_free(&c);
    }
}
END_TEST

/* SPEC §5: the incomplete chunk is never split, so forced entries there are
 * ignored. */
START_TEST(test_forced_selection_incomplete_chunk_ignored)
{
    tu_rng g;
    tu_rng_seed(&g, 315);
    still_shape s = {1, 2, 1, 29, 3, 2, STILL_LAYOUT_BHND};
    tu_case c;
    tu_case_init(&c, &g, &s, 1.0, 0);
    c.cfg.chunk = 8;
    c.cfg.topk = 2;
    c.cfg.local = 0;
    uint8_t sel[58];
    random_selection(&g, &c, sel);
    double o1[58 * 2], o2[58 * 2];
    c.selection_in = sel;
    ck_assert_int_eq(tu_run_ref(&c, o1, NULL, NULL), STILL_OK);
    for (int64_t h = 0; h < 2; h++)
        for (int64_t j = 24; j < 29; j++)
            sel[h * 29 + j] = 1;
    ck_assert_int_eq(tu_run_ref(&c, o2, NULL, NULL), STILL_OK);
    TU_ASSERT_CLOSE(o1, o2, 58 * 2, 0.0, "incomplete chunk entries");
    tu_case_free(&c);
}
END_TEST

START_TEST(test_malformed_forced_selection_rejected)
{
    tu_rng g;
    tu_rng_seed(&g, 316);
    still_shape s = {2, 4, 2, 21, 3, 2, STILL_LAYOUT_BNHD};
    for (int which = 0; which < 7; which++) {
        tu_case c;
        tu_case_init(&c, &g, &s, 1.0, 0);
        c.cfg.chunk = 5;
        c.cfg.topk = 2;
        c.cfg.select_per_kv = which == 3;
        uint8_t sel[2 * 4 * 21];
        random_selection(&g, &c, sel);
        int64_t row = 5 * 21; /* batch 1, head 1 */
        const char *what = "";
        switch (which) {
        case 0: /* one token too many in chunk 1 */
            for (int64_t j = 5; j < 10; j++)
                if (!sel[row + j]) {
                    sel[row + j] = 1;
                    break;
                }
            what = "k + 1 ones";
            break;
        case 1: /* one too few in the last complete chunk */
            for (int64_t j = 15; j < 20; j++)
                if (sel[row + j]) {
                    sel[row + j] = 0;
                    break;
                }
            what = "k - 1 ones";
            break;
        case 2:
            for (int64_t j = 0; j < 5; j++)
                if (sel[row + j]) {
                    sel[row + j] = 2;
                    break;
                }
            what = "value 2";
            break;
        case 3: { /* per-kv: the two heads of a group disagree, k ones each */
            int64_t on = -1, off = -1;
            memcpy(sel + row, sel + row - 21, 21);
            for (int64_t j = 0; j < 5; j++) {
                if (sel[row + j])
                    on = j;
                else
                    off = j;
            }
            sel[row + on] = 0;
            sel[row + off] = 1;
            what = "per-kv group disagrees";
            break;
        }
        case 4:
            c.cfg.routing = STILL_ROUTING_ALL; /* k = C: every token */
            what = "routing all with k ones";
            break;
        case 5:
            c.cfg.routing = STILL_ROUTING_NONE; /* k = 0: none */
            what = "routing none with k ones";
            break;
        case 6:
            c.cfg.topk = 3;
            what = "topk 3 with 2 ones";
            break;
        }
        c.selection_in = sel;
        double o[2 * 4 * 21 * 2];
        int rc = tu_run_ref(&c, o, NULL, NULL);
        ck_assert_msg(rc == STILL_E_SELECTION, "%s: got %d (%s)", what, rc, still_strerror(rc));
        tu_case_free(&c);
    }
}
END_TEST

static Suite *routing_suite(void)
{
    Suite *s = suite_create("ref_routing");
    TCase *tc = tcase_create("routing");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_route_matches_model_every_combination);
    tcase_add_test(tc, test_route_recent_chunks_and_split_chunks);
    tcase_add_test(tc, test_route_cap_bound_and_eviction_order);
    tcase_add_test(tc, test_route_window_is_last_w_positions);
    tcase_add_test(tc, test_hybrid_output_matches_formula_with_route_sets);
    tcase_add_test(tc, test_window_routing_with_omega_matches_formula);
    tcase_add_test(tc, test_weights_every_key_counted_once);
    tcase_add_test(tc, test_forward_matches_model_saliency_routing);
    tcase_add_test(tc, test_forward_matches_model_with_cap);
    tcase_add_test(tc, test_forward_matches_model_window_routing);
    tcase_add_test(tc, test_forward_matches_model_all_and_none_routing);
    tcase_add_test(tc, test_cap_not_reached_equals_no_cap);
    tcase_add_test(tc, test_forced_selection_honoured);
    tcase_add_test(tc, test_forcing_own_selection_reproduces_output);
    tcase_add_test(tc, test_forced_selection_incomplete_chunk_ignored);
    tcase_add_test(tc, test_malformed_forced_selection_rejected);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(routing_suite());
}
