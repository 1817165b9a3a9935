/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* test_vjp.c -- SPEC §18: the backward pass for any upstream gradient dO.
 * (a) still_ref_vjp against central finite differences of
 *     L = sum(dO ⊙ o) through the oracle's forward (still_ref_forward),
 *     for every input (q, k, v, gate, fq.W/b/u, fk.W/b/u, window.w), every
 *     routing and option of the forward; the routing is forced through
 *     selection_in so that no difference crosses a selection change;
 * (b) still_vjp within its documented bound of the ref on a grid of
 *     configurations, on every ISA this machine runs;
 * (c) the transfer gradient is the VJP with dO = 2 (o - o_T) / n (both
 *     paths);
 * (d) argument checks before any work; the fast VJP's memory at N = 4096. */
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_TOL 1e-6    /* ref vs finite differences, relative to max |grad| */
#define FAST_BOUND 1e-5 /* fast vs ref, relative to max |ref grad| per tensor:
                           still_vjp(3) documents it */
#define NKINDS 11

/* One problem: arrays in the layout of the call, F64. */
typedef struct vcase {
    still_shape shape;
    still_config cfg;
    double *q, *k, *v, *gate, *dout; /* gate may be NULL */
    double *fqW, *fqb, *fqu, *fkW, *fkb, *fku, *ww;
    int64_t f;
    still_params params;
    int use_params;
    uint8_t *sel; /* the forced routing [B][Hq][N] */
} vcase;

typedef struct vopts {
    int64_t f; /* 0: no map parameters (identity W) */
    int with_b, with_u, tied, with_w, with_gate;
} vopts;

static int64_t nq_of(const vcase *c)
{
    return c->shape.batch * c->shape.heads_q * c->shape.seq_len;
}

static int64_t nk_of(const vcase *c)
{
    return c->shape.batch * c->shape.heads_kv * c->shape.seq_len;
}

static double *normal(tu_rng *g, int64_t n, double sd)
{
    double *x = tu_dalloc(n);
    tu_fill_normal(g, x, n, sd);
    return x;
}

static still_tensors tensors_of(const vcase *c)
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

static const still_params *params_of(const vcase *c)
{
    return c->use_params ? &c->params : NULL;
}

/* The oracle's forward with the routing forced. */
static void forward_fixed(const vcase *c, double *o)
{
    still_tensors t = tensors_of(c);
    t.selection_in = c->sel;
    t.o = o;
    ck_assert_int_eq(still_ref_forward(&c->cfg, &c->shape, params_of(c), &t), STILL_OK);
}

static void vcase_init(vcase *c, uint64_t seed, const still_shape *sh, const still_config *cfg,
                       const vopts *o)
{
    tu_rng g;
    const int64_t Hq = sh->heads_q, d = sh->dim_qk;
    memset(c, 0, sizeof *c);
    tu_rng_seed(&g, seed);
    c->shape = *sh;
    c->cfg = *cfg;
    c->q = normal(&g, nq_of(c) * d, 1.0);
    c->k = normal(&g, nk_of(c) * d, 1.0);
    c->v = normal(&g, nk_of(c) * sh->dim_v, 1.0);
    c->dout = normal(&g, nq_of(c) * sh->dim_v, 1.0);
    if (o->with_gate) {
        c->gate = tu_dalloc(nq_of(c) * sh->dim_v);
        tu_fill(&g, c->gate, nq_of(c) * sh->dim_v, 0.2, 1.0);
    }
    still_params_default(&c->params);
    c->f = o->f ? o->f : d;
    if (o->f) {
        c->use_params = 1;
        c->fqW = normal(&g, Hq * c->f * d, 1.0 / sqrt((double)d));
        c->fqb = o->with_b ? normal(&g, Hq * c->f, 0.3) : NULL;
        c->fqu = o->with_u ? normal(&g, Hq * d, 1.0) : NULL;
        c->params.fq = (still_feature_map){c->f, c->fqW, c->fqb, c->fqu};
        c->params.fk_tied = o->tied;
        if (!o->tied) {
            c->fkW = normal(&g, Hq * c->f * d, 1.0 / sqrt((double)d));
            c->fkb = o->with_b ? normal(&g, Hq * c->f, 0.3) : NULL;
            c->fku = o->with_u ? normal(&g, Hq * d, 1.0) : NULL;
            c->params.fk = (still_feature_map){c->f, c->fkW, c->fkb, c->fku};
        }
    }
    if (o->with_w) {
        c->use_params = 1;
        c->ww = normal(&g, Hq, 1.0);
        c->params.window_w = c->ww;
    }
    /* the routing of the unperturbed forward, forced from now on */
    c->sel = tu_alloc((size_t)nq_of(c));
    double *out = tu_dalloc(nq_of(c) * sh->dim_v);
    still_tensors t = tensors_of(c);
    t.o = out;
    t.selected = c->sel;
    ck_assert_int_eq(still_ref_forward(&c->cfg, &c->shape, params_of(c), &t), STILL_OK);
    free(out);
}

static void vcase_free(vcase *c)
{
    free(c->q); free(c->k); free(c->v); free(c->gate); free(c->dout);
    free(c->fqW); free(c->fqb); free(c->fqu); free(c->fkW); free(c->fkb); free(c->fku);
    free(c->ww); free(c->sel);
}

/* L = sum(dO ⊙ o) by the oracle's forward, not the code under test. */
static double loss_of(const vcase *c)
{
    const int64_t n = nq_of(c) * c->shape.dim_v;
    double *o = tu_dalloc(n), L = 0.0;
    forward_fixed(c, o);
    for (int64_t i = 0; i < n; i++)
        L += c->dout[i] * o[i];
    free(o);
    return L;
}

/* An input of the case and its gradient buffer. */
typedef struct kind {
    const char *name;
    double *param, *grad;
    int64_t n;
} kind;

typedef struct gradset {
    still_grads g;
    kind kinds[NKINDS];
    int n;
} gradset;

static void add_kind(gradset *s, const char *name, double *param, double **slot, int64_t n)
{
    *slot = tu_dalloc(n);
    s->kinds[s->n++] = (kind){name, param, *slot, n};
}

/* Buffers for every input in effect, in still_grads order. */
static void gradset_init(const vcase *c, gradset *s)
{
    const int64_t Hq = c->shape.heads_q, d = c->shape.dim_qk, f = c->f, dv = c->shape.dim_v;
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
        add_kind(s, "gate", c->gate, &s->g.dgate, nq_of(c) * dv);
    add_kind(s, "q", c->q, &s->g.dq, nq_of(c) * d);
    add_kind(s, "k", c->k, &s->g.dk, nk_of(c) * d);
    add_kind(s, "v", c->v, &s->g.dv, nk_of(c) * dv);
}

static void gradset_free(gradset *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->kinds[i].grad);
}

/* still_ref_vjp of the case, the routing forced; o as a by-product. */
static void ref_vjp(const vcase *c, gradset *s, double *o)
{
    gradset_init(c, s);
    still_tensors t = tensors_of(c);
    t.selection_in = c->sel;
    t.o = o;
    ck_assert_int_eq(still_ref_vjp(&c->cfg, &c->shape, params_of(c), &t, c->dout, &s->g),
                     STILL_OK);
}

#define FD_POINTS 30 /* elements checked per input, spread evenly */

/* max |fd - analytic| / max |analytic| of one input. */
static double fd_error(const vcase *c, const kind *k)
{
    double max_diff = 0.0, max_grad = tu_max_abs(k->grad, k->n);
    const int64_t points = k->n < FD_POINTS ? k->n : FD_POINTS;
    for (int64_t p = 0; p < points; p++) {
        const int64_t i = p * k->n / points;
        const double x = k->param[i], h = 1e-6 * fmax(1.0, fabs(x));
        k->param[i] = x + h;
        double lp = loss_of(c);
        k->param[i] = x - h;
        double lm = loss_of(c);
        k->param[i] = x;
        max_diff = fmax(max_diff, fabs((lp - lm) / (2.0 * h) - k->grad[i]));
    }
    return max_grad > 0.0 ? max_diff / max_grad : max_diff;
}

/* Every input against finite differences.  no_linear: no key is linear
 * (routing all), so the maps and the gate have zero gradients. */
static void check_fd(const vcase *c, const char *label, int no_linear)
{
    gradset s;
    ref_vjp(c, &s, NULL);
    for (int i = 0; i < s.n; i++) {
        const kind *k = &s.kinds[i];
        const int linear_only = k->name[0] == 'f' || !strcmp(k->name, "gate");
        const double mx = tu_max_abs(k->grad, k->n), err = fd_error(c, k);
        fprintf(stderr, "# fd %s: %s rel err %.1e (max |grad| %.2e)\n", label, k->name, err, mx);
        ck_assert_msg((no_linear && linear_only) || mx > 0.0, "%s: %s gradient is 0", label,
                      k->name);
        ck_assert_msg(err <= FD_TOL, "%s: %s relative error %g", label, k->name, err);
    }
    gradset_free(&s);
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

static void fd_case(uint64_t seed, const still_shape *sh, const still_config *cfg,
                    const vopts *o, const char *label, int no_linear)
{
    vcase c;
    vcase_init(&c, seed, sh, cfg, o);
    check_fd(&c, label, no_linear);
    vcase_free(&c);
}

/* ---- (a) finite differences -------------------------------------------- */

START_TEST(test_fd_saliency_gqa_per_query_head_L2)
{
    still_shape sh = shape_of(1, 2, 1, 26, 5, 4, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 6, 2, 2);
    vopts o = {.f = 5, .with_b = 1, .with_u = 1, .tied = 1, .with_gate = 1};
    fd_case(101, &sh, &cfg, &o, "saliency/GQA per query head/L=2/tied", 0);
}
END_TEST

START_TEST(test_fd_saliency_untied_bnhd_omega_L1)
{
    still_shape sh = shape_of(2, 2, 2, 20, 4, 3, STILL_LAYOUT_BNHD);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_SOFTMAX, 1, 5, 2, 1);
    vopts o = {.f = 6, .with_b = 1, .with_u = 1, .tied = 0, .with_w = 1, .with_gate = 1};
    fd_case(102, &sh, &cfg, &o, "saliency/untied/BNHD/omega/L=1", 0);
}
END_TEST

START_TEST(test_fd_cap_L0_npmap_off)
{
    still_shape sh = shape_of(1, 2, 2, 28, 4, 4, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_ELU1, 0, 4, 2, 0);
    cfg.max_sel = 3;
    vopts o = {.f = 3, .with_b = 1, .with_u = 1, .tied = 0, .with_gate = 1};
    fd_case(103, &sh, &cfg, &o, "cap 3/L=0/elu1/NP off", 0);
}
END_TEST

START_TEST(test_fd_gqa_per_kv_head_cap)
{
    still_shape sh = shape_of(1, 4, 2, 24, 5, 3, STILL_LAYOUT_BNHD);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_RELU, 1, 6, 3, 1);
    cfg.select_per_kv = 1;
    cfg.max_sel = 4;
    vopts o = {.f = 5, .with_b = 1, .with_u = 1, .tied = 1, .with_gate = 1};
    fd_case(104, &sh, &cfg, &o, "GQA per kv head/cap 4/relu/BNHD", 0);
}
END_TEST

START_TEST(test_fd_window_routing_omega)
{
    still_shape sh = shape_of(1, 2, 1, 24, 4, 4, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_WINDOW, STILL_ACT_HEDGEHOG, 1, 8, 2, 2);
    cfg.window = 5;
    vopts o = {.f = 4, .with_b = 1, .with_u = 1, .tied = 0, .with_w = 1, .with_gate = 1};
    fd_case(105, &sh, &cfg, &o, "window/omega/untied", 0);
}
END_TEST

/* SPEC §13-14: the exact sets of sinks and terraced, held fixed */
START_TEST(test_fd_sinks_and_terraced_routings)
{
    still_shape sh = shape_of(1, 4, 2, 27, 4, 3, STILL_LAYOUT_BNHD);
    still_config sinks = cfg_of(STILL_ROUTING_SINKS, STILL_ACT_HEDGEHOG, 1, 8, 2, 2);
    sinks.window = 5;
    sinks.sinks = 3;
    still_config terraced = cfg_of(STILL_ROUTING_TERRACED, STILL_ACT_SOFTMAX, 1, 8, 2, 2);
    terraced.window = 6;
    vopts o = {.f = 4, .with_b = 1, .with_u = 1, .tied = 0, .with_w = 1, .with_gate = 1};
    fd_case(110, &sh, &sinks, &o, "sinks 3 + window 5/omega/GQA", 0);
    fd_case(111, &sh, &terraced, &o, "terraced 6/omega/GQA", 0);
}
END_TEST

/* SPEC §12: rest = drop, the keys outside the exact set ignored; with
 * L = 0 and eps_den 0 the first chunk's queries have no key (o = 0) */
START_TEST(test_fd_rest_drop)
{
    still_shape sh = shape_of(1, 2, 1, 25, 4, 3, STILL_LAYOUT_BHND);
    still_config sinks = cfg_of(STILL_ROUTING_SINKS, STILL_ACT_HEDGEHOG, 1, 8, 2, 2);
    sinks.window = 4;
    sinks.sinks = 2;
    sinks.rest = STILL_REST_DROP;
    sinks.eps_den = 0.5; /* omega acts through eps_den alone: a gradient FD can resolve */
    still_config empty = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 6, 2, 0);
    empty.rest = STILL_REST_DROP;
    empty.eps_den = 0.0;
    vopts o = {.f = 4, .with_b = 1, .with_u = 1, .tied = 0, .with_w = 1, .with_gate = 1};
    fd_case(112, &sh, &sinks, &o, "sinks 2 + window 4/drop", 1);
    /* o does not depend on omega with eps_den 0 (a zero gradient FD cannot
     * rate): no window.w here */
    vopts no_w = {.f = 4, .with_b = 1, .with_u = 1, .tied = 0, .with_gate = 1};
    fd_case(113, &sh, &empty, &no_w, "saliency L=0/drop/eps_den 0", 1);
}
END_TEST

START_TEST(test_fd_routing_all_and_none)
{
    still_shape sh = shape_of(1, 2, 1, 20, 4, 3, STILL_LAYOUT_BHND);
    vopts o = {.f = 4, .with_b = 1, .with_u = 1, .tied = 0, .with_w = 1, .with_gate = 1};
    still_config all = cfg_of(STILL_ROUTING_ALL, STILL_ACT_HEDGEHOG, 1, 5, 0, 2);
    /* with no linear key ω acts through eps_den only: a larger one keeps
     * its gradient above the resolution of the differences */
    all.eps_den = 0.05;
    still_config none = cfg_of(STILL_ROUTING_NONE, STILL_ACT_HEDGEHOG, 1, 5, 0, 0);
    fd_case(106, &sh, &all, &o, "routing all (no linear key)", 1);
    o.with_w = 0; /* no exact key: ω unused */
    fd_case(107, &sh, &none, &o, "routing none/L=0 (linear only)", 0);
}
END_TEST

START_TEST(test_fd_compat_authors_phantom_sink)
{
    /* --compat authors in small: authors' saliency (w = C) + phantom sink */
    still_shape sh = shape_of(1, 2, 1, 24, 4, 4, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 8, 2, 2);
    cfg.window = 8;
    cfg.saliency = STILL_SALIENCY_AUTHORS;
    cfg.phantom_sink = 1;
    vopts o = {.f = 4, .with_b = 1, .with_u = 1, .tied = 1, .with_w = 1, .with_gate = 1};
    fd_case(108, &sh, &cfg, &o, "compat authors (saliency + phantom sink)", 0);
}
END_TEST

START_TEST(test_fd_default_map_and_ones_gate)
{
    /* no parameters, no gate: dfq_W at W = I and dgate at G = 1, seen by
     * the differences through an explicit identity and an explicit gate */
    still_shape sh = shape_of(1, 1, 1, 18, 4, 3, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 5, 2, 1);
    vopts o = {.f = 0};
    vcase c;
    vcase_init(&c, 109, &sh, &cfg, &o);
    const int64_t d = sh.dim_qk, ng = nq_of(&c) * sh.dim_v;
    double *dW = tu_dalloc(d * d), *dg = tu_dalloc(ng);
    still_grads g;
    memset(&g, 0, sizeof g);
    g.dfq_W = dW;
    g.dgate = dg;
    still_tensors t = tensors_of(&c);
    t.selection_in = c.sel;
    ck_assert_int_eq(still_ref_vjp(&cfg, &sh, NULL, &t, c.dout, &g), STILL_OK);
    c.fqW = tu_dalloc(d * d);
    for (int64_t i = 0; i < d; i++)
        c.fqW[i * d + i] = 1.0;
    c.gate = tu_dalloc(ng);
    for (int64_t i = 0; i < ng; i++)
        c.gate[i] = 1.0;
    c.use_params = 1;
    c.params.fq.f = d;
    c.params.fq.W = c.fqW;
    kind kw = {"fq.W (identity)", c.fqW, dW, d * d}, kg = {"gate (ones)", c.gate, dg, ng};
    double ew = fd_error(&c, &kw), eg = fd_error(&c, &kg);
    fprintf(stderr, "# fd defaults: fq.W rel err %.1e, gate rel err %.1e\n", ew, eg);
    ck_assert(tu_max_abs(dW, d * d) > 0.0 && tu_max_abs(dg, ng) > 0.0);
    ck_assert(ew <= FD_TOL && eg <= FD_TOL);
    free(dW);
    free(dg);
    vcase_free(&c);
}
END_TEST

/* Copies x into float, rounding x itself to the float values. */
static float *to_float(double *x, int64_t n)
{
    float *f = tu_alloc((size_t)(n ? n : 1) * sizeof *f);
    for (int64_t i = 0; i < n; i++)
        x[i] = f[i] = (float)x[i];
    return f;
}

START_TEST(test_ref_f32_inputs_are_the_f64_vjp_of_their_values)
{
    still_shape sh = shape_of(1, 2, 1, 22, 4, 3, STILL_LAYOUT_BNHD);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 5, 2, 2);
    vopts o = {.f = 4, .with_b = 1, .tied = 1, .with_gate = 1};
    vcase c;
    vcase_init(&c, 110, &sh, &cfg, &o);
    const int64_t nq = nq_of(&c), nk = nk_of(&c), d = sh.dim_qk, dv = sh.dim_v;
    float *qf = to_float(c.q, nq * d), *kf = to_float(c.k, nk * d), *vf = to_float(c.v, nk * dv);
    float *gf = to_float(c.gate, nq * dv), *df = to_float(c.dout, nq * dv);
    gradset s64, s32;
    ref_vjp(&c, &s64, NULL);
    gradset_init(&c, &s32);
    float *of = tu_alloc((size_t)(nq * dv) * sizeof *of);
    still_tensors t = {STILL_F32, qf, kf, vf, gf, of, NULL, NULL, c.sel, NULL, NULL, NULL, NULL,
                       NULL};
    ck_assert_int_eq(still_ref_vjp(&cfg, &sh, &c.params, &t, df, &s32.g), STILL_OK);
    for (int i = 0; i < s64.n; i++) {
        double diff = tu_max_abs_diff(s32.kinds[i].grad, s64.kinds[i].grad, s64.kinds[i].n);
        ck_assert_msg(diff <= 1e-13 * tu_max_abs(s64.kinds[i].grad, s64.kinds[i].n), "%s %g",
                      s64.kinds[i].name, diff);
    }
    /* t->o receives the forward's output, stored as float */
    double *o64 = tu_dalloc(nq * dv);
    forward_fixed(&c, o64);
    for (int64_t i = 0; i < nq * dv; i++)
        ck_assert_float_eq(of[i], (float)o64[i]);
    gradset_free(&s64);
    gradset_free(&s32);
    free(qf); free(kf); free(vf); free(gf); free(df); free(of); free(o64);
    vcase_free(&c);
}
END_TEST

/* ---- (b) the fast VJP against the ref on a grid -------------------------- */

/* The largest error of still_vjp (F32 values of the case) against
 * still_ref_vjp on the same values, relative to max |ref| per tensor,
 * for the ISA isa; -1 when this machine does not run it. */
static double fast_vs_ref(vcase *c, int isa, const char *label)
{
    const still_shape *sh = &c->shape;
    const int64_t nq = nq_of(c), nk = nk_of(c), d = sh->dim_qk, dv = sh->dim_v;
    float *qf = to_float(c->q, nq * d), *kf = to_float(c->k, nk * d), *vf = to_float(c->v, nk * dv);
    float *gf = c->gate ? to_float(c->gate, nq * dv) : NULL, *df = to_float(c->dout, nq * dv);
    gradset ref, fast;
    double worst = 0.0;
    ref_vjp(c, &ref, NULL);
    gradset_init(c, &fast);
    still_config cfg = c->cfg;
    cfg.isa = isa;
    still_tensors t = {STILL_F32, qf, kf, vf, gf, NULL, NULL, NULL, c->sel, NULL, NULL, NULL,
                       NULL, NULL};
    int rc = still_vjp(&cfg, sh, params_of(c), &t, df, &fast.g);
    if (rc == STILL_E_ISA) {
        worst = -1.0;
    } else {
        ck_assert_int_eq(rc, STILL_OK);
        fprintf(stderr, "# fast vs ref, %s, isa %d:", label, isa);
        for (int i = 0; i < ref.n; i++) {
            double scale = tu_max_abs(ref.kinds[i].grad, ref.kinds[i].n);
            double rel = tu_max_abs_diff(fast.kinds[i].grad, ref.kinds[i].grad, ref.kinds[i].n) /
                         (scale > 0.0 ? scale : 1.0);
            fprintf(stderr, " %s %.1e", ref.kinds[i].name, rel);
            ck_assert_msg(rel <= FAST_BOUND, "%s isa %d: %s max |fast - ref| / max |ref| = %g",
                          label, isa, ref.kinds[i].name, rel);
            worst = fmax(worst, rel);
        }
        fprintf(stderr, "\n");
    }
    gradset_free(&ref);
    gradset_free(&fast);
    free(qf); free(kf); free(vf); free(gf); free(df);
    return worst;
}

typedef struct grid_point {
    still_config cfg;
    const still_shape *sh;
    const char *label;
} grid_point;

START_TEST(test_fast_vjp_within_its_bound_on_the_grid)
{
    static const int isas[] = {STILL_ISA_GENERIC, STILL_ISA_AVX2, STILL_ISA_AVX512,
                               STILL_ISA_NEON};
    /* N = 150: three query blocks of the fast path; chunks straddle them */
    still_shape gqa = shape_of(1, 4, 2, 150, 8, 6, STILL_LAYOUT_BHND);
    still_shape bnhd = shape_of(2, 2, 1, 130, 6, 5, STILL_LAYOUT_BNHD);
    grid_point grid[12];
    int n = 0;
    grid[n++] = (grid_point){cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 16, 4, 2),
                                  &gqa, "saliency/GQA per query head"};
    grid[n] = (grid_point){cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_SOFTMAX, 1, 12, 3, 1),
                                &gqa, "saliency/GQA per kv head/cap 6"};
    grid[n].cfg.select_per_kv = 1;
    grid[n++].cfg.max_sel = 6;
    grid[n++] = (grid_point){cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_ELU1, 0, 10, 2, 0),
                                  &bnhd, "saliency/L=0/NP off/BNHD"};
    grid[n] = (grid_point){cfg_of(STILL_ROUTING_WINDOW, STILL_ACT_HEDGEHOG, 1, 16, 2, 2),
                                &gqa, "window 20/omega"};
    grid[n++].cfg.window = 20;
    /* no linear key: ω acts through eps_den only, do/dω ~ 1e-6 o, the
     * case the fast path's cancellation-free dω is for */
    grid[n++] = (grid_point){cfg_of(STILL_ROUTING_ALL, STILL_ACT_RELU, 1, 10, 0, 1), &bnhd,
                             "all/BNHD"};
    grid[n++] = (grid_point){cfg_of(STILL_ROUTING_NONE, STILL_ACT_HEDGEHOG, 1, 10, 0, 0),
                                  &gqa, "none"};
    grid[n] = (grid_point){cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 16, 4, 2),
                                &gqa, "compat authors"};
    grid[n].cfg.window = 16;
    grid[n].cfg.saliency = STILL_SALIENCY_AUTHORS;
    grid[n++].cfg.phantom_sink = 1;
    grid[n] = (grid_point){cfg_of(STILL_ROUTING_SINKS, STILL_ACT_HEDGEHOG, 1, 16, 0, 2), &gqa,
                           "sinks 4 + window 20"};
    grid[n].cfg.window = 20;
    grid[n++].cfg.sinks = 4;
    grid[n] = (grid_point){cfg_of(STILL_ROUTING_TERRACED, STILL_ACT_HEDGEHOG, 1, 16, 0, 2),
                           &bnhd, "terraced 24/BNHD"};
    grid[n++].cfg.window = 24;
    grid[n] = (grid_point){cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 16, 4, 2), &gqa,
                           "saliency/drop"};
    grid[n++].cfg.rest = STILL_REST_DROP;
    vopts full = {.f = 8, .with_b = 1, .with_u = 1, .tied = 0, .with_w = 1, .with_gate = 1};
    vopts bn = {.f = 6, .with_b = 1, .with_u = 1, .tied = 1, .with_w = 1, .with_gate = 1};
    double worst = 0.0;
    int ran = 0;
    for (int i = 0; i < n; i++) {
        vcase c;
        vcase_init(&c, 200 + (uint64_t)i, grid[i].sh, &grid[i].cfg,
                   grid[i].sh == &gqa ? &full : &bn);
        for (size_t a = 0; a < sizeof isas / sizeof isas[0]; a++) {
            double e = fast_vs_ref(&c, isas[a], grid[i].label);
            if (e >= 0.0)
                ran++;
            worst = fmax(worst, e);
        }
        vcase_free(&c);
    }
    fprintf(stderr, "# fast vs ref: worst %.2e over %d runs (bound %.0e)\n", worst, ran,
            FAST_BOUND);
    ck_assert(ran >= n); /* at least the generic ISA everywhere */
}
END_TEST

/* ---- (c) the transfer gradient is the VJP of 2 (o - o_T) / n ----------------- */

START_TEST(test_ref_transfer_is_vjp_of_its_upstream)
{
    still_shape sh = shape_of(1, 2, 1, 40, 4, 3, STILL_LAYOUT_BNHD);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 8, 2, 2);
    cfg.max_sel = 5;
    vopts o = {.f = 4, .with_b = 1, .with_u = 1, .tied = 0, .with_w = 1, .with_gate = 1};
    vcase c;
    vcase_init(&c, 120, &sh, &cfg, &o);
    const int64_t n = nq_of(&c) * sh.dim_v;
    double *out = tu_dalloc(n), *teacher = tu_dalloc(n), loss;
    still_tensors t = tensors_of(&c);
    t.o = teacher;
    ck_assert_int_eq(still_ref_teacher(&cfg, &sh, &t), STILL_OK);
    forward_fixed(&c, out);
    for (int64_t i = 0; i < n; i++)
        c.dout[i] = 2.0 * (out[i] - teacher[i]) / (double)n;
    gradset vjp, tr;
    ref_vjp(&c, &vjp, NULL);
    gradset_init(&c, &tr);
    t = tensors_of(&c);
    t.selection_in = c.sel;
    ck_assert_int_eq(still_ref_transfer_grad(&cfg, &sh, &c.params, &t, NULL, &loss, &tr.g),
                     STILL_OK);
    for (int i = 0; i < vjp.n; i++) {
        double mx = tu_max_abs(vjp.kinds[i].grad, vjp.kinds[i].n);
        double diff = tu_max_abs_diff(tr.kinds[i].grad, vjp.kinds[i].grad, vjp.kinds[i].n);
        ck_assert_msg(mx > 0.0 && diff <= 1e-12 * mx, "ref %s: %g of %g", vjp.kinds[i].name,
                      diff, mx);
    }
    gradset_free(&vjp);
    gradset_free(&tr);
    free(out);
    free(teacher);
    vcase_free(&c);
}
END_TEST

START_TEST(test_fast_transfer_is_vjp_of_its_upstream)
{
    /* the same backward: o from the fast path itself, a given teacher */
    still_shape sh = shape_of(1, 2, 2, 140, 6, 4, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 16, 3, 2);
    vopts o = {.f = 6, .with_b = 1, .with_u = 1, .tied = 1, .with_w = 1, .with_gate = 1};
    vcase c;
    vcase_init(&c, 121, &sh, &cfg, &o);
    const int64_t nq = nq_of(&c), nk = nk_of(&c), d = sh.dim_qk, dv = sh.dim_v, n = nq * dv;
    float *qf = to_float(c.q, nq * d), *kf = to_float(c.k, nk * d), *vf = to_float(c.v, nk * dv);
    float *gf = to_float(c.gate, n), *of = tu_alloc((size_t)n * sizeof *of);
    float *tf = tu_alloc((size_t)n * sizeof *tf), *df = tu_alloc((size_t)n * sizeof *df);
    still_tensors t = {STILL_F32, qf, kf, vf, gf, tf, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                       NULL};
    ck_assert_int_eq(still_teacher(&cfg, &sh, &t), STILL_OK);
    gradset vjp, tr;
    gradset_init(&c, &tr);
    gradset_init(&c, &vjp);
    double loss;
    t.o = of;
    t.selection_in = c.sel;
    ck_assert_int_eq(still_transfer_grad(&cfg, &sh, &c.params, &t, tf, &loss, &tr.g), STILL_OK);
    double sq = 0.0;
    for (int64_t i = 0; i < n; i++) {
        df[i] = (float)(2.0 * ((double)of[i] - tf[i]) / (double)n);
        sq += ((double)of[i] - tf[i]) * ((double)of[i] - tf[i]);
    }
    ck_assert_double_eq_tol(loss, sq / (double)n, 1e-5 * loss);
    ck_assert_int_eq(still_vjp(&cfg, &sh, &c.params, &t, df, &vjp.g), STILL_OK);
    for (int i = 0; i < vjp.n; i++) {
        double mx = tu_max_abs(tr.kinds[i].grad, tr.kinds[i].n);
        double diff = tu_max_abs_diff(tr.kinds[i].grad, vjp.kinds[i].grad, vjp.kinds[i].n);
        fprintf(stderr, "# fast transfer vs VJP: %s %.1e\n", tr.kinds[i].name, diff / mx);
        /* o and dO pass through float: ~1e-7 of |o| / |o - o_T| */
        ck_assert_msg(mx > 0.0 && diff <= 1e-5 * mx, "fast %s: %g of %g", tr.kinds[i].name,
                      diff, mx);
    }
    gradset_free(&vjp);
    gradset_free(&tr);
    free(qf); free(kf); free(vf); free(gf); free(of); free(tf); free(df);
    vcase_free(&c);
}
END_TEST

/* ---- (d) arguments ---------------------------------------------------------- */

START_TEST(test_argument_checks_before_any_work)
{
    still_shape sh = shape_of(1, 1, 1, 12, 4, 3, STILL_LAYOUT_BHND);
    still_config cfg = cfg_of(STILL_ROUTING_SALIENCY, STILL_ACT_HEDGEHOG, 1, 4, 1, 1);
    vopts o = {.f = 0};
    vcase c;
    vcase_init(&c, 130, &sh, &cfg, &o);
    const int64_t n = nq_of(&c) * sh.dim_v, nqd = nq_of(&c) * sh.dim_qk;
    double *dq = tu_dalloc(nqd);
    still_grads g;
    memset(&g, 0, sizeof g);
    g.dq = dq;
    still_tensors t = tensors_of(&c);
    dq[0] = 42.0;
    ck_assert_int_eq(still_ref_vjp(&cfg, &sh, NULL, &t, NULL, &g), STILL_E_NULL);
    ck_assert_int_eq(still_ref_vjp(&cfg, &sh, NULL, &t, c.dout, NULL), STILL_E_NULL);
    ck_assert_int_eq(still_ref_vjp(&cfg, &sh, NULL, NULL, c.dout, &g), STILL_E_NULL);
    ck_assert_int_eq(still_ref_vjp(&cfg, NULL, NULL, &t, c.dout, &g), STILL_E_NULL);
    c.dout[n - 1] = NAN;
    ck_assert_int_eq(still_ref_vjp(&cfg, &sh, NULL, &t, c.dout, &g), STILL_E_NONFINITE);
    c.dout[n - 1] = -INFINITY;
    ck_assert_int_eq(still_ref_vjp(&cfg, &sh, NULL, &t, c.dout, &g), STILL_E_NONFINITE);
    c.dout[n - 1] = 1.0;
    still_shape bad = sh;
    bad.heads_kv = 2; /* Hq % Hk != 0 */
    ck_assert_int_eq(still_ref_vjp(&cfg, &bad, NULL, &t, c.dout, &g), STILL_E_SHAPE);
    still_config badc = cfg;
    badc.topk = 9; /* > C */
    ck_assert_int_eq(still_ref_vjp(&badc, &sh, NULL, &t, c.dout, &g), STILL_E_CONFIG);
    t.dtype = 7;
    ck_assert_int_eq(still_ref_vjp(&cfg, &sh, NULL, &t, c.dout, &g), STILL_E_DTYPE);
    ck_assert(dq[0] == 42.0); /* nothing written on any refusal */
    /* the fast path takes F32 only, and F32 non-finite dO is refused too */
    t.dtype = STILL_F64;
    ck_assert_int_eq(still_vjp(&cfg, &sh, NULL, &t, c.dout, &g), STILL_E_DTYPE);
    const int64_t nk = nk_of(&c);
    float *qf = to_float(c.q, nqd), *kf = to_float(c.k, nk * sh.dim_qk);
    float *vf = to_float(c.v, nk * sh.dim_v), *df = to_float(c.dout, n);
    still_tensors tf = {STILL_F32, qf, kf, vf, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                        NULL, NULL};
    df[3] = INFINITY;
    ck_assert_int_eq(still_vjp(&cfg, &sh, NULL, &tf, df, &g), STILL_E_NONFINITE);
    ck_assert_int_eq(still_vjp(&cfg, &sh, NULL, &tf, NULL, &g), STILL_E_NULL);
    ck_assert(dq[0] == 42.0);
    still_config isa = cfg;
    isa.isa = 99;
    ck_assert_int_eq(still_vjp(&isa, &sh, NULL, &tf, df, &g), STILL_E_CONFIG);
    df[3] = 0.5f;
    ck_assert_int_eq(still_vjp(&cfg, &sh, NULL, &tf, df, &g), STILL_OK);
    ck_assert(dq[0] != 42.0);
    free(qf); free(kf); free(vf); free(df); free(dq);
    vcase_free(&c);
}
END_TEST

/* VmHWM of /proc/self/status in KiB (-1 when unreadable), after resetting
 * it to the current RSS when reset is set (clear_refs, Linux >= 4.0). */
static long peak_rss_kib(int reset)
{
    if (reset) {
        FILE *f = fopen("/proc/self/clear_refs", "w");
        if (!f)
            return -1;
        fputs("5", f);
        fclose(f);
    }
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Growth of the peak RSS in KiB over one still_vjp of N tokens (one head,
 * d = dv = 64, defaults: hedgehog, m = 128), -1 when not measurable. */
static long vjp_peak_growth(int64_t N)
{
    const int64_t d = 64;
    still_shape sh = shape_of(1, 1, 1, N, d, d, STILL_LAYOUT_BHND);
    tu_rng g;
    tu_rng_seed(&g, 140);
    double *x = tu_dalloc(N * d);
    float *in[4];
    for (int a = 0; a < 4; a++) { /* q, k, v, dO */
        in[a] = tu_alloc((size_t)(N * d) * sizeof *in[a]);
        tu_fill_normal(&g, x, N * d, 1.0);
        for (int64_t i = 0; i < N * d; i++)
            in[a][i] = (float)x[i];
    }
    double *dq = tu_dalloc(N * d), *dk = tu_dalloc(N * d), *dv = tu_dalloc(N * d);
    still_grads gr;
    memset(&gr, 0, sizeof gr);
    gr.dq = dq;
    gr.dk = dk;
    gr.dv = dv;
    still_tensors t = {STILL_F32, in[0], in[1], in[2], NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                       NULL, NULL, NULL};
    long before = peak_rss_kib(1), grew = -1;
    if (before >= 0) {
        ck_assert_int_eq(still_vjp(NULL, &sh, NULL, &t, in[3], &gr), STILL_OK);
        grew = peak_rss_kib(0) - before;
        ck_assert(tu_max_abs(dq, N * d) > 0.0 && tu_max_abs(dk, N * d) > 0.0);
    }
    free(x); free(dq); free(dk); free(dv);
    for (int a = 0; a < 4; a++)
        free(in[a]);
    return grew;
}

/* AddressSanitizer keeps freed memory in quarantine: the peak RSS then
 * measures it, not the VJP. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

START_TEST(test_fast_vjp_memory_is_not_quadratic_at_4k)
{
    if (UNDER_ASAN) {
        fprintf(stderr, "# AddressSanitizer build: memory not measured\n");
        return;
    }
    /* N = 4096, d = 64: one N x N float matrix alone is 64 MiB.  The fast
     * VJP's working set is O(N (d + dv + m)) per head plus blocks of 64
     * query rows: under that matrix, and doubling N at most ~doubles it
     * (a quadratic term would make it ~4x) */
    vjp_peak_growth(256); /* BLAS's own buffers first: they are not the VJP's */
    long half = vjp_peak_growth(2048), full = vjp_peak_growth(4096);
    if (half < 0 || full < 0) {
        fprintf(stderr, "# no /proc/self/clear_refs: memory not measured\n");
        return;
    }
    fprintf(stderr, "# fast VJP peak RSS growth: N = 2048 %.1f MiB, N = 4096 %.1f MiB "
            "(one 4096 x 4096 float matrix: 64 MiB)\n", (double)half / 1024.0,
            (double)full / 1024.0);
    ck_assert_msg(full < 64 * 1024, "peak RSS grew by %ld KiB at N = 4096", full);
    ck_assert_msg(full < 3 * half, "2048 -> 4096: %ld -> %ld KiB", half, full);
}
END_TEST

static Suite *vjp_suite(void)
{
    Suite *s = suite_create("vjp");
    TCase *fd = tcase_create("finite_differences");
    tcase_set_timeout(fd, 120);
    tcase_add_test(fd, test_fd_saliency_gqa_per_query_head_L2);
    tcase_add_test(fd, test_fd_saliency_untied_bnhd_omega_L1);
    tcase_add_test(fd, test_fd_cap_L0_npmap_off);
    tcase_add_test(fd, test_fd_gqa_per_kv_head_cap);
    tcase_add_test(fd, test_fd_window_routing_omega);
    tcase_add_test(fd, test_fd_routing_all_and_none);
    tcase_add_test(fd, test_fd_sinks_and_terraced_routings);
    tcase_add_test(fd, test_fd_rest_drop);
    tcase_add_test(fd, test_fd_compat_authors_phantom_sink);
    tcase_add_test(fd, test_fd_default_map_and_ones_gate);
    tcase_add_test(fd, test_ref_f32_inputs_are_the_f64_vjp_of_their_values);
    suite_add_tcase(s, fd);
    TCase *fast = tcase_create("fast_vs_ref");
    tcase_set_timeout(fast, 120);
    tcase_add_test(fast, test_fast_vjp_within_its_bound_on_the_grid);
    tcase_add_test(fast, test_fast_vjp_memory_is_not_quadratic_at_4k);
    suite_add_tcase(s, fast);
    TCase *tr = tcase_create("transfer_and_arguments");
    tcase_add_test(tr, test_ref_transfer_is_vjp_of_its_upstream);
    tcase_add_test(tr, test_fast_transfer_is_vjp_of_its_upstream);
    tcase_add_test(tr, test_argument_checks_before_any_work);
    suite_add_tcase(s, tr);
    return s;
}

int main(void)
{
    return tu_run_suite(vjp_suite());
}
