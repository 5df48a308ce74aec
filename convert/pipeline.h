/* An ordered parallel pipeline: worker threads prepare items (read, convert,
 * hash) while the calling thread consumes the results strictly in item
 * order (appends them to the output). At most `window` items are in flight
 * (being prepared or waiting to be consumed), so memory stays at about
 * window x the largest item. */
#ifndef FM_CONVERT_PIPELINE_H
#define FM_CONVERT_PIPELINE_H

#include <stddef.h>

#include "formats/err.h"

typedef struct fm_pipeline_ops {
    /* Worker thread: prepares item i; *res is passed to consume. */
    fm_err (*prepare)(void *ctx, size_t i, void **res, fm_error *e);
    /* Calling thread, in order 0, 1, ...: takes ownership of res. */
    fm_err (*consume)(void *ctx, size_t i, void *res, fm_error *e);
    /* Frees a prepared result that will not be consumed (after an error). */
    void (*discard)(void *ctx, size_t i, void *res);
} fm_pipeline_ops;

/* Runs items 0..n-1 with `threads` workers (>= 1) and at most `window`
 * (>= 1; 0 means threads + 1) items in flight. Stops at the first error
 * (the lowest failing item's message wins when several fail). */
fm_err fm_pipeline_run(size_t n, unsigned threads, unsigned window, const fm_pipeline_ops *ops, void *ctx,
                       fm_error *e);

/* Online CPUs (>= 1). */
unsigned fm_pipeline_cpus(void);

#endif
