/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * kernels.h -- the still__kernels table: the inner loops of the fast path
 * (float32) that BLAS does not cover, one table per ISA.
 *
 * simd/generic.c (portable C), simd/avx2.c (AVX2+FMA), simd/avx512.c
 * (AVX-512F/DQ) and simd/neon.c (AdvSIMD) each fill one table; each file is
 * compiled with its own -m flags in its own convenience library, and
 * lib/dispatch.c picks one at run time (CONVENTIONS: SIMD and dispatch).
 *
 * Determinism (SPEC I7, and the block independence the streaming state
 * needs, SPEC I6): every kernel computes each output element from its own
 * inputs in a fixed order that does not depend on how many other rows or
 * columns are processed in the same call.  gemm forms C[i][j] as ONE
 * sequential multiply-add chain over p = 0..K-1 (fused on the SIMD ISAs,
 * unfused in generic.c); the column kernels reduce each column t
 * sequentially over the rows i.  So computing one query alone (decode) or
 * 64 queries at once (prefill) gives the same bits, and appending rows that
 * contribute exact zeros (masked entries) changes nothing.
 *
 * Layouts: "A(i,p) = A[i*ars + p*acs]" lets gemm read A transposed or not
 * without a copy; B and C are row-major with leading dimensions ldb, ldc.
 */
#ifndef STILL_KERNELS_H
#define STILL_KERNELS_H

#include "still.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

typedef struct still__kernels {
    int isa;          /* STILL_ISA_* */
    const char *name; /* "generic", "avx2", "avx512", "neon" */

    /* C[i][j] = (acc ? C[i][j] : 0) + sum_{p<K} A(i,p) B[p][j] for i < M,
     * j < N, one sequential chain over p per element.  K == 0 leaves C (or
     * zeroes it). */
    void (*gemm)(int64_t M, int64_t N, int64_t K, const float *A, int64_t ars, int64_t acs,
                 const float *B, int64_t ldb, float *C, int64_t ldc, int acc);

    /* One tile of an online softmax over the rows of S [M][lds] (rows: keys,
     * columns t < N: queries; masked entries are -inf).  For every column:
     * mx = max(m[t], max_i S[i][t]); alpha[t] = exp(m[t] - mx) (1 while
     * nothing is unmasked); S[i][t] = exp(S[i][t] - mx) (0 where masked);
     * l[t] = l[t]*alpha[t] + sum_i S[i][t] (sequential in i); m[t] = mx.
     * (SPEC §1, §6: the maximum is subtracted, the quotient is exact.) */
    void (*softmax_cols)(int64_t M, int64_t N, float *S, int64_t lds, float *m, float *l,
                         float *alpha);

    /* SPEC §4 for N queries at once: S [M][lds] holds the logits of keys at
     * positions key0 + i against queries at positions q0 + t.  The window of
     * query t is the keys max(0, q0+t-w+1) .. q0+t (the last one itself);
     * sigma[t] = sum_j p_j log((p_j + 1e-8) / (p~_j + 1e-8)), +inf when the
     * window holds only the query itself.  Rows outside a window are
     * ignored; every window must lie inside key0 .. key0+M-1. */
    void (*saliency_cols)(int64_t M, int64_t N, const float *S, int64_t lds, int64_t key0,
                          int64_t q0, int64_t w, float *sigma);

    /* out[t] += sum_{i<M} A[i][t] for t < N, sequential in i (z of SPEC §3
     * and the linear normalizer phi_q^T z). */
    void (*colsum_acc)(int64_t M, int64_t N, const float *A, int64_t lda, float *out);

    /* SPEC §2 step 1: Y[i] = X[i] - 2 <X[i], uhat> uhat for n rows of d,
     * uhat the unit Householder vector. */
    void (*householder_rows)(int64_t n, int64_t d, const float *X, int64_t ldx,
                             const float *uhat, float *Y, int64_t ldy);

    /* SPEC §2 steps 3-4 for n rows: from the raw inputs X [n][ldx] (d
     * entries, for ||x||) and the pre-activations Z [n][ldz] (f entries),
     * phi [n][ldphi] (m = 2f for hedgehog, f otherwise): the NP rescale
     * ||zhat|| = ||x|| when npmap, then act (STILL_ACT_*), then
     * max(phi, 1e-12).  Returns 0 when a row's z or zhat is not finite in
     * float (an overflow upstream, or ||x|| beyond float's range), whose
     * phi is then meaningless -- the act and the floor would turn inf and
     * NaN into valid-looking features (SPEC §10) -- else 1.  The norms
     * never overflow: still__np_gain. */
    int (*npmap_rows)(int64_t n, int64_t d, int64_t f, int act, int npmap, const float *X,
                      int64_t ldx, const float *Z, int64_t ldz, float *phi, int64_t ldphi);

    /* x[i] = 1 / (1 + exp(-x[i])) for i < n (SPEC §6 gating projection). */
    void (*sigmoid)(int64_t n, float *x);

    /* dst[c*ldd + r] = scale * src[r*lds + c] for r < rows, c < cols (the B
     * operand of a gemm from row-major data: scaled queries, features). */
    void (*transpose)(int64_t rows, int64_t cols, const float *src, int64_t lds, float scale,
                      float *dst, int64_t ldd);

    /* x[i] *= alpha for i < n (the online softmax's rescale). */
    void (*scale_row)(int64_t n, float alpha, float *x);

    /* SPEC §6 for one query: o[e] = (omega*acc[e] + g[e]*lin[e]) / den for
     * e < n; lin NULL: no linear term; g NULL: all ones. */
    void (*combine_row)(int64_t n, float omega, const float *acc, const float *lin,
                        const float *g, float den, float *o);

    /* The logits of ONE query against many keys (decode: a step's query
     * against the cache), vectorized across keys.  The keys are packed in
     * panels of STILL__PANEL rows: entry p of key j is at
     * P[(j / STILL__PANEL) * STILL__PANEL * K + p * STILL__PANEL + j % STILL__PANEL]
     * (transpose of 16 rows with scale 1 and ldd = STILL__PANEL packs a
     * panel).  out[j] = sum_{p<K} key_j[p] x[p] for j < M, each ONE sequential multiply-add chain over p from 0 -- the
     * bits of gemm(M, 1, K, keys, K, 1, x, 1, out, 1, 0) on the same table,
     * so a one-query step scores its keys exactly as a prefill block does.
     * The lanes of the last panel past M are read (keep them finite: the
     * packer zeroes them) but never stored. */
    void (*gemv_panel)(int64_t M, int64_t K, const float *P, const float *x, float *out);

    /* The machine's multiply-add rate on this ISA, for benchmarks (`still
     * bench` reports its timings as a share of it): iters rounds of
     * independent multiply-add chains held in registers, enough of them to
     * cover the latency of the FMA units (fused on the SIMD ISAs).  Stores
     * a value that depends on every chain to *sink (so the work cannot be
     * left out) and returns the number of floating-point operations done
     * (2 per multiply-add). */
    double (*peak_fma)(int64_t iters, float *sink);
} still__kernels;

extern const still__kernels still__kernels_generic;
#if defined(__x86_64__)
extern const still__kernels still__kernels_avx2;
extern const still__kernels still__kernels_avx512;
#endif
#if defined(__aarch64__)
extern const still__kernels still__kernels_neon;
#endif

/* ---- helpers shared by the kernel files (static inline only) ------------- */

/* SPEC §4 smoothing of the saliency score. */
#define STILL__SALIENCY_EPS 1e-8f
/* SPEC §2 step 4: the floor of every feature. */
#define STILL__PHI_FLOOR 1e-12f
/* SPEC §2 step 3: the floor of ||z||. */
#define STILL__NORM_FLOOR 1e-12f

/* SPEC §2 step 3 for one row, overflow-safe (SPEC §10).  xx and zz are
 * the row's float sums of squares of x [d] and z [f] (npmap) or zz alone
 * (no npmap: xx unused).  When both are finite and xx is not tiny (its
 * squares did not underflow), the float gain is exact enough and zhat =
 * gain * z cannot overflow (|zhat| <= ||x|| < 2^64): returns 1 with *gain
 * set, the caller forms zhat.  Otherwise the rare slow path: the norms in
 * double (a float of 1.8e19 squares to infinity in float, never in
 * double), zhat formed here into zh [f] in double and rounded once;
 * returns 2 (zh holds zhat), or 0 when z holds a non-finite entry or an
 * entry of zhat exceeds float's range.  zh may be z's own storage. */
static inline int still__np_gain(const float *x, int64_t d, const float *z, int64_t f,
                                 int npmap, float xx, float zz, float *gain, float *zh)
{
    if (zz <= FLT_MAX && (!npmap || (xx <= FLT_MAX && xx >= 0x1p-100f))) {
        *gain = npmap ? sqrtf(xx) / fmaxf(sqrtf(zz), STILL__NORM_FLOOR) : 1.0f;
        return 1;
    }
    double sx = 0.0, sz = 0.0;
    for (int64_t p = 0; npmap && p < d; p++)
        sx += (double)x[p] * (double)x[p];
    for (int64_t o = 0; o < f; o++)
        sz += (double)z[o] * (double)z[o];
    if (!(sz <= DBL_MAX)) { /* z holds inf or NaN */
        for (int64_t o = 0; o < f; o++)
            zh[o] = 0.0f; /* defined, and flagged */
        return 0;
    }
    const double g = npmap ? sqrt(sx) / fmax(sqrt(sz), (double)STILL__NORM_FLOOR) : 1.0;
    int bad = 0;
    for (int64_t o = 0; o < f; o++) {
        const double y = (double)z[o] * g;
        bad |= !(fabs(y) <= (double)FLT_MAX);
        zh[o] = (float)y;
    }
    return bad ? 0 : 2;
}

/* Keys per panel of gemv_panel (the same for every ISA: one AVX-512
 * vector, two AVX2 vectors, four NEON vectors). */
#define STILL__PANEL 16

/* The transpose kernel in plain C (generic, AVX2 and NEON use it; AVX-512
 * has register blocks): 16 x 16 blocks, so both sides stay in cache. */
static inline void still__transpose_blocked(int64_t rows, int64_t cols, const float *src,
                                            int64_t lds, float scale, float *dst, int64_t ldd)
{
    for (int64_t r0 = 0; r0 < rows; r0 += 16)
        for (int64_t c0 = 0; c0 < cols; c0 += 16)
            for (int64_t r = r0; r < rows && r < r0 + 16; r++)
                for (int64_t c = c0; c < cols && c < c0 + 16; c++)
                    dst[c * ldd + r] = scale * src[r * lds + c];
}

#endif /* STILL_KERNELS_H */
