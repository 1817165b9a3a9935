/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * bench_kernels.c -- one core, the products and loops of the fast path at
 * their real shapes (d = dv = 128, C = 64 queries, 256-key tiles, f = 128,
 * m = 256): our kernels of every ISA this CPU runs against cblas_sgemm on
 * the same shapes.  This is the measurement behind "own kernels, not BLAS,
 * inside the driver" (lib/driver.c, lib/fast_teacher.c).  Run it with
 * OPENBLAS_NUM_THREADS=1 (bench/run.sh does) so both sides use one core;
 * OPENBLAS_CORETYPE=SkylakeX selects OpenBLAS's AVX-512 kernels.
 */
#define _POSIX_C_SOURCE 200809L
#include "fast.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *rand_floats(size_t n, uint64_t seed)
{
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = (float)((double)(seed >> 40) / (double)(1 << 24)) - 0.5f;
    }
    return p;
}

/* One product C[M][N] (+)= A(i,p) B[p][N]: A row-major [M][K] (a_t = 0) or
 * read transposed from [K][M] (a_t = 1), as the driver uses it. */
typedef struct product {
    const char *name;
    int M, N, K, a_t, acc;
} product;

static const product products[] = {
    {"logits  keys x queries (256x64x128)", 256, 64, 128, 0, 0},
    {"P V     queries x dv  (64x128x256)", 64, 128, 256, 1, 1},
    {"W x     NP-Map        (64x128x128)", 64, 128, 128, 0, 0},
    {"phi S   linear read   (64x128x256)", 64, 128, 256, 0, 0},
    {"fold    S += phi^T V  (256x128x64)", 256, 128, 64, 1, 1},
};

/* Seconds per call, best of 5 batches of about 0.1 s. */
static double time_calls(void (*call)(void *), void *arg)
{
    double best = 1e30;
    int n = 1;
    for (;;) { /* calibrate */
        double t0 = now();
        for (int i = 0; i < n; i++)
            call(arg);
        if (now() - t0 > 0.02 || n > (1 << 24))
            break;
        n *= 2;
    }
    n = n * 5 > 1 ? n * 5 : 1;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        for (int i = 0; i < n; i++)
            call(arg);
        double t = (now() - t0) / n;
        best = t < best ? t : best;
    }
    return best;
}

typedef struct gemm_arg {
    const product *p;
    const still__kernels *K;
    float *A, *B, *C;
} gemm_arg;

static void call_ours(void *v)
{
    gemm_arg *g = v;
    const product *p = g->p;
    if (p->a_t)
        g->K->gemm(p->M, p->N, p->K, g->A, 1, p->M, g->B, p->N, g->C, p->N, p->acc);
    else
        g->K->gemm(p->M, p->N, p->K, g->A, p->K, 1, g->B, p->N, g->C, p->N, p->acc);
}

static void call_blas(void *v)
{
    gemm_arg *g = v;
    const product *p = g->p;
    cblas_sgemm(CblasRowMajor, p->a_t ? CblasTrans : CblasNoTrans, CblasNoTrans, p->M, p->N,
                p->K, 1.0f, g->A, p->a_t ? p->M : p->K, g->B, p->N, p->acc ? 1.0f : 0.0f, g->C,
                p->N);
}

typedef struct loop_arg {
    const still__kernels *K;
    float *S, *S0, *m, *l, *alpha, *X, *phi, *sig;
    int which;
} loop_arg;

static void call_loop(void *v)
{
    loop_arg *a = v;
    switch (a->which) {
    case 0: /* one online-softmax tile: 256 keys x 64 queries */
        memcpy(a->S, a->S0, 256 * 64 * sizeof(float));
        for (int t = 0; t < 64; t++)
            a->m[t] = 0.0f, a->l[t] = 1.0f;
        a->K->softmax_cols(256, 64, a->S, 64, a->m, a->l, a->alpha);
        break;
    case 1: /* saliency of 64 queries, w = 64: logits of 127 keys */
        a->K->saliency_cols(127, 64, a->S0, 64, 0, 63, 64, a->sig);
        break;
    default: /* NP-Map hedgehog of 64 rows, f = d = 128 */
        a->K->npmap_rows(64, 128, 128, STILL_ACT_HEDGEHOG, 1, a->X, 128, a->X, 128, a->phi, 256);
        break;
    }
}

int main(void)
{
    const int all[] = {STILL_ISA_GENERIC, STILL_ISA_AVX2, STILL_ISA_AVX512, STILL_ISA_NEON};
    float *A = rand_floats(256 * 256, 1), *B = rand_floats(256 * 128, 2);
    float *C = rand_floats(256 * 128, 3), *S0 = rand_floats(256 * 64, 4);
    float *S = malloc(256 * 64 * sizeof(float)), *X = rand_floats(64 * 128, 5);
    float *phi = malloc(64 * 256 * sizeof(float)), *ml = malloc(4 * 64 * sizeof(float));
    if (!A || !B || !C || !S0 || !S || !X || !phi || !ml)
        return 1;

    printf("one core; OpenBLAS core %s, %d thread(s)\n", openblas_get_corename(),
           openblas_get_num_threads());
    printf("%-38s %-8s %10s %10s\n", "product", "by", "us/call", "GFLOP/s");
    for (size_t i = 0; i < sizeof products / sizeof *products; i++) {
        const product *p = &products[i];
        const double fl = 2.0 * p->M * p->N * p->K;
        gemm_arg g = {p, NULL, A, B, C};
        double t = time_calls(call_blas, &g);
        printf("%-38s %-8s %10.2f %10.1f\n", p->name, "cblas", t * 1e6, fl / t * 1e-9);
        for (size_t j = 0; j < sizeof all / sizeof *all; j++) {
            if (!still__isa_supported(all[j]) || still__kernels_select(all[j], &g.K))
                continue;
            t = time_calls(call_ours, &g);
            printf("%-38s %-8s %10.2f %10.1f\n", "", g.K->name, t * 1e6, fl / t * 1e-9);
        }
    }
    static const char *loops[] = {"softmax tile (256 keys x 64 queries)",
                                  "saliency (64 queries, w = 64)",
                                  "NP-Map hedgehog (64 rows, f = 128)"};
    printf("\n%-38s %-8s %10s\n", "loop", "by", "us/call");
    for (int w = 0; w < 3; w++)
        for (size_t j = 0; j < sizeof all / sizeof *all; j++) {
            loop_arg a = {NULL, S, S0, ml, ml + 64, ml + 128, X, phi, ml + 192, w};
            if (!still__isa_supported(all[j]) || still__kernels_select(all[j], &a.K))
                continue;
            printf("%-38s %-8s %10.2f\n", j == 0 ? loops[w] : "", a.K->name,
                   time_calls(call_loop, &a) * 1e6);
        }
    free(A), free(B), free(C), free(S0), free(S), free(X), free(phi), free(ml);
    return 0;
}
