/* test_fast_precision.c -- SPEC §10 at long N: max |o_fast - o_ref| <=
 * 1e-5 max|v| for the fast teacher (SPEC §1) when one early key dominates
 * and thousands of later keys carry weights below float32's half ulp of the
 * running normalizer (the needle / attention-sink case of `still demo`).
 * An online softmax that carries its sums from key tile to key tile in
 * float32 rounds every one of those weights away (or up), an error that
 * grows with N; this case puts that error at ~25x the bound. */
#include "fast.h"
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { N = 16384, D = 4, PROBES = 64 };

/* Key 0 is the needle: k = (6,0,0,0), v = e_0.  Every other key is
 * orthogonal to it, k = (0, N(0,1)...), with v = (0, U(-1,1)...).  The last
 * PROBES queries are q = (6,0,0,0): logit 18 (scale 1/2) on the needle,
 * exactly 0 on every other key, so each later key weighs e^-18 = 1.5e-8 of
 * the needle, under half an ulp of 1 (6.0e-8), and together they weigh
 * ~(N-1) e^-18 = 2.5e-4 -- o[.][0] = 1 / (1 + (t) e^-18).  The other
 * queries are N(0,1). */
static void build(double *q, double *k, double *v)
{
    tu_rng g;
    tu_rng_seed(&g, 2024);
    for (int64_t j = 0; j < N; j++) {
        for (int e = 0; e < D; e++) {
            q[j * D + e] = (float)tu_normal(&g);
            k[j * D + e] = e == 0 ? 0.0 : (float)tu_normal(&g);
            v[j * D + e] = e == 0 ? 0.0 : (float)tu_uniform(&g, -1.0, 1.0);
        }
    }
    for (int e = 0; e < D; e++) {
        k[e] = e == 0 ? 6.0 : 0.0;
        v[e] = e == 0 ? 1.0 : 0.0;
    }
    for (int64_t t = N - PROBES; t < N; t++)
        for (int e = 0; e < D; e++)
            q[t * D + e] = e == 0 ? 6.0 : 0.0;
}

START_TEST(test_fast_teacher_dominant_key_at_long_n_within_spec10)
{
    const still_shape shape = {1, 1, 1, N, D, D, STILL_LAYOUT_BHND};
    double *q = tu_dalloc(N * D), *k = tu_dalloc(N * D), *v = tu_dalloc(N * D);
    double *want = tu_dalloc(N * D);
    float *qf = tu_alloc(N * D * sizeof(float)), *kf = tu_alloc(N * D * sizeof(float));
    float *vf = tu_alloc(N * D * sizeof(float)), *of = tu_alloc(N * D * sizeof(float));
    still_config cfg;
    still_tensors t;
    build(q, k, v);
    for (int64_t i = 0; i < N * D; i++)
        qf[i] = (float)q[i], kf[i] = (float)k[i], vf[i] = (float)v[i];
    const double bound = 1e-5 * tu_max_abs(v, N * D);

    still_config_default(&cfg);
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64, t.q = q, t.k = k, t.v = v, t.o = want;
    ck_assert_int_eq(still_ref_teacher(&cfg, &shape, &t), STILL_OK);
    /* the case is what it claims: the later keys' weight is past the bound */
    ck_assert_msg(1.0 - want[(N - 1) * D] > 20 * bound, "needle weight %.9g",
                  want[(N - 1) * D]);

    for (int isa = STILL_ISA_GENERIC; isa <= STILL_ISA_NEON; isa++) {
        if (!still__isa_supported(isa))
            continue;
        cfg.isa = isa;
        cfg.threads = 2;
        memset(&t, 0, sizeof t);
        t.dtype = STILL_F32, t.q = qf, t.k = kf, t.v = vf, t.o = of;
        ck_assert_int_eq(still_teacher(&cfg, &shape, &t), STILL_OK);
        double worst = 0.0;
        int64_t at = 0;
        for (int64_t i = 0; i < N * D; i++)
            if (fabs(of[i] - want[i]) > worst)
                worst = fabs(of[i] - want[i]), at = i;
        ck_assert_msg(worst <= bound,
                      "%s: max |o_fast - o_ref| %.3g at query %lld, column %lld "
                      "(%.9g vs %.9g) > 1e-5 max|v| = %.3g",
                      still__isa_name(isa), worst, (long long)(at / D), (long long)(at % D),
                      (double)of[at], want[at], bound);
    }
    free(q);
    free(k);
    free(v);
    free(want);
    free(qf);
    free(kf);
    free(vf);
    free(of);
}
END_TEST

static Suite *precision_suite(void)
{
    Suite *s = suite_create("fast_precision");
    TCase *tc = tcase_create("fast_precision");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fast_teacher_dominant_key_at_long_n_within_spec10);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(precision_suite());
}
