/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * corpus_main.c -- runs a fuzz target's LLVMFuzzerTestOneInput over its
 * committed corpus (tests/fuzz/corpus/<target>/) as a Check suite, one
 * test per file, so `make check` (and the sanitizer and valgrind jobs)
 * replay every seed and every input that once crashed (issue 7: a crash
 * found by fuzzing becomes a regression test).  The target aborts on a
 * violated invariant; the sanitizers report bad reads, UB and leaks.
 *
 * Built with -DFUZZ_CORPUS_DIR="<dir>" and linked with one fuzz_*.c.
 */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FILES 512

static char *files[MAX_FILES];
static int nfiles;

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_corpus(void)
{
    DIR *d = opendir(FUZZ_CORPUS_DIR);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) && nfiles < MAX_FILES) {
        if (e->d_name[0] == '.')
            continue;
        size_t n = strlen(FUZZ_CORPUS_DIR) + strlen(e->d_name) + 2;
        char *p = malloc(n);
        if (!p)
            break;
        snprintf(p, n, "%s/%s", FUZZ_CORPUS_DIR, e->d_name);
        files[nfiles++] = p;
    }
    closedir(d);
    qsort(files, (size_t)nfiles, sizeof files[0], by_name);
}

START_TEST(test_corpus_file_is_handled_cleanly)
{
    FILE *f = fopen(files[_i], "rb");
    ck_assert_msg(f != NULL, "cannot open %s", files[_i]);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert(n >= 0);
    rewind(f);
    /* an exact-size heap copy, so ASan sees any read past the end */
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    ck_assert(buf != NULL);
    ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
}
END_TEST

START_TEST(test_corpus_is_not_empty)
{
    ck_assert_msg(nfiles > 0, "no corpus in %s", FUZZ_CORPUS_DIR);
}
END_TEST

int main(void)
{
    list_corpus();
    Suite *s = suite_create("fuzz corpus " FUZZ_CORPUS_DIR);
    TCase *tc = tcase_create("corpus");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_corpus_is_not_empty);
    if (nfiles > 0)
        tcase_add_loop_test(tc, test_corpus_file_is_handled_cleanly, 0, nfiles);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (int i = 0; i < nfiles; i++)
        free(files[i]);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
