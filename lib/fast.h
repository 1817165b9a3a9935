/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * fast.h -- internals of the fast path (float32): ISA dispatch, the chunked
 * STILL driver (SPEC §5-6, Algorithm 1) and the fast teacher (SPEC §1).
 *
 * The driver is built around a resumable per-unit state.  A *unit* is the
 * set of query heads that share one selection (lib/state.h): one query head,
 * or with per-kv selection (SPEC §5) the `group` query heads of one kv head.
 * still__fast_unit_append() consumes a block of n tokens of one unit and
 * writes their outputs; its results do not depend on how a sequence is cut
 * into blocks -- bitwise, for a fixed ISA -- because
 *   - chunks are split, and their tokens cached or folded, exactly when the
 *     first query of a later chunk arrives (SPEC §5-6), whatever the block;
 *   - every kernel forms each output element in a fixed order independent
 *     of the other rows of the call (simd/kernels.h), and key tiles start at
 *     fixed positions (the cache index, the first raw position).
 * Prefill (lib/fast_api.c) is one block of N per unit; decode
 * (lib/state_fast.c) is blocks of 1.  Per unit, threads never share data.
 */
#ifndef STILL_FAST_H
#define STILL_FAST_H

#include "internal.h"
#include "../simd/kernels.h"

#include <stddef.h>
#include <stdint.h>

/* ---- dispatch (lib/dispatch.c) -------------------------------------------- */

/* "auto", "generic", "avx2", "avx512", "neon" (NULL for other values). */
const char *still__isa_name(int isa);
/* STILL_ISA_* for a name as above (case-sensitive), -1 if unknown. */
int still__isa_parse(const char *name);
/* The best ISA this CPU runs (detected once). */
int still__isa_detect(void);
/* 1 when this build has the ISA's kernels and the CPU runs them. */
int still__isa_supported(int isa);
/* The kernel table of a call: `isa` (cfg->isa) when not STILL_ISA_AUTO,
 * else the STILL_ISA environment variable when set, else the detected ISA.
 * STILL_E_ISA for an unknown name or an ISA this build/CPU cannot run
 * (never a silent fallback). */
int still__kernels_select(int isa, const still__kernels **out);

/* ---- the per-call context --------------------------------------------------- */

/* One feature map (SPEC §2) in float, for every query head. */
typedef struct still__fast_map {
    int64_t f;      /* rows of W */
    float *WT;      /* [Hq][d][f]: W transposed (B of a gemm), NULL = identity */
    float *b;       /* [Hq][f] or NULL */
    float *uhat;    /* [Hq][d]: u / max(||u||, 1e-6), or NULL */
} still__fast_map;

/* Read-only during appends: shared by every unit and thread. */
typedef struct still__fast_ctx {
    still__resolved r;           /* the configuration (r.shape.seq_len: see max_len) */
    const still__kernels *kern;
    int64_t nh;                  /* query heads per unit: group (per-kv) or 1 */
    int64_t max_len;             /* longest sequence a unit will see (sizes buffers) */
    int64_t Ls;                  /* max(L, 1): chunk c splits chunk c - Ls */
    int64_t hist_cap;            /* rows of a unit's raw history */
    int64_t win_rows;            /* rows of the saliency logits of one segment */
    int sigma_for_state;         /* sigma is needed to select or evict */
    still__fast_map fq, fk;      /* fk shares fq's arrays when tied */
    float *omega;                /* [Hq] = sigmoid(window_w), or NULL (1) */
} still__fast_ctx;

/* Converts the parameters (NULL = defaults) to float.  max_len bounds the
 * positions a unit will reach (prefill: N; a streaming state: INT64_MAX),
 * which only bounds the history size (min(w, max_len)). */
int still__fast_ctx_init(still__fast_ctx *ctx, const still__resolved *r,
                         const still_params *params, const still__kernels *kern,
                         int64_t max_len);
void still__fast_ctx_free(still__fast_ctx *ctx);

/* ---- the unit state -------------------------------------------------------- */
/*
 * At position P (tokens appended so far) a unit holds:
 *   cache   the selected tokens of split chunks, minus evictions, in
 *           position order: cache_k [cache_n][d], cache_v [cache_n][dv],
 *           cache_pos, cache_sigma (the ranking sigma: the group mean with
 *           per-kv selection);
 *   history rows for positions hist_first .. P-1 (hist_n = P - hist_first):
 *           hist_k [.][d], hist_v [.][dv], hist_sigma [.] (ranking sigma),
 *           hist_phik [nh][hist_cap][m] (phi_k of every head, derived).
 *           The raw tokens (not yet split, or inside the window of routing
 *           `window`) are positions raw_first .. P-1, a suffix of the
 *           history; the history also keeps the last w keys, the saliency
 *           window of the next token (their v and sigma are not needed);
 *   S, z    [nh][m][dv], [nh][m]: the linear state of each query head,
 *           holding `folded` tokens.
 * Every token < P is in exactly one of cache, raw, folded.  Chunk c's
 * split happens when position c*C arrives (split_chunks counts the chunks
 * c >= 1 whose arrival was handled).
 * To restore a saved unit: still__fast_unit_reserve() for the cache, write
 * the cache, the history rows (hist_first = P - rows), raw_first, pos,
 * split_chunks, folded, S and z, then still__fast_unit_refresh().
 * (A writer of cache_k other than the driver resets cache_kp_n to 0.)
 */
typedef struct still__fast_unit {
    int64_t b, hq0, hk;          /* batch, first query head, kv head */
    int64_t pos;                 /* P */
    int64_t raw_first;           /* first raw (unsplit / unfolded) position */
    int64_t split_chunks;        /* chunk arrivals handled (see above) */
    int64_t folded;              /* tokens in S, z */
    int64_t cache_n, cache_cap;
    float *cache_k, *cache_v;
    double *cache_sigma;
    int64_t *cache_pos;
    uint8_t *cache_out;          /* [cache_cap]: eviction marks (scratch of evict) */
    int64_t cache_kp_n;          /* rows of cache_k packed in panels (simd/
                                  * kernels.h gemv_panel) at cache_k + cache_cap
                                  * * d, in the same block: derived, packed
                                  * lazily by the one-query steps */
    int64_t hist_first, hist_n;
    float *hist_k, *hist_v, *hist_phik;
    float *ring_kp;              /* [STILL__RING][d]: the keys of the last
                                  * STILL__RING positions, position p in
                                  * row p % STILL__RING, packed in panels as
                                  * the cache (derived, never saved; a
                                  * state's units get it at creation, a
                                  * prefill's at a one-query step) */
    int64_t ring_pos;            /* positions < ring_pos are packed (those
                                  * of the last STILL__RING of them) */
    double *hist_sigma;
    float *S, *z;
    void *fixed;                 /* the one allocation of history, S, z */
    void *cache_block;           /* the one allocation of the cache */
} still__fast_unit;

/* The double carry of one query's online softmax across key tiles (SPEC
 * §10; the driver's exact branch and the teacher): acc = acc·al + pt and
 * l = l·al + lt, where al is the tile's rescale and pt, lt its float
 * partial sums from zero.  al == 1 skips the product (the same bits). */
static inline void still__fast_carry(double *acc, double *l, const float *pt, float lt,
                                     double al, int64_t dv)
{
    if (al != 1.0) {
#pragma omp simd
        for (int64_t e = 0; e < dv; e++)
            acc[e] = acc[e] * al + pt[e];
    } else {
#pragma omp simd
        for (int64_t e = 0; e < dv; e++)
            acc[e] += pt[e];
    }
    *l = *l * al + lt;
}

/* Rows of a unit's ring of packed keys: the one-query band of raw keys
 * (at most KEY_TILE = 256 rows, lib/driver.c) from its panel start. */
#define STILL__RING 272

/* Allocates u's ring (STILL__RING x d floats, zero) if it has none: a
 * state's units get it at creation, so that still_state_bytes does not
 * grow at the first one-token append; a prefill's units on demand. */
int still__fast_unit_ring(const still__fast_ctx *ctx, still__fast_unit *u);

/* An empty unit (S = z = 0) for batch b, query heads hq0 .. hq0+nh-1. */
int still__fast_unit_init(const still__fast_ctx *ctx, int64_t b, int64_t hq0,
                          still__fast_unit *u);
void still__fast_unit_free(still__fast_unit *u);
/* Makes room for `need` cached tokens (keeps the content). */
int still__fast_unit_reserve(const still__fast_ctx *ctx, still__fast_unit *u, int64_t need);
/* Bytes the unit owns. */
size_t still__fast_unit_bytes(const still__fast_ctx *ctx, const still__fast_unit *u);

/* Per-thread scratch of the appends (no state in it between calls). */
typedef struct still__fast_scratch {
    float *qst, *tile, *win, *acc, *lin, *phiq, *phiqt, *xh, *zf;
    float *mrow, *lrow, *alpha, *den, *sig;
    float *ek, *ev, *ephi;
    double *dacc, *dl; /* [C][dv], [C]: the exact branch's sums carried
                          across key tiles (lib/driver.c, SPEC §10) */
    uint8_t *sel;   /* [C]: the selection of the chunk being split */
    int overflow;   /* set by an append when an intermediate is not finite
                       in float (SPEC §10): the append then reports
                       STILL_E_NONFINITE */
    void *block;
} still__fast_scratch;

int still__fast_scratch_init(const still__fast_ctx *ctx, still__fast_scratch *ws);
void still__fast_scratch_free(still__fast_scratch *ws);

/* Recomputes the derived arrays (phi_k of the history rows) after a restore. */
void still__fast_unit_refresh(const still__fast_ctx *ctx, still__fast_unit *u,
                              still__fast_scratch *ws);

/* One block of n tokens of one unit.  Row r of query head i of the unit is
 * q + i*q_hs + r*q_ns (the same for gate and o); k and v rows are
 * k + r*k_ns, v + r*v_ns.  gate NULL = all ones; o NULL = advance the state
 * without outputs.  sigma (optional) receives the tokens' sigma, head i at
 * sigma + i*sigma_hs + r (the group mean with per-kv selection, SPEC §5).
 * forced (optional, prefill only) is a forced selection indexed by absolute
 * position (SPEC §5: exactly k ones in each complete chunk). */
typedef struct still__fast_block {
    int64_t n;
    const float *q;
    int64_t q_hs, q_ns;
    const float *k, *v;
    int64_t k_ns, v_ns;
    const float *gate;
    int64_t g_hs, g_ns;
    float *o;
    int64_t o_hs, o_ns;
    double *sigma;
    int64_t sigma_hs;
    const uint8_t *forced;
} still__fast_block;

/* Appends a block (SPEC §4-6).  The inputs must have been validated
 * (still__check_tensors).  Only the cache can need memory: it is reserved
 * first, so on STILL_E_NOMEM the unit is unchanged.  STILL_E_NONFINITE:
 * the block was appended, but an intermediate that a later max, floor or
 * exp(-inf) = 0 would have made look valid was not finite in float (a
 * logit, a feature map's z or zhat, a denominator): the outputs and the
 * unit's later results are not to be trusted (SPEC §10). */
int still__fast_unit_append(const still__fast_ctx *ctx, still__fast_unit *u,
                            still__fast_scratch *ws, const still__fast_block *blk);

/* SPEC §5: sel[j] = 1 for the k of the C ranking scores sigma [C] that rank
 * first (larger sigma; ties to the smaller position), 0 for the others. */
void still__fast_topk(const double *sigma, int64_t C, int64_t k, uint8_t *sel);

/* ---- threads ---------------------------------------------------------------- */

/* The team of a parallel region over `units` work units (lib/threads.c):
 * cfg->threads, or OpenMP's default when 0, bounded by the units,
 * STILL_THREADS_MAX and what the environment lets the runtime start; 1
 * means "run on the calling thread" (the region's if clause). */
int still__fast_threads(int threads, int64_t units);

/* ---- the fast teacher (lib/fast_teacher.c) --------------------------------- */

/* SPEC §1 for every (batch, query head), flash-style: query blocks against
 * key tiles with an online softmax, no N x N matrix.  Inputs validated;
 * threads is cfg->threads (still__fast_threads bounds it). */
int still__fast_teacher_run(const still__resolved *r, const still__kernels *kern, int threads,
                            const float *q, const float *k, const float *v, float *o);

/* SPEC §16: still_forward of mixer liger (lib/fast_liger.c): the window
 * branch by the window engine, the gated linear branch per (batch, kv
 * head) unit.  cfg is not NULL.  The parameters are not used. */
int still__fast_forward_liger(const still_config *cfg, const still_shape *shape,
                              const still_tensors *t);
/* Its pieces, shared with the fast state (lib/state_fast_liger.c):
 * φ(x) [d] = softmax(x); S [d][dv] = diag(e^{g_t}) S + φ(k_lin,t) v_t^T;
 * gla [dv] = S^T φ(q_lin,t).  phi [d] is scratch. */
void still__fast_liger_map(int64_t d, const float *x, float *phi);
void still__fast_liger_update(int64_t d, int64_t dv, const float *k_lin_t, const float *v_t,
                              float *phi, float *S);
void still__fast_liger_read(int64_t d, int64_t dv, const float *S, const float *q_lin_t,
                            float *phi, float *gla);

#endif /* STILL_FAST_H */
