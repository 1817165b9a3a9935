/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * npy.c -- NumPy .npy arrays (SPEC §11), and the helpers shared by the
 * file formats: element types, conversions, errors, atomic writes.
 *
 * A .npy file is: the magic "\x93NUMPY", a version byte pair (1.0, 2.0 or
 * 3.0), the header length (u16 for 1.0, u32 after), a header that is a
 * Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...)}
 * padded with spaces and ending in '\n', then the raw C-order data.
 * Every file is untrusted: each size is checked before it is used.
 */
#define _POSIX_C_SOURCE 200809L
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* No header we accept needs more than a few hundred bytes; NumPy itself
 * refuses headers over 10000 bytes by default. */
#define NPY_MAX_HEADER 65536u
/* Longest string value we read in a header ('<f4', 'fortran_order'). */
#define NPY_MAX_TOKEN 64

/* ---- shared helpers ------------------------------------------------------- */

size_t still__dtype_size(int dtype)
{
    switch (dtype) {
    case STILL__DT_F2: return 2;
    case STILL__DT_BF16: return 2;
    case STILL__DT_F4: return 4;
    case STILL__DT_F8: return 8;
    case STILL__DT_U1: return 1;
    case STILL__DT_I4: return 4;
    default: return 0;
    }
}

const char *still__dtype_name(int dtype)
{
    switch (dtype) {
    case STILL__DT_F2: return "<f2";
    case STILL__DT_BF16: return "bf16";
    case STILL__DT_F4: return "<f4";
    case STILL__DT_F8: return "<f8";
    case STILL__DT_U1: return "|u1";
    case STILL__DT_I4: return "<i4";
    default: return "?";
    }
}

int still__io_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        /* one line: a newline inside a file name must not split it */
        for (char *p = err; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
    }
    return code;
}

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

void still__le_swap(void *data, size_t count, size_t itemsize)
{
    unsigned char *p = data;
    if (itemsize < 2 || host_is_little_endian())
        return;
    for (size_t i = 0; i < count; i++, p += itemsize)
        for (size_t a = 0, b = itemsize - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

void still__array_free(still__array *a)
{
    if (!a)
        return;
    free(a->data);
    a->data = NULL;
    a->count = 0;
}

/* IEEE binary16 to double, exact (every half is a double). */
static double half_to_double(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double x;
    if (e == 0)
        x = ldexp((double)m, -24); /* zero and subnormals */
    else if (e == 31)
        x = m ? NAN : INFINITY;
    else
        x = ldexp((double)(m + 1024), e - 25);
    return (h & 0x8000) ? -x : x;
}

/* bfloat16 is the upper half of a binary32. */
static float bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static double element_as_double(const still__array *a, int64_t i)
{
    switch (a->dtype) {
    case STILL__DT_F2: return half_to_double(((const uint16_t *)a->data)[i]);
    case STILL__DT_BF16: return (double)bf16_to_float(((const uint16_t *)a->data)[i]);
    case STILL__DT_F4: return (double)((const float *)a->data)[i];
    default: return ((const double *)a->data)[i];
    }
}

static int is_float_dtype(int dtype)
{
    return dtype == STILL__DT_F2 || dtype == STILL__DT_BF16 || dtype == STILL__DT_F4 ||
           dtype == STILL__DT_F8;
}

static int convert_alloc(const still__array *a, size_t itemsize, void **out)
{
    size_t bytes;
    *out = NULL;
    if (!a || !out)
        return STILL_E_NULL;
    if (!is_float_dtype(a->dtype))
        return STILL_E_DTYPE;
    if (a->count < 0 || still__mul_size((size_t)a->count, itemsize, &bytes))
        return STILL_E_OVERFLOW;
    *out = malloc(bytes ? bytes : 1);
    return *out ? STILL_OK : STILL_E_NOMEM;
}

int still__array_to_f64(const still__array *a, double **out)
{
    void *p;
    int rc = convert_alloc(a, sizeof(double), &p);
    if (rc)
        return rc;
    double *d = p;
    for (int64_t i = 0; i < a->count; i++)
        d[i] = element_as_double(a, i);
    *out = d;
    return STILL_OK;
}

int still__array_to_f32(const still__array *a, float **out)
{
    void *p;
    int rc = convert_alloc(a, sizeof(float), &p);
    if (rc)
        return rc;
    float *f = p;
    for (int64_t i = 0; i < a->count; i++)
        f[i] = (float)element_as_double(a, i); /* F2, BF16, F4: exact */
    *out = f;
    return STILL_OK;
}

/* ---- atomic writes -------------------------------------------------------- */

static void errno_text(int errnum, char *buf, size_t len)
{
    if (strerror_r(errnum, buf, len) != 0)
        snprintf(buf, len, "error %d", errnum);
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes one part in little-endian order: directly on little-endian
 * hosts, through a swapped bounce buffer otherwise. */
static int write_part(int fd, const still__write_part *part)
{
    size_t bytes;
    if (still__mul_size(part->count, part->itemsize, &bytes)) {
        errno = EOVERFLOW;
        return -1;
    }
    if (part->itemsize < 2 || host_is_little_endian())
        return write_all(fd, part->data, bytes);
    unsigned char buf[4096];
    size_t per = sizeof buf / part->itemsize;
    const unsigned char *p = part->data;
    for (size_t done = 0; done < part->count;) {
        size_t n = part->count - done < per ? part->count - done : per;
        memcpy(buf, p + done * part->itemsize, n * part->itemsize);
        still__le_swap(buf, n, part->itemsize);
        if (write_all(fd, buf, n * part->itemsize))
            return -1;
        done += n;
    }
    return 0;
}

int still__write_fd(int fd, const char *name, const still__write_part *parts, int nparts,
                    char *err, size_t errlen)
{
    char why[128];
    for (int i = 0; i < nparts; i++)
        if (write_part(fd, &parts[i])) {
            errno_text(errno, why, sizeof why);
            return still__io_fail(err, errlen, STILL_E_IO, "%s: cannot write the output file: %s",
                                  name ? name : "(null)", why);
        }
    return STILL_OK;
}

int still__write_to(const char *path, int fd, const still__write_part *parts, int nparts,
                    char *err, size_t errlen)
{
    return fd >= 0 ? still__write_fd(fd, path, parts, nparts, err, errlen)
                   : still__write_atomic(path, parts, nparts, err, errlen);
}

int still__write_atomic(const char *path, const still__write_part *parts, int nparts,
                        char *err, size_t errlen)
{
    char tmp[4096], why[128];
    int fd = -1;

    if (!path || (nparts > 0 && !parts))
        return still__io_fail(err, errlen, STILL_E_NULL, "(null): no output path");
    /* a name of our own beside the target (same file system, so rename is
     * atomic); O_EXCL never reuses someone else's file */
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        int n = snprintf(tmp, sizeof tmp, "%s.tmp-%ld-%d", path, (long)getpid(), attempt);
        if (n < 0 || (size_t)n >= sizeof tmp)
            return still__io_fail(err, errlen, STILL_E_IO, "%s: output path too long", path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        errno_text(errno, why, sizeof why);
        return still__io_fail(err, errlen, STILL_E_IO, "%s: cannot create the output file: %s",
                              path, why);
    }
    for (int i = 0; i < nparts; i++)
        if (write_part(fd, &parts[i]))
            goto fail;
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    return STILL_OK;
fail:
    errno_text(errno, why, sizeof why);
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return still__io_fail(err, errlen, STILL_E_IO, "%s: cannot write the output file: %s",
                          path, why);
}

/* ---- .npy header ---------------------------------------------------------- */

typedef struct npy_header {
    int dtype;
    int fortran;
    int ndim;
    int64_t shape[STILL__MAX_NDIM];
} npy_header;

/* A cursor over the header text, for the strict dict parser. */
typedef struct cursor {
    const char *p, *end;
    const char *name;
    char *err;
    size_t errlen;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

static int bad_header(cursor *c, const char *what)
{
    return still__io_fail(c->err, c->errlen, STILL_E_FORMAT,
                          "%s: malformed .npy header: %s", c->name, what);
}

static int expect_char(cursor *c, char ch, const char *what)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p != ch)
        return bad_header(c, what);
    c->p++;
    return STILL_OK;
}

/* A Python string literal in single or double quotes, without escapes. */
static int parse_pystring(cursor *c, char *out, size_t outlen)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return bad_header(c, "expected a quoted string");
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '\\' || ch < 0x20 || ch >= 0x7f || n + 1 >= outlen)
            return bad_header(c, "unexpected string (escapes, control or non-ASCII "
                                 "characters, or too long)");
        out[n++] = (char)ch;
        c->p++;
    }
    if (c->p >= c->end)
        return bad_header(c, "unterminated string");
    c->p++;
    out[n] = '\0';
    return STILL_OK;
}

static int parse_descr(cursor *c, npy_header *h)
{
    char s[NPY_MAX_TOKEN];
    int rc;
    skip_ws(c);
    if (c->p < c->end && *c->p == '[')
        return still__io_fail(c->err, c->errlen, STILL_E_DTYPE,
                              "%s: structured dtype not supported, expected '<f2', '<f4', "
                              "'<f8' or '|u1'", c->name);
    if ((rc = parse_pystring(c, s, sizeof s)))
        return rc;
    if (!strcmp(s, "<f2"))
        h->dtype = STILL__DT_F2;
    else if (!strcmp(s, "<f4"))
        h->dtype = STILL__DT_F4;
    else if (!strcmp(s, "<f8"))
        h->dtype = STILL__DT_F8;
    else if (!strcmp(s, "|u1") || !strcmp(s, "<u1") || !strcmp(s, "|b1"))
        h->dtype = STILL__DT_U1; /* one byte has no byte order; bool is 0/1 */
    else if (s[0] == '>')
        return still__io_fail(c->err, c->errlen, STILL_E_DTYPE,
                              "%s: big-endian dtype '%s' not supported, expected "
                              "little-endian '<%s'", c->name, s, s + 1);
    else
        return still__io_fail(c->err, c->errlen, STILL_E_DTYPE,
                              "%s: unsupported dtype '%s', expected '<f2', '<f4', '<f8' "
                              "or '|u1'", c->name, s);
    return STILL_OK;
}

static int parse_bool(cursor *c, int *out)
{
    skip_ws(c);
    size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && !memcmp(c->p, "True", 4)) {
        c->p += 4;
        *out = 1;
    } else if (left >= 5 && !memcmp(c->p, "False", 5)) {
        c->p += 5;
        *out = 0;
    } else {
        return bad_header(c, "'fortran_order' is not True or False");
    }
    return STILL_OK;
}

/* One non-negative decimal dimension. */
static int parse_dim(cursor *c, int64_t *out)
{
    int64_t v = 0;
    skip_ws(c);
    if (c->p < c->end && *c->p == '-')
        return still__io_fail(c->err, c->errlen, STILL_E_FORMAT,
                              "%s: negative dimension in 'shape'", c->name);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return bad_header(c, "'shape' holds something other than integers");
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        int digit = *c->p++ - '0';
        if (v > (INT64_MAX - digit) / 10)
            return still__io_fail(c->err, c->errlen, STILL_E_OVERFLOW,
                                  "%s: dimension in 'shape' exceeds 2^63-1", c->name);
        v = v * 10 + digit;
    }
    *out = v;
    return STILL_OK;
}

/* A Python tuple of ints: (), (n,), (a, b), (a, b,). */
static int parse_shape(cursor *c, npy_header *h)
{
    int rc;
    if ((rc = expect_char(c, '(', "'shape' is not a tuple")))
        return rc;
    h->ndim = 0;
    skip_ws(c);
    if (c->p < c->end && *c->p == ')') {
        c->p++;
        return STILL_OK;
    }
    for (;;) {
        if (h->ndim == STILL__MAX_NDIM)
            return still__io_fail(c->err, c->errlen, STILL_E_FORMAT,
                                  "%s: more than %d dimensions", c->name, STILL__MAX_NDIM);
        if ((rc = parse_dim(c, &h->shape[h->ndim])))
            return rc;
        h->ndim++;
        skip_ws(c);
        if (c->p < c->end && *c->p == ')') {
            if (h->ndim == 1) /* (5) is an int in Python, not a tuple */
                return bad_header(c, "one-element 'shape' without its comma");
            c->p++;
            return STILL_OK;
        }
        if ((rc = expect_char(c, ',', "expected ',' or ')' in 'shape'")))
            return rc;
        skip_ws(c);
        if (c->p < c->end && *c->p == ')') {
            c->p++;
            return STILL_OK;
        }
    }
}

/* The dict: exactly the keys descr, fortran_order, shape, in any order,
 * each once; a trailing comma is allowed. */
static int parse_dict(cursor *c, npy_header *h)
{
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0, rc;
    char key[NPY_MAX_TOKEN];

    if ((rc = expect_char(c, '{', "does not start with '{'")))
        return rc;
    for (;;) {
        skip_ws(c);
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            break;
        }
        if ((rc = parse_pystring(c, key, sizeof key)) ||
            (rc = expect_char(c, ':', "expected ':' after a key")))
            return rc;
        int *seen;
        if (!strcmp(key, "descr")) {
            seen = &seen_descr;
            rc = parse_descr(c, h);
        } else if (!strcmp(key, "fortran_order")) {
            seen = &seen_fortran;
            rc = parse_bool(c, &h->fortran);
        } else if (!strcmp(key, "shape")) {
            seen = &seen_shape;
            rc = parse_shape(c, h);
        } else {
            return still__io_fail(c->err, c->errlen, STILL_E_FORMAT,
                                  "%s: malformed .npy header: unknown key '%s', expected "
                                  "'descr', 'fortran_order', 'shape'", c->name, key);
        }
        if (rc)
            return rc;
        if (*seen)
            return still__io_fail(c->err, c->errlen, STILL_E_FORMAT,
                                  "%s: malformed .npy header: key '%s' appears twice",
                                  c->name, key);
        *seen = 1;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if ((rc = expect_char(c, '}', "expected ',' or '}' after a value")))
            return rc;
        break;
    }
    if (!seen_descr || !seen_fortran || !seen_shape)
        return still__io_fail(c->err, c->errlen, STILL_E_FORMAT,
                              "%s: malformed .npy header: missing key '%s'", c->name,
                              !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape");
    /* then only padding, and the final newline */
    skip_ws(c);
    if (c->p + 1 != c->end || *c->p != '\n')
        return bad_header(c, "the dict is not followed by spaces and one final '\\n'");
    if (h->fortran)
        return still__io_fail(c->err, c->errlen, STILL_E_FORMAT,
                              "%s: fortran_order True not supported, expected C order",
                              c->name);
    return STILL_OK;
}

/* The fixed prelude: magic, version, header length.  *prelude is its size
 * (10 or 12 bytes), *hlen the header's. */
static int parse_prelude(const unsigned char *b, size_t avail, const char *name,
                         size_t *prelude, size_t *hlen, char *err, size_t errlen)
{
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (avail < 8 || memcmp(b, magic, 6) != 0)
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: not a .npy file (expected the magic \\x93NUMPY)", name);
    if (b[6] < 1 || b[6] > 3 || b[7] != 0)
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: unsupported .npy version %u.%u, expected 1.0, 2.0 or 3.0",
                              name, b[6], b[7]);
    *prelude = b[6] == 1 ? 10 : 12;
    if (avail < *prelude)
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: truncated .npy header (file of %zu bytes)", name, avail);
    if (b[6] == 1)
        *hlen = (size_t)b[8] | (size_t)b[9] << 8;
    else
        *hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    if (*hlen > NPY_MAX_HEADER)
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: .npy header length %zu exceeds the limit %u", name, *hlen,
                              NPY_MAX_HEADER);
    return STILL_OK;
}

static int parse_header_text(const char *text, size_t hlen, const char *name, npy_header *h,
                             char *err, size_t errlen)
{
    cursor c = {text, text + hlen, name, err, errlen};
    memset(h, 0, sizeof *h);
    return parse_dict(&c, h);
}

/* Bytes of data the header implies, and the element count. */
static int data_size(const npy_header *h, const char *name, int64_t *count, size_t *bytes,
                     char *err, size_t errlen)
{
    size_t n = 1;
    for (int i = 0; i < h->ndim; i++)
        if (still__mul_size(n, (size_t)h->shape[i], &n))
            goto overflow;
    if (n > (size_t)INT64_MAX || still__mul_size(n, still__dtype_size(h->dtype), bytes))
        goto overflow;
    *count = (int64_t)n;
    return STILL_OK;
overflow:
    return still__io_fail(err, errlen, STILL_E_OVERFLOW,
                          "%s: the shape's size overflows (product of dimensions too large)",
                          name);
}

static int check_data_length(size_t expected, size_t found, const char *name, char *err,
                             size_t errlen)
{
    if (found < expected)
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: truncated data: expected %zu bytes, found %zu", name,
                              expected, found);
    if (found > expected)
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: %zu bytes after the data: expected %zu bytes, found %zu",
                              name, found - expected, expected, found);
    return STILL_OK;
}

static void fill_array(still__array *a, const npy_header *h, int64_t count, void *data)
{
    a->dtype = h->dtype;
    a->ndim = h->ndim;
    for (int i = 0; i < STILL__MAX_NDIM; i++)
        a->shape[i] = i < h->ndim ? h->shape[i] : 0;
    a->count = count;
    a->data = data;
}

static void clear_array(still__array *a)
{
    memset(a, 0, sizeof *a);
}

int still__npy_parse(const void *buf, size_t len, const char *name, still__array *a,
                     char *err, size_t errlen)
{
    const unsigned char *b = buf;
    size_t prelude, hlen, bytes;
    npy_header h;
    int64_t count;
    int rc;

    if (!a)
        return STILL_E_NULL;
    clear_array(a);
    if (!name)
        name = "(memory)";
    if (!buf && len > 0)
        return STILL_E_NULL;
    if ((rc = parse_prelude(b, len, name, &prelude, &hlen, err, errlen)))
        return rc;
    if (len - prelude < hlen)
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: truncated .npy header: expected %zu bytes, found %zu", name,
                              hlen, len - prelude);
    if ((rc = parse_header_text((const char *)b + prelude, hlen, name, &h, err, errlen)) ||
        (rc = data_size(&h, name, &count, &bytes, err, errlen)) ||
        (rc = check_data_length(bytes, len - prelude - hlen, name, err, errlen)))
        return rc;
    void *data = malloc(bytes ? bytes : 1);
    if (!data)
        return still__io_fail(err, errlen, STILL_E_NOMEM, "%s: out of memory for %zu bytes",
                              name, bytes);
    memcpy(data, b + prelude + hlen, bytes);
    still__le_swap(data, (size_t)count, still__dtype_size(h.dtype));
    fill_array(a, &h, count, data);
    return STILL_OK;
}

static int read_exact(FILE *fp, void *p, size_t n)
{
    return fread(p, 1, n, fp) == n ? 0 : -1;
}

/* The file part of still__npy_read once fp is open and its size known. */
static int read_open(FILE *fp, size_t size, const char *path, still__array *a, char *err,
                     size_t errlen)
{
    unsigned char pre[12];
    size_t prelude, hlen, bytes, got = size < sizeof pre ? size : sizeof pre;
    npy_header h;
    int64_t count;
    int rc;

    if (read_exact(fp, pre, got))
        goto ioerr;
    if ((rc = parse_prelude(pre, got, path, &prelude, &hlen, err, errlen)))
        return rc;
    if (size - prelude < hlen)
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: truncated .npy header: expected %zu bytes, found %zu", path,
                              hlen, size - prelude);
    char *text = malloc(hlen ? hlen : 1); /* hlen <= NPY_MAX_HEADER */
    if (!text)
        return STILL_E_NOMEM;
    if (fseek(fp, (long)prelude, SEEK_SET) != 0 || read_exact(fp, text, hlen)) {
        free(text);
        goto ioerr;
    }
    rc = parse_header_text(text, hlen, path, &h, err, errlen);
    free(text);
    if (rc || (rc = data_size(&h, path, &count, &bytes, err, errlen)) ||
        (rc = check_data_length(bytes, size - prelude - hlen, path, err, errlen)))
        return rc;
    void *data = malloc(bytes ? bytes : 1);
    if (!data)
        return still__io_fail(err, errlen, STILL_E_NOMEM, "%s: out of memory for %zu bytes",
                              path, bytes);
    if (read_exact(fp, data, bytes)) {
        free(data);
        goto ioerr;
    }
    still__le_swap(data, (size_t)count, still__dtype_size(h.dtype));
    fill_array(a, &h, count, data);
    return STILL_OK;
ioerr:
    return still__io_fail(err, errlen, STILL_E_IO, "%s: read error", path);
}

int still__open_regular(const char *path, FILE **fp, size_t *size, char *err, size_t errlen)
{
    char why[128];
    struct stat st;
    /* O_NONBLOCK: opening a FIFO with no writer would wait for one forever;
     * the type is checked on the open file, before any read */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    *fp = NULL;
    if (fd < 0) {
        errno_text(errno, why, sizeof why);
        return still__io_fail(err, errlen, STILL_E_IO, "%s: cannot open: %s", path, why);
    }
    if (fstat(fd, &st) != 0) {
        errno_text(errno, why, sizeof why);
        close(fd);
        return still__io_fail(err, errlen, STILL_E_IO, "%s: cannot open: %s", path, why);
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 0) {
        close(fd);
        return still__io_fail(err, errlen, STILL_E_IO, "%s: not a regular file (%s)", path,
                              S_ISFIFO(st.st_mode)  ? "a FIFO or pipe"
                              : S_ISDIR(st.st_mode) ? "a directory"
                              : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                                                                           : "not a file");
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0 || !(*fp = fdopen(fd, "rb"))) {
        errno_text(errno, why, sizeof why);
        close(fd);
        return still__io_fail(err, errlen, STILL_E_IO, "%s: cannot open: %s", path, why);
    }
    if ((uintmax_t)st.st_size > (uintmax_t)SIZE_MAX) {
        fclose(*fp);
        *fp = NULL;
        return still__io_fail(err, errlen, STILL_E_OVERFLOW, "%s: file too large", path);
    }
    *size = (size_t)st.st_size;
    return STILL_OK;
}

int still__npy_read(const char *path, still__array *a, char *err, size_t errlen)
{
    FILE *fp;
    size_t size;
    int rc;
    if (!a)
        return STILL_E_NULL;
    clear_array(a);
    if (!path)
        return still__io_fail(err, errlen, STILL_E_NULL, "(null): no input path");
    if ((rc = still__open_regular(path, &fp, &size, err, errlen)))
        return rc;
    rc = read_open(fp, size, path, a, err, errlen);
    fclose(fp);
    return rc;
}

/* ---- writing -------------------------------------------------------------- */

/* SPEC §11: version 1.0, the dict as NumPy writes it, padded with spaces so
 * that the data starts at a multiple of 64 bytes, ending in '\n'. */
static int npy_write_to(const char *path, int fd, int dtype, int ndim, const int64_t *shape,
                        const void *data, char *err, size_t errlen)
{
    char dict[STILL__MAX_NDIM * 24 + 128];
    unsigned char prelude[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    char header[sizeof dict + 64];
    const char *where = path ? path : "(null)";
    size_t n = 1, itemsize = still__dtype_size(dtype);
    int len;

    if (!path || (ndim > 0 && !shape))
        return still__io_fail(err, errlen, STILL_E_NULL, "%s: no path or shape", where);
    if (dtype != STILL__DT_F4 && dtype != STILL__DT_F8 && dtype != STILL__DT_U1 &&
        dtype != STILL__DT_I4)
        return still__io_fail(err, errlen, STILL_E_DTYPE,
                              "%s: cannot write dtype %s, expected <f4, <f8, |u1 or <i4", where,
                              still__dtype_name(dtype));
    if (ndim < 0 || ndim > STILL__MAX_NDIM)
        return still__io_fail(err, errlen, STILL_E_SHAPE, "%s: %d dimensions, expected 0..%d",
                              where, ndim, STILL__MAX_NDIM);
    len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                   still__dtype_name(dtype));
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return still__io_fail(err, errlen, STILL_E_SHAPE, "%s: negative dimension %lld",
                                  where, (long long)shape[i]);
        if (still__mul_size(n, (size_t)shape[i], &n))
            return still__io_fail(err, errlen, STILL_E_OVERFLOW, "%s: the shape's size overflows",
                                  where);
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%s%lld", i ? ", " : "",
                        (long long)shape[i]);
    }
    len += snprintf(dict + len, sizeof dict - (size_t)len, "%s), }", ndim == 1 ? "," : "");
    size_t bytes;
    if (still__mul_size(n, itemsize, &bytes))
        return still__io_fail(err, errlen, STILL_E_OVERFLOW, "%s: the shape's size overflows",
                              where);
    if (n > 0 && !data)
        return still__io_fail(err, errlen, STILL_E_NULL, "%s: no data", where);
    /* pad: 10 bytes of prelude + header (ending in '\n') = multiple of 64 */
    size_t hlen = (size_t)len + 1;
    hlen += (64 - (10 + hlen) % 64) % 64;
    memcpy(header, dict, (size_t)len);
    memset(header + len, ' ', hlen - (size_t)len - 1);
    header[hlen - 1] = '\n';
    prelude[8] = (unsigned char)(hlen & 0xff);
    prelude[9] = (unsigned char)(hlen >> 8);

    still__write_part parts[3] = {
        {prelude, 10, 1}, {header, hlen, 1}, {data, n, itemsize}};
    return still__write_to(path, fd, parts, 3, err, errlen);
}

int still__npy_write(const char *path, int dtype, int ndim, const int64_t *shape,
                     const void *data, char *err, size_t errlen)
{
    return npy_write_to(path, -1, dtype, ndim, shape, data, err, errlen);
}

int still__npy_write_fd(int fd, const char *name, int dtype, int ndim, const int64_t *shape,
                        const void *data, char *err, size_t errlen)
{
    if (fd < 0)
        return still__io_fail(err, errlen, STILL_E_NULL, "%s: no output file",
                              name ? name : "(null)");
    return npy_write_to(name, fd, dtype, ndim, shape, data, err, errlen);
}
