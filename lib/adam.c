/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* adam.c -- SPEC §8: the Adam step of attention transfer, with bias
 * correction and optional decoupled weight decay (AdamW). */
#include "internal.h"

#include <math.h>

void still_adam_default(still_adam_config *cfg)
{
    if (!cfg)
        return;
    cfg->lr = 1e-3;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->weight_decay = 0.0;
}

static int adam_config_ok(const still_adam_config *c)
{
    return isfinite(c->lr) && c->lr >= 0.0 && c->beta1 >= 0.0 && c->beta1 < 1.0 &&
           c->beta2 >= 0.0 && c->beta2 < 1.0 && isfinite(c->eps) && c->eps > 0.0 &&
           isfinite(c->weight_decay) && c->weight_decay >= 0.0;
}

/* Elementwise, in a fixed order: deterministic.  Nothing is written when
 * a gradient is not finite. */
int still_adam_step(const still_adam_config *cfg, int64_t step, size_t n, double *param,
                    const double *grad, double *m, double *v)
{
    if (!cfg || (n && (!param || !grad || !m || !v)))
        return STILL_E_NULL;
    if (!adam_config_ok(cfg))
        return STILL_E_CONFIG;
    if (step < 1)
        return STILL_E_CONFIG;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(grad[i]))
            return STILL_E_NONFINITE;
    /* bias corrections 1 - beta^t */
    const double c1 = 1.0 - pow(cfg->beta1, (double)step);
    const double c2 = 1.0 - pow(cfg->beta2, (double)step);
    for (size_t i = 0; i < n; i++) {
        param[i] -= cfg->lr * cfg->weight_decay * param[i]; /* decoupled decay */
        m[i] = cfg->beta1 * m[i] + (1.0 - cfg->beta1) * grad[i];
        v[i] = cfg->beta2 * v[i] + (1.0 - cfg->beta2) * grad[i] * grad[i];
        param[i] -= cfg->lr * (m[i] / c1) / (sqrt(v[i] / c2) + cfg->eps);
    }
    return STILL_OK;
}
