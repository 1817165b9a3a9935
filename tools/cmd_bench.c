/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * cmd_bench.c -- `still bench`: the speed of the fast path, side by side in
 * one run.  For each sequence length N, with H heads and d = dv (defaults
 * sized for a small machine: N = 1K..8K, 8 heads, d = 128, 2 threads, a
 * minute on 2 cores; --n and --teacher-max for longer runs):
 *
 *   STILL     still_forward, C = 64, k = 4, L = 2, w = 64, hedgehog with a
 *             random W of f rows (default 128), no cap;
 *   capped    the same with max_sel = 1024 (constant memory, linear time);
 *   teacher   still_teacher, full causal softmax (flash-style);
 *   ref       still_ref_forward (small N only; measured with fewer heads
 *             and scaled to H, as the table says);
 *
 * median seconds of --reps runs after one warm-up run, tokens/s, GFLOP/s
 * (counted from the algorithm: see still_flops) and their share of the
 * machine's multiply-add peak, measured at the start of the same run by the
 * peak_fma kernel of the ISA in use on every thread.  Then the ratios
 * between them, the pure linear mode (k = 0, L = 0, f = 64), and a gnuplot
 * PNG of time vs N (--plot) when gnuplot is installed.
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
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* The options of `still bench`: one table, read by the parser and printed
 * by --help, so that the two cannot differ. */
enum { OPT_INT, OPT_THREADS, OPT_LIST, OPT_ISA, OPT_FLAG, OPT_FILE, OPT_PROGRESS, OPT_DECODE };

typedef struct bench_option {
    const char *name, *arg; /* "--heads", "H"; arg NULL: a flag */
    int kind;               /* OPT_* */
    size_t off;             /* its field in bench_opts (OPT_INT .. OPT_FILE) */
    int64_t lo, hi;         /* the range of OPT_INT and OPT_THREADS */
    const char *help;       /* "\n" starts a continuation line */
} bench_option;

static const bench_option bench_options[] = {
    {"--n", "N1,N2,...", OPT_LIST, 0, 0, 0, "sequence lengths (default 1024,2048,4096,8192)"},
    {"--heads", "H", OPT_INT, offsetof(bench_opts, heads), 1, 1024,
     "query = kv heads (default 8)"},
    {"--dim", "D", OPT_INT, offsetof(bench_opts, dim), 1, 4096, "d = dv (default 128)"},
    {"--f", "F", OPT_INT, offsetof(bench_opts, f), 1, 4096,
     "rows of the random NP-Map W (default 128)"},
    {"--cap", "M", OPT_INT, offsetof(bench_opts, cap), 1, INT64_C(1) << 24,
     "max_sel of the capped run (default 1024)"},
    {"--threads", "T", OPT_THREADS, offsetof(bench_opts, threads), 1, STILL_THREADS_MAX,
     "threads (default 2)"},
    {"--isa", "I", OPT_ISA, offsetof(bench_opts, isa), 0, 0,
     "auto|generic|avx2|avx512|neon (default auto)"},
    {"--reps", "R", OPT_INT, offsetof(bench_opts, reps), 1, 64,
     "timed runs per point, after one warm-up (default 3)"},
    {"--ref-max", "N", OPT_INT, offsetof(bench_opts, ref_max), 0, INT64_C(1) << 24,
     "largest N for the ref path (default 1024)"},
    {"--ref-heads", "H", OPT_INT, offsetof(bench_opts, ref_heads), 1, 1024,
     "heads the ref path is measured with, scaled to --heads\n(default 1)"},
    {"--teacher-max", "N", OPT_INT, offsetof(bench_opts, teacher_max), 0, INT64_C(1) << 24,
     "largest N for the teacher (default 16384)"},
    {"--blas", NULL, OPT_FLAG, offsetof(bench_opts, blas), 0, 0,
     "also time a teacher built on cblas_sgemm (N <= 4096)"},
    {"--plot", "FILE.png", OPT_FILE, offsetof(bench_opts, plot), 0, 0,
     "time vs N of STILL, capped STILL and teacher, drawn by\ngnuplot (without gnuplot on "
     "PATH: a warning, no plot)"},
    {"--no-progress", NULL, OPT_PROGRESS, 0, 0, 0,
     "no progress line on stderr (shown only on a terminal)"},
    {"--decode", "...", OPT_DECODE, 0, 0, 0,
     "instead: decode latency and state memory vs full softmax\ndecode (first option; see "
     "still bench --decode --help)"},
};

static void bench_usage(FILE *f)
{
    fprintf(f,
            "usage: still bench [options]\n"
            "\n"
            "Times the fast path side by side: STILL (C=64, k=4, L=2, w=64), STILL with\n"
            "a cap of --cap selected tokens, sinks, terraced, the fast teacher (full causal\n"
            "softmax), STILL's exact branch alone (routing all, as the teacher's FLOPs) and\n"
            "the ref path (small N), and prints seconds (median), tokens/s, GFLOP/s and\n"
            "their share of this machine's multiply-add peak, measured in the same run on\n"
            "the ISA in use and --threads threads.  The defaults take about a minute on\n"
            "2 cores; a long run: --n 1024,2048,4096,8192,16384,32768,65536.\n"
            "\n");
    for (size_t i = 0; i < sizeof bench_options / sizeof *bench_options; i++) {
        const bench_option *b = &bench_options[i];
        char head[40];
        snprintf(head, sizeof head, "%s%s%s", b->name, b->arg ? " " : "", b->arg ? b->arg : "");
        fprintf(f, "  %-17s ", head);
        for (const char *p = b->help; *p; p++) {
            fputc(*p, f);
            if (*p == '\n')
                fprintf(f, "%20s", "");
        }
        fputc('\n', f);
    }
    fprintf(f, "Exit status: 0, 2 on a usage error, 4 if the library fails, 5 if gnuplot\n"
               "failed to write the plot (after the whole table).\n");
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

/* The same count for routings sinks (SPEC §13: E_t is the first s and the
 * last w positions, min(t+1, s+w) keys) and terraced (SPEC §14: the
 * previous and the current block of w), the rest linear: no saliency; each
 * key leaves the exact set at most once and is folded then. */
static double hybrid_flops(const still_config *cfg, int64_t N, int64_t H, int64_t d, int64_t f)
{
    const int64_t w = cfg->window ? cfg->window : cfg->chunk, s = cfg->sinks, m = 2 * f;
    double exact = 0.0, folded = 0.0;
    for (int64_t t = 0; t < N; t++) {
        int64_t e = cfg->routing == STILL_ROUTING_SINKS
                        ? (t + 1 < s + w ? t + 1 : s + w)
                        : t - (t / w > 0 ? (t / w - 1) * w : 0) + 1;
        exact += (double)e;
        folded = (double)(t + 1 - e) > folded ? (double)(t + 1 - e) : folded;
    }
    double flops = 2.0 * 2.0 * (double)N * (double)d * (double)f; /* phi_q, phi_k */
    flops += exact * 2.0 * (double)(d + d);                       /* E_t: q.k, p v */
    flops += 2.0 * (double)N * (double)m * (double)(d + 1);       /* phi_q^T [S z] */
    flops += 2.0 * folded * (double)m * (double)(d + 1);          /* folds */
    return flops * (double)H;
}

/* SPEC §1: 2·2·N²·d·H/2 (the causal half of QK^T and PV). */
static double teacher_flops(int64_t N, int64_t H, int64_t d)
{
    return 2.0 * (double)N * (double)N * (double)d * (double)H;
}

/* ---- timing ------------------------------------------------------------------ */

typedef int (*bench_fn)(const still_config *cfg, bench_inputs *in);

/* Mixer liger (SPEC §16): the window of w, and the gated linear state
 * d x dv per token: its update (decay and phi(k) v^T) and its read. */
static double liger_flops(const still_config *cfg, int64_t N, int64_t H, int64_t d)
{
    const int64_t w = cfg->window ? cfg->window : cfg->chunk;
    double exact = 0.0;
    for (int64_t t = 0; t < N; t++)
        exact += (double)(t + 1 < w ? t + 1 : w);
    double flops = exact * 2.0 * (double)(d + d);         /* SWA: q.k, p v */
    flops += 2.0 * 2.0 * (double)N * (double)d * (double)d; /* S update, S^T phi(q) */
    return flops * (double)H;
}

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
            const int team = still__fast_threads(cfg->threads, (n + 15) / 16);
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
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

/* What the peak kernels computed: stored, so their work is not optimized away. */
static volatile float peak_sink;

/* The multiply-add peak of kernel set K on `threads` threads at once
 * (GFLOP/s): each thread runs K->peak_fma for ~0.2 s, the iteration count
 * calibrated on one thread first; best of 2. */
static double fma_peak(const still__kernels *K, int threads)
{
    int64_t iters = 1 << 16;
    float sink = 0.0f;
    for (;;) {
        double t0 = tool_now();
        K->peak_fma(iters, &sink);
        double dt = tool_now() - t0;
        if (dt >= 0.05 || iters >= (INT64_C(1) << 40)) {
            iters = (int64_t)((double)iters * 0.2 / (dt > 1e-9 ? dt : 1e-9)) + 1;
            break;
        }
        iters *= 4;
    }
    double best = 0.0;
    for (int r = 0; r < 2; r++) {
        double flops = 0.0, check = 0.0, t0 = tool_now();
#pragma omp parallel num_threads(threads) reduction(+ : flops, check)
        {
            float mine = 0.0f;
            flops += K->peak_fma(iters, &mine);
            check += mine;
        }
        double rate = flops / (tool_now() - t0) * 1e-9;
        peak_sink = (float)check + sink;
        if (rate > best)
            best = rate;
    }
    return best;
}

/* ---- the table ------------------------------------------------------------------ */

typedef struct bench_row {
    double still, capped, teacher, teacher_blas, ref; /* seconds, < 0 = not run */
} bench_row;

static void print_cell(int64_t N, const char *what, double sec, double flops, double peak,
                       const char *note)
{
    if (sec < 0.0)
        return;
    tool_progress_clear();
    printf("%7lld  %-22s %10.4f %11.0f %9.1f %6.1f%%  %s\n", (long long)N, what, sec,
           (double)N / sec, flops / sec * 1e-9, 100.0 * flops / sec * 1e-9 / peak, note);
}

/* Is there an executable `name` in a directory of $PATH? */
static int on_path(const char *name)
{
    const char *path = getenv("PATH");
    char file[4096];
    while (path && *path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        if (len > 0 && len + strlen(name) + 2 <= sizeof file) {
            memcpy(file, path, len);
            file[len] = '/';
            strcpy(file + len + 1, name);
            if (access(file, X_OK) == 0)
                return 1;
        }
        path = end ? end + 1 : NULL;
    }
    return 0;
}

/* The plot through gnuplot; TOOL_EXIT_OK or TOOL_EXIT_OUTPUT after one line
 * on stderr.  SIGPIPE is ignored while the pipe is open, so a gnuplot that
 * exits early is a failed write, not the end of this process. */
static int write_plot(const bench_opts *o, const bench_row *rows)
{
    struct sigaction ignore, old;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGPIPE, &ignore, &old);
    FILE *gp = popen("exec gnuplot", "w");
    if (!gp) {
        sigaction(SIGPIPE, &old, NULL);
        return tool_fail(TOOL_EXIT_OUTPUT, "bench", "--plot %s: cannot start gnuplot", o->plot);
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
    int write_failed = fflush(gp) != 0 || ferror(gp);
    int st = pclose(gp);
    sigaction(SIGPIPE, &old, NULL);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || write_failed) {
        char why[64];
        if (st != -1 && WIFSIGNALED(st))
            snprintf(why, sizeof why, "killed by signal %d", WTERMSIG(st));
        else if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) != 0)
            snprintf(why, sizeof why, "exit status %d", WEXITSTATUS(st));
        else
            snprintf(why, sizeof why, "it stopped reading its input");
        return tool_fail(TOOL_EXIT_OUTPUT, "bench", "--plot %s: gnuplot failed (%s), no plot "
                         "written", o->plot, why);
    }
    printf("plot: wrote %s\n", o->plot);
    return TOOL_EXIT_OK;
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
    const char *plot = o->plot;

    still_config_default(&base);
    base.chunk = 64, base.topk = 4, base.local = 2, base.window = 64;
    base.threads = o->threads, base.isa = o->isa;
    capped = base;
    capped.max_sel = o->cap;
    linear = base;
    linear.topk = 0, linear.local = 0;
    still_config sinks = base, terraced = base; /* SPEC §13-14, w = 64, s = 4 */
    sinks.routing = STILL_ROUTING_SINKS;
    terraced.routing = STILL_ROUTING_TERRACED;
    still_config all = base; /* STILL's exact branch over every key (SPEC I1) */
    all.routing = STILL_ROUTING_ALL;
    still_config liger = base; /* SPEC §16, w = 64, alpha = beta = 1/2 */
    liger.mixer = STILL_MIXER_LIGER;
    if ((rc = still__kernels_select(o->isa, &kern)))
        return tool_fail(TOOL_EXIT_LIBRARY, "bench", "--isa: %s", tool_status_name(rc));
    if (plot && !on_path("gnuplot")) { /* said now, and the table goes on */
        tool_fail(TOOL_EXIT_OK, "bench", "--plot %s: gnuplot not found on PATH, no plot will "
                  "be written", plot);
        plot = NULL;
    }

    tool_progress(0, 0, "measuring the %s multiply-add peak", kern->name);
    const double peak = fma_peak(kern, o->threads);
    tool_progress(0, 0, "measuring cblas_sgemm");
    const double sg_square = sgemm_rate(1024, 1024, 1024);
    tool_progress_clear();
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    printf("still bench: %lld heads, d = dv = %lld, %d threads, ISA %s; median of %lld runs\n",
           (long long)o->heads, (long long)o->dim, o->threads, kern->name, (long long)o->reps);
    printf("multiply-add peak of this machine, %s kernel on %d threads: %.1f GFLOP/s "
           "(%%peak below is of it)\n", kern->name, o->threads, peak);
    printf("BLAS: OpenBLAS kernels %s%s%s%s; cblas_sgemm 1024^3: %.1f GFLOP/s (%.0f%% of the "
           "peak)\n", openblas_get_corename(), coretype ? " (OPENBLAS_CORETYPE=" : "",
           coretype ? coretype : "", coretype ? ")" : "", sg_square, 100.0 * sg_square / peak);
    printf("STILL: C=64 k=4 L=2 w=64, hedgehog NP-Map with a random W of f=%lld rows; "
           "capped: max_sel=%lld\n\n", (long long)o->f, (long long)o->cap);
    printf("%7s  %-22s %10s %11s %9s %7s\n", "N", "method", "seconds", "tokens/s", "GFLOP/s",
           "%peak");

    const char *failed = "inputs";
    int64_t failed_n = 0;
    for (int i = 0; i < o->nn && !rc; i++) {
        const int64_t N = o->n[i], reps = N >= 32768 ? (o->reps < 3 ? o->reps : 3) : o->reps;
        bench_inputs in;
        bench_row *row = &rows[i];
        row->still = row->capped = row->teacher = row->teacher_blas = row->ref = -1.0;
        failed = "inputs", failed_n = N;
        tool_progress(i, o->nn, "N=%lld: inputs", (long long)N);
        if ((rc = inputs_init(&in, N, o->heads, o->dim, o->f)))
            break;
        const double fl_still = still_flops(&base, N, o->heads, o->dim, o->f);
        const double fl_cap = still_flops(&capped, N, o->heads, o->dim, o->f);
        const double fl_t = teacher_flops(N, o->heads, o->dim);
        failed = "STILL";
        tool_progress(i, o->nn, "N=%lld: STILL", (long long)N);
        row->still = time_median(run_still, &base, &in, reps, &rc);
        print_cell(N, "STILL", row->still, fl_still, peak, "");
        tool_progress(i, o->nn, "N=%lld: STILL capped", (long long)N);
        if (!rc && (failed = "STILL capped"))
            row->capped = time_median(run_still, &capped, &in, reps, &rc);
        print_cell(N, "STILL capped", row->capped, fl_cap, peak, "");
        for (int h = 0; h < 3 && !rc; h++) {
            const still_config *hc = h == 2 ? &liger : h ? &terraced : &sinks;
            const char *name = h == 2 ? "liger (w=64)" : h ? "terraced (w=64)" : "sinks (s=4, w=64)";
            failed = name;
            tool_progress(i, o->nn, "N=%lld: %s", (long long)N, name);
            double t = time_median(run_still, hc, &in, reps, &rc);
            print_cell(N, name, t,
                       h == 2 ? liger_flops(hc, N, o->heads, o->dim)
                              : hybrid_flops(hc, N, o->heads, o->dim, o->f),
                       peak, "");
        }
        if (!rc && N <= o->teacher_max && (failed = "teacher")) {
            tool_progress(i, o->nn, "N=%lld: teacher", (long long)N);
            row->teacher = time_median(run_teacher, &base, &in, reps, &rc);
        }
        char note[96];
        snprintf(note, sizeof note, "STILL/teacher = %.3f",
                 row->teacher > 0 ? row->still / row->teacher : NAN);
        print_cell(N, "teacher", row->teacher, fl_t, peak, row->teacher > 0 ? note : "");
        if (!rc && N <= o->teacher_max && (failed = "exact branch (all)")) {
            tool_progress(i, o->nn, "N=%lld: exact branch (routing all)", (long long)N);
            double t = time_median(run_still, &all, &in, reps, &rc);
            snprintf(note, sizeof note, "/teacher = %.3f",
                     row->teacher > 0 && t > 0 ? t / row->teacher : NAN);
            print_cell(N, "exact branch (all)", t, fl_t, peak, note);
        }
        if (!rc && o->blas && N <= 4096 && (failed = "teacher (cblas_sgemm)")) {
            tool_progress(i, o->nn, "N=%lld: teacher (cblas_sgemm)", (long long)N);
            row->teacher_blas = time_median(run_teacher_blas, &base, &in, reps, &rc);
        }
        print_cell(N, "teacher (cblas_sgemm)", row->teacher_blas, fl_t, peak, "");
        inputs_free(&in);
        if (!rc && N <= o->ref_max && (failed = "ref")) { /* fewer heads, scaled */
            tool_progress(i, o->nn, "N=%lld: ref path", (long long)N);
            if (!(rc = inputs_init(&in, N, o->ref_heads, o->dim, o->f))) {
                double t = time_median(run_ref, &base, &in, 1, &rc);
                row->ref = t < 0 ? t : t * (double)o->heads / (double)o->ref_heads;
                inputs_free(&in);
            }
        }
        if (rc)
            break;
        snprintf(note, sizeof note, "%lld head(s) x %lld; fast is %.0fx faster",
                 (long long)o->ref_heads, (long long)(o->heads / o->ref_heads),
                 row->ref / row->still);
        print_cell(N, "ref", row->ref, fl_still, peak, note);
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
        tool_progress(0, 0, "pure linear mode at N=%lld", (long long)Nl);
        if ((rc = inputs_init(&in, Nl, o->heads, o->dim, 64)))
            return tool_fail(TOOL_EXIT_LIBRARY, "bench", "%s", tool_status_name(rc));
        double t = time_median(run_still, &linear, &in, o->reps, &rc);
        inputs_free(&in);
        if (rc)
            return tool_fail(TOOL_EXIT_LIBRARY, "bench", "%s", tool_status_name(rc));
        tool_progress_clear();
        printf("\npure linear mode (k=0, L=0, f=64) at N=%lld: %.4f s, %.0f tokens/s\n",
               (long long)Nl, t, (double)Nl / t);
    }

    /* the gating projection: our one BLAS call (SPEC §6), at N = 4096 */
    {
        const int64_t Ng = 4096, hidden = o->heads * o->dim, out = o->heads * o->dim;
        float *X = malloc((size_t)(Ng * hidden) * sizeof(float));
        float *Wg = malloc((size_t)(out * hidden) * sizeof(float));
        float *G = malloc((size_t)(Ng * out) * sizeof(float));
        uint64_t s = 777;
        double t[5];
        tool_progress(0, 0, "gating projection");
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
        tool_progress_clear();
        const double rate = 2.0 * (double)Ng * (double)hidden * (double)out / t[2] * 1e-9;
        printf("gating projection (cblas_sgemm + sigmoid) N=%lld, hidden=%lld -> %lld: "
               "%.4f s, %.1f GFLOP/s (%.0f%% of the peak)\n", (long long)Ng, (long long)hidden,
               (long long)out, t[2], rate, 100.0 * rate / peak);
    }

    /* ratios from this run, at the lengths that were measured */
    printf("\nsummary of this run:\n");
    for (int i = 0; i < o->nn; i++)
        if (rows[i].teacher > 0 && (i + 1 == o->nn || index_of(o, 16384) == i))
            printf("  STILL / teacher at N=%lld: %.3f; teacher %.3f s, %.0f%% of the peak\n",
                   (long long)o->n[i], rows[i].still / rows[i].teacher, rows[i].teacher,
                   100.0 * teacher_flops(o->n[i], o->heads, o->dim) / rows[i].teacher * 1e-9 /
                       peak);
    int64_t i16 = index_of(o, 16384), i64 = index_of(o, 65536);
    if (i16 >= 0 && i64 >= 0)
        printf("  capped t(65536) / t(16384): %.2f (linear: 4)\n",
               rows[i64].capped / rows[i16].capped);
    if (o->nn >= 2 && o->n[o->nn - 1] > o->n[0])
        printf("  capped t(%lld) / t(%lld): %.2f for %.0fx the tokens\n",
               (long long)o->n[o->nn - 1], (long long)o->n[0],
               rows[o->nn - 1].capped / rows[0].capped, (double)o->n[o->nn - 1] / (double)o->n[0]);
    for (int i = o->nn - 1; i >= 0; i--)
        if (rows[i].ref > 0) {
            printf("  fast vs ref at N=%lld: %.0fx\n", (long long)o->n[i],
                   rows[i].ref / rows[i].still);
            break;
        }
    if (plot)
        return write_plot(o, rows);
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
    for (int64_t n = 1024; n <= 8192; n *= 2) /* about a minute on 2 cores */
        o.n[o.nn++] = n;
    o.heads = 8, o.dim = 128, o.f = 128, o.cap = 1024, o.reps = 3;
    o.ref_max = 1024, o.ref_heads = 1, o.teacher_max = 16384;
    o.threads = 2, o.isa = STILL_ISA_AUTO;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        const bench_option *b = NULL;
        int64_t x;
        if (tool_is_help(a)) {
            bench_usage(stdout);
            return TOOL_EXIT_OK;
        }
        for (size_t j = 0; j < sizeof bench_options / sizeof *bench_options && !b; j++)
            if (bench_options[j].arg ? tool_is_option(a, bench_options[j].name)
                                     : !strcmp(a, bench_options[j].name))
                b = &bench_options[j];
        if (!b)
            return tool_fail(TOOL_EXIT_USAGE, "bench", "unknown option '%s' (see still bench "
                             "--help)", a);
        if (b->kind == OPT_DECODE) /* only as the first option (handled above) */
            return tool_fail(TOOL_EXIT_USAGE, "bench", "--decode must be the first option");
        if (b->arg && !(val = tool_option_value("bench", argc, argv, &i, b->name)))
            return TOOL_EXIT_USAGE;
        void *field = (char *)&o + b->off;
        switch (b->kind) {
        case OPT_INT:
        case OPT_THREADS:
            if (tool_parse_int64("bench", b->name, val, b->lo, b->hi, &x))
                return TOOL_EXIT_USAGE;
            if (b->kind == OPT_INT)
                *(int64_t *)field = x;
            else
                *(int *)field = (int)x;
            break;
        case OPT_LIST:
            if (parse_list(val, &o))
                return tool_fail(TOOL_EXIT_USAGE, "bench", "--n: expected a list of lengths "
                                 "like 1024,4096, found '%s'", val);
            break;
        case OPT_ISA:
            if ((*(int *)field = still__isa_parse(val)) < 0)
                return tool_fail(TOOL_EXIT_USAGE, "bench", "--isa: expected auto, generic, "
                                 "avx2, avx512 or neon, found '%s'", val);
            break;
        case OPT_FLAG:
            *(int *)field = 1;
            break;
        case OPT_FILE:
            *(const char **)field = val;
            break;
        default: /* OPT_PROGRESS */
            tool_progress_option(a);
            break;
        }
    }
    if (o.heads % o.ref_heads)
        return tool_fail(TOOL_EXIT_USAGE, "bench", "--ref-heads must divide --heads");
    return bench_run(&o);
}
