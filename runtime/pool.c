/* Persistent thread pool: spin-then-sleep workers, caller is thread 0. */
#include "runtime/pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FM_CPU_RELAX() _mm_pause()
#else
#define FM_CPU_RELAX() ((void)0)
#endif

/* Pause iterations a worker spins on the generation counter before it
 * sleeps (a few hundred microseconds on current x86: long enough to bridge the
 * serial gaps between the kernels of one token, short enough not to burn a
 * core while the caller does something else). FM_POOL_SPIN overrides. */
#define FM_POOL_SPIN_DEFAULT (1 << 14)
/* Pause iterations the caller spins waiting for workers before it starts
 * yielding the CPU (helps when the machine is oversubscribed). */
#define FM_POOL_WAIT_SPIN (1 << 12)

typedef struct fm_scratch {
    void *ptr;
    size_t cap;
} fm_scratch;

typedef struct fm_worker {
    pthread_t tid;
    struct fm_pool *pool;
    int ith;
    fm_scratch scratch[FM_POOL_SCRATCH_SLOTS];
} fm_worker;

struct fm_pool {
    /* written by the caller, read by workers after seeing a new generation */
    _Alignas(64) void (*fn)(void *ctx, int ith, int nth);
    void *ctx;
    int nth;
    long spin;
    _Alignas(64) atomic_uint gen;
    _Alignas(64) atomic_int done;
    _Alignas(64) atomic_int nsleep;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fm_worker *w; /* nth entries; w[0] is the caller's (scratch only) */
    int started;  /* worker threads successfully created */
};

static void *fm_pool_worker_main(void *arg)
{
    fm_worker *w = arg;
    fm_pool *p = w->pool;
    /* generation 0 is "no job yet": jobs may be posted before this thread runs */
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        long i = 0;
        for (;;) {
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
            if (g != seen) break;
            if (++i >= p->spin) {
                pthread_mutex_lock(&p->mu);
                atomic_fetch_add(&p->nsleep, 1); /* seq_cst: pairs with the caller's gen bump */
                while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->cv, &p->mu);
                atomic_fetch_sub(&p->nsleep, 1);
                pthread_mutex_unlock(&p->mu);
                break;
            }
            FM_CPU_RELAX();
        }
        seen = g;
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        p->fn(p->ctx, w->ith, p->nth);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
    return NULL;
}

static void fm_pool_kick(fm_pool *p)
{
    atomic_fetch_add(&p->gen, 1u); /* seq_cst: see fm_pool_worker_main */
    if (atomic_load(&p->nsleep) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

static void fm_pool_stop_workers(fm_pool *p)
{
    if (p->started == 0) return;
    atomic_store(&p->stop, 1);
    fm_pool_kick(p);
    for (int i = 1; i <= p->started; i++) pthread_join(p->w[i].tid, NULL);
    p->started = 0;
}

fm_err fm_pool_new(fm_pool **out, int n_threads, fm_error *e)
{
    if (out == NULL) return fm_error_set(e, FM_E_ARG, "fm_pool_new: out is NULL");
    *out = NULL;
    if (n_threads < 1 || n_threads > FM_POOL_MAX_THREADS)
        return fm_error_set(e, FM_E_ARG, "fm_pool_new: n_threads must be in [1, %d], found %d",
                            FM_POOL_MAX_THREADS, n_threads);
    fm_pool *p = aligned_alloc(64, (sizeof(fm_pool) + 63) / 64 * 64);
    if (p == NULL) return fm_error_set(e, FM_E_NOMEM, "fm_pool_new: out of memory");
    memset(p, 0, sizeof *p);
    p->w = calloc((size_t)n_threads, sizeof(fm_worker));
    if (p->w == NULL) {
        free(p);
        return fm_error_set(e, FM_E_NOMEM, "fm_pool_new: out of memory for %d workers", n_threads);
    }
    p->nth = n_threads;
    p->spin = FM_POOL_SPIN_DEFAULT;
    const char *s = getenv("FM_POOL_SPIN");
    if (s != NULL && *s != '\0') {
        char *end;
        long v = strtol(s, &end, 10);
        if (*end == '\0' && v >= 1 && v <= (1L << 30)) p->spin = v;
    }
    atomic_init(&p->gen, 0u);
    atomic_init(&p->done, 0);
    atomic_init(&p->nsleep, 0);
    atomic_init(&p->stop, 0);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p->w);
        free(p);
        return fm_error_set(e, FM_E_INTERNAL, "fm_pool_new: pthread_mutex_init failed");
    }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p->w);
        free(p);
        return fm_error_set(e, FM_E_INTERNAL, "fm_pool_new: pthread_cond_init failed");
    }
    for (int i = 0; i < n_threads; i++) {
        p->w[i].pool = p;
        p->w[i].ith = i;
    }
    for (int i = 1; i < n_threads; i++) {
        int rc = pthread_create(&p->w[i].tid, NULL, fm_pool_worker_main, &p->w[i]);
        if (rc != 0) {
            fm_pool_free(p);
            return fm_error_set(e, FM_E_INTERNAL, "fm_pool_new: pthread_create for thread %d of %d: %s",
                                i, n_threads, strerror(rc));
        }
        p->started = i;
    }
    *out = p;
    return FM_OK;
}

void fm_pool_free(fm_pool *p)
{
    if (p == NULL) return;
    fm_pool_stop_workers(p);
    for (int i = 0; i < p->nth; i++)
        for (int s = 0; s < FM_POOL_SCRATCH_SLOTS; s++) free(p->w[i].scratch[s].ptr);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->w);
    free(p);
}

int fm_pool_size(const fm_pool *p) { return p == NULL ? 1 : p->nth; }

void fm_pool_run(fm_pool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx)
{
    if (p == NULL || p->nth == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    fm_pool_kick(p);
    fn(ctx, 0, p->nth);
    const int want = p->nth - 1;
    long i = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) != want) {
        if (++i < FM_POOL_WAIT_SPIN) FM_CPU_RELAX();
        else sched_yield();
    }
}

void *fm_pool_scratch(fm_pool *p, int ith, int slot, size_t bytes)
{
    if (p == NULL || ith < 0 || ith >= p->nth || slot < 0 || slot >= FM_POOL_SCRATCH_SLOTS) return NULL;
    fm_scratch *s = &p->w[ith].scratch[slot];
    if (bytes == 0) bytes = 1;
    if (s->cap >= bytes) return s->ptr;
    size_t cap = bytes;
    if (cap > SIZE_MAX - 63) return NULL;
    cap = (cap + 63) & ~(size_t)63;
    void *n = aligned_alloc(64, cap);
    if (n == NULL) return NULL;
    free(s->ptr);
    s->ptr = n;
    s->cap = cap;
    return n;
}
