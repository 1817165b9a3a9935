/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* ref_nsa_api.c -- still_ref_forward for routing nsa (SPEC §17, native
 * sparse attention).  Checks its inputs before any work, gathers each GQA
 * group into double arrays, calls ref/nsa_*.c query by query (the block
 * selection is shared by the group) and scatters the outputs and the
 * selection. */
#include "internal.h"
#include "../ref/ref.h"

#include <stdlib.h>
#include <string.h>

/* The arrays of one (batch, kv head) group of G query heads. */
typedef struct nsa_work {
    double *q, *gates, *o;     /* [G][N][d], [G][N][3], [G][N][dv] */
    double *k, *v;             /* [N][d], [N][dv] */
    double *k_cmp, *v_cmp;     /* [N/BS][d], [N/BS][dv] */
    double *weight, *score;    /* [G][N/BS], [N/BS] */
    double *o_cmp, *scratch;   /* [G][dv], [2 dv] */
    int64_t *blocks;           /* [min(S, candidates)] */
    uint8_t *chosen;           /* [candidates] */
} nsa_work;

/* The candidate blocks of the last query, 0..floor((N-1)/BS). */
static int64_t candidates_max(const still__resolved *r)
{
    return (r->shape.seq_len - 1) / r->nsa_block + 1;
}

static void work_free(nsa_work *w)
{
    free(w->q); free(w->gates); free(w->o); free(w->k); free(w->v);
    free(w->k_cmp); free(w->v_cmp); free(w->weight); free(w->score);
    free(w->o_cmp); free(w->scratch); free(w->blocks); free(w->chosen);
    memset(w, 0, sizeof *w);
}

static int work_alloc(const still__resolved *r, nsa_work *w)
{
    const int64_t N = r->shape.seq_len, d = r->shape.dim_qk, dv = r->shape.dim_v;
    const int64_t G = r->group, nb = N / r->nsa_block, nc = candidates_max(r);
    int rc = STILL_OK;
    memset(w, 0, sizeof *w);
    w->q = still__array_new(still__sat_mul(G, N), d, sizeof(double), 0, &rc);
    w->gates = still__array_new(still__sat_mul(G, N), 3, sizeof(double), 0, &rc);
    w->o = still__array_new(still__sat_mul(G, N), dv, sizeof(double), 0, &rc);
    w->k = still__array_new(N, d, sizeof(double), 0, &rc);
    w->v = still__array_new(N, dv, sizeof(double), 0, &rc);
    w->k_cmp = still__array_new(nb, d, sizeof(double), 0, &rc);
    w->v_cmp = still__array_new(nb, dv, sizeof(double), 0, &rc);
    w->weight = still__array_new(G, nb, sizeof(double), 0, &rc);
    w->score = still__array_new(nb, 1, sizeof(double), 0, &rc);
    w->o_cmp = still__array_new(G, dv, sizeof(double), 0, &rc);
    w->scratch = still__array_new(2, dv, sizeof(double), 0, &rc);
    w->blocks = still__array_new(r->nsa_topk < nc ? r->nsa_topk : nc, 1, sizeof(int64_t), 0,
                                 &rc);
    w->chosen = still__array_new(nc, 1, 1, 0, &rc);
    if (rc)
        work_free(w);
    return rc;
}

/* SPEC §17: what routing nsa reads and writes beyond q, k, v, o: the gates
 * [B,Hq,N,3] finite, the selection [B,Hq,N,S] int32 addressable with its
 * block numbers in range; sigma, the chunk selections and a forced
 * selection have no meaning here. */
static int nsa_tensors_ok(const still__resolved *r, const still_tensors *t)
{
    const still_shape *s = &r->shape;
    const int64_t nq = s->batch * s->heads_q * s->seq_len;
    size_t n;
    if (t->sigma || t->selected || t->selection_in)
        return STILL_E_UNSUPPORTED;
    if (t->nsa_gates) {
        if (still__mul3_size((size_t)nq, 3, sizeof(double), &n))
            return STILL_E_OVERFLOW;
        if (!still__all_finite(t->dtype, t->nsa_gates, nq * 3))
            return STILL_E_NONFINITE;
    }
    if (t->nsa_blocks && (still__mul3_size((size_t)nq, (size_t)r->nsa_topk, sizeof(int32_t), &n) ||
                          n > (size_t)INT64_MAX || candidates_max(r) > INT32_MAX))
        return STILL_E_OVERFLOW;
    return STILL_OK;
}

/* Reports progress; 1 when the callback asks to stop. */
static int progress_stop(const still_config *cfg, int64_t done, int64_t total)
{
    return cfg && cfg->progress && cfg->progress(cfg->progress_user, done, total) != 0;
}

/* Query t of the group: the compressed branch of every head, the group's
 * block scores (the mean of the heads' weights), one selection, and, when
 * t is among the queries written, each head's output. */
static void nsa_query(const still__resolved *r, int64_t t, int out, const double *gates,
                      nsa_work *w, int64_t *n_sel)
{
    const int64_t N = r->shape.seq_len, d = r->shape.dim_qk, dv = r->shape.dim_v;
    const int64_t G = r->group, nb = N / r->nsa_block;
    const int64_t visible = still__ref_nsa_visible(r, t);

    for (int64_t c = 0; c < visible; c++)
        w->score[c] = 0.0;
    for (int64_t g = 0; g < G; g++) {
        const double *weight = w->weight + g * nb;
        still__ref_nsa_compressed(r, t, w->q + (g * N + t) * d, w->k_cmp, w->v_cmp,
                                  w->weight + g * nb, w->o_cmp + g * dv);
        for (int64_t c = 0; c < visible; c++)
            w->score[c] += weight[c];
    }
    for (int64_t c = 0; c < visible; c++)
        w->score[c] /= (double)G;
    *n_sel = still__ref_nsa_select(r, t, w->score, w->chosen, w->blocks);
    if (!out)
        return;
    for (int64_t g = 0; g < G; g++)
        still__ref_nsa_row(r, t, w->q + (g * N + t) * d, w->k, w->v, w->o_cmp + g * dv,
                           w->blocks, *n_sel, gates ? gates + (g * N + t) * 3 : NULL,
                           w->scratch, w->o + (g * N + t) * dv);
}

/* The selection of query t into row t of every head of the group:
 * ascending, padded with -1 to S entries. */
static void write_blocks(const still__resolved *r, const still_tensors *t, int64_t b,
                         int64_t hk, int64_t n, const int64_t *blocks, int64_t pos)
{
    const still_shape *s = &r->shape;
    const int64_t S = r->nsa_topk;
    for (int64_t hq = hk * r->group; hq < (hk + 1) * r->group; hq++) {
        int32_t *row = t->nsa_blocks + ((b * s->heads_q + hq) * s->seq_len + pos) * S;
        for (int64_t i = 0; i < S; i++)
            row[i] = i < n ? (int32_t)blocks[i] : -1;
    }
}

/* One (batch, kv head) group: every query when the selection is asked
 * for (it is written whole), else the queries q0..q1-1, whose outputs are
 * scattered. */
static void nsa_group(const still__resolved *r, const still_tensors *t, int64_t b, int64_t hk,
                      int64_t q0, int64_t q1, nsa_work *w)
{
    const still_shape *s = &r->shape;
    const int64_t N = s->seq_len, d = s->dim_qk, dv = s->dim_v, G = r->group;
    const int64_t first = t->nsa_blocks ? 0 : q0, last = t->nsa_blocks ? N : q1;

    still__gather_head(t->dtype, t->k, s->layout, s->heads_kv, N, d, b, hk, w->k);
    still__gather_head(t->dtype, t->v, s->layout, s->heads_kv, N, dv, b, hk, w->v);
    still__ref_nsa_compress(r, N, w->k, w->v, w->k_cmp, w->v_cmp);
    for (int64_t g = 0; g < G; g++) {
        still__gather_head(t->dtype, t->q, s->layout, s->heads_q, N, d, b, hk * G + g,
                           w->q + g * N * d);
        if (t->nsa_gates)
            still__gather_head(t->dtype, t->nsa_gates, s->layout, s->heads_q, N, 3, b,
                               hk * G + g, w->gates + g * N * 3);
    }
    for (int64_t pos = first; pos < last; pos++) {
        int64_t n;
        nsa_query(r, pos, pos >= q0 && pos < q1, t->nsa_gates ? w->gates : NULL, w, &n);
        if (t->nsa_blocks)
            write_blocks(r, t, b, hk, n, w->blocks, pos);
    }
    for (int64_t g = 0; g < G; g++)
        still__scatter_rows(t->dtype, t->o, s->layout, s->heads_q, N, dv, b, hk * G + g, q0, q1,
                            w->o + g * N * dv);
}

int still__ref_forward_nsa(const still_config *cfg, const still__resolved *r,
                           const still_tensors *t, int64_t q0, int64_t q1)
{
    const still_shape *s = &r->shape;
    const int64_t total = s->batch * s->heads_q * (q1 - q0);
    int64_t done = 0;
    still_tensors inputs;
    nsa_work w;
    int rc;

    if (!t)
        return STILL_E_NULL;
    inputs = *t;
    inputs.gate = NULL; /* SPEC §17: routing nsa takes no gate G */
    if ((rc = still__check_tensors(r, NULL, &inputs, 1)) || (rc = nsa_tensors_ok(r, t)) ||
        (rc = work_alloc(r, &w)))
        return rc;
    if (progress_stop(cfg, 0, total)) {
        work_free(&w);
        return STILL_E_CANCELED;
    }
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t hk = 0; hk < s->heads_kv; hk++) {
            nsa_group(r, t, b, hk, q0, q1, &w);
            done += r->group * (q1 - q0);
            if (progress_stop(cfg, done, total)) {
                work_free(&w);
                return STILL_E_CANCELED;
            }
        }
    work_free(&w);
    return still__rows_finite(t->dtype, t->o, s->layout, s->batch, s->heads_q, s->seq_len,
                              s->dim_v, q0, q1)
               ? STILL_OK
               : STILL_E_NONFINITE;
}

/* ---- SPEC §18: the backward of routing nsa, its selection held fixed ---- */

/* The gradient arrays of one group beside nsa_work's. */
typedef struct nsa_grad_work {
    double *dout, *dq, *dgates; /* [G][N][dv], [G][N][d], [G][N][3] */
    double *dk, *dv;            /* [N][d], [N][dv] */
    double *dk_cmp, *dv_cmp;    /* [N/BS][d], [N/BS][dv] */
    double *scratch;            /* [2 dv + N] */
    int64_t *idx;               /* [N] */
} nsa_grad_work;

static void grad_work_free(nsa_grad_work *w)
{
    free(w->dout); free(w->dq); free(w->dgates); free(w->dk); free(w->dv);
    free(w->dk_cmp); free(w->dv_cmp); free(w->scratch); free(w->idx);
    memset(w, 0, sizeof *w);
}

static int grad_work_alloc(const still__resolved *r, nsa_grad_work *w)
{
    const int64_t N = r->shape.seq_len, d = r->shape.dim_qk, dv = r->shape.dim_v;
    const int64_t G = r->group, nb = N / r->nsa_block;
    int rc = STILL_OK;
    memset(w, 0, sizeof *w);
    w->dout = still__array_new(still__sat_mul(G, N), dv, sizeof(double), 0, &rc);
    w->dq = still__array_new(still__sat_mul(G, N), d, sizeof(double), 1, &rc);
    w->dgates = still__array_new(still__sat_mul(G, N), 3, sizeof(double), 0, &rc);
    w->dk = still__array_new(N, d, sizeof(double), 1, &rc);
    w->dv = still__array_new(N, dv, sizeof(double), 1, &rc);
    w->dk_cmp = still__array_new(nb, d, sizeof(double), 1, &rc);
    w->dv_cmp = still__array_new(nb, dv, sizeof(double), 1, &rc);
    w->scratch = still__array_new(still__sat_add(still__sat_mul(2, dv), N), 1, sizeof(double), 0,
                                  &rc);
    w->idx = still__array_new(N, 1, sizeof(int64_t), 0, &rc);
    if (rc)
        grad_work_free(w);
    return rc;
}

/* One (batch, kv head) group: every query's selection as the forward makes
 * it, then its backward; each head's gradients are written whole. */
static void nsa_group_vjp(const still__resolved *r, const still_tensors *t, const void *dout,
                          const still_grads *g, int64_t b, int64_t hk, nsa_work *w,
                          nsa_grad_work *gw)
{
    const still_shape *s = &r->shape;
    const int64_t N = s->seq_len, d = s->dim_qk, dv = s->dim_v, G = r->group;
    const int64_t BS = r->nsa_block, nb = N / BS;

    still__gather_head(t->dtype, t->k, s->layout, s->heads_kv, N, d, b, hk, w->k);
    still__gather_head(t->dtype, t->v, s->layout, s->heads_kv, N, dv, b, hk, w->v);
    still__ref_nsa_compress(r, N, w->k, w->v, w->k_cmp, w->v_cmp);
    for (int64_t gi = 0; gi < G; gi++) {
        const int64_t h = hk * G + gi;
        still__gather_head(t->dtype, t->q, s->layout, s->heads_q, N, d, b, h, w->q + gi * N * d);
        still__gather_head(t->dtype, dout, s->layout, s->heads_q, N, dv, b, h,
                           gw->dout + gi * N * dv);
        if (t->nsa_gates)
            still__gather_head(t->dtype, t->nsa_gates, s->layout, s->heads_q, N, 3, b, h,
                               w->gates + gi * N * 3);
    }
    memset(gw->dq, 0, (size_t)(G * N * d) * sizeof(double));
    memset(gw->dk, 0, (size_t)(N * d) * sizeof(double));
    memset(gw->dv, 0, (size_t)(N * dv) * sizeof(double));
    memset(gw->dk_cmp, 0, (size_t)(nb * d) * sizeof(double));
    memset(gw->dv_cmp, 0, (size_t)(nb * dv) * sizeof(double));
    for (int64_t pos = 0; pos < N; pos++) {
        int64_t n;
        nsa_query(r, pos, 0, NULL, w, &n); /* the selection only */
        if (t->nsa_blocks)
            write_blocks(r, t, b, hk, n, w->blocks, pos);
        for (int64_t gi = 0; gi < G; gi++) {
            const int64_t row = gi * N + pos;
            still__ref_nsa_row_vjp(r, pos, w->q + row * d, w->k, w->v, w->k_cmp, w->v_cmp,
                                   w->blocks, n, t->nsa_gates ? w->gates + row * 3 : NULL,
                                   gw->dout + row * dv, gw->idx, gw->scratch,
                                   w->o + row * dv, gw->dgates + row * 3, gw->dq + row * d,
                                   gw->dk, gw->dv, gw->dk_cmp, gw->dv_cmp);
        }
    }
    /* a compressed row is the mean of its block: 1/BS of its gradient to each */
    for (int64_t c = 0; c < nb; c++)
        for (int64_t j = c * BS; j < (c + 1) * BS; j++) {
            for (int64_t e = 0; e < d; e++)
                gw->dk[j * d + e] += gw->dk_cmp[c * d + e] / (double)BS;
            for (int64_t e = 0; e < dv; e++)
                gw->dv[j * dv + e] += gw->dv_cmp[c * dv + e] / (double)BS;
        }
    for (int64_t gi = 0; gi < G; gi++) {
        const int64_t h = hk * G + gi;
        if (g->dq)
            still__scatter_head(STILL_F64, g->dq, s->layout, s->heads_q, N, d, b, h,
                                gw->dq + gi * N * d);
        if (g->dnsa_gates)
            still__scatter_head(STILL_F64, g->dnsa_gates, s->layout, s->heads_q, N, 3, b, h,
                                gw->dgates + gi * N * 3);
        if (t->o)
            still__scatter_head(t->dtype, t->o, s->layout, s->heads_q, N, dv, b, h,
                                w->o + gi * N * dv);
    }
    if (g->dk)
        still__scatter_head(STILL_F64, g->dk, s->layout, s->heads_kv, N, d, b, hk, gw->dk);
    if (g->dv)
        still__scatter_head(STILL_F64, g->dv, s->layout, s->heads_kv, N, dv, b, hk, gw->dv);
}

int still__ref_vjp_nsa(const still__resolved *r, const still_tensors *t, const void *dout,
                       const still_grads *g)
{
    const still_shape *s = &r->shape;
    still_tensors inputs;
    double placeholder = 0.0;
    nsa_work w;
    nsa_grad_work gw;
    int rc;

    if (!t || !dout || !g)
        return STILL_E_NULL;
    inputs = *t;
    inputs.gate = NULL; /* SPEC §17: routing nsa takes no gate G */
    if (!inputs.o)
        inputs.o = &placeholder; /* o is optional here; the check wants one */
    if ((rc = still__check_tensors(r, NULL, &inputs, 1)) || (rc = nsa_tensors_ok(r, t)))
        return rc;
    if (!still__all_finite(t->dtype, dout, s->batch * s->heads_q * s->seq_len * s->dim_v))
        return STILL_E_NONFINITE; /* SPEC §10: dO is finite, like the inputs */
    if ((rc = work_alloc(r, &w)))
        return rc;
    if ((rc = grad_work_alloc(r, &gw))) {
        work_free(&w);
        return rc;
    }
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t hk = 0; hk < s->heads_kv; hk++)
            nsa_group_vjp(r, t, dout, g, b, hk, &w, &gw);
    grad_work_free(&gw);
    work_free(&w);
    return STILL_OK;
}
