/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_state_liger.c -- the streaming state of mixer liger (SPEC §16, §7):
 * decode = prefill (still_ref_forward) for every split of the sequence,
 * with and without q_lin/k_lin, GQA, both layouts; save / restore /
 * continue = never stopping, bitwise; the stream refused when cut or
 * altered; memory bounded by w and S; non-finite linear inputs refused
 * before the state changes; alpha = 1, beta = 0 decodes routing window
 * with rest = drop. */
#include "testutil.h"
#include "state.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct lcase {
    still_shape shape; /* shape.seq_len = N */
    still_config cfg;
    double *q, *k, *v, *q_lin, *k_lin; /* in shape.layout, double; lin may be NULL */
} lcase;

static void lcase_init(lcase *c, uint64_t seed, int64_t B, int64_t Hq, int64_t Hk, int64_t N,
                       int64_t d, int64_t dv, int64_t w, int with_lin, int layout)
{
    tu_rng g;
    tu_rng_seed(&g, seed);
    memset(c, 0, sizeof *c);
    c->shape = (still_shape){B, Hq, Hk, N, d, dv, layout};
    still_config_default(&c->cfg);
    c->cfg.mixer = STILL_MIXER_LIGER;
    c->cfg.window = w;
    c->cfg.alpha = 0.4;
    c->cfg.beta = 0.9;
    c->q = tu_dalloc(B * Hq * N * d);
    c->k = tu_dalloc(B * Hk * N * d);
    c->v = tu_dalloc(B * Hk * N * dv);
    tu_fill_normal(&g, c->q, B * Hq * N * d, 1.0);
    tu_fill_normal(&g, c->k, B * Hk * N * d, 1.0);
    tu_fill_normal(&g, c->v, B * Hk * N * dv, 1.0);
    if (with_lin) {
        c->q_lin = tu_dalloc(B * Hq * N * d);
        c->k_lin = tu_dalloc(B * Hk * N * d);
        tu_fill_normal(&g, c->q_lin, B * Hq * N * d, 2.0);
        tu_fill_normal(&g, c->k_lin, B * Hk * N * d, 2.0);
    }
}

static void lcase_free(lcase *c)
{
    free(c->q); free(c->k); free(c->v); free(c->q_lin); free(c->k_lin);
}

static int64_t nq_of(const lcase *c) { return c->shape.batch * c->shape.heads_q; }

static int prefill(const lcase *c, double *o)
{
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c->q, t.k = c->k, t.v = c->v, t.o = o;
    t.q_lin = c->q_lin, t.k_lin = c->k_lin;
    return still_ref_forward(&c->cfg, &c->shape, NULL, &t);
}

/* Rows t0..t0+n-1 of a [B,H,N,D] array in the case's layout, packed into
 * out [B,H,n,D] of the same layout (the block of one append). */
static void block_of(const lcase *c, const double *x, int64_t H, int64_t D, int64_t t0,
                     int64_t n, double *out)
{
    const int64_t B = c->shape.batch, N = c->shape.seq_len;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < n; i++) {
                int64_t src, dst;
                if (c->shape.layout == STILL_LAYOUT_BHND) {
                    src = ((b * H + h) * N + t0 + i) * D;
                    dst = ((b * H + h) * n + i) * D;
                } else {
                    src = ((b * N + t0 + i) * H + h) * D;
                    dst = ((b * n + i) * H + h) * D;
                }
                memcpy(out + dst, x + src, (size_t)D * sizeof(double));
            }
}

/* The inverse of block_of for the outputs. */
static void unblock(const lcase *c, const double *in, int64_t H, int64_t D, int64_t t0,
                    int64_t n, double *x)
{
    const int64_t B = c->shape.batch, N = c->shape.seq_len;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < n; i++) {
                int64_t src, dst;
                if (c->shape.layout == STILL_LAYOUT_BHND) {
                    dst = ((b * H + h) * N + t0 + i) * D;
                    src = ((b * H + h) * n + i) * D;
                } else {
                    dst = ((b * N + t0 + i) * H + h) * D;
                    src = ((b * n + i) * H + h) * D;
                }
                memcpy(x + dst, in + src, (size_t)D * sizeof(double));
            }
}

/* The path of the states the tests create (the ref path unless a test
 * says otherwise): the fast path takes float blocks. */
static int g_path = STILL_PATH_REF;

/* n doubles of x as float, in place (the array keeps its bytes: floats). */
static void *as_path(double *x, int64_t n)
{
    if (!x || g_path == STILL_PATH_REF)
        return x;
    float *f = (float *)x;
    for (int64_t i = 0; i < n; i++)
        f[i] = (float)x[i]; /* f[i] overlaps x[i / 2] only, already read */
    return f;
}

/* Appends tokens t0..t0+n-1 to st, scattering their outputs into o. */
static int append(still_state *st, const lcase *c, int64_t t0, int64_t n, double *o)
{
    const int64_t d = c->shape.dim_qk, dv = c->shape.dim_v;
    const int64_t Hq = c->shape.heads_q, Hk = c->shape.heads_kv, B = c->shape.batch;
    double *q = tu_dalloc(B * Hq * n * d), *k = tu_dalloc(B * Hk * n * d);
    double *v = tu_dalloc(B * Hk * n * dv), *ob = tu_dalloc(B * Hq * n * dv);
    double *ql = c->q_lin ? tu_dalloc(B * Hq * n * d) : NULL;
    double *kl = c->k_lin ? tu_dalloc(B * Hk * n * d) : NULL;
    still_tensors t;
    block_of(c, c->q, Hq, d, t0, n, q);
    block_of(c, c->k, Hk, d, t0, n, k);
    block_of(c, c->v, Hk, dv, t0, n, v);
    if (ql)
        block_of(c, c->q_lin, Hq, d, t0, n, ql);
    if (kl)
        block_of(c, c->k_lin, Hk, d, t0, n, kl);
    memset(&t, 0, sizeof t);
    t.dtype = g_path == STILL_PATH_REF ? STILL_F64 : STILL_F32;
    t.q = as_path(q, B * Hq * n * d), t.k = as_path(k, B * Hk * n * d);
    t.v = as_path(v, B * Hk * n * dv), t.o = ob;
    t.q_lin = as_path(ql, B * Hq * n * d), t.k_lin = as_path(kl, B * Hk * n * d);
    int rc = still_state_append(st, n, &t);
    if (rc == STILL_OK && g_path != STILL_PATH_REF) /* float outputs to double, from the end */
        for (int64_t i = B * Hq * n * dv - 1; i >= 0; i--)
            ob[i] = ((float *)ob)[i];
    if (rc == STILL_OK)
        unblock(c, ob, Hq, dv, t0, n, o);
    free(q); free(k); free(v); free(ob); free(ql); free(kl);
    return rc;
}

/* Decodes the whole case in the blocks given (sum N) into o. */
static void decode(const lcase *c, const int64_t *blocks, int nb, double *o)
{
    still_state *st;
    ck_assert_int_eq(still_state_create(&c->cfg, &c->shape, NULL, g_path, &st), STILL_OK);
    int64_t t0 = 0;
    for (int i = 0; i < nb; i++) {
        ck_assert_int_eq(append(st, c, t0, blocks[i], o), STILL_OK);
        t0 += blocks[i];
    }
    ck_assert_int_eq(t0, c->shape.seq_len);
    still_state_destroy(st);
}

/* SPEC §16 (I6): decode = prefill, whatever the blocks: one block, blocks
 * of one, a prompt then tokens one by one (prompts shorter and longer than
 * w), random blocks.  The prefill sums the decay in log space from t down,
 * the state multiplies S step by step: equal to rounding. */
START_TEST(test_decode_equals_prefill_for_every_split)
{
    const struct { int64_t B, Hq, Hk, N, d, dv, w; int lin, layout; } shapes[] = {
        {1, 1, 1, 23, 3, 2, 4, 0, STILL_LAYOUT_BHND},
        {2, 4, 2, 31, 4, 3, 5, 1, STILL_LAYOUT_BHND},
        {1, 3, 1, 29, 5, 4, 7, 1, STILL_LAYOUT_BNHD},
        {1, 2, 2, 17, 2, 5, 64, 1, STILL_LAYOUT_BNHD}, /* w > N */
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        lcase c;
        lcase_init(&c, 1700 + s, shapes[s].B, shapes[s].Hq, shapes[s].Hk, shapes[s].N,
                   shapes[s].d, shapes[s].dv, shapes[s].w, shapes[s].lin, shapes[s].layout);
        const int64_t N = c.shape.seq_len, n = nq_of(&c) * N * c.shape.dim_v;
        double *want = tu_dalloc(n), *got = tu_dalloc(n);
        int64_t *blocks = tu_alloc((size_t)N * sizeof *blocks);
        ck_assert_int_eq(prefill(&c, want), STILL_OK);
        const double tol = 1e-12 * (1.0 + tu_max_abs(want, n));
        tu_rng g;
        tu_rng_seed(&g, 17 + s);
        for (int schedule = 0; schedule < 9; schedule++) {
            int nb = 0;
            if (schedule == 0) {
                blocks[nb++] = N;
            } else if (schedule == 1) {
                for (int64_t i = 0; i < N; i++)
                    blocks[nb++] = 1;
            } else if (schedule < 6) { /* prompt 1, w-1, w, w+1 then ones */
                const int64_t w = c.cfg.window;
                int64_t first = schedule == 2 ? 1 : w - 4 + schedule;
                first = first < 1 ? 1 : first > N - 1 ? N - 1 : first;
                blocks[nb++] = first;
                for (int64_t i = first; i < N; i++)
                    blocks[nb++] = 1;
            } else {
                for (int64_t left = N; left > 0;) {
                    int64_t b = tu_int(&g, 1, 9);
                    b = b < left ? b : left;
                    blocks[nb++] = b;
                    left -= b;
                }
            }
            memset(got, 0, (size_t)n * sizeof *got);
            decode(&c, blocks, nb, got);
            TU_ASSERT_CLOSE(got, want, n, tol, "liger decode vs prefill");
        }
        free(want); free(got); free(blocks);
        lcase_free(&c);
    }
}
END_TEST

/* SPEC §16: alpha = 1, beta = 0 decodes routing window with rest = drop
 * and eps_den 0 (the STILL state's window engine), to rounding. */
START_TEST(test_alpha_one_beta_zero_decodes_window_drop)
{
    lcase c;
    lcase_init(&c, 1710, 1, 2, 1, 21, 3, 2, 4, 1, STILL_LAYOUT_BHND);
    c.cfg.alpha = 1.0;
    c.cfg.beta = 0.0;
    const int64_t N = 21, n = nq_of(&c) * N * 2;
    double *got = tu_dalloc(n), *want = tu_dalloc(n);
    int64_t blocks[21];
    for (int i = 0; i < 21; i++)
        blocks[i] = 1;
    decode(&c, blocks, 21, got);
    still_config w;
    still_config_default(&w);
    w.routing = STILL_ROUTING_WINDOW;
    w.rest = STILL_REST_DROP;
    w.window = 4;
    w.eps_den = 0.0;
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c.q, t.k = c.k, t.v = c.v, t.o = want;
    ck_assert_int_eq(still_ref_forward(&w, &c.shape, NULL, &t), STILL_OK);
    TU_ASSERT_CLOSE(got, want, n, 1e-13, "liger(1, 0) decode vs window drop");
    free(got); free(want);
    lcase_free(&c);
}
END_TEST

/* Saves the state after every prefix p, restores it, continues to N: the
 * outputs are those of the state that never stopped, bitwise. */
static void save_restore_continue(void)
{
    lcase c;
    lcase_init(&c, 1720, 2, 4, 2, 19, 3, 4, 5, 1, STILL_LAYOUT_BNHD);
    const int64_t N = 19, n = nq_of(&c) * N * 4;
    double *whole = tu_dalloc(n), *got = tu_dalloc(n);
    int64_t ones[19];
    for (int i = 0; i < 19; i++)
        ones[i] = 1;
    decode(&c, ones, 19, whole);
    for (int64_t p = 0; p <= N; p += 3) {
        still_state *st, *back;
        size_t len;
        ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, g_path, &st), STILL_OK);
        memset(got, 0, (size_t)n * sizeof *got);
        for (int64_t t = 0; t < p; t++)
            ck_assert_int_eq(append(st, &c, t, 1, got), STILL_OK);
        ck_assert_int_eq(still_state_save(st, NULL, 0, &len), STILL_OK);
        unsigned char *buf = tu_alloc(len);
        ck_assert_int_eq(still_state_save(st, buf, len, &len), STILL_OK);
        still_state_destroy(st);
        ck_assert_uint_eq(buf[8], 4); /* stream version 4: the liger fields */
        ck_assert_uint_eq(buf[12], (unsigned)g_path);
        ck_assert_int_eq(still_state_load(buf, len, NULL, &back), STILL_OK);
        int64_t pos;
        ck_assert_int_eq(still_state_position(back, &pos), STILL_OK);
        ck_assert_int_eq(pos, p);
        for (int64_t t = p; t < N; t += 2)
            ck_assert_int_eq(append(back, &c, t, t + 2 <= N ? 2 : 1, got), STILL_OK);
        still_state_destroy(back);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(got[i] == whole[i], "p %lld: element %lld differs", (long long)p,
                          (long long)i);
        /* a cut stream or a flipped byte is refused, nothing leaked */
        ck_assert_int_ne(still_state_load(buf, len - 9, NULL, &back), STILL_OK);
        buf[len / 2] ^= 0x10;
        ck_assert_int_ne(still_state_load(buf, len, NULL, &back), STILL_OK);
        free(buf);
    }
    free(whole); free(got);
    lcase_free(&c);
}

START_TEST(test_save_restore_continue_is_bitwise)
{
    save_restore_continue();
}
END_TEST

/* A restored state takes its mixer weights from the stream: a stream
 * whose alpha was rewritten (checksum recomputed) continues as a state
 * created with that alpha would, bitwise. */
START_TEST(test_stream_carries_alpha_beta)
{
    lcase c;
    lcase_init(&c, 1730, 1, 1, 1, 9, 2, 2, 3, 0, STILL_LAYOUT_BHND);
    still_state *st, *other, *back;
    size_t len;
    double o_other[18], o_back[18];
    still_config cfg_other = c.cfg;
    cfg_other.alpha = 0.125;
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, STILL_PATH_REF, &st), STILL_OK);
    ck_assert_int_eq(still_state_create(&cfg_other, &c.shape, NULL, STILL_PATH_REF, &other),
                     STILL_OK);
    for (int64_t t = 0; t < 5; t++) {
        ck_assert_int_eq(append(st, &c, t, 1, o_back), STILL_OK);
        ck_assert_int_eq(append(other, &c, t, 1, o_other), STILL_OK);
    }
    ck_assert_int_eq(still_state_save(st, NULL, 0, &len), STILL_OK);
    unsigned char *buf = tu_alloc(len);
    ck_assert_int_eq(still_state_save(st, buf, len, &len), STILL_OK);
    /* version 4: the version-2 header (192 bytes), i32 mixer, f64 alpha */
    uint64_t bits;
    double alpha;
    memcpy(&bits, &cfg_other.alpha, 8);
    ck_assert_uint_eq(buf[192], STILL_MIXER_LIGER);
    for (int b = 0; b < 8; b++)
        buf[196 + b] = (unsigned char)(bits >> (8 * b));
    uint64_t h = still__fnv1a64(STILL__FNV_INIT, buf, len - 8);
    for (int b = 0; b < 8; b++)
        buf[len - 8 + b] = (unsigned char)(h >> (8 * b));
    ck_assert_int_eq(still_state_load(buf, len, NULL, &back), STILL_OK);
    memcpy(&alpha, &back->cfg.alpha, 8);
    ck_assert(alpha == 0.125);
    ck_assert_int_eq(append(back, &c, 5, 4, o_back), STILL_OK);
    ck_assert_int_eq(append(other, &c, 5, 4, o_other), STILL_OK);
    for (int i = 10; i < 18; i++)
        ck_assert(o_back[i] == o_other[i]);
    still_state_destroy(back);
    still_state_destroy(other);
    still_state_destroy(st);
    free(buf);
    lcase_free(&c);
}
END_TEST

/* SPEC §16: a unit holds the last w keys and values and S per kv head:
 * the memory stops growing once the window is full, and grows with the
 * group size not at all (GQA shares k, v, S). */
START_TEST(test_memory_bounded_by_window_and_state)
{
    lcase c;
    lcase_init(&c, 1740, 1, 4, 1, 200, 8, 8, 16, 1, STILL_LAYOUT_BHND);
    const int64_t n = 4 * 200 * 8;
    double *o = tu_dalloc(n);
    still_state *st;
    size_t at_w = 0, at_end = 0;
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, STILL_PATH_REF, &st), STILL_OK);
    for (int64_t t = 0; t < 200; t++) {
        ck_assert_int_eq(append(st, &c, t, 1, o), STILL_OK);
        if (t == 15)
            ck_assert_int_eq(still_state_bytes(st, &at_w), STILL_OK);
    }
    ck_assert_int_eq(still_state_bytes(st, &at_end), STILL_OK);
    ck_assert_uint_eq(at_w, at_end);
    /* the arrays: w (d + dv) + d dv doubles for the one kv head, and less
     * than a few kilobytes of bookkeeping */
    ck_assert_uint_ge(at_end, (16 * (8 + 8) + 8 * 8) * sizeof(double));
    ck_assert_uint_le(at_end, (16 * (8 + 8) + 8 * 8) * sizeof(double) + 4096);
    size_t len;
    ck_assert_int_eq(still_state_save(st, NULL, 0, &len), STILL_OK);
    ck_assert_uint_le(len, (16 * (8 + 8) + 8 * 8) * sizeof(double) + 512);
    still_state_destroy(st);
    free(o);
    lcase_free(&c);
}
END_TEST

/* Non-finite q_lin or k_lin is refused before the state takes the block
 * (its position does not move); the fast path has no liger state yet. */
START_TEST(test_nonfinite_lin_inputs_refused)
{
    lcase c;
    lcase_init(&c, 1750, 1, 2, 1, 6, 2, 2, 3, 1, STILL_LAYOUT_BHND);
    still_state *st;
    double o[2 * 6 * 2];
    ck_assert_int_eq(still_state_create(&c.cfg, &c.shape, NULL, STILL_PATH_REF, &st), STILL_OK);
    ck_assert_int_eq(append(st, &c, 0, 2, o), STILL_OK);
    c.k_lin[2 * 2] = NAN; /* token 2 of the kv head */
    ck_assert_int_eq(append(st, &c, 2, 1, o), STILL_E_NONFINITE);
    c.k_lin[2 * 2] = 0.0;
    c.q_lin[6 * 2 + 2 * 2 + 1] = INFINITY; /* head 1, token 2 */
    ck_assert_int_eq(append(st, &c, 2, 1, o), STILL_E_NONFINITE);
    int64_t pos;
    ck_assert_int_eq(still_state_position(st, &pos), STILL_OK);
    ck_assert_int_eq(pos, 2);
    /* liger has no saliency: a sigma output is refused, the block not taken */
    c.q_lin[6 * 2 + 2 * 2 + 1] = 0.0;
    double sig[2];
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c.q, t.k = c.k, t.v = c.v, t.sigma = sig; /* shapes of one token: the first rows */
    ck_assert_int_eq(still_state_append(st, 1, &t), STILL_E_UNSUPPORTED);
    ck_assert_int_eq(still_state_position(st, &pos), STILL_OK);
    ck_assert_int_eq(pos, 2);
    still_state_destroy(st);
    lcase_free(&c);
}
END_TEST

/* The fast path's state: decode = the fast prefill (still_forward) within
 * SPEC §10 for every split, and the save / restore tests of the ref path,
 * on float streams. */
START_TEST(test_fast_decode_equals_fast_prefill)
{
    lcase c;
    lcase_init(&c, 1760, 2, 4, 2, 70, 8, 5, 9, 1, STILL_LAYOUT_BNHD);
    const int64_t N = 70, n = nq_of(&c) * N * 5, nin = nq_of(&c) * N * 8;
    const int64_t nk = c.shape.batch * c.shape.heads_kv * N;
    float *qf = tu_alloc((size_t)nin * 4), *qlf = tu_alloc((size_t)nin * 4);
    float *kf = tu_alloc((size_t)nk * 8 * 4), *klf = tu_alloc((size_t)nk * 8 * 4);
    float *vf = tu_alloc((size_t)nk * 5 * 4), *of = tu_alloc((size_t)n * 4);
    for (int64_t i = 0; i < nin; i++) {
        c.q[i] = qf[i] = (float)c.q[i];
        c.q_lin[i] = qlf[i] = (float)c.q_lin[i];
    }
    for (int64_t i = 0; i < nk * 8; i++) {
        c.k[i] = kf[i] = (float)c.k[i];
        c.k_lin[i] = klf[i] = (float)c.k_lin[i];
    }
    for (int64_t i = 0; i < nk * 5; i++)
        c.v[i] = vf[i] = (float)c.v[i];
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F32;
    t.q = qf, t.k = kf, t.v = vf, t.o = of, t.q_lin = qlf, t.k_lin = klf;
    ck_assert_int_eq(still_forward(&c.cfg, &c.shape, NULL, &t), STILL_OK);
    double *want = tu_dalloc(n), *got = tu_dalloc(n);
    for (int64_t i = 0; i < n; i++)
        want[i] = of[i];
    const double tol = 1e-5 * tu_max_abs(c.v, nk * 5);
    int64_t *blocks = tu_alloc((size_t)N * sizeof *blocks);
    tu_rng g;
    tu_rng_seed(&g, 1761);
    g_path = STILL_PATH_FAST;
    for (int schedule = 0; schedule < 4; schedule++) {
        int nb = 0;
        if (schedule == 0)
            blocks[nb++] = N;
        else if (schedule == 1)
            for (int64_t i = 0; i < N; i++)
                blocks[nb++] = 1;
        else if (schedule == 2) {
            blocks[nb++] = 10;
            for (int64_t i = 10; i < N; i++)
                blocks[nb++] = 1;
        } else
            for (int64_t left = N; left > 0;) {
                int64_t b = tu_int(&g, 1, 12);
                b = b < left ? b : left;
                blocks[nb++] = b;
                left -= b;
            }
        decode(&c, blocks, nb, got);
        ck_assert_msg(tu_max_abs_diff(got, want, n) <= tol, "schedule %d: %g > %g", schedule,
                      tu_max_abs_diff(got, want, n), tol);
    }
    g_path = STILL_PATH_REF;
    free(qf); free(qlf); free(kf); free(klf); free(vf); free(of);
    free(want); free(got); free(blocks);
    lcase_free(&c);
}
END_TEST

START_TEST(test_fast_save_restore_continue_is_bitwise)
{
    g_path = STILL_PATH_FAST;
    save_restore_continue();
    g_path = STILL_PATH_REF;
}
END_TEST

static Suite *state_liger_suite(void)
{
    Suite *s = suite_create("state_liger");
    TCase *tc = tcase_create("liger");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_decode_equals_prefill_for_every_split);
    tcase_add_test(tc, test_alpha_one_beta_zero_decodes_window_drop);
    tcase_add_test(tc, test_save_restore_continue_is_bitwise);
    tcase_add_test(tc, test_stream_carries_alpha_beta);
    tcase_add_test(tc, test_memory_bounded_by_window_and_state);
    tcase_add_test(tc, test_nonfinite_lin_inputs_refused);
    tcase_add_test(tc, test_fast_decode_equals_fast_prefill);
    tcase_add_test(tc, test_fast_save_restore_continue_is_bitwise);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(state_liger_suite());
}
