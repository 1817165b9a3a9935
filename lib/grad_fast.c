/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* grad_fast.c -- SPEC §18, the fast twin of ref/grad.c: one query head's
 * backward (VJP) for any upstream gradient, SPEC §8's transfer loss among
 * them, by blocks of queries, with every
 * O(N^2) product (logits, kernel values, their products with v and all
 * their backward products) a float32 cblas_sgemm.  The routing is that of
 * still__ref_route, computed once per chunk; the maxima, denominators and
 * loss are reduced in double, and the feature maps (O(N f d)) run through
 * the ref's double functions.  No OpenMP region: BLAS brings its own. */
#include "grad_fast.h"

#include <cblas.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_ROWS 64 /* queries per block */

enum { KEY_FUTURE = 0, KEY_EXACT = 1, KEY_LINEAR = 2 };

/* Everything one head needs, float copies and block scratch. */
typedef struct fast_head {
    const still__resolved *r;
    int64_t N, d, dv, m;
    int overflow;                      /* an intermediate float cannot hold
                                          (SPEC §10): STILL_E_NONFINITE */
    double omega;
    float *q, *k, *v, *gate, *pq, *pk; /* [N][d], [N][d], [N][dv], [N][dv], [N][m], [N][m] */
    double *phi;                       /* [N][m] the maps in double, then dL/dphi */
    double *dpq, *dpk;                 /* [N][m] */
    float *S, *A, *K, *P;              /* [BLOCK_ROWS][N] */
    float *num_exact, *num_lin, *dnum, *gdnum; /* [BLOCK_ROWS][dv] */
    float *tmp;                        /* [N][max(d, dv, m)] */
    double *m_t, *soft, *den, *dden;   /* [BLOCK_ROWS] */
    double *lin;                       /* [BLOCK_ROWS]: Σ_Λ kappa + eps_den */
    double *go;                        /* [BLOCK_ROWS][dv]: dL/do in double */
    int has_gate;
    double *teacher_blk;               /* [BLOCK_ROWS][dv], when computed here */
    float *teacher_f;                  /* [BLOCK_ROWS][dv] */
    int64_t *argmax;                   /* [BLOCK_ROWS] */
    uint8_t *kind;                     /* [BLOCK_ROWS][N]: KEY_* */
    uint8_t *cache;                    /* [N]: the selected cache of cache_chunk */
    int64_t cache_chunk;
    int64_t *order, *order_tmp;        /* [N]: the cap's ranking */
    double *fm_work, *dx;              /* feature map backward */
} fast_head;

/* rows x cols elements of size bytes, zeroed (grab) or not (grab_scratch:
 * arrays every use overwrites before reading). */
static void *grab(int64_t rows, int64_t cols, size_t size, int *rc)
{
    return still__array_new(rows, cols, size, 1, rc);
}

static void *grab_scratch(int64_t rows, int64_t cols, size_t size, int *rc)
{
    return still__array_new(rows, cols, size, 0, rc);
}

static void head_free(fast_head *h)
{
    free(h->q); free(h->k); free(h->v); free(h->gate); free(h->pq); free(h->pk);
    free(h->phi); free(h->dpq); free(h->dpk); free(h->S); free(h->A); free(h->K); free(h->P);
    free(h->num_exact); free(h->num_lin); free(h->dnum); free(h->gdnum); free(h->tmp);
    free(h->m_t); free(h->soft); free(h->den); free(h->dden); free(h->lin); free(h->go); free(h->argmax); free(h->kind);
    free(h->teacher_blk); free(h->teacher_f);
    free(h->cache); free(h->order); free(h->order_tmp); free(h->fm_work); free(h->dx);
}

static int head_alloc(const still__resolved *r, fast_head *h)
{
    const int64_t N = r->shape.seq_len, d = r->shape.dim_qk, dv = r->shape.dim_v, m = r->m;
    const int64_t wide = d > dv ? (d > m ? d : m) : (dv > m ? dv : m);
    const int64_t f = r->f_q > r->f_k ? r->f_q : r->f_k;
    int rc = STILL_OK;
    memset(h, 0, sizeof *h);
    if (N > INT_MAX || d > INT_MAX || dv > INT_MAX || m > INT_MAX)
        return STILL_E_OVERFLOW; /* BLAS dimensions are int */
    h->r = r;
    h->N = N;
    h->d = d;
    h->dv = dv;
    h->m = m;
    h->cache_chunk = -1;
    h->q = grab(N, d, sizeof(float), &rc);
    h->k = grab(N, d, sizeof(float), &rc);
    h->v = grab(N, dv, sizeof(float), &rc);
    h->gate = grab(N, dv, sizeof(float), &rc);
    h->pq = grab(N, m, sizeof(float), &rc);
    h->pk = grab(N, m, sizeof(float), &rc);
    h->phi = grab(N, m, sizeof(double), &rc);
    h->dpq = grab(N, m, sizeof(double), &rc);
    h->dpk = grab(N, m, sizeof(double), &rc);
    h->S = grab_scratch(BLOCK_ROWS, N, sizeof(float), &rc);
    h->A = grab_scratch(BLOCK_ROWS, N, sizeof(float), &rc);
    h->K = grab_scratch(BLOCK_ROWS, N, sizeof(float), &rc);
    h->P = grab_scratch(BLOCK_ROWS, N, sizeof(float), &rc);
    h->num_exact = grab(BLOCK_ROWS, dv, sizeof(float), &rc);
    h->num_lin = grab(BLOCK_ROWS, dv, sizeof(float), &rc);
    h->dnum = grab(BLOCK_ROWS, dv, sizeof(float), &rc);
    h->gdnum = grab(BLOCK_ROWS, dv, sizeof(float), &rc);
    h->tmp = grab_scratch(N, wide, sizeof(float), &rc);
    h->teacher_blk = grab(BLOCK_ROWS, dv, sizeof(double), &rc);
    h->teacher_f = grab(BLOCK_ROWS, dv, sizeof(float), &rc);
    h->m_t = grab(BLOCK_ROWS, 1, sizeof(double), &rc);
    h->soft = grab(BLOCK_ROWS, 1, sizeof(double), &rc);
    h->lin = grab(BLOCK_ROWS, 1, sizeof(double), &rc);
    h->go = grab(BLOCK_ROWS, dv, sizeof(double), &rc);
    h->den = grab(BLOCK_ROWS, 1, sizeof(double), &rc);
    h->dden = grab(BLOCK_ROWS, 1, sizeof(double), &rc);
    h->argmax = grab(BLOCK_ROWS, 1, sizeof(int64_t), &rc);
    h->kind = grab_scratch(BLOCK_ROWS, N, 1, &rc);
    h->cache = grab(N, 1, 1, &rc);
    h->order = grab(N, 1, sizeof(int64_t), &rc);
    h->order_tmp = grab(N, 1, sizeof(int64_t), &rc);
    h->fm_work = grab(still__ref_feature_map_grad_work(r, f), 1, sizeof(double), &rc);
    h->dx = grab(d, 1, sizeof(double), &rc);
    if (rc)
        head_free(h);
    return rc;
}

static void to_float(const double *x, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)x[i];
}

/* ---- routing: still__ref_route, one cache per chunk ----------------------- */

/* SPEC §5 cap order: i before j when its sigma is larger, or equal and i
 * is the newer (the older leaves first). */
static int cap_before(const double *sigma, int64_t i, int64_t j)
{
    return sigma[i] > sigma[j] || (sigma[i] == sigma[j] && i > j);
}

/* Sorts idx [n] by cap_before (bottom-up merge sort, stable). */
static void cap_sort(const double *sigma, int64_t *idx, int64_t *tmp, int64_t n)
{
    for (int64_t width = 1; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n;
            int64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi)
                tmp[o++] = cap_before(sigma, idx[b], idx[a]) ? idx[b++] : idx[a++];
            while (a < mid)
                tmp[o++] = idx[a++];
            while (b < hi)
                tmp[o++] = idx[b++];
        }
        memcpy(idx, tmp, (size_t)n * sizeof *idx);
    }
}

/* The cache of queries of chunk c: the selected tokens before split_end,
 * the max_sel first by the cap order when there are more (SPEC §5). */
static void chunk_cache(fast_head *h, const double *sigma, const uint8_t *sel, int64_t split_end)
{
    int64_t n = 0;
    for (int64_t j = 0; j < h->N; j++) {
        h->cache[j] = j < split_end && sel[j];
        if (h->cache[j])
            h->order[n++] = j;
    }
    if (h->r->max_sel == 0 || n <= h->r->max_sel)
        return;
    cap_sort(sigma, h->order, h->order_tmp, n);
    for (int64_t i = h->r->max_sel; i < n; i++)
        h->cache[h->order[i]] = 0; /* evicted: folds into the linear set */
}

static void route_row_kinds(fast_head *h, const double *sigma, const uint8_t *sel, int64_t t,
                            int64_t n, uint8_t *kind);

/* kind[j] for query t and every key j < n (KEY_FUTURE after t); with
 * rest = drop (SPEC §12) the keys outside the exact set are absent, as
 * future ones. */
static void route_row(fast_head *h, const double *sigma, const uint8_t *sel, int64_t t,
                      int64_t n, uint8_t *kind)
{
    route_row_kinds(h, sigma, sel, t, n, kind);
    if (h->r->rest == STILL_REST_DROP)
        for (int64_t j = 0; j < n; j++)
            if (kind[j] == KEY_LINEAR)
                kind[j] = KEY_FUTURE;
}

static void route_row_kinds(fast_head *h, const double *sigma, const uint8_t *sel, int64_t t,
                      int64_t n, uint8_t *kind)
{
    const still__resolved *r = h->r;
    if (r->engine == STILL__ENGINE_WINDOW) { /* the last w positions incl. t, the sinks */
        for (int64_t j = 0; j < n; j++)
            kind[j] = j > t ? KEY_FUTURE : j > t - r->w || j < r->sinks ? KEY_EXACT : KEY_LINEAR;
        return;
    }
    const int64_t c = t / r->C;
    const int64_t split_end = still__split_end(r, t);
    if (c != h->cache_chunk) {
        chunk_cache(h, sigma, sel, split_end);
        h->cache_chunk = c;
    }
    for (int64_t j = 0; j < n; j++) {
        if (j > t)
            kind[j] = KEY_FUTURE;
        else if (j < split_end)
            kind[j] = h->cache[j] ? KEY_EXACT : KEY_LINEAR;
        else
            kind[j] = r->L > 0 ? KEY_EXACT : KEY_LINEAR;
    }
}

/* ---- one block of queries ------------------------------------------------------ */

static void sgemm(int transA, int transB, int64_t M, int64_t Nn, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, (int)M, (int)Nn, (int)K, alpha, A, (int)lda,
                B, (int)ldb, beta, C, (int)ldc);
}

static void add_rows(double *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] += (double)src[i];
}

/* SPEC §1, the teacher of the block from its raw logits h->S: full
 * causal softmax, the products with v in BLAS (h->P is free here). */
static void block_teacher(fast_head *h, int64_t t0, int64_t nb)
{
    const int64_t n = t0 + nb, dv = h->dv;
    for (int64_t i = 0; i < nb; i++) {
        const float *S = h->S + i * n;
        float *P = h->P + i * n;
        double mx = -INFINITY, sum = 0.0;
        /* an overflowed logit: -inf would weigh 0, inf and NaN worse */
        h->overflow |= !still__all_finite(STILL_F32, S, t0 + i + 1);
        for (int64_t j = 0; j <= t0 + i; j++)
            mx = fmax(mx, S[j]);
        for (int64_t j = 0; j < n; j++) {
            double p = j <= t0 + i ? exp((double)S[j] - mx) : 0.0;
            P[j] = (float)p;
            sum += p;
        }
        h->den[i] = sum; /* block_forward overwrites it */
    }
    sgemm(0, 0, nb, dv, n, 1.0f, h->P, n, h->v, dv, 0.0f, h->teacher_f, dv);
    for (int64_t i = 0; i < nb; i++)
        for (int64_t e = 0; e < dv; e++)
            h->teacher_blk[i * dv + e] = (double)h->teacher_f[i * dv + e] / h->den[i];
}

/* SPEC §6 forward of queries t0..t0+nb-1 against keys 0..n-1 (n = t0+nb):
 * A = ω-less exact weights e^{s-m}, K = linear weights kappa (0 elsewhere),
 * their products with v, and the per-row maxima and denominators. */
static void block_forward(fast_head *h, const double *sigma, const uint8_t *sel, int64_t t0,
                          int64_t nb, int compute_teacher)
{
    const still__resolved *r = h->r;
    const int64_t n = t0 + nb, d = h->d, m = h->m, dv = h->dv;
    sgemm(0, 1, nb, n, d, (float)r->scale, h->q + t0 * d, d, h->k, d, 0.0f, h->S, n);
    if (compute_teacher)
        block_teacher(h, t0, nb);
    sgemm(0, 1, nb, n, m, 1.0f, h->pq + t0 * m, m, h->pk, m, 0.0f, h->K, n);
    for (int64_t i = 0; i < nb; i++) {
        const int64_t t = t0 + i;
        uint8_t *kind = h->kind + i * n;
        float *S = h->S + i * n, *A = h->A + i * n, *K = h->K + i * n;
        double mx = -INFINITY, lin = 0.0, soft;
        int64_t am = -1;
        route_row(h, sigma, sel, t, n, kind);
        int bad = 0; /* SPEC §10: a kept logit or kernel value float cannot hold */
        for (int64_t j = 0; j <= t; j++) {
            bad |= !(kind[j] == KEY_EXACT ? fabsf(S[j]) <= FLT_MAX
                                          : kind[j] != KEY_LINEAR || fabsf(K[j]) <= FLT_MAX);
            if (kind[j] == KEY_EXACT && S[j] > mx) {
                mx = S[j];
                am = j;
            }
        }
        const int phantom = r->phantom_sink && t < r->C; /* App. A.2 */
        if (isinf(mx) || (phantom && mx < 0.0)) {
            mx = 0.0;
            am = -1;
        }
        soft = phantom ? (double)r->C * exp(-mx) : 0.0;
        for (int64_t j = 0; j < n; j++) {
            double a = kind[j] == KEY_EXACT ? exp((double)S[j] - mx) : 0.0;
            A[j] = (float)a;
            soft += a;
            if (kind[j] != KEY_LINEAR)
                K[j] = 0.0f;
            lin += K[j];
        }
        h->m_t[i] = mx;
        h->argmax[i] = am;
        h->soft[i] = soft;
        h->lin[i] = lin + r->eps_den;
        h->den[i] = h->omega * soft + lin + r->eps_den;
        h->overflow |= bad || !isfinite(h->den[i]);
        if (h->den[i] == 0.0) /* SPEC §12: E_t empty and dropped, eps_den 0: o = 0, */
            h->den[i] = INFINITY; /* no gradient (every term over den is 0) */
    }
    sgemm(0, 0, nb, dv, n, 1.0f, h->A, n, h->v, dv, 0.0f, h->num_exact, dv);
    sgemm(0, 0, nb, dv, n, 1.0f, h->K, n, h->v, dv, 0.0f, h->num_lin, dv);
}

/* The outputs of the block and dL/dnum, dL/dden from its upstream
 * gradient: the given dO, or SPEC §8's 2 (o - teacher) * dloss_scale with
 * teacher the block's rows [nb][dv] (adding to up->sq_err). */
static void block_upstream(fast_head *h, int64_t t0, int64_t nb, const double *teacher,
                           still__ref_upstream *up, int has_gate, double *o)
{
    const int64_t dv = h->dv;
    for (int64_t i = 0; i < nb; i++) {
        const int64_t t = t0 + i;
        h->dden[i] = 0.0;
        for (int64_t e = 0; e < dv; e++) {
            double g = has_gate ? h->gate[t * dv + e] : 1.0;
            double ot = (h->omega * h->num_exact[i * dv + e] + g * h->num_lin[i * dv + e]) / h->den[i];
            double go;
            if (up->dout) {
                go = up->dout[t * dv + e];
            } else {
                double diff = ot - teacher[i * dv + e];
                go = 2.0 * diff * up->dloss_scale;
                up->sq_err += diff * diff;
            }
            h->go[i * dv + e] = go;
            h->dnum[i * dv + e] = (float)(go / h->den[i]);
            h->gdnum[i * dv + e] = (float)(g * go / h->den[i]);
            h->dden[i] -= go * ot / h->den[i];
            if (o)
                o[t * dv + e] = ot;
        }
    }
}

/* Backward of the block into g (v, gate, omega, logits) and h->dpq, dpk. */
static void block_backward(fast_head *h, int64_t t0, int64_t nb, int want_phi,
                           const still__ref_head_grads *g)
{
    const still__resolved *r = h->r;
    const int64_t n = t0 + nb, d = h->d, m = h->m, dv = h->dv;
    for (int64_t i = 0; i < nb; i++) {
        if (g->domega) {
            /* do/dω = (num_exact - o soft) / den, with the ω soft of o
             * cancelled by hand: (num_exact lin - g num_lin soft) / den^2.
             * The plain form (ref/grad.c) subtracts two nearly equal float
             * products when the exact keys dominate the denominator. */
            const double *go = h->go + i * dv;
            double acc = 0.0;
            for (int64_t e = 0; e < dv; e++) {
                double gt = h->has_gate ? h->gate[(t0 + i) * dv + e] : 1.0;
                acc += go[e] * ((double)h->num_exact[i * dv + e] * h->lin[i] -
                                gt * (double)h->num_lin[i * dv + e] * h->soft[i]);
            }
            *g->domega += acc / (h->den[i] * h->den[i]);
        }
        if (g->dgate)
            for (int64_t e = 0; e < dv; e++)
                g->dgate[(t0 + i) * dv + e] += (double)h->dnum[i * dv + e] * h->num_lin[i * dv + e];
    }
    if (g->dv) { /* dv = ω A^T dnum + K^T (g ⊙ dnum) */
        sgemm(1, 0, n, dv, nb, (float)h->omega, h->A, n, h->dnum, dv, 0.0f, h->tmp, dv);
        sgemm(1, 0, n, dv, nb, 1.0f, h->K, n, h->gdnum, dv, 1.0f, h->tmp, dv);
        add_rows(g->dv, h->tmp, n * dv);
    }
    if (g->dq || g->dk) { /* dS = ω (dnum v^T + dden) ⊙ A, and the maximum */
        sgemm(0, 1, nb, n, dv, 1.0f, h->dnum, dv, h->v, dv, 0.0f, h->P, n);
        for (int64_t i = 0; i < nb; i++) {
            float *S = h->S + i * n;
            const float *A = h->A + i * n, *P = h->P + i * n;
            double dm = 0.0;
            for (int64_t j = 0; j < n; j++) {
                double ds = h->kind[i * n + j] == KEY_EXACT
                                ? h->omega * ((double)P[j] + h->dden[i]) * A[j] : 0.0;
                dm -= ds;
                S[j] = (float)ds;
            }
            if (r->phantom_sink && t0 + i < r->C)
                dm -= h->dden[i] * h->omega * (double)r->C * exp(-h->m_t[i]);
            if (h->argmax[i] >= 0)
                S[h->argmax[i]] = (float)((double)S[h->argmax[i]] + dm);
        }
        if (g->dq) {
            sgemm(0, 0, nb, d, n, (float)r->scale, h->S, n, h->k, d, 0.0f, h->tmp, d);
            add_rows(g->dq + t0 * d, h->tmp, nb * d);
        }
        if (g->dk) {
            sgemm(1, 0, n, d, nb, (float)r->scale, h->S, n, h->q + t0 * d, d, 0.0f, h->tmp, d);
            add_rows(g->dk, h->tmp, n * d);
        }
    }
    if (want_phi) { /* dkappa = (g ⊙ dnum) v^T + dden on linear keys */
        sgemm(0, 1, nb, n, dv, 1.0f, h->gdnum, dv, h->v, dv, 0.0f, h->P, n);
        for (int64_t i = 0; i < nb; i++)
            for (int64_t j = 0; j < n; j++)
                h->P[i * n + j] = h->kind[i * n + j] == KEY_LINEAR
                                      ? (float)((double)h->P[i * n + j] + h->dden[i]) : 0.0f;
        sgemm(0, 0, nb, m, n, 1.0f, h->P, n, h->pk, m, 0.0f, h->tmp, m);
        add_rows(h->dpq + t0 * m, h->tmp, nb * m);
        sgemm(1, 0, n, m, nb, 1.0f, h->P, n, h->pq + t0 * m, m, 0.0f, h->tmp, m);
        add_rows(h->dpk, h->tmp, n * m);
    }
}

/* SPEC §2 backward of every row of one map (in double, ref/grad.c). */
static void maps_backward(fast_head *h, const still_params *params, int which, int64_t head,
                          const double *x, const double *dphi, double *dW, double *db,
                          double *du, double *dx_all)
{
    int64_t f;
    const still_feature_map *fm = still__ref_map_of(h->r, params, which, &f);
    for (int64_t t = 0; t < h->N; t++) {
        still__ref_feature_map_grad(h->r, fm, f, head, x + t * h->d, dphi + t * h->m, dW, db, du,
                                    dx_all ? h->dx : NULL, h->fm_work);
        if (dx_all)
            for (int64_t i = 0; i < h->d; i++)
                dx_all[t * h->d + i] += h->dx[i];
    }
}

int still__fast_head_vjp(const still__resolved *r, const still_params *params, int64_t head,
                         const double *q, const double *k, const double *v, const double *gate,
                         const double *sigma, const uint8_t *sel, still__ref_upstream *up,
                         double *o, const still__ref_head_grads *g)
{
    const int want_q = g && (g->dq || g->dfq_W || g->dfq_b || g->dfq_u);
    const int want_k = g && (g->dk || g->dfk_W || g->dfk_b || g->dfk_u);
    const int compute_teacher = !up->dout && !up->teacher;
    fast_head h;
    int rc;

    if ((rc = head_alloc(r, &h)))
        return rc;
    const int64_t N = h.N, d = h.d, dv = h.dv, m = h.m;
    h.omega = still__ref_omega(params, head);
    h.has_gate = gate != NULL;
    to_float(q, N * d, h.q);
    to_float(k, N * d, h.k);
    to_float(v, N * dv, h.v);
    if (gate)
        to_float(gate, N * dv, h.gate);
    still__ref_feature_rows(r, params, STILL_MAP_Q, head, N, q, h.phi);
    to_float(h.phi, N * m, h.pq);
    still__ref_feature_rows(r, params, STILL_MAP_K, head, N, k, h.phi);
    to_float(h.phi, N * m, h.pk);
    /* features beyond float (|x| ~ 1e39 after NP rescale) would be inf */
    h.overflow = !still__all_finite(STILL_F32, h.pq, N * m) ||
                 !still__all_finite(STILL_F32, h.pk, N * m);
    up->sq_err = 0.0;
    for (int64_t t0 = 0; t0 < N; t0 += BLOCK_ROWS) {
        const int64_t nb = N - t0 < BLOCK_ROWS ? N - t0 : BLOCK_ROWS;
        block_forward(&h, sigma, sel, t0, nb, compute_teacher);
        block_upstream(&h, t0, nb, up->teacher ? up->teacher + t0 * dv : h.teacher_blk, up,
                       gate != NULL, o);
        if (g)
            block_backward(&h, t0, nb, want_q || want_k, g);
    }
    if (want_q)
        maps_backward(&h, params, STILL_MAP_Q, head, q, h.dpq, g->dfq_W, g->dfq_b, g->dfq_u,
                      g->dq);
    if (want_k)
        maps_backward(&h, params, STILL_MAP_K, head, k, h.dpk, g->dfk_W, g->dfk_b, g->dfk_u,
                      g->dk);
    head_free(&h);
    return h.overflow ? STILL_E_NONFINITE : STILL_OK;
}
