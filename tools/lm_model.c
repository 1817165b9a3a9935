/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * lm_model.c -- the model runner of SPEC §18 (lm_model.h): load, prefill
 * through still_forward / still_teacher, streaming through still_state.
 */
#define _POSIX_C_SOURCE 200809L
#include "lm_model.h"
#include "io.h"

#include <cblas.h>
#include <dirent.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const lm_attn_names[LM_ATTN_KINDS] = {"teacher", "still",  "window",
                                                  "linear",  "sinks",  "terraced"};

/* ---- config.json ------------------------------------------------------------ */

/* The first of the names that the object has, as an integer; def if none. */
static int config_int(const json_t *root, const char *a, const char *b, int64_t def,
                    int64_t *out)
{
    const json_t *v = json_object_get(root, a);
    if (!v && b)
        v = json_object_get(root, b);
    if (!v) {
        *out = def;
        return def >= 0 ? 0 : -1;
    }
    if (!json_is_integer(v))
        return -1;
    *out = json_integer_value(v);
    return 0;
}

static double config_real(const json_t *root, const char *name, double def)
{
    const json_t *v = json_object_get(root, name);
    return v && json_is_number(v) ? json_number_value(v) : def;
}

static int read_config(const char *dir, lm_config *c, int *hf, char *err, size_t errlen)
{
    char path[4096];
    json_error_t je;
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return still__io_fail(err, errlen, STILL_E_IO, "%s: %s", path, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return still__io_fail(err, errlen, STILL_E_FORMAT, "%s: expected a JSON object", path);
    }
    *hf = json_object_get(root, "hidden_size") != NULL;
    const char *missing = NULL;
    if (config_int(root, "vocab", "vocab_size", -1, &c->vocab))
        missing = "vocab (vocab_size)";
    else if (config_int(root, "d_model", "hidden_size", -1, &c->d_model))
        missing = "d_model (hidden_size)";
    else if (config_int(root, "n_layer", "num_hidden_layers", -1, &c->n_layer))
        missing = "n_layer (num_hidden_layers)";
    else if (config_int(root, "n_head", "num_attention_heads", -1, &c->n_head))
        missing = "n_head (num_attention_heads)";
    else if (config_int(root, "n_kv", "num_key_value_heads", c->n_head, &c->n_kv))
        missing = "n_kv (num_key_value_heads)";
    else if (config_int(root, "head_dim", NULL, c->n_head > 0 ? c->d_model / c->n_head : -1,
                      &c->head_dim))
        missing = "head_dim";
    else if (config_int(root, "d_ff", "intermediate_size", -1, &c->d_ff))
        missing = "d_ff (intermediate_size)";
    else if (config_int(root, "ctx", "max_position_embeddings", 0, &c->ctx))
        missing = "ctx (max_position_embeddings)";
    c->rope_theta = config_real(root, "rope_theta", 10000.0);
    /* SPEC §18: nn.RMSNorm with eps = None is float32's machine epsilon */
    c->norm_eps = config_real(root, "rms_norm_eps", FLT_EPSILON);
    json_decref(root);
    if (missing)
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: %s missing or not an integer", path, missing);
    const int64_t lim = (int64_t)1 << 20;
    if (c->vocab < 1 || c->vocab > lim || c->d_model < 1 || c->d_model > lim ||
        c->n_layer < 1 || c->n_layer > 4096 || c->n_head < 1 || c->n_head > 4096 ||
        c->n_kv < 1 || c->n_head % c->n_kv || c->head_dim < 2 || c->head_dim % 2 ||
        c->head_dim > 4096 || c->d_ff < 1 || c->d_ff > lim || c->ctx < 0 ||
        !(c->rope_theta > 0) || !isfinite(c->rope_theta) || !(c->norm_eps >= 0))
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: inconsistent shape (vocab %lld, d_model %lld, layers %lld, "
                              "heads %lld/%lld, head_dim %lld (even), d_ff %lld)",
                              path, (long long)c->vocab, (long long)c->d_model,
                              (long long)c->n_layer, (long long)c->n_head, (long long)c->n_kv,
                              (long long)c->head_dim, (long long)c->d_ff);
    return STILL_OK;
}

/* ---- tensors ---------------------------------------------------------------- */

typedef struct shard_set {
    int n;
    char **paths;
    still__st_file *files;
} shard_set;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void shards_free(shard_set *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->paths[i]);
        if (s->files)
            still__st_free(&s->files[i]);
    }
    free(s->paths);
    free(s->files);
    memset(s, 0, sizeof *s);
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && !strcmp(s + n - t, tail);
}

/* Every DIR/ *.safetensors, in name order. */
static int shards_read(const char *dir, shard_set *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    DIR *d = opendir(dir);
    if (!d)
        return still__io_fail(err, errlen, STILL_E_IO, "%s: cannot open the directory", dir);
    struct dirent *e;
    int cap = 0, rc = STILL_OK;
    while ((e = readdir(d))) {
        if (!ends_with(e->d_name, ".safetensors") || e->d_name[0] == '.')
            continue;
        if (s->n == cap) {
            cap = cap ? 2 * cap : 8;
            char **p = realloc(s->paths, (size_t)cap * sizeof *p);
            if (!p) {
                rc = STILL_E_NOMEM;
                break;
            }
            s->paths = p;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(s->paths[s->n] = malloc(len))) {
            rc = STILL_E_NOMEM;
            break;
        }
        snprintf(s->paths[s->n++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (rc)
        goto fail;
    if (!s->n) {
        rc = still__io_fail(err, errlen, STILL_E_IO, "%s: no .safetensors file", dir);
        goto fail;
    }
    qsort(s->paths, (size_t)s->n, sizeof *s->paths, cmp_str);
    if (!(s->files = calloc((size_t)s->n, sizeof *s->files))) {
        rc = STILL_E_NOMEM;
        goto fail;
    }
    for (int i = 0; i < s->n; i++)
        if ((rc = still__st_read(s->paths[i], &s->files[i], err, errlen)))
            goto fail;
    return STILL_OK;
fail:
    if (rc == STILL_E_NOMEM)
        still__io_fail(err, errlen, rc, "%s: out of memory reading the shards", dir);
    shards_free(s);
    return rc;
}

static const still__array *shards_get(const shard_set *s, const char *name)
{
    for (int i = 0; i < s->n; i++) {
        const still__array *a = still__st_get(&s->files[i], name);
        if (a)
            return a;
    }
    return NULL;
}

/* The float32 copy of tensor name of shape [rows] (cols 0) or [rows][cols]. */
static int take(lm_model *m, const shard_set *s, const char *dir, const char *name,
                int64_t rows, int64_t cols, const float **out, char *err, size_t errlen)
{
    const still__array *a = shards_get(s, name);
    if (!a)
        return still__io_fail(err, errlen, STILL_E_FORMAT, "%s: no tensor %s", dir, name);
    int ndim = cols ? 2 : 1;
    if (a->ndim != ndim || a->shape[0] != rows || (cols && a->shape[1] != cols)) {
        char found[128] = "";
        size_t k = 0;
        for (int i = 0; i < a->ndim && k + 24 < sizeof found; i++)
            k += (size_t)snprintf(found + k, sizeof found - k, "%s%lld", i ? "," : "",
                                  (long long)a->shape[i]);
        return still__io_fail(err, errlen, STILL_E_FORMAT,
                              "%s: tensor %s: expected shape [%lld%s%.0lld], found [%s]", dir,
                              name, (long long)rows, cols ? "," : "", (long long)cols, found);
    }
    float *f;
    int rc = still__array_to_f32(a, &f);
    if (rc)
        return still__io_fail(err, errlen, rc, "%s: tensor %s: %s", dir, name,
                              still_strerror(rc));
    m->owned[m->n_owned++] = f;
    *out = f;
    return STILL_OK;
}

void lm_model_free(lm_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

int lm_model_load(const char *dir, lm_model *m, char *err, size_t errlen)
{
    int hf = 0, rc;
    shard_set s;
    memset(m, 0, sizeof *m);
    if ((rc = read_config(dir, &m->cfg, &hf, err, errlen)))
        return rc;
    if ((rc = shards_read(dir, &s, err, errlen)))
        return rc;
    const lm_config *c = &m->cfg;
    int64_t D = c->d_model, qd = c->n_head * c->head_dim, kd = c->n_kv * c->head_dim;
    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    m->owned = calloc((size_t)(9 * c->n_layer + 3), sizeof *m->owned);
    if (!m->layers || !m->owned) {
        rc = still__io_fail(err, errlen, STILL_E_NOMEM, "%s: out of memory", dir);
        goto out;
    }
    const char *emb = hf ? "model.embed_tokens.weight" : "emb.weight";
    const char *norm = hf ? "model.norm.weight" : "norm.weight";
    if ((rc = take(m, &s, dir, emb, c->vocab, D, &m->emb, err, errlen)) ||
        (rc = take(m, &s, dir, norm, D, 0, &m->norm, err, errlen)))
        goto out;
    m->head = m->emb; /* tied, SPEC §18 */
    if (shards_get(&s, "lm_head.weight") &&
        (rc = take(m, &s, dir, "lm_head.weight", c->vocab, D, &m->head, err, errlen)))
        goto out;
    static const char *const ours[9] = {"n1", "q", "k", "v", "o", "n2", "gate", "up", "down"};
    static const char *const theirs[9] = {
        "input_layernorm",        "self_attn.q_proj", "self_attn.k_proj",
        "self_attn.v_proj",       "self_attn.o_proj", "post_attention_layernorm",
        "mlp.gate_proj",          "mlp.up_proj",      "mlp.down_proj"};
    for (int64_t l = 0; l < c->n_layer; l++) {
        lm_layer *L = &m->layers[l];
        const float **dst[9] = {&L->n1, &L->wq, &L->wk,    &L->wv,   &L->wo,
                                &L->n2, &L->wgate, &L->wup, &L->wdown};
        const int64_t rows[9] = {D, qd, kd, kd, D, D, c->d_ff, c->d_ff, D};
        const int64_t cols[9] = {0, D, D, D, qd, 0, D, D, c->d_ff};
        for (int i = 0; i < 9; i++) {
            char name[128];
            if (hf)
                snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l,
                         theirs[i]);
            else
                snprintf(name, sizeof name, "blocks.%lld.%s.weight", (long long)l, ours[i]);
            if ((rc = take(m, &s, dir, name, rows[i], cols[i], dst[i], err, errlen)))
                goto out;
        }
    }
out:
    shards_free(&s);
    if (rc)
        lm_model_free(m);
    return rc;
}

/* ---- attention per layer ------------------------------------------------------ */

static int kind_of(const char *s, size_t n)
{
    for (int k = 0; k < LM_ATTN_KINDS; k++)
        if (strlen(lm_attn_names[k]) == n && !strncmp(s, lm_attn_names[k], n))
            return k;
    return -1;
}

static void layer_config(int kind, const lm_attn_opts *o, still_config *cfg)
{
    still_config_default(cfg);
    if (o->chunk)
        cfg->chunk = o->chunk;
    if (o->topk)
        cfg->topk = o->topk;
    if (o->window)
        cfg->window = o->window;
    if (o->local)
        cfg->local = o->local;
    switch (kind) {
    case LM_ATTN_TEACHER: /* SPEC I1: k = C, no cap, eps_den = 0, L >= 1 (for the states) */
        cfg->routing = STILL_ROUTING_ALL;
        cfg->eps_den = 0;
        if (cfg->local < 1)
            cfg->local = 1;
        break;
    case LM_ATTN_STILL:
        cfg->routing = STILL_ROUTING_SALIENCY;
        cfg->max_sel = o->cap;
        break;
    case LM_ATTN_WINDOW:
        cfg->routing = STILL_ROUTING_WINDOW;
        break;
    case LM_ATTN_SINKS:
        cfg->routing = STILL_ROUTING_SINKS;
        if (o->has_sinks)
            cfg->sinks = o->sinks;
        break;
    case LM_ATTN_TERRACED:
        cfg->routing = STILL_ROUTING_TERRACED;
        break;
    default: /* SPEC I2: linear attention only */
        cfg->routing = STILL_ROUTING_NONE;
        cfg->local = 0;
        break;
    }
    if (kind != LM_ATTN_TEACHER && kind != LM_ATTN_LINEAR)
        cfg->rest = o->rest; /* SPEC §12 */
}

void lm_attn_free(const lm_model *m, lm_attn *attn)
{
    if (!attn)
        return;
    for (int64_t l = 0; l < m->cfg.n_layer; l++)
        free(attn[l].params_storage);
    free(attn);
}

int lm_attn_parse(const lm_model *m, const char *spec, const lm_attn_opts *opts,
                  const char *params_dir, lm_attn **out, char *err, size_t errlen)
{
    const int64_t nl = m->cfg.n_layer;
    lm_attn *a = calloc((size_t)nl, sizeof *a);
    if (!a)
        return still__io_fail(err, errlen, STILL_E_NOMEM, "out of memory");
    int all = kind_of(spec, strlen(spec));
    if (!*spec) {
        free(a);
        return still__io_fail(err, errlen, STILL_E_CONFIG, "empty attention spec");
    }
    for (int64_t l = 0; l < nl; l++)
        a[l].kind = all >= 0 ? all : LM_ATTN_TEACHER;
    if (all < 0) { /* "L=kind,L=kind,..." */
        const char *p = spec;
        while (*p) {
            char *end;
            long long l = strtoll(p, &end, 10);
            const char *kstart = end + 1, *kend = strchr(kstart, ',');
            if (!kend)
                kend = kstart + strlen(kstart);
            int k = (end != p && *end == '=') ? kind_of(kstart, (size_t)(kend - kstart)) : -1;
            if (k < 0 || l < 0 || l >= nl) {
                free(a);
                return still__io_fail(err, errlen, STILL_E_CONFIG,
                                      "attention spec '%s': expected teacher, still, window, "
                                      "linear, sinks, terraced, or LAYER=KIND,... with "
                                      "layers 0..%lld",
                                      spec, (long long)nl - 1);
            }
            a[l].kind = k;
            p = *kend ? kend + 1 : kend;
        }
    }
    const int64_t Hq = m->cfg.n_head, d = m->cfg.head_dim;
    for (int64_t l = 0; l < nl; l++) {
        layer_config(a[l].kind, opts, &a[l].cfg);
        still_params_default(&a[l].params);
        still_shape shape = {1, Hq, m->cfg.n_kv, 1, d, d, STILL_LAYOUT_BNHD};
        int rc = still_config_validate(&a[l].cfg, &shape);
        if (rc) {
            lm_attn_free(m, a);
            return still__io_fail(err, errlen, rc, "layer %lld (%s): configuration refused: %s",
                                  (long long)l, lm_attn_names[a[l].kind], still_strerror(rc));
        }
        if (!params_dir || a[l].kind == LM_ATTN_TEACHER)
            continue;
        char path[4096];
        FILE *f;
        snprintf(path, sizeof path, "%s/layer%lld.safetensors", params_dir, (long long)l);
        if (!(f = fopen(path, "rb")))
            continue; /* the identity maps */
        fclose(f);
        if ((rc = still__params_read(path, Hq, d, &a[l].params, &a[l].params_storage, err,
                                     errlen))) {
            lm_attn_free(m, a);
            return rc;
        }
    }
    *out = a;
    return STILL_OK;
}

void lm_attn_text(const lm_model *m, const lm_attn *attn, char *buf, size_t len)
{
    int same = 1;
    for (int64_t l = 1; l < m->cfg.n_layer; l++)
        same &= attn[l].kind == attn[0].kind;
    if (same) {
        snprintf(buf, len, "%s", lm_attn_names[attn[0].kind]);
        return;
    }
    size_t k = 0;
    buf[0] = '\0';
    for (int64_t l = 0; l < m->cfg.n_layer && k < len; l++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld=%s", l ? "," : "", (long long)l,
                              lm_attn_names[attn[l].kind]);
}

/* ---- the forward ------------------------------------------------------------ */

/* y [n][out] (+)= x [n][in] W^T, W [out][in] (PyTorch's Linear layout). */
static void linear(const float *x, const float *W, int64_t n, int64_t in, int64_t out,
                   float beta, float *y)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)out, (blasint)in,
                1.0f, x, (blasint)in, W, (blasint)in, beta, y, (blasint)out);
}

static void rmsnorm(const float *x, const float *w, int64_t n, int64_t D, double eps, float *y)
{
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * D;
        double ss = 0;
        for (int64_t i = 0; i < D; i++)
            ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / (double)D + eps));
        for (int64_t i = 0; i < D; i++)
            y[t * D + i] = xr[i] * r * w[i];
    }
}

/* SPEC §18 RoPE, rotate-half: pairs (i, i + d/2), frequency theta^(-2i/d);
 * x [n][H][d] at positions pos0.. */
static void rope(float *x, int64_t n, int64_t H, int64_t d, int64_t pos0, double theta)
{
    const int64_t h2 = d / 2;
    for (int64_t i = 0; i < h2; i++) {
        double inv = pow(theta, -2.0 * (double)i / (double)d);
        for (int64_t t = 0; t < n; t++) {
            double ang = (double)(pos0 + t) * inv;
            float c = (float)cos(ang), s = (float)sin(ang);
            for (int64_t h = 0; h < H; h++) {
                float *r = x + (t * H + h) * d;
                float a = r[i], b = r[i + h2];
                r[i] = a * c - b * s;
                r[i + h2] = b * c + a * s;
            }
        }
    }
}

typedef struct lm_work {
    float *x, *h, *q, *k, *v, *a, *g, *u;
} lm_work;

static void work_free(lm_work *w)
{
    free(w->x);
    free(w->h);
    free(w->q);
    free(w->k);
    free(w->v);
    free(w->a);
    free(w->g);
    free(w->u);
}

static int work_alloc(const lm_config *c, int64_t n, lm_work *w)
{
    memset(w, 0, sizeof *w);
    size_t N = (size_t)n;
    size_t qd = (size_t)(c->n_head * c->head_dim), kd = (size_t)(c->n_kv * c->head_dim);
    if (N > SIZE_MAX / sizeof(float) / ((size_t)c->d_ff + qd + (size_t)c->d_model))
        return STILL_E_OVERFLOW;
    w->x = malloc(N * (size_t)c->d_model * sizeof(float));
    w->h = malloc(N * (size_t)c->d_model * sizeof(float));
    w->q = malloc(N * qd * sizeof(float));
    w->k = malloc(N * kd * sizeof(float));
    w->v = malloc(N * kd * sizeof(float));
    w->a = malloc(N * qd * sizeof(float));
    w->g = malloc(N * (size_t)c->d_ff * sizeof(float));
    w->u = malloc(N * (size_t)c->d_ff * sizeof(float));
    if (!w->x || !w->h || !w->q || !w->k || !w->v || !w->a || !w->g || !w->u) {
        work_free(w);
        return STILL_E_NOMEM;
    }
    return STILL_OK;
}

/* The blocks and the head for n tokens at pos0; states NULL: prefill. */
static int run(const lm_model *m, const lm_attn *attn, still_state **states, int64_t pos0,
               const int32_t *ids, int64_t n, float *logits, lm_capture_fn capture,
               void *user, char *err, size_t errlen)
{
    const lm_config *c = &m->cfg;
    const int64_t D = c->d_model, F = c->d_ff, hd = c->head_dim;
    const int64_t qd = c->n_head * hd, kd = c->n_kv * hd;
    lm_work w;
    if (n < 1)
        return STILL_OK;
    for (int64_t t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab)
            return still__io_fail(err, errlen, STILL_E_SHAPE,
                                  "token %lld is %ld, outside the vocabulary 0..%lld",
                                  (long long)(pos0 + t), (long)ids[t], (long long)c->vocab - 1);
    int rc = work_alloc(c, n, &w);
    if (rc)
        return still__io_fail(err, errlen, rc, "%lld tokens: %s", (long long)n,
                              still_strerror(rc));
    for (int64_t t = 0; t < n; t++)
        memcpy(w.x + t * D, m->emb + (int64_t)ids[t] * D, (size_t)D * sizeof(float));
    for (int64_t l = 0; l < c->n_layer && !rc; l++) {
        const lm_layer *L = &m->layers[l];
        rmsnorm(w.x, L->n1, n, D, c->norm_eps, w.h);
        linear(w.h, L->wq, n, D, qd, 0.0f, w.q);
        linear(w.h, L->wk, n, D, kd, 0.0f, w.k);
        linear(w.h, L->wv, n, D, kd, 0.0f, w.v);
        rope(w.q, n, c->n_head, hd, pos0, c->rope_theta);
        rope(w.k, n, c->n_kv, hd, pos0, c->rope_theta);
        /* [n][H][d] is the BNHD layout: no copy */
        still_shape shape = {1, c->n_head, c->n_kv, n, hd, hd, STILL_LAYOUT_BNHD};
        still_tensors t = {0};
        t.dtype = STILL_F32;
        t.q = w.q;
        t.k = w.k;
        t.v = w.v;
        t.o = w.a;
        if (capture && (rc = capture(user, l, w.q, w.k, w.v, n))) {
            still__io_fail(err, errlen, rc, "layer %lld: %s", (long long)l, still_strerror(rc));
            break;
        }
        if (states)
            rc = still_state_append(states[l], n, &t);
        else if (attn[l].kind == LM_ATTN_TEACHER)
            rc = still_teacher(&attn[l].cfg, &shape, &t);
        else
            rc = still_forward(&attn[l].cfg, &shape, &attn[l].params, &t);
        if (rc) {
            still__io_fail(err, errlen, rc, "layer %lld (%s): %s", (long long)l,
                           lm_attn_names[attn[l].kind], still_strerror(rc));
            break;
        }
        linear(w.a, L->wo, n, qd, D, 1.0f, w.x);
        rmsnorm(w.x, L->n2, n, D, c->norm_eps, w.h);
        linear(w.h, L->wgate, n, D, F, 0.0f, w.g);
        linear(w.h, L->wup, n, D, F, 0.0f, w.u);
        for (int64_t i = 0; i < n * F; i++) {
            float g = w.g[i];
            w.g[i] = g / (1.0f + expf(-g)) * w.u[i]; /* silu(gate) * up */
        }
        linear(w.g, L->wdown, n, F, D, 1.0f, w.x);
    }
    if (!rc && logits) {
        rmsnorm(w.x, m->norm, n, D, c->norm_eps, w.h);
        linear(w.h, m->head, n, D, c->vocab, 0.0f, logits);
    }
    work_free(&w);
    return rc;
}

int lm_forward(const lm_model *m, const lm_attn *attn, const int32_t *ids, int64_t n,
               float *logits, char *err, size_t errlen)
{
    return run(m, attn, NULL, 0, ids, n, logits, NULL, NULL, err, errlen);
}

int lm_forward_capture(const lm_model *m, const lm_attn *attn, const int32_t *ids, int64_t n,
                       float *logits, lm_capture_fn capture, void *user, char *err,
                       size_t errlen)
{
    return run(m, attn, NULL, 0, ids, n, logits, capture, user, err, errlen);
}

/* ---- streaming -------------------------------------------------------------- */

void lm_session_free(lm_session *s)
{
    if (!s || !s->states)
        return;
    for (int64_t l = 0; l < s->m->cfg.n_layer; l++)
        still_state_destroy(s->states[l]);
    free(s->states);
    s->states = NULL;
}

int lm_session_create(const lm_model *m, const lm_attn *attn, lm_session *s, char *err,
                      size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->m = m;
    s->attn = attn;
    if (!(s->states = calloc((size_t)m->cfg.n_layer, sizeof *s->states)))
        return still__io_fail(err, errlen, STILL_E_NOMEM, "out of memory");
    still_shape shape = {1, m->cfg.n_head, m->cfg.n_kv, 1, m->cfg.head_dim, m->cfg.head_dim,
                         STILL_LAYOUT_BNHD};
    for (int64_t l = 0; l < m->cfg.n_layer; l++) {
        int rc = still_state_create(&attn[l].cfg, &shape, &attn[l].params, STILL_PATH_FAST,
                                    &s->states[l]);
        if (rc) {
            lm_session_free(s);
            return still__io_fail(err, errlen, rc, "layer %lld (%s): state: %s", (long long)l,
                                  lm_attn_names[attn[l].kind], still_strerror(rc));
        }
    }
    return STILL_OK;
}

int lm_session_append(lm_session *s, const int32_t *ids, int64_t n, float *logits, char *err,
                      size_t errlen)
{
    int rc = run(s->m, s->attn, s->states, s->position, ids, n, logits, NULL, NULL, err,
                 errlen);
    if (!rc)
        s->position += n;
    return rc;
}

int lm_session_layer_bytes(const lm_session *s, int64_t l, size_t *bytes)
{
    return still_state_bytes(s->states[l], bytes);
}

void lm_log_softmax(const float *logits, int64_t vocab, double *out)
{
    double mx = -INFINITY, sum = 0;
    for (int64_t i = 0; i < vocab; i++)
        mx = fmax(mx, logits[i]);
    for (int64_t i = 0; i < vocab; i++)
        sum += exp((double)logits[i] - mx);
    double lse = mx + log(sum);
    for (int64_t i = 0; i < vocab; i++)
        out[i] = (double)logits[i] - lse;
}
