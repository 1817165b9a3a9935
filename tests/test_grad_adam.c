/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_grad_adam.c -- SPEC §8: the Adam step.  Two steps on small vectors
 * against the Adam formulas written out here, step by step; decoupled
 * weight decay; determinism; convergence on a quadratic; bad calls. */
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <string.h>

/* The values after two steps, by hand (Kingma & Ba, Algorithm 1, with the
 * decoupled decay of Loshchilov & Hutter applied before the update):
 * step 1: m1 = (1-b1) g1, v1 = (1-b2) g1^2, mhat = g1, vhat = g1^2,
 *         p1 = p0 (1 - lr wd) - lr g1 / (|g1| + eps)
 * step 2: m2 = b1 m1 + (1-b1) g2, v2 = b2 v1 + (1-b2) g2^2,
 *         p2 = p1 (1 - lr wd) - lr (m2/(1-b1^2)) / (sqrt(v2/(1-b2^2)) + eps) */
static void two_steps_by_hand(double lr, double b1, double b2, double eps, double wd, double p0,
                              double g1, double g2, double *p2)
{
    double p1 = p0 * (1.0 - lr * wd) - lr * g1 / (fabs(g1) + eps);
    double m1 = (1.0 - b1) * g1, v1 = (1.0 - b2) * g1 * g1;
    double m2 = b1 * m1 + (1.0 - b1) * g2, v2 = b2 * v1 + (1.0 - b2) * g2 * g2;
    *p2 = p1 * (1.0 - lr * wd) - lr * (m2 / (1.0 - b1 * b1)) / (sqrt(v2 / (1.0 - b2 * b2)) + eps);
}

static void run_two_steps(double wd)
{
    const double p0[4] = {1.0, -2.0, 0.5, 0.0};
    const double g1[4] = {0.1, -0.2, 3.0, 0.0};
    const double g2[4] = {-0.05, 0.4, 2.0, 1e-3};
    double p[4], m[4] = {0}, v[4] = {0};
    still_adam_config cfg;
    still_adam_default(&cfg);
    cfg.lr = 0.01;
    cfg.weight_decay = wd;
    memcpy(p, p0, sizeof p);
    ck_assert_int_eq(still_adam_step(&cfg, 1, 4, p, g1, m, v), STILL_OK);
    ck_assert_int_eq(still_adam_step(&cfg, 2, 4, p, g2, m, v), STILL_OK);
    for (int i = 0; i < 4; i++) {
        double want;
        two_steps_by_hand(0.01, 0.9, 0.999, 1e-8, wd, p0[i], g1[i], g2[i], &want);
        ck_assert_msg(fabs(p[i] - want) <= 1e-15 * fmax(1.0, fabs(want)),
                      "element %d: %.17g vs %.17g", i, p[i], want);
    }
}

START_TEST(test_two_steps_match_the_formulas)
{
    run_two_steps(0.0);
}
END_TEST

START_TEST(test_two_steps_with_decoupled_weight_decay)
{
    run_two_steps(0.1);
}
END_TEST

START_TEST(test_defaults_are_the_usual_ones)
{
    still_adam_config cfg;
    still_adam_default(&cfg);
    ck_assert_double_eq(cfg.lr, 1e-3);
    ck_assert_double_eq(cfg.beta1, 0.9);
    ck_assert_double_eq(cfg.beta2, 0.999);
    ck_assert_double_eq(cfg.eps, 1e-8);
    ck_assert_double_eq(cfg.weight_decay, 0.0);
}
END_TEST

START_TEST(test_first_step_moves_each_parameter_by_lr)
{
    /* bias correction: the first step is lr * g/(|g| + eps) whatever |g| */
    double p[3] = {0, 0, 0}, g[3] = {1e-3, -50.0, 2.0}, m[3] = {0}, v[3] = {0};
    still_adam_config cfg;
    still_adam_default(&cfg);
    cfg.eps = 1e-12;
    ck_assert_int_eq(still_adam_step(&cfg, 1, 3, p, g, m, v), STILL_OK);
    ck_assert_double_eq_tol(p[0], -1e-3, 1e-12);
    ck_assert_double_eq_tol(p[1], 1e-3, 1e-12);
    ck_assert_double_eq_tol(p[2], -1e-3, 1e-12);
}
END_TEST

START_TEST(test_steps_are_deterministic)
{
    tu_rng g;
    double p1[50], p2[50], m1[50] = {0}, m2[50] = {0}, v1[50] = {0}, v2[50] = {0}, gr[50];
    still_adam_config cfg;
    still_adam_default(&cfg);
    cfg.weight_decay = 0.01;
    tu_rng_seed(&g, 5);
    tu_fill_normal(&g, p1, 50, 1.0);
    memcpy(p2, p1, sizeof p1);
    for (int s = 1; s <= 5; s++) {
        tu_fill_normal(&g, gr, 50, 1.0);
        ck_assert_int_eq(still_adam_step(&cfg, s, 50, p1, gr, m1, v1), STILL_OK);
        ck_assert_int_eq(still_adam_step(&cfg, s, 50, p2, gr, m2, v2), STILL_OK);
    }
    ck_assert(memcmp(p1, p2, sizeof p1) == 0);
    ck_assert(memcmp(m1, m2, sizeof m1) == 0 && memcmp(v1, v2, sizeof v1) == 0);
}
END_TEST

START_TEST(test_minimizes_a_quadratic)
{
    /* f(p) = sum c_i (p_i - t_i)^2 */
    double p[3] = {3.0, -1.0, 0.0}, t[3] = {0.5, 2.0, -1.5}, c[3] = {1.0, 10.0, 0.1};
    double m[3] = {0}, v[3] = {0}, g[3];
    still_adam_config cfg;
    still_adam_default(&cfg);
    cfg.lr = 0.05;
    for (int s = 1; s <= 3000; s++) {
        for (int i = 0; i < 3; i++)
            g[i] = 2.0 * c[i] * (p[i] - t[i]);
        ck_assert_int_eq(still_adam_step(&cfg, s, 3, p, g, m, v), STILL_OK);
    }
    for (int i = 0; i < 3; i++)
        ck_assert_double_eq_tol(p[i], t[i], 1e-3);
}
END_TEST

START_TEST(test_bad_calls_change_nothing)
{
    double p[2] = {1.0, 2.0}, g[2] = {0.5, NAN}, m[2] = {0}, v[2] = {0};
    still_adam_config cfg;
    still_adam_default(&cfg);
    ck_assert_int_eq(still_adam_step(&cfg, 1, 2, p, g, m, v), STILL_E_NONFINITE);
    ck_assert(p[0] == 1.0 && p[1] == 2.0 && m[0] == 0.0 && v[0] == 0.0);
    g[1] = 1.0;
    ck_assert_int_eq(still_adam_step(&cfg, 0, 2, p, g, m, v), STILL_E_CONFIG);
    ck_assert_int_eq(still_adam_step(NULL, 1, 2, p, g, m, v), STILL_E_NULL);
    ck_assert_int_eq(still_adam_step(&cfg, 1, 2, p, g, NULL, v), STILL_E_NULL);
    cfg.beta1 = 1.0;
    ck_assert_int_eq(still_adam_step(&cfg, 1, 2, p, g, m, v), STILL_E_CONFIG);
    still_adam_default(&cfg);
    cfg.eps = 0.0;
    ck_assert_int_eq(still_adam_step(&cfg, 1, 2, p, g, m, v), STILL_E_CONFIG);
    ck_assert(p[0] == 1.0 && p[1] == 2.0);
    ck_assert_int_eq(still_adam_step(&cfg, 1, 0, NULL, NULL, NULL, NULL), STILL_E_CONFIG);
    still_adam_default(&cfg);
    ck_assert_int_eq(still_adam_step(&cfg, 1, 0, NULL, NULL, NULL, NULL), STILL_OK);
}
END_TEST

static Suite *adam_suite(void)
{
    Suite *s = suite_create("adam");
    TCase *tc = tcase_create("adam");
    tcase_add_test(tc, test_two_steps_match_the_formulas);
    tcase_add_test(tc, test_two_steps_with_decoupled_weight_decay);
    tcase_add_test(tc, test_defaults_are_the_usual_ones);
    tcase_add_test(tc, test_first_step_moves_each_parameter_by_lr);
    tcase_add_test(tc, test_steps_are_deterministic);
    tcase_add_test(tc, test_minimizes_a_quadratic);
    tcase_add_test(tc, test_bad_calls_change_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(adam_suite());
}
