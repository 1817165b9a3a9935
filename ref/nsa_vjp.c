/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* nsa_vjp.c -- SPEC §18 for routing nsa (SPEC §17): the backward of one
 * query's gated sum of its three branches, the block selection held fixed.
 * Each branch is a softmax attention of q_t over a set of rows (the
 * compressed blocks, the positions of the selected blocks, the last w
 * positions); its backward is the softmax's:
 *
 *   p_i = softmax_i(scale <q_t, K_i>),  y = sum_i p_i V_i,
 *   dV_i += p_i dy,  ds_i = p_i (<dy, V_i> - <dy, y>),
 *   dq_t += scale sum_i ds_i K_i,  dK_i += scale ds_i q_t,
 *
 * with dy = g_branch dO_t; the gates' gradients are <dO_t, y_branch>.  The
 * compressed rows are block means, so their gradients are spread back as
 * 1/BS of the block's over each of its BS positions (by the caller). */
#include "ref.h"

#include <math.h>

/* The branch over the n rows idx of K [.][d], V [.][dv]: y [dv] (0 for
 * n = 0) and, for dy [dv], the gradients added into dq [d] and the same
 * rows of dK, dV.  p [n] is scratch. */
static void branch_vjp(const still__resolved *r, const double *q, const double *K,
                       const double *V, const int64_t *idx, int64_t n, const double *dy,
                       double *y, double *p, double *dq, double *dK, double *dV)
{
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v;
    double m = -INFINITY, den = 0.0, dy_y = 0.0;

    for (int64_t e = 0; e < dv; e++)
        y[e] = 0.0;
    if (n == 0)
        return;
    for (int64_t i = 0; i < n; i++) {
        p[i] = still__ref_logit(r, q, K + idx[i] * d);
        m = fmax(m, p[i]);
    }
    for (int64_t i = 0; i < n; i++)
        den += p[i] = exp(p[i] - m);
    for (int64_t i = 0; i < n; i++) {
        p[i] /= den;
        for (int64_t e = 0; e < dv; e++)
            y[e] += p[i] * V[idx[i] * dv + e];
    }
    for (int64_t e = 0; e < dv; e++)
        dy_y += dy[e] * y[e];
    for (int64_t i = 0; i < n; i++) {
        const double *Ki = K + idx[i] * d, *Vi = V + idx[i] * dv;
        double dy_v = 0.0;
        for (int64_t e = 0; e < dv; e++) {
            dy_v += dy[e] * Vi[e];
            dV[idx[i] * dv + e] += p[i] * dy[e];
        }
        const double ds = p[i] * (dy_v - dy_y) * r->scale;
        for (int64_t e = 0; e < d; e++) {
            dq[e] += ds * Ki[e];
            dK[idx[i] * d + e] += ds * q[e];
        }
    }
}

void still__ref_nsa_row_vjp(const still__resolved *r, int64_t t, const double *q_t,
                            const double *k, const double *v, const double *k_cmp,
                            const double *v_cmp, const int64_t *blocks, int64_t n,
                            const double *gates_t, const double *do_t, int64_t *idx,
                            double *scratch, double *o_t, double *dgates_t, double *dq_t,
                            double *dk, double *dv, double *dk_cmp, double *dv_cmp)
{
    const int64_t BS = r->nsa_block, dvv = r->shape.dim_v;
    const double gate[3] = {gates_t ? gates_t[0] : 1.0, gates_t ? gates_t[1] : 1.0,
                            gates_t ? gates_t[2] : 1.0};
    double *dy = scratch, *y = scratch + dvv, *p = scratch + 2 * dvv;
    int64_t m;

    for (int64_t e = 0; e < dvv; e++)
        o_t[e] = 0.0;
    for (int b = 0; b < 3; b++) {
        if (b == 0) { /* compressed: the visible blocks */
            m = still__ref_nsa_visible(r, t);
            for (int64_t c = 0; c < m; c++)
                idx[c] = c;
        } else if (b == 1) { /* selected: positions j <= t of the chosen blocks */
            m = 0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = blocks[i] * BS; j < (blocks[i] + 1) * BS && j <= t; j++)
                    idx[m++] = j;
        } else { /* sliding: the last w positions */
            const int64_t first = t - r->w + 1 > 0 ? t - r->w + 1 : 0;
            m = 0;
            for (int64_t j = first; j <= t; j++)
                idx[m++] = j;
        }
        for (int64_t e = 0; e < dvv; e++)
            dy[e] = gate[b] * do_t[e];
        if (b == 0)
            branch_vjp(r, q_t, k_cmp, v_cmp, idx, m, dy, y, p, dq_t, dk_cmp, dv_cmp);
        else
            branch_vjp(r, q_t, k, v, idx, m, dy, y, p, dq_t, dk, dv);
        double dg = 0.0;
        for (int64_t e = 0; e < dvv; e++) {
            dg += do_t[e] * y[e];
            o_t[e] += gate[b] * y[e];
        }
        dgates_t[b] = dg;
    }
}
