/* state_fast.c -- SPEC §7: the streaming state of the fast path (float32). */
#include "state.h"

static int fast_init(still_state *st)
{
    (void)st;
    return STILL_E_UNSUPPORTED;
}
static void fast_fini(still_state *st) { (void)st; }
static int fast_append(still_state *st, int64_t n, const still_tensors *t)
{
    (void)st; (void)n; (void)t;
    return STILL_E_UNSUPPORTED;
}
static size_t fast_bytes(const still_state *st) { (void)st; return 0; }
static void fast_get_counts(const still_state *st, int64_t unit, still__unit_counts *c)
{
    (void)st; (void)unit; (void)c;
}
static int fast_set_counts(still_state *st, int64_t unit, const still__unit_counts *c)
{
    (void)st; (void)unit; (void)c;
    return STILL_E_UNSUPPORTED;
}
static int fast_spans(still_state *st, int64_t unit, still__span *sp)
{
    (void)st; (void)unit; (void)sp;
    return 0;
}
static void fast_census(const still_state *st, int64_t b, int64_t hq, still__census *c,
                        int64_t *cache_pos)
{
    (void)st; (void)b; (void)hq; (void)c; (void)cache_pos;
}
const still__state_ops still__fast_state_ops = {
    fast_init, fast_fini, fast_append, fast_bytes, fast_get_counts,
    fast_set_counts, fast_spans, fast_census,
};
