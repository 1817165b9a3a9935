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
 */
#include "tool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_usage(FILE *f)
{
    fprintf(f,
            "usage: still check A.npy B.npy [--rtol R] [--atol A]\n"
            "\n"
            "Compares A with the reference B element by element; they must have the\n"
            "same shape (any float dtype, or |u1).  An element passes when\n"
            "|A - B| <= atol + rtol * |B| (as numpy.isclose); equal infinities pass,\n"
            "NaN never does.  Prints the largest absolute and relative errors and where\n"
            "they are, and a histogram of ULP distances (float32 units when either file\n"
            "is <f4 or narrower, float64 units otherwise).\n"
            "\n"
            "  --rtol R   relative tolerance, R >= 0 (default 1e-5)\n"
            "  --atol A   absolute tolerance, A >= 0 (default 1e-8)\n"
            "\n"
            "SPEC §10's contract for the fast path is |o_fast - o_ref| <= 1e-5 max|v|:\n"
            "check it with --rtol 0 --atol <1e-5 max|v|>.\n"
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

static int compare(const compared *A, const compared *B, double rtol, double atol)
{
    const int64_t n = A->a.count;
    const int narrow = still__dtype_size(A->a.dtype) <= 4 && A->a.dtype != STILL__DT_U1;
    const int narrowB = still__dtype_size(B->a.dtype) <= 4 && B->a.dtype != STILL__DT_U1;
    const int integers = A->a.dtype == STILL__DT_U1 && B->a.dtype == STILL__DT_U1;
    const int in_float32 = !integers && (narrow || narrowB);
    int64_t hist[66] = {0}, fails = 0, i_abs = -1, i_rel = -1, i_worst = -1;
    double max_abs = 0, max_rel = 0, worst = -INFINITY;
    char at[160];

    for (int64_t i = 0; i < n; i++) {
        double a = A->x[i], b = B->x[i];
        double diff = a == b ? 0.0 : fabs(a - b); /* equal infinities: 0 */
        double rel = diff == 0 ? 0.0 : b != 0 ? diff / fabs(b) : INFINITY;
        if (isnan(a) || isnan(b))
            diff = rel = NAN;
        hist[bucket_of(ulp_distance(a, b, in_float32, integers))]++;
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
    printf("tolerance       |A-B| <= %g + %g*|B|: %lld of %lld elements past it\n", atol, rtol,
           (long long)fails, (long long)n);
    if (fails == 0) {
        printf("PASS\n");
        return TOOL_EXIT_OK;
    }
    printf("FAIL\n");
    tool_index_text(A->a.ndim, A->a.shape, i_worst, at, sizeof at);
    return tool_fail(TOOL_EXIT_MISMATCH, "check", "%s: %lld of %lld elements differ from %s "
                     "beyond |A-B| <= %g + %g*|B|; worst at %s (A = %.9g, B = %.9g)", A->path,
                     (long long)fails, (long long)n, B->path, atol, rtol, at, A->x[i_worst],
                     B->x[i_worst]);
}

int cmd_check(int argc, char **argv)
{
    const char *cmd = "check", *files[2] = {NULL, NULL}, *val;
    double rtol = 1e-5, atol = 1e-8;
    int nfiles = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tool_is_help(a)) {
            check_usage(stdout);
            return TOOL_EXIT_OK;
        } else if (tool_is_option(a, "--rtol")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--rtol")) ||
                tool_parse_double(cmd, "--rtol", val, 0.0, HUGE_VAL, &rtol))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--atol")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--atol")) ||
                tool_parse_double(cmd, "--atol", val, 0.0, HUGE_VAL, &atol))
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

    compared A, B;
    int rc;
    if ((rc = load(files[0], &A)))
        return rc;
    if ((rc = load(files[1], &B))) {
        release(&A);
        return rc;
    }
    if (A.a.ndim != B.a.ndim || memcmp(A.a.shape, B.a.shape, sizeof A.a.shape)) {
        char sa[160], sb[160];
        tool_shape_text(A.a.ndim, A.a.shape, sa, sizeof sa);
        tool_shape_text(B.a.ndim, B.a.shape, sb, sizeof sb);
        rc = tool_fail(TOOL_EXIT_MISMATCH, cmd, "%s: shape %s, expected %s as in %s", A.path, sa,
                       sb, B.path);
    } else {
        rc = compare(&A, &B, rtol, atol);
    }
    release(&A);
    release(&B);
    return rc;
}
