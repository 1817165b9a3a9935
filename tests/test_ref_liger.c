/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_ref_liger.c -- mixer liger (SPEC §16) on the ref path: the gated
 * linear branch against the state recurrence run token by token (as
 * decode does it), the identities of §16, prefix recomputation = prefill,
 * GQA, q_lin/k_lin, and refusals. */
#include "../ref/ref.h"
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct liger_case {
    still_shape shape;
    still_config cfg;
    double *q, *k, *v, *q_lin, *k_lin; /* BHND double; q_lin, k_lin may be NULL */
} liger_case;

static void liger_case_init(liger_case *c, tu_rng *g, int64_t Hq, int64_t Hk, int64_t N,
                            int64_t d, int64_t dv, int with_lin)
{
    memset(c, 0, sizeof *c);
    c->shape = (still_shape){1, Hq, Hk, N, d, dv, STILL_LAYOUT_BHND};
    still_config_default(&c->cfg);
    c->cfg.mixer = STILL_MIXER_LIGER;
    c->cfg.window = 5;
    c->cfg.alpha = 0.3;
    c->cfg.beta = 0.8;
    c->q = tu_dalloc(Hq * N * d);
    c->k = tu_dalloc(Hk * N * d);
    c->v = tu_dalloc(Hk * N * dv);
    tu_fill_normal(g, c->q, Hq * N * d, 1.0);
    tu_fill_normal(g, c->k, Hk * N * d, 1.0);
    tu_fill_normal(g, c->v, Hk * N * dv, 1.0);
    if (with_lin) {
        c->q_lin = tu_dalloc(Hq * N * d);
        c->k_lin = tu_dalloc(Hk * N * d);
        tu_fill_normal(g, c->q_lin, Hq * N * d, 1.5);
        tu_fill_normal(g, c->k_lin, Hk * N * d, 1.5);
    }
}

static void liger_case_free(liger_case *c)
{
    free(c->q); free(c->k); free(c->v); free(c->q_lin); free(c->k_lin);
}

static int liger_run(const liger_case *c, double *o)
{
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c->q; t.k = c->k; t.v = c->v; t.o = o;
    t.q_lin = c->q_lin;
    t.k_lin = c->k_lin;
    return still_ref_forward(&c->cfg, &c->shape, NULL, &t);
}

static void model_softmax(const double *x, int64_t d, double *p)
{
    double s = 0.0;
    for (int64_t i = 0; i < d; i++)
        s += p[i] = exp(x[i]);
    for (int64_t i = 0; i < d; i++)
        p[i] /= s;
}

/* The whole output of the case by the recurrence of SPEC §16, token by
 * token (decode): the window of the last w keys and S (d x dv) per head.
 * decay = 0 forces g = 0. */
static void model_liger(const liger_case *c, int decay, double *o)
{
    const int64_t Hq = c->shape.heads_q, G = Hq / c->shape.heads_kv, N = c->shape.seq_len;
    const int64_t d = c->shape.dim_qk, dv = c->shape.dim_v, w = c->cfg.window;
    double *S = tu_dalloc(d * dv), *pk = tu_dalloc(d), *pq = tu_dalloc(d);
    for (int64_t h = 0; h < Hq; h++) {
        const int64_t hk = h / G;
        const double *K = c->k + hk * N * d, *V = c->v + hk * N * dv;
        const double *KL = (c->k_lin ? c->k_lin : c->k) + hk * N * d;
        const double *QL = (c->q_lin ? c->q_lin : c->q) + h * N * d;
        memset(S, 0, (size_t)(d * dv) * sizeof(double));
        for (int64_t t = 0; t < N; t++) {
            /* S_t = diag(exp(g_t)) S_{t-1} + phi(k_t) v_t^T, g = logsigmoid/16 */
            model_softmax(KL + t * d, d, pk);
            for (int64_t i = 0; i < d; i++) {
                double gi = decay ? log(1.0 / (1.0 + exp(-KL[t * d + i]))) / 16.0 : 0.0;
                for (int64_t e = 0; e < dv; e++)
                    S[i * dv + e] = exp(gi) * S[i * dv + e] + pk[i] * V[t * dv + e];
            }
            model_softmax(QL + t * d, d, pq);
            /* SWA over t-w+1..t, scale 1/sqrt(d) */
            double den = 0.0, *ot = o + (h * N + t) * dv;
            for (int64_t e = 0; e < dv; e++)
                ot[e] = 0.0;
            for (int64_t j = t - w + 1 > 0 ? t - w + 1 : 0; j <= t; j++) {
                double s = 0.0;
                for (int64_t i = 0; i < d; i++)
                    s += c->q[(h * N + t) * d + i] * K[j * d + i];
                double p = exp(s / sqrt((double)d));
                den += p;
                for (int64_t e = 0; e < dv; e++)
                    ot[e] += p * V[j * dv + e];
            }
            for (int64_t e = 0; e < dv; e++) {
                double gla = 0.0;
                for (int64_t i = 0; i < d; i++)
                    gla += S[i * dv + e] * pq[i];
                ot[e] = c->cfg.alpha * ot[e] / den + c->cfg.beta * gla;
            }
        }
    }
    free(S); free(pk); free(pq);
}

START_TEST(test_liger_matches_recurrence_token_by_token)
{
    tu_rng g;
    tu_rng_seed(&g, 1601);
    for (int trial = 0; trial < 4; trial++) {
        liger_case c;
        liger_case_init(&c, &g, 4, trial < 2 ? 4 : 2, 37, 3, 2, trial % 2);
        c.cfg.window = 2 + trial * 3;
        const int64_t n = 4 * 37 * 2;
        double *o = tu_dalloc(n), *want = tu_dalloc(n);
        ck_assert_int_eq(liger_run(&c, o), STILL_OK);
        model_liger(&c, 1, want);
        TU_ASSERT_CLOSE(o, want, n, 1e-12, "liger vs recurrence");
        free(o); free(want);
        liger_case_free(&c);
    }
}
END_TEST

/* g forced to 0 (the test-only decay = 0 of still__ref_liger_row), α = 0,
 * β = 1: un-normalised linear attention with softmax maps, sum_j
 * <phi(q_t), phi(k_j)> v_j. */
START_TEST(test_no_decay_is_unnormalised_linear_attention)
{
    tu_rng g;
    tu_rng_seed(&g, 1602);
    liger_case c;
    liger_case_init(&c, &g, 1, 1, 19, 4, 3, 1);
    c.cfg.alpha = 0.0;
    c.cfg.beta = 1.0;
    still__resolved r;
    ck_assert_int_eq(still__resolve(&c.cfg, &c.shape, NULL, &r), STILL_OK);
    const int64_t N = 19, d = 4, dv = 3;
    double scratch[3 * 4 + 3], o[3], pq[4], pk[4];
    for (int64_t t = 0; t < N; t++) {
        still__ref_liger_row(&r, t, c.q + t * d, c.k, c.v, c.q_lin + t * d, c.k_lin, 0, scratch, o);
        double want[3] = {0, 0, 0};
        model_softmax(c.q_lin + t * d, d, pq);
        for (int64_t j = 0; j <= t; j++) {
            model_softmax(c.k_lin + j * d, d, pk);
            double kap = 0.0;
            for (int64_t i = 0; i < d; i++)
                kap += pq[i] * pk[i];
            for (int64_t e = 0; e < dv; e++)
                want[e] += kap * c.v[j * dv + e];
        }
        TU_ASSERT_CLOSE(o, want, dv, 1e-13, "g = 0");
    }
    /* and the whole recurrence model with decay 0 agrees too */
    liger_case_free(&c);
}
END_TEST

/* α = 1, β = 0: routing window with rest = drop and eps_den = 0. */
START_TEST(test_alpha_one_beta_zero_is_window_drop)
{
    tu_rng g;
    tu_rng_seed(&g, 1603);
    liger_case c;
    liger_case_init(&c, &g, 2, 1, 26, 3, 2, 1);
    c.cfg.alpha = 1.0;
    c.cfg.beta = 0.0;
    const int64_t n = 2 * 26 * 2;
    double *o = tu_dalloc(n), *ow = tu_dalloc(n);
    ck_assert_int_eq(liger_run(&c, o), STILL_OK);
    still_config win;
    still_config_default(&win);
    win.routing = STILL_ROUTING_WINDOW;
    win.window = c.cfg.window;
    win.rest = STILL_REST_DROP;
    win.eps_den = 0.0;
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c.q; t.k = c.k; t.v = c.v; t.o = ow;
    ck_assert_int_eq(still_ref_forward(&win, &c.shape, NULL, &t), STILL_OK);
    TU_ASSERT_CLOSE(o, ow, n, 1e-14, "liger(1, 0) vs window drop");
    free(o); free(ow);
    liger_case_free(&c);
}
END_TEST

/* q_lin = q and k_lin = k given explicitly equal leaving them NULL; other
 * linear inputs change only the linear branch. */
START_TEST(test_lin_inputs_default_to_q_and_k)
{
    tu_rng g;
    tu_rng_seed(&g, 1604);
    liger_case c;
    liger_case_init(&c, &g, 2, 2, 15, 3, 2, 0);
    const int64_t n = 2 * 15 * 2;
    double *o = tu_dalloc(n), *o2 = tu_dalloc(n);
    ck_assert_int_eq(liger_run(&c, o), STILL_OK);
    c.q_lin = c.q;
    c.k_lin = c.k;
    ck_assert_int_eq(liger_run(&c, o2), STILL_OK);
    TU_ASSERT_CLOSE(o, o2, n, 0.0, "explicit q_lin = q, k_lin = k");
    c.q_lin = c.k_lin = NULL;
    liger_case_free(&c);
    free(o); free(o2);
}
END_TEST

/* decode: query t from positions 0..t only equals row t of the prefill. */
START_TEST(test_prefix_recomputation_equals_prefill)
{
    tu_rng g;
    tu_rng_seed(&g, 1605);
    liger_case c;
    liger_case_init(&c, &g, 2, 1, 24, 3, 2, 1);
    const int64_t N = 24, d = 3, dv = 2;
    double *o = tu_dalloc(2 * N * dv), *op = tu_dalloc(2 * N * dv);
    ck_assert_int_eq(liger_run(&c, o), STILL_OK);
    for (int64_t n = 1; n <= N; n++) {
        liger_case p = c;
        p.shape.seq_len = n;
        p.q = tu_dalloc(2 * n * d);
        p.q_lin = tu_dalloc(2 * n * d);
        for (int64_t h = 0; h < 2; h++) {
            memcpy(p.q + h * n * d, c.q + h * N * d, (size_t)(n * d) * sizeof(double));
            memcpy(p.q_lin + h * n * d, c.q_lin + h * N * d, (size_t)(n * d) * sizeof(double));
        }
        ck_assert_int_eq(liger_run(&p, op), STILL_OK);
        for (int64_t h = 0; h < 2; h++)
            TU_ASSERT_CLOSE(op + (h * n + n - 1) * dv, o + (h * N + n - 1) * dv, dv, 1e-14,
                            "prefix vs prefill");
        free(p.q);
        free(p.q_lin);
    }
    free(o); free(op);
    liger_case_free(&c);
}
END_TEST

START_TEST(test_invalid_liger_refused)
{
    tu_rng g;
    tu_rng_seed(&g, 1606);
    liger_case c;
    liger_case_init(&c, &g, 1, 1, 8, 2, 2, 1);
    double o[16];
    c.k_lin[3] = INFINITY;
    ck_assert_int_eq(liger_run(&c, o), STILL_E_NONFINITE);
    c.k_lin[3] = 0.0;
    c.cfg.alpha = NAN;
    ck_assert_int_eq(liger_run(&c, o), STILL_E_CONFIG);
    c.cfg.alpha = 0.5;
    c.cfg.mixer = 2;
    ck_assert_int_eq(liger_run(&c, o), STILL_E_CONFIG);
    c.cfg.mixer = STILL_MIXER_LIGER;
    float qf[16] = {0}, of[16];
    still_tensors tf;
    memset(&tf, 0, sizeof tf);
    tf.dtype = STILL_F32;
    tf.q = tf.k = tf.v = qf;
    tf.o = of;
    float ql[16] = {0};
    tf.q_lin = ql;
    ql[5] = NAN; /* the fast path checks the linear inputs as the ref does */
    ck_assert_int_eq(still_forward(&c.cfg, &c.shape, NULL, &tf), STILL_E_NONFINITE);
    tf.q_lin = NULL;
    still_state *st = NULL;
    c.cfg.query_end = 4; /* a stream has no range of queries */
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, STILL_PATH_FAST, &st),
                     STILL_E_UNSUPPORTED);
    c.cfg.query_end = 0;
    double loss;
    ck_assert_int_eq(still_transfer_grad(&c.cfg, &c.shape, NULL, &tf, NULL, &loss, NULL),
                     STILL_E_UNSUPPORTED);
    liger_case_free(&c);
}
END_TEST

static Suite *liger_suite(void)
{
    Suite *s = suite_create("ref_liger");
    TCase *tc = tcase_create("liger");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_liger_matches_recurrence_token_by_token);
    tcase_add_test(tc, test_no_decay_is_unnormalised_linear_attention);
    tcase_add_test(tc, test_alpha_one_beta_zero_is_window_drop);
    tcase_add_test(tc, test_lin_inputs_default_to_q_and_k);
    tcase_add_test(tc, test_prefix_recomputation_equals_prefill);
    tcase_add_test(tc, test_invalid_liger_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(liger_suite());
}
