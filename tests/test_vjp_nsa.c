/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_vjp_nsa.c -- still_ref_vjp for routing nsa (SPEC §17-18), the
 * block selection held fixed: every gradient (q, k, v, the gates) against
 * central finite differences of still_ref_forward's L = sum dO * o (the
 * selection is piecewise constant, so away from ties the forward's
 * derivative is the fixed-selection one); the gates' gradient exactly,
 * since o is linear in them; o and the selection as the forward's; GQA,
 * both layouts, a window shorter than the sequence, a block larger than
 * part of it; the gradients of what nsa does not take are 0; the fast
 * path and the transfer gradient refuse nsa. */
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct vcase {
    still_shape s;
    still_config cfg;
    double *q, *k, *v, *gates, *dout; /* in s.layout, F64 */
} vcase;

static void vcase_init(vcase *c, uint64_t seed, int64_t Hq, int64_t Hk, int64_t N, int64_t d,
                       int64_t dv, int64_t BS, int64_t S, int64_t w, int layout, int gates)
{
    tu_rng g;
    tu_rng_seed(&g, seed);
    memset(c, 0, sizeof *c);
    c->s = (still_shape){1, Hq, Hk, N, d, dv, layout};
    still_config_default(&c->cfg);
    c->cfg.routing = STILL_ROUTING_NSA;
    c->cfg.nsa_block = BS;
    c->cfg.nsa_topk = S;
    c->cfg.window = w;
    c->q = tu_dalloc(Hq * N * d);
    c->k = tu_dalloc(Hk * N * d);
    c->v = tu_dalloc(Hk * N * dv);
    c->dout = tu_dalloc(Hq * N * dv);
    tu_fill_normal(&g, c->q, Hq * N * d, 1.0);
    tu_fill_normal(&g, c->k, Hk * N * d, 1.0);
    tu_fill_normal(&g, c->v, Hk * N * dv, 1.0);
    tu_fill_normal(&g, c->dout, Hq * N * dv, 1.0);
    if (gates) {
        c->gates = tu_dalloc(Hq * N * 3);
        tu_fill(&g, c->gates, Hq * N * 3, -1.0, 2.0);
    }
}

static void vcase_free(vcase *c)
{
    free(c->q); free(c->k); free(c->v); free(c->gates); free(c->dout);
}

static still_tensors tensors(const vcase *c, double *o, int32_t *blocks)
{
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c->q, t.k = c->k, t.v = c->v, t.o = o;
    t.nsa_gates = c->gates;
    t.nsa_blocks = blocks;
    return t;
}

/* L = sum dO * o of the forward. */
static double loss(const vcase *c, double *o)
{
    still_tensors t = tensors(c, o, NULL);
    const int64_t n = c->s.heads_q * c->s.seq_len * c->s.dim_v;
    ck_assert_int_eq(still_ref_forward(&c->cfg, &c->s, NULL, &t), STILL_OK);
    double L = 0.0;
    for (int64_t i = 0; i < n; i++)
        L += c->dout[i] * o[i];
    return L;
}

/* Central differences of L in every element of x [n] against grad. */
static void check_fd(const vcase *c, double *x, int64_t n, const double *grad, double *o,
                     double tol, const char *what)
{
    const double h = 1e-6;
    for (int64_t i = 0; i < n; i++) {
        const double x0 = x[i];
        x[i] = x0 + h;
        const double lp = loss(c, o);
        x[i] = x0 - h;
        const double lm = loss(c, o);
        x[i] = x0;
        const double fd = (lp - lm) / (2 * h);
        ck_assert_msg(fabs(fd - grad[i]) <= tol * (1.0 + fabs(fd)),
                      "%s[%lld]: vjp %.12g, finite difference %.12g", what, (long long)i,
                      grad[i], fd);
    }
}

static const struct {
    int64_t Hq, Hk, N, d, dv, BS, S, w;
    int layout, gates;
} cases[] = {
    {2, 1, 37, 4, 3, 4, 3, 8, STILL_LAYOUT_BHND, 1},  /* GQA 2:1, some blocks unselected */
    {4, 2, 30, 3, 5, 5, 4, 40, STILL_LAYOUT_BNHD, 1}, /* window > N, dv > d */
    {1, 1, 25, 4, 4, 8, 3, 6, STILL_LAYOUT_BHND, 0},  /* gates NULL (ones) */
    {2, 2, 6, 2, 2, 8, 3, 4, STILL_LAYOUT_BNHD, 1},   /* no complete block: o_cmp = 0 */
};

START_TEST(test_nsa_vjp_matches_finite_differences)
{
    vcase c;
    vcase_init(&c, 700 + (uint64_t)_i, cases[_i].Hq, cases[_i].Hk, cases[_i].N, cases[_i].d,
               cases[_i].dv, cases[_i].BS, cases[_i].S, cases[_i].w, cases[_i].layout,
               cases[_i].gates);
    const int64_t Hq = c.s.heads_q, Hk = c.s.heads_kv, N = c.s.seq_len, d = c.s.dim_qk,
                  dv = c.s.dim_v, S = c.cfg.nsa_topk;
    double *o = tu_dalloc(Hq * N * dv), *o_vjp = tu_dalloc(Hq * N * dv);
    double *dq = tu_dalloc(Hq * N * d), *dk = tu_dalloc(Hk * N * d), *dvv = tu_dalloc(Hk * N * dv);
    double *dg = tu_dalloc(Hq * N * 3);
    int32_t *bl = calloc((size_t)(Hq * N * S), sizeof *bl), *bl_vjp = calloc((size_t)(Hq * N * S),
                                                                             sizeof *bl);
    still_grads g;
    memset(&g, 0, sizeof g);
    g.dq = dq, g.dk = dk, g.dv = dvv, g.dnsa_gates = dg;
    still_tensors t = tensors(&c, o_vjp, bl_vjp);
    ck_assert_int_eq(still_ref_vjp(&c.cfg, &c.s, NULL, &t, c.dout, &g), STILL_OK);
    /* o and the selection are the forward's */
    still_tensors tf = tensors(&c, o, bl);
    ck_assert_int_eq(still_ref_forward(&c.cfg, &c.s, NULL, &tf), STILL_OK);
    TU_ASSERT_CLOSE(o_vjp, o, Hq * N * dv, 1e-13 * (1.0 + tu_max_abs(o, Hq * N * dv)), "o");
    ck_assert(memcmp(bl, bl_vjp, (size_t)(Hq * N * S) * sizeof *bl) == 0);

    check_fd(&c, c.q, Hq * N * d, dq, o, 1e-6, "dq");
    check_fd(&c, c.k, Hk * N * d, dk, o, 1e-6, "dk");
    check_fd(&c, c.v, Hk * N * dv, dvv, o, 1e-6, "dv");
    if (c.gates) {
        check_fd(&c, c.gates, Hq * N * 3, dg, o, 1e-7, "dgates");
    } else { /* at gates 1: dL/dg_b = sum dO * o_b, and the three sum to L */
        double sum = 0.0, L = loss(&c, o);
        for (int64_t i = 0; i < Hq * N * 3; i++)
            sum += dg[i];
        ck_assert_msg(fabs(sum - L) <= 1e-10 * (1.0 + fabs(L)), "sum dgates %g, L %g", sum, L);
    }
    free(o); free(o_vjp); free(dq); free(dk); free(dvv); free(dg); free(bl); free(bl_vjp);
    vcase_free(&c);
}
END_TEST

/* What nsa does not take has gradient 0 (buffers filled with garbage
 * first); the fast VJP and the transfer gradient refuse routing nsa. */
START_TEST(test_nsa_vjp_other_gradients_and_refusals)
{
    vcase c;
    vcase_init(&c, 77, 2, 1, 20, 4, 4, 4, 3, 8, STILL_LAYOUT_BHND, 1);
    const int64_t Hq = 2, N = 20, dv = 4, d = 4;
    double *dgate = tu_dalloc(Hq * N * dv), *dw = tu_dalloc(Hq), *dq = tu_dalloc(Hq * N * d);
    for (int64_t i = 0; i < Hq * N * dv; i++)
        dgate[i] = 7.0;
    dw[0] = dw[1] = 7.0;
    still_grads g;
    memset(&g, 0, sizeof g);
    g.dgate = dgate, g.dwindow_w = dw, g.dq = dq;
    still_tensors t = tensors(&c, NULL, NULL);
    ck_assert_int_eq(still_ref_vjp(&c.cfg, &c.s, NULL, &t, c.dout, &g), STILL_OK);
    ck_assert(tu_max_abs(dgate, Hq * N * dv) == 0.0 && tu_max_abs(dw, Hq) == 0.0);
    ck_assert(tu_max_abs(dq, Hq * N * d) > 0.0);
    ck_assert_int_eq(still_ref_vjp(&c.cfg, &c.s, NULL, &t, NULL, &g), STILL_E_NULL);
    ck_assert_int_eq(still_ref_vjp(&c.cfg, &c.s, NULL, &t, c.dout, NULL), STILL_E_NULL);
    c.dout[5] = NAN;
    ck_assert_int_eq(still_ref_vjp(&c.cfg, &c.s, NULL, &t, c.dout, &g), STILL_E_NONFINITE);
    c.dout[5] = 0.0;
    still_config ranged = c.cfg;
    ranged.query_begin = 0, ranged.query_end = 5;
    ck_assert_int_eq(still_ref_vjp(&ranged, &c.s, NULL, &t, c.dout, &g), STILL_E_UNSUPPORTED);
    /* the fast path has no nsa yet; nsa has no parameters to transfer */
    float *qf = calloc((size_t)(Hq * N * d), sizeof(float)), *kf = calloc((size_t)(N * d), 4),
          *vf = calloc((size_t)(N * dv), 4), *df = calloc((size_t)(Hq * N * dv), 4);
    still_tensors tf;
    memset(&tf, 0, sizeof tf);
    tf.dtype = STILL_F32, tf.q = qf, tf.k = kf, tf.v = vf;
    ck_assert_int_eq(still_vjp(&c.cfg, &c.s, NULL, &tf, df, &g), STILL_E_UNSUPPORTED);
    double lossv = 0.0;
    ck_assert_int_eq(still_ref_transfer_grad(&c.cfg, &c.s, NULL, &t, NULL, &lossv, &g),
                     STILL_E_UNSUPPORTED);
    free(qf); free(kf); free(vf); free(df);
    free(dgate); free(dw); free(dq);
    vcase_free(&c);
}
END_TEST

static Suite *vjp_nsa_suite(void)
{
    Suite *s = suite_create("vjp_nsa");
    TCase *tc = tcase_create("vjp_nsa");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_nsa_vjp_matches_finite_differences, 0,
                        (int)(sizeof cases / sizeof *cases));
    tcase_add_test(tc, test_nsa_vjp_other_gradients_and_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(vjp_nsa_suite());
}
