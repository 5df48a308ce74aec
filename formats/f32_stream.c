/* Chunked float32 streaming of stored tensors; see f32_stream.h. */
#include "formats/f32_stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "formats/quant.h"
#include "formats/util.h"

static size_t chunk_or_default(size_t chunk_bytes)
{
    return chunk_bytes ? chunk_bytes : FM_F32_STREAM_CHUNK;
}

fm_err fm_f32_stream_raw(const fm_file *f, uint64_t off, uint64_t size, uint32_t qtype,
                         uint64_t n_elems, size_t chunk_bytes, fm_f32_sink sink, void *ctx,
                         const char *what, fm_error *e)
{
    const fm_qtype_traits *q = fm_qtype_get(qtype);
    if (!f || !sink || !what) return fm_error_set(e, FM_E_ARG, "fm_f32_stream_raw: NULL argument");
    if (!q || q->block_size == 0 || q->type_size == 0)
        return fm_error_set(e, FM_E_UNSUPPORTED, "%s: unknown type id %" PRIu32, what, qtype);
    fm_dequant_fn fn = fm_qtype_dequant_fn(qtype);
    if (!fn)
        return fm_error_set(e, FM_E_UNSUPPORTED, "%s: type %s: fm cannot dequantize this type",
                            what, q->name);
    if (n_elems % q->block_size != 0)
        return fm_error_set(e, FM_E_FORMAT,
                            "%s: type %s: %" PRIu64 " values is not a whole number of %" PRIu32
                            "-value blocks",
                            what, q->name, n_elems, q->block_size);
    uint64_t nblocks = n_elems / q->block_size, need;
    if (!fm_mul_u64(nblocks, q->type_size, &need) || need != size)
        return fm_error_set(e, FM_E_FORMAT,
                            "%s: type %s: %" PRIu64 " values need %" PRIu64 " bytes, found %" PRIu64,
                            what, q->name, n_elems, need, size);
    if (!fm_range_ok(off, size, f->size))
        return fm_error_set(e, FM_E_FORMAT,
                            "%s: data [%" PRIu64 ", +%" PRIu64 ") lies beyond the end of %s (%" PRIu64
                            " bytes)",
                            what, off, size, f->path ? f->path : "file", f->size);
    if (nblocks == 0) return FM_OK;

    uint64_t cost = q->type_size > q->block_size * 4u ? q->type_size : q->block_size * 4u;
    uint64_t per = chunk_or_default(chunk_bytes) / cost;
    if (per == 0) per = 1;
    if (per > nblocks) per = nblocks;
    size_t raw_n = (size_t)(per * q->type_size), val_n = (size_t)(per * q->block_size);
    uint8_t *raw = malloc(raw_n);
    float *val = malloc(val_n * sizeof(float));
    fm_err rc = FM_OK;
    if (!raw || !val) {
        rc = fm_error_set(e, FM_E_NOMEM, "%s: cannot allocate %zu + %zu bytes of chunk buffers",
                          what, raw_n, val_n * sizeof(float));
        goto out;
    }
    for (uint64_t b = 0; b < nblocks; b += per) {
        uint64_t nb = nblocks - b < per ? nblocks - b : per;
        size_t nr = (size_t)(nb * q->type_size), nv = (size_t)(nb * q->block_size);
        rc = fm_file_pread(f, raw, nr, off + b * q->type_size, e);
        if (rc != FM_OK) {
            fm_error_prefix(e, "%s", what);
            goto out;
        }
        fn(raw, val, nv);
        rc = sink(ctx, val, nv, e);
        if (rc != FM_OK) goto out;
    }
out:
    free(raw);
    free(val);
    return rc;
}

fm_err fm_f32_stream_gguf(const fm_gguf *g, const fm_gguf_tensor *t, size_t chunk_bytes,
                          fm_f32_sink sink, void *ctx, fm_error *e)
{
    if (!g || !t) return fm_error_set(e, FM_E_ARG, "fm_f32_stream_gguf: NULL argument");
    char what[320];
    snprintf(what, sizeof what, "%s: tensor %.200s", g->file.path ? g->file.path : "gguf",
             t->name.s ? t->name.s : "?");
    return fm_f32_stream_raw(&g->file, t->abs_offset, t->size, t->type, t->n_elems, chunk_bytes,
                             sink, ctx, what, e);
}

fm_err fm_f32_stream_st(const fm_st *st, const fm_st_tensor *t, size_t chunk_bytes,
                        fm_f32_sink sink, void *ctx, fm_error *e)
{
    if (!st || !t || !sink) return fm_error_set(e, FM_E_ARG, "fm_f32_stream_st: NULL argument");
    if (t->file_index >= st->n_files)
        return fm_error_set(e, FM_E_INTERNAL, "tensor %s: file index %" PRIu32 " of %" PRIu32,
                            t->name, t->file_index, st->n_files);
    const fm_file *f = &st->files[t->file_index];
    const char *path = f->path ? f->path : "safetensors";
    uint32_t es = fm_st_dtype_size(t->dtype);
    uint64_t need;
    if (es == 0)
        return fm_error_set(e, FM_E_UNSUPPORTED, "%s: tensor %s: dtype %d has no element size",
                            path, t->name, (int)t->dtype);
    if (!fm_mul_u64(t->n_elems, es, &need) || need != t->size)
        return fm_error_set(e, FM_E_FORMAT,
                            "%s: tensor %s: %" PRIu64 " %s values need %" PRIu64
                            " bytes, found %" PRIu64,
                            path, t->name, t->n_elems, fm_st_dtype_name(t->dtype), need, t->size);
    if (!fm_range_ok(t->offset, t->size, f->size))
        return fm_error_set(e, FM_E_FORMAT,
                            "%s: tensor %s: data [%" PRIu64 ", +%" PRIu64
                            ") lies beyond the end of the file (%" PRIu64 " bytes)",
                            path, t->name, t->offset, t->size, f->size);
    if (t->n_elems == 0) return FM_OK;

    uint64_t cost = es > 4 ? es : 4;
    uint64_t per = chunk_or_default(chunk_bytes) / cost;
    if (per == 0) per = 1;
    if (per > t->n_elems) per = t->n_elems;
    uint8_t *raw = malloc((size_t)(per * es));
    float *val = malloc((size_t)per * sizeof(float));
    fm_err rc = FM_OK;
    if (!raw || !val) {
        rc = fm_error_set(e, FM_E_NOMEM, "%s: tensor %s: cannot allocate chunk buffers", path,
                          t->name);
        goto out;
    }
    for (uint64_t i = 0; i < t->n_elems; i += per) {
        uint64_t n = t->n_elems - i < per ? t->n_elems - i : per;
        rc = fm_file_pread(f, raw, (size_t)(n * es), t->offset + i * es, e);
        if (rc != FM_OK) {
            fm_error_prefix(e, "tensor %s", t->name);
            goto out;
        }
        rc = fm_st_to_f32(t->dtype, raw, n, val, e);
        if (rc != FM_OK) {
            fm_error_prefix(e, "%s: tensor %s", path, t->name);
            goto out;
        }
        rc = sink(ctx, val, (size_t)n, e);
        if (rc != FM_OK) goto out;
    }
out:
    free(raw);
    free(val);
    return rc;
}
