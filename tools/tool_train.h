/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * tool_train.h -- shared by `still grad` (cmd_grad.c) and `still transfer`
 * (cmd_transfer.c): the parameter tensors in effect, by their SPEC §11
 * names, held as explicit double arrays with their gradients.
 */
#ifndef STILL_TOOL_TRAIN_H
#define STILL_TOOL_TRAIN_H

#include "tool.h"

#define TOOL_MAX_PARAMS 7

/* fq.W (the identity when the file has none), the fq.b and fq.u present
 * (fq.b added at 0 when add_bias), fk.W, fk.b, fk.u when fk is not tied,
 * and window.w when present -- in that order.  values and grads are one
 * flat block each, tensor i at offset[i]; params points into values. */
typedef struct tool_param_set {
    int n;
    const char *names[TOOL_MAX_PARAMS];
    int ndim[TOOL_MAX_PARAMS];
    int64_t shape[TOOL_MAX_PARAMS][3];
    int64_t count[TOOL_MAX_PARAMS], offset[TOOL_MAX_PARAMS], total;
    double *values, *grads;
    still_params params;
} tool_param_set;

/* From given parameters (NULL or defaults: the identity map) for Hq query
 * heads of dimension d.  STILL_OK or STILL_E_NOMEM. */
int tool_param_set_build(const still_params *given, int64_t Hq, int64_t d, int add_bias,
                         tool_param_set *ps);
void tool_param_set_free(tool_param_set *ps);
/* still_grads pointing at ps->grads (the q, k, v, gate fields NULL). */
still_grads tool_param_set_grads(const tool_param_set *ps);
/* The tensors as still__array views (dtype F8) of values or of grads. */
void tool_param_set_arrays(const tool_param_set *ps, int of_grads, still__array *arrays);

/* The gradients of one call of the transfer loss or the VJP (still grad's
 * file, still golden's grads.safetensors): the parameter set's and those
 * of the arrays, dq, dk, dv [B,H,N,x] in the inputs' layout and dgate when
 * the inputs have a gate. */
typedef struct tool_grad_set {
    tool_param_set ps;
    double *dq, *dk, *dv, *dgate;
    still_grads g; /* pointing at all of them */
} tool_grad_set;

/* A float .npy of the shape of the output o (a teacher output or dO, as
 * `what` says), in the path's dtype and the inputs' layout. */
int tool_load_like_o(const char *cmd, const char *path, const char *what,
                     const tool_attn_inputs *in, void **out);

#define TOOL_GRAD_TENSORS (TOOL_MAX_PARAMS + 4)

/* For given parameters (NULL: the defaults); STILL_OK or STILL_E_NOMEM. */
int tool_grad_set_alloc(const tool_attn_inputs *in, const still_params *given,
                        tool_grad_set *gs);
void tool_grad_set_free(tool_grad_set *gs);
/* The tensors named as their inputs (fq.W, ..., window.w, gate, q, k, v)
 * as F8 views in the rank and layout of the inputs; returns their number
 * (at most TOOL_GRAD_TENSORS). */
int tool_grad_set_named(const tool_attn_inputs *in, const tool_grad_set *gs, const char **names,
                        still__array *arrays);

#endif /* STILL_TOOL_TRAIN_H */
