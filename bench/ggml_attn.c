/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * ggml_attn.c -- times ggml's CPU causal flash attention (ggml_flash_attn_ext,
 * float32 q, k, v, an explicit float16 causal mask) at the shapes of `still
 * bench`, for bench/peers.sh.  Not built by `make`: bench/ggml-peer.sh
 * compiles it against a ggml build the user provides (GGML_DIR), since
 * ggml is not a Debian package.
 *
 *   ggml_attn [--decode] N HEADS D THREADS REPS
 *
 * Prints one line "ggml N threads median_seconds min_seconds max_err", where
 * max_err is the largest |o - o_ref| over 16 query rows of every head
 * against a double-precision causal softmax computed here (a peer that
 * computes something else is not a peer).  --decode times instead one
 * decode step: a single query (position N-1) against a KV cache of N
 * tokens (no mask: it sees them all), REPS times, and prints "ggml-decode
 * N threads median_seconds min_seconds max_err" (one graph computation per
 * step, as a server's decode pays it).
 */
#include "ggml.h"
#include "ggml-cpu.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float uniform(void) /* in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

int main(int argc, char **argv)
{
    const int decode = argc > 1 && strcmp(argv[1], "--decode") == 0;
    argv += decode, argc -= decode;
    if (argc != 6) {
        fprintf(stderr, "usage: ggml_attn [--decode] N HEADS D THREADS REPS\n");
        return 2;
    }
    const int64_t N = atoll(argv[1]), H = atoll(argv[2]), D = atoll(argv[3]);
    const int threads = atoi(argv[4]), reps = atoi(argv[5]);
    if (N < 1 || H < 1 || D < 1 || threads < 1 || reps < 1 || reps > 1000)
        return 2;
    const int64_t nq = decode ? 1 : N; /* queries: the last position alone, or all */
    const size_t tensor = (size_t)(N * H * D) * sizeof(float);
    const size_t mask = decode ? 0 : (size_t)N * (size_t)N * 2;
    struct ggml_init_params ip = {4 * tensor + mask + (64u << 20), NULL, false};
    struct ggml_context *ctx = ggml_init(ip);
    if (!ctx) {
        fprintf(stderr, "ggml_attn: ggml_init failed\n");
        return 1;
    }
    /* ggml's order: ne0 = d (fastest), ne1 = tokens, ne2 = heads */
    struct ggml_tensor *q = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, D, nq, H, 1);
    struct ggml_tensor *k = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, D, N, H, 1);
    struct ggml_tensor *v = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, D, N, H, 1);
    struct ggml_tensor *m = decode ? NULL : ggml_new_tensor_4d(ctx, GGML_TYPE_F16, N, N, 1, 1);
    float *qd = q->data, *kd = k->data, *vd = v->data;
    for (int64_t i = 0; i < N * H * D; i++) {
        if (i < nq * H * D)
            qd[i] = uniform();
        kd[i] = uniform();
        vd[i] = uniform();
    }
    if (m) {
        ggml_fp16_t zero = ggml_fp32_to_fp16(0.0f), minus_inf = ggml_fp32_to_fp16(-INFINITY);
        ggml_fp16_t *md = m->data;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < N; j++)
                md[i * N + j] = j <= i ? zero : minus_inf;
    }
    const float scale = 1.0f / sqrtf((float)D);
    struct ggml_tensor *o = ggml_flash_attn_ext(ctx, q, k, v, m, scale, 0.0f, 0.0f);
    struct ggml_cgraph *g = ggml_new_graph(ctx);
    ggml_build_forward_expand(g, o);
    struct ggml_cplan plan = ggml_graph_plan(g, threads, NULL);
    void *work = plan.work_size ? malloc(plan.work_size) : NULL;
    if (plan.work_size && !work)
        return 1;
    plan.work_data = work;

    double *t = malloc((size_t)reps * sizeof *t);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (ggml_graph_compute(g, &plan) != GGML_STATUS_SUCCESS) {
            fprintf(stderr, "ggml_attn: ggml_graph_compute failed\n");
            return 1;
        }
        t[r] = now() - t0;
    }
    /* the result is [D, H, N]: row (token i, head h) at (i * H + h) * D */
    const float *od = o->data;
    double err = 0.0;
    double *p = malloc((size_t)N * sizeof *p);
    for (int64_t h = 0; h < H; h++)
        for (int64_t s = 0; s < (decode ? 1 : 16); s++) {
            const int64_t i = decode ? N - 1 : (N - 1) * s / 15, iq = decode ? 0 : i;
            double mx = -INFINITY, sum = 0.0;
            for (int64_t j = 0; j <= i; j++) {
                double dot = 0.0;
                for (int64_t e = 0; e < D; e++)
                    dot += (double)qd[(h * nq + iq) * D + e] * kd[(h * N + j) * D + e];
                p[j] = dot * scale;
                mx = p[j] > mx ? p[j] : mx;
            }
            for (int64_t j = 0; j <= i; j++)
                sum += p[j] = exp(p[j] - mx);
            for (int64_t e = 0; e < D; e++) {
                double ref = 0.0;
                for (int64_t j = 0; j <= i; j++)
                    ref += p[j] * vd[(h * N + j) * D + e];
                double diff = fabs(ref / sum - od[(iq * H + h) * D + e]);
                err = diff > err ? diff : err;
            }
        }
    qsort(t, (size_t)reps, sizeof *t, by_value);
    printf("%s %lld %d %.6f %.6f %.3g\n", decode ? "ggml-decode" : "ggml", (long long)N, threads,
           t[reps / 2], t[0], err);
    free(p);
    free(t);
    free(work);
    ggml_free(ctx);
    return 0;
}
