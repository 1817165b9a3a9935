/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_ref_saliency.c -- the self-saliency score (SPEC §4) and the per-chunk
 * top-k selection (SPEC §5) of the ref path. */
#include "../ref/ref.h"
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static still__resolved resolved(int64_t d, double scale, int64_t C, int64_t k, int64_t w)
{
    still_config cfg;
    still_config_default(&cfg);
    cfg.scale = scale;
    cfg.chunk = C;
    cfg.topk = k;
    cfg.window = w;
    still_shape s = {1, 1, 1, 4 * C, d, 1, STILL_LAYOUT_BHND};
    still__resolved r;
    int rc = still__resolve(&cfg, &s, NULL, &r);
    ck_assert_msg(rc == STILL_OK, "still__resolve: %s", still_strerror(rc));
    return r;
}

/* Runs a case, returning sigma and selected [B][Hq][N] (caller frees). */
static void run_scores(const tu_case *c, double **sigma, uint8_t **sel)
{
    const still_shape *s = &c->shape;
    int64_t ns = s->batch * s->heads_q * s->seq_len;
    double *o = tu_dalloc(ns * s->dim_v);
    *sigma = tu_dalloc(ns);
    *sel = tu_alloc((size_t)ns);
    int rc = tu_run_ref(c, o, *sigma, *sel);
    ck_assert_msg(rc == STILL_OK, "still_ref_forward: %s", still_strerror(rc));
    free(o);
}

/* ---- the score of one window ---------------------------------------------- */
START_TEST(test_window_of_one_token_is_inf)
{
    still__resolved r = resolved(3, 0.0, 4, 1, 0);
    double q[3] = {0.3, -1.0, 2.0}, k[3] = {1.0, 1.0, -0.5};
    double s = still__ref_saliency_window(&r, q, k, 1);
    ck_assert_msg(isinf(s) && s > 0, "sigma of t = 0 is %g", s);
}
END_TEST

START_TEST(test_token0_sigma_is_inf_in_forward)
{
    tu_rng g;
    tu_rng_seed(&g, 201);
    for (int rep = 0; rep < 6; rep++) {
        still_shape s = {tu_int(&g, 1, 2), 4, rep % 2 ? 2 : 4, tu_int(&g, 1, 40), 3, 2, rep % 2};
        tu_case c;
        tu_case_init(&c, &g, &s, 1.0, 0);
        c.cfg.chunk = (int64_t[]){1, 3, 8, 16, 4, 2}[rep];
        c.cfg.topk = 1;
        c.cfg.select_per_kv = rep >= 3;
        double *sigma;
        uint8_t *sel;
        run_scores(&c, &sigma, &sel);
        for (int64_t bh = 0; bh < s.batch * s.heads_q; bh++) {
            double s0 = sigma[bh * s.seq_len];
            ck_assert_msg(isinf(s0) && s0 > 0, "sigma_0 of row %lld is %g", (long long)bh, s0);
            for (int64_t t = 1; t < s.seq_len; t++)
                ck_assert_msg(isfinite(sigma[bh * s.seq_len + t]), "sigma_%lld not finite",
                              (long long)t);
            /* the attention sink is selected when its chunk is split */
            if (s.seq_len >= c.cfg.chunk)
                ck_assert_int_eq(sel[bh * s.seq_len], 1);
        }
        free(sigma);
        free(sel);
        tu_case_free(&c);
    }
}
END_TEST

/* SPEC §4: sigma is the KL sum of p (with self) against p~ (without self),
 * the two distributions built separately here. */
START_TEST(test_window_score_equals_kl_of_two_distributions)
{
    tu_rng g;
    tu_rng_seed(&g, 202);
    for (int rep = 0; rep < 200; rep++) {
        int64_t d = tu_int(&g, 1, 8), n = tu_int(&g, 2, 24);
        double scale = rep % 3 ? 0.0 : tu_uniform(&g, -2.0, 2.0);
        if (scale == 0.0 && rep % 3 == 0)
            scale = 0.5;
        still__resolved r = resolved(d, scale, 4, 1, 0);
        double q[8], keys[24 * 8];
        tu_fill_normal(&g, q, d, tu_uniform(&g, 0.2, 3.0));
        tu_fill_normal(&g, keys, n * d, 1.0);
        double got = still__ref_saliency_window(&r, q, keys, n);
        double want = tu_model_saliency(r.scale, d, q, keys, n);
        ck_assert_msg(fabs(got - want) <= 1e-12 * (1.0 + fabs(want)), "n %lld: %.17g vs %.17g",
                      (long long)n, got, want);
    }
}
END_TEST

/* SPEC §4: apart from the smoothing, sigma = p log(p/eps) + (1-p) log(1-p)
 * with p the self-probability. */
START_TEST(test_window_score_closed_form_in_self_probability)
{
    tu_rng g;
    tu_rng_seed(&g, 203);
    for (int rep = 0; rep < 100; rep++) {
        int64_t d = tu_int(&g, 1, 6), n = tu_int(&g, 2, 16);
        still__resolved r = resolved(d, 0.0, 4, 1, 0);
        double q[6], keys[16 * 6], s[16];
        tu_fill_normal(&g, q, d, 1.5);
        tu_fill_normal(&g, keys, n * d, 1.0);
        double mx = -INFINITY, z = 0.0;
        for (int64_t j = 0; j < n; j++) {
            s[j] = 0.0;
            for (int64_t i = 0; i < d; i++)
                s[j] += q[i] * keys[j * d + i];
            s[j] *= r.scale;
            mx = fmax(mx, s[j]);
        }
        for (int64_t j = 0; j < n; j++)
            z += exp(s[j] - mx);
        double p = exp(s[n - 1] - mx) / z;
        double want = p * log(p / 1e-8) + (1.0 - p) * log1p(-p);
        double got = still__ref_saliency_window(&r, q, keys, n);
        ck_assert_msg(fabs(got - want) <= 1e-6 * (1.0 + fabs(want)), "p %.6g: %.12g vs %.12g", p,
                      got, want);
    }
}
END_TEST

/* SPEC §4: sigma ranks tokens by their self-attention probability p_t:
 * raising the self logit (the others fixed) raises sigma. */
START_TEST(test_sigma_grows_with_self_probability)
{
    tu_rng g;
    tu_rng_seed(&g, 204);
    for (int rep = 0; rep < 10; rep++) {
        int64_t n = tu_int(&g, 2, 20);
        still__resolved r = resolved(1, 1.0, 4, 1, 0); /* d = 1, scale 1: logit = k_j */
        double q[1] = {1.0}, keys[20];
        tu_fill_normal(&g, keys, n - 1, rep % 2 ? 0.0 : 1.0);
        double prev = -INFINITY;
        for (double x = -8.0; x <= 12.0; x += 0.25) {
            keys[n - 1] = x;
            double s = still__ref_saliency_window(&r, q, keys, n);
            ck_assert_msg(s > prev, "n %lld: sigma(%g) = %.17g not above %.17g", (long long)n, x, s,
                          prev);
            prev = s;
        }
    }
    /* and with the same logit set, permuting the others does not matter */
    still__resolved r = resolved(1, 1.0, 4, 1, 0);
    double q[1] = {1.0}, k1[4] = {0.1, -0.7, 2.0, 0.5}, k2[4] = {2.0, 0.1, -0.7, 0.5};
    double s1 = still__ref_saliency_window(&r, q, k1, 4), s2 = still__ref_saliency_window(&r, q, k2, 4);
    ck_assert_msg(fabs(s1 - s2) <= 1e-12 * (1 + fabs(s1)), "%.17g vs %.17g", s1, s2);
}
END_TEST

/* ---- the score in the forward ------------------------------------------- */
START_TEST(test_forward_sigma_matches_model)
{
    tu_rng g;
    tu_rng_seed(&g, 205);
    const int64_t chunks[] = {1, 3, 8, 16};
    for (int rep = 0; rep < 16; rep++) {
        int64_t Hk = tu_int(&g, 1, 2);
        still_shape s = {tu_int(&g, 1, 2), Hk * tu_int(&g, 1, 2), Hk, tu_int(&g, 1, 60),
                         tu_int(&g, 1, 6), 2, (int)tu_int(&g, 0, 1)};
        tu_case c;
        tu_case_init(&c, &g, &s, 1.2, 0);
        c.cfg.chunk = chunks[rep % 4];
        c.cfg.topk = tu_int(&g, 0, c.cfg.chunk);
        c.cfg.window = rep % 3 == 0 ? 0 : tu_int(&g, 2, 20); /* w below, at and above C */
        c.cfg.scale = rep % 5 == 0 ? 0.8 : 0.0;
        c.dtype = rep % 4 == 3 ? STILL_F32 : STILL_F64;
        tu_case_round(&c);
        double *sigma, *want = tu_dalloc(s.batch * s.heads_q * s.seq_len);
        uint8_t *sel;
        run_scores(&c, &sigma, &sel);
        double *o = tu_dalloc(s.batch * s.heads_q * s.seq_len * s.dim_v);
        tu_model_forward(&c, o, want, NULL);
        for (int64_t i = 0; i < s.batch * s.heads_q * s.seq_len; i++)
            ck_assert_msg(sigma[i] == want[i] || fabs(sigma[i] - want[i]) <= 1e-11 * (1 + fabs(want[i])),
                          "rep %d C %lld w %lld: sigma[%lld] %.17g vs %.17g", rep,
                          (long long)c.cfg.chunk, (long long)c.cfg.window, (long long)i, sigma[i],
                          want[i]);
        free(sigma);
        free(want);
        free(sel);
        free(o);
        tu_case_free(&c);
    }
}
END_TEST

/* SPEC §4: the window W_t = {t-w+1..t} runs across chunk boundaries: a key
 * changes sigma exactly for the w queries whose window holds it, and a
 * query changes only its own sigma. */
START_TEST(test_sigma_window_crosses_chunks_and_is_local)
{
    tu_rng g;
    tu_rng_seed(&g, 206);
    const int64_t cw[][2] = {{4, 6}, {8, 3}, {3, 3}, {5, 12}, {1, 2}};
    for (size_t ci = 0; ci < 5; ci++) {
        still_shape s = {1, 1, 1, 30, 3, 1, STILL_LAYOUT_BHND};
        tu_case c;
        tu_case_init(&c, &g, &s, 1.0, 0);
        c.cfg.chunk = cw[ci][0];
        c.cfg.topk = 1;
        c.cfg.window = cw[ci][1];
        int64_t w = cw[ci][1], N = 30;
        double *s0, *s1;
        uint8_t *e0, *e1;
        run_scores(&c, &s0, &e0);
        int64_t j0 = 13;
        c.k[j0 * 3 + 1] += 0.75;
        run_scores(&c, &s1, &e1);
        for (int64_t t = 0; t < N; t++) {
            int in_window = t >= j0 && t <= j0 + w - 1;
            if (in_window)
                ck_assert_msg(s0[t] != s1[t], "C %lld w %lld: key %lld is in W_%lld but sigma unchanged",
                              (long long)c.cfg.chunk, (long long)w, (long long)j0, (long long)t);
            else
                ck_assert_msg(s0[t] == s1[t], "C %lld w %lld: key %lld outside W_%lld changed sigma",
                              (long long)c.cfg.chunk, (long long)w, (long long)j0, (long long)t);
        }
        /* a query changes only its own sigma */
        double *s2;
        uint8_t *e2;
        c.q[20 * 3] -= 0.5;
        run_scores(&c, &s2, &e2);
        for (int64_t t = 0; t < N; t++) {
            if (t == 20)
                ck_assert_msg(s2[t] != s1[t], "q_20 changed but sigma_20 did not");
            else
                ck_assert_msg(s2[t] == s1[t], "q_20 changed sigma_%lld", (long long)t);
        }
        free(s1);
        free(e1);
        s1 = s2;
        e1 = e2;
        /* against the keys gathered by hand for a window straddling a chunk
         * boundary */
        still__resolved r = resolved(3, 0.0, c.cfg.chunk, 1, w);
        int64_t t = c.cfg.chunk * 2 + 1 < N ? c.cfg.chunk * 2 + 1 : N - 1;
        int64_t a = t - w + 1 > 0 ? t - w + 1 : 0;
        double want = tu_model_saliency(r.scale, 3, c.q + t * 3, c.k + a * 3, t - a + 1);
        ck_assert_msg(fabs(s1[t] - want) <= 1e-12 * (1 + fabs(want)), "t %lld: %.17g vs %.17g",
                      (long long)t, s1[t], want);
        free(s0);
        free(e0);
        free(s1);
        free(e1);
        tu_case_free(&c);
    }
}
END_TEST

/* sigma and the selection come from q and k alone (SPEC §4-5): v, the gate
 * and the feature maps do not move them. */
START_TEST(test_sigma_independent_of_v_gate_and_maps)
{
    tu_rng g;
    tu_rng_seed(&g, 207);
    still_shape s = {2, 2, 1, 33, 4, 3, STILL_LAYOUT_BHND};
    tu_case c;
    tu_case_init(&c, &g, &s, 1.0, 1);
    c.cfg.chunk = 5;
    c.cfg.topk = 2;
    double *s0, *s1;
    uint8_t *e0, *e1;
    run_scores(&c, &s0, &e0);
    tu_fill_normal(&g, c.v, 2 * 33 * 3, 5.0);
    tu_fill(&g, c.gate, 2 * 2 * 33 * 3, 0.0, 1.0);
    tu_case_random_params(&c, &g, 3, 1, 1, 0, 0);
    c.cfg.act = STILL_ACT_RELU;
    run_scores(&c, &s1, &e1);
    ck_assert(memcmp(s0, s1, 2 * 2 * 33 * sizeof(double)) == 0);
    ck_assert(memcmp(e0, e1, 2 * 2 * 33) == 0);
    free(s0);
    free(s1);
    free(e0);
    free(e1);
    tu_case_free(&c);
}
END_TEST

/* ---- selection (SPEC §5) -------------------------------------------------- */
START_TEST(test_select_topk_per_complete_chunk)
{
    tu_rng g;
    tu_rng_seed(&g, 208);
    const int64_t chunks[] = {1, 3, 8, 16};
    for (int rep = 0; rep < 200; rep++) {
        int64_t C = chunks[rep % 4], k = tu_int(&g, 0, C), N = tu_int(&g, 1, 70);
        still__resolved r = resolved(2, 0.0, C, k, 0);
        double sigma[70];
        uint8_t got[70], want[70];
        for (int64_t j = 0; j < N; j++) /* few distinct values: many ties */
            sigma[j] = rep % 2 ? (double)tu_int(&g, 0, 3) : tu_uniform(&g, 0.0, 5.0);
        sigma[0] = INFINITY;
        memset(got, 9, sizeof got);
        still__ref_select(&r, sigma, N, got);
        tu_model_select(sigma, N, C, k, want);
        for (int64_t j = 0; j < N; j++)
            ck_assert_msg(got[j] == want[j], "C %lld k %lld N %lld: sel[%lld] = %d, want %d",
                          (long long)C, (long long)k, (long long)N, (long long)j, got[j], want[j]);
    }
}
END_TEST

START_TEST(test_select_tie_goes_to_smaller_position)
{
    still__resolved r = resolved(2, 0.0, 4, 2, 0);
    const double sigma[10] = {1, 1, 1, 1, 2, 1, 2, 1, 5, 5};
    uint8_t sel[10];
    still__ref_select(&r, sigma, 10, sel);
    const uint8_t want[10] = {1, 1, 0, 0, 1, 0, 1, 0, 0, 0};
    for (int j = 0; j < 10; j++)
        ck_assert_msg(sel[j] == want[j], "sel[%d] = %d", j, sel[j]);
    r = resolved(2, 0.0, 4, 1, 0);
    const double s2[8] = {0.5, 3, 3, 3, 7, 1, 7, 7};
    still__ref_select(&r, s2, 8, sel);
    const uint8_t want2[8] = {0, 1, 0, 0, 1, 0, 0, 0};
    for (int j = 0; j < 8; j++)
        ck_assert_msg(sel[j] == want2[j], "k=1: sel[%d] = %d", j, sel[j]);
}
END_TEST

/* With q = 0 every logit is 0, so every full window gives the same sigma
 * and shorter windows (the first tokens) larger ones: each complete chunk
 * selects its first k positions. */
START_TEST(test_forward_equal_scores_select_first_positions)
{
    tu_rng g;
    tu_rng_seed(&g, 209);
    const int64_t ckw[][3] = {{8, 3, 0}, {4, 1, 3}, {16, 5, 7}, {3, 2, 9}, {1, 1, 0}};
    for (size_t ci = 0; ci < 5; ci++) {
        still_shape s = {1, 2, 1, 45, 3, 1, STILL_LAYOUT_BHND};
        tu_case c;
        tu_case_init(&c, &g, &s, 1.0, 0);
        memset(c.q, 0, 2 * 45 * 3 * sizeof(double));
        c.cfg.chunk = ckw[ci][0];
        c.cfg.topk = ckw[ci][1];
        c.cfg.window = ckw[ci][2];
        double *sigma;
        uint8_t *sel;
        run_scores(&c, &sigma, &sel);
        int64_t C = c.cfg.chunk, k = c.cfg.topk;
        for (int64_t h = 0; h < 2; h++)
            for (int64_t j = 0; j < 45; j++) {
                int want = j < (45 / C) * C && j % C < k;
                ck_assert_msg(sel[h * 45 + j] == want, "C %lld k %lld: sel[%lld] = %d",
                              (long long)C, (long long)k, (long long)j, sel[h * 45 + j]);
            }
        free(sigma);
        free(sel);
        tu_case_free(&c);
    }
}
END_TEST

/* SPEC §5: exactly k ones in every complete chunk, none in the incomplete
 * last chunk, and the selection is the model's. */
START_TEST(test_forward_selection_k_per_chunk_none_in_incomplete)
{
    tu_rng g;
    tu_rng_seed(&g, 210);
    const int64_t chunks[] = {1, 3, 8, 16};
    for (int rep = 0; rep < 16; rep++) {
        int64_t C = chunks[rep % 4];
        still_shape s = {2, 2, 1, tu_int(&g, 1, 75), 3, 2, (int)(rep % 2)};
        tu_case c;
        tu_case_init(&c, &g, &s, 1.5, 0);
        c.cfg.chunk = C;
        c.cfg.topk = tu_int(&g, 0, C);
        c.cfg.routing = rep % 5 == 1 ? STILL_ROUTING_ALL
                        : rep % 5 == 2 ? STILL_ROUTING_NONE
                                       : STILL_ROUTING_SALIENCY;
        int64_t k = tu_eff_k(&c.cfg), N = s.seq_len;
        double *sigma;
        uint8_t *sel, *want = tu_alloc((size_t)(4 * N));
        double *o = tu_dalloc(4 * N * 2);
        run_scores(&c, &sigma, &sel);
        tu_model_forward(&c, o, NULL, want);
        for (int64_t bh = 0; bh < 4; bh++) {
            for (int64_t c0 = 0; c0 < N; c0 += C) {
                int64_t count = 0;
                for (int64_t j = c0; j < c0 + C && j < N; j++)
                    count += sel[bh * N + j];
                ck_assert_int_eq(count, c0 + C <= N ? k : 0);
            }
            for (int64_t j = 0; j < N; j++)
                ck_assert_msg(sel[bh * N + j] == want[bh * N + j], "rep %d: sel[%lld]", rep,
                              (long long)(bh * N + j));
        }
        free(sigma);
        free(sel);
        free(want);
        free(o);
        tu_case_free(&c);
    }
}
END_TEST

/* SPEC §5 per-kv-head option: sigma is the mean over the query heads of the
 * group, and the group shares one selection. */
START_TEST(test_per_kv_sigma_is_group_average_and_selection_shared)
{
    tu_rng g;
    tu_rng_seed(&g, 211);
    for (int rep = 0; rep < 6; rep++) {
        int64_t Hk = 1 + rep % 2, G = 2 + rep % 3, Hq = Hk * G, N = 40;
        still_shape s = {1 + rep % 2, Hq, Hk, N, 4, 2, (int)(rep % 2)};
        tu_case c;
        tu_case_init(&c, &g, &s, 1.3, 0);
        c.cfg.chunk = 8;
        c.cfg.topk = 3;
        double *sq, *sk;
        uint8_t *eq, *ek;
        run_scores(&c, &sq, &eq);
        c.cfg.select_per_kv = 1;
        run_scores(&c, &sk, &ek);
        for (int64_t b = 0; b < s.batch; b++)
            for (int64_t kv = 0; kv < Hk; kv++) {
                double avg[40];
                for (int64_t t = 0; t < N; t++) {
                    avg[t] = 0.0;
                    for (int64_t h = kv * G; h < (kv + 1) * G; h++)
                        avg[t] += sq[(b * Hq + h) * N + t];
                    avg[t] /= (double)G;
                }
                uint8_t want[40];
                tu_model_select(avg, N, 8, 3, want);
                for (int64_t h = kv * G; h < (kv + 1) * G; h++)
                    for (int64_t t = 0; t < N; t++) {
                        double got = sk[(b * Hq + h) * N + t];
                        ck_assert_msg(got == avg[t] || fabs(got - avg[t]) <= 1e-12 * (1 + fabs(avg[t])),
                                      "head %lld t %lld: %.17g vs mean %.17g", (long long)h,
                                      (long long)t, got, avg[t]);
                        ck_assert_int_eq(ek[(b * Hq + h) * N + t], want[t]);
                    }
            }
        free(sq);
        free(sk);
        free(eq);
        free(ek);
        tu_case_free(&c);
    }
}
END_TEST

static Suite *saliency_suite(void)
{
    Suite *s = suite_create("ref_saliency");
    TCase *tc = tcase_create("saliency");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_window_of_one_token_is_inf);
    tcase_add_test(tc, test_token0_sigma_is_inf_in_forward);
    tcase_add_test(tc, test_window_score_equals_kl_of_two_distributions);
    tcase_add_test(tc, test_window_score_closed_form_in_self_probability);
    tcase_add_test(tc, test_sigma_grows_with_self_probability);
    tcase_add_test(tc, test_forward_sigma_matches_model);
    tcase_add_test(tc, test_sigma_window_crosses_chunks_and_is_local);
    tcase_add_test(tc, test_sigma_independent_of_v_gate_and_maps);
    tcase_add_test(tc, test_select_topk_per_complete_chunk);
    tcase_add_test(tc, test_select_tie_goes_to_smaller_position);
    tcase_add_test(tc, test_forward_equal_scores_select_first_positions);
    tcase_add_test(tc, test_forward_selection_k_per_chunk_none_in_incomplete);
    tcase_add_test(tc, test_per_kv_sigma_is_group_average_and_selection_shared);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(saliency_suite());
}
