/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_lora.c -- SPEC §9: LoRA forward, backward and merge.  The ref
 * backward agrees with central finite differences of the ref forward; the
 * ref forward with the formula written here; the merged projection gives
 * the unmerged output; the fast (float32, BLAS) path agrees with ref. */
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct lcase {
    still_lora_shape s;
    double *x, *W, *A, *B, *coef; /* coef [rows][out]: L = sum coef ⊙ y */
} lcase;

static void lcase_init(lcase *c, uint64_t seed, int64_t rows, int64_t in, int64_t out,
                       int64_t rank, double alpha)
{
    tu_rng g;
    tu_rng_seed(&g, seed);
    c->s = (still_lora_shape){rows, in, out, rank, alpha};
    c->x = tu_dalloc(rows * in);
    c->W = tu_dalloc(out * in);
    c->A = tu_dalloc(rank * in);
    c->B = tu_dalloc(out * rank);
    c->coef = tu_dalloc(rows * out);
    tu_fill_normal(&g, c->x, rows * in, 1.0);
    tu_fill_normal(&g, c->W, out * in, 0.5);
    tu_fill_normal(&g, c->A, rank * in, 0.5);
    tu_fill_normal(&g, c->B, out * rank, 0.5); /* nonzero, so dA is too */
    tu_fill_normal(&g, c->coef, rows * out, 1.0);
}

static void lcase_free(lcase *c)
{
    free(c->x); free(c->W); free(c->A); free(c->B); free(c->coef);
}

/* SPEC §9 written out: y[i][o] = sum_c x W + (alpha/r) sum_a (sum_c x A) B */
static void model_forward(const lcase *c, double *y)
{
    const still_lora_shape *s = &c->s;
    for (int64_t i = 0; i < s->rows; i++)
        for (int64_t o = 0; o < s->out; o++) {
            double acc = 0.0;
            for (int64_t k = 0; k < s->in; k++)
                acc += c->x[i * s->in + k] * c->W[o * s->in + k];
            for (int64_t a = 0; a < s->rank; a++) {
                double h = 0.0;
                for (int64_t k = 0; k < s->in; k++)
                    h += c->x[i * s->in + k] * c->A[a * s->in + k];
                acc += s->alpha / (double)s->rank * h * c->B[o * s->rank + a];
            }
            y[i * s->out + o] = acc;
        }
}

static double lora_loss(const lcase *c)
{
    const int64_t n = c->s.rows * c->s.out;
    double *y = tu_dalloc(n), L = 0.0;
    ck_assert_int_eq(still_ref_lora_forward(&c->s, c->x, c->W, c->A, c->B, y), STILL_OK);
    for (int64_t i = 0; i < n; i++)
        L += c->coef[i] * y[i];
    free(y);
    return L;
}

static double fd_rel_error(lcase *c, double *param, const double *grad, int64_t n)
{
    double max_diff = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double x = param[i], h = 1e-6 * fmax(1.0, fabs(x));
        param[i] = x + h;
        double lp = lora_loss(c);
        param[i] = x - h;
        double lm = lora_loss(c);
        param[i] = x;
        max_diff = fmax(max_diff, fabs((lp - lm) / (2 * h) - grad[i]));
    }
    return max_diff / tu_max_abs(grad, n);
}

START_TEST(test_ref_forward_is_the_formula)
{
    lcase c;
    lcase_init(&c, 1, 7, 6, 5, 3, 4.0);
    double *y = tu_dalloc(7 * 5), *want = tu_dalloc(7 * 5);
    ck_assert_int_eq(still_ref_lora_forward(&c.s, c.x, c.W, c.A, c.B, y), STILL_OK);
    model_forward(&c, want);
    TU_ASSERT_CLOSE(y, want, 7 * 5, 1e-13, "lora forward");
    free(y);
    free(want);
    lcase_free(&c);
}
END_TEST

START_TEST(test_ref_backward_matches_finite_differences)
{
    const int64_t shapes[3][4] = {{6, 5, 4, 2}, {3, 8, 6, 1}, {9, 4, 7, 4}};
    for (int k = 0; k < 3; k++) {
        lcase c;
        lcase_init(&c, 10 + (uint64_t)k, shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3],
                   k == 1 ? 16.0 : 2.5);
        const still_lora_shape *s = &c.s;
        double *dx = tu_dalloc(s->rows * s->in), *dA = tu_dalloc(s->rank * s->in);
        double *dB = tu_dalloc(s->out * s->rank);
        /* dL/dy = coef */
        ck_assert_int_eq(still_ref_lora_backward(s, c.x, c.W, c.A, c.B, c.coef, dx, dA, dB),
                         STILL_OK);
        double ex = fd_rel_error(&c, c.x, dx, s->rows * s->in);
        double ea = fd_rel_error(&c, c.A, dA, s->rank * s->in);
        double eb = fd_rel_error(&c, c.B, dB, s->out * s->rank);
        fprintf(stderr, "# lora %lldx%lld->%lld r%lld: fd rel err dx %.2e dA %.2e dB %.2e\n",
                (long long)s->rows, (long long)s->in, (long long)s->out, (long long)s->rank, ex,
                ea, eb);
        ck_assert(ex <= 1e-6 && ea <= 1e-6 && eb <= 1e-6);
        /* each output is optional and does not change the others */
        double *dA2 = tu_dalloc(s->rank * s->in);
        ck_assert_int_eq(still_ref_lora_backward(s, c.x, c.W, c.A, c.B, c.coef, NULL, dA2, NULL),
                         STILL_OK);
        TU_ASSERT_CLOSE(dA2, dA, s->rank * s->in, 0.0, "dA alone");
        free(dx); free(dA); free(dB); free(dA2);
        lcase_free(&c);
    }
}
END_TEST

START_TEST(test_merged_forward_equals_unmerged)
{
    lcase c;
    lcase_init(&c, 2, 8, 6, 5, 2, 3.0);
    const still_lora_shape *s = &c.s;
    double *y = tu_dalloc(s->rows * s->out), *Wm = tu_dalloc(s->out * s->in);
    double *ym = tu_dalloc(s->rows * s->out);
    ck_assert_int_eq(still_ref_lora_forward(s, c.x, c.W, c.A, c.B, y), STILL_OK);
    ck_assert_int_eq(still_ref_lora_merge(s, c.W, c.A, c.B, Wm), STILL_OK);
    for (int64_t i = 0; i < s->rows; i++) /* y = x W'^T, one product */
        for (int64_t o = 0; o < s->out; o++) {
            double acc = 0.0;
            for (int64_t k = 0; k < s->in; k++)
                acc += c.x[i * s->in + k] * Wm[o * s->in + k];
            ym[i * s->out + o] = acc;
        }
    TU_ASSERT_CLOSE(ym, y, s->rows * s->out, 1e-13, "merged vs unmerged");
    /* in place: W_merged may be W */
    ck_assert_int_eq(still_ref_lora_merge(s, c.W, c.A, c.B, c.W), STILL_OK);
    TU_ASSERT_CLOSE(c.W, Wm, s->out * s->in, 0.0, "merge in place");
    free(y); free(Wm); free(ym);
    lcase_free(&c);
}
END_TEST

static float *to_float(const double *x, int64_t n)
{
    float *f = tu_alloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        f[i] = (float)x[i];
    return f;
}

/* max |fast - ref| / max |ref| */
static double rel_diff_f(const float *fast, const double *ref, int64_t n)
{
    double md = 0.0;
    for (int64_t i = 0; i < n; i++)
        md = fmax(md, fabs((double)fast[i] - ref[i]));
    return md / tu_max_abs(ref, n);
}

START_TEST(test_fast_agrees_with_ref)
{
    lcase c;
    lcase_init(&c, 3, 33, 40, 24, 8, 16.0);
    const still_lora_shape *s = &c.s;
    const int64_t nx = s->rows * s->in, nw = s->out * s->in, na = s->rank * s->in;
    const int64_t nb = s->out * s->rank, ny = s->rows * s->out;
    /* the ref runs on the float-rounded values, so only arithmetic differs */
    float *xf = to_float(c.x, nx), *Wf = to_float(c.W, nw), *Af = to_float(c.A, na);
    float *Bf = to_float(c.B, nb), *dyf = to_float(c.coef, ny);
    for (int64_t i = 0; i < nx; i++) c.x[i] = xf[i];
    for (int64_t i = 0; i < nw; i++) c.W[i] = Wf[i];
    for (int64_t i = 0; i < na; i++) c.A[i] = Af[i];
    for (int64_t i = 0; i < nb; i++) c.B[i] = Bf[i];
    for (int64_t i = 0; i < ny; i++) c.coef[i] = dyf[i];

    double *y = tu_dalloc(ny), *dx = tu_dalloc(nx), *dA = tu_dalloc(na), *dB = tu_dalloc(nb);
    double *Wm = tu_dalloc(nw);
    float *yf = tu_alloc((size_t)ny * 4), *dxf = tu_alloc((size_t)nx * 4);
    float *dAf = tu_alloc((size_t)na * 4), *dBf = tu_alloc((size_t)nb * 4);
    float *Wmf = tu_alloc((size_t)nw * 4);
    ck_assert_int_eq(still_ref_lora_forward(s, c.x, c.W, c.A, c.B, y), STILL_OK);
    ck_assert_int_eq(still_ref_lora_backward(s, c.x, c.W, c.A, c.B, c.coef, dx, dA, dB), STILL_OK);
    ck_assert_int_eq(still_ref_lora_merge(s, c.W, c.A, c.B, Wm), STILL_OK);
    ck_assert_int_eq(still_lora_forward(s, xf, Wf, Af, Bf, yf), STILL_OK);
    ck_assert_int_eq(still_lora_backward(s, xf, Wf, Af, Bf, dyf, dxf, dAf, dBf), STILL_OK);
    ck_assert_int_eq(still_lora_merge(s, Wf, Af, Bf, Wmf), STILL_OK);
    double e[5] = {rel_diff_f(yf, y, ny), rel_diff_f(dxf, dx, nx), rel_diff_f(dAf, dA, na),
                   rel_diff_f(dBf, dB, nb), rel_diff_f(Wmf, Wm, nw)};
    fprintf(stderr, "# fast vs ref (rel): y %.1e dx %.1e dA %.1e dB %.1e W' %.1e\n", e[0], e[1],
            e[2], e[3], e[4]);
    for (int i = 0; i < 5; i++)
        ck_assert_msg(e[i] <= 1e-5, "output %d: %g", i, e[i]);
    /* fast merge in place */
    ck_assert_int_eq(still_lora_merge(s, Wf, Af, Bf, Wf), STILL_OK);
    ck_assert(memcmp(Wf, Wmf, (size_t)nw * 4) == 0);
    free(y); free(dx); free(dA); free(dB); free(Wm);
    free(yf); free(dxf); free(dAf); free(dBf); free(Wmf);
    free(xf); free(Wf); free(Af); free(Bf); free(dyf);
    lcase_free(&c);
}
END_TEST

START_TEST(test_lora_rejects_bad_calls)
{
    lcase c;
    lcase_init(&c, 4, 3, 4, 5, 2, 1.0);
    double y[15];
    still_lora_shape bad = c.s;
    ck_assert_int_eq(still_ref_lora_forward(NULL, c.x, c.W, c.A, c.B, y), STILL_E_NULL);
    ck_assert_int_eq(still_ref_lora_forward(&c.s, c.x, c.W, NULL, c.B, y), STILL_E_NULL);
    bad.rank = 0;
    ck_assert_int_eq(still_ref_lora_forward(&bad, c.x, c.W, c.A, c.B, y), STILL_E_SHAPE);
    bad = c.s;
    bad.alpha = INFINITY;
    ck_assert_int_eq(still_ref_lora_merge(&bad, c.W, c.A, c.B, c.W), STILL_E_CONFIG);
    c.A[1] = NAN;
    ck_assert_int_eq(still_ref_lora_forward(&c.s, c.x, c.W, c.A, c.B, y), STILL_E_NONFINITE);
    float xf[12] = {0}, Wf[20] = {0}, Af[8] = {0}, Bf[10] = {0}, yf[15];
    Bf[3] = NAN;
    ck_assert_int_eq(still_lora_forward(&c.s, xf, Wf, Af, Bf, yf), STILL_E_NONFINITE);
    lcase_free(&c);
}
END_TEST

static Suite *lora_suite(void)
{
    Suite *s = suite_create("lora");
    TCase *tc = tcase_create("lora");
    tcase_add_test(tc, test_ref_forward_is_the_formula);
    tcase_add_test(tc, test_ref_backward_matches_finite_differences);
    tcase_add_test(tc, test_merged_forward_equals_unmerged);
    tcase_add_test(tc, test_fast_agrees_with_ref);
    tcase_add_test(tc, test_lora_rejects_bad_calls);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(lora_suite());
}
