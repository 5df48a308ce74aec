/* fm bundle writer: see pack/writer.h and specs/bundle.md. */
#include "pack/writer.h"
#include "formats/quant.h"
#include "formats/sha256.h"
#include "formats/util.h"
#include "pack/sign.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define U64(x) ((unsigned long long)(x))
#define MTIME_MAX 077777777777ull /* fits the 11-digit ustar field: no pax header */

enum { W_READY, W_STREAM, W_FINISHED, W_FAILED };
enum { S_TENSOR, S_OTHER };

typedef struct wtensor {
    char *name;
    uint32_t qtype, n_dims;
    uint64_t shape[FM_BUNDLE_MAX_DIMS];
    uint64_t offset, size;
    uint8_t sha[32];
    json_t *error;
} wtensor;

typedef struct wpart {
    char *name;
    uint32_t qtype, n_dims;
    uint64_t shape[FM_BUNDLE_MAX_DIMS];
    uint64_t offset, size;
    json_t *error;
} wpart;

typedef struct wlayer {
    uint32_t layer, n_expert, n_parts, next;
    wpart parts[FM_BUNDLE_MAX_PARTS];
    uint64_t blob_size;
    fm_bundle_blob *blobs;
} wlayer;

struct fm_bundle_writer {
    fm_outfile out;
    struct archive *a;
    struct archive_entry *entry;
    fm_error cb_err;
    bool cb_failed, cb_abort;
    uint32_t align;
    uint64_t mtime;
    char *sign_key;
    bool manifest_zstd;
    int zlevel;
    fm_err (*hook)(void *, char **, size_t *, fm_error *);
    void *hook_ctx;
    json_t *arch, *prov;
    wtensor *t;
    size_t nt, ct;
    uint32_t *ht; /* open-addressing table of tensor index + 1 */
    size_t ht_cap;
    wlayer *L;
    size_t nl, cl;
    uint64_t n_blobs;
    bool has_tok;
    uint64_t tok_off, tok_size, tok_raw;
    uint8_t tok_sha[32];
    int state;
    uint64_t remaining; /* bytes left in the open member */
    fm_sha256 sh;
    bool sh_on;
};

static const uint8_t zeros[65536];

void fm_bundle_writer_opts_init(fm_bundle_writer_opts *o)
{
    memset(o, 0, sizeof *o);
    o->alignment = FM_BUNDLE_DEFAULT_ALIGN;
    const char *s = getenv("SOURCE_DATE_EPOCH");
    if (s && *s) {
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (*end == '\0' && s[0] >= '0' && s[0] <= '9' && v <= MTIME_MAX) o->mtime = v;
    }
}

static fm_err fail(fm_bundle_writer *w, fm_err rc)
{
    if (rc != FM_OK) w->state = W_FAILED;
    return rc;
}

static fm_err usable(fm_bundle_writer *w, int want, fm_error *e)
{
    if (w->state == W_FAILED)
        return fm_error_set(e, FM_E_ARG, "%s: writer is in a failed state after an earlier error",
                            w->out.path ? w->out.path : "bundle");
    if (w->state == W_FINISHED) return fm_error_set(e, FM_E_ARG, "bundle writer already finished");
    if (w->state != want)
        return fm_error_set(e, FM_E_ARG, want == W_READY ? "a streamed tensor is still open (call end_tensor)"
                                                         : "no streamed tensor is open");
    return FM_OK;
}

/* ---------------------------------------------------------------- libarchive glue */

static la_ssize_t out_cb(struct archive *a, void *cd, const void *buf, size_t n)
{
    (void)a;
    fm_bundle_writer *w = cd;
    if (w->cb_abort || w->cb_failed) return -1;
    if (fm_outfile_write(&w->out, buf, n, &w->cb_err) != FM_OK) {
        w->cb_failed = true;
        return -1;
    }
    return (la_ssize_t)n;
}

static fm_err arc_err(fm_bundle_writer *w, struct archive *a, const char *what, fm_error *e)
{
    if (w->cb_failed) {
        if (e) *e = w->cb_err;
        return w->cb_err.code;
    }
    return fm_error_set(e, FM_E_IO, "%s: libarchive: %s: %s", w->out.tmp_path, what,
                        archive_error_string(a) ? archive_error_string(a) : "unknown error");
}

static struct archive *new_archive(void)
{
    struct archive *a = archive_write_new();
    if (!a) return NULL;
    if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(a, 0) != ARCHIVE_OK) {
        archive_write_free(a);
        return NULL;
    }
    return a;
}

static void entry_set(struct archive_entry *en, const char *name, uint64_t size, uint64_t mtime)
{
    archive_entry_clear(en);
    archive_entry_set_pathname(en, name);
    archive_entry_set_size(en, (la_int64_t)size);
    archive_entry_set_filetype(en, AE_IFREG);
    archive_entry_set_perm(en, 0644);
    archive_entry_set_mtime(en, (time_t)mtime, 0);
}

typedef struct counter {
    uint64_t n;
    bool stop;
} counter;

static la_ssize_t count_cb(struct archive *a, void *cd, const void *buf, size_t n)
{
    (void)a;
    (void)buf;
    counter *c = cd;
    if (c->stop) return -1;
    c->n += n;
    return (la_ssize_t)n;
}

/* Bytes libarchive writes for this member's header(s): written into a scratch
 * archive that counts and discards (then fails, so that closing it does not
 * write the member's data as zeros). */
static fm_err header_size(fm_bundle_writer *w, const char *name, uint64_t size, uint64_t *out,
                          fm_error *e)
{
    counter c = {0, false};
    struct archive *a = new_archive();
    struct archive_entry *en = archive_entry_new();
    fm_err rc = FM_OK;
    if (!a || !en || archive_write_open2(a, &c, NULL, count_cb, NULL, NULL) != ARCHIVE_OK) {
        rc = fm_error_set(e, FM_E_NOMEM, "libarchive: cannot create a scratch archive");
    } else {
        entry_set(en, name, size, w->mtime);
        if (archive_write_header(a, en) != ARCHIVE_OK)
            rc = fm_error_set(e, FM_E_IO, "libarchive: member %s: %s", name, archive_error_string(a));
    }
    *out = c.n;
    c.stop = true;
    if (a) archive_write_free(a);
    if (en) archive_entry_free(en);
    if (rc == FM_OK && (c.n == 0 || c.n % 512))
        rc = fm_error_set(e, FM_E_INTERNAL, "libarchive wrote a %llu-byte header for %s", U64(c.n), name);
    return rc;
}

static fm_err raw_member_begin(fm_bundle_writer *w, const char *name, uint64_t size, fm_error *e)
{
    entry_set(w->entry, name, size, w->mtime);
    if (archive_write_header(w->a, w->entry) != ARCHIVE_OK) return arc_err(w, w->a, name, e);
    w->remaining = size;
    return FM_OK;
}

static fm_err member_data(fm_bundle_writer *w, const void *data, size_t n, fm_error *e)
{
    if (n > w->remaining)
        return fm_error_set(e, FM_E_ARG, "%llu bytes more than the member's declared size",
                            U64(n - w->remaining));
    const uint8_t *p = data;
    while (n > 0) {
        size_t k = n > (1u << 30) ? (1u << 30) : n;
        la_ssize_t r = archive_write_data(w->a, p, k);
        if (r <= 0) return arc_err(w, w->a, "write data", e);
        p += r;
        n -= (size_t)r;
        w->remaining -= (uint64_t)r;
    }
    return FM_OK;
}

static fm_err member_end(fm_bundle_writer *w, fm_error *e)
{
    if (w->remaining)
        return fm_error_set(e, FM_E_ARG, "member is %llu bytes short of its declared size",
                            U64(w->remaining));
    if (archive_write_finish_entry(w->a) != ARCHIVE_OK) return arc_err(w, w->a, "finish entry", e);
    return FM_OK;
}

/* Starts a member whose data must begin at a multiple of `align` (512 for
 * none), inserting an fm/pad member first when needed (B15). */
static fm_err member_begin(fm_bundle_writer *w, const char *name, uint64_t size, uint64_t align,
                           uint64_t *data_off, fm_error *e)
{
    fm_err rc;
    uint64_t hs = 0, want = 0;
    if (align > 512) {
        if ((rc = header_size(w, name, size, &hs, e))) return rc;
        uint64_t pos = w->out.pos;
        if ((pos + hs) % align) {
            uint64_t target;
            if (!fm_align_up(pos + 512 + hs, align, &target))
                return fm_error_set(e, FM_E_RANGE, "bundle offset overflow");
            uint64_t pad = target - hs - pos - 512;
            if ((rc = raw_member_begin(w, FM_BUNDLE_MEMBER_PAD, pad, e))) return rc;
            while (pad > 0) {
                size_t k = pad > sizeof zeros ? sizeof zeros : (size_t)pad;
                if ((rc = member_data(w, zeros, k, e))) return rc;
                pad -= k;
            }
            if ((rc = member_end(w, e))) return rc;
        }
        want = w->out.pos + hs;
    }
    if ((rc = raw_member_begin(w, name, size, e))) return rc;
    *data_off = w->out.pos;
    if ((align > 512 && *data_off != want) || *data_off % (align > 512 ? align : 512))
        return fm_error_set(e, FM_E_INTERNAL,
                            "member %s: data landed at %llu, expected %llu (alignment %llu)", name,
                            U64(*data_off), U64(want), U64(align));
    return FM_OK;
}

/* ---------------------------------------------------------------- new / free */

fm_err fm_bundle_writer_new(fm_bundle_writer **out, const char *path,
                            const fm_bundle_writer_opts *opts, fm_error *e)
{
    *out = NULL;
    fm_bundle_writer_opts def;
    if (!opts) {
        fm_bundle_writer_opts_init(&def);
        opts = &def;
    }
    uint32_t align = opts->alignment ? opts->alignment : FM_BUNDLE_DEFAULT_ALIGN;
    if (!fm_is_pow2(align) || align < FM_BUNDLE_MIN_ALIGN || align > FM_BUNDLE_MAX_ALIGN)
        return fm_error_set(e, FM_E_ARG, "alignment %u is not a power of two in %u..%u", align,
                            FM_BUNDLE_MIN_ALIGN, FM_BUNDLE_MAX_ALIGN);
    if (opts->mtime > MTIME_MAX)
        return fm_error_set(e, FM_E_ARG, "mtime %llu does not fit a ustar header", U64(opts->mtime));
    fm_err rc;
    if (opts->sign_key_pem && (rc = fm_sign_check_private_key(opts->sign_key_pem, e))) return rc;
    fm_bundle_writer *w = calloc(1, sizeof *w);
    if (!w) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    w->out.fd = -1;
    w->align = align;
    w->mtime = opts->mtime;
    w->manifest_zstd = opts->manifest_zstd;
    w->zlevel = opts->zstd_level ? opts->zstd_level : 9;
    w->hook = opts->manifest_hook;
    w->hook_ctx = opts->hook_ctx;
    if (opts->sign_key_pem && !(w->sign_key = strdup(opts->sign_key_pem))) {
        free(w);
        return fm_error_set(e, FM_E_NOMEM, "out of memory");
    }
    if ((rc = fm_outfile_open(&w->out, path, opts->force, e))) {
        free(w->sign_key);
        free(w);
        return rc;
    }
    w->a = new_archive();
    w->entry = archive_entry_new();
    if (!w->a || !w->entry) {
        fm_bundle_writer_free(w);
        return fm_error_set(e, FM_E_NOMEM, "libarchive: out of memory");
    }
    if (archive_write_open2(w->a, w, NULL, out_cb, NULL, NULL) != ARCHIVE_OK) {
        rc = arc_err(w, w->a, "open", e);
        fm_bundle_writer_free(w);
        return rc;
    }
    /* B2: member 0, the superblock placeholder; finish() pwrites the record. */
    uint64_t off;
    if ((rc = member_begin(w, FM_BUNDLE_MEMBER_SUPERBLOCK, FM_BUNDLE_SB_SIZE, 512, &off, e)) ||
        (off != FM_BUNDLE_SB_OFFSET &&
         (rc = fm_error_set(e, FM_E_INTERNAL, "superblock data landed at %llu", U64(off)))) ||
        (rc = member_data(w, zeros, FM_BUNDLE_SB_SIZE, e)) || (rc = member_end(w, e))) {
        fm_bundle_writer_free(w);
        return rc;
    }
    *out = w;
    return FM_OK;
}

void fm_bundle_writer_free(fm_bundle_writer *w)
{
    if (!w) return;
    w->cb_abort = true; /* closing must not write anything more */
    if (w->a) archive_write_free(w->a);
    if (w->entry) archive_entry_free(w->entry);
    if (w->state != W_FINISHED) fm_outfile_abort(&w->out);
    if (w->sh_on) fm_sha256_free(&w->sh);
    for (size_t i = 0; i < w->nt; i++) {
        free(w->t[i].name);
        json_decref(w->t[i].error);
    }
    free(w->t);
    free(w->ht);
    for (size_t i = 0; i < w->nl; i++) {
        for (uint32_t p = 0; p < w->L[i].n_parts; p++) {
            free(w->L[i].parts[p].name);
            json_decref(w->L[i].parts[p].error);
        }
        free(w->L[i].blobs);
    }
    free(w->L);
    json_decref(w->arch);
    json_decref(w->prov);
    free(w->sign_key);
    free(w);
}

uint64_t fm_bundle_writer_pos(const fm_bundle_writer *w) { return w->out.pos; }

/* ---------------------------------------------------------------- metadata */

fm_err fm_bundle_writer_set_arch(fm_bundle_writer *w, json_t *arch, fm_error *e)
{
    if (w->state == W_FAILED || w->state == W_FINISHED) return usable(w, W_READY, e);
    const json_t *n = json_object_get(arch, "name");
    if (!json_is_object(arch) || !json_is_string(n) || !json_string_value(n)[0])
        return fm_error_set(e, FM_E_ARG, "arch must be an object with a non-empty \"name\" string");
    json_incref(arch);
    json_decref(w->arch);
    w->arch = arch;
    return FM_OK;
}

fm_err fm_bundle_writer_set_provenance(fm_bundle_writer *w, json_t *prov, fm_error *e)
{
    if (w->state == W_FAILED || w->state == W_FINISHED) return usable(w, W_READY, e);
    if (!json_is_object(prov)) return fm_error_set(e, FM_E_ARG, "provenance must be a JSON object");
    json_incref(prov);
    json_decref(w->prov);
    w->prov = prov;
    return FM_OK;
}

fm_err fm_bundle_writer_add_tokenizer(fm_bundle_writer *w, const void *json, size_t len, fm_error *e)
{
    fm_err rc = usable(w, W_READY, e);
    if (rc) return rc;
    if (w->has_tok) return fm_error_set(e, FM_E_ARG, "tokenizer already added");
    if (len > FM_BUNDLE_TOKENIZER_CAP)
        return fm_error_set(e, FM_E_RANGE, "tokenizer JSON of %zu bytes exceeds the cap of %u", len,
                            FM_BUNDLE_TOKENIZER_CAP);
    size_t cap = ZSTD_compressBound(len);
    void *z = malloc(cap ? cap : 1);
    if (!z) return fm_error_set(e, FM_E_NOMEM, "out of memory compressing the tokenizer");
    size_t zn = ZSTD_compress(z, cap, json, len, w->zlevel);
    if (ZSTD_isError(zn)) {
        free(z);
        return fail(w, fm_error_set(e, FM_E_INTERNAL, "zstd: %s", ZSTD_getErrorName(zn)));
    }
    if (zn > FM_BUNDLE_TOKENIZER_CAP) {
        free(z);
        return fm_error_set(e, FM_E_RANGE, "compressed tokenizer exceeds the cap");
    }
    uint64_t off;
    if ((rc = fm_sha256_buf(z, zn, w->tok_sha, e)) ||
        (rc = member_begin(w, FM_BUNDLE_MEMBER_TOKENIZER, zn, 512, &off, e)) ||
        (rc = member_data(w, z, zn, e)) || (rc = member_end(w, e))) {
        free(z);
        return fail(w, rc);
    }
    free(z);
    w->has_tok = true;
    w->tok_off = off;
    w->tok_size = zn;
    w->tok_raw = len;
    return FM_OK;
}

/* ---------------------------------------------------------------- tensors */

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static wtensor *find_tensor(fm_bundle_writer *w, const char *name)
{
    if (!w->ht_cap) return NULL;
    for (size_t i = (size_t)name_hash(name) & (w->ht_cap - 1);; i = (i + 1) & (w->ht_cap - 1)) {
        if (!w->ht[i]) return NULL;
        if (strcmp(w->t[w->ht[i] - 1].name, name) == 0) return &w->t[w->ht[i] - 1];
    }
}

static bool ht_insert(fm_bundle_writer *w, uint32_t idx)
{
    if ((w->nt + 1) * 2 > w->ht_cap) {
        size_t nc = w->ht_cap ? w->ht_cap * 2 : 64;
        uint32_t *nh = calloc(nc, sizeof *nh);
        if (!nh) return false;
        for (size_t i = 0; i < w->ht_cap; i++) {
            if (!w->ht[i]) continue;
            size_t j = (size_t)name_hash(w->t[w->ht[i] - 1].name) & (nc - 1);
            while (nh[j]) j = (j + 1) & (nc - 1);
            nh[j] = w->ht[i];
        }
        free(w->ht);
        w->ht = nh;
        w->ht_cap = nc;
    }
    size_t j = (size_t)name_hash(w->t[idx].name) & (w->ht_cap - 1);
    while (w->ht[j]) j = (j + 1) & (w->ht_cap - 1);
    w->ht[j] = idx + 1;
    return true;
}

/* B11: type known, 1..4 positive dims, whole blocks per row; *bytes = size. */
static fm_err check_shape(const char *what, uint32_t qtype, uint32_t n_dims, const uint64_t *shape,
                          uint64_t *bytes, fm_error *e)
{
    const fm_qtype_traits *tr = fm_qtype_get(qtype);
    if (!tr) return fm_error_set(e, FM_E_UNSUPPORTED, "%s: unknown quant type id %u", what, qtype);
    if (n_dims < 1 || n_dims > FM_BUNDLE_MAX_DIMS)
        return fm_error_set(e, FM_E_ARG, "%s: %u dimensions (1..%d allowed)", what, n_dims, FM_BUNDLE_MAX_DIMS);
    uint64_t n = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        if (shape[i] < 1 || shape[i] > (uint64_t)INT64_MAX)
            return fm_error_set(e, FM_E_ARG, "%s: dimension %u is %llu", what, i, U64(shape[i]));
        if (!fm_mul_u64(n, shape[i], &n)) return fm_error_set(e, FM_E_RANGE, "%s: element count overflows", what);
    }
    if (shape[n_dims - 1] % tr->block_size)
        return fm_error_set(e, FM_E_ARG, "%s: row length %llu is not a multiple of the %s block size %u",
                            what, U64(shape[n_dims - 1]), tr->name, tr->block_size);
    fm_err rc = fm_qtype_nbytes(qtype, n, bytes, e);
    if (rc) return fm_error_prefix(e, "%s", what);
    if (*bytes > (uint64_t)INT64_MAX) return fm_error_set(e, FM_E_RANGE, "%s: too large", what);
    return FM_OK;
}

static fm_err tensor_begin(fm_bundle_writer *w, const fm_bundle_writer_tensor *d, uint64_t size,
                           fm_error *e)
{
    fm_err rc = usable(w, W_READY, e);
    if (rc) return rc;
    if (!fm_bundle_name_ok(d->name))
        return fm_error_set(e, FM_E_ARG,
                            "tensor name \"%.80s\" is invalid (1..255 printable ASCII, no '/', '\\', "
                            "not . or ..)",
                            d->name ? d->name : "(null)");
    if (find_tensor(w, d->name)) return fm_error_set(e, FM_E_ARG, "tensor %s added twice", d->name);
    if (w->nt >= FM_BUNDLE_MAX_TENSORS)
        return fm_error_set(e, FM_E_RANGE, "more than %u tensors", FM_BUNDLE_MAX_TENSORS);
    char what[300];
    snprintf(what, sizeof what, "tensor %s", d->name);
    uint64_t need;
    if ((rc = check_shape(what, d->qtype, d->n_dims, d->shape, &need, e))) return rc;
    if (need != size)
        return fm_error_set(e, FM_E_ARG, "tensor %s: %llu bytes given, its type and shape take %llu",
                            d->name, U64(size), U64(need));
    if (d->error && !json_is_object(d->error))
        return fm_error_set(e, FM_E_ARG, "tensor %s: error figures must be a JSON object", d->name);
    if (w->nt == w->ct) {
        size_t nc = w->ct ? w->ct * 2 : 64;
        wtensor *nt = realloc(w->t, nc * sizeof *nt);
        if (!nt) return fm_error_set(e, FM_E_NOMEM, "out of memory");
        w->t = nt;
        w->ct = nc;
    }
    wtensor *t = &w->t[w->nt];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(d->name))) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    if (!ht_insert(w, (uint32_t)w->nt)) {
        free(t->name);
        return fm_error_set(e, FM_E_NOMEM, "out of memory");
    }
    w->nt++;
    t->qtype = d->qtype;
    t->n_dims = d->n_dims;
    memcpy(t->shape, d->shape, sizeof t->shape);
    for (uint32_t i = d->n_dims; i < FM_BUNDLE_MAX_DIMS; i++) t->shape[i] = 0;
    t->size = size;
    if (d->error) t->error = json_incref(d->error);
    char member[300];
    fm_bundle_tensor_member(d->name, member, sizeof member);
    if ((rc = member_begin(w, member, size, w->align, &t->offset, e))) return fail(w, rc);
    if (d->has_sha256) {
        memcpy(t->sha, d->sha256, 32);
    } else {
        if ((rc = fm_sha256_init(&w->sh, e))) return fail(w, rc);
        w->sh_on = true;
    }
    w->state = W_STREAM;
    return FM_OK;
}

fm_err fm_bundle_writer_begin_tensor(fm_bundle_writer *w, const fm_bundle_writer_tensor *desc,
                                     uint64_t size, fm_error *e)
{
    return tensor_begin(w, desc, size, e);
}

fm_err fm_bundle_writer_write(fm_bundle_writer *w, const void *data, size_t n, fm_error *e)
{
    fm_err rc = usable(w, W_STREAM, e);
    if (rc) return rc;
    if (n > w->remaining)
        return fail(w, fm_error_set(e, FM_E_ARG, "tensor %s: %llu bytes more than its declared size",
                                    w->t[w->nt - 1].name, U64(n - w->remaining)));
    if (w->sh_on) fm_sha256_update(&w->sh, data, n);
    return fail(w, member_data(w, data, n, e));
}

fm_err fm_bundle_writer_end_tensor(fm_bundle_writer *w, fm_error *e)
{
    fm_err rc = usable(w, W_STREAM, e);
    if (rc) return rc;
    wtensor *t = &w->t[w->nt - 1];
    if (w->remaining)
        return fail(w, fm_error_set(e, FM_E_ARG, "tensor %s: %llu bytes short of its declared size",
                                    t->name, U64(w->remaining)));
    if ((rc = member_end(w, e))) return fail(w, rc);
    if (w->sh_on) {
        fm_sha256_final(&w->sh, t->sha);
        w->sh_on = false;
    }
    w->state = W_READY;
    return FM_OK;
}

fm_err fm_bundle_writer_add_tensor(fm_bundle_writer *w, const fm_bundle_writer_tensor *desc,
                                   const void *data, size_t size, fm_error *e)
{
    fm_err rc = tensor_begin(w, desc, size, e);
    if (!rc) rc = fm_bundle_writer_write(w, data, size, e);
    if (!rc) rc = fm_bundle_writer_end_tensor(w, e);
    return rc;
}

fm_err fm_bundle_writer_set_tensor_error(fm_bundle_writer *w, const char *name, json_t *error,
                                         fm_error *e)
{
    if (w->state == W_FAILED || w->state == W_FINISHED) return usable(w, W_READY, e);
    wtensor *t = find_tensor(w, name);
    if (!t) return fm_error_set(e, FM_E_NOTFOUND, "tensor %s was not added", name);
    if (error && !json_is_object(error))
        return fm_error_set(e, FM_E_ARG, "tensor %s: error figures must be a JSON object", name);
    json_decref(t->error);
    t->error = error ? json_incref(error) : NULL;
    return FM_OK;
}

/* ---------------------------------------------------------------- experts */

static wlayer *find_layer(fm_bundle_writer *w, uint32_t layer)
{
    for (size_t i = w->nl; i-- > 0;)
        if (w->L[i].layer == layer) return &w->L[i];
    return NULL;
}

fm_err fm_bundle_writer_begin_experts(fm_bundle_writer *w, uint32_t layer, uint32_t n_expert,
                                      uint32_t n_parts, const fm_bundle_writer_part *parts,
                                      fm_error *e)
{
    fm_err rc = usable(w, W_READY, e);
    if (rc) return rc;
    if (find_layer(w, layer)) return fm_error_set(e, FM_E_ARG, "blk.%u: experts declared twice", layer);
    if (w->nl >= FM_BUNDLE_MAX_LAYERS) return fm_error_set(e, FM_E_RANGE, "too many expert layers");
    if (n_expert < 1 || n_expert > FM_BUNDLE_MAX_EXPERTS)
        return fm_error_set(e, FM_E_ARG, "blk.%u: %u experts (1..%u allowed)", layer, n_expert,
                            FM_BUNDLE_MAX_EXPERTS);
    if (w->n_blobs + n_expert > FM_BUNDLE_MAX_BLOBS)
        return fm_error_set(e, FM_E_RANGE, "more than %u expert blobs", FM_BUNDLE_MAX_BLOBS);
    if (n_parts < 1 || n_parts > FM_BUNDLE_MAX_PARTS)
        return fm_error_set(e, FM_E_ARG, "blk.%u: %u parts (1..%d allowed)", layer, n_parts,
                            FM_BUNDLE_MAX_PARTS);
    wlayer L;
    memset(&L, 0, sizeof L);
    L.layer = layer;
    L.n_expert = n_expert;
    for (uint32_t p = 0; p < n_parts; p++) {
        const fm_bundle_writer_part *d = &parts[p];
        char what[320];
        snprintf(what, sizeof what, "blk.%u part %.255s", layer, d->name ? d->name : "(null)");
        if (!fm_bundle_name_ok(d->name)) rc = fm_error_set(e, FM_E_ARG, "%s: invalid part name", what);
        for (uint32_t q = 0; q < p && !rc; q++)
            if (strcmp(parts[q].name, d->name) == 0) rc = fm_error_set(e, FM_E_ARG, "%s: given twice", what);
        uint64_t bytes = 0;
        if (!rc) rc = check_shape(what, d->qtype, d->n_dims, d->shape, &bytes, e);
        if (!rc && d->error && !json_is_object(d->error))
            rc = fm_error_set(e, FM_E_ARG, "%s: error figures must be a JSON object", what);
        if (!rc && !fm_add_u64(L.blob_size, bytes, &L.blob_size))
            rc = fm_error_set(e, FM_E_RANGE, "%s: blob size overflows", what);
        if (!rc && !(L.parts[p].name = strdup(d->name))) rc = fm_error_set(e, FM_E_NOMEM, "out of memory");
        if (rc) {
            for (uint32_t q = 0; q < p; q++) {
                free(L.parts[q].name);
                json_decref(L.parts[q].error);
            }
            return rc;
        }
        L.n_parts = p + 1;
        L.parts[p].qtype = d->qtype;
        L.parts[p].n_dims = d->n_dims;
        for (uint32_t i = 0; i < d->n_dims; i++) L.parts[p].shape[i] = d->shape[i];
        L.parts[p].offset = L.blob_size - bytes;
        L.parts[p].size = bytes;
        L.parts[p].error = d->error ? json_incref(d->error) : NULL;
    }
    L.blobs = calloc(n_expert, sizeof *L.blobs);
    if (w->nl == w->cl) {
        size_t nc = w->cl ? w->cl * 2 : 16;
        wlayer *nl = realloc(w->L, nc * sizeof *nl);
        if (nl) {
            w->L = nl;
            w->cl = nc;
        }
    }
    if (!L.blobs || w->nl == w->cl) {
        free(L.blobs);
        for (uint32_t q = 0; q < L.n_parts; q++) {
            free(L.parts[q].name);
            json_decref(L.parts[q].error);
        }
        return fm_error_set(e, FM_E_NOMEM, "out of memory");
    }
    w->L[w->nl++] = L;
    w->n_blobs += n_expert;
    return FM_OK;
}

static fm_err expert_begin(fm_bundle_writer *w, uint32_t layer, uint32_t expert, uint64_t size,
                           wlayer **out, fm_error *e)
{
    fm_err rc = usable(w, W_READY, e);
    if (rc) return rc;
    wlayer *L = find_layer(w, layer);
    if (!L) return fm_error_set(e, FM_E_ARG, "blk.%u: experts not declared (begin_experts)", layer);
    if (expert != L->next)
        return fm_error_set(e, FM_E_ARG, "blk.%u: expert %u given, expected expert %u (in order)",
                            layer, expert, L->next);
    if (size != L->blob_size)
        return fm_error_set(e, FM_E_ARG, "blk.%u expert %u: %llu bytes, the layer's blob is %llu",
                            layer, expert, U64(size), U64(L->blob_size));
    char member[64];
    fm_bundle_expert_member(layer, expert, member, sizeof member);
    if ((rc = member_begin(w, member, size, w->align, &L->blobs[expert].offset, e))) return fail(w, rc);
    L->blobs[expert].size = size;
    *out = L;
    return FM_OK;
}

fm_err fm_bundle_writer_add_expert(fm_bundle_writer *w, uint32_t layer, uint32_t expert,
                                   const void *blob, size_t size, const uint8_t *sha, fm_error *e)
{
    wlayer *L;
    fm_err rc = expert_begin(w, layer, expert, size, &L, e);
    if (rc) return rc;
    if (sha) memcpy(L->blobs[expert].sha256, sha, 32);
    else if ((rc = fm_sha256_buf(blob, size, L->blobs[expert].sha256, e))) return fail(w, rc);
    if ((rc = member_data(w, blob, size, e)) || (rc = member_end(w, e))) return fail(w, rc);
    L->next++;
    return FM_OK;
}

fm_err fm_bundle_writer_add_expert_parts(fm_bundle_writer *w, uint32_t layer, uint32_t expert,
                                         const void *const *part_data, fm_error *e)
{
    wlayer *L = find_layer(w, layer);
    if (!L) return fm_error_set(e, FM_E_ARG, "blk.%u: experts not declared (begin_experts)", layer);
    fm_err rc = expert_begin(w, layer, expert, L->blob_size, &L, e);
    if (rc) return rc;
    fm_sha256 h;
    if ((rc = fm_sha256_init(&h, e))) return fail(w, rc);
    for (uint32_t p = 0; p < L->n_parts && !rc; p++) {
        fm_sha256_update(&h, part_data[p], (size_t)L->parts[p].size);
        rc = member_data(w, part_data[p], (size_t)L->parts[p].size, e);
    }
    fm_sha256_final(&h, L->blobs[expert].sha256);
    if (!rc) rc = member_end(w, e);
    if (rc) return fail(w, rc);
    L->next++;
    return FM_OK;
}

fm_err fm_bundle_writer_set_part_error(fm_bundle_writer *w, uint32_t layer, const char *part,
                                       json_t *error, fm_error *e)
{
    if (w->state == W_FAILED || w->state == W_FINISHED) return usable(w, W_READY, e);
    wlayer *L = find_layer(w, layer);
    if (!L) return fm_error_set(e, FM_E_NOTFOUND, "blk.%u has no experts", layer);
    if (error && !json_is_object(error))
        return fm_error_set(e, FM_E_ARG, "blk.%u part %s: error figures must be a JSON object", layer, part);
    for (uint32_t p = 0; p < L->n_parts; p++)
        if (strcmp(L->parts[p].name, part) == 0) {
            json_decref(L->parts[p].error);
            L->parts[p].error = error ? json_incref(error) : NULL;
            return FM_OK;
        }
    return fm_error_set(e, FM_E_NOTFOUND, "blk.%u has no part %s", layer, part);
}

/* ---------------------------------------------------------------- finish */

static json_t *shape_json(uint32_t n, const uint64_t *shape)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < n; i++) json_array_append_new(a, json_integer((json_int_t)shape[i]));
    return a;
}

static json_t *sha_json(const uint8_t d[32])
{
    char hex[65];
    fm_sha256_hex(d, hex);
    return json_string(hex);
}

static int layer_cmp(const void *x, const void *y)
{
    const wlayer *a = x, *b = y;
    return a->layer < b->layer ? -1 : a->layer > b->layer;
}

static json_t *build_manifest(fm_bundle_writer *w)
{
    json_t *m = json_object();
    json_object_set_new(m, "format", json_string("fm-bundle"));
    json_object_set_new(m, "version",
                        json_pack("{s:i,s:i}", "major", FM_BUNDLE_MAJOR, "minor", FM_BUNDLE_MINOR));
    json_object_set_new(m, "alignment", json_integer(w->align));
    json_object_set(m, "arch", w->arch);
    if (w->has_tok) {
        json_t *t = json_object();
        json_object_set_new(t, "member", json_string(FM_BUNDLE_MEMBER_TOKENIZER));
        json_object_set_new(t, "offset", json_integer((json_int_t)w->tok_off));
        json_object_set_new(t, "size", json_integer((json_int_t)w->tok_size));
        json_object_set_new(t, "raw_size", json_integer((json_int_t)w->tok_raw));
        json_object_set_new(t, "sha256", sha_json(w->tok_sha));
        json_object_set_new(t, "compression", json_string("zstd"));
        json_object_set_new(m, "tokenizer", t);
    }
    json_object_set_new(m, "provenance", w->prov ? json_incref(w->prov) : json_object());
    json_t *ts = json_array();
    for (size_t i = 0; i < w->nt; i++) {
        const wtensor *t = &w->t[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(t->name));
        json_object_set_new(o, "qtype", json_string(fm_qtype_get(t->qtype)->name));
        json_object_set_new(o, "shape", shape_json(t->n_dims, t->shape));
        json_object_set_new(o, "offset", json_integer((json_int_t)t->offset));
        json_object_set_new(o, "size", json_integer((json_int_t)t->size));
        json_object_set_new(o, "sha256", sha_json(t->sha));
        if (t->error) json_object_set(o, "error", t->error);
        json_array_append_new(ts, o);
    }
    json_object_set_new(m, "tensors", ts);
    if (w->nl) qsort(w->L, w->nl, sizeof *w->L, layer_cmp);
    json_t *xs = json_array();
    for (size_t i = 0; i < w->nl; i++) {
        const wlayer *L = &w->L[i];
        json_t *o = json_object(), *parts = json_array(), *blobs = json_array();
        json_object_set_new(o, "layer", json_integer(L->layer));
        json_object_set_new(o, "n_expert", json_integer(L->n_expert));
        for (uint32_t p = 0; p < L->n_parts; p++) {
            const wpart *P = &L->parts[p];
            json_t *po = json_object();
            json_object_set_new(po, "name", json_string(P->name));
            json_object_set_new(po, "qtype", json_string(fm_qtype_get(P->qtype)->name));
            json_object_set_new(po, "shape", shape_json(P->n_dims, P->shape));
            json_object_set_new(po, "offset", json_integer((json_int_t)P->offset));
            json_object_set_new(po, "size", json_integer((json_int_t)P->size));
            if (P->error) json_object_set(po, "error", P->error);
            json_array_append_new(parts, po);
        }
        json_object_set_new(o, "parts", parts);
        json_object_set_new(o, "blob_size", json_integer((json_int_t)L->blob_size));
        for (uint32_t x = 0; x < L->n_expert; x++) {
            json_t *bo = json_object();
            json_object_set_new(bo, "offset", json_integer((json_int_t)L->blobs[x].offset));
            json_object_set_new(bo, "size", json_integer((json_int_t)L->blobs[x].size));
            json_object_set_new(bo, "sha256", sha_json(L->blobs[x].sha256));
            json_array_append_new(blobs, bo);
        }
        json_object_set_new(o, "blobs", blobs);
        json_array_append_new(xs, o);
    }
    json_object_set_new(m, "experts", xs);
    return m;
}

fm_err fm_bundle_writer_finish(fm_bundle_writer *w, fm_error *e)
{
    fm_err rc = usable(w, W_READY, e);
    if (rc) return rc;
    if (!w->arch) return fm_error_set(e, FM_E_ARG, "bundle writer: arch not set (set_arch)");
    for (size_t i = 0; i < w->nl; i++)
        if (w->L[i].next != w->L[i].n_expert)
            return fm_error_set(e, FM_E_ARG, "blk.%u: %u of %u experts written", w->L[i].layer,
                                w->L[i].next, w->L[i].n_expert);
    json_t *m = build_manifest(w);
    char *text = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    if (!text) return fail(w, fm_error_set(e, FM_E_NOMEM, "out of memory serializing the manifest"));
    size_t len = strlen(text);
    if (w->hook) {
        char *orig = text;
        if ((rc = w->hook(w->hook_ctx, &text, &len, e))) {
            free(text);
            return fail(w, rc);
        }
        if (text != orig) free(orig);
    }
    if (len == 0 || len > FM_BUNDLE_MANIFEST_CAP) {
        free(text);
        return fail(w, fm_error_set(e, FM_E_RANGE, "manifest of %zu bytes exceeds the cap of %u", len,
                                    FM_BUNDLE_MANIFEST_CAP));
    }
    fm_bundle_superblock sb;
    memset(&sb, 0, sizeof sb);
    sb.major = FM_BUNDLE_MAJOR;
    sb.minor = FM_BUNDLE_MINOR;
    sb.alignment = w->align;
    sb.manifest_raw_size = len;
    char *stored = text;
    size_t slen = len;
    if (w->manifest_zstd) {
        size_t cap = ZSTD_compressBound(len);
        stored = malloc(cap);
        if (!stored) {
            free(text);
            return fail(w, fm_error_set(e, FM_E_NOMEM, "out of memory"));
        }
        slen = ZSTD_compress(stored, cap, text, len, w->zlevel);
        free(text);
        if (ZSTD_isError(slen)) {
            free(stored);
            return fail(w, fm_error_set(e, FM_E_INTERNAL, "zstd: %s", ZSTD_getErrorName(slen)));
        }
        sb.manifest_encoding = FM_BUNDLE_ENC_ZSTD;
    }
    sb.manifest_size = slen;
    uint8_t sig[FM_SIG_LEN];
    if ((rc = fm_sha256_buf(stored, slen, sb.manifest_sha256, e)) ||
        (rc = member_begin(w, w->manifest_zstd ? FM_BUNDLE_MEMBER_MANIFEST_ZST : FM_BUNDLE_MEMBER_MANIFEST,
                           slen, 512, &sb.manifest_offset, e)) ||
        (rc = member_data(w, stored, slen, e)) || (rc = member_end(w, e)) ||
        (w->sign_key && (rc = fm_sign_ed25519(w->sign_key, stored, slen, sig, e)))) {
        free(stored);
        return fail(w, rc);
    }
    free(stored);
    if (w->sign_key) {
        sb.signature_size = FM_SIG_LEN;
        if ((rc = fm_sha256_buf(sig, sizeof sig, sb.signature_sha256, e)) ||
            (rc = member_begin(w, FM_BUNDLE_MEMBER_SIG, FM_SIG_LEN, 512, &sb.signature_offset, e)) ||
            (rc = member_data(w, sig, FM_SIG_LEN, e)) || (rc = member_end(w, e)))
            return fail(w, rc);
    }
    if (archive_write_close(w->a) != ARCHIVE_OK) return fail(w, arc_err(w, w->a, "close", e));
    sb.file_size = w->out.pos;
    uint8_t rec[FM_BUNDLE_SB_SIZE];
    fm_bundle_superblock_encode(&sb, rec);
    if ((rc = fm_outfile_pwrite(&w->out, rec, sizeof rec, FM_BUNDLE_SB_OFFSET, e))) return fail(w, rc);
    if ((rc = fm_outfile_commit(&w->out, e))) return fail(w, rc);
    w->state = W_FINISHED;
    return FM_OK;
}
