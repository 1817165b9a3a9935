/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* arrays.c -- small helpers the ref path's entry points share (ref_api.c,
 * grad_api.c, grad_fast.c, ref/grad.c): overflow-checked array allocation,
 * gathering one head of a [B,H,N,D] tensor into a contiguous double array
 * and back, and the shape checks of the gating projection (SPEC §6). */
#include "internal.h"

#include <stdlib.h>

void *still__array_new(int64_t rows, int64_t cols, size_t size, int zeroed, int *rc)
{
    size_t bytes;
    void *p;
    if (*rc)
        return NULL;
    if (rows < 0 || cols < 0 || still__mul3_size((size_t)rows, (size_t)cols, size, &bytes)) {
        *rc = STILL_E_OVERFLOW;
        return NULL;
    }
    p = zeroed ? calloc(bytes ? bytes : 1, 1) : malloc(bytes ? bytes : 1);
    if (!p)
        *rc = STILL_E_NOMEM;
    return p;
}

void still__gather_head(int dtype, const void *src, int layout, int64_t H, int64_t N,
                        int64_t D, int64_t b, int64_t h, double *dst)
{
    const still__strides s = still__strides_of(layout, H, N, D);
    for (int64_t n = 0; n < N; n++)
        for (int64_t e = 0; e < D; e++)
            dst[n * D + e] = still__load(dtype, src, b * s.b + h * s.h + n * s.n + e);
}

void still__scatter_head(int dtype, void *dst, int layout, int64_t H, int64_t N, int64_t D,
                         int64_t b, int64_t h, const double *src)
{
    still__scatter_rows(dtype, dst, layout, H, N, D, b, h, 0, N, src);
}

void still__scatter_rows(int dtype, void *dst, int layout, int64_t H, int64_t N, int64_t D,
                         int64_t b, int64_t h, int64_t n0, int64_t n1, const double *src)
{
    const still__strides s = still__strides_of(layout, H, N, D);
    for (int64_t n = n0; n < n1; n++)
        for (int64_t e = 0; e < D; e++)
            still__store(dtype, dst, b * s.b + h * s.h + n * s.n + e, src[n * D + e]);
}

int still__rows_finite(int dtype, const void *p, int layout, int64_t B, int64_t H, int64_t N,
                       int64_t D, int64_t n0, int64_t n1)
{
    const still__strides s = still__strides_of(layout, H, N, D);
    const size_t elem = dtype == STILL_F64 ? sizeof(double) : sizeof(float);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t n = n0; n < n1; n++)
                if (!still__all_finite(dtype, (const char *)p +
                                       (size_t)(b * s.b + h * s.h + n * s.n) * elem, D))
                    return 0;
    return 1;
}

int still__gate_projection_sizes(int64_t batch, int64_t seq_len, int64_t hidden,
                                 int64_t heads_q, int64_t dim_v, size_t elem, size_t *nx,
                                 size_t *nw, size_t *ng)
{
    if (batch < 1 || seq_len < 1 || hidden < 1 || heads_q < 1 || dim_v < 1)
        return STILL_E_SHAPE;
    /* element counts of X [B,N,hidden], Wg [Hq,dv,hidden] and G [B,Hq,N,dv],
     * each addressable in bytes */
    if (still__mul3_size((size_t)batch, (size_t)seq_len, (size_t)hidden, nx) ||
        still__mul3_size((size_t)heads_q, (size_t)dim_v, (size_t)hidden, nw) ||
        still__mul3_size((size_t)batch, (size_t)heads_q, (size_t)seq_len, ng) ||
        still__mul_size(*ng, (size_t)dim_v, ng) || *nx > INT64_MAX / elem ||
        *nw > INT64_MAX / elem || *ng > INT64_MAX / elem)
        return STILL_E_OVERFLOW;
    return STILL_OK;
}
