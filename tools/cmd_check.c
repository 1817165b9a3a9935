/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * cmd_check.c -- `still check A.npy B.npy`: compares an array A (e.g. the
 * output of another implementation) with a reference B, element by
 * element, as numpy.isclose does: |A - B| <= atol + rtol * |B|.
 *
 * It prints the largest absolute and relative errors with their indices,
 * a histogram of the distances in units in the last place (in float32 when
 * either file is stored in 32 bits or less, else in float64), and exits 1
 * when some element is past the tolerance.
 *
 * --contract applies SPEC §10 instead of hand-set tolerances: outputs
 * within 1e-5 max|v| (v read from --v), selections equal up to near-ties
 * of the two sides' scores, gradient files tensor by tensor within the
 * backward pass's bound (SPEC §10, §18).  --relnorm R compares ||A-B|| / ||B||.
 */
#include "tool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_usage(FILE *f)
{
    fprintf(f,
            "usage: still check A.npy B.npy [--rtol R] [--atol A] [--relnorm R]\n"
            "       still check A.npy B.npy --contract --v V.npy\n"
            "       still check SEL_A.npy SEL_B.npy --contract --scores-a SA.npy --scores-b SB.npy\n"
            "                   [--chunk C]\n"
            "       still check GA.safetensors GB.safetensors [--contract | --rtol R --atol A]\n"
            "\n"
            "Compares A with the reference B element by element; they must have the\n"
            "same shape (any float dtype, or |u1).  An element passes when\n"
            "|A - B| <= atol + rtol * |B| (as numpy.isclose); equal infinities pass,\n"
            "NaN never does.  Prints the largest absolute and relative errors and where\n"
            "they are, and a histogram of ULP distances (float32 units when either file\n"
            "is <f4 or narrower, float64 units otherwise).\n"
            "\n"
            "  --rtol R        relative tolerance, R >= 0 (default 1e-5)\n"
            "  --atol A        absolute tolerance, A >= 0 (default 1e-8)\n"
            "  --relnorm R     pass when ||A-B||_2 <= R ||B||_2 instead (R >= 0)\n"
            "  --contract      the tolerances of SPEC §10 (no --rtol/--atol):\n"
            "                  arrays: |A-B| <= 1e-5 max|v| with v from --v;\n"
            "                  selections (|u1): equal, except where the two sides'\n"
            "                  scores (--scores-a, --scores-b) are within\n"
            "                  1e-4 (1 + |sigma|) of the chunk's k-th score;\n"
            "                  .safetensors gradient files: every tensor of B present\n"
            "                  in A with max|A-B| <= 1e-5 max|B| (SPEC §10)\n"
            "  --v V.npy       the values the outputs were computed from (--contract)\n"
            "  --scores-a SA.npy  A's sigma [B,Hq,N] (--contract on selections)\n"
            "  --scores-b SB.npy  B's sigma [B,Hq,N] (--contract on selections)\n"
            "  --chunk C       the chunk size of the selections (default 64)\n"
            "\n"
            "Exit status: 0 within tolerance, 1 some element past it (or the shapes\n"
            "differ), 2 usage error, 3 input file problem.\n");
}

/* Maps a float's bits to an integer that orders like the float, so that
 * the difference of two keys counts the representable values between. */
static uint64_t ordered_key64(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return (u >> 63) ? ~u : u | (UINT64_C(1) << 63);
}

static uint64_t ordered_key32(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (uint64_t)((u >> 31) ? ~u : u | (UINT32_C(1) << 31));
}

/* ULP distance of a and b in the chosen precision; UINT64_MAX for NaN. */
static uint64_t ulp_distance(double a, double b, int in_float32, int integers)
{
    if (isnan(a) || isnan(b))
        return UINT64_MAX;
    if (a == b) /* also +0 == -0 */
        return 0;
    if (integers)
        return (uint64_t)fabs(a - b);
    uint64_t ka, kb;
    if (in_float32) {
        ka = ordered_key32((float)a);
        kb = ordered_key32((float)b);
    } else {
        ka = ordered_key64(a);
        kb = ordered_key64(b);
    }
    return ka > kb ? ka - kb : kb - ka;
}

/* Histogram bucket: 0 -> 0, [2^(i-1), 2^i) -> i (1..64), NaN -> 65. */
static int bucket_of(uint64_t d)
{
    int i = 0;
    if (d == UINT64_MAX)
        return 65;
    while (d) {
        d >>= 1;
        i++;
    }
    return i;
}

static void print_bucket(int i, int64_t count, int64_t total)
{
    char label[48];
    if (i == 0)
        snprintf(label, sizeof label, "0");
    else if (i == 1)
        snprintf(label, sizeof label, "1");
    else if (i == 65)
        snprintf(label, sizeof label, "NaN");
    else if (i <= 21)
        snprintf(label, sizeof label, "%llu-%llu", 1ULL << (i - 1), (1ULL << i) - 1);
    else
        snprintf(label, sizeof label, "2^%d-2^%d", i - 1, i);
    printf("  %-22s %12lld  %6.2f%%\n", label, (long long)count, 100.0 * (double)count / (double)total);
}

typedef struct compared {
    const char *path;
    still__array a;
    double *x; /* values as double */
} compared;

static int load(const char *path, compared *c)
{
    char err[STILL__ERRLEN];
    c->path = path;
    c->x = NULL;
    if (still__npy_read(path, &c->a, err, sizeof err))
        return tool_fail(TOOL_EXIT_INPUT, "check", "%s", err);
    if (c->a.dtype == STILL__DT_U1) {
        c->x = malloc((size_t)(c->a.count ? c->a.count : 1) * sizeof *c->x);
        if (c->x)
            for (int64_t i = 0; i < c->a.count; i++)
                c->x[i] = ((const uint8_t *)c->a.data)[i];
    } else if (still__array_to_f64(&c->a, &c->x)) {
        c->x = NULL;
    }
    if (!c->x) {
        still__array_free(&c->a);
        return tool_fail(TOOL_EXIT_INPUT, "check", "%s: out of memory", path);
    }
    return TOOL_EXIT_OK;
}

static void release(compared *c)
{
    free(c->x);
    still__array_free(&c->a);
}

static void describe(const char *tag, const compared *c)
{
    char shape[160];
    tool_shape_text(c->a.ndim, c->a.shape, shape, sizeof shape);
    printf("%s  %s  %s %s\n", tag, c->path, still__dtype_name(c->a.dtype), shape);
}

/* Keeps the largest value and its index; a NaN, once seen, stays. */
static void track_max(double v, int64_t i, double *best, int64_t *at)
{
    if (*at < 0 || (!isnan(*best) && (isnan(v) || v > *best))) {
        *best = v;
        *at = i;
    }
}

/* The pass criterion: element-wise |A-B| <= atol + rtol |B|, or with
 * relnorm >= 0 the norm-wise ||A-B|| <= relnorm ||B||; label names where
 * the tolerance came from (printed). */
typedef struct criterion {
    double rtol, atol, relnorm;
    const char *label;
} criterion;

static int compare_impl(const compared *A, const compared *B, const criterion *cr, int quiet)
{
    const double rtol = cr->rtol, atol = cr->atol;
    const int64_t n = A->a.count;
    const int narrow = still__dtype_size(A->a.dtype) <= 4 && A->a.dtype != STILL__DT_U1;
    const int narrowB = still__dtype_size(B->a.dtype) <= 4 && B->a.dtype != STILL__DT_U1;
    const int integers = A->a.dtype == STILL__DT_U1 && B->a.dtype == STILL__DT_U1;
    const int in_float32 = !integers && (narrow || narrowB);
    int64_t hist[66] = {0}, fails = 0, i_abs = -1, i_rel = -1, i_worst = -1;
    double max_abs = 0, max_rel = 0, worst = -INFINITY, diff2 = 0.0, ref2 = 0.0;
    char at[160];

    for (int64_t i = 0; i < n; i++) {
        double a = A->x[i], b = B->x[i];
        double diff = a == b ? 0.0 : fabs(a - b); /* equal infinities: 0 */
        double rel = diff == 0 ? 0.0 : b != 0 ? diff / fabs(b) : INFINITY;
        if (isnan(a) || isnan(b))
            diff = rel = NAN;
        hist[bucket_of(ulp_distance(a, b, in_float32, integers))]++;
        diff2 += a == b ? 0.0 : (a - b) * (a - b); /* NaN and inf propagate */
        ref2 += b * b;
        track_max(diff, i, &max_abs, &i_abs);
        track_max(rel, i, &max_rel, &i_rel);
        /* excess over the tolerance; NaN is always past it */
        double excess = isnan(diff) ? INFINITY : diff - (atol + rtol * fabs(b));
        if (isnan(diff) || (diff > atol + rtol * fabs(b))) {
            fails++;
            if (excess > worst || i_worst < 0) {
                worst = excess;
                i_worst = i;
            }
        }
    }
    describe("A", A);
    describe("B", B);
    printf("elements        %lld\n", (long long)n);
    if (n > 0) {
        tool_index_text(A->a.ndim, A->a.shape, i_abs, at, sizeof at);
        printf("max |A-B|       %.6g at %s (A = %.17g, B = %.17g)\n", max_abs, at, A->x[i_abs],
               B->x[i_abs]);
        tool_index_text(A->a.ndim, A->a.shape, i_rel, at, sizeof at);
        printf("max |A-B|/|B|   %.6g at %s (A = %.17g, B = %.17g)\n", max_rel, at, A->x[i_rel],
               B->x[i_rel]);
        printf("ULP distance (%s):\n", integers ? "integers" : in_float32 ? "float32" : "float64");
        for (int i = 0; i < 66; i++)
            if (hist[i])
                print_bucket(i, hist[i], n);
    }
    double relnorm = diff2 == 0.0 ? 0.0 : sqrt(diff2) / sqrt(ref2); /* 0/0: equal arrays */
    printf("||A-B||/||B||   %.6g\n", relnorm);
    if (cr->relnorm >= 0.0) {
        int ok = !isnan(relnorm) && relnorm <= cr->relnorm;
        printf("tolerance       ||A-B|| <= %g*||B||\n", cr->relnorm);
        printf("%s\n", ok ? "PASS" : "FAIL");
        if (ok || quiet)
            return ok ? TOOL_EXIT_OK : TOOL_EXIT_MISMATCH;
        return tool_fail(TOOL_EXIT_MISMATCH, "check", "%s: ||A-B||/||B|| = %.6g against %s, "
                         "beyond %g", A->path, relnorm, B->path, cr->relnorm);
    }
    if (cr->label)
        printf("contract        %s\n", cr->label);
    printf("tolerance       |A-B| <= %g + %g*|B|: %lld of %lld elements past it\n", atol, rtol,
           (long long)fails, (long long)n);
    if (fails == 0) {
        printf("PASS\n");
        return TOOL_EXIT_OK;
    }
    printf("FAIL\n");
    if (quiet)
        return TOOL_EXIT_MISMATCH;
    tool_index_text(A->a.ndim, A->a.shape, i_worst, at, sizeof at);
    return tool_fail(TOOL_EXIT_MISMATCH, "check", "%s: %lld of %lld elements differ from %s "
                     "beyond |A-B| <= %g + %g*|B|; worst at %s (A = %.9g, B = %.9g)", A->path,
                     (long long)fails, (long long)n, B->path, atol, rtol, at, A->x[i_worst],
                     B->x[i_worst]);
}

/* compare() fails with one line on stderr; compare_quiet() only prints its
 * report, for a caller that compares several arrays and fails once. */
static int compare(const compared *A, const compared *B, const criterion *cr)
{
    return compare_impl(A, B, cr, 0);
}

static int compare_quiet(const compared *A, const compared *B, const criterion *cr)
{
    return compare_impl(A, B, cr, 1);
}

/* ---- SPEC §10 contract modes ------------------------------------------------ */

#define CONTRACT_OUTPUT_TOL 1e-5 /* SPEC §10: |o_fast - o_ref| <= 1e-5 max|v| */
#define CONTRACT_TIE_TOL 1e-4    /* SPEC §10: near-tie 1e-4 (1 + |sigma|) */
#define CONTRACT_GRAD_TOL 1e-5   /* SPEC §10: max|g - g_ref| <= 1e-5 max|g_ref| */

static int same_shape(const compared *A, const compared *B)
{
    if (A->a.ndim == B->a.ndim && !memcmp(A->a.shape, B->a.shape, sizeof A->a.shape))
        return 1;
    char sa[160], sb[160];
    tool_shape_text(A->a.ndim, A->a.shape, sa, sizeof sa);
    tool_shape_text(B->a.ndim, B->a.shape, sb, sizeof sb);
    tool_fail(TOOL_EXIT_MISMATCH, "check", "%s: shape %s, expected %s as in %s", A->path, sa, sb,
              B->path);
    return 0;
}

/* Outputs: atol = 1e-5 max|v|, rtol = 0, max|v| read from the values. */
static int contract_output(const compared *A, const compared *B, const char *vpath)
{
    compared V;
    int rc;
    if ((rc = load(vpath, &V)))
        return rc;
    double vmax = 0.0;
    for (int64_t i = 0; i < V.a.count; i++)
        vmax = fmax(vmax, fabs(V.x[i]));
    release(&V);
    char label[200];
    criterion cr = {0.0, CONTRACT_OUTPUT_TOL * vmax, -1.0, label};
    snprintf(label, sizeof label, "SPEC §10: |A-B| <= 1e-5 max|v|, max|v| = %.9g in %s", vmax,
             vpath);
    return compare(A, B, &cr);
}

/* The k-th largest of the scores x[0..n) (k >= 1), ties by position. */
static double kth_score(const double *x, int64_t n, int64_t k)
{
    for (int64_t j = 0; j < n; j++) {
        int64_t rank = 0; /* scores ranked before j: larger, or equal and earlier */
        for (int64_t i = 0; i < n; i++)
            rank += x[i] > x[j] || (x[i] == x[j] && i < j);
        if (rank == k - 1)
            return x[j];
    }
    return NAN; /* k > n: not reached for a valid selection */
}

/* A token one side selected and the other did not is a near-tie when the
 * other side's score of it is within 1e-4 (1 + |theta|) of that side's
 * k-th score theta in the chunk: it would nearly have been chosen. */
static int near_tie(double score, double theta)
{
    if (score == theta) /* also two +inf */
        return 1;
    return isfinite(score) && isfinite(theta) &&
           fabs(theta - score) <= CONTRACT_TIE_TOL * (1.0 + fabs(theta));
}

void tool_selection_contract(const double *a, const double *b, const double *sa,
                             const double *sb, int64_t rows, int64_t N, int64_t C,
                             tool_sel_verdict *v)
{
    v->differ = v->ties = v->bad_chunks = 0;
    v->first_bad = v->first_bad_chunk = -1;
    for (int64_t r = 0; r < rows; r++) {
        const double *ar = a + r * N, *br = b + r * N, *sar = sa + r * N, *sbr = sb + r * N;
        for (int64_t c0 = 0; c0 < N; c0 += C) {
            const int64_t n = N - c0 < C ? N - c0 : C;
            int64_t ka = 0, kb = 0;
            for (int64_t j = 0; j < n; j++) {
                ka += ar[c0 + j] != 0;
                kb += br[c0 + j] != 0;
            }
            if (ka != kb || (n < C && ka > 0)) { /* another budget, or an incomplete chunk */
                if (v->first_bad_chunk < 0)
                    v->first_bad_chunk = r * N + c0;
                v->bad_chunks++;
                continue;
            }
            double theta_a = ka ? kth_score(sar + c0, n, ka) : NAN;
            double theta_b = kb ? kth_score(sbr + c0, n, kb) : NAN;
            for (int64_t j = 0; j < n; j++) {
                int in_a = ar[c0 + j] != 0, in_b = br[c0 + j] != 0;
                if (in_a == in_b)
                    continue;
                v->differ++;
                /* chosen by A only: B's score of it must be near B's k-th;
                   chosen by B only: A's score near A's k-th */
                if (in_a ? near_tie(sbr[c0 + j], theta_b) : near_tie(sar[c0 + j], theta_a))
                    v->ties++;
                else if (v->first_bad < 0)
                    v->first_bad = r * N + c0 + j;
            }
        }
    }
}

/* Selections [..., N] of both sides with both sides' scores: per row and
 * complete chunk the same count, and each differing token a near-tie. */
static int contract_selection(const compared *A, const compared *B, const char *sa_path,
                              const char *sb_path, int64_t C)
{
    compared SA, SB;
    tool_sel_verdict v;
    int rc;
    if ((rc = load(sa_path, &SA)))
        return rc;
    if ((rc = load(sb_path, &SB))) {
        release(&SA);
        return rc;
    }
    if (!same_shape(&SA, A) || !same_shape(&SB, B)) {
        release(&SA);
        release(&SB);
        return TOOL_EXIT_MISMATCH;
    }
    const int64_t N = A->a.ndim ? A->a.shape[A->a.ndim - 1] : 1, rows = N ? A->a.count / N : 0;
    tool_selection_contract(A->x, B->x, SA.x, SB.x, rows, N, C, &v);
    const int64_t differ = v.differ, ties = v.ties, bad = v.first_bad, bad_count = v.bad_chunks,
                  count_bad = v.first_bad_chunk;
    char at[160];
    describe("A", A);
    describe("B", B);
    printf("scores          A: %s, B: %s; chunk %lld\n", sa_path, sb_path, (long long)C);
    printf("contract        SPEC §10: selections equal except near-ties of 1e-4 (1 + |sigma|)\n");
    printf("tokens          %lld; %lld selected differently, %lld of them near-ties\n",
           (long long)A->a.count, (long long)differ, (long long)ties);
    if (bad_count)
        printf("chunks          %lld with another number of selected tokens (or a selection "
               "in an incomplete chunk)\n", (long long)bad_count);
    rc = TOOL_EXIT_OK;
    if (count_bad >= 0) {
        tool_index_text(A->a.ndim, A->a.shape, count_bad, at, sizeof at);
        printf("FAIL\n");
        rc = tool_fail(TOOL_EXIT_MISMATCH, "check", "%s: the chunk from %s selects another number "
                       "of tokens than %s (chunk %lld)", A->path, at, B->path, (long long)C);
    } else if (bad >= 0) {
        tool_index_text(A->a.ndim, A->a.shape, bad, at, sizeof at);
        printf("FAIL\n");
        rc = tool_fail(TOOL_EXIT_MISMATCH, "check", "%s: %lld tokens selected differently from "
                       "%s without a near-tie of the scores; first at %s (sigma A = %.9g, "
                       "B = %.9g)", A->path, (long long)(differ - ties), B->path, at,
                       SA.x[bad], SB.x[bad]);
    } else {
        printf("PASS\n");
    }
    release(&SA);
    release(&SB);
    return rc;
}

static int is_safetensors(const char *path)
{
    size_t n = strlen(path);
    return n >= 12 && !strcmp(path + n - 12, ".safetensors");
}

/* Gradient (or parameter) files: every tensor of the reference B must be in
 * A with B's shape; each is compared on its own, with SPEC §10's bound
 * relative to its own max|B| under --contract. */
static int compare_tensors(const char *pa, const char *pb, int contract, const criterion *given)
{
    still__st_file fa, fb;
    char err[STILL__ERRLEN];
    if (still__st_read(pa, &fa, err, sizeof err))
        return tool_fail(TOOL_EXIT_INPUT, "check", "%s", err);
    if (still__st_read(pb, &fb, err, sizeof err)) {
        still__st_free(&fa);
        return tool_fail(TOOL_EXIT_INPUT, "check", "%s", err);
    }
    int rc = TOOL_EXIT_OK, failed = 0;
    const char *first_bad = NULL;
    for (int t = 0; t < fb.n && rc != TOOL_EXIT_INPUT; t++) {
        const still__array *ta = still__st_get(&fa, fb.names[t]);
        printf("== tensor %s\n", fb.names[t]);
        if (!ta) {
            printf("FAIL (missing in %s)\n", pa);
            failed++;
            first_bad = first_bad ? first_bad : fb.names[t];
            continue;
        }
        compared A = {pa, *ta, NULL}, B = {pb, fb.arrays[t], NULL};
        if (still__array_to_f64(&A.a, &A.x) || still__array_to_f64(&B.a, &B.x)) {
            free(A.x);
            free(B.x);
            rc = tool_fail(TOOL_EXIT_INPUT, "check", "%s: tensor %s is not a float array or "
                           "out of memory", pb, fb.names[t]);
            break;
        }
        int r;
        if (A.a.ndim != B.a.ndim || memcmp(A.a.shape, B.a.shape, sizeof A.a.shape)) {
            printf("FAIL (shapes differ)\n");
            r = TOOL_EXIT_MISMATCH;
        } else if (contract) {
            double gmax = 0.0;
            for (int64_t i = 0; i < B.a.count; i++)
                gmax = fmax(gmax, fabs(B.x[i]));
            char label[160];
            snprintf(label, sizeof label, "SPEC §10: |A-B| <= 1e-5 max|B|, max|B| = %.9g",
                     gmax);
            criterion cr = {0.0, CONTRACT_GRAD_TOL * gmax, -1.0, label};
            r = compare_quiet(&A, &B, &cr);
        } else {
            r = compare_quiet(&A, &B, given);
        }
        free(A.x);
        free(B.x);
        if (r != TOOL_EXIT_OK) {
            failed++;
            first_bad = first_bad ? first_bad : fb.names[t];
        }
    }
    if (rc == TOOL_EXIT_OK && failed) {
        printf("FAIL: %d of %d tensors\n", failed, fb.n);
        rc = tool_fail(TOOL_EXIT_MISMATCH, "check", "%s: %d of %d tensors differ from %s beyond "
                       "the tolerance, first %s", pa, failed, fb.n, pb, first_bad);
    } else if (rc == TOOL_EXIT_OK) {
        printf("PASS: %d tensors\n", fb.n);
    }
    still__st_free(&fa);
    still__st_free(&fb);
    return rc;
}

int cmd_check(int argc, char **argv)
{
    const char *cmd = "check", *files[2] = {NULL, NULL}, *val;
    const char *v_path = NULL, *sa_path = NULL, *sb_path = NULL;
    double rtol = 1e-5, atol = 1e-8, relnorm = -1.0;
    int64_t chunk = 64;
    int nfiles = 0, contract = 0, tol_given = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tool_is_help(a)) {
            check_usage(stdout);
            return TOOL_EXIT_OK;
        } else if (tool_is_option(a, "--rtol")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--rtol")) ||
                tool_parse_double(cmd, "--rtol", val, 0.0, HUGE_VAL, &rtol))
                return TOOL_EXIT_USAGE;
            tol_given = 1;
        } else if (tool_is_option(a, "--atol")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--atol")) ||
                tool_parse_double(cmd, "--atol", val, 0.0, HUGE_VAL, &atol))
                return TOOL_EXIT_USAGE;
            tol_given = 1;
        } else if (tool_is_option(a, "--relnorm")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--relnorm")) ||
                tool_parse_double(cmd, "--relnorm", val, 0.0, HUGE_VAL, &relnorm))
                return TOOL_EXIT_USAGE;
            tol_given = 1;
        } else if (!strcmp(a, "--contract")) {
            contract = 1;
        } else if (tool_is_option(a, "--v")) {
            if (!(v_path = tool_option_value(cmd, argc, argv, &i, "--v")))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--scores-a")) {
            if (!(sa_path = tool_option_value(cmd, argc, argv, &i, "--scores-a")))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--scores-b")) {
            if (!(sb_path = tool_option_value(cmd, argc, argv, &i, "--scores-b")))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--chunk")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--chunk")) ||
                tool_parse_int64(cmd, "--chunk", val, 1, INT64_MAX, &chunk))
                return TOOL_EXIT_USAGE;
        } else if (a[0] == '-' && a[1] != '\0') {
            return tool_fail(TOOL_EXIT_USAGE, cmd, "unknown option '%s' (see still check --help)",
                             a);
        } else if (nfiles < 2) {
            files[nfiles++] = a;
        } else {
            return tool_fail(TOOL_EXIT_USAGE, cmd, "expected two files, found a third '%s'", a);
        }
    }
    if (nfiles < 2)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "expected two files A.npy B.npy (see still check "
                         "--help)");
    if (contract && tol_given)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--contract takes its tolerances from SPEC §10; "
                         "drop --rtol, --atol and --relnorm");
    if (!contract && (v_path || sa_path || sb_path))
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--v, --scores-a and --scores-b go with "
                         "--contract");
    criterion given = {rtol, atol, relnorm, NULL};
    if (is_safetensors(files[0]) || is_safetensors(files[1])) {
        if (v_path || sa_path || sb_path)
            return tool_fail(TOOL_EXIT_USAGE, cmd, "gradient files take no --v, --scores-a "
                             "or --scores-b");
        return compare_tensors(files[0], files[1], contract, &given);
    }

    compared A, B;
    int rc;
    if ((rc = load(files[0], &A)))
        return rc;
    if ((rc = load(files[1], &B))) {
        release(&A);
        return rc;
    }
    const int selections = A.a.dtype == STILL__DT_U1 && B.a.dtype == STILL__DT_U1;
    if (!same_shape(&A, &B))
        rc = TOOL_EXIT_MISMATCH;
    else if (contract && selections && (!sa_path || !sb_path))
        rc = tool_fail(TOOL_EXIT_USAGE, cmd, "--contract on selections needs both sides' scores "
                       "(--scores-a SA.npy --scores-b SB.npy)");
    else if (contract && selections)
        rc = contract_selection(&A, &B, sa_path, sb_path, chunk);
    else if (contract && !v_path)
        rc = tool_fail(TOOL_EXIT_USAGE, cmd, "--contract on outputs needs the values they were "
                       "computed from (--v V.npy): the tolerance is 1e-5 max|v|");
    else if (contract)
        rc = contract_output(&A, &B, v_path);
    else
        rc = compare(&A, &B, &given);
    release(&A);
    release(&B);
    return rc;
}
