/* Expert catalogs (GGUF, bundle) and the simple expert source. */
#include "runtime/experts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "formats/arch.h"
#include "formats/quant.h"
#include "formats/sha256.h"
#include "formats/util.h"

#define U64(x) ((unsigned long long)(x))

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void fm_expert_catalog_free(fm_expert_catalog *c)
{
    if (!c) return;
    free(c->layers);
    free(c->pieces);
    free((void *)c->sha256);
    free((void *)c->piece_sha256);
    free((void *)c->path);
    free(c);
}

fm_err fm_expert_catalog_new(const char *path, uint32_t n_layer, uint32_t n_expert, fm_expert_catalog **out,
                             fm_error *e)
{
    *out = NULL;
    fm_expert_catalog *c = calloc(1, sizeof *c);
    if (!c) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
    c->path = strdup(path);
    c->n_layer = n_layer;
    c->n_expert = n_expert;
    c->fd = -1;
    c->direct_fd = -1;
    uint64_t np = (uint64_t)n_layer * (n_expert ? n_expert : 1) * FM_EXPERT_MAX_PIECES;
    c->layers = calloc(n_layer ? n_layer : 1, sizeof *c->layers);
    c->pieces = np <= SIZE_MAX / sizeof *c->pieces ? calloc((size_t)(np ? np : 1), sizeof *c->pieces) : NULL;
    if (!c->path || !c->layers || !c->pieces) {
        fm_expert_catalog_free(c);
        return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
    }
    *out = c;
    return FM_OK;
}

uint64_t fm_expert_catalog_n_present(const fm_expert_catalog *c)
{
    uint64_t n = 0;
    for (uint32_t il = 0; il < c->n_layer; il++)
        if (c->layers[il].present) n += c->layers[il].n_expert;
    return n;
}

static fm_err catalog_alloc(const char *path, const json_t *hp, fm_expert_catalog **out, fm_error *e)
{
    uint32_t n_layer, n_expert = 0;
    fm_err r = fm_arch_hp_u32(hp, "n_layer", &n_layer, e);
    if (r) return r;
    fm_arch_hp_u32(hp, "n_expert", &n_expert, NULL);
    return fm_expert_catalog_new(path, n_layer, n_expert, out, e);
}

static void set_mat(fm_expert_mat *m, uint32_t qtype, uint64_t rows, uint64_t cols, uint64_t row_bytes)
{
    m->qtype = qtype;
    m->rows = rows;
    m->cols = cols;
    m->row_bytes = row_bytes;
    m->data = NULL;
}

fm_err fm_expert_catalog_from_gguf(const fm_gguf *g, const json_t *hp, fm_expert_catalog **out,
                                   fm_error *e)
{
    static const char *const names[FM_EXPERT_N_MATS] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    const char *path = g->file.path ? g->file.path : "gguf";
    fm_expert_catalog *c;
    fm_err r = catalog_alloc(path, hp, &c, e);
    if (r) return r;
    c->fd = g->file.fd;
    c->alignment = (uint32_t)(g->alignment <= UINT32_MAX ? g->alignment : 0);
    uint32_t n_embd = 0, n_ff_exp = 0;
    fm_arch_hp_u32(hp, "n_embd", &n_embd, NULL);
    fm_arch_hp_u32(hp, "n_ff_exp", &n_ff_exp, NULL);
    for (uint32_t il = 0; il < c->n_layer; il++) {
        const fm_gguf_tensor *t[FM_EXPERT_N_MATS];
        int found = 0;
        char nm[96];
        for (int k = 0; k < FM_EXPERT_N_MATS; k++) {
            snprintf(nm, sizeof nm, "blk.%u.%s.weight", il, names[k]);
            t[k] = fm_gguf_find_tensor(g, nm);
            found += t[k] != NULL;
        }
        if (found == 0) continue;
        if (found != FM_EXPERT_N_MATS || c->n_expert == 0) {
            r = fm_error_set(e, FM_E_FORMAT, "%s: layer %u has %d of the 3 fused expert tensors (n_expert %u)",
                             path, il, found, c->n_expert);
            goto fail;
        }
        fm_expert_layer_desc *L = &c->layers[il];
        L->present = true;
        L->n_expert = c->n_expert;
        L->n_pieces = FM_EXPERT_N_MATS;
        L->n_mats = FM_EXPERT_N_MATS;
        uint64_t off = 0;
        for (int k = 0; k < FM_EXPERT_N_MATS; k++) {
            const fm_gguf_tensor *x = t[k];
            uint64_t want0 = k == FM_EXPERT_DOWN ? n_ff_exp : n_embd;
            uint64_t want1 = k == FM_EXPERT_DOWN ? n_embd : n_ff_exp;
            if (x->n_dims != 3 || x->ne[0] != want0 || x->ne[1] != want1 || x->ne[2] != c->n_expert) {
                r = fm_error_set(e, FM_E_FORMAT,
                                 "%s: tensor %s: ne expected [%llu, %llu, %u], found [%llu, %llu, %llu] (%u dims)",
                                 path, x->name.s, U64(want0), U64(want1), c->n_expert, U64(x->ne[0]),
                                 U64(x->ne[1]), U64(x->ne[2]), x->n_dims);
                goto fail;
            }
            uint64_t rb, slice, total;
            if ((r = fm_qtype_nbytes(x->type, x->ne[0], &rb, e))) {
                fm_error_prefix(e, "%s: tensor %s", path, x->name.s);
                goto fail;
            }
            if (!fm_mul_u64(rb, x->ne[1], &slice) || !fm_mul_u64(slice, x->ne[2], &total) ||
                total != x->size || !fm_range_ok(x->abs_offset, x->size, g->file.size)) {
                r = fm_error_set(e, FM_E_FORMAT, "%s: tensor %s: %llu bytes do not match its shape and type",
                                 path, x->name.s, U64(x->size));
                goto fail;
            }
            set_mat(&L->mats[k], x->type, x->ne[1], x->ne[0], rb);
            L->mat_off[k] = off;
            for (uint32_t ex = 0; ex < c->n_expert; ex++) {
                fm_expert_piece *p = c->pieces + ((uint64_t)il * c->n_expert + ex) * FM_EXPERT_MAX_PIECES + k;
                p->file_off = x->abs_offset + (uint64_t)ex * slice;
                p->size = slice;
                p->blob_off = off;
            }
            if (!fm_add_u64(off, slice, &off) || !fm_align_up(off, 64, &off)) {
                r = fm_error_set(e, FM_E_RANGE, "%s: layer %u: expert too large", path, il);
                goto fail;
            }
        }
        L->blob_size = off;
        if (off > c->max_blob_size) c->max_blob_size = off;
    }
    *out = c;
    return FM_OK;
fail:
    fm_expert_catalog_free(c);
    return r;
}

fm_err fm_expert_catalog_from_bundle(const fm_bundle *b, const json_t *hp, fm_expert_catalog **out,
                                     fm_error *e)
{
    static const char *const parts[FM_EXPERT_N_MATS] = {"gate", "up", "down"};
    const char *path = fm_bundle_path(b) ? fm_bundle_path(b) : "bundle";
    fm_expert_catalog *c;
    fm_err r = catalog_alloc(path, hp, &c, e);
    if (r) return r;
    c->fd = fm_bundle_fd(b);
    c->direct_fd = fm_bundle_direct_fd(b);
    c->alignment = fm_bundle_alignment(b);
    uint32_t n_embd = 0, n_ff_exp = 0;
    fm_arch_hp_u32(hp, "n_embd", &n_embd, NULL);
    fm_arch_hp_u32(hp, "n_ff_exp", &n_ff_exp, NULL);
    uint8_t(*sha)[32] = NULL;
    if (c->n_expert) {
        sha = calloc((size_t)c->n_layer * c->n_expert, 32);
        if (!sha) {
            fm_expert_catalog_free(c);
            return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
        }
        c->sha256 = (const uint8_t(*)[32])sha;
    }
    for (uint32_t i = 0; i < fm_bundle_n_expert_layers(b); i++) {
        const fm_bundle_expert_layer *l = fm_bundle_expert_layer_at(b, i);
        uint32_t il = l->layer;
        if (il >= c->n_layer || l->n_expert != c->n_expert || c->layers[il].present) {
            r = fm_error_set(e, FM_E_FORMAT, "%s: expert layer %u (%u experts) does not fit n_layer %u, n_expert %u",
                             path, il, l->n_expert, c->n_layer, c->n_expert);
            goto fail;
        }
        fm_expert_layer_desc *L = &c->layers[il];
        L->present = true;
        L->n_expert = l->n_expert;
        L->n_pieces = 1;
        L->n_mats = FM_EXPERT_N_MATS;
        L->blob_size = l->blob_size;
        for (int k = 0; k < FM_EXPERT_N_MATS; k++) {
            const fm_bundle_part *p = fm_bundle_find_part(l, parts[k]);
            uint64_t want_rows = k == FM_EXPERT_DOWN ? n_embd : n_ff_exp;
            uint64_t want_cols = k == FM_EXPERT_DOWN ? n_ff_exp : n_embd;
            if (!p) {
                r = fm_error_set(e, FM_E_NOTFOUND, "%s: expert layer %u has no part \"%s\"", path, il, parts[k]);
                goto fail;
            }
            uint64_t rb, total;
            if (p->n_dims != 2 || p->shape[0] != want_rows || p->shape[1] != want_cols) {
                r = fm_error_set(e, FM_E_FORMAT,
                                 "%s: expert layer %u part %s: shape expected [%llu, %llu], found [%llu, %llu] (%u dims)",
                                 path, il, parts[k], U64(want_rows), U64(want_cols), U64(p->shape[0]),
                                 U64(p->n_dims > 1 ? p->shape[1] : 0), p->n_dims);
                goto fail;
            }
            if ((r = fm_qtype_nbytes(p->qtype, p->shape[1], &rb, e))) {
                fm_error_prefix(e, "%s: expert layer %u part %s", path, il, parts[k]);
                goto fail;
            }
            if (!fm_mul_u64(rb, p->shape[0], &total) || total != p->size ||
                !fm_range_ok(p->offset, p->size, l->blob_size)) {
                r = fm_error_set(e, FM_E_FORMAT, "%s: expert layer %u part %s: size %llu does not match",
                                 path, il, parts[k], U64(p->size));
                goto fail;
            }
            set_mat(&L->mats[k], p->qtype, p->shape[0], p->shape[1], rb);
            L->mat_off[k] = p->offset;
        }
        for (uint32_t ex = 0; ex < l->n_expert; ex++) {
            fm_expert_piece *p = c->pieces + ((uint64_t)il * c->n_expert + ex) * FM_EXPERT_MAX_PIECES;
            if (!fm_range_ok(l->blobs[ex].offset, l->blob_size, fm_bundle_file_size(b))) {
                r = fm_error_set(e, FM_E_FORMAT, "%s: expert %u/%u lies beyond the end of the file", path, il, ex);
                goto fail;
            }
            p->file_off = l->blobs[ex].offset;
            p->size = l->blob_size;
            p->blob_off = 0;
            memcpy(sha[(uint64_t)il * c->n_expert + ex], l->blobs[ex].sha256, 32);
        }
        if (l->blob_size > c->max_blob_size) c->max_blob_size = l->blob_size;
    }
    *out = c;
    return FM_OK;
fail:
    fm_expert_catalog_free(c);
    return r;
}

static fm_err pread_full(int fd, void *buf, uint64_t n, uint64_t off, const char *path, fm_error *e)
{
    uint8_t *p = buf;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t k = pread(fd, p, chunk, (off_t)off);
        if (k < 0) {
            if (errno == EINTR) continue;
            return fm_error_set(e, FM_E_IO, "%s: pread at %llu: %s", path, U64(off), strerror(errno));
        }
        if (k == 0) return fm_error_set(e, FM_E_FORMAT, "%s: truncated at %llu", path, U64(off));
        p += k;
        n -= (uint64_t)k;
        off += (uint64_t)k;
    }
    return FM_OK;
}

fm_err fm_expert_catalog_read(const fm_expert_catalog *c, uint32_t layer, uint32_t expert, void *blob,
                              bool verify, fm_error *e)
{
    if (layer >= c->n_layer || !c->layers[layer].present || expert >= c->layers[layer].n_expert)
        return fm_error_set(e, FM_E_ARG, "%s: no expert %u in layer %u", c->path, expert, layer);
    const fm_expert_layer_desc *L = &c->layers[layer];
    const fm_expert_piece *p = fm_expert_catalog_pieces(c, layer, expert);
    for (uint32_t i = 0; i < L->n_pieces; i++) {
        fm_err r = pread_full(c->fd, (uint8_t *)blob + p[i].blob_off, p[i].size, p[i].file_off, c->path, e);
        if (r) return fm_error_prefix(e, "expert %u/%u", layer, expert);
    }
    if (verify) {
        const uint8_t *at[FM_EXPERT_MAX_PIECES];
        for (uint32_t i = 0; i < L->n_pieces; i++) at[i] = (const uint8_t *)blob + p[i].blob_off;
        return fm_expert_catalog_verify(c, layer, expert, at, e);
    }
    return FM_OK;
}

static void digest_mismatch(const fm_expert_catalog *c, uint32_t layer, uint32_t expert, const char *what,
                            const uint8_t *want, const uint8_t *got, fm_error *e)
{
    char hw[65], hg[65];
    fm_sha256_hex(want, hw);
    fm_sha256_hex(got, hg);
    if (what) fm_error_set(e, FM_E_CHECKSUM, "%s: %s: SHA-256 mismatch: manifest %s, data %s", c->path, what, hw, hg);
    else
        fm_error_set(e, FM_E_CHECKSUM, "%s: blk.%u expert %u: SHA-256 mismatch: manifest %s, data %s", c->path, layer,
                     expert, hw, hg);
}

fm_err fm_expert_catalog_verify(const fm_expert_catalog *c, uint32_t layer, uint32_t expert,
                                const uint8_t *const *piece, fm_error *e)
{
    const fm_expert_layer_desc *L = &c->layers[layer];
    const fm_expert_piece *p = fm_expert_catalog_pieces(c, layer, expert);
    uint8_t d[32];
    fm_err r;
    if (c->piece_sha256) {
        const uint8_t(*want)[32] = c->piece_sha256 + ((uint64_t)layer * c->n_expert + expert) * FM_EXPERT_MAX_PIECES;
        for (uint32_t j = 0; j < L->n_pieces; j++) {
            if ((r = fm_sha256_buf(piece[j], (size_t)p[j].size, d, e))) return r;
            if (memcmp(d, want[j], 32) != 0) {
                /* name the matrix that lives in this piece */
                const char *what = NULL;
                for (uint32_t k = 0; k < L->n_mats && !what; k++)
                    if (L->mat_off[k] >= p[j].blob_off && L->mat_off[k] - p[j].blob_off < p[j].size) what = L->mat_name[k];
                digest_mismatch(c, layer, expert, what, want[j], d, e);
                return FM_E_CHECKSUM;
            }
        }
        return FM_OK;
    }
    if (!c->sha256) return FM_OK;
    static const uint8_t zeros[256];
    fm_sha256 h;
    if ((r = fm_sha256_init(&h, e))) return r;
    uint64_t pos = 0;
    for (uint32_t j = 0; j <= L->n_pieces; j++) {
        uint64_t upto = j < L->n_pieces ? p[j].blob_off : L->blob_size;
        while (pos < upto) {
            uint64_t n = upto - pos < sizeof zeros ? upto - pos : sizeof zeros;
            fm_sha256_update(&h, zeros, (size_t)n);
            pos += n;
        }
        if (j == L->n_pieces) break;
        fm_sha256_update(&h, piece[j], (size_t)p[j].size);
        pos += p[j].size;
    }
    fm_sha256_final(&h, d);
    const uint8_t *want = c->sha256[(uint64_t)layer * c->n_expert + expert];
    if (memcmp(d, want, 32) != 0) {
        digest_mismatch(c, layer, expert, NULL, want, d, e);
        return FM_E_CHECKSUM;
    }
    return FM_OK;
}

void fm_expert_catalog_view(const fm_expert_catalog *c, uint32_t layer, const void *blob, fm_expert *out)
{
    const fm_expert_layer_desc *L = &c->layers[layer];
    for (uint32_t k = 0; k < L->n_mats; k++) {
        out->m[k] = L->mats[k];
        out->m[k].data = (const uint8_t *)blob + L->mat_off[k];
    }
}

/* ------------------------------------------------------------ interface */

fm_err fm_experts_wrap(const fm_experts_ops *ops, void *impl, const fm_expert_catalog *c,
                       uint32_t n_pinned_max, fm_experts **out, fm_error *e)
{
    fm_experts *x = calloc(1, sizeof *x);
    if (!x) {
        ops->free(impl);
        return fm_error_set(e, FM_E_NOMEM, "experts: out of memory");
    }
    x->ops = ops;
    x->impl = impl;
    x->catalog = c;
    x->n_pinned_max = n_pinned_max ? n_pinned_max : 1;
    *out = x;
    return FM_OK;
}

fm_err fm_experts_acquire(fm_experts *x, uint32_t layer, const uint32_t *ids, uint32_t n, fm_expert *out,
                          fm_error *e)
{
    if (n == 0) return FM_OK;
    if (n > x->n_pinned_max)
        return fm_error_set(e, FM_E_ARG, "experts: %u experts asked at once, source holds %u", n,
                            x->n_pinned_max);
    const fm_expert_catalog *c = x->catalog;
    if (layer >= c->n_layer || !c->layers[layer].present)
        return fm_error_set(e, FM_E_ARG, "experts: layer %u has no experts", layer);
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] >= c->layers[layer].n_expert)
            return fm_error_set(e, FM_E_ARG, "experts: expert %u >= %u in layer %u", ids[i],
                                c->layers[layer].n_expert, layer);
    return x->ops->acquire(x->impl, layer, ids, n, out, e);
}

void fm_experts_release(fm_experts *x, uint32_t layer, const uint32_t *ids, uint32_t n)
{
    if (n) x->ops->release(x->impl, layer, ids, n);
}

void fm_experts_prefetch(fm_experts *x, uint32_t layer, const uint32_t *ids, uint32_t n)
{
    if (n && x->ops->prefetch) x->ops->prefetch(x->impl, layer, ids, n);
}

void fm_experts_get_stats(const fm_experts *x, fm_experts_stats *out)
{
    memset(out, 0, sizeof *out);
    if (x->ops->stats) x->ops->stats(x->impl, out);
}

void fm_experts_free(fm_experts *x)
{
    if (!x) return;
    x->ops->free(x->impl);
    free(x);
}

/* -------------------------------------------------------- simple source */

typedef struct slot {
    int64_t key;       /* layer * n_expert + expert, -1 when empty */
    uint32_t pins;
    uint64_t size;     /* allocated bytes */
    void *buf;
    uint32_t index;    /* in simple.slots */
    struct slot *prev, *next; /* LRU list of unpinned, filled slots (head = oldest) */
} slot;

typedef struct simple {
    const fm_expert_catalog *c;
    fm_experts_simple_opts o;
    int32_t *where;    /* [layer * n_expert + expert] -> slot index or -1 */
    slot **slots;
    uint32_t n_slots, cap_slots;
    slot *lru_head, *lru_tail;
    uint64_t held;
    fm_experts_stats st;
} simple;

static void lru_unlink(simple *s, slot *x)
{
    if (x->prev) x->prev->next = x->next;
    else if (s->lru_head == x) s->lru_head = x->next;
    if (x->next) x->next->prev = x->prev;
    else if (s->lru_tail == x) s->lru_tail = x->prev;
    x->prev = x->next = NULL;
}

static void lru_push(simple *s, slot *x)
{
    x->prev = s->lru_tail;
    x->next = NULL;
    if (s->lru_tail) s->lru_tail->next = x;
    else s->lru_head = x;
    s->lru_tail = x;
}

static bool in_lru(simple *s, slot *x) { return x->prev || x->next || s->lru_head == x; }

static void simple_release(void *impl, uint32_t layer, const uint32_t *ids, uint32_t n)
{
    simple *s = impl;
    for (uint32_t i = 0; i < n; i++) {
        int32_t w = s->where[(uint64_t)layer * s->c->n_expert + ids[i]];
        if (w < 0) continue;
        slot *x = s->slots[w];
        if (x->pins && --x->pins == 0) lru_push(s, x);
    }
}

/* A slot with at least `need` bytes for a new expert: a new one within
 * budget, or the least recently used unpinned one. */
static slot *simple_get_slot(simple *s, uint64_t need, fm_error *e)
{
    bool budget_ok = s->o.cache_bytes == 0 || s->held + need <= s->o.cache_bytes;
    if (!budget_ok && s->lru_head == NULL) budget_ok = true; /* all pinned: allowed up to n_pinned_max */
    slot *x = NULL;
    if (!budget_ok) {
        x = s->lru_head; /* evict */
        lru_unlink(s, x);
        if (x->key >= 0) s->where[x->key] = -1;
        x->key = -1;
    } else {
        if (s->n_slots == s->cap_slots) {
            uint32_t nc = s->cap_slots ? 2 * s->cap_slots : 16;
            slot **ns = realloc(s->slots, nc * sizeof *ns);
            if (!ns) {
                fm_error_set(e, FM_E_NOMEM, "experts: out of memory");
                return NULL;
            }
            s->slots = ns;
            s->cap_slots = nc;
        }
        x = calloc(1, sizeof *x);
        if (!x) {
            fm_error_set(e, FM_E_NOMEM, "experts: out of memory");
            return NULL;
        }
        x->key = -1;
        x->index = s->n_slots;
        s->slots[s->n_slots++] = x;
    }
    if (x->size < need) {
        free(x->buf);
        s->held -= x->size;
        x->size = 0;
        uint64_t sz;
        if (!fm_align_up(need, 64, &sz) || !(x->buf = aligned_alloc(64, (size_t)sz))) {
            lru_push(s, x);
            fm_error_set(e, FM_E_NOMEM, "experts: cannot allocate %llu bytes for an expert", U64(need));
            return NULL;
        }
        x->size = sz;
        s->held += sz;
    }
    return x;
}

static fm_err simple_acquire(void *impl, uint32_t layer, const uint32_t *ids, uint32_t n, fm_expert *out,
                             fm_error *e)
{
    simple *s = impl;
    const fm_expert_catalog *c = s->c;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t key = (uint64_t)layer * c->n_expert + ids[i];
        int32_t w = s->where[key];
        slot *x;
        s->st.acquired++;
        if (w >= 0) {
            x = s->slots[w];
            s->st.hits++;
            if (x->pins == 0 && in_lru(s, x)) lru_unlink(s, x);
        } else {
            fm_error tmp;
            fm_error *ee = e ? e : &tmp;
            x = simple_get_slot(s, c->layers[layer].blob_size, ee);
            if (!x) {
                simple_release(s, layer, ids, i); /* nothing stays acquired */
                return ee->code;
            }
            double t0 = now_s();
            fm_err r = fm_expert_catalog_read(c, layer, ids[i], x->buf, s->o.verify, ee);
            s->st.read_seconds += now_s() - t0;
            if (r) {
                x->key = -1;
                lru_push(s, x); /* empty slot, reusable */
                simple_release(s, layer, ids, i);
                return r;
            }
            s->st.misses++;
            s->st.bytes_read += c->layers[layer].blob_size;
            x->key = (int64_t)key;
            s->where[key] = (int32_t)x->index;
        }
        x->pins++;
        fm_expert_catalog_view(c, layer, x->buf, &out[i]);
    }
    return FM_OK;
}

static void simple_stats(void *impl, fm_experts_stats *out)
{
    simple *s = impl;
    *out = s->st;
    out->cache_bytes = s->held;
}

static void simple_free(void *impl)
{
    simple *s = impl;
    if (!s) return;
    for (uint32_t i = 0; i < s->n_slots; i++) {
        free(s->slots[i]->buf);
        free(s->slots[i]);
    }
    free(s->slots);
    free(s->where);
    free(s);
}

static const fm_experts_ops simple_ops = {
    "simple", simple_acquire, simple_release, NULL, simple_stats, simple_free,
};

fm_err fm_experts_open_simple(const fm_expert_catalog *c, const fm_experts_simple_opts *opts,
                              fm_experts **out, fm_error *e)
{
    simple *s = calloc(1, sizeof *s);
    if (!s) return fm_error_set(e, FM_E_NOMEM, "experts: out of memory");
    s->c = c;
    if (opts) s->o = *opts;
    if (s->o.n_pinned_max == 0) s->o.n_pinned_max = 1;
    uint64_t nk = (uint64_t)c->n_layer * (c->n_expert ? c->n_expert : 1);
    s->where = malloc((size_t)nk * sizeof *s->where);
    if (!s->where) {
        simple_free(s);
        return fm_error_set(e, FM_E_NOMEM, "experts: out of memory");
    }
    for (uint64_t i = 0; i < nk; i++) s->where[i] = -1;
    return fm_experts_wrap(&simple_ops, s, c, s->o.n_pinned_max, out, e);
}
