/* The streaming expert source (runtime/stream.h) on a synthetic catalog over
 * a raw file written here: layer 0 is bundle-like (one aligned blob per
 * expert, with SHA-256), layer 1 GGUF-like (three unaligned slices per
 * expert), layer 2 has no experts. Checks: bytes handed out equal the file's
 * (cached and direct I/O), eviction under a tiny budget, pinned experts never
 * evicted, prefetch + acquire from two forward threads while the I/O threads
 * run, verify-on-first-read catches a corrupted blob (and names it), stats
 * counts, LRU vs LFRU victims, truncated files. */
#define _GNU_SOURCE /* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/sha256.h"
#include "runtime/experts.h"
#include "runtime/stream.h"
#include "tests/unit/t.h"

#define NL 3
#define NE 8
#define ROWS 10
#define COLS 64
#define MAT (ROWS * COLS * 4) /* 2560 bytes */
#define BLOB (3 * MAT)
#define L0_BASE 8192u         /* layer 0 blobs: 8192 + e * 12288 (aligned, 7680 bytes each) */
#define L1_BASE (L0_BASE + NE * 12288u)

static uint8_t *g_file;
static size_t g_size;
static char g_path[512];

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* layer 1, expert e, matrix k: at L1_BASE + 37 + k * (NE * MAT + 100) + e * MAT (unaligned) */
static uint64_t l1_off(uint32_t e, int k) { return L1_BASE + 37 + (uint64_t)k * (NE * MAT + 100) + (uint64_t)e * MAT; }

static void write_file(void)
{
    g_size = (size_t)l1_off(NE - 1, 2) + MAT; /* the last slice ends the file (not 4096-aligned) */
    g_file = malloc(g_size);
    for (size_t i = 0; i < g_size; i++) g_file[i] = (uint8_t)(rnd() >> 24);
    const char *tmp = getenv("TMPDIR");
    snprintf(g_path, sizeof g_path, "%s/fm-test-stream-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(g_path);
    if (fd < 0 || write(fd, g_file, g_size) != (ssize_t)g_size) {
        perror("test_stream: temp file");
        exit(1);
    }
    close(fd);
}

static void rewrite_byte(size_t off, uint8_t v)
{
    int fd = open(g_path, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, &v, 1, (off_t)off) == 1);
    if (fd >= 0) close(fd);
}

static fm_expert_catalog *make_catalog(int fd)
{
    fm_expert_catalog *c = calloc(1, sizeof *c);
    c->path = strdup(g_path);
    c->fd = fd;
    c->direct_fd = -1;
    c->alignment = 4096;
    c->n_layer = NL;
    c->n_expert = NE;
    c->layers = calloc(NL, sizeof *c->layers);
    c->pieces = calloc((size_t)NL * NE * FM_EXPERT_MAX_PIECES, sizeof *c->pieces);
    uint8_t(*sha)[32] = calloc((size_t)NL * NE, 32);
    c->sha256 = (const uint8_t(*)[32])sha;
    for (uint32_t il = 0; il < 2; il++) {
        fm_expert_layer_desc *L = &c->layers[il];
        L->present = true;
        L->n_expert = NE;
        L->n_pieces = il == 0 ? 1 : 3;
        L->n_mats = FM_EXPERT_N_MATS;
        L->blob_size = BLOB;
        for (int k = 0; k < FM_EXPERT_N_MATS; k++) {
            fm_expert_mat *m = &L->mats[k];
            m->qtype = 0; /* F32 */
            m->rows = k == FM_EXPERT_DOWN ? COLS : ROWS;
            m->cols = k == FM_EXPERT_DOWN ? ROWS : COLS;
            m->row_bytes = m->cols * 4;
            L->mat_off[k] = (uint64_t)k * MAT;
        }
        for (uint32_t e = 0; e < NE; e++) {
            fm_expert_piece *p = c->pieces + ((uint64_t)il * NE + e) * FM_EXPERT_MAX_PIECES;
            if (il == 0) {
                p[0].file_off = L0_BASE + (uint64_t)e * 12288;
                p[0].size = BLOB;
                p[0].blob_off = 0;
                fm_sha256_buf(g_file + p[0].file_off, BLOB, sha[il * NE + e], NULL);
            } else {
                fm_sha256 h;
                fm_sha256_init(&h, NULL);
                for (int k = 0; k < 3; k++) {
                    p[k].file_off = l1_off(e, k);
                    p[k].size = MAT;
                    p[k].blob_off = (uint64_t)k * MAT;
                    fm_sha256_update(&h, g_file + p[k].file_off, MAT);
                }
                fm_sha256_final(&h, sha[il * NE + e]);
            }
        }
    }
    c->max_blob_size = BLOB;
    return c;
}

/* The file bytes of (layer, expert, matrix k). */
static const uint8_t *expect(uint32_t il, uint32_t e, int k)
{
    return g_file + (il == 0 ? L0_BASE + (uint64_t)e * 12288 + (uint64_t)k * MAT : l1_off(e, k));
}

static bool same(const fm_expert *x, uint32_t il, uint32_t e)
{
    for (int k = 0; k < FM_EXPERT_N_MATS; k++) {
        if (x->m[k].rows * x->m[k].row_bytes != MAT) return false;
        if (memcmp(x->m[k].data, expect(il, e, k), MAT) != 0) return false;
    }
    return true;
}

static uint64_t g_chunk; /* read job size for open_src (0: whole pieces) */

static fm_experts *open_src(const fm_expert_catalog *c, uint64_t budget, uint32_t pinned, int io, int evict,
                            bool verify, uint32_t threads)
{
    fm_experts_stream_opts o;
    fm_experts_stream_opts_init(&o);
    o.budget_bytes = budget;
    o.n_pinned_max = pinned;
    o.io = io;
    o.evict = evict;
    o.verify = verify;
    o.n_threads = threads;
    o.chunk_bytes = g_chunk;
    fm_experts *x = NULL;
    fm_error e = {0};
    fm_err r = fm_experts_open_stream(c, &o, &x, &e);
    CHECKF(r == FM_OK, "%s", e.msg);
    return x;
}

/* Every expert once, then again: data, hits/misses/bytes (cached). */
static void test_basic(const fm_expert_catalog *c, int io)
{
    fm_experts *x = open_src(c, 0, 1, io, FM_STREAM_EVICT_LRU, false, 4);
    if (!x) return;
    fm_error e = {0};
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t il = 0; il < 2; il++)
            for (uint32_t id = 0; id < NE; id++) {
                fm_expert ex;
                fm_err r = fm_experts_acquire(x, il, &id, 1, &ex, &e);
                CHECKF(r == FM_OK, "%s", e.msg);
                if (r) continue;
                CHECKF(same(&ex, il, id), "io %d pass %d blk.%u expert %u", io, pass, il, id);
                fm_experts_release(x, il, &id, 1);
            }
    fm_experts_stats st;
    fm_experts_get_stats(x, &st);
    CHECK(st.acquired == 4 * NE);
    CHECK(st.misses == 2 * NE);
    CHECK(st.hits == 2 * NE);
    CHECK(st.prefetched == 0);
    if (io == FM_STREAM_IO_CACHED) CHECKF(st.bytes_read == 2ull * NE * BLOB, "%llu", (unsigned long long)st.bytes_read);
    else CHECK(st.bytes_read > 2ull * NE * BLOB); /* whole aligned ranges */
    /* layer 2 has no experts; an id out of range is refused */
    uint32_t id = 0, bad = NE;
    fm_expert ex;
    CHECK(fm_experts_acquire(x, 2, &id, 1, &ex, &e) == FM_E_ARG);
    CHECK(fm_experts_acquire(x, 0, &bad, 1, &ex, &e) == FM_E_ARG);
    fm_experts_free(x);
}

/* Budget of 1 byte: raised to n_pinned_max + 1 slots; random churn. */
static void test_tiny(const fm_expert_catalog *c, int io, int evict)
{
    fm_experts *x = open_src(c, 1, 1, io, evict, false, 3);
    if (!x) return;
    fm_experts_stream_info info;
    CHECK(fm_experts_stream_info_get(x, &info));
    CHECK(info.n_slots == 2);
    CHECK(info.slot_bytes % FM_STREAM_DIO_ALIGN == 0);
    fm_error e = {0};
    int bad = 0;
    for (int i = 0; i < 400; i++) {
        uint32_t il = (uint32_t)(rnd() % 2), id = (uint32_t)(rnd() % NE);
        if (rnd() % 3 == 0) {
            uint32_t pf[3] = {(uint32_t)(rnd() % NE), (uint32_t)(rnd() % NE), (uint32_t)(rnd() % NE)};
            if (pf[1] == pf[0]) pf[1] = (pf[0] + 1) % NE;
            fm_experts_prefetch(x, il, pf, 2);
        }
        fm_expert ex;
        if (fm_experts_acquire(x, il, &id, 1, &ex, &e)) {
            bad++;
            continue;
        }
        if (!same(&ex, il, id)) bad++;
        fm_experts_release(x, il, &id, 1);
    }
    CHECKF(bad == 0, "%d bad of 400", bad);
    fm_experts_stats st;
    fm_experts_get_stats(x, &st);
    CHECK(fm_experts_stream_info_get(x, &info));
    CHECK(st.cache_bytes == 2 * info.slot_bytes);
    CHECK(info.evictions > 100);
    CHECK(st.hits + st.misses == st.acquired && st.acquired == 400);
    fm_experts_free(x);
}

/* Pinned experts keep their bytes while others churn through a small cache. */
static void test_pinned(const fm_expert_catalog *c, int io)
{
    fm_experts *x = open_src(c, 1, 2, io, FM_STREAM_EVICT_LRU, false, 4); /* 3 slots */
    if (!x) return;
    fm_error e = {0};
    uint32_t a = 5;
    fm_expert pa;
    CHECK(fm_experts_acquire(x, 1, &a, 1, &pa, &e) == FM_OK);
    const void *p0 = pa.m[0].data;
    int bad = 0;
    for (int i = 0; i < 200; i++) {
        uint32_t il = (uint32_t)(rnd() % 2), id = (uint32_t)(rnd() % NE);
        if (il == 1 && id == a) continue;
        uint32_t pf[4] = {0, 1, 2, 3};
        fm_experts_prefetch(x, il, pf, 4); /* more than the free slots: dropped, never evicting a pin */
        fm_expert ex;
        if (fm_experts_acquire(x, il, &id, 1, &ex, &e)) {
            bad++;
            continue;
        }
        if (!same(&ex, il, id)) bad++;
        fm_experts_release(x, il, &id, 1);
        if (!same(&pa, 1, a)) bad++;
    }
    CHECKF(bad == 0, "%d", bad);
    CHECK(pa.m[0].data == p0);
    /* two at once (n_pinned_max 2) while one is pinned: refused above the limit */
    uint32_t two[2] = {1, 2}, three[3] = {1, 2, 3};
    fm_expert ex2[3];
    CHECK(fm_experts_acquire(x, 0, three, 3, ex2, &e) == FM_E_ARG);
    fm_experts_release(x, 1, &a, 1);
    CHECK(fm_experts_acquire(x, 0, two, 2, ex2, &e) == FM_OK);
    CHECK(same(&ex2[0], 0, 1) && same(&ex2[1], 0, 2));
    fm_experts_release(x, 0, two, 2);
    fm_experts_stream_info info;
    CHECK(fm_experts_stream_info_get(x, &info));
    CHECK(info.prefetch_dropped > 0);
    /* a caller holding every slot (beyond n_pinned_max) gets an error, not a hang */
    uint32_t ids3[3] = {4, 5, 6};
    fm_expert e3[3];
    for (int i = 0; i < 3; i++) CHECK(fm_experts_acquire(x, 0, &ids3[i], 1, &e3[i], &e) == FM_OK);
    uint32_t more = 7;
    CHECK(fm_experts_acquire(x, 0, &more, 1, &e3[0], &e) == FM_E_ARG);
    CHECKF(strstr(e.msg, "held") != NULL, "%s", e.msg);
    fm_experts_release(x, 0, ids3, 3);
    CHECK(fm_experts_acquire(x, 0, &more, 1, &e3[0], &e) == FM_OK && same(&e3[0], 0, more));
    fm_experts_release(x, 0, &more, 1);
    fm_experts_free(x);
}

typedef struct fwd_arg {
    fm_experts *x;
    uint64_t seed;
    int bad, iters;
} fwd_arg;

/* A forward pass: per "layer" prefetch 4 experts, acquire them one by one. */
static void *fwd_thread(void *p)
{
    fwd_arg *a = p;
    uint64_t st = a->seed;
    fm_error e = {0};
    for (int i = 0; i < a->iters; i++) {
        uint32_t il = (uint32_t)(i % 2);
        uint32_t ids[4];
        for (int k = 0; k < 4; k++) {
            st ^= st << 13, st ^= st >> 7, st ^= st << 17;
            ids[k] = (uint32_t)((st >> 20) % NE);
            for (int j = 0; j < k; j++)
                if (ids[j] == ids[k]) ids[k] = (ids[k] + 1) % NE, j = -1;
        }
        fm_experts_prefetch(a->x, il, ids, 4);
        for (int k = 0; k < 4; k++) {
            fm_expert ex;
            if (fm_experts_acquire(a->x, il, &ids[k], 1, &ex, &e)) {
                a->bad++;
                continue;
            }
            if (!same(&ex, il, ids[k])) a->bad++;
            fm_experts_release(a->x, il, &ids[k], 1);
        }
    }
    return NULL;
}

static void test_concurrent(const fm_expert_catalog *c, int io, int evict)
{
    fm_experts *x = open_src(c, 6 * 16384, 1, io, evict, false, 4);
    if (!x) return;
    fwd_arg a[2] = {{x, 1234567, 0, 1500}, {x, 7654321, 0, 1500}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, fwd_thread, &a[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECKF(a[0].bad == 0 && a[1].bad == 0, "%d %d", a[0].bad, a[1].bad);
    fm_experts_stats st;
    fm_experts_get_stats(x, &st);
    CHECK(st.acquired == 2 * 1500 * 4);
    CHECK(st.hits + st.misses == st.acquired);
    CHECK(st.prefetched > 0 && st.misses > 0 && st.hits > 0);
    fm_experts_free(x); /* also with reads possibly still queued */
}

/* Stats in a fixed sequence, cached I/O. */
static void test_stats(const fm_expert_catalog *c)
{
    fm_experts *x = open_src(c, 0, 1, FM_STREAM_IO_CACHED, FM_STREAM_EVICT_LRU, false, 2);
    if (!x) return;
    fm_error e = {0};
    uint32_t pf[3] = {0, 1, 2};
    fm_experts_prefetch(x, 0, pf, 3);
    fm_experts_prefetch(x, 0, pf, 3); /* already there: nothing new */
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < 3; i++) {
            fm_expert ex;
            CHECK(fm_experts_acquire(x, 0, &i, 1, &ex, &e) == FM_OK && same(&ex, 0, i));
            fm_experts_release(x, 0, &i, 1);
        }
    fm_experts_stats st;
    fm_experts_get_stats(x, &st);
    CHECK(st.prefetched == 3);
    CHECK(st.acquired == 6 && st.misses == 3 && st.hits == 3); /* a prefetched read counts as a miss once */
    CHECK(st.bytes_read == 3ull * BLOB);
    CHECK(st.read_seconds >= 0);
    fm_experts_free(x);
}

/* Victims: LRU evicts the least recently used; LFRU keeps a hot expert. */
static void test_policy(const fm_expert_catalog *c)
{
    for (int pol = 0; pol < 2; pol++) {
        fm_experts *x = open_src(c, 1, 2, FM_STREAM_IO_CACHED, pol ? FM_STREAM_EVICT_LFRU : FM_STREAM_EVICT_LRU,
                                 false, 2); /* 3 slots */
        if (!x) return;
        fm_error e = {0};
        uint32_t seq[] = {0, 0, 0, 0, 0, 1, 2, 3, 0};
        uint64_t hits_before_last = 0;
        for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
            if (i + 1 == sizeof seq / sizeof seq[0]) {
                fm_experts_stats st;
                fm_experts_get_stats(x, &st);
                hits_before_last = st.hits;
            }
            fm_expert ex;
            CHECK(fm_experts_acquire(x, 1, &seq[i], 1, &ex, &e) == FM_OK && same(&ex, 1, seq[i]));
            fm_experts_release(x, 1, &seq[i], 1);
        }
        fm_experts_stats st;
        fm_experts_get_stats(x, &st);
        /* LRU: acquiring 3 evicts 0 (used before 1 and 2) -> the last 0 misses.
         * LFRU: 0 has count 5, 1 and 2 count 1 -> 1 goes, the last 0 hits. */
        CHECKF(st.hits - hits_before_last == (pol ? 1u : 0u), "policy %d", pol);
        fm_experts_free(x);
    }
}

/* A prefetch protects the cached experts it names: prefetch {0, 3} with
 * {0, 1, 2} cached (0 least recently used) evicts 1 for 3, not 0. */
static void test_protect(const fm_expert_catalog *c)
{
    fm_experts *x = open_src(c, 1, 2, FM_STREAM_IO_CACHED, FM_STREAM_EVICT_LRU, false, 2); /* 3 slots */
    if (!x) return;
    fm_error e = {0};
    fm_expert ex;
    for (uint32_t i = 0; i < 3; i++) {
        CHECK(fm_experts_acquire(x, 0, &i, 1, &ex, &e) == FM_OK);
        fm_experts_release(x, 0, &i, 1);
    }
    uint32_t pf[2] = {0, 3};
    fm_experts_prefetch(x, 0, pf, 2);
    fm_experts_stats a, b;
    fm_experts_get_stats(x, &a);
    for (int i = 0; i < 2; i++) {
        CHECK(fm_experts_acquire(x, 0, &pf[i], 1, &ex, &e) == FM_OK && same(&ex, 0, pf[i]));
        fm_experts_release(x, 0, &pf[i], 1);
    }
    fm_experts_get_stats(x, &b);
    CHECK(b.hits - a.hits == 1 && b.misses - a.misses == 1 && b.prefetched == 1);
    uint32_t one = 1;
    fm_experts_get_stats(x, &a);
    CHECK(fm_experts_acquire(x, 0, &one, 1, &ex, &e) == FM_OK);
    fm_experts_release(x, 0, &one, 1);
    fm_experts_get_stats(x, &b);
    CHECK(b.misses - a.misses == 1); /* 1 was the one evicted */
    fm_experts_free(x);
}

/* speculate: reads for a later layer without evicting what the current
 * prefetch protects. */
static void test_speculate(const fm_expert_catalog *c)
{
    fm_experts *x = open_src(c, 1, 2, FM_STREAM_IO_CACHED, FM_STREAM_EVICT_LRU, false, 2); /* 3 slots */
    if (!x) return;
    fm_error e = {0};
    fm_expert ex;
    for (uint32_t i = 0; i < 3; i++) {
        CHECK(fm_experts_acquire(x, 0, &i, 1, &ex, &e) == FM_OK);
        fm_experts_release(x, 0, &i, 1);
    }
    uint32_t pf[2] = {0, 1}, sp[2] = {5, 6};
    fm_experts_prefetch(x, 0, pf, 2);
    fm_experts_stream_speculate(x, 1, sp, 2); /* room for one: 2 goes, 6 is dropped */
    fm_experts_stats a, b;
    fm_experts_get_stats(x, &a);
    for (int i = 0; i < 2; i++) {
        CHECK(fm_experts_acquire(x, 0, &pf[i], 1, &ex, &e) == FM_OK && same(&ex, 0, pf[i]));
        fm_experts_release(x, 0, &pf[i], 1);
    }
    CHECK(fm_experts_acquire(x, 1, &sp[0], 1, &ex, &e) == FM_OK && same(&ex, 1, 5));
    fm_experts_release(x, 1, &sp[0], 1);
    fm_experts_get_stats(x, &b);
    CHECK(b.hits - a.hits == 2 && b.misses - a.misses == 1);
    CHECK(b.bytes_read == 4ull * BLOB);
    fm_experts_stream_info info;
    CHECK(fm_experts_stream_info_get(x, &info) && info.speculated == 1 && info.prefetch_dropped == 1);
    fm_experts_free(x);
}

/* Verify: a corrupted blob fails acquire naming blk.L expert E; nothing
 * stays pinned; re-reads after eviction are not re-hashed. */
static void test_verify(fm_expert_catalog *c, int io)
{
    fm_error e = {0};
    /* clean first: 3 distinct experts through 2 slots, then 0 again */
    fm_experts *x = open_src(c, 1, 1, io, FM_STREAM_EVICT_LRU, true, 2);
    if (!x) return;
    uint32_t seq[] = {0, 1, 2, 0};
    for (int i = 0; i < 4; i++) {
        fm_expert ex;
        fm_err r = fm_experts_acquire(x, 0, &seq[i], 1, &ex, &e);
        CHECKF(r == FM_OK, "%s", e.msg);
        if (!r) fm_experts_release(x, 0, &seq[i], 1);
    }
    fm_experts_stream_info info;
    CHECK(fm_experts_stream_info_get(x, &info));
    CHECKF(info.verified == 3, "%llu", (unsigned long long)info.verified);
    fm_experts_free(x);

    size_t off = L0_BASE + 3 * 12288 + 777;
    uint8_t orig = g_file[off];
    rewrite_byte(off, (uint8_t)(orig ^ 0x40));
    x = open_src(c, 1, 1, io, FM_STREAM_EVICT_LRU, true, 2);
    if (!x) return;
    uint32_t id = 3;
    fm_expert ex;
    fm_err r = fm_experts_acquire(x, 0, &id, 1, &ex, &e);
    CHECK(r == FM_E_CHECKSUM);
    CHECKF(strstr(e.msg, "blk.0 expert 3") != NULL, "%s", e.msg);
    uint32_t pf[2] = {3, 4};
    fm_experts_prefetch(x, 0, pf, 2);
    r = fm_experts_acquire(x, 0, &id, 1, &ex, &e); /* again, through a prefetch */
    CHECK(r == FM_E_CHECKSUM);
    for (uint32_t k = 0; k < NE; k++) { /* the two slots are free again: others work */
        if (k == 3) continue;
        CHECK(fm_experts_acquire(x, 0, &k, 1, &ex, &e) == FM_OK && same(&ex, 0, k));
        fm_experts_release(x, 0, &k, 1);
    }
    /* layer 1: three pieces hashed back to back */
    uint32_t one = 1;
    r = fm_experts_acquire(x, 1, &one, 1, &ex, &e);
    CHECKF(r == FM_OK, "%s", e.msg);
    if (!r) fm_experts_release(x, 1, &one, 1);
    fm_experts_free(x);
    /* without verify the corrupted blob is handed out */
    x = open_src(c, 1, 1, io, FM_STREAM_EVICT_LRU, false, 2);
    if (x) {
        CHECK(fm_experts_acquire(x, 0, &id, 1, &ex, &e) == FM_OK);
        CHECK(((const uint8_t *)ex.m[0].data)[777] == (uint8_t)(orig ^ 0x40));
        fm_experts_release(x, 0, &id, 1);
        fm_experts_free(x);
    }
    rewrite_byte(off, orig);
}

/* A piece beyond the end of the file: FM_E_FORMAT naming the expert. */
static void test_truncated(fm_expert_catalog *c, int io)
{
    fm_expert_piece *p = c->pieces + ((uint64_t)1 * NE + 7) * FM_EXPERT_MAX_PIECES + 2;
    uint64_t keep = p->file_off;
    p->file_off = g_size - 100; /* 2460 bytes past the end */
    fm_experts *x = open_src(c, 0, 1, io, FM_STREAM_EVICT_LRU, false, 2);
    if (x) {
        fm_error e = {0};
        uint32_t id = 7;
        fm_expert ex;
        CHECK(fm_experts_acquire(x, 1, &id, 1, &ex, &e) == FM_E_FORMAT);
        CHECKF(strstr(e.msg, "blk.1 expert 7") && strstr(e.msg, "truncated"), "%s", e.msg);
        id = 6;
        CHECK(fm_experts_acquire(x, 1, &id, 1, &ex, &e) == FM_OK && same(&ex, 1, 6));
        fm_experts_release(x, 1, &id, 1);
        fm_experts_free(x);
    }
    p->file_off = keep;
}

static void test_misc(void)
{
    uint64_t v = 0;
    CHECK(fm_stream_parse_bytes("1.5G", &v) && v == 1610612736ull);
    CHECK(fm_stream_parse_bytes("512M", &v) && v == 512ull << 20);
    CHECK(fm_stream_parse_bytes("64KiB", &v) && v == 64ull << 10);
    CHECK(fm_stream_parse_bytes("123", &v) && v == 123);
    CHECK(!fm_stream_parse_bytes("-1G", &v));
    CHECK(!fm_stream_parse_bytes("12X", &v));
    CHECK(!fm_stream_parse_bytes("", &v));
    bool lim;
    CHECK(fm_stream_mem_available(&v, &lim) && v > 0);
}

int main(void)
{
    write_file();
    int fd = open(g_path, O_RDONLY);
    CHECK(fd >= 0);
    fm_expert_catalog *c = make_catalog(fd);
    int dfd = open(g_path, O_RDONLY | O_DIRECT);
    bool direct_ok = dfd >= 0;
    if (dfd >= 0) close(dfd);
    else fprintf(stderr, "test_stream: O_DIRECT not supported on %s (%s): direct-mode tests skipped\n", g_path,
                 strerror(errno));
    for (int run = 0; run < 4; run++) {
        int io = run & 1;
        g_chunk = run < 2 ? 0 : 4096; /* whole pieces; then 4 KiB jobs (2-3 per piece) */
        if (io == FM_STREAM_IO_DIRECT && !direct_ok) continue;
        test_basic(c, io);
        test_tiny(c, io, FM_STREAM_EVICT_LRU);
        test_tiny(c, io, FM_STREAM_EVICT_LFRU);
        test_pinned(c, io);
        test_concurrent(c, io, FM_STREAM_EVICT_LRU);
        test_concurrent(c, io, FM_STREAM_EVICT_LFRU);
        test_verify(c, io);
        test_truncated(c, io);
    }
    g_chunk = 0;
    test_stats(c);
    test_policy(c);
    test_protect(c);
    test_speculate(c);
    test_misc();
    fm_expert_catalog_free(c);
    close(fd);
    unlink(g_path);
    free(g_file);
    T_DONE();
}
