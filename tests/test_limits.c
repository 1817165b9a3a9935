/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * test_limits.c -- resource limits (issue 7; CONVENTIONS: sizes with
 * overflow checks; io.h: "sizes are checked before allocation").
 *
 * 1. Shapes whose element or byte counts overflow size_t are refused with
 *    STILL_E_OVERFLOW (or STILL_E_SHAPE) before any array is touched: the
 *    arrays passed are one element long, so ASan (the sanitizer job) and
 *    valgrind see any read.
 * 2. Allocation failure: libstill has no allocation hook (it calls malloc
 *    directly), so a forked child lowers its own RLIMIT_AS to what it uses
 *    now plus a small headroom, makes the call, and reports: the call must
 *    return STILL_OK or STILL_E_NOMEM -- STILL_E_NOMEM when the headroom is
 *    smaller than what the call needs by design -- and must not crash.  A
 *    leak on the failure path is caught three ways: LeakSanitizer (sanitizer
 *    job) and valgrind (valgrind job) check the child at its exit(); in a
 *    plain build glibc's mallinfo2 must not grow by more than LEAK_SLACK
 *    (freed small chunks kept in glibc's per-thread cache still count as in
 *    use, so a few KiB of noise are normal; a leaked buffer of this size of
 *    problem is MiBs).
 * 3. Parsers given absurd sizes in a few bytes refuse them with
 *    STILL_E_FORMAT / STILL_E_OVERFLOW under the same tight limit: a reader
 *    that allocated what the header claims would get STILL_E_NOMEM instead.
 * 4. The streaming state (SPEC §7) allocates what it holds, not what its
 *    configuration could hold: a state with a chunk or window of 1e9 is
 *    created, fed, saved and restored within a few hundred KiB, and a
 *    stream whose header claims more than its bytes hold is refused before
 *    anything is allocated for it (fuzz_state's state-load-huge-chunk).
 * 5. Sizes derived from several configuration fields saturate: a huge
 *    chunk, local, window or max_sel acts as its effective value on every
 *    entry point (issue 13).
 */
#define _GNU_SOURCE
#include "harden.h"
#include "fast.h"
#include "io.h"
#include "state.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <omp.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

/* ---- 1. overflowing shapes -------------------------------------------------- */

static const int64_t BIG = INT64_C(1) << 40;

static const still_shape overflowing[] = {
    /* B*H*N*D elements overflow */
    {INT64_C(1) << 62, 4, 4, 8, 8, 8, STILL_LAYOUT_BHND},
    {1, 1, 1, INT64_C(1) << 40, INT64_C(1) << 40, 1, STILL_LAYOUT_BHND},
    {1, INT64_C(1) << 31, 1, INT64_C(1) << 31, 4, 4, STILL_LAYOUT_BNHD},
    /* the elements fit, the bytes (x 8) do not */
    {1, 1, 1, INT64_C(1) << 61, 1, 1, STILL_LAYOUT_BHND},
    {1, 1, 1, 1, 1, INT64_C(1) << 61, STILL_LAYOUT_BHND},
    /* INT64_MAX itself */
    {1, 1, 1, INT64_MAX, 1, 1, STILL_LAYOUT_BHND},
    {INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, STILL_LAYOUT_BHND},
};
#define N_OVERFLOWING ((int)(sizeof overflowing / sizeof overflowing[0]))

static int refused(int rc)
{
    return rc == STILL_E_OVERFLOW || rc == STILL_E_SHAPE;
}

START_TEST(test_overflowing_shapes_are_refused_before_reading)
{
    const still_shape *s = &overflowing[_i];
    /* one element each: a call that read them as shaped would overrun */
    static float f1[1], fo[1];
    static double d1[1], doo[1], sig[1];
    static uint8_t sel[1];
    still_config cfg;
    still_config_default(&cfg);
    cfg.chunk = 4;
    cfg.topk = 1;
    ck_assert_msg(refused(still_config_validate(&cfg, s)), "validate: %s",
                  still_strerror(still_config_validate(&cfg, s)));
    still_tensors t = {0};
    t.dtype = STILL_F64;
    t.q = t.k = t.v = t.gate = d1;
    t.o = doo;
    t.sigma = sig;
    t.selected = sel;
    int rc = still_ref_forward(&cfg, s, NULL, &t);
    ck_assert_msg(refused(rc), "still_ref_forward: %s", still_strerror(rc));
    rc = still_ref_teacher(&cfg, s, &t);
    ck_assert_msg(refused(rc), "still_ref_teacher: %s", still_strerror(rc));
    t.dtype = STILL_F32;
    t.q = t.k = t.v = t.gate = f1;
    t.o = fo;
    rc = still_forward(&cfg, s, NULL, &t);
    ck_assert_msg(refused(rc) || rc == STILL_E_UNSUPPORTED, "still_forward: %s", still_strerror(rc));
    rc = still_teacher(&cfg, s, &t);
    ck_assert_msg(refused(rc) || rc == STILL_E_UNSUPPORTED, "still_teacher: %s", still_strerror(rc));
}
END_TEST

START_TEST(test_overflowing_feature_map_and_gate_sizes_are_refused)
{
    static double x[1], phi[1], W[1], G[1];
    static float xf[1], Wf[1], Gf[1];
    still_config cfg;
    still_config_default(&cfg);
    /* n x d and n x m overflow */
    int rc = still_ref_feature_map(&cfg, NULL, STILL_MAP_Q, 0, BIG, BIG, x, phi);
    ck_assert_msg(rc == STILL_E_OVERFLOW || rc == STILL_E_SHAPE || rc == STILL_E_PARAMS,
                  "feature map d = n = 2^40: %s", still_strerror(rc));
    rc = still_ref_feature_map(&cfg, NULL, STILL_MAP_Q, 0, 4, INT64_MAX, x, phi);
    ck_assert_msg(refused(rc), "feature map n = INT64_MAX: %s", still_strerror(rc));
    /* X [B][N][hidden], Wg [Hq*dv][hidden], G [B][Hq][N][dv] */
    rc = still_ref_gate_projection(BIG, BIG, 4, 1, 1, x, W, G);
    ck_assert_msg(refused(rc), "gate projection B = N = 2^40: %s", still_strerror(rc));
    rc = still_ref_gate_projection(1, 1, 4, BIG, BIG, x, W, G);
    ck_assert_msg(refused(rc), "gate projection Hq = dv = 2^40: %s", still_strerror(rc));
    rc = still_gate_projection(1, 1, BIG, BIG, 1, xf, Wf, Gf);
    ck_assert_msg(refused(rc) || rc == STILL_E_UNSUPPORTED, "fast gate projection: %s",
                  still_strerror(rc));
}
END_TEST

/* cfg.threads is a team size for OpenMP: libgomp overflowed its stack
 * (SIGSEGV) at 100000 and aborted at 2e9 before the library refused them;
 * the range is 0..STILL_THREADS_MAX. */
START_TEST(test_absurd_thread_counts_are_refused)
{
    static const int counts[] = {STILL_THREADS_MAX + 1, 4097, 100000, 2000000000, -1, INT_MIN};
    static float q[16], o[16];
    still_shape s = {1, 1, 1, 4, 4, 4, STILL_LAYOUT_BHND};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        still_config cfg;
        still_config_default(&cfg);
        cfg.threads = counts[i];
        ck_assert_int_eq(still_config_validate(&cfg, &s), STILL_E_CONFIG);
        still_tensors t = {0};
        t.dtype = STILL_F32;
        t.q = t.k = t.v = q;
        t.o = o;
        ck_assert_int_eq(still_forward(&cfg, &s, NULL, &t), STILL_E_CONFIG);
        ck_assert_int_eq(still_teacher(&cfg, &s, &t), STILL_E_CONFIG);
        still_state *st = NULL;
        ck_assert_int_eq(still_state_create(&cfg, &s, NULL, STILL_PATH_FAST, &st), STILL_E_CONFIG);
        ck_assert(st == NULL);
    }
}
END_TEST

/* The team OpenMP's default asks for (omp_set_num_threads: what
 * OMP_NUM_THREADS sets) is bounded by the work units: at 100000 libgomp
 * overflowed the caller's stack (SIGSEGV) and at 2^31-1 exited the process
 * ("Out of memory"), on 2 units.  Every call ends with STILL_OK and the
 * bits of one thread (SPEC I7).  (Two units keep the test light under
 * valgrind; tests/test_threads_env.sh runs 1200 units, past
 * STILL_THREADS_MAX, and the bound itself is checked below.) */
START_TEST(test_absurd_default_thread_counts_are_bounded)
{
    static const int counts[] = {100000, INT_MAX};
    static const int64_t heads[] = {2};
    const int saved = omp_get_max_threads();
    for (size_t ih = 0; ih < sizeof heads / sizeof heads[0]; ih++) {
        const still_shape s = {1, heads[ih], heads[ih], 8, 4, 4, STILL_LAYOUT_BHND};
        const size_t n = (size_t)hd_nq(&s);
        uint64_t seed = 11;
        float *q = hd_falloc((int64_t)n), *want = hd_falloc((int64_t)n),
              *want_t = hd_falloc((int64_t)n), *o = hd_falloc((int64_t)n);
        for (size_t i = 0; i < n; i++)
            q[i] = (float)(hd_unit(&seed) - 0.5);
        still_config cfg;
        still_config_default(&cfg);
        cfg.chunk = 4;
        cfg.topk = 1;
        still_tensors t = {0};
        t.dtype = STILL_F32;
        t.q = t.k = t.v = q;
        cfg.threads = 1;
        t.o = want;
        int rc1 = still_forward(&cfg, &s, NULL, &t);
        t.o = want_t;
        int rc2 = still_teacher(&cfg, &s, &t);
        if (rc1 == STILL_E_UNSUPPORTED || rc2 == STILL_E_UNSUPPORTED) {
            free(q), free(want), free(want_t), free(o);
            return; /* no fast path in this build */
        }
        ck_assert_int_eq(rc1, STILL_OK);
        ck_assert_int_eq(rc2, STILL_OK);
        cfg.threads = 0; /* OpenMP's default */
        for (size_t ic = 0; ic < sizeof counts / sizeof counts[0]; ic++) {
            omp_set_num_threads(counts[ic]);
            t.o = o;
            ck_assert_int_eq(still_forward(&cfg, &s, NULL, &t), STILL_OK);
            ck_assert_msg(!memcmp(o, want, n * sizeof *o), "forward, Hq %lld, %d threads",
                          (long long)heads[ih], counts[ic]);
            ck_assert_int_eq(still_teacher(&cfg, &s, &t), STILL_OK);
            ck_assert_msg(!memcmp(o, want_t, n * sizeof *o), "teacher, Hq %lld, %d threads",
                          (long long)heads[ih], counts[ic]);
            still_state *st = NULL;
            ck_assert_int_eq(still_state_create(&cfg, &s, NULL, STILL_PATH_FAST, &st), STILL_OK);
            ck_assert_int_eq(still_state_append(st, s.seq_len, &t), STILL_OK);
            still_state_destroy(st);
            ck_assert_msg(!memcmp(o, want, n * sizeof *o), "state, Hq %lld, %d threads",
                          (long long)heads[ih], counts[ic]);
            /* X [1][8][4] = q's first rows, Wg [Hq*4][4] = q */
            float *G = hd_falloc(heads[ih] * 8 * 4);
            ck_assert_int_eq(still_gate_projection(1, 8, 4, heads[ih], 4, q, q, G), STILL_OK);
            free(G);
        }
        omp_set_num_threads(saved);
        free(q), free(want), free(want_t), free(o);
    }
}
END_TEST

/* lib/threads.c: a team is never more than the units, STILL_THREADS_MAX or
 * cfg.threads, and at least 1, whatever OpenMP's default is.  (The
 * environment's own limits -- OMP_STACKSIZE, RLIMIT_AS -- can only lower
 * it; tests/test_threads_env.sh runs them.) */
START_TEST(test_team_is_bounded_by_units_and_threads_max)
{
    const int saved = omp_get_max_threads();
    static const int defaults[] = {1, 3, 100000, INT_MAX};
    static const int64_t units[] = {0, 1, 2, 1000, 1200, INT64_MAX};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        omp_set_num_threads(defaults[i]);
        for (size_t j = 0; j < sizeof units / sizeof units[0]; j++)
            for (int threads = 0; threads <= STILL_THREADS_MAX; threads += 341) {
                const int asked = threads ? threads : defaults[i];
                int64_t most = asked < STILL_THREADS_MAX ? asked : STILL_THREADS_MAX;
                if (most > units[j])
                    most = units[j] > 1 ? units[j] : 1;
                const int team = still__fast_threads(threads, units[j]);
                ck_assert_msg(team >= 1 && team <= most,
                              "threads %d, default %d, %lld units: team %d, at most %lld", threads,
                              defaults[i], (long long)units[j], team, (long long)most);
            }
    }
    omp_set_num_threads(saved);
}
END_TEST

/* ---- 2. allocation failure under RLIMIT_AS ------------------------------------ */

/* Virtual memory in use now (bytes), from /proc/self/statm. */
static size_t vm_now(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

#define LEAK_SLACK (64u << 10)

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

enum { CHILD_OK = 0, CHILD_NOMEM = 1, CHILD_OTHER = 2, CHILD_LEAK = 3, CHILD_SETUP = 4 };

typedef int (*limited_call)(void *arg);

/* Under valgrind a lowered RLIMIT_AS starves valgrind's own allocator (its
 * address-space manager aborts the child), so the limited runs are skipped
 * there; memcheck still checks every in-process call of this suite. */
static int rlimit_usable(void)
{
    const char *pre = getenv("LD_PRELOAD");
    static int said;
    if (!pre || !strstr(pre, "vgpreload"))
        return 1;
    if (!said)
        printf("# NOTE under valgrind: the RLIMIT_AS runs are skipped (valgrind cannot "
               "run with its address space capped)\n");
    said = 1;
    return 0;
}

/* One-time allocations of the runtime are not leaks: libgomp keeps ~2 KiB
 * after its first parallel region, and again in a forked child (its thread
 * pool does not survive fork).  Made in the child before measuring. */
static void warm_up(void)
{
    static double q[2 * 4], o[2 * 4];
    static float qf[2 * 4], of[2 * 4];
    still_shape s = {1, 1, 1, 2, 4, 4, STILL_LAYOUT_BHND};
    still_tensors t = {0};
    t.dtype = STILL_F64;
    t.q = t.k = t.v = q;
    t.o = o;
    (void)still_ref_forward(NULL, &s, NULL, &t);
    (void)still_ref_teacher(NULL, &s, &t);
    t.dtype = STILL_F32;
    t.q = t.k = t.v = qf;
    t.o = of;
    (void)still_forward(NULL, &s, NULL, &t);
    (void)still_teacher(NULL, &s, &t);
}

/* Runs call(arg) in a forked child whose address space may grow by at most
 * headroom bytes.  Returns the child's CHILD_* code, or 100 + signal. */
static int run_limited(limited_call call, void *arg, size_t headroom)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        struct rlimit old, lim;
        if (getrlimit(RLIMIT_AS, &old) != 0)
            _exit(CHILD_SETUP);
        lim = old;
        lim.rlim_cur = (rlim_t)(vm_now() + headroom);
        if (old.rlim_max != RLIM_INFINITY && lim.rlim_cur > old.rlim_max)
            _exit(CHILD_SETUP);
        warm_up();
        size_t before = heap_in_use();
        if (setrlimit(RLIMIT_AS, &lim) != 0)
            _exit(CHILD_SETUP);
        int rc = call(arg);
        setrlimit(RLIMIT_AS, &old); /* the soft limit may go back up */
        size_t after = heap_in_use();
        if (!UNDER_SANITIZER && after > before + LEAK_SLACK)
            _exit(CHILD_LEAK);
        /* exit(), not _exit(): LeakSanitizer checks the child at exit */
        exit(rc == STILL_OK ? CHILD_OK : rc == STILL_E_NOMEM ? CHILD_NOMEM : CHILD_OTHER);
    }
    int st = 0;
    ck_assert(waitpid(pid, &st, 0) == pid);
    if (WIFSIGNALED(st))
        return 100 + WTERMSIG(st);
    return WEXITSTATUS(st);
}

typedef struct big_call {
    still_shape s;
    still_config cfg;
    int fast, teacher;
    void *q, *k, *v, *o;
} big_call;

static int do_big_call(void *arg)
{
    big_call *b = arg;
    still_tensors t = {0};
    t.dtype = b->fast ? STILL_F32 : STILL_F64;
    t.q = b->q;
    t.k = b->k;
    t.v = b->v;
    t.o = b->o;
    if (b->teacher)
        return b->fast ? still_teacher(&b->cfg, &b->s, &t) : still_ref_teacher(&b->cfg, &b->s, &t);
    return b->fast ? still_forward(&b->cfg, &b->s, NULL, &t) : still_ref_forward(&b->cfg, &b->s, NULL, &t);
}

/* N = 1024, d = dv = 256, one head.  The ref path gathers each head's q,
 * k, v into double arrays (ref/ref.h), 2 MiB each here, and keeps the key
 * features phi_k [N][m = 512] (4 MiB): far above 256 KiB of headroom. */
static void big_call_init(big_call *b, int fast, int teacher)
{
    memset(b, 0, sizeof *b);
    b->s = (still_shape){1, 1, 1, 1024, 256, 256, STILL_LAYOUT_BHND};
    still_config_default(&b->cfg);
    b->cfg.threads = 1; /* libgomp aborts when it cannot start a thread */
    b->fast = fast;
    b->teacher = teacher;
    size_t item = fast ? sizeof(float) : sizeof(double);
    size_t n = 1024 * 256;
    uint64_t seed = 3;
    b->q = hd_alloc(n * item);
    b->k = hd_alloc(n * item);
    b->v = hd_alloc(n * item);
    b->o = hd_alloc(n * item);
    for (size_t i = 0; i < n; i++) {
        double x = hd_unit(&seed) - 0.5, y = hd_unit(&seed) - 0.5, z = hd_unit(&seed) - 0.5;
        if (fast) {
            ((float *)b->q)[i] = (float)x;
            ((float *)b->k)[i] = (float)y;
            ((float *)b->v)[i] = (float)z;
        } else {
            ((double *)b->q)[i] = x;
            ((double *)b->k)[i] = y;
            ((double *)b->v)[i] = z;
        }
    }
}

static void big_call_free(big_call *b)
{
    free(b->q);
    free(b->k);
    free(b->v);
    free(b->o);
}

static const char *child_name(int code)
{
    static char buf[32];
    switch (code) {
    case CHILD_OK: return "STILL_OK";
    case CHILD_NOMEM: return "STILL_E_NOMEM";
    case CHILD_OTHER: return "another status";
    case CHILD_LEAK: return "a leak (heap grew)";
    case CHILD_SETUP: return "setup failure";
    default: snprintf(buf, sizeof buf, "signal %d", code - 100); return buf;
    }
}

START_TEST(test_ref_forward_out_of_memory_returns_nomem_and_leaks_nothing)
{
    if (!rlimit_usable())
        return;
    big_call b;
    big_call_init(&b, 0, 0);
    int code = run_limited(do_big_call, &b, 256 << 10);
    ck_assert_msg(code == CHILD_NOMEM, "ref forward with 256 KiB of headroom: %s",
                  child_name(code));
    /* at every headroom up to success: OK or NOMEM, never a crash or a leak
       (a failure at a different allocation each time) */
    for (size_t kib = 512; kib <= (64u << 10); kib *= 2) {
        code = run_limited(do_big_call, &b, kib << 10);
        ck_assert_msg(code == CHILD_OK || code == CHILD_NOMEM,
                      "ref forward with %zu KiB of headroom: %s", kib, child_name(code));
    }
    big_call_free(&b);
}
END_TEST

START_TEST(test_ref_teacher_out_of_memory_is_clean)
{
    if (!rlimit_usable())
        return;
    big_call b;
    big_call_init(&b, 0, 1);
    for (size_t kib = 0; kib <= (16u << 10); kib = kib ? kib * 4 : 64) {
        int code = run_limited(do_big_call, &b, kib << 10);
        ck_assert_msg(code == CHILD_OK || code == CHILD_NOMEM,
                      "ref teacher with %zu KiB of headroom: %s", kib, child_name(code));
    }
    big_call_free(&b);
}
END_TEST

START_TEST(test_fast_path_out_of_memory_is_clean)
{
    if (!rlimit_usable())
        return;
    for (int teacher = 0; teacher < 2; teacher++) {
        big_call b;
        big_call_init(&b, 1, teacher);
        if (do_big_call(&b) == STILL_E_UNSUPPORTED) {
            printf("# NOTE the fast %s returns STILL_E_UNSUPPORTED: its out-of-memory "
                   "path is NOT checked\n", teacher ? "teacher" : "forward");
            big_call_free(&b);
            continue;
        }
        for (size_t kib = 0; kib <= (64u << 10); kib = kib ? kib * 4 : 64) {
            int code = run_limited(do_big_call, &b, kib << 10);
            ck_assert_msg(code == CHILD_OK || code == CHILD_NOMEM,
                          "fast %s with %zu KiB of headroom: %s", teacher ? "teacher" : "forward",
                          kib, child_name(code));
        }
        big_call_free(&b);
    }
}
END_TEST

/* ---- 3. parsers and absurd sizes ------------------------------------------------ */

static unsigned char *npy_bytes(const char *header, int version, size_t payload, size_t *len)
{
    size_t hl = strlen(header), lenb = version == 1 ? 2 : 4, pre = 8 + lenb;
    size_t total = pre + hl + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = hl + pad + 1;
    *len = pre + hlen + payload;
    unsigned char *b = hd_alloc(*len);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)version;
    b[7] = 0;
    for (size_t i = 0; i < lenb; i++)
        b[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + pre, header, hl);
    memset(b + pre + hl, ' ', pad);
    b[pre + hl + pad] = '\n';
    return b;
}

typedef struct parse_call {
    const unsigned char *buf;
    size_t len;
    int st; /* 0 npy, 1 safetensors */
} parse_call;

static int do_parse(void *arg)
{
    parse_call *p = arg;
    char err[STILL__ERRLEN];
    int rc;
    if (p->st) {
        still__st_file f;
        memset(&f, 0, sizeof f);
        rc = still__st_parse(p->buf, p->len, "absurd.safetensors", &f, err, sizeof err);
        if (rc == STILL_OK)
            still__st_free(&f);
    } else {
        still__array a;
        memset(&a, 0, sizeof a);
        rc = still__npy_parse(p->buf, p->len, "absurd.npy", &a, err, sizeof err);
        if (rc == STILL_OK)
            still__array_free(&a);
    }
    /* CHILD_OTHER for the refusals wanted, CHILD_NOMEM if it tried */
    return rc == STILL_E_FORMAT || rc == STILL_E_OVERFLOW ? STILL_E_FORMAT : rc;
}

static void assert_refused_cheaply(const unsigned char *buf, size_t len, int st, const char *what)
{
    parse_call p = {buf, len, st};
    /* first in this process: the status */
    int rc = do_parse(&p);
    ck_assert_msg(rc == STILL_E_FORMAT, "%s: status %s, want FORMAT or OVERFLOW", what,
                  still_strerror(rc));
    /* then with 64 KiB of headroom: a reader that allocates first gets NOMEM */
    if (!rlimit_usable())
        return;
    int code = run_limited(do_parse, &p, 64 << 10);
    ck_assert_msg(code == CHILD_OTHER, "%s under a 64 KiB limit: %s", what, child_name(code));
}

START_TEST(test_npy_absurd_shapes_are_refused_before_allocating)
{
    static const char *headers[] = {
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1152921504606846976, 8), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (268435456, 16), }", /* 32 GiB */
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++)
        for (int version = 1; version <= 3; version++) {
            size_t len;
            unsigned char *b = npy_bytes(headers[i], version, 16, &len);
            char what[64];
            snprintf(what, sizeof what, "npy v%d header %zu", version, i);
            assert_refused_cheaply(b, len, 0, what);
            free(b);
        }
    /* a v2 header length of 4 GiB - 1 in a 32-byte input */
    unsigned char hl[32] = "\x93NUMPY\x02\x00\xff\xff\xff\xff{";
    assert_refused_cheaply(hl, sizeof hl, 0, "npy header length 2^32-1");
}
END_TEST

static unsigned char *st_bytes(uint64_t hlen_field, const char *json, size_t payload, size_t *len)
{
    size_t jl = strlen(json);
    *len = 8 + jl + payload;
    unsigned char *b = hd_alloc(*len);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(hlen_field >> (8 * i));
    memcpy(b + 8, json, jl);
    return b;
}

START_TEST(test_safetensors_absurd_sizes_are_refused_before_allocating)
{
    static const struct {
        uint64_t hlen; /* 0: the JSON's own length */
        const char *json;
    } cases[] = {
        {UINT64_MAX, "{}"},
        {UINT64_C(1) << 62, "{}"},
        {UINT64_C(1) << 32, "{}"},
        {0, "{\"t\":{\"dtype\":\"F64\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,8]}}"},
        {0, "{\"t\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,16]}}"},
        {0, "{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,4611686018427387904]}}"},
        {0, "{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[18446744073709551600,18446744073709551615]}}"},
        {0, "{\"t\":{\"dtype\":\"F64\",\"shape\":[268435456,16],\"data_offsets\":[0,34359738368]}}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        uint64_t hl = cases[i].hlen ? cases[i].hlen : strlen(cases[i].json);
        unsigned char *b = st_bytes(hl, cases[i].json, 16, &len);
        char what[64];
        snprintf(what, sizeof what, "safetensors case %zu", i);
        assert_refused_cheaply(b, len, 1, what);
        free(b);
    }
}
END_TEST

/* ---- 4. the streaming state ------------------------------------------------------ */

/* The inputs of the running test, reachable from a global: LeakSanitizer
 * checks a forked child at exit, and a buffer only a stack frame of the
 * test holds may look leaked to it there (seen with the ASan job). */
static void *kept[4];

static void *keep(void *p)
{
    for (int i = 0; i < 4; i++)
        if (!kept[i]) {
            kept[i] = p;
            break;
        }
    return p;
}

static void drop(void *p)
{
    for (int i = 0; i < 4; i++)
        if (kept[i] == p)
            kept[i] = NULL;
    free(p);
}

typedef struct state_call {
    const unsigned char *buf;
    size_t len;
    int expect; /* the status of the same call without a limit */
} state_call;

static int do_state_load(void *arg)
{
    state_call *c = arg;
    still_state *st = NULL;
    int rc = still_state_load(c->buf, c->len, NULL, &st);
    still_state_destroy(st);
    if (rc == STILL_E_NOMEM)
        return rc;
    return rc == c->expect ? STILL_E_FORMAT : STILL_E_CONFIG; /* CHILD_OTHER: as expected */
}

/* Headroom for a state that is built: 256 KiB, or 64 MiB under a sanitizer
 * (ASan maps its allocator's regions megabytes at a time) -- either way far
 * below the gigabytes a state sized by its configuration asked for. */
#define BUILT_HEADROOM (UNDER_SANITIZER ? (size_t)64 << 20 : (size_t)256 << 10)

/* still_state_load of buf returns `expect` also with that headroom (64 KiB
 * for a refusal: nothing is built). */
static void assert_load_cheap(const unsigned char *buf, size_t len, int expect, const char *what)
{
    still_state *st = NULL;
    int rc = still_state_load(buf, len, NULL, &st);
    still_state_destroy(st);
    ck_assert_msg(rc == expect, "%s: %s, want %s", what, still_strerror(rc),
                  still_strerror(expect));
    if (!rlimit_usable())
        return;
    state_call c = {buf, len, expect};
    const size_t room = expect == STILL_OK ? BUILT_HEADROOM : (size_t)64 << 10;
    int code = run_limited(do_state_load, &c, room);
    ck_assert_msg(code == CHILD_OTHER, "%s under a %zu KiB limit: %s", what, room >> 10,
                  child_name(code));
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert(n > 0);
    rewind(f);
    unsigned char *b = hd_alloc((size_t)n);
    ck_assert(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void put_le64(unsigned char *p, uint64_t x)
{
    for (int b = 0; b < 8; b++)
        p[b] = (unsigned char)(x >> (8 * b));
}

/* The checksum after an edit (lib/state_io.c: FNV-1a 64 of all but the last 8). */
static void reseal(unsigned char *b, size_t len)
{
    put_le64(b + len - 8, still__fnv1a64(STILL__FNV_INIT, b, len - 8));
}

/* A state of chunk (and window) `huge`, fed 9 tokens, saved. */
static unsigned char *huge_config_stream(int path, int routing, int64_t huge, size_t *len,
                                         size_t *bytes)
{
    still_config cfg;
    still_config_default(&cfg);
    cfg.chunk = huge;
    cfg.routing = routing;
    cfg.topk = 1;
    cfg.local = 2;
    if (routing == STILL_ROUTING_SINKS)
        cfg.sinks = huge; /* SPEC §13: sinks far beyond the stream, too */
    still_shape s = {1, 2, 1, 1, 4, 3, STILL_LAYOUT_BHND};
    const int64_t n = 9;
    still_state *st = NULL;
    ck_assert_int_eq(still_state_create(&cfg, &s, NULL, path, &st), STILL_OK);
    uint64_t seed = 7;
    double *q = hd_dalloc(2 * n * 4), *k = hd_dalloc(n * 4), *v = hd_dalloc(n * 3);
    hd_fill_f(&seed, q, 2 * n * 4, -1, 1);
    hd_fill_f(&seed, k, n * 4, -1, 1);
    hd_fill_f(&seed, v, n * 3, -1, 1);
    still_tensors t = {0};
    float *qf = NULL, *kf = NULL, *vf = NULL;
    if (path == STILL_PATH_FAST) {
        t.dtype = STILL_F32;
        t.q = qf = hd_to_float(q, 2 * n * 4);
        t.k = kf = hd_to_float(k, n * 4);
        t.v = vf = hd_to_float(v, n * 3);
    } else {
        t.dtype = STILL_F64;
        t.q = q, t.k = k, t.v = v;
    }
    ck_assert_int_eq(still_state_append(st, n, &t), STILL_OK);
    ck_assert_int_eq(still_state_bytes(st, bytes), STILL_OK);
    ck_assert_int_eq(still_state_save(st, NULL, 0, len), STILL_OK);
    unsigned char *b = hd_alloc(*len);
    ck_assert_int_eq(still_state_save(st, b, *len, len), STILL_OK);
    still_state_destroy(st);
    free(q), free(k), free(v), free(qf), free(kf), free(vf);
    return b;
}

/* The input fuzz_state found: 1559 bytes whose header says window routing
 * with w = C = 989855748; the loader used to allocate ~200 GB for it. */
START_TEST(test_state_load_of_the_huge_chunk_stream_is_refused_cheaply)
{
    const char *data = getenv("STILL_TEST_DATA");
    ck_assert_msg(data != NULL, "STILL_TEST_DATA is not set");
    char path[4096];
    snprintf(path, sizeof path, "%s/../fuzz/corpus/state/crash-huge-chunk.state", data);
    size_t len;
    unsigned char *b = keep(read_file(path, &len));
    assert_load_cheap(b, len, STILL_E_FORMAT, "crash-huge-chunk.state");
    drop(b);
}
END_TEST

/* SPEC §7: memory follows the tokens held -- a chunk of 1e9 on either path
 * (saliency and window routing) is created, fed 9 tokens and restored in
 * well under 1 MiB, and the restored state saves back the same bytes. */
START_TEST(test_state_with_huge_chunk_holds_only_its_tokens)
{
    static const int routings[] = {STILL_ROUTING_SALIENCY, STILL_ROUTING_WINDOW,
                                   STILL_ROUTING_SINKS};
    for (int path = STILL_PATH_REF; path <= STILL_PATH_FAST; path++)
        for (int i = 0; i < 3; i++) {
            size_t len, bytes, len2;
            unsigned char *b =
                keep(huge_config_stream(path, routings[i], 1000000000, &len, &bytes));
            ck_assert_msg(bytes < (1u << 20), "path %d routing %d: %zu bytes held", path,
                          routings[i], bytes);
            assert_load_cheap(b, len, STILL_OK, "a state of chunk 1e9");
            still_state *st = NULL;
            ck_assert_int_eq(still_state_load(b, len, NULL, &st), STILL_OK);
            ck_assert_int_eq(still_state_save(st, NULL, 0, &len2), STILL_OK);
            unsigned char *again = hd_alloc(len2);
            ck_assert_int_eq(still_state_save(st, again, len2, &len2), STILL_OK);
            ck_assert(len2 == len && memcmp(again, b, len) == 0);
            still_state_destroy(st);
            free(again);
            drop(b);
        }
}
END_TEST

/* The configuration fuzz_config found (CI, 2026-12-03): routing sinks
 * with C = 2^25 and s = 2^40 on a stream of a few tokens.  The fast
 * forward reserved its sink cache for n + C tokens (973 MB) and a ref
 * state the same; the cache holds distinct positions, so it never needs
 * more than the tokens seen.  Both paths, forward and state, with N = 9
 * and d = 4, must run in 16 MiB of headroom. */
typedef struct huge_sinks_call {
    int path, state;
} huge_sinks_call;

static int do_huge_sinks_call(void *arg)
{
    const huge_sinks_call *h = arg;
    still_config cfg;
    still_config_default(&cfg);
    cfg.routing = STILL_ROUTING_SINKS;
    cfg.chunk = (int64_t)1 << 25;
    cfg.sinks = (int64_t)1 << 40;
    cfg.threads = 1;
    enum { N = 9, D = 4 };
    still_shape s = {1, 1, 1, N, D, D, STILL_LAYOUT_BHND};
    static double q[N * D], o[N * D];
    static float qf[N * D], of[N * D];
    for (int i = 0; i < N * D; i++)
        q[i] = qf[i] = (float)((i * 7 % 11) - 5) / 8.0f;
    still_tensors t = {0};
    t.dtype = h->path == STILL_PATH_FAST ? STILL_F32 : STILL_F64;
    t.q = t.k = t.v = h->path == STILL_PATH_FAST ? (void *)qf : (void *)q;
    t.o = h->path == STILL_PATH_FAST ? (void *)of : (void *)o;
    if (!h->state)
        return h->path == STILL_PATH_FAST ? still_forward(&cfg, &s, NULL, &t)
                                          : still_ref_forward(&cfg, &s, NULL, &t);
    s.seq_len = 1;
    still_state *st = NULL;
    int rc = still_state_create(&cfg, &s, NULL, h->path, &st);
    for (int i = 0; i < N && rc == STILL_OK; i++)
        rc = still_state_append(st, 1, &t);
    still_state_destroy(st);
    return rc;
}

START_TEST(test_huge_chunk_and_sinks_reserve_only_the_tokens_seen)
{
    if (!rlimit_usable())
        return;
    for (int path = STILL_PATH_REF; path <= STILL_PATH_FAST; path++)
        for (int state = 0; state < 2; state++) {
            huge_sinks_call h = {path, state};
            int code = run_limited(do_huge_sinks_call, &h, 16u << 20);
            ck_assert_msg(code == CHILD_OK, "path %d %s with C = 2^25, s = 2^40: %s", path,
                          state ? "state" : "forward", child_name(code));
        }
}
END_TEST

/* A header that claims more than the stream's bytes hold -- many units, a
 * large dim_v, a position whose raw tokens are not there -- is refused
 * (STILL_E_FORMAT) before the state is built, under 64 KiB of headroom. */
START_TEST(test_state_stream_claiming_more_than_it_holds_is_refused_cheaply)
{
    size_t len, bytes;
    unsigned char *b =
        keep(huge_config_stream(STILL_PATH_REF, STILL_ROUTING_SALIENCY, 4, &len, &bytes));
    /* offsets in the stream (lib/state_io.c): batch 112, dim_v 144,
     * position 164, units 172 */
    static const struct {
        size_t at;
        uint64_t value;
        const char *what;
    } lies[] = {
        {112, 1u << 20, "batch 2^20"},
        {144, 1u << 24, "dim_v 2^24"},
        {164, UINT64_C(1) << 40, "position 2^40"},
        {172, 1u << 30, "units 2^30"},
    };
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        unsigned char *c = keep(hd_alloc(len));
        memcpy(c, b, len);
        put_le64(c + lies[i].at, lies[i].value);
        if (lies[i].at == 112) /* units follow batch */
            put_le64(c + 172, (uint64_t)lies[i].value * 2);
        reseal(c, len);
        assert_load_cheap(c, len, STILL_E_FORMAT, lies[i].what);
        drop(c);
    }
    drop(b);
}
END_TEST

typedef struct create_call {
    still_config cfg;
    still_shape s;
    int path;
} create_call;

static int do_state_create(void *arg)
{
    create_call *c = arg;
    still_state *st = NULL;
    int rc = still_state_create(&c->cfg, &c->s, NULL, c->path, &st);
    still_state_destroy(st);
    return rc;
}

/* still_state_create: a chunk of 1e9 costs nothing until it fills; a state
 * whose units need more than any memory (2^36 of them: terabytes, refused
 * at once by glibc and by ASan's allocator alike) fails with STILL_E_NOMEM
 * and leaks nothing. */
START_TEST(test_state_create_huge_is_cheap_or_nomem)
{
    if (!rlimit_usable())
        return;
    for (int path = STILL_PATH_REF; path <= STILL_PATH_FAST; path++) {
        create_call c;
        still_config_default(&c.cfg);
        c.cfg.chunk = 1000000000;
        c.cfg.threads = 1;
        c.s = (still_shape){1, 2, 1, 1, 4, 3, STILL_LAYOUT_BHND};
        c.path = path;
        int code = run_limited(do_state_create, &c, BUILT_HEADROOM);
        ck_assert_msg(code == CHILD_OK, "path %d, chunk 1e9: %s", path, child_name(code));
        c.cfg.chunk = 64;
        c.s = (still_shape){INT64_C(1) << 36, 1, 1, 1, 64, 64, STILL_LAYOUT_BHND};
        code = run_limited(do_state_create, &c, BUILT_HEADROOM);
        ck_assert_msg(code == CHILD_NOMEM, "path %d, 2^36 units: %s", path, child_name(code));
    }
}
END_TEST

/* ---- 5. derived sizes (chunk x local, max_sel + k, 2w, ...) ------------------- */

/* Any configuration field may be as large as INT64_MAX, and what derives
 * from two of them saturates (still__resolve): a chunk, local or window
 * larger than the sequence acts as the sequence's length.  Each huge
 * configuration below equals a small one on N = 20 through every entry
 * point; the products used to overflow int64 (a SIGSEGV in the ref
 * route's cap for chunk = local = 2^40, the linear set silently taken for
 * the cache with local = 2^62). */
typedef struct derived_case {
    int routing;
    int64_t huge[5], small[5]; /* chunk, topk, window, local, max_sel */
} derived_case;

static const derived_case derived[] = {
    {STILL_ROUTING_SALIENCY, {BIG, 3, 8, BIG, 0}, {64, 3, 8, 1, 0}},
    {STILL_ROUTING_SALIENCY, {4, 2, 8, INT64_C(1) << 62, 0}, {4, 2, 8, 5, 0}},
    {STILL_ROUTING_SALIENCY, {4, 2, 8, INT64_C(1) << 62, INT64_MAX}, {4, 2, 8, 5, 0}},
    {STILL_ROUTING_SALIENCY, {4, 2, 8, 1, INT64_MAX}, {4, 2, 8, 1, 0}},
    {STILL_ROUTING_SALIENCY, {4, 4, INT64_MAX, 2, INT64_MAX - 1}, {4, 4, 20, 2, 0}},
    {STILL_ROUTING_SALIENCY, {INT64_MAX, INT64_MAX, 8, INT64_MAX, INT64_MAX}, {64, 64, 8, 1, 0}},
    {STILL_ROUTING_ALL, {INT64_MAX, 0, INT64_MAX, INT64_MAX, INT64_MAX}, {64, 0, 20, 1, 0}},
    {STILL_ROUTING_WINDOW, {INT64_MAX, 0, INT64_MAX, INT64_MAX, INT64_MAX}, {64, 0, 20, 2, 0}},
    {STILL_ROUTING_NONE, {INT64_MAX - 1, 0, INT64_MAX, INT64_MAX, INT64_MAX}, {64, 0, 20, 2, 0}},
};
#define N_DERIVED ((int)(sizeof derived / sizeof derived[0]))

static still_config derived_config(int routing, const int64_t v[5])
{
    still_config c;
    still_config_default(&c);
    c.routing = routing;
    c.chunk = v[0], c.topk = v[1], c.window = v[2], c.local = v[3], c.max_sel = v[4];
    c.threads = 1;
    return c;
}

/* The outputs of one configuration through every entry point. */
typedef struct derived_out {
    double o_ref[120], sig_ref[40], o_fast[120], o_st_ref[120], o_st_fast[120];
    double loss_ref, dq_ref[160], loss_fast, dq_fast[160];
} derived_out;

static void derived_run(const still_config *cfg, const still_shape *s, const double *q,
                        const double *k, const double *v, derived_out *out)
{
    const int64_t nq = hd_nq(s), nk = hd_nk(s), nv = hd_nv(s), no = hd_no(s);
    float *qf = hd_to_float(q, nq), *kf = hd_to_float(k, nk), *vf = hd_to_float(v, nv);
    float *of = hd_falloc(no);
    still_tensors t = {0};
    t.dtype = STILL_F64, t.q = q, t.k = k, t.v = v, t.o = out->o_ref, t.sigma = out->sig_ref;
    ck_assert_int_eq(still_config_validate(cfg, s), STILL_OK);
    ck_assert_int_eq(still_ref_forward(cfg, s, NULL, &t), STILL_OK);
    still_grads g = {0};
    g.dq = out->dq_ref;
    t.sigma = NULL;
    ck_assert_int_eq(still_ref_transfer_grad(cfg, s, NULL, &t, NULL, &out->loss_ref, &g),
                     STILL_OK);
    still_state *st = NULL;
    t.o = out->o_st_ref;
    ck_assert_int_eq(still_state_create(cfg, s, NULL, STILL_PATH_REF, &st), STILL_OK);
    ck_assert_int_eq(still_state_append(st, s->seq_len, &t), STILL_OK);
    still_state_destroy(st);

    t.dtype = STILL_F32, t.q = qf, t.k = kf, t.v = vf, t.o = of;
    ck_assert_int_eq(still_forward(cfg, s, NULL, &t), STILL_OK);
    for (int64_t i = 0; i < no; i++)
        out->o_fast[i] = of[i];
    g.dq = out->dq_fast;
    ck_assert_int_eq(still_transfer_grad(cfg, s, NULL, &t, NULL, &out->loss_fast, &g), STILL_OK);
    ck_assert_int_eq(still_state_create(cfg, s, NULL, STILL_PATH_FAST, &st), STILL_OK);
    ck_assert_int_eq(still_state_append(st, s->seq_len, &t), STILL_OK);
    still_state_destroy(st);
    for (int64_t i = 0; i < no; i++)
        out->o_st_fast[i] = of[i];
    free(qf), free(kf), free(vf), free(of);
}

START_TEST(test_huge_derived_sizes_act_as_their_effective_values)
{
    const derived_case *c = &derived[_i];
    const still_shape s = {1, 2, 1, 20, 4, 3, STILL_LAYOUT_BHND};
    static double q[160], k[80], v[60];
    static derived_out huge, small;
    uint64_t seed = 42;
    hd_fill(&seed, q, hd_nq(&s), -1.0, 1.0);
    hd_fill(&seed, k, hd_nk(&s), -1.0, 1.0);
    hd_fill(&seed, v, hd_nv(&s), -1.0, 1.0);
    still_config ch = derived_config(c->routing, c->huge), cs = derived_config(c->routing, c->small);
    derived_run(&cs, &s, q, k, v, &small);
    derived_run(&ch, &s, q, k, v, &huge);
    const int64_t no = hd_no(&s), nq = hd_nq(&s);
    hd_assert_close(huge.o_ref, small.o_ref, no, 1e-12, "ref o");
    for (int64_t i = 0; i < hd_ns(&s); i++) /* +inf at token 0 */
        ck_assert_msg(huge.sig_ref[i] == small.sig_ref[i] ||
                          fabs(huge.sig_ref[i] - small.sig_ref[i]) <= 1e-12,
                      "sigma[%lld]: %.17g vs %.17g", (long long)i, huge.sig_ref[i],
                      small.sig_ref[i]);
    hd_assert_close(huge.o_st_ref, small.o_ref, no, 1e-12, "ref state o");
    hd_assert_close(&huge.loss_ref, &small.loss_ref, 1, 1e-14, "ref loss");
    hd_assert_close(huge.dq_ref, small.dq_ref, nq, 1e-12, "ref dq");
    hd_assert_close(huge.o_fast, small.o_fast, no, 1e-6, "fast o");
    hd_assert_close(huge.o_st_fast, small.o_fast, no, 1e-5, "fast state o");
    hd_assert_close(&huge.loss_fast, &small.loss_fast, 1, 1e-7, "fast loss");
    hd_assert_close(huge.dq_fast, small.dq_fast, nq, 1e-5, "fast dq");
    /* and the small configuration is not a trivial one: the fast path agrees with the ref */
    hd_assert_close(small.o_fast, small.o_ref, no, 1e-5, "fast vs ref o");
}
END_TEST

static Suite *limits_suite(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("overflow");
    tcase_add_loop_test(tc, test_overflowing_shapes_are_refused_before_reading, 0, N_OVERFLOWING);
    tcase_add_test(tc, test_overflowing_feature_map_and_gate_sizes_are_refused);
    tcase_add_test(tc, test_absurd_thread_counts_are_refused);
    tcase_add_test(tc, test_absurd_default_thread_counts_are_bounded);
    tcase_add_test(tc, test_team_is_bounded_by_units_and_threads_max);
    suite_add_tcase(s, tc);
    tc = tcase_create("nomem");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_ref_forward_out_of_memory_returns_nomem_and_leaks_nothing);
    tcase_add_test(tc, test_ref_teacher_out_of_memory_is_clean);
    tcase_add_test(tc, test_fast_path_out_of_memory_is_clean);
    suite_add_tcase(s, tc);
    tc = tcase_create("parsers");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_npy_absurd_shapes_are_refused_before_allocating);
    tcase_add_test(tc, test_safetensors_absurd_sizes_are_refused_before_allocating);
    suite_add_tcase(s, tc);
    tc = tcase_create("state");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_state_load_of_the_huge_chunk_stream_is_refused_cheaply);
    tcase_add_test(tc, test_state_with_huge_chunk_holds_only_its_tokens);
    tcase_add_test(tc, test_huge_chunk_and_sinks_reserve_only_the_tokens_seen);
    tcase_add_test(tc, test_state_stream_claiming_more_than_it_holds_is_refused_cheaply);
    tcase_add_test(tc, test_state_create_huge_is_cheap_or_nomem);
    suite_add_tcase(s, tc);
    tc = tcase_create("derived");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_huge_derived_sizes_act_as_their_effective_values, 0, N_DERIVED);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return hd_run(limits_suite());
}
