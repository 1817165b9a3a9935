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

/* App. A.1: the key held by slot j of token t = c·l + i, or -1 when the
 * slot is empty (chunk 0, j > i). */
static int64_t authors_slot_key(int64_t l, int64_t t, int64_t j)
{
    int64_t c = t / l, i = t % l;
    if (j <= i)
        return c * l + j;
    return c == 0 ? -1 : (c - 1) * l + j;
}

/* App. A.1: the normalizer of the softmax over the l slots of token t,
 * a_j = e^{s_j - m} / z, empty slots (and slot `skip`, when >= 0) weighing
 * 0; a_j itself is recomputed on demand by authors_prob(). */
static void authors_norm(const still__resolved *r, const double *q_t, const double *k,
                         int64_t t, int64_t skip, double *m, double *z)
{
    const int64_t l = r->C, d = r->shape.dim_qk;
    *m = -INFINITY;
    *z = 0.0;
    for (int64_t j = 0; j < l; j++) {
        int64_t key = authors_slot_key(l, t, j);
        if (key >= 0 && j != skip)
            *m = fmax(*m, still__ref_logit(r, q_t, k + key * d));
    }
    for (int64_t j = 0; j < l; j++) {
        int64_t key = authors_slot_key(l, t, j);
        if (key >= 0 && j != skip)
            *z += exp(still__ref_logit(r, q_t, k + key * d) - *m);
    }
}

static double authors_prob(const still__resolved *r, const double *q_t, const double *k,
                           int64_t t, int64_t j, int64_t skip, double m, double z)
{
    int64_t key = authors_slot_key(r->C, t, j);
    if (key < 0 || j == skip)
        return 0.0;
    return exp(still__ref_logit(r, q_t, k + key * r->shape.dim_qk) - m) / z;
}

/* App. A.1: p_j = (a1_j + eps)/(1 + l·eps), p~_j = (a2_j + eps)/(1 + l·eps
 * + 1/l), p~_{l-1} := 1/l + eps, sigma_t = sum_j p_j log(p_j/(p~_j + eps)).
 * Token 0 has no slot without itself: +inf. */
static double authors_saliency(const still__resolved *r, const double *q, const double *k,
                               int64_t t)
{
    const int64_t l = r->C, i = t % l, d = r->shape.dim_qk;
    const double eps = SALIENCY_EPS;
    const double *q_t = q + t * d;
    double m1, z1, m2, z2, sigma = 0.0;

    if (t == 0)
        return INFINITY;
    authors_norm(r, q_t, k, t, -1, &m1, &z1);
    authors_norm(r, q_t, k, t, i, &m2, &z2);
    for (int64_t j = 0; j < l; j++) {
        double p = (authors_prob(r, q_t, k, t, j, -1, m1, z1) + eps) / (1.0 + l * eps);
        double p_without = (authors_prob(r, q_t, k, t, j, i, m2, z2) + eps) /
                           (1.0 + l * eps + 1.0 / l);
        if (j == l - 1)
            p_without = 1.0 / l + eps; /* the slot overwrite */
        sigma += p * log(p / (p_without + eps));
    }
    return sigma;
}

void still__ref_saliency(const still__resolved *r, const double *q, const double *k,
                         int64_t N, double *sigma)
{
    const int64_t d = r->shape.dim_qk;
    for (int64_t t = 0; t < N; t++) {
        if (r->saliency == STILL_SALIENCY_AUTHORS) {
            sigma[t] = authors_saliency(r, q, k, t);
        } else { /* SPEC §4: W_t = {max(0, t-w+1)..t} */
            int64_t first = t - r->w + 1 > 0 ? t - r->w + 1 : 0;
            sigma[t] = still__ref_saliency_window(r, q + t * d, k + first * d, t - first + 1);
        }
    }
}
