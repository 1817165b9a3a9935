/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * test_lm.c -- the model runner of SPEC §18 (tools/lm_model.c, `still lm`).
 *
 * Each test writes a tiny random model (config.json and two safetensors
 * shards, one float16 and one float32, with weights exactly representable
 * in float16) and compares the runner with:
 * - a float64 forward of the same model written here from SPEC §18 alone
 *   (plain loops, no BLAS, no libstill): full-softmax logits agree to
 *   1e-4 of their largest magnitude (float32 arithmetic, d_model 32);
 * - itself under Hugging Face Llama names (the same logits, bitwise);
 * - its own prefill: streaming one token at a time through the decode
 *   states gives the prefill's logits at every position (SPEC I6), for
 *   every kind of attention;
 * - when the real tiny-lm is present (STILL_LM_MODEL, or
 *   ../shared/data/tiny-lm beside the source tree), its bits per byte on
 *   the held-out dump_text.txt: 1.16495, from an independent float64 NumPy
 *   forward of the float16 weights.
 */
#define _POSIX_C_SOURCE 200809L
#include "lm_model.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { V = 64, D = 32, NL = 2, HQ = 4, HK = 2, HD = 8, FF = 48, NTOK = 70 };
#define THETA 500.0

/* The weights in double, each exactly a float16 (k/256, |k| < 1024). */
typedef struct ref_model {
    double emb[V * D], norm[D];
    double n1[NL][D], wq[NL][HQ * HD * D], wk[NL][HK * HD * D], wv[NL][HK * HD * D],
        wo[NL][D * HQ * HD], n2[NL][D], wg[NL][FF * D], wu[NL][FF * D], wd[NL][D * FF];
} ref_model;

static uint64_t rng_state;
static double gauss(void)
{
    double s = 0;
    for (int i = 0; i < 12; i++) { /* Irwin-Hall: close enough to N(0,1) */
        rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
        s += (double)(rng_state >> 11) * 0x1p-53;
    }
    return s - 6.0;
}

static void fill(double *x, int n, double mean, double sd)
{
    for (int i = 0; i < n; i++) {
        double k = round((mean + sd * gauss()) * 256.0);
        k = fmax(-1023, fmin(1023, k));
        x[i] = k / 256.0;
    }
}

static void make_model(ref_model *m, uint64_t seed)
{
    rng_state = seed;
    fill(m->emb, V * D, 0, 1);
    fill(m->norm, D, 1, 0.2);
    for (int l = 0; l < NL; l++) {
        fill(m->n1[l], D, 1, 0.2);
        fill(m->n2[l], D, 1, 0.2);
        fill(m->wq[l], HQ * HD * D, 0, 0.5);
        fill(m->wk[l], HK * HD * D, 0, 0.5);
        fill(m->wv[l], HK * HD * D, 0, 0.3);
        fill(m->wo[l], D * HQ * HD, 0, 0.15);
        fill(m->wg[l], FF * D, 0, 0.3);
        fill(m->wu[l], FF * D, 0, 0.3);
        fill(m->wd[l], D * FF, 0, 0.12);
    }
}

/* ---- writing the files ----------------------------------------------------- */

/* Not ck_assert: the writer also runs outside a test (--write-model), where
 * Check cannot record a passing assertion. */
#define REQUIRE(c)                                  \
    do {                                            \
        if (!(c))                                   \
            ck_abort_msg("%s failed", #c);          \
    } while (0)

static uint16_t to_half(double v) /* v exactly a normal float16 or 0 */
{
    if (v == 0)
        return 0;
    int e;
    double mant = frexp(fabs(v), &e); /* [0.5, 1) */
    uint16_t bits = (uint16_t)(((e - 1 + 15) << 10) | (uint16_t)((mant * 2 - 1) * 1024));
    return v < 0 ? (uint16_t)(bits | 0x8000) : bits;
}

typedef struct tensor {
    const char *name;
    const double *data;
    int rows, cols; /* cols 0: a vector */
} tensor;

static void write_shard(const char *path, const tensor *t, int n, int half)
{
    char header[8192];
    size_t k = 0, off = 0, es = half ? 2 : 4;
    k += (size_t)snprintf(header + k, sizeof header - k, "{");
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)t[i].rows * (size_t)(t[i].cols ? t[i].cols : 1) * es;
        char shape[64];
        if (t[i].cols)
            snprintf(shape, sizeof shape, "[%d,%d]", t[i].rows, t[i].cols);
        else
            snprintf(shape, sizeof shape, "[%d]", t[i].rows);
        k += (size_t)snprintf(header + k, sizeof header - k,
                              "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                              i ? "," : "", t[i].name, half ? "F16" : "F32", shape, off,
                              off + bytes);
        off += bytes;
    }
    k += (size_t)snprintf(header + k, sizeof header - k, "}");
    while (k % 8)
        header[k++] = ' ';
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)k >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, k, f);
    for (int i = 0; i < n; i++) {
        int count = t[i].rows * (t[i].cols ? t[i].cols : 1);
        for (int j = 0; j < count; j++) {
            if (half) {
                uint16_t h = to_half(t[i].data[j]);
                unsigned char b[2] = {(unsigned char)h, (unsigned char)(h >> 8)};
                fwrite(b, 1, 2, f);
            } else {
                float x = (float)t[i].data[j];
                uint32_t u;
                memcpy(&u, &x, 4);
                unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8),
                                      (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
                fwrite(b, 1, 4, f);
            }
        }
    }
    REQUIRE(fclose(f) == 0);
}

static char names[NL * 9 + 2][96];

/* Our names (hf = 0: shard 0 float16 with emb and layer 0, shard 1 float32)
 * or Hugging Face Llama's (one float32 shard, a Llama config.json). */
static void write_model(const char *dir, const ref_model *m, int hf)
{
    char path[512];
    tensor t[NL * 9 + 2];
    int n = 0;
    static const char *const ours[9] = {"n1", "q", "k", "v", "o", "n2", "gate", "up", "down"};
    static const char *const theirs[9] = {
        "input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
        "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
        "mlp.down_proj"};
    snprintf(names[n], sizeof names[n], "%s", hf ? "model.embed_tokens.weight" : "emb.weight");
    t[n] = (tensor){names[n], m->emb, V, D};
    n++;
    for (int l = 0; l < NL; l++) {
        const double *data[9] = {m->n1[l], m->wq[l], m->wk[l], m->wv[l], m->wo[l],
                                 m->n2[l], m->wg[l], m->wu[l], m->wd[l]};
        const int rows[9] = {D, HQ * HD, HK * HD, HK * HD, D, D, FF, FF, D};
        const int cols[9] = {0, D, D, D, HQ * HD, 0, D, D, FF};
        for (int i = 0; i < 9; i++) {
            if (hf)
                snprintf(names[n], sizeof names[n], "model.layers.%d.%s.weight", l, theirs[i]);
            else
                snprintf(names[n], sizeof names[n], "blocks.%d.%s.weight", l, ours[i]);
            t[n] = (tensor){names[n], data[i], rows[i], cols[i]};
            n++;
        }
    }
    snprintf(names[n], sizeof names[n], "%s", hf ? "model.norm.weight" : "norm.weight");
    t[n] = (tensor){names[n], m->norm, D, 0};
    n++;
    if (hf) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        write_shard(path, t, n, 0);
    } else {
        snprintf(path, sizeof path, "%s/model-00.safetensors", dir);
        write_shard(path, t, 10, 1);
        snprintf(path, sizeof path, "%s/model-01.safetensors", dir);
        write_shard(path, t + 10, n - 10, 0);
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    if (hf)
        fprintf(f, "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": %d, "
                   "\"hidden_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                   "\"num_key_value_heads\": %d, \"intermediate_size\": %d, "
                   "\"max_position_embeddings\": 128, \"rope_theta\": %.1f, "
                   "\"rms_norm_eps\": 1.1920928955078125e-07, \"tie_word_embeddings\": true}\n",
                V, D, NL, HQ, HK, FF, THETA);
    else
        fprintf(f, "{\"vocab\": %d, \"d_model\": %d, \"n_layer\": %d, \"n_head\": %d, "
                   "\"n_kv\": %d, \"head_dim\": %d, \"d_ff\": %d, \"ctx\": 128, "
                   "\"rope_theta\": %.1f}\n",
                V, D, NL, HQ, HK, HD, FF, THETA);
    REQUIRE(fclose(f) == 0);
}

/* ---- the float64 forward (SPEC §18) ---------------------------------------- */

static void ref_rmsnorm(const double *x, const double *w, double *y)
{
    double ss = 0;
    for (int i = 0; i < D; i++)
        ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / D + FLT_EPSILON);
    for (int i = 0; i < D; i++)
        y[i] = x[i] * r * w[i];
}

static void ref_matvec(const double *W, const double *x, int out, int in, double *y)
{
    for (int o = 0; o < out; o++) {
        double s = 0;
        for (int i = 0; i < in; i++)
            s += W[o * in + i] * x[i];
        y[o] = s;
    }
}

static void ref_rope(double *x, int pos) /* one head of HD */
{
    for (int i = 0; i < HD / 2; i++) {
        double ang = pos * pow(THETA, -2.0 * i / HD);
        double a = x[i], b = x[i + HD / 2];
        x[i] = a * cos(ang) - b * sin(ang);
        x[i + HD / 2] = b * cos(ang) + a * sin(ang);
    }
}

static void ref_forward(const ref_model *m, const int32_t *ids, int n, double *logits)
{
    static double x[NTOK][D], q[NTOK][HQ * HD], k[NTOK][HK * HD], v[NTOK][HK * HD];
    double h[D], a[HQ * HD], g[FF], u[FF], y[D], p[NTOK];
    for (int t = 0; t < n; t++)
        memcpy(x[t], m->emb + ids[t] * D, sizeof x[t]);
    for (int l = 0; l < NL; l++) {
        for (int t = 0; t < n; t++) {
            ref_rmsnorm(x[t], m->n1[l], h);
            ref_matvec(m->wq[l], h, HQ * HD, D, q[t]);
            ref_matvec(m->wk[l], h, HK * HD, D, k[t]);
            ref_matvec(m->wv[l], h, HK * HD, D, v[t]);
            for (int hh = 0; hh < HQ; hh++)
                ref_rope(q[t] + hh * HD, t);
            for (int hh = 0; hh < HK; hh++)
                ref_rope(k[t] + hh * HD, t);
        }
        for (int t = 0; t < n; t++) {
            for (int hh = 0; hh < HQ; hh++) { /* causal softmax, GQA */
                int kv = hh / (HQ / HK);
                double mx = -INFINITY, z = 0;
                for (int j = 0; j <= t; j++) {
                    double s = 0;
                    for (int i = 0; i < HD; i++)
                        s += q[t][hh * HD + i] * k[j][kv * HD + i];
                    p[j] = s / sqrt((double)HD);
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j <= t; j++)
                    z += p[j] = exp(p[j] - mx);
                for (int i = 0; i < HD; i++) {
                    double s = 0;
                    for (int j = 0; j <= t; j++)
                        s += p[j] * v[j][kv * HD + i];
                    a[hh * HD + i] = s / z;
                }
            }
            ref_matvec(m->wo[l], a, D, HQ * HD, y);
            for (int i = 0; i < D; i++)
                x[t][i] += y[i];
        }
        for (int t = 0; t < n; t++) {
            ref_rmsnorm(x[t], m->n2[l], h);
            ref_matvec(m->wg[l], h, FF, D, g);
            ref_matvec(m->wu[l], h, FF, D, u);
            for (int i = 0; i < FF; i++)
                g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            ref_matvec(m->wd[l], g, D, FF, y);
            for (int i = 0; i < D; i++)
                x[t][i] += y[i];
        }
    }
    for (int t = 0; t < n; t++) {
        ref_rmsnorm(x[t], m->norm, h);
        ref_matvec(m->emb, h, V, D, logits + t * V);
    }
}

/* ---- fixtures ---------------------------------------------------------------- */

static ref_model model_d;
static char dir[256], hf_dir[256];
static int32_t ids[NTOK];

static void make_dir(char *buf, size_t len, const char *tag)
{
    snprintf(buf, len, "/tmp/test_lm_%s_XXXXXX", tag);
    ck_assert_ptr_nonnull(mkdtemp(buf));
}

static void remove_dir(const char *d)
{
    const char *files[] = {"config.json", "model-00.safetensors", "model-01.safetensors",
                           "model.safetensors"};
    char path[512];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", d, files[i]);
        unlink(path);
    }
    rmdir(d);
}

static void setup(void)
{
    make_model(&model_d, 7);
    make_dir(dir, sizeof dir, "ours");
    make_dir(hf_dir, sizeof hf_dir, "hf");
    write_model(dir, &model_d, 0);
    write_model(hf_dir, &model_d, 1);
    for (int t = 0; t < NTOK; t++)
        ids[t] = (int32_t)((t * 37 + t * t * 11 + 5) % V);
}

static void teardown(void)
{
    remove_dir(dir);
    remove_dir(hf_dir);
}

static lm_model load(const char *d)
{
    lm_model m;
    char err[256] = "";
    int rc = lm_model_load(d, &m, err, sizeof err);
    ck_assert_msg(rc == STILL_OK, "load %s: %s", d, err);
    return m;
}

static float *logits_of(const lm_model *m, const char *spec, const lm_attn_opts *o)
{
    lm_attn *attn;
    char err[256] = "";
    float *lg = malloc(sizeof(float) * NTOK * V);
    ck_assert_ptr_nonnull(lg);
    ck_assert_msg(lm_attn_parse(m, spec, o, NULL, &attn, err, sizeof err) == STILL_OK, "%s",
                  err);
    ck_assert_msg(lm_forward(m, attn, ids, NTOK, lg, err, sizeof err) == STILL_OK, "%s", err);
    lm_attn_free(m, attn);
    return lg;
}

static double max_abs(const float *a, int64_t n)
{
    double mx = 0;
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, fabs((double)a[i]));
    return mx;
}

/* ---- tests ---------------------------------------------------------------- */

START_TEST(test_teacher_logits_equal_float64_reference)
{
    static double ref[NTOK * V];
    lm_model m = load(dir);
    lm_attn_opts o = {0};
    float *lg = logits_of(&m, "teacher", &o);
    ref_forward(&model_d, ids, NTOK, ref);
    double err = 0, mx = 0;
    for (int i = 0; i < NTOK * V; i++) {
        err = fmax(err, fabs(lg[i] - ref[i]));
        mx = fmax(mx, fabs(ref[i]));
    }
    ck_assert_msg(mx > 1.0, "a degenerate model: max |logit| %g", mx);
    ck_assert_msg(err <= 1e-4 * mx, "max |float32 - float64| %g > 1e-4 * %g", err, mx);
    free(lg);
    lm_model_free(&m);
}
END_TEST

START_TEST(test_hugging_face_names_give_the_same_logits)
{
    lm_model a = load(dir), b = load(hf_dir);
    ck_assert_int_eq(b.cfg.head_dim, HD); /* from hidden_size / heads */
    lm_attn_opts o = {0};
    float *la = logits_of(&a, "teacher", &o), *lb = logits_of(&b, "teacher", &o);
    ck_assert_int_eq(memcmp(la, lb, sizeof(float) * NTOK * V), 0);
    free(la);
    free(lb);
    lm_model_free(&a);
    lm_model_free(&b);
}
END_TEST

/* Streaming = prefill (SPEC I6) at every position, per kind of attention. */
static void check_stream_opts(const char *spec, int64_t first_block, const lm_attn_opts *opts)
{
    lm_model m = load(dir);
    lm_attn_opts o = *opts;
    float *pre = logits_of(&m, spec, &o), *step = malloc(sizeof(float) * NTOK * V);
    lm_attn *attn;
    lm_session s;
    char err[256] = "";
    ck_assert_ptr_nonnull(step);
    ck_assert_int_eq(lm_attn_parse(&m, spec, &o, NULL, &attn, err, sizeof err), STILL_OK);
    ck_assert_msg(lm_session_create(&m, attn, &s, err, sizeof err) == STILL_OK, "%s", err);
    ck_assert_int_eq(lm_session_append(&s, ids, first_block, step, err, sizeof err), STILL_OK);
    for (int64_t t = first_block; t < NTOK; t++)
        ck_assert_msg(lm_session_append(&s, ids + t, 1, step + t * V, err, sizeof err) ==
                          STILL_OK, "%s", err);
    ck_assert_int_eq(s.position, NTOK);
    double mx = max_abs(pre, NTOK * V);
    for (int64_t t = 0; t < NTOK; t++) {
        double e = 0;
        for (int i = 0; i < V; i++)
            e = fmax(e, fabs(pre[t * V + i] - step[t * V + i]));
        ck_assert_msg(e <= 1e-4 * mx,
                      "%s (rest %d): position %lld: |decode - prefill| %g > 1e-4 * %g", spec,
                      o.rest, (long long)t, e, mx);
    }
    lm_session_free(&s);
    lm_attn_free(&m, attn);
    free(pre);
    free(step);
    lm_model_free(&m);
}

static void check_stream(const char *spec, int64_t first_block)
{
    lm_attn_opts o = {.chunk = 8, .topk = 2, .window = 8, .cap = 4};
    check_stream_opts(spec, first_block, &o);
}

START_TEST(test_generate_equals_prefill_at_every_position)
{
    static const char *const specs[] = {"teacher", "still", "window", "linear",
                                        "0=still,1=window"};
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        check_stream(specs[i], 0);
        check_stream(specs[i], 19);
    }
}
END_TEST

/* The hybrid family (SPEC §12-14) through the decode states: sinks and
 * terraced, all layers or mixed, with the rest linear or dropped. */
START_TEST(test_generate_equals_prefill_sinks_terraced)
{
    static const char *const specs[] = {"sinks", "terraced", "0=sinks,1=terraced",
                                        "0=window,1=sinks"};
    for (int rest = STILL_REST_LINEAR; rest <= STILL_REST_DROP; rest++)
        for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
            lm_attn_opts o = {.chunk = 8, .window = 8, .sinks = 3, .has_sinks = 1,
                              .rest = rest};
            check_stream_opts(specs[i], 0, &o);
            check_stream_opts(specs[i], 19, &o);
        }
}
END_TEST

/* Routing sinks with s + w >= N keeps every key exact (SPEC §13): the
 * teacher's logits, whatever the rest; and the options reach the config. */
START_TEST(test_sinks_covering_every_key_is_the_teacher)
{
    lm_model m = load(dir);
    lm_attn_opts t = {0};
    float *teacher = logits_of(&m, "teacher", &t);
    double mx = max_abs(teacher, NTOK * V);
    for (int rest = STILL_REST_LINEAR; rest <= STILL_REST_DROP; rest++) {
        lm_attn_opts o = {.window = NTOK - 5, .sinks = 5, .has_sinks = 1, .rest = rest};
        float *lg = logits_of(&m, "sinks", &o);
        double e = 0;
        for (int64_t i = 0; i < NTOK * V; i++)
            e = fmax(e, fabs((double)lg[i] - teacher[i]));
        ck_assert_msg(e <= 1e-4 * mx, "rest %d: |sinks - teacher| %g", rest, e);
        free(lg);
    }
    /* one sink fewer: the first query that misses a key differs */
    lm_attn_opts o = {.window = NTOK - 5, .sinks = 4, .has_sinks = 1, .rest = STILL_REST_DROP};
    float *lg = logits_of(&m, "sinks", &o);
    double e = 0;
    for (int64_t i = 0; i < NTOK * V; i++)
        e = fmax(e, fabs((double)lg[i] - teacher[i]));
    ck_assert_msg(e > 1e-4 * mx, "a missed key changed nothing (%g)", e);
    free(lg);
    lm_attn *attn;
    char err[256];
    ck_assert_int_eq(lm_attn_parse(&m, "0=sinks,1=terraced", &o, NULL, &attn, err, sizeof err),
                     STILL_OK);
    ck_assert_int_eq(attn[0].cfg.routing, STILL_ROUTING_SINKS);
    ck_assert_int_eq(attn[0].cfg.sinks, 4);
    ck_assert_int_eq(attn[0].cfg.rest, STILL_REST_DROP);
    ck_assert_int_eq(attn[1].cfg.routing, STILL_ROUTING_TERRACED);
    ck_assert_int_eq(attn[1].cfg.window, NTOK - 5);
    lm_attn_free(&m, attn);
    free(teacher);
    lm_model_free(&m);
}
END_TEST

START_TEST(test_state_of_capped_still_stays_flat_teacher_grows)
{
    lm_model m = load(dir);
    lm_attn_opts o = {.chunk = 8, .topk = 2, .cap = 4};
    const char *specs[2] = {"still", "teacher"};
    size_t at40[2], at70[2];
    for (int k = 0; k < 2; k++) {
        lm_attn *attn;
        lm_session s;
        char err[256];
        ck_assert_int_eq(lm_attn_parse(&m, specs[k], &o, NULL, &attn, err, sizeof err), 0);
        ck_assert_int_eq(lm_session_create(&m, attn, &s, err, sizeof err), 0);
        ck_assert_int_eq(lm_session_append(&s, ids, 40, NULL, err, sizeof err), 0);
        ck_assert_int_eq(lm_session_layer_bytes(&s, 1, &at40[k]), 0);
        ck_assert_int_eq(lm_session_append(&s, ids + 40, 30, NULL, err, sizeof err), 0);
        ck_assert_int_eq(lm_session_layer_bytes(&s, 1, &at70[k]), 0);
        lm_session_free(&s);
        lm_attn_free(&m, attn);
    }
    ck_assert_uint_eq(at70[0], at40[0]);
    ck_assert_uint_gt(at70[1], at40[1]);
    lm_model_free(&m);
}
END_TEST

START_TEST(test_attention_specs_per_layer_and_refusals)
{
    lm_model m = load(dir);
    lm_attn_opts o = {0};
    lm_attn *attn;
    char err[256], text[128];
    ck_assert_int_eq(lm_attn_parse(&m, "1=linear", &o, NULL, &attn, err, sizeof err), 0);
    ck_assert_int_eq(attn[0].kind, LM_ATTN_TEACHER);
    ck_assert_int_eq(attn[1].kind, LM_ATTN_LINEAR);
    lm_attn_text(&m, attn, text, sizeof text);
    ck_assert_str_eq(text, "0=teacher,1=linear");
    lm_attn_free(&m, attn);
    const char *bad[] = {"2=still", "0=fast", "still,", "=still", "0:still", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(lm_attn_parse(&m, bad[i], &o, NULL, &attn, err, sizeof err) ==
                          STILL_E_CONFIG, "'%s' accepted", bad[i]);
    /* a token outside the vocabulary is an error, not a read out of bounds */
    int32_t bad_ids[2] = {1, V};
    float lg[2 * V];
    ck_assert_int_eq(lm_attn_parse(&m, "teacher", &o, NULL, &attn, err, sizeof err), 0);
    ck_assert_int_eq(lm_forward(&m, attn, bad_ids, 2, lg, err, sizeof err), STILL_E_SHAPE);
    lm_attn_free(&m, attn);
    lm_model_free(&m);
}
END_TEST

START_TEST(test_missing_or_misshapen_tensor_is_named)
{
    char path[512], err[256] = "";
    lm_model m;
    /* drop layer 1's k: the float32 shard rewritten without it */
    tensor t[1] = {{"norm.weight", model_d.norm, D, 0}};
    snprintf(path, sizeof path, "%s/model-01.safetensors", dir);
    write_shard(path, t, 1, 0);
    ck_assert_int_eq(lm_model_load(dir, &m, err, sizeof err), STILL_E_FORMAT);
    ck_assert_msg(strstr(err, "blocks.1.n1.weight") != NULL, "%s", err);
    /* the right name with the wrong shape */
    tensor u[2] = {{"model.embed_tokens.weight", model_d.emb, V, D},
                   {"model.norm.weight", model_d.emb, D + 1, 0}};
    snprintf(path, sizeof path, "%s/model.safetensors", hf_dir);
    write_shard(path, u, 2, 0);
    ck_assert_int_eq(lm_model_load(hf_dir, &m, err, sizeof err), STILL_E_FORMAT);
    ck_assert_msg(strstr(err, "model.norm.weight: expected shape [32]") != NULL, "%s", err);
}
END_TEST

/* The real model, when present: its bits per byte on the held-out text. */
START_TEST(test_real_tiny_lm_bits_per_byte)
{
    /* STILL_LM_MODEL, or ../shared (or ../../shared, from a worktree) beside
     * the source tree */
    const char *d = getenv("STILL_LM_MODEL"), *top = getenv("STILL_TOP_SRCDIR");
    char path[4096], cfg[4200];
    for (int up = 1; !d && up <= 2; up++) {
        snprintf(path, sizeof path, "%s/%sshared/data/tiny-lm", top ? top : "..",
                 up == 1 ? "../" : "../../");
        snprintf(cfg, sizeof cfg, "%s/model-01.safetensors", path);
        if (!access(cfg, R_OK))
            d = path;
    }
    if (!d) {
        fprintf(stderr, "# the real tiny-lm is not here: skipped\n");
        return;
    }
    lm_model m = load(d);
    char text_path[4200];
    snprintf(text_path, sizeof text_path, "%s/dump_text.txt", d);
    FILE *f = fopen(text_path, "rb");
    ck_assert_ptr_nonnull(f);
    int32_t *t = malloc(sizeof(int32_t) * 2048);
    int64_t n = 0;
    int c;
    while (n < 2048 && (c = fgetc(f)) != EOF)
        t[n++] = c;
    fclose(f);
    ck_assert_int_eq(n, 2048);
    float *lg = malloc(sizeof(float) * 2048 * 256);
    double lp[256], bits = 0;
    lm_attn *attn;
    lm_attn_opts o = {0};
    char err[256];
    ck_assert_int_eq(lm_attn_parse(&m, "teacher", &o, NULL, &attn, err, sizeof err), 0);
    ck_assert_msg(lm_forward(&m, attn, t, n, lg, err, sizeof err) == 0, "%s", err);
    for (int64_t i = 0; i + 1 < n; i++) {
        lm_log_softmax(lg + i * 256, 256, lp);
        bits -= lp[t[i + 1]] / log(2.0);
    }
    bits /= (double)(n - 1);
    ck_assert_msg(fabs(bits - 1.16495) < 2e-4, "bits/byte %.6f, expected 1.16495", bits);
    lm_attn_free(&m, attn);
    free(lg);
    free(t);
    lm_model_free(&m);
}
END_TEST

static Suite *lm_suite(void)
{
    Suite *s = suite_create("lm");
    TCase *tc = tcase_create("model");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_teacher_logits_equal_float64_reference);
    tcase_add_test(tc, test_hugging_face_names_give_the_same_logits);
    tcase_add_test(tc, test_generate_equals_prefill_at_every_position);
    tcase_add_test(tc, test_generate_equals_prefill_sinks_terraced);
    tcase_add_test(tc, test_sinks_covering_every_key_is_the_teacher);
    tcase_add_test(tc, test_state_of_capped_still_stays_flat_teacher_grows);
    tcase_add_test(tc, test_attention_specs_per_layer_and_refusals);
    tcase_add_test(tc, test_missing_or_misshapen_tensor_is_named);
    tcase_add_test(tc, test_real_tiny_lm_bits_per_byte);
    suite_add_tcase(s, tc);
    return s;
}

/* The bytes of text as token ids in a .npy of dtype i4, i8 or f8 (its own
 * header code, not lib/npy.c's), of shape (n,), or (2, n/2) with rows 2;
 * plus is added to the last id. */
static int write_ids(const char *out, const char *dtype, const char *text, int rows, long plus)
{
    FILE *f = fopen(text, "rb");
    static long ids_buf[1 << 16];
    long n = 0;
    int c;
    if (!f)
        return 1;
    while (n < (1 << 16) && (c = fgetc(f)) != EOF)
        ids_buf[n++] = c;
    fclose(f);
    if (rows == 2)
        n -= n % 2;
    if (n)
        ids_buf[n - 1] += plus;
    size_t item = strcmp(dtype, "i4") ? 8 : 4;
    const char *descr = !strcmp(dtype, "i4") ? "<i4" : !strcmp(dtype, "i8") ? "<i8" : "<f8";
    char dict[128];
    int len = rows == 2 ? snprintf(dict, sizeof dict,
                                   "{'descr': '%s', 'fortran_order': False, 'shape': (2, %ld), }",
                                   descr, n / 2)
                        : snprintf(dict, sizeof dict,
                                   "{'descr': '%s', 'fortran_order': False, 'shape': (%ld,), }",
                                   descr, n);
    int total = (10 + len + 1 + 63) / 64 * 64; /* the header padded to 64 bytes */
    if (!(f = fopen(out, "wb")))
        return 1;
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc((total - 10) & 0xff, f);
    fputc((total - 10) >> 8, f);
    fwrite(dict, 1, (size_t)len, f);
    for (int i = 10 + len; i < total - 1; i++)
        fputc(' ', f);
    fputc('\n', f);
    for (long i = 0; i < n; i++) {
        unsigned char b[8];
        uint64_t u;
        if (item == 4) {
            uint32_t w = (uint32_t)(int32_t)ids_buf[i];
            for (int k = 0; k < 4; k++)
                b[k] = (unsigned char)(w >> (8 * k));
        } else {
            if (descr[1] == 'f') {
                double x = (double)ids_buf[i];
                memcpy(&u, &x, 8);
            } else {
                u = (uint64_t)(int64_t)ids_buf[i];
            }
            for (int k = 0; k < 8; k++)
                b[k] = (unsigned char)(u >> (8 * k));
        }
        fwrite(b, 1, item, f);
    }
    return fclose(f) != 0;
}

/* test_lm --write-model DIR: the random model of these tests (our names,
 * a float16 and a float32 shard) for tests/test_lm_tool.sh;
 * test_lm --write-ids OUT.npy i4|i8|f8 TEXT [ROWS [PLUS]]: write_ids. */
int main(int argc, char **argv)
{
    if (argc >= 5 && argc <= 7 && !strcmp(argv[1], "--write-ids"))
        return write_ids(argv[2], argv[3], argv[4], argc > 5 ? atoi(argv[5]) : 1,
                         argc > 6 ? atol(argv[6]) : 0);
    if (argc == 3 && !strcmp(argv[1], "--write-model")) {
        make_model(&model_d, 7);
        write_model(argv[2], &model_d, 0);
        return 0;
    }
    SRunner *sr = srunner_create(lm_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
