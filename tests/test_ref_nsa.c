/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_ref_nsa.c -- routing nsa (SPEC §17) on the ref path: the whole
 * output and the block selection against a brute-force model written
 * here from SPEC.md alone (block means, softmaxes, a sort of the
 * candidates), the identities of §17 (S covering every block with gates
 * (0,1,0) is the teacher, gates (0,0,1) routing window with rest = drop),
 * the group's shared selection, ties to the smaller block, o_cmp = 0
 * before the first complete block, GQA, layouts and dtypes, query
 * ranges, prefix recomputation = prefill, and refusals. */
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct nsa_case {
    still_shape shape;
    still_config cfg;
    double *q, *k, *v; /* BHND double */
    double *gates;     /* [B][Hq][N][3] BHND double, or NULL (ones) */
} nsa_case;

static void nsa_case_init(nsa_case *c, tu_rng *g, int64_t B, int64_t Hq, int64_t Hk,
                          int64_t N, int64_t d, int64_t dv, int64_t BS, int64_t S, int64_t w)
{
    memset(c, 0, sizeof *c);
    c->shape = (still_shape){B, Hq, Hk, N, d, dv, STILL_LAYOUT_BHND};
    still_config_default(&c->cfg);
    c->cfg.routing = STILL_ROUTING_NSA;
    c->cfg.nsa_block = BS;
    c->cfg.nsa_topk = S;
    c->cfg.window = w;
    c->q = tu_dalloc(B * Hq * N * d);
    c->k = tu_dalloc(B * Hk * N * d);
    c->v = tu_dalloc(B * Hk * N * dv);
    tu_fill_normal(g, c->q, B * Hq * N * d, 1.5);
    tu_fill_normal(g, c->k, B * Hk * N * d, 1.5);
    tu_fill_normal(g, c->v, B * Hk * N * dv, 1.0);
}

static void nsa_case_gates(nsa_case *c, tu_rng *g)
{
    const int64_t n = c->shape.batch * c->shape.heads_q * c->shape.seq_len * 3;
    c->gates = tu_dalloc(n);
    tu_fill(g, c->gates, n, -1.0, 2.0);
}

/* Every gate set to (g0, g1, g2). */
static void nsa_case_const_gates(nsa_case *c, double g0, double g1, double g2)
{
    const int64_t rows = c->shape.batch * c->shape.heads_q * c->shape.seq_len;
    free(c->gates);
    c->gates = tu_dalloc(rows * 3);
    for (int64_t i = 0; i < rows; i++) {
        c->gates[i * 3] = g0;
        c->gates[i * 3 + 1] = g1;
        c->gates[i * 3 + 2] = g2;
    }
}

static void nsa_case_free(nsa_case *c)
{
    free(c->q); free(c->k); free(c->v); free(c->gates);
}

static int64_t rows_of(const nsa_case *c)
{
    return c->shape.batch * c->shape.heads_q * c->shape.seq_len;
}

/* still_ref_forward on the case in `layout` and `dtype`; o BHND double
 * [B][Hq][N][dv]; blocks [B][Hq][N][S] or NULL. */
static int nsa_run_as(const nsa_case *c, const still_config *cfg, int layout, int dtype,
                      double *o, int32_t *blocks)
{
    const still_shape *s = &c->shape;
    const size_t es = dtype == STILL_F64 ? sizeof(double) : sizeof(float);
    const int64_t B = s->batch, N = s->seq_len;
    void *q = tu_alloc((size_t)(B * s->heads_q * N * s->dim_qk) * es);
    void *k = tu_alloc((size_t)(B * s->heads_kv * N * s->dim_qk) * es);
    void *v = tu_alloc((size_t)(B * s->heads_kv * N * s->dim_v) * es);
    void *out = tu_alloc((size_t)(B * s->heads_q * N * s->dim_v) * es);
    void *gates = c->gates ? tu_alloc((size_t)(rows_of(c) * 3) * es) : NULL;
    still_shape shape = *s;
    still_tensors t;
    int rc;

    shape.layout = layout;
    tu_to_layout(c->q, B, s->heads_q, N, s->dim_qk, layout, dtype, q);
    tu_to_layout(c->k, B, s->heads_kv, N, s->dim_qk, layout, dtype, k);
    tu_to_layout(c->v, B, s->heads_kv, N, s->dim_v, layout, dtype, v);
    if (gates)
        tu_to_layout(c->gates, B, s->heads_q, N, 3, layout, dtype, gates);
    memset(&t, 0, sizeof t);
    t.dtype = dtype;
    t.q = q; t.k = k; t.v = v; t.o = out;
    t.nsa_gates = gates;
    t.nsa_blocks = blocks;
    rc = still_ref_forward(cfg, &shape, NULL, &t);
    if (rc == STILL_OK)
        tu_from_layout(out, B, s->heads_q, N, s->dim_v, layout, dtype, o);
    free(q); free(k); free(v); free(out); free(gates);
    return rc;
}

static int nsa_run(const nsa_case *c, double *o, int32_t *blocks)
{
    return nsa_run_as(c, &c->cfg, STILL_LAYOUT_BHND, STILL_F64, o, blocks);
}

/* ---- the brute-force model of SPEC §17 ------------------------------------ */

static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Softmax attention of q over the keys j <= t with mask[j] set, o [dv]. */
static void model_softmax(int64_t d, int64_t dv, double scale, const double *q, const double *K,
                          const double *V, int64_t t, const uint8_t *mask, double *o)
{
    double m = -INFINITY, den = 0.0;
    for (int64_t j = 0; j <= t; j++)
        if (mask[j])
            m = fmax(m, scale * dot(q, K + j * d, d));
    for (int64_t e = 0; e < dv; e++)
        o[e] = 0.0;
    for (int64_t j = 0; j <= t; j++)
        if (mask[j]) {
            double p = exp(scale * dot(q, K + j * d, d) - m);
            den += p;
            for (int64_t e = 0; e < dv; e++)
                o[e] += p * V[j * dv + e];
        }
    for (int64_t e = 0; e < dv; e++)
        o[e] /= den;
}

/* The compressed branch of query q at position t over the blocks of K, V
 * (means taken here): weight [nblocks] (0 past the visible ones), o [dv]. */
static void model_compressed(int64_t d, int64_t dv, int64_t BS, double scale, const double *q,
                             const double *K, const double *V, int64_t t, double *weight,
                             double *o)
{
    const int64_t visible = (t + 1) / BS; /* (c+1) BS - 1 <= t */
    double *kc = tu_dalloc(d), *logit = tu_dalloc(visible + 1), m = -INFINITY, den = 0.0;
    for (int64_t c = 0; c < visible; c++) {
        for (int64_t i = 0; i < d; i++) {
            kc[i] = 0.0;
            for (int64_t j = c * BS; j < (c + 1) * BS; j++)
                kc[i] += K[j * d + i] / (double)BS;
        }
        logit[c] = scale * dot(q, kc, d);
        m = fmax(m, logit[c]);
    }
    for (int64_t c = 0; c < visible; c++)
        den += exp(logit[c] - m);
    for (int64_t e = 0; e < dv; e++)
        o[e] = 0.0;
    for (int64_t c = 0; c < visible; c++) {
        weight[c] = exp(logit[c] - m) / den;
        for (int64_t j = c * BS; j < (c + 1) * BS; j++)
            for (int64_t e = 0; e < dv; e++)
                o[e] += weight[c] * V[j * dv + e] / (double)BS;
    }
    free(kc); free(logit);
}

/* The selection of query t from the group scores p: the candidates
 * 0..t/BS sorted by (score descending, block ascending) by insertion, the
 * first min(S, count) taken, returned ascending in blocks; the count. */
static int64_t model_select(int64_t BS, int64_t S, int64_t t, const double *p, int64_t *blocks)
{
    const int64_t cand = t / BS + 1, cur = t / BS;
    int64_t *order = tu_alloc((size_t)cand * sizeof(int64_t)), n = cand < S ? cand : S;
    double *score = tu_dalloc(cand);
    for (int64_t c = 0; c < cand; c++) {
        score[c] = (c == 0 || c == cur || c == cur - 1) ? 1.0 : p[c];
        order[c] = c;
    }
    for (int64_t i = 1; i < cand; i++)
        for (int64_t j = i; j > 0; j--) {
            const int64_t a = order[j - 1], b = order[j];
            if (score[b] > score[a] || (score[b] == score[a] && b < a)) {
                order[j - 1] = b;
                order[j] = a;
            }
        }
    /* ascending: the taken blocks, smallest first */
    int64_t out = 0;
    for (int64_t c = 0; c < cand; c++)
        for (int64_t i = 0; i < n; i++)
            if (order[i] == c)
                blocks[out++] = c;
    free(order); free(score);
    return n;
}

/* The whole forward of the case: o BHND double and blocks [B][Hq][N][S]. */
static void model_nsa(const nsa_case *c, double *o, int32_t *blocks)
{
    const still_shape *s = &c->shape;
    const int64_t Hq = s->heads_q, Hk = s->heads_kv, G = Hq / Hk, N = s->seq_len;
    const int64_t d = s->dim_qk, dv = s->dim_v, BS = c->cfg.nsa_block, S = c->cfg.nsa_topk;
    const int64_t w = c->cfg.window ? c->cfg.window : 512, nb = N / BS + 1;
    const double scale = 1.0 / sqrt((double)d);
    double *weight = tu_dalloc(nb), *p = tu_dalloc(nb), *o_cmp = tu_dalloc(dv);
    double *o_slc = tu_dalloc(dv), *o_swa = tu_dalloc(dv);
    int64_t *sel = tu_alloc((size_t)nb * sizeof(int64_t));
    uint8_t *mask = tu_alloc((size_t)N);

    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t h = 0; h < Hq; h++) {
            const int64_t hk = h / G;
            const double *K = c->k + (b * Hk + hk) * N * d, *V = c->v + (b * Hk + hk) * N * dv;
            for (int64_t t = 0; t < N; t++) {
                const double *q = c->q + ((b * Hq + h) * N + t) * d;
                const double *gt = c->gates ? c->gates + ((b * Hq + h) * N + t) * 3 : NULL;
                double *ot = o + ((b * Hq + h) * N + t) * dv;
                /* p: the mean of the group's compressed weights */
                for (int64_t cc = 0; cc < nb; cc++)
                    p[cc] = 0.0;
                for (int64_t h2 = hk * G; h2 < (hk + 1) * G; h2++) {
                    for (int64_t cc = 0; cc < nb; cc++)
                        weight[cc] = 0.0;
                    model_compressed(d, dv, BS, scale, c->q + ((b * Hq + h2) * N + t) * d, K, V,
                                     t, weight, o_cmp);
                    for (int64_t cc = 0; cc < nb; cc++)
                        p[cc] += weight[cc] / (double)G;
                }
                model_compressed(d, dv, BS, scale, q, K, V, t, weight, o_cmp);
                const int64_t n = model_select(BS, S, t, p, sel);
                if (blocks)
                    for (int64_t i = 0; i < S; i++)
                        blocks[((b * Hq + h) * N + t) * S + i] = i < n ? (int32_t)sel[i] : -1;
                memset(mask, 0, (size_t)N);
                for (int64_t i = 0; i < n; i++)
                    for (int64_t j = sel[i] * BS; j < (sel[i] + 1) * BS && j < N; j++)
                        mask[j] = 1;
                model_softmax(d, dv, scale, q, K, V, t, mask, o_slc);
                memset(mask, 0, (size_t)N);
                for (int64_t j = t - w + 1 > 0 ? t - w + 1 : 0; j <= t; j++)
                    mask[j] = 1;
                model_softmax(d, dv, scale, q, K, V, t, mask, o_swa);
                for (int64_t e = 0; e < dv; e++)
                    ot[e] = (gt ? gt[0] : 1.0) * o_cmp[e] + (gt ? gt[1] : 1.0) * o_slc[e] +
                            (gt ? gt[2] : 1.0) * o_swa[e];
            }
        }
    free(weight); free(p); free(o_cmp); free(o_slc); free(o_swa); free(sel); free(mask);
}

static int32_t *blocks_alloc(const nsa_case *c)
{
    return tu_alloc((size_t)(rows_of(c) * c->cfg.nsa_topk) * sizeof(int32_t));
}

static void assert_blocks_equal(const int32_t *a, const int32_t *b, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(a[i] == b[i], "%s: entry %lld: %d vs %d", what, (long long)i, a[i], b[i]);
}

/* ---- tests ------------------------------------------------------------------ */

/* The whole §17 forward against the brute-force model: random shapes,
 * blocks, S (some below the candidates, so the scores decide), windows
 * and gates, GQA groups of 1, 2 and 4, the partial last block. */
START_TEST(test_nsa_matches_brute_force_model)
{
    tu_rng g;
    tu_rng_seed(&g, 1701);
    for (int trial = 0; trial < 12; trial++) {
        nsa_case c;
        const int64_t Hk = tu_int(&g, 1, 2), Hq = Hk * (int64_t[]){1, 2, 4}[trial % 3];
        const int64_t BS = tu_int(&g, 1, 5), N = tu_int(&g, 1, 40);
        nsa_case_init(&c, &g, tu_int(&g, 1, 2), Hq, Hk, N, tu_int(&g, 1, 4), tu_int(&g, 1, 3),
                      BS, tu_int(&g, 3, 6), trial % 4 == 3 ? 0 : tu_int(&g, 2, 12));
        if (trial % 2)
            nsa_case_gates(&c, &g);
        const int64_t n = rows_of(&c) * c.shape.dim_v, nsel = rows_of(&c) * c.cfg.nsa_topk;
        double *o = tu_dalloc(n), *want = tu_dalloc(n);
        int32_t *blocks = blocks_alloc(&c), *want_blocks = blocks_alloc(&c);
        ck_assert_int_eq(nsa_run(&c, o, blocks), STILL_OK);
        model_nsa(&c, want, want_blocks);
        TU_ASSERT_CLOSE(o, want, n, 1e-12, "nsa vs brute force");
        assert_blocks_equal(blocks, want_blocks, nsel, "selection vs brute force");
        free(o); free(want); free(blocks); free(want_blocks);
        nsa_case_free(&c);
    }
}
END_TEST

/* SPEC §17: with S at least the number of blocks and gates (0,1,0), the
 * selected branch sees every key j <= t: the teacher. */
START_TEST(test_all_blocks_selected_is_teacher)
{
    tu_rng g;
    tu_rng_seed(&g, 1702);
    for (int trial = 0; trial < 6; trial++) {
        nsa_case c;
        const int64_t BS = tu_int(&g, 1, 6), N = tu_int(&g, 2, 50);
        nsa_case_init(&c, &g, 1, 4, trial % 2 ? 2 : 4, N, 3, 2, BS, (N - 1) / BS + 1 + trial % 2,
                      0);
        if (c.cfg.nsa_topk < 3)
            c.cfg.nsa_topk = 3;
        nsa_case_const_gates(&c, 0.0, 1.0, 0.0);
        const int64_t n = rows_of(&c) * c.shape.dim_v;
        double *o = tu_dalloc(n), *want = tu_dalloc(n);
        ck_assert_int_eq(nsa_run(&c, o, NULL), STILL_OK);
        /* the teacher of the same q, k, v */
        still_tensors t;
        memset(&t, 0, sizeof t);
        t.dtype = STILL_F64;
        t.q = c.q; t.k = c.k; t.v = c.v; t.o = want;
        ck_assert_int_eq(still_ref_teacher(NULL, &c.shape, &t), STILL_OK);
        TU_ASSERT_CLOSE(o, want, n, 1e-12, "S >= blocks, gates (0,1,0) vs teacher");
        free(o); free(want);
        nsa_case_free(&c);
    }
}
END_TEST

/* SPEC §17: gates (0,0,1) leave the sliding branch, routing window with
 * rest = drop and eps_den 0; the window defaults to 512 for nsa. */
START_TEST(test_sliding_gates_are_window_drop)
{
    tu_rng g;
    tu_rng_seed(&g, 1703);
    for (int trial = 0; trial < 4; trial++) {
        nsa_case c;
        const int64_t N = trial == 3 ? 530 : tu_int(&g, 5, 60), w = trial == 3 ? 0 : 2 + trial * 3;
        nsa_case_init(&c, &g, 1, 2, 1, N, 2, 2, 4, 3, w);
        nsa_case_const_gates(&c, 0.0, 0.0, 1.0);
        const int64_t n = rows_of(&c) * c.shape.dim_v;
        double *o = tu_dalloc(n), *want = tu_dalloc(n);
        ck_assert_int_eq(nsa_run(&c, o, NULL), STILL_OK);
        still_config win;
        still_config_default(&win);
        win.routing = STILL_ROUTING_WINDOW;
        win.rest = STILL_REST_DROP;
        win.eps_den = 0.0;
        win.window = w ? w : 512;
        still_tensors t;
        memset(&t, 0, sizeof t);
        t.dtype = STILL_F64;
        t.q = c.q; t.k = c.k; t.v = c.v; t.o = want;
        ck_assert_int_eq(still_ref_forward(&win, &c.shape, NULL, &t), STILL_OK);
        TU_ASSERT_CLOSE(o, want, n, 1e-12, "gates (0,0,1) vs window drop");
        free(o); free(want);
        nsa_case_free(&c);
    }
}
END_TEST

/* SPEC §17: the query heads of a group share one selection (the group
 * mean of the weights decides it), while distinct groups may differ. */
START_TEST(test_group_shares_its_blocks)
{
    tu_rng g;
    tu_rng_seed(&g, 1704);
    nsa_case c;
    nsa_case_init(&c, &g, 2, 8, 2, 64, 4, 2, 2, 4, 0);
    const int64_t N = 64, S = 4, G = 4;
    int32_t *blocks = blocks_alloc(&c);
    double *o = tu_dalloc(rows_of(&c) * c.shape.dim_v);
    ck_assert_int_eq(nsa_run(&c, o, blocks), STILL_OK);
    int groups_differ = 0;
    for (int64_t b = 0; b < 2; b++)
        for (int64_t h = 0; h < 8; h++)
            for (int64_t t = 0; t < N; t++)
                for (int64_t i = 0; i < S; i++) {
                    const int32_t x = blocks[((b * 8 + h) * N + t) * S + i];
                    const int32_t lead = blocks[((b * 8 + h / G * G) * N + t) * S + i];
                    ck_assert_msg(x == lead, "b %lld head %lld query %lld: block %d vs %d",
                                  (long long)b, (long long)h, (long long)t, x, lead);
                    groups_differ |= x != blocks[((b * 8 + (h + G) % 8) * N + t) * S + i];
                }
    ck_assert_msg(groups_differ, "the two kv groups never select differently");
    free(blocks); free(o);
    nsa_case_free(&c);
}
END_TEST

/* SPEC §17: among equal scores the smaller block is selected.  All keys
 * of block c equal to x_c, so the compressed logits are set: blocks 2
 * and 5 tie at the top, block 7 is lower; with S = 4 and query t in
 * block 9 (forced 0, 8, 9) the fourth block is 2, not 5.  With q = 0
 * every weight ties and the smallest free blocks are taken. */
START_TEST(test_ties_choose_the_smaller_block)
{
    tu_rng g;
    tu_rng_seed(&g, 1705);
    nsa_case c;
    const int64_t BS = 3, N = 30, S = 4, d = 1, t_last = N - 1;
    nsa_case_init(&c, &g, 1, 1, 1, N, d, 1, BS, S, 0);
    for (int64_t j = 0; j < N; j++) {
        const int64_t blk = j / BS;
        c.k[j] = blk == 2 || blk == 5 ? 2.0 : blk == 7 ? 1.0 : -1.0;
        c.q[j] = 1.0;
    }
    int32_t *blocks = blocks_alloc(&c);
    double *o = tu_dalloc(N);
    ck_assert_int_eq(nsa_run(&c, o, blocks), STILL_OK);
    const int32_t want[4] = {0, 2, 8, 9};
    assert_blocks_equal(blocks + t_last * S, want, S, "tie between blocks 2 and 5");
    /* q = 0: every weight equal; query 20 (block 6, forced 0, 5, 6) takes 1 */
    for (int64_t j = 0; j < N; j++)
        c.q[j] = 0.0;
    ck_assert_int_eq(nsa_run(&c, o, blocks), STILL_OK);
    const int32_t want_flat[4] = {0, 1, 5, 6};
    assert_blocks_equal(blocks + 20 * S, want_flat, S, "all weights equal");
    free(blocks); free(o);
    nsa_case_free(&c);
}
END_TEST

/* SPEC §17: before the first block is complete no block is visible and
 * o_cmp = 0; at t = BS - 1 block 0 is visible alone, o_cmp = v~_0. */
START_TEST(test_no_visible_block_gives_zero_compressed_branch)
{
    tu_rng g;
    tu_rng_seed(&g, 1706);
    nsa_case c;
    const int64_t BS = 5, N = 12, dv = 3;
    nsa_case_init(&c, &g, 1, 2, 1, N, 2, dv, BS, 3, 0);
    nsa_case_const_gates(&c, 1.0, 0.0, 0.0);
    double *o = tu_dalloc(rows_of(&c) * dv);
    ck_assert_int_eq(nsa_run(&c, o, NULL), STILL_OK);
    for (int64_t h = 0; h < 2; h++) {
        for (int64_t t = 0; t < BS - 1; t++)
            for (int64_t e = 0; e < dv; e++)
                ck_assert_msg(o[(h * N + t) * dv + e] == 0.0, "head %lld query %lld: o_cmp %g",
                              (long long)h, (long long)t, o[(h * N + t) * dv + e]);
        for (int64_t e = 0; e < dv; e++) {
            double mean = 0.0;
            for (int64_t j = 0; j < BS; j++)
                mean += c.v[j * dv + e] / (double)BS;
            ck_assert_msg(fabs(o[(h * N + BS - 1) * dv + e] - mean) < 1e-14,
                          "query BS-1: o_cmp %g, want the mean of block 0 %g",
                          o[(h * N + BS - 1) * dv + e], mean);
        }
    }
    free(o);
    nsa_case_free(&c);
}
END_TEST

/* GQA in both layouts and both dtypes: the same outputs as the model (the
 * float32 case on inputs rounded to float). */
START_TEST(test_gqa_layouts_and_dtypes)
{
    tu_rng g;
    tu_rng_seed(&g, 1707);
    nsa_case c;
    nsa_case_init(&c, &g, 2, 6, 2, 33, 3, 2, 4, 5, 7);
    nsa_case_gates(&c, &g);
    /* values representable in float, so both dtypes see the same inputs */
    double *arrays[] = {c.q, c.k, c.v, c.gates};
    const int64_t counts[] = {2 * 6 * 33 * 3, 2 * 2 * 33 * 3, 2 * 2 * 33 * 2, rows_of(&c) * 3};
    for (int a = 0; a < 4; a++)
        for (int64_t i = 0; i < counts[a]; i++)
            arrays[a][i] = (double)(float)arrays[a][i];
    const int64_t n = rows_of(&c) * 2, nsel = rows_of(&c) * 5;
    double *want = tu_dalloc(n), *o = tu_dalloc(n);
    int32_t *want_blocks = blocks_alloc(&c), *blocks = blocks_alloc(&c);
    model_nsa(&c, want, want_blocks);
    for (int layout = STILL_LAYOUT_BHND; layout <= STILL_LAYOUT_BNHD; layout++)
        for (int dtype = STILL_F32; dtype <= STILL_F64; dtype++) {
            ck_assert_int_eq(nsa_run_as(&c, &c.cfg, layout, dtype, o, blocks), STILL_OK);
            TU_ASSERT_CLOSE(o, want, n, dtype == STILL_F64 ? 1e-12 : 1e-6, "GQA layout/dtype");
            assert_blocks_equal(blocks, want_blocks, nsel, "GQA selection");
        }
    free(want); free(o); free(want_blocks); free(blocks);
    nsa_case_free(&c);
}
END_TEST

/* Causality (what decode = prefill rests on): the forward of every prefix
 * is the prefix of the forward; a query range writes its rows only, the
 * same as the whole call, and the selection whole. */
START_TEST(test_prefixes_and_query_ranges)
{
    tu_rng g;
    tu_rng_seed(&g, 1708);
    nsa_case c;
    const int64_t N = 23, dv = 2, S = 4;
    nsa_case_init(&c, &g, 1, 2, 1, N, 3, dv, 3, S, 5);
    nsa_case_gates(&c, &g);
    double *full = tu_dalloc(2 * N * dv), *o = tu_dalloc(2 * N * dv);
    int32_t *blocks_full = blocks_alloc(&c), *blocks = blocks_alloc(&c);
    ck_assert_int_eq(nsa_run(&c, full, blocks_full), STILL_OK);
    for (int64_t n = 1; n < N; n++) {
        nsa_case p = c;
        p.shape.seq_len = n;
        p.q = tu_dalloc(2 * n * 3);
        p.k = tu_dalloc(n * 3);
        p.v = tu_dalloc(n * dv);
        p.gates = tu_dalloc(2 * n * 3);
        for (int64_t h = 0; h < 2; h++) {
            memcpy(p.q + h * n * 3, c.q + h * N * 3, (size_t)(n * 3) * sizeof(double));
            memcpy(p.gates + h * n * 3, c.gates + h * N * 3, (size_t)(n * 3) * sizeof(double));
        }
        memcpy(p.k, c.k, (size_t)(n * 3) * sizeof(double));
        memcpy(p.v, c.v, (size_t)(n * dv) * sizeof(double));
        ck_assert_int_eq(nsa_run(&p, o, blocks), STILL_OK);
        for (int64_t h = 0; h < 2; h++) {
            TU_ASSERT_CLOSE(o + h * n * dv, full + h * N * dv, n * dv, 0.0, "prefix");
            assert_blocks_equal(blocks + h * n * S, blocks_full + h * N * S, n * S,
                                "prefix selection");
        }
        nsa_case_free(&p);
    }
    /* the queries 7..15 only */
    still_config range = c.cfg;
    range.query_begin = 7;
    range.query_end = 16;
    for (int64_t i = 0; i < 2 * N * dv; i++)
        o[i] = 0.0;
    ck_assert_int_eq(nsa_run_as(&c, &range, STILL_LAYOUT_BHND, STILL_F64, o, blocks), STILL_OK);
    for (int64_t h = 0; h < 2; h++)
        for (int64_t t = 0; t < N; t++)
            for (int64_t e = 0; e < dv; e++) {
                const double x = o[(h * N + t) * dv + e];
                if (t >= 7 && t < 16)
                    ck_assert_msg(x == full[(h * N + t) * dv + e], "range row %lld", (long long)t);
                else
                    ck_assert_msg(x == 0.0, "row %lld outside the range written", (long long)t);
            }
    assert_blocks_equal(blocks, blocks_full, 2 * N * S, "range: the selection whole");
    free(full); free(o); free(blocks_full); free(blocks);
    nsa_case_free(&c);
}
END_TEST

/* Refusals: S < 3, BS < 1, App. A and liger with nsa (STILL_E_CONFIG);
 * sigma, the chunk selections and a forced selection (UNSUPPORTED);
 * non-finite gates; the fast path, the states and the gradients refuse
 * routing nsa until they have it (STILL_E_UNSUPPORTED). */
START_TEST(test_invalid_nsa_refused)
{
    tu_rng g;
    tu_rng_seed(&g, 1709);
    nsa_case c;
    const int64_t N = 10;
    nsa_case_init(&c, &g, 1, 2, 1, N, 2, 2, 3, 3, 0);
    nsa_case_gates(&c, &g);
    double o[2 * 10 * 2], sigma[2 * 10];
    uint8_t sel[2 * 10] = {0};
    still_tensors t;
    still_config cfg = c.cfg;

    cfg.nsa_topk = 2;
    ck_assert_int_eq(nsa_run_as(&c, &cfg, STILL_LAYOUT_BHND, STILL_F64, o, NULL), STILL_E_CONFIG);
    cfg = c.cfg;
    cfg.nsa_block = 0;
    ck_assert_int_eq(nsa_run_as(&c, &cfg, STILL_LAYOUT_BHND, STILL_F64, o, NULL), STILL_E_CONFIG);
    cfg = c.cfg;
    cfg.phantom_sink = 1;
    ck_assert_int_eq(nsa_run_as(&c, &cfg, STILL_LAYOUT_BHND, STILL_F64, o, NULL), STILL_E_CONFIG);
    cfg = c.cfg;
    cfg.mixer = STILL_MIXER_LIGER;
    ck_assert_int_eq(nsa_run_as(&c, &cfg, STILL_LAYOUT_BHND, STILL_F64, o, NULL), STILL_E_CONFIG);

    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c.q; t.k = c.k; t.v = c.v; t.o = o;
    t.nsa_gates = c.gates;
    ck_assert_int_eq(still_ref_forward(&c.cfg, &c.shape, NULL, &t), STILL_OK);
    t.sigma = sigma;
    ck_assert_int_eq(still_ref_forward(&c.cfg, &c.shape, NULL, &t), STILL_E_UNSUPPORTED);
    t.sigma = NULL;
    t.selected = sel;
    ck_assert_int_eq(still_ref_forward(&c.cfg, &c.shape, NULL, &t), STILL_E_UNSUPPORTED);
    t.selected = NULL;
    t.selection_in = sel;
    ck_assert_int_eq(still_ref_forward(&c.cfg, &c.shape, NULL, &t), STILL_E_UNSUPPORTED);
    t.selection_in = NULL;
    c.gates[7] = NAN;
    ck_assert_int_eq(still_ref_forward(&c.cfg, &c.shape, NULL, &t), STILL_E_NONFINITE);
    c.gates[7] = 0.5;
    /* the gate G is not read by nsa: a non-finite one is ignored */
    double bad_gate[2 * 10 * 2];
    for (int i = 0; i < 40; i++)
        bad_gate[i] = NAN;
    t.gate = bad_gate;
    ck_assert_int_eq(still_ref_forward(&c.cfg, &c.shape, NULL, &t), STILL_OK);
    t.gate = NULL;

    /* the other paths: float32 inputs */
    float qf[2 * 10 * 2], kf[10 * 2], vf[10 * 2], of[2 * 10 * 2];
    for (int i = 0; i < 40; i++)
        qf[i] = (float)c.q[i];
    for (int i = 0; i < 20; i++) {
        kf[i] = (float)c.k[i];
        vf[i] = (float)c.v[i];
    }
    still_tensors tf;
    memset(&tf, 0, sizeof tf);
    tf.dtype = STILL_F32;
    tf.q = qf; tf.k = kf; tf.v = vf; tf.o = of;
    ck_assert_int_eq(still_forward(&c.cfg, &c.shape, NULL, &tf), STILL_E_UNSUPPORTED);
    still_state *st = NULL;
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, STILL_PATH_REF, &st),
                     STILL_E_UNSUPPORTED);
    ck_assert_ptr_null(st);
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, STILL_PATH_FAST, &st),
                     STILL_E_UNSUPPORTED);
    double dq[2 * 10 * 2];
    still_grads gr;
    memset(&gr, 0, sizeof gr);
    gr.dq = dq;
    /* the fast VJP has no nsa yet (the ref VJP is test_vjp_nsa's) */
    ck_assert_int_eq(still_vjp(&c.cfg, &c.shape, NULL, &tf, of, &gr), STILL_E_UNSUPPORTED);
    nsa_case_free(&c);
}
END_TEST

static Suite *nsa_suite(void)
{
    Suite *s = suite_create("ref_nsa");
    TCase *tc = tcase_create("nsa");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_nsa_matches_brute_force_model);
    tcase_add_test(tc, test_all_blocks_selected_is_teacher);
    tcase_add_test(tc, test_sliding_gates_are_window_drop);
    tcase_add_test(tc, test_group_shares_its_blocks);
    tcase_add_test(tc, test_ties_choose_the_smaller_block);
    tcase_add_test(tc, test_no_visible_block_gives_zero_compressed_branch);
    tcase_add_test(tc, test_gqa_layouts_and_dtypes);
    tcase_add_test(tc, test_prefixes_and_query_ranges);
    tcase_add_test(tc, test_invalid_nsa_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(nsa_suite());
}
