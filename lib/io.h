/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * io.h -- reading and writing the interchange files of SPEC §11:
 * NumPy .npy arrays and safetensors parameter files.
 *
 * Every file is untrusted: sizes are checked before allocation, arithmetic
 * is overflow-checked, and a failure returns STILL_E_IO / STILL_E_FORMAT /
 * STILL_E_DTYPE / STILL_E_NOMEM / STILL_E_OVERFLOW with one line of text
 * in err (naming the file, the tensor, expected vs found).  Writers write
 * to a temporary file and rename it, so a failure leaves nothing behind.
 */
#ifndef STILL_IO_H
#define STILL_IO_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define STILL__MAX_NDIM 8
#define STILL__ERRLEN 256

/* Element types of files. */
enum {
    STILL__DT_F2 = 1, /* <f2, read only (converted) */
    STILL__DT_F4 = 2, /* <f4 */
    STILL__DT_F8 = 3, /* <f8 */
    STILL__DT_U1 = 4, /* |u1 */
    STILL__DT_BF16 = 5, /* safetensors BF16, read only (converted) */
    STILL__DT_I4 = 6    /* <i4, write only (routing nsa's selected blocks, SPEC §17) */
};

/* An n-dimensional array owned by this struct (data from malloc). */
typedef struct still__array {
    int dtype;                       /* STILL__DT_* as stored in data */
    int ndim;
    int64_t shape[STILL__MAX_NDIM];
    int64_t count;                   /* product of shape */
    void *data;
} still__array;

void still__array_free(still__array *a);

/* Converts any float dtype (F2, BF16, F4, F8) to a new double array
 * [count], or float array.  U1 is refused with STILL_E_DTYPE. */
int still__array_to_f64(const still__array *a, double **out);
int still__array_to_f32(const still__array *a, float **out);

/* .npy v1-v3, little-endian <f2 <f4 <f8 |u1, C order (fortran_order True
 * is refused).  _parse reads from memory (for the fuzzer); _read from a
 * file; err may be NULL. */
int still__npy_parse(const void *buf, size_t len, const char *name, still__array *a,
                     char *err, size_t errlen);
int still__npy_read(const char *path, still__array *a, char *err, size_t errlen);
/* dtype one of F4, F8, U1, I4; writes version 1.0 (2.0 if the header needs it). */
int still__npy_write(const char *path, int dtype, int ndim, const int64_t *shape,
                     const void *data, char *err, size_t errlen);
/* The same bytes written at the current offset of an open file descriptor
 * (the still tool's output set creates and commits its files itself);
 * name is for messages only, and fd is neither synced nor closed. */
int still__npy_write_fd(int fd, const char *name, int dtype, int ndim, const int64_t *shape,
                        const void *data, char *err, size_t errlen);

/* safetensors: an 8-byte little-endian header length, a JSON header, data. */
typedef struct still__st_file {
    int n;                 /* number of tensors */
    char **names;          /* n names */
    still__array *arrays;  /* n arrays */
} still__st_file;

int still__st_parse(const void *buf, size_t len, const char *name, still__st_file *f,
                    char *err, size_t errlen);
int still__st_read(const char *path, still__st_file *f, char *err, size_t errlen);
/* The tensor called name, or NULL. */
const still__array *still__st_get(const still__st_file *f, const char *name);
void still__st_free(still__st_file *f);
/* Writes n tensors (dtype F4 or F8) with their names. */
int still__st_write(const char *path, int n, const char *const *names,
                    const still__array *arrays, char *err, size_t errlen);
/* The same on an open file descriptor, as still__npy_write_fd. */
int still__st_write_fd(int fd, const char *name, int n, const char *const *names,
                       const still__array *arrays, char *err, size_t errlen);

/* SPEC §11 parameter files: fq.W [Hq,f,d], fq.b [Hq,f], fq.u [Hq,d], the
 * same for fk.* (absent: tied to fq), window.w [Hq]; F32 or F64.  Fills
 * params with pointers into *storage (one malloc block the caller frees
 * with free()).  Shapes are checked against heads_q and dim_qk. */
int still__params_read(const char *path, int64_t heads_q, int64_t dim_qk,
                       still_params *params, double **storage, char *err, size_t errlen);

/* SPEC §15 (lib/lte_params.c): the lte.* tensors of a parameter file
 * (the other readers skip them) into lte, pointing into *storage (one
 * block, freed with free()); shapes checked against heads_kv. */
int still__lte_params_read(const char *path, int64_t heads_kv, still_lte_params *lte,
                           double **storage, char *err, size_t errlen);

/* ---- shared by npy.c and safetensors.c (and the tool) --------------------- */

/* Bytes per element of a STILL__DT_* type, 0 for an unknown one. */
size_t still__dtype_size(int dtype);
/* The NumPy name of a STILL__DT_* type ("<f4", "|u1", ...). */
const char *still__dtype_name(int dtype);
/* Formats one line into err (if err != NULL and errlen > 0); returns code. */
int still__io_fail(char *err, size_t errlen, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* Converts count elements of itemsize bytes between little-endian file
 * order and host order, in place (a no-op on little-endian hosts). */
void still__le_swap(void *data, size_t count, size_t itemsize);

/* Opens path for reading ("rb"); refuses anything but a regular file and
 * reports its size. */
int still__open_regular(const char *path, FILE **fp, size_t *size, char *err, size_t errlen);

/* One piece of a file: count elements of itemsize bytes, host order,
 * written little-endian. */
typedef struct still__write_part {
    const void *data;
    size_t count;
    size_t itemsize;
} still__write_part;
/* Writes the parts to a temporary file beside path, then renames it onto
 * path; on failure nothing is left behind (SPEC §11). */
int still__write_atomic(const char *path, const still__write_part *parts, int nparts,
                        char *err, size_t errlen);
/* Writes the parts at fd's offset (name for messages only); nothing is
 * synced, closed or renamed. */
int still__write_fd(int fd, const char *name, const still__write_part *parts, int nparts,
                    char *err, size_t errlen);
/* fd >= 0: still__write_fd; else still__write_atomic onto path. */
int still__write_to(const char *path, int fd, const still__write_part *parts, int nparts,
                    char *err, size_t errlen);

#endif /* STILL_IO_H */
