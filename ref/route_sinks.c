/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* route_sinks.c -- SPEC §13: routing `sinks` (attention sinks + a sliding
 * window): E_t = the first s positions and the last w positions. */
#include "ref.h"

void still__ref_route_sinks(const still__resolved *r, const double *sigma,
                            const uint8_t *sel, int64_t t, uint8_t *exact)
{
    (void)sigma, (void)sel;
    for (int64_t j = 0; j <= t; j++)
        exact[j] = j < r->sinks || j > t - r->w;
}
