/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_fast_liger.c -- mixer liger (SPEC §16) on the fast path: against
 * the oracle within SPEC §10 (max |o_fast - o_ref| <= 1e-5 max |v|) on
 * every ISA this CPU runs, GQA, both layouts, q_lin/k_lin, w > N; the
 * bits independent of the thread count (SPEC I7); the gate ignored as by
 * the ref; refusals. */
#include "fast.h"
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct fcase {
    still_shape shape;
    still_config cfg;
    /* in the case's layout: double for the ref, float for the fast path,
     * the same values (float-representable) */
    double *q, *k, *v, *q_lin, *k_lin;
    float *qf, *kf, *vf, *q_linf, *k_linf;
    int64_t nq, nk, nv, no;
} fcase;

static double *fill(tu_rng *g, int64_t n, double sd, float **f)
{
    double *x = tu_dalloc(n);
    *f = tu_alloc((size_t)n * sizeof(float));
    tu_fill_normal(g, x, n, sd);
    for (int64_t i = 0; i < n; i++)
        x[i] = (*f)[i] = (float)x[i];
    return x;
}

static void fcase_init(fcase *c, uint64_t seed, int64_t B, int64_t Hq, int64_t Hk, int64_t N,
                       int64_t d, int64_t dv, int64_t w, int with_lin, int layout)
{
    tu_rng g;
    tu_rng_seed(&g, seed);
    memset(c, 0, sizeof *c);
    c->shape = (still_shape){B, Hq, Hk, N, d, dv, layout};
    still_config_default(&c->cfg);
    c->cfg.mixer = STILL_MIXER_LIGER;
    c->cfg.window = w;
    c->cfg.alpha = 0.6;
    c->cfg.beta = 0.7;
    c->nq = B * Hq * N * d, c->nk = B * Hk * N * d, c->nv = B * Hk * N * dv;
    c->no = B * Hq * N * dv;
    c->q = fill(&g, c->nq, 1.0, &c->qf);
    c->k = fill(&g, c->nk, 1.0, &c->kf);
    c->v = fill(&g, c->nv, 1.0, &c->vf);
    if (with_lin) {
        c->q_lin = fill(&g, c->nq, 1.5, &c->q_linf);
        c->k_lin = fill(&g, c->nk, 1.5, &c->k_linf);
    }
}

static void fcase_free(fcase *c)
{
    free(c->q); free(c->k); free(c->v); free(c->q_lin); free(c->k_lin);
    free(c->qf); free(c->kf); free(c->vf); free(c->q_linf); free(c->k_linf);
}

static int run_ref(const fcase *c, double *o)
{
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c->q, t.k = c->k, t.v = c->v, t.o = o, t.q_lin = c->q_lin, t.k_lin = c->k_lin;
    return still_ref_forward(&c->cfg, &c->shape, NULL, &t);
}

static int run_fast(const fcase *c, int isa, int threads, const float *gate, float *o)
{
    still_config cfg = c->cfg;
    still_tensors t;
    cfg.isa = isa;
    cfg.threads = threads;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F32;
    t.q = c->qf, t.k = c->kf, t.v = c->vf, t.o = o, t.q_lin = c->q_linf, t.k_lin = c->k_linf;
    t.gate = gate;
    return still_forward(&cfg, &c->shape, NULL, &t);
}

static const struct {
    int64_t B, Hq, Hk, N, d, dv, w;
    int lin, layout;
} shapes[] = {
    {1, 1, 1, 40, 4, 3, 5, 0, STILL_LAYOUT_BHND},
    {2, 4, 2, 97, 16, 16, 8, 1, STILL_LAYOUT_BHND},
    {1, 6, 2, 130, 8, 5, 32, 1, STILL_LAYOUT_BNHD},
    {1, 2, 1, 33, 3, 17, 64, 1, STILL_LAYOUT_BNHD}, /* w > N */
    {1, 2, 2, 300, 32, 32, 64, 0, STILL_LAYOUT_BHND},
};

/* SPEC §10: every ISA against the ref. */
START_TEST(test_fast_matches_ref_within_spec10)
{
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        fcase c;
        fcase_init(&c, 1800 + s, shapes[s].B, shapes[s].Hq, shapes[s].Hk, shapes[s].N,
                   shapes[s].d, shapes[s].dv, shapes[s].w, shapes[s].lin, shapes[s].layout);
        double *want = tu_dalloc(c.no), *got = tu_dalloc(c.no);
        float *o = tu_alloc((size_t)c.no * sizeof(float));
        ck_assert_int_eq(run_ref(&c, want), STILL_OK);
        const double tol = 1e-5 * tu_max_abs(c.v, c.nv);
        for (int isa = STILL_ISA_GENERIC; isa <= STILL_ISA_NEON; isa++) {
            if (!still__isa_supported(isa))
                continue;
            ck_assert_int_eq(run_fast(&c, isa, 2, NULL, o), STILL_OK);
            for (int64_t i = 0; i < c.no; i++)
                got[i] = o[i];
            ck_assert_msg(tu_max_abs_diff(got, want, c.no) <= tol,
                          "shape %zu isa %d: max diff %g > %g", s, isa,
                          tu_max_abs_diff(got, want, c.no), tol);
        }
        free(want); free(got); free(o);
        fcase_free(&c);
    }
}
END_TEST

/* SPEC I7: the same bits with 1, 2, 3 and 8 threads; a gate changes
 * nothing (liger has none, SPEC §16). */
START_TEST(test_fast_bits_independent_of_threads)
{
    fcase c;
    fcase_init(&c, 1810, 2, 4, 2, 150, 8, 8, 16, 1, STILL_LAYOUT_BNHD);
    float *o1 = tu_alloc((size_t)c.no * sizeof(float)), *on = tu_alloc((size_t)c.no * sizeof(float));
    float *gate = tu_alloc((size_t)c.no * sizeof(float));
    for (int64_t i = 0; i < c.no; i++)
        gate[i] = 0.25f;
    ck_assert_int_eq(run_fast(&c, STILL_ISA_AUTO, 1, NULL, o1), STILL_OK);
    static const int threads[] = {2, 3, 8};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(run_fast(&c, STILL_ISA_AUTO, threads[i], i == 2 ? gate : NULL, on),
                         STILL_OK);
        ck_assert_msg(memcmp(o1, on, (size_t)c.no * sizeof(float)) == 0, "threads %d differ",
                      threads[i]);
    }
    free(o1); free(on); free(gate);
    fcase_free(&c);
}
END_TEST

/* SPEC §16 on the fast path: alpha = 1, beta = 0 is the window engine's
 * routing window with rest = drop bitwise; alpha = 0 leaves GLA alone,
 * which differs from the window branch. */
START_TEST(test_fast_branches_apart)
{
    fcase c;
    fcase_init(&c, 1820, 1, 2, 1, 60, 4, 4, 6, 1, STILL_LAYOUT_BHND);
    float *o = tu_alloc((size_t)c.no * sizeof(float)), *w = tu_alloc((size_t)c.no * sizeof(float));
    c.cfg.alpha = 1.0, c.cfg.beta = 0.0;
    ck_assert_int_eq(run_fast(&c, STILL_ISA_AUTO, 1, NULL, o), STILL_OK);
    still_config win;
    still_config_default(&win);
    win.routing = STILL_ROUTING_WINDOW;
    win.rest = STILL_REST_DROP;
    win.eps_den = 0.0;
    win.window = 6;
    win.threads = 1;
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F32;
    t.q = c.qf, t.k = c.kf, t.v = c.vf, t.o = w;
    ck_assert_int_eq(still_forward(&win, &c.shape, NULL, &t), STILL_OK);
    ck_assert(memcmp(o, w, (size_t)c.no * sizeof(float)) == 0);
    c.cfg.alpha = 0.0, c.cfg.beta = 1.0;
    double *want = tu_dalloc(c.no), *got = tu_dalloc(c.no);
    ck_assert_int_eq(run_fast(&c, STILL_ISA_AUTO, 1, NULL, o), STILL_OK);
    ck_assert_int_eq(run_ref(&c, want), STILL_OK);
    for (int64_t i = 0; i < c.no; i++)
        got[i] = o[i];
    ck_assert(tu_max_abs_diff(got, want, c.no) <= 1e-5 * tu_max_abs(c.v, c.nv));
    free(o); free(w); free(want); free(got);
    fcase_free(&c);
}
END_TEST

/* Refusals before any work: float64 inputs, a non-finite k_lin, a query
 * range, a forced selection. */
START_TEST(test_fast_refusals)
{
    fcase c;
    fcase_init(&c, 1830, 1, 1, 1, 8, 2, 2, 3, 1, STILL_LAYOUT_BHND);
    float o[16];
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c.q, t.k = c.k, t.v = c.v, t.o = o;
    ck_assert_int_ne(still_forward(&c.cfg, &c.shape, NULL, &t), STILL_OK);
    c.k_linf[3] = INFINITY;
    ck_assert_int_eq(run_fast(&c, STILL_ISA_AUTO, 1, NULL, o), STILL_E_NONFINITE);
    c.k_linf[3] = 0.0f;
    c.cfg.query_end = 4;
    ck_assert_int_eq(run_fast(&c, STILL_ISA_AUTO, 1, NULL, o), STILL_E_UNSUPPORTED);
    c.cfg.query_end = 0;
    ck_assert_int_eq(run_fast(&c, STILL_ISA_AUTO, 1, NULL, o), STILL_OK);
    fcase_free(&c);
}
END_TEST

static Suite *fast_liger_suite(void)
{
    Suite *s = suite_create("fast_liger");
    TCase *tc = tcase_create("liger");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_fast_matches_ref_within_spec10);
    tcase_add_test(tc, test_fast_bits_independent_of_threads);
    tcase_add_test(tc, test_fast_branches_apart);
    tcase_add_test(tc, test_fast_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(fast_liger_suite());
}
