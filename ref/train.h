/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * train.h -- the oracle of the training stages (SPEC §8-9), double
 * precision, written by explicit chain rule.
 *
 * Like ref.h, every function works on ONE head with its arrays gathered
 * contiguously in double (q [N][d], k [N][d], v [N][dv], gate [N][dv]);
 * lib/grad_api.c gathers, loops over (batch, head) and scatters.  The
 * forward values are those of ref/ (same formulas, same routing through
 * still__ref_route); only the intermediates are kept for the backward.
 */
#ifndef STILL_REF_TRAIN_H
#define STILL_REF_TRAIN_H

#include "ref.h"

/* Doubles of scratch still__ref_feature_map_grad needs. */
int64_t still__ref_feature_map_grad_work(const still__resolved *r, int64_t f);

/* SPEC §2 backward for one vector x [d] with the map of query head `head`
 * (fm == NULL or fm->W == NULL: identity W, f = d; missing b or u: 0):
 * given dphi [r->m] = dL/dphi, ADDS dL/dW [f][d], dL/db [f], dL/du [d]
 * (pointers to this head's block, each may be NULL; with a missing b or u
 * the gradient is taken at b = 0, u = 0) and WRITES dL/dx [d] (may be
 * NULL).  Non-differentiable points take the derivative of the active
 * branch: the 1e-12 floor of phi passes nothing where it clamps, the
 * floors max(||z||, 1e-12) and max(||u||, 1e-6) are constants where they
 * clamp, relu'(0) = 0, and d||x||/dx = 0 at x = 0.  work has
 * still__ref_feature_map_grad_work(r, f) doubles. */
void still__ref_feature_map_grad(const still__resolved *r, const still_feature_map *fm,
                                 int64_t f, int64_t head, const double *x, const double *dphi,
                                 double *dW, double *db, double *du, double *dx, double *work);

/* Gradients of one query head, each NULL when not wanted; every one is
 * ADDED to.  dfk_* equal dfq_* when the key map is tied to the query map,
 * so the shared map receives the sum of both uses. */
typedef struct still__ref_head_grads {
    double *dq;           /* [N][d] */
    double *dk;           /* [N][d] */
    double *dv;           /* [N][dv] */
    double *dgate;        /* [N][dv] */
    double *domega;       /* one value: dL/domega of this head */
    double *dfq_W, *dfq_b, *dfq_u; /* [f][d], [f], [d] of this head */
    double *dfk_W, *dfk_b, *dfk_u;
} still__ref_head_grads;

/* What flows into the backward of one head (SPEC §18): a given upstream
 * gradient dL/do (the VJP), or that of SPEC §8's transfer loss,
 * dL/do = 2 (o - teacher) * dloss_scale, formed row by row from the
 * forward's o so that both are one backward. */
typedef struct still__ref_upstream {
    const double *dout;    /* [N][dv] dL/do, or NULL: the transfer loss */
    const double *teacher; /* transfer: [N][dv], or NULL for the full causal
                              softmax attention of q, k, v */
    double dloss_scale;    /* transfer: the factor of 2 (o - teacher) */
    double sq_err;         /* transfer, written: sum over the head of
                              (o - teacher)^2 */
} still__ref_upstream;

/* SPEC §6 and §18 for one query head: the hybrid output o [N][dv] (may be
 * NULL) under the routing given by sigma [N] and sel [N] (constants) and,
 * with dL/do from up, the gradients g (NULL: none) of L = sum dL/do ⊙ o.
 * Returns STILL_OK or STILL_E_NOMEM / STILL_E_OVERFLOW (scratch). */
int still__ref_head_vjp(const still__resolved *r, const still_params *params, int64_t head,
                        const double *q, const double *k, const double *v, const double *gate,
                        const double *sigma, const uint8_t *sel, still__ref_upstream *up,
                        double *o, const still__ref_head_grads *g);

/* SPEC §6 gating projection G = sigmoid(X Wg^T) backward: given dG
 * [B][Hq][N][dv] (BHND), writes dX [B][N][hidden] and dWg [Hq*dv][hidden]
 * (either may be NULL). */
void still__ref_gate_projection_grad(int64_t batch, int64_t seq_len, int64_t hidden,
                                     int64_t heads_q, int64_t dim_v, const double *X,
                                     const double *Wg, const double *dG, double *dX,
                                     double *dWg);

/* SPEC §9 LoRA, y = x W^T + (alpha/r) (x A^T) B^T with x [n][in],
 * W [out][in], A [r][in], B [out][r], y [n][out]. */
void still__ref_lora_forward(int64_t n, int64_t in, int64_t out, int64_t rank, double alpha,
                             const double *x, const double *W, const double *A,
                             const double *B, double *y);
/* Given dy [n][out], writes dx [n][in], dA [r][in], dB [out][r] (each may
 * be NULL); W is frozen.  h [n][r] is scratch. */
void still__ref_lora_backward(int64_t n, int64_t in, int64_t out, int64_t rank, double alpha,
                              const double *x, const double *W, const double *A,
                              const double *B, const double *dy, double *dx, double *dA,
                              double *dB, double *h);
/* W_merged [out][in] = W + (alpha/r) B A; W_merged may be W. */
void still__ref_lora_merge(int64_t in, int64_t out, int64_t rank, double alpha,
                           const double *W, const double *A, const double *B,
                           double *W_merged);

#endif /* STILL_REF_TRAIN_H */
