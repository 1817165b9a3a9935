/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/* threads.c -- how many threads one parallel region of the fast path asks
 * the OpenMP runtime for.
 *
 * The runtime ends the process when a team cannot be had: libgomp
 * overflows the caller's stack (SIGSEGV) starting ~100000 threads, exits
 * with status 1 ("Out of memory allocating ...") at OMP_NUM_THREADS=2^31-1,
 * and exits with status 1 ("Thread creation failed") when a thread's stack
 * cannot be mapped (OMP_STACKSIZE=100G).  The library must never do either,
 * so a team is bounded by (libstill(3), ENVIRONMENT):
 *   - the work units of the region (more threads would have nothing to do);
 *   - STILL_THREADS_MAX and the runtime's thread limit (OMP_THREAD_LIMIT);
 *   - the stack size the environment asks for (OMP_STACKSIZE, else
 *     GOMP_STACKSIZE): the runtime reads it once, at start, so it is read
 *     once here too, and one thread is started with it; when that fails the
 *     runtime's would as well, and every region runs on the calling thread;
 *   - half the address-space limit (RLIMIT_AS) over that stack size.
 * Results do not depend on the team (SPEC I7), so a smaller team changes
 * only the time.  The bound is computed once (pthread_once) and never
 * changes afterwards; it is the only state kept here. */
#include "fast.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <omp.h>

static pthread_once_t budget_once = PTHREAD_ONCE_INIT;
static int budget = 1; /* written once, under budget_once */

/* The bytes of a stack size as OpenMP reads OMP_STACKSIZE: a decimal
 * number, optionally one of the units B, K, M, G (either case; K when
 * absent), blanks around.  0 when `s` is absent or is not such a size (the
 * runtime then ignores it, with a warning, and keeps its default). */
static size_t stack_size_of(const char *s)
{
    if (!s)
        return 0;
    while (isspace((unsigned char)*s))
        s++;
    if (!isdigit((unsigned char)*s))
        return 0;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno)
        return 0;
    while (isspace((unsigned char)*end))
        end++;
    int shift = 10;
    if (*end) {
        switch (tolower((unsigned char)*end)) {
        case 'b': shift = 0; break;
        case 'k': shift = 10; break;
        case 'm': shift = 20; break;
        case 'g': shift = 30; break;
        default: return 0;
        }
        for (end++; isspace((unsigned char)*end); end++)
            ;
        if (*end)
            return 0;
    }
    if (n > (SIZE_MAX >> shift))
        return 0;
    return (size_t)n << shift;
}

static void *idle(void *arg)
{
    return arg;
}

/* 1 when a thread with a stack of `bytes` can be started now. */
static int thread_starts(size_t bytes)
{
    pthread_attr_t attr;
    pthread_t tid;
    int ok = 0;

    if (pthread_attr_init(&attr))
        return 0;
    /* a size the system refuses (below PTHREAD_STACK_MIN) is ignored by the
       runtime too: it keeps its default, which works */
    if (pthread_attr_setstacksize(&attr, bytes))
        ok = 1;
    else if (!pthread_create(&tid, &attr, idle, NULL))
        ok = !pthread_join(tid, NULL);
    pthread_attr_destroy(&attr);
    return ok;
}

static void compute_budget(void)
{
    int64_t b = STILL_THREADS_MAX;
    const int limit = omp_get_thread_limit();
    if (limit >= 1 && limit < b)
        b = limit;

    size_t stack = stack_size_of(getenv("OMP_STACKSIZE"));
    if (!stack)
        stack = stack_size_of(getenv("GOMP_STACKSIZE"));
    if (stack && !thread_starts(stack))
        b = 1;

    size_t per_thread = stack;
    if (!per_thread) { /* the system's default stack, which the runtime uses */
        pthread_attr_t attr;
        if (!pthread_attr_init(&attr)) {
            if (pthread_attr_getstacksize(&attr, &per_thread))
                per_thread = 0;
            pthread_attr_destroy(&attr);
        }
    }
    struct rlimit as;
    if (per_thread && !getrlimit(RLIMIT_AS, &as) && as.rlim_cur != RLIM_INFINITY) {
        const uint64_t fit = (uint64_t)as.rlim_cur / 2 / per_thread;
        if (fit < (uint64_t)b)
            b = fit ? (int64_t)fit : 1;
    }
    budget = (int)b;
}

int still__fast_threads(int threads, int64_t units)
{
    int64_t team = threads > 0 ? threads : omp_get_max_threads();
    if (team > units)
        team = units;
    if (team <= 1)
        return 1;
    pthread_once(&budget_once, compute_budget);
    return team < budget ? (int)team : budget;
}
