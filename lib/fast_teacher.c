/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* fast_teacher.c -- SPEC §1 on the fast path: full causal softmax
 * attention, flash-style.  A block of QBLOCK queries runs against key tiles
 * of KTILE keys with an online softmax (the kernels of simd/), so no N x N
 * matrix exists and a block's scores live in one small tile.  Work items
 * are (batch, head, query block), the costliest (last) blocks first, shared
 * by the OpenMP threads; each item is computed by one thread in a fixed
 * order, so the result does not depend on the thread count (SPEC I7).
 *
 * Precision (SPEC §10, N <= 65536): the scores, exponentials and each key
 * tile's sums are float32, but the running normalizer l and the running
 * numerator acc are carried from tile to tile in double.  A tile's
 * contribution is summed in float from zero (one chain of at most KTILE
 * terms: sum e^{s-m}, and sum e^{s-m} v per output), then added to the
 * double accumulators after their rescale by alpha = e^{m_old - m}.  So the
 * float rounding error is that of KTILE-term sums and does not grow with N.
 * Carried in float, every key after a dominant one (a needle or a sink
 * whose weight is near 1) added a term below half an ulp of l ~ 1 that was
 * rounded away or up: `still demo`'s needle probes missed the bound 3x at
 * N = 65536 (max |do| 1.7e-4 vs 1e-5 max|v| = 5.6e-5; now 8e-7).  What
 * remains is the dominant key's own tile: up to KTILE-1 later keys can
 * still be lost there, less than (KTILE-1) 2^-24 = 1.5e-5 of l per sum
 * (tests/test_fast_precision.c loses 255 keys of weight e^-18: 3.9e-6).
 *
 * Our own kernels, not cblas_sgemm: the products run inside our parallel
 * region, where Debian's pthread OpenBLAS would add its own threads
 * (CONVENTIONS), and they are fused with the softmax of each tile.
 * `still bench --blas` (tools/cmd_bench.c) times this against a teacher
 * that calls cblas_sgemm outside any parallel region, and bench/bench_kernels
 * the products alone. */
#include "fast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Queries per work item: each block reads K and V once, so larger blocks
 * read them less often.  QBLOCK changes no bits (each logit, each tile's
 * column and each carry is the same for any block); KTILE does.  `still
 * bench`, teacher row, N = 4096, 8 heads, d = 128, 1 thread, AVX-512
 * (2-core Zen 5), medians of 3, two interleaved rounds, % of the peak
 * measured in the same run: QBLOCK 96: 51%, 128: 51%, 192: 56-58%,
 * 256: 59-61%, 320: 61-62%, 384: 62-63%, 512: 53% (KTILE 256; KTILE 128
 * or 192 was no better); AVX2, 1 thread: 192: 65%, 384: 67%.  The earlier
 * choice, 192, came from an AVX2 machine (N = 8192, 2 threads: 64: 1.30 s,
 * 128: 1.12 s, 192: 0.99 s, 256: 0.97 s).  Both can be set at build time
 * (-DQBLOCK=..., -DKTILE=...) to repeat such measurements. */
#ifndef QBLOCK
#define QBLOCK 384
#endif
#ifndef KTILE
#define KTILE 256 /* keys per online-softmax tile */
#endif

typedef struct teacher_scratch {
    double *acc, *l;                          /* carried across key tiles */
    float *qst, *tile, *part, *m, *lt, *alpha; /* part: one group's tile sums */
    void *block;
} teacher_scratch;

static int scratch_init(int64_t d, int64_t dv, teacher_scratch *s)
{
    const size_t nd = (size_t)(QBLOCK * dv + QBLOCK);
    const size_t nf = (size_t)(d * QBLOCK + KTILE * QBLOCK + 16 * dv + 3 * QBLOCK);
    memset(s, 0, sizeof *s);
    if (!(s->block = malloc(nd * sizeof(double) + nf * sizeof(float))))
        return STILL_E_NOMEM;
    double *pd = s->block;
    s->acc = pd, pd += QBLOCK * dv;
    s->l = pd, pd += QBLOCK;
    float *p = (float *)pd;
    s->qst = p, p += d * QBLOCK;
    s->tile = p, p += KTILE * QBLOCK;
    s->part = p, p += 16 * dv;
    s->m = p, p += QBLOCK;
    s->lt = p, p += QBLOCK;
    s->alpha = p;
    return STILL_OK;
}

/* Queries a..a+n-1 of one head: q rows q [.][q_ns], keys k [.][k_ns],
 * values v [.][v_ns], outputs o [.][o_ns].  Returns 0 when a visible logit
 * is not finite in float (SPEC §10: one of -inf would pass for a masked
 * entry, of weight 0), else 1. */
static int teacher_block(const still__resolved *r, const still__kernels *K,
                          teacher_scratch *s, int64_t a, int64_t n, const float *q,
                          int64_t q_ns, const float *k, int64_t k_ns, const float *v,
                          int64_t v_ns, float *o, int64_t o_ns)
{
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v, end = a + n;
    const float scale = (float)r->scale;

    K->transpose(n, d, q + a * q_ns, q_ns, scale, s->qst, n);
    for (int64_t t = 0; t < n; t++) {
        s->m[t] = -INFINITY;
        s->l[t] = 0.0;
    }
    memset(s->acc, 0, (size_t)(n * dv) * sizeof(double));
    int ok = 1;
    for (int64_t k0 = 0; k0 < end; k0 += KTILE) {
        const int64_t tn = end - k0 < KTILE ? end - k0 : KTILE;
        for (int64_t j0 = 0; j0 < tn; j0 += 16) { /* keys after every query: skipped */
            const int64_t c0 = k0 + j0 - a > 0 ? k0 + j0 - a : 0, rows = tn - j0 < 16 ? tn - j0 : 16;
            if (c0 < n)
                K->gemm(rows, n - c0, d, k + (k0 + j0) * k_ns, k_ns, 1, s->qst + c0, n,
                        s->tile + j0 * n + c0, n, 0);
        }
        const int64_t seen = a + 1 - k0 > 0 ? (a + 1 - k0 < tn ? a + 1 - k0 : tn) : 0;
        ok &= still__finite_f32(s->tile, seen * n); /* keys every query sees */
        for (int64_t j = seen; j < tn; j++) { /* causal mask: */
            const int64_t hidden = k0 + j - a < n ? k0 + j - a : n; /* t < key - a */
            for (int64_t t = 0; t < hidden; t++)
                s->tile[j * n + t] = -INFINITY;
            ok &= still__finite_f32(s->tile + j * n + hidden, n - hidden);
        }
        /* the tile's own sums from zero (float); l = l alpha + lt in double */
        memset(s->lt, 0, (size_t)n * sizeof(float));
        K->softmax_cols(tn, n, s->tile, n, s->m, s->lt, s->alpha);
        for (int64_t t0 = 0; t0 < n; t0 += 16) { /* up to the last query's key */
            const int64_t cnt = n - t0 < 16 ? n - t0 : 16;
            const int64_t keys = a + t0 + cnt - k0 < tn ? a + t0 + cnt - k0 : tn;
            if (keys <= 0)
                continue; /* no key of the tile is visible: alpha 1, lt 0 */
            K->gemm(cnt, dv, keys, s->tile + t0, 1, n, v + k0 * v_ns, v_ns, s->part, dv, 0);
            for (int64_t t = t0; t < t0 + cnt; t++) {
                still__fast_carry(s->acc + t * dv, &s->l[t], s->part + (t - t0) * dv, s->lt[t],
                                  s->alpha[t], dv);
            }
        }
    }
    for (int64_t t = 0; t < n; t++) { /* l >= 1: the maximum's own term */
        const double *acc = s->acc + t * dv;
        float *ot = o + (a + t) * o_ns;
        for (int64_t e = 0; e < dv; e++)
            ot[e] = (float)(acc[e] / s->l[t]);
    }
    return ok;
}

int still__fast_teacher_run(const still__resolved *r, const still__kernels *K, int threads,
                            const float *q, const float *k, const float *v, float *o)
{
    const still_shape *sh = &r->shape;
    const int64_t N = sh->seq_len, Hq = sh->heads_q, nblocks = (N + QBLOCK - 1) / QBLOCK;
    const int64_t items = sh->batch * Hq * nblocks;
    const still__strides sq = still__strides_of(sh->layout, Hq, N, sh->dim_qk);
    const still__strides sk = still__strides_of(sh->layout, sh->heads_kv, N, sh->dim_qk);
    const still__strides sv = still__strides_of(sh->layout, sh->heads_kv, N, sh->dim_v);
    const still__strides so = still__strides_of(sh->layout, Hq, N, sh->dim_v);
    const int team = still__fast_threads(threads, items);
    int rc = STILL_OK, overflow = 0;

#pragma omp parallel num_threads(team) if (team > 1)
    {
        teacher_scratch s;
        int my_rc = scratch_init(sh->dim_qk, sh->dim_v, &s);
        if (my_rc) {
#pragma omp atomic write
            rc = my_rc;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < items; it++) {
            if (my_rc)
                continue;
            /* the last query blocks (most keys) first */
            const int64_t blk = nblocks - 1 - it / (sh->batch * Hq);
            const int64_t bh = it % (sh->batch * Hq), b = bh / Hq, h = bh % Hq;
            const int64_t hk = h / r->group, a = blk * QBLOCK;
            const int64_t n = N - a < QBLOCK ? N - a : QBLOCK;
            if (!teacher_block(r, K, &s, a, n, q + b * sq.b + h * sq.h, sq.n,
                          k + b * sk.b + hk * sk.h, sk.n, v + b * sv.b + hk * sv.h, sv.n,
                          o + b * so.b + h * so.h, so.n)) {
#pragma omp atomic write
                overflow = 1;
            }
        }
        free(s.block);
    }
    return rc ? rc : overflow ? STILL_E_NONFINITE : STILL_OK;
}
