/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * cmd_decode.c -- `still decode`: streaming decode that can stop and resume
 * (SPEC §7, §11).
 *
 * The inputs hold a whole sequence of N tokens.  A fresh run starts at
 * token 0; with --state-in it starts where the saved state stopped (its
 * position P; tokens 0..P-1 of the inputs are not read again).  It appends
 * --prefill tokens in one block, then one token at a time, up to --stop
 * (default N), writes the outputs of the tokens it appended and, with
 * --state-out, the state to resume from.  Stopping and resuming gives the
 * same outputs, and the same final state, as one run (SPEC §7; tested by
 * tests/test_decode_tool.sh).
 */
#define _POSIX_C_SOURCE 200809L
#include "tool.h"
#include "state.h" /* the configuration and shape a loaded state carries */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATE_FILE_MAX ((long)1 << 40)

static void decode_usage(FILE *f)
{
    fprintf(f,
            "usage: still decode --q Q.npy --k K.npy --v V.npy --out O.npy [options]\n"
            "\n"
            "Streaming STILL decode (SPEC §7) that can stop and resume.  The inputs hold\n"
            "the whole sequence; the run appends tokens from 0, or from the position of\n"
            "--state-in, up to --stop, and writes their outputs: o [B,Hq,T-P,dv] and\n"
            "sigma [B,Hq,T-P] for tokens P..T-1.\n"
            "\n"
            "decode options:\n"
            "  --prefill N          append the first N tokens of this run in one block\n"
            "                       (default 0), then one token at a time\n"
            "  --stop T             stop after token T-1 (default: N, the inputs' length)\n"
            "  --state-in F         resume from a state saved by --state-out; the\n"
            "                       configuration options, --params and --path must be\n"
            "                       those of the run that saved it\n"
            "  --state-out F        save the state after the last token (a versioned,\n"
            "                       checksummed little-endian stream)\n"
            "\n%s"
            "\n"
            "Exit status: 0 success, 2 usage error, 3 input file problem (also a corrupt\n"
            "or foreign state file), 4 library error, 5 output not written.\n",
            tool_attn_options_help);
}

typedef struct decode_opts {
    tool_attn_opts attn;
    int64_t prefill, stop; /* stop < 0: the inputs' length */
    const char *state_in, *state_out;
} decode_opts;

/* Parses the decode options and run's; TOOL_EXIT_OK, or a status. */
static int parse(const char *cmd, decode_opts *d, int argc, char **argv, int *help)
{
    tool_attn_defaults(&d->attn);
    d->attn.decode = 1;
    d->prefill = 0;
    d->stop = -1;
    d->state_in = d->state_out = NULL;
    *help = 0;
    for (int i = 1; i < argc; i++) {
        const char *val;
        if (tool_is_help(argv[i])) {
            *help = 1;
            return TOOL_EXIT_OK;
        }
        if (tool_is_option(argv[i], "--prefill") || tool_is_option(argv[i], "--stop")) {
            int is_prefill = tool_is_option(argv[i], "--prefill");
            const char *opt = is_prefill ? "--prefill" : "--stop";
            if (!(val = tool_option_value(cmd, argc, argv, &i, opt)) ||
                tool_parse_int64(cmd, opt, val, 0, INT64_MAX, is_prefill ? &d->prefill : &d->stop))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(argv[i], "--state-in")) {
            if (!(d->state_in = tool_option_value(cmd, argc, argv, &i, "--state-in")))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(argv[i], "--state-out")) {
            if (!(d->state_out = tool_option_value(cmd, argc, argv, &i, "--state-out")))
                return TOOL_EXIT_USAGE;
        } else {
            int rc = tool_attn_option(cmd, &d->attn, argc, argv, &i);
            if (rc < 0)
                return TOOL_EXIT_USAGE;
            if (rc == 0)
                return tool_fail(TOOL_EXIT_USAGE, cmd,
                                 "unknown option '%s' (see still decode --help)", argv[i]);
            if (!d->attn.decode)
                return tool_fail(TOOL_EXIT_USAGE, cmd, "--mode: still decode always decodes");
        }
    }
    int rc;
    if ((rc = tool_attn_check(cmd, &d->attn)) || (rc = tool_attn_outputs(cmd, &d->attn)) ||
        (rc = tool_out_add(cmd, "--state-out", d->state_out)) ||
        (rc = tool_out_input(cmd, "--state-in", d->state_in)))
        return rc;
    return TOOL_EXIT_OK;
}

/* ---- the state file -------------------------------------------------------- */

/* The first configuration field in which a and b differ, or NULL (the
 * execution fields isa and threads are the saved state's). */
static const char *config_difference(const still_config *a, const still_config *b)
{
    if (a->chunk != b->chunk) return "--chunk";
    if (a->topk != b->topk) return "--topk";
    if (a->window != b->window) return "--window";
    if (a->local != b->local) return "--local";
    if (a->max_sel != b->max_sel) return "--cap";
    if (a->routing != b->routing) return "--routing";
    if (a->rest != b->rest) return "--rest";
    if (a->sinks != b->sinks) return "--sinks";
    if (a->act != b->act) return "--act";
    if (a->npmap != b->npmap) return "--no-npmap";
    if (a->select_per_kv != b->select_per_kv) return "per-kv selection";
    if (a->scale != b->scale) return "--scale";
    if (a->eps_den != b->eps_den) return "--eps-den";
    if (a->saliency != b->saliency) return "the saliency variant";
    if (a->phantom_sink != b->phantom_sink) return "the phantom sink";
    return NULL;
}

/* Reads a state file and rebuilds the state; checks it fits the inputs. */
static int load_state(const char *cmd, const decode_opts *d, const tool_attn_inputs *in,
                      const still_params *params, still_state **st)
{
    const char *path = d->state_in;
    char err[STILL__ERRLEN];
    FILE *f;
    size_t size;
    unsigned char *buf = NULL;
    int rc;

    if (still__open_regular(path, &f, &size, err, sizeof err)) /* a FIFO is refused, not waited on */
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s", err);
    if (size > (size_t)STATE_FILE_MAX || !(buf = malloc(size ? size : 1)) ||
        fread(buf, 1, size, f) != size) {
        fclose(f);
        free(buf);
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: cannot read the state file", path);
    }
    fclose(f);
    rc = still_state_load(buf, (size_t)size, params, st);
    free(buf);
    if (rc == STILL_E_PARAMS)
        return tool_fail(TOOL_EXIT_INPUT, cmd,
                         "%s: saved with other parameters than %s", path,
                         d->attn.params ? d->attn.params : "the defaults (no --params)");
    if (rc == STILL_E_NOMEM)
        return tool_fail(TOOL_EXIT_LIBRARY, cmd, "%s: out of memory", path);
    if (rc)
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: not a state stream: %s (%s)", path,
                         still_strerror(rc), tool_status_name(rc));

    const still_shape *s = &(*st)->r.shape, *w = &in->shape;
    const char *diff = config_difference(&(*st)->cfg, &d->attn.cfg);
    int want_path = d->attn.path == TOOL_PATH_FAST ? STILL_PATH_FAST : STILL_PATH_REF;
    if (diff)
        rc = tool_fail(TOOL_EXIT_INPUT, cmd, "%s: saved with another %s than this run's", path,
                       diff);
    else if ((*st)->path != want_path)
        rc = tool_fail(TOOL_EXIT_INPUT, cmd, "%s: saved by the %s path, expected --path %s",
                       path, (*st)->path == STILL_PATH_FAST ? "fast" : "ref",
                       (*st)->path == STILL_PATH_FAST ? "fast" : "ref");
    else if (s->batch != w->batch || s->heads_q != w->heads_q || s->heads_kv != w->heads_kv ||
             s->dim_qk != w->dim_qk || s->dim_v != w->dim_v || s->layout != w->layout)
        rc = tool_fail(TOOL_EXIT_INPUT, cmd,
                       "%s: B=%lld Hq=%lld Hk=%lld d=%lld dv=%lld, expected the inputs' "
                       "B=%lld Hq=%lld Hk=%lld d=%lld dv=%lld", path, (long long)s->batch,
                       (long long)s->heads_q, (long long)s->heads_kv, (long long)s->dim_qk,
                       (long long)s->dim_v, (long long)w->batch, (long long)w->heads_q,
                       (long long)w->heads_kv, (long long)w->dim_qk, (long long)w->dim_v);
    if (rc) {
        still_state_destroy(*st);
        *st = NULL;
    }
    return rc;
}

/* Writes the state into its output (renamed into place with the others). */
static int save_state(const char *cmd, const still_state *st, const char *path)
{
    size_t len;
    unsigned char *buf = NULL;
    int rc = still_state_save(st, NULL, 0, &len);
    if (rc || !(buf = malloc(len)) || (rc = still_state_save(st, buf, len, &len))) {
        free(buf);
        return tool_fail(TOOL_EXIT_LIBRARY, cmd, "%s: cannot serialize the state: %s", path,
                         rc ? still_strerror(rc) : "out of memory");
    }
    still__write_part part = {buf, len, 1};
    rc = tool_out_write(cmd, path, &part, 1);
    free(buf);
    return rc;
}

/* ---- the appends ------------------------------------------------------------- */

/* Tokens t0 .. t0+n-1 of every row of x [rows][N][D] into blk [rows][n][D]. */
static void slice_tokens(const void *x, int64_t rows, int64_t N, int64_t D, int64_t t0,
                         int64_t n, size_t es, void *blk)
{
    for (int64_t r = 0; r < rows; r++)
        memcpy((unsigned char *)blk + (size_t)(r * n * D) * es,
               (const unsigned char *)x + (size_t)((r * N + t0) * D) * es, (size_t)(n * D) * es);
}

/* The block's outputs [rows][n][D] into out [rows][len][D] at token off. */
static void place_tokens(const void *blk, int64_t rows, int64_t len, int64_t D, int64_t off,
                         int64_t n, size_t es, void *out)
{
    for (int64_t r = 0; r < rows; r++)
        memcpy((unsigned char *)out + (size_t)((r * len + off) * D) * es,
               (const unsigned char *)blk + (size_t)(r * n * D) * es, (size_t)(n * D) * es);
}

/* A layout's arrays as [rows][N][width]: [B*H][N][D] in BHND, [B][N][H*D]
 * in BNHD (a block of tokens is then a block in the same layout). */
static void token_rows(const still_shape *s, int64_t H, int64_t D, int64_t *rows, int64_t *width)
{
    const int bnhd = s->layout == STILL_LAYOUT_BNHD;
    *rows = bnhd ? s->batch : s->batch * H;
    *width = bnhd ? H * D : D;
}

/* Appends tokens P..T-1 (the first `first` in one block), writing o and
 * sigma [rows][T-P][*]. */
static int run_appends(still_state *st, const tool_attn_inputs *in, int64_t P, int64_t T,
                       int64_t first, void *out, double *sigma)
{
    const still_shape *s = &in->shape;
    const size_t es = in->dtype == STILL_F64 ? sizeof(double) : sizeof(float);
    const int64_t rq = s->batch * s->heads_q, rk = s->batch * s->heads_kv, N = s->seq_len;
    const int64_t most = first > 1 ? first : 1, len = T - P;
    const size_t nq = (size_t)(rq * most * s->dim_qk), nk = (size_t)(rk * most * s->dim_qk),
                 nv = (size_t)(rk * most * s->dim_v), no = (size_t)(rq * most * s->dim_v);
    unsigned char *buf = malloc((2 * nq + 2 * nk + nv + 2 * no) * es); /* + q_lin, k_lin */
    double *sig = sigma ? malloc((size_t)(rq * most) * sizeof(double)) : NULL;
    int rc = STILL_OK;
    if (!buf || (sigma && !sig)) {
        free(buf);
        free(sig);
        return STILL_E_NOMEM;
    }
    void *q = buf, *k = buf + nq * es, *v = buf + (nq + nk) * es, *g = buf + (nq + nk + nv) * es,
         *o = buf + (nq + nk + nv + no) * es, *ql = buf + (nq + nk + nv + 2 * no) * es,
         *kl = buf + (2 * nq + nk + nv + 2 * no) * es;
    for (int64_t t = P; t < T && !rc;) {
        int64_t n = t == P && first > 0 ? first : 1;
        tool_progress(t - P, T - P, "%s", n > 1 ? "prefill block" : "decode, token");
        int64_t r, w;
        token_rows(s, s->heads_q, s->dim_qk, &r, &w);
        slice_tokens(in->q, r, N, w, t, n, es, q);
        if (in->q_lin) /* SPEC §16: mixer liger's linear-branch inputs */
            slice_tokens(in->q_lin, r, N, w, t, n, es, ql);
        token_rows(s, s->heads_kv, s->dim_qk, &r, &w);
        slice_tokens(in->k, r, N, w, t, n, es, k);
        if (in->k_lin)
            slice_tokens(in->k_lin, r, N, w, t, n, es, kl);
        token_rows(s, s->heads_kv, s->dim_v, &r, &w);
        slice_tokens(in->v, r, N, w, t, n, es, v);
        token_rows(s, s->heads_q, s->dim_v, &r, &w);
        if (in->gate)
            slice_tokens(in->gate, r, N, w, t, n, es, g);
        still_tensors tb = {in->dtype, q, k, v, in->gate ? g : NULL, o, sig, NULL, NULL, NULL,
                            in->q_lin ? ql : NULL, in->k_lin ? kl : NULL, NULL, NULL};
        if ((rc = still_state_append(st, n, &tb)))
            break;
        place_tokens(o, r, len, w, t - P, n, es, out);
        if (sigma)
            place_tokens(sig, rq, len, 1, t - P, n, sizeof(double), sigma);
        t += n;
    }
    free(buf);
    free(sig);
    return rc;
}

/* The outputs' shapes: the inputs' rank, T-P tokens. */
static int out_shape(const tool_attn_inputs *in, int64_t tokens, int64_t last, int64_t *shape)
{
    int nd = tool_attn_out_shape(in, last, shape);
    shape[last && in->shape.layout == STILL_LAYOUT_BNHD ? nd - 3 : last ? nd - 2 : nd - 1] = tokens;
    return nd;
}

int cmd_decode(int argc, char **argv)
{
    const char *cmd = "decode";
    decode_opts d;
    tool_attn_inputs in;
    still_state *st = NULL;
    void *out = NULL;
    double *sigma = NULL;
    int help, rc;

    if ((rc = parse(cmd, &d, argc, argv, &help)) || help) {
        if (help)
            decode_usage(stdout);
        return rc;
    }
    if ((rc = tool_attn_load(cmd, &d.attn, 1, &in)))
        return rc;
    const still_shape *s = &in.shape;
    const still_params *params = d.attn.params ? &in.params : NULL;
    const int path = d.attn.path == TOOL_PATH_FAST ? STILL_PATH_FAST : STILL_PATH_REF;
    int64_t P = 0, T = d.stop < 0 ? s->seq_len : d.stop;

    if (d.state_in)
        rc = load_state(cmd, &d, &in, params, &st);
    else if ((rc = still_state_create(&d.attn.cfg, s, params, path, &st)))
        rc = tool_fail(TOOL_EXIT_LIBRARY, cmd, "the %s path refused the state: %s (%s)",
                       path == STILL_PATH_FAST ? "fast" : "ref", still_strerror(rc),
                       tool_status_name(rc));
    if (rc)
        goto done;
    still_state_position(st, &P);
    if (T > s->seq_len || T <= P) {
        rc = tool_fail(TOOL_EXIT_INPUT, cmd,
                       "nothing to decode: tokens %lld..%lld asked (state at %lld, --stop %lld), "
                       "the inputs hold %lld", (long long)P, (long long)T - 1, (long long)P,
                       (long long)T, (long long)s->seq_len);
        goto done;
    }
    if (d.prefill > T - P) {
        rc = tool_fail(TOOL_EXIT_USAGE, cmd, "--prefill %lld: more than the %lld tokens to decode",
                       (long long)d.prefill, (long long)(T - P));
        goto done;
    }
    size_t es = in.dtype == STILL_F64 ? sizeof(double) : sizeof(float);
    size_t rows = (size_t)(s->batch * s->heads_q * (T - P));
    out = malloc(rows * (size_t)s->dim_v * es);
    sigma = d.attn.scores_out ? malloc(rows * sizeof *sigma) : NULL;
    if (!out || (d.attn.scores_out && !sigma)) {
        rc = tool_fail(TOOL_EXIT_LIBRARY, cmd, "out of memory for the outputs");
        goto done;
    }
    double t0 = tool_now();
    if ((rc = run_appends(st, &in, P, T, d.prefill, out, sigma))) {
        rc = tool_fail(TOOL_EXIT_LIBRARY, cmd, "the %s path refused an append: %s (%s)",
                       path == STILL_PATH_FAST ? "fast" : "ref", still_strerror(rc),
                       tool_status_name(rc));
        goto done;
    }
    double seconds = tool_now() - t0;
    if (d.state_out && (rc = save_state(cmd, st, d.state_out)))
        goto done;

    tool_output outs[2];
    int n = 0;
    outs[n] = (tool_output){d.attn.out,
                            d.attn.dtype ? d.attn.dtype
                                         : path == STILL_PATH_FAST ? STILL__DT_F4 : STILL__DT_F8,
                            0, {0}, out, in.dtype};
    outs[n].ndim = out_shape(&in, T - P, s->dim_v, outs[n].shape);
    n++;
    if (sigma) {
        outs[n] = (tool_output){d.attn.scores_out, STILL__DT_F8, 0, {0}, sigma, STILL_F64};
        outs[n].ndim = out_shape(&in, T - P, 0, outs[n].shape);
        n++;
    }
    if ((rc = tool_write_outputs(cmd, outs, n)) || (rc = tool_out_commit(cmd)))
        goto done;
    size_t bytes = 0;
    still_state_bytes(st, &bytes);
    printf("still decode: %s path, tokens %lld..%lld (%lld in one block, then one at a "
           "time), %.3f s; state at %lld, %zu bytes%s%s\n",
           path == STILL_PATH_FAST ? "fast" : "ref", (long long)P, (long long)T - 1,
           (long long)d.prefill, seconds, (long long)T, bytes, d.state_out ? ", saved to " : "",
           d.state_out ? d.state_out : "");
done:
    free(out);
    free(sigma);
    still_state_destroy(st);
    tool_attn_free(&in);
    return rc;
}
