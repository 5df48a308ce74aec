/* The mapped expert source (runtime/mapped.h) on a synthetic catalog over a
 * raw file written here: layer 0 is bundle-like (one aligned blob per
 * expert), layer 1 GGUF-like (three unaligned slices per expert), layer 2 a
 * dense-layer-like entry (one "expert" of 7 matrices, one unaligned piece
 * each, gaps in the blob), layer 3 has no experts. Checks: every matrix of
 * every expert equals the file's bytes and points into one mapping (zero
 * copy); verify with blob and per-piece digests passes on clean data and
 * fails with FM_E_CHECKSUM naming the expert (or matrix) on a flipped byte,
 * again on every later acquire, and not after a verified first acquire;
 * pieces beyond the end of the file and matrices in no piece refused at
 * open; exact stats; n > n_pinned_max refused; prefetch with willneed;
 * concurrent acquires. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/sha256.h"
#include "runtime/experts.h"
#include "runtime/mapped.h"
#include "tests/unit/t.h"

#define NL 4
#define NE 8
#define ROWS 10
#define COLS 64
#define MAT (ROWS * COLS * 4) /* 2560 bytes */
#define BLOB (3 * MAT)
#define L0_BASE 8192u         /* layer 0 blobs: 8192 + e * 12288 (aligned, 7680 bytes each) */
#define L1_BASE (L0_BASE + NE * 12288u)
#define L2_MATS 7

static uint8_t *g_file;
static size_t g_size;
static char g_path[512];
static uint64_t g_l2_off[L2_MATS], g_l2_bytes[L2_MATS], g_l2_blob_off[L2_MATS], g_l2_blob;
static const char *g_l2_names[L2_MATS] = {"blk.2.attn_q.weight",   "blk.2.attn_k.weight",   "blk.2.attn_v.weight",
                                          "blk.2.attn_output.weight", "blk.2.ffn_gate.weight", "blk.2.ffn_up.weight",
                                          "blk.2.ffn_down.weight"};

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

/* layer 2, matrix k: rows 3 + k, cols 16 * (k + 1) f32 values; in the file
 * back to back with k * 11 + 5 bytes between (unaligned); in the blob at
 * multiples of 64 with gaps (the blob digest hashes them as zeros; the
 * blob is larger than the sum of the pieces). */
static void l2_layout(void)
{
    uint64_t f = l1_off(NE - 1, 2) + MAT + 13, b = 0;
    for (int k = 0; k < L2_MATS; k++) {
        g_l2_bytes[k] = (uint64_t)(3 + k) * (16 * (k + 1) * 4);
        g_l2_off[k] = f;
        g_l2_blob_off[k] = b;
        f += g_l2_bytes[k] + (uint64_t)k * 11 + 5;
        b = (b + g_l2_bytes[k] + 100 + 63) / 64 * 64; /* >= 100 bytes of gap after each */
    }
    g_l2_blob = b;
    g_size = (size_t)(g_l2_off[L2_MATS - 1] + g_l2_bytes[L2_MATS - 1]); /* the last matrix ends the file */
}

static void write_file(void)
{
    l2_layout();
    g_file = malloc(g_size);
    for (size_t i = 0; i < g_size; i++) g_file[i] = (uint8_t)(rnd() >> 24);
    const char *tmp = getenv("TMPDIR");
    snprintf(g_path, sizeof g_path, "%s/fm-test-mapped-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(g_path);
    if (fd < 0 || write(fd, g_file, g_size) != (ssize_t)g_size) {
        perror("test_mapped: temp file");
        exit(1);
    }
    close(fd);
}

/* Changes one byte of the file (seen through an open mapping: MAP_SHARED). */
static void rewrite_byte(size_t off, uint8_t v)
{
    int fd = open(g_path, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, &v, 1, (off_t)off) == 1);
    if (fd >= 0) close(fd);
}

static uint32_t n_expert_of(uint32_t il) { return il == 2 ? 1 : NE; }

static uint8_t (*g_blob_sha)[32], (*g_piece_sha)[32];

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
    g_blob_sha = calloc((size_t)NL * NE, 32);
    g_piece_sha = calloc((size_t)NL * NE * FM_EXPERT_MAX_PIECES, 32);
    for (uint32_t il = 0; il < 3; il++) {
        fm_expert_layer_desc *L = &c->layers[il];
        L->present = true;
        L->n_expert = n_expert_of(il);
        if (il < 2) {
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
        } else {
            L->n_pieces = L->n_mats = L2_MATS;
            L->blob_size = g_l2_blob;
            for (int k = 0; k < L2_MATS; k++) {
                fm_expert_mat *m = &L->mats[k];
                m->qtype = 0;
                m->rows = 3 + (uint64_t)k;
                m->cols = 16 * ((uint64_t)k + 1);
                m->row_bytes = m->cols * 4;
                L->mat_off[k] = g_l2_blob_off[k];
                L->mat_name[k] = g_l2_names[k];
            }
        }
        for (uint32_t e = 0; e < L->n_expert; e++) {
            fm_expert_piece *p = c->pieces + ((uint64_t)il * NE + e) * FM_EXPERT_MAX_PIECES;
            if (il == 0) {
                p[0] = (fm_expert_piece){L0_BASE + (uint64_t)e * 12288, BLOB, 0};
            } else if (il == 1) {
                for (int k = 0; k < 3; k++) p[k] = (fm_expert_piece){l1_off(e, k), MAT, (uint64_t)k * MAT};
            } else {
                for (int k = 0; k < L2_MATS; k++) p[k] = (fm_expert_piece){g_l2_off[k], g_l2_bytes[k], g_l2_blob_off[k]};
            }
            /* digests: the blob (pieces at their blob offsets, gaps zero) and each piece */
            uint8_t *blob = calloc(1, L->blob_size);
            for (uint32_t j = 0; j < L->n_pieces; j++) {
                memcpy(blob + p[j].blob_off, g_file + p[j].file_off, p[j].size);
                fm_sha256_buf(g_file + p[j].file_off, p[j].size,
                              g_piece_sha[((uint64_t)il * NE + e) * FM_EXPERT_MAX_PIECES + j], NULL);
            }
            fm_sha256_buf(blob, L->blob_size, g_blob_sha[il * NE + e], NULL);
            free(blob);
        }
    }
    c->max_blob_size = BLOB;
    return c;
}

/* Which digests the catalog carries: 0 none, 1 blob, 2 per piece. */
static void use_digests(fm_expert_catalog *c, int which)
{
    c->sha256 = which == 1 ? (const uint8_t(*)[32])g_blob_sha : NULL;
    c->piece_sha256 = which == 2 ? (const uint8_t(*)[32])g_piece_sha : NULL;
}

static uint32_t n_mats_of(uint32_t il) { return il == 2 ? L2_MATS : FM_EXPERT_N_MATS; }

/* File offset and size of (layer, expert, matrix k). */
static uint64_t expect_off(uint32_t il, uint32_t e, uint32_t k)
{
    return il == 0 ? L0_BASE + (uint64_t)e * 12288 + (uint64_t)k * MAT : il == 1 ? l1_off(e, (int)k) : g_l2_off[k];
}
static uint64_t expect_bytes(uint32_t il, uint32_t k) { return il == 2 ? g_l2_bytes[k] : MAT; }
static uint64_t expert_bytes(uint32_t il)
{
    if (il < 2) return BLOB;
    uint64_t s = 0;
    for (int k = 0; k < L2_MATS; k++) s += g_l2_bytes[k];
    return s;
}

static bool same(const fm_expert *x, uint32_t il, uint32_t e)
{
    for (uint32_t k = 0; k < n_mats_of(il); k++) {
        if (x->m[k].rows * x->m[k].row_bytes != expect_bytes(il, k)) return false;
        if (memcmp(x->m[k].data, g_file + expect_off(il, e, k), expect_bytes(il, k)) != 0) return false;
    }
    return true;
}

static fm_experts *open_src(const fm_expert_catalog *c, uint32_t pinned, bool verify, bool willneed)
{
    fm_experts_mapped_opts o = {.n_pinned_max = pinned, .verify = verify, .willneed = willneed};
    fm_experts *x = NULL;
    fm_error e = {0};
    fm_err r = fm_experts_open_mapped(c, &o, &x, &e);
    CHECKF(r == FM_OK, "%s", e.msg);
    return x;
}

/* Every matrix of every expert: the file's bytes, straight from one
 * mapping (pointer differences = file offset differences, stable). */
static void test_data(fm_expert_catalog *c)
{
    fm_experts *x = open_src(c, 1, false, false);
    if (!x) return;
    CHECK(fm_experts_is_mapped(x));
    fm_error e = {0};
    fm_expert ex0;
    uint32_t zero = 0;
    CHECK(fm_experts_acquire(x, 0, &zero, 1, &ex0, &e) == FM_OK);
    const uint8_t *base = (const uint8_t *)ex0.m[0].data - expect_off(0, 0, 0); /* the mapping's start */
    fm_experts_release(x, 0, &zero, 1);
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t il = 0; il < 3; il++)
            for (uint32_t id = 0; id < n_expert_of(il); id++) {
                fm_expert ex;
                memset(&ex, 0, sizeof ex);
                fm_err r = fm_experts_acquire(x, il, &id, 1, &ex, &e);
                CHECKF(r == FM_OK, "%s", e.msg);
                if (r) continue;
                CHECKF(same(&ex, il, id), "pass %d blk.%u expert %u", pass, il, id);
                bool at = true;
                for (uint32_t k = 0; k < n_mats_of(il); k++) {
                    at = at && (const uint8_t *)ex.m[k].data == base + expect_off(il, id, k);
                    at = at && ex.m[k].rows == c->layers[il].mats[k].rows && ex.m[k].cols == c->layers[il].mats[k].cols;
                }
                for (uint32_t k = n_mats_of(il); k < FM_EXPERT_MAX_MATS; k++) at = at && ex.m[k].data == NULL;
                CHECKF(at, "pass %d blk.%u expert %u: not the mapping's bytes", pass, il, id);
                fm_experts_release(x, il, &id, 1);
            }
    /* several at once, held together */
    uint32_t ids[4] = {7, 2, 5, 0};
    fm_experts_free(x);
    x = open_src(c, 4, false, false);
    if (!x) return;
    fm_expert ex[4];
    CHECK(fm_experts_acquire(x, 1, ids, 4, ex, &e) == FM_OK);
    for (int i = 0; i < 4; i++) CHECKF(same(&ex[i], 1, ids[i]), "expert %u of 4", ids[i]);
    fm_experts_release(x, 1, ids, 4);
    /* layer 3 has no experts; an id out of range is refused */
    uint32_t bad = NE, one = 1;
    CHECK(fm_experts_acquire(x, 3, &zero, 1, ex, &e) == FM_E_ARG);
    CHECK(fm_experts_acquire(x, 0, &bad, 1, ex, &e) == FM_E_ARG);
    CHECK(fm_experts_acquire(x, 2, &one, 1, ex, &e) == FM_E_ARG); /* layer 2 has one expert */
    fm_experts_free(x);

    fm_experts_simple_opts so = {0};
    fm_experts *y = NULL;
    CHECK(fm_experts_open_simple(c, &so, &y, &e) == FM_OK && !fm_experts_is_mapped(y));
    fm_experts_free(y);
    CHECK(!fm_experts_is_mapped(NULL));
    /* opts NULL: defaults */
    CHECK(fm_experts_open_mapped(c, NULL, &y, &e) == FM_OK && y && y->n_pinned_max == 1);
    fm_experts_free(y);
}

/* verify with digest kind `which` (1 blob, 2 per piece). */
static void test_verify(fm_expert_catalog *c, int which)
{
    use_digests(c, which);
    fm_error e = {0};
    fm_expert ex;
    /* clean: every expert passes */
    fm_experts *x = open_src(c, 1, true, false);
    if (!x) goto out;
    for (uint32_t il = 0; il < 3; il++)
        for (uint32_t id = 0; id < n_expert_of(il); id++) {
            fm_err r = fm_experts_acquire(x, il, &id, 1, &ex, &e);
            CHECKF(r == FM_OK && same(&ex, il, id), "digests %d blk.%u expert %u: %s", which, il, id, r ? e.msg : "");
            if (!r) fm_experts_release(x, il, &id, 1);
        }
    /* verified on the first acquire only: a later change is not seen */
    size_t off = (size_t)l1_off(4, 1) + 99;
    uint8_t orig = g_file[off];
    rewrite_byte(off, (uint8_t)(orig ^ 0x21));
    uint32_t id = 4;
    CHECK(fm_experts_acquire(x, 1, &id, 1, &ex, &e) == FM_OK);
    CHECK(((const uint8_t *)ex.m[FM_EXPERT_UP].data)[99] == (uint8_t)(orig ^ 0x21)); /* shared mapping */
    fm_experts_release(x, 1, &id, 1);
    fm_experts_free(x);

    /* a fresh source sees the flipped byte: FM_E_CHECKSUM, every time, no stats */
    x = open_src(c, 2, true, false);
    if (!x) goto restore;
    for (int again = 0; again < 3; again++) {
        fm_err r = fm_experts_acquire(x, 1, &id, 1, &ex, &e);
        CHECKF(r == FM_E_CHECKSUM, "digests %d try %d: %d", which, again, r);
        CHECKF(strstr(e.msg, "blk.1 expert 4") != NULL && strstr(e.msg, g_path) != NULL, "%s", e.msg);
    }
    uint32_t two[2] = {3, 4}; /* one good, one bad: the call fails as a whole */
    CHECK(fm_experts_acquire(x, 1, two, 2, (fm_expert[2]){0}, &e) == FM_E_CHECKSUM);
    fm_experts_stats st;
    fm_experts_get_stats(x, &st);
    CHECKF(st.acquired == 0 && st.misses == 0 && st.bytes_read == 0, "%llu", (unsigned long long)st.acquired);
    uint32_t five = 5;
    CHECK(fm_experts_acquire(x, 1, &five, 1, &ex, &e) == FM_OK && same(&ex, 1, 5));
    fm_experts_release(x, 1, &five, 1);
    /* not marked verified: repaired, it passes */
    rewrite_byte(off, orig);
    fm_err r = fm_experts_acquire(x, 1, &id, 1, &ex, &e);
    CHECKF(r == FM_OK && same(&ex, 1, 4), "%s", r ? e.msg : "");
    if (!r) fm_experts_release(x, 1, &id, 1);
    /* a flip after opening, before the first acquire: caught (bundle-like layer) */
    size_t off0 = L0_BASE + 6 * 12288 + 5000;
    uint8_t orig0 = g_file[off0];
    rewrite_byte(off0, (uint8_t)(orig0 ^ 1));
    uint32_t six = 6;
    r = fm_experts_acquire(x, 0, &six, 1, &ex, &e);
    CHECK(r == FM_E_CHECKSUM);
    CHECKF(strstr(e.msg, "blk.0 expert 6") != NULL, "%s", e.msg);
    rewrite_byte(off0, orig0);
    /* the multi-matrix layer: per-piece digests name the matrix */
    size_t off2 = (size_t)(g_l2_off[5] + 17);
    uint8_t orig2 = g_file[off2];
    rewrite_byte(off2, (uint8_t)(orig2 ^ 0x80));
    uint32_t zero = 0;
    r = fm_experts_acquire(x, 2, &zero, 1, &ex, &e);
    CHECK(r == FM_E_CHECKSUM);
    if (which == 2) CHECKF(strstr(e.msg, "blk.2.ffn_up.weight") != NULL, "%s", e.msg);
    else CHECKF(strstr(e.msg, "blk.2 expert 0") != NULL, "%s", e.msg);
    rewrite_byte(off2, orig2);
    fm_experts_free(x);

    /* without verify the flipped byte is handed out */
    rewrite_byte(off, (uint8_t)(orig ^ 0x21));
    x = open_src(c, 1, false, false);
    if (x) {
        CHECK(fm_experts_acquire(x, 1, &id, 1, &ex, &e) == FM_OK);
        CHECK(((const uint8_t *)ex.m[FM_EXPERT_UP].data)[99] == (uint8_t)(orig ^ 0x21));
        fm_experts_release(x, 1, &id, 1);
        fm_experts_free(x);
    }
restore:
    rewrite_byte(off, orig);
out:
    use_digests(c, 0);
}

/* Catalog errors at open: piece past the end (also overflowing), matrix in
 * no piece, no descriptor. */
static void test_open_errors(fm_expert_catalog *c)
{
    fm_error e = {0};
    fm_experts *x = NULL;
    fm_expert_piece *p = c->pieces + ((uint64_t)1 * NE + 7) * FM_EXPERT_MAX_PIECES + 2;
    uint64_t keep = p->file_off;
    uint64_t offs[3] = {g_size - 100, g_size, UINT64_MAX - 10};
    for (int i = 0; i < 3; i++) {
        p->file_off = offs[i];
        fm_err r = fm_experts_open_mapped(c, NULL, &x, &e);
        CHECKF(r == FM_E_FORMAT && x == NULL, "case %d: %d", i, r);
        CHECKF(strstr(e.msg, "blk.1 expert 7") && strstr(e.msg, "end of the file") && strstr(e.msg, g_path),
               "%s", e.msg);
    }
    p->file_off = g_size - MAT; /* exactly the last bytes: fine */
    CHECK(fm_experts_open_mapped(c, NULL, &x, &e) == FM_OK);
    fm_experts_free(x);
    x = NULL;
    p->file_off = keep;

    /* the last piece of the multi-matrix layer one byte too long */
    fm_expert_piece *q = c->pieces + ((uint64_t)2 * NE) * FM_EXPERT_MAX_PIECES + 6;
    q->size++;
    c->layers[2].blob_size += 64;
    CHECK(fm_experts_open_mapped(c, NULL, &x, &e) == FM_E_FORMAT && strstr(e.msg, "blk.2 expert 0"));
    q->size--;
    c->layers[2].blob_size -= 64;

    /* a matrix outside its piece */
    c->layers[1].mat_off[FM_EXPERT_DOWN] += 1;
    CHECK(fm_experts_open_mapped(c, NULL, &x, &e) == FM_E_ARG && strstr(e.msg, "lies in no piece"));
    c->layers[1].mat_off[FM_EXPERT_DOWN] -= 1;
    /* expert 3's pieces 0 and 1 overlapping in the blob */
    fm_expert_piece *r3 = c->pieces + ((uint64_t)1 * NE + 3) * FM_EXPERT_MAX_PIECES;
    r3[0].size++;
    CHECK(fm_experts_open_mapped(c, NULL, &x, &e) == FM_E_ARG && strstr(e.msg, "blk.1 expert 3") &&
          strstr(e.msg, "overlaps"));
    r3[0].size--;
    /* expert 3's piece 2 one byte later (and shorter): its matrix is not in it */
    r3[2].blob_off++;
    r3[2].file_off++;
    r3[2].size--;
    CHECK(fm_experts_open_mapped(c, NULL, &x, &e) == FM_E_ARG && strstr(e.msg, "blk.1 expert 3") &&
          strstr(e.msg, "matrix 2"));
    r3[2].blob_off--;
    r3[2].file_off--;
    r3[2].size++;

    int fd = c->fd;
    c->fd = -1;
    CHECK(fm_experts_open_mapped(c, NULL, &x, &e) == FM_E_IO);
    c->fd = fd;
    CHECK(x == NULL);
    CHECK(fm_experts_open_mapped(c, NULL, &x, &e) == FM_OK); /* all restored */
    fm_experts_free(x);
}

/* Exact counts: misses = first acquires, hits = the rest, bytes = pieces
 * at first acquire; n > n_pinned_max refused. */
static void test_stats(fm_expert_catalog *c)
{
    use_digests(c, 1);
    fm_experts *x = open_src(c, 3, true, false);
    if (!x) goto out;
    fm_error e = {0};
    fm_expert ex[4];
    uint32_t a[3] = {0, 1, 2}, b[2] = {2, 3}, zero = 0;
    CHECK(fm_experts_acquire(x, 1, a, 3, ex, &e) == FM_OK);
    fm_experts_release(x, 1, a, 3);
    CHECK(fm_experts_acquire(x, 1, b, 2, ex, &e) == FM_OK); /* 2 hit, 3 miss */
    fm_experts_release(x, 1, b, 2);
    for (int i = 0; i < 3; i++) {
        CHECK(fm_experts_acquire(x, 2, &zero, 1, ex, &e) == FM_OK);
        fm_experts_release(x, 2, &zero, 1);
    }
    CHECK(fm_experts_acquire(x, 0, &zero, 1, ex, &e) == FM_OK); /* same id, another layer: a miss */
    fm_experts_release(x, 0, &zero, 1);
    uint32_t four[4] = {4, 5, 6, 7};
    fm_err r = fm_experts_acquire(x, 1, four, 4, ex, &e);
    CHECKF(r == FM_E_ARG && strstr(e.msg, "4 experts"), "%d %s", r, e.msg);
    fm_experts_stats st;
    fm_experts_get_stats(x, &st);
    CHECKF(st.acquired == 9 && st.misses == 6 && st.hits == 3, "%llu %llu %llu", (unsigned long long)st.acquired,
           (unsigned long long)st.misses, (unsigned long long)st.hits);
    uint64_t want = 4ull * BLOB + expert_bytes(2) + BLOB;
    CHECKF(st.bytes_read == want && st.cache_bytes == want, "%llu %llu want %llu", (unsigned long long)st.bytes_read,
           (unsigned long long)st.cache_bytes, (unsigned long long)want);
    CHECK(st.prefetched == 0 && st.read_seconds == 0);
    fm_experts_free(x);
    /* default n_pinned_max: 1 */
    x = open_src(c, 0, false, false);
    if (x) {
        CHECK(x->n_pinned_max == 1);
        CHECK(fm_experts_acquire(x, 1, b, 2, ex, &e) == FM_E_ARG);
        fm_experts_free(x);
    }
out:
    use_digests(c, 0);
}

/* prefetch: willneed gives valid experts to madvise and counts them;
 * without willneed nothing is counted. */
static void test_prefetch(fm_expert_catalog *c)
{
    fm_error e = {0};
    for (int wn = 0; wn < 2; wn++) {
        fm_experts *x = open_src(c, 1, false, wn);
        if (!x) return;
        uint32_t ids[4] = {0, 3, 7, NE /* invalid: ignored */}, zero = 0;
        fm_experts_prefetch(x, 1, ids, 4);
        fm_experts_prefetch(x, 0, ids, 3);
        fm_experts_prefetch(x, 2, &zero, 1); /* last piece ends the file, mid-page */
        fm_experts_prefetch(x, 3, ids, 2);   /* no experts: ignored */
        fm_experts_prefetch(x, NL + 5, ids, 2);
        fm_experts_stats st;
        fm_experts_get_stats(x, &st);
        CHECKF(st.prefetched == (wn ? 7u : 0u), "willneed %d: %llu", wn, (unsigned long long)st.prefetched);
        CHECK(st.misses == 0 && st.bytes_read == 0); /* a hint touches nothing */
        fm_expert ex;
        for (int i = 0; i < 3; i++) {
            CHECK(fm_experts_acquire(x, 1, &ids[i], 1, &ex, &e) == FM_OK && same(&ex, 1, ids[i]));
            fm_experts_release(x, 1, &ids[i], 1);
        }
        CHECK(fm_experts_acquire(x, 2, &zero, 1, &ex, &e) == FM_OK && same(&ex, 2, 0));
        fm_experts_release(x, 2, &zero, 1);
        fm_experts_get_stats(x, &st);
        CHECK(st.misses == 4 && st.hits == 0);
        /* experts acquired before are not hinted again; 1/7 was not acquired */
        fm_experts_prefetch(x, 1, ids, 3);
        const uint32_t seven = 7;
        fm_experts_prefetch(x, 0, &seven, 1);
        fm_experts_get_stats(x, &st);
        CHECKF(st.prefetched == (wn ? 8u : 0u), "willneed %d, again: %llu", wn, (unsigned long long)st.prefetched);
        fm_experts_free(x);
    }
}

/* Several threads acquiring (with verify) at once: right data, and each
 * expert counted as a miss exactly once. */
typedef struct worker {
    fm_experts *x;
    uint64_t seed;
    int bad;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    fm_error e = {0};
    uint64_t s = w->seed;
    for (int i = 0; i < 400; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t il = (uint32_t)(s >> 40) % 3, id = (uint32_t)(s >> 20) % n_expert_of(il);
        fm_expert ex;
        if (fm_experts_acquire(w->x, il, &id, 1, &ex, &e) != FM_OK || !same(&ex, il, id)) {
            w->bad++;
            continue;
        }
        fm_experts_release(w->x, il, &id, 1);
    }
    return NULL;
}

static void test_concurrent(fm_expert_catalog *c)
{
    use_digests(c, 2);
    fm_experts *x = open_src(c, 1, true, true);
    if (!x) goto out;
    worker w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){x, 17u + (uint64_t)i * 1000003u, 0};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    uint32_t all[NE] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int i = 0; i < 50; i++) fm_experts_prefetch(x, (uint32_t)i % 2, all, NE);
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += w[i].bad;
    }
    CHECKF(bad == 0, "%d bad acquires", bad);
    fm_experts_stats st;
    fm_experts_get_stats(x, &st);
    CHECK(st.acquired == 1600 && st.hits + st.misses == 1600);
    CHECKF(st.misses == 2 * NE + 1, "%llu", (unsigned long long)st.misses); /* 1600 random picks hit all 17 */
    CHECK(st.bytes_read == 2ull * NE * BLOB + expert_bytes(2));
    CHECK(st.prefetched <= 50ull * NE); /* racing the workers: experts acquired before are not hinted */
    fm_experts_free(x);
out:
    use_digests(c, 0);
}

int main(void)
{
    write_file();
    int fd = open(g_path, O_RDONLY);
    CHECK(fd >= 0);
    fm_expert_catalog *c = make_catalog(fd);
    test_data(c);
    test_verify(c, 1);
    test_verify(c, 2);
    test_open_errors(c);
    test_stats(c);
    test_prefetch(c);
    test_concurrent(c);
    free(g_blob_sha);
    free(g_piece_sha);
    fm_expert_catalog_free(c);
    close(fd);
    unlink(g_path);
    free(g_file);
    T_DONE();
}
