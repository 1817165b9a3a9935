/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * fuzz_safetensors.c -- libFuzzer target for the safetensors reader
 * (lib/safetensors.c, issue 7) and the parameter-file reader built on it.
 *
 * Arbitrary bytes go to still__st_parse(): a status code for every input,
 * no out-of-bounds read, no UB, no allocation the input does not justify,
 * no leak.  On success every tensor must be self-consistent and
 * still__st_get() must find it by name.  The same bytes then go through
 * still__params_read() (SPEC §11 parameter files) from a memfd, with the
 * head count and dimension taken from fq.W when it is there, so the shape
 * checks are reached; returned parameters must point into the storage.
 */
#define _GNU_SOURCE
#include "io.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define REQUIRE(cond)                                                                        \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "fuzz_safetensors: invariant failed: %s (line %d)\n", #cond,     \
                    __LINE__);                                                               \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

static int known_failure(int rc)
{
    return rc == STILL_E_FORMAT || rc == STILL_E_DTYPE || rc == STILL_E_OVERFLOW ||
           rc == STILL_E_NOMEM || rc == STILL_E_IO || rc == STILL_E_SHAPE ||
           rc == STILL_E_PARAMS || rc == STILL_E_NONFINITE;
}

static void check_array(const still__array *a)
{
    REQUIRE(a->ndim >= 0 && a->ndim <= STILL__MAX_NDIM);
    int64_t count = 1;
    for (int i = 0; i < a->ndim; i++) {
        REQUIRE(a->shape[i] >= 0);
        count *= a->shape[i];
    }
    REQUIRE(count == a->count);
    size_t item = still__dtype_size(a->dtype);
    REQUIRE(item > 0);
    REQUIRE(a->count == 0 || a->data != NULL);
    volatile unsigned char sink = 0;
    const unsigned char *p = a->data;
    for (size_t i = 0; i < (size_t)a->count * item; i++)
        sink ^= p[i];
    (void)sink;
    if (a->dtype != STILL__DT_U1 && a->count > 0) {
        double *d = NULL;
        REQUIRE(still__array_to_f64(a, &d) == STILL_OK);
        free(d);
    }
}

static void check_params(const still_params *p, int64_t H, int64_t d)
{
    int64_t f = p->fq.f ? p->fq.f : d;
    /* every element the pointers claim must be readable: ASan checks they
       lie inside the storage block */
    volatile double sink = 0;
    if (p->fq.W)
        for (int64_t i = 0; i < H * f * d; i++)
            sink += p->fq.W[i];
    if (p->fq.b)
        for (int64_t i = 0; i < H * f; i++)
            sink += p->fq.b[i];
    if (p->fq.u)
        for (int64_t i = 0; i < H * d; i++)
            sink += p->fq.u[i];
    if (!p->fk_tied) {
        int64_t fk = p->fk.f ? p->fk.f : d;
        if (p->fk.W)
            for (int64_t i = 0; i < H * fk * d; i++)
                sink += p->fk.W[i];
        if (p->fk.b)
            for (int64_t i = 0; i < H * fk; i++)
                sink += p->fk.b[i];
        if (p->fk.u)
            for (int64_t i = 0; i < H * d; i++)
                sink += p->fk.u[i];
    }
    if (p->window_w)
        for (int64_t i = 0; i < H; i++)
            sink += p->window_w[i];
    (void)sink;
}

static void params_from_memfd(const uint8_t *data, size_t size, int64_t H, int64_t d)
{
    int fd = memfd_create("fuzz_params", 0);
    if (fd < 0)
        return;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64], err[STILL__ERRLEN];
        still_params p;
        double *store = NULL;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        memset(err, 'x', sizeof err);
        int rc = still__params_read(path, H, d, &p, &store, err, sizeof err);
        if (rc == STILL_OK) {
            check_params(&p, H, d);
            /* the parameters must be usable by the library as they are */
            still_shape s = {1, H, 1, 1, d, 1, STILL_LAYOUT_BHND};
            still__resolved r;
            (void)still__resolve(NULL, &s, &p, &r);
        } else {
            REQUIRE(known_failure(rc));
            REQUIRE(memchr(err, '\0', sizeof err) != NULL);
        }
        free(store);
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    still__st_file f;
    char err[STILL__ERRLEN];
    int64_t H = 1, d = 1;
    memset(&f, 0, sizeof f);
    memset(err, 'x', sizeof err);
    int rc = still__st_parse(data, size, "fuzz.safetensors", &f, err, sizeof err);
    if (rc != STILL_OK) {
        REQUIRE(known_failure(rc));
        REQUIRE(memchr(err, '\0', sizeof err) != NULL);
        still__st_free(&f); /* must be safe after a failure */
    } else {
        REQUIRE(f.n >= 0);
        for (int i = 0; i < f.n; i++) {
            REQUIRE(f.names && f.names[i]);
            check_array(&f.arrays[i]);
            const still__array *g = still__st_get(&f, f.names[i]);
            REQUIRE(g != NULL);
        }
        REQUIRE(still__st_get(&f, "\x01no such tensor") == NULL);
        const still__array *w = still__st_get(&f, "fq.W");
        if (w && w->ndim == 3 && w->shape[0] >= 1 && w->shape[0] <= 64 && w->shape[2] >= 1 &&
            w->shape[2] <= 4096) {
            H = w->shape[0];
            d = w->shape[2];
        }
        still__st_free(&f);
    }
    params_from_memfd(data, size, H, d);
    return 0;
}
