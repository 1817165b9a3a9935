/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_ref_identities.c -- the identities of SPEC §6 (I1-I5), the teacher
 * (SPEC §1), GQA, layouts, dtypes, batching and causality of the ref path. */
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const int64_t CHUNKS[4] = {1, 3, 8, 16};

static int64_t n_out(const tu_case *c)
{
    const still_shape *s = &c->shape;
    return s->batch * s->heads_q * s->seq_len * s->dim_v;
}

static double tol_of(const tu_case *c)
{
    return c->dtype == STILL_F32 ? 1e-6 : 1e-12;
}

/* random shape: B, Hk, group, N (often not a multiple of C), d, dv, layout */
static void random_shape_case(tu_rng *g, tu_case *c, int with_gate)
{
    int64_t Hk = tu_int(g, 1, 2), G = tu_int(g, 1, 3);
    still_shape s = {tu_int(g, 1, 2), Hk * G, Hk, tu_int(g, 1, 60), tu_int(g, 1, 7),
                     tu_int(g, 1, 5), (int)tu_int(g, 0, 1)};
    tu_case_init(c, g, &s, tu_uniform(g, 0.3, 2.0), with_gate);
    c->cfg.chunk = CHUNKS[tu_int(g, 0, 3)];
    c->cfg.act = (int)tu_int(g, 0, 3);
    c->cfg.npmap = (int)tu_int(g, 0, 1);
    c->cfg.select_per_kv = (int)tu_int(g, 0, 1);
    c->cfg.window = tu_int(g, 0, 1) ? 0 : tu_int(g, 2, 20);
    if (tu_int(g, 0, 1))
        tu_case_random_params(c, g, tu_int(g, 1, 6), (int)tu_int(g, 0, 1), (int)tu_int(g, 0, 1),
                              (int)tu_int(g, 0, 1), 0);
    c->dtype = tu_int(g, 0, 2) == 0 ? STILL_F32 : STILL_F64;
    tu_case_round(c);
}

/* forward and teacher of the case agree */
static void expect_teacher(tu_case *c, const char *what, int rep)
{
    int64_t no = n_out(c);
    double *o = tu_dalloc(no), *ot = tu_dalloc(no);
    int rc = tu_run_ref(c, o, NULL, NULL);
    ck_assert_msg(rc == STILL_OK, "%s rep %d: forward: %s", what, rep, still_strerror(rc));
    rc = tu_run_teacher(c, ot);
    ck_assert_msg(rc == STILL_OK, "%s rep %d: teacher: %s", what, rep, still_strerror(rc));
    double err = tu_max_abs_diff(o, ot, no), tol = tol_of(c) * (1.0 + tu_max_abs(ot, no));
    ck_assert_msg(err <= tol,
                  "%s rep %d (C %lld k %lld L %lld w %lld N %lld dtype %d layout %d): "
                  "max |o - teacher| = %g > %g",
                  what, rep, (long long)c->cfg.chunk, (long long)c->cfg.topk,
                  (long long)c->cfg.local, (long long)c->cfg.window, (long long)c->shape.seq_len,
                  c->dtype, c->shape.layout, err, tol);
    free(o);
    free(ot);
}

/* ---- the teacher (SPEC §1) ------------------------------------------------ */

/* full causal softmax computed here, BHND double */
static void direct_teacher(const tu_case *c, double *o)
{
    const still_shape *s = &c->shape;
    int64_t N = s->seq_len, d = s->dim_qk, dv = s->dim_v, G = s->heads_q / s->heads_kv;
    double scale = tu_eff_scale(c), *lg = tu_dalloc(N);
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t h = 0; h < s->heads_q; h++)
            for (int64_t t = 0; t < N; t++) {
                const double *q_t = c->q + tu_bhnd(s->heads_q, N, d, b, h, t, 0);
                double mx = -INFINITY, den = 0.0;
                for (int64_t j = 0; j <= t; j++) {
                    const double *k_j = c->k + tu_bhnd(s->heads_kv, N, d, b, h / G, j, 0);
                    lg[j] = 0.0;
                    for (int64_t i = 0; i < d; i++)
                        lg[j] += q_t[i] * k_j[i];
                    lg[j] *= scale;
                    mx = fmax(mx, lg[j]);
                }
                double *o_t = o + tu_bhnd(s->heads_q, N, dv, b, h, t, 0);
                for (int64_t e = 0; e < dv; e++)
                    o_t[e] = 0.0;
                for (int64_t j = 0; j <= t; j++) {
                    double w = exp(lg[j] - mx);
                    den += w;
                    for (int64_t e = 0; e < dv; e++)
                        o_t[e] += w * c->v[tu_bhnd(s->heads_kv, N, dv, b, h / G, j, e)];
                }
                for (int64_t e = 0; e < dv; e++)
                    o_t[e] /= den;
            }
    free(lg);
}

START_TEST(test_teacher_matches_direct_softmax)
{
    tu_rng g;
    tu_rng_seed(&g, 401);
    for (int rep = 0; rep < 20; rep++) {
        tu_case c;
        random_shape_case(&g, &c, 0);
        c.cfg.scale = rep % 3 == 0 ? tu_uniform(&g, -1.0, 2.0) : 0.0;
        int64_t no = n_out(&c);
        double *o = tu_dalloc(no), *want = tu_dalloc(no);
        ck_assert_int_eq(tu_run_teacher(&c, o), STILL_OK);
        direct_teacher(&c, want);
        TU_ASSERT_CLOSE(o, want, no, tol_of(&c) * (1 + tu_max_abs(want, no)), "teacher");
        free(o);
        free(want);
        tu_case_free(&c);
    }
}
END_TEST

/* SPEC §1: the value is the exact quotient; logits of several hundred must
 * not overflow. */
START_TEST(test_teacher_stable_for_large_logits)
{
    tu_rng g;
    tu_rng_seed(&g, 402);
    still_shape s = {1, 2, 1, 40, 4, 3, STILL_LAYOUT_BHND};
    tu_case c;
    tu_case_init(&c, &g, &s, 25.0, 0);
    int64_t no = n_out(&c);
    double *o = tu_dalloc(no), *want = tu_dalloc(no);
    ck_assert_int_eq(tu_run_teacher(&c, o), STILL_OK);
    direct_teacher(&c, want);
    for (int64_t i = 0; i < no; i++)
        ck_assert_msg(isfinite(o[i]), "o[%lld] = %g", (long long)i, o[i]);
    TU_ASSERT_CLOSE(o, want, no, 1e-12 * (1 + tu_max_abs(want, no)), "teacher, large logits");
    /* the hybrid too: every output finite, and I1 still holds */
    c.cfg.chunk = 8;
    c.cfg.topk = 8;
    c.cfg.eps_den = 0.0;
    expect_teacher(&c, "large logits", 0);
    c.cfg.topk = 2;
    ck_assert_int_eq(tu_run_ref(&c, o, NULL, NULL), STILL_OK);
    for (int64_t i = 0; i < no; i++)
        ck_assert_msg(isfinite(o[i]), "hybrid o[%lld] = %g", (long long)i, o[i]);
    free(o);
    free(want);
    tu_case_free(&c);
}
END_TEST

START_TEST(test_scale_default_is_inverse_sqrt_d)
{
    tu_rng g;
    tu_rng_seed(&g, 403);
    for (int rep = 0; rep < 6; rep++) {
        tu_case c;
        random_shape_case(&g, &c, 1);
        c.cfg.topk = tu_int(&g, 0, c.cfg.chunk);
        int64_t no = n_out(&c);
        double *o0 = tu_dalloc(no), *o1 = tu_dalloc(no), *o2 = tu_dalloc(no);
        ck_assert_int_eq(tu_run_ref(&c, o0, NULL, NULL), STILL_OK);
        c.cfg.scale = 1.0 / sqrt((double)c.shape.dim_qk);
        ck_assert_int_eq(tu_run_ref(&c, o1, NULL, NULL), STILL_OK);
        TU_ASSERT_CLOSE(o0, o1, no, 1e-14 * (1 + tu_max_abs(o0, no)), "scale 0 vs 1/sqrt(d)");
        c.cfg.scale *= 2.5;
        ck_assert_int_eq(tu_run_ref(&c, o2, NULL, NULL), STILL_OK);
        ck_assert_msg(tu_max_abs_diff(o0, o2, no) > 1e-9 || c.shape.seq_len == 1, "scale ignored");
        free(o0);
        free(o1);
        free(o2);
        tu_case_free(&c);
    }
}
END_TEST

/* ---- I1-I5 ------------------------------------------------------------------ */

/* I1: k = C, no cap, eps_den = 0, L >= 1 -> the teacher, for any C.  The
 * gate multiplies the (empty) linear part only, so it does not matter. */
START_TEST(test_I1_topk_equals_chunk_gives_teacher)
{
    tu_rng g;
    tu_rng_seed(&g, 404);
    for (int rep = 0; rep < 30; rep++) {
        tu_case c;
        random_shape_case(&g, &c, rep % 2);
        c.cfg.topk = c.cfg.chunk;
        c.cfg.local = tu_int(&g, 1, 3);
        c.cfg.eps_den = 0.0;
        expect_teacher(&c, "I1 topk = C", rep);
        tu_case_free(&c);
    }
}
END_TEST

START_TEST(test_I1_routing_all_gives_teacher)
{
    tu_rng g;
    tu_rng_seed(&g, 405);
    for (int rep = 0; rep < 20; rep++) {
        tu_case c;
        random_shape_case(&g, &c, rep % 2);
        c.cfg.routing = STILL_ROUTING_ALL;
        c.cfg.topk = 0; /* ignored: routing all means k = C */
        c.cfg.local = tu_int(&g, 1, 3);
        c.cfg.eps_den = 0.0;
        expect_teacher(&c, "I1 routing all", rep);
        tu_case_free(&c);
    }
}
END_TEST

/* Delayed selection: while no chunk is old enough to be split (L chunks
 * cover the sequence), everything is exact, whatever k. */
START_TEST(test_no_split_before_L_chunks_gives_teacher)
{
    tu_rng g;
    tu_rng_seed(&g, 406);
    for (int rep = 0; rep < 16; rep++) {
        tu_case c;
        random_shape_case(&g, &c, 1);
        int64_t C = c.cfg.chunk, nch = (c.shape.seq_len + C - 1) / C;
        c.cfg.topk = tu_int(&g, 0, C);
        c.cfg.local = nch + tu_int(&g, 0, 2); /* chunk c <= nch - 1 < L: none split */
        c.cfg.max_sel = tu_int(&g, 0, 2);
        c.cfg.eps_den = 0.0;
        expect_teacher(&c, "L >= #chunks", rep);
        tu_case_free(&c);
    }
}
END_TEST

/* linear attention of SPEC §3, computed here with still_ref_feature_map */
static void direct_linear(const tu_case *c, double *o)
{
    const still_shape *s = &c->shape;
    int64_t N = s->seq_len, d = s->dim_qk, dv = s->dim_v, G = s->heads_q / s->heads_kv;
    const still_params *prm = c->use_params ? &c->params : NULL;
    int64_t m;
    ck_assert_int_eq(still_feature_dim(&c->cfg, prm, d, &m), STILL_OK);
    ck_assert_int_eq(m, tu_eff_m(c));
    double *pq = tu_dalloc(N * m), *pk = tu_dalloc(N * m);
    double *S = tu_dalloc(m * dv), *z = tu_dalloc(m);
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t h = 0; h < s->heads_q; h++) {
            const double *Q = c->q + tu_bhnd(s->heads_q, N, d, b, h, 0, 0);
            const double *K = c->k + tu_bhnd(s->heads_kv, N, d, b, h / G, 0, 0);
            const double *V = c->v + tu_bhnd(s->heads_kv, N, dv, b, h / G, 0, 0);
            ck_assert_int_eq(still_ref_feature_map(&c->cfg, prm, STILL_MAP_Q, h, d, N, Q, pq), STILL_OK);
            ck_assert_int_eq(still_ref_feature_map(&c->cfg, prm, STILL_MAP_K, h, d, N, K, pk), STILL_OK);
            memset(S, 0, (size_t)(m * dv) * sizeof(double));
            memset(z, 0, (size_t)m * sizeof(double));
            for (int64_t t = 0; t < N; t++) {
                /* the state form: S += phi_k(k_t) v_t^T, z += phi_k(k_t) */
                for (int64_t i = 0; i < m; i++) {
                    z[i] += pk[t * m + i];
                    for (int64_t e = 0; e < dv; e++)
                        S[i * dv + e] += pk[t * m + i] * V[t * dv + e];
                }
                double den = 0.0;
                for (int64_t i = 0; i < m; i++)
                    den += pq[t * m + i] * z[i];
                double *o_t = o + tu_bhnd(s->heads_q, N, dv, b, h, t, 0);
                for (int64_t e = 0; e < dv; e++) {
                    double num = 0.0;
                    for (int64_t i = 0; i < m; i++)
                        num += pq[t * m + i] * S[i * dv + e];
                    o_t[e] = num / den;
                }
            }
        }
    free(pq);
    free(pk);
    free(S);
    free(z);
}

static void expect_linear(tu_case *c, const char *what, int rep)
{
    int64_t no = n_out(c);
    double *o = tu_dalloc(no), *want = tu_dalloc(no);
    int rc = tu_run_ref(c, o, NULL, NULL);
    ck_assert_msg(rc == STILL_OK, "%s: %s", what, still_strerror(rc));
    direct_linear(c, want);
    double err = tu_max_abs_diff(o, want, no), tol = (c->dtype == STILL_F32 ? 1e-6 : 1e-11) *
                                                      (1.0 + tu_max_abs(want, no));
    ck_assert_msg(err <= tol, "%s rep %d (act %d np %d C %lld N %lld): max err %g > %g", what, rep,
                  c->cfg.act, c->cfg.npmap, (long long)c->cfg.chunk, (long long)c->shape.seq_len,
                  err, tol);
    free(o);
    free(want);
}

/* I2: k = 0, L = 0, G = 1, eps_den = 0 -> causal linear attention (§3). */
START_TEST(test_I2_topk0_local0_gives_linear_attention)
{
    tu_rng g;
    tu_rng_seed(&g, 407);
    for (int rep = 0; rep < 24; rep++) {
        tu_case c;
        random_shape_case(&g, &c, 0);
        c.cfg.topk = 0;
        c.cfg.local = 0;
        c.cfg.eps_den = 0.0;
        c.cfg.max_sel = rep % 3;
        if (rep % 4 == 1) { /* G = 1 given explicitly */
            int64_t ng = n_out(&c);
            c.gate = tu_dalloc(ng);
            for (int64_t i = 0; i < ng; i++)
                c.gate[i] = 1.0;
        }
        expect_linear(&c, "I2 topk 0", rep);
        tu_case_free(&c);
    }
}
END_TEST

START_TEST(test_I2_routing_none_gives_linear_attention)
{
    tu_rng g;
    tu_rng_seed(&g, 408);
    for (int rep = 0; rep < 16; rep++) {
        tu_case c;
        random_shape_case(&g, &c, 0);
        c.cfg.routing = STILL_ROUTING_NONE;
        c.cfg.topk = c.cfg.chunk; /* ignored: none means k = 0 */
        c.cfg.local = 0;
        c.cfg.eps_den = 0.0;
        expect_linear(&c, "I2 routing none", rep);
        tu_case_free(&c);
    }
}
END_TEST

/* I3: window routing with w >= N, eps_den = 0 -> the teacher, whatever
 * omega (it scales numerator and denominator alike). */
START_TEST(test_I3_window_covering_sequence_gives_teacher)
{
    tu_rng g;
    tu_rng_seed(&g, 409);
    for (int rep = 0; rep < 20; rep++) {
        tu_case c;
        random_shape_case(&g, &c, rep % 2);
        c.cfg.routing = STILL_ROUTING_WINDOW;
        c.cfg.window = c.shape.seq_len + tu_int(&g, 0, 3);
        if (c.cfg.window < 2)
            c.cfg.window = 2;
        c.cfg.local = tu_int(&g, 0, 3);
        c.cfg.eps_den = 0.0;
        if (rep % 3 == 0) {
            double *w = tu_dalloc(c.shape.heads_q);
            tu_fill_normal(&g, w, c.shape.heads_q, 2.0);
            c.store[7] = w;
            c.params.window_w = w;
            c.use_params = 1;
        }
        expect_teacher(&c, "I3 window >= N", rep);
        tu_case_free(&c);
    }
}
END_TEST

/* I4: G = 1, eps_den = 0: adding c to every v_j adds c to every o_t, for
 * every routing, L and cap. */
START_TEST(test_I4_shift_of_v_shifts_output)
{
    tu_rng g;
    tu_rng_seed(&g, 410);
    for (int rep = 0; rep < 32; rep++) {
        tu_case c;
        random_shape_case(&g, &c, 0);
        c.dtype = STILL_F64;
        c.cfg.routing = rep % 4;
        c.cfg.topk = tu_int(&g, 0, c.cfg.chunk);
        c.cfg.local = tu_int(&g, 0, 3);
        c.cfg.max_sel = tu_int(&g, 0, 3);
        c.cfg.eps_den = 0.0;
        const still_shape *s = &c.shape;
        int64_t no = n_out(&c), nv = s->batch * s->heads_kv * s->seq_len;
        double *o1 = tu_dalloc(no), *o2 = tu_dalloc(no), shift[5];
        tu_fill_normal(&g, shift, s->dim_v, 3.0);
        ck_assert_int_eq(tu_run_ref(&c, o1, NULL, NULL), STILL_OK);
        for (int64_t i = 0; i < nv; i++)
            for (int64_t e = 0; e < s->dim_v; e++)
                c.v[i * s->dim_v + e] += shift[e];
        ck_assert_int_eq(tu_run_ref(&c, o2, NULL, NULL), STILL_OK);
        for (int64_t i = 0; i < no; i++)
            ck_assert_msg(fabs(o2[i] - (o1[i] + shift[i % s->dim_v])) <= 1e-11 * (1 + fabs(o2[i])),
                          "rep %d routing %d: o[%lld] %.17g, want %.17g", rep, c.cfg.routing,
                          (long long)i, o2[i], o1[i] + shift[i % s->dim_v]);
        free(o1);
        free(o2);
        tu_case_free(&c);
    }
}
END_TEST

/* I5 in the forward: NP on, multiplying W (of both maps) by a > 0 changes
 * nothing; with NP off it does (the linear branch is in use). */
START_TEST(test_I5_forward_invariant_to_positive_W_scale)
{
    tu_rng g;
    tu_rng_seed(&g, 411);
    for (int rep = 0; rep < 12; rep++) {
        still_shape s = {1, 2, 1, tu_int(&g, 12, 40), 4, 2, (int)(rep % 2)};
        tu_case c;
        tu_case_init(&c, &g, &s, 1.0, rep % 2);
        /* f >= 2: a softmax of one entry is 1 whatever the scale */
        tu_case_random_params(&c, &g, tu_int(&g, 2, 5), 0, rep % 3 == 0, rep % 2, 0);
        c.cfg.chunk = 4;
        c.cfg.topk = 1;
        c.cfg.local = rep % 2;
        c.cfg.act = rep % 4;
        int64_t no = n_out(&c), nw = s.heads_q * c.params.fq.f * s.dim_qk;
        double *o1 = tu_dalloc(no), *o2 = tu_dalloc(no);
        double *Wq0 = tu_dalloc(nw), *Wk0 = tu_dalloc(nw);
        memcpy(Wq0, c.params.fq.W, (size_t)nw * sizeof(double));
        if (!c.params.fk_tied)
            memcpy(Wk0, c.params.fk.W, (size_t)nw * sizeof(double));
        for (int np = 1; np >= 0; np--) {
            /* NP on: any a > 0; NP off: a moderate a, so that a saturated
             * softmax cannot hide the change */
            const double a = np ? (rep % 3 == 1 ? 0.01 : 42.0) : 3.0;
            c.cfg.npmap = np;
            memcpy((double *)c.params.fq.W, Wq0, (size_t)nw * sizeof(double));
            if (!c.params.fk_tied)
                memcpy((double *)c.params.fk.W, Wk0, (size_t)nw * sizeof(double));
            ck_assert_int_eq(tu_run_ref(&c, o1, NULL, NULL), STILL_OK);
            for (int64_t i = 0; i < nw; i++) {
                ((double *)c.params.fq.W)[i] *= a;
                if (!c.params.fk_tied)
                    ((double *)c.params.fk.W)[i] *= a;
            }
            ck_assert_int_eq(tu_run_ref(&c, o2, NULL, NULL), STILL_OK);
            if (np)
                TU_ASSERT_CLOSE(o1, o2, no, 1e-11 * (1 + tu_max_abs(o1, no)), "I5: scaled W");
            else
                ck_assert_msg(tu_max_abs_diff(o1, o2, no) > 1e-8, "rep %d act %d: NP off ignores scale",
                              rep, c.cfg.act);
        }
        free(Wq0);
        free(Wk0);
        free(o1);
        free(o2);
        tu_case_free(&c);
    }
}
END_TEST

/* G given as all ones equals no gate. */
START_TEST(test_gate_of_ones_equals_no_gate)
{
    tu_rng g;
    tu_rng_seed(&g, 412);
    for (int rep = 0; rep < 8; rep++) {
        tu_case c;
        random_shape_case(&g, &c, 0);
        c.cfg.topk = tu_int(&g, 0, c.cfg.chunk);
        c.cfg.local = tu_int(&g, 0, 2);
        int64_t no = n_out(&c);
        double *o1 = tu_dalloc(no), *o2 = tu_dalloc(no);
        ck_assert_int_eq(tu_run_ref(&c, o1, NULL, NULL), STILL_OK);
        c.gate = tu_dalloc(no);
        for (int64_t i = 0; i < no; i++)
            c.gate[i] = 1.0;
        ck_assert_int_eq(tu_run_ref(&c, o2, NULL, NULL), STILL_OK);
        TU_ASSERT_CLOSE(o1, o2, no, 1e-14 * (1 + tu_max_abs(o1, no)), "gate of ones vs none");
        free(o1);
        free(o2);
        tu_case_free(&c);
    }
}
END_TEST

/* ---- GQA, layouts, dtypes, batches, causality ------------------------------ */

/* Hq query heads over Hk kv heads equal Hq over Hq kv heads holding the
 * kv head h / (Hq/Hk) for query head h (SPEC §0). */
START_TEST(test_gqa_equals_repeated_kv_heads)
{
    tu_rng g;
    tu_rng_seed(&g, 413);
    const int64_t hh[][2] = {{4, 2}, {4, 1}, {6, 2}, {6, 3}};
    for (int rep = 0; rep < 8; rep++) {
        int64_t Hq = hh[rep % 4][0], Hk = hh[rep % 4][1], Gs = Hq / Hk;
        still_shape s = {1 + rep % 2, Hq, Hk, tu_int(&g, 5, 40), 3, 2, (int)(rep % 2)};
        tu_case c;
        tu_case_init(&c, &g, &s, 1.0, rep % 2);
        if (rep % 3)
            tu_case_random_params(&c, &g, 3, 1, 1, rep % 2, 0);
        c.cfg.chunk = CHUNKS[rep % 4];
        c.cfg.topk = tu_int(&g, 0, c.cfg.chunk);
        c.cfg.local = rep % 3;
        c.cfg.max_sel = rep % 2 ? 2 : 0;
        c.cfg.act = rep % 4;
        /* the repeated case */
        tu_case r = c;
        r.shape.heads_kv = Hq;
        int64_t N = s.seq_len;
        r.k = tu_dalloc(s.batch * Hq * N * 3);
        r.v = tu_dalloc(s.batch * Hq * N * 2);
        for (int64_t b = 0; b < s.batch; b++)
            for (int64_t h = 0; h < Hq; h++) {
                memcpy(r.k + tu_bhnd(Hq, N, 3, b, h, 0, 0), c.k + tu_bhnd(Hk, N, 3, b, h / Gs, 0, 0),
                       (size_t)(N * 3) * sizeof(double));
                memcpy(r.v + tu_bhnd(Hq, N, 2, b, h, 0, 0), c.v + tu_bhnd(Hk, N, 2, b, h / Gs, 0, 0),
                       (size_t)(N * 2) * sizeof(double));
            }
        int64_t no = n_out(&c), ns = s.batch * Hq * N;
        double *o1 = tu_dalloc(no), *o2 = tu_dalloc(no), *s1 = tu_dalloc(ns), *s2 = tu_dalloc(ns);
        uint8_t *e1 = tu_alloc((size_t)ns), *e2 = tu_alloc((size_t)ns);
        ck_assert_int_eq(tu_run_ref(&c, o1, s1, e1), STILL_OK);
        ck_assert_int_eq(tu_run_ref(&r, o2, s2, e2), STILL_OK);
        TU_ASSERT_CLOSE(o1, o2, no, 1e-13 * (1 + tu_max_abs(o1, no)), "GQA vs repeated kv");
        TU_ASSERT_CLOSE(s1, s2, ns, 1e-13, "GQA sigma");
        ck_assert(memcmp(e1, e2, (size_t)ns) == 0);
        ck_assert_int_eq(tu_run_teacher(&c, o1), STILL_OK);
        ck_assert_int_eq(tu_run_teacher(&r, o2), STILL_OK);
        TU_ASSERT_CLOSE(o1, o2, no, 1e-13 * (1 + tu_max_abs(o1, no)), "GQA teacher");
        free(r.k);
        free(r.v);
        free(o1);
        free(o2);
        free(s1);
        free(s2);
        free(e1);
        free(e2);
        tu_case_free(&c);
    }
}
END_TEST

/* per-kv selection with groups of one query head is per-query selection */
START_TEST(test_per_kv_with_group_of_one_equals_per_query)
{
    tu_rng g;
    tu_rng_seed(&g, 414);
    for (int rep = 0; rep < 6; rep++) {
        still_shape s = {2, 3, 3, tu_int(&g, 8, 40), 3, 2, (int)(rep % 2)};
        tu_case c;
        tu_case_init(&c, &g, &s, 1.0, 1);
        c.cfg.chunk = CHUNKS[rep % 4];
        c.cfg.topk = tu_int(&g, 0, c.cfg.chunk);
        c.cfg.local = rep % 3;
        c.cfg.max_sel = rep % 2;
        int64_t no = n_out(&c), ns = 2 * 3 * s.seq_len;
        double *o1 = tu_dalloc(no), *o2 = tu_dalloc(no), *s1 = tu_dalloc(ns), *s2 = tu_dalloc(ns);
        uint8_t *e1 = tu_alloc((size_t)ns), *e2 = tu_alloc((size_t)ns);
        ck_assert_int_eq(tu_run_ref(&c, o1, s1, e1), STILL_OK);
        c.cfg.select_per_kv = 1;
        ck_assert_int_eq(tu_run_ref(&c, o2, s2, e2), STILL_OK);
        TU_ASSERT_CLOSE(o1, o2, no, 1e-14 * (1 + tu_max_abs(o1, no)), "per-kv G=1 o");
        TU_ASSERT_CLOSE(s1, s2, ns, 1e-14, "per-kv G=1 sigma");
        ck_assert(memcmp(e1, e2, (size_t)ns) == 0);
        free(o1);
        free(o2);
        free(s1);
        free(s2);
        free(e1);
        free(e2);
        tu_case_free(&c);
    }
}
END_TEST

/* BHND and BNHD hold the same numbers in another order (SPEC §0): the
 * outputs are the same numbers, sigma and selection identical. */
START_TEST(test_layouts_bhnd_bnhd_same_numbers)
{
    tu_rng g;
    tu_rng_seed(&g, 415);
    for (int rep = 0; rep < 12; rep++) {
        tu_case c;
        random_shape_case(&g, &c, rep % 2);
        c.cfg.topk = tu_int(&g, 0, c.cfg.chunk);
        c.cfg.local = tu_int(&g, 0, 3);
        c.cfg.max_sel = tu_int(&g, 0, 2);
        c.cfg.routing = rep % 4;
        int64_t no = n_out(&c), ns = c.shape.batch * c.shape.heads_q * c.shape.seq_len;
        double *o1 = tu_dalloc(no), *o2 = tu_dalloc(no), *s1 = tu_dalloc(ns), *s2 = tu_dalloc(ns);
        uint8_t *e1 = tu_alloc((size_t)ns), *e2 = tu_alloc((size_t)ns);
        c.shape.layout = STILL_LAYOUT_BHND;
        ck_assert_int_eq(tu_run_ref(&c, o1, s1, e1), STILL_OK);
        c.shape.layout = STILL_LAYOUT_BNHD;
        ck_assert_int_eq(tu_run_ref(&c, o2, s2, e2), STILL_OK);
        TU_ASSERT_CLOSE(o1, o2, no, 1e-14 * (1 + tu_max_abs(o1, no)), "BHND vs BNHD o");
        if (c.cfg.routing != STILL_ROUTING_WINDOW) {
            TU_ASSERT_CLOSE(s1, s2, ns, 1e-14, "BHND vs BNHD sigma");
            ck_assert(memcmp(e1, e2, (size_t)ns) == 0);
        }
        ck_assert_int_eq(tu_run_teacher(&c, o2), STILL_OK);
        c.shape.layout = STILL_LAYOUT_BHND;
        ck_assert_int_eq(tu_run_teacher(&c, o1), STILL_OK);
        TU_ASSERT_CLOSE(o1, o2, no, 1e-14 * (1 + tu_max_abs(o1, no)), "BHND vs BNHD teacher");
        free(o1);
        free(o2);
        free(s1);
        free(s2);
        free(e1);
        free(e2);
        tu_case_free(&c);
    }
}
END_TEST

/* SPEC §0: the ref path computes in double from f32 or f64 inputs: f32
 * inputs give the f64 result of the same values, rounded to float. */
START_TEST(test_f32_inputs_give_rounded_f64_result)
{
    tu_rng g;
    tu_rng_seed(&g, 416);
    for (int rep = 0; rep < 10; rep++) {
        tu_case c;
        random_shape_case(&g, &c, rep % 2);
        c.cfg.topk = tu_int(&g, 0, c.cfg.chunk);
        c.cfg.local = tu_int(&g, 0, 2);
        c.dtype = STILL_F32;
        tu_case_round(&c); /* the same values in both dtypes */
        int64_t no = n_out(&c);
        double *o32 = tu_dalloc(no), *o64 = tu_dalloc(no);
        ck_assert_int_eq(tu_run_ref(&c, o32, NULL, NULL), STILL_OK);
        c.dtype = STILL_F64;
        ck_assert_int_eq(tu_run_ref(&c, o64, NULL, NULL), STILL_OK);
        for (int64_t i = 0; i < no; i++) {
            double r = (double)(float)o64[i];
            ck_assert_msg(fabs(o32[i] - r) <= fabs(r) * 1.2e-7 + 1e-30, "o[%lld]: f32 %.9g vs %.9g",
                          (long long)i, o32[i], r);
        }
        free(o32);
        free(o64);
        tu_case_free(&c);
    }
}
END_TEST

/* Each sequence of a batch is computed on its own. */
START_TEST(test_batch_elements_independent)
{
    tu_rng g;
    tu_rng_seed(&g, 417);
    for (int rep = 0; rep < 6; rep++) {
        still_shape s = {3, 2, 1 + rep % 2, tu_int(&g, 5, 40), 3, 2, (int)(rep % 2)};
        tu_case c;
        tu_case_init(&c, &g, &s, 1.0, 1);
        c.cfg.chunk = CHUNKS[rep % 4];
        c.cfg.topk = tu_int(&g, 0, c.cfg.chunk);
        c.cfg.local = rep % 3;
        c.cfg.max_sel = rep % 2 ? 3 : 0;
        c.cfg.select_per_kv = rep % 3 == 0;
        int64_t N = s.seq_len, no = n_out(&c), per = no / 3;
        double *o = tu_dalloc(no), *ob = tu_dalloc(per);
        ck_assert_int_eq(tu_run_ref(&c, o, NULL, NULL), STILL_OK);
        for (int64_t b = 0; b < 3; b++) {
            tu_case one = c;
            one.shape.batch = 1;
            one.q = c.q + b * 2 * N * 3;
            one.k = c.k + b * s.heads_kv * N * 3;
            one.v = c.v + b * s.heads_kv * N * 2;
            one.gate = c.gate + b * 2 * N * 2;
            ck_assert_int_eq(tu_run_ref(&one, ob, NULL, NULL), STILL_OK);
            TU_ASSERT_CLOSE(ob, o + b * per, per, 1e-14 * (1 + tu_max_abs(ob, per)), "batch element");
        }
        free(o);
        free(ob);
        tu_case_free(&c);
    }
}
END_TEST

/* Causality: changing q, k, v, G at positions >= t0 leaves o_t and sigma_t
 * of every t < t0 bitwise unchanged (selection and cap use only complete,
 * older chunks). */
START_TEST(test_output_is_causal)
{
    tu_rng g;
    tu_rng_seed(&g, 418);
    for (int rep = 0; rep < 12; rep++) {
        tu_case c;
        random_shape_case(&g, &c, 1);
        c.dtype = STILL_F64;
        c.cfg.routing = rep % 4;
        c.cfg.topk = tu_int(&g, 0, c.cfg.chunk);
        c.cfg.local = tu_int(&g, 0, 3);
        c.cfg.max_sel = tu_int(&g, 0, 3);
        const still_shape *s = &c.shape;
        int64_t N = s->seq_len, t0 = tu_int(&g, 0, N - 1), d = s->dim_qk, dv = s->dim_v;
        int64_t no = n_out(&c), ns = s->batch * s->heads_q * N;
        double *o1 = tu_dalloc(no), *o2 = tu_dalloc(no), *s1 = tu_dalloc(ns), *s2 = tu_dalloc(ns);
        ck_assert_int_eq(tu_run_ref(&c, o1, s1, NULL), STILL_OK);
        for (int64_t b = 0; b < s->batch; b++) {
            for (int64_t h = 0; h < s->heads_q; h++)
                for (int64_t t = t0; t < N; t++) {
                    for (int64_t i = 0; i < d; i++)
                        c.q[tu_bhnd(s->heads_q, N, d, b, h, t, i)] += 0.7;
                    for (int64_t e = 0; e < dv; e++)
                        c.gate[tu_bhnd(s->heads_q, N, dv, b, h, t, e)] *= 0.5;
                }
            for (int64_t h = 0; h < s->heads_kv; h++)
                for (int64_t t = t0; t < N; t++) {
                    for (int64_t i = 0; i < d; i++)
                        c.k[tu_bhnd(s->heads_kv, N, d, b, h, t, i)] -= 0.9;
                    for (int64_t e = 0; e < dv; e++)
                        c.v[tu_bhnd(s->heads_kv, N, dv, b, h, t, e)] += 2.0;
                }
        }
        ck_assert_int_eq(tu_run_ref(&c, o2, s2, NULL), STILL_OK);
        for (int64_t bh = 0; bh < s->batch * s->heads_q; bh++)
            for (int64_t t = 0; t < t0; t++) {
                for (int64_t e = 0; e < dv; e++)
                    ck_assert_msg(o1[(bh * N + t) * dv + e] == o2[(bh * N + t) * dv + e],
                                  "rep %d: o_%lld changed by positions >= %lld", rep, (long long)t,
                                  (long long)t0);
                if (c.cfg.routing != STILL_ROUTING_WINDOW)
                    ck_assert(s1[bh * N + t] == s2[bh * N + t]);
            }
        free(o1);
        free(o2);
        free(s1);
        free(s2);
        tu_case_free(&c);
    }
}
END_TEST

static Suite *identities_suite(void)
{
    Suite *s = suite_create("ref_identities");
    TCase *tc = tcase_create("identities");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_teacher_matches_direct_softmax);
    tcase_add_test(tc, test_teacher_stable_for_large_logits);
    tcase_add_test(tc, test_scale_default_is_inverse_sqrt_d);
    tcase_add_test(tc, test_I1_topk_equals_chunk_gives_teacher);
    tcase_add_test(tc, test_I1_routing_all_gives_teacher);
    tcase_add_test(tc, test_no_split_before_L_chunks_gives_teacher);
    tcase_add_test(tc, test_I2_topk0_local0_gives_linear_attention);
    tcase_add_test(tc, test_I2_routing_none_gives_linear_attention);
    tcase_add_test(tc, test_I3_window_covering_sequence_gives_teacher);
    tcase_add_test(tc, test_I4_shift_of_v_shifts_output);
    tcase_add_test(tc, test_I5_forward_invariant_to_positive_W_scale);
    tcase_add_test(tc, test_gate_of_ones_equals_no_gate);
    tcase_add_test(tc, test_gqa_equals_repeated_kv_heads);
    tcase_add_test(tc, test_per_kv_with_group_of_one_equals_per_query);
    tcase_add_test(tc, test_layouts_bhnd_bnhd_same_numbers);
    tcase_add_test(tc, test_f32_inputs_give_rounded_f64_result);
    tcase_add_test(tc, test_batch_elements_independent);
    tcase_add_test(tc, test_output_is_causal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(identities_suite());
}
