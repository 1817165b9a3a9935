/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * internal.h -- cross-file internals of libstill (names start with still__).
 * Not installed.  Shared by lib/, ref/ and the tests, which link the
 * convenience library libstill_core.la and so may call these.
 */
#ifndef STILL_INTERNAL_H
#define STILL_INTERNAL_H

#include "still.h"

#include <float.h>
#include <math.h>

#include <stddef.h>
#include <stdint.h>

/* Saturating arithmetic of nonnegative int64 sizes and positions: a
 * result beyond INT64_MAX is INT64_MAX, which every later size check
 * refuses (STILL_E_OVERFLOW) and every comparison with a real count or
 * position treats as "unbounded".  Any field of a configuration may be as
 * large as INT64_MAX (a state has no length limit, SPEC §7), so every
 * quantity derived from two fields is computed with these. */
static inline int64_t still__sat_mul(int64_t a, int64_t b)
{
    return (a != 0 && b > INT64_MAX / a) ? INT64_MAX : a * b;
}
static inline int64_t still__sat_add(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* A configuration with every default filled in and every derived value
 * computed, for one shape.  Built once per call by still__resolve(), the
 * one place where quantities derived from several fields are computed
 * (saturated, see above); the ref path, the fast path, the gradients and
 * the states read them from here rather than recomputing them. */
typedef struct still__resolved {
    still_shape shape;
    int64_t C;        /* chunk */
    int64_t k;        /* effective top-k: cfg.topk; C for ALL; 0 for NONE */
    int64_t w;        /* effective window (>= 2) */
    int64_t L;        /* local exact chunks */
    int64_t max_sel;  /* 0 = no cap */
    int routing, act, npmap, per_kv, saliency, phantom_sink;
    int authors_decode; /* SPEC App. A.3 */
    int engine;       /* STILL__ENGINE_*: how the routing decides E_t */
    int rest;         /* STILL_REST_* (SPEC §12) */
    int64_t sinks;    /* leading positions always exact (routings sinks, lte), else 0 */
    int mixer;        /* STILL_MIXER_* (SPEC §16) */
    int64_t budget;   /* retained tokens of routing lte (SPEC §15) */
    double alpha, beta; /* SPEC §16 */
    int64_t nsa_block, nsa_topk; /* BS and S of routing nsa (SPEC §17) */
    double scale;     /* effective logit scale */
    double eps_den;
    int64_t f_q, f_k; /* rows of W of the two maps */
    int64_t m;        /* feature dimension (same for both maps) */
    int64_t group;    /* Hq / Hk */
    int64_t nchunks;  /* ceil(N / C) */
    /* derived bounds, saturated at INT64_MAX (SPEC §5-7) */
    int64_t Ls;       /* chunks a split lags behind: max(L, 1) */
    int64_t raw_cap;  /* raw tokens a state unit keeps: w for routing
                         `window`, else Ls * C */
    int64_t keys_cap; /* keys a state unit keeps for saliency: 2w */
    int64_t cache_cap; /* entries the selected cache can hold: max_sel + k,
                          INT64_MAX without a cap; the sinks with the
                          window engine */
} still__resolved;

/* A routing (SPEC §6) as the drivers see it: one of two engines,
 * parameterized by the resolved fields.
 *   CHUNKS  chunks of C are split (top-k by sigma to the cache, the rest
 *           leave) when they age past the L recent chunks: saliency, all,
 *           none, terraced (C = w, k = 0, L = 2);
 *   WINDOW  the last w positions are exact, plus the first `sinks`
 *           positions: window, sinks.
 * The routings themselves are a table (lib/routing.c) with the resolution
 * of their fields; the oracle has one file per routing with its exact set
 * (ref/route_*.c). */
enum { STILL__ENGINE_CHUNKS = 0, STILL__ENGINE_WINDOW = 1 };

typedef struct still__routing {
    const char *name; /* the tool's word (SPEC §11) */
    int engine;       /* STILL__ENGINE_* */
    /* Checks cfg's fields of this routing and sets r->k (and what the
     * routing fixes: C, L, sinks) once r->C, r->L, r->w hold cfg's. */
    int (*resolve)(const still_config *cfg, still__resolved *r);
} still__routing;

/* The routing of STILL_ROUTING_* id, NULL for an unknown id. */
const still__routing *still__routing_of(int id);

/* SPEC §6: the first position of the chunks not yet split when query t
 * (>= 0) is processed: chunks c' <= t/C - Ls are split, so
 * max(0, t/C - Ls + 1) * C, which is <= t and never overflows. */
static inline int64_t still__split_end(const still__resolved *r, int64_t t)
{
    const int64_t split = t / r->C - r->Ls + 1; /* >= -INT64_MAX + 1 */
    return split > 0 ? split * r->C : 0;
}

/* Fills r from cfg (NULL = defaults), shape and params (NULL = defaults),
 * checking every range.  Returns STILL_OK or an error code; does no I/O. */
int still__resolve(const still_config *cfg, const still_shape *shape,
                   const still_params *params, still__resolved *r);

/* The queries [*begin, *end) a ref call computes (cfg->query_begin/end;
 * 0, 0 = all N): STILL_E_CONFIG unless 0 <= begin < end <= N.
 * still__no_query_range: STILL_E_UNSUPPORTED when cfg asks for what only
 * still_ref_forward computes -- a range, routings lte and nsa or mixer
 * liger (SPEC §15-17) -- called by the fast path, the states, the
 * gradients. */
int still__query_range(const still_config *cfg, int64_t N, int64_t *begin, int64_t *end);
int still__no_query_range(const still_config *cfg);


/* Checks the arrays of a call: required pointers, dtype allowed by the
 * path (allow_f64), finiteness of q, k, v, gate and params, and that a
 * forced selection has exactly k ones in every complete chunk. */
/* 1 when the n elements of p (STILL_F32 or STILL_F64) are all finite. */
int still__all_finite(int dtype, const void *p, int64_t n);
/* The float scan of still__all_finite, inline for the short spans of the
 * fast path's intermediates (SPEC §10): |x| <= FLT_MAX is false exactly
 * for inf and NaN, and the loop has no branch, so it vectorizes. */
static inline int still__finite_f32(const float *x, int64_t n)
{
    int bad = 0;
#ifdef _OPENMP /* ref/ includes this header and builds without OpenMP */
#pragma omp simd reduction(| : bad)
#endif
    for (int64_t i = 0; i < n; i++)
        bad |= !(fabsf(x[i]) <= FLT_MAX);
    return !bad;
}

/* 1 when the n saliency scores are +inf (a token alone in its window) or
 * finite, never NaN or -inf: float32 logits overflowing with a huge scale
 * gave NaN behind STILL_OK (found by fuzz_config).  The fast forward and
 * the states check the sigma they write with it. */
int still__sigma_valid(const double *sigma, int64_t n);

int still__check_tensors(const still__resolved *r, const still_params *params,
                         const still_tensors *t, int allow_f64);

/* lib/ref_family_api.c: still_ref_forward for routing lte and mixer liger
 * (SPEC §15-16), the queries q0..q1-1, after still__resolve. */
int still__ref_forward_family(const still_config *cfg, const still__resolved *r,
                              const still_params *params, const still_tensors *t, int64_t q0,
                              int64_t q1);

/* SPEC §16: liger's optional q_lin [B,Hq,N,d], k_lin [B,Hk,N,d] of t are
 * finite (STILL_E_NONFINITE otherwise); N = r->shape.seq_len. */
int still__liger_inputs_ok(const still__resolved *r, const still_tensors *t);

/* lib/ref_nsa_api.c: still_ref_forward for routing nsa (SPEC §17), the
 * queries q0..q1-1, after still__resolve. */
int still__ref_forward_nsa(const still_config *cfg, const still__resolved *r,
                           const still_tensors *t, int64_t q0, int64_t q1);
/* ... and still_ref_vjp for routing nsa (SPEC §18): dq, dk, dv and
 * dnsa_gates written whole, t->o and t->nsa_blocks as the forward's, the
 * selection held fixed as the forward computes it. */
int still__ref_vjp_nsa(const still__resolved *r, const still_tensors *t, const void *dout,
                       const still_grads *g);

/* Element strides (in elements) of a [B,H,N,D] array in the layout;
 * the last axis is contiguous. */
typedef struct still__strides {
    int64_t b, h, n;
} still__strides;
still__strides still__strides_of(int layout, int64_t H, int64_t N, int64_t D);

/* Overflow-checked size arithmetic: return 0 on success, -1 on overflow. */
int still__mul_size(size_t a, size_t b, size_t *out);
int still__mul3_size(size_t a, size_t b, size_t c, size_t *out);

/* Reads element i of a float or double array as double. */
static inline double still__load(int dtype, const void *p, int64_t i)
{
    return dtype == STILL_F64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}
static inline void still__store(int dtype, void *p, int64_t i, double x)
{
    if (dtype == STILL_F64)
        ((double *)p)[i] = x;
    else
        ((float *)p)[i] = (float)x;
}

/* lib/arrays.c.  An array of rows x cols elements of `size` bytes (zeroed
 * or not); on failure NULL with *rc = STILL_E_OVERFLOW or STILL_E_NOMEM,
 * and nothing is done while *rc is already set, so a run of calls needs
 * one check at its end. */
void *still__array_new(int64_t rows, int64_t cols, size_t size, int zeroed, int *rc);
/* Head h of batch b of a [B,H,N,D] tensor (dtype, layout) to/from a
 * contiguous double array [N][D]. */
void still__gather_head(int dtype, const void *src, int layout, int64_t H, int64_t N,
                        int64_t D, int64_t b, int64_t h, double *dst);
void still__scatter_head(int dtype, void *dst, int layout, int64_t H, int64_t N, int64_t D,
                         int64_t b, int64_t h, const double *src);
/* Rows n0 <= n < n1 of src [N][D] into head h of batch b of dst. */
void still__scatter_rows(int dtype, void *dst, int layout, int64_t H, int64_t N, int64_t D,
                         int64_t b, int64_t h, int64_t n0, int64_t n1, const double *src);
/* 1 when rows n0 <= n < n1 of every head of a [B,H,N,D] array are finite. */
int still__rows_finite(int dtype, const void *p, int layout, int64_t B, int64_t H, int64_t N,
                       int64_t D, int64_t n0, int64_t n1);
/* The shape checks of the gating projection (SPEC §6): STILL_E_SHAPE for a
 * dimension < 1, STILL_E_OVERFLOW unless X, Wg and G (elements of `elem`
 * bytes) are addressable; their element counts in *nx, *nw, *ng. */
int still__gate_projection_sizes(int64_t batch, int64_t seq_len, int64_t hidden,
                                 int64_t heads_q, int64_t dim_v, size_t elem, size_t *nx,
                                 size_t *nw, size_t *ng);

#endif /* STILL_INTERNAL_H */
