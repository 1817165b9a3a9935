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
