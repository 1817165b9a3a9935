/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * tool.h -- shared by the subcommands of the `still` tool.
 *
 * A subcommand is  int cmd_<name>(int argc, char **argv)  with argv[0] its
 * name; it returns the exit status below and, on failure, has printed ONE
 * line on stderr ("still <name>: <file>: <what>, expected <x>, found <y>")
 * and written no output file (SPEC §11).  commands.def lists them.
 */
#ifndef STILL_TOOL_H
#define STILL_TOOL_H

#include "io.h"
#include "still.h"

#include <stdint.h>
#include <stdio.h>

/* Exit statuses, documented by `still --help`. */
enum {
    TOOL_EXIT_OK = 0,
    TOOL_EXIT_MISMATCH = 1, /* still check: the arrays differ beyond the tolerance */
    TOOL_EXIT_USAGE = 2,    /* unknown option, bad or missing value */
    TOOL_EXIT_INPUT = 3,    /* an input file is missing, malformed or inconsistent */
    TOOL_EXIT_LIBRARY = 4,  /* the library refused or failed the computation */
    TOOL_EXIT_OUTPUT = 5    /* an output file could not be written */
};

#define STILL_TOOL_COMMAND(name, help) int cmd_##name(int argc, char **argv);
#include "commands.def"
#undef STILL_TOOL_COMMAND

/* ---- messages and options (tool_common.c) ---------------------------------- */

/* Prints "still <cmd>: <message>" as one line on stderr; returns status. */
int tool_fail(int status, const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* A library status as text: "<still_strerror> (STILL_E_...)". */
const char *tool_status_name(int rc);
int tool_is_help(const char *arg);
/* argv[*i] is "--opt" or "--opt=value". */
int tool_is_option(const char *arg, const char *opt);
/* The value of "--opt=value" or of "--opt value" (advancing *i); NULL after
 * printing a usage error when it is missing. */
const char *tool_option_value(const char *cmd, int argc, char **argv, int *i, const char *opt);
/* Integers and finite reals, with the range in the error message. */
int tool_parse_int64(const char *cmd, const char *opt, const char *val, int64_t lo, int64_t hi,
                     int64_t *out);
int tool_parse_double(const char *cmd, const char *opt, const char *val, double lo, double hi,
                      double *out);
/* "[2,4,16,8]" */
void tool_shape_text(int ndim, const int64_t *shape, char *buf, size_t len);
/* A flat index as "[b,h,n,i]". */
void tool_index_text(int ndim, const int64_t *shape, int64_t flat, char *buf, size_t len);
/* Under a finite address-space limit, TOOL_EXIT_LIBRARY (after the
 * message) when OpenBLAS could not map its work buffer: it would retry
 * forever.  Called before a computation that uses OpenBLAS. */
int tool_blas_room(const char *cmd);
/* The directory holding tiny-lm/ (cmd_demo.c): the installed data when it
 * is there, else the source tree's tests/data. */
const char *tool_data_dir(void);
/* Seconds on a monotonic clock. */
double tool_now(void);

/* ---- progress (tool_common.c) --------------------------------------------------- */

/* A long command shows where it is on ONE line of stderr, rewritten in
 * place ("\r"), only when stderr is a terminal and the command was not
 * given --no-progress; stdout (the results) is line-buffered, so a pipe
 * sees each result line as it is printed.  The dispatcher calls
 * tool_progress_start() before a command and tool_progress_clear() after
 * it; tool_fail() clears the line before its message.  The interface is
 * that of a progress callback: done of total (total 0: unknown), what. */
void tool_progress_start(const char *cmd);
/* argv[i] is --no-progress: switches progress off and returns 1. */
int tool_progress_option(const char *arg);
/* Redraws "still <cmd>: <what> [done/total]" (at most 10 times a second,
 * but always when done == 0 or done == total). */
void tool_progress(int64_t done, int64_t total, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Erases the line, if one is shown (before a result line on a terminal). */
void tool_progress_clear(void);
/* The --help line of --no-progress. */
#define TOOL_PROGRESS_HELP \
    "  --no-progress        no progress line on stderr (shown only on a terminal)\n"
/* A still_progress_fn feeding tool_progress(): user is the line's text. */
int tool_progress_report(void *user, int64_t done, int64_t total);

/* ---- the exact path over MPI processes (tool_mpi.c) ----------------------- */

/* This process's place: rank of size; active when MPI was initialized
 * (started by an MPI launcher, in a build with MPI). */
typedef struct tool_mpi_world {
    int rank, size, active;
} tool_mpi_world;
const tool_mpi_world *tool_mpi_init(int *argc, char ***argv);
const tool_mpi_world *tool_mpi(void);
int tool_mpi_available(void); /* built with MPI */
void tool_mpi_finalize(void);
/* A command failed on this rank: with other ranks, every one ends now
 * (MPI_Abort with status; mpirun reports it), none waits for it forever. */
void tool_mpi_abort(int status);
/* This rank's queries [*begin, *end) of N (all of them for one process). */
void tool_mpi_range(int64_t N, int64_t *begin, int64_t *end);
/* 1 when ok on every rank (an MPI_MIN reduction). */
int tool_mpi_agree(int ok);
/* Rank 0 receives every rank's rows of o [B,Hq,N,D] (elements of es
 * bytes, in s->layout) into its own o; 0 or -1 (on every rank). */
int tool_mpi_gather_rows(void *o, const still_shape *s, int64_t D, size_t es);
/* still run / still teacher under MPI (after parsing, before computing):
 * sets o->cfg's query range to this rank's, *idle when it has none; an
 * exit status after one line when the options cannot split. */
struct tool_attn_opts;
int tool_mpi_split(const char *cmd, struct tool_attn_opts *o, int64_t N, int *idle);
/* After the library call with status rc: every rank agrees, then rank 0
 * gathers the rows of out.  Returns STILL_OK, this rank's rc (< 0) for the
 * caller to report, or an exit status (> 0) after one line. */
int tool_mpi_collect(const char *cmd, int rc, void *out, const still_shape *s, size_t es);

/* ---- the attention inputs of SPEC §11 (tool_attn.c) ------------------------ */

enum { TOOL_PATH_REF = 0, TOOL_PATH_FAST = 1 };

/* Every option of `still run` (SPEC §11); teacher and grad parse the same. */
typedef struct tool_attn_opts { /* (declared above for tool_mpi_split) */
    const char *q, *k, *v, *gate, *params;
    const char *out, *scores_out, *select_out, *select_in;
    const char *lte_input, *q_lin, *k_lin; /* SPEC §15-16 */
    still_config cfg;
    int path;   /* TOOL_PATH_REF (default) or TOOL_PATH_FAST */
    int decode; /* --mode decode */
    int dtype;  /* --dtype: STILL__DT_F4 or _F8; 0 = the path's default */
    int layout; /* --layout: STILL_LAYOUT_BHND (default) or _BNHD, of every array file
                   but sigma and selections */
    int budget_given; /* --budget (required by routing lte) */
    const char *nsa_gates; /* SPEC §17: --nsa-gates */
} tool_attn_opts;

void tool_attn_defaults(tool_attn_opts *o);
/* Parses argv[*i] if it is one of the options above (advancing *i past its
 * value): returns 1 if it was, 0 if it is not one of them, -1 after a
 * usage error has been printed. */
int tool_attn_option(const char *cmd, tool_attn_opts *o, int argc, char **argv, int *i);
/* The whole command line of a command that takes only those options (and
 * --help): defaults, then each argument.  Returns -1 after printing usage
 * to stdout for --help (the command exits 0), TOOL_EXIT_OK when every
 * argument was one of the options, TOOL_EXIT_USAGE after a message. */
int tool_attn_parse(const char *cmd, int argc, char **argv, tool_attn_opts *o,
                    void (*usage)(FILE *));
/* The --help lines of those options. */
extern const char tool_attn_options_help[];
/* Checks the options that do not depend on the files (required inputs,
 * --topk <= --chunk, ...); TOOL_EXIT_OK or _USAGE. */
int tool_attn_check(const char *cmd, const tool_attn_opts *o);

/* Declares --out, --scores-out and --select-out to the output set
 * (tool_out_add) and checks that no input is one of them: before any
 * work. */
int tool_attn_outputs(const char *cmd, const tool_attn_opts *o);

/* The arrays of one call, loaded and checked. */
typedef struct tool_attn_inputs {
    still_shape shape;    /* in the layout of --layout (the files') */
    int ndim;             /* rank of q: 3 ([Hq,N,d], B = 1) or 4 */
    int dtype;            /* STILL_F64 (ref path) or STILL_F32 (fast path) */
    void *q, *k, *v, *gate;
    still_params params;  /* defaults when there is no --params */
    double *params_storage;
    uint8_t *selection_in; /* [B][Hq][N] or NULL */
    void *lte_input, *q_lin, *k_lin; /* SPEC §15-16, or NULL */
    still_lte_params lte;            /* with routing lte: from --params */
    double *lte_storage;
    void *nsa_gates;                 /* SPEC §17: [B,Hq,N,3], or NULL */
} tool_attn_inputs;

/* Loads q, k, v (and gate, params, select-in when asked) converted to the
 * path's dtype, checks their shapes against each other, finiteness and the
 * configuration.  Returns TOOL_EXIT_OK or the exit status after printing
 * the one-line error.  with_extras = 0 loads q, k, v only (the teacher). */
int tool_attn_load(const char *cmd, const tool_attn_opts *o, int with_extras,
                   tool_attn_inputs *in);
void tool_attn_free(tool_attn_inputs *in);

/* The output of [B,Hq,N,x] (x = 0: [B,Hq,N]) in the rank of the inputs
 * (and, for x > 0, their layout: [B,N,Hq,x] under BNHD). */
int tool_attn_out_shape(const tool_attn_inputs *in, int64_t last, int64_t *shape);
/* The same for an array of `heads` heads (k, v and their gradients: Hk). */
int tool_attn_array_shape(const tool_attn_inputs *in, int64_t heads, int64_t last,
                          int64_t *shape);

/* ---- SPEC §10's near-tie rule for selections (cmd_check.c) ---------------- */

typedef struct tool_sel_verdict {
    int64_t differ;          /* tokens selected by one side only */
    int64_t ties;            /* of them near-ties: within 1e-4 (1 + |theta|) of the k-th */
    int64_t first_bad;       /* flat index of the first other difference, or -1 */
    int64_t bad_chunks;      /* chunks with another count (or a selection in a partial one) */
    int64_t first_bad_chunk; /* flat index of the first of them, or -1 */
} tool_sel_verdict;
/* Selections a, b (0/1) with each side's scores sa, sb, rows of N in
 * chunks of C: the contract holds when first_bad and first_bad_chunk are
 * both -1 (still check --contract --scores-a --scores-b). */
void tool_selection_contract(const double *a, const double *b, const double *sa,
                             const double *sb, int64_t rows, int64_t N, int64_t C,
                             tool_sel_verdict *v);

/* ---- outputs (tool_common.c) ------------------------------------------------- */

typedef struct tool_output {
    const char *path;
    int dtype;  /* STILL__DT_F4, _F8 or _U1: the file's */
    int ndim;
    int64_t shape[STILL__MAX_NDIM];
    const void *data;
    int data_dtype; /* for floats: STILL_F32 or STILL_F64 of data (converted) */
} tool_output;

/* Writes each output into its temporary of the output set (tool_out_add
 * first); TOOL_EXIT_OK, TOOL_EXIT_OUTPUT (after the one-line error), or
 * TOOL_EXIT_LIBRARY before any write when a double result is beyond
 * float32's range for an f4 output (SPEC §10). */
int tool_write_outputs(const char *cmd, const tool_output *outs, int n);

/* ---- the output set of a command (tool_output.c; man still, OUTPUT FILES) -- */

enum { TOOL_OUT_MAX = 16 };

/* Declares an output before any work (path NULL: nothing): refuses one that
 * is the same file as an earlier output (TOOL_EXIT_USAGE) or that cannot
 * be written (TOOL_EXIT_OUTPUT), and creates its temporary beside the
 * target -- or opens a character device or a read FIFO in place. */
int tool_out_add(const char *cmd, const char *flag, const char *path);
/* tool_out_writer(0): this process declares and writes no output (an MPI
 * rank other than 0: rank 0 writes them). */
void tool_out_writer(int yes);
/* Refuses (TOOL_EXIT_USAGE) an input that is the same file as an output
 * already declared. */
int tool_out_input(const char *cmd, const char *flag, const char *path);
/* The file descriptor to write output path into (-1 after a message). */
int tool_out_fd(const char *cmd, const char *path);
/* Output path fully written: synced and closed. */
int tool_out_close(const char *cmd, const char *path);
/* tool_out_fd, the parts, tool_out_close. */
int tool_out_write(const char *cmd, const char *path, const still__write_part *parts, int n);
/* Every output written: renames each temporary onto its target.  An
 * output not written is an error (and aborts). */
int tool_out_commit(const char *cmd);
/* Removes every temporary and forgets the set (the targets stay as they
 * were).  main calls it after any failure. */
void tool_out_abort(void);
/* A directory output (still golden --out): the target must not exist or
 * be an empty directory; *tmpdir is the new directory beside it to build
 * in, renamed onto the target by tool_out_commit.  What is made inside is
 * made with the two functions below (so that a signal or a failure
 * removes it): tree_open gives a new file's descriptor (-1 after the
 * message), tree_close closes it and reports rc (err the writer's text). */
int tool_out_add_dir(const char *cmd, const char *flag, const char *path, const char **tmpdir);
int tool_out_tree_mkdir(const char *cmd, const char *path);
int tool_out_tree_open(const char *cmd, const char *path);
int tool_out_tree_close(const char *cmd, const char *path, int fd, int rc, const char *err);

#endif /* STILL_TOOL_H */
