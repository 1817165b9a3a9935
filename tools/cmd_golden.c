/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * cmd_golden.c -- `still golden`: a versioned set of inputs and reference
 * outputs that another implementation of STILL (a GPU kernel, a port) is
 * validated against, and `still golden --verify` that re-checks one.
 *
 * A set is a directory: one subdirectory per case with its inputs (q, k,
 * v, gate .npy in <f4, params.safetensors when the case has parameters)
 * and the ref path's outputs (o.npy and o_teacher.npy in <f8, sigma.npy
 * <f8, sel.npy |u1), and manifest.json, which gives for every case its
 * shapes, dtypes, configuration, the exact `still run` and `still teacher`
 * command lines that reproduce its outputs, the tolerances of SPEC §10 and
 * the SHA-256 of every file.
 *
 * Truthfulness: the generator builds each case's command line first and
 * computes the outputs by parsing that command line with the options
 * parser of `still run` and loading the files it has just written, as
 * `still run` does; --verify parses the command line from the manifest the
 * same way.
 *
 * Inputs come from a seeded generator that uses only integer and exactly
 * rounded arithmetic, so that every platform writes the same bytes (see
 * golden_usage() and still-golden(1)).
 */
#define _XOPEN_SOURCE 700
#include "golden.h"
#include "tool_train.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <nettle/sha2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GOLDEN_FORMAT "still-golden"
#define GOLDEN_FORMAT_VERSION 1
#define GOLDEN_PATH_MAX 4096
#define GOLDEN_MAX_FILES 16

static const char *const golden_cmd = "golden";

static void golden_usage(FILE *f)
{
    fprintf(f,
            "usage: still golden --out DIR [--suite small|real] [--max-n N] [--seed S]\n"
            "                    [--path ref]\n"
            "       still golden --verify DIR [--path ref|fast]\n"
            "       still golden --sha256 FILE...\n"
            "\n"
            "--out writes a golden set into DIR (which must not exist, or be empty): one\n"
            "subdirectory per case with q.npy, k.npy, v.npy, gate.npy (<f4),\n"
            "params.safetensors when the case has parameters, and the ref path's outputs\n"
            "o.npy, o_teacher.npy, sigma.npy (<f8) and sel.npy (|u1); and manifest.json\n"
            "with, for every case, its shapes, dtypes, configuration, the `still run` and\n"
            "`still teacher` command lines that reproduce it (run in the case's directory),\n"
            "the tolerances of SPEC §10 and the SHA-256 of every file.  The same seed and\n"
            "libstill version always give the same bytes.\n"
            "\n"
            "--verify re-checks a set: the SHA-256 of every file, then every case recomputed\n"
            "by this build on the chosen path and compared with the stored outputs within\n"
            "the manifest's tolerance (float64 for --path ref, SPEC §10 float32 for fast).\n"
            "\n"
            "--sha256 prints the SHA-256 of files as sha256sum does.\n"
            "\n"
            "  --suite S  small (default: N <= 300, d = 16; seconds) or real (d = 64 and\n"
            "             128, N up to 16384, GQA 32/8, layouts BHND and BNHD, inputs\n"
            "             rounded through bfloat16 / float16, tiny-lm's activations, decode\n"
            "             split points, and per case dO.npy with the VJP's gradients\n"
            "             grads.safetensors; about 0.5 GB, minutes: see still-golden(1))\n"
            "  --max-n N  with --suite real: every case's N capped at N >= 16 (scaled down)\n"
            "  --case NAME  with --verify: that case only\n"
            "  --seed S   generator seed, 0 <= S < 2^63 (default 1)\n"
            "  --path P   ref (default) or, with --verify, fast\n"
            "  --no-progress  no progress line on stderr (shown only on a terminal)\n"
            "\n"
            "Inputs: every case draws from its own SplitMix64 stream, started at\n"
            "seed XOR FNV-1a-64(case name) XOR draw*0x9E3779B97F4A7C15; u = (x >> 11)\n"
            "* 2^-53; a normal-like value is (u1+u2+u3+u4 - 2)*sqrt(3); values are rounded\n"
            "to float32.  Draw order: q, k, v, gate (1/16 + 7/8 (x >> 40) 2^-24), then\n"
            "the parameters.  A case is drawn again (draw + 1) until every selection has\n"
            "a sigma margin of at least 1e-4 (1 + |sigma|), so a conforming\n"
            "implementation reproduces sel.npy exactly.\n"
            "\n"
            "A port checks its output with, in each case's directory:\n"
            "  still check THEIR_o.npy o.npy --rtol 0 --atol <tolerance.float32.o.atol>\n"
            "\n"
            "Exit status: 0 success, 1 --verify found a mismatch, 2 usage error, 3 a\n"
            "manifest or input file problem, 4 library error, 5 output not written.\n");
}

/* ==== SHA-256 (nettle) ========================================================= */

/* The digest of a finished context as 64 lowercase hex digits. */
static void sha256_hex(struct sha256_ctx *c, char hex[65])
{
    uint8_t digest[SHA256_DIGEST_SIZE];
    sha256_digest(c, sizeof digest, digest);
    for (size_t i = 0; i < sizeof digest; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned)digest[i]);
}

/* The SHA-256 of a file, and its size; -1 (errno set) if unreadable. */
static int sha256_file(const char *path, char hex[65], uint64_t *size)
{
    unsigned char buf[1 << 15];
    struct sha256_ctx c;
    uint64_t bytes = 0;
    size_t n, total;
    FILE *f;
    if (still__open_regular(path, &f, &total, NULL, 0)) { /* never waits on a FIFO */
        errno = EINVAL;
        return -1;
    }
    sha256_init(&c);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        sha256_update(&c, n, buf);
        bytes += n;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        errno = EIO;
        return -1;
    }
    if (size)
        *size = bytes;
    sha256_hex(&c, hex);
    return 0;
}

/* ==== text: the manifest is written into a growing buffer ====================== */

typedef struct text {
    char *p;
    size_t len, cap;
    int failed; /* out of memory */
} text;

static void text_printf(text *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void text_printf(text *t, const char *fmt, ...)
{
    va_list ap;
    if (t->failed)
        return;
    for (;;) {
        size_t room = t->cap - t->len;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? 2 * t->cap : 4096;
        while (cap - t->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->failed = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

/* The shortest %g text that reads back as exactly x (x finite). */
static void format_double(char *buf, size_t n, double x)
{
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, n, "%.*g", digits, x);
        if (strtod(buf, NULL) == x)
            return;
    }
}

/* ==== reading the manifest (jansson) ============================================= */

/* The member `key` of an object if it has the type wanted (JSON_REAL: any
 * number), else NULL. */
static const json_t *member(const json_t *obj, const char *key, json_type type)
{
    const json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v)
        return NULL;
    if (type == JSON_REAL)
        return json_is_number(v) ? v : NULL;
    return json_typeof(v) == type ? v : NULL;
}

/* ==== the deterministic input generator ========================================= */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [0, 1), exactly a multiple of 2^-53. */
static double gen_uniform(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * 0x1p-53;
}

/* Mean 0, variance 1, bell-shaped on [-2 sqrt 3, 2 sqrt 3] (Irwin-Hall of
 * four uniforms): no libm function but the correctly rounded sqrt. */
static double gen_normal(uint64_t *state)
{
    double s = gen_uniform(state) + gen_uniform(state) + gen_uniform(state) + gen_uniform(state);
    return (s - 2.0) * sqrt(3.0);
}

static uint64_t fnv1a64(const char *s)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
    return h;
}

/* n float32 values: scale * normal, or gate values 1/16 + 7/8 u24 with
 * u24 = (x >> 40) 2^-24, in [1/16, 15/16): exact in double, so no
 * contraction into a fused multiply-add can change them. */
static void gen_fill(uint64_t *state, float *x, int64_t n, double scale, int gate)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = gate ? (float)(0.0625 + 0.875 * ((double)(splitmix64(state) >> 40) * 0x1p-24))
                    : (float)(scale * gen_normal(state));
}

/* ==== the cases ================================================================= */

static const golden_case golden_cases[] = {
    {"default", "STILL's defaults: saliency routing, C=64, k=4, L=2, w=C, hedgehog NP-Map "
     "(identity W)", 1, 2, 2, 256, 16, 16, "", P_NONE, 0},
    {"ragged_n", "N=203 not a multiple of C=32 (the last chunk is partial, never split), B=2",
     2, 2, 2, 203, 16, 16, "--chunk 32 --topk 3", P_NONE, 0},
    {"window_omega", "window routing (LoLCATs) w=48, omega=sigmoid(window.w) per head",
     1, 2, 2, 200, 16, 16, "--routing window --window 48", P_WINDOW, 0},
    {"routing_all", "routing all with eps_den 0: equals the teacher (SPEC I1)",
     1, 2, 2, 160, 16, 16, "--chunk 32 --routing all --eps-den 0", P_NONE, 0},
    {"routing_none", "routing none: exact over the last L chunks, linear before",
     1, 2, 2, 160, 16, 16, "--chunk 32 --routing none", P_NONE, 0},
    {"local0", "L=0: the current chunk is linear too", 1, 2, 2, 200, 16, 16,
     "--chunk 32 --topk 4 --local 0", P_NONE, 0},
    {"local3", "L=3 recent exact chunks", 1, 2, 2, 300, 16, 16, "--chunk 32 --topk 4 --local 3",
     P_NONE, 0},
    {"cap", "a cap of 10 on the selected cache: evictions fold into the linear state",
     1, 2, 2, 300, 16, 16, "--chunk 32 --topk 4 --cap 10", P_NONE, 0},
    {"gqa_per_q", "grouped-query attention Hq=4, Hk=2, one selection per query head, dv != d",
     1, 4, 2, 240, 16, 12, "--chunk 32 --topk 4", P_NONE, 0},
    {"gqa_per_kv", "grouped-query attention Hq=4, Hk=2, one selection per kv head, B=2",
     2, 4, 2, 240, 16, 12, "--chunk 32 --topk 4 --select-per-kv", P_NONE, 0},
    {"npmap_params", "non-identity NP-Maps f=12 with bias and Householder, separate fk, "
     "scale 0.3", 1, 2, 2, 256, 16, 16, "--chunk 32 --topk 4 --scale 0.3", P_FULL, 12},
    {"act_softmax", "feature map act softmax", 1, 2, 2, 200, 16, 16,
     "--chunk 32 --act softmax", P_NONE, 0},
    {"act_elu1", "feature map act elu1 without the NP rescale", 1, 2, 2, 200, 16, 16,
     "--chunk 32 --act elu1 --no-npmap", P_NONE, 0},
    {"act_relu", "feature map act relu, W and bias (fk tied)", 1, 2, 2, 200, 16, 16,
     "--chunk 32 --act relu", P_BIAS, 16},
    {"sinks_drop", "routing sinks (SPEC §13): 4 sinks + a window of 48, the rest dropped "
     "(SPEC §12)", 1, 2, 2, 200, 16, 16, "--routing sinks --sinks 4 --window 48 --rest drop",
     P_NONE, 0},
    {"terraced", "routing terraced (SPEC §14, LoLCATs' block window) w=32, "
     "omega=sigmoid(window.w) per head", 1, 2, 2, 200, 16, 16, "--routing terraced --window 32",
     P_WINDOW, 0},
    {"authors_compat", "the authors' prefill (SPEC App. A, --compat authors): their saliency "
     "and phantom sink, C=w=64, Householder maps", 1, 2, 2, 300, 16, 16, "--compat authors",
     P_AUTHORS, 16},
};
#define GOLDEN_NCASES ((int)(sizeof golden_cases / sizeof *golden_cases))

/* ==== command lines ============================================================== */

#define ARGV_MAX 96

typedef struct argvec {
    int argc;
    char *argv[ARGV_MAX + 1];
    char store[4096];
    size_t used;
} argvec;

static int argvec_push(argvec *a, const char *s)
{
    size_t n = strlen(s) + 1;
    if (a->argc >= ARGV_MAX || n > sizeof a->store - a->used)
        return -1;
    a->argv[a->argc] = memcpy(a->store + a->used, s, n);
    a->used += n;
    a->argv[++a->argc] = NULL;
    return 0;
}

/* Splits on spaces. */
static int argvec_split(argvec *a, const char *s)
{
    char word[256];
    while (*s) {
        while (*s == ' ')
            s++;
        size_t n = strcspn(s, " ");
        if (n == 0)
            break;
        if (n >= sizeof word)
            return -1;
        memcpy(word, s, n);
        word[n] = '\0';
        if (argvec_push(a, word))
            return -1;
        s += n;
    }
    return 0;
}

static void argvec_join(const argvec *a, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < a->argc && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? " " : "", a->argv[i]);
}

static const char *const routing_word[] = {"saliency", "window", "all", "none", "sinks",
                                           "terraced"};
static const char *const act_word[] = {"hedgehog", "softmax", "elu1", "relu"};

/* The explicit command lines of a case: every configuration field spelled
 * out, so that a manifest does not depend on the defaults of the libstill
 * that reads it.  cfg holds the case's flags; r its resolution (window,
 * scale). */
static int build_commands(const golden_case *c, const golden_real *x, const still_config *cfg,
                          const still__resolved *r, argvec *run, argvec *teacher)
{
    char num[40], buf[64];
    int rc = 0;
    memset(run, 0, sizeof *run);
    memset(teacher, 0, sizeof *teacher);
    rc |= argvec_split(run, "still run --q q.npy --k k.npy --v v.npy --gate gate.npy");
    if (x && x->layout == STILL_LAYOUT_BNHD)
        rc |= argvec_split(run, "--layout bnhd");
    if (c->params != P_NONE)
        rc |= argvec_split(run, "--params params.safetensors");
#define OPT_INT(name, value)                                                   \
    do {                                                                       \
        snprintf(buf, sizeof buf, "%s %lld", name, (long long)(value));        \
        rc |= argvec_split(run, buf);                                          \
    } while (0)
    OPT_INT("--chunk", cfg->chunk);
    OPT_INT("--topk", cfg->topk);
    OPT_INT("--window", r->w);
    OPT_INT("--local", cfg->local);
    OPT_INT("--cap", cfg->max_sel);
#define OPT_SINKS(value) OPT_INT("--sinks", value)
    snprintf(buf, sizeof buf, "--routing %s --act %s", routing_word[cfg->routing],
             act_word[cfg->act]);
    rc |= argvec_split(run, buf);
    if (cfg->routing == STILL_ROUTING_SINKS)
        OPT_SINKS(cfg->sinks);
    if (cfg->rest == STILL_REST_DROP) /* SPEC §12 */
        rc |= argvec_split(run, "--rest drop");
    if (!cfg->npmap)
        rc |= argvec_push(run, "--no-npmap");
    if (cfg->select_per_kv)
        rc |= argvec_push(run, "--select-per-kv");
    rc |= argvec_split(run, cfg->saliency == STILL_SALIENCY_AUTHORS ? "--saliency authors"
                                                                     : "--saliency spec");
    if (cfg->phantom_sink)
        rc |= argvec_push(run, "--phantom-sink");
#undef OPT_SINKS
#undef OPT_INT
    format_double(num, sizeof num, r->scale);
    snprintf(buf, sizeof buf, "--scale %s", num);
    rc |= argvec_split(run, buf);
    format_double(num, sizeof num, cfg->eps_den);
    snprintf(buf, sizeof buf, "--eps-den %s", num);
    rc |= argvec_split(run, buf);
    rc |= argvec_split(run, "--path ref --dtype f8 --out o.npy --scores-out sigma.npy "
                            "--select-out sel.npy");

    rc |= argvec_split(teacher, "still teacher --q q.npy --k k.npy --v v.npy");
    if (x && x->layout == STILL_LAYOUT_BNHD)
        rc |= argvec_split(teacher, "--layout bnhd");
    format_double(num, sizeof num, r->scale);
    snprintf(buf, sizeof buf, "--scale %s", num);
    rc |= argvec_split(teacher, buf);
    rc |= argvec_split(teacher, "--path ref --dtype f8 --out o_teacher.npy");
    return rc ? -1 : 0;
}

/* The real suite's commands, from the run's: `still grad` (its inputs and
 * configuration, the stored selection when it routes by saliency, dO and
 * grads.safetensors) and one `still decode --prefill n` (no outputs but
 * o) per split point. */
static int build_real_commands(const argvec *run, int saliency, argvec *grad, argvec *decode,
                               const int64_t *split, int nsplit)
{
    char buf[64];
    int rc = 0;
    memset(grad, 0, sizeof *grad);
    rc |= argvec_split(grad, "still grad");
    for (int k = 0; k < nsplit; k++) {
        memset(&decode[k], 0, sizeof decode[k]);
        rc |= argvec_split(&decode[k], "still decode");
    }
    for (int i = 2; i < run->argc; i++) {
        const char *w = run->argv[i];
        if (!strcmp(w, "--out") || !strcmp(w, "--scores-out") || !strcmp(w, "--select-out") ||
            !strcmp(w, "--dtype")) {
            i++;
            continue;
        }
        rc |= argvec_push(grad, w);
        for (int k = 0; k < nsplit; k++)
            rc |= argvec_push(&decode[k], w);
    }
    if (saliency)
        rc |= argvec_split(grad, "--select-in sel.npy");
    rc |= argvec_split(grad, "--dout dO.npy --grads-out grads.safetensors");
    for (int k = 0; k < nsplit; k++) {
        snprintf(buf, sizeof buf, "--dtype f8 --prefill %lld --out o_decode.npy",
                 (long long)split[k]);
        rc |= argvec_split(&decode[k], buf);
    }
    return rc ? -1 : 0;
}

/* ==== one computation, from a command line ======================================== */

/* The outputs of one case recomputed; arrays in double. */
typedef struct computed {
    tool_attn_opts opts;
    tool_attn_inputs in;
    double *o;          /* [B,Hq,N,dv] in the inputs' layout; run and teacher */
    double *sigma;      /* [B,Hq,N], run only */
    uint8_t *sel;       /* [B,Hq,N], run only */
    tool_grad_set grads; /* grad only: the VJP of --dout */
    double max_abs_v;
    char paths[11][GOLDEN_PATH_MAX];
} computed;

static void computed_free(computed *c)
{
    free(c->o);
    free(c->sigma);
    free(c->sel);
    tool_grad_set_free(&c->grads);
    tool_attn_free(&c->in);
    c->o = c->sigma = NULL;
    c->sel = NULL;
}

static int join_path(char *buf, size_t len, const char *dir, const char *name)
{
    int n = snprintf(buf, len, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Parses argv ("still", "run"|"teacher"|"grad", options...) with the
 * parser of still run (grad: and its --dout, --grads-out), reads the files
 * it names from dir, and computes on `path`: the forward, the teacher or
 * the VJP of dO (SPEC §18).  The output file options are only checked,
 * not written.  `label` names the command in messages. */
static int compute(const char *label, const char *dir, int argc, char **argv, int path,
                   computed *c)
{
    const int teacher = argc >= 2 && !strcmp(argv[1], "teacher");
    const int grad = argc >= 2 && !strcmp(argv[1], "grad");
    const char *dout_name = NULL, *grads_name = NULL;
    void *dout = NULL;
    int rc;

    memset(c, 0, sizeof *c);
    if (argc < 2 || strcmp(argv[0], "still") || (!teacher && !grad && strcmp(argv[1], "run")))
        return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: expected a command line "
                         "\"still run ...\", \"still teacher ...\" or \"still grad ...\"", label);
    tool_attn_defaults(&c->opts);
    for (int i = 2; i < argc; i++) {
        if (grad && (tool_is_option(argv[i], "--dout") || tool_is_option(argv[i], "--grads-out"))) {
            const char *opt = tool_is_option(argv[i], "--dout") ? "--dout" : "--grads-out";
            const char *val = tool_option_value(golden_cmd, argc, argv, &i, opt);
            if (!val)
                return TOOL_EXIT_INPUT;
            *(!strcmp(opt, "--dout") ? &dout_name : &grads_name) = val;
            continue;
        }
        rc = tool_attn_option(golden_cmd, &c->opts, argc, argv, &i);
        if (rc < 0)
            return TOOL_EXIT_INPUT;
        if (rc == 0)
            return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: unknown option '%s'", label,
                             argv[i]);
    }
    if (c->opts.decode)
        return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: --mode decode: a golden case is a "
                         "prefill", label);
    if (grad && (!dout_name || !grads_name || c->opts.out))
        return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: expected still grad with --dout and "
                         "--grads-out (and no --out)", label);
    const char **files[] = {&c->opts.q, &c->opts.k, &c->opts.v, &c->opts.gate, &c->opts.params,
                            &c->opts.out, &c->opts.scores_out, &c->opts.select_out,
                            &c->opts.select_in, &dout_name, &grads_name};
    for (int i = 0; i < 11; i++) {
        if (!*files[i])
            continue;
        if (strchr(*files[i], '/') || !strcmp(*files[i], "..") ||
            join_path(c->paths[i], sizeof c->paths[i], dir, *files[i]))
            return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: file '%s': expected a plain file "
                             "name in the case's directory", label, *files[i]);
        *files[i] = c->paths[i];
    }
    c->opts.path = path;
    c->opts.dtype = 0;
    if (grad)
        c->opts.out = grads_name; /* checked as present by tool_attn_check, not written */
    if ((rc = tool_attn_check(golden_cmd, &c->opts)) ||
        (rc = tool_attn_load(golden_cmd, &c->opts, !teacher, &c->in)))
        return rc;
    if (grad) {
        c->opts.out = NULL;
        if ((rc = tool_load_like_o(golden_cmd, dout_name, "dO", &c->in, &dout))) {
            tool_attn_free(&c->in);
            return rc;
        }
    }

    const still_shape *s = &c->in.shape;
    const size_t rows = (size_t)(s->batch * s->heads_q * s->seq_len);
    const size_t n_out = rows * (size_t)s->dim_v;
    const size_t n_v = (size_t)(s->batch * s->heads_kv * s->seq_len * s->dim_v);
    const size_t es = c->in.dtype == STILL_F64 ? sizeof(double) : sizeof(float);
    void *out = malloc(n_out * es);
    c->o = malloc(n_out * sizeof *c->o);
    if (!teacher) {
        c->sigma = malloc(rows * sizeof *c->sigma);
        c->sel = malloc(rows);
    }
    const still_params *params = c->opts.params ? &c->in.params : NULL;
    if (!out || !c->o || (!teacher && (!c->sigma || !c->sel)) ||
        (grad && tool_grad_set_alloc(&c->in, params, &c->grads))) {
        free(out);
        free(dout);
        computed_free(c);
        return tool_fail(TOOL_EXIT_LIBRARY, golden_cmd, "%s: out of memory", label);
    }
    still_tensors t = {c->in.dtype, c->in.q, c->in.k, c->in.v, c->in.gate, out, c->sigma, c->sel,
                       c->in.selection_in, NULL, NULL, NULL, NULL, NULL};
    if (grad) /* the parameter set's explicit tensors, as still grad --dout */
        rc = path == TOOL_PATH_FAST
                 ? still_vjp(&c->opts.cfg, s, &c->grads.ps.params, &t, dout, &c->grads.g)
                 : still_ref_vjp(&c->opts.cfg, s, &c->grads.ps.params, &t, dout, &c->grads.g);
    else if (teacher)
        rc = path == TOOL_PATH_FAST ? still_teacher(&c->opts.cfg, s, &t)
                                    : still_ref_teacher(&c->opts.cfg, s, &t);
    else
        rc = path == TOOL_PATH_FAST ? still_forward(&c->opts.cfg, s, params, &t)
                                    : still_ref_forward(&c->opts.cfg, s, params, &t);
    free(dout);
    if (rc) {
        free(out);
        computed_free(c);
        return tool_fail(TOOL_EXIT_LIBRARY, golden_cmd, "%s: the %s path refused: %s (%s)",
                         label, path == TOOL_PATH_FAST ? "fast" : "ref", still_strerror(rc),
                         tool_status_name(rc));
    }
    for (size_t i = 0; i < n_out; i++)
        c->o[i] = still__load(c->in.dtype, out, (int64_t)i);
    free(out);
    c->max_abs_v = 0;
    for (size_t i = 0; i < n_v; i++) {
        double x = fabs(still__load(c->in.dtype, c->in.v, (int64_t)i));
        c->max_abs_v = x > c->max_abs_v ? x : c->max_abs_v;
    }
    return TOOL_EXIT_OK;
}

/* ==== selection margins =========================================================== */

/* The smallest gap between the sigmas on the two sides of any selection
 * decision, relative to 1 + |sigma| (SPEC §10's rule): within each
 * complete chunk, between its k-th and (k+1)-th largest sigma, and, with a
 * cap, between any two selected tokens of a row (evictions compare them).
 * +INFINITY when the case makes no decision. */
static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static double gap_of(double hi, double lo)
{
    if (isinf(hi) && !isinf(lo))
        return INFINITY;
    double m = fabs(hi) > fabs(lo) ? fabs(hi) : fabs(lo);
    return (hi - lo) / (1.0 + m);
}

static double selection_margin(const computed *c)
{
    still__resolved r;
    const still_shape *s = &c->in.shape;
    double best = INFINITY;
    if (still__resolve(&c->opts.cfg, s, c->opts.params ? &c->in.params : NULL, &r) ||
        r.routing != STILL_ROUTING_SALIENCY || r.k <= 0 || r.k >= r.C)
        return best;
    const int64_t N = s->seq_len, full = N / r.C;
    double *tmp = malloc((size_t)(N > r.C ? N : r.C) * sizeof *tmp);
    if (!tmp)
        return -1.0; /* refuse the case rather than claim a margin */
    for (int64_t row = 0; row < s->batch * s->heads_q; row++) {
        const double *sg = c->sigma + row * N;
        for (int64_t ch = 0; ch < full; ch++) {
            memcpy(tmp, sg + ch * r.C, (size_t)r.C * sizeof *tmp);
            qsort(tmp, (size_t)r.C, sizeof *tmp, cmp_desc);
            double g = gap_of(tmp[r.k - 1], tmp[r.k]);
            best = g < best ? g : best;
        }
        if (r.max_sel > 0) {
            int64_t n = 0;
            for (int64_t j = 0; j < N; j++)
                if (c->sel[row * N + j])
                    tmp[n++] = sg[j];
            qsort(tmp, (size_t)n, sizeof *tmp, cmp_desc);
            for (int64_t j = 0; j + 1 < n; j++) {
                double g = gap_of(tmp[j], tmp[j + 1]);
                best = g < best ? g : best;
            }
        }
    }
    free(tmp);
    return best;
}

/* ==== writing a set ================================================================ */

typedef struct file_entry {
    char name[32];
    const char *role;
    int dtype;          /* STILL__DT_* */
    int ndim;
    int64_t shape[4];
    const char *tensors; /* safetensors: the names, for the manifest */
    char sha[65];
    uint64_t size;
} file_entry;

typedef struct case_record {
    argvec run, teacher;
    argvec grad, decode[3]; /* the real suite */
    int64_t split[3];
    int nsplit;
    int ngrads;             /* tensors of grads.safetensors, with max|g| */
    const char *grad_names[TOOL_GRAD_TENSORS];
    double grad_max[TOOL_GRAD_TENSORS];
    file_entry files[GOLDEN_MAX_FILES];
    int nfiles;
    still_config cfg;
    int64_t w, f, m;   /* resolved window, rows of W, feature dimension */
    double scale;      /* resolved logit scale */
    double max_abs_v, margin;
    int attempt;
} case_record;

static void set_entry(file_entry *e, const char *name, const char *role, int dtype, int ndim,
                      int64_t a, int64_t b, int64_t c, int64_t d)
{
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->role = role;
    e->dtype = dtype;
    e->ndim = ndim;
    e->shape[0] = a;
    e->shape[1] = b;
    e->shape[2] = c;
    e->shape[3] = d;
}

/* An array [B,H,N,D] of the case in layout (D = 0: [B,H,N], any layout). */
static void set_array_entry(file_entry *e, const char *name, const char *role, int dtype,
                            int layout, int64_t B, int64_t H, int64_t N, int64_t D)
{
    if (D > 0 && layout == STILL_LAYOUT_BNHD)
        set_entry(e, name, role, dtype, 4, B, N, H, D);
    else
        set_entry(e, name, role, dtype, D > 0 ? 4 : 3, B, H, N, D);
}

static int write_npy(const char *dir, const file_entry *e, const void *data)
{
    char path[GOLDEN_PATH_MAX], err[STILL__ERRLEN];
    if (join_path(path, sizeof path, dir, e->name))
        return tool_fail(TOOL_EXIT_OUTPUT, golden_cmd, "%s: path too long", dir);
    int fd = tool_out_tree_open(golden_cmd, path);
    if (fd < 0)
        return TOOL_EXIT_OUTPUT;
    int rc = still__npy_write_fd(fd, path, e->dtype, e->ndim, e->shape, data, err, sizeof err);
    return tool_out_tree_close(golden_cmd, path, fd, rc, err);
}

/* One tensor of a parameter file: [Hq,rows,cols], [Hq,rows] (cols 0) or
 * [Hq] (rows 0), values scale * normal. */
typedef struct param_tensor {
    const char *name;
    int64_t rows, cols;
    double scale;
} param_tensor;

/* The tensors of each kind of parameter file, in file and draw order. */
static int param_tensors(const golden_case *gc, param_tensor *want, const char **summary)
{
    const int64_t d = gc->d, f = gc->f;
    const double ws = 1.0 / sqrt((double)d);
    const param_tensor fqW = {"fq.W", f, d, ws}, fqb = {"fq.b", f, 0, 0.1},
                       fqu = {"fq.u", d, 0, 1.0};
    const param_tensor fkW = {"fk.W", f, d, ws}, fkb = {"fk.b", f, 0, 0.1},
                       fku = {"fk.u", d, 0, 1.0};
    int n = 0;
    switch (gc->params) {
    case P_FULL:
        want[n++] = fqW, want[n++] = fqb, want[n++] = fqu;
        want[n++] = fkW, want[n++] = fkb, want[n++] = fku;
        *summary = "fq.W [Hq,f,d], fq.b [Hq,f], fq.u [Hq,d], fk.W, fk.b, fk.u";
        break;
    case P_AUTHORS:
        want[n++] = fqW, want[n++] = fqu, want[n++] = fkW, want[n++] = fku;
        *summary = "fq.W [Hq,f,d], fq.u [Hq,d], fk.W, fk.u";
        break;
    case P_BIAS:
        want[n++] = fqW, want[n++] = fqb;
        *summary = "fq.W [Hq,f,d], fq.b [Hq,f] (fk tied)";
        break;
    default: /* P_WINDOW */
        want[n++] = (param_tensor){"window.w", 0, 0, 1.0};
        *summary = "window.w [Hq]";
        break;
    }
    return n;
}

/* The parameter file of a case (SPEC §11), drawn after the arrays. */
static int write_params(const char *dir, const golden_case *gc, uint64_t *state, file_entry *e)
{
    param_tensor want[7];
    const char *names[7];
    still__array arr[7];
    float *blocks[7] = {NULL};
    char path[GOLDEN_PATH_MAX], err[STILL__ERRLEN];
    int rc = TOOL_EXIT_OK;
    const int nw = param_tensors(gc, want, &e->tensors);

    for (int n = 0; n < nw; n++) {
        still__array *a = &arr[n];
        memset(a, 0, sizeof *a);
        a->dtype = STILL__DT_F4;
        a->ndim = want[n].rows == 0 ? 1 : want[n].cols ? 3 : 2;
        a->shape[0] = gc->Hq;
        a->shape[1] = want[n].rows;
        a->shape[2] = want[n].cols;
        a->count = gc->Hq * (want[n].rows ? want[n].rows : 1) * (want[n].cols ? want[n].cols : 1);
        if (!(blocks[n] = malloc((size_t)a->count * sizeof(float)))) {
            rc = tool_fail(TOOL_EXIT_LIBRARY, golden_cmd, "out of memory for the parameters");
            goto done;
        }
        gen_fill(state, blocks[n], a->count, want[n].scale, 0);
        a->data = blocks[n];
        names[n] = want[n].name;
    }
    int fd = -1;
    if (join_path(path, sizeof path, dir, e->name))
        rc = tool_fail(TOOL_EXIT_OUTPUT, golden_cmd, "%s: path too long", dir);
    else if ((fd = tool_out_tree_open(golden_cmd, path)) < 0)
        rc = TOOL_EXIT_OUTPUT;
    else
        rc = tool_out_tree_close(golden_cmd, path, fd,
                                 still__st_write_fd(fd, path, nw, names, arr, err, sizeof err),
                                 err);
done:
    for (int i = 0; i < nw; i++)
        free(blocks[i]);
    return rc;
}

/* Draws x[count] of an array [B,H,N,D]: the stream's values (or tiny-lm's
 * activations), rounded as the real case says, in its layout. */
static int draw_array(const golden_case *gc, const golden_real *x, int which, uint64_t *state,
                      const int64_t *shape, float *v)
{
    const int64_t count = shape[0] * shape[1] * shape[2] * shape[3];
    int rc = TOOL_EXIT_OK;
    if (x && x->layer && which < 3) /* real activations, not drawn */
        rc = golden_tinylm_load(golden_cmd, x->layer, which, shape[1], shape[2], shape[3], v);
    else /* q and k of std 1.5: logits of std about 2.25 at scale 1/sqrt(d) */
        gen_fill(state, v, count, which < 2 ? 1.5 : 1.0, which == 3);
    if (rc || !x)
        return rc;
    golden_round(v, count, x->round);
    if (x->layout == STILL_LAYOUT_BNHD) {
        float *t = malloc((size_t)count * sizeof *t);
        if (!t)
            return tool_fail(TOOL_EXIT_LIBRARY, golden_cmd, "out of memory for the inputs");
        golden_to_bnhd(v, shape[0], shape[1], shape[2], shape[3], t);
        memcpy(v, t, (size_t)count * sizeof *t);
        free(t);
    }
    (void)gc;
    return TOOL_EXIT_OK;
}

/* Draws and writes the inputs of a case. */
static int write_inputs(const char *dir, const golden_case *gc, const golden_real *x,
                        uint64_t seed, int attempt, case_record *rec)
{
    const char *stream = x && x->stream ? x->stream : gc->name;
    uint64_t state = seed ^ fnv1a64(stream) ^ ((uint64_t)attempt * UINT64_C(0x9E3779B97F4A7C15));
    const int64_t B = gc->B, N = gc->N;
    const int layout = x ? x->layout : STILL_LAYOUT_BHND;
    const int64_t H[4] = {gc->Hq, gc->Hk, gc->Hk, gc->Hq}, D[4] = {gc->d, gc->d, gc->dv, gc->dv};
    static const char *const names[4] = {"q.npy", "k.npy", "v.npy", "gate.npy"};
    static const char *const roles[4] = {"input q", "input k", "input v", "input gate"};
    file_entry *e = rec->files;
    int rc = TOOL_EXIT_OK;
    rec->nfiles = 4;
    for (int i = 0; i < 4 && !rc; i++) {
        const int64_t shape[4] = {B, H[i], N, D[i]};
        set_array_entry(&e[i], names[i], roles[i], STILL__DT_F4, layout, B, H[i], N, D[i]);
        float *v = malloc((size_t)(B * H[i] * N * D[i]) * sizeof *v);
        if (!v)
            return tool_fail(TOOL_EXIT_LIBRARY, golden_cmd, "out of memory for the inputs");
        rc = draw_array(gc, x, i, &state, shape, v);
        if (!rc)
            rc = write_npy(dir, &e[i], v);
        free(v);
    }
    if (!rc && gc->params != P_NONE) {
        set_entry(&e[4], "params.safetensors", "parameters", STILL__DT_F4, 0, 0, 0, 0, 0);
        rc = write_params(dir, gc, &state, &e[4]);
        rec->nfiles++;
    }
    return rc;
}

/* The configuration named by a case's flags, resolved for its shape. */
static int case_config(const golden_case *gc, still_config *cfg, still__resolved *r)
{
    tool_attn_opts o;
    argvec a;
    memset(&a, 0, sizeof a);
    tool_attn_defaults(&o);
    if (argvec_split(&a, gc->flags))
        return -1;
    for (int i = 0; i < a.argc; i++)
        if (tool_attn_option(golden_cmd, &o, a.argc, a.argv, &i) != 1)
            return -1;
    still_shape s = {gc->B, gc->Hq, gc->Hk, gc->N, gc->d, gc->dv, STILL_LAYOUT_BHND};
    *cfg = o.cfg;
    return still__resolve(cfg, &s, NULL, r) ? -1 : 0;
}

/* The real suite's dO.npy (its own stream, normal values, rounded as the
 * inputs) and grads.safetensors: the VJP computed from the case's grad
 * command line, the tensors named as still grad --dout names them. */
static int write_grads(const char *dir, const golden_case *gc, const golden_real *x,
                       uint64_t seed, case_record *rec)
{
    char label[96], path[GOLDEN_PATH_MAX], err[STILL__ERRLEN];
    const int64_t shape[4] = {gc->B, gc->Hq, gc->N, gc->dv};
    const int64_t count = gc->B * gc->Hq * gc->N * gc->dv;
    uint64_t state = seed ^ fnv1a64(x->stream ? x->stream : gc->name) ^ fnv1a64("dO");
    file_entry *e = rec->files + rec->nfiles;
    computed c;
    int rc;

    if (rec->nfiles + 2 > GOLDEN_MAX_FILES)
        return tool_fail(TOOL_EXIT_LIBRARY, golden_cmd, "case %s: too many files", gc->name);
    float *v = malloc((size_t)count * sizeof *v);
    if (!v)
        return tool_fail(TOOL_EXIT_LIBRARY, golden_cmd, "out of memory for dO");
    set_array_entry(&e[0], "dO.npy", "input dO: the upstream gradient dL/do of the VJP",
                    STILL__DT_F4, x->layout, gc->B, gc->Hq, gc->N, gc->dv);
    rc = draw_array(gc, x, 4, &state, shape, v);
    if (!rc)
        rc = write_npy(dir, &e[0], v);
    free(v);
    snprintf(label, sizeof label, "case %s", gc->name);
    if (rc || (rc = compute(label, dir, rec->grad.argc, rec->grad.argv, TOOL_PATH_REF, &c)))
        return rc;
    const char *names[TOOL_GRAD_TENSORS];
    still__array arrays[TOOL_GRAD_TENSORS];
    const int n = tool_grad_set_named(&c.in, &c.grads, names, arrays);
    rec->ngrads = n;
    for (int i = 0; i < n; i++) { /* the per-tensor bound of SPEC §10 */
        double m = 0;
        for (int64_t k = 0; k < arrays[i].count; k++) {
            double g = fabs(((const double *)arrays[i].data)[k]);
            m = g > m ? g : m;
        }
        rec->grad_names[i] = names[i]; /* static strings */
        rec->grad_max[i] = m;
    }
    set_entry(&e[1], "grads.safetensors", "output: the VJP's gradients of L = sum(dO * o) "
              "(ref path)", STILL__DT_F8, 0, 0, 0, 0, 0);
    e[1].tensors = "the gradients named as their inputs, as still grad --dout writes them";
    int fd = -1;
    if (join_path(path, sizeof path, dir, e[1].name))
        rc = tool_fail(TOOL_EXIT_OUTPUT, golden_cmd, "%s: path too long", dir);
    else if ((fd = tool_out_tree_open(golden_cmd, path)) < 0)
        rc = TOOL_EXIT_OUTPUT;
    else
        rc = tool_out_tree_close(golden_cmd, path, fd,
                                 still__st_write_fd(fd, path, n, names, arrays, err, sizeof err),
                                 err);
    computed_free(&c);
    rec->nfiles += 2;
    return rc;
}

/* Generates one case into dir (which exists); x: a real case's extras. */
static int generate_case(const char *dir, const golden_case *gc, const golden_real *x,
                         uint64_t seed, case_record *rec)
{
    still__resolved r;
    computed run, teach;
    char label[96];
    int rc;

    memset(rec, 0, sizeof *rec);
    if (case_config(gc, &rec->cfg, &r) || build_commands(gc, x, &rec->cfg, &r, &rec->run,
                                                          &rec->teacher))
        return tool_fail(TOOL_EXIT_LIBRARY, golden_cmd, "case %s: its configuration is "
                         "refused (a bug in the case table)", gc->name);
    if (x) {
        rec->nsplit = golden_split_points(gc->N, rec->cfg.chunk, rec->split);
        if (build_real_commands(&rec->run, rec->cfg.routing == STILL_ROUTING_SALIENCY,
                                &rec->grad, rec->decode, rec->split, rec->nsplit))
            return tool_fail(TOOL_EXIT_LIBRARY, golden_cmd, "case %s: command line too long",
                             gc->name);
    }
    snprintf(label, sizeof label, "case %s", gc->name);
    /* redraw until every selection decision has a clear margin (SPEC §10);
       the real suite keeps its values (tiny-lm's are what they are) and
       is checked by the near-tie rule where the margin is smaller */
    for (rec->attempt = 0;; rec->attempt++) {
        if ((rc = write_inputs(dir, gc, x, seed, rec->attempt, rec)) ||
            (rc = compute(label, dir, rec->run.argc, rec->run.argv, TOOL_PATH_REF, &run)))
            return rc;
        rec->margin = selection_margin(&run);
        if (rec->margin >= 1e-4 || (x && rec->margin >= 0))
            break;
        computed_free(&run);
        if (rec->attempt == 15 || x)
            return tool_fail(TOOL_EXIT_LIBRARY, golden_cmd, "case %s: no draw of 16 has a "
                             "selection margin of 1e-4", gc->name);
    }
    const still_shape *s = &run.in.shape;
    const int64_t B = s->batch, H = s->heads_q, N = s->seq_len;
    const int layout = s->layout;
    file_entry *o = rec->files + rec->nfiles; /* the outputs follow the inputs */
    const int n = rec->nfiles + 4;
    set_array_entry(&o[0], "o.npy", "output o (ref path)", STILL__DT_F8, layout, B, H, N,
                    s->dim_v);
    set_entry(&o[1], "sigma.npy", "output sigma (ref path)", STILL__DT_F8, 3, B, H, N, 0);
    set_entry(&o[2], "sel.npy", "output selection (ref path)", STILL__DT_U1, 3, B, H, N, 0);
    set_array_entry(&o[3], "o_teacher.npy", "output of the teacher (ref path)", STILL__DT_F8,
                    layout, B, H, N, s->dim_v);
    rec->max_abs_v = run.max_abs_v;
    still__resolved rp; /* with the parameters: f and m */
    if (still__resolve(&run.opts.cfg, s, run.opts.params ? &run.in.params : NULL, &rp))
        memset(&rp, 0, sizeof rp);
    rec->w = rp.w;
    rec->f = rp.f_q;
    rec->m = rp.m;
    rec->scale = rp.scale;
    rc = write_npy(dir, &o[0], run.o);
    if (!rc)
        rc = write_npy(dir, &o[1], run.sigma);
    if (!rc)
        rc = write_npy(dir, &o[2], run.sel);
    computed_free(&run);
    if (!rc && !(rc = compute(label, dir, rec->teacher.argc, rec->teacher.argv, TOOL_PATH_REF,
                              &teach))) {
        rc = write_npy(dir, &o[3], teach.o);
        computed_free(&teach);
    }
    rec->nfiles = n;
    if (!rc && x)
        rc = write_grads(dir, gc, x, seed, rec);
    for (int i = 0; i < rec->nfiles && !rc; i++) {
        char path[GOLDEN_PATH_MAX];
        file_entry *e = &rec->files[i];
        if (join_path(path, sizeof path, dir, e->name) || sha256_file(path, e->sha, &e->size))
            rc = tool_fail(TOOL_EXIT_OUTPUT, golden_cmd, "%s/%s: cannot read back", dir, e->name);
    }
    return rc;
}

/* Tolerances written to the manifest: SPEC §10 for float32
 * implementations, and a float64 one (for --verify --path ref: a rebuilt
 * libstill, or a double port). */
#define TOL_F32_O 1e-5      /* times max|v|, rtol 0 */
#define TOL_F64_O 1e-10     /* times max|v|, rtol 0 */
#define TOL_F32_SIGMA 1e-4  /* |d sigma| <= 1e-4 (1 + |sigma|) */
#define TOL_F64_SIGMA 1e-10
#define TOL_F32_GRAD 1e-5   /* times max|g_ref| per tensor, rtol 0 (SPEC §10) */
#define TOL_F64_GRAD 1e-10

/* A real of the manifest, null when not finite. */
static json_t *manifest_real(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *manifest_tolerance(double atol, double rtol)
{
    return json_pack("{s:o, s:o}", "atol", manifest_real(atol), "rtol", manifest_real(rtol));
}

/* 1e-5 max|v| and the like, rounded down to 3 significant digits: a
 * readable bound that is never looser than the contract. */
static double round_down3(double x)
{
    char buf[40];
    if (!(x > 0) || !isfinite(x))
        return x;
    double unit = pow(10.0, floor(log10(x)) - 2);
    double m = floor(x / unit);
    for (; m > 0; m--) {
        snprintf(buf, sizeof buf, "%.3g", m * unit);
        if (strtod(buf, NULL) <= x)
            return strtod(buf, NULL);
    }
    return x;
}

static json_t *strings_array(const argvec *a)
{
    json_t *arr = json_array();
    for (int i = 0; i < a->argc && arr; i++)
        if (json_array_append_new(arr, json_string(a->argv[i]))) {
            json_decref(arr);
            arr = NULL;
        }
    return arr;
}

/* {"q.npy": {"role": ..., "dtype": ..., "shape": [..], "bytes": ..,
 * "sha256": ..}, ...}; a safetensors file lists its tensors instead. */
static json_t *manifest_files(const case_record *rec)
{
    json_t *files = json_object();
    for (int i = 0; i < rec->nfiles && files; i++) {
        const file_entry *e = &rec->files[i];
        json_t *entry;
        if (e->ndim > 0) {
            json_t *shape = json_array();
            for (int k = 0; k < e->ndim && shape; k++)
                if (json_array_append_new(shape, json_integer((json_int_t)e->shape[k]))) {
                    json_decref(shape);
                    shape = NULL;
                }
            entry = json_pack("{s:s, s:s, s:o, s:I, s:s}", "role", e->role, "dtype",
                              still__dtype_name(e->dtype), "shape", shape, "bytes",
                              (json_int_t)e->size, "sha256", e->sha);
        } else {
            entry = json_pack("{s:s, s:s, s:s, s:I, s:s}", "role", e->role, "dtype", "F32",
                              "tensors", e->tensors, "bytes", (json_int_t)e->size, "sha256",
                              e->sha);
        }
        if (json_object_set_new(files, e->name, entry)) {
            json_decref(files);
            files = NULL;
        }
    }
    return files;
}

/* {"q": {"atol": 1e-5 max|g_q|, "rtol": 0}, ...}: SPEC §10's gradient
 * bound per tensor, times `factor` (1e-5 float32, 1e-10 float64). */
static json_t *manifest_grads_tolerance(const case_record *rec, double factor)
{
    json_t *t = json_object();
    for (int i = 0; i < rec->ngrads && t; i++)
        if (json_object_set_new(t, rec->grad_names[i],
                                manifest_tolerance(round_down3(factor * rec->grad_max[i]), 0))) {
            json_decref(t);
            t = NULL;
        }
    return t;
}

/* The real suite's members of a case: where its inputs come from, the
 * grad and decode command lines, and the contract checks of a port. */
static int manifest_real_case(json_t *cs, const golden_case *gc, const golden_real *x,
                              const case_record *rec)
{
    static const char *const rounded[] = {"float32", "bfloat16", "float16"};
    char text[4096], line[4096];
    int rc = 0;
    if (x->layer)
        snprintf(text, sizeof text, "q, k, v: tiny-lm layer %d activations (float16, the first "
                 "%lld tokens); gate drawn and dO drawn, rounded through float16 (to nearest "
                 "even); stored as <f4", x->layer, (long long)gc->N);
    else
        snprintf(text, sizeof text, "drawn from the stream of '%s', then q, k, v, gate and dO "
                 "rounded through %s (to nearest even) and stored as <f4: the values are "
                 "exactly %s%s", x->stream ? x->stream : gc->name, rounded[x->round],
                 rounded[x->round], x->layout == STILL_LAYOUT_BNHD ? "; arrays in layout BNHD "
                 "[B,N,H,x] (--layout bnhd), sigma and sel [B,Hq,N]" : "");
    rc |= json_object_set_new(cs, "inputs", json_string(text));
    argvec_join(&rec->grad, line, sizeof line);
    rc |= json_object_set_new(cs, "grad_command", json_string(line));
    rc |= json_object_set_new(cs, "grad", strings_array(&rec->grad));
    json_t *dec = json_array();
    for (int k = 0; k < rec->nsplit && dec; k++) {
        argvec_join(&rec->decode[k], line, sizeof line);
        rc |= json_array_append_new(dec, json_pack("{s:I, s:s, s:o}", "prefill",
                                                   (json_int_t)rec->split[k], "command", line,
                                                   "decode", strings_array(&rec->decode[k])));
    }
    rc |= json_object_set_new(cs, "decode", dec);
    rc |= json_object_set_new(cs, "decode_note", json_string(
        "prefill tokens [0, prefill) in one block, then decode the rest one at a time: o_decode "
        "equals o.npy within tolerance.o (SPEC I6)"));
    snprintf(text, sizeof text, "still check YOUR_o.npy o.npy --contract --v v.npy; still check "
             "YOUR_sel.npy sel.npy --contract --scores-a YOUR_sigma.npy --scores-b sigma.npy "
             "--chunk %lld; still check YOUR_grads.safetensors grads.safetensors --contract",
             (long long)rec->cfg.chunk);
    rc |= json_object_set_new(cs, "contract_checks", json_string(text));
    return rc ? -1 : 0;
}

/* One case of the manifest; NULL when out of memory. */
static json_t *manifest_case(const golden_case *gc, const golden_real *x, const case_record *rec)
{
    char command[4096], teacher[4096], check[160], num[40];
    const still_config *c = &rec->cfg;
    const double o32 = round_down3(TOL_F32_O * rec->max_abs_v);
    const double o64 = round_down3(TOL_F64_O * rec->max_abs_v);
    /* SPEC §10: a real case's selection may hold near-ties */
    const char *sel = rec->margin >= 1e-4 ? "exact" : "near-tie";

    argvec_join(&rec->run, command, sizeof command);
    argvec_join(&rec->teacher, teacher, sizeof teacher);
    format_double(num, sizeof num, o32);
    snprintf(check, sizeof check, "still check YOUR_o.npy o.npy --rtol 0 --atol %s", num);
    json_t *shape = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}",
                              "B", (json_int_t)gc->B, "Hq", (json_int_t)gc->Hq,
                              "Hk", (json_int_t)gc->Hk, "N", (json_int_t)gc->N,
                              "d", (json_int_t)gc->d, "dv", (json_int_t)gc->dv,
                              "f", (json_int_t)rec->f, "m", (json_int_t)rec->m, "layout",
                              x && x->layout == STILL_LAYOUT_BNHD ? "BNHD" : "BHND");
    json_t *config = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:b, s:b, s:s, s:b, s:o, s:o, s:b, s:b}",
        "chunk", (json_int_t)c->chunk, "topk", (json_int_t)c->topk, "window", (json_int_t)rec->w,
        "local", (json_int_t)c->local, "max_sel", (json_int_t)c->max_sel,
        "routing", routing_word[c->routing], "act", act_word[c->act], "npmap", c->npmap,
        "select_per_kv", c->select_per_kv,
        "saliency", c->saliency == STILL_SALIENCY_AUTHORS ? "authors" : "spec",
        "phantom_sink", c->phantom_sink, "scale", manifest_real(rec->scale),
        "eps_den", manifest_real(c->eps_den), "gate", 1, "params", gc->params != P_NONE);
    json_t *tolerance = json_pack(
        "{s:{s:o, s:o, s:o, s:s}, s:{s:o, s:o, s:o, s:s}}",
        "float32", "o", manifest_tolerance(o32, 0), "o_teacher", manifest_tolerance(o32, 0),
        "sigma", manifest_tolerance(TOL_F32_SIGMA, TOL_F32_SIGMA), "sel", sel,
        "float64", "o", manifest_tolerance(o64, 0), "o_teacher", manifest_tolerance(o64, 0),
        "sigma", manifest_tolerance(TOL_F64_SIGMA, TOL_F64_SIGMA), "sel", sel);
    if (x && tolerance &&
        (json_object_set_new(json_object_get(tolerance, "float32"), "grads",
                             manifest_grads_tolerance(rec, TOL_F32_GRAD)) ||
         json_object_set_new(json_object_get(tolerance, "float64"), "grads",
                             manifest_grads_tolerance(rec, TOL_F64_GRAD)))) {
        json_decref(tolerance);
        tolerance = NULL;
    }
    /* json_pack takes the references of its "o" values, also when it fails */
    json_t *cs = json_pack("{s:s, s:s, s:o, s:o, s:s, s:o, s:s, s:o, s:s, s:o, s:o, s:i, s:o, s:o}",
                     "name", gc->name, "description", gc->what, "shape", shape,
                     "config", config, "command", command, "run", strings_array(&rec->run),
                     "teacher_command", teacher, "teacher", strings_array(&rec->teacher),
                     "check", check, "max_abs_v", manifest_real(rec->max_abs_v),
                     "selection_margin", manifest_real(rec->margin), "draw", rec->attempt,
                     "tolerance", tolerance, "files", manifest_files(rec));
    if (cs && x && manifest_real_case(cs, gc, x, rec)) {
        json_decref(cs);
        cs = NULL;
    }
    return cs;
}

/* The manifest's head, with an empty "cases" array to fill. */
static json_t *manifest_head(uint64_t seed, int real, int64_t max_n)
{
    return json_pack(
        "{s:s, s:i, s:s, s:I, s:s, s:I, s:s, s:s, s:s, s:[]}", "format", GOLDEN_FORMAT,
        "format_version", GOLDEN_FORMAT_VERSION, "libstill_version", still_version_string(),
        "seed", (json_int_t)seed, "suite", real ? "real" : "small", "max_n", (json_int_t)max_n,
        "generator", "per case: SplitMix64 from seed ^ FNV-1a-64(name) ^ "
        "draw*0x9E3779B97F4A7C15; u = (x >> 11) * 2^-53; normal = (u1+u2+u3+u4-2)*sqrt(3); "
        "q, k = 1.5*normal, v = normal, gate = 1/16+7/8*((x >> 40)*2^-24), "
        "parameters: W = normal/sqrt(d), b = 0.1*normal, u = normal, window.w = normal; drawn in "
        "the order q, k, v, gate, parameters (as listed in the file), row-major, rounded to "
        "float32",
        "reference", "outputs of the ref path of libstill (double), written as <f8; "
        "o_teacher is full causal softmax attention (SPEC 1)",
        "how_to_check", "in each case's directory run your implementation on the inputs "
        "with the case's configuration, then: still check YOUR_o.npy o.npy --rtol 0 --atol "
        "<tolerance.float32.o.atol>; the same for sigma.npy (--atol and --rtol "
        "tolerance.float32.sigma) and o_teacher.npy; sel.npy must be equal (every selection "
        "has a sigma margin >= 1e-4 (1+|sigma|), SPEC 10). The command reproduces o.npy, "
        "sigma.npy and sel.npy with libstill; teacher_command o_teacher.npy",
        "cases");
}

/* What the real suite adds to how_to_check. */
static int manifest_head_real(json_t *man)
{
    json_t *cases = json_incref(json_object_get(man, "cases"));
    int rc = json_object_del(man, "cases") ||
             json_object_set_new(man, "how_to_check_real", json_string(
                 "the real suite also: run your backward on dO.npy and compare every gradient "
                 "of grads.safetensors within tolerance.float32.grads (still check "
                 "YOUR_grads.safetensors grads.safetensors --contract); where tolerance.*.sel is "
                 "near-tie, sel.npy by the near-tie rule (still check --contract --scores-a "
                 "--scores-b) and o with the selection of sel.npy given; each case's decode "
                 "commands prefill n tokens and decode the rest (o within tolerance.o); arrays of "
                 "a case with shape.layout BNHD are [B,N,H,x]")) ||
             json_object_set_new(man, "cases", cases);
    return rc ? -1 : 0;
}

/* ==== the directory of a set ===================================================== */

/* The manifest as text: two-space indentation, keys in the order built. */
static int write_manifest(const char *dir, const char *text)
{
    char path[GOLDEN_PATH_MAX], err[STILL__ERRLEN];
    still__write_part part = {text, strlen(text), 1};
    if (join_path(path, sizeof path, dir, "manifest.json"))
        return tool_fail(TOOL_EXIT_OUTPUT, golden_cmd, "%s: path too long", dir);
    int fd = tool_out_tree_open(golden_cmd, path);
    if (fd < 0)
        return TOOL_EXIT_OUTPUT;
    return tool_out_tree_close(golden_cmd, path, fd,
                               still__write_fd(fd, path, &part, 1, err, sizeof err), err);
}

static int generate_set(const char *out_arg, uint64_t seed, int real, int64_t max_n)
{
    int ncases = GOLDEN_NCASES;
    const golden_real_case *rcases = real ? golden_real_cases(max_n, &ncases) : NULL;
    char out[GOLDEN_PATH_MAX], tmp[GOLDEN_PATH_MAX + 16], dir[GOLDEN_PATH_MAX + 80];
    json_t *man = NULL;
    char *text = NULL;
    uint64_t bytes = 0;
    int files = 0, rc = TOOL_EXIT_OK;
    const double t0 = tool_now();

    size_t n = strlen(out_arg);
    while (n > 1 && out_arg[n - 1] == '/')
        n--;
    if (n == 0 || n + 16 >= sizeof out)
        return tool_fail(TOOL_EXIT_USAGE, golden_cmd, "--out: expected a directory name");
    memcpy(out, out_arg, n);
    out[n] = '\0';
    /* built beside DIR and renamed onto it at the end: all or nothing */
    const char *tmpdir;
    if ((rc = tool_out_add_dir(golden_cmd, "--out", out, &tmpdir)))
        return rc;
    snprintf(tmp, sizeof tmp, "%s", tmpdir);

    if (!(man = manifest_head(seed, real, max_n)) || (real && manifest_head_real(man)))
        rc = tool_fail(TOOL_EXIT_LIBRARY, golden_cmd, "out of memory for the manifest");
    printf("still golden: %s suite, seed %llu, %d cases, libstill %s (ref path)\n",
           real ? "real" : "small", (unsigned long long)seed, ncases, still_version_string());
    for (int i = 0; i < ncases && !rc; i++) {
        const golden_case *gc = real ? &rcases[i].c : &golden_cases[i];
        const golden_real *x = real ? &rcases[i].x : NULL;
        const double tc = tool_now();
        static case_record rec; /* large: not on the stack */
        if (join_path(dir, sizeof dir, tmp, gc->name)) {
            rc = tool_fail(TOOL_EXIT_OUTPUT, golden_cmd, "%s/%s: path too long", tmp, gc->name);
            break;
        }
        tool_progress(i, ncases, "case %s", gc->name);
        if ((rc = tool_out_tree_mkdir(golden_cmd, dir)))
            break;
        if ((rc = generate_case(dir, gc, x, seed, &rec)))
            break;
        tool_progress_clear();
        if (json_array_append_new(json_object_get(man, "cases"), manifest_case(gc, x, &rec))) {
            rc = tool_fail(TOOL_EXIT_LIBRARY, golden_cmd, "out of memory for the manifest");
            break;
        }
        for (int f = 0; f < rec.nfiles; f++)
            bytes += rec.files[f].size;
        files += rec.nfiles;
        char margin[40] = "-";
        if (isfinite(rec.margin))
            snprintf(margin, sizeof margin, "%.2g", rec.margin);
        printf("  %-15s B=%lld Hq=%lld Hk=%lld N=%lld d=%lld dv=%lld  %-8s margin %-7s %s",
               gc->name, (long long)gc->B, (long long)gc->Hq, (long long)gc->Hk,
               (long long)gc->N, (long long)gc->d, (long long)gc->dv,
               routing_word[rec.cfg.routing], margin, gc->what);
        printf(real ? " (%.1f s)\n" : "\n", tool_now() - tc);
    }
    if (!rc) {
        /* JSON_INDENT: one key per line, each case's keys at six spaces */
        char *dumped = json_dumps(man, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (dumped && (text = malloc(strlen(dumped) + 2)))
            snprintf(text, strlen(dumped) + 2, "%s\n", dumped);
        free(dumped);
        if (!text)
            rc = tool_fail(TOOL_EXIT_LIBRARY, golden_cmd, "out of memory for the manifest");
        else
            rc = write_manifest(tmp, text);
    }
    json_decref(man);
    if (!rc)
        rc = tool_out_commit(golden_cmd); /* onto DIR, absent or empty */
    if (rc) { /* main removes the directory being built */
        free(text);
        return rc;
    }
    char sha[65];
    struct sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, strlen(text), (const uint8_t *)text);
    sha256_hex(&c, sha);
    bytes += strlen(text);
    printf("wrote %s: %d cases, %d files + manifest.json, %.2f MB in %.2f s\n"
           "manifest.json sha256 %s\n",
           out, ncases, files, (double)bytes / 1e6, tool_now() - t0, sha);
    free(text);
    return TOOL_EXIT_OK;
}

/* ==== verifying a set ============================================================== */

/* A file of at most `limit` bytes, NUL-terminated. */
static int read_small_file(const char *path, size_t limit, char **out, size_t *len)
{
    char err[STILL__ERRLEN];
    FILE *f;
    size_t size;
    if (still__open_regular(path, &f, &size, err, sizeof err))
        return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s", err);
    if (size > limit) {
        fclose(f);
        return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: %zu bytes, expected at most %zu",
                         path, size, limit);
    }
    char *buf = malloc(size + 1);
    if (!buf || fread(buf, 1, size, f) != size) {
        fclose(f);
        free(buf);
        return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: cannot read", path);
    }
    fclose(f);
    buf[size] = '\0';
    *out = buf;
    *len = size;
    return TOOL_EXIT_OK;
}

/* A name the manifest may use for a case or a file: one path component. */
static int plain_name(const char *s)
{
    return s && *s && *s != '.' && strlen(s) < 64 && !strchr(s, '/') && !strchr(s, '\\');
}

/* Elements past |a - b| <= atol + rtol |b| (as still check), and the
 * largest |a - b|. */
typedef struct cmp_result {
    int64_t fails;
    double max_abs;
} cmp_result;

static cmp_result compare_values(const double *a, const double *b, int64_t n, double atol,
                                 double rtol)
{
    cmp_result r = {0, 0.0};
    for (int64_t i = 0; i < n; i++) {
        double diff = a[i] == b[i] ? 0.0 : fabs(a[i] - b[i]); /* equal infinities: 0 */
        if (isnan(diff) || diff > atol + rtol * fabs(b[i])) {
            r.fails++;
            diff = isnan(diff) ? INFINITY : diff;
        }
        r.max_abs = diff > r.max_abs ? diff : r.max_abs;
    }
    return r;
}

/* The verdicts of one case, printed as one line. */
typedef struct case_report {
    text line;
    int failed;
} case_report;

static void note(case_report *rep, int bad, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void note(case_report *rep, int bad, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    text_printf(&rep->line, "%s%s", rep->line.len ? "; " : "", msg);
    rep->failed |= bad;
}

/* Compares a recomputed array with the stored file `name` of the case. */
static void compare_stored(case_report *rep, const char *dir, const char *name, const double *x,
                           const uint8_t *sel, const tool_attn_inputs *in, int64_t last,
                           const json_t *tol)
{
    char path[GOLDEN_PATH_MAX], err[STILL__ERRLEN], want[160], found[160];
    int64_t shape[STILL__MAX_NDIM];
    still__array a;
    double *stored = NULL;
    const int ndim = tool_attn_out_shape(in, last, shape);

    if (join_path(path, sizeof path, dir, name) || still__npy_read(path, &a, err, sizeof err)) {
        note(rep, 1, "%s unreadable", name);
        return;
    }
    tool_shape_text(ndim, shape, want, sizeof want);
    tool_shape_text(a.ndim, a.shape, found, sizeof found);
    if (a.ndim != ndim || memcmp(a.shape, shape, (size_t)ndim * sizeof *shape) ||
        (sel != NULL) != (a.dtype == STILL__DT_U1)) {
        note(rep, 1, "%s is %s %s, expected %s %s", name, still__dtype_name(a.dtype), found,
             sel ? "|u1" : "a float", want);
        still__array_free(&a);
        return;
    }
    if (sel) {
        int64_t differ = 0;
        for (int64_t i = 0; i < a.count; i++)
            differ += sel[i] != ((const uint8_t *)a.data)[i];
        note(rep, differ != 0, differ ? "sel differs at %lld positions" : "sel equal",
             (long long)differ);
    } else if (still__array_to_f64(&a, &stored)) {
        note(rep, 1, "%s: out of memory", name);
    } else {
        const json_t *at = member(tol, "atol", JSON_REAL), *rt = member(tol, "rtol", JSON_REAL);
        const double atol = at ? json_number_value(at) : -1, rtol = rt ? json_number_value(rt) : -1;
        if (!(atol >= 0) || !(rtol >= 0)) {
            note(rep, 1, "%s: the manifest has no tolerance for it", name);
        } else {
            cmp_result r = compare_values(x, stored, a.count, atol, rtol);
            char bound[64];
            if (rtol > 0)
                snprintf(bound, sizeof bound, "%.3g + %.3g|x|", atol, rtol);
            else
                snprintf(bound, sizeof bound, "%.3g", atol);
            note(rep, r.fails != 0, "%s %.2g %s %s", name, r.max_abs, r.fails ? ">" : "<=",
                 bound);
        }
    }
    free(stored);
    still__array_free(&a);
}

/* The strings of a JSON array as an argvec; -1 if it is not one. */
static int argvec_of(const json_t *arr, argvec *a)
{
    memset(a, 0, sizeof *a);
    if (!arr)
        return -1;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *s = json_array_get(arr, i);
        if (!json_is_string(s) || argvec_push(a, json_string_value(s)))
            return -1;
    }
    return 0;
}

/* The SHA-256 of every file a case lists; 1 if an input changed. */
static int verify_hashes(case_report *rep, const char *dir, const json_t *files)
{
    static const char *const inputs[] = {"q.npy", "k.npy", "v.npy", "gate.npy",
                                         "params.safetensors", "dO.npy"};
    int bad = 0, bad_input = 0;
    char path[GOLDEN_PATH_MAX], sha[65];
    const char *fname;
    json_t *entry;
    json_object_foreach((json_t *)files, fname, entry) {
        const json_t *want = member(entry, "sha256", JSON_STRING);
        if (!plain_name(fname) || !want || join_path(path, sizeof path, dir, fname)) {
            note(rep, 1, "bad file entry '%.64s'", fname);
            bad++;
            continue;
        }
        int unreadable = sha256_file(path, sha, NULL) != 0;
        if (unreadable || strcmp(sha, json_string_value(want))) {
            note(rep, 1, "%s %s", fname, unreadable ? "unreadable" : "sha256 differs");
            bad++;
            for (size_t k = 0; k < sizeof inputs / sizeof *inputs; k++)
                bad_input |= !strcmp(fname, inputs[k]);
        }
    }
    if (!bad)
        note(rep, 0, "%zu files sha256 ok", json_object_size(files));
    return bad_input;
}

/* sel.npy against a recomputed selection by SPEC §10's near-tie rule
 * (tool_selection_contract, as still check --contract): a token chosen
 * differently passes only where the scores are within 1e-4 (1 + |sigma|)
 * of the chunk's k-th.  Returns the number of tokens chosen differently,
 * -1 after a failed note. */
static int64_t compare_near_tie(case_report *rep, const char *dir, const computed *c)
{
    char path[GOLDEN_PATH_MAX], err[STILL__ERRLEN];
    still__array sel, sig;
    const still_shape *s = &c->in.shape;
    const int64_t rows = s->batch * s->heads_q, N = s->seq_len, n = rows * N;
    double *a = NULL, *b = NULL, *sb = NULL;
    int64_t differ = -1;
    memset(&sel, 0, sizeof sel);
    memset(&sig, 0, sizeof sig);
    if (join_path(path, sizeof path, dir, "sel.npy") ||
        still__npy_read(path, &sel, err, sizeof err) || sel.count != n ||
        sel.dtype != STILL__DT_U1 || join_path(path, sizeof path, dir, "sigma.npy") ||
        still__npy_read(path, &sig, err, sizeof err) || sig.count != n ||
        still__array_to_f64(&sig, &sb) || !(a = malloc((size_t)n * sizeof *a)) ||
        !(b = malloc((size_t)n * sizeof *b))) {
        note(rep, 1, "sel.npy or sigma.npy unreadable or of another size");
    } else {
        tool_sel_verdict v;
        for (int64_t i = 0; i < n; i++) {
            a[i] = c->sel[i];
            b[i] = ((const uint8_t *)sel.data)[i];
        }
        tool_selection_contract(a, b, c->sigma, sb, rows, N, c->opts.cfg.chunk, &v);
        const int bad = v.first_bad >= 0 || v.first_bad_chunk >= 0;
        note(rep, bad, "sel %lld differ, %lld near-ties%s", (long long)v.differ,
             (long long)v.ties, bad ? " (FAIL: a difference beyond the near-tie rule)" : "");
        differ = bad ? -1 : v.differ;
    }
    free(a);
    free(b);
    free(sb);
    still__array_free(&sel);
    still__array_free(&sig);
    return differ;
}

/* grads.safetensors against the VJP recomputed from the case's grad
 * command, each tensor within its tolerance (SPEC §10). */
static int verify_grads(case_report *rep, const char *label, const char *dir, const json_t *cs,
                        int path, const json_t *tol)
{
    char fpath[GOLDEN_PATH_MAX], err[STILL__ERRLEN];
    const char *names[TOOL_GRAD_TENSORS];
    still__array arrays[TOOL_GRAD_TENSORS];
    still__st_file f;
    argvec grad;
    computed c;
    int rc, bad = 0;
    double worst = 0; /* the largest |g - g_ref| / atol */

    if (argvec_of(member(cs, "grad", JSON_ARRAY), &grad) || !tol)
        return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: a malformed \"grad\" or no "
                         "tolerance for the gradients", label);
    if (join_path(fpath, sizeof fpath, dir, "grads.safetensors") ||
        still__st_read(fpath, &f, err, sizeof err)) {
        note(rep, 1, "grads.safetensors unreadable");
        return TOOL_EXIT_OK;
    }
    if ((rc = compute(label, dir, grad.argc, grad.argv, path, &c))) {
        still__st_free(&f);
        return rc;
    }
    const int n = tool_grad_set_named(&c.in, &c.grads, names, arrays);
    for (int i = 0; i < n; i++) {
        const still__array *st = still__st_get(&f, names[i]);
        const json_t *t = member(tol, names[i], JSON_OBJECT);
        const json_t *at = member(t, "atol", JSON_REAL);
        double *stored = NULL;
        if (!st || st->count != arrays[i].count || !at || still__array_to_f64(st, &stored)) {
            note(rep, 1, "grads %s missing, of another size or without a tolerance", names[i]);
            bad = 1;
            free(stored);
            continue;
        }
        const double atol = json_number_value(at);
        cmp_result r = compare_values(arrays[i].data, stored, st->count, atol, 0.0);
        free(stored);
        if (r.fails) {
            note(rep, 1, "grads %s %.2g > %.3g", names[i], r.max_abs, atol);
            bad = 1;
        }
        const double ratio = atol > 0 ? r.max_abs / atol : r.max_abs > 0 ? INFINITY : 0;
        worst = ratio > worst ? ratio : worst;
    }
    if (!bad)
        note(rep, 0, "grads (%d tensors) within %.2g of their bounds", n, worst);
    computed_free(&c);
    still__st_free(&f);
    return TOOL_EXIT_OK;
}

/* One case: hashes, then run and teacher recomputed and compared.
 * Returns TOOL_EXIT_OK (the verdict is in rep) or an exit status when the
 * manifest is malformed or the library refuses. */
static int verify_case(const char *set, const json_t *cs, int path, case_report *rep)
{
    const json_t *name = member(cs, "name", JSON_STRING), *files = member(cs, "files", JSON_OBJECT);
    const json_t *command = member(cs, "command", JSON_STRING);
    const json_t *tol = member(member(cs, "tolerance", JSON_OBJECT),
                               path == TOOL_PATH_FAST ? "float32" : "float64", JSON_OBJECT);
    char dir[GOLDEN_PATH_MAX], label[128], joined[4096];
    argvec run, teacher;
    computed c;
    int rc;

    if (!name || !plain_name(json_string_value(name)) || !files || !command || !tol ||
        argvec_of(member(cs, "run", JSON_ARRAY), &run) ||
        argvec_of(member(cs, "teacher", JSON_ARRAY), &teacher))
        return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s/manifest.json: a case without a plain "
                         "name, files, command, run, teacher or tolerance", set);
    snprintf(label, sizeof label, "%s/manifest.json: case %s", set, json_string_value(name));
    argvec_join(&run, joined, sizeof joined);
    if (strcmp(joined, json_string_value(command)))
        return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: \"command\" and \"run\" differ", label);
    for (int i = 0; i < 4; i++) {
        static const char *const outs[] = {"o.npy", "sigma.npy", "sel.npy", "o_teacher.npy"};
        if (!member(files, outs[i], JSON_OBJECT))
            return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: no %s in its files", label,
                             outs[i]);
    }
    if (join_path(dir, sizeof dir, set, json_string_value(name)))
        return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: path too long", label);

    if (verify_hashes(rep, dir, files)) {
        note(rep, 1, "inputs changed: not recomputed");
        return TOOL_EXIT_OK;
    }
    if ((rc = compute(label, dir, run.argc, run.argv, path, &c)))
        return rc;
    const json_t *seltol = member(tol, "sel", JSON_STRING);
    int64_t differ = 0;
    if (seltol && !strcmp(json_string_value(seltol), "near-tie") &&
        (differ = compare_near_tie(rep, dir, &c)) > 0 &&
        !argvec_split(&run, "--select-in sel.npy")) {
        /* near-ties chose differently: o with the stored selection held */
        computed_free(&c);
        if ((rc = compute(label, dir, run.argc, run.argv, path, &c)))
            return rc;
    } else if (!seltol || strcmp(json_string_value(seltol), "near-tie")) {
        compare_stored(rep, dir, "sel.npy", NULL, c.sel, &c.in, 0, NULL);
    }
    compare_stored(rep, dir, "o.npy", c.o, NULL, &c.in, c.in.shape.dim_v,
                   member(tol, "o", JSON_OBJECT));
    compare_stored(rep, dir, "sigma.npy", c.sigma, NULL, &c.in, 0,
                   member(tol, "sigma", JSON_OBJECT));
    computed_free(&c);
    if ((rc = compute(label, dir, teacher.argc, teacher.argv, path, &c)))
        return rc;
    compare_stored(rep, dir, "o_teacher.npy", c.o, NULL, &c.in, c.in.shape.dim_v,
                   member(tol, "o_teacher", JSON_OBJECT));
    computed_free(&c);
    if (member(cs, "grad", JSON_ARRAY)) /* the real suite: the VJP of dO */
        return verify_grads(rep, label, dir, cs, path, member(tol, "grads", JSON_OBJECT));
    return TOOL_EXIT_OK;
}

static int verify_set(const char *set, int path, const char *only)
{
    char mpath[GOLDEN_PATH_MAX], failed_names[512] = "";
    char *textbuf = NULL;
    size_t len = 0;
    json_error_t e;
    int rc, nfail = 0, nverified = 0;
    const double t0 = tool_now();

    if (join_path(mpath, sizeof mpath, set, "manifest.json"))
        return tool_fail(TOOL_EXIT_USAGE, golden_cmd, "--verify: path too long");
    if ((rc = read_small_file(mpath, (size_t)64 << 20, &textbuf, &len)))
        return rc;
    json_t *root = json_loadb(textbuf, len, JSON_REJECT_DUPLICATES, &e);
    free(textbuf);
    if (!root)
        return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: not JSON: %s at byte %d", mpath,
                         e.text, e.position);
    const json_t *format = member(root, "format", JSON_STRING);
    const json_t *version = member(root, "format_version", JSON_INTEGER);
    const json_t *lib = member(root, "libstill_version", JSON_STRING);
    const json_t *cases = member(root, "cases", JSON_ARRAY);
    if (!format || strcmp(json_string_value(format), GOLDEN_FORMAT) || !version || !cases) {
        json_decref(root);
        return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: expected a still golden manifest "
                         "(\"format\": \"%s\", format_version, cases)", mpath, GOLDEN_FORMAT);
    }
    if (json_integer_value(version) != GOLDEN_FORMAT_VERSION) {
        const long long found = (long long)json_integer_value(version);
        json_decref(root);
        return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: format_version %lld, this still "
                         "reads %d", mpath, found, GOLDEN_FORMAT_VERSION);
    }
    const size_t ncases = json_array_size(cases);
    printf("still golden --verify %s: %zu cases, written by libstill %s, checked by %s on the "
           "%s path (%s tolerances)\n", set, ncases, lib ? json_string_value(lib) : "(unknown)",
           still_version_string(), path == TOOL_PATH_FAST ? "fast" : "ref",
           path == TOOL_PATH_FAST ? "float32" : "float64");
    for (size_t i = 0; i < ncases; i++) {
        case_report rep = {{NULL, 0, 0, 0}, 0};
        const json_t *cs = json_array_get(cases, i);
        const char *name = json_string_value(member(cs, "name", JSON_STRING));
        if (only && (!name || strcmp(name, only)))
            continue;
        nverified++;
        tool_progress((int64_t)i, (int64_t)ncases, "case %s", name ? name : "?");
        if ((rc = verify_case(set, cs, path, &rep))) {
            free(rep.line.p);
            json_decref(root);
            return rc;
        }
        tool_progress_clear();
        printf("  %-15s %s: %s\n", name, rep.failed ? "FAIL" : "ok",
               rep.line.p ? rep.line.p : "");
        if (rep.failed) {
            size_t at = strlen(failed_names);
            snprintf(failed_names + at, sizeof failed_names - at, "%s%s", nfail ? ", " : "",
                     name);
            nfail++;
        }
        free(rep.line.p);
    }
    json_decref(root);
    if (nfail)
        return tool_fail(TOOL_EXIT_MISMATCH, golden_cmd, "%s: %d of %d cases do not match: %s",
                         set, nfail, nverified, failed_names);
    if (only && nverified == 0)
        return tool_fail(TOOL_EXIT_USAGE, golden_cmd, "--case %s: no such case in %s", only,
                         mpath);
    if (ncases == 0)
        return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: the manifest lists no case", mpath);
    printf("PASS: %d cases in %.2f s\n", nverified, tool_now() - t0);
    return TOOL_EXIT_OK;
}

/* ==== the command ================================================================= */

static int print_sha256(int argc, char **argv, int first)
{
    char sha[65];
    if (first >= argc)
        return tool_fail(TOOL_EXIT_USAGE, golden_cmd, "--sha256: expected file names");
    for (int i = first; i < argc; i++)
        if (sha256_file(argv[i], sha, NULL) != 0)
            return tool_fail(TOOL_EXIT_INPUT, golden_cmd, "%s: %s", argv[i], strerror(errno));
        else
            printf("%s  %s\n", sha, argv[i]);
    return TOOL_EXIT_OK;
}

int cmd_golden(int argc, char **argv)
{
    const char *out = NULL, *verify = NULL, *only = NULL, *val;
    int64_t seed = 1, max_n = 0;
    int path = TOOL_PATH_REF, real = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tool_is_help(a)) {
            golden_usage(stdout);
            return TOOL_EXIT_OK;
        } else if (tool_progress_option(a)) {
            continue;
        } else if (!strcmp(a, "--sha256")) {
            return print_sha256(argc, argv, i + 1);
        } else if (tool_is_option(a, "--out")) {
            if (!(out = tool_option_value(golden_cmd, argc, argv, &i, "--out")))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--verify")) {
            if (!(verify = tool_option_value(golden_cmd, argc, argv, &i, "--verify")))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--suite")) {
            if (!(val = tool_option_value(golden_cmd, argc, argv, &i, "--suite")))
                return TOOL_EXIT_USAGE;
            if (strcmp(val, "small") && strcmp(val, "real"))
                return tool_fail(TOOL_EXIT_USAGE, golden_cmd, "--suite: expected small or real, "
                                 "found '%s'", val);
            real = !strcmp(val, "real");
        } else if (tool_is_option(a, "--max-n")) {
            if (!(val = tool_option_value(golden_cmd, argc, argv, &i, "--max-n")) ||
                tool_parse_int64(golden_cmd, "--max-n", val, 16, INT64_C(1) << 40, &max_n))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--case")) {
            if (!(only = tool_option_value(golden_cmd, argc, argv, &i, "--case")))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--seed")) {
            if (!(val = tool_option_value(golden_cmd, argc, argv, &i, "--seed")) ||
                tool_parse_int64(golden_cmd, "--seed", val, 0, INT64_MAX, &seed))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--path")) {
            if (!(val = tool_option_value(golden_cmd, argc, argv, &i, "--path")))
                return TOOL_EXIT_USAGE;
            if (strcmp(val, "ref") && strcmp(val, "fast"))
                return tool_fail(TOOL_EXIT_USAGE, golden_cmd, "--path: expected ref or fast, "
                                 "found '%s'", val);
            path = strcmp(val, "fast") ? TOOL_PATH_REF : TOOL_PATH_FAST;
        } else {
            return tool_fail(TOOL_EXIT_USAGE, golden_cmd, "unknown option '%s' (see still "
                             "golden --help)", a);
        }
    }
    if (!out == !verify)
        return tool_fail(TOOL_EXIT_USAGE, golden_cmd, "expected one of --out DIR or --verify DIR "
                         "(see still golden --help)");
    if (verify && (real || max_n))
        return tool_fail(TOOL_EXIT_USAGE, golden_cmd, "--suite and --max-n are options of --out "
                         "(--verify reads the suite from the manifest)");
    if (out && only)
        return tool_fail(TOOL_EXIT_USAGE, golden_cmd, "--case is an option of --verify");
    if (max_n && !real)
        return tool_fail(TOOL_EXIT_USAGE, golden_cmd, "--max-n: only with --suite real");
    if (verify)
        return verify_set(verify, path, only);
    if (path == TOOL_PATH_FAST)
        return tool_fail(TOOL_EXIT_USAGE, golden_cmd, "--path fast: reference outputs are "
                         "written by the ref path only (use it with --verify)");
    return generate_set(out, (uint64_t)seed, real, max_n);
}
