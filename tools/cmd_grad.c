/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * cmd_grad.c -- `still grad`: the attention-transfer loss of SPEC §8 and
 * its exact gradients, or with --dout the backward pass (VJP, SPEC §18) of
 * a given upstream gradient, written as safetensors named as their inputs
 * (SPEC §11).  Also the parameter set shared with `still transfer`.
 */
#include "tool_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the parameter set (tool_train.h) ------------------------------------ */

static void add_tensor(tool_param_set *ps, const char *name, int ndim, int64_t a, int64_t b,
                       int64_t c)
{
    int i = ps->n++;
    ps->names[i] = name;
    ps->ndim[i] = ndim;
    ps->shape[i][0] = a;
    ps->shape[i][1] = b;
    ps->shape[i][2] = c;
    ps->count[i] = a * (ndim > 1 ? b : 1) * (ndim > 2 ? c : 1);
    ps->offset[i] = ps->total;
    ps->total += ps->count[i];
}

static int index_of(const tool_param_set *ps, const char *name)
{
    for (int i = 0; i < ps->n; i++)
        if (!strcmp(ps->names[i], name))
            return i;
    return -1;
}

/* Copies src (or the identity when W is NULL, zeros for NULL b, u) into
 * tensor `name`; returns its storage. */
static double *fill(tool_param_set *ps, const char *name, const double *src, int identity_d)
{
    int i = index_of(ps, name);
    double *dst = ps->values + ps->offset[i];
    if (src) {
        memcpy(dst, src, (size_t)ps->count[i] * sizeof *dst);
    } else {
        memset(dst, 0, (size_t)ps->count[i] * sizeof *dst);
        if (identity_d) /* W = I_d for every head (SPEC §2 default) */
            for (int64_t h = 0; h < ps->shape[i][0]; h++)
                for (int64_t r = 0; r < identity_d; r++)
                    dst[(h * identity_d + r) * identity_d + r] = 1.0;
    }
    return dst;
}

/* One map's tensors: W always (the identity when absent), b and u when
 * present (b also when add_bias). */
static void add_map(tool_param_set *ps, const char *pre, const still_feature_map *fm,
                    int64_t Hq, int64_t d, int add_bias)
{
    static const char *const names[2][3] = {{"fq.W", "fq.b", "fq.u"}, {"fk.W", "fk.b", "fk.u"}};
    const char *const *nm = names[strcmp(pre, "fq") == 0 ? 0 : 1];
    int64_t f = fm && fm->W ? fm->f : d;
    add_tensor(ps, nm[0], 3, Hq, f, d);
    if ((fm && fm->b) || add_bias)
        add_tensor(ps, nm[1], 2, Hq, f, 0);
    if (fm && fm->u)
        add_tensor(ps, nm[2], 2, Hq, d, 0);
}

static void point_map(tool_param_set *ps, const char *pre, const still_feature_map *fm,
                      int64_t d, still_feature_map *out)
{
    char name[8];
    int i;
    snprintf(name, sizeof name, "%s.W", pre);
    i = index_of(ps, name);
    out->f = ps->shape[i][1];
    out->W = fill(ps, name, fm ? fm->W : NULL, fm && fm->W ? 0 : (int)d);
    snprintf(name, sizeof name, "%s.b", pre);
    out->b = index_of(ps, name) >= 0 ? fill(ps, name, fm ? fm->b : NULL, 0) : NULL;
    snprintf(name, sizeof name, "%s.u", pre);
    out->u = index_of(ps, name) >= 0 ? fill(ps, name, fm ? fm->u : NULL, 0) : NULL;
}

int tool_param_set_build(const still_params *given, int64_t Hq, int64_t d, int add_bias,
                         tool_param_set *ps)
{
    still_params def;
    if (!given) {
        still_params_default(&def);
        given = &def;
    }
    memset(ps, 0, sizeof *ps);
    add_map(ps, "fq", &given->fq, Hq, d, add_bias);
    if (!given->fk_tied)
        add_map(ps, "fk", &given->fk, Hq, d, 0);
    if (given->window_w)
        add_tensor(ps, "window.w", 1, Hq, 0, 0);
    ps->values = calloc((size_t)ps->total, sizeof *ps->values);
    ps->grads = calloc((size_t)ps->total, sizeof *ps->grads);
    if (!ps->values || !ps->grads) {
        tool_param_set_free(ps);
        return STILL_E_NOMEM;
    }
    still_params_default(&ps->params);
    point_map(ps, "fq", &given->fq, d, &ps->params.fq);
    ps->params.fk_tied = given->fk_tied;
    if (!given->fk_tied)
        point_map(ps, "fk", &given->fk, d, &ps->params.fk);
    if (given->window_w)
        ps->params.window_w = fill(ps, "window.w", given->window_w, 0);
    return STILL_OK;
}

void tool_param_set_free(tool_param_set *ps)
{
    free(ps->values);
    free(ps->grads);
    memset(ps, 0, sizeof *ps);
}

still_grads tool_param_set_grads(const tool_param_set *ps)
{
    still_grads g;
    memset(&g, 0, sizeof g);
    double **slots[7] = {&g.dfq_W, &g.dfq_b, &g.dfq_u, &g.dfk_W, &g.dfk_b, &g.dfk_u,
                         &g.dwindow_w};
    static const char *const names[7] = {"fq.W", "fq.b", "fq.u", "fk.W", "fk.b", "fk.u",
                                         "window.w"};
    for (int s = 0; s < 7; s++) {
        int i = index_of(ps, names[s]);
        if (i >= 0)
            *slots[s] = ps->grads + ps->offset[i];
    }
    return g;
}

void tool_param_set_arrays(const tool_param_set *ps, int of_grads, still__array *arrays)
{
    for (int i = 0; i < ps->n; i++) {
        still__array *a = &arrays[i];
        memset(a, 0, sizeof *a);
        a->dtype = STILL__DT_F8;
        a->ndim = ps->ndim[i];
        for (int k = 0; k < a->ndim; k++)
            a->shape[k] = ps->shape[i][k];
        a->count = ps->count[i];
        a->data = (of_grads ? ps->grads : ps->values) + ps->offset[i];
    }
}

/* ---- still grad ------------------------------------------------------------ */

static void grad_usage(FILE *f)
{
    fprintf(f,
            "usage: still grad --q Q.npy --k K.npy --v V.npy --grads-out G.safetensors\n"
            "                  [--dout DO.npy] [options]\n"
            "\n"
            "The attention-transfer loss of SPEC §8, L = mean (o - o_teacher)^2 over every\n"
            "output element (o_teacher: full causal softmax attention of the same q, k, v,\n"
            "a constant), and its exact gradients.  The selection is a constant of the\n"
            "forward pass.  G.safetensors holds `loss` (a scalar) and the gradients named\n"
            "as their inputs: fq.W (the identity when --params has none: it is in effect),\n"
            "fq.b, fq.u, fk.* (when fk is not tied), window.w -- for the tensors of\n"
            "--params -- then gate (with --gate), q, k and v.\n"
            "\n"
            "With --dout, the backward pass (VJP, SPEC §18) instead: the gradients of\n"
            "L = sum(dO * o) for the given upstream gradient dO = dL/do, with the routing\n"
            "held fixed as computed by the forward (or given by --select-in); the file\n"
            "holds the same gradients, without `loss`.\n"
            "\n"
            "options of this command:\n"
            "  --grads-out G        the loss and gradients, safetensors     (required)\n"
            "  --teacher T.npy      a fixed teacher output [B,Hq,N,dv] instead of the\n"
            "                       softmax attention of q, k, v (e.g. stage 2, SPEC §9)\n"
            "  --dout DO.npy        an upstream gradient dL/do [B,Hq,N,dv] (the shape of o):\n"
            "                       write its VJP instead of the transfer gradients\n"
            "  --out O.npy          the student output o (optional here)\n"
            "  --dtype D            f4 or f8 for the outputs (default f8 ref, f4 fast)\n"
            "\nthe options of `still run` (except --mode decode):\n%s"
            "\n"
            "Exit status: 0 success, 2 usage error, 3 input file problem, 4 library\n"
            "error (e.g. the fast path not available), 5 output not written.\n",
            tool_attn_options_help);
}

int tool_load_like_o(const char *cmd, const char *path, const char *what,
                       const tool_attn_inputs *in, void **out)
{
    char err[STILL__ERRLEN], found[160], want[160];
    int64_t shape[4];
    still__array a;
    int ndim = tool_attn_out_shape(in, in->shape.dim_v, shape), rc;

    if (still__npy_read(path, &a, err, sizeof err))
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s", err);
    tool_shape_text(a.ndim, a.shape, found, sizeof found);
    tool_shape_text(ndim, shape, want, sizeof want);
    if (a.dtype == STILL__DT_U1 || a.ndim != ndim ||
        memcmp(a.shape, shape, (size_t)ndim * sizeof *shape)) {
        still__array_free(&a);
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: %s must be a float array of shape %s "
                         "(that of o), found %s %s", path, what, want,
                         still__dtype_name(a.dtype), found);
    }
    if (in->dtype == STILL_F64)
        rc = still__array_to_f64(&a, (double **)out);
    else
        rc = still__array_to_f32(&a, (float **)out);
    still__array_free(&a);
    if (rc)
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: %s", path, still_strerror(rc));
    return TOOL_EXIT_OK;
}

/* Writes the safetensors file: arrays are F8 views, converted to F4 when
 * dtype says so. */
static int write_st(const char *cmd, const char *path, int n, const char *const *names,
                    const still__array *arrays, int dtype)
{
    char err[STILL__ERRLEN];
    still__array conv[32];
    int rc = STILL_OK;
    if (n > 32)
        return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s: too many tensors", path);
    for (int i = 0; i < n; i++) {
        conv[i] = arrays[i];
        if (dtype == STILL__DT_F4) {
            float *f = malloc((size_t)(arrays[i].count ? arrays[i].count : 1) * sizeof *f);
            if (!f) {
                rc = STILL_E_NOMEM;
                n = i;
                break;
            }
            for (int64_t k = 0; k < arrays[i].count; k++)
                f[k] = (float)((const double *)arrays[i].data)[k];
            conv[i].dtype = STILL__DT_F4;
            conv[i].data = f;
        }
    }
    if (!rc)
        rc = still__st_write_fd(tool_out_fd(cmd, path), path, n, names, conv, err, sizeof err);
    else
        snprintf(err, sizeof err, "%s: out of memory", path);
    if (dtype == STILL__DT_F4)
        for (int i = 0; i < n; i++)
            free(conv[i].data);
    return rc ? tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s", err) : tool_out_close(cmd, path);
}

/* A gradient of an input array as a safetensors view: shape in the rank
 * and layout of the inputs (3-D when B = 1 was given as 3-D). */
static still__array input_view(const tool_attn_inputs *in, int64_t H, int64_t D, double *data)
{
    still__array a;
    memset(&a, 0, sizeof a);
    a.dtype = STILL__DT_F8;
    a.ndim = tool_attn_array_shape(in, H, D, a.shape);
    a.count = in->shape.batch * H * in->shape.seq_len * D;
    a.data = data;
    return a;
}

int tool_grad_set_alloc(const tool_attn_inputs *in, const still_params *given,
                        tool_grad_set *gs)
{
    const still_shape *s = &in->shape;
    const int64_t nq = s->batch * s->heads_q * s->seq_len, nk = s->batch * s->heads_kv * s->seq_len;
    memset(gs, 0, sizeof *gs);
    if (tool_param_set_build(given, s->heads_q, s->dim_qk, 0, &gs->ps) ||
        !(gs->dq = malloc((size_t)(nq * s->dim_qk) * sizeof *gs->dq)) ||
        !(gs->dk = malloc((size_t)(nk * s->dim_qk) * sizeof *gs->dk)) ||
        !(gs->dv = malloc((size_t)(nk * s->dim_v) * sizeof *gs->dv)) ||
        (in->gate && !(gs->dgate = malloc((size_t)(nq * s->dim_v) * sizeof *gs->dgate)))) {
        tool_grad_set_free(gs);
        return STILL_E_NOMEM;
    }
    gs->g = tool_param_set_grads(&gs->ps);
    gs->g.dq = gs->dq;
    gs->g.dk = gs->dk;
    gs->g.dv = gs->dv;
    gs->g.dgate = gs->dgate;
    return STILL_OK;
}

void tool_grad_set_free(tool_grad_set *gs)
{
    tool_param_set_free(&gs->ps);
    free(gs->dq);
    free(gs->dk);
    free(gs->dv);
    free(gs->dgate);
    memset(gs, 0, sizeof *gs);
}

int tool_grad_set_named(const tool_attn_inputs *in, const tool_grad_set *gs, const char **names,
                        still__array *arrays)
{
    const still_shape *s = &in->shape;
    int n = gs->ps.n;
    tool_param_set_arrays(&gs->ps, 1, arrays);
    for (int i = 0; i < gs->ps.n; i++)
        names[i] = gs->ps.names[i];
    if (gs->dgate) {
        names[n] = "gate";
        arrays[n++] = input_view(in, s->heads_q, s->dim_v, gs->dgate);
    }
    names[n] = "q";
    arrays[n++] = input_view(in, s->heads_q, s->dim_qk, gs->dq);
    names[n] = "k";
    arrays[n++] = input_view(in, s->heads_kv, s->dim_qk, gs->dk);
    names[n] = "v";
    arrays[n++] = input_view(in, s->heads_kv, s->dim_v, gs->dv);
    return n;
}

typedef struct grad_opts {
    tool_attn_opts a;
    const char *grads_out, *teacher, *dout;
} grad_opts;

static int parse(const char *cmd, int argc, char **argv, grad_opts *o, int *help)
{
    *help = 0;
    tool_attn_defaults(&o->a);
    o->grads_out = o->teacher = o->dout = NULL;
    for (int i = 1; i < argc; i++) {
        if (tool_is_help(argv[i])) {
            *help = 1;
            return TOOL_EXIT_OK;
        }
        const char **field = tool_is_option(argv[i], "--grads-out") ? &o->grads_out
                             : tool_is_option(argv[i], "--teacher") ? &o->teacher
                             : tool_is_option(argv[i], "--dout") ? &o->dout : NULL;
        if (field) {
            const char *opt = field == &o->grads_out ? "--grads-out"
                              : field == &o->teacher ? "--teacher" : "--dout";
            if (!(*field = tool_option_value(cmd, argc, argv, &i, opt)))
                return TOOL_EXIT_USAGE;
            continue;
        }
        int rc = tool_attn_option(cmd, &o->a, argc, argv, &i);
        if (rc < 0)
            return TOOL_EXIT_USAGE;
        if (rc == 0)
            return tool_fail(TOOL_EXIT_USAGE, cmd, "unknown option '%s' (see still grad --help)",
                             argv[i]);
    }
    if (!o->a.q || !o->a.k || !o->a.v)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--q, --k and --v are required (see still grad "
                         "--help)");
    if (!o->grads_out)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--grads-out is required (see still grad --help)");
    if (o->teacher && o->dout)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--teacher and --dout exclude each other: the "
                         "transfer loss or a given upstream gradient");
    if (o->a.decode)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--mode decode: the gradients are those of the "
                         "prefill (SPEC §8)");
    if (o->a.cfg.routing == STILL_ROUTING_SALIENCY && o->a.cfg.topk > o->a.cfg.chunk)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--topk %lld exceeds --chunk %lld (SPEC §5)",
                         (long long)o->a.cfg.topk, (long long)o->a.cfg.chunk);
    int rc;
    if ((rc = tool_out_add(cmd, "--grads-out", o->grads_out)) ||
        (rc = tool_attn_outputs(cmd, &o->a)) || (rc = tool_out_input(cmd, "--teacher", o->teacher)))
        return rc;
    return TOOL_EXIT_OK;
}

int cmd_grad(int argc, char **argv)
{
    const char *cmd = "grad";
    grad_opts o;
    tool_attn_inputs in;
    tool_grad_set gs;
    int help, rc;

    if ((rc = parse(cmd, argc, argv, &o, &help)) || help) {
        if (help)
            grad_usage(stdout);
        return rc;
    }
    if ((rc = tool_attn_load(cmd, &o.a, 1, &in)))
        return rc;
    const still_shape *s = &in.shape;
    const int64_t nq = s->batch * s->heads_q * s->seq_len;
    const size_t es = in.dtype == STILL_F64 ? sizeof(double) : sizeof(float);
    void *teacher = NULL, *dout = NULL, *out = NULL;
    double *sigma = NULL;
    uint8_t *sel = NULL;
    memset(&gs, 0, sizeof gs);
    if ((o.teacher && (rc = tool_load_like_o(cmd, o.teacher, "teacher output", &in, &teacher))) ||
        (o.dout && (rc = tool_load_like_o(cmd, o.dout, "dO", &in, &dout))) ||
        (o.a.path == TOOL_PATH_FAST && (rc = tool_blas_room(cmd))))
        goto done;
    if (tool_grad_set_alloc(&in, o.a.params ? &in.params : NULL, &gs) ||
        (o.a.out && !(out = malloc((size_t)(nq * s->dim_v) * es))) ||
        (o.a.scores_out && !(sigma = malloc((size_t)nq * sizeof *sigma))) ||
        (o.a.select_out && !(sel = malloc((size_t)nq)))) {
        rc = tool_fail(TOOL_EXIT_LIBRARY, cmd, "out of memory");
        goto done;
    }
    const still_grads g = gs.g;
    still_tensors t = {in.dtype, in.q, in.k, in.v, in.gate, out, sigma, sel, in.selection_in,
                       NULL, NULL, NULL, NULL, NULL};
    double loss = 0.0, t0 = tool_now();
    tool_progress(0, 0, "%s path, loss and gradients of %lld tokens x %lld heads ...",
                  o.a.path == TOOL_PATH_FAST ? "fast" : "ref", (long long)s->seq_len,
                  (long long)(s->batch * s->heads_q));
    if (dout) /* SPEC §18: the VJP of the given dO */
        rc = o.a.path == TOOL_PATH_FAST ? still_vjp(&o.a.cfg, s, &gs.ps.params, &t, dout, &g)
                                        : still_ref_vjp(&o.a.cfg, s, &gs.ps.params, &t, dout, &g);
    else
        rc = o.a.path == TOOL_PATH_FAST
                 ? still_transfer_grad(&o.a.cfg, s, &gs.ps.params, &t, teacher, &loss, &g)
                 : still_ref_transfer_grad(&o.a.cfg, s, &gs.ps.params, &t, teacher, &loss, &g);
    double seconds = tool_now() - t0;
    tool_progress_clear();
    if (rc) {
        rc = tool_fail(TOOL_EXIT_LIBRARY, cmd, "the %s path refused: %s (%s)",
                       o.a.path == TOOL_PATH_FAST ? "fast" : "ref", still_strerror(rc),
                       tool_status_name(rc));
        goto done;
    }

    /* the npy outputs, then the gradients; committed together */
    const int dt = o.a.dtype ? o.a.dtype : o.a.path == TOOL_PATH_FAST ? STILL__DT_F4 : STILL__DT_F8;
    tool_output outs[3];
    int nout = 0;
    if (out) {
        outs[nout] = (tool_output){o.a.out, dt, 0, {0}, out, in.dtype};
        outs[nout].ndim = tool_attn_out_shape(&in, s->dim_v, outs[nout].shape);
        nout++;
    }
    if (sigma) {
        outs[nout] = (tool_output){o.a.scores_out, STILL__DT_F8, 0, {0}, sigma, STILL_F64};
        outs[nout].ndim = tool_attn_out_shape(&in, 0, outs[nout].shape);
        nout++;
    }
    if (sel) {
        outs[nout] = (tool_output){o.a.select_out, STILL__DT_U1, 0, {0}, sel, STILL_F64};
        outs[nout].ndim = tool_attn_out_shape(&in, 0, outs[nout].shape);
        nout++;
    }
    if ((rc = tool_write_outputs(cmd, outs, nout)))
        goto done;
    const char *names[TOOL_GRAD_TENSORS + 1];
    still__array arrays[TOOL_GRAD_TENSORS + 1];
    int n = 0;
    if (!dout) { /* the transfer loss; a VJP has none */
        names[n] = "loss";
        memset(&arrays[n], 0, sizeof arrays[n]);
        arrays[n].dtype = STILL__DT_F8;
        arrays[n].count = 1; /* a scalar: shape [] */
        arrays[n++].data = &loss;
    }
    n += tool_grad_set_named(&in, &gs, names + n, arrays + n);
    if ((rc = write_st(cmd, o.grads_out, n, names, arrays, dt)) || (rc = tool_out_commit(cmd)))
        goto done;
    char what[48];
    if (dout)
        snprintf(what, sizeof what, "VJP of --dout");
    else
        snprintf(what, sizeof what, "loss %.9g", loss);
    printf("still grad: %s path, B=%lld Hq=%lld Hk=%lld N=%lld d=%lld dv=%lld, %.3f s; "
           "%s; wrote %s (%d tensors)\n", o.a.path == TOOL_PATH_FAST ? "fast" : "ref",
           (long long)s->batch, (long long)s->heads_q, (long long)s->heads_kv,
           (long long)s->seq_len, (long long)s->dim_qk, (long long)s->dim_v, seconds, what,
           o.grads_out, n);
done:
    free(teacher);
    free(dout);
    free(out);
    free(sigma);
    free(sel);
    tool_grad_set_free(&gs);
    tool_attn_free(&in);
    return rc;
}
