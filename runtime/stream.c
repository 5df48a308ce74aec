/* The streaming expert source (runtime/stream.h). */
#define _GNU_SOURCE /* O_DIRECT */
#include "runtime/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

#include "formats/sha256.h"
#include "formats/util.h"

#define U64(x) ((unsigned long long)(x))
#define A FM_STREAM_DIO_ALIGN

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { S_EMPTY = 0, S_QUEUED, S_READING, S_READY, S_ERROR };

typedef struct sslot {
    int64_t key;        /* layer * n_expert + expert; -1 when empty */
    int state;
    uint32_t pins;
    uint32_t pending;   /* read jobs (piece chunks) not yet done */
    uint32_t started;   /* jobs taken by an I/O thread */
    bool fresh;         /* read and not yet acquired */
    bool by_prefetch;   /* the read was started by prefetch */
    bool verify;        /* hash after the read (first read of that expert) */
    uint64_t prot_epoch;/* protected while == the source's prefetch epoch */
    uint64_t last_use;
    fm_error err;       /* S_ERROR: why */
    pthread_cond_t cv;  /* state changes */
    uint8_t *buf;
} sslot;

typedef struct job {
    uint32_t slot, piece, chunk;
} job;

/* Per layer: where each piece goes in a slot. */
typedef struct layer_layout {
    uint64_t region_off[FM_EXPERT_MAX_PIECES];
    uint32_t mat_piece[FM_EXPERT_MAX_MATS]; /* which piece holds matrix k */
} layer_layout;

typedef struct stream {
    const fm_expert_catalog *c;
    fm_experts_stream_opts o;
    int fd;             /* descriptor reads use */
    int own_fd;         /* opened here (closed at free), or -1 */
    layer_layout *lay;  /* n_layer */
    uint64_t slot_bytes;
    uint32_t n_slots, n_cv;
    uint8_t *slab;
    sslot *slots;
    int32_t *where;     /* [key] -> slot or -1 */
    float *freq;        /* [key] decayed use count (LFRU) */
    uint8_t *verified;  /* [key] */
    uint64_t n_keys;
    uint32_t *free_list;
    uint32_t n_free;
    /* job queue: ring buffer */
    job *q, *bump_tmp;
    uint32_t q_cap, q_head, q_len;
    uint64_t chunk;         /* bytes per read job */
    uint32_t max_jobs;      /* most jobs one expert needs */
    pthread_mutex_t mu;
    pthread_cond_t q_cv;    /* jobs queued or stop */
    pthread_cond_t free_cv; /* a slot may have become evictable */
    pthread_t th[FM_STREAM_MAX_THREADS];
    uint32_t n_threads;
    bool stop;
    uint64_t tick, epoch, acq_since_decay;
    fm_experts_stats st;
    fm_experts_stream_info info;
} stream;

/* ------------------------------------------------------------ helpers */

static uint64_t lead_of(uint64_t off) { return off % A; }

static uint64_t region_len(const fm_expert_piece *p)
{
    return (lead_of(p->file_off) + p->size + A - 1) / A * A;
}

/* Pieces of one expert in blob order, their sizes and the matrices inside
 * them; fills lay (from expert 0) and checks every expert against it. */
static fm_err build_layout(stream *s, fm_error *e)
{
    const fm_expert_catalog *c = s->c;
    uint64_t max_slot = 0;
    for (uint32_t il = 0; il < c->n_layer; il++) {
        const fm_expert_layer_desc *L = &c->layers[il];
        if (!L->present) continue;
        if (L->n_pieces < 1 || L->n_pieces > FM_EXPERT_MAX_PIECES || L->n_expert > c->n_expert || L->n_mats < 1 ||
            L->n_mats > FM_EXPERT_MAX_MATS)
            return fm_error_set(e, FM_E_ARG, "%s: blk.%u: %u pieces, %u matrices, %u experts (catalog has %u)",
                                c->path, il, L->n_pieces, L->n_mats, L->n_expert, c->n_expert);
        uint64_t rlen[FM_EXPERT_MAX_PIECES] = {0};
        for (uint32_t x = 0; x < L->n_expert; x++) {
            const fm_expert_piece *p = fm_expert_catalog_pieces(c, il, x);
            for (uint32_t j = 0; j < L->n_pieces; j++) {
                const fm_expert_piece *p0 = fm_expert_catalog_pieces(c, il, 0);
                if (p[j].blob_off != p0[j].blob_off || p[j].size != p0[j].size || p[j].size == 0 ||
                    p[j].size > (1ull << 40) || !fm_range_ok(p[j].blob_off, p[j].size, L->blob_size) ||
                    (j > 0 && p[j].blob_off < p[j - 1].blob_off + p[j - 1].size))
                    return fm_error_set(e, FM_E_ARG,
                                        "%s: blk.%u expert %u: piece %u (blob offset %llu, %llu bytes) does not "
                                        "match expert 0's layout within a %llu-byte blob",
                                        c->path, il, x, j, U64(p[j].blob_off), U64(p[j].size), U64(L->blob_size));
                uint64_t r = region_len(&p[j]);
                if (r > rlen[j]) rlen[j] = r;
            }
        }
        const fm_expert_piece *p0 = fm_expert_catalog_pieces(c, il, 0);
        uint64_t off = 0;
        for (uint32_t j = 0; j < L->n_pieces; j++) {
            s->lay[il].region_off[j] = off;
            off += rlen[j];
        }
        for (uint32_t k = 0; k < L->n_mats; k++) {
            const fm_expert_mat *m = &L->mats[k];
            uint64_t bytes;
            if (!fm_mul_u64(m->row_bytes, m->rows, &bytes))
                return fm_error_set(e, FM_E_RANGE, "%s: blk.%u matrix %u too large", c->path, il, k);
            uint32_t j = 0;
            while (j < L->n_pieces &&
                   !(L->mat_off[k] >= p0[j].blob_off && L->mat_off[k] - p0[j].blob_off <= p0[j].size &&
                     bytes <= p0[j].size - (L->mat_off[k] - p0[j].blob_off)))
                j++;
            if (j == L->n_pieces)
                return fm_error_set(e, FM_E_ARG, "%s: blk.%u: matrix %u (offset %llu, %llu bytes) lies in no piece",
                                    c->path, il, k, U64(L->mat_off[k]), U64(bytes));
            s->lay[il].mat_piece[k] = j;
        }
        if (off > max_slot) max_slot = off;
    }
    s->slot_bytes = max_slot ? max_slot : A;
    return FM_OK;
}

static void view(const stream *s, uint32_t layer, uint32_t expert, const sslot *x, fm_expert *out)
{
    const fm_expert_layer_desc *L = &s->c->layers[layer];
    const fm_expert_piece *p = fm_expert_catalog_pieces(s->c, layer, expert);
    for (uint32_t k = 0; k < L->n_mats; k++) {
        uint32_t j = s->lay[layer].mat_piece[k];
        out->m[k] = L->mats[k];
        out->m[k].data = x->buf + s->lay[layer].region_off[j] + lead_of(p[j].file_off) + (L->mat_off[k] - p[j].blob_off);
    }
}

/* Reads at least `need` bytes (up to `len`) at off. */
static fm_err read_range(int fd, uint8_t *buf, uint64_t len, uint64_t need, uint64_t off, const char *path,
                         uint64_t *got, fm_error *e)
{
    uint64_t done = 0;
    while (done < len) {
        uint64_t left = len - done;
        size_t chunk = left > (1u << 30) ? (1u << 30) : (size_t)left;
        ssize_t k = pread(fd, buf + done, chunk, (off_t)(off + done));
        if (k < 0) {
            if (errno == EINTR) continue;
            return fm_error_set(e, FM_E_IO, "%s: pread of %llu bytes at %llu: %s", path, U64(chunk),
                                U64(off + done), strerror(errno));
        }
        if (k == 0) break;
        done += (uint64_t)k;
    }
    *got = done;
    if (done < need)
        return fm_error_set(e, FM_E_FORMAT, "%s: truncated: %llu bytes at %llu, file ends after %llu", path,
                            U64(need), U64(off), U64(done));
    return FM_OK;
}

/* Bytes of piece p the reads cover: the aligned region (direct) or the
 * piece itself (cached). */
static uint64_t span_of(const stream *s, const fm_expert_piece *p)
{
    return s->o.io == FM_STREAM_IO_DIRECT ? region_len(p) : p->size;
}

static uint32_t n_chunks(const stream *s, const fm_expert_piece *p)
{
    return (uint32_t)((span_of(s, p) + s->chunk - 1) / s->chunk);
}

/* Chunk `chunk` of piece j of one expert into its slot (no lock held). */
static fm_err read_chunk(stream *s, uint32_t layer, uint32_t expert, uint32_t j, uint32_t chunk, uint8_t *buf,
                         uint64_t *bytes, fm_error *e)
{
    const fm_expert_piece *p = &fm_expert_catalog_pieces(s->c, layer, expert)[j];
    uint8_t *region = buf + s->lay[layer].region_off[j];
    uint64_t lead = lead_of(p->file_off), span = span_of(s, p), at = (uint64_t)chunk * s->chunk;
    uint64_t len = span - at < s->chunk ? span - at : s->chunk;
    fm_err r;
    if (s->o.io == FM_STREAM_IO_DIRECT) {
        /* the region [file_off - lead, + region_len) holds the piece at lead */
        uint64_t end = lead + p->size, need = end > at ? (end - at < len ? end - at : len) : 0;
        r = read_range(s->fd, region + at, len, need, p->file_off - lead + at, s->c->path, bytes, e);
    } else {
        r = read_range(s->fd, region + lead + at, len, len, p->file_off + at, s->c->path, bytes, e);
        if (!r && s->o.fadvise) posix_fadvise(s->fd, (off_t)(p->file_off + at), (off_t)len, POSIX_FADV_DONTNEED);
    }
    if (r) fm_error_prefix(e, "blk.%u expert %u", layer, expert);
    return r;
}

/* The expert's digest(s) (fm_expert_catalog_verify) over its slot. */
static fm_err verify_blob(stream *s, uint32_t layer, uint32_t expert, const uint8_t *buf, fm_error *e)
{
    const fm_expert_layer_desc *L = &s->c->layers[layer];
    const fm_expert_piece *p = fm_expert_catalog_pieces(s->c, layer, expert);
    const uint8_t *at[FM_EXPERT_MAX_PIECES];
    for (uint32_t j = 0; j < L->n_pieces; j++) at[j] = buf + s->lay[layer].region_off[j] + lead_of(p[j].file_off);
    return fm_expert_catalog_verify(s->c, layer, expert, at, e);
}

/* ----------------------------------------------------------- the queue */

static void q_push(stream *s, job jb, bool front)
{
    /* capacity n_slots * max_jobs: a slot has at most one read in flight */
    if (front) {
        s->q_head = (s->q_head + s->q_cap - 1) % s->q_cap;
        s->q[s->q_head] = jb;
    } else {
        s->q[(s->q_head + s->q_len) % s->q_cap] = jb;
    }
    s->q_len++;
}

/* Moves a slot's queued jobs to the front (acquire needs it now). */
static void q_bump(stream *s, uint32_t slot)
{
    job *mine = s->bump_tmp;
    uint32_t nm = 0, w = 0;
    for (uint32_t i = 0; i < s->q_len; i++) {
        job jb = s->q[(s->q_head + i) % s->q_cap];
        if (jb.slot == slot && nm < s->max_jobs) mine[nm++] = jb;
        else s->q[(s->q_head + w++) % s->q_cap] = jb;
    }
    s->q_len = w;
    while (nm > 0) q_push(s, mine[--nm], true);
}

static void *io_main(void *arg)
{
    stream *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && s->q_len == 0) pthread_cond_wait(&s->q_cv, &s->mu);
        if (s->stop) break;
        job jb = s->q[s->q_head];
        s->q_head = (s->q_head + 1) % s->q_cap;
        s->q_len--;
        sslot *x = &s->slots[jb.slot];
        x->state = S_READING;
        x->started++;
        const uint32_t layer = (uint32_t)((uint64_t)x->key / s->c->n_expert);
        const uint32_t expert = (uint32_t)((uint64_t)x->key % s->c->n_expert);
        pthread_mutex_unlock(&s->mu);

        fm_error e = {0};
        uint64_t got = 0;
        double t0 = now_s();
        fm_err r = read_chunk(s, layer, expert, jb.piece, jb.chunk, x->buf, &got, &e);
        double dt = now_s() - t0;

        pthread_mutex_lock(&s->mu);
        s->st.bytes_read += got;
        s->st.read_seconds += dt;
        if (r && x->err.code == FM_OK) x->err = e;
        if (--x->pending == 0) {
            if (x->err.code == FM_OK && x->verify) {
                pthread_mutex_unlock(&s->mu); /* the slot is S_READING: nobody else touches it */
                r = verify_blob(s, layer, expert, x->buf, &e);
                pthread_mutex_lock(&s->mu);
                s->info.verified++;
                if (r) x->err = e;
                else s->verified[x->key] = 1;
            }
            x->state = x->err.code ? S_ERROR : S_READY;
            pthread_cond_broadcast(&x->cv);
            pthread_cond_broadcast(&s->free_cv);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ------------------------------------------------------------- slots */

static void slot_clear(stream *s, sslot *x)
{
    if (x->key >= 0) s->where[x->key] = -1;
    x->key = -1;
    x->state = S_EMPTY;
    x->fresh = x->by_prefetch = x->verify = false;
    x->pending = x->started = 0;
    x->prot_epoch = 0;
    fm_error_clear(&x->err);
}

static bool evictable(const sslot *x) { return x->pins == 0 && (x->state == S_READY || x->state == S_ERROR); }

/* A slot for a new expert, or NULL. may_protected: acquire may take slots
 * protected by the current prefetch (prefetch may not). */
static sslot *take_slot(stream *s, bool may_protected)
{
    if (s->n_free) {
        sslot *x = &s->slots[s->free_list[--s->n_free]];
        return x;
    }
    sslot *best = NULL;
    int best_cls = 4;
    for (uint32_t i = 0; i < s->n_slots; i++) {
        sslot *x = &s->slots[i];
        if (!evictable(x)) continue;
        /* class: 0 failed, 1 used, 2 read ahead and not used yet (an earlier
         * prefetch's: wanted soon, e.g. the next streamed layers), 3
         * protected by the current prefetch */
        int cls = x->state == S_ERROR ? 0 : (x->prot_epoch == s->epoch ? 3 : (x->fresh ? 2 : 1));
        if (cls == 3 && !may_protected) continue;
        if (!best || cls < best_cls) {
            best = x;
            best_cls = cls;
            continue;
        }
        if (cls > best_cls) continue;
        if (s->o.evict == FM_STREAM_EVICT_LFRU) {
            float fa = s->freq[x->key], fb = s->freq[best->key];
            if (fa < fb || (fa == fb && x->last_use < best->last_use)) best = x;
        } else if (x->last_use < best->last_use) {
            best = x;
        }
    }
    if (!best) return NULL;
    if (best->state == S_READY) {
        s->info.evictions++;
        if (best->fresh && best->by_prefetch) s->info.prefetch_wasted++;
    }
    slot_clear(s, best);
    return best;
}

/* Starts reading expert key into slot x. */
static void start_read(stream *s, sslot *x, uint64_t key, bool urgent, bool by_prefetch)
{
    const fm_expert_catalog *c = s->c;
    uint32_t layer = (uint32_t)(key / c->n_expert);
    x->key = (int64_t)key;
    s->where[key] = (int32_t)(x - s->slots);
    x->state = S_QUEUED;
    x->last_use = ++s->tick; /* as recent as a use: not the next victim */
    x->fresh = true;
    x->by_prefetch = by_prefetch;
    x->verify = s->o.verify && (c->sha256 || c->piece_sha256) && !s->verified[key];
    const fm_expert_piece *p = fm_expert_catalog_pieces(c, layer, (uint32_t)(key % c->n_expert));
    x->started = 0;
    x->pending = 0;
    fm_error_clear(&x->err);
    /* pushed to the front in reverse, to the back in order: either way the
     * I/O threads take this expert's chunks in file order */
    uint32_t nj = c->layers[layer].n_pieces;
    for (uint32_t jj = 0; jj < nj; jj++) {
        uint32_t j = urgent ? nj - 1 - jj : jj, nc = n_chunks(s, &p[j]);
        for (uint32_t kk = 0; kk < nc; kk++)
            q_push(s, (job){(uint32_t)(x - s->slots), j, urgent ? nc - 1 - kk : kk}, urgent);
        x->pending += nc;
    }
    if (by_prefetch) s->st.prefetched++;
    pthread_cond_broadcast(&s->q_cv);
}

static void use(stream *s, sslot *x)
{
    x->last_use = ++s->tick;
}

static void release_locked(stream *s, uint32_t layer, const uint32_t *ids, uint32_t n)
{
    bool any = false;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t key = (uint64_t)layer * s->c->n_expert + ids[i];
        int32_t w = s->where[key];
        if (w < 0) continue;
        sslot *x = &s->slots[w];
        if (x->pins && --x->pins == 0) {
            use(s, x);
            any = true;
            if (x->state == S_ERROR) { /* forget the failure: a later acquire retries */
                slot_clear(s, x);
                s->free_list[s->n_free++] = (uint32_t)(x - s->slots);
            }
        }
    }
    if (any) pthread_cond_broadcast(&s->free_cv);
}

static void stream_release(void *impl, uint32_t layer, const uint32_t *ids, uint32_t n)
{
    stream *s = impl;
    pthread_mutex_lock(&s->mu);
    release_locked(s, layer, ids, n);
    pthread_mutex_unlock(&s->mu);
}

static void count_use(stream *s, uint64_t key)
{
    s->freq[key] += 1.0f;
    if (++s->acq_since_decay >= FM_STREAM_LFRU_HALF_LIFE) {
        s->acq_since_decay = 0;
        for (uint64_t i = 0; i < s->n_keys; i++) s->freq[i] *= 0.5f;
    }
}

static fm_err stream_acquire(void *impl, uint32_t layer, const uint32_t *ids, uint32_t n, fm_expert *out,
                             fm_error *e)
{
    stream *s = impl;
    const fm_expert_catalog *c = s->c;
    if (n > s->o.n_pinned_max)
        return fm_error_set(e, FM_E_ARG, "experts: %u experts asked at once, source holds %u", n, s->o.n_pinned_max);
    pthread_mutex_lock(&s->mu);
    uint32_t held = 0;
    fm_err r = FM_OK;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t key = (uint64_t)layer * c->n_expert + ids[i];
        s->st.acquired++;
        count_use(s, key);
        sslot *x;
        for (;;) {
            int32_t w = s->where[key];
            x = w >= 0 ? &s->slots[w] : NULL;
            if (x && x->state == S_ERROR && x->pins == 0) { /* an earlier failure: try again */
                slot_clear(s, x);
                s->free_list[s->n_free++] = (uint32_t)(x - s->slots);
                x = NULL;
            }
            if (x) {
                if (x->fresh) s->st.misses++;
                else s->st.hits++;
                if (x->state == S_QUEUED && x->started == 0) q_bump(s, (uint32_t)(x - s->slots));
                break;
            }
            if ((x = take_slot(s, true))) {
                start_read(s, x, key, true, false);
                s->st.misses++;
                break;
            }
            /* every slot is pinned or being read: wait, then look again (another
             * thread may have started this very expert meanwhile). When all are
             * pinned nothing will free one: the callers hold too many. */
            bool reading = false;
            for (uint32_t k = 0; k < s->n_slots && !reading; k++)
                reading = s->slots[k].pins == 0 || s->slots[k].state == S_QUEUED || s->slots[k].state == S_READING;
            if (!reading) {
                r = fm_error_set(e, FM_E_ARG, "experts: blk.%u expert %u: all %u cache slots are held by acquire",
                                 layer, ids[i], s->n_slots);
                s->st.acquired--;
                break;
            }
            pthread_cond_wait(&s->free_cv, &s->mu);
        }
        if (r) break;
        x->fresh = false;
        x->pins++;
        held = i + 1;
    }
    for (uint32_t i = 0; i < held && !r; i++) {
        sslot *x = &s->slots[s->where[(uint64_t)layer * c->n_expert + ids[i]]];
        if (x->state == S_QUEUED || x->state == S_READING) {
            double t0 = now_s();
            s->info.waits++;
            while (x->state == S_QUEUED || x->state == S_READING) pthread_cond_wait(&x->cv, &s->mu);
            s->info.wait_seconds += now_s() - t0;
        }
        if (x->state == S_ERROR) {
            if (e) *e = x->err;
            r = x->err.code;
            break;
        }
        use(s, x);
        view(s, layer, ids[i], x, &out[i]);
    }
    if (r) release_locked(s, layer, ids, held);
    pthread_mutex_unlock(&s->mu);
    return r;
}

static void stream_prefetch(void *impl, uint32_t layer, const uint32_t *ids, uint32_t n)
{
    stream *s = impl;
    const fm_expert_catalog *c = s->c;
    if (layer >= c->n_layer || !c->layers[layer].present) return;
    pthread_mutex_lock(&s->mu);
    s->epoch++;
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] >= c->layers[layer].n_expert) continue;
        uint64_t key = (uint64_t)layer * c->n_expert + ids[i];
        int32_t w = s->where[key];
        if (w >= 0) {
            s->slots[w].prot_epoch = s->epoch; /* keep it for the acquire that follows */
            continue;
        }
        sslot *x = take_slot(s, false);
        if (!x) {
            s->info.prefetch_dropped += n - i;
            break;
        }
        start_read(s, x, key, false, true);
        x->prot_epoch = s->epoch;
    }
    pthread_mutex_unlock(&s->mu);
}

/* Like prefetch, for a later layer's guessed experts: queued behind every
 * other read, never evicts what the current prefetch protects, does not
 * start a new prefetch epoch. */
static void stream_speculate(void *impl, uint32_t layer, const uint32_t *ids, uint32_t n)
{
    stream *s = impl;
    const fm_expert_catalog *c = s->c;
    if (layer >= c->n_layer || !c->layers[layer].present) return;
    pthread_mutex_lock(&s->mu);
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] >= c->layers[layer].n_expert) continue;
        uint64_t key = (uint64_t)layer * c->n_expert + ids[i];
        if (s->where[key] >= 0) continue;
        sslot *x = take_slot(s, false);
        if (!x) {
            s->info.prefetch_dropped += n - i;
            break;
        }
        start_read(s, x, key, false, true);
        s->info.speculated++;
    }
    pthread_mutex_unlock(&s->mu);
}

void fm_experts_stream_speculate(fm_experts *x, uint32_t layer, const uint32_t *ids, uint32_t n)
{
    if (x && n && x->ops->prefetch == stream_prefetch) stream_speculate(x->impl, layer, ids, n);
}

static void stream_stats(void *impl, fm_experts_stats *out)
{
    stream *s = impl;
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->cache_bytes = s->slot_bytes * s->n_slots;
    pthread_mutex_unlock(&s->mu);
}

static void stream_free(void *impl)
{
    stream *s = impl;
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->q_cv);
    pthread_mutex_unlock(&s->mu);
    for (uint32_t i = 0; i < s->n_threads; i++) pthread_join(s->th[i], NULL);
    for (uint32_t i = 0; i < s->n_cv; i++) pthread_cond_destroy(&s->slots[i].cv);
    pthread_cond_destroy(&s->q_cv);
    pthread_cond_destroy(&s->free_cv);
    pthread_mutex_destroy(&s->mu);
    if (s->own_fd >= 0) close(s->own_fd);
    free(s->slab);
    free(s->slots);
    free(s->where);
    free(s->freq);
    free(s->verified);
    free(s->free_list);
    free(s->q);
    free(s->bump_tmp);
    free(s->lay);
    free(s);
}

static const fm_experts_ops stream_ops = {
    "stream", stream_acquire, stream_release, stream_prefetch, stream_stats, stream_free,
};

void fm_experts_stream_opts_init(fm_experts_stream_opts *o)
{
    memset(o, 0, sizeof *o);
    o->io = FM_STREAM_IO_CACHED;
    o->evict = FM_STREAM_EVICT_LFRU;
}

fm_err fm_experts_open_stream(const fm_expert_catalog *c, const fm_experts_stream_opts *opts, fm_experts **out,
                              fm_error *e)
{
    *out = NULL;
    stream *s = calloc(1, sizeof *s);
    if (!s) return fm_error_set(e, FM_E_NOMEM, "experts: out of memory");
    s->c = c;
    s->own_fd = -1;
    if (opts) s->o = *opts;
    else fm_experts_stream_opts_init(&s->o);
    if (s->o.n_pinned_max == 0) s->o.n_pinned_max = 1;
    if (s->o.io != FM_STREAM_IO_CACHED && s->o.io != FM_STREAM_IO_DIRECT) s->o.io = FM_STREAM_IO_CACHED;
    if (s->o.evict != FM_STREAM_EVICT_LRU && s->o.evict != FM_STREAM_EVICT_LFRU) s->o.evict = FM_STREAM_EVICT_LFRU;
    uint32_t nt = s->o.n_threads;
    if (nt == 0) nt = 2 * (s->o.n_expert_used_hint ? s->o.n_expert_used_hint : 4);
    if (nt < 1) nt = 1;
    if (nt > FM_STREAM_MAX_THREADS) nt = FM_STREAM_MAX_THREADS;
    s->o.n_threads = nt;
    fm_err r = FM_OK;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->q_cv, NULL);
    pthread_cond_init(&s->free_cv, NULL);

    s->n_keys = (uint64_t)c->n_layer * c->n_expert;
    const uint64_t total_experts = fm_expert_catalog_n_present(c);
    if (c->n_expert == 0 || total_experts == 0 || s->n_keys > (1u << 26)) {
        r = fm_error_set(e, FM_E_ARG, "%s: no experts to stream (%u layers x %u experts)", c->path, c->n_layer,
                         c->n_expert);
        goto fail;
    }
    if (!(s->lay = calloc(c->n_layer, sizeof *s->lay))) goto nomem;
    if ((r = build_layout(s, e))) goto fail;

    /* slots */
    uint64_t ns;
    if (s->o.budget_bytes == 0) ns = total_experts;
    else ns = s->o.budget_bytes / s->slot_bytes;
    if (ns < (uint64_t)s->o.n_pinned_max + 1) ns = (uint64_t)s->o.n_pinned_max + 1;
    if (ns > total_experts && total_experts > s->o.n_pinned_max) ns = total_experts;
    if (ns > (1u << 24)) ns = 1u << 24;
    uint64_t slab;
    if (!fm_mul_u64(ns, s->slot_bytes, &slab) || slab > SIZE_MAX) {
        r = fm_error_set(e, FM_E_NOMEM, "%s: expert cache of %llu slots of %llu bytes is too large", c->path,
                         U64(ns), U64(s->slot_bytes));
        goto fail;
    }
    s->n_slots = (uint32_t)ns;
    void *mem = NULL;
    const size_t huge = 2u << 20; /* large slabs: 2 MiB-aligned, advised for THP (as the dense arena) */
    if (posix_memalign(&mem, slab >= 4 * huge ? huge : A, (size_t)slab) != 0) {
        r = fm_error_set(e, FM_E_NOMEM, "%s: cannot allocate an expert cache of %llu bytes (%llu slots of %llu)",
                         c->path, U64(slab), U64(ns), U64(s->slot_bytes));
        goto fail;
    }
    s->slab = mem;
#ifdef MADV_HUGEPAGE
    if (slab >= 4 * huge) (void)madvise(mem, (size_t)slab / huge * huge, MADV_HUGEPAGE); /* a hint */
#endif
    s->slots = calloc(s->n_slots, sizeof *s->slots);
    s->free_list = malloc(s->n_slots * sizeof *s->free_list);
    s->where = malloc((size_t)s->n_keys * sizeof *s->where);
    s->freq = calloc((size_t)s->n_keys, sizeof *s->freq);
    s->verified = calloc((size_t)s->n_keys, 1);
    /* read jobs: pieces cut into chunks of o.chunk_bytes (0: whole pieces) */
    s->chunk = s->o.chunk_bytes ? (s->o.chunk_bytes + A - 1) / A * A : s->slot_bytes;
    if (s->chunk < A) s->chunk = A;
    s->max_jobs = 0;
    for (uint32_t il = 0; il < c->n_layer; il++) {
        const fm_expert_layer_desc *L = &c->layers[il];
        if (!L->present) continue;
        for (uint32_t x = 0; x < L->n_expert; x++) {
            const fm_expert_piece *p = fm_expert_catalog_pieces(c, il, x);
            uint64_t nj = 0;
            for (uint32_t j = 0; j < L->n_pieces; j++) nj += n_chunks(s, &p[j]);
            if (nj > s->max_jobs) s->max_jobs = (uint32_t)(nj < (1u << 20) ? nj : (1u << 20));
        }
    }
    uint64_t qcap = (uint64_t)s->n_slots * s->max_jobs;
    if (qcap > (1u << 28)) {
        r = fm_error_set(e, FM_E_RANGE, "%s: %llu read jobs: chunk size %llu too small", c->path, U64(qcap),
                         U64(s->chunk));
        goto fail;
    }
    s->q_cap = (uint32_t)qcap;
    s->q = malloc(s->q_cap * sizeof *s->q);
    s->bump_tmp = malloc(s->max_jobs * sizeof *s->bump_tmp);
    if (!s->slots || !s->free_list || !s->where || !s->freq || !s->verified || !s->q || !s->bump_tmp) goto nomem;
    for (uint64_t i = 0; i < s->n_keys; i++) s->where[i] = -1;
    for (uint32_t i = 0; i < s->n_slots; i++) {
        sslot *x = &s->slots[i];
        x->key = -1;
        x->buf = s->slab + (size_t)i * s->slot_bytes;
        pthread_cond_init(&x->cv, NULL);
        s->n_cv = i + 1;
        s->free_list[i] = s->n_slots - 1 - i; /* slot 0 first */
    }
    s->n_free = s->n_slots;

    /* descriptor */
    if (s->o.io == FM_STREAM_IO_DIRECT) {
        if (c->direct_fd >= 0) {
            s->fd = c->direct_fd;
        } else {
            s->own_fd = open(c->path, O_RDONLY | O_CLOEXEC | O_DIRECT);
            if (s->own_fd < 0) {
                r = fm_error_set(e, FM_E_IO, "%s: cannot open with O_DIRECT (--io direct): %s", c->path,
                                 strerror(errno));
                goto fail;
            }
            s->fd = s->own_fd;
        }
    } else {
        s->fd = c->fd;
    }

    for (uint32_t i = 0; i < nt; i++) {
        if (pthread_create(&s->th[i], NULL, io_main, s) != 0) {
            r = fm_error_set(e, FM_E_INTERNAL, "experts: cannot start I/O thread %u of %u", i + 1, nt);
            goto fail;
        }
        s->n_threads = i + 1;
    }
    s->info.slot_bytes = s->slot_bytes;
    s->info.n_slots = s->n_slots;
    s->info.budget_bytes = slab;
    s->info.n_threads = nt;
    s->info.io = s->o.io;
    s->info.evict = s->o.evict;
    return fm_experts_wrap(&stream_ops, s, c, s->o.n_pinned_max, out, e);
nomem:
    r = fm_error_set(e, FM_E_NOMEM, "experts: out of memory");
fail:
    stream_free(s);
    return r;
}

bool fm_experts_stream_info_get(const fm_experts *x, fm_experts_stream_info *out)
{
    if (!x || x->ops != &stream_ops) return false;
    stream *s = x->impl;
    pthread_mutex_lock(&s->mu);
    *out = s->info;
    pthread_mutex_unlock(&s->mu);
    return true;
}

/* ------------------------------------------------- memory available */

static bool read_u64_file(const char *path, uint64_t *out)
{
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char buf[64];
    bool ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok) return false;
    if (!strncmp(buf, "max", 3)) {
        *out = UINT64_MAX;
        return true;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf) return false;
    *out = v;
    return true;
}

static bool stat_field(const char *path, const char *name, uint64_t *out)
{
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[256];
    size_t nl = strlen(name);
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, name, nl) && line[nl] == ' ') {
            *out = strtoull(line + nl + 1, NULL, 10);
            found = true;
            break;
        }
    }
    fclose(f);
    return found;
}

/* The memory cgroup of this process: v1 path under the memory controller, or
 * v2 path (v2 true). */
static bool own_cgroup(char *out, size_t cap, bool *v2)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return false;
    char line[1024];
    bool found = false;
    char v2path[1024] = "";
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = 0;
        const char *ctrls = c1 + 1, *path = c2 + 1;
        if (!strcmp(line, "0") && !*ctrls) {
            snprintf(v2path, sizeof v2path, "%s", path);
            continue;
        }
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", ctrls);
        for (char *tok = strtok(tmp, ","); tok; tok = strtok(NULL, ","))
            if (!strcmp(tok, "memory")) found = true;
        if (found) {
            snprintf(out, cap, "%s", path);
            *v2 = false;
            break;
        }
    }
    fclose(f);
    if (!found && v2path[0]) {
        snprintf(out, cap, "%s", v2path);
        *v2 = true;
        found = true;
    }
    return found;
}

bool fm_stream_mem_available(uint64_t *bytes, bool *limited)
{
    uint64_t avail = 0;
    *limited = false;
    if (!stat_field("/proc/meminfo", "MemAvailable:", &avail)) return false;
    avail *= 1024;
    char cg[1024];
    bool v2 = false;
    if (own_cgroup(cg, sizeof cg, &v2)) {
        const char *root = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
        uint64_t limit = UINT64_MAX, anon = 0;
        bool have_anon = false;
        char path[1200], dir[1024];
        snprintf(dir, sizeof dir, "%s", cg);
        for (;;) { /* the group and every ancestor */
            uint64_t v;
            const char *sep = (dir[0] == '/' && dir[1] == 0) ? "" : dir;
            snprintf(path, sizeof path, "%s%s/%s", root, sep, v2 ? "memory.max" : "memory.limit_in_bytes");
            if (read_u64_file(path, &v) && v < limit) limit = v;
            if (!v2) {
                snprintf(path, sizeof path, "%s%s/memory.memsw.limit_in_bytes", root, sep);
                if (read_u64_file(path, &v) && v < limit) limit = v;
            }
            if (!have_anon) {
                snprintf(path, sizeof path, "%s%s/memory.stat", root, sep);
                have_anon = stat_field(path, v2 ? "anon" : "total_rss", &anon);
            }
            char *slash = strrchr(dir, '/');
            if (!slash || (slash == dir && dir[1] == 0)) break;
            if (slash == dir) dir[1] = 0;
            else *slash = 0;
        }
        /* v1 reports "no limit" as a huge page-rounded number */
        if (limit < (1ull << 60)) {
            uint64_t room = limit > anon ? limit - anon : 0;
            if (room < avail) {
                avail = room;
                *limited = true;
            }
        }
    }
    *bytes = avail;
    return true;
}

bool fm_stream_parse_bytes(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-') return false;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0)) return false;
    double mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1024.0, end++;
    else if (*end == 'M' || *end == 'm') mul = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g') mul = 1024.0 * 1024 * 1024, end++;
    else if (*end == 'T' || *end == 't') mul = 1024.0 * 1024 * 1024 * 1024, end++;
    if (*end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end || v * mul >= 1.8e19) return false;
    *out = (uint64_t)(v * mul);
    return true;
}
