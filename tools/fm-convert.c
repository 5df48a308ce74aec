/* fm-convert: a GGUF file or a Hugging Face directory -> an fm bundle.
 *
 *   fm-convert INPUT -o OUT.fmb [--experts keep|q8|q4|q3|q2] [--dense keep|q8|f16]
 *              [--group 32|64|128] [--align BYTES] [-t THREADS] [--io direct|cached]
 *              [--force] [--json]
 *
 * Default policy is lossless: every tensor keeps its source scheme (GGUF
 * quant blocks are copied byte for byte, so they dequantize exactly as the
 * source does); fused GGUF expert tensors are split into per-expert blobs,
 * per-expert Hugging Face tensors gathered. Anything requantized gets its
 * RMSE, relative and max abs error (and, for affine schemes, the plain
 * min/max baseline's MSE) in the manifest and in the summary.
 * Everything is validated before the output is created; the output is
 * written to OUT.fmb.tmp and renamed when complete.
 * Exit: 0 ok, 2 invalid input or usage, 1 any other failure. */
#include <errno.h>
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
#include "convert/source.h"
#include "formats/quant.h"
#include "formats/sha256.h"
#include "formats/tokmeta.h"
#include "pack/writer.h"
#define FM_CLI_PROG "fm-convert"
#include "tools/cli.h"

#define CHUNK_BYTES (32u << 20) /* dense tensors are streamed in pieces of about this much */
#define N_PARTS 3

static const char *prog = "fm-convert";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fm-convert INPUT -o OUT.fmb [--experts keep|q8|q4|q3|q2] [--dense keep|q8|f16]\n"
            "                  [--group 32|64|128] [--align BYTES] [-t THREADS] [--io direct|cached]\n"
            "                  [--force] [--json]\n"
            "INPUT: a .gguf file or a Hugging Face model directory (config.json + safetensors).\n"
            "  --experts  expert weights: keep (default, lossless), q8 (Q8_0), q4/q3/q2 (affine\n"
            "             A<bits>_<group>, error-minimizing scale/offset search)\n"
            "  --dense    other weights from float sources: keep (default), q8 (Q8_0), f16;\n"
            "             norms, biases and routers always stay float, quantized sources stay as they are\n"
            "  --group    affine group size (default 64)\n"
            "  --align    blob alignment in bytes (power of two, 4096..1048576; default 16384)\n"
            "  -t         worker threads (default: online CPUs, at least 4)\n"
            "  --io       direct (default: O_DIRECT reads, page cache kept small) or cached\n"
            "             (through the page cache: faster when the model fits in memory)\n"
            "  --force    overwrite OUT.fmb\n"
            "  --json     print the summary as JSON on stdout\n"
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

/* ------------------------------------------------------------------ plan */

typedef struct dense_plan {
    const fm_source_tensor *t;
    uint32_t qtype;
    uint64_t out_row_bytes;
    uint64_t rows_per_chunk, n_chunks;
    fm_plan_err err;
    bool lossy;
} dense_plan;

typedef struct xlayer {
    uint32_t layer, n_expert;
    const fm_source_tensor *part[N_PARTS];
    uint32_t qtype[N_PARTS];
    uint64_t part_bytes[N_PARTS];
    uint64_t blob_bytes;
    fm_plan_err err[N_PARTS];
    bool lossy[N_PARTS];
} xlayer;

typedef struct item {
    bool expert;
    size_t idx;      /* dense plan or xlayer index */
    uint64_t chunk;  /* dense: chunk number */
    uint32_t x;      /* expert number */
} item;

typedef struct result {
    uint8_t *data;
    size_t size;
    bool has_sha;
    uint8_t sha[32];
    fm_plan_err err[N_PARTS];
} result;

typedef struct job {
    fm_source *src;
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
} job;

static const char *qname(uint32_t q)
{
    const fm_qtype_traits *t = fm_qtype_get(q);
    return t && t->name ? t->name : "?";
}

static const char *const part_names[N_PARTS] = {"gate", "up", "down"};

static int part_of(const fm_source_tensor *t)
{
    for (int p = 0; p < N_PARTS; p++)
        if (t->entry->part && strcmp(t->entry->part, part_names[p]) == 0) return p;
    return -1;
}

static fm_err make_plan(job *J, const fm_plan_opts *po, fm_error *e)
{
    fm_source *s = J->src;
    size_t n = fm_source_n_tensors(s);
    J->dp = calloc(n ? n : 1, sizeof *J->dp);
    J->xl = calloc(n ? n : 1, sizeof *J->xl);
    J->items = NULL;
    if (!J->dp || !J->xl) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    uint32_t n_expert = 0;
    fm_arch_hp_u32(fm_source_hparams(s), "n_expert", &n_expert, NULL);
    /* expert layers, in the order their first part appears */
    for (size_t i = 0; i < n; i++) {
        const fm_source_tensor *t = fm_source_tensor_at(s, i);
        fm_err rc;
        if (!t->expert) {
            dense_plan *d = &J->dp[J->n_dp++];
            d->t = t;
            bool nq = (t->entry->flags & FM_T_NO_QUANT) != 0;
            if ((rc = fm_plan_qtype(po, t->name, t->qtype, false, nq, t->n_dims, t->ne[0], &d->qtype, e))) return rc;
            if ((rc = fm_qtype_nbytes(d->qtype, t->ne[0], &d->out_row_bytes, e))) return fm_error_prefix(e, "%s", t->name);
            d->lossy = d->qtype != t->qtype && !(d->qtype == FM_Q_F32 && fm_qtype_is_float(t->qtype));
            uint64_t per_row = t->row_bytes;
            if (d->qtype != t->qtype && t->ne[0] * 4 > per_row) per_row = t->ne[0] * 4;
            if (d->out_row_bytes > per_row) per_row = d->out_row_bytes;
            d->rows_per_chunk = CHUNK_BYTES / (per_row ? per_row : 1);
            if (d->rows_per_chunk == 0) d->rows_per_chunk = 1;
            d->n_chunks = (t->n_rows + d->rows_per_chunk - 1) / d->rows_per_chunk;
            continue;
        }
        int p = part_of(t);
        if (p < 0) return fm_error_set(e, FM_E_INTERNAL, "%s: unknown expert part", t->name);
        xlayer *L = NULL;
        for (size_t k = 0; k < J->n_xl; k++)
            if (J->xl[k].layer == t->layer) L = &J->xl[k];
        if (!L) {
            L = &J->xl[J->n_xl++];
            L->layer = t->layer;
            L->n_expert = (uint32_t)t->ne[2];
        }
        if (L->part[p]) return fm_error_set(e, FM_E_FORMAT, "%s: expert part %s twice", t->name, part_names[p]);
        if (t->ne[2] != L->n_expert)
            return fm_error_set(e, FM_E_FORMAT, "%s: %llu experts, other parts of the layer have %u", t->name,
                                (unsigned long long)t->ne[2], L->n_expert);
        L->part[p] = t;
        if ((rc = fm_plan_qtype(po, t->name, t->qtype, true, false, 2, t->ne[0], &L->qtype[p], e))) return rc;
        if ((rc = fm_qtype_nbytes(L->qtype[p], t->ne[0] * t->ne[1], &L->part_bytes[p], e)))
            return fm_error_prefix(e, "%s", t->name);
        L->lossy[p] = L->qtype[p] != t->qtype;
    }
    for (size_t k = 0; k < J->n_xl; k++) {
        xlayer *L = &J->xl[k];
        for (int p = 0; p < N_PARTS; p++) {
            if (!L->part[p])
                return fm_error_set(e, FM_E_NOTFOUND, "%s: layer %u has experts but no %s part", fm_source_path(s),
                                    L->layer, part_names[p]);
            L->blob_bytes += L->part_bytes[p];
        }
        if (L->blob_bytes > (1ull << 31))
            return fm_error_set(e, FM_E_RANGE, "layer %u: an expert of %llu bytes is too large", L->layer,
                                (unsigned long long)L->blob_bytes);
    }
    /* items: tensors in source order; a layer's experts where its first part is */
    size_t cap = 0;
    for (size_t i = 0; i < J->n_dp; i++) cap += J->dp[i].n_chunks;
    for (size_t k = 0; k < J->n_xl; k++) cap += J->xl[k].n_expert;
    J->items = calloc(cap ? cap : 1, sizeof *J->items);
    if (!J->items) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    size_t di = 0;
    bool *xdone = calloc(J->n_xl ? J->n_xl : 1, 1);
    if (!xdone) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const fm_source_tensor *t = fm_source_tensor_at(s, i);
        if (!t->expert) {
            dense_plan *d = &J->dp[di];
            for (uint64_t c = 0; c < d->n_chunks; c++) J->items[J->n_items++] = (item){false, di, c, 0};
            J->total_out += d->out_row_bytes * t->n_rows;
            di++;
            continue;
        }
        for (size_t k = 0; k < J->n_xl; k++)
            if (J->xl[k].layer == t->layer && !xdone[k]) {
                xdone[k] = true;
                for (uint32_t x = 0; x < J->xl[k].n_expert; x++) J->items[J->n_items++] = (item){true, k, 0, x};
                J->total_out += J->xl[k].blob_bytes * J->xl[k].n_expert;
            }
    }
    free(xdone);
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

/* Reads rows of t (an expert slice when x >= 0) and stores them as qtype
 * into out; err accumulates conversion statistics. */
static fm_err convert_rows(const fm_source *s, const fm_source_tensor *t, int64_t x, uint64_t row0, uint64_t nrows,
                           uint32_t qtype, uint8_t *out, fm_plan_err *err, fm_error *e)
{
    if (qtype == t->qtype) return fm_source_read_rows(s, t, x, row0, nrows, out, e);
    size_t nv = (size_t)(nrows * t->ne[0]);
    float *f = malloc(nv * sizeof *f + 1);
    void *scratch = malloc((size_t)(nrows * t->row_bytes) + (size_t)(nrows * t->ne[0] * 4) + 1);
    fm_err rc = FM_OK;
    if (!f || !scratch) rc = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", t->name);
    if (!rc) rc = fm_source_read_rows_f32(s, t, x, row0, nrows, f, scratch, e);
    if (!rc) {
        rc = fm_plan_convert(qtype, f, (size_t)nrows, (size_t)t->ne[0], out, scratch, err, e);
        if (rc) fm_error_prefix(e, "%s: tensor %s", fm_source_path(s), t->name);
    }
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
    fm_err rc = FM_OK;
    if (!it->expert) {
        dense_plan *d = &J->dp[it->idx];
        const fm_source_tensor *t = d->t;
        uint64_t row0 = it->chunk * d->rows_per_chunk, nrows = d->rows_per_chunk;
        if (row0 + nrows > t->n_rows) nrows = t->n_rows - row0;
        r->size = (size_t)(nrows * d->out_row_bytes);
        if (!(r->data = malloc(r->size ? r->size : 1))) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", t->name);
        if ((rc = convert_rows(J->src, t, -1, row0, nrows, d->qtype, r->data, &r->err[0], e))) return rc;
        if (J->drop) fm_source_drop_rows(J->src, t, -1, row0, nrows);
        if (d->n_chunks == 1) {
            if ((rc = fm_sha256_buf(r->data, r->size, r->sha, e))) return rc;
            r->has_sha = true;
        }
        return FM_OK;
    }
    xlayer *L = &J->xl[it->idx];
    r->size = (size_t)L->blob_bytes;
    if (!(r->data = malloc(r->size))) return fm_error_set(e, FM_E_NOMEM, "out of memory (expert blob)");
    uint8_t *p = r->data;
    for (int k = 0; k < N_PARTS; k++) {
        const fm_source_tensor *t = L->part[k];
        if ((rc = convert_rows(J->src, t, it->x, 0, t->ne[1], L->qtype[k], p, &r->err[k], e))) return rc;
        if (J->drop) fm_source_drop_rows(J->src, t, it->x, 0, t->ne[1]);
        p += L->part_bytes[k];
    }
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

static void shape_of(const fm_source_tensor *t, uint32_t *nd, uint64_t shape[FM_BUNDLE_MAX_DIMS])
{
    *nd = t->n_dims;
    for (uint32_t i = 0; i < t->n_dims; i++) shape[i] = t->ne[t->n_dims - 1 - i];
}

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
        shape_of(d->t, &desc.n_dims, desc.shape);
        fm_plan_err_add(&d->err, &r->err[0]);
        json_t *ej = d->lossy && it->chunk + 1 == d->n_chunks ? fm_plan_err_json(&d->err, d->qtype, d->t->qtype) : NULL;
        if (d->n_chunks == 1) {
            desc.has_sha256 = true;
            memcpy(desc.sha256, r->sha, 32);
            desc.error = ej;
            rc = fm_bundle_writer_add_tensor(J->w, &desc, r->data, r->size, e);
        } else {
            if (it->chunk == 0) rc = fm_bundle_writer_begin_tensor(J->w, &desc, d->out_row_bytes * d->t->n_rows, e);
            if (!rc) rc = fm_bundle_writer_write(J->w, r->data, r->size, e);
            if (!rc && it->chunk + 1 == d->n_chunks) {
                rc = fm_bundle_writer_end_tensor(J->w, e);
                if (!rc && ej) rc = fm_bundle_writer_set_tensor_error(J->w, d->t->name, ej, e);
            }
        }
        json_decref(ej);
    } else {
        xlayer *L = &J->xl[it->idx];
        if (it->x == 0) {
            fm_bundle_writer_part parts[N_PARTS];
            memset(parts, 0, sizeof parts);
            for (int k = 0; k < N_PARTS; k++) {
                parts[k].name = part_names[k];
                parts[k].qtype = L->qtype[k];
                parts[k].n_dims = 2;
                parts[k].shape[0] = L->part[k]->ne[1];
                parts[k].shape[1] = L->part[k]->ne[0];
            }
            rc = fm_bundle_writer_begin_experts(J->w, L->layer, L->n_expert, N_PARTS, parts, e);
        }
        if (!rc) rc = fm_bundle_writer_add_expert(J->w, L->layer, it->x, r->data, r->size, r->sha, e);
        for (int k = 0; k < N_PARTS; k++) fm_plan_err_add(&L->err[k], &r->err[k]);
        if (!rc && it->x + 1 == L->n_expert)
            for (int k = 0; k < N_PARTS && !rc; k++) {
                if (!L->lossy[k]) continue;
                json_t *ej = fm_plan_err_json(&L->err[k], L->qtype[k], L->part[k]->qtype);
                rc = fm_bundle_writer_set_part_error(J->w, L->layer, part_names[k], ej, e);
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

static void print_err_line(FILE *o, const char *name, uint32_t q, uint32_t src, const fm_plan_err *x)
{
    fprintf(o, "  %-36s %-7s <- %-5s rmse %.4e rel %.4e max_abs %.4e", name, qname(q), qname(src),
            fm_quant_stats_rmse(&x->st), fm_quant_stats_rel(&x->st), x->st.max_abs);
    if (x->has_minmax) fprintf(o, " mse/minmax %.4f", ratio(x));
    fputc('\n', o);
}

static json_t *err_entry(const char *name, int64_t layer, const char *part, uint32_t q, uint32_t src,
                         const fm_plan_err *x)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    if (layer >= 0) {
        json_object_set_new(o, "layer", json_integer(layer));
        json_object_set_new(o, "part", json_string(part));
    }
    json_object_set_new(o, "error", fm_plan_err_json(x, q, src));
    return o;
}

static void summary(job *J, const char *out, double secs, bool as_json)
{
    uint64_t n_blobs = 0;
    for (size_t k = 0; k < J->n_xl; k++) n_blobs += J->xl[k].n_expert;
    fm_plan_err tot, tot_aff;
    memset(&tot, 0, sizeof tot);
    memset(&tot_aff, 0, sizeof tot_aff);
    size_t n_lossy = 0;
    json_t *errs = json_array();
    for (size_t i = 0; i < J->n_dp; i++)
        if (J->dp[i].lossy) {
            n_lossy++;
            fm_plan_err_add(&tot, &J->dp[i].err);
            json_array_append_new(errs, err_entry(J->dp[i].t->name, -1, NULL, J->dp[i].qtype, J->dp[i].t->qtype, &J->dp[i].err));
        }
    for (size_t k = 0; k < J->n_xl; k++)
        for (int p = 0; p < N_PARTS; p++)
            if (J->xl[k].lossy[p]) {
                n_lossy++;
                fm_plan_err_add(&tot, &J->xl[k].err[p]);
                if (J->xl[k].err[p].has_minmax) fm_plan_err_add(&tot_aff, &J->xl[k].err[p]);
                json_array_append_new(errs, err_entry(J->xl[k].part[p]->name, J->xl[k].layer, part_names[p],
                                                      J->xl[k].qtype[p], J->xl[k].part[p]->qtype, &J->xl[k].err[p]));
            }
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "output", json_string(out));
        json_object_set_new(o, "source", json_string(fm_source_path(J->src)));
        json_object_set_new(o, "arch", json_string(fm_source_arch(J->src)->name));
        json_object_set_new(o, "tensors", json_integer((json_int_t)J->n_dp));
        json_object_set_new(o, "expert_layers", json_integer((json_int_t)J->n_xl));
        json_object_set_new(o, "expert_blobs", json_integer((json_int_t)n_blobs));
        json_object_set_new(o, "bytes", json_integer((json_int_t)fm_bundle_writer_pos(J->w)));
        json_object_set_new(o, "weight_bytes", json_integer((json_int_t)J->total_out));
        json_object_set_new(o, "seconds", json_real(secs));
        json_object_set_new(o, "requantized", errs);
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
    json_decref(errs);
    printf("%s: %s -> %s: %s, %zu tensors, %zu expert layers (%" PRIu64 " blobs), %.1f MB in %.2f s (%.0f MB/s)\n",
           prog, fm_source_path(J->src), out, fm_source_arch(J->src)->name, J->n_dp, J->n_xl, n_blobs,
           J->total_out / 1e6, secs, secs > 0 ? J->total_out / secs / 1e6 : 0.0);
    if (n_lossy == 0) {
        printf("lossless: every tensor kept its source scheme\n");
        return;
    }
    printf("requantized %zu tensors/parts:\n", n_lossy);
    for (size_t i = 0; i < J->n_dp; i++)
        if (J->dp[i].lossy) print_err_line(stdout, J->dp[i].t->name, J->dp[i].qtype, J->dp[i].t->qtype, &J->dp[i].err);
    for (size_t k = 0; k < J->n_xl; k++)
        for (int p = 0; p < N_PARTS; p++)
            if (J->xl[k].lossy[p])
                print_err_line(stdout, J->xl[k].part[p]->name, J->xl[k].qtype[p], J->xl[k].part[p]->qtype, &J->xl[k].err[p]);
    printf("total: rmse %.4e rel %.4e max_abs %.4e", fm_quant_stats_rmse(&tot.st), fm_quant_stats_rel(&tot.st),
           tot.st.max_abs);
    if (tot_aff.st.n) printf("; affine experts mse/minmax %.4f", ratio(&tot_aff));
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
    const char *in = NULL, *out = NULL;
    fm_plan_opts po = {FM_DENSE_KEEP, FM_EXPERTS_KEEP, 64, false};
    uint64_t align = 0, threads = 0, group = 64;
    bool force = false, as_json = false, io_direct = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") && has) out = argv[++i];
        else if (!strcmp(a, "--experts") && has) {
            if (!fm_plan_parse_experts(argv[++i], &po.experts))
                return fail(EXIT_INPUT, "--experts %s: expected keep, q8, q4, q3 or q2", argv[i]);
        } else if (!strcmp(a, "--dense") && has) {
            if (!fm_plan_parse_dense(argv[++i], &po.dense))
                return fail(EXIT_INPUT, "--dense %s: expected keep, q8 or f16", argv[i]);
        } else if (!strcmp(a, "--group") && has) {
            if (!parse_u64(argv[++i], &group) || (group != 32 && group != 64 && group != 128))
                return fail(EXIT_INPUT, "--group %s: expected 32, 64 or 128", argv[i]);
        } else if (!strcmp(a, "--align") && has) {
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
        else {
            return fail(EXIT_INPUT, "more than one INPUT (%s)", a);
        }
    }
    if (!in || !out) {
        return fail(EXIT_INPUT, "INPUT and -o OUT.fmb are required (see --help)");
    }
    po.group = (unsigned)group;
    /* I/O-bound copies overlap reads better with a few more workers than cores */
    if (!threads) threads = fm_pipeline_cpus() < 4 ? 4 : fm_pipeline_cpus();

    fm_error e = {0};
    job J;
    memset(&J, 0, sizeof J);
    J.oc.fd = -1;
    J.drop = io_direct;
    fm_err rc = fm_source_open(&J.src, in, &e);
    if (rc) return fail(rc == FM_E_NOMEM || rc == FM_E_INTERNAL ? EXIT_FAIL : EXIT_INPUT, "%s", e.msg);
    po.hf_widen = fm_source_kind_of(J.src) == FM_SOURCE_HF;
    /* input through O_DIRECT (no page cache); where refused, cached reads with drops behind */
    if (J.drop && fm_source_set_direct(J.src, NULL) != FM_OK) fm_error_clear(&e);
    int code = EXIT_FAIL;
    char *tok = NULL;
    json_t *prov = NULL;
    if ((rc = make_plan(&J, &po, &e))) {
        code = input_code(rc) == EXIT_INPUT || rc == FM_E_ARG ? EXIT_INPUT : EXIT_FAIL;
        fail(code, "%s", e.msg);
        goto done;
    }
    /* the tokenizer, before anything is written */
    json_t *tj = NULL;
    rc = fm_source_tokenizer(J.src, &tj, &e);
    if (rc == FM_E_UNSUPPORTED || rc == FM_E_NOTFOUND) {
        fprintf(stderr, "%s: warning: no tokenizer stored: %s\n", prog, e.msg);
    } else if (rc) {
        code = EXIT_INPUT;
        fail(code, "tokenizer: %s", e.msg);
        goto done;
    } else {
        size_t tlen;
        rc = fm_tokmeta_dump(tj, &tok, &tlen, &e);
        json_decref(tj);
        if (rc) {
            fail(EXIT_FAIL, "tokenizer: %s", e.msg);
            goto done;
        }
    }
    prov = fm_provenance_new(prog, argc, argv);
    json_t *opts = json_pack("{s:s,s:s,s:i,s:s}", "experts", fm_plan_experts_name(po.experts), "dense",
                             fm_plan_dense_name(po.dense), "group", (int)po.group, "source_format",
                             fm_source_kind_of(J.src) == FM_SOURCE_GGUF ? "gguf" : "hf");
    json_object_set_new(prov, "options", opts);

    fm_bundle_writer_opts wo;
    fm_bundle_writer_opts_init(&wo);
    if (align) wo.alignment = (uint32_t)align;
    wo.force = force;
    if ((rc = fm_bundle_writer_new(&J.w, out, &wo, &e))) {
        fail(EXIT_FAIL, "%s", e.msg);
        goto done;
    }
    size_t tl = strlen(out);
    g_tmp_path = malloc(tl + 5);
    if (g_tmp_path) {
        memcpy(g_tmp_path, out, tl);
        memcpy(g_tmp_path + tl, ".tmp", 5);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        if (J.drop) fm_outcache_open(&J.oc, g_tmp_path, 0);
    }
    if ((rc = fm_bundle_writer_set_arch(J.w, (json_t *)fm_source_hparams(J.src), &e)) ||
        (tok && (rc = fm_bundle_writer_add_tokenizer(J.w, tok, strlen(tok), &e)))) {
        fail(EXIT_FAIL, "%s", e.msg);
        goto done;
    }
    {
        size_t nf = fm_source_n_files(J.src);
        const char **paths = calloc(nf ? nf : 1, sizeof *paths);
        if (!paths) {
            fail(EXIT_FAIL, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < nf; i++) paths[i] = fm_source_file_at(J.src, i)->path;
        rc = fm_hash_job_start(&J.hash, paths, nf, J.drop, &e);
        free(paths);
        if (rc) {
            fail(EXIT_FAIL, "%s", e.msg);
            goto done;
        }
    }
    const char *slow = getenv("FM_TEST_SLOW_WRITE"); /* test hook: ms of delay per written item */
    J.slow_ms = slow ? atol(slow) : 0;
    J.bar = isatty(2) && !as_json;
    J.t0 = now_s();
    fm_pipeline_ops ops = {prepare, consume, discard};
    rc = fm_pipeline_run(J.n_items, (unsigned)threads, 0, &ops, &J, &e);
    if (rc) {
        if (J.bar) fputc('\n', stderr);
        fail(input_code(rc), "%s", e.msg);
        code = input_code(rc);
        goto done;
    }
    {
        size_t nf = fm_source_n_files(J.src);
        uint8_t (*dig)[32] = calloc(nf ? nf : 1, 32);
        if (!dig) {
            fail(EXIT_FAIL, "out of memory");
            goto done;
        }
        rc = fm_hash_job_finish(J.hash, dig, &e);
        J.hash = NULL;
        if (rc) {
            free(dig);
            fail(EXIT_FAIL, "hashing the input: %s", e.msg);
            goto done;
        }
        for (size_t i = 0; i < nf; i++)
            fm_provenance_add_source(prov, fm_source_file_at(J.src, i)->path, fm_source_file_at(J.src, i)->size, dig[i]);
        free(dig);
    }
    show_bar(&J, true);
    if ((rc = fm_bundle_writer_set_provenance(J.w, prov, &e)) || (rc = fm_bundle_writer_finish(J.w, &e))) {
        fail(EXIT_FAIL, "%s", e.msg);
        goto done;
    }
    summary(&J, out, now_s() - J.t0, as_json);
    code = 0;
done:
    if (J.hash) fm_hash_job_cancel(J.hash);
    fm_outcache_close(&J.oc);
    fm_bundle_writer_free(J.w); /* removes OUT.tmp unless finished */
    free(g_tmp_path);
    g_tmp_path = NULL;
    json_decref(prov);
    free(tok);
    free(J.dp);
    free(J.xl);
    free(J.items);
    fm_source_close(J.src);
    return code;
}
