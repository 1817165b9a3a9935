/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* forward.c -- SPEC §5-6 for one query head: feature maps, routing and the
 * hybrid output of one query, and of every query, given sigma and the
 * selection.  Each query depends only on the head's inputs, sigma and the
 * selection, so the queries of a head may be computed in any order or in
 * parallel with the same bits. */
#include "ref.h"

void still__ref_query_forward(const still__resolved *r, const still_params *params,
                              int64_t head, int64_t t, const double *q, const double *k,
                              const double *v, const double *gate, const double *sigma,
                              const uint8_t *sel, const double *phi_k, double *phi_q,
                              uint8_t *exact, double *o_t)
{
    const int64_t d = r->shape.dim_qk, dv = r->shape.dim_v;
    int64_t f_q;
    const still_feature_map *fq = still__ref_map_of(r, params, STILL_MAP_Q, &f_q);

    still__ref_feature_map(r, fq, f_q, head, q + t * d, phi_q);
    still__ref_route(r, sigma, sel, t, exact);
    still__ref_hybrid(r, t, q + t * d, k, v, phi_q, phi_k, gate ? gate + t * dv : NULL,
                      still__ref_omega(params, head), exact, o_t);
}

void still__ref_head_forward(const still__resolved *r, const still_params *params,
                             int64_t head, const double *q, const double *k, const double *v,
                             const double *gate, const double *sigma, const uint8_t *sel,
                             double *phi_q, double *phi_k, uint8_t *exact, double *o)
{
    const int64_t N = r->shape.seq_len, dv = r->shape.dim_v;

    still__ref_feature_rows(r, params, STILL_MAP_K, head, N, k, phi_k);
    for (int64_t t = 0; t < N; t++)
        still__ref_query_forward(r, params, head, t, q, k, v, gate, sigma, sel, phi_k, phi_q,
                                 exact, o + t * dv);
}
