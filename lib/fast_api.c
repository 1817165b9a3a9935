/* fast_api.c -- the fast path's entry points (placeholder: refused). */
#include "internal.h"
int still_forward(const still_config *cfg, const still_shape *shape, const still_params *params,
                  const still_tensors *t)
{
    (void)cfg; (void)shape; (void)params; (void)t;
    return STILL_E_UNSUPPORTED;
}
