/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* config.c -- defaults (SPEC §5-6) and the resolved configuration. */
#include "internal.h"

#include <math.h>

void still_config_default(still_config *cfg)
{
    if (!cfg)
        return;
    cfg->chunk = 64;
    cfg->topk = 4;
    cfg->window = 0;
    cfg->local = 2;
    cfg->max_sel = 0;
    cfg->routing = STILL_ROUTING_SALIENCY;
    cfg->rest = STILL_REST_LINEAR;
    cfg->sinks = 4;
    cfg->act = STILL_ACT_HEDGEHOG;
    cfg->npmap = 1;
    cfg->select_per_kv = 0;
    cfg->scale = 0.0;
    cfg->eps_den = 1e-6;
    cfg->saliency = STILL_SALIENCY_SPEC;
    cfg->phantom_sink = 0;
    cfg->authors_decode = 0;
    cfg->isa = STILL_ISA_AUTO;
    cfg->threads = 0;
    cfg->query_begin = cfg->query_end = 0;
    cfg->progress = NULL;
    cfg->progress_user = NULL;
    cfg->budget = 0;
    for (int l = 0; l < STILL_LTE_LAYERS_MAX; l++)
        cfg->lte_dilation[l] = 0; /* 2 */
    cfg->mixer = STILL_MIXER_STILL;
    cfg->alpha = cfg->beta = 0.5; /* SPEC §16 */
    cfg->nsa_block = 64; /* SPEC §17 */
    cfg->nsa_topk = 16;
}

void still_params_default(still_params *params)
{
    if (!params)
        return;
    params->fq.f = 0;
    params->fq.W = params->fq.b = params->fq.u = NULL;
    params->fk = params->fq;
    params->fk_tied = 1;
    params->window_w = NULL;
    params->lte = NULL;
}

static int shape_ok(const still_shape *s)
{
    if (s->batch < 1 || s->heads_q < 1 || s->heads_kv < 1 || s->seq_len < 1 ||
        s->dim_qk < 1 || s->dim_v < 1)
        return STILL_E_SHAPE;
    if (s->heads_q % s->heads_kv != 0)
        return STILL_E_SHAPE;
    if (s->layout != STILL_LAYOUT_BHND && s->layout != STILL_LAYOUT_BNHD)
        return STILL_E_SHAPE;
    /* every array must be addressable: B*H*N*D elements, in bytes */
    size_t n;
    int64_t H = s->heads_q > s->heads_kv ? s->heads_q : s->heads_kv;
    int64_t D = s->dim_qk > s->dim_v ? s->dim_qk : s->dim_v;
    if (still__mul3_size((size_t)s->batch, (size_t)H, (size_t)s->seq_len, &n) ||
        still__mul3_size(n, (size_t)D, sizeof(double), &n) || n > (size_t)INT64_MAX)
        return STILL_E_OVERFLOW;
    return STILL_OK;
}

/* Rows of W of one map; SPEC §2: no W means the identity (f = d). */
static int map_rows(const still_feature_map *fm, int64_t d, int64_t *f)
{
    if (!fm->W) {
        if (fm->f != 0 && fm->f != d)
            return STILL_E_PARAMS;
        if (fm->b && fm->f == 0)
            return STILL_E_PARAMS; /* a bias needs its length said */
        *f = d;
        return STILL_OK;
    }
    if (fm->f < 1 || fm->f > (int64_t)1 << 24)
        return STILL_E_PARAMS;
    *f = fm->f;
    return STILL_OK;
}

static int cfg_ok(const still_config *c)
{
    if (c->chunk < 1 || c->local < 0 || c->max_sel < 0 || c->window < 0)
        return STILL_E_CONFIG;
    if (c->window == 1)
        return STILL_E_CONFIG; /* SPEC §4: w >= 2 */
    if (!still__routing_of(c->routing) || c->sinks < 0 || c->budget < 0)
        return STILL_E_CONFIG;
    for (int l = 0; l < STILL_LTE_LAYERS_MAX; l++)
        if (c->lte_dilation[l] < 0)
            return STILL_E_CONFIG;
    if ((c->mixer != STILL_MIXER_STILL && c->mixer != STILL_MIXER_LIGER) ||
        !isfinite(c->alpha) || !isfinite(c->beta))
        return STILL_E_CONFIG;
    if (c->rest != STILL_REST_LINEAR && c->rest != STILL_REST_DROP)
        return STILL_E_CONFIG;
    if (c->act < STILL_ACT_HEDGEHOG || c->act > STILL_ACT_RELU)
        return STILL_E_CONFIG;
    if ((c->npmap != 0 && c->npmap != 1) || (c->select_per_kv != 0 && c->select_per_kv != 1) ||
        (c->phantom_sink != 0 && c->phantom_sink != 1))
        return STILL_E_CONFIG;
    if (c->saliency != STILL_SALIENCY_SPEC && c->saliency != STILL_SALIENCY_AUTHORS)
        return STILL_E_CONFIG;
    if (c->authors_decode != 0 && c->authors_decode != 1)
        return STILL_E_CONFIG;
    if (!isfinite(c->scale) || !isfinite(c->eps_den) || c->eps_den < 0.0)
        return STILL_E_CONFIG;
    /* an absurd team size kills the process inside the OpenMP runtime
       (libgomp: SIGSEGV at 100000 threads, exit at 2e9): refuse it; the
       environment's default is bounded instead (lib/threads.c) */
    if (c->isa < STILL_ISA_AUTO || c->isa > STILL_ISA_NEON || c->threads < 0 ||
        c->threads > STILL_THREADS_MAX)
        return STILL_E_CONFIG;
    return STILL_OK;
}

int still__resolve(const still_config *cfg, const still_shape *shape,
                   const still_params *params, still__resolved *r)
{
    still_config def;
    still_params pdef;
    int rc;

    if (!shape || !r)
        return STILL_E_NULL;
    if (!cfg) {
        still_config_default(&def);
        cfg = &def;
    }
    if (!params) {
        still_params_default(&pdef);
        params = &pdef;
    }
    if ((rc = shape_ok(shape)) || (rc = cfg_ok(cfg)))
        return rc;

    r->shape = *shape;
    r->C = cfg->chunk;
    r->L = cfg->local;
    r->max_sel = cfg->max_sel;
    r->routing = cfg->routing;
    r->act = cfg->act;
    r->npmap = cfg->npmap;
    r->per_kv = cfg->select_per_kv;
    r->saliency = cfg->saliency;
    r->phantom_sink = cfg->phantom_sink;
    r->rest = cfg->rest;
    r->eps_den = cfg->eps_den;
    r->mixer = cfg->mixer;
    r->budget = cfg->budget;
    r->alpha = cfg->alpha;
    r->beta = cfg->beta;
    r->nsa_block = cfg->nsa_block;
    r->nsa_topk = cfg->nsa_topk;
    r->w = cfg->window ? cfg->window : (cfg->chunk >= 2 ? cfg->chunk : 2);
    r->sinks = 0;
    r->engine = still__routing_of(cfg->routing)->engine;
    if ((rc = still__routing_of(cfg->routing)->resolve(cfg, r)))
        return rc;
    /* SPEC App. A.1: the authors' window is the chunk (l = C = w) */
    if (cfg->saliency == STILL_SALIENCY_AUTHORS && r->w != r->C)
        return STILL_E_CONFIG;
    /* SPEC App. A.3 is defined for the settings of --compat authors only */
    r->authors_decode = cfg->authors_decode;
    if (cfg->authors_decode &&
        (cfg->saliency != STILL_SALIENCY_AUTHORS || !cfg->phantom_sink || r->L != 2 ||
         cfg->routing != STILL_ROUTING_SALIENCY || r->max_sel != 0 || r->per_kv ||
         r->rest != STILL_REST_LINEAR || r->mixer != STILL_MIXER_STILL))
        return STILL_E_UNSUPPORTED;
    r->scale = cfg->scale != 0.0 ? cfg->scale : 1.0 / sqrt((double)shape->dim_qk);
    r->group = shape->heads_q / shape->heads_kv;
    r->nchunks = shape->seq_len / r->C + (shape->seq_len % r->C != 0); /* C may be INT64_MAX */
    r->Ls = r->L > 0 ? r->L : 1;
    r->raw_cap = r->engine == STILL__ENGINE_WINDOW ? r->w : still__sat_mul(r->Ls, r->C);
    r->keys_cap = still__sat_mul(2, r->w);
    /* k is unchecked (and unused) with routing `window`: it may be < 0 */
    r->cache_cap = r->max_sel > 0 ? still__sat_add(r->max_sel, r->k > 0 ? r->k : 0) : INT64_MAX;
    if (r->engine == STILL__ENGINE_WINDOW) /* the sinks that left the window (SPEC §13) */
        r->cache_cap = r->sinks;

    if ((rc = map_rows(&params->fq, shape->dim_qk, &r->f_q)))
        return rc;
    if (params->fk_tied)
        r->f_k = r->f_q;
    else if ((rc = map_rows(&params->fk, shape->dim_qk, &r->f_k)))
        return rc;
    if (r->f_k != r->f_q)
        return STILL_E_PARAMS; /* kappa needs one feature dimension */
    r->m = cfg->act == STILL_ACT_HEDGEHOG ? 2 * r->f_q : r->f_q;
    return STILL_OK;
}

int still_config_validate(const still_config *cfg, const still_shape *shape)
{
    still__resolved r;
    if (!cfg || !shape)
        return STILL_E_NULL;
    return still__resolve(cfg, shape, NULL, &r);
}

int still_feature_dim(const still_config *cfg, const still_params *params, int64_t dim_qk,
                      int64_t *m)
{
    still_shape s = {1, 1, 1, 1, dim_qk, 1, STILL_LAYOUT_BHND};
    still__resolved r;
    int rc;
    if (!m)
        return STILL_E_NULL;
    if ((rc = still__resolve(cfg, &s, params, &r)))
        return rc;
    *m = r.m;
    return STILL_OK;
}

still__strides still__strides_of(int layout, int64_t H, int64_t N, int64_t D)
{
    still__strides s;
    if (layout == STILL_LAYOUT_BNHD) {
        s.h = D;
        s.n = H * D;
        s.b = N * H * D;
    } else {
        s.n = D;
        s.h = N * D;
        s.b = H * N * D;
    }
    return s;
}

int still__mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

int still__mul3_size(size_t a, size_t b, size_t c, size_t *out)
{
    size_t ab;
    if (still__mul_size(a, b, &ab))
        return -1;
    return still__mul_size(ab, c, out);
}

int still__query_range(const still_config *cfg, int64_t N, int64_t *begin, int64_t *end)
{
    if (!cfg || (cfg->query_begin == 0 && cfg->query_end == 0)) {
        *begin = 0;
        *end = N;
        return STILL_OK;
    }
    if (cfg->query_begin < 0 || cfg->query_end <= cfg->query_begin || cfg->query_end > N)
        return STILL_E_CONFIG;
    *begin = cfg->query_begin;
    *end = cfg->query_end;
    return STILL_OK;
}

int still__no_query_range(const still_config *cfg)
{
    if (cfg && (cfg->query_begin != 0 || cfg->query_end != 0))
        return STILL_E_UNSUPPORTED;
    /* SPEC §15-17: routings lte and nsa and mixer liger exist on the ref
       forward only */
    return cfg && (cfg->routing == STILL_ROUTING_LTE || cfg->routing == STILL_ROUTING_NSA ||
                   cfg->mixer == STILL_MIXER_LIGER)
               ? STILL_E_UNSUPPORTED
               : STILL_OK;
}
