/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_state_io.c -- saving and restoring a streaming state (SPEC §7): the
 * stream's explicit little-endian layout, restore + continue = never
 * stopping (bitwise), and every corrupt, truncated or foreign stream
 * refused with an error code.  Run on both paths when the fast state
 * exists (path set by the suite). */
#include "test_state_util.h"
#include "state.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The paths under test: the ref path always; the fast path when its state
 * can be created in this build. */
static int path_available(int path)
{
    still_shape s = {1, 1, 1, 1, 2, 2, STILL_LAYOUT_BHND};
    still_state *st;
    int rc = still_state_create(NULL, &s, NULL, path, &st);
    still_state_destroy(st);
    return rc == STILL_OK;
}

static void make_case(tu_case *c, uint64_t seed, const still_shape *shape, int path,
                      int variant)
{
    tu_rng g;
    tu_rng_seed(&g, seed);
    tu_case_init(c, &g, shape, 1.5, variant % 2);
    c->cfg.chunk = 4;
    c->cfg.topk = 2;
    c->cfg.window = 5;
    c->cfg.local = variant % 3;
    c->cfg.max_sel = variant % 4 >= 2 ? 3 : 0;
    c->cfg.select_per_kv = variant % 5 == 1;
    c->cfg.routing = variant % 7 == 3 ? STILL_ROUTING_WINDOW : STILL_ROUTING_SALIENCY;
    if (variant % 3 == 1)
        tu_case_random_params(c, &g, 3, 1, 1, 0, 1);
    if (path == STILL_PATH_FAST) {
        c->dtype = STILL_F32;
        tu_case_round(c);
        c->cfg.threads = 1; /* tiny problems: no thread pool spinning */
    }
}

static still_state *new_state(const tu_case *c, int path)
{
    still_state *st;
    ck_assert_int_eq(
        still_state_create(&c->cfg, &c->shape, c->use_params ? &c->params : NULL, path, &st),
        STILL_OK);
    return st;
}

/* The stream of a state, malloc'd; *len its length. */
static uint8_t *save(const still_state *st, size_t *len)
{
    ck_assert_int_eq(still_state_save(st, NULL, 0, len), STILL_OK);
    uint8_t *buf = tu_alloc(*len);
    ck_assert_int_eq(still_state_save(st, buf, *len, len), STILL_OK);
    return buf;
}

static uint64_t le64_at(const uint8_t *p)
{
    uint64_t x = 0;
    for (int b = 0; b < 8; b++)
        x |= (uint64_t)p[b] << (8 * b);
    return x;
}

/* Recomputes the trailing FNV-1a 64 of a stream (independent code: the
 * FNV definition, offset basis 0xcbf29ce484222325, prime 0x100000001b3). */
static void reseal(uint8_t *buf, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len - 8; i++) {
        h ^= buf[i];
        h *= 0x100000001b3ULL;
    }
    for (int b = 0; b < 8; b++)
        buf[len - 8 + b] = (uint8_t)(h >> (8 * b));
}

/* Stop after `stop` tokens, save, load, continue: the outputs after the
 * restore equal those of the state that never stopped, bitwise, and so do
 * the two states' streams at the end. */
static void check_restore_continues(int path, int variant, int layout)
{
    still_shape shape = {2, 4, 2, 29, 4, 3, layout};
    tu_case c;
    make_case(&c, 40 + (uint64_t)variant, &shape, path, variant);
    const int64_t no = 2 * 4 * 29 * 3, ns = 2 * 4 * 29;
    double *o1 = tu_dalloc(no), *o2 = tu_dalloc(no), *s1 = tu_dalloc(ns), *s2 = tu_dalloc(ns);
    for (int64_t stop = 0; stop <= 29; stop += 3 + variant % 2) {
        still_state *a = new_state(&c, path), *b;
        size_t len, len_a, len_b;
        ck_assert_int_eq(ts_append(a, &c, 0, stop, o1, s1), STILL_OK);
        uint8_t *buf = save(a, &len);
        ck_assert_int_eq(
            still_state_load(buf, len, c.use_params ? &c.params : NULL, &b), STILL_OK);
        int64_t P;
        ck_assert_int_eq(still_state_position(b, &P), STILL_OK);
        ck_assert_int_eq(P, stop);
        memcpy(o2, o1, (size_t)no * sizeof *o1);
        memcpy(s2, s1, (size_t)ns * sizeof *s1);
        for (int64_t t = stop; t < 29; t++) { /* one decode step each */
            ck_assert_int_eq(ts_append(a, &c, t, 1, o1, s1), STILL_OK);
            ck_assert_int_eq(ts_append(b, &c, t, 1, o2, s2), STILL_OK);
        }
        ck_assert_msg(memcmp(o1, o2, (size_t)no * sizeof *o1) == 0,
                      "variant %d stop %lld: outputs differ after restore", variant,
                      (long long)stop);
        ck_assert(memcmp(s1, s2, (size_t)ns * sizeof *s1) == 0);
        uint8_t *ea = save(a, &len_a), *eb = save(b, &len_b);
        ck_assert(len_a == len_b && memcmp(ea, eb, len_a) == 0);
        free(buf);
        free(ea);
        free(eb);
        still_state_destroy(a);
        still_state_destroy(b);
    }
    free(o1);
    free(o2);
    free(s1);
    free(s2);
    tu_case_free(&c);
}

static void run_on_paths(void (*fn)(int path))
{
    fn(STILL_PATH_REF);
    if (path_available(STILL_PATH_FAST))
        fn(STILL_PATH_FAST);
}

static void restore_all_variants(int path)
{
    for (int variant = 0; variant < 14; variant++)
        check_restore_continues(path, variant, variant % 2);
}

START_TEST(test_restore_and_continue_equals_never_stopping)
{
    run_on_paths(restore_all_variants);
}
END_TEST

/* The stream's bytes are defined: magic, version 1, the path, the length,
 * then little-endian fields -- checked at fixed offsets, independently of
 * the host's byte order. */
static void layout_is_explicit(int path)
{
    still_shape shape = {1, 2, 1, 9, 3, 2, STILL_LAYOUT_BHND};
    tu_case c;
    make_case(&c, 5, &shape, path, 0);
    c.cfg.eps_den = 0.25; /* 0x3FD0000000000000 */
    still_state *st = new_state(&c, path);
    ck_assert_int_eq(ts_append(st, &c, 0, 9, NULL, NULL), STILL_OK);
    size_t len;
    uint8_t *buf = save(st, &len);
    static const uint8_t magic[8] = {0x89, 'S', 'T', 'I', 'L', 'L', '\r', '\n'};
    ck_assert(memcmp(buf, magic, 8) == 0);
    ck_assert(buf[8] == 1 && buf[9] == 0 && buf[10] == 0 && buf[11] == 0);
    ck_assert_int_eq(buf[12], path);
    ck_assert_uint_eq(le64_at(buf + 16), len);
    ck_assert_uint_eq(le64_at(buf + 24), 4);                     /* chunk */
    ck_assert_uint_eq(le64_at(buf + 24 + 40 + 32 + 8), 0x3FD0000000000000ULL); /* eps_den */
    ck_assert_uint_eq(le64_at(buf + 112), 1);                    /* batch */
    ck_assert_uint_eq(le64_at(buf + 112 + 24), 3);               /* dim_qk */
    ck_assert_uint_eq(le64_at(buf + 164), 9);                    /* position */
    uint8_t copy[8];
    memcpy(copy, buf + len - 8, 8);
    reseal(buf, len);
    ck_assert_msg(memcmp(copy, buf + len - 8, 8) == 0, "checksum is FNV-1a 64, LE");
    free(buf);
    still_state_destroy(st);
    tu_case_free(&c);
}

START_TEST(test_stream_layout_is_little_endian_and_explicit)
{
    run_on_paths(layout_is_explicit);
}
END_TEST

/* A small stream for the corruption loops. */
static uint8_t *small_stream(int path, int64_t tokens, size_t *len, tu_case *c)
{
    still_shape shape = {1, 2, 1, 12, 2, 2, STILL_LAYOUT_BHND};
    make_case(c, 77, &shape, path, 2); /* capped */
    still_state *st = new_state(c, path);
    ck_assert_int_eq(ts_append(st, c, 0, tokens, NULL, NULL), STILL_OK);
    uint8_t *buf = save(st, len);
    still_state_destroy(st);
    return buf;
}

static int refused(int rc)
{
    return rc == STILL_E_FORMAT || rc == STILL_E_CHECKSUM || rc == STILL_E_VERSION;
}

/* Every single-byte corruption of the stream (three patterns per byte) is
 * refused with FORMAT / CHECKSUM / VERSION, never accepted, never a crash;
 * *out stays NULL. */
static void corrupt_bytes(int path)
{
    tu_case c;
    size_t len;
    uint8_t *buf = small_stream(path, 11, &len, &c);
    static const uint8_t masks[3] = {0x01, 0x80, 0xFF};
    for (size_t i = 0; i < len; i++)
        for (int m = 0; m < 3; m++) {
            still_state *st = (still_state *)buf;
            buf[i] ^= masks[m];
            int rc = still_state_load(buf, len, NULL, &st);
            buf[i] ^= masks[m];
            ck_assert_msg(refused(rc), "byte %zu mask %#x: status %d", i, masks[m], rc);
            ck_assert_ptr_null(st);
        }
    free(buf);
    tu_case_free(&c);
}

START_TEST(test_every_corrupted_byte_is_refused)
{
    run_on_paths(corrupt_bytes);
}
END_TEST

/* Every proper prefix (truncation) is refused with STILL_E_FORMAT; so is
 * the stream with bytes appended. */
static void truncations(int path)
{
    tu_case c;
    size_t len;
    uint8_t *buf = small_stream(path, 7, &len, &c);
    uint8_t *longer = tu_alloc(len + 1);
    memcpy(longer, buf, len);
    for (size_t n = 0; n < len; n++) {
        still_state *st;
        uint8_t *prefix = tu_alloc(n ? n : 1); /* exactly n readable bytes */
        memcpy(prefix, buf, n);
        ck_assert_msg(still_state_load(prefix, n, NULL, &st) == STILL_E_FORMAT, "prefix %zu",
                      n);
        ck_assert_ptr_null(st);
        free(prefix);
    }
    still_state *st;
    ck_assert_int_eq(still_state_load(longer, len + 1, NULL, &st), STILL_E_FORMAT);
    ck_assert_int_eq(still_state_load(buf, len, NULL, &st), STILL_OK);
    still_state_destroy(st);
    free(longer);
    free(buf);
    tu_case_free(&c);
}

START_TEST(test_every_truncation_is_refused)
{
    run_on_paths(truncations);
}
END_TEST

/* Wrong version (even with a valid checksum) -> VERSION; wrong magic ->
 * FORMAT; a resealed stream whose fields contradict each other -> FORMAT;
 * other parameters -> PARAMS; equal parameters elsewhere in memory -> OK. */
static void foreign_streams(int path)
{
    tu_case c;
    size_t len;
    uint8_t *buf = small_stream(path, 10, &len, &c), *bad = tu_alloc(len);
    still_state *st;
    static const uint32_t versions[] = {0, 5, 0x01000000u}; /* 1 to 4 exist */
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        memcpy(bad, buf, len);
        for (int b = 0; b < 4; b++)
            bad[8 + b] = (uint8_t)(versions[i] >> (8 * b));
        reseal(bad, len);
        ck_assert_int_eq(still_state_load(bad, len, NULL, &st), STILL_E_VERSION);
    }
    memcpy(bad, buf, len);
    memcpy(bad, "\x89STILX\r\n", 8);
    ck_assert_int_eq(still_state_load(bad, len, NULL, &st), STILL_E_FORMAT);
    /* checksum-valid but inconsistent: position, chunk, the counts of the
     * first unit (cache_n, raw_n, folded), the path */
    static const size_t offsets[] = {164, 24, 180, 180 + 8, 180 + 24, 12};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        memcpy(bad, buf, len);
        bad[offsets[i]] ^= 0x02;
        reseal(bad, len);
        ck_assert_msg(still_state_load(bad, len, NULL, &st) == STILL_E_FORMAT, "offset %zu",
                      offsets[i]);
        ck_assert_ptr_null(st);
    }
    memcpy(bad, buf, len);
    size_t last_z = len - 8 - (path == STILL_PATH_REF ? 8 : 4); /* the last z value */
    if (path == STILL_PATH_REF)
        memcpy(bad + last_z, "\x00\x00\x00\x00\x00\x00\xf8\x7f", 8); /* NaN */
    else
        memcpy(bad + last_z, "\x00\x00\xc0\x7f", 4);
    reseal(bad, len);
    ck_assert_int_eq(still_state_load(bad, len, NULL, &st), STILL_E_FORMAT);
    /* parameters: a copy of them accepted, any other set refused */
    tu_case cp;
    still_shape shape = {1, 2, 1, 12, 2, 2, STILL_LAYOUT_BHND};
    make_case(&cp, 78, &shape, path, 1); /* random fq, fk, b, u, window_w */
    still_state *a = new_state(&cp, path);
    ck_assert_int_eq(ts_append(a, &cp, 0, 9, NULL, NULL), STILL_OK);
    size_t plen;
    uint8_t *pbuf = save(a, &plen);
    still_state_destroy(a);
    double b2[2 * 3];
    still_params p = cp.params;
    memcpy(b2, cp.params.fq.b, sizeof b2);
    p.fq.b = b2;
    ck_assert_int_eq(still_state_load(pbuf, plen, &p, &st), STILL_OK);
    still_state_destroy(st);
    b2[5] += 1e-12;
    ck_assert_int_eq(still_state_load(pbuf, plen, &p, &st), STILL_E_PARAMS);
    ck_assert_ptr_null(st);
    p.fq.b = cp.params.fq.b;
    p.window_w = NULL;
    ck_assert_int_eq(still_state_load(pbuf, plen, &p, &st), STILL_E_PARAMS);
    ck_assert_int_eq(still_state_load(pbuf, plen, NULL, &st), STILL_E_PARAMS);
    ck_assert_int_eq(still_state_load(buf, len, &cp.params, &st), STILL_E_PARAMS);
    free(pbuf);
    tu_case_free(&cp);
    free(bad);
    free(buf);
    tu_case_free(&c);
}

START_TEST(test_foreign_streams_are_refused)
{
    run_on_paths(foreign_streams);
}
END_TEST

/* The API: NULL arguments, the length query, a buffer too small. */
START_TEST(test_save_load_arguments)
{
    tu_case c;
    size_t len, got = 0;
    uint8_t *buf = small_stream(STILL_PATH_REF, 5, &len, &c);
    still_state *st;
    ck_assert_int_eq(still_state_load(buf, len, NULL, NULL), STILL_E_NULL);
    ck_assert_int_eq(still_state_load(NULL, len, NULL, &st), STILL_E_NULL);
    ck_assert_int_eq(still_state_load(buf, len, NULL, &st), STILL_OK);
    ck_assert_int_eq(still_state_save(NULL, buf, len, &got), STILL_E_NULL);
    ck_assert_int_eq(still_state_save(st, buf, len, NULL), STILL_E_NULL);
    ck_assert_int_eq(still_state_save(st, buf, len - 1, &got), STILL_E_OVERFLOW);
    ck_assert_uint_eq(got, len);
    ck_assert_int_eq(still_state_save(st, NULL, 0, &got), STILL_OK);
    ck_assert_uint_eq(got, len);
    still_state_destroy(st);
    free(buf);
    tu_case_free(&c);
}
END_TEST

static Suite *state_io_suite(void)
{
    Suite *s = suite_create("state_io");
    TCase *tc = tcase_create("stream");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_restore_and_continue_equals_never_stopping);
    tcase_add_test(tc, test_stream_layout_is_little_endian_and_explicit);
    tcase_add_test(tc, test_every_corrupted_byte_is_refused);
    tcase_add_test(tc, test_every_truncation_is_refused);
    tcase_add_test(tc, test_foreign_streams_are_refused);
    tcase_add_test(tc, test_save_load_arguments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(state_io_suite());
}
