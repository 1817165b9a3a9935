/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* lte_params.c -- SPEC §15: the lte score network of a parameter
 * file: lte.conv{l}.W [Hk,c_l,c_{l-1},3], lte.conv{l}.b [Hk,c_l] for
 * l = 1..n (n = the layers present), lte.proj.W [Hk,c_n], lte.proj.b [Hk]. */
#include "io.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends tensor `name` (count elements) to block at *at, finite. */
static int take(const char *path, const char *name, const still__array *a, double *block,
                size_t *at, const double **slot, char *err, size_t errlen)
{
    double *conv;
    if (still__array_to_f64(a, &conv))
        return still__io_fail(err, errlen, STILL_E_NOMEM, "%s: out of memory", path);
    if (!still__all_finite(STILL_F64, conv, a->count)) {
        free(conv);
        return still__io_fail(err, errlen, STILL_E_NONFINITE, "%s: tensor '%s': expected "
                              "finite values", path, name);
    }
    memcpy(block + *at, conv, (size_t)a->count * sizeof *block);
    free(conv);
    *slot = block + *at;
    *at += (size_t)a->count;
    return STILL_OK;
}

static int bad(const char *path, const char *name, const char *want, char *err, size_t errlen)
{
    return still__io_fail(err, errlen, STILL_E_PARAMS, "%s: tensor '%s': expected %s", path,
                          name, want);
}

int still__lte_params_read(const char *path, int64_t heads_kv, still_lte_params *lte,
                           double **storage, char *err, size_t errlen)
{
    still__st_file f;
    const still__array *W[STILL_LTE_LAYERS_MAX], *b[STILL_LTE_LAYERS_MAX], *pw, *pb;
    char name[40], want[96];
    size_t total = 0, at = 0;
    int rc, n = 0;

    memset(lte, 0, sizeof *lte);
    *storage = NULL;
    if ((rc = still__st_read(path, &f, err, errlen)))
        return rc;
    for (; n < STILL_LTE_LAYERS_MAX; n++) {
        snprintf(name, sizeof name, "lte.conv%d.W", n + 1);
        if (!(W[n] = still__st_get(&f, name)))
            break;
        snprintf(name, sizeof name, "lte.conv%d.b", n + 1);
        b[n] = still__st_get(&f, name);
    }
    pw = still__st_get(&f, "lte.proj.W");
    pb = still__st_get(&f, "lte.proj.b");
    rc = STILL_OK;
    if (n == 0 || !pw || !pb)
        rc = still__io_fail(err, errlen, STILL_E_PARAMS, "%s: routing lte needs lte.conv1.W, "
                            "lte.conv1.b, ..., lte.proj.W and lte.proj.b (SPEC §15)", path);
    for (int l = 0; l < n && !rc; l++) {
        const still__array *w = W[l];
        snprintf(name, sizeof name, "lte.conv%d.W", l + 1);
        snprintf(want, sizeof want, "[%lld,c_out,c_in,3]%s", (long long)heads_kv,
                 l ? " with c_in the previous layer's c_out" : "");
        if (w->ndim != 4 || w->shape[0] != heads_kv || w->shape[3] != 3 ||
            (l && w->shape[2] != lte->channels[l]) || w->shape[1] > (int64_t)1 << 20 ||
            w->shape[2] > (int64_t)1 << 20) {
            rc = bad(path, name, want, err, errlen);
            break;
        }
        lte->channels[l] = w->shape[2];
        lte->channels[l + 1] = w->shape[1];
        snprintf(name, sizeof name, "lte.conv%d.b", l + 1);
        snprintf(want, sizeof want, "shape [%lld,%lld]", (long long)heads_kv,
                 (long long)w->shape[1]);
        if (!b[l] || b[l]->ndim != 2 || b[l]->shape[0] != heads_kv || b[l]->shape[1] != w->shape[1])
            rc = bad(path, name, want, err, errlen);
        else
            total += (size_t)(w->count + b[l]->count);
    }
    if (!rc) {
        lte->layers = n;
        snprintf(want, sizeof want, "shape [%lld,%lld]", (long long)heads_kv,
                 (long long)lte->channels[n]);
        if (pw->ndim != 2 || pw->shape[0] != heads_kv || pw->shape[1] != lte->channels[n])
            rc = bad(path, "lte.proj.W", want, err, errlen);
        snprintf(want, sizeof want, "shape [%lld]", (long long)heads_kv);
        if (!rc && (pb->ndim != 1 || pb->shape[0] != heads_kv))
            rc = bad(path, "lte.proj.b", want, err, errlen);
        total += (size_t)(pw->count + pb->count);
    }
    double *block = rc ? NULL : malloc(total * sizeof *block);
    if (!rc && !block)
        rc = still__io_fail(err, errlen, STILL_E_NOMEM, "%s: out of memory", path);
    for (int l = 0; l < n && !rc; l++) {
        snprintf(name, sizeof name, "lte.conv%d.W", l + 1);
        rc = take(path, name, W[l], block, &at, &lte->conv_W[l], err, errlen);
        snprintf(name, sizeof name, "lte.conv%d.b", l + 1);
        if (!rc)
            rc = take(path, name, b[l], block, &at, &lte->conv_b[l], err, errlen);
    }
    if (!rc)
        rc = take(path, "lte.proj.W", pw, block, &at, &lte->proj_W, err, errlen);
    if (!rc)
        rc = take(path, "lte.proj.b", pb, block, &at, &lte->proj_b, err, errlen);
    still__st_free(&f);
    if (rc) {
        free(block);
        memset(lte, 0, sizeof *lte);
        return rc;
    }
    *storage = block;
    return STILL_OK;
}
