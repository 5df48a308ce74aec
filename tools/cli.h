/* Pieces every fm tool's main shares: one-line errors, exit codes, a clock,
 * and removal of OUT.tmp when a tool is interrupted. Define FM_CLI_PROG (the
 * tool's name) before including. Header-only: tools are single files. */
#ifndef FM_TOOLS_CLI_H
#define FM_TOOLS_CLI_H

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#ifndef FM_CLI_PROG
#error "define FM_CLI_PROG before including tools/cli.h"
#endif

enum { EXIT_FAIL = 1, EXIT_INPUT = 2 };

/* Prints "PROG: message" on stderr and returns code (for `return fail(...)`). */
static inline int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(FM_CLI_PROG ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

static inline double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* SIGINT/SIGTERM: remove the output's .tmp (async-signal-safe unlink), then
 * die of the same signal. SIGKILL cannot be caught: a stale .tmp may stay,
 * never a file under the final name. */
static char *g_tmp_path;
static inline void on_signal(int sig)
{
    if (g_tmp_path) unlink(g_tmp_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

#endif
