/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * cmd_teacher.c -- `still teacher`: full causal softmax attention of the
 * same inputs as `still run` (SPEC §1, §11), the reference STILL is
 * trained and checked against.
 */
#include "tool.h"

#include <stdio.h>
#include <stdlib.h>

static void teacher_usage(FILE *f)
{
    fprintf(f,
            "usage: still teacher --q Q.npy --k K.npy --v V.npy --out O.npy [options]\n"
            "\n"
            "Full causal softmax attention (SPEC §1): o_t = sum_{j<=t} e^{s(t,j)} v_j /\n"
            "sum_{j<=t} e^{s(t,j)}, s(t,j) = scale <q_t, k_j>.  It takes the options of\n"
            "`still run`, so that one command line serves both; of those only --q, --k,\n"
            "--v, --scale, --path, --isa, --threads, --dtype and --out have an effect\n"
            "(the teacher has no gate, parameters, chunks or routing, and is computed in\n"
            "one pass whatever --mode says).  --scores-out, --select-out and --select-in\n"
            "are refused: the teacher selects nothing.\n"
            "\n%s"
            "\n"
            "Exit status: 0 success, 2 usage error, 3 input file problem, 4 library\n"
            "error (e.g. the fast path not available), 5 output not written.\n",
            tool_attn_options_help);
}

int cmd_teacher(int argc, char **argv)
{
    const char *cmd = "teacher";
    tool_attn_opts o;
    tool_attn_inputs in;
    int rc;

    if ((rc = tool_attn_parse(cmd, argc, argv, &o, teacher_usage)))
        return rc < 0 ? TOOL_EXIT_OK : rc;
    if (o.scores_out || o.select_out || o.select_in)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "%s: the teacher attends to every key and "
                         "selects nothing (use still run)",
                         o.scores_out ? "--scores-out" : o.select_out ? "--select-out"
                                                                      : "--select-in");
    o.decode = 0;
    if ((rc = tool_attn_check(cmd, &o)) || (rc = tool_attn_outputs(cmd, &o)) ||
        (rc = tool_attn_load(cmd, &o, 0, &in)))
        return rc;

    const still_shape *s = &in.shape;
    size_t es = in.dtype == STILL_F64 ? sizeof(double) : sizeof(float);
    void *out = malloc((size_t)(s->batch * s->heads_q * s->seq_len * s->dim_v) * es);
    if (!out) {
        tool_attn_free(&in);
        return tool_fail(TOOL_EXIT_LIBRARY, cmd, "out of memory for the output");
    }
    still_tensors t = {in.dtype, in.q, in.k, in.v, NULL, out, NULL, NULL, NULL, NULL, NULL, NULL,
                       NULL, NULL};
    int idle = 0;
    if ((rc = tool_mpi_split(cmd, &o, s->seq_len, &idle))) {
        free(out);
        tool_attn_free(&in);
        return rc;
    }
    if (tool_mpi()->rank != 0)
        tool_progress_option("--no-progress"); /* one progress line: rank 0's */
    o.cfg.progress = tool_progress_report;
    o.cfg.progress_user = o.path == TOOL_PATH_FAST ? "fast path" : "ref path, rows";
    double t0 = tool_now();
    tool_progress(0, 0, "%s path, %lld tokens x %lld heads ...",
                  o.path == TOOL_PATH_FAST ? "fast" : "ref", (long long)s->seq_len,
                  (long long)(s->batch * s->heads_q));
    if (idle)
        rc = STILL_OK; /* under MPI, more processes than queries */
    else
        rc = o.path == TOOL_PATH_FAST ? still_teacher(&o.cfg, s, &t)
                                      : still_ref_teacher(&o.cfg, s, &t);
    tool_progress_clear();
    rc = tool_mpi_collect(cmd, rc, out, s, es);
    double seconds = tool_now() - t0;
    if (rc > 0 || (rc == STILL_OK && tool_mpi()->rank != 0)) {
        /* another process failed (said), or rank 0 writes the output */
    } else if (rc) {
        rc = tool_fail(TOOL_EXIT_LIBRARY, cmd, "the %s path refused: %s (%s)",
                       o.path == TOOL_PATH_FAST ? "fast" : "ref", still_strerror(rc),
                       tool_status_name(rc));
    } else {
        tool_output out1 = {o.out, o.dtype ? o.dtype
                                           : o.path == TOOL_PATH_FAST ? STILL__DT_F4 : STILL__DT_F8,
                            0, {0}, out, in.dtype};
        out1.ndim = tool_attn_out_shape(&in, s->dim_v, out1.shape);
        if (!(rc = tool_write_outputs(cmd, &out1, 1)) && !(rc = tool_out_commit(cmd))) {
            char shape[160];
            tool_shape_text(out1.ndim, out1.shape, shape, sizeof shape);
            printf("still teacher: %s path, B=%lld Hq=%lld Hk=%lld N=%lld d=%lld dv=%lld, "
                   "%.3f s%s; wrote %s %s %s\n", o.path == TOOL_PATH_FAST ? "fast" : "ref",
                   (long long)s->batch, (long long)s->heads_q, (long long)s->heads_kv,
                   (long long)s->seq_len, (long long)s->dim_qk, (long long)s->dim_v, seconds,
                   tool_mpi()->size > 1 ? " over several processes" : "", o.out,
                   still__dtype_name(out1.dtype), shape);
        }
    }
    free(out);
    tool_attn_free(&in);
    return rc;
}
