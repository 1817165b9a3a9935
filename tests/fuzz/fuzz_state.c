/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * fuzz_state.c -- libFuzzer target for the restore of a streaming state
 * (still_state_load, lib/state_io.c; SPEC §7), issue 7.
 *
 * A saved stream is checksummed, so random bytes stop at the checksum.
 * Each input is therefore tried twice: as it is, and with its length
 * field and FNV-1a checksum rewritten to match (when it is long enough to
 * have them), so the mutations reach the counts and arrays behind them.
 * The loader must return a status for every input, without crash, bad
 * read, UB, leak or an allocation the input does not justify.  A state it
 * accepts must save back to exactly the bytes it was loaded from (no
 * silent change), and must take two more tokens (still_state_append).
 *
 * Every configuration is tried: a state allocates what it holds -- what
 * its stream holds, for a restored one -- not what its configuration
 * could hold (issue 7: a 1.5 KB stream with chunk = 1e9 used to make the
 * loader ask for ~200 GB; tests/fuzz/corpus/state/crash-huge-chunk.state),
 * so libFuzzer's -malloc_limit_mb catches any allocation the input does
 * not justify.
 */
#include "state.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond)                                                                        \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "fuzz_state: invariant failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

/* "\x89STILL\r\n", version at 8, length at 16, header 180 bytes (192 in
 * version 2), checksum last */
#define LENGTH_AT 16
#define MIN_STREAM (180 + 8)

static int known_failure(int rc)
{
    return rc == STILL_E_FORMAT || rc == STILL_E_VERSION || rc == STILL_E_CHECKSUM ||
           rc == STILL_E_PARAMS || rc == STILL_E_NOMEM || rc == STILL_E_OVERFLOW ||
           rc == STILL_E_CONFIG || rc == STILL_E_SHAPE || rc == STILL_E_UNSUPPORTED ||
           rc == STILL_E_ISA || rc == STILL_E_NONFINITE; /* a fast state for an ISA this CPU lacks */
}

static void put_le64(uint8_t *p, uint64_t x)
{
    for (int b = 0; b < 8; b++)
        p[b] = (uint8_t)(x >> (8 * b));
}

/* Two more tokens of small values, when the shape is small enough. */
static void append_two(still_state *st)
{
    const still_shape *s = &st->r.shape;
    const int64_t n = 2;
    if (s->batch * s->heads_q * (s->dim_qk + s->dim_v) > 4096)
        return;
    int64_t nq = s->batch * s->heads_q * n * s->dim_qk, nk = s->batch * s->heads_kv * n * s->dim_qk;
    int64_t nv = s->batch * s->heads_kv * n * s->dim_v, no = s->batch * s->heads_q * n * s->dim_v;
    int f64 = st->path == STILL_PATH_REF;
    size_t item = f64 ? sizeof(double) : sizeof(float);
    void *q = calloc((size_t)nq, item), *k = calloc((size_t)nk, item);
    void *v = calloc((size_t)nv, item), *o = calloc((size_t)no, item);
    double *sigma = calloc((size_t)(s->batch * s->heads_q * n), sizeof(double));
    if (q && k && v && o && sigma) {
        for (int64_t i = 0; i < nq + nk + nv; i++) {
            double x = 0.25 * (double)(i % 7) - 0.75;
            void *arr = i < nq ? q : i < nq + nk ? k : v;
            int64_t j = i < nq ? i : i < nq + nk ? i - nq : i - nq - nk;
            if (f64)
                ((double *)arr)[j] = x;
            else
                ((float *)arr)[j] = (float)x;
        }
        still_tensors t = {0};
        t.dtype = f64 ? STILL_F64 : STILL_F32;
        t.q = q;
        t.k = k;
        t.v = v;
        t.o = o;
        t.sigma = sigma;
        int64_t before = -1, after = -1;
        REQUIRE(still_state_position(st, &before) == STILL_OK);
        int rc = still_state_append(st, n, &t);
        REQUIRE(still_state_position(st, &after) == STILL_OK);
        /* STILL_E_NONFINITE: an output the dtype cannot hold (a restored S of
           1e38, say); the tokens were taken (still_state_create(3)) */
        REQUIRE(rc == STILL_OK || rc == STILL_E_NONFINITE ? after == before + n
                                                          : after == before);
    }
    free(q);
    free(k);
    free(v);
    free(o);
    free(sigma);
}

static void try_load(const uint8_t *data, size_t size)
{
    still_state *st = (still_state *)0x1;
    int rc = still_state_load(data, size, NULL, &st);
    if (rc != STILL_OK) {
        if (!known_failure(rc))
            fprintf(stderr, "fuzz_state: still_state_load -> %d (%s)\n", rc, still_strerror(rc));
        REQUIRE(known_failure(rc));
        REQUIRE(st == NULL);
        return;
    }
    REQUIRE(st != NULL);
    size_t len = 0, bytes = 0;
    REQUIRE(still_state_bytes(st, &bytes) == STILL_OK);
    REQUIRE(still_state_save(st, NULL, 0, &len) == STILL_OK);
    REQUIRE(len == size);
    uint8_t *again = malloc(len);
    REQUIRE(again != NULL);
    REQUIRE(still_state_save(st, again, len, &len) == STILL_OK);
    REQUIRE(memcmp(again, data, size) == 0); /* what was accepted is kept as it was */
    free(again);
    append_two(st);
    still_state_destroy(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    try_load(data, size);
    if (size >= MIN_STREAM) {
        uint8_t *fixed = malloc(size);
        if (!fixed)
            return 0;
        memcpy(fixed, data, size);
        put_le64(fixed + LENGTH_AT, (uint64_t)size);
        put_le64(fixed + size - 8, still__fnv1a64(STILL__FNV_INIT, fixed, size - 8));
        try_load(fixed, size);
        free(fixed);
    }
    return 0;
}
