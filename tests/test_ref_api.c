/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_ref_api.c -- the public API of the ref path: versions, status codes,
 * defaults, every error path (SPEC §10: validated before any work),
 * determinism (SPEC I7) and the gating projection (SPEC §6). */
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL 12345.0

/* A small valid call, in f64 BHND, with every output filled with a sentinel. */
typedef struct api_call {
    still_shape shape;
    still_config cfg;
    still_params params;
    still_tensors t;
    double q[2 * 4 * 10 * 3], k[2 * 2 * 10 * 3], v[2 * 2 * 10 * 2], gate[2 * 4 * 10 * 2];
    double o[2 * 4 * 10 * 2], sigma[2 * 4 * 10];
    uint8_t sel[2 * 4 * 10];
    double W[4 * 3 * 3], b[4 * 3], u[4 * 3], window_w[4];
} api_call;

static void call_init(api_call *a, uint64_t seed)
{
    tu_rng g;
    tu_rng_seed(&g, seed);
    memset(a, 0, sizeof *a);
    a->shape = (still_shape){2, 4, 2, 10, 3, 2, STILL_LAYOUT_BHND};
    still_config_default(&a->cfg);
    a->cfg.chunk = 4;
    a->cfg.topk = 2;
    a->cfg.local = 1;
    still_params_default(&a->params);
    tu_fill_normal(&g, a->q, 240, 1.0);
    tu_fill_normal(&g, a->k, 120, 1.0);
    tu_fill_normal(&g, a->v, 80, 1.0);
    tu_fill(&g, a->gate, 160, 0.1, 1.0);
    tu_fill_normal(&g, a->W, 36, 0.5);
    tu_fill_normal(&g, a->b, 12, 0.5);
    tu_fill_normal(&g, a->u, 12, 0.5);
    tu_fill_normal(&g, a->window_w, 4, 0.5);
    for (int i = 0; i < 160; i++)
        a->o[i] = SENTINEL;
    for (int i = 0; i < 80; i++) {
        a->sigma[i] = SENTINEL;
        a->sel[i] = 7;
    }
    a->t.dtype = STILL_F64;
    a->t.q = a->q;
    a->t.k = a->k;
    a->t.v = a->v;
    a->t.gate = a->gate;
    a->t.o = a->o;
    a->t.sigma = a->sigma;
    a->t.selected = a->sel;
}

static int call_forward(api_call *a)
{
    return still_ref_forward(&a->cfg, &a->shape, &a->params, &a->t);
}

/* the outputs still hold their sentinels: nothing was written */
static void assert_untouched(const api_call *a)
{
    for (int i = 0; i < 160; i++)
        ck_assert_msg(a->o[i] == SENTINEL, "o[%d] written on failure", i);
    for (int i = 0; i < 80; i++) {
        ck_assert_msg(a->sigma[i] == SENTINEL, "sigma[%d] written on failure", i);
        ck_assert_msg(a->sel[i] == 7, "selected[%d] written on failure", i);
    }
}

static void expect_forward(api_call *a, int want, const char *what)
{
    int rc = call_forward(a);
    ck_assert_msg(rc == want, "%s: got %d (%s), want %d (%s)", what, rc, still_strerror(rc), want,
                  still_strerror(want));
    if (want != STILL_OK)
        assert_untouched(a);
}

/* ---- versions and status codes --------------------------------------------- */
START_TEST(test_version_macros_match_runtime_string)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%d.%d.%d", STILL_VERSION_MAJOR, STILL_VERSION_MINOR,
             STILL_VERSION_PATCH);
    ck_assert_ptr_nonnull(still_version_string());
    ck_assert_str_eq(still_version_string(), buf);
    ck_assert_str_eq(STILL_VERSION_STRING, buf);
    ck_assert_int_eq(STILL_VERSION_NUMBER, STILL_VERSION_MAJOR * 10000 +
                                               STILL_VERSION_MINOR * 100 + STILL_VERSION_PATCH);
}
END_TEST

START_TEST(test_strerror_every_code_named_and_distinct)
{
    const int codes[] = {STILL_OK,         STILL_E_NULL,      STILL_E_SHAPE,     STILL_E_CONFIG,
                         STILL_E_NONFINITE, STILL_E_NOMEM,    STILL_E_OVERFLOW,  STILL_E_ISA,
                         STILL_E_DTYPE,    STILL_E_SELECTION, STILL_E_IO,        STILL_E_FORMAT,
                         STILL_E_VERSION,  STILL_E_CHECKSUM,  STILL_E_STATE,     STILL_E_PARAMS,
                         STILL_E_UNSUPPORTED, STILL_E_CANCELED};
    const int n = (int)(sizeof codes / sizeof codes[0]);
    const char *unknown = still_strerror(-9999);
    ck_assert_ptr_nonnull(unknown);
    for (int i = 0; i < n; i++) {
        const char *s = still_strerror(codes[i]);
        ck_assert_msg(s != NULL && s[0] != '\0', "code %d has no name", codes[i]);
        ck_assert_msg(strcmp(s, unknown) != 0, "code %d named as unknown", codes[i]);
        for (int j = 0; j < i; j++)
            ck_assert_msg(strcmp(s, still_strerror(codes[j])) != 0, "codes %d and %d share '%s'",
                          codes[i], codes[j], s);
    }
}
END_TEST

START_TEST(test_strerror_unknown_codes_non_null)
{
    const int odd[] = {1, 42, -17, -1000, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        const char *s = still_strerror(odd[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_msg(s[0] != '\0', "empty message for %d", odd[i]);
    }
}
END_TEST

/* ---- defaults ------------------------------------------------------------ */
START_TEST(test_config_default_is_spec_defaults)
{
    still_config c;
    memset(&c, 0x5a, sizeof c);
    still_config_default(&c);
    ck_assert_int_eq(c.chunk, 64);          /* SPEC §5 */
    ck_assert_int_eq(c.topk, 4);            /* SPEC §5: C/16 */
    ck_assert_int_eq(c.window, 0);          /* SPEC §4: w = C */
    ck_assert_int_eq(c.local, 2);           /* SPEC §6 */
    ck_assert_int_eq(c.max_sel, 0);         /* SPEC §5: no cap */
    ck_assert_int_eq(c.routing, STILL_ROUTING_SALIENCY);
    ck_assert_int_eq(c.act, STILL_ACT_HEDGEHOG); /* SPEC §2 */
    ck_assert_int_eq(c.npmap, 1);
    ck_assert_int_eq(c.select_per_kv, 0);
    ck_assert(c.scale == 0.0);
    ck_assert(c.eps_den == 1e-6);           /* SPEC §6 */
    ck_assert_int_eq(c.saliency, STILL_SALIENCY_SPEC);
    ck_assert_int_eq(c.phantom_sink, 0);
    still_config_default(NULL); /* must not crash */
}
END_TEST

START_TEST(test_params_default_is_identity_tied)
{
    still_params p;
    memset(&p, 0x5a, sizeof p);
    still_params_default(&p);
    ck_assert_ptr_null(p.fq.W);
    ck_assert_ptr_null(p.fq.b);
    ck_assert_ptr_null(p.fq.u);
    ck_assert(p.fk_tied != 0);
    ck_assert_ptr_null(p.window_w);
    still_params_default(NULL);
}
END_TEST

START_TEST(test_null_params_and_config_equal_explicit_defaults)
{
    api_call a;
    call_init(&a, 11);
    a.t.gate = NULL;
    still_config_default(&a.cfg);
    ck_assert_int_eq(call_forward(&a), STILL_OK);
    double o1[160];
    memcpy(o1, a.o, sizeof o1);
    a.t.o = a.o; /* params = NULL, cfg = NULL: the defaults */
    for (int i = 0; i < 160; i++)
        a.o[i] = SENTINEL;
    ck_assert_int_eq(still_ref_forward(NULL, &a.shape, NULL, &a.t), STILL_OK);
    ck_assert_msg(memcmp(o1, a.o, sizeof o1) == 0, "NULL cfg/params differ from the defaults");
}
END_TEST

START_TEST(test_feature_dim_is_2f_for_hedgehog_else_f)
{
    still_config c;
    still_params p;
    double W[5 * 3];
    int64_t m = -1;
    memset(W, 0, sizeof W);
    still_config_default(&c);
    still_params_default(&p);
    for (int act = STILL_ACT_HEDGEHOG; act <= STILL_ACT_RELU; act++) {
        c.act = act;
        int64_t mult = act == STILL_ACT_HEDGEHOG ? 2 : 1;
        ck_assert_int_eq(still_feature_dim(&c, NULL, 7, &m), STILL_OK);
        ck_assert_int_eq(m, mult * 7);
        p.fq.W = W;
        p.fq.f = 5;
        ck_assert_int_eq(still_feature_dim(&c, &p, 3, &m), STILL_OK);
        ck_assert_int_eq(m, mult * 5);
        p.fq.W = NULL;
        p.fq.f = 0;
    }
    ck_assert_int_eq(still_feature_dim(&c, NULL, 3, NULL), STILL_E_NULL);
}
END_TEST

/* ---- error paths ----------------------------------------------------------- */
START_TEST(test_null_pointers_rejected)
{
    api_call a;
    call_init(&a, 1);
    ck_assert_int_eq(still_ref_forward(&a.cfg, NULL, &a.params, &a.t), STILL_E_NULL);
    ck_assert_int_eq(still_ref_forward(&a.cfg, &a.shape, &a.params, NULL), STILL_E_NULL);
    assert_untouched(&a);
    a.t.q = NULL;
    expect_forward(&a, STILL_E_NULL, "q NULL");
    call_init(&a, 1);
    a.t.k = NULL;
    expect_forward(&a, STILL_E_NULL, "k NULL");
    call_init(&a, 1);
    a.t.v = NULL;
    expect_forward(&a, STILL_E_NULL, "v NULL");
    call_init(&a, 1);
    a.t.o = NULL;
    ck_assert_int_eq(call_forward(&a), STILL_E_NULL);
    /* the teacher too */
    call_init(&a, 1);
    ck_assert_int_eq(still_ref_teacher(&a.cfg, NULL, &a.t), STILL_E_NULL);
    ck_assert_int_eq(still_ref_teacher(&a.cfg, &a.shape, NULL), STILL_E_NULL);
    a.t.k = NULL;
    ck_assert_int_eq(still_ref_teacher(&a.cfg, &a.shape, &a.t), STILL_E_NULL);
    call_init(&a, 1);
    a.t.o = NULL;
    ck_assert_int_eq(still_ref_teacher(&a.cfg, &a.shape, &a.t), STILL_E_NULL);
    ck_assert_int_eq(still_config_validate(NULL, &a.shape), STILL_E_NULL);
    ck_assert_int_eq(still_config_validate(&a.cfg, NULL), STILL_E_NULL);
}
END_TEST

START_TEST(test_bad_shapes_rejected)
{
    api_call a;
    const struct {
        still_shape s;
        const char *what;
    } bad[] = {
        {{0, 4, 2, 10, 3, 2, 0}, "B = 0"},          {{2, 0, 2, 10, 3, 2, 0}, "Hq = 0"},
        {{2, 4, 0, 10, 3, 2, 0}, "Hk = 0"},         {{2, 4, 2, 0, 3, 2, 0}, "N = 0"},
        {{2, 4, 2, 10, 0, 2, 0}, "d = 0"},          {{2, 4, 2, 10, 3, 0, 0}, "dv = 0"},
        {{-1, 4, 2, 10, 3, 2, 0}, "B < 0"},         {{2, 4, 2, -10, 3, 2, 0}, "N < 0"},
        {{2, 4, 3, 10, 3, 2, 0}, "Hq % Hk != 0"},   {{2, 2, 4, 10, 3, 2, 0}, "Hk > Hq"},
        {{2, 4, 2, 10, 3, 2, 2}, "unknown layout"}, {{2, 4, 2, 10, 3, 2, -1}, "negative layout"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        call_init(&a, 2);
        a.shape = bad[i].s;
        expect_forward(&a, STILL_E_SHAPE, bad[i].what);
        ck_assert_msg(still_ref_teacher(&a.cfg, &a.shape, &a.t) == STILL_E_SHAPE, "teacher: %s",
                      bad[i].what);
        ck_assert_msg(still_config_validate(&a.cfg, &a.shape) == STILL_E_SHAPE, "validate: %s",
                      bad[i].what);
    }
}
END_TEST

START_TEST(test_overflowing_shapes_rejected)
{
    api_call a;
    const int64_t big = (int64_t)1 << 40;
    const still_shape bad[] = {
        {big, 4, 2, big, 3, 2, 0},
        {2, big, big, big, 3, 2, 0},
        {1, 1, 1, INT64_MAX, INT64_MAX, 1, 0},
        {INT64_MAX, 1, 1, 2, 1, 1, 0},
        {1, 1, 1, big, 1, big, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        call_init(&a, 3);
        a.shape = bad[i];
        int rc = call_forward(&a);
        ck_assert_msg(rc == STILL_E_OVERFLOW || rc == STILL_E_SHAPE, "shape %zu: got %d", i, rc);
        assert_untouched(&a);
        rc = still_ref_teacher(&a.cfg, &a.shape, &a.t);
        ck_assert_msg(rc == STILL_E_OVERFLOW || rc == STILL_E_SHAPE, "teacher %zu: got %d", i, rc);
    }
}
END_TEST

START_TEST(test_bad_config_rejected)
{
    api_call a;
    for (int i = 0; i < 20; i++) {
        call_init(&a, 4);
        const char *what = "";
        switch (i) {
        case 0: a.cfg.chunk = 0; what = "chunk 0"; break;
        case 1: a.cfg.chunk = -3; what = "chunk < 0"; break;
        case 2: a.cfg.topk = 5; what = "topk > chunk"; break;
        case 3: a.cfg.topk = -1; what = "topk < 0"; break;
        case 4: a.cfg.window = 1; what = "window 1"; break;
        case 5: a.cfg.window = -2; what = "window < 0"; break;
        case 6: a.cfg.local = -1; what = "local < 0"; break;
        case 7: a.cfg.max_sel = -1; what = "max_sel < 0"; break;
        case 8: a.cfg.routing = STILL_ROUTING_NSA + 1; what = "unknown routing"; break;
        case 9: a.cfg.routing = -1; what = "negative routing"; break;
        case 10: a.cfg.act = 4; what = "unknown act"; break;
        case 11: a.cfg.act = -1; what = "negative act"; break;
        case 12: a.cfg.eps_den = -1e-9; what = "negative eps_den"; break;
        case 13: a.cfg.eps_den = NAN; what = "NaN eps_den"; break;
        case 14: a.cfg.eps_den = INFINITY; what = "inf eps_den"; break;
        case 15: a.cfg.scale = NAN; what = "NaN scale"; break;
        case 16: a.cfg.scale = INFINITY; what = "inf scale"; break;
        case 17: a.cfg.scale = -INFINITY; what = "-inf scale"; break;
        case 18: a.cfg.npmap = 2; what = "npmap 2"; break;
        case 19: a.cfg.select_per_kv = -1; what = "select_per_kv -1"; break;
        }
        expect_forward(&a, STILL_E_CONFIG, what);
        ck_assert_msg(still_config_validate(&a.cfg, &a.shape) == STILL_E_CONFIG, "validate: %s",
                      what);
    }
}
END_TEST

START_TEST(test_topk_range_checked_only_for_saliency_routing)
{
    api_call a;
    /* SPEC §6: routing all/none fix k themselves; window ignores it */
    for (int routing = STILL_ROUTING_WINDOW; routing <= STILL_ROUTING_NONE; routing++) {
        call_init(&a, 5);
        a.cfg.routing = routing;
        a.cfg.topk = 99;
        expect_forward(&a, STILL_OK, "topk out of range with routing != saliency");
    }
    call_init(&a, 5);
    a.cfg.topk = 4; /* k == C is allowed */
    expect_forward(&a, STILL_OK, "topk == chunk");
    call_init(&a, 5);
    a.cfg.topk = 0;
    expect_forward(&a, STILL_OK, "topk 0");
}
END_TEST

START_TEST(test_bad_dtype_rejected)
{
    api_call a;
    const int bad[] = {2, -1, 99};
    for (size_t i = 0; i < 3; i++) {
        call_init(&a, 6);
        a.t.dtype = bad[i];
        expect_forward(&a, STILL_E_DTYPE, "unknown dtype");
        ck_assert_int_eq(still_ref_teacher(&a.cfg, &a.shape, &a.t), STILL_E_DTYPE);
    }
}
END_TEST

/* Puts a non-finite value at element `at` of one input and expects
 * STILL_E_NONFINITE with every output untouched. */
START_TEST(test_nonfinite_inputs_rejected_output_untouched)
{
    const double bad[] = {NAN, INFINITY, -INFINITY};
    for (int which = 0; which < 4; which++)
        for (int vi = 0; vi < 3; vi++) {
            api_call a;
            call_init(&a, 7);
            double *arr = which == 0 ? a.q : which == 1 ? a.k : which == 2 ? a.v : a.gate;
            int64_t n = which == 0 ? 240 : which == 1 ? 120 : which == 2 ? 80 : 160;
            arr[(vi * 37 + which * 11) % n] = bad[vi];
            expect_forward(&a, STILL_E_NONFINITE, "non-finite input");
            if (which < 3) {
                double o[160];
                for (int i = 0; i < 160; i++)
                    o[i] = SENTINEL;
                a.t.o = o;
                ck_assert_int_eq(still_ref_teacher(&a.cfg, &a.shape, &a.t), STILL_E_NONFINITE);
                for (int i = 0; i < 160; i++)
                    ck_assert(o[i] == SENTINEL);
            }
        }
}
END_TEST

START_TEST(test_nonfinite_f32_inputs_rejected)
{
    api_call a;
    float qf[240], kf[120], vf[80], of[160];
    for (int which = 0; which < 3; which++) {
        call_init(&a, 8);
        for (int i = 0; i < 240; i++)
            qf[i] = (float)a.q[i];
        for (int i = 0; i < 120; i++)
            kf[i] = (float)a.k[i];
        for (int i = 0; i < 80; i++)
            vf[i] = (float)a.v[i];
        for (int i = 0; i < 160; i++)
            of[i] = 7.0f;
        (which == 0 ? qf : which == 1 ? kf : vf)[5] = which == 1 ? -INFINITY : NAN;
        a.t.dtype = STILL_F32;
        a.t.q = qf;
        a.t.k = kf;
        a.t.v = vf;
        a.t.gate = NULL;
        a.t.o = of;
        a.t.sigma = NULL;
        a.t.selected = NULL;
        ck_assert_int_eq(call_forward(&a), STILL_E_NONFINITE);
        for (int i = 0; i < 160; i++)
            ck_assert(of[i] == 7.0f);
    }
}
END_TEST

START_TEST(test_nonfinite_params_rejected)
{
    for (int which = 0; which < 5; which++) {
        api_call a;
        call_init(&a, 9);
        a.params.fq.f = 3;
        a.params.fq.W = a.W;
        a.params.fq.b = a.b;
        a.params.fq.u = a.u;
        a.params.window_w = a.window_w;
        double Wk[36];
        memcpy(Wk, a.W, sizeof Wk);
        const char *what = "";
        switch (which) {
        case 0: a.W[17] = NAN; what = "NaN in fq.W"; break;
        case 1: a.b[4] = INFINITY; what = "inf in fq.b"; break;
        case 2: a.u[11] = NAN; what = "NaN in fq.u"; break;
        case 3: a.window_w[3] = -INFINITY; what = "-inf in window_w"; break;
        case 4:
            a.params.fk_tied = 0;
            a.params.fk.f = 3;
            a.params.fk.W = Wk;
            Wk[35] = NAN;
            what = "NaN in fk.W";
            break;
        }
        expect_forward(&a, STILL_E_NONFINITE, what);
    }
}
END_TEST

START_TEST(test_malformed_params_rejected)
{
    for (int which = 0; which < 6; which++) {
        api_call a;
        call_init(&a, 10);
        const char *what = "";
        switch (which) {
        case 0: a.params.fq.f = 2; what = "W NULL with f != d"; break;
        case 1: a.params.fq.W = a.W; a.params.fq.f = 0; what = "W with f = 0"; break;
        case 2: a.params.fq.W = a.W; a.params.fq.f = -3; what = "W with f < 0"; break;
        case 3:
            a.params.fq.W = a.W;
            a.params.fq.f = 3;
            a.params.fk_tied = 0;
            a.params.fk.W = a.W;
            a.params.fk.f = 2;
            what = "fk rows != fq rows";
            break;
        case 4:
            a.params.fk_tied = 0;
            a.params.fk.f = 5; /* W NULL: must be 0 or d */
            what = "fk W NULL with f != d";
            break;
        case 5:
            a.params.fq.b = a.b; /* bias without its length */
            a.params.fq.f = 0;
            what = "bias with f unknown";
            break;
        }
        expect_forward(&a, STILL_E_PARAMS, what);
    }
}
END_TEST

START_TEST(test_config_validate_accepts_valid_configs)
{
    still_config c;
    still_shape s = {1, 2, 1, 5, 4, 3, STILL_LAYOUT_BNHD};
    still_config_default(&c);
    ck_assert_int_eq(still_config_validate(&c, &s), STILL_OK);
    c.chunk = 1;
    c.topk = 1;
    c.local = 0;
    c.window = 2;
    c.max_sel = 3;
    c.routing = STILL_ROUTING_WINDOW;
    c.act = STILL_ACT_RELU;
    c.eps_den = 0.0;
    c.scale = -0.5;
    ck_assert_int_eq(still_config_validate(&c, &s), STILL_OK);
}
END_TEST

/* ---- determinism (SPEC I7) --------------------------------------------------- */
START_TEST(test_two_calls_bitwise_equal)
{
    tu_rng g;
    tu_rng_seed(&g, 12);
    for (int rep = 0; rep < 4; rep++) {
        still_shape s = {2, 4, 2, 37 + rep * 13, 5, 3, rep % 2};
        tu_case c;
        tu_case_init(&c, &g, &s, 1.0, rep % 2);
        tu_case_random_params(&c, &g, 4, rep & 1, rep & 2, rep < 2, 0);
        c.cfg.chunk = 8;
        c.cfg.topk = 2;
        c.cfg.max_sel = rep;
        c.cfg.local = rep % 3;
        c.cfg.act = rep;
        int64_t no = s.batch * s.heads_q * s.seq_len * s.dim_v, ns = s.batch * s.heads_q * s.seq_len;
        double *o1 = tu_dalloc(no), *o2 = tu_dalloc(no), *s1 = tu_dalloc(ns), *s2 = tu_dalloc(ns);
        uint8_t *e1 = tu_alloc((size_t)ns), *e2 = tu_alloc((size_t)ns);
        ck_assert_int_eq(tu_run_ref(&c, o1, s1, e1), STILL_OK);
        ck_assert_int_eq(tu_run_ref(&c, o2, s2, e2), STILL_OK);
        ck_assert_msg(memcmp(o1, o2, (size_t)no * sizeof(double)) == 0, "o differs between calls");
        ck_assert_msg(memcmp(s1, s2, (size_t)ns * sizeof(double)) == 0, "sigma differs");
        ck_assert_msg(memcmp(e1, e2, (size_t)ns) == 0, "selection differs");
        ck_assert_int_eq(tu_run_teacher(&c, o1), STILL_OK);
        ck_assert_int_eq(tu_run_teacher(&c, o2), STILL_OK);
        ck_assert_msg(memcmp(o1, o2, (size_t)no * sizeof(double)) == 0, "teacher differs");
        free(o1);
        free(o2);
        free(s1);
        free(s2);
        free(e1);
        free(e2);
        tu_case_free(&c);
    }
}
END_TEST

START_TEST(test_inputs_not_modified)
{
    api_call a;
    call_init(&a, 13);
    api_call copy = a;
    ck_assert_int_eq(call_forward(&a), STILL_OK);
    ck_assert(memcmp(a.q, copy.q, sizeof a.q) == 0);
    ck_assert(memcmp(a.k, copy.k, sizeof a.k) == 0);
    ck_assert(memcmp(a.v, copy.v, sizeof a.v) == 0);
    ck_assert(memcmp(a.gate, copy.gate, sizeof a.gate) == 0);
    /* and every output was written */
    for (int i = 0; i < 160; i++)
        ck_assert(a.o[i] != SENTINEL && isfinite(a.o[i]));
    for (int i = 0; i < 80; i++)
        ck_assert(a.sel[i] <= 1 && a.sigma[i] != SENTINEL);
}
END_TEST

/* ---- gating projection (SPEC §6) ---------------------------------------------- */
START_TEST(test_gate_projection_matches_direct_sigmoid)
{
    tu_rng g;
    tu_rng_seed(&g, 14);
    const int64_t dims[][5] = {{1, 1, 1, 1, 1}, {2, 7, 5, 3, 4}, {3, 4, 9, 2, 6}, {1, 11, 3, 4, 1}};
    for (size_t c = 0; c < 4; c++) {
        int64_t B = dims[c][0], N = dims[c][1], hid = dims[c][2], Hq = dims[c][3], dv = dims[c][4];
        double *X = tu_dalloc(B * N * hid), *Wg = tu_dalloc(Hq * dv * hid);
        double *G = tu_dalloc(B * Hq * N * dv);
        tu_fill_normal(&g, X, B * N * hid, 1.0);
        tu_fill_normal(&g, Wg, Hq * dv * hid, 1.0);
        ck_assert_int_eq(still_ref_gate_projection(B, N, hid, Hq, dv, X, Wg, G), STILL_OK);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < Hq; h++)
                for (int64_t n = 0; n < N; n++)
                    for (int64_t e = 0; e < dv; e++) {
                        double z = 0.0;
                        for (int64_t i = 0; i < hid; i++)
                            z += X[(b * N + n) * hid + i] * Wg[(h * dv + e) * hid + i];
                        double want = tu_sigmoid(z), got = G[tu_bhnd(Hq, N, dv, b, h, n, e)];
                        ck_assert_msg(fabs(got - want) <= 1e-14, "G[%lld,%lld,%lld,%lld] %.17g vs %.17g",
                                      (long long)b, (long long)h, (long long)n, (long long)e, got,
                                      want);
                    }
        free(X);
        free(Wg);
        free(G);
    }
}
END_TEST

START_TEST(test_gate_projection_errors)
{
    double X[24], Wg[24], G[48];
    for (int i = 0; i < 24; i++)
        X[i] = Wg[i] = 0.1 * i;
    for (int i = 0; i < 48; i++)
        G[i] = SENTINEL;
    ck_assert_int_eq(still_ref_gate_projection(1, 2, 3, 2, 2, NULL, Wg, G), STILL_E_NULL);
    ck_assert_int_eq(still_ref_gate_projection(1, 2, 3, 2, 2, X, NULL, G), STILL_E_NULL);
    ck_assert_int_eq(still_ref_gate_projection(1, 2, 3, 2, 2, X, Wg, NULL), STILL_E_NULL);
    ck_assert_int_eq(still_ref_gate_projection(0, 2, 3, 2, 2, X, Wg, G), STILL_E_SHAPE);
    ck_assert_int_eq(still_ref_gate_projection(1, 0, 3, 2, 2, X, Wg, G), STILL_E_SHAPE);
    ck_assert_int_eq(still_ref_gate_projection(1, 2, 0, 2, 2, X, Wg, G), STILL_E_SHAPE);
    ck_assert_int_eq(still_ref_gate_projection(1, 2, 3, 0, 2, X, Wg, G), STILL_E_SHAPE);
    ck_assert_int_eq(still_ref_gate_projection(1, 2, 3, 2, -1, X, Wg, G), STILL_E_SHAPE);
    int rc = still_ref_gate_projection(INT64_MAX, 2, 3, 2, 2, X, Wg, G);
    ck_assert_msg(rc == STILL_E_OVERFLOW || rc == STILL_E_SHAPE, "overflow: %d", rc);
    rc = still_ref_gate_projection(1, (int64_t)1 << 40, (int64_t)1 << 40, 2, 2, X, Wg, G);
    ck_assert_msg(rc == STILL_E_OVERFLOW || rc == STILL_E_SHAPE, "overflow: %d", rc);
    X[3] = NAN; /* SPEC §10 */
    ck_assert_int_eq(still_ref_gate_projection(1, 2, 3, 2, 2, X, Wg, G), STILL_E_NONFINITE);
    X[3] = 0.3;
    Wg[7] = INFINITY;
    ck_assert_int_eq(still_ref_gate_projection(1, 2, 3, 2, 2, X, Wg, G), STILL_E_NONFINITE);
    for (int i = 0; i < 48; i++)
        ck_assert(G[i] == SENTINEL);
}
END_TEST

static Suite *api_suite(void)
{
    Suite *s = suite_create("ref_api");
    TCase *tc = tcase_create("api");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_version_macros_match_runtime_string);
    tcase_add_test(tc, test_strerror_every_code_named_and_distinct);
    tcase_add_test(tc, test_strerror_unknown_codes_non_null);
    tcase_add_test(tc, test_config_default_is_spec_defaults);
    tcase_add_test(tc, test_params_default_is_identity_tied);
    tcase_add_test(tc, test_null_params_and_config_equal_explicit_defaults);
    tcase_add_test(tc, test_feature_dim_is_2f_for_hedgehog_else_f);
    tcase_add_test(tc, test_null_pointers_rejected);
    tcase_add_test(tc, test_bad_shapes_rejected);
    tcase_add_test(tc, test_overflowing_shapes_rejected);
    tcase_add_test(tc, test_bad_config_rejected);
    tcase_add_test(tc, test_topk_range_checked_only_for_saliency_routing);
    tcase_add_test(tc, test_bad_dtype_rejected);
    tcase_add_test(tc, test_nonfinite_inputs_rejected_output_untouched);
    tcase_add_test(tc, test_nonfinite_f32_inputs_rejected);
    tcase_add_test(tc, test_nonfinite_params_rejected);
    tcase_add_test(tc, test_malformed_params_rejected);
    tcase_add_test(tc, test_config_validate_accepts_valid_configs);
    tcase_add_test(tc, test_two_calls_bitwise_equal);
    tcase_add_test(tc, test_inputs_not_modified);
    tcase_add_test(tc, test_gate_projection_matches_direct_sigmoid);
    tcase_add_test(tc, test_gate_projection_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(api_suite());
}
