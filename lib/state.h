/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * state.h -- internals of the streaming state (SPEC §7), shared by
 * lib/state.c (the public API), lib/state_io.c (save / load), ref/state.c
 * (the double path), lib/state_fast.c (the float path) and the tests.
 *
 * A state is a set of *units*: the query heads that share one selection --
 * one query head, or with per-kv selection (SPEC §5) the query heads of one
 * kv head, which then share the cache and the raw tokens (their keys and
 * values are the same) but keep one linear state S, z each (their feature
 * maps differ).  Unit u covers batch u / (units per batch).
 *
 * Every unit holds, at position P (tokens appended so far):
 *   cache  the selected tokens of split chunks, kept (<= max_sel when
 *          capped), in position order: k, v, sigma, position;
 *   raw    the tokens P-raw_n .. P-1 not yet split (the last L chunks, the
 *          current one partial; the last w tokens for routing `window`):
 *          k, v, sigma;
 *   keys   the last min(P, w) keys, the saliency window of the next token
 *          (SPEC §4);
 *   S, z   the linear state of every query head of the unit (SPEC §3);
 *   folded the count of tokens in S, z.
 * Every token < P is in exactly one of cache, raw, folded.
 */
#ifndef STILL_STATE_H
#define STILL_STATE_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>

/* The element kinds of a serialized array. */
enum { STILL__SPAN_F64 = 0, STILL__SPAN_F32 = 1, STILL__SPAN_I64 = 2 };

/* One array of a unit, as written to a stream. */
typedef struct still__span {
    void *p;
    int64_t count;
    int kind;
    int inf_ok; /* +inf is a valid value (sigma, SPEC §4); NaN never is */
} still__span;

#define STILL__MAX_SPANS 12

/* The counts that size a unit's arrays (serialized before them).  keys_n
 * counts the keys of the saliency window (the last min(P, w)) that are NOT
 * raw tokens: the stream holds every row once. */
typedef struct still__unit_counts {
    int64_t cache_n, raw_n, keys_n, folded;
} still__unit_counts;

/* What a test can see of one query head's branches. */
typedef struct still__census {
    int64_t cached;    /* tokens in the selected cache */
    int64_t raw;       /* raw tokens: positions raw_first .. raw_first+raw-1 */
    int64_t raw_exact; /* raw tokens in the exact set of the next query
                          (all of them, except L = 0's linear current chunk) */
    int64_t folded;    /* tokens folded into S, z */
    int64_t raw_first;
} still__census;

typedef struct still__state_ops {
    /* allocates the units, all empty; on failure frees what it allocated */
    int (*init)(still_state *st);
    void (*fini)(still_state *st); /* frees the units (init done or not) */
    /* SPEC §7: tokens position..position+n-1, validated already */
    int (*append)(still_state *st, int64_t n, const still_tensors *t);
    size_t (*bytes)(const still_state *st);
    void (*get_counts)(const still_state *st, int64_t unit, still__unit_counts *c);
    /* sets the counts of an empty unit and makes room for them (load) */
    int (*set_counts)(still_state *st, int64_t unit, const still__unit_counts *c);
    /* the unit's arrays in stream order; returns their number */
    int (*spans)(still_state *st, int64_t unit, still__span *sp);
    /* after the spans of a unit were read: rebuilds what is derived */
    int (*finish_load)(still_state *st, int64_t unit);
    /* raw tokens a unit holds at position P (the paths fold routing
     * `window`'s old keys at different times: per token / per chunk) */
    int64_t (*raw_count)(const still_state *st, int64_t P);
    /* the census of query head hq of batch b; cache_pos [cached] or NULL */
    void (*census)(const still_state *st, int64_t b, int64_t hq, still__census *c,
                   int64_t *cache_pos);
} still__state_ops;

struct still_state {
    int path;              /* STILL_PATH_* */
    still_config cfg;      /* as given (defaults filled) */
    still__resolved r;     /* r.shape.seq_len = 1: a state has no length */
    still_params params;   /* a deep copy (pointers into param_store) */
    double *param_store;
    size_t param_bytes;
    uint64_t params_fp;    /* still__params_fingerprint() */
    int64_t position;      /* tokens appended so far */
    int64_t prompt;        /* the length of the first block (App. A.3) */
    int64_t units;         /* batch * (heads_q, or heads_kv with per-kv) */
    int64_t unit_heads;    /* query heads per unit: 1, or group */
    const still__state_ops *ops;
    void *impl;            /* the path's units */
};

extern const still__state_ops still__ref_state_ops;
extern const still__state_ops still__fast_state_ops;
/* SPEC §16: mixer liger's units (ref/liger_state.c): one per (batch, kv
 * head), the last min(P, w) raw keys and values and S [d][dv] */
extern const still__state_ops still__ref_liger_state_ops;
extern const still__state_ops still__fast_liger_state_ops; /* lib/state_fast_liger.c */

/* 1 when a unit is a kv head's (per-kv selection, SPEC §5; mixer liger,
 * whose state is the kv head's, SPEC §16), 0 when a query head's. */
static inline int still__state_kv_units(const still__resolved *r)
{
    return r->per_kv || r->mixer == STILL_MIXER_LIGER;
}

/* Raw tokens of the saliency routings at position P (SPEC §5-6: chunks
 * c' <= c-L are split when query c·C arrives; L = 0 keeps the current chunk
 * raw, linear), the same on both paths. */
int64_t still__state_split_raw_count(const still_state *st, int64_t P);

/* SPEC §5 (§13 for the window engine: at most n + C sinks leave the raw
 * tokens, never more than the s sinks): the cache entries a unit may hold after n more tokens, when it
 * holds cache_n entries and raw raw tokens now: k for each chunk split, at
 * most n/C + 1 and (raw + n)/C splits (a split takes a complete raw chunk),
 * never more than the resolution's cache_cap (once the cache holds more, it
 * stays at cache_n) nor than `seen`, the tokens of the stream after the n
 * (the entries are distinct positions).  Saturated: INT64_MAX when it does
 * not fit, which the reservation refuses (STILL_E_OVERFLOW).  The same on
 * both paths. */
int64_t still__state_cache_need(const still__resolved *r, int64_t cache_n, int64_t raw,
                                int64_t n, int64_t seen);

/* FNV-1a, 64 bits, continued from h (start with STILL__FNV_INIT). */
#define STILL__FNV_INIT 0xcbf29ce484222325ULL
uint64_t still__fnv1a64(uint64_t h, const void *data, size_t len);

/* A fingerprint of the parameters in effect for r (values and presence). */
uint64_t still__params_fingerprint(const still__resolved *r, const still_params *params);

/* Builds a state without any token: shared by create and load. */
int still__state_new(const still_config *cfg, const still_shape *shape,
                     const still_params *params, int path, still_state **out);

/* Test accessor: the census of query head hq of batch b (SPEC §5: every
 * token in exactly one branch).  cache_pos [cached] or NULL. */
int still__state_census(const still_state *st, int64_t b, int64_t hq, still__census *c,
                        int64_t *cache_pos);

#endif /* STILL_STATE_H */
