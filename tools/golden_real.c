/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * golden_real.c -- the cases of `still golden --suite real` and the inputs
 * only they have: the shapes GPU ports run (head dims 64 and 128, N up to
 * 16384, grouped-query attention 32/8), inputs rounded through bfloat16
 * and float16, tiny-lm's real activations, layout BNHD (a twin of a BHND
 * case with the same values), and the decode split points.  cmd_golden.c
 * writes, hashes, records and verifies them as it does the small suite,
 * adding dO and the VJP's gradients to every case.
 */
#include "golden.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const golden_real_case real_cases[] = {
    {{"long16k_d64", "N=16384, d=64, one head, STILL's defaults, bf16-rounded inputs",
      1, 1, 1, 16384, 64, 64, "", P_NONE, 0}, {GOLDEN_ROUND_BF16, 0, STILL_LAYOUT_BHND, NULL}},
    {{"gqa32x8_d128", "GQA 32 query / 8 kv heads, d=128, N=512, f16-rounded inputs",
      1, 32, 8, 512, 128, 128, "--chunk 64 --topk 4", P_NONE, 0},
     {GOLDEN_ROUND_F16, 0, STILL_LAYOUT_BHND, NULL}},
    {{"gqa32x8_d128_kv", "GQA 32/8, d=128, N=256, one selection per kv head, bf16-rounded",
      1, 32, 8, 256, 128, 128, "--chunk 64 --topk 4 --select-per-kv", P_NONE, 0},
     {GOLDEN_ROUND_BF16, 0, STILL_LAYOUT_BHND, NULL}},
    {{"cap_d128", "N=2048, d=128, GQA 2/1, a cap of 256 on the selected cache, f16-rounded",
      1, 2, 1, 2048, 128, 128, "--chunk 64 --topk 4 --cap 256", P_NONE, 0},
     {GOLDEN_ROUND_F16, 0, STILL_LAYOUT_BHND, NULL}},
    {{"npmap_d128", "d=128, N=1024, GQA 4/2, B=2, non-identity NP-Maps f=64 with bias and "
      "Householder, separate fk, bf16-rounded", 2, 4, 2, 1024, 128, 128,
      "--chunk 64 --topk 4", P_FULL, 64}, {GOLDEN_ROUND_BF16, 0, STILL_LAYOUT_BHND, NULL}},
    {{"window_d64", "window routing w=256, omega per head, d=64, N=2048, GQA 4/2, "
      "f16-rounded", 1, 4, 2, 2048, 64, 64, "--routing window --window 256", P_WINDOW, 0},
     {GOLDEN_ROUND_F16, 0, STILL_LAYOUT_BHND, NULL}},
    {{"layout_bhnd", "GQA 8/2, d=64, N=1024, k=8, bf16-rounded, layout BHND (twin of "
      "layout_bnhd)", 1, 8, 2, 1024, 64, 64, "--chunk 64 --topk 8", P_NONE, 0},
     {GOLDEN_ROUND_BF16, 0, STILL_LAYOUT_BHND, "layout"}},
    {{"layout_bnhd", "the values of layout_bhnd in layout BNHD [B,N,H,x] (--layout bnhd): "
      "o and the gradients are layout_bhnd's transposed", 1, 8, 2, 1024, 64, 64,
      "--chunk 64 --topk 8", P_NONE, 0}, {GOLDEN_ROUND_BF16, 0, STILL_LAYOUT_BNHD, "layout"}},
    {{"tinylm_L2", "tiny-lm layer 2: real q, k, v (float16 activations, 6/2 heads, d=64, "
      "N=2048), STILL's defaults", 1, 6, 2, 2048, 64, 64, "", P_NONE, 0},
     {GOLDEN_ROUND_F16, 2, STILL_LAYOUT_BHND, NULL}},
    {{"tinylm_L5", "tiny-lm layer 5: real q, k, v (float16 activations, 6/2 heads, d=64, "
      "N=2048), C=32, k=4", 1, 6, 2, 2048, 64, 64, "--chunk 32 --topk 4", P_NONE, 0},
     {GOLDEN_ROUND_F16, 5, STILL_LAYOUT_BHND, NULL}},
};
#define REAL_NCASES ((int)(sizeof real_cases / sizeof *real_cases))

const golden_real_case *golden_real_cases(int64_t max_n, int *n)
{
    static golden_real_case capped[REAL_NCASES];
    for (int i = 0; i < REAL_NCASES; i++) {
        capped[i] = real_cases[i];
        if (max_n > 0 && capped[i].c.N > max_n)
            capped[i].c.N = max_n;
    }
    *n = REAL_NCASES;
    return capped;
}

/* ---- rounding ------------------------------------------------------------------ */

/* bfloat16: the upper 16 bits of the float32, rounded to nearest even. */
static float round_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u)
        return x; /* inf, nan */
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, sizeof u);
    return x;
}

/* float16: 11 significant bits down to 2^-14, then steps of 2^-24; exact
 * power-of-two scalings and nearbyint (to nearest even in the default
 * rounding mode). */
static float round_f16(float x)
{
    double v = x;
    if (v == 0.0 || !isfinite(v))
        return x;
    int e = ilogb(v);
    if (e < -14)
        e = -14;
    double q = ldexp(1.0, e - 10);
    double r = nearbyint(v / q) * q;
    return (float)(fabs(r) > 65504.0 ? copysign(INFINITY, r) : r);
}

void golden_round(float *x, int64_t n, int round)
{
    for (int64_t i = 0; i < n && round; i++)
        x[i] = round == GOLDEN_ROUND_BF16 ? round_bf16(x[i]) : round_f16(x[i]);
}

/* ---- tiny-lm's activations ---------------------------------------------------- */

int golden_tinylm_load(const char *cmd, int layer, int which, int64_t H, int64_t N, int64_t D,
                       float *x)
{
    static const char *const names[] = {"q", "k", "v"};
    char path[4096], err[STILL__ERRLEN];
    still__array a;
    float *f = NULL;

    snprintf(path, sizeof path, "%s/tiny-lm/L%d_%s.npy", tool_data_dir(), layer, names[which]);
    if (still__npy_read(path, &a, err, sizeof err))
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s", err);
    if (a.ndim != 4 || a.shape[0] != 1 || a.shape[1] != H || a.shape[2] < N ||
        a.shape[3] != D) {
        still__array_free(&a);
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: expected shape [1,%lld,>=%lld,%lld]", path,
                         (long long)H, (long long)N, (long long)D);
    }
    const int64_t Nf = a.shape[2];
    int rc = still__array_to_f32(&a, &f);
    still__array_free(&a);
    if (rc)
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: %s", path, still_strerror(rc));
    for (int64_t h = 0; h < H; h++) /* the first N tokens of every head */
        memcpy(x + h * N * D, f + h * Nf * D, (size_t)(N * D) * sizeof *x);
    free(f);
    return TOOL_EXIT_OK;
}

/* ---- layout and split points ---------------------------------------------------- */

void golden_to_bnhd(const float *x, int64_t B, int64_t H, int64_t N, int64_t D, float *y)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t n = 0; n < N; n++)
                memcpy(y + ((b * N + n) * H + h) * D, x + ((b * H + h) * N + n) * D,
                       (size_t)D * sizeof *y);
}

int golden_split_points(int64_t N, int64_t C, int64_t *sp)
{
    int n = 0;
    const int64_t half = N / 2 / C * C;
    if (half > 0)
        sp[n++] = half;
    if (half + C / 2 + 1 < N - 1)
        sp[n++] = half + C / 2 + 1;
    if (N - 1 > 0 && (n == 0 || sp[n - 1] != N - 1))
        sp[n++] = N - 1;
    return n;
}
