/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * cmd_run.c -- `still run`: STILL attention of q, k, v files (SPEC §6, §11).
 *
 * Loads and checks every input first, computes on the chosen path (ref:
 * double; fast: float32) in prefill or streaming decode mode, and writes
 * the outputs only when everything succeeded.
 */
#include "tool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run_usage(FILE *f)
{
    fprintf(f,
            "usage: still run --q Q.npy --k K.npy --v V.npy --out O.npy [options]\n"
            "\n"
            "STILL hybrid attention (SPEC §6): a few salient tokens per chunk keep exact\n"
            "softmax attention, the others are summarized by linear attention.\n"
            "\n%s"
            "\n"
            "Exit status: 0 success, 2 usage error, 3 input file problem, 4 library\n"
            "error (e.g. the fast path not available), 5 output not written.\n",
            tool_attn_options_help);
}

/* Copies token t of every (batch, head) row of x [rows][N][D] into
 * step [rows][1][D], or back with to_full. */
static void move_token(int to_full, void *full, void *step, int64_t rows, int64_t N, int64_t D,
                       int64_t t, size_t es)
{
    for (int64_t r = 0; r < rows; r++) {
        unsigned char *f = (unsigned char *)full + ((size_t)(r * N + t) * (size_t)D) * es;
        unsigned char *s = (unsigned char *)step + (size_t)(r * D) * es;
        if (to_full)
            memcpy(f, s, (size_t)D * es);
        else
            memcpy(s, f, (size_t)D * es);
    }
}

/* SPEC §7: streaming decode, one token per append; the same outputs as
 * prefill (SPEC I6). */
static int run_decode(const tool_attn_opts *o, const tool_attn_inputs *in,
                      const still_params *params, void *out, double *sigma)
{
    const still_shape *s = &in->shape;
    const size_t es = in->dtype == STILL_F64 ? sizeof(double) : sizeof(float);
    const int64_t rq = s->batch * s->heads_q, rk = s->batch * s->heads_kv, N = s->seq_len;
    still_state *st = NULL;
    int rc = still_state_create(&o->cfg, s, params,
                                o->path == TOOL_PATH_FAST ? STILL_PATH_FAST : STILL_PATH_REF, &st);
    if (rc)
        return rc;
    size_t nq = (size_t)(rq * s->dim_qk), nk = (size_t)(rk * s->dim_qk),
           nv = (size_t)(rk * s->dim_v), no = (size_t)(rq * s->dim_v);
    /* and SPEC §16's q_lin, k_lin (mixer liger), when given */
    unsigned char *buf =
        malloc((2 * nq + 2 * nk + nv + 2 * no) * es + (size_t)rq * sizeof(double));
    if (!buf) {
        still_state_destroy(st);
        return STILL_E_NOMEM;
    }
    /* the doubles first: after an odd count of floats they would be misaligned */
    double *s1 = (double *)buf;
    unsigned char *a = buf + (size_t)rq * sizeof(double);
    void *q1 = a, *k1 = a + nq * es, *v1 = a + (nq + nk) * es, *g1 = a + (nq + nk + nv) * es,
         *o1 = a + (nq + nk + nv + no) * es, *ql1 = a + (nq + nk + nv + 2 * no) * es,
         *kl1 = a + (2 * nq + nk + nv + 2 * no) * es;
    still_tensors t1 = {in->dtype, q1, k1, v1, in->gate ? g1 : NULL, o1,
                        sigma ? s1 : NULL, NULL, NULL, NULL, in->q_lin ? ql1 : NULL,
                        in->k_lin ? kl1 : NULL, NULL, NULL};
    for (int64_t t = 0; t < N && !rc; t++) {
        tool_progress(t, N, "%s path decode, token", o->path == TOOL_PATH_FAST ? "fast" : "ref");
        move_token(0, in->q, q1, rq, N, s->dim_qk, t, es);
        move_token(0, in->k, k1, rk, N, s->dim_qk, t, es);
        move_token(0, in->v, v1, rk, N, s->dim_v, t, es);
        if (in->gate)
            move_token(0, in->gate, g1, rq, N, s->dim_v, t, es);
        if (in->q_lin)
            move_token(0, in->q_lin, ql1, rq, N, s->dim_qk, t, es);
        if (in->k_lin)
            move_token(0, in->k_lin, kl1, rk, N, s->dim_qk, t, es);
        if ((rc = still_state_append(st, 1, &t1)))
            break;
        move_token(1, out, o1, rq, N, s->dim_v, t, es);
        if (sigma)
            move_token(1, sigma, s1, rq, N, 1, t, sizeof(double));
    }
    free(buf);
    still_state_destroy(st);
    return rc;
}

/* The selected blocks of routing nsa for rows queries, S each (SPEC §17);
 * NULL when they do not fit in memory. */
static int32_t *nsa_blocks_new(const still_config *cfg, size_t rows)
{
    size_t n;
    if (cfg->nsa_topk < 1 || still__mul3_size(rows, (size_t)cfg->nsa_topk, sizeof(int32_t), &n))
        return NULL;
    return malloc(n);
}

int cmd_run(int argc, char **argv)
{
    const char *cmd = "run";
    tool_attn_opts o;
    tool_attn_inputs in;
    int rc;

    if ((rc = tool_attn_parse(cmd, argc, argv, &o, run_usage)))
        return rc < 0 ? TOOL_EXIT_OK : rc;
    if ((rc = tool_attn_check(cmd, &o)) || (rc = tool_attn_outputs(cmd, &o)) ||
        (rc = tool_attn_load(cmd, &o, 1, &in)))
        return rc;

    const still_shape *s = &in.shape;
    size_t es = in.dtype == STILL_F64 ? sizeof(double) : sizeof(float);
    size_t rows = (size_t)(s->batch * s->heads_q * s->seq_len);
    void *out = malloc(rows * (size_t)s->dim_v * es);
    double *sigma = o.scores_out ? malloc(rows * sizeof *sigma) : NULL;
    /* SPEC §17: routing nsa's selection is its blocks [B,Hq,N,S] int32 */
    const int nsa = o.cfg.routing == STILL_ROUTING_NSA;
    uint8_t *sel = o.select_out && !nsa ? malloc(rows) : NULL;
    int32_t *blocks = o.select_out && nsa ? nsa_blocks_new(&o.cfg, rows) : NULL;
    if (!out || (o.scores_out && !sigma) || (o.select_out && !sel && !blocks)) {
        rc = tool_fail(TOOL_EXIT_LIBRARY, cmd, "out of memory for the outputs");
        goto done;
    }
    const still_params *params = o.params ? &in.params : NULL;
    still_tensors t = {in.dtype, in.q, in.k, in.v, in.gate, out, sigma, sel, in.selection_in,
                       in.lte_input, in.q_lin, in.k_lin, in.nsa_gates, blocks};
    int idle = 0;
    if ((rc = tool_mpi_split(cmd, &o, s->seq_len, &idle)))
        goto done;
    if (tool_mpi()->rank != 0)
        tool_progress_option("--no-progress"); /* one progress line: rank 0's */
    o.cfg.progress = tool_progress_report;
    o.cfg.progress_user = "ref path prefill, rows";
    double t0 = tool_now();
    tool_progress(0, 0, "%s path prefill of %lld tokens x %lld heads ...",
                  o.path == TOOL_PATH_FAST ? "fast" : "ref", (long long)s->seq_len,
                  (long long)(s->batch * s->heads_q));
    if (idle)
        rc = STILL_OK; /* under MPI, more processes than queries */
    else if (o.decode)
        rc = run_decode(&o, &in, params, out, sigma);
    else if (o.path == TOOL_PATH_FAST)
        rc = still_forward(&o.cfg, s, params, &t);
    else
        rc = still_ref_forward(&o.cfg, s, params, &t);
    tool_progress_clear();
    rc = tool_mpi_collect(cmd, rc, out, s, es);
    double seconds = tool_now() - t0;
    if (rc > 0)
        goto done; /* another process failed: said */
    if (rc == STILL_OK && tool_mpi()->rank != 0)
        goto done; /* rank 0 writes the outputs */
    if (rc) {
        rc = tool_fail(TOOL_EXIT_LIBRARY, cmd, "the %s path %s refused: %s (%s)",
                       o.path == TOOL_PATH_FAST ? "fast" : "ref", o.decode ? "decode" : "prefill",
                       still_strerror(rc), tool_status_name(rc));
        goto done;
    }

    tool_output outs[4];
    int n = 0;
    outs[n] = (tool_output){o.out, o.dtype ? o.dtype
                                           : o.path == TOOL_PATH_FAST ? STILL__DT_F4 : STILL__DT_F8,
                            0, {0}, out, in.dtype};
    outs[n].ndim = tool_attn_out_shape(&in, s->dim_v, outs[n].shape);
    n++;
    /* SPEC §15: routing lte's scores and retained sets are per kv head */
    const int per_kv = o.cfg.routing == STILL_ROUTING_LTE;
    if (sigma) {
        outs[n] = (tool_output){o.scores_out, STILL__DT_F8, 0, {0}, sigma, STILL_F64};
        outs[n].ndim = tool_attn_out_shape(&in, 0, outs[n].shape);
        if (per_kv)
            outs[n].shape[outs[n].ndim - 2] = s->heads_kv;
        n++;
    }
    if (sel) {
        outs[n] = (tool_output){o.select_out, STILL__DT_U1, 0, {0}, sel, STILL_F64};
        outs[n].ndim = tool_attn_out_shape(&in, 0, outs[n].shape);
        if (per_kv)
            outs[n].shape[outs[n].ndim - 2] = s->heads_kv;
        n++;
    }
    if (blocks) {
        outs[n] = (tool_output){o.select_out, STILL__DT_I4, 0, {0}, blocks, STILL_F64};
        outs[n].ndim = tool_attn_out_shape(&in, 0, outs[n].shape);
        outs[n].shape[outs[n].ndim++] = o.cfg.nsa_topk; /* [B,Hq,N,S], as sigma's [B,Hq,N] */
        n++;
    }
    if ((rc = tool_write_outputs(cmd, outs, n)) || (rc = tool_out_commit(cmd)))
        goto done;
    char shape[160];
    tool_shape_text(outs[0].ndim, outs[0].shape, shape, sizeof shape);
    char split[48] = "";
    if (tool_mpi()->size > 1)
        snprintf(split, sizeof split, " over %d processes", tool_mpi()->size);
    printf("still run: %s path, %s, B=%lld Hq=%lld Hk=%lld N=%lld d=%lld dv=%lld, %.3f s%s; "
           "wrote %s %s %s\n", o.path == TOOL_PATH_FAST ? "fast" : "ref",
           o.decode ? "decode" : "prefill", (long long)s->batch, (long long)s->heads_q,
           (long long)s->heads_kv, (long long)s->seq_len, (long long)s->dim_qk,
           (long long)s->dim_v, seconds, split, o.out, still__dtype_name(outs[0].dtype), shape);
done:
    free(out);
    free(sigma);
    free(sel);
    free(blocks);
    tool_attn_free(&in);
    return rc;
}
