/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* ref_api.c -- public entry points of the ref path, the oracle (SPEC §1-6,
 * App. A).  They validate everything before any work, gather each head
 * into contiguous double arrays, call the per-formula functions of ref/
 * and scatter the results; the loops over formulas live in ref/. */
#include "internal.h"
#include "fast.h" /* still__fast_threads: the bounded team of both paths */
#include "../ref/ref.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* The contiguous double arrays of one (batch, kv head) group, and each
 * thread's scratch (phi_q [threads][m], exact [threads][N]). */
typedef struct ref_work {
    double *q, *k, *v, *gate, *o; /* [N][d] or [N][dv] */
    double *sigma, *sigma_group;  /* [N]: one query head's, the group's mean */
    double *phi_q, *phi_k;        /* [threads][m], [N][m] */
    uint8_t *sel, *exact;         /* [N], [threads][N] */
    int threads;
} ref_work;

static void work_free(ref_work *w)
{
    free(w->q); free(w->k); free(w->v); free(w->gate); free(w->o);
    free(w->sigma); free(w->sigma_group); free(w->phi_q); free(w->phi_k);
    free(w->sel); free(w->exact);
    memset(w, 0, sizeof *w);
}

static int work_alloc(const still__resolved *r, int threads, ref_work *w)
{
    const int64_t N = r->shape.seq_len, d = r->shape.dim_qk, dv = r->shape.dim_v;
    int rc = STILL_OK;
    memset(w, 0, sizeof *w);
    w->threads = threads;
    w->q = still__array_new(N, d, sizeof(double), 0, &rc);
    w->k = still__array_new(N, d, sizeof(double), 0, &rc);
    w->v = still__array_new(N, dv, sizeof(double), 0, &rc);
    w->gate = still__array_new(N, dv, sizeof(double), 0, &rc);
    w->o = still__array_new(N, dv, sizeof(double), 0, &rc);
    w->sigma = still__array_new(N, 1, sizeof(double), 0, &rc);
    w->sigma_group = still__array_new(N, 1, sizeof(double), 0, &rc);
    w->phi_q = still__array_new(threads, r->m, sizeof(double), 0, &rc);
    w->phi_k = still__array_new(N, r->m, sizeof(double), 0, &rc);
    w->sel = still__array_new(N, 1, 1, 0, &rc);
    w->exact = still__array_new(threads, N, 1, 0, &rc);
    if (rc)
        work_free(w);
    return rc;
}

/* ---- threads and progress ---------------------------------------------------- */

/* Queries are handed to the threads in blocks of this many, the last
 * (costliest, under causality) first.  Every query is computed by the same
 * sequential code whichever thread takes it, so the results do not depend
 * on the thread count (SPEC I7). */
#define REF_BLOCK 16

/* The threads of a ref call: cfg->threads when set; by default OpenMP's
 * count, but one thread for a short sequence, where a parallel region costs
 * more than it saves (many small calls, as the state tests make). */
#define REF_SHORT 256
static int ref_threads(const still_config *cfg, int64_t N)
{
    const int64_t blocks = (N + REF_BLOCK - 1) / REF_BLOCK; /* the units of a head */
    if (cfg && cfg->threads > 0)
        return still__fast_threads(cfg->threads, blocks);
    return N < REF_SHORT ? 1 : still__fast_threads(0, blocks);
}

/* The progress of one call: rows done by all threads, reported to the
 * callback by the calling thread only (thread 0 of every region). */
typedef struct ref_progress {
    const still_config *cfg;
    int64_t done, total;
    int stop;
} ref_progress;

static int progress_stopped(ref_progress *p)
{
    int stop;
#pragma omp atomic read
    stop = p->stop;
    return stop;
}

static void progress_tell(ref_progress *p)
{
    int64_t done;
    if (!p->cfg || !p->cfg->progress || progress_stopped(p))
        return; /* not called again once it asked to stop */
#pragma omp atomic read
    done = p->done;
    if (p->cfg->progress(p->cfg->progress_user, done, p->total)) {
#pragma omp atomic write
        p->stop = 1;
    }
}

static void progress_add(ref_progress *p, int64_t rows)
{
#pragma omp atomic
    p->done += rows;
    if (omp_get_thread_num() == 0)
        progress_tell(p);
}

/* Block i of the queries q0..q1-1 handed out by the loops below, the last
 * (costliest) first: rows [*t0, *t1); 0 once the call is canceled. */
static int block_of(int64_t q0, int64_t q1, int64_t blocks, int64_t i, ref_progress *prog,
                    int64_t *t0, int64_t *t1)
{
    *t0 = q0 + (blocks - 1 - i) * REF_BLOCK;
    *t1 = *t0 + REF_BLOCK < q1 ? *t0 + REF_BLOCK : q1;
    return !progress_stopped(prog);
}

/* sigma of every token of query head hq of batch b into w->sigma (SPEC §4 /
 * App. A.1), the tokens shared among the threads. */
static void head_saliency(const still__resolved *r, const still_tensors *t, int64_t b,
                          int64_t hq, ref_work *w)
{
    const still_shape *s = &r->shape;
    const int64_t N = s->seq_len;
    still__gather_head(t->dtype, t->q, s->layout, s->heads_q, N, s->dim_qk, b, hq, w->q);
#pragma omp parallel for num_threads(w->threads) schedule(dynamic, REF_BLOCK) if (w->threads > 1)
    for (int64_t j = 0; j < N; j++)
        w->sigma[j] = still__ref_saliency_of(r, w->q, w->k, j);
}

/* SPEC §5: the selection of a head from sigma, or the forced one (its
 * entries outside complete chunks ignored); routing `window` selects
 * nothing that matters, so a forced selection is ignored there. */
static void head_selection(const still__resolved *r, const still_tensors *t, int64_t row,
                           const double *sigma, uint8_t *sel)
{
    const int64_t N = r->shape.seq_len, complete = N / r->C * r->C;
    if (!t->selection_in || r->engine == STILL__ENGINE_WINDOW) {
        still__ref_select(r, sigma, N, sel);
        return;
    }
    for (int64_t j = 0; j < N; j++)
        sel[j] = j < complete && t->selection_in[row * N + j] != 0;
}

/* SPEC §2 key features phi_k [N][m] of query head hq, rows among the threads. */
static void head_key_features(const still__resolved *r, const still_params *params,
                              int64_t hq, ref_work *w)
{
    const int64_t N = r->shape.seq_len, d = r->shape.dim_qk;
    int64_t f;
    const still_feature_map *fk = still__ref_map_of(r, params, STILL_MAP_K, &f);
#pragma omp parallel for num_threads(w->threads) schedule(static) if (w->threads > 1)
    for (int64_t j = 0; j < N; j++)
        still__ref_feature_map(r, fk, f, hq, w->k + j * d, w->phi_k + j * r->m);
}

/* SPEC §5-6: the outputs of queries q0 <= t < q1 of query head hq into w->o. */
static void head_queries(const still__resolved *r, const still_params *params, int64_t hq,
                         const double *gate, const double *sigma, int64_t q0, int64_t q1,
                         ref_work *w, ref_progress *prog)
{
    const int64_t N = r->shape.seq_len, dv = r->shape.dim_v;
    const int64_t blocks = (q1 - q0 + REF_BLOCK - 1) / REF_BLOCK;
#pragma omp parallel num_threads(w->threads) if (w->threads > 1)
    {
        const int me = omp_get_thread_num();
        double *phi_q = w->phi_q + me * r->m;
        uint8_t *exact = w->exact + me * N;
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < blocks; i++) {
            int64_t t0, t1;
            if (!block_of(q0, q1, blocks, i, prog, &t0, &t1))
                continue;
            for (int64_t t = t0; t < t1; t++)
                still__ref_query_forward(r, params, hq, t, w->q, w->k, w->v, gate, sigma,
                                         w->sel, w->phi_k, phi_q, exact, w->o + t * dv);
            progress_add(prog, t1 - t0);
        }
    }
}

/* One (batch, kv head) group: SPEC §4-6 for each of its query heads; with
 * per-kv selection, sigma is the mean over the group and the selection is
 * shared (SPEC §5).  Only the outputs of queries q0..q1-1 are written. */
static void forward_group(const still__resolved *r, const still_params *params,
                          const still_tensors *t, int64_t b, int64_t hk, int64_t q0,
                          int64_t q1, ref_work *w, ref_progress *prog)
{
    const still_shape *s = &r->shape;
    const int64_t N = s->seq_len, hq0 = hk * r->group;

    still__gather_head(t->dtype, t->k, s->layout, s->heads_kv, N, s->dim_qk, b, hk, w->k);
    still__gather_head(t->dtype, t->v, s->layout, s->heads_kv, N, s->dim_v, b, hk, w->v);
    if (r->per_kv) {
        for (int64_t j = 0; j < N; j++)
            w->sigma_group[j] = 0.0;
        for (int64_t hq = hq0; hq < hq0 + r->group; hq++) {
            head_saliency(r, t, b, hq, w);
            for (int64_t j = 0; j < N; j++)
                w->sigma_group[j] += w->sigma[j];
        }
        for (int64_t j = 0; j < N; j++)
            w->sigma_group[j] /= (double)r->group;
        head_selection(r, t, b * s->heads_q + hq0, w->sigma_group, w->sel);
    }
    for (int64_t hq = hq0; hq < hq0 + r->group && !progress_stopped(prog); hq++) {
        const int64_t row = b * s->heads_q + hq;
        const double *sigma = r->per_kv ? w->sigma_group : w->sigma;
        head_saliency(r, t, b, hq, w);
        if (!r->per_kv)
            head_selection(r, t, row, w->sigma, w->sel);
        if (t->gate)
            still__gather_head(t->dtype, t->gate, s->layout, s->heads_q, N, s->dim_v, b, hq, w->gate);
        head_key_features(r, params, hq, w);
        head_queries(r, params, hq, t->gate ? w->gate : NULL, sigma, q0, q1, w, prog);
        progress_tell(prog); /* at least once a head, whichever thread did the rows */
        still__scatter_rows(t->dtype, t->o, s->layout, s->heads_q, N, s->dim_v, b, hq, q0, q1,
                            w->o);
        if (t->sigma)
            memcpy(t->sigma + row * N, sigma, (size_t)N * sizeof(double));
        if (t->selected)
            memcpy(t->selected + row * N, w->sel, (size_t)N);
    }
}

/* 1 when every output the call wrote (the rows q0..q1-1 of every head, in
 * either layout) is finite as stored (SPEC §10): the ref computes in
 * double; a float32 output beyond FLT_MAX was stored as infinity (IEEE
 * conversion), a float64 one overflowed in double.  The same rule as the
 * fast path's. */
static int outputs_finite(const still__resolved *r, const still_tensors *t, int64_t q0,
                          int64_t q1)
{
    const still_shape *s = &r->shape;
    return still__rows_finite(t->dtype, t->o, s->layout, s->batch, s->heads_q, s->seq_len,
                              s->dim_v, q0, q1);
}

/* The end of a call: the last report, then the status. */
static int ref_finish(ref_progress *prog, const still__resolved *r, const still_tensors *t,
                      int64_t q0, int64_t q1)
{
    if (progress_stopped(prog))
        return STILL_E_CANCELED;
    progress_tell(prog);
    if (progress_stopped(prog))
        return STILL_E_CANCELED;
    return outputs_finite(r, t, q0, q1) ? STILL_OK : STILL_E_NONFINITE;
}

int still_ref_forward(const still_config *cfg, const still_shape *shape,
                      const still_params *params, const still_tensors *t)
{
    still__resolved r;
    ref_work w;
    int64_t q0, q1;
    int rc;

    if ((rc = still__resolve(cfg, shape, params, &r)) ||
        (rc = still__query_range(cfg, r.shape.seq_len, &q0, &q1)))
        return rc;
    if (r.routing == STILL_ROUTING_LTE || r.mixer == STILL_MIXER_LIGER) /* SPEC §15-16 */
        return still__ref_forward_family(cfg, &r, params, t, q0, q1);
    if (r.routing == STILL_ROUTING_NSA) /* SPEC §17 */
        return still__ref_forward_nsa(cfg, &r, t, q0, q1);
    if ((rc = still__check_tensors(&r, params, t, 1)) ||
        (rc = work_alloc(&r, ref_threads(cfg, r.shape.seq_len), &w)))
        return rc;
    ref_progress prog = {cfg, 0, r.shape.batch * r.shape.heads_q * (q1 - q0), 0};
    progress_tell(&prog);
    for (int64_t b = 0; b < r.shape.batch; b++)
        for (int64_t hk = 0; hk < r.shape.heads_kv && !progress_stopped(&prog); hk++)
            forward_group(&r, params, t, b, hk, q0, q1, &w, &prog);
    work_free(&w);
    return ref_finish(&prog, &r, t, q0, q1);
}

/* SPEC §1 for the queries q0..q1-1 of query head hq of batch b. */
static void teacher_head(const still__resolved *r, const still_tensors *t, int64_t b,
                         int64_t hq, int64_t q0, int64_t q1, ref_work *w, ref_progress *prog)
{
    const still_shape *s = &r->shape;
    const int64_t N = s->seq_len, hk = hq / r->group, d = s->dim_qk, dv = s->dim_v;
    const int64_t blocks = (q1 - q0 + REF_BLOCK - 1) / REF_BLOCK;
    still__gather_head(t->dtype, t->q, s->layout, s->heads_q, N, d, b, hq, w->q);
    still__gather_head(t->dtype, t->k, s->layout, s->heads_kv, N, d, b, hk, w->k);
    still__gather_head(t->dtype, t->v, s->layout, s->heads_kv, N, dv, b, hk, w->v);
#pragma omp parallel for num_threads(w->threads) schedule(dynamic, 1) if (w->threads > 1)
    for (int64_t i = 0; i < blocks; i++) {
        int64_t t0, t1;
        if (!block_of(q0, q1, blocks, i, prog, &t0, &t1))
            continue;
        for (int64_t n = t0; n < t1; n++)
            still__ref_teacher_row(r, n, w->q + n * d, w->k, w->v, w->o + n * dv);
        progress_add(prog, t1 - t0);
    }
    still__scatter_rows(t->dtype, t->o, s->layout, s->heads_q, N, dv, b, hq, q0, q1, w->o);
}

int still_ref_teacher(const still_config *cfg, const still_shape *shape, const still_tensors *t)
{
    still_config only_scale;
    still_tensors inputs;
    still__resolved r;
    ref_work w;
    int64_t q0, q1;
    int rc;

    if (!t)
        return STILL_E_NULL;
    still_config_default(&only_scale); /* the teacher reads the scale, threads, range, progress */
    if (cfg) {
        only_scale.scale = cfg->scale;
        only_scale.threads = cfg->threads;
        only_scale.query_begin = cfg->query_begin;
        only_scale.query_end = cfg->query_end;
        only_scale.progress = cfg->progress;
        only_scale.progress_user = cfg->progress_user;
    }
    inputs = *t;
    inputs.gate = NULL; /* ignored, so neither checked */
    inputs.selection_in = NULL;
    if ((rc = still__resolve(&only_scale, shape, NULL, &r)) ||
        (rc = still__query_range(&only_scale, r.shape.seq_len, &q0, &q1)) ||
        (rc = still__check_tensors(&r, NULL, &inputs, 1)) ||
        (rc = work_alloc(&r, ref_threads(&only_scale, r.shape.seq_len), &w)))
        return rc;
    ref_progress prog = {&only_scale, 0, r.shape.batch * r.shape.heads_q * (q1 - q0), 0};
    progress_tell(&prog);
    for (int64_t b = 0; b < r.shape.batch; b++)
        for (int64_t hq = 0; hq < r.shape.heads_q && !progress_stopped(&prog); hq++) {
            teacher_head(&r, t, b, hq, q0, q1, &w, &prog);
            progress_tell(&prog); /* at least once a head */
        }
    work_free(&w);
    return ref_finish(&prog, &r, t, q0, q1);
}

static int finite_doubles(const double *p, int64_t n)
{
    return still__all_finite(STILL_F64, p, n);
}

/* The parameters of one head of a map are finite (SPEC §10). */
static int map_head_finite(const still_feature_map *fm, int64_t f, int64_t d, int64_t head)
{
    size_t bytes;
    if (!fm)
        return STILL_OK;
    /* W [head+1][f][d] is the largest array read */
    if (still__mul3_size((size_t)head + 1, (size_t)f, (size_t)d, &bytes) ||
        still__mul_size(bytes, sizeof(double), &bytes) || bytes > (size_t)INT64_MAX)
        return STILL_E_OVERFLOW;
    if ((fm->W && !finite_doubles(fm->W + head * f * d, f * d)) ||
        (fm->b && !finite_doubles(fm->b + head * f, f)) ||
        (fm->u && !finite_doubles(fm->u + head * d, d)))
        return STILL_E_NONFINITE;
    return STILL_OK;
}

int still_ref_feature_map(const still_config *cfg, const still_params *params, int which,
                          int64_t head, int64_t dim_qk, int64_t n, const double *x, double *phi)
{
    still_shape one = {1, 1, 1, 1, dim_qk, 1, STILL_LAYOUT_BHND};
    still__resolved r;
    const still_feature_map *fm;
    size_t count;
    int64_t f;
    int rc;

    if (!x || !phi)
        return STILL_E_NULL;
    if (which != STILL_MAP_Q && which != STILL_MAP_K)
        return STILL_E_CONFIG;
    if (head < 0 || n < 0)
        return STILL_E_SHAPE;
    if ((rc = still__resolve(cfg, &one, params, &r)))
        return rc;
    /* x [n][d] and phi [n][m] must be addressable */
    if (still__mul3_size((size_t)n, (size_t)(r.m > dim_qk ? r.m : dim_qk), sizeof(double),
                         &count))
        return STILL_E_OVERFLOW;
    fm = still__ref_map_of(&r, params, which, &f);
    if ((rc = map_head_finite(fm, f, dim_qk, head)))
        return rc;
    if (!finite_doubles(x, n * dim_qk))
        return STILL_E_NONFINITE;
    still__ref_feature_rows(&r, params, which, head, n, x, phi);
    return STILL_OK;
}

int still_ref_gate_projection(int64_t batch, int64_t seq_len, int64_t hidden, int64_t heads_q,
                              int64_t dim_v, const double *X, const double *Wg, double *G)
{
    size_t nx, nw, ng;
    int rc;
    if (!X || !Wg || !G)
        return STILL_E_NULL;
    if ((rc = still__gate_projection_sizes(batch, seq_len, hidden, heads_q, dim_v,
                                           sizeof(double), &nx, &nw, &ng)))
        return rc;
    if (!finite_doubles(X, (int64_t)nx) || !finite_doubles(Wg, (int64_t)nw))
        return STILL_E_NONFINITE;
    still__ref_gate_projection(batch, seq_len, hidden, heads_q, dim_v, X, Wg, G);
    return STILL_OK;
}
