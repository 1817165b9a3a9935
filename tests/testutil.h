/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * testutil.h -- helpers for the Check suites of the ref path.
 *
 * - a seeded deterministic PRNG (xoshiro256**, seeded by splitmix64), so
 *   every random input is the same on every run and machine;
 * - a "case": the inputs of one still_ref_forward call kept in BHND double,
 *   converted to the layout and dtype under test by tu_run_ref();
 * - an independent model of SPEC §1-6 (tu_model_*), written from SPEC.md
 *   alone, that the tests compare the library with.  It shares no code with
 *   ref/: it is the second, independent reading of the spec.
 */
#ifndef STILL_TESTUTIL_H
#define STILL_TESTUTIL_H

#include "still.h"

#include <stddef.h>
#include <stdint.h>

/* ---- PRNG ------------------------------------------------------------- */
typedef struct tu_rng {
    uint64_t s[4];
} tu_rng;

void tu_rng_seed(tu_rng *g, uint64_t seed);
uint64_t tu_next(tu_rng *g);
double tu_unit(tu_rng *g);                        /* [0, 1) */
double tu_uniform(tu_rng *g, double lo, double hi); /* [lo, hi) */
double tu_normal(tu_rng *g);                      /* N(0, 1) */
int64_t tu_int(tu_rng *g, int64_t lo, int64_t hi); /* [lo, hi] inclusive */
void tu_fill(tu_rng *g, double *x, int64_t n, double lo, double hi);
void tu_fill_normal(tu_rng *g, double *x, int64_t n, double sd);

/* ---- small helpers ------------------------------------------------------ */
void *tu_alloc(size_t bytes); /* calloc that aborts the test on failure */
double *tu_dalloc(int64_t n);
double tu_max_abs(const double *x, int64_t n);
double tu_max_abs_diff(const double *a, const double *b, int64_t n);
/* index of element (b, h, n, i) of a BHND array [B][H][N][D] */
int64_t tu_bhnd(int64_t H, int64_t N, int64_t D, int64_t b, int64_t h, int64_t n, int64_t i);
/* converts a BHND double array to `layout` and `dtype` (out has B*H*N*D
 * elements of that dtype), and back */
void tu_to_layout(const double *bhnd, int64_t B, int64_t H, int64_t N, int64_t D,
                  int layout, int dtype, void *out);
void tu_from_layout(const void *in, int64_t B, int64_t H, int64_t N, int64_t D,
                    int layout, int dtype, double *bhnd);
double tu_sigmoid(double x);

/* ---- one forward call -------------------------------------------------- */
typedef struct tu_case {
    still_shape shape; /* shape.layout is the layout of the call */
    still_config cfg;
    int dtype;         /* of the call; the BHND arrays hold values
                          representable in it (tu_case_round) */
    double *q, *k, *v; /* BHND double */
    double *gate;      /* BHND double or NULL */
    still_params params;
    int use_params;    /* 0: pass params = NULL */
    uint8_t *selection_in; /* [B][Hq][N] or NULL */
    /* storage owned by the case (freed by tu_case_free) */
    double *store[8];
} tu_case;

/* Allocates q, k, v (and gate when with_gate) for shape, filled with
 * N(0, sd) values; params default; cfg default; dtype F64. */
void tu_case_init(tu_case *c, tu_rng *g, const still_shape *shape, double sd, int with_gate);
/* Random NP-Map parameters for every query head: W [Hq][f][d] (f rows),
 * optionally b and u, and separate fk when !tied.  window_w when with_w. */
void tu_case_random_params(tu_case *c, tu_rng *g, int64_t f, int with_b, int with_u,
                           int tied, int with_w);
/* Rounds q, k, v, gate to float when c->dtype == STILL_F32. */
void tu_case_round(tu_case *c);
void tu_case_free(tu_case *c);

/* Calls still_ref_forward on the case; o [B][Hq][N][dv] BHND double;
 * sigma, sel optional.  Returns the status. */
int tu_run_ref(const tu_case *c, double *o, double *sigma, uint8_t *sel);
/* still_ref_teacher on the case, o BHND double. */
int tu_run_teacher(const tu_case *c, double *o);

/* ---- the independent model of SPEC -------------------------------------- */
/* SPEC §2 for one vector: W [f][d] or NULL (identity, f = d), b [f] or
 * NULL, u [d] or NULL; phi has m = (act == hedgehog ? 2f : f) entries. */
void tu_model_feature_map(int act, int npmap, int64_t f, int64_t d, const double *W,
                          const double *b, const double *u, const double *x, double *phi);
/* SPEC §4: sigma of a query from its window keys [n][d] (last = itself),
 * computed as the KL sum of the two distributions built separately. */
double tu_model_saliency(double scale, int64_t d, const double *q_t, const double *keys,
                         int64_t n);
/* SPEC §5: top-k per complete chunk, ties to the smaller position. */
void tu_model_select(const double *sigma, int64_t N, int64_t C, int64_t k, uint8_t *sel);
/* SPEC §5-6: exact[j] (j <= t) for query t.  routing, C, L, w, max_sel. */
void tu_model_route(int routing, int64_t C, int64_t L, int64_t w, int64_t max_sel,
                    const double *sigma, const uint8_t *sel, int64_t t, uint8_t *exact);
/* The whole forward of the case (BHND double outputs; sigma, sel optional). */
void tu_model_forward(const tu_case *c, double *o, double *sigma, uint8_t *sel);
/* The weight a[t][j] of key j in o_t (o_t = sum_j a_tj v_j when G = 1) of
 * the model, for batch b and query head h: a [N][N]. */
void tu_model_weights(const tu_case *c, int64_t b, int64_t h, double *a);

/* Effective values of the resolved configuration (as SPEC §4-6 define). */
double tu_eff_scale(const tu_case *c);
int64_t tu_eff_w(const still_config *cfg);
int64_t tu_eff_k(const still_config *cfg);
int64_t tu_eff_m(const tu_case *c);

/* Check assertion that two double arrays agree within tol (absolute),
 * naming the first mismatch. */
#define TU_ASSERT_CLOSE(a, b, n, tol, what)                                              \
    do {                                                                                 \
        const double *tu_a_ = (a), *tu_b_ = (b);                                         \
        int64_t tu_n_ = (n);                                                             \
        double tu_tol_ = (tol);                                                          \
        for (int64_t tu_i_ = 0; tu_i_ < tu_n_; tu_i_++) {                                \
            double tu_d_ = tu_a_[tu_i_] - tu_b_[tu_i_];                                  \
            ck_assert_msg(tu_a_[tu_i_] == tu_b_[tu_i_] || (tu_d_ <= tu_tol_ && -tu_d_ <= tu_tol_), \
                          "%s: element %lld: %.17g vs %.17g (tol %g)", (what),           \
                          (long long)tu_i_, tu_a_[tu_i_], tu_b_[tu_i_], tu_tol_);        \
        }                                                                                \
    } while (0)

/* Runs a suite with CK_NORMAL and returns the process exit status. */
struct Suite;
int tu_run_suite(struct Suite *s);

#endif /* STILL_TESTUTIL_H */
