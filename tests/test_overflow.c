/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * test_overflow.c -- float32 overflow on the fast path is reported, never
 * a silent wrong result (SPEC §10: finite correct results, or an error).
 *
 * Each family scales one input by s from 1 to float's range (and beyond it
 * for the double parameters W, b, u), in a way whose exact result is
 * well-conditioned in float -- q·s with k/s keeps the logits; NP-Map is
 * invariant under W·s and u·s; the output is linear in v and in the gate --
 * and runs every fast entry point on every ISA this machine runs.  Each run
 * must give STILL_E_NONFINITE, or STILL_OK with outputs within SPEC §10 of
 * the ref path in double on the same (float-rounded) inputs, given the fast
 * path's own selection (selection_in), so near-ties in sigma do not
 * matter.  At s = 1 STILL_OK is required (no false refusal).
 *
 * On the code before this suite, the float sums of squares of NP-Map
 * overflowed for |q| >= ~1.8e19 or W >= ~1e19, and the activation's max()
 * and the 1e-12 floor turned the inf/NaN into valid-looking features:
 * STILL_OK with outputs off by most of max|v|; a logit that overflowed to
 * -inf passed for a masked key; a gate pre-activation that overflowed
 * passed through the sigmoid as 0 or 1; the LoRA products returned inf
 * with STILL_OK; the transfer gradient's float features of inf made its
 * denominators infinite and o = 0.
 */
#include "fast.h"
#include "harden.h"

#include <float.h>

enum { FAM_QK, FAM_W, FAM_B, FAM_U, FAM_V, FAM_GATE, N_FAM };
static const char *fam_name[N_FAM] = {"q*s,k/s", "W*s", "b*s", "u*s", "v*s", "gate*s"};

/* the scales: powers of ten, float's square-root range, its top */
static const double scales[] = {1.0,    1e3,    1e10,   1e18,   1.8e19, 2e19,   4e19,
                                1e20,   1e25,   1e30,   1e37,   1e38,   3e38,   1e39,
                                1e100,  1e300};
#define N_SCALES ((int)(sizeof scales / sizeof scales[0]))

typedef struct ovcase {
    still_shape s;
    still_config c;
    int64_t f;
    double *q, *k, *v, *gate; /* float-representable values, BHND */
    double *W, *b, *u;        /* [Hq][f][d], [Hq][f], [Hq][d] */
    still_params p;
} ovcase;

static double rnd_f(uint64_t *seed, double lo, double hi)
{
    return (double)(float)(lo + (hi - lo) * hd_unit(seed));
}

/* A hybrid case: cache (k = 1 of C = 4), raw exact chunk (L = 1), folded
 * linear tokens, two query heads sharing a kv head. */
static void ov_make(ovcase *x, int fam, double s, int act)
{
    memset(x, 0, sizeof *x);
    x->s = (still_shape){1, 2, 1, 22, 8, 4, STILL_LAYOUT_BHND};
    still_config_default(&x->c);
    x->c.chunk = 4;
    x->c.topk = 1;
    x->c.local = 1;
    x->c.act = act;
    x->f = 8;
    const still_shape *sh = &x->s;
    const int64_t H = sh->heads_q, d = sh->dim_qk, f = x->f;
    x->q = hd_dalloc(hd_nq(sh));
    x->k = hd_dalloc(hd_nk(sh));
    x->v = hd_dalloc(hd_nv(sh));
    x->gate = hd_dalloc(hd_no(sh));
    x->W = hd_dalloc(H * f * d);
    x->b = hd_dalloc(H * f);
    x->u = hd_dalloc(H * d);
    uint64_t seed = 4242;
    /* float-rounded after scaling: both paths see the same values */
    const double sf = s > FLT_MAX / 2 ? FLT_MAX / 2 : s;
    for (int64_t i = 0; i < hd_nq(sh); i++)
        x->q[i] = (double)(float)(rnd_f(&seed, -1, 1) * (fam == FAM_QK ? sf : 1.0));
    for (int64_t i = 0; i < hd_nk(sh); i++)
        x->k[i] = (double)(float)(rnd_f(&seed, -1, 1) / (fam == FAM_QK ? sf : 1.0));
    for (int64_t i = 0; i < hd_nv(sh); i++)
        x->v[i] = (double)(float)(rnd_f(&seed, -1, 1) * (fam == FAM_V ? sf : 1.0));
    for (int64_t i = 0; i < hd_no(sh); i++)
        x->gate[i] = (double)(float)(rnd_f(&seed, 0.5, 1) * (fam == FAM_GATE ? sf : 1.0));
    /* the parameters are double: scaled beyond float's range too */
    for (int64_t i = 0; i < H * f * d; i++)
        x->W[i] = rnd_f(&seed, -1, 1) * (fam == FAM_W || fam == FAM_B ? s : 1.0);
    for (int64_t i = 0; i < H * f; i++)
        x->b[i] = rnd_f(&seed, -1, 1) * (fam == FAM_B ? s : 1.0);
    for (int64_t i = 0; i < H * d; i++)
        x->u[i] = rnd_f(&seed, -1, 1) * (fam == FAM_U ? s : 1.0);
    still_params_default(&x->p);
    x->p.fq.f = f;
    x->p.fq.W = x->W;
    x->p.fq.b = x->b;
    x->p.fq.u = x->u;
}

static void ov_free(ovcase *x)
{
    free(x->q), free(x->k), free(x->v), free(x->gate);
    free(x->W), free(x->b), free(x->u);
}

static int isa_list(int *isas)
{
    int n = 0;
    for (int isa = STILL_ISA_GENERIC; isa <= STILL_ISA_NEON; isa++)
        if (still__isa_supported(isa))
            isas[n++] = isa;
    return n;
}

/* The tolerance of SPEC §10: 1e-5 max|v|, times max|g| (o is linear in g). */
static double ov_tol(const ovcase *x)
{
    const double g = hd_max_abs(x->gate, hd_no(&x->s));
    return 1e-5 * hd_max_abs(x->v, hd_nv(&x->s)) * (g > 1.0 ? g : 1.0);
}

/* Asserts the contract on one fast result: STILL_E_NONFINITE, or STILL_OK
 * with o within tol of want. */
static void ov_judge(int rc, const double *o, const double *want, int64_t n, double tol,
                     double s, const char *what, int *refused)
{
    if (rc == STILL_E_NONFINITE) {
        ck_assert_msg(s != 1.0, "%s: refused at s = 1", what);
        ++*refused;
        return;
    }
    ck_assert_msg(rc == STILL_OK, "%s: %s", what, still_strerror(rc));
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(o[i] - want[i]) <= tol,
                      "%s: STILL_OK but o[%lld] = %.9g, the ref gives %.9g (|diff| %.3g > %.3g)",
                      what, (long long)i, o[i], want[i], fabs(o[i] - want[i]), tol);
}

/* still_forward, then a fast state fed the whole sequence, on one ISA;
 * the ref given the prefill's selection. */
static void ov_forward(const ovcase *x, int isa, double s, const char *what, int *refused)
{
    const still_shape *sh = &x->s;
    const int64_t no = hd_no(sh), ns = hd_ns(sh);
    float *q = hd_to_float(x->q, hd_nq(sh)), *k = hd_to_float(x->k, hd_nk(sh));
    float *v = hd_to_float(x->v, hd_nv(sh)), *g = hd_to_float(x->gate, no);
    float *of = hd_falloc(no);
    double *o = hd_dalloc(no), *want = hd_dalloc(no);
    uint8_t *sel = hd_alloc((size_t)ns);
    still_config c = x->c;
    c.isa = isa;
    c.threads = 1;
    still_tensors t = {0};
    t.dtype = STILL_F32;
    t.q = q, t.k = k, t.v = v, t.gate = g, t.o = of, t.selected = sel;
    int rc = still_forward(&c, sh, &x->p, &t);
    char w2[160];
    if (rc == STILL_OK) {
        still_tensors tr = {0};
        tr.dtype = STILL_F64;
        tr.q = x->q, tr.k = x->k, tr.v = x->v, tr.gate = x->gate, tr.o = want;
        tr.selection_in = sel;
        int rr = still_ref_forward(&x->c, sh, &x->p, &tr);
        ck_assert_msg(rr == STILL_OK, "%s: the ref: %s", what, still_strerror(rr));
        for (int64_t i = 0; i < no; i++)
            o[i] = of[i];
    }
    snprintf(w2, sizeof w2, "%s still_forward", what);
    ov_judge(rc, o, want, no, ov_tol(x), s, w2, refused);

    /* the state: one block of N tokens, the prefill's computation */
    still_state *st = NULL;
    ck_assert_int_eq(still_state_create(&c, sh, &x->p, STILL_PATH_FAST, &st), STILL_OK);
    t.selected = NULL;
    memset(of, 0, (size_t)no * sizeof *of);
    int rs = still_state_append(st, sh->seq_len, &t);
    int64_t P = -1;
    ck_assert_int_eq(still_state_position(st, &P), STILL_OK);
    ck_assert_msg(P == sh->seq_len, "%s: the state's position %lld", what, (long long)P);
    still_state_destroy(st);
    snprintf(w2, sizeof w2, "%s still_state_append", what);
    if (rs == STILL_OK && rc != STILL_OK)
        ck_abort_msg("%s: STILL_OK where the prefill said %s", w2, still_strerror(rc));
    for (int64_t i = 0; rs == STILL_OK && i < no; i++)
        o[i] = of[i];
    ov_judge(rs, o, want, no, ov_tol(x), s, w2, refused);

    /* decode: one token per append (the one-query kernels: the ring of
     * packed keys, the cache panels); refused if any append is */
    ck_assert_int_eq(still_state_create(&c, sh, &x->p, STILL_PATH_FAST, &st), STILL_OK);
    const int64_t N = sh->seq_len, d = sh->dim_qk, dv = sh->dim_v, Hq = sh->heads_q;
    float q1[16 * 8], k1[8], v1[4], g1[16 * 4], o1[16 * 4];
    ck_assert(Hq <= 16 && d <= 8 && dv <= 4 && sh->heads_kv == 1 && sh->batch == 1);
    rs = STILL_OK;
    for (int64_t tk = 0; tk < N; tk++) {
        for (int64_t h = 0; h < Hq; h++) {
            memcpy(q1 + h * d, q + (h * N + tk) * d, (size_t)d * sizeof(float));
            memcpy(g1 + h * dv, g + (h * N + tk) * dv, (size_t)dv * sizeof(float));
        }
        memcpy(k1, k + tk * d, (size_t)d * sizeof(float));
        memcpy(v1, v + tk * dv, (size_t)dv * sizeof(float));
        still_tensors t1 = {0};
        t1.dtype = STILL_F32;
        t1.q = q1, t1.k = k1, t1.v = v1, t1.gate = g1, t1.o = o1;
        int r1 = still_state_append(st, 1, &t1);
        ck_assert_msg(r1 == STILL_OK || r1 == STILL_E_NONFINITE, "%s decode: %s", what,
                      still_strerror(r1));
        if (r1)
            rs = r1;
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t e = 0; e < dv; e++)
                o[(h * N + tk) * dv + e] = o1[h * dv + e];
    }
    still_state_destroy(st);
    snprintf(w2, sizeof w2, "%s decode", what);
    if (rs == STILL_OK && rc != STILL_OK)
        ck_abort_msg("%s: STILL_OK where the prefill said %s", w2, still_strerror(rc));
    ov_judge(rs, o, want, no, ov_tol(x), s, w2, refused);
    free(q), free(k), free(v), free(g), free(of), free(o), free(want), free(sel);
}

/* still_teacher on one ISA against still_ref_teacher. */
static void ov_teacher(const ovcase *x, int isa, double s, const char *what, int *refused)
{
    const still_shape *sh = &x->s;
    const int64_t no = hd_no(sh);
    float *q = hd_to_float(x->q, hd_nq(sh)), *k = hd_to_float(x->k, hd_nk(sh));
    float *v = hd_to_float(x->v, hd_nv(sh)), *of = hd_falloc(no);
    double *o = hd_dalloc(no), *want = hd_dalloc(no);
    still_config c = x->c;
    c.isa = isa;
    still_tensors t = {0};
    t.dtype = STILL_F32;
    t.q = q, t.k = k, t.v = v, t.o = of;
    int rc = still_teacher(&c, sh, &t);
    still_tensors tr = {0};
    tr.dtype = STILL_F64;
    tr.q = x->q, tr.k = x->k, tr.v = x->v, tr.o = want;
    ck_assert_int_eq(still_ref_teacher(&x->c, sh, &tr), STILL_OK);
    for (int64_t i = 0; i < no; i++)
        o[i] = of[i];
    char w2[160];
    snprintf(w2, sizeof w2, "%s still_teacher", what);
    ov_judge(rc, o, want, no, 1e-5 * hd_max_abs(x->v, hd_nv(sh)), s, w2, refused);
    free(q), free(k), free(v), free(of), free(o), free(want);
}

/* still_transfer_grad against still_ref_transfer_grad (the teacher
 * computed by each, the selection from the same double sigma): the
 * student output o within SPEC §10, the loss within what that bound on o
 * allows (|o - teacher| <= 2 max|v| max|g|). */
static void ov_transfer(const ovcase *x, double s, const char *what, int *refused)
{
    const still_shape *sh = &x->s;
    const int64_t no = hd_no(sh);
    float *q = hd_to_float(x->q, hd_nq(sh)), *k = hd_to_float(x->k, hd_nk(sh));
    float *v = hd_to_float(x->v, hd_nv(sh)), *g = hd_to_float(x->gate, no);
    float *of = hd_falloc(no);
    double *o = hd_dalloc(no), *want = hd_dalloc(no), *dq = hd_dalloc(hd_nq(sh));
    double loss = 0.0, loss_ref = 0.0;
    still_grads gr = {0};
    gr.dq = dq;
    still_tensors t = {0};
    t.dtype = STILL_F32;
    t.q = q, t.k = k, t.v = v, t.gate = g, t.o = of;
    int rc = still_transfer_grad(&x->c, sh, &x->p, &t, NULL, &loss, &gr);
    for (int64_t i = 0; i < no; i++)
        o[i] = of[i];
    still_tensors tr = {0};
    tr.dtype = STILL_F64;
    tr.q = x->q, tr.k = x->k, tr.v = x->v, tr.gate = x->gate, tr.o = want;
    int rr = still_ref_transfer_grad(&x->c, sh, &x->p, &tr, NULL, &loss_ref, NULL);
    char w2[160];
    snprintf(w2, sizeof w2, "%s still_transfer_grad", what);
    if (rc == STILL_OK) {
        ck_assert_msg(rr == STILL_OK, "%s: the ref: %s", w2, still_strerror(rr));
        const double tol = ov_tol(x), vg = tol / 1e-5;
        ck_assert_msg(fabs(loss - loss_ref) <= 4.0 * vg * tol + tol * tol,
                      "%s: STILL_OK but loss %.9g, the ref gives %.9g", w2, loss, loss_ref);
        hd_assert_all_finite(dq, hd_nq(sh), w2);
    }
    ov_judge(rc, o, want, no, ov_tol(x), s, w2, refused);
    free(q), free(k), free(v), free(g), free(of), free(o), free(want), free(dq);
}

START_TEST(test_scaled_inputs_give_an_error_or_the_ref_result_on_every_isa)
{
    const int fam = _i / 2, act = _i % 2 ? STILL_ACT_HEDGEHOG : STILL_ACT_RELU;
    int isas[8], n = isa_list(isas), refused = 0, runs = 0;
    for (int si = 0; si < N_SCALES; si++) {
        const double s = scales[si];
        /* the float inputs stop at float's range (q, k, v, gate) */
        if (fam == FAM_QK || fam == FAM_V || fam == FAM_GATE)
            if (s > FLT_MAX)
                continue;
        ovcase x;
        ov_make(&x, fam, s, act);
        for (int j = 0; j < n; j++) {
            char what[128];
            snprintf(what, sizeof what, "%s s=%g act=%d [%s]", fam_name[fam], s, act,
                     still__isa_name(isas[j]));
            ov_forward(&x, isas[j], s, what, &refused);
            if (fam == FAM_QK || fam == FAM_V)
                ov_teacher(&x, isas[j], s, what, &refused);
            runs++;
        }
        if (fam != FAM_U) { /* no ISA: BLAS */
            char what[128];
            snprintf(what, sizeof what, "%s s=%g act=%d", fam_name[fam], s, act);
            ov_transfer(&x, s, what, &refused);
        }
        ov_free(&x);
    }
    printf("# %s act=%d: %d runs, %d refusals\n", fam_name[fam], act, runs, refused);
}
END_TEST

/* A logit whose float chain overflows to -inf although its exact value is
 * 0: q = a (1, 1, 1, 1), k = b (-3, 1, 1, 1), 3ab > FLT_MAX > ab (powers
 * of two: every product is exact, and the ref's sum is exactly 0).  Softmax
 * weighs such a key like the others (e^0); an overflowed -inf would have
 * passed for a masked entry of weight 0. */
START_TEST(test_logit_overflow_that_cancels_is_an_error)
{
    ovcase x;
    ov_make(&x, FAM_QK, 1.0, STILL_ACT_RELU);
    const still_shape *sh = &x.s;
    const int64_t N = sh->seq_len, d = sh->dim_qk;
    const double a = ldexp(1.0, 63), b = ldexp(1.0, 64);
    for (int64_t h = 0; h < sh->heads_q; h++)
        for (int64_t t = 0; t < N; t++)
            for (int64_t p = 0; p < d; p++)
                x.q[(h * N + t) * d + p] = p < 4 ? a : 0.0;
    for (int64_t j = 0; j < N; j++)
        for (int64_t p = 0; p < d; p++)
            x.k[j * d + p] = p < 4 ? (p == 0 ? -3.0 * b : b) * (j % 2 ? 1.0 : 0.0) : 0.0;
    x.c.scale = 1.0;
    x.c.topk = x.c.chunk; /* every key exact: the logits alone decide */
    x.p.fq.W = NULL, x.p.fq.b = NULL, x.p.fq.u = NULL, x.p.fq.f = 0;
    int isas[8], n = isa_list(isas), refused = 0;
    for (int j = 0; j < n; j++) {
        char what[96];
        snprintf(what, sizeof what, "cancelling logits [%s]", still__isa_name(isas[j]));
        ov_forward(&x, isas[j], 2.0, what, &refused);
        ov_teacher(&x, isas[j], 2.0, what, &refused);
    }
    ov_free(&x);
}
END_TEST

/* still_gate_projection: rows X = a (1, 1, 1, 1) against Wg = b (-3, 1,
 * 1, 1), of exact value 0 (powers of two), whose float chain overflows for
 * 3ab > FLT_MAX (-inf: a sigmoid of 0 where the answer is 1/2; or NaN). */
START_TEST(test_gate_projection_overflow_is_an_error)
{
    const int64_t B = 1, N = 3, hid = 4, H = 1, dv = 2;
    for (int cse = 0; cse < 4; cse++) {
        const double sx[] = {1.0, ldexp(1.0, 63), ldexp(1.0, 100), ldexp(1.0, 127)};
        double X[12], Wg[8], G[6];
        float Xf[12], Wf[8], Gf[6];
        for (int i = 0; i < 12; i++)
            X[i] = sx[cse] * (cse ? 1.0 : 0.5 + 0.1 * (i % 3));
        for (int i = 0; i < 8; i++)
            Wg[i] = (i % 4 == 0 ? -3.0 : 1.0) * (cse ? ldexp(1.0, 64) : 0.25);
        for (int i = 0; i < 12; i++)
            Xf[i] = (float)X[i];
        for (int i = 0; i < 8; i++)
            Wf[i] = (float)Wg[i];
        ck_assert_int_eq(still_ref_gate_projection(B, N, hid, H, dv, X, Wg, G), STILL_OK);
        int rc = still_gate_projection(B, N, hid, H, dv, Xf, Wf, Gf);
        double o[6];
        for (int i = 0; i < 6; i++)
            o[i] = Gf[i];
        int refused = 0;
        char what[64];
        snprintf(what, sizeof what, "gate projection, X ~ %g", sx[cse]);
        ov_judge(rc, o, G, 6, 1e-6, sx[cse], what, &refused);
    }
}
END_TEST

/* The LoRA products in float: a result beyond float is an error. */
START_TEST(test_lora_overflow_is_an_error)
{
    still_lora_shape sh = {2, 3, 2, 1, 1.0};
    for (int cse = 0; cse < 3; cse++) {
        const double s = cse == 0 ? 1.0 : cse == 1 ? 1e19 : 1e38; /* x W ~ s^2 */
        float x[6], W[6], A[3], Bm[2], y[4], dx[6], dA[3], dB[2];
        double xd[6], Wd[6], Ad[3], Bd[2], yd[4];
        for (int i = 0; i < 6; i++) {
            x[i] = (float)(s * (0.5 + 0.1 * i));
            W[i] = (float)(s * (0.3 + 0.05 * i));
            xd[i] = x[i], Wd[i] = W[i];
        }
        for (int i = 0; i < 3; i++)
            A[i] = 0.25f, Ad[i] = 0.25;
        for (int i = 0; i < 2; i++)
            Bm[i] = 0.5f, Bd[i] = 0.5;
        ck_assert_int_eq(still_ref_lora_forward(&sh, xd, Wd, Ad, Bd, yd), STILL_OK);
        int rc = still_lora_forward(&sh, x, W, A, Bm, y);
        double o[4];
        for (int i = 0; i < 4; i++)
            o[i] = y[i];
        int refused = 0;
        char what[64];
        snprintf(what, sizeof what, "lora forward, x, W ~ %g", s);
        ov_judge(rc, o, yd, 4, 1e-5 * hd_max_abs(yd, 4), s, what, &refused);
        /* the backward of dy = y: finite gradients or an error */
        rc = still_lora_backward(&sh, x, W, A, Bm, y, dx, dA, dB);
        if (rc == STILL_OK) {
            for (int i = 0; i < 6; i++)
                ck_assert_msg(isfinite(dx[i]), "lora backward s=%g: STILL_OK, dx[%d] = %g", s,
                              i, dx[i]);
        } else {
            ck_assert_msg(rc == STILL_E_NONFINITE && s != 1.0, "lora backward s=%g: %s", s,
                          still_strerror(rc));
        }
    }
}
END_TEST

static Suite *overflow_suite(void)
{
    Suite *s = suite_create("overflow");
    TCase *tc = tcase_create("overflow");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_scaled_inputs_give_an_error_or_the_ref_result_on_every_isa, 0,
                        2 * N_FAM);
    tcase_add_test(tc, test_logit_overflow_that_cancels_is_an_error);
    tcase_add_test(tc, test_gate_projection_overflow_is_an_error);
    tcase_add_test(tc, test_lora_overflow_is_an_error);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return hd_run(overflow_suite());
}
