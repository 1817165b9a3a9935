/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * safetensors.c -- safetensors parameter files (SPEC §11).
 *
 * Layout: an unsigned 64-bit little-endian header length n, n bytes of a
 * UTF-8 JSON object {"name": {"dtype": "F32", "shape": [..],
 * "data_offsets": [begin, end]}, ..., "__metadata__": {"k": "v"}}, padded
 * with spaces, then the data buffer; offsets are relative to its start.
 * The header is read and written with jansson (strict RFC 8259, UTF-8,
 * duplicate keys refused); what it accepts beyond that grammar (floats,
 * booleans, null, other nesting) is refused here, and the data buffer
 * must be covered by the tensors without overlaps or holes, as the format
 * requires.  Every size is checked before it is used.
 */
#define _POSIX_C_SOURCE 200809L
#include "io.h"

#include <errno.h>
#include <jansson.h>
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
    st_desc *t; /* one slot per member of the header */
    int n;
} st_toc;

static void toc_free(st_toc *toc)
{
    for (int i = 0; i < toc->n; i++)
        free(toc->t[i].name);
    free(toc->t);
    toc->t = NULL;
    toc->n = 0;
}

/* ---- the header, read with jansson ------------------------------------------ */

/* jansson's refusal of the text (not JSON, a duplicate key, an integer
 * beyond int64, invalid UTF-8, \u0000, nesting past its depth limit). */
static int header_refused(const json_error_t *e, const char *name, char *err, size_t errlen)
{
    const enum json_error_code code = json_error_code(e);
    char what[sizeof e->text];
    if (code == json_error_out_of_memory)
        return still__io_fail(err, errlen, STILL_E_NOMEM, "%s: out of memory", name);
    /* jansson quotes the input near the error: keep the line printable */
    memcpy(what, e->text, sizeof what);
    what[sizeof what - 1] = '\0';
    for (char *c = what; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
    return still__io_fail(err, errlen, STILL_E_FORMAT,
                          "%s: malformed safetensors header at byte %d: %s", name, e->position,
                          code == json_error_duplicate_key ? "a key appears twice" : what);
}

static int bad_field(const char *name, const char *tensor, const char *what, char *err,
                     size_t errlen)
{
    return still__io_fail(err, errlen, STILL_E_FORMAT,
                          "%s: malformed safetensors header: tensor '%s': %s", name, tensor,
                          what);
}

/* [a, b, ...] of at most max non-negative integers (int64 by jansson). */
static int uint_array(const json_t *v, uint64_t *vals, size_t max, size_t *n)
{
    if (!json_is_array(v) || json_array_size(v) > max)
        return -1;
    *n = json_array_size(v);
    for (size_t i = 0; i < *n; i++) {
        const json_t *x = json_array_get(v, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return -1;
        vals[i] = (uint64_t)json_integer_value(x);
    }
    return 0;
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

/* {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, exactly
 * those fields (each once: jansson refuses duplicate keys). */
static int read_desc(const json_t *obj, st_desc *d, const char *name, char *err, size_t errlen)
{
    const char *key;
    const json_t *v;
    uint64_t vals[STILL__MAX_NDIM];
    size_t n;
    int seen_dtype = 0, seen_shape = 0, seen_offsets = 0;
    if (!json_is_object(obj))
        return bad_field(name, d->name, "expected an object", err, errlen);
    json_object_foreach((json_t *)obj, key, v) {
        if (!strcmp(key, "dtype")) {
            if (!json_is_string(v))
                return bad_field(name, d->name, "dtype must be a string", err, errlen);
            if (!(d->dtype = st_dtype(json_string_value(v))))
                return still__io_fail(err, errlen, STILL_E_DTYPE,
                                      "%s: tensor '%s': dtype '%.32s' not supported, expected "
                                      "F16, BF16, F32 or F64", name, d->name,
                                      json_string_value(v));
            seen_dtype = 1;
        } else if (!strcmp(key, "shape")) {
            if (uint_array(v, vals, STILL__MAX_NDIM, &n))
                return bad_field(name, d->name, "shape must be an array of at most 8 "
                                 "non-negative integers", err, errlen);
            for (size_t i = 0; i < n; i++)
                d->shape[i] = (int64_t)vals[i];
            d->ndim = (int)n;
            seen_shape = 1;
        } else if (!strcmp(key, "data_offsets")) {
            if (uint_array(v, vals, 2, &n) || n != 2)
                return bad_field(name, d->name, "data_offsets must be [begin, end] of "
                                 "non-negative integers", err, errlen);
            d->begin = vals[0];
            d->end = vals[1];
            seen_offsets = 1;
        } else {
            return still__io_fail(err, errlen, STILL_E_FORMAT,
                                  "%s: tensor '%s': unknown field '%.32s', expected dtype, "
                                  "shape, data_offsets", name, d->name, key);
        }
    }
    if (!seen_dtype || !seen_shape || !seen_offsets)
        return still__io_fail(err, errlen, STILL_E_FORMAT, "%s: tensor '%s': missing field '%s'",
                              name, d->name,
                              !seen_dtype ? "dtype" : !seen_shape ? "shape" : "data_offsets");
    return STILL_OK;
}

/* The top-level object: tensors in file order, "__metadata__" (an object
 * of strings) checked and ignored. */
static int read_header(const json_t *root, st_toc *toc, const char *name, char *err,
                       size_t errlen)
{
    const char *key;
    const json_t *v;
    if (!json_is_object(root))
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: malformed safetensors header: expected an object", name);
    size_t slots = json_object_size(root);
    if (!(toc->t = calloc(slots ? slots : 1, sizeof *toc->t)))
        return STILL_E_NOMEM;
    json_object_foreach((json_t *)root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            const char *k;
            const json_t *s;
            if (!json_is_object(v))
                return still__io_fail(err, errlen, STILL_E_FORMAT,
                                      "%s: __metadata__ must be an object", name);
            json_object_foreach((json_t *)v, k, s)
                if (!json_is_string(s))
                    return still__io_fail(err, errlen, STILL_E_FORMAT,
                                          "%s: __metadata__ values must be strings", name);
            continue;
        }
        st_desc *d = &toc->t[toc->n];
        if (!(d->name = malloc(strlen(key) + 1)))
            return STILL_E_NOMEM;
        memcpy(d->name, key, strlen(key) + 1);
        toc->n++;
        int rc = read_desc(v, d, name, err, errlen);
        if (rc)
            return rc;
    }
    return STILL_OK;
}

/* ---- checks on the table of contents --------------------------------------- */

static int cmp_begin(const void *a, const void *b)
{
    const st_desc *x = *(const st_desc *const *)a, *y = *(const st_desc *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

/* Sizes and offsets of every tensor and a data buffer of datalen bytes
 * covered exactly once (names are unique: jansson refused duplicates). */
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
 * datalen bytes.  Beyond JSON itself, jansson refuses duplicate keys
 * (JSON_REJECT_DUPLICATES), \u0000 (no JSON_ALLOW_NUL), invalid UTF-8 and
 * integers outside int64; trailing whitespace (the padding) is allowed. */
static int parse_toc(const unsigned char *text, size_t n, uint64_t datalen, const char *name,
                     st_toc *toc, char *err, size_t errlen)
{
    json_error_t e;
    memset(toc, 0, sizeof *toc);
    json_t *root = json_loadb((const char *)text, n, JSON_REJECT_DUPLICATES, &e);
    if (!root)
        return header_refused(&e, name, err, errlen);
    int rc = read_header(root, toc, name, err, errlen);
    json_decref(root);
    return rc ? rc : check_toc(toc, datalen, name, err, errlen);
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
    st_toc toc = {NULL, 0};
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

/* The header of n checked tensors as a jansson object; NULL when out of
 * memory or when a name is not UTF-8 text (*bad_name: its index). */
static json_t *header_object(int n, const char *const *names, const still__array *arrays,
                             int *bad_name)
{
    json_t *root = json_object();
    uint64_t at = 0;
    *bad_name = -1;
    for (int i = 0; i < n && root; i++) {
        const still__array *a = &arrays[i];
        const uint64_t bytes = (uint64_t)a->count * still__dtype_size(a->dtype);
        json_t *desc = json_object(), *shape = json_array();
        /* the _new setters take the value's reference, also when they fail */
        int bad = !desc || !shape ||
                  json_object_set_new(desc, "dtype",
                                      json_string(a->dtype == STILL__DT_F4 ? "F32" : "F64"));
        for (int d = 0; d < a->ndim && !bad; d++)
            bad = json_array_append_new(shape, json_integer((json_int_t)a->shape[d]));
        if (!bad) {
            bad = json_object_set_new(desc, "shape", shape);
            shape = NULL;
        }
        if (!bad)
            bad = json_object_set_new(desc, "data_offsets",
                                      json_pack("[II]", (json_int_t)at, (json_int_t)(at + bytes)));
        json_decref(shape);
        if (!bad) {
            if (json_object_set_new(root, names[i], desc)) /* checks the name is UTF-8 */
                bad = 1, *bad_name = i;
            desc = NULL;
        }
        json_decref(desc);
        if (bad) {
            json_decref(root);
            root = NULL;
        }
        at += bytes;
    }
    return root;
}

static int st_write_to(const char *path, int fd, int n, const char *const *names,
                       const still__array *arrays, char *err, size_t errlen)
{
    const char *where = path ? path : "(null)";
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
    int bad_name;
    json_t *root = header_object(n, names, arrays, &bad_name);
    if (!root)
        return bad_name >= 0 ? still__io_fail(err, errlen, STILL_E_FORMAT,
                                              "%s: tensor name '%s' is not UTF-8 text", where,
                                              names[bad_name])
                             : still__io_fail(err, errlen, STILL_E_NOMEM, "%s: out of memory",
                                              where);
    /* compact, in the order given, then spaces up to a multiple of 8 so
       that the data is 8-byte aligned, as the reference writer does */
    const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
    size_t text = json_dumpb(root, NULL, 0, flags), hlen = (text + 7) / 8 * 8;
    char *h = text ? malloc(hlen) : NULL;
    if (!h || json_dumpb(root, h, text, flags) != text) {
        json_decref(root);
        free(h);
        return still__io_fail(err, errlen, STILL_E_NOMEM, "%s: out of memory", where);
    }
    json_decref(root);
    memset(h + text, ' ', hlen - text);
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)hlen >> (8 * i));

    still__write_part *parts = malloc((size_t)(n + 2) * sizeof *parts);
    if (!parts) {
        free(h);
        return STILL_E_NOMEM;
    }
    parts[0] = (still__write_part){len, 8, 1};
    parts[1] = (still__write_part){h, hlen, 1};
    for (int i = 0; i < n; i++)
        parts[i + 2] = (still__write_part){arrays[i].data, (size_t)arrays[i].count,
                                           still__dtype_size(arrays[i].dtype)};
    rc = still__write_to(path, fd, parts, n + 2, err, errlen);
    free(parts);
    free(h);
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
        if (which < 0 && !strncmp(f.names[i], "lte.", 4))
            continue; /* SPEC §15: read by still__lte_params_read */
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
