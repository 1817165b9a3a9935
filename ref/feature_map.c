/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* feature_map.c -- SPEC §2: the Norm-Preserved feature map (NP-Map). */
#include "ref.h"

#include <math.h>

static double norm2(const double *x, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += x[i] * x[i];
    return sqrt(s);
}

/* Softmax of x [n] in place, the maximum subtracted first. */
static void softmax_inplace(double *x, int64_t n)
{
    double m = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, x[i]);
    for (int64_t i = 0; i < n; i++) {
        x[i] = exp(x[i] - m);
        sum += x[i];
    }
    for (int64_t i = 0; i < n; i++)
        x[i] /= sum;
}

/* SPEC §2 steps 1-2: z = W x' + b, x' = x - 2<x,û>û with
 * û = u / max(||u||, 1e-6).  x' is never stored: x'_i = x_i - 2a·û_i with
 * a = <x,û>.  W == NULL is the identity (f = d). */
static void preactivation(const still_feature_map *fm, int64_t f, int64_t d, int64_t head,
                          const double *x, double *z)
{
    const double *W = fm && fm->W ? fm->W + head * f * d : NULL;
    const double *b = fm && fm->b ? fm->b + head * f : NULL;
    const double *u = fm && fm->u ? fm->u + head * d : NULL;
    double inv_u = 0.0, a = 0.0;

    if (u) {
        inv_u = 1.0 / fmax(norm2(u, d), 1e-6);
        for (int64_t i = 0; i < d; i++)
            a += x[i] * u[i] * inv_u;
    }
    for (int64_t o = 0; o < f; o++) {
        double acc = 0.0;
        for (int64_t i = 0; i < d; i++) {
            double xr = u ? x[i] - 2.0 * a * u[i] * inv_u : x[i];
            acc += (W ? W[o * d + i] : (double)(o == i)) * xr;
        }
        z[o] = acc + (b ? b[o] : 0.0);
    }
}

void still__ref_feature_map(const still__resolved *r, const still_feature_map *fm,
                            int64_t f, int64_t head, const double *x, double *phi)
{
    const int64_t d = r->shape.dim_qk;
    double *z = phi; /* z and ẑ live in the first f entries of phi */

    preactivation(fm, f, d, head, x, z);
    if (r->npmap) { /* SPEC §2 step 3: ||ẑ|| = ||x|| */
        double gain = norm2(x, d) / fmax(norm2(z, f), 1e-12);
        for (int64_t o = 0; o < f; o++)
            z[o] *= gain;
    }
    switch (r->act) { /* SPEC §2 step 4 */
    case STILL_ACT_HEDGEHOG:
        for (int64_t o = 0; o < f; o++)
            phi[f + o] = -z[o];
        softmax_inplace(phi, f);
        softmax_inplace(phi + f, f);
        break;
    case STILL_ACT_SOFTMAX:
        softmax_inplace(phi, f);
        break;
    case STILL_ACT_ELU1: /* elu(z) + 1 = z + 1 for z > 0, e^z otherwise */
        for (int64_t o = 0; o < f; o++)
            phi[o] = z[o] > 0.0 ? z[o] + 1.0 : exp(z[o]);
        break;
    default: /* STILL_ACT_RELU */
        for (int64_t o = 0; o < f; o++)
            phi[o] = fmax(z[o], 0.0);
        break;
    }
    for (int64_t o = 0; o < r->m; o++)
        phi[o] = fmax(phi[o], 1e-12);
}

const still_feature_map *still__ref_map_of(const still__resolved *r, const still_params *params,
                                           int which, int64_t *f)
{
    *f = which == STILL_MAP_K ? r->f_k : r->f_q;
    if (!params)
        return NULL;
    return which == STILL_MAP_K && !params->fk_tied ? &params->fk : &params->fq;
}

void still__ref_feature_rows(const still__resolved *r, const still_params *params, int which,
                             int64_t head, int64_t n, const double *x, double *phi)
{
    int64_t f;
    const still_feature_map *fm = still__ref_map_of(r, params, which, &f);
    for (int64_t i = 0; i < n; i++)
        still__ref_feature_map(r, fm, f, head, x + i * r->shape.dim_qk, phi + i * r->m);
}
