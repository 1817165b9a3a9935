/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_state_fast.c -- the streaming state of the fast path (SPEC §7, §10):
 * fast decode against the ref prefill within 1e-5·max|v|, identity I6 on
 * the fast path itself (decode = still_forward prefill, bitwise for a fixed
 * ISA, however the sequence is cut), the branch census against the model
 * of SPEC §5-6, constant memory with the cap, threads (SPEC I7). */
#include "test_state_util.h"
#include "fast.h"
#include "state.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct setting {
    int routing;
    int64_t L, cap;
    int per_kv;
} setting;

enum { N_SETTINGS = 4 * 3 * 2 * 2 };

static setting setting_of(int i)
{
    static const int routings[4] = {STILL_ROUTING_SALIENCY, STILL_ROUTING_WINDOW,
                                    STILL_ROUTING_ALL, STILL_ROUTING_NONE};
    setting s;
    s.routing = routings[i % 4];
    s.L = (i / 4) % 3;
    s.cap = (i / 12) % 2 ? 3 : 0;
    s.per_kv = (i / 24) % 2;
    return s;
}

/* A float32 case: B=2, Hq=4, Hk=2, C=4, k=2, w=5, varied parameters. */
static void make_case(tu_case *c, uint64_t seed, int layout, int64_t N, setting s, int variant)
{
    tu_rng g;
    still_shape shape = {2, 4, 2, N, 4, 3, layout};
    tu_rng_seed(&g, seed);
    tu_case_init(c, &g, &shape, 1.5, variant % 2);
    c->cfg.chunk = 4;
    c->cfg.topk = 2;
    c->cfg.window = 5;
    c->cfg.local = s.L;
    c->cfg.max_sel = s.cap;
    c->cfg.routing = s.routing;
    c->cfg.select_per_kv = s.per_kv;
    c->cfg.act = variant % 4;
    if (variant % 3 == 1)
        tu_case_random_params(c, &g, 3, 1, 1, 0, 1);
    else if (variant % 3 == 2)
        tu_case_random_params(c, &g, 4, 0, 1, 1, 0);
    c->dtype = STILL_F32;
    tu_case_round(c);
    c->cfg.threads = 1; /* tiny problems: no thread pool spinning (I7 has its own test) */
}

static int64_t count_o(const tu_case *c)
{
    return c->shape.batch * c->shape.heads_q * c->shape.seq_len * c->shape.dim_v;
}

static int64_t count_sigma(const tu_case *c)
{
    return c->shape.batch * c->shape.heads_q * c->shape.seq_len;
}

/* still_forward (the fast prefill) on the case: o BHND double (exactly the
 * float results), sigma and sel optional. */
static void fast_prefill(const tu_case *c, double *o, double *sigma, uint8_t *sel)
{
    const still_shape *s = &c->shape;
    const int64_t B = s->batch, Hq = s->heads_q, Hk = s->heads_kv, N = s->seq_len;
    const int64_t d = s->dim_qk, dv = s->dim_v;
    float *q = tu_alloc((size_t)(B * Hq * N * d) * sizeof(float));
    float *k = tu_alloc((size_t)(B * Hk * N * d) * sizeof(float));
    float *v = tu_alloc((size_t)(B * Hk * N * dv) * sizeof(float));
    float *gate = c->gate ? tu_alloc((size_t)(B * Hq * N * dv) * sizeof(float)) : NULL;
    float *out = tu_alloc((size_t)(B * Hq * N * dv) * sizeof(float));
    tu_to_layout(c->q, B, Hq, N, d, s->layout, STILL_F32, q);
    tu_to_layout(c->k, B, Hk, N, d, s->layout, STILL_F32, k);
    tu_to_layout(c->v, B, Hk, N, dv, s->layout, STILL_F32, v);
    if (gate)
        tu_to_layout(c->gate, B, Hq, N, dv, s->layout, STILL_F32, gate);
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F32;
    t.q = q, t.k = k, t.v = v, t.gate = gate, t.o = out;
    t.sigma = sigma;
    t.selected = sel;
    ck_assert_int_eq(still_forward(&c->cfg, s, c->use_params ? &c->params : NULL, &t),
                     STILL_OK);
    if (o)
        tu_from_layout(out, B, Hq, N, dv, s->layout, STILL_F32, o);
    free(q), free(k), free(v), free(gate), free(out);
}

static int64_t *schedule(const tu_case *c, int kind, tu_rng *g, int *nb)
{
    const int64_t N = c->shape.seq_len;
    int64_t *blocks = tu_alloc((size_t)N * sizeof *blocks);
    *nb = kind == 0 ? ts_schedule_prefill(N, 0, blocks) : ts_schedule_random(g, N, 9, blocks);
    return blocks;
}

/* SPEC §10: fast decode within 1e-5·max|v| of the ref prefill, for every
 * setting and both layouts (the ref prefill is given the fast selection,
 * SPEC §10, so that a near-tie in sigma cannot hide or fake an error). */
START_TEST(test_fast_decode_matches_ref_prefill_every_setting)
{
    for (int layout = 0; layout < 2; layout++)
        for (int i = 0; i < N_SETTINGS; i++) {
            tu_case c;
            int nb;
            setting s = setting_of(i);
            make_case(&c, 100 + (uint64_t)i, layout, 27, s, i);
            int64_t no = count_o(&c), ns = count_sigma(&c);
            double *o_ref = tu_dalloc(no), *o_dec = tu_dalloc(no);
            double *s_ref = tu_dalloc(ns), *s_dec = tu_dalloc(ns);
            uint8_t *sel = tu_alloc((size_t)ns);
            fast_prefill(&c, NULL, NULL, sel);
            c.selection_in = sel;
            ck_assert_int_eq(tu_run_ref(&c, o_ref, s_ref, NULL), STILL_OK);
            c.selection_in = NULL;
            int64_t *blocks = schedule(&c, 0, NULL, &nb);
            ck_assert_int_eq(ts_decode(&c, STILL_PATH_FAST, blocks, nb, o_dec, s_dec),
                             STILL_OK);
            double vmax = tu_max_abs(c.v, c.shape.batch * 2 * 27 * 3);
            double err = tu_max_abs_diff(o_dec, o_ref, no);
            ck_assert_msg(err <= 1e-5 * vmax, "setting %d layout %d: max|do| %g > 1e-5 * %g", i,
                          layout, err, vmax);
            for (int64_t j = 0; j < ns; j++) /* sigma: float vs double, same scores */
                ck_assert_msg(s_dec[j] == s_ref[j] ||
                                  fabs(s_dec[j] - s_ref[j]) <= 1e-4 * (1 + fabs(s_ref[j])),
                              "sigma %lld: %g vs %g", (long long)j, s_dec[j], s_ref[j]);
            free(blocks), free(o_ref), free(o_dec), free(s_ref), free(s_dec), free(sel);
            tu_case_free(&c);
        }
}
END_TEST

/* SPEC I6 on the fast path: decode in blocks of one, of random sizes, and
 * prefill(n) + decode(rest) for every n, all equal to still_forward's
 * prefill -- bitwise (lib/fast.h: results do not depend on the blocks). */
static void check_fast_blocks(const tu_case *c, const int64_t *blocks, int nb, const char *what)
{
    int64_t no = count_o(c), ns = count_sigma(c);
    double *o_pre = tu_dalloc(no), *o_dec = tu_dalloc(no);
    double *s_pre = tu_dalloc(ns), *s_dec = tu_dalloc(ns);
    fast_prefill(c, o_pre, s_pre, NULL);
    ck_assert_int_eq(ts_decode(c, STILL_PATH_FAST, blocks, nb, o_dec, s_dec), STILL_OK);
    for (int64_t i = 0; i < no; i++)
        ck_assert_msg(o_dec[i] == o_pre[i], "%s: o %lld: %.9g vs %.9g", what, (long long)i,
                      o_dec[i], o_pre[i]);
    ck_assert_msg(memcmp(s_dec, s_pre, (size_t)ns * sizeof *s_dec) == 0, "%s: sigma", what);
    free(o_pre), free(o_dec), free(s_pre), free(s_dec);
}

START_TEST(test_fast_decode_equals_fast_prefill_every_setting)
{
    tu_rng g;
    tu_rng_seed(&g, 5);
    for (int layout = 0; layout < 2; layout++)
        for (int i = 0; i < N_SETTINGS; i++)
            for (int kind = 0; kind < 2; kind++) {
                tu_case c;
                int nb;
                char what[64];
                make_case(&c, 300 + (uint64_t)i, layout, 31, setting_of(i), i + 1);
                int64_t *blocks = schedule(&c, kind, &g, &nb);
                snprintf(what, sizeof what, "setting %d layout %d kind %d", i, layout, kind);
                check_fast_blocks(&c, blocks, nb, what);
                free(blocks);
                tu_case_free(&c);
            }
}
END_TEST

START_TEST(test_fast_prefill_n_then_decode_equals_prefill_all_every_n)
{
    static const int picks[] = {0, 5, 13, 18, 22, 31, 38, 47};
    const int64_t N = 22;
    int64_t blocks[22];
    for (size_t p = 0; p < sizeof picks / sizeof picks[0]; p++) {
        tu_case c;
        make_case(&c, 500 + p, (int)p % 2, N, setting_of(picks[p]), (int)p);
        for (int64_t n = 1; n < N; n++) {
            char what[64];
            snprintf(what, sizeof what, "setting %d prefill %lld", picks[p], (long long)n);
            check_fast_blocks(&c, blocks, ts_schedule_prefill(N, n, blocks), what);
        }
        tu_case_free(&c);
    }
}
END_TEST

/* App. A on the fast path: decode = prefill with the authors' rules. */
START_TEST(test_fast_authors_decode_equals_prefill)
{
    tu_rng g;
    tu_rng_seed(&g, 9);
    for (int i = 0; i < N_SETTINGS; i += 3) {
        tu_case c;
        int nb;
        make_case(&c, 900 + (uint64_t)i, i % 2, 27, setting_of(i), i);
        c.cfg.saliency = STILL_SALIENCY_AUTHORS;
        c.cfg.window = c.cfg.chunk;
        c.cfg.phantom_sink = 1;
        int64_t *blocks = schedule(&c, i % 2, &g, &nb);
        check_fast_blocks(&c, blocks, nb, "authors");
        free(blocks);
        tu_case_free(&c);
    }
}
END_TEST

/* SPEC §5 on the fast path: after any appends, every token is in exactly
 * one branch, and the exact set is the model's routing of the last query
 * (testutil.c) given the fast prefill's sigma and selection. */
START_TEST(test_fast_every_token_in_exactly_one_branch)
{
    tu_rng g;
    tu_rng_seed(&g, 13);
    for (int i = 0; i < N_SETTINGS; i++) {
        tu_case c;
        const int64_t N = 41;
        int64_t blocks[41], pos[41];
        uint8_t exact[41], mine[41];
        make_case(&c, 1100 + (uint64_t)i, i % 2, N, setting_of(i), i);
        double *sigma = tu_dalloc(count_sigma(&c));
        uint8_t *sel = tu_alloc((size_t)count_sigma(&c));
        fast_prefill(&c, NULL, sigma, sel);
        still_state *st;
        ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, c.use_params ? &c.params : NULL,
                                            STILL_PATH_FAST, &st),
                         STILL_OK);
        int nb = ts_schedule_random(&g, N, 6, blocks);
        int64_t P = 0;
        for (int j = 0; j < nb; j++) {
            ck_assert_int_eq(ts_append(st, &c, P, blocks[j], NULL, NULL), STILL_OK);
            P += blocks[j];
            for (int64_t row = 0; row < 8; row++) {
                still__census k;
                ck_assert_int_eq(still__state_census(st, row / 4, row % 4, &k, pos), STILL_OK);
                ck_assert_int_eq(k.cached + k.raw + k.folded, P);
                memset(mine, 0, sizeof mine);
                for (int64_t e = 0; e < k.cached; e++) {
                    ck_assert(pos[e] >= 0 && pos[e] < k.raw_first && !mine[pos[e]]);
                    mine[pos[e]] = 1;
                }
                for (int64_t e = P - k.raw_exact; e < P; e++)
                    mine[e] = 1;
                tu_model_route(c.cfg.routing, 4, c.cfg.local, 5, c.cfg.max_sel,
                               sigma + row * N, sel + row * N, P - 1, exact);
                for (int64_t e = 0; e < P; e++)
                    ck_assert_msg(mine[e] == exact[e], "setting %d P %lld row %lld token %lld",
                                  i, (long long)P, (long long)row, (long long)e);
            }
        }
        still_state_destroy(st);
        free(sigma), free(sel);
        tu_case_free(&c);
    }
}
END_TEST

/* SPEC §7: with the cap the fast state's bytes stop growing. */
START_TEST(test_fast_state_bytes_stop_growing_with_cap)
{
    tu_case c;
    setting s = {STILL_ROUTING_SALIENCY, 2, 6, 0};
    make_case(&c, 1300, STILL_LAYOUT_BHND, 400, s, 0);
    still_state *st;
    size_t bytes, at_100 = 0;
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, STILL_PATH_FAST, &st), STILL_OK);
    for (int64_t t = 0; t < 400; t++) {
        ck_assert_int_eq(ts_append(st, &c, t, 1, NULL, NULL), STILL_OK);
        ck_assert_int_eq(still_state_bytes(st, &bytes), STILL_OK);
        if (t == 99)
            at_100 = bytes;
        if (t >= 99)
            ck_assert_msg(bytes == at_100, "t %lld: %zu vs %zu", (long long)t, bytes, at_100);
    }
    still_state_destroy(st);
    /* a prefill block, then one-token steps (the decode's own buffers
     * exist from the state's creation): no step adds a byte */
    size_t after_block = 0;
    double *o = tu_dalloc(count_o(&c)); /* outputs on: a step scores its keys */
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, STILL_PATH_FAST, &st), STILL_OK);
    ck_assert_int_eq(ts_append(st, &c, 0, 200, o, NULL), STILL_OK);
    ck_assert_int_eq(still_state_bytes(st, &after_block), STILL_OK);
    for (int64_t t = 200; t < 400; t++) {
        ck_assert_int_eq(ts_append(st, &c, t, 1, o, NULL), STILL_OK);
        ck_assert_int_eq(still_state_bytes(st, &bytes), STILL_OK);
        ck_assert_msg(bytes == after_block, "t %lld after a block of 200: %zu vs %zu",
                      (long long)t, bytes, after_block);
    }
    still_state_destroy(st);
    free(o);
    tu_case_free(&c);
}
END_TEST

/* SPEC I7: the thread count does not change a bit of the outputs. */
START_TEST(test_fast_decode_independent_of_threads)
{
    tu_case c;
    make_case(&c, 1500, STILL_LAYOUT_BNHD, 30, setting_of(17), 1);
    int64_t no = count_o(&c), blocks[30];
    int nb = ts_schedule_prefill(30, 7, blocks);
    double *o1 = tu_dalloc(no), *o3 = tu_dalloc(no);
    c.cfg.threads = 1;
    ck_assert_int_eq(ts_decode(&c, STILL_PATH_FAST, blocks, nb, o1, NULL), STILL_OK);
    c.cfg.threads = 3;
    ck_assert_int_eq(ts_decode(&c, STILL_PATH_FAST, blocks, nb, o3, NULL), STILL_OK);
    ck_assert(memcmp(o1, o3, (size_t)no * sizeof *o1) == 0);
    free(o1), free(o3);
    tu_case_free(&c);
}
END_TEST

/* SPEC I6 with caches of hundreds of keys, on every ISA this CPU runs: a
 * one-token step scores the cache with gemv_panel (keys packed in panels
 * of 16, simd/kernels.h) and a one-row gemm, the prefill with the column
 * gemm -- the same bits, across panel, 8-panel and 256-key tile edges,
 * with evictions repacking the panels (cap), per-kv units, and d, dv that
 * are not multiples of a vector. */
START_TEST(test_fast_decode_large_cache_equals_prefill_every_isa)
{
    const int64_t N = 800, Hq = 4, d = 40, dv = 21;
    const int64_t caps[2] = {0, 37};
    float *q = tu_alloc((size_t)(Hq * N * d) * sizeof(float));
    float *k = tu_alloc((size_t)(Hq * N * d) * sizeof(float));
    float *v = tu_alloc((size_t)(Hq * N * dv) * sizeof(float));
    float *o_pre = tu_alloc((size_t)(Hq * N * dv) * sizeof(float));
    float *o_dec = tu_alloc((size_t)(Hq * N * dv) * sizeof(float));
    float *q1 = tu_alloc((size_t)(Hq * d) * sizeof(float));
    float *k1 = tu_alloc((size_t)(Hq * d) * sizeof(float));
    float *v1 = tu_alloc((size_t)(Hq * dv) * sizeof(float));
    float *o1 = tu_alloc((size_t)(Hq * dv) * sizeof(float));
    tu_rng g;
    tu_rng_seed(&g, 1900);
    for (int64_t i = 0; i < Hq * N * d; i++) {
        q[i] = (float)tu_uniform(&g, -3.0, 3.0);
        k[i] = (float)tu_uniform(&g, -1.0, 1.0);
    }
    for (int64_t i = 0; i < Hq * N * dv; i++)
        v[i] = (float)tu_uniform(&g, -1.0, 1.0);
    for (int isa = STILL_ISA_GENERIC; isa <= STILL_ISA_NEON; isa++) {
        if (!still__isa_supported(isa))
            continue;
        for (int variant = 0; variant < 2; variant++) {
            const int64_t Hk = variant ? Hq / 2 : Hq; /* per-kv units of 2 heads */
            still_config cfg;
            still_config_default(&cfg);
            cfg.chunk = 8, cfg.topk = 3, cfg.local = 2, cfg.window = 8;
            cfg.max_sel = caps[variant], cfg.select_per_kv = variant, cfg.threads = 1;
            cfg.isa = isa;
            still_shape sh = {1, Hq, Hk, N, d, dv, STILL_LAYOUT_BHND};
            still_tensors t;
            memset(&t, 0, sizeof t);
            t.dtype = STILL_F32, t.q = q, t.k = k, t.v = v, t.o = o_pre;
            ck_assert_int_eq(still_forward(&cfg, &sh, NULL, &t), STILL_OK);
            still_state *st = NULL;
            ck_assert_int_eq(still_state_create(&cfg, &sh, NULL, STILL_PATH_FAST, &st), STILL_OK);
            for (int64_t p = 0; p < N; p++) {
                for (int64_t h = 0; h < Hq; h++)
                    memcpy(q1 + h * d, q + (h * N + p) * d, (size_t)d * sizeof(float));
                for (int64_t h = 0; h < Hk; h++) {
                    memcpy(k1 + h * d, k + (h * N + p) * d, (size_t)d * sizeof(float));
                    memcpy(v1 + h * dv, v + (h * N + p) * dv, (size_t)dv * sizeof(float));
                }
                still_tensors s1;
                memset(&s1, 0, sizeof s1);
                s1.dtype = STILL_F32, s1.q = q1, s1.k = k1, s1.v = v1, s1.o = o1;
                ck_assert_int_eq(still_state_append(st, 1, &s1), STILL_OK);
                for (int64_t h = 0; h < Hq; h++)
                    memcpy(o_dec + (h * N + p) * dv, o1 + h * dv, (size_t)dv * sizeof(float));
            }
            still__census cen;
            still__state_census(st, 0, 0, &cen, NULL);
            ck_assert_msg(caps[variant] ? cen.cached == caps[variant] : cen.cached > 256,
                          "isa %d variant %d: %lld cached", isa, variant, (long long)cen.cached);
            still_state_destroy(st);
            for (int64_t i = 0; i < Hq * N * dv; i++)
                ck_assert_msg(memcmp(&o_dec[i], &o_pre[i], sizeof(float)) == 0,
                              "isa %d variant %d: o %lld: %.9g vs %.9g", isa, variant,
                              (long long)i, (double)o_dec[i], (double)o_pre[i]);
        }
    }
    free(q), free(k), free(v), free(o_pre), free(o_dec), free(q1), free(o1), free(k1), free(v1);
}
END_TEST

/* SPEC I6 for long one-token decodes whose band of raw keys (the last L
 * chunks and the current one) is wide and starts off a panel of 16 (C =
 * 24) or on one (C = 64, the bench's shape), over hundreds of positions,
 * with a prefill block and a save/load part way: the
 * decode steps score the band as the prefill's gemm does, whatever state
 * of the packed keys a step finds (issue 4), on every ISA this CPU runs. */
START_TEST(test_fast_long_decode_with_reload_equals_prefill_every_isa)
{
    const int64_t N = 700, Hq = 2, d = 32, dv = 16, chunks[2] = {24, 64};
    float *q = tu_alloc((size_t)(Hq * N * d) * sizeof(float));
    float *k = tu_alloc((size_t)(Hq * N * d) * sizeof(float));
    float *v = tu_alloc((size_t)(Hq * N * dv) * sizeof(float));
    float *o_pre = tu_alloc((size_t)(Hq * N * dv) * sizeof(float));
    float *o_dec = tu_alloc((size_t)(Hq * N * dv) * sizeof(float));
    float *q1 = tu_alloc((size_t)(Hq * 50 * d) * sizeof(float));
    float *k1 = tu_alloc((size_t)(Hq * 50 * d) * sizeof(float));
    float *v1 = tu_alloc((size_t)(Hq * 50 * dv) * sizeof(float));
    float *o1 = tu_alloc((size_t)(Hq * 50 * dv) * sizeof(float));
    tu_rng g;
    tu_rng_seed(&g, 2400);
    for (int64_t i = 0; i < Hq * N * d; i++) {
        q[i] = (float)tu_uniform(&g, -3.0, 3.0);
        k[i] = (float)tu_uniform(&g, -1.0, 1.0);
    }
    for (int64_t i = 0; i < Hq * N * dv; i++)
        v[i] = (float)tu_uniform(&g, -1.0, 1.0);
    for (int isa = STILL_ISA_GENERIC; isa <= STILL_ISA_NEON; isa++) {
        if (!still__isa_supported(isa))
            continue;
        for (int variant = 0; variant < 2; variant++) {
            still_config cfg;
            still_config_default(&cfg);
            cfg.chunk = chunks[variant], cfg.topk = 3, cfg.local = 2;
            cfg.window = chunks[variant], cfg.max_sel = 40, cfg.threads = 1, cfg.isa = isa;
            still_shape sh = {1, Hq, Hq, N, d, dv, STILL_LAYOUT_BHND};
            still_tensors t;
            memset(&t, 0, sizeof t);
            t.dtype = STILL_F32, t.q = q, t.k = k, t.v = v, t.o = o_pre;
            ck_assert_int_eq(still_forward(&cfg, &sh, NULL, &t), STILL_OK);
            still_state *st = NULL;
            ck_assert_int_eq(still_state_create(&cfg, &sh, NULL, STILL_PATH_FAST, &st), STILL_OK);
            for (int64_t p = 0; p < N;) {
                /* one token a step, but 50 at 333 (a prefill block in
                 * between), and a save/load at 401 (packed keys derived
                 * anew) */
                const int64_t n = p == 333 ? 50 : 1;
                if (p == 401) {
                    size_t len;
                    ck_assert_int_eq(still_state_save(st, NULL, 0, &len), STILL_OK);
                    unsigned char *buf = tu_alloc(len);
                    ck_assert_int_eq(still_state_save(st, buf, len, &len), STILL_OK);
                    still_state_destroy(st);
                    st = NULL;
                    ck_assert_int_eq(still_state_load(buf, len, NULL, &st), STILL_OK);
                    free(buf);
                }
                for (int64_t h = 0; h < Hq; h++) {
                    memcpy(q1 + h * n * d, q + (h * N + p) * d, (size_t)(n * d) * sizeof(float));
                    memcpy(k1 + h * n * d, k + (h * N + p) * d, (size_t)(n * d) * sizeof(float));
                    memcpy(v1 + h * n * dv, v + (h * N + p) * dv, (size_t)(n * dv) * sizeof(float));
                }
                still_tensors s1;
                memset(&s1, 0, sizeof s1);
                s1.dtype = STILL_F32, s1.q = q1, s1.k = k1, s1.v = v1, s1.o = o1;
                ck_assert_int_eq(still_state_append(st, n, &s1), STILL_OK);
                for (int64_t h = 0; h < Hq; h++)
                    memcpy(o_dec + (h * N + p) * dv, o1 + h * n * dv,
                           (size_t)(n * dv) * sizeof(float));
                p += n;
            }
            still_state_destroy(st);
            for (int64_t i = 0; i < Hq * N * dv; i++)
                ck_assert_msg(memcmp(&o_dec[i], &o_pre[i], sizeof(float)) == 0,
                              "isa %d C %lld: o %lld: %.9g vs %.9g", isa,
                              (long long)chunks[variant], (long long)i, (double)o_dec[i],
                              (double)o_pre[i]);
        }
    }
    free(q), free(k), free(v), free(o_pre), free(o_dec), free(q1), free(o1), free(k1), free(v1);
}
END_TEST

/* The fast path takes float32 only; an unknown ISA is refused at create. */
START_TEST(test_fast_refuses_float64_and_bad_isa)
{
    tu_case c;
    make_case(&c, 1700, STILL_LAYOUT_BHND, 6, setting_of(0), 0);
    c.dtype = STILL_F64;
    still_state *st;
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, STILL_PATH_FAST, &st), STILL_OK);
    ck_assert_int_eq(ts_append(st, &c, 0, 6, NULL, NULL), STILL_E_DTYPE);
    still_state_destroy(st);
    c.cfg.isa = 99;
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, STILL_PATH_FAST, &st),
                     STILL_E_CONFIG);
    ck_assert_ptr_null(st);
    tu_case_free(&c);
}
END_TEST

static Suite *state_fast_suite(void)
{
    Suite *s = suite_create("state_fast");
    TCase *tc = tcase_create("fast");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fast_decode_matches_ref_prefill_every_setting);
    tcase_add_test(tc, test_fast_decode_equals_fast_prefill_every_setting);
    tcase_add_test(tc, test_fast_prefill_n_then_decode_equals_prefill_all_every_n);
    tcase_add_test(tc, test_fast_authors_decode_equals_prefill);
    tcase_add_test(tc, test_fast_every_token_in_exactly_one_branch);
    tcase_add_test(tc, test_fast_state_bytes_stop_growing_with_cap);
    tcase_add_test(tc, test_fast_decode_independent_of_threads);
    tcase_add_test(tc, test_fast_refuses_float64_and_bad_isa);
    tcase_add_test(tc, test_fast_decode_large_cache_equals_prefill_every_isa);
    tcase_add_test(tc, test_fast_long_decode_with_reload_equals_prefill_every_isa);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(state_fast_suite());
}
