/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_ref_featuremap.c -- the NP-Map of SPEC §2 through
 * still_ref_feature_map, against direct computations in the test, and the
 * identity I5 (SPEC §6). */
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Parameters for H heads of one map: W [H][f][d], b [H][f], u [H][d]. */
typedef struct fm_set {
    int64_t H, f, d;
    double *W, *b, *u;
} fm_set;

static void fm_random(fm_set *p, tu_rng *g, int64_t H, int64_t f, int64_t d)
{
    p->H = H;
    p->f = f;
    p->d = d;
    p->W = tu_dalloc(H * f * d);
    p->b = tu_dalloc(H * f);
    p->u = tu_dalloc(H * d);
    tu_fill_normal(g, p->W, H * f * d, 1.0 / sqrt((double)d));
    tu_fill_normal(g, p->b, H * f, 0.5);
    tu_fill_normal(g, p->u, H * d, 1.0);
}

static void fm_free(fm_set *p)
{
    free(p->W);
    free(p->b);
    free(p->u);
}

static int64_t m_of(int act, int64_t f)
{
    return act == STILL_ACT_HEDGEHOG ? 2 * f : f;
}

/* still_ref_feature_map on n rows vs the model on each row. */
static void check_map(const still_config *cfg, const still_params *prm, int which, int64_t head,
                      int64_t d, int64_t n, const double *x, const still_feature_map *want_map,
                      double tol)
{
    int64_t f = want_map->W ? want_map->f : d, m = m_of(cfg->act, f);
    double *phi = tu_dalloc(n * m), *want = tu_dalloc(n * m);
    int rc = still_ref_feature_map(cfg, prm, which, head, d, n, x, phi);
    ck_assert_msg(rc == STILL_OK, "still_ref_feature_map: %s", still_strerror(rc));
    for (int64_t i = 0; i < n; i++)
        tu_model_feature_map(cfg->act, cfg->npmap, f, d,
                             want_map->W ? want_map->W + head * f * d : NULL,
                             want_map->b ? want_map->b + head * f : NULL,
                             want_map->u ? want_map->u + head * d : NULL, x + i * d,
                             want + i * m);
    TU_ASSERT_CLOSE(phi, want, n * m, tol, "phi");
    free(phi);
    free(want);
}

START_TEST(test_feature_map_every_act_matches_spec)
{
    tu_rng g;
    tu_rng_seed(&g, 101);
    still_config cfg;
    still_config_default(&cfg);
    for (int rep = 0; rep < 24; rep++) {
        int64_t H = tu_int(&g, 1, 3), d = tu_int(&g, 1, 9), f = tu_int(&g, 1, 9), n = tu_int(&g, 1, 6);
        fm_set p;
        fm_random(&p, &g, H, f, d);
        double *x = tu_dalloc(n * d);
        tu_fill_normal(&g, x, n * d, 1.5);
        still_params prm;
        still_params_default(&prm);
        prm.fq = (still_feature_map){f, p.W, rep % 2 ? p.b : NULL, rep % 3 ? p.u : NULL};
        for (int act = STILL_ACT_HEDGEHOG; act <= STILL_ACT_RELU; act++)
            for (int np = 0; np <= 1; np++) {
                cfg.act = act;
                cfg.npmap = np;
                check_map(&cfg, &prm, STILL_MAP_Q, rep % H, d, n, x, &prm.fq, 1e-13);
            }
        free(x);
        fm_free(&p);
    }
}
END_TEST

START_TEST(test_feature_map_default_params_identity_W)
{
    tu_rng g;
    tu_rng_seed(&g, 102);
    still_config cfg;
    still_config_default(&cfg);
    still_feature_map none = {0, NULL, NULL, NULL};
    for (int64_t d = 1; d <= 8; d++) {
        double x[5 * 8];
        tu_fill_normal(&g, x, 5 * d, 1.0);
        for (int act = STILL_ACT_HEDGEHOG; act <= STILL_ACT_RELU; act++)
            for (int np = 0; np <= 1; np++) {
                cfg.act = act;
                cfg.npmap = np;
                check_map(&cfg, NULL, STILL_MAP_Q, 0, d, 5, x, &none, 1e-14);
                check_map(&cfg, NULL, STILL_MAP_K, 0, d, 5, x, &none, 1e-14);
            }
    }
    /* identity W and NP off with relu: phi = max(x, 1e-12) exactly */
    cfg.act = STILL_ACT_RELU;
    cfg.npmap = 0;
    double x[4] = {0.5, -2.0, 3.25, 0.0}, phi[4];
    ck_assert_int_eq(still_ref_feature_map(&cfg, NULL, STILL_MAP_Q, 0, 4, 1, x, phi), STILL_OK);
    ck_assert(phi[0] == 0.5 && phi[1] == 1e-12 && phi[2] == 3.25 && phi[3] == 1e-12);
}
END_TEST

/* SPEC §2 step 1: mapping with u equals mapping the reflected vector
 * without u (the reflection is orthogonal, so NP sees the same norm). */
START_TEST(test_householder_equals_reflecting_input)
{
    tu_rng g;
    tu_rng_seed(&g, 103);
    still_config cfg;
    still_config_default(&cfg);
    for (int rep = 0; rep < 20; rep++) {
        int64_t d = tu_int(&g, 2, 8), f = tu_int(&g, 1, 6);
        double W[6 * 8], b[6], u[8], x[8], xr[8], phi1[12], phi2[12];
        tu_fill_normal(&g, W, f * d, 0.5);
        tu_fill_normal(&g, b, f, 0.5);
        tu_fill_normal(&g, u, d, 3.0);
        tu_fill_normal(&g, x, d, 1.0);
        double nu = 0.0, xu = 0.0;
        for (int64_t i = 0; i < d; i++)
            nu += u[i] * u[i];
        for (int64_t i = 0; i < d; i++)
            xu += x[i] * u[i];
        for (int64_t i = 0; i < d; i++)
            xr[i] = x[i] - 2.0 * xu * u[i] / nu;
        still_params with, without;
        still_params_default(&with);
        with.fq = (still_feature_map){f, W, b, u};
        without = with;
        without.fq.u = NULL;
        cfg.act = (int)(rep % 4);
        cfg.npmap = rep % 5 != 0;
        ck_assert_int_eq(still_ref_feature_map(&cfg, &with, STILL_MAP_Q, 0, d, 1, x, phi1), STILL_OK);
        ck_assert_int_eq(still_ref_feature_map(&cfg, &without, STILL_MAP_Q, 0, d, 1, xr, phi2),
                         STILL_OK);
        TU_ASSERT_CLOSE(phi1, phi2, m_of(cfg.act, f), 1e-13, "u vs reflected x");
    }
}
END_TEST

/* SPEC §2 step 1: u_hat = u / max(||u||, 1e-6): a tiny u is not normalized
 * to length 1, and u = 0 is no reflection at all. */
START_TEST(test_householder_tiny_u_uses_norm_floor)
{
    tu_rng g;
    tu_rng_seed(&g, 104);
    still_config cfg;
    still_config_default(&cfg);
    cfg.act = STILL_ACT_ELU1;
    cfg.npmap = 0;
    int64_t d = 4;
    double x[4] = {1.0, -0.5, 0.25, 2.0}, u[4], phi[4];
    still_params prm;
    still_params_default(&prm);
    prm.fq = (still_feature_map){4, NULL, NULL, u};
    /* ||u|| = 5e-7: u_hat = u / 1e-6 has norm 0.5 */
    double dir[4] = {0.6, 0.0, 0.8, 0.0};
    for (int i = 0; i < 4; i++)
        u[i] = 5e-7 * dir[i];
    ck_assert_int_eq(still_ref_feature_map(&cfg, &prm, STILL_MAP_Q, 0, d, 1, x, phi), STILL_OK);
    double xu = 0.0, want[4];
    for (int i = 0; i < 4; i++)
        xu += x[i] * 0.5 * dir[i];
    for (int i = 0; i < 4; i++) {
        double xr = x[i] - 2.0 * xu * 0.5 * dir[i];
        want[i] = (xr > 0 ? xr : expm1(xr)) + 1.0;
    }
    TU_ASSERT_CLOSE(phi, want, 4, 1e-14, "tiny u");
    /* that x' is not a rotation of x: NP rescales to ||x||, not ||x'|| */
    cfg.npmap = 1;
    ck_assert_int_eq(still_ref_feature_map(&cfg, &prm, STILL_MAP_Q, 0, d, 1, x, phi), STILL_OK);
    tu_model_feature_map(STILL_ACT_ELU1, 1, 4, 4, NULL, NULL, u, x, want);
    TU_ASSERT_CLOSE(phi, want, 4, 1e-14, "tiny u, NP on");
    cfg.npmap = 0;
    /* u = 0 reflects nothing */
    memset(u, 0, sizeof u);
    ck_assert_int_eq(still_ref_feature_map(&cfg, &prm, STILL_MAP_Q, 0, d, 1, x, phi), STILL_OK);
    for (int i = 0; i < 4; i++)
        want[i] = (x[i] > 0 ? x[i] : expm1(x[i])) + 1.0;
    TU_ASSERT_CLOSE(phi, want, 4, 1e-15, "u = 0");
    (void)g;
}
END_TEST

/* SPEC §2 step 2-3: the bias is added before the norm rescale. */
START_TEST(test_bias_added_before_norm_rescale)
{
    still_config cfg;
    still_config_default(&cfg);
    cfg.act = STILL_ACT_RELU;
    double x[3] = {3.0, 0.0, 4.0}; /* ||x|| = 5 */
    double b[3] = {1.0, 2.0, -4.0}, phi[3];
    still_params prm;
    still_params_default(&prm);
    prm.fq = (still_feature_map){3, NULL, b, NULL};
    /* z = x + b = (4, 2, 0); ||z|| = sqrt(20); z_hat = 5 z / sqrt(20) */
    cfg.npmap = 1;
    ck_assert_int_eq(still_ref_feature_map(&cfg, &prm, STILL_MAP_Q, 0, 3, 1, x, phi), STILL_OK);
    double want[3] = {20.0 / sqrt(20.0), 10.0 / sqrt(20.0), 1e-12};
    TU_ASSERT_CLOSE(phi, want, 3, 1e-14, "np with bias");
    cfg.npmap = 0;
    ck_assert_int_eq(still_ref_feature_map(&cfg, &prm, STILL_MAP_Q, 0, 3, 1, x, phi), STILL_OK);
    double want2[3] = {4.0, 2.0, 1e-12};
    TU_ASSERT_CLOSE(phi, want2, 3, 0.0, "bias without np");
}
END_TEST

/* SPEC §2 step 4: phi >= 1e-12 elementwise, exactly 1e-12 where act is
 * smaller. */
START_TEST(test_phi_floor_is_1e12)
{
    still_config cfg;
    still_config_default(&cfg);
    cfg.npmap = 0;
    double x[4] = {100.0, -100.0, 0.0, -3.0}, phi[8];
    /* softmax: e^-100 and e^-200 relative to the max are below the floor */
    cfg.act = STILL_ACT_SOFTMAX;
    ck_assert_int_eq(still_ref_feature_map(&cfg, NULL, STILL_MAP_Q, 0, 4, 1, x, phi), STILL_OK);
    ck_assert(fabs(phi[0] - 1.0) < 1e-15);
    ck_assert(phi[1] == 1e-12 && phi[2] == 1e-12 && phi[3] == 1e-12);
    cfg.act = STILL_ACT_HEDGEHOG;
    ck_assert_int_eq(still_ref_feature_map(&cfg, NULL, STILL_MAP_Q, 0, 4, 1, x, phi), STILL_OK);
    ck_assert(phi[1] == 1e-12 && phi[4] == 1e-12 && phi[6] == 1e-12);
    ck_assert(fabs(phi[5] - 1.0) < 1e-15);
    cfg.act = STILL_ACT_ELU1;
    /* elu(-100) + 1 = e^-100 < 1e-12 */
    ck_assert_int_eq(still_ref_feature_map(&cfg, NULL, STILL_MAP_Q, 0, 4, 1, x, phi), STILL_OK);
    ck_assert(phi[0] == 101.0 && phi[1] == 1e-12 && phi[2] == 1.0);
    ck_assert(fabs(phi[3] - exp(-3.0)) < 2e-16);
    for (int i = 0; i < 4; i++)
        ck_assert(phi[i] >= 1e-12);
}
END_TEST

/* SPEC §2 step 3: ||z|| is floored at 1e-12, so z = 0 gives z_hat = 0 and
 * phi = max(act(0), 1e-12). */
START_TEST(test_np_zero_z_gives_act_of_zero)
{
    still_config cfg;
    still_config_default(&cfg);
    double W[3 * 5], x[5] = {1.0, 2.0, -1.0, 0.5, 0.0}, phi[6];
    memset(W, 0, sizeof W);
    still_params prm;
    still_params_default(&prm);
    prm.fq = (still_feature_map){3, W, NULL, NULL};
    const double want[4] = {1.0 / 3.0, 1.0 / 3.0, 1.0, 1e-12};
    for (int act = STILL_ACT_HEDGEHOG; act <= STILL_ACT_RELU; act++) {
        cfg.act = act;
        ck_assert_int_eq(still_ref_feature_map(&cfg, &prm, STILL_MAP_Q, 0, 5, 1, x, phi), STILL_OK);
        for (int64_t i = 0; i < m_of(act, 3); i++)
            ck_assert_msg(fabs(phi[i] - want[act]) < 1e-15 && isfinite(phi[i]),
                          "act %d phi[%lld] = %g", act, (long long)i, phi[i]);
    }
    /* x = 0 with NP on: finite, z_hat = 0 */
    double zero[5] = {0}, Wid[3 * 5];
    for (int i = 0; i < 15; i++)
        Wid[i] = i % 6 == 0 ? 1.0 : 0.5;
    prm.fq.W = Wid;
    cfg.act = STILL_ACT_ELU1;
    ck_assert_int_eq(still_ref_feature_map(&cfg, &prm, STILL_MAP_Q, 0, 5, 1, zero, phi), STILL_OK);
    for (int i = 0; i < 3; i++)
        ck_assert(phi[i] == 1.0);
}
END_TEST

/* I5: ||z_hat|| = ||x||.  With relu and z > 0 phi is z_hat itself; with
 * elu1 and z > 0 phi is z_hat + 1. */
START_TEST(test_I5_np_preserves_norm)
{
    tu_rng g;
    tu_rng_seed(&g, 105);
    still_config cfg;
    still_config_default(&cfg);
    for (int rep = 0; rep < 30; rep++) {
        int64_t d = tu_int(&g, 1, 10), f = tu_int(&g, 1, 10);
        double W[100], x[10], phi[10];
        tu_fill(&g, W, f * d, 0.1, 2.0);
        tu_fill(&g, x, d, 0.1, 3.0);
        double nx = 0.0;
        for (int64_t i = 0; i < d; i++)
            nx += x[i] * x[i];
        nx = sqrt(nx);
        still_params prm;
        still_params_default(&prm);
        prm.fq = (still_feature_map){f, W, NULL, NULL};
        cfg.act = STILL_ACT_RELU;
        ck_assert_int_eq(still_ref_feature_map(&cfg, &prm, STILL_MAP_Q, 0, d, 1, x, phi), STILL_OK);
        double n2 = 0.0;
        for (int64_t i = 0; i < f; i++)
            n2 += phi[i] * phi[i];
        ck_assert_msg(fabs(sqrt(n2) - nx) <= 1e-13 * nx, "relu: ||phi|| %.17g vs ||x|| %.17g",
                      sqrt(n2), nx);
        cfg.act = STILL_ACT_ELU1;
        ck_assert_int_eq(still_ref_feature_map(&cfg, &prm, STILL_MAP_Q, 0, d, 1, x, phi), STILL_OK);
        n2 = 0.0;
        for (int64_t i = 0; i < f; i++)
            n2 += (phi[i] - 1.0) * (phi[i] - 1.0);
        ck_assert_msg(fabs(sqrt(n2) - nx) <= 1e-13 * (1 + nx), "elu1: %.17g vs %.17g", sqrt(n2), nx);
    }
}
END_TEST

/* I5: phi unchanged when W (and b with it) is multiplied by a > 0, NP on. */
START_TEST(test_I5_phi_invariant_to_positive_W_scale)
{
    tu_rng g;
    tu_rng_seed(&g, 106);
    still_config cfg;
    still_config_default(&cfg);
    const double scales[] = {1e-3, 0.5, 7.0, 1e3};
    for (int rep = 0; rep < 16; rep++) {
        int64_t d = tu_int(&g, 1, 8), f = tu_int(&g, 1, 8), n = 4;
        double W[64], Ws[64], b[8], bs[8], u[8], x[32], phi1[64], phi2[64];
        tu_fill_normal(&g, W, f * d, 1.0);
        tu_fill_normal(&g, b, f, 1.0);
        tu_fill_normal(&g, u, d, 1.0);
        tu_fill_normal(&g, x, n * d, 1.0);
        cfg.act = (int)(rep % 4);
        cfg.npmap = 1;
        int with_b = rep >= 8;
        for (int s = 0; s < 4; s++) {
            for (int64_t i = 0; i < f * d; i++)
                Ws[i] = scales[s] * W[i];
            for (int64_t i = 0; i < f; i++)
                bs[i] = scales[s] * b[i];
            still_params p1, p2;
            still_params_default(&p1);
            p1.fq = (still_feature_map){f, W, with_b ? b : NULL, u};
            p2 = p1;
            p2.fq.W = Ws;
            p2.fq.b = with_b ? bs : NULL;
            ck_assert_int_eq(still_ref_feature_map(&cfg, &p1, STILL_MAP_Q, 0, d, n, x, phi1), STILL_OK);
            ck_assert_int_eq(still_ref_feature_map(&cfg, &p2, STILL_MAP_Q, 0, d, n, x, phi2), STILL_OK);
            TU_ASSERT_CLOSE(phi1, phi2, n * m_of(cfg.act, f), 1e-12, "scaled W, NP on");
        }
    }
}
END_TEST

/* NP off: scaling W changes phi (so the invariance above is NP's doing). */
START_TEST(test_np_off_phi_changes_with_W_scale)
{
    tu_rng g;
    tu_rng_seed(&g, 107);
    still_config cfg;
    still_config_default(&cfg);
    cfg.npmap = 0;
    for (int act = STILL_ACT_HEDGEHOG; act <= STILL_ACT_RELU; act++) {
        int64_t d = 5, f = 4;
        double W[20], Ws[20], x[5], phi1[8], phi2[8];
        tu_fill_normal(&g, W, f * d, 1.0);
        tu_fill(&g, x, d, 0.5, 1.5);
        for (int i = 0; i < 20; i++)
            Ws[i] = 3.0 * W[i];
        still_params p1, p2;
        still_params_default(&p1);
        p1.fq = (still_feature_map){f, W, NULL, NULL};
        p2 = p1;
        p2.fq.W = Ws;
        cfg.act = act;
        ck_assert_int_eq(still_ref_feature_map(&cfg, &p1, STILL_MAP_Q, 0, d, 1, x, phi1), STILL_OK);
        ck_assert_int_eq(still_ref_feature_map(&cfg, &p2, STILL_MAP_Q, 0, d, 1, x, phi2), STILL_OK);
        ck_assert_msg(tu_max_abs_diff(phi1, phi2, m_of(act, f)) > 1e-3,
                      "act %d: NP off but phi ignores the scale of W", act);
    }
}
END_TEST

START_TEST(test_tied_key_map_is_query_map)
{
    tu_rng g;
    tu_rng_seed(&g, 108);
    still_config cfg;
    still_config_default(&cfg);
    int64_t H = 3, d = 4, f = 5, n = 6;
    fm_set p, junk;
    fm_random(&p, &g, H, f, d);
    fm_random(&junk, &g, H, f, d);
    double x[24];
    tu_fill_normal(&g, x, n * d, 1.0);
    still_params prm;
    still_params_default(&prm);
    prm.fq = (still_feature_map){f, p.W, p.b, p.u};
    prm.fk = (still_feature_map){f, junk.W, junk.b, junk.u}; /* ignored: tied */
    prm.fk_tied = 1;
    for (int act = 0; act < 4; act++) {
        cfg.act = act;
        for (int64_t h = 0; h < H; h++)
            check_map(&cfg, &prm, STILL_MAP_K, h, d, n, x, &prm.fq, 1e-13);
    }
    fm_free(&p);
    fm_free(&junk);
}
END_TEST

START_TEST(test_separate_key_map_uses_fk)
{
    tu_rng g;
    tu_rng_seed(&g, 109);
    still_config cfg;
    still_config_default(&cfg);
    int64_t H = 2, d = 3, f = 4, n = 5;
    fm_set pq, pk;
    fm_random(&pq, &g, H, f, d);
    fm_random(&pk, &g, H, f, d);
    double x[15], a[40], bphi[40];
    tu_fill_normal(&g, x, n * d, 1.0);
    still_params prm;
    still_params_default(&prm);
    prm.fq = (still_feature_map){f, pq.W, pq.b, pq.u};
    prm.fk = (still_feature_map){f, pk.W, NULL, pk.u};
    prm.fk_tied = 0;
    for (int act = 0; act < 4; act++) {
        cfg.act = act;
        for (int64_t h = 0; h < H; h++) {
            check_map(&cfg, &prm, STILL_MAP_K, h, d, n, x, &prm.fk, 1e-13);
            check_map(&cfg, &prm, STILL_MAP_Q, h, d, n, x, &prm.fq, 1e-13);
        }
        ck_assert_int_eq(still_ref_feature_map(&cfg, &prm, STILL_MAP_Q, 1, d, n, x, a), STILL_OK);
        ck_assert_int_eq(still_ref_feature_map(&cfg, &prm, STILL_MAP_K, 1, d, n, x, bphi), STILL_OK);
        ck_assert(tu_max_abs_diff(a, bphi, n * m_of(act, f)) > 1e-6);
    }
    fm_free(&pq);
    fm_free(&pk);
}
END_TEST

/* Query head h reads row block h of W, b, u. */
START_TEST(test_feature_map_head_selects_parameter_block)
{
    tu_rng g;
    tu_rng_seed(&g, 110);
    still_config cfg;
    still_config_default(&cfg);
    int64_t H = 4, d = 3, f = 2;
    fm_set p;
    fm_random(&p, &g, H, f, d);
    double x[3], phi_h[4], phi_1[4];
    tu_fill_normal(&g, x, d, 1.0);
    for (int64_t h = 0; h < H; h++) {
        still_params full, single;
        still_params_default(&full);
        still_params_default(&single);
        full.fq = (still_feature_map){f, p.W, p.b, p.u};
        single.fq = (still_feature_map){f, p.W + h * f * d, p.b + h * f, p.u + h * d};
        ck_assert_int_eq(still_ref_feature_map(&cfg, &full, STILL_MAP_Q, h, d, 1, x, phi_h), STILL_OK);
        ck_assert_int_eq(still_ref_feature_map(&cfg, &single, STILL_MAP_Q, 0, d, 1, x, phi_1),
                         STILL_OK);
        TU_ASSERT_CLOSE(phi_h, phi_1, 2 * f, 0.0, "head block");
    }
    fm_free(&p);
}
END_TEST

START_TEST(test_feature_map_errors)
{
    still_config cfg;
    still_config_default(&cfg);
    double x[6] = {1, 2, 3, 4, 5, 6}, phi[12], W[6] = {0};
    for (int i = 0; i < 12; i++)
        phi[i] = 99.0;
    ck_assert_int_eq(still_ref_feature_map(&cfg, NULL, STILL_MAP_Q, 0, 3, 2, NULL, phi), STILL_E_NULL);
    ck_assert_int_eq(still_ref_feature_map(&cfg, NULL, STILL_MAP_Q, 0, 3, 2, x, NULL), STILL_E_NULL);
    ck_assert_int_eq(still_ref_feature_map(&cfg, NULL, STILL_MAP_Q, 0, 0, 2, x, phi), STILL_E_SHAPE);
    ck_assert(still_ref_feature_map(&cfg, NULL, 2, 0, 3, 2, x, phi) != STILL_OK);
    ck_assert(still_ref_feature_map(&cfg, NULL, STILL_MAP_Q, -1, 3, 2, x, phi) != STILL_OK);
    ck_assert(still_ref_feature_map(&cfg, NULL, STILL_MAP_Q, 0, 3, -1, x, phi) != STILL_OK);
    cfg.act = 7;
    ck_assert_int_eq(still_ref_feature_map(&cfg, NULL, STILL_MAP_Q, 0, 3, 2, x, phi), STILL_E_CONFIG);
    still_config_default(&cfg);
    still_params prm;
    still_params_default(&prm);
    prm.fq.f = 2; /* W NULL: f must be d */
    ck_assert_int_eq(still_ref_feature_map(&cfg, &prm, STILL_MAP_Q, 0, 3, 2, x, phi), STILL_E_PARAMS);
    prm.fq = (still_feature_map){2, W, NULL, NULL};
    prm.fk_tied = 0;
    prm.fk = (still_feature_map){3, NULL, NULL, NULL};
    ck_assert_int_eq(still_ref_feature_map(&cfg, &prm, STILL_MAP_K, 0, 3, 2, x, phi), STILL_E_PARAMS);
    x[4] = NAN; /* SPEC §10 */
    ck_assert_int_eq(still_ref_feature_map(&cfg, NULL, STILL_MAP_Q, 0, 3, 2, x, phi),
                     STILL_E_NONFINITE);
    for (int i = 0; i < 12; i++)
        ck_assert(phi[i] == 99.0);
}
END_TEST

static Suite *featuremap_suite(void)
{
    Suite *s = suite_create("ref_featuremap");
    TCase *tc = tcase_create("npmap");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_feature_map_every_act_matches_spec);
    tcase_add_test(tc, test_feature_map_default_params_identity_W);
    tcase_add_test(tc, test_householder_equals_reflecting_input);
    tcase_add_test(tc, test_householder_tiny_u_uses_norm_floor);
    tcase_add_test(tc, test_bias_added_before_norm_rescale);
    tcase_add_test(tc, test_phi_floor_is_1e12);
    tcase_add_test(tc, test_np_zero_z_gives_act_of_zero);
    tcase_add_test(tc, test_I5_np_preserves_norm);
    tcase_add_test(tc, test_I5_phi_invariant_to_positive_W_scale);
    tcase_add_test(tc, test_np_off_phi_changes_with_W_scale);
    tcase_add_test(tc, test_tied_key_map_is_query_map);
    tcase_add_test(tc, test_separate_key_map_uses_fk);
    tcase_add_test(tc, test_feature_map_head_selects_parameter_block);
    tcase_add_test(tc, test_feature_map_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(featuremap_suite());
}
