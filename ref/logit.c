/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* logit.c -- SPEC §0: the attention logit s(t,j) = scale * <q_t, k_j>. */
#include "ref.h"

double still__ref_logit(const still__resolved *r, const double *q_t, const double *k_j)
{
    double dot = 0.0;
    for (int64_t i = 0; i < r->shape.dim_qk; i++)
        dot += q_t[i] * k_j[i];
    return r->scale * dot;
}
