/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* avx2.c -- the kernels for AVX2 + FMA, 8 floats per vector.  Compiled
 * with -mavx2 -mfma; vector log from SLEEF's AVX2 function (sleef.h
 * declares it only under __AVX2__), exp in line (vexp below).  Every
 * multiply-add is fused; column tails use masked loads and stores
 * (vmaskmov), so a column computed in a tail lane gets the same bits as in
 * a full vector; full vectors use plain ones, cheaper on some cores. */
#include "kernels.h"

#include <immintrin.h>
#include <math.h>
#include <sleef.h>

#define VL 8
#define MR 6 /* rows of the gemm micro-tile: 6 x 16 = 12 accumulators */

#define INLINE static inline __attribute__((always_inline))

/* e^x in line (SLEEF's function is a call, and around it the caller's
 * vector registers are spilled: in the softmax tile's loop that cost more
 * than the exponential).  x = n ln2 + r, |r| <= ln2/2 (ln2 in two parts,
 * so r is exact to a few ulps), e^r by its Taylor polynomial of degree 7
 * (truncation r^8/8! < 5.2e-9 relative), times 2^n from the exponent
 * bits.  Within 1 ulp of e^x in [-87.3, 88.7] (0.91 at worst over every
 * 32nd float there, against double exp; tests/test_fast*.c hold
 * the fast path to SPEC §10 with it); below that 0 (-inf included; float's
 * subnormals never matter next to the maximum's own e^0 = 1), above it
 * +inf, NaN stays NaN. */
INLINE __m256 vexp(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.33654475f), hi = _mm256_set1_ps(88.72283935f);
    /* max_ps(a, b) and min_ps return b when one is NaN: x's NaN passes */
    const __m256 xc = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504089f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^n as 2^n1 2^n2 (n = n1 + n2, each in -63..64): n = 128 is e^x
     * just below FLT_MAX, whose 2^n alone overflows */
    const __m256i ni = _mm256_cvtps_epi32(n), n1 = _mm256_srai_epi32(ni, 1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, n1), bias), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), y);
}
INLINE __m256 vlog(__m256 x) { return Sleef_logf8_u10avx2(x); }

/* lanes < n set (n clamped to 0..8) */
INLINE __m256i tail_mask(int64_t n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n > VL ? VL : (n < 0 ? 0 : (int)n)), idx);
}
/* the lanes of the low 8 bits of `bits` */
INLINE __m256 bits_mask(uint32_t bits)
{
    const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256i b = _mm256_and_si256(_mm256_set1_epi32((int)bits), lane);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, lane));
}
INLINE __m256 mload(const float *p, __m256i mk) { return _mm256_maskload_ps(p, mk); }
INLINE void mstore(float *p, __m256i mk, __m256 v) { _mm256_maskstore_ps(p, mk, v); }
/* where mask: a, else b */
INLINE __m256 select(__m256 mask, __m256 a, __m256 b) { return _mm256_blendv_ps(b, a, mask); }

/* fixed-order horizontal reductions */
INLINE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
INLINE float hmax(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- gemm --------------------------------------------------------------------- */

/* The micro-tile: mr (1..MR) rows of C by nv (1, 2) vectors.  full: the
 * tile is 16 columns wide, so B and C move with plain loads and stores --
 * vmaskmov costs several times a load on some cores (AMD), and its mask
 * registers pushed the 12 accumulators out to the stack; a tail tile keeps
 * the masks.  The chains are the same either way (the same bits). */
INLINE void micro(const int mr, const int nv, const int full, int64_t K, const float *A,
                  int64_t ars, int64_t acs, const float *B, int64_t ldb, float *C,
                  int64_t ldc, __m256i m0, __m256i m1, int acc)
{
    __m256 c0[MR], c1[MR];
    const float *a[MR];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        a[r] = A + r * ars;
        c0[r] = !acc ? _mm256_setzero_ps()
                : full ? _mm256_loadu_ps(C + r * ldc) : mload(C + r * ldc, m0);
        c1[r] = !(nv == 2 && acc) ? _mm256_setzero_ps()
                : full ? _mm256_loadu_ps(C + r * ldc + VL) : mload(C + r * ldc + VL, m1);
    }
    for (int64_t p = 0; p < K; p++) {
        const float *bp = B + p * ldb;
        const __m256 b0 = full ? _mm256_loadu_ps(bp) : mload(bp, m0);
        const __m256 b1 = nv != 2 ? b0 : full ? _mm256_loadu_ps(bp + VL) : mload(bp + VL, m1);
        const int64_t o = p * acs;
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            const __m256 av = _mm256_broadcast_ss(a[r] + o);
            c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
            if (nv == 2)
                c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        if (full) {
            _mm256_storeu_ps(C + r * ldc, c0[r]);
            _mm256_storeu_ps(C + r * ldc + VL, c1[r]);
        } else {
            mstore(C + r * ldc, m0, c0[r]);
            if (nv == 2)
                mstore(C + r * ldc + VL, m1, c1[r]);
        }
    }
}

#define MICRO_CASE(R)                                                                      \
    case R * 3 + 0: micro(R, 2, 1, K, Ai, ars, acs, Bj, ldb, Cij, ldc, m0, m1, acc); break; \
    case R * 3 + 1: micro(R, 1, 0, K, Ai, ars, acs, Bj, ldb, Cij, ldc, m0, m1, acc); break; \
    case R * 3 + 2: micro(R, 2, 0, K, Ai, ars, acs, Bj, ldb, Cij, ldc, m0, m1, acc); break;

/* One row of C, nv (1..8) vectors wide: with a single row the micro-tile
 * above holds only two chains, and each step waits for the FMA before; here
 * up to 8 independent chains (64 columns) are in flight.  The chains are
 * gemm's own (one per element, over p in order): the same bits. */
INLINE void row_micro(const int nv, int64_t K, const float *A, int64_t acs, const float *B,
                      int64_t ldb, float *C, __m256i last, int acc)
{
    const __m256i full = _mm256_set1_epi32(-1);
    __m256 c[8];
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++)
        c[v] = acc ? mload(C + v * VL, v == nv - 1 ? last : full) : _mm256_setzero_ps();
    for (int64_t p = 0; p < K; p++) {
        const __m256 av = _mm256_broadcast_ss(A + p * acs);
        const float *bp = B + p * ldb;
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            c[v] = _mm256_fmadd_ps(av, v == nv - 1 ? mload(bp + v * VL, last)
                                                   : _mm256_loadu_ps(bp + v * VL), c[v]);
    }
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++)
        mstore(C + v * VL, v == nv - 1 ? last : full, c[v]);
}

static void gemm_row(int64_t N, int64_t K, const float *A, int64_t acs, const float *B,
                     int64_t ldb, float *C, int acc)
{
    for (int64_t j = 0; j < N; j += 8 * VL) {
        const int64_t nr = N - j < 8 * VL ? N - j : 8 * VL;
        const int nv = (int)((nr + VL - 1) / VL);
        const __m256i last = tail_mask(nr - (int64_t)(nv - 1) * VL);
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
    /* Row blocks of IB rows, and in each the column panels outermost: the
     * panel of B (K x 16) then serves every row tile of the block from L1
     * (the products of the exact branch and the teacher are 16 rows: keys
     * by queries, queries by values), where a row tile outermost swept all
     * of B from L2 once per row tile.  The order of the tiles changes no
     * chain. */
    enum { IB = 4 * MR };
    for (int64_t i0 = 0; i0 < M; i0 += IB) {
        const int64_t i1 = M - i0 < IB ? M : i0 + IB;
        for (int64_t j = 0; j < N; j += 2 * VL) {
            const int64_t nr = N - j < 2 * VL ? N - j : 2 * VL;
            const __m256i m0 = tail_mask(nr), m1 = tail_mask(nr - VL);
            /* 0: a full tile; 1, 2: a tail of one or two vectors */
            const int kind = nr == 2 * VL ? 0 : nr > VL ? 2 : 1;
            const float *Bj = B + j;
            for (int64_t i = i0; i < i1; i += MR) {
                const int mr = i1 - i < MR ? (int)(i1 - i) : MR;
                const float *Ai = A + i * ars;
                float *Cij = C + i * ldc + j;
                switch (mr * 3 + kind) {
                    MICRO_CASE(1)
                    MICRO_CASE(2)
                    MICRO_CASE(3)
                    MICRO_CASE(4)
                    MICRO_CASE(5)
                    MICRO_CASE(6)
                default: break;
                }
            }
        }
    }
}

/* ---- online softmax tile -------------------------------------------------------- */

/* softmax_cols for one contiguous column (decode: one query against a
 * tile of keys), vectorized down the rows.  The same bits as the column
 * loop below: the maximum is the same value in any order (if it is a zero
 * or a NaN is around, where _mm256_max_ps's order shows, the sequential
 * loop is replayed); every exponential is the same lane function of the
 * same input; the sum runs sequentially over the rows, as there. */
static void softmax_col1(int64_t M, float *S, float *m, float *l, float *alpha)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 vmx = ninf, nan = _mm256_setzero_ps();
    for (int64_t i = 0; i < M; i += VL) {
        const __m256i mk = tail_mask(M - i);
        const __m256 s = select(_mm256_castsi256_ps(mk), mload(S + i, mk), ninf);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(s, s, _CMP_UNORD_Q));
        vmx = _mm256_max_ps(vmx, s);
    }
    float mx = hmax(vmx);
    mx = m[0] > mx ? m[0] : mx;
    if (_mm256_movemask_ps(nan) || m[0] != m[0] || mx == 0.0f) { /* replay max_ps in order */
        mx = m[0];
        for (int64_t i = 0; i < M; i++)
            mx = mx > S[i] ? mx : S[i];
    }
    const __m256 vm = _mm256_set1_ps(mx);
    const int fin = mx != -INFINITY && mx == mx; /* _CMP_NEQ_OQ */
    const float al = fin ? _mm256_cvtss_f32(vexp(_mm256_set1_ps(m[0] - mx))) : 1.0f;
    for (int64_t i = 0; i < M; i += VL) {
        const __m256i mk = tail_mask(M - i);
        const __m256 s = mload(S + i, mk);
        const __m256 live = _mm256_cmp_ps(s, ninf, _CMP_NEQ_OQ);
        mstore(S + i, mk, _mm256_and_ps(live, vexp(_mm256_sub_ps(s, vm))));
    }
    float sum = l[0] * al;
    for (int64_t i = 0; i < M; i++)
        sum = sum + S[i];
    m[0] = mx;
    l[0] = sum;
    alpha[0] = al;
}

/* The steps of softmax_cols on the 8 columns t..t+7 of one row (full) or
 * the last nt < 8 of them (masked: vmaskmov costs several loads on some
 * cores, so only the tail pays for it). */
INLINE __m256 ld(const float *p, int full, __m256i mk)
{
    return full ? _mm256_loadu_ps(p) : mload(p, mk);
}
INLINE void st(float *p, int full, __m256i mk, __m256 v)
{
    if (full)
        _mm256_storeu_ps(p, v);
    else
        mstore(p, mk, v);
}
INLINE void softmax_max8(const float *row, float *mx, int full, __m256i mk)
{
    st(mx, full, mk, _mm256_max_ps(ld(mx, full, mk), ld(row, full, mk)));
}
INLINE void softmax_exp8(float *row, const float *m, float *l, int full, __m256i mk)
{
    const __m256 s = ld(row, full, mk);
    const __m256 live = _mm256_cmp_ps(s, _mm256_set1_ps(-INFINITY), _CMP_NEQ_OQ);
    const __m256 e = _mm256_and_ps(live, vexp(_mm256_sub_ps(s, ld(m, full, mk))));
    st(row, full, mk, e);
    st(l, full, mk, _mm256_add_ps(ld(l, full, mk), e));
}

/* Row by row, vector by vector along each row: the tile is read in the
 * order it lies in memory (a strip of 8 columns down the rows touched a new
 * cache line per row, twice, and cost a quarter of the tile's products).
 * Every column still gets the same chains as one column alone: its maximum
 * over i = 0..M-1 in order, then l*alpha + e_0 + e_1 + ... in order. */
static void softmax_cols(int64_t M, int64_t N, float *S, int64_t lds, float *m, float *l,
                         float *alpha)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY), one = _mm256_set1_ps(1.0f);
    if (N == 1 && lds == 1) {
        softmax_col1(M, S, m, l, alpha);
        return;
    }
    const int64_t nf = N / VL * VL; /* columns in full vectors */
    const __m256i mk = tail_mask(N - nf);
    float *mx = alpha; /* the new maximum, until alpha replaces it */
    for (int64_t t = 0; t < N; t += VL) {
        const __m256i mt = tail_mask(N - t);
        mstore(mx + t, mt, mload(m + t, mt));
    }
    for (int64_t i = 0; i < M; i++) {
        const float *row = S + i * lds;
        for (int64_t t = 0; t < nf; t += VL)
            softmax_max8(row + t, mx + t, 1, mk);
        if (nf < N)
            softmax_max8(row + nf, mx + nf, 0, mk);
    }
    for (int64_t t = 0; t < N; t += VL) {
        const __m256i mt = tail_mask(N - t);
        const __m256 mold = mload(m + t, mt), mnew = mload(mx + t, mt);
        const __m256 fin = _mm256_cmp_ps(mnew, ninf, _CMP_NEQ_OQ);
        const __m256 al = select(fin, vexp(_mm256_sub_ps(mold, mnew)), one);
        mstore(l + t, mt, _mm256_mul_ps(mload(l + t, mt), al));
        mstore(m + t, mt, mnew);
        mstore(alpha + t, mt, al);
    }
    for (int64_t i = 0; i < M; i++) {
        float *row = S + i * lds;
        for (int64_t t = 0; t < nf; t += VL)
            softmax_exp8(row + t, m + t, l + t, 1, mk);
        if (nf < N)
            softmax_exp8(row + nf, m + nf, l + nf, 0, mk);
    }
}

/* ---- saliency (SPEC §4) --------------------------------------------------------- */

/* lanes L (of nl) whose query qf + L has key in its window: key <= qf+L <= key+w-1 */
INLINE uint32_t window_bits(int64_t key, int64_t qf, int64_t w, int64_t nl)
{
    int64_t lo = key - qf, hi = w - 1 > nl - 1 - lo ? nl - 1 : lo + w - 1; /* no overflow */
    if (hi < 0 || lo > nl - 1)
        return 0;
    lo = lo < 0 ? 0 : lo;
    hi = hi > nl - 1 ? nl - 1 : hi;
    return ((1u << (hi - lo + 1)) - 1) << lo;
}
INLINE uint32_t self_bits(int64_t key, int64_t qf, int64_t nl)
{
    int64_t L = key - qf;
    return (L >= 0 && L < nl) ? 1u << L : 0;
}

static void saliency_cols(int64_t M, int64_t N, const float *S, int64_t lds, int64_t key0,
                          int64_t q0, int64_t w, float *sigma)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY), eps = _mm256_set1_ps(STILL__SALIENCY_EPS);
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t t = 0; t < N; t += VL) {
        const __m256i mk = tail_mask(N - t);
        const int64_t qf = q0 + t, nl = N - t < VL ? N - t : VL;
        int64_t i0 = (qf - key0) - w + 1, i1 = qf + nl - 1 - key0;
        i0 = i0 < 0 ? 0 : i0;
        i1 = i1 > M - 1 ? M - 1 : i1;
        __m256 m1 = ninf, m2 = ninf, z1 = zero, z2 = zero, sg = zero;
        for (int64_t i = i0; i <= i1; i++) {
            const uint32_t inb = window_bits(key0 + i, qf, w, nl), sb = self_bits(key0 + i, qf, nl);
            const __m256 in = bits_mask(inb), other = bits_mask(inb & ~sb);
            const __m256 s = mload(S + i * lds + t, mk);
            m1 = select(in, _mm256_max_ps(m1, s), m1);
            m2 = select(other, _mm256_max_ps(m2, s), m2);
        }
        for (int64_t i = i0; i <= i1; i++) {
            const uint32_t inb = window_bits(key0 + i, qf, w, nl), sb = self_bits(key0 + i, qf, nl);
            const __m256 in = bits_mask(inb), other = bits_mask(inb & ~sb);
            const __m256 s = mload(S + i * lds + t, mk);
            z1 = select(in, _mm256_add_ps(z1, vexp(_mm256_sub_ps(s, m1))), z1);
            z2 = select(other, _mm256_add_ps(z2, vexp(_mm256_sub_ps(s, m2))), z2);
        }
        for (int64_t i = i0; i <= i1; i++) {
            const uint32_t inb = window_bits(key0 + i, qf, w, nl), sb = self_bits(key0 + i, qf, nl);
            const __m256 in = bits_mask(inb), other = bits_mask(inb & ~sb);
            const __m256 s = mload(S + i * lds + t, mk);
            const __m256 p = _mm256_div_ps(vexp(_mm256_sub_ps(s, m1)), z1);
            const __m256 pw = _mm256_and_ps(other, _mm256_div_ps(vexp(_mm256_sub_ps(s, m2)), z2));
            const __m256 ratio = _mm256_div_ps(_mm256_add_ps(p, eps), _mm256_add_ps(pw, eps));
            sg = select(in, _mm256_add_ps(sg, _mm256_mul_ps(p, vlog(ratio))), sg);
        }
        const __m256 alone = _mm256_cmp_ps(m2, ninf, _CMP_EQ_OQ); /* W_t = {t} */
        sg = select(alone, _mm256_set1_ps(INFINITY), sg);
        mstore(sigma + t, mk, sg);
    }
}

/* ---- column sums ------------------------------------------------------------------ */

static void colsum_acc(int64_t M, int64_t N, const float *A, int64_t lda, float *out)
{
    for (int64_t t = 0; t < N; t += VL) {
        const __m256i mk = tail_mask(N - t);
        __m256 s = mload(out + t, mk);
        for (int64_t i = 0; i < M; i++)
            s = _mm256_add_ps(s, mload(A + i * lda + t, mk));
        mstore(out + t, mk, s);
    }
}

/* ---- feature maps (SPEC §2) -------------------------------------------------------- */

INLINE float dot_row(const float *x, const float *y, int64_t n)
{
    __m256 s = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += VL) {
        const __m256i mk = tail_mask(n - i);
        s = _mm256_fmadd_ps(mload(x + i, mk), mload(y + i, mk), s);
    }
    return hsum(s);
}

static void householder_rows(int64_t n, int64_t d, const float *X, int64_t ldx,
                             const float *uhat, float *Y, int64_t ldy)
{
    for (int64_t r = 0; r < n; r++) {
        const float *x = X + r * ldx;
        float *y = Y + r * ldy;
        const __m256 a2 = _mm256_set1_ps(2.0f * dot_row(x, uhat, d));
        for (int64_t i = 0; i < d; i += VL) {
            const __m256i mk = tail_mask(d - i);
            mstore(y + i, mk, _mm256_fnmadd_ps(a2, mload(uhat + i, mk), mload(x + i, mk)));
        }
    }
}

INLINE void softmax_row(const float *z, int64_t n, float sign, float *out)
{
    const __m256 sg = _mm256_set1_ps(sign), ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf, sum = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += VL) {
        const __m256i mk = tail_mask(n - i);
        const __m256 v = _mm256_mul_ps(sg, mload(z + i, mk));
        mx = select(_mm256_castsi256_ps(mk), _mm256_max_ps(mx, v), mx);
    }
    const __m256 m = _mm256_set1_ps(hmax(mx));
    for (int64_t i = 0; i < n; i += VL) {
        const __m256i mk = tail_mask(n - i);
        const __m256 e = vexp(_mm256_sub_ps(_mm256_mul_ps(sg, mload(z + i, mk)), m));
        mstore(out + i, mk, e);
        sum = _mm256_add_ps(sum, _mm256_and_ps(_mm256_castsi256_ps(mk), e));
    }
    const __m256 s = _mm256_set1_ps(hsum(sum));
    for (int64_t i = 0; i < n; i += VL) {
        const __m256i mk = tail_mask(n - i);
        mstore(out + i, mk, _mm256_div_ps(mload(out + i, mk), s));
    }
}

static int npmap_rows(int64_t n, int64_t d, int64_t f, int act, int npmap, const float *X,
                      int64_t ldx, const float *Z, int64_t ldz, float *phi, int64_t ldphi)
{
    const __m256 floor_ = _mm256_set1_ps(STILL__PHI_FLOOR), one = _mm256_set1_ps(1.0f);
    const __m256 zero = _mm256_setzero_ps();
    int ok = 1;
    for (int64_t r = 0; r < n; r++) {
        const float *z = Z + r * ldz, *x = X + r * ldx;
        float *ph = phi + r * ldphi;
        float *zh = act == STILL_ACT_HEDGEHOG ? ph + f : ph;
        float gain = 1.0f;
        const int how = still__np_gain(x, d, z, f, npmap, npmap ? dot_row(x, x, d) : 0.0f,
                                       dot_row(z, z, f), &gain, zh);
        ok &= how != 0;
        const __m256 g = _mm256_set1_ps(gain);
        for (int64_t i = 0; how == 1 && i < f; i += VL) {
            const __m256i mk = tail_mask(f - i);
            mstore(zh + i, mk, _mm256_mul_ps(mload(z + i, mk), g));
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
                const __m256i mk = tail_mask(f - i);
                const __m256 v = mload(zh + i, mk);
                const __m256 pos = _mm256_cmp_ps(v, zero, _CMP_GT_OQ);
                mstore(ph + i, mk, select(pos, _mm256_add_ps(v, one), vexp(v)));
            }
            break;
        default: /* STILL_ACT_RELU */
            for (int64_t i = 0; i < f; i += VL) {
                const __m256i mk = tail_mask(f - i);
                mstore(ph + i, mk, _mm256_max_ps(mload(zh + i, mk), zero));
            }
            break;
        }
        for (int64_t i = 0; i < m; i += VL) {
            const __m256i mk = tail_mask(m - i);
            mstore(ph + i, mk, _mm256_max_ps(mload(ph + i, mk), floor_));
        }
    }
    return ok;
}

static void sigmoid(int64_t n, float *x)
{
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < n; i += VL) {
        const __m256i mk = tail_mask(n - i);
        const __m256 v = mload(x + i, mk);
        const __m256 e = vexp(_mm256_sub_ps(zero, _mm256_and_ps(v, absmask)));
        const __m256 inv = _mm256_div_ps(one, _mm256_add_ps(one, e));
        const __m256 pos = _mm256_cmp_ps(v, zero, _CMP_GE_OQ);
        mstore(x + i, mk, select(pos, inv, _mm256_mul_ps(e, inv)));
    }
}

/* ---- transpose, rescale, combination -------------------------------------------- */

static void transpose(int64_t rows, int64_t cols, const float *src, int64_t lds, float scale,
                      float *dst, int64_t ldd)
{
    still__transpose_blocked(rows, cols, src, lds, scale, dst, ldd);
}

static void scale_row(int64_t n, float alpha, float *x)
{
    const __m256 a = _mm256_set1_ps(alpha);
    for (int64_t i = 0; i < n; i += VL) {
        const __m256i mk = tail_mask(n - i);
        mstore(x + i, mk, _mm256_mul_ps(mload(x + i, mk), a));
    }
}

static void combine_row(int64_t n, float omega, const float *acc, const float *lin,
                        const float *g, float den, float *o)
{
    const __m256 w = _mm256_set1_ps(omega), dn = _mm256_set1_ps(den);
    for (int64_t i = 0; i < n; i += VL) {
        const __m256i mk = tail_mask(n - i);
        __m256 num = _mm256_mul_ps(w, mload(acc + i, mk));
        if (lin) {
            __m256 l = mload(lin + i, mk);
            if (g)
                l = _mm256_mul_ps(mload(g + i, mk), l);
            num = _mm256_add_ps(num, l);
        }
        mstore(o + i, mk, _mm256_div_ps(num, dn));
    }
}

/* ---- one query against packed keys ---------------------------------------------- */

/* np (1..4) panels of 16 keys, two vectors each: 8 independent chains hide
 * the FMA latency; each lane is gemm's chain for its key (fma(key, x, c)
 * over p from 0).  `last`: keys of the last panel (1..16). */
INLINE void panel_micro(const int np, int64_t K, const float *P, const float *x, float *out,
                        int64_t last)
{
    __m256 c[8];
#pragma GCC unroll 8
    for (int r = 0; r < 2 * np; r++)
        c[r] = _mm256_setzero_ps();
    for (int64_t p = 0; p < K; p++) {
        const __m256 xb = _mm256_broadcast_ss(x + p);
#pragma GCC unroll 8
        for (int r = 0; r < 2 * np; r++)
            c[r] = _mm256_fmadd_ps(_mm256_loadu_ps(P + ((r / 2) * K + p) * 16 + (r % 2) * VL), xb,
                                   c[r]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < 2 * np; r++) {
        const int64_t keys = r / 2 < np - 1 ? 16 : last;
        mstore(out + r * VL, tail_mask(keys - (r % 2) * VL), c[r]);
    }
}

static void gemv_panel(int64_t M, int64_t K, const float *P, const float *x, float *out)
{
    for (int64_t j = 0; j < M; j += 64) {
        const int64_t nr = M - j < 64 ? M - j : 64;
        const int np = (int)((nr + 15) / 16);
        const int64_t last = nr - (int64_t)(np - 1) * 16;
        const float *Pj = P + j * K;
        switch (np) {
        case 1: panel_micro(1, K, Pj, x, out + j, last); break;
        case 2: panel_micro(2, K, Pj, x, out + j, last); break;
        case 3: panel_micro(3, K, Pj, x, out + j, last); break;
        default: panel_micro(4, K, Pj, x, out + j, last); break;
        }
    }
}

/* ACC independent chains of fused multiply-adds on registers: enough to
 * keep two _mm256_fmadd_ps units of latency 4-5 busy. */
static double peak_fma(int64_t iters, float *sink)
{
    enum { ACC = 12 };
    __m256 acc[ACC];
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int c = 0; c < ACC; c++)
        acc[c] = _mm256_set1_ps((float)c);
    for (int64_t it = 0; it < iters; it++)
#pragma GCC unroll 32
        for (int c = 0; c < ACC; c++) /* unrolled: the chains stay in registers */
            acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    __m256 sum = acc[0];
    for (int c = 1; c < ACC; c++)
        sum = _mm256_add_ps(sum, acc[c]);
    float lanes[VL];
    _mm256_storeu_ps(lanes, sum);
    *sink = lanes[0];
    return 2.0 * ACC * VL * (double)iters;
}

const still__kernels still__kernels_avx2 = {
    STILL_ISA_AVX2, "avx2", gemm, softmax_cols, saliency_cols, colsum_acc,
    householder_rows, npmap_rows, sigmoid, transpose, scale_row, combine_row, gemv_panel,
    peak_fma,
};
