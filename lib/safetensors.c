/*
 * safetensors.c -- safetensors parameter files (SPEC §11).
 *
 * Layout: an unsigned 64-bit little-endian header length n, n bytes of a
 * UTF-8 JSON object {"name": {"dtype": "F32", "shape": [..],
 * "data_offsets": [begin, end]}, ..., "__metadata__": {"k": "v"}}, padded
 * with spaces, then the data buffer; offsets are relative to its start.
 * The JSON parser below accepts exactly that grammar (RFC 8259 strings
 * with every escape; integers; no floats, booleans or null), and the data
 * buffer must be covered by the tensors without overlaps or holes, as the
 * format requires.  Every size is checked before it is used.
 */
#define _POSIX_C_SOURCE 200809L
#include "io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* A header is a table of contents; 100 MB is far beyond any real one. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

/* One tensor as the header describes it. */
typedef struct st_desc {
    char *name;
    int dtype;
    int ndim;
    int64_t shape[STILL__MAX_NDIM];
    uint64_t begin, end;
} st_desc;

typedef struct st_toc {
    st_desc *t;
    int n, cap;
} st_toc;

static void toc_free(st_toc *toc)
{
    for (int i = 0; i < toc->n; i++)
        free(toc->t[i].name);
    free(toc->t);
    toc->t = NULL;
    toc->n = toc->cap = 0;
}

/* ---- a strict JSON reader for the header ---------------------------------- */

typedef struct json {
    const unsigned char *start, *p, *end;
    const char *name;
    char *err;
    size_t errlen;
} json;

static int json_fail(json *j, const char *what)
{
    return still__io_fail(j->err, j->errlen, STILL_E_FORMAT,
                          "%s: malformed safetensors header at byte %zu: %s", j->name,
                          (size_t)(j->p - j->start), what);
}

static void json_ws(json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int json_expect(json *j, unsigned char ch, const char *what)
{
    json_ws(j);
    if (j->p >= j->end || *j->p != ch)
        return json_fail(j, what);
    j->p++;
    return STILL_OK;
}

/* Growable byte buffer for decoded strings. */
typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static int sbuf_put(sbuf *b, const unsigned char *p, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 32;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s)
            return STILL_E_NOMEM;
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = '\0';
    return STILL_OK;
}

static int put_utf8(sbuf *b, uint32_t cp)
{
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | cp >> 6);
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | cp >> 12);
        u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | cp >> 18);
        u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        u[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return sbuf_put(b, u, n);
}

static int hex4(json *j, uint32_t *out)
{
    uint32_t v = 0;
    if (j->end - j->p < 4)
        return json_fail(j, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        unsigned char c = *j->p++;
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return json_fail(j, "bad hex digit in \\u escape");
    }
    *out = v;
    return STILL_OK;
}

/* \uXXXX, with a surrogate pair when it names a code point past U+FFFF. */
static int json_unicode_escape(json *j, sbuf *b)
{
    uint32_t cp, lo;
    int rc;
    if ((rc = hex4(j, &cp)))
        return rc;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return json_fail(j, "lone low surrogate in \\u escape");
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
            return json_fail(j, "high surrogate without its low surrogate");
        j->p += 2;
        if ((rc = hex4(j, &lo)))
            return rc;
        if (lo < 0xdc00 || lo > 0xdfff)
            return json_fail(j, "high surrogate without its low surrogate");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (cp == 0)
        return json_fail(j, "\\u0000 in a string");
    return put_utf8(b, cp);
}

/* Length of the well-formed UTF-8 sequence at p (lead byte >= 0x80), 0 if
 * it is malformed (overlong, surrogate, past U+10FFFF, truncated). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t n;
    uint32_t cp, min;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2; cp = p[0] & 0x1f; min = 0x80;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3; cp = p[0] & 0x0f; min = 0x800;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4; cp = p[0] & 0x07; min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* A JSON string; *out is a new NUL-terminated UTF-8 string. */
static int json_string(json *j, char **out)
{
    sbuf b = {NULL, 0, 0};
    int rc = STILL_OK;
    *out = NULL;
    if ((rc = json_expect(j, '"', "expected a string")))
        return rc;
    if ((rc = sbuf_put(&b, (const unsigned char *)"", 0)))
        return rc;
    for (;;) {
        if (j->p >= j->end) {
            rc = json_fail(j, "unterminated string");
            break;
        }
        unsigned char c = *j->p;
        if (c == '"') {
            j->p++;
            *out = b.s;
            return STILL_OK;
        }
        if (c < 0x20) {
            rc = json_fail(j, "control character in a string");
            break;
        }
        if (c == '\\') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *e;
            if (j->end - j->p < 2) {
                rc = json_fail(j, "unterminated escape");
                break;
            }
            j->p += 2;
            if (j->p[-1] == 'u') {
                rc = json_unicode_escape(j, &b);
            } else if (j->p[-1] != '\0' && (e = strchr(from, j->p[-1])) != NULL) {
                unsigned char ch = (unsigned char)to[e - from];
                rc = sbuf_put(&b, &ch, 1);
            } else {
                j->p--;
                rc = json_fail(j, "unknown escape");
            }
            if (rc)
                break;
            continue;
        }
        size_t n = c < 0x80 ? 1 : utf8_len(j->p, j->end);
        if (n == 0) {
            rc = json_fail(j, "invalid UTF-8 in a string");
            break;
        }
        if ((rc = sbuf_put(&b, j->p, n)))
            break;
        j->p += n;
    }
    free(b.s);
    return rc;
}

/* A non-negative JSON integer (no sign, fraction, exponent or leading 0). */
static int json_uint(json *j, uint64_t *out)
{
    uint64_t v = 0;
    json_ws(j);
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return json_fail(j, "expected a non-negative integer");
    if (*j->p == '0' && j->end - j->p > 1 && j->p[1] >= '0' && j->p[1] <= '9')
        return json_fail(j, "integer with a leading zero");
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        unsigned digit = (unsigned)(*j->p++ - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return still__io_fail(j->err, j->errlen, STILL_E_OVERFLOW,
                                  "%s: integer in the safetensors header exceeds 2^64-1",
                                  j->name);
        v = v * 10 + digit;
    }
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return json_fail(j, "expected an integer, found a fraction or exponent");
    *out = v;
    return STILL_OK;
}

/* [a, b, ...] of at most max integers. */
static int json_uint_array(json *j, uint64_t *vals, int max, int *n)
{
    int rc;
    *n = 0;
    if ((rc = json_expect(j, '[', "expected an array")))
        return rc;
    json_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return STILL_OK;
    }
    for (;;) {
        if (*n == max)
            return json_fail(j, "array too long");
        if ((rc = json_uint(j, &vals[(*n)++])))
            return rc;
        json_ws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return STILL_OK;
        }
        if ((rc = json_expect(j, ',', "expected ',' or ']' in an array")))
            return rc;
    }
}

/* Calls item(j, key, ctx) for every member of an object; the member's
 * value is item's to parse.  Keys are freed here. */
typedef int (*json_member_fn)(json *j, const char *key, void *ctx);

static int json_object(json *j, json_member_fn item, void *ctx)
{
    int rc;
    if ((rc = json_expect(j, '{', "expected an object")))
        return rc;
    json_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return STILL_OK;
    }
    for (;;) {
        char *key;
        if ((rc = json_string(j, &key)))
            return rc;
        rc = json_expect(j, ':', "expected ':' after a key");
        if (!rc)
            rc = item(j, key, ctx);
        free(key);
        if (rc)
            return rc;
        json_ws(j);
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return STILL_OK;
        }
        if ((rc = json_expect(j, ',', "expected ',' or '}' in an object")))
            return rc;
    }
}

/* "__metadata__": an object of strings, read and ignored. */
static int metadata_member(json *j, const char *key, void *ctx)
{
    char *value;
    (void)key;
    (void)ctx;
    json_ws(j);
    if (j->p >= j->end || *j->p != '"')
        return json_fail(j, "__metadata__ values must be strings");
    int rc = json_string(j, &value);
    free(value);
    return rc;
}

static int st_dtype(const char *s)
{
    if (!strcmp(s, "F16"))
        return STILL__DT_F2;
    if (!strcmp(s, "BF16"))
        return STILL__DT_BF16;
    if (!strcmp(s, "F32"))
        return STILL__DT_F4;
    if (!strcmp(s, "F64"))
        return STILL__DT_F8;
    return 0;
}

/* The fields of one tensor; each exactly once. */
typedef struct desc_ctx {
    st_desc *d;
    int seen_dtype, seen_shape, seen_offsets;
} desc_ctx;

static int desc_member(json *j, const char *key, void *ctx)
{
    desc_ctx *c = ctx;
    uint64_t vals[STILL__MAX_NDIM];
    int n, rc, *seen;
    if (!strcmp(key, "dtype")) {
        char *s;
        seen = &c->seen_dtype;
        if ((rc = json_string(j, &s)))
            return rc;
        c->d->dtype = st_dtype(s);
        if (!c->d->dtype) {
            rc = still__io_fail(j->err, j->errlen, STILL_E_DTYPE,
                                "%s: tensor '%s': dtype '%.32s' not supported, expected F16, "
                                "BF16, F32 or F64", j->name, c->d->name, s);
        }
        free(s);
        if (rc)
            return rc;
    } else if (!strcmp(key, "shape")) {
        seen = &c->seen_shape;
        if ((rc = json_uint_array(j, vals, STILL__MAX_NDIM, &n)))
            return rc;
        for (int i = 0; i < n; i++) {
            if (vals[i] > (uint64_t)INT64_MAX)
                return still__io_fail(j->err, j->errlen, STILL_E_OVERFLOW,
                                      "%s: tensor '%s': dimension exceeds 2^63-1", j->name,
                                      c->d->name);
            c->d->shape[i] = (int64_t)vals[i];
        }
        c->d->ndim = n;
    } else if (!strcmp(key, "data_offsets")) {
        seen = &c->seen_offsets;
        if ((rc = json_uint_array(j, vals, 2, &n)))
            return rc;
        if (n != 2)
            return json_fail(j, "data_offsets must be [begin, end]");
        c->d->begin = vals[0];
        c->d->end = vals[1];
    } else {
        return still__io_fail(j->err, j->errlen, STILL_E_FORMAT,
                              "%s: tensor '%s': unknown field '%.32s', expected dtype, shape, "
                              "data_offsets", j->name, c->d->name, key);
    }
    if (*seen)
        return still__io_fail(j->err, j->errlen, STILL_E_FORMAT,
                              "%s: tensor '%s': field '%s' appears twice", j->name, c->d->name,
                              key);
    *seen = 1;
    return STILL_OK;
}

typedef struct top_ctx {
    st_toc *toc;
    int seen_metadata;
} top_ctx;

static int top_member(json *j, const char *key, void *ctx)
{
    top_ctx *c = ctx;
    if (!strcmp(key, "__metadata__")) {
        if (c->seen_metadata)
            return still__io_fail(j->err, j->errlen, STILL_E_FORMAT,
                                  "%s: __metadata__ appears twice", j->name);
        c->seen_metadata = 1;
        return json_object(j, metadata_member, NULL);
    }
    st_toc *toc = c->toc;
    if (toc->n == toc->cap) {
        int cap = toc->cap ? 2 * toc->cap : 16;
        st_desc *t = cap > toc->cap ? realloc(toc->t, (size_t)cap * sizeof *t) : NULL;
        if (!t)
            return STILL_E_NOMEM;
        toc->t = t;
        toc->cap = cap;
    }
    st_desc *d = &toc->t[toc->n];
    memset(d, 0, sizeof *d);
    if (!(d->name = malloc(strlen(key) + 1)))
        return STILL_E_NOMEM;
    memcpy(d->name, key, strlen(key) + 1);
    toc->n++;
    desc_ctx dc = {d, 0, 0, 0};
    int rc = json_object(j, desc_member, &dc);
    if (rc)
        return rc;
    if (!dc.seen_dtype || !dc.seen_shape || !dc.seen_offsets)
        return still__io_fail(j->err, j->errlen, STILL_E_FORMAT,
                              "%s: tensor '%s': missing field '%s'", j->name, d->name,
                              !dc.seen_dtype ? "dtype" : !dc.seen_shape ? "shape" : "data_offsets");
    return STILL_OK;
}

/* ---- checks on the table of contents --------------------------------------- */

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const st_desc *const *)a)->name, (*(const st_desc *const *)b)->name);
}

static int cmp_begin(const void *a, const void *b)
{
    const st_desc *x = *(const st_desc *const *)a, *y = *(const st_desc *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

/* Sizes and offsets of every tensor, unique names, and a data buffer of
 * datalen bytes covered exactly once. */
static int check_toc(const st_toc *toc, uint64_t datalen, const char *name, char *err,
                     size_t errlen)
{
    const st_desc **order = malloc((size_t)(toc->n ? toc->n : 1) * sizeof *order);
    int rc = STILL_OK;
    if (!order)
        return STILL_E_NOMEM;
    for (int i = 0; i < toc->n && !rc; i++) {
        const st_desc *d = &toc->t[i];
        size_t count = 1, bytes;
        order[i] = d;
        for (int a = 0; a < d->ndim && !rc; a++)
            if (still__mul_size(count, (size_t)d->shape[a], &count))
                rc = STILL_E_OVERFLOW;
        if (rc || count > (size_t)INT64_MAX ||
            still__mul_size(count, still__dtype_size(d->dtype), &bytes)) {
            rc = still__io_fail(err, errlen, STILL_E_OVERFLOW,
                                "%s: tensor '%s': the shape's size overflows", name, d->name);
        } else if (d->begin > d->end || d->end > datalen) {
            rc = still__io_fail(err, errlen, STILL_E_FORMAT,
                                "%s: tensor '%s': data_offsets [%llu, %llu] outside the data "
                                "buffer of %llu bytes", name, d->name,
                                (unsigned long long)d->begin, (unsigned long long)d->end,
                                (unsigned long long)datalen);
        } else if (d->end - d->begin != (uint64_t)bytes) {
            rc = still__io_fail(err, errlen, STILL_E_FORMAT,
                                "%s: tensor '%s': expected %zu bytes for its shape and dtype, "
                                "found data_offsets spanning %llu", name, d->name, bytes,
                                (unsigned long long)(d->end - d->begin));
        }
    }
    if (!rc && toc->n > 1) {
        qsort(order, (size_t)toc->n, sizeof *order, cmp_name);
        for (int i = 1; i < toc->n && !rc; i++)
            if (!strcmp(order[i - 1]->name, order[i]->name))
                rc = still__io_fail(err, errlen, STILL_E_FORMAT,
                                    "%s: tensor name '%s' appears twice", name, order[i]->name);
    }
    if (!rc) {
        uint64_t at = 0;
        qsort(order, (size_t)toc->n, sizeof *order, cmp_begin);
        for (int i = 0; i < toc->n && !rc; i++) {
            if (order[i]->begin != at)
                rc = still__io_fail(err, errlen, STILL_E_FORMAT,
                                    "%s: tensor '%s': data at byte %llu, expected %llu (tensors "
                                    "overlap or leave a hole)", name, order[i]->name,
                                    (unsigned long long)order[i]->begin,
                                    (unsigned long long)at);
            at = order[i]->end;
        }
        if (!rc && at != datalen)
            rc = still__io_fail(err, errlen, STILL_E_FORMAT,
                                "%s: data buffer of %llu bytes, the tensors cover %llu", name,
                                (unsigned long long)datalen, (unsigned long long)at);
    }
    free(order);
    return rc;
}

/* Parses header text [n bytes] and checks it against a data buffer of
 * datalen bytes. */
static int parse_toc(const unsigned char *text, size_t n, uint64_t datalen, const char *name,
                     st_toc *toc, char *err, size_t errlen)
{
    json j = {text, text, text + n, name, err, errlen};
    top_ctx c = {toc, 0};
    int rc;
    memset(toc, 0, sizeof *toc);
    json_ws(&j);
    if ((rc = json_object(&j, top_member, &c)))
        return rc;
    json_ws(&j); /* the header may be padded with spaces */
    if (j.p != j.end)
        return json_fail(&j, "data after the top-level object");
    return check_toc(toc, datalen, name, err, errlen);
}

/* The 8-byte prefix: the header length, bounded by the limit and the file. */
static int parse_length(const unsigned char *b, size_t len, const char *name, uint64_t *hlen,
                        char *err, size_t errlen)
{
    if (len < 8)
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: truncated safetensors file: expected at least 8 bytes, "
                              "found %zu", name, len);
    *hlen = 0;
    for (int i = 7; i >= 0; i--)
        *hlen = *hlen << 8 | b[i];
    if (*hlen > ST_MAX_HEADER)
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: safetensors header length %llu exceeds the limit %llu", name,
                              (unsigned long long)*hlen, (unsigned long long)ST_MAX_HEADER);
    if (*hlen > len - 8)
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: safetensors header length %llu exceeds the %zu bytes after "
                              "it", name, (unsigned long long)*hlen, len - 8);
    if (*hlen < 2)
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: safetensors header of %llu bytes, expected a JSON object",
                              name, (unsigned long long)*hlen);
    return STILL_OK;
}

/* ---- the file object ------------------------------------------------------- */

void still__st_free(still__st_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++) {
        if (f->names)
            free(f->names[i]);
        if (f->arrays)
            still__array_free(&f->arrays[i]);
    }
    free(f->names);
    free(f->arrays);
    f->names = NULL;
    f->arrays = NULL;
    f->n = 0;
}

const still__array *still__st_get(const still__st_file *f, const char *name)
{
    if (!f || !name)
        return NULL;
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->names[i], name))
            return &f->arrays[i];
    return NULL;
}

/* Where the bytes of a tensor come from: memory or an open file. */
typedef struct st_source {
    const unsigned char *mem; /* the data buffer, or NULL */
    FILE *fp;                 /* else the file, data buffer at offset base */
    uint64_t base;
} st_source;

static int fetch(const st_source *src, uint64_t begin, size_t bytes, void *out)
{
    if (src->mem) {
        memcpy(out, src->mem + begin, bytes);
        return 0;
    }
    if (src->base + begin > (uint64_t)0x7fffffffffffffffULL ||
        fseeko(src->fp, (off_t)(src->base + begin), SEEK_SET) != 0)
        return -1;
    return fread(out, 1, bytes, src->fp) == bytes ? 0 : -1;
}

/* Moves the checked table of contents into f, reading every tensor. */
static int load_tensors(st_toc *toc, const st_source *src, const char *name, still__st_file *f,
                        char *err, size_t errlen)
{
    size_t slots = (size_t)(toc->n ? toc->n : 1);
    f->names = calloc(slots, sizeof *f->names);
    f->arrays = calloc(slots, sizeof *f->arrays);
    if (!f->names || !f->arrays) {
        still__st_free(f);
        return STILL_E_NOMEM;
    }
    for (int i = 0; i < toc->n; i++) {
        st_desc *d = &toc->t[i];
        still__array *a = &f->arrays[i];
        size_t bytes = (size_t)(d->end - d->begin); /* checked by check_toc */
        f->names[i] = d->name;
        d->name = NULL;
        f->n = i + 1;
        a->dtype = d->dtype;
        a->ndim = d->ndim;
        a->count = (int64_t)(bytes / still__dtype_size(d->dtype));
        memcpy(a->shape, d->shape, sizeof a->shape);
        if (!(a->data = malloc(bytes ? bytes : 1))) {
            still__st_free(f);
            return STILL_E_NOMEM;
        }
        if (fetch(src, d->begin, bytes, a->data)) {
            still__st_free(f);
            return still__io_fail(err, errlen, STILL_E_IO, "%s: read error", name);
        }
        still__le_swap(a->data, (size_t)a->count, still__dtype_size(d->dtype));
    }
    return STILL_OK;
}

int still__st_parse(const void *buf, size_t len, const char *name, still__st_file *f,
                    char *err, size_t errlen)
{
    const unsigned char *b = buf;
    uint64_t hlen;
    st_toc toc;
    int rc;
    if (!f)
        return STILL_E_NULL;
    memset(f, 0, sizeof *f);
    if (!buf && len > 0)
        return STILL_E_NULL;
    if (!name)
        name = "(memory)";
    if ((rc = parse_length(b, len, name, &hlen, err, errlen)))
        return rc;
    rc = parse_toc(b + 8, (size_t)hlen, (uint64_t)(len - 8 - hlen), name, &toc, err, errlen);
    if (!rc) {
        st_source src = {b + 8 + hlen, NULL, 0};
        rc = load_tensors(&toc, &src, name, f, err, errlen);
    }
    toc_free(&toc);
    return rc;
}

int still__st_read(const char *path, still__st_file *f, char *err, size_t errlen)
{
    unsigned char pre[8];
    uint64_t hlen;
    size_t size;
    st_toc toc = {NULL, 0, 0};
    FILE *fp;
    int rc;
    if (!f)
        return STILL_E_NULL;
    memset(f, 0, sizeof *f);
    if (!path)
        return still__io_fail(err, errlen, STILL_E_NULL, "(null): no input path");
    if ((rc = still__open_regular(path, &fp, &size, err, errlen)))
        return rc;
    size_t want = size < 8 ? size : 8;
    if (fread(pre, 1, want, fp) != want) {
        rc = still__io_fail(err, errlen, STILL_E_IO, "%s: read error", path);
        goto done;
    }
    if ((rc = parse_length(pre, size, path, &hlen, err, errlen)))
        goto done;
    unsigned char *text = malloc((size_t)hlen); /* hlen <= ST_MAX_HEADER, <= file */
    if (!text) {
        rc = STILL_E_NOMEM;
        goto done;
    }
    if (fread(text, 1, (size_t)hlen, fp) != (size_t)hlen) {
        free(text);
        rc = still__io_fail(err, errlen, STILL_E_IO, "%s: read error", path);
        goto done;
    }
    rc = parse_toc(text, (size_t)hlen, (uint64_t)(size - 8 - hlen), path, &toc, err, errlen);
    free(text);
    if (!rc) {
        st_source src = {NULL, fp, 8 + hlen};
        rc = load_tensors(&toc, &src, path, f, err, errlen);
    }
done:
    toc_free(&toc);
    fclose(fp);
    return rc;
}

/* ---- writing ---------------------------------------------------------------- */

static int put_str(sbuf *b, const char *s)
{
    return sbuf_put(b, (const unsigned char *)s, strlen(s));
}

/* A JSON string literal for a name (quotes, backslashes, controls escaped). */
static int put_json_string(sbuf *b, const char *s)
{
    int rc = put_str(b, "\"");
    for (; !rc && *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            esc[2] = '\0';
            rc = put_str(b, esc);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            rc = put_str(b, esc);
        } else {
            rc = sbuf_put(b, &c, 1);
        }
    }
    return rc ? rc : put_str(b, "\"");
}

static int put_u64(sbuf *b, uint64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)v);
    return put_str(b, s);
}

static int st_write_to(const char *path, int fd, int n, const char *const *names,
                       const still__array *arrays, char *err, size_t errlen)
{
    const char *where = path ? path : "(null)";
    sbuf h = {NULL, 0, 0};
    uint64_t at = 0;
    int rc;

    if (!path || n < 0 || (n > 0 && (!names || !arrays)))
        return still__io_fail(err, errlen, STILL_E_NULL, "%s: no path, names or arrays", where);
    for (int i = 0; i < n; i++) {
        const still__array *a = &arrays[i];
        if (!names[i] || (a->count > 0 && !a->data))
            return still__io_fail(err, errlen, STILL_E_NULL, "%s: tensor %d has no name or data",
                                  where, i);
        if (a->dtype != STILL__DT_F4 && a->dtype != STILL__DT_F8)
            return still__io_fail(err, errlen, STILL_E_DTYPE,
                                  "%s: tensor '%s': cannot write dtype %s, expected F32 or F64",
                                  where, names[i], still__dtype_name(a->dtype));
        int64_t product = 1;
        for (int d = 0; d >= 0 && d < a->ndim && d < STILL__MAX_NDIM; d++)
            product = a->shape[d] < 0 ? -1 : product * a->shape[d];
        if (a->ndim < 0 || a->ndim > STILL__MAX_NDIM || a->count < 0 || product != a->count)
            return still__io_fail(err, errlen, STILL_E_SHAPE, "%s: tensor '%s': bad shape",
                                  where, names[i]);
        for (int k = 0; k < i; k++)
            if (!strcmp(names[k], names[i]))
                return still__io_fail(err, errlen, STILL_E_FORMAT,
                                      "%s: tensor name '%s' given twice", where, names[i]);
    }
    rc = put_str(&h, "{");
    for (int i = 0; i < n && !rc; i++) {
        const still__array *a = &arrays[i];
        uint64_t bytes = (uint64_t)a->count * still__dtype_size(a->dtype);
        rc = put_str(&h, i ? "," : "");
        if (!rc) rc = put_json_string(&h, names[i]);
        if (!rc) rc = put_str(&h, a->dtype == STILL__DT_F4 ? ":{\"dtype\":\"F32\",\"shape\":["
                                                           : ":{\"dtype\":\"F64\",\"shape\":[");
        for (int d = 0; d < a->ndim && !rc; d++) {
            rc = put_str(&h, d ? "," : "");
            if (!rc) rc = put_u64(&h, (uint64_t)a->shape[d]);
        }
        if (!rc) rc = put_str(&h, "],\"data_offsets\":[");
        if (!rc) rc = put_u64(&h, at);
        if (!rc) rc = put_str(&h, ",");
        if (!rc) rc = put_u64(&h, at + bytes);
        if (!rc) rc = put_str(&h, "]}");
        at += bytes;
    }
    if (!rc) rc = put_str(&h, "}");
    while (!rc && h.n % 8 != 0) /* data 8-byte aligned, as the reference writer does */
        rc = put_str(&h, " ");
    if (rc) {
        free(h.s);
        return still__io_fail(err, errlen, rc, "%s: out of memory", where);
    }
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)h.n >> (8 * i));

    still__write_part *parts = malloc((size_t)(n + 2) * sizeof *parts);
    if (!parts) {
        free(h.s);
        return STILL_E_NOMEM;
    }
    parts[0] = (still__write_part){len, 8, 1};
    parts[1] = (still__write_part){h.s, h.n, 1};
    for (int i = 0; i < n; i++)
        parts[i + 2] = (still__write_part){arrays[i].data, (size_t)arrays[i].count,
                                           still__dtype_size(arrays[i].dtype)};
    rc = still__write_to(path, fd, parts, n + 2, err, errlen);
    free(parts);
    free(h.s);
    return rc;
}

int still__st_write(const char *path, int n, const char *const *names,
                    const still__array *arrays, char *err, size_t errlen)
{
    return st_write_to(path, -1, n, names, arrays, err, errlen);
}

int still__st_write_fd(int fd, const char *name, int n, const char *const *names,
                       const still__array *arrays, char *err, size_t errlen)
{
    if (fd < 0)
        return still__io_fail(err, errlen, STILL_E_NULL, "%s: no output file",
                              name ? name : "(null)");
    return st_write_to(name, fd, n, names, arrays, err, errlen);
}

/* ---- SPEC §11 parameter files ---------------------------------------------- */

/* The tensors a parameter file may hold. */
enum { P_FQ_W, P_FQ_B, P_FQ_U, P_FK_W, P_FK_B, P_FK_U, P_WINDOW_W, P_COUNT };
static const char *const param_names[P_COUNT] = {"fq.W", "fq.b", "fq.u", "fk.W",
                                                 "fk.b", "fk.u", "window.w"};

static int shape_is(const still__array *a, int ndim, int64_t s0, int64_t s1, int64_t s2)
{
    int64_t want[3] = {s0, s1, s2};
    if (a->ndim != ndim)
        return 0;
    for (int i = 0; i < ndim; i++)
        if (a->shape[i] != want[i])
            return 0;
    return 1;
}

static void shape_text(const still__array *a, char *buf, size_t len)
{
    size_t at = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < a->ndim && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%lld", i ? "," : "", (long long)a->shape[i]);
    if (at < len)
        snprintf(buf + at, len - at, "]");
}

static int bad_param_shape(const char *path, const char *name, const char *expected,
                           const still__array *a, char *err, size_t errlen)
{
    char found[160];
    shape_text(a, found, sizeof found);
    return still__io_fail(err, errlen, STILL_E_PARAMS,
                          "%s: tensor '%s': expected shape %s, found %s", path, name, expected,
                          found);
}

/* Rows f of one map (SPEC §2): W [Hq,f,d] gives f; without W the map is
 * the identity (f = d) and b, if present, is [Hq,d]. */
static int check_map(const char *path, const still__array *const *t, int first, int64_t Hq,
                     int64_t d, int64_t *f, char *err, size_t errlen)
{
    const still__array *W = t[first], *b = t[first + 1], *u = t[first + 2];
    const char *pre = first == P_FQ_W ? "fq" : "fk";
    char want[128], name[8];
    *f = d;
    if (W) {
        snprintf(name, sizeof name, "%s.W", pre);
        snprintf(want, sizeof want, "[%lld,f,%lld] with 1 <= f <= 2^24", (long long)Hq,
                 (long long)d);
        if (W->ndim != 3 || W->shape[0] != Hq || W->shape[2] != d || W->shape[1] < 1 ||
            W->shape[1] > (int64_t)1 << 24)
            return bad_param_shape(path, name, want, W, err, errlen);
        *f = W->shape[1];
    }
    if (b && !shape_is(b, 2, Hq, *f, 0)) {
        snprintf(name, sizeof name, "%s.b", pre);
        snprintf(want, sizeof want, "[%lld,%lld]%s", (long long)Hq, (long long)*f,
                 W ? " (heads, rows of W)" : " (heads, d: no W means the identity)");
        return bad_param_shape(path, name, want, b, err, errlen);
    }
    if (u && !shape_is(u, 2, Hq, d, 0)) {
        snprintf(name, sizeof name, "%s.u", pre);
        snprintf(want, sizeof want, "[%lld,%lld]", (long long)Hq, (long long)d);
        return bad_param_shape(path, name, want, u, err, errlen);
    }
    return STILL_OK;
}

/* Converts the tensors present into one double block and points params
 * into it; refuses non-finite values (SPEC §10). */
static int fill_params(const char *path, const still__array *const *t, still_params *params,
                       double **storage, char *err, size_t errlen)
{
    size_t total = 0, at = 0;
    const double **slot[P_COUNT] = {&params->fq.W, &params->fq.b, &params->fq.u,
                                    &params->fk.W, &params->fk.b, &params->fk.u,
                                    &params->window_w};
    for (int i = 0; i < P_COUNT; i++)
        if (t[i])
            total += (size_t)t[i]->count; /* each fits in a file already read */
    double *block = malloc((total ? total : 1) * sizeof *block);
    if (!block)
        return still__io_fail(err, errlen, STILL_E_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < P_COUNT; i++) {
        double *conv;
        if (!t[i])
            continue;
        if (still__array_to_f64(t[i], &conv)) {
            free(block);
            return still__io_fail(err, errlen, STILL_E_NOMEM, "%s: out of memory", path);
        }
        for (int64_t e = 0; e < t[i]->count; e++)
            if (!isfinite(conv[e])) {
                const char *what = isnan(conv[e]) ? "NaN" : "infinite";
                free(conv);
                free(block);
                return still__io_fail(err, errlen, STILL_E_NONFINITE,
                                      "%s: tensor '%s': element %lld is %s, expected finite "
                                      "values", path, param_names[i], (long long)e, what);
            }
        memcpy(block + at, conv, (size_t)t[i]->count * sizeof *block);
        free(conv);
        *slot[i] = block + at;
        at += (size_t)t[i]->count;
    }
    *storage = block;
    return STILL_OK;
}

int still__params_read(const char *path, int64_t heads_q, int64_t dim_qk,
                       still_params *params, double **storage, char *err, size_t errlen)
{
    still__st_file f;
    const still__array *t[P_COUNT] = {NULL};
    int64_t fq_f, fk_f;
    int rc;

    if (!params || !storage)
        return STILL_E_NULL;
    *storage = NULL;
    still_params_default(params);
    if (heads_q < 1 || dim_qk < 1)
        return still__io_fail(err, errlen, STILL_E_SHAPE, "%s: heads_q and dim_qk must be >= 1",
                              path ? path : "(null)");
    if ((rc = still__st_read(path, &f, err, errlen)))
        return rc;
    for (int i = 0; i < f.n && !rc; i++) {
        int which = -1;
        for (int p = 0; p < P_COUNT; p++)
            if (!strcmp(f.names[i], param_names[p]))
                which = p;
        if (which < 0)
            rc = still__io_fail(err, errlen, STILL_E_PARAMS,
                                "%s: unknown tensor '%.64s', expected fq.W, fq.b, fq.u, fk.W, "
                                "fk.b, fk.u, window.w", path, f.names[i]);
        else
            t[which] = &f.arrays[i];
    }
    if (!rc)
        rc = check_map(path, t, P_FQ_W, heads_q, dim_qk, &fq_f, err, errlen);
    if (!rc)
        rc = check_map(path, t, P_FK_W, heads_q, dim_qk, &fk_f, err, errlen);
    int fk_given = t[P_FK_W] || t[P_FK_B] || t[P_FK_U];
    if (!rc && fk_given && fk_f != fq_f)
        rc = still__io_fail(err, errlen, STILL_E_PARAMS,
                            "%s: fk has %lld rows and fq %lld, expected the same feature "
                            "dimension (SPEC §3)", path, (long long)fk_f, (long long)fq_f);
    if (!rc && t[P_WINDOW_W] && !shape_is(t[P_WINDOW_W], 1, heads_q, 0, 0)) {
        char want[32];
        snprintf(want, sizeof want, "[%lld]", (long long)heads_q);
        rc = bad_param_shape(path, "window.w", want, t[P_WINDOW_W], err, errlen);
    }
    if (!rc)
        rc = fill_params(path, t, params, storage, err, errlen);
    if (!rc) {
        /* f must be said whenever a bias is given (lib/config.c map_rows) */
        params->fq.f = t[P_FQ_W] || t[P_FQ_B] ? fq_f : 0;
        params->fk.f = t[P_FK_W] || t[P_FK_B] ? fk_f : 0;
        params->fk_tied = !fk_given;
        if (params->fk_tied) {
            params->fk = params->fq;
        }
    }
    still__st_free(&f);
    if (rc) {
        free(*storage);
        *storage = NULL;
        still_params_default(params);
    }
    return rc;
}
