/* safetensors reader. Rules S1..S27 are in specs/safetensors.md; every check
 * below names the rule it enforces. Nothing from the file is trusted: the
 * header length is capped before anything is allocated, JSON integers are
 * range-checked, sizes use checked arithmetic, and the tensors of a file must
 * tile its data area exactly (as the reference Rust crate requires). */
#include "formats/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/quant.h"
#include "formats/util.h"

/* ---- dtypes ------------------------------------------------------------ */

static const struct {
    const char *name;
    uint32_t size;
} st_dtypes[FM_ST_DTYPE_COUNT_] = {
    [FM_ST_BOOL] = {"BOOL", 1},       [FM_ST_U8] = {"U8", 1},
    [FM_ST_I8] = {"I8", 1},           [FM_ST_U16] = {"U16", 2},
    [FM_ST_I16] = {"I16", 2},         [FM_ST_F16] = {"F16", 2},
    [FM_ST_BF16] = {"BF16", 2},       [FM_ST_U32] = {"U32", 4},
    [FM_ST_I32] = {"I32", 4},         [FM_ST_F32] = {"F32", 4},
    [FM_ST_U64] = {"U64", 8},         [FM_ST_I64] = {"I64", 8},
    [FM_ST_F64] = {"F64", 8},         [FM_ST_F8_E4M3] = {"F8_E4M3", 1},
    [FM_ST_F8_E5M2] = {"F8_E5M2", 1},
};

/* dtypes the reference crate knows but fm does not read (S10). */
static const char *const st_dtypes_unsupported[] = {
    "F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "C64",
};

const char *fm_st_dtype_name(fm_st_dtype d)
{
    if ((unsigned)d >= FM_ST_DTYPE_COUNT_) return "?";
    return st_dtypes[d].name;
}

uint32_t fm_st_dtype_size(fm_st_dtype d)
{
    if ((unsigned)d >= FM_ST_DTYPE_COUNT_) return 0;
    return st_dtypes[d].size;
}

int fm_st_dtype_qtype(fm_st_dtype d)
{
    switch (d) {
    case FM_ST_F32: return FM_Q_F32;
    case FM_ST_F16: return FM_Q_F16;
    case FM_ST_BF16: return FM_Q_BF16;
    case FM_ST_F8_E4M3: return FM_Q_F8_E4M3;
    case FM_ST_F8_E5M2: return FM_Q_F8_E5M2;
    default: return -1;
    }
}

/* OCP FP8 E4M3 "fn" (torch.float8_e4m3fn): bias 7, no infinities, only
 * S.1111.111 is NaN, exponent field 0 is subnormal (m * 2^-9). Exact. */
static float st_f8_e4m3_to_f32(uint8_t b)
{
    uint32_t s = (uint32_t)(b >> 7) << 31, e = (b >> 3) & 0xF, m = b & 7;
    uint32_t bits;
    if (e == 15 && m == 7) bits = s | 0x7FC00000u;
    else if (e == 0) {
        float v = ldexpf((float)m, -9); /* m < 8: exact */
        memcpy(&bits, &v, 4);
        bits |= s;
    } else
        bits = s | (e + 120) << 23 | m << 20; /* 2^(e-7) -> biased e-7+127 */
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* FP8 E5M2 (torch.float8_e5m2): bias 15, IEEE-like with inf and NaN,
 * exponent field 0 is subnormal (m * 2^-16). Exact. */
static float st_f8_e5m2_to_f32(uint8_t b)
{
    uint32_t s = (uint32_t)(b >> 7) << 31, e = (b >> 2) & 0x1F, m = b & 3;
    uint32_t bits;
    if (e == 31) bits = s | 0x7F800000u | (m ? 0x00400000u : 0);
    else if (e == 0) {
        float v = ldexpf((float)m, -16);
        memcpy(&bits, &v, 4);
        bits |= s;
    } else
        bits = s | (e + 112) << 23 | m << 21;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

fm_err fm_st_to_f32(fm_st_dtype d, const void *raw, uint64_t n, float *out, fm_error *e)
{
    if ((unsigned)d >= FM_ST_DTYPE_COUNT_)
        return fm_error_set(e, FM_E_ARG, "fm_st_to_f32: dtype %d is not a safetensors dtype", (int)d);
    if (n > 0 && (!raw || !out)) return fm_error_set(e, FM_E_ARG, "fm_st_to_f32: NULL buffer");
    const uint8_t *p = raw;
    switch (d) {
    case FM_ST_BOOL:
        for (uint64_t i = 0; i < n; i++) out[i] = p[i] ? 1.0f : 0.0f;
        break;
    case FM_ST_U8:
        for (uint64_t i = 0; i < n; i++) out[i] = (float)p[i];
        break;
    case FM_ST_I8:
        for (uint64_t i = 0; i < n; i++) out[i] = (float)(int8_t)p[i];
        break;
    case FM_ST_U16:
        for (uint64_t i = 0; i < n; i++) out[i] = (float)fm_rd_u16le(p + 2 * i);
        break;
    case FM_ST_I16:
        for (uint64_t i = 0; i < n; i++) out[i] = (float)(int16_t)fm_rd_u16le(p + 2 * i);
        break;
    case FM_ST_F16:
        for (uint64_t i = 0; i < n; i++) out[i] = fm_f16_to_f32(fm_rd_u16le(p + 2 * i));
        break;
    case FM_ST_BF16:
        for (uint64_t i = 0; i < n; i++) out[i] = fm_bf16_to_f32(fm_rd_u16le(p + 2 * i));
        break;
    case FM_ST_U32:
        for (uint64_t i = 0; i < n; i++) out[i] = (float)fm_rd_u32le(p + 4 * i);
        break;
    case FM_ST_I32:
        for (uint64_t i = 0; i < n; i++) out[i] = (float)(int32_t)fm_rd_u32le(p + 4 * i);
        break;
    case FM_ST_F32:
        for (uint64_t i = 0; i < n; i++) out[i] = fm_rd_f32le(p + 4 * i);
        break;
    case FM_ST_U64:
        for (uint64_t i = 0; i < n; i++) out[i] = (float)fm_rd_u64le(p + 8 * i);
        break;
    case FM_ST_I64:
        for (uint64_t i = 0; i < n; i++) out[i] = (float)(int64_t)fm_rd_u64le(p + 8 * i);
        break;
    case FM_ST_F64:
        for (uint64_t i = 0; i < n; i++) out[i] = (float)fm_rd_f64le(p + 8 * i);
        break;
    case FM_ST_F8_E4M3:
        for (uint64_t i = 0; i < n; i++) out[i] = st_f8_e4m3_to_f32(p[i]);
        break;
    case FM_ST_F8_E5M2:
        for (uint64_t i = 0; i < n; i++) out[i] = st_f8_e5m2_to_f32(p[i]);
        break;
    default:
        return fm_error_set(e, FM_E_INTERNAL, "fm_st_to_f32: dtype %d not handled", (int)d);
    }
    return FM_OK;
}

/* ---- lookup, read, close ----------------------------------------------- */

static int st_cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const fm_st_tensor *)a)->name, ((const fm_st_tensor *)b)->name);
}

static int st_cmp_meta_key(const void *a, const void *b)
{
    return strcmp(((const fm_st_meta *)a)->key, ((const fm_st_meta *)b)->key);
}

const fm_st_tensor *fm_st_find(const fm_st *st, const char *name)
{
    if (!st || !name || st->n_tensors == 0) return NULL;
    fm_st_tensor key;
    key.name = (char *)name;
    return bsearch(&key, st->tensors, (size_t)st->n_tensors, sizeof *st->tensors,
                   st_cmp_tensor_name);
}

fm_err fm_st_read(const fm_st *st, const fm_st_tensor *t, void *buf, fm_error *e)
{
    if (!st || !t || (t->size > 0 && !buf)) return fm_error_set(e, FM_E_ARG, "fm_st_read: NULL argument");
    if (st->n_tensors == 0 || t < st->tensors || t >= st->tensors + st->n_tensors)
        return fm_error_set(e, FM_E_ARG, "fm_st_read: tensor does not belong to this fm_st");
    if (t->file_index >= st->n_files)
        return fm_error_set(e, FM_E_INTERNAL, "fm_st_read: %s: bad file index", t->name);
    if (t->size > SIZE_MAX)
        return fm_error_set(e, FM_E_RANGE, "%s: tensor %s: %llu bytes exceed the address space",
                            st->files[t->file_index].path, t->name, (unsigned long long)t->size);
    if (t->size == 0) return FM_OK;
    return fm_file_pread(&st->files[t->file_index], buf, (size_t)t->size, t->offset, e);
}

void fm_st_close(fm_st *st)
{
    if (!st) return;
    if (st->files)
        for (uint32_t i = 0; i < st->n_files; i++) fm_file_close(&st->files[i]);
    free(st->files);
    if (st->tensors)
        for (uint64_t i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    if (st->meta)
        for (uint64_t i = 0; i < st->n_meta; i++) {
            free(st->meta[i].key);
            free(st->meta[i].value);
        }
    free(st->meta);
    free(st);
}

/* ---- one file ---------------------------------------------------------- */

/* Reads a JSON integer that must be in [0, 2^63). */
static bool st_json_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v)) return false;
    json_int_t x = json_integer_value(v);
    if (x < 0) return false;
    *out = (uint64_t)x;
    return true;
}

static const char *st_json_kind(const json_t *v)
{
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

/* Grows *arr (elements of size sz) so that it can hold need elements. */
static bool st_reserve(void **arr, uint64_t *cap, uint64_t need, size_t sz)
{
    if (need <= *cap) return true;
    uint64_t nc = *cap ? *cap : 16;
    while (nc < need)
        if (!fm_mul_u64(nc, 2, &nc)) return false;
    uint64_t bytes;
    if (!fm_mul_u64(nc, sz, &bytes) || bytes > SIZE_MAX) return false;
    void *p = realloc(*arr, (size_t)bytes);
    if (!p) return false;
    *arr = p;
    *cap = nc;
    return true;
}

typedef struct st_builder {
    fm_st *st;
    uint64_t cap_tensors, cap_meta;
} st_builder;

typedef struct st_span {
    uint64_t begin, end;
    uint64_t idx; /* into st->tensors */
} st_span;

static int st_cmp_span(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static fm_err st_parse_metadata(st_builder *b, const char *path, json_t *md, fm_error *e)
{
    fm_st *st = b->st;
    if (json_is_null(md)) return FM_OK; /* the reference reads null as "absent" */
    if (!json_is_object(md))
        return fm_error_set(e, FM_E_FORMAT, "%s: __metadata__ must be an object, found %s (S8)",
                            path, st_json_kind(md));
    uint64_t old_n = st->n_meta; /* sorted by key: pairs of earlier shards */
    const char *k;
    json_t *v;
    json_object_foreach(md, k, v) {
        if (!json_is_string(v))
            return fm_error_set(e, FM_E_FORMAT,
                                "%s: __metadata__[\"%.100s\"] must be a string, found %s (S8)", path,
                                k, st_json_kind(v));
        if (old_n > 0) {
            fm_st_meta key = {(char *)k, NULL};
            if (bsearch(&key, st->meta, (size_t)old_n, sizeof *st->meta, st_cmp_meta_key))
                continue; /* first shard wins (S27) */
        }
        if (!st_reserve((void **)&st->meta, &b->cap_meta, st->n_meta + 1, sizeof *st->meta))
            return fm_error_set(e, FM_E_NOMEM, "%s: out of memory for __metadata__", path);
        fm_st_meta *m = &st->meta[st->n_meta];
        m->key = strdup(k);
        m->value = strdup(json_string_value(v));
        st->n_meta++;
        if (!m->key || !m->value)
            return fm_error_set(e, FM_E_NOMEM, "%s: out of memory for __metadata__", path);
    }
    if (st->n_meta > 1) qsort(st->meta, (size_t)st->n_meta, sizeof *st->meta, st_cmp_meta_key);
    return FM_OK;
}

static fm_err st_parse_dtype(const char *path, const char *name, const json_t *v, fm_st_dtype *out,
                             fm_error *e)
{
    if (!json_is_string(v))
        return fm_error_set(e, FM_E_FORMAT, "%s: tensor %.200s: dtype must be a string, found %s (S10)",
                            path, name, st_json_kind(v));
    const char *s = json_string_value(v);
    for (int d = 0; d < FM_ST_DTYPE_COUNT_; d++)
        if (strcmp(s, st_dtypes[d].name) == 0) {
            *out = (fm_st_dtype)d;
            return FM_OK;
        }
    for (size_t i = 0; i < sizeof st_dtypes_unsupported / sizeof *st_dtypes_unsupported; i++)
        if (strcmp(s, st_dtypes_unsupported[i]) == 0)
            return fm_error_set(e, FM_E_UNSUPPORTED,
                                "%s: tensor %.200s: dtype %s is valid safetensors but fm does not "
                                "read it (S10)", path, name, s);
    return fm_error_set(e, FM_E_FORMAT,
                        "%s: tensor %.200s: unknown dtype \"%.40s\"; expected one of BOOL U8 I8 "
                        "U16 I16 F16 BF16 U32 I32 F32 U64 I64 F64 F8_E4M3 F8_E5M2 (S10)",
                        path, name, s);
}

/* Parses one tensor entry into t (name already set). begin/end are the
 * data_offsets relative to the data area. */
static fm_err st_parse_tensor(const char *path, const char *name, json_t *v, fm_st_tensor *t,
                              uint64_t *begin, uint64_t *end, fm_error *e)
{
    if (!json_is_object(v))
        return fm_error_set(e, FM_E_FORMAT, "%s: tensor %.200s: entry must be an object, found %s (S9)",
                            path, name, st_json_kind(v));
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!jd || !js || !jo)
        return fm_error_set(e, FM_E_FORMAT, "%s: tensor %.200s: missing \"%s\" (S9)", path, name,
                            !jd ? "dtype" : !js ? "shape" : "data_offsets");
    fm_err rc = st_parse_dtype(path, name, jd, &t->dtype, e);
    if (rc) return rc;

    if (!json_is_array(js))
        return fm_error_set(e, FM_E_FORMAT, "%s: tensor %.200s: shape must be an array, found %s (S11)",
                            path, name, st_json_kind(js));
    size_t nd = json_array_size(js);
    if (nd > FM_ST_MAX_DIMS)
        return fm_error_set(e, FM_E_UNSUPPORTED, "%s: tensor %.200s: %zu dimensions, fm allows at most %d (S11)",
                            path, name, nd, FM_ST_MAX_DIMS);
    t->n_dims = (uint32_t)nd;
    /* S12: the element count is folded left to right with overflow checks,
     * exactly as the reference does (so [2^32, 2^32, 0] overflows). */
    uint64_t n = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *x = json_array_get(js, i);
        uint64_t d;
        if (!st_json_u64(x, &d))
            return fm_error_set(e, FM_E_FORMAT,
                                "%s: tensor %.200s: shape[%zu] must be a non-negative integer, found %s (S11)",
                                path, name, i,
                                json_is_integer(x) ? "a negative integer" : st_json_kind(x));
        t->shape[i] = d;
        if (!fm_mul_u64(n, d, &n))
            return fm_error_set(e, FM_E_RANGE, "%s: tensor %.200s: element count of the shape overflows 64 bits (S12)",
                                path, name);
    }
    for (size_t i = nd; i < FM_ST_MAX_DIMS; i++) t->shape[i] = 0;
    t->n_elems = n;
    uint64_t bytes, bits;
    if (!fm_mul_u64(n, st_dtypes[t->dtype].size, &bytes) || !fm_mul_u64(bytes, 8, &bits))
        return fm_error_set(e, FM_E_RANGE, "%s: tensor %.200s: byte size of %llu %s elements overflows 64 bits (S12)",
                            path, name, (unsigned long long)n, st_dtypes[t->dtype].name);
    t->size = bytes;

    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return fm_error_set(e, FM_E_FORMAT,
                            "%s: tensor %.200s: data_offsets must be an array of 2 integers, found %s%s (S13)",
                            path, name, st_json_kind(jo), json_is_array(jo) ? " of another length" : "");
    for (int i = 0; i < 2; i++) {
        json_t *x = json_array_get(jo, (size_t)i);
        if (!st_json_u64(x, i ? end : begin))
            return fm_error_set(e, FM_E_FORMAT,
                                "%s: tensor %.200s: data_offsets[%d] must be a non-negative integer, found %s (S13)",
                                path, name, i, json_is_integer(x) ? "a negative integer" : st_json_kind(x));
    }
    if (*begin > *end)
        return fm_error_set(e, FM_E_FORMAT, "%s: tensor %.200s: data_offsets begin %llu > end %llu (S13)",
                            path, name, (unsigned long long)*begin, (unsigned long long)*end);
    if (*end - *begin != bytes)
        return fm_error_set(e, FM_E_FORMAT,
                            "%s: tensor %.200s: data_offsets span %llu bytes but %s x %llu elements needs %llu (S14)",
                            path, name, (unsigned long long)(*end - *begin), st_dtypes[t->dtype].name,
                            (unsigned long long)n, (unsigned long long)bytes);
    return FM_OK;
}

/* Parses st->files[fi] (already open) and appends its tensors and metadata. */
static fm_err st_parse_file(st_builder *b, uint32_t fi, fm_error *e)
{
    fm_st *st = b->st;
    const fm_file *f = &st->files[fi];
    const char *path = f->path;
    if (f->size < 8)
        return fm_error_set(e, FM_E_FORMAT, "%s: %llu bytes, shorter than the 8-byte header length (S1)",
                            path, (unsigned long long)f->size);
    uint8_t lenbuf[8];
    fm_err rc = fm_file_pread(f, lenbuf, 8, 0, e);
    if (rc) return rc;
    uint64_t hlen = fm_rd_u64le(lenbuf);
    if (hlen > FM_ST_MAX_HEADER)
        return fm_error_set(e, FM_E_FORMAT, "%s: header length %llu exceeds the cap of %u bytes (S2)",
                            path, (unsigned long long)hlen, (unsigned)FM_ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return fm_error_set(e, FM_E_FORMAT,
                            "%s: truncated: header length %llu but only %llu bytes follow it (S3)", path,
                            (unsigned long long)hlen, (unsigned long long)(f->size - 8));
    uint64_t data_start = 8 + hlen, data_size = f->size - data_start;

    char *hdr = malloc((size_t)hlen + 1);
    if (!hdr) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory for a %llu-byte header", path,
                                  (unsigned long long)hlen);
    rc = fm_file_pread(f, hdr, (size_t)hlen, 8, e);
    if (rc) {
        free(hdr);
        return rc;
    }
    hdr[hlen] = '\0';
    if (!fm_utf8_valid(hdr, (size_t)hlen)) {
        free(hdr);
        return fm_error_set(e, FM_E_FORMAT, "%s: header is not valid UTF-8 (S4)", path);
    }
    json_error_t jerr;
    json_t *root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    free(hdr);
    if (!root)
        return fm_error_set(e, FM_E_FORMAT, "%s: header JSON: %s at line %d column %d (%s)", path,
                            jerr.text, jerr.line, jerr.column,
                            json_error_code(&jerr) == json_error_duplicate_key ? "S7" : "S5");
    st_span *spans = NULL;
    if (!json_is_object(root)) {
        rc = fm_error_set(e, FM_E_FORMAT, "%s: header must be a JSON object, found %s (S6)", path,
                          st_json_kind(root));
        goto out;
    }
    size_t nmembers = json_object_size(root);
    json_t *md = json_object_get(root, "__metadata__");
    uint64_t nt = nmembers - (md ? 1 : 0);
    if (st->n_tensors + nt > FM_ST_MAX_TENSORS) {
        rc = fm_error_set(e, FM_E_RANGE, "%s: %llu tensors in all exceed the cap of %u (S18)", path,
                          (unsigned long long)(st->n_tensors + nt), (unsigned)FM_ST_MAX_TENSORS);
        goto out;
    }
    if (md && (rc = st_parse_metadata(b, path, md, e))) goto out;
    if (!st_reserve((void **)&st->tensors, &b->cap_tensors, st->n_tensors + nt, sizeof *st->tensors) ||
        !(spans = malloc(sizeof *spans * (nt ? nt : 1)))) {
        rc = fm_error_set(e, FM_E_NOMEM, "%s: out of memory for %llu tensors", path,
                          (unsigned long long)nt);
        goto out;
    }
    uint64_t k = 0;
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        if (strcmp(name, "__metadata__") == 0) continue;
        fm_st_tensor *t = &st->tensors[st->n_tensors];
        memset(t, 0, sizeof *t);
        t->file_index = fi;
        uint64_t begin = 0, end = 0;
        rc = st_parse_tensor(path, name, v, t, &begin, &end, e);
        if (rc) goto out;
        if (end > data_size) {
            rc = fm_error_set(e, FM_E_FORMAT,
                              "%s: tensor %.200s: data_offsets end %llu beyond the %llu-byte data area (S16)",
                              path, name, (unsigned long long)end, (unsigned long long)data_size);
            goto out;
        }
        t->offset = data_start + begin; /* no overflow: end <= data_size */
        t->name = strdup(name);
        if (!t->name) {
            rc = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
            goto out;
        }
        st->n_tensors++;
        spans[k].begin = begin;
        spans[k].end = end;
        spans[k].idx = st->n_tensors - 1;
        k++;
    }
    /* S15/S17: sorted by (begin, end) the tensors tile [0, data_size). */
    qsort(spans, (size_t)k, sizeof *spans, st_cmp_span);
    uint64_t pos = 0;
    for (uint64_t i = 0; i < k; i++) {
        if (spans[i].begin != pos) {
            const char *tn = st->tensors[spans[i].idx].name;
            if (spans[i].begin < pos)
                rc = fm_error_set(e, FM_E_FORMAT,
                                  "%s: tensor %.200s: bytes [%llu, %llu) overlap %.200s, which ends at %llu (S15)",
                                  path, tn, (unsigned long long)spans[i].begin,
                                  (unsigned long long)spans[i].end,
                                  st->tensors[spans[i - 1].idx].name, (unsigned long long)pos);
            else
                rc = fm_error_set(e, FM_E_FORMAT,
                                  "%s: tensor %.200s: begins at %llu, leaving a gap after byte %llu of the data area (S15)",
                                  path, tn, (unsigned long long)spans[i].begin, (unsigned long long)pos);
            goto out;
        }
        pos = spans[i].end;
    }
    if (pos != data_size) {
        rc = fm_error_set(e, FM_E_FORMAT,
                          "%s: tensors cover %llu bytes of the %llu-byte data area; trailing bytes are not allowed (S17)",
                          path, (unsigned long long)pos, (unsigned long long)data_size);
        goto out;
    }
    rc = FM_OK;
out:
    free(spans);
    json_decref(root);
    return rc;
}

static fm_err st_new(fm_st **out, uint32_t n_files, fm_error *e)
{
    fm_st *st = calloc(1, sizeof *st);
    if (!st) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    st->files = calloc(n_files ? n_files : 1, sizeof *st->files);
    if (!st->files) {
        free(st);
        return fm_error_set(e, FM_E_NOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < n_files; i++) {
        st->files[i].fd = -1;
        st->files[i].path = NULL;
    }
    *out = st;
    return FM_OK;
}

/* Sorts by name; a name in two files is an error (S26). */
static fm_err st_finish(fm_st *st, const char *what, fm_error *e)
{
    if (st->n_tensors > 1)
        qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, st_cmp_tensor_name);
    for (uint64_t i = 1; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0)
            return fm_error_set(e, FM_E_FORMAT, "%s: tensor %.200s is in both %s and %s (S26)", what,
                                st->tensors[i].name, st->files[st->tensors[i - 1].file_index].path,
                                st->files[st->tensors[i].file_index].path);
    return FM_OK;
}

static fm_err st_open_single(fm_st **out, const char *path, fm_error *e)
{
    fm_st *st = NULL;
    fm_err rc = st_new(&st, 1, e);
    if (rc) return rc;
    st_builder b = {st, 0, 0};
    rc = fm_file_open(&st->files[0], path, 0, e);
    if (!rc) {
        st->n_files = 1;
        rc = st_parse_file(&b, 0, e);
    }
    if (!rc) rc = st_finish(st, path, e);
    if (rc) {
        fm_st_close(st);
        return rc;
    }
    *out = st;
    return FM_OK;
}

/* ---- sharded directory -------------------------------------------------- */

static char *st_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), n = strlen(name);
    char *p = malloc(a + 1 + n + 1);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, n + 1);
    return p;
}

/* S22: a shard is named by a plain file name in the index's directory. */
static bool st_shard_name_ok(const char *s)
{
    if (!*s || strchr(s, '/') || strchr(s, '\\') || strstr(s, "..")) return false;
    if (strcmp(s, ".") == 0) return false;
    return true;
}

typedef struct st_wm_entry {
    const char *shard, *tensor; /* owned by the JSON tree */
} st_wm_entry;

static int st_cmp_wm(const void *a, const void *b)
{
    const st_wm_entry *x = a, *y = b;
    int c = strcmp(x->shard, y->shard);
    return c ? c : strcmp(x->tensor, y->tensor);
}

static fm_err st_open_index(fm_st **out, const char *ipath, const char *dir, fm_error *e)
{
    char *buf = NULL;
    size_t len = 0;
    fm_err rc = fm_file_slurp(ipath, FM_ST_MAX_HEADER, &buf, &len, e);
    if (rc) return rc == FM_E_RANGE ? fm_error_prefix(e, "index (S21)") : rc;
    if (!fm_utf8_valid(buf, len)) {
        free(buf);
        return fm_error_set(e, FM_E_FORMAT, "%s: not valid UTF-8 (S21)", ipath);
    }
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (!root)
        return fm_error_set(e, FM_E_FORMAT, "%s: JSON: %s at line %d column %d (S21)", ipath,
                            jerr.text, jerr.line, jerr.column);
    st_wm_entry *ents = NULL;
    char **shard_names = NULL;
    uint32_t n_shards = 0;
    fm_st *st = NULL;
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    json_t *jm = json_is_object(root) ? json_object_get(root, "metadata") : NULL;
    if (!json_is_object(root)) {
        rc = fm_error_set(e, FM_E_FORMAT, "%s: must be a JSON object, found %s (S21)", ipath,
                          st_json_kind(root));
        goto out;
    }
    if (!json_is_object(wm)) {
        rc = fm_error_set(e, FM_E_FORMAT, "%s: \"weight_map\" must be an object, found %s (S21)",
                          ipath, wm ? st_json_kind(wm) : "nothing");
        goto out;
    }
    if (jm && !json_is_object(jm) && !json_is_null(jm)) {
        rc = fm_error_set(e, FM_E_FORMAT, "%s: \"metadata\" must be an object, found %s (S21)",
                          ipath, st_json_kind(jm));
        goto out;
    }
    size_t n = json_object_size(wm);
    if (n > FM_ST_MAX_TENSORS) {
        rc = fm_error_set(e, FM_E_RANGE, "%s: weight_map has %zu tensors, cap is %u (S18)", ipath, n,
                          (unsigned)FM_ST_MAX_TENSORS);
        goto out;
    }
    ents = malloc(sizeof *ents * (n ? n : 1));
    if (!ents) {
        rc = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", ipath);
        goto out;
    }
    size_t k = 0;
    const char *tname;
    json_t *v;
    json_object_foreach(wm, tname, v) {
        if (!json_is_string(v)) {
            rc = fm_error_set(e, FM_E_FORMAT, "%s: weight_map[\"%.200s\"] must be a string, found %s (S21)",
                              ipath, tname, st_json_kind(v));
            goto out;
        }
        const char *s = json_string_value(v);
        if (!st_shard_name_ok(s)) {
            rc = fm_error_set(e, FM_E_FORMAT,
                              "%s: weight_map[\"%.200s\"] = \"%.200s\" is not a plain file name (S22)",
                              ipath, tname, s);
            goto out;
        }
        ents[k].shard = s;
        ents[k].tensor = tname;
        k++;
    }
    qsort(ents, k, sizeof *ents, st_cmp_wm);
    for (size_t i = 0; i < k; i++)
        if (i == 0 || strcmp(ents[i].shard, ents[i - 1].shard) != 0) n_shards++;
    if (n_shards > FM_ST_MAX_FILES) {
        rc = fm_error_set(e, FM_E_RANGE, "%s: %u shard files, cap is %u (S23)", ipath, n_shards,
                          (unsigned)FM_ST_MAX_FILES);
        goto out;
    }
    rc = st_new(&st, n_shards, e);
    if (rc) goto out;
    shard_names = calloc(n_shards ? n_shards : 1, sizeof *shard_names);
    if (!shard_names) {
        rc = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", ipath);
        goto out;
    }
    st_builder b = {st, 0, 0};
    uint32_t si = 0;
    for (size_t i = 0; i < k; i++) {
        if (i > 0 && strcmp(ents[i].shard, ents[i - 1].shard) == 0) continue;
        shard_names[si] = (char *)ents[i].shard;
        char *sp = st_join(dir, ents[i].shard);
        if (!sp) {
            rc = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", ipath);
            goto out;
        }
        struct stat sb;
        if (stat(sp, &sb) != 0) {
            int err = errno;
            rc = fm_error_set(e, err == ENOENT ? FM_E_NOTFOUND : FM_E_IO,
                              "%s: shard %s (holding tensor %.200s) cannot be opened: %s (S24)",
                              ipath, sp, ents[i].tensor, strerror(err));
            free(sp);
            goto out;
        }
        if (!S_ISREG(sb.st_mode)) { /* never open() a FIFO or device: it may block */
            rc = fm_error_set(e, FM_E_IO, "%s: shard %s is not a regular file (S24)", ipath, sp);
            free(sp);
            goto out;
        }
        rc = fm_file_open(&st->files[si], sp, 0, e);
        free(sp);
        if (rc) goto out;
        st->n_files = ++si;
        rc = st_parse_file(&b, si - 1, e);
        if (rc) goto out;
    }
    rc = st_finish(st, ipath, e);
    if (rc) goto out;
    /* S25: each weight_map entry is in its shard; S26: each shard tensor is
     * listed, under its own shard. */
    for (uint64_t i = 0; i < st->n_tensors; i++) {
        const fm_st_tensor *t = &st->tensors[i];
        json_t *sv = json_object_get(wm, t->name);
        if (!sv) {
            rc = fm_error_set(e, FM_E_FORMAT, "%s: tensor %.200s of shard %s is not in weight_map (S26)",
                              ipath, t->name, st->files[t->file_index].path);
            goto out;
        }
        if (strcmp(json_string_value(sv), shard_names[t->file_index]) != 0) {
            rc = fm_error_set(e, FM_E_FORMAT,
                              "%s: weight_map puts tensor %.200s in %s but it is in %s (S25)", ipath,
                              t->name, json_string_value(sv), shard_names[t->file_index]);
            goto out;
        }
    }
    for (size_t i = 0; i < k; i++)
        if (!fm_st_find(st, ents[i].tensor)) {
            rc = fm_error_set(e, FM_E_FORMAT,
                              "%s: weight_map puts tensor %.200s in %s, which has no such tensor (S25)",
                              ipath, ents[i].tensor, ents[i].shard);
            goto out;
        }
    *out = st;
    st = NULL;
    rc = FM_OK;
out:
    fm_st_close(st);
    free(shard_names);
    free(ents);
    json_decref(root);
    return rc;
}

static bool st_is_regular(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool st_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

fm_err fm_st_open(fm_st **out, const char *path, fm_error *e)
{
    if (!out || !path) return fm_error_set(e, FM_E_ARG, "fm_st_open: NULL argument");
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return fm_error_set(e, errno == ENOENT ? FM_E_NOTFOUND : FM_E_IO, "%s: cannot open: %s",
                            path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) { /* S19: as transformers, the single file wins */
        char *single = st_join(path, "model.safetensors");
        char *index = st_join(path, "model.safetensors.index.json");
        fm_err rc;
        if (!single || !index) rc = fm_error_set(e, FM_E_NOMEM, "out of memory");
        else if (st_is_regular(single)) rc = st_open_single(out, single, e);
        else if (st_is_regular(index)) rc = st_open_index(out, index, path, e);
        else
            rc = fm_error_set(e, FM_E_NOTFOUND,
                              "%s: directory holds neither model.safetensors nor "
                              "model.safetensors.index.json (S19)", path);
        free(single);
        free(index);
        return rc;
    }
    if (!S_ISREG(sb.st_mode))
        return fm_error_set(e, FM_E_IO, "%s: not a regular file or directory", path);
    if (st_ends_with(path, ".index.json")) {
        const char *slash = strrchr(path, '/');
        char *dir = slash ? strndup(path, (size_t)(slash - path == 0 ? 1 : slash - path)) : strdup(".");
        if (!dir) return fm_error_set(e, FM_E_NOMEM, "out of memory");
        fm_err rc = st_open_index(out, path, dir, e);
        free(dir);
        return rc;
    }
    return st_open_single(out, path, e);
}
