/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * test_io.c -- the .npy and safetensors readers and writers (SPEC §11).
 *
 * Files are built here byte by byte from the formats' definitions (not by
 * the code under test) wherever the test is about parsing, and every
 * malformed class must be refused with its documented status code.
 */
#define _POSIX_C_SOURCE 200809L
#include "io.h"

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------- */

static char tmpdir[64];

static void make_tmpdir(void)
{
    strcpy(tmpdir, "test_io.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[512];
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

/* Number of entries in the temporary directory (to see leftovers). */
static int tmpdir_entries(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    int n = 0;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static const char *tmppath(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

static void write_bytes(const char *path, const void *b, size_t n)
{
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(b, 1, n, fp), n);
    fclose(fp);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    ck_assert_uint_eq(fread(b, 1, *n, fp), *n);
    fclose(fp);
    return b;
}

/* A .npy buffer from its parts: version major, header text (the padding
 * and '\n' are the caller's), data. */
typedef struct buf {
    unsigned char *b;
    size_t n;
} buf;

static buf npy_bytes(int major, const char *header, const void *data, size_t datalen)
{
    size_t hlen = strlen(header), pre = major == 1 ? 10 : 12;
    buf r = {malloc(pre + hlen + datalen + 1), pre + hlen + datalen};
    memcpy(r.b, "\x93NUMPY", 6);
    r.b[6] = (unsigned char)major;
    r.b[7] = 0;
    for (size_t i = 0; i < pre - 8; i++)
        r.b[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(r.b + pre, header, hlen);
    if (datalen)
        memcpy(r.b + pre + hlen, data, datalen);
    return r;
}

/* Parses a .npy buffer and returns the status; the array is freed. */
static int npy_status(buf b, char *err)
{
    still__array a;
    int rc = still__npy_parse(b.b, b.n, "x.npy", &a, err, STILL__ERRLEN);
    still__array_free(&a);
    free(b.b);
    return rc;
}

static int npy_header_status(const char *header, size_t datalen)
{
    char err[STILL__ERRLEN] = "";
    unsigned char zeros[64] = {0};
    int rc = npy_status(npy_bytes(1, header, zeros, datalen), err);
    if (rc) { /* every refusal is one line naming the file */
        ck_assert_ptr_nonnull(strstr(err, "x.npy"));
        ck_assert_ptr_null(strchr(err, '\n'));
    }
    return rc;
}

/* A small deterministic generator (no global state). */
static double next_uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* ---- .npy: round trips ------------------------------------------------------ */

static void roundtrip(int dtype, int ndim, const int64_t *shape)
{
    size_t count = 1, size = still__dtype_size(dtype);
    uint64_t seed = 42 + (uint64_t)ndim;
    for (int i = 0; i < ndim; i++)
        count *= (size_t)shape[i];
    unsigned char *data = malloc(count * size + 1);
    for (size_t i = 0; i < count; i++) {
        double x = next_uniform(&seed) * 1e3;
        if (dtype == STILL__DT_F4) {
            float f = (float)x;
            memcpy(data + 4 * i, &f, 4);
        } else if (dtype == STILL__DT_F8) {
            memcpy(data + 8 * i, &x, 8);
        } else {
            data[i] = (unsigned char)(seed >> 40);
        }
    }
    char err[STILL__ERRLEN];
    const char *p = tmppath("rt.npy");
    ck_assert_int_eq(still__npy_write(p, dtype, ndim, shape, data, err, sizeof err), STILL_OK);
    still__array a;
    ck_assert_int_eq(still__npy_read(p, &a, err, sizeof err), STILL_OK);
    ck_assert_int_eq(a.dtype, dtype);
    ck_assert_int_eq(a.ndim, ndim);
    ck_assert_int_eq(a.count, (int64_t)count);
    for (int i = 0; i < ndim; i++)
        ck_assert_int_eq(a.shape[i], shape[i]);
    ck_assert_int_eq(memcmp(a.data, data, count * size), 0);
    still__array_free(&a);
    free(data);
    ck_assert_int_eq(tmpdir_entries(), 1); /* no temporary left */
}

START_TEST(test_npy_roundtrip_f4_f8_u1_keeps_bytes_and_shape)
{
    const int64_t s4[4] = {2, 3, 5, 7}, s1[1] = {11}, s3[3] = {1, 4, 9}, s0[1] = {0};
    make_tmpdir();
    int dt[3] = {STILL__DT_F4, STILL__DT_F8, STILL__DT_U1};
    for (int i = 0; i < 3; i++) {
        roundtrip(dt[i], 4, s4);
        roundtrip(dt[i], 1, s1);
        roundtrip(dt[i], 3, s3);
        roundtrip(dt[i], 0, NULL); /* a 0-d array holds one element */
        roundtrip(dt[i], 1, s0);   /* an empty array */
    }
    remove_tmpdir();
}
END_TEST

/* SPEC §11 / the NumPy format: version 1.0, the dict as NumPy writes it,
 * the data at a multiple of 64 bytes, the header ending in '\n'. */
START_TEST(test_npy_writer_emits_v1_header_padded_to_64)
{
    const int64_t shape[2] = {2, 3}, one[1] = {5};
    float x[6] = {0};
    double y[5] = {0};
    size_t n;
    char err[STILL__ERRLEN];
    make_tmpdir();
    ck_assert_int_eq(still__npy_write(tmppath("h.npy"), STILL__DT_F4, 2, shape, x, err, sizeof err), 0);
    unsigned char *b = read_bytes(tmppath("h.npy"), &n);
    ck_assert_int_eq(memcmp(b, "\x93NUMPY\x01\x00", 8), 0);
    size_t hlen = (size_t)b[8] | (size_t)b[9] << 8;
    ck_assert_uint_eq((10 + hlen) % 64, 0);
    ck_assert_uint_eq(n, 10 + hlen + sizeof x);
    ck_assert_int_eq(b[10 + hlen - 1], '\n');
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    ck_assert_int_eq(memcmp(b + 10, dict, strlen(dict)), 0);
    for (size_t i = 10 + strlen(dict); i < 10 + hlen - 1; i++)
        ck_assert_int_eq(b[i], ' ');
    free(b);
    ck_assert_int_eq(still__npy_write(tmppath("o.npy"), STILL__DT_F8, 1, one, y, err, sizeof err), 0);
    b = read_bytes(tmppath("o.npy"), &n);
    const char *dict1 = "{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }";
    ck_assert_int_eq(memcmp(b + 10, dict1, strlen(dict1)), 0);
    free(b);
    remove_tmpdir();
}
END_TEST

START_TEST(test_npy_parses_v1_v2_v3_headers)
{
    double x[2] = {1.5, -2.25};
    for (int major = 1; major <= 3; major++) {
        const char *h = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }   \n";
        buf b = npy_bytes(major, h, x, sizeof x);
        still__array a;
        char err[STILL__ERRLEN];
        ck_assert_int_eq(still__npy_parse(b.b, b.n, "v.npy", &a, err, sizeof err), STILL_OK);
        ck_assert_int_eq(a.dtype, STILL__DT_F8);
        ck_assert_int_eq(a.ndim, 1);
        ck_assert_int_eq(a.shape[0], 2);
        ck_assert(((double *)a.data)[0] == 1.5 && ((double *)a.data)[1] == -2.25);
        still__array_free(&a);
        free(b.b);
    }
}
END_TEST

START_TEST(test_npy_dict_accepts_any_key_order_quotes_and_spacing)
{
    const char *ok[] = {
        "{'shape': (2, 2), 'descr': '<f4', 'fortran_order': False}\n",
        "{ \"fortran_order\" : False , \"shape\" : ( 2 , 2 , ) , \"descr\" : \"<f4\" , }\n",
        "{'descr':'<f4','fortran_order':False,'shape':(2,2)}          \n",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        ck_assert_int_eq(npy_header_status(ok[i], 16), STILL_OK);
    /* a 0-d array: shape () holds one element */
    ck_assert_int_eq(npy_header_status("{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", 4),
                     STILL_OK);
}
END_TEST

START_TEST(test_npy_accepts_u1_spellings)
{
    const char *h[] = {"{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }\n",
                       "{'descr': '<u1', 'fortran_order': False, 'shape': (3,), }\n",
                       "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }\n"};
    for (int i = 0; i < 3; i++) {
        unsigned char d[3] = {0, 1, 1};
        still__array a;
        buf b = npy_bytes(1, h[i], d, 3);
        ck_assert_int_eq(still__npy_parse(b.b, b.n, "u.npy", &a, NULL, 0), STILL_OK);
        ck_assert_int_eq(a.dtype, STILL__DT_U1);
        ck_assert_int_eq(((unsigned char *)a.data)[2], 1);
        still__array_free(&a);
        free(b.b);
    }
}
END_TEST

/* binary16: sign, 5 exponent bits (bias 15), 10 mantissa bits. */
START_TEST(test_npy_f2_converts_known_halves_exactly)
{
    const uint16_t h[] = {0x3C00, 0xC000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF,
                          0x3555, 0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00};
    const double want[] = {1.0, -2.0, 0x1p-24, 1023 * 0x1p-24, 0x1p-14, 65504.0, -65504.0,
                           0.333251953125, 0.0, -0.0, INFINITY, -INFINITY, NAN};
    const size_t n = sizeof h / sizeof *h;
    unsigned char raw[2 * 13];
    for (size_t i = 0; i < n; i++) { /* little-endian bytes */
        raw[2 * i] = (unsigned char)(h[i] & 0xff);
        raw[2 * i + 1] = (unsigned char)(h[i] >> 8);
    }
    buf b = npy_bytes(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (13,), }\n", raw,
                      sizeof raw);
    still__array a;
    double *d;
    float *f;
    ck_assert_int_eq(still__npy_parse(b.b, b.n, "h.npy", &a, NULL, 0), STILL_OK);
    ck_assert_int_eq(a.dtype, STILL__DT_F2);
    ck_assert_int_eq(still__array_to_f64(&a, &d), STILL_OK);
    ck_assert_int_eq(still__array_to_f32(&a, &f), STILL_OK);
    for (size_t i = 0; i < n; i++) {
        if (isnan(want[i])) {
            ck_assert(isnan(d[i]) && isnan(f[i]));
            continue;
        }
        ck_assert_msg(d[i] == want[i], "half 0x%04x: %.17g, expected %.17g", h[i], d[i], want[i]);
        ck_assert((double)f[i] == want[i]);
        ck_assert_int_eq(!!signbit(d[i]), !!signbit(want[i]));
    }
    free(d);
    free(f);
    still__array_free(&a);
    free(b.b);
}
END_TEST

START_TEST(test_npy_f4_to_f64_and_f8_to_f32_convert)
{
    float x[3] = {0.1f, -3.5f, 1e30f};
    buf b = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n", x, sizeof x);
    still__array a;
    double *d;
    ck_assert_int_eq(still__npy_parse(b.b, b.n, NULL, &a, NULL, 0), STILL_OK);
    ck_assert_int_eq(still__array_to_f64(&a, &d), STILL_OK);
    for (int i = 0; i < 3; i++)
        ck_assert(d[i] == (double)x[i]);
    free(d);
    still__array_free(&a);
    free(b.b);
    unsigned char u[2] = {1, 2};
    b = npy_bytes(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }\n", u, 2);
    ck_assert_int_eq(still__npy_parse(b.b, b.n, NULL, &a, NULL, 0), STILL_OK);
    ck_assert_int_eq(still__array_to_f64(&a, &d), STILL_E_DTYPE); /* u1 is no float */
    still__array_free(&a);
    free(b.b);
}
END_TEST

/* ---- .npy: malformed files --------------------------------------------------- */

START_TEST(test_npy_refuses_bad_magic_and_version)
{
    char err[STILL__ERRLEN];
    buf b = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", "abcd", 4);
    b.b[1] = 'X';
    ck_assert_int_eq(npy_status(b, err), STILL_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "magic"));
    b = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", "abcd", 4);
    b.b[6] = 4;
    ck_assert_int_eq(npy_status(b, err), STILL_E_FORMAT);
    b = npy_bytes(1, "", NULL, 0);
    b.n = 5; /* shorter than the magic */
    ck_assert_int_eq(npy_status(b, err), STILL_E_FORMAT);
}
END_TEST

START_TEST(test_npy_refuses_truncated_header)
{
    char err[STILL__ERRLEN];
    buf b = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", "abcd", 4);
    b.n = 30; /* cut inside the header */
    ck_assert_int_eq(npy_status(b, err), STILL_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "truncated"));
    b = npy_bytes(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", NULL, 0);
    b.n = 11; /* cut inside the 4-byte length of version 2 */
    ck_assert_int_eq(npy_status(b, err), STILL_E_FORMAT);
}
END_TEST

START_TEST(test_npy_refuses_truncated_and_trailing_data)
{
    char err[STILL__ERRLEN];
    float x[7] = {0};
    const char *h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
    ck_assert_int_eq(npy_status(npy_bytes(1, h, x, 6 * 4 - 1), err), STILL_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "expected 24 bytes, found 23"));
    ck_assert_int_eq(npy_status(npy_bytes(1, h, x, 7 * 4), err), STILL_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "expected 24 bytes, found 28"));
    ck_assert_int_eq(npy_status(npy_bytes(1, h, x, 6 * 4), err), STILL_OK);
}
END_TEST

START_TEST(test_npy_refuses_malformed_dicts)
{
    const char *bad[] = {
        "", "\n", "{}\n",
        "{'descr': '<f4', 'fortran_order': False}\n",                         /* no shape */
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}\n",   /* unknown key */
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\n", /* twice */
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",           /* no '\n' */
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } x\n",       /* junk after */
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2), }\n",          /* int, not tuple */
        "{'descr': '<f4', 'fortran_order': False, 'shape': [2], }\n",          /* a list */
        "{'descr': '<f4', 'fortran_order': false, 'shape': (2,), }\n",         /* not Python */
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,), }\n",       /* a float */
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,,), }\n",
        "{'descr': '<f4' 'fortran_order': False, 'shape': (2,), }\n",          /* no comma */
        "{'descr: '<f4', 'fortran_order': False, 'shape': (2,), }\n",          /* quote */
        "{descr: '<f4', fortran_order: False, shape: (2,), }\n",               /* bare keys */
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }\n", /* 9-d */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(npy_header_status(bad[i], 8) == STILL_E_FORMAT, "accepted: %s", bad[i]);
}
END_TEST

START_TEST(test_npy_refuses_big_endian_and_unknown_dtypes)
{
    char err[STILL__ERRLEN];
    const char *h = "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }\n";
    ck_assert_int_eq(npy_status(npy_bytes(1, h, "abcd", 4), err), STILL_E_DTYPE);
    ck_assert_ptr_nonnull(strstr(err, "big-endian"));
    const char *other[] = {"<i4", "<c8", "|S4", "O", "<f16", "=f4", "<M8[s]"};
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        char hdr[128];
        snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (1,), }\n",
                 other[i]);
        ck_assert_msg(npy_header_status(hdr, 4) == STILL_E_DTYPE, "accepted %s", other[i]);
    }
    ck_assert_int_eq(npy_header_status("{'descr': [('a', '<f4')], 'fortran_order': False, "
                                       "'shape': (1,), }\n", 4), STILL_E_DTYPE);
}
END_TEST

START_TEST(test_npy_refuses_fortran_order)
{
    char err[STILL__ERRLEN];
    const char *h = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n";
    ck_assert_int_eq(npy_status(npy_bytes(1, h, "0123456789abcdef", 16), err), STILL_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "fortran_order"));
}
END_TEST

START_TEST(test_npy_refuses_negative_and_overflowing_dims)
{
    ck_assert_int_eq(npy_header_status("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }\n", 0),
                     STILL_E_FORMAT);
    /* 2^32 * 2^32 elements overflow size_t; 2^61 * 8 bytes too */
    ck_assert_int_eq(npy_header_status("{'descr': '<f4', 'fortran_order': False, "
                                       "'shape': (4294967296, 4294967296), }\n", 0),
                     STILL_E_OVERFLOW);
    ck_assert_int_eq(npy_header_status("{'descr': '<f8', 'fortran_order': False, "
                                       "'shape': (2305843009213693952,), }\n", 0),
                     STILL_E_OVERFLOW);
    ck_assert_int_eq(npy_header_status("{'descr': '<f4', 'fortran_order': False, "
                                       "'shape': (99999999999999999999,), }\n", 0),
                     STILL_E_OVERFLOW);
    /* huge but representable: refused because the data is not there, before
     * any allocation of that size */
    ck_assert_int_eq(npy_header_status("{'descr': '<f4', 'fortran_order': False, "
                                       "'shape': (1000000000000,), }\n", 0),
                     STILL_E_FORMAT);
}
END_TEST

START_TEST(test_npy_refuses_absurd_header_length)
{
    char err[STILL__ERRLEN];
    buf b = npy_bytes(2, "{}\n", NULL, 0);
    b.b[8] = b.b[9] = b.b[10] = b.b[11] = 0xff; /* 4 GiB header */
    ck_assert_int_eq(npy_status(b, err), STILL_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "header length"));
}
END_TEST

START_TEST(test_npy_read_refuses_missing_truncated_and_directory)
{
    char err[STILL__ERRLEN];
    still__array a;
    make_tmpdir();
    ck_assert_int_eq(still__npy_read(tmppath("none.npy"), &a, err, sizeof err), STILL_E_IO);
    ck_assert_ptr_nonnull(strstr(err, "none.npy"));
    ck_assert_int_eq(still__npy_read(tmpdir, &a, err, sizeof err), STILL_E_IO);
    float x[4] = {1, 2, 3, 4};
    buf b = npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n", x, 16);
    write_bytes(tmppath("t.npy"), b.b, b.n - 1);
    ck_assert_int_eq(still__npy_read(tmppath("t.npy"), &a, err, sizeof err), STILL_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "truncated"));
    write_bytes(tmppath("t.npy"), b.b, 40);
    ck_assert_int_eq(still__npy_read(tmppath("t.npy"), &a, err, sizeof err), STILL_E_FORMAT);
    write_bytes(tmppath("t.npy"), b.b, b.n);
    ck_assert_int_eq(still__npy_read(tmppath("t.npy"), &a, err, sizeof err), STILL_OK);
    ck_assert(((float *)a.data)[3] == 4.0f);
    still__array_free(&a);
    free(b.b);
    remove_tmpdir();
}
END_TEST

START_TEST(test_npy_failed_write_leaves_nothing)
{
    char err[STILL__ERRLEN];
    const int64_t shape[1] = {2};
    double x[2] = {1, 2};
    make_tmpdir();
    ck_assert_int_eq(still__npy_write(tmppath("nodir/o.npy"), STILL__DT_F8, 1, shape, x, err,
                                      sizeof err), STILL_E_IO);
    ck_assert_ptr_nonnull(strstr(err, "nodir/o.npy"));
    ck_assert_int_eq(tmpdir_entries(), 0);
    /* a refused write does not touch an existing file */
    write_bytes(tmppath("keep.npy"), "old", 3);
    ck_assert_int_eq(still__npy_write(tmppath("keep.npy"), STILL__DT_F2, 1, shape, x, err,
                                      sizeof err), STILL_E_DTYPE);
    const int64_t neg[1] = {-2};
    ck_assert_int_eq(still__npy_write(tmppath("keep.npy"), STILL__DT_F8, 1, neg, x, err,
                                      sizeof err), STILL_E_SHAPE);
    size_t n;
    unsigned char *b = read_bytes(tmppath("keep.npy"), &n);
    ck_assert_uint_eq(n, 3);
    free(b);
    /* writing onto a directory fails and leaves no temporary */
    mkdir(tmppath("adir"), 0755);
    ck_assert_int_eq(still__npy_write(tmppath("adir"), STILL__DT_F8, 1, shape, x, err,
                                      sizeof err), STILL_E_IO);
    ck_assert_int_eq(tmpdir_entries(), 2);
    rmdir(tmppath("adir"));
    remove_tmpdir();
}
END_TEST

/* ---- safetensors ------------------------------------------------------------ */

/* A safetensors buffer from a JSON header and a data buffer. */
static buf st_bytes(const char *json, const void *data, size_t datalen)
{
    size_t h = strlen(json);
    buf r = {malloc(8 + h + datalen + 1), 8 + h + datalen};
    for (int i = 0; i < 8; i++)
        r.b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(r.b + 8, json, h);
    if (datalen)
        memcpy(r.b + 8 + h, data, datalen);
    return r;
}

static int st_status(buf b, char *err)
{
    still__st_file f;
    int rc = still__st_parse(b.b, b.n, "p.safetensors", &f, err, STILL__ERRLEN);
    if (rc) {
        ck_assert_ptr_nonnull(strstr(err, "p.safetensors"));
        ck_assert_ptr_null(strchr(err, '\n'));
        ck_assert_int_eq(f.n, 0);
    }
    still__st_free(&f);
    free(b.b);
    return rc;
}

static int st_json_status(const char *json, size_t datalen)
{
    char err[STILL__ERRLEN] = "";
    unsigned char zeros[256] = {0};
    return st_status(st_bytes(json, zeros, datalen), err);
}

START_TEST(test_st_roundtrip_f32_f64_with_escaped_names)
{
    char err[STILL__ERRLEN];
    float a[6] = {1, -2, 3.5f, 4, 5, 6};
    double b[3] = {0.1, -1e300, 7};
    still__array arr[3] = {
        {STILL__DT_F4, 2, {2, 3}, 6, a},
        {STILL__DT_F8, 1, {3}, 3, b},
        {STILL__DT_F8, 0, {0}, 1, b},
    };
    const char *names[3] = {"fq.W", "we\"ird\\name\n\xc3\xa9", "scalar"};
    make_tmpdir();
    ck_assert_int_eq(still__st_write(tmppath("w.safetensors"), 3, names, arr, err, sizeof err),
                     STILL_OK);
    still__st_file f;
    ck_assert_int_eq(still__st_read(tmppath("w.safetensors"), &f, err, sizeof err), STILL_OK);
    ck_assert_int_eq(f.n, 3);
    for (int i = 0; i < 3; i++) {
        const still__array *g = still__st_get(&f, names[i]);
        ck_assert_ptr_nonnull(g);
        ck_assert_int_eq(g->dtype, arr[i].dtype);
        ck_assert_int_eq(g->ndim, arr[i].ndim);
        ck_assert_int_eq(g->count, arr[i].count);
        ck_assert_int_eq(memcmp(g->data, arr[i].data,
                                (size_t)g->count * still__dtype_size(g->dtype)), 0);
    }
    ck_assert_ptr_null(still__st_get(&f, "absent"));
    still__st_free(&f);
    /* the header is padded so that the data starts 8-byte aligned */
    size_t n;
    unsigned char *raw = read_bytes(tmppath("w.safetensors"), &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | raw[i];
    ck_assert_uint_eq(hlen % 8, 0);
    ck_assert_uint_eq(n, 8 + hlen + sizeof a + sizeof b + sizeof b[0]);
    free(raw);
    /* a duplicate name is refused by the writer, and nothing is written */
    const char *dup[2] = {"x", "x"};
    ck_assert_int_eq(still__st_write(tmppath("d.safetensors"), 2, dup, arr, err, sizeof err),
                     STILL_E_FORMAT);
    ck_assert_int_eq(tmpdir_entries(), 1);
    remove_tmpdir();
}
END_TEST

START_TEST(test_st_parses_metadata_escapes_f16_bf16)
{
    /* F16 1.0 = 0x3C00, -2 = 0xC000; BF16 1.0 = 0x3F80, -3 = 0xC040 */
    const unsigned char data[8] = {0x00, 0x3C, 0x00, 0xC0, 0x80, 0x3F, 0x40, 0xC0};
    const char *json =
        " { \"__metadata__\" : {\"format\": \"pt\", \"note\": \"a\\\"b\\u00e9\\ud83d\\ude00\"},"
        "\"h\\u0061lf\": {\"dtype\":\"F16\", \"shape\": [2], \"data_offsets\": [0, 4]},\n"
        "\"b\": {\"data_offsets\": [4,8], \"shape\": [1, 2], \"dtype\": \"BF16\"}}    ";
    buf b = st_bytes(json, data, sizeof data);
    still__st_file f;
    char err[STILL__ERRLEN];
    ck_assert_int_eq(still__st_parse(b.b, b.n, "m", &f, err, sizeof err), STILL_OK);
    ck_assert_int_eq(f.n, 2);
    const still__array *h = still__st_get(&f, "half"), *bf = still__st_get(&f, "b");
    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_nonnull(bf);
    double *d;
    ck_assert_int_eq(still__array_to_f64(h, &d), STILL_OK);
    ck_assert(d[0] == 1.0 && d[1] == -2.0);
    free(d);
    ck_assert_int_eq(still__array_to_f64(bf, &d), STILL_OK);
    ck_assert(d[0] == 1.0 && d[1] == -3.0);
    free(d);
    still__st_free(&f);
    free(b.b);
}
END_TEST

START_TEST(test_st_refuses_bad_json)
{
    const char *bad[] = {
        "",                                                                     /* nothing */
        "[]",
        "{",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},}",  /* trailing , */
        "{'a': {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",     /* quotes */
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1.0], \"data_offsets\": [0, 4]}}", /* float */
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}",  /* sign */
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [01], \"data_offsets\": [0, 4]}}",  /* leading 0 */
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}} x", /* junk */
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4], \"x\": 1}}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}",                           /* missing */
        "{\"a\": {\"dtype\": \"F32\", \"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 4]}}",
        "{\"a\": {\"dtype\": true, \"shape\": [1], \"data_offsets\": [0, 4]}}",
        "{\"a\": null}",
        "{\"a\x01\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", /* control */
        "{\"\xff\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",  /* UTF-8 */
        "{\"\xc0\xaf\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", /* overlong */
        "{\"\\ud800\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", /* lone */
        "{\"\\u0000\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", /* NUL */
        "{\"\\x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",     /* escape */
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, \"__metadata__\": "
        "{\"k\": 1}}",                                                           /* non-string */
        "{\"__metadata__\": {}, \"__metadata__\": {}}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(st_json_status(bad[i], 4) == STILL_E_FORMAT, "accepted #%zu: %s", i, bad[i]);
    ck_assert_int_eq(st_json_status("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], "
                                    "\"data_offsets\": [0, 4]}}", 4), STILL_OK);
}
END_TEST

START_TEST(test_st_refuses_offsets_out_of_range_and_size_mismatch)
{
    char err[STILL__ERRLEN];
    unsigned char z[64] = {0};
    ck_assert_int_eq(st_status(st_bytes("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], "
                                        "\"data_offsets\": [0, 8]}}", z, 4), err), STILL_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "outside"));
    ck_assert_int_eq(st_status(st_bytes("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], "
                                        "\"data_offsets\": [4, 0]}}", z, 4), err), STILL_E_FORMAT);
    ck_assert_int_eq(st_status(st_bytes("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], "
                                        "\"data_offsets\": [0, 18446744073709551615]}}", z, 4), err),
                     STILL_E_FORMAT);
    ck_assert_int_eq(st_status(st_bytes("{\"a\": {\"dtype\": \"F64\", \"shape\": [1], "
                                        "\"data_offsets\": [0, 4]}}", z, 4), err), STILL_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "expected 8 bytes"));
    /* overlapping tensors, a hole, bytes left over */
    ck_assert_int_eq(st_status(st_bytes("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], "
                                        "\"data_offsets\": [0, 4]}, \"b\": {\"dtype\": \"F32\", "
                                        "\"shape\": [1], \"data_offsets\": [2, 6]}}", z, 6), err),
                     STILL_E_FORMAT);
    ck_assert_int_eq(st_status(st_bytes("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], "
                                        "\"data_offsets\": [4, 8]}}", z, 8), err), STILL_E_FORMAT);
    ck_assert_int_eq(st_status(st_bytes("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], "
                                        "\"data_offsets\": [0, 4]}}", z, 12), err), STILL_E_FORMAT);
    /* a shape whose size overflows */
    ck_assert_int_eq(st_status(st_bytes("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, "
                                        "4294967296], \"data_offsets\": [0, 4]}}", z, 4), err),
                     STILL_E_OVERFLOW);
}
END_TEST

START_TEST(test_st_refuses_duplicate_names_and_unknown_dtype)
{
    char err[STILL__ERRLEN];
    unsigned char z[8] = {0};
    ck_assert_int_eq(st_status(st_bytes("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], "
                                        "\"data_offsets\": [0, 4]}, \"a\": {\"dtype\": \"F32\", "
                                        "\"shape\": [1], \"data_offsets\": [4, 8]}}", z, 8), err),
                     STILL_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "twice"));
    /* the same name spelled with an escape is still the same name */
    ck_assert_int_eq(st_status(st_bytes("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], "
                                        "\"data_offsets\": [0, 4]}, \"\\u0061\": {\"dtype\": "
                                        "\"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", z, 8),
                               err), STILL_E_FORMAT);
    ck_assert_int_eq(st_status(st_bytes("{\"a\": {\"dtype\": \"I32\", \"shape\": [1], "
                                        "\"data_offsets\": [0, 4]}}", z, 4), err), STILL_E_DTYPE);
    ck_assert_ptr_nonnull(strstr(err, "I32"));
}
END_TEST

/* jansson parses more than the format allows; each of these is refused
 * with STILL_E_FORMAT and a one-line message (st_status checks). */
static char *nested(const char *pre, int depth, const char *open, const char *close,
                    const char *post)
{
    size_t n = strlen(pre) + (size_t)depth * (strlen(open) + strlen(close)) + strlen(post) + 1;
    char *s = malloc(n), *p = s;
    ck_assert_ptr_nonnull(s);
    p += sprintf(p, "%s", pre);
    for (int i = 0; i < depth; i++)
        p += sprintf(p, "%s", open);
    for (int i = 0; i < depth; i++)
        p += sprintf(p, "%s", close);
    sprintf(p, "%s", post);
    return s;
}

START_TEST(test_st_refuses_json_beyond_the_format)
{
#define T(fields) "{\"a\": {\"dtype\": \"F32\", " fields "}}"
    const char *bad[] = {
        T("\"shape\": [1], \"data_offsets\": [0, 4.0]"),                  /* a float */
        T("\"shape\": [1], \"data_offsets\": [0, 4e0]"),                  /* an exponent */
        T("\"shape\": [1E400], \"data_offsets\": [0, 4]"),                /* a huge real */
        T("\"shape\": [true], \"data_offsets\": [0, 4]"),
        T("\"shape\": null, \"data_offsets\": [0, 4]"),
        T("\"shape\": {\"0\": 1}, \"data_offsets\": [0, 4]"),
        T("\"shape\": [1], \"data_offsets\": \"0 4\""),
        T("\"shape\": [9223372036854775808], \"data_offsets\": [0, 4]"),  /* 2^63 */
        T("\"shape\": [1], \"data_offsets\": [0, 99999999999999999999999]"),
        T("\"shape\": [-9223372036854775809], \"data_offsets\": [0, 4]"),
        T("\"shape\": [1], \"data_offsets\": [-4, 0]"),
        "{\"a\": [\"F32\", [1], [0, 4]]}",                                    /* not an object */
        "{\"a\": 1}",
        "{\"__metadata__\": {\"k\": {\"n\": \"v\"}}}",                         /* nested */
        "{\"__metadata__\": {\"k\": [\"v\"]}}",
        "{\"__metadata__\": {\"k\": null}}",
        "{\"__metadata__\": [\"k\", \"v\"]}",
        "{\"__metadata__\": {\"k\": \"a\", \"k\": \"b\"}}",                    /* duplicate */
        "{\"\\udc00\": {}}",                                                  /* lone low */
        "{\"\xed\xa0\x80\": {}}",                                             /* UTF-8 surrogate */
        "{\"\xf4\x90\x80\x80\": {}}",                                         /* past U+10FFFF */
        "{\"a\nb\": {}}",                                                     /* a raw newline */
        "{\"a\": {\"dtype\": \"F\\u0000\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
    };
#undef T
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(st_json_status(bad[i], 4) == STILL_E_FORMAT, "accepted #%zu: %s", i, bad[i]);
    /* NUL bytes after the object are not padding */
    char err[STILL__ERRLEN];
    unsigned char z[4] = {0};
    buf b = st_bytes("{}  ", z, 0);
    b.b[8 + 2] = '\0';
    ck_assert_int_eq(st_status(b, err), STILL_E_FORMAT);
    /* depth bombs: past jansson's nesting limit, and just under it */
    char *deep[3] = {
        nested("{\"__metadata__\": {\"k\": ", 200000, "[", "]", "}}"),
        nested("{\"a\": ", 200000, "{\"b\": ", "}", "}"),
        nested("{\"a\": {\"dtype\": \"F32\", \"shape\": ", 2000, "[", "]",
               ", \"data_offsets\": [0, 4]}}"),
    };
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(st_json_status(deep[i], 4) == STILL_E_FORMAT, "depth bomb %d accepted", i);
        free(deep[i]);
    }
    /* whitespace of every JSON kind is padding; -0 is the integer 0 */
    ck_assert_int_eq(st_json_status(" \t\n\r{\"a\": {\"dtype\": \"F32\", \"shape\": [1], "
                                    "\"data_offsets\": [-0, 4]}} \t\n\r", 4), STILL_OK);
}
END_TEST

START_TEST(test_st_refuses_bad_header_length)
{
    char err[STILL__ERRLEN];
    buf b = st_bytes("{}", NULL, 0);
    b.b[0] = 3; /* 3 > the 2 bytes after the length */
    ck_assert_int_eq(st_status(b, err), STILL_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "exceeds"));
    b = st_bytes("{}", NULL, 0);
    b.b[7] = 0x80; /* 2^63: beyond the limit */
    ck_assert_int_eq(st_status(b, err), STILL_E_FORMAT);
    b = st_bytes("{}", NULL, 0);
    b.n = 5; /* shorter than the length itself */
    ck_assert_int_eq(st_status(b, err), STILL_E_FORMAT);
    ck_assert_int_eq(st_json_status("{}", 0), STILL_OK); /* no tensors is a valid file */
    /* the same checks through a file */
    make_tmpdir();
    b = st_bytes("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
                 "abcd", 4);
    b.b[1] = 1; /* header length + 256 */
    write_bytes(tmppath("l.safetensors"), b.b, b.n);
    still__st_file f;
    ck_assert_int_eq(still__st_read(tmppath("l.safetensors"), &f, err, sizeof err),
                     STILL_E_FORMAT);
    ck_assert_int_eq(still__st_read(tmppath("absent"), &f, err, sizeof err), STILL_E_IO);
    free(b.b);
    remove_tmpdir();
}
END_TEST

/* ---- SPEC §11 parameter files ----------------------------------------------- */

typedef struct pset {
    int n;
    const char *names[8];
    still__array arrays[8];
} pset;

static void padd(pset *p, const char *name, int dtype, int ndim, int64_t s0, int64_t s1,
                 int64_t s2, void *data)
{
    still__array *a = &p->arrays[p->n];
    memset(a, 0, sizeof *a);
    a->dtype = dtype;
    a->ndim = ndim;
    a->shape[0] = s0;
    a->shape[1] = s1;
    a->shape[2] = s2;
    a->count = 1;
    for (int i = 0; i < ndim; i++)
        a->count *= a->shape[i];
    a->data = data;
    p->names[p->n++] = name;
}

static int params_status(pset *p, int64_t Hq, int64_t d, still_params *out, double **storage,
                         char *err)
{
    ck_assert_int_eq(still__st_write(tmppath("p.safetensors"), p->n, p->names, p->arrays, err,
                                     STILL__ERRLEN), STILL_OK);
    return still__params_read(tmppath("p.safetensors"), Hq, d, out, storage, err, STILL__ERRLEN);
}

enum { HQ = 2, D = 3, F = 4 };
static double Wq[HQ * F * D], bq[HQ * F], uq[HQ * D], wk[HQ * F * D], ww[HQ];
static float Wq32[HQ * F * D];

static void fill_values(void)
{
    uint64_t s = 7;
    for (int i = 0; i < HQ * F * D; i++) {
        Wq[i] = next_uniform(&s);
        wk[i] = next_uniform(&s);
        Wq32[i] = (float)next_uniform(&s);
    }
    for (int i = 0; i < HQ * F; i++)
        bq[i] = next_uniform(&s);
    for (int i = 0; i < HQ * D; i++)
        uq[i] = next_uniform(&s);
    ww[0] = 0.5;
    ww[1] = -1.5;
}

START_TEST(test_params_full_set_is_read_with_values)
{
    pset p = {0};
    still_params pr;
    double *st;
    char err[STILL__ERRLEN];
    make_tmpdir();
    fill_values();
    padd(&p, "fq.W", STILL__DT_F8, 3, HQ, F, D, Wq);
    padd(&p, "fq.b", STILL__DT_F8, 2, HQ, F, 0, bq);
    padd(&p, "fq.u", STILL__DT_F8, 2, HQ, D, 0, uq);
    padd(&p, "fk.W", STILL__DT_F8, 3, HQ, F, D, wk);
    padd(&p, "window.w", STILL__DT_F8, 1, HQ, 0, 0, ww);
    ck_assert_int_eq(params_status(&p, HQ, D, &pr, &st, err), STILL_OK);
    ck_assert_int_eq(pr.fk_tied, 0);
    ck_assert_int_eq(pr.fq.f, F);
    ck_assert_int_eq(pr.fk.f, F);
    ck_assert_ptr_null(pr.fk.b);
    ck_assert_ptr_null(pr.fk.u);
    ck_assert_int_eq(memcmp(pr.fq.W, Wq, sizeof Wq), 0);
    ck_assert_int_eq(memcmp(pr.fq.b, bq, sizeof bq), 0);
    ck_assert_int_eq(memcmp(pr.fq.u, uq, sizeof uq), 0);
    ck_assert_int_eq(memcmp(pr.fk.W, wk, sizeof wk), 0);
    ck_assert(pr.window_w[0] == 0.5 && pr.window_w[1] == -1.5);
    /* the library accepts what the reader produced (SPEC §2: m = 2f) */
    still_config cfg;
    int64_t m;
    still_config_default(&cfg);
    ck_assert_int_eq(still_feature_dim(&cfg, &pr, D, &m), STILL_OK);
    ck_assert_int_eq(m, 2 * F);
    free(st);
    remove_tmpdir();
}
END_TEST

START_TEST(test_params_f32_fq_only_ties_fk)
{
    pset p = {0};
    still_params pr;
    double *st;
    char err[STILL__ERRLEN];
    make_tmpdir();
    fill_values();
    padd(&p, "fq.W", STILL__DT_F4, 3, HQ, F, D, Wq32);
    ck_assert_int_eq(params_status(&p, HQ, D, &pr, &st, err), STILL_OK);
    ck_assert_int_eq(pr.fk_tied, 1);
    ck_assert_ptr_null(pr.fq.b);
    ck_assert_ptr_null(pr.window_w);
    for (int i = 0; i < HQ * F * D; i++)
        ck_assert(pr.fq.W[i] == (double)Wq32[i]);
    free(st);
    remove_tmpdir();
}
END_TEST

START_TEST(test_params_bias_without_W_is_identity_rows)
{
    pset p = {0};
    still_params pr;
    double *st;
    char err[STILL__ERRLEN];
    make_tmpdir();
    fill_values();
    padd(&p, "fq.b", STILL__DT_F8, 2, HQ, D, 0, bq); /* identity: f = d */
    ck_assert_int_eq(params_status(&p, HQ, D, &pr, &st, err), STILL_OK);
    ck_assert_ptr_null(pr.fq.W);
    ck_assert_int_eq(pr.fq.f, D);
    still_config cfg;
    int64_t m;
    still_config_default(&cfg);
    ck_assert_int_eq(still_feature_dim(&cfg, &pr, D, &m), STILL_OK);
    ck_assert_int_eq(m, 2 * D);
    free(st);
    p.n = 0;
    padd(&p, "fq.b", STILL__DT_F8, 2, HQ, F, 0, bq); /* F != d without W */
    ck_assert_int_eq(params_status(&p, HQ, D, &pr, &st, err), STILL_E_PARAMS);
    ck_assert_ptr_nonnull(strstr(err, "fq.b"));
    remove_tmpdir();
}
END_TEST

START_TEST(test_params_refuses_wrong_shapes)
{
    struct { const char *name; int ndim; int64_t s0, s1, s2; } bad[] = {
        {"fq.W", 3, HQ + 1, F, D}, {"fq.W", 3, HQ, F, D + 1}, {"fq.W", 2, HQ, F, 0},
        {"fq.W", 3, HQ, 0, D},     {"fq.u", 2, HQ, F, 0},     {"fq.u", 1, HQ, 0, 0},
        {"fk.W", 3, HQ, F, D + 1}, {"fk.u", 2, HQ + 1, D, 0}, {"window.w", 1, HQ + 1, 0, 0},
        {"window.w", 2, HQ, 1, 0},
    };
    char err[STILL__ERRLEN];
    make_tmpdir();
    fill_values();
    static double big[64];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pset p = {0};
        still_params pr;
        double *st = (double *)1;
        padd(&p, bad[i].name, STILL__DT_F8, bad[i].ndim, bad[i].s0, bad[i].s1, bad[i].s2, big);
        ck_assert_msg(params_status(&p, HQ, D, &pr, &st, err) == STILL_E_PARAMS, "accepted %zu", i);
        ck_assert_ptr_nonnull(strstr(err, bad[i].name));
        ck_assert_ptr_nonnull(strstr(err, "expected"));
        ck_assert_ptr_null(st);
    }
    /* fq.b must follow the rows of fq.W */
    pset p = {0};
    still_params pr;
    double *st;
    padd(&p, "fq.W", STILL__DT_F8, 3, HQ, F, D, Wq);
    padd(&p, "fq.b", STILL__DT_F8, 2, HQ, F + 1, 0, big);
    ck_assert_int_eq(params_status(&p, HQ, D, &pr, &st, err), STILL_E_PARAMS);
    /* fk with another feature dimension than fq (SPEC §3 needs one) */
    p.n = 0;
    padd(&p, "fq.W", STILL__DT_F8, 3, HQ, F, D, Wq);
    padd(&p, "fk.u", STILL__DT_F8, 2, HQ, D, 0, uq); /* fk identity: f = d != F */
    ck_assert_int_eq(params_status(&p, HQ, D, &pr, &st, err), STILL_E_PARAMS);
    remove_tmpdir();
}
END_TEST

START_TEST(test_params_refuses_unknown_names_and_nonfinite)
{
    char err[STILL__ERRLEN];
    still_params pr;
    double *st;
    pset p = {0};
    make_tmpdir();
    fill_values();
    padd(&p, "fq.W", STILL__DT_F8, 3, HQ, F, D, Wq);
    padd(&p, "fq.weight", STILL__DT_F8, 3, HQ, F, D, wk);
    ck_assert_int_eq(params_status(&p, HQ, D, &pr, &st, err), STILL_E_PARAMS);
    ck_assert_ptr_nonnull(strstr(err, "unknown tensor 'fq.weight'"));
    double bad[HQ * D];
    memcpy(bad, uq, sizeof bad);
    bad[4] = NAN;
    p.n = 0;
    padd(&p, "fq.u", STILL__DT_F8, 2, HQ, D, 0, bad);
    ck_assert_int_eq(params_status(&p, HQ, D, &pr, &st, err), STILL_E_NONFINITE);
    ck_assert_ptr_nonnull(strstr(err, "element 4"));
    bad[4] = INFINITY;
    ck_assert_int_eq(params_status(&p, HQ, D, &pr, &st, err), STILL_E_NONFINITE);
    ck_assert_int_eq(still__params_read(tmppath("absent"), HQ, D, &pr, &st, err, sizeof err),
                     STILL_E_IO);
    remove_tmpdir();
}
END_TEST

static Suite *io_suite(void)
{
    Suite *s = suite_create("io");
    TCase *npy = tcase_create("npy");
    tcase_add_test(npy, test_npy_roundtrip_f4_f8_u1_keeps_bytes_and_shape);
    tcase_add_test(npy, test_npy_writer_emits_v1_header_padded_to_64);
    tcase_add_test(npy, test_npy_parses_v1_v2_v3_headers);
    tcase_add_test(npy, test_npy_dict_accepts_any_key_order_quotes_and_spacing);
    tcase_add_test(npy, test_npy_accepts_u1_spellings);
    tcase_add_test(npy, test_npy_f2_converts_known_halves_exactly);
    tcase_add_test(npy, test_npy_f4_to_f64_and_f8_to_f32_convert);
    tcase_add_test(npy, test_npy_refuses_bad_magic_and_version);
    tcase_add_test(npy, test_npy_refuses_truncated_header);
    tcase_add_test(npy, test_npy_refuses_truncated_and_trailing_data);
    tcase_add_test(npy, test_npy_refuses_malformed_dicts);
    tcase_add_test(npy, test_npy_refuses_big_endian_and_unknown_dtypes);
    tcase_add_test(npy, test_npy_refuses_fortran_order);
    tcase_add_test(npy, test_npy_refuses_negative_and_overflowing_dims);
    tcase_add_test(npy, test_npy_refuses_absurd_header_length);
    tcase_add_test(npy, test_npy_read_refuses_missing_truncated_and_directory);
    tcase_add_test(npy, test_npy_failed_write_leaves_nothing);
    suite_add_tcase(s, npy);
    TCase *st = tcase_create("safetensors");
    tcase_add_test(st, test_st_roundtrip_f32_f64_with_escaped_names);
    tcase_add_test(st, test_st_parses_metadata_escapes_f16_bf16);
    tcase_add_test(st, test_st_refuses_bad_json);
    tcase_add_test(st, test_st_refuses_offsets_out_of_range_and_size_mismatch);
    tcase_add_test(st, test_st_refuses_duplicate_names_and_unknown_dtype);
    tcase_add_test(st, test_st_refuses_json_beyond_the_format);
    tcase_add_test(st, test_st_refuses_bad_header_length);
    suite_add_tcase(s, st);
    TCase *pr = tcase_create("params");
    tcase_add_test(pr, test_params_full_set_is_read_with_values);
    tcase_add_test(pr, test_params_f32_fq_only_ties_fk);
    tcase_add_test(pr, test_params_bias_without_W_is_identity_rows);
    tcase_add_test(pr, test_params_refuses_wrong_shapes);
    tcase_add_test(pr, test_params_refuses_unknown_names_and_nonfinite);
    suite_add_tcase(s, pr);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(io_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
