/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * still.h -- the public API of libstill.
 *
 * libstill computes STILL attention: a hybrid of sparse softmax attention
 * over a few salient tokens and linear attention over the rest (see
 * still(7) and SPEC.md).  It has two paths with the same contract:
 *
 *   still_ref_*   the exact naive path, double precision: the oracle.
 *   still_*       the fast chunked path, float32, SIMD and threads.
 *
 * Every function returns STILL_OK (0) or a negative STILL_E_* code;
 * still_strerror() names it.  The library never prints, aborts or exits,
 * keeps no global mutable state, and every function is reentrant.
 * Arrays are owned by the caller.
 *
 * Threads (libstill(3), THREAD SAFETY): any functions may run at once in
 * any threads.  Inputs (config, shape, params, q, k, v, gate, selections,
 * teachers) are only read and may be shared by concurrent calls; each
 * output array belongs to one running call.  A still_state is used by one
 * thread at a time: append and destroy must not overlap any other call on
 * it, while the const calls (position, bytes, save) may share it.
 */
#ifndef STILL_H
#define STILL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STILL_VERSION_MAJOR 0
#define STILL_VERSION_MINOR 1
#define STILL_VERSION_PATCH 0
#define STILL_VERSION_STRING "0.1.0"
#define STILL_VERSION_NUMBER \
    (STILL_VERSION_MAJOR * 10000 + STILL_VERSION_MINOR * 100 + STILL_VERSION_PATCH)

#if defined(STILL_BUILDING) && defined(__GNUC__) && __GNUC__ >= 4
#define STILL_API __attribute__((visibility("default")))
#else
#define STILL_API
#endif

/* ---- status codes ------------------------------------------------------ */
enum {
    STILL_OK = 0,
    STILL_E_NULL = -1,        /* a required pointer is NULL */
    STILL_E_SHAPE = -2,       /* a dimension is out of range or inconsistent */
    STILL_E_CONFIG = -3,      /* a configuration field is out of range */
    STILL_E_NONFINITE = -4,   /* an input holds NaN or infinity, or an intermediate or a
                                 result overflows its type (float32 on the fast path) */
    STILL_E_NOMEM = -5,       /* an allocation failed */
    STILL_E_OVERFLOW = -6,    /* a size computation overflows */
    STILL_E_ISA = -7,         /* the requested ISA is unknown or unsupported here */
    STILL_E_DTYPE = -8,       /* the element type is not accepted here */
    STILL_E_SELECTION = -9,   /* a forced selection is malformed */
    STILL_E_IO = -10,         /* a file could not be opened, read or written */
    STILL_E_FORMAT = -11,     /* a file or byte stream is malformed */
    STILL_E_VERSION = -12,    /* a byte stream has an unknown version */
    STILL_E_CHECKSUM = -13,   /* a byte stream's checksum does not match */
    STILL_E_STATE = -14,      /* a state object does not fit the call */
    STILL_E_PARAMS = -15,     /* parameters are malformed (shape, values) */
    STILL_E_UNSUPPORTED = -16, /* the combination is not implemented */
    STILL_E_CANCELED = -17     /* the progress callback asked to stop */
};

/* ---- enumerations --------------------------------------------------------- */
enum { STILL_F32 = 0, STILL_F64 = 1 };                   /* element types */
enum { STILL_LAYOUT_BHND = 0, STILL_LAYOUT_BNHD = 1 };   /* array layouts */
enum {                                                   /* SPEC §6 routing */
    STILL_ROUTING_SALIENCY = 0,
    STILL_ROUTING_WINDOW = 1,
    STILL_ROUTING_ALL = 2,
    STILL_ROUTING_NONE = 3,
    STILL_ROUTING_SINKS = 4,    /* SPEC §13: s sinks + the last w positions */
    STILL_ROUTING_TERRACED = 5, /* SPEC §14: LoLCATs' block window of w */
    STILL_ROUTING_LTE = 6,      /* SPEC §15: learned token eviction (ref path only) */
    STILL_ROUTING_NSA = 7       /* SPEC §17: native sparse attention (ref path only) */
};
enum { STILL_REST_LINEAR = 0, STILL_REST_DROP = 1 };    /* SPEC §12 */
enum { STILL_MIXER_STILL = 0, STILL_MIXER_LIGER = 1 };  /* SPEC §16 mixer */
/* The most conv layers of the lte score network (SPEC §15). */
#define STILL_LTE_LAYERS_MAX 8
enum {                                                   /* SPEC §2 activations */
    STILL_ACT_HEDGEHOG = 0,
    STILL_ACT_SOFTMAX = 1,
    STILL_ACT_ELU1 = 2,
    STILL_ACT_RELU = 3
};
enum { STILL_SALIENCY_SPEC = 0, STILL_SALIENCY_AUTHORS = 1 }; /* SPEC §4, App. A.1 */
enum {                                                   /* fast path ISAs */
    STILL_ISA_AUTO = 0,
    STILL_ISA_GENERIC = 1,
    STILL_ISA_AVX2 = 2,
    STILL_ISA_AVX512 = 3,
    STILL_ISA_NEON = 4
};
enum { STILL_MAP_Q = 0, STILL_MAP_K = 1 };               /* which feature map */

/* ---- progress of long calls ------------------------------------------- */
/* Called by the reference path's still_ref_forward and still_ref_teacher
 * (the fast path does not call it), from the calling thread only, with the
 * work done so far and the total, in output rows (queries times heads):
 * once with done = 0, then as the work goes on, last with done = total.  A
 * nonzero return stops the call, which then returns STILL_E_CANCELED with
 * its outputs undefined.  The library never prints: showing progress is
 * the caller's. */
typedef int (*still_progress_fn)(void *user, int64_t done, int64_t total);

/* ---- configuration (SPEC §4-6) ---------------------------------------- */
/* The int64 fields may be as large as INT64_MAX: what derives from them
 * (C * max(L,1), 2w, max_sel + k, ...) saturates in one resolution shared
 * by every call, so a value beyond the sequence acts as its length
 * (still_config_validate(3)). */
typedef struct still_config {
    int64_t chunk;     /* C >= 1; default 64 */
    int64_t topk;      /* k, 0 <= k <= C; default 4 (routing saliency only) */
    int64_t window;    /* w >= 2: saliency window, and the exact window of
                          routings `window`, `sinks` and `terraced` (its
                          block, which replaces chunk, topk and local),
                          the sliding branch of `nsa`; 0 = default
                          max(C, 2), 512 for nsa */
    int64_t local;     /* L >= 0 recent exact chunks; default 2 */
    int64_t max_sel;   /* cap on the selected cache, 0 = none (default) */
    int routing;       /* STILL_ROUTING_*; default SALIENCY */
    int rest;          /* SPEC §12: keys outside the exact set feed the linear
                          branch (STILL_REST_LINEAR, default) or are ignored
                          (STILL_REST_DROP) */
    int64_t sinks;     /* s >= 0 sink positions of routings `sinks` and `lte`;
                          default 4 */
    int act;           /* STILL_ACT_*; default HEDGEHOG */
    int npmap;         /* 1 (default): norm-preserving rescale; 0: off */
    int select_per_kv; /* 1: one selection per kv head (sigma averaged over
                          the query heads of the group); default 0 */
    double scale;      /* logit scale; 0 (default) = 1/sqrt(d) */
    double eps_den;    /* added to the hybrid denominator; default 1e-6 */
    int saliency;      /* STILL_SALIENCY_SPEC (default) or _AUTHORS */
    int phantom_sink;  /* SPEC App. A.2; default 0 */
    int isa;           /* fast path ISA; default STILL_ISA_AUTO */
    int threads;       /* threads of both paths, 0..STILL_THREADS_MAX; 0
                          (default) = OpenMP's default (OMP_NUM_THREADS); a
                          call uses at most this many, fewer when it has fewer
                          units or the environment cannot start them
                          (libstill(3)) */
    /* The reference path at scale (each query's output depends only on the
     * inputs, so the queries split across calls, processes or machines):
     * still_ref_forward and still_ref_teacher write the outputs of the
     * queries query_begin <= t < query_end of every head only, and leave
     * the other rows of o untouched (sigma and the selection are written
     * whole).  0, 0 (default) = every query.  The fast path, the states and
     * the gradients refuse a range (STILL_E_UNSUPPORTED). */
    int64_t query_begin, query_end;
    still_progress_fn progress; /* optional, NULL (default): no reports */
    void *progress_user;        /* passed to progress */
    /* SPEC §15-16, the hybrid family; still_ref_forward only for now: the
     * fast path, the states and the gradients refuse routing lte and mixer
     * liger (STILL_E_UNSUPPORTED). */
    int64_t budget;    /* b >= 0 retained tokens of routing lte; default 0 */
    int64_t lte_dilation[STILL_LTE_LAYERS_MAX]; /* dilation of each conv layer
                          of the lte network, >= 1; 0 = default 2 */
    int mixer;         /* STILL_MIXER_STILL (default) or _LIGER (SPEC §16:
                          routing, rest, gate, eps_den and the maps ignored) */
    double alpha, beta; /* liger's o = alpha SWA + beta GLA; default 0.5, 0.5 */
    /* SPEC App. A.3: the authors' decode as it is; default 0.  1 needs the
     * settings of --compat authors (saliency authors, phantom sink, L = 2,
     * w = C, routing saliency, no cap, no per-kv selection, rest linear,
     * mixer still; else STILL_E_UNSUPPORTED).  A state's first block is
     * the authors' prefill, its later tokens their decode; a prefill is a
     * first block (the same as without the switch).  The reference path
     * only: the fast state refuses it (STILL_E_UNSUPPORTED). */
    int authors_decode;
    /* SPEC §17, routing nsa (still_ref_forward only for now: the fast path,
     * the states and the gradients refuse it, STILL_E_UNSUPPORTED).  Its
     * sliding branch is `window` (0 = default 512 for nsa). */
    int64_t nsa_block; /* BS >= 1 positions per block; default 64 */
    int64_t nsa_topk;  /* S >= 3 selected blocks per query (the three forced
                          ones included); default 16 */
} still_config;

/* The most threads one call of the fast path uses (and the largest
 * cfg.threads): more would only cost memory and start-up time. */
#define STILL_THREADS_MAX 1024

/* ---- shapes ------------------------------------------------------------ */
/* q [B,Hq,N,d], k [B,Hk,N,d], v [B,Hk,N,dv], gate and o [B,Hq,N,dv] in
 * layout BHND; [B,N,H,*] in layout BNHD.  sigma and selections are always
 * [B,Hq,N]. */
typedef struct still_shape {
    int64_t batch;    /* B >= 1 */
    int64_t heads_q;  /* Hq >= 1 */
    int64_t heads_kv; /* Hk >= 1, Hq % Hk == 0 */
    int64_t seq_len;  /* N >= 1 */
    int64_t dim_qk;   /* d >= 1 */
    int64_t dim_v;    /* dv >= 1 */
    int layout;       /* STILL_LAYOUT_BHND or STILL_LAYOUT_BNHD */
} still_shape;

/* ---- parameters (SPEC §2, §6) -------------------------------------------- */
/* One NP-Map per query head, stacked on the first axis. */
typedef struct still_feature_map {
    int64_t f;       /* rows of W; with W == NULL it must be 0 or d */
    const double *W; /* [Hq][f][d] or NULL for the identity (f = d) */
    const double *b; /* [Hq][f] or NULL */
    const double *u; /* [Hq][d] Householder vectors, or NULL */
} still_feature_map;

/* SPEC §15: the retention score network of routing lte, per kv head
 * stacked on the first axis: layer l (0-based) has W [Hk][c_{l+1}][c_l][3]
 * (taps read j-δ, j, j+δ) and b [Hk][c_{l+1}]; then proj_W [Hk][c_n] and
 * proj_b [Hk].  channels[0] = c0 is the width of the network's input. */
typedef struct still_lte_params {
    int64_t layers;                            /* n, 1..STILL_LTE_LAYERS_MAX */
    int64_t channels[STILL_LTE_LAYERS_MAX + 1]; /* c_0..c_n, each >= 1 */
    const double *conv_W[STILL_LTE_LAYERS_MAX];
    const double *conv_b[STILL_LTE_LAYERS_MAX];
    const double *proj_W, *proj_b;
} still_lte_params;

typedef struct still_params {
    still_feature_map fq;      /* query map */
    still_feature_map fk;      /* key map, used only when fk_tied == 0 */
    int fk_tied;               /* nonzero: fk = fq (default) */
    const double *window_w;    /* [Hq]: omega = sigmoid(window_w[h]); NULL: 1 */
    const struct still_lte_params *lte; /* SPEC §15 score network; NULL: absent
                                           (routing lte refused, STILL_E_PARAMS) */
} still_params;

/* ---- the arrays of one call ---------------------------------------------- */
typedef struct still_tensors {
    int dtype;                   /* STILL_F32 or STILL_F64 (q, k, v, gate, o) */
    const void *q, *k, *v;       /* inputs, required */
    const void *gate;            /* gate values G, NULL = all ones */
    void *o;                     /* output, required */
    double *sigma;               /* optional output [B][Hq][N] (+inf allowed) */
    uint8_t *selected;           /* optional output [B][Hq][N]: 1 = among the
                                    top-k of its complete chunk */
    const uint8_t *selection_in; /* optional forced selection [B][Hq][N] */
    /* SPEC §15-16 (still_ref_forward): with routing lte, sigma receives the
     * retention scores r [B][Hk][N] and selected [B][Hk][N] 1 for the tokens
     * retained after the last query (sinks and window excluded). */
    const void *lte_input;       /* X [B,Hk,N,c0] (layout, dtype), NULL = [k ‖ v] */
    const void *q_lin, *k_lin;   /* liger's linear-branch inputs, shapes of q and
                                    k; NULL = q, k */
    /* SPEC §17 (still_ref_forward, routing nsa; the other routings ignore
     * them).  Routing nsa reads no gate and refuses sigma, selected and
     * selection_in (STILL_E_UNSUPPORTED). */
    const void *nsa_gates;       /* [B,Hq,N,3] (layout, dtype): the weights of
                                    the compressed, selected and sliding
                                    branches; NULL = all ones */
    int32_t *nsa_blocks;         /* optional output [B][Hq][N][nsa_topk]: each
                                    query's selected blocks in ascending order,
                                    padded with -1 */
} still_tensors;

/* ---- functions ------------------------------------------------------------ */
STILL_API const char *still_version_string(void);
STILL_API const char *still_strerror(int code);
STILL_API void still_config_default(still_config *cfg);
STILL_API void still_params_default(still_params *params);

/* Checks a configuration and shape without running anything. */
STILL_API int still_config_validate(const still_config *cfg, const still_shape *shape);

/* Feature dimension m of the maps (2f for hedgehog, f otherwise). */
STILL_API int still_feature_dim(const still_config *cfg, const still_params *params,
                                int64_t dim_qk, int64_t *m);

/* STILL hybrid attention (SPEC §6).  params may be NULL (defaults). */
STILL_API int still_ref_forward(const still_config *cfg, const still_shape *shape,
                                const still_params *params, const still_tensors *t);
STILL_API int still_forward(const still_config *cfg, const still_shape *shape,
                            const still_params *params, const still_tensors *t);

/* Full causal softmax attention, the teacher (SPEC §1).  Uses only
 * cfg->scale (and threads/isa on the fast path); t->gate, sigma and the
 * selections are ignored. */
STILL_API int still_ref_teacher(const still_config *cfg, const still_shape *shape,
                                const still_tensors *t);
STILL_API int still_teacher(const still_config *cfg, const still_shape *shape,
                            const still_tensors *t);

/* The feature map of query head `head` (SPEC §2) on n row vectors x [n][d],
 * writing phi [n][m] in double. */
STILL_API int still_ref_feature_map(const still_config *cfg, const still_params *params,
                                    int which, int64_t head, int64_t dim_qk,
                                    int64_t n, const double *x, double *phi);

/* Gating projection G = sigmoid(X Wg^T) (SPEC §6): X [B][N][hidden],
 * Wg [Hq*dv][hidden], G [B][Hq][N][dv] (layout BHND). */
STILL_API int still_ref_gate_projection(int64_t batch, int64_t seq_len, int64_t hidden,
                                        int64_t heads_q, int64_t dim_v,
                                        const double *X, const double *Wg, double *G);
STILL_API int still_gate_projection(int64_t batch, int64_t seq_len, int64_t hidden,
                                    int64_t heads_q, int64_t dim_v,
                                    const float *X, const float *Wg, float *G);

/* ==== streaming state (SPEC §7) =========================================== */
/*
 * Decode: a still_state holds, for every (batch, query head) of a shape,
 * what later tokens need -- the selected cache (k, v, position, sigma), the
 * raw tokens of the last L chunks (the current one partial), the last w
 * keys for saliency, and the linear state S, z -- and consumes tokens in
 * blocks of any size, one token being the usual decode step.  The outputs
 * of a sequence are the same however it is cut into appends, and the same
 * as one still_ref_forward / still_forward prefill of it (SPEC I6).
 *
 * - cfg (NULL = defaults) and shape are copied.  shape->seq_len is ignored
 *   (any value >= 1): a state has no length limit.  With cfg->max_sel > 0
 *   its memory stops growing (evicted tokens fold into S, z).
 * - params (NULL = defaults) are copied into the state, so the caller may
 *   free them after create; they are NOT written into a saved stream: the
 *   stream keeps a 64-bit fingerprint of them, and still_state_load()
 *   refuses other parameters with STILL_E_PARAMS.
 * - path STILL_PATH_REF computes in double and accepts STILL_F32 or
 *   STILL_F64 tensors; STILL_PATH_FAST computes in float32 and accepts
 *   STILL_F32 only (SPEC §10 precision).
 */
enum { STILL_PATH_REF = 0, STILL_PATH_FAST = 1 };

/* One state per thread at a time: still_state_append/destroy must not run
 * on a state concurrently with any other call on it (the caller serializes
 * them); the const still_state calls only read it.  Distinct states need
 * no locking. */
typedef struct still_state still_state;

STILL_API int still_state_create(const still_config *cfg, const still_shape *shape,
                                 const still_params *params, int path, still_state **out);

/* NULL-safe. */
STILL_API void still_state_destroy(still_state *st);

/* Appends n >= 0 tokens at positions position..position+n-1.  t->q [B,Hq,n,d],
 * t->k [B,Hk,n,d], t->v [B,Hk,n,dv], t->gate [B,Hq,n,dv] or NULL, in the
 * shape's layout; writes t->o [B,Hq,n,dv] and, when t->sigma is set, the
 * new tokens' sigma [B][Hq][n] (the group mean with per-kv selection, as in
 * prefill).  t->o may be NULL: the state advances without computing any
 * output (a cheaper prefill).  t->selected and t->selection_in must be NULL
 * (a token's selection is known only when its chunk is split, later):
 * STILL_E_UNSUPPORTED otherwise.  n == 0 does nothing and reads no array.
 * On any error the state is unchanged. */
STILL_API int still_state_append(still_state *st, int64_t n, const still_tensors *t);

/* Tokens appended so far. */
STILL_API int still_state_position(const still_state *st, int64_t *position);

/* Bytes of memory the state holds now: its tokens (cache, raw tokens, key
 * window), linear states, bookkeeping and its copy of the parameters;
 * per-call working buffers are not counted.  With max_sel > 0 it stops
 * growing once the cache is full. */
STILL_API int still_state_bytes(const still_state *st, size_t *bytes);

/* Serializes the state into buf [cap]: a versioned, checksummed,
 * little-endian byte stream; *len receives its length.  buf == NULL asks
 * the length only; cap < length gives STILL_E_OVERFLOW (and *len). */
STILL_API int still_state_save(const still_state *st, void *buf, size_t cap, size_t *len);

/* Rebuilds a state from a stream of still_state_save() with the same
 * parameters (NULL = defaults).  STILL_E_FORMAT (malformed or truncated),
 * STILL_E_VERSION, STILL_E_CHECKSUM, STILL_E_PARAMS (other parameters). */
STILL_API int still_state_load(const void *buf, size_t len, const still_params *params,
                               still_state **out);
/* ==== end of streaming state ============================================== */

/* ==== training (SPEC §8-9): attention transfer, Adam, LoRA ================ */
/* See still_ref_transfer_grad(3), still_vjp(3), still_adam_step(3),
 * still_ref_lora_forward(3). */

/* Gradient buffers of the transfer loss and the VJP: caller-owned double arrays, each
 * NULL when not wanted; every non-NULL one is overwritten.  A parameter
 * that is absent from still_params still has a gradient, taken at its
 * default: W = I (f = d), b = 0, u = 0 (where it is 0). */
typedef struct still_grads {
    double *dfq_W;     /* [Hq][f][d] */
    double *dfq_b;     /* [Hq][f] */
    double *dfq_u;     /* [Hq][d] */
    double *dfk_W;     /* [Hq][f][d]; the dfk_* are used only when fk is not
                          tied: with fk tied, the shared map's gradient (the
                          sum of its query and key uses) is in dfq_* and the
                          dfk_* are not written */
    double *dfk_b;     /* [Hq][f] */
    double *dfk_u;     /* [Hq][d] */
    double *dwindow_w; /* [Hq]: dL/dw_h, omega = sigmoid(w_h); all 0 when
                          params->window_w is NULL (omega = 1, a constant) */
    double *dgate;     /* dL/dG, [B,Hq,N,dv] in shape->layout (at G = 1 when
                          t->gate is NULL) */
    double *dq;        /* dL/dq, as q */
    double *dk;        /* dL/dk, as k (summed over the query heads of a group) */
    double *dv;        /* dL/dv, as v (summed over the query heads of a group) */
    double *dnsa_gates; /* dL/d nsa_gates, [B,Hq,N,3] in shape->layout (routing
                           nsa, still_ref_vjp; at gates 1 when t->nsa_gates is
                           NULL); not written by the other routings */
} still_grads;

/* SPEC §8 attention transfer: *loss = mean over every output element of
 * (o - o_teacher)^2 and its exact gradients g (NULL: loss only).
 * o_teacher is a constant (no gradient flows through it): `teacher`
 * [B,Hq,N,dv] in the layout and dtype of t, or NULL for the full causal
 * softmax attention of the same q, k, v (computed by the call).  The
 * selection is a constant too: sigma and the selection of the forward (or
 * t->selection_in) fix the routing.  t->o (optional here) receives the
 * student output o, t->sigma and t->selected (optional) as in
 * still_ref_forward.  The ref path computes in double (t->dtype F32 or
 * F64); the fast path takes F32 and agrees with it within 1e-5 relative. */
STILL_API int still_ref_transfer_grad(const still_config *cfg, const still_shape *shape,
                                      const still_params *params, const still_tensors *t,
                                      const void *teacher, double *loss, const still_grads *g);
STILL_API int still_transfer_grad(const still_config *cfg, const still_shape *shape,
                                  const still_params *params, const still_tensors *t,
                                  const void *teacher, double *loss, const still_grads *g);

/* The backward pass (SPEC §18), see still_vjp(3): for an upstream gradient
 * dout = dL/do [B,Hq,N,dv] in the layout and dtype of t (finite, else
 * STILL_E_NONFINITE), the gradients g (required; each buffer NULL when not
 * wanted) of L = sum(dout ⊙ o) with respect to q, k, v, the gate values,
 * the feature maps and window_w, with the routing held fixed as computed
 * by the forward (or given by t->selection_in).  t->o (optional here)
 * receives the output o, t->sigma and t->selected as in
 * still_ref_forward.  still_ref_transfer_grad is this backward with
 * dout = 2 (o - o_teacher) / (B Hq N dv).  The ref path computes in
 * double (F32 or F64); the fast path takes F32 and is within
 * 1e-5 * max|ref| of the ref per gradient tensor on inputs of order 1. */
STILL_API int still_ref_vjp(const still_config *cfg, const still_shape *shape,
                            const still_params *params, const still_tensors *t,
                            const void *dout, const still_grads *g);
STILL_API int still_vjp(const still_config *cfg, const still_shape *shape,
                        const still_params *params, const still_tensors *t, const void *dout,
                        const still_grads *g);

/* Backward of still_ref_gate_projection (SPEC §6): given dG [B][Hq][N][dv]
 * (BHND), writes dX [B][N][hidden] and dWg [Hq*dv][hidden] (either may be
 * NULL). */
STILL_API int still_ref_gate_projection_grad(int64_t batch, int64_t seq_len, int64_t hidden,
                                             int64_t heads_q, int64_t dim_v, const double *X,
                                             const double *Wg, const double *dG, double *dX,
                                             double *dWg);

/* Adam (SPEC §8) with bias correction and optional decoupled weight decay
 * (AdamW): for step t >= 1 and every i,
 *   p -= lr*wd*p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps).
 * A parameter set is one flat array: pack several tensors one after the
 * other (the update is elementwise).  m and v start at 0. */
typedef struct still_adam_config {
    double lr;           /* learning rate, default 1e-3 */
    double beta1, beta2; /* default 0.9, 0.999; in [0, 1) */
    double eps;          /* default 1e-8; > 0 */
    double weight_decay; /* decoupled, default 0 (none) */
} still_adam_config;
STILL_API void still_adam_default(still_adam_config *cfg);
STILL_API int still_adam_step(const still_adam_config *cfg, int64_t step, size_t n,
                              double *param, const double *grad, double *m, double *v);

/* LoRA (SPEC §9): y = x W^T + (alpha/r) (x A^T) B^T, W frozen.
 * x [rows][in], W [out][in], A [rank][in], B [out][rank], y [rows][out]. */
typedef struct still_lora_shape {
    int64_t rows, in, out, rank; /* all >= 1 */
    double alpha;                /* finite */
} still_lora_shape;
STILL_API int still_ref_lora_forward(const still_lora_shape *s, const double *x,
                                     const double *W, const double *A, const double *B,
                                     double *y);
/* Given dy [rows][out]: dx [rows][in], dA [rank][in], dB [out][rank]
 * (each may be NULL), overwritten. */
STILL_API int still_ref_lora_backward(const still_lora_shape *s, const double *x,
                                      const double *W, const double *A, const double *B,
                                      const double *dy, double *dx, double *dA, double *dB);
/* W_merged = W + (alpha/r) B A (W_merged may be W): the merged projection
 * gives the adapted output with one product. */
STILL_API int still_ref_lora_merge(const still_lora_shape *s, const double *W, const double *A,
                                   const double *B, double *W_merged);
STILL_API int still_lora_forward(const still_lora_shape *s, const float *x, const float *W,
                                 const float *A, const float *B, float *y);
STILL_API int still_lora_backward(const still_lora_shape *s, const float *x, const float *W,
                                  const float *A, const float *B, const float *dy, float *dx,
                                  float *dA, float *dB);
STILL_API int still_lora_merge(const still_lora_shape *s, const float *W, const float *A,
                               const float *B, float *W_merged);
/* ==== end of training ===================================================== */

#ifdef __cplusplus
}
#endif
#endif /* STILL_H */
