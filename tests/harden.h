/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * harden.h -- small helpers shared by the hardening suites (issue 7):
 * test_extremes.c, test_concurrency.c, test_limits.c.  Header-only
 * (static functions) so each suite stays one translation unit.
 *
 * The oracles here are written from SPEC.md alone and share no code with
 * ref/: full causal softmax attention (SPEC §1, the value of identities I1
 * and I3) and causal linear attention with the relu map without NP
 * (SPEC §2-3, the value of identity I2), both in long double.
 */
#ifndef STILL_HARDEN_H
#define STILL_HARDEN_H

#include "still.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- deterministic random numbers (splitmix64) -------------------------- */
static inline uint64_t hd_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline double hd_unit(uint64_t *s) /* [0, 1) */
{
    return (double)(hd_next(s) >> 11) * 0x1p-53;
}
static inline void hd_fill(uint64_t *s, double *x, int64_t n, double lo, double hi)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * hd_unit(s);
}
/* values representable in float, so float and double calls see the same */
static inline void hd_fill_f(uint64_t *s, double *x, int64_t n, double lo, double hi)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (double)(float)(lo + (hi - lo) * hd_unit(s));
}

static inline void *hd_alloc(size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    ck_assert_msg(p != NULL, "test allocation of %zu bytes failed", bytes);
    return p;
}
static inline double *hd_dalloc(int64_t n) { return hd_alloc((size_t)n * sizeof(double)); }
static inline float *hd_falloc(int64_t n) { return hd_alloc((size_t)n * sizeof(float)); }

static inline float *hd_to_float(const double *x, int64_t n)
{
    float *f = hd_falloc(n);
    for (int64_t i = 0; i < n; i++)
        f[i] = (float)x[i];
    return f;
}

static inline double hd_max_abs(const double *x, int64_t n)
{
    double m = 0.0;
    for (int64_t i = 0; i < n; i++)
        m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

/* Element counts of the arrays of a shape. */
static inline int64_t hd_nq(const still_shape *s) { return s->batch * s->heads_q * s->seq_len * s->dim_qk; }
static inline int64_t hd_nk(const still_shape *s) { return s->batch * s->heads_kv * s->seq_len * s->dim_qk; }
static inline int64_t hd_nv(const still_shape *s) { return s->batch * s->heads_kv * s->seq_len * s->dim_v; }
static inline int64_t hd_no(const still_shape *s) { return s->batch * s->heads_q * s->seq_len * s->dim_v; }
static inline int64_t hd_ns(const still_shape *s) { return s->batch * s->heads_q * s->seq_len; }

/* Row (b, h, t) of a BHND array [B][H][N][D]. */
static inline int64_t hd_row(int64_t H, int64_t N, int64_t D, int64_t b, int64_t h, int64_t t)
{
    return ((b * H + h) * N + t) * D;
}

/* SPEC §1: full causal softmax attention, BHND, exact quotient computed
 * with the running maximum subtracted, in long double. */
static inline void hd_oracle_softmax(const still_shape *s, double scale, const double *q,
                                     const double *k, const double *v, double *o)
{
    int64_t N = s->seq_len, d = s->dim_qk, dv = s->dim_v, G = s->heads_q / s->heads_kv;
    long double *acc = calloc((size_t)dv, sizeof *acc);
    long double *lg = calloc((size_t)N, sizeof *lg);
    ck_assert(acc && lg);
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t h = 0; h < s->heads_q; h++) {
            int64_t hk = h / G;
            for (int64_t t = 0; t < N; t++) {
                const double *qt = q + hd_row(s->heads_q, N, d, b, h, t);
                long double m = -INFINITY, den = 0;
                for (int64_t j = 0; j <= t; j++) {
                    const double *kj = k + hd_row(s->heads_kv, N, d, b, hk, j);
                    long double dot = 0;
                    for (int64_t i = 0; i < d; i++)
                        dot += (long double)qt[i] * kj[i];
                    lg[j] = (long double)scale * dot;
                    m = lg[j] > m ? lg[j] : m;
                }
                memset(acc, 0, (size_t)dv * sizeof *acc);
                for (int64_t j = 0; j <= t; j++) {
                    long double e = expl(lg[j] - m);
                    const double *vj = v + hd_row(s->heads_kv, N, dv, b, hk, j);
                    den += e;
                    for (int64_t i = 0; i < dv; i++)
                        acc[i] += e * vj[i];
                }
                double *ot = o + hd_row(s->heads_q, N, dv, b, h, t);
                for (int64_t i = 0; i < dv; i++)
                    ot[i] = (double)(acc[i] / den);
            }
        }
    free(acc);
    free(lg);
}

/* SPEC §2-3 with act relu, NP off, identity W: phi(x) = max(x, 1e-12);
 * causal linear attention LA_t({0..t}), BHND, long double. */
static inline void hd_oracle_linear_relu(const still_shape *s, const double *q, const double *k,
                                         const double *v, double *o)
{
    int64_t N = s->seq_len, d = s->dim_qk, dv = s->dim_v, G = s->heads_q / s->heads_kv;
    long double *acc = calloc((size_t)dv, sizeof *acc);
    ck_assert(acc);
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t h = 0; h < s->heads_q; h++) {
            int64_t hk = h / G;
            for (int64_t t = 0; t < N; t++) {
                const double *qt = q + hd_row(s->heads_q, N, d, b, h, t);
                long double den = 0;
                memset(acc, 0, (size_t)dv * sizeof *acc);
                for (int64_t j = 0; j <= t; j++) {
                    const double *kj = k + hd_row(s->heads_kv, N, d, b, hk, j);
                    const double *vj = v + hd_row(s->heads_kv, N, dv, b, hk, j);
                    long double kap = 0;
                    for (int64_t i = 0; i < d; i++)
                        kap += (long double)fmax(qt[i], 1e-12) * fmax(kj[i], 1e-12);
                    den += kap;
                    for (int64_t i = 0; i < dv; i++)
                        acc[i] += kap * vj[i];
                }
                double *ot = o + hd_row(s->heads_q, N, dv, b, h, t);
                for (int64_t i = 0; i < dv; i++)
                    ot[i] = (double)(acc[i] / den);
            }
        }
    free(acc);
}

/* SPEC §6 with G = 1: o_t is a weighted mean of {v_j : j <= t} with
 * positive weights, shrunk towards 0 by eps_den > 0.  So every component
 * lies in [min, max] of that component over j <= t (and 0 when eps_den > 0).
 * Holds for every routing, selection, feature map and scale. */
static inline void hd_assert_convex(const still_shape *s, const double *v, const double *o,
                                    double eps_den, double tol, const char *what)
{
    int64_t N = s->seq_len, dv = s->dim_v, G = s->heads_q / s->heads_kv;
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t h = 0; h < s->heads_q; h++)
            for (int64_t i = 0; i < dv; i++) {
                double lo = eps_den > 0 ? 0.0 : INFINITY, hi = eps_den > 0 ? 0.0 : -INFINITY;
                for (int64_t t = 0; t < N; t++) {
                    double vt = v[hd_row(s->heads_kv, N, dv, b, h / G, t) + i];
                    lo = vt < lo ? vt : lo;
                    hi = vt > hi ? vt : hi;
                    double ot = o[hd_row(s->heads_q, N, dv, b, h, t) + i];
                    ck_assert_msg(isfinite(ot) && ot >= lo - tol && ot <= hi + tol,
                                  "%s: o[b=%lld,h=%lld,t=%lld,%lld] = %.17g outside "
                                  "[%.17g, %.17g] (the values seen so far)",
                                  what, (long long)b, (long long)h, (long long)t,
                                  (long long)i, ot, lo, hi);
                }
            }
}

/* |a - b| <= tol elementwise, naming the first mismatch. */
static inline void hd_assert_close(const double *a, const double *b, int64_t n, double tol,
                                   const char *what)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(a[i] - b[i]) <= tol,
                      "%s: element %lld: %.17g vs %.17g (|diff| %.3g > tol %.3g)", what,
                      (long long)i, a[i], b[i], fabs(a[i] - b[i]), tol);
}

static inline void hd_assert_all_finite(const double *x, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(isfinite(x[i]), "%s: element %lld is %g", what, (long long)i, x[i]);
}

/* Runs the suite (CK_NORMAL), returns the exit status. */
static inline int hd_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif /* STILL_HARDEN_H */
