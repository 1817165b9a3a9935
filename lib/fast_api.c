/* fast_api.c -- the fast path's entry points (placeholder: refused). */
#include "internal.h"
int still_forward(const still_config *cfg, const still_shape *shape, const still_params *params,
                  const still_tensors *t)
{
    (void)cfg; (void)shape; (void)params; (void)t;
    return STILL_E_UNSUPPORTED;
}

int still_teacher(const still_config *cfg, const still_shape *shape, const still_tensors *t)
{
    (void)cfg; (void)shape; (void)t;
    return STILL_E_UNSUPPORTED;
}

int still_gate_projection(int64_t batch, int64_t seq_len, int64_t hidden, int64_t heads_q,
                          int64_t dim_v, const float *X, const float *Wg, float *G)
{
    (void)batch; (void)seq_len; (void)hidden; (void)heads_q; (void)dim_v; (void)X; (void)Wg; (void)G;
    return STILL_E_UNSUPPORTED;
}
