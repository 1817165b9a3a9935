/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* dispatch.c -- picks the kernel table of the fast path (CONVENTIONS: SIMD
 * and dispatch).  Compiled with the baseline flags: it only asks the CPU
 * what it runs (__builtin_cpu_supports on x86-64; AdvSIMD is mandatory on
 * aarch64) and hands out the table of simd/ built for that ISA.  The
 * detection runs once (pthread_once) and is the only state kept; it never
 * changes afterwards. */
#include "fast.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static int detected = STILL_ISA_GENERIC; /* written once, under detect_once */

static void detect(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("fma"))
        detected = STILL_ISA_AVX512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        detected = STILL_ISA_AVX2;
    else
        detected = STILL_ISA_GENERIC;
#elif defined(__aarch64__)
    detected = STILL_ISA_NEON; /* AdvSIMD is part of the ARMv8-A base */
#else
    detected = STILL_ISA_GENERIC;
#endif
}

int still__isa_detect(void)
{
    pthread_once(&detect_once, detect);
    return detected;
}

static const char *const isa_names[] = {"auto", "generic", "avx2", "avx512", "neon"};

const char *still__isa_name(int isa)
{
    if (isa < STILL_ISA_AUTO || isa > STILL_ISA_NEON)
        return NULL;
    return isa_names[isa];
}

int still__isa_parse(const char *name)
{
    for (int isa = STILL_ISA_AUTO; isa <= STILL_ISA_NEON; isa++)
        if (name && strcmp(name, isa_names[isa]) == 0)
            return isa;
    return -1;
}

/* The table of an ISA this build has, or NULL. */
static const still__kernels *table_of(int isa)
{
    switch (isa) {
    case STILL_ISA_GENERIC: return &still__kernels_generic;
#if defined(__x86_64__)
    case STILL_ISA_AVX2: return &still__kernels_avx2;
    case STILL_ISA_AVX512: return &still__kernels_avx512;
#endif
#if defined(__aarch64__)
    case STILL_ISA_NEON: return &still__kernels_neon;
#endif
    default: return NULL;
    }
}

int still__isa_supported(int isa)
{
    int best = still__isa_detect();
    if (!table_of(isa))
        return 0;
    /* on x86-64 the ISAs are ordered: AVX-512 hosts run AVX2 too */
    return isa == STILL_ISA_GENERIC || isa <= best;
}

int still__kernels_select(int isa, const still__kernels **out)
{
    if (isa == STILL_ISA_AUTO) {
        const char *env = getenv("STILL_ISA");
        if (env && *env) {
            isa = still__isa_parse(env);
            if (isa < 0)
                return STILL_E_ISA; /* an unknown name is an error, not "auto" */
        }
    }
    if (isa == STILL_ISA_AUTO)
        isa = still__isa_detect();
    if (isa < STILL_ISA_GENERIC || isa > STILL_ISA_NEON || !still__isa_supported(isa))
        return STILL_E_ISA;
    *out = table_of(isa);
    return STILL_OK;
}
