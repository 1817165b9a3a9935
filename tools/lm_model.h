/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * lm_model.h -- the model runner of SPEC §18, used by `still lm`: a small
 * Llama-style language model whose attention layers run through libstill.
 *
 * It lives in the tool, not in the library's API: it is a measuring
 * harness (still-lm(1) argues the choice).  Like the library it never
 * prints: every function returns STILL_OK or a STILL_E_* code with one
 * line of text in err.
 *
 * Per block (SPEC §18): h = RMSNorm(x); q, k, v = projections of h; RoPE
 * (rotate-half) on q and k; a = attention; x += W_o a; then
 * x += W_down(silu(W_gate h2) * W_up h2) with h2 = RMSNorm(x); the head is
 * RMSNorm then the tied embedding (or lm_head.weight when the checkpoint
 * has one).  Float32 weights and activations; projections by cblas_sgemm.
 */
#ifndef STILL_LM_MODEL_H
#define STILL_LM_MODEL_H

#include "still.h"

#include <stddef.h>
#include <stdint.h>

typedef struct lm_config {
    int64_t vocab, d_model, n_layer, n_head, n_kv, head_dim, d_ff, ctx;
    double rope_theta;
    double norm_eps; /* RMSNorm eps: config's rms_norm_eps, default FLT_EPSILON */
} lm_config;

typedef struct lm_layer {
    const float *n1, *wq, *wk, *wv, *wo, *n2, *wgate, *wup, *wdown; /* [out][in] */
} lm_layer;

typedef struct lm_model {
    lm_config cfg;
    const float *emb, *norm, *head; /* head == emb when tied */
    lm_layer *layers;
    float **owned; /* every tensor, freed by lm_model_free */
    int n_owned;
} lm_model;

/* Loads DIR/config.json (this project's names or Hugging Face Llama's) and
 * the tensors of every DIR/ *.safetensors file (F16, BF16, F32 or F64;
 * names `emb.weight`, `blocks.{i}.{n1,q,k,v,o,n2,gate,up,down}.weight`,
 * `norm.weight`, or Hugging Face Llama's `model.embed_tokens.weight`,
 * `model.layers.{i}.self_attn.{q,k,v,o}_proj.weight`, ...). */
int lm_model_load(const char *dir, lm_model *m, char *err, size_t errlen);
void lm_model_free(lm_model *m);

/* The attention of one layer. */
enum {
    LM_ATTN_TEACHER = 0,
    LM_ATTN_STILL,
    LM_ATTN_WINDOW,
    LM_ATTN_LINEAR,
    LM_ATTN_SINKS,    /* SPEC §13: s sinks + the last w positions */
    LM_ATTN_TERRACED, /* SPEC §14: the previous and the current block of w */
    LM_ATTN_KINDS
};
extern const char *const lm_attn_names[LM_ATTN_KINDS]; /* "teacher", "still", ... */

/* Options shared by every layer of a configuration (0 = the default). */
typedef struct lm_attn_opts {
    int64_t chunk, topk, window, local, cap;
    int64_t sinks;  /* s of sinks, used when has_sinks (else the default 4) */
    int has_sinks;
    int rest;       /* STILL_REST_* of still, window, sinks, terraced (SPEC §12) */
} lm_attn_opts;

typedef struct lm_attn {
    int kind;
    still_config cfg;
    still_params params;     /* defaults or from the layer's parameter file */
    double *params_storage;  /* owned */
} lm_attn;

/* The per-layer attention of a spec: "teacher", "still", "window",
 * "linear", "sinks", "terraced" for every layer, or "0=teacher,3=still,..." (layers not named
 * are teacher).  params_dir (NULL: none) holds layer{i}.safetensors files as
 * `still transfer` writes them; a layer without one uses the identity maps. */
int lm_attn_parse(const lm_model *m, const char *spec, const lm_attn_opts *opts,
                  const char *params_dir, lm_attn **out, char *err, size_t errlen);
void lm_attn_free(const lm_model *m, lm_attn *attn);
/* A short text of the spec ("still", "0=teacher,1=still,..."): buf. */
void lm_attn_text(const lm_model *m, const lm_attn *attn, char *buf, size_t len);

/* Logits [n][vocab] of tokens ids[0..n-1] (positions 0..n-1): one prefill
 * of every layer by still_forward / still_teacher (SPEC §1, §6). */
int lm_forward(const lm_model *m, const lm_attn *attn, const int32_t *ids, int64_t n,
               float *logits, char *err, size_t errlen);
/* The same, calling capture (when not NULL) with each layer's attention
 * inputs: q [n][Hq][d], k and v [n][Hk][d] after RoPE (layout BNHD), valid
 * during the call; a nonzero return stops the forward with that code. */
typedef int (*lm_capture_fn)(void *user, int64_t layer, const float *q, const float *k,
                             const float *v, int64_t n);
int lm_forward_capture(const lm_model *m, const lm_attn *attn, const int32_t *ids, int64_t n,
                       float *logits, lm_capture_fn capture, void *user, char *err,
                       size_t errlen);

/* Streaming: one still_state per layer (SPEC §7). */
typedef struct lm_session {
    const lm_model *m;
    const lm_attn *attn;
    still_state **states; /* [n_layer] */
    int64_t position;
} lm_session;

int lm_session_create(const lm_model *m, const lm_attn *attn, lm_session *s, char *err,
                      size_t errlen);
void lm_session_free(lm_session *s);
/* Appends n tokens at the session's position; logits [n][vocab] (NULL: the
 * states advance, no head is computed).  After an error the session is
 * unusable (earlier layers may have advanced): free it. */
int lm_session_append(lm_session *s, const int32_t *ids, int64_t n, float *logits, char *err,
                      size_t errlen);
/* Bytes the state of layer l holds now (still_state_bytes). */
int lm_session_layer_bytes(const lm_session *s, int64_t l, size_t *bytes);

/* out[i] = log softmax(logits)[i] in double, for one row of vocab logits. */
void lm_log_softmax(const float *logits, int64_t vocab, double *out);

#endif /* STILL_LM_MODEL_H */
