/* GGUF reader, versions 2 and 3 (little-endian). See specs/gguf.md: every
 * check below names the rule (G1..G24) it enforces.
 *
 * Only the header (magic, counts, metadata, tensor infos) is read, through a
 * buffered pread reader, so files larger than RAM open and a 262k-string
 * vocabulary costs a handful of reads. All metadata lives in one arena whose
 * total size is bounded by a cap (G13); every count is checked against the
 * bytes left in the file before anything is allocated for it. */
#include "formats/gguf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/quant.h"
#include "formats/util.h"

#define GGUF_FIXED_HEADER 24u /* magic, version, n_tensors, n_kv */
#define GGUF_KV_MIN 14u       /* key length 8 + key >= 1 + type 4 + value >= 1 */
#define GGUF_TI_MIN 33u       /* name length 8 + name >= 1 + n_dims 4 + ne 8 + type 4 + offset 8 */
#define GGUF_VTYPE_COUNT 13u
#define RD_BUF (256u * 1024u)
#define ARENA_CHUNK (1u << 20)
#define ARENA_BIG (64u * 1024u)

/* ---- arena ------------------------------------------------------------- */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_chunk;

struct fm_gguf_priv {
    arena_chunk *chunks;      /* head is the chunk small allocations go to */
    const fm_gguf_kv **kv_sorted;       /* by key, for lookup */
    const fm_gguf_tensor **ti_sorted;   /* by name, for lookup */
};

/* ---- parser state ------------------------------------------------------ */

typedef struct parser {
    fm_gguf *g;
    const char *path;
    fm_error *e;
    uint64_t size;    /* file size */
    uint64_t cap;     /* metadata memory cap */
    uint8_t *buf;     /* read buffer */
    uint64_t boff;    /* file offset of buf[0] */
    size_t blen;      /* valid bytes in buf */
    uint64_t pos;     /* current file offset, <= size */
    char ctx[160];    /* "key 'x'" / "tensor 'y'" for messages */
} parser;

static fm_err perr(parser *p, fm_err code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static fm_err perr(parser *p, fm_err code, const char *fmt, ...)
{
    char m[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    if (p->ctx[0]) return fm_error_set(p->e, code, "%s: %s: %s", p->path, p->ctx, m);
    return fm_error_set(p->e, code, "%s: %s", p->path, m);
}

/* Copies a possibly long or odd name into a short printable form. */
static void short_name(char *dst, size_t cap, const char *s, uint64_t len)
{
    size_t n = len < cap - 4 ? (size_t)len : cap - 4;
    /* do not cut a UTF-8 sequence in half */
    while (n > 0 && n < len && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    memcpy(dst, s, n);
    if (n < len) memcpy(dst + n, "...", 4);
    else dst[n] = '\0';
}

static void *arena_alloc(parser *p, uint64_t n)
{
    struct fm_gguf_priv *pv = p->g->priv;
    uint64_t need;
    if (n == 0) n = 1;
    if (!fm_align_up(n, 16, &need) || !fm_add_u64(p->g->meta_bytes, need, &need) ||
        need > p->cap) {
        perr(p, FM_E_NOMEM,
             "metadata needs more than the cap of %" PRIu64 " bytes (G13): %" PRIu64
             " in use, %" PRIu64 " more requested at offset %" PRIu64,
             p->cap, p->g->meta_bytes, n, p->pos);
        return NULL;
    }
    size_t sz = (size_t)((n + 15) & ~(uint64_t)15);
    p->g->meta_bytes = need;
    arena_chunk *c = pv->chunks;
    if (c && c->cap - c->used >= sz) {
        void *r = c->data + c->used;
        c->used += sz;
        return r;
    }
    size_t ccap = sz > ARENA_BIG ? sz : ARENA_CHUNK;
    arena_chunk *nc = malloc(sizeof *nc + ccap);
    if (!nc) {
        perr(p, FM_E_NOMEM, "out of memory allocating %zu bytes of metadata", ccap);
        return NULL;
    }
    nc->cap = ccap;
    nc->used = sz;
    if (sz > ARENA_BIG && c) { /* dedicated chunk: keep the current one at the head */
        nc->next = c->next;
        c->next = nc;
    } else {
        nc->next = c;
        pv->chunks = nc;
    }
    return nc->data;
}

/* ---- buffered reader --------------------------------------------------- */

/* Reads n bytes at p->pos; the caller has checked pos + n <= size. */
static fm_err rd_slow(parser *p, void *dst, size_t n)
{
    uint8_t *d = dst;
    while (n > 0) {
        if (p->pos >= p->boff && p->pos - p->boff < p->blen) {
            size_t off = (size_t)(p->pos - p->boff);
            size_t k = p->blen - off;
            if (k > n) k = n;
            memcpy(d, p->buf + off, k);
            d += k;
            n -= k;
            p->pos += k;
            continue;
        }
        if (n >= RD_BUF) { /* large read: straight into the destination */
            fm_err rc = fm_file_pread(&p->g->file, d, n, p->pos, p->e);
            if (rc) return rc;
            p->pos += n;
            return FM_OK;
        }
        uint64_t left = p->size - p->pos;
        size_t k = left < RD_BUF ? (size_t)left : RD_BUF;
        fm_err rc = fm_file_pread(&p->g->file, p->buf, k, p->pos, p->e);
        if (rc) return rc;
        p->boff = p->pos;
        p->blen = k;
    }
    return FM_OK;
}

/* G4: every fixed-size field lies inside the file. */
static fm_err rd(parser *p, void *dst, size_t n, const char *what)
{
    if (n > p->size - p->pos)
        return perr(p, FM_E_FORMAT,
                    "truncated: %s needs %zu bytes at offset %" PRIu64
                    " but the file has %" PRIu64 " bytes (G4)",
                    what, n, p->pos, p->size);
    if (p->pos >= p->boff && p->pos - p->boff < p->blen && p->blen - (p->pos - p->boff) >= n) {
        memcpy(dst, p->buf + (p->pos - p->boff), n);
        p->pos += n;
        return FM_OK;
    }
    return rd_slow(p, dst, n);
}

static fm_err rd_u32(parser *p, uint32_t *v, const char *what)
{
    uint8_t b[4];
    fm_err rc = rd(p, b, 4, what);
    if (rc == FM_OK) *v = fm_rd_u32le(b);
    return rc;
}

static fm_err rd_u64(parser *p, uint64_t *v, const char *what)
{
    uint8_t b[8];
    fm_err rc = rd(p, b, 8, what);
    if (rc == FM_OK) *v = fm_rd_u64le(b);
    return rc;
}

/* G6: a string's length does not exceed the bytes left in the file. */
static fm_err rd_str(parser *p, fm_gguf_str *s, const char *what)
{
    uint64_t len;
    fm_err rc = rd_u64(p, &len, what);
    if (rc) return rc;
    if (len > p->size - p->pos)
        return perr(p, FM_E_FORMAT,
                    "%s: string length %" PRIu64 " at offset %" PRIu64
                    " exceeds the %" PRIu64 " bytes left in the file (G6)",
                    what, len, p->pos - 8, p->size - p->pos);
    if (len >= SIZE_MAX) return perr(p, FM_E_NOMEM, "%s: string too long", what);
    char *m = arena_alloc(p, len + 1);
    if (!m) return FM_E_NOMEM;
    rc = rd(p, m, (size_t)len, what);
    if (rc) return rc;
    m[len] = '\0';
    s->len = len;
    s->s = m;
    return FM_OK;
}

/* ---- values ------------------------------------------------------------ */

static const uint8_t vt_size[GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* Fewest bytes one value of type t occupies in the file. */
static uint64_t vt_min_size(uint32_t t)
{
    if (t == FM_GGUF_STRING) return 8;
    if (t == FM_GGUF_ARRAY) return 12; /* element type + count */
    return vt_size[t];
}

const char *fm_gguf_vtype_name(uint32_t t)
{
    static const char *const names[GGUF_VTYPE_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64"};
    return t < GGUF_VTYPE_COUNT ? names[t] : "unknown";
}

static fm_err read_value(parser *p, uint32_t type, fm_gguf_value *v, unsigned depth);

static fm_err read_scalar(parser *p, uint32_t type, fm_gguf_value *v)
{
    uint8_t b[8];
    fm_err rc = rd(p, b, vt_size[type], "value");
    if (rc) return rc;
    v->type = type;
    switch (type) {
    case FM_GGUF_UINT8: v->v.u64 = b[0]; break;
    case FM_GGUF_INT8: v->v.i64 = (int8_t)b[0]; break;
    case FM_GGUF_UINT16: v->v.u64 = fm_rd_u16le(b); break;
    case FM_GGUF_INT16: v->v.i64 = (int16_t)fm_rd_u16le(b); break;
    case FM_GGUF_UINT32: v->v.u64 = fm_rd_u32le(b); break;
    case FM_GGUF_INT32: v->v.i64 = (int32_t)fm_rd_u32le(b); break;
    case FM_GGUF_FLOAT32: v->v.f64 = (double)fm_rd_f32le(b); break;
    case FM_GGUF_BOOL:
        if (b[0] > 1) /* G12 */
            return perr(p, FM_E_FORMAT, "bool value %u at offset %" PRIu64 " is not 0 or 1 (G12)",
                        b[0], p->pos - 1);
        v->v.u64 = b[0];
        break;
    case FM_GGUF_UINT64: v->v.u64 = fm_rd_u64le(b); break;
    case FM_GGUF_INT64: {
        uint64_t u = fm_rd_u64le(b);
        memcpy(&v->v.i64, &u, 8);
        break;
    }
    case FM_GGUF_FLOAT64: v->v.f64 = fm_rd_f64le(b); break;
    default: return perr(p, FM_E_INTERNAL, "read_scalar of type %u", type);
    }
    return FM_OK;
}

static fm_err read_array(parser *p, fm_gguf_value *v, unsigned depth)
{
    uint32_t et;
    uint64_t n;
    fm_err rc = rd_u32(p, &et, "array element type");
    if (rc) return rc;
    if (et >= GGUF_VTYPE_COUNT) /* G9 */
        return perr(p, FM_E_FORMAT,
                    "unknown array element value type %" PRIu32 " at offset %" PRIu64
                    " (expected 0..12) (G9)",
                    et, p->pos - 4);
    rc = rd_u64(p, &n, "array count");
    if (rc) return rc;
    if (et == FM_GGUF_ARRAY && depth + 1 > FM_GGUF_MAX_ARRAY_DEPTH) /* G11 */
        return perr(p, FM_E_FORMAT,
                    "array nesting depth exceeds %d at offset %" PRIu64 " (G11)",
                    FM_GGUF_MAX_ARRAY_DEPTH, p->pos - 12);
    uint64_t need;
    if (!fm_mul_u64(n, vt_min_size(et), &need) || need > p->size - p->pos) /* G10 */
        return perr(p, FM_E_FORMAT,
                    "array of %" PRIu64 " %s elements at offset %" PRIu64
                    " needs at least %" PRIu64 " bytes per element but only %" PRIu64
                    " bytes are left in the file (G10)",
                    n, fm_gguf_vtype_name(et), p->pos - 12, vt_min_size(et), p->size - p->pos);
    v->type = FM_GGUF_ARRAY;
    v->v.arr.type = et;
    v->v.arr.n = n;
    v->v.arr.vals = NULL;
    if (n == 0) return FM_OK;
    uint64_t bytes;
    if (!fm_mul_u64(n, sizeof(fm_gguf_value), &bytes))
        return perr(p, FM_E_NOMEM, "array of %" PRIu64 " elements is too large (G13)", n);
    fm_gguf_value *vals = arena_alloc(p, bytes);
    if (!vals) return FM_E_NOMEM;
    v->v.arr.vals = vals;
    if (et == FM_GGUF_STRING) {
        for (uint64_t i = 0; i < n; i++) {
            vals[i].type = FM_GGUF_STRING;
            rc = rd_str(p, &vals[i].v.str, "array string");
            if (rc) return rc;
        }
        return FM_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        rc = read_value(p, et, &vals[i], depth + 1);
        if (rc) return rc;
    }
    return FM_OK;
}

static fm_err read_value(parser *p, uint32_t type, fm_gguf_value *v, unsigned depth)
{
    if (type == FM_GGUF_STRING) {
        v->type = FM_GGUF_STRING;
        return rd_str(p, &v->v.str, "string value");
    }
    if (type == FM_GGUF_ARRAY) return read_array(p, v, depth);
    return read_scalar(p, type, v);
}

/* ---- names ------------------------------------------------------------- */

static int name_cmp(const fm_gguf_str *a, const char *b, uint64_t blen)
{
    uint64_t n = a->len < blen ? a->len : blen;
    int c = memcmp(a->s, b, (size_t)n);
    if (c) return c;
    return a->len < blen ? -1 : a->len > blen ? 1 : 0;
}

static int kv_ptr_cmp(const void *x, const void *y)
{
    const fm_gguf_kv *a = *(const fm_gguf_kv *const *)x, *b = *(const fm_gguf_kv *const *)y;
    int c = name_cmp(&a->key, b->key.s, b->key.len);
    return c ? c : (a < b ? -1 : a > b);
}

static int ti_ptr_cmp(const void *x, const void *y)
{
    const fm_gguf_tensor *a = *(const fm_gguf_tensor *const *)x, *b = *(const fm_gguf_tensor *const *)y;
    int c = name_cmp(&a->name, b->name.s, b->name.len);
    return c ? c : (a < b ? -1 : a > b);
}

static int ti_off_cmp(const void *x, const void *y)
{
    const fm_gguf_tensor *a = *(const fm_gguf_tensor *const *)x, *b = *(const fm_gguf_tensor *const *)y;
    if (a->abs_offset != b->abs_offset) return a->abs_offset < b->abs_offset ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* G7 / G15: non-empty, at most FM_GGUF_MAX_NAME_LEN bytes, no NUL, UTF-8. */
static fm_err check_name(parser *p, const fm_gguf_str *s, const char *what, const char *rule, uint64_t at)
{
    if (s->len == 0)
        return perr(p, FM_E_FORMAT, "%s at offset %" PRIu64 " is empty (%s)", what, at, rule);
    if (s->len > FM_GGUF_MAX_NAME_LEN)
        return perr(p, FM_E_FORMAT, "%s at offset %" PRIu64 " is %" PRIu64
                    " bytes long, more than %d (%s)", what, at, s->len, FM_GGUF_MAX_NAME_LEN, rule);
    if (memchr(s->s, '\0', (size_t)s->len))
        return perr(p, FM_E_FORMAT, "%s at offset %" PRIu64 " contains a NUL byte (%s)", what, at, rule);
    if (!fm_utf8_valid(s->s, (size_t)s->len))
        return perr(p, FM_E_FORMAT, "%s at offset %" PRIu64 " is not valid UTF-8 (%s)", what, at, rule);
    return FM_OK;
}

/* ---- the header -------------------------------------------------------- */

static fm_err parse_kvs(parser *p)
{
    fm_gguf *g = p->g;
    fm_err rc;
    uint64_t bytes;
    if (g->n_kv == 0) return FM_OK;
    if (!fm_mul_u64(g->n_kv, sizeof(fm_gguf_kv), &bytes))
        return perr(p, FM_E_NOMEM, "n_kv too large (G13)");
    g->kv = arena_alloc(p, bytes);
    if (!g->kv) return FM_E_NOMEM;
    memset(g->kv, 0, (size_t)bytes);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        fm_gguf_kv *kv = &g->kv[i];
        snprintf(p->ctx, sizeof p->ctx, "kv #%" PRIu64, i);
        uint64_t at = p->pos;
        rc = rd_str(p, &kv->key, "key");
        if (rc) return rc;
        rc = check_name(p, &kv->key, "key", "G7", at);
        if (rc) return rc;
        char nm[96];
        short_name(nm, sizeof nm, kv->key.s, kv->key.len);
        snprintf(p->ctx, sizeof p->ctx, "key '%s'", nm);
        uint32_t type;
        rc = rd_u32(p, &type, "value type");
        if (rc) return rc;
        if (type >= GGUF_VTYPE_COUNT) /* G9 */
            return perr(p, FM_E_FORMAT,
                        "unknown value type %" PRIu32 " at offset %" PRIu64 " (expected 0..12) (G9)",
                        type, p->pos - 4);
        rc = read_value(p, type, &kv->val, 1);
        if (rc) return rc;
    }
    p->ctx[0] = '\0';

    /* G8: keys are unique. */
    if (!fm_mul_u64(g->n_kv, sizeof(fm_gguf_kv *), &bytes))
        return perr(p, FM_E_NOMEM, "n_kv too large (G13)");
    const fm_gguf_kv **s = arena_alloc(p, bytes);
    if (!s) return FM_E_NOMEM;
    for (uint64_t i = 0; i < g->n_kv; i++) s[i] = &g->kv[i];
    qsort(s, (size_t)g->n_kv, sizeof *s, kv_ptr_cmp);
    for (uint64_t i = 1; i < g->n_kv; i++)
        if (name_cmp(&s[i - 1]->key, s[i]->key.s, s[i]->key.len) == 0) {
            char nm[96];
            short_name(nm, sizeof nm, s[i]->key.s, s[i]->key.len);
            return perr(p, FM_E_FORMAT, "duplicate key '%s' (kv #%td and #%td) (G8)", nm,
                        s[i - 1] - g->kv, s[i] - g->kv);
        }
    g->priv->kv_sorted = s;
    return FM_OK;
}

/* G14: general.alignment, if present, is a UINT32 that is a power of two. */
static fm_err parse_alignment(parser *p)
{
    fm_gguf *g = p->g;
    g->alignment = FM_GGUF_DEFAULT_ALIGNMENT;
    const fm_gguf_kv *kv = fm_gguf_find_kv(g, "general.alignment");
    if (!kv) return FM_OK;
    if (kv->val.type != FM_GGUF_UINT32)
        return perr(p, FM_E_FORMAT, "general.alignment has type %s, expected uint32 (G14)",
                    fm_gguf_vtype_name(kv->val.type));
    if (!fm_is_pow2(kv->val.v.u64))
        return perr(p, FM_E_FORMAT, "general.alignment is %" PRIu64
                    ", expected a nonzero power of two (G14)", kv->val.v.u64);
    g->alignment = kv->val.v.u64;
    return FM_OK;
}

static fm_err parse_tensor_info(parser *p, uint64_t i)
{
    fm_gguf *g = p->g;
    fm_gguf_tensor *t = &g->tensors[i];
    fm_err rc;
    snprintf(p->ctx, sizeof p->ctx, "tensor #%" PRIu64, i);
    uint64_t at = p->pos;
    rc = rd_str(p, &t->name, "tensor name");
    if (rc) return rc;
    rc = check_name(p, &t->name, "tensor name", "G15", at);
    if (rc) return rc;
    char nm[96];
    short_name(nm, sizeof nm, t->name.s, t->name.len);
    snprintf(p->ctx, sizeof p->ctx, "tensor '%s'", nm);

    rc = rd_u32(p, &t->n_dims, "n_dims");
    if (rc) return rc;
    if (t->n_dims < 1 || t->n_dims > FM_GGUF_MAX_DIMS) /* G17 */
        return perr(p, FM_E_FORMAT, "n_dims is %" PRIu32 ", expected 1..%d (G17)", t->n_dims,
                    FM_GGUF_MAX_DIMS);
    uint64_t n = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < FM_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims) continue;
        rc = rd_u64(p, &t->ne[d], "ne");
        if (rc) return rc;
        if (t->ne[d] == 0) /* G18 */
            return perr(p, FM_E_FORMAT, "ne[%" PRIu32 "] is 0, expected >= 1 (G18)", d);
        if (!fm_mul_u64(n, t->ne[d], &n)) overflow = true;
    }
    if (overflow || n > (uint64_t)INT64_MAX) /* G19 */
        return perr(p, FM_E_FORMAT,
                    "element count %" PRIu64 " x %" PRIu64 " x %" PRIu64 " x %" PRIu64
                    " overflows (more than 2^63-1) (G19)",
                    t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
    t->n_elems = n;

    rc = rd_u32(p, &t->type, "tensor type");
    if (rc) return rc;
    const fm_qtype_traits *q = t->type < 256 ? fm_qtype_get(t->type) : NULL;
    if (!q) /* G20 */
        return perr(p, FM_E_UNSUPPORTED, "unknown tensor type id %" PRIu32 " (G20)", t->type);
    if (q->block_size == 0 || t->ne[0] % q->block_size != 0) /* G21 */
        return perr(p, FM_E_FORMAT,
                    "type %s: ne[0] = %" PRIu64 " is not a multiple of the block size %" PRIu32
                    " (G21)",
                    q->name, t->ne[0], q->block_size);
    fm_error qe;
    if (fm_qtype_nbytes(t->type, n, &t->size, &qe) != FM_OK) /* G19 */
        return perr(p, FM_E_FORMAT,
                    "byte size of %" PRIu64 " elements of type %s overflows (%s) (G19)", n,
                    q->name, qe.msg);

    rc = rd_u64(p, &t->offset, "tensor offset");
    if (rc) return rc;
    if (t->offset % g->alignment != 0) /* G22 */
        return perr(p, FM_E_FORMAT,
                    "data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64 " (G22)",
                    t->offset, g->alignment);
    return FM_OK;
}

static fm_err parse_tensors(parser *p)
{
    fm_gguf *g = p->g;
    fm_err rc;
    uint64_t bytes;
    if (g->n_tensors > 0) {
        if (!fm_mul_u64(g->n_tensors, sizeof(fm_gguf_tensor), &bytes))
            return perr(p, FM_E_NOMEM, "n_tensors too large (G13)");
        g->tensors = arena_alloc(p, bytes);
        if (!g->tensors) return FM_E_NOMEM;
        memset(g->tensors, 0, (size_t)bytes);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        rc = parse_tensor_info(p, i);
        if (rc) return rc;
    }
    p->ctx[0] = '\0';
    g->header_end = p->pos;
    if (!fm_align_up(p->pos, g->alignment, &g->data_offset))
        return perr(p, FM_E_FORMAT, "data offset overflows");
    if (g->n_tensors == 0) return FM_OK;

    /* G16: tensor names are unique. */
    if (!fm_mul_u64(g->n_tensors, sizeof(fm_gguf_tensor *), &bytes))
        return perr(p, FM_E_NOMEM, "n_tensors too large (G13)");
    const fm_gguf_tensor **s = arena_alloc(p, bytes);
    if (!s) return FM_E_NOMEM;
    for (uint64_t i = 0; i < g->n_tensors; i++) s[i] = &g->tensors[i];
    qsort(s, (size_t)g->n_tensors, sizeof *s, ti_ptr_cmp);
    for (uint64_t i = 1; i < g->n_tensors; i++)
        if (name_cmp(&s[i - 1]->name, s[i]->name.s, s[i]->name.len) == 0) {
            char nm[96];
            short_name(nm, sizeof nm, s[i]->name.s, s[i]->name.len);
            return perr(p, FM_E_FORMAT, "duplicate tensor name '%s' (tensors #%td and #%td) (G16)",
                        nm, s[i - 1] - g->tensors, s[i] - g->tensors);
        }
    g->priv->ti_sorted = s;

    /* G23: every tensor's data lies inside the file. */
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        fm_gguf_tensor *t = &g->tensors[i];
        char nm[96];
        short_name(nm, sizeof nm, t->name.s, t->name.len);
        if (!fm_add_u64(g->data_offset, t->offset, &t->abs_offset) ||
            !fm_range_ok(t->abs_offset, t->size, p->size))
            return perr(p, FM_E_FORMAT,
                        "tensor '%s': data [%" PRIu64 " + %" PRIu64 ", +%" PRIu64
                        " bytes) lies outside the file of %" PRIu64 " bytes (G23)",
                        nm, g->data_offset, t->offset, t->size, p->size);
    }

    /* G24: no two tensors' data overlap. The order array is temporary. */
    const fm_gguf_tensor **o = malloc((size_t)g->n_tensors * sizeof *o);
    if (!o) return perr(p, FM_E_NOMEM, "out of memory sorting %" PRIu64 " tensors", g->n_tensors);
    for (uint64_t i = 0; i < g->n_tensors; i++) o[i] = &g->tensors[i];
    qsort(o, (size_t)g->n_tensors, sizeof *o, ti_off_cmp);
    rc = FM_OK;
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        const fm_gguf_tensor *a = o[i - 1], *b = o[i];
        if (a->abs_offset + a->size > b->abs_offset) {
            char na[96], nb[96];
            short_name(na, sizeof na, a->name.s, a->name.len);
            short_name(nb, sizeof nb, b->name.s, b->name.len);
            rc = perr(p, FM_E_FORMAT,
                      "tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64
                      ") overlap (G24)",
                      na, a->abs_offset, a->abs_offset + a->size, nb, b->abs_offset,
                      b->abs_offset + b->size);
            break;
        }
    }
    free(o);
    return rc;
}

static fm_err parse(parser *p)
{
    fm_gguf *g = p->g;
    fm_err rc;
    uint8_t magic[4];
    rc = rd(p, magic, 4, "magic");
    if (rc) return rc;
    if (memcmp(magic, "GGUF", 4) != 0) { /* G1 */
        char shown[20];
        for (int i = 0; i < 4; i++) shown[i] = (magic[i] >= 0x20 && magic[i] < 0x7f) ? (char)magic[i] : '?';
        shown[4] = '\0';
        return perr(p, FM_E_FORMAT,
                    "bad magic '%s' (%02x %02x %02x %02x), expected 'GGUF' (G1)", shown, magic[0],
                    magic[1], magic[2], magic[3]);
    }
    rc = rd_u32(p, &g->version, "version");
    if (rc) return rc;
    if (g->version != 0 && (g->version & 0xFFFF) == 0) /* G2 */
        return perr(p, FM_E_UNSUPPORTED,
                    "version field is 0x%08" PRIx32 ": a big-endian GGUF file, only little-endian is "
                    "supported (G2)",
                    g->version);
    if (g->version == 1) /* G3 */
        return perr(p, FM_E_VERSION, "GGUF version 1 is not supported (it uses 32-bit counts); "
                    "expected version 2 or 3 (G3)");
    if (g->version != 2 && g->version != 3)
        return perr(p, FM_E_VERSION, "GGUF version %" PRIu32 " is not supported, expected 2 or 3 (G3)",
                    g->version);
    rc = rd_u64(p, &g->n_tensors, "n_tensors");
    if (rc) return rc;
    rc = rd_u64(p, &g->n_kv, "n_kv");
    if (rc) return rc;
    /* G5: the counts fit in the file at their smallest encodings. */
    uint64_t a, b, need;
    if (!fm_mul_u64(g->n_kv, GGUF_KV_MIN, &a) || !fm_mul_u64(g->n_tensors, GGUF_TI_MIN, &b) ||
        !fm_add_u64(a, b, &need) || need > p->size - p->pos)
        return perr(p, FM_E_FORMAT,
                    "n_tensors = %" PRIu64 " and n_kv = %" PRIu64
                    " cannot fit in the %" PRIu64 " bytes after the fixed header (each kv needs >= %u"
                    " bytes, each tensor info >= %u) (G5)",
                    g->n_tensors, g->n_kv, p->size - p->pos, GGUF_KV_MIN, GGUF_TI_MIN);
    rc = parse_kvs(p);
    if (rc) return rc;
    rc = parse_alignment(p);
    if (rc) return rc;
    return parse_tensors(p);
}

/* ---- public API -------------------------------------------------------- */

fm_err fm_gguf_open(fm_gguf **out, const char *path, fm_error *e)
{
    return fm_gguf_open_opts(out, path, NULL, e);
}

fm_err fm_gguf_open_opts(fm_gguf **out, const char *path, const fm_gguf_opts *opts, fm_error *e)
{
    if (!out || !path) return fm_error_set(e, FM_E_ARG, "fm_gguf_open: NULL argument");
    *out = NULL;
    fm_gguf *g = calloc(1, sizeof *g);
    if (!g) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
    g->file = (fm_file)FM_FILE_INIT;
    g->priv = calloc(1, sizeof *g->priv);
    if (!g->priv) {
        free(g);
        return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
    }
    fm_err rc = fm_file_open(&g->file, path, 0, e);
    if (rc) {
        fm_gguf_close(g);
        return rc;
    }
    parser p;
    memset(&p, 0, sizeof p);
    p.g = g;
    p.path = path;
    p.e = e;
    p.size = g->file.size;
    if (opts && opts->meta_cap) p.cap = opts->meta_cap;
    else {
        uint64_t c;
        if (!fm_mul_u64(p.size, 64, &c) || !fm_add_u64(c, 1u << 20, &c) || c > FM_GGUF_META_CAP)
            c = FM_GGUF_META_CAP;
        p.cap = c;
    }
    p.buf = malloc(RD_BUF);
    if (!p.buf) {
        fm_gguf_close(g);
        return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
    }
    rc = parse(&p);
    free(p.buf);
    if (rc) {
        fm_gguf_close(g);
        return rc;
    }
    *out = g;
    return FM_OK;
}

void fm_gguf_close(fm_gguf *g)
{
    if (!g) return;
    fm_file_close(&g->file);
    if (g->priv) {
        arena_chunk *c = g->priv->chunks;
        while (c) {
            arena_chunk *n = c->next;
            free(c);
            c = n;
        }
        free(g->priv);
    }
    free(g);
}

const fm_gguf_kv *fm_gguf_find_kv(const fm_gguf *g, const char *key)
{
    if (!g || !key || !g->priv || !g->priv->kv_sorted) return NULL;
    uint64_t klen = strlen(key), lo = 0, hi = g->n_kv;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(&g->priv->kv_sorted[mid]->key, key, klen);
        if (c == 0) return g->priv->kv_sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const fm_gguf_tensor *fm_gguf_find_tensor(const fm_gguf *g, const char *name)
{
    if (!g || !name || !g->priv || !g->priv->ti_sorted) return NULL;
    uint64_t nlen = strlen(name), lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(&g->priv->ti_sorted[mid]->name, name, nlen);
        if (c == 0) return g->priv->ti_sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static const fm_gguf_value *get_val(const fm_gguf *g, const char *key, fm_error *e)
{
    const fm_gguf_kv *kv = fm_gguf_find_kv(g, key);
    if (!kv)
        fm_error_set(e, FM_E_NOTFOUND, "%s: key '%s' not found", g ? g->file.path : "(null)",
                     key ? key : "(null)");
    return kv ? &kv->val : NULL;
}

static fm_err wrong_type(const fm_gguf *g, const char *key, uint32_t have, const char *want, fm_error *e)
{
    return fm_error_set(e, FM_E_FORMAT, "%s: key '%s' has type %s, expected %s", g->file.path, key,
                        fm_gguf_vtype_name(have), want);
}

static bool is_unsigned_vt(uint32_t t)
{
    return t == FM_GGUF_UINT8 || t == FM_GGUF_UINT16 || t == FM_GGUF_UINT32 || t == FM_GGUF_UINT64;
}

static bool is_signed_vt(uint32_t t)
{
    return t == FM_GGUF_INT8 || t == FM_GGUF_INT16 || t == FM_GGUF_INT32 || t == FM_GGUF_INT64;
}

fm_err fm_gguf_get_u64(const fm_gguf *g, const char *key, uint64_t *out, fm_error *e)
{
    const fm_gguf_value *v = get_val(g, key, e);
    if (!v) return FM_E_NOTFOUND;
    if (is_unsigned_vt(v->type)) {
        *out = v->v.u64;
        return FM_OK;
    }
    if (is_signed_vt(v->type)) {
        if (v->v.i64 < 0)
            return fm_error_set(e, FM_E_RANGE, "%s: key '%s' is %" PRId64 ", expected a value >= 0",
                                g->file.path, key, v->v.i64);
        *out = (uint64_t)v->v.i64;
        return FM_OK;
    }
    return wrong_type(g, key, v->type, "an integer", e);
}

fm_err fm_gguf_get_f64(const fm_gguf *g, const char *key, double *out, fm_error *e)
{
    const fm_gguf_value *v = get_val(g, key, e);
    if (!v) return FM_E_NOTFOUND;
    if (is_unsigned_vt(v->type)) *out = (double)v->v.u64;
    else if (is_signed_vt(v->type)) *out = (double)v->v.i64;
    else if (v->type == FM_GGUF_FLOAT32 || v->type == FM_GGUF_FLOAT64) *out = v->v.f64;
    else return wrong_type(g, key, v->type, "a number", e);
    return FM_OK;
}

fm_err fm_gguf_get_str(const fm_gguf *g, const char *key, const char **out, fm_error *e)
{
    const fm_gguf_value *v = get_val(g, key, e);
    if (!v) return FM_E_NOTFOUND;
    if (v->type != FM_GGUF_STRING) return wrong_type(g, key, v->type, "string", e);
    *out = v->v.str.s;
    return FM_OK;
}

fm_err fm_gguf_get_bool(const fm_gguf *g, const char *key, bool *out, fm_error *e)
{
    const fm_gguf_value *v = get_val(g, key, e);
    if (!v) return FM_E_NOTFOUND;
    if (v->type != FM_GGUF_BOOL) return wrong_type(g, key, v->type, "bool", e);
    *out = v->v.u64 != 0;
    return FM_OK;
}

fm_err fm_gguf_get_arr(const fm_gguf *g, const char *key, const fm_gguf_value **out, fm_error *e)
{
    const fm_gguf_value *v = get_val(g, key, e);
    if (!v) return FM_E_NOTFOUND;
    if (v->type != FM_GGUF_ARRAY) return wrong_type(g, key, v->type, "array", e);
    *out = v;
    return FM_OK;
}

static fm_err check_tensor_arg(const fm_gguf *g, const fm_gguf_tensor *t, const void *buf, fm_error *e)
{
    if (!g || !t || !buf) return fm_error_set(e, FM_E_ARG, "fm_gguf_read: NULL argument");
    uintptr_t a = (uintptr_t)g->tensors, x = (uintptr_t)t;
    if (g->n_tensors == 0 || x < a || x >= a + g->n_tensors * sizeof *t ||
        (x - a) % sizeof *t != 0)
        return fm_error_set(e, FM_E_ARG, "%s: tensor is not one of this file's tensors", g->file.path);
    return FM_OK;
}

fm_err fm_gguf_read_tensor(const fm_gguf *g, const fm_gguf_tensor *t, void *buf, fm_error *e)
{
    fm_err rc = check_tensor_arg(g, t, buf, e);
    if (rc) return rc;
    if (t->size > SIZE_MAX)
        return fm_error_set(e, FM_E_RANGE, "%s: tensor '%s' is too large to read at once",
                            g->file.path, t->name.s);
    rc = fm_file_pread(&g->file, buf, (size_t)t->size, t->abs_offset, e);
    if (rc) fm_error_prefix(e, "tensor '%s'", t->name.s);
    return rc;
}

fm_err fm_gguf_read_rows(const fm_gguf *g, const fm_gguf_tensor *t, uint64_t row0, uint64_t nrows,
                         void *buf, fm_error *e)
{
    fm_err rc = check_tensor_arg(g, t, buf, e);
    if (rc) return rc;
    uint64_t total = t->n_elems / t->ne[0], end, row_bytes, off, bytes;
    if (!fm_add_u64(row0, nrows, &end) || end > total)
        return fm_error_set(e, FM_E_RANGE,
                            "%s: tensor '%s': rows [%" PRIu64 ", +%" PRIu64 ") outside its %" PRIu64
                            " rows",
                            g->file.path, t->name.s, row0, nrows, total);
    if (nrows == 0) return FM_OK;
    rc = fm_qtype_nbytes(t->type, t->ne[0], &row_bytes, e);
    if (rc) return rc;
    if (!fm_mul_u64(row0, row_bytes, &off) || !fm_add_u64(t->abs_offset, off, &off) ||
        !fm_mul_u64(nrows, row_bytes, &bytes) || bytes > SIZE_MAX)
        return fm_error_set(e, FM_E_RANGE, "%s: tensor '%s': row range too large", g->file.path,
                            t->name.s);
    rc = fm_file_pread(&g->file, buf, (size_t)bytes, off, e);
    if (rc) fm_error_prefix(e, "tensor '%s'", t->name.s);
    return rc;
}
