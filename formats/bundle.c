/* fm bundle reader: superblock, manifest validation, lookups, reads.
 * Every rule checked here is numbered in specs/bundle.md (B1..B20). */
#define _GNU_SOURCE /* O_DIRECT */
#include "formats/bundle.h"
#include "formats/quant.h"
#include "formats/sha256.h"
#include "formats/util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define U64(x) ((unsigned long long)(x))

/* Superblock field offsets (B3). */
enum {
    SB_MAGIC = 0,
    SB_MAJOR = 8,
    SB_MINOR = 10,
    SB_ALIGN = 12,
    SB_MAN_OFF = 16,
    SB_MAN_SIZE = 24,
    SB_MAN_SHA = 32,
    SB_MAN_ENC = 64,
    SB_RESERVED0 = 68,
    SB_SIG_OFF = 72,
    SB_SIG_SIZE = 80,
    SB_MAN_RAW = 88,
    SB_FILE_SIZE = 96,
    SB_SIG_SHA = 104,
    SB_SELF_SHA = 4064
};

struct fm_bundle {
    fm_file f;
    int direct_fd;
    fm_bundle_superblock sb;
    json_t *manifest;
    const json_t *arch;
    const char *arch_name;
    fm_bundle_tensor *tensors;
    uint64_t n_tensors;
    uint32_t *by_name; /* tensor indices sorted by name */
    fm_bundle_expert_layer *layers;
    uint32_t n_layers;
    fm_bundle_blob *blobs; /* all layers' blobs, layer order */
    fm_bundle_info info;
};

/* ---------------------------------------------------------------- superblock */

void fm_bundle_superblock_encode(const fm_bundle_superblock *sb, uint8_t out[FM_BUNDLE_SB_SIZE])
{
    memset(out, 0, FM_BUNDLE_SB_SIZE);
    memcpy(out + SB_MAGIC, FM_BUNDLE_MAGIC, 8);
    fm_wr_u16le(out + SB_MAJOR, sb->major);
    fm_wr_u16le(out + SB_MINOR, sb->minor);
    fm_wr_u32le(out + SB_ALIGN, sb->alignment);
    fm_wr_u64le(out + SB_MAN_OFF, sb->manifest_offset);
    fm_wr_u64le(out + SB_MAN_SIZE, sb->manifest_size);
    memcpy(out + SB_MAN_SHA, sb->manifest_sha256, 32);
    fm_wr_u32le(out + SB_MAN_ENC, sb->manifest_encoding);
    fm_wr_u64le(out + SB_SIG_OFF, sb->signature_offset);
    fm_wr_u64le(out + SB_SIG_SIZE, sb->signature_size);
    fm_wr_u64le(out + SB_MAN_RAW, sb->manifest_raw_size);
    fm_wr_u64le(out + SB_FILE_SIZE, sb->file_size);
    memcpy(out + SB_SIG_SHA, sb->signature_sha256, 32);
    /* The SHA-256 over bytes 0..4063; fm_sha256_buf only fails on OOM, then
     * the zero digest makes the record invalid rather than silently valid. */
    if (fm_sha256_buf(out, SB_SELF_SHA, out + SB_SELF_SHA, NULL) != FM_OK)
        memset(out + SB_SELF_SHA, 0, 32);
}

fm_err fm_bundle_superblock_decode(const uint8_t in[FM_BUNDLE_SB_SIZE], fm_bundle_superblock *sb,
                                   fm_error *e)
{
    memset(sb, 0, sizeof *sb);
    if (memcmp(in + SB_MAGIC, FM_BUNDLE_MAGIC, 8) != 0)
        return fm_error_set(e, FM_E_FORMAT, "superblock: bad magic (expected \"FMBUNDLE\")");
    uint8_t d[32];
    fm_err rc = fm_sha256_buf(in, SB_SELF_SHA, d, e);
    if (rc) return rc;
    bool sha_ok = memcmp(d, in + SB_SELF_SHA, 32) == 0;
    sb->major = fm_rd_u16le(in + SB_MAJOR);
    sb->minor = fm_rd_u16le(in + SB_MINOR);
    if (sb->major != FM_BUNDLE_MAJOR) /* B4: magic and major are at fixed places in every major */
        return fm_error_set(e, FM_E_VERSION,
                            "bundle format version %u.%u: major version %u is not supported "
                            "(this reader reads major version %d, any minor)%s",
                            sb->major, sb->minor, sb->major, FM_BUNDLE_MAJOR,
                            sha_ok ? "" : "; the superblock checksum does not match either, "
                                          "so the file may be damaged");
    if (!sha_ok) return fm_error_set(e, FM_E_CHECKSUM, "superblock: sha256 mismatch");
    sb->alignment = fm_rd_u32le(in + SB_ALIGN);
    sb->manifest_offset = fm_rd_u64le(in + SB_MAN_OFF);
    sb->manifest_size = fm_rd_u64le(in + SB_MAN_SIZE);
    memcpy(sb->manifest_sha256, in + SB_MAN_SHA, 32);
    sb->manifest_encoding = fm_rd_u32le(in + SB_MAN_ENC);
    sb->signature_offset = fm_rd_u64le(in + SB_SIG_OFF);
    sb->signature_size = fm_rd_u64le(in + SB_SIG_SIZE);
    sb->manifest_raw_size = fm_rd_u64le(in + SB_MAN_RAW);
    sb->file_size = fm_rd_u64le(in + SB_FILE_SIZE);
    memcpy(sb->signature_sha256, in + SB_SIG_SHA, 32);
    return FM_OK;
}

/* ---------------------------------------------------------------- tar */

static bool octal_field(const uint8_t *p, size_t n, uint64_t *out)
{
    size_t i = 0, digits = 0;
    uint64_t v = 0;
    while (i < n && p[i] == ' ') i++;
    while (i < n && p[i] >= '0' && p[i] <= '7') {
        if (v >> 60) return false;
        v = v * 8 + (uint64_t)(p[i] - '0');
        i++;
        digits++;
    }
    if (digits == 0) return false;
    for (; i < n; i++)
        if (p[i] != ' ' && p[i] != '\0') return false;
    *out = v;
    return true;
}

fm_err fm_bundle_tar_parse(const uint8_t blk[512], fm_tar_header *h, fm_error *e)
{
    memset(h, 0, sizeof *h);
    /* B1: the checksum field is exactly six octal digits, NUL, space. */
    uint64_t stored = 0;
    for (int i = 0; i < 6; i++) {
        uint8_t c = blk[148 + i];
        if (c < '0' || c > '7')
            return fm_error_set(e, FM_E_FORMAT, "malformed checksum field (not a tar header?)");
        stored = stored * 8 + (uint64_t)(c - '0');
    }
    if (blk[154] != '\0' || blk[155] != ' ')
        return fm_error_set(e, FM_E_FORMAT, "malformed checksum field terminator");
    uint64_t sum = 0;
    for (int i = 0; i < 512; i++) sum += (i >= 148 && i < 156) ? ' ' : blk[i];
    if (sum != stored)
        return fm_error_set(e, FM_E_FORMAT, "checksum mismatch (stored %llo, computed %llo)",
                            U64(stored), U64(sum));
    if (memcmp(blk + 257, "ustar\0", 6) != 0 || memcmp(blk + 263, "00", 2) != 0)
        return fm_error_set(e, FM_E_FORMAT, "not a POSIX ustar header (magic/version)");
    if (!octal_field(blk + 124, 12, &h->size))
        return fm_error_set(e, FM_E_FORMAT, "malformed size field");
    if (!octal_field(blk + 136, 12, &h->mtime))
        return fm_error_set(e, FM_E_FORMAT, "malformed mtime field");
    h->typeflag = (char)blk[156];
    size_t pl = strnlen((const char *)blk + 345, 155), nl = strnlen((const char *)blk, 100);
    size_t k = 0;
    if (pl) {
        memcpy(h->name, blk + 345, pl);
        k = pl;
        h->name[k++] = '/';
    }
    memcpy(h->name + k, blk, nl);
    h->name[k + nl] = '\0';
    return FM_OK;
}

bool fm_bundle_name_ok(const char *name)
{
    if (!name) return false;
    size_t n = strlen(name);
    if (n == 0 || n > FM_BUNDLE_MAX_NAME) return false;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x21 || c > 0x7e || c == '/' || c == '\\') return false;
    }
    return true;
}

int fm_bundle_tensor_member(const char *tensor, char *buf, size_t n)
{
    return snprintf(buf, n, "t/%s", tensor);
}

int fm_bundle_expert_member(uint32_t layer, uint32_t expert, char *buf, size_t n)
{
    return snprintf(buf, n, "x/blk.%" PRIu32 "/%" PRIu32, layer, expert);
}

/* ---------------------------------------------------------------- JSON helpers */

typedef struct ctx {
    const char *path;
    char where[320]; /* "tensors[3] (blk.0.attn_q.weight)" */
    fm_error *e;
} ctx;

static fm_err bad(ctx *c, fm_err code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static fm_err bad(ctx *c, fm_err code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fm_error_set(c->e, code, "%s: manifest: %s%s%s", c->path, c->where,
                        c->where[0] ? ": " : "", msg);
}

static const char *jtype(const json_t *v)
{
    if (!v) return "missing";
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static fm_err get_u64(ctx *c, const json_t *o, const char *key, uint64_t *out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return bad(c, FM_E_FORMAT, "\"%s\" must be a non-negative integer, found %s", key, jtype(v));
    json_int_t x = json_integer_value(v);
    if (x < 0)
        return bad(c, FM_E_FORMAT, "\"%s\" must be a non-negative integer, found %lld", key,
                   (long long)x);
    *out = (uint64_t)x;
    return FM_OK;
}

static fm_err get_str(ctx *c, const json_t *o, const char *key, const char **out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) return bad(c, FM_E_FORMAT, "\"%s\" must be a string, found %s", key, jtype(v));
    *out = json_string_value(v);
    return FM_OK;
}

static fm_err get_sha(ctx *c, const json_t *o, const char *key, uint8_t out[32])
{
    const char *s;
    fm_err rc = get_str(c, o, key, &s);
    if (rc) return rc;
    if (!fm_sha256_from_hex(s, out))
        return bad(c, FM_E_FORMAT, "\"%s\" must be 64 hex digits, found \"%.80s\"", key, s);
    return FM_OK;
}

static fm_err get_error_obj(ctx *c, const json_t *o, const json_t **out)
{
    const json_t *v = json_object_get(o, "error");
    if (v && json_is_null(v)) v = NULL;
    if (v && !json_is_object(v))
        return bad(c, FM_E_FORMAT, "\"error\" must be an object, found %s", jtype(v));
    *out = v;
    return FM_OK;
}

/* B11: qtype name known, shape 1..4 positive dims, row length whole blocks,
 * size == bytes the shape needs. */
static fm_err get_typed_shape(ctx *c, const json_t *o, uint32_t *qtype, uint32_t *n_dims,
                              uint64_t shape[FM_BUNDLE_MAX_DIMS], uint64_t *n_elems,
                              uint64_t *size)
{
    const char *qn;
    fm_err rc = get_str(c, o, "qtype", &qn);
    if (rc) return rc;
    int q = fm_qtype_from_name(qn);
    const fm_qtype_traits *tr = q >= 0 ? fm_qtype_get((uint32_t)q) : NULL;
    if (!tr)
        return bad(c, FM_E_UNSUPPORTED, "quant scheme \"%.40s\" is not known to this reader", qn);
    *qtype = (uint32_t)q;
    const json_t *sh = json_object_get(o, "shape");
    if (!json_is_array(sh)) return bad(c, FM_E_FORMAT, "\"shape\" must be an array, found %s", jtype(sh));
    size_t nd = json_array_size(sh);
    if (nd < 1 || nd > FM_BUNDLE_MAX_DIMS)
        return bad(c, FM_E_FORMAT, "\"shape\" must have 1 to %d dimensions, found %zu",
                   FM_BUNDLE_MAX_DIMS, nd);
    uint64_t ne = 1;
    memset(shape, 0, sizeof(uint64_t) * FM_BUNDLE_MAX_DIMS);
    for (size_t i = 0; i < nd; i++) {
        const json_t *d = json_array_get(sh, i);
        if (!json_is_integer(d) || json_integer_value(d) < 1)
            return bad(c, FM_E_FORMAT, "\"shape\"[%zu] must be a positive integer", i);
        shape[i] = (uint64_t)json_integer_value(d);
        if (!fm_mul_u64(ne, shape[i], &ne))
            return bad(c, FM_E_RANGE, "\"shape\" element count overflows");
    }
    *n_dims = (uint32_t)nd;
    *n_elems = ne;
    if (shape[nd - 1] % tr->block_size != 0)
        return bad(c, FM_E_FORMAT, "row length %llu is not a multiple of the %s block size %u",
                   U64(shape[nd - 1]), tr->name, tr->block_size);
    uint64_t need;
    fm_error qe;
    if (fm_qtype_nbytes(*qtype, ne, &need, &qe) != FM_OK)
        return bad(c, qe.code == FM_E_RANGE ? FM_E_RANGE : FM_E_FORMAT, "%s", qe.msg);
    rc = get_u64(c, o, "size", size);
    if (rc) return rc;
    if (*size != need)
        return bad(c, FM_E_FORMAT, "\"size\" is %llu but %llu %s values take %llu bytes",
                   U64(*size), U64(ne), tr->name, U64(need));
    return FM_OK;
}

/* ---------------------------------------------------------------- ranges (B14) */

enum { R_SB, R_TOK, R_TENSOR, R_BLOB, R_MANIFEST, R_SIG };
typedef struct range {
    uint64_t off, size;
    int kind;
    uint32_t a, b; /* tensor index / (layer index, expert) */
} range;

static int range_cmp(const void *x, const void *y)
{
    const range *p = x, *q = y;
    return p->off < q->off ? -1 : p->off > q->off;
}

static void range_label(const fm_bundle *b, const range *r, char *buf, size_t n)
{
    switch (r->kind) {
    case R_SB: snprintf(buf, n, "the superblock"); break;
    case R_TOK: snprintf(buf, n, "the tokenizer"); break;
    case R_TENSOR: snprintf(buf, n, "tensor %s", b->tensors[r->a].name); break;
    case R_BLOB: snprintf(buf, n, "blk.%u expert %u", b->layers[r->a].layer, r->b); break;
    case R_MANIFEST: snprintf(buf, n, "the manifest"); break;
    default: snprintf(buf, n, "the signature"); break;
    }
}

static fm_err check_ranges(fm_bundle *b, fm_error *e)
{
    uint64_t n = 2 + b->n_tensors + b->info.n_blobs + (b->info.has_tokenizer ? 1 : 0) +
                 (b->sb.signature_size ? 1 : 0);
    range *r = malloc(n * sizeof *r);
    if (!r) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", b->f.path);
    uint64_t k = 0;
    r[k++] = (range){FM_BUNDLE_SB_OFFSET, FM_BUNDLE_SB_SIZE, R_SB, 0, 0};
    r[k++] = (range){b->sb.manifest_offset, b->sb.manifest_size, R_MANIFEST, 0, 0};
    if (b->sb.signature_size) r[k++] = (range){b->sb.signature_offset, b->sb.signature_size, R_SIG, 0, 0};
    if (b->info.has_tokenizer)
        r[k++] = (range){b->info.tokenizer_offset, b->info.tokenizer_size, R_TOK, 0, 0};
    for (uint64_t i = 0; i < b->n_tensors; i++)
        r[k++] = (range){b->tensors[i].offset, b->tensors[i].size, R_TENSOR, (uint32_t)i, 0};
    for (uint32_t l = 0; l < b->n_layers; l++)
        for (uint32_t x = 0; x < b->layers[l].n_expert; x++)
            r[k++] = (range){b->layers[l].blobs[x].offset, b->layers[l].blobs[x].size, R_BLOB, l, x};
    qsort(r, k, sizeof *r, range_cmp);
    fm_err rc = FM_OK;
    if (r[0].kind != R_SB) {
        char l0[300];
        range_label(b, &r[0], l0, sizeof l0);
        rc = fm_error_set(e, FM_E_FORMAT, "%s: manifest: %s at %llu lies before the superblock",
                          b->f.path, l0, U64(r[0].off));
        free(r);
        return rc;
    }
    /* The archive ends with two zero blocks after the last member's padding. */
    uint64_t limit = b->sb.file_size - 1024;
    for (uint64_t i = 0; i < k && rc == FM_OK; i++) {
        char l1[300], l2[300];
        uint64_t end;
        if (!fm_add_u64(r[i].off, r[i].size, &end) || !fm_align_up(end, 512, &end) || end > limit) {
            range_label(b, &r[i], l1, sizeof l1);
            rc = fm_error_set(e, FM_E_FORMAT,
                              "%s: manifest: %s at [%llu, +%llu) is not inside the archive "
                              "(members must end by %llu)",
                              b->f.path, l1, U64(r[i].off), U64(r[i].size), U64(limit));
            break;
        }
        if (i + 1 < k) {
            /* B14: the next member's header needs at least one block. */
            uint64_t need;
            if (!fm_add_u64(end, 512, &need) || r[i + 1].off < need) {
                range_label(b, &r[i], l1, sizeof l1);
                range_label(b, &r[i + 1], l2, sizeof l2);
                rc = fm_error_set(e, FM_E_FORMAT,
                                  "%s: manifest: %s at [%llu, +%llu) overlaps %s at %llu "
                                  "(or leaves no room for its tar header)",
                                  b->f.path, l2, U64(r[i + 1].off), U64(r[i + 1].size), l1,
                                  U64(r[i].off));
            }
        }
    }
    free(r);
    return rc;
}

/* ---------------------------------------------------------------- manifest */

static int name_cmp_ctx_sort(const void *x, const void *y, void *arg)
{
    const fm_bundle *b = arg;
    return strcmp(b->tensors[*(const uint32_t *)x].name, b->tensors[*(const uint32_t *)y].name);
}

/* qsort_r is a GNU/BSD extension with differing signatures; a small merge
 * sort keeps this portable. */
static void sort_names(fm_bundle *b, uint32_t *v, uint32_t *tmp, uint64_t n)
{
    if (n < 2) return;
    uint64_t h = n / 2;
    sort_names(b, v, tmp, h);
    sort_names(b, v + h, tmp, n - h);
    uint64_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = name_cmp_ctx_sort(&v[i], &v[j], b) <= 0 ? v[i++] : v[j++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}

static fm_err parse_tensors(fm_bundle *b, ctx *c, const json_t *arr)
{
    size_t n = json_array_size(arr);
    if (n > FM_BUNDLE_MAX_TENSORS)
        return bad(c, FM_E_RANGE, "%zu tensors exceed the cap of %u", n, FM_BUNDLE_MAX_TENSORS);
    b->tensors = calloc(n ? n : 1, sizeof *b->tensors);
    b->by_name = calloc(n ? n : 1, sizeof *b->by_name);
    if (!b->tensors || !b->by_name) return bad(c, FM_E_NOMEM, "out of memory");
    b->n_tensors = n;
    uint32_t align = b->sb.alignment;
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(arr, i);
        fm_bundle_tensor *t = &b->tensors[i];
        snprintf(c->where, sizeof c->where, "tensors[%zu]", i);
        if (!json_is_object(o)) return bad(c, FM_E_FORMAT, "must be an object, found %s", jtype(o));
        fm_err rc = get_str(c, o, "name", &t->name);
        if (rc) return rc;
        if (!fm_bundle_name_ok(t->name))
            return bad(c, FM_E_FORMAT,
                       "\"name\" \"%.80s\" is not a valid tensor name (1..255 printable ASCII, "
                       "no '/', '\\\\', not . or ..)",
                       t->name);
        snprintf(c->where, sizeof c->where, "tensors[%zu] (%s)", i, t->name);
        rc = get_typed_shape(c, o, &t->qtype, &t->n_dims, t->shape, &t->n_elems, &t->size);
        if (rc) return rc;
        rc = get_u64(c, o, "offset", &t->offset);
        if (rc) return rc;
        if (t->offset % align)
            return bad(c, FM_E_FORMAT, "\"offset\" %llu is not a multiple of the alignment %u",
                       U64(t->offset), align);
        rc = get_sha(c, o, "sha256", t->sha256);
        if (rc) return rc;
        rc = get_error_obj(c, o, &t->error);
        if (rc) return rc;
        b->by_name[i] = (uint32_t)i;
    }
    c->where[0] = '\0';
    uint32_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp) return bad(c, FM_E_NOMEM, "out of memory");
    sort_names(b, b->by_name, tmp, n);
    free(tmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(b->tensors[b->by_name[i - 1]].name, b->tensors[b->by_name[i]].name) == 0)
            return bad(c, FM_E_FORMAT, "tensor name \"%s\" appears twice (tensors[%u] and [%u])",
                       b->tensors[b->by_name[i]].name, b->by_name[i - 1], b->by_name[i]);
    return FM_OK;
}

static fm_err parse_experts(fm_bundle *b, ctx *c, const json_t *arr)
{
    size_t n = json_array_size(arr);
    if (n > FM_BUNDLE_MAX_LAYERS)
        return bad(c, FM_E_RANGE, "%zu expert layers exceed the cap of %u", n, FM_BUNDLE_MAX_LAYERS);
    b->layers = calloc(n ? n : 1, sizeof *b->layers);
    if (!b->layers) return bad(c, FM_E_NOMEM, "out of memory");
    /* First pass: count blobs to bound the allocation. */
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(arr, i);
        uint64_t ne;
        snprintf(c->where, sizeof c->where, "experts[%zu]", i);
        if (!json_is_object(o)) return bad(c, FM_E_FORMAT, "must be an object, found %s", jtype(o));
        fm_err rc = get_u64(c, o, "n_expert", &ne);
        if (rc) return rc;
        if (ne < 1 || ne > FM_BUNDLE_MAX_EXPERTS)
            return bad(c, FM_E_RANGE, "\"n_expert\" %llu is outside 1..%u", U64(ne), FM_BUNDLE_MAX_EXPERTS);
        total += ne;
        if (total > FM_BUNDLE_MAX_BLOBS)
            return bad(c, FM_E_RANGE, "more than %u expert blobs in all", FM_BUNDLE_MAX_BLOBS);
    }
    b->blobs = calloc(total ? total : 1, sizeof *b->blobs);
    if (!b->blobs) return bad(c, FM_E_NOMEM, "out of memory");
    b->info.n_blobs = total;
    uint64_t used = 0;
    uint32_t align = b->sb.alignment;
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(arr, i);
        fm_bundle_expert_layer *L = &b->layers[i];
        uint64_t v;
        snprintf(c->where, sizeof c->where, "experts[%zu]", i);
        fm_err rc = get_u64(c, o, "layer", &v);
        if (rc) return rc;
        if (v > UINT32_MAX) return bad(c, FM_E_RANGE, "\"layer\" %llu is too large", U64(v));
        L->layer = (uint32_t)v;
        snprintf(c->where, sizeof c->where, "experts[%zu] (blk.%u)", i, L->layer);
        if (i > 0 && L->layer <= b->layers[i - 1].layer)
            return bad(c, FM_E_FORMAT, "layers must be strictly increasing (blk.%u follows blk.%u)",
                       L->layer, b->layers[i - 1].layer);
        get_u64(c, o, "n_expert", &v); /* checked in the first pass */
        L->n_expert = (uint32_t)v;
        rc = get_u64(c, o, "blob_size", &L->blob_size);
        if (rc) return rc;
        if (L->blob_size == 0) return bad(c, FM_E_FORMAT, "\"blob_size\" must be positive");
        const json_t *parts = json_object_get(o, "parts");
        if (!json_is_array(parts))
            return bad(c, FM_E_FORMAT, "\"parts\" must be an array, found %s", jtype(parts));
        size_t np = json_array_size(parts);
        if (np < 1 || np > FM_BUNDLE_MAX_PARTS)
            return bad(c, FM_E_FORMAT, "\"parts\" must have 1 to %d entries, found %zu",
                       FM_BUNDLE_MAX_PARTS, np);
        L->n_parts = (uint32_t)np;
        uint64_t prev_end = 0;
        for (size_t p = 0; p < np; p++) {
            const json_t *po = json_array_get(parts, p);
            fm_bundle_part *P = &L->parts[p];
            snprintf(c->where, sizeof c->where, "experts[%zu] (blk.%u) parts[%zu]", i, L->layer, p);
            if (!json_is_object(po)) return bad(c, FM_E_FORMAT, "must be an object, found %s", jtype(po));
            rc = get_str(c, po, "name", &P->name);
            if (rc) return rc;
            if (!fm_bundle_name_ok(P->name))
                return bad(c, FM_E_FORMAT, "\"name\" \"%.80s\" is not a valid part name", P->name);
            for (size_t q = 0; q < p; q++)
                if (strcmp(L->parts[q].name, P->name) == 0)
                    return bad(c, FM_E_FORMAT, "part name \"%s\" appears twice", P->name);
            snprintf(c->where, sizeof c->where, "experts[%zu] (blk.%u) part %s", i, L->layer, P->name);
            rc = get_typed_shape(c, po, &P->qtype, &P->n_dims, P->shape, &P->n_elems, &P->size);
            if (rc) return rc;
            rc = get_u64(c, po, "offset", &P->offset);
            if (rc) return rc;
            if (P->offset < prev_end)
                return bad(c, FM_E_FORMAT,
                           "\"offset\" %llu overlaps the previous part (ends at %llu); parts are "
                           "stored in order",
                           U64(P->offset), U64(prev_end));
            if (!fm_range_ok(P->offset, P->size, L->blob_size))
                return bad(c, FM_E_FORMAT, "[%llu, +%llu) is outside the %llu-byte blob",
                           U64(P->offset), U64(P->size), U64(L->blob_size));
            prev_end = P->offset + P->size;
            rc = get_error_obj(c, po, &P->error);
            if (rc) return rc;
        }
        snprintf(c->where, sizeof c->where, "experts[%zu] (blk.%u)", i, L->layer);
        const json_t *blobs = json_object_get(o, "blobs");
        if (!json_is_array(blobs))
            return bad(c, FM_E_FORMAT, "\"blobs\" must be an array, found %s", jtype(blobs));
        if (json_array_size(blobs) != L->n_expert)
            return bad(c, FM_E_FORMAT, "\"blobs\" has %zu entries but \"n_expert\" is %u",
                       json_array_size(blobs), L->n_expert);
        L->blobs = b->blobs + used;
        used += L->n_expert;
        for (uint32_t x = 0; x < L->n_expert; x++) {
            const json_t *bo = json_array_get(blobs, x);
            fm_bundle_blob *B = &L->blobs[x];
            snprintf(c->where, sizeof c->where, "experts[%zu] (blk.%u) expert %u", i, L->layer, x);
            if (!json_is_object(bo)) return bad(c, FM_E_FORMAT, "must be an object, found %s", jtype(bo));
            rc = get_u64(c, bo, "offset", &B->offset);
            if (rc) return rc;
            rc = get_u64(c, bo, "size", &B->size);
            if (rc) return rc;
            if (B->size != L->blob_size)
                return bad(c, FM_E_FORMAT, "\"size\" %llu differs from the layer's \"blob_size\" %llu",
                           U64(B->size), U64(L->blob_size));
            if (B->offset % align)
                return bad(c, FM_E_FORMAT, "\"offset\" %llu is not a multiple of the alignment %u",
                           U64(B->offset), align);
            if (x > 0 && B->offset <= L->blobs[x - 1].offset)
                return bad(c, FM_E_FORMAT,
                           "\"offset\" %llu is not after expert %u's (%llu): experts are stored "
                           "in order",
                           U64(B->offset), x - 1, U64(L->blobs[x - 1].offset));
            rc = get_sha(c, bo, "sha256", B->sha256);
            if (rc) return rc;
        }
    }
    b->n_layers = (uint32_t)n;
    c->where[0] = '\0';
    return FM_OK;
}

static fm_err parse_tokenizer(fm_bundle *b, ctx *c, const json_t *o)
{
    snprintf(c->where, sizeof c->where, "tokenizer");
    if (!json_is_object(o)) return bad(c, FM_E_FORMAT, "must be an object or null, found %s", jtype(o));
    fm_err rc = get_str(c, o, "member", &b->info.tokenizer_member);
    if (rc) return rc;
    size_t ml = strlen(b->info.tokenizer_member);
    if (strncmp(b->info.tokenizer_member, "fm/", 3) != 0 || ml > 100 ||
        !fm_bundle_name_ok(b->info.tokenizer_member + 3))
        return bad(c, FM_E_FORMAT, "\"member\" \"%.80s\" must be fm/<name> (at most 100 bytes)",
                   b->info.tokenizer_member);
    const char *comp;
    if ((rc = get_str(c, o, "compression", &comp))) return rc;
    if (strcmp(comp, "zstd") == 0) b->info.tokenizer_compression = FM_BUNDLE_COMP_ZSTD;
    else if (strcmp(comp, "none") == 0) b->info.tokenizer_compression = FM_BUNDLE_COMP_NONE;
    else return bad(c, FM_E_UNSUPPORTED, "\"compression\" \"%.40s\" is not zstd or none", comp);
    if ((rc = get_u64(c, o, "offset", &b->info.tokenizer_offset))) return rc;
    if ((rc = get_u64(c, o, "size", &b->info.tokenizer_size))) return rc;
    if ((rc = get_u64(c, o, "raw_size", &b->info.tokenizer_raw_size))) return rc;
    if ((rc = get_sha(c, o, "sha256", b->info.tokenizer_sha256))) return rc;
    if (b->info.tokenizer_offset % 512)
        return bad(c, FM_E_FORMAT, "\"offset\" %llu is not a multiple of 512",
                   U64(b->info.tokenizer_offset));
    if (b->info.tokenizer_size == 0 || b->info.tokenizer_size > FM_BUNDLE_TOKENIZER_CAP ||
        b->info.tokenizer_raw_size > FM_BUNDLE_TOKENIZER_CAP)
        return bad(c, FM_E_RANGE, "sizes %llu / %llu must be 1..%u bytes",
                   U64(b->info.tokenizer_size), U64(b->info.tokenizer_raw_size),
                   FM_BUNDLE_TOKENIZER_CAP);
    if (b->info.tokenizer_compression == FM_BUNDLE_COMP_NONE &&
        b->info.tokenizer_raw_size != b->info.tokenizer_size)
        return bad(c, FM_E_FORMAT, "\"raw_size\" must equal \"size\" when uncompressed");
    b->info.has_tokenizer = true;
    c->where[0] = '\0';
    return FM_OK;
}

static fm_err parse_manifest(fm_bundle *b, const char *text, size_t len, fm_error *e)
{
    ctx c = {b->f.path, "", e};
    json_error_t je;
    /* B8: strict JSON, UTF-8, no duplicate keys (jansson also refuses \u0000). */
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return bad(&c, FM_E_FORMAT, "invalid JSON at line %d column %d: %s", je.line, je.column,
                   je.text);
    b->manifest = root;
    if (!json_is_object(root)) return bad(&c, FM_E_FORMAT, "must be a JSON object, found %s", jtype(root));
    const char *fmt;
    fm_err rc = get_str(&c, root, "format", &fmt);
    if (rc) return rc;
    if (strcmp(fmt, "fm-bundle") != 0)
        return bad(&c, FM_E_FORMAT, "\"format\" is \"%.40s\", expected \"fm-bundle\"", fmt);
    const json_t *ver = json_object_get(root, "version");
    if (!json_is_object(ver)) return bad(&c, FM_E_FORMAT, "\"version\" must be an object, found %s", jtype(ver));
    uint64_t major, minor;
    snprintf(c.where, sizeof c.where, "version");
    if ((rc = get_u64(&c, ver, "major", &major))) return rc;
    if ((rc = get_u64(&c, ver, "minor", &minor))) return rc;
    c.where[0] = '\0';
    if (major != FM_BUNDLE_MAJOR)
        return bad(&c, FM_E_VERSION,
                   "major version %llu is not supported (this reader reads major version %d)",
                   U64(major), FM_BUNDLE_MAJOR);
    if (major != b->sb.major || minor != b->sb.minor)
        return bad(&c, FM_E_FORMAT, "version %llu.%llu differs from the superblock's %u.%u",
                   U64(major), U64(minor), b->sb.major, b->sb.minor);
    uint64_t align;
    if ((rc = get_u64(&c, root, "alignment", &align))) return rc;
    if (align != b->sb.alignment)
        return bad(&c, FM_E_FORMAT, "\"alignment\" %llu differs from the superblock's %u",
                   U64(align), b->sb.alignment);
    const json_t *arch = json_object_get(root, "arch");
    if (!json_is_object(arch)) return bad(&c, FM_E_FORMAT, "\"arch\" must be an object, found %s", jtype(arch));
    snprintf(c.where, sizeof c.where, "arch");
    if ((rc = get_str(&c, arch, "name", &b->arch_name))) return rc;
    if (!b->arch_name[0]) return bad(&c, FM_E_FORMAT, "\"name\" must not be empty");
    c.where[0] = '\0';
    b->arch = arch;
    const json_t *prov = json_object_get(root, "provenance");
    if (prov && !json_is_object(prov) && !json_is_null(prov))
        return bad(&c, FM_E_FORMAT, "\"provenance\" must be an object, found %s", jtype(prov));
    const json_t *tok = json_object_get(root, "tokenizer");
    if (tok && !json_is_null(tok) && (rc = parse_tokenizer(b, &c, tok))) return rc;
    const json_t *tensors = json_object_get(root, "tensors");
    if (!json_is_array(tensors))
        return bad(&c, FM_E_FORMAT, "\"tensors\" must be an array, found %s", jtype(tensors));
    if ((rc = parse_tensors(b, &c, tensors))) return rc;
    const json_t *experts = json_object_get(root, "experts");
    if (experts && !json_is_array(experts))
        return bad(&c, FM_E_FORMAT, "\"experts\" must be an array, found %s", jtype(experts));
    if (experts && (rc = parse_experts(b, &c, experts))) return rc;
    return FM_OK;
}

/* ---------------------------------------------------------------- open */

static fm_err load_manifest(fm_bundle *b, fm_error *e)
{
    const char *path = b->f.path;
    const fm_bundle_superblock *sb = &b->sb;
    /* B7 */
    if (sb->manifest_size == 0 || sb->manifest_size > FM_BUNDLE_MANIFEST_CAP)
        return fm_error_set(e, FM_E_RANGE, "%s: manifest size %llu is outside 1..%u", path,
                            U64(sb->manifest_size), FM_BUNDLE_MANIFEST_CAP);
    if (sb->manifest_encoding > FM_BUNDLE_ENC_ZSTD)
        return fm_error_set(e, FM_E_UNSUPPORTED, "%s: manifest encoding %u is unknown (0 JSON, 1 zstd)",
                            path, sb->manifest_encoding);
    if (sb->manifest_raw_size == 0 || sb->manifest_raw_size > FM_BUNDLE_MANIFEST_CAP ||
        (sb->manifest_encoding == FM_BUNDLE_ENC_JSON && sb->manifest_raw_size != sb->manifest_size))
        return fm_error_set(e, FM_E_FORMAT, "%s: superblock: manifest decoded size %llu is invalid",
                            path, U64(sb->manifest_raw_size));
    if (sb->manifest_offset % 512 || sb->manifest_offset < FM_BUNDLE_SB_OFFSET + FM_BUNDLE_SB_SIZE + 512 ||
        !fm_range_ok(sb->manifest_offset, sb->manifest_size, sb->file_size - 1024))
        return fm_error_set(e, FM_E_FORMAT,
                            "%s: superblock: manifest at [%llu, +%llu) is not a member's data "
                            "inside the file",
                            path, U64(sb->manifest_offset), U64(sb->manifest_size));
    uint8_t hb[512];
    fm_err rc = fm_file_pread(&b->f, hb, 512, sb->manifest_offset - 512, e);
    if (rc) return rc;
    fm_tar_header th;
    if (fm_bundle_tar_parse(hb, &th, e) != FM_OK)
        return fm_error_prefix(e, "%s: tar header at offset %llu (manifest)", path,
                               U64(sb->manifest_offset - 512));
    const char *want = sb->manifest_encoding == FM_BUNDLE_ENC_ZSTD ? FM_BUNDLE_MEMBER_MANIFEST_ZST
                                                                  : FM_BUNDLE_MEMBER_MANIFEST;
    if (th.typeflag != '0' || strcmp(th.name, want) != 0 || th.size != sb->manifest_size)
        return fm_error_set(e, FM_E_FORMAT,
                            "%s: tar header at offset %llu: expected member %s of %llu bytes, "
                            "found '%.100s' of %llu bytes (type '%c')",
                            path, U64(sb->manifest_offset - 512), want, U64(sb->manifest_size),
                            th.name, U64(th.size), th.typeflag ? th.typeflag : '?');
    char *stored = malloc((size_t)sb->manifest_size);
    if (!stored) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory for the manifest", path);
    rc = fm_file_pread(&b->f, stored, (size_t)sb->manifest_size, sb->manifest_offset, e);
    uint8_t d[32];
    if (rc == FM_OK) rc = fm_sha256_buf(stored, (size_t)sb->manifest_size, d, e);
    if (rc == FM_OK && memcmp(d, sb->manifest_sha256, 32) != 0)
        rc = fm_error_set(e, FM_E_CHECKSUM, "%s: manifest: sha256 mismatch", path);
    if (rc) {
        free(stored);
        return rc;
    }
    char *text = stored;
    size_t len = (size_t)sb->manifest_size;
    if (sb->manifest_encoding == FM_BUNDLE_ENC_ZSTD) {
        text = malloc((size_t)sb->manifest_raw_size);
        if (!text) {
            free(stored);
            return fm_error_set(e, FM_E_NOMEM, "%s: out of memory for the manifest", path);
        }
        size_t r = ZSTD_decompress(text, (size_t)sb->manifest_raw_size, stored, len);
        free(stored);
        if (ZSTD_isError(r) || r != sb->manifest_raw_size) {
            free(text);
            return fm_error_set(e, FM_E_FORMAT, "%s: manifest: zstd data does not decode to %llu bytes%s%s",
                                path, U64(sb->manifest_raw_size), ZSTD_isError(r) ? ": " : "",
                                ZSTD_isError(r) ? ZSTD_getErrorName(r) : "");
        }
        len = r;
    }
    rc = parse_manifest(b, text, len, e);
    free(text);
    return rc;
}

fm_err fm_bundle_open(fm_bundle **out, const char *path, int flags, fm_error *e)
{
    *out = NULL;
    fm_bundle *b = calloc(1, sizeof *b);
    if (!b) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
    b->f = (fm_file)FM_FILE_INIT;
    b->direct_fd = -1;
    fm_err rc = fm_file_open(&b->f, path, 0, e);
    if (rc) {
        free(b);
        return rc;
    }
    uint8_t head[FM_BUNDLE_SB_OFFSET + FM_BUNDLE_SB_SIZE];
    if (b->f.size < sizeof head + 1024) {
        rc = fm_error_set(e, FM_E_FORMAT,
                          "%s: truncated or not an fm bundle: %llu bytes is less than the "
                          "smallest bundle (%zu bytes)",
                          path, U64(b->f.size), sizeof head + 1024);
        goto fail;
    }
    if ((rc = fm_file_pread(&b->f, head, sizeof head, 0, e))) goto fail;
    /* B2: member 0 is fm/superblock, a plain ustar header at 0, data at 512. */
    fm_tar_header th;
    if (fm_bundle_tar_parse(head, &th, e) != FM_OK) {
        rc = fm_error_prefix(e, "%s: not an fm bundle: tar header at offset 0", path);
        goto fail;
    }
    if (th.typeflag != '0' || strcmp(th.name, FM_BUNDLE_MEMBER_SUPERBLOCK) != 0 ||
        th.size != FM_BUNDLE_SB_SIZE) {
        rc = fm_error_set(e, FM_E_FORMAT,
                          "%s: not an fm bundle: the first member is '%.100s' of %llu "
                          "bytes, expected %s of %u bytes",
                          path, th.name, U64(th.size), FM_BUNDLE_MEMBER_SUPERBLOCK, FM_BUNDLE_SB_SIZE);
        goto fail;
    }
    if ((rc = fm_bundle_superblock_decode(head + FM_BUNDLE_SB_OFFSET, &b->sb, e))) {
        fm_error_prefix(e, "%s", path);
        goto fail;
    }
    fm_bundle_superblock *sb = &b->sb;
    /* B5 */
    if (!fm_is_pow2(sb->alignment) || sb->alignment < FM_BUNDLE_MIN_ALIGN ||
        sb->alignment > FM_BUNDLE_MAX_ALIGN) {
        rc = fm_error_set(e, FM_E_FORMAT, "%s: superblock: alignment %u is not a power of two in %u..%u",
                          path, sb->alignment, FM_BUNDLE_MIN_ALIGN, FM_BUNDLE_MAX_ALIGN);
        goto fail;
    }
    /* B6 */
    if (sb->file_size != b->f.size) {
        rc = fm_error_set(e, FM_E_FORMAT, "%s: %s: the superblock records %llu bytes but the file has %llu",
                          path, sb->file_size > b->f.size ? "truncated" : "trailing data after the archive",
                          U64(sb->file_size), U64(b->f.size));
        goto fail;
    }
    if (sb->file_size % 512) {
        rc = fm_error_set(e, FM_E_FORMAT, "%s: file size %llu is not a multiple of 512", path,
                          U64(sb->file_size));
        goto fail;
    }
    /* B17: the embedded signature is 64 bytes of member data, or absent. */
    if (sb->signature_size == 0 ? sb->signature_offset != 0
                                : (sb->signature_size != FM_BUNDLE_SIG_SIZE || sb->signature_offset % 512 ||
                                   !fm_range_ok(sb->signature_offset, sb->signature_size, sb->file_size))) {
        rc = fm_error_set(e, FM_E_FORMAT,
                          "%s: superblock: signature at [%llu, +%llu) is invalid (64 bytes or none)",
                          path, U64(sb->signature_offset), U64(sb->signature_size));
        goto fail;
    }
    if ((rc = load_manifest(b, e))) goto fail;
    b->info.sb = b->sb;
    if ((rc = check_ranges(b, e))) goto fail;
    /* Disjoint ranges inside the file: the sum cannot overflow. */
    for (uint64_t i = 0; i < b->n_tensors; i++) b->info.weight_bytes += b->tensors[i].size;
    for (uint64_t i = 0; i < b->info.n_blobs; i++) b->info.weight_bytes += b->blobs[i].size;
    if (flags & FM_BUNDLE_OPEN_DIRECT) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
        b->direct_fd = fd; /* -1 when the file system refuses O_DIRECT */
    }
    *out = b;
    return FM_OK;
fail:
    fm_bundle_close(b);
    return rc;
}

void fm_bundle_close(fm_bundle *b)
{
    if (!b) return;
    if (b->direct_fd >= 0) close(b->direct_fd);
    fm_file_close(&b->f);
    json_decref(b->manifest);
    free(b->tensors);
    free(b->by_name);
    free(b->layers);
    free(b->blobs);
    free(b);
}

/* ---------------------------------------------------------------- accessors */

const char *fm_bundle_path(const fm_bundle *b) { return b->f.path; }
uint32_t fm_bundle_alignment(const fm_bundle *b) { return b->sb.alignment; }
uint64_t fm_bundle_file_size(const fm_bundle *b) { return b->f.size; }
void fm_bundle_version(const fm_bundle *b, uint32_t *major, uint32_t *minor)
{
    if (major) *major = b->sb.major;
    if (minor) *minor = b->sb.minor;
}
const json_t *fm_bundle_manifest(const fm_bundle *b) { return b->manifest; }
const json_t *fm_bundle_arch(const fm_bundle *b) { return b->arch; }
const char *fm_bundle_arch_name(const fm_bundle *b) { return b->arch_name; }
uint64_t fm_bundle_n_tensors(const fm_bundle *b) { return b->n_tensors; }
const fm_bundle_tensor *fm_bundle_tensor_at(const fm_bundle *b, uint64_t i)
{
    return i < b->n_tensors ? &b->tensors[i] : NULL;
}

const fm_bundle_tensor *fm_bundle_find_tensor(const fm_bundle *b, const char *name)
{
    uint64_t lo = 0, hi = b->n_tensors;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const fm_bundle_tensor *t = &b->tensors[b->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

uint32_t fm_bundle_n_expert_layers(const fm_bundle *b) { return b->n_layers; }
const fm_bundle_expert_layer *fm_bundle_expert_layer_at(const fm_bundle *b, uint32_t i)
{
    return i < b->n_layers ? &b->layers[i] : NULL;
}

const fm_bundle_expert_layer *fm_bundle_find_expert_layer(const fm_bundle *b, uint32_t layer)
{
    uint32_t lo = 0, hi = b->n_layers;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (b->layers[mid].layer == layer) return &b->layers[mid];
        if (layer < b->layers[mid].layer) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

const fm_bundle_part *fm_bundle_find_part(const fm_bundle_expert_layer *l, const char *name)
{
    for (uint32_t i = 0; i < l->n_parts; i++)
        if (strcmp(l->parts[i].name, name) == 0) return &l->parts[i];
    return NULL;
}

int fm_bundle_fd(const fm_bundle *b) { return b->f.fd; }
int fm_bundle_direct_fd(const fm_bundle *b) { return b->direct_fd; }

void fm_bundle_get_info(const fm_bundle *b, fm_bundle_info *out) { *out = b->info; }

/* ---------------------------------------------------------------- reads */

static fm_err read_checked(const fm_bundle *b, uint64_t off, uint64_t size, const uint8_t sha[32],
                           void *buf, bool verify, const char *what, fm_error *e)
{
    if (size > SIZE_MAX) return fm_error_set(e, FM_E_RANGE, "%s: %s: too large", b->f.path, what);
    fm_err rc = fm_file_pread(&b->f, buf, (size_t)size, off, e);
    if (rc) return fm_error_prefix(e, "%s", what);
    if (!verify) return FM_OK;
    uint8_t d[32];
    if ((rc = fm_sha256_buf(buf, (size_t)size, d, e))) return rc;
    if (memcmp(d, sha, 32) != 0) {
        char want[65], got[65];
        fm_sha256_hex(sha, want);
        fm_sha256_hex(d, got);
        return fm_error_set(e, FM_E_CHECKSUM, "%s: %s: sha256 mismatch (manifest %s, data %s)",
                            b->f.path, what, want, got);
    }
    return FM_OK;
}

fm_err fm_bundle_read_tensor(const fm_bundle *b, const fm_bundle_tensor *t, void *buf, bool verify,
                             fm_error *e)
{
    char what[300];
    snprintf(what, sizeof what, "tensor %s", t->name);
    return read_checked(b, t->offset, t->size, t->sha256, buf, verify, what, e);
}

fm_err fm_bundle_read_expert(const fm_bundle *b, const fm_bundle_expert_layer *l, uint32_t expert,
                             void *buf, bool verify, fm_error *e)
{
    if (expert >= l->n_expert)
        return fm_error_set(e, FM_E_ARG, "%s: blk.%u has %u experts, asked for expert %u", b->f.path,
                            l->layer, l->n_expert, expert);
    char what[64];
    snprintf(what, sizeof what, "blk.%u expert %u", l->layer, expert);
    return read_checked(b, l->blobs[expert].offset, l->blobs[expert].size, l->blobs[expert].sha256,
                        buf, verify, what, e);
}

fm_err fm_bundle_read_manifest_bytes(const fm_bundle *b, void **out, size_t *len, fm_error *e)
{
    *out = NULL;
    size_t n = (size_t)b->sb.manifest_size;
    void *buf = malloc(n);
    if (!buf) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", b->f.path);
    fm_err rc = read_checked(b, b->sb.manifest_offset, n, b->sb.manifest_sha256, buf, true,
                             "manifest", e);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return FM_OK;
}

fm_err fm_bundle_read_tokenizer(const fm_bundle *b, char **out, size_t *len, fm_error *e)
{
    *out = NULL;
    if (len) *len = 0;
    const fm_bundle_info *in = &b->info;
    if (!in->has_tokenizer) return fm_error_set(e, FM_E_NOTFOUND, "%s: bundle has no tokenizer", b->f.path);
    size_t n = (size_t)in->tokenizer_size, raw = (size_t)in->tokenizer_raw_size;
    uint8_t *stored = malloc(n + 1);
    if (!stored) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", b->f.path);
    fm_err rc = read_checked(b, in->tokenizer_offset, n, in->tokenizer_sha256, stored, true,
                             "tokenizer", e);
    if (rc) {
        free(stored);
        return rc;
    }
    if (in->tokenizer_compression == FM_BUNDLE_COMP_NONE) {
        stored[n] = '\0';
        *out = (char *)stored;
        if (len) *len = n;
        return FM_OK;
    }
    char *text = malloc(raw + 1);
    if (!text) {
        free(stored);
        return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", b->f.path);
    }
    size_t r = ZSTD_decompress(text, raw, stored, n);
    free(stored);
    if (ZSTD_isError(r) || r != raw) {
        free(text);
        return fm_error_set(e, FM_E_FORMAT, "%s: tokenizer: zstd data does not decode to %zu bytes%s%s",
                            b->f.path, raw, ZSTD_isError(r) ? ": " : "",
                            ZSTD_isError(r) ? ZSTD_getErrorName(r) : "");
    }
    text[raw] = '\0';
    *out = text;
    if (len) *len = raw;
    return FM_OK;
}
