/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * cmd_bench.c -- `still bench`: the speed of the fast path, side by side in
 * one run (issue 3).  For each sequence length N, with H heads and
 * d = dv (defaults: N = 1K..64K, 8 heads, d = 128, 2 threads):
 *
 *   STILL     still_forward, C = 64, k = 4, L = 2, w = 64, hedgehog with a
 *             random W of f rows (default 128), no cap;
 *   capped    the same with max_sel = 1024 (constant memory, linear time);
 *   teacher   still_teacher, full causal softmax (flash-style);
 *   ref       still_ref_forward (small N only; measured with fewer heads
 *             and scaled to H, as the table says);
 *
 * median seconds of --reps runs after one warm-up run, tokens/s, GFLOP/s
 * (counted from the algorithm: see still_flops) and the fraction of the
 * cblas_sgemm rate measured at the start of the same run.  Then the ratios
 * the issue asks for, the pure linear mode (k = 0, L = 0, f = 64), and a
 * gnuplot PNG of time vs N (--plot) when gnuplot is installed.
 *
 * --blas adds (N <= 4096) a teacher built on cblas_sgemm, called outside
 * any OpenMP region with OpenBLAS's own threads on the cores (only the
 * softmax is ours): the measurement behind our own kernels in lib/.  Note
 * that with libgomp's default OMP_WAIT_POLICY our threads still spin
 * after each region and slow OpenBLAS's threads down (N=2048: 1.09 s vs
 * 0.18 s with OMP_WAIT_POLICY=passive; our teacher: 0.10-0.12 s either way).
 */
#define _POSIX_C_SOURCE 200809L
#include "fast.h"
#include "tool.h"

#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_N 32

typedef struct bench_opts {
    int64_t n[MAX_N];
    int nn;
    int64_t heads, dim, f, cap, reps, ref_max, ref_heads, teacher_max;
    int threads, isa, blas;
    const char *plot;
} bench_opts;

/* One timed configuration: the inputs of every run of it. */
typedef struct bench_inputs {
    still_shape shape;
    float *q, *k, *v, *o;
    double *W;            /* random NP-Map W [H][f][d] */
    still_params params;
} bench_inputs;

static void bench_usage(FILE *f)
{
    fprintf(f,
            "usage: still bench [options]\n"
            "\n"
            "Times the fast path side by side: STILL (C=64, k=4, L=2, w=64), STILL with\n"
            "a cap of --cap selected tokens, the fast teacher (full causal softmax) and\n"
            "the ref path (small N), and prints seconds (median), tokens/s, GFLOP/s and\n"
            "the fraction of cblas_sgemm's rate measured in the same run.\n"
            "\n"
            "  --n N1,N2,...     sequence lengths (default 1024,...,65536)\n"
            "  --heads H         query = kv heads (default 8)\n"
            "  --dim D           d = dv (default 128)\n"
            "  --f F             rows of the random NP-Map W (default 128)\n"
            "  --cap M           max_sel of the capped run (default 1024)\n"
            "  --threads T       threads (default 2)\n"
            "  --isa I           auto|generic|avx2|avx512|neon (default auto)\n"
            "  --reps R          timed runs per point, after one warm-up (default 5)\n"
            "  --ref-max N       largest N for the ref path (default 2048)\n"
            "  --ref-heads H     heads the ref path is measured with, scaled to --heads\n"
            "                    (default 1)\n"
            "  --teacher-max N   largest N for the teacher (default 65536)\n"
            "  --blas            also time a teacher built on cblas_sgemm (N <= 4096)\n"
            "  --plot FILE.png   time vs N of STILL, capped STILL and teacher (gnuplot)\n"
            "  --decode ...      instead: decode latency and state memory vs full softmax\n"
            "                    decode (first option; see still bench --decode --help)\n"
            "Exit status: 0, 2 on a usage error, 4 if the library fails.\n");
}

/* ---- inputs ---------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* uniform in [-1, 1) */
static float rng_float(uint64_t *s)
{
    return (float)((double)(rng_next(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static void inputs_free(bench_inputs *in)
{
    free(in->q);
    free(in->k);
    free(in->v);
    free(in->o);
    free(in->W);
    memset(in, 0, sizeof *in);
}

static int inputs_init(bench_inputs *in, int64_t N, int64_t H, int64_t d, int64_t f)
{
    const size_t n = (size_t)(H * N * d);
    uint64_t s = 0x9E3779B97F4A7C15ULL;
    memset(in, 0, sizeof *in);
    in->shape = (still_shape){1, H, H, N, d, d, STILL_LAYOUT_BHND};
    in->q = malloc(n * sizeof(float));
    in->k = malloc(n * sizeof(float));
    in->v = malloc(n * sizeof(float));
    in->o = malloc(n * sizeof(float));
    in->W = malloc((size_t)(H * f * d) * sizeof(double));
    if (!in->q || !in->k || !in->v || !in->o || !in->W) {
        inputs_free(in);
        return STILL_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        in->q[i] = rng_float(&s);
        in->k[i] = rng_float(&s);
        in->v[i] = rng_float(&s);
    }
    for (int64_t i = 0; i < H * f * d; i++) /* |W x| ~ |x| */
        in->W[i] = rng_float(&s) * sqrt(3.0 / (double)d);
    still_params_default(&in->params);
    in->params.fq.f = f;
    in->params.fq.W = in->W;
    return STILL_OK;
}

/* ---- FLOP counts --------------------------------------------------------------- */

/* The arithmetic of STILL's algorithm for one head (SPEC §2-6), counted as
 * 2 per multiply-add: the feature maps of q and k (W x), the saliency
 * logits of the window, the exact branch over E_t (logits and values), the
 * linear read phi_q^T [S z] and the folds into S, z. */
static double still_flops(const still_config *cfg, int64_t N, int64_t H, int64_t d, int64_t f)
{
    const int64_t C = cfg->chunk, k = cfg->topk, L = cfg->local, cap = cfg->max_sel;
    const int64_t w = cfg->window ? cfg->window : C, m = 2 * f;
    double flops = 0.0, exact = 0.0;
    int64_t folded = 0;
    for (int64_t c = 0; c * C < N; c++) {
        int64_t split = L > 0 ? c - L + 1 : c; /* chunks 0..split-1 are split */
        split = split > 0 ? split : 0;
        int64_t cache = split * k, band0 = L > 0 ? split * C : c * C;
        if (cap > 0 && cache > cap)
            cache = cap;
        for (int64_t t = c * C; t < N && t < (c + 1) * C; t++)
            exact += (double)(cache + (L > 0 ? t - band0 + 1 : 0));
        folded = split * C - cache;
    }
    flops += 2.0 * 2.0 * (double)N * (double)d * (double)f;        /* phi_q, phi_k */
    flops += 2.0 * (double)N * (double)(w < N ? w : N) * (double)d; /* saliency */
    flops += exact * 2.0 * (double)(d + d);                         /* E_t: q.k, p v */
    flops += 2.0 * (double)N * (double)m * (double)(d + 1);         /* phi_q^T [S z] */
    flops += 2.0 * (double)folded * (double)m * (double)(d + 1);    /* folds */
    return flops * (double)H;
}

/* SPEC §1: 2·2·N²·d·H/2 (the count of ANCHORS.md). */
static double teacher_flops(int64_t N, int64_t H, int64_t d)
{
    return 2.0 * (double)N * (double)N * (double)d * (double)H;
}

/* ---- timing ------------------------------------------------------------------ */

typedef int (*bench_fn)(const still_config *cfg, bench_inputs *in);

static int run_still(const still_config *cfg, bench_inputs *in)
{
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F32;
    t.q = in->q, t.k = in->k, t.v = in->v, t.o = in->o;
    return still_forward(cfg, &in->shape, &in->params, &t);
}

static int run_teacher(const still_config *cfg, bench_inputs *in)
{
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F32;
    t.q = in->q, t.k = in->k, t.v = in->v, t.o = in->o;
    return still_teacher(cfg, &in->shape, &t);
}

/* The ref path on the same float inputs (it computes in double). */
static int run_ref(const still_config *cfg, bench_inputs *in)
{
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F32;
    t.q = in->q, t.k = in->k, t.v = in->v, t.o = in->o;
    return still_ref_forward(cfg, &in->shape, &in->params, &t);
}

/* A teacher on cblas_sgemm, for comparison: per head and block of 256
 * queries, S^T = K Q^T and O = P V by cblas_sgemm outside any OpenMP region
 * (OpenBLAS threads), the masked softmax by our kernel in our region. */
static int run_teacher_blas(const still_config *cfg, bench_inputs *in)
{
    const int64_t N = in->shape.seq_len, H = in->shape.heads_q, d = in->shape.dim_qk;
    const int64_t QB = 256;
    const still__kernels *K;
    int rc = still__kernels_select(cfg->isa, &K);
    if (rc)
        return rc;
    float *S = malloc((size_t)(N * QB) * sizeof(float));
    float *ml = malloc((size_t)(3 * QB) * sizeof(float));
    if (!S || !ml) {
        free(S);
        free(ml);
        return STILL_E_NOMEM;
    }
    const float scale = (float)(1.0 / sqrt((double)d));
    for (int64_t h = 0; h < H; h++) {
        const float *q = in->q + h * N * d, *k = in->k + h * N * d, *v = in->v + h * N * d;
        float *o = in->o + h * N * d;
        for (int64_t a = 0; a < N; a += QB) {
            const int64_t n = N - a < QB ? N - a : QB, end = a + n;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)end, (int)n, (int)d, scale,
                        k, (int)d, q + a * d, (int)d, 0.0f, S, (int)n);
            float *m = ml, *l = ml + QB, *alpha = ml + 2 * QB;
#pragma omp parallel for num_threads(cfg->threads) schedule(static)
            for (int64_t t0 = 0; t0 < n; t0 += 16) {
                const int64_t nt = n - t0 < 16 ? n - t0 : 16;
                for (int64_t j = a; j < end; j++) /* causal mask */
                    for (int64_t t = t0; t < t0 + nt; t++)
                        if (j > a + t)
                            S[j * n + t] = -INFINITY;
                for (int64_t t = t0; t < t0 + nt; t++)
                    m[t] = -INFINITY, l[t] = 0.0f;
                K->softmax_cols(end, nt, S + t0, n, m + t0, l + t0, alpha + t0);
            }
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)d, (int)end, 1.0f,
                        S, (int)n, v, (int)d, 0.0f, o + a * d, (int)d);
            for (int64_t t = 0; t < n; t++)
                for (int64_t e = 0; e < d; e++)
                    o[(a + t) * d + e] /= l[t];
        }
    }
    free(S);
    free(ml);
    return STILL_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds of `reps` runs after one warm-up; < 0 on a library error. */
static double time_median(bench_fn fn, const still_config *cfg, bench_inputs *in, int64_t reps,
                          int *rc)
{
    double t[64];
    if (reps > 64)
        reps = 64;
    if ((*rc = fn(cfg, in)))
        return -1.0;
    for (int64_t r = 0; r < reps; r++) {
        double t0 = tool_now();
        if ((*rc = fn(cfg, in)))
            return -1.0;
        t[r] = tool_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    return reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
}

/* cblas_sgemm's rate (GFLOP/s) for M x N x K, best of 3, outside any region. */
static double sgemm_rate(int M, int N, int K)
{
    float *A = malloc((size_t)M * K * sizeof(float)), *B = malloc((size_t)K * N * sizeof(float));
    float *C = malloc((size_t)M * N * sizeof(float));
    double best = 0.0;
    uint64_t s = 12345;
    if (A && B && C) {
        for (size_t i = 0; i < (size_t)M * K; i++)
            A[i] = rng_float(&s);
        for (size_t i = 0; i < (size_t)K * N; i++)
            B[i] = rng_float(&s);
        for (int r = 0; r < 4; r++) {
            double t0 = tool_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N,
                        0.0f, C, N);
            double dt = tool_now() - t0, rate = 2.0 * M * N * K / dt * 1e-9;
            if (r > 0 && rate > best) /* r = 0 warms up */
                best = rate;
        }
    }
    free(A);
    free(B);
    free(C);
    return best;
}

/* ---- the table ------------------------------------------------------------------ */

typedef struct bench_row {
    double still, capped, teacher, teacher_blas, ref; /* seconds, < 0 = not run */
} bench_row;

static void print_cell(int64_t N, const char *what, double sec, double flops, double sgemm,
                       const char *note)
{
    if (sec < 0.0)
        return;
    printf("%7lld  %-22s %10.4f %11.0f %9.1f %7.1f%%  %s\n", (long long)N, what, sec,
           (double)N / sec, flops / sec * 1e-9, 100.0 * flops / sec * 1e-9 / sgemm, note);
}

static void write_plot(const bench_opts *o, const bench_row *rows)
{
    FILE *gp = popen("gnuplot 2>/dev/null", "w");
    if (!gp) {
        printf("plot: gnuplot not available, %s not written\n", o->plot);
        return;
    }
    fprintf(gp,
            "set terminal png size 900,600\nset output '%s'\n"
            "set logscale xy\nset xlabel 'N (tokens)'\nset ylabel 'seconds'\n"
            "set title 'libstill fast path: %lld heads, d = %lld, %d threads'\n"
            "set key left top\nset grid\n"
            "plot '-' using 1:2 with linespoints title 'STILL (C=64, k=4, L=2)', "
            "'-' using 1:2 with linespoints title 'STILL, cap %lld', "
            "'-' using 1:2 with linespoints title 'teacher (full softmax)'\n",
            o->plot, (long long)o->heads, (long long)o->dim, o->threads, (long long)o->cap);
    for (int series = 0; series < 3; series++) {
        for (int i = 0; i < o->nn; i++) {
            double s = series == 0 ? rows[i].still : series == 1 ? rows[i].capped : rows[i].teacher;
            if (s > 0.0)
                fprintf(gp, "%lld %g\n", (long long)o->n[i], s);
        }
        fprintf(gp, "e\n");
    }
    int st = pclose(gp);
    if (st == 0)
        printf("plot: wrote %s\n", o->plot);
    else
        printf("plot: gnuplot failed (status %d), %s not written\n", st, o->plot);
}

static int64_t index_of(const bench_opts *o, int64_t N)
{
    for (int i = 0; i < o->nn; i++)
        if (o->n[i] == N)
            return i;
    return -1;
}

static int bench_run(const bench_opts *o)
{
    still_config base, capped, linear;
    bench_row rows[MAX_N];
    int rc = STILL_OK;
    const still__kernels *kern;

    still_config_default(&base);
    base.chunk = 64, base.topk = 4, base.local = 2, base.window = 64;
    base.threads = o->threads, base.isa = o->isa;
    capped = base;
    capped.max_sel = o->cap;
    linear = base;
    linear.topk = 0, linear.local = 0;
    if ((rc = still__kernels_select(o->isa, &kern)))
        return tool_fail(TOOL_EXIT_LIBRARY, "bench", "--isa: %s", tool_status_name(rc));

    const double sg_square = sgemm_rate(2048, 2048, 2048);
    const double sg_qk = sgemm_rate(4096, 4096, 128);
    printf("still bench: %lld heads, d = dv = %lld, %d threads, ISA %s; OpenBLAS core %s; "
           "median of %lld runs\n",
           (long long)o->heads, (long long)o->dim, o->threads, kern->name,
           openblas_get_corename(), (long long)o->reps);
    printf("cblas_sgemm in this run: 2048^3 %.1f GFLOP/s, 4096x4096x128 %.1f GFLOP/s "
           "(%%sgemm below is of the 2048^3 rate)\n", sg_square, sg_qk);
    printf("STILL: C=64 k=4 L=2 w=64, hedgehog NP-Map with a random W of f=%lld rows; "
           "capped: max_sel=%lld\n\n", (long long)o->f, (long long)o->cap);
    printf("%7s  %-22s %10s %11s %9s %8s\n", "N", "method", "seconds", "tokens/s", "GFLOP/s",
           "%sgemm");

    const char *failed = "inputs";
    int64_t failed_n = 0;
    for (int i = 0; i < o->nn && !rc; i++) {
        const int64_t N = o->n[i], reps = N >= 32768 ? (o->reps < 3 ? o->reps : 3) : o->reps;
        bench_inputs in;
        bench_row *row = &rows[i];
        row->still = row->capped = row->teacher = row->teacher_blas = row->ref = -1.0;
        failed = "inputs", failed_n = N;
        if ((rc = inputs_init(&in, N, o->heads, o->dim, o->f)))
            break;
        const double fl_still = still_flops(&base, N, o->heads, o->dim, o->f);
        const double fl_cap = still_flops(&capped, N, o->heads, o->dim, o->f);
        const double fl_t = teacher_flops(N, o->heads, o->dim);
        failed = "STILL";
        row->still = time_median(run_still, &base, &in, reps, &rc);
        if (!rc && (failed = "STILL capped"))
            row->capped = time_median(run_still, &capped, &in, reps, &rc);
        if (!rc && N <= o->teacher_max && (failed = "teacher"))
            row->teacher = time_median(run_teacher, &base, &in, reps, &rc);
        if (!rc && o->blas && N <= 4096 && (failed = "teacher (cblas_sgemm)"))
            row->teacher_blas = time_median(run_teacher_blas, &base, &in, reps, &rc);
        inputs_free(&in);
        if (!rc && N <= o->ref_max && (failed = "ref")) { /* fewer heads, scaled */
            if (!(rc = inputs_init(&in, N, o->ref_heads, o->dim, o->f))) {
                double t = time_median(run_ref, &base, &in, 1, &rc);
                row->ref = t < 0 ? t : t * (double)o->heads / (double)o->ref_heads;
                inputs_free(&in);
            }
        }
        if (rc)
            break;
        char note[96];
        print_cell(N, "STILL", row->still, fl_still, sg_square, "");
        print_cell(N, "STILL capped", row->capped, fl_cap, sg_square, "");
        snprintf(note, sizeof note, "STILL/teacher = %.3f",
                 row->teacher > 0 ? row->still / row->teacher : NAN);
        print_cell(N, "teacher", row->teacher, fl_t, sg_square, row->teacher > 0 ? note : "");
        print_cell(N, "teacher (cblas_sgemm)", row->teacher_blas, fl_t, sg_square, "");
        snprintf(note, sizeof note, "%lld head(s) x %lld; fast is %.0fx faster",
                 (long long)o->ref_heads, (long long)(o->heads / o->ref_heads),
                 row->ref / row->still);
        print_cell(N, "ref", row->ref, fl_still, sg_square, note);
        fflush(stdout);
    }
    if (rc)
        return tool_fail(TOOL_EXIT_LIBRARY, "bench", "%s at N=%lld: the library failed: %s",
                         failed, (long long)failed_n, tool_status_name(rc));

    /* pure linear mode (k = 0, L = 0, f = 64) at the longest N <= 16384 */
    int64_t Nl = 0;
    for (int i = 0; i < o->nn; i++)
        if (o->n[i] <= 16384 && o->n[i] > Nl)
            Nl = o->n[i];
    if (Nl > 0) {
        bench_inputs in;
        if ((rc = inputs_init(&in, Nl, o->heads, o->dim, 64)))
            return tool_fail(TOOL_EXIT_LIBRARY, "bench", "%s", tool_status_name(rc));
        double t = time_median(run_still, &linear, &in, o->reps, &rc);
        inputs_free(&in);
        if (rc)
            return tool_fail(TOOL_EXIT_LIBRARY, "bench", "%s", tool_status_name(rc));
        printf("\npure linear mode (k=0, L=0, f=64) at N=%lld: %.4f s, %.0f tokens/s "
               "(target >= 2 x 103.5k = 207k)\n", (long long)Nl, t, (double)Nl / t);
    }

    /* the gating projection: our one BLAS call (SPEC §6), at N = 4096 */
    {
        const int64_t Ng = 4096, hidden = o->heads * o->dim, out = o->heads * o->dim;
        float *X = malloc((size_t)(Ng * hidden) * sizeof(float));
        float *Wg = malloc((size_t)(out * hidden) * sizeof(float));
        float *G = malloc((size_t)(Ng * out) * sizeof(float));
        uint64_t s = 777;
        double t[5];
        if (!X || !Wg || !G)
            rc = STILL_E_NOMEM;
        for (int64_t i = 0; !rc && i < Ng * hidden; i++)
            X[i] = rng_float(&s);
        for (int64_t i = 0; !rc && i < out * hidden; i++)
            Wg[i] = rng_float(&s) * 0.03f;
        for (int r = -1; !rc && r < 5; r++) { /* r = -1 warms up */
            double t0 = tool_now();
            rc = still_gate_projection(1, Ng, hidden, o->heads, o->dim, X, Wg, G);
            if (r >= 0)
                t[r] = tool_now() - t0;
        }
        free(X);
        free(Wg);
        free(G);
        if (rc)
            return tool_fail(TOOL_EXIT_LIBRARY, "bench", "%s", tool_status_name(rc));
        qsort(t, 5, sizeof *t, cmp_double);
        printf("gating projection (cblas_sgemm + sigmoid) N=%lld, hidden=%lld -> %lld: "
               "%.4f s, %.1f GFLOP/s\n", (long long)Ng, (long long)hidden, (long long)out, t[2],
               2.0 * (double)Ng * (double)hidden * (double)out / t[2] * 1e-9);
    }

    /* the targets, from this run */
    printf("\ntargets (issue 3; ggml figures from ANCHORS.md, 2 threads):\n");
    int64_t i16 = index_of(o, 16384), i64 = index_of(o, 65536), i4 = index_of(o, 4096),
            i2 = index_of(o, 2048);
    if (i16 >= 0 && rows[i16].teacher > 0)
        printf("  STILL / teacher at N=16384: %.3f (<= 0.25)\n", rows[i16].still / rows[i16].teacher);
    if (i16 >= 0 && i64 >= 0)
        printf("  capped t(65536) / t(16384): %.2f (<= 4.5)\n", rows[i64].capped / rows[i16].capped);
    if (i4 >= 0 && rows[i4].teacher > 0)
        printf("  teacher at N=4096: %.3f s (ggml 0.216 s)\n", rows[i4].teacher);
    if (i16 >= 0 && rows[i16].teacher > 0)
        printf("  teacher at N=16384: %.3f s (ggml 3.73 s), %.0f%% of the 448 GFLOP/s FMA peak\n",
               rows[i16].teacher,
               100.0 * teacher_flops(16384, o->heads, o->dim) / rows[i16].teacher * 1e-9 / 448.0);
    if (i2 >= 0 && rows[i2].ref > 0)
        printf("  fast vs ref at N=2048: %.0fx (>= 50x)\n", rows[i2].ref / rows[i2].still);
    if (o->plot)
        write_plot(o, rows);
    return TOOL_EXIT_OK;
}

/* ---- options ---------------------------------------------------------------------- */

static int parse_list(const char *val, bench_opts *o)
{
    char buf[512], *save = NULL;
    if (strlen(val) >= sizeof buf)
        return -1;
    strcpy(buf, val);
    o->nn = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int64_t n;
        if (o->nn == MAX_N || tool_parse_int64("bench", "--n", tok, 1, (int64_t)1 << 24, &n))
            return -1;
        o->n[o->nn++] = n;
    }
    return o->nn > 0 ? 0 : -1;
}

/* bench/bench_decode.c (via tools/cmd_bench_decode.c): `still bench --decode` */
int still_bench_decode(int argc, char **argv);

int cmd_bench(int argc, char **argv)
{
    bench_opts o;
    if (argc > 1 && !strcmp(argv[1], "--decode")) /* decode latency and memory (SPEC §7) */
        return still_bench_decode(argc - 1, argv + 1);
    memset(&o, 0, sizeof o);
    for (int64_t n = 1024; n <= 65536; n *= 2)
        o.n[o.nn++] = n;
    o.heads = 8, o.dim = 128, o.f = 128, o.cap = 1024, o.reps = 5;
    o.ref_max = 2048, o.ref_heads = 1, o.teacher_max = 65536;
    o.threads = 2, o.isa = STILL_ISA_AUTO;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        int64_t x;
        if (tool_is_help(a)) {
            bench_usage(stdout);
            return TOOL_EXIT_OK;
        }
        if (!strcmp(a, "--blas")) {
            o.blas = 1;
            continue;
        }
        static const struct { const char *opt; int64_t lo, hi; size_t off; } ints[] = {
            {"--heads", 1, 1024, offsetof(bench_opts, heads)},
            {"--dim", 1, 4096, offsetof(bench_opts, dim)},
            {"--f", 1, 4096, offsetof(bench_opts, f)},
            {"--cap", 1, (int64_t)1 << 24, offsetof(bench_opts, cap)},
            {"--reps", 1, 64, offsetof(bench_opts, reps)},
            {"--ref-max", 0, (int64_t)1 << 24, offsetof(bench_opts, ref_max)},
            {"--ref-heads", 1, 1024, offsetof(bench_opts, ref_heads)},
            {"--teacher-max", 0, (int64_t)1 << 24, offsetof(bench_opts, teacher_max)},
        };
        int matched = 0;
        for (size_t j = 0; j < sizeof ints / sizeof *ints && !matched; j++) {
            if (!tool_is_option(a, ints[j].opt))
                continue;
            matched = 1;
            if (!(val = tool_option_value("bench", argc, argv, &i, ints[j].opt)) ||
                tool_parse_int64("bench", ints[j].opt, val, ints[j].lo, ints[j].hi, &x))
                return TOOL_EXIT_USAGE;
            *(int64_t *)((char *)&o + ints[j].off) = x;
        }
        if (matched)
            continue;
        if (tool_is_option(a, "--n")) {
            if (!(val = tool_option_value("bench", argc, argv, &i, "--n")))
                return TOOL_EXIT_USAGE;
            if (parse_list(val, &o))
                return tool_fail(TOOL_EXIT_USAGE, "bench", "--n: expected a list of lengths "
                                 "like 1024,4096, found '%s'", val);
        } else if (tool_is_option(a, "--threads")) {
            if (!(val = tool_option_value("bench", argc, argv, &i, "--threads")) ||
                tool_parse_int64("bench", "--threads", val, 1, 1024, &x))
                return TOOL_EXIT_USAGE;
            o.threads = (int)x;
        } else if (tool_is_option(a, "--isa")) {
            if (!(val = tool_option_value("bench", argc, argv, &i, "--isa")))
                return TOOL_EXIT_USAGE;
            if ((o.isa = still__isa_parse(val)) < 0)
                return tool_fail(TOOL_EXIT_USAGE, "bench", "--isa: expected auto, generic, "
                                 "avx2, avx512 or neon, found '%s'", val);
        } else if (tool_is_option(a, "--plot")) {
            if (!(o.plot = tool_option_value("bench", argc, argv, &i, "--plot")))
                return TOOL_EXIT_USAGE;
        } else {
            return tool_fail(TOOL_EXIT_USAGE, "bench", "unknown option '%s' (see still bench "
                             "--help)", a);
        }
    }
    if (o.heads % o.ref_heads)
        return tool_fail(TOOL_EXIT_USAGE, "bench", "--ref-heads must divide --heads");
    return bench_run(&o);
}
