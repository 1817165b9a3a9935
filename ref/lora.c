/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* lora.c -- SPEC §9: a LoRA-adapted projection, y = x W^T + (alpha/r)
 * (x A^T) B^T, its backward and the merge of the adapter into W (double
 * loops: the oracle of the BLAS path in lib/lora_api.c). */
#include "train.h"

/* h [n][r] = x A^T */
static void lora_down(int64_t n, int64_t in, int64_t rank, const double *x, const double *A,
                      double *h)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t a = 0; a < rank; a++) {
            double s = 0.0;
            for (int64_t c = 0; c < in; c++)
                s += x[i * in + c] * A[a * in + c];
            h[i * rank + a] = s;
        }
}

void still__ref_lora_forward(int64_t n, int64_t in, int64_t out, int64_t rank, double alpha,
                             const double *x, const double *W, const double *A,
                             const double *B, double *y)
{
    const double s = alpha / (double)rank;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t o = 0; o < out; o++) {
            double base = 0.0, low = 0.0;
            for (int64_t c = 0; c < in; c++)
                base += x[i * in + c] * W[o * in + c];
            for (int64_t a = 0; a < rank; a++) {
                double h = 0.0; /* (x A^T)[i][a] */
                for (int64_t c = 0; c < in; c++)
                    h += x[i * in + c] * A[a * in + c];
                low += h * B[o * rank + a];
            }
            y[i * out + o] = base + s * low;
        }
    }
}

/* With h = x A^T and s = alpha/r: dB = s dy^T h, dh = s dy B,
 * dA = dh^T x, dx = dy W + dh A. */
void still__ref_lora_backward(int64_t n, int64_t in, int64_t out, int64_t rank, double alpha,
                              const double *x, const double *W, const double *A,
                              const double *B, const double *dy, double *dx, double *dA,
                              double *dB, double *h)
{
    const double s = alpha / (double)rank;
    lora_down(n, in, rank, x, A, h);
    if (dB)
        for (int64_t o = 0; o < out; o++)
            for (int64_t a = 0; a < rank; a++) {
                double acc = 0.0;
                for (int64_t i = 0; i < n; i++)
                    acc += dy[i * out + o] * h[i * rank + a];
                dB[o * rank + a] = s * acc;
            }
    /* h is no longer needed: it now holds dh */
    for (int64_t i = 0; i < n; i++)
        for (int64_t a = 0; a < rank; a++) {
            double acc = 0.0;
            for (int64_t o = 0; o < out; o++)
                acc += dy[i * out + o] * B[o * rank + a];
            h[i * rank + a] = s * acc;
        }
    if (dA)
        for (int64_t a = 0; a < rank; a++)
            for (int64_t c = 0; c < in; c++) {
                double acc = 0.0;
                for (int64_t i = 0; i < n; i++)
                    acc += h[i * rank + a] * x[i * in + c];
                dA[a * in + c] = acc;
            }
    if (dx)
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < in; c++) {
                double acc = 0.0;
                for (int64_t o = 0; o < out; o++)
                    acc += dy[i * out + o] * W[o * in + c];
                for (int64_t a = 0; a < rank; a++)
                    acc += h[i * rank + a] * A[a * in + c];
                dx[i * in + c] = acc;
            }
}

void still__ref_lora_merge(int64_t in, int64_t out, int64_t rank, double alpha,
                           const double *W, const double *A, const double *B,
                           double *W_merged)
{
    const double s = alpha / (double)rank;
    for (int64_t o = 0; o < out; o++)
        for (int64_t c = 0; c < in; c++) {
            double acc = 0.0;
            for (int64_t a = 0; a < rank; a++)
                acc += B[o * rank + a] * A[a * in + c];
            W_merged[o * in + c] = W[o * in + c] + s * acc;
        }
}
