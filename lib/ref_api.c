/* ref_api.c -- public entry points of the ref path (placeholder until the
 * ref path lands: every call is refused). */
#include "internal.h"

int still_ref_forward(const still_config *cfg, const still_shape *shape,
                      const still_params *params, const still_tensors *t)
{
    (void)cfg; (void)shape; (void)params; (void)t;
    return STILL_E_UNSUPPORTED;
}

int still_ref_teacher(const still_config *cfg, const still_shape *shape, const still_tensors *t)
{
    (void)cfg; (void)shape; (void)t;
    return STILL_E_UNSUPPORTED;
}

int still_ref_feature_map(const still_config *cfg, const still_params *params, int which,
                          int64_t head, int64_t dim_qk, int64_t n, const double *x, double *phi)
{
    (void)cfg; (void)params; (void)which; (void)head; (void)dim_qk; (void)n; (void)x; (void)phi;
    return STILL_E_UNSUPPORTED;
}

int still_ref_gate_projection(int64_t batch, int64_t seq_len, int64_t hidden, int64_t heads_q,
                              int64_t dim_v, const double *X, const double *Wg, double *G)
{
    (void)batch; (void)seq_len; (void)hidden; (void)heads_q; (void)dim_v; (void)X; (void)Wg; (void)G;
    return STILL_E_UNSUPPORTED;
}
