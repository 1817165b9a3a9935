/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* select.c -- SPEC §5: top-k selection inside every complete chunk. */
#include "ref.h"

/* SPEC §5: token i ranks before token j when its sigma is larger, or equal
 * and i is the smaller position.  +inf (token 0) ranks before any finite
 * score; two +inf tie and go by position. */
static int ranks_before(const double *sigma, int64_t i, int64_t j)
{
    return sigma[i] > sigma[j] || (sigma[i] == sigma[j] && i < j);
}

void still__ref_select(const still__resolved *r, const double *sigma, int64_t N, uint8_t *sel)
{
    const int64_t C = r->C, complete = N / C;
    for (int64_t j = 0; j < N; j++)
        sel[j] = 0;
    for (int64_t c = 0; c < complete; c++) {
        for (int64_t j = c * C; j < (c + 1) * C; j++) {
            int64_t rank = 0; /* tokens of the chunk ranked before j */
            for (int64_t i = c * C; i < (c + 1) * C; i++)
                rank += ranks_before(sigma, i, j);
            sel[j] = rank < r->k;
        }
    }
}
