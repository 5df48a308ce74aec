/* Ordered parallel pipeline (see pipeline.h). */
#include "convert/pipeline.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct slot {
    bool ready;
    void *res;
} slot;

typedef struct pl {
    pthread_mutex_t mu;
    pthread_cond_t can_take; /* workers: a new item may be taken */
    pthread_cond_t done;     /* consumer: an item became ready */
    size_t n, next_take, next_consume;
    unsigned window;
    slot *slots; /* window entries, item i at i % window */
    bool stop;
    fm_err err;
    size_t err_item;
    fm_error msg;
    const fm_pipeline_ops *ops;
    void *ctx;
} pl;

static void set_err(pl *p, size_t i, fm_err rc, const fm_error *m)
{
    if (p->err == FM_OK || i < p->err_item) {
        p->err = rc;
        p->err_item = i;
        p->msg = *m;
    }
    p->stop = true;
}

static void *worker(void *arg)
{
    pl *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->next_take < p->n && p->next_take >= p->next_consume + p->window)
            pthread_cond_wait(&p->can_take, &p->mu);
        if (p->stop || p->next_take >= p->n) break;
        size_t i = p->next_take++;
        pthread_mutex_unlock(&p->mu);
        void *res = NULL;
        fm_error e = {0};
        fm_err rc = p->ops->prepare(p->ctx, i, &res, &e);
        pthread_mutex_lock(&p->mu);
        if (rc != FM_OK) {
            if (res && p->ops->discard) p->ops->discard(p->ctx, i, res);
            set_err(p, i, rc, &e);
            pthread_cond_broadcast(&p->can_take);
            pthread_cond_broadcast(&p->done);
            break;
        }
        slot *s = &p->slots[i % p->window];
        s->res = res;
        s->ready = true;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

unsigned fm_pipeline_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1u;
}

fm_err fm_pipeline_run(size_t n, unsigned threads, unsigned window, const fm_pipeline_ops *ops, void *ctx,
                       fm_error *e)
{
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    if (window == 0) window = threads + 1;
    if (window < threads) window = threads;
    pl p;
    memset(&p, 0, sizeof p);
    p.n = n;
    p.window = window;
    p.ops = ops;
    p.ctx = ctx;
    p.slots = calloc(window, sizeof *p.slots);
    pthread_t *th = calloc(threads, sizeof *th);
    if (!p.slots || !th) {
        free(p.slots);
        free(th);
        return fm_error_set(e, FM_E_NOMEM, "out of memory");
    }
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.can_take, NULL);
    pthread_cond_init(&p.done, NULL);
    unsigned started = 0;
    for (; started < threads; started++)
        if (pthread_create(&th[started], NULL, worker, &p) != 0) break;
    fm_err rc = FM_OK;
    if (started == 0) {
        rc = fm_error_set(e, FM_E_NOMEM, "cannot start worker threads");
        p.stop = true;
    }
    pthread_mutex_lock(&p.mu);
    while (!rc && p.next_consume < n) {
        slot *s = &p.slots[p.next_consume % window];
        while (!s->ready && !p.stop) pthread_cond_wait(&p.done, &p.mu);
        if (!s->ready) break; /* a worker failed */
        void *res = s->res;
        s->ready = false;
        s->res = NULL;
        size_t i = p.next_consume;
        pthread_mutex_unlock(&p.mu);
        fm_error ce = {0};
        fm_err crc = ops->consume(ctx, i, res, &ce);
        pthread_mutex_lock(&p.mu);
        if (crc) {
            set_err(&p, i, crc, &ce);
            pthread_cond_broadcast(&p.can_take);
            break;
        }
        p.next_consume++;
        pthread_cond_broadcast(&p.can_take);
    }
    p.stop = true;
    pthread_cond_broadcast(&p.can_take);
    pthread_mutex_unlock(&p.mu);
    for (unsigned t = 0; t < started; t++) pthread_join(th[t], NULL);
    /* results prepared but never consumed */
    for (unsigned w = 0; w < window; w++)
        if (p.slots[w].ready && ops->discard) ops->discard(ctx, 0, p.slots[w].res);
    if (!rc && p.err) {
        rc = p.err;
        if (e) *e = p.msg;
    }
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.can_take);
    pthread_cond_destroy(&p.done);
    free(p.slots);
    free(th);
    return rc;
}
