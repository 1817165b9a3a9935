/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * cmd_demo.c -- `still demo`, the tool's built-in default run.
 *
 * Part 1 runs STILL on real attention inputs shipped with the project
 * (tests/data/tiny-lm: layers 2 and 5 of a small byte-level language model,
 * with the PyTorch teacher output) and compares four ways of choosing the
 * exact keys, each with the same budget:
 *   saliency  STILL's self-saliency top-k per chunk (SPEC §4-5),
 *   window    position-based sliding window (SPEC §6 routing `window`) with
 *             the same mean number of exact keys,
 *   random    k random tokens per chunk, forced through selection_in,
 *   best      the k tokens per chunk that hold the most teacher attention
 *             from the queries that see the chunk split (an oracle).
 * For each it prints the share of the teacher's attention mass on split
 * ("far") chunks that falls on exact keys, and the output error against the
 * full softmax teacher (SPEC §1).
 *
 * Part 2 plants needles in a synthetic haystack of N = 16K-64K tokens (4K on
 * the ref path) and asks whether each routing retrieves them.
 *
 * The attention statistics (teacher probabilities, far mass) are computed
 * here with plain loops, independently of the library.
 */
#define _POSIX_C_SOURCE 200809L

#include "lm_model.h"
#include "tool.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The data's installed directory ($(pkgdatadir)) and the source tree's
 * (tests/data), which serves a build that is not installed. */
#ifndef STILL_DATA_DIR
#define STILL_DATA_DIR "tests/data"
#endif
#ifndef STILL_SOURCE_DATA_DIR
#define STILL_SOURCE_DATA_DIR STILL_DATA_DIR
#endif

enum { PATH_AUTO = 0, PATH_REF = 1, PATH_FAST = 2 };
enum { NEEDLES = 8 };
/* A bias that drives every pre-activation negative: with relu, phi = 1e-12
 * everywhere (SPEC §2) and kappa ~ 1e-22, so the linear branch vanishes. */
#define LINEAR_OFF_BIAS (-1e6)

typedef struct demo {
    const char *data;   /* directory holding tiny-lm/ */
    int path;           /* PATH_* as asked */
    int fast;           /* 1: the fast path is in use */
    int threads;
    int needle;         /* run part 2 */
    int64_t needle_len; /* 0: the default lengths */
    uint64_t seed;
    const char *model;  /* part 3's model directory, NULL: none asked */
    int model_part;     /* 0: --no-model */
} demo;

/* One attention problem, batch 1, layout BHND, inputs in double. */
typedef struct problem {
    still_shape shape;
    double *q, *k, *v;
} problem;

/* One routing's results. */
typedef struct row {
    char name[48];
    double far_kept;     /* mean share of far teacher mass on exact keys */
    double err_default;  /* relative output error, default (untrained) maps */
    double err_exact;    /* relative output error, linear branch off */
    double seconds;      /* time of the default-map forward */
    int ref_fallback;    /* the fast path refused this one: ran on ref */
} row;

/* ---- small utilities --------------------------------------------------- */

/* splitmix64: a fixed-seed generator, so every run prints the same numbers. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *s) /* in (0, 1] */
{
    return ((double)(rng_next(s) >> 11) + 1.0) / 9007199254740992.0;
}

static double rng_gauss(uint64_t *s)
{
    double u1 = rng_uniform(s), u2 = rng_uniform(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void problem_free(problem *P)
{
    free(P->q);
    free(P->k);
    free(P->v);
    memset(P, 0, sizeof *P);
}

static int64_t count_q(const still_shape *s) { return s->heads_q * s->seq_len * s->dim_qk; }
static int64_t count_k(const still_shape *s) { return s->heads_kv * s->seq_len * s->dim_qk; }
static int64_t count_v(const still_shape *s) { return s->heads_kv * s->seq_len * s->dim_v; }
static int64_t count_o(const still_shape *s) { return s->heads_q * s->seq_len * s->dim_v; }

/* sqrt(sum (a-b)^2 / sum b^2) over the queries t >= first of every head. */
static double relative_error(const still_shape *s, const double *a, const double *b,
                             int64_t first)
{
    double num = 0.0, den = 0.0;
    for (int64_t h = 0; h < s->heads_q; h++)
        for (int64_t t = first; t < s->seq_len; t++)
            for (int64_t e = 0; e < s->dim_v; e++) {
                int64_t i = (h * s->seq_len + t) * s->dim_v + e;
                num += (a[i] - b[i]) * (a[i] - b[i]);
                den += b[i] * b[i];
            }
    return den > 0.0 ? sqrt(num / den) : 0.0;
}

/* ---- calling the library on the chosen path ------------------------------ */

static float *to_float(const double *x, int64_t n)
{
    float *y = malloc((size_t)n * sizeof *y);
    if (y)
        for (int64_t i = 0; i < n; i++)
            y[i] = (float)x[i];
    return y;
}

/* One call of still_[ref_]forward (teacher == 0) or still_[ref_]teacher on
 * the fast path (float32, converted here) or the ref path (double). */
static int call_library(int fast, int teacher, const still_config *cfg,
                        const still_params *params, const problem *P,
                        const uint8_t *sel_in, uint8_t *sel_out, double *o, double *seconds)
{
    const still_shape *s = &P->shape;
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.selection_in = sel_in;
    t.selected = sel_out;
    int rc;
    if (!fast) {
        t.dtype = STILL_F64;
        t.q = P->q;
        t.k = P->k;
        t.v = P->v;
        t.o = o;
        double t0 = tool_now();
        rc = teacher ? still_ref_teacher(cfg, s, &t) : still_ref_forward(cfg, s, params, &t);
        *seconds = tool_now() - t0;
        return rc;
    }
    float *q = to_float(P->q, count_q(s)), *k = to_float(P->k, count_k(s));
    float *v = to_float(P->v, count_v(s));
    float *of = malloc((size_t)count_o(s) * sizeof *of);
    rc = STILL_E_NOMEM;
    if (q && k && v && of) {
        t.dtype = STILL_F32;
        t.q = q;
        t.k = k;
        t.v = v;
        t.o = of;
        double t0 = tool_now();
        rc = teacher ? still_teacher(cfg, s, &t) : still_forward(cfg, s, params, &t);
        *seconds = tool_now() - t0;
        if (rc == STILL_OK)
            for (int64_t i = 0; i < count_o(s); i++)
                o[i] = of[i];
    }
    free(q);
    free(k);
    free(v);
    free(of);
    return rc;
}

/* As call_library on the demo's path; a combination the fast path refuses
 * (STILL_E_UNSUPPORTED) runs on the ref path and *fallback says so.
 * Returns TOOL_EXIT_OK, or TOOL_EXIT_LIBRARY after the one-line error. */
static int attend(const demo *D, int teacher, const still_config *cfg,
                  const still_params *params, const problem *P, const uint8_t *sel_in,
                  uint8_t *sel_out, double *o, double *seconds, int *fallback)
{
    int rc = call_library(D->fast, teacher, cfg, params, P, sel_in, sel_out, o, seconds);
    *fallback = 0;
    if (rc == STILL_E_UNSUPPORTED && D->fast && D->path == PATH_AUTO) {
        *fallback = 1;
        rc = call_library(0, teacher, cfg, params, P, sel_in, sel_out, o, seconds);
    }
    if (rc != STILL_OK)
        return tool_fail(TOOL_EXIT_LIBRARY, "demo", "%s: %s",
                         teacher ? (D->fast ? "still_teacher" : "still_ref_teacher")
                                 : (D->fast ? "still_forward" : "still_ref_forward"),
                         tool_status_name(rc));
    return TOOL_EXIT_OK;
}

/* Decides the path: the fast path if asked or available, else ref.
 * Returns TOOL_EXIT_OK or TOOL_EXIT_LIBRARY (--path fast refused). */
static int choose_path(demo *D)
{
    if (D->path == PATH_REF) {
        D->fast = 0;
        return TOOL_EXIT_OK;
    }
    /* a tiny probe of both fast entry points */
    double q[4 * 4], o[4 * 4], seconds;
    for (int i = 0; i < 16; i++)
        q[i] = 0.25 * (i % 5) - 0.5;
    problem P = {{1, 1, 1, 4, 4, 4, STILL_LAYOUT_BHND}, q, q, q};
    int rc_f = call_library(1, 0, NULL, NULL, &P, NULL, NULL, o, &seconds);
    int rc_t = call_library(1, 1, NULL, NULL, &P, NULL, NULL, o, &seconds);
    if (rc_f == STILL_OK && rc_t == STILL_OK) {
        D->fast = 1;
        return TOOL_EXIT_OK;
    }
    int rc = rc_f != STILL_OK ? rc_f : rc_t;
    const char *fn = rc_f != STILL_OK ? "still_forward" : "still_teacher";
    if (D->path == PATH_FAST)
        return tool_fail(TOOL_EXIT_LIBRARY, "demo", "--path fast: %s: %s", fn,
                         tool_status_name(rc));
    printf("note: the fast path is not available here (%s: %s); running the ref path "
           "(double precision, plain loops) instead\n\n", fn, still_strerror(rc));
    D->fast = 0;
    return TOOL_EXIT_OK;
}

/* ---- loading the shipped data ---------------------------------------------- */

/* DIR/tiny-lm/L<layer>_<name>.npy, 4-D with B = 1, as double.  Returns
 * TOOL_EXIT_OK or TOOL_EXIT_INPUT after the one-line error. */
static int load_array(const char *dir, int layer, const char *name, int64_t shape[4],
                      double **out)
{
    char path[4096], err[STILL__ERRLEN] = "";
    still__array a;
    int n = snprintf(path, sizeof path, "%s/tiny-lm/L%d_%s.npy", dir, layer, name);
    if (n < 0 || (size_t)n >= sizeof path)
        return tool_fail(TOOL_EXIT_INPUT, "demo", "--data: the path is too long");
    int rc = still__npy_read(path, &a, err, sizeof err);
    if (rc == STILL_E_IO)
        return tool_fail(TOOL_EXIT_INPUT, "demo", "%s (the demo's data; give its directory "
                         "with --data DIR)", err[0] ? err : path);
    if (rc != STILL_OK)
        return tool_fail(TOOL_EXIT_INPUT, "demo", "%s", err[0] ? err : tool_status_name(rc));
    if (a.ndim != 4 || a.shape[0] != 1) {
        char text[128];
        tool_shape_text(a.ndim, a.shape, text, sizeof text);
        still__array_free(&a);
        return tool_fail(TOOL_EXIT_INPUT, "demo", "%s: expected shape [1,H,N,d], found %s",
                         path, text);
    }
    memcpy(shape, a.shape, 4 * sizeof *shape);
    rc = still__array_to_f64(&a, out);
    still__array_free(&a);
    if (rc != STILL_OK)
        return tool_fail(TOOL_EXIT_INPUT, "demo", "%s: %s", path, tool_status_name(rc));
    return TOOL_EXIT_OK;
}

/* q, k, v and the PyTorch output o of one layer; checks that they fit.
 * Returns TOOL_EXIT_OK or TOOL_EXIT_INPUT after the one-line error. */
static int load_layer(const char *dir, int layer, problem *P, double **o_dump)
{
    int64_t sq[4], sk[4], sv[4], so[4];
    int status;
    memset(P, 0, sizeof *P);
    *o_dump = NULL;
    if ((status = load_array(dir, layer, "q", sq, &P->q)) ||
        (status = load_array(dir, layer, "k", sk, &P->k)) ||
        (status = load_array(dir, layer, "v", sv, &P->v)) ||
        (status = load_array(dir, layer, "o", so, o_dump)))
        goto fail;
    if (sk[2] != sq[2] || sk[3] != sq[3] || sv[1] != sk[1] || sv[2] != sq[2] ||
        so[1] != sq[1] || so[2] != sq[2] || so[3] != sv[3] || sk[1] < 1 ||
        sq[1] % sk[1] != 0) {
        char tq[96], tk[96], tv[96], to[96];
        tool_shape_text(4, sq, tq, sizeof tq);
        tool_shape_text(4, sk, tk, sizeof tk);
        tool_shape_text(4, sv, tv, sizeof tv);
        tool_shape_text(4, so, to, sizeof to);
        status = tool_fail(TOOL_EXIT_INPUT, "demo", "layer %d: the shapes do not fit: q %s, "
                           "k %s, v %s, o %s", layer, tq, tk, tv, to);
        goto fail;
    }
    still_shape s = {1, sq[1], sk[1], sq[2], sq[3], sv[3], STILL_LAYOUT_BHND};
    P->shape = s;
    return TOOL_EXIT_OK;
fail:
    problem_free(P);
    free(*o_dump);
    *o_dump = NULL;
    return status;
}

/* ---- attention statistics from the teacher, plain loops -------------------- */

/* Teacher probabilities p [t+1] of query t of head h (SPEC §1). */
static void teacher_row(const problem *P, double scale, int64_t h, int64_t t, double *p)
{
    const still_shape *s = &P->shape;
    int64_t kvh = h / (s->heads_q / s->heads_kv), d = s->dim_qk;
    const double *qt = P->q + (h * s->seq_len + t) * d;
    const double *kh = P->k + kvh * s->seq_len * d;
    double mx = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j <= t; j++) {
        double dot = 0.0;
        for (int64_t e = 0; e < d; e++)
            dot += qt[e] * kh[j * d + e];
        p[j] = scale * dot;
        if (p[j] > mx)
            mx = p[j];
    }
    for (int64_t j = 0; j <= t; j++)
        sum += (p[j] = exp(p[j] - mx));
    for (int64_t j = 0; j <= t; j++)
        p[j] /= sum;
}

/* First position that is NOT in a split chunk for query t: chunks
 * c' <= c - L are split (SPEC §6). */
static int64_t far_end(int64_t t, int64_t C, int64_t L)
{
    int64_t c = t / C;
    return c >= L ? (c - L + 1) * C : 0;
}

/* Accumulates, over the queries t in [first, last) of head h, with
 * far_t = the teacher's mass on split chunks:
 *   recv[h][j] += p(t,j) / far_t   for far keys j (so that the mean far
 *                                  share kept by a selection is
 *                                  sum_j sel[j] recv[j] / #queries);
 *   *window_kept += the share of far_t within the last w positions.
 * Returns the number of queries counted, or -1 (no memory). */
static int64_t far_mass(const problem *P, double scale, int64_t C, int64_t L,
                        int64_t w, int64_t first, int64_t last, double *recv,
                        double *window_kept)
{
    const still_shape *s = &P->shape;
    double *p = malloc((size_t)s->seq_len * sizeof *p);
    int64_t count = 0;
    if (!p)
        return -1;
    for (int64_t h = 0; h < s->heads_q; h++) {
        tool_progress(h + 1, s->heads_q, "teacher attention statistics, head");
        double *rh = recv + h * s->seq_len;
        for (int64_t t = first; t < last; t++) {
            int64_t end = far_end(t, C, L);
            if (end <= 0)
                continue;
            teacher_row(P, scale, h, t, p);
            double far = 0.0, win = 0.0;
            for (int64_t j = 0; j < end; j++) {
                far += p[j];
                if (j > t - w)
                    win += p[j];
            }
            for (int64_t j = 0; j < end; j++)
                rh[j] += p[j] / far;
            *window_kept += win / far;
            count++;
        }
    }
    free(p);
    return count;
}

/* Mean far share kept by a selection [Hq][N]. */
static double selection_share(const still_shape *s, const uint8_t *sel, const double *recv,
                              int64_t queries)
{
    double kept = 0.0;
    for (int64_t i = 0; i < s->heads_q * s->seq_len; i++)
        if (sel[i])
            kept += recv[i];
    return kept / (double)queries;
}

/* sel [Hq][N]: the k tokens of largest score of every complete chunk (ties
 * to the smaller position, as SPEC §5). */
static void top_k_per_chunk(const still_shape *s, int64_t C, int64_t k, const double *score,
                            uint8_t *sel)
{
    memset(sel, 0, (size_t)(s->heads_q * s->seq_len));
    for (int64_t h = 0; h < s->heads_q; h++)
        for (int64_t c0 = 0; c0 + C <= s->seq_len; c0 += C) {
            int64_t base = h * s->seq_len + c0;
            for (int64_t n = 0; n < k; n++) {
                int64_t best = -1;
                for (int64_t j = 0; j < C; j++)
                    if (!sel[base + j] && (best < 0 || score[base + j] > score[base + best]))
                        best = j;
                sel[base + best] = 1;
            }
        }
}

/* sel [Hq][N]: k distinct random tokens of every complete chunk. */
static void random_per_chunk(const still_shape *s, int64_t C, int64_t k, uint64_t *rng,
                             uint8_t *sel)
{
    memset(sel, 0, (size_t)(s->heads_q * s->seq_len));
    for (int64_t h = 0; h < s->heads_q; h++)
        for (int64_t c0 = 0; c0 + C <= s->seq_len; c0 += C)
            for (int64_t n = 0; n < k;) {
                int64_t j = (int64_t)(rng_next(rng) % (uint64_t)C);
                uint8_t *x = sel + h * s->seq_len + c0 + j;
                if (!*x) {
                    *x = 1;
                    n++;
                }
            }
}

/* |E_t| under saliency routing without a cap (SPEC §6). */
static int64_t exact_keys(int64_t t, int64_t C, int64_t k, int64_t L)
{
    int64_t c = t / C;
    if (L == 0)
        return k * c;
    if (c < L)
        return t + 1;
    return k * (c - L + 1) + (L - 1) * C + (t - c * C + 1);
}

/* The window w whose mean number of exact keys, min(w, t+1) over the
 * queries [first, last), first reaches that of saliency routing. */
static int64_t matching_window(int64_t C, int64_t k, int64_t L, int64_t first, int64_t last,
                               double *target_out)
{
    double target = 0.0;
    for (int64_t t = first; t < last; t++)
        target += (double)exact_keys(t, C, k, L);
    target /= (double)(last - first);
    *target_out = target;
    for (int64_t w = 2;; w++) {
        double mean = 0.0;
        for (int64_t t = first; t < last; t++)
            mean += (double)(w < t + 1 ? w : t + 1);
        if (mean / (double)(last - first) >= target || w > last)
            return w;
    }
}

/* Parameters that switch the linear branch off (see LINEAR_OFF_BIAS). */
static double *linear_off_params(const still_shape *s, still_params *p)
{
    double *b = malloc((size_t)(s->heads_q * s->dim_qk) * sizeof *b);
    if (!b)
        return NULL;
    for (int64_t i = 0; i < s->heads_q * s->dim_qk; i++)
        b[i] = LINEAR_OFF_BIAS;
    still_params_default(p);
    p->fq.f = s->dim_qk;
    p->fq.b = b;
    return b;
}

/* ---- part 1: real data ------------------------------------------------------- */

enum { R_SALIENCY, R_WINDOW, R_RANDOM, R_BEST, R_COUNT };

/* Sets up routing r of the comparison: its configuration (from cfg), its
 * name, and the selection it forces (random, best) or reports (saliency). */
static void routing_setup(int r, int64_t w, uint8_t *const sel[R_COUNT], still_config *cfg,
                          char *name, size_t len, const uint8_t **sel_in, uint8_t **sel_out)
{
    *sel_in = NULL;
    *sel_out = NULL;
    switch (r) {
    case R_SALIENCY:
        snprintf(name, len, "saliency (STILL)");
        *sel_out = sel[R_SALIENCY];
        break;
    case R_WINDOW:
        snprintf(name, len, "window, last %" PRId64, w);
        cfg->routing = STILL_ROUTING_WINDOW;
        cfg->window = w;
        break;
    case R_RANDOM:
        snprintf(name, len, "random %" PRId64 " per chunk", cfg->topk);
        *sel_in = sel[R_RANDOM];
        break;
    default:
        snprintf(name, len, "best %" PRId64 " per chunk (oracle)", cfg->topk);
        *sel_in = sel[R_BEST];
        break;
    }
}

static void print_layer_table(const row *rows, int n)
{
    printf("  %-26s %14s   %-26s %8s\n", "exact keys chosen by", "far attention",
           "output error vs teacher", "time");
    printf("  %-26s %14s   %-13s %-12s\n", "", "kept exact", "default maps", "exact only");
    for (int i = 0; i < n; i++)
        printf("  %-26s %13.1f%%   %-13.3f %-12.3f %6.2f s%s\n", rows[i].name,
               100.0 * rows[i].far_kept, rows[i].err_default, rows[i].err_exact,
               rows[i].seconds, rows[i].ref_fallback ? " [ref]" : "");
}

static int demo_layer(const demo *D, int layer, uint64_t *rng)
{
    problem P;
    double *o_dump = NULL, *o_teacher = NULL, *o = NULL, *recv = NULL, *bias = NULL;
    uint8_t *sel[R_COUNT] = {NULL, NULL, NULL, NULL};
    int status, fallback;
    row rows[R_COUNT];

    tool_progress(0, 0, "layer %d: loading", layer);
    if ((status = load_layer(D->data, layer, &P, &o_dump)))
        return status;
    const still_shape *s = &P.shape;
    still_config cfg;
    still_config_default(&cfg);
    cfg.threads = D->threads;
    const int64_t C = cfg.chunk, k = cfg.topk, L = cfg.local, N = s->seq_len;
    const int64_t first = L * C, cells = s->heads_q * N;
    const double scale = 1.0 / sqrt((double)s->dim_qk);
    if (N <= first) {
        status = tool_fail(TOOL_EXIT_INPUT, "demo", "layer %d: N = %" PRId64 " is too short "
                           "(need > %" PRId64 ")", layer, N, first);
        goto done;
    }
    o_teacher = malloc((size_t)count_o(s) * sizeof *o_teacher);
    o = malloc((size_t)count_o(s) * sizeof *o);
    recv = calloc((size_t)cells, sizeof *recv);
    for (int i = 0; i < R_COUNT; i++)
        sel[i] = calloc((size_t)cells, 1);
    still_params off;
    bias = linear_off_params(s, &off);
    if (!o_teacher || !o || !recv || !sel[0] || !sel[1] || !sel[2] || !sel[3] || !bias) {
        status = tool_fail(TOOL_EXIT_LIBRARY, "demo", "%s", tool_status_name(STILL_E_NOMEM));
        goto done;
    }

    double t_teacher, target;
    tool_progress(0, 0, "layer %d: teacher", layer);
    if ((status = attend(D, 1, &cfg, NULL, &P, NULL, NULL, o_teacher, &t_teacher, &fallback)))
        goto done;
    int64_t w = matching_window(C, k, L, first, N, &target);
    double window_kept = 0.0;
    int64_t queries = far_mass(&P, scale, C, L, w, first, N, recv, &window_kept);
    if (queries <= 0) {
        status = tool_fail(TOOL_EXIT_LIBRARY, "demo", "%s", tool_status_name(STILL_E_NOMEM));
        goto done;
    }

    printf("layer %d of tiny-lm: q [1,%" PRId64 ",%" PRId64 ",%" PRId64 "], k and v [1,%"
           PRId64 ",%" PRId64 ",%" PRId64 "] (real text, see tests/data/tiny-lm)\n",
           layer, s->heads_q, N, s->dim_qk, s->heads_kv, N, s->dim_v);
    printf("  teacher (full causal softmax): %.2f s%s; vs the PyTorch output shipped with the "
           "data: relative error %.1e\n", t_teacher, fallback ? " [ref]" : "",
           relative_error(s, o_teacher, o_dump, 0));
    printf("  STILL: C=%" PRId64 ", k=%" PRId64 ", L=%" PRId64 ", saliency window %" PRId64
           "; the window routing keeps the last %" PRId64 " keys\n  (the same mean number of "
           "exact keys as saliency, %.1f); measured on %" PRId64 " queries (t >= %" PRId64
           ", all heads)\n", C, k, L, C, w, target, queries, first);

    /* the four selections: saliency's comes from the forward itself */
    top_k_per_chunk(s, C, k, recv, sel[R_BEST]);
    random_per_chunk(s, C, k, rng, sel[R_RANDOM]);
    for (int r = 0; r < R_COUNT; r++) {
        still_config c = cfg;
        const uint8_t *sel_in;
        uint8_t *sel_out;
        routing_setup(r, w, sel, &c, rows[r].name, sizeof rows[r].name, &sel_in, &sel_out);
        double secs, unused;
        tool_progress(0, 0, "layer %d: %s", layer, rows[r].name);
        if ((status = attend(D, 0, &c, NULL, &P, sel_in, sel_out, o, &secs,
                             &rows[r].ref_fallback)))
            goto done;
        rows[r].seconds = secs;
        rows[r].err_default = relative_error(s, o, o_teacher, first);
        still_config c_off = c;
        c_off.act = STILL_ACT_RELU;
        tool_progress(0, 0, "layer %d: %s, linear branch off", layer, rows[r].name);
        if ((status = attend(D, 0, &c_off, &off, &P, r == R_SALIENCY ? sel[R_SALIENCY] : sel_in,
                             NULL, o, &unused, &fallback)))
            goto done;
        rows[r].err_exact = relative_error(s, o, o_teacher, first);
        rows[r].far_kept = r == R_WINDOW ? window_kept / (double)queries
                                         : selection_share(s, sel[r], recv, queries);
    }
    tool_progress_clear();
    print_layer_table(rows, R_COUNT);
    printf("\n");
    status = TOOL_EXIT_OK;
done:
    tool_progress_clear();
    problem_free(&P);
    free(o_dump);
    free(o_teacher);
    free(o);
    free(recv);
    free(bias);
    for (int i = 0; i < R_COUNT; i++)
        free(sel[i]);
    return status;
}

static void print_real_data_notes(void)
{
    static const char *const lines[] = {
        "far attention kept exact: of the teacher's attention on the chunks STILL splits",
        "  for a query (all but its last L), the share on exact keys, averaged over queries",
        "  and heads.",
        "best per chunk: the k tokens of each chunk that maximize that share, chosen from",
        "  the teacher's attention: the bound for any k-per-chunk selection (not for the",
        "  window, which spends its keys differently).",
        "default maps: the untrained NP-Map (W = I, hedgehog); until the maps are trained",
        "  (SPEC §8) the linear branch adds error.  time: the default-map run.",
        "exact only: the linear branch switched off (relu map with a bias of -1e6, so",
        "  kappa ~ 1e-22): softmax over the exact keys alone, which isolates the routing.",
    };
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++)
        puts(lines[i]);
    putchar('\n');
}

/* ---- part 2: needle retrieval ------------------------------------------------ */

/* x rounded to float32: the fast path then sees exactly the same inputs
 * as the demo's double loops. */
static double to_f32(double x)
{
    return (double)(float)x;
}

/* Haystack q, k, v ~ N(0,1); NEEDLES needles at depths 5%..85%, needle i
 * with key 16 u_i, query 8 u_i (it attends to itself, the premise of the
 * self-saliency score) and value e_i; the last NEEDLES queries are 8 u_i,
 * each asking for one needle.  Every other value is 0 on coordinates
 * 0..NEEDLES-1, so coordinate i of a probe's output is the weight it gives
 * to needle i.  Fills pos[NEEDLES]. */
static int needle_problem(int64_t N, int64_t d, uint64_t *rng, problem *P, int64_t *pos)
{
    still_shape s = {1, 1, 1, N, d, d, STILL_LAYOUT_BHND};
    P->shape = s;
    P->q = malloc((size_t)(N * d) * sizeof(double));
    P->k = malloc((size_t)(N * d) * sizeof(double));
    P->v = malloc((size_t)(N * d) * sizeof(double));
    if (!P->q || !P->k || !P->v)
        return -1;
    for (int64_t i = 0; i < N * d; i++) {
        P->q[i] = to_f32(rng_gauss(rng));
        P->k[i] = to_f32(rng_gauss(rng));
        P->v[i] = (i % d) < NEEDLES ? 0.0 : to_f32(rng_gauss(rng));
    }
    for (int i = 0; i < NEEDLES; i++) {
        double u[256], norm = 0.0;
        for (int64_t e = 0; e < d; e++) {
            u[e] = rng_gauss(rng);
            norm += u[e] * u[e];
        }
        norm = sqrt(norm);
        pos[i] = (int64_t)((double)N * (0.05 + 0.8 * i / (NEEDLES - 1))) + 17;
        int64_t probe = N - NEEDLES + i;
        for (int64_t e = 0; e < d; e++) {
            P->k[pos[i] * d + e] = to_f32(16.0 * u[e] / norm);
            P->q[pos[i] * d + e] = to_f32(8.0 * u[e] / norm);
            P->v[pos[i] * d + e] = e == i ? 1.0 : 0.0;
            P->q[probe * d + e] = to_f32(8.0 * u[e] / norm);
        }
    }
    return 0;
}

/* Is key j exact for query t (SPEC §6, no cap)? */
static int key_is_exact(int routing, int64_t t, int64_t j, int64_t C, int64_t L, int64_t w,
                        const uint8_t *sel)
{
    if (routing == STILL_ROUTING_WINDOW)
        return j > t - w;
    if (j / C > t / C - L)
        return 1; /* a recent (local) chunk */
    return sel[j];
}

typedef struct needle_row {
    char name[48];
    int exact, retrieved;
    double weight, seconds;
    int ref_fallback;
} needle_row;

/* Coordinate i of probe i's output is its weight on needle i. */
static void needle_tally(const problem *P, const double *o, needle_row *r)
{
    int64_t N = P->shape.seq_len, d = P->shape.dim_v;
    r->retrieved = 0;
    r->weight = 0.0;
    for (int i = 0; i < NEEDLES; i++) {
        double wgt = o[(N - NEEDLES + i) * d + i];
        r->weight += wgt / NEEDLES;
        r->retrieved += wgt > 0.5;
    }
}

/* One needle run at length N. */
static int demo_needle(const demo *D, int64_t N, uint64_t *rng)
{
    problem P;
    int64_t pos[NEEDLES];
    double *o = NULL, *recv = NULL, *p = NULL, *bias = NULL;
    double o_probe[NEEDLES][64]; /* the probes' teacher outputs, double loops */
    uint8_t *sel[R_COUNT] = {NULL, NULL, NULL, NULL};
    needle_row rows[R_COUNT], teacher_row_out;
    int status;
    const int64_t d = 64;

    memset(&P, 0, sizeof P);
    tool_progress(0, 0, "needle N=%" PRId64 ": building", N);
    o = malloc((size_t)(N * d) * sizeof *o);
    recv = calloc((size_t)N, sizeof *recv);
    p = malloc((size_t)N * sizeof *p);
    for (int i = 0; i < R_COUNT; i++)
        sel[i] = calloc((size_t)N, 1);
    if (!o || !recv || !p || !sel[0] || !sel[1] || !sel[2] || !sel[3] ||
        needle_problem(N, d, rng, &P, pos)) {
        status = tool_fail(TOOL_EXIT_LIBRARY, "demo", "%s", tool_status_name(STILL_E_NOMEM));
        goto done;
    }
    still_params off;
    if (!(bias = linear_off_params(&P.shape, &off))) {
        status = tool_fail(TOOL_EXIT_LIBRARY, "demo", "%s", tool_status_name(STILL_E_NOMEM));
        goto done;
    }
    still_config cfg;
    still_config_default(&cfg);
    cfg.threads = D->threads;
    const int64_t C = cfg.chunk, k = cfg.topk, L = cfg.local, first = N - NEEDLES;
    const double scale = 1.0 / sqrt((double)d);

    /* the teacher's attention of the probes, plain loops: their needle
     * weights, and the oracle selection from the attention they give */
    tool_progress(0, 0, "needle N=%" PRId64 ": teacher attention of the probes", N);
    memset(&teacher_row_out, 0, sizeof teacher_row_out);
    for (int64_t t = first; t < N; t++) {
        int64_t end = far_end(t, C, L);
        double far = 0.0;
        teacher_row(&P, scale, 0, t, p);
        for (int64_t j = 0; j < end; j++)
            far += p[j];
        for (int64_t j = 0; j < end; j++)
            recv[j] += p[j] / far;
        double wgt = p[pos[t - first]];
        teacher_row_out.weight += wgt / NEEDLES;
        teacher_row_out.retrieved += wgt > 0.5;
        for (int64_t e = 0; e < d; e++) {
            double acc = 0.0;
            for (int64_t j = 0; j <= t; j++)
                acc += p[j] * P.v[j * d + e];
            o_probe[t - first][e] = acc;
        }
    }
    /* the library's full teacher: its speed, and a cross-check of its
     * probe outputs against SPEC §10 (fast: 1e-5 max|v|; ref: rounding) */
    tool_progress(0, 0, "needle N=%" PRId64 ": teacher", N);
    if ((status = attend(D, 1, &cfg, NULL, &P, NULL, NULL, o, &teacher_row_out.seconds,
                         &teacher_row_out.ref_fallback)))
        goto done;
    double max_v = 0.0, deviation = 0.0;
    for (int64_t i = 0; i < N * d; i++)
        max_v = fmax(max_v, fabs(P.v[i]));
    for (int64_t t = first; t < N; t++)
        for (int64_t e = 0; e < d; e++)
            deviation = fmax(deviation, fabs(o[t * d + e] - o_probe[t - first][e]));
    const int teacher_fast = D->fast && !teacher_row_out.ref_fallback;
    const double bound = (teacher_fast ? 1e-5 : 1e-12) * max_v;
    top_k_per_chunk(&P.shape, C, k, recv, sel[R_BEST]);
    random_per_chunk(&P.shape, C, k, rng, sel[R_RANDOM]);
    double target;
    int64_t w = matching_window(C, k, L, first, N, &target);

    double default_weight = 0.0, default_seconds = 0.0;
    int default_fallback = 0;
    for (int r = 0; r < R_COUNT; r++) {
        still_config c = cfg;
        const uint8_t *sel_in;
        uint8_t *sel_out;
        routing_setup(r, w, sel, &c, rows[r].name, sizeof rows[r].name, &sel_in, &sel_out);
        c.act = STILL_ACT_RELU;
        tool_progress(0, 0, "needle N=%" PRId64 ": %s", N, rows[r].name);
        if ((status = attend(D, 0, &c, &off, &P, sel_in, sel_out, o, &rows[r].seconds,
                             &rows[r].ref_fallback)))
            goto done;
        needle_tally(&P, o, &rows[r]);
        rows[r].exact = 0;
        for (int i = 0; i < NEEDLES; i++)
            rows[r].exact += key_is_exact(c.routing, N - NEEDLES + i, pos[i], C, L, w,
                                          sel_in ? sel_in : sel[R_SALIENCY]);
        if (r == R_SALIENCY) {
            /* the same routing with the default, untrained maps */
            needle_row dflt;
            tool_progress(0, 0, "needle N=%" PRId64 ": saliency, default maps", N);
            if ((status = attend(D, 0, &cfg, NULL, &P, NULL, NULL, o, &default_seconds,
                                 &default_fallback)))
                goto done;
            needle_tally(&P, o, &dflt);
            default_weight = dflt.weight;
        }
    }
    tool_progress_clear();

    printf("needle retrieval, N = %" PRId64 " (synthetic: 1 head, d = 64, %d needles at "
           "depths 5%%..85%%,\n  each asked for by one of the last %d queries; STILL C=%" PRId64
           " k=%" PRId64 " L=%" PRId64 ", linear branch off)\n",
           N, NEEDLES, NEEDLES, C, k, L);
    printf("  %-26s %8s %10s %12s %10s\n", "exact keys chosen by", "needles", "retrieved",
           "mean needle", "time");
    printf("  %-26s %8s %10s %12s %10s\n", "", "exact", "(w > 0.5)", "weight w", "");
    printf("  %-26s %8s %7d/%d %12.3f %8.3f s%s\n", "full softmax (teacher)", "all",
           teacher_row_out.retrieved, NEEDLES, teacher_row_out.weight, teacher_row_out.seconds,
           teacher_row_out.ref_fallback ? " [ref]" : "");
    for (int r = 0; r < R_COUNT; r++)
        printf("  %-26s %6d/%d %7d/%d %12.3f %8.3f s%s\n", rows[r].name, rows[r].exact,
               NEEDLES, rows[r].retrieved, NEEDLES, rows[r].weight, rows[r].seconds,
               rows[r].ref_fallback ? " [ref]" : "");
    printf("  the library's teacher vs the demo's double loops on the %d probes: max |do| %.2g,\n"
           "  %s %.2g: %s\n", NEEDLES, deviation,
           teacher_fast ? "SPEC §10 bound 1e-5 max|v| =" : "rounding bound 1e-12 max|v| =", bound,
           deviation <= bound ? "within" : "EXCEEDED");
    if (deviation > bound)
        fprintf(stderr, "still demo: warning: needle N=%" PRId64 ": the teacher's output differs "
                "from double precision by %.2g, past the bound %.2g\n", N, deviation, bound);
    printf("  saliency with the default (untrained) maps: mean needle weight %.3f, %.3f s%s\n",
           default_weight, default_seconds, default_fallback ? " [ref]" : "");
    if (default_weight < 0.5)
        printf("  (the untrained linear branch over the other ~%" PRId64 " keys outweighs the "
               "exact needle\n  in the shared denominator; trained maps must learn its "
               "scale, SPEC §6, §8)\n", N - (int64_t)target);
    printf("\n");
    status = TOOL_EXIT_OK;
done:
    tool_progress_clear();
    problem_free(&P);
    free(o);
    free(recv);
    free(p);
    free(bias);
    for (int i = 0; i < R_COUNT; i++)
        free(sel[i]);
    return status;
}

/* ---- part 3: a whole model -------------------------------------------------- */

#define DEMO_MODEL_DEFAULT "models/tiny-lm"
#define DEMO_MODEL_BYTES 512

/* Bits per byte of the first DEMO_MODEL_BYTES bytes of DIR/dump_text.txt
 * with every layer's attention teacher, still, window, sinks, terraced
 * (`still lm eval`'s first column; the library's defaults). */
static int demo_model(const char *dir)
{
    static const char *const kinds[] = {"teacher", "still", "window", "sinks", "terraced"};
    char path[4096], err[STILL__ERRLEN];
    lm_model m;
    int rc = lm_model_load(dir, &m, err, sizeof err);
    if (rc)
        return tool_fail(rc == STILL_E_NOMEM ? TOOL_EXIT_LIBRARY : TOOL_EXIT_INPUT, "demo",
                         "--model: %s", err);
    snprintf(path, sizeof path, "%s/dump_text.txt", dir);
    FILE *f = fopen(path, "rb");
    int32_t ids[DEMO_MODEL_BYTES];
    int64_t n = 0, V = m.cfg.vocab;
    int c = EOF;
    while (f && n < DEMO_MODEL_BYTES && (c = fgetc(f)) != EOF && c < V)
        ids[n++] = c;
    if (f)
        fclose(f);
    if (!f || n < 2 || (n < DEMO_MODEL_BYTES && c != EOF)) {
        lm_model_free(&m);
        return tool_fail(TOOL_EXIT_INPUT, "demo", "%s: %s", path,
                         !f ? "cannot open" : "fewer than 2 bytes, or a byte beyond the "
                                              "vocabulary");
    }
    float *logits = malloc((size_t)(n * V) * sizeof *logits);
    double *lp = malloc((size_t)V * sizeof *lp);
    int status = logits && lp ? TOOL_EXIT_OK : tool_fail(TOOL_EXIT_LIBRARY, "demo",
                                                         "out of memory");
    if (!status)
        printf("Part 3: a whole model (%s, %lld layers), every layer's attention one kind;\n"
               "bits per byte of the first %lld bytes of its dump_text.txt (still lm eval,\n"
               "fast path, C = 64, w = 64, 4 sinks, untrained identity feature maps)\n\n"
               "%-10s %10s\n", dir, (long long)m.cfg.n_layer, (long long)n, "attention",
               "bits/byte");
    for (size_t k = 0; !status && k < sizeof kinds / sizeof *kinds; k++) {
        lm_attn *attn;
        lm_attn_opts o = {0};
        double bits = 0;
        tool_progress((int64_t)k, (int64_t)(sizeof kinds / sizeof *kinds), "model: %s",
                      kinds[k]);
        if (lm_attn_parse(&m, kinds[k], &o, NULL, &attn, err, sizeof err)) {
            status = tool_fail(TOOL_EXIT_LIBRARY, "demo", "%s: %s", kinds[k], err);
            break;
        }
        rc = lm_forward(&m, attn, ids, n, logits, err, sizeof err);
        lm_attn_free(&m, attn);
        if (rc) {
            status = tool_fail(TOOL_EXIT_LIBRARY, "demo", "%s: %s", kinds[k], err);
            break;
        }
        for (int64_t t = 0; t + 1 < n; t++) {
            lm_log_softmax(logits + t * V, V, lp);
            bits -= lp[ids[t + 1]] / log(2.0);
        }
        printf("%-10s %10.4f\n", kinds[k], bits / (double)(n - 1));
    }
    tool_progress_clear();
    if (!status)
        printf("\n(teacher: softmax everywhere; the others keep part of the keys exact and\n"
               "the rest linear; still lm transfer fits the linear maps.)\n");
    free(logits);
    free(lp);
    lm_model_free(&m);
    return status;
}

/* ---- the subcommand -------------------------------------------------------------- */

/* The default of --data (tool.h): the installed data when it is there,
 * else the source tree's. */
const char *tool_data_dir(void)
{
    const char *probe = STILL_DATA_DIR "/tiny-lm/L2_q.npy";
    return access(probe, R_OK) == 0 ? STILL_DATA_DIR : STILL_SOURCE_DATA_DIR;
}

static void demo_usage(FILE *f)
{
    fprintf(f,
            "usage: still demo [--data DIR] [--path auto|ref|fast] [--threads T]\n"
            "                  [--needle-len N] [--no-needle] [--seed S] [--no-progress]\n"
            "                  [--model DIR | --no-model]\n"
            "\n"
            "Runs STILL on real attention inputs shipped with libstill (layers 2 and 5\n"
            "of the tiny-lm model, DIR/tiny-lm/L{2,5}_{q,k,v,o}.npy) and compares\n"
            "saliency routing, a sliding window of the same size, random and the best\n"
            "possible selection: the share of far attention kept exact and the output\n"
            "error against full softmax attention.  Then a synthetic needle retrieval\n"
            "at N = 16384 and 65536 (fast path) or 4096 (ref path).  Then, when a model\n"
            "directory is there, bits per byte of a whole model (still lm eval) with\n"
            "each layer's attention teacher, still, window, sinks or terraced.\n"
            "\n"
            "  --data DIR       the data directory (default %s)\n"
            "  --path P         auto (default: fast if available, else ref), ref, fast\n"
            "  --threads T      fast path threads (default: OpenMP's)\n"
            "  --needle-len N   one needle run at length N (2048..1048576; the teacher\n"
            "                   is O(N^2))\n"
            "  --no-needle      skip the needle retrieval\n"
            "  --model DIR      the model of part 3 (default " DEMO_MODEL_DEFAULT " when it\n"
            "                   exists; sh tools/fetch-lm-models.sh copies it there)\n"
            "  --no-model       skip part 3\n"
            "  --seed S         seed of the random selection and the haystack (default 1)\n"
            "  --no-progress    no progress line on stderr (shown only on a terminal)\n"
            "  -h, --help       this help\n"
            "\n"
            "Progress goes to stderr when it is a terminal.  Exit status: 0 success,\n"
            "2 usage error, 3 the data is missing or malformed, 4 a library error.\n",
            tool_data_dir());
}

static int demo_needles(const demo *D, uint64_t *rng);

/* `still demo`: argv[0] is "demo". */
int cmd_demo(int argc, char **argv)
{
    demo D = {tool_data_dir(), PATH_AUTO, 0, 0, 1, 0, 1, NULL, 1};
    int status;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        int64_t x;
        if (tool_is_help(a)) {
            demo_usage(stdout);
            return TOOL_EXIT_OK;
        } else if (tool_is_option(a, "--data")) {
            if (!(val = tool_option_value("demo", argc, argv, &i, "--data")))
                return TOOL_EXIT_USAGE;
            D.data = val;
        } else if (tool_is_option(a, "--path")) {
            if (!(val = tool_option_value("demo", argc, argv, &i, "--path")))
                return TOOL_EXIT_USAGE;
            if (!strcmp(val, "auto"))
                D.path = PATH_AUTO;
            else if (!strcmp(val, "ref"))
                D.path = PATH_REF;
            else if (!strcmp(val, "fast"))
                D.path = PATH_FAST;
            else
                return tool_fail(TOOL_EXIT_USAGE, "demo", "--path: expected auto, ref or fast, "
                                 "found '%s'", val);
        } else if (tool_is_option(a, "--threads")) {
            if (!(val = tool_option_value("demo", argc, argv, &i, "--threads")) ||
                tool_parse_int64("demo", "--threads", val, 0, STILL_THREADS_MAX, &x))
                return TOOL_EXIT_USAGE;
            D.threads = (int)x;
        } else if (tool_is_option(a, "--needle-len")) {
            if (!(val = tool_option_value("demo", argc, argv, &i, "--needle-len")) ||
                tool_parse_int64("demo", "--needle-len", val, 2048, 1 << 20, &x))
                return TOOL_EXIT_USAGE;
            D.needle_len = x;
        } else if (tool_is_option(a, "--seed")) {
            if (!(val = tool_option_value("demo", argc, argv, &i, "--seed")) ||
                tool_parse_int64("demo", "--seed", val, 0, INT64_MAX, &x))
                return TOOL_EXIT_USAGE;
            D.seed = (uint64_t)x;
        } else if (!strcmp(a, "--no-needle")) {
            D.needle = 0;
        } else if (tool_is_option(a, "--model")) {
            if (!(val = tool_option_value("demo", argc, argv, &i, "--model")))
                return TOOL_EXIT_USAGE;
            D.model = val;
        } else if (!strcmp(a, "--no-model")) {
            D.model_part = 0;
        } else if (tool_progress_option(a)) {
            continue;
        } else {
            return tool_fail(TOOL_EXIT_USAGE, "demo", "unknown option '%s' (see still demo "
                             "--help)", a);
        }
    }

    if ((status = choose_path(&D)))
        return status;
    printf("still demo: libstill %s, %s path\n\n", still_version_string(),
           D.fast ? "fast (float32)" : "ref (double)");
    uint64_t rng = D.seed;
    const int layers[] = {2, 5};
    for (size_t i = 0; i < sizeof layers / sizeof *layers; i++)
        if ((status = demo_layer(&D, layers[i], &rng)))
            return status;
    print_real_data_notes();
    if (D.needle && (status = demo_needles(&D, &rng)))
        return status;
    if (!D.model_part)
        return TOOL_EXIT_OK;
    if (D.model)
        return demo_model(D.model);
    if (access(DEMO_MODEL_DEFAULT "/config.json", R_OK)) {
        printf("\n(part 3, a whole model: no " DEMO_MODEL_DEFAULT " here; "
               "sh tools/fetch-lm-models.sh copies it, or give --model DIR)\n");
        return TOOL_EXIT_OK;
    }
    printf("\n");
    return demo_model(DEMO_MODEL_DEFAULT);
}

/* Part 2 at its lengths. */
static int demo_needles(const demo *D, uint64_t *rng)
{
    int status;
    int64_t lengths[2] = {16384, 65536};
    int n = 2;
    if (D->needle_len) {
        lengths[0] = D->needle_len;
        n = 1;
    } else if (!D->fast) {
        lengths[0] = 4096;
        n = 1;
        printf("(needle retrieval on the ref path at N = 4096 only; the fast path runs "
               "N = 16384 and 65536)\n");
    }
    for (int i = 0; i < n; i++)
        if ((status = demo_needle(D, lengths[i], rng)))
            return status;
    return TOOL_EXIT_OK;
}
