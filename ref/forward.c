/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* forward.c -- SPEC §5-6 for one query head: feature maps, routing and the
 * hybrid output of every query, given sigma and the selection. */
#include "ref.h"

void still__ref_head_forward(const still__resolved *r, const still_params *params,
                             int64_t head, const double *q, const double *k, const double *v,
                             const double *gate, const double *sigma, const uint8_t *sel,
                             double *phi_q, double *phi_k, uint8_t *exact, double *o)
{
    const int64_t N = r->shape.seq_len, d = r->shape.dim_qk, dv = r->shape.dim_v;
    int64_t f_q;
    const still_feature_map *fq = still__ref_map_of(r, params, STILL_MAP_Q, &f_q);
    double omega = still__ref_omega(params, head);

    still__ref_feature_rows(r, params, STILL_MAP_K, head, N, k, phi_k);
    for (int64_t t = 0; t < N; t++) {
        still__ref_feature_map(r, fq, f_q, head, q + t * d, phi_q);
        still__ref_route(r, sigma, sel, t, exact);
        still__ref_hybrid(r, t, q + t * d, k, v, phi_q, phi_k, gate ? gate + t * dv : NULL,
                          omega, exact, o + t * dv);
    }
}
