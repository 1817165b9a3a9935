/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* neon.c -- the kernels for AdvSIMD (aarch64), 4 floats per vector.  No
 * extra flags: AdvSIMD is part of ARMv8-A.  Vector exp/log from SLEEF's
 * AdvSIMD functions (sleef.h declares them under __ARM_NEON).  Every
 * multiply-add is fused; a column tail is loaded into a zero-padded vector
 * and computed by the same instructions, so it gets the same bits as in a
 * full vector. */
#include "kernels.h"

#include <arm_neon.h>
#include <math.h>
#include <sleef.h>
#include <string.h>

#define VL 4
#define MR 8 /* rows of the gemm micro-tile: 8 x 8 = 16 accumulators */

#define INLINE static inline __attribute__((always_inline))

INLINE float32x4_t vexp(float32x4_t x) { return Sleef_expf4_u10advsimd(x); }
INLINE float32x4_t vlog(float32x4_t x) { return Sleef_logf4_u10advsimd(x); }

/* n (0..4) lanes of p, the others 0 */
INLINE float32x4_t load_n(const float *p, int64_t n)
{
    if (n >= VL)
        return vld1q_f32(p);
    float tmp[VL] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (n > 0)
        memcpy(tmp, p, (size_t)n * sizeof(float));
    return vld1q_f32(tmp);
}
INLINE void store_n(float *p, int64_t n, float32x4_t v)
{
    if (n >= VL) {
        vst1q_f32(p, v);
        return;
    }
    float tmp[VL];
    vst1q_f32(tmp, v);
    if (n > 0)
        memcpy(p, tmp, (size_t)n * sizeof(float));
}
/* lanes of the low 4 bits */
INLINE uint32x4_t bits_mask(uint32_t bits)
{
    const uint32_t lanes[VL] = {1, 2, 4, 8};
    const uint32x4_t lane = vld1q_u32(lanes);
    return vceqq_u32(vandq_u32(vdupq_n_u32(bits), lane), lane);
}
INLINE float32x4_t select(uint32x4_t mask, float32x4_t a, float32x4_t b) { return vbslq_f32(mask, a, b); }

/* ---- gemm --------------------------------------------------------------------- */

INLINE void micro(const int mr, const int nv, int64_t K, const float *A, int64_t ars,
                  int64_t acs, const float *B, int64_t ldb, float *C, int64_t ldc, int64_t n0,
                  int64_t n1, int acc)
{
    float32x4_t c0[MR], c1[MR];
    const float *a[MR];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        a[r] = A + r * ars;
        c0[r] = acc ? load_n(C + r * ldc, n0) : vdupq_n_f32(0.0f);
        c1[r] = (nv == 2 && acc) ? load_n(C + r * ldc + VL, n1) : vdupq_n_f32(0.0f);
    }
    for (int64_t p = 0; p < K; p++) {
        const float *bp = B + p * ldb;
        const float32x4_t b0 = load_n(bp, n0);
        const float32x4_t b1 = nv == 2 ? load_n(bp + VL, n1) : b0;
        const int64_t o = p * acs;
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
            const float av = a[r][o];
            c0[r] = vfmaq_n_f32(c0[r], b0, av);
            if (nv == 2)
                c1[r] = vfmaq_n_f32(c1[r], b1, av);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        store_n(C + r * ldc, n0, c0[r]);
        if (nv == 2)
            store_n(C + r * ldc + VL, n1, c1[r]);
    }
}

#define MICRO_CASE(R)                                                                   \
    case R * 2 + 1: micro(R, 1, K, Ai, ars, acs, Bj, ldb, Cij, ldc, n0, n1, acc); break; \
    case R * 2 + 2: micro(R, 2, K, Ai, ars, acs, Bj, ldb, Cij, ldc, n0, n1, acc); break;

/* One row of C, nv (1..8) vectors wide: with a single row the micro-tile
 * above holds only two chains; here up to 8 independent chains (32
 * columns) are in flight.  The chains are gemm's own (one per element,
 * over p in order): the same bits.  `last`: columns of the last vector. */
INLINE void row_micro(const int nv, int64_t K, const float *A, int64_t acs, const float *B,
                      int64_t ldb, float *C, int64_t last, int acc)
{
    float32x4_t c[8];
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++)
        c[v] = acc ? load_n(C + v * VL, v == nv - 1 ? last : VL) : vdupq_n_f32(0.0f);
    for (int64_t p = 0; p < K; p++) {
        const float av = A[p * acs];
        const float *bp = B + p * ldb;
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            c[v] = vfmaq_n_f32(c[v], load_n(bp + v * VL, v == nv - 1 ? last : VL), av);
    }
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++)
        store_n(C + v * VL, v == nv - 1 ? last : VL, c[v]);
}

static void gemm_row(int64_t N, int64_t K, const float *A, int64_t acs, const float *B,
                     int64_t ldb, float *C, int acc)
{
    for (int64_t j = 0; j < N; j += 8 * VL) {
        const int64_t nr = N - j < 8 * VL ? N - j : 8 * VL;
        const int nv = (int)((nr + VL - 1) / VL);
        const int64_t last = nr - (int64_t)(nv - 1) * VL;
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
            const int64_t n0 = nr < VL ? nr : VL, n1 = nr - n0;
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
 * or a NaN is around, the sequential vmaxq_f32 loop is replayed); every
 * exponential is the same lane function of the same input; the sum runs
 * sequentially over the rows, as there. */
static void softmax_col1(int64_t M, float *S, float *m, float *l, float *alpha)
{
    const float32x4_t ninf = vdupq_n_f32(-INFINITY);
    float32x4_t vmx = ninf;
    uint32x4_t nan = vdupq_n_u32(0);
    for (int64_t i = 0; i < M; i += VL) {
        float32x4_t s = load_n(S + i, M - i);
        if (M - i < VL) /* the padding lanes must not win */
            s = select(bits_mask((1u << (M - i)) - 1), s, ninf);
        nan = vorrq_u32(nan, vmvnq_u32(vceqq_f32(s, s)));
        vmx = vmaxq_f32(vmx, s);
    }
    float mx = vmaxvq_f32(vmx);
    mx = m[0] > mx ? m[0] : mx;
    if (vmaxvq_u32(nan) || m[0] != m[0] || mx == 0.0f) { /* replay vmaxq_f32 in order */
        float32x4_t r = vdupq_n_f32(m[0]);
        for (int64_t i = 0; i < M; i++)
            r = vmaxq_f32(r, vdupq_n_f32(S[i]));
        mx = vgetq_lane_f32(r, 0);
    }
    const float32x4_t vm = vdupq_n_f32(mx);
    const int fin = mx != -INFINITY; /* vmvnq(vceqq(mx, -inf)) as below */
    const float al = fin ? vgetq_lane_f32(vexp(vdupq_n_f32(m[0] - mx)), 0) : 1.0f;
    for (int64_t i = 0; i < M; i += VL) {
        const float32x4_t s = load_n(S + i, M - i);
        const uint32x4_t live = vmvnq_u32(vceqq_f32(s, ninf));
        const float32x4_t e = vreinterpretq_f32_u32(
            vandq_u32(live, vreinterpretq_u32_f32(vexp(vsubq_f32(s, vm)))));
        store_n(S + i, M - i, e);
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
    const float32x4_t ninf = vdupq_n_f32(-INFINITY), one = vdupq_n_f32(1.0f);
    if (N == 1 && lds == 1) {
        softmax_col1(M, S, m, l, alpha);
        return;
    }
    for (int64_t t = 0; t < N; t += VL) {
        const int64_t nl = N - t;
        const float32x4_t mold = load_n(m + t, nl);
        float32x4_t mx = mold;
        for (int64_t i = 0; i < M; i++)
            mx = vmaxq_f32(mx, load_n(S + i * lds + t, nl));
        const uint32x4_t fin = vmvnq_u32(vceqq_f32(mx, ninf));
        const float32x4_t al = select(fin, vexp(vsubq_f32(mold, mx)), one);
        float32x4_t sum = vmulq_f32(load_n(l + t, nl), al);
        for (int64_t i = 0; i < M; i++) {
            float *row = S + i * lds + t;
            const float32x4_t s = load_n(row, nl);
            const uint32x4_t live = vmvnq_u32(vceqq_f32(s, ninf));
            const float32x4_t e = vreinterpretq_f32_u32(
                vandq_u32(live, vreinterpretq_u32_f32(vexp(vsubq_f32(s, mx)))));
            store_n(row, nl, e);
            sum = vaddq_f32(sum, e);
        }
        store_n(m + t, nl, mx);
        store_n(l + t, nl, sum);
        store_n(alpha + t, nl, al);
    }
}

/* ---- saliency (SPEC §4) --------------------------------------------------------- */

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
    const float32x4_t ninf = vdupq_n_f32(-INFINITY), eps = vdupq_n_f32(STILL__SALIENCY_EPS);
    const float32x4_t zero = vdupq_n_f32(0.0f);
    for (int64_t t = 0; t < N; t += VL) {
        const int64_t qf = q0 + t, nl = N - t < VL ? N - t : VL;
        int64_t i0 = (qf - key0) - w + 1, i1 = qf + nl - 1 - key0;
        i0 = i0 < 0 ? 0 : i0;
        i1 = i1 > M - 1 ? M - 1 : i1;
        float32x4_t m1 = ninf, m2 = ninf, z1 = zero, z2 = zero, sg = zero;
        for (int64_t i = i0; i <= i1; i++) {
            const uint32_t inb = window_bits(key0 + i, qf, w, nl), sb = self_bits(key0 + i, qf, nl);
            const uint32x4_t in = bits_mask(inb), other = bits_mask(inb & ~sb);
            const float32x4_t s = load_n(S + i * lds + t, nl);
            m1 = select(in, vmaxq_f32(m1, s), m1);
            m2 = select(other, vmaxq_f32(m2, s), m2);
        }
        for (int64_t i = i0; i <= i1; i++) {
            const uint32_t inb = window_bits(key0 + i, qf, w, nl), sb = self_bits(key0 + i, qf, nl);
            const uint32x4_t in = bits_mask(inb), other = bits_mask(inb & ~sb);
            const float32x4_t s = load_n(S + i * lds + t, nl);
            z1 = select(in, vaddq_f32(z1, vexp(vsubq_f32(s, m1))), z1);
            z2 = select(other, vaddq_f32(z2, vexp(vsubq_f32(s, m2))), z2);
        }
        for (int64_t i = i0; i <= i1; i++) {
            const uint32_t inb = window_bits(key0 + i, qf, w, nl), sb = self_bits(key0 + i, qf, nl);
            const uint32x4_t in = bits_mask(inb), other = bits_mask(inb & ~sb);
            const float32x4_t s = load_n(S + i * lds + t, nl);
            const float32x4_t p = vdivq_f32(vexp(vsubq_f32(s, m1)), z1);
            const float32x4_t pw = select(other, vdivq_f32(vexp(vsubq_f32(s, m2)), z2), zero);
            const float32x4_t ratio = vdivq_f32(vaddq_f32(p, eps), vaddq_f32(pw, eps));
            sg = select(in, vaddq_f32(sg, vmulq_f32(p, vlog(ratio))), sg);
        }
        const uint32x4_t alone = vceqq_f32(m2, ninf); /* W_t = {t} */
        sg = select(alone, vdupq_n_f32(INFINITY), sg);
        store_n(sigma + t, nl, sg);
    }
}

/* ---- column sums ------------------------------------------------------------------ */

static void colsum_acc(int64_t M, int64_t N, const float *A, int64_t lda, float *out)
{
    for (int64_t t = 0; t < N; t += VL) {
        const int64_t nl = N - t;
        float32x4_t s = load_n(out + t, nl);
        for (int64_t i = 0; i < M; i++)
            s = vaddq_f32(s, load_n(A + i * lda + t, nl));
        store_n(out + t, nl, s);
    }
}

/* ---- feature maps (SPEC §2) -------------------------------------------------------- */

INLINE float dot_row(const float *x, const float *y, int64_t n)
{
    float32x4_t s = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < n; i += VL)
        s = vfmaq_f32(s, load_n(x + i, n - i), load_n(y + i, n - i));
    return vaddvq_f32(s);
}

static void householder_rows(int64_t n, int64_t d, const float *X, int64_t ldx,
                             const float *uhat, float *Y, int64_t ldy)
{
    for (int64_t r = 0; r < n; r++) {
        const float *x = X + r * ldx;
        float *y = Y + r * ldy;
        const float32x4_t a2 = vdupq_n_f32(2.0f * dot_row(x, uhat, d));
        for (int64_t i = 0; i < d; i += VL)
            store_n(y + i, d - i, vfmsq_f32(load_n(x + i, d - i), a2, load_n(uhat + i, d - i)));
    }
}

INLINE void softmax_row(const float *z, int64_t n, float sign, float *out)
{
    const float32x4_t sg = vdupq_n_f32(sign), ninf = vdupq_n_f32(-INFINITY);
    float32x4_t mx = ninf, sum = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < n; i += VL) {
        const uint32x4_t live = bits_mask(n - i >= VL ? 15u : (1u << (n - i)) - 1);
        mx = select(live, vmaxq_f32(mx, vmulq_f32(sg, load_n(z + i, n - i))), mx);
    }
    const float32x4_t m = vdupq_n_f32(vmaxvq_f32(mx));
    for (int64_t i = 0; i < n; i += VL) {
        const uint32x4_t live = bits_mask(n - i >= VL ? 15u : (1u << (n - i)) - 1);
        const float32x4_t e = vexp(vsubq_f32(vmulq_f32(sg, load_n(z + i, n - i)), m));
        store_n(out + i, n - i, e);
        sum = vaddq_f32(sum, vreinterpretq_f32_u32(vandq_u32(live, vreinterpretq_u32_f32(e))));
    }
    const float32x4_t s = vdupq_n_f32(vaddvq_f32(sum));
    for (int64_t i = 0; i < n; i += VL)
        store_n(out + i, n - i, vdivq_f32(load_n(out + i, n - i), s));
}

static int npmap_rows(int64_t n, int64_t d, int64_t f, int act, int npmap, const float *X,
                      int64_t ldx, const float *Z, int64_t ldz, float *phi, int64_t ldphi)
{
    const float32x4_t floor_ = vdupq_n_f32(STILL__PHI_FLOOR), one = vdupq_n_f32(1.0f);
    const float32x4_t zero = vdupq_n_f32(0.0f);
    int ok = 1;
    for (int64_t r = 0; r < n; r++) {
        const float *z = Z + r * ldz, *x = X + r * ldx;
        float *ph = phi + r * ldphi;
        float *zh = act == STILL_ACT_HEDGEHOG ? ph + f : ph;
        float gain = 1.0f;
        const int how = still__np_gain(x, d, z, f, npmap, npmap ? dot_row(x, x, d) : 0.0f,
                                       dot_row(z, z, f), &gain, zh);
        ok &= how != 0;
        for (int64_t i = 0; how == 1 && i < f; i += VL)
            store_n(zh + i, f - i, vmulq_n_f32(load_n(z + i, f - i), gain));
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
                const float32x4_t v = load_n(zh + i, f - i);
                store_n(ph + i, f - i, select(vcgtq_f32(v, zero), vaddq_f32(v, one), vexp(v)));
            }
            break;
        default: /* STILL_ACT_RELU */
            for (int64_t i = 0; i < f; i += VL)
                store_n(ph + i, f - i, vmaxq_f32(load_n(zh + i, f - i), zero));
            break;
        }
        for (int64_t i = 0; i < m; i += VL)
            store_n(ph + i, m - i, vmaxq_f32(load_n(ph + i, m - i), floor_));
    }
    return ok;
}

static void sigmoid(int64_t n, float *x)
{
    const float32x4_t one = vdupq_n_f32(1.0f), zero = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < n; i += VL) {
        const float32x4_t v = load_n(x + i, n - i);
        const float32x4_t e = vexp(vnegq_f32(vabsq_f32(v)));
        const float32x4_t inv = vdivq_f32(one, vaddq_f32(one, e));
        store_n(x + i, n - i, select(vcgeq_f32(v, zero), inv, vmulq_f32(e, inv)));
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
    for (int64_t i = 0; i < n; i += VL)
        store_n(x + i, n - i, vmulq_n_f32(load_n(x + i, n - i), alpha));
}

static void combine_row(int64_t n, float omega, const float *acc, const float *lin,
                        const float *g, float den, float *o)
{
    const float32x4_t dn = vdupq_n_f32(den);
    for (int64_t i = 0; i < n; i += VL) {
        float32x4_t num = vmulq_n_f32(load_n(acc + i, n - i), omega);
        if (lin) {
            float32x4_t l = load_n(lin + i, n - i);
            if (g)
                l = vmulq_f32(load_n(g + i, n - i), l);
            num = vaddq_f32(num, l);
        }
        store_n(o + i, n - i, vdivq_f32(num, dn));
    }
}

/* ---- one query against packed keys ---------------------------------------------- */

/* np (1..4) panels of 16 keys, four vectors each: 16 independent chains;
 * each lane is gemm's chain for its key (key * x[p] + c fused, over p from
 * 0).  `last`: keys of the last panel (1..16). */
INLINE void panel_micro(const int np, int64_t K, const float *P, const float *x, float *out,
                        int64_t last)
{
    float32x4_t c[16];
#pragma GCC unroll 16
    for (int r = 0; r < 4 * np; r++)
        c[r] = vdupq_n_f32(0.0f);
    for (int64_t p = 0; p < K; p++) {
        const float xp = x[p];
#pragma GCC unroll 16
        for (int r = 0; r < 4 * np; r++)
            c[r] = vfmaq_n_f32(c[r], vld1q_f32(P + ((r / 4) * K + p) * 16 + (r % 4) * VL), xp);
    }
#pragma GCC unroll 16
    for (int r = 0; r < 4 * np; r++) {
        const int64_t keys = (r / 4 < np - 1 ? 16 : last) - (r % 4) * VL;
        if (keys > 0)
            store_n(out + r * VL, keys, c[r]);
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
 * keep four FMA pipes of latency 4 busy. */
static double peak_fma(int64_t iters, float *sink)
{
    enum { ACC = 16 };
    float32x4_t acc[ACC];
    const float32x4_t a = vdupq_n_f32(0.999999f), b = vdupq_n_f32(1e-7f);
    for (int c = 0; c < ACC; c++)
        acc[c] = vdupq_n_f32((float)c);
    for (int64_t it = 0; it < iters; it++)
#pragma GCC unroll 32
        for (int c = 0; c < ACC; c++) /* unrolled: the chains stay in registers */
            acc[c] = vfmaq_f32(b, acc[c], a);
    float32x4_t sum = acc[0];
    for (int c = 1; c < ACC; c++)
        sum = vaddq_f32(sum, acc[c]);
    float lanes[VL];
    vst1q_f32(lanes, sum);
    *sink = lanes[0];
    return 2.0 * ACC * VL * (double)iters;
}

const still__kernels still__kernels_neon = {
    STILL_ISA_NEON, "neon", gemm, softmax_cols, saliency_cols, colsum_acc,
    householder_rows, npmap_rows, sigmoid, transpose, scale_row, combine_row, gemv_panel,
    peak_fma,
};
