/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* nsa_select.c -- SPEC §17: the block selection of routing nsa, the S
 * candidate blocks of highest score for one query of a GQA group. */
#include "ref.h"

/* Blocks 0, floor(t/BS) and floor(t/BS) - 1 are forced (score 1). */
static int forced(const still__resolved *r, int64_t t, int64_t c)
{
    const int64_t current = t / r->nsa_block;
    return c == 0 || c == current || c == current - 1;
}

/* The score of candidate c: 1 when forced, else the group's mean
 * compressed weight p_{t,c} (0 for a block not visible). */
static double score_of(const still__resolved *r, int64_t t, const double *p, int64_t c)
{
    if (forced(r, t, c))
        return 1.0;
    return c < still__ref_nsa_visible(r, t) ? p[c] : 0.0;
}

int64_t still__ref_nsa_select(const still__resolved *r, int64_t t, const double *p,
                              uint8_t *chosen, int64_t *blocks)
{
    const int64_t candidates = t / r->nsa_block + 1;
    const int64_t S = r->nsa_topk < candidates ? r->nsa_topk : candidates;
    int64_t n = 0;

    for (int64_t c = 0; c < candidates; c++)
        chosen[c] = 0;
    /* S rounds, each taking the best block left; scanning upwards with a
       strict comparison keeps the smaller block among equal scores */
    for (int64_t round = 0; round < S; round++) {
        int64_t best = -1;
        double best_score = 0.0;
        for (int64_t c = 0; c < candidates; c++) {
            if (chosen[c])
                continue;
            const double sc = score_of(r, t, p, c);
            if (best < 0 || sc > best_score) {
                best = c;
                best_score = sc;
            }
        }
        chosen[best] = 1;
    }
    for (int64_t c = 0; c < candidates; c++)
        if (chosen[c])
            blocks[n++] = c;
    return n;
}
