/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * make_state_corpus.c -- writes the seed corpus of fuzz_state.c (issue 7):
 * streams of still_state_save() after a few appends, for several
 * configurations (routings, L = 0, the cap, per-kv selection, both paths
 * where the fast one exists).  Not part of any build: compile it against
 * libstill_core by hand and run it with the corpus directory, e.g.
 *   cc -std=c11 -Iinclude -Ilib tests/fuzz/make_state_corpus.c \
 *      BUILD/lib/.libs/libstill_core.a $(pkg-config --libs openblas sleef) -lm -fopenmp \
 *      -o /tmp/msc && /tmp/msc tests/fuzz/corpus/state
 */
#include "still.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct seed {
    const char *name;
    int path, routing;
    int64_t chunk, topk, local, max_sel, tokens;
    int per_kv;
} seed;

static const seed seeds[] = {
    {"ref-saliency", STILL_PATH_REF, STILL_ROUTING_SALIENCY, 4, 1, 2, 0, 13, 0},
    {"ref-saliency-L0", STILL_PATH_REF, STILL_ROUTING_SALIENCY, 4, 2, 0, 0, 10, 0},
    {"ref-saliency-cap", STILL_PATH_REF, STILL_ROUTING_SALIENCY, 2, 1, 1, 3, 17, 0},
    {"ref-per-kv", STILL_PATH_REF, STILL_ROUTING_SALIENCY, 4, 1, 1, 0, 11, 1},
    {"ref-window", STILL_PATH_REF, STILL_ROUTING_WINDOW, 4, 1, 2, 0, 9, 0},
    {"ref-empty", STILL_PATH_REF, STILL_ROUTING_SALIENCY, 4, 1, 2, 0, 0, 0},
    {"fast-saliency", STILL_PATH_FAST, STILL_ROUTING_SALIENCY, 4, 1, 2, 0, 13, 0},
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        const seed *e = &seeds[i];
        still_config cfg;
        still_config_default(&cfg);
        cfg.chunk = e->chunk;
        cfg.topk = e->topk;
        cfg.local = e->local;
        cfg.max_sel = e->max_sel;
        cfg.routing = e->routing;
        cfg.select_per_kv = e->per_kv;
        still_shape s = {1, 2, 1, 1, 4, 3, STILL_LAYOUT_BHND};
        still_state *st;
        int rc = still_state_create(&cfg, &s, NULL, e->path, &st);
        if (rc) {
            printf("%s: create: %s (skipped)\n", e->name, still_strerror(rc));
            continue;
        }
        for (int64_t t = 0; t < e->tokens && rc == STILL_OK; t++) {
            double q[8], k[4], v[3];
            float qf[8], kf[4], vf[3];
            for (int j = 0; j < 8; j++)
                qf[j] = (float)(q[j] = 0.1 * (double)((t * 7 + j * 3) % 11) - 0.5);
            for (int j = 0; j < 4; j++)
                kf[j] = (float)(k[j] = 0.1 * (double)((t * 5 + j) % 9) - 0.4);
            for (int j = 0; j < 3; j++)
                vf[j] = (float)(v[j] = 0.2 * (double)((t + j) % 5) - 0.4);
            still_tensors tt = {0};
            tt.dtype = e->path == STILL_PATH_REF ? STILL_F64 : STILL_F32;
            tt.q = e->path == STILL_PATH_REF ? (const void *)q : (const void *)qf;
            tt.k = e->path == STILL_PATH_REF ? (const void *)k : (const void *)kf;
            tt.v = e->path == STILL_PATH_REF ? (const void *)v : (const void *)vf;
            rc = still_state_append(st, 1, &tt);
        }
        size_t len = 0;
        void *buf = NULL;
        if (rc == STILL_OK && (rc = still_state_save(st, NULL, 0, &len)) == STILL_OK &&
            (buf = malloc(len)) && (rc = still_state_save(st, buf, len, &len)) == STILL_OK) {
            char path[512];
            snprintf(path, sizeof path, "%s/seed-%s.state", argv[1], e->name);
            FILE *f = fopen(path, "wb");
            if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
                fprintf(stderr, "cannot write %s\n", path);
                return 1;
            }
            printf("%s: %zu bytes\n", path, len);
        } else {
            printf("%s: %s (skipped)\n", e->name, still_strerror(rc));
        }
        free(buf);
        still_state_destroy(st);
    }
    return 0;
}
