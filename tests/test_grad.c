/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_grad.c -- SPEC §8: the exact gradients of the attention-transfer
 * loss on the ref path agree with central finite differences of the ref
 * loss, for every parameter kind, routing, the cap, L, GQA, per-kv
 * selection, NP on/off, every activation and both layouts.  The selection
 * is a constant: the perturbed evaluations get the forward's selection
 * through selection_in.  Also: the loss is the mean squared error of
 * still_ref_forward against still_ref_teacher, and the gating
 * projection's backward agrees with finite differences. */
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_TOL 1e-6 /* relative, the contract of the issue */

/* One transfer problem; arrays in the layout of the call, dtype F64. */
typedef struct gcase {
    still_shape shape;
    still_config cfg;
    double *q, *k, *v, *gate;      /* layout arrays; gate may be NULL */
    double *fqW, *fqb, *fqu;       /* may be NULL */
    double *fkW, *fkb, *fku;       /* untied only */
    double *ww;                    /* window_w or NULL */
    int64_t f;
    still_params params;
    int use_params;
    uint8_t *sel;                  /* the forward's selection [B][Hq][N] */
    double *teacher;               /* o_teacher at the unperturbed inputs */
} gcase;

typedef struct gopts {
    int64_t f;                     /* 0: no parameters (identity defaults) */
    int with_b, with_u, tied, with_w, with_gate;
    double u_scale;                /* 0: u ~ N(0,1) */
} gopts;

static int64_t nq_of(const gcase *c)
{
    return c->shape.batch * c->shape.heads_q * c->shape.seq_len;
}

static int64_t nk_of(const gcase *c)
{
    return c->shape.batch * c->shape.heads_kv * c->shape.seq_len;
}

static double *normal_array(tu_rng *g, int64_t n, double sd)
{
    double *x = tu_dalloc(n);
    tu_fill_normal(g, x, n, sd);
    return x;
}

static void gcase_init(gcase *c, uint64_t seed, const still_shape *shape, const still_config *cfg,
                       const gopts *o)
{
    tu_rng g;
    const int64_t Hq = shape->heads_q, d = shape->dim_qk;
    memset(c, 0, sizeof *c);
    tu_rng_seed(&g, seed);
    c->shape = *shape;
    c->cfg = *cfg;
    c->q = normal_array(&g, nq_of(c) * d, 1.0);
    c->k = normal_array(&g, nk_of(c) * d, 1.0);
    c->v = normal_array(&g, nk_of(c) * shape->dim_v, 1.0);
    if (o->with_gate) {
        c->gate = tu_dalloc(nq_of(c) * shape->dim_v);
        tu_fill(&g, c->gate, nq_of(c) * shape->dim_v, 0.2, 1.0);
    }
    still_params_default(&c->params);
    c->f = o->f ? o->f : d;
    if (o->f) {
        c->use_params = 1;
        c->fqW = normal_array(&g, Hq * c->f * d, 1.0 / sqrt((double)d));
        c->fqb = o->with_b ? normal_array(&g, Hq * c->f, 0.3) : NULL;
        c->fqu = o->with_u ? normal_array(&g, Hq * d, o->u_scale ? o->u_scale : 1.0) : NULL;
        c->params.fq.f = c->f;
        c->params.fq.W = c->fqW;
        c->params.fq.b = c->fqb;
        c->params.fq.u = c->fqu;
        c->params.fk_tied = o->tied;
        if (!o->tied) {
            c->fkW = normal_array(&g, Hq * c->f * d, 1.0 / sqrt((double)d));
            c->fkb = o->with_b ? normal_array(&g, Hq * c->f, 0.3) : NULL;
            c->fku = o->with_u ? normal_array(&g, Hq * d, 1.0) : NULL;
            c->params.fk.f = c->f;
            c->params.fk.W = c->fkW;
            c->params.fk.b = c->fkb;
            c->params.fk.u = c->fku;
        }
    }
    if (o->with_w) {
        c->use_params = 1;
        c->ww = normal_array(&g, Hq, 1.0);
        c->params.window_w = c->ww;
    }
    c->sel = tu_alloc((size_t)nq_of(c));
    c->teacher = tu_dalloc(nq_of(c) * shape->dim_v);
}

static still_tensors gcase_tensors(const gcase *c);

/* The teacher is a constant of the loss (SPEC §8): fixed at the inputs
 * of the analytic evaluation. */
static void gcase_fix_teacher(gcase *c)
{
    still_tensors t = gcase_tensors(c);
    t.o = c->teacher;
    ck_assert_int_eq(still_ref_teacher(&c->cfg, &c->shape, &t), STILL_OK);
}

static void gcase_free(gcase *c)
{
    free(c->q); free(c->k); free(c->v); free(c->gate);
    free(c->fqW); free(c->fqb); free(c->fqu); free(c->fkW); free(c->fkb); free(c->fku);
    free(c->ww); free(c->sel); free(c->teacher);
}

static still_tensors gcase_tensors(const gcase *c)
{
    still_tensors t;
    memset(&t, 0, sizeof t);
    t.dtype = STILL_F64;
    t.q = c->q;
    t.k = c->k;
    t.v = c->v;
    t.gate = c->gate;
    return t;
}

/* The loss with the selection and the teacher fixed, from the oracle's
 * forward (still_ref_forward), not from the code under test. */
static double loss_fixed(const gcase *c)
{
    const int64_t n = nq_of(c) * c->shape.dim_v;
    double *o = tu_dalloc(n), loss = 0.0;
    still_tensors t = gcase_tensors(c);
    t.selection_in = c->sel;
    t.o = o;
    int rc = still_ref_forward(&c->cfg, &c->shape, c->use_params ? &c->params : NULL, &t);
    ck_assert_int_eq(rc, STILL_OK);
    for (int64_t i = 0; i < n; i++)
        loss += (o[i] - c->teacher[i]) * (o[i] - c->teacher[i]);
    free(o);
    return loss / (double)n;
}

/* A parameter array of the case and the analytic gradient of it. */
typedef struct kind {
    const char *name;
    double *param;
    double *grad;
    int64_t n;
} kind;

typedef struct gradset {
    still_grads g;
    kind kinds[11];
    int nkinds;
    double loss;
} gradset;

static void add_kind(gradset *s, const char *name, double *param, double **grad, int64_t n)
{
    *grad = tu_dalloc(n);
    s->kinds[s->nkinds++] = (kind){name, param, *grad, n};
}

/* Runs the forward with every gradient of the case wanted, and records its
 * selection for the finite differences. */
static void analytic(gcase *c, gradset *s)
{
    const still_shape *sh = &c->shape;
    const int64_t Hq = sh->heads_q, d = sh->dim_qk, f = c->f;
    memset(s, 0, sizeof *s);
    if (c->fqW)
        add_kind(s, "fq.W", c->fqW, &s->g.dfq_W, Hq * f * d);
    if (c->fqb)
        add_kind(s, "fq.b", c->fqb, &s->g.dfq_b, Hq * f);
    if (c->fqu)
        add_kind(s, "fq.u", c->fqu, &s->g.dfq_u, Hq * d);
    if (c->fkW)
        add_kind(s, "fk.W", c->fkW, &s->g.dfk_W, Hq * f * d);
    if (c->fkb)
        add_kind(s, "fk.b", c->fkb, &s->g.dfk_b, Hq * f);
    if (c->fku)
        add_kind(s, "fk.u", c->fku, &s->g.dfk_u, Hq * d);
    if (c->ww)
        add_kind(s, "window.w", c->ww, &s->g.dwindow_w, Hq);
    if (c->gate)
        add_kind(s, "gate", c->gate, &s->g.dgate, nq_of(c) * sh->dim_v);
    add_kind(s, "q", c->q, &s->g.dq, nq_of(c) * d);
    add_kind(s, "k", c->k, &s->g.dk, nk_of(c) * d);
    add_kind(s, "v", c->v, &s->g.dv, nk_of(c) * sh->dim_v);

    still_tensors t = gcase_tensors(c);
    t.selected = c->sel;
    int rc = still_ref_transfer_grad(&c->cfg, sh, c->use_params ? &c->params : NULL, &t, NULL,
                                     &s->loss, &s->g);
    ck_assert_int_eq(rc, STILL_OK);
    ck_assert(isfinite(s->loss) && s->loss > 0.0);
    /* the oracle's forward with this selection gives the same loss */
    gcase_fix_teacher(c);
    ck_assert_double_eq_tol(loss_fixed(c), s->loss, 1e-13 * s->loss);
}

static void gradset_free(gradset *s)
{
    for (int i = 0; i < s->nkinds; i++)
        free(s->kinds[i].grad);
}

#define FD_MAX_POINTS 36 /* elements checked per array, spread evenly */

/* max |fd - analytic| / max |analytic| over (up to FD_MAX_POINTS evenly
 * spread elements of) the array: central differences, step 1e-6
 * relative. */
static double fd_error(gcase *c, const kind *k)
{
    double max_diff = 0.0, max_grad = tu_max_abs(k->grad, k->n);
    const int64_t points = k->n < FD_MAX_POINTS ? k->n : FD_MAX_POINTS;
    for (int64_t p = 0; p < points; p++) {
        const int64_t i = p * k->n / points;
        const double x = k->param[i], h = 1e-6 * fmax(1.0, fabs(x));
        k->param[i] = x + h;
        double lp = loss_fixed(c);
        k->param[i] = x - h;
        double lm = loss_fixed(c);
        k->param[i] = x;
        double fd = (lp - lm) / (2.0 * h);
        max_diff = fmax(max_diff, fabs(fd - k->grad[i]));
    }
    return max_grad > 0.0 ? max_diff / max_grad : max_diff;
}

/* Every kind of the case against finite differences; prints the errors
 * as TAP comments. */
static void check_kinds(gcase *c, const char *label, int linear_unused)
{
    gradset s;
    analytic(c, &s);
    for (int i = 0; i < s.nkinds; i++) {
        /* the maps and the gate act on linear keys only */
        const int linear_only = s.kinds[i].name[0] == 'f' || !strcmp(s.kinds[i].name, "gate");
        double err = fd_error(c, &s.kinds[i]);
        fprintf(stderr, "# %s: %s max rel err %.2e (max |grad| %.2e)\n", label, s.kinds[i].name,
                err, tu_max_abs(s.kinds[i].grad, s.kinds[i].n));
        ck_assert_msg((linear_unused && linear_only) || tu_max_abs(s.kinds[i].grad, s.kinds[i].n) > 0.0,
                      "%s: %s gradient is 0", label, s.kinds[i].name);
        ck_assert_msg(err <= FD_TOL, "%s: %s relative error %g", label, s.kinds[i].name, err);
    }
    gradset_free(&s);
}

static void check_all_kinds(gcase *c, const char *label)
{
    check_kinds(c, label, 0);
}

static still_shape shape_of(int64_t B, int64_t Hq, int64_t Hk, int64_t N, int64_t d, int64_t dv,
                            int layout)
{
    still_shape s = {B, Hq, Hk, N, d, dv, layout};
    return s;
}

static still_config cfg_of(int routing, int act, int npmap, int64_t C, int64_t k, int64_t L)
{
    still_config c;
    still_config_default(&c);
    c.routing = routing;
    c.act = act;
    c.npmap = npmap;
    c.chunk = C;
    c.topk = k;
    c.local = L;
    return c;
}

/* ---- the cases ------------------------------------------------------------- */

START_TEST(test_fd_saliency_hedgehog_tied_gqa_L2)
{
    still_shape sh = shape_of(1, 2, 1, 30, 5, 4, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 6, 2, 2);
    gopts o = {.f = 5, .with_b = 1, .with_u = 1, .tied = 1, .with_gate = 1};
    gcase c;
    gcase_init(&c, 11, &sh, &cfg, &o);
    check_all_kinds(&c, "saliency/hedgehog/tied/GQA/L=2");
    gcase_free(&c);
}
END_TEST

START_TEST(test_fd_saliency_softmax_untied_bnhd_L1_omega)
{
    still_shape sh = shape_of(2, 2, 2, 24, 4, 3, STILL_LAYOUT_BNHD);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_SOFTMAX, 1, 5, 2, 1);
    gopts o = {.f = 6, .with_b = 1, .with_u = 1, .tied = 0, .with_w = 1, .with_gate = 1};
    gcase c;
    gcase_init(&c, 12, &sh, &cfg, &o);
    check_all_kinds(&c, "saliency/softmax/untied/BNHD/L=1/omega");
    gcase_free(&c);
}
END_TEST

START_TEST(test_fd_elu1_npmap_off_L0_cap)
{
    still_shape sh = shape_of(1, 2, 2, 32, 4, 4, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_ELU1, 0, 4, 2, 0);
    cfg.max_sel = 3;
    gopts o = {.f = 3, .with_b = 1, .with_u = 1, .tied = 0, .with_gate = 1};
    gcase c;
    gcase_init(&c, 13, &sh, &cfg, &o);
    check_all_kinds(&c, "elu1/NP off/L=0/cap 3");
    gcase_free(&c);
}
END_TEST

START_TEST(test_fd_relu_per_kv_gqa_cap_L1)
{
    still_shape sh = shape_of(1, 4, 2, 28, 5, 3, STILL_LAYOUT_BNHD);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_RELU, 1, 7, 3, 1);
    cfg.select_per_kv = 1;
    cfg.max_sel = 4;
    gopts o = {.f = 5, .with_b = 1, .with_u = 1, .tied = 1, .with_gate = 1};
    gcase c;
    gcase_init(&c, 14, &sh, &cfg, &o);
    check_all_kinds(&c, "relu/per-kv/GQA/cap 4/L=1");
    gcase_free(&c);
}
END_TEST

START_TEST(test_fd_window_routing_omega)
{
    still_shape sh = shape_of(1, 2, 1, 26, 4, 4, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_WINDOW, STILL_ACT_HEDGEHOG, 1, 8, 2, 2);
    cfg.window = 5;
    gopts o = {.f = 4, .with_b = 1, .tied = 1, .with_w = 1, .with_gate = 1};
    gcase c;
    gcase_init(&c, 15, &sh, &cfg, &o);
    check_all_kinds(&c, "window/omega");
    gcase_free(&c);
}
END_TEST

START_TEST(test_fd_routing_all_and_none)
{
    still_shape sh = shape_of(1, 1, 1, 22, 4, 3, STILL_LAYOUT_BHND);
    gopts o = {.f = 4, .with_b = 1, .with_u = 1, .tied = 0, .with_gate = 1};
    still_config all = cfg_of(STILL_ROUTING_ALL, STILL_ACT_HEDGEHOG, 1, 5, 0, 2);
    all.eps_den = 0.05; /* else o = teacher to 1e-6 and the loss is ~1e-13 */
    still_config none = cfg_of(STILL_ROUTING_NONE, STILL_ACT_HEDGEHOG, 1, 5, 0, 0);
    gcase c;
    gcase_init(&c, 16, &sh, &all, &o);
    check_kinds(&c, "routing all/L=2 (no linear key: maps and gate unused)", 1);
    gcase_free(&c);
    gcase_init(&c, 17, &sh, &none, &o);
    check_all_kinds(&c, "routing none/L=0 (linear only)");
    gcase_free(&c);
}
END_TEST

START_TEST(test_fd_phantom_sink_authors_saliency_eps0)
{
    still_shape sh = shape_of(1, 2, 1, 24, 4, 4, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 6, 2, 2);
    cfg.saliency = STILL_SALIENCY_AUTHORS;
    cfg.phantom_sink = 1;
    cfg.eps_den = 0.0;
    gopts o = {.f = 4, .with_b = 1, .tied = 1, .with_gate = 1};
    gcase c;
    gcase_init(&c, 18, &sh, &cfg, &o);
    check_all_kinds(&c, "phantom sink/authors saliency/eps_den 0");
    gcase_free(&c);
}
END_TEST

START_TEST(test_fd_small_u_hits_its_floor)
{
    /* ||u|| < 1e-6: û = u / 1e-6, the floor's branch */
    still_shape sh = shape_of(1, 1, 1, 20, 4, 3, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 5, 2, 1);
    gopts o = {.f = 4, .with_u = 1, .tied = 1, .u_scale = 2e-7};
    gcase c;
    gcase_init(&c, 19, &sh, &cfg, &o);
    gradset s;
    analytic(&c, &s);
    for (int i = 0; i < s.nkinds; i++) {
        const kind *k = &s.kinds[i];
        if (strcmp(k->name, "fq.u") != 0)
            continue;
        /* the step must keep ||u|| under the floor: 1e-10 absolute */
        double max_diff = 0.0, max_grad = tu_max_abs(k->grad, k->n);
        for (int64_t j = 0; j < k->n; j++) {
            double x = k->param[j], h = 1e-10;
            k->param[j] = x + h;
            double lp = loss_fixed(&c);
            k->param[j] = x - h;
            double lm = loss_fixed(&c);
            k->param[j] = x;
            max_diff = fmax(max_diff, fabs((lp - lm) / (2 * h) - k->grad[j]));
        }
        fprintf(stderr, "# small u: fq.u max rel err %.2e (max |grad| %.2e)\n",
                max_diff / max_grad, max_grad);
        ck_assert(max_grad > 0.0);
        ck_assert_msg(max_diff / max_grad <= FD_TOL, "fq.u rel err %g", max_diff / max_grad);
    }
    gradset_free(&s);
    gcase_free(&c);
}
END_TEST

START_TEST(test_fd_default_identity_map)
{
    /* no parameters: dfq_W is the gradient at W = I (f = d), which the
     * finite differences see by perturbing an explicit identity */
    still_shape sh = shape_of(1, 2, 1, 24, 4, 3, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 6, 2, 2);
    gopts o = {.f = 0};
    gcase c;
    gcase_init(&c, 20, &sh, &cfg, &o);
    const int64_t Hq = sh.heads_q, d = sh.dim_qk;
    double *dW = tu_dalloc(Hq * d * d), *db = tu_dalloc(Hq * d), *dww = tu_dalloc(Hq);
    double loss;
    still_grads g;
    memset(&g, 0, sizeof g);
    g.dfq_W = dW;
    g.dfq_b = db;
    g.dwindow_w = dww;
    dww[0] = 7.0; /* must be overwritten with 0: omega = 1 is a constant */
    still_tensors t = gcase_tensors(&c);
    t.selected = c.sel;
    ck_assert_int_eq(still_ref_transfer_grad(&cfg, &sh, NULL, &t, NULL, &loss, &g), STILL_OK);
    ck_assert_double_eq(dww[0], 0.0);
    gcase_fix_teacher(&c);
    /* now the same loss with an explicit identity and zero bias */
    c.fqW = tu_dalloc(Hq * d * d);
    c.fqb = tu_dalloc(Hq * d);
    for (int64_t h = 0; h < Hq; h++)
        for (int64_t i = 0; i < d; i++)
            c.fqW[(h * d + i) * d + i] = 1.0;
    c.use_params = 1;
    c.params.fq.f = d;
    c.params.fq.W = c.fqW;
    c.params.fq.b = c.fqb;
    ck_assert_double_eq_tol(loss_fixed(&c), loss, 1e-15 * loss);
    kind kw = {"fq.W (identity)", c.fqW, dW, Hq * d * d};
    kind kb = {"fq.b (absent)", c.fqb, db, Hq * d};
    double ew = fd_error(&c, &kw), eb = fd_error(&c, &kb);
    fprintf(stderr, "# default identity: fq.W rel err %.2e, fq.b rel err %.2e\n", ew, eb);
    ck_assert(ew <= FD_TOL && eb <= FD_TOL);
    free(dW);
    free(db);
    free(dww);
    gcase_free(&c);
}
END_TEST

START_TEST(test_fd_wide_and_narrow_maps)
{
    still_shape sh = shape_of(1, 1, 1, 20, 4, 3, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_SOFTMAX, 1, 5, 2, 1);
    gopts wide = {.f = 7, .with_b = 1, .with_u = 1, .tied = 0, .with_gate = 1};
    gopts narrow = {.f = 2, .with_b = 1, .with_u = 1, .tied = 1};
    gcase c;
    gcase_init(&c, 21, &sh, &cfg, &wide);
    check_all_kinds(&c, "f = 7 > d");
    gcase_free(&c);
    cfg.act = STILL_ACT_HEDGEHOG;
    gcase_init(&c, 22, &sh, &cfg, &narrow);
    check_all_kinds(&c, "f = 2 < d, no gate");
    gcase_free(&c);
}
END_TEST

/* ---- the loss itself -------------------------------------------------------- */

START_TEST(test_loss_is_mse_of_forward_against_teacher)
{
    still_shape sh = shape_of(2, 2, 1, 25, 4, 3, STILL_LAYOUT_BNHD);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 6, 2, 2);
    cfg.max_sel = 3;
    gopts o = {.f = 5, .with_b = 1, .with_u = 1, .tied = 0, .with_w = 1, .with_gate = 1};
    gcase c;
    gcase_init(&c, 23, &sh, &cfg, &o);
    const int64_t n = nq_of(&c) * sh.dim_v;
    double *o_fwd = tu_dalloc(n), *o_teacher = tu_dalloc(n), *o_grad = tu_dalloc(n);
    double *sig_fwd = tu_dalloc(nq_of(&c)), *sig_grad = tu_dalloc(nq_of(&c));
    uint8_t *sel_fwd = tu_alloc((size_t)nq_of(&c));
    still_tensors t = gcase_tensors(&c);
    t.o = o_fwd;
    t.sigma = sig_fwd;
    t.selected = sel_fwd;
    ck_assert_int_eq(still_ref_forward(&cfg, &sh, &c.params, &t), STILL_OK);
    t.o = o_teacher;
    ck_assert_int_eq(still_ref_teacher(&cfg, &sh, &t), STILL_OK);
    double mse = 0.0;
    for (int64_t i = 0; i < n; i++)
        mse += (o_fwd[i] - o_teacher[i]) * (o_fwd[i] - o_teacher[i]);
    mse /= (double)n;

    double loss;
    t = gcase_tensors(&c);
    t.o = o_grad;
    t.sigma = sig_grad;
    t.selected = c.sel;
    ck_assert_int_eq(still_ref_transfer_grad(&cfg, &sh, &c.params, &t, NULL, &loss, NULL),
                     STILL_OK);
    ck_assert_double_eq_tol(loss, mse, 1e-13 * mse);
    /* a given teacher is used as it is */
    double loss_given;
    ck_assert_int_eq(still_ref_transfer_grad(&cfg, &sh, &c.params, &t, o_teacher, &loss_given,
                                             NULL), STILL_OK);
    ck_assert_double_eq_tol(loss_given, mse, 1e-13 * mse);
    for (int64_t i = 0; i < n; i++)
        o_teacher[i] += 0.5;
    ck_assert_int_eq(still_ref_transfer_grad(&cfg, &sh, &c.params, &t, o_teacher, &loss_given,
                                             NULL), STILL_OK);
    ck_assert(fabs(loss_given - mse) > 0.1);
    TU_ASSERT_CLOSE(o_grad, o_fwd, n, 1e-13, "student output");
    TU_ASSERT_CLOSE(sig_grad, sig_fwd, nq_of(&c), 0.0, "sigma");
    ck_assert(memcmp(c.sel, sel_fwd, (size_t)nq_of(&c)) == 0);
    fprintf(stderr, "# loss %.6g = mse(forward, teacher) %.6g\n", loss, mse);
    free(o_fwd); free(o_teacher); free(o_grad); free(sig_fwd); free(sig_grad); free(sel_fwd);
    gcase_free(&c);
}
END_TEST

START_TEST(test_float_inputs_give_the_double_gradients_of_their_values)
{
    still_shape sh = shape_of(1, 2, 2, 18, 4, 3, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 6, 2, 1);
    gopts o = {.f = 4, .with_b = 1, .tied = 1, .with_gate = 1};
    gcase c;
    gcase_init(&c, 24, &sh, &cfg, &o);
    const int64_t nq = nq_of(&c) * sh.dim_qk, nv = nk_of(&c) * sh.dim_v;
    const int64_t ng = nq_of(&c) * sh.dim_v;
    float *qf = tu_alloc((size_t)nq * 4), *kf = tu_alloc((size_t)nq * 4);
    float *vf = tu_alloc((size_t)nv * 4), *gf = tu_alloc((size_t)ng * 4);
    for (int64_t i = 0; i < nq; i++) { /* round the doubles to floats */
        qf[i] = (float)c.q[i];
        c.q[i] = qf[i];
        kf[i] = (float)c.k[i];
        c.k[i] = kf[i];
    }
    for (int64_t i = 0; i < nv; i++) {
        vf[i] = (float)c.v[i];
        c.v[i] = vf[i];
    }
    for (int64_t i = 0; i < ng; i++) {
        gf[i] = (float)c.gate[i];
        c.gate[i] = gf[i];
    }
    gradset s;
    analytic(&c, &s);
    double *dq = tu_dalloc(nq), loss;
    still_grads g;
    memset(&g, 0, sizeof g);
    g.dq = dq;
    still_tensors t = {STILL_F32, qf, kf, vf, gf, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                       NULL};
    ck_assert_int_eq(still_ref_transfer_grad(&cfg, &sh, &c.params, &t, NULL, &loss, &g),
                     STILL_OK);
    ck_assert_double_eq(loss, s.loss);
    TU_ASSERT_CLOSE(dq, s.g.dq, nq, 0.0, "dq from float inputs");
    free(dq); free(qf); free(kf); free(vf); free(gf);
    gradset_free(&s);
    gcase_free(&c);
}
END_TEST

START_TEST(test_errors_are_reported_before_any_work)
{
    still_shape sh = shape_of(1, 1, 1, 8, 4, 3, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 4, 1, 1);
    gopts o = {.f = 0};
    gcase c;
    gcase_init(&c, 25, &sh, &cfg, &o);
    still_tensors t = gcase_tensors(&c);
    double loss = 0.0;
    ck_assert_int_eq(still_ref_transfer_grad(&cfg, &sh, NULL, NULL, NULL, &loss, NULL), STILL_E_NULL);
    ck_assert_int_eq(still_ref_transfer_grad(&cfg, &sh, NULL, &t, NULL, NULL, NULL), STILL_E_NULL);
    c.q[3] = NAN;
    ck_assert_int_eq(still_ref_transfer_grad(&cfg, &sh, NULL, &t, NULL, &loss, NULL),
                     STILL_E_NONFINITE);
    c.q[3] = 0.5;
    sh.heads_kv = 2; /* Hq % Hk != 0 */
    ck_assert_int_eq(still_ref_transfer_grad(&cfg, &sh, NULL, &t, NULL, &loss, NULL), STILL_E_SHAPE);
    sh.heads_kv = 1;
    memset(c.sel, 1, 8); /* a forced selection with 4 per chunk, k = 1 */
    t.selection_in = c.sel;
    ck_assert_int_eq(still_ref_transfer_grad(&cfg, &sh, NULL, &t, NULL, &loss, NULL),
                     STILL_E_SELECTION);
    gcase_free(&c);
}
END_TEST

/* ---- the gating projection -------------------------------------------------- */

/* L = sum c ⊙ sigmoid(X Wg^T), written here from SPEC §6. */
static double gate_loss(int64_t B, int64_t N, int64_t hid, int64_t Hq, int64_t dv,
                        const double *X, const double *Wg, const double *coef)
{
    double L = 0.0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t n = 0; n < N; n++)
                for (int64_t e = 0; e < dv; e++) {
                    double a = 0.0;
                    for (int64_t i = 0; i < hid; i++)
                        a += X[(b * N + n) * hid + i] * Wg[(h * dv + e) * hid + i];
                    L += coef[((b * Hq + h) * N + n) * dv + e] * tu_sigmoid(a);
                }
    return L;
}

START_TEST(test_fd_gate_projection_backward)
{
    const int64_t B = 2, N = 5, hid = 6, Hq = 2, dv = 3;
    tu_rng g;
    tu_rng_seed(&g, 26);
    double *X = normal_array(&g, B * N * hid, 1.0), *Wg = normal_array(&g, Hq * dv * hid, 0.5);
    double *coef = normal_array(&g, B * Hq * N * dv, 1.0);
    double *dX = tu_dalloc(B * N * hid), *dWg = tu_dalloc(Hq * dv * hid);
    /* dL/dG = coef */
    ck_assert_int_eq(still_ref_gate_projection_grad(B, N, hid, Hq, dv, X, Wg, coef, dX, dWg),
                     STILL_OK);
    double *arrays[2] = {X, Wg}, *grads[2] = {dX, dWg};
    int64_t lens[2] = {B * N * hid, Hq * dv * hid};
    for (int a = 0; a < 2; a++) {
        double max_diff = 0.0;
        for (int64_t i = 0; i < lens[a]; i++) {
            double x = arrays[a][i], h = 1e-6 * fmax(1.0, fabs(x));
            arrays[a][i] = x + h;
            double lp = gate_loss(B, N, hid, Hq, dv, X, Wg, coef);
            arrays[a][i] = x - h;
            double lm = gate_loss(B, N, hid, Hq, dv, X, Wg, coef);
            arrays[a][i] = x;
            max_diff = fmax(max_diff, fabs((lp - lm) / (2 * h) - grads[a][i]));
        }
        double err = max_diff / tu_max_abs(grads[a], lens[a]);
        fprintf(stderr, "# gate projection: %s max rel err %.2e\n", a ? "dWg" : "dX", err);
        ck_assert(err <= FD_TOL);
    }
    /* G itself is the library's still_ref_gate_projection */
    double *G = tu_dalloc(B * Hq * N * dv), *one = tu_dalloc(B * Hq * N * dv);
    ck_assert_int_eq(still_ref_gate_projection(B, N, hid, Hq, dv, X, Wg, G), STILL_OK);
    for (int64_t i = 0; i < B * Hq * N * dv; i++)
        one[i] = 1.0;
    double *dW1 = tu_dalloc(Hq * dv * hid);
    ck_assert_int_eq(still_ref_gate_projection_grad(B, N, hid, Hq, dv, X, Wg, one, NULL, dW1),
                     STILL_OK);
    /* d(sum G)/dWg[r][i] = sum_{b,n} G(1-G) X[b][n][i] for row r = h*dv + e */
    for (int64_t h = 0; h < Hq; h++)
        for (int64_t e = 0; e < dv; e++)
            for (int64_t i = 0; i < hid; i++) {
                double want = 0.0;
                for (int64_t b = 0; b < B; b++)
                    for (int64_t n = 0; n < N; n++) {
                        double gv = G[((b * Hq + h) * N + n) * dv + e];
                        want += gv * (1.0 - gv) * X[(b * N + n) * hid + i];
                    }
                ck_assert_double_eq_tol(dW1[(h * dv + e) * hid + i], want, 1e-14);
            }
    free(X); free(Wg); free(coef); free(dX); free(dWg); free(G); free(one); free(dW1);
}
END_TEST

/* ---- the fast twin against the ref path ------------------------------------ */

/* Rounds the case's inputs to float values and returns float copies. */
static float *round_to_float(double *x, int64_t n)
{
    float *f = tu_alloc((size_t)(n ? n : 1) * sizeof *f);
    for (int64_t i = 0; i < n; i++) {
        f[i] = (float)x[i];
        x[i] = f[i];
    }
    return f;
}

/* still_transfer_grad on the float inputs against still_ref_transfer_grad
 * on the same values: every gradient within 1e-5 of the largest |ref|. */
static void check_fast_vs_ref(gcase *c, const char *label)
{
    const still_shape *sh = &c->shape;
    const int64_t nq = nq_of(c), nk = nk_of(c);
    float *qf = round_to_float(c->q, nq * sh->dim_qk), *kf = round_to_float(c->k, nk * sh->dim_qk);
    float *vf = round_to_float(c->v, nk * sh->dim_v);
    float *gf = c->gate ? round_to_float(c->gate, nq * sh->dim_v) : NULL;
    gradset ref, fast;
    analytic(c, &ref); /* the ref, with its selection in c->sel */
    memset(&fast, 0, sizeof fast);
    fast.nkinds = ref.nkinds;
    for (int i = 0; i < ref.nkinds; i++)
        fast.kinds[i] = (kind){ref.kinds[i].name, NULL, tu_dalloc(ref.kinds[i].n), ref.kinds[i].n};
    /* the same slots of still_grads, pointing at the fast buffers */
    double **slots[11] = {&fast.g.dfq_W, &fast.g.dfq_b, &fast.g.dfq_u, &fast.g.dfk_W,
                          &fast.g.dfk_b, &fast.g.dfk_u, &fast.g.dwindow_w, &fast.g.dgate,
                          &fast.g.dq, &fast.g.dk, &fast.g.dv};
    double *const *ref_slots[11] = {&ref.g.dfq_W, &ref.g.dfq_b, &ref.g.dfq_u, &ref.g.dfk_W,
                                    &ref.g.dfk_b, &ref.g.dfk_u, &ref.g.dwindow_w, &ref.g.dgate,
                                    &ref.g.dq, &ref.g.dk, &ref.g.dv};
    for (int s = 0; s < 11; s++)
        for (int i = 0; i < ref.nkinds; i++)
            if (*ref_slots[s] && *ref_slots[s] == ref.kinds[i].grad)
                *slots[s] = fast.kinds[i].grad;
    uint8_t *sel = tu_alloc((size_t)nq);
    still_tensors t = {STILL_F32, qf, kf, vf, gf, NULL, NULL, sel, NULL, NULL, NULL, NULL, NULL,
                       NULL};
    ck_assert_int_eq(still_transfer_grad(&c->cfg, sh, c->use_params ? &c->params : NULL, &t,
                                         NULL, &fast.loss, &fast.g), STILL_OK);
    ck_assert(memcmp(sel, c->sel, (size_t)nq) == 0); /* the same selection */
    double worst = fabs(fast.loss - ref.loss) / ref.loss;
    fprintf(stderr, "# fast vs ref, %s: loss rel diff %.1e", label, worst);
    ck_assert_msg(worst <= 1e-5, "%s: loss %.17g vs %.17g", label, fast.loss, ref.loss);
    for (int i = 0; i < ref.nkinds; i++) {
        double scale = tu_max_abs(ref.kinds[i].grad, ref.kinds[i].n);
        double diff = tu_max_abs_diff(fast.kinds[i].grad, ref.kinds[i].grad, ref.kinds[i].n);
        double rel = scale > 0.0 ? diff / scale : diff;
        fprintf(stderr, ", %s %.1e", ref.kinds[i].name, rel);
        ck_assert_msg(rel <= 1e-5, "%s: %s max |fast - ref| / max |ref| = %g", label,
                      ref.kinds[i].name, rel);
        worst = fmax(worst, rel);
    }
    fprintf(stderr, "\n");
    gradset_free(&ref);
    gradset_free(&fast);
    free(qf); free(kf); free(vf); free(gf); free(sel);
}

START_TEST(test_fast_matches_ref_saliency_gqa_blocks)
{
    /* N = 150: three query blocks of the fast path, chunks straddling them */
    still_shape sh = shape_of(1, 4, 2, 150, 6, 5, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 12, 3, 2);
    gopts o = {.f = 6, .with_b = 1, .with_u = 1, .tied = 1, .with_gate = 1};
    gcase c;
    gcase_init(&c, 31, &sh, &cfg, &o);
    check_fast_vs_ref(&c, "saliency/hedgehog/GQA/N=150");
    /* a given teacher (float on the fast path): the same loss and dq */
    const int64_t no = nq_of(&c) * sh.dim_v, nqd = nq_of(&c) * sh.dim_qk;
    float *qf = round_to_float(c.q, nqd), *kf = round_to_float(c.k, nk_of(&c) * sh.dim_qk);
    float *vf = round_to_float(c.v, nk_of(&c) * sh.dim_v), *gf = round_to_float(c.gate, no);
    double *teacher = tu_dalloc(no), *dq_ref = tu_dalloc(nqd), *dq_fast = tu_dalloc(nqd);
    for (int64_t i = 0; i < no; i++) /* some fixed target, not the softmax */
        teacher[i] = (float)(0.5 * c.v[i % (nk_of(&c) * sh.dim_v)]);
    float *tf = round_to_float(teacher, no);
    still_grads gr, gf_;
    memset(&gr, 0, sizeof gr);
    memset(&gf_, 0, sizeof gf_);
    gr.dq = dq_ref;
    gf_.dq = dq_fast;
    double l_ref, l_fast;
    still_tensors tr = gcase_tensors(&c), tfast = {STILL_F32, qf, kf, vf, gf, NULL, NULL, NULL,
                                                   NULL, NULL, NULL, NULL, NULL, NULL};
    ck_assert_int_eq(still_ref_transfer_grad(&cfg, &sh, &c.params, &tr, teacher, &l_ref, &gr),
                     STILL_OK);
    ck_assert_int_eq(still_transfer_grad(&cfg, &sh, &c.params, &tfast, tf, &l_fast, &gf_),
                     STILL_OK);
    double rel = tu_max_abs_diff(dq_fast, dq_ref, nqd) / tu_max_abs(dq_ref, nqd);
    fprintf(stderr, "# fast vs ref with a given teacher: loss rel diff %.1e, q %.1e\n",
            fabs(l_fast - l_ref) / l_ref, rel);
    ck_assert(fabs(l_fast - l_ref) <= 1e-5 * l_ref && rel <= 1e-5);
    free(qf); free(kf); free(vf); free(gf); free(tf); free(teacher); free(dq_ref); free(dq_fast);
    gcase_free(&c);
}
END_TEST

START_TEST(test_fast_matches_ref_cap_L0_per_kv_bnhd)
{
    still_shape sh = shape_of(2, 2, 1, 100, 4, 3, STILL_LAYOUT_BNHD);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_ELU1, 0, 8, 2, 0);
    cfg.max_sel = 5;
    cfg.select_per_kv = 1;
    gopts o = {.f = 5, .with_b = 1, .with_u = 1, .tied = 0, .with_w = 1, .with_gate = 1};
    gcase c;
    gcase_init(&c, 32, &sh, &cfg, &o);
    check_fast_vs_ref(&c, "elu1/NP off/L=0/cap 5/per-kv/BNHD/omega");
    gcase_free(&c);
}
END_TEST

START_TEST(test_fast_matches_ref_window_all_none_phantom)
{
    still_shape sh = shape_of(1, 2, 2, 90, 4, 4, STILL_LAYOUT_BHND);
    gopts o = {.f = 4, .with_b = 1, .tied = 1, .with_w = 1, .with_gate = 1};
    still_config win = cfg_of(STILL_ROUTING_WINDOW, STILL_ACT_SOFTMAX, 1, 16, 2, 2);
    win.window = 9;
    still_config all = cfg_of(STILL_ROUTING_ALL, STILL_ACT_RELU, 1, 10, 0, 1);
    all.eps_den = 0.05;
    still_config none = cfg_of(STILL_ROUTING_NONE, STILL_ACT_HEDGEHOG, 1, 10, 0, 0);
    still_config ph = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 10, 2, 2);
    ph.saliency = STILL_SALIENCY_AUTHORS;
    ph.phantom_sink = 1;
    const still_config *cfgs[4] = {&win, &all, &none, &ph};
    const char *labels[4] = {"window/omega", "all", "none/L=0", "phantom sink"};
    for (int i = 0; i < 4; i++) {
        gcase c;
        gcase_init(&c, 33 + (uint64_t)i, &sh, cfgs[i], &o);
        check_fast_vs_ref(&c, labels[i]);
        gcase_free(&c);
    }
}
END_TEST

START_TEST(test_fast_refuses_double_inputs)
{
    still_shape sh = shape_of(1, 1, 1, 8, 4, 3, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 4, 1, 1);
    gopts o = {.f = 0};
    gcase c;
    gcase_init(&c, 37, &sh, &cfg, &o);
    still_tensors t = gcase_tensors(&c);
    double loss;
    ck_assert_int_eq(still_transfer_grad(&cfg, &sh, NULL, &t, NULL, &loss, NULL), STILL_E_DTYPE);
    gcase_free(&c);
}
END_TEST

static Suite *grad_suite(void)
{
    Suite *s = suite_create("grad");
    TCase *fd = tcase_create("finite_differences");
    tcase_set_timeout(fd, 120);
    tcase_add_test(fd, test_fd_saliency_hedgehog_tied_gqa_L2);
    tcase_add_test(fd, test_fd_saliency_softmax_untied_bnhd_L1_omega);
    tcase_add_test(fd, test_fd_elu1_npmap_off_L0_cap);
    tcase_add_test(fd, test_fd_relu_per_kv_gqa_cap_L1);
    tcase_add_test(fd, test_fd_window_routing_omega);
    tcase_add_test(fd, test_fd_routing_all_and_none);
    tcase_add_test(fd, test_fd_phantom_sink_authors_saliency_eps0);
    tcase_add_test(fd, test_fd_small_u_hits_its_floor);
    tcase_add_test(fd, test_fd_default_identity_map);
    tcase_add_test(fd, test_fd_wide_and_narrow_maps);
    tcase_add_test(fd, test_fd_gate_projection_backward);
    suite_add_tcase(s, fd);
    TCase *loss = tcase_create("loss");
    tcase_add_test(loss, test_loss_is_mse_of_forward_against_teacher);
    tcase_add_test(loss, test_float_inputs_give_the_double_gradients_of_their_values);
    tcase_add_test(loss, test_errors_are_reported_before_any_work);
    suite_add_tcase(s, loss);
    TCase *fast = tcase_create("fast_vs_ref");
    tcase_set_timeout(fast, 60);
    tcase_add_test(fast, test_fast_matches_ref_saliency_gqa_blocks);
    tcase_add_test(fast, test_fast_matches_ref_cap_L0_per_kv_bnhd);
    tcase_add_test(fast, test_fast_matches_ref_window_all_none_phantom);
    tcase_add_test(fast, test_fast_refuses_double_inputs);
    suite_add_tcase(s, fast);
    return s;
}

int main(void)
{
    return tu_run_suite(grad_suite());
}
