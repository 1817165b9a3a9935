/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_state.c -- the streaming state of the ref path (SPEC §7): identity
 * I6 (decode = prefill, for every cut of the sequence into appends), every
 * token in exactly one branch, constant memory with the cap, the API's
 * error paths.  The prefill is still_ref_forward (the oracle); the branch
 * census is compared with testutil's independent model of SPEC §5-6. */
#include "test_state_util.h"
#include "state.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One setting of the driver: routing, L, cap, per-kv selection. */
typedef struct setting {
    int routing;
    int64_t L, cap;
    int per_kv;
} setting;

enum { N_SETTINGS = 4 * 3 * 2 * 2 };

static setting setting_of(int i)
{
    static const int routings[4] = {STILL_ROUTING_SALIENCY, STILL_ROUTING_WINDOW,
                                    STILL_ROUTING_ALL, STILL_ROUTING_NONE};
    setting s;
    s.routing = routings[i % 4];
    s.L = (i / 4) % 3;
    s.cap = (i / 12) % 2 ? 3 : 0;
    s.per_kv = (i / 24) % 2;
    return s;
}

/* A small case: B=2, Hq=4, Hk=2 (GQA), C=4, k=2, w=5; with varied
 * activations, parameters (non-square W, bias, Householder, untied maps,
 * window factors) and gates, chosen by `variant`. */
static void make_case(tu_case *c, uint64_t seed, int layout, int64_t N, setting s, int variant)
{
    tu_rng g;
    still_shape shape = {2, 4, 2, N, 4, 3, layout};
    tu_rng_seed(&g, seed);
    tu_case_init(c, &g, &shape, 1.5, variant % 2);
    c->cfg.chunk = 4;
    c->cfg.topk = 2;
    c->cfg.window = 5;
    c->cfg.local = s.L;
    c->cfg.max_sel = s.cap;
    c->cfg.routing = s.routing;
    c->cfg.select_per_kv = s.per_kv;
    c->cfg.act = variant % 4;
    if (variant % 3 == 1)
        tu_case_random_params(c, &g, 3, 1, 1, 0, 1); /* f = 3, b, u, fk, omega */
    else if (variant % 3 == 2)
        tu_case_random_params(c, &g, 4, 0, 1, 1, 0);
}

/* The oracle's outputs of the whole sequence. */
static void prefill(const tu_case *c, double *o, double *sigma, uint8_t *sel)
{
    ck_assert_int_eq(tu_run_ref(c, o, sigma, sel), STILL_OK);
}

static int64_t count_o(const tu_case *c)
{
    return c->shape.batch * c->shape.heads_q * c->shape.seq_len * c->shape.dim_v;
}

static int64_t count_sigma(const tu_case *c)
{
    return c->shape.batch * c->shape.heads_q * c->shape.seq_len;
}

/* Decodes the case in the given blocks and compares with the prefill:
 * o within tol relative to max|o|, sigma bitwise (the same function on the
 * same keys, SPEC §7). */
static void check_blocks(const tu_case *c, const int64_t *blocks, int nb, double tol,
                         const char *what)
{
    int64_t no = count_o(c), ns = count_sigma(c);
    double *o_ref = tu_dalloc(no), *o_dec = tu_dalloc(no);
    double *s_ref = tu_dalloc(ns), *s_dec = tu_dalloc(ns);
    prefill(c, o_ref, s_ref, NULL);
    ck_assert_int_eq(ts_decode(c, STILL_PATH_REF, blocks, nb, o_dec, s_dec), STILL_OK);
    double scale = fmax(tu_max_abs(o_ref, no), 1.0);
    TU_ASSERT_CLOSE(o_dec, o_ref, no, tol * scale, what);
    for (int64_t i = 0; i < ns; i++)
        ck_assert_msg(s_dec[i] == s_ref[i], "%s: sigma %lld: %.17g vs %.17g", what,
                      (long long)i, s_dec[i], s_ref[i]);
    free(o_ref);
    free(o_dec);
    free(s_ref);
    free(s_dec);
}

static void check_case(const tu_case *c, int nb_kind, tu_rng *g, double tol, const char *what)
{
    const int64_t N = c->shape.seq_len;
    int64_t *blocks = tu_alloc((size_t)N * sizeof *blocks);
    int nb = nb_kind == 0 ? ts_schedule_prefill(N, 0, blocks)
                          : ts_schedule_random(g, N, 9, blocks);
    check_blocks(c, blocks, nb, tol, what);
    free(blocks);
}

/* SPEC I6: decode of t tokens, one at a time, = prefill of t tokens, for
 * every routing, L, cap and per-kv setting, both layouts, float64. */
START_TEST(test_decode_by_one_equals_prefill_every_setting)
{
    for (int layout = 0; layout < 2; layout++)
        for (int i = 0; i < N_SETTINGS; i++) {
            tu_case c;
            char what[96];
            setting s = setting_of(i);
            make_case(&c, 100 + (uint64_t)i, layout, 26, s, i);
            snprintf(what, sizeof what, "routing %d L %lld cap %lld per_kv %d layout %d",
                     s.routing, (long long)s.L, (long long)s.cap, s.per_kv, layout);
            check_case(&c, 0, NULL, 1e-12, what);
            tu_case_free(&c);
        }
}
END_TEST

/* SPEC I6 with blocks of random sizes (1..9, so that blocks cross chunk
 * boundaries and hold several splits). */
START_TEST(test_random_blocks_equal_prefill_every_setting)
{
    tu_rng g;
    tu_rng_seed(&g, 7);
    for (int layout = 0; layout < 2; layout++)
        for (int i = 0; i < N_SETTINGS; i++) {
            tu_case c;
            char what[96];
            setting s = setting_of(i);
            make_case(&c, 300 + (uint64_t)i, layout, 31, s, i + 1);
            snprintf(what, sizeof what, "routing %d L %lld cap %lld per_kv %d layout %d",
                     s.routing, (long long)s.L, (long long)s.cap, s.per_kv, layout);
            check_case(&c, 1, &g, 1e-12, what);
            tu_case_free(&c);
        }
}
END_TEST

/* SPEC I6: prefill(n) + decode(rest) = prefill(all), for every n. */
START_TEST(test_prefill_n_then_decode_equals_prefill_all_every_n)
{
    static const int picks[] = {0, 4, 13, 17, 22, 31, 38, 47}; /* varied settings */
    const int64_t N = 22;
    int64_t blocks[22];
    for (size_t p = 0; p < sizeof picks / sizeof picks[0]; p++) {
        tu_case c;
        setting s = setting_of(picks[p]);
        make_case(&c, 500 + p, (int)p % 2, N, s, (int)p);
        for (int64_t n = 1; n < N; n++) {
            char what[96];
            snprintf(what, sizeof what, "setting %d, prefill %lld", picks[p], (long long)n);
            check_blocks(&c, blocks, ts_schedule_prefill(N, n, blocks), 1e-12, what);
        }
        tu_case_free(&c);
    }
}
END_TEST

/* The ref path accepts float32 arrays (computing in double): decode and
 * prefill agree to float rounding of the same double results. */
START_TEST(test_decode_float32_inputs_equal_prefill)
{
    for (int i = 0; i < N_SETTINGS; i += 5) {
        tu_case c;
        make_case(&c, 700 + (uint64_t)i, i % 2, 20, setting_of(i), i);
        c.dtype = STILL_F32;
        tu_case_round(&c);
        check_case(&c, 0, NULL, 1e-6, "float32");
        tu_case_free(&c);
    }
}
END_TEST

/* SPEC App. A.1 saliency and App. A.2 phantom sink in decode: the same as
 * the prefill with --compat authors rules (SPEC App. A, last paragraph). */
START_TEST(test_authors_saliency_and_phantom_sink_decode_equals_prefill)
{
    tu_rng g;
    tu_rng_seed(&g, 11);
    for (int i = 0; i < N_SETTINGS; i += 3) {
        tu_case c;
        make_case(&c, 900 + (uint64_t)i, i % 2, 27, setting_of(i), i);
        c.cfg.saliency = STILL_SALIENCY_AUTHORS;
        c.cfg.window = c.cfg.chunk; /* App. A.1: l = C = w */
        c.cfg.phantom_sink = 1;
        check_case(&c, i % 2, &g, 1e-12, "authors");
        tu_case_free(&c);
    }
}
END_TEST

/* The branches of query head h of batch b after P tokens equal the model's
 * routing of query P-1 (testutil.c, SPEC §5-6): cache ∪ exact raw = E,
 * and every other token is folded; counts add up to P. */
static void check_census(const still_state *st, const tu_case *c, int64_t P,
                         const double *sigma, const uint8_t *sel)
{
    const still_shape *s = &c->shape;
    const int64_t N = s->seq_len;
    uint8_t *exact = tu_alloc((size_t)N), *mine = tu_alloc((size_t)N);
    int64_t *pos = tu_alloc((size_t)N * sizeof *pos);
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t h = 0; h < s->heads_q; h++) {
            const int64_t row = b * s->heads_q + h;
            still__census k;
            ck_assert_int_eq(still__state_census(st, b, h, &k, pos), STILL_OK);
            ck_assert_int_eq(k.cached + k.raw + k.folded, P);
            ck_assert_int_eq(k.raw_first, P - k.raw);
            memset(mine, 0, (size_t)N);
            for (int64_t i = 0; i < k.cached; i++) {
                ck_assert(pos[i] >= 0 && pos[i] < k.raw_first);
                ck_assert_msg(!mine[pos[i]], "token %lld cached twice", (long long)pos[i]);
                mine[pos[i]] = 1;
            }
            for (int64_t j = k.raw_first; j < P && k.raw_exact; j++)
                mine[j] = 1;
            if (P == 0)
                continue;
            tu_model_route(c->cfg.routing, c->cfg.chunk, c->cfg.local, tu_eff_w(&c->cfg),
                           c->cfg.max_sel, sigma + row * N, sel + row * N, P - 1, exact);
            int64_t linear = 0;
            for (int64_t j = 0; j < P; j++) {
                ck_assert_msg(mine[j] == exact[j], "P %lld head %lld token %lld: %d vs %d",
                              (long long)P, (long long)row, (long long)j, mine[j], exact[j]);
                linear += !exact[j];
            }
            /* the linear set: folded tokens, plus L = 0's raw current chunk */
            ck_assert_int_eq(linear, k.folded + (k.raw - k.raw_exact));
        }
    free(exact);
    free(mine);
    free(pos);
}

/* SPEC §5: every token is in exactly one branch after any sequence of
 * appends, and the branches are the prefill's routing. */
START_TEST(test_every_token_in_exactly_one_branch)
{
    tu_rng g;
    tu_rng_seed(&g, 13);
    for (int i = 0; i < N_SETTINGS; i++) {
        tu_case c;
        const int64_t N = 41;
        int64_t blocks[41];
        make_case(&c, 1100 + (uint64_t)i, i % 2, N, setting_of(i), i);
        double *sigma = tu_dalloc(count_sigma(&c));
        uint8_t *sel = tu_alloc((size_t)count_sigma(&c));
        prefill(&c, NULL, sigma, sel);
        still_state *st;
        ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, c.use_params ? &c.params : NULL,
                                            STILL_PATH_REF, &st),
                         STILL_OK);
        int nb = ts_schedule_random(&g, N, 6, blocks);
        int64_t P = 0;
        check_census(st, &c, 0, sigma, sel);
        for (int j = 0; j < nb; j++) {
            ck_assert_int_eq(ts_append(st, &c, P, blocks[j], NULL, NULL), STILL_OK);
            P += blocks[j];
            check_census(st, &c, P, sigma, sel);
        }
        still_state_destroy(st);
        free(sigma);
        free(sel);
        tu_case_free(&c);
    }
}
END_TEST

/* SPEC §5, §7: with max_sel the state's bytes stop growing; without it
 * they grow with the selected cache. */
START_TEST(test_state_bytes_stop_growing_with_cap)
{
    for (int capped = 0; capped < 2; capped++) {
        tu_case c;
        setting s = {STILL_ROUTING_SALIENCY, 2, capped ? 6 : 0, 0};
        make_case(&c, 1300, STILL_LAYOUT_BHND, 400, s, 0);
        still_state *st;
        size_t bytes, at_100 = 0, before;
        ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, STILL_PATH_REF, &st),
                         STILL_OK);
        ck_assert_int_eq(still_state_bytes(st, &before), STILL_OK);
        for (int64_t t = 0; t < 400; t++) {
            ck_assert_int_eq(ts_append(st, &c, t, 1, NULL, NULL), STILL_OK);
            ck_assert_int_eq(still_state_bytes(st, &bytes), STILL_OK);
            if (t == 99)
                at_100 = bytes;
            if (capped && t >= 99)
                ck_assert_msg(bytes == at_100, "t %lld: %zu bytes, %zu at t = 99",
                              (long long)t, bytes, at_100);
        }
        int64_t P;
        ck_assert_int_eq(still_state_position(st, &P), STILL_OK);
        ck_assert_int_eq(P, 400);
        if (!capped) /* 400/4 chunks × 2 selected, 8 doubles each at least */
            ck_assert_msg(bytes >= before + 190 * (4 + 3) * 8 * 4, "uncapped: %zu vs %zu",
                          bytes, before);
        still_state_destroy(st);
        tu_case_free(&c);
    }
}
END_TEST

/* An append without an output array advances the state exactly as one
 * with it: the later outputs are the prefill's. */
START_TEST(test_append_without_output_advances_state)
{
    tu_case c;
    make_case(&c, 1500, STILL_LAYOUT_BNHD, 30, setting_of(12), 1);
    int64_t no = count_o(&c), N = 30, dv = c.shape.dim_v;
    double *o_ref = tu_dalloc(no), *o_dec = tu_dalloc(no);
    prefill(&c, o_ref, NULL, NULL);
    still_state *st;
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, &c.params, STILL_PATH_REF, &st),
                     STILL_OK);
    ck_assert_int_eq(ts_append(st, &c, 0, 17, NULL, NULL), STILL_OK);
    for (int64_t t = 17; t < N; t++)
        ck_assert_int_eq(ts_append(st, &c, t, 1, o_dec, NULL), STILL_OK);
    for (int64_t bh = 0; bh < 8; bh++)
        TU_ASSERT_CLOSE(o_dec + (bh * N + 17) * dv, o_ref + (bh * N + 17) * dv, 13 * dv,
                        1e-12, "after an output-free prefill");
    still_state_destroy(st);
    free(o_ref);
    free(o_dec);
    tu_case_free(&c);
}
END_TEST

/* The parameters are copied at create: the caller's arrays may change. */
START_TEST(test_params_are_copied_at_create)
{
    tu_case c;
    make_case(&c, 1700, STILL_LAYOUT_BHND, 18, setting_of(4), 1);
    int64_t no = count_o(&c), H = c.shape.heads_q, f = 3, d = c.shape.dim_qk;
    double *o_ref = tu_dalloc(no), *o_dec = tu_dalloc(no);
    prefill(&c, o_ref, NULL, NULL);
    still_state *st;
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, &c.params, STILL_PATH_REF, &st),
                     STILL_OK);
    double *W = (double *)c.params.fq.W, *saved = tu_dalloc(H * f * d);
    memcpy(saved, W, (size_t)(H * f * d) * sizeof *W);
    for (int64_t i = 0; i < H * f * d; i++)
        W[i] = 1e6; /* the caller reuses its arrays */
    ck_assert_int_eq(ts_append(st, &c, 0, 18, o_dec, NULL), STILL_OK);
    TU_ASSERT_CLOSE(o_dec, o_ref, no, 1e-12, "params copied");
    memcpy(W, saved, (size_t)(H * f * d) * sizeof *W);
    still_state_destroy(st);
    free(saved);
    free(o_ref);
    free(o_dec);
    tu_case_free(&c);
}
END_TEST

/* Every error is a code, and a refused append leaves the state as it was:
 * continuing after it gives the prefill's outputs. */
START_TEST(test_errors_are_codes_and_leave_state_unchanged)
{
    tu_case c;
    make_case(&c, 1900, STILL_LAYOUT_BHND, 20, setting_of(13), 0);
    int64_t no = count_o(&c);
    double *o_ref = tu_dalloc(no), *o_dec = tu_dalloc(no);
    still_state *st = (still_state *)&c; /* must be reset to NULL on failure */
    still_config bad = c.cfg;
    still_shape shape = c.shape;

    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, STILL_PATH_REF, NULL),
                     STILL_E_NULL);
    ck_assert_int_eq(still_state_create(&c.cfg, NULL, NULL, STILL_PATH_REF, &st), STILL_E_NULL);
    ck_assert_ptr_null(st);
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, 7, &st), STILL_E_CONFIG);
    bad.chunk = 0;
    ck_assert_int_eq(still_state_create(&bad, &c.shape, NULL, STILL_PATH_REF, &st),
                     STILL_E_CONFIG);
    shape.heads_kv = 3;
    ck_assert_int_eq(still_state_create(&c.cfg, &shape, NULL, STILL_PATH_REF, &st),
                     STILL_E_SHAPE);
    still_params p;
    double W[4 * 4 * 4];
    still_params_default(&p);
    for (int i = 0; i < 64; i++)
        W[i] = i == 17 ? NAN : 0.5;
    p.fq.W = W;
    p.fq.f = 4;
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, &p, STILL_PATH_REF, &st),
                     STILL_E_NONFINITE);
    ck_assert_ptr_null(st);
    still_state_destroy(NULL); /* NULL-safe */

    prefill(&c, o_ref, NULL, NULL);
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, STILL_PATH_REF, &st), STILL_OK);
    ck_assert_int_eq(ts_append(st, &c, 0, 6, o_dec, NULL), STILL_OK);
    ck_assert_int_eq(still_state_append(NULL, 1, NULL), STILL_E_NULL);
    ck_assert_int_eq(still_state_append(st, -1, NULL), STILL_E_SHAPE);
    ck_assert_int_eq(still_state_append(st, 0, NULL), STILL_OK);
    ck_assert_int_eq(still_state_append(st, 1, NULL), STILL_E_NULL);
    still_tensors t;
    uint8_t sel[8];
    double buf[64] = {0};
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = t.k = t.v = buf;
    t.o = buf;
    t.selected = sel;
    ck_assert_int_eq(still_state_append(st, 1, &t), STILL_E_UNSUPPORTED);
    t.selected = NULL;
    t.selection_in = sel;
    ck_assert_int_eq(still_state_append(st, 1, &t), STILL_E_UNSUPPORTED);
    t.selection_in = NULL;
    t.dtype = 5;
    ck_assert_int_eq(still_state_append(st, 1, &t), STILL_E_DTYPE);
    t.dtype = STILL_F64;
    t.q = NULL;
    ck_assert_int_eq(still_state_append(st, 1, &t), STILL_E_NULL);
    /* a NaN in the block: refused before any work */
    double saved = c.q[tu_bhnd(4, 20, 4, 1, 2, 7, 1)];
    c.q[tu_bhnd(4, 20, 4, 1, 2, 7, 1)] = NAN;
    ck_assert_int_eq(ts_append(st, &c, 6, 3, o_dec, NULL), STILL_E_NONFINITE);
    c.q[tu_bhnd(4, 20, 4, 1, 2, 7, 1)] = saved;
    int64_t P;
    size_t bytes;
    ck_assert_int_eq(still_state_position(st, &P), STILL_OK);
    ck_assert_int_eq(P, 6);
    ck_assert_int_eq(still_state_position(NULL, &P), STILL_E_NULL);
    ck_assert_int_eq(still_state_position(st, NULL), STILL_E_NULL);
    ck_assert_int_eq(still_state_bytes(NULL, &bytes), STILL_E_NULL);
    ck_assert_int_eq(still_state_bytes(st, NULL), STILL_E_NULL);
    ck_assert_int_eq(ts_append(st, &c, 6, 14, o_dec, NULL), STILL_OK);
    TU_ASSERT_CLOSE(o_dec, o_ref, no, 1e-12, "after refused appends");
    still_state_destroy(st);
    free(o_ref);
    free(o_dec);
    tu_case_free(&c);
}
END_TEST

/* SPEC §5 ties: with every key of a head equal and every query equal, all
 * sigma of full windows tie; the selection takes the smaller positions and
 * the cap evicts the older -- decode, prefill and the model agree. */
START_TEST(test_ties_select_smaller_positions_and_evict_older)
{
    for (int per_kv = 0; per_kv < 2; per_kv++) {
        tu_case c;
        const int64_t N = 37, d = 4;
        int64_t blocks[37];
        setting s = {STILL_ROUTING_SALIENCY, 1, 5, per_kv};
        make_case(&c, 2100, STILL_LAYOUT_BHND, N, s, 0);
        for (int64_t bh = 0; bh < 2 * 2; bh++) /* k rows of a kv head equal */
            for (int64_t t = 1; t < N; t++)
                memcpy(c.k + (bh * N + t) * d, c.k + bh * N * d, (size_t)d * sizeof(double));
        for (int64_t bh = 0; bh < 2 * 4; bh++)
            for (int64_t t = 1; t < N; t++)
                memcpy(c.q + (bh * N + t) * d, c.q + bh * N * d, (size_t)d * sizeof(double));
        check_blocks(&c, blocks, ts_schedule_prefill(N, 0, blocks), 1e-12, "ties");
        double *sigma = tu_dalloc(count_sigma(&c));
        uint8_t *sel = tu_alloc((size_t)count_sigma(&c));
        prefill(&c, NULL, sigma, sel);
        ck_assert(sigma[10] == sigma[11] && sigma[11] == sigma[30]); /* ties indeed */
        still_state *st;
        ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, STILL_PATH_REF, &st),
                         STILL_OK);
        for (int64_t t = 0; t < N; t++) {
            ck_assert_int_eq(ts_append(st, &c, t, 1, NULL, NULL), STILL_OK);
            check_census(st, &c, t + 1, sigma, sel);
        }
        still_state_destroy(st);
        free(sigma);
        free(sel);
        tu_case_free(&c);
    }
}
END_TEST

static Suite *state_suite(void)
{
    Suite *s = suite_create("state");
    TCase *tc = tcase_create("ref");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_decode_by_one_equals_prefill_every_setting);
    tcase_add_test(tc, test_random_blocks_equal_prefill_every_setting);
    tcase_add_test(tc, test_prefill_n_then_decode_equals_prefill_all_every_n);
    tcase_add_test(tc, test_decode_float32_inputs_equal_prefill);
    tcase_add_test(tc, test_authors_saliency_and_phantom_sink_decode_equals_prefill);
    tcase_add_test(tc, test_every_token_in_exactly_one_branch);
    tcase_add_test(tc, test_ties_select_smaller_positions_and_evict_older);
    tcase_add_test(tc, test_state_bytes_stop_growing_with_cap);
    tcase_add_test(tc, test_append_without_output_advances_state);
    tcase_add_test(tc, test_params_are_copied_at_create);
    tcase_add_test(tc, test_errors_are_codes_and_leave_state_unchanged);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(state_suite());
}
