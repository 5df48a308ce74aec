/* Minimal test harness: each CHECK counts; main ends with T_DONE(), which
 * prints "N passed, N failed" and returns non-zero when anything failed. */
#ifndef FM_T_H
#define FM_T_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_pass, t_fail;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (cond) t_pass++;                                                           \
        else {                                                                        \
            t_fail++;                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                             \
    } while (0)

#define CHECKF(cond, ...)                                                  \
    do {                                                                   \
        if (cond) t_pass++;                                                \
        else {                                                             \
            t_fail++;                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

#define T_DONE()                                                  \
    do {                                                          \
        printf("%s: %d passed, %d failed\n", __FILE__, t_pass, t_fail); \
        return t_fail ? 1 : 0;                                    \
    } while (0)

/* Directory of the source tree (tests run from the repo root). */
#define T_SRC(path) (path)

#endif
