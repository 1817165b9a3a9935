/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * fuzz_overflow.c -- libFuzzer target for float32 overflow on the fast
 * path (SPEC §10: finite correct results, or an error), issue 13.
 *
 * The input picks a small hybrid configuration and shape, the values of
 * q, k, v, gate and the NP-Map parameters W, b, u, and one power-of-two
 * scale per array, anywhere in float's range (and beyond it for the double
 * parameters).  The scales are chosen where the exact result is
 * well-conditioned in float: q by 2^e with k by 2^-e, e >= 0 (the logits
 * keep their size; the other way, phi_q sits on the 1e-12 floor and the
 * kernel values phi_q.phi_k, of the size of eps_den, hang on the float
 * rounding of near-cancelling entries of a huge zhat_k: ill-conditioned,
 * found by this target and not an overflow), W and b together by 2^f, f >= -100 (NP-Map is invariant; below
 * float's normal range W itself would be rounded), u by any 2^g, v
 * and the gate by 2^h, 2^i, h, i >= -60 (the output is linear in them;
 * further down, the linear state's terms phi_k v, phi_k >= 1e-12, would be
 * subnormal: a loss of precision, not an overflow); the relu map
 * (homogeneous: no near-tie of a softmax over features of 1e30 decides).
 * still_forward must then return STILL_E_NONFINITE, or STILL_OK with o
 * within SPEC §10 of still_ref_forward given the fast path's selection
 * (1e-5 max|v|, times max|g| when the gate is above 1); the same for a fast
 * state fed the whole block.  A silent wrong result aborts.
 */
#include "still.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond)                                                                           \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "fuzz_overflow: invariant failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

typedef struct bytes {
    const uint8_t *p;
    size_t n, at;
} bytes;

static unsigned next(bytes *b) /* 0 once the input is used up */
{
    return b->at < b->n ? b->p[b->at++] : 0u;
}

/* a value in [-1, 1] from one byte, exact in float */
static double unit(bytes *b)
{
    return ((double)next(b) - 127.5) / 127.5;
}

static double max_abs(const double *x, int64_t n)
{
    double m = 0.0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bytes in = {data, size, 0};
    still_shape s = {1, 1 + next(&in) % 2, 1, 1 + next(&in) % 20, 1 + next(&in) % 8,
                     1 + next(&in) % 4, STILL_LAYOUT_BHND};
    still_config c;
    still_config_default(&c);
    c.chunk = 1 + next(&in) % 6;
    c.topk = next(&in) % (c.chunk + 1);
    c.local = next(&in) % 3;
    c.routing = next(&in) % 2 ? STILL_ROUTING_SALIENCY : STILL_ROUTING_WINDOW;
    c.act = STILL_ACT_RELU;
    c.threads = 1;
    /* the scales: q 2^e with k 2^-e; W, b 2^f; u 2^g; v 2^h; gate 2^i */
    const int e = (int)(next(&in) % 121), f = (int)(next(&in) % 300) - 100;
    const int g = (int)(next(&in) % 400) - 200, h = (int)(next(&in) % 187) - 60;
    const int gi = (int)(next(&in) % 187) - 60;
    const int with_gate = next(&in) % 2, with_map = next(&in) % 2;
    const int64_t nq = s.heads_q * s.seq_len * s.dim_qk, nk = s.seq_len * s.dim_qk;
    const int64_t nv = s.seq_len * s.dim_v, no = s.heads_q * s.seq_len * s.dim_v;
    const int64_t H = s.heads_q, d = s.dim_qk, fr = d;
    double *q = calloc((size_t)nq, sizeof *q), *k = calloc((size_t)nk, sizeof *k);
    double *v = calloc((size_t)nv, sizeof *v), *gate = calloc((size_t)no, sizeof *gate);
    double *W = calloc((size_t)(H * fr * d), sizeof *W), *b = calloc((size_t)(H * fr), sizeof *b);
    double *u = calloc((size_t)(H * d), sizeof *u), *want = calloc((size_t)no, sizeof *want);
    float *qf = calloc((size_t)nq, sizeof *qf), *kf = calloc((size_t)nk, sizeof *kf);
    float *vf = calloc((size_t)nv, sizeof *vf), *gf = calloc((size_t)no, sizeof *gf);
    float *of = calloc((size_t)no, sizeof *of);
    uint8_t *sel = calloc((size_t)(H * s.seq_len), 1);
    REQUIRE(q && k && v && gate && W && b && u && want && qf && kf && vf && gf && of && sel);
    /* both paths see the same values: the float ones, in double */
    for (int64_t i = 0; i < nq; i++)
        qf[i] = (float)ldexp(unit(&in), e), q[i] = qf[i];
    for (int64_t i = 0; i < nk; i++)
        kf[i] = (float)ldexp(unit(&in), -e), k[i] = kf[i];
    for (int64_t i = 0; i < nv; i++)
        vf[i] = (float)ldexp(unit(&in), h), v[i] = vf[i];
    for (int64_t i = 0; i < no; i++)
        gf[i] = (float)ldexp(0.5 + 0.5 * fabs(unit(&in)), gi), gate[i] = gf[i];
    for (int64_t i = 0; i < H * fr * d; i++)
        W[i] = ldexp(unit(&in), f);
    for (int64_t i = 0; i < H * fr; i++)
        b[i] = ldexp(unit(&in), f);
    for (int64_t i = 0; i < H * d; i++)
        u[i] = ldexp(unit(&in), g);
    still_params p;
    still_params_default(&p);
    if (with_map) {
        p.fq.f = fr;
        p.fq.W = W, p.fq.b = b, p.fq.u = u;
    }
    still_tensors t = {0};
    t.dtype = STILL_F32;
    t.q = qf, t.k = kf, t.v = vf, t.gate = with_gate ? gf : NULL, t.o = of, t.selected = sel;
    int rc = still_forward(&c, &s, &p, &t);
    REQUIRE(rc == STILL_OK || rc == STILL_E_NONFINITE || rc == STILL_E_CONFIG ||
            rc == STILL_E_SHAPE);
    if (rc == STILL_OK) {
        still_tensors tr = {0};
        tr.dtype = STILL_F64;
        tr.q = q, tr.k = k, tr.v = v, tr.gate = with_gate ? gate : NULL, tr.o = want;
        tr.selection_in = sel;
        REQUIRE(still_ref_forward(&c, &s, &p, &tr) == STILL_OK);
        const double gm = with_gate ? max_abs(gate, no) : 1.0;
        const double tol = 1e-5 * max_abs(v, nv) * (gm > 1.0 ? gm : 1.0);
        for (int64_t i = 0; i < no; i++)
            REQUIRE(fabs((double)of[i] - want[i]) <= tol);
        /* a fast state fed the same block: the same computation */
        still_state *st = NULL;
        REQUIRE(still_state_create(&c, &s, &p, STILL_PATH_FAST, &st) == STILL_OK);
        float *o2 = calloc((size_t)no, sizeof *o2);
        REQUIRE(o2);
        t.o = o2, t.selected = NULL;
        int rs = still_state_append(st, s.seq_len, &t);
        REQUIRE(rs == STILL_OK);
        for (int64_t i = 0; i < no; i++)
            REQUIRE(fabs((double)o2[i] - want[i]) <= tol);
        still_state_destroy(st);
        free(o2);
    }
    free(q), free(k), free(v), free(gate), free(W), free(b), free(u), free(want);
    free(qf), free(kf), free(vf), free(gf), free(of), free(sel);
    return 0;
}
