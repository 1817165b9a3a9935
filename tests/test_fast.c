/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
#define _POSIX_C_SOURCE 200809L /* setenv */
/* test_fast.c -- the fast path (still_forward) against the oracle
 * (still_ref_forward), on every ISA this CPU runs, over a grid of
 * configurations (SPEC §10 tolerance and selection rule); SPEC I7 (thread
 * count, repeatability); block independence of the unit state (the
 * streaming contract of SPEC I6); ISA dispatch and its errors. */
#include "fast.h"
#include "testutil.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- running the fast path on a case ------------------------------------------ */

typedef struct fast_out {
    float *o;          /* [B,Hq,N,dv] in the case's layout, as returned */
    double *o_bhnd;    /* BHND double */
    double *sigma;     /* [B][Hq][N] */
    uint8_t *sel;      /* [B][Hq][N] */
} fast_out;

static int64_t n_o(const tu_case *c)
{
    const still_shape *s = &c->shape;
    return s->batch * s->heads_q * s->seq_len * s->dim_v;
}

static int64_t n_rows(const tu_case *c)
{
    return c->shape.batch * c->shape.heads_q * c->shape.seq_len;
}

static void fast_out_alloc(const tu_case *c, fast_out *f)
{
    f->o = tu_alloc((size_t)n_o(c) * sizeof(float));
    f->o_bhnd = tu_dalloc(n_o(c));
    f->sigma = tu_dalloc(n_rows(c));
    f->sel = tu_alloc((size_t)n_rows(c));
}

static void fast_out_free(fast_out *f)
{
    free(f->o);
    free(f->o_bhnd);
    free(f->sigma);
    free(f->sel);
}

/* still_forward on the case (float32 in the case's layout) with cfg.isa
 * and cfg.threads set; sel_in overrides c->selection_in when not NULL. */
static int run_fast(const tu_case *c, int isa, int threads, const uint8_t *sel_in, fast_out *f)
{
    const still_shape *s = &c->shape;
    const int64_t B = s->batch, Hq = s->heads_q, Hk = s->heads_kv, N = s->seq_len;
    const int64_t d = s->dim_qk, dv = s->dim_v;
    float *q = tu_alloc((size_t)(B * Hq * N * d) * sizeof(float));
    float *k = tu_alloc((size_t)(B * Hk * N * d) * sizeof(float));
    float *v = tu_alloc((size_t)(B * Hk * N * dv) * sizeof(float));
    float *g = c->gate ? tu_alloc((size_t)(B * Hq * N * dv) * sizeof(float)) : NULL;
    still_config cfg = c->cfg;
    still_tensors t;

    tu_to_layout(c->q, B, Hq, N, d, s->layout, STILL_F32, q);
    tu_to_layout(c->k, B, Hk, N, d, s->layout, STILL_F32, k);
    tu_to_layout(c->v, B, Hk, N, dv, s->layout, STILL_F32, v);
    if (g)
        tu_to_layout(c->gate, B, Hq, N, dv, s->layout, STILL_F32, g);
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F32;
    t.q = q, t.k = k, t.v = v, t.gate = g, t.o = f->o;
    t.sigma = f->sigma;
    t.selected = f->sel;
    t.selection_in = sel_in ? sel_in : c->selection_in;
    cfg.isa = isa;
    cfg.threads = threads;
    int rc = still_forward(&cfg, s, c->use_params ? &c->params : NULL, &t);
    if (rc == STILL_OK)
        tu_from_layout(f->o, B, Hq, N, dv, s->layout, STILL_F32, f->o_bhnd);
    free(q);
    free(k);
    free(v);
    free(g);
    return rc;
}

/* The ISAs of the table that this build and CPU run. */
static int isa_list(int *isas)
{
    int n = 0;
    for (int isa = STILL_ISA_GENERIC; isa <= STILL_ISA_NEON; isa++)
        if (still__isa_supported(isa))
            isas[n++] = isa;
    return n;
}

/* ---- the configuration grid ------------------------------------------------------ */

typedef struct grid_case {
    const char *name;
    int64_t B, Hq, Hk, N, d, dv;
    int64_t C, k, w, L, cap;
    int routing, act, npmap, per_kv, layout, gate, saliency, phantom;
    int64_t f;      /* 0: default params; else random W [f][d] */
    int bias_u;     /* with b and u */
    int untied;     /* separate fk */
    int omega;      /* window_w */
    double eps_den; /* < 0: default */
    double scale;   /* 0: default */
} grid_case;

#define SAL STILL_ROUTING_SALIENCY
#define WIN STILL_ROUTING_WINDOW
#define ALL STILL_ROUTING_ALL
#define NONE STILL_ROUTING_NONE
#define HH STILL_ACT_HEDGEHOG
#define BHND STILL_LAYOUT_BHND
#define BNHD STILL_LAYOUT_BNHD

/* name, B Hq Hk N d dv, C k w L cap, routing act npmap per_kv layout gate
 * saliency phantom, f bias_u untied omega eps_den scale */
static const grid_case grid[] = {
    {"default L=2", 1, 2, 2, 100, 16, 8, 16, 2, 0, 2, 0, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"L=0", 1, 2, 2, 100, 16, 8, 16, 2, 0, 0, 0, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"L=1", 1, 2, 2, 100, 16, 8, 16, 3, 0, 1, 0, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"L=3", 1, 2, 2, 100, 16, 8, 16, 2, 0, 3, 0, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"routing window", 1, 2, 2, 100, 16, 8, 16, 2, 12, 2, 0, WIN, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"window w>=N, eps 0", 1, 2, 1, 60, 16, 8, 16, 2, 64, 2, 0, WIN, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, 0.0, 0},
    {"routing all", 1, 2, 2, 100, 16, 8, 16, 2, 0, 1, 0, ALL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"routing none", 1, 2, 2, 100, 16, 8, 16, 2, 0, 2, 0, NONE, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"pure linear k=0 L=0", 1, 2, 2, 100, 16, 8, 16, 0, 0, 0, 0, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"cap 5", 1, 2, 2, 120, 16, 8, 16, 3, 0, 2, 5, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"cap 3 L=0", 1, 2, 2, 120, 16, 8, 16, 2, 0, 0, 3, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"cap 20 routing all", 1, 2, 2, 90, 16, 8, 8, 2, 0, 1, 20, ALL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"act softmax", 1, 2, 2, 100, 16, 8, 16, 2, 0, 2, 0, SAL, STILL_ACT_SOFTMAX, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"act elu1 L=0", 1, 2, 2, 100, 16, 8, 16, 2, 0, 0, 0, SAL, STILL_ACT_ELU1, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"act relu", 1, 2, 2, 100, 16, 8, 16, 2, 0, 2, 0, SAL, STILL_ACT_RELU, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"npmap off", 1, 2, 2, 100, 16, 8, 16, 2, 0, 1, 0, SAL, HH, 0, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"GQA 4/2", 1, 4, 2, 90, 16, 8, 16, 2, 0, 2, 0, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"GQA per-kv", 1, 4, 2, 90, 16, 8, 16, 2, 0, 2, 0, SAL, HH, 1, 1, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"per-kv cap L=1", 1, 4, 1, 90, 16, 8, 8, 2, 0, 1, 4, SAL, HH, 1, 1, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"BNHD GQA gate", 2, 4, 2, 70, 16, 8, 16, 2, 0, 2, 0, SAL, HH, 1, 0, BNHD, 1, 0, 0, 0, 0, 0, 0, -1, 0},
    {"BNHD window omega", 1, 2, 2, 80, 16, 8, 16, 2, 10, 2, 0, WIN, HH, 1, 0, BNHD, 1, 0, 0, 12, 0, 0, 1, -1, 0},
    {"params f=12 b u untied", 1, 2, 2, 100, 16, 8, 16, 2, 0, 2, 0, SAL, HH, 1, 0, BHND, 1, 0, 0, 12, 1, 1, 0, -1, 0},
    {"params f=24 relu L=0", 1, 2, 2, 80, 16, 8, 16, 2, 0, 0, 0, SAL, STILL_ACT_RELU, 1, 0, BHND, 0, 0, 0, 24, 1, 0, 1, -1, 0},
    {"C=7 odd dims", 1, 2, 1, 50, 13, 5, 7, 2, 0, 2, 0, SAL, HH, 1, 0, BHND, 1, 0, 0, 0, 0, 0, 0, -1, 0},
    {"w=3", 1, 2, 2, 80, 16, 8, 16, 2, 3, 2, 0, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"w=40 > C", 1, 2, 2, 80, 16, 8, 16, 2, 40, 1, 0, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"C=1 k=1 L=1", 1, 1, 1, 30, 8, 4, 1, 1, 2, 1, 0, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"authors + phantom", 1, 2, 2, 80, 16, 8, 16, 2, 16, 2, 0, SAL, HH, 1, 0, BHND, 0, STILL_SALIENCY_AUTHORS, 1, 0, 0, 0, 0, -1, 0},
    {"phantom L=0", 1, 2, 2, 60, 16, 8, 16, 2, 0, 0, 0, SAL, HH, 1, 0, BHND, 0, 0, 1, 0, 0, 0, 0, -1, 0},
    {"scale 0.4 eps 0 L=2 k=C", 1, 2, 2, 70, 16, 8, 8, 8, 0, 2, 0, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.4},
    {"d=dv=64 long tiles", 1, 1, 1, 300, 64, 64, 32, 3, 0, 2, 0, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    {"window w=300 tiles", 1, 1, 1, 300, 32, 16, 16, 2, 290, 2, 0, WIN, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
};

static void grid_case_build(const grid_case *gc, uint64_t seed, tu_case *c)
{
    tu_rng g;
    still_shape shape = {gc->B, gc->Hq, gc->Hk, gc->N, gc->d, gc->dv, gc->layout};
    tu_rng_seed(&g, seed);
    tu_case_init(c, &g, &shape, 1.0, gc->gate);
    c->dtype = STILL_F32;
    c->cfg.chunk = gc->C;
    c->cfg.topk = gc->k;
    c->cfg.window = gc->w;
    c->cfg.local = gc->L;
    c->cfg.max_sel = gc->cap;
    c->cfg.routing = gc->routing;
    c->cfg.act = gc->act;
    c->cfg.npmap = gc->npmap;
    c->cfg.select_per_kv = gc->per_kv;
    c->cfg.saliency = gc->saliency;
    c->cfg.phantom_sink = gc->phantom;
    if (gc->eps_den >= 0.0)
        c->cfg.eps_den = gc->eps_den;
    c->cfg.scale = gc->scale;
    if (gc->f)
        tu_case_random_params(c, &g, gc->f, gc->bias_u, gc->bias_u, !gc->untied, gc->omega);
    else if (gc->omega)
        tu_case_random_params(c, &g, gc->d, 0, 0, 1, 1);
    tu_case_round(c); /* the ref sees exactly the float inputs */
}

/* SPEC §10: |o_fast - o_ref| <= 1e-5 max|v|; sigma within 1e-4 (1 + |sigma|)
 * everywhere (it is float vs double); where the selections differ, the ref
 * run again with the fast selection must match too. */
static void check_against_ref(const grid_case *gc, const tu_case *c, int isa)
{
    const int64_t no = n_o(c), nr = n_rows(c);
    const double vmax = tu_max_abs(c->v, c->shape.batch * c->shape.heads_kv *
                                             c->shape.seq_len * c->shape.dim_v);
    double *o_ref = tu_dalloc(no), *sigma_ref = tu_dalloc(nr);
    uint8_t *sel_ref = tu_alloc((size_t)nr);
    fast_out f;
    char what[160];

    fast_out_alloc(c, &f);
    ck_assert_int_eq(tu_run_ref(c, o_ref, sigma_ref, sel_ref), STILL_OK);
    ck_assert_int_eq(run_fast(c, isa, 1, NULL, &f), STILL_OK);
    snprintf(what, sizeof what, "%s [%s] sigma", gc->name, still__isa_name(isa));
    for (int64_t i = 0; i < nr; i++) {
        if (isinf(sigma_ref[i]))
            ck_assert_msg(f.sigma[i] == sigma_ref[i], "%s: %lld is %g, ref +inf", what,
                          (long long)i, f.sigma[i]);
        else
            ck_assert_msg(fabs(f.sigma[i] - sigma_ref[i]) < 1e-4 * (1.0 + fabs(sigma_ref[i])),
                          "%s: %lld: %.9g vs ref %.9g", what, (long long)i, f.sigma[i],
                          sigma_ref[i]);
    }
    int differ = 0;
    for (int64_t i = 0; i < nr; i++)
        differ += f.sel[i] != sel_ref[i];
    if (differ && !c->selection_in && gc->routing != WIN) {
        /* SPEC §10: give the ref the fast selection (only legitimate where
         * the sigmas are near-ties, checked above) */
        tu_case forced = *c;
        forced.selection_in = f.sel;
        ck_assert_int_eq(tu_run_ref(&forced, o_ref, NULL, NULL), STILL_OK);
    } else {
        snprintf(what, sizeof what, "%s [%s] selection", gc->name, still__isa_name(isa));
        ck_assert_msg(!differ, "%s: %d tokens differ", what, differ);
    }
    snprintf(what, sizeof what, "%s [%s] o", gc->name, still__isa_name(isa));
    TU_ASSERT_CLOSE(f.o_bhnd, o_ref, no, 1e-5 * vmax, what);
    fast_out_free(&f);
    free(o_ref);
    free(sigma_ref);
    free(sel_ref);
}

START_TEST(test_fast_matches_ref_on_every_isa)
{
    const grid_case *gc = &grid[_i];
    int isas[8], n = isa_list(isas);
    tu_case c;
    grid_case_build(gc, 1000 + (uint64_t)_i, &c);
    for (int j = 0; j < n; j++)
        check_against_ref(gc, &c, isas[j]);
    tu_case_free(&c);
}
END_TEST

/* A forced selection (SPEC §5) is followed exactly. */
START_TEST(test_fast_forced_selection_matches_ref)
{
    const grid_case gc = {"forced", 1, 4, 2, 100, 16, 8, 16, 3, 0, 2, 6, SAL, HH, 1, 1, BHND,
                          0, 0, 0, 0, 0, 0, 0, -1, 0};
    int isas[8], n = isa_list(isas);
    tu_case c;
    tu_rng g;
    grid_case_build(&gc, 77, &c);
    const int64_t N = c.shape.seq_len, rows = n_rows(&c);
    uint8_t *sel = tu_alloc((size_t)rows);
    tu_rng_seed(&g, 78);
    for (int64_t r = 0; r < c.shape.batch * c.shape.heads_q; r += 2) /* per-kv: pairs share */
        for (int64_t c0 = 0; c0 + 16 <= N; c0 += 16)
            for (int64_t picked = 0; picked < 3;) {
                int64_t j = c0 + tu_int(&g, 0, 15);
                if (!sel[r * N + j]) {
                    sel[r * N + j] = sel[(r + 1) * N + j] = 1;
                    picked++;
                }
            }
    c.selection_in = sel;
    for (int j = 0; j < n; j++) {
        fast_out f;
        fast_out_alloc(&c, &f);
        ck_assert_int_eq(run_fast(&c, isas[j], 1, NULL, &f), STILL_OK);
        for (int64_t i = 0; i < rows; i++)
            ck_assert_int_eq(f.sel[i], i % N < N / 16 * 16 ? sel[i] : 0);
        fast_out_free(&f);
        check_against_ref(&gc, &c, isas[j]);
    }
    c.selection_in = NULL;
    free(sel);
    tu_case_free(&c);
}
END_TEST

/* SPEC §5 ties: with every q and every k the same, the sigmas of all
 * tokens past the first window are exactly equal in both paths, so the
 * top-k must take the smaller positions and the cap must evict the older
 * tokens, exactly as the ref does. */
START_TEST(test_fast_exact_ties_follow_spec)
{
    const grid_case gc[] = {
        {"ties cap", 1, 2, 2, 120, 16, 8, 16, 3, 0, 1, 5, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
        {"ties L=0 cap", 1, 2, 1, 120, 16, 8, 16, 2, 0, 0, 3, SAL, HH, 1, 1, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    };
    int isas[8], n = isa_list(isas);
    for (size_t ic = 0; ic < sizeof gc / sizeof gc[0]; ic++) {
        tu_case c;
        grid_case_build(&gc[ic], 60 + ic, &c);
        const int64_t d = c.shape.dim_qk, N = c.shape.seq_len;
        for (int64_t r = 0; r < c.shape.batch * c.shape.heads_q * N; r++)
            memcpy(c.q + r * d, c.q, (size_t)d * sizeof(double));
        for (int64_t r = 0; r < c.shape.batch * c.shape.heads_kv * N; r++)
            memcpy(c.k + r * d, c.k, (size_t)d * sizeof(double));
        uint8_t *sel_ref = tu_alloc((size_t)n_rows(&c));
        ck_assert_int_eq(tu_run_ref(&c, NULL, NULL, sel_ref), STILL_OK);
        for (int j = 0; j < n; j++) {
            fast_out f;
            fast_out_alloc(&c, &f);
            ck_assert_int_eq(run_fast(&c, isas[j], 1, NULL, &f), STILL_OK);
            ck_assert_msg(memcmp(f.sel, sel_ref, (size_t)n_rows(&c)) == 0,
                          "%s [%s]: tie broken differently", gc[ic].name, still__isa_name(isas[j]));
            fast_out_free(&f);
            check_against_ref(&gc[ic], &c, isas[j]);
        }
        free(sel_ref);
        tu_case_free(&c);
    }
}
END_TEST

/* SPEC I7: the same bits for 1, 2 and 3 threads, and again on a second call. */
START_TEST(test_fast_bitwise_across_threads_and_calls)
{
    const grid_case gc[] = {
        {"I7", 2, 4, 2, 150, 16, 8, 16, 2, 0, 2, 7, SAL, HH, 1, 0, BHND, 1, 0, 0, 0, 0, 0, 0, -1, 0},
        {"I7 per-kv L=0", 2, 4, 2, 150, 16, 8, 16, 2, 0, 0, 0, SAL, HH, 1, 1, BNHD, 0, 0, 0, 0, 0, 0, 0, -1, 0},
    };
    int isas[8], n = isa_list(isas);
    for (size_t ic = 0; ic < sizeof gc / sizeof gc[0]; ic++) {
        tu_case c;
        grid_case_build(&gc[ic], 5 + ic, &c);
        for (int j = 0; j < n; j++) {
            fast_out f1, fx;
            fast_out_alloc(&c, &f1);
            fast_out_alloc(&c, &fx);
            ck_assert_int_eq(run_fast(&c, isas[j], 1, NULL, &f1), STILL_OK);
            const int threads[] = {2, 3, 2};
            for (int r = 0; r < 3; r++) {
                ck_assert_int_eq(run_fast(&c, isas[j], threads[r], NULL, &fx), STILL_OK);
                ck_assert_msg(memcmp(f1.o, fx.o, (size_t)n_o(&c) * sizeof(float)) == 0,
                              "%s [%s]: o differs with %d threads", gc[ic].name,
                              still__isa_name(isas[j]), threads[r]);
                ck_assert(memcmp(f1.sigma, fx.sigma, (size_t)n_rows(&c) * sizeof(double)) == 0);
                ck_assert(memcmp(f1.sel, fx.sel, (size_t)n_rows(&c)) == 0);
            }
            fast_out_free(&f1);
            fast_out_free(&fx);
        }
        tu_case_free(&c);
    }
}
END_TEST

/* ---- block independence (the unit state, lib/fast.h) ------------------------------ */

/* Runs every unit of the case through still__fast_unit_append in blocks of
 * the given sizes (cycled), writing o [B,Hq,N,dv] BHND float and sigma. */
static void run_blocks(const tu_case *c, int isa, const int64_t *sizes, int nsizes, float *o,
                       double *sigma)
{
    const still_shape *s = &c->shape;
    const int64_t B = s->batch, Hq = s->heads_q, Hk = s->heads_kv, N = s->seq_len;
    const int64_t d = s->dim_qk, dv = s->dim_v;
    still_shape bhnd = *s;
    still__resolved r;
    still__fast_ctx ctx;
    still__fast_scratch ws;
    const still__kernels *kern;
    float *q = tu_alloc((size_t)(B * Hq * N * d) * sizeof(float));
    float *k = tu_alloc((size_t)(B * Hk * N * d) * sizeof(float));
    float *v = tu_alloc((size_t)(B * Hk * N * dv) * sizeof(float));

    bhnd.layout = STILL_LAYOUT_BHND;
    tu_to_layout(c->q, B, Hq, N, d, STILL_LAYOUT_BHND, STILL_F32, q);
    tu_to_layout(c->k, B, Hk, N, d, STILL_LAYOUT_BHND, STILL_F32, k);
    tu_to_layout(c->v, B, Hk, N, dv, STILL_LAYOUT_BHND, STILL_F32, v);
    ck_assert_int_eq(still__resolve(&c->cfg, &bhnd, c->use_params ? &c->params : NULL, &r), 0);
    ck_assert_int_eq(still__kernels_select(isa, &kern), STILL_OK);
    ck_assert_int_eq(still__fast_ctx_init(&ctx, &r, c->use_params ? &c->params : NULL, kern, N), 0);
    ck_assert_int_eq(still__fast_scratch_init(&ctx, &ws), STILL_OK);
    for (int64_t b = 0; b < B; b++)
        for (int64_t hq0 = 0; hq0 < Hq; hq0 += ctx.nh) {
            still__fast_unit u;
            ck_assert_int_eq(still__fast_unit_init(&ctx, b, hq0, &u), STILL_OK);
            for (int64_t pos = 0, it = 0; pos < N; it++) {
                int64_t n = sizes[it % nsizes];
                n = n < N - pos ? n : N - pos;
                still__fast_block blk;
                memset(&blk, 0, sizeof blk);
                blk.n = n;
                blk.q = q + ((b * Hq + hq0) * N + pos) * d, blk.q_hs = N * d, blk.q_ns = d;
                blk.k = k + ((b * Hk + u.hk) * N + pos) * d, blk.k_ns = d;
                blk.v = v + ((b * Hk + u.hk) * N + pos) * dv, blk.v_ns = dv;
                blk.o = o + ((b * Hq + hq0) * N + pos) * dv, blk.o_hs = N * dv, blk.o_ns = dv;
                blk.sigma = sigma + (b * Hq + hq0) * N + pos, blk.sigma_hs = N;
                ck_assert_int_eq(still__fast_unit_append(&ctx, &u, &ws, &blk), STILL_OK);
                pos += n;
            }
            still__fast_unit_free(&u);
        }
    still__fast_scratch_free(&ws);
    still__fast_ctx_free(&ctx);
    free(q);
    free(k);
    free(v);
}

/* Appending a sequence in blocks of 1 (decode), of odd sizes, or at once
 * (prefill) gives the same bits (lib/fast.h; SPEC I6 for the state). */
START_TEST(test_fast_unit_blocks_give_same_bits)
{
    const grid_case gc[] = {
        {"blocks L=2 cap", 1, 2, 2, 90, 16, 8, 16, 2, 0, 2, 5, SAL, HH, 1, 0, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
        {"blocks L=0 per-kv", 1, 4, 2, 90, 16, 8, 16, 2, 0, 0, 0, SAL, HH, 1, 1, BHND, 0, 0, 0, 0, 0, 0, 0, -1, 0},
        {"blocks window", 1, 2, 2, 90, 16, 8, 16, 2, 20, 2, 0, WIN, HH, 1, 0, BHND, 0, 0, 0, 12, 1, 1, 1, -1, 0},
        {"blocks authors", 1, 2, 2, 90, 16, 8, 16, 2, 16, 2, 0, SAL, HH, 1, 0, BHND, 0, STILL_SALIENCY_AUTHORS, 1, 0, 0, 0, 0, -1, 0},
    };
    const int64_t all[] = {1 << 20}, ones[] = {1}, odd[] = {5, 1, 16, 3, 37, 2};
    int isas[8], n = isa_list(isas);
    for (size_t ic = 0; ic < sizeof gc / sizeof gc[0]; ic++) {
        tu_case c;
        grid_case_build(&gc[ic], 40 + ic, &c);
        const size_t no = (size_t)n_o(&c), nr = (size_t)n_rows(&c);
        float *o1 = tu_alloc(no * sizeof(float)), *o2 = tu_alloc(no * sizeof(float));
        double *s1 = tu_dalloc((int64_t)nr), *s2 = tu_dalloc((int64_t)nr);
        for (int j = 0; j < n; j++) {
            run_blocks(&c, isas[j], all, 1, o1, s1);
            run_blocks(&c, isas[j], ones, 1, o2, s2);
            ck_assert_msg(memcmp(o1, o2, no * sizeof(float)) == 0, "%s [%s]: decode != prefill",
                          gc[ic].name, still__isa_name(isas[j]));
            ck_assert(memcmp(s1, s2, nr * sizeof(double)) == 0);
            run_blocks(&c, isas[j], odd, 6, o2, s2);
            ck_assert_msg(memcmp(o1, o2, no * sizeof(float)) == 0, "%s [%s]: odd blocks",
                          gc[ic].name, still__isa_name(isas[j]));
            ck_assert(memcmp(s1, s2, nr * sizeof(double)) == 0);
        }
        free(o1);
        free(o2);
        free(s1);
        free(s2);
        tu_case_free(&c);
    }
}
END_TEST

/* ---- dispatch ------------------------------------------------------------------------ */

/* STILL_ISA picks the table when cfg->isa is auto; cfg->isa wins over it;
 * unknown or unsupported choices are STILL_E_ISA, never a fallback. */
START_TEST(test_fast_isa_env_override_and_errors)
{
    const grid_case gc = {"env", 1, 2, 2, 50, 16, 8, 16, 2, 0, 2, 0, SAL, HH, 1, 0, BHND, 0, 0,
                          0, 0, 0, 0, 0, -1, 0};
    int isas[8], n = isa_list(isas);
    tu_case c;
    fast_out want, got;
    grid_case_build(&gc, 9, &c);
    fast_out_alloc(&c, &want);
    fast_out_alloc(&c, &got);
    for (int j = 0; j < n; j++) {
        ck_assert_int_eq(run_fast(&c, isas[j], 1, NULL, &want), STILL_OK);
        setenv("STILL_ISA", still__isa_name(isas[j]), 1);
        ck_assert_int_eq(run_fast(&c, STILL_ISA_AUTO, 1, NULL, &got), STILL_OK);
        ck_assert(memcmp(want.o, got.o, (size_t)n_o(&c) * sizeof(float)) == 0);
    }
    /* an explicit choice wins over the environment */
    setenv("STILL_ISA", "no-such-isa", 1);
    ck_assert_int_eq(run_fast(&c, STILL_ISA_AUTO, 1, NULL, &got), STILL_E_ISA);
    ck_assert_int_eq(run_fast(&c, STILL_ISA_GENERIC, 1, NULL, &got), STILL_OK);
    unsetenv("STILL_ISA");
    /* an ISA this machine cannot run */
    int foreign = 0;
    for (int isa = STILL_ISA_GENERIC; isa <= STILL_ISA_NEON; isa++)
        if (!still__isa_supported(isa)) {
            foreign++;
            ck_assert_int_eq(run_fast(&c, isa, 1, NULL, &got), STILL_E_ISA);
            setenv("STILL_ISA", still__isa_name(isa), 1);
            ck_assert_int_eq(run_fast(&c, STILL_ISA_AUTO, 1, NULL, &got), STILL_E_ISA);
            unsetenv("STILL_ISA");
        }
    ck_assert_int_ge(foreign, 1); /* NEON on x86-64, AVX on aarch64 */
    ck_assert_int_eq(run_fast(&c, 99, 1, NULL, &got), STILL_E_CONFIG);
    fast_out_free(&want);
    fast_out_free(&got);
    tu_case_free(&c);
}
END_TEST

/* SPEC §10: float32 only; non-finite inputs refused before any work. */
START_TEST(test_fast_rejects_f64_and_nonfinite)
{
    still_shape s = {1, 1, 1, 8, 4, 4, STILL_LAYOUT_BHND};
    double qd[32] = {0}, od[32];
    float q[32] = {0}, o[32];
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = t.k = t.v = qd;
    t.o = od;
    ck_assert_int_eq(still_forward(NULL, &s, NULL, &t), STILL_E_DTYPE);
    ck_assert_int_eq(still_teacher(NULL, &s, &t), STILL_E_DTYPE);
    t.dtype = STILL_F32;
    t.q = t.k = t.v = q;
    t.o = o;
    ck_assert_int_eq(still_forward(NULL, &s, NULL, &t), STILL_OK);
    q[5] = NAN;
    ck_assert_int_eq(still_forward(NULL, &s, NULL, &t), STILL_E_NONFINITE);
    ck_assert_int_eq(still_teacher(NULL, &s, &t), STILL_E_NONFINITE);
    t.o = NULL;
    ck_assert_int_eq(still_forward(NULL, &s, NULL, &t), STILL_E_NULL);
}
END_TEST

/* The softmax tile and the sigmoid of every ISA against double exp (the
 * AVX2 kernels' exponential is their own polynomial, simd/avx2.c): every
 * entry within 3e-7 relative of exp of the same float argument, masked
 * entries (-inf) 0, a column with nothing unmasked left alone (alpha 1),
 * and l the sequential sum; column counts that leave vector tails. */
START_TEST(test_fast_exp_kernels_match_double)
{
    enum { M = 37, N = 21, LDS = 24 };
    int isas[8], ni = isa_list(isas);
    for (int j = 0; j < ni; j++) {
        const still__kernels *K;
        ck_assert_int_eq(still__kernels_select(isas[j], &K), STILL_OK);
        static float S[M * LDS], S0[M * LDS];
        float m[N], l[N], alpha[N], m0[N], l0[N];
        for (int i = 0; i < M; i++)
            for (int t = 0; t < LDS; t++) {
                const int hidden = t == 18 || (i + t) % 11 == 0;
                S0[i * LDS + t] = hidden ? -INFINITY : -0.9f * (float)((i * 7 + t * 3) % 97) +
                                                           (t % 4 == 0 ? 40.0f : 0.0f);
            }
        for (int t = 0; t < N; t++) {
            m0[t] = t % 3 == 0 ? -INFINITY : t % 3 == 1 ? 5.0f : -120.0f;
            l0[t] = t % 3 == 0 ? 0.0f : 2.0f;
        }
        memcpy(S, S0, sizeof S);
        memcpy(m, m0, sizeof m);
        memcpy(l, l0, sizeof l);
        K->softmax_cols(M, N, S, LDS, m, l, alpha);
        for (int t = 0; t < N; t++) {
            float mx = m0[t];
            for (int i = 0; i < M; i++)
                mx = S0[i * LDS + t] > mx ? S0[i * LDS + t] : mx;
            ck_assert_float_eq(m[t], mx);
            const double al = mx == -INFINITY ? 1.0 : exp((double)(float)(m0[t] - mx));
            ck_assert_msg(fabs(alpha[t] - al) <= 3e-7 * al + 1e-37, "%s alpha[%d] = %g, not %g",
                          K->name, t, alpha[t], al);
            double sum = l0[t] * al;
            for (int i = 0; i < M; i++) {
                const float s = S0[i * LDS + t];
                const double e = s == -INFINITY ? 0.0 : exp((double)(float)(s - mx));
                const float got = S[i * LDS + t];
                ck_assert_msg(fabs(got - e) <= 3e-7 * e + (e < FLT_MIN ? FLT_MIN : 0.0),
                              "%s e[%d][%d] = %g, not %g", K->name, i, t, got, e);
                sum += e;
            }
            ck_assert_msg(fabs(l[t] - sum) <= 1e-6 * sum, "%s l[%d] = %g, not %g", K->name, t,
                          l[t], sum);
        }
        float x[200];
        for (int i = 0; i < 200; i++)
            x[i] = -100.0f + 1.003f * (float)i;
        K->sigmoid(200, x);
        for (int i = 0; i < 200; i++) {
            const double v = -100.0f + 1.003f * (float)i, ref = 1.0 / (1.0 + exp(-v));
            ck_assert_msg(fabs(x[i] - ref) <= 1e-6 * ref + 1e-37, "%s sigmoid(%g) = %g, not %g",
                          K->name, v, x[i], ref);
        }
    }
}
END_TEST

static Suite *fast_suite(void)
{
    Suite *s = suite_create("fast");
    TCase *tc = tcase_create("fast");
    int isas[8], n = isa_list(isas);
    printf("# fast path ISAs tested here:");
    for (int j = 0; j < n; j++)
        printf(" %s", still__isa_name(isas[j]));
    printf("\n");
    fflush(stdout);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_fast_matches_ref_on_every_isa, 0,
                        (int)(sizeof grid / sizeof grid[0]));
    tcase_add_test(tc, test_fast_forced_selection_matches_ref);
    tcase_add_test(tc, test_fast_exact_ties_follow_spec);
    tcase_add_test(tc, test_fast_bitwise_across_threads_and_calls);
    tcase_add_test(tc, test_fast_unit_blocks_give_same_bits);
    tcase_add_test(tc, test_fast_isa_env_override_and_errors);
    tcase_add_test(tc, test_fast_rejects_f64_and_nonfinite);
    tcase_add_test(tc, test_fast_exp_kernels_match_double);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(fast_suite());
}
