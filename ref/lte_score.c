/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* lte_score.c -- SPEC §15: the retention score r_j of learned token
 * eviction, a small dilated convolution network over the token axis of one
 * kv head: Y_l = silu(conv1d(Y_{l-1})), kernel 3, "same" zero padding, then
 * z_j = <p, Y_n[j]> + p0 and r_j = sigmoid(z_j) - 1/2. */
#include "ref.h"

static double silu(double x)
{
    return x * still__ref_sigmoid(x);
}

int64_t still__ref_lte_width(const still_lte_params *p)
{
    int64_t c = 0;
    for (int64_t l = 0; l <= p->layers; l++)
        c = p->channels[l] > c ? p->channels[l] : c;
    return c;
}

int64_t still__ref_lte_margin(const still_lte_params *p, const int64_t *dilation)
{
    int64_t m = 0;
    for (int64_t l = 0; l < p->layers; l++)
        m = still__sat_add(m, dilation[l]);
    return m;
}

/* One layer: out [N][co] = silu(b + sum_i sum_tap W[o][i][tap] in[j+(tap-1)δ][i]),
 * tap 0 reading j-δ, tap 1 j, tap 2 j+δ; positions outside 0..N-1 read 0. */
static void conv_layer(const double *W, const double *b, int64_t ci, int64_t co, int64_t delta,
                       int64_t N, const double *in, double *out)
{
    for (int64_t j = 0; j < N; j++)
        for (int64_t o = 0; o < co; o++) {
            double acc = b[o];
            for (int tap = 0; tap < 3; tap++) {
                /* j + (tap-1)·δ without overflow: δ may be huge */
                if ((tap == 0 && j < delta) || (tap == 2 && delta > N - 1 - j))
                    continue;
                const int64_t src = tap == 0 ? j - delta : tap == 1 ? j : j + delta;
                for (int64_t i = 0; i < ci; i++)
                    acc += W[(o * ci + i) * 3 + tap] * in[src * ci + i];
            }
            out[j * co + o] = silu(acc);
        }
}

void still__ref_lte_score(const still_lte_params *p, const int64_t *dilation, int64_t head,
                          int64_t N, const double *X, double *scratch, double *score)
{
    const int64_t width = still__ref_lte_width(p);
    double *buf[2] = {scratch, scratch + N * width};
    const double *in = X;

    for (int64_t l = 0; l < p->layers; l++) {
        const int64_t ci = p->channels[l], co = p->channels[l + 1];
        conv_layer(p->conv_W[l] + head * co * ci * 3, p->conv_b[l] + head * co, ci, co,
                   dilation[l], N, in, buf[l % 2]);
        in = buf[l % 2];
    }
    const int64_t cn = p->channels[p->layers];
    const double *proj = p->proj_W + head * cn;
    for (int64_t j = 0; j < N; j++) {
        double z = p->proj_b[head];
        for (int64_t c = 0; c < cn; c++)
            z += proj[c] * in[j * cn + c];
        score[j] = still__ref_sigmoid(z) - 0.5;
    }
}
