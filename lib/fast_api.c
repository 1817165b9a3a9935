/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* fast_api.c -- the fast path's public entry points (float32): STILL
 * attention (SPEC §4-6) through the chunked driver, the teacher (SPEC §1)
 * and the gating projection (SPEC §6).  Everything is validated before any
 * work (SPEC §10); float64 tensors are refused (STILL_E_DTYPE).
 *
 * Results: float32 holds the logits of inputs of order 1 (SPEC §10) but
 * not, say, of inputs of 1e30 (logits of 1e60).  A call whose output holds
 * a NaN or an infinity returns STILL_E_NONFINITE instead of STILL_OK: one
 * pass over the output, per unit inside the region (issue 7).  So does a
 * call where an intermediate overflowed float32 although the output looks
 * finite -- a logit, a feature map's z or zhat, a denominator, a gate
 * pre-activation: the driver and the teacher flag them (lib/driver.c,
 * lib/fast_teacher.c), since a later max, floor, softmax or sigmoid would
 * make them valid-looking numbers (issue 13).
 *
 * Threads: one OpenMP region per call over the units (batch x query head,
 * or batch x kv head with per-kv selection), cfg->threads of them (0 =
 * OpenMP's default).  A unit is computed by one thread in a fixed order,
 * so results are bitwise the same for any thread count (SPEC I7). */
#include "fast.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

/* 1 when every element of rows [n][dv] (row stride ld) is finite: |x| <=
 * FLT_MAX is false exactly for inf and NaN, and the scan of a row has no
 * branch, so it vectorizes (as lib/validate.c's scan of the inputs). */
static int finite_rows(const float *o, int64_t n, int64_t dv, int64_t ld)
{
    int bad = 0;
    for (int64_t t = 0; t < n && !bad; t++) {
        const float *x = o + t * ld;
#pragma omp simd reduction(| : bad)
        for (int64_t e = 0; e < dv; e++)
            bad |= !(fabsf(x[e]) <= FLT_MAX);
    }
    return !bad;
}

/* Runs unit `iu` of a prefill: one block of N tokens (lib/fast.h). */
static int forward_unit(const still__fast_ctx *ctx, const still_tensors *t, int64_t iu,
                        still__fast_scratch *ws)
{
    const still__resolved *r = &ctx->r;
    const still_shape *sh = &r->shape;
    const int64_t N = sh->seq_len, Hq = sh->heads_q, per_b = Hq / ctx->nh;
    const int64_t b = iu / per_b, hq0 = (iu % per_b) * ctx->nh;
    const still__strides sq = still__strides_of(sh->layout, Hq, N, sh->dim_qk);
    const still__strides sk = still__strides_of(sh->layout, sh->heads_kv, N, sh->dim_qk);
    const still__strides sv = still__strides_of(sh->layout, sh->heads_kv, N, sh->dim_v);
    const still__strides so = still__strides_of(sh->layout, Hq, N, sh->dim_v);
    const int64_t row0 = b * Hq + hq0; /* first row of sigma / selections */
    still__fast_unit u;
    still__fast_block blk;
    double *sigma = t->sigma ? t->sigma + row0 * N : NULL, *own_sigma = NULL;
    int rc;

    if ((rc = still__fast_unit_init(ctx, b, hq0, &u)))
        return rc;
    if (t->selected && !sigma) { /* the selection output is ranked from sigma */
        if (!(own_sigma = malloc((size_t)(ctx->nh * N) * sizeof(double)))) {
            still__fast_unit_free(&u);
            return STILL_E_NOMEM;
        }
        sigma = own_sigma;
    }
    memset(&blk, 0, sizeof blk);
    blk.n = N;
    blk.q = (const float *)t->q + b * sq.b + hq0 * sq.h;
    blk.q_hs = sq.h, blk.q_ns = sq.n;
    blk.k = (const float *)t->k + b * sk.b + u.hk * sk.h, blk.k_ns = sk.n;
    blk.v = (const float *)t->v + b * sv.b + u.hk * sv.h, blk.v_ns = sv.n;
    if (t->gate) {
        blk.gate = (const float *)t->gate + b * so.b + hq0 * so.h;
        blk.g_hs = so.h, blk.g_ns = so.n;
    }
    blk.o = (float *)t->o + b * so.b + hq0 * so.h;
    blk.o_hs = so.h, blk.o_ns = so.n;
    blk.sigma = sigma;
    blk.sigma_hs = N;
    /* SPEC §5: a forced selection (the group's rows agree, validated); the
     * ref path ignores it for routing `window`, so do we */
    if (t->selection_in && r->engine != STILL__ENGINE_WINDOW)
        blk.forced = t->selection_in + row0 * N;
    rc = still__fast_unit_append(ctx, &u, ws, &blk);
    for (int64_t i = 0; !rc && i < ctx->nh; i++) /* a result float32 cannot hold */
        if (!finite_rows(blk.o + i * blk.o_hs, N, sh->dim_v, blk.o_ns))
            rc = STILL_E_NONFINITE;
    if (!rc && sigma && !still__sigma_valid(sigma, ctx->nh * N))
        rc = STILL_E_NONFINITE; /* sigma [nh][N] of the unit, contiguous */

    if (!rc && t->selected) { /* SPEC §5/§11: the top-k of every complete chunk */
        const int64_t complete = N / r->C * r->C;
        for (int64_t i = 0; i < ctx->nh; i++) {
            uint8_t *sel = t->selected + (row0 + i) * N;
            memset(sel, 0, (size_t)N);
            for (int64_t c0 = 0; c0 < complete; c0 += r->C) {
                if (blk.forced)
                    for (int64_t j = c0; j < c0 + r->C; j++)
                        sel[j] = blk.forced[j] != 0;
                else
                    still__fast_topk(sigma + i * N + c0, r->C, r->k, sel + c0);
            }
        }
    }
    free(own_sigma);
    still__fast_unit_free(&u);
    return rc;
}

int still_forward(const still_config *cfg, const still_shape *shape, const still_params *params,
                  const still_tensors *t)
{
    still__resolved r;
    still__fast_ctx ctx;
    const still__kernels *kern;
    int rc;

    if (cfg && cfg->mixer == STILL_MIXER_LIGER) /* SPEC §16: lib/fast_liger.c */
        return still__fast_forward_liger(cfg, shape, t);
    if ((rc = still__resolve(cfg, shape, params, &r)) || (rc = still__no_query_range(cfg)) ||
        (rc = still__check_tensors(&r, params, t, 0)) ||
        (rc = still__kernels_select(cfg ? cfg->isa : STILL_ISA_AUTO, &kern)) ||
        (rc = still__fast_ctx_init(&ctx, &r, params, kern, r.shape.seq_len)))
        return rc;
    const int64_t units = r.shape.batch * (r.per_kv ? r.shape.heads_kv : r.shape.heads_q);
    const int threads = still__fast_threads(cfg ? cfg->threads : 0, units);
    int err = STILL_OK;

#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        still__fast_scratch ws;
        int my_rc = still__fast_scratch_init(&ctx, &ws);
#pragma omp for schedule(dynamic, 1)
        for (int64_t iu = 0; iu < units; iu++)
            if (!my_rc)
                my_rc = forward_unit(&ctx, t, iu, &ws);
        if (my_rc) {
#pragma omp atomic write
            err = my_rc;
        }
        still__fast_scratch_free(&ws);
    }
    still__fast_ctx_free(&ctx);
    return err;
}

int still_teacher(const still_config *cfg, const still_shape *shape, const still_tensors *t)
{
    still_config only;
    still_tensors inputs;
    still__resolved r;
    const still__kernels *kern;
    int rc;

    if (!t)
        return STILL_E_NULL;
    still_config_default(&only); /* the teacher reads scale, isa and threads */
    if (cfg) {
        only.scale = cfg->scale;
        only.isa = cfg->isa;
        only.threads = cfg->threads;
        only.query_begin = cfg->query_begin; /* refused below; routing and mixer ignored */
        only.query_end = cfg->query_end;
    }
    if ((rc = still__no_query_range(&only)))
        return rc;
    inputs = *t;
    inputs.gate = NULL; /* ignored, so neither checked */
    inputs.selection_in = NULL;
    if ((rc = still__resolve(&only, shape, NULL, &r)) ||
        (rc = still__check_tensors(&r, NULL, &inputs, 0)) ||
        (rc = still__kernels_select(only.isa, &kern)))
        return rc;
    if ((rc = still__fast_teacher_run(&r, kern, only.threads, t->q, t->k,
                                      t->v, t->o)))
        return rc;
    /* o is dense [B][Hq][N][dv] in either layout: one pass */
    const int64_t rows = r.shape.batch * r.shape.heads_q * r.shape.seq_len;
    return finite_rows(t->o, rows, r.shape.dim_v, r.shape.dim_v) ? STILL_OK : STILL_E_NONFINITE;
}

static int finite_floats(const float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i]))
            return 0;
    return 1;
}

/* SPEC §6: G = sigmoid(X Wg^T), one cblas_sgemm per (batch, head) -- called
 * outside any OpenMP region, so OpenBLAS's own threads have the cores --
 * then the logistic function in our region. */
int still_gate_projection(int64_t batch, int64_t seq_len, int64_t hidden, int64_t heads_q,
                          int64_t dim_v, const float *X, const float *Wg, float *G)
{
    const still__kernels *kern;
    size_t nx, nw, ng;
    int rc;

    if (!X || !Wg || !G)
        return STILL_E_NULL;
    if ((rc = still__gate_projection_sizes(batch, seq_len, hidden, heads_q, dim_v,
                                           sizeof(float), &nx, &nw, &ng)))
        return rc;
    /* cblas takes int dimensions */
    if (seq_len > INT32_MAX || hidden > INT32_MAX || dim_v > INT32_MAX)
        return STILL_E_OVERFLOW;
    if (!finite_floats(X, nx) || !finite_floats(Wg, nw))
        return STILL_E_NONFINITE;
    if ((rc = still__kernels_select(STILL_ISA_AUTO, &kern)))
        return rc;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < heads_q; h++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)seq_len, (int)dim_v,
                        (int)hidden, 1.0f, X + b * seq_len * hidden, (int)hidden,
                        Wg + h * dim_v * hidden, (int)hidden, 0.0f,
                        G + (b * heads_q + h) * seq_len * dim_v, (int)dim_v);
    const int64_t total = (int64_t)ng, piece = 1 << 16;
    /* SPEC §10: a product X Wg^T that overflowed float would pass through
     * the sigmoid as a valid-looking 0 or 1 (a NaN as NaN) */
    if (!still__all_finite(STILL_F32, G, total))
        return STILL_E_NONFINITE;
    const int threads = still__fast_threads(0, (total + piece - 1) / piece);
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
    for (int64_t i = 0; i < total; i += piece)
        kern->sigmoid(total - i < piece ? total - i : piece, G + i);
    return STILL_OK;
}
