/* Tests for runtime/pool.{h,c}.
 * P1  argument checks: n_threads outside [1, FM_POOL_MAX_THREADS] -> FM_E_ARG.
 * P2  every job runs fn exactly once for each ith in [0, nth), with the pool's
 *     nth, and fm_pool_run returns only after all of them finished (their
 *     writes are visible), for 1..4 threads (more threads than cores included).
 * P3  a job posted right after fm_pool_new is not lost (workers that have not
 *     started yet must still see it).
 * P4  the sleep path (FM_POOL_SPIN=1: workers block on the condition variable
 *     between jobs) loses no wake-up.
 * P5  scratch buffers: 64-byte aligned, grow on demand, NULL for bad slot/ith.
 * Prints the mean latency of an empty job (informational). */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/pool.h"
#include "t.h"

typedef struct job {
    int nth_seen[FM_POOL_MAX_THREADS];
    atomic_int count[FM_POOL_MAX_THREADS];
    long plain[FM_POOL_MAX_THREADS]; /* non-atomic writes checked after run */
    atomic_int bad_nth;
    int expect_nth;
} job;

static void job_fn(void *ctx, int ith, int nth)
{
    job *j = ctx;
    if (nth != j->expect_nth || ith < 0 || ith >= nth) atomic_fetch_add(&j->bad_nth, 1);
    else {
        atomic_fetch_add(&j->count[ith], 1);
        j->plain[ith] += ith + 1;
    }
}

static void empty_fn(void *ctx, int ith, int nth)
{
    (void)ctx;
    (void)ith;
    (void)nth;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void run_many(fm_pool *p, int nth, int reps, const char *what)
{
    job *j = calloc(1, sizeof *j);
    j->expect_nth = nth;
    int lost = 0;
    for (int r = 0; r < reps; r++) {
        fm_pool_run(p, job_fn, j);
        /* P2: all done on return */
        for (int i = 0; i < nth; i++)
            if (atomic_load(&j->count[i]) != r + 1 || j->plain[i] != (long)(r + 1) * (i + 1)) lost++;
        if (lost) break;
    }
    CHECKF(lost == 0, "%s nth %d: a job was lost or ran twice", what, nth);
    CHECKF(atomic_load(&j->bad_nth) == 0, "%s nth %d: wrong ith/nth", what, nth);
    free(j);
}

int main(void)
{
    fm_pool *p = NULL;
    fm_error e;
    /* P1 */
    CHECK(fm_pool_new(&p, 0, &e) == FM_E_ARG && p == NULL);
    CHECK(fm_pool_new(&p, FM_POOL_MAX_THREADS + 1, &e) == FM_E_ARG && p == NULL);
    CHECK(fm_pool_new(NULL, 2, &e) == FM_E_ARG);
    CHECK(fm_pool_size(NULL) == 1);
    fm_pool_free(NULL);

    /* NULL pool runs inline */
    run_many(NULL, 1, 10, "NULL pool");

    /* P2 */
    for (int nth = 1; nth <= 4; nth++) {
        CHECK(fm_pool_new(&p, nth, &e) == FM_OK);
        CHECK(fm_pool_size(p) == nth);
        run_many(p, nth, nth <= 2 ? 5000 : 500, "spin");
        fm_pool_free(p);
    }

    /* P3: a job right after creation, many times */
    for (int k = 0; k < 100; k++) {
        CHECK(fm_pool_new(&p, 2 + k % 3, &e) == FM_OK);
        run_many(p, 2 + k % 3, 1, "fresh pool");
        fm_pool_free(p);
    }

    /* P4: workers sleep between jobs */
    setenv("FM_POOL_SPIN", "1", 1);
    for (int nth = 2; nth <= 3; nth++) {
        CHECK(fm_pool_new(&p, nth, &e) == FM_OK);
        run_many(p, nth, 500, "sleep");
        fm_pool_free(p);
    }
    unsetenv("FM_POOL_SPIN");

    /* P5 */
    CHECK(fm_pool_new(&p, 2, &e) == FM_OK);
    void *a = fm_pool_scratch(p, 1, 0, 100);
    CHECK(a != NULL && ((uintptr_t)a & 63) == 0);
    CHECK(fm_pool_scratch(p, 1, 0, 50) == a); /* no shrink, same buffer */
    void *b = fm_pool_scratch(p, 1, 0, 1 << 20);
    CHECK(b != NULL && ((uintptr_t)b & 63) == 0);
    memset(b, 1, 1 << 20);
    CHECK(fm_pool_scratch(p, 0, 3, 10) != NULL);
    CHECK(fm_pool_scratch(p, 2, 0, 10) == NULL);
    CHECK(fm_pool_scratch(p, -1, 0, 10) == NULL);
    CHECK(fm_pool_scratch(p, 0, FM_POOL_SCRATCH_SLOTS, 10) == NULL);
    CHECK(fm_pool_scratch(NULL, 0, 0, 10) == NULL);
    CHECK(fm_pool_scratch(p, 0, 0, SIZE_MAX) == NULL);

    /* latency of an empty job (informational) */
    const int reps = 5000;
    fm_pool_run(p, empty_fn, NULL);
    double t0 = now_s();
    for (int r = 0; r < reps; r++) fm_pool_run(p, empty_fn, NULL);
    double dt = now_s() - t0;
    printf("test_pool: empty fm_pool_run, 2 threads: %.2f us\n", dt / reps * 1e6);
    fm_pool_free(p);
    T_DONE();
}
