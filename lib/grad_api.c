/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* grad_api.c -- public entry points of SPEC §18 and §8: the backward pass
 * (VJP) for a given upstream gradient dO, the attention-transfer loss with
 * its exact gradients (the same backward, with dO = 2 (o - o_T) / n formed
 * row by row), and the backward of the gating projection.  Like ref_api.c
 * they validate everything before any work, gather each head into
 * contiguous double arrays, call the head's backward (ref/grad.c or
 * grad_fast.c) and scatter; the routing is a constant of the forward. */
#include "internal.h"
#include "fast.h"
#include "grad_fast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One query head's backward: still__ref_head_vjp (ref/grad.c, double) or
 * still__fast_head_vjp (grad_fast.c, BLAS). */
typedef int (*head_vjp_fn)(const still__resolved *r, const still_params *params, int64_t head,
                           const double *q, const double *k, const double *v,
                           const double *gate, const double *sigma, const uint8_t *sel,
                           still__ref_upstream *up, double *o, const still__ref_head_grads *g);

/* The upstream gradient of a call: dout given (VJP), or the transfer
 * loss's against teacher (NULL: computed), arrays [B,Hq,N,dv] in the
 * layout and dtype of the tensors. */
typedef struct upstream {
    const void *dout;
    const void *teacher;
} upstream;

/* The contiguous double arrays of one (batch, kv head) group. */
typedef struct grad_work {
    double *q, *k, *v, *gate, *given, *o;   /* [N][d] or [N][dv]; given: */
                                            /* dO or the transfer's teacher */
    double *sigma, *sigma_group;            /* [N] */
    double *dq, *dk, *dv, *dgate;           /* [N][d] or [N][dv], one head */
    uint8_t *sel;                           /* [N] */
} grad_work;

static void work_free(grad_work *w)
{
    free(w->q); free(w->k); free(w->v); free(w->gate); free(w->given); free(w->o);
    free(w->sigma); free(w->sigma_group); free(w->dq); free(w->dk); free(w->dv);
    free(w->dgate); free(w->sel);
    memset(w, 0, sizeof *w);
}

static int work_alloc(const still__resolved *r, grad_work *w)
{
    const int64_t N = r->shape.seq_len, d = r->shape.dim_qk, dv = r->shape.dim_v;
    int rc = STILL_OK;
    memset(w, 0, sizeof *w);
    w->q = still__array_new(N, d, sizeof(double), 1, &rc);
    w->k = still__array_new(N, d, sizeof(double), 1, &rc);
    w->v = still__array_new(N, dv, sizeof(double), 1, &rc);
    w->gate = still__array_new(N, dv, sizeof(double), 1, &rc);
    w->given = still__array_new(N, dv, sizeof(double), 1, &rc);
    w->o = still__array_new(N, dv, sizeof(double), 1, &rc);
    w->sigma = still__array_new(N, 1, sizeof(double), 1, &rc);
    w->sigma_group = still__array_new(N, 1, sizeof(double), 1, &rc);
    w->dq = still__array_new(N, d, sizeof(double), 1, &rc);
    w->dk = still__array_new(N, d, sizeof(double), 1, &rc);
    w->dv = still__array_new(N, dv, sizeof(double), 1, &rc);
    w->dgate = still__array_new(N, dv, sizeof(double), 1, &rc);
    w->sel = still__array_new(N, 1, 1, 1, &rc);
    if (rc)
        work_free(w);
    return rc;
}

/* Adds src [N][D] to head h of batch b of a double [B,H,N,D] array. */
static void scatter_add(double *dst, int layout, int64_t H, int64_t N, int64_t D, int64_t b,
                        int64_t h, const double *src)
{
    still__strides s = still__strides_of(layout, H, N, D);
    for (int64_t n = 0; n < N; n++)
        for (int64_t e = 0; e < D; e++)
            dst[b * s.b + h * s.h + n * s.n + e] += src[n * D + e];
}

static void zero(double *p, int64_t n)
{
    if (p)
        memset(p, 0, (size_t)n * sizeof(double));
}

/* The gradient arrays of g that the call writes, with their element counts
 * (NULL ones included: the callers skip them); returns how many. */
static int grads_list(const still__resolved *r, const still_params *params, const still_grads *g,
                      double **p, int64_t *n)
{
    const still_shape *s = &r->shape;
    const int64_t Hq = s->heads_q, d = s->dim_qk, dv = s->dim_v;
    const int64_t nq = s->batch * Hq * s->seq_len, nk = s->batch * s->heads_kv * s->seq_len;
    int c = 0;
#define GRAD(ptr, count) (p[c] = (ptr), n[c++] = (count))
    GRAD(g->dfq_W, Hq * r->f_q * d);
    GRAD(g->dfq_b, Hq * r->f_q);
    GRAD(g->dfq_u, Hq * d);
    if (params && !params->fk_tied) {
        GRAD(g->dfk_W, Hq * r->f_k * d);
        GRAD(g->dfk_b, Hq * r->f_k);
        GRAD(g->dfk_u, Hq * d);
    }
    GRAD(g->dwindow_w, Hq);
    GRAD(g->dgate, nq * dv);
    GRAD(g->dq, nq * d);
    GRAD(g->dk, nk * d);
    GRAD(g->dv, nk * dv);
#undef GRAD
    return c;
}

/* Every wanted gradient starts at 0; the heads add into them. */
static void grads_zero(const still__resolved *r, const still_params *params, const still_grads *g)
{
    double *p[11];
    int64_t n[11];
    for (int i = 0, c = grads_list(r, params, g, p, n); i < c; i++)
        zero(p[i], n[i]);
}

/* SPEC §10: 1 when every gradient written (those grads_zero zeroes) is
 * finite (a float32 product overflowing with a huge scale used to leave
 * infinities behind STILL_OK). */
static int grads_finite(const still__resolved *r, const still_params *params, const still_grads *g)
{
    double *p[11];
    int64_t n[11];
    for (int i = 0, c = grads_list(r, params, g, p, n); i < c; i++)
        if (p[i] && !still__all_finite(STILL_F64, p[i], n[i]))
            return 0;
    return 1;
}

/* SPEC §5: the selection of a head from sigma, or the forced one (entries
 * outside complete chunks ignored; ignored altogether by routing window),
 * as still_ref_forward. */
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

static void head_saliency(const still__resolved *r, const still_tensors *t, int64_t b,
                          int64_t hq, grad_work *w)
{
    const still_shape *s = &r->shape;
    still__gather_head(t->dtype, t->q, s->layout, s->heads_q, s->seq_len, s->dim_qk, b, hq, w->q);
    still__ref_saliency(r, w->q, w->k, s->seq_len, w->sigma);
}

/* This head's slice of the parameter gradients and its own per-head
 * arrays; the key map's gradients are the query map's when tied. */
static still__ref_head_grads head_grads(const still__resolved *r, const still_params *params,
                                        const still_grads *g, int64_t hq, grad_work *w,
                                        double *domega)
{
    const int64_t d = r->shape.dim_qk, fq = r->f_q, fk = r->f_k;
    const int tied = !params || params->fk_tied;
    still__ref_head_grads h;
    h.dq = g->dq ? w->dq : NULL;
    h.dk = g->dk ? w->dk : NULL;
    h.dv = g->dv ? w->dv : NULL;
    h.dgate = g->dgate ? w->dgate : NULL;
    h.domega = g->dwindow_w ? domega : NULL;
    h.dfq_W = g->dfq_W ? g->dfq_W + hq * fq * d : NULL;
    h.dfq_b = g->dfq_b ? g->dfq_b + hq * fq : NULL;
    h.dfq_u = g->dfq_u ? g->dfq_u + hq * d : NULL;
    if (tied) {
        h.dfk_W = h.dfq_W;
        h.dfk_b = h.dfq_b;
        h.dfk_u = h.dfq_u;
    } else {
        h.dfk_W = g->dfk_W ? g->dfk_W + hq * fk * d : NULL;
        h.dfk_b = g->dfk_b ? g->dfk_b + hq * fk : NULL;
        h.dfk_u = g->dfk_u ? g->dfk_u + hq * d : NULL;
    }
    return h;
}

/* One query head of a group whose k, v (and, per kv head, sigma and
 * selection) are gathered: its upstream gradient, output and gradients. */
static int vjp_head(head_vjp_fn fn, const still__resolved *r,
                         const still_params *params, const still_tensors *t,
                    const upstream *src, const still_grads *g, int64_t b, int64_t hq,
                    double dloss_scale, grad_work *w, double *sq_err)
{
    const still_shape *s = &r->shape;
    const int64_t N = s->seq_len, d = s->dim_qk, dv = s->dim_v, row = b * s->heads_q + hq;
    const double *sigma = r->per_kv ? w->sigma_group : w->sigma;
    double domega = 0.0;
    int rc;

    head_saliency(r, t, b, hq, w); /* gathers q */
    if (!r->per_kv)
        head_selection(r, t, row, w->sigma, w->sel);
    if (t->gate)
        still__gather_head(t->dtype, t->gate, s->layout, s->heads_q, N, dv, b, hq, w->gate);
    const void *given = src->dout ? src->dout : src->teacher;
    if (given) /* dO, or SPEC §8's teacher, a constant; else the head computes it */
        still__gather_head(t->dtype, given, s->layout, s->heads_q, N, dv, b, hq, w->given);
    still__ref_upstream up = {src->dout ? w->given : NULL,
                              !src->dout && src->teacher ? w->given : NULL, dloss_scale, 0.0};
    if (g) {
        zero(w->dq, N * d);
        zero(w->dk, N * d);
        zero(w->dv, N * dv);
        zero(w->dgate, N * dv);
    }
    still__ref_head_grads hg = {0};
    if (g)
        hg = head_grads(r, params, g, hq, w, &domega);
    if ((rc = fn(r, params, hq, w->q, w->k, w->v, t->gate ? w->gate : NULL, sigma, w->sel, &up,
                 w->o, g ? &hg : NULL)))
        return rc;
    *sq_err = up.sq_err;
    if (t->o) {
        still__strides so = still__strides_of(s->layout, s->heads_q, N, dv);
        for (int64_t n = 0; n < N; n++)
            for (int64_t e = 0; e < dv; e++)
                still__store(t->dtype, t->o, b * so.b + hq * so.h + n * so.n + e,
                             w->o[n * dv + e]);
    }
    if (t->sigma)
        memcpy(t->sigma + row * N, sigma, (size_t)N * sizeof(double));
    if (t->selected)
        memcpy(t->selected + row * N, w->sel, (size_t)N);
    if (!g)
        return STILL_OK;
    const int64_t hk = hq / r->group;
    if (g->dq)
        scatter_add(g->dq, s->layout, s->heads_q, N, d, b, hq, w->dq);
    if (g->dk)
        scatter_add(g->dk, s->layout, s->heads_kv, N, d, b, hk, w->dk);
    if (g->dv)
        scatter_add(g->dv, s->layout, s->heads_kv, N, dv, b, hk, w->dv);
    if (g->dgate)
        scatter_add(g->dgate, s->layout, s->heads_q, N, dv, b, hq, w->dgate);
    if (g->dwindow_w && params && params->window_w) { /* omega = sigmoid(w) */
        double omega = still__ref_omega(params, hq);
        g->dwindow_w[hq] += domega * omega * (1.0 - omega);
    }
    return STILL_OK;
}

/* One (batch, kv head) group; with per-kv selection sigma is the group's
 * mean and the selection is shared (SPEC §5), as in still_ref_forward. */
static int vjp_group(head_vjp_fn fn, const still__resolved *r, const still_params *params,
                     const still_tensors *t, const upstream *src, const still_grads *g,
                     int64_t b, int64_t hk, double dloss_scale, grad_work *w, double *sq_err)
{
    const still_shape *s = &r->shape;
    const int64_t N = s->seq_len, hq0 = hk * r->group;
    int rc;

    still__gather_head(t->dtype, t->k, s->layout, s->heads_kv, N, s->dim_qk, b, hk, w->k);
    still__gather_head(t->dtype, t->v, s->layout, s->heads_kv, N, s->dim_v, b, hk, w->v);
    if (r->per_kv) {
        zero(w->sigma_group, N);
        for (int64_t hq = hq0; hq < hq0 + r->group; hq++) {
            head_saliency(r, t, b, hq, w);
            for (int64_t j = 0; j < N; j++)
                w->sigma_group[j] += w->sigma[j];
        }
        for (int64_t j = 0; j < N; j++)
            w->sigma_group[j] /= (double)r->group;
        head_selection(r, t, b * s->heads_q + hq0, w->sigma_group, w->sel);
    }
    for (int64_t hq = hq0; hq < hq0 + r->group; hq++) {
        double head_err = 0.0;
        if ((rc = vjp_head(fn, r, params, t, src, g, b, hq, dloss_scale, w, &head_err)))
            return rc;
        *sq_err += head_err;
    }
    return STILL_OK;
}

/* Both paths (fast: F32 only): checks, then every (batch, kv head) group
 * through fn; *sq_err receives the transfer loss's sum of squares (0 in a
 * VJP).  The fast path's products are BLAS, not kernels of an ISA, but
 * cfg->isa is checked as by still_forward: an ISA this machine cannot run
 * is STILL_E_ISA on every fast entry point. */
static int vjp_run(head_vjp_fn fn, int fast, const still_config *cfg,
                   const still_shape *shape, const still_params *params, const still_tensors *t,
                   const upstream *src, double *sq_err_out, double *count_out,
                   const still_grads *g)
{
    still__resolved r;
    still_tensors inputs;
    grad_work w;
    const still__kernels *kern;
    double placeholder = 0.0, sq_err = 0.0;
    const void *given = src->dout ? src->dout : src->teacher;
    int rc;

    if (!t)
        return STILL_E_NULL;
    inputs = *t;
    if (!inputs.o)
        inputs.o = &placeholder; /* o is optional here; the check wants one */
    if ((rc = still__resolve(cfg, shape, params, &r)) || (rc = still__no_query_range(cfg)) ||
        (fast && (rc = still__kernels_select(cfg ? cfg->isa : STILL_ISA_AUTO, &kern))) ||
        (rc = still__check_tensors(&r, params, &inputs, !fast)))
        return rc;
    const double count = (double)r.shape.batch * (double)r.shape.heads_q *
                         (double)r.shape.seq_len * (double)r.shape.dim_v;
    /* SPEC §10: dO and a given teacher are finite, like the inputs */
    if (given && !still__all_finite(t->dtype, given, r.shape.batch * r.shape.heads_q *
                                                         r.shape.seq_len * r.shape.dim_v))
        return STILL_E_NONFINITE;
    if ((rc = work_alloc(&r, &w)))
        return rc;
    if (g)
        grads_zero(&r, params, g);
    for (int64_t b = 0; b < r.shape.batch && !rc; b++)
        for (int64_t hk = 0; hk < r.shape.heads_kv && !rc; hk++)
            rc = vjp_group(fn, &r, params, t, src, g, b, hk, 1.0 / count, &w, &sq_err);
    work_free(&w);
    if (rc)
        return rc;
    *sq_err_out = sq_err;
    *count_out = count;
    /* SPEC §10: results the output types cannot hold are an error (o in
     * t->dtype: float32 on the fast path, or a float32 o of the ref) */
    if ((g && !grads_finite(&r, params, g)) ||
        (t->o && !still__all_finite(t->dtype, t->o, (int64_t)count)))
        return STILL_E_NONFINITE;
    return STILL_OK;
}

/* SPEC §8 on either path: the backward with dO = 2 (o - o_T) / n. */
static int transfer_run(head_vjp_fn fn, int fast, const still_config *cfg,
                        const still_shape *shape, const still_params *params,
                        const still_tensors *t, const void *teacher, double *loss,
                        const still_grads *g)
{
    const upstream src = {NULL, teacher};
    double sq_err = 0.0, count = 1.0;
    int rc;
    if (!loss)
        return STILL_E_NULL;
    if ((rc = vjp_run(fn, fast, cfg, shape, params, t, &src, &sq_err, &count, g)))
        return rc;
    *loss = sq_err / count; /* SPEC §8: the mean over every output element */
    return isfinite(*loss) ? STILL_OK : STILL_E_NONFINITE; /* SPEC §10 */
}

/* SPEC §18 on either path: the backward of a given dO. */
static int dout_run(head_vjp_fn fn, int fast, const still_config *cfg,
                    const still_shape *shape, const still_params *params,
                    const still_tensors *t, const void *dout, const still_grads *g)
{
    const upstream src = {dout, NULL};
    double sq_err, count;
    if (!dout || !g)
        return STILL_E_NULL;
    return vjp_run(fn, fast, cfg, shape, params, t, &src, &sq_err, &count, g);
}

static int finite_doubles(const double *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(p[i]))
            return 0;
    return 1;
}

int still_ref_gate_projection_grad(int64_t batch, int64_t seq_len, int64_t hidden,
                                   int64_t heads_q, int64_t dim_v, const double *X,
                                   const double *Wg, const double *dG, double *dX, double *dWg)
{
    size_t nx, nw, ng;
    int rc;
    if (!X || !Wg || !dG)
        return STILL_E_NULL;
    if ((rc = still__gate_projection_sizes(batch, seq_len, hidden, heads_q, dim_v,
                                           sizeof(double), &nx, &nw, &ng)))
        return rc;
    if (!finite_doubles(X, (int64_t)nx) || !finite_doubles(Wg, (int64_t)nw) ||
        !finite_doubles(dG, (int64_t)ng))
        return STILL_E_NONFINITE;
    still__ref_gate_projection_grad(batch, seq_len, hidden, heads_q, dim_v, X, Wg, dG, dX, dWg);
    return STILL_OK;
}

/* SPEC §8 on the ref path: double, F32 or F64 inputs. */
int still_ref_transfer_grad(const still_config *cfg, const still_shape *shape,
                            const still_params *params, const still_tensors *t,
                            const void *teacher, double *loss, const still_grads *g)
{
    return transfer_run(still__ref_head_vjp, 0, cfg, shape, params, t, teacher, loss, g);
}

/* The fast twin: F32 inputs, the O(N^2) products in float32 BLAS. */
int still_transfer_grad(const still_config *cfg, const still_shape *shape,
                        const still_params *params, const still_tensors *t, const void *teacher,
                        double *loss, const still_grads *g)
{
    return transfer_run(still__fast_head_vjp, 1, cfg, shape, params, t, teacher, loss, g);
}

/* SPEC §18 for routing nsa (SPEC §17) on the ref path: the gradients of
 * q, k, v and the gates; it has no gate G, no omega and no feature maps,
 * so their gradients, when asked for, are 0. */
static int nsa_vjp(const still_config *cfg, const still_shape *shape, const still_params *params,
                   const still_tensors *t, const void *dout, const still_grads *g)
{
    still__resolved r;
    int rc;
    if (!dout || !g)
        return STILL_E_NULL;
    if (cfg->query_begin != 0 || cfg->query_end != 0)
        return STILL_E_UNSUPPORTED;
    if ((rc = still__resolve(cfg, shape, params, &r)) || (rc = still__ref_vjp_nsa(&r, t, dout, g)))
        return rc;
    still_grads rest = *g; /* written above: dq, dk, dv, dnsa_gates */
    rest.dq = rest.dk = rest.dv = NULL;
    grads_zero(&r, params, &rest);
    const int64_t nq = r.shape.batch * r.shape.heads_q * r.shape.seq_len;
    if (!grads_finite(&r, params, g) ||
        (g->dnsa_gates && !still__all_finite(STILL_F64, g->dnsa_gates, nq * 3)) ||
        (t->o && !still__all_finite(t->dtype, t->o, nq * r.shape.dim_v)))
        return STILL_E_NONFINITE;
    return STILL_OK;
}

/* SPEC §18 on the ref path: double, F32 or F64 inputs and dO. */
int still_ref_vjp(const still_config *cfg, const still_shape *shape, const still_params *params,
                  const still_tensors *t, const void *dout, const still_grads *g)
{
    if (cfg && cfg->routing == STILL_ROUTING_NSA)
        return nsa_vjp(cfg, shape, params, t, dout, g);
    return dout_run(still__ref_head_vjp, 0, cfg, shape, params, t, dout, g);
}

/* The fast twin: F32 inputs and dO, the O(N^2) products in float32 BLAS. */
int still_vjp(const still_config *cfg, const still_shape *shape, const still_params *params,
              const still_tensors *t, const void *dout, const still_grads *g)
{
    return dout_run(still__fast_head_vjp, 1, cfg, shape, params, t, dout, g);
}
