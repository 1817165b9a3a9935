/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* route_saliency.c -- SPEC §5-6: the exact set of STILL's routing (and of
 * `all`, `none`: k = C, 0): the top-k of split chunks, minus the cap's
 * evictions, and the raw chunks not yet split. */
#include "ref.h"

/* SPEC §5 cap: a cached token i outranks j when its sigma is larger, or
 * equal and i is the newer (the older leaves first). */
static int keeps_before(const double *sigma, int64_t i, int64_t j)
{
    return sigma[i] > sigma[j] || (sigma[i] == sigma[j] && i > j);
}

/* SPEC §5 cap: of the cached tokens (exact[j] = 1, j < end), only the
 * max_sel that rank first stay; the others fold into the linear set.
 * Keeping the max_sel best of all selected tokens at once equals evicting
 * chunk by chunk, because the order is strict and total: the best max_sel
 * of (best max_sel of A) ∪ B are the best max_sel of A ∪ B. */
static void apply_cap(const still__resolved *r, const double *sigma, int64_t end,
                      uint8_t *exact)
{
    int64_t cached = 0;
    for (int64_t j = 0; j < end; j++)
        cached += exact[j];
    if (r->max_sel == 0 || cached <= r->max_sel)
        return;
    for (int64_t j = 0; j < end; j++) {
        if (exact[j] != 1)
            continue;
        int64_t rank = 0;
        for (int64_t i = 0; i < end; i++)
            rank += (exact[i] != 0) && keeps_before(sigma, i, j);
        if (rank >= r->max_sel)
            exact[j] = 2; /* evicted; cleared after every rank is known */
    }
    for (int64_t j = 0; j < end; j++)
        exact[j] = exact[j] == 1;
}

void still__ref_route_saliency(const still__resolved *r, const double *sigma,
                               const uint8_t *sel, int64_t t, uint8_t *exact)
{
    /* SPEC §6: split chunks are c' <= c - L; for L = 0 the current chunk
     * is not split (incomplete) but linear, so split ones are c' <= c - 1 */
    const int64_t split_end = still__split_end(r, t); /* first unsplit position, <= t */

    for (int64_t j = 0; j <= t; j++) {
        if (j < split_end)
            exact[j] = sel[j] != 0; /* the cache S_0 ∪ ... before the cap */
        else
            exact[j] = r->L > 0; /* chunks c-L+1..c, or the linear current chunk */
    }
    apply_cap(r, sigma, split_end, exact);
}
