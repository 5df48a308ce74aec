/* fm-requant: rewrites the expert blobs of an fm bundle in a smaller scheme.
 *
 *   fm-requant IN.fmb -o OUT.fmb --experts q4|q3|q2|q8|keep [--group 32|64|128]
 *              [--layers RANGE] [--dense keep|q8|f16] [--align BYTES] [-t THREADS]
 *              [--io direct|cached] [--force] [--json] [--calib TEXT]
 *
 * Expert parts (gate, up, down) of the selected layers are dequantized to
 * float32 and requantized: q4/q3/q2 into fm's affine group schemes
 * A<bits>_<group> (f16 scale and offset per group, chosen by an
 * error-minimizing search, convert/quantize.h), q8 into Q8_0. Everything
 * else (attention, router, norms, shared experts, embeddings, other layers'
 * experts) is copied byte for byte unless --dense asks otherwise. Each
 * requantized part gets {"method", "scheme", "source_qtype", "rmse", "rel",
 * "max_abs", "mse", "mse_minmax", ...} in the manifest (the min/max figures
 * are plain min/max affine quantization at the same group size, for
 * comparison), summarized on stdout. RANGE: "0-3,7,10-" (layer numbers).
 * Exit: 0 ok, 2 invalid input or usage, 1 any other failure. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "convert/job.h"
#include "convert/pipeline.h"
#include "convert/plan.h"
#include "formats/arch.h"
#include "formats/bundle.h"
#include "formats/quant.h"
#include "formats/sha256.h"
#include "formats/util.h"
#include "pack/writer.h"
#define FM_CLI_PROG "fm-requant"
#include "tools/cli.h"

#define CHUNK_BYTES (32u << 20)

static const char *prog = "fm-requant";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fm-requant IN.fmb -o OUT.fmb --experts q4|q3|q2|q8|keep [--group 32|64|128]\n"
            "                  [--layers RANGE] [--dense keep|q8|f16] [--align BYTES] [-t THREADS]\n"
            "                  [--io direct|cached] [--force] [--json]\n"
            "  --experts  new scheme of the selected layers' expert parts (q4/q3/q2: affine\n"
            "             A<bits>_<group> with an error-minimizing scale/offset search; q8: Q8_0)\n"
            "  --group    affine group size (default 64)\n"
            "  --layers   layers to requantize, e.g. 0-3,7,10- (default: all)\n"
            "  --dense    also convert dense float tensors (default keep: untouched)\n"
            "  --align    blob alignment (default: the input's)\n"
            "  -t         worker threads (default: online CPUs, at least 4)\n"
            "  --io       direct (default: O_DIRECT reads, page cache kept small) or cached\n"
            "  --force    overwrite OUT.fmb\n"
            "  --json     print the summary as JSON\n"
            "  --calib    (not implemented yet: activation-weighted error needs the runtime)\n"
            "exit: 0 ok, 2 invalid input or usage, 1 other failure\n");
}

static int input_code(fm_err c)
{
    switch (c) {
    case FM_E_FORMAT:
    case FM_E_UNSUPPORTED:
    case FM_E_NOTFOUND:
    case FM_E_RANGE:
    case FM_E_VERSION:
    case FM_E_CHECKSUM:
        return EXIT_INPUT;
    default:
        return EXIT_FAIL;
    }
}

static const char *qname(uint32_t q)
{
    const fm_qtype_traits *t = fm_qtype_get(q);
    return t && t->name ? t->name : "?";
}

/* ------------------------------------------------------------------ layers */

typedef struct range {
    uint32_t lo, hi; /* inclusive */
} range;

static bool parse_ranges(const char *s, range **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long a = strtoul(p, &end, 10), b;
        if (end == p || errno || a > UINT32_MAX) return false;
        p = end;
        if (*p == '-') {
            p++;
            if (*p == ',' || *p == 0) b = UINT32_MAX;
            else {
                b = strtoul(p, &end, 10);
                if (end == p || errno || b > UINT32_MAX || b < a) return false;
                p = end;
            }
        } else {
            b = a;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            range *r = realloc(*out, cap * sizeof *r);
            if (!r) return false;
            *out = r;
        }
        (*out)[(*n)++] = (range){(uint32_t)a, (uint32_t)b};
        if (*p == ',') p++;
        else if (*p) return false;
    }
    return *n > 0;
}

static bool in_ranges(const range *r, size_t n, uint32_t l)
{
    if (!r) return true;
    for (size_t i = 0; i < n; i++)
        if (l >= r[i].lo && l <= r[i].hi) return true;
    return false;
}

/* ------------------------------------------------------------------ plan */

typedef struct dense_plan {
    const fm_bundle_tensor *t;
    uint32_t qtype;
    uint64_t row_len, n_rows, in_row_bytes, out_row_bytes, rows_per_chunk, n_chunks;
    fm_plan_err err;
    bool lossy;
} dense_plan;

typedef struct xlayer {
    const fm_bundle_expert_layer *l;
    uint32_t qtype[FM_BUNDLE_MAX_PARTS];
    uint64_t part_bytes[FM_BUNDLE_MAX_PARTS];
    uint64_t blob_bytes;
    fm_plan_err err[FM_BUNDLE_MAX_PARTS];
    bool lossy[FM_BUNDLE_MAX_PARTS];
    char fused[FM_BUNDLE_MAX_PARTS][96]; /* canonical fused names, for the summary */
} xlayer;

typedef struct item {
    bool expert;
    size_t idx;
    uint64_t chunk;
    uint32_t x;
} item;

typedef struct result {
    uint8_t *data;
    size_t size;
    bool has_sha;
    uint8_t sha[32];
    fm_plan_err err[FM_BUNDLE_MAX_PARTS];
} result;

typedef struct job {
    fm_bundle *in;
    dense_plan *dp;
    size_t n_dp;
    xlayer *xl;
    size_t n_xl;
    item *items;
    size_t n_items;
    fm_bundle_writer *w;
    fm_outcache oc;
    uint64_t total_out, done_out;
    double t0, last_bar;
    bool bar;
    fm_hash_job *hash;
    long slow_ms;
    bool drop; /* posix_fadvise DONTNEED behind input reads and output writes */
    fm_sha256 csha; /* multi-piece copies: SHA-256 of the bytes copied, checked at the end */
    bool csha_on;
} job;

static uint64_t row_len_of(uint32_t n_dims, const uint64_t *shape) { return n_dims ? shape[n_dims - 1] : 1; }

static fm_err make_plan(job *J, const fm_plan_opts *po, const range *rg, size_t nrg, fm_error *e)
{
    fm_bundle *b = J->in;
    uint64_t nt = fm_bundle_n_tensors(b);
    uint32_t nl = fm_bundle_n_expert_layers(b);
    J->dp = calloc(nt ? (size_t)nt : 1, sizeof *J->dp);
    J->xl = calloc(nl ? nl : 1, sizeof *J->xl);
    if (!J->dp || !J->xl) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    const fm_arch *a = fm_arch_find(fm_bundle_arch_name(b));
    fm_err rc;
    size_t n_items = 0;
    for (uint64_t i = 0; i < nt; i++) {
        const fm_bundle_tensor *t = fm_bundle_tensor_at(b, i);
        dense_plan *d = &J->dp[J->n_dp++];
        d->t = t;
        uint32_t layer;
        const fm_arch_tensor *ent = a ? fm_arch_match(a, t->name, &layer) : NULL;
        bool nq = ent ? (ent->flags & FM_T_NO_QUANT) != 0 : true; /* unknown: leave alone */
        fm_plan_opts dpo = *po;
        dpo.experts = FM_EXPERTS_KEEP;
        d->row_len = row_len_of(t->n_dims, t->shape);
        d->n_rows = t->n_elems / (d->row_len ? d->row_len : 1);
        if ((rc = fm_plan_qtype(&dpo, t->name, t->qtype, false, nq, t->n_dims, d->row_len, &d->qtype, e))) return rc;
        if ((rc = fm_qtype_nbytes(t->qtype, d->row_len, &d->in_row_bytes, e)) ||
            (rc = fm_qtype_nbytes(d->qtype, d->row_len, &d->out_row_bytes, e)))
            return fm_error_prefix(e, "%s", t->name);
        d->lossy = d->qtype != t->qtype;
        uint64_t per = d->in_row_bytes > d->out_row_bytes ? d->in_row_bytes : d->out_row_bytes;
        if (d->lossy && d->row_len * 4 > per) per = d->row_len * 4;
        d->rows_per_chunk = CHUNK_BYTES / (per ? per : 1);
        if (!d->rows_per_chunk) d->rows_per_chunk = 1;
        d->n_chunks = (d->n_rows + d->rows_per_chunk - 1) / d->rows_per_chunk;
        if (d->n_chunks == 0) d->n_chunks = 1;
        n_items += d->n_chunks;
        J->total_out += d->out_row_bytes * d->n_rows;
    }
    for (uint32_t li = 0; li < nl; li++) {
        const fm_bundle_expert_layer *l = fm_bundle_expert_layer_at(b, li);
        xlayer *L = &J->xl[J->n_xl++];
        L->l = l;
        bool sel = in_ranges(rg, nrg, l->layer);
        for (uint32_t p = 0; p < l->n_parts; p++) {
            const fm_bundle_part *pt = &l->parts[p];
            uint64_t rl = row_len_of(pt->n_dims, pt->shape);
            char what[160];
            snprintf(what, sizeof what, "blk.%u expert part %s", l->layer, pt->name);
            snprintf(L->fused[p], sizeof L->fused[p], "blk.%u.exps.%s", l->layer, pt->name);
            for (size_t j = 0; a && j < a->n_tensors; j++)
                if ((a->tensors[j].flags & FM_T_EXPERT) && a->tensors[j].part && !strcmp(a->tensors[j].part, pt->name))
                    fm_arch_tensor_name(&a->tensors[j], l->layer, L->fused[p], sizeof L->fused[p]);
            L->qtype[p] = pt->qtype;
            if (sel && (rc = fm_plan_qtype(po, what, pt->qtype, true, false, 2, rl, &L->qtype[p], e))) return rc;
            if ((rc = fm_qtype_nbytes(L->qtype[p], pt->n_elems, &L->part_bytes[p], e))) return fm_error_prefix(e, "%s", what);
            L->lossy[p] = L->qtype[p] != pt->qtype;
            L->blob_bytes += L->part_bytes[p];
        }
        n_items += l->n_expert;
        J->total_out += L->blob_bytes * l->n_expert;
    }
    J->items = calloc(n_items ? n_items : 1, sizeof *J->items);
    if (!J->items) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    for (size_t i = 0; i < J->n_dp; i++)
        for (uint64_t c = 0; c < J->dp[i].n_chunks; c++) J->items[J->n_items++] = (item){false, i, c, 0};
    for (size_t k = 0; k < J->n_xl; k++)
        for (uint32_t x = 0; x < J->xl[k].l->n_expert; x++) J->items[J->n_items++] = (item){true, k, 0, x};
    return FM_OK;
}

/* ------------------------------------------------------------------ workers */

static void result_free(result *r)
{
    if (!r) return;
    free(r->data);
    free(r);
}

static void discard(void *ctx, size_t i, void *res)
{
    (void)ctx;
    (void)i;
    result_free(res);
}

static fm_err pread_in(const job *J, void *buf, uint64_t len, uint64_t off, fm_error *e)
{
    if (fm_bundle_direct_fd(J->in) >= 0)
        return fm_pread_direct(fm_bundle_direct_fd(J->in), fm_bundle_file_size(J->in), buf, (size_t)len, off,
                               fm_bundle_path(J->in), e);
    int fd = fm_bundle_fd(J->in);
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = pread(fd, p, len > (1u << 30) ? (1u << 30) : (size_t)len, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return fm_error_set(e, FM_E_IO, "%s: read at %llu: %s", fm_bundle_path(J->in), (unsigned long long)off,
                                r < 0 ? strerror(errno) : "unexpected end of file");
        p += r;
        len -= (uint64_t)r;
        off += (uint64_t)r;
    }
    return FM_OK;
}

static void drop_in(const job *J, uint64_t off, uint64_t len)
{
    if (fm_bundle_direct_fd(J->in) >= 0) return; /* nothing cached */
    uint64_t a = (off + 4095) & ~4095ull, b = (off + len) & ~4095ull;
    if (b > a) (void)posix_fadvise(fm_bundle_fd(J->in), (off_t)a, (off_t)(b - a), POSIX_FADV_DONTNEED);
}

/* Converts n values of src (qtype sq) into dq at out. */
static fm_err requant(uint32_t sq, const uint8_t *src, uint64_t src_bytes, uint32_t dq, uint64_t rows, uint64_t cols,
                      uint8_t *out, fm_plan_err *err, const char *what, fm_error *e)
{
    uint64_t n = rows * cols, ob = 0;
    fm_err rc = fm_qtype_nbytes(dq, n, &ob, e);
    if (rc) return fm_error_prefix(e, "%s", what);
    float *f = malloc((size_t)n * sizeof *f + 1);
    void *scratch = malloc((size_t)ob + 1);
    if (!f || !scratch) rc = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", what);
    if (!rc && (rc = fm_dequantize(sq, src, (size_t)src_bytes, f, n, e))) fm_error_prefix(e, "%s", what);
    if (!rc && (rc = fm_plan_convert(dq, f, (size_t)rows, (size_t)cols, out, scratch, err, e)))
        fm_error_prefix(e, "%s", what);
    free(f);
    free(scratch);
    return rc;
}

static fm_err prepare(void *ctx, size_t i, void **res, fm_error *e)
{
    job *J = ctx;
    const item *it = &J->items[i];
    result *r = calloc(1, sizeof *r);
    if (!r) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    *res = r;
    fm_err rc;
    if (!it->expert) {
        const dense_plan *d = &J->dp[it->idx];
        uint64_t row0 = it->chunk * d->rows_per_chunk, nrows = d->rows_per_chunk;
        if (row0 + nrows > d->n_rows) nrows = d->n_rows - row0;
        r->size = (size_t)(nrows * d->out_row_bytes);
        uint64_t in_bytes = nrows * d->in_row_bytes, off = d->t->offset + row0 * d->in_row_bytes;
        if (!(r->data = malloc(r->size + 1))) return fm_error_set(e, FM_E_NOMEM, "out of memory");
        if (!d->lossy) {
            if ((rc = pread_in(J, r->data, in_bytes, off, e))) return rc;
            if (d->n_chunks == 1) { /* check the input as we copy it */
                uint8_t sha[32];
                if ((rc = fm_sha256_buf(r->data, r->size, sha, e))) return rc;
                if (memcmp(sha, d->t->sha256, 32))
                    return fm_error_set(e, FM_E_CHECKSUM, "%s: tensor %s: SHA-256 mismatch", fm_bundle_path(J->in),
                                        d->t->name);
                memcpy(r->sha, sha, 32);
                r->has_sha = true;
            }
        } else {
            uint8_t *raw = malloc((size_t)in_bytes + 1);
            if (!raw) return fm_error_set(e, FM_E_NOMEM, "out of memory");
            rc = pread_in(J, raw, in_bytes, off, e);
            if (!rc) rc = requant(d->t->qtype, raw, in_bytes, d->qtype, nrows, d->row_len, r->data, &r->err[0], d->t->name, e);
            free(raw);
            if (rc) return rc;
            if (d->n_chunks == 1) {
                if ((rc = fm_sha256_buf(r->data, r->size, r->sha, e))) return rc;
                r->has_sha = true;
            }
        }
        if (J->drop) drop_in(J, off, in_bytes);
        return FM_OK;
    }
    const xlayer *L = &J->xl[it->idx];
    const fm_bundle_expert_layer *l = L->l;
    uint8_t *blob = malloc((size_t)l->blob_size + 1);
    if (!blob) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    if (fm_bundle_direct_fd(J->in) >= 0) { /* O_DIRECT read, then the blob's SHA-256 */
        uint8_t sha[32];
        rc = pread_in(J, blob, l->blob_size, l->blobs[it->x].offset, e);
        if (!rc) rc = fm_sha256_buf(blob, (size_t)l->blob_size, sha, e);
        if (!rc && memcmp(sha, l->blobs[it->x].sha256, 32))
            rc = fm_error_set(e, FM_E_CHECKSUM, "%s: blk.%u expert %u: SHA-256 mismatch", fm_bundle_path(J->in),
                              l->layer, it->x);
    } else {
        rc = fm_bundle_read_expert(J->in, l, it->x, blob, true, e);
    }
    if (rc) {
        free(blob);
        return rc;
    }
    if (J->drop) drop_in(J, l->blobs[it->x].offset, l->blob_size);
    r->size = (size_t)L->blob_bytes;
    if (!(r->data = malloc(r->size + 1))) {
        free(blob);
        return fm_error_set(e, FM_E_NOMEM, "out of memory");
    }
    uint8_t *p = r->data;
    for (uint32_t k = 0; k < l->n_parts && !rc; k++) {
        const fm_bundle_part *pt = &l->parts[k];
        if (!L->lossy[k]) {
            memcpy(p, blob + pt->offset, (size_t)pt->size);
        } else {
            char what[160];
            snprintf(what, sizeof what, "blk.%u expert %u part %s", l->layer, it->x, pt->name);
            uint64_t cols = row_len_of(pt->n_dims, pt->shape);
            rc = requant(pt->qtype, blob + pt->offset, pt->size, L->qtype[k], pt->n_elems / cols, cols, p, &r->err[k],
                         what, e);
        }
        p += L->part_bytes[k];
    }
    free(blob);
    if (rc) return rc;
    if ((rc = fm_sha256_buf(r->data, r->size, r->sha, e))) return rc;
    r->has_sha = true;
    return FM_OK;
}

/* ------------------------------------------------------------------ writer */

static void show_bar(job *J, bool final)
{
    if (!J->bar) return;
    double t = now_s();
    if (!final && t - J->last_bar < 0.1) return;
    J->last_bar = t;
    double f = J->total_out ? (double)J->done_out / (double)J->total_out : 1.0;
    int w = 30, k = (int)(f * w);
    char line[64];
    for (int i = 0; i < w; i++) line[i] = i < k ? '#' : '.';
    line[w] = 0;
    double el = t - J->t0;
    uint64_t hd = 0, ht = 0;
    if (J->hash) fm_hash_job_progress(J->hash, &hd, &ht);
    fprintf(stderr, "\r[%s] %3.0f%% %.2f/%.2f GB %6.0f MB/s  sha256 %3.0f%%", line, f * 100, J->done_out / 1e9,
            J->total_out / 1e9, el > 0 ? J->done_out / el / 1e6 : 0.0, ht ? 100.0 * hd / ht : 100.0);
    if (final) fputc('\n', stderr);
}

static json_t *copy_error(const json_t *e) { return e ? json_deep_copy(e) : NULL; }

static fm_err consume(void *ctx, size_t i, void *res, fm_error *e)
{
    job *J = ctx;
    result *r = res;
    const item *it = &J->items[i];
    fm_err rc = FM_OK;
    if (J->slow_ms > 0) {
        struct timespec ts = {J->slow_ms / 1000, (J->slow_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (!it->expert) {
        dense_plan *d = &J->dp[it->idx];
        fm_bundle_writer_tensor desc;
        memset(&desc, 0, sizeof desc);
        desc.name = d->t->name;
        desc.qtype = d->qtype;
        desc.n_dims = d->t->n_dims;
        memcpy(desc.shape, d->t->shape, sizeof desc.shape);
        fm_plan_err_add(&d->err, &r->err[0]);
        bool last = it->chunk + 1 == d->n_chunks;
        json_t *ej = !last ? NULL : d->lossy ? fm_plan_err_json(&d->err, d->qtype, d->t->qtype) : copy_error(d->t->error);
        if (d->n_chunks == 1) {
            desc.has_sha256 = r->has_sha;
            memcpy(desc.sha256, r->sha, 32);
            desc.error = ej;
            rc = fm_bundle_writer_add_tensor(J->w, &desc, r->data, r->size, e);
        } else {
            if (it->chunk == 0) {
                rc = fm_bundle_writer_begin_tensor(J->w, &desc, d->out_row_bytes * d->n_rows, e);
                if (!rc && !d->lossy && !(rc = fm_sha256_init(&J->csha, e))) J->csha_on = true;
            }
            if (!rc && J->csha_on) fm_sha256_update(&J->csha, r->data, r->size);
            if (!rc) rc = fm_bundle_writer_write(J->w, r->data, r->size, e);
            if (!rc && last && J->csha_on) { /* the copy must hash as the input's manifest says */
                uint8_t sha[32];
                fm_sha256_final(&J->csha, sha);
                J->csha_on = false;
                if (memcmp(sha, d->t->sha256, 32))
                    rc = fm_error_set(e, FM_E_CHECKSUM, "%s: tensor %s: SHA-256 mismatch", fm_bundle_path(J->in),
                                      d->t->name);
            }
            if (!rc && last) {
                rc = fm_bundle_writer_end_tensor(J->w, e);
                if (!rc && ej) rc = fm_bundle_writer_set_tensor_error(J->w, d->t->name, ej, e);
            }
        }
        json_decref(ej);
    } else {
        xlayer *L = &J->xl[it->idx];
        const fm_bundle_expert_layer *l = L->l;
        if (it->x == 0) {
            fm_bundle_writer_part parts[FM_BUNDLE_MAX_PARTS];
            memset(parts, 0, sizeof parts);
            for (uint32_t k = 0; k < l->n_parts; k++) {
                parts[k].name = l->parts[k].name;
                parts[k].qtype = L->qtype[k];
                parts[k].n_dims = l->parts[k].n_dims;
                memcpy(parts[k].shape, l->parts[k].shape, sizeof parts[k].shape);
                parts[k].error = L->lossy[k] ? NULL : (json_t *)l->parts[k].error;
            }
            rc = fm_bundle_writer_begin_experts(J->w, l->layer, l->n_expert, l->n_parts, parts, e);
        }
        if (!rc) rc = fm_bundle_writer_add_expert(J->w, l->layer, it->x, r->data, r->size, r->sha, e);
        for (uint32_t k = 0; k < l->n_parts; k++) fm_plan_err_add(&L->err[k], &r->err[k]);
        if (!rc && it->x + 1 == l->n_expert)
            for (uint32_t k = 0; k < l->n_parts && !rc; k++) {
                if (!L->lossy[k]) continue;
                json_t *ej = fm_plan_err_json(&L->err[k], L->qtype[k], l->parts[k].qtype);
                rc = fm_bundle_writer_set_part_error(J->w, l->layer, l->parts[k].name, ej, e);
                json_decref(ej);
            }
    }
    J->done_out += r->size;
    result_free(r);
    fm_outcache_advance(&J->oc, fm_bundle_writer_pos(J->w));
    show_bar(J, false);
    return rc;
}

/* ------------------------------------------------------------------ summary */

static double ratio(const fm_plan_err *x)
{
    return x->has_minmax && x->st_minmax.sse > 0 ? x->st.sse / x->st_minmax.sse : 1.0;
}

static void summary(job *J, const char *out, double secs, bool as_json)
{
    fm_plan_err tot, tot_aff;
    memset(&tot, 0, sizeof tot);
    memset(&tot_aff, 0, sizeof tot_aff);
    json_t *arr = json_array();
    size_t n_lossy = 0;
    for (size_t i = 0; i < J->n_dp; i++) {
        const dense_plan *d = &J->dp[i];
        if (!d->lossy) continue;
        n_lossy++;
        fm_plan_err_add(&tot, &d->err);
        json_array_append_new(arr, json_pack("{s:s,s:o}", "name", d->t->name, "error",
                                             fm_plan_err_json(&d->err, d->qtype, d->t->qtype)));
    }
    for (size_t k = 0; k < J->n_xl; k++) {
        const xlayer *L = &J->xl[k];
        for (uint32_t p = 0; p < L->l->n_parts; p++) {
            if (!L->lossy[p]) continue;
            n_lossy++;
            fm_plan_err_add(&tot, &L->err[p]);
            if (L->err[p].has_minmax) fm_plan_err_add(&tot_aff, &L->err[p]);
            json_array_append_new(arr, json_pack("{s:s,s:i,s:s,s:o}", "name", L->fused[p], "layer", (int)L->l->layer,
                                                 "part", L->l->parts[p].name, "error",
                                                 fm_plan_err_json(&L->err[p], L->qtype[p], L->l->parts[p].qtype)));
        }
    }
    if (as_json) {
        json_t *o = json_pack("{s:s,s:s,s:I,s:f,s:o}", "output", out, "input", fm_bundle_path(J->in), "weight_bytes",
                              (json_int_t)J->total_out, "seconds", secs, "requantized", arr);
        if (tot_aff.st.n) {
            json_object_set_new(o, "affine_rmse", json_real(fm_quant_stats_rmse(&tot_aff.st)));
            json_object_set_new(o, "affine_mse_ratio_vs_minmax", json_real(ratio(&tot_aff)));
        }
        char *s = json_dumps(o, JSON_INDENT(1) | JSON_REAL_PRECISION(9));
        if (s) puts(s);
        free(s);
        json_decref(o);
        return;
    }
    json_decref(arr);
    printf("%s: %s -> %s: %.1f MB of weights in %.2f s (%.0f MB/s), %zu tensors/parts requantized\n", prog,
           fm_bundle_path(J->in), out, J->total_out / 1e6, secs, secs > 0 ? J->total_out / secs / 1e6 : 0.0, n_lossy);
    if (!n_lossy) return;
    printf("  %-34s %-7s    %-6s %-11s %-11s %-11s %-11s %s\n", "tensor", "scheme", "source", "rmse", "rel",
           "max_abs", "mse", "mse/minmax");
    for (size_t i = 0; i < J->n_dp; i++) {
        const dense_plan *d = &J->dp[i];
        if (!d->lossy) continue;
        printf("  %-34s %-7s <- %-6s %.4e  %.4e  %.4e  %.4e  -\n", d->t->name, qname(d->qtype), qname(d->t->qtype),
               fm_quant_stats_rmse(&d->err.st), fm_quant_stats_rel(&d->err.st), d->err.st.max_abs,
               d->err.st.n ? d->err.st.sse / (double)d->err.st.n : 0.0);
    }
    for (size_t k = 0; k < J->n_xl; k++) {
        const xlayer *L = &J->xl[k];
        for (uint32_t p = 0; p < L->l->n_parts; p++) {
            if (!L->lossy[p]) continue;
            const fm_plan_err *x = &L->err[p];
            printf("  %-34s %-7s <- %-6s %.4e  %.4e  %.4e  %.4e  ", L->fused[p], qname(L->qtype[p]),
                   qname(L->l->parts[p].qtype), fm_quant_stats_rmse(&x->st), fm_quant_stats_rel(&x->st), x->st.max_abs,
                   x->st.n ? x->st.sse / (double)x->st.n : 0.0);
            if (x->has_minmax) printf("%.4f\n", ratio(x));
            else printf("-\n");
        }
    }
    printf("total: rmse %.4e rel %.4e max_abs %.4e", fm_quant_stats_rmse(&tot.st), fm_quant_stats_rel(&tot.st),
           tot.st.max_abs);
    if (tot_aff.st.n) printf("; affine mse/minmax %.4f (%.1f%% lower MSE than min/max)", ratio(&tot_aff),
                             100.0 * (1.0 - ratio(&tot_aff)));
    putchar('\n');
}

/* ------------------------------------------------------------------ main */

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *layers = NULL, *calib = NULL;
    fm_plan_opts po = {FM_DENSE_KEEP, FM_EXPERTS_KEEP, 64, false};
    bool have_experts = false, force = false, as_json = false, io_direct = true;
    uint64_t align = 0, threads = 0, group = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") && has) out = argv[++i];
        else if (!strcmp(a, "--experts") && has) {
            if (!fm_plan_parse_experts(argv[++i], &po.experts))
                return fail(EXIT_INPUT, "--experts %s: expected q4, q3, q2, q8 or keep", argv[i]);
            have_experts = true;
        } else if (!strcmp(a, "--dense") && has) {
            if (!fm_plan_parse_dense(argv[++i], &po.dense))
                return fail(EXIT_INPUT, "--dense %s: expected keep, q8 or f16", argv[i]);
        } else if (!strcmp(a, "--group") && has) {
            if (!parse_u64(argv[++i], &group) || (group != 32 && group != 64 && group != 128))
                return fail(EXIT_INPUT, "--group %s: expected 32, 64 or 128", argv[i]);
        } else if (!strcmp(a, "--layers") && has) layers = argv[++i];
        else if (!strcmp(a, "--calib") && has) calib = argv[++i];
        else if (!strcmp(a, "--align") && has) {
            if (!parse_u64(argv[++i], &align) || align < 4096 || align > (1u << 20) || (align & (align - 1)))
                return fail(EXIT_INPUT, "--align %s: expected a power of two in 4096..1048576", argv[i]);
        } else if (!strcmp(a, "-t") && has) {
            if (!parse_u64(argv[++i], &threads) || threads < 1 || threads > 256)
                return fail(EXIT_INPUT, "-t %s: expected 1..256", argv[i]);
        } else if (!strcmp(a, "--io") && has) {
            const char *v = argv[++i];
            if (strcmp(v, "direct") && strcmp(v, "cached"))
                return fail(EXIT_INPUT, "--io %s: expected direct or cached", v);
            io_direct = strcmp(v, "direct") == 0;
        } else if (!strcmp(a, "--force")) force = true;
        else if (!strcmp(a, "--json")) as_json = true;
        else if (a[0] == '-' && a[1]) {
            return fail(EXIT_INPUT, "unknown or incomplete option %s (see --help)", a);
        } else if (!in) in = a;
        else return fail(EXIT_INPUT, "more than one input (%s)", a);
    }
    if (!in || !out || !have_experts) {
        return fail(EXIT_INPUT, "IN.fmb, -o OUT.fmb and --experts are required (see --help)");
    }
    if (calib)
        return fail(EXIT_INPUT, "--calib %s: activation-aware requantization is not implemented yet", calib);
    po.group = (unsigned)group;
    /* I/O-bound copies overlap reads better with a few more workers than cores */
    if (!threads) threads = fm_pipeline_cpus() < 4 ? 4 : fm_pipeline_cpus();
    range *rg = NULL;
    size_t nrg = 0;
    if (layers && !parse_ranges(layers, &rg, &nrg)) {
        free(rg);
        return fail(EXIT_INPUT, "--layers %s: expected a list like 0-3,7,10-", layers);
    }

    fm_error e = {0};
    job J;
    memset(&J, 0, sizeof J);
    J.oc.fd = -1;
    J.drop = io_direct;
    int code = EXIT_FAIL;
    char *tok = NULL;
    size_t tok_len = 0;
    json_t *prov = NULL, *arch = NULL;
    fm_err rc = fm_bundle_open(&J.in, in, J.drop ? FM_BUNDLE_OPEN_DIRECT : 0, &e);
    if (rc) {
        free(rg);
        return fail(rc == FM_E_NOMEM ? EXIT_FAIL : EXIT_INPUT, "%s", e.msg);
    }
    if ((rc = make_plan(&J, &po, rg, nrg, &e))) {
        code = input_code(rc) == EXIT_INPUT || rc == FM_E_ARG ? EXIT_INPUT : EXIT_FAIL;
        fail(code, "%s", e.msg);
        goto done;
    }
    fm_bundle_info info;
    fm_bundle_get_info(J.in, &info);
    if (info.has_tokenizer && (rc = fm_bundle_read_tokenizer(J.in, &tok, &tok_len, &e))) {
        code = input_code(rc);
        fail(code, "%s", e.msg);
        goto done;
    }
    arch = json_deep_copy(fm_bundle_arch(J.in));
    prov = fm_provenance_new(prog, argc, argv);
    if (!arch || !prov) {
        fail(EXIT_FAIL, "out of memory");
        goto done;
    }
    json_object_set_new(prov, "options", json_pack("{s:s,s:s,s:i,s:s}", "experts", fm_plan_experts_name(po.experts),
                                                   "dense", fm_plan_dense_name(po.dense), "group", (int)po.group,
                                                   "layers", layers ? layers : "all"));
    const json_t *old = json_object_get(fm_bundle_manifest(J.in), "provenance");
    if (old) json_object_set_new(prov, "parent", json_deep_copy(old));

    fm_bundle_writer_opts wo;
    fm_bundle_writer_opts_init(&wo);
    wo.alignment = align ? (uint32_t)align : fm_bundle_alignment(J.in);
    wo.force = force;
    if ((rc = fm_bundle_writer_new(&J.w, out, &wo, &e))) {
        fail(EXIT_FAIL, "%s", e.msg);
        goto done;
    }
    size_t tl = strlen(out);
    if ((g_tmp_path = malloc(tl + 5))) {
        memcpy(g_tmp_path, out, tl);
        memcpy(g_tmp_path + tl, ".tmp", 5);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        if (J.drop) fm_outcache_open(&J.oc, g_tmp_path, 0);
    }
    if ((rc = fm_bundle_writer_set_arch(J.w, arch, &e)) ||
        (tok && (rc = fm_bundle_writer_add_tokenizer(J.w, tok, tok_len, &e)))) {
        fail(EXIT_FAIL, "%s", e.msg);
        goto done;
    }
    const char *paths[1] = {in};
    if ((rc = fm_hash_job_start(&J.hash, paths, 1, J.drop, &e))) {
        fail(EXIT_FAIL, "%s", e.msg);
        goto done;
    }
    const char *slow = getenv("FM_TEST_SLOW_WRITE"); /* test hook: ms of delay per written item */
    J.slow_ms = slow ? atol(slow) : 0;
    J.bar = isatty(2) && !as_json;
    J.t0 = now_s();
    fm_pipeline_ops ops = {prepare, consume, discard};
    if ((rc = fm_pipeline_run(J.n_items, (unsigned)threads, 0, &ops, &J, &e))) {
        if (J.bar) fputc('\n', stderr);
        code = input_code(rc);
        fail(code, "%s", e.msg);
        goto done;
    }
    uint8_t dig[1][32];
    rc = fm_hash_job_finish(J.hash, dig, &e);
    J.hash = NULL;
    if (rc) {
        fail(EXIT_FAIL, "hashing the input: %s", e.msg);
        goto done;
    }
    fm_provenance_add_source(prov, in, fm_bundle_file_size(J.in), dig[0]);
    show_bar(&J, true);
    if ((rc = fm_bundle_writer_set_provenance(J.w, prov, &e)) || (rc = fm_bundle_writer_finish(J.w, &e))) {
        fail(EXIT_FAIL, "%s", e.msg);
        goto done;
    }
    summary(&J, out, now_s() - J.t0, as_json);
    code = 0;
done:
    if (J.csha_on) fm_sha256_free(&J.csha);
    if (J.hash) fm_hash_job_cancel(J.hash);
    fm_outcache_close(&J.oc);
    fm_bundle_writer_free(J.w);
    free(g_tmp_path);
    g_tmp_path = NULL;
    json_decref(prov);
    json_decref(arch);
    free(tok);
    free(rg);
    free(J.dp);
    free(J.xl);
    free(J.items);
    fm_bundle_close(J.in);
    return code;
}
