/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* route_window.c -- SPEC §6: routing `window` (LoLCATs' sliding window):
 * E_t = the last w positions, t included. */
#include "ref.h"

void still__ref_route_window(const still__resolved *r, const double *sigma,
                             const uint8_t *sel, int64_t t, uint8_t *exact)
{
    (void)sigma, (void)sel;
    for (int64_t j = 0; j <= t; j++)
        exact[j] = j > t - r->w;
}
