/* formats/f32_stream: chunked float32 streaming of stored tensors.
 * Checks, on the committed GGUF fixtures (tests/fixtures/gguf, made by
 * llama.cpp's quantizer) and a safetensors corpus file:
 *  - the concatenated chunks equal a whole-tensor fm_dequantize (exact,
 *    tolerance 0: the same kernels on the same bytes) for every chunk size,
 *    including chunks smaller than one block (then one block per chunk);
 *  - chunk sizes are bounded by chunk_bytes (or one block);
 *  - a size that disagrees with the type is FM_E_FORMAT, a range beyond the
 *    file FM_E_FORMAT, a type without dequantizer FM_E_UNSUPPORTED, and a sink
 *    error stops the stream and is returned. */
#include <stdlib.h>
#include <string.h>

#include "formats/f32_stream.h"
#include "formats/gguf.h"
#include "formats/quant.h"
#include "formats/safetensors.h"
#include "tests/unit/t.h"

typedef struct collect {
    float *v;
    size_t n, cap, max_chunk, calls;
    size_t fail_at; /* fail on this call (1-based), 0 never */
} collect;

static fm_err sink(void *ctx, const float *v, size_t n, fm_error *e)
{
    collect *c = ctx;
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at) return fm_error_set(e, FM_E_IO, "sink refused");
    if (n > c->max_chunk) c->max_chunk = n;
    if (c->n + n > c->cap) return fm_error_set(e, FM_E_RANGE, "more values than the tensor has");
    memcpy(c->v + c->n, v, n * sizeof *v);
    c->n += n;
    return FM_OK;
}

static void check_gguf(const char *path)
{
    fm_error e = {0};
    fm_gguf *g = NULL;
    CHECKF(fm_gguf_open(&g, path, &e) == FM_OK, "%s: %s", path, e.msg);
    if (!g) return;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const fm_gguf_tensor *t = &g->tensors[i];
        const fm_qtype_traits *q = fm_qtype_get(t->type);
        uint8_t *raw = malloc(t->size);
        float *want = malloc(t->n_elems * sizeof(float));
        CHECK(raw && want && q);
        CHECK(fm_gguf_read_tensor(g, t, raw, &e) == FM_OK);
        CHECKF(fm_dequantize(t->type, raw, t->size, want, t->n_elems, &e) == FM_OK, "%s", e.msg);
        size_t chunks[] = {0, 1, 100, 1024, 4096, 5000, 1u << 20};
        for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
            collect c = {calloc(t->n_elems, sizeof(float)), 0, t->n_elems, 0, 0, 0};
            fm_err rc = fm_f32_stream_gguf(g, t, chunks[k], sink, &c, &e);
            CHECKF(rc == FM_OK, "%s %s chunk %zu: %s", path, t->name.s, chunks[k], e.msg);
            CHECKF(c.n == t->n_elems && memcmp(c.v, want, c.n * sizeof(float)) == 0,
                   "%s %s chunk %zu: streamed values differ from fm_dequantize", path,
                   t->name.s, chunks[k]);
            size_t lim = chunks[k] ? chunks[k] / sizeof(float) : FM_F32_STREAM_CHUNK / sizeof(float);
            if (lim < q->block_size) lim = q->block_size;
            CHECKF(c.max_chunk <= lim, "%s %s: chunk of %zu values, limit %zu", path, t->name.s,
                   c.max_chunk, lim);
            free(c.v);
        }
        free(raw);
        free(want);
    }
    fm_gguf_close(g);
}

int main(void)
{
    const char *files[] = {"tests/fixtures/gguf/Q4_K.gguf", "tests/fixtures/gguf/Q8_0.gguf",
                           "tests/fixtures/gguf/IQ4_XS.gguf", "tests/fixtures/gguf/F16.gguf",
                           "tests/fixtures/gguf/MXFP4.gguf"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) check_gguf(T_SRC(files[i]));

    fm_error e = {0};
    fm_gguf *g = NULL;
    CHECK(fm_gguf_open(&g, T_SRC("tests/fixtures/gguf/Q4_K.gguf"), &e) == FM_OK);
    if (g) {
        const fm_gguf_tensor *t = fm_gguf_find_tensor(g, "blk.0.attn_q.weight");
        CHECK(t != NULL);
        if (t) {
            collect c = {calloc(t->n_elems, sizeof(float)), 0, t->n_elems, 0, 0, 0};
            /* size one byte short of what the values need */
            CHECK(fm_f32_stream_raw(&g->file, t->abs_offset, t->size - 1, t->type, t->n_elems, 0,
                                    sink, &c, "x", &e) == FM_E_FORMAT);
            /* not a whole number of blocks */
            CHECK(fm_f32_stream_raw(&g->file, t->abs_offset, t->size, t->type, t->n_elems - 1, 0,
                                    sink, &c, "x", &e) == FM_E_FORMAT);
            /* beyond the end of the file */
            CHECK(fm_f32_stream_raw(&g->file, g->file.size - 10, t->size, t->type, t->n_elems, 0,
                                    sink, &c, "x", &e) == FM_E_FORMAT);
            /* Q8_1 has no dequantizer */
            CHECK(fm_f32_stream_raw(&g->file, t->abs_offset, 36, FM_Q_Q8_1, 32, 0, sink, &c, "x",
                                    &e) == FM_E_UNSUPPORTED);
            /* unknown type id */
            CHECK(fm_f32_stream_raw(&g->file, t->abs_offset, 4, 4, 1, 0, sink, &c, "x", &e) ==
                  FM_E_UNSUPPORTED);
            CHECK(c.calls == 0);
            /* a sink error stops the stream on that call */
            c.fail_at = 2;
            CHECK(fm_f32_stream_gguf(g, t, 1, sink, &c, &e) == FM_E_IO);
            CHECK(c.calls == 2 && strstr(e.msg, "sink refused") != NULL);
            free(c.v);
        }
        fm_gguf_close(g);
    }

    /* safetensors: chunked equals whole-tensor conversion */
    fm_st *st = NULL;
    const char *sp = T_SRC("tests/corpus/valid/st-dtypes.safetensors");
    CHECKF(fm_st_open(&st, sp, &e) == FM_OK, "%s: %s", sp, e.msg);
    if (st) {
        for (uint64_t i = 0; i < st->n_tensors; i++) {
            const fm_st_tensor *t = &st->tensors[i];
            uint8_t *raw = malloc(t->size + 1);
            float *want = malloc(t->n_elems * sizeof(float) + 1);
            CHECK(fm_st_read(st, t, raw, &e) == FM_OK);
            CHECK(fm_st_to_f32(t->dtype, raw, t->n_elems, want, &e) == FM_OK);
            for (size_t ch = 1; ch <= 64; ch *= 4) {
                collect c = {calloc(t->n_elems + 1, sizeof(float)), 0, t->n_elems, 0, 0, 0};
                CHECKF(fm_f32_stream_st(st, t, ch, sink, &c, &e) == FM_OK, "%s: %s", t->name, e.msg);
                CHECKF(c.n == t->n_elems && memcmp(c.v, want, c.n * sizeof(float)) == 0,
                       "%s chunk %zu: values differ", t->name, ch);
                free(c.v);
            }
            free(raw);
            free(want);
        }
        fm_st_close(st);
    }
    T_DONE();
}
