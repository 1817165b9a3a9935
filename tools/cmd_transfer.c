/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * cmd_transfer.c -- `still transfer`: stage 1 of STILL (SPEC §8), attention
 * transfer.  Fits the feature maps (and window.w) to the frozen softmax
 * teacher with Adam on the exact gradients, reports the loss curve
 * (progress on stderr, a CSV and a PNG plot on request) and writes
 * parameters that `still run --params` reads.  --synthetic builds a case
 * with a known structure (tokens of a few clusters that attend to their
 * own cluster) on which the default identity map is far from the teacher.
 */
#include "tool_train.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct transfer_opts {
    tool_attn_opts a;          /* inputs, configuration, --params (init), --out */
    int64_t steps;
    double lr, weight_decay, holdout;
    const char *csv, *plot, *synthetic_out;
    int synthetic, bias;
    int64_t seed;
    char synthetic_path[3][4096]; /* --synthetic-out's -q.npy, -k.npy, -v.npy */
} transfer_opts;

static void transfer_usage(FILE *f)
{
    fprintf(f,
            "usage: still transfer --q Q.npy --k K.npy --v V.npy --out P.safetensors\n"
            "                      [--params INIT] [--steps S] [--lr LR] [options]\n"
            "       still transfer --synthetic --out P.safetensors [options]\n"
            "\n"
            "Attention transfer (SPEC §8): fits the NP-Map parameters so that STILL\n"
            "attention matches full causal softmax attention of the same q, k, v, by Adam\n"
            "on the exact gradients of L = mean (o - o_teacher)^2.  It trains fq.W (from\n"
            "the identity, or from --params), fq.b (from 0 unless --no-bias), and the\n"
            "fq.u, fk.* and window.w that --params holds.  The selection is a constant\n"
            "of the inputs.  P.safetensors is read by `still run --params`.\n"
            "\n"
            "options of this command:\n"
            "  --out P              the fitted parameters, safetensors        (required)\n"
            "  --params INIT        initial parameters (default: identity map, f = d)\n"
            "  --steps S            Adam steps (default 200)\n"
            "  --lr LR              learning rate (default 0.01)\n"
            "  --weight-decay WD    decoupled weight decay (default 0)\n"
            "  --no-bias            do not add and train fq.b\n"
            "  --holdout FRAC       hold out the last FRAC of the tokens (0 <= FRAC < 1,\n"
            "                       default 0): fit on the others, and report the error\n"
            "                       against the teacher on the held-out queries\n"
            "  --csv LOSS.csv       the loss curve: step,loss,holdout_mse\n"
            "  --plot LOSS.png      the loss curve as a PNG (log scale)\n"
            "  --synthetic          a built-in case of known structure instead of --q/--k/--v\n"
            "                       (two kinds of tokens, each query head attends to one\n"
            "                       kind: B=1 Hq=2 Hk=1 N=192 d=16 dv=8, C=16 K=2 L=1)\n"
            "  --seed N             its random seed (default 1)\n"
            "  --synthetic-out PRE  also write its inputs PRE-q.npy, PRE-k.npy, PRE-v.npy\n"
            "  --dtype D            f4 or f8 for the parameters (default f8 ref, f4 fast)\n"
            "  --path P             fast (default here: float32, SIMD) or ref (exact, double)\n"
            "\nthe inputs, configuration and execution options of `still run` (its --path\n"
            "default does not apply here):\n%s"
            "\n"
            "Progress goes to stderr when it is a terminal (not with --no-progress); a\n"
            "summary to stdout.\n"
            "Exit status: 0 success, 2 usage error, 3 input file problem, 4 library\n"
            "error (e.g. the fast path not available), 5 output not written.\n",
            tool_attn_options_help);
}

/* ---- options --------------------------------------------------------------- */

static int parse(const char *cmd, int argc, char **argv, transfer_opts *o, int *help)
{
    const char *val;
    *help = 0;
    memset(o, 0, sizeof *o);
    tool_attn_defaults(&o->a);
    o->a.path = TOOL_PATH_FAST; /* training is the fast path's job; --path ref asks the oracle */
    o->steps = 200;
    o->lr = 0.01;
    o->bias = 1;
    o->seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (tool_is_help(a)) {
            *help = 1;
            return TOOL_EXIT_OK;
        }
        if (!strcmp(a, "--synthetic")) {
            o->synthetic = 1;
        } else if (!strcmp(a, "--no-bias")) {
            o->bias = 0;
        } else if (tool_is_option(a, "--steps")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--steps")) ||
                tool_parse_int64(cmd, "--steps", val, 0, 10000000, &o->steps))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--seed")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--seed")) ||
                tool_parse_int64(cmd, "--seed", val, 0, INT64_MAX, &o->seed))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--lr")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--lr")) ||
                tool_parse_double(cmd, "--lr", val, 0.0, 1e6, &o->lr))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--weight-decay")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--weight-decay")) ||
                tool_parse_double(cmd, "--weight-decay", val, 0.0, 1e6, &o->weight_decay))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--holdout")) {
            if (!(val = tool_option_value(cmd, argc, argv, &i, "--holdout")) ||
                tool_parse_double(cmd, "--holdout", val, 0.0, 0.99, &o->holdout))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--csv")) {
            if (!(o->csv = tool_option_value(cmd, argc, argv, &i, "--csv")))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--plot")) {
            if (!(o->plot = tool_option_value(cmd, argc, argv, &i, "--plot")))
                return TOOL_EXIT_USAGE;
        } else if (tool_is_option(a, "--synthetic-out")) {
            if (!(o->synthetic_out = tool_option_value(cmd, argc, argv, &i, "--synthetic-out")))
                return TOOL_EXIT_USAGE;
        } else {
            int rc = tool_attn_option(cmd, &o->a, argc, argv, &i);
            if (rc < 0)
                return TOOL_EXIT_USAGE;
            if (rc == 0)
                return tool_fail(TOOL_EXIT_USAGE, cmd,
                                 "unknown option '%s' (see still transfer --help)", a);
        }
    }
    if (o->synthetic && (o->a.q || o->a.k || o->a.v || o->a.gate))
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--synthetic builds its own inputs: it takes no "
                         "--q, --k, --v or --gate");
    if (!o->synthetic && (!o->a.q || !o->a.k || !o->a.v))
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--q, --k and --v (or --synthetic) are required "
                         "(see still transfer --help)");
    if (o->synthetic_out && !o->synthetic)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--synthetic-out needs --synthetic");
    if (!o->a.out)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "--out is required (see still transfer --help)");
    if (o->a.scores_out || o->a.select_out || o->a.select_in || o->a.decode)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "%s is not an option of still transfer (the "
                         "selection is recomputed from q and k; training uses the prefill)",
                         o->a.scores_out ? "--scores-out" : o->a.select_out ? "--select-out"
                         : o->a.select_in ? "--select-in" : "--mode decode");
    int rc;
    if ((rc = tool_out_add(cmd, "--out", o->a.out)) || (rc = tool_out_add(cmd, "--csv", o->csv)) ||
        (rc = tool_out_add(cmd, "--plot", o->plot)))
        return rc;
    if (o->synthetic_out) {
        static const char *const suffix[3] = {"q", "k", "v"};
        for (int x = 0; x < 3; x++) {
            int n = snprintf(o->synthetic_path[x], sizeof o->synthetic_path[x], "%s-%s.npy",
                             o->synthetic_out, suffix[x]);
            if (n < 0 || (size_t)n >= sizeof o->synthetic_path[x])
                return tool_fail(TOOL_EXIT_USAGE, cmd, "--synthetic-out: path too long");
            if ((rc = tool_out_add(cmd, "--synthetic-out", o->synthetic_path[x])))
                return rc;
        }
    }
    if ((rc = tool_out_input(cmd, "--q", o->a.q)) || (rc = tool_out_input(cmd, "--k", o->a.k)) ||
        (rc = tool_out_input(cmd, "--v", o->a.v)) ||
        (rc = tool_out_input(cmd, "--gate", o->a.gate)) ||
        (rc = tool_out_input(cmd, "--params", o->a.params)))
        return rc;
    return TOOL_EXIT_OK;
}

/* ---- the synthetic case ------------------------------------------------------ */

static double rng_unit(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static double rng_normal(uint64_t *s)
{
    double u1 = 1.0 - rng_unit(s), u2 = rng_unit(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#define SYN_P 2   /* kinds of tokens (clusters) */
#define SYN_D 16  /* d */
#define SYN_A 6.0 /* norm of q and k: the teacher's logits are ~A^2/sqrt(d) = 9 */

/* P orthonormal directions in R^d (Gram-Schmidt of Gaussian vectors): not
 * aligned with the axes, so the identity map mixes them. */
static void orthonormal(uint64_t *s, int64_t d, double *mu)
{
    for (int c = 0; c < SYN_P; c++) {
        double *x = mu + c * d, n = 0.0;
        for (int64_t i = 0; i < d; i++)
            x[i] = rng_normal(s);
        for (int p = 0; p < c; p++) {
            double dot = 0.0;
            for (int64_t i = 0; i < d; i++)
                dot += x[i] * mu[p * d + i];
            for (int64_t i = 0; i < d; i++)
                x[i] -= dot * mu[p * d + i];
        }
        for (int64_t i = 0; i < d; i++)
            n += x[i] * x[i];
        for (int64_t i = 0; i < d; i++)
            x[i] /= sqrt(n);
    }
}

/* Token t is of kind c(t) (one of P clusters); k_t = A mu_c + noise,
 * v_t = u_c + noise; query head h asks for the kind (c(t) + h) mod P:
 * q_t = A mu_{c+h} + noise.  The teacher attends sharply to the keys of
 * that kind, so o_t ~ u_{c+h}; a feature map that separates the kinds
 * follows it, the identity map (mu not on the axes) mixes them. */
static int synthetic_inputs(int64_t seed, tool_attn_inputs *in, int dtype)
{
    const int64_t B = 1, Hq = 2, Hk = 1, N = 192, d = SYN_D, dv = 8;
    uint64_t s = (uint64_t)seed * 0x2545F4914F6CDD1DULL + 1;
    double mu[SYN_P * SYN_D], u[SYN_P * 8];
    int cluster[192];

    memset(in, 0, sizeof *in);
    still_params_default(&in->params);
    in->shape = (still_shape){B, Hq, Hk, N, d, dv, STILL_LAYOUT_BHND};
    in->ndim = 4;
    in->dtype = dtype;
    size_t es = dtype == STILL_F64 ? sizeof(double) : sizeof(float);
    in->q = malloc((size_t)(B * Hq * N * d) * es);
    in->k = malloc((size_t)(B * Hk * N * d) * es);
    in->v = malloc((size_t)(B * Hk * N * dv) * es);
    if (!in->q || !in->k || !in->v) {
        tool_attn_free(in);
        return STILL_E_NOMEM;
    }
    orthonormal(&s, d, mu);
    for (int64_t i = 0; i < SYN_P * dv; i++)
        u[i] = rng_normal(&s);
    for (int64_t t = 0; t < N; t++)
        cluster[t] = (int)(rng_unit(&s) * SYN_P) % SYN_P;
    for (int64_t t = 0; t < N; t++) {
        for (int64_t i = 0; i < d; i++)
            still__store(dtype, in->k, t * d + i, SYN_A * mu[cluster[t] * d + i] + 0.1 * rng_normal(&s));
        for (int64_t e = 0; e < dv; e++)
            still__store(dtype, in->v, t * dv + e, u[cluster[t] * dv + e] + 0.1 * rng_normal(&s));
        for (int64_t h = 0; h < Hq; h++) {
            int c = (cluster[t] + (int)h) % SYN_P;
            for (int64_t i = 0; i < d; i++)
                still__store(dtype, in->q, (h * N + t) * d + i,
                             SYN_A * mu[c * d + i] + 0.1 * rng_normal(&s));
        }
    }
    return STILL_OK;
}

/* ---- the problem: training prefix, held-out tail ------------------------- */

typedef struct problem {
    const tool_attn_inputs *in;
    still_config cfg;
    int fast;
    int64_t n_train;                 /* queries fitted: positions < n_train */
    still_shape train_shape;
    void *tq, *tk, *tv, *tgate;      /* the prefix (copies) */
    void *teacher, *teacher_train;   /* the teacher of all N, of the prefix */
    void *o;                         /* scratch output [B,Hq,N,dv] */
} problem;

static void problem_free(problem *p)
{
    free(p->tq); free(p->tk); free(p->tv); free(p->tgate);
    free(p->teacher); free(p->teacher_train); free(p->o);
}

/* The first n of N rows of every (batch, head) of [B*H][N][D]. */
static void *prefix(const void *src, int64_t BH, int64_t N, int64_t D, int64_t n, size_t es)
{
    if (!src)
        return NULL;
    unsigned char *dst = malloc((size_t)(BH * n * D) * es);
    if (!dst)
        return NULL;
    for (int64_t r = 0; r < BH; r++)
        memcpy(dst + (size_t)(r * n * D) * es, (const unsigned char *)src + (size_t)(r * N * D) * es,
               (size_t)(n * D) * es);
    return dst;
}

static int problem_init(const transfer_opts *o, const tool_attn_inputs *in, problem *p)
{
    const still_shape *s = &in->shape;
    const size_t es = in->dtype == STILL_F64 ? sizeof(double) : sizeof(float);
    const int64_t BHq = s->batch * s->heads_q, BHk = s->batch * s->heads_kv, N = s->seq_len;
    int rc;

    memset(p, 0, sizeof *p);
    p->in = in;
    p->cfg = o->a.cfg;
    p->fast = o->a.path == TOOL_PATH_FAST;
    p->n_train = N - (int64_t)floor(o->holdout * (double)N + 0.5);
    if (p->n_train < 1)
        p->n_train = 1;
    p->train_shape = *s;
    p->train_shape.seq_len = p->n_train;
    p->teacher = malloc((size_t)(BHq * N * s->dim_v) * es);
    p->o = malloc((size_t)(BHq * N * s->dim_v) * es);
    if (!p->teacher || !p->o)
        return STILL_E_NOMEM;
    still_tensors t = {in->dtype, in->q, in->k, in->v, NULL, p->teacher, NULL, NULL, NULL, NULL,
                       NULL, NULL, NULL, NULL};
    if ((rc = p->fast ? still_teacher(&p->cfg, s, &t) : still_ref_teacher(&p->cfg, s, &t)))
        return rc;
    /* causal: the teacher of the prefix is the prefix of the teacher */
    p->tq = prefix(in->q, BHq, N, s->dim_qk, p->n_train, es);
    p->tk = prefix(in->k, BHk, N, s->dim_qk, p->n_train, es);
    p->tv = prefix(in->v, BHk, N, s->dim_v, p->n_train, es);
    p->tgate = prefix(in->gate, BHq, N, s->dim_v, p->n_train, es);
    p->teacher_train = prefix(p->teacher, BHq, N, s->dim_v, p->n_train, es);
    if (!p->tq || !p->tk || !p->tv || (in->gate && !p->tgate) || !p->teacher_train)
        return STILL_E_NOMEM;
    return STILL_OK;
}

/* The transfer loss on the prefix, and its gradients when g != NULL. */
static int train_loss(const problem *p, const still_params *params, double *loss,
                      const still_grads *g)
{
    still_tensors t = {p->in->dtype, p->tq, p->tk, p->tv, p->tgate, NULL, NULL, NULL, NULL, NULL,
                       NULL, NULL, NULL, NULL};
    return p->fast ? still_transfer_grad(&p->cfg, &p->train_shape, params, &t, p->teacher_train,
                                         loss, g)
                   : still_ref_transfer_grad(&p->cfg, &p->train_shape, params, &t,
                                             p->teacher_train, loss, g);
}

/* Mean squared error against the teacher over the held-out queries. */
static int holdout_mse(const problem *p, const still_params *params, double *mse)
{
    const tool_attn_inputs *in = p->in;
    const still_shape *s = &in->shape;
    still_tensors t = {in->dtype, in->q, in->k, in->v, in->gate, p->o, NULL, NULL, NULL, NULL,
                       NULL, NULL, NULL, NULL};
    int rc = p->fast ? still_forward(&p->cfg, s, params, &t)
                     : still_ref_forward(&p->cfg, s, params, &t);
    if (rc)
        return rc;
    double sum = 0.0;
    int64_t count = 0;
    for (int64_t r = 0; r < s->batch * s->heads_q; r++)
        for (int64_t n = p->n_train; n < s->seq_len; n++)
            for (int64_t e = 0; e < s->dim_v; e++) {
                int64_t i = (r * s->seq_len + n) * s->dim_v + e;
                double diff = still__load(in->dtype, p->o, i) - still__load(in->dtype, p->teacher, i);
                sum += diff * diff;
                count++;
            }
    *mse = count ? sum / (double)count : NAN;
    return STILL_OK;
}

/* ---- the loss curve as text and as a picture -------------------------------- */

/* A growing text buffer. */
typedef struct text {
    char *s;
    size_t n, cap;
    int failed;
} text;

/* Appends the CSV line of one step (holdout empty when NAN). */
static void text_add(text *t, long long step, double loss, double hold)
{
    char line[128];
    int len = isnan(hold) ? snprintf(line, sizeof line, "%lld,%.9g,\n", step, loss)
                          : snprintf(line, sizeof line, "%lld,%.9g,%.9g\n", step, loss, hold);
    if (t->failed || len < 0)
        return;
    if (t->n + (size_t)len + 1 > t->cap) {
        size_t cap = (t->cap ? 2 * t->cap : 4096) + (size_t)len;
        char *s = realloc(t->s, cap);
        if (!s) {
            t->failed = 1;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
    memcpy(t->s + t->n, line, (size_t)len);
    t->n += (size_t)len;
}

/* step,loss,holdout_mse (empty where not evaluated). */
static int write_csv(const char *path, const double *loss, const double *hold, int64_t steps,
                     char *err, size_t errlen)
{
    text t = {NULL, 0, 0, 0};
    const char *head = "step,loss,holdout_mse\n";
    t.s = malloc(strlen(head) + 1);
    if (!t.s)
        return still__io_fail(err, errlen, STILL_E_NOMEM, "%s: out of memory", path);
    memcpy(t.s, head, strlen(head));
    t.n = t.cap = strlen(head);
    for (int64_t i = 0; i <= steps; i++)
        text_add(&t, (long long)i, loss[i], hold[i]);
    if (t.failed) {
        free(t.s);
        return still__io_fail(err, errlen, STILL_E_NOMEM, "%s: out of memory", path);
    }
    still__write_part part = {t.s, t.n, 1};
    int rc = still__write_fd(tool_out_fd("transfer", path), path, &part, 1, err, errlen);
    free(t.s);
    return rc;
}

/* An RGB picture. */
typedef struct canvas {
    int w, h;
    unsigned char *px; /* [h][w][3] */
} canvas;

static void put(canvas *c, int x, int y, const unsigned char *rgb)
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h)
        return;
    memcpy(c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3, rgb, 3);
}

static void line(canvas *c, int x0, int y0, int x1, int y1, const unsigned char *rgb, int width)
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int e = dx + dy;
    for (;;) { /* Bresenham */
        for (int a = 0; a < width; a++)
            for (int b = 0; b < width; b++)
                put(c, x0 + a - width / 2, y0 + b - width / 2, rgb);
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * e;
        if (e2 >= dy) {
            e += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y0 += sy;
        }
    }
}

/* A 3x5 font of the characters the plot writes, rows top to bottom,
 * 3 bits each (4 = left column). */
static const struct glyph { char ch; unsigned char rows[5]; } font[] = {
    {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}},
    {'3', {7, 1, 7, 1, 7}}, {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}},
    {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}}, {'8', {7, 5, 7, 5, 7}},
    {'9', {7, 5, 7, 1, 7}}, {'-', {0, 0, 7, 0, 0}}, {'.', {0, 0, 0, 0, 2}},
    {'e', {0, 7, 7, 4, 7}}, {'a', {0, 3, 5, 5, 3}}, {'d', {1, 3, 5, 5, 3}},
    {'h', {4, 6, 5, 5, 5}}, {'i', {2, 0, 2, 2, 2}}, {'l', {6, 2, 2, 2, 7}},
    {'n', {0, 6, 5, 5, 5}}, {'o', {0, 2, 5, 5, 2}}, {'p', {0, 6, 5, 6, 4}},
    {'r', {0, 5, 6, 4, 4}}, {'s', {0, 3, 6, 3, 6}}, {'t', {2, 7, 2, 2, 3}},
    {'u', {0, 5, 5, 5, 3}},
};

/* Writes s with its top left corner at (x, y), each font pixel 2x2. */
static void label(canvas *c, int x, int y, const char *s, const unsigned char *rgb)
{
    for (; *s; s++, x += 8)
        for (size_t g = 0; g < sizeof font / sizeof *font; g++) {
            if (font[g].ch != *s)
                continue;
            for (int r = 0; r < 5; r++)
                for (int col = 0; col < 3; col++)
                    if (font[g].rows[r] & (4 >> col))
                        for (int a = 0; a < 4; a++)
                            put(c, x + 2 * col + a / 2, y + 2 * r + a % 2, rgb);
        }
}

/* The PNG file being built in memory (written atomically once complete). */
typedef struct png_bytes {
    unsigned char *p;
    size_t n, cap;
    int failed; /* out of memory */
} png_bytes;

static void png_bytes_put(png_structp png, png_bytep data, size_t n)
{
    png_bytes *b = png_get_io_ptr(png);
    if (b->failed)
        return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap - b->n < n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void png_bytes_flush(png_structp png)
{
    (void)png;
}

/* libpng's errors come back through longjmp to encode_png; neither they
 * nor its warnings are printed. */
static void png_fail(png_structp png, png_const_charp msg)
{
    (void)msg;
    png_longjmp(png, 1);
}

static void png_quiet(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* Encodes the canvas with libpng (8-bit RGB) into *b; 0 on success. */
static int encode_png(const canvas *c, png_bytes *b)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, png_fail, png_quiet);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_set_write_fn(png, b, png_bytes_put, png_bytes_flush);
    png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < c->h; y++)
        png_write_row(png, c->px + (size_t)y * (size_t)c->w * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return b->failed ? -1 : 0;
}

static int write_png(const char *path, const canvas *c, char *err, size_t errlen)
{
    png_bytes b = {NULL, 0, 0, 0};
    if (encode_png(c, &b)) {
        free(b.p);
        return still__io_fail(err, errlen, STILL_E_NOMEM, "%s: PNG encoding failed", path);
    }
    still__write_part part = {b.p, b.n, 1};
    int rc = still__write_fd(tool_out_fd("transfer", path), path, &part, 1, err, errlen);
    free(b.p);
    return rc;
}

/* log10 of the training loss (blue) and the held-out error (red) per step. */
static int plot_curve(const char *path, const double *loss, const double *hold, int64_t steps,
                      char *err, size_t errlen)
{
    static const unsigned char white[3] = {255, 255, 255}, grid[3] = {225, 225, 225},
                               ink[3] = {40, 40, 40}, blue[3] = {30, 90, 200},
                               red[3] = {210, 60, 40};
    canvas c = {640, 400, NULL};
    const int left = 70, right = 620, top = 20, bottom = 360;
    double lo = INFINITY, hi = -INFINITY;
    int have_hold = 0;
    for (int64_t i = 0; i <= steps; i++) {
        const double vals[2] = {loss[i], hold[i]};
        for (int k = 0; k < 2; k++)
            if (vals[k] > 0.0 && isfinite(vals[k])) {
                lo = fmin(lo, log10(vals[k]));
                hi = fmax(hi, log10(vals[k]));
                have_hold |= k;
            }
    }
    if (!(lo <= hi))
        lo = hi = 0.0;
    lo = floor(lo);
    hi = ceil(hi);
    if (hi <= lo)
        hi = lo + 1.0;
    if (!(c.px = malloc((size_t)c.w * (size_t)c.h * 3)))
        return still__io_fail(err, errlen, STILL_E_NOMEM, "%s: out of memory", path);
    for (int y = 0; y < c.h; y++)
        for (int x = 0; x < c.w; x++)
            put(&c, x, y, white);
    char buf[32];
    for (double e = lo; e <= hi + 0.5; e += 1.0) { /* decades */
        int y = bottom - (int)((e - lo) / (hi - lo) * (bottom - top) + 0.5);
        line(&c, left, y, right, y, grid, 1);
        snprintf(buf, sizeof buf, "1e%d", (int)e);
        label(&c, 4, y - 5, buf, ink);
    }
    for (int k = 0; k <= 4; k++) { /* steps */
        int x = left + (right - left) * k / 4;
        line(&c, x, bottom, x, bottom + 5, ink, 1);
        snprintf(buf, sizeof buf, "%lld", (long long)(steps * k / 4));
        label(&c, x - 4 * (int)strlen(buf), bottom + 10, buf, ink);
    }
    label(&c, (left + right) / 2 - 16, bottom + 28, "step", ink);
    line(&c, left, top, left, bottom, ink, 1);
    line(&c, left, bottom, right, bottom, ink, 1);
    for (int k = 0; k < 2; k++) {
        const double *vals = k ? hold : loss;
        int px = -1, py = -1;
        for (int64_t i = 0; i <= steps; i++) {
            if (!(vals[i] > 0.0) || !isfinite(vals[i]))
                continue;
            int x = left + (int)((double)(right - left) * (double)i / (double)(steps ? steps : 1));
            int y = bottom - (int)((log10(vals[i]) - lo) / (hi - lo) * (bottom - top) + 0.5);
            if (px >= 0)
                line(&c, px, py, x, y, k ? red : blue, 2);
            px = x;
            py = y;
        }
    }
    line(&c, right - 130, top + 12, right - 100, top + 12, blue, 2);
    label(&c, right - 92, top + 7, "train loss", blue);
    if (have_hold) {
        line(&c, right - 130, top + 32, right - 100, top + 32, red, 2);
        label(&c, right - 92, top + 27, "held-out", red);
    }
    int rc = write_png(path, &c, err, errlen);
    free(c.px);
    return rc;
}

/* ---- training ------------------------------------------------------------------ */

/* Adam over the whole parameter set; loss[s] and hold[s] after s steps
 * (hold NAN where not evaluated: every steps/100 steps and the last). */
static int fit(const transfer_opts *o, const problem *p, tool_param_set *ps, double *loss,
               double *hold)
{
    still_adam_config adam;
    still_grads g = tool_param_set_grads(ps);
    const int64_t every = o->steps / 100 > 1 ? o->steps / 100 : 1;
    double *m = calloc((size_t)ps->total, sizeof *m), *v = calloc((size_t)ps->total, sizeof *v);
    int rc = STILL_OK;

    if (!m || !v) {
        free(m);
        free(v);
        return STILL_E_NOMEM;
    }
    still_adam_default(&adam);
    adam.lr = o->lr;
    adam.weight_decay = o->weight_decay;
    for (int64_t s = 0; s <= o->steps && !rc; s++) {
        rc = train_loss(p, &ps->params, &loss[s], s < o->steps ? &g : NULL);
        hold[s] = NAN;
        if (!rc && p->n_train < p->in->shape.seq_len && (s % every == 0 || s == o->steps))
            rc = holdout_mse(p, &ps->params, &hold[s]);
        if (!rc && s < o->steps)
            rc = still_adam_step(&adam, s + 1, (size_t)ps->total, ps->values, ps->grads, m, v);
        if (!rc && isnan(hold[s]))
            tool_progress(s, o->steps, "step, loss %.4e", loss[s]);
        else if (!rc)
            tool_progress(s, o->steps, "step, loss %.4e, held-out %.4e", loss[s], hold[s]);
    }
    tool_progress_clear();
    free(m);
    free(v);
    return rc;
}

/* ---- outputs ----------------------------------------------------------------- */

static int write_params(const char *cmd, const char *path, const tool_param_set *ps, int dtype)
{
    char err[STILL__ERRLEN];
    still__array arrays[TOOL_MAX_PARAMS];
    float *conv = NULL;
    tool_param_set_arrays(ps, 0, arrays);
    if (dtype == STILL__DT_F4) {
        if (!(conv = malloc((size_t)ps->total * sizeof *conv)))
            return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s: out of memory", path);
        for (int64_t i = 0; i < ps->total; i++)
            conv[i] = (float)ps->values[i];
        for (int i = 0; i < ps->n; i++) {
            arrays[i].dtype = STILL__DT_F4;
            arrays[i].data = conv + ps->offset[i];
        }
    }
    int rc = still__st_write_fd(tool_out_fd(cmd, path), path, ps->n, ps->names, arrays, err,
                                sizeof err);
    free(conv);
    return rc ? tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s", err) : tool_out_close(cmd, path);
}

/* Every output into its temporary, then all renamed into place. */
static int write_all(const transfer_opts *o, const tool_param_set *ps, const double *loss,
                     const double *hold, const tool_attn_inputs *in)
{
    const char *cmd = "transfer";
    char err[STILL__ERRLEN];
    int rc;

    if (o->synthetic_out) { /* the synthetic inputs, for `still run` */
        const void *data[3] = {in->q, in->k, in->v};
        const int64_t H[3] = {in->shape.heads_q, in->shape.heads_kv, in->shape.heads_kv};
        const int64_t D[3] = {in->shape.dim_qk, in->shape.dim_qk, in->shape.dim_v};
        tool_output outs[3];
        for (int i = 0; i < 3; i++)
            outs[i] = (tool_output){o->synthetic_path[i],
                                    in->dtype == STILL_F64 ? STILL__DT_F8 : STILL__DT_F4, 4,
                                    {in->shape.batch, H[i], in->shape.seq_len, D[i]}, data[i],
                                    in->dtype};
        if ((rc = tool_write_outputs(cmd, outs, 3)))
            return rc;
    }
    int dt = o->a.dtype ? o->a.dtype : o->a.path == TOOL_PATH_FAST ? STILL__DT_F4 : STILL__DT_F8;
    if ((rc = write_params(cmd, o->a.out, ps, dt)))
        return rc;
    if (o->csv && (write_csv(o->csv, loss, hold, o->steps, err, sizeof err) ||
                   (rc = tool_out_close(cmd, o->csv))))
        return rc ? rc : tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s", err);
    if (o->plot && (plot_curve(o->plot, loss, hold, o->steps, err, sizeof err) ||
                    (rc = tool_out_close(cmd, o->plot))))
        return rc ? rc : tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s", err);
    return tool_out_commit(cmd); /* all or nothing (SPEC §11) */
}

static void summary(const transfer_opts *o, const problem *p, const tool_param_set *ps,
                    const double *loss, const double *hold, double seconds)
{
    const still_shape *s = &p->in->shape;
    printf("still transfer: %s path, %s, B=%lld Hq=%lld Hk=%lld N=%lld (%lld fitted, %lld held "
           "out) d=%lld dv=%lld, %lld Adam steps, lr %g, %.2f s\n",
           p->fast ? "fast" : "ref", o->synthetic ? "synthetic case" : "given inputs",
           (long long)s->batch, (long long)s->heads_q, (long long)s->heads_kv,
           (long long)s->seq_len, (long long)p->n_train, (long long)(s->seq_len - p->n_train),
           (long long)s->dim_qk, (long long)s->dim_v, (long long)o->steps, o->lr, seconds);
    printf("  loss %.6e -> %.6e (%.1fx lower)\n", loss[0], loss[o->steps],
           loss[o->steps] > 0.0 ? loss[0] / loss[o->steps] : INFINITY);
    if (!isnan(hold[0]))
        printf("  held-out mse vs teacher %.6e -> %.6e (%.1fx lower)\n", hold[0], hold[o->steps],
               hold[o->steps] > 0.0 ? hold[0] / hold[o->steps] : INFINITY);
    printf("  wrote %s:", o->a.out);
    for (int i = 0; i < ps->n; i++)
        printf(" %s", ps->names[i]);
    printf("\n");
}

int cmd_transfer(int argc, char **argv)
{
    const char *cmd = "transfer";
    transfer_opts o;
    tool_attn_inputs in;
    tool_param_set ps;
    problem p;
    double *loss = NULL, *hold = NULL;
    int help, rc;

    if ((rc = parse(cmd, argc, argv, &o, &help)) || help) {
        if (help)
            transfer_usage(stdout);
        return rc;
    }
    if (o.synthetic) {
        if (o.a.params && (rc = tool_fail(TOOL_EXIT_USAGE, cmd, "--synthetic starts from the "
                                          "identity map: it takes no --params")))
            return rc;
        if ((rc = synthetic_inputs(o.seed, &in, o.a.path == TOOL_PATH_FAST ? STILL_F32
                                                                           : STILL_F64)))
            return tool_fail(TOOL_EXIT_LIBRARY, cmd, "out of memory for the synthetic case");
        /* its configuration, unless given */
        int given[4] = {0, 0, 0, 0};
        for (int i = 1; i < argc; i++) {
            given[0] |= tool_is_option(argv[i], "--chunk");
            given[1] |= tool_is_option(argv[i], "--topk");
            given[2] |= tool_is_option(argv[i], "--local");
        }
        if (!given[0])
            o.a.cfg.chunk = 16;
        if (!given[1])
            o.a.cfg.topk = 2;
        if (!given[2])
            o.a.cfg.local = 1;
        if (o.a.cfg.routing == STILL_ROUTING_SALIENCY && o.a.cfg.topk > o.a.cfg.chunk) {
            tool_attn_free(&in);
            return tool_fail(TOOL_EXIT_USAGE, cmd, "--topk %lld exceeds --chunk %lld",
                             (long long)o.a.cfg.topk, (long long)o.a.cfg.chunk);
        }
    } else if ((rc = tool_attn_load(cmd, &o.a, 1, &in))) {
        return rc;
    }
    memset(&ps, 0, sizeof ps);
    if ((rc = problem_init(&o, &in, &p)) ||
        (rc = tool_param_set_build(o.a.params ? &in.params : NULL, in.shape.heads_q,
                                   in.shape.dim_qk, o.bias, &ps)) ||
        !(loss = malloc((size_t)(o.steps + 1) * sizeof *loss)) ||
        !(hold = malloc((size_t)(o.steps + 1) * sizeof *hold))) {
        rc = tool_fail(TOOL_EXIT_LIBRARY, cmd, "%s (%s)",
                       rc ? still_strerror(rc) : "out of memory", tool_status_name(rc ? rc
                                                                     : STILL_E_NOMEM));
        goto done;
    }
    if (p.fast && (rc = tool_blas_room(cmd)))
        goto done;
    double t0 = tool_now();
    if ((rc = fit(&o, &p, &ps, loss, hold))) {
        rc = tool_fail(TOOL_EXIT_LIBRARY, cmd, "the %s path refused: %s (%s)",
                       p.fast ? "fast" : "ref", still_strerror(rc), tool_status_name(rc));
        goto done;
    }
    double seconds = tool_now() - t0;
    if ((rc = write_all(&o, &ps, loss, hold, &in)))
        goto done;
    summary(&o, &p, &ps, loss, hold, seconds);
done:
    free(loss);
    free(hold);
    tool_param_set_free(&ps);
    problem_free(&p);
    tool_attn_free(&in);
    return rc;
}
