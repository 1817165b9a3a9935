/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * bench_decode.c -- per-token decode latency and memory of the streaming
 * state (SPEC §7) against full softmax decode over a growing KV cache, at
 * context lengths 1K..64K by default (--n up to 256K and more).  Built as bench/bench_decode and run
 * as `still bench --decode` (tools/cmd_bench_decode.c compiles this file).
 *
 * For each variant of STILL (fast path, C = 64, k = 4, L = 2, w = 64,
 * hedgehog with a random W of f rows; capped at max_sel = --cap, and
 * uncapped) one state is grown token block by token block (outputs off,
 * the cheapest prefill the API offers) through every context length in
 * turn; at each length it is cloned through still_state_save/load, and
 * --steps decode steps (one token each, outputs on) are timed one by one
 * on the clone: the table gives their wall-clock median and mean process
 * CPU time (arrival steps included), and still_state_bytes of the
 * grown state; a second table gives the spread of the capped and
 * uncapped steps: p90, the step that meets a chunk arrival (every C = 64
 * tokens: the split of a chunk, top-k, folds and the cap's evictions) and
 * what a token costs on average over a chunk, median + (arrival -
 * median) / 64 (robust, where a mean on a shared machine is mostly the
 * scheduler's).  The clone first takes --warmup untimed steps (default
 * 640, ten chunks): its first step repacks the whole cache (a loaded state
 * packs its panels lazily, lib/fast.h), and until its history has cycled
 * once (~512 steps) the steps write pages of it for the first time, ~7
 * page faults a step (8 heads) that cost ~90 us on the test VM, doubling
 * the step at 1K: a cost of the first tokens after a load, not of decode
 * at length N.  Full
 * softmax decode keeps the KV cache of N tokens (random:
 * its cost does not depend on the values) and per step appends the new k,
 * v and attends over all N+1 keys per head with the fast path's kernels
 * (gemm + online softmax, as the fast teacher).  Both use --threads
 * threads over the heads (default 1).
 */
#ifndef _POSIX_C_SOURCE /* tools/cmd_bench_decode.c defines it first */
#define _POSIX_C_SOURCE 200809L
#endif
#include "fast.h"
#include "state.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LENGTHS 16

/* Progress: `still bench --decode` (tools/cmd_bench_decode.c) shows it on
 * the tool's progress line; alone, this program shows none. */
#ifndef BENCH_NAME /* the name its messages start with */
#define BENCH_NAME "bench_decode"
#endif
#ifndef BENCH_PROGRESS
#define BENCH_PROGRESS(done, total, ...) ((void)0)
#define BENCH_PROGRESS_OPTION(arg) (!strcmp((arg), "--no-progress"))
#define BENCH_PROGRESS_CLEAR() ((void)0)
#endif
#define MAX_STEPS 1024

typedef struct decode_bench {
    int64_t n[MAX_LENGTHS];
    int nn;
    int64_t heads, dim, f, cap, steps, warmup, full_max, block;
    int threads, isa;
    char why[200]; /* the usage error, one line */
} decode_bench;

static double clock_of(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double now(void)
{
    return clock_of(CLOCK_MONOTONIC);
}

/* CPU seconds of the process (every thread): on a shared machine the
 * work itself, whatever the scheduler does to the wall clock. */
static double cpu_now(void)
{
    return clock_of(CLOCK_PROCESS_CPUTIME_ID);
}

/* Seconds of one measured step: the wall clock's median, 90th percentile
 * and median over the chunk-arrival steps (NAN when no timed step met
 * one); the process CPU time of all steps over their number (one clock
 * read before and after them: a CPU clock is a system call, and on the
 * test VM one between two steps made the next ~20 us slower). */
typedef struct step_time {
    double wall, cpu, p90, arrival;
} step_time;

/* Uniform [-1, 1) from a 64-bit LCG (inputs only need to be generic). */
static void fill(float *x, size_t n, uint64_t *seed)
{
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (float)((double)(*seed >> 11) * 0x1.0p-52 - 1.0);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int64_t n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* The q-quantile of t [n] sorted (nearest rank). */
static double quantile(const double *t, int64_t n, double q)
{
    int64_t i = (int64_t)ceil(q * (double)n) - 1;
    return t[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* ---- STILL ---------------------------------------------------------------- */

typedef struct still_run {
    still_config cfg;
    still_shape shape; /* B = 1, Hq = Hk = heads, seq_len ignored */
    still_params params;
    double *W;
    float *q, *k, *v, *o; /* one block of up to `block` tokens */
} still_run;

static int still_run_init(still_run *s, const decode_bench *b, int64_t cap, int routing,
                          uint64_t *seed)
{
    const int64_t H = b->heads, d = b->dim,
                  n = b->block > MAX_STEPS ? b->block : MAX_STEPS; /* a block, or the steps */
    memset(s, 0, sizeof *s);
    still_config_default(&s->cfg);
    s->cfg.chunk = 64;
    s->cfg.topk = 4;
    s->cfg.local = 2;
    s->cfg.window = 64;
    s->cfg.max_sel = cap;
    s->cfg.routing = routing; /* sinks: 4 sinks (the default) */
    s->cfg.threads = b->threads;
    s->cfg.isa = b->isa;
    s->shape = (still_shape){1, H, H, 1, d, d, STILL_LAYOUT_BHND};
    still_params_default(&s->params);
    s->W = malloc((size_t)(H * b->f * d) * sizeof *s->W);
    s->q = malloc((size_t)(H * n * d) * sizeof(float));
    s->k = malloc((size_t)(H * n * d) * sizeof(float));
    s->v = malloc((size_t)(H * n * d) * sizeof(float));
    s->o = malloc((size_t)(H * n * d) * sizeof(float));
    if (!s->W || !s->q || !s->k || !s->v || !s->o)
        return STILL_E_NOMEM;
    for (int64_t i = 0; i < H * b->f * d; i++) { /* W ~ U(-1,1)/sqrt(d) */
        float x;
        fill(&x, 1, seed);
        s->W[i] = x / sqrt((double)d);
    }
    s->params.fq.W = s->W;
    s->params.fq.f = b->f;
    return STILL_OK;
}

static void still_run_free(still_run *s)
{
    free(s->W), free(s->q), free(s->k), free(s->v), free(s->o);
}

/* n random tokens into the run's q, k, v. */
static void fill_tokens(still_run *s, int64_t n, uint64_t *seed)
{
    const size_t count = (size_t)(s->shape.heads_q * n * s->shape.dim_qk);
    fill(s->q, count, seed);
    fill(s->k, count, seed);
    fill(s->v, count, seed);
}

/* Appends the n tokens of the run's q, k, v from token `at` of a block of
 * n-token blocks (BHND, B = 1); outputs only when want_o. */
static int still_append(still_run *s, still_state *st, int64_t n, int64_t at, int want_o)
{
    const int64_t off = at * s->shape.heads_q * s->shape.dim_qk;
    still_tensors t = {STILL_F32, s->q + off, s->k + off, s->v + off, NULL,
                       want_o ? s->o : NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    return still_state_append(st, n, &t);
}

/* Appends n random tokens; outputs only when want_o. */
static int still_append_random(still_run *s, still_state *st, int64_t n, int want_o,
                               uint64_t *seed)
{
    fill_tokens(s, n, seed);
    return still_append(s, st, n, 0, want_o);
}

/* The times of `steps` one-token appends on a clone of st, after `warmup`
 * untimed ones. */
static int still_time_steps(still_run *s, const still_state *st, int64_t steps,
                            int64_t warmup, uint64_t *seed, step_time *med)
{
    double t[MAX_STEPS], arr[MAX_STEPS], c0 = 0.0;
    int64_t P = 0, na = 0;
    size_t len;
    still_state *clone = NULL;
    unsigned char *buf = NULL;
    int rc = still_state_save(st, NULL, 0, &len);
    if (rc || !(buf = malloc(len)))
        return rc ? rc : STILL_E_NOMEM;
    if (!(rc = still_state_save(st, buf, len, &len)))
        rc = still_state_load(buf, len, &s->params, &clone);
    free(buf);
    for (int64_t i = 0; !rc && i < warmup; i++)
        rc = still_append_random(s, clone, 1, 1, seed);
    if (!rc)
        rc = still_state_position(clone, &P);
    fill_tokens(s, steps, seed); /* the steps' tokens, not timed (~10 us a step) */
    if (!rc)
        c0 = cpu_now();
    for (int64_t i = 0; !rc && i < steps; i++, P++) {
        double t0 = now(); /* vDSO: no system call */
        rc = still_append(s, clone, 1, i, 1);
        t[i] = now() - t0;
        if (P % s->cfg.chunk == 0) /* the first query of a chunk: an arrival */
            arr[na++] = t[i];
    }
    const double cpu = cpu_now() - c0;
    still_state_destroy(clone);
    if (!rc) {
        med->wall = median(t, steps); /* sorts t */
        med->p90 = quantile(t, steps, 0.9);
        med->arrival = na ? median(arr, na) : NAN;
        med->cpu = cpu / (double)steps;
    }
    return rc;
}

/* ---- full softmax decode over a KV cache ----------------------------------- */

typedef struct full_run {
    const still__kernels *kern;
    int64_t H, d, cap_tokens, n;    /* n: tokens in the cache */
    float *K, *V;                   /* [H][cap_tokens][d] */
    float *S;                       /* [threads][cap_tokens]: one head's logits */
    float *q, *o;                   /* [H][d] */
    int threads;
} full_run;

static void full_free(full_run *f)
{
    free(f->K), free(f->V), free(f->S), free(f->q), free(f->o);
    memset(f, 0, sizeof *f);
}

static int full_init(full_run *f, const decode_bench *b, const still__kernels *kern,
                     int64_t N, uint64_t *seed)
{
    const int64_t H = b->heads, d = b->dim, cap = N + b->steps;
    memset(f, 0, sizeof *f);
    f->kern = kern, f->H = H, f->d = d, f->cap_tokens = cap, f->n = N, f->threads = b->threads;
    f->K = malloc((size_t)(H * cap * d) * sizeof(float));
    f->V = malloc((size_t)(H * cap * d) * sizeof(float));
    f->S = malloc((size_t)(b->threads * cap) * sizeof(float));
    f->q = malloc((size_t)(H * d) * sizeof(float));
    f->o = malloc((size_t)(H * d) * sizeof(float));
    if (!f->K || !f->V || !f->S || !f->q || !f->o) {
        full_free(f);
        return STILL_E_NOMEM;
    }
    for (int64_t h = 0; h < H; h++) { /* the cache of N tokens */
        fill(f->K + h * cap * d, (size_t)(N * d), seed);
        fill(f->V + h * cap * d, (size_t)(N * d), seed);
    }
    return STILL_OK;
}

/* SPEC §1 for one new token: appends its k, v to the cache and attends
 * with q over all n+1 keys, per head: logits by gemm, online softmax,
 * weighted values by gemm, divided by the normalizer. */
/* The keys and values of the `steps` tokens to come, before the timed
 * loop (as the STILL side's tokens); each step's q is filled untimed. */
static void full_fill_kv(full_run *f, int64_t steps, uint64_t *seed)
{
    const int64_t d = f->d, cap = f->cap_tokens;
    for (int64_t h = 0; h < f->H; h++) {
        fill(f->K + (h * cap + f->n) * d, (size_t)(steps * d), seed);
        fill(f->V + (h * cap + f->n) * d, (size_t)(steps * d), seed);
    }
}

/* Head h of one step: softmax attention of q over the n + 1 keys. */
static void full_head(full_run *f, int64_t h, float *S)
{
    const int64_t d = f->d, cap = f->cap_tokens, n = f->n + 1;
    const float scale = 1.0f / sqrtf((float)d);
    float *q = f->q + h * d, mx = -INFINITY, l = 0.0f, alpha;
    for (int64_t i = 0; i < d; i++)
        q[i] *= scale;
    f->kern->gemm(n, 1, d, f->K + h * cap * d, d, 1, q, 1, S, 1, 0);
    f->kern->softmax_cols(n, 1, S, 1, &mx, &l, &alpha);
    f->kern->gemm(1, d, n, S, 0, 1, f->V + h * cap * d, d, f->o + h * d, d, 0);
    for (int64_t i = 0; i < d; i++)
        f->o[h * d + i] /= l;
}

/* One timed step over the heads: with one thread a plain loop, as the
 * STILL state does (an OpenMP region of one thread costs system calls). */
static void full_step(full_run *f)
{
    if (f->threads <= 1) {
        for (int64_t h = 0; h < f->H; h++)
            full_head(f, h, f->S);
    } else {
#pragma omp parallel for num_threads(f->threads) schedule(static)
        for (int64_t h = 0; h < f->H; h++)
            full_head(f, h, f->S + (int64_t)omp_get_thread_num() * f->cap_tokens);
    }
    f->n++;
}

/* ---- the table --------------------------------------------------------------- */

typedef struct row {
    int64_t n;
    step_time t[5], full_t; /* per token: capped, uncapped, sinks, terraced, liger;
                               full softmax */
    size_t bytes[5];
    double full_bytes;
    int full_done;
} row;

static void print_header(const decode_bench *b, const char *isa)
{
    printf("decode latency and memory (SPEC §7): B=1, %lld query = kv heads, d = dv = %lld,\n"
           "STILL fast path (%s, %d thread%s): C=64 k=4 L=2 w=64, hedgehog f=%lld (m=%lld),\n"
           "capped at max_sel=%lld and uncapped; full softmax: the same kernels over a KV\n"
           "cache of N tokens.  Per token, microseconds: of %lld one-token steps after N\n"
           "(+%lld untimed) tokens, the wall-clock median and the process CPU mean.\n\n",
           (long long)b->heads, (long long)b->dim, isa, b->threads, b->threads > 1 ? "s" : "",
           (long long)b->f, (long long)(2 * b->f), (long long)b->cap, (long long)b->steps,
           (long long)b->warmup);
    printf("%7s | %-27s | %-27s | %-27s | %s\n", "", "STILL capped", "STILL uncapped",
           "full softmax", "KV bytes /");
    printf("%7s | %8s %8s %9s | %8s %8s %9s | %8s %8s %9s | %s\n", "N", "wall us", "cpu us",
           "state MiB", "wall us", "cpu us", "state MiB", "wall us", "cpu us", "KV MiB",
           "capped state");
}

static void print_row(const row *r)
{
    const double MiB = 1024.0 * 1024.0;
    printf("%7lld | %8.1f %8.1f %9.2f | %8.1f %8.1f %9.2f | ", (long long)r->n,
           1e6 * r->t[0].wall, 1e6 * r->t[0].cpu, (double)r->bytes[0] / MiB,
           1e6 * r->t[1].wall, 1e6 * r->t[1].cpu, (double)r->bytes[1] / MiB);
    if (r->full_done)
        printf("%8.1f %8.1f %9.1f", 1e6 * r->full_t.wall, 1e6 * r->full_t.cpu,
               r->full_bytes / MiB);
    else
        printf("%8s %8s %9.1f", "-", "-", r->full_bytes / MiB);
    printf(" | %8.1f\n", r->full_bytes / (double)r->bytes[0]);
    fflush(stdout);
}

/* The spread of the STILL steps (wall clock). */
static void print_spread(const decode_bench *b, const row *rows, int nn)
{
    printf("\nSTILL decode steps, wall us: median, p90, the step of a chunk arrival\n"
           "(every 64 tokens; median of %lld), and a token's cost averaged over a chunk,\n"
           "median + (arrival - median) / 64\n\n",
           (long long)(b->steps / 64 > 0 ? b->steps / 64 : 0));
    printf("%7s | %-35s | %-35s\n", "", "STILL capped", "STILL uncapped");
    printf("%7s | %8s %8s %8s %8s | %8s %8s %8s %8s\n", "N", "median", "p90", "arrival",
           "amort", "median", "p90", "arrival", "amort");
    for (int i = 0; i < nn; i++) {
        printf("%7lld", (long long)rows[i].n);
        for (int v = 0; v < 2; v++) {
            const step_time *t = &rows[i].t[v];
            printf(" | %8.1f %8.1f %8.1f %8.1f", 1e6 * t->wall, 1e6 * t->p90, 1e6 * t->arrival,
                   1e6 * (t->wall + (t->arrival - t->wall) / 64.0));
        }
        printf("\n");
    }
}

/* What a cap buys: time per token flat in N, a state much smaller than the KV cache. */
static void print_ratios(const row *rows, int nn, int64_t cap_fill)
{
    const row *r4 = NULL, *r64 = NULL, *last = &rows[nn - 1];
    for (int i = 0; i < nn; i++) {
        if (rows[i].n == 4096)
            r4 = &rows[i];
        if (rows[i].n == 65536)
            r64 = &rows[i];
    }
    printf("\n");
    if (r4 && last->n > r4->n) {
        double w = last->t[0].wall / r4->t[0].wall, c = last->t[0].cpu / r4->t[0].cpu;
        printf("capped t(%lld)/t(4096): wall %.2f, cpu %.2f (flat: 1)\n", (long long)last->n,
               w, c);
    }
    /* the cache holds max_sel tokens from N = max_sel * C / k on (SPEC §5): from
     * there on, the exact branch stops growing */
    const row *full = NULL;
    for (int i = 0; i < nn && !full; i++)
        if (rows[i].n >= cap_fill)
            full = &rows[i];
    if (full && last->n > full->n)
        printf("capped t(%lld)/t(%lld), the cache full at both: wall %.2f, cpu %.2f\n",
               (long long)last->n, (long long)full->n, last->t[0].wall / full->t[0].wall,
               last->t[0].cpu / full->t[0].cpu);
    if (r64)
        printf("capped state at 65536 = 1/%.1f of the full KV cache\n",
               r64->full_bytes / (double)r64->bytes[0]);
}

/* The hybrid family (SPEC §13-14) beside STILL: per-token time, and the
 * state's bytes per token of context, of every variant. */
static void print_hybrid(const row *rows, int nn)
{
    static const char *const names[5] = {"capped", "uncapped", "sinks", "terraced", "liger"};
    printf("\nsinks (s=4, w=64) and terraced (w=64), rest linear, same maps, and mixer\n"
           "liger (w=64, SPEC §16): per token wall-clock median and CPU mean in us;\n"
           "state bytes per token of context (still_state_bytes / N) of every\n"
           "variant, and of the full KV cache\n\n");
    printf("%7s | %-17s | %-17s | %-17s | %-56s\n", "", "sinks", "terraced", "liger",
           "state bytes per token");
    printf("%7s | %8s %8s | %8s %8s | %8s %8s |", "N", "wall us", "cpu us", "wall us", "cpu us",
           "wall us", "cpu us");
    for (int v = 0; v < 5; v++)
        printf(" %8s", names[v]);
    printf(" %8s\n", "full KV");
    for (int i = 0; i < nn; i++) {
        const row *r = &rows[i];
        printf("%7lld | %8.1f %8.1f | %8.1f %8.1f | %8.1f %8.1f |", (long long)r->n,
               1e6 * r->t[2].wall, 1e6 * r->t[2].cpu, 1e6 * r->t[3].wall, 1e6 * r->t[3].cpu,
               1e6 * r->t[4].wall, 1e6 * r->t[4].cpu);
        for (int v = 0; v < 5; v++)
            printf(" %8.1f", (double)r->bytes[v] / (double)r->n);
        printf(" %8.1f\n", r->full_bytes / (double)r->n);
    }
}

/* ---- options ----------------------------------------------------------------- */

static int usage(FILE *f, int status)
{
    fprintf(f,
            "usage: bench_decode [options]   (or: still bench --decode [options])\n"
            "\n"
            "Per-token decode latency and state bytes of STILL (capped and uncapped),\n"
            "sinks, terraced and liger vs full softmax decode over a growing KV cache (SPEC §7),\n"
            "and the state bytes per token of each.\n"
            "\n"
            "  --n N1,N2,...   context lengths, ascending (default 1024,4096,16384,65536)\n"
            "  --heads H       query = kv heads (default 8)\n"
            "  --dim D         d = dv (default 128)\n"
            "  --f F           rows of the random NP-Map W (default 128)\n"
            "  --cap M         max_sel of the capped variant (default 1024)\n"
            "  --steps S       timed decode steps per point (default 64)\n"
            "  --warmup W      untimed steps before them (default 640: a loaded state\n"
            "                  first writes the pages of its history, ~512 steps)\n"
            "  --threads T     threads over the heads (default 1: a decode step of 8\n"
            "                  heads is ~0.1-1 ms, and on a shared machine a thread\n"
            "                  team's barrier costs more than it saves)\n"
            "  --isa I         auto|generic|avx2|avx512|neon (default auto)\n"
            "  --full-max N    largest N for full softmax (default 16384; its KV cache\n"
            "                  at 256K, 8 heads, d = 128 is 2 GiB)\n"
            "  --block B       tokens per append while growing the states (default 4096)\n"
            "  --no-progress   no progress line on stderr (shown only on a terminal)\n"
            "A long run: --n 1024,4096,16384,65536,262144 --full-max 262144.\n");
    return status;
}

static int parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static int bad_value(decode_bench *b, const char *opt, const char *val)
{
    snprintf(b->why, sizeof b->why, "%s: bad value '%s'", opt, val);
    return -1;
}

static int parse(decode_bench *b, int argc, char **argv)
{
    static const char *const isas[] = {"auto", "generic", "avx2", "avx512", "neon"};
    b->nn = 0;
    for (int64_t n = 1024; n <= 65536; n *= 4) /* a small machine's; --n for more */
        b->n[b->nn++] = n;
    b->heads = 8, b->dim = 128, b->f = 128, b->cap = 1024, b->steps = 64, b->warmup = 640;
    b->full_max = 16384, b->block = 4096, b->threads = 1, b->isa = STILL_ISA_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return 1;
        if (BENCH_PROGRESS_OPTION(a))
            continue;
        static const char *const names[] = {"--n",   "--isa",    "--threads", "--heads",
                                            "--dim", "--f",      "--cap",     "--steps",
                                            "--warmup", "--full-max", "--block"};
        int known = 0;
        for (size_t j = 0; j < sizeof names / sizeof *names; j++)
            known |= !strcmp(a, names[j]);
        if (!known || !val) {
            snprintf(b->why, sizeof b->why, known ? "%s needs a value" : "unknown option '%s'", a);
            return -1;
        }
        i++;
        if (!strcmp(a, "--n")) {
            char *copy = strdup(val), *save = NULL;
            b->nn = 0;
            for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                if (b->nn == MAX_LENGTHS || parse_int(tok, 1, (int64_t)1 << 26, &b->n[b->nn++]) ||
                    (b->nn > 1 && b->n[b->nn - 1] <= b->n[b->nn - 2])) {
                    free(copy);
                    return bad_value(b, a, val);
                }
            free(copy);
            if (!b->nn)
                return bad_value(b, a, val);
            continue;
        }
        if (!strcmp(a, "--isa")) {
            b->isa = -1;
            for (int j = 0; j < 5; j++)
                if (!strcmp(val, isas[j]))
                    b->isa = j;
            if (b->isa < 0)
                return bad_value(b, a, val);
            continue;
        }
        struct { const char *name; int64_t lo, hi; int64_t *dst; } ints[] = {
            {"--heads", 1, 1024, &b->heads}, {"--dim", 1, 4096, &b->dim},
            {"--f", 1, 4096, &b->f},         {"--cap", 1, (int64_t)1 << 24, &b->cap},
            {"--steps", 1, MAX_STEPS, &b->steps},
            {"--warmup", 0, (int64_t)1 << 20, &b->warmup},
            {"--full-max", 0, (int64_t)1 << 26, &b->full_max},
            {"--block", 1, (int64_t)1 << 20, &b->block},
        };
        int found = 0;
        for (size_t j = 0; j < sizeof ints / sizeof ints[0] && !found; j++)
            if (!strcmp(a, ints[j].name)) {
                if (parse_int(val, ints[j].lo, ints[j].hi, ints[j].dst))
                    return bad_value(b, a, val);
                found = 1;
            }
        if (!strcmp(a, "--threads")) {
            if (parse_int(val, 1, 256, &x))
                return bad_value(b, a, val);
            b->threads = (int)x;
            found = 1;
        }
        if (!found) /* never: names[] lists every option */
            return -1;
    }
    return 0;
}

/* ---- the run ------------------------------------------------------------------ */

/* Grows one STILL variant through every length, filling rows[].t[v] and
 * .bytes[v]. */
static int run_still(const decode_bench *b, int v, row *rows, uint64_t *seed)
{
    still_run s;
    still_state *st = NULL;
    static const int routing[5] = {STILL_ROUTING_SALIENCY, STILL_ROUTING_SALIENCY,
                                   STILL_ROUTING_SINKS, STILL_ROUTING_TERRACED,
                                   STILL_ROUTING_SALIENCY};
    static const char *const name[5] = {"STILL capped", "STILL uncapped", "sinks", "terraced",
                                        "liger"};
    int rc = still_run_init(&s, b, v == 0 ? b->cap : 0, routing[v], seed);
    if (v == 4) /* SPEC §16: w = 64, q_lin = q, k_lin = k */
        s.cfg.mixer = STILL_MIXER_LIGER;
    if (!rc)
        rc = still_state_create(&s.cfg, &s.shape, &s.params, STILL_PATH_FAST, &st);
    double grow = 0.0;
    for (int i = 0; !rc && i < b->nn; i++) {
        int64_t P;
        still_state_position(st, &P);
        double t0 = now();
        BENCH_PROGRESS(i, b->nn, "%s: N=%lld", name[v], (long long)b->n[i]);
        while (!rc && P < b->n[i]) {
            int64_t n = b->n[i] - P < b->block ? b->n[i] - P : b->block;
            rc = still_append_random(&s, st, n, 0, seed);
            P += n;
        }
        grow += now() - t0;
        if (!rc)
            rc = still_state_bytes(st, &rows[i].bytes[v]);
        if (!rc)
            rc = still_time_steps(&s, st, b->steps, b->warmup, seed, &rows[i].t[v]);
    }
    (void)grow;
    still_state_destroy(st);
    still_run_free(&s);
    return rc;
}

static int run_full(const decode_bench *b, const still__kernels *kern, row *r, uint64_t *seed)
{
    double t[MAX_STEPS];
    full_run f;
    r->full_bytes = (double)r->n * (double)b->heads * 2.0 * (double)b->dim * sizeof(float);
    if (r->n > b->full_max)
        return STILL_OK;
    int rc = full_init(&f, b, kern, r->n, seed);
    if (rc)
        return rc;
    full_fill_kv(&f, b->steps, seed);
    const double c0 = cpu_now(); /* one mean: the q fills (~1 us) included */
    for (int64_t i = 0; i < b->steps; i++) {
        fill(f.q, (size_t)(f.H * f.d), seed);
        const double t0 = now();
        full_step(&f);
        t[i] = now() - t0;
    }
    r->full_t.cpu = (cpu_now() - c0) / (double)b->steps;
    r->full_t.wall = median(t, b->steps);
    r->full_done = 1;
    full_free(&f);
    return STILL_OK;
}

/* The whole benchmark; argv as `bench_decode`'s.  Returns the exit status
 * (0, 2 usage, 4 library failure). */
int still_bench_decode(int argc, char **argv);
int still_bench_decode(int argc, char **argv)
{
    decode_bench b;
    const still__kernels *kern;
    row rows[MAX_LENGTHS];
    uint64_t seed = 12345;
    int rc = parse(&b, argc, argv);
    if (rc > 0)
        return usage(stdout, 0);
    if (rc < 0) { /* one line, as every command of the tool */
        fprintf(stderr, BENCH_NAME ": %s (see --help)\n", b.why);
        return 2;
    }
    if ((rc = still__kernels_select(b.isa, &kern))) {
        fprintf(stderr, BENCH_NAME ": --isa: %s\n", still_strerror(rc));
        return 4;
    }
    memset(rows, 0, sizeof rows);
    for (int i = 0; i < b.nn; i++)
        rows[i].n = b.n[i];
    print_header(&b, kern->name);
    for (int v = 0; v < 5 && !rc; v++)
        rc = run_still(&b, v, rows, &seed);
    for (int i = 0; i < b.nn && !rc; i++) {
        BENCH_PROGRESS(i, b.nn, "full softmax: N=%lld", (long long)rows[i].n);
        rc = run_full(&b, kern, &rows[i], &seed);
        BENCH_PROGRESS_CLEAR();
        if (!rc)
            print_row(&rows[i]);
    }
    if (rc) {
        BENCH_PROGRESS_CLEAR();
        fprintf(stderr, BENCH_NAME ": %s\n", still_strerror(rc));
        return 4;
    }
    print_spread(&b, rows, b.nn);
    print_ratios(rows, b.nn, b.cap * 64 / 4);
    print_hybrid(rows, b.nn);
    return 0;
}

#ifndef STILL_BENCH_DECODE_NO_MAIN
int main(int argc, char **argv)
{
    return still_bench_decode(argc, argv);
}
#endif
