/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* routing.c -- the table of routings (SPEC §6): the engine each one runs on
 * and the resolution of its fields.  A new routing is an entry here and its
 * exact set in ref/route_<name>.c. */
#include "internal.h"

/* SPEC §5-6 saliency (STILL): the top-k of each complete chunk by sigma. */
static int resolve_saliency(const still_config *cfg, still__resolved *r)
{
    if (cfg->topk < 0 || cfg->topk > cfg->chunk)
        return STILL_E_CONFIG;
    r->k = cfg->topk;
    return STILL_OK;
}

/* SPEC §6 all: every token of a split chunk is cached (k = C). */
static int resolve_all(const still_config *cfg, still__resolved *r)
{
    r->k = cfg->chunk;
    return STILL_OK;
}

/* SPEC §6 none: nothing is cached (k = 0). */
static int resolve_none(const still_config *cfg, still__resolved *r)
{
    (void)cfg;
    r->k = 0;
    return STILL_OK;
}

/* SPEC §6 window (LoLCATs): the last w positions; k is not used (and not
 * checked: it may be < 0). */
static int resolve_window(const still_config *cfg, still__resolved *r)
{
    r->k = cfg->topk;
    return STILL_OK;
}

/* SPEC §13 sinks: the window engine with s sinks kept exact. */
static int resolve_sinks(const still_config *cfg, still__resolved *r)
{
    if (cfg->phantom_sink)
        return STILL_E_CONFIG; /* App. A.2 belongs to the authors' STILL */
    r->k = 0;
    r->sinks = cfg->sinks;
    return STILL_OK;
}

/* SPEC §14 terraced: the chunk engine with blocks C = w, nothing selected,
 * the current and the previous block exact (L = 2). */
static int resolve_terraced(const still_config *cfg, still__resolved *r)
{
    if (cfg->phantom_sink)
        return STILL_E_CONFIG;
    r->C = r->w;
    r->L = 2;
    r->k = 0;
    return STILL_OK;
}

/* SPEC §15 lte: s sinks, the window of w + 1 and b retained tokens per kv
 * head, chosen by the retention scores (ref/lte_cache.c); the reference
 * path only (lib/ref_family_api.c): no engine of the fast path runs it. */
static int resolve_lte(const still_config *cfg, still__resolved *r)
{
    if (cfg->phantom_sink)
        return STILL_E_CONFIG;
    r->k = 0;
    r->sinks = cfg->sinks;
    return STILL_OK;
}

/* SPEC §17 nsa: blocks of BS, S >= 3 selected (the forced ones), the
 * sliding branch of w (default 512); the reference path only
 * (lib/ref_nsa_api.c, ref/nsa_*.c): no engine of the fast path runs it. */
static int resolve_nsa(const still_config *cfg, still__resolved *r)
{
    if (cfg->phantom_sink || cfg->saliency != STILL_SALIENCY_SPEC ||
        cfg->mixer != STILL_MIXER_STILL)
        return STILL_E_CONFIG; /* App. A and the liger mixer have no nsa */
    if (cfg->nsa_block < 1 || cfg->nsa_topk < 3)
        return STILL_E_CONFIG;
    r->k = 0;
    if (!cfg->window)
        r->w = 512;
    return STILL_OK;
}

static const still__routing routings[] = {
    [STILL_ROUTING_SALIENCY] = {"saliency", STILL__ENGINE_CHUNKS, resolve_saliency},
    [STILL_ROUTING_WINDOW] = {"window", STILL__ENGINE_WINDOW, resolve_window},
    [STILL_ROUTING_ALL] = {"all", STILL__ENGINE_CHUNKS, resolve_all},
    [STILL_ROUTING_NONE] = {"none", STILL__ENGINE_CHUNKS, resolve_none},
    [STILL_ROUTING_SINKS] = {"sinks", STILL__ENGINE_WINDOW, resolve_sinks},
    [STILL_ROUTING_TERRACED] = {"terraced", STILL__ENGINE_CHUNKS, resolve_terraced},
    [STILL_ROUTING_LTE] = {"lte", STILL__ENGINE_WINDOW, resolve_lte},
    [STILL_ROUTING_NSA] = {"nsa", STILL__ENGINE_WINDOW, resolve_nsa},
};

const still__routing *still__routing_of(int id)
{
    if (id < 0 || (size_t)id >= sizeof routings / sizeof routings[0] || !routings[id].name)
        return NULL;
    return &routings[id];
}
