/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * fuzz_npy.c -- libFuzzer target for the .npy reader (lib/npy.c, issue 7).
 *
 * Feeds arbitrary bytes to still__npy_parse().  The reader must return a
 * status code for every input (SPEC §11: untrusted files), never read out
 * of bounds (ASan), never invoke UB (UBSan), never allocate more than the
 * input justifies (libFuzzer's -malloc_limit_mb), and never leak.  On
 * success the array must be self-consistent: count = product of shape,
 * every one of its count * itemsize bytes readable, the conversions work,
 * and writing it back and reading the file again gives the same array.
 */
#define _POSIX_C_SOURCE 200809L
#include "io.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REQUIRE(cond)                                                                   \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz_npy: invariant failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

static int known_failure(int rc)
{
    return rc == STILL_E_FORMAT || rc == STILL_E_DTYPE || rc == STILL_E_OVERFLOW ||
           rc == STILL_E_NOMEM || rc == STILL_E_IO || rc == STILL_E_SHAPE ||
           rc == STILL_E_VERSION;
}

/* A per-process scratch path for the write/read round trip. */
static const char *scratch_path(void)
{
    static char path[256];
    if (!path[0]) {
        const char *dir = getenv("FUZZ_SCRATCH_DIR");
        snprintf(path, sizeof path, "%s/fuzz_npy.%ld.npy", dir ? dir : "/tmp", (long)getpid());
    }
    return path;
}

static void check_array(const still__array *a)
{
    REQUIRE(a->ndim >= 0 && a->ndim <= STILL__MAX_NDIM);
    int64_t count = 1;
    int empty = 0;
    for (int i = 0; i < a->ndim; i++) {
        REQUIRE(a->shape[i] >= 0);
        empty |= a->shape[i] == 0;
    }
    /* the reader checked the product does not overflow; with a zero extent
     * the other extents alone may (e.g. [1e10, 1.1e9, 0]), and count is 0 */
    for (int i = 0; i < a->ndim && !empty; i++)
        count *= a->shape[i];
    if (empty)
        count = 0;
    REQUIRE(count == a->count);
    size_t item = still__dtype_size(a->dtype);
    REQUIRE(item > 0);
    REQUIRE(a->count == 0 || a->data != NULL);
    /* every byte the array claims must be readable (ASan checks) */
    volatile unsigned char sink = 0;
    const unsigned char *p = a->data;
    for (size_t i = 0; i < (size_t)a->count * item; i++)
        sink ^= p[i];
    (void)sink;
}

static void round_trip(const still__array *a)
{
    char err[STILL__ERRLEN];
    if (a->dtype != STILL__DT_F4 && a->dtype != STILL__DT_F8 && a->dtype != STILL__DT_U1)
        return;
    const char *path = scratch_path();
    int rc = still__npy_write(path, a->dtype, a->ndim, a->shape, a->data, err, sizeof err);
    if (rc != STILL_OK)
        return; /* e.g. the scratch directory is gone: not the reader's fault */
    still__array b;
    memset(&b, 0, sizeof b);
    rc = still__npy_read(path, &b, err, sizeof err);
    unlink(path);
    REQUIRE(rc == STILL_OK);
    REQUIRE(b.dtype == a->dtype && b.ndim == a->ndim && b.count == a->count);
    for (int i = 0; i < a->ndim; i++)
        REQUIRE(b.shape[i] == a->shape[i]);
    REQUIRE(a->count == 0 ||
            memcmp(a->data, b.data, (size_t)a->count * still__dtype_size(a->dtype)) == 0);
    still__array_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    still__array a;
    char err[STILL__ERRLEN];
    memset(&a, 0, sizeof a);
    memset(err, 'x', sizeof err);
    int rc = still__npy_parse(data, size, "fuzz.npy", &a, err, sizeof err);
    if (rc != STILL_OK) {
        REQUIRE(known_failure(rc));
        REQUIRE(memchr(err, '\0', sizeof err) != NULL); /* one terminated line */
        still__array_free(&a);                           /* must be safe after a failure */
        return 0;
    }
    check_array(&a);
    if (a.dtype != STILL__DT_U1) {
        double *d = NULL;
        float *f = NULL;
        REQUIRE(still__array_to_f64(&a, &d) == STILL_OK || a.count == 0);
        REQUIRE(still__array_to_f32(&a, &f) == STILL_OK || a.count == 0);
        free(d);
        free(f);
    } else {
        double *d = NULL;
        REQUIRE(still__array_to_f64(&a, &d) == STILL_E_DTYPE);
        free(d);
    }
    round_trip(&a);
    still__array_free(&a);
    return 0;
}
