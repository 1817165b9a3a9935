/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_hybrid_family.c -- SPEC §12-14: rest = linear | drop, routings
 * `sinks` and `terraced`: the identities on the ref path, an independent
 * softmax over the exact sets, the fast path against the ref (SPEC §10) on
 * a grid, decode = prefill for every split, save/restore, and the
 * configurations refused. */
#include "test_state_util.h"
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t n_o(const tu_case *c)
{
    const still_shape *s = &c->shape;
    return s->batch * s->heads_q * s->seq_len * s->dim_v;
}

/* A case of shape (B, Hq, Hk, N, d = 4, dv = 3) in layout, with routing,
 * rest, w and s; random maps, window.w and gate when `params`. */
static void make_case(tu_case *c, tu_rng *g, int64_t B, int64_t Hq, int64_t Hk, int64_t N,
                      int layout, int routing, int rest, int64_t w, int64_t s, int params)
{
    still_shape sh = {B, Hq, Hk, N, 4, 3, layout};
    tu_case_init(c, g, &sh, 1.0, params);
    c->cfg.routing = routing;
    c->cfg.rest = rest;
    c->cfg.window = w;
    c->cfg.sinks = s;
    c->cfg.chunk = 8;
    if (params) {
        tu_case_random_params(c, g, 4, 1, 1, 0, 1);
        c->use_params = 1;
    }
}

/* Independent reading of SPEC §12-14 with rest = drop, omega = 1 and
 * eps_den = 0: o_t is the softmax over E_t alone, E_t written out here
 * from the spec's formulas (not from ref/route_*.c). */
static int in_exact_set(int routing, int64_t w, int64_t s, int64_t t, int64_t j)
{
    if (routing == STILL_ROUTING_SINKS)
        return j < s || j >= t - w + 1;
    if (routing == STILL_ROUTING_TERRACED) {
        int64_t b = t / w;
        return j >= (b > 0 ? (b - 1) * w : 0);
    }
    return j >= t - w + 1; /* window */
}

static void model_drop(const tu_case *c, double *o)
{
    const still_shape *sh = &c->shape;
    const int64_t N = sh->seq_len, d = sh->dim_qk, dv = sh->dim_v, grp = sh->heads_q / sh->heads_kv;
    const double scale = 1.0 / sqrt((double)d);
    double *p = tu_dalloc(N);
    for (int64_t b = 0; b < sh->batch; b++)
        for (int64_t h = 0; h < sh->heads_q; h++)
            for (int64_t t = 0; t < N; t++) {
                const double *q = c->q + tu_bhnd(sh->heads_q, N, d, b, h, t, 0);
                double mx = -INFINITY, sum = 0.0;
                for (int64_t j = 0; j <= t; j++) {
                    const double *k = c->k + tu_bhnd(sh->heads_kv, N, d, b, h / grp, j, 0);
                    double s = 0.0;
                    for (int64_t e = 0; e < d; e++)
                        s += q[e] * k[e];
                    p[j] = in_exact_set(c->cfg.routing, c->cfg.window, c->cfg.sinks, t, j)
                               ? s * scale
                               : -INFINITY;
                    mx = fmax(mx, p[j]);
                }
                for (int64_t j = 0; j <= t; j++)
                    sum += p[j] = exp(p[j] - mx);
                for (int64_t e = 0; e < dv; e++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j <= t; j++)
                        acc += p[j] * c->v[tu_bhnd(sh->heads_kv, N, dv, b, h / grp, j, e)];
                    o[tu_bhnd(sh->heads_q, N, dv, b, h, t, e)] = acc / sum;
                }
            }
    free(p);
}

/* ---- ref identities ------------------------------------------------------ */

START_TEST(test_drop_equals_softmax_over_exact_set)
{
    tu_rng g;
    tu_rng_seed(&g, 1201);
    const int routings[] = {STILL_ROUTING_WINDOW, STILL_ROUTING_SINKS, STILL_ROUTING_TERRACED};
    for (int ri = 0; ri < 3; ri++)
        for (int rep = 0; rep < 6; rep++) {
            tu_case c;
            int64_t N = tu_int(&g, 1, 45);
            make_case(&c, &g, 1, 2, 1, N, STILL_LAYOUT_BHND, routings[ri], STILL_REST_DROP,
                      tu_int(&g, 2, 12), tu_int(&g, 0, 5), 0);
            c.cfg.eps_den = 0.0;
            double *o = tu_dalloc(n_o(&c)), *want = tu_dalloc(n_o(&c));
            ck_assert_int_eq(tu_run_ref(&c, o, NULL, NULL), STILL_OK);
            model_drop(&c, want);
            TU_ASSERT_CLOSE(o, want, n_o(&c), 1e-12, "drop vs softmax over E_t");
            free(o), free(want);
            tu_case_free(&c);
        }
}
END_TEST

/* SPEC §12: drop with every key exact is the teacher (eps_den 0). */
START_TEST(test_drop_with_every_key_exact_is_teacher)
{
    tu_rng g;
    tu_rng_seed(&g, 1202);
    tu_case c;
    make_case(&c, &g, 2, 4, 2, 37, STILL_LAYOUT_BNHD, STILL_ROUTING_ALL, STILL_REST_DROP, 0, 0, 1);
    c.cfg.eps_den = 0.0;
    c.params.window_w = NULL; /* omega = 1 */
    double *o = tu_dalloc(n_o(&c)), *te = tu_dalloc(n_o(&c));
    ck_assert_int_eq(tu_run_ref(&c, o, NULL, NULL), STILL_OK);
    ck_assert_int_eq(tu_run_teacher(&c, te), STILL_OK);
    TU_ASSERT_CLOSE(o, te, n_o(&c), 1e-12, "all + drop vs teacher");
    free(o), free(te);
    tu_case_free(&c);
}
END_TEST

/* SPEC §13: s = 0 is routing window (both rests, bitwise: the same E_t). */
START_TEST(test_sinks_zero_equals_window)
{
    tu_rng g;
    tu_rng_seed(&g, 1203);
    for (int rest = 0; rest <= 1; rest++) {
        tu_case c;
        make_case(&c, &g, 1, 4, 2, 41, STILL_LAYOUT_BHND, STILL_ROUTING_SINKS, rest, 7, 0, 1);
        double *o = tu_dalloc(n_o(&c)), *ow = tu_dalloc(n_o(&c));
        ck_assert_int_eq(tu_run_ref(&c, o, NULL, NULL), STILL_OK);
        c.cfg.routing = STILL_ROUTING_WINDOW;
        ck_assert_int_eq(tu_run_ref(&c, ow, NULL, NULL), STILL_OK);
        TU_ASSERT_CLOSE(o, ow, n_o(&c), 0.0, "sinks s=0 vs window");
        free(o), free(ow);
        tu_case_free(&c);
    }
}
END_TEST

/* SPEC §13-14: w >= N is the teacher (eps_den 0, omega 1), any rest. */
START_TEST(test_sinks_and_terraced_wide_window_is_teacher)
{
    tu_rng g;
    tu_rng_seed(&g, 1204);
    const int routings[] = {STILL_ROUTING_SINKS, STILL_ROUTING_TERRACED};
    for (int ri = 0; ri < 2; ri++)
        for (int rest = 0; rest <= 1; rest++) {
            tu_case c;
            make_case(&c, &g, 1, 2, 2, 29, STILL_LAYOUT_BHND, routings[ri], rest, 29 + 4 * rest,
                      3, 0);
            c.cfg.eps_den = 0.0;
            double *o = tu_dalloc(n_o(&c)), *te = tu_dalloc(n_o(&c));
            ck_assert_int_eq(tu_run_ref(&c, o, NULL, NULL), STILL_OK);
            ck_assert_int_eq(tu_run_teacher(&c, te), STILL_OK);
            TU_ASSERT_CLOSE(o, te, n_o(&c), 1e-12, "w >= N vs teacher");
            free(o), free(te);
            tu_case_free(&c);
        }
}
END_TEST

/* SPEC §14: terraced is the chunk engine with C = w, k = 0, L = 2: the
 * oracle's terraced file and its saliency file (routing none) agree. */
START_TEST(test_terraced_equals_none_with_block_chunks)
{
    tu_rng g;
    tu_rng_seed(&g, 1205);
    for (int rest = 0; rest <= 1; rest++) {
        tu_case c;
        make_case(&c, &g, 1, 2, 1, 53, STILL_LAYOUT_BHND, STILL_ROUTING_TERRACED, rest, 6, 0, 1);
        double *o = tu_dalloc(n_o(&c)), *on = tu_dalloc(n_o(&c));
        ck_assert_int_eq(tu_run_ref(&c, o, NULL, NULL), STILL_OK);
        c.cfg.routing = STILL_ROUTING_NONE;
        c.cfg.chunk = 6;
        c.cfg.local = 2;
        ck_assert_int_eq(tu_run_ref(&c, on, NULL, NULL), STILL_OK);
        TU_ASSERT_CLOSE(o, on, n_o(&c), 0.0, "terraced vs none with C = w");
        free(o), free(on);
        tu_case_free(&c);
    }
}
END_TEST

/* SPEC §12: rest = linear is today's output bit for bit (the default);
 * with drop the gate has no effect, and an empty E_t gives 0. */
START_TEST(test_rest_default_linear_and_drop_ignores_gate)
{
    tu_rng g;
    tu_rng_seed(&g, 1206);
    tu_case c;
    make_case(&c, &g, 1, 2, 2, 30, STILL_LAYOUT_BHND, STILL_ROUTING_SALIENCY, STILL_REST_DROP, 0,
              0, 1);
    double *o1 = tu_dalloc(n_o(&c)), *o2 = tu_dalloc(n_o(&c));
    ck_assert_int_eq(tu_run_ref(&c, o1, NULL, NULL), STILL_OK);
    for (int64_t i = 0; i < n_o(&c); i++)
        c.gate[i] *= 0.5;
    ck_assert_int_eq(tu_run_ref(&c, o2, NULL, NULL), STILL_OK);
    TU_ASSERT_CLOSE(o1, o2, n_o(&c), 0.0, "drop ignores the gate");
    /* routing none, L = 0: E_t is empty, o = 0 with eps_den 0 or not */
    c.cfg.routing = STILL_ROUTING_NONE;
    c.cfg.local = 0;
    for (int e = 0; e <= 1; e++) {
        c.cfg.eps_den = e ? 1e-6 : 0.0;
        ck_assert_int_eq(tu_run_ref(&c, o1, NULL, NULL), STILL_OK);
        ck_assert_double_eq(tu_max_abs(o1, n_o(&c)), 0.0);
    }
    free(o1), free(o2);
    tu_case_free(&c);
    still_config d;
    still_config_default(&d);
    ck_assert_int_eq(d.rest, STILL_REST_LINEAR);
}
END_TEST

/* ---- fast vs ref (SPEC §10) ------------------------------------------------ */

static int run_fast(const tu_case *c, double *o_bhnd)
{
    const still_shape *s = &c->shape;
    const int64_t B = s->batch, Hq = s->heads_q, Hk = s->heads_kv, N = s->seq_len;
    const int64_t d = s->dim_qk, dv = s->dim_v;
    float *q = tu_alloc((size_t)(B * Hq * N * d) * sizeof(float));
    float *k = tu_alloc((size_t)(B * Hk * N * d) * sizeof(float));
    float *v = tu_alloc((size_t)(B * Hk * N * dv) * sizeof(float));
    float *g = c->gate ? tu_alloc((size_t)(B * Hq * N * dv) * sizeof(float)) : NULL;
    float *o = tu_alloc((size_t)n_o(c) * sizeof(float));
    still_tensors t;
    tu_to_layout(c->q, B, Hq, N, d, s->layout, STILL_F32, q);
    tu_to_layout(c->k, B, Hk, N, d, s->layout, STILL_F32, k);
    tu_to_layout(c->v, B, Hk, N, dv, s->layout, STILL_F32, v);
    if (g)
        tu_to_layout(c->gate, B, Hq, N, dv, s->layout, STILL_F32, g);
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F32;
    t.q = q, t.k = k, t.v = v, t.gate = g, t.o = o;
    int rc = still_forward(&c->cfg, s, c->use_params ? &c->params : NULL, &t);
    if (rc == STILL_OK)
        tu_from_layout(o, B, Hq, N, dv, s->layout, STILL_F32, o_bhnd);
    free(q), free(k), free(v), free(g), free(o);
    return rc;
}

START_TEST(test_fast_matches_ref_grid)
{
    tu_rng g;
    tu_rng_seed(&g, 1207);
    const int routings[] = {STILL_ROUTING_SINKS, STILL_ROUTING_TERRACED, STILL_ROUTING_WINDOW,
                            STILL_ROUTING_SALIENCY};
    const int64_t Ns[] = {1, 37, 101};
    for (int ri = 0; ri < 4; ri++)
        for (int rest = 0; rest <= 1; rest++)
            for (int layout = 0; layout <= 1; layout++)
                for (int ni = 0; ni < 3; ni++) {
                    tu_case c;
                    make_case(&c, &g, 2, 4, 2, Ns[ni], layout, routings[ri], rest,
                              tu_int(&g, 2, 20), tu_int(&g, 0, 6), 1);
                    c.cfg.local = tu_int(&g, 0, 2);
                    c.dtype = STILL_F32;
                    tu_case_round(&c);
                    double *o = tu_dalloc(n_o(&c)), *of = tu_dalloc(n_o(&c));
                    ck_assert_int_eq(tu_run_ref(&c, o, NULL, NULL), STILL_OK);
                    ck_assert_int_eq(run_fast(&c, of), STILL_OK);
                    const int64_t nv = c.shape.batch * c.shape.heads_kv * c.shape.seq_len * 3;
                    TU_ASSERT_CLOSE(of, o, n_o(&c), 1e-5 * tu_max_abs(c.v, nv), "fast vs ref");
                    free(o), free(of);
                    tu_case_free(&c);
                }
}
END_TEST

/* ---- streaming (SPEC §7, I6) ----------------------------------------------- */

START_TEST(test_decode_equals_prefill_every_split)
{
    tu_rng g;
    tu_rng_seed(&g, 1208);
    /* routing 2: sinks again with more sinks than a first cache holds (16)
     * and whole chunks of them leaving at once on the fast path */
    const int routings[] = {STILL_ROUTING_SINKS, STILL_ROUTING_TERRACED, STILL_ROUTING_SINKS};
    const int64_t N = 61;
    int64_t blocks[61];
    for (int ri = 0; ri < 3; ri++)
        for (int rest = 0; rest <= 1; rest++)
            for (int path = STILL_PATH_REF; path <= STILL_PATH_FAST; path++) {
                tu_case c;
                make_case(&c, &g, 1, 2, 1, N, STILL_LAYOUT_BHND, routings[ri], rest, 5,
                          ri == 2 ? 40 : 3, 1);
                if (ri == 2)
                    c.cfg.chunk = 16;
                if (path == STILL_PATH_FAST) {
                    c.dtype = STILL_F32;
                    tu_case_round(&c);
                }
                double *pre = tu_dalloc(n_o(&c)), *dec = tu_dalloc(n_o(&c));
                if (path == STILL_PATH_FAST)
                    ck_assert_int_eq(run_fast(&c, pre), STILL_OK);
                else
                    ck_assert_int_eq(tu_run_ref(&c, pre, NULL, NULL), STILL_OK);
                for (int64_t n = 0; n <= N; n++) {
                    int nb = ts_schedule_prefill(N, n, blocks);
                    ck_assert_int_eq(ts_decode(&c, path, blocks, nb, dec, NULL), STILL_OK);
                    /* the fast path: the same bits (lib/fast.h); the ref: rounding */
                    TU_ASSERT_CLOSE(dec, pre, n_o(&c), path == STILL_PATH_FAST ? 0.0 : 1e-13,
                                    "decode vs prefill");
                }
                free(pre), free(dec);
                tu_case_free(&c);
            }
}
END_TEST

/* save after n tokens, load, continue: the outputs of never stopping */
START_TEST(test_save_restore_continues)
{
    tu_rng g;
    tu_rng_seed(&g, 1209);
    const int routings[] = {STILL_ROUTING_SINKS, STILL_ROUTING_TERRACED};
    const int64_t N = 26;
    for (int ri = 0; ri < 2; ri++)
        for (int rest = 0; rest <= 1; rest++)
            for (int path = STILL_PATH_REF; path <= STILL_PATH_FAST; path++)
                for (int64_t cut = 0; cut <= N; cut += 5) {
                    tu_case c;
                    make_case(&c, &g, 1, 2, 2, N, STILL_LAYOUT_BNHD, routings[ri], rest, 4, 2, 1);
                    if (path == STILL_PATH_FAST) {
                        c.dtype = STILL_F32;
                        tu_case_round(&c);
                    }
                    double *a = tu_dalloc(n_o(&c)), *b = tu_dalloc(n_o(&c));
                    int64_t all[1] = {N};
                    ck_assert_int_eq(ts_decode(&c, path, all, 1, a, NULL), STILL_OK);
                    still_state *st, *st2;
                    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, &c.params, path, &st),
                                     STILL_OK);
                    if (cut)
                        ck_assert_int_eq(ts_append(st, &c, 0, cut, b, NULL), STILL_OK);
                    size_t len;
                    ck_assert_int_eq(still_state_save(st, NULL, 0, &len), STILL_OK);
                    void *buf = tu_alloc(len);
                    ck_assert_int_eq(still_state_save(st, buf, len, &len), STILL_OK);
                    still_state_destroy(st);
                    ck_assert_int_eq(still_state_load(buf, len, &c.params, &st2), STILL_OK);
                    if (cut < N)
                        ck_assert_int_eq(ts_append(st2, &c, cut, N - cut, b, NULL), STILL_OK);
                    still_state_destroy(st2);
                    free(buf);
                    TU_ASSERT_CLOSE(b, a, n_o(&c), path == STILL_PATH_FAST ? 0.0 : 1e-13,
                                    "restored vs unbroken");
                    free(a), free(b);
                    tu_case_free(&c);
                }
}
END_TEST

/* ---- refused ------------------------------------------------------------------ */

START_TEST(test_invalid_configs_refused)
{
    still_shape s = {1, 1, 1, 8, 4, 3, STILL_LAYOUT_BHND};
    still_config c;
    still_config_default(&c);
    c.rest = 2;
    ck_assert_int_eq(still_config_validate(&c, &s), STILL_E_CONFIG);
    c.rest = -1;
    ck_assert_int_eq(still_config_validate(&c, &s), STILL_E_CONFIG);
    still_config_default(&c);
    c.routing = STILL_ROUTING_SINKS;
    c.sinks = -1;
    ck_assert_int_eq(still_config_validate(&c, &s), STILL_E_CONFIG);
    c.sinks = 0;
    ck_assert_int_eq(still_config_validate(&c, &s), STILL_OK);
    c.phantom_sink = 1;
    ck_assert_int_eq(still_config_validate(&c, &s), STILL_E_CONFIG);
    c.routing = STILL_ROUTING_TERRACED;
    ck_assert_int_eq(still_config_validate(&c, &s), STILL_E_CONFIG);
    c.phantom_sink = 0;
    c.window = 1;
    ck_assert_int_eq(still_config_validate(&c, &s), STILL_E_CONFIG);
    still_config_default(&c);
    c.routing = STILL_ROUTING_NSA + 1; /* past the last routing */
    ck_assert_int_eq(still_config_validate(&c, &s), STILL_E_CONFIG);
}
END_TEST

/* The VJP of rest = drop (finite differences in test_vjp.c): the gate
 * multiplies nothing, so its gradient is exactly 0, and q's is not. */
START_TEST(test_vjp_drop_has_no_gate_gradient)
{
    tu_rng g;
    tu_rng_seed(&g, 1210);
    tu_case c;
    make_case(&c, &g, 1, 1, 1, 9, STILL_LAYOUT_BHND, STILL_ROUTING_SINKS, STILL_REST_DROP, 3, 1, 0);
    double *dout = tu_dalloc(n_o(&c)), *dq = tu_dalloc(9 * 4), *o = tu_dalloc(n_o(&c));
    double *dgate = tu_dalloc(n_o(&c)), *gate = tu_dalloc(n_o(&c));
    tu_fill(&g, dout, n_o(&c), -1.0, 1.0);
    tu_fill(&g, gate, n_o(&c), 0.1, 0.9);
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c.q, t.k = c.k, t.v = c.v, t.o = o, t.gate = gate;
    still_grads gr;
    memset(&gr, 0, sizeof gr);
    gr.dq = dq;
    gr.dgate = dgate;
    ck_assert_int_eq(still_ref_vjp(&c.cfg, &c.shape, NULL, &t, dout, &gr), STILL_OK);
    ck_assert_double_eq(tu_max_abs(dgate, n_o(&c)), 0.0);
    ck_assert(tu_max_abs(dq, 9 * 4) > 0.0);
    c.cfg.rest = STILL_REST_LINEAR;
    ck_assert_int_eq(still_ref_vjp(&c.cfg, &c.shape, NULL, &t, dout, &gr), STILL_OK);
    ck_assert(tu_max_abs(dgate, n_o(&c)) > 0.0);
    free(dout), free(dq), free(o), free(dgate), free(gate);
    tu_case_free(&c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("hybrid_family");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_drop_equals_softmax_over_exact_set);
    tcase_add_test(tc, test_drop_with_every_key_exact_is_teacher);
    tcase_add_test(tc, test_sinks_zero_equals_window);
    tcase_add_test(tc, test_sinks_and_terraced_wide_window_is_teacher);
    tcase_add_test(tc, test_terraced_equals_none_with_block_chunks);
    tcase_add_test(tc, test_rest_default_linear_and_drop_ignores_gate);
    tcase_add_test(tc, test_fast_matches_ref_grid);
    tcase_add_test(tc, test_decode_equals_prefill_every_split);
    tcase_add_test(tc, test_save_restore_continues);
    tcase_add_test(tc, test_invalid_configs_refused);
    tcase_add_test(tc, test_vjp_drop_has_no_gate_gradient);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
