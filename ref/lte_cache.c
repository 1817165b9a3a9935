/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* lte_cache.c -- SPEC §15: the streaming cache of learned token eviction
 * (s sinks, the window of the last w + 1 positions, at most b retained
 * tokens with min-replacement), as decode holds it, for every query. */
#include "ref.h"

/* The smallest-scored retained token before position j (among equal
 * scores the older), -1 when none is retained. */
static int64_t weakest_retained(const still__resolved *r, const double *score,
                                const int64_t *evicted_at, int64_t j)
{
    int64_t weakest = -1;
    for (int64_t i = r->sinks; i < j; i++)
        if (evicted_at[i] == INT64_MAX && (weakest < 0 || score[i] < score[weakest]))
            weakest = i; /* strict <: the first (older) of equal scores stays chosen */
    return weakest;
}

void still__ref_lte_cache(const still__resolved *r, const double *score, int64_t N,
                          int64_t *evicted_at)
{
    int64_t retained = 0;
    for (int64_t j = 0; j < N; j++)
        evicted_at[j] = INT64_MAX;
    /* position j >= s leaves the window at query t = j + w + 1 */
    for (int64_t j = r->sinks; j < N; j++) {
        const int64_t t = still__sat_add(j, still__sat_add(r->w, 1));
        if (t > N - 1)
            break; /* no later query: j is still in the window */
        if (score[j] <= 0.0) {
            evicted_at[j] = t;
        } else if (retained < r->budget) {
            retained++;
        } else {
            const int64_t weakest = weakest_retained(r, score, evicted_at, j);
            if (weakest >= 0 && score[weakest] < score[j])
                evicted_at[weakest] = t; /* j takes its place */
            else
                evicted_at[j] = t;
        }
    }
}

void still__ref_lte_exact(const int64_t *evicted_at, int64_t t, uint8_t *exact)
{
    for (int64_t j = 0; j <= t; j++)
        exact[j] = evicted_at[j] > t;
}

void still__ref_lte_retained(const still__resolved *r, const int64_t *evicted_at, int64_t N,
                             uint8_t *retained)
{
    for (int64_t j = 0; j < N; j++)
        retained[j] = j >= r->sinks && evicted_at[j] == INT64_MAX &&
                      still__sat_add(j, still__sat_add(r->w, 1)) <= N - 1;
}
