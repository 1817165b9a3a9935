/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * tool_mpi.c -- the exact path across processes or machines:
 * `mpirun -np P still run --path ref ...` (and `still teacher`).
 *
 * Each query's output depends only on the inputs (SPEC §6, §1), so the
 * queries split into P contiguous ranges, rank r computing its range of
 * every head with still_ref_forward's query range, and rank 0 gathers the
 * rows and writes the one output: byte for byte the file of one process,
 * whatever P.  The ranges are cut at N*sqrt(r/P), which gives every rank
 * about the same work under causality (query t costs O(t)).
 *
 * Built only when configure finds Open MPI (libopenmpi-dev); without it,
 * or when the tool was not started by an MPI launcher, every call here is
 * the one-process case.
 */
#ifdef HAVE_CONFIG_H
#include "config.h" /* HAVE_MPI */
#endif
#include "tool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_MPI
#include <mpi.h>
#endif

static tool_mpi_world world = {0, 1, 0};

/* An MPI launcher started this process: Open MPI's and the PMI/PMIx
 * variables (a plain `still run` never initializes MPI). */
static int launched_by_mpi(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}

const tool_mpi_world *tool_mpi_init(int *argc, char ***argv)
{
#ifdef HAVE_MPI
    int inited = 0;
    if (launched_by_mpi() && MPI_Initialized(&inited) == MPI_SUCCESS && !inited &&
        MPI_Init(argc, argv) == MPI_SUCCESS) {
        world.active = 1;
        MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
        MPI_Comm_size(MPI_COMM_WORLD, &world.size);
    }
#else
    (void)argc;
    (void)argv;
    (void)launched_by_mpi;
#endif
    return &world;
}

const tool_mpi_world *tool_mpi(void)
{
    return &world;
}

int tool_mpi_available(void)
{
#ifdef HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

void tool_mpi_abort(int status)
{
#ifdef HAVE_MPI
    if (world.active && world.size > 1) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, status);
    }
#else
    (void)status;
#endif
}

void tool_mpi_finalize(void)
{
#ifdef HAVE_MPI
    if (world.active)
        MPI_Finalize();
    world.active = 0;
#endif
}

/* The first query of rank r: round(N sqrt(r/P)), so that the ranges'
 * causal work (the sum of t over the range) is about N^2/(2P) each. */
static int64_t range_start(int64_t N, int r, int P)
{
    if (r >= P)
        return N;
    return (int64_t)llround((double)N * sqrt((double)r / (double)P));
}

void tool_mpi_range(int64_t N, int64_t *begin, int64_t *end)
{
    *begin = range_start(N, world.rank, world.size);
    *end = range_start(N, world.rank + 1, world.size);
}

int tool_mpi_agree(int ok)
{
#ifdef HAVE_MPI
    if (world.active && world.size > 1) {
        int all = 0;
        if (MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS)
            return 0;
        return all;
    }
#endif
    return ok;
}

#ifdef HAVE_MPI
/* Copies rows [n0, n1) of every head of o [B,H,N,D] (layout, elements of es
 * bytes) to or from buf, in (b, h, n) order. */
static void pack_rows(int unpack, void *o, unsigned char *buf, const still_shape *s, int64_t D,
                      size_t es, int64_t n0, int64_t n1)
{
    const still__strides st = still__strides_of(s->layout, s->heads_q, s->seq_len, D);
    const size_t row = (size_t)D * es;
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t h = 0; h < s->heads_q; h++)
            for (int64_t n = n0; n < n1; n++, buf += row) {
                unsigned char *p = (unsigned char *)o + (size_t)(b * st.b + h * st.h + n * st.n) * es;
                if (unpack)
                    memcpy(p, buf, row);
                else
                    memcpy(buf, p, row);
            }
}
#endif

int tool_mpi_gather_rows(void *o, const still_shape *s, int64_t D, size_t es)
{
#ifdef HAVE_MPI
    if (!world.active || world.size < 2)
        return 0;
    const int P = world.size;
    const double heads = (double)s->batch * (double)s->heads_q * (double)D * (double)es;
    int *counts = calloc((size_t)P, sizeof *counts), *displs = calloc((size_t)P, sizeof *displs);
    int failed = !counts || !displs;
    double total = 0.0;
    for (int r = 0; r < P && !failed; r++) {
        double bytes = heads * (double)(range_start(s->seq_len, r + 1, P) -
                                        range_start(s->seq_len, r, P));
        failed = total + bytes > (double)INT32_MAX; /* MPI counts are int */
        counts[r] = failed ? 0 : (int)bytes;
        displs[r] = failed ? 0 : (int)total;
        total += bytes;
    }
    int64_t n0, n1;
    tool_mpi_range(s->seq_len, &n0, &n1);
    unsigned char *mine = failed ? NULL : malloc(counts[world.rank] ? (size_t)counts[world.rank] : 1);
    unsigned char *all = failed || world.rank ? NULL : malloc(total > 0 ? (size_t)total : 1);
    failed = failed || !mine || (world.rank == 0 && !all);
    if (!tool_mpi_agree(!failed)) {
        free(counts); free(displs); free(mine); free(all);
        return -1;
    }
    pack_rows(0, o, mine, s, D, es, n0, n1);
    int rc = MPI_Gatherv(mine, counts[world.rank], MPI_BYTE, all, counts, displs, MPI_BYTE, 0,
                         MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : -1;
    if (!rc && world.rank == 0)
        for (int r = 0; r < P; r++)
            pack_rows(1, o, all + displs[r], s, D, es, range_start(s->seq_len, r, P),
                      range_start(s->seq_len, r + 1, P));
    free(counts); free(displs); free(mine); free(all);
    return rc;
#else
    (void)o;
    (void)s;
    (void)D;
    (void)es;
    return 0;
#endif
}

int tool_mpi_split(const char *cmd, tool_attn_opts *o, int64_t N, int *idle)
{
    *idle = 0;
    if (world.size < 2)
        return TOOL_EXIT_OK;
    if (o->path == TOOL_PATH_FAST || o->decode)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "under MPI only the reference path's prefill "
                         "splits (--path ref, --mode prefill)");
    int64_t begin, end;
    tool_mpi_range(N, &begin, &end);
    *idle = begin == end; /* more ranks than queries: nothing to compute here */
    o->cfg.query_begin = begin;
    o->cfg.query_end = end;
    return TOOL_EXIT_OK;
}

int tool_mpi_collect(const char *cmd, int rc, void *out, const still_shape *s, size_t es)
{
    if (world.size < 2)
        return rc;
    /* every rank learns whether all computed; only then gather */
    if (!tool_mpi_agree(rc == STILL_OK)) {
        if (rc)
            return rc; /* this rank's failure: the caller says why */
        return tool_fail(TOOL_EXIT_LIBRARY, cmd, "another of the %d processes failed",
                         world.size);
    }
    if (tool_mpi_gather_rows(out, s, s->dim_v, es))
        return tool_fail(TOOL_EXIT_LIBRARY, cmd, "gathering the rows of %d processes failed",
                         world.size);
    return STILL_OK;
}
