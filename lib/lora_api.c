/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* lora_api.c -- SPEC §9: a LoRA-adapted projection y = x W^T + (alpha/r)
 * (x A^T) B^T.  The ref entry points check and call ref/lora.c (double
 * loops); the fast ones compute in float32 with cblas_sgemm, called from
 * no OpenMP region of ours (CONVENTIONS: BLAS outside our regions). */
#include "internal.h"
#include "../ref/train.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Checks the dimensions: every one >= 1, every matrix addressable in
 * bytes (as double) and every dimension within BLAS's int. */
static int lora_shape_ok(const still_lora_shape *s)
{
    size_t n;
    if (!s)
        return STILL_E_NULL;
    if (s->rows < 1 || s->in < 1 || s->out < 1 || s->rank < 1)
        return STILL_E_SHAPE;
    if (!isfinite(s->alpha))
        return STILL_E_CONFIG;
    if (s->rows > INT_MAX || s->in > INT_MAX || s->out > INT_MAX || s->rank > INT_MAX)
        return STILL_E_OVERFLOW;
    int64_t big = s->rows > s->out ? s->rows : s->out;
    int64_t wide = s->in > s->rank ? s->in : s->rank;
    if (still__mul3_size((size_t)big, (size_t)wide, sizeof(double), &n) ||
        still__mul3_size((size_t)s->rows, (size_t)s->out, sizeof(double), &n) ||
        n > (size_t)INT64_MAX)
        return STILL_E_OVERFLOW;
    return STILL_OK;
}

static int finite_d(const double *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(p[i]))
            return 0;
    return 1;
}

static int finite_f(const float *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(p[i]))
            return 0;
    return 1;
}

/* The inputs of a call are finite (SPEC §10); NULL arrays are skipped. */
static int inputs_finite(const still_lora_shape *s, int dtype, const void *x, const void *W,
                         const void *A, const void *B, const void *dy)
{
    const void *arr[5] = {x, W, A, B, dy};
    const int64_t len[5] = {s->rows * s->in, s->out * s->in, s->rank * s->in,
                            s->out * s->rank, s->rows * s->out};
    for (int i = 0; i < 5; i++) {
        if (!arr[i])
            continue;
        if (dtype == STILL_F64 ? !finite_d(arr[i], len[i]) : !finite_f(arr[i], len[i]))
            return STILL_E_NONFINITE;
    }
    return STILL_OK;
}

/* ---- ref path ------------------------------------------------------------ */
int still_ref_lora_forward(const still_lora_shape *s, const double *x, const double *W,
                           const double *A, const double *B, double *y)
{
    int rc;
    if ((rc = lora_shape_ok(s)))
        return rc;
    if (!x || !W || !A || !B || !y)
        return STILL_E_NULL;
    if ((rc = inputs_finite(s, STILL_F64, x, W, A, B, NULL)))
        return rc;
    still__ref_lora_forward(s->rows, s->in, s->out, s->rank, s->alpha, x, W, A, B, y);
    return STILL_OK;
}

int still_ref_lora_backward(const still_lora_shape *s, const double *x, const double *W,
                            const double *A, const double *B, const double *dy, double *dx,
                            double *dA, double *dB)
{
    double *h;
    int rc;
    if ((rc = lora_shape_ok(s)))
        return rc;
    if (!x || !W || !A || !B || !dy)
        return STILL_E_NULL;
    if ((rc = inputs_finite(s, STILL_F64, x, W, A, B, dy)))
        return rc;
    if (!(h = malloc((size_t)(s->rows * s->rank) * sizeof(double))))
        return STILL_E_NOMEM;
    still__ref_lora_backward(s->rows, s->in, s->out, s->rank, s->alpha, x, W, A, B, dy, dx, dA,
                             dB, h);
    free(h);
    return STILL_OK;
}

int still_ref_lora_merge(const still_lora_shape *s, const double *W, const double *A,
                         const double *B, double *W_merged)
{
    int rc;
    if ((rc = lora_shape_ok(s)))
        return rc;
    if (!W || !A || !B || !W_merged)
        return STILL_E_NULL;
    if ((rc = inputs_finite(s, STILL_F64, NULL, W, A, B, NULL)))
        return rc;
    still__ref_lora_merge(s->in, s->out, s->rank, s->alpha, W, A, B, W_merged);
    return STILL_OK;
}

/* ---- fast path: float32 and BLAS --------------------------------------- */

/* h [rows][rank] = x A^T */
static void lora_down_f(const still_lora_shape *s, const float *x, const float *A, float *h)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->rows, (int)s->rank, (int)s->in,
                1.0f, x, (int)s->in, A, (int)s->in, 0.0f, h, (int)s->rank);
}

int still_lora_forward(const still_lora_shape *s, const float *x, const float *W,
                       const float *A, const float *B, float *y)
{
    float *h;
    int rc;
    if ((rc = lora_shape_ok(s)))
        return rc;
    if (!x || !W || !A || !B || !y)
        return STILL_E_NULL;
    if ((rc = inputs_finite(s, STILL_F32, x, W, A, B, NULL)))
        return rc;
    if (!(h = malloc((size_t)(s->rows * s->rank) * sizeof(float))))
        return STILL_E_NOMEM;
    const float scale = (float)(s->alpha / (double)s->rank);
    /* y = x W^T, then y += scale (x A^T) B^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->rows, (int)s->out, (int)s->in,
                1.0f, x, (int)s->in, W, (int)s->in, 0.0f, y, (int)s->out);
    lora_down_f(s, x, A, h);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->rows, (int)s->out,
                (int)s->rank, scale, h, (int)s->rank, B, (int)s->rank, 1.0f, y, (int)s->out);
    free(h);
    /* SPEC §10: a result float32 cannot hold is an error, not a success */
    return finite_f(y, s->rows * s->out) ? STILL_OK : STILL_E_NONFINITE;
}

int still_lora_backward(const still_lora_shape *s, const float *x, const float *W,
                        const float *A, const float *B, const float *dy, float *dx, float *dA,
                        float *dB)
{
    float *h, *dh;
    int rc;
    if ((rc = lora_shape_ok(s)))
        return rc;
    if (!x || !W || !A || !B || !dy)
        return STILL_E_NULL;
    if ((rc = inputs_finite(s, STILL_F32, x, W, A, B, dy)))
        return rc;
    h = malloc((size_t)(s->rows * s->rank) * sizeof(float));
    dh = malloc((size_t)(s->rows * s->rank) * sizeof(float));
    if (!h || !dh) {
        free(h);
        free(dh);
        return STILL_E_NOMEM;
    }
    const int n = (int)s->rows, in = (int)s->in, out = (int)s->out, r = (int)s->rank;
    const float scale = (float)(s->alpha / (double)s->rank);
    lora_down_f(s, x, A, h);
    if (dB) /* dB [out][r] = scale dy^T h */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, r, n, scale, dy, out, h, r,
                    0.0f, dB, r);
    /* dh [n][r] = scale dy B */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, r, out, scale, dy, out, B, r, 0.0f,
                dh, r);
    if (dA) /* dA [r][in] = dh^T x */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, n, 1.0f, dh, r, x, in, 0.0f,
                    dA, in);
    if (dx) { /* dx [n][in] = dy W + dh A */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, W, in,
                    0.0f, dx, in);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, r, 1.0f, dh, r, A, in, 1.0f,
                    dx, in);
    }
    free(h);
    free(dh);
    if ((dB && !finite_f(dB, s->out * s->rank)) || (dA && !finite_f(dA, s->rank * s->in)) ||
        (dx && !finite_f(dx, s->rows * s->in)))
        return STILL_E_NONFINITE; /* SPEC §10: a gradient float32 cannot hold */
    return STILL_OK;
}

int still_lora_merge(const still_lora_shape *s, const float *W, const float *A, const float *B,
                     float *W_merged)
{
    int rc;
    if ((rc = lora_shape_ok(s)))
        return rc;
    if (!W || !A || !B || !W_merged)
        return STILL_E_NULL;
    if ((rc = inputs_finite(s, STILL_F32, NULL, W, A, B, NULL)))
        return rc;
    if (W_merged != W)
        memcpy(W_merged, W, (size_t)(s->out * s->in) * sizeof(float));
    /* W_merged += (alpha/r) B A */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s->out, (int)s->in, (int)s->rank,
                (float)(s->alpha / (double)s->rank), B, (int)s->rank, A, (int)s->in, 1.0f,
                W_merged, (int)s->in);
    return finite_f(W_merged, s->out * s->in) ? STILL_OK : STILL_E_NONFINITE;
}
