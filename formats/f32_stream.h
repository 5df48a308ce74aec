/* Streams a stored tensor as float32 values in storage order, in bounded
 * chunks: reads a run of whole blocks, dequantizes (or converts) it, hands it
 * to a sink, repeats. Storage order is row-major: a GGUF tensor comes out as
 * ne[n-1] x ... x ne[1] rows of ne[0] values; a safetensors tensor in its
 * stored order (shape[n_dims-1] fastest). Memory is bounded by chunk_bytes
 * (plus at most one block), whatever the tensor size. */
#ifndef FM_F32_STREAM_H
#define FM_F32_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "formats/err.h"
#include "formats/file.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"

#define FM_F32_STREAM_CHUNK (4u << 20) /* default chunk: 4 MiB of float32 output */

/* Receives n values; a non-FM_OK return stops the stream and is passed up. */
typedef fm_err (*fm_f32_sink)(void *ctx, const float *v, size_t n, fm_error *e);

/* A tensor of fm_qtype `qtype` holding n_elems values in bytes
 * [off, off + size) of f. Checks that n_elems is a whole number of blocks and
 * that size is exactly the bytes they need (FM_E_FORMAT otherwise), and that
 * fm can dequantize the type (FM_E_UNSUPPORTED otherwise). chunk_bytes caps
 * the float32 output per chunk (0: FM_F32_STREAM_CHUNK); at least one block
 * is done per chunk. Uses fm_qtype_dequant_fn (AVX2 unless FM_NO_SIMD).
 * `what` names the tensor in messages (e.g. "model.gguf: tensor x"). */
fm_err fm_f32_stream_raw(const fm_file *f, uint64_t off, uint64_t size, uint32_t qtype,
                         uint64_t n_elems, size_t chunk_bytes, fm_f32_sink sink, void *ctx,
                         const char *what, fm_error *e);

fm_err fm_f32_stream_gguf(const fm_gguf *g, const fm_gguf_tensor *t, size_t chunk_bytes,
                          fm_f32_sink sink, void *ctx, fm_error *e);

/* Any safetensors dtype, through fm_st_to_f32 (integers and bools by value). */
fm_err fm_f32_stream_st(const fm_st *st, const fm_st_tensor *t, size_t chunk_bytes,
                        fm_f32_sink sink, void *ctx, fm_error *e);

#endif
