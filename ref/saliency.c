/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* saliency.c -- SPEC §4: the self-saliency score, and App. A.1: the
 * authors' variant. */
#include "ref.h"

#include <math.h>

#define SALIENCY_EPS 1e-8 /* SPEC §4 and App. A.1 */

/* SPEC §4: sigma_t = sum_{j in W_t} p_j log((p_j + eps) / (p~_j + eps)),
 * p the softmax over the window with t (the last row of keys), p~ the
 * softmax without it (p~_t = 0).  The logits are recomputed in each pass
 * rather than stored, so the function needs no memory. */
double still__ref_saliency_window(const still__resolved *r, const double *q_t,
                                  const double *keys, int64_t n)
{
    const int64_t d = r->shape.dim_qk;
    double m_with = -INFINITY, m_without = -INFINITY, z_with = 0.0, z_without = 0.0;
    double sigma = 0.0;

    if (n == 1)
        return INFINITY; /* W_t = {t}: no distribution without t */
    for (int64_t j = 0; j < n; j++) {
        double s = still__ref_logit(r, q_t, keys + j * d);
        m_with = fmax(m_with, s);
        if (j < n - 1)
            m_without = fmax(m_without, s);
    }
    for (int64_t j = 0; j < n; j++) {
        double s = still__ref_logit(r, q_t, keys + j * d);
        z_with += exp(s - m_with);
        if (j < n - 1)
            z_without += exp(s - m_without);
    }
    for (int64_t j = 0; j < n; j++) {
        double s = still__ref_logit(r, q_t, keys + j * d);
        double p = exp(s - m_with) / z_with;
        double p_without = j < n - 1 ? exp(s - m_without) / z_without : 0.0;
        sigma += p * log((p + SALIENCY_EPS) / (p_without + SALIENCY_EPS));
    }
    return sigma;
}

/* App. A.1: the position of the key held by slot j of token t = c·l + i,
 * or -1 when the slot is empty (chunk 0, j > i). */
static int64_t authors_slot_key(int64_t l, int64_t t, int64_t j)
{
    int64_t c = t / l, i = t % l;
    if (j <= i)
        return c * l + j;
    return c == 0 ? -1 : (c - 1) * l + j;
}

/* The logit of q_t with the key at position pos; keys [..][d] holds the
 * keys from position key0 on. */
static double authors_logit(const still__resolved *r, const double *q_t, const double *keys,
                            int64_t key0, int64_t pos)
{
    return still__ref_logit(r, q_t, keys + (pos - key0) * r->shape.dim_qk);
}

/* App. A.1: the normalizer of the softmax over the filled slots 0..last of
 * token t, a_j = e^{s_j - m} / z (slot `skip`, when >= 0, weighing 0);
 * a_j itself is recomputed on demand by authors_prob(). */
static void authors_norm(const still__resolved *r, const double *q_t, const double *keys,
                         int64_t key0, int64_t t, int64_t last, int64_t skip, double *m,
                         double *z)
{
    *m = -INFINITY;
    *z = 0.0;
    for (int64_t j = 0; j <= last; j++)
        if (j != skip)
            *m = fmax(*m, authors_logit(r, q_t, keys, key0, authors_slot_key(r->C, t, j)));
    for (int64_t j = 0; j <= last; j++)
        if (j != skip)
            *z += exp(authors_logit(r, q_t, keys, key0, authors_slot_key(r->C, t, j)) - *m);
}

static double authors_prob(const still__resolved *r, const double *q_t, const double *keys,
                           int64_t key0, int64_t t, int64_t j, int64_t skip, double m,
                           double z)
{
    if (j == skip)
        return 0.0;
    return exp(authors_logit(r, q_t, keys, key0, authors_slot_key(r->C, t, j)) - m) / z;
}

/* App. A.1: p_j = (a1_j + eps)/(1 + l·eps), p~_j = (a2_j + eps)/(1 + l·eps
 * + 1/l), p~_{l-1} := 1/l + eps, sigma_t = sum_j p_j log(p_j/(p~_j + eps)),
 * over the l slots of token t.  Token 0 has no slot without itself: +inf.
 * The empty slots of chunk 0 (a1 = a2 = 0) all give the same term, so they
 * are added in closed form: a token costs O(keys it sees), not O(l). */
double still__ref_saliency_authors(const still__resolved *r, const double *q_t,
                                   const double *keys, int64_t key0, int64_t t)
{
    const int64_t l = r->C, i = t % l;
    const int64_t last = t < l ? i : l - 1; /* the last filled slot */
    const double eps = SALIENCY_EPS;
    double m1, z1, m2, z2, sigma = 0.0;

    if (t == 0)
        return INFINITY;
    authors_norm(r, q_t, keys, key0, t, last, -1, &m1, &z1);
    authors_norm(r, q_t, keys, key0, t, last, i, &m2, &z2);
    for (int64_t j = 0; j <= last; j++) {
        double p = (authors_prob(r, q_t, keys, key0, t, j, -1, m1, z1) + eps) / (1.0 + l * eps);
        double p_without = (authors_prob(r, q_t, keys, key0, t, j, i, m2, z2) + eps) /
                           (1.0 + l * eps + 1.0 / l);
        if (j == l - 1)
            p_without = 1.0 / l + eps; /* the slot overwrite */
        sigma += p * log(p / (p_without + eps));
    }
    if (last < l - 1) { /* the empty slots last+1 .. l-1 */
        const double p = eps / (1.0 + l * eps);
        const double p_without = eps / (1.0 + l * eps + 1.0 / l);
        sigma += (double)(l - 2 - last) * (p * log(p / (p_without + eps)));
        sigma += p * log(p / (1.0 / l + eps + eps)); /* slot l-1, overwritten */
    }
    return sigma;
}

double still__ref_saliency_of(const still__resolved *r, const double *q, const double *k,
                              int64_t t)
{
    const int64_t d = r->shape.dim_qk;
    if (r->saliency == STILL_SALIENCY_AUTHORS)
        return still__ref_saliency_authors(r, q + t * d, k, 0, t);
    /* SPEC §4: W_t = {max(0, t-w+1)..t} */
    int64_t first = t - r->w + 1 > 0 ? t - r->w + 1 : 0;
    return still__ref_saliency_window(r, q + t * d, k + first * d, t - first + 1);
}

void still__ref_saliency(const still__resolved *r, const double *q, const double *k,
                         int64_t N, double *sigma)
{
    for (int64_t t = 0; t < N; t++)
        sigma[t] = still__ref_saliency_of(r, q, k, t);
}
