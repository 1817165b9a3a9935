/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * tool_attn.c -- the attention inputs of SPEC §11, shared by `still run`,
 * `still teacher` (and later `still grad`): the options, and loading q, k,
 * v, gate, parameters and a forced selection with every check done before
 * any computation, each failure named in one line.
 */
#define _POSIX_C_SOURCE 200809L /* isatty */
#include "tool.h"

#include <unistd.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char tool_attn_options_help[] =
    "inputs (.npy, <f4 or <f8, <f2 accepted; C order; 3-D arrays mean B = 1):\n"
    "  --q Q.npy            queries [B,Hq,N,d]                          (required)\n"
    "  --k K.npy            keys [B,Hk,N,d], Hk dividing Hq              (required)\n"
    "  --v V.npy            values [B,Hk,N,dv]                           (required)\n"
    "  --gate G.npy         gate values [B,Hq,N,dv] (default all ones)\n"
    "  --params P           safetensors: fq.W [Hq,f,d], fq.b [Hq,f], fq.u [Hq,d],\n"
    "                       fk.* the same (absent: tied to fq), window.w [Hq]\n"
    "configuration (SPEC §2-6):\n"
    "  --chunk C            chunk size C >= 1 (default 64)\n"
    "  --topk K             tokens selected per chunk, 0 <= K <= C (default 4)\n"
    "  --window W           saliency window / exact window of routings window and\n"
    "                       sinks / block of terraced, W >= 2 (default max(C, 2))\n"
    "  --local L            recent chunks kept exact, L >= 0 (default 2)\n"
    "  --routing R          saliency (default), window, all, none, sinks (S sinks +\n"
    "                       the last W positions), terraced (the previous and the\n"
    "                       current block of W; chunk, topk and local unused)\n"
    "  --sinks S            sink positions of routing sinks, S >= 0 (default 4)\n"
    "  --rest R             keys outside the exact set: linear (default, the linear\n"
    "                       branch) or drop (ignored: sparse attention)\n"
    "  --act A              hedgehog (default), softmax, elu1, relu\n"
    "  --no-npmap           no norm-preserving rescale of the feature map\n"
    "  --eps-den E          added to the hybrid denominator, E >= 0 (default 1e-6)\n"
    "  --scale S            logit scale (default 1/sqrt(d))\n"
    "  --cap N              cap on the selected cache, 0 = none (default)\n"
    "  --select-per-kv      one selection per kv head (sigma averaged over its group)\n"
    "  --saliency S         spec (default, SPEC §4) or authors (App. A.1)\n"
    "  --phantom-sink       chunk 0 also sees C phantom keys of logit 0 (App. A.2)\n"
    "  --rest R             linear (default) or drop: what the keys outside the\n"
    "                       exact set feed (routing lte)\n"
    "  --sinks S            routing lte: sink positions, S >= 0 (default 4)\n"
    "  --budget B           routing lte: retained tokens, B >= 0 (required)\n"
    "  --lte-dilation D,..  routing lte: the dilation of each conv layer (default 2)\n"
    "  --lte-input X.npy    routing lte: the network input [B,Hk,N,c0] (default the\n"
    "                       concatenation [k, v]); weights lte.* in --params\n"
    "  --mixer M            still (default) or liger: alpha SWA + beta GLA (SPEC §16)\n"
    "  --alpha A            liger's weight of the window branch (default 0.5)\n"
    "  --beta B             liger's weight of the linear branch (default 0.5)\n"
    "  --q-lin Q.npy        liger's linear-branch queries, as q (default q)\n"
    "  --k-lin K.npy        liger's linear-branch keys, as k (default k)\n"
    "  --routing nsa        native sparse attention (SPEC §17, --path ref): compressed,\n"
    "                       selected and sliding branches; --window W its sliding\n"
    "                       window (default 512)\n"
    "  --nsa-block BS       routing nsa: positions per block, BS >= 1 (default 64)\n"
    "  --nsa-topk S         routing nsa: blocks selected per query, S >= 3 (default 16)\n"
    "  --nsa-gates G.npy    routing nsa: the gates (cmp, slc, swa) [B,Hq,N,3]\n"
    "                       (default all ones)\n"
    "  --compat authors     the authors' prefill (App. A): --saliency authors\n"
    "                       --phantom-sink --chunk 64 --window 64 --topk 4 --local 2\n"
    "                       --eps-den 1e-6 (options after it override these)\n"
    "  --compat authors-decode  the same, and the authors' decode (App. A.3): a state's\n"
    "                       first block is their prefill, later tokens their decode\n"
    "                       (--path ref; with --mode prefill the same as authors)\n"
    "execution:\n"
    "  --path P             ref (default: exact, double) or fast (float32, SIMD)\n"
    "  --isa I              fast path ISA: auto (default), generic, avx2, avx512, neon\n"
    "  --threads T          threads of both paths 0..1024, 0 = OpenMP's default\n"
    "  --mode M             prefill (default) or decode (streaming, token by token)\n"
    "  --layout L           bhnd (default) or bnhd: q, k, v, gate, o (and dO, the\n"
    "                       gradients) are [B,N,H,x] ([N,H,x] in 3-D) instead;\n"
    "                       sigma and selections stay [B,Hq,N]\n"
    TOOL_PROGRESS_HELP
    "outputs (.npy, written only when everything succeeded):\n"
    "  --dtype D            f4 or f8 for --out (default f8 on the ref path, f4 fast)\n"
    "  --out O.npy          the output o [B,Hq,N,dv]                    (required)\n"
    "  --scores-out S.npy   the saliency sigma [B,Hq,N], <f8 (+inf allowed); routing\n"
    "                       lte: the retention scores r [B,Hk,N]\n"
    "  --select-out S.npy   the selection [B,Hq,N], |u1: 1 = selected when its chunk\n"
    "                       was split; routing lte: [B,Hk,N], 1 = retained after the\n"
    "                       last query (sinks and window excluded); routing nsa:\n"
    "                       the selected blocks [B,Hq,N,S], <i4, ascending, -1 = none\n"
    "  --select-in S.npy    a forced selection [B,Hq,N], |u1 (exactly K ones in every\n"
    "                       complete chunk)\n"
    "(outputs of 3-D inputs are 3-D too: o [Hq,N,dv], sigma and selections [Hq,N])\n";

void tool_attn_defaults(tool_attn_opts *o)
{
    memset(o, 0, sizeof *o);
    still_config_default(&o->cfg);
    o->path = TOOL_PATH_REF;
}

/* Looks val up in names[]; -1 (after a usage error) when absent. */
static int choose(const char *cmd, const char *opt, const char *val, const char *const *names,
                  int n, const char *list)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(val, names[i]))
            return i;
    tool_fail(TOOL_EXIT_USAGE, cmd, "%s: expected %s, found '%s'", opt, list, val);
    return -1;
}

/* indexed by the STILL_ROUTING_* value */
static const char *const routing_names[] = {"saliency", "window",   "all", "none",
                                             "sinks",    "terraced", "lte", "nsa"};
static const char *const rest_names[] = {"linear", "drop"};
static const char *const mixer_names[] = {"still", "liger"};
static const char *const act_names[] = {"hedgehog", "softmax", "elu1", "relu"};
static const char *const isa_names[] = {"auto", "generic", "avx2", "avx512", "neon"};
static const char *const path_names[] = {"ref", "fast"};
static const char *const mode_names[] = {"prefill", "decode"};
static const char *const dtype_names[] = {"f4", "f8"};
static const char *const saliency_names[] = {"spec", "authors"};
static const char *const compat_names[] = {"authors", "authors-decode"};
static const char *const layout_names[] = {"bhnd", "bnhd"};

/* Options taking a file name, by the field they fill. */
static const char **file_option(tool_attn_opts *o, const char *arg, const char **name)
{
    static const char *const names[] = {"--q", "--k", "--v", "--gate", "--params", "--out",
                                        "--scores-out", "--select-out", "--select-in",
                                        "--lte-input", "--q-lin", "--k-lin", "--nsa-gates"};
    const char **fields[] = {&o->q, &o->k, &o->v, &o->gate, &o->params, &o->out,
                             &o->scores_out, &o->select_out, &o->select_in,
                             &o->lte_input, &o->q_lin, &o->k_lin, &o->nsa_gates};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (tool_is_option(arg, names[i])) {
            *name = names[i];
            return fields[i];
        }
    return NULL;
}

int tool_attn_parse(const char *cmd, int argc, char **argv, tool_attn_opts *o,
                    void (*usage)(FILE *))
{
    tool_attn_defaults(o);
    for (int i = 1; i < argc; i++) {
        if (tool_is_help(argv[i])) {
            usage(stdout);
            return -1;
        }
        int rc = tool_attn_option(cmd, o, argc, argv, &i);
        if (rc < 0)
            return TOOL_EXIT_USAGE;
        if (rc == 0)
            return tool_fail(TOOL_EXIT_USAGE, cmd, "unknown option '%s' (see still %s --help)",
                             argv[i], cmd);
    }
    return TOOL_EXIT_OK;
}

/* SPEC §15: "d1,d2,..." one dilation >= 1 per conv layer, at most
 * STILL_LTE_LAYERS_MAX; the layers not listed keep the default. */
static int parse_dilations(const char *cmd, const char *val, int64_t *dilation)
{
    const char *p = val;
    for (int l = 0; l < STILL_LTE_LAYERS_MAX; l++) {
        char item[32];
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof item)
            break;
        memcpy(item, p, n);
        item[n] = '\0';
        if (tool_parse_int64(cmd, "--lte-dilation", item, 1, INT64_C(1) << 40, &dilation[l]))
            return -1;
        p += n;
        if (!*p)
            return 0;
        p++;
    }
    return tool_fail(-1, cmd, "--lte-dilation: expected 1 to %d integers >= 1 separated by "
                     "commas, found '%s'", STILL_LTE_LAYERS_MAX, val);
}

int tool_attn_option(const char *cmd, tool_attn_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *name, *val, **field;
    int64_t x;
    int c;

    if (tool_progress_option(a))
        return 1;
    if (!strcmp(a, "--no-npmap")) {
        o->cfg.npmap = 0;
        return 1;
    }
    if (!strcmp(a, "--select-per-kv")) { /* SPEC §5 */
        o->cfg.select_per_kv = 1;
        return 1;
    }
    if (!strcmp(a, "--phantom-sink")) { /* SPEC App. A.2 */
        o->cfg.phantom_sink = 1;
        return 1;
    }
    if (tool_is_option(a, "--compat")) { /* SPEC App. A: both switches and their setting */
        int which;
        if (!(val = tool_option_value(cmd, argc, argv, i, "--compat")) ||
            (which = choose(cmd, "--compat", val, compat_names, 2,
                            "authors or authors-decode")) < 0)
            return -1;
        o->cfg.authors_decode = which == 1; /* App. A.3 */
        o->cfg.saliency = STILL_SALIENCY_AUTHORS;
        o->cfg.phantom_sink = 1;
        o->cfg.chunk = o->cfg.window = 64;
        o->cfg.topk = 4;
        o->cfg.local = 2;
        o->cfg.eps_den = 1e-6;
        return 1;
    }
    if ((field = file_option(o, a, &name))) {
        if (!(val = tool_option_value(cmd, argc, argv, i, name)))
            return -1;
        if (!*val)
            return tool_fail(-1, cmd, "%s: expected a file name, found ''", name);
        *field = val;
        return 1;
    }
    /* integers */
    static const struct { const char *opt; int64_t lo, hi; } ints[] = {
        {"--chunk", 1, INT64_C(1) << 40}, {"--topk", 0, INT64_C(1) << 40},
        {"--window", 2, INT64_C(1) << 40}, {"--local", 0, INT64_C(1) << 40},
        {"--cap", 0, INT64_C(1) << 40},   {"--threads", 0, STILL_THREADS_MAX},
        {"--sinks", 0, INT64_C(1) << 40}, {"--budget", 0, INT64_C(1) << 40},
        {"--nsa-block", 1, INT64_C(1) << 40}, {"--nsa-topk", 3, INT64_C(1) << 40}, /* SPEC §17 */
    };
    for (size_t k = 0; k < sizeof ints / sizeof *ints; k++) {
        if (!tool_is_option(a, ints[k].opt))
            continue;
        if (!(val = tool_option_value(cmd, argc, argv, i, ints[k].opt)) ||
            tool_parse_int64(cmd, ints[k].opt, val, ints[k].lo, ints[k].hi, &x))
            return -1;
        switch (k) {
        case 0: o->cfg.chunk = x; break;
        case 1: o->cfg.topk = x; break;
        case 2: o->cfg.window = x; break;
        case 3: o->cfg.local = x; break;
        case 4: o->cfg.max_sel = x; break;
        case 5: o->cfg.threads = (int)x; break;
        case 6: o->cfg.sinks = x; break;
        case 7: o->cfg.budget = x; o->budget_given = 1; break;
        case 8: o->cfg.nsa_block = x; break;
        default: o->cfg.nsa_topk = x; break;
        }
        return 1;
    }
    if (tool_is_option(a, "--eps-den")) {
        return (val = tool_option_value(cmd, argc, argv, i, "--eps-den")) &&
                       !tool_parse_double(cmd, "--eps-den", val, 0.0, HUGE_VAL, &o->cfg.eps_den)
                   ? 1 : -1;
    }
    if (tool_is_option(a, "--alpha") || tool_is_option(a, "--beta")) { /* SPEC §16 */
        const char *opt = tool_is_option(a, "--alpha") ? "--alpha" : "--beta";
        return (val = tool_option_value(cmd, argc, argv, i, opt)) &&
                       !tool_parse_double(cmd, opt, val, -HUGE_VAL, HUGE_VAL,
                                          opt[2] == 'a' ? &o->cfg.alpha : &o->cfg.beta)
                   ? 1 : -1;
    }
    if (tool_is_option(a, "--lte-dilation")) /* SPEC §15: "2,2,2" */
        return (val = tool_option_value(cmd, argc, argv, i, "--lte-dilation")) &&
                       !parse_dilations(cmd, val, o->cfg.lte_dilation)
                   ? 1 : -1;
    if (tool_is_option(a, "--scale")) {
        if (!(val = tool_option_value(cmd, argc, argv, i, "--scale")) ||
            tool_parse_double(cmd, "--scale", val, -HUGE_VAL, HUGE_VAL, &o->cfg.scale))
            return -1;
        if (o->cfg.scale == 0.0)
            return tool_fail(-1, cmd, "--scale: expected a nonzero number, found '%s'", val);
        return 1;
    }
    /* keywords */
    static const struct { const char *opt; const char *const *names; int n; const char *list; } kw[] = {
        {"--routing", routing_names, 8,
         "saliency, window, all, none, sinks, terraced, lte or nsa"},
        {"--act", act_names, 4, "hedgehog, softmax, elu1 or relu"},
        {"--isa", isa_names, 5, "auto, generic, avx2, avx512 or neon"},
        {"--path", path_names, 2, "ref or fast"},
        {"--mode", mode_names, 2, "prefill or decode"},
        {"--dtype", dtype_names, 2, "f4 or f8"},
        {"--saliency", saliency_names, 2, "spec or authors"},
        {"--layout", layout_names, 2, "bhnd or bnhd"},
        {"--rest", rest_names, 2, "linear or drop"},
        {"--mixer", mixer_names, 2, "still or liger"},
    };
    for (size_t k = 0; k < sizeof kw / sizeof *kw; k++) {
        if (!tool_is_option(a, kw[k].opt))
            continue;
        if (!(val = tool_option_value(cmd, argc, argv, i, kw[k].opt)) ||
            (c = choose(cmd, kw[k].opt, val, kw[k].names, kw[k].n, kw[k].list)) < 0)
            return -1;
        switch (k) {
        case 0: o->cfg.routing = STILL_ROUTING_SALIENCY + c; break;
        case 1: o->cfg.act = STILL_ACT_HEDGEHOG + c; break;
        case 2: o->cfg.isa = STILL_ISA_AUTO + c; break;
        case 3: o->path = c ? TOOL_PATH_FAST : TOOL_PATH_REF; break;
        case 4: o->decode = c; break;
        case 5: o->dtype = c ? STILL__DT_F8 : STILL__DT_F4; break;
        case 6: o->cfg.saliency = c ? STILL_SALIENCY_AUTHORS : STILL_SALIENCY_SPEC; break;
        case 7: o->layout = c ? STILL_LAYOUT_BNHD : STILL_LAYOUT_BHND; break;
        case 8: o->cfg.rest = c ? STILL_REST_DROP : STILL_REST_LINEAR; break;
        default: o->cfg.mixer = c ? STILL_MIXER_LIGER : STILL_MIXER_STILL; break;
        }
        return 1;
    }
    return 0;
}

/* SPEC §17: routing nsa on the reference path, prefill; its
 * selection is --select-out's, and it has no sigma, no forced selection. */
static int nsa_check(const char *cmd, const tool_attn_opts *o)
{
    if (o->cfg.routing != STILL_ROUTING_NSA)
        return o->nsa_gates ? tool_fail(TOOL_EXIT_USAGE, cmd, "--nsa-gates needs --routing nsa")
                            : TOOL_EXIT_OK;
    if (o->path != TOOL_PATH_REF)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--routing nsa exists on --path ref only for now "
                         "(the fast path does not compute it yet)");
    if (o->decode)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--routing nsa exists on --mode prefill only for "
                         "now");
    if (o->scores_out || o->select_in)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "%s has no meaning for routing nsa (SPEC §17: no "
                         "saliency; --select-out writes its selected blocks)",
                         o->scores_out ? "--scores-out" : "--select-in");
    return TOOL_EXIT_OK;
}

int tool_attn_check(const char *cmd, const tool_attn_opts *o)
{
    int rc;
    if (!o->q || !o->k || !o->v)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--q, --k and --v are required (missing %s; see "
                         "still %s --help)", !o->q ? "--q" : !o->k ? "--k" : "--v", cmd);
    if (!o->out)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--out is required (see still %s --help)", cmd);
    if (o->cfg.routing == STILL_ROUTING_SALIENCY && o->cfg.topk > o->cfg.chunk)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--topk %lld exceeds --chunk %lld (SPEC §5: "
                         "0 <= k <= C)", (long long)o->cfg.topk, (long long)o->cfg.chunk);
    if (o->cfg.routing == STILL_ROUTING_LTE && (o->path != TOOL_PATH_REF || o->decode))
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--routing lte exists on --path ref --mode "
                         "prefill only for now");
    if ((rc = nsa_check(cmd, o)))
        return rc;
    if (o->cfg.routing == STILL_ROUTING_LTE && (!o->budget_given || !o->params))
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--routing lte needs --budget and --params "
                         "with its weights lte.* (SPEC §15)");
    if (o->decode && (o->select_in || o->select_out))
        return tool_fail(TOOL_EXIT_USAGE, cmd, "%s needs --mode prefill (in decode a token's "
                         "selection is made only when its chunk is split, later)",
                         o->select_in ? "--select-in" : "--select-out");
    return TOOL_EXIT_OK;
}

int tool_attn_outputs(const char *cmd, const tool_attn_opts *o)
{
    int rc;
    if ((rc = tool_out_add(cmd, "--out", o->out)) ||
        (rc = tool_out_add(cmd, "--scores-out", o->scores_out)) ||
        (rc = tool_out_add(cmd, "--select-out", o->select_out)) ||
        (rc = tool_out_input(cmd, "--q", o->q)) || (rc = tool_out_input(cmd, "--k", o->k)) ||
        (rc = tool_out_input(cmd, "--v", o->v)) ||
        (rc = tool_out_input(cmd, "--gate", o->gate)) ||
        (rc = tool_out_input(cmd, "--params", o->params)) ||
        (rc = tool_out_input(cmd, "--select-in", o->select_in)) ||
        (rc = tool_out_input(cmd, "--lte-input", o->lte_input)) ||
        (rc = tool_out_input(cmd, "--q-lin", o->q_lin)) ||
        (rc = tool_out_input(cmd, "--k-lin", o->k_lin)) ||
        (rc = tool_out_input(cmd, "--nsa-gates", o->nsa_gates)))
        return rc;
    return TOOL_EXIT_OK;
}

/* ---- loading ------------------------------------------------------------------- */

/* One float input as the path's dtype, with its rank normalized to 4 (a
 * 3-D array is [1,...]). */
typedef struct loaded {
    int ndim;
    int64_t s[4];
    void *data;
} loaded;

static int first_nonfinite(int dtype, const void *p, int64_t n, int64_t *at)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(still__load(dtype, p, i))) {
            *at = i;
            return 1;
        }
    return 0;
}

static int load_float(const char *cmd, const char *path, const char *role, int dtype,
                      int layout, loaded *L)
{
    char err[STILL__ERRLEN], shape[160], where[160];
    still__array a;
    int64_t at;
    int rc;

    memset(L, 0, sizeof *L);
    if ((rc = still__npy_read(path, &a, err, sizeof err)))
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s", err);
    tool_shape_text(a.ndim, a.shape, shape, sizeof shape);
    if (a.dtype == STILL__DT_U1) {
        still__array_free(&a);
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: %s has dtype |u1, expected a float array "
                         "(<f2, <f4 or <f8)", path, role);
    }
    if (a.ndim != 3 && a.ndim != 4) {
        still__array_free(&a);
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: %s must have 4 dimensions [B,H,N,x] or 3 "
                         "[H,N,x], found shape %s", path, role, shape);
    }
    for (int i = 0; i < a.ndim; i++)
        if (a.shape[i] < 1) {
            still__array_free(&a);
            return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: %s has an empty dimension, shape %s",
                             path, role, shape);
        }
    L->ndim = a.ndim;
    L->s[0] = a.ndim == 4 ? a.shape[0] : 1;
    for (int i = 0; i < 3; i++)
        L->s[1 + i] = a.shape[a.ndim - 3 + i];
    if (layout == STILL_LAYOUT_BNHD) { /* [B,N,H,x]: the axes named as in BHND */
        int64_t n = L->s[1];
        L->s[1] = L->s[2];
        L->s[2] = n;
    }
    if (dtype == STILL_F64) {
        double *d = NULL;
        rc = still__array_to_f64(&a, &d);
        L->data = d;
    } else {
        float *f = NULL;
        rc = still__array_to_f32(&a, &f);
        L->data = f;
    }
    int64_t count = a.count;
    still__array_free(&a);
    if (rc)
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: %s", path, still_strerror(rc));
    if (first_nonfinite(dtype, L->data, count, &at)) {
        double x = still__load(dtype, L->data, at);
        tool_index_text(a.ndim, a.shape, at, where, sizeof where);
        free(L->data);
        L->data = NULL;
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: %s element %s is %s%s, expected finite "
                         "values (SPEC §10)", path, role, where, isnan(x) ? "NaN" : "infinite",
                         dtype == STILL_F32 ? " as float32" : "");
    }
    return TOOL_EXIT_OK;
}

/* One axis of `found` against the same axis of `ref`. */
static int same_axis(const char *cmd, const char *path, const char *axis, int64_t found,
                     int64_t expected, const char *ref_path)
{
    if (found == expected)
        return TOOL_EXIT_OK;
    return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: %s %lld, expected %lld as in %s", path, axis,
                     (long long)found, (long long)expected, ref_path);
}

/* SPEC §11: q [B,Hq,N,d], k [B,Hk,N,d], v [B,Hk,N,dv], gate [B,Hq,N,dv]. */
static int check_shapes(const char *cmd, const tool_attn_opts *o, const loaded *q,
                        const loaded *k, const loaded *v, const loaded *g)
{
    int rc;
    if ((rc = same_axis(cmd, o->k, "batch", k->s[0], q->s[0], o->q)) ||
        (rc = same_axis(cmd, o->k, "sequence length", k->s[2], q->s[2], o->q)) ||
        (rc = same_axis(cmd, o->k, "dimension d", k->s[3], q->s[3], o->q)) ||
        (rc = same_axis(cmd, o->v, "batch", v->s[0], k->s[0], o->k)) ||
        (rc = same_axis(cmd, o->v, "heads", v->s[1], k->s[1], o->k)) ||
        (rc = same_axis(cmd, o->v, "sequence length", v->s[2], k->s[2], o->k)))
        return rc;
    if (q->s[1] % k->s[1] != 0)
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: %lld kv heads do not divide the %lld query "
                         "heads of %s", o->k, (long long)k->s[1], (long long)q->s[1], o->q);
    if (g && ((rc = same_axis(cmd, o->gate, "batch", g->s[0], q->s[0], o->q)) ||
              (rc = same_axis(cmd, o->gate, "heads", g->s[1], q->s[1], o->q)) ||
              (rc = same_axis(cmd, o->gate, "sequence length", g->s[2], q->s[2], o->q)) ||
              (rc = same_axis(cmd, o->gate, "dimension dv", g->s[3], v->s[3], o->v))))
        return rc;
    return TOOL_EXIT_OK;
}

/* A forced selection [B,Hq,N] ([Hq,N] when B = 1), 0/1, with exactly k
 * ones in every complete chunk (SPEC §5). */
static int load_selection(const char *cmd, const char *path, const still__resolved *r,
                          uint8_t **out)
{
    const still_shape *s = &r->shape;
    char err[STILL__ERRLEN], shape[160], want[160];
    still__array a;
    int64_t expect[3] = {s->batch, s->heads_q, s->seq_len};

    if (still__npy_read(path, &a, err, sizeof err))
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s", err);
    tool_shape_text(a.ndim, a.shape, shape, sizeof shape);
    tool_shape_text(3, expect, want, sizeof want);
    int ok = a.ndim == 3 && !memcmp(a.shape, expect, sizeof expect);
    if (a.ndim == 2 && s->batch == 1)
        ok = a.shape[0] == s->heads_q && a.shape[1] == s->seq_len;
    if (a.dtype != STILL__DT_U1 || !ok) {
        still__array_free(&a);
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: expected a |u1 selection of shape %s, found "
                         "%s %s", path, want, still__dtype_name(a.dtype), shape);
    }
    const uint8_t *sel = a.data;
    int64_t N = s->seq_len, C = r->C, full = N / C;
    for (int64_t row = 0; row < s->batch * s->heads_q; row++)
        for (int64_t c = 0; c < full; c++) {
            int64_t ones = 0;
            for (int64_t j = c * C; j < (c + 1) * C; j++) {
                if (sel[row * N + j] > 1) {
                    unsigned value = sel[row * N + j]; /* read before the array is freed */
                    still__array_free(&a);
                    return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: value %u at row %lld position "
                                     "%lld, expected 0 or 1", path, value, (long long)row,
                                     (long long)j);
                }
                ones += sel[row * N + j];
            }
            if (ones != r->k && r->routing != STILL_ROUTING_WINDOW) {
                still__array_free(&a);
                return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: chunk %lld of row %lld (batch %lld, "
                                 "head %lld) has %lld selected tokens, expected k = %lld",
                                 path, (long long)c, (long long)row,
                                 (long long)(row / s->heads_q), (long long)(row % s->heads_q),
                                 (long long)ones, (long long)r->k);
            }
        }
    *out = a.data; /* ownership moves to the caller */
    return TOOL_EXIT_OK;
}

void tool_attn_free(tool_attn_inputs *in)
{
    free(in->q);
    free(in->k);
    free(in->v);
    free(in->gate);
    free(in->params_storage);
    free(in->selection_in);
    free(in->lte_input);
    free(in->q_lin);
    free(in->k_lin);
    free(in->lte_storage);
    free(in->nsa_gates);
    memset(in, 0, sizeof *in);
}

/* One optional input shaped as `like` [B,H,N,*] with last axis `last`, in
 * the layout of the other arrays; NULL path: nothing. */
static int load_like(const char *cmd, const char *path, const char *role, const char *like_path,
                     const loaded *like, int64_t last, int dtype, int layout, void **out)
{
    loaded x;
    int rc;
    if (!path)
        return TOOL_EXIT_OK;
    if ((rc = load_float(cmd, path, role, dtype, layout, &x)))
        return rc;
    if ((rc = same_axis(cmd, path, "batch", x.s[0], like->s[0], like_path)) ||
        (rc = same_axis(cmd, path, "heads", x.s[1], like->s[1], like_path)) ||
        (rc = same_axis(cmd, path, "sequence length", x.s[2], like->s[2], like_path)) ||
        (rc = same_axis(cmd, path, "last dimension", x.s[3], last, "its role"))) {
        free(x.data);
        return rc;
    }
    *out = x.data;
    return TOOL_EXIT_OK;
}

/* SPEC §15-16: --lte-input, --q-lin, --k-lin and the lte weights. */
static int load_family(const char *cmd, const tool_attn_opts *o, const loaded *q,
                       const loaded *k, const loaded *v, tool_attn_inputs *in)
{
    char err[STILL__ERRLEN];
    int rc;
    if ((rc = load_like(cmd, o->q_lin, "q_lin", o->q, q, q->s[3], in->dtype, o->layout, &in->q_lin)) ||
        (rc = load_like(cmd, o->k_lin, "k_lin", o->k, k, k->s[3], in->dtype, o->layout, &in->k_lin)) ||
        (rc = load_like(cmd, o->nsa_gates, "nsa gates", o->q, q, 3, in->dtype, o->layout,
                        &in->nsa_gates))) /* SPEC §17: [B,Hq,N,3] */
        return rc;
    if (o->cfg.routing != STILL_ROUTING_LTE)
        return TOOL_EXIT_OK;
    if (still__lte_params_read(o->params, in->shape.heads_kv, &in->lte, &in->lte_storage, err,
                               sizeof err))
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s", err);
    if ((rc = load_like(cmd, o->lte_input, "lte input", o->k, k, in->lte.channels[0], in->dtype,
                        o->layout, &in->lte_input)))
        return rc;
    if (!o->lte_input && in->lte.channels[0] != k->s[3] + v->s[3])
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: lte.conv1.W reads %lld channels, expected "
                         "d + dv = %lld for the default input [k, v] (or give --lte-input)",
                         o->params, (long long)in->lte.channels[0],
                         (long long)(k->s[3] + v->s[3]));
    in->params.lte = &in->lte;
    return TOOL_EXIT_OK;
}

static int resolve(const char *cmd, const tool_attn_opts *o, const tool_attn_inputs *in,
                   still__resolved *r)
{
    int rc = still__resolve(&o->cfg, &in->shape, &in->params, r);
    if (rc == STILL_E_PARAMS)
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: the parameters do not fit the inputs: %s",
                         o->params ? o->params : "(default parameters)", still_strerror(rc));
    if (rc == STILL_E_SHAPE || rc == STILL_E_OVERFLOW)
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: the input shapes are refused: %s (%s)",
                         o->q, still_strerror(rc), tool_status_name(rc));
    if (rc)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "the configuration is refused: %s (%s)",
                         still_strerror(rc), tool_status_name(rc));
    return TOOL_EXIT_OK;
}

int tool_attn_load(const char *cmd, const tool_attn_opts *o, int with_extras,
                   tool_attn_inputs *in)
{
    loaded q, k, v, g = {0, {0}, NULL};
    still__resolved r;
    char err[STILL__ERRLEN];
    int dtype = o->path == TOOL_PATH_FAST ? STILL_F32 : STILL_F64, rc;

    memset(in, 0, sizeof *in);
    still_params_default(&in->params);
    in->dtype = dtype;
    memset(&k, 0, sizeof k);
    memset(&v, 0, sizeof v);
    if ((rc = load_float(cmd, o->q, "q", dtype, o->layout, &q)) ||
        (rc = load_float(cmd, o->k, "k", dtype, o->layout, &k)) ||
        (rc = load_float(cmd, o->v, "v", dtype, o->layout, &v)) ||
        (with_extras && o->gate && (rc = load_float(cmd, o->gate, "gate", dtype, o->layout, &g))) ||
        (rc = check_shapes(cmd, o, &q, &k, &v, g.data ? &g : NULL)))
        goto fail;
    in->q = q.data;
    in->k = k.data;
    in->v = v.data;
    in->gate = g.data;
    in->ndim = q.ndim;
    in->shape = (still_shape){q.s[0], q.s[1], k.s[1], q.s[2], q.s[3], v.s[3], o->layout};
    if (with_extras && o->params &&
        still__params_read(o->params, in->shape.heads_q, in->shape.dim_qk, &in->params,
                           &in->params_storage, err, sizeof err)) {
        rc = tool_fail(TOOL_EXIT_INPUT, cmd, "%s", err);
        tool_attn_free(in);
        return rc;
    }
    if (with_extras && (rc = load_family(cmd, o, &q, &k, &v, in))) {
        tool_attn_free(in);
        return rc;
    }
    if ((rc = resolve(cmd, o, in, &r)) ||
        (with_extras && o->select_in &&
         (rc = load_selection(cmd, o->select_in, &r, &in->selection_in)))) {
        tool_attn_free(in);
        return rc;
    }
    return TOOL_EXIT_OK;
fail:
    free(q.data);
    free(k.data);
    free(v.data);
    free(g.data);
    return rc;
}

int tool_attn_out_shape(const tool_attn_inputs *in, int64_t last, int64_t *shape)
{
    return tool_attn_array_shape(in, in->shape.heads_q, last, shape);
}

int tool_attn_array_shape(const tool_attn_inputs *in, int64_t heads, int64_t last,
                          int64_t *shape)
{
    const int bnhd = last > 0 && in->shape.layout == STILL_LAYOUT_BNHD;
    int n = 0;
    if (in->ndim == 4)
        shape[n++] = in->shape.batch;
    shape[n++] = bnhd ? in->shape.seq_len : heads;
    shape[n++] = bnhd ? heads : in->shape.seq_len;
    if (last > 0)
        shape[n++] = last;
    return n;
}

/* ---- progress of a library call ---------------------------------------------- */

int tool_progress_report(void *user, int64_t done, int64_t total)
{
    tool_progress(done, total, "%s", (const char *)user);
    return 0;
}
