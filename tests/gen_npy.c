/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * gen_npy.c -- writes a .npy file of pseudo-random values for the tool
 * tests, with its own header code (independent of lib/npy.c):
 *
 *   gen_npy [--nan I] [--version V] OUT f2|f4|f8|u1 SEED SCALE D0 [D1 ...]
 *
 * Values are uniform in [-SCALE, SCALE] (u1: 0 or 1); --nan plants a NaN
 * at flat index I; --version writes a 1.0, 2.0 or 3.0 header.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double next_uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* binary16 by rounding to nearest of the 11-bit significand (|x| < 2). */
static uint16_t to_half(double x)
{
    uint16_t sign = x < 0 ? 0x8000 : 0;
    double a = fabs(x);
    int e;
    if (a == 0)
        return sign;
    frexp(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    if (e - 1 < -14) /* subnormal: multiples of 2^-24 */
        return (uint16_t)(sign | (uint16_t)lround(a * 16777216.0));
    long m = lround(ldexp(a, 11 - e)); /* 1024..2048 */
    if (m == 2048) {
        m = 1024;
        e++;
    }
    return (uint16_t)(sign | (uint16_t)((e - 1 + 15) << 10) | (uint16_t)(m - 1024));
}

static int usage(void)
{
    fputs("usage: gen_npy [--nan I] [--version V] OUT f2|f4|f8|u1 SEED SCALE D0 [D1 ...]\n",
          stderr);
    return 2;
}

int main(int argc, char **argv)
{
    long nan_at = -1;
    int version = 1, a = 1;
    while (a < argc && !strncmp(argv[a], "--", 2)) {
        if (!strcmp(argv[a], "--nan") && a + 1 < argc)
            nan_at = atol(argv[a + 1]);
        else if (!strcmp(argv[a], "--version") && a + 1 < argc)
            version = atoi(argv[a + 1]);
        else
            return usage();
        a += 2;
    }
    if (argc - a < 5 || version < 1 || version > 3)
        return usage();
    const char *out = argv[a], *dt = argv[a + 1];
    uint64_t seed = strtoull(argv[a + 2], NULL, 10);
    double scale = atof(argv[a + 3]);
    int ndim = argc - a - 4, size;
    const char *descr;
    if (!strcmp(dt, "f2")) { descr = "<f2"; size = 2; }
    else if (!strcmp(dt, "f4")) { descr = "<f4"; size = 4; }
    else if (!strcmp(dt, "f8")) { descr = "<f8"; size = 8; }
    else if (!strcmp(dt, "u1")) { descr = "|u1"; size = 1; }
    else return usage();

    char dict[512];
    size_t count = 1;
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++) {
        long d = atol(argv[a + 4 + i]);
        count *= (size_t)d;
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%s%ld", i ? ", " : "", d);
    }
    len += snprintf(dict + len, sizeof dict - (size_t)len, "%s), }", ndim == 1 ? "," : "");
    size_t pre = version == 1 ? 10 : 12, hlen = (size_t)len + 1;
    hlen += (64 - (pre + hlen) % 64) % 64;

    FILE *fp = fopen(out, "wb");
    if (!fp)
        return 1;
    unsigned char p[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', (unsigned char)version, 0};
    for (size_t i = 0; i < pre - 8; i++)
        p[8 + i] = (unsigned char)(hlen >> (8 * i));
    fwrite(p, 1, pre, fp);
    fwrite(dict, 1, (size_t)len, fp);
    for (size_t i = (size_t)len; i + 1 < hlen; i++)
        fputc(' ', fp);
    fputc('\n', fp);
    for (size_t i = 0; i < count; i++) {
        double x = next_uniform(&seed) * scale;
        unsigned char b[8];
        if ((long)i == nan_at)
            x = NAN;
        if (size == 1) {
            b[0] = x > 0;
        } else if (size == 2) {
            uint16_t h = isnan(x) ? 0x7e00 : to_half(x);
            b[0] = (unsigned char)h;
            b[1] = (unsigned char)(h >> 8);
        } else if (size == 4) {
            float f = (float)x;
            uint32_t u;
            memcpy(&u, &f, 4);
            for (int k = 0; k < 4; k++)
                b[k] = (unsigned char)(u >> (8 * k));
        } else {
            uint64_t u;
            memcpy(&u, &x, 8);
            for (int k = 0; k < 8; k++)
                b[k] = (unsigned char)(u >> (8 * k));
        }
        fwrite(b, 1, (size_t)size, fp);
    }
    return fclose(fp) != 0;
}
