/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * cmd_info.c -- `still info`: what this build of libstill is and runs on:
 * version, compiler and options, OpenMP, OpenBLAS, SLEEF, the CPU's SIMD
 * features and the ISA the fast path detects.
 */
#include "fast.h"
#include "tool.h"

#include <cblas.h>
#include <sleef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define STR_(x) #x
#define STR(x) STR_(x)

static void info_usage(FILE *f)
{
    fprintf(f, "usage: still info\n"
               "\n"
               "Prints the library version, how it was built (compiler, OpenMP, OpenBLAS,\n"
               "SLEEF), the SIMD features of this CPU and the ISA the fast path detects\n"
               "and can run (STILL_ISA=generic|avx2|avx512|neon overrides --isa auto).\n"
               "Exit status: 0, or 2 on a usage error.\n");
}

static const char *compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown compiler";
#endif
}

static const char *architecture(void)
{
#if defined(__x86_64__)
    return "x86_64";
#elif defined(__aarch64__)
    return "aarch64";
#else
    return "other (generic kernels only)";
#endif
}

/* The CPU's SIMD features (what the fast path's dispatcher can choose from). */
static void print_cpu(void)
{
    printf("cpu features    ");
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    printf("sse4.2:%s avx2:%s fma:%s avx512f:%s avx512dq:%s\n",
           __builtin_cpu_supports("sse4.2") ? "yes" : "no",
           __builtin_cpu_supports("avx2") ? "yes" : "no",
           __builtin_cpu_supports("fma") ? "yes" : "no",
           __builtin_cpu_supports("avx512f") ? "yes" : "no",
           __builtin_cpu_supports("avx512dq") ? "yes" : "no");
#elif defined(__aarch64__)
    printf("neon:yes (ASIMD is mandatory on aarch64)\n");
#else
    printf("(not detected on this architecture)\n");
#endif
}

/* The fast path's dispatch (lib/dispatch.c): what it detects, what this
 * build and CPU can run, and the STILL_ISA override. */
static void print_isa(void)
{
    const int all[] = {STILL_ISA_GENERIC, STILL_ISA_AVX2, STILL_ISA_AVX512, STILL_ISA_NEON};
    printf("fast path ISA   %s (detected); runnable:", still__isa_name(still__isa_detect()));
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (still__isa_supported(all[i]))
            printf(" %s", still__isa_name(all[i]));
    printf("\n");
    const char *env = getenv("STILL_ISA");
    if (env) {
        int isa = still__isa_parse(env);
        printf("STILL_ISA       %s (%s)\n", env,
               isa < 0 ? "unknown: the fast path will refuse it"
               : isa == STILL_ISA_AUTO || still__isa_supported(isa)
                   ? "used when --isa is auto"
                   : "not runnable here: the fast path will refuse it");
    }
}

int cmd_info(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (tool_is_help(argv[i])) {
            info_usage(stdout);
            return TOOL_EXIT_OK;
        }
        return tool_fail(TOOL_EXIT_USAGE, "info", "%s '%s' (see still info --help)",
                         argv[i][0] == '-' ? "unknown option" : "unexpected argument", argv[i]);
    }
    printf("libstill        %s (runtime), %s (header)\n", still_version_string(),
           STILL_VERSION_STRING);
    printf("licence         MIT (Copyright (c) 2026 The libstill authors)\n");
    printf("built with      %s, C %ld, for %s\n", compiler(), (long)__STDC_VERSION__,
           architecture());
#ifdef _OPENMP
    /* the default team of a call with many units, as the library bounds it
       (an absurd OMP_NUM_THREADS or OMP_STACKSIZE shows here) */
    printf("OpenMP          %d, %d threads per call by default "
           "(OpenMP's default %d, at most %d)\n",
           _OPENMP, still__fast_threads(0, INT64_MAX), omp_get_max_threads(), STILL_THREADS_MAX);
#else
    printf("OpenMP          not enabled\n");
#endif
    printf("OpenBLAS        %s (core %s, %s threading)\n", openblas_get_config(),
           openblas_get_corename(),
           openblas_get_parallel() == 0 ? "sequential"
                                        : openblas_get_parallel() == 1 ? "pthreads" : "OpenMP");
    printf("SLEEF           %d.%d.%d\n", SLEEF_VERSION_MAJOR, SLEEF_VERSION_MINOR,
           SLEEF_VERSION_PATCHLEVEL);
    printf("MPI             %s\n", tool_mpi_available()
                                        ? "yes: mpirun -np P still run --path ref splits the queries"
                                        : "no (configure found no Open MPI)");
    print_cpu();
    print_isa();
    return TOOL_EXIT_OK;
}
