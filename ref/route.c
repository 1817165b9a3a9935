/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* route.c -- SPEC §6: the exact set of query t under the configured
 * routing, from the table of the routings' exact sets (ref/route_*.c). */
#include "ref.h"

typedef void (*exact_set_fn)(const still__resolved *r, const double *sigma, const uint8_t *sel,
                             int64_t t, uint8_t *exact);

static const exact_set_fn exact_sets[] = {
    [STILL_ROUTING_SALIENCY] = still__ref_route_saliency,
    [STILL_ROUTING_WINDOW] = still__ref_route_window,
    [STILL_ROUTING_ALL] = still__ref_route_saliency,
    [STILL_ROUTING_NONE] = still__ref_route_saliency,
    [STILL_ROUTING_SINKS] = still__ref_route_sinks,
    [STILL_ROUTING_TERRACED] = still__ref_route_terraced,
};

void still__ref_route(const still__resolved *r, const double *sigma, const uint8_t *sel,
                      int64_t t, uint8_t *exact)
{
    /* r was resolved: its routing is one of the table's */
    exact_sets[r->routing](r, sigma, sel, t, exact);
}
