/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_fast_teacher.c -- the fast teacher (SPEC §1, flash-style) against
 * still_ref_teacher on every ISA this CPU runs, its thread independence
 * (SPEC I7), and the fast gating projection (SPEC §6) against the ref. */
#include "fast.h"
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct teacher_case {
    int64_t B, Hq, Hk, N, d, dv;
    int layout;
    double sd, scale;
} teacher_case;

static const teacher_case cases[] = {
    {1, 2, 2, 150, 16, 8, STILL_LAYOUT_BHND, 1.0, 0.0},
    {2, 4, 2, 300, 24, 20, STILL_LAYOUT_BNHD, 1.5, 0.0},   /* GQA, > one key tile */
    {1, 3, 1, 70, 13, 5, STILL_LAYOUT_BHND, 2.0, 0.3},     /* odd dims, MQA */
    {1, 1, 1, 600, 64, 64, STILL_LAYOUT_BHND, 1.0, 0.0},   /* several key tiles */
    {1, 2, 1, 900, 32, 16, STILL_LAYOUT_BNHD, 1.0, 0.0},   /* 3 query blocks of <= 384,
                                                             * one starting mid key tile */
    {1, 1, 1, 1, 8, 8, STILL_LAYOUT_BNHD, 1.0, 0.0},       /* one token */
};

static int isa_list(int *isas)
{
    int n = 0;
    for (int isa = STILL_ISA_GENERIC; isa <= STILL_ISA_NEON; isa++)
        if (still__isa_supported(isa))
            isas[n++] = isa;
    return n;
}

/* still_teacher on the case: o [B,Hq,N,dv] in the case's layout (float). */
static int run_teacher(const tu_case *c, int isa, int threads, float *o)
{
    const still_shape *s = &c->shape;
    const int64_t B = s->batch, Hq = s->heads_q, Hk = s->heads_kv, N = s->seq_len;
    float *q = tu_alloc((size_t)(B * Hq * N * s->dim_qk) * sizeof(float));
    float *k = tu_alloc((size_t)(B * Hk * N * s->dim_qk) * sizeof(float));
    float *v = tu_alloc((size_t)(B * Hk * N * s->dim_v) * sizeof(float));
    still_config cfg = c->cfg;
    still_tensors t;
    tu_to_layout(c->q, B, Hq, N, s->dim_qk, s->layout, STILL_F32, q);
    tu_to_layout(c->k, B, Hk, N, s->dim_qk, s->layout, STILL_F32, k);
    tu_to_layout(c->v, B, Hk, N, s->dim_v, s->layout, STILL_F32, v);
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F32;
    t.q = q, t.k = k, t.v = v, t.o = o;
    cfg.isa = isa;
    cfg.threads = threads;
    int rc = still_teacher(&cfg, s, &t);
    free(q);
    free(k);
    free(v);
    return rc;
}

static void build(const teacher_case *tc, uint64_t seed, tu_case *c)
{
    tu_rng g;
    still_shape shape = {tc->B, tc->Hq, tc->Hk, tc->N, tc->d, tc->dv, tc->layout};
    tu_rng_seed(&g, seed);
    tu_case_init(c, &g, &shape, tc->sd, 0);
    c->dtype = STILL_F32;
    c->cfg.scale = tc->scale;
    tu_case_round(c);
}

/* SPEC §10 tolerance: 1e-5 max|v|. */
START_TEST(test_fast_teacher_matches_ref_on_every_isa)
{
    const teacher_case *tc = &cases[_i];
    int isas[8], n = isa_list(isas);
    tu_case c;
    build(tc, 300 + (uint64_t)_i, &c);
    const int64_t no = tc->B * tc->Hq * tc->N * tc->dv;
    const double vmax = tu_max_abs(c.v, tc->B * tc->Hk * tc->N * tc->dv);
    double *want = tu_dalloc(no), *got = tu_dalloc(no);
    float *o = tu_alloc((size_t)no * sizeof(float));
    ck_assert_int_eq(tu_run_teacher(&c, want), STILL_OK);
    for (int j = 0; j < n; j++) {
        ck_assert_int_eq(run_teacher(&c, isas[j], 2, o), STILL_OK);
        tu_from_layout(o, tc->B, tc->Hq, tc->N, tc->dv, tc->layout, STILL_F32, got);
        TU_ASSERT_CLOSE(got, want, no, 1e-5 * vmax, still__isa_name(isas[j]));
    }
    free(want);
    free(got);
    free(o);
    tu_case_free(&c);
}
END_TEST

/* SPEC I7: the same bits for any thread count, and again on a second call. */
START_TEST(test_fast_teacher_bitwise_across_threads)
{
    const teacher_case tc = {2, 4, 2, 800, 16, 16, STILL_LAYOUT_BHND, 1.0, 0.0};
    int isas[8], n = isa_list(isas);
    tu_case c;
    build(&tc, 99, &c);
    const size_t no = (size_t)(tc.B * tc.Hq * tc.N * tc.dv);
    float *o1 = tu_alloc(no * sizeof(float)), *o2 = tu_alloc(no * sizeof(float));
    for (int j = 0; j < n; j++) {
        ck_assert_int_eq(run_teacher(&c, isas[j], 1, o1), STILL_OK);
        for (int threads = 2; threads <= 3; threads++) {
            ck_assert_int_eq(run_teacher(&c, isas[j], threads, o2), STILL_OK);
            ck_assert(memcmp(o1, o2, no * sizeof(float)) == 0);
        }
    }
    free(o1);
    free(o2);
    tu_case_free(&c);
}
END_TEST

/* SPEC §6: G = sigmoid(X Wg^T), float (BLAS) against the double ref. */
START_TEST(test_fast_gate_projection_matches_ref)
{
    const int64_t B = 2, N = 37, hidden = 40, Hq = 3, dv = 5;
    const int64_t nx = B * N * hidden, nw = Hq * dv * hidden, ng = B * Hq * N * dv;
    tu_rng g;
    double *X = tu_dalloc(nx), *W = tu_dalloc(nw), *want = tu_dalloc(ng);
    float *Xf = tu_alloc((size_t)nx * sizeof(float)), *Wf = tu_alloc((size_t)nw * sizeof(float));
    float *G = tu_alloc((size_t)ng * sizeof(float));
    tu_rng_seed(&g, 4);
    tu_fill_normal(&g, X, nx, 1.0);
    tu_fill_normal(&g, W, nw, 0.5);
    for (int64_t i = 0; i < nx; i++)
        X[i] = Xf[i] = (float)X[i];
    for (int64_t i = 0; i < nw; i++)
        W[i] = Wf[i] = (float)W[i];
    ck_assert_int_eq(still_ref_gate_projection(B, N, hidden, Hq, dv, X, W, want), STILL_OK);
    ck_assert_int_eq(still_gate_projection(B, N, hidden, Hq, dv, Xf, Wf, G), STILL_OK);
    for (int64_t i = 0; i < ng; i++)
        ck_assert_msg(fabs(G[i] - want[i]) < 1e-5, "G[%lld] %.9g vs %.9g", (long long)i, G[i],
                      want[i]);
    Xf[3] = INFINITY;
    ck_assert_int_eq(still_gate_projection(B, N, hidden, Hq, dv, Xf, Wf, G), STILL_E_NONFINITE);
    ck_assert_int_eq(still_gate_projection(B, N, 0, Hq, dv, Xf, Wf, G), STILL_E_SHAPE);
    ck_assert_int_eq(still_gate_projection(B, N, hidden, Hq, dv, NULL, Wf, G), STILL_E_NULL);
    free(X);
    free(W);
    free(want);
    free(Xf);
    free(Wf);
    free(G);
}
END_TEST

static Suite *teacher_suite(void)
{
    Suite *s = suite_create("fast_teacher");
    TCase *tc = tcase_create("fast_teacher");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_fast_teacher_matches_ref_on_every_isa, 0,
                        (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, test_fast_teacher_bitwise_across_threads);
    tcase_add_test(tc, test_fast_gate_projection_matches_ref);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(teacher_suite());
}
