/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* grad.c -- SPEC §18: the backward pass (VJP) of one head for any upstream
 * gradient, SPEC §8's attention-transfer loss among them, by explicit
 * chain rule in double (the oracle of training). */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PHI_FLOOR 1e-12 /* SPEC §2 step 4 */
#define Z_FLOOR 1e-12   /* SPEC §2 step 3 */
#define U_FLOOR 1e-6    /* SPEC §2 step 1 */

static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* softmax(sign * z) of z [n] into out, the maximum subtracted first. */
static void softmax_into(const double *z, int64_t n, double sign, double *out)
{
    double mx = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, sign * z[i]);
    for (int64_t i = 0; i < n; i++)
        sum += out[i] = exp(sign * z[i] - mx);
    for (int64_t i = 0; i < n; i++)
        out[i] /= sum;
}

int64_t still__ref_feature_map_grad_work(const still__resolved *r, int64_t f)
{
    return 4 * r->shape.dim_qk + 4 * f + r->m;
}

/* dL/dphi_i passed through the floor max(y_i, 1e-12): nothing where it clamps. */
static double floor_pass(const double *y, const double *dphi, int64_t i)
{
    return y[i] >= PHI_FLOOR ? dphi[i] : 0.0;
}

/* SPEC §2 step 4 backward: dzh [f] from dphi [m], given zh [f] and the
 * activation y [m] (before the floor). */
static void act_backward(const still__resolved *r, int64_t f, const double *zh, const double *y,
                         const double *dphi, double *dzh)
{
    double s1 = 0.0, s2 = 0.0;
    switch (r->act) {
    case STILL_ACT_HEDGEHOG: /* two softmaxes, of zh and of -zh */
        for (int64_t o = 0; o < f; o++) {
            s1 += y[o] * floor_pass(y, dphi, o);
            s2 += y[f + o] * floor_pass(y, dphi, f + o);
        }
        for (int64_t o = 0; o < f; o++)
            dzh[o] = y[o] * (floor_pass(y, dphi, o) - s1) -
                     y[f + o] * (floor_pass(y, dphi, f + o) - s2);
        break;
    case STILL_ACT_SOFTMAX:
        for (int64_t o = 0; o < f; o++)
            s1 += y[o] * floor_pass(y, dphi, o);
        for (int64_t o = 0; o < f; o++)
            dzh[o] = y[o] * (floor_pass(y, dphi, o) - s1);
        break;
    case STILL_ACT_ELU1: /* (elu(z) + 1)' = 1 for z > 0, e^z otherwise */
        for (int64_t o = 0; o < f; o++)
            dzh[o] = floor_pass(y, dphi, o) * (zh[o] > 0.0 ? 1.0 : exp(zh[o]));
        break;
    default: /* relu, relu'(0) = 0 */
        for (int64_t o = 0; o < f; o++)
            dzh[o] = zh[o] > 0.0 ? floor_pass(y, dphi, o) : 0.0;
        break;
    }
}

/* SPEC §2 step 4 forward into y [m] (before the floor). */
static void act_forward(const still__resolved *r, int64_t f, const double *zh, double *y)
{
    switch (r->act) {
    case STILL_ACT_HEDGEHOG:
        softmax_into(zh, f, 1.0, y);
        softmax_into(zh, f, -1.0, y + f);
        break;
    case STILL_ACT_SOFTMAX:
        softmax_into(zh, f, 1.0, y);
        break;
    case STILL_ACT_ELU1:
        for (int64_t o = 0; o < f; o++)
            y[o] = zh[o] > 0.0 ? zh[o] + 1.0 : exp(zh[o]);
        break;
    default:
        for (int64_t o = 0; o < f; o++)
            y[o] = fmax(zh[o], 0.0);
        break;
    }
}

void still__ref_feature_map_grad(const still__resolved *r, const still_feature_map *fm,
                                 int64_t f, int64_t head, const double *x, const double *dphi,
                                 double *dW, double *db, double *du, double *dx, double *work)
{
    const int64_t d = r->shape.dim_qk;
    const double *W = fm && fm->W ? fm->W + head * f * d : NULL;
    const double *b = fm && fm->b ? fm->b + head * f : NULL;
    const double *u = fm && fm->u ? fm->u + head * d : NULL;
    double *xr = work, *uh = xr + d, *dxr = uh + d, *duh = dxr + d;
    double *z = duh + d, *zh = z + f, *dzh = zh + f, *dz = dzh + f, *y = dz + f;
    double nu = 0.0, a = 0.0, nx = 0.0, nz = 0.0, gain = 1.0, dgain = 0.0;

    /* forward (SPEC §2), keeping x', z, ẑ and the activation */
    if (u) { /* step 1: û = u / max(||u||, 1e-6), x' = x - 2<x,û>û */
        nu = sqrt(dot(u, u, d));
        for (int64_t i = 0; i < d; i++)
            uh[i] = u[i] / fmax(nu, U_FLOOR);
        a = dot(x, uh, d);
    }
    for (int64_t i = 0; i < d; i++)
        xr[i] = u ? x[i] - 2.0 * a * uh[i] : x[i];
    for (int64_t o = 0; o < f; o++) /* step 2: z = W x' + b */
        z[o] = (W ? dot(W + o * d, xr, d) : xr[o]) + (b ? b[o] : 0.0);
    if (r->npmap) { /* step 3: gain = ||x|| / max(||z||, 1e-12) */
        nx = sqrt(dot(x, x, d));
        nz = sqrt(dot(z, z, f));
        gain = nx / fmax(nz, Z_FLOOR);
    }
    for (int64_t o = 0; o < f; o++)
        zh[o] = gain * z[o];
    act_forward(r, f, zh, y);

    /* backward */
    act_backward(r, f, zh, y, dphi, dzh);
    if (r->npmap)
        dgain = dot(dzh, z, f);
    for (int64_t o = 0; o < f; o++) {
        dz[o] = gain * dzh[o];
        if (r->npmap && nz > Z_FLOOR) /* d(nx/||z||)/dz = -nx z / ||z||^3 */
            dz[o] -= dgain * nx / (nz * nz * nz) * z[o];
    }
    for (int64_t o = 0; o < f; o++) {
        if (db)
            db[o] += dz[o];
        if (dW)
            for (int64_t i = 0; i < d; i++)
                dW[o * d + i] += dz[o] * xr[i];
    }
    for (int64_t i = 0; i < d; i++) {
        double s = 0.0;
        if (!W)
            s = dz[i];
        else
            for (int64_t o = 0; o < f; o++)
                s += W[o * d + i] * dz[o];
        dxr[i] = s;
    }
    if (u) {
        double c = dot(uh, dxr, d);
        if (du) { /* x'_k = x_k - 2<x,û>û_k: dû_i = -2(x_i <û,dx'> + <x,û> dx'_i) */
            for (int64_t i = 0; i < d; i++)
                duh[i] = -2.0 * (c * x[i] + a * dxr[i]);
            if (nu > U_FLOOR) { /* û = u/||u||: du = (I - ûû^T) dû / ||u|| */
                double p = dot(uh, duh, d);
                for (int64_t i = 0; i < d; i++)
                    du[i] += (duh[i] - uh[i] * p) / nu;
            } else {
                for (int64_t i = 0; i < d; i++)
                    du[i] += duh[i] / U_FLOOR;
            }
        }
        for (int64_t i = 0; i < d; i++) /* (I - 2ûû^T) is symmetric */
            dxr[i] -= 2.0 * c * uh[i];
    }
    /* with u absent the gradient at u = 0 is 0: x' is quadratic in u there */
    if (dx) {
        for (int64_t i = 0; i < d; i++) {
            dx[i] = dxr[i];
            if (r->npmap && nx > 0.0) /* d||x||/dx = x/||x|| */
                dx[i] += dgain / fmax(nz, Z_FLOOR) * x[i] / nx;
        }
    }
}

/* ---- one query: SPEC §6 forward with its intermediates, and backward ---- */

/* What the backward of query t needs from its forward. */
typedef struct row_fwd {
    double m_t;      /* the subtracted maximum of SPEC §6 (App. A.2 included) */
    int64_t argmax;  /* the exact key giving m_t; -1 when m_t is a constant */
    int phantom;     /* App. A.2 applies to this query */
    double soft_den; /* Σ_E e^{s-m} (+ C e^{-m} with the phantom sink) */
    double den;      /* the whole denominator */
} row_fwd;

/* Scratch of one head. */
typedef struct head_scratch {
    double *phi_q, *phi_k;   /* [N][m] */
    double *dphi_q, *dphi_k; /* [N][m], only when maps or q, k are wanted */
    double *weight;          /* [N]: e^{s-m} of exact keys, kappa of linear ones */
    double *num_exact, *num_lin, *o_t, *dnum, *teacher_t; /* [dv] */
    double *fm_work, *dx;    /* feature map backward */
    uint8_t *exact;          /* [N] */
} head_scratch;

static void scratch_free(head_scratch *s)
{
    free(s->phi_q); free(s->phi_k); free(s->dphi_q); free(s->dphi_k); free(s->weight);
    free(s->num_exact); free(s->num_lin); free(s->o_t); free(s->dnum); free(s->teacher_t);
    free(s->fm_work);
    free(s->dx); free(s->exact);
}

static int scratch_alloc(const still__resolved *r, int want_phi_grads, head_scratch *s)
{
    const int64_t N = r->shape.seq_len, m = r->m, dv = r->shape.dim_v;
    int64_t f = r->f_q > r->f_k ? r->f_q : r->f_k;
    int rc = STILL_OK;
    memset(s, 0, sizeof *s);
    s->phi_q = still__array_new(N, m, sizeof(double), 1, &rc);
    s->phi_k = still__array_new(N, m, sizeof(double), 1, &rc);
    if (want_phi_grads) {
        s->dphi_q = still__array_new(N, m, sizeof(double), 1, &rc);
        s->dphi_k = still__array_new(N, m, sizeof(double), 1, &rc);
        s->fm_work = still__array_new(still__ref_feature_map_grad_work(r, f), 1, sizeof(double), 1, &rc);
        s->dx = still__array_new(r->shape.dim_qk, 1, sizeof(double), 1, &rc);
    }
    s->weight = still__array_new(N, 1, sizeof(double), 1, &rc);
    s->num_exact = still__array_new(dv, 1, sizeof(double), 1, &rc);
    s->num_lin = still__array_new(dv, 1, sizeof(double), 1, &rc);
    s->o_t = still__array_new(dv, 1, sizeof(double), 1, &rc);
    s->dnum = still__array_new(dv, 1, sizeof(double), 1, &rc);
    s->teacher_t = still__array_new(dv, 1, sizeof(double), 1, &rc);
    s->exact = still__array_new(N, 1, 1, 1, &rc);
    if (rc)
        scratch_free(s);
    return rc;
}

/* SPEC §6 for query t: o_t = [ω Σ_E e^{s-m} v + g ⊙ Σ_Λ κ v] /
 * [ω Σ_E e^{s-m} + Σ_Λ κ + eps_den] (λ = 1), the phantom sink of App. A.2
 * in the exact part, as ref/hybrid.c.  Keeps the weights, the two
 * numerators and the denominators. */
static row_fwd row_forward(const still__resolved *r, int64_t t, const double *q, const double *k,
                           const double *v, const double *gate_t, double omega,
                           head_scratch *s)
{
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v, m = r->m;
    const double *q_t = q + t * d;
    row_fwd f = {-INFINITY, -1, r->phantom_sink && t < r->C, 0.0, 0.0};
    double lin_den = 0.0;

    for (int64_t j = 0; j <= t; j++) {
        if (!s->exact[j])
            continue;
        double sj = still__ref_logit(r, q_t, k + j * d);
        if (sj > f.m_t) {
            f.m_t = sj;
            f.argmax = j;
        }
    }
    if (isinf(f.m_t) || (f.phantom && f.m_t < 0.0)) { /* E empty, or the phantom's 0 */
        f.m_t = 0.0;
        f.argmax = -1;
    }
    f.soft_den = f.phantom ? (double)r->C * exp(-f.m_t) : 0.0;
    for (int64_t e = 0; e < dv; e++)
        s->num_exact[e] = s->num_lin[e] = 0.0;
    for (int64_t j = 0; j <= t; j++) {
        double wj;
        if (s->exact[j]) {
            wj = exp(still__ref_logit(r, q_t, k + j * d) - f.m_t);
            f.soft_den += wj;
            for (int64_t e = 0; e < dv; e++)
                s->num_exact[e] += wj * v[j * dv + e];
        } else if (r->rest == STILL_REST_DROP) { /* SPEC §12: the key is ignored */
            wj = 0.0;
        } else { /* SPEC §3: kappa = <phi_q(q_t), phi_k(k_j)> */
            wj = dot(s->phi_q + t * m, s->phi_k + j * m, m);
            lin_den += wj;
            for (int64_t e = 0; e < dv; e++)
                s->num_lin[e] += wj * v[j * dv + e];
        }
        s->weight[j] = wj;
    }
    f.den = omega * f.soft_den + lin_den + r->eps_den;
    if (f.den == 0.0) /* SPEC §12: E_t empty and dropped, eps_den 0: o = 0, no gradient */
        f.den = INFINITY;
    for (int64_t e = 0; e < dv; e++)
        s->o_t[e] = (omega * s->num_exact[e] + (gate_t ? gate_t[e] : 1.0) * s->num_lin[e]) / f.den;
    return f;
}

/* dL/ds(t,j) = ds: into dq_t and dk_j through s = scale <q_t, k_j>. */
static void logit_backward(const still__resolved *r, int64_t t, int64_t j, double ds,
                           const double *q, const double *k, const still__ref_head_grads *g)
{
    const int64_t d = r->shape.dim_qk;
    for (int64_t i = 0; i < d; i++) {
        if (g->dq)
            g->dq[t * d + i] += r->scale * ds * k[j * d + i];
        if (g->dk)
            g->dk[j * d + i] += r->scale * ds * q[t * d + i];
    }
}

/* Backward of query t given s->dnum = dL/dnum (numerator, per e) and dden:
 * every key's weight, v, the gate, ω, the logits (with the maximum m_t,
 * which is not a constant: the linear term is not scaled by e^{-m}) and
 * the feature maps (into dphi_q, dphi_k). */
static void row_backward(const still__resolved *r, int64_t t, const double *q, const double *k,
                         const double *v, const double *gate_t, double omega, const row_fwd *f,
                         double dden, head_scratch *s, const still__ref_head_grads *g)
{
    const int64_t dv = r->shape.dim_v, m = r->m;
    double dm = 0.0;

    if (g->domega) {
        double acc = dden * f->soft_den;
        for (int64_t e = 0; e < dv; e++)
            acc += s->dnum[e] * s->num_exact[e];
        *g->domega += acc;
    }
    if (g->dgate)
        for (int64_t e = 0; e < dv; e++)
            g->dgate[t * dv + e] += s->dnum[e] * s->num_lin[e];
    for (int64_t j = 0; j <= t; j++) {
        const double wj = s->weight[j], *v_j = v + j * dv;
        double dw = dden;
        if (s->exact[j]) { /* w = e^{s - m}, weighted by ω */
            for (int64_t e = 0; e < dv; e++)
                dw += s->dnum[e] * v_j[e];
            dw *= omega;
            if (g->dv)
                for (int64_t e = 0; e < dv; e++)
                    g->dv[j * dv + e] += omega * s->dnum[e] * wj;
            double ds = dw * wj;
            dm -= ds;
            logit_backward(r, t, j, ds, q, k, g);
        } else if (r->rest == STILL_REST_LINEAR) { /* w = kappa, the numerator gated */
            for (int64_t e = 0; e < dv; e++)
                dw += s->dnum[e] * (gate_t ? gate_t[e] : 1.0) * v_j[e];
            if (g->dv)
                for (int64_t e = 0; e < dv; e++)
                    g->dv[j * dv + e] += s->dnum[e] * (gate_t ? gate_t[e] : 1.0) * wj;
            if (s->dphi_q)
                for (int64_t i = 0; i < m; i++) {
                    s->dphi_q[t * m + i] += dw * s->phi_k[j * m + i];
                    s->dphi_k[j * m + i] += dw * s->phi_q[t * m + i];
                }
        }
    }
    if (f->phantom) /* ω C e^{-m} in the denominator */
        dm -= dden * omega * (double)r->C * exp(-f->m_t);
    if (f->argmax >= 0) /* m_t = s(t, argmax) */
        logit_backward(r, t, f->argmax, dm, q, k, g);
}

/* SPEC §2 backward of every row of one map into its parameters and x. */
static void maps_backward(const still__resolved *r, const still_params *params, int which,
                          int64_t head, const double *x, const double *dphi, double *dW,
                          double *db, double *du, double *dx_all, head_scratch *s)
{
    const int64_t N = r->shape.seq_len, d = r->shape.dim_qk;
    int64_t f;
    const still_feature_map *fm = still__ref_map_of(r, params, which, &f);
    for (int64_t t = 0; t < N; t++) {
        still__ref_feature_map_grad(r, fm, f, head, x + t * d, dphi + t * r->m, dW, db, du,
                                    dx_all ? s->dx : NULL, s->fm_work);
        if (dx_all)
            for (int64_t i = 0; i < d; i++)
                dx_all[t * d + i] += s->dx[i];
    }
}

/* dL/do_t of query t into s->dnum, returning dL/dden: the given dO, or
 * SPEC §8's 2 (o - teacher) * dloss_scale (adding to up->sq_err). */
static double row_upstream(const still__resolved *r, int64_t t, const double *q, const double *k,
                           const double *v, const row_fwd *f, still__ref_upstream *up,
                           head_scratch *s)
{
    const int64_t dv = r->shape.dim_v;
    const double *teacher_t = up->teacher ? up->teacher + t * dv : s->teacher_t;
    double dden = 0.0;
    if (!up->dout && !up->teacher) /* SPEC §1: the full causal softmax of q, k, v */
        still__ref_teacher_row(r, t, q + t * r->shape.dim_qk, k, v, s->teacher_t);
    for (int64_t e = 0; e < dv; e++) {
        double go;
        if (up->dout) {
            go = up->dout[t * dv + e];
        } else { /* SPEC §8: L = mean (o - o^T)^2 */
            double diff = s->o_t[e] - teacher_t[e];
            go = 2.0 * diff * up->dloss_scale;
            up->sq_err += diff * diff;
        }
        s->dnum[e] = go / f->den;
        dden -= go * s->o_t[e] / f->den;
    }
    return dden;
}

int still__ref_head_vjp(const still__resolved *r, const still_params *params, int64_t head,
                        const double *q, const double *k, const double *v, const double *gate,
                        const double *sigma, const uint8_t *sel, still__ref_upstream *up,
                        double *o, const still__ref_head_grads *g)
{
    const int64_t N = r->shape.seq_len, dv = r->shape.dim_v;
    const double omega = still__ref_omega(params, head);
    const int want_q = g && (g->dq || g->dfq_W || g->dfq_b || g->dfq_u);
    const int want_k = g && (g->dk || g->dfk_W || g->dfk_b || g->dfk_u);
    head_scratch s;
    int rc;

    if ((rc = scratch_alloc(r, want_q || want_k, &s)))
        return rc;
    still__ref_feature_rows(r, params, STILL_MAP_Q, head, N, q, s.phi_q);
    still__ref_feature_rows(r, params, STILL_MAP_K, head, N, k, s.phi_k);
    up->sq_err = 0.0;
    for (int64_t t = 0; t < N; t++) {
        const double *gate_t = gate ? gate + t * dv : NULL;
        still__ref_route(r, sigma, sel, t, s.exact);
        row_fwd f = row_forward(r, t, q, k, v, gate_t, omega, &s);
        double dden = row_upstream(r, t, q, k, v, &f, up, &s);
        if (o)
            for (int64_t e = 0; e < dv; e++)
                o[t * dv + e] = s.o_t[e];
        if (g)
            row_backward(r, t, q, k, v, gate_t, omega, &f, dden, &s, g);
    }
    if (want_q)
        maps_backward(r, params, STILL_MAP_Q, head, q, s.dphi_q, g->dfq_W, g->dfq_b, g->dfq_u,
                      g->dq, &s);
    if (want_k)
        maps_backward(r, params, STILL_MAP_K, head, k, s.dphi_k, g->dfk_W, g->dfk_b, g->dfk_u,
                      g->dk, &s);
    scratch_free(&s);
    return STILL_OK;
}

/* ---- SPEC §6: the gating projection G = sigmoid(X Wg^T), backward ------ */
void still__ref_gate_projection_grad(int64_t batch, int64_t seq_len, int64_t hidden,
                                     int64_t heads_q, int64_t dim_v, const double *X,
                                     const double *Wg, const double *dG, double *dX,
                                     double *dWg)
{
    if (dX)
        for (int64_t i = 0; i < batch * seq_len * hidden; i++)
            dX[i] = 0.0;
    if (dWg)
        for (int64_t i = 0; i < heads_q * dim_v * hidden; i++)
            dWg[i] = 0.0;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < heads_q; h++)
            for (int64_t n = 0; n < seq_len; n++)
                for (int64_t e = 0; e < dim_v; e++) {
                    const double *x = X + (b * seq_len + n) * hidden;
                    const double *w = Wg + (h * dim_v + e) * hidden;
                    double G = still__ref_sigmoid(dot(x, w, hidden));
                    /* sigmoid' = G (1 - G) */
                    double dpre = dG[((b * heads_q + h) * seq_len + n) * dim_v + e] * G * (1.0 - G);
                    for (int64_t i = 0; i < hidden; i++) {
                        if (dX)
                            dX[(b * seq_len + n) * hidden + i] += dpre * w[i];
                        if (dWg)
                            dWg[(h * dim_v + e) * hidden + i] += dpre * x[i];
                    }
                }
}
