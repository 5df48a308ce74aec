/* fm-inspect: lists the metadata and tensors of a GGUF file or a
 * safetensors file/directory, and extracts tensors as float32.
 *
 *   fm-inspect [--json] [--full-arrays] PATH
 *   fm-inspect PATH --tensor NAME --f32 OUT [--force]   (OUT "-": stdout)
 *   fm-inspect PATH --all-f32-sha256
 *   fm-inspect BUNDLE.fmb --expert LAYER EXPERT PART --f32 OUT [--force]
 *
 * PATH may also be an fm bundle (.fmb): its dense tensors and, for each
 * expert layer and part, the fused tensor GGUF would hold
 * ("blk.L.ffn_gate_exps.weight", reassembled from the expert blobs in expert
 * order; formats/bundle_view.h) are listed, extracted and hashed like GGUF
 * tensors, so a bundle's --all-f32-sha256 compares with its source's.
 * --json on a bundle prints the manifest. --arch prints the canonical
 * hyperparameters (formats/arch.h; a bundle's "arch", or what
 * fm_arch_hparams_from_gguf reads from a GGUF) as compact JSON, keys sorted.
 *
 * Shapes are printed row-major (slowest dimension first): a GGUF tensor with
 * ne = [ne0, ne1, ne2] is shown as [ne2, ne1, ne0]. The float32 output is
 * little-endian in storage order, i.e. ne2 x ne1 rows of ne0 values.
 * Exit status: 0 ok, 2 unreadable or invalid input (or bad usage), 1 any
 * other failure (e.g. a type fm cannot dequantize, an output write error). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "formats/arch.h"
#include "formats/bundle.h"
#include "formats/bundle_view.h"
#include "formats/err.h"
#include "formats/f32_stream.h"
#include "formats/file.h"
#include "formats/gguf.h"
#include "formats/quant.h"
#include "formats/safetensors.h"
#include "formats/sha256.h"
#include "formats/util.h"
#define FM_CLI_PROG "fm-inspect"
#include "tools/cli.h"

enum { TEXT_ARRAY_HEAD = 8, JSON_ARRAY_HEAD = 16, TEXT_STR_MAX = 160, MAX_NEST_PRINT = 4 };

typedef struct src {
    const char *path;
    fm_gguf *g;
    fm_st *st;
    fm_bundle *b;        /* an fm bundle: views below */
    fm_bundle_view *bv;
    size_t nbv;
} src;


static void usage(FILE *f)
{
    fprintf(f,
            "usage: fm-inspect [--json] [--full-arrays] FILE_OR_DIR\n"
            "       fm-inspect FILE_OR_DIR --tensor NAME --f32 OUT [--force]\n"
            "       fm-inspect FILE_OR_DIR --all-f32-sha256\n"
            "       fm-inspect BUNDLE.fmb --expert LAYER EXPERT PART --f32 OUT [--force]\n"
            "       fm-inspect BUNDLE_OR_GGUF --arch\n"
            "FILE_OR_DIR: a GGUF file, a .safetensors file, a directory of safetensors\n"
            "shards, or an fm bundle (expert parts appear as fused blk.L.ffn_*_exps tensors). Shapes are row-major (slowest dimension first). --f32 writes the\n"
            "tensor as little-endian float32 in storage order (OUT '-' is stdout);\n"
            "--all-f32-sha256 prints name, type and SHA-256 of that output per tensor.\n"
            "Exit: 0 ok, 2 unreadable/invalid input, 1 other failure.\n");
}

/* Exit code for an error met while reading the input. */
static int input_code(fm_err c)
{
    switch (c) {
    case FM_E_IO:
    case FM_E_FORMAT:
    case FM_E_RANGE:
    case FM_E_VERSION:
    case FM_E_CHECKSUM:
    case FM_E_NOTFOUND:
        return EXIT_INPUT;
    default:
        return EXIT_FAIL;
    }
}

/* ------------------------------------------------------------------ opening */

static int open_src(src *s, const char *path)
{
    fm_error e = {0};
    struct stat sb;
    s->path = path;
    if (stat(path, &sb) != 0) return fail(EXIT_INPUT, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        if (fm_st_open(&s->st, path, &e) != FM_OK) return fail(EXIT_INPUT, "%s", e.msg);
        return 0;
    }
    fm_file f = FM_FILE_INIT;
    if (fm_file_open(&f, path, 0, &e) != FM_OK) return fail(EXIT_INPUT, "%s", e.msg);
    uint8_t head[9] = {0}, sbm[8] = {0};
    size_t n = f.size < sizeof head ? (size_t)f.size : sizeof head;
    fm_err rc = fm_file_pread(&f, head, n, 0, &e);
    bool is_bundle = rc == FM_OK && f.size >= 520 && fm_file_pread(&f, sbm, 8, 512, NULL) == FM_OK &&
                     memcmp(sbm, FM_BUNDLE_MAGIC, 8) == 0;
    fm_file_close(&f);
    if (rc != FM_OK) return fail(EXIT_INPUT, "%s", e.msg);
    if (is_bundle) {
        if (fm_bundle_open(&s->b, path, 0, &e) != FM_OK) return fail(EXIT_INPUT, "%s", e.msg);
        if (fm_bundle_views(s->b, &s->bv, &s->nbv, &e) != FM_OK) return fail(EXIT_FAIL, "%s", e.msg);
        return 0;
    }
    if (n >= 4 && memcmp(head, "GGUF", 4) == 0) {
        if (fm_gguf_open(&s->g, path, &e) != FM_OK) return fail(EXIT_INPUT, "%s", e.msg);
        return 0;
    }
    size_t plen = strlen(path);
    bool st_name = plen >= 12 && strcmp(path + plen - 12, ".safetensors") == 0;
    if (st_name || (n == 9 && head[8] == '{')) {
        if (fm_st_open(&s->st, path, &e) != FM_OK) return fail(EXIT_INPUT, "%s", e.msg);
        return 0;
    }
    return fail(EXIT_INPUT,
                "%s: not a GGUF file (magic \"GGUF\") nor a safetensors file (8-byte length, "
                "then '{'); found %zu bytes starting %02x %02x %02x %02x",
                path, n, head[0], head[1], head[2], head[3]);
}

static void close_src(src *s)
{
    if (s->g) fm_gguf_close(s->g);
    if (s->st) fm_st_close(s->st);
    if (s->b) fm_bundle_close(s->b);
    free(s->bv);
    s->g = NULL;
    s->st = NULL;
    s->b = NULL;
    s->bv = NULL;
}

static const char *qtype_name(uint32_t t, char buf[32])
{
    const fm_qtype_traits *q = fm_qtype_get(t);
    if (q && q->name) return q->name;
    snprintf(buf, 32, "type%" PRIu32, t);
    return buf;
}

/* -------------------------------------------------------------- text output */

static void put_escaped(FILE *o, const char *s, uint64_t len, uint64_t max)
{
    bool utf8 = fm_utf8_valid(s, (size_t)len);
    uint64_t n = len > max ? max : len;
    if (utf8 && n < len) /* do not cut a UTF-8 sequence in two */
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    fputc('"', o);
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", o); break;
        case '\\': fputs("\\\\", o); break;
        case '\n': fputs("\\n", o); break;
        case '\t': fputs("\\t", o); break;
        case '\r': fputs("\\r", o); break;
        default:
            if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8)) fprintf(o, "\\x%02x", c);
            else fputc(c, o);
        }
    }
    fputc('"', o);
    if (n < len) fprintf(o, "... (%" PRIu64 " bytes)", len);
}

/* A key or name: as is when it is valid UTF-8 without spaces, controls,
 * quotes or backslashes, else quoted and escaped. */
static void put_name(FILE *o, const char *s, uint64_t len)
{
    bool plain = len > 0 && fm_utf8_valid(s, (size_t)len);
    for (uint64_t i = 0; plain && i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '"' || c == '\\') plain = false;
    }
    if (plain) fwrite(s, 1, (size_t)len, o);
    else put_escaped(o, s, len, 200);
}

/* Display width of a name as put_name prints it (UTF-8 sequences count 1). */
static int name_width(const char *s, uint64_t len)
{
    int w = 0;
    for (uint64_t i = 0; i < len && w < 64; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) w++;
    return w;
}

static void put_value_text(FILE *o, const fm_gguf_value *v, unsigned depth);

/* The shortest %g form that reads back as the same float (or double). */
static void put_shortest(FILE *o, double d, bool single)
{
    char b[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, d);
        double r = strtod(b, NULL);
        if (single ? (float)r == (float)d : r == d) break;
    }
    fputs(b, o);
}

static void put_scalar_text(FILE *o, const fm_gguf_value *v)
{
    switch (v->type) {
    case FM_GGUF_UINT8: case FM_GGUF_UINT16: case FM_GGUF_UINT32: case FM_GGUF_UINT64:
        fprintf(o, "%" PRIu64, v->v.u64);
        break;
    case FM_GGUF_INT8: case FM_GGUF_INT16: case FM_GGUF_INT32: case FM_GGUF_INT64:
        fprintf(o, "%" PRId64, v->v.i64);
        break;
    case FM_GGUF_FLOAT32: put_shortest(o, v->v.f64, true); break;
    case FM_GGUF_FLOAT64: put_shortest(o, v->v.f64, false); break;
    case FM_GGUF_BOOL: fputs(v->v.u64 ? "true" : "false", o); break;
    case FM_GGUF_STRING: put_escaped(o, v->v.str.s, v->v.str.len, TEXT_STR_MAX); break;
    default: fprintf(o, "<type %" PRIu32 ">", v->type);
    }
}

static void put_value_text(FILE *o, const fm_gguf_value *v, unsigned depth)
{
    if (v->type != FM_GGUF_ARRAY) {
        put_scalar_text(o, v);
        return;
    }
    uint64_t n = v->v.arr.n;
    if (depth >= MAX_NEST_PRINT) {
        fprintf(o, "[... %" PRIu64 " elements]", n);
        return;
    }
    uint64_t show = n < TEXT_ARRAY_HEAD ? n : TEXT_ARRAY_HEAD;
    fputc('[', o);
    for (uint64_t i = 0; i < show && v->v.arr.vals; i++) {
        if (i) fputs(", ", o);
        put_value_text(o, &v->v.arr.vals[i], depth + 1);
    }
    if (show < n) fprintf(o, ", ... (%" PRIu64 " more)", n - show);
    fputc(']', o);
}

static void type_text(const fm_gguf_value *v, char *buf, size_t cap)
{
    if (v->type == FM_GGUF_ARRAY)
        snprintf(buf, cap, "%s[%" PRIu64 "]", fm_gguf_vtype_name(v->v.arr.type), v->v.arr.n);
    else snprintf(buf, cap, "%s", fm_gguf_vtype_name(v->type));
}

static void shape_text(const uint64_t *dims, uint32_t n, bool reversed, char *buf, size_t cap)
{
    size_t p = 0;
    p += (size_t)snprintf(buf + p, cap - p, "[");
    for (uint32_t i = 0; i < n && p < cap; i++) {
        uint64_t d = reversed ? dims[n - 1 - i] : dims[i];
        p += (size_t)snprintf(buf + p, cap - p, "%s%" PRIu64, i ? ", " : "", d);
    }
    if (p < cap) snprintf(buf + p, cap - p, "]");
}

static int list_gguf_text(const fm_gguf *g, const char *path)
{
    FILE *o = stdout;
    fprintf(o, "%s: GGUF v%" PRIu32 ", %" PRIu64 " bytes, %" PRIu64 " metadata keys, %" PRIu64
               " tensors, alignment %" PRIu64 ", data at %" PRIu64 "\n",
            path, g->version, g->file.size, g->n_kv, g->n_tensors, g->alignment, g->data_offset);
    int kw = 0, nw = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        int l = name_width(g->kv[i].key.s, g->kv[i].key.len);
        if (l > kw) kw = l;
    }
    fprintf(o, "metadata:\n");
    for (uint64_t i = 0; i < g->n_kv; i++) {
        char tb[48];
        type_text(&g->kv[i].val, tb, sizeof tb);
        int pad = kw - name_width(g->kv[i].key.s, g->kv[i].key.len);
        fputs("  ", o);
        put_name(o, g->kv[i].key.s, g->kv[i].key.len);
        fprintf(o, "%*s  %-16s ", pad > 0 ? pad : 0, "", tb);
        put_value_text(o, &g->kv[i].val, 0);
        fputc('\n', o);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        int l = name_width(g->tensors[i].name.s, g->tensors[i].name.len);
        if (l > nw) nw = l;
    }
    fprintf(o, "tensors: (name, type, shape row-major, offset in file, bytes)\n");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const fm_gguf_tensor *t = &g->tensors[i];
        char sb[160], tb[32];
        shape_text(t->ne, t->n_dims, true, sb, sizeof sb);
        int pad = nw - name_width(t->name.s, t->name.len);
        fputs("  ", o);
        put_name(o, t->name.s, t->name.len);
        fprintf(o, "%*s  %-7s %-24s %12" PRIu64 " %12" PRIu64 "\n", pad > 0 ? pad : 0, "",
                qtype_name(t->type, tb), sb, t->abs_offset, t->size);
    }
    return 0;
}

static int list_st_text(const fm_st *st, const char *path)
{
    FILE *o = stdout;
    fprintf(o, "%s: safetensors, %" PRIu32 " file%s, %" PRIu64 " metadata keys, %" PRIu64
               " tensors\n",
            path, st->n_files, st->n_files == 1 ? "" : "s", st->n_meta, st->n_tensors);
    if (st->n_files > 1)
        for (uint32_t i = 0; i < st->n_files; i++)
            fprintf(o, "  file %" PRIu32 ": %s (%" PRIu64 " bytes)\n", i, st->files[i].path,
                    st->files[i].size);
    fprintf(o, "metadata:\n");
    int kw = 0;
    for (uint64_t i = 0; i < st->n_meta; i++) {
        int l = name_width(st->meta[i].key, strlen(st->meta[i].key));
        if (l > kw) kw = l;
    }
    for (uint64_t i = 0; i < st->n_meta; i++) {
        int pad = kw - name_width(st->meta[i].key, strlen(st->meta[i].key));
        fputs("  ", o);
        put_name(o, st->meta[i].key, strlen(st->meta[i].key));
        fprintf(o, "%*s  string  ", pad > 0 ? pad : 0, "");
        put_escaped(o, st->meta[i].value, strlen(st->meta[i].value), TEXT_STR_MAX);
        fputc('\n', o);
    }
    int nw = 0;
    for (uint64_t i = 0; i < st->n_tensors; i++) {
        int l = name_width(st->tensors[i].name, strlen(st->tensors[i].name));
        if (l > nw) nw = l;
    }
    fprintf(o, "tensors: (name, dtype, shape row-major,%s offset in file, bytes)\n",
            st->n_files > 1 ? " file," : "");
    for (uint64_t i = 0; i < st->n_tensors; i++) {
        const fm_st_tensor *t = &st->tensors[i];
        char sb[256];
        shape_text(t->shape, t->n_dims, false, sb, sizeof sb);
        int pad = nw - name_width(t->name, strlen(t->name));
        fputs("  ", o);
        put_name(o, t->name, strlen(t->name));
        fprintf(o, "%*s  %-7s %-24s", pad > 0 ? pad : 0, "", fm_st_dtype_name(t->dtype), sb);
        if (st->n_files > 1) fprintf(o, " %4" PRIu32, t->file_index);
        fprintf(o, " %12" PRIu64 " %12" PRIu64 "\n", t->offset, t->size);
    }
    return 0;
}

/* -------------------------------------------------------------- JSON output */

/* A JSON string of arbitrary bytes: invalid UTF-8 bytes become U+FFFD. */
static json_t *jstr(const char *s, size_t len)
{
    if (!s) return json_null();
    if (fm_utf8_valid(s, len)) return json_stringn(s, len);
    size_t cap;
    if (!fm_mul_size(len, 3, &cap)) return json_null();
    char *b = malloc(cap + 1);
    if (!b) return json_null();
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t l = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (l && i + l <= len && fm_utf8_valid(s + i, l)) {
            memcpy(b + o, s + i, l);
            o += l;
            i += l;
        } else {
            memcpy(b + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    json_t *j = json_stringn(b, o);
    free(b);
    return j ? j : json_null();
}

static json_t *ju64(uint64_t v)
{
    if (v > (uint64_t)INT64_MAX) {
        char b[24];
        snprintf(b, sizeof b, "%" PRIu64, v);
        return json_string(b);
    }
    return json_integer((json_int_t)v);
}

static json_t *jreal(double d)
{
    if (isnan(d)) return json_string("nan");
    if (isinf(d)) return json_string(d > 0 ? "inf" : "-inf");
    return json_real(d);
}

static json_t *jvalue(const fm_gguf_value *v, bool full, unsigned depth)
{
    switch (v->type) {
    case FM_GGUF_UINT8: case FM_GGUF_UINT16: case FM_GGUF_UINT32: case FM_GGUF_UINT64:
        return ju64(v->v.u64);
    case FM_GGUF_INT8: case FM_GGUF_INT16: case FM_GGUF_INT32: case FM_GGUF_INT64:
        return json_integer((json_int_t)v->v.i64);
    case FM_GGUF_FLOAT32: case FM_GGUF_FLOAT64: return jreal(v->v.f64);
    case FM_GGUF_BOOL: return json_boolean(v->v.u64 != 0);
    case FM_GGUF_STRING: return jstr(v->v.str.s, (size_t)v->v.str.len);
    case FM_GGUF_ARRAY: {
        json_t *a = json_array();
        uint64_t n = v->v.arr.n, show = full ? n : (n < JSON_ARRAY_HEAD ? n : JSON_ARRAY_HEAD);
        if (depth >= FM_GGUF_MAX_ARRAY_DEPTH + 1) show = 0;
        for (uint64_t i = 0; i < show && v->v.arr.vals; i++)
            json_array_append_new(a, jvalue(&v->v.arr.vals[i], full, depth + 1));
        return a;
    }
    default: return json_null();
    }
}

static json_t *jshape(const uint64_t *dims, uint32_t n, bool reversed)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < n; i++) json_array_append_new(a, ju64(reversed ? dims[n - 1 - i] : dims[i]));
    return a;
}

static json_t *json_gguf(const fm_gguf *g, const char *path, bool full)
{
    json_t *r = json_object(), *meta = json_array(), *ts = json_array();
    json_object_set_new(r, "path", jstr(path, strlen(path)));
    json_object_set_new(r, "format", json_string("gguf"));
    json_object_set_new(r, "version", ju64(g->version));
    json_object_set_new(r, "file_size", ju64(g->file.size));
    json_object_set_new(r, "alignment", ju64(g->alignment));
    json_object_set_new(r, "data_offset", ju64(g->data_offset));
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const fm_gguf_kv *kv = &g->kv[i];
        json_t *m = json_object();
        json_object_set_new(m, "key", jstr(kv->key.s, (size_t)kv->key.len));
        json_object_set_new(m, "type", json_string(fm_gguf_vtype_name(kv->val.type)));
        if (kv->val.type == FM_GGUF_ARRAY) {
            json_object_set_new(m, "elem_type", json_string(fm_gguf_vtype_name(kv->val.v.arr.type)));
            json_object_set_new(m, "count", ju64(kv->val.v.arr.n));
            json_object_set_new(m, "truncated", json_boolean(!full && kv->val.v.arr.n > JSON_ARRAY_HEAD));
        }
        json_object_set_new(m, "value", jvalue(&kv->val, full, 0));
        json_array_append_new(meta, m);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const fm_gguf_tensor *t = &g->tensors[i];
        json_t *o = json_object();
        char tb[32];
        json_object_set_new(o, "name", jstr(t->name.s, (size_t)t->name.len));
        json_object_set_new(o, "type", json_string(qtype_name(t->type, tb)));
        json_object_set_new(o, "type_id", ju64(t->type));
        json_object_set_new(o, "shape", jshape(t->ne, t->n_dims, true));
        json_object_set_new(o, "ne", jshape(t->ne, t->n_dims, false));
        json_object_set_new(o, "n_elems", ju64(t->n_elems));
        json_object_set_new(o, "offset", ju64(t->abs_offset));
        json_object_set_new(o, "data_offset_rel", ju64(t->offset));
        json_object_set_new(o, "size", ju64(t->size));
        json_array_append_new(ts, o);
    }
    json_object_set_new(r, "metadata", meta);
    json_object_set_new(r, "tensors", ts);
    return r;
}

static json_t *json_st(const fm_st *st, const char *path)
{
    json_t *r = json_object(), *files = json_array(), *meta = json_array(), *ts = json_array();
    json_object_set_new(r, "path", jstr(path, strlen(path)));
    json_object_set_new(r, "format", json_string("safetensors"));
    for (uint32_t i = 0; i < st->n_files; i++) {
        json_t *f = json_object();
        const char *p = st->files[i].path ? st->files[i].path : "";
        json_object_set_new(f, "path", jstr(p, strlen(p)));
        json_object_set_new(f, "size", ju64(st->files[i].size));
        json_array_append_new(files, f);
    }
    for (uint64_t i = 0; i < st->n_meta; i++) {
        json_t *m = json_object();
        json_object_set_new(m, "key", jstr(st->meta[i].key, strlen(st->meta[i].key)));
        json_object_set_new(m, "type", json_string("string"));
        json_object_set_new(m, "value", jstr(st->meta[i].value, strlen(st->meta[i].value)));
        json_array_append_new(meta, m);
    }
    for (uint64_t i = 0; i < st->n_tensors; i++) {
        const fm_st_tensor *t = &st->tensors[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", jstr(t->name, strlen(t->name)));
        json_object_set_new(o, "type", json_string(fm_st_dtype_name(t->dtype)));
        json_object_set_new(o, "shape", jshape(t->shape, t->n_dims, false));
        json_object_set_new(o, "n_elems", ju64(t->n_elems));
        json_object_set_new(o, "file", ju64(t->file_index));
        json_object_set_new(o, "offset", ju64(t->offset));
        json_object_set_new(o, "size", ju64(t->size));
        json_array_append_new(ts, o);
    }
    json_object_set_new(r, "files", files);
    json_object_set_new(r, "metadata", meta);
    json_object_set_new(r, "tensors", ts);
    return r;
}

static int list_bundle_text(const src *s)
{
    fm_bundle_info info;
    fm_bundle_get_info(s->b, &info);
    uint32_t ma, mi;
    fm_bundle_version(s->b, &ma, &mi);
    printf("%s: fm bundle %u.%u, arch %s, alignment %u, %" PRIu64 " tensors, %u expert layers (%" PRIu64
           " blobs), %" PRIu64 " weight bytes%s\n",
           s->path, ma, mi, fm_bundle_arch_name(s->b), fm_bundle_alignment(s->b), fm_bundle_n_tensors(s->b),
           fm_bundle_n_expert_layers(s->b), info.n_blobs, info.weight_bytes,
           info.has_tokenizer ? ", tokenizer" : "");
    printf("  %-40s %-8s %-18s %-14s %-12s %s\n", "tensor", "type", "shape", "offset", "size", "member / error");
    for (size_t i = 0; i < s->nbv; i++) {
        const fm_bundle_view *v = &s->bv[i];
        char tb[32], sh[96], mem[320] = "";
        shape_text(v->ne, v->n_dims, true, sh, sizeof sh);
        const json_t *err;
        uint64_t off, size;
        if (v->xl) { /* a part of every expert blob of the layer */
            const fm_bundle_part *p = &v->xl->parts[v->part];
            off = v->xl->n_expert ? v->xl->blobs[0].offset + p->offset : 0;
            size = p->size * v->xl->n_expert;
            err = p->error;
            char m0[128];
            if (fm_bundle_expert_member(v->xl->layer, 0, m0, sizeof m0) < 0) m0[0] = '\0';
            snprintf(mem, sizeof mem, "%s.. (%u blobs, part '%s')", m0, v->xl->n_expert, p->name);
        } else {
            off = v->tensor->offset;
            size = v->tensor->size;
            err = v->tensor->error;
            if (fm_bundle_tensor_member(v->name, mem, sizeof mem) < 0) mem[0] = '\0';
        }
        printf("  %-40s %-8s %-18s %-14" PRIu64 " %-12" PRIu64 " %s", v->name, qtype_name(v->qtype, tb), sh, off,
               size, mem);
        if (err) {
            const json_t *rm = json_object_get(err, "rmse"), *rel = json_object_get(err, "rel"),
                         *mx = json_object_get(err, "max_abs");
            printf("  error rmse %.4g rel %.4g max_abs %.4g", json_number_value(rm), json_number_value(rel),
                   json_number_value(mx));
        }
        putchar('\n');
    }
    return 0;
}

static int list_json(const src *s, bool full)
{
    if (s->b) {
        int r = json_dumpf(fm_bundle_manifest(s->b), stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
        if (r != 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
            return fail(EXIT_FAIL, "writing JSON to stdout failed");
        return 0;
    }
    json_t *j = s->g ? json_gguf(s->g, s->path, full) : json_st(s->st, s->path);
    int rc = json_dumpf(j, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (rc != 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
        return fail(EXIT_FAIL, "writing JSON to stdout failed");
    return 0;
}

/* ------------------------------------------------------------- f32 streaming */

static fm_err stream_tensor(const src *s, uint64_t i, fm_f32_sink sink, void *ctx, fm_error *e)
{
    if (s->b) return fm_bundle_view_f32(s->b, &s->bv[i], -1, sink, ctx, e);
    if (s->g) return fm_f32_stream_gguf(s->g, &s->g->tensors[i], 0, sink, ctx, e);
    return fm_f32_stream_st(s->st, &s->st->tensors[i], 0, sink, ctx, e);
}

static uint64_t n_tensors(const src *s)
{
    if (s->b) return s->nbv;
    return s->g ? s->g->n_tensors : s->st->n_tensors;
}

static const char *tensor_name(const src *s, uint64_t i)
{
    if (s->b) return s->bv[i].name;
    return s->g ? s->g->tensors[i].name.s : s->st->tensors[i].name;
}

static const char *tensor_type(const src *s, uint64_t i, char buf[32])
{
    if (s->b) return qtype_name(s->bv[i].qtype, buf);
    return s->g ? qtype_name(s->g->tensors[i].type, buf) : fm_st_dtype_name(s->st->tensors[i].dtype);
}

/* Little-endian bytes of n floats (in place on big-endian hosts). */
static const void *to_le(const float *v, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    float *w = (float *)v;
    for (size_t i = 0; i < n; i++) fm_wr_f32le(&w[i], v[i]);
#else
    (void)n;
#endif
    return v;
}

typedef struct out_ctx {
    fm_outfile *of; /* NULL: stdout */
    uint64_t n;
} out_ctx;

static fm_err sink_out(void *ctx, const float *v, size_t n, fm_error *e)
{
    out_ctx *c = ctx;
    const void *b = to_le(v, n);
    c->n += n;
    if (c->of) return fm_outfile_write(c->of, b, n * sizeof(float), e);
    if (fwrite(b, sizeof(float), n, stdout) != n)
        return fm_error_set(e, FM_E_IO, "writing stdout: %s", strerror(errno));
    return FM_OK;
}

static fm_err sink_sha(void *ctx, const float *v, size_t n, fm_error *e)
{
    (void)e;
    fm_sha256 *h = ctx;
    fm_sha256_update(h, to_le(v, n), n * sizeof(float));
    return FM_OK;
}

static int find_tensor(const src *s, const char *name, uint64_t *idx)
{
    for (uint64_t i = 0; i < n_tensors(s); i++)
        if (strcmp(tensor_name(s, i), name) == 0) {
            *idx = i;
            return 0;
        }
    return -1;
}

/* expert: -1, or the expert whose part (the fused view `name`) is extracted */
static int extract_f32(const src *s, const char *name, int64_t expert, const char *out, bool force)
{
    uint64_t i;
    fm_error e = {0};
    if (find_tensor(s, name, &i) != 0) return fail(EXIT_FAIL, "%s: no tensor named '%s'", s->path, name);
    out_ctx c = {NULL, 0};
    fm_outfile of;
    bool to_stdout = strcmp(out, "-") == 0;
    if (!to_stdout) {
        if (fm_outfile_open(&of, out, force, &e) != FM_OK) return fail(EXIT_FAIL, "%s", e.msg);
        c.of = &of;
    }
    fm_err rc = expert >= 0 ? fm_bundle_view_f32(s->b, &s->bv[i], expert, sink_out, &c, &e)
                            : stream_tensor(s, i, sink_out, &c, &e);
    if (rc != FM_OK) {
        if (c.of) fm_outfile_abort(c.of);
        return fail(rc == FM_E_UNSUPPORTED ? EXIT_FAIL : input_code(rc), "%s", e.msg);
    }
    if (c.of) {
        if (fm_outfile_commit(c.of, &e) != FM_OK) return fail(EXIT_FAIL, "%s", e.msg);
    } else if (fflush(stdout) != 0) {
        return fail(EXIT_FAIL, "writing stdout: %s", strerror(errno));
    }
    return 0;
}

static int all_sha(const src *s)
{
    int code = 0;
    for (uint64_t i = 0; i < n_tensors(s); i++) {
        fm_error e = {0};
        fm_sha256 h;
        char tb[32], hex[2 * FM_SHA256_LEN + 1];
        uint8_t d[FM_SHA256_LEN];
        if (fm_sha256_init(&h, &e) != FM_OK) return fail(EXIT_FAIL, "%s", e.msg);
        fm_err rc = stream_tensor(s, i, sink_sha, &h, &e);
        if (rc != FM_OK) {
            fm_sha256_free(&h);
            int c = rc == FM_E_UNSUPPORTED ? EXIT_FAIL : input_code(rc);
            fail(c, "%s", e.msg);
            if (c > code) code = c;
            if (c == EXIT_INPUT) return code; /* the file is broken: stop */
            continue;
        }
        fm_sha256_final(&h, d);
        fm_sha256_hex(d, hex);
        printf("%s\t%s\t%s\n", tensor_name(s, i), tensor_type(s, i, tb), hex);
    }
    if (fflush(stdout) != 0) return fail(EXIT_FAIL, "writing stdout: %s", strerror(errno));
    return code;
}

/* --------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    const char *path = NULL, *tensor = NULL, *out = NULL;
    bool json = false, full = false, force = false, sha = false, opts = true;
    const char *x_layer = NULL, *x_expert = NULL, *x_part = NULL;
    bool arch = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts || a[0] != '-' || strcmp(a, "-") == 0) {
            if (path) return fail(EXIT_INPUT, "more than one input given: %s and %s", path, a);
            path = a;
        } else if (strcmp(a, "--") == 0) opts = false;
        else if (strcmp(a, "--json") == 0) json = true;
        else if (strcmp(a, "--full-arrays") == 0) full = true;
        else if (strcmp(a, "--force") == 0) force = true;
        else if (strcmp(a, "--all-f32-sha256") == 0) sha = true;
        else if (strcmp(a, "--arch") == 0) arch = true;
        else if (strcmp(a, "--expert") == 0) {
            if (i + 3 >= argc) return fail(EXIT_INPUT, "--expert needs LAYER EXPERT PART (see --help)");
            x_layer = argv[++i];
            x_expert = argv[++i];
            x_part = argv[++i];
        }
        else if (strcmp(a, "--tensor") == 0 || strcmp(a, "--f32") == 0) {
            if (i + 1 >= argc) return fail(EXIT_INPUT, "%s needs an argument (see --help)", a);
            if (a[2] == 't') tensor = argv[++i];
            else out = argv[++i];
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            return fail(EXIT_INPUT, "unknown option %s (see fm-inspect --help)", a);
        }
    }
    if (!path) return fail(EXIT_INPUT, "no input given (see fm-inspect --help)");
    if (x_layer && tensor) return fail(EXIT_INPUT, "--expert and --tensor exclude each other");
    if ((tensor != NULL || x_layer != NULL) != (out != NULL))
        return fail(EXIT_INPUT, "--tensor (or --expert) and --f32 go together");
    if (x_layer) tensor = x_layer; /* for the option checks below */
    if ((tensor && (sha || json)) || (sha && json))
        return fail(EXIT_INPUT, "choose one of: listing (--json), --tensor/--f32, --all-f32-sha256");

    src s = {0};
    int code = open_src(&s, path);
    if (code) return code;
    if (arch) {
        json_t *hp = NULL;
        fm_error e = {0};
        if (s.b) hp = json_incref((json_t *)fm_bundle_arch(s.b));
        else if (s.g && fm_arch_hparams_from_gguf(s.g, &hp, &e) != FM_OK) code = fail(EXIT_INPUT, "%s", e.msg);
        else if (!s.g) code = fail(EXIT_INPUT, "--arch needs a bundle or a GGUF file");
        char *txt = hp ? json_dumps(hp, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (txt) puts(txt);
        free(txt);
        json_decref(hp);
    } else if (x_layer) {
        char *end1, *end2;
        unsigned long xl = strtoul(x_layer, &end1, 10), xe = strtoul(x_expert, &end2, 10);
        const fm_bundle_view *hit = NULL;
        uint64_t vi = 0;
        for (size_t k = 0; s.b && k < s.nbv && !hit; k++)
            if (s.bv[k].xl && s.bv[k].xl->layer == xl && strcmp(s.bv[k].xl->parts[s.bv[k].part].name, x_part) == 0) {
                hit = &s.bv[k];
                vi = k;
            }
        if (!s.b) code = fail(EXIT_INPUT, "--expert needs an fm bundle");
        else if (*end1 || *end2 || !*x_layer || !*x_expert) code = fail(EXIT_INPUT, "--expert LAYER EXPERT PART: numbers expected");
        else if (!hit) code = fail(EXIT_FAIL, "%s: layer %lu has no expert part '%s'", path, xl, x_part);
        else code = extract_f32(&s, s.bv[vi].name, (int64_t)xe, out, force);
    } else if (tensor) code = extract_f32(&s, tensor, -1, out, force);
    else if (sha) code = all_sha(&s);
    else if (json) code = list_json(&s, full);
    else {
        code = s.b ? list_bundle_text(&s) : s.g ? list_gguf_text(s.g, path) : list_st_text(s.st, path);
        if (fflush(stdout) != 0) code = fail(EXIT_FAIL, "writing stdout: %s", strerror(errno));
    }
    close_src(&s);
    return code;
}
