/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* avx512.c -- the kernels for AVX-512F/DQ (+FMA), 16 floats per vector.
 * Compiled with -mavx512f -mavx512dq -mfma; vector exp/log from SLEEF's
 * AVX-512F functions (sleef.h declares them only under __AVX512F__).
 * Every multiply-add is fused; column tails use mask registers, so a
 * column computed in a tail lane gets the same bits as in a full vector. */
#include "kernels.h"

#include <immintrin.h>
#include <math.h>
#include <sleef.h>

#define VL 16
#define MR 8 /* rows of the gemm micro-tile: 8 x 32 = 16 accumulators */

#define INLINE static inline __attribute__((always_inline))

INLINE __m512 vexp(__m512 x) { return Sleef_expf16_u10avx512f(x); }

/* e^x for x <= 0 (the hedgehog feature map's exponents, SPEC §2), inline:
 * x = n ln2 + r, |r| <= ln2/2 (Cody-Waite, ln2 in two parts), e^r by its
 * Taylor polynomial of degree 7 (truncation < 6e-9 relative) in Horner
 * form, times 2^n by vscalefps (which underflows gradually to 0): within
 * 0.92 ulp of e^x over the normal range (every float of [-1, 0], one in 8
 * below; SLEEF's u10 promises 1.0), in a dozen instructions and no call:
 * the feature maps are the largest part of pure linear mode after the
 * products.  NaN stays NaN (max returns its second operand). */
INLINE __m512 vexp_neg(__m512 x)
{
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x); /* e^-104 < 2^-150: 0 */
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}
INLINE __m512 vlog(__m512 x) { return Sleef_logf16_u10avx512f(x); }
INLINE __mmask16 tail_mask(int64_t n) { return n >= VL ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

/* ---- gemm --------------------------------------------------------------------- */

INLINE void micro(const int mr, const int nv, int64_t K, const float *A, int64_t ars,
                  int64_t acs, const float *B, int64_t ldb, float *C, int64_t ldc,
                  __mmask16 m0, __mmask16 m1, int acc)
{
    __m512 c0[MR], c1[MR];
    const float *a[MR];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        a[r] = A + r * ars;
        c0[r] = acc ? _mm512_maskz_loadu_ps(m0, C + r * ldc) : _mm512_setzero_ps();
        c1[r] = (nv == 2 && acc) ? _mm512_maskz_loadu_ps(m1, C + r * ldc + VL) : _mm512_setzero_ps();
    }
    for (int64_t p = 0; p < K; p++) {
        const float *bp = B + p * ldb;
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, bp);
        const __m512 b1 = nv == 2 ? _mm512_maskz_loadu_ps(m1, bp + VL) : b0;
        const int64_t o = p * acs;
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
            const __m512 av = _mm512_set1_ps(a[r][o]);
            c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
            if (nv == 2)
                c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        _mm512_mask_storeu_ps(C + r * ldc, m0, c0[r]);
        if (nv == 2)
            _mm512_mask_storeu_ps(C + r * ldc + VL, m1, c1[r]);
    }
}

#define MICRO_CASE(R)                                                                   \
    case R * 2 + 1: micro(R, 1, K, Ai, ars, acs, Bj, ldb, Cij, ldc, m0, m1, acc); break; \
    case R * 2 + 2: micro(R, 2, K, Ai, ars, acs, Bj, ldb, Cij, ldc, m0, m1, acc); break;

/* One row of C, nv (1..8) vectors wide: with a single row the micro-tile
 * above holds only two chains, and each step waits for the FMA before; here
 * up to 8 independent chains (128 columns) are in flight.  The chains are
 * gemm's own (one per element, over p in order): the same bits. */
INLINE void row_micro(const int nv, int64_t K, const float *A, int64_t acs, const float *B,
                      int64_t ldb, float *C, __mmask16 last, int acc)
{
    __m512 c[8];
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++)
        c[v] = acc ? _mm512_maskz_loadu_ps(v == nv - 1 ? last : 0xFFFF, C + v * VL)
                   : _mm512_setzero_ps();
    for (int64_t p = 0; p < K; p++) {
        const __m512 av = _mm512_set1_ps(A[p * acs]);
        const float *bp = B + p * ldb;
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            c[v] = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(v == nv - 1 ? last : 0xFFFF, bp + v * VL), c[v]);
    }
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++)
        _mm512_mask_storeu_ps(C + v * VL, v == nv - 1 ? last : 0xFFFF, c[v]);
}

static void gemm_row(int64_t N, int64_t K, const float *A, int64_t acs, const float *B,
                     int64_t ldb, float *C, int acc)
{
    for (int64_t j = 0; j < N; j += 8 * VL) {
        const int64_t nr = N - j < 8 * VL ? N - j : 8 * VL;
        const int nv = (int)((nr + VL - 1) / VL);
        const __mmask16 last = tail_mask(nr - (int64_t)(nv - 1) * VL);
        switch (nv) {
        case 1: row_micro(1, K, A, acs, B + j, ldb, C + j, last, acc); break;
        case 2: row_micro(2, K, A, acs, B + j, ldb, C + j, last, acc); break;
        case 3: row_micro(3, K, A, acs, B + j, ldb, C + j, last, acc); break;
        case 4: row_micro(4, K, A, acs, B + j, ldb, C + j, last, acc); break;
        case 5: row_micro(5, K, A, acs, B + j, ldb, C + j, last, acc); break;
        case 6: row_micro(6, K, A, acs, B + j, ldb, C + j, last, acc); break;
        case 7: row_micro(7, K, A, acs, B + j, ldb, C + j, last, acc); break;
        default: row_micro(8, K, A, acs, B + j, ldb, C + j, last, acc); break;
        }
    }
}

static void gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t ars, int64_t acs,
                 const float *B, int64_t ldb, float *C, int64_t ldc, int acc)
{
    if (M == 1 && N > 2 * VL) { /* one query's products (decode), phi^T z */
        gemm_row(N, K, A, acs, B, ldb, C, acc);
        return;
    }
    for (int64_t i = 0; i < M; i += MR) {
        const int mr = M - i < MR ? (int)(M - i) : MR;
        const float *Ai = A + i * ars;
        for (int64_t j = 0; j < N; j += 2 * VL) {
            const int64_t nr = N - j < 2 * VL ? N - j : 2 * VL;
            const __mmask16 m0 = tail_mask(nr), m1 = nr > VL ? tail_mask(nr - VL) : 0;
            const int nv = nr > VL ? 2 : 1;
            const float *Bj = B + j;
            float *Cij = C + i * ldc + j;
            switch (mr * 2 + nv) {
                MICRO_CASE(1)
                MICRO_CASE(2)
                MICRO_CASE(3)
                MICRO_CASE(4)
                MICRO_CASE(5)
                MICRO_CASE(6)
                MICRO_CASE(7)
                MICRO_CASE(8)
            default: break;
            }
        }
    }
}

/* ---- online softmax tile -------------------------------------------------------- */

/* softmax_cols for one contiguous column (decode: one query against a
 * tile of keys), vectorized down the rows.  The same bits as the column
 * loop below: the maximum is the same value in any order (if it is a zero
 * or a NaN is around, where _mm512_max_ps's order shows, the sequential
 * loop is replayed); every exponential is the same lane function of the
 * same input; the sum runs sequentially over the rows, as there. */
static void softmax_col1(int64_t M, float *S, float *m, float *l, float *alpha)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 vmx = ninf;
    __mmask16 nan = 0;
    for (int64_t i = 0; i < M; i += VL) {
        const __mmask16 mk = tail_mask(M - i);
        const __m512 s = _mm512_mask_loadu_ps(ninf, mk, S + i);
        nan |= _mm512_cmp_ps_mask(s, s, _CMP_UNORD_Q);
        vmx = _mm512_max_ps(vmx, s);
    }
    float mx = _mm512_reduce_max_ps(vmx);
    mx = m[0] > mx ? m[0] : mx;
    if (nan || m[0] != m[0] || mx == 0.0f) { /* replay _mm512_max_ps(mx, s) in order */
        mx = m[0];
        for (int64_t i = 0; i < M; i++)
            mx = mx > S[i] ? mx : S[i];
    }
    const __m512 vm = _mm512_set1_ps(mx);
    const int fin = mx != -INFINITY && mx == mx; /* _CMP_NEQ_OQ */
    const float al = fin ? _mm512_cvtss_f32(vexp(_mm512_set1_ps(m[0] - mx))) : 1.0f;
    for (int64_t i = 0; i < M; i += VL) {
        const __mmask16 mk = tail_mask(M - i);
        const __m512 s = _mm512_maskz_loadu_ps(mk, S + i);
        const __mmask16 live = _mm512_cmp_ps_mask(s, ninf, _CMP_NEQ_OQ);
        _mm512_mask_storeu_ps(S + i, mk, _mm512_maskz_mov_ps(live, vexp(_mm512_sub_ps(s, vm))));
    }
    float sum = l[0] * al;
    for (int64_t i = 0; i < M; i++)
        sum = sum + S[i];
    m[0] = mx;
    l[0] = sum;
    alpha[0] = al;
}

static void softmax_cols(int64_t M, int64_t N, float *S, int64_t lds, float *m, float *l,
                         float *alpha)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY), one = _mm512_set1_ps(1.0f);
    if (N == 1 && lds == 1) {
        softmax_col1(M, S, m, l, alpha);
        return;
    }
    for (int64_t t = 0; t < N; t += VL) {
        const __mmask16 mk = tail_mask(N - t);
        const __m512 mold = _mm512_maskz_loadu_ps(mk, m + t);
        __m512 mx = mold;
        for (int64_t i = 0; i < M; i++)
            mx = _mm512_max_ps(mx, _mm512_maskz_loadu_ps(mk, S + i * lds + t));
        const __mmask16 fin = _mm512_cmp_ps_mask(mx, ninf, _CMP_NEQ_OQ);
        const __m512 al = _mm512_mask_blend_ps(fin, one, vexp(_mm512_sub_ps(mold, mx)));
        __m512 sum = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, l + t), al);
        for (int64_t i = 0; i < M; i++) {
            float *row = S + i * lds + t;
            const __m512 s = _mm512_maskz_loadu_ps(mk, row);
            const __mmask16 live = _mm512_cmp_ps_mask(s, ninf, _CMP_NEQ_OQ);
            const __m512 e = _mm512_maskz_mov_ps(live, vexp(_mm512_sub_ps(s, mx)));
            _mm512_mask_storeu_ps(row, mk, e);
            sum = _mm512_add_ps(sum, e);
        }
        _mm512_mask_storeu_ps(m + t, mk, mx);
        _mm512_mask_storeu_ps(l + t, mk, sum);
        _mm512_mask_storeu_ps(alpha + t, mk, al);
    }
}

/* ---- saliency (SPEC §4) --------------------------------------------------------- */

/* Lanes L of a block whose first query is at position qf: row key is in the
 * window of lane L when key <= qf + L <= key + w - 1. */
INLINE __mmask16 window_lanes(int64_t key, int64_t qf, int64_t w, __mmask16 mk)
{
    int64_t lo = key - qf, hi = w - 1 > VL - 1 - lo ? VL - 1 : lo + w - 1; /* no overflow */
    if (hi < 0 || lo > VL - 1)
        return 0;
    lo = lo < 0 ? 0 : lo;
    hi = hi > VL - 1 ? VL - 1 : hi;
    uint32_t bits = ((1u << (hi - lo + 1)) - 1) << lo;
    return (__mmask16)(bits & mk);
}
INLINE __mmask16 self_lane(int64_t key, int64_t qf, __mmask16 mk)
{
    int64_t L = key - qf;
    return (L >= 0 && L < VL) ? (__mmask16)((1u << L) & mk) : 0;
}

/* Lane j of v, from registers: no stack array (a 64-byte local that GCC
 * aligns for AVX-512 and addresses with aligned moves lands 32-byte aligned
 * in an AddressSanitizer frame, which faults). */
INLINE float lane(__m512 v, int j)
{
    return _mm512_cvtss_f32(_mm512_permutexvar_ps(_mm512_set1_epi32(j), v));
}

/* saliency_cols for one contiguous column (decode: one query against its
 * window), vectorized down the rows: the column loop below fills one lane
 * of 16, and pays 5 exponentials, a logarithm and 3 divisions per row for
 * it (issue 4).  The same bits: the maxima run sequentially as
 * _mm512_max_ps does (m = m > s ? m : s); every exponential, quotient and
 * logarithm is the same lane function of the same inputs; the sums run
 * sequentially over the rows in order, each term formed in a vector first
 * (a product and an add, never contracted to one fused operation). */
static void saliency_col1(int64_t M, const float *S, int64_t key0, int64_t q0, int64_t w,
                          float *sigma)
{
    const __m512 eps = _mm512_set1_ps(STILL__SALIENCY_EPS);
    const int64_t self = q0 - key0;
    int64_t i0 = self - w + 1, i1 = self; /* rows, inclusive */
    i0 = i0 < 0 ? 0 : i0;
    i1 = i1 > M - 1 ? M - 1 : i1;
    float m1 = -INFINITY, m2 = -INFINITY, z1 = 0.0f, z2 = 0.0f, sg = 0.0f;
    for (int64_t i = i0; i <= i1; i++) {
        m1 = m1 > S[i] ? m1 : S[i];
        if (i != self)
            m2 = m2 > S[i] ? m2 : S[i];
    }
    const __m512 vm1 = _mm512_set1_ps(m1), vm2 = _mm512_set1_ps(m2);
    for (int64_t i = i0; i <= i1; i += VL) {
        const int64_t cnt = i1 + 1 - i < VL ? i1 + 1 - i : VL;
        const __m512 s = _mm512_maskz_loadu_ps(tail_mask(cnt), S + i);
        const __m512 e1 = vexp(_mm512_sub_ps(s, vm1)), e2 = vexp(_mm512_sub_ps(s, vm2));
        for (int j = 0; j < cnt; j++) {
            z1 = z1 + lane(e1, j);
            if (i + j != self)
                z2 = z2 + lane(e2, j);
        }
    }
    const __m512 vz1 = _mm512_set1_ps(z1), vz2 = _mm512_set1_ps(z2);
    for (int64_t i = i0; i <= i1; i += VL) {
        const int64_t cnt = i1 + 1 - i < VL ? i1 + 1 - i : VL;
        const __mmask16 mk = tail_mask(cnt), other = mk & ~self_lane(self, i, mk);
        const __m512 s = _mm512_maskz_loadu_ps(mk, S + i);
        const __m512 p = _mm512_div_ps(vexp(_mm512_sub_ps(s, vm1)), vz1);
        const __m512 pw = _mm512_maskz_div_ps(other, vexp(_mm512_sub_ps(s, vm2)), vz2);
        const __m512 ratio = _mm512_div_ps(_mm512_add_ps(p, eps), _mm512_add_ps(pw, eps));
        const __m512 term = _mm512_mul_ps(p, vlog(ratio));
        for (int j = 0; j < cnt; j++)
            sg = sg + lane(term, j);
    }
    /* W_t = {t}: no distribution without t (SPEC §4) */
    sigma[0] = m2 == -INFINITY ? INFINITY : sg;
}

static void saliency_cols(int64_t M, int64_t N, const float *S, int64_t lds, int64_t key0,
                          int64_t q0, int64_t w, float *sigma)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY), eps = _mm512_set1_ps(STILL__SALIENCY_EPS);
    if (N == 1 && lds == 1) {
        saliency_col1(M, S, key0, q0, w, sigma);
        return;
    }
    for (int64_t t = 0; t < N; t += VL) {
        const __mmask16 mk = tail_mask(N - t);
        const int64_t qf = q0 + t, nl = N - t < VL ? N - t : VL;
        int64_t i0 = (qf - key0) - w + 1, i1 = qf + nl - 1 - key0; /* rows, inclusive */
        i0 = i0 < 0 ? 0 : i0;
        i1 = i1 > M - 1 ? M - 1 : i1;
        __m512 m1 = ninf, m2 = ninf, z1 = _mm512_setzero_ps(), z2 = z1, sg = z1;
        for (int64_t i = i0; i <= i1; i++) {
            const __mmask16 in = window_lanes(key0 + i, qf, w, mk), self = self_lane(key0 + i, qf, mk);
            const __m512 s = _mm512_maskz_loadu_ps(mk, S + i * lds + t);
            m1 = _mm512_mask_max_ps(m1, in, m1, s);
            m2 = _mm512_mask_max_ps(m2, in & ~self, m2, s);
        }
        for (int64_t i = i0; i <= i1; i++) {
            const __mmask16 in = window_lanes(key0 + i, qf, w, mk), self = self_lane(key0 + i, qf, mk);
            const __m512 s = _mm512_maskz_loadu_ps(mk, S + i * lds + t);
            z1 = _mm512_mask_add_ps(z1, in, z1, vexp(_mm512_sub_ps(s, m1)));
            z2 = _mm512_mask_add_ps(z2, in & ~self, z2, vexp(_mm512_sub_ps(s, m2)));
        }
        for (int64_t i = i0; i <= i1; i++) {
            const __mmask16 in = window_lanes(key0 + i, qf, w, mk), self = self_lane(key0 + i, qf, mk);
            const __m512 s = _mm512_maskz_loadu_ps(mk, S + i * lds + t);
            const __m512 p = _mm512_div_ps(vexp(_mm512_sub_ps(s, m1)), z1);
            const __m512 pw = _mm512_maskz_div_ps(in & ~self, vexp(_mm512_sub_ps(s, m2)), z2);
            const __m512 ratio = _mm512_div_ps(_mm512_add_ps(p, eps), _mm512_add_ps(pw, eps));
            sg = _mm512_mask_add_ps(sg, in, sg, _mm512_mul_ps(p, vlog(ratio)));
        }
        /* W_t = {t}: no distribution without t (SPEC §4) */
        const __mmask16 alone = _mm512_cmp_ps_mask(m2, ninf, _CMP_EQ_OQ);
        sg = _mm512_mask_blend_ps(alone, sg, _mm512_set1_ps(INFINITY));
        _mm512_mask_storeu_ps(sigma + t, mk, sg);
    }
}

/* ---- column sums ------------------------------------------------------------------ */

static void colsum_acc(int64_t M, int64_t N, const float *A, int64_t lda, float *out)
{
    for (int64_t t = 0; t < N; t += VL) {
        const __mmask16 mk = tail_mask(N - t);
        __m512 s = _mm512_maskz_loadu_ps(mk, out + t);
        for (int64_t i = 0; i < M; i++)
            s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(mk, A + i * lda + t));
        _mm512_mask_storeu_ps(out + t, mk, s);
    }
}

/* ---- feature maps (SPEC §2) -------------------------------------------------------- */

INLINE float dot_row(const float *x, const float *y, int64_t n)
{
    __m512 s = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += VL) {
        const __mmask16 mk = tail_mask(n - i);
        s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, x + i), _mm512_maskz_loadu_ps(mk, y + i), s);
    }
    return _mm512_reduce_add_ps(s);
}

static void householder_rows(int64_t n, int64_t d, const float *X, int64_t ldx,
                             const float *uhat, float *Y, int64_t ldy)
{
    for (int64_t r = 0; r < n; r++) {
        const float *x = X + r * ldx;
        float *y = Y + r * ldy;
        const __m512 a2 = _mm512_set1_ps(2.0f * dot_row(x, uhat, d));
        for (int64_t i = 0; i < d; i += VL) {
            const __mmask16 mk = tail_mask(d - i);
            const __m512 u = _mm512_maskz_loadu_ps(mk, uhat + i);
            _mm512_mask_storeu_ps(y + i, mk, _mm512_fnmadd_ps(a2, u, _mm512_maskz_loadu_ps(mk, x + i)));
        }
    }
}

/* out[i] = softmax(sign * z)[i] for i < n (out may be z). */
INLINE void softmax_row(const float *z, int64_t n, float sign, float *out)
{
    const __m512 sg = _mm512_set1_ps(sign);
    __m512 mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += VL) {
        const __mmask16 mk = tail_mask(n - i);
        mx = _mm512_mask_max_ps(mx, mk, mx, _mm512_mul_ps(sg, _mm512_maskz_loadu_ps(mk, z + i)));
    }
    const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    for (int64_t i = 0; i < n; i += VL) {
        const __mmask16 mk = tail_mask(n - i);
        const __m512 e = vexp(_mm512_sub_ps(_mm512_mul_ps(sg, _mm512_maskz_loadu_ps(mk, z + i)), m));
        _mm512_mask_storeu_ps(out + i, mk, e);
        sum = _mm512_mask_add_ps(sum, mk, sum, e);
    }
    const __m512 s = _mm512_set1_ps(_mm512_reduce_add_ps(sum));
    for (int64_t i = 0; i < n; i += VL) {
        const __mmask16 mk = tail_mask(n - i);
        _mm512_mask_storeu_ps(out + i, mk, _mm512_div_ps(_mm512_maskz_loadu_ps(mk, out + i), s));
    }
}

/* The max and min of z [f] (masked lanes ignored). */
INLINE void row_range(const float *z, int64_t f, float *zmax, float *zmin)
{
    __m512 hi = _mm512_set1_ps(-INFINITY), lo = _mm512_set1_ps(INFINITY);
    for (int64_t i = 0; i < f; i += VL) {
        const __mmask16 mk = tail_mask(f - i);
        const __m512 v = _mm512_maskz_loadu_ps(mk, z + i);
        hi = _mm512_mask_max_ps(hi, mk, hi, v);
        lo = _mm512_mask_min_ps(lo, mk, lo, v);
    }
    *zmax = _mm512_reduce_max_ps(hi);
    *zmin = _mm512_reduce_min_ps(lo);
}

/* The exponentials and normalizations of hedgehog_row for zhat = gain·z,
 * given max z and min z. */
INLINE void hedgehog_map(const float *z, int64_t f, float gain, float zmax, float zmin, float *ph)
{
    const __m512 g = _mm512_set1_ps(gain);
    const __m512 m1 = _mm512_set1_ps(gain * zmax);
    const __m512 m2 = _mm512_set1_ps(-(gain * zmin));
    __m512 s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps();
    for (int64_t i = 0; i < f; i += VL) {
        const __mmask16 mk = tail_mask(f - i);
        const __m512 zh = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, z + i), g);
        const __m512 e1 = vexp_neg(_mm512_sub_ps(zh, m1)); /* <= 0: m1, m2 are the maxima */
        const __m512 e2 = vexp_neg(_mm512_sub_ps(_mm512_sub_ps(_mm512_setzero_ps(), zh), m2));
        _mm512_mask_storeu_ps(ph + i, mk, e1);
        _mm512_mask_storeu_ps(ph + f + i, mk, e2);
        s1 = _mm512_mask_add_ps(s1, mk, s1, e1);
        s2 = _mm512_mask_add_ps(s2, mk, s2, e2);
    }
    const __m512 i1 = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(s1));
    const __m512 i2 = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(s2));
    const __m512 floor_ = _mm512_set1_ps(STILL__PHI_FLOOR);
    for (int64_t i = 0; i < f; i += VL) {
        const __mmask16 mk = tail_mask(f - i);
        _mm512_mask_storeu_ps(ph + i, mk, _mm512_max_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, ph + i), i1), floor_));
        _mm512_mask_storeu_ps(ph + f + i, mk, _mm512_max_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, ph + f + i), i2), floor_));
    }
}

/* SPEC §2 hedgehog for one row, in three passes: ||z||², max z and min z
 * (zhat = gain·z with gain > 0, so max zhat = gain·max z, and max -zhat =
 * -(gain·min z)); both exponentials and their sums; then the two
 * normalizations with the floor.  phi [2f]: softmax(zhat), softmax(-zhat).
 * Returns 0 when z or zhat is not finite (still__np_gain). */
INLINE int hedgehog_row(const float *x, int64_t d, const float *z, int64_t f, int npmap,
                        float *ph)
{
    __m512 sq = _mm512_setzero_ps(), hi = _mm512_set1_ps(-INFINITY), lo = _mm512_set1_ps(INFINITY);
    for (int64_t i = 0; i < f; i += VL) {
        const __mmask16 mk = tail_mask(f - i);
        const __m512 v = _mm512_maskz_loadu_ps(mk, z + i);
        sq = _mm512_fmadd_ps(v, v, sq);
        hi = _mm512_mask_max_ps(hi, mk, hi, v);
        lo = _mm512_mask_min_ps(lo, mk, lo, v);
    }
    float gain = 1.0f, zmax = _mm512_reduce_max_ps(hi), zmin = _mm512_reduce_min_ps(lo);
    const int how = still__np_gain(x, d, z, f, npmap, npmap ? dot_row(x, x, d) : 0.0f,
                                   _mm512_reduce_add_ps(sq), &gain, ph + f);
    if (how != 1) { /* zhat formed in double in ph + f (zeros when flagged) */
        z = ph + f;
        gain = 1.0f;
        row_range(z, f, &zmax, &zmin);
    }
    hedgehog_map(z, f, gain, zmax, zmin, ph);
    return how != 0;
}

static int npmap_rows(int64_t n, int64_t d, int64_t f, int act, int npmap, const float *X,
                      int64_t ldx, const float *Z, int64_t ldz, float *phi, int64_t ldphi)
{
    const __m512 floor_ = _mm512_set1_ps(STILL__PHI_FLOOR), one = _mm512_set1_ps(1.0f);
    int ok = 1;
    if (act == STILL_ACT_HEDGEHOG) { /* the default: fused */
        for (int64_t r = 0; r < n; r++)
            ok &= hedgehog_row(X + r * ldx, d, Z + r * ldz, f, npmap, phi + r * ldphi);
        return ok;
    }
    for (int64_t r = 0; r < n; r++) {
        const float *z = Z + r * ldz, *x = X + r * ldx;
        float *ph = phi + r * ldphi;
        float *zh = act == STILL_ACT_HEDGEHOG ? ph + f : ph;
        float gain = 1.0f;
        const int how = still__np_gain(x, d, z, f, npmap, npmap ? dot_row(x, x, d) : 0.0f,
                                       dot_row(z, z, f), &gain, zh);
        ok &= how != 0;
        const __m512 g = _mm512_set1_ps(gain);
        for (int64_t i = 0; how == 1 && i < f; i += VL) {
            const __mmask16 mk = tail_mask(f - i);
            _mm512_mask_storeu_ps(zh + i, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, z + i), g));
        }
        int64_t m = f;
        switch (act) {
        case STILL_ACT_HEDGEHOG:
            softmax_row(zh, f, 1.0f, ph);
            softmax_row(zh, f, -1.0f, zh);
            m = 2 * f;
            break;
        case STILL_ACT_SOFTMAX:
            softmax_row(zh, f, 1.0f, ph);
            break;
        case STILL_ACT_ELU1:
            for (int64_t i = 0; i < f; i += VL) {
                const __mmask16 mk = tail_mask(f - i);
                const __m512 v = _mm512_maskz_loadu_ps(mk, zh + i);
                const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
                _mm512_mask_storeu_ps(ph + i, mk, _mm512_mask_blend_ps(pos, vexp(v), _mm512_add_ps(v, one)));
            }
            break;
        default: /* STILL_ACT_RELU */
            for (int64_t i = 0; i < f; i += VL) {
                const __mmask16 mk = tail_mask(f - i);
                _mm512_mask_storeu_ps(ph + i, mk, _mm512_max_ps(_mm512_maskz_loadu_ps(mk, zh + i), _mm512_setzero_ps()));
            }
            break;
        }
        for (int64_t i = 0; i < m; i += VL) {
            const __mmask16 mk = tail_mask(m - i);
            _mm512_mask_storeu_ps(ph + i, mk, _mm512_max_ps(_mm512_maskz_loadu_ps(mk, ph + i), floor_));
        }
    }
    return ok;
}

static void sigmoid(int64_t n, float *x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += VL) {
        const __mmask16 mk = tail_mask(n - i);
        const __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
        const __m512 e = vexp(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(v)));
        const __m512 inv = _mm512_div_ps(one, _mm512_add_ps(one, e));
        const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ);
        _mm512_mask_storeu_ps(x + i, mk, _mm512_mask_blend_ps(pos, _mm512_mul_ps(e, inv), inv));
    }
}

/* ---- transpose, rescale, combination -------------------------------------------- */

INLINE __m512 unpacklo_pd(__m512 x, __m512 y)
{
    return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(x), _mm512_castps_pd(y)));
}
INLINE __m512 unpackhi_pd(__m512 x, __m512 y)
{
    return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(x), _mm512_castps_pd(y)));
}

/* One full 16 x 16 block, in registers: unpack pairs of rows, then pairs of
 * pairs, then gather the 128-bit lanes of four row groups. */
INLINE void transpose16(const float *src, int64_t lds, __m512 s, float *dst, int64_t ldd)
{
    __m512 r[16], a[16], b[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_mul_ps(_mm512_loadu_ps(src + i * lds), s);
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        a[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        a[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) { /* b[4k+j], lane L: column 4L+j of rows 4k..4k+3 */
        b[4 * k + 0] = unpacklo_pd(a[4 * k], a[4 * k + 2]);
        b[4 * k + 1] = unpackhi_pd(a[4 * k], a[4 * k + 2]);
        b[4 * k + 2] = unpacklo_pd(a[4 * k + 1], a[4 * k + 3]);
        b[4 * k + 3] = unpackhi_pd(a[4 * k + 1], a[4 * k + 3]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const __m512 c1 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0x88);
        const __m512 c2 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0x88);
        const __m512 d1 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0xdd);
        const __m512 d2 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0xdd);
        _mm512_storeu_ps(dst + j * ldd, _mm512_shuffle_f32x4(c1, c2, 0x88));
        _mm512_storeu_ps(dst + (8 + j) * ldd, _mm512_shuffle_f32x4(c1, c2, 0xdd));
        _mm512_storeu_ps(dst + (4 + j) * ldd, _mm512_shuffle_f32x4(d1, d2, 0x88));
        _mm512_storeu_ps(dst + (12 + j) * ldd, _mm512_shuffle_f32x4(d1, d2, 0xdd));
    }
}

static void transpose(int64_t rows, int64_t cols, const float *src, int64_t lds, float scale,
                      float *dst, int64_t ldd)
{
    const __m512 s = _mm512_set1_ps(scale);
    for (int64_t r0 = 0; r0 < rows; r0 += 16)
        for (int64_t c0 = 0; c0 < cols; c0 += 16) {
            if (r0 + 16 <= rows && c0 + 16 <= cols) {
                transpose16(src + r0 * lds + c0, lds, s, dst + c0 * ldd + r0, ldd);
                continue;
            }
            for (int64_t r = r0; r < rows && r < r0 + 16; r++)
                for (int64_t c = c0; c < cols && c < c0 + 16; c++)
                    dst[c * ldd + r] = scale * src[r * lds + c];
        }
}

static void scale_row(int64_t n, float alpha, float *x)
{
    const __m512 a = _mm512_set1_ps(alpha);
    for (int64_t i = 0; i < n; i += VL) {
        const __mmask16 mk = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), a));
    }
}

static void combine_row(int64_t n, float omega, const float *acc, const float *lin,
                        const float *g, float den, float *o)
{
    const __m512 w = _mm512_set1_ps(omega), dn = _mm512_set1_ps(den);
    for (int64_t i = 0; i < n; i += VL) {
        const __mmask16 mk = tail_mask(n - i);
        __m512 num = _mm512_mul_ps(w, _mm512_maskz_loadu_ps(mk, acc + i));
        if (lin) {
            __m512 l = _mm512_maskz_loadu_ps(mk, lin + i);
            if (g)
                l = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, g + i), l);
            num = _mm512_add_ps(num, l);
        }
        _mm512_mask_storeu_ps(o + i, mk, _mm512_div_ps(num, dn));
    }
}

/* ---- one query against packed keys ---------------------------------------------- */

/* np (1..8) panels of 16 keys: 8 independent chains hide the FMA latency;
 * each lane is gemm's chain for its key (fma(key, x, c) over p from 0). */
INLINE void panel_micro(const int np, int64_t K, const float *P, const float *x, float *out,
                        __mmask16 last)
{
    __m512 c[8];
#pragma GCC unroll 8
    for (int r = 0; r < np; r++)
        c[r] = _mm512_setzero_ps();
    for (int64_t p = 0; p < K; p++) {
        const __m512 xb = _mm512_set1_ps(x[p]);
#pragma GCC unroll 8
        for (int r = 0; r < np; r++)
            c[r] = _mm512_fmadd_ps(_mm512_loadu_ps(P + (r * K + p) * VL), xb, c[r]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < np; r++)
        _mm512_mask_storeu_ps(out + r * VL, r == np - 1 ? last : 0xFFFF, c[r]);
}

static void gemv_panel(int64_t M, int64_t K, const float *P, const float *x, float *out)
{
    for (int64_t j = 0; j < M; j += 8 * VL) {
        const int64_t nr = M - j < 8 * VL ? M - j : 8 * VL;
        const int np = (int)((nr + VL - 1) / VL);
        const __mmask16 last = tail_mask(nr - (int64_t)(np - 1) * VL);
        const float *Pj = P + j * K;
        switch (np) {
        case 1: panel_micro(1, K, Pj, x, out + j, last); break;
        case 2: panel_micro(2, K, Pj, x, out + j, last); break;
        case 3: panel_micro(3, K, Pj, x, out + j, last); break;
        case 4: panel_micro(4, K, Pj, x, out + j, last); break;
        case 5: panel_micro(5, K, Pj, x, out + j, last); break;
        case 6: panel_micro(6, K, Pj, x, out + j, last); break;
        case 7: panel_micro(7, K, Pj, x, out + j, last); break;
        default: panel_micro(8, K, Pj, x, out + j, last); break;
        }
    }
}

/* ACC independent chains of fused multiply-adds on registers: enough to
 * keep two _mm512_fmadd_ps units of latency 4-5 busy. */
static double peak_fma(int64_t iters, float *sink)
{
    enum { ACC = 24 };
    __m512 acc[ACC];
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int c = 0; c < ACC; c++)
        acc[c] = _mm512_set1_ps((float)c);
    for (int64_t it = 0; it < iters; it++)
#pragma GCC unroll 32
        for (int c = 0; c < ACC; c++) /* unrolled: the chains stay in registers */
            acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    __m512 sum = acc[0];
    for (int c = 1; c < ACC; c++)
        sum = _mm512_add_ps(sum, acc[c]);
    float lanes[VL];
    _mm512_storeu_ps(lanes, sum);
    *sink = lanes[0];
    return 2.0 * ACC * VL * (double)iters;
}

const still__kernels still__kernels_avx512 = {
    STILL_ISA_AVX512, "avx512", gemm, softmax_cols, saliency_cols, colsum_acc,
    householder_rows, npmap_rows, sigmoid, transpose, scale_row, combine_row, gemv_panel,
    peak_fma,
};
