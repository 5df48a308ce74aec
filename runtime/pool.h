/* A pool of persistent worker threads for data-parallel kernels.
 *
 * The caller is thread 0 of every job; workers are pthreads created once by
 * fm_pool_new. A job is handed out by bumping a generation counter: idle
 * workers spin on it for a short while (low latency: the forward pass runs
 * hundreds of jobs per token), then sleep on a condition variable. The caller
 * spins until every worker has finished, so fm_pool_run returns only after all
 * fn(ctx, ith, nth) calls have returned (and their writes are visible).
 *
 * One fm_pool_run at a time per pool, from one thread: a pool is not meant to
 * be shared by concurrent callers, and fn must not call fm_pool_run on the
 * same pool. */
#ifndef FM_POOL_H
#define FM_POOL_H

#include <stddef.h>

#include "formats/err.h"

typedef struct fm_pool fm_pool;

#define FM_POOL_MAX_THREADS 256

/* n_threads total, including the caller; 1 = no worker threads. FM_E_ARG when
 * n_threads is outside [1, FM_POOL_MAX_THREADS]; FM_E_NOMEM / FM_E_INTERNAL
 * when memory or a thread cannot be had (then nothing is left running). */
fm_err fm_pool_new(fm_pool **out, int n_threads, fm_error *e);
/* Stops and joins the workers, frees the scratch buffers. NULL is a no-op. */
void fm_pool_free(fm_pool *p);
/* Total threads (>= 1). A NULL pool counts as 1. */
int fm_pool_size(const fm_pool *p);

/* Runs fn(ctx, ith, nth) for ith in [0,nth) on the pool's threads (the caller
 * runs ith 0), returns when all are done. A NULL pool runs fn(ctx, 0, 1). */
void fm_pool_run(fm_pool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx);

/* Added for the kernels: per-thread scratch memory owned by the pool.
 * Returns a 64-byte aligned buffer of at least `bytes` bytes for thread `ith`
 * and slot `slot` (contents are not preserved when it grows), or NULL when
 * the allocation fails or an argument is out of range. Thread ith may call it
 * for its own ith inside a job; the caller may call it for any ith between
 * jobs. Slots 0 and 1 are used by fm_matmul (runtime/kernels.h); slots 2..3
 * are free for other users. */
#define FM_POOL_SCRATCH_SLOTS 4
void *fm_pool_scratch(fm_pool *p, int ith, int slot, size_t bytes);

#endif
