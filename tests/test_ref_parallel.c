/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * test_ref_parallel.c -- the reference path at scale: threads over the
 * queries of a head (SPEC I7: the same bits for every thread count), query
 * ranges (the outputs of a split run, put together, equal one run; rows
 * outside a range are not written), and the progress callback (reports
 * from the calling thread, 0 first and the total last, cancellation).
 */
#include "testutil.h"

#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* One case per configuration the driver distinguishes. */
enum { CASE_SALIENCY, CASE_PER_KV_CAP, CASE_WINDOW_OMEGA, CASE_L0_BNHD, CASE_AUTHORS, NCASES };

static void make_case(int which, tu_case *c, tu_rng *g)
{
    still_shape s = {2, 4, 2, 150, 8, 6, STILL_LAYOUT_BHND};
    if (which == CASE_L0_BNHD)
        s.layout = STILL_LAYOUT_BNHD;
    tu_case_init(c, g, &s, 1.0, 1);
    c->cfg.chunk = 16;
    c->cfg.topk = 3;
    switch (which) {
    case CASE_PER_KV_CAP:
        c->cfg.select_per_kv = 1;
        c->cfg.max_sel = 7;
        break;
    case CASE_WINDOW_OMEGA:
        c->cfg.routing = STILL_ROUTING_WINDOW;
        c->cfg.window = 20;
        tu_case_random_params(c, g, 10, 1, 1, 0, 1);
        break;
    case CASE_L0_BNHD:
        c->cfg.local = 0;
        break;
    case CASE_AUTHORS:
        c->cfg.saliency = STILL_SALIENCY_AUTHORS;
        c->cfg.phantom_sink = 1;
        c->cfg.window = 16;
        break;
    default:
        break;
    }
}

static int64_t out_count(const tu_case *c)
{
    const still_shape *s = &c->shape;
    return s->batch * s->heads_q * s->seq_len * s->dim_v;
}

START_TEST(test_ref_forward_same_bits_for_every_thread_count)
{
    tu_rng g;
    tu_rng_seed(&g, 100 + (uint64_t)_i);
    tu_case c;
    make_case(_i, &c, &g);
    const int64_t n = out_count(&c), rows = c.shape.batch * c.shape.heads_q * c.shape.seq_len;
    double *o1 = tu_dalloc(n), *on = tu_dalloc(n), *s1 = tu_dalloc(rows), *sn = tu_dalloc(rows);
    uint8_t *sel1 = tu_alloc((size_t)rows), *seln = tu_alloc((size_t)rows);
    c.cfg.threads = 1;
    ck_assert_int_eq(tu_run_ref(&c, o1, s1, sel1), STILL_OK);
    const int counts[] = {2, 3, 7};
    for (int i = 0; i < 3; i++) {
        c.cfg.threads = counts[i];
        ck_assert_int_eq(tu_run_ref(&c, on, sn, seln), STILL_OK);
        ck_assert_msg(!memcmp(o1, on, (size_t)n * sizeof *o1), "o differs at %d threads",
                      counts[i]);
        ck_assert_msg(!memcmp(s1, sn, (size_t)rows * sizeof *s1), "sigma differs at %d threads",
                      counts[i]);
        ck_assert(!memcmp(sel1, seln, (size_t)rows));
    }
    free(o1); free(on); free(s1); free(sn); free(sel1); free(seln);
    tu_case_free(&c);
}
END_TEST

START_TEST(test_ref_teacher_same_bits_for_every_thread_count)
{
    tu_rng g;
    tu_rng_seed(&g, 7);
    tu_case c;
    make_case(CASE_L0_BNHD, &c, &g);
    const int64_t n = out_count(&c);
    double *o1 = tu_dalloc(n), *on = tu_dalloc(n);
    c.cfg.threads = 1;
    ck_assert_int_eq(tu_run_teacher(&c, o1), STILL_OK);
    c.cfg.threads = 3;
    ck_assert_int_eq(tu_run_teacher(&c, on), STILL_OK);
    ck_assert(!memcmp(o1, on, (size_t)n * sizeof *o1));
    free(o1); free(on);
    tu_case_free(&c);
}
END_TEST

/* The case's call on raw arrays (tu_run_ref converts its output), so that
 * rows outside a query range can be seen untouched. */
typedef struct raw_call {
    double *q, *k, *v, *gate, *o;
    still_tensors t;
} raw_call;

static void raw_init(const tu_case *c, raw_call *rc)
{
    const still_shape *s = &c->shape;
    const int64_t nq = s->batch * s->heads_q * s->seq_len, nk = s->batch * s->heads_kv * s->seq_len;
    rc->q = tu_dalloc(nq * s->dim_qk);
    rc->k = tu_dalloc(nk * s->dim_qk);
    rc->v = tu_dalloc(nk * s->dim_v);
    rc->gate = tu_dalloc(nq * s->dim_v);
    rc->o = tu_dalloc(nq * s->dim_v);
    tu_to_layout(c->q, s->batch, s->heads_q, s->seq_len, s->dim_qk, s->layout, STILL_F64, rc->q);
    tu_to_layout(c->k, s->batch, s->heads_kv, s->seq_len, s->dim_qk, s->layout, STILL_F64, rc->k);
    tu_to_layout(c->v, s->batch, s->heads_kv, s->seq_len, s->dim_v, s->layout, STILL_F64, rc->v);
    tu_to_layout(c->gate, s->batch, s->heads_q, s->seq_len, s->dim_v, s->layout, STILL_F64,
                 rc->gate);
    memset(&rc->t, 0, sizeof rc->t);
    rc->t.dtype = STILL_F64;
    rc->t.q = rc->q;
    rc->t.k = rc->k;
    rc->t.v = rc->v;
    rc->t.gate = rc->gate;
    rc->t.o = rc->o;
}

static void raw_free(raw_call *rc)
{
    free(rc->q); free(rc->k); free(rc->v); free(rc->gate); free(rc->o);
}

/* The set-up of the tests of one case's raw call: case WHICH from SEED. */
static void fixture_open(int which, uint64_t seed, tu_case *c, raw_call *rc)
{
    tu_rng g;
    tu_rng_seed(&g, seed);
    make_case(which, c, &g);
    raw_init(c, rc);
}

static void fixture_close(tu_case *c, raw_call *rc)
{
    raw_free(rc);
    tu_case_free(c);
}

START_TEST(test_ref_query_ranges_put_together_equal_one_run)
{
    tu_rng g;
    tu_rng_seed(&g, 200 + (uint64_t)_i);
    tu_case c;
    make_case(_i, &c, &g);
    const still_shape *s = &c.shape;
    const int64_t n = out_count(&c), N = s->seq_len;
    raw_call whole, split;
    raw_init(&c, &whole);
    raw_init(&c, &split);
    ck_assert_int_eq(still_ref_forward(&c.cfg, s, c.use_params ? &c.params : NULL, &whole.t),
                     STILL_OK);
    /* ranges that cut chunks and the exact window anywhere */
    const int64_t cuts[] = {0, 1, 37, 38, 100, N};
    for (int64_t i = 0; i < n; i++)
        split.o[i] = 12345.0;
    for (int r = 0; r < 5; r++) {
        still_config cfg = c.cfg;
        cfg.query_begin = cuts[r];
        cfg.query_end = cuts[r + 1];
        cfg.threads = 1 + r % 3;
        ck_assert_int_eq(still_ref_forward(&cfg, s, c.use_params ? &c.params : NULL, &split.t),
                         STILL_OK);
        /* rows at and past the range's end are untouched so far */
        double *o_bhnd = tu_dalloc(n);
        tu_from_layout(split.o, s->batch, s->heads_q, N, s->dim_v, s->layout, STILL_F64, o_bhnd);
        for (int64_t b = 0; b < s->batch; b++)
            for (int64_t h = 0; h < s->heads_q; h++)
                for (int64_t t = cuts[r + 1]; t < N; t++)
                    ck_assert(o_bhnd[tu_bhnd(s->heads_q, N, s->dim_v, b, h, t, 0)] == 12345.0);
        free(o_bhnd);
    }
    ck_assert_msg(!memcmp(whole.o, split.o, (size_t)n * sizeof(double)),
                  "the pieces differ from one run");
    raw_free(&whole);
    raw_free(&split);
    tu_case_free(&c);
}
END_TEST

START_TEST(test_ref_teacher_query_ranges_put_together_equal_one_run)
{
    tu_rng g;
    tu_rng_seed(&g, 31);
    tu_case c;
    make_case(CASE_L0_BNHD, &c, &g);
    const int64_t n = out_count(&c);
    raw_call whole, split;
    raw_init(&c, &whole);
    raw_init(&c, &split);
    ck_assert_int_eq(still_ref_teacher(&c.cfg, &c.shape, &whole.t), STILL_OK);
    still_config cfg = c.cfg;
    cfg.query_begin = 0;
    cfg.query_end = 64;
    ck_assert_int_eq(still_ref_teacher(&cfg, &c.shape, &split.t), STILL_OK);
    cfg.query_begin = 64;
    cfg.query_end = c.shape.seq_len;
    ck_assert_int_eq(still_ref_teacher(&cfg, &c.shape, &split.t), STILL_OK);
    ck_assert(!memcmp(whole.o, split.o, (size_t)n * sizeof(double)));
    raw_free(&whole);
    raw_free(&split);
    tu_case_free(&c);
}
END_TEST

START_TEST(test_query_range_checked_and_refused_where_unsupported)
{
    tu_case c;
    raw_call rc;
    fixture_open(CASE_SALIENCY, 5, &c, &rc);
    const int64_t N = c.shape.seq_len;
    const int64_t bad[][2] = {{-1, 5}, {5, 5}, {6, 5}, {0, N + 1}, {3, 0}};
    for (int i = 0; i < 5; i++) {
        still_config cfg = c.cfg;
        cfg.query_begin = bad[i][0];
        cfg.query_end = bad[i][1];
        ck_assert_int_eq(still_ref_forward(&cfg, &c.shape, NULL, &rc.t), STILL_E_CONFIG);
        ck_assert_int_eq(still_ref_teacher(&cfg, &c.shape, &rc.t), STILL_E_CONFIG);
    }
    still_config cfg = c.cfg;
    cfg.query_begin = 0;
    cfg.query_end = 10;
    /* the fast path, the states and the gradients have no range */
    still_tensors t32 = rc.t;
    t32.dtype = STILL_F32;
    ck_assert_int_eq(still_forward(&cfg, &c.shape, NULL, &t32), STILL_E_UNSUPPORTED);
    ck_assert_int_eq(still_teacher(&cfg, &c.shape, &t32), STILL_E_UNSUPPORTED);
    still_state *st = NULL;
    ck_assert_int_eq(still_state_create(&cfg, &c.shape, NULL, STILL_PATH_REF, &st),
                     STILL_E_UNSUPPORTED);
    ck_assert_ptr_null(st);
    double loss;
    ck_assert_int_eq(still_ref_transfer_grad(&cfg, &c.shape, NULL, &rc.t, NULL, &loss, NULL),
                     STILL_E_UNSUPPORTED);
    fixture_close(&c, &rc);
}
END_TEST

/* What the callback saw. */
typedef struct seen {
    pthread_t caller;
    int calls, other_thread, decreasing, stop_after;
    int64_t first, last, total;
} seen;

static int on_progress(void *user, int64_t done, int64_t total)
{
    seen *s = user;
    if (!pthread_equal(pthread_self(), s->caller))
        s->other_thread++;
    if (s->calls == 0)
        s->first = done;
    else if (done < s->last)
        s->decreasing++;
    s->last = done;
    s->total = total;
    s->calls++;
    return s->stop_after > 0 && s->calls >= s->stop_after;
}

START_TEST(test_progress_reports_from_the_caller_zero_first_total_last)
{
    tu_case c;
    raw_call rc;
    fixture_open(CASE_SALIENCY, 9, &c, &rc);
    for (int teacher = 0; teacher < 2; teacher++) {
        seen s = {pthread_self(), 0, 0, 0, 0, -1, -1, -1};
        still_config cfg = c.cfg;
        cfg.threads = 2;
        cfg.query_begin = 10;
        cfg.query_end = 140;
        cfg.progress = on_progress;
        cfg.progress_user = &s;
        int r = teacher ? still_ref_teacher(&cfg, &c.shape, &rc.t)
                        : still_ref_forward(&cfg, &c.shape, NULL, &rc.t);
        ck_assert_int_eq(r, STILL_OK);
        const int64_t total = c.shape.batch * c.shape.heads_q * (140 - 10);
        ck_assert_int_eq(s.total, total);
        ck_assert_int_eq(s.first, 0);
        ck_assert_int_eq(s.last, total);
        /* 0 first, once a head at least, the total last */
        ck_assert_int_ge(s.calls, 2 + c.shape.batch * c.shape.heads_q);
        ck_assert_int_eq(s.other_thread, 0);
        ck_assert_int_eq(s.decreasing, 0);
    }
    fixture_close(&c, &rc);
}
END_TEST

START_TEST(test_progress_nonzero_return_cancels)
{
    tu_case c;
    raw_call rc;
    fixture_open(CASE_SALIENCY, 10, &c, &rc);
    for (int stop_after = 1; stop_after <= 3; stop_after++) {
        seen s = {pthread_self(), 0, 0, 0, stop_after, -1, -1, -1};
        still_config cfg = c.cfg;
        cfg.threads = 2;
        cfg.progress = on_progress;
        cfg.progress_user = &s;
        ck_assert_int_eq(still_ref_forward(&cfg, &c.shape, NULL, &rc.t), STILL_E_CANCELED);
        ck_assert_int_eq(s.calls, stop_after); /* not called again once it said stop */
        s.calls = 0;
        ck_assert_int_eq(still_ref_teacher(&cfg, &c.shape, &rc.t), STILL_E_CANCELED);
        ck_assert_int_eq(s.calls, stop_after);
    }
    fixture_close(&c, &rc);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ref_parallel");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_ref_forward_same_bits_for_every_thread_count, 0, NCASES);
    tcase_add_test(tc, test_ref_teacher_same_bits_for_every_thread_count);
    tcase_add_loop_test(tc, test_ref_query_ranges_put_together_equal_one_run, 0, NCASES);
    tcase_add_test(tc, test_ref_teacher_query_ranges_put_together_equal_one_run);
    tcase_add_test(tc, test_query_range_checked_and_refused_where_unsupported);
    tcase_add_test(tc, test_progress_reports_from_the_caller_zero_first_total_last);
    tcase_add_test(tc, test_progress_nonzero_return_cancels);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
