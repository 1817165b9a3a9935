/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* route_terraced.c -- SPEC §14: routing `terraced` (LoLCATs' block
 * window): for query t in block b = t / w, E_t = positions
 * max(0, (b-1) w) .. t, the previous block and the current one. */
#include "ref.h"

void still__ref_route_terraced(const still__resolved *r, const double *sigma,
                               const uint8_t *sel, int64_t t, uint8_t *exact)
{
    (void)sigma, (void)sel;
    const int64_t b = t / r->w, first = b >= 1 ? (b - 1) * r->w : 0;
    for (int64_t j = 0; j <= t; j++)
        exact[j] = j >= first;
}
