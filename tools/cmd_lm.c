/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * cmd_lm.c -- `still lm eval|generate`: a small Llama-style model (SPEC
 * §18, lm_model.c) with the attention of each layer chosen among what the
 * library has.  eval measures what a choice costs (bits per byte, KL to
 * the teacher, retrieval of a planted code); generate streams through one
 * decode state per layer and shows their memory as the context grows.
 */
#define _POSIX_C_SOURCE 200809L
#include "lm_model.h"
#include "tool_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LM_MAX_CONFIGS 16
#define LM_MAX_DEPTHS 32

typedef struct lm_opts {
    const char *mode, *extra; /* the subcommand, and a second word (an error) */
    const char *model, *params_dir, *text, *prompt, *prompt_file, *out_dir, *ids, *heldout_ids;
    const char *attn[LM_MAX_CONFIGS];
    int n_attn;
    lm_attn_opts ao;
    int64_t max_bytes, trials, tokens, report_every, seed, steps;
    int64_t depths[LM_MAX_DEPTHS];
    int n_depths, recall;
    int64_t budget;
    double temperature, lr;
} lm_opts;

static void lm_usage(FILE *f)
{
    fprintf(f,
            "usage: still lm eval --model DIR [--attn SPEC]... [--text FILE] [--recall] [options]\n"
            "       still lm generate --model DIR [--attn SPEC] --prompt TEXT [--tokens N]\n"
            "       still lm transfer --model DIR [--attn SPEC] --text FILE --out-dir D\n"
            "       still lm rank --model DIR [--attn KIND] [--text FILE] [--budget K]\n"
            "\n"
            "A small Llama-style model (SPEC §18: byte tokens, RMSNorm, RoPE, grouped-query\n"
            "attention, SwiGLU, tied head) whose attention layers run through libstill.\n"
            "DIR holds config.json and *.safetensors (float16/bfloat16/float32; this\n"
            "project's tensor names or Hugging Face Llama's).\n"
            "\n"
            "  eval      bits per byte of a text, KL(teacher || model) of the next-byte\n"
            "            distributions and, with --recall, the retrieval of a planted\n"
            "            secret code by depth: one table row per --attn\n"
            "  generate  streams bytes after the prompt through one decode state per layer;\n"
            "            stdout gets the text, stderr a line every --report-every tokens:\n"
            "            tokens/s and the bytes of state of each layer\n"
            "  transfer  stage-1 attention transfer (SPEC §8) of every non-teacher layer of\n"
            "            --attn on the model's own q, k, v of --text: Adam on the exact\n"
            "            gradients; writes D/layer<i>.safetensors for --params-dir and\n"
            "            prints the loss and the held-out bits/byte before and after\n"
            "  rank      KL-guided layer selection: per layer its attention-output error,\n"
            "            the KL with only it linearized and with only it kept softmax;\n"
            "            the ranking, the greedy choice of --budget softmax layers, and\n"
            "            bits/byte by the number of softmax layers kept\n"
            "\n"
            "options:\n"
            "  --model DIR          the model directory                       (required)\n"
            "  --attn SPEC          teacher, still, window, linear, sinks or terraced for\n"
            "                       every layer, or LAYER=KIND,... (other layers\n"
            "                       teacher); eval takes it several times (default:\n"
            "                       teacher, still, window, linear), generate once\n"
            "                       (default still)\n"
            "  --params-dir D       per-layer feature maps D/layer<i>.safetensors as\n"
            "                       `still transfer` writes them (default: identity)\n"
            "  --chunk C            chunk size (default 64)\n"
            "  --topk K             selected tokens per chunk, still (default 4)\n"
            "  --window W           the exact window of window and sinks, the block of\n"
            "                       terraced, and the saliency window (default C)\n"
            "  --sinks S            sink positions of sinks, S >= 0 (default 4)\n"
            "  --rest R             keys outside the exact set of still, window, sinks,\n"
            "                       terraced: linear (default) or drop (SPEC §12)\n"
            "  --local L            recent exact chunks (default 2)\n"
            "  --cap N              still: at most N selected tokens per head (default 0:\n"
            "                       none); decode memory stops growing\n"
            "eval:\n"
            "  --text FILE          the held-out text (default DIR/dump_text.txt)\n"
            "  --ids FILE.npy       token ids in place of the text: 1-D int32, int64,\n"
            "                       uint8 or integral floats, each in [0, vocab)\n"
            "  --max-bytes N        at most N bytes of it (default: the model's context)\n"
            "  --recall             also the secret-code retrieval of recall-lm's README\n"
            "  --depths D,D,...     its depths in bytes (default 64,300,700,1100,1500,1900)\n"
            "  --trials T           its trials per depth (default 8)\n"
            "generate:\n"
            "  --prompt TEXT        the prompt (or --prompt-file FILE)\n"
            "  --prompt-file FILE   the prompt's bytes\n"
            "  --ids FILE.npy       the prompt's token ids (as for eval)\n"
            "  --tokens N           bytes to generate (default 256)\n"
            "  --temperature T      0 (default): the most likely byte; else sampling\n"
            "  --seed S             the sampling seed (default 1)\n"
            "  --report-every K     a memory line every K tokens (default 64)\n"
            "rank:\n"
            "  --text FILE          the calibration text (default DIR/dump_text.txt)\n"
            "  --ids FILE.npy       token ids in place of the text (as for eval)\n"
            "  --budget K           softmax layers of the greedy choice (default 2)\n"
            "transfer:\n"
            "  --text FILE          the training text (not the held-out text; or --ids)\n"
            "  --ids FILE.npy       the training text as token ids (as for eval)\n"
            "  --heldout-ids F.npy  the held-out token ids (default DIR/dump_text.txt's\n"
            "                       bytes): bits per token before and after\n"
            "  --out-dir D          a new or empty directory for the parameter files\n"
            "  --steps S            Adam steps per layer (default 100)\n"
            "  --lr LR              learning rate (default 0.01)\n"
            "  --max-bytes N        at most N bytes of each text (default: the context)\n"
            "\n"
            "Exit status: 0 success, 2 usage error, 3 input file problem, 4 library error,\n"
            "5 output not written.\n");
}

static int parse_depths(const char *cmd, const char *val, lm_opts *o)
{
    const char *p = val;
    o->n_depths = 0;
    while (*p) {
        char *end;
        long long d = strtoll(p, &end, 10);
        if (end == p || d < 0 || d > 1 << 24 || (*end && *end != ',') ||
            o->n_depths == LM_MAX_DEPTHS)
            return tool_fail(TOOL_EXIT_USAGE, cmd,
                             "--depths '%s': expected up to %d comma-separated byte offsets",
                             val, LM_MAX_DEPTHS);
        o->depths[o->n_depths++] = d;
        p = *end ? end + 1 : end;
    }
    return o->n_depths ? TOOL_EXIT_OK
                       : tool_fail(TOOL_EXIT_USAGE, cmd, "--depths: no depth given");
}

/* An integer option: 1 when argv[*i] was it, -1 after a usage error. */
static int int_option(const char *cmd, int argc, char **argv, int *i, const char *opt,
                      int64_t lo, int64_t hi, int64_t *out)
{
    const char *val;
    if (!tool_is_option(argv[*i], opt))
        return 0;
    if (!(val = tool_option_value(cmd, argc, argv, i, opt)) ||
        tool_parse_int64(cmd, opt, val, lo, hi, out))
        return -1;
    return 1;
}

static int lm_parse(const char *cmd, int argc, char **argv, lm_opts *o, int *help)
{
    static const int64_t default_depths[] = {64, 300, 700, 1100, 1500, 1900};
    memset(o, 0, sizeof *o);
    *help = 0;
    o->trials = 8;
    o->tokens = 256;
    o->report_every = 64;
    o->seed = 1;
    o->steps = 100;
    o->budget = 2;
    o->lr = 0.01;
    o->n_depths = 6;
    memcpy(o->depths, default_depths, sizeof default_depths);
    const char *text_opts[] = {"--model",  "--params-dir",  "--text", "--prompt",
                               "--prompt-file", "--out-dir", "--ids", "--heldout-ids"};
    const char **text_dst[] = {&o->model,  &o->params_dir,  &o->text, &o->prompt,
                               &o->prompt_file, &o->out_dir, &o->ids, &o->heldout_ids};
    struct { const char *name; int64_t lo, hi, *dst; } ints[] = {
        {"--chunk", 1, 1 << 20, &o->ao.chunk},      {"--topk", 0, 1 << 20, &o->ao.topk},
        {"--window", 2, 1 << 24, &o->ao.window},    {"--local", 0, 1 << 20, &o->ao.local},
        {"--cap", 0, 1 << 24, &o->ao.cap},          {"--max-bytes", 2, 1 << 26, &o->max_bytes},
        {"--trials", 1, 100000, &o->trials},        {"--tokens", 0, 1 << 24, &o->tokens},
        {"--report-every", 1, 1 << 24, &o->report_every},
        {"--seed", 0, INT64_MAX, &o->seed},         {"--steps", 0, 1000000, &o->steps},
        {"--budget", 0, 4096, &o->budget},          {"--sinks", 0, INT64_C(1) << 40, &o->ao.sinks}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        int done = 0, r;
        if (tool_is_help(a)) {
            *help = 1;
            return TOOL_EXIT_OK;
        }
        if (a[0] != '-') {
            if (!o->mode)
                o->mode = a;
            else if (!o->extra)
                o->extra = a;
            continue;
        }
        for (size_t j = 0; j < sizeof text_opts / sizeof *text_opts && !done; j++)
            if (tool_is_option(a, text_opts[j])) {
                if (!(*text_dst[j] = tool_option_value(cmd, argc, argv, &i, text_opts[j])))
                    return TOOL_EXIT_USAGE;
                done = 1;
            }
        for (size_t j = 0; j < sizeof ints / sizeof *ints && !done; j++) {
            if ((r = int_option(cmd, argc, argv, &i, ints[j].name, ints[j].lo, ints[j].hi,
                                ints[j].dst)) < 0)
                return TOOL_EXIT_USAGE;
            done = r;
            if (r && ints[j].dst == &o->ao.sinks)
                o->ao.has_sinks = 1;
        }
        if (done)
            continue;
        if (tool_is_option(a, "--attn")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--attn")))
                return TOOL_EXIT_USAGE;
            if (o->n_attn == LM_MAX_CONFIGS)
                return tool_fail(TOOL_EXIT_USAGE, cmd, "--attn: at most %d configurations",
                                 LM_MAX_CONFIGS);
            o->attn[o->n_attn++] = val;
        } else if (tool_is_option(a, "--depths")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--depths")) ||
                parse_depths(cmd, val, o))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--temperature")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--temperature")) ||
                tool_parse_double(cmd, "--temperature", val, 0.0, 1e3, &o->temperature))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--lr")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--lr")) ||
                tool_parse_double(cmd, "--lr", val, 0.0, 1e6, &o->lr))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--rest")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--rest")))
                return TOOL_EXIT_USAGE;
            if (!strcmp(val, "linear"))
                o->ao.rest = STILL_REST_LINEAR;
            else if (!strcmp(val, "drop"))
                o->ao.rest = STILL_REST_DROP;
            else
                return tool_fail(TOOL_EXIT_USAGE, cmd, "--rest '%s': expected linear or drop",
                                 val);
        } else if (!strcmp(a, "--recall")) {
            o->recall = 1;
        } else {
            return tool_fail(TOOL_EXIT_USAGE, cmd, "unknown option '%s'", a);
        }
    }
    if (!o->mode ||
        (strcmp(o->mode, "eval") && strcmp(o->mode, "generate") && strcmp(o->mode, "transfer") &&
         strcmp(o->mode, "rank")))
        return tool_fail(TOOL_EXIT_USAGE, cmd, "expected eval, generate, transfer or rank%s%s",
                         o->mode ? ", found " : "", o->mode ? o->mode : "");
    if (o->extra)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "unexpected argument '%s'", o->extra);
    if (!o->model)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--model DIR is required");
    if (!strcmp(o->mode, "transfer")) {
        if (o->n_attn > 1)
            return tool_fail(TOOL_EXIT_USAGE, cmd, "transfer takes one --attn");
        if (!!o->text + !!o->ids != 1 || !o->out_dir)
            return tool_fail(TOOL_EXIT_USAGE, cmd,
                             "transfer needs --out-dir and one of --text, --ids");
    }
    if (!strcmp(o->mode, "generate")) {
        if (o->n_attn > 1)
            return tool_fail(TOOL_EXIT_USAGE, cmd, "generate takes one --attn");
        if (!!o->prompt + !!o->prompt_file + !!o->ids != 1)
            return tool_fail(TOOL_EXIT_USAGE, cmd,
                             "generate needs one of --prompt, --prompt-file, --ids");
    }
    if (o->heldout_ids && strcmp(o->mode, "transfer"))
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--heldout-ids: transfer only");
    if (o->ids && o->text)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--ids replaces --text: give one");
    return TOOL_EXIT_OK;
}

/* ---- inputs ----------------------------------------------------------------- */

/* A text as byte tokens, each below the vocabulary (else TOOL_EXIT_INPUT). */
static int read_bytes(const char *cmd, const char *path, int64_t max, int64_t vocab,
                      int32_t **ids, int64_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: cannot open", path);
    int32_t *buf = malloc((size_t)max * sizeof *buf);
    int64_t k = 0;
    int c = EOF;
    while (buf && k < max && (c = fgetc(f)) != EOF && c < vocab)
        buf[k++] = c;
    fclose(f);
    if (!buf)
        return tool_fail(TOOL_EXIT_LIBRARY, cmd, "out of memory");
    if (k < max && c != EOF) {
        free(buf);
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: byte %lld is %d, beyond the vocabulary of %lld",
                         path, (long long)k, c, (long long)vocab);
    }
    if (k < 2) {
        free(buf);
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: expected at least 2 bytes, found %lld",
                         path, (long long)k);
    }
    *ids = buf;
    *n = k;
    return TOOL_EXIT_OK;
}

/* Token ids of a 1-D .npy (--ids): int32 or int64 ('<i4', '<i8'), uint8,
 * or a float type whose values are integers; at most max of them, each in
 * [0, vocab) (else TOOL_EXIT_INPUT).  The integer types go through the
 * library's reader as the float type of the same item size (the header
 * names only descr, fortran_order and shape, so the quoted '<i4' can only
 * be the descr): it checks the header, the shape and the data's length,
 * and copies the bytes as they are. */
static int read_ids_npy(const char *cmd, const char *path, int64_t max, int64_t vocab,
                        int32_t **ids, int64_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: cannot open", path);
    size_t len = 0, cap = 0;
    unsigned char *buf = NULL;
    for (;;) {
        if (len == cap) {
            unsigned char *b = cap < ((size_t)1 << 31) ? realloc(buf, cap ? 2 * cap : 4096)
                                                       : NULL;
            if (!b) {
                free(buf);
                fclose(f);
                return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: too large or out of memory", path);
            }
            buf = b;
            cap = cap ? 2 * cap : 4096;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (!got)
            break;
    }
    int read_error = ferror(f);
    fclose(f);
    if (read_error) {
        free(buf);
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: read error", path);
    }
    int width = 0; /* 4 or 8: an integer type, read as the float of that size */
    if (len >= 12 && !memcmp(buf, "\x93NUMPY", 6)) {
        size_t pre = buf[6] == 1 ? 10 : 12;
        size_t hlen = buf[6] == 1 ? (size_t)buf[8] | (size_t)buf[9] << 8
                                  : (size_t)buf[8] | (size_t)buf[9] << 8 |
                                        (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        for (size_t i = pre; hlen <= len - pre && i + 5 <= pre + hlen; i++)
            if ((buf[i] == '\'' || buf[i] == '"') && buf[i + 1] == '<' && buf[i + 2] == 'i' &&
                (buf[i + 3] == '4' || buf[i + 3] == '8') && buf[i + 4] == buf[i]) {
                width = buf[i + 3] - '0';
                buf[i + 2] = 'f';
                break;
            }
    }
    still__array a;
    char err[STILL__ERRLEN];
    int rc = still__npy_parse(buf, len, path, &a, err, sizeof err);
    free(buf);
    if (rc)
        return tool_fail(rc == STILL_E_NOMEM ? TOOL_EXIT_LIBRARY : TOOL_EXIT_INPUT, cmd, "%s%s",
                         err, rc == STILL_E_DTYPE ? " (or '<i4', '<i8')" : "");
    if (a.ndim != 1) {
        still__array_free(&a);
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: expected a 1-D array of token ids, found %d "
                         "dimensions", path, a.ndim);
    }
    int64_t k = a.count < max ? a.count : max;
    int32_t *out = malloc((size_t)(k > 0 ? k : 1) * sizeof *out);
    double *real = NULL; /* a float type's values */
    if (!out || (!width && a.dtype != STILL__DT_U1 && still__array_to_f64(&a, &real))) {
        free(out);
        still__array_free(&a);
        return tool_fail(TOOL_EXIT_LIBRARY, cmd, "out of memory");
    }
    const unsigned char *p = a.data;
    for (int64_t i = 0; i < k; i++) {
        int64_t v = -1;
        if (width == 4) {
            int32_t x;
            memcpy(&x, p + 4 * i, 4);
            v = x;
        } else if (width == 8) {
            memcpy(&v, p + 8 * i, 8);
        } else if (!real) {
            v = p[i];
        } else if (real[i] >= 0 && real[i] < (double)vocab && real[i] == floor(real[i])) {
            v = (int64_t)real[i];
        }
        if (v < 0 || v >= vocab) {
            free(real);
            free(out);
            still__array_free(&a);
            return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: id %lld is not an integer in [0, %lld)",
                             path, (long long)i, (long long)vocab);
        }
        out[i] = (int32_t)v;
    }
    free(real);
    still__array_free(&a);
    if (k < 2) {
        free(out);
        return tool_fail(TOOL_EXIT_INPUT, cmd, "%s: expected at least 2 ids, found %lld", path,
                         (long long)k);
    }
    *ids = out;
    *n = k;
    return TOOL_EXIT_OK;
}

/* ---- eval ------------------------------------------------------------------- */

typedef struct eval_row {
    double bpb, kl;
    int64_t hits[LM_MAX_DEPTHS];
} eval_row;

/* Bits per byte of ids[1..n-1] under logits, and the mean KL(teacher || model). */
static void score(const lm_config *c, const float *logits, const float *teacher,
                  const int32_t *ids, int64_t n, double *scratch, eval_row *row)
{
    const int64_t V = c->vocab;
    double *lp = scratch, *lt = scratch + V, bits = 0, kl = 0;
    for (int64_t t = 0; t + 1 < n; t++) {
        lm_log_softmax(logits + t * V, V, lp);
        bits -= lp[ids[t + 1]] / log(2.0);
        if (teacher) {
            lm_log_softmax(teacher + t * V, V, lt);
            for (int64_t i = 0; i < V; i++)
                kl += exp(lt[i]) * (lt[i] - lp[i]);
        }
    }
    row->bpb = bits / (double)(n - 1);
    row->kl = teacher ? kl / (double)(n - 1) : 0;
}

static const char needle_head[] = "\nThe secret code is ";

/* recall-lm's trial (its README): the haystack with "\nThe secret code is
 * DDDDD.\n" at depth, then "\nThe secret code is " and the digits,
 * teacher-forced; a hit when each digit is the most likely next byte. */
static int recall_trial(const lm_model *m, const lm_attn *attn, const int32_t *text,
                        int64_t text_n, int64_t len, int64_t depth, int64_t trial,
                        float *logits, int *hit, char *err, size_t errlen)
{
    const int64_t nh = (int64_t)strlen(needle_head), V = m->cfg.vocab;
    const int64_t hay = len - (nh + 7) - nh - 5;
    int32_t *seq = malloc((size_t)len * sizeof *seq);
    char digits[6];
    if (!seq)
        return still__io_fail(err, errlen, STILL_E_NOMEM, "out of memory");
    uint64_t r = 0x9E3779B97F4A7C15ull * (uint64_t)(depth * 1000003 + trial + 1);
    for (int i = 0; i < 5; i++) {
        r ^= r >> 33;
        r *= 0xff51afd7ed558ccdull;
        r ^= r >> 33;
        digits[i] = (char)('0' + r % 10);
    }
    int64_t off = text_n > hay ? (trial * 997) % (text_n - hay + 1) : 0, k = 0;
    for (int64_t i = 0; i < depth; i++)
        seq[k++] = text[off + i];
    for (int64_t i = 0; i < nh; i++)
        seq[k++] = (unsigned char)needle_head[i];
    for (int i = 0; i < 5; i++)
        seq[k++] = digits[i];
    seq[k++] = '.';
    seq[k++] = '\n';
    for (int64_t i = depth; i < hay; i++)
        seq[k++] = text[off + i];
    for (int64_t i = 0; i < nh; i++)
        seq[k++] = (unsigned char)needle_head[i];
    const int64_t answer = k;
    for (int i = 0; i < 5; i++)
        seq[k++] = digits[i];
    int rc = lm_forward(m, attn, seq, len, logits, err, errlen);
    *hit = !rc;
    for (int i = 0; i < 5 && !rc; i++) {
        const float *row = logits + (answer - 1 + i) * V;
        int64_t best = 0;
        for (int64_t j = 1; j < V; j++)
            if (row[j] > row[best])
                best = j;
        *hit &= best == digits[i];
    }
    free(seq);
    return rc;
}

static int lm_eval(const char *cmd, const lm_opts *o, const lm_model *m)
{
    const char *defaults[] = {"teacher", "still", "window", "linear"};
    const char *const *specs = o->n_attn ? o->attn : defaults;
    const int n_cfg = o->n_attn ? o->n_attn : 4;
    const int64_t V = m->cfg.vocab;
    char path[4096], err[STILL__ERRLEN];
    int32_t *ids = NULL;
    int64_t n = 0, max = o->max_bytes ? o->max_bytes : (m->cfg.ctx ? m->cfg.ctx : 2048);
    int status;
    if (o->ids || o->text)
        snprintf(path, sizeof path, "%s", o->ids ? o->ids : o->text);
    else
        snprintf(path, sizeof path, "%s/dump_text.txt", o->model);
    if ((status = o->ids ? read_ids_npy(cmd, path, max, V, &ids, &n)
                         : read_bytes(cmd, path, max, V, &ids, &n)))
        return status;
    const int64_t nh = (int64_t)strlen(needle_head), rlen = n;
    if (o->recall && V < 256) {
        free(ids);
        return tool_fail(TOOL_EXIT_INPUT, cmd, "--recall needs a byte vocabulary (256), found %lld",
                         (long long)V);
    }
    if (o->recall) {
        for (int i = 0; i < o->n_depths; i++)
            if (o->depths[i] > rlen - 2 * nh - 12) {
                free(ids);
                return tool_fail(TOOL_EXIT_USAGE, cmd,
                                 "--depths: %lld is beyond the haystack of %lld bytes",
                                 (long long)o->depths[i], (long long)(rlen - 2 * nh - 12));
            }
    }
    float *teacher = malloc((size_t)(n * V) * sizeof(float));
    float *logits = malloc((size_t)(n * V) * sizeof(float));
    double *scratch = malloc((size_t)(2 * V) * sizeof(double));
    eval_row row;
    lm_attn *attn = NULL;
    lm_attn_opts none = {0};
    if (!teacher || !logits || !scratch) {
        status = tool_fail(TOOL_EXIT_LIBRARY, cmd, "out of memory");
        goto out;
    }
    if ((status = tool_blas_room(cmd)))
        goto out;
    if (lm_attn_parse(m, "teacher", &none, NULL, &attn, err, sizeof err) ||
        lm_forward(m, attn, ids, n, teacher, err, sizeof err)) {
        status = tool_fail(TOOL_EXIT_LIBRARY, cmd, "teacher: %s", err);
        goto out;
    }
    lm_attn_free(m, attn);
    attn = NULL;
    printf("model %s, %s %s (%lld %s); KL(teacher || model) in nats per byte\n", o->model,
           o->ids ? "ids" : "text", path, (long long)n, o->ids ? "tokens" : "bytes");
    printf("%-28s %10s %10s", "attention", "bits/byte", "KL");
    for (int i = 0; o->recall && i < o->n_depths; i++)
        printf("  recall@%-5lld", (long long)o->depths[i]);
    printf("\n");
    for (int c = 0; c < n_cfg; c++) {
        char name[256];
        int rc = lm_attn_parse(m, specs[c], &o->ao, o->params_dir, &attn, err, sizeof err);
        if (rc) {
            status = tool_fail(rc == STILL_E_CONFIG ? TOOL_EXIT_USAGE : TOOL_EXIT_INPUT, cmd,
                               "%s", err);
            goto out;
        }
        lm_attn_text(m, attn, name, sizeof name);
        tool_progress(0, 0, "%s: bits/byte", name);
        if (lm_forward(m, attn, ids, n, logits, err, sizeof err)) {
            status = tool_fail(TOOL_EXIT_LIBRARY, cmd, "%s", err);
            goto out;
        }
        score(&m->cfg, logits, teacher, ids, n, scratch, &row);
        for (int i = 0; o->recall && i < o->n_depths; i++) {
            row.hits[i] = 0;
            for (int64_t t = 0; t < o->trials; t++) {
                int hit = 0;
                tool_progress(i * o->trials + t, o->n_depths * o->trials, "%s: recall", name);
                if (recall_trial(m, attn, ids, n, rlen, o->depths[i], t, logits, &hit, err,
                                 sizeof err)) {
                    status = tool_fail(TOOL_EXIT_LIBRARY, cmd, "%s", err);
                    goto out;
                }
                row.hits[i] += hit;
            }
        }
        tool_progress_clear();
        printf("%-28s %10.4f %10.4f", name, row.bpb, row.kl);
        for (int i = 0; o->recall && i < o->n_depths; i++)
            printf("  %6lld/%-6lld", (long long)row.hits[i], (long long)o->trials);
        printf("\n");
        lm_attn_free(m, attn);
        attn = NULL;
    }
    status = TOOL_EXIT_OK;
out:
    lm_attn_free(m, attn);
    free(teacher);
    free(logits);
    free(scratch);
    free(ids);
    return status;
}

/* ---- generate --------------------------------------------------------------- */

static uint64_t next_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static int32_t pick(const float *row, int64_t V, double temperature, uint64_t *rng,
                    double *scratch)
{
    int64_t best = 0;
    for (int64_t j = 1; j < V; j++)
        if (row[j] > row[best])
            best = j;
    if (temperature <= 0)
        return (int32_t)best;
    double sum = 0;
    for (int64_t j = 0; j < V; j++)
        sum += scratch[j] = exp(((double)row[j] - row[best]) / temperature);
    double u = (double)(next_random(rng) >> 11) * 0x1p-53 * sum;
    for (int64_t j = 0; j < V; j++)
        if ((u -= scratch[j]) < 0)
            return (int32_t)j;
    return (int32_t)best;
}

static void report(const lm_session *s, int64_t generated, double seconds)
{
    size_t bytes;
    fprintf(stderr, "position %6lld  %8.1f tokens/s  state bytes per layer:",
            (long long)s->position, seconds > 0 ? (double)generated / seconds : 0.0);
    for (int64_t l = 0; l < s->m->cfg.n_layer; l++)
        if (!lm_session_layer_bytes(s, l, &bytes))
            fprintf(stderr, " %zu", bytes);
    fprintf(stderr, "\n");
}

static int lm_generate(const char *cmd, const lm_opts *o, const lm_model *m)
{
    const int64_t V = m->cfg.vocab;
    char err[STILL__ERRLEN];
    int32_t *ids = NULL;
    int64_t n = 0;
    int status;
    lm_attn *attn = NULL;
    lm_session s = {0};
    float *logits = NULL;
    double *scratch = malloc((size_t)V * sizeof *scratch);
    uint64_t rng = (uint64_t)o->seed * 0x9E3779B97F4A7C15ull + 1;
    if (o->ids) {
        if ((status = read_ids_npy(cmd, o->ids, 1 << 24, V, &ids, &n)))
            goto out;
    } else if (o->prompt_file) {
        if ((status = read_bytes(cmd, o->prompt_file, 1 << 24, V, &ids, &n)))
            goto out;
    } else {
        n = (int64_t)strlen(o->prompt);
        if (!n) {
            status = tool_fail(TOOL_EXIT_USAGE, cmd, "--prompt: empty");
            goto out;
        }
        if ((ids = malloc((size_t)n * sizeof *ids)))
            for (int64_t i = 0; i < n; i++)
                if ((ids[i] = (unsigned char)o->prompt[i]) >= V) {
                    status = tool_fail(TOOL_EXIT_INPUT, cmd,
                                       "--prompt: byte %lld is %d, beyond the vocabulary of %lld",
                                       (long long)i, (int)ids[i], (long long)V);
                    goto out;
                }
    }
    logits = malloc((size_t)(n * V) * sizeof *logits);
    if (!ids || !logits || !scratch) {
        status = tool_fail(TOOL_EXIT_LIBRARY, cmd, "out of memory");
        goto out;
    }
    int rc = lm_attn_parse(m, o->n_attn ? o->attn[0] : "still", &o->ao, o->params_dir, &attn,
                           err, sizeof err);
    if (rc) {
        status = tool_fail(rc == STILL_E_CONFIG ? TOOL_EXIT_USAGE : TOOL_EXIT_INPUT, cmd, "%s",
                           err);
        goto out;
    }
    if ((status = tool_blas_room(cmd)))
        goto out;
    if (lm_session_create(m, attn, &s, err, sizeof err) ||
        lm_session_append(&s, ids, n, logits, err, sizeof err)) {
        status = tool_fail(TOOL_EXIT_LIBRARY, cmd, "%s", err);
        goto out;
    }
    const double t0 = tool_now();
    const float *last = logits + (n - 1) * V;
    report(&s, 0, 0);
    for (int64_t g = 0; g < o->tokens; g++) {
        int32_t tok = pick(last, V, o->temperature, &rng, scratch);
        putchar(tok & 0xff);
        fflush(stdout);
        if (lm_session_append(&s, &tok, 1, logits, err, sizeof err)) {
            status = tool_fail(TOOL_EXIT_LIBRARY, cmd, "%s", err);
            goto out;
        }
        last = logits;
        if ((g + 1) % o->report_every == 0 || g + 1 == o->tokens) {
            fflush(stdout);
            report(&s, g + 1, tool_now() - t0);
        }
    }
    putchar('\n');
    status = TOOL_EXIT_OK;
out:
    lm_session_free(&s);
    lm_attn_free(m, attn);
    free(logits);
    free(scratch);
    free(ids);
    return status;
}

/* ---- transfer ---------------------------------------------------------------- */

/* Every layer's q, k, v of one forward, copied. */
typedef struct captured {
    const lm_config *c;
    float **q, **k, **v;
} captured;

static int capture_layer(void *user, int64_t l, const float *q, const float *k, const float *v,
                         int64_t n)
{
    captured *cp = user;
    size_t qn = (size_t)(n * cp->c->n_head * cp->c->head_dim);
    size_t kn = (size_t)(n * cp->c->n_kv * cp->c->head_dim);
    if (!(cp->q[l] = malloc(qn * sizeof(float))) || !(cp->k[l] = malloc(kn * sizeof(float))) ||
        !(cp->v[l] = malloc(kn * sizeof(float))))
        return STILL_E_NOMEM;
    memcpy(cp->q[l], q, qn * sizeof(float));
    memcpy(cp->k[l], k, kn * sizeof(float));
    memcpy(cp->v[l], v, kn * sizeof(float));
    return STILL_OK;
}

/* Stage 1 for one layer (SPEC §8): Adam on the exact gradients of the
 * transfer loss against the teacher of the same q, k, v. */
static int fit_layer(const lm_opts *o, const lm_model *m, const lm_attn *a, int64_t l,
                     const captured *cp, int64_t n, tool_param_set *ps, double *first,
                     double *last)
{
    const lm_config *c = &m->cfg;
    still_shape shape = {1, c->n_head, c->n_kv, n, c->head_dim, c->head_dim, STILL_LAYOUT_BNHD};
    float *teacher = malloc((size_t)(n * c->n_head * c->head_dim) * sizeof(float));
    double *mom = NULL, *var = NULL;
    still_tensors t = {0};
    still_adam_config adam;
    int rc = tool_param_set_build(NULL, c->n_head, c->head_dim, 1, ps);
    if (rc || !teacher) {
        free(teacher);
        return STILL_E_NOMEM;
    }
    mom = calloc((size_t)ps->total, sizeof *mom);
    var = calloc((size_t)ps->total, sizeof *var);
    t.dtype = STILL_F32;
    t.q = cp->q[l];
    t.k = cp->k[l];
    t.v = cp->v[l];
    t.o = teacher;
    if (!mom || !var)
        rc = STILL_E_NOMEM;
    else
        rc = still_teacher(&a[l].cfg, &shape, &t);
    t.o = NULL;
    still_adam_default(&adam);
    adam.lr = o->lr;
    still_grads g = tool_param_set_grads(ps);
    for (int64_t s = 0; s <= o->steps && !rc; s++) {
        double loss;
        rc = still_transfer_grad(&a[l].cfg, &shape, &ps->params, &t, teacher, &loss,
                                 s < o->steps ? &g : NULL);
        if (!rc && s < o->steps)
            rc = still_adam_step(&adam, s + 1, (size_t)ps->total, ps->values, ps->grads, mom,
                                 var);
        if (s == 0)
            *first = loss;
        *last = loss;
        tool_progress(s, o->steps, "layer %lld (%s): loss %.4e", (long long)l,
                      lm_attn_names[a[l].kind], loss);
    }
    free(teacher);
    free(mom);
    free(var);
    return rc;
}

static int write_layer(const char *cmd, const char *dir, int64_t l, const tool_param_set *ps)
{
    char path[4096], err[STILL__ERRLEN] = "";
    still__array arrays[TOOL_MAX_PARAMS];
    float *conv = malloc((size_t)ps->total * sizeof *conv);
    if (!conv)
        return tool_fail(TOOL_EXIT_OUTPUT, cmd, "out of memory");
    tool_param_set_arrays(ps, 0, arrays);
    for (int64_t i = 0; i < ps->total; i++)
        conv[i] = (float)ps->values[i];
    for (int i = 0; i < ps->n; i++) {
        arrays[i].dtype = STILL__DT_F4;
        arrays[i].data = conv + ps->offset[i];
    }
    snprintf(path, sizeof path, "%s/layer%lld.safetensors", dir, (long long)l);
    int fd = tool_out_tree_open(cmd, path), rc = TOOL_EXIT_OUTPUT;
    if (fd >= 0)
        rc = tool_out_tree_close(cmd, path, fd,
                                 still__st_write_fd(fd, path, ps->n, ps->names, arrays, err,
                                                    sizeof err),
                                 err);
    free(conv);
    return rc;
}

/* Bits per byte of the held-out text with the parameters of params_dir. */
static int heldout_bpb(const char *cmd, const lm_opts *o, const lm_model *m, const char *spec,
                       const char *params_dir, const int32_t *ids, int64_t n, double *bpb)
{
    char err[STILL__ERRLEN];
    lm_attn *attn;
    eval_row row;
    float *logits = malloc((size_t)(n * m->cfg.vocab) * sizeof *logits);
    double *scratch = malloc((size_t)(2 * m->cfg.vocab) * sizeof *scratch);
    int rc = !logits || !scratch ? STILL_E_NOMEM
                                 : lm_attn_parse(m, spec, &o->ao, params_dir, &attn, err,
                                                 sizeof err);
    if (!rc) {
        rc = lm_forward(m, attn, ids, n, logits, err, sizeof err);
        lm_attn_free(m, attn);
    }
    if (!rc) {
        score(&m->cfg, logits, NULL, ids, n, scratch, &row);
        *bpb = row.bpb;
    }
    free(logits);
    free(scratch);
    return rc ? tool_fail(TOOL_EXIT_LIBRARY, cmd, "%s", err) : TOOL_EXIT_OK;
}

static int lm_transfer(const char *cmd, const lm_opts *o, const lm_model *m)
{
    const lm_config *c = &m->cfg;
    const char *spec = o->n_attn ? o->attn[0] : "still", *tmpdir;
    int64_t max = o->max_bytes ? o->max_bytes : (c->ctx ? c->ctx : 2048), n, nh;
    int32_t *ids = NULL, *held = NULL;
    char path[4096], err[STILL__ERRLEN];
    lm_attn *attn = NULL;
    float *q[4096] = {0}, *k[4096] = {0}, *v[4096] = {0};
    captured cp = {c, q, k, v};
    double before = 0, after = 0, teacher_bpb = 0;
    int status, rc;
    if (c->n_layer > 4096)
        return tool_fail(TOOL_EXIT_INPUT, cmd, "at most 4096 layers");
    if (o->heldout_ids)
        snprintf(path, sizeof path, "%s", o->heldout_ids);
    else
        snprintf(path, sizeof path, "%s/dump_text.txt", o->model);
    if ((status = o->ids ? read_ids_npy(cmd, o->ids, max, c->vocab, &ids, &n)
                         : read_bytes(cmd, o->text, max, c->vocab, &ids, &n)) ||
        (status = o->heldout_ids ? read_ids_npy(cmd, path, max, c->vocab, &held, &nh)
                                 : read_bytes(cmd, path, max, c->vocab, &held, &nh)))
        goto out;
    if ((rc = lm_attn_parse(m, spec, &o->ao, NULL, &attn, err, sizeof err))) {
        status = tool_fail(rc == STILL_E_CONFIG ? TOOL_EXIT_USAGE : TOOL_EXIT_INPUT, cmd, "%s",
                           err);
        goto out;
    }
    for (int64_t l = 0; l < c->n_layer; l++)
        if (attn[l].kind != LM_ATTN_TEACHER && attn[l].cfg.rest == STILL_REST_DROP) {
            /* SPEC §12: no linear branch, so the feature maps have no effect */
            status = tool_fail(TOOL_EXIT_USAGE, cmd,
                               "layer %lld (%s): --rest drop leaves no linear part, no feature "
                               "map to train", (long long)l, lm_attn_names[attn[l].kind]);
            goto out;
        }
    if ((status = tool_out_add_dir(cmd, "--out-dir", o->out_dir, &tmpdir)) ||
        (status = tool_blas_room(cmd)) ||
        (status = heldout_bpb(cmd, o, m, "teacher", NULL, held, nh, &teacher_bpb)) ||
        (status = heldout_bpb(cmd, o, m, spec, NULL, held, nh, &before)))
        goto out;
    lm_attn *teach = NULL;
    lm_attn_opts none = {0};
    if ((rc = lm_attn_parse(m, "teacher", &none, NULL, &teach, err, sizeof err)) ||
        (rc = lm_forward_capture(m, teach, ids, n, NULL, capture_layer, &cp, err,
                                 sizeof err))) {
        lm_attn_free(m, teach);
        status = tool_fail(TOOL_EXIT_LIBRARY, cmd, "teacher: %s", err);
        goto out;
    }
    lm_attn_free(m, teach);
    printf("stage-1 transfer on %s (%lld %s), %lld Adam steps per layer, lr %g\n",
           o->ids ? o->ids : o->text, (long long)n, o->ids ? "tokens" : "bytes",
           (long long)o->steps, o->lr);
    for (int64_t l = 0; l < c->n_layer; l++) {
        if (attn[l].kind == LM_ATTN_TEACHER)
            continue;
        tool_param_set ps;
        double first = 0, last = 0;
        rc = fit_layer(o, m, attn, l, &cp, n, &ps, &first, &last);
        tool_progress_clear();
        if (rc) {
            tool_param_set_free(&ps);
            status = tool_fail(TOOL_EXIT_LIBRARY, cmd, "layer %lld: %s", (long long)l,
                               tool_status_name(rc));
            goto out;
        }
        status = write_layer(cmd, tmpdir, l, &ps);
        tool_param_set_free(&ps);
        if (status)
            goto out;
        printf("layer %lld (%s): transfer loss %.4e -> %.4e\n", (long long)l,
               lm_attn_names[attn[l].kind], first, last);
    }
    if ((status = heldout_bpb(cmd, o, m, spec, tmpdir, held, nh, &after)))
        goto out;
    printf("held-out bits/%s (%s): teacher %.4f, %s before %.4f, after %.4f\n",
           o->heldout_ids ? "token" : "byte", path, teacher_bpb, spec, before, after);
    status = tool_out_commit(cmd);
out:
    for (int64_t l = 0; l < c->n_layer && l < 4096; l++) {
        free(q[l]);
        free(k[l]);
        free(v[l]);
    }
    lm_attn_free(m, attn);
    free(ids);
    free(held);
    return status;
}

/* ---- rank ------------------------------------------------------------------- */

/* The KL and bits/byte of one per-layer choice: kind where use[l], else
 * teacher. */
typedef struct rank_ctx {
    const lm_opts *o;
    const lm_model *m;
    const char *kind;
    const int32_t *ids;
    int64_t n;
    const float *teacher;
    float *logits;
    double *scratch;
    const lm_attn *attn; /* kind in every layer: the error's configuration */
    double *err_layer;   /* [n_layer] mean (o - o_teacher)^2 */
} rank_ctx;

static int rank_eval(const char *cmd, rank_ctx *r, const int *use, eval_row *row)
{
    char spec[4096] = "", err[STILL__ERRLEN];
    size_t k = 0;
    lm_attn *attn;
    for (int64_t l = 0; l < r->m->cfg.n_layer && k + 32 < sizeof spec; l++)
        k += (size_t)snprintf(spec + k, sizeof spec - k, "%s%lld=%s", k ? "," : "",
                              (long long)l, use[l] ? r->kind : "teacher");
    int rc = lm_attn_parse(r->m, spec, &r->o->ao, r->o->params_dir, &attn, err, sizeof err);
    if (!rc) {
        rc = lm_forward(r->m, attn, r->ids, r->n, r->logits, err, sizeof err);
        lm_attn_free(r->m, attn);
    }
    if (rc)
        return tool_fail(rc == STILL_E_CONFIG ? TOOL_EXIT_USAGE : TOOL_EXIT_LIBRARY, cmd, "%s",
                         err);
    score(&r->m->cfg, r->logits, r->teacher, r->ids, r->n, r->scratch, row);
    return TOOL_EXIT_OK;
}

/* SPEC §8's loss of each layer on the teacher's own q, k, v. */
static int layer_error(void *user, int64_t l, const float *q, const float *k, const float *v,
                       int64_t n)
{
    rank_ctx *r = user;
    const lm_config *c = &r->m->cfg;
    still_shape shape = {1, c->n_head, c->n_kv, n, c->head_dim, c->head_dim, STILL_LAYOUT_BNHD};
    size_t cnt = (size_t)(n * c->n_head * c->head_dim);
    float *o = malloc(cnt * sizeof *o), *ot = malloc(cnt * sizeof *ot);
    still_tensors t = {0};
    int rc = o && ot ? STILL_OK : STILL_E_NOMEM;
    t.dtype = STILL_F32;
    t.q = q;
    t.k = k;
    t.v = v;
    t.o = ot;
    if (!rc && !(rc = still_teacher(&r->attn[l].cfg, &shape, &t))) {
        t.o = o;
        rc = still_forward(&r->attn[l].cfg, &shape, &r->attn[l].params, &t);
    }
    double e = 0;
    for (size_t i = 0; !rc && i < cnt; i++)
        e += ((double)o[i] - ot[i]) * ((double)o[i] - ot[i]);
    r->err_layer[l] = rc ? NAN : e / (double)cnt;
    free(o);
    free(ot);
    return rc;
}

static int lm_rank(const char *cmd, const lm_opts *o, const lm_model *m)
{
    const int64_t L = m->cfg.n_layer, V = m->cfg.vocab;
    const char *kind = o->n_attn ? o->attn[0] : "still";
    char path[4096], err[STILL__ERRLEN];
    int64_t max = o->max_bytes ? o->max_bytes : (m->cfg.ctx ? m->cfg.ctx : 2048), n = 0;
    int32_t *ids = NULL;
    int status;
    if (o->n_attn > 1 || (strcmp(kind, "still") && strcmp(kind, "window") &&
                          strcmp(kind, "linear") && strcmp(kind, "sinks") &&
                          strcmp(kind, "terraced")))
        return tool_fail(TOOL_EXIT_USAGE, cmd,
                         "rank takes one --attn: still, window, linear, sinks or terraced");
    if (o->budget > L)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--budget %lld: the model has %lld layers",
                         (long long)o->budget, (long long)L);
    if (o->ids || o->text)
        snprintf(path, sizeof path, "%s", o->ids ? o->ids : o->text);
    else
        snprintf(path, sizeof path, "%s/dump_text.txt", o->model);
    if ((status = o->ids ? read_ids_npy(cmd, path, max, V, &ids, &n)
                         : read_bytes(cmd, path, max, V, &ids, &n)))
        return status;
    rank_ctx r = {o, m, kind, ids, n, NULL, NULL, NULL, NULL, NULL};
    float *teacher = malloc((size_t)(n * V) * sizeof(float));
    double *kl_only = calloc((size_t)L, sizeof(double)), *kl_kept = calloc((size_t)L, sizeof(double));
    int *use = calloc((size_t)L, sizeof(int)), *order = calloc((size_t)L, sizeof(int));
    lm_attn *all = NULL, *teach = NULL;
    lm_attn_opts none = {0};
    eval_row row;
    r.logits = malloc((size_t)(n * V) * sizeof(float));
    r.scratch = malloc((size_t)(2 * V) * sizeof(double));
    r.err_layer = calloc((size_t)L, sizeof(double));
    if (!teacher || !kl_only || !kl_kept || !use || !order || !r.logits || !r.scratch ||
        !r.err_layer) {
        status = tool_fail(TOOL_EXIT_LIBRARY, cmd, "out of memory");
        goto out;
    }
    if ((status = tool_blas_room(cmd)))
        goto out;
    int rc = lm_attn_parse(m, kind, &o->ao, o->params_dir, &all, err, sizeof err);
    if (!rc)
        rc = lm_attn_parse(m, "teacher", &none, NULL, &teach, err, sizeof err);
    r.attn = all;
    if (!rc)
        rc = lm_forward_capture(m, teach, ids, n, teacher, layer_error, &r, err, sizeof err);
    if (rc) {
        status = tool_fail(TOOL_EXIT_LIBRARY, cmd, "%s", err);
        goto out;
    }
    r.teacher = teacher;
    for (int64_t l = 0; l < L; l++) { /* only l linearized; only l kept softmax */
        tool_progress(l, L, "layer %lld", (long long)l);
        memset(use, 0, (size_t)L * sizeof *use);
        use[l] = 1;
        if ((status = rank_eval(cmd, &r, use, &row)))
            goto out;
        kl_only[l] = row.kl;
        for (int64_t j = 0; j < L; j++)
            use[j] = j != l;
        if ((status = rank_eval(cmd, &r, use, &row)))
            goto out;
        kl_kept[l] = row.kl;
    }
    tool_progress_clear();
    /* the ranking: the layer whose softmax alone helps most first (lowest
     * KL when it is the only one kept); ties to the lower layer */
    for (int64_t l = 0; l < L; l++)
        order[l] = (int)l;
    for (int64_t a = 1; a < L; a++)
        for (int64_t b = a; b > 0 && kl_kept[order[b]] < kl_kept[order[b - 1]]; b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    const char *unit = o->ids ? "token" : "byte";
    printf("model %s, %s %s (%lld %ss), linearized with %s; KL(teacher || model) in nats "
           "per %s\n", o->model, o->ids ? "ids" : "text", path, (long long)n, unit, kind, unit);
    printf("%-6s %14s %16s %16s %6s\n", "layer", "attn error", "KL only it lin.",
           "KL only it soft.", "rank");
    for (int64_t l = 0; l < L; l++) {
        int64_t rank = 0;
        while (order[rank] != l)
            rank++;
        printf("%-6lld %14.4e %16.4f %16.4f %6lld\n", (long long)l, r.err_layer[l], kl_only[l],
               kl_kept[l], (long long)rank + 1);
    }
    /* greedy: from every layer linearized, keep softmax the layer that
     * lowers the KL most, budget times */
    for (int64_t j = 0; j < L; j++)
        use[j] = 1;
    printf("greedy softmax layers for a budget of %lld:", (long long)o->budget);
    for (int64_t b = 0; b < o->budget; b++) {
        int64_t best = -1;
        double best_kl = INFINITY;
        for (int64_t l = 0; l < L; l++) {
            if (!use[l])
                continue;
            use[l] = 0;
            status = rank_eval(cmd, &r, use, &row);
            use[l] = 1;
            if (status)
                goto out;
            if (row.kl < best_kl) {
                best_kl = row.kl;
                best = l;
            }
        }
        use[best] = 0;
        printf(" %lld (KL %.4f)", (long long)best, best_kl);
    }
    printf("\n%-22s %10s %10s\n", "softmax layers kept", o->ids ? "bits/token" : "bits/byte",
           "KL");
    for (int64_t j = 0; j < L; j++)
        use[j] = 1;
    for (int64_t kept = 0; kept <= L; kept++) {
        char which[256] = "none";
        size_t w = 0;
        if (kept) {
            use[order[kept - 1]] = 0;
            for (int64_t i = 0; i < kept && w + 8 < sizeof which; i++)
                w += (size_t)snprintf(which + w, sizeof which - w, "%s%d", i ? "," : "",
                                      order[i]);
        }
        if ((status = rank_eval(cmd, &r, use, &row)))
            goto out;
        printf("%-3lld %-18s %10.4f %10.4f\n", (long long)kept, which, row.bpb, row.kl);
    }
    status = TOOL_EXIT_OK;
out:
    lm_attn_free(m, all);
    lm_attn_free(m, teach);
    free(teacher);
    free(kl_only);
    free(kl_kept);
    free(use);
    free(order);
    free(r.logits);
    free(r.scratch);
    free(r.err_layer);
    free(ids);
    return status;
}

int cmd_lm(int argc, char **argv)
{
    const char *cmd = "lm";
    lm_opts o;
    int help, status;
    if ((status = lm_parse(cmd, argc, argv, &o, &help)))
        return status;
    if (help) {
        lm_usage(stdout);
        return TOOL_EXIT_OK;
    }
    lm_model m;
    char err[STILL__ERRLEN];
    int rc = lm_model_load(o.model, &m, err, sizeof err);
    if (rc)
        return tool_fail(rc == STILL_E_NOMEM ? TOOL_EXIT_LIBRARY : TOOL_EXIT_INPUT, cmd, "%s",
                         err);
    if (!strcmp(o.mode, "eval"))
        status = lm_eval(cmd, &o, &m);
    else if (!strcmp(o.mode, "generate"))
        status = lm_generate(cmd, &o, &m);
    else if (!strcmp(o.mode, "rank"))
        status = lm_rank(cmd, &o, &m);
    else
        status = lm_transfer(cmd, &o, &m);
    lm_model_free(&m);
    return status;
}
