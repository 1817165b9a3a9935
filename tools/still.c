/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * still.c -- the `still` command: dispatches to its subcommands
 * (commands.def) and documents the exit statuses (tool.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "tool.h"

#include "config.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct tool_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} tool_command;

static const tool_command commands[] = {
#define STILL_TOOL_COMMAND(name, help) {#name, cmd_##name, help},
#include "commands.def"
#undef STILL_TOOL_COMMAND
};

static void usage(FILE *f)
{
    fprintf(f, "usage: still COMMAND [options]      (still COMMAND --help for its options)\n"
               "\n"
               "libstill %s: STILL attention -- exact softmax attention over a few salient\n"
               "tokens, linear attention over the rest -- and its reference tools.\n"
               "\n"
               "commands:\n",
            still_version_string());
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n"
               "Files: .npy arrays (v1-v3, little-endian <f4/<f8, <f2 read, C order) and\n"
               "safetensors parameters (SPEC §11).  On any failure a command prints one line\n"
               "on stderr naming the problem and writes no output file.\n"
               "\n"
               "exit status:\n"
               "  0  success\n"
               "  1  still check: the arrays differ beyond the tolerance\n"
               "  2  usage error: unknown command or option, bad or missing value\n"
               "  3  input file problem: missing, malformed, non-finite, or shapes that\n"
               "     do not fit together\n"
               "  4  library error: the computation was refused or failed (e.g. the fast\n"
               "     path not available in this build)\n"
               "  5  an output file could not be written\n");
}

/* The commands that split across MPI processes (tool_mpi.c). */
static int splits_under_mpi(const char *name)
{
    return !strcmp(name, "run") || !strcmp(name, "teacher");
}

static int dispatch(int argc, char **argv);

#if defined(__linux__) && defined(__ELF__)
/* Under a finite address-space limit (ulimit -v) OpenBLAS's constructor
 * starts worker threads that may not get their stacks or buffers: it then
 * kills the process with SIGINT, or leaves workers retrying forever that
 * its exit handler joins.  So before any library initializer runs (the
 * executable's preinit array), a tool with such a limit and without
 * OPENBLAS_NUM_THREADS in its environment executes itself again with
 * OPENBLAS_NUM_THREADS=1 added: OpenBLAS then starts no thread.  Only
 * system calls here (libc is not initialized yet); on any failure it just
 * goes on. */
static void blas_threads_under_limit(int argc, char **argv, char **envp)
{
    static char *env[1024];
    static char one[] = "OPENBLAS_NUM_THREADS=1";
    struct rlimit as;
    size_t n = 0;
    (void)argc;
    if (getrlimit(RLIMIT_AS, &as) != 0 || as.rlim_cur == RLIM_INFINITY || !envp || !argv)
        return;
    for (; envp[n]; n++) {
        if (!strncmp(envp[n], "OPENBLAS_NUM_THREADS=", 21) || n + 2 >= sizeof env / sizeof *env)
            return;
        env[n] = envp[n];
    }
    env[n++] = one;
    env[n] = NULL;
    execve("/proc/self/exe", argv, env);
}
__attribute__((section(".preinit_array"), used)) static void (*const blas_preinit)(
    int, char **, char **) = blas_threads_under_limit;
#endif

/* The end of every command.  Under a finite address-space limit a thread
 * of OpenBLAS (where the variable above was set by the user) may retry
 * for its buffer forever and OpenBLAS's exit handler would join it: so
 * there the tool flushes its streams and ends with _exit, skipping the
 * exit handlers; elsewhere it returns normally (leak checkers run). */
static int finish(int status)
{
    struct rlimit as;
    if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) {
        if (fflush(stdout) != 0 && status == TOOL_EXIT_OK)
            status = tool_fail(TOOL_EXIT_OUTPUT, "still", "cannot write to stdout");
        fflush(stderr);
        _exit(status);
    }
    return status;
}

int main(int argc, char **argv)
{
    const tool_mpi_world *mw = tool_mpi_init(&argc, &argv);
    int status;
    tool_out_writer(mw->rank == 0);
    if (mw->size > 1 && (argc < 2 || !splits_under_mpi(argv[1])))
        status = mw->rank ? TOOL_EXIT_USAGE
                          : tool_fail(TOOL_EXIT_USAGE, argc < 2 ? "" : argv[1],
                                      "only still run and still teacher split across MPI "
                                      "processes");
    else
        status = dispatch(argc, argv);
    if (status != TOOL_EXIT_OK)
        tool_mpi_abort(status); /* a failing rank must not leave the others waiting */
    tool_mpi_finalize();
    return status;
}

static int dispatch(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "still: expected a command (see still --help)\n");
        return finish(TOOL_EXIT_USAGE);
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return finish(TOOL_EXIT_OK);
    }
    if (!strcmp(argv[1], "--version")) {
        printf("still (libstill) %s\n"
               "Copyright (c) 2026 The libstill authors\n"
               "MIT licence (SPDX-License-Identifier: MIT): free software, without warranty.\n"
               "Bug reports: %s\n",
               still_version_string(), PACKAGE_BUGREPORT);
        return finish(TOOL_EXIT_OK);
    }
    /* results reach a pipe line by line, as they are printed */
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            tool_progress_start(commands[i].name);
            int status = commands[i].run(argc - 1, argv + 1);
            tool_progress_clear();
            if (status == TOOL_EXIT_OK)
                status = tool_out_commit(commands[i].name); /* none left: a no-op */
            else
                tool_out_abort(); /* the temporaries go, the targets stay */
            if (fflush(stdout) != 0 && status == TOOL_EXIT_OK)
                status = tool_fail(TOOL_EXIT_OUTPUT, commands[i].name, "cannot write to stdout");
            return finish(status);
        }
    fprintf(stderr, "still: unknown command '%s' (see still --help)\n", argv[1]);
    return finish(TOOL_EXIT_USAGE);
}
