/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* tool_common.c -- messages, option values and outputs of the still tool. */
#define _POSIX_C_SOURCE 200809L
#include "tool.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

int tool_fail(int status, const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++) /* one line, whatever the file names hold */
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    tool_progress_clear();
    fprintf(stderr, "still %s: %s\n", cmd, msg);
    return status;
}

const char *tool_status_name(int rc)
{
    static const struct { int rc; const char *name; } names[] = {
        {STILL_E_NULL, "STILL_E_NULL"},           {STILL_E_SHAPE, "STILL_E_SHAPE"},
        {STILL_E_CONFIG, "STILL_E_CONFIG"},       {STILL_E_NONFINITE, "STILL_E_NONFINITE"},
        {STILL_E_NOMEM, "STILL_E_NOMEM"},         {STILL_E_OVERFLOW, "STILL_E_OVERFLOW"},
        {STILL_E_ISA, "STILL_E_ISA"},             {STILL_E_DTYPE, "STILL_E_DTYPE"},
        {STILL_E_SELECTION, "STILL_E_SELECTION"}, {STILL_E_IO, "STILL_E_IO"},
        {STILL_E_FORMAT, "STILL_E_FORMAT"},       {STILL_E_VERSION, "STILL_E_VERSION"},
        {STILL_E_CHECKSUM, "STILL_E_CHECKSUM"},   {STILL_E_STATE, "STILL_E_STATE"},
        {STILL_E_PARAMS, "STILL_E_PARAMS"},       {STILL_E_UNSUPPORTED, "STILL_E_UNSUPPORTED"},
        {STILL_E_CANCELED, "STILL_E_CANCELED"},
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (names[i].rc == rc)
            return names[i].name;
    return "unknown status";
}

int tool_is_help(const char *arg)
{
    return !strcmp(arg, "-h") || !strcmp(arg, "--help");
}

int tool_is_option(const char *arg, const char *opt)
{
    size_t n = strlen(opt);
    return !strncmp(arg, opt, n) && (arg[n] == '\0' || arg[n] == '=');
}

const char *tool_option_value(const char *cmd, int argc, char **argv, int *i, const char *opt)
{
    const char *eq = strchr(argv[*i], '=');
    if (eq)
        return eq + 1;
    if (*i + 1 >= argc) {
        tool_fail(TOOL_EXIT_USAGE, cmd, "%s needs a value (see still %s --help)", opt, cmd);
        return NULL;
    }
    return argv[++*i];
}

int tool_parse_int64(const char *cmd, const char *opt, const char *val, int64_t lo, int64_t hi,
                     int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(val, &end, 10);
    if (errno || end == val || *end || x < lo || x > hi) {
        tool_fail(TOOL_EXIT_USAGE, cmd, "%s: expected an integer in [%lld, %lld], found '%s'",
                  opt, (long long)lo, (long long)hi, val);
        return -1;
    }
    *out = (int64_t)x;
    return 0;
}

int tool_parse_double(const char *cmd, const char *opt, const char *val, double lo, double hi,
                      double *out)
{
    char *end;
    errno = 0;
    double x = strtod(val, &end);
    if (errno || end == val || *end || !isfinite(x) || x < lo || x > hi) {
        tool_fail(TOOL_EXIT_USAGE, cmd, "%s: expected a finite number in [%g, %g], found '%s'",
                  opt, lo, hi, val);
        return -1;
    }
    *out = x;
    return 0;
}

void tool_shape_text(int ndim, const int64_t *shape, char *buf, size_t len)
{
    size_t at = 0;
    if (len == 0)
        return;
    buf[0] = '\0';
    at += (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (at < len)
        snprintf(buf + at, len - at, "]");
}

void tool_index_text(int ndim, const int64_t *shape, int64_t flat, char *buf, size_t len)
{
    int64_t idx[STILL__MAX_NDIM];
    for (int i = ndim - 1; i >= 0; i--) {
        idx[i] = shape[i] ? flat % shape[i] : 0;
        flat = shape[i] ? flat / shape[i] : 0;
    }
    tool_shape_text(ndim, idx, buf, len);
}

double tool_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- progress ---------------------------------------------------------------- */

static struct {
    const char *cmd;
    int on, shown;
    double last;
} progress;

void tool_progress_start(const char *cmd)
{
    progress.cmd = cmd;
    progress.on = isatty(STDERR_FILENO);
    progress.shown = 0;
    progress.last = 0.0;
}

int tool_progress_option(const char *arg)
{
    if (strcmp(arg, "--no-progress"))
        return 0;
    tool_progress_clear();
    progress.on = 0;
    return 1;
}

void tool_progress(int64_t done, int64_t total, const char *fmt, ...)
{
    char what[160], line[200];
    if (!progress.on)
        return;
    const double now = tool_now();
    if (progress.shown && done != 0 && done != total && now - progress.last < 0.1)
        return;
    progress.last = now;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (total > 0)
        snprintf(line, sizeof line, "still %s: %s [%lld/%lld]", progress.cmd, what,
                 (long long)done, (long long)total);
    else
        snprintf(line, sizeof line, "still %s: %s", progress.cmd, what);
    line[79] = '\0'; /* one line of a narrow terminal */
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    fprintf(stderr, "\r%s\033[K", line); /* \033[K: erase the rest of the old line */
    fflush(stderr);
    progress.shown = 1;
}

void tool_progress_clear(void)
{
    if (!progress.shown)
        return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    progress.shown = 0;
}

int tool_blas_room(const char *cmd)
{
    struct rlimit as;
    if (getrlimit(RLIMIT_AS, &as) != 0 || as.rlim_cur == RLIM_INFINITY)
        return TOOL_EXIT_OK;
    /* OpenBLAS maps one work buffer (128 MiB and a page on x86-64) at its
     * first product and, when it cannot, retries forever */
    void *p = malloc((size_t)129 << 20);
    if (!p)
        return tool_fail(TOOL_EXIT_LIBRARY, cmd, "the address-space limit (ulimit -v) leaves no "
                         "room for OpenBLAS's work buffer (about 128 MiB) that the fast path's "
                         "gradients need; raise it or use --path ref");
    free(p);
    return TOOL_EXIT_OK;
}

/* ---- outputs ----------------------------------------------------------------- */

static int64_t count_of(const tool_output *o)
{
    int64_t n = 1;
    for (int i = 0; i < o->ndim; i++)
        n *= o->shape[i];
    return n;
}

/* The data of an output in its file dtype (a new buffer when it needs a
 * conversion, else NULL and *data points at the caller's). */
static int convert_output(const tool_output *o, const void **data, void **owned)
{
    int64_t n = count_of(o);
    *owned = NULL;
    *data = o->data;
    if (o->dtype == STILL__DT_U1 || o->dtype == STILL__DT_I4 || /* integers: as they are */
        (o->dtype == STILL__DT_F8) == (o->data_dtype == STILL_F64))
        return 0;
    size_t size = still__dtype_size(o->dtype);
    void *buf = malloc((size_t)(n ? n : 1) * size);
    if (!buf)
        return -1;
    for (int64_t i = 0; i < n; i++) {
        double x = still__load(o->data_dtype, o->data, i);
        if (o->dtype == STILL__DT_F8)
            ((double *)buf)[i] = x;
        else
            ((float *)buf)[i] = (float)x;
    }
    *owned = buf;
    *data = buf;
    return 0;
}

/* SPEC §10: a float output computed in double (the ref path, f4 asked
 * for) must hold its values: one beyond float32's range would be stored
 * as inf, a silent wrong result.  TOOL_EXIT_OK, or TOOL_EXIT_LIBRARY after
 * the one-line error (as when the library refuses a result its output
 * type cannot hold: STILL_E_NONFINITE), before any file is written. */
static int outputs_fit(const char *cmd, const tool_output *outs, int n)
{
    for (int i = 0; i < n; i++) {
        const tool_output *o = &outs[i];
        if (o->dtype != STILL__DT_F4 || o->data_dtype != STILL_F64)
            continue;
        const int64_t count = count_of(o);
        for (int64_t j = 0; j < count; j++) {
            const double x = ((const double *)o->data)[j];
            if (isfinite(x) && !isfinite((float)x))
                return tool_fail(TOOL_EXIT_LIBRARY, cmd,
                                 "%s: element %lld is %g, beyond float32's range: the result "
                                 "does not fit --dtype f4 (%s); nothing written",
                                 o->path, (long long)j, x, tool_status_name(STILL_E_NONFINITE));
        }
    }
    return TOOL_EXIT_OK;
}

int tool_write_outputs(const char *cmd, const tool_output *outs, int n)
{
    char err[STILL__ERRLEN];
    int fit = outputs_fit(cmd, outs, n);
    if (fit)
        return fit;
    for (int i = 0; i < n; i++) {
        const void *data;
        void *owned;
        int fd = tool_out_fd(cmd, outs[i].path), rc;
        if (fd < 0)
            return TOOL_EXIT_OUTPUT;
        if (convert_output(&outs[i], &data, &owned))
            rc = still__io_fail(err, sizeof err, STILL_E_NOMEM, "%s: out of memory",
                                outs[i].path);
        else
            rc = still__npy_write_fd(fd, outs[i].path, outs[i].dtype, outs[i].ndim,
                                     outs[i].shape, data, err, sizeof err);
        free(owned);
        if (rc)
            return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s", err);
        if ((rc = tool_out_close(cmd, outs[i].path)))
            return rc;
    }
    return TOOL_EXIT_OK;
}
