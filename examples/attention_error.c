/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * attention_error.c -- a small program against libstill's public API.
 *
 * Runs STILL attention (still_ref_forward) and the full softmax teacher
 * (still_ref_teacher) on random inputs and prints how far apart they are:
 * once with the default configuration (k = 4 of every 64 tokens exact), and
 * once with k = C, where STILL must equal the teacher (SPEC §6, identity I1)
 * -- the program exits 1 if it does not.
 *
 * Build against an installed libstill:
 *     cc attention_error.c $(pkg-config --cflags --libs still) -lm -o attention_error
 * (-lm because the program calls sqrt itself; libstill needs no flags more).
 */
#include <still.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { BATCH = 1, HEADS_Q = 4, HEADS_KV = 2, SEQ = 256, DIM = 32 };

/* A fixed-seed generator so that every run prints the same numbers. */
static double uniform(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static double *random_array(size_t n, uint64_t *state)
{
    double *a = malloc(n * sizeof *a);
    if (a)
        for (size_t i = 0; i < n; i++)
            a[i] = uniform(state) * 1.7; /* about unit variance */
    return a;
}

/* ||a - b|| / ||b|| over n elements. */
static double relative_error(const double *a, const double *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / den);
}

int main(void)
{
    const size_t nq = (size_t)BATCH * HEADS_Q * SEQ * DIM;
    const size_t nkv = (size_t)BATCH * HEADS_KV * SEQ * DIM;
    uint64_t seed = 42;
    double *q = random_array(nq, &seed), *k = random_array(nkv, &seed);
    double *v = random_array(nkv, &seed);
    double *o = malloc(nq * sizeof *o), *o_teacher = malloc(nq * sizeof *o_teacher);
    int status = 1;

    if (!q || !k || !v || !o || !o_teacher) {
        fprintf(stderr, "attention_error: out of memory\n");
        goto done;
    }
    still_shape shape = {BATCH, HEADS_Q, HEADS_KV, SEQ, DIM, DIM, STILL_LAYOUT_BHND};
    still_tensors t = {0};
    t.dtype = STILL_F64;
    t.q = q;
    t.k = k;
    t.v = v;

    still_config cfg;
    still_config_default(&cfg); /* C = 64, k = 4, L = 2, saliency routing */

    int rc;
    t.o = o_teacher;
    if ((rc = still_ref_teacher(&cfg, &shape, &t)) != STILL_OK) {
        fprintf(stderr, "still_ref_teacher: %s\n", still_strerror(rc));
        goto done;
    }
    t.o = o;
    if ((rc = still_ref_forward(&cfg, &shape, NULL, &t)) != STILL_OK) {
        fprintf(stderr, "still_ref_forward: %s\n", still_strerror(rc));
        goto done;
    }
    printf("libstill %s, random q, k, v: B=%d Hq=%d Hk=%d N=%d d=%d\n",
           still_version_string(), BATCH, HEADS_Q, HEADS_KV, SEQ, DIM);
    printf("STILL (C=%lld, k=%lld, L=%lld) vs softmax teacher: relative error %.4f\n",
           (long long)cfg.chunk, (long long)cfg.topk, (long long)cfg.local,
           relative_error(o, o_teacher, nq));

    cfg.topk = cfg.chunk; /* SPEC §6 I1: every token exact */
    cfg.eps_den = 0.0;
    if ((rc = still_ref_forward(&cfg, &shape, NULL, &t)) != STILL_OK) {
        fprintf(stderr, "still_ref_forward: %s\n", still_strerror(rc));
        goto done;
    }
    double err = relative_error(o, o_teacher, nq);
    printf("STILL with k = C, eps_den = 0 vs teacher:  relative error %.3g (must be < 1e-12)\n",
           err);
    status = err < 1e-12 ? 0 : 1;
done:
    free(q);
    free(k);
    free(v);
    free(o);
    free(o_teacher);
    return status;
}
