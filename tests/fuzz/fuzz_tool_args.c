/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * fuzz_tool_args.c -- libFuzzer target for the option parser of the
 * `still` tool (tools/tool_attn.c, tools/tool_common.c; SPEC §11), issue 7.
 *
 * The input is split at NUL bytes into an argv; the parser is run over it
 * as `still run` would (tool_attn_option on every word, then
 * tool_attn_check), and every word also goes through tool_parse_int64 and
 * tool_parse_double.  Nothing is loaded or written.  The parser must
 * never crash, read out of bounds, invoke UB or leak, and what it accepts
 * must be in range: a parsed chunk >= 1, topk <= chunk for saliency, a
 * finite nonnegative eps-den, a nonzero finite scale.
 */
#include "tool.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond)                                                                        \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "fuzz_tool_args: invariant failed: %s (line %d)\n", #cond,       \
                    __LINE__);                                                               \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* the tool's one-line usage errors would flood the log; the sanitizers
       write their reports to fd 2 directly, not through this stream */
    FILE *null = fopen("/dev/null", "w");
    if (null)
        stderr = null;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private NUL-terminated copy: argv words point into it */
    char *buf = malloc(size + 1);
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    argv[argc++] = "run";
    for (size_t p = 0; p < size && argc < MAX_ARGS;) {
        argv[argc++] = buf + p;
        p += strlen(buf + p) + 1;
    }
    argv[argc] = NULL;

    for (int i = 1; i < argc; i++) {
        int64_t x;
        double y;
        if (tool_parse_int64("run", "--x", argv[i], -5, INT64_C(1) << 40, &x) == 0)
            REQUIRE(x >= -5 && x <= INT64_C(1) << 40);
        if (tool_parse_double("run", "--x", argv[i], -1.0, 1e300, &y) == 0)
            REQUIRE(isfinite(y) && y >= -1.0 && y <= 1e300);
    }

    tool_attn_opts o;
    tool_attn_defaults(&o);
    int ok = 1;
    for (int i = 1; i < argc && ok; i++) {
        int r = tool_attn_option("run", &o, argc, argv, &i);
        REQUIRE(r >= -1 && r <= 1);
        REQUIRE(i < argc + 1);
        ok = r == 1;
    }
    if (ok && tool_attn_check("run", &o) == TOOL_EXIT_OK) {
        REQUIRE(o.q && o.k && o.v && o.out);
        REQUIRE(o.cfg.chunk >= 1);
        REQUIRE(o.cfg.routing != STILL_ROUTING_SALIENCY || o.cfg.topk <= o.cfg.chunk);
        REQUIRE(isfinite(o.cfg.eps_den) && o.cfg.eps_den >= 0.0);
        REQUIRE(isfinite(o.cfg.scale));
        /* the library's own check of what the tool accepted: any status,
           but it must not crash on it */
        still_shape s = {1, 2, 1, 8, 4, 3, STILL_LAYOUT_BHND};
        (void)still_config_validate(&o.cfg, &s);
    }
    free(buf);
    return 0;
}
