/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * fuzz_tool_args.c -- libFuzzer target for the option parser of the
 * `still` tool (tools/tool_attn.c, tools/tool_common.c; SPEC §11), issue 7.
 *
 * The input is split at NUL bytes into an argv; the parser is run over it
 * as `still run` would (tool_attn_option on every word, then
 * tool_attn_check), and every word also goes through tool_parse_int64 and
 * tool_parse_double.  Nothing is loaded or written.  The parser must
 * never crash, read out of bounds, invoke UB or leak, and what it accepts
 * must be in range: a parsed chunk >= 1, topk <= chunk for saliency, a
 * finite nonnegative eps-den, a nonzero finite scale.
 *
 * The output set (tools/tool_output.c) is driven too, in a private
 * scratch directory ($FUZZ_SCRATCH_DIR, else a new one under /tmp): every
 * file option's word is mapped to a file there (its letters; "./" keeps a
 * "./" form, "sub/" goes through sub/.., "none/" into a missing
 * directory, "dir" names a directory, "old" makes the file exist first),
 * the outputs are declared, written and committed or aborted.  Invariants:
 * two outputs or an output and an input on one file are refused; a refused
 * or aborted set leaves no temporary and every existing file as it was; a
 * committed set leaves every output a .npy file.
 */
#define _XOPEN_SOURCE 700 /* mkdtemp */
#include "tool.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REQUIRE(cond)                                                                        \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "fuzz_tool_args: invariant failed: %s (line %d)\n", #cond,       \
                    __LINE__);                                                               \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* the tool's one-line usage errors would flood the log; the sanitizers
       write their reports to fd 2 directly, not through this stream */
    FILE *null = fopen("/dev/null", "w");
    if (null)
        stderr = null;
    return 0;
}

/* ---- the output set in a scratch directory ---------------------------------- */

static char scratch[1024];

static int scratch_owned; /* made by mkdtemp: removed at exit */

static void scratch_clean(void);
static void scratch_remove(void)
{
    char sub[1100];
    scratch_clean();
    snprintf(sub, sizeof sub, "%s/sub", scratch);
    rmdir(sub);
    snprintf(sub, sizeof sub, "%s/dir", scratch);
    rmdir(sub);
    if (scratch_owned)
        rmdir(scratch);
}

static int scratch_ready(void)
{
    if (scratch[0])
        return 1;
    const char *d = getenv("FUZZ_SCRATCH_DIR");
    char sub[1100];
    if (d && *d && strlen(d) < 900) {
        snprintf(scratch, sizeof scratch, "%s/tool_args", d);
        mkdir(scratch, 0700);
    } else {
        snprintf(scratch, sizeof scratch, "/tmp/fuzz_tool_args.XXXXXX");
        if (!mkdtemp(scratch)) {
            scratch[0] = '\0';
            return 0;
        }
        scratch_owned = 1;
    }
    atexit(scratch_remove);
    snprintf(sub, sizeof sub, "%s/sub", scratch);
    mkdir(sub, 0700);
    snprintf(sub, sizeof sub, "%s/dir", scratch);
    mkdir(sub, 0700);
    return 1;
}

/* Removes the files of the scratch directory (not sub/ and dir/). */
static void scratch_clean(void)
{
    DIR *d = opendir(scratch);
    struct dirent *e;
    char path[1400];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "sub") &&
            strcmp(e->d_name, "dir")) {
            snprintf(path, sizeof path, "%s/%s", scratch, e->d_name);
            unlink(path);
        }
    if (d)
        closedir(d);
}

/* 1 when a file of the scratch directory is a temporary. */
static int scratch_has_temporary(void)
{
    DIR *d = opendir(scratch);
    struct dirent *e;
    int found = 0;
    while (d && (e = readdir(d)))
        found |= strstr(e->d_name, ".tmp-") != NULL;
    if (d)
        closedir(d);
    return found;
}

/* A word of the input as a file of the scratch directory; name receives
 * the file's own name ("" for a path that is no file of it). */
typedef struct mapped {
    char path[1400];
    char name[40];
    int old; /* made to exist first, holding "old" */
} mapped;

static void map_word(const char *w, mapped *m)
{
    char name[sizeof m->name]; /* not m->name: snprintf's source and target apart */
    size_t n = 0;
    for (const char *p = w; *p && n < 24; p++)
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '_' || *p == '-')
            name[n++] = *p;
    if (n == 0)
        name[n++] = 'x';
    name[n] = '\0';
    m->old = strstr(w, "old") != NULL;
    if (strstr(w, "none/")) {
        snprintf(m->path, sizeof m->path, "%s/none/%s", scratch, name);
        name[0] = '\0';
        m->old = 0;
    } else if (strstr(w, "dir")) {
        snprintf(m->path, sizeof m->path, "%s/dir", scratch);
        snprintf(name, sizeof name, "dir");
        m->old = 0;
    } else if (strstr(w, "sub/")) {
        snprintf(m->path, sizeof m->path, "%s/sub/../%s", scratch, name);
    } else if (!strncmp(w, "./", 2)) {
        snprintf(m->path, sizeof m->path, "%s/./%s", scratch, name);
    } else {
        snprintf(m->path, sizeof m->path, "%s/%s", scratch, name);
    }
    memcpy(m->name, name, sizeof name);
}

static int is_npy(const char *path)
{
    char buf[6] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n == 6 && !memcmp(buf, "\x93NUMPY", 6);
}

static int holds(const char *path, const char *text)
{
    char buf[16] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    return n == strlen(text) && !memcmp(buf, text, n);
}

static void exercise_outputs(const tool_attn_opts *o, int commit)
{
    const char *words[9] = {o->out, o->scores_out, o->select_out, o->q, o->k, o->v, o->gate,
                            o->params, o->select_in};
    mapped m[9];
    tool_attn_opts t = *o;
    const char **field[9] = {&t.out, &t.scores_out, &t.select_out, &t.q, &t.k, &t.v, &t.gate,
                             &t.params, &t.select_in};
    scratch_clean();
    for (int i = 0; i < 9; i++) {
        if (!words[i])
            continue;
        map_word(words[i], &m[i]);
        *field[i] = m[i].path;
        if (m[i].old) {
            FILE *f = fopen(m[i].path, "wb");
            if (f) {
                fputs("old", f);
                fclose(f);
            }
        }
    }
    /* the same file twice (an output and an output, or an input) */
    int clash = 0, missing = 0;
    for (int i = 0; i < 3; i++) {
        if (!words[i])
            continue;
        missing |= !m[i].name[0] || !strcmp(m[i].name, "dir");
        for (int j = i + 1; j < 9; j++)
            clash |= words[j] && m[i].name[0] && !strcmp(m[i].name, m[j].name);
    }
    int rc = tool_attn_outputs("run", &t);
    REQUIRE(rc == TOOL_EXIT_OK || rc == TOOL_EXIT_USAGE || rc == TOOL_EXIT_OUTPUT);
    if (clash)
        REQUIRE(rc != TOOL_EXIT_OK);
    if (missing)
        REQUIRE(rc != TOOL_EXIT_OK);
    if (rc == TOOL_EXIT_OK) {
        static const double one[1] = {1.0};
        static const uint8_t sel[1] = {1};
        tool_output outs[3];
        int n = 0;
        const char *paths[3] = {t.out, t.scores_out, t.select_out};
        for (int i = 0; i < 3; i++)
            if (paths[i])
                outs[n++] = (tool_output){paths[i], i == 2 ? STILL__DT_U1 : STILL__DT_F8, 1, {1},
                                          i == 2 ? (const void *)sel : one, STILL_F64};
        rc = tool_write_outputs("run", outs, commit ? n : n - 1);
        REQUIRE(rc == TOOL_EXIT_OK);
        if (commit) {
            REQUIRE(tool_out_commit("run") == TOOL_EXIT_OK);
            for (int i = 0; i < n; i++)
                REQUIRE(is_npy(outs[i].path));
        } else {
            /* the last output never written: commit refuses, nothing changes */
            REQUIRE(tool_out_commit("run") == TOOL_EXIT_OUTPUT);
        }
    }
    tool_out_abort(); /* as main does after any failure; a no-op after a commit */
    REQUIRE(!scratch_has_temporary());
    if (!(rc == TOOL_EXIT_OK && commit))
        for (int i = 0; i < 9; i++)
            if (words[i] && m[i].old)
                REQUIRE(holds(m[i].path, "old"));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private NUL-terminated copy: argv words point into it */
    char *buf = malloc(size + 1);
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    argv[argc++] = "run";
    for (size_t p = 0; p < size && argc < MAX_ARGS;) {
        argv[argc++] = buf + p;
        p += strlen(buf + p) + 1;
    }
    argv[argc] = NULL;

    for (int i = 1; i < argc; i++) {
        int64_t x;
        double y;
        if (tool_parse_int64("run", "--x", argv[i], -5, INT64_C(1) << 40, &x) == 0)
            REQUIRE(x >= -5 && x <= INT64_C(1) << 40);
        if (tool_parse_double("run", "--x", argv[i], -1.0, 1e300, &y) == 0)
            REQUIRE(isfinite(y) && y >= -1.0 && y <= 1e300);
    }

    tool_attn_opts o;
    tool_attn_defaults(&o);
    int ok = 1;
    for (int i = 1; i < argc && ok; i++) {
        int r = tool_attn_option("run", &o, argc, argv, &i);
        REQUIRE(r >= -1 && r <= 1);
        REQUIRE(i < argc + 1);
        ok = r == 1;
    }
    if (ok && tool_attn_check("run", &o) == TOOL_EXIT_OK) {
        REQUIRE(o.q && o.k && o.v && o.out);
        REQUIRE(o.cfg.chunk >= 1);
        REQUIRE(o.cfg.routing != STILL_ROUTING_SALIENCY || o.cfg.topk <= o.cfg.chunk);
        REQUIRE(isfinite(o.cfg.eps_den) && o.cfg.eps_den >= 0.0);
        REQUIRE(isfinite(o.cfg.scale));
        /* the library's own check of what the tool accepted: any status,
           but it must not crash on it */
        still_shape s = {1, 2, 1, 8, 4, 3, STILL_LAYOUT_BHND};
        (void)still_config_validate(&o.cfg, &s);
        if (scratch_ready())
            exercise_outputs(&o, size > 0 && data[size - 1] % 2 == 0);
    }
    free(buf);
    return 0;
}
