/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* generic.c -- the portable kernels (plain C11, libm), the fallback table
 * and the baseline the SIMD tables are tested against.  Compiled with the
 * baseline flags and -std=c11, so floating-point contraction is off and
 * every multiply-add below rounds twice, in the order written. */
#include "kernels.h"

#include <math.h>

static void gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t ars, int64_t acs,
                 const float *B, int64_t ldb, float *C, int64_t ldc, int acc)
{
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (!acc)
            for (int64_t j = 0; j < N; j++)
                c[j] = 0.0f;
        /* row i: one chain per element over p, in order */
        for (int64_t p = 0; p < K; p++) {
            const float a = A[i * ars + p * acs];
            const float *b = B + p * ldb;
            for (int64_t j = 0; j < N; j++)
                c[j] = c[j] + a * b[j];
        }
    }
}

static void softmax_cols(int64_t M, int64_t N, float *S, int64_t lds, float *m, float *l,
                         float *alpha)
{
    for (int64_t t = 0; t < N; t++) {
        float mx = m[t];
        for (int64_t i = 0; i < M; i++)
            mx = fmaxf(mx, S[i * lds + t]);
        float al = mx == -INFINITY ? 1.0f : expf(m[t] - mx);
        float sum = l[t] * al;
        for (int64_t i = 0; i < M; i++) {
            float s = S[i * lds + t];
            float e = s == -INFINITY ? 0.0f : expf(s - mx);
            S[i * lds + t] = e;
            sum = sum + e;
        }
        alpha[t] = al;
        l[t] = sum;
        m[t] = mx;
    }
}

/* SPEC §4 for one query whose window is the rows lo..hi of column t,
 * the last row (hi) being the query itself. */
static float saliency_one(const float *S, int64_t lds, int64_t lo, int64_t hi)
{
    float m1 = -INFINITY, m2 = -INFINITY, z1 = 0.0f, z2 = 0.0f, sigma = 0.0f;
    if (lo == hi)
        return INFINITY; /* W_t = {t} */
    for (int64_t i = lo; i <= hi; i++) {
        m1 = fmaxf(m1, S[i * lds]);
        if (i < hi)
            m2 = fmaxf(m2, S[i * lds]);
    }
    for (int64_t i = lo; i <= hi; i++) {
        z1 = z1 + expf(S[i * lds] - m1);
        if (i < hi)
            z2 = z2 + expf(S[i * lds] - m2);
    }
    for (int64_t i = lo; i <= hi; i++) {
        float p = expf(S[i * lds] - m1) / z1;
        float pw = i < hi ? expf(S[i * lds] - m2) / z2 : 0.0f;
        sigma = sigma + p * logf((p + STILL__SALIENCY_EPS) / (pw + STILL__SALIENCY_EPS));
    }
    return sigma;
}

static void saliency_cols(int64_t M, int64_t N, const float *S, int64_t lds, int64_t key0,
                          int64_t q0, int64_t w, float *sigma)
{
    (void)M;
    for (int64_t t = 0; t < N; t++) {
        int64_t q = q0 + t, first = q - w + 1 > 0 ? q - w + 1 : 0;
        sigma[t] = saliency_one(S + t, lds, first - key0, q - key0);
    }
}

static void colsum_acc(int64_t M, int64_t N, const float *A, int64_t lda, float *out)
{
    for (int64_t t = 0; t < N; t++) {
        float s = out[t];
        for (int64_t i = 0; i < M; i++)
            s = s + A[i * lda + t];
        out[t] = s;
    }
}

static void householder_rows(int64_t n, int64_t d, const float *X, int64_t ldx,
                             const float *uhat, float *Y, int64_t ldy)
{
    for (int64_t i = 0; i < n; i++) {
        const float *x = X + i * ldx;
        float a = 0.0f;
        for (int64_t p = 0; p < d; p++)
            a = a + x[p] * uhat[p];
        a = 2.0f * a;
        for (int64_t p = 0; p < d; p++)
            Y[i * ldy + p] = x[p] - a * uhat[p];
    }
}

static float sumsq(const float *x, int64_t n)
{
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s = s + x[i] * x[i];
    return s;
}

/* phi = softmax(sign * z) over n entries (SPEC §2 hedgehog / softmax). */
static void softmax_signed(const float *z, int64_t n, float sign, float *phi)
{
    float mx = -INFINITY, sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        mx = fmaxf(mx, sign * z[i]);
    for (int64_t i = 0; i < n; i++) {
        phi[i] = expf(sign * z[i] - mx);
        sum = sum + phi[i];
    }
    for (int64_t i = 0; i < n; i++)
        phi[i] = phi[i] / sum;
}

static int npmap_rows(int64_t n, int64_t d, int64_t f, int act, int npmap, const float *X,
                      int64_t ldx, const float *Z, int64_t ldz, float *phi, int64_t ldphi)
{
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        const float *z = Z + i * ldz, *x = X + i * ldx;
        float *ph = phi + i * ldphi;
        /* zhat is formed in phi's second half (hedgehog) or in phi itself */
        float *zh = act == STILL_ACT_HEDGEHOG ? ph + f : ph;
        float gain = 1.0f; /* SPEC §2 step 3 */
        const int how = still__np_gain(x, d, z, f, npmap, npmap ? sumsq(x, d) : 0.0f,
                                       sumsq(z, f), &gain, zh);
        ok &= how != 0;
        if (how == 1)
            for (int64_t o = 0; o < f; o++)
                zh[o] = z[o] * gain;
        int64_t m = f;
        switch (act) {
        case STILL_ACT_HEDGEHOG:
            softmax_signed(zh, f, 1.0f, ph);   /* ph[0..f) from zh = ph[f..2f) */
            softmax_signed(zh, f, -1.0f, zh);  /* in place: reads zh before writing */
            m = 2 * f;
            break;
        case STILL_ACT_SOFTMAX:
            softmax_signed(zh, f, 1.0f, ph);
            break;
        case STILL_ACT_ELU1:
            for (int64_t o = 0; o < f; o++)
                ph[o] = zh[o] > 0.0f ? zh[o] + 1.0f : expf(zh[o]);
            break;
        default: /* STILL_ACT_RELU */
            for (int64_t o = 0; o < f; o++)
                ph[o] = fmaxf(zh[o], 0.0f);
            break;
        }
        for (int64_t o = 0; o < m; o++)
            ph[o] = fmaxf(ph[o], STILL__PHI_FLOOR);
    }
    return ok;
}

static void sigmoid(int64_t n, float *x)
{
    for (int64_t i = 0; i < n; i++) {
        float e = expf(-fabsf(x[i])); /* no overflow on either side */
        x[i] = x[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
}

static void transpose(int64_t rows, int64_t cols, const float *src, int64_t lds, float scale,
                      float *dst, int64_t ldd)
{
    still__transpose_blocked(rows, cols, src, lds, scale, dst, ldd);
}

static void scale_row(int64_t n, float alpha, float *x)
{
    for (int64_t i = 0; i < n; i++)
        x[i] *= alpha;
}

static void combine_row(int64_t n, float omega, const float *acc, const float *lin,
                        const float *g, float den, float *o)
{
    for (int64_t e = 0; e < n; e++) {
        float num = omega * acc[e];
        if (lin)
            num = num + (g ? g[e] * lin[e] : lin[e]);
        o[e] = num / den;
    }
}

/* gemm's chain per key (c = c + a*b from 0, unfused), 16 keys side by side */
static void gemv_panel(int64_t M, int64_t K, const float *P, const float *x, float *out)
{
    for (int64_t j0 = 0; j0 < M; j0 += STILL__PANEL) {
        const float *pan = P + j0 * K;
        const int64_t nj = M - j0 < STILL__PANEL ? M - j0 : STILL__PANEL;
        float c[STILL__PANEL] = {0.0f};
        for (int64_t p = 0; p < K; p++)
            for (int64_t j = 0; j < STILL__PANEL; j++)
                c[j] = c[j] + pan[p * STILL__PANEL + j] * x[p];
        for (int64_t j = 0; j < nj; j++)
            out[j0 + j] = c[j];
    }
}

/* Independent chains of multiply-adds (unfused here: a multiply and an add
 * in the order written), so the rate is the machine's for plain C. */
static double peak_fma(int64_t iters, float *sink)
{
    enum { CHAINS = 16 };
    float acc[CHAINS];
    const float a = 0.999999f, b = 1e-7f;
    for (int c = 0; c < CHAINS; c++)
        acc[c] = (float)c;
    for (int64_t it = 0; it < iters; it++)
#pragma GCC unroll 32
        for (int c = 0; c < CHAINS; c++)
            acc[c] = acc[c] * a + b;
    float sum = 0.0f;
    for (int c = 0; c < CHAINS; c++)
        sum += acc[c];
    *sink = sum;
    return 2.0 * CHAINS * (double)iters;
}

const still__kernels still__kernels_generic = {
    STILL_ISA_GENERIC, "generic", gemm, softmax_cols, saliency_cols, colsum_acc,
    householder_rows, npmap_rows, sigmoid, transpose, scale_row, combine_row, gemv_panel,
    peak_fma,
};
