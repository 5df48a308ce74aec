/* The mapped expert source (runtime/mapped.h). */
#include "runtime/mapped.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/util.h"

#define U64(x) ((unsigned long long)(x))

enum { F_TOUCHED = 1, F_VERIFIED = 2 }; /* per-key flags */

typedef struct mapped {
    const fm_expert_catalog *c;
    fm_experts_mapped_opts o;
    const uint8_t *map;  /* the whole file, or NULL (empty file: then no layer is present) */
    size_t map_len;
    uint64_t page;
    bool has_digests;
    uint32_t (*mat_piece)[FM_EXPERT_MAX_MATS]; /* [layer][k]: the piece holding matrix k */
    uint8_t *flags;       /* [layer * n_expert + expert]: F_* */
    uint64_t n_keys;
    pthread_mutex_t mu;
    fm_experts_stats st;
} mapped;

/* Checks every present layer's pieces against the file and the blob, finds
 * the piece of each matrix (from expert 0) and checks every expert has its
 * matrices in that piece. */
static fm_err check_catalog(mapped *s, uint64_t file_size, fm_error *e)
{
    const fm_expert_catalog *c = s->c;
    for (uint32_t il = 0; il < c->n_layer; il++) {
        const fm_expert_layer_desc *L = &c->layers[il];
        if (!L->present) continue;
        if (L->n_pieces < 1 || L->n_pieces > FM_EXPERT_MAX_PIECES || L->n_expert > c->n_expert || L->n_mats < 1 ||
            L->n_mats > FM_EXPERT_MAX_MATS)
            return fm_error_set(e, FM_E_ARG, "%s: blk.%u: %u pieces, %u matrices, %u experts (catalog has %u)",
                                c->path, il, L->n_pieces, L->n_mats, L->n_expert, c->n_expert);
        uint64_t mat_bytes[FM_EXPERT_MAX_MATS];
        for (uint32_t k = 0; k < L->n_mats; k++)
            if (!fm_mul_u64(L->mats[k].row_bytes, L->mats[k].rows, &mat_bytes[k]))
                return fm_error_set(e, FM_E_RANGE, "%s: blk.%u matrix %u too large", c->path, il, k);
        for (uint32_t x = 0; x < L->n_expert; x++) {
            const fm_expert_piece *p = fm_expert_catalog_pieces(c, il, x);
            for (uint32_t j = 0; j < L->n_pieces; j++) {
                /* in blob order, inside the blob (what fm_expert_catalog_verify assumes) */
                if (p[j].size == 0 || !fm_range_ok(p[j].blob_off, p[j].size, L->blob_size) ||
                    (j > 0 && p[j].blob_off < p[j - 1].blob_off + p[j - 1].size))
                    return fm_error_set(e, FM_E_ARG,
                                        "%s: blk.%u expert %u: piece %u (blob offset %llu, %llu bytes) is empty, "
                                        "overlaps the one before or lies outside the %llu-byte blob",
                                        c->path, il, x, j, U64(p[j].blob_off), U64(p[j].size), U64(L->blob_size));
                if (!fm_range_ok(p[j].file_off, p[j].size, file_size))
                    return fm_error_set(e, FM_E_FORMAT,
                                        "%s: blk.%u expert %u: piece %u (%llu bytes at %llu) lies beyond the end "
                                        "of the file (%llu bytes): truncated?",
                                        c->path, il, x, j, U64(p[j].size), U64(p[j].file_off), U64(file_size));
            }
            if (x == 0) {
                for (uint32_t k = 0; k < L->n_mats; k++) {
                    uint32_t j = 0;
                    while (j < L->n_pieces &&
                           !(L->mat_off[k] >= p[j].blob_off && L->mat_off[k] - p[j].blob_off <= p[j].size &&
                             mat_bytes[k] <= p[j].size - (L->mat_off[k] - p[j].blob_off)))
                        j++;
                    if (j == L->n_pieces)
                        return fm_error_set(e, FM_E_ARG,
                                            "%s: blk.%u: matrix %u (offset %llu, %llu bytes) lies in no piece",
                                            c->path, il, k, U64(L->mat_off[k]), U64(mat_bytes[k]));
                    s->mat_piece[il][k] = j;
                }
            } else {
                for (uint32_t k = 0; k < L->n_mats; k++) {
                    const fm_expert_piece *q = &p[s->mat_piece[il][k]];
                    if (!(L->mat_off[k] >= q->blob_off && L->mat_off[k] - q->blob_off <= q->size &&
                          mat_bytes[k] <= q->size - (L->mat_off[k] - q->blob_off)))
                        return fm_error_set(e, FM_E_ARG,
                                            "%s: blk.%u expert %u: matrix %u (offset %llu, %llu bytes) is not in "
                                            "piece %u as in expert 0",
                                            c->path, il, x, k, U64(L->mat_off[k]), U64(mat_bytes[k]),
                                            s->mat_piece[il][k]);
                }
            }
        }
    }
    return FM_OK;
}

static void view(const mapped *s, uint32_t layer, uint32_t expert, fm_expert *out)
{
    const fm_expert_layer_desc *L = &s->c->layers[layer];
    const fm_expert_piece *p = fm_expert_catalog_pieces(s->c, layer, expert);
    for (uint32_t k = 0; k < L->n_mats; k++) {
        const fm_expert_piece *q = &p[s->mat_piece[layer][k]];
        out->m[k] = L->mats[k];
        out->m[k].data = s->map + q->file_off + (L->mat_off[k] - q->blob_off);
    }
}

static fm_err mapped_acquire(void *impl, uint32_t layer, const uint32_t *ids, uint32_t n, fm_expert *out,
                             fm_error *e)
{
    mapped *s = impl;
    const fm_expert_catalog *c = s->c;
    const fm_expert_layer_desc *L = &c->layers[layer];
    if (s->o.verify && s->has_digests) {
        for (uint32_t i = 0; i < n; i++) {
            uint64_t key = (uint64_t)layer * c->n_expert + ids[i];
            pthread_mutex_lock(&s->mu);
            bool done = s->flags[key] & F_VERIFIED;
            pthread_mutex_unlock(&s->mu);
            if (done) continue;
            /* outside the lock: two threads may both hash a new expert; same result */
            const fm_expert_piece *p = fm_expert_catalog_pieces(c, layer, ids[i]);
            const uint8_t *at[FM_EXPERT_MAX_PIECES];
            for (uint32_t j = 0; j < L->n_pieces; j++) at[j] = s->map + p[j].file_off;
            fm_err r = fm_expert_catalog_verify(c, layer, ids[i], at, e);
            if (r) return r; /* not marked: checked again next time */
            pthread_mutex_lock(&s->mu);
            s->flags[key] |= F_VERIFIED;
            pthread_mutex_unlock(&s->mu);
        }
    }
    pthread_mutex_lock(&s->mu);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t key = (uint64_t)layer * c->n_expert + ids[i];
        s->st.acquired++;
        if (s->flags[key] & F_TOUCHED) {
            s->st.hits++;
        } else {
            const fm_expert_piece *p = fm_expert_catalog_pieces(c, layer, ids[i]);
            uint64_t bytes = 0;
            for (uint32_t j = 0; j < L->n_pieces; j++) bytes += p[j].size; /* <= blob_size (checked at open) */
            s->flags[key] |= F_TOUCHED;
            s->st.misses++;
            s->st.bytes_read += bytes;
            s->st.cache_bytes += bytes;
        }
    }
    pthread_mutex_unlock(&s->mu);
    for (uint32_t i = 0; i < n; i++) view(s, layer, ids[i], &out[i]);
    return FM_OK;
}

static void mapped_release(void *impl, uint32_t layer, const uint32_t *ids, uint32_t n)
{
    (void)impl, (void)layer, (void)ids, (void)n; /* the mapping stays; nothing is pinned */
}

static void mapped_prefetch(void *impl, uint32_t layer, const uint32_t *ids, uint32_t n)
{
    mapped *s = impl;
    const fm_expert_catalog *c = s->c;
    if (!s->o.willneed || layer >= c->n_layer || !c->layers[layer].present) return;
    const fm_expert_layer_desc *L = &c->layers[layer];
    uint64_t given = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] >= L->n_expert) continue;
        pthread_mutex_lock(&s->mu);
        const bool touched = s->flags[(uint64_t)layer * c->n_expert + ids[i]] & F_TOUCHED;
        pthread_mutex_unlock(&s->mu);
        if (touched) continue; /* most likely still in the page cache: the hint would only walk it */
        const fm_expert_piece *p = fm_expert_catalog_pieces(c, layer, ids[i]);
        for (uint32_t j = 0; j < L->n_pieces; j++) {
            /* inside the file (checked at open); the mapping covers whole pages */
            uint64_t start = p[j].file_off / s->page * s->page;
            uint64_t end = (p[j].file_off + p[j].size + s->page - 1) / s->page * s->page;
            (void)madvise((void *)(s->map + start), (size_t)(end - start), MADV_WILLNEED); /* only a hint */
        }
        given++;
    }
    pthread_mutex_lock(&s->mu);
    s->st.prefetched += given;
    pthread_mutex_unlock(&s->mu);
}

static void mapped_stats(void *impl, fm_experts_stats *out)
{
    mapped *s = impl;
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    pthread_mutex_unlock(&s->mu);
}

static void mapped_free(void *impl)
{
    mapped *s = impl;
    if (!s) return;
    if (s->map) munmap((void *)s->map, s->map_len);
    pthread_mutex_destroy(&s->mu);
    free(s->mat_piece);
    free(s->flags);
    free(s);
}

static const fm_experts_ops mapped_ops = {
    "mapped", mapped_acquire, mapped_release, mapped_prefetch, mapped_stats, mapped_free,
};

bool fm_experts_is_mapped(const fm_experts *x) { return x && x->ops == &mapped_ops; }

fm_err fm_experts_open_mapped(const fm_expert_catalog *c, const fm_experts_mapped_opts *opts, fm_experts **out,
                              fm_error *e)
{
    *out = NULL;
    mapped *s = calloc(1, sizeof *s);
    if (!s) return fm_error_set(e, FM_E_NOMEM, "experts: out of memory");
    pthread_mutex_init(&s->mu, NULL);
    s->c = c;
    if (opts) s->o = *opts;
    if (s->o.n_pinned_max == 0) s->o.n_pinned_max = 1;
    s->has_digests = c->sha256 || c->piece_sha256;
    long pg = sysconf(_SC_PAGESIZE);
    s->page = pg > 0 ? (uint64_t)pg : 4096;
    fm_err r;

    s->n_keys = (uint64_t)c->n_layer * c->n_expert;
    const uint64_t total_experts = fm_expert_catalog_n_present(c);
    if (c->n_expert == 0 || total_experts == 0 || s->n_keys > (1u << 28)) {
        r = fm_error_set(e, FM_E_ARG, "%s: no experts to map (%u layers x %u experts)", c->path, c->n_layer,
                         c->n_expert);
        goto fail;
    }
    s->mat_piece = calloc(c->n_layer, sizeof *s->mat_piece);
    s->flags = calloc((size_t)s->n_keys, 1);
    if (!s->mat_piece || !s->flags) {
        r = fm_error_set(e, FM_E_NOMEM, "experts: out of memory");
        goto fail;
    }

    struct stat sb;
    if (c->fd < 0 || fstat(c->fd, &sb) != 0) {
        r = fm_error_set(e, FM_E_IO, "%s: fstat: %s", c->path, c->fd < 0 ? "no descriptor" : strerror(errno));
        goto fail;
    }
    if (sb.st_size < 0 || (uint64_t)sb.st_size > SIZE_MAX) {
        r = fm_error_set(e, FM_E_RANGE, "%s: %lld bytes: too large to map", c->path, (long long)sb.st_size);
        goto fail;
    }
    uint64_t file_size = (uint64_t)sb.st_size;
    if ((r = check_catalog(s, file_size, e))) goto fail;
    /* an empty file has no pieces (check_catalog refused them): nothing to map */
    if (file_size > 0) {
        void *m = mmap(NULL, (size_t)file_size, PROT_READ, MAP_SHARED, c->fd, 0);
        if (m == MAP_FAILED) {
            r = fm_error_set(e, FM_E_IO, "%s: mmap of %llu bytes: %s", c->path, U64(file_size), strerror(errno));
            goto fail;
        }
        s->map = m;
        s->map_len = (size_t)file_size;
    }
    return fm_experts_wrap(&mapped_ops, s, c, s->o.n_pinned_max, out, e);
fail:
    mapped_free(s);
    return r;
}
